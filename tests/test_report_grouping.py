"""The report never averages runs of different experiments: profile, budget, data, task version, method config.

The case behind it: a smoke run mixed into three quick runs turned 0.957 +- 0.017
(3 seeds) into 0.780 +- 0.354 (4 seeds) without a word. Results are built by hand
so the expected numbers are exact.
"""

from __future__ import annotations

import statistics

import pytest

from genseg_bench import report as rep
from genseg_bench.catalog import Catalog
from genseg_bench.profiles import get_profile
from genseg_bench.specs import Profile, RunResult, RunSpec, TaskSpec, TestSetResult, stable_hash

QUICK = [0.94, 0.96, 0.97]
SMOKE = 0.25


@pytest.fixture
def task(catalog: Catalog) -> TaskSpec:
    return catalog.task("synthetic")


def _result(
    task: TaskSpec,
    catalog: Catalog,
    seed: int,
    score: float,
    profile: str = "quick",
    method: str = "unet",
    fingerprint: str = "f0",
    task_hash: str | None = None,
    config: dict[str, object] | None = None,
    iterations: int | None = None,
) -> RunResult:
    prof = get_profile(profile, iterations=iterations)
    m = catalog.method(method)
    if config is not None:
        m = m.model_copy(update={"config": config})
    spec = RunSpec(
        task=task.id,
        method=method,
        train_size=16,
        seed=seed,
        profile=prof.name,
        task_hash=task_hash or stable_hash(task),
        method_hash=m.fingerprint(),
        profile_hash=stable_hash(prof),
        data_fingerprints={task.train_source: fingerprint},
    )
    ts = task.test_sets[0].name
    return RunResult(
        run_id=spec.run_id,
        spec=spec,
        status="ok",
        metric=task.metric,
        test_sets={
            ts: TestSetResult(
                case_ids=["a"], dice=[score], jaccard=[score], mean_dice=score, mean_jaccard=score
            )
        },
        iterations=prof.iterations,
        method_config=m.model_dump(),
        profile=prof.model_dump(),
    )


def _rows(task: TaskSpec, results: list[RunResult], method: str = "unet") -> list[rep.ReportRow]:
    return [r for r in rep.aggregate(task, results) if r.method == method]


def test_a_smoke_run_is_not_averaged_into_quick_runs(task: TaskSpec, catalog: Catalog) -> None:
    runs = [_result(task, catalog, s, v) for s, v in enumerate(QUICK)]
    runs.append(_result(task, catalog, 3, SMOKE, profile="smoke"))
    rows = _rows(task, runs)
    quick = next(r for r in rows if r.profile == "quick")
    smoke = next(r for r in rows if r.profile == "smoke")
    assert len(rows) == 2
    assert quick.n_seeds == 3 and quick.mean == pytest.approx(statistics.fmean(QUICK))
    assert quick.std == pytest.approx(statistics.stdev(QUICK))
    assert smoke.n_seeds == 1 and smoke.mean == pytest.approx(SMOKE)
    q, s = get_profile("quick"), get_profile("smoke")
    assert (
        quick.budget == f"{q.iterations} it × {q.batch_size} at {q.image_size} px"
        and smoke.budget == f"{s.iterations} it × {s.batch_size} at {s.image_size} px"
    )
    assert {"profile", "budget"} <= set(quick.split)
    assert any("not averaged" in f and "profile" in f and "budget" in f for f in quick.flags)
    (warning,) = rep.split_warnings(rows)
    assert warning.startswith("unet n=16") and "profile" in warning and "never averaged" in warning
    cells = rep.table_rows([quick])[0]
    assert f"quick ({quick.budget})" in cells
    markdown = rep.to_markdown(task, rows, [])
    assert "Runs set apart" in markdown and "profile (budget)" in markdown


def test_a_changed_iteration_budget_is_set_apart(task: TaskSpec, catalog: Catalog) -> None:
    """``--iterations`` keeps the profile's name: the budget alone says why."""
    runs = [_result(task, catalog, s, v) for s, v in enumerate(QUICK)]
    runs.append(_result(task, catalog, 3, SMOKE, iterations=7))
    rows = _rows(task, runs)
    assert sorted(r.n_seeds for r in rows) == [1, 3]
    assert all(r.split == ("budget",) for r in rows)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"fingerprint": "other-data"}, "data fingerprint"),
        ({"task_hash": "0123456789abcdef"}, "task version"),
        ({"config": {"augment": [], "rotate_degrees": 10.0}}, "method config"),
    ],
)
def test_each_context_field_splits_and_is_named(
    task: TaskSpec, catalog: Catalog, change: dict[str, object], field: str
) -> None:
    runs = [_result(task, catalog, s, v) for s, v in enumerate(QUICK)]
    runs.append(_result(task, catalog, 3, SMOKE, **change))  # type: ignore[arg-type]
    rows = _rows(task, runs)
    assert sorted(r.n_seeds for r in rows) == [1, 3]
    assert all(r.split == (field,) for r in rows)


def test_defaults_written_out_are_the_same_method(task: TaskSpec, catalog: Catalog) -> None:
    """A result recording ``rotate_degrees = 30`` (the default) is the same experiment as one leaving it out."""
    runs = [_result(task, catalog, s, v) for s, v in enumerate(QUICK)]
    runs.append(_result(task, catalog, 3, SMOKE, config={"augment": [], "rotate_degrees": 30.0}))
    (row,) = _rows(task, runs)
    assert row.n_seeds == 4 and row.split == () and rep.split_warnings([row]) == []


def test_paired_tests_pair_only_runs_of_one_context(task: TaskSpec, catalog: Catalog) -> None:
    runs = [_result(task, catalog, s, v) for s, v in enumerate(QUICK)]
    runs += [_result(task, catalog, s, v - 0.1, method="deeplab") for s, v in enumerate(QUICK)]
    runs += [_result(task, catalog, s, 0.1, method="deeplab", profile="smoke") for s in range(3)]
    tests = rep.paired_tests(task, runs, "unet", "deeplab")
    assert len(tests) == 1
    (t,) = tests
    assert t.profile == "quick" and t.n_pairs == 3 and t.mean_diff == pytest.approx(0.1)


def _recorded_before_the_plateau_rules(r: RunResult) -> RunResult:
    """The result as the code before ``plateau_min_lr_factor`` / ``plateau_wait_for_foreground`` wrote it."""
    old = {k: v for k, v in r.profile.items() if k not in Profile.LEGACY}
    return r.model_copy(update={"profile": old, "created": "2026-11-30T00:00:00Z"})


def test_runs_recorded_before_a_behaviour_changing_field_are_set_apart(
    task: TaskSpec, catalog: Catalog
) -> None:
    """A missing field means the old behaviour, not today's default: old and new runs are two rows.

    Measured case: a UNet seed 0 rerun under the plateau rules was averaged with seeds 1-2 run
    without them (0.459 +- 0.008 over "seeds 0,1,2"), because the old profiles were completed with
    today's defaults and hashed equal.
    """
    old = [_recorded_before_the_plateau_rules(_result(task, catalog, s, v)) for s, v in enumerate(QUICK)]
    new = _result(task, catalog, 0, 0.5)
    rows = _rows(task, [*old, new])
    assert len(rows) == 2
    before = next(r for r in rows if r.n_seeds == 3)
    after = next(r for r in rows if r.n_seeds == 1)
    assert before.mean == pytest.approx(statistics.fmean(QUICK)) and after.mean == pytest.approx(0.5)
    assert before.split == ("profile settings",) and after.split == ("profile settings",)
    assert rep.profile_of(old[0])["plateau_min_lr_factor"] == 0.0
    assert rep.profile_of(old[0])["plateau_wait_for_foreground"] is False
    # a field whose default kept the old behaviour is still filled by its default
    assert rep.profile_of(old[0])["plateau_patience"] == get_profile("quick").plateau_patience


def test_two_results_of_one_seed_in_one_context_count_once_newest_first(
    task: TaskSpec, catalog: Catalog
) -> None:
    """Equal contexts, different run ids (a change outside the identity): the seed is not counted twice."""
    first = _result(task, catalog, 0, 0.2).model_copy(update={"created": "2026-12-01T10:00:00Z"})
    again = _result(task, catalog, 0, 0.6).model_copy(
        update={"created": "2026-12-01T12:00:00Z", "run_id": "rerun"}
    )
    other = _result(task, catalog, 1, 0.8)
    for order in ([first, again, other], [again, other, first]):
        (row,) = _rows(task, order)
        assert row.n_seeds == 2 and row.seeds == [0, 1]
        assert row.mean == pytest.approx((0.6 + 0.8) / 2)
        assert "seed 0: 2 results in one context, the newest used" in row.flags


def test_the_plateau_replay_is_torchs_scheduler(task: TaskSpec) -> None:
    """replay_plateau (torch-free, for the report) against torch's ReduceLROnPlateau on random scores."""
    import random

    import torch

    rng = random.Random(0)
    for trial in range(200):
        n = rng.randint(1, 30)
        scores = [round(rng.random(), rng.choice([1, 2, 6])) for _ in range(n)]
        patience, lr0 = rng.randint(0, 3), 10 ** rng.uniform(-5, -2)
        min_lr = lr0 * rng.choice([0.0, 0.01, 0.1])
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr0)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", patience=patience, min_lr=min_lr)
        expect = []
        for sc in scores:
            expect.append(opt.param_groups[0]["lr"])
            sched.step(sc)
        got = rep.replay_plateau(scores, lr0, patience, min_lr=min_lr)
        assert got == pytest.approx(expect, rel=1e-12), (trial, scores, patience)
    # the arming rule: zeros before the first score above the empty prediction are not steps
    assert rep.replay_plateau([0.0] * 5 + [0.3], 1e-3, 0, arm_above=0.0) == [1e-3] * 6
    assert rep.replay_plateau([0.0] * 5 + [0.3], 1e-3, 0)[-1] < 1e-3


def test_a_run_the_rules_would_not_have_changed_counts_under_them(task: TaskSpec, catalog: Catalog) -> None:
    """Replayed from its own trajectory: same lr every stretch -> the run's row is today's, and says why."""
    now = _result(task, catalog, 0, 0.5)
    base = {
        "extras": {"empty_val_score": 0.0},
        "profile": {k: v for k, v in now.profile.items() if k not in Profile.LEGACY},
    }
    lr = now.profile["seg_lr"]
    same = _result(task, catalog, 1, 0.6).model_copy(
        update={
            **base,
            "trajectory": {"iteration": [20, 40, 60], "val_score": [0.2, 0.3, 0.4], "lr": [lr] * 3},
        }
    )
    # scores of 0 decayed the old run's lr; under the rules they would not have: a different run
    changed = _result(task, catalog, 2, 0.1).model_copy(
        update={
            **base,
            "trajectory": {
                "iteration": [20, 40, 60, 80],
                "val_score": [0.0] * 4,
                "lr": [lr, lr, lr, lr / 10],
            },
        }
    )
    assert rep.unchanged_by_plateau_rules(same) and not rep.unchanged_by_plateau_rules(changed)
    assert not rep.unchanged_by_plateau_rules(now)  # records the rules itself
    rows = _rows(task, [now, same, changed])
    merged = next(r for r in rows if r.n_seeds == 2)
    assert merged.seeds == [0, 1] and merged.mean == pytest.approx(0.55)
    assert "seed 1: recorded before the plateau rules; replayed: same lr schedule under them" in merged.flags
    apart = next(r for r in rows if r.n_seeds == 1)
    assert apart.seeds == [2] and apart.split == ("profile settings",)


def test_a_methods_own_batch_is_flagged_and_keeps_the_context(task: TaskSpec, catalog: Catalog) -> None:
    """nnU-Net trains at its plan's batch: a flag says so, and its runs still pair with the profile's others."""
    r = _result(task, catalog, 0, 0.5)
    own = r.model_copy(update={"budget": {"updates": r.iterations, "batch_size": 2}})
    assert rep.run_context(task, own).budget == rep.run_context(task, r).budget
    batch = get_profile("quick").batch_size
    assert rep.own_batch_flag(own) == [f"batch 2 (its own plan), not the profile's {batch}"]
    assert rep.own_batch_flag(r) == []


def test_a_flag_every_seed_shares_is_one_line() -> None:
    """Three seeds all best at the last validation: one line naming the seeds, not three copies."""
    merged = rep.merged_seed_flags(
        {2: ["best at the last validation"], 0: ["best at the last validation", "lr collapsed early"], 1: []}
    )
    assert merged == ["seeds 0,2: best at the last validation", "seed 0: lr collapsed early"]
    assert rep.merged_seed_flags({1: ["x"]}) == ["seed 1: x"]


def test_seeds_of_different_torch_thread_counts_are_flagged(task: TaskSpec, catalog: Catalog) -> None:
    """CPU scores depend on the thread count: a row whose seeds ran with different counts says so."""
    runs = [
        _result(task, catalog, s, 0.5 + 0.01 * s).model_copy(update={"versions": {"torch_threads": t}})
        for s, t in ((0, "1"), (1, "1"), (2, "2"))
    ]
    (row,) = [r for r in _rows(task, runs) if r.n_seeds]
    assert "seeds ran with different torch thread counts (1, 2)" in row.flags
    same = [r.model_copy(update={"versions": {"torch_threads": "1"}}) for r in runs]
    assert not any("thread" in f for r in _rows(task, same) for f in r.flags)
