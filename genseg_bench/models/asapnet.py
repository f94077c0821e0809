"""ASAPNet (Shaham et al., CVPR 2021): per-pixel MLPs whose weights a low-resolution network predicts.

Followed: the paper (Sec. 3, Fig. 3) and the public code tamarott/ASAPNet
(``models/networks/generator.py``: ``ASAPNetsGenerator``, ``ASAPNetsLRStream``,
``ASAPNetsHRStream``, ``_get_coords``).

**Two streams.** The image is cut into ``S x S`` tiles. A convolutional
*low-resolution stream* reads the mask and, by ``log2 S`` stride-2 convolutions,
reaches one feature vector per tile; a final 1x1 convolution turns it into the
complete parameter set (weights and biases of every layer) of a small MLP. The
*high-resolution stream* then runs, at every pixel, the MLP of its tile on that
pixel's input: the mask's one-hot value ``[1 - m, m]`` and a positional
encoding, ``cos`` and ``sin`` of ``2 pi (x mod f) / f`` and of ``y`` for ``f = S, S/2,
.., 2`` (4 log2 S channels; without them every pixel of a tile would get the same
colour). The MLP has ``hr_depth`` layers of width ``hr_width``, leaky ReLU 0.01
between them and ``tanh`` at the end, mapped to [0, 1]. The costly network runs
at 1/S of the resolution; full resolution only sees per-pixel matrix products.

**Searchable cells** (paper App. I: ASAPNet made searchable by the multi-branch
modification of Fig. 1c, without saying where): the stride-2 convolutions of the
low-resolution stream (3x3 stride 2 in the official code) are searchable
convolution cells (:class:`~genseg_bench.models.generator.SearchableCell`: 4-2-1 /
6-2-2 / 8-2-3, the candidates of Pix2Pix's encoder cells), ``down1 .. down{log2 S}``,
its only resolution-changing convolutions. The MLPs' parameters are predicted,
not learned, so they have no architecture of their own.

**Scaled to the suite** (the official code is written for 256 px and up, with a
16 x 16 grid of tiles): ``S = 2**floor(log2(min side / 16))``, 2 to 16, i.e. a
~16-tile grid as in the official code up to 256 px (``S`` = 2 at 32 px, 16 at 256
px; larger images keep ``S`` = 16 and get more tiles, where the official code
downsamples bilinearly first). Low-resolution stream: a 3x3 conv to ``width``
channels, the stride-2 cells (``width`` wide, the last one to ``8 * width``), then
``lr_depth`` = 7 (official) 3x3 conv blocks at ``8 * width`` (the official
``lr_max_width`` is 1024 at ``lr_width`` 64: 16x), each with affine InstanceNorm
(the official ``instanceaffine``; no running statistics, see
:mod:`genseg_bench.models.generators`) and ReLU. MLP: ``hr_depth`` = 5 layers
(official) of width ``hr_width = width`` (64 at width 64, the official value).
Sides that are not a multiple of S are zero-padded (background) and the output
is cropped back.

**Initialisation.** Convolutions start from N(0, 0.02) as in the suite's Pix2Pix,
except the parameter head: with N(0, 0.02) there (the official code's small
Xavier initialisation is smaller still) the predicted MLP weights are ~0.1 and
five layers attenuate the pixel's inputs ~1e-4 times, so every tile starts out
a flat colour that ignores position and mask (measured at width 4: 5e-6
variation within a tile). Here the head starts from N(0, 1 / fan-in), so the raw parameters are
O(1), and each predicted weight matrix is multiplied by ``sqrt(2 / fan-in)`` of
its MLP layer (He scaling, applied in the forward as in equalised-learning-rate
layers): every tile's MLP starts as a He-initialised network.
2D only: the tiling and the positional encoding are written for images.

The GAN level is GenSeg's (conditional PatchGAN + L1), not ASAPNet's
SPADE-style losses: the paper swaps the generator inside GenSeg.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from genseg_bench.models.generator import CellMode, SearchableCell
from genseg_bench.models.generators import DropoutFreeGenerator


def tile_factor(spatial: Sequence[int], max_factor: int = 16) -> int:
    """S, the tile side (a power of two, 2..``max_factor``): ~16 tiles along the shorter side."""
    return 2 ** max(1, min(int(math.log2(max_factor)), int(math.floor(math.log2(min(spatial) / 16)))))


def positional_encoding(height: int, width: int, factor: int, like: torch.Tensor) -> torch.Tensor:
    """``1 x 4 log2(S) x H x W``: cos / sin of each pixel's position within tiles of side f = S, S/2, .., 2.

    As the official ``_get_coords`` (the "cosine" encoding): for every frequency
    the x cos, x sin, y cos, y sin channels, highest f first.
    """
    ys = torch.arange(height, device=like.device, dtype=like.dtype)
    xs = torch.arange(width, device=like.device, dtype=like.dtype)
    channels = []
    f = factor
    while f > 1:
        ax, ay = 2 * math.pi * torch.remainder(xs, f) / f, 2 * math.pi * torch.remainder(ys, f) / f
        for v, horizontal in ((ax.cos(), True), (ax.sin(), True), (ay.cos(), False), (ay.sin(), False)):
            channels.append(
                v.view(1, width).expand(height, width)
                if horizontal
                else v.view(height, 1).expand(height, width)
            )
        f //= 2
    return torch.stack(channels)[None]


class ASAPNetGenerator(DropoutFreeGenerator):
    """ASAPNet: a low-resolution stream with searchable stride-2 cells predicts per-tile pixelwise MLPs."""

    label = "ASAPNet"

    def __init__(
        self,
        out_channels: int,
        spatial: Sequence[int],
        *,
        width: int = 64,
        mode: CellMode = "learnable",
        dims: int = 2,
        lr_depth: int = 7,
        hr_depth: int = 5,
        hr_width: int | None = None,
    ) -> None:
        super().__init__()
        if dims != 2:
            raise ValueError(
                "the ASAPNet generator is 2D only (its tiles and positional encoding are written for images); "
                "use generator = 'pix2pix' or 'spade' for volumes"
            )
        if len(spatial) != 2:
            raise ValueError(f"spatial shape {tuple(spatial)} does not have 2 dimensions")
        self.dims = 2
        self.mode = mode
        self.factor = tile_factor(spatial)
        n_down = int(math.log2(self.factor))
        label = 2
        hr_width = hr_width or width
        # the MLP's layer widths: one-hot mask + positional encoding in, image out
        self.mlp_channels = [label + 4 * n_down, *[hr_width] * (hr_depth - 1), out_channels]
        self.num_params = sum(ci * co + co for ci, co in itertools.pairwise(self.mlp_channels))
        lr_max = 8 * width
        self.stem = nn.Sequential(
            self._conv(label, width, 3, bias=False), nn.InstanceNorm2d(width, affine=True), nn.ReLU()
        )
        self.downs = nn.ModuleList()
        self.down_norms = nn.ModuleList()
        cin = width
        for i in range(n_down):
            cout = lr_max if i == n_down - 1 else width
            self.downs.append(SearchableCell(cin, cout, transposed=False, mode=mode, dims=2))
            self.down_norms.append(nn.InstanceNorm2d(cout, affine=True))
            cin = cout
        self.blocks = nn.Sequential(
            *[
                nn.Sequential(
                    self._conv(lr_max, lr_max, 3, bias=False),
                    nn.InstanceNorm2d(lr_max, affine=True),
                    nn.ReLU(),
                )
                for _ in range(lr_depth)
            ]
        )
        self.to_params = self._conv(lr_max, self.num_params, 1)
        nn.init.normal_(
            self.to_params.weight, 0.0, lr_max**-0.5
        )  # raw MLP parameters ~ N(0, 1/2) at the start

    @staticmethod
    def _conv(cin: int, cout: int, kernel: int, bias: bool = True) -> nn.Conv2d:
        """N(0, 0.02) weights; no bias before an InstanceNorm, which would cancel it (as the official code)."""
        conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=bias)
        nn.init.normal_(conv.weight, 0.0, 0.02)
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)
        return conv

    def cells(self) -> list[tuple[str, SearchableCell]]:
        """The stride-2 cells of the low-resolution stream, in data-flow order: ``down1 .. down{log2 S}``."""
        return [(f"down{i}", c) for i, c in enumerate(self.downs, 1)]  # type: ignore[misc]

    def mlp_parameters(self, seg: torch.Tensor) -> torch.Tensor:
        """The low-resolution stream: ``B x num_params x H/S x W/S``, one MLP per tile."""
        x = self.stem(seg)
        for cell, norm in zip(self.downs, self.down_norms, strict=True):
            x = F.relu(norm(cell(x)))
        return self.to_params(self.blocks(x))

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        h0, w0 = masks.shape[2:]
        k = self.factor
        pad = [0, (-w0) % k, 0, (-h0) % k]
        m = F.pad(masks, pad) if any(pad) else masks
        seg = torch.cat([1 - m, m], 1)
        img = (self.render(self.mlp_parameters(seg), seg) + 1) / 2
        if any(pad):
            img = img[..., :h0, :w0]
        return img

    def render(self, params: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        """The high-resolution stream: every pixel through its tile's MLP, ``B x C x H x W`` in [-1, 1].

        ``params`` from :meth:`mlp_parameters`, ``seg`` the one-hot mask (sides a
        multiple of S). Pixelwise: a pixel's output depends on its own input and
        position and on its tile's parameters only.
        """
        k = self.factor
        bs, _, h, w = seg.shape
        hl, wl = h // k, w // k
        enc = positional_encoding(h, w, k, seg).expand(bs, -1, -1, -1)
        pixels = torch.cat([seg, enc], 1)
        # tiles of k x k pixels, channels last: B x hl x wl x k*k x C (the official unfold layout)
        out = pixels.unfold(2, k, k).unfold(3, k, k).permute(0, 2, 3, 4, 5, 1).reshape(bs, hl, wl, k * k, -1)
        layers = len(self.mlp_channels) - 1
        start = 0
        for i, (ci, co) in enumerate(itertools.pairwise(self.mlp_channels)):
            weight = params[:, start : start + ci * co].permute(0, 2, 3, 1).reshape(bs, hl, wl, ci, co)
            weight = weight * math.sqrt(2 / ci)  # He scale (module docstring, *Initialisation*)
            start += ci * co
            bias = params[:, start : start + co].permute(0, 2, 3, 1).reshape(bs, hl, wl, 1, co)
            start += co
            out = torch.matmul(out, weight) + bias
            out = F.leaky_relu(out, 0.01) if i < layers - 1 else torch.tanh(out)
        # back to B x C x H x W: tile (i, j), pixel (a, b) -> (i * k + a, j * k + b)
        return out.reshape(bs, hl, wl, k, k, -1).permute(0, 5, 1, 3, 2, 4).reshape(bs, -1, h, w)
