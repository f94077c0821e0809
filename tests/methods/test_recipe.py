"""The shared segmenter recipe: the loss, the input normalisation, the intensity augmentation and the
optimiser are what the profile says, for every method, GenSeg's hypergradient included.

Each test pins one field of the recipe against an independent computation, so dropping a term
(the Dice half of the loss), skipping the normalisation or ignoring the optimiser field fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from genseg_bench.catalog import Catalog
from genseg_bench.methods.base import FitContext, SegData
from genseg_bench.methods.config import GenSegConfig
from genseg_bench.methods.genseg import GenSegBatch, GenSegTrainer, hypergradient, unrolled_step
from genseg_bench.methods.recipe import InputNorm, Recipe, intensity_augment, seg_loss, with_input_norm
from genseg_bench.methods.registry import build_method
from genseg_bench.methods.training import make_seg_optimizer, prepare_model
from genseg_bench.models.discriminator import PatchDiscriminator
from genseg_bench.models.generator import SearchableGenerator
from genseg_bench.profiles import PROFILES, get_profile

SMOKE = get_profile("smoke")
RECIPE = SMOKE.model_copy(
    update={"seg_optimizer": "adam", "seg_loss": "bce+dice", "input_norm": "image", "intensity_aug": True}
)


def test_bce_dice_is_half_bce_plus_half_batch_soft_dice() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 5, 5, generator=g)
    masks = (torch.rand(2, 1, 5, 5, generator=g) > 0.5).float()
    p = 1 / (1 + torch.exp(-logits))
    bce = -(masks * torch.log(p) + (1 - masks) * torch.log(1 - p)).mean()
    dice = (2 * (p * masks).sum() + 1e-5) / (p.sum() + masks.sum() + 1e-5)
    assert torch.allclose(seg_loss(logits, masks, "bce"), bce, atol=1e-6)
    assert torch.allclose(seg_loss(logits, masks, "bce+dice"), 0.5 * bce + 0.5 * (1 - dice), atol=1e-6)
    with pytest.raises(ValueError, match="bce\\+dice"):
        seg_loss(logits, masks, "dice")


def test_image_normalisation_makes_the_network_blind_to_affine_intensity_changes() -> None:
    net = with_input_norm(nn.Conv2d(3, 1, 3, padding=1), RECIPE, torch.rand(4, 3, 8, 8))
    assert isinstance(net, InputNorm)
    x = torch.rand(2, 3, 8, 8)
    assert torch.allclose(net(x), net(2.5 * x + 0.3), atol=1e-4)
    assert with_input_norm(nn.Identity(), SMOKE, x) is not None  # none: the network itself
    assert not isinstance(with_input_norm(nn.Identity(), SMOKE, x), InputNorm)


def test_dataset_normalisation_uses_the_training_images_statistics() -> None:
    train = torch.rand(6, 2, 8, 8) * torch.tensor([1.0, 3.0]).view(1, 2, 1, 1) + 0.5
    net = with_input_norm(nn.Identity(), SMOKE.model_copy(update={"input_norm": "dataset"}), train)
    out = net(train)
    assert torch.allclose(out.mean(dim=(0, 2, 3)), torch.zeros(2), atol=1e-5)
    assert torch.allclose(out.std(dim=(0, 2, 3)), torch.ones(2), atol=1e-3)
    assert "mean" in dict(net.named_buffers())  # saved with the network's checkpoint


def test_intensity_augmentation_changes_images_and_keeps_their_gradient() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 8, 8, requires_grad=True)
    y = intensity_augment(x, g)
    changed = (y - x).flatten(1).abs().amax(1) > 1e-6
    # about 1 - 0.85 * 0.85 * 0.7 = 49 % of images get at least one of the three transforms
    assert 0.25 < float(changed.float().mean()) < 0.75
    y.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    assert Recipe(SMOKE).augment(x, g) is x  # off in the recipe: untouched, no random number drawn


@pytest.mark.parametrize(("name", "cls"), [("rmsprop", torch.optim.RMSprop), ("adam", torch.optim.Adam)])
def test_the_segmenter_optimiser_is_the_profiles(name: str, cls: type) -> None:
    opt, _ = make_seg_optimizer(
        nn.Linear(2, 1).parameters(), SMOKE.model_copy(update={"seg_optimizer": name})
    )
    assert type(opt) is cls


def test_every_method_trains_its_segmenter_with_the_recipe_loss(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Supervised, WGAN, semi-supervised and GenSeg all call L_seg with the profile's kind."""
    from genseg_bench.methods import recipe

    kinds: list[str] = []
    real = recipe.seg_loss

    def spy(logits: torch.Tensor, masks: torch.Tensor, kind: str = "bce") -> torch.Tensor:
        kinds.append(kind)
        return real(logits, masks, kind)

    monkeypatch.setattr(recipe, "seg_loss", spy)
    for module in ("genseg_bench.methods.semi", "genseg_bench.methods.genseg"):
        monkeypatch.setattr(f"{module}.seg_loss", spy)
    catalog = Catalog.load()
    g = torch.Generator().manual_seed(0)
    images = torch.rand(6, 3, 32, 32, generator=g)
    masks = torch.zeros(6, 1, 32, 32)
    masks[:, :, 8:20, 8:20] = 1
    data = SegData(images, masks, [f"c{i}" for i in range(6)])
    profile = RECIPE.model_copy(update={"iterations": 2, "eval_every": 2, "gen_width": 4})
    for name in ("unet", "unet-real-x2", "genseg-unet", "mcf-unet"):
        kinds.clear()
        ctx = FitContext(
            device=torch.device("cpu"), seed=0, profile=profile, out_dir=tmp_path, unlabelled=images
        )
        build_method(catalog.method(name)).fit(data, data, ctx)
        assert kinds and set(kinds) == {"bce+dice"}, f"{name}: L_seg kinds {set(kinds)}"


def test_prepare_model_puts_every_segmenter_behind_the_recipes_normalisation(tmp_path: Path) -> None:
    ctx = FitContext(device=torch.device("cpu"), seed=0, profile=RECIPE, out_dir=tmp_path)
    net = prepare_model(nn.Conv2d(1, 1, 1), ctx, 2, torch.rand(3, 1, 4, 4))
    assert isinstance(net, InputNorm)
    assert not isinstance(prepare_model(nn.Conv2d(1, 1, 1), ctx, 2), InputNorm)  # generators: untouched


def _tiny() -> tuple[SearchableGenerator, PatchDiscriminator, nn.Module, GenSegBatch]:
    torch.manual_seed(0)
    gen = SearchableGenerator(3, (16, 16), width=2, dropout=0.0)
    disc = PatchDiscriminator(3, (16, 16), width=2)
    with torch.no_grad():  # away from the symmetric uniform start, so every alpha has its own derivative
        for a in gen.arch_parameters():
            a.normal_(0.0, 0.5)
    seg = InputNorm(
        nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.BatchNorm2d(2), nn.Conv2d(2, 1, 1)), "image"
    )
    g = torch.Generator().manual_seed(1)
    masks = (torch.rand(3, 1, 16, 16, generator=g) > 0.6).float()
    images = torch.rand(3, 3, 16, 16, generator=g)
    val_masks = (torch.rand(3, 1, 16, 16, generator=g) > 0.5).float()
    batch = GenSegBatch(masks, images, masks.flip(3), torch.rand(3, 3, 16, 16, generator=g), val_masks)
    return gen, disc, seg, batch


def test_genseg_hypergradient_runs_through_the_recipe_loss_and_intensity_augmentation() -> None:
    """grad_A differs between BCE and BCE + Dice (the recipe's loss reaches level 3), and the
    intensity-augmented generated images keep their graph (A still gets a gradient)."""
    gen, disc, seg, batch = _tiny()
    kw = dict(eta_g=0.1, eta_s=0.5, gamma=1.0, lambda_l1=100.0)
    arch = gen.arch_parameters()
    plain = hypergradient(unrolled_step(gen, disc, seg, batch, **kw), arch)  # type: ignore[arg-type]
    recipe = Recipe(RECIPE)
    dice = hypergradient(unrolled_step(gen, disc, seg, batch, loss=recipe.loss, **kw), arch)  # type: ignore[arg-type]
    flat = lambda gs: torch.cat([g.flatten() for g in gs])  # noqa: E731
    assert float((flat(plain) - flat(dice)).norm()) > 1e-3 * float(flat(plain).norm())
    g = torch.Generator().manual_seed(2)
    aug = hypergradient(
        unrolled_step(
            gen, disc, seg, batch, loss=recipe.loss, intensity=lambda x: intensity_augment(x, g), **kw
        ),  # type: ignore[arg-type]
        arch,
    )
    assert all(torch.isfinite(a).all() for a in aug) and float(flat(aug).norm()) > 0


def test_genseg_lookahead_of_an_adam_segmenter_is_adams_next_step() -> None:
    """With ``seg_optimizer = "adam"`` S' is the step torch's Adam takes (not RMSprop's formula)."""
    gen, disc, seg, batch = _tiny()
    trainer = GenSegTrainer(
        GenSegConfig(arch_warmup=0), gen, disc, seg, RECIPE, intensity_rng=torch.Generator()
    )
    assert isinstance(trainer.opt_s, torch.optim.Adam)
    _, s_rule = trainer.lookahead_rules()
    params = list(seg.parameters())
    grads = [torch.randn_like(p) for p in params]
    predicted = s_rule(params, grads)
    for p, gr in zip(params, grads, strict=True):
        p.grad = gr.clone()
    trainer.opt_s.step()
    for p, q in zip(params, predicted, strict=True):
        assert torch.allclose(p.detach(), q.detach(), atol=1e-6)


def test_cpu_profile_records_its_calibrated_recipe_and_paper_keeps_the_text() -> None:
    cpu, paper = PROFILES["cpu"], PROFILES["paper"]
    assert (cpu.seg_optimizer, cpu.seg_loss, cpu.input_norm) == ("adam", "bce+dice", "image")
    assert (paper.seg_optimizer, paper.seg_loss, paper.input_norm, paper.intensity_aug) == (
        "rmsprop",
        "bce",
        "none",
        False,
    )


def test_the_run_header_names_the_recipe_and_flags_the_paper_profile_as_uncalibrated() -> None:
    from genseg_bench.profiles import recipe_text

    assert recipe_text(PROFILES["cpu"]) == (
        "segmenter recipe: adam 0.001, bce+dice, per-image z-score, no intensity augmentation"
    )
    assert "not the calibrated recipe" in recipe_text(
        PROFILES["paper"]
    ) and "rmsprop 1e-05, bce" in recipe_text(PROFILES["paper"])
