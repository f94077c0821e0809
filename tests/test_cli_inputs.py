"""Input a newcomer typed that was accepted silently: each is now one error naming the option and the fix."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genseg_bench.cli import app
from genseg_bench.methods.base import FitContext


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["tasks", "--family", "nope"], "unknown family 'nope'"),
        (["run", "--task", "synthetic", "--methods", ",", "--dry-run"], "--methods names nothing"),
        (["run", "--task", "synthetic", "--sizes", "2.5", "--dry-run"], "e.g. --sizes 1,2,4"),
        (["run", "--task", "synthetic", "--seeds", "x", "--dry-run"], "e.g. --seeds 0,1,2"),
    ],
)
def test_bad_input_is_one_error_with_the_fix(args: list[str], expected: str) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert expected in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_a_known_family_still_lists_its_tasks() -> None:
    result = CliRunner().invoke(app, ["tasks", "--family", "synthetic"])
    assert result.exit_code == 0 and "synthetic-ood" in result.output and "kvasir" not in result.output


def test_ctrl_c_says_what_finished_what_stopped_and_how_to_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second run is interrupted at its third iteration: exit 130 and three lines, nothing lost."""
    from genseg_bench.methods.supervised import SupervisedMethod

    fit = SupervisedMethod.fit
    calls = {"n": 0}

    def interrupted_fit(self: SupervisedMethod, train: object, val: object, ctx: FitContext) -> object:
        calls["n"] += 1
        if calls["n"] == 2:
            for it in (1, 2, 3):
                ctx.progress(it, 6, {})
            raise KeyboardInterrupt
        return fit(self, train, val, ctx)  # type: ignore[arg-type]

    monkeypatch.setattr(SupervisedMethod, "fit", interrupted_fit)
    args = ["run", "--task", "synthetic", "--methods", "unet", "--seeds", "0,1", "--profile", "smoke",
            "--results", str(tmp_path / "r"), "--store", str(tmp_path / "s"), "--threads", "1", "--no-report"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["genseg-bench", *args])
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 130, result.output
    out = " ".join(result.output.split())
    assert "interrupted: 1 run(s) finished in this grid (1 ok)" in out
    assert "seed=1 stopped at iteration 3 of 6" in out
    assert "resume (finished runs are skipped): genseg-bench run --task synthetic" in out
    assert len(list((tmp_path / "r" / "synthetic").glob("*.json"))) == 1  # the finished run is kept
