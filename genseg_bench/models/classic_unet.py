"""The classic UNet of Ronneberger et al. (2015), trained from scratch (backbone ``unet-classic``).

The suite's default ``unet`` is segmentation_models_pytorch's UNet with a ResNet-18
encoder. The paper's public code (not its text) uses a plain UNet instead, so this
module provides one for paper-faithful runs:

* four levels of (3x3 conv + BatchNorm + ReLU) x 2, each followed by 2x2 max pooling,
  and a fifth (bottleneck) level: widths ``w, 2w, 4w, 8w, 16w`` with ``w = 64`` as in
  the original paper (a smaller ``width`` keeps CPU runs and tests cheap);
* a decoder that upsamples by 2 (a 2x2 transposed convolution, the original
  "up-convolution", or bilinear interpolation), concatenates the encoder's skip
  features and applies the same double convolution;
* a 1x1 convolution head giving one logit per pixel.

Two deliberate departures from the 2015 paper, as in the common PyTorch
re-implementations: convolutions are padded (the output has the input's size, so
no overlap-tile strategy is needed) and every convolution is followed by
BatchNorm. Inputs of any height and width are zero-padded on the bottom/right to
a multiple of 16 (four poolings) and the logits are cropped back.
"""

from __future__ import annotations

import torch
from torch import nn

_LEVELS = 4
_MULTIPLE = 2**_LEVELS


class DoubleConv(nn.Sequential):
    """(3x3 conv, BatchNorm, ReLU) twice: one level of the UNet.

    The convolutions have no bias: the BatchNorm that follows each one has its own.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class Up(nn.Module):
    """Upsample the deeper features by 2, concatenate the skip features, double conv.

    ``in_channels`` is the width of the deeper level, ``out_channels`` that of the
    skip (half of it). With a transposed convolution the upsampling also halves the
    width (as in the original); bilinear upsampling keeps it and the double
    convolution takes ``in_channels + out_channels`` channels.
    """

    def __init__(self, in_channels: int, out_channels: int, bilinear: bool) -> None:
        super().__init__()
        self.up: nn.Module
        if bilinear:
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            self.conv = DoubleConv(in_channels + out_channels, out_channels)
        else:
            self.up = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
            self.conv = DoubleConv(2 * out_channels, out_channels)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(deep)], dim=1))


class ClassicUNet(nn.Module):
    """Classic 2D UNet mapping ``N x C x H x W`` images to ``N x classes x H x W`` logits.

    Args:
        in_channels: image channels (any number; the first convolution takes them all).
        classes: output channels (1 for the benchmark's binary masks).
        width: channels of the first level; level ``k`` has ``width * 2**k``. 64 is
            the original (about 31M parameters); 16 or 32 train much faster on a CPU.
        bilinear: bilinear upsampling instead of 2x2 transposed convolutions.
    """

    def __init__(
        self, in_channels: int = 3, classes: int = 1, width: int = 64, bilinear: bool = False
    ) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"ClassicUNet width must be a positive integer, got {width}")
        widths = [width * 2**k for k in range(_LEVELS + 1)]
        self.width = width
        self.bilinear = bilinear
        self.inc = DoubleConv(in_channels, widths[0])
        self.pool = nn.MaxPool2d(2)
        self.downs = nn.ModuleList(DoubleConv(widths[k], widths[k + 1]) for k in range(_LEVELS))
        self.ups = nn.ModuleList(Up(widths[k + 1], widths[k], bilinear) for k in reversed(range(_LEVELS)))
        self.head = nn.Conv2d(widths[0], classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = nn.functional.pad(x, (0, (-w) % _MULTIPLE, 0, (-h) % _MULTIPLE))
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(self.pool(skips[-1])))
        y = skips.pop()
        for up in self.ups:
            y = up(y, skips.pop())
        return self.head(y)[..., :h, :w]
