"""Soft-Intro VAE (Daniel & Tamar, CVPR 2021) conditioned on the mask, as a GenSeg generator.

Followed: the paper (Sec. 3-4, Eq. 6-7 and Alg. 1: the encoder's and the decoder's
objectives with ``beta_rec``, ``beta_kl``, ``beta_neg`` and the soft exponential of
the fakes' ELBO) and the public code taldatech/soft-intro-vae-pytorch
(``soft_intro_vae/train_soft_intro_vae.py``: ``train_soft_intro_vae``, ``calc_kl``,
``calc_reconstruction_loss``, ``reparameterize``), with its image defaults. Own
code; the networks are small ones written here.

**Model.** A conditional VAE from the mask to the image: the decoder ``D(z, m)``
is the generator G, the encoder ``E(x, m) -> (mu, logvar)`` of a diagonal Gaussian
over ``z`` (``z_dim``) is its level-1 partner H. ``forward(masks)`` draws ``z ~ N(0,
I)`` inside (the generator's noise source, as Pix2Pix's dropout is) and returns
``D(z, m)``, differentiable in D's weights and cells. The code's conditional model
appends a class vector to ``z``; for a mask the condition is spatial, so here the
mask (downsampled, area) is concatenated to the features at every resolution of D
and to E's input.

**Objectives** (the code's, per batch; ``ELBO``-terms per sample, ``scale = 1 /
(C H W)``; ``rec(x, x') = sum_pixels (x - x')^2``, ``KL(mu, logvar) = -1/2 sum_j (1 +
logvar_j - mu_j^2 - exp logvar_j)``, the KL to N(0, I)). With ``z ~ E(x)``,
``x_r = D(z)`` and fakes ``x_f = D(z_p)``, ``z_p ~ N(0, I)``:

* E (:meth:`SoftIntroVAEGenerator.partner_loss`): ``scale (beta_rec rec(x, x_r) +
  beta_kl KL(E(x)))`` on real data, plus ``1/4 sum_{x' in {x_r, x_f}} mean exp(-2 scale
  (beta_rec rec(x', D(E(x'))) + beta_neg KL(E(x'))))`` on the detached
  reconstructions and fakes: the encoder's *soft* push to give generated data a
  low ELBO (:func:`exp_elbo`);
* D (:meth:`SoftIntroVAEGenerator.generator_loss`): ``scale (beta_rec rec(x,
  D(sg z)) + beta_kl / 2 (KL(E(x_r)) + KL(E(x_f))) + gamma_r beta_rec / 2 (rec(sg x_r,
  D(sg z_r)) + rec(sg x_f, D(sg z_f))))``: reconstruct real data and make the
  encoder see reconstructions and fakes as likely.

Defaults ``beta_rec = beta_kl = 1``, ``beta_neg = 256``, ``gamma_r = 1e-8``,
``z_dim = 128`` (the code's CIFAR-10 / SVHN setting, 32 px images). In GenSeg both
updates are taken from the same iteration's weights (the trainer computes every
gradient, then steps; the code steps E, then computes D's loss with the new E).

**Networks.** D: ``z`` -> linear -> ``width * min(2**n, 8)`` channels at the lowest
resolution (~4 px, ``n = floor(log2(min side)) - 2`` upsamplings, 1 to 5), then per
resolution: a searchable upsampling cell, GroupNorm, leaky ReLU, the mask
concatenated, 3x3 convolution, GroupNorm, leaky ReLU; a 5x5 convolution (the code's
``predict``) and a sigmoid to [0, 1] (the code's decoder has no output
nonlinearity; the suite's images are in [0, 1]). E mirrors it with plain stride-2
4x4 convolutions and a linear layer to ``2 z_dim``. GroupNorm instead of the code's
BatchNorm: no running statistics (see :mod:`genseg_bench.models.generators`); E is
inside the graph of G' too, like GenSeg's discriminator.

**Searchable cells** (paper App. I: "incorporating our multi-branch convolutional
cells into their generator networks"): the decoder's upsamplings ``up1 .. upN``
(4-2-1 / 6-2-2 / 8-2-3 transposed convolutions; the code upsamples by nearest
neighbour, which has no weights, as in SPADE). The encoder has none: it is H, not G.

2D only (3D is a clear error). Sides that are not a multiple of ``2**n`` are
zero-padded and cropped back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from genseg_bench.models.generator import CellMode, SearchableCell
from genseg_bench.models.generators import DropoutFreeGenerator


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, exp logvar) || N(0, I))`` per sample: ``-1/2 sum_j (1 + logvar - mu^2 - exp logvar)``."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).flatten(1).sum(1)


def reconstruction_error(x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """Squared error summed over every pixel and channel, per sample (the code's ``mse`` with ``reduction="none"``)."""
    return (recon.float() - x.float()).pow(2).flatten(1).sum(1)


def exp_elbo(
    rec_error: torch.Tensor, kl: torch.Tensor, *, scale: float, beta_rec: float, beta_neg: float
) -> torch.Tensor:
    """``mean exp(-2 scale (beta_rec rec + beta_neg KL))``: the soft exponential of a negative ELBO (Eq. 6)."""
    return torch.exp(-2 * scale * (beta_rec * rec_error + beta_neg * kl)).mean()


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``mu + exp(logvar / 2) eps``, ``eps ~ N(0, I)``."""
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


def upsamplings(spatial: Sequence[int], max_up: int = 5) -> int:
    """Up/downsampling steps: the lowest resolution is ~4 px (1 to ``max_up``)."""
    return max(1, min(max_up, int(math.floor(math.log2(min(spatial)))) - 2))


def _gn(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(channels, 8), channels)


def _padding(spatial: Sequence[int], mult: int) -> list[int]:
    """``F.pad``'s list that pads every side up to a multiple of ``mult`` (at the end)."""
    return [p for s in reversed(spatial) for p in (0, (-s) % mult)]


def _mask_at(masks: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """The mask at a feature map's resolution (area: the fraction of foreground), in [-1, 1]."""
    return F.adaptive_avg_pool2d(masks, list(size)) * 2 - 1


class SoftIntroEncoder(nn.Module):
    """E(x, m) -> (mu, logvar): 5x5 conv, ``n`` stride-2 4x4 convs with GroupNorm, linear to ``2 z_dim``."""

    def __init__(
        self, in_channels: int, padded: Sequence[int], *, width: int, n_down: int, z_dim: int
    ) -> None:
        super().__init__()
        self.n_down = n_down
        chans = [width * min(2**k, 8) for k in range(n_down + 1)]
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels + 1, chans[0], 5, padding=2),
            _gn(chans[0]),
            nn.LeakyReLU(0.2),
        ]
        for k in range(1, n_down + 1):
            layers += [nn.Conv2d(chans[k - 1], chans[k], 4, 2, 1), _gn(chans[k]), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers)
        low = [s // 2**n_down for s in padded]
        self.fc = nn.Linear(chans[-1] * math.prod(low), 2 * z_dim)

    def forward(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pad = _padding(images.shape[2:], 2**self.n_down)
        x = torch.cat([images * 2 - 1, masks.to(images.dtype) * 2 - 1], 1)
        h = self.net(F.pad(x, pad) if any(pad) else x)
        mu, logvar = self.fc(h.flatten(1)).chunk(2, dim=1)
        return mu, logvar


class SoftIntroVAEGenerator(DropoutFreeGenerator):
    """The decoder D(z, m) of a mask-conditioned Soft-Intro VAE, with searchable upsampling cells ``up1..``."""

    label = "Soft-Intro VAE"

    def __init__(
        self,
        out_channels: int,
        spatial: Sequence[int],
        *,
        width: int = 64,
        mode: CellMode = "learnable",
        dims: int = 2,
        z_dim: int = 128,
        beta_rec: float = 1.0,
        beta_kl: float = 1.0,
        beta_neg: float = 256.0,
        gamma_r: float = 1e-8,
        max_up: int = 5,
    ) -> None:
        super().__init__()
        if dims != 2:
            raise ValueError("the Soft-Intro VAE generator is 2D only (3D GenSeg uses pix2pix)")
        if len(spatial) != dims:
            raise ValueError(f"spatial shape {tuple(spatial)} does not have {dims} dimensions")
        self.dims = dims
        self.mode = mode
        self.channels = out_channels
        self.z_dim = z_dim
        self.beta_rec, self.beta_kl, self.beta_neg, self.gamma_r = beta_rec, beta_kl, beta_neg, gamma_r
        self.n_up = upsamplings(spatial, max_up)
        mult = 2**self.n_up
        self.padded = [s + (-s) % mult for s in spatial]
        self.low = [s // mult for s in self.padded]
        self.width = width
        chans = [width * min(2**k, 8) for k in range(self.n_up + 1)]
        self.fc = nn.Linear(z_dim, chans[-1] * math.prod(self.low))
        self.head = nn.Sequential(nn.Conv2d(chans[-1] + 1, chans[-1], 3, padding=1), _gn(chans[-1]))
        self.ups = nn.ModuleList()
        self.up_norms = nn.ModuleList()
        self.convs = nn.ModuleList()
        for k in range(self.n_up, 0, -1):
            self.ups.append(SearchableCell(chans[k], chans[k - 1], transposed=True, mode=mode, dims=2))
            self.up_norms.append(_gn(chans[k - 1]))
            self.convs.append(
                nn.Sequential(nn.Conv2d(chans[k - 1] + 1, chans[k - 1], 3, padding=1), _gn(chans[k - 1]))
            )
        self.predict = nn.Conv2d(chans[0], out_channels, 5, padding=2)

    def cells(self) -> list[tuple[str, SearchableCell]]:
        """The decoder's upsampling cells, lowest resolution first: ``up1 .. up{n}``."""
        return [(f"up{i}", c) for i, c in enumerate(self.ups, 1)]  # type: ignore[misc]

    def build_partner(self, channels: int, spatial: Sequence[int], *, width: int) -> nn.Module | None:
        """The encoder E(x, m): H of Soft-Intro VAE's introspective game."""
        return SoftIntroEncoder(channels, self.padded, width=width, n_down=self.n_up, z_dim=self.z_dim)

    # -- decoder ---------------------------------------------------------------------------

    def decode(self, z: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """``D(z, m)``: a ``B x C x *spatial`` image in [0, 1] for latents ``B x z_dim`` and masks."""
        spatial = masks.shape[2:]
        pad = _padding(spatial, 2**self.n_up)
        m = F.pad(masks, pad) if any(pad) else masks
        m = m.to(z.dtype)
        h = F.relu(self.fc(z)).view(len(z), -1, *self.low)
        h = F.leaky_relu(self.head(torch.cat([h, _mask_at(m, h.shape[2:])], 1)), 0.2)
        for up, norm, conv in zip(self.ups, self.up_norms, self.convs, strict=True):
            h = F.leaky_relu(norm(up(h)), 0.2)
            h = F.leaky_relu(conv(torch.cat([h, _mask_at(m, h.shape[2:])], 1)), 0.2)
        out = torch.sigmoid(self.predict(h))
        if any(pad):
            out = out[(..., *(slice(0, s) for s in spatial))]
        return out

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        """A sample ``D(z, m)``, ``z ~ N(0, I)`` drawn here."""
        z = torch.randn(len(masks), self.z_dim, device=masks.device, dtype=self.fc.weight.dtype)
        return self.decode(z, masks)

    def scale(self, images: torch.Tensor) -> float:
        """``1 / (C H W)``: the code's normalisation of the ELBO terms by the image size."""
        return 1.0 / math.prod(images.shape[1:])

    # -- level 1: the introspective game ----------------------------------------------------

    def generator_loss(
        self, partner: nn.Module | None, masks: torch.Tensor, images: torch.Tensor, *, lambda_l1: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L_D, fakes)``: the decoder's objective (module docstring); ``lambda_l1`` is unused."""
        assert partner is not None, "Soft-Intro VAE's level 1 needs its encoder"
        scale = self.scale(images)
        mu, logvar = partner(images, masks)
        z = reparameterize(mu, logvar).detach()
        rec = self.decode(z, masks)
        fake = self(masks)
        loss_rec = reconstruction_error(images, rec).mean()
        rec_mu, rec_logvar = partner(rec, masks)
        fake_mu, fake_logvar = partner(fake, masks)
        kl = (
            kl_divergence(rec_mu.float(), rec_logvar.float()).mean()
            + kl_divergence(fake_mu.float(), fake_logvar.float()).mean()
        )
        loss = self.beta_rec * loss_rec + 0.5 * self.beta_kl * kl
        if self.gamma_r:
            rec_rec = self.decode(reparameterize(rec_mu, rec_logvar).detach(), masks)
            rec_fake = self.decode(reparameterize(fake_mu, fake_logvar).detach(), masks)
            loss = loss + 0.5 * self.gamma_r * self.beta_rec * (
                reconstruction_error(rec.detach(), rec_rec).mean()
                + reconstruction_error(fake.detach(), rec_fake).mean()
            )
        return scale * loss, fake

    def partner_loss(
        self, partner: nn.Module, masks: torch.Tensor, fake: torch.Tensor, images: torch.Tensor
    ) -> torch.Tensor:
        """``L_E``: the real ELBO plus the soft exponential ELBO of detached reconstructions and fakes."""
        scale = self.scale(images)
        mu, logvar = partner(images, masks)
        rec = self.decode(reparameterize(mu, logvar), masks)
        real = scale * (
            self.beta_rec * reconstruction_error(images, rec).mean()
            + self.beta_kl * kl_divergence(mu.float(), logvar.float()).mean()
        )
        # the code's target for the reconstructions is the undetached x_r: E's gradient flows through it too
        soft = torch.zeros((), device=images.device)
        for inp, target in ((rec.detach(), rec), (fake.detach(), fake.detach())):
            x_mu, x_logvar = partner(inp, masks)
            x_rec = self.decode(reparameterize(x_mu, x_logvar), masks)
            soft = soft + exp_elbo(
                reconstruction_error(target, x_rec),
                kl_divergence(x_mu.float(), x_logvar.float()),
                scale=scale,
                beta_rec=self.beta_rec,
                beta_neg=self.beta_neg,
            )
        return real + 0.25 * soft
