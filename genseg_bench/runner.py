"""Grid -> jobs -> executor -> results, with resume.

A grid is task x methods x training sizes x seeds. Every job has a
deterministic id (:attr:`RunSpec.run_id`) and writes one result file, so the
grid is resumable (finished runs are skipped) and embarrassingly parallel: any
cluster engine can run :func:`run_job` for a list of specs against a shared
result folder. The local executor runs them one after the other in this process.

A job that raises, or whose loss diverges, is recorded as a failed result and
the grid goes on. Ctrl-C stops the grid; every finished run is already on disk.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from genseg_bench.catalog import Catalog
from genseg_bench.data.sources import get_source, is_synthetic
from genseg_bench.data.splits import Split, load_or_make_split
from genseg_bench.data.store import PreparedSet, Store, to_tensors
from genseg_bench.errors import DataError, GensegBenchError
from genseg_bench.methods.base import FitContext, SegData
from genseg_bench.methods.registry import build_method
from genseg_bench.metrics import binarise, dice_per_case, jaccard_per_case
from genseg_bench.results import (
    SetAside,
    existing_status,
    git_commit,
    package_versions,
    result_path,
    set_aside_unreadable,
    write_result,
)
from genseg_bench.specs import MethodSpec, Profile, RunResult, RunSpec, TaskSpec, TestSetResult, stable_hash
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
    from genseg_bench.models.segmenters import build_segmenter

    seen: set[tuple[str, str]] = set()
    for m in methods:
        if (m.backbone, m.encoder) in seen:
            continue
        seen.add((m.backbone, m.encoder))
        try:
            with torch.device("meta"):
                net = build_segmenter(m.backbone, task.channels, task.dims, m.encoder, None)
        except Exception:  # see the docstring: the run reports what is wrong with this backbone
            continue
        shape = (size,) * task.dims
        try:
            with torch.no_grad():
                out = net.eval()(torch.zeros(1, task.channels, *shape, device="meta"))
            if tuple(out.shape[2:]) != shape:
                raise ValueError(f"a {size}px input gives a {tuple(out.shape[2:])} output")
        except Exception as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            stride = getattr(getattr(net, "encoder", None), "output_stride", None)
            fix = (
                f"it takes sides that are a multiple of {stride}, e.g. {option} {_multiples_near(size, stride)}"
                if isinstance(stride, int) and stride > 1
                else f"use a larger size, e.g. {option} 64"
            )
            raise ValueCheckError(
                f"{option} {size} does not fit method {m.name!r} (backbone {m.backbone}, encoder {m.encoder}): "
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
        RunSpec(
            task=task.id,
            method=m.name,
            train_size=n,
            seed=s,
            profile=profile.name,
            subset="resampled" if resample else "fixed",
            task_hash=stable_hash(task),
            method_hash=m.fingerprint(),
            profile_hash=stable_hash(profile),
            data_fingerprints=data.fingerprints,
        )
        for n in sizes
        for m in methods
        for s in seeds
    ]


def _seg_data(p: PreparedSet, ids: list[str], size: int, channels: int, device: torch.device) -> SegData:
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
    base = dict(
        run_id=spec.run_id,
        spec=spec,
        metric=task.metric,
        train_cases=subset.train,
        val_cases=subset.val,
        device=str(device),
        versions=package_versions(),
        git_commit=git_commit(),
        method_config=method_spec.model_dump(),
        segmenter=_describe(method_spec, task.dims),
        profile=profile.model_dump(),
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    reporter.run_started(spec, profile.iterations)
    try:
        src = data.train_source()
        train = _seg_data(src, subset.train, size, task.channels, device)
        val = _seg_data(src, subset.val, size, task.channels, device)
        out_dir = Path(results_dir) / task.id / "artifacts" / spec.run_id
        ctx = FitContext(
            device=device,
            seed=spec.seed,
            profile=profile,
            out_dir=out_dir,
            progress=reporter.run_progress,
            metric=task.metric,
        )
        method = build_method(method_spec)
        fit = method.fit(train, val, ctx)
        del train, val
        scores: dict[str, TestSetResult] = {}
        for ts in task.test_sets:
            p = data.prepared[ts.source]
            ids = data.split.test if ts.split == "test" else p.case_ids
            test = _seg_data(p, ids, size, task.channels, device)
            scores[ts.name] = evaluate(fit.predictor.predict, test, max(profile.batch_size, 16))
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
            extras=json.loads(json.dumps(fit.extras)),  # JSON-native, as it reads back from disk
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


@dataclass
class GridSummary:
    """What a grid run did."""

    specs: list[RunSpec]
    ran: list[RunResult] = field(default_factory=list)
    skipped: list[RunSpec] = field(default_factory=list)
    set_aside: list[SetAside] = field(default_factory=list)
    """Result files this version could not read, moved aside before their runs were done again."""

    @property
    def failed(self) -> list[RunResult]:
        return [r for r in self.ran if r.status == "failed"]


def run_grid(
    catalog: Catalog,
    task_id: str,
    method_names: Sequence[str] | None,
    sizes: Sequence[int] | None,
    seeds: Sequence[int],
    profile: Profile,
    store: Store,
    results_dir: Path,
    device: torch.device,
    reporter: Reporter | None = None,
    retry_failed: bool = False,
    resample: bool = False,
) -> GridSummary:
    """Run every job of a grid that has not finished yet (failed runs too when ``retry_failed``).

    Every value is checked before data is read or a model trained; a result file that
    cannot be read is moved aside (``summary.set_aside``), never overwritten.
    """
    reporter = reporter or SilentReporter()
    task = catalog.task(task_id)
    methods = [catalog.method(m) for m in (method_names or task.default_methods)]
    sizes = list(sizes or task.train_sizes)
    check_grid_values(sizes, seeds, profile)
    check_model_input(task, methods, run_image_size(task, profile))
    data = load_task_data(task, store, run_image_size(task, profile))
    specs = expand_grid(task, methods, sizes, seeds, profile, data, resample)
    summary = GridSummary(specs=specs)
    todo = []
    for spec in specs:
        aside = set_aside_unreadable(result_path(results_dir, spec))
        if aside is not None:
            summary.set_aside.append(aside)
        status = existing_status(results_dir, spec)
        if status == "ok" or (status == "failed" and not retry_failed):
            summary.skipped.append(spec)
        else:
            todo.append(spec)
    reporter.grid_started(len(specs), len(summary.skipped))
    by_name = {m.name: m for m in methods}
    for spec in todo:
        summary.ran.append(
            run_job(spec, task, by_name[spec.method], profile, data, device, results_dir, reporter)
        )
    return summary
