"""The result store: one JSON file per run, written atomically; schema checks on read.

Layout: ``<results>/<task>/<run_id>.json``. A file is written to a temporary
name and renamed, so a killed process never leaves a truncated result, and a
rerun sees exactly the runs that finished. Reading checks the schema version: an
older file is migrated when a migration exists, anything else is rejected with
a message naming the file, never misread.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import ValidationError

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


def write_result(results_dir: Path, result: RunResult) -> Path:
    """Write atomically (temporary file in the same folder, then ``os.replace``)."""
    path = result_path(results_dir, result.spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(result.model_dump_json(indent=1))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
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


def iter_results(results_dir: Path, task: str | None = None) -> Iterator[RunResult]:
    """Every result under ``results_dir`` (optionally one task), raising on a bad file."""
    root = Path(results_dir)
    dirs = [root / task] if task else sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    for d in dirs:
        if not d.is_dir():
            continue
        for path in sorted(d.glob("*.json")):
            yield read_result(path)


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
