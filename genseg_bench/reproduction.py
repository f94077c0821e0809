"""The measured reproduction table: a Markdown report built from result files alone.

``genseg-bench reproduction`` turns the result files of a few tasks into one
document: per task, every method's score on every test set (mean +- std over the
seeds that ran, with the seeds named), its split (train + validation), budget
(updates, images the segmenter processed), wall time and run flags; the paired
tests of one method against every other; the paper's numbers beside them; and a
verdict line per paper claim computed from the numbers. Nothing in it is typed
by hand, so rerunning the command after more runs finish updates every number.

Every paired test on one page is one family: its p-values are Holm-adjusted over
all of them (``report.holm_family``), and a verdict calls a difference significant
only on the adjusted p. A page of twenty tests at a raw 0.05 would otherwise show
about one "significant" difference by chance alone.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genseg_bench import report as rep
from genseg_bench.catalog import Catalog
from genseg_bench.errors import GensegBenchError
from genseg_bench.metric_policy import EMPTY_POLICY
from genseg_bench.profiles import NORM_TEXT, get_profile
from genseg_bench.results import iter_results
from genseg_bench.specs import RunResult, TaskSpec

ALPHA = rep.ALPHA
PAGE_SCOPE = "every paired test on this page (all its tasks, test sets and method pairs)"
"""The Holm family of a page, as the page names it."""


def _f(x: float | None, signed: bool = False, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _settings_labels(task: TaskSpec, runs: list[RunResult]) -> dict[str, str]:
    """Each profile-settings digest of the task's runs -> a short label (``profile A``, ``B`` ...).

    ``A`` is today's definition of the runs' profile where any run has it; the others follow
    by their newest run. Empty when every run shares one setting: rows then need no label.
    """
    newest: dict[str, str] = {}
    for r in runs:
        d = rep.run_context(task, r).settings
        newest[d] = max(newest.get(d, ""), r.created)
    if len(newest) < 2:
        return {}
    today: set[str] = set()
    for name in {r.spec.profile for r in runs}:
        try:
            today.add(rep.settings_digest(get_profile(name).model_dump()))
        except GensegBenchError:
            continue  # a profile this version does not define
    order = sorted(newest, key=lambda d: (d not in today, [-ord(c) for c in newest[d]]))
    return {d: f"profile {chr(ord('A') + i)}" for i, d in enumerate(order)}


def _profile_line(task: TaskSpec, runs: list[RunResult]) -> str:
    """The budgets the runs of a task used: one description per distinct profile (rows never mix them)."""
    labels = _settings_labels(task, runs)
    seen: dict[str, str] = {}
    for r in runs:
        ctx = rep.run_context(task, r)
        digest = ctx.settings
        if digest not in seen:
            text = _describe_profile(r.spec.profile, rep.profile_of(r))
            if not ctx.task.startswith("v"):  # rows never mix task versions; the reader must see which
                text += f"; task spec of an earlier version of {task.id} ({ctx.task})"
            seen[digest] = f"**{labels[digest]}** ({text})" if labels else text
    return "; ".join(seen[d] for d in sorted(seen))


def _describe_profile(name: str, p: dict[str, Any]) -> str:
    """A profile as a sentence, with its plateau rules (absent rules read as the code before them)."""
    rules = f"patience {p.get('plateau_patience')}"
    floor = p.get("plateau_min_lr_factor")
    rules += f", lr floor {floor:g} x start" if floor else ", no lr floor"
    if p.get("plateau_wait_for_foreground"):
        rules += ", stepped from the first validation that beats predicting nothing"
    else:
        rules += ", stepped from the first validation"
    return (
        f"profile {name}: {p.get('iterations')} iterations, batch {p.get('batch_size')}, "
        f"image side {p.get('image_size') or 'task default'}, validation every "
        f"{p.get('eval_every')} iterations (ReduceLROnPlateau, {rules}), "
        f"segmenter {_segmenter_recipe(p)}, generator Adam lr {p.get('gen_lr')}, "
        f"architecture Adam lr {p.get('arch_lr')}, generator width {p.get('gen_width')}"
    )


def _segmenter_recipe(p: dict[str, Any]) -> str:
    """The shared segmenter recipe of a profile (fields a run predates read as the code before them)."""
    optimiser = "Adam" if p.get("seg_optimizer") == "adam" else "RMSprop"
    norm = NORM_TEXT.get(str(p.get("input_norm")), NORM_TEXT["none"])
    loss = "BCE + Dice" if p.get("seg_loss") == "bce+dice" else "BCE"
    aug = ", intensity augmentation" if p.get("intensity_aug") else ""
    return f"{optimiser} lr {p.get('seg_lr')} (weight decay {p.get('seg_weight_decay')}), {loss}, {norm}{aug}"


def _verdict(test: rep.PairedTest, paper_gain: float | None) -> str:
    """One sentence from a paired test and, where the paper gives one, its claimed gain.

    Significance is read off the Holm-adjusted p (``test`` must come through ``report.holm_family``):
    the raw p is quoted beside it, but a claim holds only if it survives the page's correction.
    """
    if test.p_value is None:
        sig = test.no_test
    else:
        ps = f"p Holm = {rep.p_text(test.p_holm)}, raw p = {rep.p_text(test.p_value)}, {test.n_pairs} seeds"
        sig = f"significant at {ALPHA} after Holm ({ps})" if test.significant else f"not significant ({ps})"
    line = f"{test.method_a} − {test.method_b} on {test.test_set}: {test.mean_diff:+.3f}, {sig}"
    if paper_gain is not None:
        holds = test.mean_diff > 0 and test.significant
        direction = "same sign" if (test.mean_diff > 0) == (paper_gain > 0) else "opposite sign"
        line += f". Paper: {paper_gain:+.3f} ({direction}); the claim {'holds' if holds else 'does not hold'} here"
    return line + "."


def _section_runs(runs: list[RunResult], methods: Sequence[str]) -> list[RunResult]:
    """The runs a task section shows: those of the page's methods (by name or row label)."""
    return [r for r in runs if r.spec.method in methods or rep.method_label(r) in methods]


def _row_order(rows: list[rep.ReportRow], methods: Sequence[str]) -> list[str]:
    """The page's methods that have a row, in the page's order."""
    return [m for m in methods if any(r.method == m for r in rows)]


def anchor_tests(
    task: TaskSpec, runs: list[RunResult], methods: Sequence[str], anchor: str
) -> list[rep.PairedTest]:
    """The paired tests a task section prints: ``anchor`` against every other method, in row order.

    Raw (not Holm-adjusted): :func:`build` gathers those of every section first, since the
    family is the whole page.
    """
    runs = _section_runs(runs, methods)
    order = _row_order(rep.aggregate(task, runs), methods)
    if anchor not in order:
        return []
    return [t for other in order if other != anchor for t in rep.paired_tests(task, runs, anchor, other)]


def _test_table(tests: Sequence[rep.PairedTest], labels: dict[str, str]) -> list[str]:
    """The Markdown table of a section's paired tests: difference, CI, raw p and Holm p per test."""
    ci = f"{rep.CI_LEVEL:.0%} CI"
    lines = [
        f"| comparison | test set | seeds | mean difference | {ci} | p | p Holm |",
        "|" + "---|" * 7,
    ]
    for t in tests:
        where = f" [{labels[t.settings]}]" if labels and t.settings in labels else ""
        p = rep.p_text(t.p_value) if t.p_value is not None else t.no_test
        lines.append(
            f"| {t.method_a} − {t.method_b}{where} | {t.test_set} | {t.n_pairs} | {t.mean_diff:+.3f} | "
            f"{rep.ci_text(t)} | {p} | {rep.p_text(t.p_holm)} |"
        )
    return lines


def task_section(
    task: TaskSpec,
    runs: list[RunResult],
    methods: Sequence[str],
    anchor: str,
    tests: Sequence[rep.PairedTest] | None = None,
) -> list[str]:
    """The Markdown of one task: setup, score table, budgets, paired tests, verdicts.

    ``tests``: this section's :func:`anchor_tests`, already Holm-adjusted over the page's family
    (:func:`build` passes them). Without them the section is its own family and says so.
    """
    page_family = tests is not None
    if tests is None:
        tests = rep.holm_family(anchor_tests(task, runs, methods, anchor))
    runs = _section_runs(runs, methods)
    lines = [f"## {task.id}", "", task.description, ""]
    if not runs:
        return [*lines, "No result files for this task yet.", ""]
    ok = [r for r in runs if r.status == "ok"]
    lines += [
        f"Metric: {task.metric} (per case, mean over cases). Test sets: "
        + ", ".join(
            f"{t.name} ({'held-out part' if t.split == 'test' else 'every case'}, {t.domain}-domain)"
            for t in task.test_sets
        )
        + ".",
        "",
        _profile_line(task, runs) + ".",
        "",
    ]
    rows = rep.aggregate(task, runs)
    by_method: dict[str, list[RunResult]] = defaultdict(list)
    for r in ok:
        by_method[rep.method_label(r)].append(r)
    test_names = [t.name for t in task.test_sets]
    header = [
        "method",
        "n (train+val)",
        "seeds",
        *test_names,
        "updates",
        "images seen",
        "wall (min)",
        "flags",
    ]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    order = _row_order(rows, methods)
    labels = _settings_labels(task, runs)
    settings_of = {r.context: r.settings for r in rows}
    for m in order:
        by_ctx: dict[str, dict[str, rep.ReportRow]] = {}
        for r in rows:
            if r.method == m:
                by_ctx.setdefault(r.context, {})[r.test_set] = r
        for ctx_key in sorted(by_ctx, key=lambda k: labels.get(settings_of[k], "")):
            cells = by_ctx[ctx_key]
            first = next(iter(cells.values()))
            scores = [
                rep.score_text(cells[t].mean, cells[t].std, cells[t].n_seeds)
                if t in cells and cells[t].n_seeds
                else "-"
                for t in test_names
            ]
            walls = [
                r.wall_time_s / 60 for r in by_method.get(m, []) if rep.run_context(task, r).key() == ctx_key
            ]
            seeds = ",".join(str(s) for s in first.seeds) + (
                f" ({first.failed} failed)" if first.failed else ""
            )
            n = (
                f"{first.train_size} ({first.n_train}+{first.n_val})"
                if first.n_train
                else str(first.train_size)
            )
            label = f"{m} [{labels[settings_of[ctx_key]]}]" if labels else m
            flags = (
                [f for f in first.flags if not f.startswith("not averaged with")] if labels else first.flags
            )
            lines.append(
                "| "
                + " | ".join(
                    [
                        label,
                        n,
                        seeds or "-",
                        *scores,
                        f"{first.updates:,}" if first.updates else "-",
                        f"{first.images_seen:,}" if first.images_seen else "-",
                        f"{statistics.fmean(walls):.1f}" if walls else "-",
                        "; ".join(flags) or "-",
                    ]
                )
                + " |"
            )
    failed = [r for r in runs if r.status == "failed"]
    for r in failed:
        first_line = (r.error or "").splitlines()[0] if r.error else ""
        lines.append("")
        lines.append(f"Failed: {r.spec.method} seed {r.spec.seed}: `{first_line}`")
    refs = [ref for ref in task.references if ref.method in methods]
    if refs:
        lines += ["", "Paper numbers for this task:", ""]
        for ref in refs:
            what = f"{ref.value:+.3f} over {ref.baseline}" if ref.kind == "gain" else f"{ref.value:.3f}"
            lines.append(f"- {ref.method}, n = {ref.train_size}, {ref.test_set}: {what} ({ref.figure})")
    if anchor in order:
        size = max((t.family_size for t in tests), default=0)
        family = "the family named at the top of the page" if page_family else "this section"
        holm_note = (
            f"p Holm over the {size} test(s) of {family}"
            if size
            else "no pair has a test: one seed, or identical differences"
        )
        lines += [
            "",
            f"Paired two-sided t-tests across seeds, {anchor} against each method "
            f"({rep.CI_LEVEL:.0%} t interval of the mean difference; {holm_note}):",
            "",
        ]
        gains = {
            (ref.baseline, ref.test_set): ref.value
            for ref in task.references
            if ref.kind == "gain" and ref.method == anchor
        }
        scores_ref = {(ref.method, ref.test_set): ref.value for ref in task.references if ref.kind == "score"}
        if tests:
            lines += [*_test_table(tests, labels), ""]
        for t in tests:
            gain = gains.get((t.method_b, t.test_set))
            if gain is None and (anchor, t.test_set) in scores_ref and (t.method_b, t.test_set) in scores_ref:
                gain = scores_ref[(anchor, t.test_set)] - scores_ref[(t.method_b, t.test_set)]
            where = f" [{labels[t.settings]}]" if labels and t.settings in labels else ""
            lines.append(f"- {_verdict(t, gain)}{where}")
        if not tests:
            lines.append("- no seed has both methods yet.")
    lines.append("")
    lines += final_network_section(task, runs, methods)
    return lines


def _mean_sd(xs: list[float]) -> str:
    return rep.score_text(statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0, len(xs))


def final_network_section(task: TaskSpec, runs: list[RunResult], methods: Sequence[str]) -> list[str]:
    """Selected checkpoint against the network the budget ended with, for runs that scored both.

    The paper's rule keeps the best validation checkpoint; on 8-9 validation images that pick is
    noisy, so a method can win or lose by the iteration its validation happened to spike at. Runs
    record the final network's test scores (``extras["final_network"]``); this table puts the two
    rules side by side per method (mean over the seeds that have the record). Empty when no run has one.
    ``runs`` are :func:`task_section`'s, already limited to ``methods``, which give the row order.
    """
    ok = [r for r in runs if r.status == "ok" and isinstance(r.extras.get("final_network"), dict)]
    if not ok:
        return []
    labels = _settings_labels(task, runs)
    groups: dict[tuple[str, int, str], list[RunResult]] = defaultdict(list)
    for r in ok:  # one row per method, training size and context: sizes are never averaged together
        groups[(rep.method_label(r), r.spec.train_size, rep.run_context(task, r).key())].append(r)
    key = "mean_jaccard" if task.metric == "jaccard" else "mean_dice"
    names = [t.name for t in task.test_sets]
    header = ["method", "n", "seeds", "selected at (it.)", *(f"{n}: selected / final" for n in names)]
    lines = [
        "### Selected checkpoint against the final network",
        "",
        f"The table above scores each run's best-validation checkpoint (the paper's rule). Here the same runs' "
        f"network at the end of the budget is scored beside it ({task.metric}, mean over the seeds "
        "listed): where the two differ by more than the spread over seeds, the checkpoint pick on the "
        "small validation set, not the method, decides the row.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    order = {m: i for i, m in enumerate(methods)}
    for (label, size, _context), rs in sorted(
        groups.items(), key=lambda kv: (order.get(kv[1][0].spec.method, len(order)), kv[0])
    ):
        rs = sorted(rs, key=lambda r: r.spec.seed)
        settings = rep.run_context(task, rs[0]).settings
        name = f"{label} [{labels[settings]}]" if labels and settings in labels else label
        cells = []
        for n in names:
            sel = [r.score(n) for r in rs if n in r.test_sets]
            fin = [
                float(r.extras["final_network"]["test_sets"][n][key])
                for r in rs
                if n in r.extras["final_network"].get("test_sets", {})
            ]
            if not sel or len(fin) != len(sel):
                cells.append("-")
                continue
            cells.append(f"{_mean_sd(sel)} / {_mean_sd(fin)}")
        its = ", ".join(f"{r.best_iteration} of {r.iterations}" for r in rs)
        lines.append(
            f"| {name} | {size} | {','.join(str(r.spec.seed) for r in rs)} | {its} | "
            + " | ".join(cells)
            + " |"
        )
    return [*lines, ""]


_ADAM = "adam lr 0.001"
"""The loop's optimizer in records written before the loop recorded it."""


def independent_section(records: list[dict[str, object]]) -> list[str]:
    """The check of the suite's vanilla UNet against a plain independent Adam loop (same split and wall time).

    ``records`` are the JSON lines ``benchmarks/independent_loop.py`` prints, one per suite run;
    they are tabled per task (the ``task`` the loop read from the suite's result file).
    """
    if not records:
        return []
    lines = [
        "## Vanilla UNet against a plain independent loop",
        "",
        "`benchmarks/independent_loop.py` trains the same architecture with plain BCE, a constant "
        "learning rate (Adam lr 1e-3 by default; RMSprop with the suite's settings to tell a harness "
        "defect from an optimizer choice) and best-validation checkpointing, sharing no code path with the suite, on the same "
        "train / validation / test cases, for the wall-clock budget in the table (at least the suite "
        "run's own training time on an otherwise idle machine). Dice per case.",
        "",
    ]
    by_task: dict[str, list[dict[str, object]]] = {}
    for r in records:
        if "task" not in r:
            raise ValueError(f"independent-loop record without a 'task' field: {r}")
        by_task.setdefault(str(r["task"]), []).append(r)
    for task, recs in sorted(by_task.items()):
        lines += [
            f"### {task}",
            "",
            "| seed | suite run | loop optimizer | n train+val | wall budget (s) | suite it | loop it "
            "| suite in-domain | loop in-domain | suite out-of-domain | loop out-of-domain |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        pairs: dict[str, list[tuple[float, float]]] = {}
        for r in sorted(recs, key=lambda r: (str(r.get("loop_optimizer", _ADAM)), int(r["seed"]))):  # type: ignore[call-overload]
            scores = dict(r["suite_scores"])  # type: ignore[call-overload]
            names = list(scores)
            ood = [k for k in r if k.startswith("loop_test_") and k != "loop_test_in_domain"]
            ood_name = ood[0][len("loop_test_") :] if ood else None
            s_in = float(scores[names[0]])
            l_in = float(r["loop_test_in_domain"])  # type: ignore[arg-type]
            optimizer = str(r.get("loop_optimizer", _ADAM))
            pairs.setdefault(optimizer, []).append((s_in, l_in))
            s_ood = scores.get(ood_name) if ood_name else None
            l_ood = r[ood[0]] if ood else None
            lines.append(
                f"| {r['seed']} | {r.get('suite_run', '')} | {optimizer} | {r['n_train']}+{r['n_val']} | "
                f"{r['budget_s']} | {r['suite_iterations']} | {r['loop_iterations']} | {s_in:.3f} | {l_in:.3f} | "
                f"{_f(s_ood)} | {_f(l_ood)} |"  # type: ignore[arg-type]
            )
        lines.append("")
        for optimizer, pr in sorted(pairs.items()):
            suite_in = statistics.fmean(p[0] for p in pr)
            loop_in = statistics.fmean(p[1] for p in pr)
            verdict = (
                "is at least as good as the loop."
                if suite_in >= loop_in
                else "is below the loop: treat its numbers as undertrained until shown otherwise."
            )
            lines.append(
                f"Mean in-domain Dice on {task}, loop with {optimizer}: suite {suite_in:.3f}, independent "
                f"loop {loop_in:.3f} ({len(pr)} run(s)); the suite's baseline {verdict}"
            )
            lines.append("")
    return lines


def build(
    catalog: Catalog,
    results_dir: Path,
    tasks: Sequence[str],
    methods: Sequence[str],
    anchor: str,
    preamble: str = "",
    independent: list[dict[str, object]] | None = None,
    title: str = "Measured reproduction",
    verdicts: bool = True,
) -> str:
    """The whole document (Markdown) for ``tasks`` x ``methods`` from the results under ``results_dir``.

    ``title`` names the page: the same builder makes the reproduction table and the comparison of methods.
    ``verdicts``: open with the verdict per claim (:mod:`genseg_bench.verdicts`) of every claim of the
    catalog whose task is on the page; a claim's verdict is its own Holm family (the table's claims).
    """
    out = [
        f"# {title}",
        "",
        "Generated by `genseg-bench reproduction` from the result files in "
        f"`{results_dir.as_posix()}`; every number below comes from those files.",
        "",
        f"Scores: {EMPTY_POLICY} ± is the sample standard deviation over the seeds listed. "
        "*n (train+val)*: the n labelled cases of a run, validation carved out of them. "
        "*Images seen*: images the segmenter processed in training forwards (real, augmented and "
        "generated), so a gain of generation can be told from a gain of batch size. "
        "Flags: `lr collapsed early` (segmenter lr below 1e-3 of its start within the first half "
        "of the budget), `best val = empty prediction` (the selected checkpoint predicts nothing), "
        "`best at the last validation` (still improving when the budget ended: may be undertrained).",
        "",
    ]
    loaded = []
    for task_id in tasks:
        task = catalog.task(task_id)
        loaded.append(
            (task, list(iter_results(results_dir, task_id)) if (results_dir / task_id).is_dir() else [])
        )
    claims = [c for c in catalog.claims.values() if c.task in tasks] if verdicts else []
    if claims:
        from genseg_bench.profiles import PROFILES
        from genseg_bench.verdicts import evaluate, verdict_table

        runs_of = {task.id: runs for task, runs in loaded}
        out += verdict_table(evaluate(claims, catalog.tasks, runs_of, PROFILES))
    # one family per page: every section's tests are adjusted together, then handed back to their section
    raw = [anchor_tests(task, runs, methods, anchor) for task, runs in loaded]
    adjusted = rep.holm_family([t for section in raw for t in section])
    if adjusted:
        out += [
            f"Paired tests: two-sided paired t-tests across the seeds both methods ran, with the "
            f"{rep.CI_LEVEL:.0%} t interval (n − 1 degrees of freedom) of the mean paired difference. "
            + rep.family_sentence(adjusted, PAGE_SCOPE),
            "",
        ]
    if preamble:
        out += [preamble.strip(), ""]
    start = 0
    for (task, runs), section in zip(loaded, raw, strict=True):
        out += task_section(task, runs, methods, anchor, adjusted[start : start + len(section)])
        start += len(section)
    out += independent_section(independent or [])
    return "\n".join(out).rstrip() + "\n"
