"""Result folders: nothing unreadable is overwritten, temporary files are skipped, every bad file is listed.

Results are built by hand (no training) except in the one CLI test of a rerun.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genseg_bench.catalog import Catalog
from genseg_bench.cli import app
from genseg_bench.data.store import Store
from genseg_bench.errors import ResultFileError
from genseg_bench.results import iter_results, load_results, read_result, result_path, write_result
from genseg_bench.specs import SCHEMA_VERSION, RunResult, RunSpec, TestSetResult

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, " ".join(res.output.split())


def result(method: str = "unet", seed: int = 0, score: float = 0.5, task: str = "synthetic") -> RunResult:
    spec = RunSpec(
        task=task,
        method=method,
        train_size=8,
        seed=seed,
        profile="smoke",
        task_hash="t",
        method_hash=method,
        profile_hash="p",
        data_fingerprints={"synthetic-a": "f"},
    )
    ts = TestSetResult(case_ids=["a"], dice=[score], jaccard=[score], mean_dice=score, mean_jaccard=score)
    sets = {t.name: ts for t in Catalog.load().task(task).test_sets}
    return RunResult(run_id=spec.run_id, spec=spec, status="ok", metric="dice", test_sets=sets)


def test_writing_over_an_unreadable_file_moves_it_aside(tmp_path: Path) -> None:
    r = result()
    path = result_path(tmp_path, r.spec)
    path.parent.mkdir(parents=True)
    newer = json.dumps({"schema_version": SCHEMA_VERSION + 1, "run_id": r.run_id, "new_field": 1})
    path.write_text(newer)
    write_result(tmp_path, r)
    assert read_result(path) == r
    (aside,) = path.parent.glob(f"{path.name}.unreadable-*")
    assert aside.read_text() == newer  # kept byte for byte, for a newer genseg-bench to read
    assert [x.run_id for x in iter_results(tmp_path, "synthetic")] == [r.run_id]  # readers skip it


def test_a_readable_file_is_replaced_in_place(tmp_path: Path) -> None:
    write_result(tmp_path, result(score=0.1))
    path = write_result(tmp_path, result(score=0.1))
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_readers_skip_the_writers_temporary_files(tmp_path: Path) -> None:
    path = write_result(tmp_path, result())
    (path.parent / ".tmp-1234.json").write_text('{"schema_version": 2, "run_id"')  # an older writer's name
    (path.parent / f".{path.name}.99-abcd.tmp").write_text("{")  # this writer's, half-written
    loaded = load_results(tmp_path)
    assert [r.run_id for r in loaded.results] == [path.stem] and loaded.problems == []


def test_every_bad_file_is_listed_and_the_good_ones_still_read(tmp_path: Path) -> None:
    good = write_result(tmp_path, result())
    (good.parent / "notes.json").write_text('{"hello": "world"}')
    (good.parent / "broken.json").write_text('{"schema_version": 2, "run_id": "x')
    loaded = load_results(tmp_path, "synthetic")
    assert [r.run_id for r in loaded.results] == [good.stem]
    assert len(loaded.problems) == 2
    with pytest.raises(ResultFileError) as info:
        list(iter_results(tmp_path, "synthetic"))
    msg = str(info.value)
    assert "2 file(s)" in msg and "notes.json" in msg and "broken.json" in msg
    assert "not a genseg-bench result" in msg and "not valid JSON" in msg


def test_result_files_get_the_users_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = write_result(tmp_path, result())
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644  # mkstemp would have made it 0600


def test_report_lists_unreadable_files_and_reports_the_rest(tmp_path: Path) -> None:
    for seed in (0, 1):
        good = write_result(tmp_path, result(seed=seed))
    (good.parent / "notes.json").write_text("[]")
    code, out = invoke("report", "--task", "synthetic", "--results", str(tmp_path), "--format", "json")
    assert code == 0, out
    assert "1 file(s) under" in out and "leaves them out" in out
    assert "notes.json" in out.replace(" ", "")  # a long path is wrapped by rich
    assert '"n_seeds": 2' in out


def test_report_compare_with_a_method_without_results_says_so(tmp_path: Path) -> None:
    write_result(tmp_path, result("unet"))
    code, out = invoke(
        "report", "--task", "synthetic", "--results", str(tmp_path), "--compare", "genseg-unet,unet"
    )
    assert code == 2
    assert "method 'genseg-unet' has no results for task synthetic" in out
    assert "methods with results: unet" in out


def test_tasks_shows_a_set_prepared_at_another_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from genseg_bench import cli
    from genseg_bench.cli_run import data_status

    (tmp_path / "kvasir" / "128").mkdir(parents=True)
    (tmp_path / "kvasir" / "128" / "meta.json").write_text("{}")  # what Store.is_prepared looks for
    task = Catalog.load().task("kvasir-to-cvc")  # 256 px; trains on kvasir, tests on cvc-clinicdb too
    assert data_status(task, Store(tmp_path)) == "[yellow]missing cvc-clinicdb[/]; (kvasir at 128 px)"
    (tmp_path / "cvc-clinicdb" / "256").mkdir(parents=True)
    (tmp_path / "cvc-clinicdb" / "256" / "meta.json").write_text("{}")
    assert data_status(task, Store(tmp_path)) == "[green]ready[/] (kvasir at 128 px)"
    monkeypatch.setattr(cli.console, "width", 400)
    code, out = invoke("tasks", "--store", str(tmp_path), "--family", "open-data")
    assert code == 0 and "ready (kvasir at 128 px)" in out


def test_rerun_moves_a_newer_file_aside_and_ignores_a_foreign_one(tmp_path: Path, store: Store) -> None:
    results = tmp_path / "results"
    grid = ["run", "--task", "synthetic", "--methods", "unet", "--sizes", "8", "--seeds", "0",
            "--profile", "smoke", "--iterations", "2", "--device", "cpu",
            "--results", str(results), "--store", str(store.root)]  # fmt: skip
    code, out = invoke(*grid, "--no-report")
    assert code == 0, out
    (path,) = (results / "synthetic").glob("*.json")
    data = json.loads(path.read_text())
    data["schema_version"] = SCHEMA_VERSION + 1
    path.write_text(json.dumps(data))
    (results / "synthetic" / "summary.json").write_text('{"foreign": true}')
    code, out = invoke(*grid)  # with the report: the foreign file must not fail the grid
    assert code == 0, out
    assert f"moved{path}" in out.replace(" ", "") and "its run is done again" in out
    assert "1 run(s) done" in out
    assert "summary.json" in out.replace(" ", "") and "leaves them out" in out
    assert read_result(path).schema_version == SCHEMA_VERSION
    (aside,) = (results / "synthetic").glob(f"{path.name}.unreadable-*")
    assert json.loads(aside.read_text())["schema_version"] == SCHEMA_VERSION + 1
