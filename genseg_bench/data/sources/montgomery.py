"""Montgomery County chest X-rays (NLM-MC): out-of-domain lung test for JSRT-trained models.

138 posterior-anterior radiographs (Montgomery County, Maryland TB screening) with
manual masks of each lung, distributed by the U.S. National Library of Medicine.
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

ID = "nlm-mc"
IMAGES = "CXR_png"
LEFT = "ManualMask/leftMask"
RIGHT = "ManualMask/rightMask"

LAYOUT = f"""\
<root>/                                  (MontgomerySet/ as unpacked from NLM-MontgomeryCXRSet.zip,
                                          or its parent)
  {IMAGES}/MCUCXR_0001_0.png, ...        (grey PNG, about 4020x4892)
  {LEFT}/MCUCXR_0001_0.png, ...
  {RIGHT}/MCUCXR_0001_0.png, ...
  ClinicalReadings/                      (ignored)
"""

BINARISATION = (
    "leftMask and rightMask PNGs (0/255), each binarised with threshold(mask, 127), united into "
    f"one lung mask. {STRAY_RULE}"
)


def read(root: Path) -> CaseReader[Pair]:
    """Read the Montgomery radiographs with merged lung masks; case id = ``MCUCXR_0001_0`` etc."""
    base, _ = locate(root, ID, LAYOUT, [(IMAGES, LEFT, RIGHT)])
    left = pair_folders(base / IMAGES, base / LEFT, image_exts=(".png",), mask_exts=(".png",))
    right = {
        p.case_id: p
        for p in pair_folders(base / IMAGES, base / RIGHT, image_exts=(".png",), mask_exts=(".png",))
    }
    pairs = [Pair(p.case_id, p.image, (p.masks[0], right[p.case_id].masks[0])) for p in left]
    return pair_reader(ID, root, LAYOUT, pairs, channels=1, binarise=THRESHOLD_127)


SOURCE = SourceInfo(
    id=ID,
    title="Montgomery County chest X-ray set (NLM) with lung masks",
    citation=(
        "Jaeger S, Candemir S, Antani S, Wáng YXJ, Lu PX, Thoma G. Two public chest X-ray datasets "
        "for computer-aided screening of pulmonary diseases. Quantitative Imaging in Medicine and "
        "Surgery 4(6):475-477, 2014; Candemir S, Jaeger S, Palaniappan K, Musco JP, Singh RK, Xue Z, "
        "Karargyris A, Antani S, Thoma G, McDonald CJ. Lung segmentation in chest radiographs using "
        "anatomical atlases with nonrigid registration. IEEE Transactions on Medical Imaging "
        "33(2):577-590, 2014."
    ),
    licence="Public (U.S. National Library of Medicine); free to use with citation",
    url="https://lhncbc.nlm.nih.gov/LHC-downloads/downloads.html#tuberculosis-image-data-sets",
    dims=2,
    channels=1,
    layout=LAYOUT,
    binarisation=BINARISATION,
    read=read,
)
