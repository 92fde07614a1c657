"""3x3 convolution, zero "same" padding, stride 1: forward, input gradient, weight gradient.

Shapes (channels last), out-of-range pixels of x and dy read as zero:
    x  (N, H, W, Cin)    w (3, 3, Cin, Cout)    b (Cout,)
    y  (N, H, W, Cout)   y[n,h,j,o]     = b[o] + sum_{dh,dw,i} x[n, h+dh-1, j+dw-1, i] * w[dh,dw,i,o]
    dx (N, H, W, Cin)    dx[n,h,j,i]    = sum_{dh,dw,o} dy[n, h-dh+1, j-dw+1, o] * w[dh,dw,i,o]
    dw (3, 3, Cin, Cout) dw[dh,dw,i,o]  = sum_{n,h,j} x[n, h+dh-1, j+dw-1, i] * dy[n,h,j,o]
    db (Cout,)           db[o]          = sum_{n,h,j} dy[n,h,j,o]
(x may also be (H, W, Cin): N = 1.)

The input gradient is itself a convolution: of dy with the kernel turned by 180 degrees and
its channel axes swapped. So one forward kernel serves both directions.

Two levels of API:
* ``conv3x3_forward(x, w, b)`` and ``conv3x3_backward(x, w, dy)``: plain arrays in, new
  arrays out; validate their arguments. For tests, notebooks, and reading.
* ``forward_into``, ``weight_grad_into``: kernels on *padded buffers*, used by the Network
  so that a training step allocates nothing. A padded buffer is (N, H+2, W+2, C): a one-pixel
  halo that is zero and stays zero (kernels write only the interior), with C rounded up to a
  multiple of the vector width (`padded_channels`) and the extra channels zero. The halo is
  the zero padding; the extra channels let every output row be whole vectors.

All loops over pixels, taps and channel blocks are here in plain Numba; the arithmetic of
one register tile is `gemm_tile.make_tile` (C[P, NV*L] += A[P, K] @ B[K, NV*L]).
Parallelism: forward and input gradient give each (row, channel block) to one thread, so the
result does not depend on the thread count. The weight gradient gives each thread a fixed
range of rows and its own partial sums, added in thread order afterwards: the same thread
count gives bitwise the same result.
"""
import os

import numba
import numpy as np

from .._numba import jit, pjit
from . import gemm_bf16, winograd, winograd4, winograd4_bf16
from .gemm_tile import _block, _rows_of_tiles, _rows_of_tiles_fused, dot_1x3, dot_6x3, lanes

POST_NONE, POST_RELU, POST_MASK = 0, 1, 2


def padded_channels(c, dtype):
    """`c` rounded up to a whole number of vectors of `dtype`."""
    L = lanes(dtype)
    return -(-c // L) * L


def padded_buffer(n, h, w, c, dtype):
    """A zeroed (n, h+2, w+2, padded_channels(c)) buffer."""
    return np.zeros((n, h + 2, w + 2, padded_channels(c, dtype)), dtype)


# ---------------------------------------------------------------------------------------
# Kernels on padded buffers
# ---------------------------------------------------------------------------------------

# _TAPS. The direct kernels' 3x3 taps loops: given the literal 3, LLVM (-O3) unrolled them
# into 9 copies of the tile's K loop, each cut in pieces on AVX2: the first layer's
# forward took 6.4-8.9 s to compile and the last layer's (dot tiles) 7.6-10.3 s, the most
# of a first run (2026-12-03, Zen 3, the two forms compiled and timed in one process,
# calls alternated). With the row loop's count a value read at run time (and the column
# loop's too for the dot tiles): 3.7-5.0 s and 2.6-4.2 s; the first layer's forward 1.00-1.02x
# the time at 96x96 (3 -> 64; both loops at run time: 1.2x, its K is only 3 channels), the
# last layer's 0.88-0.93x. The same sums in the same order: bitwise the same results. A
# whole first run (empty cache, `zssr upscale` of a 48x40 image, 12 iterations, at a slow
# hour), alternated with the code before: 29.1, 30.7, 28.8 s against 37.7, 37.3, 36.5 s;
# at a faster hour (`zssr benchmark --cold`) 24.4 and 25.5 s against 26.4 and 28.9 s.
@pjit
def _forward_kernel(xp, w9, bias, yp, post, mask, L):
    # xp (N, H+2, W+2, Cx)   w9 (9, Ci, Co), Ci <= Cx   bias (Co,)   yp (N, H+2, W+2, Co)
    # mask: a buffer shaped like yp (used when post == POST_MASK)
    # yp interior = post(bias + sum_taps xp[shifted] @ w9[tap]); the halo is not touched.
    N, Hp, Wp, Cx = xp.shape
    H = Hp - 2
    W = Wp - 2
    Ci = w9.shape[1]
    Co = w9.shape[2]
    nth = w9.shape[0] // 3  # 3, as a value LLVM cannot see (see _TAPS)
    nv = _block(Co // L)
    bw = nv * L
    nblk = Co // bw
    xf = xp.reshape(xp.size)
    wf = w9.reshape(w9.size)
    yf = yp.reshape(yp.size)
    mf = mask.reshape(mask.size)
    for task in numba.prange(N * H * nblk):
        r = task // nblk
        c0 = (task % nblk) * bw
        n = r // H
        h = r % H
        crow = ((n * Hp + h + 1) * Wp + 1) * Co + c0
        # output pixel j reads xp[h + th, j + tw] for the 3x3 taps (th, tw); the tiles
        # start from the bias and apply `post` as they store (one pass over the row)
        arow = (n * Hp + h) * Wp * Cx
        _rows_of_tiles_fused(xf, arow, Cx, 1, Wp * Cx, Cx, wf, c0, Co, Ci * Co, yf, crow, Co, Ci, nth, 3, W, nv,
                             bias, c0, post, mf)


@pjit
def _forward_few_kernel(xp, wd, bias, yp, post, mask, L):
    # A layer with at most 3 real outputs (the last one, 64 -> 3) and >= L inputs:
    # wd (9, 3, Cx): output o's weights for each tap over the input channels (zero past Ci);
    # yp (N, H+2, W+2, Co), one vector of channels; channels 3.. get their bias (zero).
    # Vectorised over the inputs (gemm_tile.make_dot_tile): 6 pixels x 3 outputs at a time.
    # 0.20-0.23 ms against the output-vectorised direct kernel's 0.75 (96x96, 64 -> 3).
    N, Hp, Wp, Cx = xp.shape
    H = Hp - 2
    W = Wp - 2
    Co = yp.shape[3]
    nk = Cx // L
    nt = wd.shape[0] // 3  # 3, as a value LLVM cannot see (see _TAPS)
    xf = xp.reshape(xp.size)
    wf = wd.reshape(wd.size)
    yf = yp.reshape(yp.size)
    mf = mask.reshape(mask.size)
    for r in numba.prange(N * H):
        n = r // H
        h = r % H
        crow = ((n * Hp + h + 1) * Wp + 1) * Co
        for j in range(W):
            for c in range(Co):
                yf[crow + j * Co + c] = bias[c]
        arow = (n * Hp + h) * Wp * Cx
        j = 0
        while j + 6 <= W:
            dot_6x3(xf, arow + j * Cx, Cx, Wp * Cx, Cx, nk, wf, 0, Cx, 3 * Cx, yf, crow + j * Co, Co, nt, nt)
            j += 6
        while j < W:
            dot_1x3(xf, arow + j * Cx, Cx, Wp * Cx, Cx, nk, wf, 0, Cx, 3 * Cx, yf, crow + j * Co, Co, nt, nt)
            j += 1
        if post == POST_RELU:
            for j in range(W):
                for c in range(3):
                    v = yf[crow + j * Co + c]
                    yf[crow + j * Co + c] = v if v > 0 else 0.0
        elif post == POST_MASK:
            for j in range(W):
                for c in range(3):
                    if not mf[crow + j * Co + c] > 0:
                        yf[crow + j * Co + c] = 0.0


def few_outputs(xp, w9, bias, yp):
    """The weights in `_forward_few_kernel`'s layout when the layer qualifies (one vector of
    outputs of which only the first 3 have weights or a bias, inputs in whole vectors), else None."""
    L = lanes(yp.dtype)
    Ci, Cop = w9.shape[1], w9.shape[2]
    Cx = xp.shape[3]
    if Cop != L or Ci < L or Cx % L or w9[:, :, 3:].any() or bias[3:].any():
        return None
    wd = np.zeros((9, 3, Cx), w9.dtype)
    wd[:, :, :Ci] = w9[:, :, :3].transpose(0, 2, 1)
    return wd


@pjit
def _weight_grad_kernel(xp, dyp, part, dbpart, transposed, L):
    # xp (N, H+2, W+2, Cx)   dyp (N, H+2, W+2, Co)   dbpart (T, Co)
    # part (T, 9, Ci4, Co) ("by input channel": rows i, vectors over o), or, when
    # transposed, (T, 9, Co4, Cx) ("by output channel": rows o, vectors over i; for a layer
    # with few outputs, like the last one). Ci4/Co4 are the channels rounded up to 4: the
    # extra rows read zero channels of the padded buffers.
    # part[t] = this thread's sum over its rows of x[shifted]^T @ dy; dbpart[t] likewise of dy.
    N, Hp, Wp, Cx = xp.shape
    Co = dyp.shape[3]
    H = Hp - 2
    W = Wp - 2
    T = part.shape[0]
    rows = part.shape[2]
    cols = part.shape[3]
    nv = _block(cols // L)
    bw = nv * L
    nblk = cols // bw
    R = N * H
    xf = xp.reshape(xp.size)
    df = dyp.reshape(dyp.size)
    pf = part.reshape(part.size)
    for t in numba.prange(T):
        part[t] = 0.0
        dbpart[t] = 0.0
        for r in range(t * R // T, (t + 1) * R // T):
            n = r // H
            h = r % H
            brow = ((n * Hp + h + 1) * Wp + 1) * Co
            g = df[brow:brow + W * Co]  # (on slices: vectorised; indexed, it was not)
            dbt = dbpart[t]
            for j in range(W):
                for c in range(Co):
                    dbt[c] += g[j * Co + c]
            for tap in range(9):
                arow = ((n * Hp + h + tap // 3) * Wp + tap % 3) * Cx
                cbase = (t * 9 + tap) * rows * cols
                for cb in range(nblk):
                    # K runs over the W pixels of the row
                    if transposed:  # rows: output channels o of dy; vectors: input channels of x
                        _rows_of_tiles(df, brow, 1, Co, 0, 0, xf, arow + cb * bw, Cx, 0,
                                       pf, cbase + cb * bw, cols, W, 1, 1, rows, nv)
                    else:  # rows: input channels i of x; vectors: output channels of dy
                        _rows_of_tiles(xf, arow, 1, Cx, 0, 0, df, brow + cb * bw, Co, 0,
                                       pf, cbase + cb * bw, cols, W, 1, 1, rows, nv)


@jit
def _reduce_partials(part, dbpart, transposed, dw, db):
    # part -> dw (3, 3, Ci, Co) ; dbpart (T, Cop) -> db (Co,), threads added in order.
    # Serial: a few ten thousand additions cost less than waking the threads.
    T = part.shape[0]
    Ci = dw.shape[2]
    Co = dw.shape[3]
    for k in range(9 * Ci):
        tap = k // Ci
        i = k % Ci
        for o in range(Co):
            if transposed:
                s = part[0, tap, o, i]
                for t in range(1, T):
                    s += part[t, tap, o, i]
            else:
                s = part[0, tap, i, o]
                for t in range(1, T):
                    s += part[t, tap, i, o]
            dw[tap // 3, tap % 3, i, o] = s
    for o in range(db.shape[0]):
        s = dbpart[0, o]
        for t in range(1, T):
            s += dbpart[t, o]
        db[o] = s


ALGORITHMS = ("auto", "direct", "winograd", "winograd4", "winograd4bf16")

# What "auto" runs where Winograd applies (the wide layers), chosen by measurement: F(4x4)
# for the forward pass and the input gradient (both `forward_into`) and for the weight
# gradient. Per 64 -> 64 layer 1.4-1.7x less CPU time than F(2x2) at 32-128 pixels (one
# thread, calls alternated); a training step 1.40x (128x128) to 1.54x (96x96), predict
# 512x512 1.53x; with a float32 error ~6x larger (still < 1e-5 of the largest value; see
# winograd4.py). `set_auto` changes both.
AUTO_FORWARD = "winograd4"
AUTO_WEIGHT_GRAD = "winograd4"


def set_auto(name):
    """Make "auto" run `name` ("direct", "winograd", "winograd4" or "winograd4bf16") on the
    wide layers, for the forward pass, the input gradient and the weight gradient, in
    every network of this process; returns the previous (forward, weight gradient) choice.
    "winograd4bf16" (F(4x4) with bfloat16 products, winograd4_bf16.py) is refused with a
    ValueError on CPUs without AVX-512 BF16; float64 layers keep "winograd4" under it."""
    global AUTO_FORWARD, AUTO_WEIGHT_GRAD
    if name not in ALGORITHMS or name == "auto":
        raise ValueError(f"auto must be one of {', '.join(ALGORITHMS[1:])}, got {name!r}")
    if name == "winograd4bf16" and not gemm_bf16.supported():
        raise ValueError(f"winograd4bf16 is not available here: {gemm_bf16.why_unsupported()}")
    old = (AUTO_FORWARD, AUTO_WEIGHT_GRAD)
    AUTO_FORWARD = AUTO_WEIGHT_GRAD = name
    return old


# What "auto" runs in *inference* (Network.predict) on the wide float32 layers, apart from
# training: "auto" (the same as training, float32 products) or "winograd4bf16". Inference
# alone tolerates bfloat16 products: training in float32 and predicting with bfloat16 products
# measured 37.443 dB on Set5 x2 against 37.447 (per image -0.04..+0.02), and the 2592x1944
# x2 job 231 s instead of 301 (README), while bfloat16 in training too moved Set5 by -0.03 dB.
# The default ("auto"): bfloat16 where the CPU has AVX-512 BF16 and the result is large
# enough for it to pay (BF16_MIN_PIXELS: on a 400x300 result it saved 0.3 s of a two-minute
# job, and a first run on a machine compiles its kernels for about 4.5 s more), else
# float32; ZSSR_PRECISION (auto, float32, bfloat16) or `set_precision` choose.
PRECISIONS = ("auto", "float32", "bfloat16")
BF16_MIN_PIXELS = 1_000_000
AUTO_INFERENCE = "auto"
REQUESTED = "auto"


def set_precision(precision):
    """Choose the products of inference's wide float32 layers, in every network of this
    process: "float32" (those of training), "bfloat16" (AVX-512 BF16 CPUs only, else a
    ValueError) or "auto" (bfloat16 where available, for results of at least
    BF16_MIN_PIXELS: see `inference_precision`). Returns the precision a large result gets
    ("float32" or "bfloat16")."""
    global AUTO_INFERENCE, REQUESTED
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "bfloat16" and not gemm_bf16.supported():
        raise ValueError(f"--precision bfloat16 is not available here: {gemm_bf16.why_unsupported()}")
    bf = precision == "bfloat16" or (precision == "auto" and gemm_bf16.supported())
    AUTO_INFERENCE = "winograd4bf16" if bf else "auto"
    REQUESTED = precision
    return inference_precision()


def inference_precision(pixels=None):
    """"bfloat16" or "float32": the products inference's wide layers use for a result of
    `pixels` pixels (None: a large one). Under "auto", results below BF16_MIN_PIXELS get
    float32 (infer.super_resolve asks with its result's size)."""
    if AUTO_INFERENCE != "winograd4bf16":
        return "float32"
    if REQUESTED == "auto" and pixels is not None and pixels < BF16_MIN_PIXELS:
        return "float32"
    return "bfloat16"


def env_precision():
    """ZSSR_PRECISION as set_precision takes it (unset or empty: "auto"; not checked)."""
    return os.environ.get("ZSSR_PRECISION", "").strip().lower() or "auto"


def inference_algorithm(algorithm, dtype):
    """The algorithm inference runs for a network's `algorithm`: an explicit choice stays;
    "auto" on float32 layers follows `set_precision`."""
    if algorithm == "auto" and np.dtype(dtype) == np.float32:
        return AUTO_INFERENCE
    return algorithm


def _choose(algorithm, ci, co, dtype, auto):
    """The algorithm to run for a ci -> co layer: "direct", "winograd", "winograd4" or
    "winograd4bf16"."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
    wino = winograd.applicable(ci, co, dtype)
    if algorithm.startswith("winograd") and not wino:
        raise ValueError(f"{algorithm} needs >= 16 input channels and output channels in blocks of "
                         f"{4 * lanes(dtype)}, got {ci} -> {co}")
    if algorithm == "auto":
        if not wino:
            return "direct"
        algorithm = auto
        if algorithm == "winograd4bf16" and np.dtype(dtype) != np.float32:
            return "winograd4"
    if algorithm == "winograd4bf16":
        if np.dtype(dtype) != np.float32:
            raise ValueError(f"winograd4bf16 is for float32 layers, got {np.dtype(dtype).name}")
        if not gemm_bf16.supported():
            raise ValueError(f"winograd4bf16 is not available here: {gemm_bf16.why_unsupported()}")
    return algorithm


def for_layer(algorithm, ci, co, dtype):
    """A network's algorithm for one of its ci -> co convolutions: a Winograd choice where
    it applies, "auto" on the other layers (the first and the last: the direct kernels, the
    last layer's forward on the few-outputs kernel)."""
    if algorithm.startswith("winograd") and not winograd.applicable(ci, co, dtype):
        return "auto"
    return algorithm


def forward_into(xp, w9, bias, yp, post=POST_NONE, mask=None, algorithm="auto"):
    """yp interior = post(conv(xp, w9) + bias). See the module docstring for the layouts.

    algorithm: "direct" (the tiled direct convolution), "winograd" (F(2x2, 3x3), see
    winograd.py), "winograd4" (F(4x4, 3x3), winograd4.py), "winograd4bf16" (F(4x4) with
    bfloat16 products, winograd4_bf16.py; float32 on AVX-512 BF16 CPUs only) -- all need >= 16
    input channels and whole blocks of output channels -- or "auto": AUTO_FORWARD where
    Winograd applies, else direct."""
    if mask is None:
        mask = yp
    alg = _choose(algorithm, w9.shape[1], w9.shape[2], yp.dtype, AUTO_FORWARD)
    if alg == "winograd4":
        winograd4.forward_into(xp, w9, bias, yp, post, mask)
    elif alg == "winograd4bf16":
        winograd4_bf16.forward_into(xp, w9, bias, yp, post, mask)
    elif alg == "winograd":
        winograd.forward_into(xp, w9, bias, yp, post, mask)
    else:
        # "auto": a layer with 3 outputs (the last one) runs vectorised over its inputs;
        # "direct" keeps the general direct kernel for it (the reference to compare with)
        wd = few_outputs(xp, w9, bias, yp) if algorithm == "auto" else None
        if wd is not None:
            _forward_few_kernel(xp, wd, bias, yp, post, mask, lanes(yp.dtype))
        else:
            _forward_kernel(xp, w9, bias, yp, post, mask, lanes(yp.dtype))


class Partials:
    """Scratch for `weight_grad_into`: one partial sum of dw (and db) per thread.

    Layers with a single vector of output channels (the last layer, 3 -> padded 16) are
    done "by output channel", so that the vectors run over the 64 input channels instead
    of 16 mostly-zero output lanes."""

    def __init__(self, ci, co, dtype):
        L = lanes(dtype)
        t = numba.config.NUMBA_NUM_THREADS
        cip, cop = padded_channels(ci, dtype), padded_channels(co, dtype)
        self.transposed = cop == L and cip > L
        r4 = lambda c: -(-c // 4) * 4  # noqa: E731
        shape = (t, 9, r4(co), cip) if self.transposed else (t, 9, r4(ci), cop)
        self.part = np.zeros(shape, dtype)
        self.dbpart = np.zeros((t, cop), dtype)


def weight_grad_into(xp, dyp, partials, dw, db, algorithm="auto"):
    """dw, db (in place) = gradients of the layer whose input is xp and output gradient dyp.
    algorithm: as for `forward_into` (Winograd F(3x3, 2x2) or F(3x3, 4x4) for the wide
    layers; "auto": AUTO_WEIGHT_GRAD where Winograd applies)."""
    co = dw.shape[3] if dw.shape[3] == dyp.shape[3] else 1  # Winograd: no padded output channels
    alg = _choose(algorithm, dw.shape[2], co, dyp.dtype, AUTO_WEIGHT_GRAD)
    if alg == "winograd4":
        winograd4.weight_grad_into(xp, dyp, dw, db)
        return
    if alg == "winograd4bf16":
        winograd4_bf16.weight_grad_into(xp, dyp, dw, db)
        return
    if alg == "winograd":
        winograd.weight_grad_into(xp, dyp, dw, db)
        return
    p = partials
    _weight_grad_kernel(xp, dyp, p.part, p.dbpart, p.transposed, lanes(dyp.dtype))
    _reduce_partials(p.part, p.dbpart, p.transposed, dw, db)


def pack_forward(w, b, w9, bp):
    """w (3,3,Ci,Co), b (Co,) or None -> w9 (9, Ci, Cop), bp (Cop,), extra columns left zero."""
    ci, co = w.shape[2], w.shape[3]
    np.copyto(w9.reshape(3, 3, w9.shape[1], w9.shape[2])[:, :, :ci, :co], w)
    if b is not None:
        bp[:co] = b


def pack_backward(w, wT9):
    """w (3,3,Ci,Co) -> wT9 (9, Co, Cip): taps turned by 180 degrees, channel axes swapped."""
    ci, co = w.shape[2], w.shape[3]
    np.copyto(wT9.reshape(3, 3, wT9.shape[1], wT9.shape[2])[:, :, :co, :ci], w[::-1, ::-1].transpose(0, 1, 3, 2))


# ---------------------------------------------------------------------------------------
# Plain-array API
# ---------------------------------------------------------------------------------------

def _check_float(name, a, dtype=None):
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(a).__name__}")
    if dtype is None:
        if a.dtype not in (np.float32, np.float64):
            raise ValueError(f"{name} must be float32 or float64, got {a.dtype}")
    elif a.dtype != dtype:
        raise ValueError(f"{name} must have dtype {np.dtype(dtype).name} like x, got {a.dtype}")


def _check_args(x, w, b):
    _check_float("x", x)
    if x.ndim not in (3, 4):
        raise ValueError(f"x must be (H, W, Cin) or (N, H, W, Cin), got shape {x.shape}")
    _check_float("w", w, x.dtype)
    cin = x.shape[-1]
    if w.ndim != 4 or w.shape[:3] != (3, 3, cin) or w.shape[3] < 1:
        raise ValueError(f"w must be (3, 3, {cin}, Cout) for x of shape {x.shape}, got {w.shape}")
    if b is not None:
        _check_float("b", b, x.dtype)
        if b.shape != (w.shape[3],):
            raise ValueError(f"b must be ({w.shape[3]},), got {b.shape}")
    if min(x.shape) < 1:
        raise ValueError(f"x must have at least one pixel and channel, got shape {x.shape}")


def _pad_input(x4):
    n, h, w_, c = x4.shape
    xp = padded_buffer(n, h, w_, c, x4.dtype)
    xp[:, 1:-1, 1:-1, :c] = x4
    return xp


def conv3x3_forward(x, w, b=None, relu=False, algorithm="auto"):
    """y = conv3x3(x, w) + b, optionally followed by ReLU. Returns a new array shaped like x
    with Cout channels. x (H, W, Cin) or (N, H, W, Cin); w (3, 3, Cin, Cout); b (Cout,).
    algorithm: "auto", "direct", "winograd", "winograd4" or "winograd4bf16" (see `forward_into`)."""
    _check_args(x, w, b)
    x4 = x if x.ndim == 4 else x[None]
    n, h, wd, cin = x4.shape
    cout = w.shape[3]
    cop = padded_channels(cout, x.dtype)
    w9 = np.zeros((9, cin, cop), x.dtype)
    bp = np.zeros(cop, x.dtype)
    pack_forward(w, b, w9, bp)
    yp = padded_buffer(n, h, wd, cout, x.dtype)
    forward_into(_pad_input(x4), w9, bp, yp, POST_RELU if relu else POST_NONE, algorithm=algorithm)
    y = np.ascontiguousarray(yp[:, 1:-1, 1:-1, :cout])
    return y if x.ndim == 4 else y[0]


def conv3x3_backward(x, w, dy, need_dx=True, algorithm="auto"):
    """Gradients of a 3x3 convolution: returns (dx, dw, db) given its input x, weights w and
    the gradient dy of the loss with respect to its output (no ReLU: apply `relu_backward`
    first). dx is None when need_dx is False."""
    _check_args(x, w, None)
    _check_float("dy", dy, x.dtype)
    want = x.shape[:-1] + (w.shape[3],)
    if dy.shape != want:
        raise ValueError(f"dy must have shape {want} (x's pixels, Cout channels), got {dy.shape}")
    x4 = x if x.ndim == 4 else x[None]
    dy4 = dy if dy.ndim == 4 else dy[None]
    n, h, wd, cin = x4.shape
    cout = w.shape[3]
    dyp = padded_buffer(n, h, wd, cout, x.dtype)
    dyp[:, 1:-1, 1:-1, :cout] = dy4
    xp = _pad_input(x4)
    dw = np.empty_like(w)
    db = np.empty(cout, x.dtype)
    weight_grad_into(xp, dyp, Partials(cin, cout, x.dtype), dw, db, algorithm=algorithm)
    dx = None
    if need_dx:
        cip = padded_channels(cin, x.dtype)
        wT9 = np.zeros((9, cout, cip), x.dtype)
        pack_backward(w, wT9)
        dxp = padded_buffer(n, h, wd, cin, x.dtype)
        forward_into(dyp, wT9, np.zeros(cip, x.dtype), dxp, algorithm=algorithm)
        dx = np.ascontiguousarray(dxp[:, 1:-1, 1:-1, :cin])
        if x.ndim == 3:
            dx = dx[0]
    return dx, dw, db


try:
    set_precision(env_precision())
except ValueError as e:  # the command line reports it as a user error (cli/main.py); here, float32
    import warnings

    warnings.warn(f"ZSSR_PRECISION ignored: {e}", stacklevel=2)
