"""CVC-ClinicDB: colonoscopy polyps (612 frames, 384x288), the paper's in-domain polyp set.

Frames from 29 colonoscopy sequences of 25 video studies (Hospital Clinic,
Barcelona), numbered so that each sequence is a consecutive range of frame
numbers. The official release ships TIFF images and ground truth; common mirrors
ship PNG copies or resized JPEG copies (the one in ``shared/data``), and all are read.
"""

from __future__ import annotations

import bisect
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
from genseg_bench.errors import DataError

ID = "cvc-clinicdb"
N_FRAMES = 612

SEQUENCE_ENDS: tuple[int, ...] = (
    25, 50, 67, 78, 103, 126, 151, 177, 199, 205, 227, 252, 277, 297, 317,
    342, 363, 383, 408, 428, 447, 466, 478, 503, 528, 546, 571, 591, 612,
)  # fmt: skip
"""Last frame number of each of the 29 sequences: frames 1-25 are sequence 1, 26-50 sequence 2, ...

The frame-number / video-sequence correspondence table published with the data set on its
official page, https://polyp.grand-challenge.org/CVCClinicDB/ ("CVC-ClinicDB has been generated
from 25 different video studies ... composed by frames from 29 different sequences ... The
correspondence between the number of frame and the video sequence is as follows"), as
reproduced verbatim by Dataset Ninja (github.com/dataset-ninja/cvc-612, ABSTRACT.md, and the
``frame_ranges`` of its src/convert.py). The issue that asked for grouping spoke of 31
sequences; the published table has 29. On the shared/data copy, 19 of the 28 largest
frame-to-frame image changes fall on these 28 boundaries (28 picked at random would hit
about 1); frames of one sequence were picked to show the polyp from different viewpoints,
so image similarity alone does not recover the table: it is taken as published, not derived."""

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
    f"compression noise at the edges; one rule reads both the same. {STRAY_RULE}"
)


def sequence(case_id: str) -> str:
    """The sequence of a frame (``"26"`` -> ``"seq02"``), from :data:`SEQUENCE_ENDS`.

    Frames of one sequence show the same polyp seconds apart; a split by frame would put
    near-duplicates in training and test. The table does not say which sequences share
    one of the 25 studies, so the group is the sequence. A case id that is not a frame
    number 1..612 is a DataError: the table only holds for the official numbering.
    """
    try:
        frame = int(case_id)
    except ValueError:
        frame = 0
    if not 1 <= frame <= N_FRAMES:
        raise DataError(
            f"{ID}: case id {case_id!r} is not a frame number 1..{N_FRAMES}, so its video sequence "
            "is unknown. Keep the official file names (1.tif ... 612.tif), or give the task a "
            "split_group pattern that matches these ids."
        )
    return f"seq{bisect.bisect_left(SEQUENCE_ENDS, frame) + 1:02d}"


def read(root: Path) -> CaseReader[Pair]:
    """Read the frame/mask pairs; case id = frame number as a string (``"1"`` ... ``"612"``)."""
    base, option = locate(root, ID, LAYOUT, OPTIONS)
    images, masks = OPTIONS[option]
    pairs = pair_folders(base / images, base / masks)
    return pair_reader(ID, root, LAYOUT, pairs, channels=3, binarise=THRESHOLD_127)


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
    group=sequence,
)
