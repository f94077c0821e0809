"""GenSeg does what the paper says: proofs on tiny models, plus the method's runs and failure modes.

(a) the hypergradient grad_A equals central finite differences of the unrolled objective
    L_val(S'(G'(A))) (float64);
(b) the alphas move in a real fit, and the generated images receive gradient from the
    segmentation losses (they are not detached, unlike the public reference code);
(c) the final alphas per cell land in the run result written by the runner.
Plus: the fused one-convolution cell equals the three-branch definition, every variant
builds and runs, and bad input fails clearly or is recorded as a failed run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn

from genseg_bench.catalog import Catalog
from genseg_bench.data.store import Store
from genseg_bench.errors import DataError, SpecError
from genseg_bench.methods.base import FitContext, SegData
from genseg_bench.methods.genseg import (
    GenSegBatch,
    GenSegConfig,
    GenSegMethod,
    GenSegTrainer,
    hypergradient,
    unrolled_step,
)
from genseg_bench.models import discriminator as conditional_gan
from genseg_bench.models.discriminator import PatchDiscriminator
from genseg_bench.models.generator import SearchableCell, SearchableGenerator
from genseg_bench.profiles import get_profile
from genseg_bench.runner import run_grid
from genseg_bench.specs import MethodSpec

CPU = torch.device("cpu")
SMOKE = get_profile("smoke")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _tiny_data(n: int, size: int = 32, seed: int = 0, empty: bool = False) -> SegData:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centres = torch.randint(size // 4, 3 * size // 4, (n, 2), generator=g)
    masks = ((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2 < (size // 5) ** 2).float()
    masks = masks[:, None] * (0.0 if empty else 1.0)
    images = (0.5 * torch.rand(n, 3, size, size, generator=g) + 0.4 * masks).clamp(0, 1)
    return SegData(images, masks, [f"case{i}" for i in range(n)])


def _ctx(tmp_path: Path, **updates: object) -> FitContext:
    return FitContext(device=CPU, seed=0, profile=SMOKE.model_copy(update=updates), out_dir=tmp_path / "art")


def _tiny_segmenter(dtype: torch.dtype) -> nn.Module:
    """Conv-BN-Tanh-Conv: BatchNorm to exercise its handling, smooth so finite differences are clean."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Tanh(), nn.Conv2d(4, 1, 3, padding=1)
    ).to(dtype)


def _tiny_models(dtype: torch.dtype) -> tuple[SearchableGenerator, PatchDiscriminator, nn.Module]:
    torch.manual_seed(0)
    gen = SearchableGenerator(3, (16, 16), width=2, dropout=0.0).to(dtype)
    disc = PatchDiscriminator(3, (16, 16), width=2).to(dtype)
    with torch.no_grad():  # away from the symmetric uniform start, so every alpha has its own derivative
        for a in gen.arch_parameters():
            a.normal_(0.0, 0.5)
    return gen, disc, _tiny_segmenter(dtype)


def _tiny_batch(dtype: torch.dtype) -> GenSegBatch:
    g = torch.Generator().manual_seed(1)
    masks = (torch.rand(3, 1, 16, 16, generator=g) > 0.6).to(dtype)
    images = torch.rand(3, 3, 16, 16, generator=g).to(dtype)
    val_masks = (torch.rand(3, 1, 16, 16, generator=g) > 0.5).to(dtype)
    val_images = torch.rand(3, 3, 16, 16, generator=g).to(dtype)
    return GenSegBatch(masks, images, torch.flip(masks, [3]), val_images, val_masks)


# --- the searchable cells -------------------------------------------------------------------


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("mode", ["learnable", "fixed", "single"])
def test_fused_cell_equals_the_alpha_weighted_sum_of_its_branches(transposed: bool, mode: str) -> None:
    torch.manual_seed(0)
    cell = SearchableCell(3, 5, transposed=transposed, mode=mode).double()  # type: ignore[arg-type]
    if cell.alpha is not None:
        with torch.no_grad():
            cell.alpha.normal_()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    fused, ref = cell(x), cell.forward_unfused(x)
    assert fused.shape == ((2, 5, 16, 16) if transposed else (2, 5, 4, 4))
    torch.testing.assert_close(fused, ref, rtol=1e-12, atol=1e-12)
    if cell.alpha is not None:  # the alphas get the same gradient both ways
        (ga,) = torch.autograd.grad(fused.square().sum(), cell.alpha)
        (gb,) = torch.autograd.grad(ref.square().sum(), cell.alpha)
        torch.testing.assert_close(ga, gb, rtol=1e-10, atol=1e-12)


def test_generator_modes_depths_and_odd_sizes() -> None:
    torch.manual_seed(0)
    for size, depth in ((32, 5), (256, 8), (40, 5)):
        gen = SearchableGenerator(3, (size, size), width=2)
        out = gen(torch.zeros(1, 1, size, size)).detach()
        assert gen.depth == depth and out.shape == (1, 3, size, size) and 0 <= float(out.min()) <= 1
        assert len(gen.arch_parameters()) == 2 * depth
        assert all(a.shape == (3,) for a in gen.arch_parameters())
        assert not {id(p) for p in gen.arch_parameters()} & {id(p) for p in gen.weight_parameters()}
    assert not SearchableGenerator(1, (32, 32), width=2, mode="fixed").arch_parameters()
    single = SearchableGenerator(1, (32, 32), width=2, mode="single")
    assert single.alphas()["dec0"] == {"4-2-1": 1.0}
    vol = SearchableGenerator(1, (12, 20, 16), width=2, dims=3)(torch.zeros(1, 1, 12, 20, 16))
    assert vol.shape == (1, 1, 12, 20, 16)


# --- (a) hypergradient vs. finite differences ----------------------------------------------


def test_hypergradient_matches_central_finite_differences() -> None:
    """grad_A of L_val(S'(G'(A))) by autograd == central differences, every alpha, float64.

    Bound: relative error (L2 over all 24 alphas) < 1e-5. Central differences with
    h = 1e-5 have truncation error ~h^2 |f'''| / 6 ~ 1e-10 and rounding error ~eps |f| / h
    ~ 1e-16 * 0.7 / 1e-5 ~ 1e-11 per coordinate, against a gradient of norm ~6e-4: the
    expected relative error is ~1e-7 (measured ~4e-8). A float32 evaluation anywhere, a
    detached generated image or a missing path (through G' or through the discriminator's
    weights) gives errors of order 1, so 1e-5 separates right from wrong by orders of magnitude.
    """
    gen, disc, seg = _tiny_models(torch.float64)
    batch = _tiny_batch(torch.float64)
    kw = dict(eta_g=0.1, eta_s=0.5, gamma=1.0, lambda_l1=100.0)
    arch = gen.arch_parameters()
    assert sum(a.numel() for a in arch) == 24

    step = unrolled_step(gen, disc, seg, batch, **kw)  # type: ignore[arg-type]
    analytic = torch.cat([g.flatten() for g in hypergradient(step, arch)])

    base = torch.cat([a.detach().flatten() for a in arch])

    def objective(values: torch.Tensor) -> float:
        with torch.no_grad():
            offset = 0
            for a in arch:
                a.copy_(values[offset : offset + a.numel()])
                offset += a.numel()
        loss = unrolled_step(gen, disc, seg, batch, create_graph=False, **kw).val_loss  # type: ignore[arg-type]
        assert loss is not None and loss.dtype == torch.float64
        return float(loss.detach())

    h = 1e-5
    numeric = torch.zeros_like(base)
    for i in range(base.numel()):
        e = torch.zeros_like(base)
        e[i] = h
        numeric[i] = (objective(base + e) - objective(base - e)) / (2 * h)
    objective(base)
    rel = float((analytic - numeric).norm() / numeric.norm())
    assert float(numeric.norm()) > 1e-5, "the objective must depend on A for the test to mean anything"
    assert rel < 1e-5, f"hypergradient relative error {rel:.2e} (bound 1e-5)"

    # the path through G' = G - eta_g grad_G L_gan carries most of it: without it grad_A changes
    step0 = unrolled_step(gen, disc, seg, batch, **{**kw, "eta_g": 0.0})  # type: ignore[arg-type]
    no_unroll = torch.cat([g.flatten() for g in hypergradient(step0, arch)])
    assert float((analytic - no_unroll).norm() / analytic.norm()) > 0.1


# --- (b) generated images get gradient; alphas move ------------------------------------------


def test_generated_images_receive_gradient_from_the_segmentation_losses() -> None:
    gen, disc, seg = _tiny_models(torch.float32)
    step = unrolled_step(
        gen, disc, seg, _tiny_batch(torch.float32), eta_g=1e-2, eta_s=1e-1, gamma=1.0, lambda_l1=100.0
    )
    assert step.generated.requires_grad, "generated images must not be detached"
    assert step.val_loss is not None
    (from_train,) = torch.autograd.grad(step.seg_loss, step.generated, retain_graph=True)
    (from_val,) = torch.autograd.grad(step.val_loss, step.generated, retain_graph=True)
    assert float(from_train.abs().sum()) > 0 and float(from_val.abs().sum()) > 0
    grads = hypergradient(step, gen.arch_parameters())
    assert all(torch.isfinite(g).all() and float(g.abs().sum()) > 0 for g in grads)


def test_segmenter_running_statistics_never_see_the_validation_batch() -> None:
    gen, disc, seg = _tiny_models(torch.float32)
    batch = _tiny_batch(torch.float32)
    bn = seg[1]
    assert isinstance(bn, nn.BatchNorm2d)
    unrolled_step(gen, disc, seg, batch, eta_g=1e-2, eta_s=1e-1, gamma=1.0, lambda_l1=100.0)
    assert int(bn.num_batches_tracked) == 2  # the generated and the real forward, not the validation one


def traj_start(alphas: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """The alphas before any A step: softmax of zero logits (float32), for every cell of ``alphas``."""
    third = float(torch.softmax(torch.zeros(3), 0)[0])
    return {cell: dict.fromkeys(ops, third) for cell, ops in alphas.items()}


@pytest.mark.parametrize("lookahead", ["optimizer", "sgd"])
def test_architecture_warmup_holds_A_then_the_search_moves_it(lookahead: str) -> None:
    """No A step (and no hypergradient) in the first ``arch_warmup`` iterations; then A moves every step."""
    gen, disc, seg = _tiny_models(torch.float32)
    cfg = GenSegConfig(lookahead=lookahead)  # type: ignore[arg-type]
    assert cfg.arch_warmup == 20  # the default (module docstring, *Warm-up*)
    cfg = cfg.model_copy(update={"arch_warmup": 2})
    trainer = GenSegTrainer(cfg, gen, disc, seg, SMOKE)
    start = [a.detach().clone() for a in gen.arch_parameters()]
    g0 = [p.detach().clone() for p in gen.weight_parameters()]
    for it in (1, 2, 3):
        trainer.end_to_end_step(_tiny_batch(torch.float32))
        moved = any(not torch.equal(a, b) for a, b in zip(gen.arch_parameters(), start, strict=True))
        assert moved == (it > 2), f"iteration {it}: A moved = {moved}"
        assert (trainer.hypergrad_norm is None) == (it <= 2)
    assert trainer.hypergrad_norm is not None and float(trainer.hypergrad_norm) > 0
    assert all(not torch.equal(p, q) for p, q in zip(gen.weight_parameters(), g0, strict=True)), "G trains"


# --- (c) through the runner: alphas in the result, the PNG grid beside it ------------------


def test_genseg_run_via_the_runner_stores_moved_alphas_and_a_pair_grid(
    catalog: Catalog, store: Store, tmp_path: Path
) -> None:
    # genseg-unet with a warm-up of 3 of the 6 smoke iterations (the default 20 would take 20 iterations;
    # test_architecture_warmup_* covers it): no A step before the first validation, three after
    spec = catalog.method("genseg-unet")
    spec = spec.model_copy(update={"name": "genseg-unet-w3", "config": {**spec.config, "arch_warmup": 3}})
    cat = dataclasses.replace(catalog, methods={**catalog.methods, spec.name: spec})
    s = run_grid(cat, "synthetic-genseg", [spec.name], [8], [0], SMOKE, store, tmp_path, CPU)
    (r,) = s.ran
    assert r.status == "ok", r.error
    alphas = r.extras["alphas"]
    assert set(alphas) == {f"enc{i}" for i in range(5)} | {f"dec{i}" for i in range(5)}  # 32 px: 5 levels
    for cell in alphas.values():
        assert set(cell) == {"4-2-1", "6-2-2", "8-2-3"}
        assert sum(cell.values()) == pytest.approx(1.0)
    moved = max(abs(v - 1 / 3) for cell in alphas.values() for v in cell.values())
    assert moved > 1e-5, "the architecture weights must move during training"
    assert r.extras["mode"] == "end-to-end" and "softmax" in r.extras["alphas_form"]
    assert set(r.test_sets) == {"synthetic-a", "synthetic-b"}
    grid, plot = r.artifacts
    assert grid.endswith("generated_pairs.png") and (tmp_path / grid).is_file()
    assert plot.endswith("alphas.png") and (tmp_path / plot).is_file()
    # the architecture's trajectory: one alpha table and one hypergradient norm per validation
    traj = r.trajectory
    assert traj["iteration"] == [3, 6] and len(traj["alphas"]) == len(traj["hypergrad_norm"]) == 2
    assert traj["alphas"][0] == traj_start(alphas) and traj["alphas"][-1] == alphas
    assert traj["hypergrad_norm"][0] is None and traj["hypergrad_norm"][1] > 0  # None: in warm-up
    assert r.extras["max_alpha_shift"] == pytest.approx(moved, abs=1e-6)
    assert r.extras["lookahead"] == "optimizer" and r.extras["arch_warmup"] == 3


# --- variants ---------------------------------------------------------------------------------


def test_every_genseg_spec_has_a_valid_config(catalog: Catalog) -> None:
    specs = [m for m in catalog.methods.values() if m.kind == "genseg"]
    assert len(specs) >= 22
    modes = {m.name: GenSegConfig.from_spec(m).mode for m in specs}
    assert modes["genseg-unet"] == "end-to-end" and modes["separate-unet"] == "separate"
    assert modes["genseg-unet-single-branch"] == modes["genseg-unet-fixed-multibranch"] == "separate"
    assert GenSegConfig.from_spec(catalog.method("genseg-unet-rot0")).augment == ["flip", "translate"]
    assert GenSegConfig.from_spec(catalog.method("genseg-deeplab-rot5")).rotate_degrees == 5.0


@pytest.mark.parametrize(
    ("name", "mode", "first_alphas"),
    [
        ("separate-unet", "separate", {"4-2-1": 1 / 3, "6-2-2": 1 / 3, "8-2-3": 1 / 3}),
        ("genseg-unet-fixed-multibranch", "separate", {"4-2-1": 1.0, "6-2-2": 1.0, "8-2-3": 1.0}),
        ("genseg-unet-single-branch", "separate", {"4-2-1": 1.0}),
        ("genseg-deeplab", "end-to-end", None),
    ],
)
def test_variants_build_and_run(
    catalog: Catalog, tmp_path: Path, name: str, mode: str, first_alphas: dict[str, float] | None
) -> None:
    spec = catalog.method(name)
    extra = {"gan_iterations": 2} if mode == "separate" else {"arch_warmup": 0}  # 2 iterations: both search
    spec = spec.model_copy(update={"config": {**spec.config, **extra}})
    fit = GenSegMethod(spec).fit(_tiny_data(6), _tiny_data(3, seed=1), _ctx(tmp_path, iterations=2))
    assert fit.extras["mode"] == mode and fit.iterations == 2
    if first_alphas is not None:
        assert fit.extras["alphas"]["enc0"] == pytest.approx(first_alphas)
    if mode == "separate":
        assert fit.extras["gan_iterations"] == 2
    assert Path(fit.artifacts[0]).is_file()
    probs = fit.predictor.predict(_tiny_data(2, seed=2).images)
    assert probs.shape == (2, 1, 32, 32)


def test_pretrained_regime_starts_the_end_to_end_stage_from_the_pretrained_gan(
    catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """genseg-unet-pretrained: G and H after the GAN-only stage are the weights the first three-level
    step starts from, the alphas are still uniform there, G's optimiser starts fresh, and the search moves A."""
    spec = catalog.method("genseg-unet-pretrained")
    spec = spec.model_copy(update={"config": {**spec.config, "gan_iterations": 3, "arch_warmup": 0}})
    seen: dict[str, object] = {}
    gan_step, e2e_step = GenSegTrainer.gan_step, GenSegTrainer.end_to_end_step

    def spy_gan(self: GenSegTrainer, masks: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        out = gan_step(self, masks, images)
        seen["after_gan"] = (
            {n: p.detach().clone() for n, p in self.gen.named_parameters()},
            [p.detach().clone() for p in self.d_params],
        )
        seen["gan_steps"] = int(seen.get("gan_steps", 0)) + 1  # type: ignore[call-overload]
        return out

    def spy_e2e(self: GenSegTrainer, batch: GenSegBatch, timer: object = None) -> object:
        if "first_e2e" not in seen:
            seen["first_e2e"] = (
                {n: p.detach().clone() for n, p in self.gen.named_parameters()},
                [p.detach().clone() for p in self.d_params],
            )
            seen["opt_g_state"] = len(self.opt_g.state)
        return e2e_step(self, batch)

    build = GenSegMethod.build

    def spy_build(self: GenSegMethod, *args: object) -> object:
        models = build(self, *args)  # type: ignore[arg-type]
        seen["initial"] = {n: p.detach().clone() for n, p in models[0].named_parameters()}
        return models

    monkeypatch.setattr(GenSegTrainer, "gan_step", spy_gan)
    monkeypatch.setattr(GenSegTrainer, "end_to_end_step", spy_e2e)
    monkeypatch.setattr(GenSegMethod, "build", spy_build)
    fit = GenSegMethod(spec).fit(_tiny_data(6), _tiny_data(3, seed=1), _ctx(tmp_path, iterations=2))
    initial: dict[str, torch.Tensor] = seen["initial"]  # type: ignore[assignment]
    assert seen["gan_steps"] == 3 and fit.extras["gan_iterations"] == 3
    assert fit.budget["gan_pretraining_iterations"] == 3 and "gan_pretraining" in fit.extras
    (g_pre, d_pre), (g_e2e, d_e2e) = seen["after_gan"], seen["first_e2e"]  # type: ignore[misc]
    for name, w in g_pre.items():
        assert torch.equal(g_e2e[name], w), f"{name}: the end-to-end stage must start from the pre-trained G"
    assert all(torch.equal(a, b) for a, b in zip(d_pre, d_e2e, strict=True))
    weights = [n for n in g_pre if not n.endswith("alpha")]
    assert any(not torch.equal(g_pre[n], initial[n]) for n in weights), "pre-training must move G"
    for name in g_pre:
        if name.endswith("alpha"):
            assert torch.equal(g_pre[name], initial[name]), "the GAN-only stage must leave the alphas uniform"
    assert seen["opt_g_state"] == 0, "the end-to-end stage builds G's optimiser afresh (weights are loaded)"
    assert fit.extras["mode"] == "end-to-end"
    moved = max(abs(v - 1 / 3) for cell in fit.extras["alphas"].values() for v in cell.values())
    assert moved > 1e-6, "the architecture weights must still move in the end-to-end stage"


def test_pretrain_leaves_the_paper_identity_alone(catalog: Catalog) -> None:
    """``pretrain`` appears in a config's identity only when true: the paper's specs keep their run ids."""
    paper = GenSegConfig.from_spec(catalog.method("genseg-unet")).resolved()
    public = GenSegConfig.from_spec(catalog.method("genseg-unet-pretrained")).resolved()
    assert "pretrain" not in paper and public["pretrain"] is True
    assert {k: v for k, v in public.items() if k != "pretrain"} == paper


def test_joint_mode_without_the_architecture_level(tmp_path: Path) -> None:
    spec = MethodSpec(name="g", kind="genseg", description="joint", config={"end_to_end": False})
    fit = GenSegMethod(spec).fit(_tiny_data(6), _tiny_data(3, seed=1), _ctx(tmp_path, iterations=2))
    assert fit.extras["mode"] == "joint"
    assert fit.extras["alphas"]["dec0"] == pytest.approx({"4-2-1": 1 / 3, "6-2-2": 1 / 3, "8-2-3": 1 / 3})


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"gamm": 1.0}, "gamm"),
        ({"separate": True, "end_to_end": True}, "end_to_end"),
        ({"cells": "fixed", "end_to_end": True}, "no alphas"),
        ({"augment": ["rotate", "shear"]}, "shear"),
        ({"gan_iterations": 5}, "separate"),
        ({"pretrain": True, "separate": True}, "pretrain"),
        ({"pretrain": True, "cells": "fixed"}, "pretrain"),
        ({"lookahead": "adam"}, "lookahead"),
    ],
)
def test_bad_config_is_a_spec_error_naming_the_key(config: dict[str, object], match: str) -> None:
    spec = MethodSpec(name="bad-genseg", kind="genseg", description="x", config=config)
    with pytest.raises(SpecError, match=match) as err:
        GenSegConfig.from_spec(spec)
    assert "bad-genseg" in str(err.value)


# --- bad input --------------------------------------------------------------------------------


def test_masks_without_foreground_are_a_clear_data_error(tmp_path: Path) -> None:
    spec = MethodSpec(name="genseg-x", kind="genseg", description="x")
    with pytest.raises(DataError, match="no|none") as err:
        GenSegMethod(spec).fit(_tiny_data(4, empty=True), _tiny_data(2), _ctx(tmp_path))
    msg = str(err.value)
    assert "foreground" in msg and "case0" in msg and "binarisation" in msg


def test_validation_set_smaller_than_a_batch(tmp_path: Path) -> None:
    spec = MethodSpec(name="genseg-x", kind="genseg", description="x")
    fit = GenSegMethod(spec).fit(_tiny_data(6), _tiny_data(1, seed=1), _ctx(tmp_path, iterations=2))
    assert 0.0 <= fit.best_val_score <= 1.0 and fit.best_iteration in (2,)


def test_nan_gan_loss_is_recorded_as_a_failed_run_and_the_grid_goes_on(
    catalog: Catalog, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = conditional_gan.generator_gan_loss

    def nan_loss(*args: object, **kwargs: object) -> torch.Tensor:
        return real(*args, **kwargs) * float("nan")  # type: ignore[arg-type]

    # where the generators' default level 1 (MaskToImageGenerator.generator_loss) looks it up
    monkeypatch.setattr(conditional_gan, "generator_gan_loss", nan_loss)
    s = run_grid(catalog, "synthetic-genseg", ["genseg-unet", "unet"], [8], [0], SMOKE, store, tmp_path, CPU)
    by_method = {r.spec.method: r for r in s.ran}
    failed = by_method["genseg-unet"]
    assert failed.status == "failed" and "TrainingDiverged" in (failed.error or "")
    assert "GAN loss" in (failed.error or "")
    assert by_method["unet"].status == "ok"
