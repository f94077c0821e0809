"""The prepared store: resized cases with a content fingerprint, written atomically.

Layout, under a store root chosen by the caller (never a global variable)::

    <root>/<source>/<size>/images.npy   N x H x W x C uint8 (2D) | N x D x H x W float32 (3D)
                           masks.npy    N x H x W uint8 0/1     | N x D x H x W uint8
                           cases.json   case ids, sorted
                           meta.json    source, size, fingerprint, created, package version,
                                        mask_values (what binarisation changed, see below)
                           splits/      persisted splits (see splits.py)

Results carry the fingerprint, so numbers computed on different data never mix
silently. Preparing writes to a temporary folder and renames it into place: an
error half-way (a corrupt image, a size mismatch) leaves nothing half-written; the
folders get the user's umask (:mod:`genseg_bench.atomic`), not ``mkdtemp``'s 0700.
Torch is imported only where cases are resized, so the CLI lists prepared sets
(``genseg-bench tasks``, ``data list``) without loading it.

``meta.json``'s ``mask_values`` records what the source's binarisation rule did to
values that were neither background nor foreground (JPEG noise, FUSeg's stray 32s):
``files_checked``, ``files_changed``, ``pixels_changed`` and the ``top`` files (path
relative to the raw folder, stray values, pixels), so a changed label is never silent.
It is ``null`` for sources that do not binarise grey masks (label maps, synthetic sets).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genseg_bench import __version__
from genseg_bench.atomic import make_temp_dir
from genseg_bench.data.sources import get_source, is_synthetic
from genseg_bench.data.sources._common import CaseReader
from genseg_bench.data.types import Case
from genseg_bench.errors import DataError
from genseg_bench.values import MIN_IMAGE_SIZE

if TYPE_CHECKING:  # torch loads inside the functions that resize: listing or reading a store needs no torch
    import torch

STORE_VERSION = 1


def default_store_root() -> Path:
    """``~/.cache/genseg-bench/data``: the CLI's default; every function takes the root explicitly."""
    return Path.home() / ".cache" / "genseg-bench" / "data"


@dataclass(frozen=True)
class PreparedSet:
    """A prepared data set, loaded into memory."""

    source: str
    size: int
    images: np.ndarray
    masks: np.ndarray
    case_ids: list[str]
    fingerprint: str
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)
    """The set's ``meta.json`` (provenance and the ``mask_values`` summary)."""

    @property
    def dims(self) -> int:
        return self.masks.ndim - 1

    def index(self, ids: Iterable[str]) -> np.ndarray:
        pos = {c: i for i, c in enumerate(self.case_ids)}
        return np.array([pos[c] for c in ids], dtype=np.int64)


def fingerprint_arrays(images: np.ndarray, masks: np.ndarray, case_ids: list[str]) -> str:
    """SHA-256 over ids, shapes and bytes: equal data gives equal fingerprints on every machine."""
    h = hashlib.sha256()
    h.update(json.dumps(case_ids).encode())
    for arr in (images, masks):
        h.update(str(arr.dtype).encode())
        h.update(json.dumps(list(arr.shape)).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]


def _resize_2d(case: Case, size: int) -> tuple[np.ndarray, np.ndarray]:
    import torch
    import torch.nn.functional as F

    img = torch.from_numpy(np.ascontiguousarray(case.image)).permute(2, 0, 1)[None].float()
    msk = torch.from_numpy(np.ascontiguousarray(case.mask))[None, None].float()
    img = F.interpolate(img, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    # area-like resampling then 0.5 threshold keeps thin structures better than nearest
    msk = F.interpolate(msk, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    image = img[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
    return image, (msk[0, 0] >= 0.5).to(torch.uint8).numpy()


def _normalise_volume(vol: np.ndarray) -> np.ndarray:
    """Clip to the 0.5-99.5 percentiles and scale to [0, 1] (per volume: MRI has no absolute unit)."""
    lo, hi = np.percentile(vol, [0.5, 99.5])
    return np.clip((vol - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)


def _resize_3d(case: Case, size: int) -> tuple[np.ndarray, np.ndarray]:
    import torch
    import torch.nn.functional as F

    vol = torch.from_numpy(_normalise_volume(case.image.astype(np.float32)))[None, None]
    msk = torch.from_numpy(case.mask.astype(np.float32))[None, None]
    vol = F.interpolate(vol, size=(size, size, size), mode="trilinear", align_corners=False)
    msk = F.interpolate(msk, size=(size, size, size), mode="trilinear", align_corners=False)
    return vol[0, 0].numpy().astype(np.float32), (msk[0, 0] >= 0.5).to(torch.uint8).numpy()


def _check_case(case: Case, source: str, dims: int) -> None:
    if case.mask.ndim != dims:
        raise DataError(
            f"{source}: case {case.case_id!r} has a {case.mask.ndim}D mask, expected {dims}D. "
            "Check that the folder holds this data set's official layout."
        )
    spatial = case.image.shape[:dims] if dims == 2 else case.image.shape
    if tuple(spatial) != tuple(case.mask.shape):
        raise DataError(
            f"{source}: case {case.case_id!r}: image size {tuple(spatial)} != mask size {tuple(case.mask.shape)}. "
            "Replace the mismatched pair or remove it from the folder."
        )


class Store:
    """Prepared data sets under one root folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, source: str, size: int) -> Path:
        return self.root / source / str(size)

    def is_prepared(self, source: str, size: int) -> bool:
        return (self.path(source, size) / "meta.json").is_file()

    def prepared_sizes(self, source: str) -> list[int]:
        base = self.root / source
        if not base.is_dir():
            return []
        return sorted(int(p.name) for p in base.iterdir() if p.name.isdigit() and (p / "meta.json").is_file())

    def prepare(
        self,
        source: str,
        raw_root: Path | None,
        size: int,
        progress: Callable[[int], None] | None = None,
        overwrite: bool = False,
    ) -> PreparedSet:
        """Read a raw data set, resize every case, fingerprint it and write it atomically."""
        info = get_source(source)
        if size < MIN_IMAGE_SIZE:
            raise DataError(
                f"{source}: size must be {MIN_IMAGE_SIZE} or more (pixels per side; 3D: voxels per cube edge); "
                f"got {size}. Pass e.g. --size {256 if info.dims == 2 else 64}."
            )
        if raw_root is None and not is_synthetic(source):
            raise DataError(
                f"{source}: give the folder of the raw data set with --from PATH ({info.layout})."
            )
        target = self.path(source, size)
        if target.exists() and not overwrite:
            return self.load(source, size)
        images, masks, ids = [], [], []
        seen: set[str] = set()
        reader = info.read(Path(raw_root) if raw_root else Path("."))
        for case in reader:
            _check_case(case, source, info.dims)
            if case.case_id in seen:
                raise DataError(
                    f"{source}: case id {case.case_id!r} occurs twice under {raw_root}. Remove the duplicate."
                )
            seen.add(case.case_id)
            img, msk = _resize_2d(case, size) if info.dims == 2 else _resize_3d(case, size)
            if info.dims == 2 and img.shape[-1] != info.channels:
                img = _to_channels(img, info.channels)
            images.append(img)
            masks.append(msk)
            ids.append(case.case_id)
            if progress:
                progress(len(ids))
        if not ids:
            raise DataError(f"{source}: no cases found under {raw_root}. Expected layout: {info.layout}")
        order = np.argsort(ids)
        ids = [ids[i] for i in order]
        img_arr = np.stack([images[i] for i in order])
        msk_arr = np.stack([masks[i] for i in order])
        fp = fingerprint_arrays(img_arr, msk_arr, ids)
        meta = {
            "store_version": STORE_VERSION,
            "source": source,
            "size": size,
            "n_cases": len(ids),
            "fingerprint": fp,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "genseg_bench": __version__,
            "raw_root": str(raw_root) if raw_root else "",
            "mask_values": _mask_values(reader, raw_root),
        }
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = make_temp_dir(target.parent, str(size))
        try:
            np.save(tmp / "images.npy", img_arr)
            np.save(tmp / "masks.npy", msk_arr)
            (tmp / "cases.json").write_text(json.dumps(ids))
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self.load(source, size)

    def ensure(self, source: str, size: int) -> PreparedSet:
        """Load a prepared set; synthetic sets are generated on first use, real ones must be prepared."""
        if self.is_prepared(source, size):
            return self.load(source, size)
        if is_synthetic(source):
            return self.prepare(source, None, size)
        other = self.prepared_sizes(source)
        hint = f" (prepared at sizes {other}; pass --size {size} to prepare this one)" if other else ""
        raise DataError(
            f"data set {source!r} is not prepared at size {size} in {self.root}{hint}. "
            f"Run: genseg-bench data prepare {source} --from PATH --size {size}  "
            f"(PATH: the folder of the official distribution; layout: {get_source(source).layout}), "
            f"or: genseg-bench data pull {source} --repo ORG/NAME"
        )

    def load(self, source: str, size: int) -> PreparedSet:
        path = self.path(source, size)
        meta_path = path / "meta.json"
        try:
            meta = json.loads(meta_path.read_text())
            ids = json.loads((path / "cases.json").read_text())
            images = np.load(path / "images.npy")
            masks = np.load(path / "masks.npy")
        except FileNotFoundError as exc:
            raise DataError(
                f"{path}: prepared data is incomplete ({exc.filename} missing). "
                f"Prepare it again with: genseg-bench data prepare {source} --from PATH --overwrite"
            ) from exc
        except (ValueError, json.JSONDecodeError, OSError) as exc:
            raise DataError(
                f"{path}: prepared data is unreadable ({exc}). "
                f"Prepare it again with: genseg-bench data prepare {source} --from PATH --overwrite"
            ) from exc
        if meta.get("store_version") != STORE_VERSION:
            raise DataError(
                f"{meta_path}: store version {meta.get('store_version')} is not {STORE_VERSION}; "
                "prepare the data set again with --overwrite."
            )
        if len(ids) != len(images) or len(ids) != len(masks):
            raise DataError(
                f"{path}: {len(ids)} case ids but {len(images)} images / {len(masks)} masks; "
                "prepare it again with --overwrite."
            )
        return PreparedSet(source, size, images, masks, ids, meta["fingerprint"], path, meta)


MASK_VALUES_LISTED = 20
"""Files listed in ``mask_values.top``; the totals count every file."""


def _mask_values(reader: object, raw_root: Path | None) -> dict[str, Any] | None:
    """The reader's stray-value summary, or None when it binarised no grey mask (label maps)."""
    if not isinstance(reader, CaseReader) or reader.report.files_checked == 0:
        return None
    root = Path(raw_root).expanduser() if raw_root else None
    return reader.report.summary(root, limit=MASK_VALUES_LISTED)


def _to_channels(img: np.ndarray, channels: int) -> np.ndarray:
    if channels == 3 and img.shape[-1] == 1:
        return np.repeat(img, 3, axis=-1)
    if channels == 1 and img.shape[-1] == 3:
        grey = img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return grey.round().clip(0, 255).astype(np.uint8)[..., None]
    return img


def to_tensors(
    prepared: PreparedSet, idx: np.ndarray, size: int, channels: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``N x C x H x W`` float in [0, 1] and masks ``N x 1 x H x W`` 0/1 at ``size``, on ``device``.

    Converts channels where a task mixes grey and colour sets, and resizes when a
    profile runs at a smaller size than the store's.
    """
    import torch
    import torch.nn.functional as F

    imgs = prepared.images[idx]
    msks = prepared.masks[idx]
    if prepared.dims == 2:
        if imgs.shape[-1] != channels:
            imgs = _to_channels(imgs, channels)
        x = torch.from_numpy(np.ascontiguousarray(imgs)).permute(0, 3, 1, 2).float() / 255.0
        m = torch.from_numpy(np.ascontiguousarray(msks))[:, None].float()
        if size != prepared.size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            m = (
                F.interpolate(m, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
                >= 0.5
            ).float()
    else:
        x = torch.from_numpy(np.ascontiguousarray(imgs))[:, None].float()
        m = torch.from_numpy(np.ascontiguousarray(msks))[:, None].float()
        if size != prepared.size:
            x = F.interpolate(x, size=(size,) * 3, mode="trilinear", align_corners=False)
            m = (F.interpolate(m, size=(size,) * 3, mode="trilinear", align_corners=False) >= 0.5).float()
    return x.to(device), m.to(device)
