"""GenSeg's mask-to-image generator: a Pix2Pix U-Net whose (up)convolutions are searchable cells.

The paper's generator, registered as ``"pix2pix"`` (:mod:`genseg_bench.models.generators`
has the interface every generator shares and the others). The searchable cell
defined here is the one all of them use.

Paper Fig. 1b-c and A.2: every encoder cell mixes three strided convolutions
(kernel-stride-padding 4-2-1, 6-2-2, 8-2-3), every decoder cell the three
transposed convolutions with the same triples, and the cell outputs
``y = sum_k alpha_k * op_k(x)``. The alphas are real ``nn.Parameter`` objects,
kept apart from the weights (:meth:`SearchableGenerator.arch_parameters` vs
:meth:`SearchableGenerator.weight_parameters`) so that they get their own
optimiser and are updated by the validation loss, not the GAN loss.

**Alphas.** A learnable cell stores raw logits (initialised to 0) and mixes with
``softmax(logits)``: the paper's alpha "ranging from 0 to 1" that competes across
candidates, as in DARTS, which the paper follows. ``fixed`` cells use alpha = 1
for every candidate (the paper's "Fixed Multi-branch"), ``single`` cells hold
only the 4-2-1 op (plain Pix2Pix).

**One convolution per cell, exactly.** With stride 2 and padding ``k/2 - 1`` the
three candidates read centred windows of the same input: the 4x4 and 6x6 kernels
are the 8x8 kernel's central sub-windows (offsets 2 and 1), for Conv and for
ConvTranspose alike. So ``sum_k alpha_k conv(x, W_k) = conv(x, sum_k alpha_k
pad(W_k))``: the cell runs one 8x8 convolution on an alpha-weighted kernel
instead of three convolutions (64 instead of 116 multiply-adds per tap pair),
with the same output and the same gradients for the weights and the alphas.
:meth:`SearchableCell.forward_unfused` is the three-branch reference; a test
checks they agree.

**Normalisation.** InstanceNorm (no running statistics) instead of Pix2Pix's
BatchNorm: Pix2Pix trains with batch size 1, where BatchNorm *is* instance
normalisation, and a generator without buffers is the same function in every
pass, the unrolled one (``torch.func.functional_call`` with G') included, so the
hypergradient differentiates exactly what the forward computes and nothing
leaks between passes through running statistics.

**Depth** adapts to the input: ``floor(log2(min side))`` levels (at most
``max_depth``; 8 at 256 px as in Pix2Pix's ``unet_256``, 5 at 32 px); inputs
whose sides are not a multiple of ``2**depth`` are zero-padded and the output is
cropped back. Channels are ``width * min(2**i, 8)`` per level, as in Pix2Pix.
2D and 3D (Pix2PixNIfTI-style, the paper's App. F) share the code.

**3D on the CPU: padding spelled out.** PyTorch's oneDNN (mkldnn) CPU kernels
compute the *weight* gradient of ``conv3d`` / ``conv_transpose3d`` wrongly for
this generator's fused 8x8x8 cells at small spatial extents (measured with torch
2.14.1: stride 2, padding 3, an 8^3 input with 16 or more input channels, or the
transposed cell producing it; the input gradient and the forward are right, and
so are 4- and 6-wide kernels and 16^3 inputs). The result is
uninitialised-looking garbage, 1e4 to 1e306 times the true gradient and
different on every call, which Adam turned into NaN weights in the first
iteration: the "GAN loss became nan at iteration 3" of 3D GenSeg. The same
convolution *without* padding is right (float64 to 1e-6), so in 3D
:class:`SearchableCell` pads the input before the convolution and crops the
transposed convolution's output: the same numbers by definition. An earlier fix
switched oneDNN off for every 3D step instead, which put the whole step on
PyTorch's native 3D kernels, 3-7x slower on the CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from genseg_bench.models.generators import MaskToImageGenerator

CellMode = Literal["learnable", "fixed", "single"]
CELL_MODES: tuple[str, ...] = ("learnable", "fixed", "single")

CANDIDATES: tuple[tuple[int, int, int], ...] = ((4, 2, 1), (6, 2, 2), (8, 2, 3))
"""(kernel, stride, padding) of the candidate (up)convolutions of every cell (A.2)."""


def op_name(op: tuple[int, int, int]) -> str:
    """``"4-2-1"``: the paper's kernel-stride-padding naming (Conv-421 / UpConv-421)."""
    return "-".join(str(v) for v in op)


def _conv(dims: int, transposed: bool) -> Callable[..., torch.Tensor]:
    """The ``torch.nn.functional`` (transposed) convolution for 2D or 3D inputs."""
    if dims == 2:
        return F.conv_transpose2d if transposed else F.conv2d
    if dims == 3:
        return F.conv_transpose3d if transposed else F.conv3d
    raise ValueError(f"dims must be 2 or 3, got {dims}")


class SearchableCell(nn.Module):
    """``y = sum_k alpha_k op_k(x)`` over the candidate (transposed) convolutions, run as one convolution."""

    def __init__(self, cin: int, cout: int, *, transposed: bool, mode: CellMode, dims: int = 2) -> None:
        super().__init__()
        if mode not in CELL_MODES:
            raise ValueError(f"cell mode must be one of {CELL_MODES}, got {mode!r}")
        self.mode = mode
        self.dims = dims
        self.transposed = transposed
        self.ops: tuple[tuple[int, int, int], ...] = CANDIDATES[:1] if mode == "single" else CANDIDATES
        self.kmax = max(k for k, _, _ in self.ops)
        self.padding = next(p for k, _, p in self.ops if k == self.kmax)
        self._conv = _conv(dims, transposed)
        shape = (cin, cout) if transposed else (cout, cin)
        self.weights = nn.ParameterList(
            [nn.Parameter(torch.randn(*shape, *([k] * dims)) * 0.02) for k, _, _ in self.ops]  # Pix2Pix init
        )
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(cout)) for _ in self.ops])
        self.alpha: nn.Parameter | None = (
            nn.Parameter(torch.zeros(len(self.ops))) if mode == "learnable" else None
        )

    def mixing_weights(self) -> torch.Tensor:
        """The alpha each candidate's output is multiplied by: softmax of the logits, or all 1."""
        if self.alpha is None:
            return torch.ones(len(self.ops), device=self.weights[0].device, dtype=self.weights[0].dtype)
        return torch.softmax(self.alpha, dim=0)

    def fused_kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``kmax``-sized kernel and bias whose single convolution equals the alpha-weighted sum."""
        if len(self.ops) == 1:
            return self.weights[0], self.biases[0]
        w = self.mixing_weights()
        kernel: torch.Tensor | None = None
        bias: torch.Tensor | None = None
        for i, (k, _, _) in enumerate(self.ops):
            off = (self.kmax - k) // 2
            wk = self.weights[i] if self.alpha is None else w[i] * self.weights[i]
            if off:
                wk = F.pad(wk, [off, off] * self.dims)
            kernel = wk if kernel is None else kernel + wk
            bk = self.biases[i] if self.alpha is None else w[i] * self.biases[i]
            bias = bk if bias is None else bias + bk
        assert kernel is not None and bias is not None
        return kernel, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel, bias = self.fused_kernel()
        if self.dims == 3 and self.padding:
            # zero padding spelled out (a pad before the convolution, a crop after the transposed
            # one): the same numbers, but a padding-free convolution, for which oneDNN's 3D weight
            # gradient is right (module docstring, "3D on the CPU")
            p = self.padding
            if self.transposed:
                return self._conv(x, kernel, bias, stride=2)[..., p:-p, p:-p, p:-p]
            return self._conv(F.pad(x, [p] * 6), kernel, bias, stride=2)
        return self._conv(x, kernel, bias, stride=2, padding=self.padding)

    def forward_unfused(self, x: torch.Tensor) -> torch.Tensor:
        """The definition, one convolution per candidate: the reference :meth:`forward` must equal."""
        w = self.mixing_weights()
        out = None
        for i, (_, stride, pad) in enumerate(self.ops):
            y = w[i] * self._conv(x, self.weights[i], self.biases[i], stride=stride, padding=pad)
            out = y if out is None else out + y
        assert out is not None
        return out

    def report(self) -> dict[str, float]:
        """``{"4-2-1": alpha, ...}`` with the alphas the forward pass uses (softmax, or 1 when fixed)."""
        w = self.mixing_weights().detach().float().cpu().tolist()
        return {op_name(op): float(v) for op, v in zip(self.ops, w, strict=True)}


def _norm(dims: int, channels: int) -> nn.Module:
    return (nn.InstanceNorm2d if dims == 2 else nn.InstanceNorm3d)(channels, affine=False)


def _dropout(dims: int, p: float) -> nn.Module:
    return (nn.Dropout2d if dims == 2 else nn.Dropout3d)(p) if p > 0 else nn.Identity()


def generator_depth(spatial: Sequence[int], max_depth: int = 8) -> int:
    """Levels of the U-Net for an input of this spatial shape: log2 of the smallest side, 2..max_depth."""
    return max(2, min(max_depth, int(math.floor(math.log2(min(spatial))))))


class SearchableGenerator(MaskToImageGenerator):
    """Pix2Pix U-Net (skip connections between mirrored levels) from a 1-channel mask to a C-channel image.

    Encoder cell ``enc{i}`` halves the resolution, decoder cell ``dec{j}`` doubles it;
    ``enc0`` reads the mask, ``dec{depth-1}`` writes the image. As in Pix2Pix, the
    outermost and innermost encoder cells have no normalisation, decoder cells
    1-3 use dropout (Pix2Pix's noise source), and the output is ``tanh`` mapped to
    [0, 1], the range of the suite's images.
    """

    def __init__(
        self,
        out_channels: int,
        spatial: Sequence[int],
        *,
        width: int = 64,
        mode: CellMode = "learnable",
        dims: int = 2,
        max_depth: int = 8,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if len(spatial) != dims:
            raise ValueError(f"spatial shape {tuple(spatial)} does not have {dims} dimensions")
        self.dims = dims
        self.mode = mode
        self.depth = generator_depth(spatial, max_depth)
        chans = [width * min(2**i, 8) for i in range(self.depth)]
        self.encoders = nn.ModuleList()
        self.enc_norms = nn.ModuleList()
        cin = 1
        for i, c in enumerate(chans):
            self.encoders.append(SearchableCell(cin, c, transposed=False, mode=mode, dims=dims))
            inner_or_outer = i == 0 or i == self.depth - 1
            self.enc_norms.append(nn.Identity() if inner_or_outer else _norm(dims, c))
            cin = c
        self.decoders = nn.ModuleList()
        self.dec_post = nn.ModuleList()
        for j in range(self.depth):
            skip = chans[self.depth - 1 - j]  # the encoder level this decoder mirrors
            # decoder 0 reads the bottleneck; decoder j > 0 reads cat(decoder j-1 output, skip), equal widths
            dec_in = skip if j == 0 else 2 * skip
            last = j == self.depth - 1
            dec_out = out_channels if last else chans[self.depth - 2 - j]
            self.decoders.append(SearchableCell(dec_in, dec_out, transposed=True, mode=mode, dims=dims))
            if last:
                self.dec_post.append(nn.Tanh())
            else:
                self.dec_post.append(
                    nn.Sequential(_norm(dims, dec_out), _dropout(dims, dropout if 1 <= j <= 3 else 0.0))
                )

    @classmethod
    def from_options(
        cls,
        channels: int,
        spatial: Sequence[int],
        *,
        width: int,
        cells: CellMode,
        dims: int,
        dropout: float,
    ) -> SearchableGenerator:
        """The registry's constructor (:func:`~genseg_bench.models.generators.build_generator`)."""
        return cls(channels, spatial, width=width, mode=cells, dims=dims, dropout=dropout)

    def cells(self) -> list[tuple[str, SearchableCell]]:
        """Every searchable cell in data-flow order: ``enc0 .. enc{d-1}, dec0 .. dec{d-1}``."""
        enc = [(f"enc{i}", c) for i, c in enumerate(self.encoders)]
        dec = [(f"dec{j}", c) for j, c in enumerate(self.decoders)]
        return enc + dec  # type: ignore[return-value]

    # -- forward ---------------------------------------------------------------------------

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        spatial = masks.shape[2:]
        mult = 2**self.depth
        pad = [p for s in reversed(spatial) for p in (0, (-s) % mult)]
        x = F.pad(masks * 2 - 1, pad) if any(pad) else masks * 2 - 1
        skips: list[torch.Tensor] = []
        for i, (cell, norm) in enumerate(zip(self.encoders, self.enc_norms, strict=True)):
            x = cell(x if i == 0 else F.leaky_relu(x, 0.2))
            x = norm(x)
            skips.append(x)
        y = skips[-1]
        for j, (cell, post) in enumerate(zip(self.decoders, self.dec_post, strict=True)):
            inp = y if j == 0 else torch.cat([y, skips[self.depth - 1 - j]], 1)
            y = post(cell(F.relu(inp)))
        out = (y + 1) / 2
        if any(pad):
            out = out[(..., *(slice(0, s) for s in spatial))]
        return out
