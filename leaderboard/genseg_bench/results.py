"""The result store: one JSON file per run, written atomically; schema checks on read.

Layout: ``<results>/<task>/<run_id>.json``. A file is written to a hidden
temporary name and renamed (:mod:`genseg_bench.atomic`, with the user's umask),
so a killed process never leaves a truncated result, a rerun sees exactly the
runs that finished, and readers skip the writers' temporary files. Reading checks
the schema version: an older file is migrated when a migration exists, anything
else is rejected with a message naming the file, never misread.

Nothing is overwritten that cannot be read: a result file this version cannot
read (a newer schema, corrupt JSON, a foreign file under a run's name) is moved
aside to ``<name>.unreadable-<time>`` before its run is written again. Readers
read every file and report every bad one at once (:func:`load_results`), so one
bad file does not hide the others.
"""

from __future__ import annotations

import json
import platform
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from genseg_bench.atomic import is_temporary, write_text_atomic
from genseg_bench.errors import ResultFileError
from genseg_bench.specs import SCHEMA_VERSION, RunResult, RunSpec

MIGRATIONS: dict[int, Any] = {}
"""``MIGRATIONS[v]`` turns a schema-v dict into a schema-(v+1) dict.

None exist: schema 1 results drew their validation cases outside the n labelled
cases and stepped the scheduler once per epoch, so they are not the same
experiment and cannot be migrated (see ``UNMIGRATABLE``)."""

UNMIGRATABLE: dict[int, str] = {
    1: (
        "schema 1 drew validation cases outside the n labelled cases and stepped the learning-rate "
        "scheduler once per epoch; its numbers are not comparable with this version's"
    ),
}


def result_path(results_dir: Path, spec: RunSpec) -> Path:
    return Path(results_dir) / spec.task / f"{spec.run_id}.json"


@dataclass(frozen=True)
class SetAside:
    """A result file that could not be read, moved to ``moved_to`` instead of being overwritten."""

    path: Path
    moved_to: Path
    reason: str

    def message(self) -> str:
        return f"moved {self.path} aside to {self.moved_to.name} (unreadable: {self.reason}); its run is done again"


def set_aside_unreadable(path: Path) -> SetAside | None:
    """Move ``path`` aside when it exists but cannot be read; None when it is absent or readable.

    The new name does not end in ``.json``, so readers no longer see it, and it says
    when it was moved; the file itself is kept untouched for a newer genseg-bench (or a
    person) to read.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        read_result(path)
    except ResultFileError as exc:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        target = path.with_name(f"{path.name}.unreadable-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = path.with_name(f"{path.name}.unreadable-{stamp}-{n}")
        path.rename(target)
        return SetAside(path, target, str(exc).removeprefix(f"{path}: "))
    return None


def write_result(results_dir: Path, result: RunResult) -> Path:
    """Write atomically (hidden temporary file in the same folder, then ``os.replace``).

    An existing file this version cannot read is moved aside first, never overwritten.
    """
    path = result_path(results_dir, result.spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    set_aside_unreadable(path)
    write_text_atomic(path, result.model_dump_json(indent=1))
    return path


def read_result(path: Path) -> RunResult:
    """Read and validate one result file (migrating older schema versions)."""
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ResultFileError(
            f"{path}: not valid JSON ({exc}); the file is incomplete or corrupt. "
            "Delete it and rerun the grid: only this run is redone."
        ) from exc
    if not isinstance(data, dict) or "schema_version" not in data:
        raise ResultFileError(
            f"{path}: not a genseg-bench result (no schema_version). Move foreign files out of the results folder."
        )
    version = data["schema_version"]
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ResultFileError(
            f"{path}: schema version {version} is newer than this genseg-bench understands ({SCHEMA_VERSION}). "
            "Upgrade genseg-bench to read it."
        )
    while version < SCHEMA_VERSION:
        if version not in MIGRATIONS:
            why = f" ({UNMIGRATABLE[version]})" if version in UNMIGRATABLE else ""
            raise ResultFileError(
                f"{path}: schema version {version} cannot be migrated{why}. Move the old results folder "
                "aside and rerun the grid."
            )
        data = MIGRATIONS[version](data)
        version = data["schema_version"]
    try:
        result = RunResult.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ResultFileError(
            f"{path}: incomplete or invalid result ({where}: {first['msg']}). Delete it and rerun the grid."
        ) from exc
    if result.run_id != result.spec.run_id:
        raise ResultFileError(
            f"{path}: run_id does not match its spec (edited by hand?). Delete it and rerun."
        )
    return result


@dataclass
class LoadedResults:
    """Every readable result of a folder, and one error per file that could not be read."""

    results: list[RunResult] = field(default_factory=list)
    problems: list[ResultFileError] = field(default_factory=list)

    def problems_message(self, where: Path) -> str:
        """One message listing every unreadable file and why."""
        lines = "\n  ".join(str(p) for p in self.problems)
        return (
            f"{len(self.problems)} file(s) under {where} cannot be read as results:\n  {lines}\n"
            "Move foreign files out of the results folder; delete broken result files and rerun the grid "
            "(only their runs are redone)."
        )


def result_files(results_dir: Path, task: str | None = None) -> list[Path]:
    """The result files under ``results_dir`` (one task's, or every task's), temporary files skipped."""
    root = Path(results_dir)
    if task:
        dirs = [root / task]
    else:
        dirs = (
            sorted(p for p in root.iterdir() if p.is_dir() and not is_temporary(p)) if root.is_dir() else []
        )
    return [p for d in dirs if d.is_dir() for p in sorted(d.glob("*.json")) if not is_temporary(p)]


def load_results(results_dir: Path, task: str | None = None) -> LoadedResults:
    """Read every result file (one task's, or all), collecting every bad file instead of stopping at one."""
    out = LoadedResults()
    for path in result_files(results_dir, task):
        try:
            out.results.append(read_result(path))
        except ResultFileError as exc:
            out.problems.append(exc)
    return out


def iter_results(results_dir: Path, task: str | None = None) -> Iterator[RunResult]:
    """Every result under ``results_dir`` (optionally one task); one error listing every bad file."""
    loaded = load_results(results_dir, task)
    if len(loaded.problems) == 1:
        raise loaded.problems[0]
    if loaded.problems:
        raise ResultFileError(loaded.problems_message(Path(results_dir)))
    yield from loaded.results


def existing_status(results_dir: Path, spec: RunSpec) -> str | None:
    """``ok`` / ``failed`` for a finished run, None when it has not run (or its file is unreadable)."""
    path = result_path(results_dir, spec)
    if not path.is_file():
        return None
    try:
        return read_result(path).status
    except ResultFileError:
        return None


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("genseg-bench", "torch", "torchvision", "segmentation-models-pytorch", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit() -> str:
    """The commit of the checkout genseg_bench runs from ('' outside a git checkout); '+dirty' if modified."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return sha + ("+dirty" if dirty else "")
