"""The mutation script (benchmarks/genseg_mutations.py) still applies to today's genseg.py.

Running the mutations takes minutes (a pytest run each), so the suite does not run
them; it checks that every mutation's text is found exactly once and that the
mutant still compiles, so a refactor of genseg.py that silently retires a mutation
fails here and the script is updated with it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "genseg_mutations.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("genseg_mutations_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


SCRIPT_MODULE = _script()


def test_the_issue_s_mutations_are_all_listed() -> None:
    names = {m.name for m in SCRIPT_MODULE.MUTATIONS}
    assert {"g-prime-sign", "s-prime-sign", "gamma-real-dropped", "arch-ascends", "s-step-real-only"} <= names


@pytest.mark.parametrize("mutation", SCRIPT_MODULE.MUTATIONS, ids=lambda m: m.name)
def test_mutation_applies_and_compiles(mutation: object) -> None:
    source = SCRIPT_MODULE.TARGET.read_text()
    mutant = mutation.apply(source)  # type: ignore[attr-defined]
    assert mutant != source
    compile(mutant, "genseg_mutant.py", "exec")
