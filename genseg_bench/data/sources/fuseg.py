"""FUSeg: foot ulcer segmentation challenge (MICCAI 2021), 1,010 labelled photographs.

Wound photographs (512x512 PNG) from the AZH Wound and Vascular Center, with
ulcer masks for the training (810) and validation (200) splits; the test split
has no public masks and is not read.
"""

from __future__ import annotations

from pathlib import Path

from genseg_bench.data.sources import SourceInfo
from genseg_bench.data.sources._common import (
    STRAY_RULE,
    THRESHOLD_127,
    CaseReader,
    Pair,
    locate,
    pair_folders,
    pair_reader,
)

ID = "fuseg"
SPLITS = ("train", "validation")

LAYOUT = """\
<root>/                                  ("Foot Ulcer Segmentation Challenge/" of the
                                          uwm-bigdata/wound-segmentation repository, data/ folder,
                                          or its parent)
  train/images/0011.png, ...             (RGB PNG, 512x512)
  train/labels/0011.png, ...             (binary ulcer masks, same file names)
  validation/images/, validation/labels/ (read too when present)
  test/images/                           (ignored: no public labels)
"""

BINARISATION = (
    "Ulcer masks are 0/255 PNGs (the official validation/labels/0233.png is RGB and also holds "
    "252 pixels of value 32), binarised with threshold(mask, 127), so those 32s are background. "
    f"{STRAY_RULE} Case id: <split>/<stem>, e.g. train/0011."
)


def read(root: Path) -> CaseReader[Pair]:
    """Read the labelled train (and validation) pairs."""
    base, _ = locate(root, ID, LAYOUT, [("train/images", "train/labels")])
    pairs: list[Pair] = []
    for split in SPLITS:
        if split == "train" or (base / split / "images").is_dir():
            pairs += pair_folders(base / split / "images", base / split / "labels", id_prefix=f"{split}/")
    return pair_reader(ID, root, LAYOUT, pairs, channels=3, binarise=THRESHOLD_127)


SOURCE = SourceInfo(
    id=ID,
    title="FUSeg: foot ulcer segmentation challenge data",
    citation=(
        "Wang C, Mahbod A, Ellinger I, Galdran A, Gopalakrishnan S, Niezgoda J, Yu Z. FUSeg: The "
        "Foot Ulcer Segmentation Challenge. Information 15(3):140, 2024 (arXiv:2201.00414); "
        "Wang C, Anisuzzaman DM, Williamson V, Dhar MK, Rostami B, Niezgoda J, Gopalakrishnan S, "
        "Yu Z. Fully automatic wound segmentation with deep convolutional neural networks. "
        "Scientific Reports 10:21897, 2020."
    ),
    licence="Free for research, with citation (see the repository's terms)",
    url="https://github.com/uwm-bigdata/wound-segmentation",
    dims=2,
    channels=3,
    layout=LAYOUT,
    binarisation=BINARISATION,
    read=read,
)
