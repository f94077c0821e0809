"""Pretrained encoders without downloads, and the input adaptation they need.

Two things go together whenever an encoder starts from ImageNet weights:

* **ImageNet normalisation.** The weights were trained on RGB images normalised
  with the ImageNet mean and standard deviation, so their first layers expect
  inputs in that range. The benchmark's images are in [0, 1] everywhere (data
  store, augmentation, GenSeg's generator, metrics), so the normalisation is done
  inside the model (:class:`AdaptedSegmenter`) and callers never need to know
  whether a backbone is pretrained. A model trained from scratch gets no
  normalisation: it learns its own input scaling (its first BatchNorm), and
  adding one would change the results of the existing from-scratch backbones.
* **Three input channels.** ImageNet weights have RGB filters; a grey image is
  repeated to three channels, exactly what feeding a grey image converted to RGB
  to the original network means.

Weights are never downloaded (the benchmark runs offline, and a download at run
time would make a result depend on the network). torchvision's ResNet-50 ImageNet
weights are read from the local torch hub cache, where torchvision itself stores
them, or from a file named in the method spec; a missing file is a
:class:`WeightsError` that names the file and says how to get it.
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

import torch
from torch import nn
from torchvision.models import ResNet50_Weights
from torchvision.models.segmentation import deeplabv3_resnet50

from genseg_bench.errors import GensegBenchError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

RESNET50_IMAGENET = ResNet50_Weights.IMAGENET1K_V1
"""torchvision's default ``weights_backbone`` of ``deeplabv3_resnet50``: what the paper's code trains from."""

_GET_RESNET50 = (
    'python -c "from torchvision.models import resnet50, ResNet50_Weights; '
    'resnet50(weights=ResNet50_Weights.IMAGENET1K_V1)"'
)


class WeightsError(GensegBenchError):
    """Pretrained weights asked for by a method spec are missing, unreadable or do not fit the model."""


class ImageNetNormalize(nn.Module):
    """``(x - mean) / std`` with the ImageNet statistics, channel ``c`` using those of RGB channel ``c % 3``.

    The cyclic rule matches how segmentation_models_pytorch adapts a pretrained
    first convolution to more than three channels (it repeats the RGB filters).
    The statistics are non-persistent buffers: they follow the model to its device
    and dtype but stay out of its ``state_dict``, so checkpoints keep the keys of
    the wrapped network.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        mean = torch.tensor([IMAGENET_MEAN[c % 3] for c in range(channels)]).view(1, channels, 1, 1)
        std = torch.tensor([IMAGENET_STD[c % 3] for c in range(channels)]).view(1, channels, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class AdaptedSegmenter(nn.Module):
    """A network behind the benchmark's input contract: ``[0, 1]`` images in, ``N x 1 x H x W`` logits out.

    ``repeat_grey`` copies a one-channel image to three channels (for RGB-shaped
    pretrained or torchvision networks); ``normalise`` applies
    :class:`ImageNetNormalize` after that; a network that returns a dict (torchvision
    segmentation models) gives its ``"out"`` entry.
    """

    def __init__(self, net: nn.Module, in_channels: int, repeat_grey: bool, normalise: bool) -> None:
        super().__init__()
        if repeat_grey and in_channels != 1:
            raise ValueError(f"repeat_grey needs 1-channel input, got {in_channels} channels")
        self.net = net
        self.in_channels = in_channels
        self.repeat_grey = repeat_grey
        net_channels = 3 if repeat_grey else in_channels
        self.normalize: nn.Module = ImageNetNormalize(net_channels) if normalise else nn.Identity()

    @property
    def normalises(self) -> bool:
        """Whether inputs are ImageNet-normalised before the network sees them."""
        return isinstance(self.normalize, ImageNetNormalize)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.repeat_grey:
            x = x.repeat(1, 3, 1, 1)
        out = self.net(self.normalize(x))
        if isinstance(out, dict):
            out = out["out"]
        return out


# --- torchvision DeepLabV3-ResNet50 ------------------------------------------------------------------


def resnet50_cache_file() -> Path:
    """Where torchvision keeps ResNet50_Weights.IMAGENET1K_V1: ``torch.hub.get_dir()/checkpoints/<url's file name>``."""
    name = os.path.basename(urllib.parse.urlparse(RESNET50_IMAGENET.url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def resnet50_weights_file(encoder_weights: str) -> Path:
    """The file that ``encoder_weights`` ("imagenet" or a path) names, which must exist.

    Raises :class:`WeightsError` naming the file looked for and how to get it.
    """
    if encoder_weights == "imagenet":
        path = resnet50_cache_file()
        if not path.is_file():
            raise WeightsError(
                f"backbone 'deeplabv3-resnet50' with encoder_weights = 'imagenet' needs torchvision's "
                f"ResNet50_Weights.IMAGENET1K_V1 in the local torch hub cache, but {path} does not exist. "
                f"The benchmark never downloads weights. On a machine with network run {_GET_RESNET50} "
                f"(torchvision saves {path.name} under its torch hub cache, by default "
                f"~/.cache/torch/hub/checkpoints/), then copy that file to {path} (or point TORCH_HOME "
                f"at a folder whose hub/checkpoints/ holds it), or set encoder_weights to the path of the copy."
            )
        return path
    path = Path(encoder_weights).expanduser()
    if not path.is_file():
        raise WeightsError(
            f"backbone 'deeplabv3-resnet50': encoder_weights = {encoder_weights!r} is neither 'imagenet' nor "
            f"an existing file ({path.resolve()} does not exist). Give 'imagenet' (torchvision's ResNet-50 "
            f"ImageNet weights from the torch hub cache) or the path of a ResNet-50 state_dict, e.g. the "
            f"{resnet50_cache_file().name} that {_GET_RESNET50} saves on a machine with network."
        )
    return path


def load_resnet50_backbone(backbone: nn.Module, path: Path) -> None:
    """Load a torchvision ResNet-50 ``state_dict`` (its ``fc`` classifier ignored) into a DeepLabV3 backbone.

    The DeepLabV3 backbone is a ResNet-50 without ``avgpool``/``fc`` whose last two
    stages are dilated; dilation changes no weight shape, so the classification
    checkpoint loads as is. Every backbone key must be present: a checkpoint of
    another network is an error, not a silently half-loaded model.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a truncated or foreign file
        raise WeightsError(
            f"{path}: cannot be read as a PyTorch state_dict ({type(exc).__name__}: {exc}). "
            "Copy the file again (it may be truncated) or give a ResNet-50 state_dict saved with torch.save."
        ) from exc
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: holds a {type(state).__name__}, not a ResNet-50 state_dict.")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        missing, unexpected = backbone.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise WeightsError(f"{path}: does not fit torchvision's ResNet-50 ({exc}).") from exc
    if missing or unexpected:
        raise WeightsError(
            f"{path}: not a torchvision ResNet-50 state_dict: missing keys {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}, unexpected keys {unexpected[:5]}"
            f"{' ...' if len(unexpected) > 5 else ''}."
        )


def build_deeplabv3_resnet50(in_channels: int, encoder_weights: str | None = None) -> AdaptedSegmenter:
    """torchvision's DeepLabV3-ResNet50 with one output class, as the paper's public code uses it.

    Built with ``weights=None, weights_backbone=None`` (so torchvision downloads
    nothing) and ``num_classes=1, aux_loss=False``; with ``encoder_weights`` the
    ResNet-50 backbone is then loaded from a local file (see
    :func:`resnet50_weights_file`) and inputs are ImageNet-normalised. Grey
    (1-channel) images are repeated to three channels, so the network, and its
    pretrained first convolution, is torchvision's unchanged; other channel counts
    are refused rather than given an ad-hoc first layer.

    The ASPP head pools each image to 1x1 and applies BatchNorm, so training needs
    batches of at least two images (evaluation works with one).
    """
    if in_channels not in (1, 3):
        raise WeightsError(
            f"backbone 'deeplabv3-resnet50' takes 1-channel (repeated to RGB) or 3-channel images, "
            f"not {in_channels}; use another backbone for this task."
        )
    path = resnet50_weights_file(encoder_weights) if encoder_weights is not None else None
    net = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=1, aux_loss=False)
    if path is not None:
        load_resnet50_backbone(net.backbone, path)
    return AdaptedSegmenter(
        net, in_channels, repeat_grey=in_channels == 1, normalise=encoder_weights is not None
    )


def describe_resnet50_weights(encoder_weights: str | None) -> str:
    """Where the DeepLabV3 backbone's weights come from, in words (no file is read)."""
    if encoder_weights is None:
        return "none (random initialisation, trained from scratch)"
    if encoder_weights == "imagenet":
        return f"torchvision ResNet50_Weights.IMAGENET1K_V1 ({resnet50_cache_file().name}, local torch hub cache)"
    return f"ResNet-50 state_dict from {encoder_weights}"
