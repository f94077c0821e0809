"""The nnU-Net adapter: the suite's cases and split in nnU-Net's layout, the real package's round trip.

The layout, split, budget and error tests need no nnU-Net. The round trip trains the
real nnunetv2 package on 8 synthetic 32x32 cases at a budget of 2 epochs x 3
iterations on the CPU (marked ``slow``; skipped, with the install command, where
nnunetv2 is absent) and checks what nnU-Net saw and what comes back:

- ``dataset.json`` and ``splits_final.json`` are the suite's cases and split, and the
  trainer loaded exactly those case lists;
- the raw files, read back by nnU-Net's own ``SimpleITKIO``, are the suite's arrays
  (no transposition, values kept);
- the returned predictor gives what nnU-Net's predictor gives on those files: its
  foreground probabilities, input axes as nnU-Net reads them, right shape and range;
- the recorded best validation score is the score of the served checkpoint.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from genseg_bench.errors import SpecError
from genseg_bench.methods import nnunet
from genseg_bench.methods.base import FitContext, FitResult, SegData
from genseg_bench.methods.config import NnUNetConfig, parse_config
from genseg_bench.methods.registry import build_method, config_model
from genseg_bench.metrics import binarise, dice_per_case
from genseg_bench.profiles import get_profile
from genseg_bench.specs import MethodSpec, Profile

HAS_NNUNET = importlib.util.find_spec("nnunetv2") is not None
needs_nnunet = pytest.mark.skipif(
    not HAS_NNUNET, reason="nnunetv2 is not installed (pip install genseg-bench[nnunet])"
)


def _cases(n: int, seed: int, prefix: str) -> SegData:
    """Bright, wide rectangles on a noisy background: asymmetric, so a transposed image is a different image."""
    gen = torch.Generator().manual_seed(seed)
    masks = torch.zeros(n, 1, 32, 32)
    for i in range(n):
        top, left = (int(v) for v in torch.randint(2, 14, (2,), generator=gen))
        masks[i, 0, top : top + 6, left : left + 16] = 1.0
    images = (0.2 + 0.6 * masks + 0.1 * torch.rand(n, 1, 32, 32, generator=gen)).clamp(0, 1)
    return SegData(images, masks, [f"{prefix}/case {i}" for i in range(n)])


def _spec(**config: Any) -> MethodSpec:
    return MethodSpec(name="nnunet", kind="nnunet", description="nnU-Net", config=config)


def _profile() -> Profile:
    return get_profile("smoke").model_copy(update={"iterations": 6, "eval_every": 3, "batch_size": 2})


# ----------------------------------------------------------------------------- no nnU-Net needed


def test_kind_and_config_are_registered_and_validated() -> None:
    assert config_model("nnunet") is NnUNetConfig
    with pytest.raises(SpecError, match="did you mean 'planner'"):
        parse_config(NnUNetConfig, {"planer": "default"}, "method 'nnunet'")
    with pytest.raises(SpecError, match="checkpoint"):
        parse_config(NnUNetConfig, {"checkpoint": "best"}, "method 'nnunet'")


def test_the_shipped_spec_and_tasks_name_nnunet(catalog: Any) -> None:
    spec = catalog.method("nnunet")
    assert spec.kind == "nnunet"
    for task_id in ("nnunet-jsrt-ood", "nnunet-isic-ood"):
        assert "nnunet" in catalog.task(task_id).default_methods


def test_missing_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "nnunetv2" else real(name, *a)
    )
    ctx = FitContext(device=torch.device("cpu"), seed=0, profile=_profile(), out_dir=tmp_path)
    with pytest.raises(nnunet.NnUNetError, match=r"pip install genseg-bench\[nnunet\]"):
        build_method(_spec()).fit(_cases(2, 0, "t"), _cases(1, 1, "v"), ctx)
    assert not (tmp_path / "nnunet").exists()


def test_a_grid_without_the_package_fails_before_any_data_is_read(
    catalog: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """One error with the install command, not a failed run recorded for every cell of the grid."""
    from genseg_bench.data.store import Store
    from genseg_bench.runner import plan_grid

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "nnunetv2" else real(name, *a)
    )
    store = Store(tmp_path / "no-store")
    with pytest.raises(SpecError, match=r"nnunet need the package 'nnunetv2'.*genseg-bench\[nnunet\]"):
        plan_grid(catalog, "synthetic", ["unet", "nnunet"], [8], [0], get_profile("smoke"), store, tmp_path)
    assert not (tmp_path / "no-store").exists()
    plan_grid(catalog, "synthetic", ["unet"], [8], [0], get_profile("smoke"), store, tmp_path)  # others run


def test_budget_is_the_profiles_iterations_in_nnunet_epochs() -> None:
    cpu = get_profile("cpu")  # 800 iterations, validation every 50
    b = nnunet.Budget.from_profile(cpu, NnUNetConfig())
    assert (b.epochs, b.iterations_per_epoch, b.validate_every_epochs, b.updates) == (16, 50, 1, 800)
    b = nnunet.Budget.from_profile(cpu, NnUNetConfig(iterations_per_epoch=10))
    assert (b.epochs, b.validate_every_epochs) == (80, 5)
    b = nnunet.Budget.from_profile(cpu, NnUNetConfig(iterations_per_epoch=250))  # nnU-Net's own epoch
    assert (b.epochs, b.validate_every_epochs, b.updates) == (4, 1, 1000)


def test_layout_holds_the_suites_cases_and_split(tmp_path: Path) -> None:
    train, val = _cases(5, 0, "t"), _cases(2, 1, "v")
    layout = nnunet.NnUNetLayout(tmp_path / "run")
    names, splits = nnunet.write_layout(layout, train, val)
    ds = json.loads((layout.raw_dataset / "dataset.json").read_text())
    assert ds["numTraining"] == 7 and ds["labels"] == {"background": 0, "foreground": 1}
    assert ds["channel_names"] == {"0": "image"} and ds["file_ending"] == ".nii.gz"
    assert ds["dataset"]["case0006"] == {
        "images": ["imagesTr/case0006_0000.nii.gz"],
        "label": "labelsTr/case0006.nii.gz",
    }
    on_disk = json.loads((layout.preprocessed_dataset / "splits_final.json").read_text())
    assert on_disk == splits and len(on_disk) == 1
    assert sorted(names[n] for n in on_disk[0]["train"]) == sorted(train.case_ids)
    assert sorted(names[n] for n in on_disk[0]["val"]) == sorted(val.case_ids)
    with np.load(layout.root / "cases.npz") as cases:
        order = [str(n) for n in cases["names"]]
        i = order.index(on_disk[0]["val"][0])
        assert names[order[i]] == val.case_ids[0]
        np.testing.assert_array_equal(cases["images"][i], val.images[0].numpy())
        np.testing.assert_array_equal(cases["masks"][i], val.masks[0].numpy().astype(np.uint8))
    env = layout.env({})
    assert env["nnUNet_raw"] == str(layout.raw) and env["nnUNet_results"] == str(layout.results)


def test_children_get_only_this_runs_nnunet_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("nnUNet_raw", "/somewhere/else")
    monkeypatch.setenv("nnUNet_extTrainer", "/another/place")
    env = nnunet.NnUNetLayout(tmp_path).env({"nnUNet_n_proc_DA": "0"})
    assert env["nnUNet_raw"] == str(tmp_path / "nnUNet_raw")
    assert "nnUNet_extTrainer" not in env and env["nnUNet_n_proc_DA"] == "0"


def test_device_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    assert nnunet.nnunet_device(torch.device("cpu")) == ("cpu", {})
    assert nnunet.nnunet_device(torch.device("cuda")) == ("cuda", {})
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert nnunet.nnunet_device(torch.device("cuda", 1)) == ("cuda", {"CUDA_VISIBLE_DEVICES": "1"})
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")  # cuda:1 is the second visible GPU
    assert nnunet.nnunet_device(torch.device("cuda", 1)) == ("cuda", {"CUDA_VISIBLE_DEVICES": "6"})


# ----------------------------------------------------------------------------- the real package


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[FitResult, SegData, SegData, Path]:
    if not HAS_NNUNET:
        pytest.skip("nnunetv2 is not installed (pip install genseg-bench[nnunet])")
    torch.set_num_threads(1)
    train, val = _cases(6, 0, "train"), _cases(2, 1, "val")
    out = tmp_path_factory.mktemp("nnunet-run")
    ctx = FitContext(device=torch.device("cpu"), seed=0, profile=_profile(), out_dir=out)
    fit = build_method(_spec(val_iterations_per_epoch=1)).fit(train, val, ctx)
    return fit, train, val, out / "nnunet"


@needs_nnunet
@pytest.mark.slow
def test_nnunet_trained_on_the_suites_split(trained: tuple[FitResult, SegData, SegData, Path]) -> None:
    fit, train, val, run = trained
    cases = json.loads((run / "cases.json").read_text())
    splits = json.loads((run / "nnUNet_preprocessed" / nnunet.DATASET_NAME / "splits_final.json").read_text())
    assert [sorted(cases[n]["case_id"] for n in splits[0][k]) for k in ("train", "val")] == [
        sorted(train.case_ids),
        sorted(val.case_ids),
    ]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["split_used"] == splits[0]
    ds = json.loads((run / "nnUNet_raw" / nnunet.DATASET_NAME / "dataset.json").read_text())
    assert ds["numTraining"] == len(train) + len(val)


@needs_nnunet
@pytest.mark.slow
def test_raw_files_read_by_nnunet_are_the_suites_arrays(
    trained: tuple[FitResult, SegData, SegData, Path],
) -> None:
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    _, train, _, run = trained
    cases = json.loads((run / "cases.json").read_text())
    raw = run / "nnUNet_raw" / nnunet.DATASET_NAME
    for name, info in cases.items():
        if info["role"] != "train":
            continue
        i = train.case_ids.index(info["case_id"])
        image, props = SimpleITKIO().read_images([str(raw / "imagesTr" / f"{name}_0000.nii.gz")])
        label, _ = SimpleITKIO().read_seg(str(raw / "labelsTr" / f"{name}.nii.gz"))
        assert image.shape == (1, 1, 32, 32) and list(props["spacing"]) == [999.0, 1.0, 1.0]
        np.testing.assert_array_equal(image[:, 0], train.images[i].numpy())
        np.testing.assert_array_equal(label[0, 0], train.masks[i, 0].numpy())


@needs_nnunet
@pytest.mark.slow
def test_budget_and_plans_are_recorded(trained: tuple[FitResult, SegData, SegData, Path]) -> None:
    fit, _, _, _ = trained
    rec = fit.extras["nnunet"]
    assert rec["configuration"] == "2d" and rec["patch_size"] == [32, 32]
    assert (rec["epochs"], rec["iterations_per_epoch"], fit.iterations) == (2, 3, 6)
    assert rec["network"]["class"].endswith("PlainConvUNet") and rec["network"]["parameters"] > 0
    assert rec["version"] == rec["versions"]["nnunetv2"]
    assert fit.budget["updates"] == 6 and fit.budget["images_seen"] == 6 * rec["batch_size"]
    assert fit.budget["batch_size"] == rec["batch_size"]  # the report's budget column reads it
    # the result's segmenter is what nnU-Net built, not what the spec's placeholder backbone would
    assert fit.segmenter is not None and "PlainConvUNet" in fit.segmenter["architecture"]
    assert f"batch {rec['batch_size']}" in fit.segmenter["input"]
    assert fit.trajectory["iteration"] == [3, 6]
    assert fit.best_iteration in (3, 6) and 0.0 <= fit.best_val_score <= 1.0
    assert all(Path(a).is_file() for a in fit.artifacts)
    json.dumps(fit.extras)  # a result file must hold it


@needs_nnunet
@pytest.mark.slow
def test_predictions_come_back_from_nnunets_predictor(
    trained: tuple[FitResult, SegData, SegData, Path],
) -> None:
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    from genseg_bench.methods.nnunet_worker import nnunet_input

    fit, _, val, run = trained
    probs = fit.predictor.predict(val.images)
    assert probs.shape == (2, 1, 32, 32) and probs.dtype == torch.float32
    assert bool(torch.isfinite(probs).all()) and 0.0 <= float(probs.min()) <= float(probs.max()) <= 1.0
    assert fit.predictor.predict(_cases(3, 7, "test").images).shape == (3, 1, 32, 32)
    # the recorded best validation score is the served checkpoint's score, and it learned the rectangles
    served = float(dice_per_case(binarise(probs), val.masks > 0.5).mean())
    assert math.isclose(served, fit.best_val_score, abs_tol=1e-9)
    everything = float(dice_per_case(torch.ones_like(val.masks, dtype=torch.bool), val.masks > 0.5).mean())
    assert served > max(0.5, everything, fit.extras["empty_val_score"])
    # what the predictor hands nnU-Net is what nnU-Net reads from the case's training file
    cases = json.loads((run / "cases.json").read_text())
    name = next(n for n, c in cases.items() if c["case_id"] == val.case_ids[0])
    path = run / "nnUNet_raw" / nnunet.DATASET_NAME / "imagesTr" / f"{name}_0000.nii.gz"
    image, props = SimpleITKIO().read_images([str(path)])
    arr, spacing = nnunet_input(val.images[0].numpy(), 2)
    np.testing.assert_array_equal(arr, image)
    assert spacing == {"spacing": list(props["spacing"])}
    fit.predictor.close()  # type: ignore[attr-defined]
