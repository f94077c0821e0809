"""Results export (a `datasets` table as parquet) and `leaderboard publish`: dry run, one commit, clear errors."""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from genseg_bench import report as rep
from genseg_bench.catalog import Catalog
from genseg_bench.cli import app
from genseg_bench.errors import HubError
from genseg_bench.export import load_export, results_from_rows, results_table, write_export
from genseg_bench.publish import publish
from genseg_bench.results import iter_results
from genseg_bench.specs import RunResult

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.output


def test_dry_run_files_load_back_with_datasets_to_the_report_numbers(
    lb_results: Path, tmp_path: Path
) -> None:
    import datasets

    out = tmp_path / "dry"
    code, text = invoke("leaderboard", "publish", "--repo", "org/results", "--results", str(lb_results),
                        "--dry-run", str(out))  # fmt: skip
    assert code == 0, text
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["README.md", "data/results.parquet", "tasks.json"]

    ds = datasets.load_dataset("parquet", data_files=str(out / "data" / "results.parquet"), split="train")
    catalog = Catalog.load()
    results = list(iter_results(lb_results))
    assert len({r for r in ds["run_id"]}) == len(results)
    by_cell: dict[tuple[str, str, int, str], list[float]] = {}
    for row in ds:
        if row["status"] == "ok":
            by_cell.setdefault((row["task"], row["method"], row["train_size"], row["test_set"]), []).append(
                row["score"]
            )
            assert len(row["dice"]) == row["n_cases"] == len(row["case_ids"])  # per-case scores kept
            assert json.loads(row["data_fingerprints"])  # provenance columns
            assert row["genseg_bench_version"] and row["device"] == "cpu"
    checked = 0
    for task_id in {r.spec.task for r in results}:
        task = catalog.task(task_id)
        for agg in rep.aggregate(task, [r for r in results if r.spec.task == task_id]):
            vals = by_cell[(task_id, agg.method, agg.train_size, agg.test_set)]
            assert statistics.fmean(vals) == pytest.approx(agg.mean, abs=1e-12)
            assert (statistics.stdev(vals) if len(vals) > 1 else 0.0) == pytest.approx(agg.std, abs=1e-12)
            checked += 1
    assert checked >= 10


def test_export_round_trips_exactly_including_failed_runs(
    make_result: Callable[..., RunResult], tmp_path: Path
) -> None:
    catalog = Catalog.load()
    results = [
        make_result("synthetic-ood", "unet", 16, 0, {"synthetic-a": [0.5, 1.0], "synthetic-b": [0.25]}),
        make_result("synthetic-ood", "unet", 16, 1, {}, status="failed"),
    ]
    table = results_table(results, catalog.tasks)
    assert table.num_rows == 3  # two test sets + one row for the failed run
    assert table[2]["test_set"] is None and "boom" in table[2]["error"]
    assert (
        table[0]["domain"] == "in" and table[1]["domain"] == "out" and table[0]["organ"] == "synthetic shapes"
    )
    assert results_from_rows(table.to_list()) == results
    old = os.umask(0o022)
    try:
        write_export(results, catalog.tasks, tmp_path / "exp")
    finally:
        os.umask(old)
    assert (tmp_path / "exp").stat().st_mode & 0o777 == 0o755  # the user's umask, not mkdtemp's 0700
    back, tasks = load_export(tmp_path / "exp")
    assert sorted(back, key=lambda r: r.run_id) == sorted(results, key=lambda r: r.run_id)
    assert tasks["synthetic-ood"] == catalog.task("synthetic-ood")


def test_results_export_command_and_non_empty_target(lb_results: Path, tmp_path: Path) -> None:
    code, text = invoke("results", "export", "--results", str(lb_results), "--out", str(tmp_path / "e"))
    assert code == 0 and (tmp_path / "e" / "data" / "results.parquet").is_file(), text
    code, text = invoke("results", "export", "--results", str(lb_results), "--out", str(tmp_path / "e"))
    assert code == 2 and "not empty" in text


def test_offline_publish_is_a_clear_error_and_writes_nothing(
    lb_results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    code, text = invoke("leaderboard", "publish", "--repo", "org/results", "--results", str(lb_results))
    assert code == 2 and "offline" in text and "Traceback" not in text
    assert not list(tmp_path.iterdir())


def test_publish_without_token_is_a_clear_error(
    make_result: Callable[..., RunResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    res = [make_result("synthetic", "unet", 16, 0, {"synthetic-a": [0.5]})]
    with pytest.raises(HubError, match="no Hugging Face token"):
        publish(res, Catalog.load().tasks, "org/results")


class FakeApi:
    """Records what publish asks of the Hub."""

    calls: list[tuple[str, dict[str, Any]]] = []

    def __init__(self, token: str | None = None) -> None:
        self.token = token

    def create_repo(self, repo_id: str, **kw: Any) -> None:
        FakeApi.calls.append(("create_repo", {"repo_id": repo_id, **kw}))

    def create_commit(self, repo_id: str, operations: list[Any], **kw: Any) -> Any:
        contents = {op.path_in_repo: Path(op.path_or_fileobj).read_bytes() for op in operations}
        FakeApi.calls.append(("create_commit", {"repo_id": repo_id, "files": contents, **kw}))

        class Info:
            commit_url = "https://hf.co/datasets/org/results/commit/1"
            pr_url = "https://hf.co/datasets/org/results/discussions/1" if kw.get("create_pr") else None

        return Info()


@pytest.mark.parametrize("create_pr", [False, True])
def test_publish_is_one_commit_of_exactly_the_dry_run_files(
    make_result: Callable[..., RunResult], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, create_pr: bool
) -> None:
    import huggingface_hub

    FakeApi.calls = []
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    res = [make_result("synthetic", "unet", 16, s, {"synthetic-a": [0.5 + s / 10]}) for s in range(3)]
    url, files = publish(res, Catalog.load().tasks, "org/results", create_pr=create_pr, token="hf_x")
    commits = [c for c in FakeApi.calls if c[0] == "create_commit"]
    assert len(commits) == 1
    assert commits[0][1]["create_pr"] is create_pr and commits[0][1]["repo_type"] == "dataset"
    assert ("create_repo" in [c[0] for c in FakeApi.calls]) is (not create_pr)  # never create someone's repo
    assert url.endswith("discussions/1" if create_pr else "commit/1")
    publish(res, Catalog.load().tasks, "org/results", dry_run=tmp_path / "dry")
    dry = {str(p.relative_to(tmp_path / "dry")) for p in (tmp_path / "dry").rglob("*") if p.is_file()}
    assert set(commits[0][1]["files"]) == dry == set(files)
