"""The segmenter's learning rate over one paper-profile UNet run on CVC-ClinicDB-40 (32 px).

Run it with whichever genseg-bench is installed (an old checkout in its own venv, or this
one) to compare schedules: ``python benchmarks/lr_trajectory.py LABEL OUT.json [ITERATIONS]``
with the prepared store in ``$GENSEG_BENCH_STORE``. Prints the lr at 10 %, 50 % and 100 % of
the paper's 5,000 iterations (None where a shorter run did not reach it).
"""

import json
import os
import sys
from pathlib import Path

import torch

from genseg_bench.catalog import Catalog
from genseg_bench.data.store import Store
from genseg_bench.profiles import get_profile
from genseg_bench.runner import run_grid

lrs = []
orig = torch.optim.lr_scheduler.ReduceLROnPlateau.step
it_counter = {"n": 0}


def step(self, metrics, *a, **k):
    out = orig(self, metrics, *a, **k)
    lrs.append(float(self.optimizer.param_groups[0]["lr"]))
    return out


torch.optim.lr_scheduler.ReduceLROnPlateau.step = step
# count iterations via optimizer steps
orig_opt = torch.optim.RMSprop.step


def ostep(self, *a, **k):
    it_counter["n"] += 1
    if not lrs or len(lrs) < 1 or True:
        traj.append((it_counter["n"], float(self.param_groups[0]["lr"])))
    return orig_opt(self, *a, **k)


traj = []
torch.optim.RMSprop.step = ostep
label, out = sys.argv[1], sys.argv[2]
its = int(sys.argv[3]) if len(sys.argv) > 3 else None
prof = get_profile("paper", image_size=32, iterations=its)
s = run_grid(
    Catalog.load(),
    "cvc-clinicdb",
    ["unet"],
    [40],
    [0],
    prof,
    Store(os.environ["GENSEG_BENCH_STORE"]),
    Path(f"lr-results-{label}"),
    torch.device("cpu"),
)
r = s.ran[0]
total = 5000  # fractions of the paper's budget (a shorter run reports what it reached)


def lr_at(frac):
    it = int(frac * total)
    return next((lr for i, lr in traj if i >= it), None)


res = {
    "code": label,
    "iterations": prof.iterations,
    "n_train": len(r.train_cases),
    "n_val": len(r.val_cases),
    "scheduler_steps": len(lrs),
    "lr_at_10pct": lr_at(0.1),
    "lr_at_50pct": lr_at(0.5),
    "lr_at_100pct": lr_at(1.0),
    "first_iteration_below_1e-7": next((i for i, lr in traj if lr < 1e-7 * 1.0001), None),
    "status": r.status,
    "best_val": r.best_val_score,
    "best_it": r.best_iteration,
    "test": {k: v.mean_dice for k, v in r.test_sets.items()},
}
Path(out).write_text(json.dumps(res))
print(json.dumps(res))
