"""Seeded, persisted splits: identical on every machine.

A split is a pure function of the sorted case ids, a split seed and the task's
rule (test fraction, validation rule). It is written as JSON next to the
prepared data, and a persisted split that disagrees with the recomputation is an
error rather than silently used: it means the data changed under the results.

Training subsets are nested prefixes of one seeded permutation of the training
pool, so the 40-case set is inside the 80-case set: sample-efficiency curves
then measure the effect of more labels, not of different labels. Training seeds
vary initialisation and sampling, never the split.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from genseg_bench.errors import DataError
from genseg_bench.specs import ValidationRule


@dataclass(frozen=True)
class Split:
    """Disjoint case-id lists. ``train_pool`` is ordered: a size-n training set is its first n."""

    train_pool: list[str]
    val: list[str]
    test: list[str]

    def train(self, n: int, source: str = "") -> list[str]:
        if n > len(self.train_pool):
            raise DataError(
                f"{source or 'data set'}: {n} training cases asked for, but the training pool has only "
                f"{len(self.train_pool)} after holding out {len(self.test)} test and {len(self.val)} validation "
                "cases. Choose a smaller --sizes value."
            )
        return self.train_pool[:n]


def make_split(case_ids: list[str], seed: int, test_fraction: float, rule: ValidationRule) -> Split:
    """The split of ``case_ids`` under a seed and rule (a pure function)."""
    ids = sorted(case_ids)
    n = len(ids)
    # Order by a keyed SHA-256 of each id, not by a numpy RNG: hashes are identical on every
    # machine and every library version (numpy does not promise stable random streams), and a
    # case's position does not depend on which other cases exist.
    shuffled = sorted(ids, key=lambda c: hashlib.sha256(f"{seed}:{c}".encode()).hexdigest())
    n_test = int(round(test_fraction * n)) if test_fraction > 0 else 0
    rest = shuffled[n_test:]
    n_val = max(rule.min_cases, int(round(rule.fraction * len(rest))))
    if rule.max_cases is not None:
        n_val = min(n_val, rule.max_cases)
    if n_val >= len(rest):
        raise DataError(
            f"only {n} cases: cannot hold out {n_test} test and {n_val} validation cases and still train."
        )
    return Split(train_pool=rest[n_val:], val=rest[:n_val], test=shuffled[:n_test])


def split_key(seed: int, test_fraction: float, rule: ValidationRule) -> str:
    payload = json.dumps(
        {"seed": seed, "test_fraction": test_fraction, "rule": rule.model_dump()}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def load_or_make_split(
    prepared_path: Path, case_ids: list[str], seed: int, test_fraction: float, rule: ValidationRule
) -> Split:
    """The persisted split of a prepared set, written on first use and checked on every later use."""
    split = make_split(case_ids, seed, test_fraction, rule)
    path = prepared_path / "splits" / f"split-{split_key(seed, test_fraction, rule)}.json"
    if path.is_file():
        try:
            stored = Split(
                **{
                    k: v
                    for k, v in json.loads(path.read_text()).items()
                    if k in ("train_pool", "val", "test")
                }
            )
        except (json.JSONDecodeError, TypeError) as exc:
            raise DataError(
                f"{path}: unreadable split file ({exc}). Delete it; it is recomputed identically."
            ) from exc
        if stored != split:
            raise DataError(
                f"{path}: the persisted split differs from the one computed from the prepared cases. "
                "The prepared data changed; delete the split file (and results computed on the old data)."
            )
        return stored
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"seed": seed, "test_fraction": test_fraction, "rule": rule.model_dump(), **asdict(split)}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)
    return split
