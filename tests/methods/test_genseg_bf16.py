"""GenSeg's double backward under bf16 autocast agrees with float32 (issue 10: the GPU path).

On a GPU the profiles train under bf16 autocast (``FitContext.use_amp``), and GenSeg's
hypergradient then runs its double backward (through S', the generated images, G' and
the GAN-level gradient) on bf16 activations. A cast that cuts the graph (a ``.detach``
or a ``.to`` outside autocast's differentiable casts) or an unsupported double-backward
op would make ``grad_A`` zero or wrong there, silently: nothing on the CPU path uses
bf16. This runs the same unrolled step twice on the CPU, once in float32 and once under
``torch.autocast("cpu", dtype=torch.bfloat16)``, which applies the same autocast op
lists and casts as CUDA's, and compares the quantities the A, G and S updates use.

bf16 keeps 8 bits of mantissa, so values agree to about 1e-2 relative, and the
hypergradient, a product of several second-order terms, to less. Measured on these
models (float32 against float64: cosine 1.0000 at every step size): with lookahead
steps of the profiles' size (eta 1e-4 .. 1e-2) the bf16 hypergradient has cosine
0.991-0.995 with the float32 one; with eta = 0.5, far beyond any profile, only 0.45,
because the unrolled step is then far from linear and bf16 moves it. The bounds below
(cosine > 0.97, relative error < 0.3, at eta = 1e-3) hold with margin and are far from
what a broken path gives (a detached path: zero gradient, cosine 0 or NaN).
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from genseg_bench.methods.genseg import GenSegBatch, hypergradient, unrolled_step
from genseg_bench.models.discriminator import PatchDiscriminator
from genseg_bench.models.generator import SearchableGenerator

ETA = 1e-3
"""Lookahead step: the order of the profiles' learning rates (Adam / RMSprop, 2e-4 .. 1e-3)."""


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _models() -> tuple[SearchableGenerator, PatchDiscriminator, nn.Module]:
    torch.manual_seed(0)
    gen = SearchableGenerator(1, (16, 16), width=4, mode="learnable", dims=2, dropout=0.0)
    with torch.no_grad():  # away from uniform alphas, so the softmax Jacobian is not special
        for a in gen.arch_parameters():
            a.normal_(0.0, 0.5)
    disc = PatchDiscriminator(1, (16, 16), width=4, dims=2)
    seg = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1)
    )
    return gen, disc, seg


def _batch() -> GenSegBatch:
    g = torch.Generator().manual_seed(1)
    masks = (torch.rand(4, 1, 16, 16, generator=g) > 0.6).float()
    images = (0.3 + 0.5 * masks + 0.1 * torch.rand(4, 1, 16, 16, generator=g)).clamp(0, 1)
    val_masks = (torch.rand(4, 1, 16, 16, generator=g) > 0.6).float()
    val_images = (0.3 + 0.5 * val_masks).clamp(0, 1)
    return GenSegBatch(masks, images, masks.flip(-1), val_images, val_masks)


def _step(amp: contextlib.AbstractContextManager[None] | None) -> dict[str, torch.Tensor]:
    gen, disc, seg = _models()
    factory = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if amp else contextlib.nullcontext
    step = unrolled_step(
        gen, disc, seg, _batch(), eta_g=ETA, eta_s=ETA, gamma=1.0, lambda_l1=10.0, amp=factory
    )
    grad_a = hypergradient(step, gen.arch_parameters())
    return {
        "fake_dtype": torch.tensor(step.fake.dtype == torch.bfloat16),
        "g_grads": torch.cat([g.flatten().float() for g in step.g_grads]),
        "s_grads": torch.cat([g.flatten().float() for g in step.s_grads]),
        "val_loss": step.val_loss.detach().float(),
        "grad_a": torch.cat([g.flatten().float() for g in grad_a]),
    }


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


def test_bf16_hypergradient_matches_float32() -> None:
    ref, bf = _step(None), _step(contextlib.nullcontext())
    assert not bool(ref["fake_dtype"]) and bool(bf["fake_dtype"]), (
        "autocast did not run the generator in bf16"
    )
    assert float(ref["grad_a"].norm()) > 0
    for key in ("g_grads", "s_grads", "grad_a"):
        rel = float((bf[key] - ref[key]).norm() / ref[key].norm())
        assert _cos(bf[key], ref[key]) > 0.97 and rel < 0.3, (key, _cos(bf[key], ref[key]), rel)
    assert float((bf["val_loss"] - ref["val_loss"]).abs()) < 0.02 * float(ref["val_loss"])
