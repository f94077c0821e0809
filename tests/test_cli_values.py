"""Every CLI value is checked before work starts: one error naming the option and its valid range.

Each bad value must fail with exit code 2 before any data is read or any model
trained, so the result folder and the store stay empty.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genseg_bench.catalog import Catalog
from genseg_bench.cli import app
from genseg_bench.data.store import Store
from genseg_bench.errors import DataError
from genseg_bench.profiles import get_profile
from genseg_bench.values import ValueCheckError

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, " ".join(res.output.split())  # rich wraps long messages


def run_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["run", "--task", "synthetic", "--methods", "unet", "--sizes", "8", "--seeds", "0",
            "--profile", "smoke", "--device", "cpu", "--no-report",
            "--results", str(tmp_path / "results"), "--store", str(tmp_path / "store"), *extra]  # fmt: skip


def nothing_written(tmp_path: Path) -> bool:
    return not (tmp_path / "results").exists() and not (tmp_path / "store").exists()


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--sizes", "-3", "--sizes takes integers of 1 or more; got -3"),
        ("--sizes", "0", "--sizes takes integers of 1 or more; got 0"),
        ("--sizes", "8,x", "--sizes takes comma-separated integers"),
        ("--seeds", "", "--seeds is empty"),
        ("--seeds", " , ", "--seeds is empty"),
        ("--seeds", "-1", "--seeds takes integers from 0 to 4294967295; got -1"),
        ("--iterations", "0", "--iterations must be 1 or more; got 0"),
        ("--image-size", "0", "--image-size must be 8 or more; got 0"),
        ("--image-size", "-64", "--image-size must be 8 or more; got -64"),
        ("--device", "tpu", "--device must be auto, cpu, cuda, cuda:N (N a GPU index) or mps; got 'tpu'"),
        ("--device", "cuda:x", "--device must be auto, cpu, cuda"),
    ],
)
def test_bad_run_values_fail_before_any_work(tmp_path: Path, option: str, value: str, expected: str) -> None:
    code, out = invoke(*run_args(tmp_path, option, value))
    assert code == 2, out
    assert expected in out and "Traceback" not in out
    assert nothing_written(tmp_path)


def test_image_size_too_small_for_deeplab_names_the_multiple(tmp_path: Path) -> None:
    args = run_args(tmp_path, "--image-size", "8")
    args[args.index("unet")] = "unet,deeplab"
    code, out = invoke(*args)
    assert code == 2, out
    assert "--image-size 8 does not fit method 'deeplab'" in out
    assert "multiple of 16, e.g. --image-size 16 or 32" in out
    assert not list((tmp_path / "results").rglob("*.json"))


def test_missing_cuda_device_is_named(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, out = invoke(*run_args(tmp_path, "--device", "cuda:1"))
    assert code == 2 and "--device cuda:1: CUDA is not available here" in out
    assert nothing_written(tmp_path)


def test_duplicate_sizes_and_seeds_run_once_with_a_note(tmp_path: Path, store: Store) -> None:
    args = run_args(tmp_path, "--iterations", "2")
    args[args.index("--store") + 1] = str(store.root)  # the session's store: synthetic data generated once
    args[args.index("8")] = "8,8"
    args[args.index("0")] = "0,0"
    code, out = invoke(*args)
    assert code == 0, out
    assert "--sizes lists 8 more than once; each run is done once" in out
    assert "--seeds lists 0 more than once" in out
    assert "1 run(s) done" in out
    assert len(list((tmp_path / "results" / "synthetic").glob("*.json"))) == 1


def test_library_grid_rejects_bad_values_before_reading_data(tmp_path: Path) -> None:
    import torch

    from genseg_bench.runner import run_grid

    cpu = torch.device("cpu")
    catalog, store = Catalog.load(), Store(tmp_path / "store")
    smoke = get_profile("smoke")
    cases = [
        ([-3], [0], smoke, "sizes takes integers of 1 or more"),
        ([8, 8], [0], smoke, "sizes lists 8 more than once"),
        ([8], [], smoke, "seeds is empty"),
        ([8], [1, 1], smoke, "seeds lists 1 more than once"),
        ([8], [0], get_profile("smoke", iterations=0), "iterations must be 1 or more"),
        ([8], [0], get_profile("smoke", image_size=0), "image_size must be 8 or more"),
    ]
    for sizes, seeds, profile, message in cases:
        with pytest.raises(ValueCheckError, match=message):
            run_grid(catalog, "synthetic", ["unet"], sizes, seeds, profile, store, tmp_path / "r", cpu)
    assert not store.root.exists() and not (tmp_path / "r").exists()


def test_prepare_size_is_checked_before_reading(tmp_path: Path) -> None:
    code, out = invoke("data", "prepare", "kvasir", "--from", str(tmp_path), "--size", "0",
                       "--store", str(tmp_path / "store"))  # fmt: skip
    assert code == 2 and "--size must be 8 or more; got 0" in out and "Traceback" not in out
    assert not (tmp_path / "store").exists()
    with pytest.raises(DataError, match="size must be 8 or more"):
        Store(tmp_path / "store").prepare("synthetic-a", None, 4)


def test_prepare_3d_without_size_uses_the_tasks_cube(tmp_path: Path) -> None:
    code, out = invoke("data", "prepare", "msd-hippocampus", "--from", str(tmp_path / "nowhere"),
                       "--store", str(tmp_path / "store"))  # fmt: skip
    assert "no --size given: msd-hippocampus at 64 (the image size of task(s) hippocampus-3d" in out
    assert code == 2 and "nowhere" in out  # then the missing folder, named
    code, out = invoke("data", "prepare", "kvasir", "--from", str(tmp_path / "nowhere"),
                       "--store", str(tmp_path / "store"))  # fmt: skip
    assert "no --size given: kvasir at 256" in out


def test_prepared_set_gets_the_users_umask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stores are created with the user's umask (0o022 here), not mkdtemp's 0700."""
    import dataclasses
    import os

    import numpy as np

    from genseg_bench.data import store as store_mod
    from genseg_bench.data.sources import get_source
    from genseg_bench.data.types import Case

    def two_cases(root: Path) -> object:  # a two-case source: the store's writing is what is tested
        blank = np.zeros((12, 12), dtype=bool)
        return iter([Case(f"c{i}", np.full((12, 12, 3), 9 * i, np.uint8), blank) for i in range(2)])

    info = dataclasses.replace(get_source("kvasir"), read=two_cases)
    monkeypatch.setattr(store_mod, "get_source", lambda source: info)
    old = os.umask(0o022)
    try:
        p = Store(tmp_path / "store").prepare("kvasir", tmp_path, 16)
    finally:
        os.umask(old)
    assert p.path.stat().st_mode & 0o777 == 0o755
    assert (p.path / "images.npy").stat().st_mode & 0o777 == 0o644
    assert json.loads((p.path / "meta.json").read_text())["size"] == 16 and p.case_ids == ["c0", "c1"]
    assert [c.name for c in p.path.parent.iterdir()] == ["16"]  # no temporary folder left
