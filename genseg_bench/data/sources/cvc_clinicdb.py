"""CVC-ClinicDB: colonoscopy polyps (612 frames, 384x288), the paper's in-domain polyp set.

Frames from 31 colonoscopy sequences (Hospital Clinic, Barcelona). The official
release ships TIFF images and ground truth; common mirrors ship PNG copies or
resized JPEG copies (the one in ``shared/data``), and all are read.
"""

from __future__ import annotations

from pathlib import Path

from genseg_bench.data.sources import SourceInfo
from genseg_bench.data.sources._common import CaseReader, Pair, locate, pair_folders, pair_reader, threshold

ID = "cvc-clinicdb"
OPTIONS: tuple[tuple[str, str], ...] = (
    ("Original", "Ground Truth"),
    ("TIF/Original", "TIF/Ground Truth"),
    ("PNG/Original", "PNG/Ground Truth"),
    ("images", "masks"),
)

LAYOUT = """\
<root>/                                  (CVC-ClinicDB/ as unpacked, or its parent)
  Original/1.tif ... 612.tif             (official: RGB TIFF, 384x288)
  Ground Truth/1.tif ... 612.tif         (binary masks, same numbers)
also accepted: TIF/{Original,Ground Truth}/, PNG/{Original,Ground Truth}/*.png,
or images/N.jpg + masks/N.jpg (resized JPEG copies).
"""

BINARISATION = (
    "threshold(mask, 127): the official TIFF masks are 0/255, and the JPEG copies carry "
    "compression noise at the edges; one rule reads both the same."
)


def read(root: Path) -> CaseReader[Pair]:
    """Read the frame/mask pairs; case id = frame number as a string (``"1"`` ... ``"612"``)."""
    base, option = locate(root, ID, LAYOUT, OPTIONS)
    images, masks = OPTIONS[option]
    pairs = pair_folders(base / images, base / masks)
    return pair_reader(ID, root, LAYOUT, pairs, channels=3, binarise=lambda m, _: threshold(m, 127))


SOURCE = SourceInfo(
    id=ID,
    title="CVC-ClinicDB: colonoscopy polyp frames",
    citation=(
        "Bernal J, Sánchez FJ, Fernández-Esparrach G, Gil D, Rodríguez C, Vilariño F. WM-DOVA maps "
        "for accurate polyp highlighting in colonoscopy: Validation vs. saliency maps from "
        "physicians. Computerized Medical Imaging and Graphics 43:99-111, 2015."
    ),
    licence="Free for research and education, with citation (CVC-ClinicDB terms)",
    url="https://polyp.grand-challenge.org/CVCClinicDB/",
    dims=2,
    channels=3,
    layout=LAYOUT,
    binarisation=BINARISATION,
    read=read,
)
