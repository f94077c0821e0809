"""The leaderboard's model: ranks, Holm-corrected neighbour tests, rows, filters, CSV (no browser, no gradio)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from scipy import stats

from genseg_bench.catalog import Catalog
from genseg_bench.leaderboard_app.board import (
    COLUMN_NAMES,
    Filters,
    RowCache,
    backbones_of,
    board_rows,
    choices,
    curve_panels,
    holm,
    records_csv,
    task_tables,
)
from genseg_bench.leaderboard_app.data import Snapshot
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


def test_rows_filters_and_search(
    three_methods: list[RunResult], make_result: Callable[..., RunResult]
) -> None:
    catalog = Catalog.load()
    extra = [
        make_result("synthetic-ood", "a", 16, s, {"synthetic-a": [0.8], "synthetic-b": [0.4 + s / 10]})
        for s in range(2)
    ]
    snap = Snapshot(three_methods + extra, dict(catalog.tasks), "test data")
    rows = board_rows(snap)
    cells = [(r["task"], r["test set"], r["n"], r["rank"], r["method"]) for r in rows]
    assert cells == [
        ("synthetic", "synthetic-a", 16, 1, "a"),
        ("synthetic", "synthetic-a", 16, 2, "c"),
        ("synthetic", "synthetic-a", 16, 3, "b"),
        ("synthetic-ood", "synthetic-a", 16, 1, "a"),
        ("synthetic-ood", "synthetic-b", 16, 1, "a"),
    ]
    first = rows[0]
    assert first["score"] == "0.910 ± 0.010" and first["mean"] == pytest.approx(0.91)
    assert first["vs next"].startswith("≻ c (p Holm ") and first["kind"] == "supervised"
    assert first["dims"] == "2D" and first["seeds"] == 3 and set(first) == set(COLUMN_NAMES)
    # backbone re-ranks among the kept methods: c is first of the unet methods
    unet = board_rows(snap, Filters(backbones=("unet",)))
    assert [(r["rank"], r["method"]) for r in unet] == [(1, "c"), (2, "b")]
    # the search only hides rows: b keeps its rank of the full table
    assert [(r["rank"], r["method"]) for r in board_rows(snap, Filters(query="B UNET"))] == [(3, "b")]
    assert {r["task"] for r in board_rows(snap, Filters(tasks=("synthetic-ood",)))} == {"synthetic-ood"}
    assert board_rows(snap, Filters(sizes=(999,))) == []
    assert board_rows(snap, Filters(dims=("3D",))) == []
    assert board_rows(snap, Filters(kinds=("genseg",))) == []
    assert len(board_rows(snap, Filters(organs=("synthetic shapes",), modalities=("synthetic",)))) == 5
    ch = choices(snap)
    assert ch.tasks == ["synthetic", "synthetic-ood"] and ch.backbones == ["deeplabv3plus", "unet"]
    assert ch.dims == ["2D"] and ch.sizes == [16] and ch.kinds == ["supervised"] and ch.curve_tasks == []


def test_row_cache_ranks_once_per_snapshot_and_method_choice(
    three_methods: list[RunResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    import genseg_bench.leaderboard_app.board as board

    calls: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    real = board.ranked_rows

    def counting(snap: Snapshot, backbones: tuple[str, ...] = (), kinds: tuple[str, ...] = ()) -> list:  # type: ignore[type-arg]
        calls.append((backbones, kinds))
        return real(snap, backbones, kinds)

    monkeypatch.setattr(board, "ranked_rows", counting)
    snap = Snapshot(three_methods, dict(Catalog.load().tasks), "test data")
    cache = RowCache()
    assert cache.rows(snap) == board_rows(snap)
    assert cache.rows(snap, Filters(query="a")) == board_rows(snap, Filters(query="a"))
    assert cache.rows(snap, Filters(sizes=(16,))) == board_rows(snap, Filters(sizes=(16,)))
    assert len(calls) == 1 + 3  # the cache ranked once; board_rows three times
    cache.rows(snap, Filters(backbones=("unet",)))
    assert len(calls) == 5
    cache.rows(Snapshot(three_methods, dict(Catalog.load().tasks), "refreshed"))
    assert len(calls) == 6  # a new snapshot ranks again


def test_csv_keeps_full_precision_and_empty_cells(three_methods: list[RunResult]) -> None:
    import csv
    import io

    snap = Snapshot(three_methods, dict(Catalog.load().tasks), "test data")
    rows = board_rows(snap)
    text = records_csv(rows, COLUMN_NAMES)
    back = list(csv.DictReader(io.StringIO(text)))
    assert [r["method"] for r in back] == ["a", "c", "b"]
    assert float(back[1]["mean"]) == rows[1]["mean"]  # repr round-trips: no digits lost
    assert back[2]["vs next"] == "" and back[0]["paper"] == ""


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


def test_runs_of_two_profiles_are_ranked_in_separate_tables(make_result: Callable[..., RunResult]) -> None:
    """A quick-profile run never outranks, or is tested against, a cpu-profile run of another method."""
    quick = {"x": [0.9, 0.91, 0.92], "y": [0.5, 0.6, 0.55]}
    cpu = {"y": [0.7, 0.72, 0.71]}
    res = [
        make_result("synthetic", m, 16, s, {"synthetic-a": [v[s]]}, profile="quick")
        for m, v in quick.items()
        for s in range(3)
    ] + [
        make_result("synthetic", m, 16, s, {"synthetic-a": [v[s]]}, profile="cpu")
        for m, v in cpu.items()
        for s in range(3)
    ]
    tables = task_tables(Catalog.load().task("synthetic"), res, {})
    by_profile = {t.profile: t for t in tables}
    assert set(by_profile) == {"quick", "cpu"} and len(tables) == 2
    assert [(r.rank, r.row.method) for r in by_profile["quick"].rows] == [(1, "x"), (2, "y")]
    assert [r.row.method for r in by_profile["cpu"].rows] == ["y"]
    (alone,) = by_profile["cpu"].rows
    assert alone.rank == 1 and alone.p_next is None and alone.next_method is None
    assert by_profile["quick"].rows[1].row.mean == pytest.approx(0.55)
    assert by_profile["quick"].rows[0].p_next == pytest.approx(stats.ttest_rel(quick["x"], quick["y"]).pvalue)


def test_a_single_seed_row_shows_no_spread(make_result: Callable[..., RunResult]) -> None:
    """One seed has no standard deviation: the board says "(1 seed)" and leaves std empty, not a false 0."""
    res = [make_result("synthetic", "solo", 16, 0, {"synthetic-a": [0.7]})]
    res += [make_result("synthetic", "pair", 16, s, {"synthetic-a": [0.5 + s / 10]}) for s in (0, 1)]
    snap = Snapshot(res, dict(Catalog.load().tasks), "test data")
    by_method = {r["method"]: r for r in board_rows(snap)}
    assert by_method["solo"]["score"] == "0.700 (1 seed)" and by_method["solo"]["std"] is None
    assert by_method["pair"]["score"] == "0.550 ± 0.071" and by_method["pair"]["std"] == pytest.approx(
        0.0707, abs=1e-4
    )
