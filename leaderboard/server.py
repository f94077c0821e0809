"""The leaderboard's HTTP server: the standard library's threading server, no web framework.

Routes: ``/`` the page (filters in the query string), ``/data.json`` the ranked
tables as JSON, ``/healthz`` for the Space's health check. Serving needs no
network beyond the port it listens on; a Hub source is fetched when the server
starts (and refreshed, see :class:`~.data.DataSource`).
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .board import backbones_of, task_tables
from .data import DataSource
from .render import Filters, render_page


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and obj != obj:  # NaN
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_safe(v) for v in obj]
    return obj


def data_json(source: DataSource) -> str:
    """Every ranked table as JSON (for scripts; the page shows the same numbers)."""
    snap = source.get()
    bb = backbones_of(snap.results)
    out = []
    for tid in sorted({r.spec.task for r in snap.results}):
        if tid not in snap.tasks:
            continue
        for t in task_tables(snap.tasks[tid], snap.results, bb):
            out.append(
                {
                    "task": tid,
                    "test_set": t.test_set,
                    "train_size": t.train_size,
                    "rows": [
                        {
                            "rank": r.rank,
                            "backbone": r.backbone,
                            "p_next": r.p_next,
                            "p_next_holm": r.p_next_holm,
                            "next_method": r.next_method,
                            **asdict(r.row),
                        }
                        for r in t.rows
                    ],
                }
            )
    return json.dumps(_json_safe(out), indent=1, allow_nan=False)


def make_handler(source: DataSource) -> type[BaseHTTPRequestHandler]:
    svg_cache: dict[tuple[str, ...], str] = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        server_version = "genseg-bench-leaderboard"

        def _send(self, status: int, body: str, ctype: str) -> None:
            data = body.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", f"{ctype}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
            url = urlsplit(self.path)
            try:
                if url.path == "/":
                    with lock:  # matplotlib's pyplot is not thread-safe
                        page = render_page(source.get(), Filters.from_query(parse_qs(url.query)), svg_cache)
                    self._send(HTTPStatus.OK, page, "text/html")
                elif url.path == "/data.json":
                    self._send(HTTPStatus.OK, data_json(source), "application/json")
                elif url.path == "/healthz":
                    self._send(HTTPStatus.OK, "ok", "text/plain")
                else:
                    self._send(HTTPStatus.NOT_FOUND, "not found", "text/plain")
            except Exception as exc:  # one bad request must not stop the server
                self._send(
                    HTTPStatus.INTERNAL_SERVER_ERROR, f"error: {type(exc).__name__}: {exc}", "text/plain"
                )

        def log_message(self, format: str, *args: Any) -> None:  # quiet by default
            return None

    return Handler


def make_server(source: DataSource, host: str = "127.0.0.1", port: int = 7860) -> ThreadingHTTPServer:
    """A server bound to ``host:port`` (port 0 picks a free one: ``server.server_address[1]``)."""
    server = ThreadingHTTPServer((host, port), make_handler(source))
    server.daemon_threads = True
    return server


def serve_until_interrupted(server: ThreadingHTTPServer) -> None:
    """Serve until Ctrl-C, then release the port (the CLI and the Space entry point share this)."""
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
