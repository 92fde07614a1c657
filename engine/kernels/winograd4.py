"""Winograd F(4x4, 3x3): the 3x3 convolution with 36 products per 4x4 outputs (2.25 per
output, against 9 directly and 4 for F(2x2), winograd.py).

For a 4x4 block of outputs, the 6x6 input patch d that feeds it and a 3x3 kernel g
(interpolation points 0, 1, -1, 2, -2 and infinity; Lavin & Gray 2016):

    Y = A^T [ (G g G^T) * (B^T d B) ] A          (* elementwise, over the 36 positions)

    B^T = [[4,  0, -5,  0, 1, 0],    G = [[ 1/4,     0,    0 ],    A^T = [[1, 1,  1, 1,  1, 0],
           [0, -4, -4,  1, 1, 0],         [-1/6,  -1/6, -1/6 ],           [0, 1, -1, 2, -2, 0],
           [0,  4, -4, -1, 1, 0],         [-1/6,   1/6, -1/6 ],           [0, 1,  1, 4,  4, 0],
           [0, -2, -1,  2, 1, 0],         [1/24,  1/12,  1/6 ],           [0, 1, -1, 8, -8, 1]]
           [0,  2, -1, -2, 1, 0],         [1/24, -1/12,  1/6 ],
           [0,  4,  0, -5, 0, 1]]         [   0,     0,    1 ]]

Summed over input channels, position by position: 36 matrix products
M[xi][block, o] = sum_i V[xi][block, i] U[xi][i, o], on the same register tile as the
direct convolution (gemm_tile). The weight gradient is the transpose of that identity:

    dW_block (3x3) = G^T [ (B^T d B) * (A dy A^T) ] G      (dy: the 4x4 block's gradient)

summed over blocks as 36 products W[xi][i, o] = sum_blocks V[xi][block, i] D[xi][block, o].

Layout as in winograd.py: the input is a padded buffer (N, H+2, W+2, Cx); the output block
at rows 4ty..4ty+3 and columns 4tx..4tx+3 reads padded rows and columns 4ty..4ty+5 and
4tx..4tx+5. Where that passes the buffer's edge (H or W not a multiple of 4), the patch is
a zero-padded copy, and outputs past the edge are not written. Each forward task is one row
of blocks of one image, in chunks of TXB blocks (V and M, TXB x 36 x C each, per thread:
block-major, so that a block's 36 transformed vectors are stored next to each other; the
products read V and M with a stride of 36 C instead. Position-major (36 x TXB x C), the
first layout, scattered each block's stores over 36 cache lines per vector: block-major
takes 0.88-0.92x its time (forward, 96-128 pixels, 2 threads, calls alternated ABBA),
bitwise the same result. The weight gradient keeps position-major, see Workspace).

Rounding: the error is larger than F(2x2)'s (the transforms have entries up to 8 and
1/24). Measured in float32 against float64 on 96x96x64 ReLU activations with the zssr
init, as the largest error over the largest value (rms error over rms value):
forward 6.6e-6 (1.4e-6), input gradient 7.8e-6 (1.7e-6), weight gradient 7.5e-6 (2.9e-6)
(with the weight transforms as combinations of planes, _combine: 5.9e-6, 6.5e-6, 6.7e-6
against 6.6e-6, 6.9e-6, 6.6e-6 for the separable ones on the same data);
F(2x2): 3.3e-7 (2.3e-7), 4.4e-7 (2.6e-7), 1.2e-6 (8.9e-7); direct: 8.2e-7 (3.1e-7),
1.2e-6 (4.3e-7), 1.3e-6 (8.7e-7). An output also depends, by its rounding, on every pixel
of its block's 6x6 patch, up to 3 pixels beyond its own 3x3 window on one side:
infer.py's tiles have a wider halo (tile_halo) and start on multiples of 4.

The weight gradient's 36 products accumulate over runs of TXB blocks taken across block
rows (a thread's share of all blocks, in row-major order), so that each product's K is
TXB even on narrow images.
"""
import functools

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils

from .._numba import jit, pjit
from .gemm_tile import _block, _rows_of_tiles, _rows_of_tiles_fused, lanes, make_patch_transform, make_transform_store
from . import winograd

TXB = 24  # blocks per chunk (4 tiles of 6 rows)


# ---------------------------------------------------------------------------------------
# Transforms, written once as LLVM IR (vectors of L channels), built by make_patch_transform
# ---------------------------------------------------------------------------------------

class _Ops:
    """Vector arithmetic for the transforms: a + b, a - b, c * a + b (one fused op)."""

    def __init__(self, builder, vt):
        self.b = builder
        self.vt = vt
        bits = 32 if isinstance(vt.element, ir.FloatType) else 64
        self._fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vt, [vt, vt, vt]), f"llvm.fma.v{vt.count}f{bits}")

    def add(self, x, y):
        return self.b.fadd(x, y)

    def sub(self, x, y):
        return self.b.fsub(x, y)

    def fma(self, c, x, y):
        """c * x + y for a constant c."""
        k = ir.Constant(self.vt, [ir.Constant(self.vt.element, float(c))] * self.vt.count)
        return self.b.call(self._fma, [k, x, y])


def _separable(builder, d, rows_out, t):
    """Apply the 1-D transform t (list of vectors -> list of vectors) to the columns of the
    grid d, then to the rows of the result; returns the rows_out x rows_out results
    row-major (element (a, b) at a * rows_out + b)."""
    ops = _Ops(builder, d[0][0].type)
    ncol = len(d[0])
    cols = [t(ops, [d[r][c] for r in range(len(d))]) for c in range(ncol)]  # cols[c][a] = (T d)[a, c]
    return [v for a in range(rows_out) for v in t(ops, [cols[c][a] for c in range(ncol)])]


def _bt(o, x):
    """B^T x for 6 values: the rows of B^T."""
    d12 = o.sub(x[1], x[2])
    s12 = o.add(x[1], x[2])
    s34 = o.add(x[3], x[4])
    d43 = o.sub(x[4], x[3])
    d31 = o.sub(x[3], x[1])
    d42 = o.sub(x[4], x[2])
    return [o.fma(4.0, x[0], o.fma(-5.0, x[2], x[4])),
            o.fma(-4.0, s12, s34),
            o.fma(4.0, d12, d43),
            o.fma(2.0, d31, d42),
            o.fma(-2.0, d31, d42),
            o.fma(4.0, x[1], o.fma(-5.0, x[3], x[5]))]


def _at(o, x):
    """A^T x for 6 values -> 4."""
    s12 = o.add(x[1], x[2])
    d12 = o.sub(x[1], x[2])
    s34 = o.add(x[3], x[4])
    d34 = o.sub(x[3], x[4])
    return [o.add(o.add(x[0], s12), s34),
            o.fma(2.0, d34, d12),
            o.fma(4.0, s34, s12),
            o.add(o.fma(8.0, d34, d12), x[5])]


def _a(o, g):
    """A g for 4 values -> 6 (A = the transpose of A^T)."""
    e = o.add(g[0], g[2])
    d = o.add(g[1], g[3])
    e4 = o.fma(4.0, g[2], g[0])
    d8 = o.fma(8.0, g[3], o.add(g[1], g[1]))
    return [g[0], o.add(e, d), o.sub(e, d), o.add(e4, d8), o.sub(e4, d8), g[3]]


wino4_in = make_patch_transform(6, lambda b, d: _separable(b, d, 6, _bt))    # 6x6 patch -> 36: B^T d B
wino4_dy = make_patch_transform(4, lambda b, g: _separable(b, g, 6, _a))     # 4x4 dy -> 36: A dy A^T
# 36 -> 4x4: A^T M A + bias, post-processed, into the image (or a scratch 4x4 block)
wino4_out_store = make_transform_store(6, 4, lambda b, m: _separable(b, m, 4, _at))


# The weight transforms, G g G^T before the products and G^T m G after the weight
# gradient's, are linear maps of the 9 (or 36) planes of Ci x Co values: each output plane
# a fixed combination of the input planes, with the coefficients of G (x) G (np.kron: entry
# (6a + b, 3r + c) is G[a, r] G[b, c]). They run as such, `_combine`: one task per output
# plane and chunk of PLANE_CHUNK values, the tasks shared by the threads, each a few
# vectorised passes over its chunk. Serial (G g, then (G g) G^T, as separable loops), a
# transform took 37-46 us alone but 107-370 us inside a training step (the data out of
# cache after the products, U's lines last read by both cores); the separable loops in a
# parallel loop took a first run 4.2-4.6 s to compile against 1.4 s serially, this form
# about 1 s. Rounding: each output is one sum of up to 9 (36) products with coefficients
# rounded once to the dtype, as accurate as the separable form (largest error against
# float64 1.1e-7 against 9.9e-8, of values up to 4.7) but not bitwise the same.
PLANE_CHUNK = 1024
_G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
               [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])
_GG = np.kron(_G, _G)  # (36, 9)


@functools.lru_cache(maxsize=None)
def _coefficients(dtype):
    """(G (x) G, its transpose) in `dtype`, C-contiguous: the weight transform's and the
    weight gradient's."""
    return (np.ascontiguousarray(_GG, dtype), np.ascontiguousarray(_GG.T, dtype))


@jit(inline="always")
def _combination(C, r, src, dst, k0, k1):
    # dst[r, k0:k1] = sum_q C[r, q] src[q, k0:k1], zero coefficients skipped, in order of q
    m = k1 - k0
    d = dst[r, k0:k1]
    for j in range(m):
        d[j] = 0.0
    for q in range(C.shape[1]):
        c = C[r, q]
        if c != 0.0:
            a = src[q, k0:k1]
            for j in range(m):
                d[j] += c * a[j]


@pjit
def _combine(C, src, dst):
    # dst (R, n) = C (R, Q) @ src (Q, n): one task per output plane and chunk
    n = src.shape[1]
    nch = (n + PLANE_CHUNK - 1) // PLANE_CHUNK
    for task in numba.prange(C.shape[0] * nch):
        k0 = (task % nch) * PLANE_CHUNK
        _combination(C, task // nch, src, dst, k0, min(n, k0 + PLANE_CHUNK))


def transform_weights(w9, U):
    """U (36, Ci, Co) = G g G^T of w9 (9, Ci, Co) (taps row-major), for every (i, o)."""
    n = w9.shape[1] * w9.shape[2]
    _combine(_coefficients(w9.dtype)[0], w9.reshape((9, n)), U.reshape((36, n)))


# ---------------------------------------------------------------------------------------
# Forward (and input gradient)
# ---------------------------------------------------------------------------------------

@pjit
def _forward_kernel(xp, U, bias, yp, post, mask, V, M, patch, Y, L, zero):
    # xp (N, H+2, W+2, Cx)   U (36, Ci, Co)   bias (Co,)   yp, mask (N, H+2, W+2, Co)
    # V (T, TXB, 36, Ci), M (T, TXB, 36, Co), patch (T, 6, 6, Ci), Y (T, 16, Co): per thread
    # zero (Co,): zeros (where the products start)
    # yp interior = post(bias + conv3x3(xp)), post: 0 none, 1 ReLU, 2 zero where mask <= 0
    N, Hp, Wp, Cx = xp.shape
    TY = (Hp + 1) // 4
    TX = (Wp + 1) // 4
    nchunk = (TX + V.shape[1] - 1) // V.shape[1]
    for task in numba.prange(N * TY * nchunk):
        tid = numba.get_thread_id()
        _forward_task(xp, U, bias, yp, post, mask, V[tid], M[tid], patch[tid], Y[tid], L,
                      task // (TY * nchunk), (task // nchunk) % TY, (task % nchunk) * V.shape[1], zero)


@jit
def _patch_source(xp, xf, n, ty, tx, C, pt):
    """Where the 6x6 patch at padded rows 4ty.., columns 4tx.. of image n is read: the
    buffer itself, or past its bottom or right edge a zero-padded copy in pt (6, 6, C).
    ty < 0: a patch of zeros. Returns (flat array, base, row stride, column stride)."""
    N, Hp, Wp, Cx = xp.shape
    nrows = min(6, Hp - 4 * ty) if ty >= 0 else 0
    ncols = min(6, Wp - 4 * tx) if ty >= 0 else 0
    if nrows == 6 and ncols == 6:
        return xf, ((n * Hp + 4 * ty) * Wp + 4 * tx) * Cx, Wp * Cx, Cx
    pt[...] = 0.0
    for r in range(nrows):
        for c in range(ncols):
            pt[r, c, :] = xp[n, 4 * ty + r, 4 * tx + c, :C]
    return pt.reshape(pt.size), 0, 6 * C, C


@jit
def _dy_source(dyp, df, n, ty, tx, gt):
    """Where the 4x4 block of dy at padded rows 4ty+1.., columns 4tx+1.. is read (zeros
    past the image, or for a missing block: ty < 0): (flat array, base, row stride, column stride)."""
    N, Hp, Wp, Co = dyp.shape
    H = Hp - 2
    W = Wp - 2
    nr = min(4, H - 4 * ty) if ty >= 0 else 0
    nc = min(4, W - 4 * tx) if ty >= 0 else 0
    if nr == 4 and nc == 4:
        return df, ((n * Hp + 4 * ty + 1) * Wp + 4 * tx + 1) * Co, Wp * Co, Co
    gt[...] = 0.0
    for r in range(nr):
        for c in range(nc):
            gt[r, c, :] = dyp[n, 4 * ty + 1 + r, 4 * tx + 1 + c, :]
    return gt.reshape(gt.size), 0, 4 * Co, Co


@jit
def _add_bias_grad(dyp, df, n, ty, tx, dbt):
    """dbt (Co,) += the sum of dy over the 4x4 block at padded rows 4ty+1.., columns 4tx+1..
    (its pixels inside the image)."""
    N, Hp, Wp, Co = dyp.shape
    nr = min(4, Hp - 2 - 4 * ty)
    nc = min(4, Wp - 2 - 4 * tx)
    for r in range(nr):
        for c in range(nc):
            g = df[((n * Hp + 4 * ty + 1 + r) * Wp + 4 * tx + 1 + c) * Co:((n * Hp + 4 * ty + 1 + r) * Wp + 4 * tx + 2 + c) * Co]
            for o in range(Co):
                dbt[o] += g[o]


@jit
def _input_patch(xp, xf, n, ty, tx, Ci, pt, vf, doff, ds, L):
    """B^T d B for the 6x6 patch at padded rows 4ty.., columns 4tx.. of image n (past the
    bottom or right edge, of a zero-padded copy of the patch): position xi's Ci values to
    vf[doff + xi * ds:][:Ci]."""
    src, base, rs, cs = _patch_source(xp, xf, n, ty, tx, Ci, pt)
    wino4_in(src, base, rs, cs, Ci // L, vf, doff, ds)


@jit
def _forward_task(xp, U, bias, yp, post, mask, Vt, Mt, pt, Yt, L, n, ty, tx0, zero):
    # one row ty of 4x4 output blocks of image n, blocks tx0 .. tx0 + TXB - 1
    N, Hp, Wp, Cx = xp.shape
    W = Wp - 2
    Ci = U.shape[1]
    Co = U.shape[2]
    txb = Vt.shape[0]
    nv = _block(Co // L)
    bw = nv * L
    ntx = min(txb, (W + 3) // 4 - tx0)
    xf = xp.reshape(xp.size)
    uf = U.reshape(U.size)
    yf = yp.reshape(yp.size)
    mf = mask.reshape(mask.size)
    vf = Vt.reshape(Vt.size)
    mtf = Mt.reshape(Mt.size)
    for t in range(ntx):
        _input_patch(xp, xf, n, ty, tx0 + t, Ci, pt, vf, t * 36 * Ci, Ci, L)  # V[t] (block-major)
    # 36 products M[:, xi] = V[:, xi] @ U[xi] (rows: the blocks, 36 Ci apart in V), written
    # without reading M first (the fused tiles, starting from a zero "bias")
    for xi in range(36):
        for cb in range(Co // bw):
            _rows_of_tiles_fused(vf, xi * Ci, 36 * Ci, 1, 0, 0, uf, xi * Ci * Co + cb * bw, Co, 0,
                                 mtf, xi * Co + cb * bw, 36 * Co, Ci, 1, 1, ntx, nv, zero, cb * bw, 0, mtf)
    for t in range(ntx):  # M[t]: position xi at t * 36 Co + xi Co (block-major)
        _output_block(mtf, t * 36 * Co, 6 * Co, Co, yf, mf, Yt, bias, post, n, ty, tx0 + t, Hp, Wp, Co, L)


@jit(inline="always")
def _output_block(mtf, moff, mrs, mcs, yf, mf, Yt, bias, post, n, ty, tx, Hp, Wp, Co, L):
    """Output block (ty, tx) of image n: Y = A^T M A + bias (the 6x6 grid of M's vectors at
    mtf[moff + r*mrs + c*mcs:]), post-processed into the image. A whole block goes straight
    into the image, one cut by the bottom or right edge into the scratch Y (16, Co) first.
    One call site for both, so that a block's values are bitwise the same wherever it lies
    (two inlined copies of the transform may be compiled into different instructions).
    Shared by the float32 and bfloat16 forward kernels, whose M layouts differ."""
    nr = min(4, Hp - 2 - 4 * ty)
    j0 = 4 * tx
    nc = min(4, Wp - 2 - j0)
    ytf = Yt.reshape(Yt.size)
    whole = nr == 4 and nc == 4
    dst = yf if whole else ytf
    msk = mf if whole else ytf
    doff = ((n * Hp + 4 * ty + 1) * Wp + j0 + 1) * Co if whole else 0
    drs = Wp * Co if whole else 4 * Co
    wino4_out_store(mtf, moff, mrs, mcs, Co // L, dst, doff, drs, Co, bias, post if whole else 0, msk)
    if not whole:
        for r in range(nr):
            for c in range(nc):
                _store(Yt[4 * r + c], yf, mf, ((n * Hp + 4 * ty + r + 1) * Wp + j0 + c + 1) * Co, Co, post)


@jit(inline="always")
def _store(y, yf, mf, off, Co, post):
    # y (bias added) -> post into the image: one loop per kind of post-processing, each
    # branch-free and vectorised (on slices: indexed into the flat arrays, the masked loop
    # measured 3.7x slower, not vectorised)
    z = yf[off:off + Co]
    if post == 1:
        for o in range(Co):
            z[o] = y[o] if y[o] > 0 else 0.0
    elif post == 2:
        k = mf[off:off + Co]
        for o in range(Co):
            z[o] = y[o] if k[o] > 0 else 0.0
    else:
        for o in range(Co):
            z[o] = y[o]


# ---------------------------------------------------------------------------------------
# Weight gradient: F(3x3, 4x4)
# ---------------------------------------------------------------------------------------
# A 4x4 block of dy and the 6x6 input patch d under it contribute
#     dW_block (3x3) = G^T [ (B^T d B) * (A dy A^T) ] G
# Summed over blocks, position by position: 36 products W[xi][i, o] = sum_blocks
# V[xi][block, i] * D[xi][block, o] (36 multiply-adds per block and (i, o), against 144).

@pjit
def _wgrad_kernel(xp, dyp, part, dbpart, V, D, patch, dpatch, L):
    # xp (N, H+2, W+2, Cx)  dyp (N, H+2, W+2, Co)  part (T, 36, Ci, Co)  dbpart (T, Co)
    # part[t], dbpart[t]: thread t's sums over its range of 4x4 blocks (all blocks of all
    # images in row-major order, cut in T nearly equal ranges; added later in order)
    N, Hp, Wp, Cx = xp.shape
    T = part.shape[0]
    TY = (Hp + 1) // 4
    TX = (Wp + 1) // 4
    NB = N * TY * TX
    for t in numba.prange(T):
        part[t] = 0.0
        dbpart[t] = 0.0
        b1 = (t + 1) * NB // T
        for b0 in range(t * NB // T, b1, V.shape[2]):
            _wgrad_chunk(xp, dyp, part[t], dbpart[t], V[t], D[t], patch[t], dpatch[t], L, b0, min(b1 - b0, V.shape[2]))


@jit
def _wgrad_chunk(xp, dyp, p36, dbt, Vt, Dt, pt, gt, L, b0, nb):
    # blocks b0 .. b0 + nb - 1 (row-major over images, block rows, block columns), added
    # into p36 (36, Ci, Co) and dbt (Co,)
    N, Hp, Wp, Cx = xp.shape
    Co = dyp.shape[3]
    Ci = p36.shape[1]
    H = Hp - 2
    W = Wp - 2
    txb = Vt.shape[1]
    TY = (H + 3) // 4
    TX = (W + 3) // 4
    nv = _block(Co // L)
    bw = nv * L
    xf = xp.reshape(xp.size)
    df = dyp.reshape(dyp.size)
    vf = Vt.reshape(Vt.size)
    gf = Dt.reshape(Dt.size)
    pf = p36.reshape(p36.size)
    for t in range(nb):
        b = b0 + t
        n = b // (TY * TX)
        ty = (b // TX) % TY
        tx = b % TX
        _input_patch(xp, xf, n, ty, tx, Ci, pt, vf, t * Ci, txb * Ci, L)  # V[:, t] (position-major)
        g, gb, grs, gcs = _dy_source(dyp, df, n, ty, tx, gt)  # the dy block; past the image, zeros
        wino4_dy(g, gb, grs, gcs, Co // L, gf, t * Co, txb * Co)
        _add_bias_grad(dyp, df, n, ty, tx, dbt)
    for xi in range(36):
        for cb in range(Co // bw):
            # rows: input channels i (stride 1 in V); K: the blocks (stride Ci)
            _rows_of_tiles(vf, xi * txb * Ci, 1, Ci, 0, 0, gf, xi * txb * Co + cb * bw, Co, 0,
                           pf, xi * Ci * Co + cb * bw, Co, nb, 1, 1, Ci, nv)


@pjit
def _wgrad_reduce(part, dbpart, Ct, dw, db):
    # dw (3, 3, Ci, Co) = G^T (sum_t part[t]) G ; db (Co,) = sum_t dbpart[t]; t in order.
    # One task per chunk of PLANE_CHUNK values of the Ci * Co planes: the threads' partial
    # sums added in order into part[0], then each of dw's 9 planes the combination Ct (9,
    # 36) of the 36 (see _combine).
    T = part.shape[0]
    Co = dw.shape[3]
    n = dw.shape[2] * Co
    p = part.reshape((T, 36, n))
    w = dw.reshape((9, n))
    nch = (n + PLANE_CHUNK - 1) // PLANE_CHUNK
    for k in numba.prange(nch):
        k0 = k * PLANE_CHUNK
        k1 = min(n, k0 + PLANE_CHUNK)
        for xi in range(36):
            a = p[0, xi, k0:k1]
            for t in range(1, T):
                b = p[t, xi, k0:k1]
                for j in range(k1 - k0):
                    a[j] += b[j]
        for r in range(9):
            _combination(Ct, r, p[0], w, k0, k1)
    for o in range(Co):
        acc = dbpart[0, o]
        for t in range(1, T):
            acc += dbpart[t, o]
        db[o] = acc


class Workspace:
    """The weight transform U and the per-thread scratch of one layer shape: forward
    (V, M, patch, Y) and weight gradient (V, D, patches, partial sums)."""

    def __init__(self, ci, co, dtype, txb=TXB):
        t = numba.config.NUMBA_NUM_THREADS
        self.U = np.zeros((36, ci, co), dtype)
        self.V = np.zeros((t, txb, 36, ci), dtype)  # the forward's: block-major (module docstring)
        self.M = np.zeros((t, txb, 36, co), dtype)
        self.patch = np.zeros((t, 6, 6, ci), dtype)
        self.Y = np.zeros((t, 16, co), dtype)
        # the weight gradient's V and transformed dy D: the same memory, position-major (36 x
        # TXB x C: its products run over the blocks, contiguous that way; block-major measured
        # 0.95-1.03x at 2 threads, within the noise); never used together with the forward's
        self.Vw = self.V.reshape((t, 36, txb, ci))
        self.D = self.M.reshape((t, 36, txb, co))
        self.dpatch = np.zeros((t, 4, 4, co), dtype)
        self.part = None  # (t, 36, ci, co), made on the first weight gradient
        self.dbpart = np.zeros((t, co), dtype)


def workspace(ci, co, dtype):
    return winograd.workspace(ci, co, dtype, Workspace)  # one cache for both algorithms


def forward_into(xp, w9, bias, yp, post, mask):
    """The F(4x4, 3x3) form of conv3x3.forward_into (same arguments and result)."""
    ws = workspace(w9.shape[1], w9.shape[2], w9.dtype)
    transform_weights(w9, ws.U)
    _forward_kernel(xp, ws.U, bias, yp, post, mask, ws.V, ws.M, ws.patch, ws.Y, lanes(yp.dtype), _zeros(yp.shape[3], yp.dtype))


@functools.lru_cache(maxsize=None)
def _zeros(n, dtype):
    return np.zeros(n, dtype)


def weight_grad_into(xp, dyp, dw, db):
    """The F(3x3, 4x4) form of conv3x3.weight_grad_into: dw (3, 3, Ci, Co), db in place."""
    ci, co = dw.shape[2], dyp.shape[3]
    ws = workspace(ci, co, dyp.dtype)
    if ws.part is None:
        ws.part = np.zeros((ws.V.shape[0], 36, ci, co), dyp.dtype)
    _wgrad_kernel(xp, dyp, ws.part, ws.dbpart, ws.Vw, ws.D, ws.patch, ws.dpatch, lanes(dyp.dtype))
    reduce_into(ws.part, ws.dbpart, dw, db)


def reduce_into(part, dbpart, dw, db):
    """dw = G^T (sum of the threads' partial sums) G, db = the sum of theirs (_wgrad_reduce).
    dw is written as flat planes: a non-contiguous dw gets a copy."""
    Ct = _coefficients(dw.dtype)[1]
    if dw.flags.c_contiguous:
        _wgrad_reduce(part, dbpart, Ct, dw, db)
    else:
        out = np.empty(dw.shape, dw.dtype)
        _wgrad_reduce(part, dbpart, Ct, out, db)
        dw[...] = out


def tile_halo(depth):
    """The halo (pixels) a tile of a `depth`-layer network needs for bitwise the untiled
    result, when its hidden layers run F(4x4) and its windows start on multiples of 4.

    Each F(4x4) output depends by rounding on its block's whole 6x6 patch: up to 3 pixels
    beyond its window on one side, and the blocks realign the front, so that two such
    layers move it by 1 + 3 pixels. Worst case over the alignments of a window's edge,
    first and last layers direct: depth + 2 * ceil((depth - 2) / 2) (14 for 8 layers;
    tests/test_winograd4.py checks the formula by propagating the dependences)."""
    return depth + 2 * ((depth - 1) // 2) if depth >= 2 else depth
