"""Where the leaderboard's results come from: a result folder, an export (parquet), or a Hub dataset repo.

Every source ends as the same pair: the :class:`RunResult` records and the task
specs they belong to. An export or Hub snapshot carries its own ``tasks.json``
(so the paper numbers shown are those of the results' own catalog); tasks it
lacks fall back to the installed catalog. A Hub source is re-read at most every
``refresh_s`` seconds, so a Space shows newly merged submissions without a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from genseg_bench.errors import HubError, ResultFileError
from genseg_bench.specs import RunResult, TaskSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    results: list[RunResult]
    tasks: dict[str, TaskSpec]
    description: str


def _with_catalog(tasks: dict[str, TaskSpec], results: list[RunResult]) -> dict[str, TaskSpec]:
    """Tasks the source lacks, from the installed catalog when there is one.

    The Space ships no catalog (its copy of genseg_bench holds what the board
    needs, see ``vendor.py``): there a task without specs in the source is
    listed as unknown instead.
    """
    missing = {r.spec.task for r in results} - set(tasks)
    if not missing:
        return tasks
    try:
        from genseg_bench.catalog import Catalog
    except ImportError:
        return tasks
    catalog = Catalog.load()
    return {**{t: catalog.tasks[t] for t in missing if t in catalog.tasks}, **tasks}


def load_results_dir(path: Path) -> Snapshot:
    """Every result JSON under a results folder (``genseg-bench run --results``)."""
    from genseg_bench.results import iter_results

    path = Path(path)
    if not path.is_dir():
        raise ResultFileError(f"{path}: no such results folder. Run `genseg-bench run` or pass --parquet.")
    results = list(iter_results(path))
    return Snapshot(results, _with_catalog({}, results), f"result folder {path}")


def load_parquet(path: Path) -> Snapshot:
    """An export folder (``results export``/``publish --dry-run``), or one parquet file of it."""
    from genseg_bench.export import (
        TASKS_FILE,
        load_export,
        read_parquet_rows,
        read_tasks_json,
        results_from_rows,
    )

    path = Path(path)
    if path.is_dir():
        results, tasks = load_export(path)
    elif path.is_file():
        results = results_from_rows(read_parquet_rows([path]), where=str(path))
        tasks = {}
        for cand in (path.parent / TASKS_FILE, path.parent.parent / TASKS_FILE):
            if cand.is_file():
                tasks = read_tasks_json(cand)
                break
    else:
        raise ResultFileError(f"{path}: no such parquet file or export folder.")
    return Snapshot(results, _with_catalog(tasks, results), f"export {path}")


def load_hub(repo: str, revision: str | None = None, token: str | None = None) -> Snapshot:
    """The results dataset repo on the Hub (main table, submissions and tasks.json)."""
    import tempfile

    from huggingface_hub import snapshot_download

    with tempfile.TemporaryDirectory(prefix="genseg-lb-") as tmp:
        try:
            snapshot_download(
                repo_id=repo,
                repo_type="dataset",
                revision=revision,
                local_dir=tmp,
                token=token,
                allow_patterns=["data/*.parquet", "tasks.json", "submissions/*/*"],
            )
        except Exception as exc:  # network, offline mode, missing repo: one clear message
            raise HubError(
                f"reading the results dataset {repo!r} from the Hub failed: {type(exc).__name__}: {exc}. "
                "Check the network and the repository name, or serve a local folder (--results-dir/--parquet)."
            ) from exc
        snap = load_parquet(Path(tmp))
    return Snapshot(snap.results, snap.tasks, f"Hub dataset {repo}")


class DataSource:
    """A snapshot and how to refresh it; thread-safe (the app answers requests from several threads)."""

    def __init__(
        self,
        results_dir: Path | None = None,
        parquet: Path | None = None,
        repo: str | None = None,
        refresh_s: float | None = None,
    ) -> None:
        given = [x for x in (results_dir, parquet, repo) if x is not None]
        if len(given) != 1:
            raise ResultFileError("give exactly one of a results folder, a parquet export or a Hub repo.")
        self._results_dir, self._parquet, self._repo = results_dir, parquet, repo
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._snap = self._load()
        self._loaded = time.monotonic()

    def _load(self) -> Snapshot:
        if self._results_dir is not None:
            return load_results_dir(self._results_dir)
        if self._parquet is not None:
            return load_parquet(self._parquet)
        assert self._repo is not None
        return load_hub(self._repo)

    def get(self) -> Snapshot:
        """The current snapshot; reloaded when older than ``refresh_s`` (a failed reload keeps the old one)."""
        with self._lock:
            if self._refresh_s is not None and time.monotonic() - self._loaded > self._refresh_s:
                try:
                    self._snap = self._load()
                except (HubError, ResultFileError):
                    log.warning(
                        "reloading the results failed; still showing the previous ones", exc_info=True
                    )
                self._loaded = time.monotonic()
            return self._snap
