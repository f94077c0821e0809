"""A method from outside genseg-bench: the worked example of docs/submitting.md, installed on the fly by the tests.

It registers itself in the ``genseg_bench.methods`` entry-point group (the tests
write that metadata into a temporary ``.dist-info``), so ``genseg-bench run
--methods toy-threshold`` finds it without any change to genseg-bench.
"""

from __future__ import annotations

import torch

from genseg_bench.methods.base import FitContext, FitResult, Method, Predictor, SegData


def _dice(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean per-case Dice of binary masks (empty on empty scores 1, as genseg-bench scores it)."""
    dims = tuple(range(1, pred.dim()))
    inter = (pred * target).sum(dims)
    total = pred.sum(dims) + target.sum(dims)
    return float(torch.where(total > 0, 2 * inter / total.clamp_min(1e-9), torch.ones_like(total)).mean())


class ThresholdPredictor(Predictor):
    """Foreground where the mean intensity is above (or below) a learned threshold."""

    def __init__(self, threshold: float, brighter: bool) -> None:
        self.threshold = threshold
        self.brighter = brighter

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        gray = images.mean(dim=1, keepdim=True)
        margin = gray - self.threshold if self.brighter else self.threshold - gray
        return torch.sigmoid(50.0 * margin)


class ThresholdMethod(Method):
    """Intensity threshold chosen on the training set (a toy method for the submission walkthrough)."""

    spec_defaults = {
        "description": "Toy outside method: a global intensity threshold chosen on the training set.",
        "backbone": "threshold",
        "config": {"candidates": 16},
    }

    def fit(self, train: SegData, val: SegData, ctx: FitContext) -> FitResult:
        candidates = int(self.spec.config.get("candidates", 16))
        gray = train.images.mean(dim=1, keepdim=True)
        target = train.masks > 0.5
        best = (-1.0, 0.5, True)
        for i, t in enumerate(torch.linspace(0.0, 1.0, candidates).tolist()):
            for brighter in (True, False):
                score = _dice((gray > t) if brighter else (gray < t), target)
                best = max(best, (score, t, brighter))
            ctx.progress(i + 1, candidates, {"best_train_dice": best[0]})
        predictor = ThresholdPredictor(best[1], best[2])
        val_score = _dice(predictor.predict(val.images) > 0.5, val.masks > 0.5)
        return FitResult(
            predictor=predictor,
            best_val_score=val_score,
            best_iteration=candidates,
            iterations=candidates,
            extras={"threshold": best[1], "brighter": best[2]},
        )
