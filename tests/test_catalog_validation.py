"""Method specs are validated when the catalog loads: kinds, config keys and values, ops, backbones.

Each error names the TOML file and the valid choices, and ``genseg-bench methods``
prints it as one message (exit code 2), never a traceback or a recorded failed run.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genseg_bench import catalog as catalog_module
from genseg_bench.catalog import Catalog
from genseg_bench.errors import SpecError
from genseg_bench.methods.config import BUILTIN_CONFIGS, GenSegConfig, SupervisedConfig
from genseg_bench.methods.registry import BUILTIN_KINDS, config_model, method_class
from genseg_bench.models import backbones

REPO = Path(__file__).resolve().parents[1]
TASKS_DIR = REPO / "tasks"


def _methods_file(tmp_path: Path, body: str) -> Path:
    folder = tmp_path / "methods"
    folder.mkdir()
    (folder / "mine.toml").write_text(textwrap.dedent(body))
    return folder


def _load_error(tmp_path: Path, body: str) -> str:
    folder = _methods_file(tmp_path, body)
    with pytest.raises(SpecError) as err:
        Catalog.load(tasks_dir=TASKS_DIR, methods_dir=folder)
    message = str(err.value)
    assert str(folder / "mine.toml") in message
    return message


def test_shipped_specs_validate(catalog: Catalog) -> None:
    # every built-in kind has a shipped spec, and no shipped spec needs an outside package
    assert {m.kind for m in catalog.methods.values()} == set(BUILTIN_KINDS)


def test_unknown_config_key_names_the_file_and_the_valid_keys(tmp_path: Path) -> None:
    message = _load_error(
        tmp_path,
        """
        [[method]]
        name = "typo"
        kind = "genseg"
        description = "x"
        [method.config]
        gama = 2.0
        """,
    )
    assert "'typo'" in message and "'gama'" in message and "did you mean 'gamma'" in message
    assert all(key in message for key in GenSegConfig.model_fields)


def test_typo_in_an_extending_entry_names_that_entry(tmp_path: Path) -> None:
    message = _load_error(
        tmp_path,
        """
        [[method]]
        name = "base"
        kind = "supervised"
        description = "x"

        [[method]]
        name = "child"
        extends = "base"
        description = "y"
        [method.config]
        rotate_degree = 10.0
        """,
    )
    assert "'child'" in message and "'rotate_degree'" in message
    assert all(key in message for key in SupervisedConfig.model_fields)


@pytest.mark.parametrize("key", ["augment", "second_copy"])
def test_unknown_augmentation_op_lists_the_valid_ops(tmp_path: Path, key: str) -> None:
    message = _load_error(
        tmp_path,
        f"""
        [[method]]
        name = "shear"
        kind = "supervised"
        description = "x"
        [method.config]
        {key} = ["rotate", "shear"]
        """,
    )
    assert "'shear'" in message and all(op in message for op in ("rotate", "flip", "translate", "elastic"))


def test_repeated_op_and_out_of_range_value_are_errors(tmp_path: Path) -> None:
    message = _load_error(
        tmp_path,
        """
        [[method]]
        name = "bad"
        kind = "supervised"
        description = "x"
        [method.config]
        augment = ["flip", "flip"]
        rotate_degrees = -5.0
        """,
    )
    assert "more than once" in message and "rotate_degrees" in message and "-5.0" in message


def test_unknown_backbone_lists_smp_and_suite_backbones(tmp_path: Path) -> None:
    message = _load_error(
        tmp_path,
        """
        [[method]]
        name = "plus"
        kind = "supervised"
        description = "x"
        backbone = "deeplabv3+"
        """,
    )
    assert "'deeplabv3+'" in message and "Did you mean" in message
    for name in (*backbones.smp_architectures(), "unet-classic", "deeplabv3-resnet50", "unet3d"):
        assert name in message


def test_weights_on_a_scratch_only_backbone_are_an_error(tmp_path: Path) -> None:
    message = _load_error(
        tmp_path,
        """
        [[method]]
        name = "classic"
        kind = "supervised"
        description = "x"
        backbone = "unet-classic"
        encoder_weights = "imagenet"
        """,
    )
    assert "no pretrained weights" in message


def test_unknown_kind_lists_the_kinds(tmp_path: Path) -> None:
    message = _load_error(
        tmp_path,
        """
        [[method]]
        name = "k"
        kind = "supervized"
        description = "x"
        """,
    )
    assert "'supervized'" in message and "genseg" in message and "supervised" in message


def test_methods_command_prints_the_error_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A typo in a shipped-style spec stops `genseg-bench methods` with the file and the valid keys."""
    from genseg_bench.cli import app

    folder = _methods_file(
        tmp_path,
        """
        [[method]]
        name = "unet-typo"
        kind = "supervised"
        description = "x"
        [method.config]
        augmnt = ["flip"]
        """,
    )
    real = catalog_module._resource_dir
    monkeypatch.setattr(
        catalog_module,
        "_resource_dir",
        lambda package: folder if package == "genseg_bench.baselines_data" else real(package),
    )
    result = CliRunner().invoke(app, ["methods"])
    out = " ".join(result.output.split())  # rich wraps long lines
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert "mine.toml" in out and "'augmnt'" in out and "did you mean 'augment'" in out
    assert "Valid config keys: augment, elastic_alpha" in out


def test_catalog_validation_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from genseg_bench.catalog import Catalog\n"
        "Catalog.load()\n"
        "bad = [m for m in ('torch', 'segmentation_models_pytorch') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_smp_names_are_smps_own_mapping() -> None:
    """Read from smp's source without importing it, and equal to the mapping smp.create_model uses."""
    import segmentation_models_pytorch as smp

    spec_origin = Path(smp.__file__)
    assert backbones._names_from_source(spec_origin) == tuple(smp.MODEL_ARCHITECTURES_MAPPING)
    assert backbones.smp_architectures() == tuple(smp.MODEL_ARCHITECTURES_MAPPING)


def test_an_smp_architecture_outside_the_old_table_builds() -> None:
    """Every smp architecture is reachable by name (Linknet was not in the copied table)."""
    import torch

    from genseg_bench.models.segmenters import build_segmenter, describe_segmenter

    net = build_segmenter("linknet", 1).eval()
    with torch.no_grad():
        assert net(torch.rand(2, 1, 64, 64)).shape == (2, 1, 64, 64)
    assert describe_segmenter("linknet")["architecture"] == "segmentation_models_pytorch Linknet"


def test_builtin_kinds_and_config_models_agree() -> None:
    assert set(BUILTIN_CONFIGS) == set(BUILTIN_KINDS)
    for kind in BUILTIN_KINDS:
        assert method_class(kind).config_model is BUILTIN_CONFIGS[kind] is config_model(kind)
