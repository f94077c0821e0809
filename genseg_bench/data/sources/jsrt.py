"""JSRT chest radiographs with the SCR lung masks.

The paper's lung training source (247 radiographs). Images come from the JSRT
database as headerless 12-bit raw files; lung masks come from the separate SCR
database (van Ginneken et al.) as one GIF per lung, so both archives are read
and joined on the file stem (``JPCLN001``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from genseg_bench.data.sources import SourceInfo
from genseg_bench.data.sources._common import (
    STRAY_RULE,
    THRESHOLD_127,
    CaseReader,
    MaskReport,
    binarise_mask,
    corrupt,
    index_files,
    layout_hint,
    list_files,
    match,
    read_mask,
    require_root,
    strip_ext,
    union,
    walk_dirs,
)
from genseg_bench.data.types import Case
from genseg_bench.errors import DataError

ID = "jsrt"
MAX_VALUE = 4095
"""JSRT pixels are 12-bit, stored big-endian in 16 bits."""

LAYOUT = """\
<root>/                                  (JSRT and SCR archives unpacked side by side)
  All247images/JPCLN001.IMG, ..., JPCNN093.IMG    (JSRT: headerless 2048x2048, 12-bit, big-endian;
                                                   any folder under <root> holding the .IMG files works)
  scratch/masks/left lung/JPCLN001.gif, ...        (SCR: 1024x1024 binary GIFs; fold1/ fold2/ subfolders
  scratch/masks/right lung/JPCLN001.gif, ...        are fine: every 'left lung'/'right lung' folder is read)
"""

BINARISATION = (
    "SCR left-lung and right-lung GIFs (0/255; threshold(mask, 127) each) united into one lung mask. The "
    "2048x2048 image is block-averaged to the mask grid (1024x1024) and its 12-bit values are "
    "inverted and scaled to uint8 (v' = (4095 - v) * 255 / 4095): JSRT raw values are high where "
    "the film is dark, so inversion gives the usual display (lungs dark), as in the Montgomery "
    f"and Shenzhen PNGs used as out-of-domain tests. {STRAY_RULE}"
)


@dataclass(frozen=True)
class _Item:
    case_id: str
    image: Path
    left: Path
    right: Path


def read_img(path: Path) -> np.ndarray:
    """A JSRT ``.IMG`` file as a square uint16 array of 12-bit values.

    The side is inferred from the file size (2048 for real files), which also lets
    tests use tiny files. A size that is not a square of 16-bit pixels, or values
    above 4095 (wrong byte order or not a JSRT file), is a DataError naming the file.
    """
    try:
        raw = np.fromfile(path, dtype=">u2")
    except (OSError, ValueError) as exc:
        raise corrupt(path, exc) from exc
    side = math.isqrt(raw.size)
    if raw.size == 0 or side * side != raw.size or path.stat().st_size != raw.size * 2:
        raise corrupt(
            path, f"{path.stat().st_size} bytes is not a square 16-bit image (JSRT: 2048x2048, 8 MiB)"
        )
    if int(raw.max()) > MAX_VALUE:
        raise corrupt(path, "values above 4095: not a 12-bit big-endian JSRT image")
    return raw.reshape(side, side).astype(np.uint16)


def to_grid(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resample a float image to ``shape``: exact block mean for integer factors, bilinear otherwise."""
    h, w = values.shape
    th, tw = shape
    if (h, w) == (th, tw):
        return values
    if h % th == 0 and w % tw == 0:
        return values.reshape(th, h // th, tw, w // tw).mean(axis=(1, 3))
    im = Image.fromarray(values.astype(np.float32))
    return np.asarray(im.resize((tw, th), Image.Resampling.BILINEAR), dtype=np.float64)


def _load(item: _Item, report: MaskReport) -> Case:
    masks = [binarise_mask(read_mask(p), p, THRESHOLD_127, report) for p in (item.left, item.right)]
    mask = union(masks, [item.left, item.right])
    values = to_grid(read_img(item.image).astype(np.float64), mask.shape)
    grey = np.round((MAX_VALUE - values) * (255.0 / MAX_VALUE)).clip(0, 255).astype(np.uint8)
    return Case(item.case_id, np.ascontiguousarray(grey[..., None]), mask)


def read(root: Path) -> CaseReader[_Item]:
    """Join the JSRT ``.IMG`` files with the SCR left/right lung GIFs; case id = ``JPCLN001`` etc."""
    root = require_root(root, ID, LAYOUT)
    imgs: list[Path] = []
    lefts: list[Path] = []
    rights: list[Path] = []
    for folder in walk_dirs(root):
        name = folder.name.lower()
        if name == "left lung":
            lefts += list_files(folder, (".gif",))
        elif name == "right lung":
            rights += list_files(folder, (".gif",))
        else:
            imgs += list_files(folder, (".img",))
    if not imgs:
        raise DataError(f"{ID}: no JSRT .IMG images found under {root}. {layout_hint(LAYOUT)}")
    if not lefts or not rights:
        missing = "left lung" if not lefts else "right lung"
        raise DataError(
            f"{ID}: no SCR '{missing}' mask folder with .gif files found under {root} "
            f"(expected e.g. {root / 'scratch' / 'masks' / missing}). {layout_hint(LAYOUT)}"
        )

    def key(p: Path) -> str:
        return strip_ext(p, (".img", ".gif")).upper()

    images = index_files(imgs, key, "image")
    left_dir, right_dir = lefts[0].parent, rights[0].parent
    joined_left = match(
        images,
        index_files(lefts, key, "left-lung mask"),
        expected_mask=lambda k, _: left_dir / f"{k}.gif",
        expected_image=lambda k, _: root / "All247images" / f"{k}.IMG",
    )
    joined_right = match(
        images,
        index_files(rights, key, "right-lung mask"),
        expected_mask=lambda k, _: right_dir / f"{k}.gif",
        expected_image=lambda k, _: root / "All247images" / f"{k}.IMG",
    )
    items = [_Item(k, img, left, joined_right[k][1]) for k, (img, left) in sorted(joined_left.items())]
    report = MaskReport()
    return CaseReader(ID, root, LAYOUT, items, lambda it: it.case_id, lambda it: _load(it, report), report)


SOURCE = SourceInfo(
    id=ID,
    title="JSRT chest radiographs with SCR lung masks",
    citation=(
        "Shiraishi J, Katsuragawa S, Ikezoe J, Matsumoto T, Kobayashi T, Komatsu K, Matsui M, "
        "Fujita H, Kodera Y, Doi K. Development of a digital image database for chest radiographs "
        "with and without a lung nodule. American Journal of Roentgenology 174(1):71-74, 2000; "
        "van Ginneken B, Stegmann MB, Loog M. Segmentation of anatomical structures in chest "
        "radiographs using supervised methods: a comparative study on a public database. Medical "
        "Image Analysis 10(1):19-40, 2006."
    ),
    licence="JSRT: free for research and education (JSRT terms); SCR masks: free for research",
    url="http://db.jsrt.or.jp/eng.php ; https://www.isi.uu.nl/Research/Databases/SCR/",
    dims=2,
    channels=1,
    layout=LAYOUT,
    binarisation=BINARISATION,
    read=read,
)
