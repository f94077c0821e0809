"""PatchGAN discriminator on ``concat(mask, image)``: Pix2Pix's conditional discriminator H.

It scores overlapping patches as real or generated, conditioned on the mask, so
the generator is pushed to produce images that look real *and* fit their mask.

InstanceNorm rather than BatchNorm, for the same reason as in the generator: the
discriminator's weights sit inside the graph of the unrolled generator step
G' = G - eta_g grad_G L_gan (the hypergradient differentiates through its
backward pass), and a network without running statistics is the same function
in every pass. The number of stride-2 layers adapts to the input (3 at 70x70
receptive field as in Pix2Pix, fewer for inputs under 24 px) so every layer
keeps at least 3 pixels per side.

The conditional GAN objective of both players is here too (:func:`generator_gan_loss`,
:func:`discriminator_loss`): it is the default level 1 of every GenSeg generator
(:class:`~genseg_bench.models.generators.MaskToImageGenerator`), which a generator with
its own objective (BBDM, Soft-Intro VAE) replaces.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def patch_layers(spatial: Sequence[int], max_layers: int = 3) -> int:
    """Stride-2 layers such that the two final stride-1 4x4 convolutions still see >= 3 pixels."""
    return max(1, min(max_layers, int(math.floor(math.log2(min(spatial) / 3)))))


class PatchDiscriminator(nn.Module):
    """Pix2Pix's ``NLayerDiscriminator``: logits per patch for ``(mask, image)`` pairs."""

    def __init__(
        self,
        image_channels: int,
        spatial: Sequence[int],
        *,
        width: int = 64,
        dims: int = 2,
        max_layers: int = 3,
    ) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        norm = nn.InstanceNorm2d if dims == 2 else nn.InstanceNorm3d
        n_layers = patch_layers(spatial, max_layers)
        layers: list[nn.Module] = [conv(1 + image_channels, width, 4, 2, 1), nn.LeakyReLU(0.2)]
        cin = width
        for i in range(1, n_layers):
            cout = width * min(2**i, 8)
            layers += [conv(cin, cout, 4, 2, 1), norm(cout), nn.LeakyReLU(0.2)]
            cin = cout
        cout = width * min(2**n_layers, 8)
        layers += [conv(cin, cout, 4, 1, 1), norm(cout), nn.LeakyReLU(0.2), conv(cout, 1, 4, 1, 1)]
        self.net = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Conv3d):
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, masks: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([masks * 2 - 1, images * 2 - 1], 1))


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """Losses in float32 or better: bf16 (autocast) is upcast, float64 (the gradient tests) is kept."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def generator_gan_loss(
    disc: nn.Module, masks: torch.Tensor, fake: torch.Tensor, images: torch.Tensor, lambda_l1: float
) -> torch.Tensor:
    """Pix2Pix generator objective: fool H on ``(mask, G(mask))`` + ``lambda_l1`` * L1 to the real image."""
    logits = _upcast(disc(masks, fake))
    adv = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
    return adv + lambda_l1 * F.l1_loss(_upcast(fake), _upcast(images))


def discriminator_loss(
    disc: nn.Module, masks: torch.Tensor, fake: torch.Tensor, images: torch.Tensor
) -> torch.Tensor:
    """H's objective: real pairs -> 1, generated pairs -> 0 (one forward on both halves)."""
    logits = _upcast(disc(torch.cat([masks, masks]), torch.cat([images, fake.detach()])))
    target = torch.cat([torch.ones_like(logits[: len(masks)]), torch.zeros_like(logits[len(masks) :])])
    return F.binary_cross_entropy_with_logits(logits, target)
