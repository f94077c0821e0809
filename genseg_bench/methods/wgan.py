"""WGAN baselines: image and mask generated together from noise, then a segmenter on real + generated pairs.

**What it is.** Neff et al. (2018, "Generative adversarial networks to
synthetically augment data for deep learning based image segmentation", OAGM;
the method of their 2017 "GAN based synthesis for supervised medical image
segmentation") train a Wasserstein GAN whose generator outputs the mask as one
more channel of the image, on the labelled pairs only, and add its samples to
the segmenter's training set. The paper's Fig. 6 compares GenSeg against this
(``wgan-unet``, ``wgan-deeplab``); its Fig. 9e-f ablation "Simultaneous" is the
same idea with WGAN-GP (``wgan-gp-unet``). One class serves both:
``penalty = "clip"`` or ``"gp"`` (:class:`~genseg_bench.methods.config.WGANConfig`).

**The GAN level**, followed from the papers' algorithms, with the public code
read to check the details (rewritten here, not copied):

* ``"clip"``: Arjovsky et al. 2017, Algorithm 1, and their code
  (github.com/martinarjovsky/WassersteinGAN, ``main.py``): per generator step,
  ``n_critic`` = 5 critic steps on fresh real batches, each minimising
  ``mean C(G(z)) - mean C(x)`` by RMSprop (lr 5e-5), after which every critic
  parameter (BatchNorm's included, as their code clamps ``netD.parameters()``) is
  clipped to [-c, c], c = 0.01; then one generator step minimising
  ``-mean C(G(z))``. Clipping follows each critic step (Algorithm 1), so the
  critic the generator trains against is always inside the box; the code's
  extra 100 critic steps for the first 25 and every 500th generator step are not
  in Algorithm 1 and are left out.
* ``"gp"``: Gulrajani et al. 2017, Algorithm 1 (and
  github.com/igul222/improved_wgan_training): the same loop without clipping,
  the critic loss plus ``lambda * E[(||grad_x C(x_hat)||_2 - 1)^2]`` at random
  interpolates ``x_hat = e x + (1 - e) G(z)``, ``e ~ U[0, 1]`` per sample,
  lambda = 10, Adam (lr 1e-4, betas (0, 0.9)) for both networks, and layer
  normalisation instead of BatchNorm in the critic (their Sec. 4: the penalty is
  per sample; :mod:`genseg_bench.models.wgan_nets`).

The networks are the DCGAN pair of the WGAN code, with ``C + 1`` channels (the
image's and the mask's) and built for any 2D or 3D shape
(:mod:`genseg_bench.models.wgan_nets`); their width is the profile's
``gen_width``, the width GenSeg's generator gets, so both generators scale with
the profile alike.

**Staging within the suite's budget.** The GAN cannot be tuned by the segmenter
(nothing in Neff et al. connects them), so it trains first, for
``gan_steps_per_iteration`` x the profile's ``iterations`` generator steps (1 by
default, the budget GenSeg's Separate gives its GAN; 5 in ``wgan-unet``, whose
weight-clipped samples are still noise after 1x: ``benchmarks/wgan_budget.py``)
or a fixed ``gan_iterations``, on batches of the profile's size drawn
from the training pairs only: the validation pairs never reach the GAN. Then it
is frozen and ``samples`` pairs are drawn once (a fixed synthetic set, as Neff
et al. generate one), their mask channel thresholded at 0.5 so generated masks
are binary like real ones. Sampling runs the generator in training mode (batch
statistics, batches of the profile's size) as the WGAN code always does: its
BatchNorm running averages lag a generator that changes every step. The
segmenter then trains by the supervised baselines' rules
(:mod:`genseg_bench.methods.supervised`: the same optimiser, scheduler, loss,
validation interval and best-validation checkpoint through
:class:`~genseg_bench.methods.training.TrainingMonitor`), each update on a real
batch (optionally augmented, ``augment``) plus a batch of generated pairs as a
second forward whose loss is added, the way GenSeg's generated half and the
``real x2`` control are added. So the segmenter gets the same updates and sees
as many images per update as GenSeg's does, and the budget records both: updates,
real and generated images seen, GAN pre-training iterations and critic steps.
The segmenter is built first and the GAN draws from its own random stream
(:data:`GAN_STREAM`), so a seed gives the segmenter the initial weights and the
real batches that the supervised baseline of that seed gets: across seeds the
comparison is paired, and ``samples = 0`` is the supervised baseline exactly.

**What differs from the paper's Simultaneous arm (Fig. 9e-f).** The paper puts
its multi-branch cells into WGAN-GP and trains it with GenSeg's end-to-end
(three-level) optimisation. Here WGAN-GP is the plain DCGAN-style WGAN-GP,
trained first and frozen: simultaneous generation without the architecture
search, the staging of Neff et al. and of GenSeg's Separate.

Artifacts: a PNG of generated pairs (``wgan_samples.png``: masks on top, images
below), so a collapsed or mismatched generator is visible in every result.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from genseg_bench.augment import augment_pair
from genseg_bench.methods.base import FitContext, FitResult, Method, SegData
from genseg_bench.methods.config import WGANConfig, parse_config
from genseg_bench.methods.recipe import Recipe
from genseg_bench.methods.training import (
    ModulePredictor,
    TrainingMonitor,
    autocast,
    check_finite,
    eval_interval,
    make_seg_optimizer,
    prepare_model,
    sample_batch,
    seed_everything,
    start_lrs,
)
from genseg_bench.models.segmenters import build_segmenter
from genseg_bench.models.wgan_nets import PairCritic, PairGenerator, decode_pairs, encode_pairs

SAMPLES_FILE = "wgan_samples.png"
GAN_STREAM = 104_729
"""Offset of the seed of the GAN's random stream (its batches, noise, interpolates and the draws from
the generated pool), so that the segmenter's real batches are the supervised baselines' draws."""
GP_BETAS = (0.0, 0.9)
"""Adam's betas of WGAN-GP (Gulrajani et al. 2017, Algorithm 1)."""


def gradient_penalty(
    critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, rng: torch.Generator | None = None
) -> torch.Tensor:
    """``E[(||grad_x C(x_hat)||_2 - 1)^2]`` at ``x_hat = e real + (1 - e) fake``, ``e ~ U[0, 1]`` per sample.

    The norm is over every channel and pixel of a sample; the graph is kept
    (``create_graph``) so the penalty's gradient reaches the critic's weights.
    """
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    e = torch.rand(shape, generator=rng, device=real.device, dtype=real.dtype)
    x_hat = (e * real + (1 - e) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1).square().mean()


@dataclass
class CriticLosses:
    """One critic objective: ``loss`` = ``-wasserstein`` (+ ``lambda * penalty`` under WGAN-GP)."""

    loss: torch.Tensor
    wasserstein: torch.Tensor
    """``mean C(real) - mean C(fake)``: the critic's estimate of the Wasserstein-1 distance (up to scale)."""
    penalty: torch.Tensor


class WGANTrainer:
    """The GAN level of both variants: critic steps (clipped or penalised) and generator steps."""

    def __init__(self, cfg: WGANConfig, gen: PairGenerator, critic: PairCritic, rng: torch.Generator) -> None:
        self.cfg, self.gen, self.critic, self.rng = cfg, gen, critic, rng
        lr = cfg.gan_lr
        if cfg.penalty == "gp":
            self.opt_g: torch.optim.Optimizer = torch.optim.Adam(gen.parameters(), lr=lr, betas=GP_BETAS)
            self.opt_c: torch.optim.Optimizer = torch.optim.Adam(critic.parameters(), lr=lr, betas=GP_BETAS)
        else:
            self.opt_g = torch.optim.RMSprop(gen.parameters(), lr=lr)
            self.opt_c = torch.optim.RMSprop(critic.parameters(), lr=lr)
        self.critic_steps = 0
        self.generator_steps = 0

    def _noise(self, n: int, device: torch.device) -> torch.Tensor:
        return self.gen.noise(n, self.rng, device)

    def critic_loss(self, real: torch.Tensor, fake: torch.Tensor) -> CriticLosses:
        """The critic's objective on encoded real and generated samples (real and fake in separate forwards)."""
        wasserstein = self.critic(real).mean() - self.critic(fake).mean()
        lam = self.cfg.penalty_weight
        if lam is None:
            return CriticLosses(-wasserstein, wasserstein, torch.zeros_like(wasserstein))
        penalty = gradient_penalty(self.critic, real, fake, self.rng)
        return CriticLosses(-wasserstein + lam * penalty, wasserstein, penalty)

    def clip_critic(self) -> None:
        """Clamp every critic parameter to [-c, c] (a no-op under the gradient penalty)."""
        c = self.cfg.clip_value
        if c is None:
            return
        with torch.no_grad():
            for p in self.critic.parameters():
                p.clamp_(-c, c)

    def critic_step(self, real: torch.Tensor) -> CriticLosses:
        """One critic update against a fresh generated batch (G frozen), then clipping."""
        with torch.no_grad():
            fake = self.gen(self._noise(real.shape[0], real.device))
        losses = self.critic_loss(real, fake)
        self.opt_c.zero_grad(set_to_none=True)
        losses.loss.backward()
        self.opt_c.step()
        self.clip_critic()
        self.critic_steps += 1
        return losses

    def generator_step(self, n: int, device: torch.device) -> torch.Tensor:
        """One generator update minimising ``-mean C(G(z))`` (the critic takes no gradient)."""
        for p in self.critic.parameters():
            p.requires_grad_(False)
        try:
            loss = -self.critic(self.gen(self._noise(n, device))).mean()
            self.opt_g.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_g.step()
        finally:
            for p in self.critic.parameters():
                p.requires_grad_(True)
        self.generator_steps += 1
        return loss

    def iteration(self, real_batch: Callable[[], torch.Tensor]) -> dict[str, torch.Tensor]:
        """``n_critic`` critic steps on fresh real batches, then one generator step; losses as tensors (no sync)."""
        for _ in range(self.cfg.n_critic):
            real = real_batch()
            critic = self.critic_step(real)
        gen_loss = self.generator_step(real.shape[0], real.device)
        return {
            "critic": critic.loss.detach(),
            "wasserstein": critic.wasserstein.detach(),
            "penalty": critic.penalty.detach(),
            "generator": gen_loss.detach(),
        }


@torch.no_grad()
def sample_pairs(
    gen: PairGenerator, count: int, batch: int, rng: torch.Generator, device: torch.device
) -> SegData:
    """``count`` generated pairs (images in [0, 1], masks thresholded at 0.5), in full batches of ``batch``."""
    images, masks = [], []
    made = 0
    while made < count:
        img, msk = decode_pairs(gen(gen.noise(batch, rng, device)))
        images.append(img)
        masks.append(msk)
        made += batch
    return SegData(
        torch.cat(images)[:count], torch.cat(masks)[:count], [f"wgan-sample{i}" for i in range(count)]
    )


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """``C x H x W`` (or ``C x D x H x W``: its middle slice) in [0, 1] -> ``H x W x 3`` uint8."""
    if x.dim() == 4:
        x = x[:, x.shape[1] // 2]
    arr = (x.float().clamp(0, 1) * 255).round().byte().cpu().numpy()
    if arr.shape[0] == 1:
        arr = np.repeat(arr, 3, axis=0)
    return np.ascontiguousarray(arr[:3].transpose(1, 2, 0))


def save_samples_grid(data: SegData, path: Path, count: int = 8, min_tile: int = 96) -> Path:
    """A PNG of the first ``count`` generated pairs: masks on the top row, their images below."""
    tiles = [(_to_uint8(data.masks[i]), _to_uint8(data.images[i])) for i in range(min(count, len(data)))]
    h, w = tiles[0][0].shape[:2]
    scale = max(1, -(-min_tile // max(h, w)))
    th, tw, gap = h * scale, w * scale, 2
    canvas = Image.new("RGB", (len(tiles) * (tw + gap) + gap, 2 * (th + gap) + gap), (255, 255, 255))
    for col, pair in enumerate(tiles):
        for row, arr in enumerate(pair):
            tile = Image.fromarray(arr).resize((tw, th), Image.NEAREST)
            canvas.paste(tile, (gap + col * (tw + gap), gap + row * (th + gap)))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


class WGANMethod(Method):
    """WGAN (weight clipping) or WGAN-GP generating image and mask together; its samples augment a segmenter."""

    config_model = WGANConfig

    def build_gan(self, train: SegData, ctx: FitContext, cfg: WGANConfig) -> tuple[PairGenerator, PairCritic]:
        """Generator and critic for the task's channels and shape, on the device."""
        channels = int(train.images.shape[1])
        spatial = tuple(int(s) for s in train.images.shape[2:])
        width = ctx.profile.gen_width
        gen = PairGenerator(channels, spatial, width=width, noise_dim=cfg.noise_dim)
        critic = PairCritic(channels, spatial, width=width, norm="layer" if cfg.penalty == "gp" else "batch")
        return prepare_model(gen, ctx, train.dims), prepare_model(critic, ctx, train.dims)  # type: ignore[return-value]

    def train_gan(
        self,
        train: SegData,
        ctx: FitContext,
        cfg: WGANConfig,
        rng: torch.Generator,
        iterations: int,
        total: int,
    ) -> tuple[WGANTrainer, dict[str, list[Any]]]:
        """The GAN pre-training on the training pairs: ``iterations`` generator steps, losses at each interval."""
        gen, critic = self.build_gan(train, ctx, cfg)
        trainer = WGANTrainer(cfg, gen, critic, rng)
        bs, every = ctx.batch_size, eval_interval(ctx)

        def real_batch() -> torch.Tensor:
            return encode_pairs(*sample_batch(train, bs, rng))

        history: dict[str, list[Any]] = {"gan_iteration": []}
        sums: dict[str, torch.Tensor] = {}
        seen = 0
        gen.train()
        critic.train()
        for it in range(1, iterations + 1):
            losses = trainer.iteration(real_batch)
            for k, v in losses.items():
                sums[k] = sums[k] + v if k in sums else v.clone()
            seen += 1
            if it % every == 0 or it == iterations:
                means = {k: v / seen for k, v in sums.items()}
                check_finite(means["critic"], "WGAN critic loss (pre-training)", it)
                check_finite(means["generator"], "WGAN generator loss (pre-training)", it)
                shown = {k: float(v) for k, v in means.items()}
                history["gan_iteration"].append(it)
                for k, v in shown.items():
                    history.setdefault(f"gan_{k}", []).append(v)
                ctx.progress(it, total, shown)
                sums, seen = {}, 0
            else:  # per-iteration progress carries no metrics (no host sync)
                ctx.progress(it, total, {})
        for p in (*gen.parameters(), *critic.parameters()):
            p.requires_grad_(False)  # frozen from here on
        return trainer, history

    def fit(self, train: SegData, val: SegData, ctx: FitContext) -> FitResult:
        cfg = parse_config(WGANConfig, self.spec.config, f"method {self.spec.name!r}")
        aug = cfg.augment_config()
        rng = seed_everything(ctx.seed, ctx.device)
        bs = ctx.batch_size
        start = time.perf_counter()
        # the segmenter first, from the same seed as the supervised baselines': same initial weights
        model = build_segmenter(
            self.spec.backbone,
            train.images.shape[1],
            train.dims,
            self.spec.encoder,
            self.spec.encoder_weights,
        )
        model = prepare_model(model, ctx, train.dims, train.images)
        recipe = Recipe(ctx.profile)

        gan_its = 0
        history: dict[str, list[Any]] = {}
        pool: SegData | None = None
        artifacts: list[str] = []
        critic_steps = 0
        gan_rng = torch.Generator(device=ctx.device)
        gan_rng.manual_seed(ctx.seed + GAN_STREAM)
        if cfg.samples > 0:
            gan_its = cfg.gan_steps(ctx.iterations)
            trainer, history = self.train_gan(train, ctx, cfg, gan_rng, gan_its, gan_its + ctx.iterations)
            critic_steps = trainer.critic_steps
            pool = sample_pairs(trainer.gen, cfg.samples, bs, gan_rng, ctx.device)
            del trainer
            artifacts.append(str(save_samples_grid(pool, Path(ctx.out_dir) / SAMPLES_FILE)))
        gan_time = time.perf_counter() - start

        opt, sched = make_seg_optimizer(model.parameters(), ctx.profile, self.spec.backbone)
        monitor = TrainingMonitor(model, val, ctx, opt, sched, total=gan_its + ctx.iterations, offset=gan_its)
        model.train()
        for it in range(1, ctx.iterations + 1):
            images, masks = sample_batch(train, bs, rng)
            real = int(images.shape[0])
            if aug.active:
                images, masks = augment_pair(images, masks, aug, rng)
            images = recipe.augment(images, rng)
            generated = 0
            if pool is not None:
                gen_images, gen_masks = sample_batch(pool, bs, gan_rng)
                gen_images = recipe.augment(gen_images, rng)
            with autocast(ctx):
                loss = recipe.loss(model(images), masks)
                if pool is not None:  # a second forward, as GenSeg's generated half
                    generated = int(gen_images.shape[0])
                    loss = loss + recipe.loss(model(gen_images), gen_masks)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            monitor.count(real=real, generated=generated)
            monitor.step(it, {"seg": loss})
        monitor.finish(model)

        extras: dict[str, Any] = {
            "empty_val_score": monitor.empty_score,
            "seg_lr": start_lrs(opt)[0],
            "penalty": cfg.penalty,
            "n_critic": cfg.n_critic,
            "clip": cfg.clip_value,
            "gp_lambda": cfg.penalty_weight,
            "gan_lr": cfg.gan_lr,
            "gan_iterations": gan_its,
            "generated_samples": cfg.samples,
            "real_foreground_fraction": float(train.masks.mean()),
            "generated_foreground_fraction": float(pool.masks.mean()) if pool is not None else None,
            "final_gan_losses": {k[4:]: v[-1] for k, v in history.items() if k != "gan_iteration" and v},
            "gan_time_s": gan_time,
            "train_time_s": time.perf_counter() - start,
        }
        return FitResult(
            predictor=ModulePredictor(model, bs, ctx.use_amp),
            last_predictor=monitor.final_predictor(bs, ctx.use_amp),
            best_val_score=monitor.best.score,
            best_iteration=monitor.best.iteration,
            iterations=ctx.iterations,
            extras=extras,
            artifacts=artifacts,
            trajectory={**monitor.trajectory, **history},
            budget={
                **monitor.budget(),
                "real_per_update": bs,
                "generated_per_update": bs if pool is not None else 0,
                "gan_pretraining_iterations": gan_its,
                "critic_steps": critic_steps,
                "generated_samples": cfg.samples,
            },
        )
