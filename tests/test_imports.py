"""`--help`, `tasks`, `report` and the leaderboard's board logic start without importing torch.

Torch takes seconds to import (most of `genseg-bench --help`'s time before this was
checked). Each check runs in a fresh interpreter, since this test process has torch
loaded already.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from genseg_bench.results import write_result
from genseg_bench.specs import RunResult, RunSpec, TestSetResult

CHILD = """
import json, sys
from typer.testing import CliRunner
from genseg_bench.cli import app

store, results = sys.argv[1], sys.argv[2]
runner = CliRunner()
for args in (["--help"], ["tasks", "--store", store], ["data", "list", "--store", store],
             ["report", "--task", "synthetic", "--results", results, "--format", "json"],
             ["leaderboard", "--help"], ["submit", "--help"]):
    res = runner.invoke(app, args)
    assert res.exit_code == 0, (args, res.output)
import genseg_bench.leaderboard_app.board, genseg_bench.leaderboard_app.data  # the board's logic
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision"))))
"""


def _result(seed: int) -> RunResult:
    spec = RunSpec(task="synthetic", method="unet", train_size=8, seed=seed, profile="smoke", task_hash="t",
                   method_hash="m", profile_hash="p", data_fingerprints={"synthetic-a": "f"})  # fmt: skip
    ts = TestSetResult(case_ids=["a"], dice=[0.5], jaccard=[0.3], mean_dice=0.5, mean_jaccard=0.3)
    return RunResult(run_id=spec.run_id, spec=spec, status="ok", metric="dice", test_sets={"synthetic-a": ts})


def test_cli_commands_that_read_do_not_import_torch(tmp_path: Path) -> None:
    for seed in (0, 1):
        write_result(tmp_path / "results", _result(seed))
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "store"), str(tmp_path / "results")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == [], f"torch was imported: {loaded[:5]}"


def test_importing_the_cli_does_not_import_torch() -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import genseg_bench.cli"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    modules = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line]
    assert "genseg_bench.cli" in modules
    assert not [m for m in modules if m.split(".")[0] == "torch"]
