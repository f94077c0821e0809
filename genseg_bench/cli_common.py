"""What every part of the ``genseg-bench`` command shares: consoles, options, error handling, parsers.

The CLI is split by concern into typer sub-apps (``cli_run``: tasks, methods and
runs; ``cli_report``: report and reproduction; ``cli_data``: the ``data`` group;
``cli_leaderboard``: suites, results export, leaderboard, curves, submit), which
``cli`` assembles. They import their shared pieces from here and never from one
another's modules at import time, so there is no import cycle, and none of this
imports torch: ``--help``, ``tasks`` and ``report`` start without it.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from genseg_bench.data.store import default_store_root
from genseg_bench.errors import GensegBenchError
from genseg_bench.values import ValueCheckError, duplicates, parse_ints


def _width(stream: Any) -> int | None:
    """Rich's width: the terminal's, or ``COLUMNS``; else 160, not rich's 80.

    Off a terminal (a log file, CI, ``| less``) rich lays tables out in 80 columns, which
    wrapped the nine columns of ``run --dry-run`` into one word per line.
    """
    if os.environ.get("COLUMNS") or getattr(stream, "isatty", lambda: False)():
        return None
    return 160


console = Console(width=_width(sys.stdout))
err_console = Console(stderr=True, width=_width(sys.stderr))

F = TypeVar("F", bound=Callable[..., Any])

StoreOpt = Annotated[Path, typer.Option("--store", help="Prepared-data folder.", show_default=True)]
ResultsOpt = Annotated[Path, typer.Option("--results", help="Result folder (one JSON per run).")]
TokenOpt = Annotated[str | None, typer.Option(help="Hub token (default: the logged-in one / HF_TOKEN).")]
DEFAULT_STORE = default_store_root()


def friendly(fn: F) -> F:
    """Turn library errors into a clear message and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GensegBenchError as exc:
            # escaped: a message naming `genseg-bench[leaderboard]` or a `[resampled]` label is text, not markup
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def note(message: str) -> None:
    """A remark on stderr that does not stop the command (stdout stays clean for --format json)."""
    err_console.print(f"[yellow]note:[/] {message}", highlight=False)


def names(text: str | None, option: str = "") -> list[str] | None:
    """Comma-separated names (None when the option was not given).

    With ``option``, a value that names nothing (``--methods ,``) is an error, not the defaults:
    a user who typed the option meant some names.
    """
    if text is None:
        return None
    out = [x.strip() for x in text.split(",") if x.strip()]
    if option and not out:
        raise ValueCheckError(
            f"{option} names nothing ({text!r}); give comma-separated names or leave it out."
        )
    return out


def unique_ints(text: str | None, option: str, minimum: int, maximum: int | None = None) -> list[int] | None:
    """Comma-separated integers in range (None when not given); a repeated value is dropped with a note."""
    if text is None:
        return None
    example = "0,1,2" if minimum <= 0 else ",".join(str(minimum * k) for k in (1, 2, 4))
    values = parse_ints(text, option, minimum, maximum, example)
    twice = duplicates(values)
    if twice:
        note(f"{option} lists {', '.join(map(str, twice))} more than once; each run is done once.")
        values = list(dict.fromkeys(values))
    return values
