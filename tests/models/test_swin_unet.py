"""The ``swinunet`` backbone: Swin-Unet's shapes, gradients, shifted-window mask, sizes, weights and runs.

The mask test is black-box: a token of a Swin block may only influence the
outputs of tokens in its own window (the MLP, norms and residuals are per
token), so perturbing one token at a time and seeing which outputs move reads
the window partition, shift and mask off the real forward pass. The expected
windows are written down geometrically here (regular windows offset by the
shift and cut at the map's border), not by the module's own mask code.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch

from genseg_bench.catalog import Catalog
from genseg_bench.data.store import Store, to_tensors
from genseg_bench.errors import SpecError
from genseg_bench.methods.base import FitContext, SegData
from genseg_bench.methods.genseg import GenSegMethod
from genseg_bench.metrics import dice_per_case
from genseg_bench.models.pretrained import WeightsError
from genseg_bench.models.segmenters import build_segmenter, describe_segmenter
from genseg_bench.models.swin_unet import (
    SWINUNET_DEFAULT,
    SWINUNET_TINY,
    SwinTransformerBlock,
    SwinUnet,
    SwinUnetSizeError,
    parameter_count,
)
from genseg_bench.profiles import get_profile
from genseg_bench.runner import check_model_input, load_task_data, run_grid

CPU = torch.device("cpu")
REPO = Path(__file__).resolve().parents[2]
NO_DROP = dataclasses.replace(SWINUNET_DEFAULT, drop_path_rate=0.0)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# --- shapes and gradients -----------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [32, 64, 128, 256])
def test_output_shape_for_every_profile_size(size: int, channels: int) -> None:
    torch.manual_seed(0)
    net = build_segmenter("swinunet", channels).eval()
    assert isinstance(net, SwinUnet) and net.config == SWINUNET_DEFAULT
    with torch.no_grad():
        out = net(torch.rand(1, channels, size, size))
    assert out.shape == (1, 1, size, size) and bool(torch.isfinite(out).all())


def test_non_square_input_and_the_papers_swin_t_configuration() -> None:
    net = SwinUnet(3, 1, NO_DROP).eval()
    with torch.no_grad():
        assert net(torch.rand(2, 3, 64, 128)).shape == (2, 1, 64, 128)
    # Swin-T (embedding 96, window 7) takes the reference's 224 px; shapes only, on the meta device
    with torch.device("meta"):
        tiny = SwinUnet(3, 9, SWINUNET_TINY)
        assert tiny(torch.zeros(1, 3, 224, 224)).shape == (1, 9, 224, 224)
    with pytest.raises(SwinUnetSizeError, match="224"):
        tiny(torch.zeros(1, 3, 256, 256, device="meta"))
    # the reference SwinTransformerSys at Swin-T, 3 channels, 9 classes (its Synapse setting) has
    # 27,168,900 parameters (counted by building HuCaoFighting/Swin-Unet's network)
    assert sum(p.numel() for p in tiny.parameters()) == 27_168_900
    assert parameter_count(SWINUNET_DEFAULT) == 3_033_740


def test_gradients_reach_every_parameter() -> None:
    """At 128 px every stage's map is at least the window, so every relative-position bias is used."""
    torch.manual_seed(0)
    net = SwinUnet(1, 1, NO_DROP).train()
    out = net(torch.rand(2, 1, 128, 128))
    out.square().mean().backward()
    dead = [n for n, p in net.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not dead, f"no gradient reaches {dead}"


# --- the shifted-window attention -------------------------------------------------------------


def _reach(block: SwinTransformerBlock, h: int, w: int) -> torch.Tensor:
    """``reach[q, p]``: whether perturbing token ``q`` changes the block's output at token ``p``."""
    torch.manual_seed(0)
    x = torch.randn(1, h * w, block.dim, dtype=torch.float64)
    perturbed = x.repeat(h * w, 1, 1)
    # a random direction: a constant added to every channel would vanish in the block's LayerNorm
    perturbed[torch.arange(h * w), torch.arange(h * w)] += 3.0 * torch.randn(block.dim, dtype=torch.float64)
    with torch.no_grad():
        diff = (block(perturbed, h, w) - block(x, h, w)).abs().amax(-1)
    assert float(diff[diff > 1e-9].min()) > 1e-4, "a window-mate's change is too small to tell from a leak"
    return diff > 1e-9


def _expected(h: int, w: int, window: int, shift: int) -> torch.Tensor:
    """Tokens share a window iff they fall in the same cell of the regular grid offset by ``shift``.

    Cells are cut at the border: the cyclic shift's wrapped-around tokens form
    their own cells, never one window with the other side of the map.
    """
    rows = torch.div(torch.arange(h) - shift, window, rounding_mode="floor")
    cols = torch.div(torch.arange(w) - shift, window, rounding_mode="floor")
    cell = (rows[:, None] * 1000 + cols[None, :]).reshape(-1)
    return cell[:, None] == cell[None, :]


@pytest.mark.parametrize(("h", "w"), [(8, 8), (8, 12)])
def test_shifted_windows_keep_tokens_of_different_windows_apart(h: int, w: int) -> None:
    torch.manual_seed(0)
    for shifted in (False, True):
        block = SwinTransformerBlock(dim=8, num_heads=2, window_size=4, shifted=shifted).double().eval()
        with torch.no_grad():  # away from the near-uniform init, so every window-mate's change is large
            for p in block.parameters():
                p.normal_(0.0, 0.5)
        assert block.geometry(h, w) == (4, 2 if shifted else 0)
        reach = _reach(block, h, w)
        expected = _expected(h, w, 4, 2 if shifted else 0)
        assert torch.equal(reach, expected), (
            f"shifted={shifted}: {int((reach != expected).sum())} pairs differ"
        )
    # the wrapped corner: with the shift, token (0, 0) and token (h-1, w-1) are cyclic neighbours, yet apart
    assert not bool(reach[0, h * w - 1]) and bool(reach[0, 1])


def test_a_map_no_larger_than_the_window_is_one_unshifted_window() -> None:
    block = SwinTransformerBlock(dim=8, num_heads=2, window_size=4, shifted=True)
    assert (
        block.geometry(4, 4) == (4, 0) and block.geometry(2, 2) == (2, 0) and block.geometry(2, 8) == (2, 0)
    )


# --- sizes and dimensions --------------------------------------------------------------------------


@pytest.mark.parametrize("size", [16, 48, 96, 100])
def test_unsupported_sizes_name_the_valid_sizes(size: int) -> None:
    net = SwinUnet(3, 1)
    with pytest.raises(SwinUnetSizeError) as err:
        net(torch.zeros(1, 3, size, size))
    message = str(err.value)
    assert "\n" not in message and f"{size}x{size}" in message
    listed = re.search(r"takes \(up to 1024\): ([\d, ]+);", message)
    assert listed is not None and listed.group(1) == "32, 64, 128, 256, 384, 512, 640, 768, 896, 1024"


def test_the_runner_refuses_an_unsupported_profile_size_before_training(catalog: Catalog) -> None:
    from genseg_bench.values import ValueCheckError

    task = catalog.task("synthetic")
    with pytest.raises(ValueCheckError, match="32, 64, 128, 256") as err:
        check_model_input(task, [catalog.method("swinunet")], 96)
    assert "larger size" not in str(err.value)  # the network's own list of sizes, not a generic guess
    check_model_input(task, [catalog.method("swinunet")], 64)


def test_the_size_check_covers_a_methods_second_network(catalog: Catalog) -> None:
    """CTBCT's Swin-Unet branch and MCF's DeepLabV3+ subnet are built too: a size they refuse fails first."""
    from genseg_bench.values import ValueCheckError

    task = catalog.task("synthetic-semi")
    check_model_input(task, [catalog.method("unet")], 96)  # the UNet alone takes 96 px
    with pytest.raises(ValueCheckError, match=r"'ctbct-unet' \(backbone swinunet\).*32, 64, 128"):
        check_model_input(task, [catalog.method("ctbct-unet")], 96)
    with pytest.raises(ValueCheckError, match=r"'mcf-unet' \(backbone deeplabv3plus.*multiple of 16"):
        check_model_input(task, [catalog.method("mcf-unet")], 40)


def test_3d_input_and_wrong_channels_are_clear_errors() -> None:
    with pytest.raises(SpecError, match="2D network"):
        build_segmenter("swinunet", 1, dims=3)
    with pytest.raises(SpecError, match="2D network"):
        describe_segmenter("swinunet", dims=3)
    net = SwinUnet(1, 1)
    with pytest.raises(ValueError, match="2D network"):
        net(torch.zeros(1, 1, 32, 32, 32))
    with pytest.raises(ValueError, match="1-channel"):
        net(torch.zeros(1, 3, 32, 32))


# --- weights from a file ---------------------------------------------------------------------------


def test_weights_load_from_a_local_file(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = build_segmenter("swinunet", 1).eval()
    path = tmp_path / "swinunet.pt"
    torch.save({"model": source.state_dict()}, path)  # a training checkpoint's wrapper is unwrapped
    loaded = build_segmenter("swinunet", 1, encoder_weights=str(path)).eval()
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), source(x), rtol=0, atol=0)
    assert describe_segmenter("swinunet", encoder_weights=str(path))["weights_source"].endswith(str(path))


def test_rgb_weights_load_into_a_grey_model_as_the_reference_repeats_grey(tmp_path: Path) -> None:
    torch.manual_seed(0)
    rgb = SwinUnet(3, 1, NO_DROP).eval()
    path = tmp_path / "rgb.pt"
    torch.save({f"swin_unet.{k}": v for k, v in rgb.state_dict().items()}, path)  # the reference's prefix
    grey = build_segmenter("swinunet", 1, encoder_weights=str(path)).eval()
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(grey(x), rgb(x.repeat(1, 3, 1, 1)), rtol=1e-5, atol=1e-5)


def test_missing_mismatched_and_foreign_weights_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pt"
    with pytest.raises(WeightsError, match="nowhere.pt") as err:
        build_segmenter("swinunet", 3, encoder_weights=str(missing))
    assert "does not exist" in str(err.value)
    other = tmp_path / "wide.pt"
    torch.save(SwinUnet(3, 1, dataclasses.replace(SWINUNET_DEFAULT, embed_dim=16)).state_dict(), other)
    with pytest.raises(WeightsError, match="wide.pt") as err:
        build_segmenter("swinunet", 3, encoder_weights=str(other))
    assert "embed_dim 32" in str(err.value) and "in the file" in str(err.value)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="junk.pt"):
        build_segmenter("swinunet", 3, encoder_weights=str(junk))
    with pytest.raises(WeightsError, match="imagenet"):
        build_segmenter("swinunet", 3, encoder_weights="imagenet")


# --- the catalog -----------------------------------------------------------------------------------


def _load_error(tmp_path: Path, body: str) -> str:
    folder = tmp_path / "methods"
    folder.mkdir()
    (folder / "mine.toml").write_text(body)
    with pytest.raises(SpecError) as err:
        Catalog.load(tasks_dir=REPO / "tasks", methods_dir=folder)
    return " ".join(str(err.value).split())


def test_catalog_names_swinunet_among_the_valid_backbones(tmp_path: Path) -> None:
    message = _load_error(
        tmp_path, '[[method]]\nname = "s"\nkind = "supervised"\ndescription = "x"\nbackbone = "swin-unet"\n'
    )
    assert "mine.toml" in message and "'swin-unet'" in message and "Did you mean swinunet" in message
    assert "unet-classic" in message and "unet3d" in message


def test_catalog_refuses_imagenet_weights_for_swinunet(tmp_path: Path) -> None:
    message = _load_error(
        tmp_path,
        '[[method]]\nname = "s"\nkind = "supervised"\ndescription = "x"\nbackbone = "swinunet"\n'
        'encoder_weights = "imagenet"\n',
    )
    assert "mine.toml" in message and "no built-in pretrained weights" in message


def test_shipped_specs_and_the_backbone_task(catalog: Catalog) -> None:
    assert (
        catalog.method("swinunet").kind == "supervised" and catalog.method("swinunet").backbone == "swinunet"
    )
    genseg = catalog.method("genseg-swinunet")
    assert genseg.kind == "genseg" and genseg.backbone == "swinunet"
    assert genseg.config == catalog.method("genseg-unet").config  # only the segmenter differs
    defaults = catalog.task("swinunet-isic").default_methods
    assert {"unet", "genseg-unet", "swinunet", "genseg-swinunet"} <= set(defaults)


# --- runs ------------------------------------------------------------------------------------------


def test_supervised_swinunet_trains_on_the_synthetic_task_and_beats_chance(
    catalog: Catalog, store: Store, tmp_path: Path
) -> None:
    # lr 5e-5: with the suite's RMSprop SwinUnet collapses to predicting background at 2e-4 and above
    # (the module docstring), so the smoke profile's 1e-3 would test that collapse, not training
    profile = get_profile("smoke").model_copy(update={"iterations": 30, "eval_every": 10, "seg_lr": 5e-5})
    s = run_grid(catalog, "synthetic", ["swinunet"], [16], [0], profile, store, tmp_path, CPU, threads=1)
    assert not s.failed and len(s.ran) == 1
    r = s.ran[0]
    assert r.budget["updates"] == 30
    assert "Swin-Unet" in r.segmenter["architecture"] and "window 4" in r.segmenter["architecture"]
    ts = r.test_sets["synthetic-a"]
    # chance: the better of predicting every pixel foreground and predicting none
    data = load_task_data(catalog.task("synthetic"), store, 32)
    p = data.prepared["synthetic-a"]
    _, masks = to_tensors(p, p.index(ts.case_ids), 32, 3, CPU)
    target = masks > 0.5
    chance = max(
        float(dice_per_case(torch.ones_like(target), target).mean()),
        float(dice_per_case(torch.zeros_like(target), target).mean()),
    )
    assert ts.mean_dice > chance + 0.1, (ts.mean_dice, chance)


def _blobs(n: int, seed: int) -> SegData:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    centres = torch.randint(8, 24, (n, 2), generator=g)
    masks = ((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2 < 36).float()[:, None]
    images = (0.5 * torch.rand(n, 3, 32, 32, generator=g) + 0.4 * masks).clamp(0, 1)
    return SegData(images, masks, [f"case{i}" for i in range(n)])


def _numbers(value: object) -> list[float]:
    """Every number in a nest of dicts and lists."""
    if isinstance(value, dict):
        return [x for v in value.values() for x in _numbers(v)]
    if isinstance(value, list | tuple):
        return [x for v in value for x in _numbers(v)]
    return [float(value)] if isinstance(value, int | float) else []


def test_genseg_swinunet_runs_two_finite_iterations(catalog: Catalog, tmp_path: Path) -> None:
    """Both iterations take the architecture step: GenSeg's hypergradient runs through SwinUnet's double backward."""
    spec = catalog.method("genseg-swinunet")
    spec = spec.model_copy(update={"config": {**spec.config, "arch_warmup": 0}})
    profile = get_profile("smoke").model_copy(update={"iterations": 2})
    ctx = FitContext(device=CPU, seed=0, profile=profile, out_dir=tmp_path / "art")
    fit = GenSegMethod(spec).fit(_blobs(6, 0), _blobs(3, 1), ctx)
    assert fit.iterations == 2 and fit.extras["mode"] == "end-to-end"
    numbers = _numbers(fit.trajectory)  # validation scores and every loss GenSeg records
    assert len(numbers) > 3 and bool(torch.isfinite(torch.tensor(numbers)).all()), fit.trajectory
    probs = fit.predictor.predict(_blobs(2, 2).images)
    assert probs.shape == (2, 1, 32, 32) and bool(torch.isfinite(probs).all())
