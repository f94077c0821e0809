"""DermQuest skin-lesion photographs (Waterloo "Skin Cancer Detection" archive).

137 clinical photographs with lesion masks; the paper uses them in the
semi-supervised comparison. Same archive and pairing as :mod:`dermis`.
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

ID = "dermquest"

LAYOUT = """\
<root>/                                  (the Waterloo "Skin Image Data Set" archive, or any folder inside it)
  skin_data/
    melanoma/dermquest/..._orig.jpg, ..._contour.png
    notmelanoma/dermquest/..._orig.jpg, ..._contour.png
    (melanoma|notmelanoma)/dermIS/       (read by the 'dermis' source, skipped here)
A folder of *_orig.jpg + *_contour.png pairs with no 'dermquest' folder in its tree is read whole.
"""

BINARISATION = (
    "Contour PNG = filled lesion mask; threshold(mask, 127) (robust to anti-aliased or "
    f"re-encoded edges). Case id: <melanoma|notmelanoma>/<name>. {STRAY_RULE}"
)


def read(root: Path) -> CaseReader[Pair]:
    """Read the DermQuest pairs of the Waterloo archive."""
    pairs = waterloo_pairs(root, ID, LAYOUT, "dermquest")
    return pair_reader(ID, root, LAYOUT, pairs, channels=3, binarise=THRESHOLD_127)


SOURCE = SourceInfo(
    id=ID,
    title="DermQuest skin lesion photographs (Waterloo Skin Cancer Detection data set)",
    citation=(
        "Glaister J, Amelard R, Wong A, Clausi DA. MSIM: Multistage illumination modeling of "
        "dermatological photographs for illumination-corrected skin lesion analysis. IEEE "
        "Transactions on Biomedical Engineering 60(7):1873-1883, 2013; Amelard R, Glaister J, "
        "Wong A, Clausi DA. High-level intuitive features (HLIFs) for intuitive skin lesion "
        "description. IEEE Transactions on Biomedical Engineering 62(3):820-831, 2015."
    ),
    licence="Research use only; images copyright of DermQuest (Waterloo VIP Lab terms)",
    url="https://uwaterloo.ca/vision-image-processing-lab/research-demos/skin-cancer-detection",
    dims=2,
    channels=3,
    layout=LAYOUT,
    binarisation=BINARISATION,
    read=read,
)
