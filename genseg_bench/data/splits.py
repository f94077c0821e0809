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
import re
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


def _group_of(case_id: str, pattern: re.Pattern[str] | None) -> str:
    if pattern is None:
        return case_id
    m = pattern.match(case_id)
    if m is None:
        raise DataError(
            f"case id {case_id!r} does not match the task's split_group pattern {pattern.pattern!r}. "
            "Fix the pattern in the task spec (it must match every case id and capture the group key)."
        )
    return m.group(1) if m.groups() else m.group(0)


def make_split(
    case_ids: list[str], seed: int, test_fraction: float, rule: ValidationRule, group: str = ""
) -> Split:
    """The split of ``case_ids`` under a seed and rule (a pure function).

    ``group`` (a regular expression whose first capture group is the key, e.g.
    ``^(patient\\d+)`` for CAMUS, whose four views per patient must stay together)
    keeps every case of a group on the same side of the test / validation / train
    boundaries, so no patient leaks from training into evaluation.
    """
    ids = sorted(case_ids)
    n = len(ids)
    pattern = re.compile(group) if group else None
    members: dict[str, list[str]] = {}
    for c in ids:
        members.setdefault(_group_of(c, pattern), []).append(c)
    # Order by a keyed SHA-256 of each group key, not by a numpy RNG: hashes are identical on every
    # machine and every library version (numpy does not promise stable random streams), and a
    # case's position does not depend on which other cases exist.
    order = sorted(members, key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest())
    n_test = int(round(test_fraction * n)) if test_fraction > 0 else 0
    test: list[str] = []
    rest_groups = list(order)
    while rest_groups and len(test) < n_test:
        test += members[rest_groups.pop(0)]
    n_rest = n - len(test)
    n_val = max(rule.min_cases, int(round(rule.fraction * n_rest)))
    if rule.max_cases is not None:
        n_val = min(n_val, rule.max_cases)
    if n_val >= n_rest:
        raise DataError(
            f"only {n} cases: cannot hold out {n_test} test and {n_val} validation cases and still train."
        )
    val: list[str] = []
    while rest_groups and len(val) < n_val:
        val += members[rest_groups.pop(0)]
    train_pool = [c for g in rest_groups for c in members[g]]
    if not train_pool:
        raise DataError(
            f"only {len(order)} groups of cases: nothing is left for training after test and validation."
        )
    return Split(train_pool=train_pool, val=val, test=test)


def split_key(seed: int, test_fraction: float, rule: ValidationRule, group: str = "") -> str:
    record: dict[str, object] = {"seed": seed, "test_fraction": test_fraction, "rule": rule.model_dump()}
    if group:  # absent when unused, so ungrouped split files keep their names
        record["group"] = group
    payload = json.dumps(record, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def load_or_make_split(
    prepared_path: Path,
    case_ids: list[str],
    seed: int,
    test_fraction: float,
    rule: ValidationRule,
    group: str = "",
) -> Split:
    """The persisted split of a prepared set, written on first use and checked on every later use."""
    split = make_split(case_ids, seed, test_fraction, rule, group)
    path = prepared_path / "splits" / f"split-{split_key(seed, test_fraction, rule, group)}.json"
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
    record = {
        "seed": seed,
        "test_fraction": test_fraction,
        "rule": rule.model_dump(),
        "group": group,
        **asdict(split),
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)
    return split
