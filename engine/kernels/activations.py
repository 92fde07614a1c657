"""ReLU, the residual add, and the losses, each as a forward/backward pair.

Shapes: any array; losses take y and t of the same shape and return (E, dE/dy).
    relu_forward(x) = max(x, 0)                  relu_backward(y, dy) = dy * (y > 0)
    residual_forward(f, x) = f + x               (backward: the gradient goes to both)
    sse  E = 1/2 sum (y - t)^2     dE/dy = y - t            (the seed's loss)
    mse  E = mean (y - t)^2        dE/dy = 2 (y - t) / n
    l1   E = mean |y - t|          dE/dy = sign(y - t) / n  (0 where y == t)
Inside the Network, ReLU is fused into the convolution kernels (forward: `POST_RELU`,
backward: `POST_MASK` with the layer's own output as the mask); these standalone versions
are the reference and the public API.

Loss sums are deterministic: fixed chunks, summed in chunk order. The loss kernel is serial:
it touches a few hundred thousand numbers at most, less than the cost of waking threads.
"""
import numpy as np

from .._numba import jit

LOSSES = {"sse": 0, "mse": 1, "l1": 2}
_CHUNK = 4096


def relu_forward(x):
    return np.maximum(x, 0).astype(x.dtype, copy=False)


def relu_backward(y, dy):
    """dy * (y > 0), where y is the ReLU's output (or input: the sign is the same)."""
    return np.where(y > 0, dy, 0).astype(dy.dtype, copy=False)


def residual_forward(f, x):
    return f + x


@jit
def _loss_kernel(y, t, dy, kind):
    # y, t, dy: 1-D contiguous, same length n. Writes dy, returns E.
    n = y.size
    nchunk = (n + _CHUNK - 1) // _CHUNK
    part = np.zeros(nchunk, np.float64)
    scale = 1.0 if kind == 0 else 1.0 / n
    for c in range(nchunk):
        s = 0.0
        for i in range(c * _CHUNK, min(n, (c + 1) * _CHUNK)):
            d = y[i] - t[i]
            if kind == 0:
                s += 0.5 * d * d
                dy[i] = d
            elif kind == 1:
                s += d * d
                dy[i] = 2.0 * d * scale
            else:
                s += abs(d)
                dy[i] = (1.0 if d > 0 else (-1.0 if d < 0 else 0.0)) * scale
        part[c] = s
    total = 0.0
    for c in range(nchunk):
        total += part[c]
    return total * scale


def loss_into(y, t, dy, kind):
    """E = loss(y, t); dy (preallocated, contiguous, like y) = dE/dy. Returns E as a float."""
    if kind not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {kind!r}")
    return float(_loss_kernel(y.reshape(-1), t.reshape(-1), dy.reshape(-1), LOSSES[kind]))


def _loss(kind, y, t):
    if not isinstance(y, np.ndarray) or not isinstance(t, np.ndarray) or y.shape != t.shape:
        raise ValueError(f"loss needs two arrays of the same shape, got {getattr(y, 'shape', y)} and {getattr(t, 'shape', t)}")
    y = np.ascontiguousarray(y)
    t = np.ascontiguousarray(t, dtype=y.dtype)
    dy = np.empty_like(y)
    return loss_into(y, t, dy, kind), dy


def sse_loss(y, t):
    """The seed's loss: E = 1/2 sum (y - t)^2 and dE/dy = y - t."""
    return _loss("sse", y, t)


def mse_loss(y, t):
    """E = mean (y - t)^2 and dE/dy = 2 (y - t) / n."""
    return _loss("mse", y, t)


def l1_loss(y, t):
    """E = mean |y - t| and its subgradient sign(y - t) / n."""
    return _loss("l1", y, t)
