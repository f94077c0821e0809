"""Atomic writes through temporary files and folders that get the user's umask.

``tempfile.mkstemp`` and ``mkdtemp`` create 0600 and 0700 entries: they are
meant to stay private. Renamed into place, a result file or a prepared set made
that way would be unreadable to the user's group, unlike every other file the
user creates. These helpers create the temporary entry with ``os.open`` and
``os.mkdir`` and the default modes (0666, 0777), which the kernel masks with the
umask, as for any file the user makes.

Temporary names start with ``.`` and end in ``.tmp``, so a reader that lists
``*.json`` or skips hidden names never sees a half-written file of a writer
running at the same time.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

TEMP_SUFFIX = ".tmp"
_ATTEMPTS = 100


def is_temporary(path: Path) -> bool:
    """True for the temporary entries of this module (and any other hidden name)."""
    return Path(path).name.startswith(".")


def _temp_path(parent: Path, stem: str) -> Path:
    return Path(parent) / f".{stem}.{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}"


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary sibling and ``os.replace``, synced to disk.

    A killed process leaves at most a hidden ``.tmp`` file, never a truncated ``path``.
    """
    path = Path(path)
    for _ in range(_ATTEMPTS):
        tmp = _temp_path(path.parent, path.name)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        break
    else:  # pragma: no cover - 100 random names taken
        raise FileExistsError(f"{path.parent}: no free temporary name for {path.name}")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def make_temp_dir(parent: Path, stem: str) -> Path:
    """A new hidden folder in ``parent`` (same file system, so renaming it into place is atomic)."""
    for _ in range(_ATTEMPTS):
        tmp = _temp_path(parent, stem)
        try:
            os.mkdir(tmp, 0o777)
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"{parent}: no free temporary folder name for {stem}")  # pragma: no cover
