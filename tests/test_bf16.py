"""Winograd F(4x4, 3x3) with bfloat16 products ("winograd4bf16", winograd4_bf16.py) against
the naive float64 reference (with bfloat16's tolerance) and against a numpy emulation of
the same algorithm (the products' operands rounded to bfloat16, all else float64), which
it must match far more closely: forward, input gradient, weight gradient; odd sides,
batches. And the switch: `conv3x3.set_auto`, Network.algorithm, the refusal on CPUs
without AVX-512 BF16."""
import numpy as np
import pytest

from zssr import engine
from zssr.engine.kernels import conv3x3 as K
from zssr.engine.kernels import gemm_bf16
from naive import conv_backward, conv_forward
from test_conv3x3 import make, rel_err

BF = "winograd4bf16"
needs_bf16 = pytest.mark.skipif(not gemm_bf16.supported(), reason="no AVX-512 BF16 on this CPU")

SHAPES = [((7, 5), 64, 64), ((2, 9, 11), 16, 64), ((1, 1), 16, 64), ((3, 4, 4), 48, 64), ((6, 13), 64, 128),
          ((2, 10, 7), 64, 64)]
# bfloat16 keeps 8 significant bits; F(4x4)'s transforms (entries up to 8 and 1/24, with
# cancellations) make that ~1e-2 of the rms and ~5e-2 of the largest value (measured
# 1.5-3.1e-2 and 2-16e-2 on these shapes); float32 F(4x4) is ~1e-5.
MAX_TOL, RMS_TOL = 0.25, 0.05
# against the emulation: mostly ~1e-5, but the float32 transforms flip a few roundings to
# bfloat16 (measured up to 1.1e-2 of the largest value, 1.2e-3 of the rms)
EMU_TOL, EMU_RMS_TOL = 3e-2, 4e-3

BT = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
               [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], float)
G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])
AT = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], float)


def bf16(a):
    """a rounded to bfloat16 (through float32, to nearest even), as float64."""
    b = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    r = (((b + 0x7FFF + ((b >> 16) & 1)) >> 16) << 16).astype(np.uint32)
    return r.view(np.float32).astype(np.float64)


def rms_err(a, b):
    return float(np.sqrt(np.mean((a - b) ** 2) / np.mean(b ** 2)))


def _blocks(x4):
    """(N, H, W, C) -> zero-padded 6x6 patches (N, TY, TX, 6, 6, C) of the 4x4 blocks."""
    n, h, w, c = x4.shape
    ty, tx = -(-h // 4), -(-w // 4)
    xp = np.zeros((n, 4 * ty + 2, 4 * tx + 2, c))
    xp[:, 1:h + 1, 1:w + 1] = x4
    return np.stack([np.stack([xp[:, 4 * i:4 * i + 6, 4 * j:4 * j + 6] for j in range(tx)], 1)
                     for i in range(ty)], 1)


def emulate_forward(x4, w, b):
    """F(4x4) in float64 with V = B^T d B and U = G g G^T rounded to bfloat16."""
    n, h, wd, _ = x4.shape
    V = bf16(np.einsum("ak,nyxkli,bl->nyxabi", BT, _blocks(x4), BT))
    U = bf16(np.einsum("ak,klio,bl->abio", G, w, G))
    M = np.einsum("nyxabi,abio->nyxabo", V, U)
    Y = np.einsum("ak,nyxklo,bl->nyabxo", AT, M, AT)  # (n, ty, 4, 4, tx, o)
    Y = Y.transpose(0, 1, 2, 4, 3, 5).reshape(n, 4 * V.shape[1], 4 * V.shape[2], -1)
    return Y[:, :h, :wd] + b


def emulate_weight_grad(x4, dy4):
    """F(3x3, 4x4) in float64 with V = B^T d B and D = A dy A^T rounded to bfloat16."""
    n, h, wd, _ = x4.shape
    V = bf16(np.einsum("ak,nyxkli,bl->nyxabi", BT, _blocks(x4), BT))
    ty, tx = V.shape[1:3]
    g = np.zeros((n, 4 * ty, 4 * tx, dy4.shape[3]))
    g[:, :h, :wd] = dy4
    g = g.reshape(n, ty, 4, tx, 4, -1).transpose(0, 1, 3, 2, 4, 5)
    D = bf16(np.einsum("ka,nyxklo,lb->nyxabo", AT, g, AT))
    Wt = np.einsum("nyxabi,nyxabo->abio", V, D)
    return np.einsum("ka,klio,lb->abio", G, Wt, G)


@needs_bf16
@pytest.mark.parametrize("shape,ci,co", SHAPES)
def test_forward_and_input_grad(shape, ci, co):
    x, w, b, dy = (a.astype(np.float32) for a in make(shape, ci, co, seed=3))
    y = engine.conv3x3_forward(x, w, b, algorithm=BF)
    ref = conv_forward(x, w, b)
    assert rel_err(y, ref) < MAX_TOL and rms_err(y, ref) < RMS_TOL, (rel_err(y, ref), rms_err(y, ref))
    x4 = x if x.ndim == 4 else x[None]
    emu = emulate_forward(x4.astype(np.float64), w.astype(np.float64), b)
    y4 = y if x.ndim == 4 else y[None]
    assert rel_err(y4, emu) < EMU_TOL and rms_err(y4, emu) < EMU_RMS_TOL, (rel_err(y4, emu), rms_err(y4, emu))
    if ci % 64 == 0:  # the forward kernel with Cout -> Cin
        dx, _, _ = engine.conv3x3_backward(x, w, dy, algorithm=BF)
        rdx = conv_backward(x, w, dy)[0]
        assert rel_err(dx, rdx) < MAX_TOL and rms_err(dx, rdx) < RMS_TOL, (rel_err(dx, rdx), rms_err(dx, rdx))


@needs_bf16
@pytest.mark.parametrize("shape,ci,co", SHAPES)
def test_weight_gradient(shape, ci, co):
    x, w, _, dy = (a.astype(np.float32) for a in make(shape, ci, co, seed=6))
    _, dw, db = engine.conv3x3_backward(x, w, dy, need_dx=False, algorithm=BF)
    _, rdw, rdb = conv_backward(x, w, dy)
    assert rel_err(dw, rdw) < MAX_TOL and rms_err(dw, rdw) < RMS_TOL, (rel_err(dw, rdw), rms_err(dw, rdw))
    assert rel_err(db, rdb) < 1e-5  # the bias gradient is not rounded
    x4, dy4 = (a if a.ndim == 4 else a[None] for a in (x, dy))
    emu = emulate_weight_grad(x4.astype(np.float64), dy4.astype(np.float64))
    assert rel_err(dw, emu) < EMU_TOL and rms_err(dw, emu) < EMU_RMS_TOL, (rel_err(dw, emu), rms_err(dw, emu))


@needs_bf16
def test_weight_gradient_odd_runs():
    """45 blocks, more than one chunk of 24 per thread range, and runs of odd length (the
    last pair's second block is zeros) whether one or two threads' ranges."""
    x, w, _, dy = (a.astype(np.float32) for a in make((3, 9, 17), 64, 64, seed=2))
    _, dw, _ = engine.conv3x3_backward(x, w, dy, need_dx=False, algorithm=BF)
    emu = emulate_weight_grad(x.astype(np.float64), dy.astype(np.float64))
    assert rel_err(dw, emu) < EMU_TOL and rms_err(dw, emu) < EMU_RMS_TOL, (rel_err(dw, emu), rms_err(dw, emu))


def test_rounding_to_nearest_even():
    x = np.array([1.0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, -2.5e-3, 3e38, np.inf, -np.inf,
                  np.nan, 0.0, -0.0, 1e-40], np.float32)
    out = np.zeros(x.shape, np.uint16)
    gemm_bf16.to_bf16(x, out)
    got = gemm_bf16.from_bf16(out)
    want = bf16(x).astype(np.float32)
    assert np.array_equal(got[:8], want[:8]) and np.isnan(got[8]) and np.array_equal(got[9:], want[9:])
    assert got[1] == 1.0 and got[2] == 1 + 2 ** -6 and got[3] == 1 + 2 ** -7  # ties to even; above a tie: up


@needs_bf16
def test_set_auto_and_network_algorithm():
    """set_auto makes "auto" run bfloat16 on the wide float32 layers (float64 keeps
    winograd4); Network.algorithm = "winograd4bf16" runs the same."""
    net = engine.Network(seed=1)
    x = np.random.default_rng(0).random((13, 10, 3), dtype=np.float32)
    net.algorithm = BF
    y_bf = net.forward(x)
    net.algorithm = "auto"
    y32 = net.forward(x)
    old = K.set_auto(BF)
    try:
        assert np.array_equal(net.forward(x), y_bf)
        assert K._choose("auto", 64, 64, np.float64, K.AUTO_FORWARD) == "winograd4"
        assert K._choose("auto", 3, 64, np.float32, K.AUTO_FORWARD) == "direct"
    finally:
        K.set_auto(old[0])
    assert np.array_equal(net.forward(x), y32) and not np.array_equal(y_bf, y32)


def test_refused_without_bf16(monkeypatch):
    """Without AVX-512 BF16 the algorithm is refused with one clear line, never compiled."""
    monkeypatch.setattr(gemm_bf16, "supported", lambda: False)
    x, w, b, _ = (a.astype(np.float32) for a in make((5, 5), 64, 64))
    with pytest.raises(ValueError, match="AVX-512 BF16"):
        engine.conv3x3_forward(x, w, b, algorithm=BF)
    with pytest.raises(ValueError, match="AVX-512 BF16"):
        K.set_auto(BF)
    assert K.AUTO_FORWARD == K.AUTO_WEIGHT_GRAD == "winograd4"
    with pytest.raises(ValueError, match="float32"):
        K._choose(BF, 64, 64, np.float64, K.AUTO_FORWARD)
