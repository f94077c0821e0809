"""Cost of one GenSeg iteration relative to one plain UNet training iteration, in one process.

    python benchmarks/genseg_speed.py --image-size 64 --batch-size 8 --device auto --repeats 10

Both run at the same batch size and resolution on the same device, interleaved
(supervised, GenSeg, supervised, ...) so that load from other processes hits
both alike; the ratio is the number to read, not the absolute times. Prints the
median time per iteration of: the supervised step of the backbone (the baselines' loop),
GenSeg's end-to-end step (three levels + real updates) with a per-phase
breakdown, GenSeg without the architecture level (``end_to_end = false``) and
the Separate segmenter step, so that what dominates is visible. Target: the
end-to-end step at most 8x the supervised one.

``--dims 3`` times the 3D setting instead (1-channel ``size^3`` volumes, the 3D
UNet segmenter and the 3D generator and discriminator, as on hippocampus-3d):

    python benchmarks/genseg_speed.py --dims 3 --image-size 32 --batch-size 2 --profile smoke --threads 1

Every step runs on torch's default kernels (oneDNN on the CPU), the 3D
generator's cells with their padding spelled out (see
``genseg_bench.models.generator``, "3D on the CPU").

``--generator NAME`` (repeatable) times GenSeg with each named mask-to-image
generator (``pix2pix``, the default, ``spade``, ``asapnet``, ``bbdm``,
``softintrovae``; see ``genseg_bench.models.generators``) against the same
supervised step, all in one process and interleaved, so the ratios of different
generators compare:

    python benchmarks/genseg_speed.py --image-size 64 --generator pix2pix --generator spade --generator asapnet
    python benchmarks/genseg_speed.py --image-size 64 --generator pix2pix --generator bbdm --generator softintrovae

Each generator runs its own level 1 (its partner H: PatchGAN, Soft-Intro VAE's
encoder, none for BBDM, whose ``disc`` phase is then empty). For BBDM the ``seg``
phase holds its K sampling steps through G' and ``hyper`` the backward through
them.

The lines of a generator other than Pix2Pix carry its name in brackets
(``GenSeg end-to-end step [spade]``); ``--table`` records Pix2Pix's lines only
(the dry run's estimates are for the paper's generator).

On a CPU shared with other jobs, pass ``--threads 1``: oversubscribed OpenMP
threads slow the double backward far more than the plain step (on the 2-core
development machine under load, 2 threads gave 22x where 1 thread gave 6.5x).

Phases of the end-to-end step (see ``genseg_bench.methods.genseg``):
``gan``    G(M), H(M, G(M)), grad_G L_gan with create_graph (level 1);
``seg``    G'(M_aug) via functional_call, S on generated + real, grad_S with create_graph (level 2);
``val``    S' on the validation batch (level 3 objective);
``hyper``  grad_A: backward through S', the double backward of S, G' and the double backward of G and H;
``disc``   H's loss and gradient;
``update`` the optimiser steps of A, G, H and S.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch

from genseg_bench.augment import augment_masks
from genseg_bench.executors import COST_KEYS
from genseg_bench.methods.base import FitContext, SegData
from genseg_bench.methods.genseg import GenSegBatch, GenSegConfig, GenSegTrainer
from genseg_bench.methods.recipe import seg_loss
from genseg_bench.methods.training import autocast, make_seg_optimizer, prepare_model, sample_batch
from genseg_bench.models.generators import GENERATORS, build_generator
from genseg_bench.models.segmenters import build_segmenter
from genseg_bench.profiles import get_profile
from genseg_bench.runner import resolve_device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def blob_data(
    n: int, size: int, channels: int, device: torch.device, seed: int = 0, dims: int = 2
) -> SegData:
    """Random discs (balls in 3D) on noise: enough structure for every loss to be non-trivial.

    The 2D draws are those of the original 2D-only version, so its timings stay comparable.
    """
    g = torch.Generator().manual_seed(seed)
    axes = torch.meshgrid(*[torch.linspace(0, 1, size)] * dims, indexing="ij")
    centres = torch.rand(n, dims, generator=g) * 0.5 + 0.25
    radii = torch.rand(n, generator=g) * 0.15 + 0.1
    view = (n, *[1] * dims)
    dist2 = sum((a - centres[:, i].view(view)) ** 2 for i, a in enumerate(axes))
    masks = (dist2 < radii.view(view) ** 2).float()[:, None]
    images = (0.6 * torch.rand(n, channels, *[size] * dims, generator=g) + 0.3 * masks).clamp(0, 1)
    return SegData(images.to(device), masks.to(device), [f"b{i}" for i in range(n)])


class PhaseTimer:
    """Accumulates wall time per phase; syncs the device at each mark so GPU time lands in its phase."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.last = 0.0
        self.times: dict[str, list[float]] = defaultdict(list)

    def start(self) -> None:
        _sync(self.device)
        self.last = time.perf_counter()

    def __call__(self, phase: str) -> None:
        _sync(self.device)
        now = time.perf_counter()
        self.times[phase].append(now - self.last)
        self.last = now


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--profile", default="quick", help="optimiser settings, generator width and AMP")
    ap.add_argument(
        "--width", type=int, default=None, help="generator/discriminator width (default: the profile's)"
    )
    ap.add_argument("--backbone", default="unet")
    ap.add_argument(
        "--dims", type=int, choices=[2, 3], default=2, help="3: 1-channel size^3 volumes, 3D UNet and 3D GAN"
    )
    ap.add_argument(
        "--generator",
        action="append",
        choices=sorted(GENERATORS),
        default=None,
        help="the mask-to-image generator; repeat it to time several in one process (default: pix2pix)",
    )
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument(
        "--lookahead",
        choices=["optimizer", "sgd"],
        default="optimizer",
        help="the unrolled step rule (GenSegConfig.lookahead); the cost is the same by design",
    )
    ap.add_argument(
        "--table",
        type=Path,
        default=None,
        help="also write the medians into this JSON table (benchmarks/iteration_times.json is the one "
        "`genseg-bench run --dry-run` estimates device time from); replaces the entry of the same device",
    )
    ap.add_argument(
        "--memory",
        action="store_true",
        help="only the peak memory of one end-to-end step (host RSS on the CPU, allocated memory on CUDA); "
        "run it in a fresh process per setting, e.g. --profile paper --image-size 64 --batch-size 8",
    )
    args = ap.parse_args()
    generators: list[str] = list(dict.fromkeys(args.generator or ["pix2pix"]))
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    profile = get_profile(args.profile, image_size=args.image_size)
    if args.width:
        profile = profile.model_copy(update={"gen_width": args.width})
    profile = profile.model_copy(update={"batch_size": args.batch_size})
    ctx = FitContext(device=device, seed=0, profile=profile, out_dir=Path("."))
    amp_on = ctx.use_amp

    def amp() -> contextlib.AbstractContextManager[None]:
        return autocast(ctx)

    size, bs, dims = args.image_size, args.batch_size, args.dims
    channels = 3 if dims == 2 else 1  # the 3D tasks are single-channel MRI / CT
    spatial = (size,) * dims
    data = blob_data(max(16, bs), size, channels, device, dims=dims)
    val = blob_data(max(8, bs), size, channels, device, seed=1, dims=dims)
    rng = torch.Generator(device=device).manual_seed(0)
    torch.manual_seed(0)

    # the plain supervised step, exactly as SupervisedMethod runs it
    sup = prepare_model(build_segmenter(args.backbone, channels, dims), ctx, dims)
    sup_opt, _ = make_seg_optimizer(sup.parameters(), profile)

    def supervised_step() -> None:
        images, masks = sample_batch(data, bs, rng)
        with amp():
            logits = sup(images)
        loss = seg_loss(logits, masks)
        sup_opt.zero_grad(set_to_none=True)
        loss.backward()
        sup_opt.step()

    def build_gen(name: str, cells: str = "learnable") -> torch.nn.Module:
        return build_generator(
            name,
            channels,
            spatial,
            width=profile.gen_width,
            cells=cells,  # type: ignore[arg-type]
            dims=dims,
            dropout=GenSegConfig(generator=name).generator_dropout,  # type: ignore[arg-type]
        )

    def trainer(config: dict[str, object]) -> GenSegTrainer:
        cfg = GenSegConfig.model_validate(config)
        seg = prepare_model(build_segmenter(args.backbone, channels, dims), ctx, dims)
        gen = build_gen(cfg.generator, cfg.cells)
        disc = gen.build_partner(channels, spatial, width=profile.gen_width)  # type: ignore[operator]
        gen = prepare_model(gen, ctx, dims)
        if disc is not None:  # BBDM has no level-1 partner
            disc = prepare_model(disc, ctx, dims)
        return GenSegTrainer(cfg, gen, disc, seg, profile, amp=amp)  # type: ignore[arg-type]

    aug = GenSegConfig().augment_config()

    def batch(with_val: bool) -> GenSegBatch:
        images, masks = sample_batch(data, bs, rng)
        aug_masks = augment_masks(masks, aug, rng)
        if not with_val:
            return GenSegBatch(masks, images, aug_masks)
        vi, vm = sample_batch(val, bs, rng)
        return GenSegBatch(masks, images, aug_masks, vi, vm)

    def fwd_bwd(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
        """Forward + backward of one model."""

        def run() -> None:
            with amp():
                y = model(x)
            y.float().mean().backward()

        return run

    if args.memory:
        measure_memory(
            trainer({"generator": generators[0], "arch_warmup": 0}), batch(True), device, args, profile
        )
        return
    masks_b = data.masks[:bs]
    # named after the backbone: with --backbone deeplabv3plus it is DeepLabV3+'s step, not a UNet's
    sup_name = COST_KEYS["supervised"].format(backbone=args.backbone)
    steps: dict[str, Callable[[], None]] = {sup_name: supervised_step}
    timers: dict[str, PhaseTimer] = {}
    for name in generators:
        tag = "" if name == "pix2pix" else f" [{name}]"
        # no architecture warm-up: every timed end-to-end step runs the A level
        e2e = trainer({"generator": name, "lookahead": args.lookahead, "arch_warmup": 0})
        joint = trainer({"generator": name, "end_to_end": False})
        separate = trainer({"generator": name, "separate": True})
        timer = timers[name] = PhaseTimer(device)

        def e2e_step(e2e: GenSegTrainer = e2e, timer: PhaseTimer = timer) -> None:
            b = batch(True)
            timer.start()
            e2e.end_to_end_step(b, timer)

        def joint_step(joint: GenSegTrainer = joint) -> None:
            b = batch(False)
            joint.gan_step(b.masks, b.images)
            joint.segmenter_step(b.masks, b.images, b.aug_masks)

        def separate_step(separate: GenSegTrainer = separate) -> None:
            b = batch(False)
            separate.segmenter_step(b.masks, b.images, b.aug_masks)

        steps.update(
            {
                f"GenSeg end-to-end step{tag}": e2e_step,
                f"GenSeg joint step (no A level){tag}": joint_step,
                f"Separate segmenter step{tag}": separate_step,
                f"G fwd+bwd (3-branch cells){tag}": fwd_bwd(build_gen(name).to(device), masks_b),
                f"G fwd+bwd (single branch){tag}": fwd_bwd(build_gen(name, "single").to(device), masks_b),
            }
        )
    steps["S fwd+bwd"] = fwd_bwd(sup, data.images[:bs])
    times: dict[str, list[float]] = defaultdict(list)
    for rep in range(args.warmup + args.repeats):
        for name, fn in steps.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            if rep >= args.warmup:
                times[name].append(time.perf_counter() - t0)
        if rep == args.warmup - 1:
            for timer in timers.values():
                timer.times.clear()

    med = {k: statistics.median(v) for k, v in times.items()}
    dev = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    print(
        f"device: {dev}; {'image' if dims == 2 else 'volume'} {'x'.join([str(size)] * dims)}, batch {bs}, profile {profile.name}, "
        f"generator width {profile.gen_width}, backbone {args.backbone}, AMP {amp_on}, "
        f"lookahead {args.lookahead}, generators {', '.join(generators)}, "
        f"median of {args.repeats} (after {args.warmup} warm-up)"
    )
    base = med[sup_name]
    for name, t in med.items():
        print(f"  {name:34s} {t * 1000:9.1f} ms   {t / base:6.2f}x supervised")
    for name, timer in timers.items():
        print(f"end-to-end step by phase ({name}):")
        total = sum(statistics.median(v) for v in timer.times.values())
        for phase, v in timer.times.items():
            t = statistics.median(v)
            print(f"  {phase:8s} {t * 1000:9.1f} ms   {100 * t / total:5.1f}%")
    for name in generators:
        tag = "" if name == "pix2pix" else f" [{name}]"
        ratio = med[f"GenSeg end-to-end step{tag}"] / base
        print(f"RATIO GenSeg/supervised iteration ({dims}D, {name}): {ratio:.2f}x (target <= 8x)")
    if args.table:
        if "pix2pix" not in generators:
            raise SystemExit("--table records the pix2pix generator's lines: add --generator pix2pix")
        write_table(args, device, dev, profile, med, dims)


def _rss_gb() -> float:
    """This process's resident memory now (Linux /proc), in GB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1e6
    return float("nan")


def measure_memory(
    e2e: GenSegTrainer, b: GenSegBatch, device: torch.device, args: argparse.Namespace, profile: object
) -> None:
    """Peak memory of one end-to-end step: what the three levels hold at once beyond the models.

    On the CPU the peak is the process's high-water resident set (``ru_maxrss``) minus the resident
    set before the step (models, optimisers and data); on CUDA, ``max_memory_allocated`` over the step.
    """
    import resource

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device) / 1e9
        e2e.end_to_end_step(b)
        _sync(device)
        peak = torch.cuda.max_memory_allocated(device) / 1e9
        where = f"CUDA {torch.cuda.get_device_name(device)}"
    else:
        before = _rss_gb()
        e2e.end_to_end_step(b)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux
        where = f"CPU, {torch.get_num_threads()} threads"
    width = getattr(profile, "gen_width", "?")
    print(
        f"MEMORY one GenSeg end-to-end step ({where}; image {args.image_size} px, batch {args.batch_size}, "
        f"generator width {width}, backbone {args.backbone}): peak {peak:.2f} GB, before the step "
        f"{before:.2f} GB, the step's own {peak - before:.2f} GB"
    )


def write_table(
    args: argparse.Namespace,
    device: torch.device,
    name: str,
    profile: object,
    med: dict[str, float],
    dims: int,
) -> None:
    """Merge this measurement into the JSON table of seconds per iteration (one entry per device kind)."""
    import json
    import sys

    path: Path = args.table
    table = json.loads(path.read_text()) if path.is_file() else {}
    entry = {
        "device": device.type,
        "device_name": name,
        "dims": dims,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "profile": profile.name,  # type: ignore[attr-defined]
        "gen_width": profile.gen_width,  # type: ignore[attr-defined]
        "backbone": args.backbone,
        "amp": bool(profile.amp and device.type == "cuda"),  # type: ignore[attr-defined]
        "seconds_per_iteration": {
            k: round(med[line.format(backbone=args.backbone)], 6) for k, line in COST_KEYS.items()
        },
        "measured": time.strftime("%Y-%m-%d", time.gmtime()),
        "command": "python benchmarks/genseg_speed.py " + " ".join(sys.argv[1:]),
    }
    others = [
        e
        for e in table.get("entries", [])
        if (e.get("device"), e.get("backbone"), e.get("dims", 2)) != (device.type, args.backbone, dims)
    ]
    table["about"] = table.get("about") or (
        "Median seconds per training iteration (no validation), measured by benchmarks/genseg_speed.py "
        "--table; `genseg-bench run --dry-run` scales them to each job's pixels and batch to estimate device time."
    )
    table["entries"] = [*others, entry]
    path.write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
