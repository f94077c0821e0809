"""3D GenSeg stays finite and right on oneDNN: the 3D cells, one whole step, a few real iterations.

3D GenSeg used to end every run with "GAN loss became nan at iteration 3". The
cause was not the method: PyTorch's oneDNN CPU kernels return garbage weight
gradients (1e4 to 1e306 times the true value, different on every call) for
``conv3d`` / ``conv_transpose3d`` *with padding* for the generator's fused
8x8x8 cells on an 8^3 input with 16+ channels, and Adam turned them into NaN
weights in iteration 1. The 3D cells now spell their padding out (a pad before,
a crop after: :class:`genseg_bench.models.generator.SearchableCell`), and the
same convolutions without padding are right on oneDNN. These tests run on
torch's default kernels (oneDNN where the CPU has it) and compare gradients
with float64 (which never takes the oneDNN path), so they fail on the garbage
itself, not only when it happens to overflow: with the cells' ``padding=``
restored, the cell tests and the whole-step test fail.
"""

from __future__ import annotations

import copy

import pytest
import torch

from genseg_bench.augment import AugmentConfig, augment_masks
from genseg_bench.methods.genseg import GenSegBatch, GenSegConfig, GenSegTrainer, generator_gan_loss
from genseg_bench.models.discriminator import PatchDiscriminator
from genseg_bench.models.generator import SearchableCell, SearchableGenerator
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
def test_3d_cell_gradients_match_float64_on_torchs_default_kernels(
    transposed: bool, cin: int, cout: int, side: int
) -> None:
    """The exact shapes oneDNN got wrong: a 3D cell's weight and alpha gradients equal float64's."""
    torch.manual_seed(0)
    cell = SearchableCell(cin, cout, transposed=transposed, mode="learnable", dims=3)
    with torch.no_grad():
        cell.alpha.normal_()  # type: ignore[union-attr]
    x = torch.randn(2, cin, side, side, side)
    ref = copy.deepcopy(cell).double()
    out = cell(x)
    grads = torch.autograd.grad(out.square().sum(), list(cell.parameters()))
    ref_grads = torch.autograd.grad(ref(x.double()).square().sum(), list(ref.parameters()))
    for (name, _), g, r in zip(cell.named_parameters(), grads, ref_grads, strict=True):
        assert _max_rel_err(g, r) < 1e-4, name


@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "upconv"])
def test_3d_cell_with_its_padding_spelled_out_is_the_padded_convolution(transposed: bool) -> None:
    """Pad-then-convolve (crop-after for the transposed cell) gives the definition's output and shape."""
    torch.manual_seed(0)
    cell = SearchableCell(4, 6, transposed=transposed, mode="learnable", dims=3).double()
    with torch.no_grad():
        cell.alpha.normal_()  # type: ignore[union-attr]
    x = torch.randn(
        2, 4, 6, 8, 10, dtype=torch.float64
    )  # three different sides: a crop on a wrong axis shows
    out, ref = cell(x), cell.forward_unfused(x)
    expect = tuple(2 * n for n in x.shape[2:]) if transposed else tuple(n // 2 for n in x.shape[2:])
    assert out.shape == ref.shape and tuple(out.shape[2:]) == expect
    assert torch.allclose(out, ref, atol=1e-10)


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


def test_one_whole_3d_genseg_step_matches_float64() -> None:
    """Every gradient of one end-to-end 3D step (G, H, S and the hypergradient in A) equals float64's.

    16^3 at width 16 puts ``enc1`` on an 8^3 input with 16 channels and ``dec2`` on the
    transposed shape producing it. The lookahead is the SGD rule: the default Adam rule's
    first step is ~sign(g), whose derivative float32 itself gets only to ~20 % at
    iteration 1 (float32 native kernels against float64: 0.18 of the largest entry),
    too loose to tell a wrong kernel from rounding; with SGD float32 agrees to ~2e-4.
    """
    size, bs = 16, 2
    cfg = GenSegConfig.from_spec(
        MethodSpec(
            name="genseg-3d",
            kind="genseg",
            description="3D step",
            config={"arch_warmup": 0, "dropout": 0.0, "augment": ["flip"], "lookahead": "sgd"},
        )
    )
    torch.manual_seed(0)
    gen = SearchableGenerator(1, (size,) * 3, width=16, dims=3, dropout=0.0)
    disc = PatchDiscriminator(1, (size,) * 3, width=16, dims=3)
    seg = build_segmenter("unet", 1, dims=3)
    images, masks = _volumes(bs, size, seed=0)
    val_images, val_masks = _volumes(bs, size, seed=1)
    aug = augment_masks(masks, AugmentConfig(ops=("flip",)), torch.Generator().manual_seed(0))
    records = []
    for dtype in (torch.float32, torch.float64):
        models = [copy.deepcopy(m).to(dtype) for m in (gen, disc, seg)]
        trainer = GenSegTrainer(cfg, *models, SMOKE, record=True)  # type: ignore[arg-type]
        trainer.end_to_end_step(
            GenSegBatch(*(t.to(dtype) for t in (masks, images, aug, val_images, val_masks)))
        )
        records.append(trainer.record)
    got, ref = records
    assert got is not None and ref is not None
    for field in ("g_grads", "d_grads", "s_grads", "arch_grads"):
        g, r = getattr(got, field), getattr(ref, field)
        g, r = (list(g.values()), list(r.values())) if isinstance(g, dict) else (list(g), list(r))
        scale = max(float(t.abs().max()) for t in r)
        assert scale > 0, field
        worst = max(float((a.double() - b).abs().max()) for a, b in zip(g, r, strict=True))
        assert worst <= 2e-3 * scale, (field, worst / scale)  # NaN fails too
