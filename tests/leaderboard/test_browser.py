"""The Gradio leaderboard in a real headless browser (Debian's chromium), driven as a person would.

The app serves a result folder of hand-made runs (three methods of two
backbones and kinds, two tasks, three sizes, three seeds: exact numbers, no
training) on a free localhost port. Chromium, driven over its DevTools pipe
(``chromium_cdp``), picks filters in the dropdowns and types in the search box;
the test reads the rows the browser shows and checks them against
``report.aggregate`` on the same result files, downloads the CSV, opens the
curves tab and takes a screenshot.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chromium_cdp import Chromium

from genseg_bench import report as rep
from genseg_bench.catalog import Catalog
from genseg_bench.results import iter_results

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (`apt-get install -y chromium`; .ci/run installs it when it can)",
)

# the page has loaded and no event is running any more
IDLE = (
    "document.querySelector('#row-count') && document.querySelector('#row-count').innerText.includes(' of ')"
    " && !document.querySelector('.progress-text') && !document.querySelector('.wrap.pending')"
)
ROWS = """Array.from(document.querySelectorAll('#board [role=row][aria-rowindex]'))
  .filter(r => r.getAttribute('aria-rowindex') !== '1')
  .map(r => Array.from(r.querySelectorAll('[role=gridcell]')).map(c => c.innerText.trim()))"""
HEADERS = "Array.from(document.querySelectorAll('#board thead th')).map(th => th.getAttribute('title'))"
COUNT = "document.querySelector('#row-count').innerText"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


METHODS = {"unet": (0.60, "unet", "supervised"), "deeplab": (0.55, "deeplabv3plus", "supervised"),
           "genseg-unet": (0.70, "unet", "genseg")}  # fmt: skip


@pytest.fixture(scope="module")
def board_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A result folder: METHODS on synthetic and synthetic-ood at sizes 8, 16, 32, seeds 0-2."""
    from conftest import make_result_fn

    from genseg_bench.results import write_result

    folder = tmp_path_factory.mktemp("board-results")
    for task, sets in (("synthetic", ["synthetic-a"]), ("synthetic-ood", ["synthetic-a", "synthetic-b"])):
        for m, (level, backbone, kind) in METHODS.items():
            for n in (8, 16, 32):
                for s in range(3):
                    scores = {
                        ts: [level + n / 400 + ((s * 7 + i) % 5) / 100 for i in range(4)] for ts in sets
                    }
                    r = make_result_fn(task, m, n, s, scores, backbone=backbone, kind=kind)
                    write_result(folder, r)
    return folder


@pytest.fixture(scope="module")
def served(board_results: Path) -> Iterator[str]:
    pytest.importorskip("gradio")
    from genseg_bench.leaderboard_app.data import DataSource
    from genseg_bench.leaderboard_app.ui import launch

    port = free_port()
    demo = launch(DataSource(results_dir=board_results), "127.0.0.1", port, block=False, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def rows_shown(c: Chromium) -> list[dict[str, str]]:
    headers = c.js(HEADERS)
    return [dict(zip(headers, cells, strict=True)) for cells in c.js(ROWS)]


def shows(c: Chromium, n: int, of: int, timeout: float = 120) -> None:
    """Wait until the page says it shows ``n`` of ``of`` rows, shows as many, and is idle.

    The count and the table are two outputs of one event; waiting for the
    expected count (not just a change) skips any intermediate state.
    """
    c.wait_for(f"{IDLE} && {COUNT} === {json.dumps(f'{n} of {of} rows.')}", timeout)
    c.wait_for(f"({ROWS}).length === {n}", timeout)


def choose(c: Chromium, elem_id: str, value: str) -> None:
    """Pick one value in a gradio dropdown: type it, then Enter selects the match."""
    c.type_into(f"#{elem_id} input", value)
    c.wait_for(
        f"Array.from(document.querySelectorAll('ul[role=listbox] li')).some(li => li.innerText.trim() === {json.dumps(value)})",
        30,
    )
    for kind in ("keyDown", "keyUp"):
        c.call(
            "Input.dispatchKeyEvent",
            session=True,
            type=kind,
            key="Enter",
            code="Enter",
            windowsVirtualKeyCode=13,
        )


def test_filters_search_csv_and_curves_in_the_browser(
    served: str, board_results: Path, tmp_path: Path
) -> None:
    task = Catalog.load().task("synthetic")
    agg = {
        (r.method, r.train_size): r
        for r in rep.aggregate(task, list(iter_results(board_results, "synthetic")))
    }

    with Chromium(str(CHROMIUM), tmp_path / "profile") as c:
        c.goto(served)
        c.wait_for(IDLE, 180)
        count_all = c.js(COUNT)
        n_all = int(count_all.split()[0])
        assert count_all == f"{n_all} of {n_all} rows." and n_all > 8

        choose(c, "f-task", "synthetic")  # a filter changes the rows: 3 methods x 3 sizes
        shows(c, 9, n_all)
        choose(c, "f-size", "16")
        shows(c, 3, n_all)
        rows = rows_shown(c)
        assert {(r["task"], r["n"]) for r in rows} == {("synthetic", "16")}
        assert {r["method"] for r in rows} == set(METHODS)
        assert {(r["method"], 16) for r in rows} <= set(agg), (rows, sorted(agg))
        ranked = sorted(rows, key=lambda r: int(r["rank"]))
        means = [agg[(r["method"], 16)].mean for r in ranked]
        assert means == sorted(means, reverse=True)  # ranked by the report's mean
        for r in rows:  # the table's numbers are report.aggregate's
            a = agg[(r["method"], 16)]
            assert r["score"] == f"{a.mean:.3f} ± {a.std:.3f}" and r["seeds"] == str(a.n_seeds)
            assert r["profile"] == a.profile == "quick" and r["backbone"] == METHODS[r["method"]][1]
        assert ranked[0]["vs next"].split()[0] in ("≻", "≈", "n/a")

        downloads = tmp_path / "downloads"
        downloads.mkdir()
        c.call("Browser.setDownloadBehavior", behavior="allow", downloadPath=str(downloads))
        c.js("document.querySelector('#download-csv').click()")  # as a person downloads it
        deadline = time.monotonic() + 60
        while not list(downloads.glob("*.csv")) and time.monotonic() < deadline:
            time.sleep(0.25)
        (saved,) = downloads.glob("*.csv")
        text = saved.read_text(encoding="utf-8")
        csv_rows = {(r["method"], int(r["n"])): r for r in csv.DictReader(io.StringIO(text))}
        assert set(csv_rows) == {(r["method"], 16) for r in rows}
        for key, r in csv_rows.items():  # full precision in the download
            assert float(r["mean"]) == pytest.approx(agg[key].mean, rel=1e-12)
            assert float(r["std"]) == pytest.approx(agg[key].std, rel=1e-12)

        # the search hides rows, ranks stay ("deeplab" names one method; "unet" would match two)
        c.type_into("#search textarea", "deeplab")
        shows(c, 1, n_all)
        (row,) = rows_shown(c)
        assert row["method"] == "deeplab" and row["rank"] == next(
            r["rank"] for r in rows if r["method"] == "deeplab"
        )

        c.js(
            "Array.from(document.querySelectorAll('button[role=tab]')).find(b => b.innerText.includes('Sample efficiency')).click()"
        )
        width = c.wait_for(
            "document.querySelector('#c-plot img') && document.querySelector('#c-plot img').naturalWidth", 120
        )
        assert width > 300  # the PNG rendered by the server and laid out by the browser
        assert (
            "data-efficiency factor" in c.js("document.querySelector('#c-caption').innerText").lower().lower()
        )
        assert c.js("document.querySelectorAll('#c-factors [role=row]').length") > 1
        shot = c.screenshot(tmp_path / "curves.png")

    from PIL import Image

    img = Image.open(shot)
    assert img.size == (1400, 1800)
    assert len(img.getcolors(maxcolors=1 << 20) or []) > 50  # text, rules, the plot: not a blank page


def test_a_link_with_filters_opens_the_filtered_board(served: str, tmp_path: Path) -> None:
    with Chromium(str(CHROMIUM), tmp_path / "profile") as c:
        c.goto(served + "?kind=genseg&columns=rank,method,backbone,score&task=synthetic-ood,nope")
        c.wait_for(f"{IDLE} && {COUNT}.startsWith('6 of')", 180)  # 2 test sets x 3 sizes of one method
        rows: list[dict[str, Any]] = rows_shown(c)
        assert {(r["rank"], r["method"], r["backbone"]) for r in rows} == {("1", "genseg-unet", "unet")}
        assert list(rows[0]) == ["rank", "method", "backbone", "score"]  # the column picker's choice
        assert c.js("document.querySelector('#f-task').innerText").count("synthetic-ood") == 1
