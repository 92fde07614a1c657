"""Compile on two cores: the first run on a machine warms half of Numba's cache in a child process.

Numba compiles one function at a time (its compiler holds a global lock), and the engine's
kernels take tens of seconds to compile on a first run; every later run loads them from the
cache (`_numba.JIT`: cache=True). On that first run, `start()` launches
``python -m zssr.engine.warm``, which compiles the kernels a training job needs *last* (the
weight gradients, the loss, the optimiser) while the job itself compiles those it needs
first (resizing, the forward passes). When the job reaches a kernel the child has already
cached, Numba loads it instead of compiling it, so the two halves compile side by side.
Nothing else changes: the child only writes Numba's cache, the same files the job would
write, with the same signatures (`warm()` calls the kernels as the job calls them, on tiny
arrays); if the child is slower, or fails, the job compiles that kernel itself as before.

`start()` does nothing when the cache is already warm, when NUMBA_DISABLE_JIT is set, or
when ZSSR_NO_WARM=1 (e.g. for timing the serial compile).
"""
import os
import subprocess
import sys

_started = False


def _kernels():
    """The dispatchers warm() compiles, in its order."""
    from .kernels import activations, conv3x3, median, winograd4
    from . import optim

    return [winograd4._wgrad_kernel, winograd4._wgrad_reduce, conv3x3._weight_grad_kernel,
            conv3x3._reduce_partials, activations._loss_kernel, optim._adam_kernel, median._median_kernel]


def is_cold():
    """True when the cache holds no entry, for the current sources, of the kernels warm()
    compiles (then a first run is about to compile everything)."""
    try:
        for d in _kernels():
            if d._cache._cache_file._load_index():  # {} when absent or stale (sources changed)
                return False
        return True
    except Exception:  # a Numba without these internals: never warm
        return False


def start():
    """Launch the warming child once per process when the cache is cold. Returns the child
    (a subprocess.Popen) or None."""
    global _started
    if _started or os.environ.get("ZSSR_NO_WARM") == "1" or os.environ.get("NUMBA_DISABLE_JIT") == "1":
        return None
    _started = True
    if not is_cold():
        return None
    try:
        return subprocess.Popen([sys.executable, "-m", "zssr.engine.warm"], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        return None


def warm():
    """Compile (into the cache) the kernels a training step needs last, by calling them as
    the job does, on tiny float32 arrays: the wide layers' weight gradient (Winograd
    F(4x4)), the thin layers' (direct, both layouts), the L1/MSE loss, Adam, and the
    self-ensemble's median (needed once the first network is trained). (Not the
    bfloat16 forward of large results' inference, conv3x3.set_precision: a job that needs
    it trains for minutes first, and with it here a small first run took 17.2 s against
    13.8 s without, in one batch.)"""
    import numpy as np

    from .kernels import conv3x3 as K
    from .kernels.activations import loss_into
    from .network import Network
    from .optim import Adam

    f32 = np.float32
    net = Network(residual=True, bias=False, init="zssr", dtype=f32)
    h = w = 8
    xp = K.padded_buffer(1, h, w, net.width, f32)
    dyp = K.padded_buffer(1, h, w, net.width, f32)
    dw = np.zeros((3, 3, net.width, net.width), f32)
    db = np.zeros(net.width, f32)
    K.weight_grad_into(xp, dyp, net._parts[1], dw, db, algorithm=net._alg(1))
    x3 = K.padded_buffer(1, h, w, 3, f32)
    K.weight_grad_into(x3, dyp, net._parts[0], net.dweights[0], net.dbiases[0], algorithm=net._alg(0))
    g3 = K.padded_buffer(1, h, w, 3, f32)
    last = net.depth - 1
    K.weight_grad_into(xp, g3, net._parts[last], net.dweights[last], net.dbiases[last], algorithm=net._alg(last))
    y = np.zeros((1, h, w, 3), f32)
    loss_into(y, y.copy(), np.empty_like(y), "l1")
    Adam(net, lr=1e-3).step()
    from .kernels.median import median_into

    median_into(np.zeros((8, 4, 4, 3), f32), np.zeros((6, 6, 3), f32), 3, 3, 1, 1)


if __name__ == "__main__":
    warm()
