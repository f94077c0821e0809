"""Per-case Dice / Jaccard: hand-computed cases, the empty-mask policy, and a cross-check with scipy."""

import numpy as np
import pytest
import torch
from scipy.spatial import distance

from genseg_bench.metrics import binarise, dice_per_case, jaccard_per_case


def _m(rows: list[str]) -> torch.Tensor:
    return torch.tensor([[c == "#" for c in r] for r in rows])


def test_hand_computed_case() -> None:
    pred = _m(["##..", "##..", "....", "...."])  # 4 pixels
    gt = _m([".##.", ".##.", "....", "...."])  # 4 pixels, overlap 2
    d = dice_per_case(pred[None], gt[None])
    j = jaccard_per_case(pred[None], gt[None])
    assert d.item() == pytest.approx(2 * 2 / (4 + 4))  # 0.5
    assert j.item() == pytest.approx(2 / 6)  # union 6


def test_empty_mask_policy() -> None:
    empty = torch.zeros(1, 4, 4, dtype=torch.bool)
    some = torch.zeros(1, 4, 4, dtype=torch.bool)
    some[0, 1, 1] = True
    assert dice_per_case(empty, empty).item() == 1.0
    assert jaccard_per_case(empty, empty).item() == 1.0
    assert dice_per_case(empty, some).item() == 0.0
    assert dice_per_case(some, empty).item() == 0.0
    assert jaccard_per_case(some, empty).item() == 0.0


def test_mean_is_over_cases_not_pixels() -> None:
    big = torch.ones(1, 8, 8, dtype=torch.bool)
    small_gt = torch.zeros(1, 8, 8, dtype=torch.bool)
    small_gt[0, 0, 0] = True
    small_pred = torch.zeros(1, 8, 8, dtype=torch.bool)
    pred = torch.cat([big, small_pred])
    gt = torch.cat([big, small_gt])
    per_case = dice_per_case(pred, gt)
    assert per_case.tolist() == [1.0, 0.0]
    assert per_case.mean().item() == 0.5  # pooled-pixel Dice would be ~0.99


def test_threshold_at_half() -> None:
    probs = torch.tensor([0.49, 0.5, 0.51])
    assert binarise(probs).tolist() == [False, True, True]


def test_cross_check_with_scipy() -> None:
    rng = np.random.default_rng(0)
    pred = rng.random((20, 3, 16, 16)) > 0.6
    gt = rng.random((20, 3, 16, 16)) > 0.5
    ours_d = dice_per_case(torch.from_numpy(pred), torch.from_numpy(gt)).numpy()
    ours_j = jaccard_per_case(torch.from_numpy(pred), torch.from_numpy(gt)).numpy()
    for i in range(20):
        assert ours_d[i] == pytest.approx(1 - distance.dice(pred[i].ravel(), gt[i].ravel()))
        assert ours_j[i] == pytest.approx(1 - distance.jaccard(pred[i].ravel(), gt[i].ravel()))


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="shape"):
        dice_per_case(torch.zeros(1, 4, 4), torch.zeros(1, 4, 5))
