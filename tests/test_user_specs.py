"""A user's own spec folder (GENSEG_BENCH_SPECS): validated as the shipped specs, never written into the package."""

from __future__ import annotations

from pathlib import Path

import pytest

from genseg_bench.catalog import SPECS_ENV, Catalog
from genseg_bench.errors import SpecError

MINE = """
[[method]]
name = "unet-rot10"
extends = "unet"
description = "UNet with rotation of at most 10 degrees."
[method.config]
augment = ["rotate"]
rotate_degrees = 10.0
"""


def test_a_user_method_extends_a_shipped_one(tmp_path: Path) -> None:
    (tmp_path / "mine.toml").write_text(MINE)
    spec = Catalog.load(user_dirs=[tmp_path]).method("unet-rot10")
    assert spec.kind == "supervised" and spec.config == {"augment": ["rotate"], "rotate_degrees": 10.0}
    assert "unet-rot10" not in Catalog.load(user_dirs=[]).methods


def test_the_environment_variable_names_the_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mine.toml").write_text(MINE)
    monkeypatch.setenv(SPECS_ENV, str(tmp_path))
    assert "unet-rot10" in Catalog.load().methods
    monkeypatch.setenv(SPECS_ENV, str(tmp_path / "nope"))
    with pytest.raises(SpecError, match="not a folder"):
        Catalog.load()


def test_a_name_defined_twice_names_both_files(tmp_path: Path) -> None:
    (tmp_path / "clash.toml").write_text(MINE.replace("unet-rot10", "unet-combine"))
    with pytest.raises(SpecError, match="defined twice") as err:
        Catalog.load(user_dirs=[tmp_path])
    assert "clash.toml" in str(err.value) and "supervised.toml" in str(err.value)


def test_a_broken_user_entry_is_an_error_naming_its_file(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text(MINE.replace('augment = ["rotate"]', 'augment = ["shear"]'))
    with pytest.raises(SpecError, match="shear") as err:
        Catalog.load(user_dirs=[tmp_path])
    assert "bad.toml" in str(err.value)
