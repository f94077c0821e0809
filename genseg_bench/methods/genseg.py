"""GenSeg (paper A.1-A.3): a searchable mask-to-image GAN tuned end to end by the segmenter's validation loss.

Every iteration runs the three levels of A.2 with the one-step approximation of A.3:

1. **GAN level.** ``L_gan(G, A, H)`` on real pairs: the generator's own level-1
   objective (Pix2Pix: adversarial BCE + ``lambda_l1`` * L1; see *Generators*).
   ``g_G = grad_G L_gan`` with ``create_graph=True``, and the lookahead ``G'``
   (Eq. 5; see *Lookahead* below), a function of the alphas A and of the partner's
   weights H.
2. **Segmentation level.** Augmented real masks go through G'
   (``torch.func.functional_call``); the generated images are *not* detached.
   ``g_S = grad_S [L_seg(S, (G'(M_aug), M_aug)) + gamma L_seg(S, real pairs)]``
   with ``create_graph=True``, and the lookahead ``S'`` (Eq. 7).
3. **Architecture level.** ``grad_A L_seg(S', validation batch)`` (Eq. 8-11) by
   autograd through S', the generated images, G' and the GAN-level gradient;
   Adam on A (``arch_lr``, betas (0.5, 0.999), ``arch_weight_decay``; A.6).
   Autograd takes the total derivative of the unrolled objective, so it also
   includes the direct path A -> cell mixing in G'(M_aug), which Eq. 9 leaves
   implicit; the finite-difference test checks exactly this total.

Then the real updates, after every gradient above has been taken (an in-place
step before ``grad_A`` would change the weights the graph of G' was built on,
in particular the discriminator's, and break or silently alter the
hypergradient): A by its Adam; G by Adam on ``g_G`` (A.6: lr ``gen_lr``, betas
(0.5, 0.999), ``gen_weight_decay``); H by the same Adam ascending the GAN
objective on ``(real, G(M).detach())`` (Eq. 6); S by the supervised baselines'
optimiser (the profile's ``seg_optimizer``: RMSprop as A.6, or Adam) + ReduceLROnPlateau
on ``g_S``, i.e. Eq. 7's gradient on generated plus real pairs, of the profile's L_seg
(``seg_loss``: BCE as the paper's text, or BCE + Dice), with the recipe's intensity
augmentation, where it has one, on the generated and real images S sees. Reusing ``g_G`` and ``g_S`` for the real steps saves a second
forward/backward of G and S per iteration; they are evaluated at the current
weights and A from before this iteration's A step (A moves by ~``arch_lr`` per
step). The real steps use the paper's optimisers.

**Lookahead** (config ``lookahead``). How G' and S' are formed from ``g_G`` and ``g_S``:

* ``"sgd"``, the paper-exact setting: plain gradient steps as written in Eq. 5
  and 7, ``G' = G - eta_g g_G`` and ``S' = S - eta_s g_S``, with ``eta`` the
  current learning rate of the real optimiser (``eta_g`` = G's Adam lr,
  ``eta_s`` = S's RMSprop lr, which ReduceLROnPlateau lowers). The A.6 learning
  rates are Adam / RMSprop rates: those optimisers divide by the root mean square
  of the gradient, so a plain SGD step with their lr is smaller than the step the
  training really takes by the gradient's RMS, per coordinate (~1e-3 for
  gradients of that size), and ``dG'/dA``,
  ``dS'/dG'`` (Eq. 10-11) and the hypergradient shrink with it. Measured on the
  synthetic task (32 px, quick profile, iterations 30-100): ``|grad_A|`` ~1e-6
  with sgd, ~1e-3 with the optimizer lookahead. Adam on A is scale-free only while
  ``|grad_A|`` stays well above its ``eps`` = 1e-8; what froze A in practice was
  the transient of the first iterations (see *Warm-up*).
* ``"optimizer"`` (default): the lookahead is the step the real optimiser is
  about to take, from its current state (read from ``opt.state``, never
  mutated; an empty state is the first step). G (torch Adam): ``m' = b1 m +
  (1 - b1) g``, ``v' = b2 v + (1 - b2) g^2``, bias corrections at the step count
  the real step will have, ``G' = G - lr m'_hat / (sqrt(v'_hat) + eps)``, with
  ``weight_decay * G`` added to ``g`` as torch does. S with Adam: the same rule
  (:func:`adam_lookahead`). S (torch RMSprop with
  momentum mu): ``v' = a v + (1 - a) g^2``, ``buf' = mu buf + g / (sqrt(v') +
  eps)``, ``S' = S - lr buf'``. Numerically G' and S' *are* the weights after
  this iteration's real steps, so the hypergradient asks how A changes the
  segmenter the training actually produces, and it is of the size of real steps.
  The second moment ``v'`` is *detached* (a constant preconditioner): the
  lookahead stays linear in ``g``, ``W' = c - k * g`` with ``c`` and ``k`` computed
  without a graph, so the double backward costs what the SGD one does (the
  graph-free elementwise work is the only extra, ~15 % of a 32 px CPU step), and
  ``grad_A`` is the derivative with the preconditioner held fixed. That is close
  to the exact derivative once the state holds history (after t steps the current
  gradient is ~1/t of the bias-corrected ``v'``, at least ``1 - b2`` = 0.1 %), and
  far from it in the first steps (the first bias-corrected Adam step is ``lr g /
  |g|``, whose exact derivative in ``g`` is 0, the detached one ``lr / |g|``): see
  *Warm-up*. :func:`unrolled_step` takes either as a :data:`StepRule`; the
  finite-difference test checks the ``"sgd"`` objective's total derivative, the
  reference test (``tests/methods/test_genseg_reference.py``) both rules against
  independent formulas.

**Warm-up** (config ``arch_warmup``, default 20; 0 is the paper). The first
end-to-end iterations run every level but the A step (no hypergradient, no
``create_graph``): G, H and S take exactly the steps they take afterwards. Why:
early hypergradients are unreliable and orders of magnitude too large, and Adam on
A keeps the first one in its second moment for ~1/(1 - b2) = 1000 steps, dividing
every later A step by it, so A freezes. Measured (32 px, quick profile): ``|grad_A|``
1.2e4 at iteration 1, 0.8 at 2, 8e-3 at 5, ~1e-3 from 10 on with the optimizer
lookahead (0.4 at 1, then 1e-5..1e-6 with sgd: the transient at initialisation is
not only the lookahead's). Largest alpha shift after 100 iterations on the
synthetic task (32 px, quick profile, batch 4): sgd 8.9e-4 without warm-up,
1.2e-2 with 20; optimizer 9.0e-4 without, 2.6e-2 with 20 (the default). With
the optimizer lookahead the detached second moment is also only accurate once it
holds some history: the current gradient is ~1/t of the bias-corrected
``v`` after t steps, and on the reference test's tiny model the detached
hypergradient differs from the exact derivative by 2e4x at iteration 1, 40 % at
10 and 0.2 % at 20 (``test_optimizer_hypergradient_is_the_exact_derivative_once_
the_state_is_warm``), hence 20. Architecture warm-up is the DARTS-family remedy
(P-DARTS / PC-DARTS freeze the alphas for the first epochs while the weights train).

**BatchNorm statistics in the unrolled steps.** The generator and discriminator
use InstanceNorm (no running statistics; see their modules), so every pass of
them, unrolled or not, is the same function. The segmenter keeps its backbone's
BatchNorm. Generated and real pairs go through S in two ordinary train-mode
forwards (batch statistics per half); these produce ``g_S`` and update the
running statistics as a training step does, in every variant alike. The
forward of S' on the validation batch also runs in train mode (batch
statistics, differentiable, as in DARTS) but on *copies* of the buffers, which
are thrown away: validation images never enter the running statistics used at
evaluation time, and the extra passes of the unrolled step do not move them.
Only the generated half depends on A, so only its gradient is taken with
``create_graph``: the double backward of S runs over B images, not 2B.

**3D on the CPU.** oneDNN's CPU weight gradients of 3D convolutions with
padding are garbage for the generator's 8x8x8 cells at small extents (an 8^3
input with 16+ channels), which made every 3D run's weights NaN in its first
iteration; the searchable cells spell their 3D zero padding out instead
(:class:`~genseg_bench.models.generator.SearchableCell`), for which oneDNN is
right, so every kernel stays torch's default (tests/methods/test_genseg_3d.py
compares a whole 3D step with float64).

**Generators** (config ``generator``: ``"pix2pix"``, the paper's, ``"spade"`` /
``"asapnet"``, App. I, Fig. 9d, or ``"bbdm"`` / ``"softintrovae"``, Fig. 9a-c). The
three levels see G only through
:class:`~genseg_bench.models.generators.MaskToImageGenerator`: ``G(masks)`` in
[0, 1], its alphas apart from its weights, and no buffers, so
``functional_call(G, G', ...)`` is exactly the forward with the lookahead weights.
Level 1 is the generator's (:func:`generator_objective`, :func:`partner_objective`):
``gen.build_partner`` gives H, ``gen.generator_loss`` and ``gen.partner_loss`` the
two objectives. Pix2Pix, SPADE and ASAPNet share the default (PatchGAN H, adversarial
+ L1), so among them a comparison changes the generator only; BBDM has no H (its
bridge denoising loss; no H optimiser and no H step), Soft-Intro VAE's H is its
encoder. The searchable cells are (up)convolution cells in each (see each
generator's module). Separate and End2End work for each alike.

Variants are config, not copies (``MethodSpec.config``, see :class:`GenSegConfig`):
``separate`` trains the GAN first for ``gan_iterations``, freezes it, then trains
S on its output plus the real data (paper Sec. 2.5); ``cells`` picks learnable /
fixed (all alpha = 1) / single-branch cells; ``end_to_end = false`` keeps the
joint loop but drops the architecture level; ``lookahead`` picks the unrolled
step rule above; ``gamma``, ``lambda_l1`` and the mask augmentation (ops and
ranges, elastic) are the paper's ablation knobs.

**Artifacts.** Besides the grid of generated pairs, every run stores the alphas of
every cell at each validation (``trajectory["alphas"]``, with the norm of the
latest hypergradient, ``trajectory["hypergrad_norm"]``, None during warm-up), the
largest move of any alpha from its initial value (``extras["max_alpha_shift"]``;
the initial value is 1/K for learnable cells) and a plot of the alphas over iterations (``alphas.png``), so that an inert
architecture search is visible in every result.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.func import functional_call

from genseg_bench.augment import augment_masks
from genseg_bench.errors import DataError, SpecError
from genseg_bench.methods.base import FitContext, FitResult, Method, SegData
from genseg_bench.methods.config import GenSegConfig
from genseg_bench.methods.recipe import Recipe, seg_loss
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
from genseg_bench.models.discriminator import (  # noqa: F401 (re-exported: the conditional GAN's losses)
    discriminator_loss,
    generator_gan_loss,
)
from genseg_bench.models.generators import MaskToImageGenerator, build_generator, check_stateless
from genseg_bench.models.segmenters import build_segmenter
from genseg_bench.specs import Profile

AmpFactory = Callable[[], contextlib.AbstractContextManager[None]]
Timer = Callable[[str], None]
"""``timer(phase)``: called at the end of each phase of an iteration (the speed benchmark's hook)."""

GRID_FILE = "generated_pairs.png"
ALPHA_PLOT_FILE = "alphas.png"

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``loss(logits, masks)``: L_seg (:meth:`~genseg_bench.methods.recipe.Recipe.loss`)."""
ImageFn = Callable[[torch.Tensor], torch.Tensor]
"""A differentiable map of a batch of images (the recipe's intensity augmentation)."""

StepRule = Callable[[Sequence[torch.Tensor], Sequence[torch.Tensor]], list[torch.Tensor]]
"""``rule(params, grads) -> params'``: the differentiable one-step lookahead of Eq. 5 / 7.

``params`` are the real leaf parameters (a rule that mimics an optimiser finds its
state by them), ``grads`` their gradients (with a graph, so ``params'`` is a
function of whatever the gradients depend on). See :func:`sgd_rule`,
:func:`adam_lookahead`, :func:`rmsprop_lookahead`.
"""


def _no_amp() -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()


def _no_timer(phase: str) -> None:
    return None


# --- losses and the unrolled step -----------------------------------------------------------


def generator_objective(
    gen: nn.Module, partner: nn.Module | None, masks: torch.Tensor, images: torch.Tensor, lambda_l1: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Level 1's ``(L_G, fake)``: the generator's own objective (:meth:`MaskToImageGenerator.generator_loss`).

    A module that is not a :class:`MaskToImageGenerator` (the reference tests' tiny
    generator) gets the interface's default, the conditional GAN
    (:func:`generator_gan_loss` with H = ``partner``).
    """
    if isinstance(gen, MaskToImageGenerator):
        return gen.generator_loss(partner, masks, images, lambda_l1=lambda_l1)
    return MaskToImageGenerator.generator_loss(gen, partner, masks, images, lambda_l1=lambda_l1)  # type: ignore[arg-type]


def partner_objective(
    gen: nn.Module, partner: nn.Module, masks: torch.Tensor, fake: torch.Tensor, images: torch.Tensor
) -> torch.Tensor:
    """Level 1's objective of H (:meth:`MaskToImageGenerator.partner_loss`; default :func:`discriminator_loss`)."""
    if isinstance(gen, MaskToImageGenerator):
        return gen.partner_loss(partner, masks, fake, images)
    return MaskToImageGenerator.partner_loss(gen, partner, masks, fake, images)  # type: ignore[arg-type]


@dataclass
class GenSegBatch:
    """One iteration's data: real training pairs, their augmented masks, a validation batch."""

    masks: torch.Tensor
    images: torch.Tensor
    aug_masks: torch.Tensor
    val_images: torch.Tensor | None = None
    val_masks: torch.Tensor | None = None


@dataclass
class UnrolledStep:
    """Losses, gradients and tensors of levels 1-2 (and the level-3 objective when unrolled)."""

    gan_loss: torch.Tensor
    fake: torch.Tensor
    g_grads: tuple[torch.Tensor, ...]
    g_prime: dict[str, torch.Tensor]
    generated: torch.Tensor
    seg_loss: torch.Tensor
    s_grads: tuple[torch.Tensor, ...]
    s_prime: dict[str, torch.Tensor] | None
    val_loss: torch.Tensor | None


def _grads(loss: torch.Tensor, params: list[torch.Tensor], create_graph: bool) -> tuple[torch.Tensor, ...]:
    return torch.autograd.grad(
        loss, params, create_graph=create_graph, allow_unused=True, materialize_grads=True
    )


# --- lookahead step rules (module docstring, *Lookahead*) --------------------------------------


def sgd_rule(eta: float) -> StepRule:
    """Eq. 5 / 7 as written: ``W' = W - eta grad`` (the paper-exact lookahead)."""

    def rule(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [p - eta * g for p, g in zip(params, grads, strict=True)]

    return rule


def _groups(opt: torch.optim.Optimizer, kind: str, unsupported: tuple[str, ...]) -> dict[int, dict[str, Any]]:
    """``id(param) -> param group``, refusing the options the lookahead does not reproduce."""
    groups: dict[int, dict[str, Any]] = {}
    for group in opt.param_groups:
        on = [k for k in unsupported if group.get(k)]
        if on:
            raise ValueError(
                f"the {kind} lookahead does not reproduce {on}; use lookahead = 'sgd' or a plain {kind}"
            )
        for p in group["params"]:
            groups[id(p)] = group
    return groups


def adam_lookahead(opt: torch.optim.Optimizer) -> StepRule:
    """The step torch's Adam ``opt`` would take next, differentiable in the gradient.

    Reads ``exp_avg``, ``exp_avg_sq`` and ``step`` from ``opt.state`` (absent: the
    first step) without writing them. With ``d = g + wd W``, ``m' = b1 m + (1 - b1) d``
    and the detached ``v' = b2 v + (1 - b2) d^2``, the step is ``W' = c - k * g`` with
    ``k = (lr / bc1) (1 - b1) / (sqrt(v' / bc2) + eps)`` and ``c = W - (lr / bc1) (b1 m +
    (1 - b1) wd W) / (sqrt(v' / bc2) + eps)``: c and k are computed without a graph,
    so the lookahead costs the double backward what the SGD one does (one product).
    """
    groups = _groups(opt, "Adam", ("amsgrad", "maximize", "decoupled_weight_decay"))

    def rule(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for p, g in zip(params, grads, strict=True):
            group = groups[id(p)]
            beta1, beta2 = group["betas"]
            lr, eps, wd = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
            state = opt.state.get(p, {})
            warm = "step" in state
            t = int(state["step"]) + 1 if warm else 1  # the count the real step is about to have
            scale = lr / (1 - beta1**t)
            with torch.no_grad():
                d = g + wd * p if wd else g  # torch's Adam: L2 weight decay enters the gradient
                v = (1 - beta2) * d.square()
                if warm:
                    v = v.add_(state["exp_avg_sq"], alpha=beta2)
                inv = v.sqrt_().div_(math.sqrt(1 - beta2**t)).add_(eps).reciprocal_()
                k = inv * (scale * (1 - beta1))
                c = p.detach().clone()
                if warm:
                    c.addcmul_(state["exp_avg"], inv, value=-scale * beta1)
                if wd:
                    c.addcmul_(p, inv, value=-scale * (1 - beta1) * wd)
            out.append(c - k * g)
        return out

    return rule


def rmsprop_lookahead(opt: torch.optim.Optimizer) -> StepRule:
    """The step torch's RMSprop ``opt`` (momentum or not, not centred) would take next, differentiable in g.

    Reads ``square_avg`` and ``momentum_buffer`` from ``opt.state`` (absent: the
    first step, zeros) without writing them. With ``d = g + wd W``, the detached
    ``v' = a v + (1 - a) d^2`` and ``r = 1 / (sqrt(v') + eps)``, the step ``W - lr (mu
    buf + d r)`` is ``c - k * g`` with ``k = lr r`` and ``c = W - lr (mu buf + wd W r)``,
    both computed without a graph.
    """
    groups = _groups(opt, "RMSprop", ("centered", "maximize"))

    def rule(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for p, g in zip(params, grads, strict=True):
            group = groups[id(p)]
            lr, alpha, eps = float(group["lr"]), float(group["alpha"]), float(group["eps"])
            wd, mu = float(group["weight_decay"]), float(group["momentum"])
            state = opt.state.get(p, {})
            with torch.no_grad():
                d = g + wd * p if wd else g
                v = (1 - alpha) * d.square()
                if "square_avg" in state:
                    v = v.add_(state["square_avg"], alpha=alpha)
                inv = v.sqrt_().add_(eps).reciprocal_()
                c = p.detach().clone()
                if mu > 0 and "momentum_buffer" in state:
                    c.add_(state["momentum_buffer"], alpha=-lr * mu)
                if wd:
                    c.addcmul_(p, inv, value=-lr * wd)
                k = inv.mul_(lr)
            out.append(c - k * g)
        return out

    return rule


def _rule(rule: StepRule | None, eta: float | None, which: str) -> StepRule:
    if (rule is None) == (eta is None):
        raise TypeError(f"unrolled_step: give exactly one of eta_{which} and {which}_step")
    return rule if rule is not None else sgd_rule(float(eta))  # type: ignore[arg-type]


def unrolled_step(
    gen: MaskToImageGenerator,
    disc: nn.Module | None,
    seg: nn.Module,
    batch: GenSegBatch,
    *,
    eta_g: float | None = None,
    eta_s: float | None = None,
    gamma: float,
    lambda_l1: float,
    create_graph: bool = True,
    amp: AmpFactory = _no_amp,
    timer: Timer = _no_timer,
    g_step: StepRule | None = None,
    s_step: StepRule | None = None,
    loss: LossFn = seg_loss,
    intensity: ImageFn | None = None,
) -> UnrolledStep:
    """Eq. 5 and 7 (and the objective of Eq. 8): the value ``L_seg(S'(G'(A)), val)`` and what leads to it.

    The lookahead of G and of S: ``eta_g`` / ``eta_s`` give Eq. 5 / 7's plain steps
    (:func:`sgd_rule`), ``g_step`` / ``s_step`` any :data:`StepRule` (e.g.
    :func:`adam_lookahead`); exactly one of each pair. ``create_graph``: keep the
    graph of both gradient steps so that ``grad_A`` of ``val_loss`` exists (False
    gives the same values: what the finite-difference test evaluates). Without a
    validation batch, ``val_loss`` and ``s_prime`` are None. ``disc`` is the
    generator's level-1 partner H (None for a generator without one); level 1 is
    :func:`generator_objective`. ``loss`` is L_seg (the profile's recipe; BCE by
    default) at levels 2 and 3; ``intensity`` augments the generated and the real images
    before S sees them (the GAN level sees the real ones unchanged), differentiably, so the
    hypergradient runs through it.
    """
    g_rule, s_rule = _rule(g_step, eta_g, "g"), _rule(s_step, eta_s, "s")
    g_params = gen.named_weight_parameters()
    with amp():
        gan, fake = generator_objective(gen, disc, batch.masks, batch.images, lambda_l1)
    g_grads = _grads(gan, list(g_params.values()), create_graph)
    timer("gan")
    g_prime = dict(zip(g_params, g_rule(list(g_params.values()), g_grads), strict=True))
    with amp():
        generated = functional_call(gen, g_prime, (batch.aug_masks,))
    s_params = dict(seg.named_parameters())
    s_list = list(s_params.values())
    # two ordinary training forwards (see the module docstring); only the generated half, which depends
    # on A, keeps a graph of its gradient, so the double backward of S runs over B images, not 2B
    seg_input = generated.to(batch.images.dtype)
    if intensity is not None:
        seg_input = intensity(seg_input)
    with amp():
        gen_loss = loss(seg(seg_input), batch.aug_masks)
    s_grads = _grads(gen_loss, s_list, create_graph)
    seg_total = gen_loss
    if gamma > 0:
        with amp():
            real_input = batch.images if intensity is None else intensity(batch.images)
            real_loss = loss(seg(real_input), batch.masks)
        real_grads = _grads(real_loss, s_list, False)
        s_grads = tuple(g + gamma * r for g, r in zip(s_grads, real_grads, strict=True))
        seg_total = gen_loss + gamma * real_loss
    timer("seg")
    val, s_prime = None, None
    if batch.val_images is not None and batch.val_masks is not None:
        s_prime = dict(zip(s_params, s_rule(s_list, s_grads), strict=True))
        # train-mode BatchNorm (batch statistics) on throw-away copies of the buffers
        buffers = {n: b.clone() for n, b in seg.named_buffers()}
        with amp():
            val_logits = functional_call(seg, {**s_prime, **buffers}, (batch.val_images,))
        val = loss(val_logits, batch.val_masks)
        timer("val")
    return UnrolledStep(gan, fake, g_grads, g_prime, generated, seg_total, s_grads, s_prime, val)


def hypergradient(step: UnrolledStep, arch: list[nn.Parameter]) -> tuple[torch.Tensor, ...]:
    """``grad_A L_seg(S', val)`` through S', the generated images, G' and the GAN-level gradient (Eq. 9-11)."""
    if step.val_loss is None:
        raise ValueError("the step has no validation loss: give unrolled_step a validation batch")
    return torch.autograd.grad(step.val_loss, arch, allow_unused=True, materialize_grads=True)


def _apply(opt: torch.optim.Optimizer, params: list[nn.Parameter], grads: tuple[torch.Tensor, ...]) -> None:
    for p, g in zip(params, grads, strict=True):
        p.grad = g.detach()
    opt.step()


def _adam(params: list[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999), weight_decay=weight_decay)


@dataclass
class StepRecord:
    """Detached values of one end-to-end iteration, kept when ``GenSegTrainer(record=True)``.

    For the reference test, which compares every quantity with independent
    formulas; off by default because it holds a copy of G', S' and their gradients.
    """

    g_grads: dict[str, torch.Tensor]
    g_prime: dict[str, torch.Tensor]
    s_grads: dict[str, torch.Tensor]
    s_prime: dict[str, torch.Tensor]
    arch_grads: list[torch.Tensor]
    d_grads: list[torch.Tensor]
    val_loss: torch.Tensor


@dataclass
class StepLosses:
    """Detached losses of one iteration (summed on the device; read at validation time only)."""

    gan: torch.Tensor
    seg: torch.Tensor | None = None
    val: torch.Tensor | None = None


class GenSegTrainer:
    """G, H, S, A and their optimisers, and one iteration of each training mode."""

    def __init__(
        self,
        cfg: GenSegConfig,
        gen: MaskToImageGenerator,
        disc: nn.Module | None,
        seg: nn.Module,
        profile: Profile,
        amp: AmpFactory = _no_amp,
        record: bool = False,
        seg_backbone: str | None = None,
        intensity_rng: torch.Generator | None = None,
    ) -> None:
        self.cfg, self.gen, self.disc, self.seg, self.amp = cfg, gen, disc, seg, amp
        self.profile = profile
        self.recipe = Recipe(profile)
        """The shared segmenter recipe: L_seg at levels 2-3, intensity augmentation of S's inputs."""
        self.intensity_rng = intensity_rng
        """The random stream of the intensity augmentation (needed only when the recipe has it)."""
        self.record_steps = record
        self.record: StepRecord | None = None
        self.iteration = 0
        """End-to-end iterations taken (the first ``cfg.arch_warmup`` have no A step)."""
        self.hypergrad_norm: torch.Tensor | None = None
        """L2 norm of the latest ``grad_A`` (on the device: read it at validation time only); None in warm-up."""
        check_stateless(gen)  # functional_call with G' must compute what the forward computes
        self.g_params = gen.weight_parameters()
        self.d_params = list(disc.parameters()) if disc is not None else []
        """H's weights: empty for a generator without a level-1 partner (BBDM), which takes no H step."""
        self.s_params = list(seg.parameters())
        self.arch = gen.arch_parameters() if cfg.unrolled else []
        if cfg.unrolled and not self.arch:
            raise SpecError("end_to_end needs learnable cells: the generator has no architecture parameters")
        if not cfg.unrolled:
            for a in gen.arch_parameters():
                a.requires_grad_(False)  # alphas stay at their initial (uniform) mixing
        self.opt_g = _adam(self.g_params, profile.gen_lr, profile.gen_weight_decay)
        self.opt_d = _adam(self.d_params, profile.gen_lr, profile.gen_weight_decay) if self.d_params else None
        self.opt_a = _adam(self.arch, profile.arch_lr, profile.arch_weight_decay) if self.arch else None
        # the segmenter's rate follows its backbone (SwinUnet is capped: models.backbones.SEG_LR_MAX)
        self.opt_s, self.sched = make_seg_optimizer(self.s_params, profile, seg_backbone)
        self.device = next(gen.parameters()).device
        """Where G lives."""

    def reset_gan_optimizers(self) -> None:
        """Fresh Adam states for G and H, as when pre-trained weights are loaded into a new model.

        The public code's end-to-end stage loads the pre-trained Pix2Pix weights (not its
        optimisers) and builds new optimisers; the architecture's and S's are untouched (neither
        took a step yet).
        """
        self.opt_g = _adam(self.g_params, self.profile.gen_lr, self.profile.gen_weight_decay)
        if self.d_params:
            self.opt_d = _adam(self.d_params, self.profile.gen_lr, self.profile.gen_weight_decay)

    def lookahead_rules(self) -> tuple[StepRule, StepRule]:
        """The step rules of G' and S' for this iteration (module docstring, *Lookahead*)."""
        if self.cfg.lookahead == "sgd":
            return (
                sgd_rule(float(self.opt_g.param_groups[0]["lr"])),
                sgd_rule(float(self.opt_s.param_groups[0]["lr"])),  # follows ReduceLROnPlateau
            )
        s_rule = adam_lookahead if isinstance(self.opt_s, torch.optim.Adam) else rmsprop_lookahead
        return adam_lookahead(self.opt_g), s_rule(self.opt_s)

    def end_to_end_step(self, batch: GenSegBatch, timer: Timer = _no_timer) -> StepLosses:
        """The three levels, then the real updates of A, G, H and S (see the module docstring)."""
        cfg = self.cfg
        self.iteration += 1
        search = self.iteration > cfg.arch_warmup  # the architecture level runs (module docstring, *Warm-up*)
        g_step, s_step = self.lookahead_rules()
        step = unrolled_step(
            self.gen,
            self.disc,
            self.seg,
            batch,
            g_step=g_step,
            s_step=s_step,
            gamma=cfg.gamma,
            lambda_l1=cfg.lambda_l1,
            create_graph=search,
            amp=self.amp,
            timer=timer,
            loss=self.recipe.loss,
            intensity=self.intensity(),
        )
        arch_grads: tuple[torch.Tensor, ...] = ()
        if search:
            arch_grads = hypergradient(step, self.arch)
            self.hypergrad_norm = torch.linalg.vector_norm(torch.cat([g.flatten() for g in arch_grads]))
            timer("hyper")
        d_grads = self._partner_grads(batch.masks, step.fake, batch.images)
        timer("disc")
        assert step.val_loss is not None and step.s_prime is not None
        if self.record_steps:
            s_names = [n for n, _ in self.seg.named_parameters()]
            self.record = StepRecord(
                g_grads={n: g.detach() for n, g in zip(step.g_prime, step.g_grads, strict=True)},
                g_prime={n: p.detach() for n, p in step.g_prime.items()},
                s_grads={n: g.detach() for n, g in zip(s_names, step.s_grads, strict=True)},
                s_prime={n: p.detach() for n, p in step.s_prime.items()},
                arch_grads=[g.detach() for g in arch_grads],
                d_grads=[g.detach() for g in d_grads],
                val_loss=step.val_loss.detach(),
            )
        # every gradient is taken: only now may weights change in place
        assert self.opt_a is not None
        if search:
            _apply(self.opt_a, self.arch, arch_grads)
        _apply(self.opt_g, self.g_params, step.g_grads)
        if self.opt_d is not None:
            _apply(self.opt_d, self.d_params, d_grads)
        _apply(self.opt_s, self.s_params, step.s_grads)
        timer("update")
        return StepLosses(step.gan_loss.detach(), step.seg_loss.detach(), step.val_loss.detach())

    def intensity(self) -> ImageFn | None:
        """The recipe's intensity augmentation as a function of the images (None without one)."""
        if not self.recipe.intensity:
            return None
        if self.intensity_rng is None:
            raise ValueError("the recipe augments intensity: give GenSegTrainer an intensity_rng")
        rng = self.intensity_rng
        return lambda x: self.recipe.augment(x, rng)

    def seg_real(self, images: torch.Tensor) -> torch.Tensor:
        """Real images as S trains on them (intensity-augmented when the recipe says so)."""
        fn = self.intensity()
        return images if fn is None else fn(images)

    def gan_step(self, masks: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Level 1 alone: one GAN step of G and H (Separate's pre-training, the joint loop's first half)."""
        with self.amp():
            gan, fake = generator_objective(self.gen, self.disc, masks, images, self.cfg.lambda_l1)
        g_grads = _grads(gan, self.g_params, False)
        d_grads = self._partner_grads(masks, fake, images)
        _apply(self.opt_g, self.g_params, g_grads)
        if self.opt_d is not None:
            _apply(self.opt_d, self.d_params, d_grads)
        return gan.detach()

    def _partner_grads(
        self, masks: torch.Tensor, fake: torch.Tensor, images: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """The gradient of H's level-1 objective in H's weights; none without a partner."""
        if self.disc is None:
            return ()
        with self.amp():
            d_loss = partner_objective(self.gen, self.disc, masks, fake, images)
        return _grads(d_loss, self.d_params, False)

    def segmenter_step(
        self, masks: torch.Tensor, images: torch.Tensor, aug_masks: torch.Tensor
    ) -> torch.Tensor:
        """Level 2 with G held fixed: S on generated pairs + gamma * real pairs."""
        with torch.no_grad(), self.amp():
            generated = self.gen(aug_masks)
        seg_generated, seg_images = self.seg_real(generated.to(images.dtype)), self.seg_real(images)
        with self.amp():  # two forwards, as in unrolled_step, so every variant treats BatchNorm alike
            loss = self.recipe.loss(self.seg(seg_generated), aug_masks)
            if self.cfg.gamma > 0:
                loss = loss + self.cfg.gamma * self.recipe.loss(self.seg(seg_images), masks)
        self.opt_s.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_s.step()
        return loss.detach()


# --- artifacts ------------------------------------------------------------------------------


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """``C x H x W`` (or ``C x D x H x W``: middle slice) in [0, 1] -> ``H x W (x 3)`` uint8."""
    if x.dim() == 4:
        x = x[:, x.shape[1] // 2]
    arr = (x.float().clamp(0, 1) * 255).round().byte().cpu().numpy()
    if arr.shape[0] == 1:
        arr = np.repeat(arr, 3, axis=0)
    return np.ascontiguousarray(arr[:3].transpose(1, 2, 0))


@torch.no_grad()
def save_pair_grid(gen: MaskToImageGenerator, masks: torch.Tensor, path: Path, min_tile: int = 96) -> Path:
    """A PNG with augmented masks (top row) and the images G generates from them (bottom row)."""
    was_training = gen.training
    gen.eval()
    images = gen(masks)
    gen.train(was_training)
    tiles = [(_to_uint8(m), _to_uint8(i)) for m, i in zip(masks, images, strict=True)]
    h, w = tiles[0][0].shape[:2]
    scale = max(1, -(-min_tile // max(h, w)))
    th, tw, gap = h * scale, w * scale, 2
    canvas = Image.new("RGB", (len(tiles) * (tw + gap) + gap, 2 * (th + gap) + gap), (255, 255, 255))
    for col, (m, i) in enumerate(tiles):
        for row, arr in enumerate((m, i)):
            tile = Image.fromarray(arr).resize((tw, th), Image.NEAREST)
            canvas.paste(tile, (gap + col * (tw + gap), gap + row * (th + gap)))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


def alpha_shift(alphas: dict[str, dict[str, float]], initial: dict[str, dict[str, float]]) -> float:
    """The largest ``|alpha - alpha_0|`` over every cell and op (``alpha_0`` = 1/K for learnable cells)."""
    return max((abs(v - initial[c][o]) for c, ops in alphas.items() for o, v in ops.items()), default=0.0)


def save_alpha_plot(
    iterations: Sequence[int], alphas: Sequence[dict[str, dict[str, float]]], path: Path, title: str = ""
) -> Path:
    """A PNG with one panel per cell: each candidate op's alpha over the iterations (dashed: 1/K).

    Matplotlib's object API (``Figure`` + the Agg canvas) only: no pyplot, so no
    global backend or figure state is touched in a process that also serves or tests.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cells = list(alphas[0])
    ncols = max(1, math.ceil(len(cells) / 2))
    nrows = math.ceil(len(cells) / ncols)
    fig = Figure(figsize=(2.3 * ncols, 2.1 * nrows + 0.7), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False).flatten()
    for ax, cell in zip(axes, cells, strict=False):
        ops = list(alphas[0][cell])
        for op in ops:
            ax.plot(list(iterations), [a[cell][op] for a in alphas], label=op, linewidth=1.2)
        if len(ops) > 1:
            ax.axhline(1 / len(ops), color="0.6", linestyle="--", linewidth=0.8)
        ax.set_title(cell, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes[len(cells) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    fig.supxlabel("iteration", fontsize=9)
    fig.supylabel("alpha", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


# --- the method -----------------------------------------------------------------------------


def check_foreground(train: SegData, method: str) -> None:
    """GenSeg turns augmented training masks into images: masks without foreground cannot teach it."""
    if len(train) == 0:
        raise DataError(f"method {method!r}: the training set is empty.")
    if float(train.masks.amax()) < 0.5:
        ids = ", ".join(train.case_ids[:3]) + (", ..." if len(train) > 3 else "")
        raise DataError(
            f"method {method!r}: none of the {len(train)} training masks ({ids}) has a foreground pixel. "
            "GenSeg generates training images from augmented real masks, so it needs masks with foreground "
            "(value 1). Check the data source's mask binarisation rule and re-prepare the data, or use a "
            "larger training size."
        )


class GenSegMethod(Method):
    """GenSeg on any backbone of :func:`build_segmenter`, with the variants of :class:`GenSegConfig`."""

    config_model = GenSegConfig

    def build(
        self, train: SegData, ctx: FitContext, cfg: GenSegConfig
    ) -> tuple[MaskToImageGenerator, nn.Module | None, nn.Module]:
        """G, H and S on the device (S built exactly as the supervised baselines build it).

        H is the generator's level-1 partner (:meth:`MaskToImageGenerator.build_partner`):
        the PatchGAN discriminator for the GANs, the encoder for Soft-Intro VAE, None for BBDM.
        """
        channels, dims = int(train.images.shape[1]), train.dims
        spatial = tuple(int(s) for s in train.images.shape[2:])
        seg = build_segmenter(
            self.spec.backbone, channels, dims, self.spec.encoder, self.spec.encoder_weights
        )
        seg = prepare_model(seg, ctx, dims, train.images)
        width = ctx.profile.gen_width
        gen = build_generator(
            cfg.generator,
            channels,
            spatial,
            width=width,
            cells=cfg.cells,
            dims=dims,
            dropout=cfg.generator_dropout,
        )
        disc = gen.build_partner(channels, spatial, width=width)
        gen = prepare_model(gen, ctx, dims)  # type: ignore[assignment]
        if disc is not None:
            disc = prepare_model(disc, ctx, dims)
        return gen, disc, seg

    def fit(self, train: SegData, val: SegData, ctx: FitContext) -> FitResult:
        cfg = GenSegConfig.from_spec(self.spec)
        check_foreground(train, self.spec.name)
        if len(val) == 0:
            raise DataError(
                f"method {self.spec.name!r}: the validation set is empty; GenSeg's A level needs one."
            )
        aug = cfg.augment_config()
        rng = seed_everything(ctx.seed, ctx.device)
        gen, disc, seg = self.build(train, ctx, cfg)
        trainer = GenSegTrainer(
            cfg,
            gen,
            disc,
            seg,
            ctx.profile,
            amp=lambda: autocast(ctx),
            seg_backbone=self.spec.backbone,
            intensity_rng=rng,
        )
        bs = ctx.batch_size
        every = eval_interval(ctx)
        start = time.perf_counter()

        gan_its = 0
        if cfg.pretrains_gan:  # Separate, or the public code's pre-trained end-to-end regime
            gan_its = cfg.gan_iterations or ctx.iterations
            total = gan_its + ctx.iterations
            running = torch.zeros((), device=ctx.device)
            seen = 0
            for it in range(1, gan_its + 1):
                images, masks = sample_batch(train, bs, rng)
                running += trainer.gan_step(masks, images)
                seen += 1
                if it % every == 0 or it == gan_its:
                    mean = running / seen
                    check_finite(mean, "GAN loss (pre-training)", it)
                    ctx.progress(it, total, {"gan": float(mean)})
                    running.zero_()
                    seen = 0
                else:  # per-iteration progress carries no metrics (no host sync)
                    ctx.progress(it, total, {})
            if cfg.separate:
                for p in (*gen.parameters(), *(disc.parameters() if disc is not None else ())):
                    p.requires_grad_(False)  # frozen from here on
            else:  # pretrain: the end-to-end stage starts from these weights with fresh optimisers
                trainer.reset_gan_optimizers()

        monitor = TrainingMonitor(
            seg, val, ctx, trainer.opt_s, trainer.sched, total=gan_its + ctx.iterations, offset=gan_its
        )
        # causal order: a non-finite GAN loss makes G', the generated images and then L_seg non-finite,
        # and the first check that fails names the error
        finite = (() if cfg.separate else ("gan",)) + ("seg",) + (("val",) if cfg.unrolled else ())
        initial_alphas = gen.alphas()
        alpha_traj: list[dict[str, dict[str, float]]] = []
        hyper_traj: list[float | None] = []
        real_per_update = bs if cfg.gamma > 0 else 0
        seg.train()
        gen.train()
        if disc is not None:
            disc.train()
        for it in range(1, ctx.iterations + 1):
            images, masks = sample_batch(train, bs, rng)
            aug_masks = augment_masks(masks, aug, rng)
            if cfg.unrolled:
                val_images, val_masks = sample_batch(val, bs, rng)
                losses = trainer.end_to_end_step(GenSegBatch(masks, images, aug_masks, val_images, val_masks))
            elif cfg.separate:
                losses = StepLosses(
                    torch.zeros((), device=ctx.device), trainer.segmenter_step(masks, images, aug_masks)
                )
            else:
                gan = trainer.gan_step(masks, images)
                losses = StepLosses(gan, trainer.segmenter_step(masks, images, aug_masks))
            assert losses.seg is not None
            monitor.count(real=real_per_update, generated=bs)
            shown = {"seg": losses.seg}
            if not cfg.separate:
                shown["gan"] = losses.gan
            if losses.val is not None:
                shown["val"] = losses.val
            if monitor.step(it, shown, finite) is not None:  # validated: record the architecture
                alpha_traj.append(gen.alphas())
                if cfg.unrolled:
                    norm = trainer.hypergrad_norm
                    hyper_traj.append(None if norm is None else float(norm))  # None: still in warm-up
        monitor.finish(seg)
        last = {
            k[len("loss_") :]: v[-1] for k, v in monitor.trajectory.items() if k.startswith("loss_") and v
        }
        trajectory: dict[str, list[Any]] = {**monitor.trajectory, "alphas": alpha_traj}
        if cfg.unrolled:
            trajectory["hypergrad_norm"] = hyper_traj
        final_alphas = gen.alphas()
        shift = alpha_shift(final_alphas, initial_alphas)

        out_dir = Path(ctx.out_dir)
        grid_masks = augment_masks(train.masks[:8], aug, rng)
        grid = save_pair_grid(gen, grid_masks, out_dir / GRID_FILE)
        plot = save_alpha_plot(
            [0, *monitor.trajectory["iteration"]],  # type: ignore[list-item]
            [initial_alphas, *alpha_traj],
            out_dir / ALPHA_PLOT_FILE,
            f"{self.spec.name} ({cfg.generator}, {cfg.mode}"
            + (f", lookahead {cfg.lookahead}" if cfg.unrolled else "")
            + f"): max |alpha - alpha_0| = {shift:.2e}",
        )
        extras = {
            "empty_val_score": monitor.empty_score,
            "seg_lr": start_lrs(trainer.opt_s)[0],
            "alphas": final_alphas,
            "max_alpha_shift": shift,
            "alphas_form": {
                "learnable": "softmax of each cell's learned logits (the weights the forward pass uses)",
                "fixed": "fixed multi-branch: every alpha is 1",
                "single": "single-branch cells: the 4-2-1 op alone (plain Pix2Pix for the pix2pix generator)",
            }[cfg.cells],
            "mode": cfg.mode,
            "generator": cfg.generator,
            "lookahead": cfg.lookahead if cfg.unrolled else None,
            "arch_warmup": cfg.arch_warmup if cfg.unrolled else None,
            "final_losses": last,
            "train_time_s": time.perf_counter() - start,
        }
        if cfg.pretrains_gan:
            extras["gan_iterations"] = gan_its
        if cfg.pretrain:
            extras["gan_pretraining"] = (
                f"the GAN trained alone for {gan_its} iterations (level 1; alphas uniform), then the "
                "end-to-end stage from those weights with fresh G / H optimisers (the public code's regime)"
            )
        return FitResult(
            predictor=ModulePredictor(seg, bs, ctx.use_amp),
            last_predictor=monitor.final_predictor(bs, ctx.use_amp),
            best_val_score=monitor.best.score,
            best_iteration=monitor.best.iteration,
            iterations=ctx.iterations,
            extras=extras,
            artifacts=[str(grid), str(plot)],
            trajectory=trajectory,
            budget={
                **monitor.budget(),
                "real_per_update": real_per_update,
                "generated_per_update": bs,
                "gan_pretraining_iterations": gan_its,
            },
        )
