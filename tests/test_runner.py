"""The runner: deterministic job ids, one atomic result per run, resume, failures recorded.

Real training with the ``smoke`` profile (32 px, a few iterations) on the embedded
synthetic task, so every path here is the one a user's grid takes.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from genseg_bench.catalog import Catalog
from genseg_bench.data.store import Store
from genseg_bench.errors import DataError, TrainingDiverged
from genseg_bench.methods import training
from genseg_bench.methods.base import FitContext, FitResult, Method, Predictor, SegData
from genseg_bench.profiles import get_profile
from genseg_bench.results import iter_results, read_result, result_path
from genseg_bench.runner import SilentReporter, load_task_data, run_grid
from genseg_bench.specs import MethodSpec, RunResult, RunSpec

CPU = torch.device("cpu")
SMOKE = get_profile("smoke")


class Boom(Method):
    """A method that crashes: the grid must record it as failed and go on."""

    def fit(self, train: SegData, val: SegData, ctx: FitContext) -> FitResult:
        raise RuntimeError("boom: deliberate failure")


class Diverges(Method):
    """A method whose loss goes NaN."""

    def fit(self, train: SegData, val: SegData, ctx: FitContext) -> FitResult:
        raise TrainingDiverged("loss is nan at iteration 3")


class Constant(Predictor):
    """Predicts the same probability everywhere (0: nothing, 1: everything)."""

    def __init__(self, p: float) -> None:
        self.p = p

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return torch.full_like(images[:, :1], self.p)


class TwoNetworks(Method):
    """Selected checkpoint predicts nothing; the final network predicts everything."""

    def fit(self, train: SegData, val: SegData, ctx: FitContext) -> FitResult:
        return FitResult(Constant(0.0), 0.1, 1, ctx.iterations, last_predictor=Constant(1.0))


class FinalIsBest(Method):
    """The best validation is the last: the selected checkpoint is the final network."""

    def fit(self, train: SegData, val: SegData, ctx: FitContext) -> FitResult:
        return FitResult(Constant(1.0), 0.1, ctx.iterations, ctx.iterations)


class NoCopy(Method):
    """An earlier best and no copy of the final weights (as nnU-Net): nothing to record."""

    def fit(self, train: SegData, val: SegData, ctx: FitContext) -> FitResult:
        return FitResult(Constant(1.0), 0.1, 1, ctx.iterations)


def _with_methods(catalog: Catalog, *specs: MethodSpec) -> Catalog:
    return replace(catalog, methods={**catalog.methods, **{s.name: s for s in specs}})


def _mtimes(results: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in results.rglob("*.json")}


class StopAt(SilentReporter):
    """Simulates Ctrl-C when the n-th run starts (after earlier runs finished)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.started = 0

    def run_started(self, spec: RunSpec, iterations: int) -> None:
        self.started += 1
        if self.started == self.n:
            raise KeyboardInterrupt


def test_grid_writes_one_result_per_run_with_provenance(
    catalog: Catalog, store: Store, tmp_path: Path
) -> None:
    s = run_grid(catalog, "synthetic-ood", ["unet"], [8], [0, 1], SMOKE, store, tmp_path, CPU)
    assert len(s.ran) == 2 and not s.failed
    files = sorted((tmp_path / "synthetic-ood").glob("*.json"))
    assert [f.stem for f in files] == sorted(r.run_id for r in s.ran)
    r = read_result(files[0])
    assert r.status == "ok" and set(r.test_sets) == {"synthetic-a", "synthetic-b"}
    assert r.versions["torch"] and r.device == "cpu" and r.wall_time_s > 0
    assert r.versions["torch_threads"] == str(torch.get_num_threads()) and r.versions["kernels"]
    assert set(r.spec.data_fingerprints) == {"synthetic-a", "synthetic-b"}
    # n = 8 labelled cases in total: 6 train + 2 validation (80:20, validation inside n)
    assert len(r.train_cases) == 6 and len(r.val_cases) == 2 and not set(r.train_cases) & set(r.val_cases)
    # the budget and the trajectory are stored: updates, images seen, lr and val score per validation
    assert (
        r.budget["updates"] == SMOKE.iterations
        and r.budget["images_seen"] == SMOKE.iterations * SMOKE.batch_size
    )
    assert r.trajectory["iteration"] == list(range(SMOKE.eval_every, SMOKE.iterations + 1, SMOKE.eval_every))
    assert len(r.trajectory["lr"]) == len(r.trajectory["val_score"]) == len(r.trajectory["iteration"])
    ts = r.test_sets["synthetic-b"]
    assert len(ts.dice) == len(ts.case_ids) and 0.0 <= ts.mean_dice <= 1.0
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")], "no temporary files are left"


def test_run_ids_are_deterministic_and_depend_on_what_changes_a_result(
    catalog: Catalog, store: Store
) -> None:
    from genseg_bench.runner import expand_grid

    task = catalog.task("synthetic")
    data = load_task_data(task, store, 32)
    a = expand_grid(task, [catalog.method("unet")], [8], [0, 1], SMOKE, data)
    b = expand_grid(task, [catalog.method("unet")], [8], [0, 1], SMOKE, data)
    assert [x.run_id for x in a] == [x.run_id for x in b]
    assert len({x.run_id for x in a}) == 2
    other = expand_grid(task, [catalog.method("unet")], [8], [0], get_profile("smoke", iterations=7), data)
    assert other[0].run_id != a[0].run_id


def test_killed_grid_resumes_without_losing_or_redoing_runs(
    catalog: Catalog, store: Store, tmp_path: Path
) -> None:
    with pytest.raises(KeyboardInterrupt):
        run_grid(catalog, "synthetic", ["unet"], [8], [0, 1, 2], SMOKE, store, tmp_path, CPU, StopAt(3))
    finished = _mtimes(tmp_path)
    assert len(finished) == 2, "the two runs that finished before the interrupt are on disk"
    s = run_grid(catalog, "synthetic", ["unet"], [8], [0, 1, 2], SMOKE, store, tmp_path, CPU)
    assert len(s.skipped) == 2 and len(s.ran) == 1 and s.ran[0].spec.seed == 2
    after = _mtimes(tmp_path)
    assert {k: after[k] for k in finished} == finished, "finished runs were not rewritten"
    again = run_grid(catalog, "synthetic", ["unet"], [8], [0, 1, 2], SMOKE, store, tmp_path, CPU)
    assert not again.ran and len(again.skipped) == 3


def test_failing_and_diverging_runs_are_recorded_and_the_grid_goes_on(
    catalog: Catalog, store: Store, tmp_path: Path
) -> None:
    cat = _with_methods(
        catalog,
        MethodSpec(name="boom", kind="test_runner:Boom", description="crashes"),
        MethodSpec(name="nan", kind="test_runner:Diverges", description="diverges"),
    )
    s = run_grid(cat, "synthetic", ["boom", "nan", "unet"], [8], [0], SMOKE, store, tmp_path, CPU)
    by_method = {r.spec.method: r for r in s.ran}
    assert by_method["boom"].status == "failed" and "boom: deliberate failure" in (
        by_method["boom"].error or ""
    )
    assert by_method["nan"].status == "failed" and "TrainingDiverged" in (by_method["nan"].error or "")
    assert by_method["unet"].status == "ok"
    # failed runs are kept (not silently retried) unless asked
    again = run_grid(cat, "synthetic", ["boom", "unet"], [8], [0], SMOKE, store, tmp_path, CPU)
    assert not again.ran
    retried = run_grid(
        cat, "synthetic", ["boom", "unet"], [8], [0], SMOKE, store, tmp_path, CPU, retry_failed=True
    )
    assert [r.spec.method for r in retried.ran] == ["boom"]


def test_corrupt_result_file_is_redone_and_other_runs_kept(
    catalog: Catalog, store: Store, tmp_path: Path
) -> None:
    s = run_grid(catalog, "synthetic", ["unet"], [8], [0, 1], SMOKE, store, tmp_path, CPU)
    bad = result_path(tmp_path, s.ran[0].spec)
    bad.write_text('{"schema_version": 1, "run_id": "trunc')
    keep = result_path(tmp_path, s.ran[1].spec).stat().st_mtime_ns
    again = run_grid(catalog, "synthetic", ["unet"], [8], [0, 1], SMOKE, store, tmp_path, CPU)
    assert [r.spec.seed for r in again.ran] == [s.ran[0].spec.seed]
    assert result_path(tmp_path, s.ran[1].spec).stat().st_mtime_ns == keep
    assert read_result(bad).status == "ok"
    (aside,) = again.set_aside  # the unreadable file was moved aside, not overwritten
    assert aside.path == bad and aside.moved_to.read_text() == '{"schema_version": 1, "run_id": "trunc'


def test_too_large_training_size_fails_before_any_training(
    catalog: Catalog, store: Store, tmp_path: Path
) -> None:
    with pytest.raises(DataError, match="labelled cases asked for"):
        run_grid(catalog, "synthetic", ["unet"], [100000], [0], SMOKE, store, tmp_path, CPU)
    assert not list(tmp_path.rglob("*.json"))


def test_unprepared_real_data_names_the_prepare_command(catalog: Catalog, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="genseg-bench data prepare kvasir --from PATH"):
        run_grid(
            catalog, "kvasir-to-cvc", ["unet"], [8], [0], SMOKE, Store(tmp_path / "s"), tmp_path / "r", CPU
        )


def test_results_are_plain_json_that_round_trips(catalog: Catalog, store: Store, tmp_path: Path) -> None:
    s = run_grid(catalog, "synthetic", ["unet"], [8], [0], SMOKE, store, tmp_path, CPU)
    path = result_path(tmp_path, s.ran[0].spec)
    data = json.loads(path.read_text())
    assert RunResult.model_validate(data) == s.ran[0]
    assert [r.run_id for r in iter_results(tmp_path, "synthetic")] == [s.ran[0].run_id]


@pytest.mark.realdata
def test_kvasir_to_cvc_end_to_end_on_real_data(shared_data: Path, catalog: Catalog, tmp_path: Path) -> None:
    """Prepare the real Kvasir-SEG and CVC-ClinicDB copies, train briefly, evaluate on all of CVC-ClinicDB."""
    store = Store(tmp_path / "store")
    store.prepare("kvasir", shared_data / "kvasir-seg", 32)
    store.prepare("cvc-clinicdb", shared_data / "cvc-clinicdb", 32)
    s = run_grid(catalog, "kvasir-to-cvc", ["unet"], [8], [0], SMOKE, store, tmp_path / "r", CPU)
    (r,) = s.ran
    assert r.status == "ok", r.error
    assert len(r.test_sets["cvc-clinicdb"].case_ids) == 609  # the whole out-of-domain set
    assert len(r.test_sets["kvasir"].case_ids) == round(0.2 * 998)  # the held-out in-domain test split
    assert set(r.spec.data_fingerprints) == {"kvasir", "cvc-clinicdb"}


def test_images_seen_tell_generation_from_batch_size(catalog: Catalog, store: Store, tmp_path: Path) -> None:
    """Per update: a baseline sees B real images; real x2 and GenSeg (gamma > 0) see 2B, and say so."""
    methods = ["unet", "unet-real-x2", "genseg-unet"]
    s = run_grid(catalog, "synthetic-genseg", methods, [8], [0], SMOKE, store, tmp_path, CPU)
    assert not s.failed, [r.error for r in s.failed]
    seen = {r.spec.method: r.budget for r in s.ran}
    its, b = SMOKE.iterations, SMOKE.batch_size
    assert seen["unet"]["images_seen"] == its * b and seen["unet"]["updates"] == its
    assert seen["unet-real-x2"]["images_seen"] == 2 * its * b and seen["unet-real-x2"]["updates"] == its
    assert seen["genseg-unet"]["images_seen"] == 2 * its * b
    assert seen["genseg-unet"]["generated_images_seen"] == its * b
    assert seen["unet-real-x2"]["real_images_seen"] == 2 * its * b


def test_real_x2_adds_the_loss_of_an_augmented_copy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The control's update is the gradient of L(real) + L(augmented copy): two forwards per update."""
    from genseg_bench.methods import recipe
    from genseg_bench.methods.registry import build_method

    calls: list[int] = []
    real_loss = recipe.seg_loss

    def counting(logits: torch.Tensor, masks: torch.Tensor, kind: str = "bce") -> torch.Tensor:
        calls.append(int(logits.shape[0]))
        return real_loss(logits, masks, kind)

    monkeypatch.setattr(recipe, "seg_loss", counting)
    spec = Catalog.load().method("unet-real-x2")
    g = torch.Generator().manual_seed(0)
    images = torch.rand(6, 3, 32, 32, generator=g)
    masks = (torch.rand(6, 1, 32, 32, generator=g) > 0.5).float()
    data = SegData(images, masks, [f"c{i}" for i in range(6)])
    ctx = FitContext(device=CPU, seed=0, profile=SMOKE, out_dir=tmp_path)
    build_method(spec).fit(data, data, ctx)
    assert calls == [SMOKE.batch_size, SMOKE.batch_size] * SMOKE.iterations


def test_final_network_is_scored_beside_the_selected_checkpoint(
    catalog: Catalog, store: Store, tmp_path: Path
) -> None:
    """extras["final_network"] holds the final network's scores, never the selected one's."""
    cat = _with_methods(
        catalog,
        MethodSpec(name="two", kind="test_runner:TwoNetworks", description="two networks"),
        MethodSpec(name="same", kind="test_runner:FinalIsBest", description="best is last"),
        MethodSpec(name="nocopy", kind="test_runner:NoCopy", description="no final copy"),
    )
    s = run_grid(cat, "synthetic", ["two", "same", "nocopy"], [8], [0], SMOKE, store, tmp_path, CPU)
    by = {r.spec.method: r for r in s.ran}
    assert all(r.status == "ok" for r in s.ran), [r.error for r in s.ran]
    two, same = by["two"], by["same"]
    name = next(iter(two.test_sets))
    everything = same.test_sets[name]  # an all-foreground prediction, scored by the selected path
    rec = two.extras["final_network"]
    assert (
        rec["selected"] is False and rec["iteration"] == SMOKE.iterations and rec["selected_iteration"] == 1
    )
    final = rec["test_sets"][name]
    assert final["mean_dice"] == pytest.approx(everything.mean_dice)
    assert final["dice"] == pytest.approx(everything.dice)
    assert len(final["jaccard"]) == len(two.test_sets[name].case_ids)
    assert two.test_sets[name].mean_dice != pytest.approx(everything.mean_dice)  # selected: predicts nothing
    rec_same = same.extras["final_network"]
    assert rec_same["selected"] is True
    assert rec_same["test_sets"][name] == {
        "mean_dice": everything.mean_dice,
        "mean_jaccard": everything.mean_jaccard,
    }
    assert "final_network" not in by["nocopy"].extras


def _falling_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every validation scores below the one before: the best checkpoint is the first validation."""
    falling = iter([0.9 - 0.01 * i for i in range(1000)])
    monkeypatch.setattr(training, "validation_score", lambda *a, **k: next(falling))


def test_a_trained_unet_records_its_final_network(
    monkeypatch: pytest.MonkeyPatch, catalog: Catalog, store: Store, tmp_path: Path
) -> None:
    """The real path: the supervised loop hands its final weights to the runner.

    Validation scores are scripted to fall, so the best checkpoint is the first validation and the
    final network is another one, which the runner must score from its own weights.
    """
    _falling_validation(monkeypatch)
    s = run_grid(catalog, "synthetic", ["unet"], [8], [0], SMOKE, store, tmp_path, CPU)
    (r,) = s.ran
    assert r.status == "ok", r.error
    rec = r.extras["final_network"]
    assert r.best_iteration < r.iterations
    assert rec == {
        **rec,
        "iteration": r.iterations,
        "selected_iteration": r.best_iteration,
        "selected": False,
    }
    for name, selected in r.test_sets.items():
        assert len(rec["test_sets"][name]["dice"]) == len(selected.case_ids)


@pytest.mark.parametrize("method", ["genseg-unet", "wgan-unet"])
def test_generation_methods_hand_over_their_final_network(
    method: str, monkeypatch: pytest.MonkeyPatch, catalog: Catalog, store: Store, tmp_path: Path
) -> None:
    """GenSeg and the WGAN baseline train through the same monitor: an earlier best leaves a final network."""
    _falling_validation(monkeypatch)
    s = run_grid(catalog, "synthetic-genseg", [method], [8], [0], SMOKE, store, tmp_path, CPU)
    (r,) = s.ran
    assert r.status == "ok", r.error
    rec = r.extras["final_network"]
    assert rec["selected"] is False and rec["selected_iteration"] == r.best_iteration < r.iterations
    assert set(rec["test_sets"]) == set(r.test_sets)
