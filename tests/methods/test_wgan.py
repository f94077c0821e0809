"""The WGAN baselines do what their papers say: clipping, the gradient penalty, binary samples that are used.

(a) the WGAN-GP critic objective includes lambda * E[(||grad C(x_hat)||_2 - 1)^2] at random
    interpolates, checked against closed forms on constructed critics, and its gradient
    reaches the critic's weights;
(b) weight clipping keeps every critic parameter in [-c, c]; critic steps raise the
    critic's Wasserstein estimate and generator steps raise the critic's score of samples;
(c) generated masks are binary, the samples are used (0 samples is the supervised baseline
    exactly, and any samples change the result), and a fit on an embedded synthetic task
    beats predicting everything or nothing;
(d) the specs validate, bad config keys are errors when the catalog loads, a run through
    the runner records the GAN's budget and its sample grid, 3D builds.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from genseg_bench.catalog import Catalog
from genseg_bench.data.store import Store
from genseg_bench.errors import SpecError
from genseg_bench.methods import supervised as supervised_module
from genseg_bench.methods import wgan as wgan_module
from genseg_bench.methods.base import FitContext, SegData
from genseg_bench.methods.config import WGANConfig
from genseg_bench.methods.supervised import SupervisedMethod
from genseg_bench.methods.wgan import WGANMethod, WGANTrainer, gradient_penalty, sample_pairs
from genseg_bench.metrics import binarise, dice_per_case
from genseg_bench.models.wgan_nets import PairCritic, PairGenerator, decode_pairs, encode_pairs
from genseg_bench.profiles import get_profile
from genseg_bench.runner import run_grid
from genseg_bench.specs import MethodSpec

CPU = torch.device("cpu")
SMOKE = get_profile("smoke")
REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _discs(n: int, size: int = 32, seed: int = 0) -> SegData:
    """Bright discs on noise: learnable in a few dozen updates, an all-foreground guess scores ~0.2."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centres = torch.randint(size // 4, 3 * size // 4, (n, 2), generator=g)
    masks = ((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2 < (size // 5) ** 2).float()
    masks = masks[:, None]
    images = (0.4 * torch.rand(n, 3, size, size, generator=g) + 0.5 * masks).clamp(0, 1)
    return SegData(images, masks, [f"case{i}" for i in range(n)])


def _tiny_segmenter(backbone: str, channels: int, dims: int = 2, *args: object) -> nn.Module:
    """A three-layer CNN in place of the smp backbone: the loop is under test, not the backbone.

    Seconds instead of minutes, and no BatchNorm: the generated half can change the
    result only through its loss's gradient, not through running statistics.
    """
    return nn.Sequential(
        nn.Conv2d(channels, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 1, 1),
    )


@pytest.fixture
def tiny_segmenter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both the WGAN method and the supervised baseline build the tiny CNN."""
    monkeypatch.setattr(wgan_module, "build_segmenter", _tiny_segmenter)
    monkeypatch.setattr(supervised_module, "build_segmenter", _tiny_segmenter)


def _ctx(tmp_path: Path, **updates: object) -> FitContext:
    return FitContext(device=CPU, seed=0, profile=SMOKE.model_copy(update=updates), out_dir=tmp_path / "art")


def _spec(**config: object) -> MethodSpec:
    return MethodSpec(name="wgan-test", kind="wgan", description="test", config=config)


def _trainer(cfg: WGANConfig, critic: nn.Module, spatial: tuple[int, ...] = (16, 16)) -> WGANTrainer:
    torch.manual_seed(0)
    gen = PairGenerator(3, spatial, width=4, noise_dim=8)
    return WGANTrainer(cfg, gen, critic, torch.Generator().manual_seed(0))  # type: ignore[arg-type]


class Quadratic(nn.Module):
    """``C(x) = a / 2 * ||x||^2`` per sample: gradient ``a x``, so the penalty has a closed form."""

    def __init__(self, a: float) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a / 2 * x.flatten(1).square().sum(1)


# --- (a) the gradient penalty ------------------------------------------------------------------


def test_gradient_penalty_is_taken_at_random_interpolates_and_reaches_the_critic() -> None:
    g = torch.Generator().manual_seed(3)
    real = torch.rand(5, 4, 6, 6, generator=g, dtype=torch.float64) * 2 - 1
    fake = torch.rand(5, 4, 6, 6, generator=g, dtype=torch.float64) * 2 - 1
    critic = Quadratic(0.3)
    penalty = gradient_penalty(critic, real, fake, torch.Generator().manual_seed(7))
    e = torch.rand(5, 1, 1, 1, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    norms = (e * real + (1 - e) * fake).flatten(1).norm(dim=1)  # ||grad C(x_hat)|| = a ||x_hat||
    expected = (0.3 * norms - 1).square().mean()
    torch.testing.assert_close(penalty, expected, rtol=1e-12, atol=1e-12)
    # create_graph: the penalty's derivative in the critic's weight is d/da mean((a n - 1)^2)
    (grad,) = torch.autograd.grad(penalty, critic.a)
    torch.testing.assert_close(grad, (2 * (0.3 * norms - 1) * norms).mean(), rtol=1e-10, atol=1e-12)


def test_wgan_gp_critic_loss_adds_lambda_times_the_penalty() -> None:
    """A linear critic ``<w, x>`` has gradient ``w`` everywhere: the penalty is ``(||w|| - 1)^2``."""
    critic = nn.Conv2d(4, 1, 16, bias=False).double()  # one output per sample: a linear function
    with torch.no_grad():
        critic.weight.normal_(0.0, 0.2)
    scored = _Flat(critic)
    g = torch.Generator().manual_seed(0)
    real = torch.rand(6, 4, 16, 16, generator=g, dtype=torch.float64) * 2 - 1
    fake = torch.rand(6, 4, 16, 16, generator=g, dtype=torch.float64) * 2 - 1
    w_norm = critic.weight.detach().norm()
    wasserstein = (scored(real).mean() - scored(fake).mean()).detach()
    for lam in (10.0, 3.0):
        cfg = WGANConfig(penalty="gp", gp_lambda=lam) if lam != 10.0 else WGANConfig(penalty="gp")
        losses = _trainer(cfg, scored).critic_loss(real, fake)
        torch.testing.assert_close(losses.penalty.detach(), (w_norm - 1).square(), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(
            losses.loss.detach(), -wasserstein + lam * (w_norm - 1).square(), rtol=1e-10, atol=1e-12
        )
    # weight clipping has no penalty term: the loss is the negated Wasserstein estimate alone
    clipped = _trainer(WGANConfig(penalty="clip"), scored).critic_loss(real, fake)
    torch.testing.assert_close(clipped.loss.detach(), -wasserstein, rtol=1e-12, atol=1e-12)


class _Flat(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).reshape(x.shape[0])


# --- (b) clipping and the directions of the two players -----------------------------------------


def _real_batches(seed: int = 0) -> tuple[torch.Tensor, ...]:
    data = _discs(8, size=16, seed=seed)
    return tuple(encode_pairs(data.images[i : i + 4], data.masks[i : i + 4]) for i in (0, 4))


def test_weight_clipping_keeps_every_critic_parameter_within_c() -> None:
    batches = _real_batches()
    cfg = WGANConfig(penalty="clip", clip=0.02, lr=0.05)  # a large lr: unclipped weights leave the box
    torch.manual_seed(0)
    trainer = _trainer(cfg, PairCritic(3, (16, 16), width=4, norm="batch"))
    for i in range(6):
        trainer.critic_step(batches[i % 2])
        params = torch.cat([p.detach().flatten() for p in trainer.critic.parameters()])
        assert float(params.abs().max()) <= 0.02 + 1e-9
    assert float(params.abs().max()) == pytest.approx(0.02)  # clipping was active, not idle
    # the gradient penalty does not clip: its critic keeps weights outside [-c, c] (GroupNorm's scale is 1)
    torch.manual_seed(0)
    gp = _trainer(WGANConfig(penalty="gp"), PairCritic(3, (16, 16), width=4, norm="layer"))
    gp.critic_step(batches[0])
    assert max(float(p.detach().abs().max()) for p in gp.critic.parameters()) > 0.5


@pytest.mark.parametrize("penalty", ["clip", "gp"])
def test_critic_steps_raise_the_wasserstein_estimate_and_generator_steps_the_fake_score(penalty: str) -> None:
    real = _real_batches()[0]
    cfg = WGANConfig(penalty=penalty, lr=1e-3)  # type: ignore[arg-type]
    torch.manual_seed(0)
    trainer = _trainer(cfg, PairCritic(3, (16, 16), width=4, norm="layer" if penalty == "gp" else "batch"))
    fixed_z = trainer.gen.noise(4, torch.Generator().manual_seed(1))

    def estimate() -> float:
        with torch.no_grad():
            return float(trainer.critic(real).mean() - trainer.critic(trainer.gen(fixed_z)).mean())

    trainer.clip_critic()  # start inside the box, so the steps are compared, not the first clipping
    before = estimate()
    for _ in range(5):
        trainer.critic_step(real)
    assert estimate() > before
    gen_before = {k: v.clone() for k, v in trainer.gen.state_dict().items()}
    critic_before = {k: v.clone() for k, v in trainer.critic.state_dict().items()}
    with torch.no_grad():
        fake_score = float(trainer.critic(trainer.gen(fixed_z)).mean())
    for _ in range(3):
        trainer.generator_step(4, CPU)
    with torch.no_grad():
        assert float(trainer.critic(trainer.gen(fixed_z)).mean()) > fake_score
    critic_after = trainer.critic.state_dict()
    # the generator step leaves the critic's weights alone (its BatchNorm statistics may move)
    assert all(torch.equal(critic_before[k], critic_after[k]) for k, _ in trainer.critic.named_parameters())
    assert any(not torch.equal(gen_before[k], v) for k, v in trainer.gen.state_dict().items())


# --- (c) samples: binary, used, and a fit that learns ------------------------------------------


def test_generated_masks_are_binary_and_images_in_range() -> None:
    torch.manual_seed(0)
    gen = PairGenerator(3, (20, 28), width=4, noise_dim=8)
    pool = sample_pairs(gen, 10, 4, torch.Generator().manual_seed(0), CPU)
    assert pool.images.shape == (10, 3, 20, 28) and pool.masks.shape == (10, 1, 20, 28)
    assert set(pool.masks.unique().tolist()) <= {0.0, 1.0}
    assert float(pool.images.min()) >= 0.0 and float(pool.images.max()) <= 1.0
    # the threshold is 0.5 of the mask channel's [0, 1] range, i.e. 0 of the Tanh output
    _, masks = decode_pairs(torch.tensor([-0.9, -0.01, 0.01, 0.9]).reshape(4, 1, 1, 1).repeat(1, 2, 1, 1))
    assert masks.flatten().tolist() == [0.0, 0.0, 1.0, 1.0]


@pytest.mark.usefixtures("tiny_segmenter")
def test_zero_samples_is_the_supervised_baseline_and_samples_change_the_result(tmp_path: Path) -> None:
    train, val = _discs(6), _discs(3, seed=1)
    ctx = _ctx(tmp_path)
    probe = _discs(4, seed=2).images
    supervised = SupervisedMethod(
        MethodSpec(name="unet", kind="supervised", description="x", config={"augment": []})
    ).fit(train, val, ctx)
    none = WGANMethod(_spec(samples=0)).fit(train, val, ctx)
    some = WGANMethod(_spec(samples=8, gan_iterations=2)).fit(train, val, ctx)
    p_sup, p_none, p_some = (f.predictor.predict(probe) for f in (supervised, none, some))
    torch.testing.assert_close(p_none, p_sup, rtol=0, atol=0)  # the same loop, the same draws
    assert not torch.allclose(p_some, p_sup, atol=1e-4)
    its, b = SMOKE.iterations, SMOKE.batch_size
    assert none.budget["generated_images_seen"] == 0 and none.budget["gan_pretraining_iterations"] == 0
    assert some.budget["generated_images_seen"] == its * b and some.budget["real_images_seen"] == its * b
    assert some.budget["updates"] == its and some.budget["critic_steps"] == 2 * 5
    assert some.extras["generated_foreground_fraction"] is not None


@pytest.mark.usefixtures("tiny_segmenter")
def test_gan_steps_per_iteration_scales_the_gan_budget_with_the_profile(tmp_path: Path) -> None:
    """The clip WGAN's budget is a multiple of the profile's (5x in wgan-unet): smoke stays smoke-sized."""
    train, val = _discs(6), _discs(3, seed=1)
    fit = WGANMethod(_spec(samples=8, gan_steps_per_iteration=1.5)).fit(train, val, _ctx(tmp_path))
    its = SMOKE.iterations
    assert fit.budget["gan_pretraining_iterations"] == round(1.5 * its)
    assert fit.budget["critic_steps"] == 5 * round(1.5 * its) and fit.budget["updates"] == its
    assert WGANConfig().gan_steps(its) == its and WGANConfig(gan_iterations=7).gan_steps(its) == 7


@pytest.mark.usefixtures("tiny_segmenter")
def test_wgan_fit_on_synthetic_discs_beats_predicting_everything_or_nothing(tmp_path: Path) -> None:
    train, val, test = _discs(12), _discs(4, seed=1), _discs(8, seed=2)
    ctx = _ctx(tmp_path, iterations=40, eval_every=10)
    fit = WGANMethod(_spec(samples=16, gan_iterations=5)).fit(train, val, ctx)
    target = test.masks > 0.5
    dice = float(dice_per_case(binarise(fit.predictor.predict(test.images)), target).mean())
    everything = float(dice_per_case(torch.ones_like(target), target).mean())
    assert everything < 0.3  # nothing scores 0: every test mask has foreground
    assert dice > everything + 0.3, (dice, everything)
    assert (tmp_path / "art" / "wgan_samples.png").is_file()


# --- (d) specs, runner, 3D ---------------------------------------------------------------------


def test_shipped_wgan_specs_and_task_lists(catalog: Catalog) -> None:
    specs = {n: catalog.method(n) for n in ("wgan-unet", "wgan-deeplab", "wgan-gp-unet")}
    assert {s.kind for s in specs.values()} == {"wgan"}
    assert specs["wgan-deeplab"].backbone == "deeplabv3plus" and specs["wgan-unet"].backbone == "unet"
    cfg = {n: WGANConfig.model_validate(s.config) for n, s in specs.items()}
    assert cfg["wgan-unet"].clip_value == 0.01 and cfg["wgan-unet"].n_critic == 5
    assert cfg["wgan-gp-unet"].penalty_weight == 10.0 and cfg["wgan-gp-unet"].clip_value is None
    assert "wgan-gp-unet" in catalog.task("ablation-simultaneous-isic").default_methods
    for task in catalog.tasks.values():
        if task.family == "baselines":
            assert {"wgan-unet", "wgan-deeplab"} <= set(task.default_methods), task.id


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ("n_critics = 5", "did you mean 'n_critic'"),
        ('penalty = "gp"\nclip = 0.01', "clip is the weight-clipping bound"),
        ('penalty = "clip"\ngp_lambda = 10.0', "gp_lambda weighs the gradient penalty"),
        ('penalty = "spectral"', "penalty"),
        ("n_critic = 0", "n_critic"),
        ("gan_iterations = 10\ngan_steps_per_iteration = 2.0", "both set the GAN's budget"),
        ("gan_steps_per_iteration = 0", "gan_steps_per_iteration"),
    ],
)
def test_catalog_rejects_bad_wgan_config(tmp_path: Path, config: str, match: str) -> None:
    folder = tmp_path / "methods"
    folder.mkdir()
    body = '[[method]]\nname = "w"\nkind = "wgan"\ndescription = "x"\n[method.config]\n' + config + "\n"
    (folder / "mine.toml").write_text(textwrap.dedent(body))
    with pytest.raises(SpecError, match="Valid config keys") as err:
        Catalog.load(tasks_dir=REPO / "tasks", methods_dir=folder)
    assert match in str(err.value) and "mine.toml" in str(err.value)


def test_wgan_gp_run_through_the_runner_records_the_gan_budget(
    catalog: Catalog, store: Store, tmp_path: Path
) -> None:
    """The shipped spec with its real UNet, at three iterations (the smp backbone dominates the cost)."""
    profile = SMOKE.model_copy(update={"iterations": 3})
    s = run_grid(catalog, "synthetic", ["wgan-gp-unet"], [8], [0], profile, store, tmp_path, CPU, threads=1)
    assert not s.failed, [r.error for r in s.failed]
    (r,) = s.ran
    assert r.budget["gan_pretraining_iterations"] == 3 and r.budget["critic_steps"] == 5 * 3
    assert r.budget["generated_images_seen"] == 3 * SMOKE.batch_size == r.budget["real_images_seen"]
    assert r.extras["penalty"] == "gp" and r.extras["gp_lambda"] == 10.0
    assert len(r.trajectory["gan_penalty"]) == len(r.trajectory["gan_iteration"]) > 0
    assert any(a.endswith("wgan_samples.png") for a in r.artifacts)


@pytest.mark.parametrize("spatial", [(16, 16), (20, 28), (12, 16, 20)])
def test_generator_and_critic_build_for_any_2d_or_3d_shape(spatial: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    gen = PairGenerator(1, spatial, width=2, noise_dim=4)
    out = gen(gen.noise(3))
    assert out.shape == (3, 2, *spatial) and float(out.abs().max()) <= 1.0
    for norm in ("batch", "layer"):
        assert PairCritic(1, spatial, width=2, norm=norm)(out).shape == (3,)  # type: ignore[arg-type]
