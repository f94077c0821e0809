"""Segmenter factory: a name mapping over segmentation_models_pytorch (2D) and a small 3D UNet.

Pretrained encoder weights are off by default (``encoder_weights=None``): the
benchmark must run offline, and weights downloaded at run time cannot work on a
machine without network. Users with a network set ``encoder_weights`` in a method spec.
"""

from __future__ import annotations

from collections.abc import Callable

import segmentation_models_pytorch as smp
import torch
from torch import nn

from genseg_bench.errors import unknown

_SMP_2D: dict[str, Callable[..., nn.Module]] = {
    "unet": smp.Unet,
    "deeplabv3plus": smp.DeepLabV3Plus,
    "unetplusplus": smp.UnetPlusPlus,
    "fpn": smp.FPN,
}


class UNet3D(nn.Module):
    """A compact 3D UNet (two poolings) for the MSD tasks, where smp has no 3D models.

    Volumes of the hippocampus task are ~35x50x35, so two levels of pooling keep
    every level at least 8 voxels wide; inputs are padded to a multiple of 4.
    """

    def __init__(self, in_channels: int = 1, classes: int = 1, width: int = 16) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv3d(cin, cout, 3, padding=1),
                nn.InstanceNorm3d(cout, affine=True),
                nn.LeakyReLU(0.01),
                nn.Conv3d(cout, cout, 3, padding=1),
                nn.InstanceNorm3d(cout, affine=True),
                nn.LeakyReLU(0.01),
            )

        w = width
        self.enc1, self.enc2, self.enc3 = block(in_channels, w), block(w, 2 * w), block(2 * w, 4 * w)
        self.pool = nn.MaxPool3d(2)
        self.up2 = nn.ConvTranspose3d(4 * w, 2 * w, 2, stride=2)
        self.dec2 = block(4 * w, 2 * w)
        self.up1 = nn.ConvTranspose3d(2 * w, w, 2, stride=2)
        self.dec1 = block(2 * w, w)
        self.head = nn.Conv3d(w, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape[-3:]
        pad = [p for s in reversed(shape) for p in (0, (-s) % 4)]
        x = nn.functional.pad(x, pad)
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        e3 = self.enc3(self.pool(e2))
        d2 = self.dec2(torch.cat([self.up2(e3), e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        out = self.head(d1)
        return out[..., : shape[0], : shape[1], : shape[2]]


def build_segmenter(
    backbone: str,
    in_channels: int,
    dims: int = 2,
    encoder: str = "resnet18",
    encoder_weights: str | None = None,
) -> nn.Module:
    """A segmenter that maps ``N x C x ...`` images to ``N x 1 x ...`` logits."""
    if dims == 3:
        if backbone not in ("unet", "unet3d"):
            raise unknown("3D backbone", backbone, ["unet", "unet3d"])
        return UNet3D(in_channels=in_channels, classes=1)
    if backbone not in _SMP_2D:
        raise unknown("backbone", backbone, list(_SMP_2D))
    return _SMP_2D[backbone](
        encoder_name=encoder, encoder_weights=encoder_weights, in_channels=in_channels, classes=1
    )
