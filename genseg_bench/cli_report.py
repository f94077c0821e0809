"""CLI commands that read results: ``report`` (one task's table and paired tests) and ``reproduction``.

Reading never loads torch. A result folder may hold files this version cannot
read (a foreign JSON, a newer schema, a broken file): they are listed, every one
of them, and the report is made from the others, so one bad file neither hides
the rest nor fails a grid whose runs all succeeded.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from genseg_bench.catalog import Catalog
from genseg_bench.cli_common import ResultsOpt, console, friendly, names, note
from genseg_bench.errors import GensegBenchError
from genseg_bench.metric_policy import EMPTY_POLICY
from genseg_bench.specs import RunResult

report_app = typer.Typer()


def check_compare(task_id: str, results: Path, compare: list[str], res: list[RunResult]) -> None:
    """Both methods of ``--compare`` have successful runs of the task, or an error says which does not."""
    if len(compare) != 2:
        raise GensegBenchError("--compare takes exactly two methods, e.g. --compare genseg-unet,unet")
    have = sorted({r.spec.method for r in res})
    ok = {r.spec.method for r in res if r.status == "ok"}
    for m in compare:
        if m not in have:
            raise GensegBenchError(
                f"--compare {','.join(compare)}: method {m!r} has no results for task {task_id} under {results} "
                f"(methods with results: {', '.join(have)}). Run: genseg-bench run --task {task_id} --methods {m}"
            )
        if m not in ok:
            raise GensegBenchError(
                f"--compare {','.join(compare)}: every run of {m!r} for task {task_id} under {results} failed; "
                f"rerun them with: genseg-bench run --task {task_id} --methods {m} --retry-failed"
            )


def print_report(
    catalog: Catalog,
    task_id: str,
    results: Path,
    compare: list[str] | None,
    fmt: str,
) -> None:
    """The report table (or JSON / Markdown) of one task; unreadable files are listed on stderr."""
    from genseg_bench import report as rep
    from genseg_bench.results import load_results

    task = catalog.task(task_id)
    loaded = load_results(results, task_id)
    res = loaded.results
    if not res:
        why = f" that can be read ({loaded.problems_message(results)})" if loaded.problems else ""
        raise GensegBenchError(
            f"no results for task {task_id!r} under {results}{why}. Run: genseg-bench run --task {task_id}"
        )
    if loaded.problems:
        note(loaded.problems_message(results) + " The report below leaves them out.")
    tests = []
    if compare:
        check_compare(task_id, results, compare, res)
    rows = rep.aggregate(task, res)
    if compare:
        # everything this command prints is one family: Holm runs over all of it, once, here
        tests = rep.holm_family(rep.paired_tests(task, res, compare[0], compare[1]))
        if not tests:
            note(
                f"--compare {','.join(compare)}: no paired test: the two methods share no seed of one training "
                "size, profile, budget, data and task version (the table's rows say which differ)."
            )
    if fmt == "json":
        sys.stdout.write(rep.to_json(task, rows, tests))
        return
    if fmt == "markdown":
        sys.stdout.write(rep.to_markdown(task, rows, tests))
        return
    table = Table(title=f"{task.id} ({task.metric})", caption=EMPTY_POLICY + " Std over seeds (ddof=1).")
    for col in rep.HEADER:
        table.add_column(col, overflow="fold")
    for row in rep.table_rows(rows):
        table.add_row(*row)
    console.print(table)
    if tests:
        assert compare is not None
        tt = Table(
            title=f"paired t-test across seeds: {compare[0]} vs {compare[1]}",
            caption=f"CI: {rep.CI_LEVEL:.0%} t interval of the mean difference (n − 1 df). "
            + rep.family_sentence(tests, rep.COMPARE_SCOPE),
        )
        ci = f"{rep.CI_LEVEL:.0%} CI"
        for col in (
            "n train",
            "test set",
            "mean a",
            "mean b",
            "a − b",
            ci,
            "pairs",
            "t",
            "p (two-sided)",
            "p Holm",
        ):
            tt.add_column(col)
        for t in tests:
            tt.add_row(
                str(t.train_size),
                t.test_set,
                f"{t.mean_a:.3f}",
                f"{t.mean_b:.3f}",
                f"{t.mean_diff:+.3f}",
                rep.ci_text(t),
                str(t.n_pairs),
                "-" if t.t is None else f"{t.t:.2f}",
                rep.p_text(t.p_value) if t.p_value is not None else t.no_test,
                rep.p_text(t.p_holm),
            )
        console.print(tt)


@report_app.command("report")
@friendly
def report_cmd(
    task: Annotated[str, typer.Option("--task", "-t")],
    results: ResultsOpt = Path("results"),
    compare: Annotated[
        str | None,
        typer.Option(
            help="Two methods for a paired t-test, e.g. genseg-unet,unet (95% CI, raw p, and p Holm-adjusted "
            "over every test printed)."
        ),
    ] = None,
    format: Annotated[str, typer.Option("--format", help="table, json or markdown.")] = "table",
) -> None:
    """Mean ± std over seeds per method and test set beside the paper's numbers; optional paired t-test."""
    if format not in ("table", "json", "markdown"):
        raise GensegBenchError(f"--format must be table, json or markdown, not {format!r}.")
    print_report(Catalog.load(), task, results, names(compare), format)


@report_app.command("reproduction")
@friendly
def reproduction_cmd(
    results: ResultsOpt = Path("results"),
    tasks: Annotated[
        str, typer.Option(help="Comma-separated task ids.")
    ] = "kvasir-to-cvc,cvc-clinicdb,hippocampus-3d",
    methods: Annotated[
        str, typer.Option(help="Comma-separated methods, in table order.")
    ] = "unet,unet-combine,unet-real-x2,genseg-unet",
    anchor: Annotated[
        str,
        typer.Option(
            help="The method tested against every other (paired t-tests with 95% CIs; p Holm-adjusted over "
            "every test on the page)."
        ),
    ] = "genseg-unet",
    preamble: Annotated[
        Path | None, typer.Option(help="A Markdown file placed after the header (setup notes; no numbers).")
    ] = None,
    independent: Annotated[
        Path | None,
        typer.Option(help="JSON lines of benchmarks/independent_loop.py, shown as the baseline check."),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write here (default: print).")] = None,
    title: Annotated[str, typer.Option(help="The page's heading.")] = "Measured reproduction",
    verdicts: Annotated[
        bool,
        typer.Option(
            help="Open with the verdict per paper claim whose task is on the page (tasks/paper_claims.toml)."
        ),
    ] = True,
) -> None:
    """A measured reproduction table (Markdown) built from result files alone: scores, budgets, tests, verdicts."""
    from genseg_bench.reproduction import build

    text = preamble.read_text() if preamble is not None else ""
    loops = []
    if independent is not None:
        loops = [json.loads(line) for line in independent.read_text().splitlines() if line.strip()]
    doc = build(
        Catalog.load(),
        results,
        names(tasks) or [],
        names(methods) or [],
        anchor,
        text,
        loops,
        title,
        verdicts,
    )
    if out is None:
        sys.stdout.write(doc)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(doc)
    console.print(f"wrote {out}")
