"""Plain log lines (off a terminal, and in the workers of the Ray / Slurm executors)."""

from __future__ import annotations

import io
from types import SimpleNamespace

from genseg_bench.progress import LogReporter


def _spec(seed: int) -> SimpleNamespace:
    return SimpleNamespace(method="unet", train_size=8, seed=seed)


def test_grid_lines_count_runs_and_a_worker_without_a_grid_names_no_count() -> None:
    out = io.StringIO()
    grid = LogReporter(out)
    grid.grid_started(total=3, skipped=1)
    grid.run_started(_spec(0), 6)  # type: ignore[arg-type]
    assert "run 2/3 started: unet n=8 seed=0 (6 iterations)" in out.getvalue()

    out = io.StringIO()
    worker = LogReporter(out)  # an executor's worker runs one job: it never sees the grid
    worker.run_started(_spec(1), 6)  # type: ignore[arg-type]
    line = out.getvalue()
    assert "run started: unet n=8 seed=1 (6 iterations)" in line and "/0" not in line


def test_validation_lines_only_at_validations() -> None:
    out = io.StringIO()
    rep = LogReporter(out)
    rep.run_started(_spec(0), 6)  # type: ignore[arg-type]
    rep.run_progress(1, 6, {})  # per-iteration calls carry no metrics
    rep.run_progress(3, 6, {"loss": 0.5, "val": 0.25, "lr": 1e-3})
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert "unet n=8 seed=0 it 3/6 loss=0.5000 val=0.2500 lr=0.001 elapsed=" in lines[1]
