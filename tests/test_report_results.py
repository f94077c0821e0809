"""Result files (atomic, schema-checked) and the report (mean ± std, paper numbers, paired t-test).

Results are built by hand here so the expected numbers are known exactly; the
runner tests cover results written by real training.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

from genseg_bench import report as rep
from genseg_bench.catalog import Catalog
from genseg_bench.errors import ResultFileError
from genseg_bench.results import iter_results, read_result, write_result
from genseg_bench.specs import SCHEMA_VERSION, RunResult, RunSpec, TaskSpec, TestSetResult


def make_result(
    task: TaskSpec, method: str, seed: int, n: int, scores: dict[str, float], ok: bool = True
) -> RunResult:
    spec = RunSpec(
        task=task.id,
        method=method,
        train_size=n,
        seed=seed,
        profile="quick",
        task_hash="t",
        method_hash=method,
        profile_hash="p",
        data_fingerprints={"x": "f"},
    )
    sets = {
        name: TestSetResult(
            case_ids=["a", "b"], dice=[v, v], jaccard=[v / (2 - v)] * 2, mean_dice=v, mean_jaccard=v / (2 - v)
        )
        for name, v in scores.items()
    }
    return RunResult(
        run_id=spec.run_id,
        spec=spec,
        status="ok" if ok else "failed",
        metric=task.metric,
        test_sets=sets if ok else {},
        error=None if ok else "boom",
    )


@pytest.fixture
def isic(catalog: Catalog) -> TaskSpec:
    return catalog.task("isic")


def test_aggregate_mean_std_over_seeds_and_paper_reference(catalog: Catalog) -> None:
    isic = catalog.task("isic-ood")
    ref = next(r for r in isic.references if r.kind == "score")
    ts = ref.test_set
    vals = [0.70, 0.74, 0.78]
    results = [make_result(isic, ref.method, s, ref.train_size, {ts: v}) for s, v in enumerate(vals)]
    results.append(make_result(isic, ref.method, 3, ref.train_size, {}, ok=False))
    rows = rep.aggregate(isic, results)
    row = next(r for r in rows if r.method == ref.method and r.test_set == ts)
    scored = [r.score(ts) for r in results[:3]]  # dice, or jaccard = d / (2 - d) on a Jaccard task
    assert row.mean == pytest.approx(statistics.fmean(scored)) and row.std == pytest.approx(
        statistics.stdev(scored)
    )
    assert row.n_seeds == 3 and row.failed == 1 and row.seeds == [0, 1, 2]
    assert row.paper == ref.value and row.delta == pytest.approx(row.mean - ref.value)


def test_paper_gain_is_compared_with_the_measured_gain(isic: TaskSpec) -> None:
    ref = next(r for r in isic.references if r.kind == "gain")
    assert ref.baseline
    results = [make_result(isic, ref.method, s, ref.train_size, {ref.test_set: 0.8}) for s in range(3)]
    results += [make_result(isic, ref.baseline, s, ref.train_size, {ref.test_set: 0.7}) for s in range(3)]
    row = next(
        r for r in rep.aggregate(isic, results) if r.method == ref.method and r.test_set == ref.test_set
    )
    gain = results[0].score(ref.test_set) - results[3].score(ref.test_set)
    assert row.measured_gain == pytest.approx(gain) and row.delta == pytest.approx(gain - ref.value)


def test_jaccard_task_reports_jaccard(catalog: Catalog) -> None:
    task = next(t for t in catalog.tasks.values() if t.metric == "jaccard")
    ts = task.test_sets[0].name
    rows = rep.aggregate(task, [make_result(task, "unet", 0, task.train_sizes[0], {ts: 0.8})])
    assert rows[0].mean == pytest.approx(0.8 / 1.2)


def test_paired_t_test_matches_hand_computation(catalog: Catalog) -> None:
    task = catalog.task("synthetic")  # Dice: the scores below are the tested ones
    ts = task.test_sets[0].name
    a = [0.80, 0.83, 0.79]
    b = [0.75, 0.76, 0.77]
    results = [make_result(task, "genseg-unet", s, 40, {ts: v}) for s, v in enumerate(a)]
    results += [make_result(task, "unet", s, 40, {ts: v}) for s, v in enumerate(b)]
    results.append(make_result(task, "unet", 7, 40, {ts: 0.1}))  # unpaired seed: ignored by the pairing
    (t,) = [x for x in rep.paired_tests(task, results, "genseg-unet", "unet") if x.test_set == ts]
    d = [x - y for x, y in zip(a, b, strict=True)]
    t_hand = statistics.fmean(d) / (statistics.stdev(d) / math.sqrt(3))
    assert t.n_pairs == 3 and t.t == pytest.approx(t_hand)
    # two-sided p of Student's t with 2 degrees of freedom: p = 1 - |t| / sqrt(2 + t^2)
    assert t.p_value == pytest.approx(1 - abs(t_hand) / math.sqrt(2 + t_hand**2))


def test_json_and_markdown_renderings(catalog: Catalog) -> None:
    task = catalog.task("synthetic")  # a Dice task: the scores below are the reported ones
    ts = task.test_sets[0].name
    results = [make_result(task, "unet", s, 40, {ts: 0.5 + s / 10}) for s in range(3)]
    results.append(make_result(task, "deeplab", 0, 40, {}, ok=False))  # only failures: mean is NaN
    rows = rep.aggregate(task, results)
    payload = json.loads(rep.to_json(task, rows, []))
    by = {(r["method"], r["test_set"]): r for r in payload["rows"]}
    assert by[("unet", ts)]["mean"] == pytest.approx(0.6)
    assert by[("deeplab", ts)]["mean"] is None  # NaN written as null
    md = rep.to_markdown(task, rows, rep.paired_tests(task, results, "unet", "deeplab"))
    assert "| unet | 40 |" in md and "0.600 ± 0.100" in md


def test_result_files_are_atomic_and_round_trip(isic: TaskSpec, tmp_path: Path) -> None:
    r = make_result(isic, "unet", 0, 40, {"isic": 0.5})
    path = write_result(tmp_path, r)
    assert read_result(path) == r
    assert [p.name for p in path.parent.iterdir()] == [path.name]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"schema_version": 1, "run_id": "x', "not valid JSON"),
        ('{"hello": "world"}', "not a genseg-bench result"),
        (json.dumps({"schema_version": SCHEMA_VERSION + 1}), "newer than this genseg-bench"),
        (json.dumps({"schema_version": SCHEMA_VERSION, "run_id": "x"}), "incomplete or invalid result"),
    ],
)
def test_bad_result_files_are_rejected_naming_the_file(tmp_path: Path, content: str, message: str) -> None:
    bad = tmp_path / "isic" / "bad.json"
    bad.parent.mkdir()
    bad.write_text(content)
    with pytest.raises(ResultFileError, match=message) as info:
        list(iter_results(tmp_path, "isic"))
    assert str(bad) in str(info.value)


def test_hand_edited_result_is_rejected(isic: TaskSpec, tmp_path: Path) -> None:
    path = write_result(tmp_path, make_result(isic, "unet", 0, 40, {"isic": 0.5}))
    data = json.loads(path.read_text())
    data["spec"]["seed"] = 5
    path.write_text(json.dumps(data))
    with pytest.raises(ResultFileError, match="run_id does not match"):
        read_result(path)


def _with_training(r: RunResult, lrs: list[float], best: float, empty: float) -> RunResult:
    its = [100 * (i + 1) for i in range(len(lrs))]
    return r.model_copy(
        update={
            "iterations": its[-1],
            "trajectory": {"iteration": its, "lr": lrs, "val_score": [best] * len(lrs)},
            "best_val_score": best,
            "extras": {"empty_val_score": empty},
            "budget": {"updates": its[-1], "images_seen": 16 * its[-1]},
            "train_cases": ["a", "b", "c", "d"],
            "val_cases": ["e"],
        }
    )


def test_report_flags_an_early_lr_collapse_and_an_empty_checkpoint(catalog: Catalog) -> None:
    task = catalog.task("synthetic-ood")
    ts = task.test_sets[0].name
    base = make_result(task, "unet", 0, 5, {ts: 0.5})
    # 20 validations of 100 iterations: the first half of the budget is the first ten
    healthy = _with_training(base, [1e-3] * 10 + [1e-4] * 10, best=0.6, empty=0.1)
    assert rep.run_flags(healthy) == []
    collapsed = _with_training(base, [1e-3, 1e-7] + [1e-7] * 18, best=0.6, empty=0.1)
    assert rep.run_flags(collapsed) == ["lr collapsed early"]
    mid = _with_training(base, [1e-3] * 9 + [1e-7] * 11, best=0.6, empty=0.1)
    assert rep.run_flags(mid) == ["lr collapsed early"]  # frozen for the second half: flagged
    late = _with_training(base, [1e-3] * 11 + [1e-7] * 9, best=0.6, empty=0.1)
    assert rep.run_flags(late) == []  # a collapse in the second half is the scheduler's job
    empty = _with_training(base, [1e-3] * 20, best=0.1, empty=0.1)
    assert rep.run_flags(empty) == ["best val = empty prediction"]
    row = next(r for r in rep.aggregate(task, [empty]) if r.test_set == ts)
    assert row.flags == ("seed 0: best val = empty prediction",)
    assert (row.n_train, row.n_val, row.images_seen, row.updates) == (4, 1, 32000, 2000)
    cells = rep.table_rows([row])[0]
    assert "5 (4+1)" in cells and "32,000" in cells and "seed 0: best val = empty prediction" in cells
    assert f"{row.mean:.3f} (1 seed)" in cells  # no "± 0.000" for a single seed


def test_resampled_runs_are_a_separate_row(catalog: Catalog) -> None:
    task = catalog.task("synthetic-ood")
    ts = task.test_sets[0].name
    fixed = make_result(task, "unet", 0, 8, {ts: 0.5})
    spec = fixed.spec.model_copy(update={"subset": "resampled"})
    resampled = fixed.model_copy(update={"spec": spec, "run_id": spec.run_id})
    assert resampled.run_id != fixed.run_id and "__s0r__" in resampled.run_id
    rows = [r for r in rep.aggregate(task, [fixed, resampled]) if r.test_set == ts]
    assert sorted(r.method for r in rows) == ["unet", "unet [resampled]"]


def test_report_flags_a_run_still_improving_when_its_budget_ended(catalog: Catalog) -> None:
    task = catalog.task("synthetic-ood")
    base = _with_training(
        make_result(task, "unet", 0, 5, {task.test_sets[0].name: 0.5}), [1e-3] * 4, best=0.6, empty=0.1
    )
    its = base.trajectory["iteration"]

    def ran(vals: list[float], best_it: int) -> RunResult:
        traj = {**base.trajectory, "val_score": vals}
        return base.model_copy(update={"trajectory": traj, "best_iteration": best_it})

    assert rep.run_flags(ran([0.2, 0.3, 0.4, 0.6], its[-1])) == ["best at the last validation"]
    assert rep.run_flags(ran([0.2, 0.6, 0.4, 0.5], its[1])) == []  # peaked, then fell: budget enough
    assert rep.run_flags(ran([0.2, 0.6, 0.6, 0.6], its[1])) == []  # a plateau keeps its first best


def test_holm_step_down_by_hand() -> None:
    # sorted: 0.01 x 4 = 0.04; 0.03 x 3 = 0.09; 0.04 x 2 = 0.08, raised to 0.09 by the running max
    # (a smaller raw p never gets a larger adjusted one); 0.20 x 1 = 0.20
    assert rep.holm([0.01, 0.04, 0.03, 0.20]) == pytest.approx([0.04, 0.09, 0.09, 0.20])
    # a test without a p-value stays without one and does not enlarge the family
    assert rep.holm([0.01, None, 0.04, 0.03, 0.20]) == pytest.approx([0.04, None, 0.09, 0.09, 0.20])  # type: ignore[arg-type]
    assert rep.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # 1.2 and 0.7, capped at 1, monotone
    assert rep.holm([0.04]) == pytest.approx([0.04]) and rep.holm([]) == []


def _t975(df: int) -> float:
    """The 0.975 quantile of Student's t in closed form for 1 and 2 degrees of freedom (no scipy)."""
    # df 1 (Cauchy): tan(pi (q - 1/2)); df 2: F(t) = 1/2 + t / (2 sqrt(2 + t^2)), so t = 0.95 sqrt(2 / (1 - 0.95^2))
    return math.tan(math.pi * 0.475) if df == 1 else 0.95 * math.sqrt(2 / (1 - 0.95**2))


@pytest.mark.parametrize(
    ("a", "b"),
    [([0.80, 0.83, 0.79], [0.75, 0.76, 0.77]), ([0.80, 0.83], [0.75, 0.76])],
    ids=["3 seeds", "2 seeds"],
)
def test_confidence_interval_is_the_hand_computed_t_interval(
    catalog: Catalog, a: list[float], b: list[float]
) -> None:
    task = catalog.task("synthetic")
    ts = task.test_sets[0].name
    results = [make_result(task, "genseg-unet", s, 40, {ts: v}) for s, v in enumerate(a)]
    results += [make_result(task, "unet", s, 40, {ts: v}) for s, v in enumerate(b)]
    (t,) = rep.paired_tests(task, results, "genseg-unet", "unet")
    d = [x - y for x, y in zip(a, b, strict=True)]
    n = len(d)
    half = _t975(n - 1) * statistics.stdev(d) / math.sqrt(n)
    assert t.mean_diff == pytest.approx(statistics.fmean(d))
    assert (t.ci_low, t.ci_high) == pytest.approx((statistics.fmean(d) - half, statistics.fmean(d) + half))
    assert t.p_value is not None  # n = 2: a t test with one degree of freedom, still a test


def _family(task: TaskSpec) -> list[RunResult]:
    """genseg-unet against unet at two sizes (three seeds each) and against deeplab on one seed."""
    ts = task.test_sets[0].name
    scores = {
        (40, "genseg-unet"): [0.80, 0.83, 0.79],
        (40, "unet"): [0.75, 0.76, 0.77],
        (16, "genseg-unet"): [0.70, 0.66, 0.72],
        (16, "unet"): [0.65, 0.66, 0.64],
    }
    out = [make_result(task, m, s, n, {ts: v}) for (n, m), vals in scores.items() for s, v in enumerate(vals)]
    return out + [
        make_result(task, "genseg-unet", 0, 8, {ts: 0.6}),
        make_result(task, "unet", 0, 8, {ts: 0.5}),
    ]


def test_one_seed_pairs_get_no_p_and_no_ci_and_are_not_in_the_family(catalog: Catalog) -> None:
    task = catalog.task("synthetic")
    tests = rep.holm_family(rep.paired_tests(task, _family(task), "genseg-unet", "unet"))
    by_n = {t.train_size: t for t in tests}
    one = by_n[8]
    assert one.n_pairs == 1 and one.mean_diff == pytest.approx(0.1)
    assert (one.t, one.p_value, one.ci_low, one.ci_high, one.p_holm) == (None, None, None, None, None)
    assert one.no_test == "one seed: no test" and not one.significant
    assert {t.family_size for t in tests} == {2}  # the two three-seed tests; the one-seed pair is not counted
    raw = sorted((by_n[16].p_value, by_n[40].p_value))  # type: ignore[type-var]
    low, high = (by_n[n] for n in (16, 40)) if by_n[16].p_value == raw[0] else (by_n[n] for n in (40, 16))
    assert low.p_holm == pytest.approx(min(1.0, 2 * raw[0]))
    assert high.p_holm == pytest.approx(max(min(1.0, 2 * raw[0]), raw[1]))
    assert rep.holm_family(tests) == tests  # adjusting again changes nothing


def test_a_tested_pair_without_holm_has_no_verdict(catalog: Catalog) -> None:
    task = catalog.task("synthetic")
    raw = next(
        t for t in rep.paired_tests(task, _family(task), "genseg-unet", "unet") if t.p_value is not None
    )
    with pytest.raises(ValueError, match="holm_family"):
        _ = raw.significant


def test_report_compare_prints_ci_raw_p_holm_p_and_the_family_in_every_format(
    catalog: Catalog, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from genseg_bench.cli import app

    task = catalog.task("synthetic")
    for r in _family(task):
        write_result(tmp_path, r)
    tests = rep.holm_family(rep.paired_tests(task, _family(task), "genseg-unet", "unet"))
    t40 = next(t for t in tests if t.train_size == 40)
    base = ["report", "--task", "synthetic", "--results", str(tmp_path), "--compare", "genseg-unet,unet"]
    runner = CliRunner()

    md = runner.invoke(app, [*base, "--format", "markdown"])
    assert md.exit_code == 0, md.output
    assert "| 95% CI | pairs | t | p | p Holm |" in md.output
    family = (
        f"Holm–Bonferroni adjustment over the family of {rep.COMPARE_SCOPE}, 2 test(s); the 1 pair(s) without"
    )
    assert family in md.output
    row = next(line for line in md.output.splitlines() if line.startswith("| genseg-unet | unet | 40 |"))
    assert f"| {rep.ci_text(t40)} | 3 |" in row and row.endswith(
        f"| {rep.p_text(t40.p_value)} | {rep.p_text(t40.p_holm)} |"
    )
    one = next(line for line in md.output.splitlines() if line.startswith("| genseg-unet | unet | 8 |"))
    assert one.endswith("| — | 1 | - | one seed: no test | — |")

    js = runner.invoke(app, [*base, "--format", "json"])
    assert js.exit_code == 0, js.output
    payload = json.loads(js.output)
    assert payload["holm"]["family_size"] == 2 and family in payload["holm"]["family"]
    by_n = {t["train_size"]: t for t in payload["paired_tests"]}
    assert by_n[40]["p_holm"] == pytest.approx(t40.p_holm) and by_n[40]["ci_low"] == pytest.approx(t40.ci_low)
    assert (
        by_n[8]["p_value"] is None and by_n[8]["p_holm"] is None and by_n[8]["no_test"] == "one seed: no test"
    )

    table = runner.invoke(app, [*base], env={"COLUMNS": "250"})
    assert table.exit_code == 0, table.output
    assert "p Holm" in table.output and "95% CI" in table.output and "2 test(s)" in table.output
    assert rep.ci_text(t40) in table.output and "one seed: no test" in table.output
