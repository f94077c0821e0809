"""CAMUS echocardiography, as used by the ETAB benchmark: left ventricle and myocardial wall.

CAMUS (Creatis, Lyon) holds 2D apical two- and four-chamber views of 500
patients, each annotated at end diastole (ED) and end systole (ES) by a
cardiologist: 0 background, 1 left-ventricle cavity (endocardium), 2 myocardium,
3 left atrium. ETAB (Alaa et al., 2022) uses these frames for its segmentation
tasks; GenSeg segments "the left ventricle and myocardial wall", so the mask is
labels 1 and 2 together (the region inside the epicardial contour).

Two releases are read: the 2019 challenge release (``training/`` with MetaImage
``.mhd`` + ``.raw`` files for 450 labelled patients; ``testing/`` without labels,
skipped) and the 2023 NIfTI release (``database_nifti/``, all 500 patients
labelled). Images are 8-bit grey, kept as one channel (the ``etab-camus`` task
has ``channels = 1``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genseg_bench.data.sources import SourceInfo
from genseg_bench.data.sources._common import (
    CaseReader,
    check_labels,
    check_same_size,
    class_values,
    index_files,
    layout_hint,
    list_files,
    match,
    read_mhd,
    read_nifti,
    require_root,
    squeeze_2d,
    strip_ext,
    to_uint8,
    walk_dirs,
)
from genseg_bench.data.types import Case
from genseg_bench.errors import DataError

ID = "etab-camus"
EXTS = (".mhd", ".nii.gz", ".nii")
LABELS = range(4)
"""CAMUS label values: 0 background, 1 LV cavity (endocardium), 2 myocardium, 3 left atrium."""
FOREGROUND = (1, 2)
"""Left ventricle (cavity) and myocardial wall, as the paper segments them."""

_NAME = re.compile(r"^(?P<key>patient\d+_(?:2CH|4CH)_(?:ED|ES))(?P<gt>_gt)?$", re.IGNORECASE)

LAYOUT = """\
<root>/                                  (the unpacked CAMUS release, or its parent)
  training/                              (2019 challenge release: MetaImage)
    patient0001/
      patient0001_2CH_ED.mhd + .raw,  patient0001_2CH_ED_gt.mhd + .raw
      patient0001_2CH_ES.mhd, ..._gt.mhd, patient0001_4CH_ED.mhd, ..., patient0001_4CH_ES_gt.mhd
      patient0001_2CH_sequence.mhd, Info_2CH.cfg, ...     (ignored)
    patient0002/ ...
  testing/                               (ignored: no ground truth in the 2019 release)
or the 2023 NIfTI release:
  database_nifti/patient0001/patient0001_2CH_ED.nii.gz, patient0001_2CH_ED_gt.nii.gz, ...
"""

BINARISATION = (
    "CAMUS label maps (0 background, 1 left-ventricle cavity, 2 myocardium, 3 left atrium; other values "
    "are an error): left ventricle + myocardial wall = class_values(label, {1, 2}), as in the paper "
    "('left ventricle and myocardial wall'); the atrium is background. ED and ES frames of the 2CH "
    "and 4CH views are separate cases, id <patient>_<view>_<phase>, e.g. patient0001_2CH_ED. "
    "Images: 8-bit grey, one channel."
)


@dataclass(frozen=True)
class _Item:
    case_id: str
    image: Path
    label: Path


def read_any(path: Path) -> np.ndarray:
    """A CAMUS frame (``.mhd`` or ``.nii[.gz]``) as a 2D array, ITK axis order (``H x W``)."""
    values = read_mhd(path) if path.name.lower().endswith(".mhd") else read_nifti(path)
    return squeeze_2d(values, path)


def heart(labels: np.ndarray, path: Path) -> np.ndarray:
    """Left ventricle + myocardium of a CAMUS label map, after checking it holds CAMUS labels only."""
    check_labels(labels, LABELS, path)
    return class_values(labels, FOREGROUND)


def _load(item: _Item) -> Case:
    image = to_uint8(read_any(item.image))
    labels = read_any(item.label)
    check_same_size(item.image, image.shape, item.label, labels.shape)
    mask = heart(labels, item.label)
    return Case(item.case_id, np.ascontiguousarray(image[..., None]), np.ascontiguousarray(mask))


def _key(path: Path, want_gt: bool) -> str | None:
    m = _NAME.match(strip_ext(path, EXTS))
    if m is None or bool(m["gt"]) != want_gt:
        return None
    return m["key"]


def _is_test_release(folder: Path) -> bool:
    return any(part.lower() == "testing" for part in folder.parts)


def _folder_items(folder: Path, files: Iterable[Path]) -> list[_Item]:
    files = list(files)
    images = index_files(files, lambda p: _key(p, False), "image")
    labels = index_files(files, lambda p: _key(p, True), "ground-truth")
    if not labels and _is_test_release(folder):
        return []  # the 2019 testing/ set: frames without ground truth
    ext = {k: next(e for e in EXTS if p.name.lower().endswith(e)) for k, p in {**images, **labels}.items()}
    joined = match(
        images,
        labels,
        expected_mask=lambda k, _: folder / f"{k}_gt{ext[k]}",
        expected_image=lambda k, _: folder / f"{k}{ext[k]}",
    )
    return [_Item(k, img, lab) for k, (img, lab) in joined.items()]


def read(root: Path) -> CaseReader[_Item]:
    """Read every labelled ED/ES frame of the 2CH and 4CH views; case id ``patient0001_2CH_ED``."""
    root = require_root(root, ID, LAYOUT)
    items: list[_Item] = []
    found = False
    for folder in walk_dirs(root):
        files = [p for p in list_files(folder, EXTS) if _NAME.match(strip_ext(p, EXTS))]
        if files:
            found = True
            items += _folder_items(folder, files)
    if not found:
        raise DataError(
            f"{ID}: no CAMUS frames (patientNNNN_2CH_ED.mhd or .nii.gz and their _gt files) found under "
            f"{root} (expected e.g. {root / 'training' / 'patient0001' / 'patient0001_2CH_ED.mhd'}). "
            f"{layout_hint(LAYOUT)}"
        )
    items.sort(key=lambda it: it.case_id)
    return CaseReader(ID, root, LAYOUT, items, lambda it: it.case_id, _load)


SOURCE = SourceInfo(
    id=ID,
    title="CAMUS echocardiography (via the ETAB benchmark): left ventricle and myocardium",
    citation=(
        "Leclerc S. et al., Deep learning for segmentation using an open large-scale dataset in 2D "
        "echocardiography, IEEE Transactions on Medical Imaging 38(9):2198-2210, 2019; Alaa A. M., "
        "Philippakis A., Sontag D., ETAB: A benchmark suite for visual representation learning in "
        "echocardiography, NeurIPS 35:19075-19086, 2022."
    ),
    licence="research use; see the CAMUS and ETAB terms",
    url="https://www.creatis.insa-lyon.fr/Challenge/camus/",
    dims=2,
    channels=1,
    layout=LAYOUT,
    binarisation=BINARISATION,
    read=read,
)
