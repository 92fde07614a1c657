"""Winograd F(2x2, 3x3) against the naive reference and the direct kernel; where the
engine uses it (wide layers), gradients and tiled inference must stay exact."""
import numpy as np
import pytest

from zssr import engine
from zssr.engine.infer import apply_network
from zssr.engine.kernels import winograd
from naive import conv_backward, conv_forward
from test_conv3x3 import TOL, make, rel_err

# odd and even sides, 1-pixel images, batches; Cin >= 16, Cout a block of 4 vectors
SHAPES = [((1, 1), 16, 64), ((1, 6), 64, 64), ((5, 1), 32, 64), ((7, 5), 64, 64), ((8, 8), 64, 128),
          ((2, 9, 11), 16, 64), ((33, 70), 64, 64), ((3, 4, 4), 48, 64)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,ci,co", SHAPES)
def test_winograd_forward_and_input_grad_match_reference(dtype, shape, ci, co):
    x, w, b, dy = make(shape, ci, co, seed=3)
    x, w, b, dy = (a.astype(dtype) for a in (x, w, b, dy))
    y = engine.conv3x3_forward(x, w, b, algorithm="winograd")
    err = rel_err(y, conv_forward(x, w, b))
    assert err < TOL[dtype], f"forward: {err:.2e}"
    if ci % 64 == 0:  # the input gradient is a Winograd convolution with Cout -> Cin swapped
        dx, _, _ = engine.conv3x3_backward(x, w, dy, algorithm="winograd")
        err = rel_err(dx, conv_backward(x, w, dy)[0])
        assert err < TOL[dtype], f"dx: {err:.2e}"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,ci,co", SHAPES)
def test_winograd_weight_gradient_matches_reference(dtype, shape, ci, co):
    """F(3x3, 2x2): dW and db against the naive sums, odd sides included."""
    x, w, _, dy = make(shape, ci, co, seed=6)
    x, w, dy = (a.astype(dtype) for a in (x, w, dy))
    _, dw, db = engine.conv3x3_backward(x, w, dy, need_dx=False, algorithm="winograd")
    _, rdw, rdb = conv_backward(x, w, dy)
    assert rel_err(dw, rdw) < TOL[dtype], f"dw: {rel_err(dw, rdw):.2e}"
    assert rel_err(db, rdb) < TOL[dtype], f"db: {rel_err(db, rdb):.2e}"


def test_winograd_weight_gradient_is_deterministic():
    x, w, _, dy = make((2, 17, 23), 64, 64, seed=7)
    x, w, dy = (a.astype(np.float32) for a in (x, w, dy))
    a = engine.conv3x3_backward(x, w, dy, algorithm="winograd")
    b = engine.conv3x3_backward(x, w, dy, algorithm="winograd")
    assert all(np.array_equal(u, v) for u, v in zip(a, b))


def test_auto_uses_winograd_only_where_it_applies():
    assert winograd.applicable(64, 64, np.float32) and winograd.applicable(16, 64, np.float32)
    assert not winograd.applicable(3, 64, np.float32)       # first layer
    assert not winograd.applicable(64, 16, np.float32)      # last layer (3, padded to 16)
    assert winograd.applicable(64, 32, np.float64) and not winograd.applicable(64, 16, np.float64)
    x, w, b, _ = make((6, 6), 3, 64)
    with pytest.raises(ValueError, match="winograd needs"):
        engine.conv3x3_forward(x, w, b, algorithm="winograd")
    with pytest.raises(ValueError, match="algorithm must be"):
        engine.conv3x3_forward(x, w, b, algorithm="fft")


def test_fused_relu_is_exactly_relu():
    x, w, b, _ = make((9, 7), 64, 64, seed=4)
    x, w, b = (a.astype(np.float32) for a in (x, w, b))
    y = engine.conv3x3_forward(x, w, b, algorithm="winograd")
    assert np.array_equal(engine.conv3x3_forward(x, w, b, relu=True, algorithm="winograd"), np.maximum(y, 0))


def test_float32_close_to_direct():
    x, w, b, _ = make((2, 31, 40), 64, 64, seed=5)
    x, w, b = (a.astype(np.float32) for a in (x, w, b))
    d = engine.conv3x3_forward(x, w, b, algorithm="direct")
    assert rel_err(engine.conv3x3_forward(x, w, b, algorithm="winograd"), d) < 1e-5


def test_wide_network_gradients_match_finite_differences():
    """Width 32 in float64: layers 2..7 run Winograd forward and backward."""
    net = engine.Network(width=32, depth=4, residual=True, bias=True, seed=2, dtype=np.float64)
    rng = np.random.default_rng(0)
    for b in net.biases:
        b[...] = rng.uniform(0.05, 0.2, b.size)
    x = rng.random((5, 6, 3))
    r = rng.standard_normal(x.shape)
    net.forward(x)
    net.backward(r)
    grads = [g.copy() for g in net.grads]
    eps = 1e-6
    for p, g in zip(net.params, grads):
        for _ in range(3):
            idx = tuple(rng.integers(0, s) for s in p.shape)
            old = p[idx]
            p[idx] = old + eps
            ep = float(np.sum(r * net.forward(x)))
            p[idx] = old - eps
            em = float(np.sum(r * net.forward(x)))
            p[idx] = old
            fd = (ep - em) / (2 * eps)
            assert abs(fd - g[idx]) <= 1e-6 * max(1.0, abs(fd)), (p.shape, idx, g[idx], fd)


@pytest.mark.parametrize("ensemble", [False, True])
@pytest.mark.parametrize("tile", [9, 16, 21])
def test_tiled_equals_untiled_with_winograd_layers(ensemble, tile):
    net = engine.Network(width=64, depth=3, residual=True, bias=False, seed=1)
    img = np.random.default_rng(2).random((27, 33, 3)).astype(np.float32)
    whole = apply_network(net, img, ensemble=ensemble, tile=64)
    assert np.array_equal(apply_network(net, img, ensemble=ensemble, tile=tile), whole)


def test_weight_transform_is_g_w_gt():
    rng = np.random.default_rng(8)
    w9 = rng.standard_normal((9, 5, 7))
    U, T = np.zeros((16, 5, 7)), np.zeros((4, 3, 5, 7))
    winograd.transform_weights(w9, U, T)
    G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
    want = np.einsum("ak,klio,bl->abio", G, w9.reshape(3, 3, 5, 7), G).reshape(16, 5, 7)
    assert np.abs(U - want).max() < 1e-14
