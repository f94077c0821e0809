"""Seeded, persisted splits of the paper's low-data regime: n labelled cases means n in total.

A split is a pure function of the sorted case ids, a split seed and the task's
rule. It holds out a test part once, and orders everything else (the labelled
pool) so that a training size ``n`` means "these n labelled cases": the first
``n`` of the pool, of which the task's validation rule (80:20, at least one
case, as the paper's code: isic-40 is 32 + 8, jsrt-9 is 7 + 2) carves the
validation cases. Validation is never drawn from outside the n: GenSeg's
architecture level trains on validation labels, so a validation set outside n
would hand it, and the checkpoint rule of every method, extra labels.

* **Nested.** Fixed subsets are prefixes of one ordering of the pool, so the
  40 labelled cases are inside the 80: sample-efficiency curves measure more
  labels, not different labels.
* **Resampled** (``resample_seed``): the pool is re-ordered per training seed,
  so seeds also vary which n cases are labelled (variance that includes the
  choice of the labelled set, not only initialisation noise).
* **Grouped** (``group``): cases of one video, sequence or patient stay on one
  side of the test boundary and of the train / validation boundary. The pool is
  ordered round-robin over groups, so a small n spans as many groups as it can
  instead of filling up with near-duplicate frames of one video.

Orders come from keyed SHA-256 hashes, not a numpy RNG: identical on every
machine and library version. The persisted file (test part and pool order) is
checked on every later use; a mismatch means the data changed under the results.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from genseg_bench.errors import DataError
from genseg_bench.specs import ValidationRule

GroupFn = Callable[[str], str]
"""Maps a case id to its group key (video, sequence, patient)."""

SPLIT_FORMAT = 2
"""Version of the split file; format 1 drew validation outside n and is ignored, not misread."""


def _h(*parts: object) -> str:
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).hexdigest()


@dataclass(frozen=True)
class Subset:
    """The n labelled cases of one run: ``train`` + ``val`` (disjoint, ``len(train) + len(val) == n``)."""

    train: list[str]
    val: list[str]


@dataclass(frozen=True)
class Split:
    """The held-out ``test`` part and the ordered labelled ``pool`` (with each case's group)."""

    pool: list[str]
    test: list[str]
    groups: dict[str, str]
    seed: int
    rule: ValidationRule

    def labelled(self, n: int, source: str = "", resample_seed: int | None = None) -> list[str]:
        """The n labelled cases: a prefix of the pool, or of a per-seed re-ordering of it."""
        if n > len(self.pool):
            raise DataError(
                f"{source or 'data set'}: {n} labelled cases asked for, but only {len(self.pool)} remain "
                f"after holding out {len(self.test)} test cases. Choose a smaller --sizes value."
            )
        if resample_seed is None:
            return self.pool[:n]
        return _round_robin(self.pool, self.groups, f"{self.seed}:resample:{resample_seed}")[:n]

    def subset(self, n: int, source: str = "", resample_seed: int | None = None) -> Subset:
        """Train and validation cases of a size-n run (validation carved out of the n, group-aware)."""
        ids = self.labelled(n, source, resample_seed)
        k = max(self.rule.min_cases, int(round(self.rule.fraction * n)))
        if self.rule.max_cases is not None:
            k = min(k, self.rule.max_cases)
        if k >= n:
            raise DataError(
                f"{source or 'data set'}: {n} labelled cases cannot be split into training and "
                f"{k} validation cases (validation rule {self.rule.model_dump()}). Use a larger size."
            )
        members: dict[str, list[str]] = {}
        for c in ids:
            members.setdefault(self.groups.get(c, c), []).append(c)
        order = sorted(members, key=lambda g: _h(self.seed, "val", n, resample_seed, g))
        val: list[str] = []
        while order and len(val) < k:
            val += members[order.pop(0)]
        val_set = set(val)
        train = [c for c in ids if c not in val_set]
        if not train:
            raise DataError(
                f"{source or 'data set'}: the {n} labelled cases come from {len(members)} group(s); "
                "validation would take all of them. Use a larger size or a finer split_group."
            )
        return Subset(train=train, val=[c for c in ids if c in val_set])


def unlabelled_pool(candidates: list[str], exclude: set[str], size: int, seed: int, source: str) -> list[str]:
    """The unlabelled pool of a run: up to ``size`` of ``candidates`` outside ``exclude``, in a keyed-hash order.

    A pure function (SHA-256 keyed by the split seed and the source, no RNG), so
    every machine draws the same pool. The runner passes the training source's
    labelled pool (:attr:`Split.pool`, which never holds a test case) as
    ``candidates`` and the run's n labelled cases (train and validation) as
    ``exclude``: the pool never holds a validation or test image, and drawing it
    never changes which cases are labelled. The order does not depend on n or on
    the training seed: runs that label more cases draw from the same ordering,
    without their labelled ones.
    """
    eligible = [c for c in candidates if c not in exclude]
    return sorted(eligible, key=lambda c: _h(seed, "unlabelled", source, c))[:size]


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


def _round_robin(ids: list[str], groups: dict[str, str], key: str) -> list[str]:
    """Cases ordered by hash within each group, then one from each group in (hashed) group order."""
    members: dict[str, list[str]] = {}
    for c in ids:
        members.setdefault(groups.get(c, c), []).append(c)
    order = sorted(members, key=lambda g: _h(key, "group", g))
    queues = [sorted(members[g], key=lambda c: _h(key, "case", c)) for g in order]
    out: list[str] = []
    depth = 0
    while len(out) < len(ids):
        out += [q[depth] for q in queues if depth < len(q)]
        depth += 1
    return out


def resolve_groups(case_ids: list[str], group: str = "", group_fn: GroupFn | None = None) -> dict[str, str]:
    """Each case's group key: from the task's regex ``group``, else the source's ``group_fn``, else itself."""
    if group:
        pattern = re.compile(group)
        return {c: _group_of(c, pattern) for c in case_ids}
    if group_fn is not None:
        return {c: group_fn(c) for c in case_ids}
    return {c: c for c in case_ids}


def make_split(
    case_ids: list[str],
    seed: int,
    test_fraction: float,
    rule: ValidationRule,
    group: str = "",
    group_fn: GroupFn | None = None,
) -> Split:
    """The split of ``case_ids`` under a seed and rule (a pure function).

    ``group`` is a regular expression whose first capture group is the key (e.g.
    ``^(patient\\d+)`` for CAMUS); ``group_fn`` is a source's own grouping (e.g.
    CVC-ClinicDB's sequence of a frame number) used when the task gives no regex.
    """
    ids = sorted(case_ids)
    n = len(ids)
    groups = resolve_groups(ids, group, group_fn)
    members: dict[str, list[str]] = {}
    for c in ids:
        members.setdefault(groups[c], []).append(c)
    order = sorted(members, key=lambda g: _h(seed, g))
    n_test = int(round(test_fraction * n)) if test_fraction > 0 else 0
    test: list[str] = []
    while order and len(test) < n_test:
        test += members[order.pop(0)]
    rest = [c for g in order for c in members[g]]
    if len(rest) < 2:
        raise DataError(
            f"only {n} cases in {len(members)} group(s): nothing is left to train and validate on "
            f"after holding out {len(test)} test cases."
        )
    pool = _round_robin(rest, groups, str(seed))
    return Split(pool=pool, test=test, groups={c: groups[c] for c in rest}, seed=seed, rule=rule)


def split_key(
    seed: int, test_fraction: float, rule: ValidationRule, group: str = "", grouped: bool = False
) -> str:
    record: dict[str, object] = {
        "format": SPLIT_FORMAT,
        "seed": seed,
        "test_fraction": test_fraction,
        "rule": rule.model_dump(),
        "group": group or ("source" if grouped else ""),
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:12]


def load_or_make_split(
    prepared_path: Path,
    case_ids: list[str],
    seed: int,
    test_fraction: float,
    rule: ValidationRule,
    group: str = "",
    group_fn: GroupFn | None = None,
) -> Split:
    """The persisted split of a prepared set, written on first use and checked on every later use."""
    split = make_split(case_ids, seed, test_fraction, rule, group, group_fn)
    key = split_key(seed, test_fraction, rule, group, grouped=group_fn is not None)
    path = prepared_path / "splits" / f"split-v{SPLIT_FORMAT}-{key}.json"
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
            same = stored["pool"] == split.pool and stored["test"] == split.test
            same = same and stored.get("groups", {}) == split.groups
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(
                f"{path}: unreadable split file ({exc}). Delete it; it is recomputed identically."
            ) from exc
        if not same:
            raise DataError(
                f"{path}: the persisted split differs from the one computed from the prepared cases. "
                "The prepared data changed; delete the split file (and results computed on the old data)."
            )
        return split
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "format": SPLIT_FORMAT,
        "seed": seed,
        "test_fraction": test_fraction,
        "rule": rule.model_dump(),
        "group": group or ("source" if group_fn is not None else ""),
        "test": split.test,
        "pool": split.pool,
        "groups": split.groups,
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)
    return split
