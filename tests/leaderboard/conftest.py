"""Fixtures of the leaderboard tests: real results from short runs, hand-made results, the outside package.

Real results come from one session-wide run: the outside package's toy method
over the whole ``synthetic`` suite (``genseg-bench run --suite``, smoke profile)
and UNet (smoke profile) on ``synthetic`` at two sizes and two seeds. Torch runs
single-threaded while they train: on a small shared CPU, intra-op threads
fighting over two cores make these tiny runs several times slower.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from genseg_bench.catalog import Catalog
from genseg_bench.data.store import Store
from genseg_bench.specs import RunResult, RunSpec, TestSetResult

OUTSIDE_PKG = Path(__file__).parent / "outside_pkg"
TOY = "toy-threshold"
TOY_ENTRY_POINT = f"{TOY} = genseg_toy_method:ThresholdMethod"


def install_toy_package(mp: pytest.MonkeyPatch, where: Path) -> None:
    """Make the outside package importable and register its entry point, as `pip install` would.

    A ``.dist-info`` folder with ``entry_points.txt`` on ``sys.path`` is all that
    ``importlib.metadata.entry_points`` looks for.
    """
    dist = where / "genseg_toy_method-0.1.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: genseg-toy-method\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[genseg_bench.methods]\n{TOY_ENTRY_POINT}\n")
    mp.syspath_prepend(str(where))
    mp.syspath_prepend(str(OUTSIDE_PKG))


@contextmanager
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def single_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture
def outside_pkg() -> Path:
    return OUTSIDE_PKG


@pytest.fixture
def toy_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    install_toy_package(monkeypatch, tmp_path / "site")
    return TOY


@pytest.fixture(scope="session")
def lb_results(tmp_path_factory: pytest.TempPathFactory, store: Store) -> Path:
    """A result folder of real runs (see the module docstring); read-only for the tests."""
    from genseg_bench.cli import app
    from genseg_bench.profiles import get_profile
    from genseg_bench.runner import run_grid

    results = tmp_path_factory.mktemp("lb-results")
    with pytest.MonkeyPatch.context() as mp, one_thread():
        install_toy_package(mp, tmp_path_factory.mktemp("site"))
        out = CliRunner().invoke(
            app,
            ["run", "--suite", "synthetic", "--methods", TOY, "--profile", "smoke", "--device", "cpu",
             "--results", str(results), "--store", str(store.root)],
        )  # fmt: skip
        assert out.exit_code == 0, out.output
        run_grid(
            Catalog.load(), "synthetic", ["unet"], [8, 16], [0, 1], get_profile("smoke"), store, results,
            torch.device("cpu"),
        )  # fmt: skip
    return results


def make_result_fn(
    task: str,
    method: str,
    size: int,
    seed: int,
    scores: dict[str, list[float]],
    backbone: str = "unet",
    status: str = "ok",
    git_commit: str = "0123abc",
    fingerprints: dict[str, str] | None = None,
    profile: str = "quick",
    method_hash: str = "m0",
    metric: str = "dice",
    kind: str = "supervised",
) -> RunResult:
    """A hand-made result with chosen scores (one test set per keyword), for exact expected numbers."""
    spec = RunSpec(
        task=task,
        method=method,
        train_size=size,
        seed=seed,
        profile=profile,
        task_hash="t0",
        method_hash=method_hash,
        profile_hash="p0",
        data_fingerprints=fingerprints or {"synthetic-a": "31f96f75f6850777"},
    )
    sets = {
        name: TestSetResult(
            case_ids=[f"c{i}" for i in range(len(v))],
            dice=v,
            jaccard=[d / (2 - d) for d in v],
            mean_dice=sum(v) / len(v),
            mean_jaccard=sum(d / (2 - d) for d in v) / len(v),
        )
        for name, v in scores.items()
    }
    extra: dict[str, Any] = {} if status == "ok" else {"error": "RuntimeError: boom"}
    return RunResult(
        run_id=spec.run_id,
        spec=spec,
        status=status,  # type: ignore[arg-type]
        metric=metric,  # type: ignore[arg-type]
        test_sets=sets if status == "ok" else {},
        versions={"genseg-bench": "0.1.0", "python": "3.11"},
        git_commit=git_commit,
        method_config={"name": method, "kind": kind, "backbone": backbone},
        **extra,
    )


@pytest.fixture
def make_result() -> Callable[..., RunResult]:
    """Hand-made results with chosen scores (one test set per keyword), for exact expected numbers."""
    return make_result_fn
