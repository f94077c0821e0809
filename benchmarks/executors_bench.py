"""Executors measured: wall time of one grid under local, Ray and Slurm (submitit's local mode), same scores.

    python benchmarks/executors_bench.py --out /tmp/executors-bench

Two measurements, each through the real command line (``genseg-bench run``), each
executor on its own fresh result folder and one shared store:

1. **Workers vs threads** (issue 10, item 4): ``--task synthetic-ood`` with the
   ``quick`` profile, once with the local executor and 2 torch threads, once with
   Ray and 2 workers of 1 CPU (1 thread) each. On a 2-core machine both use both
   cores; the question is which spends them better (small convolutions scale
   poorly across threads, so two independent runs usually win).
2. **Same results under every engine**: ``--suite synthetic`` (``--profile``,
   default ``smoke`` so that the three engines fit in minutes) with local, Ray (2
   workers) and Slurm's local mode (array parallelism 2), every run 1 thread. The
   scores of each run id must be identical across the three; it prints their wall
   times and whether they are.

Run it on an otherwise idle machine (the numbers are wall times). Prints one line
per measurement and a JSON summary at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_cli(args: list[str], log: Path) -> float:
    """Wall seconds of one ``genseg-bench`` command (fails loudly with its log's tail)."""
    cmd = [sys.executable, "-c", "from genseg_bench.cli import app; app()", *args]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.perf_counter()
    with log.open("w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=REPO).returncode
    wall = time.perf_counter() - t0
    if rc != 0:
        sys.exit(f"{' '.join(args)} failed (rc {rc}):\n{log.read_text()[-3000:]}")
    return wall


def scores(results: Path) -> dict[str, dict[str, list[float]]]:
    """Per run id, the per-case Dice of every test set (status for failed runs)."""
    out: dict[str, dict[str, list[float]]] = {}
    for f in sorted(results.glob("*/*.json")):
        r = json.loads(f.read_text())
        out[f.stem] = {k: v["dice"] for k, v in r["test_sets"].items()} if r["status"] == "ok" else {}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="a fresh folder for the stores and results")
    ap.add_argument("--seeds", default="0,1,2", help="seeds of the workers-vs-threads grid")
    ap.add_argument("--suite-profile", default="smoke")
    ap.add_argument("--suite-seeds", default="0")
    ap.add_argument("--skip", default="", help="comma-separated: threads, suite")
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    store = out / "store"
    skip = set(filter(None, args.skip.split(",")))
    summary: dict[str, object] = {"cpus": len(os.sched_getaffinity(0))}
    common = ["--store", str(store), "--device", "cpu", "--no-report"]

    # the synthetic data is generated once, before any timing
    run_cli(
        [
            "run",
            "--task",
            "synthetic-ood",
            "--profile",
            "smoke",
            "--methods",
            "unet",
            "--sizes",
            "8",
            "--seeds",
            "0",
            "--results",
            str(out / "warmup"),
            *common,
        ],
        out / "warmup.log",
    )

    if "threads" not in skip:
        grid = ["run", "--task", "synthetic-ood", "--profile", "quick", "--seeds", args.seeds, *common]
        t_local = run_cli([*grid, "--results", str(out / "q-local"), "--threads", "2"], out / "q-local.log")
        print(f"synthetic-ood quick, local executor, 1 process x 2 threads: {t_local:.1f} s", flush=True)
        t_ray = run_cli(
            [*grid, "--results", str(out / "q-ray"), "--executor", "ray", "--cpus-per-run", "1"],
            out / "q-ray.log",
        )
        print(f"synthetic-ood quick, ray executor, 2 workers x 1 thread: {t_ray:.1f} s", flush=True)
        summary["threads"] = {
            "grid": f"synthetic-ood, quick, seeds {args.seeds}",
            "runs": len(scores(out / "q-local")),
            "local_2_threads_s": round(t_local, 1),
            "ray_2_workers_s": round(t_ray, 1),
            "speedup": round(t_local / t_ray, 2),
        }

    if "suite" not in skip:
        suite = [
            "run",
            "--suite",
            "synthetic",
            "--profile",
            args.suite_profile,
            "--seeds",
            args.suite_seeds,
            *common,
        ]
        walls: dict[str, float] = {}
        engines = {
            "local": ["--threads", "1"],
            "ray": ["--executor", "ray", "--cpus-per-run", "1"],
            "slurm-local": [
                "--executor",
                "slurm",
                "--cpus-per-run",
                "1",
                "--slurm-array-parallelism",
                "2",
                "--slurm-config",
                str(out / "slurm.toml"),
            ],
        }
        (out / "slurm.toml").write_text('[slurm]\ncluster = "local"\ntime = 30\n')
        for name, extra in engines.items():
            walls[name] = run_cli(
                [*suite, "--results", str(out / f"s-{name}"), *extra], out / f"s-{name}.log"
            )
            print(f"suite synthetic ({args.suite_profile}), {name}: {walls[name]:.1f} s", flush=True)
        ref = scores(out / "s-local")
        same = {name: scores(out / f"s-{name}") == ref for name in engines}
        print(f"{len(ref)} runs; identical scores to local: {same}", flush=True)
        summary["suite"] = {
            "suite": f"synthetic, {args.suite_profile}, seeds {args.suite_seeds}",
            "runs": len(ref),
            "wall_s": {k: round(v, 1) for k, v in walls.items()},
            "identical_to_local": same,
        }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
