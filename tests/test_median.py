"""The self-ensemble's median kernel against numpy's median."""
import numpy as np
import pytest

from zssr.engine.kernels.median import median_into


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", range(1, 9))
def test_median_is_numpys(dtype, k):
    rng = np.random.default_rng(k)
    stack = rng.standard_normal((k, 23, 19, 3)).astype(dtype)
    stack[:, :6] = np.round(stack[:, :6])  # ties
    stack[:, 7, 2, 0] = np.inf
    stack[0, 8, 3, 1] = -np.inf
    if k > 1:
        stack[1, 9, 4, 2] = np.nan  # one member's NaN makes the pixel NaN, as in numpy
    out = median_into(stack, np.empty((23, 19, 3), dtype))
    want = np.median(stack, axis=0)
    assert np.array_equal(out, want, equal_nan=True)
    assert np.isnan(out[9, 4, 2]) == (k > 1)


def test_median_of_a_window_into_a_window():
    # apply_network's use: the top-left h x w of a tile-sized stack, into the image at (y0, x0)
    rng = np.random.default_rng(0)
    stack = rng.random((8, 16, 20, 3), dtype=np.float32)
    out = np.full((40, 50, 3), -1.0, np.float32)
    median_into(stack, out, 11, 13, 5, 30)
    assert np.array_equal(out[5:16, 30:43], np.median(stack[:, :11, :13], axis=0))
    rest = np.ones(out.shape[:2], bool)
    rest[5:16, 30:43] = False
    assert (out[rest] == -1.0).all()  # nothing written outside the window
    view = np.zeros((30, 30, 3), np.float32)[::2, ::2]  # a strided out goes through a temporary
    median_into(stack[:, :15, :15], view)
    assert np.array_equal(view, np.median(stack[:, :15, :15], axis=0))


def test_median_refuses_what_it_cannot_do():
    s = np.zeros((4, 5, 5, 3), np.float32)
    with pytest.raises(ValueError, match="one dtype"):
        median_into(s, np.zeros((5, 5, 3), np.float64))
    with pytest.raises(ValueError, match="does not fit"):
        median_into(s, np.zeros((5, 5, 3), np.float32), 5, 5, 1, 0)
    with pytest.raises(ValueError, match="needs stack"):
        median_into(s[0], np.zeros((5, 5, 3), np.float32))
