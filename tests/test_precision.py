"""The inference precision (conv3x3.set_precision, --precision, ZSSR_PRECISION): inference's
wide layers use bfloat16 products by default on AVX-512 BF16 CPUs, float32 elsewhere or when
asked; training and its checks stay float32 whatever the setting. (conftest.py makes every
other test run float32 inference.)"""
import numpy as np
import pytest
from PIL import Image

import zssr
from zssr.engine.batch import upscale_task
from zssr.engine.infer import apply_network
from zssr.engine.kernels import conv3x3 as K
from zssr.engine.kernels import gemm_bf16
from zssr.engine.network import Network

needs_bf16 = pytest.mark.skipif(not gemm_bf16.supported(), reason="no AVX-512 BF16 on this CPU")
FAST = ("--preset", "fast", "--iters", "12")


def he_net(depth=8, width=64):
    # He-initialised: outputs of the order of the inputs, so that bfloat16's error shows
    return Network(width=width, depth=depth, seed=1, init="he")


def image(h=20, w=23, seed=0):
    return np.random.default_rng(seed).random((h, w, 3), dtype=np.float32)


def no_bf16(monkeypatch):
    monkeypatch.setattr(gemm_bf16, "supported", lambda: False)


def test_set_precision_choices(monkeypatch):
    assert K.set_precision("float32") == "float32" and K.AUTO_INFERENCE == "auto"
    assert K.set_precision("auto") == ("bfloat16" if gemm_bf16.supported() else "float32")
    with pytest.raises(ValueError, match="precision must be one of auto, float32, bfloat16"):
        K.set_precision("half")
    no_bf16(monkeypatch)
    assert K.set_precision("auto") == "float32" and K.inference_precision() == "float32"
    with pytest.raises(ValueError, match="not available here: .*AVX-512 BF16"):
        K.set_precision("bfloat16")
    assert K.AUTO_INFERENCE == "auto"  # a refusal changes nothing


@needs_bf16
def test_auto_uses_bfloat16_for_large_results_only(monkeypatch):
    """Under "auto", a result below BF16_MIN_PIXELS is upscaled with float32 products
    (bitwise as --precision float32); at or above it, with bfloat16 ones. An explicit
    "bfloat16" holds at every size."""
    from zssr.engine.infer import super_resolve

    assert K.set_precision("auto") == "bfloat16"
    n = K.BF16_MIN_PIXELS
    assert K.inference_precision(n - 1) == "float32" and K.inference_precision(n) == "bfloat16"
    net, x = he_net(depth=4), image(12, 14)
    K.set_precision("float32")
    ref = super_resolve(net, x, scale=2, ensemble=False, back_projection=0)
    K.set_precision("auto")
    assert np.array_equal(super_resolve(net, x, scale=2, ensemble=False, back_projection=0), ref)
    monkeypatch.setattr(K, "BF16_MIN_PIXELS", 24 * 28)  # the result's size: now "large"
    big = super_resolve(net, x, scale=2, ensemble=False, back_projection=0)
    assert not np.array_equal(big, ref) and np.abs(big - ref).max() < 0.1
    monkeypatch.setattr(K, "BF16_MIN_PIXELS", 10 ** 9)
    K.set_precision("bfloat16")
    assert K.inference_precision(1) == "bfloat16"
    assert np.array_equal(super_resolve(net, x, scale=2, ensemble=False, back_projection=0), big)


def test_float64_networks_and_explicit_algorithms_ignore_the_precision():
    assert K.inference_algorithm("auto", np.float32) == "auto"  # conftest: float32
    if gemm_bf16.supported():
        K.set_precision("bfloat16")
        assert K.inference_algorithm("auto", np.float32) == "winograd4bf16"
    assert K.inference_algorithm("auto", np.float64) == "auto"
    assert K.inference_algorithm("winograd4", np.float32) == "winograd4"


@needs_bf16
def test_predict_uses_bfloat16_products_and_exact_keeps_float32():
    net, x = he_net(), image()
    ref = net.predict(x).copy()                  # conftest: float32 inference
    K.set_precision("bfloat16")
    bf = net.predict(x).copy()
    assert np.array_equal(net.predict(x, exact=True), ref)
    net.algorithm = "winograd4"                  # an explicit choice stays
    assert np.array_equal(net.predict(x), ref)
    net.algorithm = "auto"
    # bfloat16 keeps 8 significant bits: through eight random He-initialised layers the
    # network's part (the output less the residual input) is off by ~5% of its rms
    # (measured 4.9%); trained networks lose ~0.004 dB (README)
    err, part = bf - ref, ref - x
    assert not np.array_equal(bf, ref)
    assert np.sqrt(np.mean(err ** 2)) < 0.1 * np.sqrt(np.mean(part ** 2))
    assert np.abs(err).max() < 0.25 * np.abs(part).max()


@needs_bf16
@pytest.mark.parametrize("ensemble", [False, True])
def test_bfloat16_tiled_is_bitwise_untiled(ensemble):
    K.set_precision("bfloat16")
    net, x = he_net(depth=4), image(seed=2)
    ref = apply_network(net, x, ensemble=ensemble)
    for tile in (1, 5, 8, 11, 64):
        assert np.array_equal(apply_network(net, x, ensemble=ensemble, tile=tile), ref), tile


@needs_bf16
def test_training_is_the_same_whatever_the_inference_precision():
    """The reconstruction checks made while training use the training's float32 products:
    the weights do not depend on the inference precision; the upscaled image does, a little."""
    img = image(32, 36, seed=4)
    opts = dict(iters=120, seed=3)  # reconstruction checks every 50 iterations
    K.set_precision("float32")
    a = zssr.train(img, 2, "fast", **opts)
    K.set_precision("bfloat16")
    b = zssr.train(img, 2, "fast", **opts)
    assert all(np.array_equal(p, q) for p, q in zip(a.net.params, b.net.params))
    assert a.trainer.evals["recon"] == b.trainer.evals["recon"]
    K.set_precision("float32")
    up32 = zssr.upscale(img, 2, "fast", iters=12)
    upbf = zssr.upscale(img, 2, "fast", iters=12, precision="bfloat16")
    assert K.AUTO_INFERENCE == "auto"  # the call's precision is restored after it
    assert up32.shape == upbf.shape == (64, 72, 3)
    assert np.abs(up32 - upbf).max() < 0.05


def test_api_refuses_an_unknown_or_unavailable_precision(monkeypatch):
    with pytest.raises(zssr.UserError, match="precision"):
        zssr.upscale(image(), 2, "fast", iters=2, precision="fp8")
    no_bf16(monkeypatch)
    with pytest.raises(zssr.UserError, match="not available here"):
        zssr.upscale(image(), 2, "fast", iters=2, precision="bfloat16")


@pytest.mark.parametrize("how", ["flag", "env", "unavailable"])
def test_cli_refuses_a_bad_precision_in_one_line_and_writes_nothing(run_cli, small_rgb, tmp_path, monkeypatch, how):
    out = tmp_path / "up.png"
    args = ["upscale", small_rgb, "-o", out, *FAST]
    if how == "flag":
        args += ["--precision", "double"]
        want = "--precision: precision must be one of auto, float32, bfloat16, got 'double'"
    elif how == "env":
        monkeypatch.setenv("ZSSR_PRECISION", "int8")
        want = "ZSSR_PRECISION: precision must be one of"
    else:
        no_bf16(monkeypatch)
        args += ["--precision", "bfloat16"]
        want = "--precision: --precision bfloat16 is not available here"
    code, stdout, stderr = run_cli(*args)
    assert code == 2 and want in stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert not out.exists()


@needs_bf16
def test_cli_upscales_alike_in_bfloat16_and_float32_and_says_which(run_cli, small_rgb, tmp_path):
    """(The job's later networks learn from the earlier ones' results, so of the whole job
    only the first network's training is independent of the inference precision.)"""
    outs = {}
    for p in ("float32", "bfloat16"):
        out = tmp_path / f"{p}.png"
        code, stdout, stderr = run_cli("upscale", small_rgb, "-o", out, *FAST, "--precision", p)
        assert code == 0, stderr
        assert f"inference in {p} products" in stdout
        outs[p] = np.asarray(Image.open(out)).astype(int)
    diff = np.abs(outs["float32"] - outs["bfloat16"])
    assert diff.max() <= 8 and diff.mean() < 1.0


def test_a_worker_without_bfloat16_reports_the_image_and_goes_on(small_rgb, monkeypatch):
    from zssr.engine.train import TrainConfig

    no_bf16(monkeypatch)
    cfg = TrainConfig.make("fast", iters=2)
    opts = dict(kernel=None, steps=1, ensemble=False, back_projection=0, tile=None, max_memory=None,
                precision="bfloat16")
    r = upscale_task("small.png", small_rgb.read_bytes(), cfg, opts, {}, "in", "out")
    assert not r["ok"] and "not available here" in r["error"]
    r = upscale_task("small.png", small_rgb.read_bytes(), cfg, dict(opts, precision="auto"), {}, "in", "out")
    assert r["ok"] and r["data"]
