"""Names and ranges of the geometric augmentation operations, without torch.

The operations themselves run on the device (:mod:`genseg_bench.augment`); their
names and default ranges live here so that method configs can be validated and
hashed when the catalog loads (``genseg-bench tasks``, ``report``) without
importing torch. :mod:`genseg_bench.augment` re-exports both names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

AugOp = Literal["rotate", "flip", "translate", "elastic"]
"""One augmentation operation, as a method spec's ``config.augment`` names it."""

OPS: tuple[str, ...] = get_args(AugOp)


@dataclass(frozen=True)
class AugmentConfig:
    """Which operations run and their ranges.

    ``rotate_degrees``: uniform in [-r, r], in the H-W plane (see :mod:`genseg_bench.augment`).
    ``translate_fraction``: shift up to this fraction of the side, per axis. ``flip``:
    horizontal (W) and vertical (H), each with p = 0.5; never D in 3D.
    ``elastic_alpha``: displacement amplitude in normalised coordinates (the
    image spans [-1, 1]); ``elastic_grid``: control points per side (smoothness).
    """

    ops: tuple[str, ...] = ()
    rotate_degrees: float = 30.0
    translate_fraction: float = 0.1
    elastic_alpha: float = 0.06
    elastic_grid: int = 5

    def __post_init__(self) -> None:
        bad = [o for o in self.ops if o not in OPS]
        if bad:
            raise ValueError(f"unknown augmentation ops {bad}; known: {list(OPS)}")

    @classmethod
    def from_config(cls, config: dict[str, object], key: str = "augment") -> AugmentConfig:
        """Build from a method spec's ``config`` table (keys: augment, rotate_degrees, ...)."""
        ops = tuple(str(o) for o in config.get(key, ()))  # type: ignore[union-attr]
        kwargs: dict[str, float | int] = {}
        for name in ("rotate_degrees", "translate_fraction", "elastic_alpha"):
            if name in config:
                kwargs[name] = float(config[name])  # type: ignore[arg-type]
        if "elastic_grid" in config:
            kwargs["elastic_grid"] = int(config["elastic_grid"])  # type: ignore[call-overload]
        return cls(ops=ops, **kwargs)  # type: ignore[arg-type]

    @property
    def active(self) -> bool:
        return bool(self.ops)
