"""Error types. Every message names the file or name at fault and says how to fix it."""

from __future__ import annotations


class GensegBenchError(Exception):
    """Base class: an error the CLI prints as a one-paragraph message, not a traceback."""


class DataError(GensegBenchError):
    """Raw or prepared data is missing, corrupt or inconsistent."""


class UnknownNameError(GensegBenchError):
    """An unknown task, method, data set, profile or suite name."""


class SpecError(GensegBenchError):
    """A task or method spec file does not validate."""


class ResultFileError(GensegBenchError):
    """A result file is incomplete, foreign or of an unsupported schema version."""


class HubError(GensegBenchError):
    """A Hugging Face Hub operation failed (offline, no token, no access)."""


class TrainingDiverged(GensegBenchError):
    """A loss became NaN or infinite: the run is recorded as failed and the grid goes on."""


def unknown(kind: str, name: str, known: list[str]) -> UnknownNameError:
    """An UnknownNameError listing the close matches and every known name."""
    import difflib

    close = difflib.get_close_matches(name, known, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return UnknownNameError(f"unknown {kind} {name!r}.{hint} Known: {', '.join(sorted(known))}.")
