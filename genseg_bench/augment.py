"""Batched geometric augmentation on the device: rotation, flipping, translation, elastic.

One affine matrix per sample, composed from the chosen operations in a random
order (the paper applies rotation, flipping and translation "in a random
sequence"; the order is drawn once per batch, the parameters once per sample),
then a single ``grid_sample`` for the whole batch. Images are resampled
bilinearly, masks by nearest neighbour so they stay binary. The same code serves
the supervised baselines (image and mask together) and GenSeg's mask
augmentation (mask alone), so their ranges are the same by construction.

Axes. Tensors are ``(N, C, H, W)`` in 2D and ``(N, C, D, H, W)`` in 3D, but
``F.affine_grid`` orders the rows and columns of its matrix the other way round:
``(x, y)`` = ``(W, H)`` in 2D and ``(x, y, z)`` = ``(W, H, D)`` in 3D. Everything
here is written in tensor order (``_Params``, ``_theta``'s arguments) and
converted to grid order in exactly one place, ``_theta``, so the two cannot be
mixed up again (they were: the 3D branch used to rotate the H-D plane and never
flip W).

What each operation does to the content, in 2D and per slice in 3D:

* ``rotate``: a rotation in the H-W (in-plane) plane about the image centre; in 3D
  that is a rotation about the depth/slice axis D, so every slice is rotated the
  same way and slices never mix. Volumes are usually anisotropic (few, thick
  slices), so an out-of-plane rotation would interpolate across slices, which the
  2D paper augmentation has no counterpart for. A positive angle ``a`` turns the
  content counter-clockwise as displayed with row 0 at the top (the sense of
  ``torch.rot90(x, 1, dims=(-2, -1))`` and torchvision's ``rotate``): a pixel at
  ``(row, col)`` relative to the centre moves to
  ``(row cos a - col sin a, row sin a + col cos a)``, e.g. right of the centre
  ``(0, 1)`` goes to above it ``(-1, 0)`` at 90 degrees. The rotation is done in
  pixel units, so it stays a rotation (no shear) when H != W.
* ``flip``: W (left-right) and H (up-down), each independently with p = 0.5. In
  3D the slice order D is never flipped: slice order carries anatomy
  (cranio-caudal) that the in-plane flips do not.
* ``translate``: every axis, D included in 3D, independently by up to
  ``translate_fraction`` of that axis's side; ``_Params.shift`` names the axis it
  moves in tensor order.
* ``elastic``: a smooth random displacement of the sampling grid (not affine).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from genseg_bench.augment_ops import OPS, AugmentConfig

__all__ = ["OPS", "AugmentConfig", "augment_masks", "augment_pair"]


@dataclass(frozen=True)
class _Params:
    """Explicit parameters of one batch's affine transform, all in tensor axis order.

    ``order``: the affine ops as they act on the content, first to last.
    ``angle``: ``(n,)`` radians, positive = counter-clockwise as displayed (module docstring).
    ``flip``: ``(n, dims)`` bool, one column per spatial axis: ``(H, W)`` or ``(D, H, W)``.
    ``shift``: ``(n, dims)`` content displacement as a fraction of that axis's side,
    positive towards higher indices; same column order as ``flip``.

    Kept separate from the sampling so tests (and anyone debugging an augmentation)
    can build an exact transform, e.g. a rotation of exactly 90 degrees.
    """

    order: tuple[str, ...]
    angle: torch.Tensor
    flip: torch.Tensor
    shift: torch.Tensor


def _uniform(n: int, low: float, high: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) * (high - low) + low


def _sample(n: int, dims: int, cfg: AugmentConfig, gen: torch.Generator, device: torch.device) -> _Params:
    """Draw one batch's op order and per-sample parameters from ``gen``.

    The draws (their order and count) are those of the original implementation,
    so 2D runs with a given seed are reproduced exactly; in 3D the two flip draws
    now go to W and H instead of H and D.
    """
    affine_ops = [o for o in cfg.ops if o != "elastic"]
    perm = torch.randperm(len(affine_ops), generator=gen, device=device).tolist() if affine_ops else []
    angle = torch.zeros(n, device=device)
    flip = torch.zeros(n, dims, dtype=torch.bool, device=device)
    shift = torch.zeros(n, dims, device=device)
    for idx in perm:
        op = affine_ops[idx]
        if op == "rotate":
            angle = _uniform(n, -cfg.rotate_degrees, cfg.rotate_degrees, gen, device) * math.pi / 180
        elif op == "flip":
            for axis in (dims - 1, dims - 2):  # W, then H; never D
                flip[:, axis] = torch.rand(n, generator=gen, device=device) < 0.5
        elif op == "translate":
            for axis in reversed(range(dims)):  # W, H[, D]
                # the draw is the grid offset (normalised units, side = 2); content moves the other way
                offset = _uniform(n, -2 * cfg.translate_fraction, 2 * cfg.translate_fraction, gen, device)
                shift[:, axis] = -offset / 2
    # a matrix product applies its right-most factor to the content first (see _theta)
    order = tuple(affine_ops[i] for i in reversed(perm))
    return _Params(order=order, angle=angle, flip=flip, shift=shift)


def _theta(spatial: Sequence[int], params: _Params) -> torch.Tensor:
    """``n x dims x (dims+1)`` matrices for ``F.affine_grid`` realising ``params`` on the content.

    ``affine_grid`` pulls: output point p (normalised, grid order x=W, y=H[, z=D])
    reads the input at ``theta @ p``. So each op contributes the inverse of its
    content transform, and the content op applied first is the left-most factor.
    This is the one place where tensor axis order turns into grid order.
    """
    dims = len(spatial)
    n = params.angle.shape[0]
    device = params.angle.device
    eye = torch.eye(dims + 1, device=device).expand(n, -1, -1).clone()

    def grid(axis: int) -> int:
        """Grid row/column of tensor spatial axis ``axis`` (0 = first spatial axis)."""
        return dims - 1 - axis

    mat = eye
    for op in reversed(params.order):
        m = eye.clone()
        if op == "rotate":
            # pulling through R(a) in (x, y) turns the content by +a counter-clockwise as
            # displayed (y points down). Conjugating by the pixel scale (W/2, H/2) keeps
            # it a rotation in pixels when H != W; for square images the ratio is 1.0.
            c, s = torch.cos(params.angle), torch.sin(params.angle)
            x, y = grid(dims - 1), grid(dims - 2)
            ratio = spatial[-2] / spatial[-1]  # (H/2) / (W/2)
            m[:, x, x], m[:, x, y], m[:, y, x], m[:, y, y] = c, -s * ratio, s / ratio, c
        elif op == "flip":
            for axis in range(dims):
                m[:, grid(axis), grid(axis)] = torch.where(params.flip[:, axis], -1.0, 1.0)
        elif op == "translate":
            for axis in range(dims):
                m[:, grid(axis), dims] = -2 * params.shift[:, axis]
        else:
            raise ValueError(f"not an affine op: {op!r}")
        mat = m @ mat
    return mat[:, :dims, :]


def _grid(
    shape: torch.Size, cfg: AugmentConfig, gen: torch.Generator, device: torch.device
) -> torch.Tensor | None:
    n, dims = shape[0], len(shape) - 2
    if not cfg.active:
        return None
    theta = _theta(tuple(shape[2:]), _sample(n, dims, cfg, gen, device))
    grid = F.affine_grid(theta, list(shape), align_corners=False)
    if "elastic" in cfg.ops:
        k = cfg.elastic_grid
        # one i.i.d. displacement channel per grid coordinate (x, y[, z]); same amplitude on each
        coarse = (
            torch.rand((n, dims, *([k] * dims)), generator=gen, device=device) * 2 - 1
        ) * cfg.elastic_alpha
        mode = "bilinear" if dims == 2 else "trilinear"
        field = F.interpolate(coarse, size=tuple(shape[2:]), mode=mode, align_corners=True)
        grid = grid + field.movedim(1, -1)
    return grid


def augment_pair(
    images: torch.Tensor, masks: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random transform applied to each image and its mask."""
    grid = _grid(images.shape, cfg, gen, images.device)
    if grid is None:
        return images, masks
    img = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    msk = F.grid_sample(masks, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return img, msk


def augment_masks(masks: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """GenSeg's first step: augment expert masks before the generator turns them into images."""
    grid = _grid(masks.shape, cfg, gen, masks.device)
    if grid is None:
        return masks
    return F.grid_sample(masks, grid, mode="nearest", padding_mode="zeros", align_corners=False)
