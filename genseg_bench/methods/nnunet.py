"""nnU-Net (Isensee et al., Nature Methods 18, 2021) through the real ``nnunetv2`` package.

Not a re-implementation: the suite hands nnU-Net its data in nnU-Net's own raw
layout and lets nnU-Net fingerprint, plan, preprocess, train and predict with its
own code (``pip install genseg-bench[nnunet]``). What the suite controls is what a
fair comparison needs from every method:

- **data**: the run's labelled cases, train *and* validation, become
  ``Dataset001_GensegBench`` in nnU-Net's raw layout (``imagesTr/{id}_{c:04d}.nii.gz``,
  ``labelsTr/{id}.nii.gz``, ``dataset.json``; nnU-Net's documentation,
  ``documentation/dataset_format.md``). 2D images are 2D NIfTI files, which nnU-Net's
  ``SimpleITKIO`` reads as slices of spacing 999 (its convention for 2D data in
  medical formats); 3D images are unit-spaced volumes. Images keep their float
  values; masks are 0/1.
- **split**: the suite's own train/validation split is ``splits_final.json`` (fold 0),
  so nnU-Net trains on exactly the suite's training cases; the trainer records the
  case lists nnU-Net actually loaded and :meth:`NnUNetMethod.fit` refuses a run whose
  lists differ.
- **budget**: ``ctx.profile.iterations`` training iterations, as nnU-Net epochs of
  ``iterations_per_epoch`` (default: the profile's ``eval_every``), so
  ``epochs = ceil(iterations / iterations_per_epoch)`` (nnU-Net's own: 1,000 epochs of
  250). nnU-Net's batch size, patch size, network, optimiser (SGD, PolyLR), loss (Dice +
  CE, deep supervision) and augmentation are its own plans, recorded in the result.
- **checkpoint**: by default the suite's rule (best validation score on the task
  metric, scored on full validation images predicted by nnU-Net's predictor every
  validation interval); ``checkpoint = "final"`` is nnU-Net's default, the last epoch.

Isolation: nnU-Net reads ``nnUNet_raw`` / ``nnUNet_preprocessed`` / ``nnUNet_results``
from the environment, looks up its augmentation workers by hostname and sets torch
threads and ``cudnn.benchmark`` globally, so it never runs in the suite's process:
training is one child process (:mod:`genseg_bench.methods.nnunet_worker`) and the
returned predictor talks to a second, persistent child that holds nnU-Net's
``nnUNetPredictor``. Both get those variables pointing into the run folder
(``ctx.out_dir / "nnunet"``); any ``nnUNet_*`` variable of the caller's environment is
dropped, so a run depends only on its spec. nnU-Net is imported by neither this module
nor the suite.

Followed: the nnU-Net v2 code on PyPI (``nnunetv2``; written against 2.8.1):
``experiment_planning/plan_and_preprocess_api.py``, ``run/run_training.py``
(``get_trainer_from_args``), ``training/nnUNetTrainer/nnUNetTrainer.py`` and
``inference/predict_from_raw_data.py`` (``manual_initialization``,
``predict_single_npy_array``).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import weakref
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

import genseg_bench
from genseg_bench.errors import GensegBenchError, TrainingDiverged
from genseg_bench.methods.base import FitContext, FitResult, Method, Predictor, SegData
from genseg_bench.methods.config import NnUNetConfig, parse_config
from genseg_bench.methods.nnunet_worker import CASES_FILE, JOB_FILE, SUMMARY_FILE, read_frame, write_frame
from genseg_bench.methods.training import empty_prediction_score
from genseg_bench.specs import Profile

WORKER = "genseg_bench.methods.nnunet_worker"
DATASET_ID = 1
DATASET_NAME = "Dataset001_GensegBench"
FILE_ENDING = ".nii.gz"
INSTALL_HINT = "pip install genseg-bench[nnunet]"
LOG_FILE = "nnunet.log"
RECORDED = (
    "versions",
    "planner",
    "plans_identifier",
    "configuration",
    "trainer",
    "patch_size",
    "spacing",
    "median_image_size_in_voxels",
    "normalization_schemes",
    "use_mask_for_norm",
    "batch_size_planned",
    "batch_size",
    "network",
    "epochs",
    "iterations_per_epoch",
    "val_iterations_per_epoch",
    "validate_every_epochs",
    "initial_lr",
    "optimizer",
    "loss",
    "deep_supervision",
    "compiled",
    "augmentation_workers",
    "device",
    "inference",
    "checkpoint_rule",
    "best_epoch",
    "final_ema_pseudo_dice",
    "timings",
    "seed",
)
"""nnU-Net's configuration and budget as the worker's summary records them: ``extras["nnunet"]`` of a result."""


class NnUNetError(GensegBenchError):
    """nnU-Net is missing, or one of its steps failed (the message carries the end of its log)."""


def require_nnunet() -> str:
    """nnunetv2's installed version; a clear error naming the install command when it is missing."""
    if importlib.util.find_spec("nnunetv2") is None:
        raise NnUNetError(
            f"method kind 'nnunet' runs the real nnU-Net, and the nnunetv2 package is not installed. "
            f"Install it with: {INSTALL_HINT}"
        )
    try:
        return version("nnunetv2")
    except PackageNotFoundError:
        return "unknown"


# ----------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class NnUNetLayout:
    """The folders of one run: nnU-Net's three roots inside ``root``, and the suite's files beside them."""

    root: Path

    @property
    def raw(self) -> Path:
        return self.root / "nnUNet_raw"

    @property
    def preprocessed(self) -> Path:
        return self.root / "nnUNet_preprocessed"

    @property
    def results(self) -> Path:
        return self.root / "nnUNet_results"

    @property
    def raw_dataset(self) -> Path:
        return self.raw / DATASET_NAME

    @property
    def preprocessed_dataset(self) -> Path:
        return self.preprocessed / DATASET_NAME

    def env(self, extra: dict[str, str]) -> dict[str, str]:
        """The children's environment: the caller's, minus any ``nnUNet_*`` setting, plus this run's paths."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}
        package_root = str(Path(genseg_bench.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        env.update(
            nnUNet_raw=str(self.raw),
            nnUNet_preprocessed=str(self.preprocessed),
            nnUNet_results=str(self.results),
            PYTHONUNBUFFERED="1",
            **extra,
        )
        return env


def case_names(train: SegData, val: SegData) -> dict[str, str]:
    """nnU-Net identifier -> suite case id, training cases first.

    Suite ids may hold characters a file name should not (``/``, spaces), and nnU-Net
    identifiers are file-name stems, so cases are numbered; ``cases.json`` keeps the map.
    """
    ids = [*train.case_ids, *val.case_ids]
    if len(set(ids)) != len(ids):
        raise NnUNetError("a case is both a training and a validation case; the suite's split is broken.")
    return {f"case{i:04d}": cid for i, cid in enumerate(ids)}


def dataset_json(channels: int, names: list[str]) -> dict[str, Any]:
    """nnU-Net's ``dataset.json`` of a binary task: one channel name per image channel, labels 0/1.

    Channel names other than ``CT`` get nnU-Net's per-image z-score normalisation (the
    suite's images are in [0, 1] with no physical unit). The ``dataset`` key lists each
    case's files (in ``imagesTr`` / ``labelsTr`` all the same), which nnU-Net reads instead
    of matching file names with a pool of 12 processes at every step of its planning.
    """
    return {
        "channel_names": {str(c): f"image{c}" if channels > 1 else "image" for c in range(channels)},
        "labels": {"background": 0, "foreground": 1},
        "numTraining": len(names),
        "file_ending": FILE_ENDING,
        "overwrite_image_reader_writer": "SimpleITKIO",
        "name": "GensegBench",
        "description": "One genseg-bench run: its labelled training and validation cases.",
        "dataset": {
            n: {
                "images": [f"imagesTr/{n}_{c:04d}{FILE_ENDING}" for c in range(channels)],
                "label": f"labelsTr/{n}{FILE_ENDING}",
            }
            for n in names
        },
    }


def splits_final(train_names: list[str], val_names: list[str]) -> list[dict[str, list[str]]]:
    """``splits_final.json``: fold 0 is the suite's split, nothing else (nnU-Net trains ``fold=0``)."""
    return [{"train": sorted(train_names), "val": sorted(val_names)}]


@dataclass(frozen=True)
class Budget:
    """The profile's iteration budget as nnU-Net epochs."""

    epochs: int
    iterations_per_epoch: int
    validate_every_epochs: int

    @classmethod
    def from_profile(cls, profile: Profile, cfg: NnUNetConfig) -> Budget:
        """``ceil(iterations / per_epoch)`` epochs; validation about every ``eval_every`` iterations (at least per epoch)."""
        per_epoch = cfg.iterations_per_epoch or max(1, int(profile.eval_every))
        epochs = max(1, math.ceil(profile.iterations / per_epoch))
        return cls(epochs, per_epoch, max(1, int(profile.eval_every) // per_epoch))

    @property
    def updates(self) -> int:
        return self.epochs * self.iterations_per_epoch


def nnunet_device(device: torch.device) -> tuple[str, dict[str, str]]:
    """nnU-Net's device name for ``device`` and the environment that selects it.

    nnU-Net always trains on ``cuda:0``; ``cuda:k`` becomes that GPU made the only
    visible one (the k-th of an existing ``CUDA_VISIBLE_DEVICES`` list).
    """
    if device.type == "cuda":
        if device.index is None:
            return "cuda", {}
        visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
        return "cuda", {"CUDA_VISIBLE_DEVICES": visible[device.index] if visible else str(device.index)}
    if device.type == "mps":
        return "mps", {}
    return "cpu", {}


def write_layout(
    layout: NnUNetLayout, train: SegData, val: SegData
) -> tuple[dict[str, str], list[dict[str, list[str]]]]:
    """The JSON half of the layout (``dataset.json``, ``splits_final.json``, ``cases.json``) and the arrays.

    The worker writes the image files from ``cases.npz`` (it has SimpleITK, nnU-Net's
    reader); nnU-Net finds ``splits_final.json`` in its preprocessed folder, written here
    before planning (planning adds files beside it, preprocessing replaces only its
    configuration's subfolder; the worker checks the file is unchanged before training).
    """
    names = case_names(train, val)
    order = list(names)
    train_names, val_names = order[: len(train)], order[len(train) :]
    layout.raw_dataset.mkdir(parents=True)
    layout.preprocessed_dataset.mkdir(parents=True)
    layout.results.mkdir(parents=True)
    (layout.raw_dataset / "dataset.json").write_text(
        json.dumps(dataset_json(int(train.images.shape[1]), order), indent=1)
    )
    splits = splits_final(train_names, val_names)
    (layout.preprocessed_dataset / "splits_final.json").write_text(json.dumps(splits, indent=1))
    roles = {n: "train" for n in train_names} | {n: "val" for n in val_names}
    (layout.root / "cases.json").write_text(
        json.dumps({n: {"case_id": names[n], "role": roles[n]} for n in order}, indent=1)
    )
    images = torch.cat([train.images, val.images]).detach().to("cpu", torch.float32).numpy()
    masks = (torch.cat([train.masks, val.masks]) > 0.5).to("cpu", torch.uint8).numpy()
    np.savez(layout.root / CASES_FILE, images=images, masks=masks, names=np.array(order))
    return names, splits


# ----------------------------------------------------------------------------- processes


def _stop(proc: subprocess.Popen[bytes], log: IO[bytes]) -> None:
    """Close the child's input (it exits at end of input), wait briefly, then make sure it is gone."""
    try:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()
    finally:
        log.close()


class NnUNetSession:
    """One nnU-Net child process: frames to its stdin and from its stdout, its stderr in ``nnunet.log``.

    ``mode`` is the worker's (``run``: train then serve; ``serve``: serve a finished run).
    The child ends when its input closes: at :meth:`close`, when this object is
    collected, or with the suite's process.
    """

    def __init__(self, layout: NnUNetLayout, env: dict[str, str], mode: str) -> None:
        self.log_path = layout.root / LOG_FILE
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", WORKER, mode, str(layout.root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            cwd=layout.root,
        )
        self._finalizer = weakref.finalize(self, _stop, self.proc, log)

    def send(self, header: dict[str, Any], payload: bytes = b"") -> None:
        assert self.proc.stdin is not None
        write_frame(self.proc.stdin, header, payload)

    def receive(self, doing: str) -> tuple[dict[str, Any], bytes]:
        """The child's next frame; its error (or the end of its log, if it died) as an exception."""
        assert self.proc.stdout is not None
        frame = read_frame(self.proc.stdout)
        if frame is not None and frame[0].get("ok"):
            return frame
        self.close()
        detail = frame[0].get("error", "") if frame else ""
        if frame is not None and frame[0].get("diverged"):
            raise TrainingDiverged(detail.strip().splitlines()[-1])
        log = self.log_path.read_text(errors="replace")[-4000:]
        raise NnUNetError(f"nnU-Net failed while {doing} (log: {self.log_path}):\n{detail or log}")

    def close(self) -> None:
        self._finalizer()


class NnUNetPredictor(Predictor):
    """Foreground probabilities from nnU-Net's ``nnUNetPredictor``, running in the run's child process.

    Images go to the child as float32 arrays over a pipe and come back as probabilities
    (:func:`~genseg_bench.methods.nnunet_worker.predict_foreground`). After :meth:`close`
    the next :meth:`predict` starts a fresh child that loads the run's checkpoint.
    """

    def __init__(
        self, layout: NnUNetLayout, env: dict[str, str], session: NnUNetSession | None = None
    ) -> None:
        self.layout = layout
        self.env = env
        self._session = session

    def _live(self) -> NnUNetSession:
        if self._session is None:
            session = NnUNetSession(self.layout, self.env, "serve")
            session.receive("loading the model")
            self._session = session
        return self._session

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        session = self._live()
        arr = np.ascontiguousarray(images.detach().to("cpu", torch.float32).numpy())
        session.send({"cmd": "predict", "shape": list(arr.shape)}, arr.tobytes())
        header, payload = session.receive(f"predicting {arr.shape[0]} images")
        probs = np.frombuffer(payload, dtype=np.float32).reshape(header["shape"]).copy()
        return torch.from_numpy(probs).to(images.device)

    def close(self) -> None:
        """Stop the child process now."""
        if self._session is not None:
            self._session.close()
        self._session = None


def train_and_serve(layout: NnUNetLayout, env: dict[str, str], ctx: FitContext) -> NnUNetSession:
    """Start the child, relay its progress to ``ctx.progress`` until training ends and the model is loaded."""
    session = NnUNetSession(layout, env, "run")
    while True:
        header, _ = session.receive("training")
        if "progress" in header:
            iteration, total, metrics = header["progress"]
            ctx.progress(int(iteration), int(total), dict(metrics))
        elif header.get("trained"):
            break
    session.receive("loading the model")
    return session


# ----------------------------------------------------------------------------- method


class NnUNetMethod(Method):
    """nnU-Net v2, self-configured, trained on the suite's split under the profile's iteration budget."""

    config_model = NnUNetConfig

    def fit(self, train: SegData, val: SegData, ctx: FitContext) -> FitResult:
        cfg = parse_config(NnUNetConfig, self.spec.config, f"method {self.spec.name!r}")
        nnunet_version = require_nnunet()
        if len(val) == 0:
            raise NnUNetError(
                "nnU-Net needs validation cases (its epoch loop and the checkpoint rule use them)."
            )
        layout = NnUNetLayout(Path(ctx.out_dir) / "nnunet")
        if layout.root.exists():  # a failed earlier attempt of this run id
            shutil.rmtree(layout.root)
        layout.root.mkdir(parents=True)
        names, splits = write_layout(layout, train, val)
        budget = Budget.from_profile(ctx.profile, cfg)
        device, device_env = nnunet_device(ctx.device)
        threads = torch.get_num_threads()
        workers = cfg.augmentation_workers
        if workers is None and device == "cpu":
            workers = 0  # in-process augmentation: background workers would oversubscribe a small CPU
        extra = {**device_env, "nnUNet_def_n_proc": str(threads)}
        job = {
            "dataset_id": DATASET_ID,
            "raw_dataset_dir": str(layout.raw_dataset),
            "preprocessed_dataset_dir": str(layout.preprocessed_dataset),
            "file_ending": FILE_ENDING,
            "dims": train.dims,
            "configuration": "2d" if train.dims == 2 else "3d_fullres",
            "planner": cfg.planner,
            "fingerprint_foreground_voxels": cfg.fingerprint_foreground_voxels,
            "epochs": budget.epochs,
            "iterations_per_epoch": budget.iterations_per_epoch,
            "val_iterations_per_epoch": cfg.val_iterations_per_epoch,
            "validate_every_epochs": budget.validate_every_epochs,
            "batch_size": cfg.batch_size,
            "checkpoint": cfg.checkpoint,
            "tile_step_size": cfg.tile_step_size,
            "mirroring": cfg.mirroring,
            "seed": ctx.seed,
            "device": device,
            "threads": threads,
            "augmentation_workers": workers,
            "metric": ctx.metric,
            "splits": splits,
        }
        (layout.root / JOB_FILE).write_text(json.dumps(job, indent=1))
        # the trainer compiles when nnUNet_compile is set; nnU-Net's predictor then compiles too
        env = layout.env({**extra, "nnUNet_compile": "1" if cfg.compile and device == "cuda" else "0"})
        session = train_and_serve(layout, env, ctx)
        summary = json.loads((layout.root / SUMMARY_FILE).read_text())
        if summary["split_used"] != splits[0]:
            session.close()
            raise NnUNetError(
                f"nnU-Net trained on another split than the suite's: {summary['split_used']} != {splits[0]}."
            )
        predictor = NnUNetPredictor(layout, env, session)
        batch = int(summary["batch_size"])
        extras = {
            "empty_val_score": empty_prediction_score(val, ctx.metric),
            "nnunet": {
                **{k: summary[k] for k in RECORDED},
                "version": nnunet_version,
                "cases": names,
                "split": {"train": len(splits[0]["train"]), "val": len(splits[0]["val"])},
            },
        }
        output = Path(summary["output_folder"])
        net = summary["network"]
        return FitResult(
            segmenter={
                "backbone": self.spec.backbone,
                "architecture": (
                    f"nnU-Net {summary['configuration']} {net.get('class')} "
                    f"({net.get('n_stages', '?')} stages, features {net.get('features_per_stage', '?')}, "
                    f"{net.get('parameters', '?')} parameters), planned by nnU-Net {nnunet_version}"
                ),
                "encoder": "none",
                "weights": "none",
                "weights_source": "none (random initialisation, trained from scratch)",
                "normalisation": ", ".join(map(str, summary.get("normalization_schemes") or []))
                or "nnU-Net's",
                "input": f"patch {summary['patch_size']}, batch {batch} (nnU-Net's plans)",
            },
            predictor=predictor,
            best_val_score=float(summary["best_val_score"]),
            best_iteration=int(summary["best_iteration"]),
            iterations=budget.updates,
            extras=extras,
            artifacts=[
                str(output / summary["checkpoint"]),
                str(Path(summary["output_folder_base"]) / "plans.json"),
                str(layout.root / LOG_FILE),
                str(layout.root / SUMMARY_FILE),
            ],
            trajectory=summary["trajectory"],
            budget={
                "plateau_armed_at": 0,
                "updates": budget.updates,
                "images_seen": budget.updates * batch,
                "real_images_seen": budget.updates * batch,
                "generated_images_seen": 0,
                "eval_every": budget.validate_every_epochs * budget.iterations_per_epoch,
                "real_per_update": batch,
                "batch_size": batch,
            },
        )
