"""FPD, the Fetoscopy Placenta Data set: placental vessels in fetoscopy (482 frames, 448x448).

Frames from six in-vivo fetoscopic videos with binary vessel masks, released by
the UCL WEISS group with the vessel-segmentation-for-mosaicking paper. The
archive is organised per video; a flat images/ + masks/ copy is read as well.
"""

from __future__ import annotations

import re
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

ID = "fpd"
_FRAME = re.compile(r"^(.+?)_\d+$")
"""``<video>_<frame number>``: the FPD file-name pattern."""
MASK_DIRS = ("masks", "masks_gt", "labels", "annotations", "gt")

LAYOUT = """\
<root>/                                  (the unpacked FPD archive)
  anon001/                               (one folder per video; any name)
    images/anon001_00001.png, ...        (RGB, 448x448)
    masks/anon001_00001.png, ...         (binary vessel masks, same file names;
                                          masks_gt/, labels/, annotations/ or gt/ also accepted)
  anon002/ ...
or, flat:  <root>/images/*.png  +  <root>/masks/*.png
"""

BINARISATION = (
    "Binary vessel masks; threshold(mask, 127) so re-encoded or resized copies of the "
    "masks read the same. Case id: <video folder>/<stem>, or <stem> for the flat layout. "
    f"{STRAY_RULE}"
)


def video(case_id: str) -> str:
    """The video of a frame: its folder (``anon001/anon001_00001`` -> ``anon001``).

    The archive keeps one folder per in-vivo video, and frames of one video are
    near-duplicates, so splits keep a video on one side. In the flat layout the file
    stem's prefix before the frame number (``anon001_00001`` -> ``anon001``) names the
    video; a stem without one is its own group.
    """
    head, sep, _ = case_id.partition("/")
    if sep:
        return head
    m = _FRAME.match(case_id)
    return m.group(1) if m else case_id


def read(root: Path) -> CaseReader[Pair]:
    """Read every ``<video>/{images,masks}`` pair (or the flat layout)."""
    pairs = folder_pairs(root, ID, LAYOUT, mask_dirs=MASK_DIRS, id_from="name")
    return pair_reader(ID, root, LAYOUT, pairs, channels=3, binarise=THRESHOLD_127)


SOURCE = SourceInfo(
    id=ID,
    title="Fetoscopy Placenta Data set (FPD): placental vessel segmentation",
    citation=(
        "Bano S, Vasconcelos F, Shepherd LM, Vander Poorten E, Vercauteren T, Ourselin S, David AL, "
        "Deprest J, Stoyanov D. Deep placental vessel segmentation for fetoscopic mosaicking. "
        "Medical Image Computing and Computer Assisted Intervention (MICCAI), LNCS 12263, "
        "pp. 763-773, 2020."
    ),
    licence="Free for non-commercial research, with citation (UCL WEISS release terms)",
    url="https://www.ucl.ac.uk/interventional-surgical-sciences/weiss-open-research/weiss-open-data-server/fetoscopy-placenta-data",
    dims=2,
    channels=3,
    layout=LAYOUT,
    binarisation=BINARISATION,
    read=read,
    group=video,
)
