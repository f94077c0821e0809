"""PH2 dermoscopy database: an out-of-domain test set for ISIC-trained models.

200 dermoscopic images from Hospital Pedro Hispano (Matosinhos, Portugal), each
with a manual lesion mask, in the per-image folder tree of the official archive.
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
    match,
    pair_reader,
    subdirs,
)

ID = "ph2"
IMAGES = "PH2 Dataset images"

LAYOUT = f"""\
<root>/                                  (PH2Dataset/ as unpacked from PH2Dataset.rar, or its parent)
  {IMAGES}/
    IMD002/
      IMD002_Dermoscopic_Image/IMD002.bmp
      IMD002_lesion/IMD002_lesion.bmp
      IMD002_roi/...                     (ignored)
    IMD003/ ...
"""

BINARISATION = f"The lesion BMPs are 0/255, binarised with threshold(mask, 127). {STRAY_RULE}"


def read(root: Path) -> CaseReader[Pair]:
    """Read every ``IMDxxx`` folder; case id = ``IMDxxx``."""
    base, _ = locate(root, ID, LAYOUT, [(IMAGES,)])
    images: dict[str, Path] = {}
    masks: dict[str, Path] = {}
    for case_dir in subdirs(base / IMAGES):
        name = case_dir.name
        image = case_dir / f"{name}_Dermoscopic_Image" / f"{name}.bmp"
        mask = case_dir / f"{name}_lesion" / f"{name}_lesion.bmp"
        if image.is_file():
            images[name] = image
        if mask.is_file():
            masks[name] = mask
        if not image.is_file() and not mask.is_file():
            continue  # not a case folder
    joined = match(
        images,
        masks,
        expected_mask=lambda k, _: base / IMAGES / k / f"{k}_lesion" / f"{k}_lesion.bmp",
        expected_image=lambda k, _: base / IMAGES / k / f"{k}_Dermoscopic_Image" / f"{k}.bmp",
    )
    pairs = [Pair(k, img, (m,)) for k, (img, m) in joined.items()]
    return pair_reader(ID, root, LAYOUT, pairs, channels=3, binarise=THRESHOLD_127)


SOURCE = SourceInfo(
    id=ID,
    title="PH2 dermoscopic image database",
    citation=(
        "Mendonça T, Ferreira PM, Marques JS, Marçal ARS, Rozeira J. PH2 - A dermoscopic image "
        "database for research and benchmarking. 35th Annual International Conference of the IEEE "
        "Engineering in Medicine and Biology Society (EMBC), pp. 5437-5440, 2013."
    ),
    licence="Free for research and education, with citation (PH2 terms of use)",
    url="https://www.fc.up.pt/addi/ph2%20database.html",
    dims=2,
    channels=3,
    layout=LAYOUT,
    binarisation=BINARISATION,
    read=read,
)
