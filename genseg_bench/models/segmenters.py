"""Segmenter factory: smp 2D models, the paper code's backbones, and a small 3D UNet.

Backbones (``MethodSpec.backbone``): every architecture of segmentation_models_pytorch's
own factory, ``smp.create_model(arch=...)`` over its name mapping (``unet`` and
``deeplabv3plus`` are the suite's defaults; with ``MethodSpec.encoder``, by
default ResNet-18); ``unet-classic`` (the classic UNet of
Ronneberger et al., :mod:`genseg_bench.models.classic_unet`) and
``deeplabv3-resnet50`` (torchvision's DeepLabV3-ResNet50,
:mod:`genseg_bench.models.pretrained`), the two the paper's public code uses (its
text names neither); ``swinunet`` (Swin-Unet, Cao et al. 2021, the transformer
of the paper's Fig. 8c, :mod:`genseg_bench.models.swin_unet`); and for 3D tasks
a compact UNet.

Every segmenter maps ``N x C x ...`` images in [0, 1] to ``N x 1 x ...`` logits.
Pretrained encoder weights are off by default (``encoder_weights=None``): the
benchmark must run offline. When a spec sets them, the model ImageNet-normalises its
input itself (see :mod:`genseg_bench.models.pretrained` for why), so callers keep
feeding [0, 1] images. torchvision weights are only read from local files;
segmentation_models_pytorch fetches its own through the Hugging Face cache.
:func:`describe_segmenter` says what was built, for the result files. The names
are checked without torch when the catalog loads (:mod:`genseg_bench.models.backbones`).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

with warnings.catch_warnings():
    # timm (which smp imports) calls torch.jit.interface, deprecated since torch 2.x: one FutureWarning
    # on every run and in every Ray worker, about code that is not this project's. Only that one.
    warnings.filterwarnings(
        "ignore", message=r"`torch\.jit\.interface` is deprecated", category=FutureWarning
    )
    import segmentation_models_pytorch as smp

from genseg_bench.errors import SpecError, unknown
from genseg_bench.models.backbones import BACKBONES_3D, PAPER_CODE_2D, TRANSFORMERS_2D
from genseg_bench.models.classic_unet import ClassicUNet
from genseg_bench.models.pretrained import (
    AdaptedSegmenter,
    WeightsError,
    build_deeplabv3_resnet50,
    describe_resnet50_weights,
)
from genseg_bench.models.swin_unet import (
    SWINUNET_DEFAULT,
    build_swinunet,
    check_weights_name,
    describe_swinunet_weights,
    parameter_count,
)

__all__ = ["BACKBONES_3D", "PAPER_CODE_2D", "UNet3D", "build_segmenter", "describe_segmenter"]

CLASSIC_UNET_WIDTH = 64
"""Base width of ``unet-classic``: the original paper's."""


class UNet3D(nn.Module):
    """A compact 3D UNet (two poolings) for the MSD tasks, where smp has no 3D models.

    Volumes of the hippocampus task are ~35x50x35, so two levels of pooling keep
    every level at least 8 voxels wide; inputs are padded to a multiple of 4.
    """

    def __init__(self, in_channels: int = 1, classes: int = 1, width: int = 16) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv3d(cin, cout, 3, padding=1),
                nn.InstanceNorm3d(cout, affine=True),
                nn.LeakyReLU(0.01),
                nn.Conv3d(cout, cout, 3, padding=1),
                nn.InstanceNorm3d(cout, affine=True),
                nn.LeakyReLU(0.01),
            )

        w = width
        self.enc1, self.enc2, self.enc3 = block(in_channels, w), block(w, 2 * w), block(2 * w, 4 * w)
        self.pool = nn.MaxPool3d(2)
        self.up2 = nn.ConvTranspose3d(4 * w, 2 * w, 2, stride=2)
        self.dec2 = block(4 * w, 2 * w)
        self.up1 = nn.ConvTranspose3d(2 * w, w, 2, stride=2)
        self.dec1 = block(2 * w, w)
        self.head = nn.Conv3d(w, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape[-3:]
        pad = [p for s in reversed(shape) for p in (0, (-s) % 4)]
        x = nn.functional.pad(x, pad)
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        e3 = self.enc3(self.pool(e2))
        d2 = self.dec2(torch.cat([self.up2(e3), e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        out = self.head(d1)
        return out[..., : shape[0], : shape[1], : shape[2]]


def _smp_architectures() -> dict[str, type[nn.Module]]:
    """smp's own name mapping, the one ``smp.create_model`` reads (never a copied table)."""
    return dict(smp.MODEL_ARCHITECTURES_MAPPING)


def _backbones_2d() -> list[str]:
    return [*_smp_architectures(), *PAPER_CODE_2D, *TRANSFORMERS_2D]


def _smp_repo(encoder: str, encoder_weights: str) -> str:
    """The Hugging Face repository smp reads ``encoder``'s ``encoder_weights`` from ('?' if it has none)."""
    settings = smp.encoders.encoders.get(encoder, {}).get("pretrained_settings", {})
    return str(settings.get(encoder_weights, {}).get("repo_id", "?"))


def _build_smp(backbone: str, in_channels: int, encoder: str, encoder_weights: str | None) -> nn.Module:
    """An smp model; with pretrained weights, behind ImageNet normalisation (grey repeated to RGB).

    From scratch the model is smp's own, unwrapped, exactly as before the paper
    backbones existed (same parameters, same results). With weights, a grey image
    is repeated to three channels so the pretrained RGB filters see what they were
    trained on; other channel counts use smp's own first-layer adaptation, with
    channel ``c`` normalised by the statistics of RGB channel ``c % 3``.
    """
    repeat = encoder_weights is not None and in_channels == 1
    try:
        net = smp.create_model(
            arch=backbone,
            encoder_name=encoder,
            encoder_weights=encoder_weights,
            in_channels=3 if repeat else in_channels,
            classes=1,
        )
    except (KeyError, ValueError) as exc:  # smp's message names the encoder or weights and the valid ones
        raise SpecError(
            f"backbone {backbone!r} with encoder {encoder!r}: {exc.args[0] if exc.args else exc}. "
            "Pick an encoder this architecture supports (see segmentation_models_pytorch's encoder table)."
        ) from exc
    except OSError as exc:  # huggingface_hub: not in the local cache and no network
        repo = _smp_repo(encoder, str(encoder_weights))
        raise WeightsError(
            f"backbone {backbone!r} with encoder {encoder!r} and encoder_weights = {encoder_weights!r}: "
            f"segmentation_models_pytorch reads these weights from the Hugging Face repository {repo}, "
            f"which is neither in the local Hugging Face cache nor reachable ({type(exc).__name__}: {exc}). "
            f"On a machine with network run `hf download {repo}` and copy its Hugging Face cache "
            "(~/.cache/huggingface/hub, or $HF_HOME/hub) to this machine, or drop encoder_weights to "
            "train from scratch."
        ) from exc
    if encoder_weights is None:
        return net
    return AdaptedSegmenter(net, in_channels, repeat_grey=repeat, normalise=True)


def _not_3d(backbone: str) -> None:
    if backbone in TRANSFORMERS_2D:
        raise SpecError(
            f"backbone {backbone!r} is a 2D network and this task has 3D volumes; 3D tasks take "
            f"{' or '.join(BACKBONES_3D)} (the compact 3D UNet)."
        )


def _no_weights(backbone: str, encoder_weights: str | None) -> None:
    if encoder_weights is not None:
        raise SpecError(
            f"backbone {backbone!r} has no pretrained weights (it is trained from scratch), but the method "
            f"spec sets encoder_weights = {encoder_weights!r}. Remove encoder_weights from that spec."
        )


def build_segmenter(
    backbone: str,
    in_channels: int,
    dims: int = 2,
    encoder: str = "resnet18",
    encoder_weights: str | None = None,
) -> nn.Module:
    """A segmenter that maps ``N x C x ...`` images in [0, 1] to ``N x 1 x ...`` logits.

    ``encoder`` applies to the smp backbones only (``unet-classic`` has no
    encoder, ``deeplabv3-resnet50`` always a ResNet-50, ``swinunet`` none). ``encoder_weights`` is
    None (from scratch), an smp weights name for smp encoders, for
    ``deeplabv3-resnet50`` "imagenet" (torchvision's ResNet-50 ImageNet weights
    from the local torch hub cache) or the path of a ResNet-50 state_dict, and for
    ``swinunet`` the path of a SwinUnet state_dict. Missing or mismatched
    weights raise :class:`~genseg_bench.models.pretrained.WeightsError`.
    """
    if dims == 3:
        _not_3d(backbone)
        if backbone not in BACKBONES_3D:
            raise unknown("3D backbone", backbone, list(BACKBONES_3D))
        _no_weights(backbone, encoder_weights)
        return UNet3D(in_channels=in_channels, classes=1)
    if backbone == "unet-classic":
        _no_weights(backbone, encoder_weights)
        return ClassicUNet(in_channels=in_channels, classes=1, width=CLASSIC_UNET_WIDTH)
    if backbone == "deeplabv3-resnet50":
        return build_deeplabv3_resnet50(in_channels, encoder_weights)
    if backbone == "swinunet":
        return build_swinunet(in_channels, encoder_weights, SWINUNET_DEFAULT)
    if backbone not in _smp_architectures():
        raise unknown("backbone", backbone, _backbones_2d())
    return _build_smp(backbone, in_channels, encoder, encoder_weights)


def describe_segmenter(
    backbone: str, encoder: str = "resnet18", encoder_weights: str | None = None, dims: int = 2
) -> dict[str, str]:
    """What :func:`build_segmenter` builds for these arguments, as strings for a result file.

    Keys: ``backbone`` (the spec's name), ``architecture``, ``encoder`` (the one
    actually used, "none" for encoder-less UNets), ``weights`` (``encoder_weights``
    or "none"), ``weights_source`` (where they come from, in words),
    ``normalisation`` ("imagenet" or "none") and ``input`` (how channels reach the
    network). Reads no file and builds no model; invalid combinations raise the
    errors :func:`build_segmenter` would.
    """
    weights = encoder_weights if encoder_weights is not None else "none"
    scratch = "none (random initialisation, trained from scratch)"
    norm = "imagenet" if encoder_weights is not None else "none"
    as_is = "channels as given"
    if dims == 3:
        _not_3d(backbone)
        if backbone not in BACKBONES_3D:
            raise unknown("3D backbone", backbone, list(BACKBONES_3D))
        _no_weights(backbone, encoder_weights)
        arch, enc, source, inp = "genseg_bench UNet3D (two poolings, width 16)", "none", scratch, as_is
    elif backbone == "unet-classic":
        _no_weights(backbone, encoder_weights)
        arch = f"classic UNet (Ronneberger et al. 2015, BatchNorm, width {CLASSIC_UNET_WIDTH}, transposed-conv upsampling)"
        enc, source, inp = "none", scratch, as_is
    elif backbone == "deeplabv3-resnet50":
        arch = "torchvision deeplabv3_resnet50 (num_classes=1, aux_loss=False)"
        enc, source = "resnet50", describe_resnet50_weights(encoder_weights)
        inp = "1-channel images repeated to 3 channels"
    elif backbone == "swinunet":
        check_weights_name(encoder_weights)
        arch = (
            "Swin-Unet (Cao et al. 2021; genseg_bench implementation after HuCaoFighting/Swin-Unet): "
            f"{SWINUNET_DEFAULT.describe()}, {parameter_count(SWINUNET_DEFAULT):,} parameters at 3 channels"
        )
        enc, source, norm, inp = "none", describe_swinunet_weights(encoder_weights), "none", as_is
    elif backbone in _smp_architectures():
        arch, enc = f"segmentation_models_pytorch {_smp_architectures()[backbone].__name__}", encoder
        if encoder_weights is None:
            source, inp = scratch, as_is
        else:
            source = f"segmentation_models_pytorch {encoder_weights!r} weights ({_smp_repo(encoder, encoder_weights)}, Hugging Face cache)"
            inp = "1-channel images repeated to 3 channels"
    else:
        raise unknown("backbone", backbone, _backbones_2d())
    return {
        "backbone": backbone,
        "architecture": arch,
        "encoder": enc,
        "weights": weights,
        "weights_source": source,
        "normalisation": norm,
        "input": inp,
    }
