"""The graph runner: forward against the naive reference, whole-network gradient checks,
determinism, learning, and argument checking."""
import numpy as np
import pytest

from zssr import engine
from naive import network_forward


def pair(h=6, w=5, n=None, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    shape = (h, w, 3) if n is None else (n, h, w, 3)
    return rng.random(shape).astype(dtype), rng.random(shape).astype(dtype)


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_forward_and_predict_match_reference(residual, bias):
    net = engine.Network(width=6, depth=4, residual=residual, bias=bias, seed=1, dtype=np.float64)
    for b in net.biases:
        b[...] = np.linspace(-0.1, 0.1, b.size) if bias else 0
    x, _ = pair(7, 5)
    ref = network_forward(net, x)
    assert np.abs(net.forward(x) - ref).max() < 1e-12
    assert np.abs(net.predict(x) - ref).max() < 1e-12
    xb, _ = pair(4, 6, n=3)
    assert np.abs(net.forward(xb) - network_forward(net, xb)).max() < 1e-12


def test_float32_forward_close_to_float64_reference():
    net = engine.Network(width=64, depth=8, residual=True, bias=True, seed=3, dtype=np.float32)
    x, _ = pair(9, 11, dtype=np.float32)
    ref = network_forward(net, x)
    assert np.abs(net.predict(x) - ref).max() / np.abs(ref).max() < 1e-4


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_whole_network_gradients_match_finite_differences(residual, bias):
    """Depth 8, width 4, float64: dE/dparam and dE/dx against central differences of
    E = sum(r * net(x)), relative error < 1e-6."""
    net = engine.Network(width=4, depth=8, residual=residual, bias=bias, seed=7, dtype=np.float64)
    rng = np.random.default_rng(11)
    for b in net.biases:  # non-zero biases so their gradients are exercised
        b[...] = rng.uniform(0.05, 0.2, b.size)
    x, _ = pair(5, 4, seed=2)
    r = rng.standard_normal(x.shape)
    net.forward(x)
    dx = net.backward(r)
    grads = [g.copy() for g in net.grads]

    def energy():
        return float(np.sum(r * net.forward(x)))

    eps = 1e-6
    checked = 0
    for p, g in zip(net.params, grads):
        for _ in range(4):
            idx = tuple(rng.integers(0, s) for s in p.shape)
            old = p[idx]
            p[idx] = old + eps
            ep = energy()
            p[idx] = old - eps
            em = energy()
            p[idx] = old
            fd = (ep - em) / (2 * eps)
            assert abs(fd - g[idx]) <= 1e-6 * max(1.0, abs(fd)), f"param {p.shape}{idx}: {g[idx]} vs {fd}"
            checked += 1
    for _ in range(6):
        idx = tuple(rng.integers(0, s) for s in x.shape)
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        fd = (np.sum(r * net.forward(xp)) - np.sum(r * net.forward(xm))) / (2 * eps)
        assert abs(fd - dx[idx]) <= 1e-6 * max(1.0, abs(fd)), f"x{idx}: {dx[idx]} vs {fd}"
    assert checked == 4 * len(net.params)


def test_loss_gradient_of_training_matches_backward():
    """train_step's fused loss + backward equals forward, loss, backward done separately."""
    net = engine.Network(width=8, depth=3, residual=True, bias=True, seed=0, dtype=np.float64)
    x, t = pair(6, 6)
    e = net.loss_and_backward(x, t, "mse")
    g1 = [g.copy() for g in net.grads]
    y = net.forward(x)
    e2, dy = engine.mse_loss(y, t)
    net.backward(dy)
    assert abs(e - e2) < 1e-12
    for a, b in zip(g1, net.grads):
        assert np.abs(a - b).max() < 1e-12


def test_training_is_bitwise_deterministic():
    def run():
        net = engine.Network(width=16, depth=8, residual=True, bias=False, seed=4)
        opt = engine.Adam(net, lr=1e-3)
        x, t = pair(24, 20, dtype=np.float32)
        losses = [engine.train_step(net, opt, x, t, "l1") for _ in range(5)]
        return losses, [p.copy() for p in net.params]

    l1, p1 = run()
    l2, p2 = run()
    assert l1 == l2
    assert all(np.array_equal(a, b) for a, b in zip(p1, p2))


def test_same_seed_same_weights_other_seed_other_weights():
    a = engine.Network(width=8, depth=3, seed=5)
    b = engine.Network(width=8, depth=3, seed=5)
    c = engine.Network(width=8, depth=3, seed=6)
    assert all(np.array_equal(p, q) for p, q in zip(a.params, b.params))
    assert not np.array_equal(a.params[0], c.params[0])


def test_one_sgd_step_lowers_the_loss():
    net = engine.Network(width=16, depth=8, residual=False, bias=True, seed=0)
    x, t = pair(16, 16, dtype=np.float32)
    opt = engine.SGD(net, lr=1e-2)
    e0 = engine.train_step(net, opt, x, t, "mse")
    e1 = net.loss_and_backward(x, t, "mse")
    assert e1 < e0


def test_overfits_a_tiny_pair():
    """200 steps on one small pair: the loss falls at least tenfold."""
    rng = np.random.default_rng(0)
    t = rng.random((12, 12, 3)).astype(np.float32)
    x = (t + 0.1 * rng.standard_normal(t.shape)).astype(np.float32)
    net = engine.Network(width=16, depth=8, residual=True, bias=False, seed=0, init="zssr")
    opt = engine.Adam(net, lr=2e-3)
    losses = [engine.train_step(net, opt, x, t, "mse") for _ in range(200)]
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])


def test_any_size_down_to_one_pixel():
    net = engine.Network(width=8, depth=8, seed=0)
    for shape in [(1, 1, 3), (1, 7, 3), (5, 1, 3), (2, 3, 5, 3)]:
        x = np.random.default_rng(0).random(shape).astype(np.float32)
        assert net.predict(x).shape == shape
        assert net.forward(x).shape == shape
        assert net.backward(np.ones(shape, np.float32)).shape == shape


def test_predict_writes_into_out():
    net = engine.Network(width=8, depth=3, seed=0)
    x, _ = pair(5, 5, dtype=np.float32)
    out = np.empty_like(x)
    assert net.predict(x, out=out) is out
    assert np.array_equal(out, net.predict(x))


@pytest.mark.parametrize(
    "x,match",
    [
        (np.zeros((4, 4)), r"\(H, W, 3\)"),
        (np.zeros((4, 4, 4)), r"\(H, W, 3\)"),
        (np.zeros((1, 1, 4, 4, 3)), r"\(H, W, 3\)"),
        (np.zeros((4, 4, 3), np.float32), "dtype float64"),
        ([[0.0]], "numpy array"),
    ],
)
def test_bad_inputs_raise(x, match):
    net = engine.Network(width=4, depth=2, dtype=np.float64)
    with pytest.raises(ValueError, match=match):
        net.forward(x)
    with pytest.raises(ValueError, match=match):
        net.predict(x)


def test_bad_construction_and_misuse():
    with pytest.raises(ValueError, match="width"):
        engine.Network(width=0)
    with pytest.raises(ValueError, match="depth"):
        engine.Network(depth=0)
    with pytest.raises(ValueError, match="dtype"):
        engine.Network(dtype=np.int32)
    net = engine.Network(width=4, depth=2)
    with pytest.raises(ValueError, match="forward"):
        net.backward(np.zeros((2, 2, 3), np.float32))
    net.forward(np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ValueError, match=r"dy must be .*\(1, 2, 2, 3\)"):
        net.backward(np.zeros((3, 2, 3), np.float32))
    x, t = pair(3, 3, dtype=np.float32)
    with pytest.raises(ValueError, match="loss must be"):
        net.loss_and_backward(x, t, "huber")
    with pytest.raises(ValueError, match="target must have the shape"):
        net.loss_and_backward(x, t[:2], "mse")


def test_params_and_grads_are_live_and_ordered():
    net = engine.Network(width=8, depth=3, bias=True)
    assert [p.shape for p in net.params] == [(3, 3, 3, 8), (8,), (3, 3, 8, 8), (8,), (3, 3, 8, 3), (3,)]
    assert [g.shape for g in net.grads] == [p.shape for p in net.params]
    net.params[0][...] = 0
    assert not net.weights[0].any()
    assert len(engine.Network(width=8, depth=3, bias=False).params) == 3


def test_zssr_init_keeps_eight_layers_and_lets_deeper_networks_learn():
    """ZSSR's init (variance 0.1 / fan_in) shrinks the signal about 20x in variance per
    hidden layer: at depth 12 the first layer's gradient fell to ~1e-10, under Adam's
    epsilon, and the network never moved. Eight layers keep ZSSR's exact variance; deeper
    ones start with the output scale and first-layer gradient of the eight-layer network."""
    net8 = engine.Network(depth=8, residual=True, bias=False, seed=0, init="zssr")
    for w in net8.weights:
        assert abs(w.var() * 9 * w.shape[2] / 0.1 - 1) < 0.1
    x, t = pair(24, 24, dtype=np.float32)

    def scales(net):
        net.loss_and_backward(x, t, "l1")
        return np.abs(net.forward(x) - x).mean(), np.abs(net.grads[0]).max()

    out8, g8 = scales(net8)
    for depth in (12, 16):
        out, g = scales(engine.Network(depth=depth, residual=True, bias=False, seed=0, init="zssr"))
        assert 0.1 < out / out8 < 10 and 0.1 < g / g8 < 10, (depth, out / out8, g / g8)
