"""Profiles: the budgets every method of a grid shares.

``paper`` is A.6 of the paper: 5,000 iterations at 256x256, RMSprop lr 1e-5 for
the segmenter, Adam 1e-5 for the generator, Adam 1e-4 for the architecture,
validation once per epoch. ``quick`` is for the embedded synthetic tasks on a
2-core CPU: small images, a few hundred iterations, and a larger segmenter
learning rate so that a short budget still trains the baselines properly (an
undertrained baseline would flatter GenSeg). ``smoke`` is for tests.
"""

from __future__ import annotations

from genseg_bench.errors import unknown
from genseg_bench.specs import Profile

PROFILES: dict[str, Profile] = {
    "paper": Profile(
        name="paper",
        image_size=None,
        iterations=5000,
        batch_size=8,
        eval_every=None,
        seg_lr=1e-5,
        gen_lr=1e-5,
        arch_lr=1e-4,
        gen_width=64,
        amp=True,
    ),
    "quick": Profile(
        name="quick",
        image_size=64,
        iterations=120,
        batch_size=8,
        eval_every=20,
        seg_lr=1e-3,
        gen_lr=2e-4,
        arch_lr=1e-3,
        gen_width=16,
        amp=True,
    ),
    "smoke": Profile(
        name="smoke",
        image_size=32,
        iterations=6,
        batch_size=4,
        eval_every=3,
        seg_lr=1e-3,
        gen_lr=2e-4,
        arch_lr=1e-3,
        gen_width=8,
        amp=False,
    ),
}


def get_profile(name: str, image_size: int | None = None, iterations: int | None = None) -> Profile:
    """A profile by name, optionally with the image size or iteration budget overridden."""
    if name not in PROFILES:
        raise unknown("profile", name, list(PROFILES))
    profile = PROFILES[name]
    updates: dict[str, object] = {}
    if image_size is not None:
        updates["image_size"] = image_size
    if iterations is not None:
        updates["iterations"] = iterations
    return profile.model_copy(update=updates) if updates else profile
