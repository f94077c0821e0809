"""Every raw data source, read from a tiny fixture in its official layout; real data; the store.

Each ``build_*`` function below writes a few 16x24 images (non-square, so a
transposed read fails) in the layout the data set's own distribution unpacks
to, including the files that must be ignored (licence texts, unlabelled test
folders, the other collection of a shared archive, macOS ``._`` files), and
returns what a correct reader yields: the case ids and, for each, the mask the
set's binarisation rule must give (and the image, where the format is lossless).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from genseg_bench.data.sources import get_source
from genseg_bench.data.sources._common import STRAY_RULE, THRESHOLD_127, read_mask
from genseg_bench.data.sources.registry import SOURCES
from genseg_bench.data.store import Store, fingerprint_arrays
from genseg_bench.errors import DataError

H, W = 16, 24


# --------------------------------------------------------------------- writers


def box(y0: int, y1: int, x0: int, x1: int, h: int = H, w: int = W) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def rgb(seed: int, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def grey(seed: int, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


def save(path: Path, arr: np.ndarray, **kw: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


def save_mask(path: Path, mask: np.ndarray, fg: int = 255, **kw: object) -> Path:
    return save(path, (mask * fg).astype(np.uint8), **kw)


def noisy_mask(mask: np.ndarray) -> np.ndarray:
    """0/255 mask with anti-aliased edge values: 200 next to the box (foreground), 60 (background)."""
    out = (mask * 255).astype(np.uint8)
    ys, xs = np.nonzero(mask)
    out[ys.min(), xs.min() : xs.max() + 1] = 200
    if ys.max() + 1 < mask.shape[0]:
        out[ys.max() + 1, xs.min() : xs.max() + 1] = 60
    return out


def write_text(path: Path, text: str = "ignored\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_nifti(path: Path, arr: np.ndarray) -> Path:
    """Save ``arr`` (in reader order: D x H x W or H x W) so that reversing the NIfTI axes gives it back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(arr.T), np.eye(4)), str(path))
    return path


def write_mhd(path: Path, arr: np.ndarray) -> Path:
    """A CAMUS-style MetaImage pair: ``name.mhd`` header + ``name.raw`` uint8 pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = path.with_suffix(".raw")
    raw.write_bytes(np.ascontiguousarray(arr, dtype=np.uint8).tobytes())
    dims = " ".join(str(d) for d in arr.shape[::-1])
    path.write_text(
        "ObjectType = Image\n"
        f"NDims = {arr.ndim}\n"
        "BinaryData = True\n"
        "BinaryDataByteOrderMSB = False\n"
        "CompressedData = False\n"
        "ElementSpacing = 0.154 0.308\n"
        f"DimSize = {dims}\n"
        "ElementType = MET_UCHAR\n"
        f"ElementDataFile = {raw.name}\n"
    )
    return path


# --------------------------------------------------------------------- fixtures


@dataclass
class Layout:
    """A fixture: the folder to read and what the reader must yield from it."""

    root: Path
    masks: dict[str, np.ndarray]
    """Expected mask per case id (its shape is the expected spatial shape)."""
    drop: tuple[Path, Path] | None
    """(mask, image) of one case: deleting either must be a DataError naming the partner's path."""
    corrupt: Path
    """A file that, overwritten with garbage, must give a DataError naming it."""
    images: dict[str, np.ndarray] = field(default_factory=dict)
    """Expected image per case id, where the format is lossless."""


BUILDERS: dict[str, Callable[[Path], Layout]] = {}


def builder(name: str) -> Callable[[Callable[[Path], Layout]], Callable[[Path], Layout]]:
    def register(fn: Callable[[Path], Layout]) -> Callable[[Path], Layout]:
        BUILDERS[name] = fn
        return fn

    return register


def source_of(name: str) -> str:
    """The source id of a builder name (``etab-camus:nifti`` -> ``etab-camus``)."""
    return name.split(":")[0]


@builder("isic2018")
def build_isic(tmp: Path) -> Layout:
    img_dir = tmp / "ISIC2018_Task1-2_Training_Input"
    msk_dir = tmp / "ISIC2018_Task1_Training_GroundTruth"
    masks = {"ISIC_0000000": box(2, 10, 3, 12), "ISIC_0000001": box(0, 16, 0, 5)}
    for i, (cid, m) in enumerate(masks.items()):
        save(img_dir / f"{cid}.jpg", rgb(i))
        save_mask(msk_dir / f"{cid}_segmentation.png", m)
    write_text(img_dir / "LICENSE.txt")
    write_text(img_dir / "ATTRIBUTION.txt")
    write_text(msk_dir / "LICENSE.txt")
    drop = (msk_dir / "ISIC_0000001_segmentation.png", img_dir / "ISIC_0000001.jpg")
    return Layout(tmp, masks, drop, img_dir / "ISIC_0000000.jpg")


@builder("ph2")
def build_ph2(tmp: Path) -> Layout:
    base = tmp / "PH2Dataset" / "PH2 Dataset images"
    masks = {"IMD002": box(4, 12, 4, 20), "IMD003": box(0, 5, 0, 24)}
    images = {}
    for i, (cid, m) in enumerate(masks.items()):
        images[cid] = rgb(10 + i)
        save(base / cid / f"{cid}_Dermoscopic_Image" / f"{cid}.bmp", images[cid])
        save_mask(base / cid / f"{cid}_lesion" / f"{cid}_lesion.bmp", m)
        save_mask(base / cid / f"{cid}_roi" / f"{cid}_R1_Label4.bmp", ~m)
    write_text(tmp / "PH2Dataset" / "PH2_dataset.txt")
    drop = (
        base / "IMD003" / "IMD003_lesion" / "IMD003_lesion.bmp",
        base / "IMD003" / "IMD003_Dermoscopic_Image" / "IMD003.bmp",
    )
    return Layout(tmp, masks, drop, base / "IMD002" / "IMD002_Dermoscopic_Image" / "IMD002.bmp", images)


def build_waterloo(tmp: Path, collection: str) -> Layout:
    """The Waterloo archive with both collections; only ``collection`` must be read."""
    skin = tmp / "Skin Image Data Set-1" / "skin_data"
    files = {
        ("melanoma", "dermIS", "Oh-MM-1"): box(3, 12, 4, 18),
        ("notmelanoma", "dermIS", "Oh-NM-1"): box(0, 8, 0, 8),
        ("melanoma", "dermquest", "dq-mm-1"): box(5, 15, 2, 10),
        ("notmelanoma", "dermquest", "dq-nm-1"): box(8, 14, 12, 24),
    }
    masks = {}
    for i, ((cls, coll, name), m) in enumerate(files.items()):
        folder = skin / cls / coll
        save(folder / f"{name}_orig.jpg", rgb(20 + i))
        save(folder / f"{name}_contour.png", noisy_mask(m))
        if coll.lower() == collection:
            masks[f"{cls}/{name}"] = m  # the 200 edge is foreground, the 60 edge background
    cls, coll, name = next(k for k in files if k[1].lower() == collection)
    folder = skin / cls / coll
    return Layout(
        tmp, masks, (folder / f"{name}_contour.png", folder / f"{name}_orig.jpg"), folder / f"{name}_orig.jpg"
    )


builder("dermis")(lambda tmp: build_waterloo(tmp, "dermis"))
builder("dermquest")(lambda tmp: build_waterloo(tmp, "dermquest"))


@builder("jsrt")
def build_jsrt(tmp: Path) -> Layout:
    side = 16  # mask grid; the .IMG files are 32x32 and block-averaged onto it
    imgs = tmp / "All247images"
    scr = tmp / "scratch"
    cases = {
        "JPCLN001": ("fold1", box(2, 14, 1, 7, side, side), box(2, 14, 9, 15, side, side)),
        "JPCNN001": ("fold2", box(4, 12, 2, 6, side, side), box(3, 13, 10, 14, side, side)),
    }
    masks, images = {}, {}
    imgs.mkdir()
    for i, (cid, (fold, left, right)) in enumerate(cases.items()):
        base = np.random.default_rng(30 + i).integers(0, 4096, (side, side))
        np.kron(base, np.ones((2, 2), int)).astype(">u2").tofile(imgs / f"{cid}.IMG")  # 32x32, big-endian
        save_mask(scr / fold / "masks" / "left lung" / f"{cid}.gif", left)
        save_mask(scr / fold / "masks" / "right lung" / f"{cid}.gif", right)
        save_mask(scr / fold / "masks" / "heart" / f"{cid}.gif", box(6, 10, 6, 10, side, side))
        masks[cid] = left | right  # left and right lungs united
        images[cid] = np.round((4095 - base.astype(float)) * 255 / 4095).astype(np.uint8)[..., None]
    drop = (scr / "fold2" / "masks" / "left lung" / "JPCNN001.gif", imgs / "JPCNN001.IMG")
    return Layout(tmp, masks, drop, imgs / "JPCLN001.IMG", images)


@builder("nlm-mc")
def build_montgomery(tmp: Path) -> Layout:
    base = tmp / "MontgomerySet"
    cases = {
        "MCUCXR_0001_0": (box(2, 14, 2, 10), box(2, 14, 14, 22)),
        "MCUCXR_0002_1": (box(0, 8, 0, 8), box(8, 16, 16, 24)),
    }
    masks, images = {}, {}
    for i, (cid, (left, right)) in enumerate(cases.items()):
        g = grey(40 + i)
        save(base / "CXR_png" / f"{cid}.png", g)
        save_mask(base / "ManualMask" / "leftMask" / f"{cid}.png", left)
        save_mask(base / "ManualMask" / "rightMask" / f"{cid}.png", right)
        write_text(base / "ClinicalReadings" / f"{cid}.txt")
        masks[cid], images[cid] = left | right, g[..., None]
    drop = (base / "ManualMask" / "rightMask" / "MCUCXR_0002_1.png", base / "CXR_png" / "MCUCXR_0002_1.png")
    return Layout(tmp, masks, drop, base / "CXR_png" / "MCUCXR_0001_0.png", images)


@builder("nlm-sz")
def build_shenzhen(tmp: Path) -> Layout:
    base = tmp / "ChinaSet_AllFiles"
    masks = {"CHNCXR_0001_0": box(2, 14, 2, 20), "CHNCXR_0002_1": box(4, 10, 6, 12)}
    for i, (cid, m) in enumerate(masks.items()):
        save(base / "CXR_png" / f"{cid}.png", grey(50 + i))
        save(base / "mask" / f"{cid}_mask.png", noisy_mask(m))
    save(base / "CXR_png" / "CHNCXR_0003_0.png", grey(59))  # no mask: unlabelled, skipped
    save(base / "CXR_png" / "MCUCXR_0001_0.png", grey(58))  # a Montgomery file in a shared folder
    write_text(base / "ClinicalReadings" / "CHNCXR_0001_0.txt")
    drop = (base / "mask" / "CHNCXR_0002_1_mask.png", base / "CXR_png" / "CHNCXR_0002_1.png")
    return Layout(tmp, masks, drop, base / "CXR_png" / "CHNCXR_0001_0.png")


@builder("covid-qu-ex")
def build_covid(tmp: Path) -> Layout:
    lung = tmp / "Lung Segmentation Data" / "Lung Segmentation Data"
    cases = {
        ("Train", "COVID-19", "covid_1"): box(2, 14, 2, 22),
        ("Val", "Normal", "Normal (1)"): box(0, 16, 0, 12),
        ("Test", "Non-COVID", "non_COVID (1)"): box(5, 9, 5, 9),
    }
    masks, images = {}, {}
    for i, ((split, cls, name), m) in enumerate(cases.items()):
        g = grey(60 + i)
        save(lung / split / cls / "images" / f"{name}.png", g)
        save_mask(lung / split / cls / "lung masks" / f"{name}.png", m)
        masks[f"{split}/{cls}/{name}"], images[f"{split}/{cls}/{name}"] = m, g[..., None]
    infection = tmp / "Infection Segmentation Data" / "Infection Segmentation Data" / "Train" / "COVID-19"
    save(infection / "images" / "covid_9.png", grey(69))
    save_mask(infection / "lung masks" / "covid_9.png", box(0, 4, 0, 4))
    save_mask(infection / "infection masks" / "covid_9.png", box(0, 2, 0, 2))
    drop = (
        lung / "Val" / "Normal" / "lung masks" / "Normal (1).png",
        lung / "Val" / "Normal" / "images" / "Normal (1).png",
    )
    return Layout(tmp, masks, drop, lung / "Train" / "COVID-19" / "images" / "covid_1.png", images)


@builder("fetreg")
def build_fetreg(tmp: Path) -> Layout:
    base = tmp / "FetReg2021_Task1_Segmentation"
    labels = np.zeros((H, W), np.uint8)
    labels[2:6, :] = 1  # vessel
    labels[8:12, 0:10] = 2  # tool
    labels[8:12, 12:24] = 3  # fetus
    masks, images = {}, {}
    for i, video in enumerate(("Video001", "Video002")):
        cid = f"{video}/{video}_frame0125{i}"
        lab = np.roll(labels, i, axis=0)
        images[cid] = rgb(70 + i)
        save(base / video / "images" / f"{video}_frame0125{i}.png", images[cid])
        save(base / video / "labels" / f"{video}_frame0125{i}.png", lab)
        masks[cid] = lab == 1  # vessel class only
    drop = (
        base / "Video002" / "labels" / "Video002_frame01251.png",
        base / "Video002" / "images" / "Video002_frame01251.png",
    )
    return Layout(tmp, masks, drop, base / "Video001" / "images" / "Video001_frame01250.png", images)


@builder("fpd")
def build_fpd(tmp: Path) -> Layout:
    base = tmp / "FPD"
    masks, images = {}, {}
    for i, video in enumerate(("anon001", "anon002")):
        stem = f"{video}_0000{i + 1}"
        m = box(i, 10 + i, 3, 20)
        images[f"{video}/{stem}"] = rgb(80 + i)
        save(base / video / "images" / f"{stem}.png", images[f"{video}/{stem}"])
        save_mask(base / video / "masks" / f"{stem}.png", m)
        masks[f"{video}/{stem}"] = m
    drop = (
        base / "anon002" / "masks" / "anon002_00002.png",
        base / "anon002" / "images" / "anon002_00002.png",
    )
    return Layout(base, masks, drop, base / "anon001" / "images" / "anon001_00001.png", images)


@builder("kvasir")
def build_kvasir(tmp: Path) -> Layout:
    base = tmp / "Kvasir-SEG"
    # JPEG masks: 0/255 boxes on JPEG's own 8x8 blocks come back as about 0 and 255, with
    # compression noise near the levels that threshold(127) reads away
    masks = {"cju0qkwl35piu0993l0dewei2": box(0, 8, 8, 16), "cju0qoxqj9q6s0835b43399p4": box(8, 16, 0, 24)}
    for i, (cid, m) in enumerate(masks.items()):
        save(base / "images" / f"{cid}.jpg", rgb(90 + i), quality=90)
        save_mask(base / "masks" / f"{cid}.jpg", m, quality=75)
    write_text(base / "kavsir_bboxes.json", "{}")
    drop = (
        base / "masks" / "cju0qoxqj9q6s0835b43399p4.jpg",
        base / "images" / "cju0qoxqj9q6s0835b43399p4.jpg",
    )
    return Layout(base, masks, drop, base / "images" / "cju0qkwl35piu0993l0dewei2.jpg")


@builder("cvc-clinicdb")
def build_cvc(tmp: Path) -> Layout:
    base = tmp / "CVC-ClinicDB"
    masks = {"1": box(3, 9, 3, 9), "2": box(0, 16, 12, 24), "10": box(5, 6, 5, 6)}
    images = {}
    for i, (cid, m) in enumerate(masks.items()):
        images[cid] = rgb(100 + i)
        save(base / "Original" / f"{cid}.tif", images[cid])
        save_mask(base / "Ground Truth" / f"{cid}.tif", m)
    drop = (base / "Ground Truth" / "2.tif", base / "Original" / "2.tif")
    return Layout(tmp, masks, drop, base / "Original" / "10.tif", images)


@builder("buid")
def build_busi(tmp: Path) -> Layout:
    base = tmp / "Dataset_BUSI_with_GT"
    masks, images = {}, {}
    lesions = {
        ("benign", "benign (1)"): [box(2, 6, 2, 6), box(10, 14, 10, 20)],  # two lesions: _mask + _mask_1
        ("benign", "benign (2)"): [box(0, 16, 0, 4)],
        ("malignant", "malignant (1)"): [box(4, 12, 4, 12)],
        ("normal", "normal (1)"): [np.zeros((H, W), bool)],  # left out
    }
    for i, ((cls, name), ms) in enumerate(lesions.items()):
        g = grey(110 + i)
        save(base / cls / f"{name}.png", np.repeat(g[..., None], 3, axis=2))  # BUSI stores grey as RGB
        for j, m in enumerate(ms):
            save_mask(base / cls / (f"{name}_mask.png" if j == 0 else f"{name}_mask_{j}.png"), m)
        if cls != "normal":
            masks[f"{cls}/{name}"] = np.logical_or.reduce(ms)
            images[f"{cls}/{name}"] = g[..., None]
    drop = (base / "benign" / "benign (2)_mask.png", base / "benign" / "benign (2).png")
    return Layout(tmp, masks, drop, base / "malignant" / "malignant (1).png", images)


@builder("fuseg")
def build_fuseg(tmp: Path) -> Layout:
    base = tmp / "Foot Ulcer Segmentation Challenge"
    masks, images = {}, {}
    for i, (split, stem) in enumerate((("train", "0011"), ("train", "0027"), ("validation", "0012"))):
        m = box(i * 4, i * 4 + 4, 0, 24)
        images[f"{split}/{stem}"] = rgb(120 + i)
        save(base / split / "images" / f"{stem}.png", images[f"{split}/{stem}"])
        save_mask(base / split / "labels" / f"{stem}.png", m)
        masks[f"{split}/{stem}"] = m
    save(base / "test" / "images" / "0013.png", rgb(129))  # no public labels: ignored
    drop = (base / "validation" / "labels" / "0012.png", base / "validation" / "images" / "0012.png")
    return Layout(tmp, masks, drop, base / "train" / "images" / "0027.png", images)


@builder("icfluid")
def build_icfluid(tmp: Path) -> Layout:
    base = tmp / "ICFluid"
    masks, images = {}, {}
    for i, stem in enumerate(("0001", "0002")):
        m = box(6, 10, 4 + i, 20)
        g = grey(130 + i)
        save(base / "images" / f"{stem}.png", g)
        save_mask(base / "masks" / f"{stem}.png", m)
        masks[stem], images[stem] = m, g[..., None]
    drop = (base / "masks" / "0002.png", base / "images" / "0002.png")
    return Layout(base, masks, drop, base / "images" / "0001.png", images)


def camus_labels(shift: int) -> np.ndarray:
    lab = np.zeros((H, W), np.uint8)
    lab[2:14, 6:18] = 2  # myocardium
    lab[4:12, 9:15] = 1  # left-ventricle cavity
    lab[12:16, 8:16] = 3  # left atrium
    return np.roll(lab, shift, axis=1)


def build_camus(tmp: Path, nifti: bool) -> Layout:
    release = tmp / ("database_nifti" if nifti else "training")
    ext = ".nii.gz" if nifti else ".mhd"
    write = write_nifti if nifti else write_mhd
    masks, images = {}, {}
    i = 0
    for patient in ("patient0001", "patient0002"):
        folder = release / patient
        for frame in ("2CH_ED", "2CH_ES", "4CH_ED", "4CH_ES"):
            cid = f"{patient}_{frame}"
            lab = camus_labels(i % 4)
            images[cid] = grey(140 + i)
            write(folder / f"{cid}{ext}", images[cid])
            write(folder / f"{cid}_gt{ext}", lab)
            masks[cid] = (lab == 1) | (lab == 2)  # left ventricle + myocardium; the atrium is background
            images[cid] = images[cid][..., None]
            i += 1
        write_text(folder / "Info_2CH.cfg", "ED: 1\nES: 10\n")
        write(folder / f"{patient}_2CH_sequence{ext}", np.zeros((3, H, W), np.uint8))
    if not nifti:  # 2019 testing set: frames without ground truth, skipped
        write_mhd(tmp / "testing" / "patient0051" / f"patient0051_2CH_ED{ext}", grey(149))
    folder = release / "patient0002"
    return Layout(
        tmp,
        masks,
        (folder / f"patient0002_4CH_ES_gt{ext}", folder / f"patient0002_4CH_ES{ext}"),
        release / "patient0001" / f"patient0001_2CH_ES{ext}",
        images,
    )


builder("etab-camus")(lambda tmp: build_camus(tmp, nifti=False))
builder("etab-camus:nifti")(lambda tmp: build_camus(tmp, nifti=True))


def build_msd(tmp: Path, task: str, prefix: str, ids: tuple[str, ...], flat: bool = False) -> Layout:
    base = tmp / task
    images_dir, labels_dir = ("images", "labels") if flat else ("imagesTr", "labelsTr")
    rng = np.random.default_rng(150)
    masks, images = {}, {}
    for i, cid in enumerate(ids):
        shape = (5 + i, 7, 6)  # D x H x W as read; stored as W x H x D
        vol = (
            rng.normal(0, 300, shape).astype(np.int16) if prefix == "liver" else rng.random(shape, np.float32)
        )
        lab = np.zeros(shape, np.uint8)
        lab[1:4, 1:3, 1:5] = 1
        lab[1:4, 3:6, 2:4] = 2
        write_nifti(base / images_dir / f"{cid}.nii.gz", vol)
        write_nifti(base / labels_dir / f"{cid}.nii.gz", lab)
        masks[cid], images[cid] = lab > 0, vol.astype(np.float32)  # labels 1 and 2 merged
    if not flat:
        write_nifti(base / "imagesTs" / f"{prefix}_900.nii.gz", np.zeros((4, 4, 4), np.float32))
        write_text(base / "dataset.json", json.dumps({"name": task}))
        for d in (images_dir, labels_dir):  # AppleDouble files of the macOS-made tarballs
            (base / d / f"._{ids[0]}.nii.gz").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    drop = (base / labels_dir / f"{ids[-1]}.nii.gz", base / images_dir / f"{ids[-1]}.nii.gz")
    return Layout(tmp if not flat else base, masks, drop, base / images_dir / f"{ids[0]}.nii.gz", images)


@builder("msd-hippocampus")
def build_hippocampus(tmp: Path) -> Layout:
    # a decoy liver task next to it: the parent of several MSD tasks must still read Task04
    build_msd(tmp, "Task03_Liver", "liver", ("liver_0",))
    return build_msd(tmp, "Task04_Hippocampus", "hippocampus", ("hippocampus_001", "hippocampus_003"))


builder("msd-hippocampus:flat")(
    lambda tmp: build_msd(
        tmp, "msd-hippocampus", "hippocampus", ("hippocampus_001", "hippocampus_004"), flat=True
    )
)
builder("msd-liver")(lambda tmp: build_msd(tmp, "Task03_Liver", "liver", ("liver_0", "liver_1", "liver_10")))


# --------------------------------------------------------------------- reading fixtures


def test_every_source_has_a_fixture() -> None:
    assert set(SOURCES) <= {source_of(name) for name in BUILDERS}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_reads_official_layout(name: str, tmp_path: Path) -> None:
    info = SOURCES[source_of(name)]
    fx = BUILDERS[name](tmp_path)
    reader = info.read(fx.root)
    ids = sorted(fx.masks)
    assert len(reader) == len(ids)
    assert list(reader.case_ids) == ids
    cases = list(reader)
    assert [c.case_id for c in cases] == ids
    for case in cases:
        expected = fx.masks[case.case_id]
        assert case.mask.dtype == bool and case.mask.shape == expected.shape, case.case_id
        assert np.array_equal(case.mask, expected), case.case_id
        if info.dims == 2:
            assert case.image.dtype == np.uint8
            assert case.image.shape == (*expected.shape, info.channels), case.case_id
        else:
            assert case.image.dtype == np.float32 and case.image.shape == expected.shape
        if case.case_id in fx.images:
            assert np.array_equal(case.image, fx.images[case.case_id]), case.case_id


def test_select_decodes_named_cases_only(tmp_path: Path) -> None:
    fx = build_cvc(tmp_path)
    reader = SOURCES["cvc-clinicdb"].read(fx.root)
    (case,) = reader.select(["2"])
    assert case.case_id == "2" and np.array_equal(case.mask, fx.masks["2"])


@pytest.mark.parametrize("source_id", sorted(SOURCES))
def test_missing_folder_names_the_path(source_id: str, tmp_path: Path) -> None:
    missing = tmp_path / "not-unpacked"
    with pytest.raises(DataError, match="does not exist") as err:
        SOURCES[source_id].read(missing)
    assert str(missing) in str(err.value)


@pytest.mark.parametrize("source_id", sorted(SOURCES))
def test_wrong_folder_names_the_path_and_layout(source_id: str, tmp_path: Path) -> None:
    write_text(tmp_path / "README.txt")
    with pytest.raises(DataError) as err:
        SOURCES[source_id].read(tmp_path)
    assert str(tmp_path) in str(err.value)
    assert "Expected layout" in str(err.value)


@pytest.mark.parametrize("name", sorted(n for n in BUILDERS if source_of(n) != "nlm-sz"))
def test_image_without_mask(name: str, tmp_path: Path) -> None:
    fx = BUILDERS[name](tmp_path)
    assert fx.drop is not None
    mask, image = fx.drop
    mask.unlink()
    with pytest.raises(DataError, match="has no mask") as err:
        SOURCES[source_of(name)].read(fx.root)
    assert str(image) in str(err.value)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_mask_without_image(name: str, tmp_path: Path) -> None:
    fx = BUILDERS[name](tmp_path)
    assert fx.drop is not None
    _, image = fx.drop
    image.unlink()
    with pytest.raises(DataError, match="has no image") as err:
        SOURCES[source_of(name)].read(fx.root)
    assert str(image) in str(err.value)  # the message says which image to restore


def test_busi_unites_extra_lesion_masks(tmp_path: Path) -> None:
    fx = build_busi(tmp_path)
    (case,) = SOURCES["buid"].read(fx.root).select(["benign/benign (1)"])
    assert np.array_equal(case.mask, box(2, 6, 2, 6) | box(10, 14, 10, 20))


def test_waterloo_collections_never_mix(tmp_path: Path) -> None:
    build_waterloo(tmp_path, "dermquest")
    for folder in (tmp_path / "Skin Image Data Set-1" / "skin_data").glob("*/dermIS"):
        for f in folder.iterdir():
            f.unlink()
        folder.rmdir()
    assert len(SOURCES["dermquest"].read(tmp_path)) == 2
    with pytest.raises(DataError, match="dermis"):
        SOURCES["dermis"].read(tmp_path)  # the DermQuest files are not read as DermIS


def test_msd_picks_its_own_task_among_several(tmp_path: Path) -> None:
    build_msd(tmp_path / "a", "hippo-copy", "hippocampus", ("hippocampus_001",), flat=True)
    build_msd(tmp_path / "b", "liver-copy", "liver", ("liver_0", "liver_1"), flat=True)
    assert SOURCES["msd-liver"].read(tmp_path).case_ids == ("liver_0", "liver_1")
    assert SOURCES["msd-hippocampus"].read(tmp_path).case_ids == ("hippocampus_001",)


def test_shenzhen_skips_unlabelled_images(tmp_path: Path) -> None:
    fx = build_shenzhen(tmp_path)
    assert fx.drop is not None
    fx.drop[0].unlink()
    assert SOURCES["nlm-sz"].read(fx.root).case_ids == ("CHNCXR_0001_0",)


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_file_names_it(name: str, damage: str, tmp_path: Path) -> None:
    fx = BUILDERS[name](tmp_path)
    data = fx.corrupt.read_bytes()
    fx.corrupt.write_bytes(b"this is not an image" if damage == "garbage" else data[: len(data) // 2])
    reader = SOURCES[source_of(name)].read(fx.root)  # listing does not decode: still fine
    with pytest.raises(DataError) as err:
        list(reader)
    assert str(fx.corrupt) in str(err.value)


def test_mhd_with_missing_raw_names_both(tmp_path: Path) -> None:
    fx = build_camus(tmp_path, nifti=False)
    raw = fx.corrupt.with_suffix(".raw")
    raw.unlink()
    with pytest.raises(DataError, match="cannot be read") as err:
        list(SOURCES["etab-camus"].read(fx.root))
    assert str(fx.corrupt) in str(err.value) and str(raw) in str(err.value)


# --------------------------------------------------------------------- binarisation rules


BINARY = sorted(n for n in BUILDERS if STRAY_RULE in SOURCES[source_of(n)].binarisation)
"""Fixtures of the binary-mask sets (those whose documented rule handles stray values)."""

LOSSLESS_BINARY = [n for n in BINARY if n != "kvasir"]
"""Kvasir-SEG's masks are JPEG: exact stray values cannot be written into them."""


def add_stray(path: Path, value: int = 32, n: int = 5) -> int:
    """Overwrite a mask file, same format, with ``n`` background pixels set to ``value``.

    Returns how many of its pixels are then neither 0 nor 255 (the fixture's own
    anti-aliased edges included), i.e. what the report must count for the file.
    """
    values = read_mask(path).copy()
    background = np.flatnonzero(values.ravel() == 0)[:n]
    assert background.size == n, path
    values.flat[background] = value
    save(path, values)
    assert int((read_mask(path) == value).sum()) == n, path  # the format kept the value
    return int(((values != 0) & (values != 255)).sum())


def test_every_binary_mask_source_reports_stray_values() -> None:
    """Every source that reads grey masks uses the reporting rule; label maps are the only others."""
    label_maps = {"fetreg", "etab-camus", "msd-hippocampus", "msd-liver"}
    assert {source_of(n) for n in BINARY} | label_maps == set(SOURCES)


@pytest.mark.parametrize("name", LOSSLESS_BINARY)
def test_stray_values_are_binarised_and_reported(name: str, tmp_path: Path) -> None:
    fx = BUILDERS[name](tmp_path)
    assert fx.drop is not None
    path = fx.drop[0]
    expected_pixels = add_stray(path)
    reader = SOURCES[source_of(name)].read(fx.root)
    for case in reader:  # 32 is nearer 0: the masks are unchanged
        assert np.array_equal(case.mask, fx.masks[case.case_id]), case.case_id
    records = {r.path: r for r in reader.report.files}
    assert records[path].pixels == expected_pixels
    assert 32 in records[path].values
    summary = reader.report.summary(fx.root)
    assert summary["files_changed"] == len(records) and summary["files_checked"] >= len(fx.masks)
    assert summary["pixels_changed"] == sum(r.pixels for r in records.values())


def build_fuseg_0233(tmp: Path) -> tuple[Path, np.ndarray]:
    """FUSeg's layout with the official validation/labels/0233.png case: RGB, values 0, 32 and 255.

    The 252 pixels of 32 lie in a ring just outside the ulcer, as stray annotation levels do.
    Returns the root and the expected mask (the 32s are background).
    """
    base = tmp / "Foot Ulcer Segmentation Challenge"
    side = 512
    ulcer = box(200, 300, 180, 340, side, side)
    values = (ulcer * 255).astype(np.uint8)
    ring = np.argwhere(box(199, 301, 179, 341, side, side) & ~ulcer)[:252]
    values[ring[:, 0], ring[:, 1]] = 32
    save(base / "validation" / "images" / "0233.png", rgb(7, side, side))
    save(base / "validation" / "labels" / "0233.png", np.repeat(values[..., None], 3, axis=2))
    save(base / "train" / "images" / "0011.png", rgb(8, side, side))
    save_mask(base / "train" / "labels" / "0011.png", box(10, 50, 10, 50, side, side))
    return tmp, ulcer


def test_fuseg_official_0233_imports_and_is_listed(tmp_path: Path) -> None:
    root, ulcer = build_fuseg_0233(tmp_path / "raw")
    prepared = Store(tmp_path / "store").prepare("fuseg", root, 512)
    i = prepared.case_ids.index("validation/0233")
    assert np.array_equal(prepared.masks[i].astype(bool), ulcer)
    values = prepared.meta["mask_values"]
    assert values["files_checked"] == 2 and values["files_changed"] == 1
    assert values["pixels_changed"] == 252
    assert values["top"] == [
        {
            "file": "Foot Ulcer Segmentation Challenge/validation/labels/0233.png",
            "values": [32],
            "n_values": 1,
            "pixels": 252,
        }
    ]
    on_disk = json.loads((prepared.path / "meta.json").read_text())
    assert on_disk["mask_values"] == values
    assert Store(tmp_path / "store").load("fuseg", 512).meta["mask_values"] == values


def test_data_prepare_lists_changed_files(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from genseg_bench.cli import app

    root, _ = build_fuseg_0233(tmp_path / "raw")
    args = ["data", "prepare", "fuseg", "--from", str(root), "--size", "64", "--store", str(tmp_path / "s")]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "1 of 2 mask files held stray values; 252 pixels changed" in result.output
    (line,) = [ln for ln in result.output.splitlines() if ln.startswith("Foot Ulcer")]  # the table row
    assert line.split() == [
        "Foot",
        "Ulcer",
        "Segmentation",
        "Challenge/validation/labels/0233.png",
        "32",
        "252",
    ]


def test_jpeg_noise_is_counted_not_an_error(tmp_path: Path) -> None:
    fx = build_kvasir(tmp_path)
    # a JPEG of a blurred outline: noise and a grey ramp all along the edge, as in Kvasir-SEG
    m = box(2, 14, 3, 20)
    soft = np.asarray(
        Image.fromarray((m * 255).astype(np.uint8)).resize((W * 4, H * 4)).resize((W, H), Image.BILINEAR)
    )
    cid = "cju0qkwl35piu0993l0dewei2"
    save(fx.root / "masks" / f"{cid}.jpg", soft, quality=60)
    reader = SOURCES["kvasir"].read(fx.root)
    (case,) = reader.select([cid])
    assert abs(int(case.mask.sum()) - int(m.sum())) <= 0.15 * m.sum()
    (record,) = [r for r in reader.report.files if r.path.name == f"{cid}.jpg"]
    assert record.pixels > 0 and record.n_values >= 1


@pytest.mark.parametrize(
    ("values", "what"),
    [
        ((np.arange(H * W).reshape(H, W) % 3 * 100).astype(np.uint8), "mid-grey"),  # a grey image
        (np.kron(np.array([[0, 85], [170, 255]], np.uint8), np.ones((H // 2, W // 2), np.uint8)), "mid-grey"),
        (np.kron(np.array([[0, 1], [2, 0]], np.uint8), np.ones((H // 2, W // 2), np.uint8)), "empty"),
        ((box(4, 6, 4, 8) * 100).astype(np.uint8), "empty"),  # a small lesion coded at grey 100
    ],
    ids=["grey-image", "label-map-grey-classes", "class-indices", "low-grey-mask"],
)
def test_ambiguous_mask_names_the_file(values: np.ndarray, what: str, tmp_path: Path) -> None:
    fx = build_isic(tmp_path)
    path = tmp_path / "ISIC2018_Task1_Training_GroundTruth" / "ISIC_0000000_segmentation.png"
    save(path, values)
    with pytest.raises(DataError, match="ambiguous") as err:
        list(SOURCES["isic2018"].read(fx.root))
    assert str(path) in str(err.value) and what in str(err.value)


def test_several_small_grey_classes_are_a_label_map(tmp_path: Path) -> None:
    side = 100
    values = (box(20, 80, 20, 80, side, side) * 255).astype(np.uint8)
    for i, grey_level in enumerate((60, 120, 180)):  # 1.5 % each, 4.5 % in all: under the share limit
        values[90:95, i * 30 : i * 30 + 30] = grey_level
    with pytest.raises(DataError, match="multi-class label map") as err:
        THRESHOLD_127(values, tmp_path / "m.png")
    assert "60, 120, 180" in str(err.value)


def test_thin_structures_resampled_are_not_ambiguous(tmp_path: Path) -> None:
    """A downsized vessel mask is mostly outline: its grey ramp may exceed 5 % and still be binary."""
    big = np.zeros((400, 400), np.uint8)
    for x in range(22, 400, 40):
        big[:, x : x + 6] = 255  # thin vessels, off the 4x grid: each leaves a grey column
    small = np.asarray(Image.fromarray(big).resize((100, 100), Image.BILINEAR))
    mid = ((small > 32) & (small < 223)).mean()
    assert mid > 0.05  # above the share limit, but all on the outline
    mask, stray = THRESHOLD_127(small, tmp_path / "m.png")
    assert stray is not None and stray.pixels == int(((small != 0) & (small != 255)).sum())
    assert abs(mask.mean() - big.mean() / 255) <= 0.06  # 1.5 of 10 columns -> 2 of 10


def test_zero_one_masks_read_exactly(tmp_path: Path) -> None:
    mask, stray = THRESHOLD_127(box(2, 6, 2, 6).astype(np.uint8), tmp_path / "m.png")
    assert stray is None and np.array_equal(mask, box(2, 6, 2, 6))


@pytest.mark.parametrize(
    ("name", "bad_value"),
    [("fetreg", 7), ("etab-camus", 4), ("etab-camus:nifti", 9), ("msd-hippocampus", 3), ("msd-liver", 5)],
)
def test_label_map_with_foreign_labels(name: str, bad_value: int, tmp_path: Path) -> None:
    fx = BUILDERS[name](tmp_path)
    assert fx.drop is not None
    label_path, _ = fx.drop
    expected = fx.masks[max(fx.masks)]
    bad = np.zeros(expected.shape, np.uint8)
    bad[0, 0] = bad_value
    if label_path.name.endswith(".nii.gz"):
        write_nifti(label_path, bad)
    elif label_path.suffix == ".mhd":
        write_mhd(label_path, bad)
    else:
        save(label_path, bad)
    with pytest.raises(DataError, match="outside the expected labels") as err:
        list(SOURCES[source_of(name)].read(fx.root))
    assert str(label_path) in str(err.value)


def test_mismatched_sizes_name_both_files(tmp_path: Path) -> None:
    fx = build_kvasir(tmp_path)
    assert fx.drop is not None
    mask, image = fx.drop
    save_mask(mask, box(0, 4, 0, 4, 8, 8))
    with pytest.raises(DataError, match="same size") as err:
        list(SOURCES["kvasir"].read(fx.root))
    assert str(mask) in str(err.value) and str(image) in str(err.value)


# --------------------------------------------------------------------- the store


@pytest.mark.parametrize(
    ("name", "shape"),
    [("kvasir", (16, 16, 3)), ("etab-camus", (16, 16, 1)), ("msd-hippocampus", (16, 16, 16))],
)
def test_store_prepare_end_to_end(name: str, shape: tuple[int, ...], tmp_path: Path) -> None:
    fx = BUILDERS[name](tmp_path / "raw")
    store = Store(tmp_path / "store")
    prepared = store.prepare(name, fx.root, 16)
    n = len(fx.masks)
    assert prepared.case_ids == sorted(fx.masks)
    assert prepared.images.shape == (n, *shape)
    assert prepared.masks.shape == (n, *(shape if SOURCES[name].dims == 3 else shape[:2]))
    assert prepared.masks.dtype == np.uint8 and set(np.unique(prepared.masks)) <= {0, 1}
    if SOURCES[name].dims == 2:
        assert prepared.images.dtype == np.uint8
    else:
        assert prepared.images.dtype == np.float32
        assert prepared.images.min() >= 0.0 and prepared.images.max() <= 1.0
    for i, cid in enumerate(prepared.case_ids):  # foreground fraction survives resizing
        assert abs(prepared.masks[i].mean() - fx.masks[cid].mean()) < 0.1, cid
    assert prepared.fingerprint == fingerprint_arrays(prepared.images, prepared.masks, prepared.case_ids)
    assert store.is_prepared(name, 16)
    values = prepared.meta["mask_values"]  # label maps binarise no grey mask: nothing to report
    assert (values is None) == (STRAY_RULE not in SOURCES[name].binarisation)
    again = store.prepare(name, fx.root, 16, overwrite=True)
    assert again.fingerprint == prepared.fingerprint  # deterministic


# --------------------------------------------------------------------- grouped splits


def test_fetreg_groups_by_video(tmp_path: Path) -> None:
    fx = build_fetreg(tmp_path)
    group = SOURCES["fetreg"].group
    assert group is not None
    ids = SOURCES["fetreg"].read(fx.root).case_ids
    assert {c: group(c) for c in ids} == {
        "Video001/Video001_frame01250": "Video001",
        "Video002/Video002_frame01251": "Video002",
    }
    # the root pointed at one video's folder: ids lose the folder, the stem still names the video
    assert SOURCES["fetreg"].read(fx.root / "FetReg2021_Task1_Segmentation" / "Video002").case_ids == (
        "Video002_frame01251",
    )
    assert group("Video002_frame01251") == "Video002"


def test_fpd_groups_by_video(tmp_path: Path) -> None:
    fx = build_fpd(tmp_path)
    group = SOURCES["fpd"].group
    assert group is not None
    ids = SOURCES["fpd"].read(fx.root).case_ids
    assert [group(c) for c in ids] == ["anon001", "anon002"]
    flat = tmp_path / "flat"  # images/ + masks/ without video folders: the stem's prefix names the video
    for stem in ("anon003_00001", "anon003_00002", "anon004_00001"):
        save(flat / "images" / f"{stem}.png", rgb(1))
        save_mask(flat / "masks" / f"{stem}.png", box(2, 8, 2, 8))
    ids = SOURCES["fpd"].read(flat).case_ids
    assert [group(c) for c in ids] == ["anon003", "anon003", "anon004"]


def test_cvc_clinicdb_groups_by_published_sequence() -> None:
    from genseg_bench.data.sources.cvc_clinicdb import SEQUENCE_ENDS

    group = SOURCES["cvc-clinicdb"].group
    assert group is not None
    seq = {n: group(str(n)) for n in range(1, 613)}
    assert len(set(seq.values())) == len(SEQUENCE_ENDS) == 29
    assert seq[1] == seq[25] == "seq01" and seq[26] == "seq02"
    assert seq[200] == seq[205] == "seq10" and seq[199] == "seq09" and seq[206] == "seq11"
    assert seq[592] == seq[612] == "seq29"
    sizes = [int(b) - int(a) for a, b in zip((0, *SEQUENCE_ENDS[:-1]), SEQUENCE_ENDS, strict=True)]
    assert sum(sizes) == 612 and min(sizes) == 6 and max(sizes) == 26  # 200-205 is the shortest
    for bad in ("0", "613", "frame7"):
        with pytest.raises(DataError, match="split_group"):
            group(bad)


def _video_ids(source: str, sizes: dict[str, int]) -> list[str]:
    if source == "fetreg":
        return [f"{v}/{v}_frame{i:05d}" for v, n in sizes.items() for i in range(n)]
    return [f"{v}/{v}_{i:05d}" for v, n in sizes.items() for i in range(n)]


@pytest.mark.parametrize("source", ["fetreg", "fpd", "cvc-clinicdb"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_split_keeps_a_video_on_one_side(source: str, seed: int) -> None:
    from genseg_bench.data.splits import make_split
    from genseg_bench.specs import ValidationRule

    group = SOURCES[source].group
    assert group is not None
    if source == "cvc-clinicdb":
        ids = [str(n) for n in range(1, 613)]
    elif source == "fetreg":  # 18 videos of uneven length, as in the release
        ids = _video_ids(source, {f"Video{v:03d}": 40 + 17 * v for v in range(1, 19)})
    else:  # six videos
        ids = _video_ids(source, {f"anon{v:03d}": 60 + 10 * v for v in (1, 2, 5, 6, 10, 12)})
    split = make_split(ids, seed, 0.2, ValidationRule(fraction=0.2), group_fn=group)
    test_groups = {group(c) for c in split.test}
    pool_groups = {group(c) for c in split.pool}
    assert test_groups and pool_groups and not test_groups & pool_groups
    assert sorted(split.test + split.pool) == sorted(ids)
    for n in (10, 40):
        sub = split.subset(n, source)
        assert len(sub.train) + len(sub.val) == n
        assert not {group(c) for c in sub.train} & {group(c) for c in sub.val}
    # the labelled cases of a small n spread over videos instead of filling up with one
    assert len({group(c) for c in split.labelled(10)}) == min(10, len(pool_groups))


# --------------------------------------------------------------------- real data (../shared/data)


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("source_id", "folder", "count"), [("kvasir", "kvasir-seg", 998), ("cvc-clinicdb", "cvc-clinicdb", 609)]
)
def test_real_polyp_sets(source_id: str, folder: str, count: int, shared_data: Path) -> None:
    reader = get_source(source_id).read(shared_data / folder)
    assert len(reader) == count and len(set(reader.case_ids)) == count
    for case in itertools.islice(reader, 4):
        assert case.image.shape == (256, 256, 3) and case.image.dtype == np.uint8
        assert case.mask.shape == (256, 256) and case.mask.dtype == bool
        assert 0 < case.mask.mean() < 0.9, case.case_id


@pytest.mark.realdata
def test_real_hippocampus(shared_data: Path) -> None:
    root = shared_data / "msd-hippocampus"
    reader = get_source("msd-hippocampus").read(root)
    assert len(reader) == 260
    for case in reader:
        assert case.image.dtype == np.float32 and case.image.ndim == 3
        assert case.mask.dtype == bool and case.mask.shape == case.image.shape
        assert case.mask.any(), case.case_id
    # anterior (1) and posterior (2) are both in the mask
    first = reader.case_ids[0]
    raw = np.asarray(nib.load(str(root / "labels" / f"{first}.nii.gz")).dataobj).T
    assert {1, 2} <= set(np.unique(raw).tolist())
    (case,) = get_source("msd-hippocampus").read(root).select([first])
    assert np.array_equal(case.mask, raw > 0)


@pytest.mark.realdata
def test_real_cvc_clinicdb_sequences(shared_data: Path) -> None:
    ids = get_source("cvc-clinicdb").read(shared_data / "cvc-clinicdb").case_ids
    group = get_source("cvc-clinicdb").group
    assert group is not None
    assert len({group(c) for c in ids}) == 29  # the 3 frames missing from the copy leave every sequence


@pytest.mark.realdata
@pytest.mark.parametrize("folder", ["kvasir-seg", "cvc-clinicdb"])
def test_real_jpeg_masks_are_not_ambiguous(folder: str, shared_data: Path) -> None:
    """Every JPEG mask of the shared copies binarises without error; their noise is counted."""
    files = sorted((shared_data / folder / "masks").iterdir())
    strays = [THRESHOLD_127(read_mask(p), p)[1] for p in files]
    assert sum(s is not None for s in strays) > len(files) // 2  # nearly every JPEG mask is noisy
