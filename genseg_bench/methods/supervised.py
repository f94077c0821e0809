"""Supervised baselines: one training loop; Vanilla, Rotate, Flip, ... differ only by config.

The augmentation ops come from the method spec's ``config.augment`` list and run
batched on the device (:mod:`genseg_bench.augment`), applied with the same
random transform to each image and its mask.
"""

from __future__ import annotations

import torch

from genseg_bench.augment import AugmentConfig, augment_pair
from genseg_bench.methods.base import FitContext, FitResult, Method, SegData
from genseg_bench.methods.training import (
    BestCheckpoint,
    ModulePredictor,
    autocast,
    check_finite,
    eval_interval,
    make_seg_optimizer,
    prepare_model,
    sample_batch,
    seed_everything,
    seg_loss,
    validation_dice,
)
from genseg_bench.models.segmenters import build_segmenter

_KNOWN_KEYS = {"augment", "rotate_degrees", "translate_fraction", "elastic_alpha", "elastic_grid"}


class SupervisedMethod(Method):
    """Train a segmenter on the labelled set with optional geometric augmentation."""

    def fit(self, train: SegData, val: SegData, ctx: FitContext) -> FitResult:
        unknown_keys = set(self.spec.config) - _KNOWN_KEYS
        if unknown_keys:
            raise ValueError(
                f"method {self.spec.name!r}: unknown config keys {sorted(unknown_keys)}; known: {sorted(_KNOWN_KEYS)}"
            )
        aug = AugmentConfig.from_config(self.spec.config)
        gen = seed_everything(ctx.seed, ctx.device)
        model = build_segmenter(
            self.spec.backbone,
            train.images.shape[1],
            train.dims,
            self.spec.encoder,
            self.spec.encoder_weights,
        )
        model = prepare_model(model, ctx, train.dims)
        opt, sched = make_seg_optimizer(model.parameters(), ctx.profile)
        best = BestCheckpoint()
        every = eval_interval(len(train), ctx)
        running = torch.zeros((), device=ctx.device)
        seen = 0
        model.train()
        for it in range(1, ctx.iterations + 1):
            images, masks = sample_batch(train, ctx.batch_size, gen)
            if aug.active:
                images, masks = augment_pair(images, masks, aug, gen)
            with autocast(ctx):
                logits = model(images)
            loss = seg_loss(logits, masks)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running += loss.detach()
            seen += 1
            if it % every == 0 or it == ctx.iterations:
                mean_loss = running / seen
                check_finite(mean_loss, "segmentation loss", it)
                score = validation_dice(model, val, ctx.batch_size, ctx.use_amp)
                sched.step(score)
                best.update(model, score, it)
                ctx.progress(
                    it, ctx.iterations, {"loss": float(mean_loss), "val_dice": score, "best": best.score}
                )
                running.zero_()
                seen = 0
            else:
                ctx.progress(it, ctx.iterations, {})
        best.restore(model)
        return FitResult(
            predictor=ModulePredictor(model, ctx.batch_size, ctx.use_amp),
            best_val_score=best.score,
            best_iteration=best.iteration,
            iterations=ctx.iterations,
            extras={"val_history": best.history},
        )
