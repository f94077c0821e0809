"""No host syncs in the inner training loops, outside validation iterations.

On a GPU, every ``.item()``, ``.cpu()``, ``.tolist()``, ``.numpy()``, ``float(t)``,
``int(t)`` or ``bool(t)`` of a device tensor makes the host wait until the device
has finished all queued work, so one per iteration caps the speed at the latency
of a round trip. The loops accumulate their losses on the device and read them at
validation time only (:class:`~genseg_bench.methods.training.TrainingMonitor`).
This test counts those calls per iteration, on the CPU, with the tensor methods
patched: an iteration starts at its first ``sample_batch`` and ends at its
``ctx.progress`` call, which carries metrics exactly on validation iterations.
Reading an optimiser's ``step`` counter is not counted: torch keeps it on the host
(unless ``capturable``), so it is no sync on a GPU either.

``KNOWN`` lists the syncs that are there today, each with why it is not removed yet;
any other sync fails the test, and :func:`test_known_syncs_are_still_there` fails once
a known one is gone, so the list cannot go stale.
"""

from __future__ import annotations

import traceback
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from genseg_bench.methods import genseg as genseg_mod
from genseg_bench.methods import supervised as supervised_mod
from genseg_bench.methods.base import FitContext, SegData
from genseg_bench.methods.registry import build_method
from genseg_bench.profiles import get_profile
from genseg_bench.specs import MethodSpec

SYNC_METHODS = ("item", "cpu", "tolist", "numpy", "__float__", "__int__", "__bool__")

KNOWN = {
    "tolist in augment.py:_sample": (
        "the augmentation op order is a torch.randperm on the run's device generator, read back with "
        ".tolist() once per augmented batch; drawing it on the host would change every augmented run's "
        "random stream (and so its results), which needs its own change of the run identities"
    ),
}
"""Host syncs of the inner loops today (``<call> in <file>:<function>``), each with why it stays for now."""


def _blobs(n: int, size: int, seed: int) -> SegData:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    c = torch.rand(n, 2, generator=g) * 0.5 + 0.25
    masks = (((yy - c[:, 0, None, None]) ** 2 + (xx - c[:, 1, None, None]) ** 2) < 0.05).float()[:, None]
    images = (0.6 * torch.rand(n, 3, size, size, generator=g) + 0.3 * masks).clamp(0, 1)
    return SegData(images, masks, [f"c{i}" for i in range(n)])


class SyncCounter:
    """Counts host-sync calls on tensors, per iteration, with where each came from."""

    def __init__(self) -> None:
        self.current: list[str] = []
        self.in_iteration = False
        self.per_iteration: list[tuple[int, bool, list[str]]] = []
        self.optimizers: weakref.WeakSet[torch.optim.Optimizer] = weakref.WeakSet()

    def is_step_counter(self, t: torch.Tensor) -> bool:
        return any(st.get("step") is t for opt in list(self.optimizers) for st in opt.state.values())

    def wrap(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def counted(t: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if self.in_iteration and not self.is_step_counter(t):
                frame = traceback.extract_stack(limit=2)[0]  # the caller of the tensor method
                self.current.append(f"{name} in {Path(frame.filename).name}:{frame.name}")
            return real(t, *args, **kwargs)

        return counted

    def start(self) -> None:
        if not self.in_iteration:
            self.in_iteration, self.current = True, []

    def progress(self, it: int, total: int, metrics: dict[str, float]) -> None:
        self.per_iteration.append((it, bool(metrics), self.current))
        self.in_iteration, self.current = False, []


@pytest.fixture
def counter(monkeypatch: pytest.MonkeyPatch) -> Iterator[SyncCounter]:
    c = SyncCounter()
    for name in SYNC_METHODS:
        monkeypatch.setattr(torch.Tensor, name, c.wrap(name, getattr(torch.Tensor, name)))
    real_init = torch.optim.Optimizer.__init__

    def init(opt: torch.optim.Optimizer, *a: Any, **k: Any) -> None:
        real_init(opt, *a, **k)
        c.optimizers.add(opt)

    monkeypatch.setattr(torch.optim.Optimizer, "__init__", init)
    for mod in (supervised_mod, genseg_mod):
        real_sample = mod.sample_batch

        def sample(*a: Any, _real: Callable[..., Any] = real_sample, **k: Any) -> Any:
            c.start()  # the first batch of an iteration starts it (GenSeg also samples a validation batch)
            return _real(*a, **k)

        monkeypatch.setattr(mod, "sample_batch", sample)
    yield c


@pytest.mark.parametrize(
    "method",
    [
        MethodSpec(name="unet", kind="supervised", backbone="unet", description=""),
        MethodSpec(
            name="unet-real-x2",
            kind="supervised",
            backbone="unet",
            description="",
            config={"augment": ["flip"], "second_copy": ["rotate", "flip"]},
        ),
        MethodSpec(
            name="genseg-unet", kind="genseg", backbone="unet", description="", config={"arch_warmup": 2}
        ),
        MethodSpec(
            name="genseg-joint", kind="genseg", backbone="unet", description="", config={"end_to_end": False}
        ),
    ],
    ids=lambda m: m.name,
)
def test_no_host_sync_outside_validation_iterations(
    counter: SyncCounter, method: MethodSpec, tmp_path: Path
) -> None:
    profile = get_profile("smoke").model_copy(update={"iterations": 8, "eval_every": 4})
    ctx = FitContext(
        device=torch.device("cpu"), seed=0, profile=profile, out_dir=tmp_path, progress=counter.progress
    )
    build_method(method).fit(_blobs(8, 32, 0), _blobs(4, 32, 1), ctx)
    its = [(it, val) for it, val, _ in counter.per_iteration]
    assert its == [(i, i % 4 == 0) for i in range(1, 9)], its  # every iteration seen, validations at 4 and 8
    synced = {it: [c for c in calls if c not in KNOWN] for it, val, calls in counter.per_iteration if not val}
    assert not any(synced.values()), f"host syncs in training iterations: {synced}"
    assert any(calls for _, val, calls in counter.per_iteration if val)  # the counter does see syncs


def test_known_syncs_are_still_there(counter: SyncCounter, tmp_path: Path) -> None:
    """Each entry of ``KNOWN`` still happens (remove it from the list once its sync is gone)."""
    method = MethodSpec(
        name="unet-flip", kind="supervised", backbone="unet", description="", config={"augment": ["flip"]}
    )
    profile = get_profile("smoke").model_copy(update={"iterations": 2, "eval_every": 2})
    ctx = FitContext(
        device=torch.device("cpu"), seed=0, profile=profile, out_dir=tmp_path, progress=counter.progress
    )
    build_method(method).fit(_blobs(8, 32, 0), _blobs(4, 32, 1), ctx)
    seen = {c for _, val, calls in counter.per_iteration if not val for c in calls}
    assert seen == set(KNOWN), seen
