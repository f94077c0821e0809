"""FetReg 2021 (EndoVis challenge): placental vessels in fetoscopy, vessel class only.

The public training release holds 2,060 annotated frames from 18 fetoscopic
videos (the challenge's 658 test frames, from 6 more videos, are not public:
2,718 in all; github.com/sophiabano/EndoVis-FetReg2021), labelled with four
classes; the paper segments placental vessels, so the vessel class alone is the
mask. Frames of one video are near-duplicates, so splits group them by video.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genseg_bench.data.sources import SourceInfo
from genseg_bench.data.sources._common import (
    CaseReader,
    Pair,
    check_labels,
    class_value,
    folder_pairs,
    pair_reader,
)

ID = "fetreg"
VESSEL = 1
"""FetReg label values: 0 background, 1 vessel, 2 tool, 3 fetus."""

LAYOUT = """\
<root>/                                  (FetReg2021_Task1_Segmentation/ of the training release,
                                          or its parent)
  Video001/
    images/Video001_frame01250.png, ...  (RGB, 470x470)
    labels/Video001_frame01250.png, ...  (grey label map: 0 background, 1 vessel, 2 tool, 3 fetus)
  Video002/ ...
"""

BINARISATION = (
    "Multi-class label map; vessel class only: class_value(label, 1). Labels outside "
    "{0, 1, 2, 3} are an error. Case id: <video>/<frame stem>, e.g. Video001/Video001_frame01250."
)


def vessel(labels: np.ndarray, path: Path) -> np.ndarray:
    """Vessel pixels of a FetReg label map, after checking it holds FetReg labels only."""
    check_labels(labels, range(4), path)
    return class_value(labels, VESSEL)


def video(case_id: str) -> str:
    """The video of a frame: ``Video001/Video001_frame01250`` -> ``Video001``.

    Frames of one fetoscopy video are near-duplicates, so splits keep a video on one side.
    An id without the folder (the root was one video's folder) uses the file stem's
    ``Video001`` prefix, which the official file names carry.
    """
    head, sep, _ = case_id.partition("/")
    return head if sep else case_id.split("_frame")[0]


def read(root: Path) -> CaseReader[Pair]:
    """Read every ``VideoNNN/{images,labels}`` pair."""
    pairs = folder_pairs(
        root, ID, LAYOUT, mask_dirs=("labels",), image_exts=(".png",), mask_exts=(".png",), id_from="name"
    )
    return pair_reader(ID, root, LAYOUT, pairs, channels=3, binarise=vessel, label_map=True)


SOURCE = SourceInfo(
    id=ID,
    title="FetReg 2021: placental vessel segmentation in fetoscopy",
    citation=(
        "Bano S, Casella A, Vasconcelos F, Moccia S, Attilakos G, Wimalasundera R, David AL, "
        "Paladini D, Deprest J, De Momi E, Mattos LS, Stoyanov D. FetReg: Placental vessel "
        "segmentation and registration in fetoscopy challenge dataset. arXiv:2106.05923, 2021 "
        "(EndoVis FetReg 2021 challenge, MICCAI 2021)."
    ),
    licence="CC BY-NC-SA 4.0 (FetReg 2021 challenge data terms)",
    url="https://www.synapse.org/#!Synapse:syn25313156",
    dims=2,
    channels=3,
    layout=LAYOUT,
    binarisation=BINARISATION,
    read=read,
    group=video,
)
