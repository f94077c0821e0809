"""The nnU-Net side of :mod:`genseg_bench.methods.nnunet`; it runs only in a child process.

``python -m genseg_bench.methods.nnunet_worker run RUN_DIR`` writes the labelled cases
as nnU-Net raw images, verifies the data set, extracts the fingerprint, plans,
preprocesses and trains, then loads the selected checkpoint into nnU-Net's own
predictor and answers prediction requests until its input closes (``serve RUN_DIR``
does only the last part, for a finished run). Messages to the parent
(:class:`~genseg_bench.methods.nnunet.NnUNetMethod`) are frames on the original
stdout (:func:`write_frame`): progress, the end of training, predictions, errors;
everything nnU-Net prints goes to stderr, the run's log file. The parent starts the
child with ``nnUNet_raw`` / ``nnUNet_preprocessed`` / ``nnUNet_results`` pointing into
the run folder. nnU-Net reads those variables, looks up its data-augmentation worker
count (``nnUNet_n_proc_DA``, else a hostname table), and sets torch threads and
``cudnn.benchmark`` as it goes; all of that stays inside this process.

Everything here is nnU-Net's own code path, called through its API
(``nnunetv2.experiment_planning.plan_and_preprocess_api``, ``nnUNetTrainer``,
``nnUNetPredictor.predict_single_npy_array``). What is the suite's:

- the budget: :func:`budget_trainer_class` subclasses ``nnUNetTrainer`` with a fixed
  number of epochs and iterations per epoch (nnU-Net finds trainers by name only
  inside its package or ``nnUNet_extTrainer``; this worker builds the trainer itself,
  as ``nnunetv2.run.run_training.get_trainer_from_args`` does, so no lookup is needed);
- the checkpoint rule: every validation interval the trainer predicts the full
  validation images with ``nnUNetPredictor`` (the path the test sets take later),
  scores them with the suite's per-case metric and keeps the best as
  ``checkpoint_suite_best.pth`` (nnU-Net's checkpoint format);
- planning runs nnU-Net's one-worker pools in this process (:func:`in_process_pools`):
  nnU-Net always spawns its pools, and each spawned worker re-imports torch and
  nnU-Net, which cost most of a small run's time; the work done is the same.

nnU-Net does not seed its runs; this worker seeds Python, NumPy and torch from the
suite's seed, so on the CPU with in-process augmentation a run repeats exactly.

Only the standard library, NumPy and torch are imported at module level: the parent
imports the frame helpers from here.
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import os
import random
import struct
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

JOB_FILE = "job.json"
CASES_FILE = "cases.npz"
SUMMARY_FILE = "summary.json"
BEST_CHECKPOINT = "checkpoint_suite_best.pth"
FINAL_CHECKPOINT = "checkpoint_final.pth"
TRAINER_NAME = "nnUNetTrainer_GensegBudget"
DA_WORKERS_VAR = "nnUNet_n_proc_DA"
"""nnU-Net's data-augmentation worker count (read on every call of ``get_allowed_n_proc_DA``)."""

PLANNERS = {
    "default": "ExperimentPlanner",
    "resenc-m": "nnUNetPlannerResEncM",
    "resenc-l": "nnUNetPlannerResEncL",
    "resenc-xl": "nnUNetPlannerResEncXL",
}
"""Config ``planner`` -> nnU-Net's planner class name."""

_HEADER = struct.Struct("<Q")


# ----------------------------------------------------------------------------- frames


def write_frame(stream: BinaryIO, header: dict[str, Any], payload: bytes = b"") -> None:
    """One message: 8-byte header length, a JSON header (with ``nbytes``), then the payload."""
    head = json.dumps({**header, "nbytes": len(payload)}).encode()
    stream.write(_HEADER.pack(len(head)) + head)
    if payload:
        stream.write(payload)
    stream.flush()


def _read_exact(stream: BinaryIO, n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        chunk = stream.read(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_frame(stream: BinaryIO) -> tuple[dict[str, Any], bytes] | None:
    """The next message of :func:`write_frame`, or None at end of stream."""
    raw = _read_exact(stream, _HEADER.size)
    if raw is None:
        return None
    head = _read_exact(stream, _HEADER.unpack(raw)[0])
    if head is None:
        return None
    header = json.loads(head)
    payload = _read_exact(stream, int(header["nbytes"])) if header["nbytes"] else b""
    if payload is None:
        return None
    return header, payload


# ----------------------------------------------------------------------------- data


def nnunet_input(image: np.ndarray, dims: int) -> tuple[np.ndarray, dict[str, list[float]]]:
    """One suite image (``C x H x W`` or ``C x D x H x W``) as nnU-Net's predictor takes it, with its spacing.

    A 2D image gets the leading singleton axis and the spacing 999 that nnU-Net's
    ``SimpleITKIO`` gives a 2D file when it reads one (so training files and predicted
    arrays are the same data to nnU-Net); 3D images are unit-spaced volumes.
    """
    arr = np.ascontiguousarray(image, dtype=np.float32)
    if dims == 2:
        return arr[:, None], {"spacing": [999.0, 1.0, 1.0]}
    return arr, {"spacing": [1.0, 1.0, 1.0]}


def write_raw_cases(job: dict[str, Any], run_dir: Path) -> None:
    """The labelled cases as ``imagesTr/{id}_{channel:04d}.nii.gz`` and ``labelsTr/{id}.nii.gz``.

    One file per channel (nnU-Net's convention); a 2D case is a 2D NIfTI image, which
    ``SimpleITKIO`` reads as a slice of spacing 999. SimpleITK's array order (z, y, x)
    is the suite's (D, H, W), so nothing is transposed.
    """
    import SimpleITK as sitk

    raw = Path(job["raw_dataset_dir"])
    (raw / "imagesTr").mkdir(parents=True, exist_ok=True)
    (raw / "labelsTr").mkdir(parents=True, exist_ok=True)
    with np.load(run_dir / CASES_FILE) as cases:
        images, masks, names = cases["images"], cases["masks"], [str(n) for n in cases["names"]]
    for image, mask, name in zip(images, masks, names, strict=True):
        for c in range(image.shape[0]):
            sitk.WriteImage(
                sitk.GetImageFromArray(image[c].astype(np.float32)),
                str(raw / "imagesTr" / f"{name}_{c:04d}{job['file_ending']}"),
            )
        sitk.WriteImage(
            sitk.GetImageFromArray(mask[0].astype(np.uint8)),
            str(raw / "labelsTr" / f"{name}{job['file_ending']}"),
        )


def _val_cases(run_dir: Path, val_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    with np.load(run_dir / CASES_FILE) as cases:
        names = [str(n) for n in cases["names"]]
        idx = [names.index(v) for v in val_ids]
        return cases["images"][idx], cases["masks"][idx]


def predict_foreground(predictor: Any, images: np.ndarray, dims: int) -> np.ndarray:
    """``N x C x ...`` images -> ``N x 1 x ...`` foreground probabilities from nnU-Net's predictor.

    Each image goes through ``predict_single_npy_array``: nnU-Net's preprocessing (crop,
    normalisation, resampling by the plans), sliding-window inference with Gaussian
    weighting and mirroring, and resampling back to the input's shape; the returned
    class probabilities are softmax outputs, of which channel 1 is the foreground.
    """
    out = []
    for image in images:
        arr, props = nnunet_input(image, dims)
        _, probs = predictor.predict_single_npy_array(arr, props, None, None, True)
        fg = np.asarray(probs[1], dtype=np.float32)
        out.append(fg[0][None] if dims == 2 else fg[None])
    return np.stack(out)


def _score(probs: np.ndarray, masks: np.ndarray, metric: str) -> float:
    """Mean per-case task metric, with the suite's threshold and empty-mask policy."""
    from genseg_bench.metrics import binarise, dice_per_case, jaccard_per_case

    fn = jaccard_per_case if metric == "jaccard" else dice_per_case
    pred = binarise(torch.from_numpy(probs))
    return float(fn(pred, torch.from_numpy(masks) > 0.5).mean())


# ----------------------------------------------------------------------------- training


ProgressFn = Callable[[int, int, dict[str, float]], None]


class _Done:
    """A finished ``AsyncResult``: what :class:`InProcessPool` returns for ``starmap_async``."""

    def __init__(self, value: list[Any]) -> None:
        self._value = value

    def ready(self) -> bool:
        return True

    def get(self, timeout: float | None = None) -> list[Any]:
        return self._value


class InProcessPool:
    """The part of ``multiprocessing.Pool`` nnU-Net's planning uses, run in the calling process."""

    _pool: list[Any] = []  # nnU-Net checks its workers are alive: there are none to die

    def __enter__(self) -> InProcessPool:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def starmap(self, fn: Callable[..., Any], iterable: Sequence[tuple[Any, ...]]) -> list[Any]:
        return [fn(*args) for args in iterable]

    def starmap_async(self, fn: Callable[..., Any], iterable: Sequence[tuple[Any, ...]]) -> _Done:
        return _Done(self.starmap(fn, iterable))


class _InProcessContext:
    def Pool(self, processes: int | None = None) -> InProcessPool:  # noqa: N802 - multiprocessing's name
        return InProcessPool()


@contextlib.contextmanager
def in_process_pools() -> Iterator[None]:
    """While active, ``multiprocessing.get_context("spawn").Pool(n)`` runs its tasks in this process.

    nnU-Net's fingerprint, integrity check and preprocessing call exactly that with the
    worker count they are given (1 here); other contexts are untouched, and the real
    function is restored on exit.
    """
    real = multiprocessing.get_context

    def get_context(method: str | None = None) -> Any:
        return _InProcessContext() if method == "spawn" else real(method)

    multiprocessing.get_context = get_context  # type: ignore[assignment]
    try:
        yield
    finally:
        multiprocessing.get_context = real  # type: ignore[assignment]


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


def budget_trainer_class() -> type:
    """``nnUNetTrainer`` with the suite's budget, split check and checkpoint rule; nothing else changed.

    Built on call so that importing this module does not import nnU-Net. The budget and
    the validation cases are attributes set by :func:`train` after construction
    (``nnUNetTrainer.__init__`` records its own arguments for checkpoints, so the
    subclass keeps that signature).
    """
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from torch._dynamo import OptimizedModule

    class nnUNetTrainer_GensegBudget(nnUNetTrainer):  # noqa: N801 - nnU-Net's trainer naming
        """nnUNetTrainer for a fixed number of epochs, validated by the suite's rule."""

        genseg: dict[str, Any]
        genseg_val: tuple[np.ndarray, np.ndarray]
        genseg_split_used: dict[str, list[str]]
        genseg_trajectory: dict[str, list[Any]]
        genseg_best: tuple[float, int, int]  # score, iteration, epoch
        genseg_predictor: Any = None
        genseg_progress: ProgressFn

        def get_tr_and_val_datasets(self):  # type: ignore[no-untyped-def]
            tr, val = super().get_tr_and_val_datasets()
            self.genseg_split_used = {"train": sorted(tr.identifiers), "val": sorted(val.identifiers)}
            return tr, val

        def _plain_network(self) -> torch.nn.Module:
            net = self.network
            return net._orig_mod if isinstance(net, OptimizedModule) else net

        def genseg_validate(self) -> float:
            """The suite's validation score of the current weights (full images, nnU-Net's predictor)."""
            self.set_deep_supervision_enabled(False)
            self.network.eval()
            if self.genseg_predictor is None:
                self.genseg_predictor = nnUNetPredictor(
                    tile_step_size=self.genseg["tile_step_size"],
                    use_gaussian=True,
                    use_mirroring=self.genseg["mirroring"],
                    perform_everything_on_device=self.device.type == "cuda",
                    device=self.device,
                    verbose=False,
                    verbose_preprocessing=False,
                    allow_tqdm=False,
                )
                self.genseg_predictor.manual_initialization(
                    self.network,
                    self.plans_manager,
                    self.configuration_manager,
                    None,
                    self.dataset_json,
                    type(self).__name__,
                    self.inference_allowed_mirroring_axes,
                )
            self.genseg_predictor.list_of_parameters = [self._plain_network().state_dict()]
            images, masks = self.genseg_val
            probs = predict_foreground(self.genseg_predictor, images, self.genseg["dims"])
            self.set_deep_supervision_enabled(True)
            return _score(probs, masks, self.genseg["metric"])

        def on_epoch_end(self) -> None:
            epoch = self.current_epoch
            ipe = self.num_iterations_per_epoch
            iteration, total = (epoch + 1) * ipe, self.num_epochs * ipe
            loss = float(self.logger.get_value("train_losses", step=-1))
            if not math.isfinite(loss):
                raise Diverged(f"nnU-Net's training loss became {loss} in epoch {epoch}; the run diverged.")
            metrics: dict[str, float] = {"loss": loss}
            if (epoch + 1) % self.genseg["validate_every_epochs"] == 0 or epoch == self.num_epochs - 1:
                score = self.genseg_validate()
                lr = float(self.optimizer.param_groups[0]["lr"])
                traj = self.genseg_trajectory
                traj["iteration"].append(iteration)
                traj["epoch"].append(epoch + 1)
                traj["val_score"].append(score)
                traj["lr"].append(lr)
                traj["loss_loss"].append(loss)
                traj["nnunet_pseudo_dice"].append(float(self.logger.get_value("mean_fg_dice", step=-1)))
                if score > self.genseg_best[0]:
                    self.genseg_best = (score, iteration, epoch + 1)
                    self.save_checkpoint(os.path.join(self.output_folder, BEST_CHECKPOINT))
                metrics.update(val=score, best=self.genseg_best[0], lr=lr)
            super().on_epoch_end()
            self.genseg_progress(iteration, total, metrics)

    nnUNetTrainer_GensegBudget.__name__ = nnUNetTrainer_GensegBudget.__qualname__ = TRAINER_NAME
    return nnUNetTrainer_GensegBudget


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("nnunetv2", "dynamic_network_architectures", "batchgeneratorsv2", "torch"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _network_summary(plans_cfg: dict[str, Any], network: torch.nn.Module) -> dict[str, Any]:
    arch = plans_cfg.get("architecture", {})
    kwargs = arch.get("arch_kwargs", {})
    keys = (
        "n_stages",
        "features_per_stage",
        "kernel_sizes",
        "strides",
        "n_conv_per_stage",
        "n_blocks_per_stage",
    )
    return {
        "class": arch.get("network_class_name"),
        **{k: kwargs[k] for k in (*keys, "n_conv_per_stage_decoder") if k in kwargs},
        "parameters": int(sum(p.numel() for p in network.parameters())),
    }


def plan_and_preprocess(job: dict[str, Any]) -> str:
    """nnU-Net's integrity check, fingerprint, plan and preprocessing of the data set; returns the plans name."""
    import nnunetv2
    from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import (
        DatasetFingerprintExtractor,
    )
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprint_dataset,
        plan_experiment_dataset,
        preprocess_dataset,
    )
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    class FingerprintExtractor(DatasetFingerprintExtractor):
        """nnU-Net's extractor with the job's number of sampled foreground voxels."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.num_foreground_voxels_for_intensitystats = int(job["fingerprint_foreground_voxels"])

    dataset_id = int(job["dataset_id"])
    planner = recursive_find_python_class(
        os.path.join(nnunetv2.__path__[0], "experiment_planning"),
        PLANNERS[job["planner"]],
        current_module="nnunetv2.experiment_planning",
    )
    with in_process_pools():
        extract_fingerprint_dataset(
            dataset_id,
            FingerprintExtractor,
            num_processes=1,
            check_dataset_integrity=True,
            clean=True,
            verbose=False,
            show_progress_bar=False,
        )
        _, plans_identifier = plan_experiment_dataset(dataset_id, planner)
        preprocess_dataset(
            dataset_id,
            plans_identifier,
            configurations=[job["configuration"]],
            num_processes=[1],
            verbose=False,
            show_progress_bar=False,
        )
    return str(plans_identifier)


def train(run_dir: Path, progress: ProgressFn) -> None:
    """Prepare, plan, preprocess and train; writes ``summary.json`` for the parent."""
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA

    job = json.loads((run_dir / JOB_FILE).read_text())
    torch.set_num_threads(int(job["threads"]))
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    write_raw_cases(job, run_dir)
    timings["write_raw_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    # nnU-Net's planner uses nnUNet_n_proc_DA as a torch thread count (0 would crash it): the suite's
    # threads while planning, the augmentation workers (0: in-process) while training
    os.environ[DA_WORKERS_VAR] = str(job["threads"])
    plans_identifier = plan_and_preprocess(job)
    timings["plan_and_preprocess_s"] = time.perf_counter() - t0
    if job["augmentation_workers"] is None:
        del os.environ[DA_WORKERS_VAR]  # nnU-Net's own choice (its hostname table)
    else:
        os.environ[DA_WORKERS_VAR] = str(job["augmentation_workers"])

    pre = Path(job["preprocessed_dataset_dir"])
    if load_json(str(pre / "splits_final.json")) != job["splits"]:
        raise RuntimeError(
            f"{pre / 'splits_final.json'} changed during planning; the suite's split would be lost."
        )
    plans = load_json(str(pre / f"{plans_identifier}.json"))
    cfg_name = job["configuration"]
    if cfg_name not in plans["configurations"]:
        raise RuntimeError(
            f"nnU-Net planned no {cfg_name!r} configuration for this data set "
            f"(planned: {sorted(plans['configurations'])})."
        )
    planned_batch = int(plans["configurations"][cfg_name]["batch_size"])
    if job["batch_size"] is not None:
        plans["configurations"][cfg_name]["batch_size"] = int(job["batch_size"])
    plans["continue_training"] = False  # what get_trainer_from_args adds for a fresh run
    dataset_json = load_json(str(pre / "dataset.json"))

    _seed(int(job["seed"]))
    trainer_cls = budget_trainer_class()
    trainer = trainer_cls(
        plans=plans,
        configuration=cfg_name,
        fold=0,
        dataset_json=dataset_json,
        device=torch.device(job["device"]),
    )
    trainer.num_epochs = int(job["epochs"])
    trainer.num_iterations_per_epoch = int(job["iterations_per_epoch"])
    trainer.num_val_iterations_per_epoch = int(job["val_iterations_per_epoch"])
    trainer.save_every = 10**9  # no checkpoint_latest: the run never resumes
    trainer.genseg = {
        k: job[k] for k in ("dims", "metric", "tile_step_size", "mirroring", "validate_every_epochs")
    }
    trainer.genseg_val = _val_cases(run_dir, job["splits"][0]["val"])
    trainer.genseg_trajectory = {
        k: [] for k in ("iteration", "epoch", "val_score", "lr", "loss_loss", "nnunet_pseudo_dice")
    }
    trainer.genseg_best = (-math.inf, 0, 0)
    trainer.genseg_progress = progress
    t0 = time.perf_counter()
    trainer.run_training()  # nnU-Net's loop; its final validation export is not run (the suite evaluates)
    timings["train_s"] = time.perf_counter() - t0

    used_cfg = trainer.plans_manager.plans["configurations"][cfg_name]
    score, iteration, epoch = trainer.genseg_best
    checkpoint = BEST_CHECKPOINT if job["checkpoint"] == "suite" else FINAL_CHECKPOINT
    if job["checkpoint"] == "final":
        traj = trainer.genseg_trajectory
        score, iteration, epoch = traj["val_score"][-1], traj["iteration"][-1], traj["epoch"][-1]
    summary = {
        "versions": _versions(),
        "planner": PLANNERS[job["planner"]],
        "plans_identifier": plans_identifier,
        "configuration": cfg_name,
        "trainer": TRAINER_NAME,
        "patch_size": used_cfg["patch_size"],
        "spacing": used_cfg["spacing"],
        "median_image_size_in_voxels": used_cfg.get("median_image_size_in_voxels"),
        "normalization_schemes": used_cfg["normalization_schemes"],
        "use_mask_for_norm": used_cfg["use_mask_for_norm"],
        "batch_size_planned": planned_batch,
        "batch_size": int(trainer.batch_size),
        "network": _network_summary(used_cfg, trainer._plain_network()),
        "epochs": int(trainer.num_epochs),
        "iterations_per_epoch": int(trainer.num_iterations_per_epoch),
        "val_iterations_per_epoch": int(trainer.num_val_iterations_per_epoch),
        "validate_every_epochs": int(job["validate_every_epochs"]),
        "initial_lr": float(trainer.initial_lr),
        "optimizer": "SGD (momentum 0.99, Nesterov) with nnU-Net's PolyLR over the epochs",
        "loss": "Dice + cross-entropy with deep supervision (nnU-Net's)",
        "deep_supervision": bool(trainer.enable_deep_supervision),
        "compiled": bool(trainer._do_i_compile()),
        "augmentation_workers": int(get_allowed_n_proc_DA()),
        "device": str(trainer.device),
        "inference": {
            "tile_step_size": job["tile_step_size"],
            "mirroring": job["mirroring"],
            "mirror_axes": list(trainer.inference_allowed_mirroring_axes or ()),
            "gaussian": True,
        },
        "split_used": trainer.genseg_split_used,
        "checkpoint_rule": job["checkpoint"],
        "checkpoint": checkpoint,
        "best_val_score": float(score),
        "best_iteration": int(iteration),
        "best_epoch": int(epoch),
        "final_ema_pseudo_dice": float(trainer.logger.get_value("ema_fg_dice", step=-1)),
        "trajectory": trainer.genseg_trajectory,
        "timings": timings,
        "output_folder": str(trainer.output_folder),
        "output_folder_base": str(trainer.output_folder_base),
        "seed": int(job["seed"]),
    }
    (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
    del trainer  # its data loaders and network; serving loads the selected checkpoint afresh
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- serving


def load_predictor(run_dir: Path) -> tuple[Any, int]:
    """nnU-Net's predictor on the checkpoint the training selected, and the data's dimensionality.

    What ``nnUNetPredictor.initialize_from_trained_model_folder`` does, except that the
    network is built by ``nnUNetTrainer.build_network_architecture`` directly (the budget
    trainer does not change the architecture), so no trainer lookup by name is needed.
    """
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    job = json.loads((run_dir / JOB_FILE).read_text())
    summary = json.loads((run_dir / SUMMARY_FILE).read_text())
    torch.set_num_threads(int(job["threads"]))
    base = Path(summary["output_folder_base"])
    plans_manager = PlansManager(load_json(str(base / "plans.json")))
    dataset_json = load_json(str(base / "dataset.json"))
    cfg = plans_manager.get_configuration(summary["configuration"])
    checkpoint = torch.load(
        Path(summary["output_folder"]) / summary["checkpoint"], map_location="cpu", weights_only=False
    )
    network = nnUNetTrainer.build_network_architecture(
        plans_manager,
        cfg,
        determine_num_input_channels(plans_manager, cfg, dataset_json),
        plans_manager.get_label_manager(dataset_json).num_segmentation_heads,
        enable_deep_supervision=False,
    )
    network.load_state_dict(checkpoint["network_weights"])
    device = torch.device(job["device"])
    predictor = nnUNetPredictor(
        tile_step_size=float(job["tile_step_size"]),
        use_gaussian=True,
        use_mirroring=bool(job["mirroring"]),
        perform_everything_on_device=device.type == "cuda",
        device=device,
        verbose=False,
        verbose_preprocessing=False,
        allow_tqdm=False,
    )
    predictor.manual_initialization(
        network,
        plans_manager,
        cfg,
        [checkpoint["network_weights"]],
        dataset_json,
        checkpoint["trainer_name"],
        checkpoint["inference_allowed_mirroring_axes"],
    )
    return predictor, int(job["dims"])


def _error(exc: BaseException) -> dict[str, Any]:
    return {
        "ok": False,
        "error": "".join(traceback.format_exception(exc)),
        "diverged": isinstance(exc, Diverged),
    }


def serve(run_dir: Path, requests: BinaryIO, replies: BinaryIO) -> None:
    """Answer ``predict`` frames (``N x C x ...`` float32) with foreground probabilities until end of input."""
    try:
        predictor, dims = load_predictor(run_dir)
    except Exception as exc:
        write_frame(replies, _error(exc))
        raise
    write_frame(replies, {"ok": True, "ready": True})
    while (frame := read_frame(requests)) is not None:
        header, payload = frame
        try:
            images = np.frombuffer(payload, dtype=np.float32).reshape(header["shape"])
            probs = np.ascontiguousarray(predict_foreground(predictor, images, dims), dtype=np.float32)
            write_frame(replies, {"ok": True, "shape": list(probs.shape)}, probs.tobytes())
        except Exception as exc:  # the parent raises it; the server stays up for the next request
            write_frame(replies, _error(exc))


def main(argv: list[str]) -> int:
    """``run RUN_DIR``: train, then serve; ``serve RUN_DIR``: serve a finished run."""
    if len(argv) != 2 or argv[0] not in ("run", "serve"):
        print("usage: python -m genseg_bench.methods.nnunet_worker run|serve RUN_DIR", file=sys.stderr)
        return 2
    run_dir = Path(argv[1])
    # the frames own the original stdout; nnU-Net's prints go to stderr (the run's log file)
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    if argv[0] == "run":

        def progress(iteration: int, total: int, metrics: dict[str, float]) -> None:
            write_frame(replies, {"ok": True, "progress": [iteration, total, metrics]})

        try:
            train(run_dir, progress)
        except Exception as exc:
            write_frame(replies, _error(exc))
            traceback.print_exc()
            return 1
        write_frame(replies, {"ok": True, "trained": True})
    serve(run_dir, sys.stdin.buffer, replies)
    # every file is written and closed; skip the interpreter's teardown of torch and nnU-Net (seconds
    # under load), which only delays the parent waiting for this process to end
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
