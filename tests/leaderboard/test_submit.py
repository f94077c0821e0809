"""Submitting a method from an outside package: entry point / module:Class, run, submit, and what submit rejects."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from genseg_bench.catalog import Catalog
from genseg_bench.cli import app
from genseg_bench.data.store import Store
from genseg_bench.errors import UnknownNameError
from genseg_bench.export import load_export
from genseg_bench.methods.registry import available_kinds
from genseg_bench.publish import push_submission
from genseg_bench.results import read_result, write_result
from genseg_bench.specs import RunResult
from genseg_bench.submit import SubmissionError, collect_submission

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.output


def test_entry_point_method_is_found_with_its_own_spec(toy_installed: str) -> None:
    assert toy_installed in available_kinds()
    spec = Catalog.load().method(toy_installed)
    assert (spec.kind, spec.backbone, spec.config) == (toy_installed, "threshold", {"candidates": 16})
    with pytest.raises(UnknownNameError):
        Catalog.load().method("toy-treshold")


def test_module_class_method_runs_end_to_end(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch, outside_pkg: Path, single_thread: None
) -> None:
    monkeypatch.syspath_prepend(str(outside_pkg))
    name = "genseg_toy_method:ThresholdMethod"
    code, out = invoke("run", "--task", "synthetic", "--methods", name, "--sizes", "8", "--seeds", "0",
                       "--profile", "smoke", "--device", "cpu", "--results", str(tmp_path),
                       "--store", str(store.root))  # fmt: skip
    assert code == 0, out
    (path,) = (tmp_path / "synthetic").glob("*.json")
    result = read_result(path)
    assert result.status == "ok" and result.spec.method == name
    assert result.method_config["backbone"] == "threshold" and result.score("synthetic-a") > 0.5
    code, out = invoke("run", "--task", "synthetic", "--methods", "genseg_toy_method:Nope",
                       "--results", str(tmp_path / "x"))  # fmt: skip
    assert code == 2 and "cannot import method class" in " ".join(out.split())


def test_outside_method_run_then_submit(lb_results: Path, tmp_path: Path) -> None:
    """`run --suite synthetic --methods toy-threshold` (the lb_results fixture), then `submit`."""
    out = tmp_path / "submission"
    code, text = invoke("submit", "--method", "toy-threshold", "--suite", "synthetic", "--profile", "smoke",
                        "--results", str(lb_results), "--out", str(out), "--allow-dirty")  # fmt: skip
    assert code == 0, text
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "results.parquet", "tasks.json"]
    manifest = json.loads((out / "manifest.json").read_text())
    catalog = Catalog.load()
    assert manifest["method"] == "toy-threshold" and manifest["suite"] == "synthetic"
    # every (task, size, seed) cell of the suite: its tasks follow the task files (synthetic = true)
    assert manifest["n_runs"] == len(_suite_cells(catalog)) and manifest["profile"] == "smoke"
    assert manifest["data_fingerprints"] == catalog.suite("synthetic").fingerprints
    assert manifest["method_config"]["backbone"] == "threshold"
    assert (
        manifest["files"]["results.parquet"]
        == hashlib.sha256((out / "results.parquet").read_bytes()).hexdigest()
    )
    # the leaderboard reads a merged submission from the results repo's submissions/ folder
    repo = tmp_path / "repo"
    (repo / "submissions").mkdir(parents=True)
    out.rename(repo / "submissions" / "toy-threshold__synthetic")
    results, tasks = load_export(repo)
    assert len(results) == len(_suite_cells(catalog)) and {r.spec.method for r in results} == {
        "toy-threshold"
    }
    assert set(tasks) == {t.id for t in catalog.suite_tasks("synthetic")}


def _suite_cells(catalog: Catalog) -> list[tuple[str, int, int]]:
    suite = catalog.suite("synthetic")
    return [
        (t.id, n, s)
        for t in catalog.suite_tasks("synthetic")
        for n in suite.task_sizes(t)
        for s in suite.seeds
    ]


def test_submit_lists_every_problem_at_once(make_result: Callable[..., RunResult], tmp_path: Path) -> None:
    catalog = Catalog.load()
    cells = _suite_cells(catalog)
    fps = dict(catalog.suite("synthetic").fingerprints)
    for i, (task, n, s) in enumerate(cells):
        kw: dict[str, Any] = {"fingerprints": fps}
        if i == 0:
            continue  # missing
        if i == 1:
            kw["status"] = "failed"
        if i == 2:
            kw["fingerprints"] = {**fps, "synthetic-a": "deadbeefdeadbeef"}
        if i == 3:
            kw["git_commit"] = "0123abc+dirty"
        if i == 4:
            kw["method_hash"] = "m1"
        write_result(tmp_path, make_result(task, "m", n, s, {"synthetic-a": [0.5]}, **kw))
    with pytest.raises(SubmissionError) as err:
        collect_submission(catalog, "synthetic", "m", tmp_path)
    msg = str(err.value)
    t0, n0, s0 = cells[0]
    assert f"{t0}: size {n0}, seed {s0}: no result" in msg
    assert "failed (RuntimeError: boom)" in msg
    assert "deadbeefdeadbeef" in msg and "the suite pins 31f96f75f6850777" in msg
    assert "uncommitted changes" in msg and "--allow-dirty" in msg
    assert "mix 2 method configurations" in msg
    assert "genseg-bench run --suite synthetic --methods m" in msg


def test_clean_complete_results_pass_and_other_profiles_do_not_count(
    make_result: Callable[..., RunResult], tmp_path: Path
) -> None:
    catalog = Catalog.load()
    fps = dict(catalog.suite("synthetic").fingerprints)
    for task, n, s in _suite_cells(catalog):
        write_result(tmp_path, make_result(task, "m", n, s, {"synthetic-a": [0.5]}, fingerprints=fps))
    chosen, manifest = collect_submission(catalog, "synthetic", "m", tmp_path)
    cells = len(_suite_cells(catalog))
    assert cells >= 36  # 3 seeds x the sweep sizes of every synthetic task (36 before synthetic-semi)
    assert len(chosen) == cells and manifest["dirty"] is False and manifest["git_commits"] == ["0123abc"]
    with pytest.raises(SubmissionError, match=f"{cells} problem"):
        collect_submission(catalog, "synthetic", "m", tmp_path, profile="paper")


def test_push_offline_fails_before_writing(
    lb_results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "sub"
    code, text = invoke("submit", "--method", "toy-threshold", "--suite", "synthetic", "--profile", "smoke",
                        "--results", str(lb_results), "--out", str(out), "--push", "--repo", "org/results")  # fmt: skip
    assert code == 2 and "offline" in text and not out.exists()
    code, text = invoke("submit", "--method", "toy-threshold", "--suite", "synthetic", "--push")
    assert code == 2 and "--repo" in text


def test_push_opens_one_pull_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    seen: list[dict[str, Any]] = []

    class Api:
        def __init__(self, token: str | None = None) -> None: ...

        def create_repo(self, *a: Any, **kw: Any) -> None:
            raise AssertionError("a submission never creates the repo")

        def create_commit(self, repo_id: str, operations: list[Any], **kw: Any) -> Any:
            seen.append({"repo": repo_id, "paths": sorted(op.path_in_repo for op in operations), **kw})
            return type("Info", (), {"pr_url": "https://hf.co/datasets/org/r/discussions/7"})()

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "HfApi", Api)
    folder = tmp_path / "s"
    folder.mkdir()
    for name in ("results.parquet", "tasks.json", "manifest.json"):
        (folder / name).write_text("x")
    url = push_submission(folder, "org/r", "toy__synthetic", token="hf_x")
    assert url.endswith("/7") and len(seen) == 1 and seen[0]["create_pr"] is True
    assert seen[0]["paths"] == [
        f"submissions/toy__synthetic/{n}" for n in ("manifest.json", "results.parquet", "tasks.json")
    ]


def test_docs_worked_example_is_a_working_method(tmp_path: Path) -> None:
    """The code block of docs/submitting.md defines a Method that trains and predicts."""
    import re
    import types

    import torch

    from genseg_bench.methods.base import FitContext, Method, SegData
    from genseg_bench.profiles import get_profile
    from genseg_bench.specs import MethodSpec

    doc = (Path(__file__).resolve().parents[2] / "docs" / "submitting.md").read_text()
    code = next(b for b in re.findall(r"```python\n(.*?)```", doc, re.S) if "class ThresholdMethod" in b)
    module = types.ModuleType("docs_example")
    exec(compile(code, "docs/submitting.md", "exec"), module.__dict__)
    cls = module.ThresholdMethod
    assert issubclass(cls, Method)
    images = torch.rand(6, 3, 16, 16) * 0.4
    masks = torch.zeros(6, 1, 16, 16)
    masks[:, :, 4:12, 4:12] = 1
    images = images + 0.5 * masks  # bright squares
    data = SegData(images, masks, [f"c{i}" for i in range(6)])
    spec = MethodSpec(name="toy", kind="toy", **cls.spec_defaults)
    ctx = FitContext(device=torch.device("cpu"), seed=0, profile=get_profile("smoke"), out_dir=tmp_path)
    fit = cls(spec).fit(data, data, ctx)
    assert fit.best_val_score > 0.9 and fit.predictor.predict(images).shape == masks.shape
