"""COVID-QU-Ex chest X-rays with lung masks (about 33,900 images).

The lung-segmentation part of COVID-QU-Ex (Qatar University): COVID-19,
non-COVID pneumonia and normal radiographs, each with a lung mask, already split
by the authors into Train / Val / Test. The split is kept in the case id so a
task can honour it.
"""

from __future__ import annotations

from pathlib import Path

from genseg_bench.data.sources import SourceInfo
from genseg_bench.data.sources._common import (
    STRAY_RULE,
    THRESHOLD_127,
    CaseReader,
    Pair,
    layout_hint,
    pair_folders,
    pair_reader,
    require_dir,
    require_root,
    subdirs,
)
from genseg_bench.errors import DataError

ID = "covid-qu-ex"
TOP = "Lung Segmentation Data"
SPLITS = ("Train", "Val", "Test")

LAYOUT = f"""\
<root>/                                  (the unpacked COVID-QU-Ex archive, or any folder down to {TOP}/)
  {TOP}/{TOP}/                           (the archive nests it twice; once is fine too)
    Train/
      COVID-19/images/covid_1.png, ...   and   COVID-19/lung masks/covid_1.png, ...
      Non-COVID/images/, Non-COVID/lung masks/
      Normal/images/, Normal/lung masks/
    Val/ ...  Test/ ...                  (same structure)
  Infection Segmentation Data/           (ignored)
"""

BINARISATION = (
    f"Lung masks are 0/255 PNGs (both lungs in one file), binarised with threshold(mask, 127). {STRAY_RULE}"
)


def _find_base(root: Path) -> Path:
    """The folder holding Train/Val/Test of the *lung* part (not the infection part)."""
    root = require_root(root, ID, LAYOUT)
    frontier = [root]
    for _ in range(4):
        nxt: list[Path] = []
        for d in frontier:
            has_split = any((d / s).is_dir() for s in SPLITS)
            if has_split and (d.name == TOP or (d == root and d.name != "Infection Segmentation Data")):
                return d
            nxt.extend(subdirs(d))
        frontier = nxt
    raise DataError(
        f"{ID}: no '{TOP}' folder with Train/Val/Test subfolders found under {root} "
        f"(expected e.g. {root / TOP / TOP / 'Train'}). {layout_hint(LAYOUT)}"
    )


def read(root: Path) -> CaseReader[Pair]:
    """Read every split and class; case id = ``<split>/<class>/<stem>`` (``Train/COVID-19/covid_1``)."""
    base = _find_base(root)
    pairs: list[Pair] = []
    for split in SPLITS:
        if not (base / split).is_dir():
            continue
        for cls in subdirs(base / split):
            images = require_dir(cls / "images", ID, LAYOUT)
            masks = require_dir(cls / "lung masks", ID, LAYOUT)
            pairs += pair_folders(
                images, masks, image_exts=(".png",), mask_exts=(".png",), id_prefix=f"{split}/{cls.name}/"
            )
    return pair_reader(ID, root, LAYOUT, pairs, channels=1, binarise=THRESHOLD_127)


SOURCE = SourceInfo(
    id=ID,
    title="COVID-QU-Ex chest X-rays with lung masks",
    citation=(
        "Tahir AM, Chowdhury MEH, Khandakar A, Rahman T, Qiblawey Y, Khurshid U, Kiranyaz S, "
        "Ibtehaz N, Rahman MS, Al-Maadeed S, Mahmud S, Ezeddin M, Hameed K, Hamid T. COVID-19 "
        "infection localization and severity grading from chest X-ray images. Computers in Biology "
        "and Medicine 139:105002, 2021."
    ),
    licence="CC BY-SA 4.0 (as distributed on Kaggle)",
    url="https://www.kaggle.com/datasets/anasmohammedtahir/covidqu",
    dims=2,
    channels=1,
    layout=LAYOUT,
    binarisation=BINARISATION,
    read=read,
)
