"""The backbone names a method spec may use, known without importing torch.

Two families: every architecture of segmentation_models_pytorch's own factory
(``smp.create_model(arch=...)``, whose name mapping is
``smp.MODEL_ARCHITECTURES_MAPPING``), and the suite's own networks, which smp
does not have: ``unet-classic`` and ``deeplabv3-resnet50`` (the paper's public
code, 2D), ``swinunet`` (Swin-Unet, the transformer of the paper's Fig. 8c, 2D)
and the compact 3D UNet (``unet3d``; ``unet`` on a 3D task is that same
network). The catalog checks a spec's backbone against these names when it
loads, so a typo is an error naming the file and the valid choices before any
run; importing smp would import torch, which ``genseg-bench tasks`` and
``report`` must not, so smp's names are read from its source (see
:func:`smp_architectures`).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from pathlib import Path

from genseg_bench.errors import SpecError

PAPER_CODE_2D = ("unet-classic", "deeplabv3-resnet50")
"""Backbones of the paper's public code, built without segmentation_models_pytorch."""
TRANSFORMERS_2D = ("swinunet",)
"""The suite's own transformer segmenters (:mod:`genseg_bench.models.swin_unet`); their weights come from a file."""
BACKBONES_3D = ("unet", "unet3d")
"""Backbones of 3D tasks: both name the suite's compact 3D UNet."""
NO_PRETRAINED = ("unet-classic", "unet3d")
"""Backbones that are always trained from scratch (a spec setting ``encoder_weights`` is wrong)."""
SEG_LR_MAX: dict[str, float] = {"swinunet": 1e-4}
"""The largest segmenter learning rate a backbone trains at with the suite's RMSprop, where it has one.

SwinUnet from scratch collapses to predicting background at 2e-4 and above (see
:mod:`genseg_bench.models.swin_unet`, *Learning rate*), so the ``cpu`` (3e-4),
``quick`` and ``smoke`` (1e-3) profiles would record all-background runs and call
them results. Every method that trains such a network (the supervised baselines,
GenSeg's segmenter, a semi-supervised branch) takes ``min(profile lr, cap)`` for
it (:func:`seg_lr`) and records the rate it used (``extras["seg_lr"]``); the
``paper`` profile's 1e-5 is below the cap and unchanged. Data, not code: the cap
is a property of the network with this optimiser, the same for every task.
"""


def seg_lr(profile_lr: float, backbone: str | None) -> float:
    """The segmenter learning rate ``backbone`` trains at under a profile whose rate is ``profile_lr``."""
    cap = SEG_LR_MAX.get(backbone or "")
    return min(profile_lr, cap) if cap is not None else profile_lr


_SMP = "segmentation_models_pytorch"


def _names_from_source(init: Path) -> tuple[str, ...] | None:
    """The lower-cased class names of ``_MODEL_ARCHITECTURES = [...]`` in smp's ``__init__.py``.

    smp builds its mapping as ``{a.__name__.lower(): a for a in _MODEL_ARCHITECTURES}``;
    None when the file has no such list (another smp layout).
    """
    try:
        tree = ast.parse(init.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return None
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "_MODEL_ARCHITECTURES" for t in node.targets)
            and isinstance(node.value, ast.List | ast.Tuple)
            and all(isinstance(e, ast.Name) for e in node.value.elts)
        ):
            return tuple(e.id.lower() for e in node.value.elts)  # type: ignore[attr-defined]
    return None


def smp_architectures() -> tuple[str, ...]:
    """The ``arch`` names ``smp.create_model`` accepts, in smp's order.

    Read from smp itself at call time, never copied: from the imported module
    when it is loaded already, else from its source file without importing it
    (and so torch). An smp laid out differently is imported after all.
    """
    module = sys.modules.get(_SMP)
    if module is not None:
        return tuple(module.MODEL_ARCHITECTURES_MAPPING)
    spec = importlib.util.find_spec(_SMP)
    if spec is None or spec.origin is None:
        raise SpecError(f"{_SMP} is not installed; reinstall genseg-bench (it is a dependency).")
    names = _names_from_source(Path(spec.origin))
    if names is None:
        names = tuple(importlib.import_module(_SMP).MODEL_ARCHITECTURES_MAPPING)
    return names


def check_backbone(
    backbone: str, encoder_weights: str | None = None, smp_names: tuple[str, ...] | None = None
) -> None:
    """Raise :class:`SpecError` if no task could build ``backbone`` (with these weights), naming the valid ones.

    Whether the backbone fits a task's dimensionality (``unet3d`` on a 2D task) is
    checked when the segmenter is built, since a method spec serves 2D and 3D tasks.
    ``smp_names``: :func:`smp_architectures`, read once by a caller checking many specs.
    """
    smp_names = smp_names if smp_names is not None else smp_architectures()
    if backbone not in (*smp_names, *PAPER_CODE_2D, *TRANSFORMERS_2D, *BACKBONES_3D):
        import difflib

        choices = list(dict.fromkeys((*smp_names, *PAPER_CODE_2D, *TRANSFORMERS_2D, *BACKBONES_3D)))
        close = difflib.get_close_matches(backbone, choices, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise SpecError(
            f"unknown backbone {backbone!r}.{hint} Valid backbones: {', '.join(smp_names)} "
            f"(segmentation_models_pytorch, with `encoder`); {', '.join(PAPER_CODE_2D)} (the paper's "
            f"public code, 2D); {', '.join(TRANSFORMERS_2D)} (Swin-Unet, 2D); unet3d (3D; `unet` is "
            "the same network on 3D tasks)."
        )
    if backbone in TRANSFORMERS_2D and encoder_weights == "imagenet":
        raise SpecError(
            f"backbone {backbone!r} has no built-in pretrained weights, so encoder_weights = 'imagenet' "
            "means nothing; set encoder_weights to the path of a state_dict file of this network, or remove it."
        )
    if backbone in NO_PRETRAINED and encoder_weights is not None:
        raise SpecError(
            f"backbone {backbone!r} has no pretrained weights (it is trained from scratch), but the spec "
            f"sets encoder_weights = {encoder_weights!r}. Remove encoder_weights from that spec."
        )
