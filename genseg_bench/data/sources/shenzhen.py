"""Shenzhen chest X-rays (NLM-SZ): out-of-domain lung test for JSRT-trained models.

662 radiographs from Shenzhen No.3 People's Hospital distributed by the NLM; the
lung masks (566 of them) were drawn later by Stirenko et al. and are distributed
separately, so images without a mask are skipped as unlabelled rather than
reported as missing pairs.
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

ID = "nlm-sz"
IMAGES = "CXR_png"

LAYOUT = f"""\
<root>/                                  (ChinaSet_AllFiles/ from ChinaSet_AllFiles.zip with the mask
                                          archive unpacked into it, or their parent)
  {IMAGES}/CHNCXR_0001_0.png, ...        (grey PNG, about 3000x3000)
  mask/CHNCXR_0001_0_mask.png, ...       (or masks/; lung masks exist for 566 images only)
  ClinicalReadings/                      (ignored)
Only CHNCXR_* files are read, so a folder shared with the Montgomery files works too.
"""

BINARISATION = (
    "One mask per image with both lungs; threshold(mask, 127) (the masks were drawn "
    "separately from the NLM release and may carry anti-aliased edges). Images without "
    f"a mask are unlabelled and skipped; a mask without an image is an error. {STRAY_RULE}"
)


def read(root: Path) -> CaseReader[Pair]:
    """Read the Shenzhen radiographs that have a lung mask; case id = ``CHNCXR_0001_0`` etc."""
    base, option = locate(root, ID, LAYOUT, [(IMAGES, "mask"), (IMAGES, "masks")])
    pairs = pair_folders(
        base / IMAGES,
        base / ("mask", "masks")[option],
        image_exts=(".png",),
        mask_exts=(".png",),
        mask_suffix="_mask",
        skip_unlabelled=True,
        image_filter=lambda stem: stem.upper().startswith("CHNCXR"),
    )
    return pair_reader(ID, root, LAYOUT, pairs, channels=1, binarise=THRESHOLD_127)


SOURCE = SourceInfo(
    id=ID,
    title="Shenzhen chest X-ray set (NLM) with lung masks",
    citation=(
        "Jaeger S, Candemir S, Antani S, Wáng YXJ, Lu PX, Thoma G. Two public chest X-ray datasets "
        "for computer-aided screening of pulmonary diseases. Quantitative Imaging in Medicine and "
        "Surgery 4(6):475-477, 2014; masks: Stirenko S, Kochura Y, Alienin O, et al. Chest X-ray "
        "analysis of tuberculosis by deep learning with segmentation and augmentation. IEEE 38th "
        "International Conference on Electronics and Nanotechnology (ELNANO), pp. 422-428, 2018."
    ),
    licence=(
        "Images: public (U.S. National Library of Medicine), free to use with citation; "
        "masks: see their release"
    ),
    url="https://lhncbc.nlm.nih.gov/LHC-downloads/downloads.html#tuberculosis-image-data-sets",
    dims=2,
    channels=1,
    layout=LAYOUT,
    binarisation=BINARISATION,
    read=read,
)
