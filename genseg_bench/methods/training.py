"""Pieces every segmenter-training method shares, so all methods obey one rule set.

Same loss, same optimiser (the paper's RMSprop with ReduceLROnPlateau on the
validation score), same validation schedule and the same best-validation
checkpoint rule: a fair comparison needs these identical across methods.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from genseg_bench.errors import TrainingDiverged
from genseg_bench.methods.base import FitContext, Predictor, SegData
from genseg_bench.metrics import binarise, dice_per_case
from genseg_bench.specs import Profile


def seg_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Pixel-wise binary cross-entropy (the paper's L_seg), in float32 or better (bf16 is upcast, float64 kept)."""
    dtype = torch.promote_types(logits.dtype, torch.float32)
    return F.binary_cross_entropy_with_logits(logits.to(dtype), masks.to(dtype))


def make_seg_optimizer(
    params: Iterator[nn.Parameter] | list[nn.Parameter], profile: Profile
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.ReduceLROnPlateau]:
    """RMSprop (lr, momentum 0.9, weight decay) + ReduceLROnPlateau(mode=max), as in A.6."""
    opt = torch.optim.RMSprop(
        params, lr=profile.seg_lr, momentum=profile.seg_momentum, weight_decay=profile.seg_weight_decay
    )
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", patience=profile.plateau_patience)
    return opt, sched


def autocast(ctx: FitContext) -> contextlib.AbstractContextManager[None]:
    """bf16 autocast on CUDA when the profile allows it; a no-op elsewhere."""
    if ctx.use_amp:
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def eval_interval(n_train: int, ctx: FitContext) -> int:
    """Validate once per epoch (paper) unless the profile fixes an interval."""
    if ctx.profile.eval_every:
        return ctx.profile.eval_every
    return max(1, math.ceil(n_train / ctx.batch_size))


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


def validation_dice(model: nn.Module, val: SegData, batch_size: int, amp: bool) -> float:
    """Mean per-case Dice on the validation set: the checkpoint-selection score of every method."""
    probs = predict_probs(model, val.images, batch_size, amp)
    score = float(dice_per_case(binarise(probs), val.masks > 0.5).mean())
    return score


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
    history: list[tuple[int, float]] = field(default_factory=list)

    def update(self, model: nn.Module, score: float, iteration: int) -> bool:
        self.history.append((iteration, score))
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


def prepare_model(model: nn.Module, ctx: FitContext, dims: int) -> nn.Module:
    """Move to the device; channels-last on CUDA for 2D convolutions."""
    model = model.to(ctx.device)
    if ctx.device.type == "cuda" and dims == 2:
        model = model.to(memory_format=torch.channels_last)
    return model
