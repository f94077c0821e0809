"""Per-run claims: two grids, or two workers of one grid, never train the same run.

A grid skips runs whose result file exists, but two grids started on one result
folder (two terminals, a Ray cluster and a Slurm array, a grid rerun while the
first still trains) would all see the same unfinished runs and train each of
them once per grid. Before a run trains, its worker takes a **claim**: the file
``<results>/<task>/<run_id>.claim`` next to the result, created with
``O_CREAT | O_EXCL`` (the kernel, or the file server, lets exactly one creator
win). It holds who owns it (a random owner token, the host, the pid) and a
heartbeat time that a daemon thread refreshes every ``heartbeat_s`` while the
run trains. The claim is removed when the run's result is written.

A claim is **stale**, and is taken over, when its owner cannot be running any
more: its host is this host and its pid is dead (a killed grid), or its heartbeat
is older than ``timeout_s`` (a dead node of a cluster, whose pid this host cannot
check). Taking over is atomic too: the stale file is removed only by whoever holds
``<run_id>.claim.takeover`` (also ``O_EXCL``) after re-reading it under that
guard, and then the ordinary ``O_EXCL`` create decides who owns the run, so two
workers that find the same stale claim never both win.

The name ends in ``.claim``, not ``.json``: readers of the result folder never see
a claim as a result. A claim file that cannot be parsed (its creator was killed
between creating and writing it) is judged by its modification time.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from genseg_bench.atomic import write_text_atomic

CLAIM_SUFFIX = ".claim"
DEFAULT_HEARTBEAT_S = 30.0
DEFAULT_TIMEOUT_S = 600.0
"""A claim whose heartbeat is 10 minutes old is stale: 20 missed heartbeats, far beyond a loaded machine's
hiccup, and short enough that a dead cluster node's runs are picked up by the next grid."""
_TAKEOVER_GUARD_S = 60.0
"""A takeover guard is held for milliseconds; one this old belongs to a taker that died holding it."""


def claim_path(result_file: Path) -> Path:
    """The claim of the run whose result is ``result_file`` (``<run_id>.json`` -> ``<run_id>.claim``)."""
    return Path(result_file).with_suffix(CLAIM_SUFFIX)


@dataclass(frozen=True)
class ClaimInfo:
    """What a claim file says about its owner."""

    owner: str
    host: str
    pid: int
    started: float
    heartbeat: float

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def parse(cls, text: str) -> ClaimInfo | None:
        try:
            data: dict[str, Any] = json.loads(text)
            return cls(
                owner=str(data["owner"]),
                host=str(data["host"]),
                pid=int(data["pid"]),
                started=float(data["started"]),
                heartbeat=float(data["heartbeat"]),
            )
        except (ValueError, KeyError, TypeError):
            return None

    def describe(self) -> str:
        age = time.time() - self.heartbeat
        return f"pid {self.pid} on {self.host}, heartbeat {age:.0f}s ago"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def read_claim(path: Path) -> tuple[ClaimInfo | None, float] | None:
    """(parsed claim or None if unparsable, mtime) of ``path``; None when there is no claim."""
    try:
        mtime = os.stat(path).st_mtime
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return ClaimInfo.parse(text), mtime


def is_stale(info: ClaimInfo | None, mtime: float, timeout_s: float, now: float | None = None) -> bool:
    """Whether a claim's owner cannot be running any more (module docstring)."""
    now = time.time() if now is None else now
    if info is None:  # created but never written: its creator died in between, or is writing right now
        return now - mtime > timeout_s
    if info.host == socket.gethostname() and not _pid_alive(info.pid):
        return True
    return now - max(info.heartbeat, mtime) > timeout_s


class Claim:
    """One run's claim, held by this process; :meth:`acquire` takes it, :meth:`release` gives it back.

    Used as a context manager after a successful :meth:`acquire`, it runs the heartbeat
    thread and releases the claim on exit (also when the run raises or is interrupted).
    """

    def __init__(
        self,
        path: Path,
        heartbeat_s: float = DEFAULT_HEARTBEAT_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.path = Path(path)
        self.heartbeat_s = heartbeat_s
        self.timeout_s = timeout_s
        self.owner = secrets.token_hex(8)
        self.held = False
        self.lost = False
        """Set by the heartbeat when the file no longer names this owner (taken over while this process
        was stopped for longer than the timeout); the run still finishes and writes its result."""
        self.holder: ClaimInfo | None = None
        """Who holds the claim when :meth:`acquire` returned False (None: unknown or unparsable)."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = time.time()

    def _info(self) -> ClaimInfo:
        return ClaimInfo(self.owner, socket.gethostname(), os.getpid(), self._started, time.time())

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(self._info().to_json())
            fh.flush()
            os.fsync(fh.fileno())
        return True

    def _remove_if_stale(self) -> None:
        """Under the takeover guard, re-read the claim and remove it if it is (still) stale."""
        guard = self.path.with_name(self.path.name + ".takeover")
        try:
            fd = os.open(guard, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            with contextlib.suppress(FileNotFoundError):
                if time.time() - os.stat(guard).st_mtime > _TAKEOVER_GUARD_S:
                    guard.unlink()  # its taker died holding it
            return
        os.close(fd)
        try:
            now = read_claim(self.path)
            if now is not None and is_stale(now[0], now[1], self.timeout_s):
                self.path.unlink(missing_ok=True)
        finally:
            guard.unlink(missing_ok=True)

    def acquire(self) -> bool:
        """Take the claim: True if this process now owns the run, False if a live owner holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            if self._create():
                self.held = True
                return True
            seen = read_claim(self.path)
            if seen is None:
                continue  # released between our create and our read: try again
            info, mtime = seen
            if not is_stale(info, mtime, self.timeout_s):
                self.holder = info
                return False
            self._remove_if_stale()
        seen = read_claim(self.path)
        self.holder = seen[0] if seen else None
        return False

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            seen = read_claim(self.path)
            if seen is None or seen[0] is None or seen[0].owner != self.owner:
                self.lost = True
                return
            with contextlib.suppress(OSError):  # a full disk or a flaky mount: try again next beat
                write_text_atomic(self.path, self._info().to_json())

    def __enter__(self) -> Claim:
        if not self.held:
            raise RuntimeError(f"{self.path}: claim not acquired")
        self._thread = threading.Thread(
            target=self._beat, name=f"claim-heartbeat {self.path.stem}", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def release(self) -> None:
        """Stop the heartbeat and remove the claim if it still names this owner."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if not self.held:
            return
        self.held = False
        seen = read_claim(self.path)
        if seen is not None and seen[0] is not None and seen[0].owner == self.owner:
            self.path.unlink(missing_ok=True)
