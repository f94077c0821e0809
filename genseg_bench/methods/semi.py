"""Semi-supervised baselines of the paper's Fig. 7 (App. C): DCT, MCF and CTBCT.

Each trains two segmenters on the n labelled cases and on the task's unlabelled
pool (``FitContext.unlabelled``, drawn by the runner from the training source's
cases outside the labelled, validation and test cases). The paper gives each
method 1,000 unlabelled images and names no implementation; these are written
for this suite from the papers, checked against the public code named below.

What every method here shares with the supervised baselines
(:mod:`genseg_bench.methods.training`), so that a difference in a table is the
method's and not the harness's: the supervised term is the suite's L_seg (BCE,
where the reference codes use CE + Dice), one RMSprop over both networks'
parameters with ReduceLROnPlateau on the validation score (the reference codes
use SGD with a poly or step schedule), the fixed validation interval and the
best-validation checkpoint of what is tested (``predict``: the first network, the
spec's ``backbone``, or the mean of both networks' probabilities). Each update
draws a labelled batch (the profile's batch size) and an unlabelled batch
(``unlabelled_batch``, by default as large: the 1:1 batches of the reference
codes). The unlabelled term's weight ramps up as ``exp(-5 (1 - t)^2)``, the
sigmoid ramp-up of every reference code, over ``rampup`` of the budget (the
reference codes ramp over their whole schedule, DCT over its first 80%). The
budget counts every training forward of either network: ``real_images_seen``
(labelled images, adversarial copies included) and ``unlabelled_images_seen``,
both in ``images_seen``; ``segmenters`` says how many networks share it.

**DCT** (``kind = "dct"``): deep co-training. Qiao et al., *Deep Co-Training for
Semi-Supervised Image Recognition*, ECCV 2018, adapted to segmentation by Peng et
al., *Deep co-training for semi-supervised image segmentation*, Pattern
Recognition 2020 (the GenSeg paper's reference [54]); checked against Peng's
public trainer (jizongFox/Deep-Co-Training-for-Semi-Supervised-Image-Segmentation,
``generalframework/trainer/cotraining.py``). SSL4MIS's ``train_deep_co_training_2D``
is a one-network rotation consistency, not this method. Two networks of the same
architecture (different initialisations) learn the labelled batch; on the
unlabelled batch the co-training term is the pixel-wise Jensen-Shannon divergence
of their predictions (weight ``consistency``, 10 in Qiao's and Peng's trainer).
Kept, and on by default (``view_difference``): the view-difference term, which
keeps the two views from collapsing into one network: each network's FGSM
adversarial copy of the labelled and unlabelled batch (step ``adv_eps`` = 0.05,
Peng's; targets: the labels, and the network's own hard prediction on unlabelled
images, Qiao's rule) must be predicted by the *other* network as the first predicts
the clean images (binary KL, weight ``dif_weight`` = 0.5). Simplified: one update per
iteration for all terms (Peng steps after each term), the same labelled batch for
both networks (Qiao's), and FGSM on unlabelled images instead of Peng's VAT. The
input gradient of FGSM reuses the clean forward, so an update costs two forwards
per network.

**MCF** (``kind = "mcf"``): mutual correction framework. Wang et al., *MCF: Mutual
Correction Framework for Semi-Supervised Medical Image Segmentation*, CVPR 2023;
checked against its public code (WYC-321/MCF, ``code/train_MCF.py``: a VNet and a
ResNet-34 network in 3D). Two differently structured subnets: the spec's backbone
and ``second_backbone`` (DeepLabV3+ for a UNet spec, UNet for a DeepLab spec).
Contrastive difference review: on the labelled pixels where the two subnets' hard
predictions differ, each subnet's squared error to the label is added (weight
``cdr_weight`` = 0.5). Dynamic competitive pseudo-label generation: the subnet with
the lower (foreground) soft-Dice loss on this labelled batch is the better one; its unlabelled
predictions, sharpened with temperature ``temperature`` = 0.1, teach the other
subnet alone by mean squared error (weight ``consistency`` = 0.1). The choice is made
on the device (no host sync). Tested as the mean of both subnets, as MCF's test code.
Simplified: one optimiser over both subnets instead of two with equal settings (the
same update, since each loss reaches only its own subnet), and the suite's BCE in
place of CE + Dice in the supervised term.

**CTBCT** (``kind = "ctbct"``): cross teaching between CNN and Transformer. Luo et
al., *Semi-Supervised Medical Image Segmentation via Cross Teaching between CNN and
Transformer*, MIDL 2022; checked against SSL4MIS (HiLab-git/SSL4MIS,
``code/train_cross_teaching_between_cnn_transformer_2D.py``). The CNN (the spec's
backbone) and the transformer branch (``branch_backbone``) learn the labelled batch;
on the unlabelled batch each learns the other's hard (0.5-thresholded) prediction
through a two-class soft-Dice loss (SSL4MIS's ``DiceLoss``, weight ``consistency`` =
0.1). The CNN is validated and tested, as SSL4MIS evaluates its CNN. The branch is
the suite's Swin-Unet (backbone ``swinunet``, :mod:`genseg_bench.models.swin_unet`, at
its small default configuration); SSL4MIS starts it from ImageNet Swin-T weights, here
it trains from scratch like every network of the suite (``branch_backbone`` takes any
other backbone, e.g. ``segformer`` with ``branch_encoder = "mit_b0"``).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from genseg_bench.augment import augment_pair
from genseg_bench.errors import SpecError
from genseg_bench.methods.base import FitContext, FitResult, Method, SegData
from genseg_bench.methods.config import (
    CTBCTConfig,
    DCTConfig,
    MCFConfig,
    SemiSupervisedConfig,
    parse_config,
)
from genseg_bench.methods.recipe import Recipe, seg_loss
from genseg_bench.methods.training import (
    ModulePredictor,
    TrainingMonitor,
    autocast,
    make_seg_optimizer,
    prepare_model,
    sample_batch,
    seed_everything,
    start_lrs,
)
from genseg_bench.models.segmenters import build_segmenter

_EPS = 1e-6


@dataclass
class PairForward:
    """:meth:`PairModel.both`: the input, the labelled count, each network's logits, the supervised loss."""

    x: torch.Tensor
    b: int
    first: torch.Tensor
    second: torch.Tensor
    sup: torch.Tensor


class PairModel(nn.Module):
    """The two networks of a semi-supervised method; ``forward`` is what is validated and tested.

    ``predict = "first"``: the first network's logits; ``"mean"``: the logits of the
    mean of both networks' probabilities. Validation, the best checkpoint (both
    networks' weights) and the predictor all go through this one module.
    """

    def __init__(self, first: nn.Module, second: nn.Module, predict: str, loss_kind: str = "bce") -> None:
        super().__init__()
        self.first, self.second, self.predict = first, second, predict
        self.loss_kind = loss_kind
        """The recipe's segmenter loss (``Profile.seg_loss``) of the supervised terms."""

    def both(
        self, images: torch.Tensor, masks: torch.Tensor, unlabelled: torch.Tensor, input_grad: bool = False
    ) -> PairForward:
        """Both networks on one batch of labelled then unlabelled images, and their supervised loss.

        The opening every method's ``losses`` shares: one forward per network over
        ``cat([images, unlabelled])`` (one BatchNorm batch, as the public codes do), and
        ``L_seg`` of each network's labelled half. ``input_grad``: the input is a leaf
        that records its gradient (DCT's adversarial views differentiate by it).
        """
        x = torch.cat([images, unlabelled])
        if input_grad:
            x = x.detach().requires_grad_(True)
        first, second = self.first(x), self.second(x)
        b = int(images.shape[0])
        sup = seg_loss(first[:b], masks, self.loss_kind) + seg_loss(second[:b], masks, self.loss_kind)
        return PairForward(x, b, first, second, sup)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.predict == "first":
            return self.first(x)
        p = 0.5 * (torch.sigmoid(self.first(x).float()) + torch.sigmoid(self.second(x).float()))
        return torch.logit(p, eps=_EPS)


class SemiMonitor(TrainingMonitor):
    """:class:`TrainingMonitor` that also counts unlabelled images, inside ``images_seen``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unlabelled_images = 0

    def count(self, real: int, generated: int = 0, unlabelled: int = 0) -> None:
        super().count(real, generated)
        self.unlabelled_images += unlabelled

    def budget(self) -> dict[str, int]:
        out = super().budget()
        out["images_seen"] += self.unlabelled_images
        out["unlabelled_images_seen"] = self.unlabelled_images
        return out


def sigmoid_rampup(iteration: int, length: float) -> float:
    """``exp(-5 (1 - t)^2)`` with ``t = iteration / length`` clipped to [0, 1]; 1 when ``length`` is 0."""
    if length <= 0:
        return 1.0
    t = min(max(iteration / length, 0.0), 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)


def soft_dice_loss(probs: torch.Tensor, target: torch.Tensor, background: bool = True) -> torch.Tensor:
    """SSL4MIS's two-class ``DiceLoss`` on a binary task: ``1 - Dice`` of foreground and background, averaged.

    Sums run over the whole batch, with squared sums in the denominator and
    smoothing 1e-5, as SSL4MIS; the background class keeps the loss defined on
    batches without foreground. ``background=False``: the foreground term alone
    (MCF's ``dice_loss``).
    """
    p, t = probs.float(), target.float()
    pairs = ((p, t), (1 - p, 1 - t)) if background else ((p, t),)
    loss = p.new_zeros(())
    for a, b in pairs:
        inter = (a * b).sum()
        loss = loss + 1 - (2 * inter + 1e-5) / ((a * a).sum() + (b * b).sum() + 1e-5)
    return loss / len(pairs)


def _entropy(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(_EPS, 1 - _EPS)
    return -(p * p.log() + (1 - p) * (1 - p).log())


def js_divergence(p1: torch.Tensor, p2: torch.Tensor) -> torch.Tensor:
    """Pixel-wise Jensen-Shannon divergence of two binary predictions (DCT's L_cot), averaged."""
    return (_entropy(0.5 * (p1 + p2)) - 0.5 * (_entropy(p1) + _entropy(p2))).mean()


def binary_kl(target: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``KL(target || p)`` per pixel for binary predictions, averaged; gradients reach ``p`` only."""
    t = target.detach().clamp(_EPS, 1 - _EPS)
    q = p.clamp(_EPS, 1 - _EPS)
    return (t * (t / q).log() + (1 - t) * ((1 - t) / (1 - q)).log()).mean()


def sharpen(p: torch.Tensor, temperature: float) -> torch.Tensor:
    """MCF's ``p^(1/T) / sum_c p_c^(1/T)`` for two classes, as ``sigmoid(logit(p) / T)``."""
    return torch.sigmoid(torch.logit(p.clamp(_EPS, 1 - _EPS)) / temperature)


def _sample_images(pool: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    n = int(pool.shape[0])
    if k <= n:
        idx = torch.randperm(n, generator=gen, device=pool.device)[:k]
    else:
        idx = torch.randint(n, (k,), generator=gen, device=pool.device)
    return pool[idx]


def require_pool(ctx: FitContext, train: SegData, name: str, kind: str) -> torch.Tensor:
    """The unlabelled pool of ``ctx``, checked; a clear error when the run has none."""
    pool = ctx.unlabelled
    if pool is None or int(pool.shape[0]) == 0:
        raise SpecError(
            f"method {name!r} (kind {kind!r}) is semi-supervised: it trains on an unlabelled pool, and this run "
            "has none (FitContext.unlabelled is empty). Run it on a task with an `unlabelled` key "
            "(a semisup-* task, or synthetic-semi offline)."
        )
    if tuple(pool.shape[1:]) != tuple(train.images.shape[1:]):
        raise SpecError(
            f"method {name!r}: unlabelled images are {tuple(pool.shape[1:])}, labelled ones "
            f"{tuple(train.images.shape[1:])}; the pool must come at the run's image size and channels."
        )
    return pool.to(train.images.device)


class SemiSupervisedMethod(Method):
    """The loop the three methods share; a subclass builds its second network and computes its losses."""

    config_model: ClassVar[type[SemiSupervisedConfig]] = SemiSupervisedConfig

    @abstractmethod
    def second_network(self, cfg: Any, in_channels: int, dims: int) -> tuple[nn.Module, dict[str, str]]:
        """The second network and how it was built (for the result's extras)."""

    @abstractmethod
    def losses(
        self,
        pair: PairModel,
        images: torch.Tensor,
        masks: torch.Tensor,
        unlabelled: torch.Tensor,
        ramp: float,
        cfg: Any,
    ) -> dict[str, torch.Tensor]:
        """This update's losses; ``loss`` is the total that is back-propagated.

        ``ramp`` in [0, 1] is the ramp-up factor of this iteration: the unlabelled terms
        weigh ``ramp`` times their configured weights.
        """

    def forwards(self, cfg: Any) -> int:
        """Training forwards of each network per update, over the labelled and the unlabelled batch."""
        return 1

    def fit(self, train: SegData, val: SegData, ctx: FitContext) -> FitResult:
        cfg = parse_config(self.config_model, self.spec.config, f"method {self.spec.name!r}")
        pool = require_pool(ctx, train, self.spec.name, self.spec.kind)
        gen = seed_everything(ctx.seed, ctx.device)
        channels, dims = int(train.images.shape[1]), train.dims
        first = build_segmenter(
            self.spec.backbone, channels, dims, self.spec.encoder, self.spec.encoder_weights
        )
        second, second_desc = self.second_network(cfg, channels, dims)
        pair = PairModel(
            prepare_model(first, ctx, dims, train.images),
            prepare_model(second, ctx, dims, train.images),
            cfg.predict,
            ctx.profile.seg_loss,
        )
        recipe = Recipe(ctx.profile)
        opt, sched = make_seg_optimizer(
            [
                (pair.first.parameters(), self.spec.backbone),
                (pair.second.parameters(), second_desc["backbone"]),
            ],
            ctx.profile,
        )
        monitor = SemiMonitor(pair, val, ctx, opt, sched)
        aug = cfg.augment_config()
        batch = ctx.batch_size
        ubatch = cfg.unlabelled_batch or batch
        ramp_length = cfg.rampup * ctx.iterations
        per_net = self.forwards(cfg)
        pair.train()
        for it in range(1, ctx.iterations + 1):
            images, masks = sample_batch(train, batch, gen)
            unlabelled = _sample_images(pool, ubatch, gen)
            if aug.active:
                images, masks = augment_pair(images, masks, aug, gen)
                unlabelled, _ = augment_pair(unlabelled, torch.zeros_like(unlabelled[:, :1]), aug, gen)
            images, unlabelled = recipe.augment(images, gen), recipe.augment(unlabelled, gen)
            with autocast(ctx):
                losses = self.losses(pair, images, masks, unlabelled, sigmoid_rampup(it, ramp_length), cfg)
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            opt.step()
            monitor.count(real=2 * per_net * batch, unlabelled=2 * per_net * ubatch)
            monitor.step(it, losses, finite=("loss",))
        monitor.finish(pair)
        return FitResult(
            predictor=ModulePredictor(pair, ctx.batch_size, ctx.use_amp),
            last_predictor=monitor.final_predictor(ctx.batch_size, ctx.use_amp),
            best_val_score=monitor.best.score,
            best_iteration=monitor.best.iteration,
            iterations=ctx.iterations,
            extras={
                "empty_val_score": monitor.empty_score,
                "predict": cfg.predict,
                "second_network": second_desc,
                "seg_lr": start_lrs(opt),
                "unlabelled_pool_size": int(pool.shape[0]),
            },
            trajectory=monitor.trajectory,
            budget={
                **monitor.budget(),
                "segmenters": 2,
                "real_per_update": 2 * per_net * batch,
                "unlabelled_per_update": 2 * per_net * ubatch,
            },
        )


def _build(
    backbone: str, encoder: str, in_channels: int, dims: int, weights: str | None = None
) -> tuple[nn.Module, dict[str, str]]:
    net = build_segmenter(backbone, in_channels, dims, encoder, weights)
    return net, {"backbone": backbone, "encoder": encoder, "weights": weights or "none"}


class DCTMethod(SemiSupervisedMethod):
    """Deep co-training (Qiao et al. 2018; Peng et al. 2020 for segmentation): see the module docstring."""

    config_model = DCTConfig

    def forwards(self, cfg: DCTConfig) -> int:
        return 2 if cfg.view_difference else 1

    def second_network(self, cfg: DCTConfig, in_channels: int, dims: int) -> tuple[nn.Module, dict[str, str]]:
        spec = self.spec  # the same architecture and weights as the first view
        return _build(spec.backbone, spec.encoder, in_channels, dims, spec.encoder_weights)

    def losses(
        self,
        pair: PairModel,
        images: torch.Tensor,
        masks: torch.Tensor,
        unlabelled: torch.Tensor,
        ramp: float,
        cfg: DCTConfig,
    ) -> dict[str, torch.Tensor]:
        f = pair.both(images, masks, unlabelled, input_grad=cfg.view_difference)
        x, b, l1, l2, sup = f.x, f.b, f.first, f.second, f.sup
        p1, p2 = torch.sigmoid(l1.float()), torch.sigmoid(l2.float())
        cot = js_divergence(p1[b:], p2[b:])
        loss = sup + ramp * cfg.consistency * cot
        out = {"sup": sup, "cot": cot}
        if cfg.view_difference:
            dif = self._view_difference(pair, x, l1, l2, p1, p2, masks, cfg.adv_eps)
            loss = loss + ramp * cfg.dif_weight * dif
            out["dif"] = dif
        return {"loss": loss, **out}

    @staticmethod
    def _view_difference(
        pair: PairModel,
        x: torch.Tensor,
        l1: torch.Tensor,
        l2: torch.Tensor,
        p1: torch.Tensor,
        p2: torch.Tensor,
        masks: torch.Tensor,
        eps: float,
    ) -> torch.Tensor:
        """Each network's FGSM copy of ``x`` must be predicted by the other as the first predicts ``x``."""
        b = int(masks.shape[0])

        def adversarial(logits: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
            target = torch.cat([masks, (probs[b:] > 0.5).to(masks.dtype)]).detach()
            (grad,) = torch.autograd.grad(seg_loss(logits, target), x, retain_graph=True)
            return (x + eps * grad.sign()).clamp(0.0, 1.0).detach()

        x1, x2 = adversarial(l1, p1), adversarial(l2, p2)
        q2 = torch.sigmoid(pair.second(x1).float())  # net 2 on net 1's adversarial copy
        q1 = torch.sigmoid(pair.first(x2).float())
        return binary_kl(p1, q2) + binary_kl(p2, q1)


class MCFMethod(SemiSupervisedMethod):
    """Mutual correction framework (Wang et al., CVPR 2023): see the module docstring."""

    config_model = MCFConfig

    def second_network(self, cfg: MCFConfig, in_channels: int, dims: int) -> tuple[nn.Module, dict[str, str]]:
        return _build(cfg.second_backbone, cfg.second_encoder, in_channels, dims)

    def losses(
        self,
        pair: PairModel,
        images: torch.Tensor,
        masks: torch.Tensor,
        unlabelled: torch.Tensor,
        ramp: float,
        cfg: MCFConfig,
    ) -> dict[str, torch.Tensor]:
        f = pair.both(images, masks, unlabelled)
        b, la, lb = f.b, f.first, f.second
        pa, pb = torch.sigmoid(la.float()), torch.sigmoid(lb.float())
        target = masks.float()
        # contrastive difference review: squared error where the two subnets' hard predictions differ
        diff = ((pa[:b] > 0.5) ^ (pb[:b] > 0.5)).float()
        n_diff = diff.sum() + 1e-16
        cdr_a = (diff * (pa[:b] - target) ** 2).sum() / n_diff
        cdr_b = (diff * (pb[:b] - target) ** 2).sum() / n_diff
        sup = f.sup + cfg.cdr_weight * (cdr_a + cdr_b)
        # dynamic competition: the subnet with the lower labelled Dice loss teaches the other
        with torch.no_grad():
            fg_a = soft_dice_loss(pa[:b], target, background=False)
            a_better = fg_a < soft_dice_loss(pb[:b], target, background=False)
            pseudo = torch.where(a_better, sharpen(pa[b:], cfg.temperature), sharpen(pb[b:], cfg.temperature))
        mse_a = ((pa[b:] - pseudo) ** 2).mean()
        mse_b = ((pb[b:] - pseudo) ** 2).mean()
        unsup = torch.where(a_better, mse_b, mse_a)
        return {
            "loss": sup + ramp * cfg.consistency * unsup,
            "sup": sup,
            "cdr": cdr_a + cdr_b,
            "unsup": unsup,
            "first_teaches": a_better.float(),
        }


class CTBCTMethod(SemiSupervisedMethod):
    """Cross teaching between CNN and Transformer (Luo et al., MIDL 2022): see the module docstring."""

    config_model = CTBCTConfig

    def second_network(
        self, cfg: CTBCTConfig, in_channels: int, dims: int
    ) -> tuple[nn.Module, dict[str, str]]:
        return _build(cfg.branch_backbone, cfg.branch_encoder, in_channels, dims)

    def losses(
        self,
        pair: PairModel,
        images: torch.Tensor,
        masks: torch.Tensor,
        unlabelled: torch.Tensor,
        ramp: float,
        cfg: CTBCTConfig,
    ) -> dict[str, torch.Tensor]:
        f = pair.both(images, masks, unlabelled)
        b, lc, lt, sup = f.b, f.first, f.second, f.sup
        pc, pt = torch.sigmoid(lc[b:].float()), torch.sigmoid(lt[b:].float())
        hard_c, hard_t = (pc.detach() > 0.5).float(), (pt.detach() > 0.5).float()
        cross = soft_dice_loss(pc, hard_t) + soft_dice_loss(pt, hard_c)
        return {"loss": sup + ramp * cfg.consistency * cross, "sup": sup, "cross": cross}


__all__ = [
    "CTBCTMethod",
    "DCTMethod",
    "MCFMethod",
    "PairForward",
    "PairModel",
    "SemiMonitor",
    "binary_kl",
    "js_divergence",
    "sharpen",
    "sigmoid_rampup",
    "soft_dice_loss",
]
