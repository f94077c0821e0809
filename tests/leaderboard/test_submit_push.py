"""`submit --push`: a failed push leaves no folder behind (so the same command can be run again)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from genseg_bench.catalog import Catalog
from genseg_bench.cli import app
from genseg_bench.results import write_result
from genseg_bench.specs import RunResult


@pytest.fixture
def complete(make_result: Callable[..., RunResult], tmp_path: Path) -> Path:
    """Hand-made ok results for every cell of the synthetic suite, on its pinned data."""
    catalog = Catalog.load()
    suite = catalog.suite("synthetic")
    results = tmp_path / "results"
    for t in catalog.suite_tasks("synthetic"):
        for n in suite.task_sizes(t):
            for s in suite.seeds:
                r = make_result(
                    t.id, "m", n, s, {"synthetic-a": [0.5]}, fingerprints=dict(suite.fingerprints)
                )
                write_result(results, r)
    return results


def fake_hub(monkeypatch: pytest.MonkeyPatch, fail: bool) -> list[list[str]]:
    import huggingface_hub

    pushed: list[list[str]] = []

    class Api:
        def __init__(self, token: str | None = None) -> None: ...

        def create_commit(self, repo_id: str, operations: list[Any], **kw: Any) -> Any:
            if fail:
                raise ConnectionError("the network went away")
            pushed.append(sorted(op.path_in_repo for op in operations))
            return type("Info", (), {"pr_url": "https://hf.co/datasets/org/r/discussions/1"})()

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "HfApi", Api)
    return pushed


def submit(results: Path, out: Path) -> tuple[int, str]:
    args = ["submit", "--method", "m", "--suite", "synthetic", "--profile", "quick", "--results", str(results),
            "--out", str(out), "--push", "--repo", "org/r", "--token", "hf_x"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    return res.exit_code, " ".join(res.output.split())


def test_failed_push_leaves_no_folder_and_the_rerun_pushes(
    complete: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "subs" / "m__synthetic"
    fake_hub(monkeypatch, fail=True)
    code, text = submit(complete, out)
    assert code == 2 and "the network went away" in text
    assert not out.exists() and list(out.parent.iterdir()) == []  # no temporary folder either
    pushed = fake_hub(monkeypatch, fail=False)
    old = os.umask(0o022)
    try:
        code, text = submit(complete, out)
    finally:
        os.umask(old)
    assert code == 0, text
    assert "pull request opened" in text and len(pushed) == 1
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "results.parquet", "tasks.json"]
    assert out.stat().st_mode & 0o777 == 0o755  # the user's umask, not mkdtemp's 0700
