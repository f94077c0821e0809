"""Geometry of genseg_bench.augment, pinned against hand-built expectations.

Odd sizes (17 x 17 in-plane, 9 slices) put the centre on a pixel, so rotations by
exactly 90 degrees, flips and whole-pixel shifts map pixel centres onto pixel
centres and can be compared with ``torch.rot90`` / ``torch.flip`` / slicing, which
know nothing about ``affine_grid``'s (x=W, y=H, z=D) order. Exact parameters are
forced by replacing ``augment._sample`` (the only random step of the affine part);
tests of the sampler itself and of seeding use the real one.

Convention under test (module docstring): a positive angle turns the content
counter-clockwise as displayed with row 0 at the top, i.e. a ray pointing right
(+W) ends up pointing up (-H) after +90 degrees; in 3D the rotation is in the H-W
plane (about D) and only W and H are ever flipped by the sampler.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
import torch

from genseg_bench import augment
from genseg_bench.augment import AugmentConfig, augment_masks, augment_pair

SHAPE_2D = (1, 1, 17, 17)
SHAPE_3D = (1, 1, 9, 17, 17)
SHAPES = pytest.mark.parametrize("shape", [SHAPE_2D, SHAPE_3D], ids=["2d", "3d"])
# every spatial axis of each shape, by name
SHAPE_AXES = pytest.mark.parametrize(
    ("shape", "axis"),
    [(SHAPE_2D, a) for a in "HW"] + [(SHAPE_3D, a) for a in "DHW"],
    ids=["2d-H", "2d-W", "3d-D", "3d-H", "3d-W"],
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _force(
    monkeypatch: pytest.MonkeyPatch,
    order: Sequence[str],
    *,
    angle_deg: float = 0.0,
    flip: Sequence[bool] | None = None,
    shift_px: Sequence[int] | None = None,
    spatial: Sequence[int] = (),
) -> None:
    """Make every sample of the next calls use exactly these parameters (tensor axis order)."""

    def fake(
        n: int, dims: int, cfg: AugmentConfig, gen: torch.Generator, device: torch.device
    ) -> augment._Params:
        flips = torch.tensor(list(flip) if flip else [False] * dims, device=device)
        fracs = [k / side for k, side in zip(shift_px, spatial, strict=True)] if shift_px else [0.0] * dims
        return augment._Params(
            order=tuple(order),
            angle=torch.full((n,), math.radians(angle_deg), device=device),
            flip=flips.expand(n, dims).clone(),
            shift=torch.tensor(fracs, device=device).expand(n, dims).clone(),
        )

    monkeypatch.setattr(augment, "_sample", fake)


def _both(x: torch.Tensor, ops: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` as image (bilinear) and as mask (nearest) through one ``augment_pair`` call."""
    return augment_pair(x.clone(), x.clone(), AugmentConfig(ops=tuple(ops)), _gen())


def _assert_geometry(x: torch.Tensor, ops: Sequence[str], expected: torch.Tensor) -> None:
    img, msk = _both(x, ops)
    torch.testing.assert_close(img, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(msk, expected, atol=0, rtol=0)
    torch.testing.assert_close(augment_masks(x.clone(), AugmentConfig(ops=tuple(ops)), _gen()), expected)


def _binary(shape: Sequence[int], seed: int = 0) -> torch.Tensor:
    return (torch.rand(tuple(shape), generator=_gen(seed)) > 0.5).float()


def _shifted(x: torch.Tensor, axis: int, k: int) -> torch.Tensor:
    """``x`` moved by ``k`` pixels towards higher indices along dim ``axis``, zeros shifted in."""
    out = torch.zeros_like(x)
    n = x.shape[axis]
    src = [slice(None)] * x.dim()
    dst = [slice(None)] * x.dim()
    src[axis] = slice(max(0, -k), n - max(0, k))
    dst[axis] = slice(max(0, k), n - max(0, -k))
    out[tuple(dst)] = x[tuple(src)]
    return out


def _ray(shape: Sequence[int], direction: str) -> torch.Tensor:
    """A one-pixel-wide ray from the centre (included) to the border, within the centre slice."""
    x = torch.zeros(tuple(shape))
    r, c = shape[-2] // 2, shape[-1] // 2
    centre = [0, 0] + [s // 2 for s in shape[2:-2]]
    rays = {
        "right": (slice(r, r + 1), slice(c, None)),
        "left": (slice(r, r + 1), slice(0, c + 1)),
        "down": (slice(r, None), slice(c, c + 1)),
        "up": (slice(0, r + 1), slice(c, c + 1)),
    }
    x[(*centre, *rays[direction])] = 1.0
    return x


# --- rotation ---------------------------------------------------------------------------------------


@SHAPES
@pytest.mark.parametrize(
    ("angle", "before", "after"),
    [
        (90.0, "right", "up"),
        (90.0, "down", "right"),
        (90.0, "left", "down"),
        (-90.0, "right", "down"),
        (-90.0, "up", "right"),
    ],
)
def test_rotate_90_moves_a_ray_where_the_convention_says(
    monkeypatch: pytest.MonkeyPatch, shape: tuple[int, ...], angle: float, before: str, after: str
) -> None:
    """Positive = counter-clockwise as displayed; in 3D the ray stays in its slice (rotation about D)."""
    _force(monkeypatch, ["rotate"], angle_deg=angle)
    _assert_geometry(_ray(shape, before), ["rotate"], _ray(shape, after))


@SHAPES
def test_rotate_90_equals_rot90_in_the_h_w_plane(
    monkeypatch: pytest.MonkeyPatch, shape: tuple[int, ...]
) -> None:
    """The whole content, not just one ray: +90 is ``torch.rot90(k=1)`` over (H, W), slices untouched."""
    x = _binary(shape)
    _force(monkeypatch, ["rotate"], angle_deg=90.0)
    _assert_geometry(x, ["rotate"], torch.rot90(x, 1, dims=(-2, -1)))
    _force(monkeypatch, ["rotate"], angle_deg=-90.0)
    _assert_geometry(x, ["rotate"], torch.rot90(x, -1, dims=(-2, -1)))


def test_rotate_3d_keeps_a_line_along_depth(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rotation axis itself (the centre line through all slices) does not move."""
    x = torch.zeros(SHAPE_3D)
    x[0, 0, :, 8, 8] = 1.0
    _force(monkeypatch, ["rotate"], angle_deg=90.0)
    _assert_geometry(x, ["rotate"], x)
    for angle in (37.0, -61.0):  # off the pixel lattice: the image blurs around the line, the mask does not
        _force(monkeypatch, ["rotate"], angle_deg=angle)
        img, msk = _both(x, ["rotate"])
        torch.testing.assert_close(msk, x, atol=0, rtol=0)
        torch.testing.assert_close(img[0, 0, :, 8, 8], torch.ones(9))


def test_rotate_2d_non_square_is_a_rotation_in_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    """H != W: a 4-pixel ray to the right becomes a 4-pixel ray up, not a squashed one."""
    shape = (1, 1, 9, 17)
    x = torch.zeros(shape)
    x[0, 0, 4, 8:13] = 1.0
    expected = torch.zeros(shape)
    expected[0, 0, 0:5, 8] = 1.0
    _force(monkeypatch, ["rotate"], angle_deg=90.0)
    _assert_geometry(x, ["rotate"], expected)


def test_random_rotation_3d_never_mixes_slices() -> None:
    """With the real sampler: every slice constant -> its centre pixel keeps that slice's value."""
    n = 16
    x = torch.arange(1, 10, dtype=torch.float32).view(1, 1, 9, 1, 1).expand(n, 1, 9, 17, 17).contiguous()
    cfg = AugmentConfig(ops=("rotate",), rotate_degrees=180.0)
    img, msk = augment_pair(x, x.clone(), cfg, _gen(3))
    torch.testing.assert_close(img[..., 8, 8], x[..., 8, 8])
    torch.testing.assert_close(msk[..., 8, 8], x[..., 8, 8])


# --- flips --------------------------------------------------------------------------------------------


@SHAPE_AXES
def test_each_flip_flips_its_own_axis_only(
    monkeypatch: pytest.MonkeyPatch, shape: tuple[int, ...], axis: str
) -> None:
    dims = len(shape) - 2
    names = "DHW"[-dims:]
    x = _binary(shape, seed=1)
    _force(monkeypatch, ["flip"], flip=[name == axis for name in names])
    dim = 2 + names.index(axis)
    _assert_geometry(x, ["flip"], torch.flip(x, dims=(dim,)))


@SHAPES
def test_single_pixel_flips(monkeypatch: pytest.MonkeyPatch, shape: tuple[int, ...]) -> None:
    """An off-centre pixel at (row 2, col 3): W flip -> col 13, H flip -> row 14, both -> (14, 13)."""
    dims = len(shape) - 2
    lead = [0, 0] + [1] * (dims - 2)  # slice 1 in 3D: off-centre, must stay put
    x = torch.zeros(shape)
    x[(*lead, 2, 3)] = 1.0
    for flip_hw, (row, col) in {
        (False, True): (2, 13),
        (True, False): (14, 3),
        (True, True): (14, 13),
    }.items():
        expected = torch.zeros(shape)
        expected[(*lead, row, col)] = 1.0
        _force(monkeypatch, ["flip"], flip=[False] * (dims - 2) + list(flip_hw))
        _assert_geometry(x, ["flip"], expected)


def test_random_flip_3d_keeps_slice_order() -> None:
    """With the real sampler: slice-constant volumes stay slice-constant and in order."""
    x = torch.arange(1, 10, dtype=torch.float32).view(1, 1, 9, 1, 1).expand(32, 1, 9, 17, 17).contiguous()
    img, msk = augment_pair(x, x.clone(), AugmentConfig(ops=("flip",)), _gen(5))
    torch.testing.assert_close(img, x)
    torch.testing.assert_close(msk, x)


@SHAPES
def test_sampler_flips_w_and_h_never_d(shape: tuple[int, ...]) -> None:
    dims = len(shape) - 2
    params = augment._sample(512, dims, AugmentConfig(ops=("flip",)), _gen(), torch.device("cpu"))
    rate = params.flip.float().mean(0)
    assert torch.all((rate[-2:] > 0.4) & (rate[-2:] < 0.6)), rate  # H and W, each p = 0.5
    if dims == 3:
        assert not params.flip[:, 0].any()
    assert not (params.flip[:, -1] == params.flip[:, -2]).all()  # independent draws


def test_random_flip_2d_flips_both_ways() -> None:
    """With the real sampler on an asymmetric mask, both single-axis flips (and no flip) occur."""
    x = torch.zeros(1, 1, 17, 17)
    x[0, 0, 2, 3] = 1.0
    out = augment_masks(x.expand(64, -1, -1, -1), AugmentConfig(ops=("flip",)), _gen(2))
    seen = {tuple(torch.nonzero(o[0]).flatten().tolist()) for o in out}
    assert seen == {(2, 3), (2, 13), (14, 3), (14, 13)}


# --- 3D axes on a volume whose sides all differ ------------------------------------------------------

SHAPE_3D_ANISO = (1, 1, 5, 9, 13)
"""D = 5, H = 9, W = 13: any mix-up of affine_grid's (x=W, y=H, z=D) rows with tensor order moves content
to another slice or along the wrong axis, which cubic in-plane sides (17 x 17) can hide for H and W."""


@pytest.mark.parametrize("axis", "DHW")
def test_anisotropic_volume_each_flip_flips_its_own_axis(monkeypatch: pytest.MonkeyPatch, axis: str) -> None:
    x = _binary(SHAPE_3D_ANISO, seed=3)
    _force(monkeypatch, ["flip"], flip=[name == axis for name in "DHW"])
    _assert_geometry(x, ["flip"], torch.flip(x, dims=(2 + "DHW".index(axis),)))


def test_anisotropic_volume_rotation_turns_each_slice_in_its_h_w_plane(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """+90 on an off-centre slice: a ray right of the centre (6 px) becomes a ray up, clipped at row 0,
    in the same slice; -90 sends it down. Pixel units on H != W (no shear), slices never mix."""
    x = torch.zeros(SHAPE_3D_ANISO)
    x[0, 0, 1, 4, 6:13] = 1.0
    up, down = torch.zeros(SHAPE_3D_ANISO), torch.zeros(SHAPE_3D_ANISO)
    up[0, 0, 1, 0:5, 6] = 1.0
    down[0, 0, 1, 4:9, 6] = 1.0
    _force(monkeypatch, ["rotate"], angle_deg=90.0)
    _assert_geometry(x, ["rotate"], up)
    _force(monkeypatch, ["rotate"], angle_deg=-90.0)
    _assert_geometry(x, ["rotate"], down)


def test_anisotropic_volume_random_rotation_and_flip_keep_each_slice() -> None:
    """The real sampler, rotate + flip as GenSeg's 3D masks get them: slice-constant volumes stay so."""
    x = torch.arange(1, 6, dtype=torch.float32).view(1, 1, 5, 1, 1).expand(16, 1, 5, 9, 13).contiguous()
    out = augment_masks(x, AugmentConfig(ops=("rotate", "flip"), rotate_degrees=180.0), _gen(9))
    torch.testing.assert_close(out[..., 4, 6], x[..., 4, 6])
    assert set(torch.unique(out).tolist()) <= {0.0, 1.0, 2.0, 3.0, 4.0, 5.0}


# --- translation --------------------------------------------------------------------------------------


@SHAPE_AXES
@pytest.mark.parametrize("k", [3, -2])
def test_translation_moves_its_own_axis_by_whole_pixels(
    monkeypatch: pytest.MonkeyPatch, shape: tuple[int, ...], axis: str, k: int
) -> None:
    dims = len(shape) - 2
    names = "DHW"[-dims:]
    x = _binary(shape, seed=2)
    shift = [k if name == axis else 0 for name in names]
    _force(monkeypatch, ["translate"], shift_px=shift, spatial=shape[2:])
    _assert_geometry(x, ["translate"], _shifted(x, 2 + names.index(axis), k))


@SHAPES
def test_sampler_translation_stays_in_range(shape: tuple[int, ...]) -> None:
    dims = len(shape) - 2
    cfg = AugmentConfig(ops=("translate",), translate_fraction=0.2)
    params = augment._sample(512, dims, cfg, _gen(), torch.device("cpu"))
    assert params.shift.abs().max() <= 0.2
    assert torch.all(params.shift.abs().amax(0) > 0.15)  # every axis, D included, is moved


# --- composition --------------------------------------------------------------------------------------


@SHAPES
def test_order_is_the_order_the_content_sees(monkeypatch: pytest.MonkeyPatch, shape: tuple[int, ...]) -> None:
    """Centre pixel: shift right 2 then rotate +90 -> 2 up; rotate then shift -> 2 right."""
    dims = len(shape) - 2
    lead = [0, 0] + [s // 2 for s in shape[2:-2]]
    x = torch.zeros(shape)
    x[(*lead, 8, 8)] = 1.0
    shift = [0] * (dims - 1) + [2]
    for order, (row, col) in {("translate", "rotate"): (6, 8), ("rotate", "translate"): (8, 10)}.items():
        expected = torch.zeros(shape)
        expected[(*lead, row, col)] = 1.0
        _force(monkeypatch, order, angle_deg=90.0, shift_px=shift, spatial=shape[2:])
        _assert_geometry(x, order, expected)


# --- masks, pairs, batches, seeds ---------------------------------------------------------------------

ALL = ("rotate", "flip", "translate", "elastic")


def _blob(shape: Sequence[int]) -> torch.Tensor:
    """A solid off-centre box, so rotations, flips and shifts all move its centroid."""
    x = torch.zeros(tuple(shape))
    box = [slice(None), slice(None)] + [slice(s // 4, s // 4 + max(2, s // 3)) for s in shape[2:]]
    x[tuple(box)] = 1.0
    return x


def _centroid(x: torch.Tensor) -> torch.Tensor:
    """Per-sample centre of mass in pixels, one column per spatial axis."""
    grids = torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in x.shape[2:]], indexing="ij")
    mass = x.sum(dim=tuple(range(1, x.dim())))
    return torch.stack([(x * g).sum(dim=tuple(range(1, x.dim()))) / mass for g in grids], dim=1)


@SHAPES
def test_masks_stay_binary(shape: tuple[int, ...]) -> None:
    masks = _binary((6, *shape[1:]), seed=4)
    cfg = AugmentConfig(ops=ALL, rotate_degrees=45.0, translate_fraction=0.2)
    out = augment_masks(masks, cfg, _gen(1))
    _, paired = augment_pair(torch.rand(masks.shape), masks, cfg, _gen(1))
    for m in (out, paired):
        assert set(torch.unique(m).tolist()) <= {0.0, 1.0}
        assert m.sum() > 0


@SHAPES
def test_image_and_mask_of_a_pair_share_the_transform(shape: tuple[int, ...]) -> None:
    """Same blob as image (bilinear) and mask (nearest): per sample they still coincide."""
    x = _blob((8, *shape[1:]))
    cfg = AugmentConfig(ops=ALL, rotate_degrees=45.0, translate_fraction=0.1, elastic_alpha=0.03)
    img, msk = augment_pair(x.clone(), x.clone(), cfg, _gen(7))
    assert not set(torch.unique(img).tolist()) <= {0.0, 1.0}  # the image really was interpolated
    torch.testing.assert_close(_centroid(img), _centroid(msk), atol=0.5, rtol=0)
    inter = ((img > 0.5) & (msk > 0.5)).sum(dim=(1, 2, 3, *range(4, x.dim())))
    union = ((img > 0.5) | (msk > 0.5)).sum(dim=(1, 2, 3, *range(4, x.dim())))
    assert torch.all(inter / union > 0.8)


@SHAPES
def test_batch_samples_get_independent_transforms(shape: tuple[int, ...]) -> None:
    x = _blob((8, *shape[1:]))
    out = augment_masks(x, AugmentConfig(ops=("rotate", "flip", "translate")), _gen(8))
    flat = out.flatten(1)
    for i in range(len(flat)):
        for j in range(i + 1, len(flat)):
            assert not torch.equal(flat[i], flat[j]), (i, j)


@SHAPES
def test_same_seed_same_output_different_seed_different_output(shape: tuple[int, ...]) -> None:
    x = _blob((4, *shape[1:]))
    cfg = AugmentConfig(ops=ALL)
    a = augment_pair(x.clone(), x.clone(), cfg, _gen(11))
    b = augment_pair(x.clone(), x.clone(), cfg, _gen(11))
    c = augment_pair(x.clone(), x.clone(), cfg, _gen(12))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_op_order_is_random_but_seeded() -> None:
    cfg = AugmentConfig(ops=("rotate", "flip", "translate"))
    cpu = torch.device("cpu")
    orders = {augment._sample(1, 2, cfg, _gen(s), cpu).order for s in range(40)}
    assert len(orders) > 1
    assert all(sorted(o) == ["flip", "rotate", "translate"] for o in orders)
    assert augment._sample(1, 2, cfg, _gen(5), cpu).order == augment._sample(1, 2, cfg, _gen(5), cpu).order


def test_sampler_angle_in_range() -> None:
    cfg = AugmentConfig(ops=("rotate",), rotate_degrees=20.0)
    angle = augment._sample(512, 3, cfg, _gen(), torch.device("cpu")).angle
    assert angle.abs().max() <= math.radians(20.0) + 1e-6
    assert angle.min() < -math.radians(15.0) and angle.max() > math.radians(15.0)


def test_inactive_config_returns_inputs() -> None:
    x = _binary(SHAPE_2D)
    assert augment_masks(x, AugmentConfig(), _gen()) is x
    img, msk = augment_pair(x, x, AugmentConfig(), _gen())
    assert img is x and msk is x


def test_unknown_op_is_rejected() -> None:
    with pytest.raises(ValueError, match="shear"):
        AugmentConfig(ops=("rotate", "shear"))
