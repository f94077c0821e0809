"""benchmarks/gain_vs_budget.py: gains per budget from result files, Holm over the figure, a trend line."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

from genseg_bench.catalog import Catalog
from genseg_bench.profiles import PROFILES
from genseg_bench.results import write_result
from genseg_bench.specs import RunResult, RunSpec, TestSetResult

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "gain_vs_budget.py"


def _load():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gain_vs_budget_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _run(method: str, seed: int, iterations: int, score: float) -> RunResult:
    task = Catalog.load().task("synthetic")
    profile = {**PROFILES["cpu"].model_dump(), "iterations": iterations}
    spec = RunSpec(
        task=task.id,
        method=method,
        train_size=40,
        seed=seed,
        profile="cpu",
        task_hash="t",
        method_hash=method,
        profile_hash=str(iterations),
        data_fingerprints={"x": "f"},
    )
    ts = TestSetResult(case_ids=["a"], dice=[score], jaccard=[score], mean_dice=score, mean_jaccard=score)
    return RunResult(
        run_id=spec.run_id,
        spec=spec,
        status="ok",
        metric="dice",
        test_sets={"synthetic-a": ts},
        iterations=iterations,
        profile=profile,
    )


def test_gain_per_budget_and_the_trend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mod = _load()
    a, b = tmp_path / "a", tmp_path / "b"
    # the gain grows by 0.05 per doubling: 0.00 at 100, 0.05 at 200, 0.15 at 800
    for seed, noise in enumerate([-0.01, 0.0, 0.012]):
        for folder, it, gain in [(b, 100, 0.0), (b, 200, 0.05), (a, 800, 0.15)]:
            write_result(folder, _run("unet", seed, it, 0.5))
            write_result(folder, _run("genseg-unet", seed, it, 0.5 + gain + noise * (1 + it / 800)))
    # a run of an older recipe at one of the budgets must count nowhere (neither the table nor the trend)
    old = _run("unet", 0, 800, 0.0)
    old = old.model_copy(
        update={
            "profile": {**old.profile, "seg_optimizer": "rmsprop"},
            "spec": old.spec.model_copy(update={"profile_hash": "old"}),
        }
    )
    write_result(a, old.model_copy(update={"run_id": old.spec.run_id}))
    runs = mod.load([a, b], "synthetic")
    table = mod.gains(runs, "synthetic", "genseg-unet", ["unet"], "synthetic-a", 40, "cpu")
    assert sorted(table["unet"]) == [100, 200, 800]
    assert table["unet"][800].mean_diff == pytest.approx(0.15 + 2 * 0.002 / 3, abs=1e-9)
    assert all(t.family_size == 3 for t in table["unet"].values())
    slope, _, at, half = mod.trend(
        mod.seed_diffs(mod.current(runs, "cpu"), "genseg-unet", "unet", "synthetic-a", 40, "dice"), 5000
    )
    assert slope == pytest.approx(0.05, abs=0.005)
    assert at == pytest.approx(0.05 * math.log2(5000 / 100), abs=0.03) and half > 0
    png, md = tmp_path / "g.png", tmp_path / "g.md"
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "x",
            "--results",
            str(a),
            "--results",
            str(b),
            "--task",
            "synthetic",
            "--baselines",
            "unet",
            "--png",
            str(png),
            "--md",
            str(md),
            "--paper-gain",
            "0.11",
        ],
    )
    mod.main()
    assert png.stat().st_size > 1000
    text = md.read_text()
    assert "| unet | 800 | 3 | +0.151 |" in text and "per doubling" in text and "+0.110" in text
