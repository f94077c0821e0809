"""The shared segmenter recipe: loss, input normalisation and intensity augmentation.

A comparison of methods measures the methods only if every segmenter trains the
same way, so these three are fields of the profile (``seg_loss``, ``input_norm``,
``intensity_aug``), recorded in every result, and applied by one code path here
for every method: the supervised baselines, GenSeg (to real *and* generated
images, inside its unrolled step), WGAN and the semi-supervised pairs.

* **Loss.** ``bce`` is the paper's L_seg; ``bce+dice`` is ``0.5 BCE + 0.5 (1 -
  soft Dice)`` with the soft Dice over the whole batch (as the public GenSeg code
  and nnU-Net's Dice + CE). Both are differentiable in the logits, so GenSeg's
  hypergradient runs through either.
* **Normalisation** lives in the network (:class:`InputNorm`), so every image a
  segmenter ever sees (real, generated, validation, test, unlabelled) passes it
  and no caller can forget it.
* **Intensity augmentation** (:func:`intensity_augment`) follows nnU-Net's ranges:
  multiplicative brightness ``U(0.75, 1.25)`` with p = 0.15, contrast about the
  image mean ``U(0.75, 1.25)`` with p = 0.15, gamma ``U(0.7, 1.5)`` on the image
  rescaled to [0, 1] with p = 0.3, each per image. It is differentiable in the
  images (GenSeg's generated images keep their graph) and draws its random
  numbers from the run's generator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genseg_bench.specs import Profile

BRIGHTNESS = (0.75, 1.25, 0.15)
"""Multiplicative brightness: (low, high, probability per image)."""
CONTRAST = (0.75, 1.25, 0.15)
"""Contrast about each image's mean (range clipped to the image's own min and max)."""
GAMMA = (0.7, 1.5, 0.3)
"""Gamma on the image rescaled to [0, 1] by its own min and max, then mapped back."""


def seg_loss(logits: torch.Tensor, masks: torch.Tensor, kind: str = "bce") -> torch.Tensor:
    """The segmenter loss ``kind`` (``bce`` or ``bce+dice``), in float32 or better (bf16 is upcast)."""
    dtype = torch.promote_types(logits.dtype, torch.float32)
    logits, masks = logits.to(dtype), masks.to(dtype)
    bce = F.binary_cross_entropy_with_logits(logits, masks)
    if kind == "bce":
        return bce
    if kind == "bce+dice":
        prob = torch.sigmoid(logits)
        soft_dice = (2 * (prob * masks).sum() + 1e-5) / (prob.sum() + masks.sum() + 1e-5)
        return 0.5 * bce + 0.5 * (1 - soft_dice)
    raise ValueError(f"unknown segmenter loss {kind!r}: use 'bce' or 'bce+dice'")


def _uniform(
    n: int, low: float, high: float, prob: float, gen: torch.Generator, like: torch.Tensor
) -> torch.Tensor:
    """Per-image factors: ``U(low, high)`` with probability ``prob``, else 1 (shape ``n x 1 x 1 ...``)."""
    shape = (n,) + (1,) * (like.dim() - 1)
    u = torch.rand(shape, generator=gen, device=like.device)
    on = torch.rand(shape, generator=gen, device=like.device) < prob
    factor = low + (high - low) * u
    return torch.where(on, factor, torch.ones_like(factor)).to(like.dtype)


def intensity_augment(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Brightness, contrast and gamma per image (module docstring); differentiable in ``images``."""
    n = int(images.shape[0])
    dims = tuple(range(1, images.dim()))
    x = images * _uniform(n, *BRIGHTNESS, gen, images)
    lo, hi = x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True)
    mean = x.mean(dim=dims, keepdim=True)
    x = torch.minimum(torch.maximum((x - mean) * _uniform(n, *CONTRAST, gen, x) + mean, lo), hi)
    lo, hi = x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True)
    span = (hi - lo).clamp_min(1e-6)
    unit = ((x - lo) / span).clamp(1e-6, 1.0)
    return unit ** _uniform(n, *GAMMA, gen, x) * span + lo


class Recipe:
    """The profile's recipe as callables: ``loss(logits, masks)`` and ``augment(images, gen)``."""

    def __init__(self, profile: Profile) -> None:
        self.loss_kind = profile.seg_loss
        self.intensity = profile.intensity_aug

    def loss(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return seg_loss(logits, masks, self.loss_kind)

    def augment(self, images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """The intensity augmentation when the recipe has it; the images unchanged otherwise."""
        return intensity_augment(images, gen) if self.intensity else images


class InputNorm(nn.Module):
    """A segmenter behind an input z-score: per image (``image``) or with fixed channel statistics.

    ``dataset``: ``mean`` and ``std`` (one value per channel, the training images') are
    buffers, saved with the network and applied unchanged to every later input.
    """

    def __init__(
        self, net: nn.Module, mode: str, mean: torch.Tensor | None = None, std: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        if mode not in ("image", "dataset"):
            raise ValueError(f"unknown input normalisation {mode!r}: use 'image' or 'dataset'")
        self.net = net
        self.mode = mode
        if mode == "dataset":
            if mean is None or std is None:
                raise ValueError("dataset normalisation needs the training images' mean and std")
            self.register_buffer("mean", mean.detach().clone().float())
            self.register_buffer("std", std.detach().clone().float().clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        if self.mode == "dataset":
            x = (x - self.mean.view(shape).to(x.dtype)) / self.std.view(shape).to(x.dtype)
        else:
            dims = tuple(range(2, x.dim()))
            mean = x.mean(dim=dims, keepdim=True)
            std = x.std(dim=dims, keepdim=True).clamp_min(1e-6)
            x = (x - mean) / std
        return self.net(x)


def with_input_norm(net: nn.Module, profile: Profile, train_images: torch.Tensor) -> nn.Module:
    """``net`` behind the profile's ``input_norm`` (itself when ``none``); statistics from ``train_images``."""
    if profile.input_norm == "none":
        return net
    if profile.input_norm == "dataset":
        dims = [0, *range(2, train_images.dim())]
        images = train_images.float()
        return InputNorm(net, "dataset", images.mean(dim=dims), images.std(dim=dims))
    return InputNorm(net, profile.input_norm)
