"""The graph runner: `depth` 3x3 convolutions in a chain, ReLU after all but the last.

    layer 0:          3 -> width, ReLU
    layers 1..d-2:    width -> width, ReLU
    layer d-1:        width -> 3           (+ the input, when residual=True)

Forward keeps each layer's output (after its ReLU) in a padded buffer: that output is the
next layer's input, and its sign is the ReLU's derivative, so nothing else is stored.
Backward walks the layers in reverse. For layer l, with g = dE/d(output of l):

    dW_l, db_l  = weight gradient of (input of l, g)
    g_prev      = conv(g, W_l turned 180 degrees, channels swapped) * (input of l > 0)

the last factor being the ReLU of layer l-1 (its output is layer l's input). The first
layer's input gradient is computed only when asked for (`backward(dy, need_dx=True)`).

Buffers are allocated once per input shape (N, H, W) and reused: a training step allocates
nothing. `predict` uses two ping-pong buffers and keeps nothing.
"""
from collections import OrderedDict

import numpy as np

from .kernels import conv3x3 as K
from .kernels.activations import loss_into

_IN = 3  # colour channels in and out


class _Buffers:
    """Everything one input shape needs, allocated once."""

    def __init__(self, net, n, h, w, train):
        dt = net.dtype
        self.shape = (n, h, w)
        self.x = K.padded_buffer(n, h, w, _IN, dt)
        self.out = np.zeros((n, h, w, _IN), dt)
        if train:
            # acts[l] = output of layer l (after ReLU except the last); the input of layer l+1
            self.acts = [K.padded_buffer(n, h, w, co, dt) for co in net.widths_out]
            # gradients of layer outputs: the last layer's own, then two ping-pong buffers
            self.g_last = K.padded_buffer(n, h, w, _IN, dt)
            self.g = [K.padded_buffer(n, h, w, net.width, dt) for _ in range(2)] if net.depth > 1 else []
            self.dout = np.zeros((n, h, w, _IN), dt)
            self.dx = None
        else:
            self.ping = [K.padded_buffer(n, h, w, net.width, dt) for _ in range(2)] if net.depth > 1 else []
            self.last = K.padded_buffer(n, h, w, _IN, dt)


class Network:
    """An eight-layer (by default) 3x3 CNN with hand-written forward and backward passes.

    Parameters
    ----------
    width, depth : channels of the hidden layers (64) and number of convolutions (8).
    residual : add the input to the output (learn the residual over the bicubic image).
    bias : give every layer a bias (the official ZSSR has none).
    seed : initialisation seed; the same seed gives bitwise the same weights.
    init : "he" (normal, variance 2 / fan_in) or "zssr" (normal, variance 0.1 / fan_in,
        ZSSR's, tuned for eight layers: each hidden layer scales the signal's variance by
        about 0.05, so that past eight layers the gradients fall below Adam's epsilon and
        the network never learns; deeper networks get their hidden layers' variance raised
        so that the whole chain starts at the scale of the eight-layer one).
    dtype : np.float32 (training and inference) or np.float64 (gradient checks).

    ``params`` and ``grads`` are lists of the live arrays, [w0, b0, w1, b1, ...] (without
    biases: [w0, w1, ...]); optimisers update ``params`` in place.
    """

    def __init__(self, width=64, depth=8, residual=False, bias=True, seed=0, init="he", dtype=np.float32):
        if int(width) != width or width < 1:
            raise ValueError(f"width must be a positive whole number, got {width}")
        if int(depth) != depth or depth < 1:
            raise ValueError(f"depth must be a positive whole number, got {depth}")
        if np.dtype(dtype) not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        if init not in ("he", "zssr"):
            raise ValueError(f"init must be 'he' or 'zssr', got {init!r}")
        self.width, self.depth = int(width), int(depth)
        self.residual, self.bias, self.seed, self.init = bool(residual), bool(bias), int(seed), init
        self.dtype = np.dtype(dtype)
        self.widths_in = [_IN] + [self.width] * (self.depth - 1)
        self.widths_out = [self.width] * (self.depth - 1) + [_IN]
        self.weights, self.biases = [], []
        self.dweights, self.dbiases = [], []
        for ci, co in zip(self.widths_in, self.widths_out):
            self.weights.append(np.zeros((3, 3, ci, co), self.dtype))
            self.biases.append(np.zeros(co, self.dtype))
            self.dweights.append(np.zeros((3, 3, ci, co), self.dtype))
            self.dbiases.append(np.zeros(co, self.dtype))
        self.reinitialize(self.seed)
        # packed copies of the weights for the kernels (extra channels stay zero)
        self._w9 = [np.zeros((9, ci, K.padded_channels(co, self.dtype)), self.dtype)
                    for ci, co in zip(self.widths_in, self.widths_out)]
        self._bp = [np.zeros(K.padded_channels(co, self.dtype), self.dtype) for co in self.widths_out]
        self._wT9 = [np.zeros((9, co, K.padded_channels(ci, self.dtype)), self.dtype)
                     for ci, co in zip(self.widths_in, self.widths_out)]
        self._parts = [K.Partials(ci, co, self.dtype) for ci, co in zip(self.widths_in, self.widths_out)]
        # convolutions: "auto", "direct", "winograd" (F(2x2)), "winograd4" (F(4x4)) or "winograd4bf16"
        # (F(4x4) with bfloat16 products; float32 on AVX-512 BF16 CPUs) on the wide layers
        self.algorithm = "auto"
        self._zero_bias = [np.zeros(K.padded_channels(ci, self.dtype), self.dtype) for ci in self.widths_in]
        self._cache = OrderedDict()
        self._saved = None

    # -- parameters --------------------------------------------------------------------
    @property
    def params(self):
        if self.bias:
            return [a for wb in zip(self.weights, self.biases) for a in wb]
        return list(self.weights)

    @property
    def grads(self):
        if self.bias:
            return [a for wb in zip(self.dweights, self.dbiases) for a in wb]
        return list(self.dweights)

    def reinitialize(self, seed):
        """Draw fresh weights (zero biases) from `seed`, in place."""
        rng = np.random.default_rng(seed)
        deep = 1.0
        if self.init == "zssr" and self.depth > 8:  # hidden-layer gain g with g^(depth-2) = 0.05^6
            deep = 0.05 ** (6.0 / (self.depth - 2) - 1.0)
        for l, (w, b) in enumerate(zip(self.weights, self.biases)):
            fan_in = 9 * w.shape[2]
            var = (2.0 if self.init == "he" else 0.1 * (deep if 0 < l < self.depth - 1 else 1.0)) / fan_in
            w[...] = rng.standard_normal(w.shape) * np.sqrt(var)
            b[...] = 0.0

    def config(self):
        return dict(width=self.width, depth=self.depth, residual=self.residual, bias=self.bias,
                    seed=self.seed, init=self.init, dtype=self.dtype.name)

    def n_params(self):
        return sum(p.size for p in self.params)

    # -- buffers ---------------------------------------------------------------------------
    def _buffers(self, n, h, w, train):
        key = (n, h, w, train)
        buf = self._cache.get(key)
        if buf is None:
            buf = _Buffers(self, n, h, w, train)
            self._cache[key] = buf
            while len(self._cache) > 8:  # a few shapes (a pyramid) stay; older ones go
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return buf

    def release(self):
        """Drop every cached buffer (memory goes back; the next call allocates again)."""
        self._cache.clear()
        self._saved = None

    def _check_x(self, x, name="x"):
        if not isinstance(x, np.ndarray):
            raise ValueError(f"{name} must be a numpy array of shape (H, W, 3) or (N, H, W, 3)")
        if x.dtype != self.dtype:
            raise ValueError(f"{name} must have dtype {self.dtype.name} (the network's), got {x.dtype}")
        if x.ndim not in (3, 4) or x.shape[-1] != _IN or min(x.shape) < 1:
            raise ValueError(f"{name} must have shape (H, W, 3) or (N, H, W, 3), got {x.shape}")
        return x if x.ndim == 4 else x[None]

    def _pack(self, backward=False):
        for l in range(self.depth):
            K.pack_forward(self.weights[l], self.biases[l] if self.bias else None, self._w9[l], self._bp[l])
            if backward:
                K.pack_backward(self.weights[l], self._wT9[l])

    def _alg(self, l, dx=False, inference=False):
        """self.algorithm for layer l's convolution (its input gradient's when dx; in
        inference, "auto" follows conv3x3.set_precision)."""
        ci, co = self.widths_in[l], self.widths_out[l]
        alg = K.inference_algorithm(self.algorithm, self.dtype) if inference else self.algorithm
        return K.for_layer(alg, co, ci, self.dtype) if dx else K.for_layer(alg, ci, co, self.dtype)

    # -- passes ----------------------------------------------------------------------------
    def forward(self, x):
        """y = network(x) (+ x when residual). Keeps what backward needs. Returns a new array."""
        y = self._forward(self._check_x(x)).out.copy()
        return y if x.ndim == 4 else y[0]

    def _forward(self, x4):
        buf = self._buffers(*x4.shape[:3], train=True)
        self._pack()
        buf.x[:, 1:-1, 1:-1, :_IN] = x4
        src = buf.x
        for l in range(self.depth):
            last = l == self.depth - 1
            K.forward_into(src, self._w9[l], self._bp[l], buf.acts[l], K.POST_NONE if last else K.POST_RELU,
                           algorithm=self._alg(l))
            src = buf.acts[l]
        np.copyto(buf.out, src[:, 1:-1, 1:-1, :_IN])
        if self.residual:
            buf.out += x4
        self._saved = buf
        return buf

    def backward(self, dy, need_dx=True):
        """Fills `grads` from dy = dE/dy (shaped like forward's output); returns dE/dx or None."""
        buf = self._saved
        if buf is None:
            raise ValueError("backward() needs a forward() first")
        ok = isinstance(dy, np.ndarray) and dy.dtype == self.dtype and dy.ndim in (3, 4)
        dy4 = (dy if dy.ndim == 4 else dy[None]) if ok else None
        if dy4 is None or dy4.shape != buf.out.shape:
            raise ValueError(f"dy must be a {self.dtype.name} array shaped like forward's output "
                             f"{buf.out.shape} (or {buf.out.shape[1:]} for N=1), got {getattr(dy, 'shape', type(dy).__name__)}")
        np.copyto(buf.dout, dy4)
        dx = self._backward(buf, need_dx)
        if dx is None:
            return None
        return dx if dy.ndim == 4 else dx[0]

    def _backward(self, buf, need_dx):
        self._pack(backward=True)
        g = buf.g_last
        g[:, 1:-1, 1:-1, :_IN] = buf.dout
        for l in range(self.depth - 1, -1, -1):
            src = buf.acts[l - 1] if l > 0 else buf.x
            K.weight_grad_into(src, g, self._parts[l], self.dweights[l], self.dbiases[l], algorithm=self._alg(l))
            if l > 0:
                g_prev = buf.g[l % 2]
                K.forward_into(g, self._wT9[l], self._zero_bias[l], g_prev, K.POST_MASK, mask=src,
                               algorithm=self._alg(l, dx=True))
                g = g_prev
            elif need_dx:
                if buf.dx is None:
                    buf.dx = K.padded_buffer(*buf.shape, _IN, self.dtype)
                K.forward_into(g, self._wT9[0], self._zero_bias[0], buf.dx)
                dx = buf.dx[:, 1:-1, 1:-1, :_IN].copy()
                if self.residual:
                    dx += buf.dout
                return dx
        return None

    def dead_layers(self):
        """Hidden layers whose output (after ReLU) was zero everywhere in the last forward():
        no gradient reaches the layers before them, so the network cannot learn."""
        buf = self._saved
        if buf is None:
            return []
        return [l for l in range(self.depth - 1) if not buf.acts[l].any()]

    def predict(self, x, out=None, exact=False):
        """Inference: y = network(x) (+ x). Keeps nothing for backward; reuses its buffers.

        `out`, if given, receives the result (shaped like x) and is returned. With
        self.algorithm "auto", the wide float32 layers use the inference precision of
        `conv3x3.set_precision` (bfloat16 products on AVX-512 BF16 CPUs by default);
        exact=True uses the training's arithmetic instead (float32 products), as the
        checks made during training do."""
        x4 = self._check_x(x)
        buf = self._buffers(*x4.shape[:3], train=False)
        self._pack()
        buf.x[:, 1:-1, 1:-1, :_IN] = x4
        src = buf.x
        for l in range(self.depth):
            last = l == self.depth - 1
            dst = buf.last if last else buf.ping[l % 2]
            K.forward_into(src, self._w9[l], self._bp[l], dst, K.POST_NONE if last else K.POST_RELU,
                           algorithm=self._alg(l, inference=not exact))
            src = dst
        y = np.empty(x.shape, self.dtype) if out is None else out
        y4 = y if y.ndim == 4 else y[None]
        np.copyto(y4, src[:, 1:-1, 1:-1, :_IN])
        if self.residual:
            y4 += x4
        return y

    # -- training --------------------------------------------------------------------------
    def loss_and_backward(self, x, target, loss="mse"):
        """Forward, loss against target, backward (no input gradient). Returns the loss."""
        x4 = self._check_x(x)
        t4 = self._check_x(target, "target")
        if t4.shape != x4.shape:
            raise ValueError(f"target must have the shape of x {x.shape}, got {target.shape}")
        buf = self._forward(x4)
        e = loss_into(buf.out, t4, buf.dout, loss)
        self._backward(buf, need_dx=False)
        return e


def train_step(net, opt, x, target, loss="mse"):
    """One forward, backward and optimiser update on (x, target). Returns the loss."""
    e = net.loss_and_backward(x, target, loss)
    opt.step()
    return e
