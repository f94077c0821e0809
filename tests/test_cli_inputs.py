"""Input a newcomer typed that was accepted silently: each is now one error naming the option and the fix."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from genseg_bench.cli import app


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
