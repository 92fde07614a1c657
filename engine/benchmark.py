"""Measurements behind ``zssr benchmark``: the engine's kernels, training step and inference,
against PyTorch on the CPU (when it imports) and against numpy's sgemm.

    from zssr.engine import benchmark
    rows = benchmark.run(quick=True)              # list of dicts, JSON-serialisable
    print(benchmark.format_table(rows))
    print(benchmark.machine())
    print(benchmark.scaling())                    # train_step, 1 thread vs all threads

One row per (op, size)::

    op          "conv3x3 forward" | "conv3x3 input grad" | "conv3x3 weight grad"
                | "train_step" | "predict" | "sgemm"
    size        "128x128" (pixels) or "n=2048" (sgemm)
    ms          median wall time of one call, in milliseconds, after a warm-up call
                (Numba compilation and first-call allocations are excluded)
    gflops      2 * multiply-adds / seconds / 1e9, from the median
    mpx_s       megapixels per second (None for sgemm)
    peer_ms     PyTorch's median for the same op (None without the peer)
    ratio_peer  ms / peer_ms: below 1 means the engine is faster (None without the peer)
    ratio_sgemm gflops / sgemm gflops of the same run: the share of the machine's practical
                fp32 limit that the op reaches

Multiply-adds counted (the 8 x 64 network, per output pixel): forward 224,640 (3->64:
1,728; each 64->64: 36,864; 64->3: 1,728); a training step computes the forward pass, every
layer's weight gradient and every input gradient but the first layer's (the image needs
none): 3 * 224,640 - 1,728 = 672,192. A single 64->64 convolution: 36,864 per pixel for the
forward pass, the input gradient or the weight gradient. Loss, ReLU and optimiser updates are
timed but not counted.

Protocol (see DESIGN.md, "Performance protocol"): the engine and the peer run the same op
on the same data with the same thread count, alternated call by call (ours, peer, ours,
peer, ...) so that machine noise hits both sides; the ratio is taken within the run.
Single-op timings write into preallocated buffers on the engine's side (that is how the
network runs them); PyTorch allocates its outputs as it normally does.

numpy's sgemm is measured in a child process whose environment has every ``OPENBLAS_*``
variable removed: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, set on the development machines,
are read by OpenBLAS when it loads and halve its speed. This process's environment is
never changed.

PyTorch is an optional peer: it is imported only inside the peer functions, never at module
import, and everything here works without it.
"""
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numba
import numpy as np

from ._numba import NATIVE_BITS
from .errors import UserError

#: multiply-adds per output pixel
MACS_CONV64 = 9 * 64 * 64  # one 64 -> 64 convolution: 36,864
NET_WIDTH, NET_DEPTH = 64, 8

OPS_CONV = ("conv3x3 forward", "conv3x3 input grad", "conv3x3 weight grad")
OP_TRAIN, OP_PREDICT, OP_SGEMM = "train_step", "predict", "sgemm"
OPS = OPS_CONV + (OP_TRAIN, OP_PREDICT, OP_SGEMM)

SIZES = {"conv": (64, 128, 256), "train": 128, "predict": 512, "sgemm": 2048}
QUICK_SIZES = {"conv": (128,), "train": 128, "predict": 256, "sgemm": 2048}

PEERS = ("auto", "torch", "none")

# Repetitions: enough calls to fill about `budget` seconds per case (both sides together),
# at least `min` and at most `max`. The first timed call of each side doubles as the probe
# that sets the count, so nothing is thrown away but the warm-up.
_BUDGET = {False: dict(budget=3.0, min=5, max=40), True: dict(budget=1.0, min=3, max=15)}
_WARMUP = 1
# A short rest before each timed call: OpenMP runtimes (PyTorch's, and Numba's "omp"
# threading layer) keep their worker threads spinning for a moment after a parallel region;
# on a machine with as many threads as cores the spinning side would slow the other one down.
_GAP_S = 0.005


def network_macs_per_pixel(width=NET_WIDTH, depth=NET_DEPTH, channels=3):
    """Multiply-adds per output pixel of one forward pass (224,640 for 64 x 8)."""
    if depth == 1:
        return 9 * channels * channels
    return 9 * (channels * width + (depth - 2) * width * width + width * channels)


def train_macs_per_pixel(width=NET_WIDTH, depth=NET_DEPTH, channels=3):
    """Forward + weight gradients + input gradients of all layers but the first."""
    fwd = network_macs_per_pixel(width, depth, channels)
    first = 9 * channels * (width if depth > 1 else channels)
    return 3 * fwd - first


# ---------------------------------------------------------------------------------------
# Cases: one op at one size, the engine's side and (optionally) PyTorch's
# ---------------------------------------------------------------------------------------

@dataclass
class Case:
    """One op at one size. ``ours`` and ``peer`` are argument-free callables that do the
    work once; ``peer`` is None when there is no PyTorch. ``macs`` is the multiply-adds of
    one call, ``pixels`` the output pixels of one call (None when meaningless).
    ``result``, when given, returns the engine's last result as a plain array and ``data``
    holds the inputs (x, w, dy for a convolution): tests use them to check that both sides
    compute the same thing."""

    op: str
    size: str
    macs: float
    pixels: Optional[int]
    ours: Callable[[], object]
    peer: Optional[Callable[[], object]] = None
    result: Optional[Callable[[], np.ndarray]] = None
    data: Optional[dict] = None

    @property
    def flops(self):
        return 2.0 * self.macs


def _label(size):
    return f"{size}x{size}"


def _check_size(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise UserError(f"benchmark size '{name}' must be a positive whole number, got {v!r}")
    return int(v)


def conv_case(kind, size, torch=None, seed=0, dtype=np.float32, algorithm="auto", ci=NET_WIDTH, co=NET_WIDTH):
    """A ci -> co 3x3 convolution (64 -> 64 by default; the network's thin layers are 3 -> 64
    and 64 -> 3) on one size x size image: kind is "forward", "input grad" or "weight grad".
    The engine's side runs the padded-buffer kernels (no allocation) with `algorithm` (see
    conv3x3.forward_into); the peer's runs ``torch.nn.functional.conv2d`` /
    ``aten.convolution_backward`` in NCHW."""
    from .kernels import conv3x3 as K

    if kind not in ("forward", "input grad", "weight grad"):
        raise ValueError(f"kind must be 'forward', 'input grad' or 'weight grad', got {kind!r}")
    size = _check_size("conv", size)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((size, size, ci)).astype(dtype)
    dy = rng.standard_normal((size, size, co)).astype(dtype)
    w = (rng.standard_normal((3, 3, ci, co)) * np.sqrt(2.0 / (9 * ci))).astype(dtype)

    cip, cop = K.padded_channels(ci, dtype), K.padded_channels(co, dtype)
    xp = K.padded_buffer(1, size, size, ci, dtype)
    xp[0, 1:-1, 1:-1, :ci] = x
    dyp = K.padded_buffer(1, size, size, co, dtype)
    dyp[0, 1:-1, 1:-1, :co] = dy
    if kind == "forward":
        w9 = np.zeros((9, ci, cop), dtype)
        bp = np.zeros(cop, dtype)
        K.pack_forward(w, None, w9, bp)
        outp = K.padded_buffer(1, size, size, co, dtype)

        def ours():
            K.forward_into(xp, w9, bp, outp, K.POST_NONE, algorithm=algorithm)

        def result():
            return outp[0, 1:-1, 1:-1, :co].copy()
    elif kind == "input grad":
        wT9 = np.zeros((9, co, cip), dtype)
        K.pack_backward(w, wT9)
        zb = np.zeros(cip, dtype)
        outp = K.padded_buffer(1, size, size, ci, dtype)

        def ours():
            K.forward_into(dyp, wT9, zb, outp, K.POST_NONE, algorithm=algorithm)

        def result():
            return outp[0, 1:-1, 1:-1, :ci].copy()
    else:
        parts = K.Partials(ci, co, dtype)
        dw = np.zeros((3, 3, ci, co), dtype)
        db = np.zeros(co, dtype)

        def ours():
            K.weight_grad_into(xp, dyp, parts, dw, db, algorithm=algorithm)

        def result():
            return dw.copy()

    peer = None
    if torch is not None:
        tdt = torch.float32 if np.dtype(dtype) == np.float32 else torch.float64
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None])).to(tdt)
        gt = torch.from_numpy(np.ascontiguousarray(dy.transpose(2, 0, 1)[None])).to(tdt)
        wt = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1))).to(tdt)
        F = torch.nn.functional
        conv_backward = torch.ops.aten.convolution_backward
        mask = [kind == "input grad", kind == "weight grad", False]

        if kind == "forward":
            def peer():
                with torch.no_grad():
                    return F.conv2d(xt, wt, None, 1, 1)
        else:
            # what autograd calls for a Conv2d layer, asked for one gradient only
            def peer():
                with torch.no_grad():
                    return conv_backward(gt, xt, wt, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, mask)

    op = f"conv3x3 {kind}" if (ci, co) == (NET_WIDTH, NET_WIDTH) else f"conv3x3 {ci}->{co} {kind}"
    return Case(op, _label(size), 9 * ci * co * size * size, size * size, ours, peer, result, dict(x=x, w=w, dy=dy))


def _network(seed=0, dtype=np.float32):
    from .network import Network

    return Network(width=NET_WIDTH, depth=NET_DEPTH, residual=True, bias=False, seed=seed, dtype=dtype)


def torch_network(torch, net):
    """A ``torch.nn.Module`` computing what `net` computes, with `net`'s weights: 3x3
    convolutions with zero padding, ReLU after all but the last, the input added to the
    output when ``net.residual``. Input and output in NCHW."""
    nn = torch.nn
    depth = net.depth

    class PeerNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleList(
                nn.Conv2d(ci, co, 3, padding=1, bias=net.bias) for ci, co in zip(net.widths_in, net.widths_out))

        def forward(self, x):
            h = x
            for l, conv in enumerate(self.convs):
                h = conv(h)
                if l < depth - 1:
                    h = torch.relu_(h)
            return h + x if net.residual else h

    m = PeerNet()
    tdt = torch.float32 if net.dtype == np.float32 else torch.float64
    m.to(tdt)
    with torch.no_grad():
        for conv, w, b in zip(m.convs, net.weights, net.biases):
            conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1))))
            if net.bias:
                conv.bias.copy_(torch.from_numpy(b))
    return m


def _nchw(torch, a):
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)[None]))


def train_case(size, torch=None, seed=0, algorithm="auto"):
    """One training step (forward, MSE loss, backward, plain SGD update, lr 1e-4) of the
    8 x 64 residual network without biases, on a size x size crop (``net.algorithm``)."""
    from .network import train_step
    from .optim import SGD

    size = _check_size("train", size)
    rng = np.random.default_rng(seed)
    x = rng.random((size, size, 3), dtype=np.float32)
    t = np.clip(x + 0.05 * rng.standard_normal(x.shape).astype(np.float32), 0, 1)
    net = _network(seed)
    net.algorithm = algorithm
    opt = SGD(net, lr=1e-4)

    def ours():
        return train_step(net, opt, x, t, loss="mse")

    peer = None
    if torch is not None:
        model = torch_network(torch, net)
        topt = torch.optim.SGD(model.parameters(), lr=1e-4)
        xt, tt = _nchw(torch, x), _nchw(torch, t)
        mse = torch.nn.functional.mse_loss

        def peer():
            topt.zero_grad()
            loss = mse(model(xt), tt)
            loss.backward()
            topt.step()
            return loss

    return Case(OP_TRAIN, _label(size), train_macs_per_pixel() * size * size, size * size, ours, peer)


def predict_case(size, torch=None, seed=0, algorithm="auto"):
    """Inference of the 8 x 64 network on one size x size image (the engine writes into a
    preallocated output; PyTorch runs under ``torch.no_grad()``; ``net.algorithm``, "auto"
    meaning the training's float32 products here, so that both sides do the same arithmetic:
    name "winograd4bf16" to time the bfloat16 products that `zssr upscale` uses by default
    on AVX-512 BF16 CPUs)."""
    size = _check_size("predict", size)
    rng = np.random.default_rng(seed)
    x = rng.random((size, size, 3), dtype=np.float32)
    out = np.empty_like(x)
    net = _network(seed)
    net.algorithm = algorithm

    def ours():
        return net.predict(x, out=out, exact=True)

    peer = None
    if torch is not None:
        model = torch_network(torch, net)
        model.eval()
        xt = _nchw(torch, x)

        def peer():
            with torch.no_grad():
                return model(xt)

    return Case(OP_PREDICT, _label(size), network_macs_per_pixel() * size * size, size * size, ours, peer,
                out.copy, dict(x=x))


def make_case(op, size, torch=None, seed=0):
    """The Case for one of the pixel ops in OPS (all but sgemm)."""
    if op in OPS_CONV:
        return conv_case(op[len("conv3x3 "):], size, torch, seed)
    if op == OP_TRAIN:
        return train_case(size, torch, seed)
    if op == OP_PREDICT:
        return predict_case(size, torch, seed)
    raise ValueError(f"op must be one of {', '.join(OPS[:-1])}, got {op!r}")


def plan(quick=False, sizes=None):
    """The (op, size) pairs `run` measures, in order; sizes are ints (sgemm: n).

    `sizes` overrides the defaults per key: {"conv": [64, ...], "train": 128,
    "predict": 512, "sgemm": 2048}."""
    sz = dict(QUICK_SIZES if quick else SIZES)
    if sizes is not None:
        unknown = set(sizes) - set(sz)
        if unknown:
            raise UserError(f"unknown benchmark size keys {sorted(unknown)}; use {sorted(sz)}")
        sz.update(sizes)
    conv = sz["conv"]
    conv = [conv] if isinstance(conv, (int, np.integer)) else list(conv)
    out = [(op, _check_size("conv", s)) for s in conv for op in OPS_CONV]
    out.append((OP_TRAIN, _check_size("train", sz["train"])))
    out.append((OP_PREDICT, _check_size("predict", sz["predict"])))
    out.append((OP_SGEMM, _check_size("sgemm", sz["sgemm"])))
    return out


# ---------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------

def time_alternated(fns, reps=None, quick=False, warmup=_WARMUP, gap=_GAP_S):
    """Seconds per call of each callable in `fns`, the callables alternated call by call.

    Each is called `warmup` times first (compilation, first-call allocations). Then rounds
    of one call each, in order; the first round also sets the number of rounds when `reps`
    is None (enough to fill the time budget, within bounds). Returns one list per callable."""
    for f in fns:
        for _ in range(warmup):
            f()
    times = [[] for _ in fns]

    def one_round():
        for f, ts in zip(fns, times):
            if gap:
                time.sleep(gap)
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)

    one_round()
    if reps is None:
        b = _BUDGET[bool(quick)]
        spent = sum(ts[0] for ts in times)
        reps = int(min(b["max"], max(b["min"], math.ceil(b["budget"] / max(spent, 1e-9)))))
    for _ in range(int(reps) - 1):
        one_round()
    return times


def _sgemm_script():
    # the child: time n x n float32 matmuls after one warm-up, print the seconds as JSON
    return (
        "import json, sys, time\n"
        "import numpy as np\n"
        "n, reps = int(sys.argv[1]), int(sys.argv[2])\n"
        "rng = np.random.default_rng(0)\n"
        "a = rng.standard_normal((n, n), dtype=np.float32)\n"
        "b = rng.standard_normal((n, n), dtype=np.float32)\n"
        "c = np.empty((n, n), np.float32)\n"
        "np.matmul(a, b, out=c)\n"
        "ts = []\n"
        "for _ in range(reps):\n"
        "    t0 = time.perf_counter()\n"
        "    np.matmul(a, b, out=c)\n"
        "    ts.append(time.perf_counter() - t0)\n"
        "print(json.dumps(ts))\n"
    )


def sgemm_env(threads=None, clean=True):
    """The environment for the sgemm child: this one with every OPENBLAS_* variable removed
    (when `clean`), and OPENBLAS_NUM_THREADS = `threads` when given."""
    if clean:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENBLAS_")}
    else:
        env = dict(os.environ)
    if threads is not None:
        env["OPENBLAS_NUM_THREADS"] = str(int(threads))
    return env


def sgemm_seconds(n=2048, reps=7, threads=None, clean=True, timeout=600):
    """Seconds per n x n float32 matmul (numpy), measured in a child process (see
    `sgemm_env`), after one warm-up call. Returns the list of `reps` timings."""
    n = _check_size("sgemm", n)
    proc = subprocess.run(
        [sys.executable, "-c", _sgemm_script(), str(n), str(int(reps))],
        env=sgemm_env(threads, clean), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"the sgemm child process failed: {tail[0]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def sgemm_gflops(n=2048, reps=7, threads=None, clean=True):
    """numpy sgemm GFLOP/s (2 n^3 / median seconds) in a child process. With `clean` (the
    default) the child runs without the OPENBLAS_* variables: the machine's practical fp32
    limit. ``clean=False`` keeps them, to show what they cost."""
    return 2.0 * float(n) ** 3 / statistics.median(sgemm_seconds(n, reps, threads, clean)) / 1e9


# ---------------------------------------------------------------------------------------
# Threads and the peer
# ---------------------------------------------------------------------------------------

def _import_torch():
    try:
        import torch
    except Exception:  # not installed, or a broken install: the peer is optional
        return None
    return torch


def _resolve_peer(peer):
    if peer not in PEERS:
        raise UserError(f"peer must be one of {', '.join(PEERS)}, got {peer!r}")
    if peer == "none":
        return None
    torch = _import_torch()
    if torch is None and peer == "torch":
        raise UserError("peer 'torch' asked for, but PyTorch does not import (pip install torch==2.13.0)")
    return torch


class _Threads:
    """Sets Numba's (and PyTorch's) thread count for a block, and puts them back after."""

    def __init__(self, threads, torch=None):
        top = numba.config.NUMBA_NUM_THREADS
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, (int, np.integer))
                                    or not 1 <= threads <= top):
            raise UserError(f"threads must be a whole number from 1 to {top}, got {threads!r}")
        self.threads, self.torch = threads, torch

    def __enter__(self):
        self._numba = numba.get_num_threads()
        if self.threads is not None:
            numba.set_num_threads(int(self.threads))
        self.n = numba.get_num_threads()
        if self.torch is not None:
            self._torch = self.torch.get_num_threads()
            self.torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        numba.set_num_threads(self._numba)
        if self.torch is not None:
            self.torch.set_num_threads(self._torch)
        return False


# ---------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------

def _row(case_op, size, seconds, flops, pixels, sgemm, peer_seconds=None):
    ms = statistics.median(seconds) * 1e3
    gflops = flops / (ms / 1e3) / 1e9
    peer_ms = statistics.median(peer_seconds) * 1e3 if peer_seconds else None
    return {
        "op": case_op,
        "size": size,
        "ms": float(ms),
        "gflops": float(gflops),
        "mpx_s": float(pixels / (ms / 1e3) / 1e6) if pixels else None,
        "peer_ms": float(peer_ms) if peer_ms is not None else None,
        "ratio_peer": float(ms / peer_ms) if peer_ms is not None else None,
        "ratio_sgemm": float(gflops / sgemm) if sgemm else None,
    }


def run(quick=False, peer="auto", threads=None, progress=None, sizes=None, reps=None):
    """Measure every op of `plan(quick, sizes)`; returns one row (dict) per op and size.

    Parameters
    ----------
    quick : only 128x128 for the convolutions and 256x256 for predict; fewer repetitions.
    peer : "auto" (PyTorch when it imports), "torch" (required: UserError without it) or
        "none".
    threads : Numba's (and PyTorch's, and the sgemm child's) thread count for the run;
        None keeps Numba's current count. Both are put back afterwards.
    progress : optional callable ``progress(label, done, total)``, called before each case
        (``done`` cases finished out of ``total``) and once at the end with ``label="done"``.
    sizes : overrides of the sizes, see `plan` (tests pass tiny ones).
    reps : timed calls per side and case; None chooses from a time budget.

    sgemm is measured first, in a child process, while this process is idle; its row comes
    last. Every row has the keys op, size, ms, gflops, mpx_s, peer_ms, ratio_peer,
    ratio_sgemm (see the module docstring).
    """
    todo = plan(quick, sizes)
    torch = _resolve_peer(peer)
    total = len(todo)
    tell = progress if progress is not None else (lambda label, done, total: None)
    with _Threads(threads, torch) as th:
        done = 0
        rows = []
        n = dict(todo)[OP_SGEMM]
        tell(f"{OP_SGEMM} n={n}", done, total)
        sg_seconds = sgemm_seconds(n, reps=reps or (3 if quick else 7), threads=th.n)
        sg = 2.0 * float(n) ** 3 / statistics.median(sg_seconds) / 1e9
        done += 1
        for op, size in todo:
            if op == OP_SGEMM:
                continue
            tell(f"{op} {_label(size)}", done, total)
            case = make_case(op, size, torch)
            fns = [case.ours] + ([case.peer] if case.peer is not None else [])
            times = time_alternated(fns, reps=reps, quick=quick)
            rows.append(_row(case.op, case.size, times[0], case.flops, case.pixels, sg,
                             times[1] if len(times) > 1 else None))
            del case, fns
            done += 1
        rows.append(_row(OP_SGEMM, f"n={n}", sg_seconds, 2.0 * float(n) ** 3, None, sg))
        tell("done", total, total)
    return rows


ALGORITHM_SIZES = {"conv": (96, 128), "train": (96, 128), "predict": (512,)}


def compare_algorithms(algorithms=("winograd", "winograd4"), sizes=None, reps=None, quick=False, threads=None,
                       progress=None):
    """The convolution algorithms side by side (Winograd F(2x2) against F(4x4) by default;
    "direct" and "auto" may be named too): per op and size, one case per algorithm, the
    cases alternated call by call. `sizes` overrides ALGORITHM_SIZES per key ("conv":
    the 64 -> 64 layer's forward, input and weight gradients; "train"; "predict").
    Returns one row per op, size and algorithm: {"op", "size", "algorithm", "ms" (median),
    "ratio" (ms / the first algorithm's ms: below 1 is faster)}."""
    sz = dict(ALGORITHM_SIZES)
    sz.update(sizes or {})
    todo = [(op, s) for key, ops in (("conv", OPS_CONV), ("train", (OP_TRAIN,)), ("predict", (OP_PREDICT,)))
            for s in ([sz[key]] if isinstance(sz[key], (int, np.integer)) else sz[key]) for op in ops]
    tell = progress if progress is not None else (lambda label, done, total: None)
    rows = []
    with _Threads(threads):
        for done, (op, size) in enumerate(todo):
            size = _check_size(op, size)
            tell(f"{op} {_label(size)}", done, len(todo))
            if op in OPS_CONV:
                cases = [conv_case(op[len("conv3x3 "):], size, algorithm=a) for a in algorithms]
            elif op == OP_TRAIN:
                cases = [train_case(size, algorithm=a) for a in algorithms]
            else:
                cases = [predict_case(size, algorithm=a) for a in algorithms]
            times = time_alternated([c.ours for c in cases], reps=reps, quick=quick)
            ms = [statistics.median(t) * 1e3 for t in times]
            rows += [{"op": op, "size": _label(size), "algorithm": a, "ms": float(m), "ratio": float(m / ms[0])}
                     for a, m in zip(algorithms, ms)]
            del cases
        tell("done", len(todo), len(todo))
    return rows


def scaling(size=128, reps=None, quick=False, threads=None):
    """train_step on a size x size crop with 1 thread against `threads` (default: all of
    Numba's), alternated call by call. Returns {"op", "size", "threads", "ms_1",
    "ms_n", "speedup" (ms_1 / ms_n), "efficiency" (speedup / threads)}. The target on the
    2-core machines is speedup >= 1.7."""
    top = numba.config.NUMBA_NUM_THREADS if threads is None else threads
    with _Threads(top) as th:
        n = th.n
        case = train_case(size)

        def one():
            numba.set_num_threads(1)
            case.ours()

        def all_():
            numba.set_num_threads(n)
            case.ours()

        t1, tn = time_alternated([one, all_], reps=reps, quick=quick)
    ms1, msn = statistics.median(t1) * 1e3, statistics.median(tn) * 1e3
    return {"op": OP_TRAIN, "size": case.size, "threads": int(n), "ms_1": float(ms1),
            "ms_n": float(msn), "speedup": float(ms1 / msn), "efficiency": float(ms1 / msn / n)}


def _llvm_cpu():
    try:
        import llvmlite.binding as llvm

        return llvm.get_host_cpu_name()
    except (ImportError, RuntimeError):
        return None


def machine():
    """What the numbers were measured on: {"cpu", "cores", "numba_threads",
    "threading_layer", "python", "numpy", "numba", "torch" (None when not installed),
    "openblas_env" (the OPENBLAS_* variables of this process), "llvm_cpu" (the CPU as LLVM
    names it, e.g. znver3: /proc/cpuinfo may say only "AMD EPYC"), "vector_bits" (the width
    the register tiles are built for: 512 with AVX-512, else 256), "load_avg" (1, 5 and 15
    minute load averages, or None: a load near the core count means another program
    competes for the cores and the timings are not worth much)}. Does not import torch.
    Call it after `run` to get the threading layer Numba actually chose."""
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        layer = numba.config.THREADING_LAYER
    try:
        from importlib.metadata import PackageNotFoundError, version

        try:
            tv = version("torch")
        except PackageNotFoundError:
            tv = None
    except ImportError:
        tv = None
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        load = None
    return {
        "cpu": cpu or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "numba_threads": numba.get_num_threads(),
        "threading_layer": layer,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "torch": tv,
        "openblas_env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("OPENBLAS_")},
        "llvm_cpu": _llvm_cpu(),
        "vector_bits": NATIVE_BITS,
        "load_avg": load,
    }


# ---------------------------------------------------------------------------------------
# Presentation
# ---------------------------------------------------------------------------------------

def format_machine(m, torch=True):
    """One line naming the machine of `machine()`: CPU (as LLVM names it, and the vector width
    the tiles are built for), cores, Numba threads, torch's version if asked, load average."""
    line = (f"{m['cpu']} ({m['llvm_cpu']}, {m['vector_bits']}-bit vectors), {m['cores']} cores, "
            f"numba {m['numba']} ({m['numba_threads']} threads), ")
    if torch:
        line += f"torch {m['torch'] or 'absent'}, "
    return line + f"load average {m['load_avg']}"


_COLUMNS = [
    ("op", "op", "{}"),
    ("size", "size", "{}"),
    ("ms", "ms", "{:.3f}"),
    ("gflops", "GFLOP/s", "{:.1f}"),
    ("mpx_s", "Mpx/s", "{:.2f}"),
    ("peer_ms", "torch ms", "{:.3f}"),
    ("ratio_peer", "ours/torch", "{:.2f}"),
    ("ratio_sgemm", "of sgemm", "{:.0%}"),
]


def _cell(row, key, fmt):
    v = row.get(key)
    return "-" if v is None else fmt.format(v)


def format_table(rows, title=None):
    """The rows as a text table (rich, no colour). ours/torch below 1: the engine is faster;
    "of sgemm": GFLOP/s as a share of numpy's sgemm in the same run."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD)
    for i, (_, head, _) in enumerate(_COLUMNS):
        table.add_column(head, justify="left" if i < 2 else "right", no_wrap=True)
    for row in rows:
        table.add_row(*(_cell(row, k, f) for k, _, f in _COLUMNS))
    console = Console(width=120, color_system=None, force_terminal=False, record=True,
                      file=open(os.devnull, "w"))
    try:
        console.print(table)
        return console.export_text().rstrip() + "\n"
    finally:
        console.file.close()


def format_scaling(s):
    """One line for the result of `scaling`."""
    return (f"{s['op']} {s['size']}: 1 thread {s['ms_1']:.1f} ms, {s['threads']} threads "
            f"{s['ms_n']:.1f} ms, speedup {s['speedup']:.2f}x (efficiency {s['efficiency']:.0%})")


# ---------------------------------------------------------------------------------------
# End to end: the main job as a user runs it
# ---------------------------------------------------------------------------------------

E2E_PHOTO = "chelsea"
"""The fixed photo of the end-to-end benchmark: scikit-image's `chelsea` (CC0), cropped to
(25, 0, 425, 300) and halved to 200 x 150, the same as samples/chelsea.png's recipe but made
here with the engine's own bicubic, so that the benchmark needs no file."""


def e2e_photo(size=(150, 200)):
    """The end-to-end benchmark's low-resolution photo, float32 (h, w, 3): (150, 200) is
    samples/chelsea.png's recipe; other sizes resize the same 400 x 300 crop (bicubic), e.g.
    (1944, 2592), the seed's camera size, for the large-photo case."""
    from skimage import data as skdata

    from .kernels.resize import resize

    img = skdata.chelsea()[0:300, 25:425].astype(np.float32) / 255.0
    return np.clip(resize(img, shape=tuple(size)), 0.0, 1.0).astype(np.float32)


def e2e(preset="zssr", iters=None, scale=2.0, progress=None, workdir=None, size=(150, 200)):
    """Run `zssr upscale` (engine.job.upscale_file) on the fixed photo with a preset's
    defaults (or `iters` iterations per step) and return its seconds in all and per phase.

    Returns dict(photo, size, preset, iters, seconds, phases {name: seconds}, iterations,
    ms_per_iteration (training steps and pairs over the iterations))."""
    import tempfile
    from pathlib import Path

    from .io import save_image
    from .job import upscale_file
    from .train import TrainConfig

    cfg = TrainConfig.make(preset, scale=scale, iters=iters)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        src = Path(tmp) / f"{E2E_PHOTO}.png"
        save_image(src, e2e_photo(size))
        r = upscale_file(src, Path(tmp) / "out.png", cfg, progress=progress)
    ph = {k: round(v, 3) for k, v in sorted(r["phases"].items(), key=lambda kv: -kv[1])}
    train = ph.get("train: steps", 0.0) + ph.get("train: pairs", 0.0)
    return dict(photo=E2E_PHOTO, size=f"{size[1]}x{size[0]}", preset=preset, iters=cfg.iters, seconds=round(r["seconds"], 3),
                phases=ph, iterations=r["iterations"],
                ms_per_iteration=round(1e3 * train / max(r["iterations"], 1), 3), precision=r["precision"])


def format_e2e(r):
    """The end-to-end result as a small table: phases, largest first, and the total."""
    lines = [f"zssr upscale {r['photo']} ({r['size']}) x2, preset {r['preset']}, {r['iterations']} iterations: "
             f"{r['seconds']:.1f} s ({r['ms_per_iteration']:.1f} ms per training iteration; inference in "
             f"{r.get('precision', 'float32')} products)"]
    width = max([len(k) for k in r["phases"]] + [5])
    for k, v in r["phases"].items():
        if v < 0.005 * r["seconds"]:
            continue
        lines.append(f"  {k:<{width}}  {v:8.1f} s  {100 * v / r['seconds']:5.1f}%")
    rest = r["seconds"] - sum(r["phases"].values())
    lines.append(f"  {'other':<{width}}  {rest:8.1f} s  {100 * rest / r['seconds']:5.1f}%")
    return "\n".join(lines)


# --------------------------------------------------------------------------- first run

COLD_SIZE = (40, 48)
"""The first-run benchmark's image (h, w): the end-to-end photo, tiny, so that the run is
its compilation (README's "first run on a machine" row)."""
COLD_ITERS = 12


def cold_command(src, dst, iters=COLD_ITERS):
    """The command a first-run benchmark times: `zssr upscale` x2 in a child process."""
    return [sys.executable, "-m", "zssr.cli.main", "upscale", str(src), "-o", str(dst), "--scale", "2",
            "--iters", str(iters)]


def _run_child(cmd, env, timeout):
    """Run cmd in its own session; its wall seconds. Whatever it started (the cache-warming
    child, engine/warm.py) is stopped with it, so nothing of it runs into the next run."""
    import signal

    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        out = ""
        p.returncode = -1
    finally:
        seconds = time.perf_counter() - t0
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (OSError, AttributeError):  # already gone; or no process groups here
            pass
        p.wait()
    if p.returncode != 0:
        last = (out or "").strip().splitlines()[-1:] or ["(no output)"]
        raise UserError(f"the first-run benchmark's child failed (exit {p.returncode}): {last[0]}")
    return seconds


def cold_start(runs=1, iters=COLD_ITERS, workdir=None, timeout=900, progress=None, command=None):
    """Time the first run on a machine: `zssr upscale` of a tiny image (COLD_SIZE,
    `iters` iterations) in a child process with an empty Numba cache (a new temporary
    NUMBA_CACHE_DIR each run), then the same command again on the cache it filled. The
    difference is what compiling costs a first run. The user's own cache is not touched.

    command(src, dst, iters) -> argv: what to time (cold_command when None).
    Returns dict(size, iters, runs [{cold, warm}], cold_median, warm_median) in seconds."""
    import tempfile
    from pathlib import Path

    from .io import save_image

    if int(runs) != runs or runs < 1:
        raise UserError(f"--runs must be a whole number >= 1, got {runs}")
    command = command or cold_command
    out = []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        src = Path(tmp) / f"{E2E_PHOTO}_small.png"
        save_image(src, e2e_photo(COLD_SIZE))
        for k in range(int(runs)):
            cache = Path(tmp) / f"numba-cache-{k}"
            cache.mkdir()
            env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
            row = {}
            for label in ("cold", "warm"):
                if progress:
                    progress(f"run {k + 1}/{runs}: {label}", 2 * k + (label == "warm"), 2 * int(runs))
                dst = Path(tmp) / f"out-{k}-{label}.png"
                row[label] = round(_run_child(command(src, dst, iters), env, timeout), 2)
                if not dst.is_file():
                    raise UserError("the first-run benchmark's child wrote no image")
            out.append(row)
    return dict(size=f"{COLD_SIZE[1]}x{COLD_SIZE[0]}", iters=int(iters), runs=out,
                cold_median=round(statistics.median(r["cold"] for r in out), 2),
                warm_median=round(statistics.median(r["warm"] for r in out), 2))


def format_cold(r):
    lines = [f"first run: zssr upscale of a {r['size']} image x2, {r['iters']} iterations, in a child "
             "process with an empty Numba cache, then again with the cache it filled"]
    for k, row in enumerate(r["runs"], 1):
        lines.append(f"  run {k}: first {row['cold']:.1f} s, again {row['warm']:.1f} s: "
                     f"compiling about {row['cold'] - row['warm']:.1f} s")
    if len(r["runs"]) > 1:
        lines.append(f"  median: first {r['cold_median']:.1f} s, again {r['warm_median']:.1f} s")
    return "\n".join(lines)
