"""Do the suite's prepared data and the independent loop's own loading agree, case by case?

When the suite's baseline and the independent loop (benchmarks/independent_loop.py) differ,
one candidate is the data: the suite reads a prepared store (resized, masks binarised by the
source's rule), the loop reads the raw files with PIL. This compares both for the test cases
of a suite result: mean / max absolute image difference (in [0, 1]) and the Dice between the
two masks of each case.

    python benchmarks/store_agreement.py --result results/cvc-clinicdb/<run>.json \\
        --store STORE --images ../data/cvc-clinicdb
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import independent_loop  # noqa: E402  (the loop's own loader: the thing compared)

from genseg_bench.catalog import Catalog  # noqa: E402
from genseg_bench.data.store import Store  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--result", type=Path, required=True)
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--images", type=Path, required=True, help="raw folder of the test set's source")
    ap.add_argument("--test-set", default=None, help="default: the result's first test set")
    args = ap.parse_args()

    res = json.loads(args.result.read_text())
    name = args.test_set or next(iter(res["test_sets"]))
    ids = res["test_sets"][name]["case_ids"]
    size = int(res["profile"]["image_size"])
    task = Catalog.load().task(res["spec"]["task"])
    source = next(t.source for t in task.test_sets if t.name == name)
    prepared = Store(args.store).load(source, size)
    rows = [prepared.case_ids.index(c) for c in ids]
    store_img = np.asarray(prepared.images)[rows].astype(np.float32) / 255.0
    store_img = store_img.transpose(0, 3, 1, 2)
    store_mask = (np.asarray(prepared.masks)[rows] > 0).reshape(len(ids), 1, size, size)
    loop_img, loop_mask = independent_loop.load_pairs(args.images, ids, size)
    loop_img, loop_mask = loop_img.numpy(), loop_mask.numpy() > 0.5
    inter = (store_mask & loop_mask).reshape(len(ids), -1).sum(1)
    total = store_mask.reshape(len(ids), -1).sum(1) + loop_mask.reshape(len(ids), -1).sum(1)
    dice = np.where(total == 0, 1.0, 2 * inter / np.maximum(total, 1))
    print(
        json.dumps(
            {
                "test_set": name,
                "cases": len(ids),
                "size": size,
                "image_abs_diff_mean": round(float(np.abs(store_img - loop_img).mean()), 5),
                "image_abs_diff_max": round(float(np.abs(store_img - loop_img).max()), 5),
                "mask_dice_mean": round(float(dice.mean()), 4),
                "mask_dice_min": round(float(dice.min()), 4),
                "foreground_store": round(float(store_mask.mean()), 4),
                "foreground_loop": round(float(loop_mask.mean()), 4),
            }
        )
    )


if __name__ == "__main__":
    main()
