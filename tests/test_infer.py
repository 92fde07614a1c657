"""Inference: scale schedule, tiling (bitwise), self-ensemble, back-projection, the loop."""

import math

import numpy as np
import pytest

from zssr import engine
from zssr.engine.errors import UserError
from zssr.engine.infer import apply_network, back_project, bicubic, scale_schedule, super_resolve
from zssr.engine.kernels.resize import resize


def tiny_net(depth=3, width=4, seed=1):
    return engine.Network(width=width, depth=depth, residual=True, bias=False, seed=seed,
                          dtype=np.float32)


def rand_image(h=20, w=23, seed=0):
    return np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)


# ----------------------------------------------------------------------------- schedule


def test_schedule_x4_in_two_steps():
    assert scale_schedule((125, 125), scale=4, steps=2) == [(250, 250), (500, 500)]


def test_schedule_one_step_is_the_target():
    assert scale_schedule((100, 100), scale=2) == [(200, 200)]
    assert scale_schedule((100, 70), scale=(2, 3)) == [(200, 210)]


def test_schedule_exact_products_are_not_rounded_up():
    # 100 * 1.1 = 110.00000000000001 in floating point: still 110, not 111
    assert scale_schedule((100, 100), scale=1.1) == [(110, 110)]


def test_schedule_non_integer_scale():
    # ceil(in * 1.5), as MATLAB's imresize
    assert scale_schedule((10, 13), scale=1.5) == [(15, 20)]
    sched = scale_schedule((10, 13), scale=1.5, steps=3)
    assert len(sched) == 3 and sched[-1] == (15, 20)
    f = 1.5 ** (1 / 3)
    assert sched[0] == (round(10 * f), round(13 * f))
    assert sched[1] == (round(10 * f * f), round(13 * f * f))


@pytest.mark.parametrize("size", [(40, 90), (90, 40), (31, 17)])
def test_schedule_size_any_aspect(size):
    sched = scale_schedule((30, 17), size=size, steps=2)
    assert sched[-1] == size
    h, w = sched[0]
    assert 30 <= h <= size[0] and 17 <= w <= size[1]
    assert h == round(30 * math.sqrt(size[0] / 30))
    assert w == round(17 * math.sqrt(size[1] / 17))


def test_schedule_sizes_grow():
    sched = scale_schedule((50, 60), scale=3, steps=4)
    prev = (50, 60)
    for hw in sched:
        assert hw[0] >= prev[0] and hw[1] >= prev[1]
        prev = hw
    assert sched[-1] == (150, 180)


@pytest.mark.parametrize("scale", [0, -2, float("nan"), float("inf"), -float("inf"), 0.5, (2, 0.9)])
def test_schedule_bad_scale(scale):
    with pytest.raises(UserError):
        scale_schedule((20, 20), scale=scale)


@pytest.mark.parametrize("size", [(10, 40), (40, 19), (20, 20), (0, 40)])
def test_schedule_bad_size(size):
    with pytest.raises(UserError):
        scale_schedule((20, 20), size=size)


def test_schedule_bad_arguments():
    with pytest.raises(UserError):
        scale_schedule((20, 20))  # neither
    with pytest.raises(UserError):
        scale_schedule((20, 20), scale=2, size=(40, 40))  # both
    with pytest.raises(UserError):
        scale_schedule((20, 20), scale=1)  # nothing to do
    for steps in (0, -1, 1.5):
        with pytest.raises(UserError):
            scale_schedule((20, 20), scale=2, steps=steps)


# ----------------------------------------------------------------------------- apply_network


def test_apply_network_plain_is_predict():
    net, x = tiny_net(), rand_image()
    assert np.array_equal(apply_network(net, x), net.predict(x))


@pytest.mark.parametrize("depth", [3, 8])
@pytest.mark.parametrize("ensemble", [False, True])
def test_tiled_is_bitwise_untiled(depth, ensemble):
    net, x = tiny_net(depth=depth), rand_image()
    ref = apply_network(net, x, ensemble=ensemble, tile=None)
    # tiles that do not divide 20x23, smaller than the halo, one pixel, and larger than the image
    for tile in (1, 2, 5, 7, 8, 11, 16, 23, 64):
        out = apply_network(net, x, ensemble=ensemble, tile=tile)
        assert out.shape == x.shape and out.dtype == np.float32
        assert np.array_equal(out, ref), (tile, float(np.abs(out - ref).max()))


def test_tiled_bitwise_wider_net():
    # another register-tile path of the conv kernel (more channels per block)
    net, x = tiny_net(depth=4, width=16), rand_image(17, 29, seed=3)
    ref = apply_network(net, x)
    assert np.array_equal(apply_network(net, x, tile=6), ref)


def test_ensemble_is_median_of_the_8_transforms():
    net, x = tiny_net(), rand_image(9, 12)
    outs = []
    for flip in (False, True):
        for k in range(4):
            xt = np.ascontiguousarray(np.rot90(x[:, ::-1] if flip else x, k))
            y = np.rot90(net.predict(xt), -k)
            outs.append(y[:, ::-1] if flip else y)
    ref = np.median(np.stack(outs), axis=0)
    out = apply_network(net, x, ensemble=True)
    assert out.shape == x.shape
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-6)


def test_ensemble_of_identity_net_is_the_input():
    net = tiny_net()
    for wt in net.weights:
        wt[...] = 0.0  # residual net with zero weights: output = input
    x = rand_image()
    assert np.array_equal(apply_network(net, x, ensemble=True), x)
    assert np.array_equal(apply_network(net, x, ensemble=True, tile=5), x)


def test_apply_network_bad_input():
    net = tiny_net()
    with pytest.raises(UserError):
        apply_network(net, np.zeros((8, 8), np.float32))
    with pytest.raises(UserError):
        apply_network(net, np.zeros((8, 8, 4), np.float32))
    with pytest.raises(UserError):
        apply_network(net, rand_image(), tile=0)


# ----------------------------------------------------------------------------- back-projection


def _lr_error(sr, lr, kernel="cubic"):
    return float(np.linalg.norm(resize(sr, shape=lr.shape[:2], kernel=kernel) - lr))


def smooth_image(h=12, w=10, seed=1):
    """Smooth colours in (0.1, 0.9) with a little noise: back-projection rarely clips."""
    yy, xx = np.mgrid[0:h, 0:w] / float(h)
    img = np.stack([0.5 + 0.3 * np.sin(3 * yy + xx), 0.5 + 0.3 * np.cos(2 * xx),
                    0.4 + 0.2 * yy * xx], -1)
    img += 0.05 * np.random.default_rng(seed).standard_normal(img.shape)
    return img.astype(np.float32)


def test_back_project_moves_towards_lr():
    lr = smooth_image()
    # a plausible but inconsistent SR: a blurred, dimmed upscale
    sr = (0.8 * resize(lr, shape=(24, 20)) + 0.1).astype(np.float32)
    before = _lr_error(sr, lr)
    sr_copy = sr.copy()
    one = back_project(sr, lr, 1)
    three = back_project(sr, lr, 3)
    assert np.array_equal(sr, sr_copy)  # not in place by default
    assert one.shape == sr.shape and one.dtype == np.float32
    assert one.min() >= 0.0 and one.max() <= 1.0
    assert _lr_error(one, lr) < 0.5 * before
    assert _lr_error(three, lr) < _lr_error(one, lr)
    assert np.array_equal(back_project(sr, lr, 0), np.clip(sr, 0, 1))


def test_back_project_with_blur_kernel():
    lr = smooth_image(seed=2)
    k = np.outer([1, 2, 1], [1, 2, 1]).astype(np.float64)
    k /= k.sum()
    sr = (0.7 * resize(lr, shape=(24, 20)) + 0.15).astype(np.float32)
    out = back_project(sr, lr, 2, kernel=k)
    assert _lr_error(out, lr, k) < _lr_error(sr, lr, k)


def test_back_project_in_place():
    lr = rand_image(12, 10, seed=1)
    sr = resize(lr, shape=(24, 20))
    out = back_project(sr, lr, 2, inplace=True)
    assert out is sr


# ----------------------------------------------------------------------------- the loop


@pytest.mark.parametrize("steps", [1, 2])
def test_super_resolve_shapes(steps):
    net, lr = tiny_net(), rand_image(11, 14)
    calls = []
    sr = super_resolve(net, lr, scale=2, steps=steps, ensemble=True, back_projection=1,
                       progress=lambda i, n: calls.append((i, n)))
    assert sr.shape == (22, 28, 3) and sr.dtype == np.float32
    assert sr.min() >= 0.0 and sr.max() <= 1.0
    assert calls == [(i, steps) for i in range(steps)]


def test_super_resolve_size_and_tiles():
    net, lr = tiny_net(), rand_image(11, 14)
    a = super_resolve(net, lr, size=(30, 17), steps=2, ensemble=False, back_projection=0)
    assert a.shape == (30, 17, 3)
    b = super_resolve(net, lr, size=(30, 17), steps=2, ensemble=False, back_projection=0, tile=7)
    assert np.array_equal(a, b)


def test_super_resolve_identity_net_is_bicubic():
    net = tiny_net()
    for wt in net.weights:
        wt[...] = 0.0
    lr = rand_image(11, 14)
    sr = super_resolve(net, lr, scale=1.5, back_projection=0)
    assert np.array_equal(sr, bicubic(lr, scale=1.5))


def test_bicubic_baseline_shape():
    lr = rand_image(11, 14)
    out = bicubic(lr, scale=3)
    assert out.shape == (33, 42, 3) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert bicubic(lr, size=(20, 50)).shape == (20, 50, 3)
    with pytest.raises(UserError):
        bicubic(lr, scale=0.5)


def test_ensemble_of_the_four_axis_transforms_is_their_median_tiled_or_not():
    """Networks trained on an anisotropic factor: the ensemble keeps the axes (identity,
    rot180 and the two flips), never a transpose; tiling stays bitwise."""
    net, x = tiny_net(), rand_image(9, 12)
    outs = [net.predict(np.ascontiguousarray(x)),
            np.rot90(net.predict(np.ascontiguousarray(np.rot90(x, 2))), -2),
            net.predict(np.ascontiguousarray(x[:, ::-1]))[:, ::-1],
            net.predict(np.ascontiguousarray(x[::-1]))[::-1]]
    out = apply_network(net, x, ensemble=True, transforms=(0, 2, 4, 6))
    np.testing.assert_allclose(out, np.median(np.stack(outs), axis=0), rtol=0, atol=1e-6)
    assert not np.allclose(out, apply_network(net, x, ensemble=True), atol=1e-6)  # the 8 differ
    assert np.array_equal(apply_network(net, x, ensemble=True, transforms=range(8)), apply_network(net, x, ensemble=True))
    assert np.array_equal(apply_network(net, x, ensemble=True, transforms=(0, 2, 4, 6), tile=5), out)
    with pytest.raises(UserError, match="0..7"):
        apply_network(net, x, ensemble=True, transforms=(0, 8))
