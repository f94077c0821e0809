"""benchmarks/genseg_speed.py --memory: one end-to-end step's peak memory, printed in one line."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "genseg_speed.py"


@pytest.mark.usefixtures("one_thread")
def test_memory_mode_reports_the_peak_of_one_step(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location("genseg_speed_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    argv = [
        "x",
        "--memory",
        "--profile",
        "smoke",
        "--image-size",
        "32",
        "--batch-size",
        "2",
        "--threads",
        "1",
    ]
    monkeypatch.setattr(sys, "argv", argv)
    module.main()
    out = capsys.readouterr().out
    m = re.search(r"peak ([\d.]+) GB, before the step ([\d.]+) GB, the step's own (-?[\d.]+) GB", out)
    assert m is not None, out
    peak, before, own = (float(x) for x in m.groups())
    assert peak >= before > 0 and own == pytest.approx(peak - before, abs=0.011)
    assert "RATIO" not in out  # memory mode times nothing
