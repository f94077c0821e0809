"""Per-case Dice and Jaccard, then the mean over cases, as the paper does (A.5).

Policy for empty masks (written in every report): an empty prediction on an empty
ground truth scores 1 (nothing to find, nothing found); exactly one side empty
scores 0. Predictions are binarised at probability 0.5. The policy's text lives in
:mod:`genseg_bench.metric_policy` (torch-free, for readers of results).
"""

from __future__ import annotations

import torch

from genseg_bench.metric_policy import EMPTY_POLICY, THRESHOLD

__all__ = ["EMPTY_POLICY", "binarise", "dice_per_case", "jaccard_per_case"]


def _flatten(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != ground truth shape {tuple(target.shape)}")
    n = pred.shape[0]
    return pred.reshape(n, -1).bool(), target.reshape(n, -1).bool()


def binarise(probs: torch.Tensor, threshold: float = THRESHOLD) -> torch.Tensor:
    """Binary mask from probabilities (``>= threshold``)."""
    return probs >= threshold


def dice_per_case(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Dice of each case of a batch of binary masks (``N x ...``), empty-mask policy applied."""
    p, t = _flatten(pred, target)
    inter = (p & t).sum(1).double()
    total = p.sum(1).double() + t.sum(1).double()
    return torch.where(total == 0, torch.ones_like(inter), 2 * inter / total.clamp_min(1))


def jaccard_per_case(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Jaccard (IoU) of each case of a batch of binary masks, empty-mask policy applied."""
    p, t = _flatten(pred, target)
    inter = (p & t).sum(1).double()
    union = (p | t).sum(1).double()
    return torch.where(union == 0, torch.ones_like(inter), inter / union.clamp_min(1))
