"""Typed, validated specs: what a task, a method, a run and a run's result are.

Every spec rejects unknown keys (``extra="forbid"``) so a typo in a TOML file is
an error at load time, not a silently ignored setting that changes a result.

Identity. A run id hashes each spec's :meth:`Strict.identity`: the fields that
change a result, never the descriptive ones (a task's description, figure,
citations, paper references), so editing prose never orphans results and
editing an image size, a split, a metric or a method default always makes new
runs. ``docs/identity.md`` lists the fields on each side.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SCHEMA_VERSION = 2


class Strict(BaseModel):
    """Base model: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def identity(self) -> dict[str, Any]:
        """What :func:`stable_hash` hashes: every field unless a subclass leaves descriptive ones out."""
        return self.model_dump()


class TestSetSpec(Strict):
    """One evaluation set of a task.

    ``source`` is a data set id (see ``genseg_bench.data.sources``). ``split`` says
    which part of it is evaluated: ``test`` (the held-out part of the training
    source's split), or ``all`` (every case of an out-of-domain set).
    """

    __test__ = False  # not a pytest class

    name: str
    source: str
    split: Literal["test", "all"] = "all"
    domain: Literal["in", "out"] = "out"


class Reference(Strict):
    """A number published in the paper, with the figure it comes from.

    ``kind="score"`` is an absolute metric value in [0, 1]; ``kind="gain"`` is an
    absolute improvement over ``baseline`` in metric points (0.206 for +20.6).
    """

    method: str
    test_set: str
    train_size: int
    value: float
    kind: Literal["score", "gain"] = "score"
    baseline: str | None = None
    figure: str

    @model_validator(mode="after")
    def _gain_has_baseline(self) -> Reference:
        if self.kind == "gain" and not self.baseline:
            raise ValueError("a reference of kind 'gain' needs 'baseline' (the method it is a gain over)")
        if self.kind == "score" and not 0.0 <= self.value <= 1.0:
            raise ValueError(f"score reference {self.value} is not in [0, 1]")
        return self


class DatasetCitation(Strict):
    """Citation and licence of one data set a task uses."""

    source: str
    citation: str
    licence: str
    url: str = ""


class ValidationRule(Strict):
    """How the validation cases are carved out of a run's n labelled cases.

    ``fraction`` of the n (at least ``min_cases``, at most ``max_cases``): n labelled
    images means n in total, as in the paper's code (isic-40 is 32 train + 8
    validation, jsrt-9 is 7 + 2; A.4's 3D rule is 80:20 train/validation).
    """

    fraction: float = Field(0.2, gt=0.0, lt=1.0)
    min_cases: int = Field(1, ge=1)
    max_cases: int | None = None


class UnlabelledPool(Strict):
    """Where a semi-supervised task's unlabelled images come from, and how many a run gets.

    ``source`` is the task's training source (its cases outside the run's labelled n
    and outside the held-out test part: never a validation or test image) or another
    data set that no test set of the task reads (all of its cases). ``size`` is the
    pool asked for; a run gets ``min(size, cases available)`` and records both. The
    cap of 1,000 is the paper's pool (App. C): the pool is held on the device as
    float tensors, 0.8 GB at 256 px.
    """

    source: str
    size: int = Field(1000, ge=1, le=1000)


class TaskSpec(Strict):
    """One experiment of the paper (or an open-data / synthetic task).

    ``version`` is the task's explicit version, as in lm-evaluation-harness: bump it
    when something outside the spec changes what the task measures (a source's
    importer, the split algorithm), so new results are never averaged with old
    ones. Changes inside the spec need no bump: the identity hash sees them.
    """

    DESCRIPTIVE: ClassVar[frozenset[str]] = frozenset(
        {
            "family",
            "description",
            "organ",
            "modality",
            "train_sizes",
            "sweep_sizes",
            "high_data_size",
            "default_methods",
            "references",
            "datasets",
            "figure",
            "open_data",
            "synthetic",
        }
    )
    """Fields left out of the identity: prose, citations, paper numbers, and which sizes and
    methods a grid runs by default (a run's own size and method are in its id)."""
    DESCRIPTIVE_TEST_SET: ClassVar[frozenset[str]] = frozenset({"domain"})
    """Test-set fields left out of the identity (``domain`` only labels a set in or out of domain)."""
    ADDED_AFTER_LEGACY: ClassVar[frozenset[str]] = frozenset({"version", "unlabelled"})
    """Fields that did not exist when task hashes covered the whole spec (see :func:`legacy_task_hash`)."""

    id: str
    version: int = Field(1, ge=1)
    family: str
    description: str
    organ: str
    modality: str
    dims: Literal[2, 3] = 2
    train_source: str
    test_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    validation: ValidationRule = ValidationRule()
    test_sets: list[TestSetSpec]
    metric: Literal["dice", "jaccard"]
    image_size: int = 256
    channels: int = 3
    train_sizes: list[int]
    sweep_sizes: list[int] = []
    high_data_size: int | None = None
    """Training-set size of the paper's high-data setting; 0 in TOML switches off an inherited one."""
    default_methods: list[str]
    references: list[Reference] = []
    datasets: list[DatasetCitation]
    split_seed: int = 0
    split_group: str = ""
    """Regex capturing a group key (e.g. the patient) kept whole on one side of every split boundary.

    Empty: the training source's own grouping where it has one (CVC-ClinicDB sequences), else none."""
    figure: str = ""
    open_data: bool = False
    synthetic: bool = False
    unlabelled: UnlabelledPool | None = None
    """The unlabelled pool of a semi-supervised task (:class:`UnlabelledPool`); None: the task has none.

    In the identity when set (the pool changes what a semi-supervised method learns);
    left out when None, so tasks without a pool keep the run ids they had before the
    field existed."""

    @field_validator("high_data_size")
    @classmethod
    def _zero_means_none(cls, v: int | None) -> int | None:
        return v or None

    @field_validator("id")
    @classmethod
    def _id_shape(cls, v: str) -> str:
        if not v or v != v.lower() or " " in v:
            raise ValueError(f"task id {v!r} must be lower-case with no spaces")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> TaskSpec:
        names = [t.name for t in self.test_sets]
        if not names:
            raise ValueError("a task needs at least one test set")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate test set names: {names}")
        if not self.train_sizes or any(n < 1 for n in self.train_sizes):
            raise ValueError("train_sizes must be a non-empty list of positive integers")
        if not self.default_methods:
            raise ValueError("default_methods must name at least one method")
        for ref in self.references:
            if ref.test_set not in names:
                raise ValueError(f"reference names test set {ref.test_set!r}, not one of {names}")
        cited = {d.source for d in self.datasets}
        used = {self.train_source, *(t.source for t in self.test_sets)}
        missing = used - cited
        if missing:
            raise ValueError(f"data sets {sorted(missing)} are used but have no citation/licence entry")
        if any(t.split == "test" for t in self.test_sets) and self.test_fraction <= 0:
            raise ValueError("a test set with split='test' needs test_fraction > 0")
        if self.unlabelled is not None:
            pool = self.unlabelled.source
            tested = sorted(
                {t.name for t in self.test_sets if t.source == pool and pool != self.train_source}
            )
            if tested:
                raise ValueError(
                    f"unlabelled.source {pool!r} is evaluated by test set(s) {tested}: the unlabelled pool "
                    "never holds a test image. Use the training source or a data set no test set reads."
                )
            if pool not in cited:
                raise ValueError(f"unlabelled.source {pool!r} has no citation/licence entry in datasets")
        return self

    def identity(self) -> dict[str, Any]:
        """The result-changing fields: data, splits, test sets, metric, image size, channels, version.

        ``unlabelled`` only when the task has a pool (see the field).
        """
        out = self.model_dump(
            exclude={
                **dict.fromkeys(self.DESCRIPTIVE, True),
                "test_sets": {"__all__": set(self.DESCRIPTIVE_TEST_SET)},
            }
        )
        if out.get("unlabelled") is None:
            out.pop("unlabelled", None)
        return out

    @property
    def sources(self) -> list[str]:
        """Every data set the task reads, training source first (the unlabelled pool's source included)."""
        out = [self.train_source]
        for t in self.test_sets:
            if t.source not in out:
                out.append(t.source)
        if self.unlabelled is not None and self.unlabelled.source not in out:
            out.append(self.unlabelled.source)
        return out


class MethodSpec(Strict):
    """A method configuration: a registered implementation (``kind``) plus its config.

    Baselines are specs over one training loop; GenSeg variants are specs over one
    GenSeg implementation. The resolved config (every default of the kind's config
    model filled in) takes part in every run id; the description and figure do not.
    """

    DESCRIPTIVE: ClassVar[frozenset[str]] = frozenset({"description", "figure"})

    name: str
    kind: str
    description: str
    backbone: str = "unet"
    encoder: str = "resnet18"
    encoder_weights: str | None = None
    config: dict[str, Any] = {}
    figure: str = ""

    def identity(self) -> dict[str, Any]:
        """Everything but the prose, with ``config`` resolved (defaults filled in) by the kind's model."""
        from genseg_bench.methods.registry import spec_config

        return {**self.model_dump(exclude=set(self.DESCRIPTIVE)), "config": spec_config(self)}

    def fingerprint(self) -> str:
        """Stable hash of everything in the spec that changes a result (:meth:`identity`)."""
        return stable_hash(self)


class Profile(Strict):
    """Budgets and optimiser settings shared by every method of a run.

    ``paper`` follows A.6 of the paper; ``quick`` keeps the synthetic tasks to
    minutes on a 2-core CPU. Every method of a grid gets the same profile, so
    budgets are equal across methods by construction.
    """

    name: str
    image_size: int | None = None  # None: the task's own size
    iterations: int
    batch_size: int
    eval_every: int
    """Iterations between validations, scheduler steps and checkpoint checks: fixed, never tied to n
    (a plateau scheduler stepped once per epoch of 5 iterations freezes a run within ~100)."""
    seg_lr: float
    seg_momentum: float = 0.9
    seg_weight_decay: float = 1e-3
    plateau_patience: int = 2
    plateau_min_lr_factor: float = 0.01
    """ReduceLROnPlateau's floor as a fraction of ``seg_lr`` (at most two decays): with 8-9 validation
    images a lucky early score otherwise decays the lr to 1e-8 and ends training (measured: 3e-8 by
    iteration 750 of 800 on Kvasir-40)."""
    plateau_wait_for_foreground: bool = True
    """Step the plateau scheduler only once a validation score beats predicting nothing: a segmenter
    that still predicts all background is not on a plateau (measured on CVC-ClinicDB-40: six
    evaluations at Dice 0 cut the UNet's lr 10x before it had predicted one polyp)."""
    seg_optimizer: Literal["rmsprop", "adam"] = "rmsprop"
    """The segmenter's optimiser (recipe). ``rmsprop`` is A.6 of the paper (momentum ``seg_momentum``,
    L2 ``seg_weight_decay``); ``adam`` is torch's Adam with ``seg_weight_decay`` as L2. RMSprop's
    second-moment estimate starts at zero with no bias correction, so its first steps are ~10x the
    nominal rate: at 3e-4 from scratch the UNet found its first foreground only after ~600 of 800
    iterations on a held-out task, where Adam at 1e-3 found it by iteration 100."""
    seg_loss: Literal["bce", "bce+dice"] = "bce"
    """The segmenter loss of every method (recipe): ``bce`` is the paper's text; ``bce+dice`` is
    0.5 BCE + 0.5 batch soft Dice, as the paper's public code and nnU-Net (Dice + CE) train."""
    input_norm: Literal["none", "image", "dataset"] = "none"
    """Input normalisation inside every segmenter (recipe): ``image`` z-scores each image per channel
    (nnU-Net's default for non-CT data), ``dataset`` z-scores with the training images' channel mean
    and std (stored with the network). Inside the network, so real, generated, validation and test
    images all pass it. With ``image``, brightness and contrast augmentation cancel out (the z-score
    undoes any affine change of an image); only gamma survives."""
    intensity_aug: bool = False
    """Brightness / contrast / gamma augmentation of every image a segmenter trains on, real and
    generated alike (recipe; ranges as nnU-Net's: genseg_bench.methods.recipe)."""
    gen_lr: float = 1e-5
    gen_weight_decay: float = 1e-3
    arch_lr: float = 1e-4
    arch_weight_decay: float = 1e-5
    gen_width: int = 64
    amp: bool = True

    LEGACY: ClassVar[dict[str, Any]] = {"plateau_min_lr_factor": 0.0, "plateau_wait_for_foreground": False}
    """What a field meant before it existed, for fields whose default changed behaviour when added.

    A result records its profile as it ran; one recorded before a field existed lacks it. Filling
    the gap with today's default would make a run of the old code look like a run of the new one
    (and the report would average them), so the report fills these fields with the behaviour the
    code had instead: no lr floor, the scheduler stepped from the first validation. A new Profile
    field whose default changes what runs do must be added here.
    """


class RunSpec(Strict):
    """One cell of a grid: (task, method, training size, seed, profile).

    ``run_id`` hashes everything that changes the result: the task's identity
    (``task_hash``, :meth:`TaskSpec.identity`), the resolved method config
    (``method_hash``), the profile, the data fingerprints, size and seed.
    """

    task: str
    method: str
    train_size: int
    seed: int
    profile: str
    subset: Literal["fixed", "resampled"] = "fixed"
    """``fixed``: every seed trains on the same n labelled cases (the paper); ``resampled``: each seed
    draws its own n cases, so the spread over seeds includes the choice of labelled set."""
    task_hash: str
    method_hash: str
    profile_hash: str
    data_fingerprints: dict[str, str]

    @classmethod
    def for_job(
        cls,
        task: TaskSpec,
        method: MethodSpec,
        train_size: int,
        seed: int,
        profile: Profile,
        data_fingerprints: dict[str, str],
        resample: bool = False,
    ) -> RunSpec:
        """The spec of one grid job, hashing task, method and profile the one way the grid and dry run share."""
        return cls(
            task=task.id,
            method=method.name,
            train_size=train_size,
            seed=seed,
            profile=profile.name,
            subset="resampled" if resample else "fixed",
            task_hash=stable_hash(task),
            method_hash=method.fingerprint(),
            profile_hash=stable_hash(profile),
            data_fingerprints=data_fingerprints,
        )

    @property
    def run_id(self) -> str:
        payload = json.dumps(self.model_dump(), sort_keys=True).encode()
        digest = hashlib.sha256(payload).hexdigest()[:12]
        seed = f"s{self.seed}" + ("r" if self.subset == "resampled" else "")
        return f"{self.task}__{self.method}__n{self.train_size}__{seed}__{self.profile}__{digest}"


class TestSetResult(Strict):
    """Per-case and mean scores on one test set."""

    __test__ = False

    case_ids: list[str]
    dice: list[float]
    jaccard: list[float]
    mean_dice: float
    mean_jaccard: float


class UnlabelledRecord(Strict):
    """The unlabelled pool of one run, as drawn: its source, the size asked for and the cases, in order.

    ``case_ids`` are disjoint from the run's train, validation and test cases.
    """

    source: str
    requested: int
    size: int
    """The pool drawn: ``len(case_ids)``, at most ``requested`` (fewer when the source has fewer cases left)."""
    case_ids: list[str]

    @model_validator(mode="after")
    def _size_is_the_count(self) -> UnlabelledRecord:
        if self.size != len(self.case_ids) or self.size > self.requested:
            raise ValueError(
                f"unlabelled pool of size {self.size} lists {len(self.case_ids)} cases (asked for {self.requested})"
            )
        return self


class RunResult(Strict):
    """One JSON file per run. ``schema_version`` guards against misreading old files."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    spec: RunSpec
    status: Literal["ok", "failed"]
    error: str | None = None
    metric: Literal["dice", "jaccard"]
    test_sets: dict[str, TestSetResult] = {}
    best_val_score: float | None = None
    best_iteration: int | None = None
    iterations: int = 0
    train_cases: list[str] = []
    val_cases: list[str] = []
    """Train and validation cases of the run: together they are the n labelled cases (``spec.train_size``)."""
    unlabelled: UnlabelledRecord | None = None
    """The unlabelled pool the method was given (``FitContext.unlabelled``); None when the task has none."""
    budget: dict[str, Any] = {}
    """What the segmenter was given: ``updates`` (optimiser steps), ``images_seen`` (images it processed
    in training forwards: real, augmented and generated), ``real_per_update`` and ``generated_per_update``."""
    trajectory: dict[str, list[Any]] = {}
    """Per validation: ``iteration``, ``val_score`` (the task metric), ``lr`` (segmenter), ``loss``."""
    wall_time_s: float = 0.0
    device: str = ""
    versions: dict[str, str] = {}
    git_commit: str = ""
    method_config: dict[str, Any] = {}
    segmenter: dict[str, str] = {}
    """What the segmenter was: backbone, architecture, weights and their source, input normalisation."""
    profile: dict[str, Any] = {}
    extras: dict[str, Any] = {}
    artifacts: list[str] = []
    created: str = ""

    def score(self, test_set: str) -> float:
        """The task metric's mean on one test set."""
        r = self.test_sets[test_set]
        return r.mean_jaccard if self.metric == "jaccard" else r.mean_dice


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def stable_hash(obj: BaseModel) -> str:
    """Short content hash of a spec's identity (sorted JSON of :meth:`Strict.identity`)."""
    return _digest(obj.identity() if isinstance(obj, Strict) else obj.model_dump())


def legacy_task_hash(task: TaskSpec) -> str:
    """The ``task_hash`` results got before task identities existed: a hash of the whole spec.

    Such results (written up to and including genseg-bench 0.1.0's first schema-2
    files) recorded no identity; when their hash equals this one for the current
    spec they were made from exactly this spec, so the report can count them as
    runs of the current identity instead of setting them apart.
    """
    return _digest(task.model_dump(exclude=set(TaskSpec.ADDED_AFTER_LEGACY)))


class SuiteFilter(Strict):
    """Select tasks by their metadata, so a suite like ``open`` follows the task files as they grow.

    Every given key must match; ``paper`` means "the task encodes a figure of the paper"
    (a non-empty ``figure``).
    """

    open_data: bool | None = None
    synthetic: bool | None = None
    paper: bool | None = None
    families: list[str] | None = None

    def matches(self, task: TaskSpec) -> bool:
        return (
            (self.open_data is None or task.open_data == self.open_data)
            and (self.synthetic is None or task.synthetic == self.synthetic)
            and (self.paper is None or bool(task.figure) == self.paper)
            and (self.families is None or task.family in self.families)
        )


class ClaimSpec(Strict):
    """One claim of the paper and the comparison on a reachable task that tests it (``tasks/paper_claims.toml``).

    :mod:`genseg_bench.verdicts` turns it into a verdict from result files.
    """

    id: str
    claim: str
    """The paper's statement, in a few words."""
    figure: str
    paper: str
    """The paper's number as the paper reports it (task, backbone, value), for the table."""
    paper_value: float | None = None
    """The number the measurement is compared with: a gain in metric points (``kind = "gain"``), or a
    factor (``kind = "efficiency"``); None where the paper gives only a range or a different task."""
    kind: Literal["gain", "efficiency"] = "gain"
    task: str
    method: str
    baseline: str
    test_set: str
    train_size: int
    profile: str = "cpu"
    note: str = ""
    """What a reader should know about how this comparison stands for the paper's (different task, ...)."""


class SuiteSpec(Strict):
    """A named set of tasks that a method is run and submitted on (``tasks/suites.toml``).

    Tasks are listed (``tasks``) or selected (``where``), never both. ``sizes`` says
    which training sizes of each task a complete submission has: ``train`` (the
    task's ``train_sizes``), ``sweep`` (its ``sweep_sizes``, or the train sizes
    where it has none) or ``all`` (both). ``fingerprints`` pins the content
    fingerprint of a data source (at the size the suite's ``profile`` runs it), so
    that submitted numbers come from the same data as the leaderboard's.
    """

    id: str
    description: str
    tasks: list[str] = []
    where: SuiteFilter | None = None
    sizes: Literal["train", "sweep", "all"] = "train"
    seeds: list[int] = [0, 1, 2]
    profile: str = "paper"
    fingerprints: dict[str, str] = {}

    @model_validator(mode="after")
    def _tasks_or_where(self) -> SuiteSpec:
        if bool(self.tasks) == (self.where is not None):
            raise ValueError(
                "a suite needs exactly one of 'tasks' (a list of task ids) or 'where' (a filter)"
            )
        if not self.seeds:
            raise ValueError("a suite needs at least one seed")
        return self

    def task_sizes(self, task: TaskSpec) -> list[int]:
        """The training sizes a complete run of ``task`` in this suite covers."""
        if self.sizes == "train":
            return sorted(task.train_sizes)
        if self.sizes == "sweep":
            return sorted(task.sweep_sizes or task.train_sizes)
        return sorted({*task.train_sizes, *task.sweep_sizes})
