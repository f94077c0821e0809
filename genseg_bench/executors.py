"""Executors: who runs a grid's jobs. Local (this process), Ray, or Slurm through submitit.

Every executor runs the same picklable job, :func:`genseg_bench.runner.run_one`,
with the same plain keyword arguments (:func:`genseg_bench.runner.grid_jobs`), so
what is skipped, what is retried, the claims that keep two grids from training
one run twice and the result files are the same whichever engine runs it. There
is no scheduler here: Ray places tasks on its cluster, Slurm queues the job
array; this module only hands them the jobs and collects what comes back.

* :class:`LocalExecutor` (the default) runs the jobs one after the other in this
  process, with the grid's live progress (bars or log lines).
* :class:`RayExecutor` starts Ray on this machine (``ray.init()``) or joins a
  cluster (``address``) and runs one Ray task per run, each asking for
  ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs; Ray runs as many at once as
  the resources allow. Workers' log lines reach the driver through Ray.
* :class:`SlurmExecutor` submits one job array (submitit's ``AutoExecutor`` and
  ``map_array``) with the partition, time limit, GPUs, CPUs and array
  parallelism given; on a machine without Slurm, submitit's local executor runs
  the same jobs as subprocesses here (the tests run that path), at most
  ``array_parallelism`` at a time.

Ray and submitit are optional (``pip install 'genseg-bench[ray]'`` or
``[slurm]``) and are imported only when their executor runs.
"""

from __future__ import annotations

import importlib
import shutil
import time
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from genseg_bench.errors import GensegBenchError

if TYPE_CHECKING:
    from genseg_bench.runner import GridPlan, Reporter

EXECUTORS = ("local", "ray", "slurm")


def require(module: str, extra: str) -> ModuleType:
    """Import an optional engine, or fail with the install command that adds it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise GensegBenchError(
            f"--executor {extra} needs {module}, which is not installed: pip install 'genseg-bench[{extra}]' "
            f"({exc})"
        ) from None


class Executor(Protocol):
    """Runs :func:`~genseg_bench.runner.run_one` for each job and yields its outcomes as they complete."""

    name: str
    reports_progress: bool
    """True when the jobs call the grid's reporter themselves (in-process); else :func:`collect` reports
    each run when its outcome arrives."""

    def threads_per_run(self) -> int: ...
    def resources(self) -> dict[str, Any]: ...
    def map(self, jobs: Sequence[dict[str, Any]], reporter: Reporter) -> Iterator[dict[str, Any]]: ...
    def close(self) -> None:
        """Release what the executor started (a local Ray), once every grid of a command is done."""


def _lost(job: dict[str, Any], why: str) -> dict[str, Any]:
    from genseg_bench.specs import RunSpec

    return {"run_id": RunSpec.model_validate(job["spec"]).run_id, "outcome": "lost", "error": why}


def run_job_kwargs(job: dict[str, Any]) -> dict[str, Any]:
    """``run_one(**job)``: one positional argument, as ``map_array`` and Ray tasks pass it."""
    from genseg_bench.runner import run_one

    return run_one(**job)


def _worker_entry(job: dict[str, Any]) -> dict[str, Any]:
    """A remote worker's job: its validations go to its own stdout (Ray forwards it; Slurm logs it)."""
    import sys

    from genseg_bench.progress import LogReporter
    from genseg_bench.runner import run_one

    return run_one(**job, reporter=LogReporter(sys.stdout))


@dataclass
class LocalExecutor:
    """One job after the other in this process; ``threads`` torch threads (default: the affinity mask)."""

    threads: int | None = None
    name: str = "local"
    reports_progress: bool = True

    def threads_per_run(self) -> int:
        from genseg_bench.runner import default_threads

        return self.threads or default_threads()

    def resources(self) -> dict[str, Any]:
        return {"threads": self.threads_per_run()}

    def map(self, jobs: Sequence[dict[str, Any]], reporter: Reporter) -> Iterator[dict[str, Any]]:
        from genseg_bench.runner import run_one

        for job in jobs:
            yield run_one(**job, reporter=reporter)

    def close(self) -> None:
        return None


@dataclass
class RayExecutor:
    """One Ray task per run (module docstring). ``address`` None: a Ray started on this machine."""

    address: str | None = None
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0
    num_cpus: int | None = None
    """CPUs of a Ray started here (default: Ray's, every core); ignored when joining a cluster."""
    name: str = "ray"
    reports_progress: bool = False
    started: bool = False
    """Whether this executor started Ray (then :meth:`close` stops it); every grid of a suite reuses it."""

    def threads_per_run(self) -> int:
        return max(1, int(self.cpus_per_run))

    def resources(self) -> dict[str, Any]:
        return {"cpus": self.cpus_per_run, "gpus": self.gpus_per_run}

    def map(self, jobs: Sequence[dict[str, Any]], reporter: Reporter) -> Iterator[dict[str, Any]]:
        ray = require("ray", "ray")
        if not jobs:
            return
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
            if self.address:
                kwargs["address"] = self.address
            elif self.num_cpus is not None:
                kwargs["num_cpus"] = self.num_cpus
            ray.init(**kwargs)
            self.started = True
        remote = ray.remote(_worker_entry).options(
            num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run, max_retries=0
        )
        refs = {remote.remote(job): job for job in jobs}
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    try:
                        yield ray.get(ref)
                    except ray.exceptions.RayError as exc:  # the worker died, or the task raised
                        yield _lost(refs[ref], f"Ray task ended without a result: {exc}")
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise

    def close(self) -> None:
        if self.started:
            import ray

            ray.shutdown()
            self.started = False


SLURM_KEYS = {
    "partition": str,
    "time": int,
    "array_parallelism": int,
    "gpus_per_run": int,
    "cpus_per_run": int,
    "mem_gb": float,
    "cluster": str,
    "folder": str,
    "parameters": dict,
}
"""Keys of a ``--slurm-config`` TOML file (a ``[slurm]`` table or top-level keys); ``parameters`` is
passed to submitit's ``update_parameters`` as is (``slurm_account``, ``slurm_qos``, ``slurm_constraint``...)."""


def read_slurm_config(path: Path) -> dict[str, Any]:
    """A ``--slurm-config`` file's settings, each key checked (unknown keys and wrong types are errors)."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise GensegBenchError(f"--slurm-config {path}: cannot read it ({exc.strerror}).") from None
    except tomllib.TOMLDecodeError as exc:
        raise GensegBenchError(f"--slurm-config {path}: not valid TOML ({exc}).") from None
    table = data.get("slurm", data)
    for key, value in table.items():
        if key not in SLURM_KEYS:
            raise GensegBenchError(
                f"--slurm-config {path}: unknown key {key!r}; known: {', '.join(SLURM_KEYS)}."
            )
        want = SLURM_KEYS[key]
        ok = isinstance(value, (int, float)) if want is float else isinstance(value, want)
        if not ok or isinstance(value, bool):
            raise GensegBenchError(f"--slurm-config {path}: {key} must be a {want.__name__}, not {value!r}.")
    return dict(table)


@dataclass
class SlurmExecutor:
    """A submitit job array (module docstring); ``cluster`` None: Slurm if ``sbatch`` is here, else local."""

    folder: Path
    partition: str | None = None
    time_min: int = 120
    gpus_per_run: int = 0
    cpus_per_run: int = 1
    array_parallelism: int = 8
    mem_gb: float | None = None
    cluster: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    poll_s: float | None = None
    name: str = "slurm"
    reports_progress: bool = False

    def threads_per_run(self) -> int:
        return max(1, int(self.cpus_per_run))

    def close(self) -> None:
        return None

    def which_cluster(self) -> str:
        return self.cluster or ("slurm" if shutil.which("sbatch") else "local")

    def resources(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "cpus": self.cpus_per_run,
            "gpus": self.gpus_per_run,
            "time_min": self.time_min,
        }
        if self.partition:
            out["partition"] = self.partition
        return out

    def _executor(self, submitit: ModuleType) -> Any:
        cluster = self.which_cluster()
        ex = submitit.AutoExecutor(folder=str(Path(self.folder) / "%j"), cluster=cluster)
        params: dict[str, Any] = {
            "name": "genseg-bench",
            "timeout_min": int(self.time_min),
            "cpus_per_task": int(self.cpus_per_run),
            "gpus_per_node": int(self.gpus_per_run),
            "tasks_per_node": 1,
            "nodes": 1,
        }
        if self.mem_gb is not None:
            params["mem_gb"] = float(self.mem_gb)
        if cluster == "slurm":
            params["slurm_array_parallelism"] = int(self.array_parallelism)
            if self.partition:
                params["slurm_partition"] = self.partition
        params.update(self.parameters)
        ex.update_parameters(**params)
        return ex

    def map(self, jobs: Sequence[dict[str, Any]], reporter: Reporter) -> Iterator[dict[str, Any]]:
        submitit = require("submitit", "slurm")
        if not jobs:
            return
        ex = self._executor(submitit)
        on_slurm = self.which_cluster() == "slurm"
        poll = self.poll_s if self.poll_s is not None else (10.0 if on_slurm else 0.5)
        # Slurm throttles the array itself (%parallelism); the local executor would start every job at
        # once, so it is fed windows of at most array_parallelism jobs, each one map_array call
        width = len(jobs) if on_slurm else max(1, int(self.array_parallelism))
        queue = list(jobs)
        running: list[tuple[Any, dict[str, Any]]] = []
        try:
            while queue or running:
                free = width - len(running)
                if queue and free > 0:
                    batch, queue = queue[:free], queue[free:]
                    running += list(zip(ex.map_array(_worker_entry, batch), batch, strict=True))
                finished = [(j, job) for j, job in running if j.done()]
                if not finished:
                    time.sleep(poll)
                    continue
                for j, job in finished:
                    running.remove((j, job))
                    try:
                        yield j.result()
                    except Exception as exc:  # submitit: the job failed or was killed; its log says why
                        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                        yield _lost(
                            job, f"job {j.job_id} ended without a result ({first}); log: {j.paths.stdout}"
                        )
        except BaseException:
            for j, _ in running:
                j.cancel(check=False)
            raise


def collect(executor: Executor, plan: GridPlan, jobs: Sequence[dict[str, Any]], reporter: Reporter) -> None:
    """Run ``jobs`` on ``executor`` and record each outcome in ``plan.summary`` (reporting remote runs)."""
    from genseg_bench.specs import RunResult

    by_id = {s.run_id: s for s in plan.todo}
    summary = plan.summary
    for out in executor.map(jobs, reporter):
        spec = by_id[out["run_id"]]
        if out["outcome"] == "ran":
            result = RunResult.model_validate(out["result"])
            summary.ran.append(result)
            if not executor.reports_progress:
                reporter.run_finished(result)
        elif out["outcome"] == "busy":
            summary.elsewhere.append((spec, f"claimed by {out['holder']}"))
        elif out["outcome"] == "done_elsewhere":
            summary.elsewhere.append((spec, "finished by another grid"))
        else:
            summary.lost.append((spec, str(out.get("error", "no result"))))


def make_executor(
    name: str,
    *,
    threads: int | None = None,
    results: Path = Path("results"),
    ray_address: str | None = None,
    cpus_per_run: float | None = None,
    gpus_per_run: float | None = None,
    slurm_partition: str | None = None,
    slurm_time: int | None = None,
    slurm_array_parallelism: int | None = None,
    slurm_config: Path | None = None,
) -> Executor:
    """The executor the CLI's options describe (options given win over ``--slurm-config``'s values)."""
    if name not in EXECUTORS:
        raise GensegBenchError(f"--executor {name}: choose one of {', '.join(EXECUTORS)}.")
    if name == "local":
        return LocalExecutor(threads=threads)
    if name == "ray":
        return RayExecutor(
            address=ray_address, cpus_per_run=cpus_per_run or 1.0, gpus_per_run=gpus_per_run or 0.0
        )
    cfg = read_slurm_config(slurm_config) if slurm_config else {}
    return SlurmExecutor(
        folder=Path(cfg.get("folder", Path(results) / ".submitit")),
        partition=slurm_partition or cfg.get("partition"),
        time_min=slurm_time or cfg.get("time", 120),
        gpus_per_run=int(gpus_per_run if gpus_per_run is not None else cfg.get("gpus_per_run", 0)),
        cpus_per_run=int(cpus_per_run if cpus_per_run is not None else cfg.get("cpus_per_run", 1)),
        array_parallelism=slurm_array_parallelism or cfg.get("array_parallelism", 8),
        mem_gb=cfg.get("mem_gb"),
        cluster=cfg.get("cluster"),
        parameters=dict(cfg.get("parameters", {})),
    )


# --- dry run: the job list, each job's resources and an estimate of device time ------------------

SPEED_TABLE = Path(__file__).resolve().parents[1] / "benchmarks" / "iteration_times.json"
"""Seconds per training iteration, written by ``benchmarks/genseg_speed.py --table`` (in a checkout)."""

COST_KEYS = {
    "supervised": "supervised {backbone} step",
    "genseg": "GenSeg end-to-end step",
    "genseg_joint": "GenSeg joint step (no A level)",
    "separate": "Separate segmenter step",
}
"""The table's per-iteration keys and the line of ``genseg_speed.py`` each one is the median of
(``{backbone}``: the measured backbone's name)."""


def load_speed_table(path: Path | None = None) -> list[dict[str, Any]]:
    """The table's entries ([] when the file is absent, as in an installed copy without the checkout)."""
    import json

    path = Path(path) if path is not None else SPEED_TABLE
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise GensegBenchError(
            f"{path}: not valid JSON ({exc}); rewrite it with genseg_speed.py --table."
        ) from None
    return list(data.get("entries", []))


def pick_speed_entry(
    entries: Sequence[dict[str, Any]], device_kind: str, backbone: str, dims: int = 2
) -> dict[str, Any] | None:
    """The measurement closest to a job: its device kind if measured (else the CPU's), then dims, backbone."""
    for kind in (device_kind, "cpu"):
        same = [e for e in entries if e.get("device") == kind]
        if same:
            return max(same, key=lambda e: (e.get("dims", 2) == dims, e.get("backbone") == backbone))
    return None


def cost_key(method: Any) -> tuple[str, float, str]:
    """(table key, multiplier, note) of one iteration of ``method`` (a MethodSpec)."""
    from genseg_bench.methods.config import GenSegConfig, SupervisedConfig, parse_config

    if method.kind == "genseg":
        cfg = GenSegConfig.from_spec(method)
        return {"end-to-end": "genseg", "joint": "genseg_joint", "separate": "separate"}[cfg.mode], 1.0, ""
    if method.kind == "supervised":
        cfg = parse_config(SupervisedConfig, method.config, f"method {method.name!r}")
        return "supervised", 2.0 if cfg.second_copy else 1.0, ""
    return "supervised", 1.0, f"kind {method.kind}: costed as a supervised step"


def estimate_seconds(
    method: Any, iterations: int, image_size: int, dims: int, batch_size: int, entry: dict[str, Any]
) -> tuple[float, str]:
    """Training seconds of one run from a measured entry, scaled by pixels (voxels) and batch; and a note.

    The scaling is linear in the number of pixels per batch, which convolutions roughly follow once the
    device is busy; validation and test evaluation are not counted (a few percent of a run).
    """
    key, mult, note = cost_key(method)
    per_it = entry["seconds_per_iteration"]
    if key not in per_it:
        key, note = "supervised", f"no {key} measurement: costed as a supervised step"
    entry_dims = int(entry.get("dims", 2))
    scale = (image_size**dims / float(entry["image_size"]) ** entry_dims) * (
        batch_size / float(entry["batch_size"])
    )
    if dims != entry_dims:
        note = (note + "; " if note else "") + f"{dims}D from a {entry_dims}D measurement: rough"
    measured = entry.get("backbone")
    if measured and getattr(method, "backbone", measured) != measured:
        note = (note + "; " if note else "") + f"{method.backbone} costed as the measured {measured}"
    seconds = iterations * float(per_it[key]) * mult
    if (
        key == "separate" and "genseg_joint" in per_it
    ):  # Separate pre-trains the GAN first: joint minus S step
        from genseg_bench.methods.config import GenSegConfig

        gan_its = GenSegConfig.from_spec(method).gan_iterations or iterations
        seconds += gan_its * max(float(per_it["genseg_joint"]) - float(per_it["separate"]), 0.0)
    return seconds * scale, note


@dataclass
class PlannedJob:
    """One row of a dry run."""

    task: str
    method: str
    train_size: int
    seed: int
    image_size: int
    iterations: int
    status: str
    seconds: float | None
    note: str


def device_kind(executor: Executor, device: str) -> str:
    """``cuda`` when the runs will train on a GPU, else ``cpu`` (which speed measurement applies)."""
    gpus = float(executor.resources().get("gpus", 0) or 0)
    if device.startswith("cuda") or (executor.name != "local" and gpus > 0):
        return "cuda"
    return "cpu"


def dry_run(
    catalog: Any,
    grids: Sequence[tuple[str, Sequence[int] | None]],
    method_names: Sequence[str] | None,
    seeds: Sequence[int],
    profile: Any,
    results: Path,
    store: Any,
    executor: Executor,
    device: str,
    retry_failed: bool = False,
    table: Path | None = None,
    resample: bool = False,
) -> tuple[list[PlannedJob], dict[str, Any] | None]:
    """Every job the grids would run, without training any: status, resources and estimated seconds.

    Run ids depend on the data's fingerprints, so a job's status (``done`` / ``todo``) is known only
    where its task's data is prepared here; elsewhere it says so. Returns the rows and the speed entry
    used (None: no table, no estimate).
    """
    from genseg_bench.results import existing_status, result_path
    from genseg_bench.specs import RunSpec

    entries = load_speed_table(table)
    kind = device_kind(executor, device)
    rows: list[PlannedJob] = []
    used: dict[str, Any] | None = None
    from genseg_bench.preflight import check_requirements, check_unlabelled

    for task_id, sizes in grids:
        task = catalog.task(task_id)
        methods = [catalog.method(m) for m in (method_names or task.default_methods)]
        # the errors a real run would stop at (torch-free): a dry run never lists a job that cannot start
        check_unlabelled(task, methods)
        check_requirements(methods)
        size = profile.image_size or task.image_size
        size = min(size, task.image_size) if task.dims == 3 else size
        fingerprints = _fingerprints_if_prepared(task, store, size)
        for n in sizes or task.train_sizes:
            for m in methods:
                entry = pick_speed_entry(entries, kind, m.backbone, task.dims)
                for seed in seeds:
                    status = "todo (data not prepared here)"
                    if fingerprints is not None:
                        spec = RunSpec.for_job(task, m, n, seed, profile, fingerprints, resample)
                        st = existing_status(results, spec)
                        done = st == "ok" or (st == "failed" and not retry_failed)
                        status = f"done ({st})" if done else "todo"
                        if result_path(results, spec).with_suffix(".claim").exists():
                            status += ", claimed"
                    seconds, note = (None, "no speed table")
                    if entry is not None:
                        used = used or entry
                        seconds, note = estimate_seconds(
                            m, profile.iterations, size, task.dims, profile.batch_size, entry
                        )
                        if entry.get("device") != kind:
                            note = (note + "; " if note else "") + "CPU measurement (no GPU numbers)"
                    rows.append(
                        PlannedJob(task.id, m.name, n, seed, size, profile.iterations, status, seconds, note)
                    )
    return rows, used


def _fingerprints_if_prepared(task: Any, store: Any, size: int) -> dict[str, str] | None:
    """The task's data fingerprints where every source is prepared (synthetic: generated), else None."""
    from genseg_bench.data.sources import is_synthetic
    from genseg_bench.runner import missing_data

    if any(not is_synthetic(s) for s in task.sources) and missing_data(task, store, size):
        return None
    try:
        from genseg_bench.runner import load_task_data

        data = load_task_data(task, store, size)
    except GensegBenchError:
        return None
    return data.fingerprints
