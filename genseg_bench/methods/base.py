"""The Method interface: what a method gets, what it returns, what it never sees.

A method trains on ``train`` and selects its checkpoint on ``val``; it never sees
test data. The runner, not the method, evaluates. Everything a method needs from
the outside world (device, seed, budget, progress reporting, a folder for
artifacts) comes in :class:`FitContext`, so methods hold no global state.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from genseg_bench.specs import MethodSpec, Profile

if TYPE_CHECKING:
    from genseg_bench.methods.config import MethodConfig


@dataclass
class SegData:
    """A labelled set held on the device as tensors.

    ``images``: ``N x C x H x W`` (or ``N x C x D x H x W``) float in [0, 1];
    ``masks``: same spatial shape with one channel, float 0/1. Ultra-low-data sets
    are small, so keeping them on the device avoids a data loader altogether.
    """

    images: torch.Tensor
    masks: torch.Tensor
    case_ids: list[str]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def dims(self) -> int:
        return self.images.dim() - 2

    def to(self, device: torch.device | str) -> SegData:
        return SegData(self.images.to(device), self.masks.to(device), self.case_ids)


ProgressFn = Callable[[int, int, dict[str, float]], None]
"""``progress(iteration, total, metrics)``: called by a method as it trains."""


def _no_progress(iteration: int, total: int, metrics: dict[str, float]) -> None:
    return None


@dataclass
class FitContext:
    """Everything a method may use besides its training and validation data."""

    device: torch.device
    seed: int
    profile: Profile
    out_dir: Path
    unlabelled: torch.Tensor | None = None
    """The task's unlabelled pool (``N x C x ...`` images in [0, 1] on the device) for semi-supervised
    methods; None when the task has none. Never a validation or test image (the runner draws it)."""
    progress: ProgressFn = _no_progress
    metric: str = "dice"
    """The task metric (``dice`` or ``jaccard``): validation, scheduler and checkpoint use it."""

    @property
    def iterations(self) -> int:
        return self.profile.iterations

    @property
    def batch_size(self) -> int:
        return self.profile.batch_size

    @property
    def use_amp(self) -> bool:
        """bf16 autocast only on CUDA: on the CPU it is slower and changes results."""
        return self.profile.amp and self.device.type == "cuda"


class Predictor(ABC):
    """A trained model: images in, foreground probabilities out."""

    @abstractmethod
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """``N x C x ...`` images in [0, 1] -> ``N x 1 x ...`` probabilities in [0, 1]."""


@dataclass
class FitResult:
    """What ``fit`` returns: the selected predictor and how it was selected."""

    predictor: Predictor
    best_val_score: float
    best_iteration: int
    iterations: int
    extras: dict[str, Any] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)
    trajectory: dict[str, list[Any]] = field(default_factory=dict)
    """Per validation: iteration, val_score, lr, losses (:class:`~genseg_bench.methods.training.TrainingMonitor`)."""
    budget: dict[str, int] = field(default_factory=dict)
    """Segmenter updates and images processed (:meth:`TrainingMonitor.budget`)."""
    segmenter: dict[str, str] | None = None
    """The network trained, when the method builds its own (nnU-Net plans one): replaces the result's
    ``segmenter``, which otherwise describes what the spec's backbone builds."""
    last_predictor: Predictor | None = None
    """The network as the budget left it, when it is not ``predictor`` (the best validation came
    earlier). The runner scores it beside the selected checkpoint (``extras["final_network"]``): with
    8 validation images the best-validation pick is noisy, and the two numbers side by side tell a
    method's effect from the checkpoint the rule happened to pick. None when the selected checkpoint
    is the final network or the method keeps no copy (nnU-Net)."""


class Method(ABC):
    """A segmentation method of the benchmark.

    Implementations are constructed from a :class:`MethodSpec` and registered by
    ``kind`` (see ``genseg_bench.methods.registry``). Outside packages register
    their classes under the ``genseg_bench.methods`` entry-point group.
    """

    config_model: ClassVar[type[MethodConfig] | None] = None
    """The typed model of ``spec.config`` (a :class:`~genseg_bench.methods.config.MethodConfig`).

    With a model, unknown keys and bad values are errors before training and the
    run identity hashes the config with its defaults filled in; None (an outside
    method that reads its table itself) hashes the table as written.
    """

    def __init__(self, spec: MethodSpec) -> None:
        self.spec = spec

    @abstractmethod
    def fit(self, train: SegData, val: SegData, ctx: FitContext) -> FitResult:
        """Train on ``train``, select the best checkpoint on ``val``, return a predictor."""
