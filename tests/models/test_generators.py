"""GenSeg's generators behind one interface: Pix2Pix, SPADE, ASAPNet, BBDM and Soft-Intro VAE.

Each generator maps masks to images of the right shape in [0, 1], splits its
parameters into the alphas A and the weights G, holds no buffers, and receives
the segmentation losses' gradient through ``functional_call`` with the lookahead
G' (End2End); GenSeg trains with each in End2End and Separate mode on a tiny
embedded task. Plus what defines SPADE (the mask enters every normalisation)
and ASAPNet (pixelwise MLPs per tile, with a positional encoding), and that the
``generator`` key leaves the Pix2Pix run identities as they were. What defines
BBDM and Soft-Intro VAE (their bridge and ELBO terms, their own level 1) is in
tests/models/test_bbdm.py and tests/models/test_soft_intro_vae.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest
import torch
from torch import nn

from genseg_bench.methods import genseg as genseg_module
from genseg_bench.methods.base import FitContext, SegData
from genseg_bench.methods.config import GeneratorName, GenSegConfig
from genseg_bench.methods.genseg import GenSegBatch, GenSegMethod, GenSegTrainer, hypergradient, unrolled_step
from genseg_bench.metrics import dice_per_case
from genseg_bench.models.asapnet import ASAPNetGenerator
from genseg_bench.models.discriminator import PatchDiscriminator
from genseg_bench.models.generators import GENERATORS, build_generator, check_stateless
from genseg_bench.models.spade import SPADEGenerator
from genseg_bench.profiles import get_profile
from genseg_bench.specs import MethodSpec

CPU = torch.device("cpu")
SMOKE = get_profile("smoke")
NAMES = sorted(GENERATORS)
CELLS_AT_32 = {
    "pix2pix": {f"enc{i}" for i in range(5)} | {f"dec{i}" for i in range(5)},
    "spade": {"up1", "up2"},  # 32 px: two upsampling steps from 8 px
    "asapnet": {"down1"},  # 32 px: tiles of 2 x 2, one stride-2 cell
    "bbdm": {"down1", "down2", "down3", "up1", "up2", "up3"},  # 32 px: the denoiser's bottom is 4 px
    "softintrovae": {"up1", "up2", "up3"},  # 32 px: the decoder starts at 4 px
}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _masks(n: int, size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """Discs at random centres: masks with foreground and background."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size[0]), torch.arange(size[1]), indexing="ij")
    cy = torch.randint(size[0] // 4, 3 * size[0] // 4, (n, 1, 1), generator=g)
    cx = torch.randint(size[1] // 4, 3 * size[1] // 4, (n, 1, 1), generator=g)
    r = min(size) // 4
    return (((yy - cy) ** 2 + (xx - cx) ** 2) < r * r).float()[:, None]


def _data(n: int, seed: int = 0) -> SegData:
    masks = _masks(n, (32, 32), seed)
    g = torch.Generator().manual_seed(seed + 100)
    images = (0.5 * torch.rand(n, 3, 32, 32, generator=g) + 0.4 * masks).clamp(0, 1)
    return SegData(images, masks, [f"case{i}" for i in range(n)])


def _gen(name: str, spatial: tuple[int, ...] = (32, 32), **kw: object) -> nn.Module:
    torch.manual_seed(0)
    return build_generator(name, 3, spatial, width=4, **kw)  # type: ignore[arg-type]


# --- the interface ------------------------------------------------------------------------------


def test_the_registry_offers_exactly_the_config_s_choices() -> None:
    assert set(GENERATORS) == set(get_args(GeneratorName))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("spatial", [(32, 32), (40, 24)], ids=["32x32", "40x24"])
def test_images_have_the_mask_s_shape_lie_in_0_1_and_follow_the_mask(
    name: str, spatial: tuple[int, int]
) -> None:
    gen = _gen(name, spatial)
    masks = _masks(2, spatial)
    with torch.no_grad():
        out, flipped = gen(masks), gen(1 - masks)
    assert out.shape == (2, 3, *spatial)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert float((out - flipped).abs().max()) > 1e-4, "the image must depend on the mask"
    assert not list(gen.buffers()), "no buffers: functional_call with G' must be the forward's function"
    arch, weights = gen.arch_parameters(), gen.weight_parameters()  # type: ignore[operator]
    assert len(arch) == len(gen.cells()) > 0  # type: ignore[operator]
    assert {id(p) for p in arch}.isdisjoint({id(p) for p in weights})
    assert {id(p) for p in [*arch, *weights]} == {id(p) for p in gen.parameters()}


@pytest.mark.parametrize("name", NAMES)
def test_cell_modes_mean_the_same_in_every_generator(name: str) -> None:
    learnable = _gen(name).alphas()  # type: ignore[operator]
    assert set(learnable) == CELLS_AT_32[name]
    assert all(
        ops == pytest.approx(dict.fromkeys(("4-2-1", "6-2-2", "8-2-3"), 1 / 3)) for ops in learnable.values()
    )
    fixed = _gen(name, cells="fixed")
    assert not fixed.arch_parameters()  # type: ignore[operator]
    assert all(ops == {"4-2-1": 1.0, "6-2-2": 1.0, "8-2-3": 1.0} for ops in fixed.alphas().values())  # type: ignore[operator]
    single = _gen(name, cells="single")
    assert all(ops == {"4-2-1": 1.0} for ops in single.alphas().values())  # type: ignore[operator]


def test_volumes_and_what_is_refused() -> None:
    for name in ("pix2pix", "spade"):
        vol = _gen(name, (12, 20, 16), dims=3)(torch.zeros(1, 1, 12, 20, 16))
        assert vol.shape == (1, 3, 12, 20, 16)
    for name in ("asapnet", "bbdm", "softintrovae"):
        with pytest.raises(ValueError, match="2D only"):
            _gen(name, (16, 16, 16), dims=3)
    for name in ("spade", "asapnet", "bbdm", "softintrovae"):
        with pytest.raises(ValueError, match="no dropout"):
            _gen(name, dropout=0.5)
    with pytest.raises(ValueError, match="unknown generator"):
        build_generator("stylegan", 3, (32, 32), width=4)
    with pytest.raises(ValueError, match="buffers"):
        check_stateless(nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3)))


# --- End2End: the segmentation losses reach G and A through G' ----------------------------------


def _batch() -> GenSegBatch:
    g = torch.Generator().manual_seed(1)
    masks, val_masks = _masks(2, (32, 32), 1), _masks(2, (32, 32), 2)
    images, val_images = torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    return GenSegBatch(masks, images, torch.flip(masks, [3]), val_images, val_masks)


@pytest.mark.parametrize("name", NAMES)
def test_segmentation_losses_reach_the_weights_and_the_alphas_through_the_lookahead(name: str) -> None:
    gen = _gen(name)
    with torch.no_grad():  # away from the uniform start, so every alpha has its own derivative
        for a in gen.arch_parameters():  # type: ignore[operator]
            a.normal_(0.0, 0.5)
    disc = gen.build_partner(3, (32, 32), width=2)  # type: ignore[operator]  # H: the generator's own
    seg = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 1, 3, padding=1))
    step = unrolled_step(gen, disc, seg, _batch(), eta_g=1e-1, eta_s=1e-1, gamma=1.0, lambda_l1=100.0)  # type: ignore[arg-type]
    assert step.generated.requires_grad
    arch = gen.arch_parameters()  # type: ignore[operator]
    weights = gen.named_weight_parameters()  # type: ignore[operator]
    # level 2: L_seg(S, G'(M_aug)) -> G' = G - eta grad L_gan -> G and A
    grads = torch.autograd.grad(
        step.seg_loss,
        [*arch, *weights.values()],
        retain_graph=True,
        allow_unused=True,
        materialize_grads=True,
    )
    assert all(float(g.abs().min()) > 0 for g in grads[: len(arch)]), "every alpha gets gradient"
    first = next(iter(weights))  # the input-most layer: gradient crossed the whole generator
    assert float(grads[len(arch)].abs().sum()) > 0, f"no gradient reached {first}"
    assert sum(float(g.abs().sum()) > 0 for g in grads[len(arch) :]) >= 0.5 * len(weights)
    # level 3: the hypergradient of the validation loss of S'
    hyper = hypergradient(step, arch)
    assert all(bool(torch.isfinite(g).all()) and float(g.abs().min()) > 0 for g in hyper)


def _small_segmenter(backbone: str, in_channels: int, dims: int = 2, *args: object) -> nn.Module:
    """Conv-BN-ReLU-Conv in place of the backbone: the generator is under test, and the fits take seconds."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1)
    )


@pytest.mark.parametrize("separate", [False, True], ids=["end2end", "separate"])
@pytest.mark.parametrize("name", NAMES)
def test_genseg_trains_with_each_generator(
    name: str, separate: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GenSegMethod.fit as the runner calls it (build, both modes, validation, pair grid), small segmenter.

    The alpha plot is recorded instead of drawn (matplotlib's layout takes longer
    than the training here; tests/methods/test_genseg.py draws it).
    """
    monkeypatch.setattr(genseg_module, "build_segmenter", _small_segmenter)
    plotted: list[list[str]] = []

    def record_plot(iterations: object, alphas: list[dict[str, object]], path: Path, title: str = "") -> Path:
        plotted.append(list(alphas[-1]))
        return path

    monkeypatch.setattr(genseg_module, "save_alpha_plot", record_plot)
    config: dict[str, object] = {"generator": name}
    config.update({"separate": True, "gan_iterations": 1} if separate else {"arch_warmup": 0})
    spec = MethodSpec(name=f"genseg-{name}", kind="genseg", description="x", config=config)
    ctx = FitContext(
        device=CPU,
        seed=0,
        profile=SMOKE.model_copy(update={"iterations": 2, "eval_every": 2, "gen_width": 4}),
        out_dir=tmp_path / "art",
    )
    fit = GenSegMethod(spec).fit(_data(6), _data(3, seed=1), ctx)
    assert fit.extras["generator"] == name and fit.iterations == 2
    assert set(fit.extras["alphas"]) == CELLS_AT_32[name]  # the generator that was built is this one
    assert [set(p) for p in plotted] == [CELLS_AT_32[name]] and Path(fit.artifacts[0]).is_file()
    losses = fit.extras["final_losses"]
    assert losses and all(torch.isfinite(torch.tensor(v)) for v in losses.values()), losses
    if separate:
        assert fit.extras["mode"] == "separate" and fit.extras["gan_iterations"] == 1
        assert fit.extras["max_alpha_shift"] == 0.0  # frozen: no architecture level
    else:
        assert fit.extras["mode"] == "end-to-end" and fit.extras["max_alpha_shift"] > 1e-6
        assert fit.trajectory["hypergrad_norm"][-1] > 0
    assert fit.predictor.predict(_data(2, seed=2).images).shape == (2, 1, 32, 32)


def _data16(n: int, seed: int) -> SegData:
    """16 px discs, brighter than the background: a task a few dozen iterations learn."""
    masks = _masks(n, (16, 16), seed)
    g = torch.Generator().manual_seed(seed + 100)
    images = (0.3 * torch.rand(n, 3, 16, 16, generator=g) + 0.5 * masks).clamp(0, 1)
    return SegData(images, masks, [f"case{i}" for i in range(n)])


@pytest.mark.parametrize("separate", [False, True], ids=["end2end", "separate"])
@pytest.mark.parametrize("name", ["bbdm", "softintrovae"])
def test_genseg_with_a_generator_of_its_own_objective_beats_chance(
    name: str, separate: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BBDM (no partner) and Soft-Intro VAE (encoder partner) through GenSegMethod.fit, 16 px, 30 iterations.

    Chance: the validation Dice of calling every pixel foreground. The End2End run
    also shows the architecture level ran (alphas moved, hypergradient > 0).
    """
    monkeypatch.setattr(genseg_module, "build_segmenter", _small_segmenter)
    monkeypatch.setattr(genseg_module, "save_alpha_plot", lambda it, al, path, title="": path)
    config: dict[str, object] = {"generator": name}
    config.update({"separate": True, "gan_iterations": 10} if separate else {"arch_warmup": 5})
    spec = MethodSpec(name=f"genseg-{name}", kind="genseg", description="x", config=config)
    profile = SMOKE.model_copy(update={"iterations": 30, "eval_every": 10, "gen_width": 4, "seg_lr": 1e-2})
    ctx = FitContext(device=CPU, seed=0, profile=profile, out_dir=tmp_path / "art")
    val = _data16(6, seed=1)
    fit = GenSegMethod(spec).fit(_data16(8, seed=0), val, ctx)
    chance = float(dice_per_case(torch.ones_like(val.masks, dtype=torch.bool), val.masks > 0.5).mean())
    assert fit.best_val_score > chance + 0.1, (fit.best_val_score, chance)
    assert fit.extras["generator"] == name
    if not separate:
        assert fit.extras["max_alpha_shift"] > 1e-6 and fit.trajectory["hypergrad_norm"][-1] > 0


def test_the_trainer_refuses_a_generator_with_running_statistics() -> None:
    gen = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.Sigmoid())
    seg = nn.Conv2d(3, 1, 1)
    with pytest.raises(ValueError, match="buffers"):
        GenSegTrainer(
            GenSegConfig(end_to_end=False), gen, PatchDiscriminator(3, (32, 32), width=2), seg, SMOKE
        )  # type: ignore[arg-type]


# --- what defines each generator -----------------------------------------------------------------


def test_spade_s_mask_enters_every_normalisation_not_only_the_input() -> None:
    """With the input convolution zeroed, the image still follows the mask: SPADE's norms carry it."""
    gen = _gen("spade")
    assert isinstance(gen, SPADEGenerator)
    with torch.no_grad():
        gen.fc.weight.zero_()  # type: ignore[operator]
        masks = _masks(2, (32, 32))
        out, flipped = gen(masks), gen(1 - masks)
    assert float((out - flipped).abs().max()) > 1e-4


def test_asapnet_renders_each_pixel_by_its_tile_s_mlp() -> None:
    """Pixelwise: one input pixel changed changes that output pixel only; the encoding varies tiles inside."""
    gen = _gen("asapnet", (64, 64))  # 64 px: tiles of 4 x 4
    assert isinstance(gen, ASAPNetGenerator) and gen.factor == 4
    m = _masks(1, (64, 64))
    seg = torch.cat([1 - m, m], 1)
    with torch.no_grad():
        params = gen.mlp_parameters(seg)
        base = gen.render(params, seg)
        changed = seg.clone()
        changed[:, :, 21, 38] = 1 - changed[:, :, 21, 38]
        diff = (gen.render(params, changed) - base).abs().amax(1)[0]
    assert float(diff[21, 38]) > 0
    diff[21, 38] = 0
    assert float(diff.max()) == 0.0, "another pixel moved: the tiles are not put back where they came from"
    tile = base[0, :, 0:4, 0:4]  # a background tile: constant input, only the position varies
    assert float((tile - tile[:, :1, :1]).abs().max()) > 1e-5


# --- run identity ----------------------------------------------------------------------------------


def test_the_generator_key_keeps_every_pix2pix_identity() -> None:
    default = GenSegConfig()
    assert "generator" not in default.resolved()
    assert GenSegConfig(generator="pix2pix").resolved() == default.resolved()
    spade = GenSegConfig(generator="spade").resolved()
    assert spade["generator"] == "spade" and "dropout" not in spade
    with pytest.raises(ValueError, match="dropout"):
        GenSegConfig(generator="asapnet", dropout=0.2)
