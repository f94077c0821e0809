"""Swin-Unet, a U-shaped pure Swin-transformer segmenter (backbone ``swinunet``), written for genseg-bench.

Paper: Cao, Wang, Chen, Jiang, Zhang, Tian, Wang, "Swin-Unet: Unet-like Pure
Transformer for Medical Image Segmentation" (arXiv 2105.05537, 2021; ECCV
Workshops 2022), the SwinUnet of the GenSeg paper's Fig. 8c. Public code
followed: github.com/HuCaoFighting/Swin-Unet,
``networks/swin_transformer_unet_skip_expand_decoder_sys.py`` (``SwinTransformerSys``),
itself built on the Swin Transformer of Liu et al. (ICCV 2021). This is an own
implementation (no MONAI SwinUNETR, which has a convolutional decoder, nor
timm's Swin blocks); module and parameter names follow the reference code, so a
``SwinTransformerSys`` checkpoint of the same configuration loads into it.

The network, as in the reference code:

* **patch partition + linear embedding**: a ``patch x patch`` convolution with
  stride ``patch`` and a LayerNorm, giving ``H/p x W/p`` tokens of ``embed_dim``;
* **encoder**: stages of Swin transformer blocks in pairs, window multi-head
  self-attention (W-MSA) with a learned relative position bias, then the same
  with the windows shifted by half a window (SW-MSA, with the attention mask
  that keeps tokens the cyclic shift brought together from opposite borders
  apart), each stage but the last followed by **patch merging** (2x2
  neighbours concatenated, LayerNorm, linear ``4C -> 2C``); the last stage is
  the bottleneck;
* **decoder**: **patch expanding** (linear ``C -> 2C``, rearranged to 2x the
  resolution with ``C/2`` channels, LayerNorm), **skip connections**
  (concatenate the encoder's tokens of the same resolution, linear ``2C -> C``)
  and Swin blocks with the encoder stage's depth and heads;
* **final patch expanding** by ``patch`` (x4 in the paper) back to ``H x W`` and a
  1x1 linear head (bias-free, as in the reference) giving one logit per pixel.

What the reference code does and this follows, where the paper's figure is
vaguer: the skip of each resolution is the encoder's tokens *entering* that
stage (the patch embedding, then each patch merging's output), the decoder's
depths are the encoder's (``depths_decoder`` is unused there), stochastic depth
grows linearly to ``drop_path_rate`` over the encoder's blocks and the decoder
reuses those rates, linear layers start from a truncated normal (std 0.02), the
attention mask is -100 (not -inf) between tokens of different sub-windows, and a
stage whose feature map is no larger than the window attends over the whole map
without a shift. No absolute position embedding (the reference's default
``ape=False``).

**Learning rate.** With the suite's optimiser (RMSprop, momentum 0.9, no warm-up;
its first steps move every weight by about ten times the learning rate) SwinUnet
from scratch trains at ``seg_lr`` up to about 1e-4 and collapses to predicting
background at 2e-4 and above: the LayerNorm biases take the constant "all
background" answer before any spatial feature is learned (measured on 32 px
synthetic blobs: at 5e-5 and 1e-4 the test Dice passes 0.55 within 50
iterations, at 2e-4, 3e-4 and 1e-3 it stays at the all-background score). The
``paper`` profile's 1e-5 is inside that range; the ``cpu`` (3e-4), ``quick`` and
``smoke`` (1e-3) profiles are not. The reference code trains with SGD (lr 0.05),
whose steps scale with the gradient and do not have this problem.

Departures, and why:

* **Any supported size, one set of weights.** The reference fixes the image size
  when it is built (its masks and resolutions are buffers). Here the window
  geometry and the shift mask are computed in ``forward`` from the input's
  size, so the same model takes the suite's 32, 64, 128 and 256 px profiles. A
  window shrunk to a small feature map indexes the central part of the relative
  position bias table (the offsets it can have), which is what the reference
  would build for that window. Sizes where a window does not tile a feature map
  are refused with an error listing the sizes that work (:meth:`SwinUnetConfig.check_size`).
* **Small by default.** :data:`SWINUNET_DEFAULT` (embedding 32, window 4, depths
  2-2-2-2, heads 1-2-4-8, about 3.0M parameters) keeps a CPU run feasible; the
  paper's Swin-T configuration (embedding 96, window 7, heads 3-6-12-24, 224 px
  input) is :data:`SWINUNET_TINY`, for use from Python.
* **Channels as given.** The patch embedding takes the task's channels (the
  reference repeats grey images to RGB); grey checkpoints of the reference are
  adapted when loaded (see :func:`load_swinunet_weights`).
* **No pretrained weights by default** (the reference starts from ImageNet
  Swin-T). ``encoder_weights`` may name a local file holding a state_dict of
  this network (or of the reference's ``SwinTransformerSys`` / ``SwinUnet`` of
  the same configuration); nothing is downloaded. Loading ImageNet Swin-T
  *classification* weights into encoder and decoder, as the reference's
  ``load_from`` does, is not implemented.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genseg_bench.errors import GensegBenchError
from genseg_bench.models.pretrained import WeightsError

__all__ = [
    "SWINUNET_DEFAULT",
    "SWINUNET_TINY",
    "SwinTransformerBlock",
    "SwinUnet",
    "SwinUnetConfig",
    "SwinUnetSizeError",
    "build_swinunet",
    "check_weights_name",
    "describe_swinunet_weights",
    "load_swinunet_weights",
    "parameter_count",
    "shifted_window_mask",
]

Geometry = dict[tuple[Any, ...], torch.Tensor]
"""Per-forward cache of shift masks and relative position indices, keyed by what they depend on.

Kept for one call only: a tensor made under ``torch.inference_mode`` (prediction)
must never reach a later training step.
"""

MASK_VALUE = -100.0
"""Added to the attention logits between tokens of different sub-windows (the reference's value)."""


class SwinUnetSizeError(GensegBenchError, ValueError):
    """An input whose size the window geometry cannot tile; the message lists the sizes that work.

    A :class:`GensegBenchError`: its message is a complete fix, which the size check before a grid
    (:func:`genseg_bench.runner.check_model_input`) passes on as it is."""


@dataclass(frozen=True)
class SwinUnetConfig:
    """The hyper-parameters of a :class:`SwinUnet` (those of the reference's ``SwinTransformerSys``).

    ``depths`` and ``num_heads`` have one entry per stage; stage ``k`` has
    ``embed_dim * 2**k`` channels at ``1 / (patch_size * 2**k)`` of the input's
    resolution. Odd depths are allowed (the reference pairs W-MSA and SW-MSA
    blocks, shifting every second one).
    """

    patch_size: int = 4
    embed_dim: int = 32
    depths: tuple[int, ...] = (2, 2, 2, 2)
    num_heads: tuple[int, ...] = (1, 2, 4, 8)
    window_size: int = 4
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_path_rate: float = 0.1

    def __post_init__(self) -> None:
        if len(self.depths) != len(self.num_heads) or len(self.depths) < 2:
            raise ValueError(
                f"SwinUnetConfig: depths {self.depths} and num_heads {self.num_heads} need one entry per "
                "stage, at least two stages (an encoder stage and the bottleneck)"
            )
        if min(self.patch_size, self.embed_dim, self.window_size, *self.depths, *self.num_heads) < 1:
            raise ValueError(f"SwinUnetConfig: every size must be a positive integer, got {self}")
        for k, heads in enumerate(self.num_heads):
            if (self.embed_dim * 2**k) % heads:
                raise ValueError(
                    f"SwinUnetConfig: stage {k} has {self.embed_dim * 2**k} channels, not divisible by "
                    f"its {heads} heads"
                )

    @property
    def stages(self) -> int:
        return len(self.depths)

    @property
    def multiple(self) -> int:
        """Each side must be a multiple of this: the patch size times one 2x merging per stage but the last."""
        return self.patch_size * 2 ** (self.stages - 1)

    def describe(self) -> str:
        """The configuration in one line, for result files and error messages."""
        return (
            f"patch {self.patch_size}, embed_dim {self.embed_dim}, depths "
            f"{'-'.join(map(str, self.depths))}, heads {'-'.join(map(str, self.num_heads))}, window "
            f"{self.window_size}, mlp_ratio {self.mlp_ratio:g}, qkv_bias {self.qkv_bias}, drop_path_rate "
            f"{self.drop_path_rate:g}"
        )

    def size_problem(self, height: int, width: int) -> str | None:
        """Why a ``height x width`` input cannot be segmented, or None when it can."""
        if height % self.multiple or width % self.multiple:
            return (
                f"each side must be a multiple of {self.multiple} (patch {self.patch_size}, "
                f"{self.stages - 1} patch mergings)"
            )
        for k in range(self.stages):
            h, w = height // (self.patch_size * 2**k), width // (self.patch_size * 2**k)
            window = min(self.window_size, h, w)
            if h % window or w % window:
                return (
                    f"stage {k}'s {h}x{w} feature map is not tiled by its {window}x{window} windows "
                    "(a map larger than the window must be a multiple of it)"
                )
        return None

    def valid_sizes(self, up_to: int = 1024) -> list[int]:
        """The square sizes up to ``up_to`` that :meth:`check_size` accepts."""
        return [s for s in range(self.multiple, up_to + 1, self.multiple) if self.size_problem(s, s) is None]

    def check_size(self, height: int, width: int) -> None:
        """Raise :class:`SwinUnetSizeError` (one line: the size, the reason, the sizes that work)."""
        problem = self.size_problem(height, width)
        if problem is not None:
            sizes = ", ".join(map(str, self.valid_sizes()))
            raise SwinUnetSizeError(
                f"SwinUnet ({self.describe()}) cannot take a {height}x{width} image: {problem}. "
                f"Square sizes it takes (up to 1024): {sizes}; resize the task's images to one of them "
                "(--image-size)."
            )


SWINUNET_DEFAULT = SwinUnetConfig()
"""Backbone ``swinunet``: the paper's layout (four stages, paired W-MSA/SW-MSA blocks, patch 4) at a CPU-feasible width."""

SWINUNET_TINY = SwinUnetConfig(embed_dim=96, num_heads=(3, 6, 12, 24), window_size=7)
"""The Swin-T configuration of the Swin-Unet paper and the reference code (224 px inputs)."""


# --- windows ------------------------------------------------------------------------------------


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """``B x H x W x C`` -> ``(B * windows) x window**2 x C``, windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def window_reverse(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """The inverse of :func:`window_partition`: ``(B * windows) x window**2 x C`` -> ``B x H x W x C``."""
    c = windows.shape[-1]
    x = windows.view(-1, h // window, w // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)


def shifted_window_mask(h: int, w: int, window: int, shift: int, device: torch.device) -> torch.Tensor:
    """The SW-MSA mask: ``windows x window**2 x window**2``, 0 within a sub-window, :data:`MASK_VALUE` across.

    After the cyclic shift by ``-shift`` the last row and column of windows hold
    tokens from both ends of the map; each window is cut into the regions that
    were contiguous before the shift (the reference's three slices per axis) and
    a token attends only to tokens of its own region.
    """
    labels = torch.zeros(1, h, w, 1, device=device)
    cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    region = 0
    for rows in cuts:
        for cols in cuts:
            labels[:, rows, cols, :] = region
            region += 1
    windows = window_partition(labels, window).squeeze(-1)  # windows x window**2
    diff = windows.unsqueeze(1) - windows.unsqueeze(2)
    return torch.zeros_like(diff).masked_fill(diff != 0, MASK_VALUE)


def relative_position_index(window: int, table_window: int, device: torch.device) -> torch.Tensor:
    """``window**2 x window**2`` indices into a ``(2 * table_window - 1)**2`` relative position bias table.

    Token pairs of a ``window``-wide window have offsets in ``[-(window-1), window-1]``
    per axis; they index the table of a ``table_window >= window`` window at those
    offsets, so a window shrunk to a small feature map reuses the learned biases.
    For ``window == table_window`` this is the reference's index.
    """
    coords = torch.stack(
        torch.meshgrid(
            torch.arange(window, device=device), torch.arange(window, device=device), indexing="ij"
        )
    ).flatten(1)  # 2 x window**2
    rel = coords[:, :, None] - coords[:, None, :] + (table_window - 1)  # 2 x N x N, in [0, 2T-2]
    return rel[0] * (2 * table_window - 1) + rel[1]


class DropPath(nn.Module):
    """Stochastic depth: drop a residual branch for whole samples with probability ``p`` (training only)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Mlp(nn.Sequential):
    """The transformer's feed-forward part: linear, GELU, linear (reference names ``fc1``/``fc2``)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with a learned relative position bias per head."""

    def __init__(self, dim: int, window_size: int, num_heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.dim, self.window_size, self.num_heads = dim, window_size, num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self, x: torch.Tensor, window: int, mask: torch.Tensor | None, index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x``: ``(B * windows) x window**2 x C``; ``mask``: ``windows x window**2 x window**2`` or None.

        ``index``: :func:`relative_position_index` for this window (computed when None).

        Explicit matmul and softmax, not ``scaled_dot_product_attention``: GenSeg
        differentiates through the segmenter's gradient (double backward), which
        the fused attention kernels do not support.
        """
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)  # (B*windows) x heads x N x N
        if index is None:
            index = relative_position_index(window, self.window_size, x.device)
        bias = self.relative_position_bias_table[index.reshape(-1)].view(n, n, -1).permute(2, 0, 1)
        attn = attn + bias.unsqueeze(0).to(attn.dtype)
        if mask is not None:
            windows = mask.shape[0]
            attn = (
                attn.view(bw // windows, windows, self.num_heads, n, n) + mask.to(attn.dtype)[None, :, None]
            )
            attn = attn.view(bw, self.num_heads, n, n)
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(bw, n, c))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, window_size={self.window_size}, num_heads={self.num_heads}"


class SwinTransformerBlock(nn.Module):
    """One Swin block: (S)W-MSA and an MLP, each behind a LayerNorm and a residual connection.

    ``shifted`` blocks shift the windows by ``window_size // 2`` when the feature
    map is larger than the window; on a map no larger than the window the block
    attends over the whole map, unshifted (the reference's rule). The geometry
    is decided per call from ``(h, w)``: see :meth:`geometry`.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        shifted: bool,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.dim, self.window_size, self.shifted = dim, window_size, shifted
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads, qkv_bias)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def geometry(self, h: int, w: int) -> tuple[int, int]:
        """``(window, shift)`` on an ``h x w`` feature map."""
        if min(h, w) <= self.window_size:
            return min(h, w), 0
        return self.window_size, self.window_size // 2 if self.shifted else 0

    def forward(self, x: torch.Tensor, h: int, w: int, cache: Geometry | None = None) -> torch.Tensor:
        """``x``: ``B x (h * w) x C`` tokens in row-major order.

        ``cache``: masks and position indices shared by the blocks of one forward
        pass (they depend on the geometry only); built afresh when None.
        """
        cache = {} if cache is None else cache
        b, length, c = x.shape
        window, shift = self.geometry(h, w)
        if length != h * w or h % window or w % window:
            raise SwinUnetSizeError(
                f"Swin block: {length} tokens do not form {h}x{w} tiled by {window}x{window} windows"
            )
        y = self.norm1(x).reshape(b, h, w, c)
        if shift:
            y = torch.roll(y, shifts=(-shift, -shift), dims=(1, 2))
        mask = None
        if shift:
            key = ("mask", h, w, window, shift)
            if key not in cache:
                cache[key] = shifted_window_mask(h, w, window, shift, x.device)
            mask = cache[key]
        key = ("index", window, self.window_size)
        if key not in cache:
            cache[key] = relative_position_index(window, self.window_size, x.device)
        y = window_reverse(self.attn(window_partition(y, window), window, mask, cache[key]), window, h, w)
        if shift:
            y = torch.roll(y, shifts=(shift, shift), dims=(1, 2))
        x = x + self.drop_path(y.reshape(b, length, c))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Patch partition and linear embedding: a ``patch``-strided ``patch x patch`` convolution, then LayerNorm."""

    def __init__(self, in_channels: int, embed_dim: int, patch_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class PatchMerging(nn.Module):
    """2x downsampling: each 2x2 group of tokens concatenated (4C), LayerNorm, linear to 2C."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, _, c = x.shape
        x = x.reshape(b, h, w, c)
        # the reference's order: (even row, even col), (odd, even), (even, odd), (odd, odd)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.reshape(b, -1, 4 * c)))


def _expand(x: torch.Tensor, h: int, w: int, scale: int) -> torch.Tensor:
    """``B x (h*w) x (scale**2 * C)`` -> ``B x (scale*h * scale*w) x C`` (einops ``b h w (p1 p2 c) -> b (h p1) (w p2) c``)."""
    b, _, cc = x.shape
    c = cc // (scale * scale)
    x = x.view(b, h, w, scale, scale, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h * scale * w * scale, c)


class PatchExpand(nn.Module):
    """2x upsampling: linear ``C -> 2C``, tokens rearranged to 2x the resolution with ``C/2`` channels, LayerNorm."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.expand = nn.Linear(dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(dim // 2)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        return self.norm(_expand(self.expand(x), h, w, 2))


class FinalPatchExpand(nn.Module):
    """Upsampling by the patch size back to the input's resolution (the paper's "x4" with patch 4)."""

    def __init__(self, dim: int, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.expand = nn.Linear(dim, scale * scale * dim, bias=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        return self.norm(_expand(self.expand(x), h, w, self.scale))


class BasicLayer(nn.Module):
    """One encoder stage: Swin blocks (every second one shifted), then patch merging unless it is the last."""

    def __init__(
        self, dim: int, depth: int, heads: int, cfg: SwinUnetConfig, rates: list[float], down: bool
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(
                dim, heads, cfg.window_size, i % 2 == 1, cfg.mlp_ratio, cfg.qkv_bias, rates[i]
            )
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if down else None

    def forward(self, x: torch.Tensor, h: int, w: int, cache: Geometry) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, h, w, cache)
        return self.downsample(x, h, w) if self.downsample is not None else x


class BasicLayerUp(nn.Module):
    """One decoder stage: Swin blocks (every second one shifted), then patch expanding unless it is the last."""

    def __init__(
        self, dim: int, depth: int, heads: int, cfg: SwinUnetConfig, rates: list[float], up: bool
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(
                dim, heads, cfg.window_size, i % 2 == 1, cfg.mlp_ratio, cfg.qkv_bias, rates[i]
            )
            for i in range(depth)
        )
        self.upsample = PatchExpand(dim) if up else None

    def forward(self, x: torch.Tensor, h: int, w: int, cache: Geometry) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, h, w, cache)
        return self.upsample(x, h, w) if self.upsample is not None else x


def _init_weights(module: nn.Module) -> None:
    """The reference's initialisation: truncated normal (std 0.02) linear weights, zero biases, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class SwinUnet(nn.Module):
    """Swin-Unet mapping ``N x C x H x W`` images to ``N x classes x H x W`` logits (2D only).

    Args:
        in_channels: image channels (any number; the patch embedding takes them all).
        classes: output channels (1 for the benchmark's binary masks).
        config: the architecture (:data:`SWINUNET_DEFAULT` by default).
    """

    def __init__(
        self, in_channels: int = 3, classes: int = 1, config: SwinUnetConfig = SWINUNET_DEFAULT
    ) -> None:
        super().__init__()
        cfg = self.config = config
        self.in_channels, self.classes = in_channels, classes
        n, dims = cfg.stages, [cfg.embed_dim * 2**k for k in range(cfg.stages)]
        blocks = sum(cfg.depths)  # stochastic depth grows linearly over the encoder's blocks (torch.linspace)
        rates = [cfg.drop_path_rate * i / max(blocks - 1, 1) for i in range(blocks)]
        stage_rates = [rates[sum(cfg.depths[:k]) : sum(cfg.depths[: k + 1])] for k in range(n)]
        self.patch_embed = PatchEmbed(in_channels, cfg.embed_dim, cfg.patch_size)
        self.layers = nn.ModuleList(
            BasicLayer(dims[k], cfg.depths[k], cfg.num_heads[k], cfg, stage_rates[k], down=k < n - 1)
            for k in range(n)
        )
        self.norm = nn.LayerNorm(dims[-1])
        # decoder position i works at stage k = n - 1 - i; position 0 only expands the bottleneck
        self.layers_up = nn.ModuleList()
        self.concat_back_dim = nn.ModuleList()
        for i in range(n):
            k = n - 1 - i
            if i == 0:
                self.layers_up.append(PatchExpand(dims[k]))
                self.concat_back_dim.append(nn.Identity())
            else:
                self.layers_up.append(
                    BasicLayerUp(dims[k], cfg.depths[k], cfg.num_heads[k], cfg, stage_rates[k], up=k > 0)
                )
                self.concat_back_dim.append(nn.Linear(2 * dims[k], dims[k]))
        self.norm_up = nn.LayerNorm(cfg.embed_dim)
        self.up = FinalPatchExpand(cfg.embed_dim, cfg.patch_size)
        self.output = nn.Conv2d(cfg.embed_dim, classes, kernel_size=1, bias=False)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(
                f"SwinUnet is a 2D network: it takes N x C x H x W images, got a tensor of shape {tuple(x.shape)}"
                " (3D volumes need a 3D backbone: unet3d)."
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"SwinUnet was built for {self.in_channels}-channel images, got {x.shape[1]} channels"
            )
        height, width = int(x.shape[-2]), int(x.shape[-1])
        self.config.check_size(height, width)
        n, p = self.config.stages, self.config.patch_size
        h, w = height // p, width // p
        x = self.patch_embed(x)
        cache: Geometry = {}  # one forward pass's masks and indices, never kept between calls
        skips = []
        for k, layer in enumerate(self.layers):
            skips.append(x)  # the tokens entering stage k (the reference's x_downsample)
            x = layer(x, h, w, cache)
            if k < n - 1:
                h, w = h // 2, w // 2
        x = self.norm(x)
        for i, layer_up in enumerate(self.layers_up):
            if i > 0:
                x = self.concat_back_dim[i](torch.cat([x, skips[n - 1 - i]], dim=-1))
            x = layer_up(x, h, w) if i == 0 else layer_up(x, h, w, cache)
            if i < n - 1:
                h, w = h * 2, w * 2
        x = self.up(self.norm_up(x), h, w)  # B x (H*W) x embed_dim
        x = x.view(x.shape[0], height, width, -1).permute(0, 3, 1, 2)
        return self.output(x)


# --- weights from a file ---------------------------------------------------------------------------

_PREFIXES = ("module.", "swin_unet.")
"""Wrappers' key prefixes: DataParallel's, and the reference's ``SwinUnet`` around ``SwinTransformerSys``."""
_REFERENCE_BUFFERS = ("relative_position_index", "attn_mask")
"""Buffers of the reference's state_dict that this network computes from the input's size instead."""


def _unwrap(state: dict[str, Any]) -> dict[str, Any]:
    """The state_dict inside a training checkpoint (``{"model": ...}`` / ``{"state_dict": ...}``), prefixes removed."""
    for key in ("model", "state_dict"):
        if isinstance(state.get(key), dict):
            state = state[key]
            break
    out: dict[str, Any] = {}
    for name, value in state.items():
        for prefix in _PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix) :]
        if not name.endswith(_REFERENCE_BUFFERS):
            out[name] = value
    return out


def load_swinunet_weights(model: SwinUnet, path: Path) -> None:
    """Load every parameter of ``model`` from the state_dict file ``path``; anything else is a :class:`WeightsError`.

    Accepted: ``torch.save(model.state_dict())`` of a :class:`SwinUnet` with the
    same configuration, channels and classes, also wrapped as a checkpoint's
    ``"model"`` / ``"state_dict"`` entry or with ``module.`` / ``swin_unet.`` key
    prefixes (a reference ``SwinUnet`` checkpoint; its size-bound buffers are
    dropped, since they are computed from the input here). A 3-channel
    checkpoint loads into a 1-channel model by summing the patch embedding's
    filters over colour, which is exactly the reference's repetition of a grey
    image to RGB. A missing key, an extra key or a shape that differs is an error
    naming the file: a half-loaded network would train on silently.
    """
    if not path.is_file():
        raise WeightsError(
            f"backbone 'swinunet': encoder_weights = {str(path)!r} does not exist ({path.resolve()} is not a file). "
            "Give the path of a SwinUnet state_dict saved with torch.save(model.state_dict()), or drop "
            "encoder_weights to train from scratch."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a truncated or foreign file
        raise WeightsError(
            f"{path}: cannot be read as a PyTorch state_dict ({type(exc).__name__}: {exc}). "
            "Copy the file again (it may be truncated) or give a SwinUnet state_dict saved with torch.save."
        ) from exc
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: holds a {type(state).__name__}, not a SwinUnet state_dict.")
    state = _unwrap(state)
    own = model.state_dict()
    embed = state.get("patch_embed.proj.weight")
    if (
        model.in_channels == 1
        and isinstance(embed, torch.Tensor)
        and embed.dim() == 4
        and embed.shape[1] == 3
    ):
        state["patch_embed.proj.weight"] = embed.sum(dim=1, keepdim=True)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    where = f"{path}: not a state_dict of SwinUnet({model.in_channels} channels, {model.classes} classes, {model.config.describe()})"
    if missing or unexpected:
        raise WeightsError(
            f"{where}: missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}, unexpected keys "
            f"{unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}."
        )
    for name, value in state.items():
        if not isinstance(value, torch.Tensor) or value.shape != own[name].shape:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise WeightsError(
                f"{where}: {name} is {shape} in the file, {tuple(own[name].shape)} in the model."
            )
    model.load_state_dict(state)


def build_swinunet(
    in_channels: int, encoder_weights: str | None = None, config: SwinUnetConfig = SWINUNET_DEFAULT
) -> SwinUnet:
    """The ``swinunet`` backbone: one logit channel, from scratch or from the state_dict file ``encoder_weights``.

    There are no named pretrained weights (the reference's ImageNet Swin-T is for
    another configuration and is never downloaded), so ``encoder_weights`` is a
    path or None.
    """
    check_weights_name(encoder_weights)
    model = SwinUnet(in_channels, classes=1, config=config)
    if encoder_weights is not None:
        load_swinunet_weights(model, Path(encoder_weights).expanduser())
    return model


def check_weights_name(encoder_weights: str | None) -> None:
    """Refuse ``"imagenet"``: the reference's ImageNet Swin-T weights are not a state_dict of this network."""
    if encoder_weights == "imagenet":
        raise WeightsError(
            "backbone 'swinunet' has no built-in pretrained weights, so encoder_weights = 'imagenet' "
            "means nothing; give the path of a SwinUnet state_dict file, or drop encoder_weights."
        )


def describe_swinunet_weights(encoder_weights: str | None) -> str:
    """Where the weights come from, in words (no file is read)."""
    if encoder_weights is None:
        return "none (random initialisation, trained from scratch)"
    return f"SwinUnet state_dict from {encoder_weights}"


def parameter_count(config: SwinUnetConfig = SWINUNET_DEFAULT, in_channels: int = 3) -> int:
    """Parameters of a one-class :class:`SwinUnet` (built on the meta device: no memory, no arithmetic)."""
    with torch.device("meta"):
        model = SwinUnet(in_channels, 1, config)
    return sum(math.prod(p.shape) for p in model.parameters())
