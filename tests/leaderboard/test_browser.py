"""The served leaderboard in a real headless browser (Debian's chromium): the table and a plot render right.

The app is served from real results (``lb_results``) on a free localhost port;
chromium loads it, runs the page's script (which records the laid-out size of
every plot) and dumps the DOM, or takes a screenshot. Numbers are compared with
``report.aggregate`` on the same results.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from genseg_bench import report as rep
from genseg_bench.catalog import Catalog
from genseg_bench.leaderboard_app.data import DataSource
from genseg_bench.leaderboard_app.server import make_server
from genseg_bench.results import iter_results

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (`apt-get install -y chromium`; .ci/run installs it when it can)",
)


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'chromium-profile'}", *args,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=True)


class Dom(HTMLParser):
    """The parts of the page the test reads: ranked rows per table, and the plot figures."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[tuple[str, str, int], list[dict[str, str]]] = {}
        self.figures: list[dict[str, str]] = []
        self.svg_in_figure = 0
        self._table: tuple[str, str, int] | None = None
        self._figure = False
        self._row: dict[str, str] | None = None
        self._cell: list[str] | None = None
        self.stats_note = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "table" and a.get("class") == "board":
            self._table = (a["data-task"], a["data-test-set"], int(a["data-train-size"]))
            self.tables[self._table] = []
        elif tag == "tr" and self._table and "data-method" in a:
            self._row = {**a, "cells": ""}
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag == "figure" and a.get("class") == "curve":
            self.figures.append(a)
            self._figure = True
        elif tag == "svg" and self._figure:
            self.svg_in_figure += 1
        elif a.get("id") == "stats-note":
            self.stats_note = True

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row["cells"] += "".join(self._cell).strip() + "|"
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "figure":
            self._figure = False


@pytest.fixture(scope="module")
def served(lb_results: Path) -> Iterator[str]:
    server = make_server(DataSource(results_dir=lb_results), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_table_and_plot_render_with_the_report_numbers(served: str, lb_results: Path, tmp_path: Path) -> None:
    dom = Dom()
    dom.feed(chromium(tmp_path, "--dump-dom", served).stdout)
    assert dom.stats_note

    task = Catalog.load().task("synthetic")
    results = list(iter_results(lb_results, "synthetic"))
    expected = {
        (r.method, r.train_size): r for r in rep.aggregate(task, results) if r.test_set == "synthetic-a"
    }

    rows = dom.tables[("synthetic", "synthetic-a", 16)]  # the task's headline size
    assert {r["data-method"] for r in rows} == {"unet", "toy-threshold"}
    means = [float(r["data-mean"]) for r in rows]
    assert means == sorted(means, reverse=True)  # ranked by mean
    for rank, r in enumerate(rows, start=1):
        agg = expected[(r["data-method"], 16)]
        assert float(r["data-mean"]) == pytest.approx(agg.mean, abs=1e-6)
        assert float(r["data-std"]) == pytest.approx(agg.std, abs=1e-6)
        cells = r["cells"].split("|")
        assert cells[0] == str(rank) and cells[1] == r["data-method"]
        assert cells[3] == f"{agg.mean:.3f} ± {agg.std:.3f}"
    assert rows[0]["cells"].split("|")[7] != ""  # the neighbour test is shown for rank 1

    fig = next(f for f in dom.figures if f["data-task"] == "synthetic")
    assert dom.svg_in_figure >= 1
    width, height = (int(x) for x in fig["data-rendered"].split("x"))  # laid out by the browser
    assert width > 200 and height > 100
    points = json.loads(fig["data-points"])
    for method, pts in points.items():
        for size, mean, std in pts:
            assert mean == pytest.approx(expected[(method, size)].mean, abs=1e-6)
            assert std == pytest.approx(expected[(method, size)].std, abs=1e-6)
    assert {p[0] for p in points["unet"]} == {8, 16}


def test_filters_in_the_url(served: str, tmp_path: Path) -> None:
    dom = Dom()
    dom.feed(chromium(tmp_path, "--dump-dom", served + "?task=synthetic&size=8&backbone=unet").stdout)
    assert list(dom.tables) == [("synthetic", "synthetic-a", 8)]
    assert [r["data-method"] for r in dom.tables[("synthetic", "synthetic-a", 8)]] == ["unet"]


def test_screenshot_is_a_rendered_page(served: str, tmp_path: Path) -> None:
    from PIL import Image

    shot = tmp_path / "shot.png"
    chromium(tmp_path, "--window-size=1200,1600", f"--screenshot={shot}", served + "?task=synthetic")
    img = Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")
    assert img.size == (1200, 1600)
    colours = img.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 50  # text, table rules, the plot's lines and bands: not a blank page
