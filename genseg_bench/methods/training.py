"""Pieces every segmenter-training method shares, so all methods obey one rule set.

Same loss, same optimiser (the paper's RMSprop with ReduceLROnPlateau on the
validation score), same validation schedule and the same best-validation
checkpoint rule: a fair comparison needs these identical across methods.

:class:`TrainingMonitor` owns the rule set: validation every ``eval_every``
iterations (a fixed number, never tied to n: a plateau scheduler stepped once
per epoch of 5 iterations froze runs within ~100 iterations), the scheduler step
and checkpoint on the task's own metric, the stored trajectory (iteration,
validation score, learning rate, loss) and the budget actually given to the
segmenter (updates and images processed), so a reader can tell a gain of
generation from a gain of batch size.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from genseg_bench.errors import TrainingDiverged
from genseg_bench.methods.base import FitContext, Predictor, SegData
from genseg_bench.methods.recipe import with_input_norm
from genseg_bench.metrics import binarise, dice_per_case, jaccard_per_case
from genseg_bench.models.backbones import seg_lr
from genseg_bench.specs import Profile

ParamGroups = Sequence[tuple[Iterable[nn.Parameter], str | None]]
"""``(parameters, backbone)`` per network: each network's learning rate follows its backbone."""


def make_seg_optimizer(
    params: Iterable[nn.Parameter] | ParamGroups, profile: Profile, backbone: str | None = None
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.ReduceLROnPlateau]:
    """The profile's ``seg_optimizer`` + ReduceLROnPlateau(mode=max).

    ``rmsprop`` (lr, momentum, weight decay) is A.6 of the paper; ``adam`` is torch's Adam
    with the profile's weight decay as L2 (GenSeg's optimizer lookahead reproduces both).

    ``params`` of one network (whose ``backbone`` sets its rate), or ``(parameters,
    backbone)`` pairs, one parameter group each (a semi-supervised pair of a CNN and a
    transformer). A backbone's rate is the profile's, capped where the network does not
    train above some rate (:data:`~genseg_bench.models.backbones.SEG_LR_MAX`); the
    plateau floor is ``plateau_min_lr_factor`` of each group's own start.
    """
    items = list(params)
    if items and isinstance(items[0], tuple):
        groups = [(list(p), b) for p, b in items]  # type: ignore[misc]
    else:
        groups = [(items, backbone)]
    lrs = [seg_lr(profile.seg_lr, b) for _, b in groups]
    param_groups = [{"params": p, "lr": lr, "start_lr": lr} for (p, _), lr in zip(groups, lrs, strict=True)]
    opt: torch.optim.Optimizer
    if profile.seg_optimizer == "adam":
        opt = torch.optim.Adam(param_groups, lr=lrs[0], weight_decay=profile.seg_weight_decay)
    else:
        opt = torch.optim.RMSprop(
            param_groups, lr=lrs[0], momentum=profile.seg_momentum, weight_decay=profile.seg_weight_decay
        )
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt,
        mode="max",
        patience=profile.plateau_patience,
        min_lr=[lr * profile.plateau_min_lr_factor for lr in lrs],
    )
    return opt, sched


def start_lrs(opt: torch.optim.Optimizer) -> list[float]:
    """Each parameter group's starting learning rate (for the result: what a capped backbone ran at).

    Read from ``start_lr``, which :func:`make_seg_optimizer` stores and no scheduler changes, so it
    is the rate the run started at however late it is asked (``lr`` is the decayed one by then; no
    fallback to it, which would record exactly that wrong rate for an optimiser built elsewhere).
    """
    return [float(g["start_lr"]) for g in opt.param_groups]


def autocast(ctx: FitContext) -> contextlib.AbstractContextManager[None]:
    """bf16 autocast on CUDA when the profile allows it; a no-op elsewhere."""
    if ctx.use_amp:
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def eval_interval(ctx: FitContext) -> int:
    """Iterations between validations: the profile's fixed interval (independent of n)."""
    return max(1, int(ctx.profile.eval_every))


def sample_batch(data: SegData, batch_size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A random batch (with replacement across batches, without within one when possible)."""
    n = len(data)
    if batch_size <= n:
        idx = torch.randperm(n, generator=gen, device=data.images.device)[:batch_size]
    else:
        idx = torch.randint(n, (batch_size,), generator=gen, device=data.images.device)
    return data.images[idx], data.masks[idx]


@torch.no_grad()
def predict_probs(model: nn.Module, images: torch.Tensor, batch_size: int, amp: bool) -> torch.Tensor:
    """Sigmoid probabilities in eval mode, batch by batch."""
    was_training = model.training
    model.eval()
    outs = []
    for i in range(0, images.shape[0], batch_size):
        x = images[i : i + batch_size]
        if amp and x.is_cuda:
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                logits = model(x)
        else:
            logits = model(x)
        outs.append(torch.sigmoid(logits.float()))
    model.train(was_training)
    return torch.cat(outs)


def metric_per_case(metric: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The task metric's per-case function (``dice`` or ``jaccard``)."""
    return jaccard_per_case if metric == "jaccard" else dice_per_case


def validation_score(
    model: nn.Module, val: SegData, batch_size: int, amp: bool, metric: str = "dice"
) -> float:
    """Mean per-case task metric on the validation set: the checkpoint-selection score of every method."""
    probs = predict_probs(model, val.images, batch_size, amp)
    return float(metric_per_case(metric)(binarise(probs), val.masks > 0.5).mean())


def empty_prediction_score(val: SegData, metric: str = "dice") -> float:
    """The validation score of predicting nothing: a run whose best score is this learned nothing."""
    target = val.masks > 0.5
    return float(metric_per_case(metric)(torch.zeros_like(target), target).mean())


class ModulePredictor(Predictor):
    """Wraps a trained segmenter as a :class:`Predictor`."""

    def __init__(self, model: nn.Module, batch_size: int = 16, amp: bool = False) -> None:
        self.model = model
        self.batch_size = batch_size
        self.amp = amp

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return predict_probs(self.model, images, self.batch_size, self.amp)


@dataclass
class BestCheckpoint:
    """Keeps a copy of the weights at the best validation score (ties keep the earlier)."""

    score: float = -math.inf
    iteration: int = 0
    state: dict[str, torch.Tensor] = field(default_factory=dict)

    def update(self, model: nn.Module, score: float, iteration: int) -> bool:
        if score > self.score:
            self.score, self.iteration = score, iteration
            self.state = copy.deepcopy(model.state_dict())
            return True
        return False

    def restore(self, model: nn.Module) -> nn.Module:
        if self.state:
            model.load_state_dict(self.state)
        return model


def check_finite(value: torch.Tensor, what: str, iteration: int) -> None:
    """Raise :class:`TrainingDiverged` on NaN/inf (one host sync: call it at validation time only)."""
    if not bool(torch.isfinite(value).all()):
        raise TrainingDiverged(f"{what} became {float(value)} at iteration {iteration}; the run diverged.")


def seed_everything(seed: int, device: torch.device) -> torch.Generator:
    """Seed torch's global RNG (weight init) and return a generator for sampling on ``device``."""
    torch.manual_seed(seed)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def prepare_model(
    model: nn.Module, ctx: FitContext, dims: int, train_images: torch.Tensor | None = None
) -> nn.Module:
    """Move to the device; channels-last on CUDA for 2D convolutions.

    With ``train_images`` the model is a segmenter: it goes behind the profile's input
    normalisation (:func:`~genseg_bench.methods.recipe.with_input_norm`, statistics from
    those images), so every method's segmenter gets the recipe's normalisation here.
    """
    if train_images is not None:
        model = with_input_norm(model, ctx.profile, train_images)
    model = model.to(ctx.device)
    if ctx.device.type == "cuda" and dims == 2:
        model = model.to(memory_format=torch.channels_last)
    return model


class TrainingMonitor:
    """Validation, scheduler, checkpoint, trajectory and budget of one segmenter's training.

    Every method calls :meth:`count` once per segmenter update and :meth:`step`
    once per iteration; on every ``eval_every``-th iteration (and the last) it
    validates with the task metric, steps ReduceLROnPlateau on that score (from
    the first score that beats predicting nothing, when the profile says so), keeps
    the best checkpoint and records ``(iteration, val_score, lr, losses)``.
    Losses are accumulated on the device and read only at validation time, so the
    inner loop has no host sync.
    """

    def __init__(
        self,
        model: nn.Module,
        val: SegData,
        ctx: FitContext,
        opt: torch.optim.Optimizer,
        sched: torch.optim.lr_scheduler.ReduceLROnPlateau,
        *,
        total: int | None = None,
        offset: int = 0,
    ) -> None:
        self.model, self.val, self.ctx, self.opt, self.sched = model, val, ctx, opt, sched
        self.every = eval_interval(ctx)
        self.total = total if total is not None else ctx.iterations
        self.offset = offset
        self.best = BestCheckpoint()
        self.trajectory: dict[str, list[float | int]] = {"iteration": [], "val_score": [], "lr": []}
        self.sums: dict[str, torch.Tensor] = {}
        self.seen = 0
        self.updates = 0
        self.real_images = 0
        self.generated_images = 0
        self.empty_score = empty_prediction_score(val, ctx.metric)
        self.armed_at: int | None = None
        """The first validation that beat the empty prediction: the plateau scheduler steps from here on."""
        self.final: nn.Module | None = None
        """The network at the end of the budget when the best checkpoint is another (set by :meth:`finish`)."""

    def count(self, real: int, generated: int = 0) -> None:
        """One segmenter update that processed ``real`` real (possibly augmented) and ``generated`` images."""
        self.updates += 1
        self.real_images += real
        self.generated_images += generated

    def lr(self) -> float:
        return float(self.opt.param_groups[0]["lr"])

    def step(self, it: int, losses: dict[str, torch.Tensor], finite: tuple[str, ...] = ()) -> float | None:
        """Accumulate this iteration's losses; validate when due. Returns the score when it validated."""
        for k, v in losses.items():
            self.sums[k] = self.sums[k] + v.detach() if k in self.sums else v.detach().clone()
        self.seen += 1
        if not (it % self.every == 0 or it == self.ctx.iterations):
            self.ctx.progress(self.offset + it, self.total, {})
            return None
        means = {k: v / max(self.seen, 1) for k, v in self.sums.items()}
        for k in finite or tuple(means):
            if k in means:
                check_finite(means[k], _LOSS_NAMES.get(k, f"{k} loss"), it)
        lr = self.lr()  # the lr this stretch trained with, before the scheduler reacts
        score = validation_score(self.model, self.val, self.ctx.batch_size, self.ctx.use_amp, self.ctx.metric)
        if self.armed_at is None and (
            not self.ctx.profile.plateau_wait_for_foreground or score > self.empty_score + 1e-9
        ):
            self.armed_at = it
        if self.armed_at is not None:
            self.sched.step(score)
        self.best.update(self.model, score, it)
        shown = {k: float(v) for k, v in means.items()}
        self.trajectory["iteration"].append(it)
        self.trajectory["val_score"].append(score)
        self.trajectory["lr"].append(lr)
        for k, v in shown.items():
            self.trajectory.setdefault(f"loss_{k}", []).append(v)
        self.ctx.progress(
            self.offset + it, self.total, {**shown, "val": score, "best": self.best.score, "lr": lr}
        )
        self.sums = {}
        self.seen = 0
        return score

    def budget(self) -> dict[str, int]:
        """What the segmenter was given; ``plateau_armed_at`` is 0 if the scheduler never stepped."""
        return {
            "plateau_armed_at": self.armed_at or 0,
            "updates": self.updates,
            "images_seen": self.real_images + self.generated_images,
            "real_images_seen": self.real_images,
            "generated_images_seen": self.generated_images,
            "eval_every": self.every,
        }

    def finish(self, model: nn.Module) -> nn.Module:
        """Restore the best checkpoint (the rule every method shares), keeping the final weights aside.

        ``self.final`` is a copy of ``model`` as the budget left it when the best validation came
        earlier (so it is another network), else None: :meth:`final_predictor` hands it to the runner.
        """
        last = self.trajectory["iteration"][-1] if self.trajectory["iteration"] else None
        self.final = None if last is None or self.best.iteration == last else copy.deepcopy(model)
        return self.best.restore(model)

    def final_predictor(self, batch_size: int, amp: bool) -> Predictor | None:
        """The final network as a predictor (:attr:`FitResult.last_predictor`); call after :meth:`finish`."""
        return None if self.final is None else ModulePredictor(self.final, batch_size, amp)


_LOSS_NAMES = {
    "seg": "segmentation loss",
    "loss": "segmentation loss",
    "gan": "GAN loss",
    "val": "unrolled validation loss",
}
