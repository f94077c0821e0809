"""CLI commands of the run side: ``tasks``, ``methods`` and ``run`` (one task's grid, or a suite's).

Every option is checked before anything is loaded or trained (ranges, duplicates,
the device, whether the image size fits every model), so a bad value is one
message naming the option and the valid range. Torch loads only once a run starts.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from genseg_bench.catalog import Catalog
from genseg_bench.cli_common import (
    DEFAULT_STORE,
    ResultsOpt,
    StoreOpt,
    console,
    err_console,
    friendly,
    names,
    note,
    unique_ints,
)
from genseg_bench.data.store import Store
from genseg_bench.errors import DataError, GensegBenchError, unknown
from genseg_bench.specs import TaskSpec
from genseg_bench.values import MAX_SEED, check_device_name, check_image_size, check_iterations

if TYPE_CHECKING:  # annotations only: torch and the runner load lazily, keeping `--help` fast
    import torch

    from genseg_bench.executors import Executor
    from genseg_bench.runner import GridSummary
    from genseg_bench.specs import Profile

run_app = typer.Typer()


def data_status(task: TaskSpec, store: Store) -> str:
    """``ready``, ``ready (SOURCE at N px)`` when a set is prepared at other sizes only, or ``missing ...``.

    A run reads a set prepared at its own size, the task's or a larger one (the
    runner's choice), so a set prepared at another size counts as prepared; the
    sizes are shown because a run at a larger size than any of them still needs
    ``data prepare --size``.
    """
    from genseg_bench.data.sources import is_synthetic

    if task.synthetic:
        return "[green]embedded[/]"
    other: list[str] = []
    missing: list[str] = []
    for src in task.sources:
        if is_synthetic(src) or store.is_prepared(src, task.image_size):
            continue
        sizes = store.prepared_sizes(src)
        if sizes:
            other.append(f"{src} at {', '.join(map(str, sizes))} px")
        else:
            missing.append(src)
    parts = []
    if missing:
        parts.append(f"[yellow]missing {', '.join(missing)}[/]")
    if other:
        parts.append(("" if missing else "[green]ready[/] ") + f"({'; '.join(other)})")
    return "; ".join(parts) if parts else "[green]ready[/]"


@run_app.command("tasks")
@friendly
def tasks_cmd(store: StoreOpt = DEFAULT_STORE, family: str | None = None) -> None:
    """List every task: organ, modality, 2D/3D, data, metric, sizes and whether its data is prepared here."""
    catalog = Catalog.load()
    st = Store(store)
    table = Table(title="genseg-bench tasks", show_lines=False)
    table.add_column("id", no_wrap=True)  # the id is what users type: never broken across lines
    for col in ("organ", "modality", "dim", "train set", "test sets", "metric", "sizes", "data"):
        table.add_column(col, overflow="fold")
    families = sorted({t.family for t in catalog.tasks.values()})
    if family and family not in families:
        raise unknown("family", family, families)
    for t in sorted(catalog.tasks.values(), key=lambda t: (t.family, t.id)):
        if family and t.family != family:
            continue
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
            data_status(t, st),
        )
    console.print(table)


@run_app.command("methods")
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
    device: torch.device | str,
    retry_failed: bool,
    resample: bool = False,
    executor: Executor | None = None,
    threads: int | None = None,
) -> GridSummary:
    """One task's grid with progress: rich bars on a terminal, one log line per validation otherwise.

    Off a terminal (nohup, CI, a log file) a progress bar prints nothing useful for
    hours; the log reporter writes a line per validation and per finished run instead.
    Result files that could not be read and were moved aside are listed at the end.
    """
    from genseg_bench.progress import LogReporter, RichReporter, Tally
    from genseg_bench.runner import run_grid

    reporter = Tally(RichReporter(console) if console.is_terminal else LogReporter(sys.stdout))
    try:
        with reporter:
            summary = run_grid(
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
                executor=executor,
                threads=threads,
            )
    except KeyboardInterrupt:
        resume = "genseg-bench " + shlex.join(sys.argv[1:])
        kind = executor.name if executor is not None else "local"
        for line in reporter.interrupted_lines(str(results), resume, kind):
            err_console.print(line, highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    for aside in summary.set_aside:
        note(aside.message())
    for spec, why in summary.elsewhere:
        note(f"{spec.run_id}: not run here, {why}")
    for spec, why in summary.lost:
        note(f"{spec.run_id}: no result ({why}); a rerun does it again")
    return summary


def run_suite(
    catalog: Catalog,
    suite_id: str,
    methods: list[str] | None,
    sizes: list[int] | None,
    seeds: list[int],
    profile: Profile,
    device: torch.device | str,
    results: Path,
    store: Path,
    retry_failed: bool,
    resample: bool = False,
    executor: Executor | None = None,
    threads: int | None = None,
) -> None:
    """``run --suite``: each task's grid in turn, at the suite's sizes (or ``sizes``).

    Every task's image size is checked against every model, and every task's data is checked to be
    prepared, before the first task trains.
    """
    from genseg_bench.runner import check_model_input, missing_data, run_image_size

    suite = catalog.suite(suite_id)
    tasks = catalog.suite_tasks(suite_id)
    missing: dict[tuple[str, int], list[str]] = {}
    for task in tasks:
        chosen = [catalog.method(m) for m in (methods or task.default_methods)]
        check_model_input(task, chosen, run_image_size(task, profile))
        for key in missing_data(task, Store(store), run_image_size(task, profile)):
            missing.setdefault(key, []).append(task.id)
    if missing:
        lines = [
            f"genseg-bench data prepare {src} --from PATH --size {size}   (for {', '.join(ts)})"
            for (src, size), ts in missing.items()
        ]
        raise DataError(
            f"suite {suite_id}: {len(missing)} data set(s) are not prepared in {store}; nothing was run. "
            "Prepare them first (PATH: the folder of the official distribution; "
            "`genseg-bench data list` shows each layout):\n  " + "\n  ".join(lines)
        )
    console.print(
        f"[bold]suite {suite_id}[/]: {len(tasks)} task(s), profile {profile.name}, device {device}, "
        f"executor {executor.name if executor else 'local'}, results in {results}"
    )
    summary = Table(title=f"suite {suite_id}")
    for col in ("task", "sizes", "ran", "skipped", "failed", "elsewhere"):
        summary.add_column(col)
    for task in tasks:
        task_sizes = sizes or suite.task_sizes(task)
        s = run_grid_with_progress(
            catalog,
            task.id,
            methods,
            task_sizes,
            seeds,
            profile,
            Store(store),
            results,
            device,
            retry_failed,
            resample,
            executor,
            threads,
        )
        summary.add_row(
            task.id,
            ",".join(map(str, task_sizes)),
            str(len(s.ran)),
            str(len(s.skipped)),
            str(len(s.failed)),
            str(len(s.elsewhere)),
        )
    console.print(summary)


def print_dry_run(
    catalog: Catalog,
    grids: list[tuple[str, list[int] | None]],
    methods: list[str] | None,
    seeds: list[int],
    profile: Profile,
    results: Path,
    store: Store,
    executor: Executor,
    device: str,
    retry_failed: bool,
    resample: bool = False,
) -> None:
    """``run --dry-run``: the job table, what each job asks for, and the estimated device time."""
    from genseg_bench.executors import SPEED_TABLE, dry_run

    rows, entry = dry_run(
        catalog,
        grids,
        methods,
        seeds,
        profile,
        results,
        store,
        executor,
        device,
        retry_failed,
        resample=resample,
    )
    res = ", ".join(f"{k} {v}" for k, v in executor.resources().items())
    table = Table(title=f"{len(rows)} job(s), executor {executor.name}, each: {res}, device {device}")
    for col in ("task", "method"):
        table.add_column(col, no_wrap=True)  # names users type: never broken across lines
    for col in ("n", "seed", "px", "iterations", "status", "est. time", "note"):
        table.add_column(col, overflow="fold")
    for r in rows:
        est = "?" if r.seconds is None else f"{r.seconds / 60:.1f} min"
        table.add_row(
            r.task,
            r.method,
            str(r.train_size),
            str(r.seed),
            str(r.image_size),
            str(r.iterations),
            r.status,
            est,
            r.note,
        )
    console.print(table)
    todo = [r for r in rows if not r.status.startswith("done")]
    gpus = float(executor.resources().get("gpus", 0) or 0)
    unit = "GPU" if gpus > 0 or device.startswith("cuda") else "CPU-run"
    for task_id in dict.fromkeys(r.task for r in rows):
        mine = [r for r in todo if r.task == task_id]
        est = "" if entry is None else f", {sum(r.seconds or 0.0 for r in mine) / 3600:.1f} {unit}-h"
        console.print(f"{task_id}: {len(mine)} job(s) to run{est}", soft_wrap=True)
    if entry is None:
        console.print(
            f"no estimate: {SPEED_TABLE} is absent (benchmarks/genseg_speed.py --table writes it).",
            soft_wrap=True,
        )
        return
    total = sum(r.seconds or 0.0 for r in todo)
    console.print(
        f"{len(todo)} job(s) to run; estimated {unit} time {total / 3600:.1f} h "
        f"(training iterations only, from {entry.get('device_name', entry.get('device'))}: "
        f"{entry.get('image_size')} px, batch {entry.get('batch_size')}, measured {entry.get('measured', '?')}; "
        "scaled to each job's pixels and batch).",
        soft_wrap=True,
    )
    if entry.get("device") == "cpu" and unit == "GPU":
        console.print(
            "[yellow]These are CPU numbers: no GPU has measured the table, so this GPU time is an upper bound.[/]",
            soft_wrap=True,
        )


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether the user gave option ``name`` (the suite's profile applies only when they did not)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


@run_app.command("run")
@friendly
def run_cmd(
    ctx: typer.Context,
    task: Annotated[
        str | None, typer.Option("--task", "-t", help="Task id (see `genseg-bench tasks`).")
    ] = None,
    methods: Annotated[
        str | None, typer.Option(help="Comma-separated methods (default: the task's).")
    ] = None,
    sizes: Annotated[
        str | None,
        typer.Option(help="Comma-separated training sizes, each 1 or more (default: the task's)."),
    ] = None,
    seeds: Annotated[
        str, typer.Option(help=f"Comma-separated training seeds, each 0 to {MAX_SEED}.")
    ] = "0,1,2",
    profile: Annotated[
        str, typer.Option(help="Budget profile: quick, cpu (real data on a CPU), paper or smoke.")
    ] = "quick",
    image_size: Annotated[
        int | None,
        typer.Option(help="Override the profile's image size (8 or more; the model may need a multiple)."),
    ] = None,
    iterations: Annotated[
        int | None, typer.Option(help="Override the profile's iteration budget (1 or more).")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    results: ResultsOpt = Path("results"),
    store: StoreOpt = DEFAULT_STORE,
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
    executor: Annotated[
        str,
        typer.Option(help="Who runs the jobs: local (this process), ray or slurm (docs/scaling.md)."),
    ] = "local",
    threads: Annotated[
        int | None,
        typer.Option(
            help="Torch CPU threads per run (default: local, the cores this process may use; "
            "ray/slurm, --cpus-per-run)."
        ),
    ] = None,
    cpus_per_run: Annotated[
        float | None, typer.Option(help="ray/slurm: CPUs each run asks for (default 1).")
    ] = None,
    gpus_per_run: Annotated[
        float | None, typer.Option(help="ray/slurm: GPUs each run asks for (default 0; ray takes fractions).")
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="ray: a cluster to join (default: start Ray on this machine).")
    ] = None,
    slurm_partition: Annotated[str | None, typer.Option(help="slurm: the partition.")] = None,
    slurm_time: Annotated[
        int | None, typer.Option(help="slurm: time limit of each run, in minutes (default 120).")
    ] = None,
    slurm_array_parallelism: Annotated[
        int | None, typer.Option(help="slurm: most runs of the array at once (default 8).")
    ] = None,
    slurm_config: Annotated[
        Path | None,
        typer.Option(help="slurm: a TOML file of these settings and extra submitit parameters."),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            help="Print the jobs, the resources each asks for and an estimate of device time; run nothing."
        ),
    ] = False,
) -> None:
    """Run a task's grid (methods x sizes x seeds); finished runs are skipped, so an interrupted grid resumes."""
    from genseg_bench.profiles import get_profile, recipe_text

    if (task is None) == (suite is None):
        raise GensegBenchError(
            "give one of --task or --suite (see `genseg-bench tasks` and `genseg-bench suites`)."
        )
    size_list = unique_ints(sizes, "--sizes", 1)
    seed_list = unique_ints(seeds, "--seeds", 0, MAX_SEED) or []
    check_iterations(iterations)
    check_image_size(image_size)
    check_device_name(device)
    catalog = Catalog.load()
    method_list = names(methods, "--methods")
    for name in method_list or []:
        catalog.method(name)  # an unknown method fails before any data is read
    if suite is not None:
        spec = catalog.suite(suite)
        prof = get_profile(profile if _given(ctx, "profile") else spec.profile, image_size, iterations)
    else:
        catalog.task(task or "")
        prof = get_profile(profile, image_size, iterations)

    from genseg_bench.executors import make_executor

    if threads is not None and threads < 1:
        raise GensegBenchError(f"--threads {threads}: give 1 or more.")
    for opt, value in (("--cpus-per-run", cpus_per_run), ("--gpus-per-run", gpus_per_run)):
        if value is not None and value < 0:
            raise GensegBenchError(f"{opt} {value}: give 0 or more.")
    if executor != "local" and device.startswith("cuda") and not gpus_per_run:
        raise GensegBenchError(f"--device {device} with --executor {executor}: give --gpus-per-run (e.g. 1).")
    ex = make_executor(
        executor,
        threads=threads,
        results=results,
        ray_address=ray_address,
        cpus_per_run=cpus_per_run,
        gpus_per_run=gpus_per_run,
        slurm_partition=slurm_partition,
        slurm_time=slurm_time,
        slurm_array_parallelism=slurm_array_parallelism,
        slurm_config=slurm_config,
    )
    if executor == "slurm" and ex.which_cluster() == "local":  # type: ignore[attr-defined]
        note(
            "no Slurm here (sbatch not found): submitit's local executor runs the job array on this machine."
        )
    if dry_run:
        grids = (
            [(t.id, size_list or catalog.suite(suite).task_sizes(t)) for t in catalog.suite_tasks(suite)]
            if suite is not None
            else [(task or "", size_list)]
        )
        print_dry_run(
            catalog,
            grids,
            method_list,
            seed_list,
            prof,
            results,
            Store(store),
            ex,
            device,
            retry_failed,
            resample,
        )
        return
    # torch loads here, once every value is known to be valid; a remote worker resolves the device itself
    # (a login node without a GPU may drive a GPU cluster)
    from genseg_bench.runner import resolve_device

    dev: torch.device | str = resolve_device(device) if executor == "local" else device
    try:
        if suite is not None:
            run_suite(
                catalog,
                suite,
                method_list,
                size_list,
                seed_list,
                prof,
                dev,
                results,
                store,
                retry_failed,
                resample,
                ex,
                threads,
            )
            return
        assert task is not None
        console.print(
            f"[bold]{task}[/]: profile {prof.name} ({prof.iterations} it, "
            f"{prof.image_size or catalog.task(task).image_size}px), device {dev}, executor {ex.name}, "
            f"results in {results}"
        )
        console.print(recipe_text(prof))
        summary = run_grid_with_progress(
            catalog,
            task,
            method_list,
            size_list,
            seed_list,
            prof,
            Store(store),
            results,
            dev,
            retry_failed,
            resample,
            ex,
            threads,
        )
        elsewhere = f", {len(summary.elsewhere)} running or done elsewhere" if summary.elsewhere else ""
        lost = f", {len(summary.lost)} lost (no result)" if summary.lost else ""
        console.print(
            f"{len(summary.ran)} run(s) done, {len(summary.skipped)} skipped (already done), "
            f"{len(summary.failed)} failed{elsewhere}{lost}."
        )
    finally:
        ex.close()
    if report:
        from genseg_bench.cli_report import print_report

        print_report(catalog, task, results, None, "table")
