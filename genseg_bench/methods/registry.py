"""Find a Method implementation by ``kind``: built-ins, entry points, or ``module:Class``.

Built-ins are named here as import strings and imported on first use (no
import-time registration). Outside packages register classes under the
``genseg_bench.methods`` entry-point group; the entry-point name is the kind
their method specs use.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from genseg_bench.errors import UnknownNameError, unknown
from genseg_bench.methods.base import Method
from genseg_bench.specs import MethodSpec

ENTRY_POINT_GROUP = "genseg_bench.methods"

BUILTIN_KINDS: dict[str, str] = {
    "supervised": "genseg_bench.methods.supervised:SupervisedMethod",
    "genseg": "genseg_bench.methods.genseg:GenSegMethod",
}


def _import(target: str) -> type[Method]:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise UnknownNameError(
            f"cannot import method class {target!r}: {exc}. Check the module path and class name "
            "(format 'package.module:ClassName') and that the package is installed."
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise UnknownNameError(f"{target!r} is not a subclass of genseg_bench.methods.base.Method.")
    return cls


def available_kinds() -> list[str]:
    """Built-in kinds plus those registered by installed packages."""
    return sorted({*BUILTIN_KINDS, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))})


def method_class(kind: str) -> type[Method]:
    """The class implementing ``kind`` (a built-in, an entry point, or ``module:Class``)."""
    if kind in BUILTIN_KINDS:
        return _import(BUILTIN_KINDS[kind])
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == kind:
            cls = ep.load()
            if not (isinstance(cls, type) and issubclass(cls, Method)):
                raise UnknownNameError(f"entry point {ep.value!r} ({kind}) is not a Method subclass.")
            return cls
    if ":" in kind:
        return _import(kind)
    raise unknown("method kind", kind, available_kinds())


def build_method(spec: MethodSpec) -> Method:
    """Instantiate the method a spec describes."""
    return method_class(spec.kind)(spec)
