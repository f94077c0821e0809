"""The ``genseg-bench`` command: typer sub-apps by concern, assembled into one app.

* :mod:`~genseg_bench.cli_run`: ``tasks``, ``methods``, ``run`` (a task's grid or a suite);
* :mod:`~genseg_bench.cli_report`: ``report``, ``reproduction``;
* :mod:`~genseg_bench.cli_data`: the ``data`` group (prepare, list, push, pull);
* :mod:`~genseg_bench.cli_leaderboard`: ``suites``, ``results``, ``leaderboard``, ``curves``, ``submit``.

Shared options, consoles and error handling are in :mod:`~genseg_bench.cli_common`.
Each command parses and checks its options, calls the library and renders with
rich; library errors (:class:`~genseg_bench.errors.GensegBenchError`) are one
message naming the file or option at fault and the fix, with exit code 2. Nothing
here imports torch: it loads when a run starts.
"""

from __future__ import annotations

import typer

from genseg_bench.cli_common import console, err_console, friendly
from genseg_bench.cli_data import data_app
from genseg_bench.cli_leaderboard import register as _register_leaderboard
from genseg_bench.cli_report import report_app
from genseg_bench.cli_run import run_app, run_grid_with_progress

__all__ = ["app", "console", "err_console", "friendly", "run_grid_with_progress"]

app = typer.Typer(help="genseg-bench: medical image segmentation with very few labels.", no_args_is_help=True)
app.add_typer(run_app)  # no name: tasks, methods and run are top-level commands
app.add_typer(report_app)
app.add_typer(data_app, name="data")
leaderboard_app = typer.Typer()  # suites, curves, submit and the results / leaderboard groups, listed last
_register_leaderboard(leaderboard_app)
app.add_typer(leaderboard_app)

if __name__ == "__main__":  # pragma: no cover
    app()
