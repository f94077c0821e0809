"""Hugging Face Hub: push and pull prepared data sets (a lab prepares once, every machine pulls).

A prepared set travels as its store folder (``<source>/<size>/`` with the
``.npy`` arrays and ``meta.json``) so a pull reproduces the exact fingerprint,
plus a parquet view written with ``datasets`` (``<source>/<size>/viewer.parquet``)
so people can browse cases on the Hub. Pulls download into a temporary folder,
check the fingerprint and only then move the set into the store: an offline or
interrupted pull leaves nothing half-written. Offline, or without a token for a
push, the error says so and what to do.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from genseg_bench.data.store import PreparedSet, Store, fingerprint_arrays
from genseg_bench.errors import HubError


def _token(token: str | None) -> str:
    from huggingface_hub import get_token

    tok = token or get_token()
    if not tok:
        raise HubError(
            "no Hugging Face token found. Run `hf auth login` (or `huggingface-cli login`), set HF_TOKEN, "
            "or pass --token. Nothing was pushed."
        )
    return tok


def _hub_error(action: str, repo: str, exc: Exception) -> HubError:
    return HubError(
        f"{action} {repo!r} failed: {type(exc).__name__}: {exc}. Check the network connection (the Hub "
        "is needed for this command only), the repository name and your access rights. "
        "Nothing was changed locally."
    )


def write_viewer_parquet(prepared: PreparedSet, path: Path) -> None:
    """A browsable parquet table of a 2D set (case id, image, mask as PNG) made with ``datasets``."""
    import datasets
    from PIL import Image

    if prepared.dims != 2:
        return
    imgs = [Image.fromarray(im.squeeze(-1) if im.shape[-1] == 1 else im) for im in prepared.images]
    msks = [Image.fromarray(m * 255) for m in prepared.masks]
    features = datasets.Features(
        {"case_id": datasets.Value("string"), "image": datasets.Image(), "mask": datasets.Image()}
    )
    ds = datasets.Dataset.from_dict(
        {"case_id": prepared.case_ids, "image": imgs, "mask": msks}, features=features
    )
    ds.to_parquet(str(path))


def push_prepared(
    store: Store, source: str, size: int, repo: str, token: str | None = None, private: bool = False
) -> str:
    """Upload one prepared set to a dataset repo in one commit; returns the commit URL."""
    from huggingface_hub import HfApi

    prepared = store.load(source, size)
    tok = _token(token)
    api = HfApi(token=tok)
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp) / source / str(size)
        shutil.copytree(prepared.path, staging, ignore=shutil.ignore_patterns("splits", ".*"))
        write_viewer_parquet(prepared, staging / "viewer.parquet")
        try:
            api.create_repo(repo, repo_type="dataset", exist_ok=True, private=private)
            info = api.upload_folder(
                repo_id=repo,
                repo_type="dataset",
                folder_path=tmp,
                commit_message=f"genseg-bench: prepared {source} at {size}px (fingerprint {prepared.fingerprint})",
            )
        except Exception as exc:  # huggingface_hub raises many types (HTTP, connection, offline)
            raise _hub_error("pushing to", repo, exc) from exc
    return str(getattr(info, "commit_url", info))


def pull_prepared(
    store: Store, source: str, size: int, repo: str, token: str | None = None, revision: str | None = None
) -> PreparedSet:
    """Download one prepared set into the store, verifying its fingerprint before it lands."""
    from huggingface_hub import snapshot_download

    target = store.path(source, size)
    # the temporary folder lives in the store root (same file system, so the final move is atomic);
    # the set's own folder is only created once the download is complete and verified
    store.root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=store.root, prefix=".pull-") as tmp:
        try:
            snapshot_download(
                repo_id=repo,
                repo_type="dataset",
                revision=revision,
                local_dir=tmp,
                token=token,
                allow_patterns=[f"{source}/{size}/*"],
            )
        except Exception as exc:
            raise _hub_error("pulling from", repo, exc) from exc
        got = Path(tmp) / source / str(size)
        if not (got / "meta.json").is_file():
            raise HubError(
                f"{repo!r} has no prepared {source} at size {size} (no {source}/{size}/meta.json)."
            )
        (got / "viewer.parquet").unlink(missing_ok=True)
        pulled = Store(Path(tmp)).load(source, size)
        actual = fingerprint_arrays(np.asarray(pulled.images), np.asarray(pulled.masks), pulled.case_ids)
        if actual != pulled.fingerprint:
            raise HubError(
                f"{repo!r}: {source}/{size} fingerprint mismatch ({actual} != {pulled.fingerprint}); "
                "the upload is corrupt. Nothing was written."
            )
        del pulled
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        os.replace(got, target)
    return store.load(source, size)
