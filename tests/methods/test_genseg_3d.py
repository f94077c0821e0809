"""3D GenSeg stays finite: the CPU convolution backend, and a few real iterations of all three levels.

3D GenSeg used to end every run with "GAN loss became nan at iteration 3". The
cause was not the method: PyTorch's oneDNN CPU kernels return garbage weight
gradients (1e4 to 1e306 times the true value, different on every call) for
``conv3d`` / ``conv_transpose3d`` with the generator's fused 8x8x8 cells on an
8^3 input with 16+ channels, and Adam turned them into NaN weights in iteration
1. The trainer now runs every step under
:func:`genseg_bench.models.generator.conv_backend` (oneDNN off for 3D on the
CPU). These tests compare the gradients with float64 (which never takes the
oneDNN path), so they fail on the garbage itself, not only when it happens to
overflow: with ``conv_backend`` reverted to a no-op, both fail.
"""

from __future__ import annotations

import copy

import pytest
import torch

from genseg_bench.augment import AugmentConfig, augment_masks
from genseg_bench.methods.genseg import GenSegBatch, GenSegConfig, GenSegTrainer, generator_gan_loss
from genseg_bench.models.discriminator import PatchDiscriminator
from genseg_bench.models.generator import SearchableCell, SearchableGenerator, conv_backend
from genseg_bench.models.segmenters import build_segmenter
from genseg_bench.profiles import get_profile
from genseg_bench.specs import MethodSpec

CPU = torch.device("cpu")
SMOKE = get_profile("smoke")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _max_rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    """Largest |got - ref| relative to the reference's largest entry (inf for NaN/inf)."""
    err = (got.double() - ref).abs().max() / ref.abs().max().clamp_min(1e-30)
    return float(err) if torch.isfinite(err) else float("inf")


@pytest.mark.parametrize(
    ("transposed", "cin", "cout", "side"),
    [(False, 16, 32, 8), (True, 32, 16, 4)],
    ids=["conv-8cube-in", "upconv-8cube-out"],
)
def test_3d_cell_gradients_match_float64_under_the_trainers_backend(
    transposed: bool, cin: int, cout: int, side: int
) -> None:
    """The exact shapes oneDNN got wrong: a 3D cell's weight and alpha gradients equal float64's."""
    torch.manual_seed(0)
    cell = SearchableCell(cin, cout, transposed=transposed, mode="learnable", dims=3)
    with torch.no_grad():
        cell.alpha.normal_()  # type: ignore[union-attr]
    x = torch.randn(2, cin, side, side, side)
    ref = copy.deepcopy(cell).double()
    with conv_backend(3, CPU):
        out = cell(x)
        grads = torch.autograd.grad(out.square().sum(), list(cell.parameters()))
    ref_grads = torch.autograd.grad(ref(x.double()).square().sum(), list(ref.parameters()))
    for (name, _), g, r in zip(cell.named_parameters(), grads, ref_grads, strict=True):
        assert _max_rel_err(g, r) < 1e-4, name


def test_conv_backend_leaves_2d_and_restores_the_flag() -> None:
    """2D keeps torch's kernels (its outputs must not change); the 3D switch is undone on exit."""
    before = torch.backends.mkldnn.enabled
    with conv_backend(2, CPU):
        assert torch.backends.mkldnn.enabled == before
    with conv_backend(3, CPU):
        assert not torch.backends.mkldnn.enabled
    assert torch.backends.mkldnn.enabled == before


def _volumes(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ball masks and noisy volumes brighter inside them: ``N x 1 x size^3`` each."""
    g = torch.Generator().manual_seed(seed)
    zz, yy, xx = torch.meshgrid(*(torch.arange(size),) * 3, indexing="ij")
    c = torch.randint(size // 4, 3 * size // 4, (n, 3, 1, 1, 1), generator=g)
    r2 = (zz - c[:, 0]) ** 2 + (yy - c[:, 1]) ** 2 + (xx - c[:, 2]) ** 2
    masks = (r2 < (size // 5) ** 2).float()[:, None]
    images = (0.5 * torch.rand(n, 1, size, size, size, generator=g) + 0.4 * masks).clamp(0, 1)
    return images, masks


def _finite(tensors: object) -> bool:
    values = tensors.values() if isinstance(tensors, dict) else tensors
    return all(bool(torch.isfinite(t).all()) for t in values)  # type: ignore[union-attr]


def test_a_few_3d_genseg_iterations_stay_finite_through_all_three_levels() -> None:
    """genseg-unet's 3D setting at smoke size (32^3, smoke width 8, 3D UNet): 3 iterations, A level on.

    32^3 at width 8 puts the third encoder cell on an 8^3 input with 16 channels,
    one of the shapes oneDNN got wrong. Iteration 1's GAN-level gradient is also
    compared with float64 (before the fix it was off by 1e4x or more, or NaN).
    """
    size, bs = 32, 2
    cfg = GenSegConfig.from_spec(
        MethodSpec(
            name="genseg-3d",
            kind="genseg",
            description="3D smoke",
            config={"arch_warmup": 0, "dropout": 0.0, "augment": ["rotate", "flip"]},
        )
    )
    torch.manual_seed(0)
    gen = SearchableGenerator(1, (size,) * 3, width=SMOKE.gen_width, dims=3, dropout=0.0)
    disc = PatchDiscriminator(1, (size,) * 3, width=SMOKE.gen_width, dims=3)
    seg = build_segmenter("unet", 1, dims=3)
    trainer = GenSegTrainer(cfg, gen, disc, seg, SMOKE, record=True)
    images, masks = _volumes(4, size, seed=0)
    val_images, val_masks = _volumes(bs, size, seed=1)
    rng = torch.Generator().manual_seed(0)
    aug = AugmentConfig(ops=("rotate", "flip"))
    for it in range(1, 4):
        idx = torch.randperm(len(images), generator=rng)[:bs]
        batch = GenSegBatch(
            masks[idx], images[idx], augment_masks(masks[idx], aug, rng), val_images, val_masks
        )
        if it == 1:  # the GAN-level gradient g_G at the initial weights, in float64
            gen64, disc64 = copy.deepcopy(gen).double(), copy.deepcopy(disc).double()
            params64 = list(gen64.named_weight_parameters().values())
            m64, i64 = batch.masks.double(), batch.images.double()
            loss64 = generator_gan_loss(disc64, m64, gen64(m64), i64, cfg.lambda_l1)
            ref_grads = torch.autograd.grad(loss64, params64, allow_unused=True, materialize_grads=True)
        losses = trainer.end_to_end_step(batch)
        rec = trainer.record
        assert rec is not None
        assert _finite([losses.gan, losses.seg, losses.val]), (it, losses)
        assert _finite(rec.g_grads) and _finite(rec.d_grads) and _finite(rec.s_grads), it  # levels 1-2, H
        assert _finite(rec.arch_grads) and float(trainer.hypergrad_norm or 0.0) > 0, it  # level 3
        for model in (gen, disc, seg):
            assert _finite(dict(model.named_parameters())), (it, type(model).__name__)
        if it == 1:  # per tensor, with a floor at the scale of the largest gradient: the biases that
            # InstanceNorm cancels have a true gradient of 0 (float32 gives ~1e-8, float64 ~1e-16)
            scale = max(float(r.abs().max()) for r in ref_grads)
            for (name, g), r in zip(rec.g_grads.items(), ref_grads, strict=True):
                err = float((g.double() - r).abs().max())  # NaN fails the comparison too
                assert err <= 1e-3 * float(r.abs().max()) + 1e-6 * scale, (name, err)
