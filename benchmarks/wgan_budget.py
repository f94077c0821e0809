"""How many generator steps does the WGAN baseline need before its samples are pairs, not noise?

The suite's ``wgan-unet`` trains its GAN for ``gan_iterations`` generator steps (None: the
profile's iterations, the budget GenSeg's Separate gives its GAN). After the cpu profile's
800 steps the weight-clipped WGAN's samples were noise with empty masks, so "UNet + WGAN" was
"UNet + noise labelled background". This trains the suite's own WGAN (the same
:class:`~genseg_bench.methods.wgan.WGANTrainer`, networks and batches as ``wgan-unet``) on a
task's training pairs for ``--steps`` generator steps and, every ``--every`` steps, draws
``--samples`` pairs and measures what a segmenter would get from them:

* ``empty``: the share of generated masks with no foreground pixel (real training masks: 0);
* ``fg``: mean foreground fraction of the generated masks against the real masks';
* ``img_gap``: mean |per-channel mean| + |per-channel std| difference between generated and
  real images (0 = same first two moments);
* ``inside-outside``: mean image intensity inside the generated mask minus outside, against
  the same for real pairs (polyps are brighter / redder than the mucosa around them: a
  generator whose masks say nothing about its images scores ~0 here);
* the critic's Wasserstein estimate, and a grid of samples per checkpoint (PNG).

    python benchmarks/wgan_budget.py --task kvasir-to-cvc --store STORE --image-size 64 \\
        --penalty clip --steps 4000 --every 400 --out OUT

One process, one thread by default (``--threads``). Prints one row per checkpoint and writes
``OUT/wgan_budget.json``. The numbers decide ``gan_iterations`` of the WGAN specs; they are
not a test.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from genseg_bench.catalog import Catalog
from genseg_bench.data.store import Store
from genseg_bench.methods.base import FitContext, SegData
from genseg_bench.methods.config import WGANConfig, parse_config
from genseg_bench.methods.registry import build_method
from genseg_bench.methods.training import sample_batch
from genseg_bench.methods.wgan import GAN_STREAM, WGANMethod, WGANTrainer, sample_pairs, save_samples_grid
from genseg_bench.models.wgan_nets import encode_pairs
from genseg_bench.profiles import get_profile
from genseg_bench.runner import load_task_data, run_image_size, seg_data


def pair_stats(data: SegData) -> dict[str, float]:
    """Moments of images and masks, and the image contrast inside vs outside the mask."""
    img, msk = data.images.float(), (data.masks.float() > 0.5).float()
    dims = (0, *range(2, img.dim()))
    per_case_fg = msk.flatten(1).mean(1)
    inside = (img * msk).sum(dims) / msk.sum(dims).clamp_min(1)
    outside = (img * (1 - msk)).sum(dims) / (1 - msk).sum(dims).clamp_min(1)
    return {
        "empty": float((per_case_fg == 0).float().mean()),
        "fg": float(per_case_fg.mean()),
        "contrast": float((inside - outside).mean()),
        "mean": img.mean(dims).tolist(),  # type: ignore[dict-item]
        "std": img.std(dims).tolist(),  # type: ignore[dict-item]
    }


def moment_gap(a: dict[str, float], b: dict[str, float]) -> float:
    """Mean |difference| of the per-channel image means plus that of the per-channel stds."""
    out = 0.0
    for key in ("mean", "std"):
        xs, ys = a[key], b[key]
        out += sum(abs(x - y) for x, y in zip(xs, ys, strict=True)) / len(xs)  # type: ignore[arg-type]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="kvasir-to-cvc")
    ap.add_argument("--method", default="wgan-unet", help="a method of kind 'wgan' (its config is the start)")
    ap.add_argument("--penalty", choices=["clip", "gp"], default=None, help="override the method's penalty")
    ap.add_argument("--size", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--image-size", type=int, default=None)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--every", type=int, default=400)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    catalog = Catalog.load()
    task = catalog.task(args.task)
    spec = catalog.method(args.method)
    if spec.kind != "wgan":
        raise SystemExit(
            f"--method {args.method}: kind {spec.kind!r}, not 'wgan' (try wgan-unet or wgan-gp-unet)"
        )
    config = dict(spec.config)
    if args.penalty:
        config["penalty"] = args.penalty
    cfg = parse_config(WGANConfig, config, f"method {spec.name!r}")
    profile = get_profile(args.profile, image_size=args.image_size)
    device = torch.device("cpu")
    size = run_image_size(task, profile)
    data = load_task_data(task, Store(args.store), size)
    subset = data.split.subset(args.size, task.train_source, None)
    train = seg_data(data.train_source(), subset.train, size, task.channels, device)
    ctx = FitContext(device=device, seed=args.seed, profile=profile, out_dir=args.out, metric=task.metric)
    method = build_method(spec)
    assert isinstance(method, WGANMethod)

    rng = torch.Generator(device=device)
    rng.manual_seed(args.seed + GAN_STREAM)  # the stream wgan-unet's GAN draws from
    gen, critic = method.build_gan(train, ctx, cfg)
    trainer = WGANTrainer(cfg, gen, critic, rng)
    gen.train()
    critic.train()
    real = pair_stats(train)
    print(
        f"{args.task} n={args.size} ({len(train)} training pairs) {size} px, penalty {cfg.penalty}, "
        f"lr {cfg.gan_lr}, n_critic {cfg.n_critic}, batch {profile.batch_size}, width {profile.gen_width}"
    )
    print(
        f"real pairs: fg {real['fg']:.3f}, empty {real['empty']:.2f}, inside-outside {real['contrast']:+.3f}"
    )
    print(f"{'step':>6} {'W est':>8} {'empty':>6} {'fg':>6} {'img_gap':>8} {'in-out':>7} {'s':>6}")
    rows = []
    start = time.perf_counter()
    w_sum, w_n = 0.0, 0
    for step in range(1, args.steps + 1):
        losses = trainer.iteration(lambda: encode_pairs(*sample_batch(train, profile.batch_size, rng)))
        w_sum += float(losses["wasserstein"])
        w_n += 1
        if step % args.every == 0 or step == args.steps:
            with torch.no_grad():
                pool = sample_pairs(gen, args.samples, profile.batch_size, rng, device)
            s = pair_stats(pool)
            gap = moment_gap(s, real)
            row = {
                "step": step,
                "wasserstein": w_sum / w_n,
                "empty": s["empty"],
                "fg": s["fg"],
                "img_gap": gap,
                "contrast": s["contrast"],
                "seconds": time.perf_counter() - start,
                "grid": str(save_samples_grid(pool, args.out / f"samples_{step:06d}.png")),
            }
            rows.append(row)
            w_sum, w_n = 0.0, 0
            print(
                f"{step:>6} {row['wasserstein']:>8.4f} {row['empty']:>6.2f} {row['fg']:>6.3f} "
                f"{gap:>8.3f} {row['contrast']:>+7.3f} {row['seconds']:>6.0f}",
                flush=True,
            )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "wgan_budget.json").write_text(
        json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "real": real, "rows": rows}, indent=1)
    )


if __name__ == "__main__":
    main()
