"""A plain, independent Adam training loop: the yardstick for the suite's supervised UNet numbers.

A benchmark's weakest baseline sets its credibility, so the suite's vanilla UNet is
checked against the simplest loop a practitioner would write, on the same split and
the same wall-clock budget. This script shares no code path with the suite's
training, data store or metrics: it reads the raw images with PIL, resizes them
itself, trains ``smp.Unet`` (ResNet-18 encoder from scratch, as the suite's ``unet``)
with Adam and binary cross-entropy, validates every ``--eval-every`` iterations,
keeps the best-validation weights and scores per-case Dice (empty/empty = 1) on
the test cases. The case ids come from a suite result file, so the split is the
suite's, and the default wall-clock budget is that run's own training time.

    python benchmarks/independent_loop.py --result results/kvasir-to-cvc/<run>.json \\
        --images ../data/kvasir-seg --test-images ../data/cvc-clinicdb

Prints one JSON line with the loop's scores next to the suite run's.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from PIL import Image


def load_prepared(folder: Path, ids: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The suite's prepared arrays (``images.npy`` N x H x W x C uint8, ``masks.npy``, ``cases.json``), read
    with numpy alone: ``--prepared`` swaps only the data, to tell a data difference from a training one."""
    cases = json.loads((folder / "cases.json").read_text())
    rows = [cases.index(c) for c in ids]
    img = np.load(folder / "images.npy", mmap_mode="r")[rows].astype(np.float32) / 255.0
    msk = (np.load(folder / "masks.npy", mmap_mode="r")[rows] > 0).astype(np.float32)
    return torch.from_numpy(img).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(msk)[:, None]


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


@torch.no_grad()
def dice_scores(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 32) -> np.ndarray:
    """Per-case Dice at probability 0.5; an empty prediction on an empty mask scores 1."""
    model.eval()
    out = []
    for i in range(0, len(x), batch):
        pred = torch.sigmoid(model(x[i : i + batch])) >= 0.5
        tgt = y[i : i + batch] > 0.5
        inter = (pred & tgt).flatten(1).sum(1).double()
        total = pred.flatten(1).sum(1).double() + tgt.flatten(1).sum(1).double()
        out.append(torch.where(total == 0, torch.ones_like(inter), 2 * inter / total.clamp_min(1)))
    model.train()
    return torch.cat(out).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--result", type=Path, required=True, help="a suite result JSON (split and budget)")
    ap.add_argument("--images", type=Path, required=True, help="raw folder of the training source")
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
        help="unet (smp.Unet, ResNet-18 from scratch) or swinunet (the suite's Swin-Unet network, from "
        "scratch: only the network is shared with the suite, to tell a network defect from a recipe one)",
    )
    ap.add_argument(
        "--loss",
        choices=("bce", "bce-dice"),
        default="bce",
        help="bce (the suite's L_seg) or bce-dice (0.5 BCE + 0.5 soft Dice, as Swin-Unet's public code "
        "trains: CE + Dice)",
    )
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--seed", type=int, default=None, help="default: the result's seed")
    ap.add_argument(
        "--prepared",
        type=Path,
        default=None,
        help="the suite's prepared folder of the training source (STORE/SOURCE/SIZE): train, validate and "
        "test on its arrays instead of the raw files",
    )
    args = ap.parse_args()

    res = json.loads(args.result.read_text())
    seed = res["spec"]["seed"] if args.seed is None else args.seed
    size = args.size or res["profile"]["image_size"]
    budget = args.seconds or float(res.get("extras", {}).get("train_time_s") or res["wall_time_s"])
    torch.manual_seed(seed)
    in_domain = next(v for v in res["test_sets"].values() if set(v["case_ids"]) <= _ids(args.images))
    if args.prepared is not None:
        train_x, train_y = load_prepared(args.prepared, res["train_cases"])
        val_x, val_y = load_prepared(args.prepared, res["val_cases"])
        test_x, test_y = load_prepared(args.prepared, in_domain["case_ids"])
    else:
        train_x, train_y = load_pairs(args.images, res["train_cases"], size)
        val_x, val_y = load_pairs(args.images, res["val_cases"], size)
        test_x, test_y = load_pairs(args.images, in_domain["case_ids"], size)

    if args.model == "swinunet":
        from genseg_bench.models.swin_unet import SwinUnet

        model: torch.nn.Module = SwinUnet(in_channels=3)
    else:
        model = smp.Unet("resnet18", encoder_weights=None, in_channels=3, classes=1)
    if args.optimizer == "rmsprop":
        opt: torch.optim.Optimizer = torch.optim.RMSprop(
            model.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-3
        )
    elif args.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-4)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    best, best_state, best_it, it = -1.0, copy.deepcopy(model.state_dict()), 0, 0
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    model.train()
    while (it < args.iterations) if args.iterations else (time.perf_counter() - start < budget):
        it += 1
        idx = torch.randperm(len(train_x), generator=gen)[: args.batch]
        logits = model(train_x[idx])
        loss = F.binary_cross_entropy_with_logits(logits, train_y[idx])
        if args.loss == "bce-dice":
            prob, tgt = torch.sigmoid(logits), train_y[idx]
            soft = 1 - (2 * (prob * tgt).sum() + 1e-5) / (prob.sum() + tgt.sum() + 1e-5)
            loss = 0.5 * loss + 0.5 * soft
        opt.zero_grad()
        loss.backward()
        opt.step()
        if it % args.eval_every == 0:
            score = float(dice_scores(model, val_x, val_y).mean())
            if score > best:
                best, best_state, best_it = score, copy.deepcopy(model.state_dict()), it
    train_time = time.perf_counter() - start
    model.load_state_dict(best_state)
    out: dict[str, object] = {
        "task": res["spec"]["task"],
        "loop_model": args.model,
        "loop_loss": args.loss,
        "loop_optimizer": f"{args.optimizer} lr {args.lr:g}"
        + (", suite's prepared data" if args.prepared else ""),
        "suite_run": res["run_id"].rsplit("__", 1)[-1],
        "seed": seed,
        "n_train": len(train_x),
        "n_val": len(val_x),
        "size": size,
        "budget_s": round(budget, 1),
        "loop_train_s": round(train_time, 1),
        "loop_iterations": it,
        "loop_best_val": round(best, 4),
        "loop_best_it": best_it,
        "loop_test_in_domain": round(float(dice_scores(model, test_x, test_y).mean()), 4),
        "suite_iterations": res["iterations"],
        "suite_best_val": res["best_val_score"],
        "suite_scores": {k: round(v["mean_dice"], 4) for k, v in res["test_sets"].items()},
    }
    for folder in args.test_images:
        ids = sorted(_ids(folder), key=_natural)
        x, y = load_pairs(folder, ids, size)
        out[f"loop_test_{folder.name}"] = round(float(dice_scores(model, x, y).mean()), 4)
    print(json.dumps(out))


def _ids(root: Path) -> set[str]:
    return {p.stem for p in (root / "images").iterdir() if not p.name.startswith(".")}


def _natural(s: str) -> tuple[int, str]:
    return (int(s), s) if s.isdigit() else (10**9, s)


if __name__ == "__main__":
    main()
