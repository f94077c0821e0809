"""Tables from results: mean +- std over seeds beside the paper's numbers, and paired tests.

Pure functions from result records to plain data (:class:`ReportRow`,
:class:`PairedTest`); rendering to rich / JSON / Markdown is separate, so the
leaderboard and the CLI show the same numbers.

Only runs of one experiment are averaged. Besides method, size and test set, the
runs of a row share a :class:`RunContext`: profile, budget, the other profile
settings, data fingerprints, task identity (version) and resolved method config.
Runs that differ in any of these are never averaged: they become separate rows,
each flagged with the fields that differ (a smoke run mixed into quick runs once
turned 0.957 +- 0.017 over 3 seeds into 0.780 +- 0.354 over 4, silently).

Paired tests are corrected for multiplicity: whatever prints several tests together
(``report --compare``, a reproduction page, a leaderboard table) treats them as one
family and adjusts their p-values with :func:`holm` (via :func:`holm_family`), so a
verdict read off a page of twenty tests is not a 1-in-20 false alarm. This module is
the one home of that correction; it imports no torch, so the leaderboard uses it too.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, ClassVar

from pydantic import ValidationError
from scipy import stats

from genseg_bench.errors import SpecError
from genseg_bench.methods.config import resolved_config
from genseg_bench.metric_policy import EMPTY_POLICY
from genseg_bench.specs import MethodSpec, Profile, RunResult, TaskSpec, legacy_task_hash, stable_hash


@dataclass(frozen=True)
class RunContext:
    """What the runs averaged into one row must share, beyond method, size and test set.

    Each field is a short readable label, equal exactly when the runs agree: ``budget``
    is the profile's iterations and batch size; ``settings`` hashes the rest of the
    profile (learning rates, widths, image size ...); ``task`` is ``v<version>`` for runs
    of the current task spec, else the recorded task hash; ``method`` hashes the
    method spec with its config's defaults filled in.
    """

    profile: str
    budget: str
    settings: str
    data: str
    task: str
    method: str

    LABELS: ClassVar[dict[str, str]] = {
        "profile": "profile",
        "budget": "budget",
        "settings": "profile settings",
        "data": "data fingerprint",
        "task": "task version",
        "method": "method config",
    }

    SHARED: ClassVar[tuple[str, ...]] = ("profile", "budget", "settings", "data", "task")
    """The fields of :attr:`shared`, in order (a paired test's context is read by these names)."""

    @property
    def shared(self) -> tuple[str, ...]:
        """Everything but the method config: what two methods' runs must share to be compared."""
        return tuple(getattr(self, name) for name in self.SHARED)

    def key(self) -> str:
        """The whole context as one string (rows of one method and size that differ in it are split)."""
        return " | ".join(getattr(self, f.name) for f in fields(self))


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:8]


def profile_of(r: RunResult) -> dict[str, Any]:
    """The run's profile with fields added since filled in (as written if not a Profile).

    A missing field takes the value that means what the code did before the field existed
    (:attr:`Profile.LEGACY`), else its default (fields whose default kept the old behaviour).
    One exception, proven from the file itself: when replaying the run's recorded validation
    scores under today's plateau rules gives the learning rate it actually trained with at
    every stretch (:func:`unchanged_by_plateau_rules`), the rules changed nothing in its
    training, and the run counts as a run under them.
    """
    try:
        recorded = Profile.model_validate({**Profile.LEGACY, **r.profile})
    except ValidationError:
        return dict(r.profile)
    if unchanged_by_plateau_rules(r):
        return Profile.model_validate(r.profile).model_dump()
    return recorded.model_dump()


def settings_digest(profile: dict[str, Any]) -> str:
    """The ``settings`` label of a :class:`RunContext`: every profile field but name, iterations and batch."""
    return _digest({k: v for k, v in profile.items() if k not in ("name", "iterations", "batch_size")})


def replay_plateau(
    scores: Sequence[float],
    lr0: float,
    patience: int,
    min_lr: float = 0.0,
    arm_above: float | None = None,
    factor: float = 0.1,
    threshold: float = 1e-4,
    eps: float = 1e-8,
) -> list[float]:
    """The learning rate each stretch trained with, given the validation score at the end of each.

    A torch-free copy of ``ReduceLROnPlateau(mode="max", threshold_mode="rel", cooldown=0)``
    (a test checks it against torch on random sequences), with the suite's arming rule: with
    ``arm_above`` set, the scheduler steps only from the first score above it.
    """
    best, bad, lr, armed = -math.inf, 0, lr0, arm_above is None
    out = []
    for score in scores:
        out.append(lr)
        if not armed:
            armed = score > arm_above + 1e-9  # type: ignore[operator]
            if not armed:
                continue
        if score > best * (1 + threshold) if best > 0 else score > best:
            best, bad = score, 0
        else:
            bad += 1
        if bad > patience:
            new_lr = max(lr * factor, min_lr)
            if lr - new_lr > eps:
                lr = new_lr
            bad = 0
    return out


def unchanged_by_plateau_rules(r: RunResult) -> bool:
    """Whether a run recorded before the plateau rules trained exactly as it would have under them.

    The rules act only through the learning rate, and the learning rate depends only on the
    validation scores the file records; so if replaying those scores under the rules gives
    the learning rate the run recorded for every stretch it trained, its training (deterministic
    on a CPU: a rerun under the rules reproduced an old run's scores bit for bit until the first
    stretch the floor changed) was the same. False for runs that record the rules themselves.
    """
    if any(k in r.profile for k in Profile.LEGACY) or r.status != "ok":
        return False
    traj = r.trajectory
    scores, lrs = traj.get("val_score", []), traj.get("lr", [])
    empty = r.extras.get("empty_val_score")
    try:
        now = Profile.model_validate(r.profile)
    except ValidationError:
        return False
    if not scores or len(scores) != len(lrs) or empty is None or not now.seg_lr:
        return False
    replayed = replay_plateau(
        [float(s) for s in scores],
        float(lrs[0]),
        now.plateau_patience,
        min_lr=now.seg_lr * now.plateau_min_lr_factor,
        arm_above=float(empty) if now.plateau_wait_for_foreground else None,
    )
    return all(math.isclose(a, float(b), rel_tol=1e-6) for a, b in zip(replayed, lrs, strict=True))


def _method_identity(r: RunResult) -> dict[str, Any]:
    """The recorded method spec as the run identity sees it: prose dropped, built-in configs resolved.

    Resolved with today's defaults, so results of any genseg-bench version compare on
    equal terms; outside kinds keep their table as written (their package may be absent).
    """
    raw = dict(r.method_config)
    try:
        spec = MethodSpec.model_validate(raw)
    except ValidationError:
        return raw
    try:
        config = resolved_config(spec.kind, spec.config)
    except SpecError:
        config = dict(spec.config)
    return {**spec.model_dump(exclude=set(MethodSpec.DESCRIPTIVE)), "config": config}


def run_context(task: TaskSpec, r: RunResult) -> RunContext:
    """The :class:`RunContext` of one run of ``task``.

    A result recorded before task identities existed carries the hash of the whole
    spec (:func:`~genseg_bench.specs.legacy_task_hash`); when that equals the
    current spec's, it counts as a run of the current version.
    """
    prof = profile_of(r)
    iterations = prof.get("iterations") or r.iterations
    batch = prof.get(
        "batch_size"
    )  # a method's own batch (nnU-Net's plans) is a flag: pairing needs one context
    budget = (
        f"{iterations} it × {batch}" if iterations and batch else (f"{iterations} it" if iterations else "-")
    )
    if iterations and prof.get("image_size"):
        # an --image-size override keeps the profile's name: the side must show where the name is read
        budget += f" at {prof['image_size']} px"
    data = ", ".join(f"{k} {v}" for k, v in sorted(r.spec.data_fingerprints.items())) or "-"
    current = r.spec.task_hash in (stable_hash(task), legacy_task_hash(task))
    return RunContext(
        profile=r.spec.profile,
        budget=budget,
        settings=settings_digest(prof),
        data=data,
        task=f"v{task.version}" if current else f"task_hash {r.spec.task_hash} (not the current spec)",
        method=_digest(_method_identity(r)),
    )


@dataclass(frozen=True)
class ReportRow:
    """One (method, training size, test set) cell aggregated over the seeds of one :class:`RunContext`."""

    method: str
    train_size: int
    test_set: str
    metric: str
    mean: float
    std: float
    n_seeds: int
    seeds: list[int]
    scores: list[float]
    failed: int
    paper: float | None
    paper_kind: str | None
    paper_baseline: str | None
    paper_figure: str | None
    measured_gain: float | None
    n_train: int | None = None
    """Training cases of the n labelled (the rest validate)."""
    n_val: int | None = None
    images_seen: int | None = None
    """Images the segmenter processed in training (real, augmented, generated), mean over seeds."""
    updates: int | None = None
    flags: tuple[str, ...] = ()
    """Warnings about the runs behind this row (see :func:`run_flags`), and why it is split."""
    profile: str = ""
    budget: str = ""
    """The profile's iterations, batch size and image side (``800 it × 8 at 128 px``; no side: the task's own)."""
    settings: str = ""
    """:attr:`RunContext.settings`: the digest of the profile's other settings (rows never mix two)."""
    context: str = ""
    """:meth:`RunContext.key` of the runs behind the row."""
    split: tuple[str, ...] = ()
    """The :class:`RunContext` fields in which this row's runs differ from other rows of the same
    method and size (never averaged with them); empty when the method and size have one row."""

    @property
    def delta(self) -> float | None:
        """Measured minus paper (for a score) or measured gain minus paper gain."""
        if self.paper is None:
            return None
        if self.paper_kind == "gain":
            return None if self.measured_gain is None else self.measured_gain - self.paper
        return self.mean - self.paper


ALPHA = 0.05
"""Significance level of every verdict, applied to Holm-adjusted p-values."""
CI_LEVEL = 0.95
"""Coverage of the confidence interval of a mean paired difference."""


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values, in the input order (None stays None and is not counted).

    Why Holm: it controls the family-wise error rate without assuming the tests are
    independent (tests on one page share methods, seeds and test sets, so they are not),
    and it is uniformly more powerful than plain Bonferroni. Step-down: the k-th smallest
    of m p-values (k from 0) is multiplied by m - k, capped at 1, and made monotone by a
    running maximum, so a smaller raw p never gets a larger adjusted one.
    """
    present = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    m = len(present)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for k, (p, i) in enumerate(present):
        running = max(running, min(1.0, (m - k) * p))
        out[i] = running
    return out


def mean_ci(diffs: Sequence[float], level: float = CI_LEVEL) -> tuple[float, float] | None:
    """The t interval (n - 1 degrees of freedom) of the mean of ``diffs``; None below two values.

    The interval says how large the difference plausibly is, which a p-value alone hides
    (three seeds give wide intervals: a "not significant" +0.05 may still be a large gain).
    One value has no spread, so no interval.
    """
    n = len(diffs)
    if n < 2:
        return None
    mean = statistics.fmean(diffs)
    half = float(stats.t.ppf((1 + level) / 2, n - 1)) * statistics.stdev(diffs) / math.sqrt(n)
    return mean - half, mean + half


@dataclass(frozen=True)
class PairedTest:
    """Two-sided paired t-test between two methods across seeds (one pair per seed).

    :func:`paired_tests` fills the raw test; ``p_holm`` and ``family_size`` are set by
    :func:`holm_family` once the caller knows which tests are printed together (the
    family), since the adjustment depends on all of them.
    """

    method_a: str
    method_b: str
    train_size: int
    test_set: str
    mean_a: float
    mean_b: float
    mean_diff: float
    n_pairs: int
    t: float | None
    p_value: float | None
    profile: str = ""
    context: tuple[str, ...] = ()
    """:attr:`RunContext.shared` of the paired runs: runs of different contexts are never paired."""
    ci_low: float | None = None
    """Lower end of the :data:`CI_LEVEL` t interval of ``mean_diff`` (None whenever ``p_value`` is None)."""
    ci_high: float | None = None
    p_holm: float | None = None
    """``p_value`` adjusted by :func:`holm` over the family of tests printed with this one (None: no test,
    or not adjusted yet)."""
    family_size: int = 0
    """How many tests (with a p-value) the Holm adjustment ran over; 0 before :func:`holm_family`."""

    @property
    def settings(self) -> str:
        """The profile-settings digest of the paired runs ("" for a test built without a context)."""
        i = RunContext.SHARED.index("settings")
        return self.context[i] if len(self.context) > i else ""

    @property
    def no_test(self) -> str:
        """Why this pair has no p-value and no interval ("" when it has them)."""
        if self.p_value is not None:
            return ""
        if self.n_pairs < 2:
            return "one seed: no test"
        return f"{self.n_pairs} seeds, identical differences: no test"

    @property
    def significant(self) -> bool:
        """Holm-adjusted p below :data:`ALPHA`; a raw p alone never makes a difference significant.

        Raises on a tested pair whose family was never adjusted: reading the raw p as the verdict
        is exactly the mistake the adjustment exists to prevent.
        """
        if self.p_value is None:
            return False
        if self.p_holm is None:
            raise ValueError(
                "PairedTest not adjusted for multiplicity: pass its family through holm_family()"
            )
        return self.p_holm < ALPHA


def holm_family(tests: Sequence[PairedTest]) -> list[PairedTest]:
    """``tests`` with ``p_holm`` and ``family_size`` set, Holm-adjusted over all of them as one family.

    The family is what is printed together (one ``report --compare`` output, one reproduction
    page): every test a reader can pick a "significant" one from. Tests without a p-value (one
    seed, or identical differences) are not counted. Adjusts from the raw p-values, so
    running it again on its own output changes nothing.
    """
    adjusted = holm([t.p_value for t in tests])
    size = sum(p is not None for p in adjusted)
    return [replace(t, p_holm=a, family_size=size) for t, a in zip(tests, adjusted, strict=True)]


def family_sentence(tests: Sequence[PairedTest], family: str) -> str:
    """One sentence naming the Holm family of ``tests`` (already through :func:`holm_family`) and its size.

    ``family`` describes what is printed together (``every paired test on this page ...``); the
    sentence is there so a reader knows how many chances at a false "significant" were corrected for.
    """
    size = max((t.family_size for t in tests), default=0)
    untested = sum(t.p_value is None for t in tests)
    if size == 0:
        return (
            f"p Holm: the Holm–Bonferroni family is {family}, but none of its {untested} pair(s) has a test "
            "(one seed, or identical differences), so nothing is adjusted and no difference is called significant."
        )
    skipped = (
        f"; the {untested} pair(s) without a test (one seed, or identical differences) are not counted"
        if untested
        else ""
    )
    return (
        f"p Holm: Holm–Bonferroni adjustment over the family of {family}, {size} test(s){skipped}; "
        f"a difference is called significant only when p Holm < {ALPHA}."
    )


def p_text(p: float | None) -> str:
    """A p-value for a table: three decimals, ``< 0.001`` below that, "—" when there is no test."""
    if p is None:
        return "—"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def ci_text(t: PairedTest) -> str:
    """The confidence interval of a test's mean difference as ``[-0.012, +0.074]``, "—" without one."""
    if t.ci_low is None or t.ci_high is None:
        return "—"
    return f"[{t.ci_low:+.3f}, {t.ci_high:+.3f}]"


RESAMPLED = " [resampled]"
"""Suffix of a method's label for runs whose seeds drew their own labelled subsets."""


def method_label(r: RunResult) -> str:
    """A method's row label: runs on resampled subsets are a different experiment from fixed ones."""
    return r.spec.method + (RESAMPLED if r.spec.subset == "resampled" else "")


def run_flags(r: RunResult) -> list[str]:
    """Warnings that a run did not really train.

    * ``lr collapsed early``: the segmenter's learning rate fell below 1e-3 of its start
      within the first half of the budget (the scheduler froze the run; the profiles' lr floor,
      ``plateau_min_lr_factor``, now keeps it at 1e-2 or above, so this marks runs made without it).
    * ``best val = empty prediction``: the best validation score is what predicting
      nothing scores, so the selected checkpoint learned nothing.
    * ``best at the last validation``: the score was still rising when the budget ended, so
      the run may be undertrained at this budget (a longer one could change the ranking).
    """
    flags = []
    traj = r.trajectory
    its, lrs = traj.get("iteration", []), traj.get("lr", [])
    if its and lrs and r.iterations:
        lr0 = float(lrs[0])
        early = [float(lr) for it, lr in zip(its, lrs, strict=False) if it <= 0.5 * r.iterations]
        if lr0 > 0 and early and min(early) < 1e-3 * lr0:
            flags.append("lr collapsed early")
    empty = r.extras.get("empty_val_score")
    if empty is not None and r.best_val_score is not None and r.best_val_score <= float(empty) + 1e-9:
        flags.append("best val = empty prediction")
    # the checkpoint rule keeps the first of equal scores, so a best at the last validation rose there
    if len(its) > 1 and r.best_iteration == its[-1]:
        flags.append("best at the last validation")
    if unchanged_by_plateau_rules(r):
        flags.append("recorded before the plateau rules; replayed: same lr schedule under them")
    return flags


Cell = tuple[str, int, str, RunContext]
"""(method label, training size, test set, context): the runs one row averages."""
Runs = dict[tuple[str, int, RunContext], list[RunResult]]
"""Every run (ok or failed) per (method label, training size, context)."""


def _group(task: TaskSpec, results: Iterable[RunResult]) -> tuple[dict[Cell, dict[int, float]], Runs]:
    """Scores per cell and seed, and the runs per (method, size, context)."""
    scores: dict[Cell, dict[int, float]] = defaultdict(dict)
    runs: Runs = defaultdict(list)
    # oldest first: of two ok results of one seed in one context the newest is the one averaged
    # (``_run_facts`` flags the repeat; averaging both would count the seed twice)
    for r in sorted(results, key=lambda r: r.created):
        ctx = run_context(task, r)
        runs[(method_label(r), r.spec.train_size, ctx)].append(r)
        if r.status != "ok":
            continue
        for ts in r.test_sets:
            scores[(method_label(r), r.spec.train_size, ts, ctx)][r.spec.seed] = r.score(ts)
    return scores, runs


def own_batch_flag(r: RunResult) -> list[str]:
    """A method that trains at its own batch (nnU-Net's plans) says so: the budget column is the profile's."""
    own, profile_batch = r.budget.get("batch_size"), profile_of(r).get("batch_size")
    if own and profile_batch and int(own) != int(profile_batch):
        return [f"batch {own} (its own plan), not the profile's {profile_batch}"]
    return []


def merged_seed_flags(per_seed: dict[int, list[str]]) -> list[str]:
    """``seed 0: f`` per seed and flag, with one line for a flag several seeds share (``seeds 0,1,2: f``).

    A quick-profile grid flags every seed alike ("best at the last validation"); three
    copies of one sentence in the flags column read as three problems.
    """
    seeds_of: dict[str, list[int]] = {}
    for seed in sorted(per_seed):
        for flag in per_seed[seed]:
            seeds_of.setdefault(flag, []).append(seed)
    return [
        f"{'seeds' if len(seeds) > 1 else 'seed'} {','.join(map(str, seeds))}: {flag}"
        for flag, seeds in seeds_of.items()
    ]


def _run_facts(runs: list[RunResult]) -> dict[str, Any]:
    """Split sizes, mean budget and the union of run flags over the ok runs of one (method, size, context).

    Of repeated results of one seed (equal contexts, different run ids: a code change outside the
    identity), the newest counts, as in the scores, and the repeat is flagged.
    """
    ok = [r for r in runs if r.status == "ok"]
    if not ok:
        return {}
    flags: list[str] = []
    for seed, k in sorted(Counter(r.spec.seed for r in ok).items()):
        if k > 1:
            flags.append(f"seed {seed}: {k} results in one context, the newest used")
    ok = list({r.spec.seed: r for r in sorted(ok, key=lambda r: r.created)}.values())
    threads = sorted({r.versions["torch_threads"] for r in ok if "torch_threads" in r.versions})
    if len(threads) > 1:  # CPU scores depend on the thread count (runner.compute_environment)
        flags.append(f"seeds ran with different torch thread counts ({', '.join(threads)})")
    seen = [int(r.budget["images_seen"]) for r in ok if "images_seen" in r.budget]
    ups = [int(r.budget["updates"]) for r in ok if "updates" in r.budget]
    flags += merged_seed_flags({r.spec.seed: run_flags(r) + own_batch_flag(r) for r in ok})
    return {
        "n_train": len(ok[0].train_cases) or None,
        "n_val": len(ok[0].val_cases) or None,
        "images_seen": round(statistics.fmean(seen)) if seen else None,
        "updates": round(statistics.fmean(ups)) if ups else None,
        "flags": tuple(flags),
    }


def _splits(contexts: Iterable[RunContext]) -> dict[RunContext, tuple[tuple[str, ...], str]]:
    """For the contexts of one (method, size): the labels of the fields that differ, and a flag saying so."""
    ctxs = sorted(set(contexts), key=RunContext.key)
    if len(ctxs) < 2:
        return {c: ((), "") for c in ctxs}
    differing = [f.name for f in fields(RunContext) if len({getattr(c, f.name) for c in ctxs}) > 1]
    labels = tuple(RunContext.LABELS[f] for f in differing)
    out = {}
    for c in ctxs:
        mine = "; ".join(f"{RunContext.LABELS[f]} {getattr(c, f)}" for f in differing)
        out[c] = (
            labels,
            f"not averaged with {len(ctxs) - 1} other row(s) of this method and size: "
            f"runs differ in {', '.join(labels)} (this row: {mine})",
        )
    return out


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def aggregate(task: TaskSpec, results: list[RunResult]) -> list[ReportRow]:
    """Mean and sample std (ddof = 1) over seeds per method, size, test set and run context, with paper numbers.

    Runs of one method and size that differ in their :class:`RunContext` are separate
    rows, each flagged with the fields that differ (:attr:`ReportRow.split`).
    """
    results = [r for r in results if r.spec.task == task.id]
    scores, runs = _group(task, results)
    means = {(m, n, ts, ctx.shared): statistics.fmean(v.values()) for (m, n, ts, ctx), v in scores.items()}
    # a score reference wins over a gain reference for the same cell (the score is comparable as is)
    ordered = sorted(task.references, key=lambda ref: ref.kind == "score")
    refs = {(ref.method, ref.train_size, ref.test_set): ref for ref in ordered}
    contexts: dict[tuple[str, int], list[RunContext]] = defaultdict(list)
    for m, n, ctx in runs:
        contexts[(m, n)].append(ctx)
    splits = {key: _splits(ctxs) for key, ctxs in contexts.items()}
    rows = []
    keys = set(scores) | {(m, n, ts.name, ctx) for (m, n, ctx) in runs for ts in task.test_sets}
    order = {ts.name: i for i, ts in enumerate(task.test_sets)}
    for method, n, ts, ctx in sorted(keys, key=lambda k: (k[1], order.get(k[2], 99), k[0], k[3].key())):
        per_seed = scores.get((method, n, ts, ctx), {})
        vals = [per_seed[s] for s in sorted(per_seed)]
        ref = refs.get((method, n, ts))
        gain = None
        if ref is not None and ref.kind == "gain" and ref.baseline and vals:
            base = means.get((ref.baseline, n, ts, ctx.shared))
            gain = None if base is None else statistics.fmean(vals) - base
        group = runs.get((method, n, ctx), [])
        split, split_flag = splits[(method, n)][ctx]
        facts = _run_facts(group)
        flags = tuple(facts.pop("flags", ())) + ((split_flag,) if split_flag else ())
        rows.append(
            ReportRow(
                method=method,
                train_size=n,
                test_set=ts,
                metric=task.metric,
                mean=statistics.fmean(vals) if vals else math.nan,
                std=_std(vals),
                n_seeds=len(vals),
                seeds=sorted(per_seed),
                scores=vals,
                failed=sum(r.status != "ok" for r in group),
                paper=ref.value if ref else None,
                paper_kind=ref.kind if ref else None,
                paper_baseline=ref.baseline if ref else None,
                paper_figure=ref.figure if ref else None,
                measured_gain=gain,
                **facts,
                flags=flags,
                profile=ctx.profile,
                budget=ctx.budget,
                settings=ctx.settings,
                context=ctx.key(),
                split=split,
            )
        )
    return rows


def split_warnings(rows: list[ReportRow]) -> list[str]:
    """One line per (method, size) whose runs were set apart, naming the fields that differ."""
    seen: dict[tuple[str, int], set[str]] = {}
    for r in rows:
        if r.split:
            seen.setdefault((r.method, r.train_size), set()).update(r.split)
    return [
        f"{m} n={n}: runs differ in {', '.join(sorted(fs))}; shown as separate rows, never averaged."
        for (m, n), fs in sorted(seen.items())
    ]


def paired_tests(task: TaskSpec, results: list[RunResult], method_a: str, method_b: str) -> list[PairedTest]:
    """Paired t-tests of ``a`` vs ``b`` per size, test set and shared run context, pairing runs by seed.

    Only runs of one profile, budget, data and task version are paired. A method whose
    runs at a size differ in their config gets one test per config. The tests carry raw
    p-values and intervals; pass what is printed together through :func:`holm_family`.
    """
    scores, _ = _group(task, (r for r in results if r.spec.task == task.id))
    cells: dict[tuple[int, tuple[str, ...]], dict[str, set[RunContext]]] = defaultdict(
        lambda: {method_a: set(), method_b: set()}
    )
    for m, n, _, ctx in scores:
        if m in (method_a, method_b):
            cells[(n, ctx.shared)][m].add(ctx)
    out = []
    for (n, shared), by_method in sorted(cells.items()):
        for ca in sorted(by_method[method_a], key=RunContext.key):
            for cb in sorted(by_method[method_b], key=RunContext.key):
                for ts in task.test_sets:
                    a = scores.get((method_a, n, ts.name, ca), {})
                    b = scores.get((method_b, n, ts.name, cb), {})
                    seeds = sorted(set(a) & set(b))
                    if not seeds:
                        continue
                    xa = [a[s] for s in seeds]
                    xb = [b[s] for s in seeds]
                    diffs = [x - y for x, y in zip(xa, xb, strict=True)]
                    t = p = None
                    ci: tuple[float, float] | None = None
                    # identical differences have no spread: t is infinite and a zero-width interval
                    # would read as certainty, so such a pair, like one seed, has no test
                    if len(seeds) >= 2 and _std(diffs) > 0:
                        res = stats.ttest_rel(xa, xb)
                        t, p = float(res.statistic), float(res.pvalue)
                        ci = mean_ci(diffs)
                    out.append(
                        PairedTest(
                            method_a,
                            method_b,
                            n,
                            ts.name,
                            statistics.fmean(xa),
                            statistics.fmean(xb),
                            statistics.fmean(diffs),
                            len(seeds),
                            t,
                            p,
                            profile=ca.profile,
                            context=shared,
                            ci_low=ci[0] if ci else None,
                            ci_high=ci[1] if ci else None,
                        )
                    )
    return out


def _fmt(x: float | None, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def paper_cell(row: ReportRow) -> str:
    if row.paper is None:
        return "-"
    if row.paper_kind == "gain":
        return f"{row.paper:+.3f} vs {row.paper_baseline} ({row.paper_figure})"
    return f"{row.paper:.3f} ({row.paper_figure})"


def score_text(mean: float, std: float, n_seeds: int) -> str:
    """Mean ± std over seeds; one seed has no spread to show, so none is printed (not a false ± 0).

    The one spelling of a score cell: the report, the reproduction pages and the leaderboard all use it.
    """
    return f"{mean:.3f} ± {std:.3f}" if n_seeds > 1 else f"{mean:.3f} (1 seed)"


def table_rows(rows: list[ReportRow]) -> list[list[str]]:
    """Rows as strings in :data:`HEADER` order (profile and budget beside the seeds)."""
    out = []
    for r in rows:
        score = "-" if r.n_seeds == 0 else score_text(r.mean, r.std, r.n_seeds)
        seeds = f"{r.n_seeds}" + (f" ({r.failed} failed)" if r.failed else "")
        n = str(r.train_size) + (f" ({r.n_train}+{r.n_val})" if r.n_train is not None else "")
        seen = "-" if r.images_seen is None else f"{r.images_seen:,}"
        out.append(
            [
                r.method,
                n,
                r.test_set,
                score,
                seeds,
                f"{r.profile} ({r.budget})" if r.profile else "-",
                seen,
                paper_cell(r),
                _fmt(r.delta, True),
                "; ".join(r.flags) or "-",
            ]
        )
    return out


HEADER = [
    "method",
    "n (train+val)",
    "test set",
    "score (mean ± std)",
    "seeds",
    "profile (budget)",
    "images seen",
    "paper",
    "Δ vs paper",
    "flags",
]


COMPARE_SCOPE = (
    "every paired test of this output (all training sizes, test sets and run contexts of the pair)"
)
"""What the family of ``report --compare`` is: the tests printed by one command."""


def to_markdown(task: TaskSpec, rows: list[ReportRow], tests: list[PairedTest]) -> str:
    """The report as Markdown; the paired tests are Holm-adjusted over all of ``tests`` (printed together)."""
    lines = [
        f"## {task.id}: {task.description}",
        "",
        f"Metric: {task.metric}. Task version {task.version}. {EMPTY_POLICY} "
        "Std is the sample standard deviation over seeds.",
        "",
    ]
    lines.append("| " + " | ".join(HEADER) + " |")
    lines.append("|" + "---|" * len(HEADER))
    lines += ["| " + " | ".join(r) + " |" for r in table_rows(rows)]
    warnings = split_warnings(rows)
    if warnings:
        lines += ["", "Runs set apart (see each row's flags):", ""] + [f"* {w}" for w in warnings]
    if tests:
        tests = holm_family(tests)
        lines += [
            "",
            "Two-sided paired t-test across seeds, with the "
            f"{CI_LEVEL:.0%} t interval of the mean difference. " + family_sentence(tests, COMPARE_SCOPE),
            "",
            "| a | b | n train | test set | profile | mean a | mean b | a − b | "
            f"{CI_LEVEL:.0%} CI | pairs | t | p | p Holm |",
            "|" + "---|" * 13,
        ]
        lines += [
            f"| {t.method_a} | {t.method_b} | {t.train_size} | {t.test_set} | {t.profile or '-'} | {t.mean_a:.3f} | "
            f"{t.mean_b:.3f} | {t.mean_diff:+.3f} | {ci_text(t)} | {t.n_pairs} | {_fmt(t.t)} | "
            f"{p_text(t.p_value) if t.p_value is not None else t.no_test} | {p_text(t.p_holm)} |"
            for t in tests
        ]
    return "\n".join(lines) + "\n"


def _no_nan(obj: object) -> object:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _no_nan(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_no_nan(v) for v in obj]
    return obj


def to_json(task: TaskSpec, rows: list[ReportRow], tests: list[PairedTest]) -> str:
    """JSON with NaN (no successful seed) written as null, so every JSON parser reads it.

    The paired tests are Holm-adjusted over all of ``tests`` (one output, one family).
    """
    tests = holm_family(tests)
    payload = {
        "task": task.id,
        "metric": task.metric,
        "task_version": task.version,
        "policy": EMPTY_POLICY,
        "warnings": split_warnings(rows),
        "rows": [{**asdict(r), "delta": r.delta} for r in rows],
        "paired_tests": [{**asdict(t), "no_test": t.no_test or None} for t in tests],
        "holm": {
            "family_size": max((t.family_size for t in tests), default=0),
            "family": family_sentence(tests, COMPARE_SCOPE) if tests else "",
            "alpha": ALPHA,
            "ci_level": CI_LEVEL,
        },
    }
    return json.dumps(_no_nan(payload), indent=1, allow_nan=False)
