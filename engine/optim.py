"""Optimisers: they read ``net.grads`` and update ``net.params`` in place.

    SGD   v := momentum * v + (g + wd * p)              (plain SGD when momentum = 0)
          p := p - lr * v                               (heavy ball)
          p := p - lr * (g + wd * p + momentum * v)     (Nesterov)
    Adam  m := b1 m + (1 - b1) g ;  v := b2 v + (1 - b2) g^2
          p := p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

With momentum 0 and no weight decay, SGD is exactly the seed's W := W - lr * dE/dW.
``lr`` is a plain attribute: learning-rate policies set it between steps. ``state()`` and
``load_state()`` give the optimiser's state for checkpoints (plain arrays and numbers).
All updates run in place on preallocated state: a step allocates nothing beyond numpy's
small per-call overhead.
"""
import numpy as np

from ._numba import jit


@jit(fastmath=False, error_model="numpy")
def _adam_kernel(p, g, m, v, b1, b2, k1, k2, c2, eps, step):
    """One Adam update of the flat arrays p, m, v from g, element by element, in the
    arrays' dtype, with exactly the operations (and roundings) of `Adam._step_numpy`:
    no fused multiply-adds (fastmath off), so the two agree bitwise. error_model "numpy":
    no zero-division check per element, which would keep the loop from vectorising."""
    for i in range(p.size):
        gi = g[i]
        mi = m[i] * b1 + gi * k1
        vi = v[i] * b2 + (gi * gi) * k2
        m[i] = mi
        v[i] = vi
        p[i] = p[i] - (mi / (np.sqrt(vi / c2) + eps)) * step


class Optimizer:
    kind = "base"

    def __init__(self, net, lr):
        if not np.isfinite(lr) or lr <= 0:
            raise ValueError(f"lr must be a positive number, got {lr}")
        self.net = net
        self.lr = float(lr)
        self.t = 0
        self._tmp = [np.empty_like(p) for p in net.params]

    def step(self):
        raise NotImplementedError

    def hyper(self):
        return {}

    def state(self):
        """{'t': steps taken, 'lr': ..., plus one array list per moment} for checkpoints."""
        return {"kind": self.kind, "t": self.t, "lr": self.lr, "arrays": self._arrays()}

    def load_state(self, st):
        arrays = st["arrays"]
        mine = self._arrays()
        if len(arrays) != len(mine) or any(a.shape != b.shape for a, b in zip(arrays, mine)):
            raise ValueError("optimizer state does not match the network's parameters")
        for dst, src in zip(mine, arrays):
            dst[...] = src
        self.t = int(st["t"])
        self.lr = float(st["lr"])

    def _arrays(self):
        return []


class SGD(Optimizer):
    kind = "sgd"

    def __init__(self, net, lr=1e-4, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(net, lr)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if nesterov and momentum == 0.0:
            raise ValueError("nesterov needs a momentum > 0")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        self.momentum, self.nesterov, self.weight_decay = float(momentum), bool(nesterov), float(weight_decay)
        self.v = [np.zeros_like(p) for p in net.params] if momentum else []
        self._tmp2 = [np.empty_like(p) for p in net.params] if nesterov else []

    def hyper(self):
        return dict(momentum=self.momentum, nesterov=self.nesterov, weight_decay=self.weight_decay)

    def _arrays(self):
        return self.v

    def step(self):
        self.t += 1
        lr, mu, wd = self.lr, self.momentum, self.weight_decay
        for i, (p, g) in enumerate(zip(self.net.params, self.net.grads)):
            d = self._tmp[i]
            if wd:
                np.multiply(p, wd, out=d)
                d += g
            else:
                np.copyto(d, g)
            if mu:
                v = self.v[i]
                v *= mu
                v += d
                if self.nesterov:
                    e = self._tmp2[i]
                    np.multiply(v, mu, out=e)
                    d += e
                else:
                    np.copyto(d, v)
            d *= lr
            p -= d


class Adam(Optimizer):
    kind = "adam"

    def __init__(self, net, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(net, lr)
        self.b1, self.b2 = float(betas[0]), float(betas[1])
        if not (0.0 <= self.b1 < 1.0 and 0.0 <= self.b2 < 1.0):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        self.eps, self.weight_decay = float(eps), float(weight_decay)
        self.m = [np.zeros_like(p) for p in net.params]
        self.v = [np.zeros_like(p) for p in net.params]
        self._tmp2 = [np.empty_like(p) for p in net.params]

    def hyper(self):
        return dict(betas=(self.b1, self.b2), eps=self.eps, weight_decay=self.weight_decay)

    def _arrays(self):
        return self.m + self.v

    def step(self):
        """The update, one fused pass per parameter array (_adam_kernel); with weight decay,
        or arrays that are not contiguous, the numpy reference (_step_numpy)."""
        ps, gs = self.net.params, self.net.grads
        if self.weight_decay or not all(a.flags.c_contiguous for a in ps + gs + self.m + self.v):
            return self._step_numpy()
        self.t += 1
        c1 = 1.0 - self.b1 ** self.t
        c2 = 1.0 - self.b2 ** self.t
        for p, g, m, v in zip(ps, gs, self.m, self.v):
            f = p.dtype.type  # scalars in the arrays' dtype, as numpy uses them
            _adam_kernel(p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1), f(self.b1), f(self.b2),
                         f(1.0 - self.b1), f(1.0 - self.b2), f(c2), f(self.eps), f(self.lr / c1))

    def _step_numpy(self):
        """The update as whole-array numpy operations: the reference for _adam_kernel."""
        self.t += 1
        b1, b2 = self.b1, self.b2
        c1 = 1.0 - b1 ** self.t
        c2 = 1.0 - b2 ** self.t
        step = self.lr / c1
        for i, (p, g) in enumerate(zip(self.net.params, self.net.grads)):
            m, v, a, b = self.m[i], self.v[i], self._tmp[i], self._tmp2[i]
            if self.weight_decay:
                np.multiply(p, self.weight_decay, out=b)
                b += g
                g = b
            m *= b1
            np.multiply(g, 1.0 - b1, out=a)
            m += a
            v *= b2
            np.multiply(g, g, out=a)
            a *= 1.0 - b2
            v += a
            np.divide(v, c2, out=a)
            np.sqrt(a, out=a)
            a += self.eps
            np.divide(m, a, out=a)
            a *= step
            p -= a


def make_optimizer(name, net, lr, momentum=0.9, nesterov=False, weight_decay=0.0):
    """'sgd' or 'adam' by name (what the CLI and checkpoints use)."""
    if name == "sgd":
        return SGD(net, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    if name == "adam":
        return Adam(net, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {name!r}")
