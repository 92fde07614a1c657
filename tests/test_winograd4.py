"""Winograd F(4x4, 3x3) (winograd4.py) against the naive reference, in float64 and float32:
forward, input gradient (the forward kernel with turned weights), weight gradient; odd
sides, batches, images smaller than one block; and the tiling halo it needs."""
import numpy as np
import pytest

from zssr import engine
from zssr.engine.kernels import conv3x3 as K
from zssr.engine.kernels import winograd4
from naive import conv_backward, conv_forward
from test_conv3x3 import TOL, make, rel_err

# every remainder of H and W mod 4, 1-pixel and smaller-than-a-block images, batches,
# Cin >= 16 and Cout in blocks of 4 vectors
SHAPES = [((1, 1), 16, 64), ((3, 2), 64, 64), ((1, 6), 64, 64), ((5, 1), 32, 64), ((7, 5), 64, 64),
          ((8, 8), 64, 128), ((2, 9, 11), 16, 64), ((6, 13), 64, 64), ((33, 70), 64, 64), ((3, 4, 4), 48, 64)]
F4 = "winograd4"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,ci,co", SHAPES)
def test_forward_and_input_grad_match_reference(dtype, shape, ci, co):
    x, w, b, dy = make(shape, ci, co, seed=3)
    x, w, b, dy = (a.astype(dtype) for a in (x, w, b, dy))
    y = engine.conv3x3_forward(x, w, b, algorithm=F4)
    err = rel_err(y, conv_forward(x, w, b))
    assert err < TOL[dtype], f"forward: {err:.2e}"
    if ci % 64 == 0:  # the input gradient: the same kernel with Cout -> Cin
        dx, _, _ = engine.conv3x3_backward(x, w, dy, algorithm=F4)
        err = rel_err(dx, conv_backward(x, w, dy)[0])
        assert err < TOL[dtype], f"dx: {err:.2e}"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,ci,co", SHAPES)
def test_weight_gradient_matches_reference(dtype, shape, ci, co):
    x, w, _, dy = make(shape, ci, co, seed=6)
    x, w, dy = (a.astype(dtype) for a in (x, w, dy))
    _, dw, db = engine.conv3x3_backward(x, w, dy, need_dx=False, algorithm=F4)
    _, rdw, rdb = conv_backward(x, w, dy)
    assert rel_err(dw, rdw) < TOL[dtype], f"dw: {rel_err(dw, rdw):.2e}"
    assert rel_err(db, rdb) < TOL[dtype], f"db: {rel_err(db, rdb):.2e}"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_post_processing_and_halo(dtype):
    """ReLU and the mask (the input gradient's ReLU derivative) are applied exactly; only
    the interior of the padded buffer is written."""
    x, w, b, _ = make((2, 9, 7), 64, 64, seed=4)
    x, w, b = (a.astype(dtype) for a in (x, w, b))
    y = engine.conv3x3_forward(x, w, b, algorithm=F4)
    assert np.array_equal(engine.conv3x3_forward(x, w, b, relu=True, algorithm=F4), np.maximum(y, 0))
    w9 = np.zeros((9, 64, 64), dtype)
    bp = np.zeros(64, dtype)
    K.pack_forward(w, b, w9, bp)
    xp = K._pad_input(x)
    mask = K.padded_buffer(2, 9, 7, 64, dtype)
    mask[:, 1:-1, 1:-1] = np.random.default_rng(1).standard_normal((2, 9, 7, 64))
    yp = K.padded_buffer(2, 9, 7, 64, dtype)
    K.forward_into(xp, w9, bp, yp, K.POST_MASK, mask=mask, algorithm=F4)
    assert np.array_equal(yp[:, 1:-1, 1:-1], np.where(mask[:, 1:-1, 1:-1] > 0, y, 0))
    inner = np.zeros(yp.shape, bool)
    inner[:, 1:-1, 1:-1] = True
    assert not yp[~inner].any()


def test_refused_where_it_does_not_apply():
    x, w, b, _ = make((6, 6), 3, 64)
    with pytest.raises(ValueError, match="winograd4 needs"):
        engine.conv3x3_forward(x, w, b, algorithm=F4)
    assert K.AUTO_FORWARD in K.ALGORITHMS and K.AUTO_WEIGHT_GRAD in K.ALGORITHMS


def test_weight_transform_is_g_w_gt():
    rng = np.random.default_rng(8)
    w9 = rng.standard_normal((9, 5, 7))
    U = np.zeros((36, 5, 7))
    winograd4.transform_weights(w9, U)
    G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                  [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])
    want = np.einsum("ak,klio,bl->abio", G, w9.reshape(3, 3, 5, 7), G).reshape(36, 5, 7)
    assert np.abs(U - want).max() < 1e-14


def test_float32_close_to_direct():
    x, w, b, _ = make((2, 31, 40), 64, 64, seed=5)
    x, w, b = (a.astype(np.float32) for a in (x, w, b))
    d = engine.conv3x3_forward(x, w, b, algorithm="direct")
    assert rel_err(engine.conv3x3_forward(x, w, b, algorithm=F4), d) < 2e-5


@pytest.mark.parametrize("algorithm", ["winograd4", "auto"])
def test_network_gradients_match_finite_differences(algorithm):
    """Width 32 in float64: the hidden layers run F(4x4) forward, input gradient and weight
    gradient; central differences agree to 1e-6."""
    net = engine.Network(width=32, depth=4, residual=True, bias=True, seed=2, dtype=np.float64)
    net.algorithm = algorithm
    rng = np.random.default_rng(0)
    for b in net.biases:
        b[...] = rng.uniform(0.05, 0.2, b.size)
    x = rng.random((2, 7, 6, 3))
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


def _reach():
    """For each position r of a pixel in its 4-block, the offsets (lo, hi) of the inputs its
    F(4x4) output depends on by rounding: the nonzeros of A^T times those of B^T."""
    AT = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]])
    BT = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                   [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]])
    dep = (np.abs(AT) @ np.abs(BT)) > 0  # dep[r, k]: output r of the block reads patch row k
    return [(int(np.flatnonzero(d).min()) - 1 - r, int(np.flatnonzero(d).max()) - 1 - r) for r, d in enumerate(dep)]


@pytest.mark.parametrize("depth", range(1, 11))
def test_tile_halo_covers_the_rounding_dependences(depth):
    """Propagate 'differs from the untiled result' from a window edge through the layers
    (first and last direct, hidden F(4x4) on blocks aligned with the image's), for every
    alignment of the edge: it must stop within tile_halo(depth) pixels."""
    reach = _reach()
    worst = 0
    for edge in range(4):
        for side in (1, -1):
            bad = np.zeros(200, bool)
            e = 100 + edge
            if side == 1:
                bad[e:] = True
            else:
                bad[:e] = True
            for layer in range(depth):
                new = np.zeros_like(bad)
                for p in range(8, 192):
                    lo, hi = reach[p % 4] if 0 < layer < depth - 1 else (-1, 1)
                    new[p] = bad[p + lo:p + hi + 1].any()
                bad = new
            worst = max(worst, e - np.flatnonzero(bad).min() if side == 1 else np.flatnonzero(bad).max() - e + 1)
    assert worst <= winograd4.tile_halo(depth)
    assert worst == winograd4.tile_halo(depth)  # and no wider than needed


@pytest.mark.parametrize("alg", [F4, "winograd4bf16"])
@pytest.mark.parametrize("post", [K.POST_NONE, K.POST_RELU, K.POST_MASK])
def test_edge_blocks_give_bitwise_what_whole_blocks_give(alg, post):
    """A block at the right or bottom edge (partial, transformed through a scratch block) and
    the same block inside a larger image (stored straight from the transform) get bitwise
    the same outputs, bias and post included: so tiling never changes a value."""
    from zssr.engine.kernels import gemm_bf16
    if alg == "winograd4bf16" and not gemm_bf16.supported():
        pytest.skip("no AVX-512 BF16 on this CPU")
    x, w, b, _ = make((2, 16, 16), 64, 64, seed=9)
    x[:, :, 14:] = 0  # columns 14 and 15 zero: the 14-wide image's zero padding
    x[:, 13:] = 0     # rows 13 to 15 likewise for the 13-high one
    big_mask = np.random.default_rng(2).standard_normal((2, 18, 18, 64)).astype(np.float32)
    x, w, b = (a.astype(np.float32) for a in (x, w, b))
    w9, bp = np.zeros((9, 64, 64), np.float32), np.zeros(64, np.float32)
    K.pack_forward(w, b, w9, bp)

    def run(img):
        xp = K.padded_buffer(*img.shape, np.float32)
        xp[:, 1:-1, 1:-1] = img
        mask = big_mask[:, :xp.shape[1], :xp.shape[2]].copy()
        yp = K.padded_buffer(*img.shape[:3], 64, np.float32)
        K.forward_into(xp, w9, bp, yp, post, mask=mask, algorithm=alg)
        return yp[:, 1:-1, 1:-1]

    whole = run(x)                  # 16 x 16: every block whole
    edge = run(x[:, :13, :14])      # 13 x 14: the last row and column of blocks cut
    assert np.array_equal(edge, whole[:, :13, :14])
