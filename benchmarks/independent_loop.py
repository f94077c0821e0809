"""A plain, independent Adam training loop: the yardstick for the suite's supervised UNet numbers.

A benchmark's weakest baseline sets its credibility, so the suite's vanilla UNet is
checked against the simplest loop a practitioner would write, on the same split and
the same budget. This script shares no code path with the suite's training, data
store or metrics: it reads the raw images with PIL (or the suite's prepared arrays
with numpy alone, ``--prepared``), resizes them itself, trains ``smp.Unet``
(ResNet-18 encoder from scratch, as the suite's ``unet``) or, in 3D, a small plain
3D UNet written here, with Adam and BCE + soft Dice (``--loss bce`` for BCE alone),
validates every ``--eval-every`` iterations (and at the last), keeps the
best-validation weights and scores per-case Dice (empty/empty = 1) on the test
cases. The case ids come from a suite result file, so the split is the suite's; the
default budget is that run's own training time (``--iterations`` for an iteration
budget instead).

Optional, each written here with torch ops, to match a suite recipe:

* ``--augment combine``: a random rotation (+-30 degrees, in the H-W plane), horizontal
  and vertical flips (p = 0.5 each, never the slice axis in 3D) and a translation of up
  to 10 % of each side, in a random order, applied to image and mask together (image
  bilinear, mask nearest, zero padding): the ranges of the suite's ``unet-combine``.
* ``--intensity``: brightness (x U(0.75, 1.25), p 0.15), contrast (around the mean,
  x U(0.75, 1.25), clipped to the image's range, p 0.15) and gamma (U(0.7, 1.5) on the
  image's own min-max range, p 0.3), per training image (nnU-Net's ranges).
* ``--norm image|dataset``: z-score each input image per channel, or with the training
  images' channel mean and std, inside the network (so every input passes it).

Library use (``benchmarks/calibrate.py``): :func:`load_prepared_cases` reads cases
from a prepared folder, :func:`train_loop` trains and returns a :class:`LoopResult`
(best validation score and iteration, whether the best was the last validation, the
trajectory and the network with its best weights), :func:`score_cases` scores it.

    python benchmarks/independent_loop.py --result results/kvasir-to-cvc/<run>.json \\
        --images ../data/kvasir-seg --test-images ../data/cvc-clinicdb

Prints one JSON line with the loop's scores next to the suite run's.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

ROTATE_DEGREES = 30.0
"""Rotation range of ``--augment combine``: uniform in [-30, 30] degrees (the suite's range)."""
TRANSLATE_FRACTION = 0.1
"""Translation range of ``--augment combine``: up to 10 % of each side, per axis."""
BRIGHTNESS = (0.75, 1.25, 0.15)
"""``--intensity``: multiplicative brightness range and probability."""
CONTRAST = (0.75, 1.25, 0.15)
"""``--intensity``: contrast factor range (around the image mean) and probability."""
GAMMA = (0.7, 1.5, 0.3)
"""``--intensity``: gamma range (on the image's min-max range) and probability."""


# --------------------------------------------------------------------------- data


@dataclass
class Cases:
    """Images ``N x C x H x W`` (2D) or ``N x C x D x H x W`` (3D) float, masks ``N x 1 x ...`` 0/1,
    and the case ids in the order of the rows actually read."""

    x: torch.Tensor
    y: torch.Tensor
    case_ids: list[str]

    @property
    def dims(self) -> int:
        return self.y.dim() - 2


def _resize(x: torch.Tensor, y: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """To ``size`` per side: images bilinear (antialiased, 2D) or trilinear (3D); masks resampled the
    same way and thresholded at 0.5, so thin structures survive a downsampling."""
    dims = y.dim() - 2
    if tuple(y.shape[2:]) == (size,) * dims:
        return x, y
    if dims == 2:
        kw = {"mode": "bilinear", "antialias": True, "align_corners": False}
    else:
        kw = {"mode": "trilinear", "align_corners": False}
    x = F.interpolate(x, size=(size,) * dims, **kw)
    y = (F.interpolate(y, size=(size,) * dims, **kw) >= 0.5).float()
    return x, y


def _channels(x: torch.Tensor, channels: int | None) -> torch.Tensor:
    """Grey to RGB by repetition, RGB to grey by luma (only where a set's channels differ from the task's)."""
    if channels is None or x.shape[1] == channels:
        return x
    if channels == 3 and x.shape[1] == 1:
        return x.repeat(1, 3, *([1] * (x.dim() - 2)))
    if channels == 1 and x.shape[1] == 3:
        w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, *([1] * (x.dim() - 2)))
        return (x * w).sum(1, keepdim=True)
    raise ValueError(f"cannot convert {x.shape[1]} channels to {channels}")


def load_prepared_cases(
    folder: Path, ids: list[str], size: int | None = None, channels: int | None = None
) -> Cases:
    """Cases ``ids`` of a prepared folder (``images.npy``: N x H x W x C uint8 in 2D, N x D x H x W
    float in 3D; ``masks.npy``; ``cases.json``), read with numpy alone, in the order of ``ids``.

    ``size``: resample to that side when the folder holds another; ``channels``: convert grey/RGB.
    """
    folder = Path(folder)
    cases = json.loads((folder / "cases.json").read_text())
    pos = {c: i for i, c in enumerate(cases)}
    missing = [c for c in ids if c not in pos]
    if missing:
        raise KeyError(f"{folder}: {len(missing)} case ids not in cases.json, e.g. {missing[:3]}")
    rows = [pos[c] for c in ids]
    raw = np.load(folder / "images.npy", mmap_mode="r")[rows]
    msk = np.load(folder / "masks.npy", mmap_mode="r")[rows]
    img = raw.astype(np.float32) / 255.0 if raw.dtype == np.uint8 else raw.astype(np.float32)
    y = torch.from_numpy((msk > 0).astype(np.float32))[:, None]
    if y.dim() == 4:  # 2D: N x H x W x C -> N x C x H x W
        x = torch.from_numpy(img).permute(0, 3, 1, 2).contiguous()
    else:  # 3D: N x D x H x W -> N x 1 x D x H x W
        x = torch.from_numpy(np.ascontiguousarray(img))[:, None]
    x = _channels(x, channels)
    if size is not None:
        x, y = _resize(x, y, size)
    return Cases(x=x, y=y, case_ids=[cases[r] for r in rows])


def load_prepared(folder: Path, ids: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The suite's prepared arrays, as tensors: ``--prepared`` swaps only the data, to tell a data
    difference from a training one."""
    c = load_prepared_cases(folder, ids)
    return c.x, c.y


def load_pairs(root: Path, ids: list[str], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``images/<id>.jpg`` and ``masks/<id>.jpg`` (or .png) -> float images in [0, 1], 0/1 masks."""
    xs, ys = [], []
    for cid in ids:
        img_path = next(p for p in (root / "images").glob(f"{cid}.*"))
        mask_path = next(p for p in (root / "masks").glob(f"{cid}.*"))
        img = Image.open(img_path).convert("RGB").resize((size, size), Image.BILINEAR)
        mask = Image.open(mask_path).convert("L").resize((size, size), Image.NEAREST)
        xs.append(np.asarray(img, dtype=np.float32) / 255.0)
        ys.append((np.asarray(mask) > 127).astype(np.float32))
    x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(np.stack(ys))[:, None]
    return x, y


# --------------------------------------------------------------------------- networks


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm3d(cout),
        nn.ReLU(inplace=True),
        nn.Conv3d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm3d(cout),
        nn.ReLU(inplace=True),
    )


class PlainUNet3D(nn.Module):
    """A plain 3D UNet: four levels (16-32-64-128 channels), two 3x3x3 Conv-BN-ReLU per level,
    max-pool down, transposed convolution up, skip concatenation, a 1x1x1 head (one logit).

    Inputs whose sides are not a multiple of 8 are zero-padded and the output cropped back.
    """

    def __init__(self, in_channels: int = 1, widths: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        super().__init__()
        self.down = nn.ModuleList()
        cin = in_channels
        for w in widths:
            self.down.append(_double_conv(cin, w))
            cin = w
        self.pool = nn.MaxPool3d(2)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for w_hi, w in zip(widths[:0:-1], widths[-2::-1], strict=True):
            self.up.append(nn.ConvTranspose3d(w_hi, w, 2, stride=2))
            self.dec.append(_double_conv(2 * w, w))
        self.head = nn.Conv3d(widths[0], 1, 1)
        self.multiple = 2 ** (len(widths) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape[-3:]
        pad = [p for s in reversed(shape) for p in (0, (-s) % self.multiple)]
        x = F.pad(x, pad)
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, dec in zip(self.up, self.dec, strict=True):
            x = dec(torch.cat([up(x), skips.pop()], 1))
        return self.head(x)[..., : shape[0], : shape[1], : shape[2]]


class InputNorm(nn.Module):
    """Z-scores the input inside the network: per image and channel (``image``) or with fixed
    channel statistics of the training images (``dataset``), then runs ``net``."""

    def __init__(self, net: nn.Module, mode: str, train_x: torch.Tensor | None = None) -> None:
        super().__init__()
        if mode not in ("image", "dataset"):
            raise ValueError(f"unknown norm {mode!r}")
        self.net, self.mode = net, mode
        c, dims = (train_x.shape[1], train_x.dim() - 2) if train_x is not None else (1, 2)
        shape = (1, c, *([1] * dims))
        mean = torch.zeros(shape)
        std = torch.ones(shape)
        if mode == "dataset":
            if train_x is None:
                raise ValueError("norm 'dataset' needs the training images")
            flat = train_x.transpose(0, 1).reshape(c, -1).double()
            mean = flat.mean(1).float().view(shape)
            std = flat.std(1).float().clamp_min(1e-6).view(shape)
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "image":
            axes = tuple(range(2, x.dim()))
            x = (x - x.mean(axes, keepdim=True)) / x.std(axes, keepdim=True).clamp_min(1e-6)
        else:
            x = (x - self.mean) / self.std
        return self.net(x)


def build_model(
    dims: int, in_channels: int, norm: str = "none", train_x: torch.Tensor | None = None, model: str = "unet"
) -> nn.Module:
    """smp.Unet (ResNet-18 from scratch) in 2D, :class:`PlainUNet3D` in 3D, behind :class:`InputNorm`
    unless ``norm`` is ``none``. ``model="swinunet"`` (2D) builds the suite's Swin-Unet network."""
    if dims == 3:
        net: nn.Module = PlainUNet3D(in_channels)
    elif model == "swinunet":
        from genseg_bench.models.swin_unet import SwinUnet  # only the network, to tell a network defect

        net = SwinUnet(in_channels=in_channels)
    else:
        net = smp.Unet("resnet18", encoder_weights=None, in_channels=in_channels, classes=1)
    return net if norm == "none" else InputNorm(net, norm, train_x)


# --------------------------------------------------------------------------- augmentation


def _u(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen) * (hi - lo) + lo


def augment_combine(
    x: torch.Tensor,
    y: torch.Tensor,
    gen: torch.Generator,
    rotate_degrees: float = ROTATE_DEGREES,
    translate_fraction: float = TRANSLATE_FRACTION,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotation (H-W plane), flips of W and H, translation of every axis, in a random order drawn
    per batch (parameters per sample), as one affine resampling of image (bilinear) and mask
    (nearest) together. Every range is symmetric, so the sampling matrix is drawn directly."""
    n, dims = x.shape[0], x.dim() - 2
    eye = torch.eye(dims + 1).expand(n, -1, -1).clone()
    # affine_grid's coordinates: column 0 = W, 1 = H (, 2 = D)
    mats = {}
    angle = _u(n, -rotate_degrees, rotate_degrees, gen) * math.pi / 180
    rot = eye.clone()
    ratio = x.shape[-2] / x.shape[-1]  # keeps it a rotation in pixels when H != W
    c, s = torch.cos(angle), torch.sin(angle)
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = c, -s * ratio, s / ratio, c
    mats["rotate"] = rot
    flip = eye.clone()
    for axis in (0, 1):  # W, H; never D
        flip[:, axis, axis] = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    mats["flip"] = flip
    shift = eye.clone()
    for axis in range(dims):  # normalised side = 2, so a fraction f of the side is 2 f
        shift[:, axis, dims] = _u(n, -2 * translate_fraction, 2 * translate_fraction, gen)
    mats["translate"] = shift
    order = torch.randperm(3, generator=gen).tolist()
    theta = eye
    for i in order:
        theta = mats[("rotate", "flip", "translate")[i]] @ theta
    grid = F.affine_grid(theta[:, :dims, :], list(x.shape), align_corners=False)
    xo = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    yo = F.grid_sample(y, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return xo, yo


def augment_intensity(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Brightness, contrast and gamma, each per image with its own probability (module docstring)."""
    n, view = x.shape[0], (x.shape[0], *([1] * (x.dim() - 1)))
    axes = tuple(range(1, x.dim()))
    lo, hi, p = BRIGHTNESS
    on = torch.rand(n, generator=gen) < p
    x = x * torch.where(on, _u(n, lo, hi, gen), torch.ones(n)).view(view)
    lo, hi, p = CONTRAST
    on = torch.rand(n, generator=gen) < p
    f = torch.where(on, _u(n, lo, hi, gen), torch.ones(n)).view(view)
    mn, mx = x.amin(axes, keepdim=True), x.amax(axes, keepdim=True)
    mean = x.mean(axes, keepdim=True)
    x = torch.minimum(torch.maximum((x - mean) * f + mean, mn), mx)
    lo, hi, p = GAMMA
    on = torch.rand(n, generator=gen) < p
    g = torch.where(on, _u(n, lo, hi, gen), torch.ones(n)).view(view)
    mn, mx = x.amin(axes, keepdim=True), x.amax(axes, keepdim=True)
    rng = (mx - mn).clamp_min(1e-6)
    gamma = ((x - mn) / rng).clamp(0, 1) ** g * rng + mn
    return torch.where(on.view(view), gamma, x)


# --------------------------------------------------------------------------- training


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    was = model.training
    model.eval()
    out = [
        torch.sigmoid(model(x[i : i + batch].to(device)).float()).cpu() >= 0.5
        for i in range(0, len(x), batch)
    ]
    model.train(was)
    return torch.cat(out)


def score_cases(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 16, device: torch.device | str = "cpu"
) -> dict[str, np.ndarray]:
    """Per-case ``dice`` and ``jaccard`` at probability 0.5 (2D or 3D: the whole volume is one case);
    an empty prediction on an empty mask scores 1."""
    pred = _predict(model, x, batch, torch.device(device)).flatten(1)
    tgt = (y > 0.5).flatten(1)
    inter = (pred & tgt).sum(1).double()
    total = pred.sum(1).double() + tgt.sum(1).double()
    union = (pred | tgt).sum(1).double()
    dice = torch.where(total == 0, torch.ones_like(inter), 2 * inter / total.clamp_min(1))
    jac = torch.where(union == 0, torch.ones_like(inter), inter / union.clamp_min(1))
    return {"dice": dice.numpy(), "jaccard": jac.numpy()}


def dice_scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 32) -> np.ndarray:
    """Per-case Dice at probability 0.5; an empty prediction on an empty mask scores 1."""
    return score_cases(model, x, y, batch)["dice"]


def bce_dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """0.5 BCE + 0.5 soft Dice over the whole batch."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    prob = torch.sigmoid(logits)
    soft = 1 - (2 * (prob * target).sum() + 1e-5) / (prob.sum() + target.sum() + 1e-5)
    return 0.5 * bce + 0.5 * soft


@dataclass
class LoopResult:
    """What :func:`train_loop` returns; ``model`` holds the best-validation weights."""

    model: nn.Module
    best_val: float
    best_iteration: int
    last_validation: int
    iterations: int
    train_s: float
    trajectory: dict[str, list[float]] = field(default_factory=dict)

    @property
    def best_at_last(self) -> bool:
        """The best validation was the last one: still improving when the budget ended."""
        return self.best_iteration == self.last_validation


def train_loop(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    *,
    dims: int | None = None,
    iterations: int | None = None,
    seconds: float | None = None,
    batch: int = 8,
    lr: float = 1e-3,
    loss: str = "bce-dice",
    augment: str = "none",
    intensity: bool = False,
    norm: str = "none",
    eval_every: int = 50,
    seed: int = 0,
    optimizer: str = "adam",
    model: str = "unet",
    metric: str = "dice",
    device: torch.device | str = "cpu",
    progress: Callable[[int, float, float], None] | None = None,
) -> LoopResult:
    """Train from scratch for ``iterations`` updates (or ``seconds`` of wall time) and keep the
    best-validation weights (ties keep the earlier). Validates every ``eval_every`` iterations and
    after the last update, on the mean per-case ``metric``. ``progress(it, val, best)`` per validation.
    """
    if iterations is None and seconds is None:
        raise ValueError("give iterations or seconds")
    if augment not in ("none", "combine"):
        raise ValueError(f"unknown augment {augment!r}")
    if loss not in ("bce", "bce-dice"):
        raise ValueError(f"unknown loss {loss!r}")
    dims = dims or train_y.dim() - 2
    device = torch.device(device)
    torch.manual_seed(seed)
    net = build_model(dims, train_x.shape[1], norm, train_x, model).to(device)
    if optimizer == "rmsprop":
        opt: torch.optim.Optimizer = torch.optim.RMSprop(
            net.parameters(), lr=lr, momentum=0.9, weight_decay=1e-3
        )
    elif optimizer == "sgd":
        opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    else:
        opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    eval_batch = 4 if dims == 3 else 32
    traj: dict[str, list[float]] = {"iteration": [], "val_score": [], "loss": []}
    best, best_it, best_state = -1.0, 0, copy.deepcopy(net.state_dict())
    n, it, last_val, loss_sum, loss_n = len(train_x), 0, 0, 0.0, 0
    start = time.perf_counter()

    def validate() -> None:
        nonlocal best, best_it, best_state, last_val, loss_sum, loss_n
        score = float(score_cases(net, val_x, val_y, eval_batch, device)[metric].mean())
        traj["iteration"].append(it)
        traj["val_score"].append(score)
        traj["loss"].append(loss_sum / max(loss_n, 1))
        loss_sum, loss_n, last_val = 0.0, 0, it
        if score > best:
            best, best_it, best_state = score, it, copy.deepcopy(net.state_dict())
        if progress:
            progress(it, score, best)

    net.train()
    while (it < iterations) if iterations is not None else (time.perf_counter() - start < seconds):  # type: ignore[operator]
        it += 1
        if batch <= n:
            idx = torch.randperm(n, generator=gen)[:batch]
        else:
            idx = torch.randint(n, (batch,), generator=gen)
        xb, yb = train_x[idx], train_y[idx]
        if augment == "combine":
            xb, yb = augment_combine(xb, yb, gen)
        if intensity:
            xb = augment_intensity(xb, gen)
        xb, yb = xb.to(device), yb.to(device)
        logits = net(xb)
        value = bce_dice(logits, yb) if loss == "bce-dice" else F.binary_cross_entropy_with_logits(logits, yb)
        opt.zero_grad()
        value.backward()
        opt.step()
        loss_sum, loss_n = loss_sum + float(value.detach()), loss_n + 1
        if it % eval_every == 0 or it == iterations:
            validate()
    if last_val != it:  # a wall-clock budget ended between validations
        validate()
    train_s = time.perf_counter() - start
    net.load_state_dict(best_state)
    return LoopResult(
        model=net,
        best_val=best,
        best_iteration=best_it,
        last_validation=last_val,
        iterations=it,
        train_s=train_s,
        trajectory=traj,
    )


# --------------------------------------------------------------------------- CLI


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--result", type=Path, required=True, help="a suite result JSON (split and budget)")
    ap.add_argument(
        "--images", type=Path, default=None, help="raw folder of the training source (or give --prepared)"
    )
    ap.add_argument(
        "--test-images",
        type=Path,
        action="append",
        default=[],
        help="raw folder of an out-of-domain test set (all cases), repeatable",
    )
    ap.add_argument("--size", type=int, default=None, help="image side (default: the result's)")
    ap.add_argument("--seconds", type=float, default=None, help="wall budget (default: the run's)")
    ap.add_argument(
        "--iterations",
        type=int,
        default=None,
        help="an iteration budget instead of the wall budget (on a loaded machine, where seconds buy fewer steps)",
    )
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument(
        "--optimizer",
        choices=("adam", "rmsprop", "sgd"),
        default="adam",
        help="adam (the practitioner's default), rmsprop (momentum 0.9, weight decay 1e-3: the suite's "
        "optimizer, to tell a harness defect from an optimizer choice) or sgd (momentum 0.9, weight decay "
        "1e-4: Swin-Unet's public recipe, with --lr 0.05)",
    )
    ap.add_argument(
        "--model",
        choices=("unet", "swinunet"),
        default="unet",
        help="unet (smp.Unet, ResNet-18 from scratch; in 3D the plain 3D UNet of this script) or swinunet "
        "(the suite's Swin-Unet network, from scratch: only the network is shared with the suite, to tell a "
        "network defect from a recipe one)",
    )
    ap.add_argument(
        "--loss",
        choices=("bce", "bce-dice"),
        default="bce-dice",
        help="bce-dice (0.5 BCE + 0.5 soft Dice over the batch, as the paper's public code and nnU-Net "
        "train; default) or bce (the paper's text)",
    )
    ap.add_argument(
        "--augment",
        choices=("none", "combine"),
        default="none",
        help="combine: rotation +-30 degrees, W/H flips, translation up to 10 %% of a side, image and mask together",
    )
    ap.add_argument(
        "--intensity",
        action="store_true",
        help="brightness / contrast / gamma augmentation of training images",
    )
    ap.add_argument(
        "--norm",
        choices=("none", "image", "dataset"),
        default="none",
        help="z-score inputs per image and channel, or with the training set's channel mean and std",
    )
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--seed", type=int, default=None, help="default: the result's seed")
    ap.add_argument(
        "--prepared",
        type=Path,
        default=None,
        help="the suite's prepared folder of the training source (STORE/SOURCE/SIZE): train, validate and "
        "test on its arrays instead of the raw files (needed in 3D)",
    )
    args = ap.parse_args()
    if args.images is None and args.prepared is None:
        ap.error("give --images (raw folder) or --prepared (the suite's prepared folder)")

    res = json.loads(args.result.read_text())
    seed = res["spec"]["seed"] if args.seed is None else args.seed
    size = args.size or res["profile"]["image_size"]
    budget = args.seconds or float(res.get("extras", {}).get("train_time_s") or res["wall_time_s"])
    known = (
        set(json.loads((args.prepared / "cases.json").read_text())) if args.prepared else _ids(args.images)
    )
    in_domain = next(v for v in res["test_sets"].values() if set(v["case_ids"]) <= known)
    if args.prepared is not None:
        train = load_prepared_cases(args.prepared, res["train_cases"], size)
        val = load_prepared_cases(args.prepared, res["val_cases"], size)
        test = load_prepared_cases(args.prepared, in_domain["case_ids"], size)
    else:
        train = Cases(*load_pairs(args.images, res["train_cases"], size), list(res["train_cases"]))
        val = Cases(*load_pairs(args.images, res["val_cases"], size), list(res["val_cases"]))
        test = Cases(*load_pairs(args.images, in_domain["case_ids"], size), list(in_domain["case_ids"]))

    fit = train_loop(
        train.x,
        train.y,
        val.x,
        val.y,
        dims=train.dims,
        iterations=args.iterations,
        seconds=None if args.iterations else budget,
        batch=args.batch,
        lr=args.lr,
        loss=args.loss,
        augment=args.augment,
        intensity=args.intensity,
        norm=args.norm,
        eval_every=args.eval_every,
        seed=seed,
        optimizer=args.optimizer,
        model=args.model,
    )
    eval_batch = 4 if train.dims == 3 else 32
    out: dict[str, object] = {
        "task": res["spec"]["task"],
        "loop_model": args.model if train.dims == 2 else "plain 3D UNet",
        "loop_loss": args.loss,
        "loop_optimizer": f"{args.optimizer} lr {args.lr:g}"
        + (", suite's prepared data" if args.prepared else ""),
        "loop_augment": args.augment,
        "loop_intensity": args.intensity,
        "loop_norm": args.norm,
        "suite_run": res["run_id"].rsplit("__", 1)[-1],
        "seed": seed,
        "n_train": len(train.x),
        "n_val": len(val.x),
        "size": size,
        "budget_s": round(budget, 1),
        "loop_train_s": round(fit.train_s, 1),
        "loop_iterations": fit.iterations,
        "loop_best_val": round(fit.best_val, 4),
        "loop_best_it": fit.best_iteration,
        "loop_best_at_last": fit.best_at_last,
        "loop_test_in_domain": round(
            float(score_cases(fit.model, test.x, test.y, eval_batch)["dice"].mean()), 4
        ),
        "suite_iterations": res["iterations"],
        "suite_best_val": res["best_val_score"],
        "suite_scores": {k: round(v["mean_dice"], 4) for k, v in res["test_sets"].items()},
    }
    for folder in args.test_images:
        ids = sorted(_ids(folder), key=_natural)
        x, y = load_pairs(folder, ids, size)
        out[f"loop_test_{folder.name}"] = round(float(dice_scores(fit.model, x, y).mean()), 4)
    print(json.dumps(out))


def _ids(root: Path) -> set[str]:
    return {p.stem for p in (root / "images").iterdir() if not p.name.startswith(".")}


def _natural(s: str) -> tuple[int, str]:
    return (int(s), s) if s.isdigit() else (10**9, s)


if __name__ == "__main__":
    main()
