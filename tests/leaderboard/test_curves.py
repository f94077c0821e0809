"""Sample-efficiency curves and the data-efficiency factor, checked against hand-computed values."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genseg_bench import report as rep
from genseg_bench.catalog import Catalog
from genseg_bench.cli import app
from genseg_bench.curves import Curve, CurvePoint, curves_from_rows, efficiency, labels_needed, plot_curves
from genseg_bench.specs import RunResult


def curve(method: str, pts: dict[int, float]) -> Curve:
    return Curve(method, "t", "dice", [CurvePoint(n, m, 0.0, 3) for n, m in sorted(pts.items())])


def test_factor_interpolates_on_the_log_size_axis() -> None:
    a = curve("a", {10: 0.5, 100: 0.7})
    b = curve("b", {10: 0.3, 100: 0.5, 1000: 0.6})
    e = efficiency(a, b)
    # b(10) = 0.3 < a(10): a reaches it at (or below) its smallest size -> factor >= 10 / 10
    assert (e[0].size, e[0].bound, e[0].labels_a, e[0].factor) == (10, ">=", 10.0, 1.0)
    # b(100) = 0.5 = a(10) exactly -> 100 / 10 = 10
    assert (e[1].bound, e[1].factor) == (">=", 10.0)
    # b(1000) = 0.6: halfway from 0.5 to 0.7 -> log10 n = 1.5, n = 31.62..., factor 1000 / 31.62 = 31.62
    assert e[2].bound == "="
    assert e[2].labels_a == pytest.approx(10**1.5) and e[2].factor == pytest.approx(10**1.5)


def test_paper_fetreg_example_is_a_factor_of_ten() -> None:
    # "GenSeg-DeepLab achieved 0.51 with 50 examples, DeepLab needed 500" (Fig. 4a)
    genseg = curve("genseg-deeplab", {25: 0.40, 50: 0.51, 100: 0.55})
    deeplab = curve("deeplab", {50: 0.31, 500: 0.51})
    e = efficiency(genseg, deeplab)[1]
    assert e.bound == "=" and e.labels_a == pytest.approx(50.0) and e.factor == pytest.approx(10.0)
    # and DeepLab at 50 (0.31) is reached by GenSeg below its smallest measured size: only a bound
    assert efficiency(genseg, deeplab)[0].bound == ">="


def test_unreached_score_is_an_upper_bound_and_interpolation_is_geometric() -> None:
    a = curve("a", {8: 0.2, 32: 0.4})
    assert labels_needed(a.points, 0.9) == (32.0, "<")
    n, bound = labels_needed(a.points, 0.3)  # halfway in score -> geometric mean of 8 and 32
    assert bound == "=" and n == pytest.approx(math.sqrt(8 * 32))
    e = efficiency(a, curve("b", {64: 0.9}))[0]
    assert e.factor_text() == "< 2.00×" and e.labels_text() == "> 32.0"


def test_first_crossing_counts_on_a_non_monotone_curve() -> None:
    a = curve("a", {10: 0.2, 20: 0.6, 40: 0.5, 80: 0.7})
    n, bound = labels_needed(a.points, 0.55)
    assert bound == "=" and 10 < n < 20


def test_curves_from_report_rows_and_plot_files(
    make_result: Callable[..., RunResult], tmp_path: Path
) -> None:
    task = Catalog.load().task("synthetic")
    res = [
        make_result("synthetic", m, n, s, {"synthetic-a": [base + n / 100 + s / 100]})
        for m, base in (("unet", 0.5), ("deeplab", 0.4))
        for n in (8, 16, 32)
        for s in (0, 1, 2)
    ]
    cs = curves_from_rows(rep.aggregate(task, res), ["unet", "deeplab"])
    assert [c.method for c in cs] == ["unet", "deeplab"]
    assert [p.size for p in cs[0].points] == [8, 16, 32]
    assert cs[0].points[0].mean == pytest.approx(0.5 + 0.08 + 0.01) and cs[0].points[0].std == pytest.approx(
        0.01
    )
    files = plot_curves(cs, "synthetic", tmp_path / "c")
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = (tmp_path / "c.svg").read_text()
    assert "<svg" in svg and "unet" in svg and "deeplab" in svg and set(files) == {"png", "svg"}


def test_curves_command_prints_the_factor_table(lb_results: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app,
        ["curves", "--task", "synthetic", "--methods", "toy-threshold,unet", "--results", str(lb_results),
         "--out", str(tmp_path)],
        env={"COLUMNS": "200"},
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (tmp_path / "synthetic__synthetic-a.png").is_file() and (
        tmp_path / "synthetic__synthetic-a.svg"
    ).is_file()
    assert "data-efficiency factor over unet" in res.output and "×" in res.output
    bad = CliRunner().invoke(app, ["curves", "--task", "synthetic", "--methods", "nope,unet",
                                   "--results", str(lb_results), "--out", str(tmp_path)])  # fmt: skip
    assert bad.exit_code == 2 and "nope" in bad.output


def test_plots_use_no_pyplot_and_no_backend_switch(tmp_path: Path) -> None:
    """In a fresh process: drawing and saving curves leaves pyplot unimported and the backend untouched."""
    import subprocess
    import sys

    code = (
        "import sys, matplotlib\n"
        "before = matplotlib.rcParams._get_backend_or_none()\n"
        "from genseg_bench.curves import Curve, CurvePoint, plot_curves\n"
        "c = Curve('m', 't', 'dice', [CurvePoint(8, 0.5, 0.1, 3), CurvePoint(16, 0.6, 0.1, 3)])\n"
        f"out = plot_curves([c], 'title', {str(tmp_path / 'p')!r})\n"
        "assert out['png'][:4] == b'\\x89PNG' and b'<svg' in out['svg']\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
        "assert matplotlib.rcParams._get_backend_or_none() == before, 'the backend was switched'\n"
        "assert matplotlib.rcParams['svg.fonttype'] != 'none', 'an SVG setting leaked out'\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "<text" in (tmp_path / "p.svg").read_text()  # SVG text stays text


def test_plot_cache_is_bounded_and_keyed_on_content() -> None:
    from genseg_bench.leaderboard_app.plots import PlotCache

    cache = PlotCache(maxsize=2)
    a = [curve("a", {8: 0.5, 16: 0.6})]
    b = [curve("b", {8: 0.5, 16: 0.6})]
    png = cache.get(a, "t")
    assert png[:4] == b"\x89PNG" and cache.renders == 1
    assert (
        cache.get([curve("a", {8: 0.5, 16: 0.6})], "t") == png and cache.renders == 1
    )  # equal content: a hit
    cache.get(a, "another title")
    cache.get(b, "t")
    assert cache.renders == 3 and len(cache) == 2  # the oldest (a, "t") was dropped
    cache.get(a, "t")
    assert cache.renders == 4
    with pytest.raises(ValueError, match="maxsize"):
        PlotCache(maxsize=0)


def test_factor_table_pairs_curves_of_one_profile_only(
    make_result: Callable[..., RunResult], tmp_path: Path
) -> None:
    """Smoke and quick results in one folder: each method is scored against the base of its own profile."""
    from genseg_bench.results import write_result

    results = tmp_path / "results"
    base = {"smoke": (0.10, 0.20, 0.30), "quick": (0.50, 0.60, 0.70)}
    for profile, scores in base.items():
        for size, score in zip((10, 20, 40), scores, strict=True):
            for seed in (0, 1):
                write_result(results, make_result("synthetic", "unet", size, seed, {"synthetic-a": [score]},
                                                  profile=profile))  # fmt: skip
    for size, score in ((10, 0.55), (20, 0.65), (40, 0.75)):  # quick deeplab: a bit above quick unet
        for seed in (0, 1):
            write_result(results, make_result("synthetic", "deeplab", size, seed, {"synthetic-a": [score]},
                                              profile="quick", backbone="deeplabv3plus", method_hash="m1"))  # fmt: skip
    res = CliRunner().invoke(
        app,
        ["curves", "--task", "synthetic", "--methods", "deeplab,unet", "--results", str(results),
         "--out", str(tmp_path / "plots")],
        env={"COLUMNS": "240"},
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = [line for line in res.output.splitlines() if "deeplab" in line and "│" in line]
    assert len(rows) == 3, res.output  # one per size of quick unet; none against smoke unet
    assert all("quick" in r and "smoke" not in r for r in rows)
    assert all("0.1" not in r.split("│")[4] for r in rows)  # the smoke base's scores never appear as a target
