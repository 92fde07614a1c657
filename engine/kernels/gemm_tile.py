"""The register-blocked micro-kernel that every convolution in the engine runs on.

    C[P, NV*L] += sum over taps (th, tw) of A_tap[P, K] @ B_tap[K, NV*L]

P rows of A times a K-row panel of B, accumulated into a P x (NV*L) tile of C, where L is
the number of lanes of one 512-bit vector (16 float32 or 8 float64). The P*NV accumulators
live in vector registers for the whole K loop: each step loads NV vectors of one row of B,
broadcasts one element of A per row, and issues P*NV fused multiply-adds. With P=4, NV=4
that is 16 FMAs for 4 vector loads and 4 broadcasts, which keeps the FMA units busy.

Why an intrinsic: Numba has no vector type, and LLVM does not turn a loop nest with 64
accumulators into register-resident vectors by itself (plain loops measured 20-60 GFLOP/s
here, this kernel ~480). So this one function is written in LLVM IR with llvmlite; every
loop *around* it (which pixels, which taps, which channels) stays in plain Numba Python,
where it is easy to read. The arithmetic is exactly ``c[p, n] += sum_k a[p, k] * b[k, n]``:
`tests/test_conv3x3.py` checks every use against a naive numpy reference.

The taps: a convolution is a sum of nth x ntw such products, one per kernel position, with
A shifted by whole rows (tar) and columns (tac) of the image and B moved to that tap's
weights (tbs). Looping over the taps inside the tile keeps the accumulators in registers for
the whole 3x3xCin reduction, so C is read and written once, however small Cin is.

Addressing, in elements of flat (1-D, C-contiguous) arrays:
    A_tap[p, k] = a[a_off + th*tar + tw*tac + p*sap + k*sak]    (any strides)
    B_tap[k, :] = b[b_off + (th*ntw + tw)*tbs + k*sbk : ... + NV*L]   (contiguous rows)
    C[p, :]     = c[c_off + p*scp : ... + NV*L]                 (contiguous rows)
No bounds are checked: the callers in conv3x3.py guarantee them.
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .._numba import jit

VECTOR_BITS = 512


def lanes(dtype):
    """Elements of `dtype` in one vector register (16 for float32, 8 for float64)."""
    import numpy as np

    return VECTOR_BITS // (8 * np.dtype(dtype).itemsize)


def make_tile(P, NV):
    """Build the intrinsic
    ``tile(a, a_off, sap, sak, tar, tac, b, b_off, sbk, tbs, c, c_off, scp, K, nth, ntw)``
    for a P x NV-vector tile. One intrinsic serves float32 and float64 alike."""

    @intrinsic
    def tile(typingctx, a, a_off, sap, sak, tar, tac, b, b_off, sbk, tbs, c, c_off, scp, K, nth, ntw):
        if not (isinstance(a, types.Array) and isinstance(b, types.Array) and isinstance(c, types.Array)):
            return None
        if not (a.dtype == b.dtype == c.dtype) or a.dtype not in (types.float32, types.float64):
            return None
        sig = types.void(a, a_off, sap, sak, tar, tac, b, b_off, sbk, tbs, c, c_off, scp, K, nth, ntw)

        def codegen(context, builder, signature, args):
            sargs = signature.args
            i64 = ir.IntType(64)
            ints = [context.cast(builder, v, t, types.int64) if i not in (0, 6, 10) else v
                    for i, (v, t) in enumerate(zip(args, sargs))]
            (a_, a_off_, sap_, sak_, tar_, tac_, b_, b_off_, sbk_, tbs_,
             c_, c_off_, scp_, K_, nth_, ntw_) = ints
            dt = sargs[0].dtype
            L = VECTOR_BITS // dt.bitwidth
            ft = context.get_value_type(dt)
            vt = ir.VectorType(ft, L)
            vpt = vt.as_pointer()
            ap = context.make_array(sargs[0])(context, builder, a_).data
            bp = context.make_array(sargs[6])(context, builder, b_).data
            cp = context.make_array(sargs[10])(context, builder, c_).data
            const = lambda v: ir.Constant(i64, v)  # noqa: E731
            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vt, [vt, vt, vt]), f"llvm.fma.v{L}f{dt.bitwidth}"
            )
            undef = ir.Constant(vt, ir.Undefined)
            splat = ir.Constant(ir.VectorType(ir.IntType(32), L), [0] * L)

            # Accumulators: allocas that LLVM's mem2reg turns into vector registers.
            acc = []
            for p in range(P):
                row_off = builder.add(c_off_, builder.mul(const(p), scp_))
                for v in range(NV):
                    ptr = builder.bitcast(builder.gep(cp, [builder.add(row_off, const(v * L))]), vpt)
                    slot = cgutils.alloca_once(builder, vt)
                    builder.store(builder.load(ptr, align=4), slot)
                    acc.append((slot, ptr))

            with cgutils.for_range(builder, nth_) as loop_th:
                th = loop_th.index
                with cgutils.for_range(builder, ntw_) as loop_tw:
                    tw = loop_tw.index
                    a_tap = builder.add(a_off_, builder.add(builder.mul(th, tar_), builder.mul(tw, tac_)))
                    b_tap = builder.add(b_off_, builder.mul(builder.add(builder.mul(th, ntw_), tw), tbs_))
                    with cgutils.for_range(builder, K_) as loop:
                        k = loop.index
                        brow = builder.add(b_tap, builder.mul(k, sbk_))
                        bv = [
                            builder.load(builder.bitcast(builder.gep(bp, [builder.add(brow, const(v * L))]), vpt), align=4)
                            for v in range(NV)
                        ]
                        acol = builder.add(a_tap, builder.mul(k, sak_))
                        for p in range(P):
                            s = builder.load(builder.gep(ap, [builder.add(acol, builder.mul(const(p), sap_))]))
                            sv = builder.shuffle_vector(builder.insert_element(undef, s, ir.Constant(ir.IntType(32), 0)), undef, splat)
                            for v in range(NV):
                                slot = acc[p * NV + v][0]
                                builder.store(builder.call(fma, [sv, bv[v], builder.load(slot)]), slot)

            for slot, ptr in acc:
                builder.store(builder.load(slot), ptr, align=4)
            return context.get_dummy_value()

        return sig, codegen

    tile.__name__ = f"tile_{P}x{NV}"
    return tile


def make_patch_transform(size, transform):
    """Build an intrinsic ``f(src, base, rowstride, cstride, nblk, dst, doff, ds)`` that
    applies a Winograd transform to one size x size patch of a channels-last image.

    The patch element (r, c, channel i) is ``src[base + r*rowstride + c*cstride + i]``;
    `transform(builder, d)` maps the size x size grid of vectors d to a list of vectors
    (16 for F(2x2)'s 4x4 transforms, 36 or 16 for F(4x4)'s), element xi of which goes to
    ``dst[doff + xi*ds + i]``. Channels
    i < nblk * L, one vector of L channels at a time. (The same loop in plain Numba is not
    vectorised: it has too many streams for LLVM to prove them independent.)"""

    @intrinsic
    def patch_transform(typingctx, src, base, rowstride, cstride, nblk, dst, doff, ds):
        if not (isinstance(src, types.Array) and isinstance(dst, types.Array) and src.dtype == dst.dtype):
            return None
        sig = types.void(src, base, rowstride, cstride, nblk, dst, doff, ds)

        def codegen(context, builder, signature, args):
            sargs = signature.args
            ints = [context.cast(builder, a, t, types.int64) if i not in (0, 5) else a
                    for i, (a, t) in enumerate(zip(args, sargs))]
            src_, base_, rs_, cs_, nblk_, dst_, doff_, ds_ = ints
            dt = sargs[0].dtype
            L = VECTOR_BITS // dt.bitwidth
            vpt = ir.VectorType(context.get_value_type(dt), L).as_pointer()
            sp = context.make_array(sargs[0])(context, builder, src_).data
            dp = context.make_array(sargs[5])(context, builder, dst_).data
            const = lambda k: ir.Constant(ir.IntType(64), k)  # noqa: E731
            with cgutils.for_range(builder, nblk_) as loop:
                off = builder.mul(loop.index, const(L))
                d = [[None] * size for _ in range(size)]
                for r in range(size):
                    for c in range(size):
                        k = builder.add(builder.add(base_, off), builder.add(builder.mul(const(r), rs_), builder.mul(const(c), cs_)))
                        d[r][c] = builder.load(builder.bitcast(builder.gep(sp, [k]), vpt), align=4)
                for xi, val in enumerate(transform(builder, d)):
                    k = builder.add(builder.add(doff_, off), builder.mul(const(xi), ds_))
                    builder.store(val, builder.bitcast(builder.gep(dp, [k]), vpt), align=4)
            return context.get_dummy_value()

        return sig, codegen

    return patch_transform


def _bt_d_b(b, d):
    """V = B^T d B (4x4 input patch, forward and weight gradient): the rows of B^T d are
    [d0 - d2, d1 + d2, d2 - d1, d1 - d3], then the same on the columns."""
    def t(x):
        return [b.fsub(x[0], x[2]), b.fadd(x[1], x[2]), b.fsub(x[2], x[1]), b.fsub(x[1], x[3])]

    cols = [t([d[r][c] for r in range(4)]) for c in range(4)]  # cols[c][a] = (B^T d)[a, c]
    return [v for a in range(4) for v in t([cols[c][a] for c in range(4)])]


def _a_g_at(b, e):
    """D = A g A^T (2x2 block of the output gradient, weight gradient): the rows of A g
    are [g0, g0 + g1, g0 - g1, -g1], then the same on the columns."""
    def t(x):
        return [x[0], b.fadd(x[0], x[1]), b.fsub(x[0], x[1]), b.fneg(x[1])]

    cols = [t([e[r][c] for r in range(2)]) for c in range(2)]  # cols[c][a] = (A g)[a, c]
    return [v for a in range(4) for v in t([cols[c][a] for c in range(2)])]


wino_in = make_patch_transform(4, _bt_d_b)
wino_dy = make_patch_transform(2, _a_g_at)


# The tiles the convolutions use: P rows x NV vectors. 24 accumulators at most, so that
# the accumulators, NV rows of B and a broadcast fit in the 32 vector registers.
tile_6x4 = make_tile(6, 4)
tile_1x4 = make_tile(1, 4)
tile_8x1 = make_tile(8, 1)
tile_1x1 = make_tile(1, 1)


@jit
def _rows_of_tiles(a, a_off, sap, sak, tar, tac, b, b_off, sbk, tbs, c, c_off, scp, K, nth, ntw, rows, nv):
    """C[r, :] += sum_taps A_tap[r, :K] @ B_tap[:K, :] for r in range(rows), in tiles of P
    rows (see gemm_tile). `nv` (4, 2 or 1) vectors per row of C; rows left over at the end
    go in smaller tiles. (6 x 4 vectors: 24 accumulators; measured a few per cent faster
    than 4 x 4 for predict, the same for a training step.)"""
    r = 0
    if nv == 4:
        while r + 6 <= rows:
            tile_6x4(a, a_off + r * sap, sap, sak, tar, tac, b, b_off, sbk, tbs, c, c_off + r * scp, scp, K, nth, ntw)
            r += 6
        while r < rows:
            tile_1x4(a, a_off + r * sap, sap, sak, tar, tac, b, b_off, sbk, tbs, c, c_off + r * scp, scp, K, nth, ntw)
            r += 1
    else:
        while r + 8 <= rows:
            tile_8x1(a, a_off + r * sap, sap, sak, tar, tac, b, b_off, sbk, tbs, c, c_off + r * scp, scp, K, nth, ntw)
            r += 8
        while r < rows:
            tile_1x1(a, a_off + r * sap, sap, sak, tar, tac, b, b_off, sbk, tbs, c, c_off + r * scp, scp, K, nth, ntw)
            r += 1


@jit
def _block(nvec):
    """Vectors per tile row: 4 when the channels allow, else 1. (Fewer tile shapes compile
    faster: each one is inlined into every kernel.)"""
    return 4 if nvec % 4 == 0 else 1
