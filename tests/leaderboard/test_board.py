"""The leaderboard's model and page: ranks, Holm-corrected neighbour tests, filters (no browser needed)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from scipy import stats

from genseg_bench.catalog import Catalog
from genseg_bench.leaderboard_app.board import backbones_of, curve_panels, holm, task_tables
from genseg_bench.leaderboard_app.data import Snapshot
from genseg_bench.leaderboard_app.render import Filters, render_page
from genseg_bench.specs import RunResult


def test_holm_by_hand() -> None:
    # sorted p: 0.01 (x3 = 0.03), 0.02 (x2 = 0.04), 0.04 (x1 = 0.04, running max)
    assert holm([0.04, 0.01, None, 0.02]) == pytest.approx([0.04, 0.03, None, 0.04])  # type: ignore[arg-type]
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


@pytest.fixture
def three_methods(make_result: Callable[..., RunResult]) -> list[RunResult]:
    """a >> b by a consistent margin; b and c differ by noise only."""
    scores = {
        "a": [0.90, 0.91, 0.92],
        "b": [0.50, 0.60, 0.55],
        "c": [0.53, 0.58, 0.57],
    }
    backbone = {"a": "deeplabv3plus", "b": "unet", "c": "unet"}
    return [
        make_result("synthetic", m, 16, s, {"synthetic-a": [v[s]]}, backbone=backbone[m])
        for m, v in scores.items()
        for s in range(3)
    ]


def test_ranks_and_neighbour_separability(three_methods: list[RunResult]) -> None:
    task = Catalog.load().task("synthetic")
    (table,) = task_tables(task, three_methods, backbones_of(three_methods))
    assert [(r.rank, r.row.method) for r in table.rows] == [(1, "a"), (2, "c"), (3, "b")]
    p_ac = stats.ttest_rel([0.90, 0.91, 0.92], [0.53, 0.58, 0.57]).pvalue
    p_cb = stats.ttest_rel([0.53, 0.58, 0.57], [0.50, 0.60, 0.55]).pvalue
    adj = sorted([p_ac, p_cb])
    expect = {min(p_ac, p_cb): 2 * adj[0], max(p_ac, p_cb): max(2 * adj[0], adj[1])}
    a, c, b = table.rows
    assert a.p_next == pytest.approx(p_ac) and a.p_next_holm == pytest.approx(min(1, expect[p_ac]))
    assert c.p_next == pytest.approx(p_cb) and c.p_next_holm == pytest.approx(min(1, expect[p_cb]))
    assert a.separable_from_next is True and c.separable_from_next is False
    assert b.next_method is None and a.backbone == "deeplabv3plus"


def test_ties_share_a_rank_and_failed_methods_are_unranked(make_result: Callable[..., RunResult]) -> None:
    res = [make_result("synthetic", m, 16, s, {"synthetic-a": [0.5]}) for m in ("x", "y") for s in (0, 1)]
    res.append(make_result("synthetic", "z", 16, 0, {}, status="failed"))
    (table,) = task_tables(Catalog.load().task("synthetic"), res, {})
    assert [(r.rank, r.row.method) for r in table.rows] == [(1, "x"), (1, "y"), (None, "z")]
    assert table.rows[0].p_next is None  # identical differences: not testable


def test_page_filters_and_stats_note(
    three_methods: list[RunResult], make_result: Callable[..., RunResult]
) -> None:
    catalog = Catalog.load()
    extra = [
        make_result("synthetic-ood", "a", 16, s, {"synthetic-a": [0.8], "synthetic-b": [0.4 + s / 10]})
        for s in range(2)
    ]
    snap = Snapshot(three_methods + extra, dict(catalog.tasks), "test data")
    page = render_page(snap, Filters())
    assert "Holm" in page and "paired t-test" in page
    assert page.count('class="board"') == 3  # synthetic/a, synthetic-ood/a and /b
    only_unet = render_page(snap, Filters(backbone="unet"))
    assert 'data-method="a"' not in only_unet and 'data-method="b"' in only_unet
    assert "synthetic-ood" not in re.findall(r'data-task="([^"]+)"', only_unet)
    one_task = render_page(snap, Filters(task="synthetic-ood"))
    assert set(re.findall(r'<table class="board" data-task="([^"]+)"', one_task)) == {"synthetic-ood"}
    assert 'id="no-results"' in render_page(snap, Filters(size="999"))
    assert 'id="no-results"' in render_page(snap, Filters(dims="3"))
    assert 'id="no-results"' not in render_page(snap, Filters(organ="synthetic shapes", modality="synthetic"))


def test_curve_panels_use_the_weakest_method_as_default_base(make_result: Callable[..., RunResult]) -> None:
    res = [
        make_result("synthetic", m, n, s, {"synthetic-a": [lvl + n / 1000]})
        for m, lvl in (("strong", 0.8), ("weak", 0.5))
        for n in (8, 16, 32)
        for s in (0, 1)
    ]
    task = Catalog.load().task("synthetic")
    (panel,) = curve_panels(task, res)
    assert panel.base == "weak"
    assert all(e.method_a == "strong" and e.bound == ">=" for e in panel.factors)
    (panel,) = curve_panels(task, res, base="strong")
    assert panel.base == "strong" and all(e.bound == "<" for e in panel.factors)
