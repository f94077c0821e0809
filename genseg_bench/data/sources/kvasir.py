"""Kvasir-SEG: colonoscopy polyps (1,000 images) with JPEG masks.

Polyp frames from Vestre Viken hospitals (Norway). The masks are distributed as
JPEG, so their 0/255 edges carry compression noise and they are thresholded.
Together with CVC-ClinicDB it gives a natural out-of-domain pair.
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

ID = "kvasir"

LAYOUT = """\
<root>/                                  (Kvasir-SEG/ as unpacked from kvasir-seg.zip, or its parent)
  images/cju0qkwl35piu0993l0dewei2.jpg, ...   (RGB JPEG, various sizes)
  masks/cju0qkwl35piu0993l0dewei2.jpg, ...    (JPEG masks, same file names)
  kavsir_bboxes.json                          (ignored)
"""

BINARISATION = f"JPEG masks (grey levels with compression noise): threshold(mask, 127). {STRAY_RULE}"


def read(root: Path) -> CaseReader[Pair]:
    """Read the image/mask pairs; case id = file stem."""
    base, _ = locate(root, ID, LAYOUT, [("images", "masks")])
    pairs = pair_folders(base / "images", base / "masks")
    return pair_reader(ID, root, LAYOUT, pairs, channels=3, binarise=THRESHOLD_127)


SOURCE = SourceInfo(
    id=ID,
    title="Kvasir-SEG: segmented polyp data set (colonoscopy)",
    citation=(
        "Jha D, Smedsrud PH, Riegler MA, Halvorsen P, de Lange T, Johansen D, Johansen HD. "
        "Kvasir-SEG: A segmented polyp dataset. MultiMedia Modeling (MMM 2020), LNCS 11962, "
        "pp. 451-462, 2020."
    ),
    licence="Free for research and education, with citation (Kvasir-SEG terms)",
    url="https://datasets.simula.no/kvasir-seg/",
    dims=2,
    channels=3,
    layout=LAYOUT,
    binarisation=BINARISATION,
    read=read,
)
