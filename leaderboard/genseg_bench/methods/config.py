"""Typed config models of the built-in method kinds, importable without torch.

A method spec's ``config`` table (``baselines/*.toml``) is validated against the
model of its ``kind`` when the catalog loads, so a typo (``gama = 2``), an
unknown augmentation op or an out-of-range value is an error naming the file and
the valid keys before any run starts, not a setting silently ignored or a failed
run recorded for every cell of a grid. The same models give the *resolved*
config (every default filled in) that the run identity hashes: changing a
default changes the run id of every method that relies on it.

The training code (:mod:`genseg_bench.methods.supervised`,
:mod:`genseg_bench.methods.genseg`) reads its settings through these models too,
so what is validated is what runs.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from genseg_bench.augment_ops import AugmentConfig, AugOp
from genseg_bench.errors import SpecError

if TYPE_CHECKING:
    from genseg_bench.specs import MethodSpec

GeneratorName = Literal["pix2pix", "spade", "asapnet", "bbdm", "softintrovae"]
"""GenSeg's mask-to-image generators (torch-free copy of ``genseg_bench.models.generators.GENERATORS``' names)."""

OWN_OBJECTIVE_GENERATORS: tuple[str, ...] = ("bbdm", "softintrovae")
"""Generators trained by their own level-1 objective, not the conditional GAN: ``lambda_l1`` does not reach them.

It is not refused (the specs that extend genseg-unet inherit its ``lambda_l1 = 100``); it
leaves their run identity instead (:meth:`GenSegConfig.resolved`).
"""

_RANGES = AugmentConfig()
"""Default augmentation ranges: one source for the baselines, GenSeg and the augmentation code."""


class MethodConfig(BaseModel):
    """Base of every config model: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requires: ClassVar[tuple[str, str] | None] = None
    """(module, install command) of an optional package the kind needs (nnU-Net's ``nnunetv2``), or None.

    :func:`genseg_bench.preflight.check_requirements` looks it up before a grid starts, so a
    missing package is one error naming the install command, not a failed run per cell."""

    def resolved(self) -> dict[str, Any]:
        """Every setting with its default filled in, as JSON values: what the run identity hashes."""
        return self.model_dump(mode="json")

    def other_networks(self) -> list[tuple[str, str]]:
        """``(backbone, encoder)`` of every network the kind builds besides the spec's own backbone.

        So the size check before a grid (:func:`genseg_bench.runner.check_model_input`) covers
        a semi-supervised pair's second network too, not only the one the spec names.
        """
        return []


C = TypeVar("C", bound=MethodConfig)


class AugmentRanges(MethodConfig):
    """Ranges of the geometric augmentation, shared by the supervised baselines and GenSeg."""

    rotate_degrees: float = Field(_RANGES.rotate_degrees, ge=0.0, le=180.0)
    translate_fraction: float = Field(_RANGES.translate_fraction, ge=0.0, le=0.5)
    elastic_alpha: float = Field(_RANGES.elastic_alpha, ge=0.0)
    elastic_grid: int = Field(_RANGES.elastic_grid, ge=2)

    def augmentation(self, ops: list[str]) -> AugmentConfig:
        """The :class:`AugmentConfig` running ``ops`` with these ranges."""
        return AugmentConfig(
            ops=tuple(ops),
            rotate_degrees=self.rotate_degrees,
            translate_fraction=self.translate_fraction,
            elastic_alpha=self.elastic_alpha,
            elastic_grid=self.elastic_grid,
        )


def _distinct(ops: list[str]) -> list[str]:
    repeated = sorted({o for o in ops if ops.count(o) > 1})
    if repeated:
        raise ValueError(f"augmentation ops {repeated} are listed more than once; list each op once")
    return ops


class SupervisedConfig(AugmentRanges):
    """Config of ``kind = "supervised"``: the augmentation of one training loop.

    ``augment``: ops applied to image and mask together. ``second_copy``: the "real
    x2" control, a second augmented copy of each batch as an extra forward (see
    :class:`~genseg_bench.methods.supervised.SupervisedMethod`).
    """

    augment: list[AugOp] = []
    second_copy: list[AugOp] = []

    _augment_distinct = field_validator("augment", "second_copy")(_distinct)

    def augment_config(self) -> AugmentConfig:
        return self.augmentation(list(self.augment))

    def second_copy_config(self) -> AugmentConfig:
        return self.augmentation(list(self.second_copy))


class GenSegConfig(AugmentRanges):
    """Config of ``kind = "genseg"`` (see :mod:`genseg_bench.methods.genseg` for what each key does).

    ``end_to_end`` defaults to "learnable cells and not separate": the architecture
    level only exists when there are alphas to learn and the GAN is trained jointly.
    The augmentation ranges are the supervised baselines' (:class:`AugmentRanges`).
    """

    generator: GeneratorName = "pix2pix"
    """The mask-to-image generator (``genseg_bench.models.generators.GENERATORS``); see :meth:`resolved`."""
    gamma: float = Field(1.0, ge=0.0)
    end_to_end: bool | None = None
    separate: bool = False
    cells: Literal["learnable", "fixed", "single"] = "learnable"
    augment: list[AugOp] = ["rotate", "flip", "translate"]
    lambda_l1: float = Field(100.0, ge=0.0)
    gan_iterations: int | None = Field(None, ge=1)
    """GAN pre-training iterations of ``separate = true`` or ``pretrain = true``; None: the profile's
    iteration budget."""
    pretrain: bool = False
    """The public code's regime (importZL/GenSeg, ``train_pix2pix_*.py`` then ``train_end2end_*.py``):
    the GAN is first trained alone on the training pairs (level 1, ``gan_iterations`` steps, the budget
    Separate gets; the alphas stay uniform, as that code leaves its architecture step commented out), then
    the end-to-end stage starts from those G and H weights with fresh optimisers (that code loads weights
    only). The paper trains all three levels from scratch; ``false`` is the paper."""
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    lookahead: Literal["optimizer", "sgd"] = "optimizer"
    """The unrolled step rule (GenSeg module docstring, *Lookahead*): ``"sgd"`` is Eq. 5 / 7 exactly."""
    arch_warmup: int = Field(20, ge=0)
    """End-to-end iterations at the start without the architecture level (module docstring, *Warm-up*)."""

    _augment_distinct = field_validator("augment")(_distinct)

    @model_validator(mode="after")
    def _consistent(self) -> GenSegConfig:
        if self.end_to_end and self.separate:
            raise ValueError(
                "separate = true trains the GAN before the segmenter, so end_to_end must be false"
            )
        if self.end_to_end and self.cells != "learnable":
            raise ValueError(
                f"cells = {self.cells!r} has no alphas to learn; end_to_end needs cells = 'learnable'"
            )
        if self.pretrain and (self.separate or not self.unrolled):
            raise ValueError(
                "pretrain = true pre-trains the GAN before the end-to-end stage: it needs end_to_end "
                "(learnable cells, not separate); separate = true already trains the GAN first"
            )
        if self.gan_iterations is not None and not (self.separate or self.pretrain):
            raise ValueError(
                "gan_iterations is the GAN pre-training budget of separate = true or pretrain = true only"
            )
        if self.generator != "pix2pix" and "dropout" in self.model_fields_set:
            raise ValueError(
                f"dropout is the decoder dropout of the pix2pix generator; generator = {self.generator!r} "
                "has no dropout layers"
            )
        return self

    @property
    def generator_dropout(self) -> float:
        """The dropout the generator is built with: ``dropout`` for pix2pix, 0 for generators without any."""
        return self.dropout if self.generator == "pix2pix" else 0.0

    @property
    def unrolled(self) -> bool:
        """Whether the architecture level (the hypergradient) runs."""
        if self.end_to_end is not None:
            return self.end_to_end
        return self.cells == "learnable" and not self.separate

    @property
    def mode(self) -> str:
        return "separate" if self.separate else ("end-to-end" if self.unrolled else "joint")

    @property
    def pretrains_gan(self) -> bool:
        """Whether the GAN trains alone before the segmenter's stage (Separate, or ``pretrain``)."""
        return self.separate or self.pretrain

    def augment_config(self) -> AugmentConfig:
        return self.augmentation(list(self.augment))

    def resolved(self) -> dict[str, Any]:
        """As the base, with ``end_to_end`` as it takes effect (never None) and ``generator`` only when not pix2pix.

        ``generator`` came after the published GenSeg results: leaving its default
        out keeps the run id of every Pix2Pix spec what it was, so those results
        stay the runs of today's specs; any other generator is a different
        identity. ``dropout`` is dropped for generators without dropout layers
        and ``lambda_l1`` for those with their own level-1 objective (neither
        reaches them). ``pretrain`` likewise appears only when true, so the paper's specs keep
        their run ids.
        """
        out = {**super().resolved(), "end_to_end": self.unrolled}
        if not self.pretrain:
            del out["pretrain"]
        if self.generator == "pix2pix":
            del out["generator"]
        else:
            del out["dropout"]
        if self.generator in OWN_OBJECTIVE_GENERATORS:
            del out["lambda_l1"]
        return out

    @classmethod
    def from_spec(cls, spec: MethodSpec) -> GenSegConfig:
        return parse_config(cls, spec.config, f"method {spec.name!r}")


WGAN_DEFAULTS: dict[str, dict[str, float]] = {
    "clip": {"clip": 0.01, "lr": 5e-5},
    "gp": {"gp_lambda": 10.0, "lr": 1e-4},
}
"""Each penalty's paper settings: Arjovsky et al. 2017 (Algorithm 1: RMSprop, c = 0.01) and
Gulrajani et al. 2017 (Algorithm 1: Adam with betas (0, 0.9), lambda = 10)."""


class WGANConfig(AugmentRanges):
    """Config of ``kind = "wgan"`` (see :mod:`genseg_bench.methods.wgan` for the staging).

    ``penalty``: how the critic is kept 1-Lipschitz, ``"clip"`` (weight clipping to
    [-``clip``, ``clip``], the original WGAN) or ``"gp"`` (gradient penalty of weight
    ``gp_lambda``, WGAN-GP). ``clip`` / ``gp_lambda`` / ``lr`` left out take that
    penalty's paper values (:data:`WGAN_DEFAULTS`); setting the other penalty's knob is
    an error rather than a value silently ignored. ``n_critic``: critic steps per
    generator step. ``gan_iterations``: generator steps of the GAN pre-training, or
    ``gan_steps_per_iteration``: that many generator steps per iteration of the
    profile's budget (1.0 by default: as many as GenSeg's Separate gets), so that a GAN
    which needs longer than the segmenter keeps its share in every profile (the smoke
    profile's 6 iterations as the paper's 5,000); set one or the other. ``samples``: generated pairs
    drawn once from the trained generator; 0 trains on the real pairs alone.
    ``augment``: geometric ops on the real batch (none by default, as Neff et al.).
    """

    penalty: Literal["clip", "gp"] = "clip"
    n_critic: int = Field(5, ge=1)
    clip: float | None = Field(None, gt=0.0)
    gp_lambda: float | None = Field(None, ge=0.0)
    lr: float | None = Field(None, gt=0.0)
    """Learning rate of generator and critic; None: the penalty's paper value."""
    gan_iterations: int | None = Field(None, ge=1)
    gan_steps_per_iteration: float | None = Field(None, gt=0.0)
    """Generator steps per profile iteration (None: 1.0); exclusive with ``gan_iterations``."""
    noise_dim: int = Field(100, ge=1)
    samples: int = Field(500, ge=0)
    augment: list[AugOp] = []

    _augment_distinct = field_validator("augment")(_distinct)

    @model_validator(mode="after")
    def _one_penalty(self) -> WGANConfig:
        if self.penalty == "gp" and self.clip is not None:
            raise ValueError("clip is the weight-clipping bound of penalty = 'clip'; remove it for 'gp'")
        if self.penalty == "clip" and self.gp_lambda is not None:
            raise ValueError("gp_lambda weighs the gradient penalty of penalty = 'gp'; remove it for 'clip'")
        if self.gan_iterations is not None and self.gan_steps_per_iteration is not None:
            raise ValueError(
                "gan_iterations (a fixed number of generator steps) and gan_steps_per_iteration (steps per "
                "profile iteration) both set the GAN's budget; keep one"
            )
        return self

    def gan_steps(self, iterations: int) -> int:
        """Generator steps of the GAN pre-training for a profile budget of ``iterations``."""
        if self.gan_iterations is not None:
            return self.gan_iterations
        return max(1, round((self.gan_steps_per_iteration or 1.0) * iterations))

    @property
    def clip_value(self) -> float | None:
        """The clipping bound c in effect (None under the gradient penalty)."""
        if self.penalty != "clip":
            return None
        return self.clip if self.clip is not None else WGAN_DEFAULTS["clip"]["clip"]

    @property
    def penalty_weight(self) -> float | None:
        """The gradient-penalty weight lambda in effect (None under clipping)."""
        if self.penalty != "gp":
            return None
        return self.gp_lambda if self.gp_lambda is not None else WGAN_DEFAULTS["gp"]["gp_lambda"]

    @property
    def gan_lr(self) -> float:
        return self.lr if self.lr is not None else WGAN_DEFAULTS[self.penalty]["lr"]

    def augment_config(self) -> AugmentConfig:
        return self.augmentation(list(self.augment))

    def resolved(self) -> dict[str, Any]:
        """As the base, with ``clip``, ``gp_lambda``, ``lr`` and the GAN budget as they take effect."""
        return {
            **super().resolved(),
            "clip": self.clip_value,
            "gp_lambda": self.penalty_weight,
            "lr": self.gan_lr,
            # None and 1.0 are one budget: runs recorded before the knob existed keep their identity
            "gan_steps_per_iteration": None
            if self.gan_iterations is not None
            else (self.gan_steps_per_iteration or 1.0),
        }


def _known_backbone(name: str) -> str:
    """A second network's backbone must be one the segmenter factory builds (checked when the catalog loads).

    Imported here, not at the top: the leaderboard's copy of this module has no
    backbone table (and no segmentation_models_pytorch), and it only reads configs.
    """
    try:
        from genseg_bench.models.backbones import check_backbone
    except ImportError:  # the leaderboard's copy
        return name
    try:
        check_backbone(name)
    except SpecError as exc:
        raise ValueError(str(exc)) from None
    return name


class SemiSupervisedConfig(AugmentRanges):
    """What the semi-supervised kinds share (:mod:`genseg_bench.methods.semi`).

    ``augment``: geometric ops on the labelled pairs and the unlabelled images (none by
    default, as the Vanilla baseline). ``unlabelled_batch``: unlabelled images per
    update (None: the profile's batch size, the 1:1 labelled:unlabelled batches of the
    reference code). ``consistency``: the maximum weight of the unlabelled term, reached
    through the sigmoid ramp-up ``exp(-5 (1 - t)^2)`` after ``rampup`` of the iteration
    budget (1.0: at the end, as the reference code's ramp over its whole schedule).
    ``predict``: what is validated, checkpointed and tested: the first network (the
    spec's ``backbone``) or the mean of both networks' probabilities.
    """

    needs_unlabelled: ClassVar[bool] = True
    """The runner refuses a task without an unlabelled pool before any data is read."""

    augment: list[AugOp] = []
    unlabelled_batch: int | None = Field(None, ge=1)
    consistency: float = Field(0.1, ge=0.0)
    rampup: float = Field(1.0, ge=0.0, le=1.0)
    predict: Literal["first", "mean"] = "first"

    _augment_distinct = field_validator("augment")(_distinct)

    def augment_config(self) -> AugmentConfig:
        return self.augmentation(list(self.augment))


class DCTConfig(SemiSupervisedConfig):
    """Config of ``kind = "dct"`` (deep co-training). Defaults: Peng et al.'s trainer (Qiao et al.'s weights).

    ``consistency``: weight of the co-training (Jensen-Shannon) term; ``view_difference``
    adds the adversarial view-difference term of weight ``dif_weight`` with FGSM steps of
    ``adv_eps`` (intensities in [0, 1]); both weights ramp up over ``rampup``.
    """

    consistency: float = Field(10.0, ge=0.0)
    rampup: float = Field(0.8, ge=0.0, le=1.0)
    view_difference: bool = True
    dif_weight: float = Field(0.5, ge=0.0)
    adv_eps: float = Field(0.05, gt=0.0, le=1.0)


class MCFConfig(SemiSupervisedConfig):
    """Config of ``kind = "mcf"`` (mutual correction framework). Defaults: MCF's public code.

    ``second_backbone`` / ``second_encoder``: the second, differently structured subnet.
    ``temperature``: sharpening of the better subnet's pseudo-labels; ``cdr_weight``:
    weight of the contrastive difference review on the labelled pixels where the two
    subnets disagree. ``predict`` defaults to the mean of both (as MCF's test code).
    """

    second_backbone: str = "deeplabv3plus"
    second_encoder: str = "resnet18"
    temperature: float = Field(0.1, gt=0.0, le=1.0)
    cdr_weight: float = Field(0.5, ge=0.0)
    predict: Literal["first", "mean"] = "mean"

    _second_known = field_validator("second_backbone")(_known_backbone)

    def other_networks(self) -> list[tuple[str, str]]:
        return [(self.second_backbone, self.second_encoder)]


class CTBCTConfig(SemiSupervisedConfig):
    """Config of ``kind = "ctbct"`` (cross teaching between CNN and Transformer). Defaults: SSL4MIS.

    ``branch_backbone``: the transformer branch, the suite's Swin-Unet by default as in
    the paper (``branch_encoder`` applies to an smp branch only; Swin-Unet has none).
    The spec's ``backbone`` is the CNN, the network that is validated and tested, as
    SSL4MIS evaluates its CNN.
    """

    branch_backbone: str = "swinunet"
    branch_encoder: str = "resnet18"

    _branch_known = field_validator("branch_backbone")(_known_backbone)

    def other_networks(self) -> list[tuple[str, str]]:
        return [(self.branch_backbone, self.branch_encoder)]


class NnUNetConfig(MethodConfig):
    """Config of ``kind = "nnunet"``: the real nnU-Net v2 under the profile's budget (:mod:`genseg_bench.methods.nnunet`).

    nnU-Net configures itself (plans: patch size, batch size, topology, normalisation);
    these keys only set what the suite must control for a fair comparison (the budget,
    the checkpoint rule) and nnU-Net's own switches. Defaults are nnU-Net's, except where
    the suite's rules need another value (each key says which).
    """

    requires: ClassVar[tuple[str, str] | None] = ("nnunetv2", "pip install 'genseg-bench[nnunet]'")
    """(module, install command): the package a run of this kind imports; checked before any grid runs."""

    planner: Literal["default", "resenc-m", "resenc-l", "resenc-xl"] = "default"
    """``default``: nnU-Net's original planner (``ExperimentPlanner``, plans ``nnUNetPlans``, PlainConvUNet);
    ``resenc-*``: its residual-encoder presets (``nnUNetPlannerResEncM/L/XL``)."""
    iterations_per_epoch: int | None = Field(None, ge=1)
    """Training iterations per nnU-Net epoch (nnU-Net: 250); None: the profile's ``eval_every``, so the
    suite validates once per epoch. Epochs = ceil(profile iterations / iterations per epoch)."""
    val_iterations_per_epoch: int = Field(10, ge=1)
    """Patch batches of nnU-Net's own per-epoch pseudo-Dice (nnU-Net: 50; it only feeds its log and EMA)."""
    batch_size: int | None = Field(None, ge=1)
    """None: the batch size nnU-Net plans; a number overrides the plans (then recorded as overridden)."""
    checkpoint: Literal["suite", "final"] = "suite"
    """``suite``: the suite's rule (best validation score on the task metric, full-image predictions by
    nnU-Net's predictor, every validation interval); ``final``: nnU-Net's default, the last epoch."""
    mirroring: bool = True
    """Test-time mirroring over nnU-Net's allowed axes (nnU-Net's default)."""
    tile_step_size: float = Field(0.5, gt=0.0, le=1.0)
    """Sliding-window step as a fraction of the patch (nnU-Net's default 0.5)."""
    augmentation_workers: int | None = Field(None, ge=0)
    """``nnUNet_n_proc_DA``: None is 0 (in-process augmentation) on the CPU, nnU-Net's own choice on CUDA."""
    compile: bool = True
    """torch.compile of the network on CUDA (nnU-Net's default; nnU-Net never compiles on the CPU)."""
    fingerprint_foreground_voxels: int = Field(10**6, ge=1000)
    """Foreground voxels the fingerprint samples for its intensity statistics. nnU-Net samples 10e7, which
    costs minutes per run on a small CPU whatever the data size; only CT normalisation reads these
    statistics and the suite names no channel CT, so fewer samples change no plan but the recorded
    percentiles."""


BUILTIN_CONFIGS: dict[str, type[MethodConfig]] = {
    "nnunet": NnUNetConfig,
    "supervised": SupervisedConfig,
    "genseg": GenSegConfig,
    "wgan": WGANConfig,
    "dct": DCTConfig,
    "mcf": MCFConfig,
    "ctbct": CTBCTConfig,
}
"""The config model of each built-in kind (``genseg_bench.methods.registry.BUILTIN_KINDS``)."""


def parse_config(model: type[C], config: dict[str, Any], where: str) -> C:
    """Validate a ``config`` table; every problem in one :class:`SpecError` naming the valid keys.

    ``where`` says which spec the table belongs to (file and method name), so the
    message leads the user to the line to fix.
    """
    try:
        return model.model_validate(config)
    except ValidationError as exc:
        known = sorted(model.model_fields)
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                close = difflib.get_close_matches(str(err["loc"][-1]), known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(f"unknown config key {loc!r}{hint}")
            else:
                msg = str(err["msg"]).removeprefix("Value error, ")
                if loc and not isinstance(err["input"], dict | list):
                    msg += f", not {err['input']!r}"
                problems.append(f"config.{loc}: {msg}" if loc else msg)
        raise SpecError(
            f"{where}: invalid {model.__name__}: {'; '.join(problems)}. "
            f"Valid config keys: {', '.join(known)}."
        ) from exc


def resolved_config(kind: str, config: dict[str, Any], where: str = "method") -> dict[str, Any]:
    """``config`` with its kind's defaults filled in; a kind without a known model keeps its table as is."""
    model = BUILTIN_CONFIGS.get(kind)
    return parse_config(model, config, where).resolved() if model else dict(config)
