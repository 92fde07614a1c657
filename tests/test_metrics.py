"""The evaluation protocol: modcrop, BT.601 luma, uint8 quantisation, PSNR/SSIM on Y."""

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from zssr.engine.errors import UserError
from zssr.engine.metrics import (
    evaluate_pair,
    modcrop,
    psnr,
    psnr_y,
    quantize,
    rgb_to_y,
    ssim_y,
)

SUM_W = 65.481 + 128.553 + 24.966  # = 219: Y of white is 16 + 219 = 235


def rand_image(rng, h=48, w=40, c=3):
    return rng.random((h, w, c)).astype(np.float32)


def grey(level, h=32, w=32, c=3):
    """A uniform image at uint8 level ``level`` (float32 in [0, 1])."""
    return np.full((h, w, c), level / 255.0, dtype=np.float32)


# ----------------------------------------------------------------------------- rgb_to_y


@pytest.mark.parametrize(
    "rgb, y",
    [
        ((1.0, 1.0, 1.0), 235.0),
        ((0.0, 0.0, 0.0), 16.0),
        ((1.0, 0.0, 0.0), 16.0 + 65.481),
        ((0.0, 1.0, 0.0), 16.0 + 128.553),
        ((0.0, 0.0, 1.0), 16.0 + 24.966),
        ((0.5, 0.25, 0.75), 16.0 + 65.481 * 0.5 + 128.553 * 0.25 + 24.966 * 0.75),
    ],
)
def test_rgb_to_y_known_colours(rgb, y):
    img = np.empty((3, 4, 3), dtype=np.float32)
    img[:] = rgb
    out = rgb_to_y(img)
    assert out.shape == (3, 4)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, y, rtol=0, atol=1e-5)


def test_rgb_to_y_grey_counts_as_r_equals_g_equals_b():
    rng = np.random.default_rng(0)
    g = rng.random((5, 7))
    rgb = np.repeat(g[:, :, None], 3, axis=2)
    np.testing.assert_allclose(rgb_to_y(g), rgb_to_y(rgb), rtol=0, atol=1e-12)
    np.testing.assert_allclose(rgb_to_y(g[:, :, None]), rgb_to_y(rgb), rtol=0, atol=1e-12)
    np.testing.assert_allclose(rgb_to_y(g), 16.0 + SUM_W * g, rtol=0, atol=1e-12)


def test_rgb_to_y_rejects_other_channel_counts():
    with pytest.raises(UserError):
        rgb_to_y(np.zeros((4, 4, 4), dtype=np.float32))
    with pytest.raises(UserError):
        rgb_to_y(np.zeros((4,), dtype=np.float32))


# ----------------------------------------------------------------------------- quantize


def test_quantize_rounds_to_levels_and_clips():
    x = np.array([-0.2, 0.0, 0.3 / 255, 0.7 / 255, 100.4 / 255, 1.0, 1.3], dtype=np.float32)
    q = quantize(x)
    assert q.dtype == np.float32
    np.testing.assert_allclose(q * 255, [0, 0, 0, 1, 100, 255, 255], rtol=0, atol=1e-4)
    assert quantize(x.astype(np.float64)).dtype == np.float64


def test_quantize_is_idempotent():
    rng = np.random.default_rng(1)
    q = quantize(rand_image(rng))
    np.testing.assert_array_equal(quantize(q), q)


# ----------------------------------------------------------------------------- PSNR


def test_psnr_one_level_of_y_everywhere_is_48_13_db():
    y = np.full((20, 30), 100.0)
    value = psnr(y + 1.0, y)
    assert value == pytest.approx(10 * math.log10(255.0**2), abs=1e-12)
    assert value == pytest.approx(48.13, abs=0.005)


def test_psnr_y_uniform_grey_error():
    # One grey level everywhere moves Y by 219/255 exactly.
    value = psnr_y(grey(101), grey(100), border=2)
    expected = 20 * math.log10(255.0 / (SUM_W / 255.0))
    assert value == pytest.approx(expected, abs=1e-9)
    assert value == pytest.approx(49.45, abs=0.005)


def test_psnr_y_uniform_red_error():
    # One level of red only moves Y by 65.481/255.
    a = grey(100)
    b = a.copy()
    b[:, :, 0] = 103 / 255.0
    value = psnr_y(b, a, border=0)
    expected = 20 * math.log10(255.0 / (3 * 65.481 / 255.0))
    assert value == pytest.approx(expected, abs=1e-9)


def test_psnr_identical_is_inf_and_sub_level_differences_vanish():
    rng = np.random.default_rng(2)
    hr = quantize(rand_image(rng))
    assert psnr_y(hr, hr, 2) == math.inf
    # Less than half a level of difference rounds away.
    assert psnr_y(hr + np.float32(0.3 / 255), hr, 2) == math.inf
    assert psnr(hr, hr) == math.inf


def test_psnr_y_matches_skimage_on_y():
    rng = np.random.default_rng(3)
    hr = rand_image(rng, 50, 46)
    sr = np.clip(hr + rng.normal(0, 0.05, hr.shape), 0, 1).astype(np.float32)
    for border in (0, 2, 3):
        ys = rgb_to_y(quantize(sr.astype(np.float64)))
        yh = rgb_to_y(quantize(hr.astype(np.float64)))
        if border:
            ys = ys[border:-border, border:-border]
            yh = yh[border:-border, border:-border]
        ref = peak_signal_noise_ratio(yh, ys, data_range=255)
        assert psnr_y(sr, hr, border) == pytest.approx(ref, abs=1e-9)


def test_uint8_input_equals_float_input():
    rng = np.random.default_rng(4)
    hr8 = (rng.random((40, 36, 3)) * 255).round().astype(np.uint8)
    sr8 = np.clip(hr8.astype(int) + rng.integers(-6, 7, hr8.shape), 0, 255).astype(np.uint8)
    hrf = hr8.astype(np.float32) / 255
    srf = sr8.astype(np.float32) / 255
    assert psnr_y(sr8, hr8, 2) == pytest.approx(psnr_y(srf, hrf, 2), abs=1e-9)
    assert ssim_y(sr8, hr8, 2) == pytest.approx(ssim_y(srf, hrf, 2), abs=1e-12)


# ----------------------------------------------------------------------------- border


def test_border_cropping_removes_an_error_confined_to_the_border():
    rng = np.random.default_rng(5)
    hr = quantize(rand_image(rng, 40, 44))
    sr = hr.copy()
    b = 3
    sr[:b] = 1 - sr[:b]
    sr[-b:] = 1 - sr[-b:]
    sr[:, :b] = 1 - sr[:, :b]
    sr[:, -b:] = 1 - sr[:, -b:]
    assert psnr_y(sr, hr, b) == math.inf
    assert math.isfinite(psnr_y(sr, hr, b - 1))
    assert math.isfinite(psnr_y(sr, hr, 0))
    assert psnr_y(sr, hr, b - 1) > psnr_y(sr, hr, 0)
    assert ssim_y(sr, hr, b) == pytest.approx(1.0, abs=1e-12)
    assert ssim_y(sr, hr, 0) < 0.99
    assert evaluate_pair(sr, hr, b)["psnr"] == math.inf


def test_border_too_large_raises():
    img = grey(10, 10, 10)
    with pytest.raises(UserError):
        psnr_y(img, img, 5)
    with pytest.raises(UserError):
        psnr_y(img, img, -1)


# ----------------------------------------------------------------------------- SSIM


def test_ssim_identical_is_one():
    rng = np.random.default_rng(6)
    hr = rand_image(rng)
    assert ssim_y(hr, hr, 2) == pytest.approx(1.0, abs=1e-12)


def test_ssim_uniform_images_follow_the_luminance_term():
    # Two flat images: only the luminance term is left, with C1 = (0.01 * 255)^2.
    a = 16 + SUM_W * 100 / 255
    b = 16 + SUM_W * 130 / 255
    c1 = (0.01 * 255) ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert ssim_y(grey(130), grey(100), 2) == pytest.approx(expected, abs=1e-9)


def test_ssim_decreases_with_noise_and_matches_skimage():
    rng = np.random.default_rng(7)
    hr = rand_image(rng, 48, 48)
    values = []
    for sigma in (0.01, 0.05, 0.2):
        sr = np.clip(hr + rng.normal(0, sigma, hr.shape), 0, 1)
        values.append(ssim_y(sr, hr, 2))
    assert 1 > values[0] > values[1] > values[2]
    ys = rgb_to_y(quantize(sr))[2:-2, 2:-2]
    yh = rgb_to_y(quantize(hr.astype(np.float64)))[2:-2, 2:-2]
    ref = structural_similarity(
        ys, yh, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=255,
    )
    assert values[2] == pytest.approx(ref, abs=1e-12)


def test_ssim_too_small_raises():
    img = grey(50, 14, 14)
    with pytest.raises(UserError):
        ssim_y(img, img, 2)


# ----------------------------------------------------------------------------- modcrop


@pytest.mark.parametrize(
    "shape, scale, expected",
    [
        ((101, 203, 3), 4, (100, 200, 3)),
        ((101, 203), 2, (100, 202)),
        ((96, 96, 3), 3, (96, 96, 3)),
        ((7, 9, 1), 1, (7, 9, 1)),
        ((11, 12, 3), 2.0, (10, 12, 3)),
    ],
)
def test_modcrop_shapes(shape, scale, expected):
    img = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    out = modcrop(img, scale)
    assert out.shape == expected
    np.testing.assert_array_equal(out, img[: expected[0], : expected[1]])


@pytest.mark.parametrize("scale", [0, -2, 1.5, True, "2", None])
def test_modcrop_bad_scale(scale):
    with pytest.raises(UserError):
        modcrop(np.zeros((8, 8, 3), dtype=np.float32), scale)


def test_modcrop_image_smaller_than_scale():
    with pytest.raises(UserError):
        modcrop(np.zeros((3, 8, 3), dtype=np.float32), 4)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("func", [psnr_y, ssim_y])
def test_mismatched_shapes_raise(func):
    a = np.zeros((32, 32, 3), dtype=np.float32)
    b = np.zeros((32, 30, 3), dtype=np.float32)
    with pytest.raises(UserError, match="same shape"):
        func(a, b, 2)
    with pytest.raises(UserError):
        func(a, a[:, :, :1], 2)


def test_evaluate_pair_mismatch_and_is_value_error():
    a = np.zeros((32, 32, 3), dtype=np.float32)
    with pytest.raises(ValueError):
        evaluate_pair(a, a[:31], 2)
    with pytest.raises(UserError):
        evaluate_pair(a, a, 0)


def test_nan_and_bad_dtype_raise():
    a = np.zeros((16, 16, 3), dtype=np.float32)
    b = a.copy()
    b[3, 3, 1] = np.nan
    with pytest.raises(UserError):
        psnr_y(b, a, 1)
    with pytest.raises(UserError):
        psnr_y(a.astype(np.uint16), a.astype(np.uint16), 1)


def test_user_error_messages_are_one_line():
    a = np.zeros((32, 32, 3), dtype=np.float32)
    for call in (
        lambda: psnr_y(a, a[:30], 2),
        lambda: ssim_y(a[:12, :12], a[:12, :12], 1),
        lambda: modcrop(a, 0),
    ):
        with pytest.raises(UserError) as info:
            call()
        assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- evaluate_pair


def test_evaluate_pair_uses_border_equal_to_scale():
    rng = np.random.default_rng(8)
    hr = modcrop(rand_image(rng, 51, 47), 3)
    sr = np.clip(hr + rng.normal(0, 0.03, hr.shape), 0, 1).astype(np.float32)
    out = evaluate_pair(sr, hr, 3)
    assert set(out) == {"psnr", "ssim"}
    assert isinstance(out["psnr"], float) and isinstance(out["ssim"], float)
    assert out["psnr"] == pytest.approx(psnr_y(sr, hr, 3), abs=1e-12)
    assert out["ssim"] == pytest.approx(ssim_y(sr, hr, 3), abs=1e-12)
    assert out["psnr"] != pytest.approx(psnr_y(sr, hr, 0), abs=1e-6)


# ----------------------------------------------------------------------------- Set5 reference

SET5 = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "Set5"


def _pillow_bicubic(img, size):
    """Pillow's float ('F' mode) antialiased bicubic, channel by channel (size = (W, H))."""
    planes = [
        Image.fromarray(img[:, :, c].astype(np.float32), "F").resize(size, Image.BICUBIC)
        for c in range(img.shape[2])
    ]
    return np.stack([np.asarray(p) for p in planes], axis=-1)


@pytest.mark.skipif(not SET5.is_dir(), reason="shared Set5 data not present")
def test_bicubic_set5_x2_reference_figure():
    # data/README.md: bicubic Set5 x2 = 33.68 dB mean PSNR under this protocol. Pillow's
    # bicubic differs from MATLAB's imresize only within a few pixels of the border.
    files = sorted(SET5.glob("*.png"))
    assert len(files) == 5
    scores = []
    for f in files:
        hr = modcrop(np.asarray(Image.open(f).convert("RGB")).astype(np.float64) / 255, 2)
        h, w = hr.shape[:2]
        lr = quantize(_pillow_bicubic(hr, (w // 2, h // 2)))
        sr = _pillow_bicubic(lr, (w, h))
        scores.append(evaluate_pair(sr, hr, 2))
    assert np.mean([s["psnr"] for s in scores]) == pytest.approx(33.68, abs=0.02)
    # The literature's MATLAB figure is 0.9299; skimage's SSIM differs slightly at the edges.
    assert np.mean([s["ssim"] for s in scores]) == pytest.approx(0.930, abs=0.003)
