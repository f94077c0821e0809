"""DermIS skin-lesion photographs (Waterloo "Skin Cancer Detection" archive): OOD test for ISIC.

Clinical (non-dermoscopic) photographs from the DermIS atlas with lesion masks
drawn by the University of Waterloo Vision and Image Processing Lab; a domain
shift from ISIC's dermoscopy, hence the paper's out-of-domain test.
"""

from __future__ import annotations

from pathlib import Path

from genseg_bench.data.sources import SourceInfo
from genseg_bench.data.sources._common import (
    STRAY_RULE,
    THRESHOLD_127,
    CaseReader,
    Pair,
    pair_reader,
    waterloo_pairs,
)

ID = "dermis"

LAYOUT = """\
<root>/                                  (the Waterloo "Skin Image Data Set" archive, or any folder inside it)
  skin_data/
    melanoma/dermIS/Oh-MM-1_orig.jpg, Oh-MM-1_contour.png, ...
    notmelanoma/dermIS/..._orig.jpg, ..._contour.png
    (melanoma|notmelanoma)/dermquest/    (read by the 'dermquest' source, skipped here)
A folder of *_orig.jpg + *_contour.png pairs with no 'dermIS' folder in its tree is read whole.
"""

BINARISATION = (
    "Contour PNG = filled lesion mask; threshold(mask, 127) (robust to anti-aliased or "
    f"re-encoded edges). Case id: <melanoma|notmelanoma>/<name>. {STRAY_RULE}"
)


def read(root: Path) -> CaseReader[Pair]:
    """Read the DermIS pairs of the Waterloo archive."""
    pairs = waterloo_pairs(root, ID, LAYOUT, "dermis")
    return pair_reader(ID, root, LAYOUT, pairs, channels=3, binarise=THRESHOLD_127)


SOURCE = SourceInfo(
    id=ID,
    title="DermIS skin lesion photographs (Waterloo Skin Cancer Detection data set)",
    citation=(
        "Glaister J, Amelard R, Wong A, Clausi DA. MSIM: Multistage illumination modeling of "
        "dermatological photographs for illumination-corrected skin lesion analysis. IEEE "
        "Transactions on Biomedical Engineering 60(7):1873-1883, 2013. Images: DermIS, Dermatology "
        "Information System (https://www.dermis.net)."
    ),
    licence="Research use only; images copyright of DermIS (Waterloo VIP Lab terms)",
    url="https://uwaterloo.ca/vision-image-processing-lab/research-demos/skin-cancer-detection",
    dims=2,
    channels=3,
    layout=LAYOUT,
    binarisation=BINARISATION,
    read=read,
)
