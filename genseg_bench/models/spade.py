"""SPADE (Park et al., CVPR 2019): the mask modulates every normalisation layer, as a GenSeg generator.

Followed: the paper (Sec. 3, Fig. 2 and 4, App. A) and the public code
NVlabs/SPADE (``models/networks/generator.py`` ``SPADEGenerator``,
``normalization.py`` ``SPADE``, ``architecture.py`` ``SPADEResnetBlock``), in the
deterministic setting of that code (no VAE encoder: the input is the
downsampled mask, not noise).

**SPADE normalisation.** ``out = norm(x) * (1 + gamma(m)) + beta(m)``: a
parameter-free normalisation of the activations, then a per-pixel scale and bias
predicted from the mask resized (nearest) to the layer's resolution by a small
convolutional network (3x3 conv to ``hidden`` channels, ReLU, two 3x3 convs to
gamma and beta). Every normalisation layer of the generator is one, so the mask
enters at every resolution instead of only at the input. The mask is given as
its one-hot map ``[1 - m, m]``, SPADE's semantic input for two classes.

**Generator.** The downsampled mask -> 3x3 conv -> SPADE ResBlock (``head``) at
the lowest resolution, then per upsampling step an upsampling cell and a SPADE
ResBlock (SPADE, leaky ReLU 0.2, 3x3 conv, twice, plus the identity), then leaky
ReLU, a 3x3 conv to the image channels and ``tanh`` mapped to [0, 1].

**Searchable cells** (paper App. I: SPADE made searchable by the multi-branch
modification of Fig. 1c, without saying where). SPADE's only resolution-changing
operation is its nearest-neighbour upsampling, which has no weights; here every
upsampling step is a learnable searchable transposed-convolution cell
(:class:`~genseg_bench.models.generator.SearchableCell`: 4-2-1 / 6-2-2 / 8-2-3,
the candidates of Pix2Pix's decoder cells ``up1 .. upN``), which also does the
channel reduction SPADE's ResBlocks do with their learned shortcut. So every
ResBlock keeps its width and has the identity shortcut.

**Scaled to the suite** (the official code is written for 256 px and up, ``ngf`` =
64): ``n_up = floor(log2(min side)) - 3`` upsampling steps, 1 to 5 (5 at 256 px
as in the official "normal" setting, so the lowest resolution is ~8 px; 2 at 32
px), channels ``width * min(2**k, 8)`` at scale ``2**-k`` (the Pix2Pix schedule,
where the official one goes on to 16x), ``hidden = 2 * width`` (128 at width 64 as
in the official code), one ResBlock per resolution (the official code has two at
the second-lowest). InstanceNorm as the parameter-free normalisation (the
official ``spadeinstance`` option; the default synchronised BatchNorm holds
running statistics, which GenSeg's lookahead must not have, see
:mod:`genseg_bench.models.generators`) and no spectral norm (its power-iteration
vectors are buffers, too). Weights start from N(0, 0.02) as in the suite's
Pix2Pix. Sides that are not a multiple of ``2**n_up`` are zero-padded (background)
and the output is cropped back. 2D and 3D share the code.

The GAN level is GenSeg's (conditional PatchGAN + L1, :mod:`genseg_bench.methods.genseg`),
not SPADE's hinge + feature-matching + VGG losses: the paper swaps the generator
inside GenSeg, so here the generator is the only difference from Pix2Pix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from genseg_bench.models.generator import CellMode, SearchableCell
from genseg_bench.models.generators import DropoutFreeGenerator


def _conv(dims: int, cin: int, cout: int, kernel: int) -> nn.Module:
    cls = nn.Conv2d if dims == 2 else nn.Conv3d
    conv = cls(cin, cout, kernel, padding=kernel // 2)
    nn.init.normal_(conv.weight, 0.0, 0.02)
    nn.init.zeros_(conv.bias)
    return conv


def spade_upsamplings(spatial: Sequence[int], max_up: int = 5) -> int:
    """Upsampling steps for this spatial shape: the lowest resolution is ~8 px (1 to ``max_up`` steps)."""
    return max(1, min(max_up, int(math.floor(math.log2(min(spatial)))) - 3))


class SPADENorm(nn.Module):
    """``norm(x) * (1 + gamma(m)) + beta(m)`` with gamma and beta predicted per pixel from the mask."""

    def __init__(self, channels: int, label_channels: int, hidden: int, dims: int) -> None:
        super().__init__()
        self.norm = (nn.InstanceNorm2d if dims == 2 else nn.InstanceNorm3d)(channels, affine=False)
        self.shared = _conv(dims, label_channels, hidden, 3)
        self.gamma = _conv(dims, hidden, channels, 3)
        self.beta = _conv(dims, hidden, channels, 3)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        seg = F.interpolate(seg, size=x.shape[2:], mode="nearest")
        actv = F.relu(self.shared(seg))
        return self.norm(x) * (1 + self.gamma(actv)) + self.beta(actv)


class SPADEResBlock(nn.Module):
    """``x + conv(act(SPADE(conv(act(SPADE(x))))))``: SPADE's ResBlock at constant width."""

    def __init__(self, channels: int, label_channels: int, hidden: int, dims: int) -> None:
        super().__init__()
        self.norm0 = SPADENorm(channels, label_channels, hidden, dims)
        self.conv0 = _conv(dims, channels, channels, 3)
        self.norm1 = SPADENorm(channels, label_channels, hidden, dims)
        self.conv1 = _conv(dims, channels, channels, 3)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        dx = self.conv0(F.leaky_relu(self.norm0(x, seg), 0.2))
        dx = self.conv1(F.leaky_relu(self.norm1(dx, seg), 0.2))
        return x + dx


class SPADEGenerator(DropoutFreeGenerator):
    """SPADE generator from the downsampled mask, with searchable upsampling cells ``up1 .. up{n_up}``."""

    label = "SPADE"

    def __init__(
        self,
        out_channels: int,
        spatial: Sequence[int],
        *,
        width: int = 64,
        mode: CellMode = "learnable",
        dims: int = 2,
        max_up: int = 5,
    ) -> None:
        super().__init__()
        if len(spatial) != dims:
            raise ValueError(f"spatial shape {tuple(spatial)} does not have {dims} dimensions")
        self.dims = dims
        self.mode = mode
        self.n_up = spade_upsamplings(spatial, max_up)
        label, hidden = 2, 2 * width
        chans = [width * min(2**k, 8) for k in range(self.n_up + 1)]  # chans[k]: scale 2**-k
        self.fc = _conv(dims, label, chans[-1], 3)
        self.head = SPADEResBlock(chans[-1], label, hidden, dims)
        self.ups = nn.ModuleList()
        self.blocks = nn.ModuleList()
        for k in range(self.n_up, 0, -1):
            self.ups.append(SearchableCell(chans[k], chans[k - 1], transposed=True, mode=mode, dims=dims))
            self.blocks.append(SPADEResBlock(chans[k - 1], label, hidden, dims))
        self.to_image = _conv(dims, chans[0], out_channels, 3)

    def cells(self) -> list[tuple[str, SearchableCell]]:
        """The upsampling cells, lowest resolution first: ``up1 .. up{n_up}``."""
        return [(f"up{i}", c) for i, c in enumerate(self.ups, 1)]  # type: ignore[misc]

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        spatial = masks.shape[2:]
        mult = 2**self.n_up
        pad = [p for s in reversed(spatial) for p in (0, (-s) % mult)]
        m = F.pad(masks, pad) if any(pad) else masks
        seg = torch.cat([1 - m, m], 1)
        x = self.fc(F.interpolate(seg, size=[s // mult for s in m.shape[2:]], mode="nearest"))
        x = self.head(x, seg)
        for up, block in zip(self.ups, self.blocks, strict=True):
            x = block(up(x), seg)
        out = (torch.tanh(self.to_image(F.leaky_relu(x, 0.2))) + 1) / 2
        if any(pad):
            out = out[(..., *(slice(0, s) for s in spatial))]
        return out
