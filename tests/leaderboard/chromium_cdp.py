"""Drive Debian's headless chromium over the DevTools protocol, with the standard library only.

``--remote-debugging-pipe`` makes chromium read protocol commands from file
descriptor 3 and write replies and events to descriptor 4, each message a JSON
object ended by a NUL byte; no websocket client and no browser download is
needed. Enough of the protocol for the leaderboard tests: open a page, run
JavaScript in it (and wait for a condition), type text, take a screenshot.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any


class CdpError(RuntimeError):
    """A DevTools command failed, chromium exited, or a wait timed out."""


def _high(fd: int) -> int:
    """``fd`` moved to a number >= 10, so that putting the pipes on 3 and 4 in the child clobbers neither."""
    new = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return new


class Chromium:
    """One headless chromium with one page, driven over its debugging pipe."""

    def __init__(self, binary: str, profile_dir: Path, width: int = 1400, height: int = 1800) -> None:
        cmd_r, cmd_w = (_high(fd) for fd in os.pipe())
        res_r, res_w = (_high(fd) for fd in os.pipe())

        def child_fds() -> None:  # runs in the child before exec: the pipes become fds 3 and 4
            os.dup2(cmd_r, 3)
            os.dup2(res_w, 4)

        args = [
            binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--hide-scrollbars", "--remote-debugging-pipe",
            f"--user-data-dir={profile_dir}", f"--window-size={width},{height}", "about:blank",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            args,
            pass_fds=(3, 4),
            preexec_fn=child_fds,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(cmd_r)
        os.close(res_w)
        self._w = os.fdopen(cmd_w, "wb", buffering=0)
        self._r = os.fdopen(res_r, "rb", buffering=0)
        self._buf = b""
        self._id = 0
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call(
            "Emulation.setDeviceMetricsOverride",
            session=True,
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def _read_message(self) -> dict[str, Any]:
        while b"\0" not in self._buf:
            chunk = self._r.read(65536)
            if not chunk:
                raise CdpError("chromium closed its debugging pipe (did it crash?)")
            self._buf += chunk
        raw, _, self._buf = self._buf.partition(b"\0")
        return json.loads(raw)

    def call(self, method: str, session: bool = False, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its reply (events in between are dropped)."""
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        self._w.write(json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read_message()
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise CdpError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def goto(self, url: str) -> None:
        self.call("Page.navigate", session=True, url=url)

    def js(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises are awaited)."""
        res = self.call(
            "Runtime.evaluate", session=True, expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in res:
            raise CdpError(f"{expression[:80]}...: {res['exceptionDetails'].get('text')}")
        return res.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 60.0, interval: float = 0.25) -> Any:
        """Poll until the expression is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = self.js(expression)
            except CdpError:
                last = None
            if last:
                return last
            time.sleep(interval)
        raise CdpError(f"timed out after {timeout:.0f} s waiting for: {expression}")

    def type_into(self, selector: str, text: str) -> None:
        """Focus an element, select what it holds and type ``text`` over it, as a person would."""
        self.js(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.focus(); e.select(); }})()"
        )
        self.call("Input.insertText", session=True, text=text)

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", session=True, format="png")["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)

    def close(self) -> None:
        with contextlib.suppress(CdpError, OSError):  # chromium may already be gone
            self.call("Browser.close")
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._w.close()
        self._r.close()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
