"""What the leaderboard shows, as plain data: ranked tables, separability, curves, efficiency factors.

The Gradio front end (``ui.py``) only lays these out; every row, filter and
column is defined here, so it is tested without a browser or gradio.

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
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from genseg_bench import report as rep
from genseg_bench.curves import Curve, Efficiency, curves_from_rows, efficiency
from genseg_bench.report import holm  # the one Holm step-down, shared with the report and the pages
from genseg_bench.specs import RunResult, TaskSpec

from .data import Snapshot

ALPHA = rep.ALPHA
STATS_NOTE = (
    "Ranks: methods ordered by mean score over seeds (± sample std, ddof = 1). "
    "Separability (column “vs next”): two-sided paired t-test across seeds between each method and "
    "the next-ranked one (runs paired by seed), Holm–Bonferroni correction over the neighbour pairs "
    f"of each table, α = {ALPHA}. ≻ separable, ≈ not separable, n/a: fewer than two paired seeds "
    "or identical differences across seeds."
)


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
    """The ranked rows of one task, test set, training size and shared run context."""

    task: TaskSpec
    test_set: str
    domain: str
    train_size: int
    rows: list[RankedRow]
    profile: str = ""
    budget: str = ""
    context: tuple[str, ...] = ()
    """:attr:`report.RunContext.shared` of every row: rows of different contexts are never ranked together."""


@dataclass(frozen=True)
class CurvePanel:
    """Sample-efficiency curves of one test set, and factors against a base method."""

    task: TaskSpec
    test_set: str
    curves: list[Curve]
    base: str | None
    factors: list[Efficiency] = field(default_factory=list)
    profile: str = ""
    budget: str = ""
    """Profile and budget of every curve (a panel never mixes run contexts)."""


def _label_method(label: str) -> str:
    """The method name behind a report row's label (runs on resampled subsets carry a suffix)."""
    return label.removesuffix(rep.RESAMPLED)


def shared_contexts(task: TaskSpec, results: list[RunResult]) -> dict[str, tuple[str, ...]]:
    """Each run context's key (:attr:`ReportRow.context`) -> its shared part (:attr:`RunContext.shared`).

    Two methods' rows are compared (ranked together, tested, put on one plot)
    only when their runs share profile, budget, profile settings, data and task
    version, as ``report.paired_tests`` pairs them.
    """
    ctxs = (rep.run_context(task, r) for r in results if r.spec.task == task.id)
    return {c.key(): c.shared for c in ctxs}


def rank_table(
    task: TaskSpec,
    results: list[RunResult],
    rows: list[rep.ReportRow],
    backbones: dict[str, str],
    context: tuple[str, ...] = (),
) -> list[RankedRow]:
    """Rows of one (test set, size, context) cell ranked by mean, with Holm-corrected neighbour tests.

    A method with two rows in the cell (runs of two method configs) has no
    unambiguous test against its neighbours: its neighbour tests are "n/a".
    """
    ok = sorted((r for r in rows if r.n_seeds > 0), key=lambda r: (-r.mean, r.method))
    raw: list[float | None] = []
    for upper, lower in zip(ok, ok[1:], strict=False):
        tests = rep.paired_tests(task, results, upper.method, lower.method)
        match = [
            t
            for t in tests
            if t.train_size == upper.train_size and t.test_set == upper.test_set and t.context == context
        ]
        raw.append(match[0].p_value if len(match) == 1 and upper.method != lower.method else None)
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
                backbone=backbones.get(_label_method(r.method), ""),
                p_next=raw[i] if nxt else None,
                p_next_holm=adjusted[i] if nxt else None,
                next_method=ok[i + 1].method if nxt else None,
            )
        )
    ranked += [RankedRow(None, r, backbones.get(_label_method(r.method), "")) for r in rows if r.n_seeds == 0]
    return ranked


def config_values(results: list[RunResult], key: str) -> dict[str, str]:
    """Each method's ``key`` (backbone, kind) as recorded in its results, so outside methods show theirs too."""
    out: dict[str, str] = {}
    for r in results:
        v = r.method_config.get(key)
        if isinstance(v, str) and v:
            out.setdefault(r.spec.method, v)
    return out


def backbones_of(results: list[RunResult]) -> dict[str, str]:
    """Each method's backbone (supervised and GenSeg specs record it in their config)."""
    return config_values(results, "backbone")


def task_tables(task: TaskSpec, results: list[RunResult], backbones: dict[str, str]) -> list[Table]:
    """Every (test set, size, shared context) table of a task: test sets in task order, sizes ascending."""
    res = [r for r in results if r.spec.task == task.id]
    rows = rep.aggregate(task, res)
    shared = shared_contexts(task, res)
    domains = {ts.name: ts.domain for ts in task.test_sets}
    cells: dict[tuple[str, int, tuple[str, ...]], list[rep.ReportRow]] = {}
    for r in rows:
        cells.setdefault((r.test_set, r.train_size, shared.get(r.context, ())), []).append(r)
    order = {ts.name: i for i, ts in enumerate(task.test_sets)}
    tables = []
    for ts, n, ctx in sorted(cells, key=lambda k: (order.get(k[0], len(order)), k[1], k[2])):
        cell = cells[(ts, n, ctx)]
        ranked = rank_table(task, res, cell, backbones, ctx)
        tables.append(Table(task, ts, domains.get(ts, ""), n, ranked, cell[0].profile, cell[0].budget, ctx))
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
    """Curves per test set and shared run context with at least two sizes, and factors over ``base``.

    The default base is :func:`default_base`; a ``base`` without a curve in a
    panel falls back to it there.
    """
    res = [r for r in results if r.spec.task == task.id]
    shared = shared_contexts(task, res)
    rows = rep.aggregate(task, res)
    facts = {r.context: (r.profile, r.budget) for r in rows}
    all_curves = curves_from_rows(rows, methods)
    panels = []
    for ts in task.test_sets:
        groups: dict[tuple[str, ...], list[Curve]] = {}
        for c in all_curves:
            if c.test_set == ts.name:
                groups.setdefault(shared.get(c.context, ()), []).append(c)
        for _, cs in sorted(groups.items()):
            if not any(len(c.points) >= 2 for c in cs):
                continue
            b = base if base in {c.method for c in cs} else default_base(cs)
            factors: list[Efficiency] = []
            base_curve = next((c for c in cs if c.method == b), None)
            if base_curve is not None:
                for c in cs:
                    if c is not base_curve:
                        factors += efficiency(c, base_curve)
            profile, budget = facts.get(cs[0].context, ("", ""))
            panels.append(CurvePanel(task, ts.name, cs, b, factors, profile, budget))
    return panels


def kinds_of(results: list[RunResult]) -> dict[str, str]:
    """Each method's kind (supervised, genseg, semi-supervised, an outside method's own)."""
    return config_values(results, "kind")


@dataclass(frozen=True)
class Column:
    """One column of the leaderboard table: its header, whether it is shown by default, and what it means."""

    name: str
    default: bool
    help: str
    numeric: bool = False


COLUMNS: tuple[Column, ...] = (
    Column("rank", True, "rank by mean score within the task, test set, training size and profile", True),
    Column("task", True, "task id"),
    Column("test set", True, "test set of the task"),
    Column("domain", False, "in-domain or out-of-domain test set"),
    Column("n", True, "training size: labelled images in total (train + validation)", True),
    Column("profile", True, "the profile of the runs (rows of different profiles are ranked apart)"),
    Column("budget", True, "iterations × batch size of the profile"),
    Column("method", True, "method"),
    Column("kind", False, "method kind (supervised, genseg, an outside method's own)"),
    Column("backbone", True, "segmentation backbone"),
    Column("score", True, "metric, mean ± sample std over seeds"),
    Column("mean", False, "mean score over seeds (full precision in the CSV)", True),
    Column("std", False, "sample std over seeds (ddof = 1)", True),
    Column("seeds", True, "successful seeds", True),
    Column("failed", False, "failed runs", True),
    Column("paper", True, "the paper's number for this cell, with its figure"),
    Column(
        "Δ paper", True, "measured minus paper (a gain minus the paper's gain for a gain reference)", True
    ),
    Column("vs next", True, "separable from the next rank? ≻ yes, ≈ no (paired t-test, Holm)"),
    Column("p", False, "paired t-test p-value vs the next rank, uncorrected", True),
    Column("p Holm", False, "Holm-adjusted p-value vs the next rank", True),
    Column("images seen", True, "images the segmenter processed in training (mean over seeds)", True),
    Column("updates", False, "optimiser updates of the segmenter (mean over seeds)", True),
    Column("train+val", False, "how the n labelled images split into training and validation"),
    Column("organ", False, "organ or structure"),
    Column("modality", False, "imaging modality"),
    Column("dims", False, "2D or 3D"),
    Column("metric", False, "the task's metric"),
    Column("flags", False, "warnings about runs that did not really train"),
)
COLUMN_NAMES = tuple(c.name for c in COLUMNS)
DEFAULT_COLUMNS = tuple(c.name for c in COLUMNS if c.default)


@dataclass(frozen=True)
class Filters:
    """What the table shows. Each tuple is a set of accepted values; an empty one accepts all.

    ``backbones`` and ``kinds`` choose the methods that are ranked (ranks and the
    neighbour tests are computed among them); ``query`` only hides rows, so the
    ranks of the rows it keeps stay those of the full table.
    """

    query: str = ""
    tasks: tuple[str, ...] = ()
    organs: tuple[str, ...] = ()
    modalities: tuple[str, ...] = ()
    dims: tuple[str, ...] = ()
    sizes: tuple[int, ...] = ()
    backbones: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()

    def keeps_task(self, task: TaskSpec) -> bool:
        return (
            (not self.tasks or task.id in self.tasks)
            and (not self.organs or task.organ in self.organs)
            and (not self.modalities or task.modality in self.modalities)
            and (not self.dims or f"{task.dims}D" in self.dims)
        )

    def matches(self, row: Mapping[str, Any]) -> bool:
        """The search: every whitespace-separated word is in the method, backbone, kind or task (any case)."""
        text = " ".join(str(row[k]) for k in ("method", "backbone", "kind", "task")).lower()
        return all(word in text for word in self.query.lower().split())


def _sep_text(r: RankedRow) -> str:
    if r.next_method is None:
        return ""
    if r.p_next_holm is None:
        return "n/a"
    return f"{'≻' if r.separable_from_next else '≈'} {r.next_method} (p Holm {r.p_next_holm:.3f})"


def table_row(task: TaskSpec, t: Table, r: RankedRow, kind: str) -> dict[str, Any]:
    """One ranked row as a record with every column, numbers at full precision (the CSV's values)."""
    row = r.row
    ok = row.n_seeds > 0
    split = f"{row.n_train}+{row.n_val}" if row.n_train is not None else ""
    return {
        "rank": r.rank,
        "task": task.id,
        "test set": t.test_set,
        "domain": "in" if t.domain == "in" else "out",
        "n": t.train_size,
        "profile": row.profile,
        "budget": row.budget,
        "method": row.method,
        "kind": kind,
        "backbone": r.backbone,
        "score": rep.score_text(row.mean, row.std, row.n_seeds) if ok else "–",
        "mean": row.mean if ok else None,
        "std": row.std if row.n_seeds > 1 else None,  # one seed has no spread: a 0 would claim one
        "seeds": row.n_seeds,
        "failed": row.failed,
        "paper": "" if row.paper is None else rep.paper_cell(row),
        "Δ paper": row.delta if ok else None,
        "vs next": _sep_text(r),
        "p": r.p_next,
        "p Holm": r.p_next_holm,
        "images seen": row.images_seen,
        "updates": row.updates,
        "train+val": split,
        "organ": task.organ,
        "modality": task.modality,
        "dims": f"{task.dims}D",
        "metric": row.metric,
        "flags": "; ".join(row.flags),
    }


def ranked_rows(
    snap: Snapshot, backbones: tuple[str, ...] = (), kinds: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """Every ranked row of the methods with these backbones and kinds (empty: all), in table order.

    Tasks in id order, then test set (task order), size, rank. This is the
    costly part (one paired test per neighbour pair); the other filters only
    pick rows out of it, which is why :class:`RowCache` keeps it per choice of
    methods.
    """
    bb = backbones_of(snap.results)
    kd = kinds_of(snap.results)
    results = [
        r
        for r in snap.results
        if (not backbones or bb.get(r.spec.method, "") in backbones)
        and (not kinds or kd.get(r.spec.method, "") in kinds)
    ]
    out: list[dict[str, Any]] = []
    for tid in sorted({r.spec.task for r in results}):
        task = snap.tasks.get(tid)
        if task is None:
            continue
        for t in task_tables(task, results, bb):
            out += [table_row(task, t, r, kd.get(_label_method(r.row.method), "")) for r in t.rows]
    return out


def select_rows(rows: list[dict[str, Any]], snap: Snapshot, f: Filters) -> list[dict[str, Any]]:
    """The rows of the filters' tasks and sizes that match the search."""
    return [
        r
        for r in rows
        if f.keeps_task(snap.tasks[r["task"]]) and (not f.sizes or r["n"] in f.sizes) and f.matches(r)
    ]


def board_rows(snap: Snapshot, f: Filters = Filters()) -> list[dict[str, Any]]:
    """Every ranked row the filters keep (see :class:`Filters` for which filters re-rank)."""
    return select_rows(ranked_rows(snap, f.backbones, f.kinds), snap, f)


class RowCache:
    """:func:`board_rows` with the ranking kept per snapshot and choice of methods (at most ``maxsize``).

    A new snapshot (a refresh of the source) empties the cache. Rows are shared
    between callers: treat them as read-only.
    """

    def __init__(self, maxsize: int = 32) -> None:
        self.maxsize = maxsize
        self._snap: Snapshot | None = None
        self._ranked: dict[tuple[tuple[str, ...], tuple[str, ...]], list[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def rows(self, snap: Snapshot, f: Filters = Filters()) -> list[dict[str, Any]]:
        key = (tuple(sorted(f.backbones)), tuple(sorted(f.kinds)))
        with self._lock:
            if snap is not self._snap:
                self._snap, self._ranked = snap, {}
            ranked = self._ranked.get(key)
        if ranked is None:
            ranked = ranked_rows(snap, *key)
            with self._lock:
                if snap is self._snap:
                    if len(self._ranked) >= self.maxsize:
                        self._ranked.pop(next(iter(self._ranked)))
                    self._ranked[key] = ranked
        return select_rows(ranked, snap, f)


@dataclass(frozen=True)
class Choices:
    """The values each filter offers, from the results of a snapshot."""

    tasks: list[str]
    organs: list[str]
    modalities: list[str]
    dims: list[str]
    sizes: list[int]
    backbones: list[str]
    kinds: list[str]
    methods: list[str]
    curve_tasks: list[str]
    """Tasks with at least two training sizes of one method (the others have no curve)."""


def choices(snap: Snapshot) -> Choices:
    task_ids = sorted({r.spec.task for r in snap.results} & set(snap.tasks))
    tasks = [snap.tasks[t] for t in task_ids]
    sizes_of: dict[tuple[str, str], set[int]] = {}
    for r in snap.results:
        if r.status == "ok":
            sizes_of.setdefault((r.spec.task, r.spec.method), set()).add(r.spec.train_size)
    curve_tasks = sorted({t for (t, _), s in sizes_of.items() if len(s) >= 2 and t in snap.tasks})
    return Choices(
        tasks=task_ids,
        organs=sorted({t.organ for t in tasks}),
        modalities=sorted({t.modality for t in tasks}),
        dims=sorted({f"{t.dims}D" for t in tasks}),
        sizes=sorted({r.spec.train_size for r in snap.results if r.spec.task in snap.tasks}),
        backbones=sorted(set(backbones_of(snap.results).values())),
        kinds=sorted(set(kinds_of(snap.results).values())),
        methods=sorted({r.spec.method for r in snap.results}),
        curve_tasks=curve_tasks,
    )


def unknown_tasks(snap: Snapshot) -> list[str]:
    """Tasks of the results that have no spec in the snapshot (shown as a note, not as tables)."""
    return sorted({r.spec.task for r in snap.results} - set(snap.tasks))


def efficiency_rows(panel: CurvePanel) -> list[dict[str, Any]]:
    """The data-efficiency factors of a panel as records (factor: how many times fewer labels than the base)."""
    return [
        {
            "method": e.method_a,
            f"n ({e.method_b})": e.size,
            f"{e.method_b} score": e.target,
            "labels needed": e.labels_text(),
            "factor": e.factor_text(),
            "factor value": e.factor,
            "bound": e.bound,
        }
        for e in panel.factors
    ]


def records_csv(rows: Iterable[Mapping[str, Any]], columns: Iterable[str]) -> str:
    """Rows as CSV text with the given columns; numbers at full precision, missing values empty."""
    import csv
    import io

    cols = list(columns)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row.get(c) for c in cols])
    return buf.getvalue()
