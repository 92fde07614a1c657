"""The convolution kernels against the naive reference and against finite differences."""
import numpy as np
import pytest

from zssr.engine import conv3x3_backward, conv3x3_forward
from naive import conv_backward, conv_forward, conv_forward_loops

# (pixels shape, Cin, Cout): 1x1, 1xN, Nx1, odd sizes, channel counts of 1, 3, 5, 64, batched
SHAPES = [
    ((1, 1), 1, 1), ((1, 9), 3, 5), ((6, 1), 5, 3), ((7, 5), 5, 64), ((7, 5), 64, 64),
    ((7, 5), 64, 3), ((5, 7), 3, 64), ((9, 11), 1, 5), ((2, 6, 5), 3, 64), ((3, 4, 7), 64, 5),
    ((2, 5, 9), 64, 64), ((3, 13), 64, 32), ((4, 15), 64, 3), ((2, 3, 14), 64, 2), ((3, 14), 3, 64),
]
TOL = {np.float64: 1e-12, np.float32: 1e-4}


def rel_err(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def make(shape, ci, co, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape + (ci,))
    w = rng.standard_normal((3, 3, ci, co)) / np.sqrt(9 * ci)
    b = rng.standard_normal(co)
    dy = rng.standard_normal(shape + (co,))
    return x, w, b, dy


def test_reference_matches_plain_loops():
    x, w, b, _ = make((4, 5), 3, 2)
    assert rel_err(conv_forward(x, w, b), conv_forward_loops(x, w, b)) < 1e-14


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,ci,co", SHAPES)
def test_forward_matches_reference(dtype, shape, ci, co):
    x, w, b, _ = make(shape, ci, co)
    y = conv3x3_forward(x.astype(dtype), w.astype(dtype), b.astype(dtype))
    assert y.dtype == dtype and y.shape == shape + (co,)
    err = rel_err(y, conv_forward(x.astype(dtype), w.astype(dtype), b.astype(dtype)))
    assert err < TOL[dtype], f"largest relative difference {err:.2e}"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,ci,co", SHAPES)
def test_backward_matches_reference(dtype, shape, ci, co):
    x, w, _, dy = make(shape, ci, co, seed=1)
    x, w, dy = x.astype(dtype), w.astype(dtype), dy.astype(dtype)
    dx, dw, db = conv3x3_backward(x, w, dy)
    rdx, rdw, rdb = conv_backward(x, w, dy)
    for name, got, want in (("dx", dx, rdx), ("dw", dw, rdw), ("db", db, rdb)):
        assert got.dtype == dtype and got.shape == want.shape, name
        err = rel_err(got, want)
        assert err < TOL[dtype], f"{name}: largest relative difference {err:.2e}"


def test_relu_option_is_fused_relu():
    x, w, b, _ = make((6, 7), 5, 16)
    assert np.array_equal(conv3x3_forward(x, w, b, relu=True), np.maximum(conv3x3_forward(x, w, b), 0))


def test_no_bias_means_zero_bias():
    x, w, b, _ = make((4, 4), 3, 8)
    assert np.array_equal(conv3x3_forward(x, w), conv3x3_forward(x, w, np.zeros_like(b)))


def test_backward_without_dx():
    x, w, _, dy = make((4, 4), 3, 8)
    dx, dw, db = conv3x3_backward(x, w, dy, need_dx=False)
    assert dx is None and dw.shape == w.shape and db.shape == (8,)


@pytest.mark.parametrize("shape,ci,co", [((5, 4), 3, 5), ((2, 4, 3), 6, 3), ((3, 6), 17, 2)])
def test_gradients_match_finite_differences(shape, ci, co):
    """E = sum(y * r) for a fixed random r: dE/dy = r, so the kernels' dx, dw, db must be the
    derivatives of E. Central differences in float64, relative error < 1e-6."""
    x, w, b, r = make(shape, ci, co, seed=2)
    dx, dw, db = conv3x3_backward(x, w, r)

    def energy(x_, w_, b_):
        return float(np.sum(conv3x3_forward(x_, w_, b_) * r))

    rng = np.random.default_rng(3)
    eps = 1e-5
    for name, arr, grad in (("x", x, dx), ("w", w, dw), ("b", b, db)):
        for _ in range(6):
            idx = tuple(rng.integers(0, s) for s in arr.shape)
            args = {"x": x, "w": w, "b": b}
            plus, minus = arr.copy(), arr.copy()
            plus[idx] += eps
            minus[idx] -= eps
            fd = (energy(**_swap(args, name, plus)) - energy(**_swap(args, name, minus))) / (2 * eps)
            assert abs(fd - grad[idx]) <= 1e-6 * max(1.0, abs(fd)), f"d{name}{idx}: {grad[idx]} vs {fd}"


def _swap(args, name, value):
    out = {k + "_": v for k, v in args.items()}
    out[name + "_"] = value
    return out


@pytest.mark.parametrize(
    "x_shape,w_shape,b_shape,match",
    [
        ((4, 4), (3, 3, 4, 2), None, r"\(H, W, Cin\)"),
        ((1, 2, 4, 4, 3), (3, 3, 3, 2), None, r"\(H, W, Cin\)"),
        ((4, 4, 3), (3, 3, 5, 2), None, r"\(3, 3, 3, Cout\)"),
        ((4, 4, 3), (5, 5, 3, 2), None, r"\(3, 3, 3, Cout\)"),
        ((4, 4, 3), (3, 3, 3, 2), (3,), r"\(2,\)"),
        ((0, 4, 3), (3, 3, 3, 2), None, "at least one pixel"),
    ],
)
def test_bad_shapes_raise_before_any_kernel(x_shape, w_shape, b_shape, match):
    x = np.zeros(x_shape)
    w = np.zeros(w_shape)
    b = None if b_shape is None else np.zeros(b_shape)
    with pytest.raises(ValueError, match=match):
        conv3x3_forward(x, w, b)


def test_bad_dtypes_raise():
    with pytest.raises(ValueError, match="float32 or float64"):
        conv3x3_forward(np.zeros((4, 4, 3), np.int32), np.zeros((3, 3, 3, 2)))
    with pytest.raises(ValueError, match="dtype float32"):
        conv3x3_forward(np.zeros((4, 4, 3), np.float32), np.zeros((3, 3, 3, 2)))
    with pytest.raises(ValueError, match=r"dy must have shape \(4, 4, 2\)"):
        conv3x3_backward(np.zeros((4, 4, 3)), np.zeros((3, 3, 3, 2)), np.zeros((4, 4, 3)))


def test_deterministic_bitwise():
    x, w, b, dy = make((2, 33, 29), 64, 64, seed=5)
    x, w, b, dy = (a.astype(np.float32) for a in (x, w, b, dy))
    a1 = (conv3x3_forward(x, w, b),) + conv3x3_backward(x, w, dy)
    a2 = (conv3x3_forward(x, w, b),) + conv3x3_backward(x, w, dy)
    for u, v in zip(a1, a2):
        assert np.array_equal(u, v)


# --- the direct kernels' fused output pass and the few-outputs kernel, on padded buffers ---

from zssr.engine.kernels import conv3x3 as K  # noqa: E402


def _padded(x):
    xp = K.padded_buffer(*x.shape[:3], x.shape[3], x.dtype)
    xp[:, 1:-1, 1:-1, :x.shape[3]] = x
    return xp


def _layer(ci, co, w_px=13, seed=3, dtype=np.float32):
    """Padded input, packed weights and bias, as the Network holds them (w_px 13: tiles of
    6 + 6 + 1 pixels in a row)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 5, w_px, ci)).astype(dtype)
    w = (rng.standard_normal((3, 3, ci, co)) / np.sqrt(9 * ci)).astype(dtype)
    b = rng.standard_normal(co).astype(dtype)
    cop = K.padded_channels(co, dtype)
    w9, bp = np.zeros((9, ci, cop), dtype), np.zeros(cop, dtype)
    K.pack_forward(w, b, w9, bp)
    return _padded(x), w9, bp, co


@pytest.mark.parametrize("algorithm", ["direct", "auto"])  # auto: 64 -> 3 on the few-outputs kernel
@pytest.mark.parametrize("ci,co", [(3, 64), (5, 16), (64, 3), (16, 5)])
def test_direct_forward_post_is_the_separate_pass_bitwise(ci, co, algorithm):
    """The output pass (bias, ReLU or mask) done as each tile is stored gives bitwise what
    the plain result followed by numpy's ReLU or mask gives: NaN and -0 included."""
    xp, w9, bp, co = _layer(ci, co)
    plain = K.padded_buffer(2, 5, 13, co, np.float32)
    K.forward_into(xp, w9, bp, plain, K.POST_NONE, algorithm=algorithm)
    relu = K.padded_buffer(2, 5, 13, co, np.float32)
    K.forward_into(xp, w9, bp, relu, K.POST_RELU, algorithm=algorithm)
    assert np.array_equal(relu, np.where(plain > 0, plain, 0).astype(np.float32))
    mask = np.random.default_rng(4).standard_normal(plain.shape).astype(np.float32)
    mask[0, 2, 3, :] = np.nan
    mask[1, 1, 1, :] = 0.0
    masked = K.padded_buffer(2, 5, 13, co, np.float32)
    K.forward_into(xp, w9, bp, masked, K.POST_MASK, mask=mask, algorithm=algorithm)
    want = np.where(mask > 0, plain, 0)
    want[:, 0], want[:, -1], want[:, :, 0], want[:, :, -1] = 0, 0, 0, 0  # the halo is not written
    assert np.array_equal(masked, want)
    assert not masked[0, 2, 3].any() and not masked[1, 1, 1].any()


def test_few_outputs_kernel_is_taken_for_the_last_layer_only():
    xp, w9, bp, _ = _layer(64, 3)
    assert K.few_outputs(xp, w9, bp, K.padded_buffer(2, 5, 13, 3, np.float32)) is not None
    for ci, co in [(64, 5), (3, 64), (5, 3)]:  # too many outputs; too few or unaligned inputs
        xp, w9, bp, _ = _layer(ci, co)
        assert K.few_outputs(xp, w9, bp, K.padded_buffer(2, 5, 13, co, np.float32)) is None
    xp, w9, bp, _ = _layer(64, 3)
    bp[3] = 1.0  # a padded output with a bias is not a 3-output layer
    assert K.few_outputs(xp, w9, bp, K.padded_buffer(2, 5, 13, 3, np.float32)) is None


def test_few_outputs_kernel_overwrites_stale_padding_and_keeps_the_halo():
    """A reused buffer: what an earlier layer left in the padded channels is replaced by the
    (zero) bias, and the one-pixel zero halo stays as it was."""
    xp, w9, bp, _ = _layer(64, 3)
    fresh = K.padded_buffer(2, 5, 13, 3, np.float32)
    K.forward_into(xp, w9, bp, fresh, K.POST_NONE)
    stale = np.full_like(fresh, 7.0)
    K.forward_into(xp, w9, bp, stale, K.POST_NONE)
    assert np.array_equal(stale[:, 1:-1, 1:-1], fresh[:, 1:-1, 1:-1])
    assert not fresh[:, 1:-1, 1:-1, 3:].any()
    assert (stale[:, 0] == 7).all() and (stale[:, :, -1] == 7).all()


def test_the_few_outputs_kernel_and_the_direct_one_agree():
    """The last layer's two kernels (vectorised over inputs, "auto"; over outputs, "direct")
    give the same result to float32 rounding (they add in different orders)."""
    xp, w9, bp, _ = _layer(64, 3, w_px=20)
    a, d = (K.padded_buffer(2, 5, 20, 3, np.float32) for _ in range(2))
    K.forward_into(xp, w9, bp, a, K.POST_NONE, algorithm="auto")
    K.forward_into(xp, w9, bp, d, K.POST_NONE, algorithm="direct")
    assert not np.array_equal(a, d)  # two kernels indeed
    assert np.abs(a - d).max() <= 1e-5 * np.abs(d).max()
