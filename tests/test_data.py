"""Internal training pairs: shapes, determinism, flips, kernels."""
import numpy as np
import pytest

from zssr.engine.data import CropSampler, Pyramid, degrade, dihedral, dihedral_inverse, load_kernel, shrink_to
from zssr.engine.errors import UserError
from zssr.engine.kernels.resize import resize


def img(h=50, w=60, seed=0):
    return np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)


def test_degrade_is_down_then_up_to_the_same_shape():
    x = img()
    b = degrade(x, 2.0)
    assert b.shape == x.shape and b.dtype == np.float32
    assert np.allclose(b, resize(resize(x, shape=(25, 30)), shape=(50, 60)), atol=1e-6)
    assert degrade(img(7, 9), 2.0).shape == (7, 9, 3)  # odd sides: the son is rounded


def test_degrade_with_two_factors_downscales_each_axis_by_its_own():
    x = img(48, 60)
    b = degrade(x, (1.5, 2.0))
    assert b.shape == x.shape
    assert np.allclose(b, resize(resize(x, shape=(32, 30)), shape=(48, 60)), atol=1e-6)
    assert np.array_equal(degrade(x, (2.0, 2.0)), degrade(x, 2.0))


def test_degrade_with_noise_and_kernel():
    x = img()
    rng = np.random.default_rng(0)
    k = np.ones((5, 5)) / 25
    assert not np.allclose(degrade(x, 2.0, noise=0.05, rng=rng), degrade(x, 2.0))
    assert degrade(x, 2.0, kernel=k).shape == x.shape


@pytest.mark.parametrize("k", range(8))
def test_dihedral_inverse(k):
    x = img(5, 7)
    assert np.array_equal(dihedral_inverse(dihedral(x, k), k), x)
    assert len({dihedral(x, j).tobytes() for j in range(8)}) == 8


def test_crop_sampler_is_deterministic_and_shaped():
    s = CropSampler(img(80, 90), 2.0, crop=32)
    a = [s.sample(np.random.default_rng(1)) for _ in range(1)][0]
    b = s.sample(np.random.default_rng(1))
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    for _ in range(5):
        blurry, sharp = s.sample(np.random.default_rng(_))
        assert blurry.shape == sharp.shape == (32, 32, 3)
    small = CropSampler(img(20, 24), 2.0, crop=128)  # smaller than the crop: whole copies
    blurry, sharp = small.sample(np.random.default_rng(0))
    assert blurry.shape == sharp.shape and max(sharp.shape[:2]) <= 24


def test_pyramid_levels_and_too_small():
    p = Pyramid(img(60, 80), 2.0, levels=3, smallest=0.5)
    assert [s.shape[:2] for _, s in p.pairs] == [(60, 80), (45, 60), (30, 40)]
    with pytest.raises(UserError, match="too small"):
        Pyramid(img(3, 3), 2.0)


def test_shrink_to():
    assert shrink_to(img(100, 50), 40).shape == (40, 20, 3)
    x = img(30, 20)
    assert shrink_to(x, 40) is x and shrink_to(x, 0) is x


def test_load_kernel(tmp_path):
    from scipy.io import savemat

    k = np.arange(1, 10, dtype=np.float64).reshape(3, 3)
    np.save(tmp_path / "k.npy", k)
    savemat(tmp_path / "k.mat", {"Kernel": k})
    for f in ("k.npy", "k.mat"):
        got = load_kernel(tmp_path / f)
        assert np.allclose(got, k / k.sum()) and np.isclose(got.sum(), 1)
    np.save(tmp_path / "bad.npy", np.zeros((3,)))
    with pytest.raises(UserError, match="2-D"):
        load_kernel(tmp_path / "bad.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(UserError, match="cannot read"):
        load_kernel(tmp_path / "obj.npy")
    with pytest.raises(UserError, match="does not exist"):
        load_kernel(tmp_path / "missing.npy")


def test_crop_sampler_learns_from_earlier_results_up_to_their_size():
    """Gradual SR: with a x1.5 result as a source, the copies go from 0.5 to 1.5 of the
    image; those above 1 are cut from the result (the largest is the result itself), those
    up to 1 from the image."""
    from zssr.engine.data import pool_factors, substep_factors

    x, big = img(40, 50), img(60, 75, seed=1)
    plain = CropSampler(x, 2.0, crop=32)
    assert [f.shape[:2] for f in plain.fathers] == [(20, 25), (24, 30), (28, 35), (32, 40), (36, 45), (40, 50)]
    s = CropSampler(x, 2.0, crop=32, sources=[(big, 1.5)])
    assert [f.shape[:2] for f in s.fathers][-5:] == [(44, 55), (48, 60), (52, 65), (56, 70), (60, 75)]
    assert s.fathers[-1] is big and np.array_equal(s.fathers[5], x)
    assert np.allclose(s.fathers[-2], np.clip(resize(big, shape=(56, 70)), 0, 1))
    assert np.isclose(s.p.sum(), 1.0) and s.p[-1] == s.p.max()  # by area
    assert np.allclose(pool_factors(0.5, 1.5), np.arange(5, 16) / 10)
    assert substep_factors(2.0, 2) == [1.5, 2.0] and substep_factors(2.0, 1) == [2.0]
    assert np.allclose(substep_factors(3.0, 4), [1.5, 2.0, 2.5, 3.0])


def test_anisotropic_chain_factors_and_sampler():
    """ZSSR's chain x2: (1, 1.5), (1.5, 1), (1.5, 1.5), (1.5, 2), (2, 1.5), (2, 2). At an
    anisotropic factor the sampler never transposes a crop (that would swap the axes'
    factors), and its sons are downscaled per axis; its pool holds the image's copies up to
    its own size plus each source at SOURCE_LEVELS of the source's size."""
    from zssr.engine.data import SOURCE_LEVELS, anisotropic_factors

    assert anisotropic_factors(2.0, 2) == [(1.0, 1.5), (1.5, 1.0), (1.5, 1.5), (1.5, 2.0), (2.0, 1.5), (2.0, 2.0)]
    assert anisotropic_factors(3.0, 1) == [(1.0, 3.0), (3.0, 1.0), (3.0, 3.0)]
    rng = np.random.default_rng(0)
    wide = img(20, 40)  # smaller than the crop: whole copies, so a transpose would show as tall
    aniso = CropSampler(wide, (1.0, 1.5), crop=128)
    iso = CropSampler(wide, 1.5, crop=128)
    shapes = [aniso.sample(rng)[1].shape[:2] for _ in range(40)]
    assert all(h < w for h, w in shapes)
    assert any(h > w for h, w in (iso.sample(rng)[1].shape[:2] for _ in range(40)))
    blurry, sharp = CropSampler(img(40, 48), (1.0, 2.0), crop=24).sample(rng)
    assert blurry.shape == sharp.shape == (24, 24, 3)
    assert np.allclose(blurry, resize(resize(sharp, shape=(24, 12)), shape=(24, 24)), atol=1e-6)

    x, tall = img(40, 50), img(60, 50, seed=1)  # a (1.5, 1) result
    s = CropSampler(x, (1.5, 2.0), crop=32, sources=[(tall, (1.5, 1.0))], source_levels=SOURCE_LEVELS)
    assert [f.shape[:2] for f in s.fathers] == [(20, 25), (24, 30), (28, 35), (32, 40), (36, 45), (40, 50),
                                                (60, 50), (54, 45), (48, 40), (42, 35)]
    assert s.fathers[6] is tall and np.isclose(s.p.sum(), 1.0)
