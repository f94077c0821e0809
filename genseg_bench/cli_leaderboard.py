"""CLI commands of the leaderboard side: suites, results export, publish, serve, curves, submit.

One of the CLI's sub-apps by concern (see ``cli.py``); ``register`` adds these
commands to the main typer app. Shared options and error handling come from
``cli_common``; ``run --suite`` lives with ``run`` in ``cli_run``. Like the rest
of the CLI, the commands parse, call the library and render; library errors
become one message and exit code 2 through ``friendly``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from genseg_bench.catalog import Catalog
from genseg_bench.cli_common import ResultsOpt, TokenOpt, console, friendly
from genseg_bench.cli_common import names as _names
from genseg_bench.errors import GensegBenchError
from genseg_bench.specs import RunResult


def _load_results(results: Path, tasks: list[str] | None = None) -> list[RunResult]:
    from genseg_bench.results import iter_results

    out: list[RunResult] = []
    for t in tasks or [None]:
        out += list(iter_results(results, t))
    if not out:
        where = f" for {', '.join(tasks)}" if tasks else ""
        raise GensegBenchError(f"no results{where} under {results}. Run `genseg-bench run` first.")
    return out


def register(app: typer.Typer) -> None:
    """Add the leaderboard commands to the main app."""
    results_app = typer.Typer(help="Export run results as a table.", no_args_is_help=True)
    board_app = typer.Typer(help="Publish and serve the leaderboard.", no_args_is_help=True)
    app.add_typer(results_app, name="results")
    app.add_typer(board_app, name="leaderboard")

    @app.command("suites")
    @friendly
    def suites_cmd(
        suite: Annotated[str | None, typer.Argument(help="Show every task of this suite.")] = None,
    ) -> None:
        """List the suites: named task sets to run (`run --suite`) and submit (`submit --suite`)."""
        catalog = Catalog.load()
        if suite is not None:
            spec = catalog.suite(suite)
            table = Table(title=f"suite {suite}: {spec.description}")
            for col in ("task", "organ", "modality", "dim", "sizes", "seeds"):
                table.add_column(col, overflow="fold")
            for t in catalog.suite_tasks(suite):
                sizes = ",".join(map(str, spec.task_sizes(t)))
                seeds = ",".join(map(str, spec.seeds))
                table.add_row(t.id, t.organ, t.modality, f"{t.dims}D", sizes, seeds)
            console.print(table)
            return
        table = Table(title="genseg-bench suites", caption="`genseg-bench suites ID` lists a suite's tasks")
        for col in ("id", "n", "tasks", "sizes", "profile", "description"):
            table.add_column(col, overflow="fold")
        for sid, spec in catalog.suites.items():
            tasks = [t.id for t in catalog.suite_tasks(sid)]
            shown = ", ".join(tasks[:6]) + (f", … (+{len(tasks) - 6})" if len(tasks) > 6 else "")
            table.add_row(sid, str(len(tasks)), shown, spec.sizes, spec.profile, spec.description)
        console.print(table)

    @results_app.command("export")
    @friendly
    def export_cmd(
        out: Annotated[
            Path, typer.Option(help="New folder for data/results.parquet, tasks.json, README.md.")
        ] = Path("results-export"),
        results: ResultsOpt = Path("results"),
        tasks: Annotated[str | None, typer.Option(help="Comma-separated task ids (default: all).")] = None,
    ) -> None:
        """Write every run result as a Hugging Face `datasets` table (parquet): one row per run and test set."""
        from genseg_bench.export import write_export

        res = _load_results(results, _names(tasks))
        files = write_export(res, Catalog.load().tasks, out)
        n_rows = sum(max(1, len(r.test_sets)) for r in res)
        console.print(
            f"[green]exported[/] {len(res)} runs ({n_rows} rows) to {out}: {', '.join(map(str, files))}"
        )

    @board_app.command("publish")
    @friendly
    def publish_cmd(
        repo: Annotated[str, typer.Option(help="Hub dataset repo, ORG/NAME.")],
        results: ResultsOpt = Path("results"),
        create_pr: Annotated[
            bool, typer.Option("--create-pr", help="Open a pull request (a repo you do not own).")
        ] = False,
        dry_run: Annotated[
            Path | None,
            typer.Option("--dry-run", help="Write the files that would be pushed into this new folder."),
        ] = None,
        token: TokenOpt = None,
        private: Annotated[
            bool, typer.Option(help="Create the repo private (when it does not exist).")
        ] = False,
    ) -> None:
        """Push the results table to a Hugging Face dataset repo in one commit."""
        from genseg_bench.publish import publish, require_hub

        if dry_run is None:
            require_hub(token, "leaderboard publish")  # before reading anything: fail fast offline
        res = _load_results(results)
        where, files = publish(res, Catalog.load().tasks, repo, dry_run, create_pr, token, private)
        verb = (
            "wrote (dry run)" if dry_run is not None else ("opened a pull request" if create_pr else "pushed")
        )
        console.print(f"[green]{verb}[/] {len(files)} files ({', '.join(files)}): {where}")

    @board_app.command("serve")
    @friendly
    def serve_cmd(
        results_dir: Annotated[Path | None, typer.Option("--results-dir", help="A result folder.")] = None,
        parquet: Annotated[
            Path | None, typer.Option("--parquet", help="An export folder or its results.parquet.")
        ] = None,
        repo: Annotated[str | None, typer.Option(help="A Hub results dataset repo, ORG/NAME.")] = None,
        host: str = "127.0.0.1",
        port: Annotated[int, typer.Option(min=1, max=65535)] = 7860,
        refresh: Annotated[
            float | None, typer.Option(min=1.0, help="Reload the results every N seconds.")
        ] = None,
    ) -> None:
        """Serve the Gradio leaderboard (the Space's app) on http://HOST:PORT (default: ./results)."""
        import importlib.util

        if importlib.util.find_spec("gradio") is None:
            raise GensegBenchError(
                "`leaderboard serve` needs gradio, which the core install leaves out: "
                "pip install 'genseg-bench[leaderboard]' (or pip install gradio)."
            )
        from genseg_bench.leaderboard_app.data import DataSource
        from genseg_bench.leaderboard_app.ui import launch

        if results_dir is None and parquet is None and repo is None:
            results_dir = Path("results")
        source = DataSource(results_dir, parquet, repo, refresh)
        snap = source.get()
        console.print(
            f"leaderboard of {len(snap.results)} runs from {snap.description} at "
            f"[bold]http://{host}:{port}/[/] (Ctrl-C stops)"
        )
        launch(source, host, port, quiet=True)

    @app.command("curves")
    @friendly
    def curves_cmd(
        task: Annotated[str, typer.Option("--task", "-t")],
        methods: Annotated[
            str | None,
            typer.Option(help="Comma-separated methods a,b[,...]: factors are of each method over the last."),
        ] = None,
        results: ResultsOpt = Path("results"),
        out: Annotated[Path, typer.Option(help="Folder for the PNG and SVG plots.")] = Path("curves"),
        test_set: Annotated[str | None, typer.Option(help="One test set (default: every one).")] = None,
    ) -> None:
        """Score vs training-set size with std bands, and the data-efficiency factor of a over b."""
        from genseg_bench import report as rep
        from genseg_bench.curves import curves_from_rows, efficiency, plot_curves, shared_context

        catalog = Catalog.load()
        spec = catalog.task(task)
        names = _names(methods)
        res = _load_results(results, [task])
        curves = curves_from_rows(rep.aggregate(spec, res), names)
        if names:
            missing = [m for m in names if m not in {c.method for c in curves}]
            if missing:
                raise GensegBenchError(
                    f"no successful results of {', '.join(missing)} for task {task} under {results}."
                )
        sets = [ts.name for ts in spec.test_sets if test_set in (None, ts.name)]
        if not sets:
            raise GensegBenchError(
                f"task {task} has no test set {test_set!r}; it has {[t.name for t in spec.test_sets]}."
            )
        for ts in sets:
            cs = [c for c in curves if c.test_set == ts]
            if not cs:
                continue
            base = out / f"{task}__{ts}"
            plot_curves(cs, f"{task}: {ts}", base)
            console.print(f"[green]wrote[/] {base}.png and {base}.svg")
            if names is None or len(names) < 2:
                continue
            # a factor compares runs of one context only (profile, budget, settings, data, task version):
            # the report's grouping rule, so a smoke curve is never scored against a quick one
            table = Table(
                title=f"{task} / {ts}: data-efficiency factor over {names[-1]}",
                caption="labels a method needs to reach the base's score, interpolated on the log-size axis; "
                "≥ / < are bounds outside the measured sizes; pairs only within one profile and budget",
            )
            for col in (
                "method",
                "profile, budget",
                f"size ({names[-1]})",
                f"{names[-1]} score",
                "labels needed",
                "factor",
            ):
                table.add_column(col)
            for b in (c for c in cs if c.method == names[-1]):
                for a in (c for c in cs if c.method in names[:-1] and shared_context(c) == shared_context(b)):
                    where = ", ".join(shared_context(b).split(" | ")[:2])
                    for e in efficiency(a, b):
                        table.add_row(
                            a.method, where, str(e.size), f"{e.target:.3f}", e.labels_text(), e.factor_text()
                        )
            console.print(table)

    @app.command("submit")
    @friendly
    def submit_cmd(
        method: Annotated[str, typer.Option(help="The method to submit (its results must cover the suite).")],
        suite: Annotated[str, typer.Option(help="Suite id (see `genseg-bench suites`).")],
        results: ResultsOpt = Path("results"),
        profile: Annotated[
            str | None, typer.Option(help="Profile of the runs (default: the suite's).")
        ] = None,
        out: Annotated[Path | None, typer.Option(help="New folder for the submission.")] = None,
        allow_dirty: Annotated[bool, typer.Option(help="Accept results from uncommitted code.")] = False,
        push: Annotated[bool, typer.Option(help="Open a pull request on the Hub repo.")] = False,
        repo: Annotated[
            str | None, typer.Option(help="Hub results dataset repo, ORG/NAME (with --push).")
        ] = None,
        token: TokenOpt = None,
    ) -> None:
        """Check that a method's results cover a suite cleanly and write the submission (parquet + manifest)."""
        from genseg_bench.publish import push_submission, require_hub, submission_dirname
        from genseg_bench.submit import collect_submission, write_submission

        if push and not repo:
            raise GensegBenchError("--push needs --repo ORG/NAME (the leaderboard's results dataset).")
        if push:
            require_hub(token, "submit --push")  # fail before writing anything
        catalog = Catalog.load()
        chosen, manifest = collect_submission(catalog, suite, method, results, profile, allow_dirty)
        name = submission_dirname(method, suite)
        folder = out or Path("submissions") / name
        urls: list[str] = []  # pushed from the complete temporary folder: a failed push leaves no folder
        publish = (lambda tmp: urls.append(push_submission(tmp, repo or "", name, token))) if push else None
        files = write_submission(catalog, chosen, manifest, folder, publish)
        console.print(
            f"[green]submission ready[/]: {len(chosen)} runs of {method} on suite {suite} "
            f"({len(manifest['tasks'])} tasks) in {folder}: {', '.join(f.name for f in files)}"
        )
        for url in urls:
            console.print(f"[green]pull request opened[/]: {url}")
