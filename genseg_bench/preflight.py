"""Checks a grid passes before any data is read or torch is imported: what ``run`` and ``run --dry-run`` share.

Each one fails a whole grid once, with the fix, instead of recording a failed run per
cell minutes later; the dry run calls them too, so it never lists as "todo" a job
that could not start. Torch-free (the dry run of a login node must not import it).
"""

from __future__ import annotations

from collections.abc import Sequence

from genseg_bench.errors import SpecError
from genseg_bench.specs import MethodSpec, TaskSpec


def check_unlabelled(task: TaskSpec, methods: Sequence[MethodSpec]) -> None:
    """A semi-supervised method (its config model says ``needs_unlabelled``) needs a task with a pool.

    Checked before any data is read, so a grid fails in a second instead of recording
    a failed run per cell; each method's ``fit`` checks again for library callers.
    """
    from genseg_bench.methods.registry import config_model

    if task.unlabelled is not None:
        return
    needy = [m.name for m in methods if getattr(config_model(m.kind), "needs_unlabelled", False)]
    if needy:
        raise SpecError(
            f"method(s) {', '.join(needy)} are semi-supervised and need an unlabelled pool, but task "
            f"{task.id!r} has none. Run them on a semi-supervised task (one with an `unlabelled` key, "
            "e.g. semisup-cvc-clinicdb or synthetic-semi), or give this task "
            '`unlabelled = { source = "<its train source>", size = 1000 }`.'
        )


def check_requirements(methods: Sequence[MethodSpec]) -> None:
    """Every optional package the methods' kinds need is installed (``MethodConfig.requires``).

    Before any data is read: a grid that names ``nnunet`` without ``nnunetv2`` fails
    once, with the install command, instead of recording a failed run per cell.
    """
    import importlib.util

    from genseg_bench.methods.registry import config_model

    missing: dict[tuple[str, str], list[str]] = {}
    for m in methods:
        need = getattr(config_model(m.kind), "requires", None)
        if need is not None and importlib.util.find_spec(need[0]) is None:
            missing.setdefault(need, []).append(m.name)
    if missing:
        raise SpecError(
            "; ".join(
                f"method(s) {', '.join(names)} need the package {module!r}, which is not installed: {hint}"
                for (module, hint), names in missing.items()
            )
            + ". Or leave those methods out (--methods)."
        )
