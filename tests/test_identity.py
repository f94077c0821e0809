"""Run identity: prose edits keep a run id, result-changing edits (task fields, method defaults) change it.

Run ids come from the runner's own grid expansion (``expand_grid``), so the test
follows what ``genseg-bench run`` records, not a re-implementation of the hash.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from genseg_bench import report as rep
from genseg_bench.catalog import Catalog
from genseg_bench.data.splits import make_split
from genseg_bench.methods import config as method_config
from genseg_bench.methods.config import AugmentRanges, GenSegConfig
from genseg_bench.profiles import get_profile
from genseg_bench.results import iter_results
from genseg_bench.runner import TaskData, expand_grid
from genseg_bench.specs import MethodSpec, Reference, TaskSpec, UnlabelledPool, legacy_task_hash, stable_hash

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO / "docs" / "reproduction" / "results"


@pytest.fixture(scope="module")
def data(catalog: Catalog) -> TaskData:
    """The synthetic task's split over stand-in case ids: run ids need the split and fingerprints only."""
    task = catalog.task("synthetic")
    split = make_split(
        [f"case{i:03d}" for i in range(100)], task.split_seed, task.test_fraction, task.validation
    )
    return TaskData(task=task, prepared={}, split=split)


def _run_id(task: TaskSpec, method: MethodSpec, data: TaskData) -> str:
    (spec,) = expand_grid(task, [method], [task.train_sizes[0]], [0], get_profile("quick"), data)
    return spec.run_id


def _edit(task: TaskSpec, **update: object) -> TaskSpec:
    """A re-validated copy (``model_copy`` alone would skip the spec's validators)."""
    return TaskSpec.model_validate({**task.model_dump(), **update})


def test_prose_edits_keep_the_run_id(catalog: Catalog, data: TaskData) -> None:
    task, unet = catalog.task("synthetic"), catalog.method("unet")
    before = _run_id(task, unet, data)
    ref = Reference(method="unet", test_set=task.test_sets[0].name, train_size=16, value=0.5, figure="Fig. 0")
    prose = _edit(
        task,
        description="Reworded.",
        figure="Fig. 99",
        family="renamed-family",
        organ="another organ",
        references=[ref.model_dump()],
        datasets=[{**d.model_dump(), "citation": "Someone et al."} for d in task.datasets],
        train_sizes=[*task.train_sizes, 8],
        default_methods=["unet"],
        test_sets=[{**t.model_dump(), "domain": "out"} for t in task.test_sets],
    )
    assert _run_id(prose, unet, data) == before
    described = unet.model_copy(update={"description": "Reworded.", "figure": "Fig. 99"})
    assert _run_id(task, described, data) == before


@pytest.mark.parametrize(
    "update",
    [
        {"image_size": 32},
        {"metric": "jaccard"},
        {"test_fraction": 0.3},
        {"validation": {"fraction": 0.3}},
        {"split_seed": 1},
        {"channels": 1},
        {"version": 2},
    ],
    ids=lambda u: next(iter(u)),
)
def test_result_changing_task_edits_change_the_run_id(
    catalog: Catalog, data: TaskData, update: dict[str, object]
) -> None:
    task, unet = catalog.task("synthetic"), catalog.method("unet")
    assert _run_id(_edit(task, **update), unet, data) != _run_id(task, unet, data)


def test_a_method_config_default_is_in_the_run_id(
    catalog: Catalog, data: TaskData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """genseg-unet and unet-rotate do not write arch_warmup / rotate_degrees: only the defaults set them."""
    task, genseg, rotate = (
        catalog.task("synthetic"),
        catalog.method("genseg-unet"),
        catalog.method("unet-rotate"),
    )
    assert "arch_warmup" not in genseg.config and "rotate_degrees" not in rotate.config
    before = {m.name: _run_id(task, m, data) for m in (genseg, rotate)}

    class LaterGenSeg(GenSegConfig):
        arch_warmup: int = 10

    class LaterSupervised(method_config.SupervisedConfig):
        rotate_degrees: float = 15.0

    monkeypatch.setitem(method_config.BUILTIN_CONFIGS, "genseg", LaterGenSeg)
    assert _run_id(task, genseg, data) != before["genseg-unet"]
    assert _run_id(task, rotate, data) == before["unet-rotate"]
    monkeypatch.setitem(method_config.BUILTIN_CONFIGS, "supervised", LaterSupervised)
    assert _run_id(task, rotate, data) != before["unet-rotate"]


def test_a_default_written_out_is_the_same_method(catalog: Catalog) -> None:
    """Writing a default explicitly does not change the identity: the resolved configs are equal."""
    genseg = catalog.method("genseg-unet")
    explicit = genseg.model_copy(update={"config": {**genseg.config, "arch_warmup": 20, "dropout": 0.5}})
    assert explicit.fingerprint() == genseg.fingerprint()
    changed = genseg.model_copy(update={"config": {**genseg.config, "dropout": 0.4}})
    assert changed.fingerprint() != genseg.fingerprint()


def test_every_task_field_is_classified() -> None:
    """A new TaskSpec field must be put on one side: in the identity, or descriptive."""
    identity = {
        "id",
        "version",
        "dims",
        "train_source",
        "test_fraction",
        "validation",
        "test_sets",
        "metric",
        "image_size",
        "channels",
        "split_seed",
        "split_group",
        "unlabelled",
    }
    assert identity | TaskSpec.DESCRIPTIVE == set(TaskSpec.model_fields)
    assert not identity & TaskSpec.DESCRIPTIVE
    task = TaskSpec.model_validate(
        {
            "id": "t",
            "family": "f",
            "description": "d",
            "organ": "o",
            "modality": "m",
            "train_source": "synthetic-a",
            "test_sets": [{"name": "a", "source": "synthetic-a", "split": "test"}],
            "metric": "dice",
            "train_sizes": [4],
            "default_methods": ["unet"],
            "datasets": [{"source": "synthetic-a", "citation": "c", "licence": "l"}],
        }
    )
    # a task without an unlabelled pool hashes as before the field existed; one with a pool hashes it
    assert set(task.identity()) == identity - {"unlabelled"}
    assert set(task.identity()["test_sets"][0]) == {"name", "source", "split"}
    pooled = task.model_copy(update={"unlabelled": UnlabelledPool(source="synthetic-a", size=8)})
    assert set(pooled.identity()) == identity and stable_hash(pooled) != stable_hash(task)


def test_published_results_still_load_and_report_as_the_current_version(catalog: Catalog) -> None:
    """The schema-2 reproduction results predate task identities: their whole-spec hash bridges to v1."""
    task = catalog.task("kvasir-to-cvc")
    results = list(iter_results(PUBLISHED, task.id))
    legacy = [r for r in results if r.spec.task_hash == legacy_task_hash(task)]
    assert len(legacy) >= 3 and legacy_task_hash(task) != stable_hash(task)
    assert {rep.run_context(task, r).task for r in results} == {"v1"}
    rows = rep.aggregate(task, results)
    seeds = {
        m: len({r.spec.seed for r in results if r.spec.method == m}) for m in {r.spec.method for r in results}
    }
    assert {(r.method, r.test_set) for r in rows} == {(m, ts.name) for m in seeds for ts in task.test_sets}
    # rows may be split by profile settings (runs before and after the plateau rules), never by task version
    assert all("task version" not in r.split for r in rows)
    for m in seeds:
        for ts in task.test_sets:
            shown = [set(r.seeds) for r in rows if r.method == m and r.test_set == ts.name]
            assert set().union(*shown) == {r.spec.seed for r in results if r.spec.method == m}
    # the old recipe's runs at 128 px and the calibrated recipe's at 64 px (its rows: their own settings)
    assert all(
        r.profile == "cpu" and r.budget in {"800 it × 8 at 128 px", "800 it × 8 at 64 px"} for r in rows
    )
    assert any(r.budget.endswith("128 px") for r in rows) and any(r.budget.endswith("64 px") for r in rows)


def test_runs_of_an_edited_task_are_set_apart(catalog: Catalog) -> None:
    """A result whose task hash is neither the current identity nor its legacy hash is another experiment."""
    task = catalog.task("kvasir-to-cvc")
    results = [r for r in iter_results(PUBLISHED, task.id) if r.spec.method == "unet"]
    assert len(results) >= 3
    # three seeds of one profile setting, so only the task hash can split them
    today = get_profile("cpu").model_dump()
    results = [r.model_copy(update={"profile": today}) for r in results[:3]]
    results = [
        r.model_copy(update={"spec": r.spec.model_copy(update={"seed": i})}) for i, r in enumerate(results)
    ]
    results = [r.model_copy(update={"run_id": r.spec.run_id}) for r in results]
    moved = results[0].spec.model_copy(update={"task_hash": stable_hash(_edit(task, image_size=64))})
    other = results[0].model_copy(update={"spec": moved, "run_id": moved.run_id})
    rows = [r for r in rep.aggregate(task, [*results[1:], other]) if r.test_set == "kvasir"]
    assert sorted(r.n_seeds for r in rows) == [1, 2]
    assert all(r.split == ("task version",) for r in rows)


def test_ranges_have_one_source() -> None:
    """The config models' range defaults are the augmentation code's, so the two cannot drift apart."""
    from genseg_bench.augment import AugmentConfig

    ranges = AugmentRanges()
    assert ranges.augmentation([]) == AugmentConfig()


def test_every_base_task_writes_its_version() -> None:
    """The version is explicit where a task starts (tasks that extend another inherit it)."""
    import tomllib

    missing = []
    for path in sorted((REPO / "tasks").glob("*.toml")):
        for table in tomllib.loads(path.read_text()).get("task", []):
            if "extends" not in table and "version" not in table:
                missing.append(f"{path.name}: {table['id']}")
    assert not missing, f"add `version = 1` to {missing}"
