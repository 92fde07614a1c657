"""The self-ensemble's per-pixel median, as `np.median(stack, axis=0, out=out)` gives it.

numpy's median partitions the stack along its first axis and, for an even count, takes
the mean of the two middle values, on one thread; it took 4.7% of an ensemble's
inference (56 ms for a 512 x 512 tile of 8 members, against about 130 ms for each
member's pass through the network, in bfloat16 products). Here the k values (k <= 8 in zssr) of a row's pixels are sorted together by a
sorting network of compare-exchanges, vectorised along the row, the rows shared by the
threads. The result is numpy's, bitwise but for the sign of a zero among tied middle
values (-0.0 and 0.0 compare equal, and either may be taken): the middle
value for odd k, for even k the two middle values added in the array's dtype and halved
(numpy's mean of two: a float32 sum divided by 2), NaN where any member is NaN.
"""
import numba
import numpy as np

from .._numba import pjit


@pjit
def _median_kernel(stack, h, w, out, y0, x0):
    # out[y0 + y, x0 + x] = the median of stack[:, y, x] for y < h, x < w (stack and out
    # C-contiguous, so that every tile compiles to one signature per dtype). Row by row (the
    # rows shared by the threads): the k members' values of the row are copied into R
    # (k, w * c), sorted member-wise by odd-even transposition (k rounds of compare-
    # exchanges, each a branch-free loop over the row that LLVM vectorises), and the middle
    # one or two taken.
    k = stack.shape[0]
    c = stack.shape[3]
    n = w * c
    half = k // 2
    for y in numba.prange(h):
        R = np.empty((k, n), stack.dtype)
        bad = np.zeros(n, np.bool_)
        for i in range(k):
            src = stack[i, y]
            r = R[i]
            for x in range(w):
                for ch in range(c):
                    v = src[x, ch]
                    r[x * c + ch] = v
                    bad[x * c + ch] |= v != v
        for rnd in range(k):
            for i in range(rnd % 2, k - 1, 2):
                a, b = R[i], R[i + 1]
                for j in range(n):
                    p, q = a[j], b[j]
                    lt = q < p
                    a[j] = q if lt else p
                    b[j] = p if lt else q
        dst = out[y0 + y]
        for x in range(w):
            for ch in range(c):
                j = x * c + ch
                if bad[j]:
                    dst[x0 + x, ch] = np.nan
                elif k % 2 == 1:
                    dst[x0 + x, ch] = R[half, j]
                else:
                    s = R[half - 1, j] + R[half, j]  # in the stack's dtype, as numpy's mean sums
                    dst[x0 + x, ch] = s * 0.5         # exact: the same as numpy's division by 2


def median_into(stack, out, h=None, w=None, y0=0, x0=0):
    """out[y0:y0 + h, x0:x0 + w] = the median of stack[:, :h, :w] over its first axis,
    bitwise `np.median(stack[:, :h, :w], axis=0)` but for the sign of a tied zero.
    stack (k, H, W, c) and out (..., ..., c): float32 or float64 of one dtype; h, w default
    to the stack's H, W. Non-contiguous arrays are copied (out: through a temporary)."""
    if stack.ndim != 4 or out.ndim != 3 or stack.shape[0] < 1 or out.shape[2] != stack.shape[3]:
        raise ValueError(f"median_into needs stack (k, h, w, c) and out (h, w, c), got {stack.shape} and {out.shape}")
    if stack.dtype != out.dtype or stack.dtype not in (np.float32, np.float64):
        raise ValueError(f"median_into needs float32 or float64 arrays of one dtype, got {stack.dtype} and {out.dtype}")
    h = stack.shape[1] if h is None else int(h)
    w = stack.shape[2] if w is None else int(w)
    if not (0 <= h <= stack.shape[1] and 0 <= w <= stack.shape[2] and 0 <= y0 and y0 + h <= out.shape[0]
            and 0 <= x0 and x0 + w <= out.shape[1]):
        raise ValueError(f"median_into: a {h} x {w} window at ({y0}, {x0}) does not fit stack {stack.shape} and out {out.shape}")
    stack = np.ascontiguousarray(stack)
    if out.flags.c_contiguous:
        _median_kernel(stack, h, w, out, int(y0), int(x0))
    else:
        tmp = np.empty((h, w, out.shape[2]), out.dtype)
        _median_kernel(stack, h, w, tmp, 0, 0)
        out[y0:y0 + h, x0:x0 + w] = tmp
    return out
