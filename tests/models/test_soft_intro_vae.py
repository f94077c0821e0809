"""Soft-Intro VAE as GenSeg's generator: its ELBO terms, both players' objectives, and its level-1 game.

The interface properties every generator shares are in tests/models/test_generators.py.
Here: the KL term against torch's Gaussian KL, the soft exponential ELBO against
numbers worked by hand, E's and D's objectives against the Soft-Intro VAE losses
written out from their terms (same random draws), and a few steps of the game on
a tiny fixed batch improving the reconstruction.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal
from torch.distributions import kl_divergence as torch_kl

from genseg_bench.models.generators import build_generator
from genseg_bench.models.soft_intro_vae import (
    SoftIntroEncoder,
    SoftIntroVAEGenerator,
    exp_elbo,
    kl_divergence,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _models(**kw: object) -> tuple[SoftIntroVAEGenerator, SoftIntroEncoder]:
    torch.manual_seed(0)
    gen = SoftIntroVAEGenerator(3, (16, 16), width=4, z_dim=8, **kw)  # type: ignore[arg-type]
    enc = gen.build_partner(3, (16, 16), width=4)
    assert isinstance(enc, SoftIntroEncoder)
    return gen, enc


def _pair(n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    masks = (torch.rand(n, 1, 16, 16, generator=g) > 0.6).float()
    images = (0.3 + 0.5 * masks + 0.1 * torch.rand(n, 3, 16, 16, generator=g)).clamp(0, 1)
    return masks, images


def test_the_kl_term_is_the_gaussian_kl_to_the_standard_normal() -> None:
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    expected = torch_kl(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(kl_divergence(mu, logvar), expected)
    assert torch.all(kl_divergence(torch.zeros(2, 3), torch.zeros(2, 3)) == 0)


def test_the_soft_elbo_by_hand() -> None:
    """rec (2, 4), KL (1, 0), scale 1/4, beta_rec 1, beta_neg 2: exp(-1/2 (2 + 2)) and exp(-1/2 (4 + 0))."""
    value = exp_elbo(
        torch.tensor([2.0, 4.0]), torch.tensor([1.0, 0.0]), scale=0.25, beta_rec=1.0, beta_neg=2.0
    )
    assert float(value) == pytest.approx(math.exp(-2.0))
    value = exp_elbo(
        torch.tensor([2.0, 0.0]), torch.tensor([1.0, 0.0]), scale=0.25, beta_rec=1.0, beta_neg=2.0
    )
    assert float(value) == pytest.approx(0.5 * (math.exp(-2.0) + 1.0))


def _grad(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> tuple[torch.Tensor, ...]:
    return torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True, materialize_grads=True)


def _sse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.mse_loss(y, x, reduction="none").flatten(1).sum(1)


def _kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return torch_kl(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(1)


def _draw(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return mu + torch.randn_like(mu) * (0.5 * logvar).exp()


def test_both_objectives_are_soft_intro_vae_s() -> None:
    """L_D and L_E against the code's losses written out (the same random draws, in the same order)."""
    b_rec, b_kl, b_neg, g_r = 0.7, 0.4, 3.0, 0.3
    gen, enc = _models(beta_rec=b_rec, beta_kl=b_kl, beta_neg=b_neg, gamma_r=g_r)
    masks, images = _pair()
    scale = 1 / (3 * 16 * 16)

    torch.manual_seed(11)
    loss_d, fake = gen.generator_loss(enc, masks, images, lambda_l1=0.0)
    torch.manual_seed(11)
    z = _draw(*enc(images, masks)).detach()
    rec = gen.decode(z, masks)
    fake_ref = gen.decode(torch.randn(2, 8), masks)
    torch.testing.assert_close(fake, fake_ref)
    rec_mu, rec_lv = enc(rec, masks)
    fake_mu, fake_lv = enc(fake_ref, masks)
    rec_rec = gen.decode(_draw(rec_mu, rec_lv).detach(), masks)
    rec_fake = gen.decode(_draw(fake_mu, fake_lv).detach(), masks)
    expected_d = scale * (
        b_rec * _sse(images, rec).mean()
        + 0.5 * b_kl * (_kl(rec_mu, rec_lv).mean() + _kl(fake_mu, fake_lv).mean())
        + 0.5 * g_r * b_rec * (_sse(rec.detach(), rec_rec).mean() + _sse(fake_ref.detach(), rec_fake).mean())
    )
    torch.testing.assert_close(loss_d, expected_d)
    d_params = [*gen.arch_parameters(), *gen.weight_parameters()]  # the same function: the same gradient too
    for got, want in zip(_grad(loss_d, d_params), _grad(expected_d, d_params), strict=True):
        torch.testing.assert_close(got, want)

    torch.manual_seed(12)
    loss_e = gen.partner_loss(enc, masks, fake, images)
    torch.manual_seed(12)
    mu, lv = enc(images, masks)
    rec = gen.decode(_draw(mu, lv), masks)
    real = scale * (b_rec * _sse(images, rec).mean() + b_kl * _kl(mu, lv).mean())
    soft = []
    for inp, target in ((rec.detach(), rec), (fake.detach(), fake.detach())):
        x_mu, x_lv = enc(inp, masks)
        x_rec = gen.decode(_draw(x_mu, x_lv), masks)
        soft.append(torch.exp(-2 * scale * (b_rec * _sse(target, x_rec) + b_neg * _kl(x_mu, x_lv))).mean())
    expected_e = real + 0.25 * (soft[0] + soft[1])
    torch.testing.assert_close(loss_e, expected_e)
    e_params = list(enc.parameters())
    for got, want in zip(_grad(loss_e, e_params), _grad(expected_e, e_params), strict=True):
        torch.testing.assert_close(got, want)


def test_each_player_s_objective_moves_its_own_weights() -> None:
    gen, enc = _models()
    masks, images = _pair()
    loss_d, fake = gen.generator_loss(enc, masks, images, lambda_l1=0.0)
    d_grads = torch.autograd.grad(
        loss_d, [*gen.arch_parameters(), *gen.weight_parameters()], allow_unused=True
    )
    assert all(g is not None and float(g.abs().sum()) > 0 for g in d_grads[: len(gen.arch_parameters())])
    loss_e = gen.partner_loss(enc, masks, fake, images)
    e_grads = torch.autograd.grad(loss_e, list(enc.parameters()), allow_unused=True)
    assert sum(g is not None and float(g.abs().sum()) > 0 for g in e_grads) == len(e_grads)


def test_the_game_learns_to_reconstruct_a_fixed_batch() -> None:
    """A few alternating E and D steps (same draws each step): D(E(x)) gets closer to x."""
    gen, enc = _models()
    masks, images = _pair()
    opt_d = torch.optim.Adam(gen.weight_parameters(), lr=2e-3)
    opt_e = torch.optim.Adam(enc.parameters(), lr=2e-3)

    def rec_error() -> float:
        with torch.no_grad():
            mu, _ = enc(images, masks)
            return float((gen.decode(mu, masks) - images).abs().mean())

    before = rec_error()
    for _ in range(25):
        torch.manual_seed(5)
        loss_d, fake = gen.generator_loss(enc, masks, images, lambda_l1=0.0)
        d_grads = torch.autograd.grad(
            loss_d, gen.weight_parameters(), allow_unused=True, materialize_grads=True
        )
        loss_e = gen.partner_loss(enc, masks, fake, images)
        e_grads = torch.autograd.grad(loss_e, list(enc.parameters()))
        for opt, params, grads in (
            (opt_d, gen.weight_parameters(), d_grads),
            (opt_e, list(enc.parameters()), e_grads),
        ):
            for p, g in zip(params, grads, strict=True):
                p.grad = g
            opt.step()
    assert rec_error() < 0.6 * before, (before, rec_error())


def test_odd_sizes_draw_fresh_noise_and_what_is_refused() -> None:
    gen = build_generator("softintrovae", 1, (21, 13), width=4)
    masks = torch.ones(2, 1, 21, 13)
    with torch.no_grad():
        first, second = gen(masks), gen(masks)
    assert first.shape == (2, 1, 21, 13) and float((first - second).abs().max()) > 0, "z is drawn per call"
    enc = gen.build_partner(1, (21, 13), width=4)
    loss, fake = gen.generator_loss(enc, masks, torch.rand(2, 1, 21, 13), lambda_l1=0.0)
    assert fake.shape == (2, 1, 21, 13) and loss.ndim == 0
