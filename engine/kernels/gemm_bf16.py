"""The bfloat16 register tile and transforms: gemm_tile's micro-kernel with AVX-512 BF16 dot
products (`vdpbf16ps`), for the Winograd products of winograd4_bf16.py.

    C[P, NV*16] += A[P, 2K] @ B[2K, NV*16]        A, B bfloat16; C and the sums float32

`vdpbf16ps acc, a, b` does acc[j] += a[2j] * b[2j] + a[2j+1] * b[2j+1] for j < 16 (bf16
products, exact in float32, accumulated in float32): twice the multiplies per instruction
of a float32 FMA. So the reduction runs over *pairs* (k, k+1): one step broadcasts A's pair
(p, 2kk), (p, 2kk+1) as one 32-bit lane and multiplies it into a row of B packed as pairs,
B[kk] = [B[2kk, 0], B[2kk+1, 0], B[2kk, 1], B[2kk+1, 1], ...] (layout [K][N][2]).

bfloat16 arrays are numpy uint16 (the top half of a float32's bits), rounded to nearest
even when they are written (`to_bf16`, or `fptrunc` in the transforms: vcvtneps2bf16), so
the inner loop only multiplies. Addressing in the tile is in *pairs* (32-bit units):
    A_pair[p, kk] = a32[a_off + p*sap + kk*sak]
    B_pair[kk, :] = b32[b_off + kk*sbk : ... + NV*16]       (contiguous pairs)
    C[p, :]       = c[c_off + p*scp : ... + NV*16]          (float32, contiguous)
where a32, b32 are the uint16 arrays seen as 32-bit words. No bounds are checked.

The instruction exists only on CPUs with avx512_bf16 (AMD Zen 4 and later, Intel Cooper
Lake / Sapphire Rapids and later). `supported()` says whether it may be used here: the
kernels must never be compiled (LLVM cannot select the intrinsic) or run elsewhere.
"""

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .._numba import host_has, jit
from .gemm_tile import VECTOR_BITS

L = VECTOR_BITS // 32  # float32 lanes: 16; bfloat16 pairs per vector: 16


class _BFloatType(ir.types._BaseFloatType):
    """LLVM's `bfloat` (llvmlite has no such type)."""
    null = "0.0"
    intrinsic_name = "bf16"

    def __str__(self):
        return "bfloat"


_BFloatType._create_instance()
BF16 = _BFloatType()


def supported():
    """True when this process may run the bfloat16 kernels: the CPU has avx512_bf16 and
    Numba compiles for it (NUMBA_CPU_NAME / NUMBA_CPU_FEATURES not pointing elsewhere)."""
    from numba.core import config

    if not host_has("avx512bf16"):  # asked once per process (it was 2% of a large photo's inference)
        return False
    if config.CPU_NAME not in (None, "host"):
        return False
    return config.CPU_FEATURES is None or "+avx512bf16" in config.CPU_FEATURES


def why_unsupported():
    """One line: why `supported()` is False."""
    return ("bfloat16 dot products need a CPU with AVX-512 BF16 (avx512_bf16: AMD Zen 4 or later, "
            "Intel Cooper Lake / Sapphire Rapids or later) and Numba compiling for the host CPU")


@jit(inline="always")
def round_bf16(b):
    """The bfloat16 bits (in a uint32) nearest to the float32 with bits b, ties to even;
    NaN stays NaN."""
    r = (b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    if (b & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000):
        r = (b >> np.uint32(16)) | np.uint32(0x40)
    return r


@jit
def to_bf16(x, out):
    """out (uint16, contiguous, x's size) = x (float32, contiguous) rounded to bfloat16."""
    xf = x.reshape(x.size).view(np.uint32)
    of = out.reshape(out.size)
    for k in range(xf.size):
        of[k] = np.uint16(round_bf16(xf[k]))


def from_bf16(u):
    """bfloat16 bits (uint16 array) -> float32 values (numpy; for tests)."""
    return (np.asarray(u, np.uint16).astype(np.uint32) << 16).view(np.float32)


def _is_u16(a):
    return isinstance(a, types.Array) and a.dtype == types.uint16


def _is_f32(a):
    return isinstance(a, types.Array) and a.dtype == types.float32


def make_tile_bf16(P, NV):
    """Build the intrinsic ``tile(a, a_off, sap, sak, b, b_off, sbk, c, c_off, scp, K)``:
    C[P, NV*16] += sum over K pairs of A_pair (x) B_pair (see the module docstring)."""

    @intrinsic
    def tile(typingctx, a, a_off, sap, sak, b, b_off, sbk, c, c_off, scp, K):
        if not (_is_u16(a) and _is_u16(b) and _is_f32(c)):
            return None
        sig = types.void(a, a_off, sap, sak, b, b_off, sbk, c, c_off, scp, K)

        def codegen(context, builder, signature, args):
            sargs = signature.args
            ints = [context.cast(builder, v, t, types.int64) if i not in (0, 4, 7) else v
                    for i, (v, t) in enumerate(zip(args, sargs))]
            a_, a_off_, sap_, sak_, b_, b_off_, sbk_, c_, c_off_, scp_, K_ = ints
            i32, i64, f32 = ir.IntType(32), ir.IntType(64), ir.FloatType()
            vf = ir.VectorType(f32, L)
            vi = ir.VectorType(i32, L)
            vb = ir.VectorType(BF16, 2 * L)
            ap = builder.bitcast(context.make_array(sargs[0])(context, builder, a_).data, i32.as_pointer())
            bp = builder.bitcast(context.make_array(sargs[4])(context, builder, b_).data, vi.element.as_pointer())
            cp = context.make_array(sargs[7])(context, builder, c_).data
            const = lambda v: ir.Constant(i64, v)  # noqa: E731
            dot = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vf, [vf, vb, vb]), "llvm.x86.avx512bf16.dpbf16ps.512")
            undef = ir.Constant(vi, ir.Undefined)
            splat = ir.Constant(vi, [0] * L)

            acc = []
            for p in range(P):
                row_off = builder.add(c_off_, builder.mul(const(p), scp_))
                for v in range(NV):
                    ptr = builder.bitcast(builder.gep(cp, [builder.add(row_off, const(v * L))]), vf.as_pointer())
                    slot = cgutils.alloca_once(builder, vf)
                    builder.store(builder.load(ptr, align=4), slot)
                    acc.append((slot, ptr))

            with cgutils.for_range(builder, K_) as loop:
                kk = loop.index
                brow = builder.add(b_off_, builder.mul(kk, sbk_))
                bv = [builder.bitcast(builder.load(builder.bitcast(
                    builder.gep(bp, [builder.add(brow, const(v * L))]), vi.as_pointer()), align=4), vb)
                      for v in range(NV)]
                acol = builder.add(a_off_, builder.mul(kk, sak_))
                for p in range(P):
                    s = builder.load(builder.gep(ap, [builder.add(acol, builder.mul(const(p), sap_))]), align=4)
                    sv = builder.shuffle_vector(builder.insert_element(undef, s, ir.Constant(i32, 0)), undef, splat)
                    sv = builder.bitcast(sv, vb)
                    for v in range(NV):
                        slot = acc[p * NV + v][0]
                        builder.store(builder.call(dot, [builder.load(slot), sv, bv[v]]), slot)

            for slot, ptr in acc:
                builder.store(builder.load(slot), ptr, align=4)
            return context.get_dummy_value()

        return sig, codegen

    tile.__name__ = f"tile_bf16_{P}x{NV}"
    return tile


def make_patch_transform_bf16(size, transform, pair=False):
    """gemm_tile.make_patch_transform with bfloat16 results: the transform is computed in
    float32, and each result vector rounded to bfloat16 (nearest even) as it is stored in
    `dst` (uint16; offsets in bfloat16 elements).

    pair=False: ``f(src, base, rowstride, cstride, nblk, dst, doff, ds)``, element xi of the
    patch's transform, channel i, to ``dst[doff + xi*ds + i]`` (as gemm_tile's).
    pair=True: ``f(src0, base0, rs0, cs0, src1, base1, rs1, cs1, nblk, dst, doff, ds)``: two
    patches, channel i of patch j to ``dst[doff + xi*ds + 2*i + j]``: the pair layout the
    tile's K runs over (the weight gradient reduces over blocks)."""
    npatch = 2 if pair else 1

    def typer(args):
        srcs = args[:4 * npatch:4]
        dst = args[4 * npatch + 1]
        if not all(_is_f32(s) for s in srcs) or not _is_u16(dst):
            return None
        return types.void(*args), codegen

    def codegen(context, builder, signature, cargs):
        sargs = signature.args
        ptr_idx = [4 * j for j in range(npatch)] + [4 * npatch + 1]
        ints = [context.cast(builder, a, t, types.int64) if i not in ptr_idx else a
                for i, (a, t) in enumerate(zip(cargs, sargs))]
        f32 = ir.FloatType()
        vpt = ir.VectorType(f32, L).as_pointer()
        vbt = ir.VectorType(BF16, L)
        nblk_, dst_, doff_, ds_ = ints[4 * npatch:]
        dp = builder.bitcast(context.make_array(sargs[4 * npatch + 1])(context, builder, dst_).data,
                             BF16.as_pointer())
        const = lambda k: ir.Constant(ir.IntType(64), k)  # noqa: E731
        pats = []
        for j in range(npatch):
            src_, base_, rs_, cs_ = ints[4 * j:4 * j + 4]
            pats.append((context.make_array(sargs[4 * j])(context, builder, src_).data, base_, rs_, cs_))
        inter = ir.Constant(ir.VectorType(ir.IntType(32), 2 * L), [k // 2 + (k % 2) * L for k in range(2 * L)])
        with cgutils.for_range(builder, nblk_) as loop:
            off = builder.mul(loop.index, const(L))
            outs = []
            for sp, base_, rs_, cs_ in pats:
                d = [[None] * size for _ in range(size)]
                for r in range(size):
                    for c in range(size):
                        k = builder.add(builder.add(base_, off), builder.add(builder.mul(const(r), rs_), builder.mul(const(c), cs_)))
                        d[r][c] = builder.load(builder.bitcast(builder.gep(sp, [k]), vpt), align=4)
                outs.append([builder.fptrunc(v, vbt) for v in transform(builder, d)])
            for xi in range(len(outs[0])):
                k = builder.add(doff_, builder.mul(const(xi), ds_))
                if pair:
                    k = builder.add(k, builder.add(off, off))
                    val = builder.shuffle_vector(outs[0][xi], outs[1][xi], inter)
                    vt = ir.VectorType(BF16, 2 * L)
                else:
                    k = builder.add(k, off)
                    val, vt = outs[0][xi], vbt
                builder.store(val, builder.bitcast(builder.gep(dp, [k]), vt.as_pointer()), align=2)
        return context.get_dummy_value()

    # Numba's intrinsics take no *args: one explicit signature per form
    if pair:
        @intrinsic
        def patch_transform(typingctx, src0, base0, rs0, cs0, src1, base1, rs1, cs1, nblk, dst, doff, ds):
            return typer((src0, base0, rs0, cs0, src1, base1, rs1, cs1, nblk, dst, doff, ds))
    else:
        @intrinsic
        def patch_transform(typingctx, src, base, rowstride, cstride, nblk, dst, doff, ds):
            return typer((src, base, rowstride, cstride, nblk, dst, doff, ds))

    return patch_transform


tile_bf16_6x4 = make_tile_bf16(6, 4)
tile_bf16_4x4 = make_tile_bf16(4, 4)
tile_bf16_1x4 = make_tile_bf16(1, 4)
tile_bf16_8x1 = make_tile_bf16(8, 1)
tile_bf16_1x1 = make_tile_bf16(1, 1)


@jit
def rows_of_tiles_bf16(a, a_off, sap, sak, b, b_off, sbk, c, c_off, scp, K, rows, nv):
    """C[r, :] += A_pair[r, :K] (x) B_pair[:K, :] for r in range(rows) (gemm_tile's
    _rows_of_tiles for the bf16 tile): tiles of 6 rows x 4 vectors, the rest by 4 and 1;
    nv = 1: tiles of 8 x 1 and 1 x 1."""
    r = 0
    if nv == 4:
        while r + 6 <= rows:
            tile_bf16_6x4(a, a_off + r * sap, sap, sak, b, b_off, sbk, c, c_off + r * scp, scp, K)
            r += 6
        while r + 4 <= rows:
            tile_bf16_4x4(a, a_off + r * sap, sap, sak, b, b_off, sbk, c, c_off + r * scp, scp, K)
            r += 4
        while r < rows:
            tile_bf16_1x4(a, a_off + r * sap, sap, sak, b, b_off, sbk, c, c_off + r * scp, scp, K)
            r += 1
    else:
        while r + 8 <= rows:
            tile_bf16_8x1(a, a_off + r * sap, sap, sak, b, b_off, sbk, c, c_off + r * scp, scp, K)
            r += 8
        while r < rows:
            tile_bf16_1x1(a, a_off + r * sap, sap, sak, b, b_off, sbk, c, c_off + r * scp, scp, K)
            r += 1
