"""BUSI (breast ultrasound images), the paper's "buid" breast-cancer set.

Breast ultrasound scans of 600 women (Baheya Hospital, Cairo), sorted into
benign / malignant / normal folders, each image with one ``_mask`` file and, where
there are several lesions, extra ``_mask_1``, ``_mask_2`` files that together make
the lesion mask.
"""

from __future__ import annotations

import re
from pathlib import Path

from genseg_bench.data.sources import SourceInfo
from genseg_bench.data.sources._common import (
    STRAY_RULE,
    THRESHOLD_127,
    CaseReader,
    Pair,
    index_files,
    list_files,
    locate,
    match,
    pair_reader,
)
from genseg_bench.errors import DataError

ID = "buid"
CLASSES = ("benign", "malignant")
"""Normal scans (no lesion, empty masks) are left out, as in the paper's benign/malignant task."""

_EXTRA = re.compile(r"^(?P<key>.*)_mask_(?P<n>\d+)$")

LAYOUT = """\
<root>/                                  (Dataset_BUSI_with_GT/ as unpacked, or its parent)
  benign/benign (1).png, benign (1)_mask.png, [benign (1)_mask_1.png, ...]
  malignant/malignant (1).png, malignant (1)_mask.png, ...
  normal/                                (ignored: no lesions)
"""

BINARISATION = (
    "Each _mask*.png is a 0/255 mask, binarised with threshold(mask, 127); an image's _mask and "
    "its extra _mask_1, _mask_2 files are united (several lesions). Images from benign/ and "
    "malignant/; normal/ is left out. Case id: <class>/<stem>, e.g. 'benign/benign (1)'. "
    f"{STRAY_RULE}"
)


def _class_pairs(folder: Path) -> list[Pair]:
    files = list_files(folder, (".png",))
    images = index_files(files, lambda p: None if "_mask" in p.stem else p.stem, "image")
    masks = index_files(files, lambda p: p.stem[:-5] if p.stem.endswith("_mask") else None, "mask")
    extras: dict[str, list[Path]] = {}
    for p in files:
        m = _EXTRA.match(p.stem)
        if m:
            extras.setdefault(m["key"], []).append(p)
    for key, paths in extras.items():
        if key not in images:
            raise DataError(
                f"mask {paths[0]} has no image: expected {folder / (key + '.png')}. "
                "Restore the image (re-download the data set) or remove the stray mask."
            )
    joined = match(
        images,
        masks,
        expected_mask=lambda k, _: folder / f"{k}_mask.png",
        expected_image=lambda k, _: folder / f"{k}.png",
    )
    return [
        Pair(
            f"{folder.name}/{k}",
            img,
            (m, *sorted(extras.get(k, []), key=lambda p: int(_EXTRA.match(p.stem)["n"]))),
        )
        for k, (img, m) in joined.items()
    ]


def read(root: Path) -> CaseReader[Pair]:
    """Read the benign and malignant scans with their united lesion masks."""
    base, _ = locate(root, ID, LAYOUT, [CLASSES])
    pairs = [p for cls in CLASSES for p in _class_pairs(base / cls)]
    return pair_reader(ID, root, LAYOUT, pairs, channels=1, binarise=THRESHOLD_127)


SOURCE = SourceInfo(
    id=ID,
    title="BUSI: breast ultrasound images with lesion masks",
    citation=(
        "Al-Dhabyani W, Gomaa M, Khaled H, Fahmy A. Dataset of breast ultrasound images. "
        "Data in Brief 28:104863, 2020."
    ),
    licence="CC0 1.0 (public domain, as distributed on Kaggle); cite the article",
    url="https://scholar.cu.edu.eg/?q=afahmy/pages/dataset",
    dims=2,
    channels=1,
    layout=LAYOUT,
    binarisation=BINARISATION,
    read=read,
)
