"""Losses against numpy and finite differences; optimisers against their formulas."""
import numpy as np
import pytest

from zssr import engine


@pytest.mark.parametrize("name", ["sse", "mse", "l1"])
def test_losses(name):
    rng = np.random.default_rng(0)
    y, t = rng.random((5, 7, 3)), rng.random((5, 7, 3))
    fn = {"sse": engine.sse_loss, "mse": engine.mse_loss, "l1": engine.l1_loss}[name]
    e, dy = fn(y, t)
    d = y - t
    want = {"sse": 0.5 * np.sum(d * d), "mse": np.mean(d * d), "l1": np.mean(np.abs(d))}[name]
    assert abs(e - want) < 1e-12 * max(1, want)
    eps = 1e-6
    for idx in [(0, 0, 0), (4, 6, 2), (2, 3, 1)]:
        yp, ym = y.copy(), y.copy()
        yp[idx] += eps
        ym[idx] -= eps
        fd = (fn(yp, t)[0] - fn(ym, t)[0]) / (2 * eps)
        assert abs(fd - dy[idx]) < 1e-7, (name, idx, fd, dy[idx])


def test_loss_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        engine.mse_loss(np.zeros((2, 2)), np.zeros((2, 3)))


def test_relu_pair():
    x = np.array([-1.0, 0.0, 2.0])
    assert np.array_equal(engine.relu_forward(x), [0, 0, 2])
    assert np.array_equal(engine.relu_backward(engine.relu_forward(x), np.ones(3)), [0, 0, 1])


def _net_with_grads(seed=0):
    net = engine.Network(width=4, depth=2, bias=True, seed=seed, dtype=np.float64)
    rng = np.random.default_rng(seed)
    for g in net.grads:
        g[...] = rng.standard_normal(g.shape)
    return net


def test_plain_sgd_is_the_seed_update():
    net = _net_with_grads()
    before = [p.copy() for p in net.params]
    engine.SGD(net, lr=0.1).step()
    for p, b, g in zip(net.params, before, net.grads):
        assert np.array_equal(p, b - 0.1 * g)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_and_decay(nesterov):
    net = _net_with_grads()
    p0 = [p.copy() for p in net.params]
    opt = engine.SGD(net, lr=0.1, momentum=0.9, nesterov=nesterov, weight_decay=0.01)
    v = [np.zeros_like(p) for p in p0]
    ps = [p.copy() for p in p0]
    for _ in range(3):
        opt.step()
        for i, g in enumerate(net.grads):
            d = g + 0.01 * ps[i]
            v[i] = 0.9 * v[i] + d
            ps[i] = ps[i] - 0.1 * (d + 0.9 * v[i] if nesterov else v[i])
    for p, q in zip(net.params, ps):
        assert np.abs(p - q).max() < 1e-14


def test_adam_matches_formula():
    net = _net_with_grads()
    ps = [p.copy() for p in net.params]
    m = [np.zeros_like(p) for p in ps]
    v = [np.zeros_like(p) for p in ps]
    opt = engine.Adam(net, lr=0.01)
    for t in range(1, 4):
        opt.step()
        for i, g in enumerate(net.grads):
            m[i] = 0.9 * m[i] + 0.1 * g
            v[i] = 0.999 * v[i] + 0.001 * g * g
            ps[i] = ps[i] - 0.01 * (m[i] / (1 - 0.9 ** t)) / (np.sqrt(v[i] / (1 - 0.999 ** t)) + 1e-8)
    for p, q in zip(net.params, ps):
        assert np.abs(p - q).max() < 1e-13


@pytest.mark.parametrize("make", [lambda n: engine.Adam(n, lr=0.01), lambda n: engine.SGD(n, lr=0.01, momentum=0.9)])
def test_optimizer_state_round_trip(make):
    """Two steps, save state, two more: equals a copy restored from the state doing the same."""
    a = _net_with_grads()
    oa = make(a)
    oa.step()
    oa.step()
    st = oa.state()
    st = {**st, "arrays": [x.copy() for x in st["arrays"]]}
    b = _net_with_grads()
    for p, q in zip(b.params, a.params):
        p[...] = q
    ob = make(b)
    ob.load_state(st)
    oa.step()
    ob.step()
    assert all(np.array_equal(p, q) for p, q in zip(a.params, b.params))


def test_bad_hyperparameters():
    net = engine.Network(width=4, depth=2)
    for kwargs, match in [({"lr": 0}, "lr"), ({"lr": float("nan")}, "lr"), ({"lr": 1, "momentum": 1.0}, "momentum"),
                          ({"lr": 1, "nesterov": True}, "nesterov")]:
        with pytest.raises(ValueError, match=match):
            engine.SGD(net, **kwargs)
    with pytest.raises(ValueError, match="optimizer"):
        engine.make_optimizer("rmsprop", net, 0.1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_adam_equals_the_numpy_reference_bitwise(dtype):
    """Adam.step (one fused Numba pass per array) against Adam._step_numpy (whole-array
    numpy operations), float32 as in training: the same weights and moments, bit for bit."""
    a, b = (engine.Network(width=8, depth=3, bias=True, dtype=dtype) for _ in range(2))
    for p, q in zip(a.params, b.params):
        q[...] = p
    oa, ob = engine.Adam(a, lr=3e-3), engine.Adam(b, lr=3e-3)
    rng = np.random.default_rng(5)
    for _ in range(6):
        for ga, gb in zip(a.grads, b.grads):
            ga[...] = rng.standard_normal(ga.shape) * rng.choice([1e-6, 1.0, 1e3])
            gb[...] = ga
        oa.step()
        ob._step_numpy()
    assert oa.t == ob.t == 6
    assert all(np.array_equal(p, q) for p, q in zip(a.params, b.params))
    assert all(np.array_equal(p, q) for p, q in zip(oa.m + oa.v, ob.m + ob.v))
    assert not np.array_equal(a.params[0], engine.Network(width=8, depth=3, bias=True, dtype=dtype).params[0])
