"""Batched geometric augmentation on the device: rotation, flipping, translation, elastic.

One affine matrix per sample, composed from the chosen operations in a random
order (the paper applies rotation, flipping and translation "in a random
sequence"), then a single ``grid_sample`` for the whole batch. Images are
resampled bilinearly, masks by nearest neighbour so they stay binary. The same
code serves the supervised baselines (image and mask together) and GenSeg's mask
augmentation (mask alone), so their ranges are the same by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

OPS = ("rotate", "flip", "translate", "elastic")


@dataclass(frozen=True)
class AugmentConfig:
    """Which operations run and their ranges.

    ``rotate_degrees``: uniform in [-r, r]. ``translate_fraction``: shift up to this
    fraction of the side. ``flip``: horizontal and vertical, each with p = 0.5.
    ``elastic_alpha``: displacement amplitude in normalised coordinates (the
    image spans [-1, 1]); ``elastic_grid``: control points per side (smoothness).
    """

    ops: tuple[str, ...] = ()
    rotate_degrees: float = 30.0
    translate_fraction: float = 0.1
    elastic_alpha: float = 0.06
    elastic_grid: int = 5

    def __post_init__(self) -> None:
        bad = [o for o in self.ops if o not in OPS]
        if bad:
            raise ValueError(f"unknown augmentation ops {bad}; known: {list(OPS)}")

    @classmethod
    def from_config(cls, config: dict[str, object], key: str = "augment") -> AugmentConfig:
        """Build from a method spec's ``config`` table (keys: augment, rotate_degrees, ...)."""
        ops = tuple(str(o) for o in config.get(key, ()))  # type: ignore[union-attr]
        kwargs: dict[str, float | int] = {}
        for name in ("rotate_degrees", "translate_fraction", "elastic_alpha"):
            if name in config:
                kwargs[name] = float(config[name])  # type: ignore[arg-type]
        if "elastic_grid" in config:
            kwargs["elastic_grid"] = int(config["elastic_grid"])  # type: ignore[call-overload]
        return cls(ops=ops, **kwargs)  # type: ignore[arg-type]

    @property
    def active(self) -> bool:
        return bool(self.ops)


def _uniform(n: int, low: float, high: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) * (high - low) + low


def _affine(
    n: int, dims: int, cfg: AugmentConfig, gen: torch.Generator, device: torch.device
) -> torch.Tensor:
    """``n x (dims+1) x (dims+1)`` matrices, each op composed in a per-batch random order."""
    eye = torch.eye(dims + 1, device=device).expand(n, -1, -1).clone()
    affine_ops = [o for o in cfg.ops if o != "elastic"]
    order = torch.randperm(len(affine_ops), generator=gen, device=device).tolist() if affine_ops else []
    mat = eye
    for idx in order:
        op = affine_ops[idx]
        m = eye.clone()
        if op == "rotate":
            theta = _uniform(n, -cfg.rotate_degrees, cfg.rotate_degrees, gen, device) * math.pi / 180
            c, s = torch.cos(theta), torch.sin(theta)
            # rotate in the last two (in-plane) axes; for 3D the depth axis is kept
            i, j = dims - 2, dims - 1
            m[:, i, i], m[:, i, j], m[:, j, i], m[:, j, j] = c, -s, s, c
        elif op == "flip":
            for axis in range(dims):
                if dims == 3 and axis == 0:
                    continue  # keep slice order in 3D
                sign = torch.where(torch.rand(n, generator=gen, device=device) < 0.5, -1.0, 1.0)
                m[:, axis, axis] = sign
        elif op == "translate":
            for axis in range(dims):
                m[:, axis, dims] = _uniform(
                    n, -2 * cfg.translate_fraction, 2 * cfg.translate_fraction, gen, device
                )
        mat = m @ mat
    return mat


def _grid(
    shape: torch.Size, cfg: AugmentConfig, gen: torch.Generator, device: torch.device
) -> torch.Tensor | None:
    n, dims = shape[0], len(shape) - 2
    if not cfg.active:
        return None
    theta = _affine(n, dims, cfg, gen, device)[:, :dims, :]
    grid = F.affine_grid(theta, list(shape), align_corners=False)
    if "elastic" in cfg.ops:
        k = cfg.elastic_grid
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
