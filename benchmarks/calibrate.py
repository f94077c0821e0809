"""Calibrate the suite's shared training recipe against a plain independent loop, per task.

For a task and profile, runs the suite's vanilla UNet (``unet``) and ``unet-combine``
through the suite's CLI (resumable: a finished run is not trained again), then, for
each of those runs, the independent loop of ``benchmarks/independent_loop.py`` (Adam
1e-3, BCE + soft Dice, nothing shared with the suite's training code) on the identical
cases: the run's own train / validation / test case ids, read from the prepared arrays
the run read (found in the store by the run's data fingerprints), at the run's image
size, batch, iteration budget and validation interval, with the augmentation of the
method compared (``unet``: none; ``unet-combine``: rotation, flips, translation) and the
input normalisation / intensity augmentation the run's profile records
(``input_norm`` / ``intensity_aug``; absent means none / off).

Each loop run is one JSON line of ``DIR/calibration/<task>.jsonl`` (resumable: a suite
run already calibrated is skipped). The table (stdout and ``DIR/calibration/<task>.md``)
gives, per method, the suite's and the loop's mean +- sd over seeds on the task's
in-domain test set (out-of-domain sets as extra columns), the gap (suite - loop), how
many runs of each side were still improving at the end (best at the last validation),
and the verdict against the bar: the suite's mean is not below the loop's by more than
0.03, and at most one of three suite seeds ends best at the last validation.

    OMP_NUM_THREADS=1 python benchmarks/calibrate.py --task kvasir-to-cvc --profile cpu \\
        --seeds 0,1,2 --store STORE --results-dir results --threads 1

Only task metadata (the catalog, the profile table) is read from genseg_bench here; the
suite trains in its own process, the loop in this one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

GAP_BAR = -0.03
"""The suite's mean may be below the loop's by at most this much (suite - loop >= -0.03)."""
LAST_FRACTION = 1 / 3
"""At most this fraction of the suite's seeds may end with the best at the last validation (1 of 3)."""
AUGMENT = {"unet": "none", "unet-combine": "combine"}
"""The loop's augmentation for each suite method it is compared with."""
LOOP_LR = 1e-3
LOOP_LOSS = "bce-dice"


def log(msg: str) -> None:
    print(f"[calibrate {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- verdict


@dataclass
class Verdict:
    gap: float
    passed: bool
    reasons: list[str] = field(default_factory=list)


def verdict(suite: Sequence[float], loop: Sequence[float], suite_best_at_last: Sequence[bool]) -> Verdict:
    """The bar: ``mean(suite) - mean(loop) >= -0.03`` and at most a third of the suite's seeds
    (one of three) best at the last validation."""
    gap = statistics.fmean(suite) - statistics.fmean(loop)
    reasons = []
    if gap < GAP_BAR - 1e-12:
        reasons.append(f"gap {gap:+.3f} < {GAP_BAR:+.2f}")
    still = sum(bool(b) for b in suite_best_at_last)
    allowed = int(len(suite_best_at_last) * LAST_FRACTION + 1e-9)
    if still > allowed:
        reasons.append(
            f"{still}/{len(suite_best_at_last)} suite seeds best at the last validation (max {allowed})"
        )
    return Verdict(gap=gap, passed=not reasons, reasons=reasons)


# --------------------------------------------------------------------------- suite side


def expected_profile(profile: str, image_size: int | None, iterations: int | None) -> dict[str, Any]:
    from genseg_bench.profiles import get_profile

    return get_profile(profile, image_size, iterations).model_dump()


def run_suite(args: argparse.Namespace, methods: list[str], seeds: list[int]) -> int:
    """``genseg-bench run`` in a subprocess, one torch thread pool of ``--threads``; finished runs are skipped."""
    cmd = [
        sys.executable,
        "-c",
        "from genseg_bench.cli import app; app()",
        "run",
        "--task",
        args.task,
        "--methods",
        ",".join(methods),
        "--seeds",
        ",".join(map(str, seeds)),
        "--profile",
        args.profile,
        "--store",
        str(args.store),
        "--results",
        str(args.results_dir),
        "--threads",
        str(args.threads),
        "--device",
        args.device,
        "--no-report",
    ]
    if args.sizes:
        cmd += ["--sizes", args.sizes]
    if args.image_size:
        cmd += ["--image-size", str(args.image_size)]
    if args.iterations:
        cmd += ["--iterations", str(args.iterations)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    log("suite: " + " ".join(cmd[3:]))
    return subprocess.run(cmd, env=env, check=False).returncode


def find_result(
    results_dir: Path, task: str, method: str, seed: int, profile: dict[str, Any], size: int | None
) -> tuple[Path, dict[str, Any]] | None:
    """The suite's result of (task, method, seed) under this profile (fixed subset), newest first.

    A result whose whole recorded profile equals the one asked for wins; failing that, one with the
    same profile name, image size and iteration budget (a profile field added since it ran).
    """
    folder = Path(results_dir) / task
    exact, near = [], []
    for path in folder.glob(f"{task}__{method}__n*__s{seed}__{profile['name']}__*.json"):
        try:
            res = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        spec = res.get("spec", {})
        if (spec.get("method"), spec.get("seed"), spec.get("subset", "fixed")) != (method, seed, "fixed"):
            continue
        if size is not None and spec.get("train_size") != size:
            continue
        rp = res.get("profile", {})
        key = (str(res.get("created", "")), path)
        if rp == profile:
            exact.append((key, res))
        elif all(rp.get(k) == profile[k] for k in ("name", "image_size", "iterations")):
            near.append((key, res))
    pick = sorted(exact or near, key=lambda t: t[0], reverse=True)
    return (pick[0][0][1], pick[0][1]) if pick else None


def suite_summary(res: dict[str, Any], metric: str) -> dict[str, Any]:
    traj = res.get("trajectory") or {}
    its = traj.get("iteration") or [res.get("iterations")]
    last = int(its[-1]) if its and its[-1] is not None else int(res.get("iterations") or 0)
    best_it = int(res.get("best_iteration") or 0)
    return {
        "test": {k: float(v[f"mean_{metric}"]) for k, v in res["test_sets"].items()},
        "best_val": res.get("best_val_score"),
        "best_iteration": best_it,
        "last_validation": last,
        "best_at_last": best_it == last,
        "iterations": res.get("iterations"),
    }


# --------------------------------------------------------------------------- loop side


def run_size(task: Any, profile: dict[str, Any]) -> int:
    """The side the suite's run trained at: the profile's or the task's; a 3D task never upsamples."""
    size = int(profile.get("image_size") or task.image_size)
    return min(size, task.image_size) if task.dims == 3 else size


def prepared_folder(store: Path, source: str, fingerprint: str) -> Path:
    """The prepared copy of ``source`` whose fingerprint the run recorded (the arrays the run read)."""
    base = Path(store) / source
    for meta in sorted(base.glob("*/meta.json")):
        try:
            if json.loads(meta.read_text()).get("fingerprint") == fingerprint:
                return meta.parent
        except (OSError, json.JSONDecodeError):
            continue
    raise FileNotFoundError(f"{base}: no prepared copy of {source} with the run's fingerprint {fingerprint}")


def loop_record(
    res: dict[str, Any], task: Any, store: Path, device: str, progress: bool = True
) -> dict[str, Any]:
    """Train the independent loop on the cases and budget of suite result ``res``; one JSONL record."""
    import independent_loop as L

    spec, prof = res["spec"], res["profile"]
    method = spec["method"]
    size = run_size(task, prof)
    fps = spec["data_fingerprints"]
    train_folder = prepared_folder(store, task.train_source, fps[task.train_source])
    train = L.load_prepared_cases(train_folder, res["train_cases"], size, task.channels)
    val = L.load_prepared_cases(train_folder, res["val_cases"], size, task.channels)
    recipe = {
        "optimizer": "adam",
        "lr": LOOP_LR,
        "loss": LOOP_LOSS,
        "augment": AUGMENT.get(method, "none"),
        "intensity": bool(prof.get("intensity_aug", False)),
        "norm": str(prof.get("input_norm", "none") or "none"),
        "model": "smp.Unet resnet18 (scratch)" if task.dims == 2 else "plain 3D UNet 16-32-64-128",
    }
    budget = {
        "size": size,
        "batch": int(prof["batch_size"]),
        "iterations": int(res.get("iterations") or prof["iterations"]),
        "eval_every": int(prof["eval_every"]),
    }
    tag = f"{task.id} {method} seed {spec['seed']}"

    def show(it: int, score: float, best: float) -> None:
        if progress:
            log(f"loop {tag}: it {it}/{budget['iterations']} val {score:.3f} best {best:.3f}")

    fit = L.train_loop(
        train.x,
        train.y,
        val.x,
        val.y,
        dims=task.dims,
        iterations=budget["iterations"],
        batch=budget["batch"],
        lr=LOOP_LR,
        loss=LOOP_LOSS,
        augment=recipe["augment"],
        intensity=recipe["intensity"],
        norm=recipe["norm"],
        eval_every=budget["eval_every"],
        seed=int(spec["seed"]),
        metric=res.get("metric", task.metric),
        device=device,
        progress=show,
    )
    sources = {ts.name: ts.source for ts in task.test_sets}
    test_scores, test_ids = {}, {}
    eval_batch = 4 if task.dims == 3 else 32
    for name, ts in res["test_sets"].items():
        src = sources[name]
        folder = train_folder if src == task.train_source else prepared_folder(store, src, fps[src])
        cases = L.load_prepared_cases(folder, ts["case_ids"], size, task.channels)
        s = L.score_cases(fit.model, cases.x, cases.y, eval_batch, device)
        test_scores[name] = {k: float(v.mean()) for k, v in s.items()}
        test_ids[name] = cases.case_ids
    return {
        "task": task.id,
        "method": method,
        "seed": int(spec["seed"]),
        "train_size": spec.get("train_size"),
        "suite_run": res["run_id"],
        "suite_created": res.get("created"),
        "metric": res.get("metric", task.metric),
        "recipe": recipe,
        "budget": budget,
        "cases": {"train": train.case_ids, "val": val.case_ids, "test": test_ids},
        "suite": suite_summary(res, res.get("metric", task.metric)),
        "loop": {
            "test": test_scores,
            "best_val": fit.best_val,
            "best_iteration": fit.best_iteration,
            "last_validation": fit.last_validation,
            "best_at_last": fit.best_at_last,
            "iterations": fit.iterations,
            "train_s": round(fit.train_s, 1),
            "trajectory": fit.trajectory,
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def read_records(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_record(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(json.dumps(record) + "\n")


# --------------------------------------------------------------------------- table


def _ms(values: Sequence[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {sd:.3f}"


def in_domain_set(task: Any, names: Sequence[str]) -> str:
    inside = [ts.name for ts in task.test_sets if ts.domain == "in" and ts.name in names]
    return inside[0] if inside else names[0]


def table(
    task: Any, records: list[dict[str, Any]], methods: Sequence[str]
) -> tuple[list[str], list[dict[str, Any]]]:
    """Markdown lines of the summary table (one row per method) and the rows as data."""
    names = [ts.name for ts in task.test_sets]
    ind = in_domain_set(task, names)
    ood = [n for n in names if n != ind]
    metric = task.metric
    head = (
        f"| task | method | seeds | suite {ind} | loop {ind} | gap (suite − loop) | suite best at last val "
        "| loop best at last val | " + "".join(f"{n}: suite / loop (gap) | " for n in ood) + "verdict |"
    )
    lines = [head, "|" + "---|" * (9 + len(ood))]
    rows = []
    for method in methods:
        recs = sorted((r for r in records if r["method"] == method), key=lambda r: r["seed"])
        if not recs:
            lines.append(
                f"| {task.id} | {method} | - | - | - | - | - | - | " + "- | " * len(ood) + "no runs |"
            )
            continue
        s_in = [r["suite"]["test"][ind] for r in recs]
        l_in = [r["loop"]["test"][ind][metric] for r in recs]
        s_last = [bool(r["suite"]["best_at_last"]) for r in recs]
        l_last = [bool(r["loop"]["best_at_last"]) for r in recs]
        v = verdict(s_in, l_in, s_last)
        extra = []
        for n in ood:
            so = [r["suite"]["test"][n] for r in recs]
            lo = [r["loop"]["test"][n][metric] for r in recs]
            extra.append(
                f"{statistics.fmean(so):.3f} / {statistics.fmean(lo):.3f} ({statistics.fmean(so) - statistics.fmean(lo):+.3f})"
            )
        word = "PASS" if v.passed else "FAIL: " + "; ".join(v.reasons)
        if len(recs) < 3:
            word += f" ({len(recs)} seed{'s' if len(recs) > 1 else ''}; the bar is for 3)"
        lines.append(
            f"| {task.id} | {method} | {','.join(str(r['seed']) for r in recs)} | {_ms(s_in)} | {_ms(l_in)} "
            f"| {v.gap:+.3f} | {sum(s_last)}/{len(recs)} | {sum(l_last)}/{len(recs)} | "
            + "".join(f"{e} | " for e in extra)
            + f"{word} |"
        )
        rows.append(
            {
                "method": method,
                "seeds": [r["seed"] for r in recs],
                "suite": s_in,
                "loop": l_in,
                "gap": v.gap,
                "suite_best_at_last": sum(s_last),
                "loop_best_at_last": sum(l_last),
                "passed": v.passed,
                "reasons": v.reasons,
            }
        )
    return lines, rows


def detail(task: Any, records: list[dict[str, Any]]) -> list[str]:
    """Per-seed lines: scores, selected iteration of the last validation, for both sides."""
    ind = in_domain_set(task, [ts.name for ts in task.test_sets])
    lines = [
        f"| method | seed | suite run | suite {ind} | loop {ind} | suite best it / last val | loop best it / last val |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(records, key=lambda r: (r["method"], r["seed"])):
        s, lp = r["suite"], r["loop"]
        lines.append(
            f"| {r['method']} | {r['seed']} | {r['suite_run'].rsplit('__', 1)[-1]} | {s['test'][ind]:.3f} "
            f"| {lp['test'][ind][task.metric]:.3f} | {s['best_iteration']} / {s['last_validation']} "
            f"| {lp['best_iteration']} / {lp['last_validation']} |"
        )
    return lines


def document(task: Any, records: list[dict[str, Any]], methods: Sequence[str], title_extra: str) -> str:
    lines, _ = table(task, records, methods)
    recipe = records[0]["recipe"] if records else {}
    budget = records[0]["budget"] if records else {}
    out = [
        f"# Calibration: {task.id} ({title_extra})",
        "",
        "Suite runs against `benchmarks/independent_loop.py` on the identical cases and budget "
        f"(loop: {recipe.get('model', '')}, Adam lr {LOOP_LR:g}, {LOOP_LOSS}, norm {recipe.get('norm', 'none')}, "
        f"intensity {'on' if recipe.get('intensity') else 'off'}; augmentation as the suite method; "
        f"{budget.get('size', '?')} px, batch {budget.get('batch', '?')}, {budget.get('iterations', '?')} iterations, "
        f"validation every {budget.get('eval_every', '?')}). Mean ± sample sd over seeds of the task's "
        f"{task.metric}; *best at last val*: runs whose best validation was their last (still improving). "
        f"Bar: gap ≥ {GAP_BAR:+.2f} and at most one of three suite seeds best at the last validation.",
        "",
        *lines,
        "",
        *detail(task, records),
        "",
    ]
    return "\n".join(out)


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", required=True, help="a task id (genseg-bench tasks)")
    ap.add_argument("--profile", default="cpu", help="the suite profile (default: cpu)")
    ap.add_argument("--image-size", type=int, default=None, help="override the profile's image size")
    ap.add_argument("--iterations", type=int, default=None, help="override the profile's iteration budget")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: 0,1,2)")
    ap.add_argument("--sizes", default=None, help="training size n (default: the task's)")
    ap.add_argument(
        "--methods", default="unet,unet-combine", help="suite methods (default: unet,unet-combine)"
    )
    ap.add_argument("--store", type=Path, default=Path.home() / ".cache" / "genseg-bench" / "data")
    ap.add_argument("--results-dir", type=Path, default=Path("results"))
    ap.add_argument("--threads", type=int, default=1, help="torch threads, suite and loop (default: 1)")
    ap.add_argument("--device", default="cpu", help="suite --device and the loop's device (default: cpu)")
    ap.add_argument("--skip-suite", action="store_true", help="use existing suite results only; train none")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    from genseg_bench.catalog import Catalog

    torch.set_num_threads(args.threads)
    task = Catalog.load().task(args.task)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    size = int(args.sizes) if args.sizes else None
    if args.sizes and "," in args.sizes:
        raise SystemExit("--sizes: one training size per calibration")
    profile = expected_profile(args.profile, args.image_size, args.iterations)
    if not args.skip_suite:
        rc = run_suite(args, methods, seeds)
        if rc != 0:
            log(f"suite exited with status {rc}; calibrating the runs it finished")
    out_dir = Path(args.results_dir) / "calibration"
    jsonl = out_dir / f"{task.id}.jsonl"
    done = {r["suite_run"]: r for r in read_records(jsonl)}
    current = []
    for method in methods:
        for seed in seeds:
            found = find_result(args.results_dir, task.id, method, seed, profile, size)
            if found is None:
                log(f"{task.id} {method} seed {seed}: no suite result under {args.results_dir}; skipped")
                continue
            path, res = found
            if res.get("status") != "ok":
                log(f"{task.id} {method} seed {seed}: suite run {path.name} {res.get('status')}; skipped")
                continue
            if res["run_id"] in done:
                log(f"{task.id} {method} seed {seed}: already calibrated ({res['run_id']})")
                current.append(done[res["run_id"]])
                continue
            log(f"{task.id} {method} seed {seed}: loop on the cases of {path.name}")
            rec = loop_record(res, task, args.store, args.device)
            append_record(jsonl, rec)
            done[rec["suite_run"]] = rec
            current.append(rec)
            ind = in_domain_set(task, list(rec["suite"]["test"]))
            log(
                f"{task.id} {method} seed {seed}: suite {rec['suite']['test'][ind]:.3f} "
                f"(best it {rec['suite']['best_iteration']}/{rec['suite']['last_validation']}), "
                f"loop {rec['loop']['test'][ind][task.metric]:.3f} "
                f"(best it {rec['loop']['best_iteration']}/{rec['loop']['last_validation']})"
            )
    extra = f"profile {args.profile}" + (f", {args.image_size} px" if args.image_size else "")
    extra += f", {args.iterations} iterations" if args.iterations else ""
    doc = document(task, current, methods, extra)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{task.id}.md").write_text(doc)
    print(doc)
    log(f"wrote {out_dir / (task.id + '.md')} and {jsonl}")
    _, rows = table(task, current, methods)
    return 0 if rows and all(r["passed"] for r in rows) and len(rows) == len(methods) else 1


if __name__ == "__main__":
    from genseg_bench.errors import GensegBenchError

    try:
        raise SystemExit(main())
    except (GensegBenchError, FileNotFoundError) as exc:  # a bad task, profile or store: say so, no traceback
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
