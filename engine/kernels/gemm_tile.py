"""The register-blocked micro-kernel that every convolution in the engine runs on.

    C[P, NV*L] += sum over taps (th, tw) of A_tap[P, K] @ B_tap[K, NV*L]

P rows of A times a K-row panel of B, accumulated into a P x (NV*L) tile of C, where L is
the number of lanes of one 512-bit vector (16 float32 or 8 float64). The P*NV accumulators
live in vector registers for the whole K loop: each step loads NV vectors of one row of B,
broadcasts one element of A per row, and issues P*NV fused multiply-adds. With P=4, NV=4
that is 16 FMAs for 4 vector loads and 4 broadcasts, which keeps the FMA units busy.

The vector width is the CPU's (`_numba.NATIVE_BITS`). The data layout is in 512-bit blocks
everywhere; on a CPU without AVX-512 (AVX2: 16 registers of 256 bits, most laptops) a block
is two registers, and a tile whose accumulators would not fit is run as pieces of at most
6 rows x 2 registers, each over the whole K loop (`_pieces`). Left to LLVM, the 512-bit
form on AVX2 kept 48 half-vectors "in registers" that do not exist: a training step on a
96x96 crop took 67-76 ms, against 33 ms in pieces (AMD EPYC Zen 3, 2 threads, 2026-12-03).
The sums are the same, in the same order: both forms give bitwise the same results
(`tests/test_vector_width.py`).

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

Variants, for the layers where the plain tile wastes time (2026-12-02, 96x96, 2 threads):
* fused tiles (`make_tile(..., fused=True)`): start from the bias and apply ReLU or a mask as
  they store, without reading C. The direct forward used to fill its output with the bias,
  accumulate, then apply ReLU, three passes that cost more than the 3 -> 64 first layer's
  products (0.73 -> 0.15 ms); F(4x4)'s products start from zero the same way.
* dot tiles (`make_dot_tile`): for a layer with 3 outputs (the last one), vectorised over the
  64 inputs instead of 16 output lanes of which 13 are padding (0.75 -> 0.21 ms).
* `make_transform_store`: a Winograd output transform that adds the bias, applies the post
  step and stores into the image, instead of going through a scratch block.
"""
import contextlib

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .._numba import NATIVE_BITS, jit

VECTOR_BITS = 512
"""The layout's vector: the kernels keep channels in blocks of 512 bits (16 float32, 8
float64) whatever the CPU, and the intrinsics' arguments count in those blocks."""

REGISTERS = 32 if NATIVE_BITS >= 512 else 16
"""Vector registers of the native width (AVX-512: 32 zmm; AVX2: 16 ymm)."""


class _Emit:
    """What the intrinsics here share: their integer arguments cast to int64 and their
    arrays' data pointers (`args`, in signature order), the layout's lanes L (a 512-bit
    block of the arrays' dtype), the native vector type vt of N lanes (NATIVE_BITS: N = L
    with AVX-512, L/2 with AVX2, where one layout block is two registers), and a few
    emitters. Everything loaded, computed and stored is a native vector."""

    def __init__(self, context, builder, signature, args):
        sargs = signature.args
        self.b = builder
        self.args = [context.make_array(t)(context, builder, v).data if isinstance(t, types.Array)
                     else context.cast(builder, v, t, types.int64) for v, t in zip(args, sargs)]
        dt = next(t.dtype for t in sargs if isinstance(t, types.Array))
        self.L = VECTOR_BITS // dt.bitwidth
        self.N = min(NATIVE_BITS, VECTOR_BITS) // dt.bitwidth
        self.H = self.L // self.N  # native vectors per layout block
        self.vt = ir.VectorType(context.get_value_type(dt), self.N)
        self.vpt = self.vt.as_pointer()
        self.zero = ir.Constant(self.vt, None)
        self.fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(self.vt, [self.vt] * 3), f"llvm.fma.v{self.N}f{dt.bitwidth}")

    def const(self, v):
        return ir.Constant(ir.IntType(64), v)

    @contextlib.contextmanager
    def over_taps(self, nth, ntw, a_off, tar, tac, b_off, tbs):
        """The loops over the taps (th < nth, tw < ntw): yields each tap's offsets into A
        (a_off + th*tar + tw*tac) and into B (b_off + (th*ntw + tw)*tbs)."""
        b = self.b
        with cgutils.for_range(b, nth) as loop_th:
            th = loop_th.index
            with cgutils.for_range(b, ntw) as loop_tw:
                tw = loop_tw.index
                yield (b.add(a_off, b.add(b.mul(th, tar), b.mul(tw, tac))),
                       b.add(b_off, b.mul(b.add(b.mul(th, ntw), tw), tbs)))

    def ptr(self, base, off):
        return self.b.bitcast(self.b.gep(base, [off]), self.vpt)

    def load(self, base, off):
        return self.b.load(self.ptr(base, off), align=4)

    def load_patch(self, src, base, rowstride, cstride, size):
        """The size x size grid of vectors src[base + r*rowstride + c*cstride:][:L]."""
        b = self.b
        return [[self.load(src, b.add(base, b.add(b.mul(self.const(r), rowstride), b.mul(self.const(c), cstride))))
                 for c in range(size)] for r in range(size)]

    def store_post(self, items, dst, post, mask):
        """Store vectors `items` [(value, offset)] into dst after post (an int64 value):
        1 zeroes what is not > 0 (ReLU), 2 zeroes where mask[offset] is not > 0 (the mask is
        read only then), 0 keeps all."""
        b, zero = self.b, self.zero
        is_relu = b.icmp_signed("==", post, self.const(1))
        with b.if_else(b.icmp_signed("==", post, self.const(2))) as (masked, other):
            with masked:
                for val, off in items:
                    keep = b.fcmp_ordered(">", self.load(mask, off), zero)
                    b.store(b.select(keep, val, zero), self.ptr(dst, off), align=4)
            with other:
                for val, off in items:
                    relu = b.select(b.fcmp_ordered(">", val, zero), val, zero)
                    b.store(b.select(is_relu, relu, val), self.ptr(dst, off), align=4)


def lanes(dtype):
    """Elements of `dtype` in one vector register (16 for float32, 8 for float64)."""
    import numpy as np

    return VECTOR_BITS // (8 * np.dtype(dtype).itemsize)


def _pieces(P, NVN):
    """How a tile of P rows x NVN native vectors is cut so that its accumulators, a row of B
    and a broadcast fit in the registers: whole with AVX-512 (at most 24 accumulators of 32
    registers), or a single row (B used once, from memory); with AVX2's 16, pieces of at
    most 6 rows x 2 vectors (12 accumulators, 2 loads of B, 1 broadcast), each running the
    whole loop over taps and K. Every element of
    C is summed in the same order either way, so the results are bitwise the same."""
    if P * NVN + NVN + 1 <= REGISTERS or (P == 1 and NVN + 1 <= REGISTERS):
        return [(range(P), range(NVN))]
    cv = min(NVN, 2)
    rg = max(1, (REGISTERS - cv - 1) // cv)
    return [(range(r, min(P, r + rg)), range(c, min(NVN, c + cv)))
            for c in range(0, NVN, cv) for r in range(0, P, rg)]


def make_tile(P, NV, fused=False):
    """Build the intrinsic
    ``tile(a, a_off, sap, sak, tar, tac, b, b_off, sbk, tbs, c, c_off, scp, K, nth, ntw)``
    for a P x NV-vector tile. One intrinsic serves float32 and float64 alike.

    fused=True builds ``tile(..., ntw, bias, bias_off, post, mask)`` instead, which writes
    C = post(bias + sum of the taps) without reading C: the accumulators start from the NV
    vectors bias[bias_off:], and before the store post 1 (ReLU) zeroes what is not > 0,
    post 2 (mask) zeroes where ``mask`` (laid out like c, same offsets) is not > 0, post 0
    keeps all. The sums are added in the same order as bias-then-unfused, so the result is
    bitwise what the three separate passes (fill with bias, accumulate, post) give, in one
    pass over C instead of three."""

    def typed(a, b, c, args, more=()):
        if not (isinstance(a, types.Array) and isinstance(b, types.Array) and isinstance(c, types.Array)):
            return None
        if not (a.dtype == b.dtype == c.dtype) or a.dtype not in (types.float32, types.float64):
            return None
        if more and not (isinstance(more[0], types.Array) and isinstance(more[3], types.Array)
                         and more[0].dtype == more[3].dtype == a.dtype):
            return None
        return types.void(*args, *more), codegen

    if fused:
        @intrinsic
        def tile(typingctx, a, a_off, sap, sak, tar, tac, b, b_off, sbk, tbs, c, c_off, scp, K, nth, ntw,
                 bias, bias_off, post, mask):
            return typed(a, b, c, (a, a_off, sap, sak, tar, tac, b, b_off, sbk, tbs, c, c_off, scp, K, nth, ntw),
                         (bias, bias_off, post, mask))
    else:
        @intrinsic
        def tile(typingctx, a, a_off, sap, sak, tar, tac, b, b_off, sbk, tbs, c, c_off, scp, K, nth, ntw):
            return typed(a, b, c, (a, a_off, sap, sak, tar, tac, b, b_off, sbk, tbs, c, c_off, scp, K, nth, ntw))

    def codegen(context, builder, signature, args):
        e = _Emit(context, builder, signature, args)
        (ap, a_off_, sap_, sak_, tar_, tac_, bp, b_off_, sbk_, tbs_,
         cp, c_off_, scp_, K_, nth_, ntw_) = e.args[:16]
        N, vt, const = e.N, e.vt, e.const
        undef = ir.Constant(vt, ir.Undefined)
        splat = ir.Constant(ir.VectorType(ir.IntType(32), N), [0] * N)
        if fused:
            bias_p, bias_off_, post_, mask_p = e.args[16:]
        for rows, cols in _pieces(P, NV * e.H):
            # One piece of the tile: its accumulators are allocas that LLVM's mem2reg turns
            # into vector registers, for the whole loop over taps and K.
            acc = {}
            for p in rows:
                row_off = builder.add(c_off_, builder.mul(const(p), scp_))
                for v in cols:
                    off = builder.add(row_off, const(v * N))
                    slot = cgutils.alloca_once(builder, vt)
                    builder.store(e.load(bias_p, builder.add(bias_off_, const(v * N))) if fused else e.load(cp, off), slot)
                    acc[p, v] = (slot, off)

            with e.over_taps(nth_, ntw_, a_off_, tar_, tac_, b_off_, tbs_) as (a_tap, b_tap):
                with cgutils.for_range(builder, K_) as loop:
                    k = loop.index
                    brow = builder.add(b_tap, builder.mul(k, sbk_))
                    bv = {v: e.load(bp, builder.add(brow, const(v * N))) for v in cols}
                    acol = builder.add(a_tap, builder.mul(k, sak_))
                    for p in rows:
                        s = builder.load(builder.gep(ap, [builder.add(acol, builder.mul(const(p), sap_))]))
                        sv = builder.shuffle_vector(builder.insert_element(undef, s, ir.Constant(ir.IntType(32), 0)), undef, splat)
                        for v in cols:
                            slot = acc[p, v][0]
                            builder.store(builder.call(e.fma, [sv, bv[v], builder.load(slot)]), slot)

            if fused:
                e.store_post([(builder.load(slot), off) for slot, off in acc.values()], cp, post_, mask_p)
            else:
                for slot, off in acc.values():
                    builder.store(builder.load(slot), e.ptr(cp, off), align=4)
        return context.get_dummy_value()

    tile.__name__ = f"tile_{P}x{NV}" + ("_fused" if fused else "")
    return tile


def make_dot_tile(P, O):
    """Build the intrinsic ``dot(a, a_off, sap, tar, tac, nk, w, w_off, swo, swt, c, c_off, scp, nth, ntw)``
    for a layer with few outputs (the last one: 64 -> 3), vectorised over the input channels
    instead of the outputs (which would leave 13 of 16 lanes idle):

        c[c_off + p*scp + o] += sum over taps (th, tw), channels i < nk*L of
                                a[a_off + p*sap + th*tar + tw*tac + i] * w[w_off + o*swo + (th*ntw + tw)*swt + i]

    for P pixels p and O outputs o at once: P*O vector accumulators, each step loads P vectors
    of input and O of weights for P*O fused multiply-adds; at the end each accumulator is
    summed across its lanes (a fixed tree: halves added, 16 -> 8 -> 4 -> 2 -> 1) and added to c."""

    @intrinsic
    def dot(typingctx, a, a_off, sap, tar, tac, nk, w, w_off, swo, swt, c, c_off, scp, nth, ntw):
        if not (isinstance(a, types.Array) and isinstance(w, types.Array) and isinstance(c, types.Array)):
            return None
        if not (a.dtype == w.dtype == c.dtype) or a.dtype not in (types.float32, types.float64):
            return None
        sig = types.void(a, a_off, sap, tar, tac, nk, w, w_off, swo, swt, c, c_off, scp, nth, ntw)

        def codegen(context, builder, signature, args):
            e = _Emit(context, builder, signature, args)
            ap, a_off_, sap_, tar_, tac_, nk_, wp, w_off_, swo_, swt_, cp, c_off_, scp_, nth_, ntw_ = e.args
            L, N, H, vt, const, vload, fma = e.L, e.N, e.H, e.vt, e.const, e.load, e.fma
            i32 = ir.IntType(32)
            # Accumulator (p, o, h) holds lanes h*N.. of pixel p's sums for output o. With
            # AVX2 (H = 2) the pixels go in groups whose accumulators fit 16 registers.
            group = P if P * O * H + O * H + H <= REGISTERS else max(1, (REGISTERS - 2 * H) // (O * H))  # weights from memory
            for p0 in range(0, P, group):
                pix = range(p0, min(P, p0 + group))
                acc = {}
                for p in pix:
                    for o in range(O):
                        for h in range(H):
                            slot = cgutils.alloca_once(builder, vt)
                            builder.store(ir.Constant(vt, None), slot)
                            acc[p, o, h] = slot
                with e.over_taps(nth_, ntw_, a_off_, tar_, tac_, w_off_, swt_) as (a_tap, w_tap):
                    with cgutils.for_range(builder, nk_) as loop:
                        k = builder.mul(loop.index, const(L))
                        wv = {(o, h): vload(wp, builder.add(builder.add(w_tap, builder.mul(const(o), swo_)),
                                                            builder.add(k, const(h * N))))
                              for o in range(O) for h in range(H)}
                        for p in pix:
                            for h in range(H):
                                av = vload(ap, builder.add(builder.add(a_tap, builder.mul(const(p), sap_)),
                                                           builder.add(k, const(h * N))))
                                for o in range(O):
                                    slot = acc[p, o, h]
                                    builder.store(builder.call(fma, [av, wv[o, h], builder.load(slot)]), slot)
                for p in pix:
                    for o in range(O):
                        # the sum across the L lanes, a fixed tree (the upper half of the lanes
                        # added to the lower half, L -> L/2 -> ... -> 1); with H = 2 its first
                        # step is the two registers' sum, so the result is bitwise the same
                        v = builder.load(acc[p, o, 0])
                        if H == 2:
                            v = builder.fadd(v, builder.load(acc[p, o, 1]))
                        n = N
                        while n > 1:
                            n //= 2
                            lo = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(i32, n), list(range(n))))
                            hi = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(i32, n), list(range(n, 2 * n))))
                            v = builder.fadd(lo, hi)
                        total = builder.extract_element(v, ir.Constant(i32, 0))
                        ptr = builder.gep(cp, [builder.add(c_off_, builder.add(builder.mul(const(p), scp_), const(o)))])
                        builder.store(builder.fadd(builder.load(ptr), total), ptr)
            return context.get_dummy_value()

        return sig, codegen

    dot.__name__ = f"dot_{P}x{O}"
    return dot


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
            e = _Emit(context, builder, signature, args)
            sp, base_, rs_, cs_, nblk_, dp, doff_, ds_ = e.args
            const = e.const
            # one native vector of channels at a time (two per layout block with AVX2)
            with cgutils.for_range(builder, builder.mul(nblk_, const(e.H))) as loop:
                off = builder.mul(loop.index, const(e.N))
                d = e.load_patch(sp, builder.add(base_, off), rs_, cs_, size)
                for xi, val in enumerate(transform(builder, d)):
                    k = builder.add(builder.add(doff_, off), builder.mul(const(xi), ds_))
                    builder.store(val, e.ptr(dp, k), align=4)
            return context.get_dummy_value()

        return sig, codegen

    return patch_transform


def make_transform_store(size, out, transform):
    """Build an intrinsic ``f(src, base, rowstride, cstride, nblk, dst, doff, drs, dcs, bias, post, mask)``:
    make_patch_transform's transform of a size x size patch, whose out x out results (row-major)
    are stored straight into an image, with the bias added and post applied:

        dst[doff + a*drs + b*dcs + i] = post(result(a, b)[i] + bias[i])

    post 1: ReLU (what is not > 0 becomes 0); 2: zero where mask (laid out like dst, same
    offsets) is not > 0; 0: as it is. The same operations in the same order as transforming
    into a scratch block and adding the bias there, so bitwise the same result, without the
    scratch block's round trip."""

    @intrinsic
    def transform_store(typingctx, src, base, rowstride, cstride, nblk, dst, doff, drs, dcs, bias, post, mask):
        arrays = (src, dst, bias, mask)
        if not all(isinstance(a, types.Array) and a.dtype == src.dtype for a in arrays):
            return None
        sig = types.void(src, base, rowstride, cstride, nblk, dst, doff, drs, dcs, bias, post, mask)

        def codegen(context, builder, signature, args):
            e = _Emit(context, builder, signature, args)
            sp, base_, rs_, cs_, nblk_, dp, doff_, drs_, dcs_, bp, post_, mp = e.args
            const = e.const
            with cgutils.for_range(builder, builder.mul(nblk_, const(e.H))) as loop:
                off = builder.mul(loop.index, const(e.N))
                d = e.load_patch(sp, builder.add(base_, off), rs_, cs_, size)
                bv = e.load(bp, off)
                res = transform(builder, d)
                items = []
                for a in range(out):
                    for b in range(out):
                        k = builder.add(builder.add(doff_, off), builder.add(builder.mul(const(a), drs_), builder.mul(const(b), dcs_)))
                        items.append((builder.fadd(res[a * out + b], bv), k))
                e.store_post(items, dp, post_, mp)
            return context.get_dummy_value()

        return sig, codegen

    return transform_store


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
tile_4x4 = make_tile(4, 4)
tile_1x4 = make_tile(1, 4)
tile_8x1 = make_tile(8, 1)
tile_1x1 = make_tile(1, 1)
# the direct forward's, which write post(bias + sum) in one pass (make_tile's fused=True)
ftile_6x4 = make_tile(6, 4, fused=True)
ftile_1x4 = make_tile(1, 4, fused=True)
ftile_8x1 = make_tile(8, 1, fused=True)
ftile_1x1 = make_tile(1, 1, fused=True)
# layers with at most 3 outputs (the last one, RGB), vectorised over their inputs: 6 pixels
# (18 accumulators) measured about as fast as 4 or 8 (0.20-0.23 ms at 96x96, 64 -> 3)
dot_6x3 = make_dot_tile(6, 3)
dot_1x3 = make_dot_tile(1, 3)


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
        if rows - r >= 4:  # 4 or 5 rows left (64 = 10 x 6 + 4; the thin layers' 3 channels and a zero one)
            tile_4x4(a, a_off + r * sap, sap, sak, tar, tac, b, b_off, sbk, tbs, c, c_off + r * scp, scp, K, nth, ntw)
            r += 4
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
def _rows_of_tiles_fused(a, a_off, sap, sak, tar, tac, b, b_off, sbk, tbs, c, c_off, scp, K, nth, ntw, rows, nv,
                         bias, bias_off, post, mask):
    """As `_rows_of_tiles`, but C[r, :] = post(bias + sum of the taps), C not read (make_tile's
    fused=True): the direct forward pass in one pass over its output."""
    r = 0
    if nv == 4:
        while r + 6 <= rows:
            ftile_6x4(a, a_off + r * sap, sap, sak, tar, tac, b, b_off, sbk, tbs, c, c_off + r * scp, scp, K, nth, ntw,
                      bias, bias_off, post, mask)
            r += 6
        while r < rows:
            ftile_1x4(a, a_off + r * sap, sap, sak, tar, tac, b, b_off, sbk, tbs, c, c_off + r * scp, scp, K, nth, ntw,
                      bias, bias_off, post, mask)
            r += 1
    else:
        while r + 8 <= rows:
            ftile_8x1(a, a_off + r * sap, sap, sak, tar, tac, b, b_off, sbk, tbs, c, c_off + r * scp, scp, K, nth, ntw,
                      bias, bias_off, post, mask)
            r += 8
        while r < rows:
            ftile_1x1(a, a_off + r * sap, sap, sak, tar, tac, b, b_off, sbk, tbs, c, c_off + r * scp, scp, K, nth, ntw,
                      bias, bias_off, post, mask)
            r += 1


@jit
def _block(nvec):
    """Vectors per tile row: 4 when the channels allow, else 1. (Fewer tile shapes compile
    faster: each one is inlined into every kernel.)"""
    return 4 if nvec % 4 == 0 else 1
