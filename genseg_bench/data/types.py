"""The one data record every source yields."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Case:
    """One labelled example as a source reads it, before resizing.

    2D: ``image`` is ``H x W x C`` uint8 (C = 1 or 3), ``mask`` is ``H x W`` bool.
    3D: ``image`` is ``D x H x W`` float32 (intensities as stored), ``mask`` is
    ``D x H x W`` bool. Masks are already binarised by the source's documented rule.
    """

    case_id: str
    image: np.ndarray
    mask: np.ndarray
