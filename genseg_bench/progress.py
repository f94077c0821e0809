"""Progress for a grid and the training run inside it (the CLI's Reporters).

:class:`RichReporter` draws bars on a terminal; :class:`LogReporter` writes plain,
timestamped lines (one per validation and per finished run) when stdout is not a
terminal, so a run under nohup or CI says what it is doing.
"""

from __future__ import annotations

import time
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from genseg_bench.specs import RunResult, RunSpec


class RichReporter:
    """Two bars: runs of the grid, and iterations of the current run with its latest metrics."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=console,
            transient=False,
        )
        self.grid_bar: int | None = None
        self.run_bar: int | None = None

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def grid_started(self, total: int, skipped: int) -> None:
        info = f"{skipped} already done" if skipped else ""
        self.grid_bar = self.progress.add_task("grid", total=total, completed=skipped, info=info)

    def run_started(self, spec: RunSpec, iterations: int) -> None:
        if self.run_bar is not None:
            self.progress.remove_task(self.run_bar)
        desc = f"{spec.method} n={spec.train_size} seed={spec.seed}"
        self.run_bar = self.progress.add_task(desc, total=iterations, info="")

    def run_progress(self, iteration: int, total: int, metrics: dict[str, float]) -> None:
        if self.run_bar is None:
            return
        if metrics:  # per-iteration calls carry no metrics (no host sync); keep the last ones shown
            info = " ".join(f"{k}={v:.3f}" for k, v in metrics.items())
            self.progress.update(self.run_bar, completed=iteration, total=total, info=info)
        else:
            self.progress.update(self.run_bar, completed=iteration, total=total)

    def run_finished(self, result: RunResult) -> None:
        if self.grid_bar is not None:
            self.progress.advance(self.grid_bar)
        spec = result.spec
        if result.status == "ok":
            scores = ", ".join(f"{k} {result.score(k):.3f}" for k in result.test_sets)
            self.console.print(
                f"[green]ok[/] {spec.method} n={spec.train_size} seed={spec.seed} "
                f"({result.wall_time_s:.0f}s, best val it {result.best_iteration}): {scores}"
            )
        else:
            first = (result.error or "").splitlines()[0] if result.error else ""
            self.console.print(f"[red]failed[/] {spec.method} n={spec.train_size} seed={spec.seed}: {first}")


class LogReporter:
    """Plain log lines: grid start, run start, each validation (iteration, losses, val, lr, elapsed), run end."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.run = ""
        self.started = time.perf_counter()
        self.done = 0
        self.total = 0

    def __enter__(self) -> LogReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stream.flush()

    def _line(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        self.stream.write(f"[{stamp}] {text}\n")
        self.stream.flush()

    def grid_started(self, total: int, skipped: int) -> None:
        self.total, self.done = total, skipped
        self._line(f"grid: {total} run(s), {skipped} already done")

    def run_started(self, spec: RunSpec, iterations: int) -> None:
        self.run = f"{spec.method} n={spec.train_size} seed={spec.seed}"
        self.started = time.perf_counter()
        # a worker of the Ray / Slurm executors runs one job without a grid: no "run 1/0"
        count = f" {self.done + 1}/{self.total}" if self.total else ""
        self._line(f"run{count} started: {self.run} ({iterations} iterations)")

    def run_progress(self, iteration: int, total: int, metrics: dict[str, float]) -> None:
        if not metrics:  # per-iteration calls carry no metrics; log at validations only
            return
        info = " ".join(f"{k}={v:.3g}" if k == "lr" else f"{k}={v:.4f}" for k, v in metrics.items())
        elapsed = time.perf_counter() - self.started
        self._line(f"{self.run} it {iteration}/{total} {info} elapsed={elapsed:.0f}s")

    def run_finished(self, result: RunResult) -> None:
        self.done += 1
        spec = result.spec
        name = f"{spec.method} n={spec.train_size} seed={spec.seed}"
        if result.status == "ok":
            scores = ", ".join(f"{k} {result.score(k):.4f}" for k in result.test_sets)
            self._line(
                f"ok {name} ({result.wall_time_s:.0f}s, best val {result.best_val_score:.4f} "
                f"at it {result.best_iteration}): {scores}"
            )
        else:
            first = (result.error or "").splitlines()[0] if result.error else ""
            self._line(f"failed {name}: {first}")


class Tally:
    """A reporter that forwards to another and remembers what ran: what a Ctrl-C message needs.

    ``finished``: results written during this grid (ok or failed); ``current``: the run started and not
    finished, with the last iteration it reported (None: none running).
    """

    def __init__(self, inner: RichReporter | LogReporter) -> None:
        self.inner = inner
        self.finished: list[RunResult] = []
        self.current: RunSpec | None = None
        self.iteration = 0
        self.iterations = 0

    def __enter__(self) -> Tally:
        self.inner.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.inner.__exit__(*exc)

    def grid_started(self, total: int, skipped: int) -> None:
        self.inner.grid_started(total, skipped)

    def run_started(self, spec: RunSpec, iterations: int) -> None:
        self.current, self.iteration, self.iterations = spec, 0, iterations
        self.inner.run_started(spec, iterations)

    def run_progress(self, iteration: int, total: int, metrics: dict[str, float]) -> None:
        self.iteration = iteration
        self.inner.run_progress(iteration, total, metrics)

    def run_finished(self, result: RunResult) -> None:
        self.finished.append(result)
        self.current = None
        self.inner.run_finished(result)

    def interrupted_lines(self, results: str, resume: str, executor: str = "local") -> list[str]:
        """What a user needs after Ctrl-C: what is kept, what was lost, and the command that goes on."""
        ok = sum(r.status == "ok" for r in self.finished)
        lines = [
            f"interrupted: {len(self.finished)} run(s) finished in this grid ({ok} ok), their results kept "
            f"under {results}"
        ]
        if self.current is not None:
            c = self.current
            lines.append(
                f"the run {c.method} n={c.train_size} seed={c.seed} stopped at iteration {self.iteration} of "
                f"{self.iterations}; it has no result and starts again from the beginning"
            )
        if executor != "local":
            lines.append(
                f"runs in flight on {executor} may leave their claims behind; the rerun takes them over once "
                "their owners are gone"
            )
        lines.append(f"resume (finished runs are skipped): {resume}")
        return lines
