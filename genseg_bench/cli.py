"""The ``genseg-bench`` command: parses options, calls the library, renders with rich.

Errors of the library (:class:`GensegBenchError`) are printed as one message
naming the file or name at fault and the fix, with exit code 2, not a traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from genseg_bench.catalog import Catalog
from genseg_bench.data.store import Store, default_store_root
from genseg_bench.errors import GensegBenchError
from genseg_bench.metrics import EMPTY_POLICY

if TYPE_CHECKING:  # annotations only: torch and the runner load lazily, keeping `--help` fast
    import torch

    from genseg_bench.runner import GridSummary
    from genseg_bench.specs import Profile

app = typer.Typer(help="genseg-bench: medical image segmentation with very few labels.", no_args_is_help=True)
data_app = typer.Typer(help="Prepare, list, push and pull data sets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

StoreOpt = Annotated[Path, typer.Option("--store", help="Prepared-data folder.", show_default=True)]
ResultsOpt = Annotated[Path, typer.Option("--results", help="Result folder (one JSON per run).")]


def friendly(fn: F) -> F:
    """Turn library errors into a clear message and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GensegBenchError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _ints(text: str | None, what: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise GensegBenchError(
            f"--{what} takes comma-separated integers, e.g. 0,1,2; got {text!r}."
        ) from None


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [x.strip() for x in text.split(",") if x.strip()]


@app.command("tasks")
@friendly
def tasks_cmd(store: StoreOpt = default_store_root(), family: str | None = None) -> None:
    """List every task: organ, modality, 2D/3D, data, metric, sizes and whether its data is prepared here."""
    from genseg_bench.data.sources import is_synthetic

    catalog = Catalog.load()
    st = Store(store)
    table = Table(title="genseg-bench tasks", show_lines=False)
    table.add_column("id", no_wrap=True)  # the id is what users type: never broken across lines
    for col in ("organ", "modality", "dim", "train set", "test sets", "metric", "sizes", "data"):
        table.add_column(col, overflow="fold")
    for t in sorted(catalog.tasks.values(), key=lambda t: (t.family, t.id)):
        if family and t.family != family:
            continue
        missing = [s for s in t.sources if not is_synthetic(s) and not st.is_prepared(s, t.image_size)]
        status = (
            "[green]embedded[/]"
            if t.synthetic
            else ("[green]ready[/]" if not missing else f"[yellow]missing {', '.join(missing)}[/]")
        )
        sizes = ",".join(map(str, t.train_sizes)) + (
            f" (sweep {','.join(map(str, t.sweep_sizes))})" if t.sweep_sizes else ""
        )
        table.add_row(
            t.id,
            t.organ,
            t.modality,
            f"{t.dims}D",
            t.train_source,
            ", ".join(ts.name for ts in t.test_sets),
            t.metric,
            sizes,
            status,
        )
    console.print(table)


@app.command("methods")
@friendly
def methods_cmd() -> None:
    """List every method spec (baselines and GenSeg variants)."""
    catalog = Catalog.load()
    table = Table(title="genseg-bench methods")
    for col in ("name", "kind", "backbone", "description"):
        table.add_column(col, overflow="fold")
    for m in sorted(catalog.methods.values(), key=lambda m: (m.kind, m.name)):
        table.add_row(m.name, m.kind, m.backbone, m.description)
    console.print(table)


def run_grid_with_progress(
    catalog: Catalog,
    task_id: str,
    methods: list[str] | None,
    sizes: list[int] | None,
    seeds: list[int],
    profile: Profile,
    store: Store,
    results: Path,
    device: torch.device,
    retry_failed: bool,
    resample: bool = False,
) -> GridSummary:
    """One task's grid with progress: rich bars on a terminal, one log line per validation otherwise.

    Off a terminal (nohup, CI, a log file) a progress bar prints nothing useful for
    hours; the log reporter writes a line per validation and per finished run instead.
    """
    from genseg_bench.progress import LogReporter, RichReporter
    from genseg_bench.runner import run_grid

    reporter = RichReporter(console) if console.is_terminal else LogReporter(sys.stdout)
    with reporter:
        return run_grid(
            catalog,
            task_id,
            methods,
            sizes,
            seeds,
            profile,
            store,
            results,
            device,
            reporter,
            retry_failed,
            resample,
        )


@app.command("run")
@friendly
def run_cmd(
    task: Annotated[
        str | None, typer.Option("--task", "-t", help="Task id (see `genseg-bench tasks`).")
    ] = None,
    methods: Annotated[
        str | None, typer.Option(help="Comma-separated methods (default: the task's).")
    ] = None,
    sizes: Annotated[
        str | None, typer.Option(help="Comma-separated training sizes (default: the task's).")
    ] = None,
    seeds: Annotated[str, typer.Option(help="Comma-separated training seeds.")] = "0,1,2",
    profile: Annotated[
        str, typer.Option(help="Budget profile: quick, cpu (real data on a CPU), paper or smoke.")
    ] = "quick",
    image_size: Annotated[int | None, typer.Option(help="Override the profile's image size.")] = None,
    iterations: Annotated[int | None, typer.Option(help="Override the profile's iteration budget.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "auto",
    results: ResultsOpt = Path("results"),
    store: StoreOpt = default_store_root(),
    retry_failed: Annotated[bool, typer.Option(help="Rerun runs recorded as failed.")] = False,
    report: Annotated[bool, typer.Option(help="Print the report table when the grid is done.")] = True,
    suite: Annotated[
        str | None, typer.Option(help="Run every task of a suite (`genseg-bench suites`).")
    ] = None,
    resample: Annotated[
        bool,
        typer.Option(
            help="Each seed draws its own n labelled cases (default: one fixed subset for every seed, as the paper)."
        ),
    ] = False,
) -> None:
    """Run a task's grid (methods x sizes x seeds); finished runs are skipped, so an interrupted grid resumes."""
    from genseg_bench.profiles import get_profile
    from genseg_bench.runner import resolve_device

    catalog = Catalog.load()
    if (task is None) == (suite is None):
        raise GensegBenchError(
            "give one of --task or --suite (see `genseg-bench tasks` and `genseg-bench suites`)."
        )
    if suite is not None:
        from genseg_bench.cli_leaderboard import run_suite

        sz, sd = _ints(sizes, "sizes"), _ints(seeds, "seeds") or [0]
        args = (
            _names(methods),
            sz,
            sd,
            profile,
            image_size,
            iterations,
            device,
            results,
            store,
            retry_failed,
            resample,
        )
        return run_suite(catalog, suite, *args)
    prof = get_profile(profile, image_size, iterations)
    dev = resolve_device(device)
    console.print(
        f"[bold]{task}[/]: profile {prof.name} ({prof.iterations} it, "
        f"{prof.image_size or catalog.task(task).image_size}px), device {dev}, results in {results}"
    )
    summary = run_grid_with_progress(
        catalog,
        task,
        _names(methods),
        _ints(sizes, "sizes"),
        _ints(seeds, "seeds") or [0],
        prof,
        Store(store),
        results,
        dev,
        retry_failed,
        resample,
    )
    console.print(
        f"{len(summary.ran)} run(s) done, {len(summary.skipped)} skipped (already done), "
        f"{len(summary.failed)} failed."
    )
    if report:
        _print_report(catalog, task, results, None, "table", [r.spec.method for r in summary.ran] or None)


def _print_report(
    catalog: Catalog,
    task_id: str,
    results: Path,
    compare: list[str] | None,
    fmt: str,
    methods: list[str] | None = None,
) -> None:
    from genseg_bench import report as rep
    from genseg_bench.results import iter_results

    task = catalog.task(task_id)
    res = list(iter_results(results, task_id))
    if not res:
        raise GensegBenchError(
            f"no results for task {task_id!r} under {results}. Run: genseg-bench run --task {task_id}"
        )
    rows = rep.aggregate(task, res)
    tests = []
    if compare:
        if len(compare) != 2:
            raise GensegBenchError("--compare takes exactly two methods, e.g. --compare genseg-unet,unet")
        tests = rep.paired_tests(task, res, compare[0], compare[1])
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
        tt = Table(title=f"paired t-test across seeds: {compare[0]} vs {compare[1]}")  # type: ignore[index]
        for col in ("n train", "test set", "mean a", "mean b", "a − b", "pairs", "t", "p (two-sided)"):
            tt.add_column(col)
        for t in tests:
            tt.add_row(
                str(t.train_size),
                t.test_set,
                f"{t.mean_a:.3f}",
                f"{t.mean_b:.3f}",
                f"{t.mean_diff:+.3f}",
                str(t.n_pairs),
                "-" if t.t is None else f"{t.t:.2f}",
                "-" if t.p_value is None else f"{t.p_value:.4f}",
            )
        console.print(tt)


@app.command("report")
@friendly
def report_cmd(
    task: Annotated[str, typer.Option("--task", "-t")],
    results: ResultsOpt = Path("results"),
    compare: Annotated[
        str | None, typer.Option(help="Two methods for a paired t-test, e.g. genseg-unet,unet.")
    ] = None,
    format: Annotated[str, typer.Option("--format", help="table, json or markdown.")] = "table",
) -> None:
    """Mean ± std over seeds per method and test set beside the paper's numbers; optional paired t-test."""
    if format not in ("table", "json", "markdown"):
        raise GensegBenchError(f"--format must be table, json or markdown, not {format!r}.")
    _print_report(Catalog.load(), task, results, _names(compare), format)


@app.command("reproduction")
@friendly
def reproduction_cmd(
    results: ResultsOpt = Path("results"),
    tasks: Annotated[
        str, typer.Option(help="Comma-separated task ids.")
    ] = "kvasir-to-cvc,cvc-clinicdb,hippocampus-3d",
    methods: Annotated[
        str, typer.Option(help="Comma-separated methods, in table order.")
    ] = "unet,unet-combine,unet-real-x2,genseg-unet",
    anchor: Annotated[str, typer.Option(help="The method tested against every other.")] = "genseg-unet",
    preamble: Annotated[
        Path | None, typer.Option(help="A Markdown file placed after the header (setup notes; no numbers).")
    ] = None,
    independent: Annotated[
        Path | None,
        typer.Option(help="JSON lines of benchmarks/independent_loop.py, shown as the baseline check."),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write here (default: print).")] = None,
) -> None:
    """A measured reproduction table (Markdown) built from result files alone: scores, budgets, tests, verdicts."""
    from genseg_bench.reproduction import build

    text = preamble.read_text() if preamble is not None else ""
    loops = []
    if independent is not None:
        loops = [json.loads(line) for line in independent.read_text().splitlines() if line.strip()]
    doc = build(Catalog.load(), results, _names(tasks) or [], _names(methods) or [], anchor, text, loops)
    if out is None:
        sys.stdout.write(doc)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(doc)
    console.print(f"wrote {out}")


@data_app.command("prepare")
@friendly
def data_prepare(
    dataset: Annotated[str, typer.Argument(help="Data set id, e.g. kvasir, cvc-clinicdb, msd-hippocampus.")],
    source_dir: Annotated[
        Path | None, typer.Option("--from", help="Folder of the official distribution.")
    ] = None,
    size: Annotated[int, typer.Option(help="Side length after resizing (3D: cube side).")] = 256,
    store: StoreOpt = default_store_root(),
    overwrite: bool = False,
) -> None:
    """Import a raw data set into the fingerprinted prepared store."""
    from rich.box import SIMPLE_HEAD
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from genseg_bench.data.sources import get_source

    info = get_source(dataset)
    st = Store(store)
    if st.is_prepared(dataset, size) and not overwrite:
        p = st.load(dataset, size)
        console.print(
            f"{dataset} is already prepared at {size}px ({len(p.case_ids)} cases, fingerprint "
            f"{p.fingerprint}) in {p.path}. Use --overwrite to prepare it again."
        )
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=console) as progress:
        bar = progress.add_task(f"reading {info.title}", total=None)
        p = st.prepare(
            dataset,
            source_dir,
            size,
            progress=lambda n: progress.update(bar, description=f"reading {info.title}: {n} cases"),
            overwrite=overwrite,
        )
    console.print(
        f"[green]prepared[/] {dataset}: {len(p.case_ids)} cases at {size}px, fingerprint {p.fingerprint}, "
        f"in {p.path}\nbinarisation: {info.binarisation}"
    )
    # What binarisation changed: one line of totals, then the files with the most changed
    # pixels. A JPEG set has noise in nearly every mask, so only the largest are listed.
    values = p.meta.get("mask_values")
    if not values:
        return
    changed, checked = values["files_changed"], values["files_checked"]
    if not changed:
        console.print(f"masks: all {checked} mask files were two-valued (0/255); nothing changed.")
        return
    console.print(
        f"[yellow]masks:[/] {changed} of {checked} mask files held stray values; "
        f"{values['pixels_changed']:,} pixels changed by the rule above."
    )
    shown = values["top"][:10]
    table = Table(box=SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("file", overflow="fold")
    table.add_column("stray values", overflow="fold")
    table.add_column("pixels", justify="right")
    for row in shown:
        vals = ", ".join(str(v) for v in row["values"][:5])
        if row["n_values"] > 5:
            vals += f" (+{row['n_values'] - 5} more)"
        table.add_row(row["file"], vals, f"{row['pixels']:,}")
    console.print(table)
    if changed > len(shown):
        console.print(
            f"... and {changed - len(shown)} more files; the {len(values['top'])} largest are listed "
            f"in {p.path / 'meta.json'} (mask_values)."
        )


@data_app.command("list")
@friendly
def data_list(store: StoreOpt = default_store_root()) -> None:
    """Every known data set and the sizes prepared in the store."""
    from genseg_bench.data.sources import all_sources

    st = Store(store)
    table = Table(title=f"data sets (store: {store})")
    for col in ("id", "title", "dim", "prepared sizes", "licence"):
        table.add_column(col, overflow="fold")
    for sid, info in sorted(all_sources().items()):
        sizes = ", ".join(map(str, st.prepared_sizes(sid))) or "-"
        table.add_row(sid, info.title, f"{info.dims}D", sizes, info.licence)
    console.print(table)


@data_app.command("push")
@friendly
def data_push(
    dataset: str,
    repo: Annotated[str, typer.Option(help="Hub dataset repo, ORG/NAME.")],
    size: int = 256,
    store: StoreOpt = default_store_root(),
    token: Annotated[str | None, typer.Option(help="Hub token (default: the logged-in one).")] = None,
    private: bool = False,
) -> None:
    """Push a prepared set to a Hugging Face dataset repo (one commit)."""
    from genseg_bench.hub import push_prepared

    url = push_prepared(Store(store), dataset, size, repo, token, private)
    console.print(f"[green]pushed[/] {dataset} ({size}px) to {repo}: {url}")


@data_app.command("pull")
@friendly
def data_pull(
    dataset: str,
    repo: Annotated[str, typer.Option(help="Hub dataset repo, ORG/NAME.")],
    size: int = 256,
    store: StoreOpt = default_store_root(),
    token: str | None = None,
    revision: str | None = None,
) -> None:
    """Pull a prepared set from a Hugging Face dataset repo into the store (fingerprint checked)."""
    from genseg_bench.hub import pull_prepared

    p = pull_prepared(Store(store), dataset, size, repo, token, revision)
    console.print(
        f"[green]pulled[/] {dataset} ({size}px, {len(p.case_ids)} cases, fingerprint {p.fingerprint})"
    )


# leaderboard side (suites, results export, leaderboard publish/serve, curves, submit): cli_leaderboard.py
from genseg_bench.cli_leaderboard import register as _register_leaderboard  # noqa: E402

_register_leaderboard(app)

if __name__ == "__main__":  # pragma: no cover
    app()
