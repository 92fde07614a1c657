"""Winograd F(4x4, 3x3) with its 36 matrix products in bfloat16 ("winograd4bf16").

The same algorithm as winograd4.py -- forward, input gradient (the forward kernel with
turned weights), weight gradient -- with the products on the AVX-512 BF16 tile
(gemm_bf16.py): the transforms stay float32; what the products read is rounded to
bfloat16 (nearest even) when it is written: the transformed inputs V and the transformed
weights U (forward), V and the transformed output gradients D (weight gradient). The
products' sums, M and the weight gradient's partial sums, are float32, and so is everything
after them (A^T M A, bias, ReLU, G^T W G, the sum over threads).

Layouts (uint16 bfloat16 bits; "pairs" are what the tile's reduction steps over):
    forward  U (36, Ci/2, Co, 2): pairs of input channels   V (T, 36, TXB, Ci): per block
    weight gradient  V (T, 36, TXB/2, Ci, 2), D (T, 36, TXB/2, Co, 2): pairs of blocks
(an odd last block of a run is paired with a zero patch).

Rounding: bfloat16 keeps 8 significant bits, and F(4x4)'s transforms (entries up to 8 and
1/24, with cancellations) amplify that. Measured against float64 on 96x96x64 ReLU
activations with the zssr init, as the largest error over the largest value (rms error over
rms value): forward 7.1e-2 (2.1e-2), input gradient 7.6e-2 (2.6e-2), weight gradient 4.7e-2
(2.2e-2); float32 F(4x4) 6.6e-6 (1.4e-6), 6.9e-6 (1.7e-6), 6.6e-6 (2.8e-6). Rounding V
alone or U alone gives about 1.5e-2 rms each; a direct convolution with its inputs and
weights in bfloat16 would be ~2.3e-3 rms. Only on CPUs with avx512_bf16
(`gemm_bf16.supported()`); conv3x3 refuses the algorithm elsewhere.

Speed (2-core AMD EPYC with avx512_bf16, 2026-12-02, calls alternated with "winograd4" on
a machine shared with other jobs; ratios bf16 / float32): the products alone 0.50 (one
thread); per 64 -> 64 layer, two threads back to back, forward / input gradient / weight
gradient 0.92 / 0.92 / 0.78 at 96x96 and 0.83 / 0.86 / 0.73 at 128x128 (with a pause
between calls, caches cold: 0.95-1.06); a training step 0.945 at the default 96x96 crop
(two threads; one thread, CPU time: 0.90) and 0.82 at 128x128; predict 512x512 0.76. The
transforms, float32 in both, are about half of F(4x4)'s time, so halving the products
gains at most ~25%.

Quality: Set5 x2, default preset, seed 0, the whole job (training and inference) in
bfloat16 (`conv3x3.set_auto("winograd4bf16")`): baby 38.73, bird 42.16, butterfly 34.29,
head 35.95, woman 35.99 dB, mean 37.42; float32 on the same machine 38.72, 42.16, 34.35,
35.95, 36.04, mean 37.45 (-0.03 dB; one seed; the rounding changes the training
trajectory). Inference alone in bfloat16 (training float32): 37.443 against 37.447.
"""
import numba
import numpy as np

from .._numba import jit, pjit
from . import winograd, winograd4
from .gemm_bf16 import L, make_patch_transform_bf16, rows_of_tiles_bf16
from .gemm_tile import _block
from .winograd4 import (TXB, _a, _add_bias_grad, _bt, _dy_source, _output_block, _patch_source, _separable,
                        transform_weights)

wino4_in16 = make_patch_transform_bf16(6, lambda b, d: _separable(b, d, 6, _bt))            # B^T d B
wino4_in16x2 = make_patch_transform_bf16(6, lambda b, d: _separable(b, d, 6, _bt), pair=True)
wino4_dy16x2 = make_patch_transform_bf16(4, lambda b, g: _separable(b, g, 6, _a), pair=True)  # A dy A^T


# ---------------------------------------------------------------------------------------
# Forward (and input gradient)
# ---------------------------------------------------------------------------------------

@pjit
def _forward_kernel(xp, Ub, bias, yp, post, mask, V, M, patch, Y):
    # xp (N, H+2, W+2, Cx) f32   Ub (36, Ci/2, Co, 2) bf16   bias (Co,)   yp, mask (N, H+2, W+2, Co)
    # V (T, 36, TXB, Ci) bf16, M (T, 36, TXB, Co), patch (T, 6, 6, Ci), Y (T, 16, Co): per thread
    N, Hp, Wp, Cx = xp.shape
    TY = (Hp + 1) // 4
    TX = (Wp + 1) // 4
    nchunk = (TX + V.shape[2] - 1) // V.shape[2]
    for task in numba.prange(N * TY * nchunk):
        tid = numba.get_thread_id()
        _forward_task(xp, Ub, bias, yp, post, mask, V[tid], M[tid], patch[tid], Y[tid],
                      task // (TY * nchunk), (task // nchunk) % TY, (task % nchunk) * V.shape[2])


@jit
def _forward_task(xp, Ub, bias, yp, post, mask, Vt, Mt, pt, Yt, n, ty, tx0):
    # one row ty of 4x4 output blocks of image n, blocks tx0 .. tx0 + TXB - 1
    N, Hp, Wp, Cx = xp.shape
    W = Wp - 2
    Ci = Vt.shape[2]
    Co = Ub.shape[2]
    txb = Vt.shape[1]
    nv = _block(Co // L)
    bw = nv * L
    ntx = min(txb, (W + 3) // 4 - tx0)
    uf = Ub.reshape(Ub.size)
    yf = yp.reshape(yp.size)
    mf = mask.reshape(mask.size)
    vf = Vt.reshape(Vt.size)
    mtf = Mt.reshape(Mt.size)
    xf = xp.reshape(xp.size)
    for t in range(ntx):
        src, base, rs, cs = _patch_source(xp, xf, n, ty, tx0 + t, Ci, pt)
        wino4_in16(src, base, rs, cs, Ci // L, vf, t * Ci, txb * Ci)
    # 36 products M[xi] = V[xi] @ U[xi], K = Ci / 2 pairs of channels
    Mt[:, :ntx, :] = 0.0
    for xi in range(36):
        for cb in range(Co // bw):
            rows_of_tiles_bf16(vf, xi * txb * Ci // 2, Ci // 2, 1, uf, xi * (Ci // 2) * Co + cb * bw, Co,
                               mtf, xi * txb * Co + cb * bw, Co, Ci // 2, ntx, nv)
    for t in range(ntx):  # M position-major: xi at xi * txb Co + t Co
        _output_block(mtf, t * Co, 6 * txb * Co, txb * Co, yf, mf, Yt, bias, post, n, ty, tx0 + t, Hp, Wp, Co, L)


_pair_rows = make_patch_transform_bf16(1, lambda b, d: [d[0][0]], pair=True)  # two rows -> interleaved


@jit
def pack_weights(U, Ub):
    """U (36, Ci, Co) float32 -> Ub (36, Ci/2, Co, 2) bfloat16: input channels in pairs."""
    Ci = U.shape[1]
    Co = U.shape[2]
    u = U.reshape(U.size)
    ub = Ub.reshape(Ub.size)
    for r in range(36 * Ci // 2):
        _pair_rows(u, 2 * r * Co, 0, 0, u, (2 * r + 1) * Co, 0, 0, Co // L, ub, 2 * r * Co, 0)


# ---------------------------------------------------------------------------------------
# Weight gradient: F(3x3, 4x4), the products reducing over pairs of blocks
# ---------------------------------------------------------------------------------------

@pjit
def _wgrad_kernel(xp, dyp, part, dbpart, V, D, patch, dpatch):
    # xp (N, H+2, W+2, Cx)  dyp (N, H+2, W+2, Co)  part (T, 36, Ci, Co) f32  dbpart (T, Co)
    # V (T, 36, TXB/2, Ci, 2), D (T, 36, TXB/2, Co, 2) bf16; patch (T, 2, 6, 6, Ci), dpatch (T, 2, 4, 4, Co)
    # thread t sums its range of blocks (as winograd4._wgrad_kernel)
    N, Hp, Wp, Cx = xp.shape
    T = part.shape[0]
    TY = (Hp + 1) // 4
    TX = (Wp + 1) // 4
    NB = N * TY * TX
    txb = 2 * V.shape[2]
    for t in numba.prange(T):
        part[t] = 0.0
        dbpart[t] = 0.0
        b1 = (t + 1) * NB // T
        for b0 in range(t * NB // T, b1, txb):
            _wgrad_chunk(xp, dyp, part[t], dbpart[t], V[t], D[t], patch[t], dpatch[t], b0, min(b1 - b0, txb))


@jit
def _wgrad_chunk(xp, dyp, p36, dbt, Vt, Dt, pt, gt, b0, nb):
    # blocks b0 .. b0 + nb - 1 (row-major over images, block rows, block columns), added
    # into p36 (36, Ci, Co) and dbt (Co,)
    N, Hp, Wp, Cx = xp.shape
    Co = dyp.shape[3]
    Ci = p36.shape[1]
    H = Hp - 2
    W = Wp - 2
    txb2 = Vt.shape[1]
    TY = (H + 3) // 4
    TX = (W + 3) // 4
    nv = _block(Co // L)
    bw = nv * L
    xf = xp.reshape(xp.size)
    df = dyp.reshape(dyp.size)
    vf = Vt.reshape(Vt.size)
    gf = Dt.reshape(Dt.size)
    pf = p36.reshape(p36.size)
    kp = (nb + 1) // 2
    for q in range(kp):
        b = b0 + 2 * q
        n = b // (TY * TX)
        ty = (b // TX) % TY
        tx = b % TX
        s0, o0, r0, c0 = _patch_source(xp, xf, n, ty, tx, Ci, pt[0])
        g0, go0, gr0, gc0 = _dy_source(dyp, df, n, ty, tx, gt[0])
        if 2 * q + 1 < nb:
            n1 = (b + 1) // (TY * TX)
            ty1 = ((b + 1) // TX) % TY
            tx1 = (b + 1) % TX
        else:  # an odd run: the pair's second block is zeros
            n1, ty1, tx1 = 0, -1, 0
        s1, o1, r1, c1 = _patch_source(xp, xf, n1, ty1, tx1, Ci, pt[1])
        g1, go1, gr1, gc1 = _dy_source(dyp, df, n1, ty1, tx1, gt[1])
        wino4_in16x2(s0, o0, r0, c0, s1, o1, r1, c1, Ci // L, vf, q * 2 * Ci, txb2 * 2 * Ci)
        wino4_dy16x2(g0, go0, gr0, gc0, g1, go1, gr1, gc1, Co // L, gf, q * 2 * Co, txb2 * 2 * Co)
    for t in range(nb):
        b = b0 + t
        _add_bias_grad(dyp, df, b // (TY * TX), (b // TX) % TY, b % TX, dbt)
    for xi in range(36):
        for cb in range(Co // bw):
            # rows: input channels i; K: pairs of blocks
            rows_of_tiles_bf16(vf, xi * txb2 * Ci, 1, Ci, gf, xi * txb2 * Co + cb * bw, Co,
                               pf, xi * Ci * Co + cb * bw, Co, kp, Ci, nv)


class Workspace:
    """winograd4.Workspace's float32 scratch, and the bfloat16 operands of the products."""

    def __init__(self, ci, co, dtype, txb=TXB):
        t = numba.config.NUMBA_NUM_THREADS
        self.U = np.zeros((36, ci, co), np.float32)
        self.Ub = np.zeros((36, ci // 2, co, 2), np.uint16)
        self.V = np.zeros((t, 36, txb, ci), np.uint16)
        self.M = np.zeros((t, 36, txb, co), np.float32)
        self.patch = np.zeros((t, 6, 6, ci), np.float32)
        self.Y = np.zeros((t, 16, co), np.float32)
        self.Vw = self.V.reshape((t, 36, txb // 2, ci, 2))  # the weight gradient's pair layout
        self.D = np.zeros((t, 36, txb // 2, co, 2), np.uint16)
        self.patch2 = np.zeros((t, 2, 6, 6, ci), np.float32)
        self.dpatch2 = np.zeros((t, 2, 4, 4, co), np.float32)
        self.part = None  # (t, 36, ci, co), made on the first weight gradient
        self.dbpart = np.zeros((t, co), np.float32)


def workspace(ci, co):
    return winograd.workspace(ci, co, np.float32, Workspace)


def forward_into(xp, w9, bias, yp, post, mask):
    """The bfloat16 F(4x4, 3x3) form of conv3x3.forward_into (float32 buffers)."""
    ws = workspace(w9.shape[1], w9.shape[2])
    transform_weights(w9, ws.U)
    pack_weights(ws.U, ws.Ub)
    _forward_kernel(xp, ws.Ub, bias, yp, post, mask, ws.V, ws.M, ws.patch, ws.Y)


def weight_grad_into(xp, dyp, dw, db):
    """The bfloat16 F(3x3, 4x4) form of conv3x3.weight_grad_into: dw (3, 3, Ci, Co), db in place."""
    ci, co = dw.shape[2], dyp.shape[3]
    ws = workspace(ci, co)
    if ws.part is None:
        ws.part = np.zeros((ws.V.shape[0], 36, ci, co), np.float32)
    _wgrad_kernel(xp, dyp, ws.part, ws.dbpart, ws.Vw, ws.D, ws.patch2, ws.dpatch2)
    winograd4.reduce_into(ws.part, ws.dbpart, dw, db)
