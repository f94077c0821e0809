"""ISIC 2018 Task 1 (lesion boundary segmentation), training set.

The paper's skin-lesion training source (2,594 dermoscopic images). Only the
official training split is read: its ground truth is public, and the paper's
numbers are drawn from it.
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

ID = "isic2018"
IMAGES = "ISIC2018_Task1-2_Training_Input"
MASKS = "ISIC2018_Task1_Training_GroundTruth"

LAYOUT = f"""\
<root>/                                  (the two official training zips unpacked side by side)
  {IMAGES}/ISIC_0000000.jpg, ...         (RGB JPEG; LICENSE/ATTRIBUTION text files are ignored)
  {MASKS}/ISIC_0000000_segmentation.png, ...
"""

BINARISATION = (
    f"The ground-truth PNGs are 0 background, 255 lesion, binarised with threshold(mask, 127). {STRAY_RULE}"
)


def read(root: Path) -> CaseReader[Pair]:
    """Read the ISIC 2018 Task 1 training pairs; case id = ``ISIC_XXXXXXX``."""
    base, _ = locate(root, ID, LAYOUT, [(IMAGES, MASKS)])
    pairs = pair_folders(
        base / IMAGES,
        base / MASKS,
        image_exts=(".jpg", ".jpeg"),
        mask_exts=(".png",),
        mask_suffix="_segmentation",
    )
    return pair_reader(ID, root, LAYOUT, pairs, channels=3, binarise=THRESHOLD_127)


SOURCE = SourceInfo(
    id=ID,
    title="ISIC 2018 Task 1: skin lesion segmentation (dermoscopy)",
    citation=(
        "Codella N, Rotemberg V, Tschandl P, Celebi ME, Dusza S, Gutman D, Helba B, Kalloo A, "
        "Liopyris K, Marchetti M, Kittler H, Halpern A. Skin Lesion Analysis Toward Melanoma "
        "Detection 2018: A Challenge Hosted by the International Skin Imaging Collaboration (ISIC). "
        "arXiv:1902.03368, 2019; and Tschandl P, Rosendahl C, Kittler H. The HAM10000 dataset, a "
        "large collection of multi-source dermatoscopic images of common pigmented skin lesions. "
        "Scientific Data 5:180161, 2018."
    ),
    licence="CC BY-NC 4.0",
    url="https://challenge.isic-archive.com/data/#2018",
    dims=2,
    channels=3,
    layout=LAYOUT,
    binarisation=BINARISATION,
    read=read,
)
