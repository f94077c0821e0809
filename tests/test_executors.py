"""Executors: the same grid through local, Ray (a Ray started here) and Slurm (submitit's local mode).

Each engine must give what the local executor gives: identical scores for identical
seeds, the same result files in the same folder, skip-finished and retry-failed, and
the reporter told about every run. Runs use the ``smoke`` profile; a probe method that
fails on purpose reports the torch threads its worker got (its share: one CPU per run).
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from genseg_bench.catalog import Catalog
from genseg_bench.cli import app
from genseg_bench.data.store import Store
from genseg_bench.errors import GensegBenchError
from genseg_bench.executors import (
    LocalExecutor,
    RayExecutor,
    SlurmExecutor,
    make_executor,
    read_slurm_config,
    require,
)
from genseg_bench.methods.base import FitContext, FitResult, Method, SegData
from genseg_bench.profiles import get_profile
from genseg_bench.results import result_files
from genseg_bench.runner import SilentReporter, grid_jobs, plan_grid, run_grid, run_one
from genseg_bench.specs import MethodSpec, RunResult, RunSpec

REPO = Path(__file__).resolve().parents[1]
SMOKE = get_profile("smoke")
PROBE = MethodSpec(
    name="threads-probe", kind="test_executors:ThreadsProbe", description="fails, saying its threads"
)


class ThreadsProbe(Method):
    """Fails at once, naming the torch threads of the process it ran in (an executor's share)."""

    def fit(self, train: SegData, val: SegData, ctx: FitContext) -> FitResult:
        raise RuntimeError(f"probe: threads={torch.get_num_threads()}")


class Recorder(SilentReporter):
    def __init__(self) -> None:
        self.started: list[tuple[int, int]] = []
        self.finished: list[str] = []

    def grid_started(self, total: int, skipped: int) -> None:
        self.started.append((total, skipped))

    def run_finished(self, result: RunResult) -> None:
        self.finished.append(result.run_id)


@pytest.fixture
def workers_see_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray workers and submitit jobs are new processes: they import this checkout and the probe method."""
    path = os.pathsep.join([str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])
    monkeypatch.setenv("PYTHONPATH", path)


def _catalog(catalog: Catalog) -> Catalog:
    return replace(catalog, methods={**catalog.methods, PROBE.name: PROBE})


def _scores(results: Path) -> dict[str, dict[str, list[float]]]:
    out = {}
    for f in result_files(results, "synthetic-ood"):
        r = json.loads(f.read_text())
        out[f.stem] = {k: v["dice"] for k, v in r["test_sets"].items()} or {
            "error": [r["status"] == "failed"]
        }
    return out


def _grid(cat: Catalog, store: Store, results: Path, executor: object, **kw: object):  # type: ignore[no-untyped-def]
    rec = Recorder()
    s = run_grid(
        cat,
        "synthetic-ood",
        ["unet", PROBE.name],
        [8],
        [0, 1],
        SMOKE,
        store,
        results,
        "cpu",
        rec,
        executor=executor,
        **kw,  # type: ignore[arg-type]
    )
    return s, rec


@pytest.fixture(scope="module")
def local_results(tmp_path_factory: pytest.TempPathFactory, catalog: Catalog, store: Store) -> Path:
    """The reference: the local executor, one thread per run (as each remote worker gets)."""
    out = tmp_path_factory.mktemp("local")
    threads = torch.get_num_threads()
    try:
        s, rec = _grid(_catalog(catalog), store, out, LocalExecutor(threads=1))
    finally:
        torch.set_num_threads(threads)
    assert len(s.ran) == 4 and len(s.failed) == 2 and rec.started == [(4, 0)]
    return out


def test_jobs_are_plain_picklable_values(catalog: Catalog, store: Store, tmp_path: Path) -> None:
    plan = plan_grid(catalog, "synthetic-ood", ["unet"], [8], [0], SMOKE, store, tmp_path)
    (job,) = grid_jobs(plan, store, tmp_path, "cpu", 1)
    assert json.loads(json.dumps(job)) == job  # plain JSON values: any engine can ship them
    assert pickle.loads(pickle.dumps(run_one)) is run_one  # a top-level function, shipped by reference


@pytest.mark.parametrize("engine", ["ray", "slurm"])
def test_remote_executor_gives_the_local_results(
    engine: str, catalog: Catalog, store: Store, tmp_path: Path, local_results: Path, workers_see_repo: None
) -> None:
    cat = _catalog(catalog)
    executor = (
        RayExecutor(num_cpus=2, cpus_per_run=1)
        if engine == "ray"
        else SlurmExecutor(folder=tmp_path / ".submitit", cluster="local", array_parallelism=2, poll_s=0.2)
    )
    try:
        _same_as_local(cat, store, tmp_path, executor, local_results)
    finally:
        executor.close()


def _same_as_local(cat: Catalog, store: Store, tmp_path: Path, executor: object, local_results: Path) -> None:
    s, rec = _grid(cat, store, tmp_path, executor)
    assert len(s.ran) == 4 and not s.lost and not s.elsewhere
    assert rec.started == [(4, 0)] and sorted(rec.finished) == sorted(r.run_id for r in s.ran)
    assert _scores(tmp_path) == _scores(local_results)  # identical scores for identical seeds
    # each worker got its share: one CPU per run, one torch thread
    assert {r.error.splitlines()[0] for r in s.failed} == {"RuntimeError: probe: threads=1"}  # type: ignore[union-attr]
    again, rec = _grid(cat, store, tmp_path, executor)
    assert not again.ran and rec.started == [(4, 4)]  # skip-finished
    retried, _ = _grid(cat, store, tmp_path, executor, retry_failed=True)
    assert sorted(r.spec.method for r in retried.ran) == [PROBE.name] * 2  # retry-failed reruns only those


def test_a_run_claimed_elsewhere_is_not_run(catalog: Catalog, store: Store, tmp_path: Path) -> None:
    from genseg_bench.claims import Claim, claim_path
    from genseg_bench.results import result_path

    plan = plan_grid(catalog, "synthetic-ood", ["unet"], [8], [0], SMOKE, store, tmp_path)
    held = Claim(claim_path(result_path(tmp_path, plan.todo[0])))
    assert held.acquire()
    try:
        s = run_grid(catalog, "synthetic-ood", ["unet"], [8], [0], SMOKE, store, tmp_path, "cpu")
    finally:
        held.release()
    assert not s.ran and [spec.run_id for spec, _ in s.elsewhere] == [plan.todo[0].run_id]
    assert "claimed by pid" in s.elsewhere[0][1]


def test_missing_engine_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    real = importlib.import_module

    def fake(name: str, *a: object) -> object:
        if name in ("ray", "submitit"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *a)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(GensegBenchError, match=r"pip install 'genseg-bench\[ray\]'"):
        require("ray", "ray")
    with pytest.raises(GensegBenchError, match=r"pip install 'genseg-bench\[slurm\]'"):
        list(SlurmExecutor(folder=Path("x")).map([{"spec": {}}], SilentReporter()))


def test_slurm_settings_from_a_config_file_and_options(tmp_path: Path) -> None:
    cfg = tmp_path / "slurm.toml"
    cfg.write_text(
        '[slurm]\npartition = "gpu"\ntime = 90\narray_parallelism = 16\ngpus_per_run = 1\n'
        'parameters = { slurm_account = "lab" }\n'
    )
    ex = make_executor("slurm", results=tmp_path, slurm_config=cfg, slurm_time=30)
    assert isinstance(ex, SlurmExecutor)
    assert (ex.partition, ex.time_min, ex.array_parallelism, ex.gpus_per_run) == ("gpu", 30, 16, 1)
    assert ex.parameters == {"slurm_account": "lab"} and ex.folder == tmp_path / ".submitit"
    cfg.write_text("[slurm]\npartiton = 'gpu'\n")
    with pytest.raises(GensegBenchError, match="unknown key 'partiton'"):
        read_slurm_config(cfg)
    cfg.write_text("[slurm]\ntime = '2h'\n")
    with pytest.raises(GensegBenchError, match="time must be a int"):
        read_slurm_config(cfg)


CPU_TABLE = {
    "entries": [
        {
            "device": "cpu",
            "device_name": "CPU, 2 threads",
            "image_size": 64,
            "batch_size": 8,
            "backbone": "unet",
            "seconds_per_iteration": {
                "supervised": 0.01,
                "genseg": 0.08,
                "genseg_joint": 0.03,
                "separate": 0.02,
            },
        }
    ]
}


def test_dry_run_lists_jobs_resources_and_device_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import genseg_bench.executors as executors

    table = tmp_path / "iteration_times.json"
    table.write_text(json.dumps(CPU_TABLE))
    monkeypatch.setattr(executors, "SPEED_TABLE", table)
    out = CliRunner().invoke(
        app,
        [
            "run",
            "--suite",
            "paper-core",
            "--executor",
            "ray",
            "--gpus-per-run",
            "1",
            "--dry-run",
            "--results",
            str(tmp_path / "r"),
            "--store",
            str(tmp_path / "s"),
        ],
    )
    assert out.exit_code == 0, out.output
    assert "executor ray, each: cpus 1.0, gpus 1.0" in out.output
    for task in ("fetreg", "isic", "cvc-clinicdb", "icfluid", "fuseg", "buid", "isic-ood", "jsrt-ood"):
        assert f"\n{task}: " in out.output  # a line per task of the suite, with its jobs and device time
    assert "estimated GPU time" in out.output and "These are CPU numbers" in out.output
    assert not (tmp_path / "r").exists()  # nothing ran


def test_dry_run_stops_where_the_run_would(tmp_path: Path) -> None:
    """A semi-supervised method on a task without a pool is the run's error, not a "todo" row."""
    out = CliRunner().invoke(
        app,
        ["run", "--task", "synthetic", "--methods", "unet,dct-unet", "--dry-run"]
        + ["--results", str(tmp_path / "r"), "--store", str(tmp_path / "s")],
    )
    assert out.exit_code != 0
    assert "dct-unet are semi-supervised and need an unlabelled pool" in " ".join(out.output.split())
    assert "todo" not in out.output


def test_estimate_scales_by_pixels_batch_and_method() -> None:
    from genseg_bench.executors import estimate_seconds

    entry = CPU_TABLE["entries"][0]
    unet = MethodSpec(name="unet", kind="supervised", backbone="unet", description="")
    x2 = MethodSpec(
        name="x2", kind="supervised", backbone="unet", description="", config={"second_copy": ["flip"]}
    )
    genseg = MethodSpec(name="g", kind="genseg", backbone="unet", description="")
    assert estimate_seconds(unet, 100, 128, 2, 8, entry)[0] == pytest.approx(100 * 0.01 * 4)  # 4x the pixels
    assert estimate_seconds(x2, 100, 64, 2, 4, entry)[0] == pytest.approx(
        100 * 0.01 * 2 * 0.5
    )  # 2 forwards, half batch
    assert estimate_seconds(genseg, 100, 64, 2, 8, entry)[0] == pytest.approx(100 * 0.08)
    assert estimate_seconds(unet, 100, 64, 2, 8, {**entry, "backbone": "unet"})[1] == ""
    deeplab = MethodSpec(name="d", kind="supervised", backbone="deeplabv3plus", description="")
    _, note = estimate_seconds(deeplab, 100, 64, 2, 8, {**entry, "backbone": "unet"})
    assert note == "deeplabv3plus costed as the measured unet"  # a reader sees the estimate borrowed


def test_remote_spec_mismatch_is_refused(catalog: Catalog, store: Store, tmp_path: Path) -> None:
    plan = plan_grid(catalog, "synthetic-ood", ["unet"], [8], [0], SMOKE, store, tmp_path)
    (job,) = grid_jobs(plan, store, tmp_path, "cpu", 1)
    spec = RunSpec.model_validate(job["spec"]).model_copy(update={"method_hash": "0" * 16})
    with pytest.raises(GensegBenchError, match="method spec differs"):
        run_one(**{**job, "spec": spec.model_dump()})
