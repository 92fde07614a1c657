"""The training loop's own logic: presets, the learning-rate policy, health checks."""
import numpy as np
import pytest

from zssr.engine.errors import UserError
from zssr.engine.train import TrainConfig, Trainer


def image(h=40, w=44, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / 10.0
    base = np.stack([np.sin(x + y), np.cos(2 * x), np.sin(3 * y)], -1) * 0.4 + 0.5
    return (base + 0.02 * rng.standard_normal(base.shape)).clip(0, 1).astype(np.float32)


def test_presets():
    z = TrainConfig.make("zssr")
    s = TrainConfig.make("seed")
    assert (z.recipe, z.residual, z.bias, z.loss, z.optimizer) == ("crops", True, False, "l1", "adam")
    assert (s.recipe, s.residual, s.bias, s.loss, s.optimizer, s.momentum, s.max_side) == \
        ("pyramid", False, True, "sse", "sgd", 0.0, 500)
    assert (z.anisotropic, z.gradual, z.iters) == (True, 2, 4400)  # ZSSR's six networks per x2 step
    f = TrainConfig.make("fast")
    assert (f.recipe, f.loss, f.anisotropic, f.gradual, f.iters) == ("crops", "l1", False, 2, 2200)
    assert not s.anisotropic
    assert TrainConfig.make("zssr", lr=0.5, iters=None).lr == 0.5  # None means: keep the default
    with pytest.raises(UserError, match="preset"):
        TrainConfig.make("turbo")
    with pytest.raises(ValueError, match="unknown training option"):
        TrainConfig.make("zssr", wings=2)


def test_seed_preset_shrinks_to_max_side_and_builds_the_pyramid():
    cfg = TrainConfig.make("seed", max_side=30, epochs=1, levels=3)
    tr = Trainer(image(40, 60), cfg)
    assert tr.img.shape == (20, 30, 3)
    assert [p[1].shape for p in tr.pyramid.pairs] == [(20, 30, 3), (14, 21, 3), (8, 12, 3)]
    for blurry, sharp in tr.pyramid.pairs:
        assert blurry.shape == sharp.shape and not np.array_equal(blurry, sharp)


def test_policy_divides_the_rate_when_the_error_stops_falling():
    cfg = TrainConfig.make("zssr", eval_every=10, policy_check_every=20, slope_range=40, iters=1000, schedule="policy")
    tr = Trainer(image(), cfg)
    tr.evals = {"iter": [10, 20, 30, 40, 50, 60], "recon": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
                "lr": [1e-3] * 6, "psnr": [np.nan] * 6}
    tr.iteration = 60
    tr._policy()
    assert tr.opt.lr == pytest.approx(1e-4) and tr.lr_change_iter == 60
    tr.iteration, tr.lr_change_iter = 60, 0
    tr.opt.lr = 1e-3
    tr.evals["recon"] = [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]  # clearly falling: keep the rate
    tr._policy()
    assert tr.opt.lr == 1e-3


def test_stops_when_the_rate_falls_below_the_minimum():
    cfg = TrainConfig.make("zssr", iters=500, min_iters=5, crop=16, eval_every=5, policy_check_every=5,
                           slope_range=20, lr=2e-5, min_lr=1e-5, schedule="policy")
    tr = Trainer(image(), cfg).run()
    assert tr.stop_reason == "learning rate below the minimum" and tr.iteration < 500


def test_a_dead_network_is_reinitialised():
    """Biases so negative that every ReLU is off: the output is the input whatever the
    weights, the reconstruction error is flat from the start; the trainer re-initialises."""
    cfg = TrainConfig.make("zssr", bias=True, iters=40, crop=16, eval_every=5, schedule="constant")
    tr = Trainer(image(), cfg)
    for b in tr.net.biases[:-1]:
        b[...] = -100.0
    tr.run()
    assert any("network dead" in e and "re-initialised" in e for e in tr.events), tr.events
    assert tr.iteration == 40 and np.all(tr.net.biases[0] > -100.0) and not tr.net.dead_layers()


def test_divergence_rolls_back_and_lowers_the_rate():
    """A rate far too high: the loss overflows; the trainer rolls back to the last healthy
    state, each time with a rate ten times lower, until training is stable again."""
    cfg = TrainConfig.make("zssr", iters=40, crop=16, eval_every=5, schedule="constant", optimizer="sgd",
                           momentum=0.0, loss="sse", lr=1e4)
    tr = Trainer(image(), cfg)
    tr.run()
    rates = [float(e.rsplit("-> ", 1)[1]) for e in tr.events if "rolled back" in e]
    assert rates and rates == sorted(rates, reverse=True) and len(set(rates)) == len(rates), tr.events
    assert all(np.all(np.isfinite(p)) for p in tr.net.params)
    assert np.isfinite(tr.history["loss"][-1]) and tr.opt.lr < 1e4


def test_cosine_schedule_goes_from_lr_to_min_lr():
    cfg = TrainConfig.make("zssr", iters=30, crop=16, eval_every=10, lr=1e-3, min_lr=1e-5)
    assert cfg.schedule == "cosine"
    rates = []
    tr = Trainer(image(), cfg)
    tr.run(lambda t: rates.append(t.opt.lr))
    assert tr.iteration == 30 and tr.stop_reason == "iterations done"
    assert rates[0] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-5)
    assert all(a >= b for a, b in zip(rates, rates[1:])) and rates[15] == pytest.approx(5.05e-4, rel=0.06)
    with pytest.raises(UserError, match="schedule"):
        TrainConfig.make("zssr", schedule="sawtooth")
    with pytest.raises(UserError, match="gradual"):
        TrainConfig.make("zssr", gradual=0)


def test_warm_start_copies_the_weights():
    cfg = TrainConfig.make("zssr", iters=5, crop=16, eval_every=0)
    a = Trainer(image(), cfg).run()
    b = Trainer(image(), TrainConfig.make("zssr", iters=5, crop=16, eval_every=0, seed=7, scale=1.5), start=a.net)
    assert all(np.array_equal(p, q) for p, q in zip(a.net.params, b.net.params))
    assert all(p is not q for p, q in zip(a.net.params, b.net.params))


def test_divergence_under_the_cosine_schedule_lowers_its_scale():
    """The cosine schedule sets the rate every iteration: recovery lowers the schedule's
    factor, so the lower rate holds."""
    cfg = TrainConfig.make("zssr", iters=40, crop=16, eval_every=5, optimizer="sgd", momentum=0.0, loss="sse",
                           lr=1e4)
    tr = Trainer(image(), cfg)
    tr.run()
    recoveries = [e for e in tr.events if "re-initialised" in e or "rolled back" in e]
    assert recoveries and tr.lr_scale == pytest.approx(10.0 ** -len(recoveries)), tr.events
    assert all(np.all(np.isfinite(p)) for p in tr.net.params) and np.isfinite(tr.history["loss"][-1])
