"""The Space folder is complete and ships in the wheel: card metadata, requirements, Dockerfile, entry point."""

from __future__ import annotations

import threading
import urllib.request
from importlib import resources
from pathlib import Path

import pytest

SPACE = Path(str(resources.files("genseg_bench.leaderboard_app")))


def card_metadata() -> dict[str, str]:
    text = (SPACE / "README.md").read_text()
    assert text.startswith("---\n")
    head = text.split("---\n")[1]
    return {
        k.strip(): v.strip() for k, _, v in (line.partition(":") for line in head.splitlines()) if v.strip()
    }


def test_space_card_declares_a_docker_space_on_the_app_port() -> None:
    meta = card_metadata()
    assert meta["sdk"] == "docker" and meta["app_port"] == "7860" and meta["title"]
    assert "EXPOSE 7860" in (SPACE / "Dockerfile").read_text()
    assert "app.py" in (SPACE / "Dockerfile").read_text()
    reqs = [r for r in (SPACE / "requirements.txt").read_text().splitlines() if r and not r.startswith("#")]
    assert any(r.startswith("genseg-bench") for r in reqs)
    card = (SPACE / "README.md").read_text()
    assert "Holm" in card and "paired t-test" in card and "RESULTS_REPO" in card


def test_package_data_lists_every_space_file() -> None:
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["genseg_bench.leaderboard_app"]
    for f in ("README.md", "requirements.txt", "Dockerfile", "app.py", "server.py"):
        assert (SPACE / f).is_file()
        assert any(Path(f).match(p) for p in patterns), f"{f} would not ship in the wheel"


def test_space_entry_point_serves_a_local_export(
    make_result, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from genseg_bench.catalog import Catalog
    from genseg_bench.export import write_export
    from genseg_bench.leaderboard_app import app as space_app

    res = [make_result("synthetic", "unet", 16, s, {"synthetic-a": [0.5 + s / 10]}) for s in range(2)]
    write_export(res, Catalog.load().tasks, tmp_path / "exp")
    started: dict[str, object] = {}

    import genseg_bench.leaderboard_app.server as server_mod

    real = server_mod.make_server

    def capture(*a, **kw):  # type: ignore[no-untyped-def]
        srv = real(*a, **kw)
        started["server"] = srv
        return srv

    monkeypatch.setattr(server_mod, "make_server", capture)
    thread = threading.Thread(
        target=space_app.main,
        args=(["--parquet", str(tmp_path / "exp"), "--host", "127.0.0.1", "--port", "0"],),
    )
    thread.start()
    for _ in range(200):
        if "server" in started:
            break
        thread.join(0.05)
    srv = started["server"]
    port = srv.server_address[1]  # type: ignore[attr-defined]
    page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30).read().decode()
    data = urllib.request.urlopen(f"http://127.0.0.1:{port}/data.json", timeout=30).read().decode()
    srv.shutdown()  # type: ignore[attr-defined]
    thread.join(10)
    assert 'data-method="unet"' in page and "0.550 ± 0.071" in page
    assert '"mean": 0.55' in data


def test_serve_command_rejects_a_missing_folder(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from genseg_bench.cli import app

    res = CliRunner().invoke(
        app, ["leaderboard", "serve", "--results-dir", str(tmp_path / "nope"), "--port", "0"]
    )
    assert res.exit_code == 2 and "no such results folder" in " ".join(res.output.split())


def test_hub_source_reads_a_snapshot_and_fails_clearly(
    make_result, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """The Space's source: the dataset repo's files, fetched with snapshot_download (faked here)."""
    import shutil

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
