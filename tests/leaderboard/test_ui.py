"""The Gradio layer's own logic: error handling, CSV files, table display (no server, no browser)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

gr = pytest.importorskip("gradio")

from genseg_bench.leaderboard_app import ui  # noqa: E402


def test_a_failing_handler_logs_its_traceback_and_shows_a_short_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @ui.logged
    def on_filter(x: int) -> int:
        return 10 // x

    assert on_filter(2) == 5
    with (
        caplog.at_level(logging.ERROR, logger="genseg_bench.leaderboard_app.ui"),
        pytest.raises(gr.Error) as err,
    ):
        on_filter(0)
    assert "ZeroDivisionError" in str(err.value)
    (record,) = caplog.records
    assert "on_filter failed" in record.getMessage() and record.exc_info is not None
    assert "10 // x" in caplog.text  # the traceback, with the failing line


def test_downloads_are_named_by_content_and_bounded(tmp_path: Path) -> None:
    d = ui.Downloads(tmp_path, keep=2)
    first = d.write("a,b\n1,2\n")
    assert d.write("a,b\n1,2\n") == first and first.read_text() == "a,b\n1,2\n"
    d.write("a\n1\n")
    d.write("a\n2\n")
    assert len(list(tmp_path.glob("*.csv"))) == 2 and not first.exists()


def test_display_rounds_for_reading_and_keeps_the_column_order() -> None:
    rows = [{c: None for c in ui.COLUMN_NAMES} | {"method": "m", "mean": 0.123456789, "p": 0.000123456}]
    frame = ui.display_frame(rows, ["p", "method", "mean"])
    assert list(frame.columns) == ["method", "mean", "p"]
    assert frame.iloc[0]["mean"] == 0.1235 and frame.iloc[0]["p"] == 0.000123
    assert list(ui.display_frame(rows, []).columns) == list(ui.DEFAULT_COLUMNS)
