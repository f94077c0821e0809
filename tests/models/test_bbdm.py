"""BBDM as GenSeg's generator: the bridge's marginals, the K-step sampler, and its own level 1.

The interface properties every generator shares (shape, range, cells, gradient
through G', GenSeg fits) are in tests/models/test_generators.py; here is what
defines BBDM: ``q(x_t | x0, y)`` is pinned to x0 at t = 0 and to y at t = T with
the variance ``2 s (m_t - m_t^2)`` between, the sampler is BBDM's deterministic
skip-sampling update (checked against the formula written out for K = 4 with a
known denoiser), and the denoising objective trains on a tiny fixed batch.
"""

from __future__ import annotations

import math

import pytest
import torch

from genseg_bench.models.bbdm import BBDMGenerator
from genseg_bench.models.generators import build_generator

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _gen(**kw: object) -> BBDMGenerator:
    torch.manual_seed(0)
    return BBDMGenerator(3, (16, 16), width=4, **kw)  # type: ignore[arg-type]


def _pair(n: int = 2, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    masks = (torch.rand(n, 1, size, size, generator=g) > 0.6).float()
    images = (0.3 + 0.5 * masks + 0.1 * torch.rand(n, 3, size, size, generator=g)).clamp(0, 1)
    return masks, images


def test_the_bridge_starts_at_the_image_ends_at_the_mask_and_has_bbdm_s_variance() -> None:
    gen = _gen(max_var=0.7)
    masks, images = _pair(3)
    x0, y = images * 2 - 1, gen.condition(masks)
    assert y.shape == x0.shape and set(y.unique().tolist()) <= {-1.0, 1.0}
    noise = torch.randn_like(x0)
    for t, expected in ((0, x0), (gen.timesteps, y)):
        x_t, objective = gen.q_sample(x0, y, torch.full((3,), t), noise)
        torch.testing.assert_close(x_t, expected, rtol=0, atol=1e-6)
        torch.testing.assert_close(objective, x_t - x0)
    t, m = 300, 0.3  # between: (1 - m) x0 + m y + sqrt(2 s (m - m^2)) eps
    x_t, objective = gen.q_sample(x0, y, torch.full((3,), t), noise)
    torch.testing.assert_close(x_t, (1 - m) * x0 + m * y + math.sqrt(2 * 0.7 * (m - m * m)) * noise)
    torch.testing.assert_close(objective, m * (y - x0) + math.sqrt(2 * 0.7 * (m - m * m)) * noise)


def test_the_sampler_is_bbdm_s_deterministic_skip_update() -> None:
    """K = 4 from y with eps_theta(x, t) = 0.3 x + 0.1 t / T (a known denoiser), against the update written out."""
    gen = _gen(sample_steps=4)
    gen.denoise = lambda x, y, t: 0.3 * x + 0.1 * t.float()[:, None, None, None] / gen.timesteps  # type: ignore[method-assign]
    masks, _ = _pair()
    y = masks.expand(-1, 3, -1, -1) * 2 - 1

    def var(m: float) -> float:
        return 2 * (m - m * m)

    x = y
    ms = [1.0, 0.75, 0.5, 0.25, 0.0]  # t = T, 3T/4, T/2, T/4, then x0
    for m_t, m_s in zip(ms, ms[1:], strict=False):
        x0_hat = (x - (0.3 * x + 0.1 * m_t)).clamp(-1, 1)
        coef = 0.0 if m_t == 1.0 else math.sqrt(var(m_s) / var(m_t))
        x = (1 - m_s) * x0_hat + m_s * y + coef * (x - (1 - m_t) * x0_hat - m_t * y)
    torch.testing.assert_close(gen(masks), (x + 1) / 2)
    assert gen.sample_times() == [1000, 750, 500, 250]


def test_k_is_the_number_of_denoiser_evaluations_of_a_sample() -> None:
    for k in (1, 2, 4):
        gen = _gen(sample_steps=k)
        calls: list[int] = []
        real = gen.denoise

        def counted(
            x: torch.Tensor, y: torch.Tensor, t: torch.Tensor, real=real, calls=calls
        ) -> torch.Tensor:  # type: ignore[no-untyped-def]
            calls.append(int(t[0]))
            return real(x, y, t)

        gen.denoise = counted  # type: ignore[method-assign]
        with torch.no_grad():
            gen(_pair()[0])
        assert len(calls) == k and calls[0] == gen.timesteps


def test_the_denoising_objective_trains_on_a_fixed_batch() -> None:
    """Same t and noise every step: the L1 loss falls, and so does the one-step reconstruction's error."""
    gen = _gen()
    masks, images = _pair()
    opt = torch.optim.Adam(gen.weight_parameters(), lr=2e-3)
    assert gen.build_partner(3, (16, 16), width=4) is None

    def loss_and_error() -> tuple[torch.Tensor, float]:
        torch.manual_seed(7)
        loss, fake = gen.generator_loss(None, masks, images, lambda_l1=0.0)
        fake = fake.detach()
        assert fake.shape == images.shape and 0 <= float(fake.min()) <= float(fake.max()) <= 1
        return loss, float((fake - images).abs().mean())

    first, err0 = loss_and_error()
    for _ in range(30):
        loss, _ = loss_and_error()
        opt.zero_grad()
        loss.backward()
        opt.step()
    last, err1 = loss_and_error()
    assert float(last.detach()) < 0.7 * float(first.detach()), (float(first.detach()), float(last.detach()))
    assert err1 < 0.7 * err0, (err0, err1)


def test_odd_sizes_and_what_is_refused() -> None:
    gen = build_generator("bbdm", 1, (21, 13), width=4)
    out = gen(torch.ones(2, 1, 21, 13))
    assert out.shape == (2, 1, 21, 13)
    loss, fake = gen.generator_loss(None, torch.ones(2, 1, 21, 13), torch.rand(2, 1, 21, 13), lambda_l1=0.0)
    assert fake.shape == (2, 1, 21, 13) and loss.ndim == 0
    with pytest.raises(ValueError, match="sample_steps"):
        BBDMGenerator(3, (16, 16), width=4, sample_steps=0)
