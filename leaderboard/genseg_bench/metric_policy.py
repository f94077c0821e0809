"""How scores are computed, in words and numbers, without the code that computes them.

Reports, exports and the leaderboard print this policy beside every number; they
import it from here rather than from :mod:`genseg_bench.metrics`, which needs torch,
so that reading results never loads torch.
"""

from __future__ import annotations

THRESHOLD = 0.5
"""Probabilities at or above this are foreground."""

EMPTY_POLICY = (
    "Per case, then averaged over cases. Probabilities are binarised at 0.5. An empty prediction "
    "on an empty ground truth scores 1; exactly one of them empty scores 0."
)
