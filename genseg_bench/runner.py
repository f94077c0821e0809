"""Grid -> jobs -> executor -> results, with resume.

A grid is task x methods x training sizes x seeds. Every job has a
deterministic id (:attr:`RunSpec.run_id`) and writes one result file, so the
grid is resumable (finished runs are skipped) and embarrassingly parallel: any
cluster engine can run :func:`run_one` for a list of jobs against a shared
result folder. :func:`run_one` takes plain values only (it loads its own data), so
Ray or Slurm can ship it to a worker; :mod:`genseg_bench.executors` runs the jobs
of a grid locally (one after the other in this process, the default), on Ray or on
Slurm, and the same function runs each of them. Before a run trains, its worker
takes the run's claim (:mod:`genseg_bench.claims`), so two grids on one result
folder never train the same run.

A job that raises, or whose loss diverges, is recorded as a failed result and
the grid goes on. Ctrl-C stops the grid; every finished run is already on disk.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from genseg_bench.catalog import Catalog
from genseg_bench.claims import DEFAULT_HEARTBEAT_S, DEFAULT_TIMEOUT_S, Claim, claim_path
from genseg_bench.data.sources import get_source, is_synthetic
from genseg_bench.data.splits import Split, Subset, load_or_make_split, unlabelled_pool
from genseg_bench.data.store import PreparedSet, Store, to_tensors
from genseg_bench.errors import DataError, GensegBenchError
from genseg_bench.methods.base import FitContext, FitResult, SegData
from genseg_bench.methods.registry import build_method
from genseg_bench.metrics import binarise, dice_per_case, jaccard_per_case
from genseg_bench.preflight import check_requirements, check_unlabelled
from genseg_bench.results import (
    SetAside,
    existing_status,
    git_commit,
    package_versions,
    result_path,
    set_aside_unreadable,
    write_result,
)
from genseg_bench.specs import (
    MethodSpec,
    Profile,
    RunResult,
    RunSpec,
    TaskSpec,
    TestSetResult,
    UnlabelledRecord,
    stable_hash,
)
from genseg_bench.values import (
    DEVICE_CHOICES,
    MAX_SEED,
    ValueCheckError,
    check_device_name,
    check_each_in_range,
    check_image_size,
    check_iterations,
    check_unique,
)

if TYPE_CHECKING:
    from genseg_bench.executors import Executor

DEFAULT_SEEDS = (0, 1, 2)


class Reporter(Protocol):
    """What the runner tells its caller (the CLI renders it with rich)."""

    def grid_started(self, total: int, skipped: int) -> None: ...
    def run_started(self, spec: RunSpec, iterations: int) -> None: ...
    def run_progress(self, iteration: int, total: int, metrics: dict[str, float]) -> None: ...
    def run_finished(self, result: RunResult) -> None: ...


class SilentReporter:
    """A reporter that reports nothing (library use, tests)."""

    def grid_started(self, total: int, skipped: int) -> None:
        return None

    def run_started(self, spec: RunSpec, iterations: int) -> None:
        return None

    def run_progress(self, iteration: int, total: int, metrics: dict[str, float]) -> None:
        return None

    def run_finished(self, result: RunResult) -> None:
        return None


def resolve_device(name: str, option: str = "--device") -> torch.device:
    """``auto`` picks CUDA when available, else the CPU; any other name must exist on this machine."""
    check_device_name(name, option)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueCheckError(f"{option} {name}: CUDA is not available here. Use {option} cpu or auto.")
        index = int(name.partition(":")[2] or 0)
        count = torch.cuda.device_count()
        if index >= count:
            raise ValueCheckError(
                f"{option} {name}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}."
            )
    if name == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueCheckError(
            f"{option} mps: Apple's MPS is not available here. Use one of {DEVICE_CHOICES}."
        )
    return torch.device(name)


def check_grid_values(sizes: Sequence[int], seeds: Sequence[int], profile: Profile) -> None:
    """Sizes, seeds and the profile's budget are in range, before any data is read.

    The CLI checks the same values with its option names; this guards library callers.
    """
    check_each_in_range(sizes, "sizes", 1)
    check_unique(sizes, "sizes")
    check_each_in_range(seeds, "seeds", 0, MAX_SEED)
    check_unique(seeds, "seeds")
    check_iterations(profile.iterations, f"profile {profile.name!r}: iterations")
    check_image_size(profile.image_size, f"profile {profile.name!r}: image_size")


def _multiples_near(size: int, step: int) -> str:
    below = (size // step) * step
    cands = [c for c in (below, below + step, below + 2 * step) if c >= max(step, 8) and c != size]
    return " or ".join(map(str, cands[:2]))


def check_model_input(
    task: TaskSpec, methods: Sequence[MethodSpec], size: int, option: str = "--image-size"
) -> None:
    """Every method's segmenter takes ``size``-pixel inputs; fails before training, saying what size fits.

    The check runs each model once on torch's ``meta`` device: shapes only, no
    memory and no arithmetic, so it costs well under a second even at 256 px, and
    it is exact for every backbone, including constraints no table here lists
    (smp's DeepLabV3+ wants multiples of its output stride, 16). A backbone the
    segmenter factory does not know belongs to a method that builds its own model
    (an outside package); a model that cannot be built on ``meta`` is left to the
    run itself. Neither is checked here.
    """
    from genseg_bench.methods.config import parse_config
    from genseg_bench.methods.registry import config_model

    seen: set[tuple[str, str]] = set()
    for m in methods:
        model = config_model(m.kind)
        others = parse_config(model, m.config, f"method {m.name!r}").other_networks() if model else []
        for backbone, encoder in [(m.backbone, m.encoder), *others]:
            if (backbone, encoder) in seen:
                continue
            seen.add((backbone, encoder))
            _check_one_network(task, m.name, backbone, encoder, size, option)


def _check_one_network(
    task: TaskSpec, method: str, backbone: str, encoder: str, size: int, option: str
) -> None:
    """:func:`check_model_input` for one network: a ``size``-pixel input gives a ``size``-pixel output."""
    from genseg_bench.models.segmenters import build_segmenter

    try:
        with torch.device("meta"):
            net = build_segmenter(backbone, task.channels, task.dims, encoder, None)
    except Exception:  # see check_model_input: the run reports what is wrong with this backbone
        return
    shape = (size,) * task.dims
    try:
        with torch.no_grad():
            out = net.eval()(torch.zeros(1, task.channels, *shape, device="meta"))
        if tuple(out.shape[2:]) != shape:
            raise ValueError(f"a {size}px input gives a {tuple(out.shape[2:])} output")
    except GensegBenchError as exc:  # the suite's own networks say which sizes they take
        raise ValueCheckError(
            f"{option} {size} does not fit method {method!r} (backbone {backbone}): {exc}"
        ) from None
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        stride = getattr(getattr(net, "encoder", None), "output_stride", None)
        fix = (
            f"it takes sides that are a multiple of {stride}, e.g. {option} {_multiples_near(size, stride)}"
            if isinstance(stride, int) and stride > 1
            else f"use a larger size, e.g. {option} 64"
        )
        raise ValueCheckError(
            f"{option} {size} does not fit method {method!r} (backbone {backbone}, encoder {encoder}): "
            f"{fix}. The model said: {reason}"
        ) from None


@dataclass
class TaskData:
    """A task's prepared data and split, loaded once for every job of the grid."""

    task: TaskSpec
    prepared: dict[str, PreparedSet]
    split: Split

    @property
    def fingerprints(self) -> dict[str, str]:
        return {s: p.fingerprint for s, p in sorted(self.prepared.items())}

    def train_source(self) -> PreparedSet:
        return self.prepared[self.task.train_source]


def run_image_size(task: TaskSpec, profile: Profile) -> int:
    """The side length models see: the profile's (quick: small) or the task's; 3D never upsamples."""
    size = profile.image_size or task.image_size
    return min(size, task.image_size) if task.dims == 3 else size


def _pick_prepared(store: Store, source: str, task: TaskSpec, run_size: int | None) -> PreparedSet:
    """The prepared copy to train from: the run's size, else the task's, else the smallest larger one.

    Users prepare real data once at the size they run at (``--size 128``) or at the
    task's size; either works, so a quick run never forces a second import.
    Synthetic sets are generated at the task's size.
    """
    if is_synthetic(source) or run_size is None:
        return store.ensure(source, task.image_size)
    for size in (run_size, task.image_size):
        if store.is_prepared(source, size):
            return store.load(source, size)
    larger = [s for s in store.prepared_sizes(source) if s >= run_size]
    if larger:
        return store.load(source, larger[0])
    return store.ensure(source, run_size)  # raises with the exact `data prepare` command


def missing_data(task: TaskSpec, store: Store, run_size: int | None = None) -> list[tuple[str, int]]:
    """(source, size to prepare) of each set :func:`load_task_data` would find unprepared, loading none.

    ``run --suite`` asks this for every task before the first one trains, so a missing
    set fails in seconds instead of after hours of the tasks before it.
    """
    missing = []
    for source in task.sources:
        if is_synthetic(source):
            continue
        sizes = [task.image_size] if run_size is None else [run_size, task.image_size]
        if any(store.is_prepared(source, s) for s in sizes):
            continue
        if run_size is not None and any(s >= run_size for s in store.prepared_sizes(source)):
            continue
        missing.append((source, run_size or task.image_size))
    return missing


def load_task_data(task: TaskSpec, store: Store, run_size: int | None = None) -> TaskData:
    """Load (or generate, for synthetic sets) every source of a task, and its split."""
    prepared = {src: _pick_prepared(store, src, task, run_size) for src in task.sources}
    for src, p in prepared.items():
        if p.dims != task.dims:
            raise DataError(f"{p.path}: {src} is {p.dims}D but task {task.id!r} is {task.dims}D.")
    train = prepared[task.train_source]
    group_fn = (
        None if task.split_group or is_synthetic(task.train_source) else get_source(task.train_source).group
    )
    split = load_or_make_split(
        train.path,
        train.case_ids,
        task.split_seed,
        task.test_fraction,
        task.validation,
        task.split_group,
        group_fn,
    )
    return TaskData(task=task, prepared=prepared, split=split)


def expand_grid(
    task: TaskSpec,
    methods: Sequence[MethodSpec],
    sizes: Sequence[int],
    seeds: Sequence[int],
    profile: Profile,
    data: TaskData,
    resample: bool = False,
) -> list[RunSpec]:
    """Every (method, size, seed) job of one task, in a stable order.

    ``resample``: each seed draws its own n labelled cases (recorded in the run id) instead of
    the paper's one fixed subset.
    """
    for n in sizes:  # fail before any training if a size is too large or too small to split
        for s in seeds if resample else seeds[:1]:
            data.split.subset(n, task.train_source, s if resample else None)
    return [
        RunSpec.for_job(task, m, n, s, profile, data.fingerprints, resample)
        for n in sizes
        for m in methods
        for s in seeds
    ]


def draw_unlabelled(task: TaskSpec, data: TaskData, subset: Subset) -> UnlabelledRecord | None:
    """The unlabelled pool of one run (:func:`~genseg_bench.data.splits.unlabelled_pool`); None without one.

    From the training source: its labelled pool (the split's non-test part) minus the
    run's n labelled cases, so never a validation or test image. From another source:
    all its cases (the task spec rejects a source that a test set reads). The split and
    the subset are inputs, never outputs: the pool cannot change which cases are labelled.
    """
    spec = task.unlabelled
    if spec is None:
        return None
    if spec.source == task.train_source:
        candidates = data.split.pool
        exclude = {*subset.train, *subset.val, *data.split.test}
    else:
        candidates, exclude = data.prepared[spec.source].case_ids, set()
    ids = unlabelled_pool(candidates, exclude, spec.size, task.split_seed, spec.source)
    return UnlabelledRecord(source=spec.source, requested=spec.size, size=len(ids), case_ids=ids)


def seg_data(p: PreparedSet, ids: list[str], size: int, channels: int, device: torch.device) -> SegData:
    """The cases `ids` of a prepared set as tensors at the run's side: public so benchmarks load what a run loads."""
    images, masks = to_tensors(p, p.index(ids), size, channels, device)
    return SegData(images=images, masks=masks, case_ids=list(ids))


def evaluate(predictor_predict, data: SegData, batch_size: int) -> TestSetResult:  # type: ignore[no-untyped-def]
    """Per-case Dice and Jaccard of a predictor on one test set."""
    dice, jac = [], []
    for i in range(0, len(data), batch_size):
        probs = predictor_predict(data.images[i : i + batch_size])
        pred = binarise(probs)
        target = data.masks[i : i + batch_size] > 0.5
        dice.append(dice_per_case(pred, target).cpu())
        jac.append(jaccard_per_case(pred, target).cpu())
    d = torch.cat(dice).tolist()
    j = torch.cat(jac).tolist()
    return TestSetResult(
        case_ids=data.case_ids, dice=d, jaccard=j, mean_dice=sum(d) / len(d), mean_jaccard=sum(j) / len(j)
    )


def final_network_record(
    fit: FitResult, selected: dict[str, TestSetResult], final: dict[str, TestSetResult]
) -> dict[str, Any] | None:
    """``extras["final_network"]``: the test scores of the network the budget ended with.

    The paper's rule scores the best-validation checkpoint, picked on a handful of validation
    images; this record sits beside it so a report can show both. ``selected`` is True when the
    checkpoint is the final network (its scores are then ``test_sets``' means, and the per-case
    lists are not repeated); with a separate final network (``fit.last_predictor``) its per-case
    ``dice`` / ``jaccard`` are stored in the order of ``test_sets``' ``case_ids``. None when
    neither holds (a method that keeps no copy of its final weights).
    """
    is_final = fit.last_predictor is None and fit.best_iteration == fit.iterations
    if not final and not is_final:
        return None
    source = selected if is_final else final
    sets: dict[str, dict[str, Any]] = {}
    for name, r in source.items():
        entry: dict[str, Any] = {"mean_dice": r.mean_dice, "mean_jaccard": r.mean_jaccard}
        if not is_final:
            entry.update(dice=r.dice, jaccard=r.jaccard)
        sets[name] = entry
    return {
        "iteration": fit.iterations,
        "selected_iteration": fit.best_iteration,
        "selected": is_final,
        "test_sets": sets,
    }


def _describe(method: MethodSpec, dims: int) -> dict[str, str]:
    """The segmenter a method builds (an unknown backbone is reported by the run itself, as failed)."""
    from genseg_bench.models.segmenters import describe_segmenter

    try:
        return describe_segmenter(method.backbone, method.encoder, method.encoder_weights, dims)
    except GensegBenchError:
        return {}


def run_job(
    spec: RunSpec,
    task: TaskSpec,
    method_spec: MethodSpec,
    profile: Profile,
    data: TaskData,
    device: torch.device,
    results_dir: Path,
    reporter: Reporter | None = None,
) -> RunResult:
    """Train one method once and evaluate it on every test set; always writes a result file."""
    reporter = reporter or SilentReporter()
    size = run_image_size(task, profile)
    start = time.perf_counter()
    subset = data.split.subset(
        spec.train_size, task.train_source, spec.seed if spec.subset == "resampled" else None
    )
    pool = draw_unlabelled(task, data, subset)
    base = dict(
        run_id=spec.run_id,
        spec=spec,
        metric=task.metric,
        train_cases=subset.train,
        val_cases=subset.val,
        unlabelled=pool,
        device=str(device),
        versions={**package_versions(), **compute_environment(device)},
        git_commit=git_commit(),
        method_config=method_spec.model_dump(),
        segmenter=_describe(method_spec, task.dims),
        profile=profile.model_dump(),
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    reporter.run_started(spec, profile.iterations)
    try:
        src = data.train_source()
        train = seg_data(src, subset.train, size, task.channels, device)
        val = seg_data(src, subset.val, size, task.channels, device)
        unlabelled = None
        if pool is not None and pool.case_ids:
            unlabelled = seg_data(
                data.prepared[pool.source], pool.case_ids, size, task.channels, device
            ).images
        out_dir = Path(results_dir) / task.id / "artifacts" / spec.run_id
        ctx = FitContext(
            device=device,
            seed=spec.seed,
            profile=profile,
            out_dir=out_dir,
            unlabelled=unlabelled,
            progress=reporter.run_progress,
            metric=task.metric,
        )
        method = build_method(method_spec)
        fit = method.fit(train, val, ctx)
        del train, val, unlabelled
        scores: dict[str, TestSetResult] = {}
        final: dict[str, TestSetResult] = {}
        eval_batch = max(profile.batch_size, 16)
        for ts in task.test_sets:
            p = data.prepared[ts.source]
            ids = data.split.test if ts.split == "test" else p.case_ids
            test = seg_data(p, ids, size, task.channels, device)
            scores[ts.name] = evaluate(fit.predictor.predict, test, eval_batch)
            if fit.last_predictor is not None:
                final[ts.name] = evaluate(fit.last_predictor.predict, test, eval_batch)
        extras = dict(fit.extras)
        final_record = final_network_record(fit, scores, final)
        if final_record is not None:
            extras["final_network"] = final_record
        if fit.segmenter is not None:  # a method that builds its own network says what it built
            base["segmenter"] = fit.segmenter
        result = RunResult(
            **base,
            status="ok",
            test_sets=scores,
            best_val_score=fit.best_val_score,
            best_iteration=fit.best_iteration,
            iterations=fit.iterations,
            wall_time_s=time.perf_counter() - start,
            budget=dict(fit.budget),
            trajectory=json.loads(json.dumps(fit.trajectory)),
            extras=json.loads(json.dumps(extras)),  # JSON-native, as it reads back from disk
            artifacts=[
                str(Path(a).relative_to(results_dir)) if Path(a).is_relative_to(results_dir) else str(a)
                for a in fit.artifacts
            ],
        )
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a failing run is recorded and the grid goes on
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        tb = traceback.format_exc(limit=-3)
        result = RunResult(
            **base, status="failed", error=f"{detail}\n{tb}", wall_time_s=time.perf_counter() - start
        )
    write_result(results_dir, result)
    reporter.run_finished(result)
    return result


def default_threads() -> int:
    """The cores this process may use (its CPU affinity mask, which Slurm, taskset and containers set)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


_DATA_CACHE: dict[tuple[str, str, int | None], TaskData] = {}
"""The last task's data, per process: a local grid, or a Ray worker that runs many jobs of one task,
loads it once instead of once per run."""


def _task_data(task: TaskSpec, store: Store, run_size: int | None) -> TaskData:
    key = (str(Path(store.root).resolve()), stable_hash(task), run_size)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()
        _DATA_CACHE[key] = load_task_data(task, store, run_size)
    return _DATA_CACHE[key]


def remember_task_data(task: TaskSpec, store: Store, run_size: int | None, data: TaskData) -> None:
    """Seed :func:`run_one`'s cache with data the grid already loaded (the local executor shares it)."""
    _DATA_CACHE.clear()
    _DATA_CACHE[(str(Path(store.root).resolve()), stable_hash(task), run_size)] = data


def _mtime_ns(path: Path) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return None


OUTCOMES = ("ran", "busy", "done_elsewhere")
"""What :func:`run_one` did: trained the run (``ran``: ``result`` holds it, ok or failed), found its claim
held by a live owner (``busy``), or found that another grid wrote its result after this grid planned it
(``done_elsewhere``)."""


def compute_environment(device: torch.device) -> dict[str, str]:
    """What a score depends on besides the spec and the packages: threads and kernel library (CPU), or the GPU.

    On the CPU one run id scored 0.283 with 2 torch threads and 0.021 with 1 (each setting deterministic
    on its own): reductions split across threads sum in another order, and a short low-n run amplifies
    the difference. So every result records the thread count, and the report flags rows whose runs
    differ in it.
    """
    if device.type == "cuda":
        return {
            "device_name": torch.cuda.get_device_name(device),
            "kernels": f"cuDNN {torch.backends.cudnn.version()}",
        }
    onednn = torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
    return {"torch_threads": str(torch.get_num_threads()), "kernels": "oneDNN" if onednn else "native"}


def run_one(
    task: str,
    spec: dict[str, Any],
    store: str,
    results: str,
    device: str = "auto",
    threads: int | None = None,
    *,
    method: dict[str, Any] | None = None,
    profile: dict[str, Any] | None = None,
    task_spec: dict[str, Any] | None = None,
    planned_mtime_ns: int | None = None,
    claim_timeout_s: float = DEFAULT_TIMEOUT_S,
    heartbeat_s: float = DEFAULT_HEARTBEAT_S,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """One job of a grid from plain values: what any engine ships to a worker (and the local executor runs).

    ``spec`` is the :class:`RunSpec` (``model_dump()``); ``method``, ``profile`` and ``task_spec`` are the
    dumped specs the grid expanded it from (a profile may carry ``--iterations`` overrides, a method may come
    from outside the shipped catalog); without them the worker reads the catalog and the named profile. Their
    hashes must match the spec's, so a worker on another checkout cannot write a result under this run's id.
    ``planned_mtime_ns`` is the result file's modification time when the grid planned the job (None: absent):
    a file that changed since was written by another grid, and the run is not done again.

    The worker takes the run's claim, loads its own data, sets ``threads`` torch threads, trains, writes the
    result atomically (:func:`run_job`) and releases the claim. Returns ``{"run_id", "outcome", "result",
    "holder", "host", "pid"}`` (``outcome`` in :data:`OUTCOMES`; ``result`` a JSON dict of the RunResult).
    ``reporter`` is for in-process callers only; remote workers report through the returned value.
    """
    run_spec = RunSpec.model_validate(spec)
    catalog = Catalog.load() if task_spec is None or method is None else None
    task_obj = TaskSpec.model_validate(task_spec) if task_spec is not None else catalog.task(task)  # type: ignore[union-attr]
    method_obj = (
        MethodSpec.model_validate(method) if method is not None else catalog.method(run_spec.method)  # type: ignore[union-attr]
    )
    if profile is not None:
        profile_obj = Profile.model_validate(profile)
    else:
        from genseg_bench.profiles import get_profile

        profile_obj = get_profile(run_spec.profile)
    for what, have, want in (
        ("task", stable_hash(task_obj), run_spec.task_hash),
        ("method", method_obj.fingerprint(), run_spec.method_hash),
        ("profile", stable_hash(profile_obj), run_spec.profile_hash),
    ):
        if have != want:
            raise GensegBenchError(
                f"run {run_spec.run_id}: this worker's {what} spec differs from the grid's "
                f"(hash {have} != {want}); install the same genseg-bench on every worker."
            )
    results_dir = Path(results)
    out: dict[str, Any] = {
        "run_id": run_spec.run_id,
        "outcome": "ran",
        "result": None,
        "holder": "",
        "host": os.uname().nodename,
        "pid": os.getpid(),
    }
    path = result_path(results_dir, run_spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    claim = Claim(claim_path(path), heartbeat_s=heartbeat_s, timeout_s=claim_timeout_s)
    if not claim.acquire():
        out["outcome"] = "busy"
        out["holder"] = claim.holder.describe() if claim.holder else "unknown owner"
        return out
    with claim:
        if _mtime_ns(path) != planned_mtime_ns:  # written (or moved aside) by another grid since planned
            out["outcome"] = "done_elsewhere"
            return out
        if threads:
            torch.set_num_threads(int(threads))
        dev = resolve_device(device)
        st = Store(Path(store))
        data = _task_data(task_obj, st, run_image_size(task_obj, profile_obj))
        result = run_job(run_spec, task_obj, method_obj, profile_obj, data, dev, results_dir, reporter)
    out["result"] = result.model_dump(mode="json")
    return out


@dataclass
class GridSummary:
    """What a grid run did."""

    specs: list[RunSpec]
    ran: list[RunResult] = field(default_factory=list)
    skipped: list[RunSpec] = field(default_factory=list)
    set_aside: list[SetAside] = field(default_factory=list)
    """Result files this version could not read, moved aside before their runs were done again."""
    elsewhere: list[tuple[RunSpec, str]] = field(default_factory=list)
    """Runs another grid or worker was training (its claim) or finished after this grid planned them."""
    lost: list[tuple[RunSpec, str]] = field(default_factory=list)
    """Runs whose worker died without a result (killed, out of memory): a rerun does them again."""

    @property
    def failed(self) -> list[RunResult]:
        return [r for r in self.ran if r.status == "failed"]


@dataclass
class GridPlan:
    """A grid's jobs, expanded and checked, with what is already done: what every executor runs."""

    task: TaskSpec
    methods: dict[str, MethodSpec]
    profile: Profile
    specs: list[RunSpec]
    todo: list[RunSpec]
    summary: GridSummary
    planned_mtime_ns: dict[str, int | None]


def plan_grid(
    catalog: Catalog,
    task_id: str,
    method_names: Sequence[str] | None,
    sizes: Sequence[int] | None,
    seeds: Sequence[int],
    profile: Profile,
    store: Store,
    results_dir: Path,
    retry_failed: bool = False,
    resample: bool = False,
) -> GridPlan:
    """Check every value, load the data once, expand the grid and find the runs still to do.

    A result file that cannot be read is moved aside (``summary.set_aside``), never overwritten.
    """
    task = catalog.task(task_id)
    methods = [catalog.method(m) for m in (method_names or task.default_methods)]
    sizes = list(sizes or task.train_sizes)
    check_grid_values(sizes, seeds, profile)
    check_unlabelled(task, methods)
    check_requirements(methods)
    check_model_input(task, methods, run_image_size(task, profile))
    run_size = run_image_size(task, profile)
    data = load_task_data(task, store, run_size)
    remember_task_data(task, store, run_size, data)
    specs = expand_grid(task, methods, sizes, seeds, profile, data, resample)
    summary = GridSummary(specs=specs)
    todo = []
    planned: dict[str, int | None] = {}
    for spec in specs:
        aside = set_aside_unreadable(result_path(results_dir, spec))
        if aside is not None:
            summary.set_aside.append(aside)
        status = existing_status(results_dir, spec)
        if status == "ok" or (status == "failed" and not retry_failed):
            summary.skipped.append(spec)
        else:
            todo.append(spec)
            planned[spec.run_id] = _mtime_ns(result_path(results_dir, spec))
    return GridPlan(task, {m.name: m for m in methods}, profile, specs, todo, summary, planned)


def grid_jobs(
    plan: GridPlan,
    store: Store,
    results_dir: Path,
    device: str,
    threads: int | None,
    claim_timeout_s: float = DEFAULT_TIMEOUT_S,
) -> list[dict[str, Any]]:
    """The keyword arguments of :func:`run_one` for every run still to do: plain, picklable values."""
    return [
        dict(
            task=plan.task.id,
            spec=spec.model_dump(mode="json"),
            store=str(Path(store.root).resolve()),
            results=str(Path(results_dir).resolve()),
            device=device,
            threads=threads,
            method=plan.methods[spec.method].model_dump(mode="json"),
            profile=plan.profile.model_dump(mode="json"),
            task_spec=plan.task.model_dump(mode="json"),
            planned_mtime_ns=plan.planned_mtime_ns[spec.run_id],
            claim_timeout_s=claim_timeout_s,
        )
        for spec in plan.todo
    ]


def run_grid(
    catalog: Catalog,
    task_id: str,
    method_names: Sequence[str] | None,
    sizes: Sequence[int] | None,
    seeds: Sequence[int],
    profile: Profile,
    store: Store,
    results_dir: Path,
    device: torch.device | str,
    reporter: Reporter | None = None,
    retry_failed: bool = False,
    resample: bool = False,
    executor: Executor | None = None,
    threads: int | None = None,
    claim_timeout_s: float = DEFAULT_TIMEOUT_S,
) -> GridSummary:
    """Run every job of a grid that has not finished yet (failed runs too when ``retry_failed``).

    Every value is checked before data is read or a model trained; a result file that
    cannot be read is moved aside (``summary.set_aside``), never overwritten. ``executor``
    (default: :class:`~genseg_bench.executors.LocalExecutor`) runs the jobs; every executor
    runs :func:`run_one`, so skip-finished, retry-failed, claims and the result files are
    the same under each. ``threads``: torch threads per run (default: the executor's share).
    """
    from genseg_bench.executors import LocalExecutor, collect

    reporter = reporter or SilentReporter()
    executor = executor or LocalExecutor()
    plan = plan_grid(
        catalog, task_id, method_names, sizes, seeds, profile, store, results_dir, retry_failed, resample
    )
    reporter.grid_started(len(plan.specs), len(plan.summary.skipped))
    jobs = grid_jobs(
        plan, store, results_dir, str(device), threads or executor.threads_per_run(), claim_timeout_s
    )
    collect(executor, plan, jobs, reporter)
    return plan.summary
