"""The paper code's backbones (classic UNet, torchvision DeepLabV3-ResNet50) and pretrained-weight handling.

Nothing here downloads: pretrained weights are stand-ins (freshly initialised
networks saved to tmp_path) placed where the real files would be.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import segmentation_models_pytorch as smp
import torch
from huggingface_hub.errors import LocalEntryNotFoundError
from safetensors.torch import save_file
from torchvision.models import resnet50

from genseg_bench.catalog import Catalog
from genseg_bench.errors import GensegBenchError, SpecError, UnknownNameError
from genseg_bench.models.classic_unet import ClassicUNet
from genseg_bench.models.pretrained import AdaptedSegmenter, WeightsError, resnet50_cache_file
from genseg_bench.models.segmenters import build_segmenter, describe_segmenter

# written out, not imported, so that a wrong constant in the code is caught
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
RESNET50_FILE = "resnet50-0676ba61.pth"  # torchvision's file name for ResNet50_Weights.IMAGENET1K_V1


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to download weights fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a download was attempted: {args}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def resnet50_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A torchvision ResNet-50 state_dict (random weights), saved like the real checkpoint."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("weights") / RESNET50_FILE
    torch.save(resnet50(weights=None).state_dict(), path)
    return path


@pytest.fixture
def hub_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache."""
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    return hub


# --- classic UNet ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bilinear", [False, True])
@pytest.mark.parametrize("channels", [1, 3])
def test_classic_unet_keeps_odd_sizes(channels: int, bilinear: bool) -> None:
    model = ClassicUNet(channels, width=8, bilinear=bilinear).eval()
    with torch.no_grad():
        out = model(torch.rand(1, channels, 33, 47))
    assert out.shape == (1, 1, 33, 47)
    assert torch.isfinite(out).all()


def test_classic_unet_gradients_reach_every_parameter() -> None:
    model = ClassicUNet(1, width=4)
    model(torch.rand(2, 1, 32, 32)).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_unet_classic_backbone_is_the_original_width_from_scratch() -> None:
    model = build_segmenter("unet-classic", 3)
    assert isinstance(model, ClassicUNet)
    assert model.width == 64 and not model.bilinear
    assert model.inc[0].in_channels == 3 and model.head.out_channels == 1
    with pytest.raises(SpecError, match="encoder_weights"):
        build_segmenter("unet-classic", 3, encoder_weights="imagenet")


# --- DeepLabV3-ResNet50 ---------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_deeplab_shapes_for_odd_sizes(channels: int) -> None:
    model = build_segmenter("deeplabv3-resnet50", channels).eval()
    with torch.no_grad():
        out = model(torch.rand(1, channels, 33, 47))
    assert out.shape == (1, 1, 33, 47)
    assert model.net.backbone.conv1.in_channels == 3  # grey is repeated, torchvision's network unchanged
    assert model.net.aux_classifier is None


def test_deeplab_trains_from_scratch_without_normalisation() -> None:
    model = build_segmenter("deeplabv3-resnet50", 1)
    assert isinstance(model, AdaptedSegmenter) and not model.normalises
    x = torch.rand(2, 1, 32, 32)
    model(x).mean().backward()
    assert model.net.backbone.conv1.weight.grad is not None
    assert model.net.classifier[-1].weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():  # the wrapper adds nothing but the channel repeat
        assert torch.equal(model(x), model.net(x.repeat(1, 3, 1, 1))["out"])


def test_deeplab_loads_imagenet_file_from_the_hub_cache(resnet50_file: Path, hub_dir: Path) -> None:
    target = hub_dir / "checkpoints" / RESNET50_FILE
    target.parent.mkdir(parents=True)
    target.symlink_to(resnet50_file)
    assert resnet50_cache_file() == target
    saved = torch.load(resnet50_file, weights_only=True)
    model = build_segmenter("deeplabv3-resnet50", 3, encoder_weights="imagenet")
    backbone = model.net.backbone
    assert torch.equal(backbone.conv1.weight, saved["conv1.weight"])
    assert torch.equal(backbone.layer4[2].conv3.weight, saved["layer4.2.conv3.weight"])
    assert torch.equal(backbone.layer3[0].bn1.running_var, saved["layer3.0.bn1.running_var"])


def test_deeplab_loads_a_file_given_by_path(resnet50_file: Path, hub_dir: Path) -> None:
    saved = torch.load(resnet50_file, weights_only=True)
    model = build_segmenter("deeplabv3-resnet50", 1, encoder_weights=str(resnet50_file))
    assert torch.equal(model.net.backbone.layer1[0].conv2.weight, saved["layer1.0.conv2.weight"])
    assert not (hub_dir / "checkpoints").exists()  # nothing was written to the cache


def test_pretrained_deeplab_normalises_its_input(resnet50_file: Path) -> None:
    """A constant grey image reaches the network repeated to RGB and ImageNet-normalised."""
    model = build_segmenter("deeplabv3-resnet50", 1, encoder_weights=str(resnet50_file)).eval()
    assert model.normalises
    x = torch.full((1, 1, 32, 32), 0.5)
    expected_input = (torch.full((1, 3, 32, 32), 0.5) - MEAN) / STD
    with torch.no_grad():
        got = model(x)
        expected = model.net(expected_input)["out"]
        unnormalised = model.net(x.repeat(1, 3, 1, 1))["out"]
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, unnormalised)
    assert model.normalize.mean.device == x.device
    assert "normalize.mean" not in model.state_dict()  # checkpoints keep the network's keys


def test_missing_imagenet_file_names_it_and_says_how_to_get_it(hub_dir: Path) -> None:
    with pytest.raises(GensegBenchError) as info:
        build_segmenter("deeplabv3-resnet50", 3, encoder_weights="imagenet")
    message = str(info.value)
    assert isinstance(info.value, WeightsError)
    assert str(hub_dir / "checkpoints" / RESNET50_FILE) in message
    assert "ResNet50_Weights.IMAGENET1K_V1" in message and "network" in message
    assert "never downloads" in message


def test_missing_weights_path_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "r50.pth"
    with pytest.raises(WeightsError, match="r50.pth"):
        build_segmenter("deeplabv3-resnet50", 3, encoder_weights=str(missing))


def test_foreign_weights_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "head.weight": torch.zeros(1)}, path)
    with pytest.raises(WeightsError, match="not a torchvision ResNet-50"):
        build_segmenter("deeplabv3-resnet50", 3, encoder_weights=str(path))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot be read"):
        build_segmenter("deeplabv3-resnet50", 3, encoder_weights=str(tmp_path / "junk.pth"))


# --- smp encoders with pretrained weights ---------------------------------------------------------


def test_pretrained_smp_encoder_normalises_and_from_scratch_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = tmp_path / "model.safetensors"
    save_file(smp.encoders.get_encoder("resnet18").state_dict(), str(weights))
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setattr(
        smp.encoders, "hf_hub_download", lambda repo_id, filename, revision=None: str(tmp_path / filename)
    )
    model = build_segmenter("unet", 1, encoder="resnet18", encoder_weights="imagenet").eval()
    assert isinstance(model, AdaptedSegmenter) and model.normalises
    x = torch.full((2, 1, 32, 32), 0.25)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.net((torch.full((2, 3, 32, 32), 0.25) - MEAN) / STD))

    scratch = build_segmenter("unet", 1)
    assert isinstance(scratch, smp.Unet)  # unchanged: no wrapper, no normalisation


def test_smp_weights_offline_error_names_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> str:
        raise LocalEntryNotFoundError("offline and not cached")

    monkeypatch.setattr(smp.encoders, "hf_hub_download", offline)
    with pytest.raises(WeightsError, match="smp-hub/resnet18.imagenet"):
        build_segmenter("deeplabv3plus", 3, encoder="resnet18", encoder_weights="imagenet")


# --- names, descriptions, specs -------------------------------------------------------------------


def test_unknown_backbone_lists_every_name() -> None:
    with pytest.raises(UnknownNameError) as info:
        build_segmenter("unet-clasic", 3)
    message = str(info.value)
    for name in ("unet-classic", "deeplabv3-resnet50", "unet", "deeplabv3plus", "unetplusplus", "fpn"):
        assert f"{name}," in message or f"{name}." in message
    assert "Did you mean unet-classic" in message
    with pytest.raises(UnknownNameError, match="deeplabv3-resnet50"):
        describe_segmenter("resnet50")


def test_describe_records_backbone_weights_and_normalisation() -> None:
    classic = describe_segmenter("unet-classic")
    assert classic["backbone"] == "unet-classic" and classic["weights"] == "none"
    assert classic["normalisation"] == "none" and "Ronneberger" in classic["architecture"]
    pretrained = describe_segmenter("deeplabv3-resnet50", "resnet18", "imagenet")
    assert pretrained["encoder"] == "resnet50" and pretrained["normalisation"] == "imagenet"
    assert "IMAGENET1K_V1" in pretrained["weights_source"] and RESNET50_FILE in pretrained["weights_source"]
    assert describe_segmenter("deeplabv3-resnet50", "resnet18", "/w/r50.pth")["weights_source"].endswith(
        "/w/r50.pth"
    )
    smp_scratch = describe_segmenter("unet")
    assert smp_scratch["encoder"] == "resnet18" and smp_scratch["normalisation"] == "none"
    assert describe_segmenter("unet", dims=3)["architecture"].startswith("genseg_bench UNet3D")
    assert all(isinstance(v, str) for v in pretrained.values())


def test_catalog_has_the_paper_backbone_specs(catalog: Catalog) -> None:
    classic = catalog.method("unet-classic")
    assert (classic.kind, classic.backbone, classic.encoder_weights) == ("supervised", "unet-classic", None)
    assert classic.config == {"augment": []}
    scratch, pretrained = catalog.method("deeplabv3-resnet50"), catalog.method("deeplabv3-resnet50-imagenet")
    assert scratch.backbone == pretrained.backbone == "deeplabv3-resnet50"
    assert scratch.encoder_weights is None and pretrained.encoder_weights == "imagenet"
    for spec in (classic, scratch, pretrained):
        assert "public code" in spec.description
    assert scratch.fingerprint() != pretrained.fingerprint()
