"""Tables from results: mean +- std over seeds beside the paper's numbers, and paired tests.

Pure functions from result records to plain data (:class:`ReportRow`,
:class:`PairedTest`); rendering to rich / JSON / Markdown is separate, so the
leaderboard and the CLI show the same numbers.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from scipy import stats

from genseg_bench.metric_policy import EMPTY_POLICY
from genseg_bench.specs import RunResult, TaskSpec


@dataclass(frozen=True)
class ReportRow:
    """One (method, training size, test set) cell aggregated over seeds."""

    method: str
    train_size: int
    test_set: str
    metric: str
    mean: float
    std: float
    n_seeds: int
    seeds: list[int]
    scores: list[float]
    failed: int
    paper: float | None
    paper_kind: str | None
    paper_baseline: str | None
    paper_figure: str | None
    measured_gain: float | None
    n_train: int | None = None
    """Training cases of the n labelled (the rest validate)."""
    n_val: int | None = None
    images_seen: int | None = None
    """Images the segmenter processed in training (real, augmented, generated), mean over seeds."""
    updates: int | None = None
    flags: tuple[str, ...] = ()
    """Warnings about the runs behind this row (see :func:`run_flags`)."""

    @property
    def delta(self) -> float | None:
        """Measured minus paper (for a score) or measured gain minus paper gain."""
        if self.paper is None:
            return None
        if self.paper_kind == "gain":
            return None if self.measured_gain is None else self.measured_gain - self.paper
        return self.mean - self.paper


@dataclass(frozen=True)
class PairedTest:
    """Two-sided paired t-test between two methods across seeds (one pair per seed)."""

    method_a: str
    method_b: str
    train_size: int
    test_set: str
    mean_a: float
    mean_b: float
    mean_diff: float
    n_pairs: int
    t: float | None
    p_value: float | None


RESAMPLED = " [resampled]"
"""Suffix of a method's label for runs whose seeds drew their own labelled subsets."""


def method_label(r: RunResult) -> str:
    """A method's row label: runs on resampled subsets are a different experiment from fixed ones."""
    return r.spec.method + (RESAMPLED if r.spec.subset == "resampled" else "")


def run_flags(r: RunResult) -> list[str]:
    """Warnings that a run did not really train.

    * ``lr collapsed early``: the segmenter's learning rate fell below 1e-3 of its start
      within the first 10 % of the budget (the scheduler froze the run).
    * ``best val = empty prediction``: the best validation score is what predicting
      nothing scores, so the selected checkpoint learned nothing.
    """
    flags = []
    traj = r.trajectory
    its, lrs = traj.get("iteration", []), traj.get("lr", [])
    if its and lrs and r.iterations:
        lr0 = float(lrs[0])
        early = [float(lr) for it, lr in zip(its, lrs, strict=False) if it <= 0.1 * r.iterations]
        if lr0 > 0 and early and min(early) < 1e-3 * lr0:
            flags.append("lr collapsed early")
    empty = r.extras.get("empty_val_score")
    if empty is not None and r.best_val_score is not None and r.best_val_score <= float(empty) + 1e-9:
        flags.append("best val = empty prediction")
    return flags


def _group(
    results: Iterable[RunResult],
) -> tuple[dict[tuple[str, int, str], dict[int, float]], dict[tuple[str, int], int]]:
    scores: dict[tuple[str, int, str], dict[int, float]] = defaultdict(dict)
    failed: dict[tuple[str, int], int] = defaultdict(int)
    for r in results:
        if r.status != "ok":
            failed[(method_label(r), r.spec.train_size)] += 1
            continue
        for ts in r.test_sets:
            scores[(method_label(r), r.spec.train_size, ts)][r.spec.seed] = r.score(ts)
    return scores, failed


def _run_facts(results: Iterable[RunResult]) -> dict[tuple[str, int], dict[str, object]]:
    """Per (method, size): split sizes, mean budget and the union of run flags over ok runs."""
    acc: dict[tuple[str, int], list[RunResult]] = defaultdict(list)
    for r in results:
        if r.status == "ok":
            acc[(method_label(r), r.spec.train_size)].append(r)
    out: dict[tuple[str, int], dict[str, object]] = {}
    for key, runs in acc.items():
        seen = [int(r.budget["images_seen"]) for r in runs if "images_seen" in r.budget]
        ups = [int(r.budget["updates"]) for r in runs if "updates" in r.budget]
        flags: list[str] = []
        for r in runs:
            flags += [f"seed {r.spec.seed}: {f}" for f in run_flags(r)]
        out[key] = {
            "n_train": len(runs[0].train_cases) or None,
            "n_val": len(runs[0].val_cases) or None,
            "images_seen": round(statistics.fmean(seen)) if seen else None,
            "updates": round(statistics.fmean(ups)) if ups else None,
            "flags": tuple(flags),
        }
    return out


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def aggregate(task: TaskSpec, results: list[RunResult]) -> list[ReportRow]:
    """Mean and sample std (ddof = 1) over seeds per method, size and test set, with paper numbers."""
    results = [r for r in results if r.spec.task == task.id]
    scores, failed = _group(results)
    facts = _run_facts(results)
    means = {k: statistics.fmean(v.values()) for k, v in scores.items()}
    # a score reference wins over a gain reference for the same cell (the score is comparable as is)
    ordered = sorted(task.references, key=lambda ref: ref.kind == "score")
    refs = {(ref.method, ref.train_size, ref.test_set): ref for ref in ordered}
    rows = []
    keys = set(scores) | {(m, n, ts.name) for (m, n) in failed for ts in task.test_sets}
    order = {ts.name: i for i, ts in enumerate(task.test_sets)}
    for method, n, ts in sorted(keys, key=lambda k: (k[1], order.get(k[2], 99), k[0])):
        per_seed = scores.get((method, n, ts), {})
        vals = [per_seed[s] for s in sorted(per_seed)]
        ref = refs.get((method, n, ts))
        gain = None
        if (
            ref is not None
            and ref.kind == "gain"
            and ref.baseline
            and (ref.baseline, n, ts) in means
            and vals
        ):
            gain = statistics.fmean(vals) - means[(ref.baseline, n, ts)]
        rows.append(
            ReportRow(
                method=method,
                train_size=n,
                test_set=ts,
                metric=task.metric,
                mean=statistics.fmean(vals) if vals else math.nan,
                std=_std(vals),
                n_seeds=len(vals),
                seeds=sorted(per_seed),
                scores=vals,
                failed=failed.get((method, n), 0),
                paper=ref.value if ref else None,
                paper_kind=ref.kind if ref else None,
                paper_baseline=ref.baseline if ref else None,
                paper_figure=ref.figure if ref else None,
                measured_gain=gain,
                **facts.get((method, n), {}),  # type: ignore[arg-type]
            )
        )
    return rows


def paired_tests(task: TaskSpec, results: list[RunResult], method_a: str, method_b: str) -> list[PairedTest]:
    """Paired t-tests of ``a`` vs ``b`` per size and test set, pairing runs by seed."""
    scores, _ = _group(r for r in results if r.spec.task == task.id)
    out = []
    sizes = sorted({n for (m, n, _) in scores if m in (method_a, method_b)})
    for n in sizes:
        for ts in task.test_sets:
            a = scores.get((method_a, n, ts.name), {})
            b = scores.get((method_b, n, ts.name), {})
            seeds = sorted(set(a) & set(b))
            if not seeds:
                continue
            xa = [a[s] for s in seeds]
            xb = [b[s] for s in seeds]
            diffs = [x - y for x, y in zip(xa, xb, strict=True)]
            t = p = None
            if len(seeds) >= 2 and _std(diffs) > 0:
                res = stats.ttest_rel(xa, xb)
                t, p = float(res.statistic), float(res.pvalue)
            out.append(
                PairedTest(
                    method_a,
                    method_b,
                    n,
                    ts.name,
                    statistics.fmean(xa),
                    statistics.fmean(xb),
                    statistics.fmean(diffs),
                    len(seeds),
                    t,
                    p,
                )
            )
    return out


def _fmt(x: float | None, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def paper_cell(row: ReportRow) -> str:
    if row.paper is None:
        return "-"
    if row.paper_kind == "gain":
        return f"{row.paper:+.3f} vs {row.paper_baseline} ({row.paper_figure})"
    return f"{row.paper:.3f} ({row.paper_figure})"


def table_rows(rows: list[ReportRow]) -> list[list[str]]:
    """Rows as strings: method, n (train + val), test set, mean +- std, seeds, images seen, paper, delta, flags."""
    out = []
    for r in rows:
        score = "-" if r.n_seeds == 0 else f"{r.mean:.3f} ± {r.std:.3f}"
        seeds = f"{r.n_seeds}" + (f" ({r.failed} failed)" if r.failed else "")
        n = str(r.train_size) + (f" ({r.n_train}+{r.n_val})" if r.n_train is not None else "")
        seen = "-" if r.images_seen is None else f"{r.images_seen:,}"
        out.append(
            [
                r.method,
                n,
                r.test_set,
                score,
                seeds,
                seen,
                paper_cell(r),
                _fmt(r.delta, True),
                "; ".join(r.flags) or "-",
            ]
        )
    return out


HEADER = [
    "method",
    "n (train+val)",
    "test set",
    "score (mean ± std)",
    "seeds",
    "images seen",
    "paper",
    "Δ vs paper",
    "flags",
]


def to_markdown(task: TaskSpec, rows: list[ReportRow], tests: list[PairedTest]) -> str:
    lines = [
        f"## {task.id}: {task.description}",
        "",
        f"Metric: {task.metric}. {EMPTY_POLICY} Std is the sample standard deviation over seeds.",
        "",
    ]
    lines.append("| " + " | ".join(HEADER) + " |")
    lines.append("|" + "---|" * len(HEADER))
    lines += ["| " + " | ".join(r) + " |" for r in table_rows(rows)]
    if tests:
        lines += [
            "",
            "Two-sided paired t-test across seeds:",
            "",
            "| a | b | n train | test set | mean a | mean b | a − b | pairs | t | p |",
            "|" + "---|" * 10,
        ]
        lines += [
            f"| {t.method_a} | {t.method_b} | {t.train_size} | {t.test_set} | {t.mean_a:.3f} | {t.mean_b:.3f} | "
            f"{t.mean_diff:+.3f} | {t.n_pairs} | {_fmt(t.t)} | {_fmt(t.p_value)} |"
            for t in tests
        ]
    return "\n".join(lines) + "\n"


def _no_nan(obj: object) -> object:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _no_nan(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_no_nan(v) for v in obj]
    return obj


def to_json(task: TaskSpec, rows: list[ReportRow], tests: list[PairedTest]) -> str:
    """JSON with NaN (no successful seed) written as null, so every JSON parser reads it."""
    payload = {
        "task": task.id,
        "metric": task.metric,
        "policy": EMPTY_POLICY,
        "rows": [{**asdict(r), "delta": r.delta} for r in rows],
        "paired_tests": [asdict(t) for t in tests],
    }
    return json.dumps(_no_nan(payload), indent=1, allow_nan=False)
