"""GenSeg's iteration against an independent reference written from the paper's equations.

The finite-difference test in ``test_genseg.py`` shows that ``hypergradient`` is the
derivative of ``unrolled_step``'s own objective; it cannot show that the objective
is the paper's. Here a reference re-derives one end-to-end iteration (A.3, Eq. 5-8,
with the optimisers of A.6) from scratch, on explicit flat parameter vectors, with
its own losses, its own lookahead formulas and its own Adam / RMSprop, and shares no
helper with ``genseg_bench.methods.genseg``. Two iterations (the second starts from
non-empty optimiser state, so momentum, bias corrections and step counts matter)
are compared on every quantity:

* ``g_G = grad_G L_gan``, the lookahead ``G'`` (Eq. 5), ``g_S = grad_S (L_gen + gamma
  L_real)`` and ``S'`` (Eq. 7), for the ``sgd`` lookahead (Eq. 5 / 7 as written) and
  the ``optimizer`` one (the real optimisers' next step, second moment held fixed);
* the validation loss ``L_val(S')`` and ``grad_A`` of it (Eq. 8-11), both lookaheads;
* ``grad_H`` of the discriminator loss and the real updates of A (Adam, descending
  ``grad_A``), G (Adam on ``g_G``), H (Adam descending the discriminator loss on real
  vs detached generated pairs, i.e. ascending the GAN objective, Eq. 6) and S
  (RMSprop on ``g_S``, generated half included).

On two model sets: tiny models defined here (a two-cell generator mixing 1x1 / 3x3 /
5x5 convolutions by softmax(alpha), whose forward the reference re-implements with
``F.conv2d`` on slices of the flat vector), and the real ``SearchableGenerator`` and
``PatchDiscriminator`` at width 2, 16 px, where the reference evaluates the network
with ``torch.func.functional_call`` on its vectors (the architecture is not under
test; the optimisation around it is). Plus a descent check: a small step against
``grad_A`` lowers the unrolled validation loss, recomputed by the reference, one
along it raises it, and the trainer's real A step lowers it.

Tolerance: every comparison is a relative L2 error on the whole vector (updates are
compared as deltas, ``after - before``, so an error in an update is measured against
the update, not against the weights). In float64 the measured errors are <= 2e-13;
the bound 1e-6 leaves six orders of margin, while the mistakes this file exists to
catch (a flipped sign, a dropped term, a missing momentum, a maximising optimiser)
give relative errors of order 1e-2..1. Updates of the few weights whose optimiser
input is rounding noise (biases an InstanceNorm cancels, see :func:`live`) are left
out: Adam turns noise into steps of up to lr there, differently on each side.
``benchmarks/genseg_mutations.py`` applies those mistakes to genseg.py one by one and
shows that each fails tests here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from genseg_bench.methods.genseg import GenSegBatch, GenSegConfig, GenSegTrainer
from genseg_bench.models.discriminator import PatchDiscriminator
from genseg_bench.models.generator import SearchableGenerator
from genseg_bench.specs import Profile

DTYPE = torch.float64
BOUND = 1e-6

# A.6 and torch's defaults, written down independently of the implementation
ADAM_BETAS = (0.5, 0.999)
ADAM_EPS = 1e-8
RMS_ALPHA = 0.99
RMS_EPS = 1e-8

PROFILE = Profile(
    name="reference",
    iterations=2,
    batch_size=2,
    eval_every=1,
    seg_lr=2e-2,
    seg_momentum=0.9,
    seg_weight_decay=3e-2,
    gen_lr=1e-2,
    gen_weight_decay=2e-2,
    arch_lr=1e-2,
    arch_weight_decay=5e-2,
    gen_width=2,
    amp=False,
)
"""Large learning rates and weight decays, so that every term moves the numbers by far more than the bound."""

GAMMA = 0.7  # not 1, so a dropped or hard-coded gamma shows
LAMBDA_L1 = 10.0
KERNELS = (1, 3, 5)
SIZE = 16


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# --- tiny models (the modules the implementation trains) -----------------------------------


class TinyGenerator(nn.Module):
    """mask -> tanh(cell1) -> sigmoid(cell2); cell i = sum_k softmax(alpha_i)_k conv_k (1x1, 3x3, 5x5)."""

    def __init__(self, channels: int, hidden: int = 2) -> None:
        super().__init__()
        self.cell1 = nn.ModuleList([nn.Conv2d(1, hidden, k, padding=k // 2) for k in KERNELS])
        self.cell2 = nn.ModuleList([nn.Conv2d(hidden, channels, k, padding=k // 2) for k in KERNELS])
        self.alpha1 = nn.Parameter(torch.zeros(len(KERNELS)))
        self.alpha2 = nn.Parameter(torch.zeros(len(KERNELS)))

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha1, self.alpha2]

    def named_weight_parameters(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.named_parameters() if not n.startswith("alpha")}

    def weight_parameters(self) -> list[nn.Parameter]:
        return list(self.named_weight_parameters().values())

    def alphas(self) -> dict[str, dict[str, float]]:
        return {
            f"cell{i}": dict(zip(map(str, KERNELS), torch.softmax(a, 0).tolist(), strict=True))
            for i, a in enumerate(self.arch_parameters(), 1)
        }

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        x = masks * 2 - 1
        w1, w2 = torch.softmax(self.alpha1, 0), torch.softmax(self.alpha2, 0)
        h = torch.tanh(sum(w1[k] * op(x) for k, op in enumerate(self.cell1)))  # type: ignore[arg-type]
        return torch.sigmoid(sum(w2[k] * op(h) for k, op in enumerate(self.cell2)))  # type: ignore[arg-type]


class TinyDiscriminator(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1 + channels, 2, 3, padding=1), nn.Tanh(), nn.Conv2d(2, 1, 1))

    def forward(self, masks: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([masks * 2 - 1, images * 2 - 1], 1))


def tiny_segmenter(channels: int) -> nn.Module:
    """No BatchNorm: the reference has no running statistics to mirror (test_genseg.py covers them)."""
    return nn.Sequential(nn.Conv2d(channels, 2, 3, padding=1), nn.Tanh(), nn.Conv2d(2, 1, 3, padding=1))


# --- the reference: flat vectors, explicit formulas ------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Names and shapes of a parameter set laid out as one flat vector."""

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]

    @staticmethod
    def of(named: dict[str, torch.Tensor]) -> Layout:
        return Layout(tuple(named), tuple(t.shape for t in named.values()))

    def split(self, vec: torch.Tensor) -> dict[str, torch.Tensor]:
        out, i = {}, 0
        for n, s in zip(self.names, self.shapes, strict=True):
            k = math.prod(s)
            out[n] = vec[i : i + k].view(s)
            i += k
        assert i == vec.numel()
        return out

    def flat(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([tensors[n].detach().reshape(-1) for n in self.names])


Net = Callable[..., torch.Tensor]


@dataclass
class Models:
    """The modules under training and the reference's pure functions of flat vectors."""

    gen: nn.Module
    disc: nn.Module
    seg: nn.Module
    g_layout: Layout
    a_layout: Layout
    h_layout: Layout
    s_layout: Layout
    gen_fn: Net  # (theta_G, A, masks) -> images
    disc_fn: Net  # (theta_H, masks, images) -> logits
    seg_fn: Net  # (theta_S, images) -> logits


def _conv_cell(p: dict[str, torch.Tensor], cell: str, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return sum(  # type: ignore[return-value]
        w[k] * F.conv2d(x, p[f"{cell}.{k}.weight"], p[f"{cell}.{k}.bias"], padding=size // 2)
        for k, size in enumerate(KERNELS)
    )


def tiny_models(channels: int = 2) -> Models:
    torch.manual_seed(0)
    gen, disc, seg = (
        TinyGenerator(channels).to(DTYPE),
        TinyDiscriminator(channels).to(DTYPE),
        tiny_segmenter(channels).to(DTYPE),
    )
    with torch.no_grad():  # away from the uniform start, and weights large enough for curvature
        for a in gen.arch_parameters():
            a.normal_(0.0, 0.5)
        for p in gen.weight_parameters():
            p.normal_(0.0, 0.4)
    g_layout = Layout.of(gen.named_weight_parameters())
    a_layout = Layout(("alpha1", "alpha2"), (torch.Size([3]), torch.Size([3])))
    h_layout, s_layout = Layout.of(dict(disc.named_parameters())), Layout.of(dict(seg.named_parameters()))

    def gen_fn(theta: torch.Tensor, alpha: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        p, a = g_layout.split(theta), a_layout.split(alpha)
        h = torch.tanh(_conv_cell(p, "cell1", torch.softmax(a["alpha1"], 0), masks * 2 - 1))
        return torch.sigmoid(_conv_cell(p, "cell2", torch.softmax(a["alpha2"], 0), h))

    def disc_fn(theta: torch.Tensor, masks: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        p = h_layout.split(theta)
        x = torch.cat([masks * 2 - 1, images * 2 - 1], 1)
        x = torch.tanh(F.conv2d(x, p["net.0.weight"], p["net.0.bias"], padding=1))
        return F.conv2d(x, p["net.2.weight"], p["net.2.bias"])

    def seg_fn(theta: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        p = s_layout.split(theta)
        x = torch.tanh(F.conv2d(images, p["0.weight"], p["0.bias"], padding=1))
        return F.conv2d(x, p["2.weight"], p["2.bias"], padding=1)

    return Models(gen, disc, seg, g_layout, a_layout, h_layout, s_layout, gen_fn, disc_fn, seg_fn)


def searchable_models(channels: int = 3) -> Models:
    """The real generator and discriminator; their forward via functional_call on the reference's vectors."""
    torch.manual_seed(0)
    gen = SearchableGenerator(channels, (SIZE, SIZE), width=2, dropout=0.0).to(DTYPE)
    disc = PatchDiscriminator(channels, (SIZE, SIZE), width=2).to(DTYPE)
    seg = tiny_segmenter(channels).to(DTYPE)
    with torch.no_grad():
        for a in gen.arch_parameters():
            a.normal_(0.0, 0.5)
        for p in gen.weight_parameters():
            p.mul_(10.0)  # Pix2Pix's 0.02 init leaves the tiny generator nearly linear
    arch_ids = {id(a) for a in gen.arch_parameters()}
    g_layout = Layout.of({n: p for n, p in gen.named_parameters() if id(p) not in arch_ids})
    a_layout = Layout.of({n: p for n, p in gen.named_parameters() if id(p) in arch_ids})
    h_layout, s_layout = Layout.of(dict(disc.named_parameters())), Layout.of(dict(seg.named_parameters()))

    def gen_fn(theta: torch.Tensor, alpha: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return functional_call(gen, {**g_layout.split(theta), **a_layout.split(alpha)}, (masks,))

    def disc_fn(theta: torch.Tensor, masks: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        return functional_call(disc, h_layout.split(theta), (masks, images))

    def seg_fn(theta: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        return functional_call(seg, s_layout.split(theta), (images,))

    return Models(gen, disc, seg, g_layout, a_layout, h_layout, s_layout, gen_fn, disc_fn, seg_fn)


MODEL_SETS = {"tiny": tiny_models, "searchable": searchable_models}


def bce(logits: torch.Tensor, target: float | torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy on logits: -[t log s(z) + (1 - t) log(1 - s(z))]."""
    t = torch.as_tensor(target, dtype=logits.dtype)
    return -(t * F.logsigmoid(logits) + (1 - t) * F.logsigmoid(-logits)).mean()


@dataclass
class AdamState:
    m: torch.Tensor
    v: torch.Tensor
    t: int = 0


@dataclass
class RmsState:
    v: torch.Tensor
    buf: torch.Tensor


@dataclass
class RefState:
    """Every learnable vector and every optimiser's state."""

    g: torch.Tensor
    a: torch.Tensor
    h: torch.Tensor
    s: torch.Tensor
    opt_g: AdamState
    opt_a: AdamState
    opt_h: AdamState
    opt_s: RmsState

    @staticmethod
    def start(m: Models) -> RefState:
        g = m.g_layout.flat(dict(m.gen.named_parameters()))
        a = m.a_layout.flat(dict(m.gen.named_parameters()))
        h = m.h_layout.flat(dict(m.disc.named_parameters()))
        s = m.s_layout.flat(dict(m.seg.named_parameters()))

        def adam(x: torch.Tensor) -> AdamState:
            return AdamState(torch.zeros_like(x), torch.zeros_like(x))

        return RefState(
            g, a, h, s, adam(g), adam(a), adam(h), RmsState(torch.zeros_like(s), torch.zeros_like(s))
        )


def adam_step(
    x: torch.Tensor, grad: torch.Tensor, st: AdamState, lr: float, wd: float
) -> tuple[torch.Tensor, AdamState]:
    """Kingma & Ba with L2 weight decay added to the gradient (torch.optim.Adam, A.6's betas)."""
    b1, b2 = ADAM_BETAS
    d = grad + wd * x
    t = st.t + 1
    m = b1 * st.m + (1 - b1) * d
    v = b2 * st.v + (1 - b2) * d * d
    return x - lr * (m / (1 - b1**t)) / (torch.sqrt(v / (1 - b2**t)) + ADAM_EPS), AdamState(m, v, t)


def rmsprop_step(
    x: torch.Tensor, grad: torch.Tensor, st: RmsState, lr: float, mu: float, wd: float
) -> tuple[torch.Tensor, RmsState]:
    """RMSprop with momentum, not centred, L2 weight decay in the gradient (torch.optim.RMSprop)."""
    d = grad + wd * x
    v = RMS_ALPHA * st.v + (1 - RMS_ALPHA) * d * d
    buf = mu * st.buf + d / (torch.sqrt(v) + RMS_EPS)
    return x - lr * buf, RmsState(v, buf)


@dataclass
class RefIteration:
    g_grad: torch.Tensor
    g_prime: torch.Tensor
    s_grad: torch.Tensor
    s_prime: torch.Tensor
    val_loss: torch.Tensor
    a_grad: torch.Tensor
    h_grad: torch.Tensor
    after: RefState
    second_moments: tuple[torch.Tensor, torch.Tensor] | None
    """The optimizer lookahead's v' of G and of S (the constants it differentiates through)."""


def reference_iteration(
    m: Models,
    st: RefState,
    batch: GenSegBatch,
    lookahead: str,
    alpha: torch.Tensor | None = None,
    frozen: tuple[torch.Tensor, torch.Tensor] | None = None,
    profile: Profile = PROFILE,
) -> RefIteration:
    """One GenSeg iteration from A.3: Eq. 5 (G'), Eq. 7 (S'), Eq. 8 (grad_A and the A step), the real steps.

    ``alpha`` replaces ``st.a`` and ``frozen`` fixes the optimizer lookahead's second
    moments of G and S at given values (the descent check evaluates the objective at
    shifted A, with the preconditioner of the unshifted point).
    """
    assert batch.val_images is not None and batch.val_masks is not None
    p = profile
    g = st.g.clone().requires_grad_(True)
    a = (st.a if alpha is None else alpha).clone().requires_grad_(True)
    h = st.h.clone().requires_grad_(True)
    s = st.s.clone().requires_grad_(True)
    b1, b2 = ADAM_BETAS

    # level 1: the Pix2Pix generator objective on real pairs, and G' (Eq. 5)
    fake = m.gen_fn(g, a, batch.masks)
    l_gan = bce(m.disc_fn(h, batch.masks, fake), 1.0) + LAMBDA_L1 * (fake - batch.images).abs().mean()
    (g_grad,) = torch.autograd.grad(l_gan, g, create_graph=True)
    if lookahead == "sgd":
        g_prime = g - p.gen_lr * g_grad
    else:  # the next Adam step, second moment held constant
        d = g_grad + p.gen_weight_decay * g
        t = st.opt_g.t + 1
        m1 = b1 * st.opt_g.m + (1 - b1) * d
        v1 = b2 * st.opt_g.v + (1 - b2) * d.detach() ** 2 if frozen is None else frozen[0]
        vg = v1
        g_prime = g - p.gen_lr * (m1 / (1 - b1**t)) / (torch.sqrt(v1 / (1 - b2**t)) + ADAM_EPS)

    # level 2: S on images G' makes from the augmented masks + gamma * real pairs, and S' (Eq. 7)
    generated = m.gen_fn(g_prime, a, batch.aug_masks)
    l_train = bce(m.seg_fn(s, generated), batch.aug_masks) + GAMMA * bce(
        m.seg_fn(s, batch.images), batch.masks
    )
    (s_grad,) = torch.autograd.grad(l_train, s, create_graph=True)
    if lookahead == "sgd":
        s_prime = s - p.seg_lr * s_grad
    else:  # the next RMSprop step, square average held constant
        d = s_grad + p.seg_weight_decay * s
        v1 = RMS_ALPHA * st.opt_s.v + (1 - RMS_ALPHA) * d.detach() ** 2 if frozen is None else frozen[1]
        vs = v1
        s_prime = s - p.seg_lr * (p.seg_momentum * st.opt_s.buf + d / (torch.sqrt(v1) + RMS_EPS))

    # level 3: the validation loss of S' and its gradient in A (Eq. 8-11, by autograd on the formulas above)
    val_loss = bce(m.seg_fn(s_prime, batch.val_images), batch.val_masks)
    (a_grad,) = torch.autograd.grad(val_loss, a)

    # H: real pairs -> 1, detached generated pairs -> 0 (descending this ascends the GAN objective, Eq. 6)
    fake_d = fake.detach()
    l_disc = 0.5 * (
        bce(m.disc_fn(h, batch.masks, batch.images), 1.0) + bce(m.disc_fn(h, batch.masks, fake_d), 0.0)
    )
    (h_grad,) = torch.autograd.grad(l_disc, h)

    # the real updates (A.6): Adam on A, G, H; RMSprop on S
    a_new, opt_a = adam_step(a.detach(), a_grad, st.opt_a, p.arch_lr, p.arch_weight_decay)
    g_new, opt_g = adam_step(g.detach(), g_grad.detach(), st.opt_g, p.gen_lr, p.gen_weight_decay)
    h_new, opt_h = adam_step(h.detach(), h_grad, st.opt_h, p.gen_lr, p.gen_weight_decay)
    s_new, opt_s = rmsprop_step(
        s.detach(), s_grad.detach(), st.opt_s, p.seg_lr, p.seg_momentum, p.seg_weight_decay
    )
    return RefIteration(
        g_grad.detach(),
        g_prime.detach(),
        s_grad.detach(),
        s_prime.detach(),
        val_loss.detach(),
        a_grad,
        h_grad,
        RefState(g_new, a_new, h_new, s_new, opt_g, opt_a, opt_h, opt_s),
        None if lookahead == "sgd" else (vg, vs),
    )


# --- helpers for the comparison --------------------------------------------------------------


def batches(channels: int, n: int = 2) -> list[GenSegBatch]:
    g = torch.Generator().manual_seed(7)
    out = []
    for _ in range(n):
        masks = (torch.rand(2, 1, SIZE, SIZE, generator=g) > 0.6).to(DTYPE)
        images = torch.rand(2, channels, SIZE, SIZE, generator=g).to(DTYPE)
        val_masks = (torch.rand(2, 1, SIZE, SIZE, generator=g) > 0.5).to(DTYPE)
        val_images = torch.rand(2, channels, SIZE, SIZE, generator=g).to(DTYPE)
        out.append(GenSegBatch(masks, images, torch.flip(masks, [3]), val_images, val_masks))
    return out


def rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).norm() / want.norm().clamp_min(1e-300))


def check(
    errors: dict[str, float],
    name: str,
    got: torch.Tensor,
    want: torch.Tensor,
    live: torch.Tensor | None = None,
) -> None:
    """Record the relative error of ``got`` against the reference ``want`` (on the ``live`` coordinates)."""
    assert got.shape == want.shape, f"{name}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    if live is not None:
        got, want = got[live], want[live]
    assert float(want.norm()) > 0, f"{name}: the reference quantity is 0, the comparison would be empty"
    errors[name] = rel(got, want)


def live(grad: torch.Tensor, x: torch.Tensor, wd: float) -> torch.Tensor:
    """Coordinates whose optimiser input ``grad + wd x`` is not rounding noise.

    A bias that an InstanceNorm subtracts (the searchable generator's and the patch
    discriminator's) has gradient exactly 0 in exact arithmetic, computed as noise
    (~1e-17), and starts at 0; Adam divides that noise by ``sqrt(v) + eps`` and the
    two sides take different, meaningless steps on weights that do not change the
    function. Those are left out of the comparison of *updates* (a few % of the
    coordinates; weights whose gradient is exactly 0, e.g. kernel taps that only
    ever see padding, still move by weight decay and stay in).
    """
    d = (grad + wd * x).abs()
    keep = d > 1e-10 * d.max()
    assert float(keep.double().mean()) > 0.9, "too many noise-level coordinates for a meaningful comparison"
    return keep


def current(m: Models) -> RefState:
    """The modules' weights as flat vectors (optimiser state left empty: only the vectors are compared)."""
    return RefState.start(m)


def trainer_for(m: Models, lookahead: str, profile: Profile = PROFILE) -> GenSegTrainer:
    cfg = GenSegConfig(lookahead=lookahead, gamma=GAMMA, lambda_l1=LAMBDA_L1, arch_warmup=0)  # type: ignore[arg-type]
    return GenSegTrainer(cfg, m.gen, m.disc, m.seg, profile, record=True)  # type: ignore[arg-type]


# --- the tests -------------------------------------------------------------------------------


def test_tiny_modules_compute_the_reference_functions() -> None:
    """The reference's pure functions are the functions the tiny modules compute (else nothing below means much)."""
    m = tiny_models()
    st = RefState.start(m)
    b = batches(2, 1)[0]
    with torch.no_grad():
        torch.testing.assert_close(m.gen(b.masks), m.gen_fn(st.g, st.a, b.masks), rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(
            m.disc(b.masks, b.images), m.disc_fn(st.h, b.masks, b.images), rtol=1e-13, atol=1e-13
        )
        torch.testing.assert_close(m.seg(b.images), m.seg_fn(st.s, b.images), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("lookahead", ["sgd", "optimizer"])
@pytest.mark.parametrize("model_set", ["tiny", "searchable"])
def test_two_iterations_match_the_reference_on_every_quantity(model_set: str, lookahead: str) -> None:
    channels = 2 if model_set == "tiny" else 3
    m = MODEL_SETS[model_set](channels)
    trainer = trainer_for(m, lookahead)
    st = RefState.start(m)
    for it, batch in enumerate(batches(channels), 1):
        ref = reference_iteration(m, st, batch, lookahead)
        before = current(m)
        trainer.end_to_end_step(batch)
        rec = trainer.record
        assert rec is not None
        after = current(m)
        e: dict[str, float] = {}
        g_live = live(ref.g_grad, st.g, PROFILE.gen_weight_decay)
        s_live = live(ref.s_grad, st.s, PROFILE.seg_weight_decay)
        check(e, "g_G", m.g_layout.flat(rec.g_grads), ref.g_grad)
        check(e, "G'", m.g_layout.flat(rec.g_prime), ref.g_prime, g_live)
        check(e, "G' - G", m.g_layout.flat(rec.g_prime) - before.g, ref.g_prime - st.g, g_live)
        check(e, "g_S", m.s_layout.flat(rec.s_grads), ref.s_grad)
        check(e, "S' - S", m.s_layout.flat(rec.s_prime) - before.s, ref.s_prime - st.s, s_live)
        check(e, "L_val(S')", rec.val_loss.reshape(1), ref.val_loss.reshape(1))
        check(e, "grad_A", torch.cat([g.flatten() for g in rec.arch_grads]), ref.a_grad)
        check(e, "grad_H", torch.cat([g.flatten() for g in rec.d_grads]), ref.h_grad)
        for name, got, want, was, keep in (
            ("A step", after.a, ref.after.a, st.a, None),
            ("G step", after.g, ref.after.g, st.g, g_live),
            ("H step", after.h, ref.after.h, st.h, live(ref.h_grad, st.h, PROFILE.gen_weight_decay)),
            ("S step", after.s, ref.after.s, st.s, s_live),
        ):
            check(e, name, got - was, want - was, keep)
        if lookahead == "optimizer":  # the lookahead is the step the real optimisers then take
            check(e, "G' = G after the step", m.g_layout.flat(rec.g_prime), after.g)
            check(e, "S' = S after the step", m.s_layout.flat(rec.s_prime), after.s)
        bad = {k: f"{v:.1e}" for k, v in e.items() if not v < BOUND}
        assert not bad, (
            f"iteration {it} ({model_set}, lookahead {lookahead}): relative errors above {BOUND:g}: {bad}"
        )
        st = ref.after


@pytest.mark.parametrize("lookahead", ["sgd", "optimizer"])
def test_a_step_against_grad_A_lowers_the_unrolled_validation_loss(lookahead: str) -> None:
    """f(A) = L_val(S'(G'(A))), recomputed by the reference: f(A - e u) < f(A) < f(A + e u), u = grad_A / |grad_A|.

    With the implementation's ``grad_A`` at the second iteration (optimiser state
    non-empty). e = 1e-4: the second-order term (~e^2 |f''|) is far below the
    first-order one, and the decrease must match e |grad_A| to 1 %. For the
    optimizer lookahead, f holds the lookahead's second moments at their value at A:
    the objective grad_A differentiates (see the next test for how close that is to
    the exact one). The trainer's own A step (Adam, lr 1e-4, no weight decay, first
    step: ~ -lr sign(grad_A)) must lower the first iteration's f.
    """
    m = tiny_models()
    profile = PROFILE.model_copy(update={"arch_lr": 1e-4, "arch_weight_decay": 0.0})  # a pure descent step
    trainer = trainer_for(m, lookahead, profile)
    first, second = batches(2)

    def objective(st: RefState, batch: GenSegBatch, at: RefIteration) -> Callable[[torch.Tensor], float]:
        def f(alpha: torch.Tensor) -> float:
            return float(
                reference_iteration(m, st, batch, lookahead, alpha, at.second_moments, profile).val_loss
            )

        return f

    st = RefState.start(m)
    at = reference_iteration(m, st, first, lookahead, profile=profile)
    f = objective(st, first, at)
    a0 = current(m).a
    trainer.end_to_end_step(first)
    f0, f_after = f(a0), f(current(m).a)
    assert f_after < f0, f"the trainer's A step raised the unrolled validation loss: {f0!r} -> {f_after!r}"

    st = at.after  # the reference's own state after the first iteration
    at = reference_iteration(m, st, second, lookahead, profile=profile)
    f = objective(st, second, at)
    a0 = current(m).a
    trainer.end_to_end_step(second)
    rec = trainer.record
    assert rec is not None
    grad_a = torch.cat([g.flatten() for g in rec.arch_grads])
    assert rel(grad_a, at.a_grad) < BOUND
    u, e = grad_a / grad_a.norm(), 1e-4
    f0, down, up = f(a0), f(a0 - e * u), f(a0 + e * u)
    assert down < f0 < up, f"f(A - e u) = {down!r}, f(A) = {f0!r}, f(A + e u) = {up!r}"
    assert (f0 - down) == pytest.approx(e * float(grad_a.norm()), rel=1e-2)


def test_optimizer_hypergradient_is_the_exact_derivative_once_the_state_is_warm() -> None:
    """Holding v' fixed (the optimizer lookahead's approximation) is close to exact after 20 steps, far off at 1.

    The exact objective recomputes the second moments from the gradient at every A
    (central differences, h = 1e-6, over the 6 alphas of the tiny generator). At the
    first iteration the Adam / RMSprop step is ~ lr * sign(g), whose exact derivative
    is ~0, while the detached one is lr / |g|: they differ by orders of magnitude (the
    reason for ``arch_warmup``). From ~20 iterations on the current gradient is <= 5 %
    of the bias-corrected second moment and the two agree (measured: 0.2 % at 20,
    0.4 % at 40; 40 % at 10, 2e4x at 1).
    """
    m = tiny_models()
    st = RefState.start(m)
    h = 1e-6
    errors = {}
    for it, batch in enumerate(batches(2, 20), 1):
        at = reference_iteration(m, st, batch, "optimizer")
        if it in (1, 20):
            exact = torch.zeros_like(st.a)
            for i in range(st.a.numel()):
                e = torch.zeros_like(st.a)
                e[i] = h
                up = float(reference_iteration(m, st, batch, "optimizer", st.a + e).val_loss)
                down = float(reference_iteration(m, st, batch, "optimizer", st.a - e).val_loss)
                exact[i] = (up - down) / (2 * h)
            errors[it] = rel(at.a_grad, exact)
        st = at.after
    assert errors[1] > 10, errors
    assert errors[20] < 0.02, errors


def test_the_lookaheads_leave_the_optimiser_state_untouched() -> None:
    """The optimizer lookahead reads m, v, the momentum buffer and the step count; only the real step writes them."""
    m = tiny_models()
    trainer = trainer_for(m, "optimizer")
    first, second = batches(2)
    trainer.end_to_end_step(first)

    def snapshot() -> list[torch.Tensor]:
        return [
            t.clone()
            for opt in (trainer.opt_g, trainer.opt_s)
            for state in opt.state.values()
            for t in state.values()
            if isinstance(t, torch.Tensor)
        ]

    was = snapshot()
    assert was, "the first step must have created optimiser state"
    g_rule, s_rule = trainer.lookahead_rules()
    params = trainer.g_params
    grads = [torch.ones_like(p) for p in params]
    g_rule(params, grads)
    s_rule(trainer.s_params, [torch.ones_like(p) for p in trainer.s_params])
    for a, b in zip(was, snapshot(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert int(trainer.opt_g.state[params[0]]["step"]) == 1
