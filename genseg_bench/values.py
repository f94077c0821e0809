"""Checks of the values a user gives (sizes, seeds, budgets, image sizes, devices), before any work.

The CLI and the library share these checks so that a bad value is one clear error
naming the option and the valid range, raised before data is loaded or a model
trained: ``--sizes -3`` once trained on every case and recorded "n=-3", ``--seeds
""`` became seed 0, ``--iterations 0`` recorded an untrained model as a result.
Every function takes the name to show (``--sizes`` from the CLI, ``sizes`` from the
library). This module imports nothing heavy: the CLI checks values before torch loads.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from genseg_bench.errors import GensegBenchError

MIN_IMAGE_SIZE = 8
"""Smallest side length (2D) or cube edge (3D) a run or a prepared set may have.

Below 8 pixels the generator and discriminator have no resolution left to work at;
a model may need more (a multiple of its output stride), which the runner checks
against the model itself."""

DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N (N a GPU index) or mps"


class ValueCheckError(GensegBenchError):
    """A value given on the command line (or to the library) is outside its valid range."""


MAX_SEED = 2**32 - 1
"""Largest seed: every random generator the runs use (torch, numpy) accepts 0 to 2**32 - 1."""


def parse_ints(
    text: str, option: str, minimum: int, maximum: int | None = None, example: str = "0,1,2"
) -> list[int]:
    """Comma-separated integers in ``[minimum, maximum]``, at least one, in the order given."""
    parts = [x.strip() for x in text.split(",")]
    if not any(parts):
        raise ValueCheckError(f"{option} is empty; give at least one integer, e.g. {option} {example}.")
    try:
        values = [int(x) for x in parts if x]
    except ValueError:
        raise ValueCheckError(
            f"{option} takes comma-separated integers, e.g. {option} {example}; got {text!r}."
        ) from None
    check_each_in_range(values, option, minimum, maximum)
    return values


def check_each_in_range(values: Sequence[int], option: str, minimum: int, maximum: int | None = None) -> None:
    """Every value is an integer in ``[minimum, maximum]`` (no upper bound: None), and there is one at least."""
    if not values:
        raise ValueCheckError(f"{option} is empty; give at least one value.")
    bad = [v for v in values if v < minimum or (maximum is not None and v > maximum)]
    if bad:
        valid = f"of {minimum} or more" if maximum is None else f"from {minimum} to {maximum}"
        raise ValueCheckError(f"{option} takes integers {valid}; got {', '.join(map(str, bad))}.")


def duplicates(values: Sequence[int]) -> list[int]:
    """The values that occur more than once, in first-occurrence order."""
    seen: set[int] = set()
    twice: list[int] = []
    for v in values:
        if v in seen and v not in twice:
            twice.append(v)
        seen.add(v)
    return twice


def check_unique(values: Sequence[int], option: str) -> None:
    """No value twice: a repeated size or seed would train the same run again."""
    twice = duplicates(values)
    if twice:
        raise ValueCheckError(
            f"{option} lists {', '.join(map(str, twice))} more than once; give each value once "
            "(a repeated value would train the same run again)."
        )


def check_at_least(value: int | None, option: str, minimum: int, why: str = "") -> None:
    """``value`` (when given) is at least ``minimum``."""
    if value is not None and value < minimum:
        extra = f" {why}" if why else ""
        raise ValueCheckError(f"{option} must be {minimum} or more; got {value}.{extra}")


def check_iterations(value: int | None, option: str = "--iterations") -> None:
    check_at_least(value, option, 1, "A run of 0 iterations would record an untrained model as a result.")


def check_image_size(value: int | None, option: str = "--image-size") -> None:
    check_at_least(value, option, MIN_IMAGE_SIZE, "Use e.g. 64 (quick runs) or 256 (the paper's size).")


def check_device_name(name: str, option: str = "--device") -> None:
    """The device name has a form torch understands (whether it is available is checked by the runner)."""
    if not DEVICE_PATTERN.fullmatch(name):
        raise ValueCheckError(f"{option} must be {DEVICE_CHOICES}; got {name!r}.")
