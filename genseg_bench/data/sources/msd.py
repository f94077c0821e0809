"""Medical Segmentation Decathlon (MSD): Task04 Hippocampus (MRI) and Task03 Liver (CT), 3D.

Each MSD task unpacks to ``TaskNN_Name/`` with ``imagesTr/`` and ``labelsTr/``
(NIfTI volumes of the same names), ``imagesTs/`` without labels (ignored) and
``dataset.json``. The tarballs were made on macOS and carry ``._name.nii.gz``
AppleDouble files, which are skipped. A flat ``images/`` + ``labels/`` copy (the
one in ``shared/data/msd-hippocampus``) is read as well.

Volumes are returned as stored (``D x H x W`` float32, NIfTI axes reversed as ITK
does; no resampling or intensity normalisation here: the store does that).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genseg_bench.data.sources import SourceInfo
from genseg_bench.data.sources._common import (
    CaseReader,
    Pair,
    check_labels,
    check_same_size,
    class_values,
    layout_hint,
    list_files,
    pair_folders,
    read_nifti,
    require_root,
    subdirs,
)
from genseg_bench.data.types import Case
from genseg_bench.errors import DataError

EXTS = (".nii.gz", ".nii")
FOLDERS: tuple[tuple[str, str], ...] = (("imagesTr", "labelsTr"), ("images", "labels"))

MSD_CITATION = (
    "Antonelli M. et al., The Medical Segmentation Decathlon, Nature Communications 13:4128, 2022; "
    "Simpson A. L. et al., A large annotated medical image dataset for the development and evaluation "
    "of segmentation algorithms, arXiv:1902.09063, 2019"
)


@dataclass(frozen=True)
class Task:
    """One MSD task: where its files are and which labels make the foreground."""

    source_id: str
    folder: str
    """The task folder of the official tarball, e.g. ``Task04_Hippocampus``."""
    prefix: str
    """File-name prefix of the task's volumes (``hippocampus_001.nii.gz``)."""
    labels: tuple[int, ...]
    """Every label value of the task (others are an error)."""
    foreground: tuple[int, ...]

    @property
    def layout(self) -> str:
        p = self.prefix
        return f"""\
<root>/                                  ({self.folder}/ as unpacked from {self.folder}.tar, or its parent)
  imagesTr/{p}_001.nii.gz, ...          (training volumes; macOS '._*' files are skipped)
  labelsTr/{p}_001.nii.gz, ...          (label volumes, same file names)
  imagesTs/                              (ignored: no labels)
  dataset.json                           (ignored)
or, flat:  <root>/images/*.nii.gz  +  <root>/labels/*.nii.gz
"""


HIPPOCAMPUS = Task("msd-hippocampus", "Task04_Hippocampus", "hippocampus", (0, 1, 2), (1, 2))
LIVER = Task("msd-liver", "Task03_Liver", "liver", (0, 1, 2), (1, 2))


def _holds_task(base: Path, images: str, task: Task) -> bool:
    """Whether ``base/images`` holds this task's volumes (so Task03 is not read as Task04)."""
    files = list_files(base / images, EXTS)
    return not files or any(p.name.lower().startswith(task.prefix) for p in files)


def find_base(root: Path, task: Task) -> tuple[Path, str, str]:
    """The folder holding the task's image and label folders, searched breadth-first.

    The shallowest level with a match wins; there, a folder named like the task
    (``Task04_Hippocampus``) is preferred, and a folder whose images belong to
    another task is passed over, so ``root`` may be the parent of several unpacked
    MSD tasks.
    """
    root = require_root(root, task.source_id, task.layout)
    frontier = [root]
    candidates: list[tuple[Path, str, str]] = []
    for _ in range(4):
        nxt: list[Path] = []
        for base in frontier:
            for images, labels in FOLDERS:
                if (base / images).is_dir() and (base / labels).is_dir() and _holds_task(base, images, task):
                    candidates.append((base, images, labels))
                    break
            nxt.extend(subdirs(base))
        if candidates:
            break
        frontier = nxt
    named = [c for c in candidates if c[0].name.lower() == task.folder.lower()]
    if named or candidates:
        return (named or candidates)[0]
    raise DataError(
        f"{task.source_id}: no imagesTr/ + labelsTr/ (or images/ + labels/) folders with "
        f"{task.prefix}_*.nii.gz volumes found under {root} (expected e.g. {root / 'imagesTr'} and "
        f"{root / 'labelsTr'}, or {root / task.folder / 'imagesTr'}). {layout_hint(task.layout)}"
    )


def load_volume(pair: Pair, task: Task) -> Case:
    """Image as float32 ``D x H x W``; mask = the task's foreground labels, after checking the labels."""
    image = read_nifti(pair.image)
    if image.ndim != 3:
        raise DataError(
            f"{pair.image} holds a {'x'.join(map(str, image.shape))} array; {task.source_id} volumes are 3D. "
            "Is it a volume of another MSD task? Re-download the task's tarball."
        )
    label_path = pair.masks[0]
    labels = read_nifti(label_path)
    check_same_size(pair.image, image.shape, label_path, labels.shape)
    check_labels(labels, task.labels, label_path)
    mask = class_values(labels, task.foreground)
    return Case(pair.case_id, np.ascontiguousarray(image, dtype=np.float32), np.ascontiguousarray(mask))


def reader(task: Task) -> Callable[[Path], CaseReader[Pair]]:
    """The ``read`` function of one MSD task."""

    def read(root: Path) -> CaseReader[Pair]:
        base, images, labels = find_base(root, task)
        pairs = pair_folders(base / images, base / labels, image_exts=EXTS, mask_exts=EXTS)
        return CaseReader(
            task.source_id, root, task.layout, pairs, lambda p: p.case_id, lambda p: load_volume(p, task)
        )

    read.__doc__ = f"Read the labelled {task.folder} volumes; case id = file name without .nii.gz."
    return read


HIPPOCAMPUS_SOURCE = SourceInfo(
    id=HIPPOCAMPUS.source_id,
    title="MSD Task04 Hippocampus: anterior + posterior hippocampus in 3D MRI",
    citation=f"{MSD_CITATION} (Task04 Hippocampus).",
    licence="CC BY-SA 4.0",
    url="http://medicaldecathlon.com/",
    dims=3,
    channels=1,
    layout=HIPPOCAMPUS.layout,
    binarisation=(
        "Labels 0 background, 1 anterior, 2 posterior hippocampus (others are an error); "
        "foreground = class_values(label, {1, 2}), the whole hippocampus, as in the paper. "
        "Case id: file name without .nii.gz, e.g. hippocampus_001."
    ),
    read=reader(HIPPOCAMPUS),
)

LIVER_SOURCE = SourceInfo(
    id=LIVER.source_id,
    title="MSD Task03 Liver: liver in 3D CT",
    citation=f"{MSD_CITATION} (Task03 Liver).",
    licence="CC BY-SA 4.0",
    url="http://medicaldecathlon.com/",
    dims=3,
    channels=1,
    layout=LIVER.layout,
    binarisation=(
        "Labels 0 background, 1 liver, 2 tumour (others are an error); foreground = "
        "class_values(label, {1, 2}), the whole liver with its tumours, since the paper segments "
        "the liver. Case id: file name without .nii.gz, e.g. liver_0."
    ),
    read=reader(LIVER),
)

SOURCES = (HIPPOCAMPUS_SOURCE, LIVER_SOURCE)
