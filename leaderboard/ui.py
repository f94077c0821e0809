"""The leaderboard's Gradio front end: tabs, filters, the ranked table, curves, About and Submit.

Layout only: rows, filters and columns come from ``board.py``, plots from
``plots.py``, the results from a :class:`~.data.DataSource`. Every handler
reads the source's current snapshot, so a refreshed Hub dataset shows up on
the next page load. A page load also reads the filters from the URL
(``?task=synthetic&backbone=unet&q=genseg&size=16,32&columns=rank,method,score``),
so a filtered view can be linked to. A failing handler logs its traceback
(logger ``genseg_bench.leaderboard_app.ui``) and shows the visitor a one-line
error instead of a spinner.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import gradio as gr
import pandas as pd
from gradio.components.plot import PlotData

from genseg_bench.metric_policy import EMPTY_POLICY

from .board import (
    COLUMN_NAMES,
    COLUMNS,
    DEFAULT_COLUMNS,
    STATS_NOTE,
    Choices,
    CurvePanel,
    Filters,
    RowCache,
    choices,
    curve_panels,
    efficiency_rows,
    records_csv,
    unknown_tasks,
)
from .data import DataSource, Snapshot
from .plots import PlotCache

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

AUTO_BASE = "auto"
NUMERIC = {c.name for c in COLUMNS if c.numeric}
# shown rounded in the table; the CSV download keeps full precision
ROUND = {"mean": 4, "std": 4, "Δ paper": 3}
SIGNIFICANT = {"p", "p Holm"}

SUBMIT_MD = """
## Submitting a method

A new method is one Python class (`genseg_bench.methods.base.Method`, with one `fit`
method). genseg-bench runs it on the same data, validation split, iteration budget and
checkpoint rule as every baseline, scores it on the test sets, and packs the results.

```bash
pip install genseg-bench                                   # from its repository
genseg-bench run --suite synthetic --methods your-method   # every task, size and seed of the suite
genseg-bench submit --method your-method --suite synthetic # check the runs, write submissions/<name>/
genseg-bench submit --method your-method --suite synthetic --push --repo ORG/NAME
```

`genseg-bench submit` refuses results that do not cover the suite cleanly and lists every
problem at once: a missing size or seed, a failed run, data whose fingerprint differs from
the one the suite pins, results of uncommitted code (unless `--allow-dirty`), runs of
different method configurations. It writes `results.parquet` (one row per run and test
set, per-case scores), `tasks.json` and `manifest.json` (suite, profile, data fingerprints,
git commits, file hashes). `--push` opens a pull request on the results dataset named by
`--repo` (the one this leaderboard reads); once it is merged the submission appears here
at the next refresh. The repository's `docs/submitting.md` has the `Method` interface and
a worked example.
"""


def logged(fn: Callable[P, R]) -> Callable[P, R]:
    """Log a handler's failure with its traceback and show the visitor a short message."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:
            log.exception("leaderboard handler %s failed", fn.__name__)
            raise gr.Error(f"{type(exc).__name__}: {exc}") from exc

    return wrapper


class Downloads:
    """CSV files for the download button, in a folder of their own, named by content, at most ``keep``."""

    def __init__(self, folder: Path | None = None, keep: int = 32) -> None:
        self.folder = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="genseg-leaderboard-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self._lock = threading.Lock()

    def write(self, text: str) -> Path:
        path = self.folder / f"genseg-bench-leaderboard-{hashlib.sha256(text.encode()).hexdigest()[:12]}.csv"
        with self._lock:
            if not path.exists():
                path.write_text(text, encoding="utf-8")
            path.touch()
            files = sorted(self.folder.glob("*.csv"), key=lambda p: p.stat().st_mtime_ns)
            for old in files[: max(0, len(files) - self.keep)]:
                if old != path:
                    old.unlink(missing_ok=True)
        return path


def _shown(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column in ROUND:
        return round(float(value), ROUND[column])
    if column in SIGNIFICANT:
        return float(f"{value:.3g}")
    return value


def display_frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """The table as shown: the chosen columns in their fixed order, numbers rounded for reading."""
    cols = [c for c in COLUMN_NAMES if c in columns] or list(DEFAULT_COLUMNS)
    return pd.DataFrame([[_shown(c, r[c]) for c in cols] for r in rows], columns=cols)


def _datatypes(columns: list[str]) -> list[str]:
    return ["number" if c in NUMERIC else "str" for c in columns]


def filters_of(
    query: str,
    tasks: list[str],
    organs: list[str],
    modalities: list[str],
    dims: list[str],
    sizes: list[str],
    backbones: list[str],
    kinds: list[str],
) -> Filters:
    return Filters(
        query=query or "",
        tasks=tuple(tasks or ()),
        organs=tuple(organs or ()),
        modalities=tuple(modalities or ()),
        dims=tuple(dims or ()),
        sizes=tuple(int(s) for s in sizes or ()),
        backbones=tuple(backbones or ()),
        kinds=tuple(kinds or ()),
    )


def header_md(snap: Snapshot) -> str:
    n_methods = len({r.spec.method for r in snap.results})
    n_tasks = len({r.spec.task for r in snap.results})
    unknown = unknown_tasks(snap)
    note = f" Tasks without specs in the source (not shown): {', '.join(unknown)}." if unknown else ""
    return (
        "# genseg-bench leaderboard\n"
        "Medical image segmentation with very few labelled images, ranked per task, test set and "
        "training size beside the GenSeg paper's numbers. "
        f"{len(snap.results)} runs of {n_methods} methods on {n_tasks} tasks, from {snap.description}.{note}"
    )


def about_md(snap: Snapshot) -> str:
    cols = "\n".join(f"| {c.name} | {c.help} |" for c in COLUMNS)
    return f"""
## How the numbers are made

**Metric.** Each task has one metric: Dice, or Jaccard for skin lesions, computed per test
case. {EMPTY_POLICY} A run's score on a test set is the mean over its cases; the table shows
the mean ± sample standard deviation (ddof = 1) of that score over the training seeds
(three by default), and how many seeds succeeded.

**Training size n.** n is the number of labelled images a method may use, all of them: the
validation cases that pick the checkpoint (and that GenSeg's architecture level trains on)
are carved out of those n, 80:20 with at least one validation case.

**Budgets.** Every method of a grid gets the same profile: image side, iterations, batch
size, validation interval and learning rates (`smoke` for tests, `quick` for the synthetic
tasks, `cpu` for real numbers on a small CPU, `paper` for the paper's budget on a GPU). The
same number of iterations is not the same amount of data: per update a supervised
baseline's segmenter sees one batch of real images, GenSeg's a batch of generated and a
batch of real ones.

**Images seen.** The number of images the segmenter processed in training: real,
augmented and generated images, counted each time one went through the segmenter, as
recorded in each run's budget (mean over seeds). It tells a gain of generation from a gain
of more batches; the `real x2` baselines see as many images as GenSeg, none generated.

**Ranks and separability.** {STATS_NOTE}

**Filters.** Task, organ, modality and 2D/3D choose tasks; training size chooses tables;
backbone and method kind choose which methods are ranked (ranks and tests are computed
among them). The search box only hides rows: every word must appear in the method,
backbone, kind or task.

**Sample efficiency.** Score against training-set size (log axis) with ± std bands. The
data-efficiency factor answers: at each size n where the base method was run, how many
labels does a method need to reach the base's score there? factor = n / labels needed,
read off the method's curve by linear interpolation of the score on the log-size axis;
≥ and < are bounds outside the measured sizes, never extrapolations. The default base is
the weakest method at the largest shared size.

**Columns.**

| column | meaning |
| --- | --- |
{cols}

Source: {snap.description}. Everything here is computed by genseg-bench's own
`report.aggregate`, `report.paired_tests` and `curves` on the results, so it agrees with
`genseg-bench report`.
"""


def _plot_value(png: bytes) -> PlotData:
    """A rendered PNG as ``gr.Plot``'s matplotlib value (the picture is drawn and cached by us)."""
    return PlotData(type="matplotlib", plot="data:image/png;base64," + base64.b64encode(png).decode())


def panel_names(panels: list[CurvePanel]) -> list[str]:
    """The test set of each panel, with its profile and budget when the test set has several panels."""
    count: dict[str, int] = {}
    for p in panels:
        count[p.test_set] = count.get(p.test_set, 0) + 1
    return [
        p.test_set if count[p.test_set] == 1 else f"{p.test_set} [{p.profile}, {p.budget}]" for p in panels
    ]


def _query_values(params: Mapping[str, str], name: str, allowed: list[str]) -> list[str]:
    """Comma-separated values of one URL parameter that the filter offers (unknown ones are dropped)."""
    raw = params.get(name, "")
    want = [v.strip() for v in raw.split(",") if v.strip()]
    return [v for v in want if v in allowed]


def build_app(
    source: DataSource,
    plots: PlotCache | None = None,
    downloads: Downloads | None = None,
) -> gr.Blocks:
    """The whole leaderboard as a ``gr.Blocks`` (not launched)."""
    plots = plots or PlotCache()
    downloads = downloads or Downloads()
    rows_cache = RowCache()
    snap0 = source.get()
    ch0 = choices(snap0)

    def table_outputs(snap: Snapshot, f: Filters, columns: list[str]) -> tuple[Any, ...]:
        rows = rows_cache.rows(snap, f)
        frame = display_frame(rows, columns)
        csv = downloads.write(records_csv(rows, COLUMN_NAMES))
        count = f"{len(rows)} of {len(rows_cache.rows(snap))} rows."
        return (
            gr.Dataframe(value=frame, datatype=_datatypes(list(frame.columns))),  # type: ignore[arg-type]
            csv,
            count,
        )

    def panels_for(snap: Snapshot, task_id: str, base: str, methods: list[str]) -> list[CurvePanel]:
        task = snap.tasks.get(task_id)
        if task is None:
            return []
        return curve_panels(task, snap.results, methods or None, None if base in ("", AUTO_BASE) else base)

    def curve_outputs(
        snap: Snapshot, task_id: str, test_set: str, base: str, methods: list[str]
    ) -> tuple[Any, ...]:
        ch = choices(snap)
        if task_id not in ch.curve_tasks:
            task_id = ch.curve_tasks[0] if ch.curve_tasks else ""
        panels = panels_for(snap, task_id, base, methods)
        names = panel_names(panels)
        panel = next((p for p, n in zip(panels, names, strict=True) if n == test_set), None)
        if panel is None and panels:
            panel = panels[0]
        task_methods = sorted({r.spec.method for r in snap.results if r.spec.task == task_id})
        base_choices = [("weakest method (auto)", AUTO_BASE), *((m, m) for m in task_methods)]
        if panel is None:
            plot, factors, caption = None, pd.DataFrame(), "No task has results at two training sizes yet."
        else:
            title = f"{task_id}: {panel.test_set} ({panel.profile} profile, {panel.budget})"
            plot = _plot_value(plots.get(panel.curves, title))
            factors = pd.DataFrame(efficiency_rows(panel))
            caption = (
                f"**{task_id}**, test set **{panel.test_set}**, profile {panel.profile} ({panel.budget}): "
                f"{panel.curves[0].metric if panel.curves else ''} vs training-set size, mean ± std over "
                "seeds. Data-efficiency factor of each method over "
                f"**{panel.base}**: how many times fewer labels it needs to reach {panel.base}'s score."
            )
        return (
            gr.Dropdown(choices=ch.curve_tasks, value=task_id or None),
            gr.Dropdown(choices=names, value=names[panels.index(panel)] if panel else None),
            gr.Dropdown(
                choices=base_choices, value=base if base in dict(base_choices).values() else AUTO_BASE
            ),
            gr.Dropdown(choices=task_methods, value=[m for m in methods if m in task_methods]),
            plot,
            factors,
            caption,
        )

    with gr.Blocks(title="genseg-bench leaderboard", analytics_enabled=False) as demo:
        header = gr.Markdown(header_md(snap0), elem_id="header")
        with gr.Tabs():
            with gr.Tab("Leaderboard", id="board"):
                search = gr.Textbox(
                    label="Search",
                    placeholder="method, backbone, kind or task (every word must match)",
                    elem_id="search",
                )
                with gr.Row():
                    f_task = gr.Dropdown(
                        ch0.tasks, value=[], multiselect=True, label="task", elem_id="f-task"
                    )
                    f_organ = gr.Dropdown(
                        ch0.organs, value=[], multiselect=True, label="organ", elem_id="f-organ"
                    )
                    f_modality = gr.Dropdown(
                        ch0.modalities, value=[], multiselect=True, label="modality", elem_id="f-modality"
                    )
                    f_dims = gr.Dropdown(
                        ch0.dims, value=[], multiselect=True, label="2D / 3D", elem_id="f-dims"
                    )
                with gr.Row():
                    f_size = gr.Dropdown(
                        [str(s) for s in ch0.sizes],
                        value=[],
                        multiselect=True,
                        label="training size",
                        elem_id="f-size",
                    )
                    f_backbone = gr.Dropdown(
                        ch0.backbones, value=[], multiselect=True, label="backbone", elem_id="f-backbone"
                    )
                    f_kind = gr.Dropdown(
                        ch0.kinds, value=[], multiselect=True, label="method kind", elem_id="f-kind"
                    )
                with gr.Accordion("Columns", open=False):
                    columns = gr.CheckboxGroup(
                        list(COLUMN_NAMES),
                        value=list(DEFAULT_COLUMNS),
                        label="columns shown",
                        elem_id="columns",
                    )
                first_rows = rows_cache.rows(snap0)
                count = gr.Markdown(f"{len(first_rows)} of {len(first_rows)} rows.", elem_id="row-count")
                table = gr.Dataframe(
                    value=display_frame(first_rows, list(DEFAULT_COLUMNS)),
                    datatype=_datatypes(list(DEFAULT_COLUMNS)),  # type: ignore[arg-type]
                    interactive=False,
                    wrap=True,
                    max_height=720,
                    label="ranked per task, test set and training size (click a header to sort)",
                    elem_id="board",
                )
                download = gr.DownloadButton(
                    "Download CSV (filtered rows, every column, full precision)",
                    value=downloads.write(records_csv(first_rows, COLUMN_NAMES)),
                    elem_id="download-csv",
                )
            with gr.Tab("Sample efficiency", id="curves"):
                with gr.Row():
                    c_task = gr.Dropdown(ch0.curve_tasks, label="task", elem_id="c-task")
                    c_set = gr.Dropdown([], label="test set", elem_id="c-set")
                    c_base = gr.Dropdown([], label="factor base", elem_id="c-base")
                    c_methods = gr.Dropdown([], multiselect=True, label="methods (empty: all)")
                c_caption = gr.Markdown(elem_id="c-caption")
                c_plot = gr.Plot(label="score vs training-set size", elem_id="c-plot")
                c_factors = gr.Dataframe(
                    interactive=False, label="data-efficiency factor", elem_id="c-factors"
                )
            with gr.Tab("About", id="about"):
                about = gr.Markdown(about_md(snap0), elem_id="about")
            with gr.Tab("Submit", id="submit"):
                gr.Markdown(SUBMIT_MD, elem_id="submit")

        board_inputs = [search, f_task, f_organ, f_modality, f_dims, f_size, f_backbone, f_kind]
        board_outputs = [table, download, count]
        curve_inputs = [c_task, c_set, c_base, c_methods]
        curve_outputs_ = [c_task, c_set, c_base, c_methods, c_plot, c_factors, c_caption]

        @logged
        def on_filter(*values: Any) -> tuple[Any, ...]:
            *filter_values, cols = values
            return table_outputs(source.get(), filters_of(*filter_values), cols)

        @logged
        def on_curves(task_id: str, test_set: str, base: str, methods: list[str]) -> tuple[Any, ...]:
            return curve_outputs(source.get(), task_id, test_set, base, methods or [])

        @logged
        def on_load(request: gr.Request) -> tuple[Any, ...]:
            snap = source.get()
            ch: Choices = choices(snap)
            params = dict(request.query_params) if request is not None else {}
            picked = {
                "task": _query_values(params, "task", ch.tasks),
                "organ": _query_values(params, "organ", ch.organs),
                "modality": _query_values(params, "modality", ch.modalities),
                "dims": _query_values(params, "dims", ch.dims),
                "size": _query_values(params, "size", [str(s) for s in ch.sizes]),
                "backbone": _query_values(params, "backbone", ch.backbones),
                "kind": _query_values(params, "kind", ch.kinds),
            }
            q = params.get("q", "")
            cols = _query_values(params, "columns", list(COLUMN_NAMES)) or list(DEFAULT_COLUMNS)
            f = filters_of(q, *picked.values())
            dropdowns = [
                gr.Dropdown(choices=opts, value=picked[name])
                for name, opts in (
                    ("task", ch.tasks),
                    ("organ", ch.organs),
                    ("modality", ch.modalities),
                    ("dims", ch.dims),
                    ("size", [str(s) for s in ch.sizes]),
                    ("backbone", ch.backbones),
                    ("kind", ch.kinds),
                )
            ]
            curve_task = params.get("curve", "")
            return (
                header_md(snap),
                about_md(snap),
                q,
                *dropdowns,
                cols,
                *table_outputs(snap, f, cols),
                *curve_outputs(snap, curve_task, "", AUTO_BASE, []),
            )

        # gradio's textbox fires `input` on key presses only (not on paste); `change` catches every edit
        search.change(on_filter, [*board_inputs, columns], board_outputs)
        for comp in [*board_inputs[1:], columns]:
            comp.input(on_filter, [*board_inputs, columns], board_outputs)
        for comp in curve_inputs:
            comp.input(on_curves, curve_inputs, curve_outputs_)
        demo.load(
            on_load,
            None,
            [header, about, *board_inputs, columns, *board_outputs, *curve_outputs_],
            show_progress="minimal",
        )
    return demo


def launch(
    source: DataSource,
    host: str = "127.0.0.1",
    port: int = 7860,
    block: bool = True,
    quiet: bool = False,
) -> gr.Blocks:
    """Build the app and serve it on ``host:port`` (``block=False`` returns at once, for tests)."""
    demo = build_app(source)
    demo.queue(default_concurrency_limit=4)
    demo.launch(
        server_name=host,
        server_port=port,
        show_error=True,
        prevent_thread_lock=not block,
        quiet=quiet,
        ssr_mode=False,
        footer_links=["gradio"],
    )
    return demo
