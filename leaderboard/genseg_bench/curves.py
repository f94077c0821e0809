"""Sample-efficiency curves and the paper's data-efficiency factor.

A curve is a method's score (mean and sample std over seeds, from
:func:`genseg_bench.report.aggregate`) against the training-set size. The
data-efficiency factor answers the paper's Sec. 2.4 question: at each size ``n``
where method ``b`` was run, how many labels does method ``a`` need to reach
``b``'s score there? ``factor = n / n_a``, where ``n_a`` is read off ``a``'s
curve by linear interpolation of the score on the log-size axis (sizes in the
paper grow geometrically, so a log axis is where the curves are drawn and where
linear interpolation is least biased). "GenSeg-DeepLab reached 0.51 with 50
examples, DeepLab needed 500" is a factor of 10.

Outside ``a``'s measured range the factor is a bound, never an extrapolation:
when ``a`` already beats the target at its smallest size the factor is *at
least* ``n / n_min``; when ``a`` never reaches it, *less than* ``n / n_max``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from genseg_bench.report import ReportRow

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class CurvePoint:
    """One size of a curve: mean and sample std over seeds."""

    size: int
    mean: float
    std: float
    n_seeds: int


@dataclass(frozen=True)
class Curve:
    method: str
    test_set: str
    metric: str
    points: list[CurvePoint]
    context: str = ""
    """:attr:`ReportRow.context` of its points: a curve never joins runs of different contexts."""
    label: str = ""
    """The legend entry: the method, with profile and budget when the method has several curves."""

    @property
    def sizes(self) -> list[int]:
        return [p.size for p in self.points]


Bound = Literal["=", ">=", "<"]


@dataclass(frozen=True)
class Efficiency:
    """How many times fewer labels ``method_a`` needs than ``method_b`` to reach ``b``'s score at ``size``.

    ``bound`` is ``=`` for an interpolated value, ``>=`` when ``a`` already reaches
    the score at its smallest size (``labels_a`` is then that size, an upper bound
    on what ``a`` needs) and ``<`` when ``a`` never reaches it (``labels_a`` is then
    ``a``'s largest size, a lower bound on what it needs).
    """

    method_a: str
    method_b: str
    test_set: str
    size: int
    target: float
    labels_a: float
    factor: float
    bound: Bound

    def factor_text(self) -> str:
        prefix = {"=": "", ">=": "≥ ", "<": "< "}[self.bound]
        return f"{prefix}{self.factor:.2f}×"

    def labels_text(self) -> str:
        prefix = {"=": "", ">=": "≤ ", "<": "> "}[self.bound]
        return f"{prefix}{self.labels_a:.1f}"


def curves_from_rows(rows: list[ReportRow], methods: list[str] | None = None) -> list[Curve]:
    """One curve per (method, test set, run context) from report rows, sizes ascending.

    Sizes with no successful seed are left out. Rows of different run contexts
    (profile, budget, data, task version, method config: see
    :func:`genseg_bench.report.aggregate`) are separate curves, never one line.
    """
    grouped: dict[tuple[str, str, str], list[CurvePoint]] = {}
    first: dict[tuple[str, str, str], ReportRow] = {}
    for r in rows:
        if r.n_seeds == 0 or (methods is not None and r.method not in methods):
            continue
        key = (r.method, r.test_set, r.context)
        grouped.setdefault(key, []).append(CurvePoint(r.train_size, r.mean, r.std, r.n_seeds))
        first.setdefault(key, r)
    per_method: dict[tuple[str, str], int] = {}
    for m, ts, _ in grouped:
        per_method[(m, ts)] = per_method.get((m, ts), 0) + 1
    order = {m: i for i, m in enumerate(methods or [])}
    keys = sorted(grouped, key=lambda k: (k[1], order.get(k[0], len(order)), k[0], k[2]))
    out = []
    for m, ts, ctx in keys:
        row = first[(m, ts, ctx)]
        label = m if per_method[(m, ts)] == 1 else f"{m} [{row.profile}, {row.budget}]"
        pts = sorted(grouped[(m, ts, ctx)], key=lambda p: p.size)
        out.append(Curve(m, ts, row.metric, pts, ctx, label))
    return out


def shared_context(curve: Curve) -> str:
    """The part of a curve's run context two methods must share to be compared (all but the method config).

    :attr:`Curve.context` is :meth:`genseg_bench.report.RunContext.key`, whose last field is the
    method's own config; the rest (profile, budget, settings, data, task version) is what a paired
    comparison requires to be equal.
    """
    return curve.context.rsplit(" | ", 1)[0]


def labels_needed(curve: list[CurvePoint], target: float) -> tuple[float, Bound]:
    """The smallest size at which a curve reaches ``target``, interpolating linearly in log size.

    Returns ``(size, "=")`` for a crossing inside the measured range, ``(n_min, ">=")``
    when the first point is already at or above the target, and ``(n_max, "<")``
    when no point reaches it. The first crossing counts (a non-monotone curve that
    dips later does not move it).
    """
    if not curve:
        raise ValueError("an empty curve reaches nothing")
    pts = sorted(curve, key=lambda p: p.size)
    if pts[0].mean >= target:
        return float(pts[0].size), ">="
    for lo, hi in zip(pts, pts[1:], strict=False):
        if lo.mean < target <= hi.mean:
            t = (target - lo.mean) / (hi.mean - lo.mean)
            log_n = math.log(lo.size) + t * (math.log(hi.size) - math.log(lo.size))
            return math.exp(log_n), "="
    return float(pts[-1].size), "<"


def efficiency(a: Curve, b: Curve) -> list[Efficiency]:
    """The data-efficiency factor of ``a`` over ``b`` at each size of ``b`` (same test set)."""
    if a.test_set != b.test_set:
        raise ValueError(f"curves of different test sets: {a.test_set} vs {b.test_set}")
    out = []
    for p in b.points:
        n_a, bound = labels_needed(a.points, p.mean)
        out.append(Efficiency(a.method, b.method, b.test_set, p.size, p.mean, n_a, p.size / n_a, bound))
    return out


def curve_figure(curves: list[Curve], title: str) -> Figure:
    """Score vs training size (log axis) with mean ± std bands, one line per method.

    Built with matplotlib's object API only (a :class:`~matplotlib.figure.Figure`
    and its own axes, no ``pyplot`` and no backend switch), so the figure belongs
    to its caller alone: a server can draw figures in several threads at once and
    nothing is left in a global figure registry to close.
    """
    from matplotlib.figure import Figure

    sizes = sorted({p.size for c in curves for p in c.points})
    metric = curves[0].metric if curves else "score"
    fig = Figure(figsize=(5.2, 3.4), dpi=110)
    ax = fig.add_subplot()
    for c in curves:
        xs = [p.size for p in c.points]
        ys = [p.mean for p in c.points]
        sd = [p.std for p in c.points]
        (line,) = ax.plot(xs, ys, marker="o", label=c.label or c.method, gid=f"curve-{c.method}")
        ax.fill_between(
            xs,
            [y - s for y, s in zip(ys, sd, strict=True)],
            [y + s for y, s in zip(ys, sd, strict=True)],
            alpha=0.2,
            color=line.get_color(),
            linewidth=0,
        )
    ax.set_xscale("log")
    if sizes:
        ax.set_xticks(sizes)
        ax.set_xticklabels([str(s) for s in sizes])
        ax.minorticks_off()
    ax.set_xlabel("training images (log scale)")
    ax.set_ylabel(f"{metric} (mean ± std over seeds)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def render_figure(fig: Figure, fmt: str, salt: str = "genseg-bench") -> bytes:
    """The figure as ``png`` or ``svg`` bytes (``Figure.savefig`` picks the Agg / SVG canvas itself).

    SVG text stays text (``svg.fonttype = none``) so that a browser, a screen
    reader and a test can read the labels and numbers of the plot, and its ids
    are salted with ``salt`` (several plots can be inlined in one page) and
    stable across runs. Those two SVG options exist only as rcParams, so they
    are set for the duration of the SVG save alone; PNG reads no global setting.
    """
    import io

    buf = io.BytesIO()
    if fmt == "svg":
        from matplotlib import rc_context

        with rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
            fig.savefig(buf, format="svg", metadata={"Date": None})
    elif fmt == "png":
        fig.savefig(buf, format="png")
    else:
        raise ValueError(f"unknown plot format {fmt!r}; use png or svg")
    return buf.getvalue()


def plot_curves(
    curves: list[Curve],
    title: str,
    out_base: Path | None = None,
    formats: tuple[str, ...] = ("png", "svg"),
    salt: str = "genseg-bench",
) -> dict[str, bytes]:
    """:func:`curve_figure` rendered in each format (and written to ``out_base.<fmt>`` when given)."""
    fig = curve_figure(curves, title)
    rendered = {fmt: render_figure(fig, fmt, salt) for fmt in formats}
    if out_base is not None:
        Path(out_base).parent.mkdir(parents=True, exist_ok=True)
        for fmt, data in rendered.items():
            Path(f"{out_base}.{fmt}").write_bytes(data)
    return rendered
