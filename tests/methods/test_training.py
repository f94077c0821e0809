"""The shared training rules: when the plateau scheduler may lower the learning rate, and how far.

Measured failure these pin down: on CVC-ClinicDB-40 the UNet predicted all background
for 300 iterations, the scheduler read those Dice-0 validations as a plateau and cut the
lr 10x before the first polyp was found; on Kvasir-40 a lucky early score on 8 validation
images decayed the lr to 3e-8. Validation scores are scripted here, so each test is about
the rule, not about training noise.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from genseg_bench.methods import training
from genseg_bench.methods.base import FitContext, SegData
from genseg_bench.profiles import get_profile


def _monitor(
    monkeypatch: pytest.MonkeyPatch, scores: list[float], tmp_path: Path, **profile_updates: object
) -> tuple[training.TrainingMonitor, torch.optim.Optimizer]:
    profile = get_profile("smoke").model_copy(
        update={"iterations": len(scores), "eval_every": 1, "seg_lr": 1e-3, **profile_updates}
    )
    model = nn.Conv2d(1, 1, 1)
    # every validation mask has foreground, so predicting nothing scores 0
    val = SegData(torch.rand(2, 1, 4, 4), torch.ones(2, 1, 4, 4), ["a", "b"])
    ctx = FitContext(device=torch.device("cpu"), seed=0, profile=profile, out_dir=tmp_path)
    opt, sched = training.make_seg_optimizer(model.parameters(), profile)
    monitor = training.TrainingMonitor(model, val, ctx, opt, sched)
    script = iter(scores)
    monkeypatch.setattr(training, "validation_score", lambda *a, **k: next(script))
    return monitor, opt


def _run(monitor: training.TrainingMonitor, n: int) -> list[float]:
    lrs = []
    for it in range(1, n + 1):
        monitor.step(it, {"loss": torch.tensor(0.5)})
        lrs.append(float(monitor.opt.param_groups[0]["lr"]))
    return lrs


def test_all_background_validations_do_not_decay_the_lr(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    scores = [0.0] * 8 + [0.3]
    monitor, _ = _monitor(monkeypatch, scores, tmp_path)
    lrs = _run(monitor, len(scores))
    assert lrs == [1e-3] * len(scores)
    assert monitor.armed_at == 9
    assert monitor.budget()["plateau_armed_at"] == 9


def test_without_the_wait_the_same_zeros_do_decay(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The control: the rule above is what keeps the lr, not the scripted scores."""
    scores = [0.0] * 8
    monitor, _ = _monitor(monkeypatch, scores, tmp_path, plateau_wait_for_foreground=False)
    lrs = _run(monitor, len(scores))
    assert lrs[-1] < 1e-3
    assert monitor.armed_at == 1


def test_once_armed_a_plateau_decays_but_not_below_the_floor(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    scores = [0.0, 0.5] + [0.4] * 30
    monitor, _ = _monitor(monkeypatch, scores, tmp_path, plateau_patience=2, plateau_min_lr_factor=0.01)
    lrs = _run(monitor, len(scores))
    assert monitor.armed_at == 2
    assert lrs[2] == 1e-3  # patience: the first non-improving evaluations keep the lr
    assert lrs[5] == pytest.approx(1e-4)  # armed at 2, three evaluations without improvement
    assert min(lrs) == pytest.approx(1e-5)  # 1e-3 * 0.01: two decays at most
    assert lrs[-1] == pytest.approx(1e-5)


def test_validations_on_empty_masks_arm_only_above_the_empty_score(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With empty validation masks, predicting nothing scores above 0: only beating that arms."""
    profile = get_profile("smoke").model_copy(update={"iterations": 4, "eval_every": 1})
    model = nn.Conv2d(1, 1, 1)
    masks = torch.zeros(2, 1, 4, 4)
    masks[0, 0, 1, 1] = 1.0  # one case with foreground, one empty: empty prediction scores 0.5
    val = SegData(torch.rand(2, 1, 4, 4), masks, ["a", "b"])
    ctx = FitContext(device=torch.device("cpu"), seed=0, profile=profile, out_dir=tmp_path)
    opt, sched = training.make_seg_optimizer(model.parameters(), profile)
    monitor = training.TrainingMonitor(model, val, ctx, opt, sched)
    assert monitor.empty_score == pytest.approx(0.5)
    script = iter([0.5, 0.5, 0.6, 0.6])
    monkeypatch.setattr(training, "validation_score", lambda *a, **k: next(script))
    _run(monitor, 4)
    assert monitor.armed_at == 3


def test_a_capped_backbone_trains_at_its_cap_and_others_at_the_profile_rate() -> None:
    """SwinUnet collapses above 1e-4 (models.backbones.SEG_LR_MAX): its rate is capped, a UNet's is not."""
    profile = get_profile("cpu")  # seg_lr 3e-4, above the cap
    net = nn.Linear(2, 1)
    opt, _ = training.make_seg_optimizer(net.parameters(), profile, "swinunet")
    assert training.start_lrs(opt) == [1e-4]
    opt, _ = training.make_seg_optimizer(net.parameters(), profile, "unet")
    assert training.start_lrs(opt) == [profile.seg_lr]
    opt.param_groups[0]["lr"] = 1e-7  # a decay later on: the recorded rate is still the start
    assert training.start_lrs(opt) == [profile.seg_lr]
    paper = get_profile("paper")  # 1e-5: below the cap, unchanged
    opt, _ = training.make_seg_optimizer(net.parameters(), paper, "swinunet")
    assert training.start_lrs(opt) == [paper.seg_lr]


def test_a_pair_gets_one_group_per_network_each_with_its_own_rate_and_floor() -> None:
    """CTBCT's UNet + SwinUnet: one optimiser, the transformer's group capped, each floor 1e-2 of its start."""
    profile = get_profile("cpu")
    cnn, transformer = nn.Linear(2, 1), nn.Linear(2, 1)
    opt, sched = training.make_seg_optimizer(
        [(cnn.parameters(), "unet"), (transformer.parameters(), "swinunet")], profile
    )
    assert training.start_lrs(opt) == [profile.seg_lr, 1e-4]
    assert [list(g["params"]) for g in opt.param_groups] == [
        list(cnn.parameters()),
        list(transformer.parameters()),
    ]
    assert sched.min_lrs == [
        profile.seg_lr * profile.plateau_min_lr_factor,
        1e-4 * profile.plateau_min_lr_factor,
    ]


def test_finish_restores_the_best_and_keeps_the_final_network(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The best checkpoint is what methods return; the final weights go to the runner beside it."""
    monitor, _ = _monitor(monkeypatch, [0.9, 0.2, 0.1], tmp_path)
    model = monitor.model
    for it in (1, 2, 3):
        with torch.no_grad():
            model.weight.fill_(float(it))
        monitor.step(it, {"loss": torch.tensor(0.5)})
    monitor.finish(model)
    assert float(model.weight.flatten()[0]) == 1.0  # the best validation (iteration 1) is restored
    final = monitor.final_predictor(4, False)
    assert final is not None
    assert float(final.model.weight.flatten()[0]) == 3.0  # type: ignore[attr-defined]
    assert final.model is not model  # type: ignore[attr-defined]


def test_finish_keeps_no_copy_when_the_best_is_the_final_network(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monitor, _ = _monitor(monkeypatch, [0.1, 0.2, 0.9], tmp_path)
    _run(monitor, 3)
    monitor.finish(monitor.model)
    assert monitor.best.iteration == 3
    assert monitor.final_predictor(4, False) is None
