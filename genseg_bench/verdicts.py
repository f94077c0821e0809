"""The paper's claims, one verdict each, computed from result files alone.

A claim (``[[claim]]`` in ``tasks/paper_claims.toml``, :class:`ClaimSpec`) is a sentence of the
paper with its number, and the comparison on a task this benchmark can run that tests
it: ``method`` against ``baseline`` at one training size, on one test set, under one
profile. :func:`evaluate` turns the result files into a :class:`ClaimResult` per claim,
:func:`verdict_table` into the Markdown table that opens the reproduction page.

The verdict rule is written once, here (:func:`verdict`), and in docs/methodology.md:

* **not testable here** when the comparison has fewer than :data:`MIN_SEEDS` seeds that
  both methods ran under the claim's profile (the reason names what is missing: no run,
  one seed, ...), or when the claim's kind needs a measurement that does not exist
  (a sample-efficiency claim without a size sweep of the baseline);
* **confirmed** when the paired difference has the paper's sign and its Holm-adjusted
  p is below :data:`~genseg_bench.report.ALPHA` over the family of every claim in the
  table (a claim counts only once it survives the correction for testing several);
* **not confirmed** otherwise, with why: no significant difference, or a significant
  one of the opposite sign.

A confirmed gain whose whole confidence interval lies below the paper's number is said
to be smaller than the paper's; the table always shows both numbers, so a reader can
weigh a confirmed sign against a missed size.

Sample-efficiency claims (``kind = "efficiency"``) read the paper's factor "labels the
baseline needs / labels the method needs for the same score": the method's mean score at
``train_size`` is located on the baseline's size sweep (:func:`genseg_bench.curves.labels_needed`,
linear in log size; a bound outside the swept range), and the factor is that size over
``train_size``. Its uncertainty is the range of the factor over the method's per-seed scores.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from genseg_bench import report as rep
from genseg_bench.curves import Bound, CurvePoint, labels_needed
from genseg_bench.specs import ClaimSpec, Profile, RunResult, TaskSpec

MIN_SEEDS = 3
"""Seeds both methods must have run for a verdict: the suite's standard grid (one seed has no test at all,
two give a t-test with one degree of freedom whose interval spans everything)."""

Verdict = Literal["confirmed", "not confirmed", "not testable here"]


@dataclass
class ClaimResult:
    """A claim with its measurement (None where there is none) and its verdict."""

    spec: ClaimSpec
    verdict: Verdict
    why: str
    test: rep.PairedTest | None = None
    budget: str = ""
    factor: float | None = None
    factor_bound: Bound = "="
    factor_range: tuple[float, float] | None = None

    def measured_text(self) -> str:
        """The measured number with its uncertainty, as the table prints it."""
        if self.spec.kind == "efficiency":
            if self.factor is None:
                return "-"
            prefix = {"=": "", ">=": "≥ ", "<": "< "}[self.factor_bound]
            spread = (
                f" (seeds: {self.factor_range[0]:.1f}-{self.factor_range[1]:.1f}×)"
                if self.factor_range
                else ""
            )
            return f"{prefix}{self.factor:.1f}×{spread}"
        t = self.test
        if t is None:
            return "-"
        ci = f" {rep.ci_text(t)}" if t.ci_low is not None else ""
        seeds = "1 seed" if t.n_pairs == 1 else f"{t.n_pairs} seeds"
        return f"{t.mean_diff:+.3f}{ci} ({t.mean_a:.3f} vs {t.mean_b:.3f}, {seeds})"


def verdict(test: rep.PairedTest | None, paper_sign: float, missing: str = "") -> tuple[Verdict, str]:
    """The verdict rule (module docstring): ``test`` Holm-adjusted over the table's family.

    ``paper_sign``: the sign of the paper's effect (+1: the method is better). ``missing`` says
    why there is no test when ``test`` is None.
    """
    if test is None:
        return "not testable here", missing or "no run of both methods"
    if test.n_pairs < MIN_SEEDS:
        have = "one seed" if test.n_pairs == 1 else f"{test.n_pairs} seeds"
        return "not testable here", f"{have} of both methods; a verdict needs {MIN_SEEDS}"
    if test.p_value is None:
        return "not testable here", test.no_test
    p = f"p Holm = {rep.p_text(test.p_holm)}"
    if not test.significant:
        return "not confirmed", f"no significant difference ({p})"
    if (test.mean_diff > 0) != (paper_sign > 0):
        return "not confirmed", f"significant in the opposite direction ({p})"
    return "confirmed", f"significant, the paper's sign ({p})"


def runs_as_now(runs: list[RunResult], profile: Profile, same_budget: bool = True) -> list[RunResult]:
    """The runs of ``profile`` at its settings as they are now (recipe, image size, ...) and, unless
    ``same_budget`` is False, at its iteration budget: older recipes and budget sweeps never enter a verdict.
    """
    settings = rep.settings_digest(profile.model_dump())
    out = []
    for r in runs:
        recorded = rep.profile_of(r)
        budget_ok = not same_budget or recorded.get("iterations") == profile.iterations
        if r.spec.profile == profile.name and rep.settings_digest(recorded) == settings and budget_ok:
            out.append(r)
    return out


def _budget(profile: Profile) -> str:
    return f"{profile.name}: {profile.iterations} it × {profile.batch_size} at {profile.image_size} px"


def _claim_test(
    spec: ClaimSpec, task: TaskSpec, runs: list[RunResult], profile: Profile
) -> tuple[rep.PairedTest | None, str]:
    """The paired test of a gain claim under its profile's current settings and budget; or why none."""
    own = runs_as_now(runs, profile)
    for m in (spec.method, spec.baseline):
        if not any(
            r.spec.method == m and r.status == "ok" and r.spec.train_size == spec.train_size for r in own
        ):
            return None, f"no {m} run at n = {spec.train_size} under profile {spec.profile!r} as it is now"
    tests = [
        t
        for t in rep.paired_tests(task, own, spec.method, spec.baseline)
        if t.train_size == spec.train_size and t.test_set == spec.test_set
    ]
    if not tests:
        return None, "no seed ran both methods"
    return max(tests, key=lambda t: t.n_pairs), ""  # one context at the current settings, in practice


def _efficiency(spec: ClaimSpec, task: TaskSpec, runs: list[RunResult], profile: Profile) -> ClaimResult:
    """A sample-efficiency claim: where the method's score at ``train_size`` falls on the baseline's sweep."""
    own = [r for r in runs_as_now(runs, profile) if r.status == "ok"]
    rows = [r for r in rep.aggregate(task, own) if r.test_set == spec.test_set and r.n_seeds]
    base = sorted(
        (CurvePoint(r.train_size, r.mean, r.std, r.n_seeds) for r in rows if r.method == spec.baseline),
        key=lambda p: p.size,
    )
    scores = [
        getattr(r.test_sets[spec.test_set], f"mean_{task.metric}")
        for r in own
        if r.spec.method == spec.method
        and r.spec.train_size == spec.train_size
        and spec.test_set in r.test_sets
    ]
    sizes = ", ".join(str(p.size) for p in base) or "none"
    budget = _budget(profile)
    if len(base) < 3:
        why = f"{spec.baseline} ran at sizes {sizes}; the factor needs a sweep of at least 3 sizes"
        return ClaimResult(spec, "not testable here", why, budget=budget)
    if len(scores) < MIN_SEEDS:
        why = f"{len(scores)} seed(s) of {spec.method} at n = {spec.train_size}; a verdict needs {MIN_SEEDS}"
        return ClaimResult(spec, "not testable here", why, budget=budget)
    labels, bound = labels_needed(base, statistics.fmean(scores))
    per_seed = [labels_needed(base, s)[0] / spec.train_size for s in scores]
    factor = labels / spec.train_size
    # the paper's factor is > 1 when the method needs fewer labels; "<" on the baseline's curve (never
    # reached within the sweep) makes the factor a lower bound, ">=" (reached at the smallest size) an upper one
    shown: Bound = {"=": "=", "<": ">=", ">=": "<"}[bound]
    if shown == "<" or factor <= 1.0:
        v: Verdict = "not confirmed"
        why = (
            f"{spec.baseline} matches {spec.method}'s score with {labels:.0f} labels or fewer (swept {sizes})"
        )
    elif spec.paper_value is not None and shown == "=" and factor < spec.paper_value:
        v, why = "not confirmed", f"a factor below the paper's {spec.paper_value:g}× (swept {sizes})"
    else:
        v, why = (
            "confirmed",
            f"{spec.baseline} needs {'more than ' if shown == '>=' else ''}{labels:.0f} labels (swept {sizes})",
        )
    return ClaimResult(
        spec,
        v,
        why,
        budget=budget,
        factor=factor,
        factor_bound=shown,
        factor_range=(min(per_seed), max(per_seed)),
    )


def evaluate(
    claims: Sequence[ClaimSpec],
    tasks: dict[str, TaskSpec],
    runs_of: dict[str, list[RunResult]],
    profiles: dict[str, Profile],
) -> list[ClaimResult]:
    """Every claim's measurement and verdict; the gain claims' tests are one Holm family."""
    pending: list[tuple[ClaimSpec, rep.PairedTest | None, str, str]] = []
    out: dict[str, ClaimResult] = {}
    for spec in claims:
        task, profile = tasks[spec.task], profiles[spec.profile]
        runs = runs_of.get(spec.task, [])
        if spec.kind == "efficiency":
            out[spec.id] = _efficiency(spec, task, runs, profile)
            continue
        test, missing = _claim_test(spec, task, runs, profile)
        pending.append((spec, test, _budget(profile), missing))
    tested = [t for _, t, _, _ in pending if t is not None and t.n_pairs >= MIN_SEEDS]
    adjusted = iter(rep.holm_family(tested))
    for spec, test, budget, missing in pending:
        if test is not None and test.n_pairs >= MIN_SEEDS:
            test = next(adjusted)
        sign = 1.0 if spec.paper_value is None or spec.paper_value >= 0 else -1.0
        v, why = verdict(test, sign, missing)
        high = test.ci_high if test is not None else None
        if v == "confirmed" and high is not None and spec.paper_value is not None and high < spec.paper_value:
            why += f"; smaller than the paper's {spec.paper_value:+.3f} (the whole interval lies below it)"
        out[spec.id] = ClaimResult(spec, v, why, test, budget)
    return [out[c.id] for c in claims]


def verdict_table(results: Sequence[ClaimResult]) -> list[str]:
    """The Markdown table of :func:`evaluate`'s results, with how to read it."""
    family = sum(1 for r in results if r.test is not None and r.test.p_holm is not None)
    lines = [
        "## Verdict per claim",
        "",
        "One row per claim of the paper that a task here can test, generated from the result files "
        f"(`tasks/paper_claims.toml` says which comparison tests which claim). Measured: the mean paired "
        f"difference over the seeds both methods ran, its {rep.CI_LEVEL:.0%} t interval, the two "
        "means; p Holm: adjusted over the "
        f"{family} tested claim(s) of this table. Verdict rule (docs/methodology.md, *Verdicts*): "
        f"confirmed when the difference has the paper's sign and p Holm < {rep.ALPHA}; not testable "
        f"here with fewer than {MIN_SEEDS} seeds of both methods under the profile as it is now.",
        "",
        "| claim | paper | task, test set, n | comparison | measured | p Holm | budget | verdict |",
        "|" + "---|" * 8,
    ]
    for r in results:
        s = r.spec
        p = rep.p_text(r.test.p_holm) if r.test is not None and r.test.p_holm is not None else "-"
        lines.append(
            f"| {s.claim} ({s.figure}) | {s.paper} | {s.task}, {s.test_set}, {s.train_size} | "
            f"{s.method} vs {s.baseline} | {r.measured_text()} | {p} | {r.budget or s.profile} | "
            f"**{r.verdict}**: {r.why} |"
        )
    notes = [r for r in results if r.spec.note]
    if notes:
        lines += ["", *[f"* {r.spec.id}: {r.spec.note}" for r in notes]]
    return [*lines, ""]
