"""DCGAN-style generator and critic of the WGAN baselines: image and mask as one sample.

Neff et al. (2018) let a WGAN generate an image together with its segmentation
mask by giving the generator one more output channel and the critic one more
input channel; nothing else about the GAN changes. The networks here are the
DCGAN pair of the original WGAN code (Arjovsky et al. 2017,
github.com/martinarjovsky/WassersteinGAN, ``models/dcgan.py``), rewritten for
any spatial shape and for 2D or 3D:

* generator: ``z`` (N x nz, Gaussian) -> transposed convolution to a ``base``
  grid (4 px per side or a little more), then stride-2 4x4 transposed
  convolutions (BatchNorm, ReLU) that double the grid until it covers the task's
  shape, and a Tanh; the output is cropped to the task's shape, so sizes that
  are not ``4 * 2^k`` work. Channels: ``C`` image channels then the mask channel.
* critic: the mirror, stride-2 4x4 convolutions with LeakyReLU(0.2), then one
  convolution over the whole remaining grid to a scalar per sample (no sigmoid:
  a critic scores, it does not classify). Per-sample scores, not the batch mean
  of the original code, because the gradient penalty needs them.

Normalisation of the critic: ``"batch"`` (BatchNorm, the original WGAN code) or
``"layer"`` (GroupNorm with one group, i.e. layer normalisation over channels
and space with a per-channel affine). Gulrajani et al. (2017, Sec. 4) drop
BatchNorm from the critic of WGAN-GP because the penalty is taken per sample
and BatchNorm makes a sample's score depend on the rest of its batch; they
recommend layer normalisation instead. Channel widths double per level as in
DCGAN, capped at 8x ``width`` as Pix2Pix caps them, so that 256 px does not put
2,048 channels on the 4 px grid.

Pixels travel in [-1, 1] (the Tanh range, as DCGAN normalises its data):
:func:`encode_pairs` maps images in [0, 1] and 0/1 masks there,
:func:`decode_pairs` maps generated samples back and thresholds the mask
channel at 0.5 (Tanh output 0), so generated masks are binary like real ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

CriticNorm = Literal["batch", "layer"]

CHANNEL_CAP = 8
"""Largest channel multiplier of ``width`` at any level (Pix2Pix's ``min(2**i, 8)``)."""


def up_levels(spatial: Sequence[int]) -> int:
    """Stride-2 levels between the base grid and the output: the base keeps >= 4 px on its shortest side."""
    return max(1, int(math.floor(math.log2(max(min(spatial), 1) / 4))))


def _conv(dims: int, transposed: bool) -> type[nn.Module]:
    if dims == 2:
        return nn.ConvTranspose2d if transposed else nn.Conv2d
    if dims == 3:
        return nn.ConvTranspose3d if transposed else nn.Conv3d
    raise ValueError(f"dims must be 2 or 3, got {dims}")


def _batch_norm(dims: int, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if dims == 2 else nn.BatchNorm3d(channels)


def _dcgan_init(module: nn.Module) -> None:
    """The WGAN code's ``weights_init``: conv weights N(0, 0.02), BatchNorm scale N(1, 0.02), shift 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Conv3d | nn.ConvTranspose2d | nn.ConvTranspose3d):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm3d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def _width(width: int, level: int) -> int:
    return width * min(2**level, CHANNEL_CAP)


class PairGenerator(nn.Module):
    """DCGAN generator of ``(image, mask)`` samples: ``N x noise_dim`` -> ``N x (C + 1) x *spatial`` in [-1, 1]."""

    def __init__(
        self, image_channels: int, spatial: Sequence[int], *, width: int = 64, noise_dim: int = 100
    ) -> None:
        super().__init__()
        self.spatial = tuple(int(s) for s in spatial)
        self.dims = len(self.spatial)
        self.noise_dim = noise_dim
        self.image_channels = image_channels
        levels = up_levels(self.spatial)
        self.base = tuple(math.ceil(s / 2**levels) for s in self.spatial)
        convt = _conv(self.dims, transposed=True)
        cin = _width(width, levels - 1)
        layers: list[nn.Module] = [
            convt(noise_dim, cin, self.base, 1, 0, bias=False),
            _batch_norm(self.dims, cin),
            nn.ReLU(),
        ]
        for level in range(levels - 2, -1, -1):
            cout = _width(width, level)
            layers += [convt(cin, cout, 4, 2, 1, bias=False), _batch_norm(self.dims, cout), nn.ReLU()]
            cin = cout
        layers += [convt(cin, image_channels + 1, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        _dcgan_init(self)

    def noise(
        self, n: int, gen: torch.Generator | None = None, device: torch.device | None = None
    ) -> torch.Tensor:
        """``n`` latent vectors from N(0, I) (the WGAN and WGAN-GP codes' prior)."""
        dtype = next(self.parameters()).dtype
        return torch.randn(n, self.noise_dim, generator=gen, device=device, dtype=dtype)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.net(z.reshape(z.shape[0], self.noise_dim, *([1] * self.dims)))
        crop = (slice(None), slice(None), *(slice(0, s) for s in self.spatial))
        return out[crop]


class PairCritic(nn.Module):
    """WGAN critic on ``(image, mask)`` samples in [-1, 1]: ``N x (C + 1) x *spatial`` -> ``N`` scores."""

    def __init__(
        self,
        image_channels: int,
        spatial: Sequence[int],
        *,
        width: int = 64,
        norm: CriticNorm = "batch",
    ) -> None:
        super().__init__()
        if norm not in ("batch", "layer"):
            raise ValueError(f"critic norm must be 'batch' or 'layer', got {norm!r}")
        self.spatial = tuple(int(s) for s in spatial)
        self.dims = len(self.spatial)
        levels = up_levels(self.spatial)
        conv = _conv(self.dims, transposed=False)
        cin = _width(width, 0)
        layers: list[nn.Module] = [conv(image_channels + 1, cin, 4, 2, 1, bias=False), nn.LeakyReLU(0.2)]
        for level in range(1, levels):
            cout = _width(width, level)
            normaliser = _batch_norm(self.dims, cout) if norm == "batch" else nn.GroupNorm(1, cout)
            layers += [conv(cin, cout, 4, 2, 1, bias=False), normaliser, nn.LeakyReLU(0.2)]
            cin = cout
        remaining = tuple(s // 2**levels for s in self.spatial)  # a 4-2-1 convolution floors s / 2
        layers.append(conv(cin, 1, remaining, 1, 0, bias=False))
        self.net = nn.Sequential(*layers)
        _dcgan_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).reshape(x.shape[0])


def encode_pairs(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] and 0/1 masks -> one ``N x (C + 1) x ...`` sample in [-1, 1], mask last."""
    return torch.cat([images, masks.to(images.dtype)], 1) * 2 - 1


def decode_pairs(samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Generated samples in [-1, 1] -> images in [0, 1] and masks thresholded at 0.5 (float 0/1)."""
    images = ((samples[:, :-1] + 1) / 2).clamp(0, 1)
    masks = ((samples[:, -1:] + 1) / 2 > 0.5).to(samples.dtype)
    return images, masks
