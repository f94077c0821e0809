"""The Space folder builds from its own requirements and starts from a local export, without torch.

Cheap checks run always: the card, the copy of genseg_bench is current, every
import of every Space file is the standard library, the folder itself or a
requirement, and the app starts from a copy of the folder in a fresh process
where torch, datasets and the installed genseg-bench's catalog cannot be
imported. The real thing, a fresh virtual environment built with
``pip install -r leaderboard/requirements.txt`` alone, downloads packages and
takes minutes: it runs only with ``GENSEG_SPACE_VENV=1``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from genseg_bench.specs import RunResult

REPO = Path(__file__).resolve().parents[2]
SPACE = REPO / "leaderboard"
sys.path.insert(0, str(SPACE))
import vendor  # noqa: E402  (leaderboard/vendor.py: a script, not part of a package)

sys.path.remove(str(SPACE))

# imports inside functions of the copied modules that the Space never calls, and why
NOT_TAKEN = {
    ("genseg_bench/export.py", "datasets"): "the writers (results_table, to_parquet): the Space only reads",
    (
        "genseg_bench/specs.py",
        "genseg_bench.methods.registry",
    ): "MethodSpec.identity: the catalog hashes specs",
}
# distribution name (as in requirements.txt) of each import name the Space uses
IMPORT_TO_DIST = {"huggingface_hub": "huggingface-hub"}
# what must not be importable where the Space runs (the installed genseg-bench included)
BLOCKED = ("torch", "torchvision", "segmentation_models_pytorch", "datasets", "genseg_bench.catalog")


def card_metadata() -> dict[str, str]:
    text = (SPACE / "README.md").read_text()
    assert text.startswith("---\n")
    head = text.split("---\n")[1]
    return {
        k.strip(): v.strip().strip('"')
        for k, _, v in (line.partition(":") for line in head.splitlines())
        if v.strip()
    }


def requirements() -> dict[str, str]:
    """Requirement name (normalised) -> its line, from the Space's requirements.txt."""
    out = {}
    for line in (SPACE / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name = re.split(r"[<>=!~\[; @]", line, maxsplit=1)[0]
            out[re.sub(r"[-_.]+", "-", name).lower()] = line
    return out


def test_card_declares_a_gradio_space_and_its_requirements_are_on_pypi() -> None:
    meta = card_metadata()
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py" and meta["title"]
    assert (SPACE / meta["app_file"]).is_file()
    major = meta["sdk_version"].split(".")[0]
    reqs = requirements()
    assert reqs["gradio"] == f"gradio>={major},<{int(major) + 1}"  # the card's gradio satisfies the file
    assert not {"genseg-bench", "torch", "torchvision", "datasets"} & set(reqs)
    assert not any(line.startswith(("-", "git+", ".")) or "@" in line for line in reqs.values())
    card = (SPACE / "README.md").read_text()
    for words in ("Holm", "paired t-test", "RESULTS_REPO", "vendor.py", "images seen", "genseg-bench submit"):
        assert words in card


def test_the_copy_of_genseg_bench_is_current() -> None:
    found = vendor.problems()
    assert not found, (
        "stale copy in leaderboard/genseg_bench: run `python leaderboard/vendor.py`\n" + "\n".join(found)
    )
    copied = {p.relative_to(SPACE).as_posix() for p in (SPACE / "genseg_bench").rglob("*.py")}
    assert {"genseg_bench/report.py", "genseg_bench/curves.py", "genseg_bench/export.py"} <= copied
    assert "genseg_bench/metrics.py" not in copied and "genseg_bench/runner.py" not in copied


def test_vendor_check_reports_a_stale_copy(tmp_path: Path) -> None:
    space = tmp_path / "space"
    shutil.copytree(SPACE, space, ignore=shutil.ignore_patterns("__pycache__"))
    assert vendor.problems(REPO, space) == []
    (space / "genseg_bench" / "report.py").write_text("# edited by hand\n")
    (space / "genseg_bench" / "old.py").write_text("")
    found = vendor.problems(REPO, space)
    assert any("report.py differs" in p for p in found) and any(
        "old.py is no longer needed" in p for p in found
    )
    vendor.sync(REPO, space)
    assert vendor.problems(REPO, space) == []


def in_space(module: str) -> bool:
    """A genseg_bench module (or a name in one) that the Space folder holds: its own files or the copy."""
    prefix = "genseg_bench.leaderboard_app"
    if module == prefix or module.startswith(prefix + "."):
        rest = module.removeprefix(prefix).lstrip(".")
        return not rest or (SPACE / f"{rest.split('.')[0]}.py").is_file()
    parent = module.rpartition(".")[0]
    return vendor._source(module, SPACE) is not None or bool(parent and vendor._source(parent, SPACE))


def test_space_files_import_only_the_stdlib_the_folder_and_the_requirements() -> None:
    reqs = set(requirements())
    bad = []
    for f in [*vendor.space_files(), *sorted((SPACE / "genseg_bench").rglob("*.py"))]:
        rel = f.relative_to(SPACE).as_posix()
        pkg = "genseg_bench" if rel.startswith("genseg_bench/") else "genseg_bench.leaderboard_app"
        for mod in vendor.imports(f, pkg):
            top = mod.split(".")[0]
            if top in sys.stdlib_module_names or any(
                rel == f and (mod == m or mod.startswith(m + ".")) for f, m in NOT_TAKEN
            ):
                continue
            if top == "genseg_bench":
                if not in_space(mod):
                    bad.append(
                        f"{rel}: {mod} is not in the Space folder (run `python leaderboard/vendor.py`?)"
                    )
            elif IMPORT_TO_DIST.get(top, top).lower() not in reqs:
                bad.append(f"{rel}: imports {top}, which leaderboard/requirements.txt does not install")
    assert not bad, "\n".join(bad)


def test_the_import_check_catches_a_heavy_import(tmp_path: Path) -> None:
    f = tmp_path / "x.py"
    f.write_text(
        "import json\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import numpy\n"
        "try:\n    import catalog_opt\nexcept ImportError:\n    pass\n"
        "def g():\n    import torch\n    from .board import x\n"
    )
    assert vendor.imports(f, "genseg_bench.leaderboard_app") == {
        "json", "typing", "typing.TYPE_CHECKING", "torch", "genseg_bench.leaderboard_app.board",
        "genseg_bench.leaderboard_app.board.x",
    }  # fmt: skip
    assert "torch" not in vendor.imports(f, "p", module_level_only=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def small_export(make_result: Callable[..., RunResult], tmp_path: Path) -> Path:
    from genseg_bench.catalog import Catalog
    from genseg_bench.export import write_export

    res = [make_result("synthetic", "unet", n, s, {"synthetic-a": [0.5 + s / 10 + n / 100]}) for n in (8, 16) for s in range(2)]  # fmt: skip
    write_export(res, Catalog.load().tasks, tmp_path / "export")
    return tmp_path / "export"


STARTER = """
import sys, runpy


class Blocked:
    # an import of a blocked module (or a submodule of one) fails, as where it is not installed
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in {blocked!r}):
            raise ImportError(f"{{name}} is not installed in the Space")
        return None


sys.meta_path.insert(0, Blocked())
ns = runpy.run_path({app!r}, run_name="space_app")
ns["_as_package"]()
import genseg_bench
assert genseg_bench.__file__.startswith({space!r}), genseg_bench.__file__
ns["main"](sys.argv[1:])
"""


def start_space(python: str, space: Path, export: Path, tmp_path: Path) -> tuple[subprocess.Popen[str], str]:
    """``app.py`` of a copy of the Space folder, serving ``export`` on a free port, in a fresh process."""
    port = free_port()
    script = tmp_path / "start_space.py"
    script.write_text(STARTER.format(blocked=BLOCKED, app=str(space / "app.py"), space=str(space)))
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONNOUSERSITE": "1"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.Popen(
        [python, "-I", str(script), "--parquet", str(export), "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, f"http://127.0.0.1:{port}/"


def wait_for_config(proc: subprocess.Popen[str], url: str, timeout: float = 240) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"the Space exited with {proc.returncode}:\n{proc.stdout.read() if proc.stdout else ''}"
            )
        try:
            return json.loads(urllib.request.urlopen(url + "config", timeout=10).read())
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise AssertionError(f"the Space did not answer within {timeout:.0f} s")


def check_served(config: dict) -> None:  # type: ignore[type-arg]
    """The served app's first table holds the export's numbers (0.5/0.6 + n/100 over two seeds)."""
    board = next(c for c in config["components"] if c.get("props", {}).get("elem_id") == "board")
    value = board["props"]["value"]
    rows = [dict(zip(value["headers"], r, strict=True)) for r in value["data"]]
    assert [(r["n"], r["method"], r["score"]) for r in rows] == [
        (8, "unet", "0.630 ± 0.071"),
        (16, "unet", "0.710 ± 0.071"),
    ]


def copy_space(tmp_path: Path) -> Path:
    space = tmp_path / "space"
    shutil.copytree(SPACE, space, ignore=shutil.ignore_patterns("__pycache__"))
    return space


def test_space_starts_from_a_copy_of_its_folder_without_torch(small_export: Path, tmp_path: Path) -> None:
    pytest.importorskip("gradio")
    proc, url = start_space(sys.executable, copy_space(tmp_path), small_export, tmp_path)
    try:
        check_served(wait_for_config(proc, url))
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.skipif(
    os.environ.get("GENSEG_SPACE_VENV") != "1",
    reason="builds a fresh venv from leaderboard/requirements.txt (downloads ~300 MB): set GENSEG_SPACE_VENV=1",
)
def test_space_builds_in_a_fresh_venv_from_its_requirements_alone(small_export: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "-r", str(SPACE / "requirements.txt")],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    proc, url = start_space(str(venv / "bin" / "python"), copy_space(tmp_path), small_export, tmp_path)
    try:
        check_served(wait_for_config(proc, url))
    finally:
        proc.terminate()
        proc.wait(30)


def test_serve_command_rejects_a_missing_folder(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from genseg_bench.cli import app

    res = CliRunner().invoke(app, ["leaderboard", "serve", "--results-dir", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "no such results folder" in " ".join(res.output.split())


def test_serve_command_without_gradio_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from typer.testing import CliRunner

    from genseg_bench.cli import app

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a)
    )
    res = CliRunner().invoke(app, ["leaderboard", "serve", "--results-dir", str(tmp_path)])
    assert res.exit_code == 2 and "genseg-bench[leaderboard]" in " ".join(res.output.split())


def test_hub_source_reads_a_snapshot_and_fails_clearly(
    make_result: Callable[..., RunResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Space's source: the dataset repo's files, fetched with snapshot_download (faked here)."""
    import huggingface_hub

    from genseg_bench.catalog import Catalog
    from genseg_bench.errors import HubError
    from genseg_bench.export import write_export
    from genseg_bench.leaderboard_app.data import DataSource

    res = [make_result("synthetic", "unet", 16, s, {"synthetic-a": [0.5]}) for s in range(2)]
    write_export(res, Catalog.load().tasks, tmp_path / "repo")
    asked: dict[str, object] = {}

    def fake_snapshot_download(repo_id: str, local_dir: str, **kw: object) -> str:
        asked.update(repo_id=repo_id, **kw)
        shutil.copytree(tmp_path / "repo", local_dir, dirs_exist_ok=True)
        return local_dir

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    snap = DataSource(repo="org/results").get()
    assert asked["repo_id"] == "org/results" and asked["repo_type"] == "dataset"
    assert sorted(r.run_id for r in snap.results) == sorted(r.run_id for r in res)
    assert "org/results" in snap.description

    def offline(**kw: object) -> str:
        raise OSError("offline mode is enabled")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **kw: offline())
    with pytest.raises(HubError, match="org/results"):
        DataSource(repo="org/results")


def test_a_failed_refresh_keeps_the_old_snapshot_and_logs_why(
    small_export: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from genseg_bench.leaderboard_app.data import DataSource

    source = DataSource(parquet=small_export, refresh_s=0.0)
    before = source.get()
    shutil.rmtree(small_export)
    with caplog.at_level("WARNING"):
        assert source.get() is before
    (record,) = [r for r in caplog.records if "reloading the results failed" in r.getMessage()]
    assert record.exc_info is not None and "no such parquet file" in str(record.exc_info[1])
