"""Find a Method implementation by ``kind``: built-ins, entry points, or ``module:Class``.

Built-ins are named here as import strings and imported on first use (no
import-time registration). Outside packages register classes under the
``genseg_bench.methods`` entry-point group; the entry-point name is the kind
their method specs use.

Nothing here imports torch until a class is actually loaded: the catalog checks
kinds and configs (:func:`is_known_kind`, :func:`config_model`) when
``genseg-bench tasks`` or ``report`` runs, which must stay torch-free.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from genseg_bench.errors import UnknownNameError, unknown
from genseg_bench.methods.config import BUILTIN_CONFIGS, MethodConfig, parse_config
from genseg_bench.specs import MethodSpec

if TYPE_CHECKING:
    from genseg_bench.methods.base import Method

ENTRY_POINT_GROUP = "genseg_bench.methods"

BUILTIN_KINDS: dict[str, str] = {
    "nnunet": "genseg_bench.methods.nnunet:NnUNetMethod",
    "supervised": "genseg_bench.methods.supervised:SupervisedMethod",
    "genseg": "genseg_bench.methods.genseg:GenSegMethod",
    "wgan": "genseg_bench.methods.wgan:WGANMethod",
    "dct": "genseg_bench.methods.semi:DCTMethod",
    "mcf": "genseg_bench.methods.semi:MCFMethod",
    "ctbct": "genseg_bench.methods.semi:CTBCTMethod",
}


def _is_method(cls: object) -> bool:
    from genseg_bench.methods.base import Method

    return isinstance(cls, type) and issubclass(cls, Method)


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
    if not _is_method(cls):
        raise UnknownNameError(f"{target!r} is not a subclass of genseg_bench.methods.base.Method.")
    return cls


def available_kinds() -> list[str]:
    """Built-in kinds plus those registered by installed packages."""
    return sorted({*BUILTIN_KINDS, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))})


def is_known_kind(kind: str) -> bool:
    """Whether ``kind`` names a built-in, an installed entry point or a ``module:Class`` path (nothing imported)."""
    return kind in BUILTIN_KINDS or ":" in kind or kind in available_kinds()


def config_model(kind: str) -> type[MethodConfig] | None:
    """The typed config model of ``kind``: a built-in's without importing it, else the class's ``config_model``."""
    if kind in BUILTIN_KINDS:
        return BUILTIN_CONFIGS[kind]
    return method_class(kind).config_model


def spec_config(spec: MethodSpec) -> dict[str, Any]:
    """``spec.config`` with every default of its kind's model filled in (as written where there is none).

    This is what the run identity hashes (:meth:`MethodSpec.fingerprint`), so a changed
    default changes the run id of every spec that relies on it.
    """
    model = config_model(spec.kind)
    if model is None:
        return dict(spec.config)
    return parse_config(model, spec.config, f"method {spec.name!r}").resolved()


def method_class(kind: str) -> type[Method]:
    """The class implementing ``kind`` (a built-in, an entry point, or ``module:Class``)."""
    if kind in BUILTIN_KINDS:
        return _import(BUILTIN_KINDS[kind])
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == kind:
            cls = ep.load()
            if not _is_method(cls):
                raise UnknownNameError(f"entry point {ep.value!r} ({kind}) is not a Method subclass.")
            return cls
    if ":" in kind:
        return _import(kind)
    raise unknown("method kind", kind, available_kinds())


def build_method(spec: MethodSpec) -> Method:
    """Instantiate the method a spec describes."""
    return method_class(spec.kind)(spec)


def outside_method_spec(name: str) -> MethodSpec | None:
    """A default spec for a method that lives in an outside package, or None if ``name`` is not one.

    ``name`` is an entry-point name of the ``genseg_bench.methods`` group or a
    ``package.module:Class`` path. The class may set ``spec_defaults`` (a dict of
    :class:`MethodSpec` fields: ``description``, ``backbone``, ``encoder``, ``config``
    ...) so that the leaderboard can show its backbone; the class docstring is the
    description otherwise. Built-in kinds are not methods by themselves (their
    configurations are the specs of ``baselines/*.toml``), so they return None.
    """
    if name in BUILTIN_KINDS:
        return None
    if ":" not in name and name not in {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}:
        return None
    cls = method_class(name)
    defaults = dict(getattr(cls, "spec_defaults", {}) or {})
    doc = (cls.__doc__ or "").strip().splitlines()
    defaults.setdefault("description", doc[0] if doc else f"outside method {name}")
    try:
        return MethodSpec(name=name, kind=name, **defaults)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise UnknownNameError(
            f"{name!r}: its spec_defaults are not valid MethodSpec fields ({exc})."
        ) from exc
