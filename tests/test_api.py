"""The Python API (`zssr.upscale`, `zssr.train`, `zssr.load_model`): arrays in and out as
they came, the same results as the commands, one-line errors; the installed names."""
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import zssr

FAST = dict(iters=4, crop=16)
RNG = np.random.default_rng(11)
RGB8 = RNG.integers(0, 256, (20, 24, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def model():
    return zssr.train(RGB8, scale=2, preset="fast", **FAST)


def test_upscale_is_what_the_command_writes(run_cli, tmp_path):
    src, out = tmp_path / "in.png", tmp_path / "out.png"
    Image.fromarray(RGB8).save(src)
    opts = ["--preset", "fast", "--iters", "4", "--crop", "16"]
    code, _, stderr = run_cli("upscale", src, "-o", out, *opts)
    assert code == 0, stderr
    sr = zssr.upscale(RGB8, scale=2, preset="fast", **FAST)
    assert sr.dtype == np.uint8 and sr.shape == (40, 48, 3)
    assert np.array_equal(sr, np.asarray(Image.open(out)))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(20, 24), (20, 24, 1), (20, 24, 2), (20, 24, 3), (20, 24, 4)])
def test_arrays_come_back_as_they_came(model, dtype, shape):
    c = shape[2] if len(shape) == 3 else 1
    base = RNG.random((20, 24, c))
    if np.issubdtype(dtype, np.integer):
        img = np.round(base * np.iinfo(dtype).max).astype(dtype)
    else:
        img = base.astype(dtype)
    img = img.reshape(shape)
    sr = model.upscale(img, scale=2)
    assert sr.dtype == dtype and sr.shape == (40, 48) + shape[2:]
    top = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1.0
    # the colour channels: the same as upscaling the float RGB image (grey: their mean)
    rgb = (img.reshape(20, 24, c)[:, :, :1 if c <= 2 else 3] / top).astype(np.float32)
    want = model.upscale(np.ascontiguousarray(np.broadcast_to(rgb, (20, 24, 3))) if c <= 2 else rgb, scale=2)
    if c <= 2:
        want = want.mean(axis=2, keepdims=True)
    got = sr.reshape(40, 48, -1)[:, :, :want.shape[2]] / top
    np.testing.assert_allclose(got, want, atol=0.5 / top + 1e-6)
    if c in (2, 4):  # alpha: bicubic, clipped
        from zssr.engine.kernels.resize import resize

        a = np.clip(resize((img.reshape(20, 24, c)[:, :, -1] / top).astype(np.float32), shape=(40, 48)), 0, 1)
        np.testing.assert_allclose(sr.reshape(40, 48, c)[:, :, -1] / top, a, atol=0.5 / top + 1e-6)


def test_train_save_load_and_the_seed_loop(model, tmp_path, run_cli):
    assert model.preset == "fast" and "iterations=4" in repr(model)
    path = model.save(tmp_path / "m.npz")
    again = zssr.load_model(path)
    assert np.array_equal(again.upscale(RGB8, scale=2), model.upscale(RGB8, scale=2))
    # the same as `zssr infer`
    src, out = tmp_path / "in.png", tmp_path / "sr.png"
    Image.fromarray(RGB8).save(src)
    assert run_cli("infer", src, "-m", path, "-o", out, "--scale", "3", "--steps", "2")[0] == 0
    assert np.array_equal(np.asarray(Image.open(out)), again.upscale(RGB8, scale=3, steps=2))
    seed = zssr.train(RGB8, preset="seed", epochs=1)
    assert seed.preset == "seed" and seed.upscale(RGB8, size=(30, 50)).shape == (30, 50, 3)


def test_resume_continues_exactly(tmp_path):
    whole = zssr.train(RGB8, preset="fast", iters=6, crop=16)
    def stop_at_3(t):
        if t.iteration == 3:
            t.stop_requested = True  # as Ctrl-C does in `zssr train`

    half = zssr.train(RGB8, preset="fast", iters=6, crop=16, callback=stop_at_3)
    assert half.trainer.iteration == 3
    half.save(tmp_path / "half.npz")
    rest = zssr.train(RGB8, preset="fast", iters=6, crop=16, resume=tmp_path / "half.npz")
    assert rest.trainer.iteration == 6
    assert all(np.array_equal(a, b) for a, b in zip(whole.net.params, rest.net.params))


@pytest.mark.parametrize("bad,match", [
    (np.zeros((8, 8), np.int32), "uint8, uint16 or float"),
    (np.zeros((8, 8, 5), np.uint8), "C in 1..4"),
    (np.full((8, 8, 3), np.nan, np.float32), "NaN"),
    (np.full((8, 8, 3), 2.0), r"\[0, 1\]"),
])
def test_bad_arrays_are_one_line_errors(bad, match):
    with pytest.raises(zssr.UserError, match=match) as info:
        zssr.upscale(bad, iters=1)
    assert "\n" not in str(info.value) and isinstance(info.value, ValueError)


def test_bad_options_and_budget_are_one_line_errors():
    with pytest.raises(zssr.UserError, match="unknown option.*itres"):
        zssr.train(RGB8, itres=5)
    with pytest.raises(zssr.UserError, match="unknown preset"):
        zssr.upscale(RGB8, preset="best")
    with pytest.raises(zssr.UserError, match="--max-memory"):
        zssr.upscale(RGB8, max_memory=0.01, **FAST)


def test_installed_names(tmp_path):
    """zssr, zssr.engine, zssr.cli import from anywhere; no top-level engine or cli is
    installed; the console script is zssr.cli.main:main; importing zssr loads no numba."""
    from importlib.metadata import entry_points

    code = ("import importlib.util as u, sys, zssr, zssr.cli.main; "
            "assert 'numba' not in sys.modules; import zssr.engine; "
            "print(u.find_spec('engine'), u.find_spec('cli'), zssr.engine.__name__, zssr.cli.main.__name__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["None", "None", "zssr.engine", "zssr.cli.main"]
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "zssr"]
    assert script.value == "zssr.cli.main:main"
    out = subprocess.run([sys.executable, "-m", "zssr.cli.main", "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0 and "upscale" in out.stdout


# --------------------------------------------------------------------------- blind: degrade, estimate


def _scene(n=96, seed=2):
    from test_blind import scene

    return (scene(n, seed=seed) * 255).round().astype(np.uint8)


def test_degrade_is_what_the_command_writes(run_cli, tmp_path):
    hr = _scene()
    src, lr_path, k_path = tmp_path / "hr.png", tmp_path / "lr.png", tmp_path / "k.npy"
    Image.fromarray(hr).save(src)
    code, _, stderr = run_cli("degrade", src, "-o", lr_path, "--seed", "3", "--save-kernel", k_path)
    assert code == 0, stderr
    lr, k = zssr.degrade(hr, 2, seed=3)
    assert lr.dtype == np.uint8 and lr.shape == (48, 48, 3)
    np.testing.assert_array_equal(lr, np.asarray(Image.open(lr_path)))
    np.testing.assert_array_equal(k, np.load(k_path))
    # a Gaussian given by spec and the same as an array; noise is drawn from the seed
    lg, kg = zssr.degrade(hr, 2, "gaussian:2,0.7,0.5")
    la, ka = zssr.degrade(hr, 2, kg)
    np.testing.assert_array_equal(lg, la)
    assert kg.shape == (13, 13) and abs(kg.sum() - 1) < 1e-12
    n1, _ = zssr.degrade(hr, 2, kg, seed=5, noise=0.02)
    n2, _ = zssr.degrade(hr, 2, kg, seed=5, noise=0.02)
    assert np.array_equal(n1, n2) and not np.array_equal(n1, la)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("channels", [None, 1, 2, 4])
def test_degrade_keeps_layout_and_blurs_alpha_alike(dtype, channels):
    base = _scene().astype(np.float64) / 255
    x = base[:, :, 0] if channels is None else (base[:, :, :channels] if channels != 4 else
                                               np.concatenate([base, base[:, :, :1]], axis=2))
    if dtype == np.uint8:
        x = np.round(x * 255).astype(np.uint8)
    elif dtype == np.uint16:
        x = np.round(x * 65535).astype(np.uint16)
    else:
        x = x.astype(dtype)
    lr, k = zssr.degrade(x, 2, "gaussian:1.5,1.5,0")
    assert lr.dtype == dtype and lr.shape == (48, 48) + (() if channels is None else (channels,))
    if channels == 4:  # alpha went through the same blur as the channel it copies
        np.testing.assert_array_equal(lr[:, :, 3], lr[:, :, 0])


@pytest.mark.parametrize("kwargs,match", [
    (dict(kernel="box"), "kernel must be 'random'"),
    (dict(kernel=np.full((3, 3), np.nan)), "NaN"),
    (dict(kernel=np.ones(5)), "2-D"),
    (dict(kernel=-np.ones((3, 3))), "positive sum"),
    (dict(scale=1), "integer >= 2"),
    (dict(scale=2.5), "integer >= 2"),
    (dict(noise=-0.1), "noise must be >= 0"),
])
def test_degrade_refuses_bad_arguments_in_one_line(kwargs, match):
    with pytest.raises(zssr.UserError, match=match) as info:
        zssr.degrade(_scene(), **kwargs)
    assert "\n" not in str(info.value)


def test_estimate_kernel_and_upscale_with_it_as_the_command(run_cli, tmp_path):
    lr, _ = zssr.degrade(_scene(192, seed=4), 2, "gaussian:2.2,0.7,1.2")
    est = zssr.estimate_kernel(lr, 2)
    assert not est.bicubic and est.sigma1 > 1.8 * est.sigma2 and est.kernel.shape == (13, 13)
    assert abs((est.theta - 1.2 + np.pi / 2) % np.pi - np.pi / 2) < 0.2
    np.testing.assert_array_equal(zssr.estimate_kernel(lr, 2).kernel, est.kernel)  # deterministic
    assert "Gaussian sigma" in est.summary()
    src, out = tmp_path / "lr.png", tmp_path / "sr.png"
    Image.fromarray(lr).save(src)
    code, _, stderr = run_cli("upscale", src, "-o", out, "--preset", "fast", "--iters", "4", "--crop", "16",
                              "--kernel", "estimate")
    assert code == 0, stderr
    sr = zssr.upscale(lr, 2, "fast", kernel="estimate", **FAST)
    np.testing.assert_array_equal(sr, np.asarray(Image.open(out)))
    assert not np.array_equal(sr, zssr.upscale(lr, 2, "fast", **FAST))  # the kernel was used
    model = zssr.train(lr, 2, "fast", kernel="estimate", **FAST)
    assert model.trainer.iteration == 4


def test_kernel_argument_errors_are_one_line():
    with pytest.raises(zssr.UserError, match="kernel must be None, 'estimate' or a 2-D array"):
        zssr.upscale(RGB8, kernel="estimated", **FAST)
    with pytest.raises(zssr.UserError, match="larger than the image"):
        zssr.upscale(RGB8, kernel=np.ones((31, 31)), **FAST)
    with pytest.raises(zssr.UserError, match="steps must be an integer >= 1"):
        zssr.upscale(RGB8, steps=0, **FAST)
