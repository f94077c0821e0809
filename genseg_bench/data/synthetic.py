"""The embedded synthetic task family: lesion-like blobs on textured backgrounds.

Generated deterministically by the package (numpy ``Generator`` seeded per case
id), so the synthetic tasks need no files and give identical data, and therefore
identical fingerprints, on every machine. Two domains share the shape
distribution but differ in appearance, which is what an out-of-domain test needs:

- ``synthetic-a``: warm skin-like background, darker smooth lesion, mild noise.
- ``synthetic-b``: shifted colour balance, lower contrast, stronger noise and a
  vignette, like a different device in a different hospital.

Shapes are irregular star-convex blobs (a radius function with random
harmonics) so that the boundary is not trivial for a small network. About one
case in twenty has no lesion: real test sets contain empty masks, and the
empty-mask policy of the metrics must meet them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from genseg_bench.data.types import Case

N_CASES = {"synthetic-a": 240, "synthetic-b": 120}
NATIVE_SIZE = 96


def _rng(source: str, index: int) -> np.random.Generator:
    digest = hashlib.sha256(f"{source}:{index}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _blob_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    cy, cx = rng.uniform(0.3, 0.7, size=2)
    base = rng.uniform(0.12, 0.28)
    angle = np.arctan2(yy - cy, xx - cx)
    radius = np.full_like(angle, base)
    for k in range(2, 6):
        radius += rng.uniform(0.0, 0.035) * np.cos(k * angle + rng.uniform(0, 2 * np.pi))
    dist = np.hypot(yy - cy, xx - cx)
    return dist <= radius


def _smooth_noise(rng: np.random.Generator, size: int, scale: int) -> np.ndarray:
    coarse = rng.normal(size=(scale, scale))
    reps = int(np.ceil(size / scale))
    up = np.kron(coarse, np.ones((reps, reps)))[:size, :size]
    # a separable box blur removes the blockiness of the upsampling
    k = max(1, reps // 2)
    kernel = np.ones(2 * k + 1) / (2 * k + 1)
    up = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 0, up)
    up = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 1, up)
    return up / (up.std() + 1e-8)


def make_case(source: str, index: int, size: int = NATIVE_SIZE) -> Case:
    """Case ``index`` of a synthetic domain (pure function of its arguments)."""
    if source not in N_CASES:
        raise ValueError(f"unknown synthetic source {source!r}; known: {sorted(N_CASES)}")
    rng = _rng(source, index)
    empty = index % 20 == 7
    mask = np.zeros((size, size), bool) if empty else _blob_mask(rng, size)
    texture = _smooth_noise(rng, size, 8)
    fine = rng.normal(size=(size, size))
    if source == "synthetic-a":
        bg = np.array([0.85, 0.62, 0.52])
        fg = np.array([0.45, 0.28, 0.22])
        tex_amp, noise_amp, vignette = 0.05, 0.03, 0.0
    else:
        bg = np.array([0.70, 0.66, 0.72])
        fg = np.array([0.50, 0.40, 0.50])
        tex_amp, noise_amp, vignette = 0.08, 0.06, 0.35
    soft = mask.astype(np.float64)
    # soften the lesion edge a little so the boundary is not a one-pixel step
    for axis in (0, 1):
        soft = (np.roll(soft, 1, axis) + soft + np.roll(soft, -1, axis)) / 3
    fg_var = fg * (1 + 0.15 * rng.uniform(-1, 1))
    img = bg[None, None, :] * (1 - soft[..., None]) + fg_var[None, None, :] * soft[..., None]
    img = img + tex_amp * texture[..., None] + noise_amp * fine[..., None]
    if vignette:
        yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
        img = img * (1 - vignette * (yy**2 + xx**2))[..., None]
    image = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
    return Case(case_id=f"{source}-{index:04d}", image=image, mask=mask)


def read(source: str) -> Iterator[Case]:
    """Every case of one synthetic domain."""
    for i in range(N_CASES[source]):
        yield make_case(source, i)


def reader(source: str):  # type: ignore[no-untyped-def]
    """A SourceInfo-compatible ``read(root)`` that ignores ``root`` (no files are needed)."""

    def _read(root: Path | None = None) -> Iterator[Case]:
        return read(source)

    return _read
