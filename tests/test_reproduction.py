"""The reproduction document is built from result files alone: its numbers are the files' numbers."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from genseg_bench.catalog import Catalog
from genseg_bench.cli import app
from genseg_bench.reproduction import build
from genseg_bench.results import write_result
from genseg_bench.specs import RunResult, RunSpec, TaskSpec, TestSetResult


def _result(task: TaskSpec, method: str, seed: int, scores: dict[str, float], ok: bool = True) -> RunResult:
    spec = RunSpec(
        task=task.id,
        method=method,
        train_size=40,
        seed=seed,
        profile="cpu",
        task_hash="t",
        method_hash=method,
        profile_hash="p",
        data_fingerprints={"x": "f"},
    )
    sets = {
        n: TestSetResult(case_ids=["a"], dice=[v], jaccard=[v], mean_dice=v, mean_jaccard=v)
        for n, v in scores.items()
    }
    return RunResult(
        run_id=spec.run_id,
        spec=spec,
        status="ok" if ok else "failed",
        error=None if ok else "TrainingDiverged: GAN loss became nan at iteration 3",
        metric=task.metric,
        test_sets=sets if ok else {},
        train_cases=[f"t{i}" for i in range(32)],
        val_cases=[f"v{i}" for i in range(8)],
        wall_time_s=600.0,
        iterations=800,
        budget={"updates": 800, "images_seen": 6400 * (2 if method != "unet" else 1)},
        profile={"iterations": 800, "batch_size": 8, "image_size": 128, "eval_every": 50},
    )


def test_document_numbers_come_from_the_result_files(tmp_path: Path) -> None:
    catalog = Catalog.load()
    task = catalog.task("synthetic-ood")
    a, b = (t.name for t in task.test_sets)
    results = tmp_path / "results"
    for seed, (g, u) in enumerate([(0.80, 0.70), (0.82, 0.71), (0.81, 0.69)]):
        write_result(results, _result(task, "genseg-unet", seed, {a: g, b: g - 0.2}))
        write_result(results, _result(task, "unet", seed, {a: u, b: g - 0.2 + 0.01 * (seed - 1)}))
    write_result(results, _result(task, "unet-real-x2", 0, {}, ok=False))
    loops = [
        {
            "task": "synthetic-ood",
            "seed": 0,
            "n_train": 32,
            "n_val": 8,
            "budget_s": 600.0,
            "suite_iterations": 800,
            "loop_iterations": 900,
            "loop_test_in_domain": 0.65,
            "suite_scores": {a: 0.70, b: 0.5},
            f"loop_test_{b}": 0.4,
        },
        {  # the same suite run against the loop with the suite's optimizer: summarised on its own
            "task": "synthetic-ood",
            "seed": 0,
            "loop_optimizer": "rmsprop lr 0.0003",
            "suite_run": "abc123",
            "n_train": 32,
            "n_val": 8,
            "budget_s": 600.0,
            "suite_iterations": 800,
            "loop_iterations": 880,
            "loop_test_in_domain": 0.75,
            "suite_scores": {a: 0.70, b: 0.5},
        },
    ]
    doc = build(
        catalog, results, ["synthetic-ood"], ["unet", "unet-real-x2", "genseg-unet"], "genseg-unet", "", loops
    )
    assert "| genseg-unet | 40 (32+8) | 0,1,2 | 0.810 ± 0.010 |" in doc
    assert "| unet | 40 (32+8) | 0,1,2 | 0.700 ± 0.010 |" in doc
    assert "12,800" in doc and "6,400" in doc  # images seen, per method
    assert f"genseg-unet − unet on {a}: +0.110, significant at 0.05" in doc
    assert f"genseg-unet − unet on {b}: +0.000" in doc or f"genseg-unet − unet on {b}: -0.000" in doc
    assert "Failed: unet-real-x2 seed 0: `TrainingDiverged: GAN loss became nan at iteration 3`" in doc
    assert "| 0 |  | adam lr 0.001 | 32+8 | 600.0 | 800 | 900 | 0.700 | 0.650 | 0.500 | 0.400 |" in doc
    assert "| 0 | abc123 | rmsprop lr 0.0003 | 32+8 | 600.0 | 800 | 880 | 0.700 | 0.750 | - | - |" in doc
    assert "### synthetic-ood" in doc
    assert (
        "loop with adam lr 0.001: suite 0.700, independent loop 0.650 (1 run(s)); the suite's baseline is at least as good"
        in doc
    )
    assert (
        "loop with rmsprop lr 0.0003: suite 0.700, independent loop 0.750 (1 run(s)); the suite's baseline is below"
        in doc
    )


def test_cli_writes_the_document(tmp_path: Path) -> None:
    catalog = Catalog.load()
    task = catalog.task("synthetic-ood")
    results = tmp_path / "results"
    write_result(results, _result(task, "unet", 0, {t.name: 0.5 for t in task.test_sets}))
    loop = tmp_path / "loop.jsonl"
    loop.write_text("")
    out = tmp_path / "doc" / "reproduction.md"
    res = CliRunner().invoke(
        app,
        ["reproduction", "--results", str(results), "--tasks", "synthetic-ood", "--methods", "unet",
         "--independent", str(loop), "--out", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert text.startswith("# Measured reproduction") and "| unet | 40 (32+8) | 0 | 0.500 (1 seed)" in text
    res = CliRunner().invoke(
        app,
        ["reproduction", "--results", str(results), "--tasks", "synthetic-ood", "--methods", "unet",
         "--title", "Comparison methods", "--out", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert out.read_text().startswith("# Comparison methods\n")


def test_runs_of_two_profile_settings_are_two_labelled_rows_never_one(tmp_path: Path) -> None:
    """Runs recorded before the plateau rules and runs after them: one row each, tests within one only."""
    from genseg_bench.profiles import get_profile
    from genseg_bench.specs import Profile

    catalog = Catalog.load()
    task = catalog.task("synthetic-ood")
    a = task.test_sets[0].name
    now = get_profile("cpu").model_dump()
    before = {k: v for k, v in now.items() if k not in Profile.LEGACY}
    results = tmp_path / "results"
    for seed, v in enumerate([0.60, 0.62]):
        r = _result(task, "unet", seed, {a: v})
        spec = r.spec.model_copy(update={"profile_hash": "before"})  # its own run id, as a real old run
        write_result(results, r.model_copy(update={"profile": before, "spec": spec, "run_id": spec.run_id}))
    write_result(results, _result(task, "unet", 0, {a: 0.70}).model_copy(update={"profile": now}))
    write_result(results, _result(task, "genseg-unet", 0, {a: 0.75}).model_copy(update={"profile": now}))
    doc = build(catalog, results, ["synthetic-ood"], ["unet", "genseg-unet"], "genseg-unet", "", [])
    assert "| unet [profile A] | 40 (32+8) | 0 | 0.700 (1 seed) |" in doc
    assert "| unet [profile B] | 40 (32+8) | 0,1 | 0.610 ± 0.014 |" in doc
    assert "| genseg-unet [profile A] | 40 (32+8) | 0 | 0.750 (1 seed) |" in doc
    assert "**profile A** (profile cpu:" in doc and "lr floor 0.01 x start" in doc
    assert "**profile B** (profile cpu:" in doc and "no lr floor, stepped from the first validation)" in doc
    assert f"genseg-unet − unet on {a}: +0.050, 1 pair(s): too few seeds for a test. [profile A]" in doc
    assert "0.140" not in doc and "0.130" not in doc  # never paired with the old unet runs


def test_final_network_scores_sit_beside_the_selected_checkpoint(tmp_path: Path) -> None:
    """Runs that recorded their final network get a second table: selected / final per test set."""
    catalog = Catalog.load()
    task = catalog.task("synthetic-ood")
    a, b = (t.name for t in task.test_sets)
    results = tmp_path / "results"
    for seed, (sel, fin) in enumerate([(0.80, 0.60), (0.70, 0.64)]):
        final_network = {
            "iteration": 800,
            "selected_iteration": 300 + seed,
            "selected": False,
            "test_sets": {
                a: {"mean_dice": fin, "mean_jaccard": fin - 0.1, "dice": [fin], "jaccard": [fin - 0.1]},
                b: {"mean_dice": fin - 0.3, "mean_jaccard": 0.0, "dice": [fin - 0.3], "jaccard": [0.0]},
            },
        }
        r = _result(task, "genseg-unet", seed, {a: sel, b: sel - 0.3}).model_copy(
            update={"best_iteration": 300 + seed, "extras": {"final_network": final_network}}
        )
        write_result(results, r)
    write_result(results, _result(task, "unet", 0, {a: 0.5, b: 0.4}))  # no record: no row
    doc = build(catalog, results, ["synthetic-ood"], ["genseg-unet", "unet"], "genseg-unet")
    section = doc.split("### Selected checkpoint against the final network", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("| genseg-unet")]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[1] == "0,1"
    assert cells[2] == "300 of 800, 301 of 800"
    # dice (the task's metric): selected mean of 0.80 / 0.70, final mean of 0.60 / 0.64
    assert cells[3] == "0.750 ± 0.071 / 0.620 ± 0.028"
    assert cells[4] == "0.450 ± 0.071 / 0.320 ± 0.028"
    assert not any(line.startswith("| unet ") for line in section.splitlines())


def test_no_final_network_record_no_second_table(tmp_path: Path) -> None:
    catalog = Catalog.load()
    task = catalog.task("synthetic-ood")
    a, b = (t.name for t in task.test_sets)
    results = tmp_path / "results"
    write_result(results, _result(task, "unet", 0, {a: 0.5, b: 0.4}))
    doc = build(catalog, results, ["synthetic-ood"], ["unet"], "unet")
    assert "Selected checkpoint against the final network" not in doc
