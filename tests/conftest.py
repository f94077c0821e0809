"""Shared fixtures: the shipped catalog, a session-wide prepared store, real-data location."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from genseg_bench.catalog import Catalog
from genseg_bench.data.store import Store

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("GENSEG_BENCH_DATA", REPO.parent / "shared" / "data"))
"""Real data sets (kvasir-seg/, cvc-clinicdb/, msd-hippocampus/): ``$GENSEG_BENCH_DATA`` or ``../shared/data``."""


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return Catalog.load()


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """One store for the session: the synthetic sets are generated once."""
    return Store(tmp_path_factory.mktemp("store"))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"real data not available: {SHARED_DATA} is absent (set GENSEG_BENCH_DATA to a folder holding "
            "kvasir-seg/, cvc-clinicdb/ and msd-hippocampus/)"
        )
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread for a module's tests (``pytestmark = pytest.mark.usefixtures("one_thread")``).

    The test machine's 2 cores are shared; oversubscribed threads made the training tests ~5x slower.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
