"""benchmarks/calibrate.py: the suite's UNet against the independent loop, on identical cases.

The verdict and the table are checked with made-up numbers (a flipped gap sign fails here);
the whole path (suite CLI in a subprocess, the loop on the run's cases, the JSON lines, the
markdown table, resuming) runs end to end on the synthetic task at the smoke budget.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "calibrate.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("calibrate_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


cal = _script()
loop_mod = importlib.import_module("independent_loop")  # calibrate.py put benchmarks/ on sys.path
pytestmark = pytest.mark.usefixtures("one_thread")

TASK = SimpleNamespace(
    id="made-up",
    metric="dice",
    test_sets=[SimpleNamespace(name="a", domain="in"), SimpleNamespace(name="b", domain="out")],
)


def _record(method: str, seed: int, suite: float, loop: float, suite_last: bool = False) -> dict[str, object]:
    return {
        "method": method,
        "seed": seed,
        "suite_run": f"made-up__{method}__n40__s{seed}__cpu__0000",
        "suite": {
            "test": {"a": suite, "b": suite - 0.1},
            "best_at_last": suite_last,
            "best_iteration": 5,
            "last_validation": 10,
        },
        "loop": {
            "test": {"a": {"dice": loop}, "b": {"dice": loop - 0.1}},
            "best_at_last": False,
            "best_iteration": 5,
            "last_validation": 10,
        },
        "recipe": {},
        "budget": {},
    }


def test_verdict_gap_is_suite_minus_loop_and_flags_below_bar() -> None:
    below = cal.verdict([0.50, 0.52, 0.48], [0.55, 0.57, 0.53], [False, False, False])
    assert below.gap == pytest.approx(-0.05)
    assert not below.passed and "gap" in below.reasons[0]
    above = cal.verdict([0.55, 0.57, 0.53], [0.50, 0.52, 0.48], [False, False, False])
    assert above.gap == pytest.approx(0.05) and above.passed
    assert cal.verdict([0.50] * 3, [0.52] * 3, [False] * 3).passed  # within 0.03
    assert not cal.verdict([0.50] * 3, [0.531] * 3, [False] * 3).passed


def test_verdict_counts_seeds_best_at_the_last_validation() -> None:
    assert cal.verdict([0.6] * 3, [0.5] * 3, [True, False, False]).passed
    two = cal.verdict([0.6] * 3, [0.5] * 3, [True, True, False])
    assert not two.passed and "best at the last validation" in two.reasons[0]


def test_table_row_fails_when_the_suite_is_below_the_loop() -> None:
    records = [_record("unet", s, 0.50, 0.60) for s in range(3)]
    records += [_record("unet-combine", s, 0.60, 0.50) for s in range(3)]
    lines, rows = cal.table(TASK, records, ["unet", "unet-combine"])
    by = {r["method"]: r for r in rows}
    assert by["unet"]["gap"] == pytest.approx(-0.10) and not by["unet"]["passed"]
    assert by["unet-combine"]["gap"] == pytest.approx(0.10) and by["unet-combine"]["passed"]
    row = next(line for line in lines if "| unet |" in line)
    assert "-0.100" in row and "FAIL" in row and "0.400 / 0.500 (-0.100)" in row


@pytest.mark.slow
def test_calibrate_end_to_end_on_synthetic(tmp_path: Path) -> None:
    store, results = tmp_path / "store", tmp_path / "results"
    argv = [
        "--task",
        "synthetic-ood",
        "--profile",
        "smoke",
        "--iterations",
        "4",
        "--seeds",
        "0",
        "--store",
        str(store),
        "--results-dir",
        str(results),
        "--threads",
        "1",
    ]
    cal.main(argv)
    md = (results / "calibration" / "synthetic-ood.md").read_text()
    for method in ("unet", "unet-combine"):
        assert f"| synthetic-ood | {method} | 0 |" in md
    records = cal.read_records(results / "calibration" / "synthetic-ood.jsonl")
    assert sorted(r["method"] for r in records) == ["unet", "unet-combine"]
    for rec in records:
        res = json.loads((results / "synthetic-ood" / f"{rec['suite_run']}.json").read_text())
        assert rec["cases"]["train"] == res["train_cases"]
        assert rec["cases"]["val"] == res["val_cases"]
        assert set(rec["cases"]["test"]) == set(res["test_sets"])
        for name, ts in res["test_sets"].items():
            assert rec["cases"]["test"][name] == ts["case_ids"]
            assert rec["suite"]["test"][name] == pytest.approx(ts["mean_dice"])
        assert rec["budget"] == {"size": 32, "batch": 4, "iterations": 4, "eval_every": 3}
        assert rec["loop"]["trajectory"]["iteration"] == [3, 4]
        assert rec["recipe"]["augment"] == cal.AUGMENT[rec["method"]]
    # the arrays the loop read are the suite's own, bit for bit
    import torch

    from genseg_bench.data.store import Store, to_tensors

    res = json.loads((results / "synthetic-ood" / f"{records[0]['suite_run']}.json").read_text())
    prepared = Store(store).load("synthetic-a", 64)
    x, y = to_tensors(prepared, prepared.index(res["train_cases"]), 32, 3, torch.device("cpu"))
    loop = loop_mod.load_prepared_cases(prepared.path, res["train_cases"], 32, 3)
    assert torch.equal(x, loop.x) and torch.equal(y, loop.y)
    # resumable: nothing is trained again
    cal.main([*argv, "--skip-suite"])
    assert len(cal.read_records(results / "calibration" / "synthetic-ood.jsonl")) == 2


def test_combine_moves_image_and_mask_together() -> None:
    import torch

    gen = torch.Generator().manual_seed(0)
    mask = torch.zeros(8, 1, 32, 32)
    mask[:, :, 4:14, 6:20] = 1
    img, out = loop_mod.augment_combine(mask.repeat(1, 3, 1, 1), mask, gen)
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(out, mask)  # something moved
    agree = ((img[:, :1] >= 0.5) == (out >= 0.5)).float().mean()
    assert agree > 0.98
    vol = torch.zeros(2, 1, 8, 16, 16)
    vol[:, :, 2:6, 3:9, 4:12] = 1
    _, vout = loop_mod.augment_combine(vol, vol, gen)
    assert vout.shape == vol.shape and loop_mod.PlainUNet3D(1)(vol).shape == vol.shape
