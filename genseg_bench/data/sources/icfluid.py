"""ICFluid: intraretinal cystoid fluid in OCT B-scans (1,460 images).

OCT scans with masks of intraretinal cystoid fluid. The public copies are
organised as ``images/`` + ``masks/`` folders, optionally one pair per split;
every such pair under the root is read.
"""

from __future__ import annotations

from pathlib import Path

from genseg_bench.data.sources import SourceInfo
from genseg_bench.data.sources._common import (
    STRAY_RULE,
    THRESHOLD_127,
    CaseReader,
    Pair,
    folder_pairs,
    pair_reader,
)

ID = "icfluid"
MASK_DIRS = ("masks", "mask", "labels", "GT", "ground_truth")

LAYOUT = """\
<root>/                                  (the unpacked ICFluid data set)
  images/0001.png, ...                   (grey OCT B-scans; PNG, JPEG, BMP or TIFF)
  masks/0001.png, ...                    (fluid masks, same stems;
                                          mask/, labels/, GT/ or ground_truth/ also accepted)
or one such pair per split:  <root>/train/{images,masks}/, <root>/test/{images,masks}/
"""

BINARISATION = (
    "Fluid masks; threshold(mask, 127), which reads 0/255 PNG masks and JPEG-encoded "
    "masks alike. Case id: <stem>, or <split>/<stem> for the per-split layout. "
    f"{STRAY_RULE}"
)


def read(root: Path) -> CaseReader[Pair]:
    """Read every ``images/`` + ``masks/`` pair under the root."""
    pairs = folder_pairs(root, ID, LAYOUT, mask_dirs=MASK_DIRS, id_from="relative")
    return pair_reader(ID, root, LAYOUT, pairs, channels=1, binarise=THRESHOLD_127)


SOURCE = SourceInfo(
    id=ID,
    title="ICFluid: intraretinal cystoid fluid in OCT",
    citation=(
        "Ahmed Z, Panhwar SQ, Baqai A, Umrani FA, Ahmed M, Khan A. Deep learning based automated "
        "detection of intraretinal cystoid fluid. International Journal of Imaging Systems and "
        "Technology 32(3):902-917, 2022."
    ),
    licence="Research use with citation (see the authors' data release terms)",
    url="https://onlinelibrary.wiley.com/journal/10981098",
    dims=2,
    channels=1,
    layout=LAYOUT,
    binarisation=BINARISATION,
    read=read,
)
