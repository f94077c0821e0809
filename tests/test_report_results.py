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
