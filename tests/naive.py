"""Naive numpy references: obviously correct, slow, float64. The kernels are judged by these.

Every function here is a direct transcription of the formula in the docstring of the
kernel it checks, with explicit zero padding and one matrix product per kernel tap.
"""
import numpy as np


def pad(x):
    """Zero-pad H and W of (N, H, W, C) by one pixel."""
    return np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))


def conv_forward(x, w, b=None):
    """y[n,h,j,o] = b[o] + sum_{dh,dw,i} x[n,h+dh-1,j+dw-1,i] w[dh,dw,i,o]."""
    x4 = x if x.ndim == 4 else x[None]
    n, h, wd, _ = x4.shape
    xp = pad(x4.astype(np.float64))
    y = np.zeros((n, h, wd, w.shape[3]))
    for dh in range(3):
        for dw in range(3):
            y += xp[:, dh:dh + h, dw:dw + wd, :] @ w[dh, dw].astype(np.float64)
    if b is not None:
        y += b
    return y if x.ndim == 4 else y[0]


def conv_backward(x, w, dy):
    """(dx, dw, db) of the convolution above, each by its own sum."""
    x4 = (x if x.ndim == 4 else x[None]).astype(np.float64)
    dy4 = (dy if dy.ndim == 4 else dy[None]).astype(np.float64)
    n, h, wd, _ = x4.shape
    xp = pad(x4)
    dxp = np.zeros_like(xp)
    gw = np.zeros(w.shape)
    for dh in range(3):
        for dw in range(3):
            # each output pixel (h, j) used input pixel (h+dh-1, j+dw-1) with weight w[dh, dw]
            gw[dh, dw] = np.einsum("nhwi,nhwo->io", xp[:, dh:dh + h, dw:dw + wd, :], dy4)
            dxp[:, dh:dh + h, dw:dw + wd, :] += dy4 @ w[dh, dw].astype(np.float64).T
    dx = dxp[:, 1:-1, 1:-1, :]
    db = dy4.sum(axis=(0, 1, 2))
    return (dx if x.ndim == 4 else dx[0]), gw, db


def conv_forward_loops(x, w, b):
    """The same forward with plain loops, for tiny shapes: checks the reference itself."""
    h, wd, ci = x.shape
    co = w.shape[3]
    y = np.zeros((h, wd, co))
    for r in range(h):
        for c in range(wd):
            for o in range(co):
                s = b[o]
                for dh in range(3):
                    for dw in range(3):
                        rr, cc = r + dh - 1, c + dw - 1
                        if 0 <= rr < h and 0 <= cc < wd:
                            for i in range(ci):
                                s += x[rr, cc, i] * w[dh, dw, i, o]
                y[r, c, o] = s
    return y


def network_forward(net, x):
    """The Network's forward pass, layer by layer with the references above."""
    a = x.astype(np.float64)
    for l in range(net.depth):
        b = net.biases[l] if net.bias else None
        a = conv_forward(a, net.weights[l].astype(np.float64), b)
        if l < net.depth - 1:
            a = np.maximum(a, 0)
    return a + x if net.residual else a
