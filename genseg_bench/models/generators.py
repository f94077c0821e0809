"""The mask-to-image generator interface GenSeg's three levels use, and the registry of generators.

GenSeg (paper A.2-A.3) needs four things from its generator G, whatever network it is:

* ``forward(masks) -> images``: a ``B x 1 x *spatial`` mask in [0, 1] to a
  ``B x C x *spatial`` image in [0, 1] (the suite's image range), differentiable
  in the weights and in the architecture parameters;
* the architecture A apart from the weights G: :meth:`MaskToImageGenerator.arch_parameters`
  (the alphas of its searchable cells, updated by the validation loss) and
  :meth:`MaskToImageGenerator.named_weight_parameters` (everything else, updated by
  the GAN loss, and the names ``torch.func.functional_call`` takes the lookahead
  G' by);
* :meth:`MaskToImageGenerator.alphas`, the mixing weights per cell, for the run's
  record and plot;
* ``dims`` (2 or 3), which picks the convolution backend of every step.

**No buffers.** The lookahead G' is evaluated as ``functional_call(gen, g_prime,
(masks,))`` with the weights replaced and nothing else: a generator with running
statistics (BatchNorm) would read and *update* them in every unrolled pass, so the
hypergradient would differentiate another function than the one the forward
computes. Every generator here normalises with InstanceNorm or GroupNorm (no running
statistics); :func:`check_stateless` enforces it for any module given to GenSeg.

The searchable cells (:class:`~genseg_bench.models.generator.SearchableCell`,
Fig. 1c: ``y = sum_k alpha_k op_k(x)`` over the 4-2-1 / 6-2-2 / 8-2-3 (transposed)
convolutions) are shared by every generator; ``cells = "learnable" | "fixed" |
"single"`` means the same in each. The paper (App. I) makes SPADE, ASAPNet, BBDM
and Soft-Intro VAE searchable "by applying the multi-branch convolutional
modification (Fig. 1c) to their generators" without saying which convolutions;
here every generator gets cells on its resolution-changing convolutions, as
Pix2Pix has them (each module's docstring says which).

**Level 1 is the generator's** (:meth:`MaskToImageGenerator.build_partner`,
:meth:`~MaskToImageGenerator.generator_loss`, :meth:`~MaskToImageGenerator.partner_loss`).
GenSeg's trainer asks the generator for its level-1 partner network H and for both
objectives, so that a generator with a training objective of its own keeps it inside
GenSeg (paper App. I swaps the generator *model*, with its way of being trained):

* the default, for Pix2Pix, SPADE and ASAPNet, is Pix2Pix's conditional GAN: H is a
  :class:`~genseg_bench.models.discriminator.PatchDiscriminator`, G's objective
  adversarial BCE + ``lambda_l1`` * L1, H's real-vs-generated BCE;
* BBDM has no partner (``build_partner`` returns None): its objective is the
  Brownian bridge's denoising loss, and the trainer takes no H step;
* Soft-Intro VAE's partner is its encoder, which plays the introspective game
  against the decoder G.

``generator_loss(partner, masks, images)`` returns ``(L_G, fake)`` computed on the
module itself: the unrolled step differentiates ``L_G`` with respect to G's weights
with ``create_graph`` and forms G' from that gradient, and level 2 evaluates
``functional_call(gen, G', (masks,))``, i.e. :meth:`~MaskToImageGenerator.forward`
(mask -> image sample) with the lookahead weights. ``fake`` is the generated batch
the partner's objective reads (``partner_loss(partner, masks, fake, images)``).

Generators are selected by name (``GenSegConfig.generator``) through
:data:`GENERATORS`, imported on first use so that importing one generator does not
import the others.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from genseg_bench.models import discriminator as conditional_gan

if TYPE_CHECKING:
    from genseg_bench.models.generator import CellMode, SearchableCell


class MaskToImageGenerator(nn.Module, abc.ABC):
    """Base of GenSeg's generators: a mask-to-image network whose searchable cells hold the architecture A.

    Subclasses implement :meth:`cells` and :meth:`forward`; the split of the
    parameters into A (the cells' alphas) and G (everything else) follows from
    :meth:`cells`, so it is the same rule for every generator. The base adds no
    parameters or buffers, so a subclass's parameters, their order and their
    random initialisation are its own.
    """

    dims: int
    """2 or 3: the dimensionality of the masks and images (picks the convolution backend)."""

    @abc.abstractmethod
    def cells(self) -> list[tuple[str, SearchableCell]]:
        """Every searchable cell in data-flow order, with a short name for the record (``enc0``, ``up1``...)."""

    @abc.abstractmethod
    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        """``B x 1 x *spatial`` masks in [0, 1] -> ``B x C x *spatial`` images in [0, 1]."""

    @classmethod
    @abc.abstractmethod
    def from_options(
        cls,
        channels: int,
        spatial: Sequence[int],
        *,
        width: int,
        cells: CellMode,
        dims: int,
        dropout: float,
    ) -> MaskToImageGenerator:
        """The generator from GenSeg's settings (:func:`build_generator`): one signature for every generator."""

    # -- level 1 (module docstring, *Level 1 is the generator's*) ---------------------------

    def build_partner(self, channels: int, spatial: Sequence[int], *, width: int) -> nn.Module | None:
        """The network level 1 trains G against (H), or None for a generator trained alone.

        Default: Pix2Pix's conditional PatchGAN discriminator on ``(mask, image)``,
        ``width`` its base channel count (the profile's ``gen_width``).
        """
        return conditional_gan.PatchDiscriminator(channels, spatial, width=width, dims=self.dims)

    def generator_loss(
        self, partner: nn.Module | None, masks: torch.Tensor, images: torch.Tensor, *, lambda_l1: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L_G, fake)``: G's level-1 objective on real pairs, and the generated batch H's objective reads.

        Differentiable in G's weights and alphas (GenSeg takes its gradient with
        ``create_graph``). Default: the conditional GAN, ``fake = G(masks)``,
        ``L_G = BCE(H(masks, fake), 1) + lambda_l1 * |fake - images|_1``.
        """
        fake = self(masks)
        return conditional_gan.generator_gan_loss(partner, masks, fake, images, lambda_l1), fake  # type: ignore[arg-type]

    def partner_loss(
        self, partner: nn.Module, masks: torch.Tensor, fake: torch.Tensor, images: torch.Tensor
    ) -> torch.Tensor:
        """H's level-1 objective (minimised in H's weights; only those are stepped by it).

        Default: the discriminator's BCE, real pairs -> 1, generated (detached) -> 0.
        """
        return conditional_gan.discriminator_loss(partner, masks, fake, images)

    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture A: one alpha vector per cell (empty for fixed and single-branch cells)."""
        return [c.alpha for _, c in self.cells() if c.alpha is not None]

    def named_weight_parameters(self) -> dict[str, nn.Parameter]:
        """The weights G (everything but the alphas), by name, for ``functional_call``."""
        arch = {id(p) for p in self.arch_parameters()}
        return {n: p for n, p in self.named_parameters() if id(p) not in arch}

    def weight_parameters(self) -> list[nn.Parameter]:
        return list(self.named_weight_parameters().values())

    def alphas(self) -> dict[str, dict[str, float]]:
        """``{cell: {op: alpha}}``: the mixing weights the forward pass uses (softmax, or 1 when fixed)."""
        return {name: cell.report() for name, cell in self.cells()}


class DropoutFreeGenerator(MaskToImageGenerator):
    """A generator without dropout layers (SPADE, ASAPNet): one :meth:`from_options` for all of them.

    Built as ``cls(channels, spatial, width=..., mode=..., dims=...)``; a non-zero ``dropout``
    is refused rather than ignored (dropout is Pix2Pix's noise source only).
    """

    label: ClassVar[str] = ""
    """The name the refusal uses ("SPADE", "ASAPNet")."""

    @classmethod
    def from_options(
        cls,
        channels: int,
        spatial: Sequence[int],
        *,
        width: int,
        cells: CellMode,
        dims: int,
        dropout: float,
    ) -> MaskToImageGenerator:
        """The registry's constructor; a non-zero ``dropout`` is an error."""
        if dropout:
            raise ValueError(
                f"the {cls.label} generator has no dropout layers; dropout applies to pix2pix only"
            )
        return cls(channels, spatial, width=width, mode=cells, dims=dims)  # type: ignore[call-arg]


GENERATORS: dict[str, str] = {
    "pix2pix": "genseg_bench.models.generator:SearchableGenerator",
    "spade": "genseg_bench.models.spade:SPADEGenerator",
    "asapnet": "genseg_bench.models.asapnet:ASAPNetGenerator",
    "bbdm": "genseg_bench.models.bbdm:BBDMGenerator",
    "softintrovae": "genseg_bench.models.soft_intro_vae:SoftIntroVAEGenerator",
}
"""Generator name -> ``module:Class``; the names are ``GenSegConfig.generator``'s choices."""


def check_stateless(gen: nn.Module) -> None:
    """Refuse a generator with buffers: ``functional_call`` with G' would not be the forward's function.

    See the module docstring (*No buffers*). Any ``nn.Module`` may be checked, so
    GenSeg's trainer applies it to whatever generator it is given.
    """
    names = [n for n, _ in gen.named_buffers()]
    if names:
        raise ValueError(
            f"{type(gen).__name__} holds buffers ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''}): "
            "GenSeg evaluates the lookahead G' by functional_call with the weights replaced, so a generator "
            "must hold no running statistics (use InstanceNorm, or BatchNorm with track_running_stats=False)"
        )


def generator_class(name: str) -> type[MaskToImageGenerator]:
    """The class registered as ``name`` in :data:`GENERATORS` (imported now)."""
    if name not in GENERATORS:
        raise ValueError(f"unknown generator {name!r}; known: {', '.join(sorted(GENERATORS))}")
    module_name, _, attr = GENERATORS[name].partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, MaskToImageGenerator)):
        raise TypeError(f"{GENERATORS[name]} is not a MaskToImageGenerator")
    return cls


def build_generator(
    name: str,
    channels: int,
    spatial: Sequence[int],
    *,
    width: int,
    cells: CellMode = "learnable",
    dims: int = 2,
    dropout: float = 0.0,
) -> MaskToImageGenerator:
    """The generator ``name`` for ``channels``-channel images of this spatial shape, checked stateless.

    ``width`` is the base channel count (the profile's ``gen_width``), ``cells`` the
    mode of every searchable cell, ``dropout`` the decoder dropout of Pix2Pix (its
    noise source); generators without dropout layers refuse a non-zero value
    rather than ignore it.
    """
    cls = generator_class(name)
    gen = cls.from_options(channels, spatial, width=width, cells=cells, dims=dims, dropout=dropout)
    check_stateless(gen)
    return gen
