"""Completeness and consistency of the task specs in tasks/*.toml.

Every experiment of the paper (PAPER_TASKS.md) must be a task, every task must
validate, name only known methods and data sets, cite its data, and carry the
paper's numbers; malformed spec files must fail loudly, naming the file.
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path

import pytest

from genseg_bench.catalog import Catalog
from genseg_bench.errors import SpecError
from genseg_bench.specs import Reference, TaskSpec

ROOT = Path(__file__).resolve().parents[1]
TASKS_DIR = ROOT / "tasks"
METHODS_DIR = ROOT / "baselines"
GENSEG_METHODS_FILE = METHODS_DIR / "genseg.toml"
# suites.toml holds [[suite]] tables (named task sets), every other file [[task]] tables
TASK_FILES = sorted(p for p in TASKS_DIR.glob("*.toml") if p.name not in ("suites.toml", "paper_claims.toml"))

# Ids users type (PAPER_TASKS.md and the open / synthetic tasks).
REQUIRED_IDS = [
    # in-domain
    "fetreg",
    "isic",
    "cvc-clinicdb",
    "icfluid",
    "fuseg",
    "buid",
    "dermquest",
    # out-of-domain and sample efficiency
    "isic-ood",
    "jsrt-ood",
    "jsrt",
    # end-to-end vs. separate
    "separate-fetreg",
    "separate-isic",
    "separate-cvc-clinicdb",
    "separate-icfluid",
    "separate-fuseg",
    "separate-buid",
    "separate-isic-ood",
    "separate-jsrt-ood",
    # augmentation / generation baselines
    "baselines-fetreg",
    "baselines-isic",
    "baselines-cvc-clinicdb",
    "baselines-icfluid",
    "baselines-fuseg",
    "baselines-buid",
    "baselines-isic-ood",
    "baselines-jsrt-ood",
    # semi-supervised
    "semisup-fetreg",
    "semisup-dermquest",
    "semisup-cvc-clinicdb",
    "semisup-icfluid",
    "semisup-fuseg",
    "semisup-buid",
    "semisup-isic",
    "semisup-jsrt",
    "semisup-isic-ood",
    "semisup-jsrt-ood",
    # nnU-Net, backbones, 3D, high data
    "nnunet-jsrt-ood",
    "swinunet-isic",
    "hippocampus-3d",
    "liver-3d",
    "high-data-isic",
    "high-data-fetreg",
    "high-data-buid",
    "high-data-cvc-clinicdb",
    # ablations
    "ablation-generator-isic",
    "ablation-gan-family-isic",
    "ablation-simultaneous-isic",
    "ablation-aug-ops-jsrt",
    "ablation-aug-ops-isic",
    "ablation-elastic-jsrt",
    "ablation-elastic-isic",
    "ablation-rotation-fetreg",
    "ablation-rotation-fpd",
    "ablation-multibranch-isic",
    "ablation-multibranch-icfluid",
    "ablation-multibranch-buid",
    "ablation-gamma-jsrt",
    "ablation-gamma-isic",
    # open data and synthetic
    "kvasir-to-cvc",
    "cvc-to-kvasir",
    "synthetic",
    "synthetic-ood",
    "synthetic-genseg",
]

KNOWN_SOURCES = {
    "isic2018",
    "ph2",
    "dermis",
    "dermquest",
    "jsrt",
    "nlm-mc",
    "nlm-sz",
    "covid-qu-ex",
    "fetreg",
    "fpd",
    "kvasir",
    "cvc-clinicdb",
    "buid",
    "fuseg",
    "icfluid",
    "etab-camus",
    "msd-hippocampus",
    "msd-liver",
    "synthetic-a",
    "synthetic-b",
}

# Methods of the paper that genseg-bench does not implement: they may appear in
# references (the paper's numbers), as the bare name or with a backbone suffix
# ("mcf-deeplab"), but never in default_methods.
PAPER_ONLY_METHODS = (
    "bbdm",
    "soft-intro-vae",
)

# Paper tasks whose results the paper's text gives only as figures (no number in the
# text), so they carry no reference. Anything else that is not synthetic, open data or
# an extension must have at least one reference.
NO_NUMBER_IN_TEXT = {
    "dermquest",  # Fig. 7a only
    "semisup-dermquest",  # Fig. 7a only
    "liver-3d",  # Fig. 8d only
    "ablation-rotation-fetreg",  # Fig. 10d only
    "ablation-rotation-fpd",  # Fig. 10d only
    "ablation-multibranch-isic",  # Fig. 10e only (isic with 200 examples)
}

# Labelled cases per training source (PAPER_TASKS.md, A.4; the copies in ../shared/data
# for kvasir / cvc-clinicdb, which lack a few pairs). Used to check that every size a
# task asks for can be drawn from the training pool left after test and validation.
SOURCE_SIZES = {
    "isic2018": 2594,
    "dermquest": 137,
    "jsrt": 247,
    "fetreg": 2718,
    "fpd": 482,
    "kvasir": 998,
    "cvc-clinicdb": 609,
    "buid": 630,
    "fuseg": 1010,
    "icfluid": 1460,
    "msd-hippocampus": 260,
    "msd-liver": 123,
    "etab-camus": 1800,
}

FIGURE_RE = re.compile(r"^Fig\. ([2-9]|10)[a-h]?(, ([2-9]|10)?[a-h]?)*$")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load(tasks_dir=TASKS_DIR, methods_dir=METHODS_DIR)


def _is_paper_task(task: TaskSpec) -> bool:
    return not task.synthetic and not task.open_data and task.family != "extension"


def _is_paper_only(name: str) -> bool:
    return any(name == stem or name.startswith(stem + "-") for stem in PAPER_ONLY_METHODS)


def _is_genseg_variant(name: str) -> bool:
    return name.startswith(("genseg-", "separate-"))


def _find(
    task: TaskSpec, method: str, test_set: str, train_size: int, kind: str = "score"
) -> list[Reference]:
    return [
        r
        for r in task.references
        if (r.method, r.test_set, r.train_size, r.kind) == (method, test_set, train_size, kind)
    ]


# --- loading and completeness -----------------------------------------------------------


def test_catalog_loads_and_every_task_validates(catalog: Catalog) -> None:
    assert catalog.tasks
    for task in catalog.tasks.values():
        assert TaskSpec.model_validate(task.model_dump()) == task


@pytest.mark.parametrize("task_id", REQUIRED_IDS)
def test_required_task_exists(catalog: Catalog, task_id: str) -> None:
    assert task_id in catalog.tasks, f"task {task_id!r} is missing from tasks/*.toml"


def test_task_files_hold_only_task_tables() -> None:
    for path in TASK_FILES:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        assert set(data) == {"task"}, path


def test_each_file_is_one_family(catalog: Catalog) -> None:
    """An entry that extends a task of another file must override ``family``."""
    for path in TASK_FILES:
        ids = [t["id"] for t in tomllib.loads(path.read_text(encoding="utf-8"))["task"]]
        families = {catalog.tasks[i].family for i in ids}
        assert len(families) == 1, f"{path.name}: tasks of several families {families}"


def test_descriptions_are_unique_and_fields_filled(catalog: Catalog) -> None:
    """A duplicated description means an extending entry forgot to override it."""
    seen: dict[str, str] = {}
    for task in catalog.tasks.values():
        for field in ("family", "description", "organ", "modality"):
            assert getattr(task, field).strip(), f"{task.id}: empty {field}"
        if _is_paper_task(task):
            assert task.figure.strip(), f"{task.id}: a paper task names its figure"
        assert task.description not in seen, f"{task.id} and {seen.get(task.description)} share a description"
        seen[task.description] = task.id


# --- methods ------------------------------------------------------------------------------


def test_supervised_default_methods_exist(catalog: Catalog) -> None:
    for task in catalog.tasks.values():
        for name in task.default_methods:
            assert not _is_paper_only(name), f"{task.id}: {name!r} is not implemented; keep it to references"
            if not _is_genseg_variant(name):
                assert name in catalog.methods, f"{task.id}: unknown default method {name!r}"


def test_genseg_default_methods_exist(catalog: Catalog) -> None:
    if not GENSEG_METHODS_FILE.exists():
        pytest.skip(f"{GENSEG_METHODS_FILE} does not exist yet")
    for task in catalog.tasks.values():
        for name in task.default_methods:
            if _is_genseg_variant(name):
                assert name in catalog.methods, f"{task.id}: unknown default method {name!r}"


def test_reference_methods_are_known(catalog: Catalog) -> None:
    strict_genseg = GENSEG_METHODS_FILE.exists()
    for task in catalog.tasks.values():
        for ref in task.references:
            for name in filter(None, (ref.method, ref.baseline)):
                if name in catalog.methods or _is_paper_only(name):
                    continue
                if _is_genseg_variant(name) and not strict_genseg:
                    continue
                pytest.fail(f"{task.id}: reference names unknown method {name!r}")


# --- references ---------------------------------------------------------------------------


def test_score_references_in_unit_interval(catalog: Catalog) -> None:
    for task in catalog.tasks.values():
        for ref in task.references:
            if ref.kind == "score":
                assert 0.0 <= ref.value <= 1.0, (task.id, ref)
            else:
                assert ref.baseline and 0.0 < abs(ref.value) < 1.0, (task.id, ref)


def test_references_name_a_figure_and_a_size_the_task_runs(catalog: Catalog) -> None:
    for task in catalog.tasks.values():
        sizes = {*task.train_sizes, *task.sweep_sizes}
        if task.high_data_size:
            sizes.add(task.high_data_size)
        for ref in task.references:
            assert FIGURE_RE.match(ref.figure), f"{task.id}: figure {ref.figure!r}"
            assert ref.train_size in sizes, (
                f"{task.id}: reference at n={ref.train_size}, task runs {sorted(sizes)}"
            )


def test_references_are_unique_within_a_task(catalog: Catalog) -> None:
    for task in catalog.tasks.values():
        keys = [(r.method, r.test_set, r.train_size, r.kind, r.baseline) for r in task.references]
        assert len(keys) == len(set(keys)), f"{task.id}: the same reference twice"


def test_every_paper_task_has_a_reference(catalog: Catalog) -> None:
    for task_id in NO_NUMBER_IN_TEXT:
        assert task_id in catalog.tasks and _is_paper_task(catalog.tasks[task_id]), task_id
    for task in catalog.tasks.values():
        if not _is_paper_task(task) or task.id in NO_NUMBER_IN_TEXT:
            continue
        assert task.references, f"{task.id}: a paper task needs at least one paper number"


OOD_TABLE = [  # PAPER_TASKS.md, "Out-of-domain (Fig. 2b)"
    ("isic-ood", "dermis", 40, {"genseg-unet": 0.65, "unet": 0.41, "genseg-deeplab": 0.67, "deeplab": 0.47}),
    ("isic-ood", "ph2", 40, {"genseg-unet": 0.77, "unet": 0.56, "genseg-deeplab": 0.74, "deeplab": 0.63}),
    ("jsrt-ood", "nlm-mc", 9, {"genseg-unet": 0.86, "unet": 0.77, "genseg-deeplab": 0.87, "deeplab": 0.80}),
    ("jsrt-ood", "nlm-sz", 9, {"genseg-unet": 0.93, "unet": 0.82, "genseg-deeplab": 0.91, "deeplab": 0.86}),
]


@pytest.mark.parametrize(("task_id", "test_set", "n", "scores"), OOD_TABLE)
def test_ood_table_is_in_the_references(
    catalog: Catalog, task_id: str, test_set: str, n: int, scores: dict[str, float]
) -> None:
    task = catalog.tasks[task_id]
    for method, value in scores.items():
        refs = _find(task, method, test_set, n)
        assert len(refs) == 1, f"{task_id}: no unique reference {method} on {test_set} with n={n}"
        assert refs[0].value == pytest.approx(value) and refs[0].figure == "Fig. 2b"


IN_DOMAIN_GAINS = [  # PAPER_TASKS.md, "In-domain, ultra-low data (Fig. 2a)": (DeepLab, UNet)
    ("fetreg", 50, 0.206, 0.150),
    ("isic", 40, 0.145, 0.096),
    ("cvc-clinicdb", 40, 0.113, 0.110),
    ("icfluid", 50, 0.113, 0.069),
    ("fuseg", 50, 0.109, 0.190),
    ("buid", 100, 0.104, 0.126),
]


@pytest.mark.parametrize(("task_id", "n", "deeplab_gain", "unet_gain"), IN_DOMAIN_GAINS)
def test_in_domain_gains_are_in_the_references(
    catalog: Catalog, task_id: str, n: int, deeplab_gain: float, unet_gain: float
) -> None:
    task = catalog.tasks[task_id]
    assert task.train_sizes == [n]
    for method, baseline, value in (
        ("genseg-deeplab", "deeplab", deeplab_gain),
        ("genseg-unet", "unet", unet_gain),
    ):
        refs = _find(task, method, task_id, n, kind="gain")
        assert len(refs) == 1 and refs[0].baseline == baseline, (task_id, method)
        assert refs[0].value == pytest.approx(value) and refs[0].figure == "Fig. 2a"


def test_headline_numbers_of_the_other_figures(catalog: Catalog) -> None:
    expected = [  # (task, method, test set, n, value)
        ("fetreg", "deeplab", "fetreg", 500, 0.51),
        ("fuseg", "deeplab", "fuseg", 800, 0.73),
        ("jsrt", "unet", "jsrt", 175, 0.97),
        ("jsrt", "genseg-unet", "nlm-sz", 9, 0.93),
        ("separate-fetreg", "separate-deeplab", "fetreg", 50, 0.42),
        ("separate-jsrt-ood", "separate-unet", "nlm-sz", 9, 0.84),
        ("baselines-fuseg", "wgan-unet", "fuseg", 50, 0.66),
        ("baselines-isic-ood", "unet-flip", "ph2", 40, 0.68),
        ("baselines-isic", "unet-combine", "isic", 200, 0.67),
        ("semisup-cvc-clinicdb", "mcf-deeplab", "cvc-clinicdb", 40, 0.69),
        ("semisup-isic-ood", "mcf-deeplab", "dermis", 40, 0.58),
        ("nnunet-jsrt-ood", "nnunet", "nlm-sz", 175, 0.784),
        ("nnunet-jsrt-ood", "genseg-unet", "nlm-sz", 175, 0.945),
        ("swinunet-isic", "swinunet", "dermis", 40, 0.38),
        ("swinunet-isic", "genseg-swinunet", "ph2", 40, 0.65),
        ("high-data-isic", "genseg-unet", "isic", 1000, 0.739),
        ("high-data-fetreg", "genseg-deeplab-rot5", "fetreg", 2000, 0.717),
    ]
    for task_id, method, test_set, n, value in expected:
        refs = _find(catalog.tasks[task_id], method, test_set, n)
        assert [r.value for r in refs] == [pytest.approx(value)], (task_id, method, test_set, n)
    gains = _find(catalog.tasks["ablation-simultaneous-isic"], "genseg-unet", "ph2", 40, kind="gain")
    assert [g.value for g in gains] == [pytest.approx(0.121)]


# --- data sets ----------------------------------------------------------------------------


def test_data_set_ids_are_known(catalog: Catalog) -> None:
    for task in catalog.tasks.values():
        used = set(task.sources) | {d.source for d in task.datasets}
        assert used <= KNOWN_SOURCES, f"{task.id}: unknown data set ids {sorted(used - KNOWN_SOURCES)}"


def test_every_data_set_used_is_cited(catalog: Catalog) -> None:
    for task in catalog.tasks.values():
        cited = {d.source: d for d in task.datasets}
        for source in task.sources:
            assert source in cited, f"{task.id}: {source} has no citation"
            entry = cited[source]
            assert entry.licence.strip(), f"{task.id}: {source} has no licence"
            if task.synthetic:
                assert entry.citation.startswith("generated by genseg-bench") and entry.licence == "MIT"
            else:
                assert re.search(r"\b(19|20)\d\d\b", entry.citation), (
                    f"{task.id}: {source} citation has no year"
                )
                assert entry.url.startswith("http"), f"{task.id}: {source} has no url"


def test_citations_agree_across_tasks(catalog: Catalog) -> None:
    seen: dict[str, tuple[str, str, str, str]] = {}
    for task in catalog.tasks.values():
        for d in task.datasets:
            entry = (d.citation, d.licence, d.url)
            if d.source in seen:
                assert seen[d.source][1:] == entry, f"{d.source}: {task.id} and {seen[d.source][0]} disagree"
            else:
                seen[d.source] = (task.id, *entry)
    assert seen["msd-hippocampus"][2] == "CC BY-SA 4.0"


def test_metric_channels_and_size(catalog: Catalog) -> None:
    grey = {
        "jsrt",
        "nlm-mc",
        "nlm-sz",
        "covid-qu-ex",
        "buid",
        "icfluid",
        "etab-camus",
        "msd-hippocampus",
        "msd-liver",
    }
    for task in catalog.tasks.values():
        expected_metric = "jaccard" if task.organ == "skin lesion" else "dice"
        assert task.metric == expected_metric, task.id
        assert task.channels == (1 if task.train_source in grey else 3), task.id
        if _is_paper_task(task) and task.dims == 2:
            assert task.image_size == 256, task.id


def test_training_sizes_fit_the_training_pool(catalog: Catalog) -> None:
    """Sizes a task asks for must be drawable from the non-test part, and leave a training case.

    Validation is carved out of the n labelled cases, so the n must fit the pool left after
    the test part (rounded up: the conservative side), and the smallest n must keep at least
    one training case after its validation cases. ``high_data_size`` is the paper's "full
    training set", everything that is not test (the 3D tasks' 208 and 98 include the
    validation volumes).
    """
    for task in catalog.tasks.values():
        if task.synthetic:
            continue
        n = SOURCE_SIZES[task.train_source]
        n_test = math.ceil(n * task.test_fraction) if any(t.split == "test" for t in task.test_sets) else 0
        pool = n - n_test
        rule = task.validation
        sizes = [*task.train_sizes, *task.sweep_sizes]
        largest, smallest = max(sizes), min(sizes)
        assert largest <= pool, f"{task.id}: n={largest} but only {pool} non-test cases"
        n_val = max(rule.min_cases, round(smallest * rule.fraction))
        assert n_val < smallest, f"{task.id}: n={smallest} leaves no training case after {n_val} validation"
        if task.high_data_size:
            assert task.high_data_size <= pool, f"{task.id}: high_data_size {task.high_data_size} > {pool}"


# --- specific task shapes -----------------------------------------------------------------


def test_out_of_domain_shapes(catalog: Catalog) -> None:
    isic = catalog.tasks["isic-ood"]
    assert isic.train_source == "isic2018" and isic.train_sizes == [40]
    assert [(t.name, t.source, t.split, t.domain) for t in isic.test_sets] == [
        ("isic", "isic2018", "test", "in"),
        ("ph2", "ph2", "all", "out"),
        ("dermis", "dermis", "all", "out"),
    ]
    for task_id in ("jsrt-ood", "jsrt"):
        jsrt = catalog.tasks[task_id]
        assert jsrt.train_source == "jsrt" and jsrt.train_sizes == [9]
        assert [(t.source, t.domain) for t in jsrt.test_sets] == [
            ("jsrt", "in"),
            ("nlm-mc", "out"),
            ("nlm-sz", "out"),
        ]


def test_sample_efficiency_sweeps(catalog: Catalog) -> None:
    assert catalog.tasks["jsrt"].sweep_sizes[0] == 9 and catalog.tasks["jsrt"].sweep_sizes[-1] == 175
    assert catalog.tasks["isic"].sweep_sizes == [40, 80, 120, 160, 200]
    fetreg, fuseg = catalog.tasks["fetreg"].sweep_sizes, catalog.tasks["fuseg"].sweep_sizes
    assert fetreg[0] == 50 and 500 in fetreg and fetreg[-1] > 500
    assert fuseg[0] == 50 and {600, 800} <= set(fuseg)
    for task in catalog.tasks.values():
        assert task.sweep_sizes == sorted(set(task.sweep_sizes)), task.id


def test_three_d_tasks(catalog: Catalog) -> None:
    for task_id, source, high in (("hippocampus-3d", "msd-hippocampus", 208), ("liver-3d", "msd-liver", 98)):
        task = catalog.tasks[task_id]
        assert (task.dims, task.channels, task.train_source, task.train_sizes) == (3, 1, source, [40])
        assert task.high_data_size == high
        assert task.test_fraction == pytest.approx(0.2) and task.validation.fraction == pytest.approx(0.2)
    assert catalog.tasks["hippocampus-3d"].open_data


def test_high_data_tasks(catalog: Catalog) -> None:
    for task_id, low, high in (
        ("isic", 40, 1000),
        ("fetreg", 50, 2000),
        ("buid", 100, 400),
        ("cvc-clinicdb", 40, 400),
    ):
        task = catalog.tasks[f"high-data-{task_id}"]
        assert task.train_sizes == [low, high] and task.high_data_size == high


def test_open_data_tasks(catalog: Catalog) -> None:
    k2c, c2k = catalog.tasks["kvasir-to-cvc"], catalog.tasks["cvc-to-kvasir"]
    assert k2c.train_source == "kvasir" and c2k.train_source == "cvc-clinicdb"
    assert [(t.source, t.split, t.domain) for t in k2c.test_sets] == [
        ("kvasir", "test", "in"),
        ("cvc-clinicdb", "all", "out"),
    ]
    assert [(t.source, t.split, t.domain) for t in c2k.test_sets] == [
        ("cvc-clinicdb", "test", "in"),
        ("kvasir", "all", "out"),
    ]
    for task_id in ("kvasir-to-cvc", "cvc-to-kvasir", "cvc-clinicdb", "hippocampus-3d"):
        assert catalog.tasks[task_id].open_data, task_id
    assert 40 in k2c.train_sizes


def test_synthetic_tasks(catalog: Catalog) -> None:
    for task_id, methods in (
        ("synthetic", ["unet", "deeplab"]),
        ("synthetic-ood", ["unet", "deeplab"]),
        ("synthetic-genseg", ["unet", "genseg-unet"]),
    ):
        task = catalog.tasks[task_id]
        assert task.synthetic and task.open_data, task_id
        assert (task.image_size, task.channels, task.metric) == (64, 3, "dice")
        assert task.train_sizes == [16] and task.sweep_sizes == [8, 16, 32, 64]
        assert task.train_source == "synthetic-a" and task.default_methods == methods
    ood = catalog.tasks["synthetic-ood"]
    assert [(t.source, t.split, t.domain) for t in ood.test_sets] == [
        ("synthetic-a", "test", "in"),
        ("synthetic-b", "all", "out"),
    ]
    assert [(t.source, t.split) for t in catalog.tasks["synthetic"].test_sets] == [("synthetic-a", "test")]


# --- malformed spec files -----------------------------------------------------------------

MINIMAL = """
[[task]]
id = "{id}"
family = "test"
description = "A tiny task."
organ = "lungs"
modality = "chest X-ray"
train_source = "jsrt"
test_sets = [{{ name = "jsrt", source = "jsrt", split = "test", domain = "in" }}]
{metric_key} = "dice"
train_sizes = [9]
default_methods = ["unet"]
datasets = [{{ source = "jsrt", citation = "Someone, Somewhere, 2000.", licence = "see terms", url = "http://x" }}]
"""


def _write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def test_minimal_task_file_loads(tmp_path: Path) -> None:
    _write(tmp_path, "a.toml", MINIMAL.format(id="tiny", metric_key="metric"))
    assert Catalog.load(tasks_dir=tmp_path, methods_dir=METHODS_DIR).task("tiny").metric == "dice"


def test_unknown_key_is_rejected_naming_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "typo.toml", MINIMAL.format(id="tiny", metric_key="metirc"))
    with pytest.raises(SpecError) as err:
        Catalog.load(tasks_dir=tmp_path, methods_dir=METHODS_DIR)
    assert str(path) in str(err.value) and "metirc" in str(err.value)


def test_extends_of_unknown_id_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, "child.toml", '[[task]]\nid = "child"\nextends = "no-such-task"\n')
    with pytest.raises(SpecError, match="no-such-task") as err:
        Catalog.load(tasks_dir=tmp_path, methods_dir=METHODS_DIR)
    assert str(path) in str(err.value)


def test_duplicate_ids_are_rejected(tmp_path: Path) -> None:
    _write(tmp_path, "a.toml", MINIMAL.format(id="tiny", metric_key="metric"))
    _write(tmp_path, "b.toml", MINIMAL.format(id="tiny", metric_key="metric"))
    with pytest.raises(SpecError, match="defined twice"):
        Catalog.load(tasks_dir=tmp_path, methods_dir=METHODS_DIR)


def test_extending_entry_is_validated_too(tmp_path: Path) -> None:
    text = (
        MINIMAL.format(id="base", metric_key="metric")
        + '\n[[task]]\nid = "child"\nextends = "base"\nmetric = "f1"\n'
    )
    _write(tmp_path, "a.toml", text)
    with pytest.raises(SpecError, match="child"):
        Catalog.load(tasks_dir=tmp_path, methods_dir=METHODS_DIR)
