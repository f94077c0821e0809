"""Results as a table: one row per run and test set, per-case scores kept, provenance in columns.

This is the form results travel in: ``genseg-bench results export`` writes it as
parquet, ``leaderboard publish`` pushes it to a Hub dataset repo, ``submit`` packs a
method's rows with a manifest, and the leaderboard app reads it back. The table is
lossless: :func:`results_from_rows` rebuilds the exact :class:`RunResult` records,
so the leaderboard runs the same :func:`genseg_bench.report.aggregate` as the CLI
and shows the same numbers, from a local folder or from the Hub.

A failed run has one row with an empty ``test_set`` and its ``error``, so failures
stay visible instead of silently shrinking the number of seeds.

Folder layout written by :func:`write_export` (what ``publish`` pushes)::

    data/results.parquet   the table
    tasks.json             the task specs of the tasks in the table (metadata, paper numbers)
    README.md              the dataset card (schema, provenance, how the numbers are made)
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from genseg_bench.atomic import make_temp_dir
from genseg_bench.errors import ResultFileError
from genseg_bench.specs import SCHEMA_VERSION, RunResult, RunSpec, TaskSpec, TestSetResult

RESULTS_FILE = "data/results.parquet"
TASKS_FILE = "tasks.json"
CARD_FILE = "README.md"

_JSON_COLUMNS = (
    "data_fingerprints",
    "versions",
    "method_config",
    "profile_config",
    "extras",
    "budget",
    "trajectory",
    "segmenter",
)


def _features() -> Any:
    """The explicit schema: an empty export and every later one have the same column types."""
    import datasets

    s, i, f = datasets.Value("string"), datasets.Value("int64"), datasets.Value("float64")
    return datasets.Features(
        {
            "schema_version": i,
            "run_id": s,
            "task": s,
            "method": s,
            "train_size": i,
            "seed": i,
            "profile": s,
            "status": s,
            "error": s,
            "test_set": s,
            "domain": s,
            "metric": s,
            "score": f,
            "mean_dice": f,
            "mean_jaccard": f,
            "n_cases": i,
            "case_ids": datasets.Sequence(s),
            "dice": datasets.Sequence(f),
            "jaccard": datasets.Sequence(f),
            "family": s,
            "organ": s,
            "modality": s,
            "dims": i,
            "method_kind": s,
            "backbone": s,
            "encoder": s,
            "best_val_score": f,
            "best_iteration": i,
            "iterations": i,
            "wall_time_s": f,
            "device": s,
            "git_commit": s,
            "genseg_bench_version": s,
            "torch_version": s,
            "python_version": s,
            "created": s,
            "task_hash": s,
            "method_hash": s,
            "profile_hash": s,
            "subset": s,
            "images_seen": i,
            "train_cases": datasets.Sequence(s),
            "val_cases": datasets.Sequence(s),
            "artifacts": datasets.Sequence(s),
            **{c: s for c in _JSON_COLUMNS},
        }
    )


def _dumps(obj: object) -> str:
    return json.dumps(obj, sort_keys=True)


def result_rows(result: RunResult, task: TaskSpec | None = None) -> list[dict[str, Any]]:
    """The rows of one run: one per test set (task order), or one empty-test-set row for a failed run."""
    spec = result.spec
    mc = result.method_config
    base: dict[str, Any] = {
        "schema_version": result.schema_version,
        "run_id": result.run_id,
        "task": spec.task,
        "method": spec.method,
        "train_size": spec.train_size,
        "seed": spec.seed,
        "profile": spec.profile,
        "status": result.status,
        "error": result.error,
        "metric": result.metric,
        "family": task.family if task else None,
        "organ": task.organ if task else None,
        "modality": task.modality if task else None,
        "dims": task.dims if task else None,
        "method_kind": mc.get("kind"),
        "backbone": mc.get("backbone"),
        "encoder": mc.get("encoder"),
        "best_val_score": result.best_val_score,
        "best_iteration": result.best_iteration,
        "iterations": result.iterations,
        "wall_time_s": result.wall_time_s,
        "device": result.device,
        "git_commit": result.git_commit,
        "genseg_bench_version": result.versions.get("genseg-bench"),
        "torch_version": result.versions.get("torch"),
        "python_version": result.versions.get("python"),
        "created": result.created,
        "task_hash": spec.task_hash,
        "method_hash": spec.method_hash,
        "profile_hash": spec.profile_hash,
        "subset": spec.subset,
        "images_seen": result.budget.get("images_seen"),
        "train_cases": list(result.train_cases),
        "val_cases": list(result.val_cases),
        "artifacts": list(result.artifacts),
        "data_fingerprints": _dumps(spec.data_fingerprints),
        "versions": _dumps(result.versions),
        "method_config": _dumps(result.method_config),
        "profile_config": _dumps(result.profile),
        "extras": _dumps(result.extras),
        "budget": _dumps(result.budget),
        "trajectory": _dumps(result.trajectory),
        "segmenter": _dumps(result.segmenter),
    }
    empty = {
        "test_set": None,
        "domain": None,
        "score": None,
        "mean_dice": None,
        "mean_jaccard": None,
        "n_cases": 0,
        "case_ids": [],
        "dice": [],
        "jaccard": [],
    }
    if not result.test_sets:
        return [{**base, **empty}]
    domains = {ts.name: ts.domain for ts in task.test_sets} if task else {}
    order = list(domains) + sorted(set(result.test_sets) - set(domains))
    rows = []
    for name in (n for n in order if n in result.test_sets):
        ts = result.test_sets[name]
        rows.append(
            {
                **base,
                "test_set": name,
                "domain": domains.get(name),
                "score": result.score(name),
                "mean_dice": ts.mean_dice,
                "mean_jaccard": ts.mean_jaccard,
                "n_cases": len(ts.case_ids),
                "case_ids": list(ts.case_ids),
                "dice": list(ts.dice),
                "jaccard": list(ts.jaccard),
            }
        )
    return rows


def results_table(results: Iterable[RunResult], tasks: Mapping[str, TaskSpec]) -> Any:
    """A ``datasets.Dataset`` of every result, sorted by task, method, size, seed (stable across exports)."""
    import datasets

    ordered = sorted(
        results, key=lambda r: (r.spec.task, r.spec.method, r.spec.train_size, r.spec.seed, r.run_id)
    )
    rows = [row for r in ordered for row in result_rows(r, tasks.get(r.spec.task))]
    features = _features()
    columns = {name: [row[name] for row in rows] for name in features}
    return datasets.Dataset.from_dict(columns, features=features)


def to_parquet(table: Any, path: Path) -> None:
    """``Dataset.to_parquet`` without its progress bar (one small file; the CLI prints its own line)."""
    import datasets as hf_tqdm

    was_disabled = hf_tqdm.are_progress_bars_disabled()
    hf_tqdm.disable_progress_bars()
    try:
        table.to_parquet(str(path))
    finally:
        if not was_disabled:
            hf_tqdm.enable_progress_bars()


def results_from_rows(rows: Iterable[Mapping[str, Any]], where: str = "results table") -> list[RunResult]:
    """Rebuild the :class:`RunResult` records from table rows (the inverse of :func:`result_rows`).

    Rows of one run are grouped by ``run_id``; a row set that does not rebuild a
    valid result (a foreign or edited table) is an error naming ``where``.
    """
    by_run: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_run.setdefault(str(row["run_id"]), []).append(row)
    out = []
    for run_id, group in by_run.items():
        first = group[0]
        version = first.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ResultFileError(
                f"{where}: run {run_id} has schema version {version}, this genseg-bench reads "
                f"{SCHEMA_VERSION}. Re-export it with a matching genseg-bench."
            )
        try:
            spec = RunSpec(
                task=first["task"],
                method=first["method"],
                train_size=first["train_size"],
                seed=first["seed"],
                profile=first["profile"],
                task_hash=first["task_hash"],
                method_hash=first["method_hash"],
                profile_hash=first["profile_hash"],
                subset=first.get("subset") or "fixed",
                data_fingerprints=json.loads(first["data_fingerprints"]),
            )
            test_sets = {
                row["test_set"]: TestSetResult(
                    case_ids=list(row["case_ids"]),
                    dice=list(row["dice"]),
                    jaccard=list(row["jaccard"]),
                    mean_dice=row["mean_dice"],
                    mean_jaccard=row["mean_jaccard"],
                )
                for row in group
                if row["test_set"] is not None
            }
            result = RunResult(
                schema_version=version,
                run_id=run_id,
                spec=spec,
                status=first["status"],
                error=first["error"],
                metric=first["metric"],
                test_sets=test_sets,
                best_val_score=first["best_val_score"],
                best_iteration=first["best_iteration"],
                iterations=first["iterations"],
                train_cases=list(first["train_cases"]),
                val_cases=list(first["val_cases"]),
                wall_time_s=first["wall_time_s"],
                device=first["device"],
                versions=json.loads(first["versions"]),
                git_commit=first["git_commit"],
                method_config=json.loads(first["method_config"]),
                profile=json.loads(first["profile_config"]),
                extras=json.loads(first["extras"]),
                budget=json.loads(first.get("budget") or "{}"),
                trajectory=json.loads(first.get("trajectory") or "{}"),
                segmenter=json.loads(first.get("segmenter") or "{}"),
                artifacts=list(first["artifacts"]),
                created=first["created"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ResultFileError(
                f"{where}: the rows of run {run_id} are not a genseg-bench result ({type(exc).__name__}: "
                f"{exc}). Export it again with `genseg-bench results export`."
            ) from exc
        if result.run_id != spec.run_id:
            raise ResultFileError(f"{where}: run {run_id} does not match its spec (edited by hand?).")
        out.append(result)
    return out


def read_parquet_rows(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Rows of one or more parquet files (pyarrow directly: the leaderboard needs no ``datasets`` cache)."""
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str | None]] = set()
    for path in paths:
        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several types for a corrupt or foreign file
            raise ResultFileError(f"{path}: not a readable parquet file ({exc}).") from exc
        for row in table.to_pylist():
            key = (str(row.get("run_id")), row.get("test_set"))
            if key not in seen:  # a run published and also submitted counts once
                seen.add(key)
                rows.append(row)
    return rows


def tasks_json(tasks: Iterable[TaskSpec]) -> str:
    return json.dumps({t.id: t.model_dump(mode="json") for t in tasks}, indent=1, sort_keys=True)


def read_tasks_json(path: Path) -> dict[str, TaskSpec]:
    try:
        data = json.loads(Path(path).read_text())
        return {tid: TaskSpec.model_validate(spec) for tid, spec in data.items()}
    except (OSError, ValueError) as exc:
        raise ResultFileError(f"{path}: not a genseg-bench tasks file ({exc}).") from exc


DATASET_CARD = """---
pretty_name: genseg-bench results
license: mit
tags:
- medical-imaging
- image-segmentation
- benchmark
- leaderboard
configs:
- config_name: default
  data_files:
  - split: train
    path: data/results.parquet
---

# genseg-bench results

Results of genseg-bench runs: medical image segmentation with very
few labelled images, around GenSeg. One row per run (task x method x training size x seed
x profile) and test set. {n_rows} rows, {n_runs} runs, {n_tasks} task(s), {n_methods} method(s).

* `score` is the task's metric (`metric`: Dice, or Jaccard for skin lesions), the mean over
  the test cases; `dice` / `jaccard` hold the per-case scores in the order of `case_ids`.
  {policy}
* A failed run has one row with an empty `test_set` and its `error`.
* Provenance: `git_commit`, `genseg_bench_version`, `torch_version`, `device`, `created`,
  `data_fingerprints` (content hashes of the prepared data, JSON), `method_config` and
  `profile_config` (JSON), `task_hash` / `method_hash` / `profile_hash`; `run_id` hashes all of them.
* `tasks.json` holds the task specs (organ, modality, test sets, the paper's reference numbers).
* `submissions/<name>/` (when present) holds submitted methods: `results.parquet` with the same
  schema, `tasks.json` and `manifest.json`.

Rebuild the exact result records with `genseg_bench.export.results_from_rows`; aggregate with
`genseg_bench.report.aggregate` (mean and sample std over seeds).
"""


def dataset_card(results: list[RunResult]) -> str:
    from genseg_bench.metric_policy import EMPTY_POLICY

    n_rows = sum(max(1, len(r.test_sets)) for r in results)
    return DATASET_CARD.format(
        n_rows=n_rows,
        n_runs=len(results),
        n_tasks=len({r.spec.task for r in results}),
        n_methods=len({r.spec.method for r in results}),
        policy=EMPTY_POLICY,
    )


def write_export(results: list[RunResult], tasks: Mapping[str, TaskSpec], out: Path) -> list[Path]:
    """Write the export folder (parquet, tasks.json, card) atomically; returns the files, relative to ``out``.

    The files are written into a temporary sibling folder and renamed into place,
    so an error half-way leaves no partial export. ``out`` must not exist or be
    empty: an export never mixes with older files.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ResultFileError(f"{out} exists and is not empty; choose a new folder or remove it first.")
    used = {r.spec.task for r in results}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(out.parent, out.name)  # the user's umask, not mkdtemp's 0700
    try:
        (tmp / RESULTS_FILE).parent.mkdir(parents=True)
        to_parquet(results_table(results, tasks), tmp / RESULTS_FILE)
        (tmp / TASKS_FILE).write_text(tasks_json(tasks[t] for t in sorted(used) if t in tasks))
        (tmp / CARD_FILE).write_text(dataset_card(results))
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [Path(RESULTS_FILE), Path(TASKS_FILE), Path(CARD_FILE)]


def load_export(folder: Path) -> tuple[list[RunResult], dict[str, TaskSpec]]:
    """Results and task specs from an export folder (or a Hub snapshot of one), submissions included."""
    folder = Path(folder)
    files = sorted((folder / "data").glob("*.parquet")) + sorted(folder.glob("submissions/*/results.parquet"))
    if not files:
        raise ResultFileError(
            f"{folder}: no data/*.parquet or submissions/*/results.parquet; not a genseg-bench results export."
        )
    results = results_from_rows(read_parquet_rows(files), where=str(folder))
    tasks: dict[str, TaskSpec] = {}
    for tfile in [*sorted(folder.glob(f"submissions/*/{TASKS_FILE}")), folder / TASKS_FILE]:
        if tfile.is_file():
            tasks.update(read_tasks_json(tfile))  # the main file last: it wins over a submission's copy
    return results, tasks
