"""The verdict per paper claim: one rule, computed from result files, Holm over the table's claims."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from genseg_bench import report as rep
from genseg_bench.catalog import Catalog
from genseg_bench.errors import SpecError
from genseg_bench.profiles import PROFILES
from genseg_bench.reproduction import build
from genseg_bench.results import write_result
from genseg_bench.specs import ClaimSpec, RunResult, RunSpec, TaskSpec, TestSetResult
from genseg_bench.verdicts import MIN_SEEDS, evaluate, verdict, verdict_table

CPU = PROFILES["cpu"]


def _run(
    task: TaskSpec, method: str, seed: int, scores: dict[str, float], n: int = 40, profile: dict | None = None
) -> RunResult:
    spec = RunSpec(
        task=task.id,
        method=method,
        train_size=n,
        seed=seed,
        profile="cpu",
        task_hash="t",
        method_hash=method,
        profile_hash="p",
        data_fingerprints={"x": "f"},
    )
    sets = {
        k: TestSetResult(case_ids=["a"], dice=[v], jaccard=[v], mean_dice=v, mean_jaccard=v)
        for k, v in scores.items()
    }
    return RunResult(
        run_id=spec.run_id,
        spec=spec,
        status="ok",
        metric=task.metric,
        test_sets=sets,
        iterations=CPU.iterations,
        profile=profile if profile is not None else CPU.model_dump(),
    )


def _claim(task: TaskSpec, **over: object) -> ClaimSpec:
    base: dict[str, object] = {
        "id": "c",
        "claim": "GenSeg helps",
        "figure": "Fig. 2a",
        "paper": "+0.10",
        "paper_value": 0.10,
        "task": task.id,
        "method": "genseg-unet",
        "baseline": "unet",
        "test_set": task.test_sets[0].name,
        "train_size": 40,
    }
    return ClaimSpec.model_validate({**base, **over})


def _test(diff: float, n: int, p: float | None, p_holm: float | None) -> rep.PairedTest:
    return rep.PairedTest("genseg-unet", "unet", 40, "t", 0.5 + diff, 0.5, diff, n, 1.0, p, p_holm=p_holm)


@pytest.fixture
def task() -> TaskSpec:
    return Catalog.load().task("synthetic-ood")


def test_the_verdict_rule() -> None:
    assert verdict(None, 1.0, "no genseg-unet run")[0] == "not testable here"
    v, why = verdict(_test(0.2, 1, None, None), 1.0)
    assert v == "not testable here" and "one seed" in why
    v, why = verdict(_test(0.2, 2, 0.01, 0.01), 1.0)
    assert v == "not testable here" and f"needs {MIN_SEEDS}" in why
    v, why = verdict(_test(0.05, 3, 0.01, 0.2), 1.0)  # significant raw, not after Holm
    assert v == "not confirmed" and "no significant difference" in why
    assert verdict(_test(0.05, 3, 0.001, 0.004), 1.0)[0] == "confirmed"
    v, why = verdict(_test(-0.05, 3, 0.001, 0.004), 1.0)
    assert v == "not confirmed" and "opposite direction" in why


def test_claims_read_the_result_files_under_the_profile_as_it_is_now(task: TaskSpec) -> None:
    a = task.test_sets[0].name
    runs: list[RunResult] = []
    for seed, (g, u, s) in enumerate([(0.80, 0.60, 0.79), (0.82, 0.61, 0.83), (0.81, 0.62, 0.80)]):
        runs += [
            _run(task, "genseg-unet", seed, {a: g}),
            _run(task, "unet", seed, {a: u}),
            _run(task, "separate-unet", seed, {a: s}),
        ]
    old = {**CPU.model_dump(), "seg_optimizer": "rmsprop", "seg_lr": 3e-4}
    runs += [_run(task, "unet-combine", seed, {a: 0.1}, profile=old) for seed in range(3)]
    claims = [
        _claim(task, id="gain"),
        _claim(task, id="separate", baseline="separate-unet"),
        _claim(task, id="old-only", baseline="unet-combine"),
    ]
    out = evaluate(claims, {task.id: task}, {task.id: runs}, PROFILES)
    gain, separate, old_only = out
    assert gain.verdict == "confirmed" and gain.test is not None
    assert gain.test.mean_diff == pytest.approx(0.20) and gain.test.n_pairs == 3
    assert gain.test.family_size == 2  # Holm over the claims with a test, not the page
    assert gain.test.p_holm == pytest.approx(min(1.0, 2 * gain.test.p_value), rel=1e-9) or (
        gain.test.p_holm == pytest.approx(gain.test.p_value)
    )
    assert "smaller than the paper" not in gain.why  # the interval reaches past +0.10
    assert separate.verdict == "not confirmed" and "no significant" in separate.why
    assert old_only.verdict == "not testable here" and "as it is now" in old_only.why
    table = "\n".join(verdict_table(out))
    assert "**confirmed**" in table and "**not testable here**" in table
    assert f"+0.200 {rep.ci_text(gain.test)} (0.810 vs 0.610, 3 seeds)" in table  # one pair of brackets


def test_a_confirmed_gain_far_below_the_papers_says_so(task: TaskSpec) -> None:
    a = task.test_sets[0].name
    runs = []
    for seed, d in enumerate([0.020, 0.021, 0.019, 0.020]):
        runs += [_run(task, "genseg-unet", seed, {a: 0.5 + d}), _run(task, "unet", seed, {a: 0.5})]
    (res,) = evaluate([_claim(task)], {task.id: task}, {task.id: runs}, PROFILES)
    assert res.verdict == "confirmed" and "smaller than the paper's +0.100" in res.why


def test_sample_efficiency_reads_the_baseline_sweep(task: TaskSpec) -> None:
    a = task.test_sets[0].name
    runs = []
    for seed in range(3):
        for n, score in [(10, 0.5), (20, 0.6), (40, 0.7), (80, 0.8)]:
            runs.append(_run(task, "unet", seed, {a: score}, n=n))
        runs.append(_run(task, "genseg-unet", seed, {a: 0.74 + 0.01 * seed}))  # mean 0.75
    claim = _claim(task, kind="efficiency", paper_value=8.0)
    (res,) = evaluate([claim], {task.id: task}, {task.id: runs}, PROFILES)
    assert res.factor == pytest.approx(math.exp(math.log(40) + 0.5 * math.log(2)) / 40)  # 56.6 labels / 40
    assert res.factor_bound == "=" and res.factor_range is not None
    assert res.factor_range[0] < res.factor < res.factor_range[1]
    assert res.verdict == "not confirmed" and "below the paper" in res.why
    # the method beyond the whole sweep: a lower bound on the factor
    runs = [r for r in runs if r.spec.method == "unet"]
    runs += [_run(task, "genseg-unet", s, {a: 0.9}) for s in range(3)]
    (res,) = evaluate([claim], {task.id: task}, {task.id: runs}, PROFILES)
    assert res.factor_bound == ">=" and res.factor == pytest.approx(2.0) and "≥ 2.0×" in res.measured_text()
    # no sweep: not testable
    runs = [r for r in runs if r.spec.train_size == 40]
    (res,) = evaluate([claim], {task.id: task}, {task.id: runs}, PROFILES)
    assert res.verdict == "not testable here" and "sweep" in res.why


def test_every_shipped_claim_names_a_known_comparison() -> None:
    claims = Catalog.load().claims
    assert {"in-domain-cvc-unet", "end-to-end-vs-separate", "out-of-domain", "sample-efficiency"} <= set(
        claims
    )


def test_a_claim_naming_an_unknown_method_is_an_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "t.toml").write_text(
        (Path(__file__).parents[1] / "tasks" / "synthetic.toml").read_text()
        + '\n[[claim]]\nid = "x"\nclaim = "c"\nfigure = "f"\npaper = "p"\ntask = "synthetic-ood"\n'
        'method = "genseg-unt"\nbaseline = "unet"\ntest_set = "synthetic-a"\ntrain_size = 40\n'
    )
    with pytest.raises(SpecError, match="genseg-unt") as err:
        Catalog.load(tasks_dir=tmp_path)
    assert "t.toml" in str(err.value) and "claim 'x'" in str(err.value)


def test_the_reproduction_page_opens_with_the_verdicts(task: TaskSpec, tmp_path: Path) -> None:
    a = task.test_sets[0].name
    results = tmp_path / "results"
    for seed in range(3):
        write_result(results, _run(task, "genseg-unet", seed, {a: 0.8 + 0.01 * seed}))
        write_result(results, _run(task, "unet", seed, {a: 0.6}))
    catalog = Catalog.load()
    claims = {"c": _claim(task)}
    catalog = Catalog(catalog.tasks, catalog.methods, catalog.suites, claims)
    doc = build(catalog, results, [task.id], ["unet", "genseg-unet"], "genseg-unet")
    assert doc.index("## Verdict per claim") < doc.index(f"## {task.id}")
    assert "**confirmed**" in doc
    assert "## Verdict per claim" not in build(
        catalog, results, [task.id], ["unet", "genseg-unet"], "genseg-unet", verdicts=False
    )
