"""Supervised baselines: one training loop; Vanilla, Rotate, Flip, ... differ only by config.

The augmentation ops come from the method spec's ``config.augment`` list and run
batched on the device (:mod:`genseg_bench.augment`), applied with the same
random transform to each image and its mask.
"""

from __future__ import annotations

from genseg_bench.augment import augment_pair
from genseg_bench.methods.base import FitContext, FitResult, Method, SegData
from genseg_bench.methods.config import SupervisedConfig, parse_config
from genseg_bench.methods.recipe import Recipe
from genseg_bench.methods.training import (
    ModulePredictor,
    TrainingMonitor,
    autocast,
    make_seg_optimizer,
    prepare_model,
    sample_batch,
    seed_everything,
    start_lrs,
)
from genseg_bench.models.segmenters import build_segmenter


class SupervisedMethod(Method):
    """Train a segmenter on the labelled set with optional geometric augmentation.

    ``second_copy`` (a list of ops) is the "real x2" control: every update also
    runs an augmented copy of the same batch through the segmenter, as a second
    forward, and adds its loss, exactly as GenSeg adds its generated half. The
    segmenter then sees as many images per update as GenSeg's does, so a gain of
    GenSeg over this control is a gain of generation, not of batch size.
    """

    config_model = SupervisedConfig

    def fit(self, train: SegData, val: SegData, ctx: FitContext) -> FitResult:
        cfg = parse_config(SupervisedConfig, self.spec.config, f"method {self.spec.name!r}")
        aug, copy_aug = cfg.augment_config(), cfg.second_copy_config()
        gen = seed_everything(ctx.seed, ctx.device)
        model = build_segmenter(
            self.spec.backbone,
            train.images.shape[1],
            train.dims,
            self.spec.encoder,
            self.spec.encoder_weights,
        )
        model = prepare_model(model, ctx, train.dims, train.images)
        recipe = Recipe(ctx.profile)
        opt, sched = make_seg_optimizer(model.parameters(), ctx.profile, self.spec.backbone)
        monitor = TrainingMonitor(model, val, ctx, opt, sched)
        model.train()
        for it in range(1, ctx.iterations + 1):
            images, masks = sample_batch(train, ctx.batch_size, gen)
            batch = int(images.shape[0])
            if copy_aug.active:
                copy_images, copy_masks = augment_pair(images, masks, copy_aug, gen)
            if aug.active:
                images, masks = augment_pair(images, masks, aug, gen)
            images = recipe.augment(images, gen)
            if copy_aug.active:
                copy_images = recipe.augment(copy_images, gen)
            with autocast(ctx):
                loss = recipe.loss(model(images), masks)
                if copy_aug.active:  # a second forward, as GenSeg's generated half
                    loss = loss + recipe.loss(model(copy_images), copy_masks)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            monitor.count(real=batch * (2 if copy_aug.active else 1))
            monitor.step(it, {"loss": loss})
        monitor.finish(model)
        return FitResult(
            predictor=ModulePredictor(model, ctx.batch_size, ctx.use_amp),
            last_predictor=monitor.final_predictor(ctx.batch_size, ctx.use_amp),
            best_val_score=monitor.best.score,
            best_iteration=monitor.best.iteration,
            iterations=ctx.iterations,
            extras={"empty_val_score": monitor.empty_score, "seg_lr": start_lrs(opt)[0]},
            trajectory=monitor.trajectory,
            budget={**monitor.budget(), "real_per_update": ctx.batch_size * (2 if copy_aug.active else 1)},
        )
