"""Helpers shared by the data source modules.

Every source does the same four things: find its folders in the layout the data
set's own distribution unpacks to, pair each image with its mask file(s), decode
both into the :class:`~genseg_bench.data.types.Case` conventions, and binarise the
mask by the set's documented rule. Doing these here, once, means every source
fails the same way on bad input: a :class:`~genseg_bench.errors.DataError` that
names the file at fault and says how to fix it, never a bare PIL or numpy error
deep inside a training run.

Pairing (listing files) is eager and decoding is lazy: a source's ``read``
returns a :class:`CaseReader` that already knows every case id, so a missing
folder or a missing mask is reported before any image is decoded, and splits can
be made from the ids without decoding anything.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from genseg_bench.data.types import Case
from genseg_bench.errors import DataError

IMAGE_EXTS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif")
"""Raster formats PIL decodes and that the 2D sets ship in."""

Binarise = Callable[[np.ndarray, Path], np.ndarray]
"""A label-map rule: (decoded labels, the file they came from) -> bool mask; strict, reports nothing.

Binary-mask sets use a :class:`BinaryRule` instead, which also reports stray values."""

_T = TypeVar("_T")


# --------------------------------------------------------------------- folders


def layout_hint(layout: str) -> str:
    """The expected-layout paragraph appended to folder errors."""
    return f"Expected layout:\n{layout.rstrip()}"


def require_root(root: Path, source_id: str, layout: str) -> Path:
    """``root`` as a directory, or a DataError naming it and describing the layout.

    Checked first by every source so that a typo in a path is reported as such, not
    as "zero cases".
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(
            f"{source_id}: data folder {root} does not exist. Download the data set and "
            f"unpack it there, or pass the folder it was unpacked to. {layout_hint(layout)}"
        )
    if not root.is_dir():
        raise DataError(f"{source_id}: {root} is a file, not the data set's folder. {layout_hint(layout)}")
    return root


def subdirs(folder: Path) -> list[Path]:
    """Visible subdirectories of ``folder``, sorted (hidden and macOS ``._`` entries skipped)."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return []
    return [Path(e.path) for e in entries if not e.name.startswith(".") and e.is_dir()]


def locate(
    root: Path,
    source_id: str,
    layout: str,
    options: Sequence[Sequence[str]],
    *,
    depth: int = 3,
) -> tuple[Path, int]:
    """Find the folder that holds one of the expected sets of subfolders.

    Distributions unpack with or without an outer folder (``Kvasir-SEG/`` around
    ``images/``; a doubled ``Lung Segmentation Data/Lung Segmentation Data/``), so
    ``root`` itself and its subfolders down to ``depth`` levels are tried, in sorted
    order. ``options`` are alternatives, each a list of relative folder paths that
    must all exist. Returns the base folder and the index of the option that matched.
    A miss is a DataError naming the missing subfolder(s) of ``root``.
    """
    root = require_root(root, source_id, layout)
    frontier = [root]
    for _ in range(depth + 1):
        next_frontier: list[Path] = []
        for base in frontier:
            for i, option in enumerate(options):
                if all((base / rel).is_dir() for rel in option):
                    return base, i
            next_frontier.extend(subdirs(base))
        frontier = next_frontier
    missing = ", ".join(str(root / rel) for rel in options[0] if not (root / rel).is_dir())
    alternatives = " or ".join("{" + ", ".join(opt) + "}" for opt in options)
    raise DataError(
        f"{source_id}: expected subfolder(s) not found under {root}: missing {missing or options[0]} "
        f"(looked for {alternatives} in {root} and its subfolders). {layout_hint(layout)}"
    )


def require_dir(folder: Path, source_id: str, layout: str) -> Path:
    """``folder`` if it is a directory, else a DataError naming it (an expected subfolder is missing)."""
    if not folder.is_dir():
        raise DataError(f"{source_id}: expected folder {folder} is missing. {layout_hint(layout)}")
    return folder


def walk_dirs(root: Path) -> Iterator[Path]:
    """Every visible directory under ``root`` (itself included), in sorted, deterministic order."""
    yield root
    for sub in subdirs(root):
        yield from walk_dirs(sub)


def has_ext(path: Path, exts: Iterable[str]) -> bool:
    """Case-insensitive suffix test that also handles double suffixes such as ``.nii.gz``."""
    name = path.name.lower()
    return any(name.endswith(ext.lower()) for ext in exts)


def strip_ext(path: Path, exts: Iterable[str]) -> str:
    """The file name without the first matching suffix of ``exts`` (``case.nii.gz`` -> ``case``)."""
    name = path.name
    for ext in sorted(exts, key=len, reverse=True):
        if name.lower().endswith(ext.lower()):
            return name[: len(name) - len(ext)]
    return path.stem


def list_files(folder: Path, exts: Iterable[str]) -> list[Path]:
    """Files of ``folder`` with one of ``exts``, sorted by name.

    Hidden files are skipped, which also drops the ``._name`` AppleDouble files that
    archives made on macOS carry (the MSD tarballs do) and that look like images by
    suffix but are not.
    """
    exts = tuple(exts)
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise DataError(f"cannot list folder {folder}: {exc}") from exc
    return [
        Path(e.path)
        for e in entries
        if not e.name.startswith(".") and e.is_file() and has_ext(Path(e.name), exts)
    ]


# --------------------------------------------------------------------- pairing


@dataclass(frozen=True)
class Pair:
    """One case before decoding: its id, its image file and its mask file(s).

    Several mask files are united (left + right lung; BUSI's extra ``_mask_1``).
    """

    case_id: str
    image: Path
    masks: tuple[Path, ...]


def index_files(files: Iterable[Path], key: Callable[[Path], str | None], what: str) -> dict[str, Path]:
    """Files by pairing key; ``key`` returning None skips a file. Two files with one key is an error."""
    out: dict[str, Path] = {}
    for path in files:
        k = key(path)
        if k is None:
            continue
        if k in out:
            raise DataError(
                f"two {what} files map to the same case {k!r}: {out[k]} and {path}. "
                "Remove the duplicate (a copy left by an earlier unpack?)."
            )
        out[k] = path
    return out


def match(
    images: Mapping[str, Path],
    masks: Mapping[str, Path],
    *,
    expected_mask: Callable[[str, Path], Path],
    expected_image: Callable[[str, Path], Path],
    skip_unlabelled: bool = False,
) -> dict[str, tuple[Path, Path]]:
    """Join images and masks on their keys, or a DataError naming the file without a partner.

    A missing pair usually means an incomplete download or a file deleted by hand; a
    silently dropped case would change the test set without anyone noticing, so it
    is an error, unless ``skip_unlabelled``: sets such as Shenzhen ship masks for a
    subset of the images only, and there an image without a mask is simply unlabelled.
    A mask without an image is always an error.
    """
    for k, mask in masks.items():
        if k not in images:
            raise DataError(
                f"mask {mask} has no image: expected {expected_image(k, mask)}. "
                "Restore the image (re-download the data set) or remove the stray mask."
            )
    out: dict[str, tuple[Path, Path]] = {}
    for k, image in images.items():
        if k in masks:
            out[k] = (image, masks[k])
        elif not skip_unlabelled:
            raise DataError(
                f"image {image} has no mask: expected {expected_mask(k, image)}. "
                "Restore the mask (re-download the data set) or remove the image."
            )
    return out


def pair_folders(
    image_dir: Path,
    mask_dir: Path,
    *,
    image_exts: Sequence[str] = IMAGE_EXTS,
    mask_exts: Sequence[str] = IMAGE_EXTS,
    mask_suffix: str = "",
    id_prefix: str = "",
    skip_unlabelled: bool = False,
    image_filter: Callable[[str], bool] | None = None,
) -> list[Pair]:
    """Pair ``image_dir/<stem><ext>`` with ``mask_dir/<stem><mask_suffix><mask ext>``.

    The common layout (Kvasir-SEG, CVC-ClinicDB, ISIC, FUSeg, ...): two folders,
    mask named after its image plus an optional suffix, possibly in another format
    (ISIC images are JPEG, masks PNG). Case ids are ``id_prefix + stem``.
    ``image_filter`` (on the stem) keeps only some images, for folders shared by
    several sets.
    """

    def image_key(p: Path) -> str | None:
        stem = strip_ext(p, image_exts)
        return stem if image_filter is None or image_filter(stem) else None

    def mask_key(p: Path) -> str | None:
        stem = strip_ext(p, mask_exts)
        if not stem.endswith(mask_suffix):
            return None
        key = stem[: len(stem) - len(mask_suffix)] if mask_suffix else stem
        return key if image_filter is None or image_filter(key) else None

    def same_or_first(path: Path, exts: Sequence[str]) -> str:
        own = next((e for e in exts if has_ext(path, [e])), None)
        return own if own is not None else exts[0]

    images = index_files(list_files(image_dir, image_exts), image_key, "image")
    masks = index_files(list_files(mask_dir, mask_exts), mask_key, "mask")
    joined = match(
        images,
        masks,
        expected_mask=lambda k, img: mask_dir / f"{k}{mask_suffix}{same_or_first(img, mask_exts)}",
        expected_image=lambda k, m: image_dir / f"{k}{same_or_first(m, image_exts)}",
        skip_unlabelled=skip_unlabelled,
    )
    return [Pair(f"{id_prefix}{k}", img, (m,)) for k, (img, m) in sorted(joined.items())]


# --------------------------------------------------------------------- decoding


def corrupt(path: Path, exc: BaseException | str) -> DataError:
    """The error for a file that cannot be decoded: name it and say what to do."""
    return DataError(
        f"cannot read {path}: {exc}. The file is corrupt, truncated or not an image; "
        "re-download it, or remove it together with its partner image/mask."
    )


def open_image(path: Path) -> Image.Image:
    """Open and fully decode ``path`` with PIL, turning every decoder failure into a DataError.

    ``load()`` is called here because PIL decodes lazily: a truncated file would
    otherwise fail later, far from the file name.
    """
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except FileNotFoundError as exc:
        raise DataError(f"file {path} disappeared while reading: {exc}") from exc
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise corrupt(path, exc) from exc


def to_uint8(values: np.ndarray) -> np.ndarray:
    """Integer or float intensities scaled to uint8.

    uint8 passes unchanged. Higher bit depths (16-bit PNG X-rays) are scaled by the
    smallest full range ``2**k - 1`` that holds the image's maximum (12-bit data
    stored in 16 bits keeps its contrast); floats are min-max scaled.
    """
    if values.dtype == np.uint8:
        return values
    if values.dtype == bool:
        return values.astype(np.uint8) * 255
    if np.issubdtype(values.dtype, np.integer):
        v = values.astype(np.int64)
        lo = min(int(v.min()), 0) if v.size else 0
        v = v - lo
        top = int(v.max()) if v.size else 0
        full = (1 << max(8, top.bit_length())) - 1
        return np.round(v * (255.0 / full)).astype(np.uint8)
    v = values.astype(np.float64)
    finite = np.isfinite(v)
    if not finite.any():
        return np.zeros(v.shape, np.uint8)
    lo, hi = float(v[finite].min()), float(v[finite].max())
    scaled = np.zeros(v.shape) if hi <= lo else (np.where(finite, v, lo) - lo) / (hi - lo)
    return np.round(scaled * 255.0).astype(np.uint8)


def image_array(im: Image.Image, channels: int) -> np.ndarray:
    """A decoded PIL image as ``H x W x channels`` uint8.

    ``channels == 1`` for the grey modalities (X-ray, ultrasound, OCT, echo): colour
    files are converted to luminance, since several of these sets store grey images
    as RGB. ``channels == 3`` otherwise: grey files are replicated to RGB. 16-bit
    and float files are scaled with :func:`to_uint8`; alpha is dropped.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, not {channels}")
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        grey = to_uint8(np.asarray(im))
        arr = grey[..., None] if channels == 1 else np.repeat(grey[..., None], 3, axis=2)
    elif channels == 1:
        arr = np.asarray(im.convert("L"))[..., None]
    else:
        arr = np.asarray(im.convert("RGB"))
    # PIL hands out read-only buffers; a writable copy keeps torch.from_numpy (the store) quiet
    return np.require(arr, np.uint8, ["C_CONTIGUOUS", "WRITEABLE"])


def read_image(path: Path, channels: int) -> np.ndarray:
    """Read an image file robustly as ``H x W x channels`` uint8 (DataError naming a bad file)."""
    return image_array(open_image(path), channels)


def read_mask(path: Path) -> np.ndarray:
    """Read a binary-mask file as an ``H x W`` array of grey values, ready for a binarisation rule.

    Palette files (the SCR GIFs) are mapped through their palette, so a mask whose
    palette index 0 is white still reads as white. Colour files take the maximum
    over channels, so a mask drawn in a pure colour (red lesion) is not darkened
    the way a luminance conversion would darken it.
    """
    im = open_image(path)
    if im.mode == "1":
        return np.asarray(im, dtype=np.uint8) * 255
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return np.asarray(im)
    if im.mode == "L":
        return np.asarray(im)
    if im.mode == "LA":
        return np.asarray(im)[..., 0]
    rgb = np.asarray(im.convert("RGB"))
    return rgb.max(axis=2)


def read_label_map(path: Path) -> np.ndarray:
    """Read a multi-class label-map file as ``H x W`` integer labels.

    Unlike :func:`read_mask`, palette files keep their indices (the index is the
    class), and a colour file is accepted only when its channels are equal (a grey
    label map saved as RGB); a colour-coded map is an error naming the file.
    """
    im = open_image(path)
    if im.mode in ("P", "L", "I", "I;16", "I;16B", "I;16L", "I;16N", "1"):
        return np.asarray(im).astype(np.int64)
    if im.mode == "LA":
        return np.asarray(im)[..., 0].astype(np.int64)
    rgb = np.asarray(im.convert("RGB"))
    if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
        raise DataError(
            f"label map {path} is a colour image with differing channels; expected one class "
            "index per pixel (a grey or palette PNG). Re-download the original label files."
        )
    return rgb[..., 0].astype(np.int64)


def check_same_size(
    image_path: Path, image_shape: tuple[int, ...], mask_path: Path, mask_shape: tuple[int, ...]
) -> None:
    """DataError naming both files when an image and its mask do not have the same pixel grid.

    A resized or mismatched mask would otherwise be broadcast or cropped silently
    and score as a wrong but plausible label.
    """
    if tuple(image_shape) != tuple(mask_shape):
        raise DataError(
            f"image {image_path} is {'x'.join(map(str, image_shape))} but its mask {mask_path} is "
            f"{'x'.join(map(str, mask_shape))}; they must have the same size. Re-download the "
            "pair, or remove both files if only one of them was resized."
        )


# --------------------------------------------------------------------- binarisation


# Binary masks: levels, stray values and the ambiguity limits.
#
# A binary mask file should hold two values, background 0 and foreground 255 (or 1).
# Official distributions are not always that clean: FUSeg's validation/labels/0233.png
# holds 252 pixels of 32, JPEG masks (Kvasir-SEG) carry compression noise at every edge,
# anti-aliased drawings and resized copies carry a ramp of grey along the outline. Such
# "stray" values are binarised by the set's rule, counted per file and reported by
# ``data prepare``, so the data set imports and the change stays visible. Only a file
# that no rule reads without guessing is an error: one with *regions* of mid-grey (a
# grey-level image, a label map whose classes are grey levels), or one coded at a low
# grey level. Mid-grey along the 0/255 outline is never an error, however thin the
# structure (vessels), because there the nearer level is the obvious reading.

NEAR_LEVEL = 32
"""Values within this many grey levels of 0 or 255 are near a level: compression noise or
anti-aliasing, never a label of their own. Values 33..222 are mid-grey."""

EDGE_RADIUS = 3
"""A mid-grey pixel within this many pixels (chessboard distance) of both a near-0 and a
near-255 pixel lies on the outline: JPEG ringing and resampling ramps are 1-3 pixels wide."""

MAX_PLATEAU_SHARE = 0.05
"""Largest share of a mask's pixels that may be mid-grey away from the outline. JPEG polyp
masks have at most 1 % mid-grey pixels in all (Kvasir-SEG and CVC-ClinicDB copies in
shared/data: 0.65 % and 0.99 %), nearly all on the outline."""

CLASS_SHARE = 0.005
"""A mid-grey value whose off-outline pixels hold this share of the mask is a class of its own
(noise spreads over many values with a few pixels each)."""

MAX_CLASS_LIKE = 2
"""More class-like mid-grey values than this is a multi-class label map."""

MAX_LISTED_VALUES = 8
"""Stray values kept per file in the report (the most frequent ones)."""


@dataclass(frozen=True)
class StrayPixels:
    """One mask file that held values other than its two levels, and how many pixels had them.

    ``pixels`` is the number of pixels the binarisation had to move to a level (their
    value was neither background nor foreground), which is what ``data prepare`` reports.
    """

    path: Path
    values: tuple[int, ...]
    """The stray values, most frequent first (at most :data:`MAX_LISTED_VALUES`)."""
    n_values: int
    """How many distinct stray values the file held."""
    pixels: int
    total: int
    """Pixels in the mask."""


def _as_8bit(values: np.ndarray) -> np.ndarray:
    """A mask's grey values on the 0..255 scale (16-bit, bool and float files scaled)."""
    v = np.asarray(values)
    return v if v.dtype == np.uint8 else to_uint8(v)


def _grow(b: np.ndarray, r: int) -> np.ndarray:
    """``b`` dilated by a (2r+1) square: pixels within chessboard distance ``r`` of a True pixel."""
    out = b.copy()
    for axis in range(out.ndim):
        src = out.copy()
        for k in range(1, min(r, out.shape[axis] - 1) + 1):
            ahead = [slice(None)] * out.ndim
            behind = [slice(None)] * out.ndim
            ahead[axis], behind[axis] = slice(k, None), slice(None, -k)
            out[tuple(ahead)] |= src[tuple(behind)]
            out[tuple(behind)] |= src[tuple(ahead)]
    return out


def _mid(counts: np.ndarray) -> np.ndarray:
    """The mid-grey part (values 33..222) of a 256-bin histogram."""
    return counts[NEAR_LEVEL + 1 : 255 - NEAR_LEVEL]


@dataclass(frozen=True)
class BinaryRule:
    """The documented rule of a binary-mask set: foreground is ``value > level`` on the 8-bit scale.

    Levels are 0 and 255 (a 0/1 file, whose maximum is 1, uses 0 and 1 and is read
    exactly). Every other value is stray: ``level=127`` sends it to the nearer level,
    ``level=0`` makes any nonzero pixel foreground. Calling the rule returns the bool
    mask and, when the file held stray values, a :class:`StrayPixels` record.

    It raises a DataError naming the file when the mask is ambiguous, i.e. when the
    rule would be guessing:

    * more than :data:`MAX_PLATEAU_SHARE` (5 %) of the pixels are mid-grey (33..222)
      away from the 0/255 outline (a grey-level image, grey-coded classes);
    * more than :data:`MAX_CLASS_LIKE` mid-grey values each cover
      :data:`CLASS_SHARE` of the pixels away from the outline (a multi-class label map);
    * no pixel passes the rule although at least :data:`CLASS_SHARE` of them are nonzero
      (class indices 0/1/2, or a mask coded at a low grey level such as 0/100).
    """

    level: int = 127

    def describe(self) -> str:
        """The rule in words, for BINARISATION texts and error messages."""
        return f"threshold(mask, {self.level})" if self.level else "nonzero(mask)"

    def __call__(self, values: np.ndarray, path: Path) -> tuple[np.ndarray, StrayPixels | None]:
        v = _as_8bit(values)
        counts = np.bincount(v.ravel(), minlength=256)
        total = int(v.size)
        top = int(np.flatnonzero(counts).max()) if total else 0
        if top <= 1:  # a 0/1 file: read exactly, nothing is stray
            return v == 1, None
        stray = counts.copy()
        stray[[0, 255]] = 0
        n_stray = int(stray.sum())
        if n_stray:
            self._check(v, counts, total, path)
        nonzero_px = total - int(counts[0])
        if top <= self.level and nonzero_px >= CLASS_SHARE * total:
            raise DataError(
                f"mask {path} is ambiguous: no pixel is above {self.level} (highest value {top}) yet "
                f"{nonzero_px / total:.1%} of the pixels are nonzero, so {self.describe()} would read "
                "it as empty. It looks like a label map of class indices or a mask coded at a low "
                "grey level, not this data set's 0/255 masks. Re-download the original file, or "
                "remove it together with its image."
            )
        mask = v > self.level
        if not n_stray:
            return mask, None
        n_values = int((stray > 0).sum())
        order = np.argsort(-stray, kind="stable")[: min(MAX_LISTED_VALUES, n_values)]
        return mask, StrayPixels(path, tuple(int(i) for i in order), n_values, n_stray, total)

    @staticmethod
    def _check(v: np.ndarray, counts: np.ndarray, total: int, path: Path) -> None:
        """DataError when mid-grey forms regions of its own rather than an outline."""
        mid = _mid(counts)
        if mid.sum() <= MAX_PLATEAU_SHARE * total and (mid >= CLASS_SHARE * total).sum() <= MAX_CLASS_LIKE:
            return  # too little mid-grey to be ambiguous, wherever it lies: no image work needed
        is_mid = (v > NEAR_LEVEL) & (v < 255 - NEAR_LEVEL)
        outline = _grow(v >= 255 - NEAR_LEVEL, EDGE_RADIUS) & _grow(v <= NEAR_LEVEL, EDGE_RADIUS)
        plateau = np.bincount(v[is_mid & ~outline], minlength=256)
        share = float(plateau.sum()) / total
        if share > MAX_PLATEAU_SHARE:
            raise DataError(
                f"mask {path} is ambiguous: {share:.1%} of its pixels are mid-grey (values "
                f"{NEAR_LEVEL + 1}..{254 - NEAR_LEVEL}) away from the 0/255 outline, more than the "
                f"{MAX_PLATEAU_SHARE:.0%} allowed; compression noise and anti-aliasing only touch the "
                "outline. It is a grey-level image or a label map, not a binary mask: re-download "
                "the original mask, or remove it together with its image."
            )
        classes = np.flatnonzero(_mid(plateau) >= CLASS_SHARE * total) + NEAR_LEVEL + 1
        if classes.size > MAX_CLASS_LIKE:
            shown = ", ".join(str(int(c)) for c in classes[:MAX_LISTED_VALUES])
            raise DataError(
                f"mask {path} is ambiguous: {classes.size} grey levels ({shown}) each cover at least "
                f"{CLASS_SHARE:.1%} of the pixels away from the outline, which is a multi-class "
                "label map, not a binary mask. Re-download the data set's binary masks, or remove "
                "the file together with its image."
            )


THRESHOLD_127 = BinaryRule(127)
"""The rule of every binary-mask set here: stray values go to the nearer level."""

STRAY_RULE = (
    "Stray values (neither 0 nor 255: JPEG noise, anti-aliasing, stray annotation levels) go to "
    "the nearer level and are counted in the prepare summary; a mask with more than 5 % "
    "mid-grey pixels (33..222) away from its outline, or with several grey levels that each "
    "cover 0.5 % of it there (a label map), is an error."
)
"""The sentence every binary-mask set's BINARISATION text ends with."""


class MaskReport:
    """What binarisation changed while reading one source: files with stray values, pixels moved.

    A :class:`CaseReader` owns one; its load function adds a record per mask file
    (records are kept per path, so decoding a case twice counts it once).
    :meth:`summary` is what the store writes into a prepared set's metadata.
    """

    def __init__(self) -> None:
        self._checked: set[Path] = set()
        self._stray: dict[Path, StrayPixels] = {}

    def add(self, path: Path, stray: StrayPixels | None) -> None:
        """Record that ``path`` was binarised, and its stray pixels if it had any."""
        self._checked.add(path)
        if stray is not None:
            self._stray[path] = stray

    @property
    def files_checked(self) -> int:
        return len(self._checked)

    @property
    def files(self) -> list[StrayPixels]:
        """Files with stray values, most pixels changed first, then by path."""
        return sorted(self._stray.values(), key=lambda s: (-s.pixels, str(s.path)))

    def summary(self, root: Path | None = None, limit: int = 20) -> dict[str, object]:
        """Totals and the ``limit`` files with the most changed pixels, paths relative to ``root``.

        Only the largest files are listed: a JPEG set has noise in nearly every mask,
        and a thousand lines of it would hide the one file that matters.
        """

        def rel(path: Path) -> str:
            if root is not None:
                try:
                    return Path(path).relative_to(root).as_posix()
                except ValueError:
                    pass
            return str(path)

        files = self.files
        return {
            "files_checked": self.files_checked,
            "files_changed": len(files),
            "pixels_changed": sum(s.pixels for s in files),
            "top": [
                {"file": rel(s.path), "values": list(s.values), "n_values": s.n_values, "pixels": s.pixels}
                for s in files[:limit]
            ],
        }


def class_value(mask: np.ndarray, value: int) -> np.ndarray:
    """``mask == value``: one class of a multi-class label map (FetReg vessels = 1)."""
    return np.asarray(mask) == value


def class_values(mask: np.ndarray, values: Iterable[int]) -> np.ndarray:
    """Union of several classes of a label map (hippocampus 1+2, liver 1+2, LV 1+2)."""
    return np.isin(np.asarray(mask), list(values))


def check_labels(labels: np.ndarray, allowed: Iterable[int], path: Path) -> None:
    """DataError naming ``path`` when a label map holds a value outside ``allowed``.

    Cheap (two comparisons per voxel, no sort), so it runs on full CT volumes too.
    Catches label files of another task or a float volume given as labels.
    """
    allowed = sorted(set(allowed))
    lab = np.asarray(labels)
    bad = (lab < allowed[0]) | (lab > allowed[-1])
    if np.issubdtype(lab.dtype, np.floating):
        bad |= lab != np.rint(lab)
    if len(allowed) != allowed[-1] - allowed[0] + 1:
        bad |= ~np.isin(lab, allowed)
    if bad.any():
        found = np.unique(lab[bad])[:8]
        raise DataError(
            f"label file {path} has values {', '.join(str(v) for v in found)} outside the expected "
            f"labels {allowed}. Is it the label file of another data set or task? Re-download it."
        )


def union(masks: Sequence[np.ndarray], paths: Sequence[Path]) -> np.ndarray:
    """Logical OR of several bool masks of one case (left + right lung; BUSI ``_mask_1``).

    Masks of different sizes are a DataError naming the two files.
    """
    if not masks:
        raise ValueError("union of zero masks")
    out = np.asarray(masks[0], dtype=bool).copy()
    for mask, path in zip(masks[1:], paths[1:], strict=True):
        check_same_size(paths[0], out.shape, path, mask.shape)
        out |= mask
    return out


# --------------------------------------------------------------------- cases


def binarise_mask(
    values: np.ndarray, path: Path, rule: BinaryRule | Binarise, report: MaskReport | None = None
) -> np.ndarray:
    """Apply a binary rule (recording stray values in ``report``) or a strict label-map rule."""
    if isinstance(rule, BinaryRule):
        mask, stray = rule(values, path)
        if report is not None:
            report.add(path, stray)
        return mask
    return rule(values, path)


def load_2d(
    pair: Pair,
    *,
    channels: int,
    binarise: BinaryRule | Binarise,
    label_map: bool = False,
    report: MaskReport | None = None,
) -> Case:
    """Decode a 2D pair: image as ``H x W x C`` uint8, masks binarised with ``binarise`` and united.

    ``label_map`` reads the masks with :func:`read_label_map` (class indices) instead
    of :func:`read_mask` (grey values). Stray values a :class:`BinaryRule` met go to ``report``.
    """
    image = read_image(pair.image, channels)
    reader = read_label_map if label_map else read_mask
    masks = []
    for path in pair.masks:
        mask = binarise_mask(reader(path), path, binarise, report)
        check_same_size(pair.image, image.shape[:2], path, mask.shape)
        masks.append(mask)
    return Case(pair.case_id, image, np.ascontiguousarray(union(masks, pair.masks)))


class CaseReader(Iterator[Case], Generic[_T]):
    """The cases of one source: ids known up front, images decoded one at a time.

    What a source's ``read`` returns. It is an iterator of cases (so
    ``for case in source.read(root)`` works and stops early cheaply), has a length,
    and exposes :attr:`case_ids` so callers can count, split or select cases
    without decoding any image. Construction fails with a DataError when the
    folder yields zero cases: an empty data set is always a wrong path or a
    wrong layout, never something to benchmark on.

    :attr:`report` collects the stray mask values met while decoding (see
    :class:`MaskReport`); the store saves its summary with the prepared set.
    """

    def __init__(
        self,
        source_id: str,
        root: Path,
        layout: str,
        items: Sequence[_T],
        case_id: Callable[[_T], str],
        load: Callable[[_T], Case],
        report: MaskReport | None = None,
    ) -> None:
        if not items:
            raise DataError(
                f"{source_id}: no cases found in {root}: the expected folders exist but hold no "
                f"image/mask pairs. Check that the archive was fully unpacked. {layout_hint(layout)}"
            )
        self.source_id = source_id
        self.root = Path(root)
        self.report = report if report is not None else MaskReport()
        self._items = list(items)
        self._case_id = case_id
        self._load = load
        self._next = 0
        ids = [case_id(it) for it in self._items]
        if len(set(ids)) != len(ids):
            dupes = sorted({i for i in ids if ids.count(i) > 1})[:5]
            raise DataError(
                f"{source_id}: duplicate case ids in {root}: {', '.join(dupes)}. Remove the copies."
            )
        self.case_ids: tuple[str, ...] = tuple(ids)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> CaseReader[_T]:
        return self

    def __next__(self) -> Case:
        if self._next >= len(self._items):
            raise StopIteration
        item = self._items[self._next]
        self._next += 1
        return self._load(item)

    def select(self, case_ids: Iterable[str]) -> Iterator[Case]:
        """Decode only the named cases, in the order given (KeyError for an unknown id)."""
        by_id = {self._case_id(it): it for it in self._items}
        for cid in case_ids:
            yield self._load(by_id[cid])


def pair_reader(
    source_id: str,
    root: Path,
    layout: str,
    pairs: Sequence[Pair],
    *,
    channels: int,
    binarise: BinaryRule | Binarise,
    label_map: bool = False,
) -> CaseReader[Pair]:
    """The usual 2D reader: :class:`CaseReader` over pairs decoded with :func:`load_2d`."""
    report = MaskReport()
    return CaseReader(
        source_id,
        root,
        layout,
        sorted(pairs, key=lambda p: p.case_id),
        lambda p: p.case_id,
        lambda p: load_2d(p, channels=channels, binarise=binarise, label_map=label_map, report=report),
        report=report,
    )


# --------------------------------------------------------------------- Waterloo skin sets

WATERLOO_COLLECTIONS = frozenset({"dermis", "dermquest"})
"""The collections of the Waterloo archive, as lower-case folder names."""


def waterloo_pairs(root: Path, source_id: str, layout: str, collection: str) -> list[Pair]:
    """Pairs of the University of Waterloo "Skin Cancer Detection" archive (DermIS, DermQuest).

    The archive holds ``skin_data/{melanoma,notmelanoma}/{dermIS,dermquest}/`` with
    ``<name>_orig.jpg`` photographs and ``<name>_contour.png`` lesion masks side by
    side. Only folders under a folder named ``collection`` (case-insensitive) are
    read when the tree has one, so the same root serves both sets; a folder under
    the other collection's name is never read; a flat folder without such names
    is read whole. Case id: ``<class folder>/<name>`` (e.g.
    ``melanoma/Oh-MM-1``), or ``<name>`` when there is no class folder.
    """
    root = require_root(root, source_id, layout)
    orig, contour = ("_orig.jpg", "_orig.jpeg"), ("_contour.png",)
    folders: list[tuple[Path, Path | None]] = []  # (folder with pair files, its collection folder)
    for folder in walk_dirs(root):
        # a folder of masks alone is read too, so that its stray masks are reported, not skipped
        if not list_files(folder, (*orig, *contour)):
            continue
        rel_parts = [root.name, *folder.relative_to(root).parts]
        if any(part.lower() in WATERLOO_COLLECTIONS - {collection.lower()} for part in rel_parts):
            continue  # the other collection's folder: never read as this one, even when this one is absent
        hits = [i for i, part in enumerate(rel_parts) if part.lower() == collection.lower()]
        coll = root.parent.joinpath(*rel_parts[: hits[-1] + 1]) if hits else None
        folders.append((folder, coll))
    if any(c is not None for _, c in folders):
        folders = [(f, c) for f, c in folders if c is not None]
    if not folders:
        raise DataError(f"{source_id}: no '*_orig.jpg' images found under {root}. {layout_hint(layout)}")
    pairs: list[Pair] = []
    for folder, coll in folders:
        if coll is not None:
            inner = folder.relative_to(coll).as_posix() if folder != coll else ""
            prefix = f"{coll.parent.name}/" + (f"{inner}/" if inner else "")
        else:
            inner = folder.relative_to(root).as_posix() if folder != root else ""
            prefix = f"{inner}/" if inner else ""
        images = index_files(list_files(folder, orig), lambda p: strip_ext(p, orig), "image")
        masks = index_files(list_files(folder, contour), lambda p: strip_ext(p, contour), "mask")
        joined = match(
            images,
            masks,
            expected_mask=lambda k, _, d=folder: d / f"{k}_contour.png",
            expected_image=lambda k, _, d=folder: d / f"{k}_orig.jpg",
        )
        pairs.extend(Pair(f"{prefix}{k}", img, (m,)) for k, (img, m) in joined.items())
    return pairs


# --------------------------------------------------------------------- image/mask folder trees


def folder_pairs(
    root: Path,
    source_id: str,
    layout: str,
    *,
    mask_dirs: Sequence[str],
    image_dir: str = "images",
    image_exts: Sequence[str] = IMAGE_EXTS,
    mask_exts: Sequence[str] = IMAGE_EXTS,
    mask_suffix: str = "",
    id_from: str = "relative",
) -> list[Pair]:
    """Pairs from every folder under ``root`` holding ``images/`` and a mask folder.

    For sets distributed as one ``images/`` + ``labels/`` (or ``masks/``) pair per
    video or per split (FetReg ``Video001/``, FPD, ICFluid ``train/``). The first
    name of ``mask_dirs`` present in a folder is used. Case ids are
    ``<prefix>/<stem>``: with ``id_from="name"`` the prefix is the folder's own name
    (``Video001``, stable wherever ``root`` points inside the archive); with
    ``"relative"`` it is the folder's path relative to ``root``. A folder that is
    ``root`` itself adds no prefix.
    """
    root = require_root(root, source_id, layout)
    pairs: list[Pair] = []
    for folder in walk_dirs(root):
        if folder.name in (image_dir, *mask_dirs) or not (folder / image_dir).is_dir():
            continue
        mask_dir = next((folder / m for m in mask_dirs if (folder / m).is_dir()), None)
        if mask_dir is None:
            continue
        if folder == root:
            prefix = ""
        else:
            prefix = (folder.name if id_from == "name" else folder.relative_to(root).as_posix()) + "/"
        pairs += pair_folders(
            folder / image_dir,
            mask_dir,
            image_exts=image_exts,
            mask_exts=mask_exts,
            mask_suffix=mask_suffix,
            id_prefix=prefix,
        )
    if not pairs and not any(
        (f / image_dir).is_dir() and any((f / m).is_dir() for m in mask_dirs) for f in walk_dirs(root)
    ):
        wanted = " or ".join(f"{image_dir}/ + {m}/" for m in mask_dirs)
        raise DataError(
            f"{source_id}: no folder with {wanted} found under {root} "
            f"(expected e.g. {root / image_dir} and {root / mask_dirs[0]}). {layout_hint(layout)}"
        )
    return pairs


# --------------------------------------------------------------------- volume formats

_MET_TYPES: dict[str, str] = {
    "MET_UCHAR": "u1",
    "MET_CHAR": "i1",
    "MET_USHORT": "u2",
    "MET_SHORT": "i2",
    "MET_UINT": "u4",
    "MET_INT": "i4",
    "MET_ULONG_LONG": "u8",
    "MET_LONG_LONG": "i8",
    "MET_FLOAT": "f4",
    "MET_DOUBLE": "f8",
}


def read_nifti(path: Path) -> np.ndarray:
    """A NIfTI file's voxel array with its axes reversed, so the last NIfTI axis comes first.

    NIfTI stores ``(i, j, k)`` with ``i`` varying fastest; reversing gives
    ``(k, j, i)`` = ``D x H x W`` for a volume and ``H x W`` for a 2D image, the same
    convention ITK / SimpleITK use for ``.mhd`` and NIfTI alike, so image and label
    files (and the ``.mhd`` and ``.nii.gz`` releases of one set) agree. Intensity
    scaling (``scl_slope``) is applied. Unreadable files are a DataError naming the file.
    """
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except FileNotFoundError as exc:
        raise DataError(f"file {path} disappeared while reading: {exc}") from exc
    except Exception as exc:  # nibabel raises many types (ImageFileError, EOFError, zlib.error, ...)
        raise corrupt(path, exc) from exc
    return np.ascontiguousarray(np.transpose(np.asarray(data), tuple(range(data.ndim))[::-1]))


def read_mhd(path: Path) -> np.ndarray:
    """A MetaImage (``.mhd`` header + raw data file, or ``.mha``) as a numpy array, ITK axis order.

    Only the header keys needed to decode the pixels are read (``DimSize``,
    ``ElementType``, ``ElementDataFile``, byte order, ``CompressedData``); this keeps
    SimpleITK out of the dependencies for the one set (CAMUS) that uses the format.
    The array shape is ``DimSize`` reversed (``H x W`` for a 2D image).
    """
    import zlib

    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise corrupt(path, exc) from exc
    header: dict[str, str] = {}
    offset = 0
    for raw_line in blob.splitlines(keepends=True):
        offset += len(raw_line)
        line = raw_line.decode("latin-1").strip()
        if "=" not in line:
            if line:
                raise corrupt(path, f"not a MetaImage header line: {line[:60]!r}")
            continue
        key, value = (s.strip() for s in line.split("=", 1))
        header[key] = value
        if key == "ElementDataFile":
            break
    try:
        dims = [int(v) for v in header["DimSize"].split()]
        dtype = np.dtype(_MET_TYPES[header["ElementType"]])
        data_file = header["ElementDataFile"]
    except (KeyError, ValueError) as exc:
        raise corrupt(path, f"MetaImage header lacks or garbles {exc}") from exc
    msb = header.get("BinaryDataByteOrderMSB", header.get("ElementByteOrderMSB", "False")).lower() == "true"
    dtype = dtype.newbyteorder(">" if msb else "<")
    if data_file == "LOCAL":
        payload = blob[offset:]
        source = path
    else:
        source = path.parent / data_file
        try:
            payload = source.read_bytes()
        except OSError as exc:
            raise DataError(
                f"MetaImage header {path} names data file {source}, which cannot be read ({exc}). "
                "Re-download the pair (.mhd and .raw files belong together)."
            ) from exc
    if header.get("CompressedData", "False").lower() == "true":
        try:
            payload = zlib.decompress(payload)
        except zlib.error as exc:
            raise corrupt(source, exc) from exc
    count = int(np.prod(dims))
    if len(payload) != count * dtype.itemsize:
        raise corrupt(
            source, f"{len(payload)} bytes of pixel data, expected {count * dtype.itemsize} for {dims}"
        )
    return np.frombuffer(payload, dtype=dtype).reshape(dims[::-1]).astype(dtype.newbyteorder("="))


def squeeze_2d(values: np.ndarray, path: Path) -> np.ndarray:
    """A 2D array from a file that may carry singleton axes (``1 x H x W``), or a DataError."""
    out = np.squeeze(values)
    if out.ndim != 2:
        raise DataError(f"{path} holds a {'x'.join(map(str, values.shape))} array; expected a 2D image.")
    return out
