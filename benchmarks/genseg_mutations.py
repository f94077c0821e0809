"""Mutation check of GenSeg's tests: each wrong implementation must fail a test in tests/methods/.

    OMP_NUM_THREADS=1 python benchmarks/genseg_mutations.py            # every mutation, every test
    OMP_NUM_THREADS=1 python benchmarks/genseg_mutations.py --list
    OMP_NUM_THREADS=1 python benchmarks/genseg_mutations.py --only s-prime-sign arch-ascends

Every mutation is a text edit of ``genseg_bench/methods/genseg.py`` that a plausible
bug would make (a flipped sign in Eq. 5 / 7, a dropped term of g_S, a maximising
architecture optimiser, a segmenter step without the generated half, a lookahead
that forgets momentum, the step count or the detached second moment). For each, the
script writes the mutated source to a temporary file and runs pytest on
``tests/methods/`` in a subprocess, with this file loaded as a pytest plugin that
installs an import hook: ``genseg_bench.methods.genseg`` is imported from the
temporary file instead of the package. The real source file is never written, so
an interrupted run (Ctrl-C included) leaves nothing to restore; the temporary
directory is removed on exit.

First the unmutated source is run through the same hook (the tests must pass, and
the hook must have loaded the temporary copy, which the plugin checks). Then one
line per mutation: ``CAUGHT`` with the failing tests, or ``MISSED``. Exit status 1
when any mutation is missed, when the baseline fails, or when a mutation no
longer applies (its text is not found exactly once: the code changed, update the
mutation).
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET = REPO / "genseg_bench" / "methods" / "genseg.py"
MODULE = "genseg_bench.methods.genseg"
ENV = "GENSEG_MUTANT_SOURCE"


@dataclass(frozen=True)
class Mutation:
    name: str
    what: str
    edits: tuple[tuple[str, str], ...]
    """(old, new) text replacements; each ``old`` must occur exactly once in the source."""

    def apply(self, source: str) -> str:
        for old, new in self.edits:
            n = source.count(old)
            if n != 1:
                raise ValueError(f"mutation {self.name!r}: {old[:60]!r}... occurs {n} times (expected once)")
            source = source.replace(old, new)
        return source


MUTATIONS: tuple[Mutation, ...] = (
    Mutation(
        "g-prime-sign",
        "G' = G + eta grad_G L_gan (Eq. 5 with the sign flipped, both lookaheads)",
        (
            (
                "g_rule(list(g_params.values()), g_grads)",
                "g_rule(list(g_params.values()), [-g for g in g_grads])",
            ),
        ),
    ),
    Mutation(
        "s-prime-sign",
        "S' = S + eta g_S (Eq. 7 with the sign flipped, both lookaheads)",
        (("s_rule(s_list, s_grads)", "s_rule(s_list, [-g for g in s_grads])"),),
    ),
    Mutation(
        "gamma-real-dropped",
        "g_S without the gamma * L_seg(S, real pairs) term",
        (
            (
                "s_grads = tuple(g + gamma * r for g, r in zip(s_grads, real_grads, strict=True))",
                "s_grads = tuple(g + 0.0 * r for g, r in zip(s_grads, real_grads, strict=True))",
            ),
        ),
    ),
    Mutation(
        "arch-ascends",
        "the architecture optimiser maximises L_val (Adam with maximize=True)",
        (
            (
                "self.opt_a = _adam(self.arch, profile.arch_lr, profile.arch_weight_decay) if self.arch else None",
                "self.opt_a = (torch.optim.Adam(self.arch, lr=profile.arch_lr, betas=(0.5, 0.999), "
                "weight_decay=profile.arch_weight_decay, maximize=True) if self.arch else None)",
            ),
        ),
    ),
    Mutation(
        "s-step-real-only",
        "the real S step ignores the generated data (RMSprop on gamma * grad L_seg(S, real) only)",
        (
            (
                "_apply(self.opt_s, self.s_params, step.s_grads)",
                "_apply(self.opt_s, self.s_params, _grads(cfg.gamma * seg_loss(self.seg(batch.images), "
                "batch.masks), self.s_params, False))",
            ),
        ),
    ),
    Mutation(
        "rmsprop-lookahead-no-momentum",
        "optimizer lookahead of S without the momentum buffer (buf' = g / (sqrt(v') + eps))",
        (
            (
                'c.add_(state["momentum_buffer"], alpha=-lr * mu)',
                'c.add_(state["momentum_buffer"], alpha=0.0)',
            ),
        ),
    ),
    Mutation(
        "adam-lookahead-step-count",
        "optimizer lookahead of G bias-corrects with the current step count, not the next one",
        (
            (
                't = int(state["step"]) + 1 if warm else 1',
                't = max(int(state["step"]), 1) if warm else 1',
            ),
        ),
    ),
    Mutation(
        "adam-lookahead-v-not-detached",
        "optimizer lookahead of G differentiates through its second moment v' (not a constant)",
        (
            (
                "            with torch.no_grad():\n"
                "                d = g + wd * p if wd else g  # torch's Adam",
                "            with torch.enable_grad():\n"
                "                d = g + wd * p if wd else g  # torch's Adam",
            ),
            (
                "inv = v.sqrt_().div_(math.sqrt(1 - beta2**t)).add_(eps).reciprocal_()",
                "inv = 1 / (v.sqrt() / math.sqrt(1 - beta2**t) + eps)",
            ),
        ),
    ),
)


# --- the pytest plugin side: loaded in the subprocess with `-p genseg_mutations` --------------


class _MutantFinder(importlib.abc.MetaPathFinder):
    """Resolves ``genseg_bench.methods.genseg`` to the mutated temporary file, nothing else."""

    def __init__(self, path: str) -> None:
        self.path = path

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != MODULE:
            return None
        return importlib.util.spec_from_file_location(fullname, self.path)


PLUGIN = "genseg_mutations"
"""The name pytest imports this file under (``-p genseg_mutations``); any other import is inert."""

if os.environ.get(ENV) and __name__ == PLUGIN:
    if MODULE in sys.modules:
        raise RuntimeError(f"{MODULE} was imported before the mutation plugin: the hook would not apply")
    sys.meta_path.insert(0, _MutantFinder(os.environ[ENV]))

    def pytest_sessionfinish(session: object, exitstatus: int) -> None:
        """Fail loudly if the tests ran against anything but the temporary copy."""
        mod = sys.modules.get(MODULE)
        loaded = getattr(mod, "__file__", None)
        if loaded != os.environ[ENV]:
            print(f"\nMUTANT-NOT-LOADED: {MODULE} came from {loaded}", flush=True)
        else:
            print(f"\nMUTANT-LOADED: {loaded}", flush=True)


# --- the driver ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    rc: int
    failed: list[str]
    loaded: bool
    seconds: float
    tail: str


def run_tests(source: str, workdir: Path, tests: Sequence[str], extra: Sequence[str]) -> Outcome:
    path = workdir / "genseg.py"
    path.write_text(source)
    env = {
        **os.environ,
        ENV: str(path),
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH", "")]
        ),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.setdefault("OMP_NUM_THREADS", "1")
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        *tests,
        "-q",
        "-p",
        PLUGIN,
        "-p",
        "no:cacheprovider",
        "--tb=no",
        "-rfE",
        *extra,
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    failed = [m.group(1) for m in re.finditer(r"^(?:FAILED|ERROR) (\S+)", out, re.M)]
    return Outcome(proc.returncode, failed, "MUTANT-LOADED:" in out, time.perf_counter() - start, out[-3000:])


def _summary(test_ids: Sequence[str]) -> str:
    """``file::test [k params]`` per test function, in order of first failure."""
    counts: dict[str, int] = {}
    for t in test_ids:
        name = t.split("/")[-1].split("[")[0]
        counts[name] = counts.get(name, 0) + 1
    return "; ".join(f"{n}" + (f" [{k}]" if k > 1 else "") for n, k in counts.items())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run these mutations only")
    ap.add_argument(
        "--tests", nargs="+", default=["tests/methods"], help="pytest targets (default: tests/methods)"
    )
    ap.add_argument("--maxfail", type=int, default=None, help="stop each pytest run after this many failures")
    args = ap.parse_args()
    if args.list:
        for m in MUTATIONS:
            print(f"{m.name:32s} {m.what}")
        return 0
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    unknown = set(args.only or ()) - {m.name for m in MUTATIONS}
    if unknown:
        print(f"unknown mutations {sorted(unknown)}; --list shows them", file=sys.stderr)
        return 2
    extra = [f"--maxfail={args.maxfail}"] if args.maxfail else []
    original = TARGET.read_text()
    try:  # every mutation must still apply to today's source before anything runs
        mutants = {m.name: m.apply(original) for m in chosen}
    except ValueError as exc:
        print(f"STALE MUTATION: {exc}", file=sys.stderr)
        return 1

    with tempfile.TemporaryDirectory(prefix="genseg-mutants-") as tmp:
        work = Path(tmp)
        base = run_tests(original, work, args.tests, [])
        ok = base.rc == 0 and base.loaded
        print(
            f"{'baseline':32s} {'PASS' if ok else 'FAIL'} ({base.seconds:.0f} s; unmutated copy via the import hook)",
            flush=True,
        )
        if not ok:
            print(base.tail)
            return 1
        missed = []
        for m in chosen:
            out = run_tests(mutants[m.name], work, args.tests, extra)
            if not out.loaded:
                print(f"{m.name:32s} ERROR (the mutant was not loaded)\n{out.tail}")
                return 1
            if out.rc == 0:
                missed.append(m.name)
                print(f"{m.name:32s} MISSED  ({m.what})", flush=True)
            elif out.rc == 1 and out.failed:  # 1: tests ran and some failed (2+: collection / usage errors)
                print(f"{m.name:32s} CAUGHT  by {len(out.failed)}: {_summary(out.failed)}", flush=True)
            else:
                print(f"{m.name:32s} ERROR   pytest exit {out.rc} without failing tests\n{out.tail}")
                return 1
    assert TARGET.read_text() == original  # nothing above writes the real file; make sure
    print(f"{len(chosen) - len(missed)}/{len(chosen)} mutations caught")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
