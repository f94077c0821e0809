"""HTML of the leaderboard: server-side rendered tables and inline SVG plots, no JavaScript framework.

A page is a pure function of a snapshot and the filter values in the query
string, so the app works in any browser (and in ``chromium --dump-dom``), is
cacheable, and every number in it has a ``data-`` attribute with full precision
for scripts and tests. The plots are matplotlib SVG with text kept as text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from html import escape
from urllib.parse import urlencode

from genseg_bench import report as rep
from genseg_bench.curves import plot_curves

from .board import STATS_NOTE, CurvePanel, RankedRow, Table, backbones_of, curve_panels, task_tables
from .data import Snapshot

FILTERS = ("task", "organ", "modality", "dims", "size", "backbone")


@dataclass(frozen=True)
class Filters:
    """The query-string filters; an empty value means "all"."""

    task: str = ""
    organ: str = ""
    modality: str = ""
    dims: str = ""
    size: str = ""
    backbone: str = ""
    base: str = ""

    @classmethod
    def from_query(cls, query: Mapping[str, list[str]]) -> Filters:
        return cls(**{k: (query.get(k) or [""])[0].strip() for k in (*FILTERS, "base")})

    def query(self) -> dict[str, str]:
        """The non-empty filters, for links that change one of them."""
        return {k: v for k, v in asdict(self).items() if v}


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5rem auto;max-width:1200px;
padding:0 1rem;color:#1d2330;background:#fff}
h1{font-size:1.6rem;margin:.2rem 0}h2{font-size:1.2rem;margin:1.6rem 0 .3rem;border-bottom:2px solid #e3e7ef}
.meta,.note{color:#4a5468;font-size:.88rem}.note{background:#f4f6fb;border-left:4px solid #6b8cff;padding:.5rem .8rem}
form{display:flex;flex-wrap:wrap;gap:.6rem;align-items:end;margin:.8rem 0;padding:.6rem;background:#f8f9fc;
border:1px solid #e3e7ef;border-radius:6px}
label{display:flex;flex-direction:column;font-size:.78rem;color:#4a5468}select{min-width:7rem;padding:.15rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.88rem;min-width:60%}
caption{text-align:left;font-weight:600;padding:.2rem 0}
th,td{border-bottom:1px solid #e3e7ef;padding:.25rem .6rem;text-align:left}th{background:#f4f6fb}
td.num{font-variant-numeric:tabular-nums;text-align:right}tr.rank-1 td{font-weight:600}
td.sep-yes{color:#0a7a3b}td.sep-no{color:#8a6d00}td.sep-na{color:#8892a6}
.panels{display:flex;flex-wrap:wrap;gap:1rem}figure.curve{margin:0}figure.curve svg{max-width:100%;height:auto}
.empty{color:#8a6d00}
"""

# after load, the browser records the laid-out size of every plot: proof that the SVG rendered
SCRIPT = """
document.querySelectorAll('figure.curve svg').forEach(function (svg) {
  var b = svg.getBoundingClientRect();
  svg.parentElement.setAttribute('data-rendered', Math.round(b.width) + 'x' + Math.round(b.height));
});
"""


def _num(x: float | None, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def _options(
    name: str, label: str, values: list[str], current: str, shown: Callable[[str], str] = str
) -> str:
    opts = ['<option value="">all</option>'] + [
        f'<option value="{escape(v)}"{" selected" if v == current else ""}>{escape(shown(v))}</option>'
        for v in values
    ]
    return f'<label>{escape(label)}<select name="{name}" id="filter-{name}">{"".join(opts)}</select></label>'


def _filter_form(snap: Snapshot, f: Filters) -> str:
    tasks = [snap.tasks[t] for t in sorted({r.spec.task for r in snap.results}) if t in snap.tasks]
    bb = sorted(set(backbones_of(snap.results).values()))
    sizes = sorted({r.spec.train_size for r in snap.results}, key=int)
    methods = sorted({r.spec.method for r in snap.results})
    parts = [
        _options("task", "task", [t.id for t in tasks], f.task),
        _options("organ", "organ", sorted({t.organ for t in tasks}), f.organ),
        _options("modality", "modality", sorted({t.modality for t in tasks}), f.modality),
        _options("dims", "2D / 3D", sorted({str(t.dims) for t in tasks}), f.dims, lambda v: f"{v}D"),
        _options("size", "training size", [str(s) for s in sizes], f.size),
        _options("backbone", "backbone", bb, f.backbone),
        _options("base", "efficiency vs", methods, f.base),
        '<button type="submit">Apply</button> <a href="/">reset</a>',
    ]
    return f'<form id="filters" method="get" action="/">{"".join(parts)}</form>'


def _paper(row: rep.ReportRow) -> str:
    return escape(rep.paper_cell(row))


def _sep_cell(r: RankedRow) -> str:
    if r.next_method is None:
        return '<td class="sep-na"></td>'
    if r.p_next_holm is None:
        return f'<td class="sep-na" title="vs {escape(r.next_method)}: not testable">n/a</td>'
    mark, cls = ("≻", "sep-yes") if r.separable_from_next else ("≈", "sep-no")
    return (
        f'<td class="{cls}" data-p="{r.p_next:.6g}" data-p-holm="{r.p_next_holm:.6g}" '
        f'title="paired t-test vs {escape(r.next_method)}: p = {r.p_next:.3g}, Holm-adjusted {r.p_next_holm:.3g}">'
        f"{mark} p<sub>Holm</sub> = {r.p_next_holm:.3f}</td>"
    )


def render_table(t: Table) -> str:
    dom = "in-domain" if t.domain == "in" else "out-of-domain"
    head = (
        "<tr><th>rank</th><th>method</th><th>backbone</th><th>score (mean ± std)</th><th>seeds</th>"
        "<th>paper</th><th>Δ vs paper</th><th>vs next</th></tr>"
    )
    body = []
    for r in t.rows:
        row = r.row
        score = "–" if row.n_seeds == 0 else f"{row.mean:.3f} ± {row.std:.3f}"
        seeds = f"{row.n_seeds}" + (f" ({row.failed} failed)" if row.failed else "")
        data_mean = "" if row.n_seeds == 0 else f' data-mean="{row.mean:.6f}" data-std="{row.std:.6f}"'
        body.append(
            f'<tr class="rank-{r.rank or "none"}" data-method="{escape(row.method)}"{data_mean}>'
            f'<td class="num">{r.rank or "–"}</td><td>{escape(row.method)}</td><td>{escape(r.backbone)}</td>'
            f'<td class="num score">{score}</td><td class="num">{seeds}</td><td>{_paper(row)}</td>'
            f'<td class="num">{_num(row.delta, True)}</td>{_sep_cell(r)}</tr>'
        )
    return (
        f'<table class="board" data-task="{escape(t.task.id)}" data-test-set="{escape(t.test_set)}" '
        f'data-train-size="{t.train_size}"><caption>test set {escape(t.test_set)} ({dom}), '
        f"{t.train_size} training images, {escape(t.task.metric)}</caption><thead>{head}</thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _svg(panel: CurvePanel) -> str:
    title = f"{panel.task.id}: {panel.test_set}"
    svg = plot_curves(panel.curves, title, formats=("svg",), salt=f"{panel.task.id}-{panel.test_set}")["svg"]
    svg = svg.decode()
    return svg[svg.index("<svg") :]


def render_panel(panel: CurvePanel, svg: str) -> str:
    points = {c.method: [[p.size, round(p.mean, 6), round(p.std, 6)] for p in c.points] for c in panel.curves}
    fig = (
        f'<figure class="curve" data-task="{escape(panel.task.id)}" data-test-set="{escape(panel.test_set)}" '
        f"data-points='{escape(json.dumps(points))}'>{svg}"
        f'<figcaption class="meta">{escape(panel.task.metric)} vs training-set size, mean ± std over seeds'
        "</figcaption></figure>"
    )
    rows = "".join(
        f'<tr data-method="{escape(e.method_a)}" data-size="{e.size}" data-factor="{e.factor:.6f}" '
        f'data-bound="{escape(e.bound)}"><td>{escape(e.method_a)}</td><td class="num">{e.size}</td>'
        f'<td class="num">{e.target:.3f}</td><td class="num">{escape(e.labels_text())}</td>'
        f'<td class="num">{escape(e.factor_text())}</td></tr>'
        for e in panel.factors
    )
    eff = ""
    if panel.factors:
        eff = (
            f'<table class="efficiency" data-task="{escape(panel.task.id)}" '
            f'data-test-set="{escape(panel.test_set)}" data-base="{escape(panel.base or "")}">'
            f"<caption>data-efficiency factor vs {escape(panel.base or '')} ({escape(panel.test_set)}): "
            f"how many times fewer labels a method needs to reach {escape(panel.base or '')}'s score "
            "(interpolated on the log-size axis; ≥ / &lt; are bounds outside the measured sizes)</caption>"
            "<thead><tr><th>method</th><th>size (base)</th><th>base score</th><th>labels needed</th>"
            f"<th>factor</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    return f'<div class="panel">{fig}{eff}</div>'


def render_page(snap: Snapshot, f: Filters, svg_cache: dict[tuple[str, ...], str] | None = None) -> str:
    """The whole leaderboard page for one set of filters."""
    cache = svg_cache if svg_cache is not None else {}
    results = snap.results
    if f.backbone:
        bb = backbones_of(results)
        results = [r for r in results if bb.get(r.spec.method) == f.backbone]
    backbones = backbones_of(snap.results)
    task_ids = sorted({r.spec.task for r in results})
    unknown = [t for t in task_ids if t not in snap.tasks]
    tasks = [snap.tasks[t] for t in task_ids if t in snap.tasks]
    tasks = [
        t
        for t in tasks
        if (not f.task or t.id == f.task)
        and (not f.organ or t.organ == f.organ)
        and (not f.modality or t.modality == f.modality)
        and (not f.dims or str(t.dims) == f.dims)
    ]
    sections = []
    for task in tasks:
        all_tables = task_tables(task, results, backbones)
        if f.size:
            tables = [t for t in all_tables if str(t.train_size) == f.size]
        else:  # the task's headline sizes; the sweep is in the curves and one filter away
            tables = [t for t in all_tables if t.train_size in task.train_sizes] or all_tables
        if not tables:
            continue
        others = sorted({t.train_size for t in all_tables} - {t.train_size for t in tables})
        other_html = ""
        if others:
            links = ", ".join(
                f'<a href="/?{escape(urlencode({**f.query(), "task": task.id, "size": n}))}">{n}</a>'
                for n in others
            )
            other_html = f'<p class="meta">Tables at other training sizes: {links}.</p>'
        panels = curve_panels(task, results, base=f.base or None)
        rendered_panels = []
        for p in panels:
            key = (snap.description, str(id(snap)), task.id, p.test_set, f.backbone)
            if key not in cache:
                cache[key] = _svg(p)
            rendered_panels.append(render_panel(p, cache[key]))
        meta = (
            f"{escape(task.organ)} · {escape(task.modality)} · {task.dims}D · metric {escape(task.metric)}"
            + (f" · paper {escape(task.figure)}" if task.figure else "")
        )
        curves_html = (
            f'<h3>sample efficiency</h3><div class="panels">{"".join(rendered_panels)}</div>'
            if panels
            else ""
        )
        sections.append(
            f'<section class="task" id="task-{escape(task.id)}" data-task="{escape(task.id)}">'
            f'<h2>{escape(task.id)}</h2><p>{escape(task.description)}</p><p class="meta">{meta}</p>'
            f"{''.join(render_table(t) for t in tables)}{other_html}{curves_html}</section>"
        )
    if not sections:
        sections.append('<p class="empty" id="no-results">No results match these filters.</p>')
    if unknown:
        sections.append(
            f'<p class="note">Tasks not known to this genseg-bench (no metadata): {escape(", ".join(unknown))}.</p>'
        )
    n_runs = len(snap.results)
    n_methods = len({r.spec.method for r in snap.results})
    header = (
        "<header><h1>genseg-bench leaderboard</h1>"
        f'<p class="meta" id="source">{n_runs} runs of {n_methods} methods on {len(task_ids)} tasks, '
        f"from {escape(snap.description)}. {escape(rep.EMPTY_POLICY)}</p>"
        f'<p class="note" id="stats-note">{escape(STATS_NOTE)}</p></header>'
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>genseg-bench leaderboard</title><style>{CSS}</style></head><body>"
        f"{header}{_filter_form(snap, f)}<main>{''.join(sections)}</main>"
        f"<script>{SCRIPT}</script></body></html>"
    )
