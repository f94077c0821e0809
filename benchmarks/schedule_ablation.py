"""Run the suite's own grid with one profile setting changed: is a gap the harness or the schedule?

When the suite's baseline scores below the independent loop (benchmarks/independent_loop.py),
the two differ in the harness (data store, splits, evaluation) and in the schedule
(ReduceLROnPlateau). This runs the suite's unchanged harness with the schedule changed
(e.g. ``--set plateau_patience=100000``: a constant learning rate, as the loop's), so a
result near the loop's clears the harness and points at the schedule.

    python benchmarks/schedule_ablation.py --task cvc-clinicdb --method unet --seed 0 \\
        --profile cpu --set plateau_patience=100000 --store STORE --results RESULTS

The results carry the changed profile (their own run ids and report rows), so they never
mix with runs of the unchanged profile. Prints the run's summary line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from genseg_bench.catalog import Catalog
from genseg_bench.data.store import Store
from genseg_bench.profiles import get_profile
from genseg_bench.progress import LogReporter
from genseg_bench.runner import run_grid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", required=True)
    ap.add_argument("--method", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=40)
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--set", action="append", default=[], help="FIELD=JSON_VALUE, repeatable")
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--results", type=Path, required=True)
    args = ap.parse_args()

    profile = get_profile(args.profile)
    updates = {}
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in type(profile).model_fields:
            raise SystemExit(
                f"--set {item}: {key!r} is not a profile field ({', '.join(type(profile).model_fields)})"
            )
        updates[key] = json.loads(value)
    profile = type(profile).model_validate({**profile.model_dump(), **updates})
    with LogReporter(sys.stdout) as reporter:
        summary = run_grid(
            Catalog.load(),
            args.task,
            [args.method],
            [args.size],
            [args.seed],
            profile,
            Store(args.store),
            args.results,
            torch.device("cpu"),
            reporter,
        )
    print(
        f"changed: {updates}; ran {len(summary.ran)}, skipped {len(summary.skipped)}, failed {len(summary.failed)}"
    )


if __name__ == "__main__":
    main()
