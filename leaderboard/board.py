"""What the leaderboard shows, as plain data: ranked tables, separability, curves, efficiency factors.

Everything is computed by the library's own functions (``report.aggregate`` and
``report.paired_tests`` for the numbers, ``curves`` for the curves and factors),
so the leaderboard and ``genseg-bench report`` / ``curves`` never disagree.

Separability of neighbouring ranks: a two-sided paired t-test across seeds
(runs paired by seed) between each method and the one ranked just below it,
with the Holm-Bonferroni correction over the neighbour pairs of one table (one
task, test set and training size), at alpha = 0.05. Holm controls the
family-wise error rate without assuming the tests are independent (neighbour
pairs share a method, so they are not), and is uniformly more powerful than
plain Bonferroni.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from genseg_bench import report as rep
from genseg_bench.curves import Curve, Efficiency, curves_from_rows, efficiency
from genseg_bench.specs import RunResult, TaskSpec

ALPHA = 0.05
STATS_NOTE = (
    "Ranks: methods ordered by mean score over seeds (± sample std, ddof = 1). "
    "Separability (column “vs next”): two-sided paired t-test across seeds between each method and "
    "the next-ranked one (runs paired by seed), Holm–Bonferroni correction over the neighbour pairs "
    f"of each table, α = {ALPHA}. ≻ separable, ≈ not separable, n/a: fewer than two paired seeds "
    "or identical differences across seeds."
)


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (None stays None and is not counted in the family)."""
    present = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    m = len(present)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for k, (p, i) in enumerate(present):
        running = max(running, min(1.0, (m - k) * p))
        out[i] = running
    return out


@dataclass(frozen=True)
class RankedRow:
    """One method in a ranked table and its comparison with the method ranked just below it."""

    rank: int | None  # None: no successful seed
    row: rep.ReportRow
    backbone: str
    p_next: float | None = None
    p_next_holm: float | None = None
    next_method: str | None = None

    @property
    def separable_from_next(self) -> bool | None:
        return None if self.p_next_holm is None else self.p_next_holm < ALPHA


@dataclass(frozen=True)
class Table:
    task: TaskSpec
    test_set: str
    domain: str
    train_size: int
    rows: list[RankedRow]


@dataclass(frozen=True)
class CurvePanel:
    """Sample-efficiency curves of one test set, and factors against a base method."""

    task: TaskSpec
    test_set: str
    curves: list[Curve]
    base: str | None
    factors: list[Efficiency] = field(default_factory=list)


def rank_table(
    task: TaskSpec, results: list[RunResult], rows: list[rep.ReportRow], backbones: dict[str, str]
) -> list[RankedRow]:
    """Rows of one (test set, size) cell ranked by mean, with Holm-corrected neighbour tests."""
    ok = sorted((r for r in rows if r.n_seeds > 0), key=lambda r: (-r.mean, r.method))
    raw: list[float | None] = []
    for upper, lower in zip(ok, ok[1:], strict=False):
        tests = rep.paired_tests(task, results, upper.method, lower.method)
        match = [t for t in tests if t.train_size == upper.train_size and t.test_set == upper.test_set]
        raw.append(match[0].p_value if match else None)
    adjusted = holm(raw)
    ranked = []
    rank = 0
    for i, r in enumerate(ok):
        # equal means share a rank (competition ranking: 1, 1, 3)
        if i == 0 or not math.isclose(r.mean, ok[i - 1].mean, rel_tol=0, abs_tol=1e-12):
            rank = i + 1
        nxt = i < len(ok) - 1
        ranked.append(
            RankedRow(
                rank=rank,
                row=r,
                backbone=backbones.get(r.method, ""),
                p_next=raw[i] if nxt else None,
                p_next_holm=adjusted[i] if nxt else None,
                next_method=ok[i + 1].method if nxt else None,
            )
        )
    ranked += [RankedRow(None, r, backbones.get(r.method, "")) for r in rows if r.n_seeds == 0]
    return ranked


def backbones_of(results: list[RunResult]) -> dict[str, str]:
    """Each method's backbone, as recorded in its results (so outside methods show theirs too)."""
    out: dict[str, str] = {}
    for r in results:
        b = r.method_config.get("backbone")
        if isinstance(b, str) and b:
            out.setdefault(r.spec.method, b)
    return out


def task_tables(task: TaskSpec, results: list[RunResult], backbones: dict[str, str]) -> list[Table]:
    """Every (test set, size) table of a task, test sets in task order, sizes ascending."""
    res = [r for r in results if r.spec.task == task.id]
    rows = rep.aggregate(task, res)
    domains = {ts.name: ts.domain for ts in task.test_sets}
    tables = []
    for ts in task.test_sets:
        for n in sorted({r.train_size for r in rows if r.test_set == ts.name}):
            cell = [r for r in rows if r.test_set == ts.name and r.train_size == n]
            tables.append(Table(task, ts.name, domains[ts.name], n, rank_table(task, res, cell, backbones)))
    return tables


def default_base(curves: list[Curve]) -> str | None:
    """The method factors are computed against by default: the weakest one at the largest shared size.

    The paper's factors read "GenSeg needs N times fewer labels than its
    backbone", i.e. a stronger method over a weaker base; taking the weakest
    curve as the base makes every other method's factor read that way.
    """
    have = [c for c in curves if len(c.points) >= 2]
    if not have:
        return None
    shared = set.intersection(*(set(c.sizes) for c in have))
    at = max(shared) if shared else None

    def level(c: Curve) -> float:
        pts = [p for p in c.points if p.size == at] if at is not None else c.points
        return sum(p.mean for p in pts) / len(pts)

    return min(have, key=lambda c: (level(c), c.method)).method


def curve_panels(
    task: TaskSpec, results: list[RunResult], methods: list[str] | None = None, base: str | None = None
) -> list[CurvePanel]:
    """Curves of every test set that has at least two sizes, with factors of each method over ``base``."""
    res = [r for r in results if r.spec.task == task.id]
    all_curves = curves_from_rows(rep.aggregate(task, res), methods)
    panels = []
    for ts in task.test_sets:
        cs = [c for c in all_curves if c.test_set == ts.name]
        if not any(len(c.points) >= 2 for c in cs):
            continue
        b = base if base in {c.method for c in cs} else default_base(cs)
        factors: list[Efficiency] = []
        base_curve = next((c for c in cs if c.method == b), None)
        if base_curve is not None:
            for c in cs:
                if c.method != b:
                    factors += efficiency(c, base_curve)
        panels.append(CurvePanel(task, ts.name, cs, b, factors))
    return panels
