"""The seed preset's test loop, exactly: the network sharpens the image itself first, then
(bicubic up, sharpen) at every step; the zssr and fast presets start with the bicubic step."""
import numpy as np
import pytest
from PIL import Image

import zssr.engine.infer as infer


@pytest.fixture
def passes(monkeypatch):
    """The input shape of every network pass (apply_network call)."""
    seen = []
    real = infer.apply_network

    def counting(net, img, *args, **kwargs):
        seen.append(img.shape[:2])
        return real(net, img, *args, **kwargs)

    monkeypatch.setattr(infer, "apply_network", counting)
    return seen


@pytest.fixture
def models(run_cli, small_rgb, tmp_path):
    seed, zssr_ = tmp_path / "seed.npz", tmp_path / "zssr.npz"
    assert run_cli("train", small_rgb, "-o", seed, "--preset", "seed", "--epochs", "1")[0] == 0
    assert run_cli("train", small_rgb, "-o", zssr_, "--iters", "2", "--crop", "16")[0] == 0
    return {"seed": seed, "zssr": zssr_}


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_infer_steps_k_applies_the_seed_network_k_plus_1_times(run_cli, small_rgb, models, passes, tmp_path, steps):
    out = tmp_path / "sr.png"
    code, _, stderr = run_cli("infer", small_rgb, "-m", models["seed"], "-o", out, "--scale", str(2 ** steps),
                              "--steps", str(steps))
    assert code == 0, stderr
    # first at the image's own size (40x48), then once per step at the step's size
    assert passes == [(40 * 2 ** i, 48 * 2 ** i) for i in range(steps + 1)]
    assert Image.open(out).size == (48 * 2 ** steps, 40 * 2 ** steps)


def test_zssr_models_start_with_the_bicubic_step(run_cli, small_rgb, models, passes, tmp_path):
    code, _, stderr = run_cli("infer", small_rgb, "-m", models["zssr"], "-o", tmp_path / "sr.png", "--scale", "4",
                              "--steps", "2", "--no-ensemble")
    assert code == 0, stderr
    assert passes == [(80, 96), (160, 192)]


def test_upscale_seed_preset_sharpens_first_too(run_cli, small_rgb, passes, tmp_path):
    out = tmp_path / "x4.png"
    code, _, stderr = run_cli("upscale", small_rgb, "-o", out, "-s", "4", "--steps", "2", "--preset", "seed",
                              "--epochs", "1")
    assert code == 0, stderr
    assert passes == [(40, 48), (80, 96), (160, 192)]


def test_seed_loop_is_the_network_on_the_image_then_super_resolve():
    from zssr.engine.network import Network

    net = Network(width=8, depth=3, seed=1)
    lr = np.random.default_rng(0).random((20, 24, 3)).astype(np.float32)
    first = np.clip(infer.apply_network(net, lr), 0, 1)
    want = infer.super_resolve(net, first, scale=2, steps=1, ensemble=False, back_projection=0)
    got = infer.seed_loop(net, lr, scale=2, steps=1, ensemble=False, back_projection=0)
    assert np.array_equal(got, want)
    assert not np.array_equal(got, infer.super_resolve(net, lr, scale=2, steps=1, ensemble=False, back_projection=0))


def test_infer_help_says_each_presets_loop(run_cli):
    code, stdout, _ = run_cli("infer", "--help")
    assert code == 0
    text = " ".join(stdout.split())
    assert "zssr and fast" in text and "seed" in text and "--steps + 1 times" in text
