"""Winograd F(2x2, 3x3): the same 3x3 convolution with 2.25x fewer multiplications.

For a 2x2 block of outputs, the 4x4 input patch d that feeds it and a 3x3 kernel g:

    Y = A^T [ (G g G^T) * (B^T d B) ] A          (* elementwise, over the 16 positions)

    B^T = [[1,  0, -1,  0],     G = [[1,    0,   0 ],     A^T = [[1, 1,  1,  0],
           [0,  1,  1,  0],          [1/2,  1/2, 1/2],            [0, 1, -1, -1]]
           [0, -1,  1,  0],          [1/2, -1/2, 1/2],
           [0,  1,  0, -1]]          [0,    0,   1 ]]

Summed over input channels, position by position, the middle product becomes 16 matrix
products, one per position xi of the 4x4 transform:

    M[xi][tile, o] = sum_i V[xi][tile, i] * U[xi][i, o]
    with V = B^T d B (input transform), U = G g G^T (weight transform)

which is 16 * Cin * Cout multiply-adds per 2x2 outputs, against 9 * 4 * Cin * Cout directly.
The products run on the same register tile as the direct convolution (gemm_tile); the
transforms are a few additions per value, done in the same pass.

Layout: the input is a padded buffer as in conv3x3 (N, H+2, W+2, Cx); the output block at
rows 2ty, 2ty+1 and columns 2tx, 2tx+1 reads padded rows 2ty..2ty+3 and columns
2tx..2tx+3 (rows or columns past the buffer, when H or W is odd, read as zero). Each task
is one row of blocks of one image, in chunks of `TXB` blocks so that its V and M (16 x TXB x
C each) stay in the core's cache; every thread has its own V and M.

Rounding differs from the direct convolution by a few units in the last place, and
depends on where a pixel falls in its 2x2 block: infer.py aligns its tiles to even
coordinates so that tiled inference stays bitwise equal to untiled.
"""
import numba
import numpy as np

from .._numba import jit, pjit
from .gemm_tile import _block, _rows_of_tiles, lanes, wino_dy, wino_in

TXB = 32  # blocks per chunk


@jit
def transform_weights(w9, U, T):
    # w9 (9, Ci, Co) taps row-major -> U (16, Ci, Co) = G g G^T for every (i, o).
    # T (4, 3, Ci, Co) scratch holds G g. Every loop reads at most 3 planes and writes one,
    # over the Ci * Co weights of a plane, so that LLVM vectorises it.
    n = w9.shape[1] * w9.shape[2]
    g = w9.reshape((9, n))
    t = T.reshape((12, n))
    u = U.reshape((16, n))
    # G g: rows [g0, (g0 + g1 + g2)/2, (g0 - g1 + g2)/2, g2] for each kernel column c
    for c in range(3):
        g0, g1, g2 = g[c], g[3 + c], g[6 + c]
        t0, t1, t2, t3 = t[c], t[3 + c], t[6 + c], t[9 + c]
        for k in range(n):
            t0[k] = g0[k]
        for k in range(n):
            t1[k] = 0.5 * (g0[k] + g1[k] + g2[k])
        for k in range(n):
            t2[k] = 0.5 * (g0[k] - g1[k] + g2[k])
        for k in range(n):
            t3[k] = g2[k]
    # (G g) G^T: the same on the columns of each row a
    for a in range(4):
        x0, x1, x2 = t[3 * a], t[3 * a + 1], t[3 * a + 2]
        u0, u1, u2, u3 = u[4 * a], u[4 * a + 1], u[4 * a + 2], u[4 * a + 3]
        for k in range(n):
            u0[k] = x0[k]
        for k in range(n):
            u1[k] = 0.5 * (x0[k] + x1[k] + x2[k])
        for k in range(n):
            u2[k] = 0.5 * (x0[k] - x1[k] + x2[k])
        for k in range(n):
            u3[k] = x2[k]


@pjit
def _winograd_kernel(xp, U, bias, yp, post, mask, V, M, patch, L):
    # xp (N, H+2, W+2, Cx)   U (16, Ci, Co)   bias (Co,)   yp, mask (N, H+2, W+2, Co)
    # V (T, 16, TXB, Ci), M (T, 16, TXB, Co), patch (T, 4, 4, Ci): per-thread scratch
    # yp interior = post(bias + conv3x3(xp)), post: 0 none, 1 ReLU, 2 zero where mask <= 0
    N, Hp, Wp, Cx = xp.shape
    TY = (Hp - 1) // 2
    TX = (Wp - 1) // 2
    nchunk = (TX + V.shape[2] - 1) // V.shape[2]
    for task in numba.prange(N * TY * nchunk):
        tid = numba.get_thread_id()
        _winograd_task(xp, U, bias, yp, post, mask, V[tid], M[tid], patch[tid], L,
                       task // (TY * nchunk), (task // nchunk) % TY, (task % nchunk) * V.shape[2])


@jit
def _input_patch(xp, xf, n, ty, tx, nrows, Ci, pt, vf, t, txb, L):
    """V[:, t, :] = B^T d B for the 4x4 patch at padded rows 2ty.., columns 2tx.. of image n;
    past the bottom or right edge (odd H or W), of a zero-padded copy of the patch."""
    N, Hp, Wp, Cx = xp.shape
    ncols = min(4, Wp - 2 * tx)
    if nrows == 4 and ncols == 4:
        wino_in(xf, ((n * Hp + 2 * ty) * Wp + 2 * tx) * Cx, Wp * Cx, Cx, Ci // L, vf, t * Ci, txb * Ci)
    else:
        pt[...] = 0.0
        for r in range(nrows):
            for c in range(ncols):
                pt[r, c, :] = xp[n, 2 * ty + r, 2 * tx + c, :Ci]
        wino_in(pt.reshape(pt.size), 0, 4 * Ci, Ci, Ci // L, vf, t * Ci, txb * Ci)


@jit
def _winograd_task(xp, U, bias, yp, post, mask, Vt, Mt, pt, L, n, ty, tx0):
    # one row ty of 2x2 output blocks of image n, blocks tx0 .. tx0 + TXB - 1
    N, Hp, Wp, Cx = xp.shape
    H = Hp - 2
    W = Wp - 2
    Ci = U.shape[1]
    Co = U.shape[2]
    txb = Vt.shape[1]
    nv = _block(Co // L)
    bw = nv * L
    ntx = min(txb, (W + 1) // 2 - tx0)
    xf = xp.reshape(xp.size)
    uf = U.reshape(U.size)
    yf = yp.reshape(yp.size)
    mf = mask.reshape(mask.size)
    vf = Vt.reshape(Vt.size)
    mtf = Mt.reshape(Mt.size)
    nrows = min(4, Hp - 2 * ty)
    # input transform: V[xi, t, i]
    for t in range(ntx):
        _input_patch(xp, xf, n, ty, tx0 + t, nrows, Ci, pt, vf, t, txb, L)
    # 16 products M[xi] = V[xi] @ U[xi]
    Mt[:, :ntx, :] = 0.0
    for xi in range(16):
        for cb in range(Co // bw):
            _rows_of_tiles(vf, xi * txb * Ci, Ci, 1, 0, 0, uf, xi * Ci * Co + cb * bw, Co, 0,
                           mtf, xi * txb * Co + cb * bw, Co, Ci, 1, 1, ntx, nv)
    # output transform: A^T M A, plus bias, then post
    for t in range(ntx):
        j0 = 2 * (tx0 + t)
        _output_transform(Mt, t, bias, yf, mf, ((n * Hp + 2 * ty + 1) * Wp + j0 + 1) * Co, Wp * Co, Co,
                          2 * ty + 1 < H, j0 + 1 < W, post)


@jit
def _output_transform(Mt, t, bias, yf, mf, o00, rowstride, Co, has_r, has_c, post):
    # y (2x2, each Co channels, the first at yf[o00]) = post(A^T M[:, t] A + bias)
    y00 = yf[o00:o00 + Co]
    y01 = yf[o00 + Co:o00 + 2 * Co] if has_c else y00
    y10 = yf[o00 + rowstride:o00 + rowstride + Co] if has_r else y00
    y11 = yf[o00 + rowstride + Co:o00 + rowstride + 2 * Co] if (has_r and has_c) else y00
    # one loop per kind of post-processing, so that each loop is branch-free and vectorised
    if post == 1:
        _out_loop(Mt, t, bias, Co, y00, y01, y10, y11, y00, y01, y10, y11, 1)
    elif post == 2:
        k00 = mf[o00:o00 + Co]
        k01 = mf[o00 + Co:o00 + 2 * Co] if has_c else k00
        k10 = mf[o00 + rowstride:o00 + rowstride + Co] if has_r else k00
        k11 = mf[o00 + rowstride + Co:o00 + rowstride + 2 * Co] if (has_r and has_c) else k00
        _out_loop(Mt, t, bias, Co, y00, y01, y10, y11, k00, k01, k10, k11, 2)
    else:
        _out_loop(Mt, t, bias, Co, y00, y01, y10, y11, y00, y01, y10, y11, 0)


@jit(inline="always")
def _out_loop(Mt, t, bias, Co, y00, y01, y10, y11, k00, k01, k10, k11, post):
    m0, m1, m2, m3 = Mt[0, t], Mt[1, t], Mt[2, t], Mt[3, t]
    m4, m5, m6, m7 = Mt[4, t], Mt[5, t], Mt[6, t], Mt[7, t]
    m8, m9, m10, m11 = Mt[8, t], Mt[9, t], Mt[10, t], Mt[11, t]
    m12, m13, m14, m15 = Mt[12, t], Mt[13, t], Mt[14, t], Mt[15, t]
    for o in range(Co):
        # A^T M: rows [m0 + m1 + m2, m1 - m2 - m3] over the 4 rows of M, then the same on columns
        r00 = m0[o] + m4[o] + m8[o]
        r01 = m1[o] + m5[o] + m9[o]
        r02 = m2[o] + m6[o] + m10[o]
        r03 = m3[o] + m7[o] + m11[o]
        r10 = m4[o] - m8[o] - m12[o]
        r11 = m5[o] - m9[o] - m13[o]
        r12 = m6[o] - m10[o] - m14[o]
        r13 = m7[o] - m11[o] - m15[o]
        b = bias[o]
        a00 = r00 + r01 + r02 + b
        a01 = r01 - r02 - r03 + b
        a10 = r10 + r11 + r12 + b
        a11 = r11 - r12 - r13 + b
        if post == 1:
            a00 = max(a00, 0.0)
            a01 = max(a01, 0.0)
            a10 = max(a10, 0.0)
            a11 = max(a11, 0.0)
        elif post == 2:
            a00 = a00 if k00[o] > 0 else 0.0
            a01 = a01 if k01[o] > 0 else 0.0
            a10 = a10 if k10[o] > 0 else 0.0
            a11 = a11 if k11[o] > 0 else 0.0
        # written in reverse so that a missing row/column (aliased to y00) ends with y00's value
        y11[o] = a11
        y10[o] = a10
        y01[o] = a01
        y00[o] = a00


def applicable(ci, co, dtype):
    """Winograd pays for the wide layers: at least 16 input channels in whole vectors, and
    whole blocks of 4 vectors of output channels (64 float32, 32 float64)."""
    L = lanes(dtype)
    return ci >= 16 and ci % L == 0 and co % (4 * L) == 0


class Workspace:
    """The weight transform U and the per-thread V and M (forward), D and partial sums
    (weight gradient) of one layer shape."""

    def __init__(self, ci, co, dtype, txb=TXB):
        t = numba.config.NUMBA_NUM_THREADS
        self.U = np.zeros((16, ci, co), dtype)
        self.T = np.zeros((4, 3, ci, co), dtype)
        self.V = np.zeros((t, 16, txb, ci), dtype)
        self.M = np.zeros((t, 16, txb, co), dtype)
        self.patch = np.zeros((t, 4, 4, ci), dtype)
        self.D = self.M  # the weight gradient's transformed dy: same shape, never used together
        self.part = np.zeros((t, 16, ci, co), dtype)
        self.dbpart = np.zeros((t, co), dtype)


_workspaces = {}


def workspace(ci, co, dtype, cls=None):
    """The scratch of one layer shape, made on first use: a `cls` (default this module's
    Workspace; winograd4 passes its own) of (ci, co, dtype)."""
    cls = Workspace if cls is None else cls
    key = (cls, ci, co, np.dtype(dtype).str)
    ws = _workspaces.get(key)
    if ws is None:
        ws = _workspaces[key] = cls(ci, co, dtype)
    return ws


def forward_into(xp, w9, bias, yp, post, mask):
    """The Winograd form of conv3x3.forward_into (same arguments and result)."""
    ws = workspace(w9.shape[1], w9.shape[2], w9.dtype)
    transform_weights(w9, ws.U, ws.T)
    _winograd_kernel(xp, ws.U, bias, yp, post, mask, ws.V, ws.M, ws.patch, lanes(yp.dtype))


# ---------------------------------------------------------------------------------------
# Weight gradient: F(3x3, 2x2)
# ---------------------------------------------------------------------------------------
# A 2x2 block of the output gradient dy and the 4x4 input patch d under it contribute
#     dW_block (3x3) = G^T [ (B^T d B) * (A dy A^T) ] G
# to the kernel gradient (the transpose of the forward identity, with the same B, G, A).
# Summed over blocks, position by position: 16 products  W[xi][i, o] = sum_blocks
# V[xi][block, i] * D[xi][block, o], 16 multiply-adds per block and (i, o) against 36.

@pjit
def _wgrad_kernel(xp, dyp, part, dbpart, V, D, patch, L):
    # xp (N, H+2, W+2, Cx)  dyp (N, H+2, W+2, Co)  part (T, 16, Ci, Co)  dbpart (T, Co)
    # part[t], dbpart[t]: thread t's sums over its rows of 2x2 blocks (added later in order)
    N, Hp, Wp, Cx = xp.shape
    T = part.shape[0]
    TY = (Hp - 1) // 2
    R = N * TY
    for t in numba.prange(T):
        part[t] = 0.0
        dbpart[t] = 0.0
        for r in range(t * R // T, (t + 1) * R // T):
            _wgrad_row(xp, dyp, part[t], dbpart[t], V[t], D[t], patch[t], L, r // TY, r % TY)


@jit
def _wgrad_row(xp, dyp, p16, dbt, Vt, Dt, pt, L, n, ty):
    # one row ty of 2x2 blocks of image n, added into p16 (16, Ci, Co) and dbt (Co,)
    N, Hp, Wp, Cx = xp.shape
    Co = dyp.shape[3]
    Ci = p16.shape[1]
    H = Hp - 2
    W = Wp - 2
    txb = Vt.shape[1]
    TX = (W + 1) // 2
    nv = _block(Co // L)
    bw = nv * L
    xf = xp.reshape(xp.size)
    df = dyp.reshape(dyp.size)
    vf = Vt.reshape(Vt.size)
    gf = Dt.reshape(Dt.size)
    pf = p16.reshape(p16.size)
    nrows = min(4, Hp - 2 * ty)
    for tx0 in range(0, TX, txb):
        ntx = min(txb, TX - tx0)
        for t in range(ntx):
            tx = tx0 + t
            _input_patch(xp, xf, n, ty, tx, nrows, Ci, pt, vf, t, txb, L)
            # the dy block (padded rows 2ty+1, 2ty+2): past the edge it is the zero halo
            wino_dy(df, ((n * Hp + 2 * ty + 1) * Wp + 2 * tx + 1) * Co, Wp * Co, Co, Co // L, gf, t * Co, txb * Co)
        for xi in range(16):
            for cb in range(Co // bw):
                # rows: input channels i (stride 1 in V); K: the blocks (stride Ci)
                _rows_of_tiles(vf, xi * txb * Ci, 1, Ci, 0, 0, gf, xi * txb * Co + cb * bw, Co, 0,
                               pf, xi * Ci * Co + cb * bw, Co, ntx, 1, 1, Ci, nv)
    for a in range(2):
        if 2 * ty + a < H:
            for j in range(W):
                row = df[((n * Hp + 2 * ty + a + 1) * Wp + j + 1) * Co:((n * Hp + 2 * ty + a + 1) * Wp + j + 2) * Co]
                for o in range(Co):
                    dbt[o] += row[o]


@jit
def _wgrad_reduce(part, dbpart, dw, db):
    # dw (3, 3, Ci, Cout) = G^T (sum_t part[t]) G ; db (Cout,) = sum_t dbpart[t]; t in order.
    # The sum is made in place in part[0] (scratch). Serial: ~0.1 ms, and a parallel loop
    # would cost seconds of compilation on the first run.
    T = part.shape[0]
    Ci = dw.shape[2]
    Co = dw.shape[3]
    Cop = part.shape[3]
    for i in range(Ci):
        for xi in range(16):
            for t in range(1, T):
                for o in range(Cop):
                    part[0, xi, i, o] += part[t, xi, i, o]
        for o in range(Co):
            # G^T m G, G^T = [[1, 1/2, 1/2, 0], [0, 1/2, -1/2, 0], [0, 1/2, 1/2, 1]]
            for c in range(4):
                a0 = part[0, c, i, o]
                a1 = part[0, 4 + c, i, o]
                a2 = part[0, 8 + c, i, o]
                a3 = part[0, 12 + c, i, o]
                part[0, c, i, o] = a0 + 0.5 * (a1 + a2)
                part[0, 4 + c, i, o] = 0.5 * (a1 - a2)
                part[0, 8 + c, i, o] = 0.5 * (a1 + a2) + a3
            for r in range(3):
                a0 = part[0, 4 * r, i, o]
                a1 = part[0, 4 * r + 1, i, o]
                a2 = part[0, 4 * r + 2, i, o]
                a3 = part[0, 4 * r + 3, i, o]
                dw[r, 0, i, o] = a0 + 0.5 * (a1 + a2)
                dw[r, 1, i, o] = 0.5 * (a1 - a2)
                dw[r, 2, i, o] = 0.5 * (a1 + a2) + a3
    for o in range(Co):
        s = dbpart[0, o]
        for t in range(1, T):
            s += dbpart[t, o]
        db[o] = s


def weight_grad_into(xp, dyp, dw, db):
    """The Winograd form of conv3x3.weight_grad_into: dw (3, 3, Ci, Co), db in place."""
    ci, co = dw.shape[2], dyp.shape[3]
    ws = workspace(ci, co, dyp.dtype)
    _wgrad_kernel(xp, dyp, ws.part, ws.dbpart, ws.V, ws.D, ws.patch, lanes(dyp.dtype))
    _wgrad_reduce(ws.part, ws.dbpart, dw, db)
