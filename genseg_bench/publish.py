"""Publishing results and submissions to a Hugging Face dataset repo, in one commit each.

``publish`` writes the export folder (:mod:`genseg_bench.export`) and sends all of
its files in a single ``HfApi.create_commit``: the repo never holds a half-updated
table (a commit is atomic on the Hub). ``--create-pr`` opens a pull request
instead, for a repo you do not own; submissions always go as a pull request.
``--dry-run DIR`` writes exactly the files that would be pushed, and nothing
else, into ``DIR``.

Before any file is built the command checks that it can reach the Hub: offline
mode (``HF_HUB_OFFLINE``) and a missing token are reported as one message, and
nothing is written anywhere.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

from genseg_bench.errors import HubError
from genseg_bench.export import write_export
from genseg_bench.hub import _hub_error, _token
from genseg_bench.specs import RunResult, TaskSpec

_TRUE = {"1", "ON", "YES", "TRUE"}


def hub_offline() -> bool:
    """True when huggingface_hub is in offline mode (checked now, not at import time)."""
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE or bool(constants.HF_HUB_OFFLINE)


def require_hub(token: str | None, what: str) -> str:
    """The token to push with, or a HubError saying why the Hub cannot be used."""
    if hub_offline():
        raise HubError(
            f"{what} needs the Hugging Face Hub, but offline mode is on (HF_HUB_OFFLINE is set). "
            "Unset HF_HUB_OFFLINE, or use --dry-run DIR to write the files locally. Nothing was written."
        )
    return _token(token)


def _commit(
    repo: str, files: Mapping[str, Path], message: str, token: str, create_pr: bool, private: bool
) -> str:
    """One commit (or one pull request) adding ``files`` (path in repo -> local file)."""
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(token=token)
    ops = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(f)) for p, f in sorted(files.items())]
    try:
        if not create_pr:  # a PR goes to an existing repo, often someone else's: never create it
            api.create_repo(repo, repo_type="dataset", exist_ok=True, private=private)
        info = api.create_commit(
            repo_id=repo, repo_type="dataset", operations=ops, commit_message=message, create_pr=create_pr
        )
    except Exception as exc:  # huggingface_hub raises many types (HTTP, connection, offline)
        raise _hub_error("pushing to", repo, exc) from exc
    return str(getattr(info, "pr_url", None) or getattr(info, "commit_url", None) or info)


def publish(
    results: list[RunResult],
    tasks: Mapping[str, TaskSpec],
    repo: str,
    dry_run: Path | None = None,
    create_pr: bool = False,
    token: str | None = None,
    private: bool = False,
) -> tuple[str, list[str]]:
    """Push the results table to ``repo`` (or write it to ``dry_run``); returns (URL or folder, files)."""
    if not results:
        raise HubError("no results to publish: the results folder is empty. Run `genseg-bench run` first.")
    tok = None if dry_run is not None else require_hub(token, "leaderboard publish")
    if dry_run is not None:
        files = write_export(results, tasks, Path(dry_run))
        return str(dry_run), [str(f) for f in files]
    with tempfile.TemporaryDirectory(prefix="genseg-publish-") as tmp:
        folder = Path(tmp) / "export"
        files = write_export(results, tasks, folder)
        n_runs = len(results)
        url = _commit(
            repo,
            {f.as_posix(): folder / f for f in files},
            f"genseg-bench: results table ({n_runs} runs, {len({r.spec.task for r in results})} tasks)",
            tok or "",
            create_pr,
            private,
        )
    return url, [str(f) for f in files]


def submission_dirname(method: str, suite: str) -> str:
    """A folder name for a submission (``module:Class`` method names become file-system safe)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", f"{method}__{suite}").strip("-")


def push_submission(folder: Path, repo: str, name: str, token: str | None = None) -> str:
    """Open a pull request adding a submission folder as ``submissions/<name>/``; returns the PR URL."""
    tok = require_hub(token, "submit --push")
    files = {f"submissions/{name}/{p.name}": p for p in sorted(Path(folder).iterdir()) if p.is_file()}
    return _commit(repo, files, f"genseg-bench submission: {name}", tok, create_pr=True, private=False)
