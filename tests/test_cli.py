"""The command line: a thin layer whose errors are one clear message and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genseg_bench.cli import app
from genseg_bench.data.store import Store
from genseg_bench.errors import HubError

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.output


def test_tasks_lists_paper_open_and_synthetic_tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from genseg_bench import cli

    monkeypatch.setattr(cli.console, "width", 300)  # the test terminal is narrow; ids must not wrap
    code, out = invoke("tasks", "--store", str(tmp_path))
    assert code == 0
    for tid in ("isic-ood", "hippocampus-3d", "kvasir-to-cvc", "synthetic-ood"):
        assert tid in out


def test_unknown_task_suggests_the_closest_id(tmp_path: Path) -> None:
    code, out = invoke("run", "--task", "isic-od", "--results", str(tmp_path))
    assert code == 2 and "isic-ood" in out and "Traceback" not in out


def test_unknown_method_is_an_error_before_training(tmp_path: Path) -> None:
    code, out = invoke("run", "--task", "synthetic", "--methods", "unett", "--results", str(tmp_path))
    assert code == 2 and "unet" in out
    assert not list(tmp_path.rglob("*.json"))


@pytest.mark.parametrize("seeds", ["a,b", "0;1"])
def test_bad_seeds_are_rejected(tmp_path: Path, seeds: str) -> None:
    code, out = invoke("run", "--task", "synthetic", "--seeds", seeds, "--results", str(tmp_path))
    assert code == 2 and "--seeds" in out


def test_report_without_results_says_how_to_get_them(tmp_path: Path) -> None:
    code, out = invoke("report", "--task", "synthetic", "--results", str(tmp_path))
    assert code == 2 and "genseg-bench run --task synthetic" in " ".join(out.split())


def test_run_then_report_json(tmp_path: Path) -> None:
    store, results = str(tmp_path / "store"), str(tmp_path / "results")
    grid = [
        "--task",
        "synthetic",
        "--methods",
        "unet",
        "--sizes",
        "8",
        "--seeds",
        "0,1",
        "--profile",
        "smoke",
    ]
    code, out = invoke("run", *grid, "--store", store, "--results", results)
    assert code == 0, out
    assert "2 run(s) done" in out and "unet" in out
    # off a terminal: one plain line per validation (iteration, losses, val score, lr, elapsed) and per run
    val_lines = [line for line in out.splitlines() if "unet n=8 seed=0 it " in line]
    assert len(val_lines) == 2 and all("val=" in x and "lr=" in x and "elapsed=" in x for x in val_lines)
    assert sum(line.split("] ", 1)[-1].startswith("ok unet n=8") for line in out.splitlines()) == 2
    code, out = invoke("run", *grid, "--store", store, "--results", results, "--no-report")
    assert code == 0 and "0 run(s) done, 2 skipped" in out
    code, out = invoke("report", "--task", "synthetic", "--results", results, "--format", "json")
    assert code == 0
    rows = json.loads(out)["rows"]
    assert rows[0]["method"] == "unet" and rows[0]["n_seeds"] == 2
    assert (rows[0]["n_train"], rows[0]["n_val"]) == (6, 2)  # n = 8 labelled: validation inside n
    # --resample: each seed draws its own labelled subset, recorded in the run id, reported apart
    code, out = invoke("run", *grid, "--store", store, "--results", results, "--resample", "--no-report")
    assert code == 0 and "2 run(s) done" in out, out
    ids = sorted(p.stem for p in (Path(results) / "synthetic").glob("*__s*r__*.json"))
    assert len(ids) == 2
    code, out = invoke("report", "--task", "synthetic", "--results", results, "--format", "json")
    methods = {r["method"] for r in json.loads(out)["rows"]}
    assert methods == {"unet", "unet [resampled]"}


def test_report_rejects_unknown_format(tmp_path: Path) -> None:
    code, out = invoke("report", "--task", "synthetic", "--results", str(tmp_path), "--format", "xml")
    assert code == 2 and "table, json or markdown" in out


def test_prepare_real_data_without_source_folder(tmp_path: Path) -> None:
    code, out = invoke("data", "prepare", "kvasir", "--store", str(tmp_path))
    assert code == 2 and "--from" in out


def test_prepare_from_missing_folder_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    code, out = invoke("data", "prepare", "kvasir", "--from", str(missing), "--store", str(tmp_path / "s"))
    assert code == 2 and "nowhere" in out.replace("\n", "")
    assert not (tmp_path / "s" / "kvasir").exists() or not any((tmp_path / "s" / "kvasir").iterdir())


def test_hub_push_offline_is_a_clear_error_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from genseg_bench.hub import pull_prepared, push_prepared

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_TOKEN", "hf_dummy_token_for_the_test")
    store = Store(tmp_path / "store")
    store.ensure("synthetic-a", 16)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(HubError, match="someone/genseg-data"):
        push_prepared(store, "synthetic-a", 16, "someone/genseg-data")
    with pytest.raises(HubError, match="someone/genseg-data"):
        pull_prepared(store, "synthetic-b", 16, "someone/genseg-data")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert not store.is_prepared("synthetic-b", 16)


def test_hub_push_without_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no stored login either
    code, out = invoke(
        "data", "push", "synthetic-a", "--repo", "someone/x", "--size", "16", "--store", str(tmp_path / "s")
    )
    assert code == 2 and "token" in out


COMMANDS = {
    "tasks": "--family --store",
    "methods": "",
    "run": "--device --image-size --iterations --methods --no-report --no-resample --no-retry-failed --profile "
    "--report --resample --results --retry-failed --seeds --sizes --store --suite --task -t",
    "report": "--compare --format --results --task -t",
    "reproduction": "--anchor --independent --methods --out --preamble --results --tasks",
    "data prepare": "--from --no-overwrite --overwrite --size --store",
    "data list": "--store",
    "data push": "--no-private --private --repo --size --store --token",
    "data pull": "--repo --revision --size --store --token",
    "suites": "",
    "curves": "--methods --out --results --task --test-set -t",
    "submit": "--allow-dirty --method --no-allow-dirty --no-push --out --profile --push --repo --results "
    "--suite --token",
    "results export": "--out --results --tasks",
    "leaderboard publish": "--create-pr --dry-run --no-private --private --repo --results --token",
    "leaderboard serve": "--host --parquet --port --refresh --repo --results-dir",
}
"""The commands and options the README and docs/ show, as users type them since before the CLI was split."""


def test_commands_users_type_keep_their_names_and_options() -> None:
    import typer

    def walk(cmd: object, path: tuple[str, ...]) -> dict[str, set[str]]:
        subs = getattr(cmd, "commands", None)
        if subs is not None:
            return {k: v for name, sub in subs.items() for k, v in walk(sub, (*path, name)).items()}
        params = getattr(cmd, "params", [])
        opts = {o for p in params if p.param_type_name == "option" for o in (*p.opts, *p.secondary_opts)}
        return {" ".join(path): opts}

    tree = walk(typer.main.get_command(app), ())
    for command, options in COMMANDS.items():
        assert command in tree, f"`genseg-bench {command}` is gone"
        missing = set(options.split()) - tree[command]
        assert not missing, f"`genseg-bench {command}` lost {sorted(missing)}"


def test_run_suite_takes_the_suites_profile_unless_one_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    from genseg_bench import cli_run

    seen: list[tuple[str, str]] = []
    monkeypatch.setattr(cli_run, "run_suite", lambda catalog, suite, *a: seen.append((suite, a[3].name)))
    for args in (
        ["--suite", "paper-core"],
        ["--suite", "synthetic"],
        ["--suite", "paper-core", "--profile", "smoke"],
    ):
        code, out = invoke("run", *args, "--device", "cpu")
        assert code == 0, out
    assert seen == [("paper-core", "paper"), ("synthetic", "quick"), ("paper-core", "smoke")]


def test_run_suite_with_unprepared_data_fails_before_any_task_trains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every missing set is named with its `data prepare` command, and no grid starts."""
    from genseg_bench import cli_run

    started: list[str] = []
    monkeypatch.setattr(
        cli_run, "run_grid_with_progress", lambda catalog, task, *a, **k: started.append(task)
    )
    code, out = invoke(
        "run", "--suite", "open", "--profile", "smoke", "--device", "cpu",
        "--store", str(tmp_path / "store"), "--results", str(tmp_path / "results"),
    )  # fmt: skip
    assert code != 0
    assert started == []
    text = " ".join(out.split())
    assert "nothing was run" in text
    for source in ("kvasir", "cvc-clinicdb", "msd-hippocampus"):
        assert f"genseg-bench data prepare {source} --from PATH" in text
    assert not (tmp_path / "results").exists()
