"""GenSeg's gain over its baselines against the training budget, from result files alone.

    python benchmarks/gain_vs_budget.py --results docs/reproduction/results \
        --results docs/reproduction/budget/results --task cvc-clinicdb \
        --png docs/reproduction/gain-vs-budget.png --md docs/reproduction/gain-vs-budget.md

Why: the sign of GenSeg's gain changed between budgets here (docs/comparison.md at 64 px,
the old 128 px rows), and the paper's budget (5,000 iterations at 256 px on a GPU) is out of
reach on a CPU. Runs of one task at several iteration budgets (``genseg-bench run
--iterations N``; everything else the profile's) give the paired gain per budget, seed by
seed, with its 95 % t interval; the p-values are Holm-adjusted over every test in the
figure. The trend is a least-squares line of the per-seed gains on log2(iterations), and
its value at the paper's iteration count is printed with a 95 % interval for the line
there. That extrapolation is in iterations only (the image side stays the profile's):
read it as "what more of the same budget predicts", not as the paper's setting.
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections import defaultdict
from pathlib import Path

from scipy import stats

from genseg_bench import report as rep
from genseg_bench.catalog import Catalog
from genseg_bench.profiles import get_profile
from genseg_bench.results import iter_results
from genseg_bench.specs import RunResult
from genseg_bench.verdicts import runs_as_now

PAPER_ITERATIONS = 5000


def load(dirs: list[Path], task: str) -> list[RunResult]:
    """Every ok run of ``task`` under the given result folders (a run id seen twice counts once)."""
    runs: dict[str, RunResult] = {}
    for d in dirs:
        if (d / task).is_dir():
            for r in iter_results(d, task):
                if r.status == "ok":
                    runs.setdefault(r.run_id, r)
    return list(runs.values())


def current(runs: list[RunResult], profile: str) -> list[RunResult]:
    """The runs of ``profile`` at its settings as they are now (recipe, image size; any budget)."""
    return runs_as_now(runs, get_profile(profile), same_budget=False)


def gains(
    runs: list[RunResult],
    task_id: str,
    method: str,
    baselines: list[str],
    test_set: str,
    size: int,
    profile: str,
) -> dict[str, dict[int, rep.PairedTest]]:
    """``baseline -> iterations -> paired test`` at the profile's current settings (image size, recipe)."""
    catalog = Catalog.load()
    task = catalog.task(task_id)
    own = current(runs, profile)
    out: dict[str, dict[int, rep.PairedTest]] = defaultdict(dict)
    by_id = {}
    tests = []
    for b in baselines:
        for t in rep.paired_tests(task, own, method, b):
            if t.train_size != size or t.test_set != test_set:
                continue
            budget = t.context[rep.RunContext.SHARED.index("budget")]
            iterations = int(budget.split(" it")[0])
            tests.append(t)
            by_id[id(t)] = (b, iterations)
    adjusted = rep.holm_family(tests)
    for raw, adj in zip(tests, adjusted, strict=True):
        b, iterations = by_id[id(raw)]
        out[b][iterations] = adj
    return out


def seed_diffs(
    runs: list[RunResult], method: str, baseline: str, test_set: str, size: int, metric: str
) -> list[tuple[int, float]]:
    """``(iterations, method - baseline)`` per seed that ran both at one budget."""
    score: dict[tuple[str, int, int], float] = {}
    for r in runs:
        if r.spec.train_size == size and test_set in r.test_sets:
            it = int(rep.profile_of(r).get("iterations") or r.iterations)
            score[(r.spec.method, it, r.spec.seed)] = getattr(r.test_sets[test_set], f"mean_{metric}")
    return [
        (it, v - score[(baseline, it, s)])
        for (m, it, s), v in score.items()
        if m == method and (baseline, it, s) in score
    ]


def trend(points: list[tuple[int, float]], at: int) -> tuple[float, float, float, float] | None:
    """Slope per doubling, its p, and the line's value at ``at`` iterations with the half-width of its 95% CI."""
    if len({it for it, _ in points}) < 3:
        return None
    x = [math.log2(it) for it, _ in points]
    y = [d for _, d in points]
    fit = stats.linregress(x, y)
    n = len(x)
    mx = statistics.fmean(x)
    sxx = sum((xi - mx) ** 2 for xi in x)
    resid = [yi - (fit.intercept + fit.slope * xi) for xi, yi in zip(x, y, strict=True)]
    s = math.sqrt(sum(r * r for r in resid) / (n - 2))
    x0 = math.log2(at)
    se = s * math.sqrt(1 / n + (x0 - mx) ** 2 / sxx)
    half = float(stats.t.ppf(0.975, n - 2)) * se
    return float(fit.slope), float(fit.pvalue), float(fit.intercept + fit.slope * x0), half


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, action="append", required=True, help="result folder (repeatable)")
    ap.add_argument("--task", default="cvc-clinicdb")
    ap.add_argument("--method", default="genseg-unet")
    ap.add_argument("--baselines", default="unet,unet-real-x2")
    ap.add_argument("--test-set", default=None, help="default: the task's first test set")
    ap.add_argument("--size", type=int, default=40)
    ap.add_argument("--profile", default="cpu")
    ap.add_argument(
        "--paper-gain", type=float, default=None, help="default: the task's reference for the method"
    )
    ap.add_argument("--png", type=Path, default=None)
    ap.add_argument("--md", type=Path, default=None)
    args = ap.parse_args()
    task = Catalog.load().task(args.task)
    test_set = args.test_set or task.test_sets[0].name
    baselines = [b for b in args.baselines.split(",") if b]
    paper = args.paper_gain
    if paper is None:
        paper = next(
            (
                r.value
                for r in task.references
                if r.kind == "gain" and r.method == args.method and r.baseline == baselines[0]
            ),
            None,
        )
    runs = load(args.results, args.task)
    table = gains(runs, args.task, args.method, baselines, test_set, args.size, args.profile)
    if not any(table.values()):
        raise SystemExit(f"no paired runs of {args.method} and {baselines} on {args.task} at n = {args.size}")
    prof = get_profile(args.profile)
    lines = [
        f"# {args.method}'s gain against the budget: {args.task}, n = {args.size}, {test_set}",
        "",
        f"Generated by `benchmarks/gain_vs_budget.py` from the result files in "
        f"{', '.join(f'`{d.as_posix()}`' for d in args.results)}. Profile `{args.profile}` "
        f"({prof.image_size} px, batch {prof.batch_size}); only the iteration budget varies. Paired gain "
        f"over the seeds both ran, {rep.CI_LEVEL:.0%} t interval, p Holm over the {sum(len(v) for v in table.values())} "
        "test(s) below.",
        "",
        "| baseline | iterations | seeds | gain | 95% CI | p | p Holm |",
        "|---|---|---|---|---|---|---|",
    ]
    for b in baselines:
        for it, t in sorted(table[b].items()):
            p = rep.p_text(t.p_value) if t.p_value is not None else t.no_test
            lines.append(
                f"| {b} | {it:,} | {t.n_pairs} | {t.mean_diff:+.3f} | {rep.ci_text(t)} | {p} | {rep.p_text(t.p_holm)} |"
            )
    lines.append("")
    for b in baselines:
        pts = seed_diffs(current(runs, args.profile), args.method, b, test_set, args.size, task.metric)
        tr = trend(pts, PAPER_ITERATIONS)
        if tr is None:
            lines.append(f"* {args.method} − {b}: fewer than three budgets, no trend.")
            continue
        slope, p, at, half = tr
        lines.append(
            f"* {args.method} − {b}: {slope:+.3f} per doubling of the iterations (p = {rep.p_text(p)}, "
            f"{len(pts)} seed-budget pairs); the line at {PAPER_ITERATIONS:,} iterations: {at:+.3f} "
            f"(95% CI {at - half:+.3f} to {at + half:+.3f})"
            + (
                f"; the paper's gain over {b}: {paper:+.3f}"
                if paper is not None and b == baselines[0]
                else ""
            )
            + "."
        )
    doc = "\n".join(lines) + "\n"
    print(doc)
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(doc)
    if args.png:
        plot(table, args, test_set, paper, baselines)


def plot(
    table: dict[str, dict[int, rep.PairedTest]],
    args: argparse.Namespace,
    test_set: str,
    paper: float | None,
    baselines: list[str],
) -> None:
    """Gain with its 95% interval per budget, one line per baseline, on a log iteration axis."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for k, b in enumerate(baselines):
        its = sorted(table[b])
        xs = [it * (1.0 + 0.04 * (k - (len(baselines) - 1) / 2)) for it in its]  # side by side
        ys = [table[b][it].mean_diff for it in its]
        lo = [
            y - (table[b][it].ci_low if table[b][it].ci_low is not None else y)
            for y, it in zip(ys, its, strict=True)
        ]
        hi = [
            (table[b][it].ci_high if table[b][it].ci_high is not None else y) - y
            for y, it in zip(ys, its, strict=True)
        ]
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=f"{args.method} − {b}")
    ax.axhline(0.0, color="grey", lw=0.8)
    if paper is not None:
        ax.scatter(
            [PAPER_ITERATIONS],
            [paper],
            marker="*",
            s=120,
            color="black",
            zorder=3,
            label=f"paper: {paper:+.3f} ({PAPER_ITERATIONS:,} it, 256 px, GPU)",
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training iterations (log scale)")
    ax.set_ylabel(f"paired gain in {test_set} Dice (95% CI)")
    ax.set_title(f"{args.task}, n = {args.size}: gain against budget ({args.profile} profile)", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    args.png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.png, dpi=120)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
