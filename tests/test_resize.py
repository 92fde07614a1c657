"""engine.kernels.resize against a naive reference, Pillow, and MATLAB-made data."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from zssr.engine.errors import UserError
from zssr.engine.kernels.resize import output_size, resize

SHARED = Path(__file__).parents[1].parent / "shared" / "data"


# --------------------------------------------------------------------------- reference


def keys(x):
    """Keys cubic, a = -0.5, one scalar at a time."""
    x = abs(x)
    if x <= 1.0:
        return 1.5 * x**3 - 2.5 * x**2 + 1.0
    if x <= 2.0:
        return -0.5 * x**3 + 2.5 * x**2 - 4.0 * x + 2.0
    return 0.0


def border_index(j, n, border):
    """0-based index j outside [0, n) -> inside, one step at a time."""
    if border == "replicate":
        return min(max(j, 0), n - 1)
    while j < 0 or j >= n:
        j = -j - 1 if j < 0 else 2 * n - 1 - j
    return j


def ref_matrix(n_in, n_out, scale, border):
    """Dense (n_out, n_in) matrix of MATLAB imresize's bicubic weights, float64 loops."""
    m = np.zeros((n_out, n_in))
    width = 4.0 / scale if scale < 1 else 4.0
    for i in range(n_out):
        u = (i + 1) / scale + 0.5 * (1.0 - 1.0 / scale)  # 1-based, as MATLAB
        total = 0.0
        for j1 in range(math.floor(u - width / 2) - 1, math.ceil(u + width / 2) + 2):
            d = u - j1
            w = scale * keys(scale * d) if scale < 1 else keys(d)
            m[i, border_index(j1 - 1, n_in, border)] += w
            total += w
        m[i] /= total
    return m


def ref_resize(img, out_shape, scales, border="replicate"):
    x = np.asarray(img, dtype=np.float64)
    x3 = x.reshape(x.shape[0], x.shape[1], -1)
    r = ref_matrix(x.shape[0], out_shape[0], scales[0], border)
    c = ref_matrix(x.shape[1], out_shape[1], scales[1], border)
    y = np.einsum("ij,jkc,lk->ilc", r, x3, c)
    return y[:, :, 0] if x.ndim == 2 else y


def rand_img(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).random(shape).astype(dtype)


# --------------------------------------------------------------------------- naive reference

CASES = [
    # (input shape, scale, shape) -> expected out shape / scales computed below
    ((17, 23, 3), 2.0, None),
    ((17, 23, 3), 0.5, None),
    ((13, 11, 3), 3.0, None),
    ((31, 29, 3), 1 / 3, None),
    ((19, 21), 0.7, None),
    ((15, 9, 2), 1.37, None),
    ((16, 20, 3), (2.0, 0.5), None),
    ((21, 14, 4), (0.7, 1.37), None),
    ((17, 23, 3), None, (20, 11)),
    ((12, 12, 1), None, (5, 31)),
    ((17, 23, 3), 0.5, (8, 12)),  # both: shape for size, scale for the kernel
    ((1, 7, 3), 2.0, None),  # one-row image
    ((40, 3), 0.25, None),
]


def _expected(in_shape, scale, shape):
    if scale is not None:
        sy, sx = (scale, scale) if np.isscalar(scale) else scale
    else:
        sy, sx = shape[0] / in_shape[0], shape[1] / in_shape[1]
    if shape is None:
        shape = (output_size(in_shape[0], sy), output_size(in_shape[1], sx))
    return shape, (sy, sx)


@pytest.mark.parametrize("border", ["replicate", "symmetric"])
@pytest.mark.parametrize("in_shape,scale,shape", CASES)
def test_matches_naive_reference(in_shape, scale, shape, border):
    out_shape, scales = _expected(in_shape, scale, shape)
    img64 = rand_img(in_shape, seed=len(in_shape) + in_shape[0])
    ref = ref_resize(img64, out_shape, scales, border)

    got64 = resize(img64, scale=scale, shape=shape, border=border)
    assert got64.dtype == np.float64 and got64.shape == ref.shape
    err64 = np.abs(got64 - ref).max()
    assert err64 <= 1e-12, f"float64 max abs diff {err64:.3g}"

    img32 = img64.astype(np.float32)
    got32 = resize(img32, scale=scale, shape=shape, border=border)
    assert got32.dtype == np.float32 and got32.shape == ref.shape
    ref32 = ref_resize(img32, out_shape, scales, border)
    err32 = np.abs(got32.astype(np.float64) - ref32).max()
    assert err32 <= 1e-5, f"float32 max abs diff {err32:.3g}"


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(1, 24),
    w=st.integers(1, 24),
    c=st.sampled_from([1, 3]),
    sy=st.floats(0.2, 4.0),
    sx=st.floats(0.2, 4.0),
    border=st.sampled_from(["replicate", "symmetric"]),
)
def test_property_random_shapes_and_scales(h, w, c, sy, sx, border):
    img = rand_img((h, w, c), seed=h * 31 + w)
    out_shape, scales = _expected((h, w), (sy, sx), None)
    got = resize(img, scale=(sy, sx), border=border)
    ref = ref_resize(img, out_shape, scales, border)
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= 1e-12


def test_borders_differ_only_near_the_edge():
    img = rand_img((20, 20, 3), seed=3)
    a = resize(img, 2.0, border="replicate")
    b = resize(img, 2.0, border="symmetric")
    assert np.abs(a - b).max() > 1e-3
    np.testing.assert_array_equal(a[4:-4, 4:-4], b[4:-4, 4:-4])


def test_rank_dtype_and_layout_preserved():
    img = rand_img((9, 13), seed=1, dtype=np.float32)
    out = resize(img, 2.0)
    assert out.shape == (18, 26) and out.dtype == np.float32
    # non-contiguous input gives the same result as a contiguous copy
    big = rand_img((13, 9, 3), seed=2)
    view = big.transpose(1, 0, 2)
    np.testing.assert_array_equal(resize(view, 0.7), resize(np.ascontiguousarray(view), 0.7))


def test_deterministic():
    img = rand_img((64, 48, 3), seed=5, dtype=np.float32)
    a = resize(img, 1.37)
    b = resize(img, 1.37)
    np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- sizes and constants


@pytest.mark.parametrize(
    "in_hw,scale,expected",
    [
        ((17, 23), 0.5, (9, 12)),
        ((9, 10), 1 / 3, (3, 4)),
        ((10, 10), 0.7, (7, 7)),  # 10 * 0.7 = 7.000000000000001 counts as 7
        ((11, 5), 1.37, (16, 7)),
        ((2, 3), 0.5, (1, 2)),
        ((3, 7), 2.0, (6, 14)),
        ((30, 30), 0.1, (3, 3)),
        ((12, 9), (0.5, 3.0), (6, 27)),
        ((1, 1), 0.01, (1, 1)),
    ],
)
def test_output_shape_is_ceil(in_hw, scale, expected):
    img = np.zeros(in_hw + (3,), np.float32)
    assert resize(img, scale).shape == expected + (3,)


@pytest.mark.parametrize("scale", [2.0, 0.5, 3.0, 1 / 3, 0.7, 1.37, (0.3, 2.5)])
@pytest.mark.parametrize("border", ["replicate", "symmetric"])
def test_constant_stays_constant(scale, border):
    img = np.full((15, 22, 3), 0.37, np.float64)
    out = resize(img, scale, border=border)
    assert np.abs(out - 0.37).max() <= 1e-12
    out32 = resize(img.astype(np.float32), scale, border=border)
    assert np.abs(out32 - np.float32(0.37)).max() <= 1e-6


def test_scale_one_is_identity():
    img = rand_img((11, 7, 3), seed=9, dtype=np.float32)
    np.testing.assert_array_equal(resize(img, 1.0), img)


# --------------------------------------------------------------------------- Pillow


def _pillow_bicubic(img, out_h, out_w):
    chans = [
        np.asarray(
            Image.fromarray(img[:, :, c].astype(np.float32), mode="F").resize(
                (out_w, out_h), Image.BICUBIC
            )
        )
        for c in range(img.shape[2])
    ]
    return np.stack(chans, axis=2)


@pytest.mark.parametrize("scale,crop", [(2.0, 8), (0.5, 4)])
def test_equals_pillow_away_from_borders(scale, crop):
    img = rand_img((48, 62, 3), seed=11, dtype=np.float32)
    ours = resize(img, scale)
    theirs = _pillow_bicubic(img, ours.shape[0], ours.shape[1])
    err = np.abs(ours - theirs)[crop:-crop, crop:-crop].max()
    assert err <= 1e-5, f"max abs diff to Pillow away from the borders: {err:.3g}"


# --------------------------------------------------------------------------- MATLAB conformance


def _conformance_pair():
    gt_path = SHARED / "conformance" / "bsd_001_gt.png"
    lr_path = SHARED / "conformance" / "bsd_001_lr_x2.png"
    if not (gt_path.exists() and lr_path.exists()):
        pytest.skip("shared conformance data absent")
    gt = np.asarray(Image.open(gt_path).convert("RGB"))
    lr = np.asarray(Image.open(lr_path).convert("RGB"))
    return gt, lr


def test_conformance_matlab_bicubic_x2_down():
    gt, lr = _conformance_pair()
    out = resize(gt.astype(np.float32) / 255.0, 0.5)
    assert out.shape == lr.shape
    q = np.round(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)
    d = np.abs(q.astype(np.int32) - lr.astype(np.int32))
    mean = d.mean()
    within1 = 100.0 * (d <= 1).mean()
    msg = f"mean abs diff {mean:.4f} grey levels, {within1:.3f}% within 1 level, max {d.max()}"
    print(msg)
    assert mean <= 0.2 and within1 >= 99.0, msg


def test_conformance_exact_with_matlab_uint8_rounding():
    """MATLAB resizes uint8 one axis at a time and rounds (half away from zero) to uint8
    after each pass. Doing the same with our one-axis resizes gives its LR bit for bit,
    which pins down the kernel, the coordinate map, the axis order and the border."""
    gt, lr = _conformance_pair()

    def to_u8(x):
        return np.floor(np.clip(x, 0.0, 255.0) + 0.5)

    h, w = lr.shape[:2]
    rows = to_u8(resize(gt.astype(np.float64), shape=(h, gt.shape[1])))  # rows first (tie)
    out = to_u8(resize(rows, shape=(h, w)))
    d = np.abs(out - lr)
    exact = 100.0 * (d == 0).mean()
    assert exact == 100.0, f"{exact:.3f}% identical, max diff {d.max()}"


# --------------------------------------------------------------------------- numeric kernel


def test_numeric_delta_kernel_is_subsampling():
    # MATLAB's pixel centres: x3 keeps input pixel 3 i + 1 (the delta is on an odd grid)
    img = rand_img((17, 22, 3), seed=4, dtype=np.float32)
    k = np.zeros((5, 5))
    k[2, 2] = 1.0
    out = resize(img, 1 / 3, kernel=k)
    assert out.shape == (6, 8, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:5, :7], img[1::3, 1::3][:5, :7])


def test_numeric_kernel_matches_naive_correlation():
    # kernel centre ((kh-1)/2, (kw-1)/2) on input position (S i + (S-1)/2, S j + (S-1)/2),
    # whole pixels here (even kernel rows at x2, odd columns at x3); mirrored borders
    img = rand_img((14, 11, 2), seed=6)
    k = np.random.default_rng(7).random((4, 3))
    k /= k.sum()
    out = resize(img, (0.5, 1 / 3), kernel=k)
    oh, ow = output_size(14, 0.5), output_size(11, 1 / 3)
    # scipy's 'reflect' is numpy's 'symmetric' (edge pixel repeated)
    pad = np.pad(img, ((4, 4), (4, 4), (0, 0)), mode="symmetric")
    ref = np.zeros((oh, ow, 2))
    for a in range(oh):
        for b in range(ow):
            for i in range(4):
                for j in range(3):
                    ref[a, b] += k[i, j] * pad[2 * a + i - 1 + 4, 3 * b + 1 + j - 1 + 4]
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() <= 1e-12


def test_numeric_kernel_from_shared_data():
    path = SHARED / "real" / "bsd100_100_kernel_x2.npy"
    if not path.exists():
        pytest.skip("shared kernel absent")
    k = np.load(path)
    img = rand_img((41, 30, 3), seed=8, dtype=np.float32)
    out = resize(img, 0.5, kernel=k)
    assert out.shape == (21, 15, 3) and out.dtype == np.float32
    assert out.min() >= -1e-6 and out.max() <= 1 + 1e-6
    grey = resize(img[:, :, 0], shape=(20, 15), kernel=k)
    assert grey.shape == (20, 15)


# --------------------------------------------------------------------------- bad arguments

IMG = np.zeros((8, 8, 3), np.float32)


@pytest.mark.parametrize(
    "args,kwargs,words",
    [
        ((IMG,), {}, "scale"),
        ((IMG, 0.0), {}, "scale"),
        ((IMG, -2.0), {}, "scale"),
        ((IMG, float("nan")), {}, "scale"),
        ((IMG, float("inf")), {}, "scale"),
        ((IMG, "2"), {}, "scale"),
        ((IMG, (1.0, 2.0, 3.0)), {}, "scale"),
        ((IMG, (1.0, 0.0)), {}, "scale"),
        ((IMG, True), {}, "scale"),
        ((IMG,), {"shape": (0, 5)}, "shape"),
        ((IMG,), {"shape": (5,)}, "shape"),
        ((IMG,), {"shape": (2.5, 3)}, "shape"),
        ((IMG,), {"shape": 4}, "shape"),
        ((IMG,), {"shape": (-1, 4)}, "shape"),
        ((np.zeros(8, np.float32), 2.0), {}, "img"),
        ((np.zeros((2, 2, 2, 2), np.float32), 2.0), {}, "img"),
        ((np.zeros((8, 8, 3), np.uint8), 2.0), {}, "float32"),
        ((np.zeros((0, 8, 3), np.float32), 2.0), {}, "empty"),
        (([[0.0, 1.0]], 2.0), {}, "numpy array"),
        ((IMG, 2.0), {"kernel": "linear"}, "kernel"),
        ((IMG, 2.0), {"kernel": 3}, "kernel"),
        ((IMG, 2.0), {"kernel": np.ones((3, 3)) / 9}, "downscale"),
        ((IMG, 0.5), {"kernel": np.ones(3) / 3}, "2-D"),
        ((IMG, 0.5), {"kernel": np.full((3, 3), np.nan)}, "kernel"),
        ((IMG, 2.0), {"border": "wrap"}, "border"),
    ],
)
def test_bad_arguments_raise_user_error(args, kwargs, words):
    with pytest.raises(UserError) as info:
        resize(*args, **kwargs)
    msg = str(info.value)
    assert words in msg and "\n" not in msg
