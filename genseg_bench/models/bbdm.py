"""BBDM (Li et al., CVPR 2023): a Brownian-bridge diffusion from the mask to the image, as a GenSeg generator.

Followed: the paper (Sec. 3.1-3.2: the bridge, its training objective and the
accelerated sampler, Eq. 3-4, 9-13) and the public code xuekt98/BBDM
(``model/BrownianBridge/BrownianBridgeModel.py``: ``q_sample``, ``p_losses`` with
``objective = "grad"``, ``p_sample`` with skip sampling), in pixel space (the
paper's BBDM, not its latent LBBDM). Own code throughout; the denoiser is a small
time-conditioned UNet written here, not BBDM's OpenAI UNet.

**The bridge.** Images ``x0`` and the condition ``y`` live in [-1, 1]; ``y`` is the
mask mapped as BBDM maps a condition image, ``2 m - 1`` repeated over the image's
channels (a semantic map drawn in the image's range). For ``t = 0 .. T`` with
``m_t = t / T`` and ``delta_t = 2 s (m_t - m_t^2)`` (``s``: ``max_var``, 1 as in BBDM),

    q(x_t | x0, y) = N((1 - m_t) x0 + m_t y, delta_t I),

so ``x_0 = x0`` and ``x_T = y`` exactly (:meth:`BBDMGenerator.q_sample`). BBDM's code
clips ``m_t`` to [0.001, 0.999]; the endpoints are kept exact here and the one
quotient that needs ``delta_t > 0`` (the sampler's) is defined at ``t = T``, where
the bridge has no noise, as 0.

**Objective** (level 1, :meth:`BBDMGenerator.generator_loss`). ``t`` uniform in
``0 .. T-1``, ``eps ~ N(0, I)``, the denoiser predicts ``x_t - x0 = m_t (y - x0) +
sqrt(delta_t) eps`` (BBDM's ``"grad"`` objective) and is trained by the L1 distance,
averaged over pixels. BBDM has no adversary: :meth:`BBDMGenerator.build_partner`
is None, and GenSeg takes no H step. ``lambda_l1`` (the conditional GAN's L1
weight) does not apply.

**Sampling = the generator's forward** (:meth:`BBDMGenerator.forward`). BBDM's
skip sampling with ``eta = 0`` (no fresh noise: deterministic, as DDIM is for
DDPM): from ``x_T = y`` over ``K`` (``sample_steps``) evenly spaced times ``T = t_1
> .. > t_K > 0``, each step predicts ``x0_hat = x_t - eps_theta(x_t, t)`` (clipped to
[-1, 1] as BBDM's sampler does) and moves to the next time ``s`` by the posterior
mean with ``sigma = 0``:

    x_s = (1 - m_s) x0_hat + m_s y + sqrt(delta_s / delta_t) (x_t - (1 - m_t) x0_hat - m_t y),

the last step returning ``x0_hat``. The forward is an ordinary differentiable
function of the denoiser's weights and cells, so in End2End the segmentation loss
reaches them through all ``K`` steps (``functional_call(gen, G', (masks,))``).

**K = 4** (``sample_steps``; BBDM samples with 200 steps). Each step is one
denoiser forward, and GenSeg's End2End pays for K three times: level 2 runs the K
steps forward through G', and the hypergradient (level 3) backpropagates through
all K of them and, through G' = G - step(grad_G L_BBDM), through the double
backward of the level-1 loss. Cost and activation memory grow linearly in K;
K = 4 keeps a 32-64 px GenSeg iteration within a few times Pix2Pix's while the
samples still come from a multi-step bridge (1 step would be a one-shot
regression from y). With so few steps the samples are smoother than BBDM's at
200; a Separate run can sample with more (build with ``sample_steps``).

**Denoiser.** A UNet on ``concat(x_t, y)`` (BBDM's pixel model conditions only
through the bridge, ``condition_key = "nocond"``; the concatenated ``y`` is the
option its code uses for latent conditions, and helps a network this small):
3x3 input convolution, ``levels`` (``floor(log2(min side)) - 2``, 1 to 4) stride-2
downsamplings and mirrored upsamplings with skip connections, one residual block
(GroupNorm, SiLU, 3x3 convolution, twice, plus the time embedding added in
between) per level and side, a residual block at the bottom, GroupNorm, SiLU, 3x3
convolution to the image channels. Time: sinusoidal embedding of ``t`` -> MLP ->
added per block. Channels ``width * min(2**i, 4)`` at level i.

**Searchable cells** (paper App. I: BBDM made searchable by the multi-branch cells,
without saying where): every resolution change of the denoiser, i.e. each
downsampling ``down1 .. downL`` (4-2-1 / 6-2-2 / 8-2-3 convolutions) and each
upsampling ``up1 .. upL`` (the transposed ones), as Pix2Pix's encoder and decoder
cells. GroupNorm only (no BatchNorm, no running statistics: see
:mod:`genseg_bench.models.generators`).

2D only: the suite's 3D GenSeg is Pix2Pix's (a 3D BBDM is a clear error). Sides
that are not a multiple of ``2**levels`` are zero-padded (background, mask 0 and
image 0) and cropped back; the training loss is taken on the unpadded pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from genseg_bench.models.generator import CellMode, SearchableCell
from genseg_bench.models.generators import DropoutFreeGenerator

TIMESTEPS = 1000
"""T: BBDM's number of bridge steps."""

SAMPLE_STEPS = 4
"""K: the sampler's steps, each one denoiser forward (module docstring, *K = 4*)."""


def bbdm_levels(spatial: Sequence[int], max_levels: int = 4) -> int:
    """Down/upsampling levels of the denoiser: the bottom is ~4 px (1 to ``max_levels``)."""
    return max(1, min(max_levels, int(math.floor(math.log2(min(spatial)))) - 2))


def _groups(channels: int) -> int:
    """GroupNorm groups: 8 where the channels allow it (GroupNorm's usual 32 is too many at these widths)."""
    return math.gcd(channels, 8)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of (float) timesteps ``t`` (``B``) -> ``B x dim``, as DDPM / BBDM's UNet."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], 1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class ResBlock(nn.Module):
    """``skip(x) + conv(SiLU(GN(conv(SiLU(GN(x))) + temb)))``: the diffusion UNet's residual block."""

    def __init__(self, cin: int, cout: int, temb: int) -> None:
        super().__init__()
        self.norm0 = nn.GroupNorm(_groups(cin), cin)
        self.conv0 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(temb, cout)
        self.norm1 = nn.GroupNorm(_groups(cout), cout)
        self.conv1 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv0(F.silu(self.norm0(x)))
        h = h + self.temb(temb)[:, :, None, None]
        h = self.conv1(F.silu(self.norm1(h)))
        return self.skip(x) + h


class BBDMGenerator(DropoutFreeGenerator):
    """Brownian-bridge diffusion mask -> image with a searchable denoising UNet (``down1..``, ``up1..``)."""

    label = "BBDM"

    def __init__(
        self,
        out_channels: int,
        spatial: Sequence[int],
        *,
        width: int = 64,
        mode: CellMode = "learnable",
        dims: int = 2,
        timesteps: int = TIMESTEPS,
        sample_steps: int = SAMPLE_STEPS,
        max_var: float = 1.0,
        max_levels: int = 4,
    ) -> None:
        super().__init__()
        if dims != 2:
            raise ValueError("the BBDM generator is 2D only (3D GenSeg uses pix2pix)")
        if len(spatial) != dims:
            raise ValueError(f"spatial shape {tuple(spatial)} does not have {dims} dimensions")
        if not 1 <= sample_steps <= timesteps:
            raise ValueError(f"sample_steps must be in 1..{timesteps}, got {sample_steps}")
        self.dims = dims
        self.mode = mode
        self.channels = out_channels
        self.timesteps = timesteps
        self.sample_steps = sample_steps
        self.max_var = max_var
        self.levels = bbdm_levels(spatial, max_levels)
        chans = [width * min(2**i, 4) for i in range(self.levels + 1)]
        temb = 4 * width
        self.temb_dim = width
        self.time_mlp = nn.Sequential(nn.Linear(width, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.inp = nn.Conv2d(2 * out_channels, chans[0], 3, padding=1)
        self.enc = nn.ModuleList([ResBlock(chans[0], chans[0], temb)])
        self.downs = nn.ModuleList()
        for i in range(1, self.levels + 1):
            self.downs.append(SearchableCell(chans[i - 1], chans[i], transposed=False, mode=mode, dims=2))
            self.enc.append(ResBlock(chans[i], chans[i], temb))
        self.mid = ResBlock(chans[-1], chans[-1], temb)
        self.ups = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in range(self.levels, 0, -1):
            self.ups.append(SearchableCell(chans[i], chans[i - 1], transposed=True, mode=mode, dims=2))
            self.dec.append(ResBlock(2 * chans[i - 1], chans[i - 1], temb))
        self.out_norm = nn.GroupNorm(_groups(chans[0]), chans[0])
        self.out = nn.Conv2d(chans[0], out_channels, 3, padding=1)

    def cells(self) -> list[tuple[str, SearchableCell]]:
        """``down1 .. downL`` (input side first), then ``up1 .. upL`` (lowest resolution first)."""
        down = [(f"down{i}", c) for i, c in enumerate(self.downs, 1)]
        up = [(f"up{i}", c) for i, c in enumerate(self.ups, 1)]
        return down + up  # type: ignore[return-value]

    def build_partner(self, channels: int, spatial: Sequence[int], *, width: int) -> nn.Module | None:
        """None: BBDM is trained by its denoising loss alone (no adversary, no H step)."""
        return None

    # -- the bridge ------------------------------------------------------------------------

    def bridge(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(m_t, delta_t)`` for integer or float timesteps ``t`` in [0, T]: ``t / T`` and ``2 s (m - m^2)``."""
        m = t.float() / self.timesteps
        return m, 2.0 * self.max_var * (m - m * m)

    def q_sample(
        self, x0: torch.Tensor, y: torch.Tensor, t: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_t, x_t - x0)``: a draw of q(x_t | x0, y) with this noise, and the denoiser's target."""
        m, var = (v.to(x0.dtype)[:, None, None, None] for v in self.bridge(t))
        objective = m * (y - x0) + var.sqrt() * noise
        return x0 + objective, objective

    def condition(self, masks: torch.Tensor) -> torch.Tensor:
        """The bridge's end ``y``: the mask in the image's range [-1, 1], repeated over the image channels."""
        return (masks * 2 - 1).expand(-1, self.channels, *masks.shape[2:])

    def denoise(self, x_t: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``eps_theta(x_t, t)``: the predicted ``x_t - x0`` (sides a multiple of ``2**levels``)."""
        temb = self.time_mlp(timestep_embedding(t, self.temb_dim).to(x_t.dtype))
        h = self.enc[0](self.inp(torch.cat([x_t, y], 1)), temb)
        skips = [h]
        for down, block in zip(self.downs, self.enc[1:], strict=True):
            h = block(down(h), temb)
            skips.append(h)
        h = self.mid(h, temb)
        for j, (up, block) in enumerate(zip(self.ups, self.dec, strict=True)):
            h = block(torch.cat([up(h), skips[self.levels - 1 - j]], 1), temb)
        return self.out(F.silu(self.out_norm(h)))

    def _pad(self, x: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        mult = 2**self.levels
        pad = [p for s in reversed(x.shape[2:]) for p in (0, (-s) % mult)]
        return (F.pad(x, pad) if any(pad) else x), pad

    def sample_times(self) -> list[int]:
        """The K sampling times ``T = t_1 > .. > t_K > 0``, evenly spaced (BBDM's linear skip sampling)."""
        return [
            round(self.timesteps * (self.sample_steps - k) / self.sample_steps)
            for k in range(self.sample_steps)
        ]

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        """K deterministic bridge steps from ``y`` (module docstring, *Sampling*), as an image in [0, 1]."""
        spatial = masks.shape[2:]
        m_pad, pad = self._pad(masks)
        y = self.condition(m_pad).to(self.out.weight.dtype)
        times = self.sample_times()
        x = y
        x0_hat = y
        for k, t in enumerate(times):
            tt = torch.full((len(y),), t, device=y.device)
            x0_hat = (x - self.denoise(x, y, tt)).clamp(-1, 1)
            s = times[k + 1] if k + 1 < len(times) else 0
            if s == 0:
                break
            m_t, var_t = (float(v) for v in self.bridge(torch.tensor(float(t))))
            m_s, var_s = (float(v) for v in self.bridge(torch.tensor(float(s))))
            coef = math.sqrt(var_s / var_t) if var_t > 0 else 0.0  # x_T = y carries no noise to keep
            x = (1 - m_s) * x0_hat + m_s * y + coef * (x - (1 - m_t) * x0_hat - m_t * y)
        out = (x0_hat + 1) / 2
        if any(pad):
            out = out[(..., *(slice(0, s) for s in spatial))]
        return out

    def generator_loss(
        self, partner: nn.Module | None, masks: torch.Tensor, images: torch.Tensor, *, lambda_l1: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L1(eps_theta(x_t, t), x_t - x0), x0_hat)``: BBDM's training loss at a random t per image.

        ``x0_hat = x_t - eps_theta`` in [0, 1] is the one-step reconstruction (the
        batch recorded as level 1's "fake"). ``partner`` and ``lambda_l1`` are unused.
        """
        spatial = masks.shape[2:]
        m_pad, _ = self._pad(masks)
        x0, _ = self._pad(images * 2 - 1)
        y = self.condition(m_pad).to(x0.dtype)
        t = torch.randint(0, self.timesteps, (len(x0),), device=x0.device)
        x_t, objective = self.q_sample(x0, y, t, torch.randn_like(x0))
        pred = self.denoise(x_t, y, t)
        crop = (..., *(slice(0, s) for s in spatial))
        loss = (pred[crop].float() - objective[crop].float()).abs().mean()
        fake = ((x_t - pred)[crop].clamp(-1, 1) + 1) / 2
        return loss, fake
