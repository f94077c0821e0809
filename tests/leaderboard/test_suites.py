"""Suites: named task sets in tasks/suites.toml, `genseg-bench suites`, `genseg-bench run --suite`."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from genseg_bench.catalog import Catalog, _resource_dir
from genseg_bench.cli import app
from genseg_bench.data.store import Store
from genseg_bench.errors import SpecError
from genseg_bench.results import iter_results

runner = CliRunner()


def test_paper_core_is_the_six_in_domain_and_two_out_of_domain_tasks_of_fig_2(catalog: Catalog) -> None:
    tasks = catalog.suite_tasks("paper-core")
    assert [t.id for t in tasks] == [
        "fetreg", "isic", "cvc-clinicdb", "icfluid", "fuseg", "buid", "isic-ood", "jsrt-ood",
    ]  # fmt: skip
    assert [t.family for t in tasks].count("in-domain") == 6
    assert [t.family for t in tasks].count("out-of-domain") == 2
    assert all("Fig. 2" in t.figure for t in tasks)


def test_selected_suites_follow_the_task_metadata(catalog: Catalog) -> None:
    full = {t.id for t in catalog.suite_tasks("paper-full")}
    assert full == {t.id for t in catalog.tasks.values() if t.figure}
    assert set(t.id for t in catalog.suite_tasks("paper-core")) <= full
    assert not any(catalog.tasks[t].synthetic or catalog.tasks[t].family == "extension" for t in full)
    open_ = catalog.suite_tasks("open")
    assert open_ and all(t.open_data and not t.synthetic for t in open_)
    assert {"kvasir-to-cvc", "cvc-to-kvasir", "hippocampus-3d", "cvc-clinicdb"} <= {t.id for t in open_}
    synthetic = {t.id for t in catalog.suite_tasks("synthetic")}
    assert (
        synthetic == {t.id for t in catalog.tasks.values() if t.synthetic} >= {"synthetic", "synthetic-ood"}
    )
    assert catalog.suite("synthetic").task_sizes(catalog.task("synthetic")) == [8, 16, 32, 64]
    assert catalog.suite("paper-core").task_sizes(catalog.task("fetreg")) == [50]


def test_pinned_synthetic_fingerprints_are_those_the_generator_makes(catalog: Catalog, store: Store) -> None:
    pinned = catalog.suite("synthetic").fingerprints
    for source, fp in pinned.items():
        assert store.ensure(source, 64).fingerprint == fp, (
            f"the synthetic generator changed {source}: update its fingerprint in tasks/suites.toml"
        )


def _tasks_dir(tmp_path: Path, suites: str) -> Path:
    d = tmp_path / "tasks"
    d.mkdir()
    shutil.copy(_resource_dir("genseg_bench.tasks_data") / "synthetic.toml", d)
    (d / "suites.toml").write_text(suites)
    return d


@pytest.mark.parametrize(
    ("suites", "message"),
    [
        ('[[suite]]\nid = "s"\ndescription = "d"\ntasks = ["synthetic", "nope"]\n', "unknown tasks ['nope']"),
        (
            '[[suite]]\nid = "s"\ndescription = "d"\ntasks = ["synthetic"]\nwhere = { synthetic = true }\n',
            "exactly one",
        ),
        ('[[suite]]\nid = "s"\ndescription = "d"\nwhere = { synthetik = true }\n', "synthetik"),
        ('[[suite]]\nid = "s"\ndescription = "d"\n[[sweet]]\nid = "x"\n', "unknown top-level keys"),
    ],
)
def test_bad_suite_files_are_errors_naming_the_file(tmp_path: Path, suites: str, message: str) -> None:
    with pytest.raises(SpecError, match="suites.toml") as err:
        Catalog.load(tasks_dir=_tasks_dir(tmp_path, suites))
    assert message in str(err.value)


def test_suites_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from genseg_bench import cli

    monkeypatch.setattr(cli.console, "width", 300)
    res = runner.invoke(app, ["suites"])
    assert res.exit_code == 0
    for sid in ("paper-core", "paper-full", "open", "synthetic"):
        assert sid in res.output
    res = runner.invoke(app, ["suites", "synthetic"])
    assert res.exit_code == 0 and "synthetic-ood" in res.output and "8,16,32,64" in res.output
    res = runner.invoke(app, ["suites", "paper-cor"])
    assert res.exit_code == 2 and "paper-core" in res.output


def test_run_suite_ran_every_task_size_and_seed(lb_results: Path, catalog: Catalog) -> None:
    suite = catalog.suite("synthetic")
    for task in catalog.suite_tasks("synthetic"):
        cells = {(r.spec.train_size, r.spec.seed) for r in iter_results(lb_results, task.id)
                 if r.spec.method == "toy-threshold" and r.status == "ok"}  # fmt: skip
        assert cells == {(n, s) for n in suite.task_sizes(task) for s in suite.seeds}


def test_run_suite_uses_the_suite_profile_unless_one_is_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import genseg_bench.runner as runner_mod

    calls: list[dict[str, Any]] = []

    def fake_run_grid(catalog, task_id, methods, sizes, seeds, profile, *rest, **options):  # type: ignore[no-untyped-def]
        calls.append({"task": task_id, "sizes": list(sizes), "seeds": list(seeds), "profile": profile.name})
        return runner_mod.GridSummary(specs=[])

    monkeypatch.setattr(runner_mod, "run_grid", fake_run_grid)
    base = ["run", "--suite", "synthetic", "--methods", "unet", "--results", str(tmp_path), "--device", "cpu"]
    res = runner.invoke(app, base)
    assert res.exit_code == 0, res.output
    assert [c["task"] for c in calls] == ["synthetic", "synthetic-genseg", "synthetic-ood", "synthetic-semi"]
    assert {c["profile"] for c in calls} == {"quick"} and calls[0]["sizes"] == [8, 16, 32, 64]
    calls.clear()
    res = runner.invoke(app, [*base, "--profile", "smoke", "--sizes", "8", "--seeds", "0"])
    assert res.exit_code == 0 and {(c["profile"], tuple(c["sizes"]), tuple(c["seeds"])) for c in calls} == {
        ("smoke", (8,), (0,))
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "--task or --suite"),
        (["--task", "synthetic", "--suite", "synthetic"], "--task or --suite"),
        (["--suite", "synthetik"], "synthetic"),
        (["--suite", "synthetic", "--methods", "unett"], "unet"),
    ],
)
def test_run_suite_errors_before_training(tmp_path: Path, args: list[str], message: str) -> None:
    res = runner.invoke(app, ["run", *args, "--results", str(tmp_path)])
    assert res.exit_code == 2 and message in res.output
    assert not list(tmp_path.rglob("*.json"))
