"""The reproduction document is built from result files alone: its numbers are the files' numbers."""

from __future__ import annotations

import math
import statistics
from dataclasses import replace
from pathlib import Path

import pytest
from scipy import stats
from typer.testing import CliRunner

from genseg_bench import report as rep
from genseg_bench.catalog import Catalog
from genseg_bench.cli import app
from genseg_bench.reproduction import PAGE_SCOPE, _verdict, build
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
    assert f"genseg-unet − unet on {a}: +0.050, one seed: no test. [profile A]" in doc
    assert "0.140" not in doc and "0.130" not in doc  # never paired with the old unet runs
    assert (
        "none of its 1 pair(s) has a test" in doc
        and "no pair has a test: one seed, or identical differences" in doc
    )


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
    assert cells[1] == "40" and cells[2] == "0,1"
    assert cells[3] == "300 of 800, 301 of 800"
    # dice (the task's metric): selected mean of 0.80 / 0.70, final mean of 0.60 / 0.64
    assert cells[4] == "0.750 ± 0.071 / 0.620 ± 0.028"
    assert cells[5] == "0.450 ± 0.071 / 0.320 ± 0.028"
    assert not any(line.startswith("| unet ") for line in section.splitlines())


def test_no_final_network_record_no_second_table(tmp_path: Path) -> None:
    catalog = Catalog.load()
    task = catalog.task("synthetic-ood")
    a, b = (t.name for t in task.test_sets)
    results = tmp_path / "results"
    write_result(results, _result(task, "unet", 0, {a: 0.5, b: 0.4}))
    doc = build(catalog, results, ["synthetic-ood"], ["unet"], "unet")
    assert "Selected checkpoint against the final network" not in doc


def test_the_page_is_one_holm_family_and_its_verdicts_read_the_holm_p(tmp_path: Path) -> None:
    """Tests of every task on the page are adjusted together; raw p 0.040 is no longer significant."""
    catalog = Catalog.load()
    ood, plain = catalog.task("synthetic-ood"), catalog.task("synthetic")
    a, b = (t.name for t in ood.test_sets)
    results = tmp_path / "results"
    # synthetic-ood: raw p 0.040 on a; identical differences on b (no test); unet-real-x2 has one seed
    g_a, u_a = [0.736, 0.756, 0.776], [0.70, 0.70, 0.70]
    for seed in range(3):
        write_result(results, _result(ood, "genseg-unet", seed, {a: g_a[seed], b: 0.6}))
        write_result(results, _result(ood, "unet", seed, {a: u_a[seed], b: 0.5}))
    write_result(results, _result(ood, "unet-real-x2", 0, {a: 0.7, b: 0.5}))
    # synthetic: noise only, a large p
    g_s, u_s = [0.80, 0.70, 0.75], [0.75, 0.74, 0.74]
    for seed in range(3):
        write_result(results, _result(plain, "genseg-unet", seed, {"synthetic-a": g_s[seed]}))
        write_result(results, _result(plain, "unet", seed, {"synthetic-a": u_s[seed]}))
    doc = build(
        catalog,
        results,
        ["synthetic-ood", "synthetic"],
        ["unet", "unet-real-x2", "genseg-unet"],
        "genseg-unet",
    )

    p_ood = float(stats.ttest_rel(g_a, u_a).pvalue)
    p_plain = float(stats.ttest_rel(g_s, u_s).pvalue)
    assert p_ood == pytest.approx(0.040, abs=5e-4) and p_plain > 2 * p_ood
    holm_ood, holm_plain = 2 * p_ood, max(2 * p_ood, p_plain)  # m = 2: the other four pairs have no test
    assert f"Holm–Bonferroni adjustment over the family of {PAGE_SCOPE}, 2 test(s)" in doc
    d = [x - y for x, y in zip(g_a, u_a, strict=True)]
    half = 0.95 * math.sqrt(2 / (1 - 0.95**2)) * statistics.stdev(d) / math.sqrt(3)  # t(0.975, 2 df) * se
    ci = f"[{statistics.fmean(d) - half:+.3f}, {statistics.fmean(d) + half:+.3f}]"
    ood_part, plain_part = doc.split("\n## synthetic-ood\n", 1)[1].split("\n## synthetic\n", 1)
    assert f"| genseg-unet − unet | {a} | 3 | +0.056 | {ci} | {p_ood:.3f} | {holm_ood:.3f} |" in ood_part
    assert (
        f"| genseg-unet − unet | {b} | 3 | +0.100 | — | 3 seeds, identical differences: no test | — |"
        in ood_part
    )
    assert f"| genseg-unet − unet-real-x2 | {a} | 1 | +0.036 | — | one seed: no test | — |" in ood_part
    assert "| genseg-unet − unet | synthetic-a | 3 | +0.007 |" in plain_part
    assert (
        plain_part.split("| genseg-unet − unet | synthetic-a | 3 | +0.007 |")[1]
        .split("\n")[0]
        .endswith(f"| {p_plain:.3f} | {holm_plain:.3f} |")
    )
    # significant at the raw p, not after the page's correction: the verdict follows Holm
    assert (
        f"genseg-unet − unet on {a}: +0.056, not significant (p Holm = {holm_ood:.3f}, raw p = {p_ood:.3f}, 3 seeds)."
        in ood_part
    )
    assert f"genseg-unet − unet-real-x2 on {a}: +0.036, one seed: no test." in ood_part


def test_a_paper_claim_holds_only_on_the_holm_p() -> None:
    raw = rep.PairedTest("genseg-unet", "unet", 40, "kvasir", 0.8, 0.75, 0.05, 3, 5.0, 0.04)
    with pytest.raises(ValueError, match="holm_family"):
        _verdict(raw, 0.1)
    survives = _verdict(replace(raw, p_holm=0.045, family_size=1), 0.1)
    assert "significant at 0.05 after Holm (p Holm = 0.045, raw p = 0.040" in survives
    assert survives.endswith("the claim holds here.")
    fails = _verdict(replace(raw, p_holm=0.08, family_size=2), 0.1)
    assert "not significant (p Holm = 0.080, raw p = 0.040" in fails and fails.endswith("does not hold here.")
