"""Submitting a method: check that its results cover a suite, cleanly, then pack them.

A submission is only comparable with the leaderboard if it ran the same grid on
the same data with traceable code. :func:`collect_submission` therefore checks,
for one method, one suite and one profile:

* completeness: an ``ok`` result for every task, training size and seed of the suite;
* one configuration: a single method hash and a single profile hash throughout
  (a stale result of an older config is reported, never silently mixed in);
* the data: every source has one fingerprint across the submission, equal to
  the suite's pinned fingerprint where the suite pins one;
* provenance: a genseg-bench version or a git commit recorded, and no
  uncommitted changes (``+dirty``) unless explicitly allowed (then the manifest
  says so).

Every problem is listed at once, so one rerun fixes them all. The submission
folder holds ``results.parquet`` (the :mod:`~genseg_bench.export` schema),
``tasks.json`` and ``manifest.json`` (what was checked, with the parquet's SHA-256).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from genseg_bench.atomic import make_temp_dir
from genseg_bench.catalog import Catalog
from genseg_bench.errors import GensegBenchError
from genseg_bench.export import results_table, tasks_json, to_parquet
from genseg_bench.results import iter_results
from genseg_bench.specs import RunResult

MAX_LISTED = 25


class SubmissionError(GensegBenchError):
    """The results do not make a valid submission (incomplete, mixed configs, foreign data, unclean)."""


def _problems_message(method: str, suite: str, problems: list[str]) -> str:
    shown = problems[:MAX_LISTED]
    more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    return (
        f"{method!r} is not ready to submit on suite {suite!r} ({len(problems)} problem(s)):\n  "
        + "\n  ".join(shown)
        + more
        + f"\nRun the missing cells with `genseg-bench run --suite {suite} --methods {method}` (finished runs are "
        "skipped) and remove stale result files of other configurations."
    )


def collect_submission(
    catalog: Catalog,
    suite_id: str,
    method: str,
    results_dir: Path,
    profile: str | None = None,
    allow_dirty: bool = False,
) -> tuple[list[RunResult], dict[str, Any]]:
    """The method's results for every cell of the suite, and the manifest; raises listing every problem."""
    suite = catalog.suite(suite_id)
    tasks = catalog.suite_tasks(suite_id)
    prof = profile or suite.profile
    problems: list[str] = []
    chosen: list[RunResult] = []
    coverage: dict[str, dict[str, Any]] = {}
    for task in tasks:
        mine = [
            r
            for r in iter_results(results_dir, task.id)
            if r.spec.method == method and r.spec.profile == prof
        ]
        cells: dict[tuple[int, int], list[RunResult]] = defaultdict(list)
        for r in mine:
            cells[(r.spec.train_size, r.spec.seed)].append(r)
        sizes = suite.task_sizes(task)
        for n in sizes:
            for s in suite.seeds:
                found = cells.get((n, s), [])
                ok = [r for r in found if r.status == "ok"]
                if not found:
                    problems.append(f"{task.id}: size {n}, seed {s}: no result")
                elif not ok:
                    err = (found[0].error or "").strip().splitlines()
                    problems.append(
                        f"{task.id}: size {n}, seed {s}: failed ({err[0] if err else 'no error recorded'}); "
                        "rerun with --retry-failed"
                    )
                elif len(ok) > 1:
                    ids = ", ".join(r.run_id for r in ok)
                    problems.append(
                        f"{task.id}: size {n}, seed {s}: {len(ok)} results of different configs ({ids})"
                    )
                else:
                    chosen.append(ok[0])
        coverage[task.id] = {"sizes": sizes, "seeds": list(suite.seeds)}

    for field, label in (("method_hash", "method configurations"), ("profile_hash", "profile settings")):
        values = defaultdict(list)
        for r in chosen:
            values[getattr(r.spec, field)].append(r.run_id)
        if len(values) > 1:
            parts = "; ".join(f"{h}: {len(ids)} runs (e.g. {ids[0]})" for h, ids in values.items())
            problems.append(f"results mix {len(values)} {label} ({parts}); rerun them with one")

    seen_fp: dict[str, dict[str, str]] = defaultdict(dict)
    for r in chosen:
        for src, fp in r.spec.data_fingerprints.items():
            seen_fp[src].setdefault(fp, r.run_id)
    fingerprints: dict[str, str] = {}
    for src, fps in sorted(seen_fp.items()):
        pinned = suite.fingerprints.get(src)
        if len(fps) > 1:
            problems.append(
                f"data source {src} has {len(fps)} fingerprints across the runs ({', '.join(fps)})"
            )
        for fp, run_id in fps.items():
            if pinned is not None and fp != pinned:
                problems.append(
                    f"data source {src}: run {run_id} used data with fingerprint {fp}, the suite pins {pinned} "
                    "(different data or image size; prepare the data as the suite expects)"
                )
        fingerprints[src] = next(iter(fps))

    dirty = sorted({r.git_commit for r in chosen if r.git_commit.endswith("+dirty")})
    for r in chosen:
        version = r.versions.get("genseg-bench", "")
        if not r.git_commit and (not version or version == "not installed"):
            problems.append(f"{r.run_id}: no genseg-bench version and no git commit recorded")
    if dirty and not allow_dirty:
        problems.append(
            f"results were computed from a checkout with uncommitted changes ({', '.join(dirty)}); commit and "
            "rerun, or pass --allow-dirty (the manifest then records it)"
        )
    if problems:
        raise SubmissionError(_problems_message(method, suite_id, problems))

    first = chosen[0]
    manifest: dict[str, Any] = {
        "format": "genseg-bench-submission/1",
        "method": method,
        "suite": suite_id,
        "suite_description": suite.description,
        "profile": prof,
        "profile_hash": first.spec.profile_hash,
        "method_hash": first.spec.method_hash,
        "method_config": first.method_config,
        "tasks": coverage,
        "n_runs": len(chosen),
        "data_fingerprints": fingerprints,
        "pinned_fingerprints": dict(suite.fingerprints),
        "genseg_bench_versions": sorted({r.versions.get("genseg-bench", "") for r in chosen}),
        "git_commits": sorted({r.git_commit for r in chosen}),
        "dirty": bool(dirty),
        "devices": sorted({r.device for r in chosen}),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return chosen, manifest


def write_submission(
    catalog: Catalog,
    results: list[RunResult],
    manifest: dict[str, Any],
    out: Path,
    publish: Callable[[Path], object] | None = None,
) -> list[Path]:
    """Write ``results.parquet``, ``tasks.json`` and ``manifest.json`` into ``out`` (atomically, must be new).

    ``publish`` (``submit --push``) gets the complete folder before it is renamed
    to ``out``: when the push fails, no folder is left behind, so the same command
    can simply be run again. The folder gets the user's umask, not ``mkdtemp``'s 0700.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SubmissionError(f"{out} exists and is not empty; choose a new folder or remove it first.")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(out.parent, out.name)
    try:
        parquet = tmp / "results.parquet"
        to_parquet(results_table(results, catalog.tasks), parquet)
        (tmp / "tasks.json").write_text(tasks_json(catalog.tasks[t] for t in sorted(manifest["tasks"])))
        full = {**manifest, "files": {"results.parquet": hashlib.sha256(parquet.read_bytes()).hexdigest()}}
        (tmp / "manifest.json").write_text(json.dumps(full, indent=1, sort_keys=True))
        if publish is not None:
            publish(tmp)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [out / "results.parquet", out / "tasks.json", out / "manifest.json"]
