"""Internal training pairs: everything the network learns from comes from the one image.

A pair is (blurry, sharp), both (h, w, 3) float32, with
    son    = downscale(sharp, 1/s)            bicubic, or a known blur kernel (+ noise)
    blurry = bicubic upscale(son) to exactly sharp's shape
so the network learns to undo "downscale by s, then upscale by s" - the very step it will
later be asked to undo on the image itself, one scale up.

Two recipes:
* `Pyramid` (the seed's): sharp copies of the image at a few smaller sizes, each with its
  blurry twin, made once and fed whole, one at a time, in epochs.
* `CropSampler` (ZSSR's): each iteration a fresh "father": a copy of the image scaled by a
  random factor in [min_scale, 1] (or up to the largest earlier result, in gradual
  super-resolution), a random crop of it, one of the 8 flips/rotations; its
  "son" made with bicubic or the given kernel, with optional Gaussian noise.

A scale may be one number or a pair (sy, sx): ZSSR's anisotropic sub-steps (x1 by x1.5,
...) downscale the two axes by different factors; then only the four flips and rotations
that keep the axes where they are augment the crops (a transpose would swap sy and sx).
"""
from pathlib import Path

import numpy as np

from .errors import UserError
from .kernels.resize import resize


def factor_pair(scale):
    """(sy, sx) of a scale given as one number or a pair."""
    if isinstance(scale, (tuple, list, np.ndarray)):
        sy, sx = scale
        return float(sy), float(sx)
    return float(scale), float(scale)


AXIS_TRANSFORMS = (0, 2, 4, 6)  # the dihedral transforms that keep rows rows: identity, rot180, the two flips


def transforms_for(scale):
    """The dihedral transforms a network of this factor may see (augmentation and
    self-ensemble): all 8, or for (sy, sx) with sy != sx only AXIS_TRANSFORMS."""
    sy, sx = factor_pair(scale)
    return AXIS_TRANSFORMS if sy != sx else tuple(range(8))


def scaled_shape(hw, f):
    """(h, w) times f per axis (a number or (fy, fx)), rounded, at least 1."""
    fy, fx = factor_pair(f)
    return max(1, int(round(hw[0] * fy))), max(1, int(round(hw[1] * fx)))


def degrade(sharp, scale, kernel=None, noise=0.0, rng=None):
    """The blurry twin of `sharp`: downscale by 1/scale (a number, or (sy, sx) per axis;
    bicubic or `kernel`), add Gaussian noise of std `noise` to the small image, upscale
    back to sharp's exact shape."""
    h, w = sharp.shape[:2]
    sy, sx = factor_pair(scale)
    son_shape = (max(1, int(round(h / sy))), max(1, int(round(w / sx))))
    if kernel is None:
        son = resize(sharp, shape=son_shape)
    else:
        son = resize(sharp, scale=(1.0 / sy, 1.0 / sx), shape=son_shape, kernel=kernel)
    if noise:
        son = son + (rng.standard_normal(son.shape) * noise).astype(son.dtype)
    return resize(son, shape=(h, w)).astype(np.float32, copy=False)


WINDOW = 384
"""Side of the centred window of a large image whose intermediate results the later networks
of gradual super-resolution learn from (job.py), and on which ZSSR's learning-rate policy
measures the reconstruction error (train.py): smaller images are used whole."""

CHECK_WINDOW = 128
"""Side of the centred window on which the health checks of the other schedules measure the
reconstruction error (divergence, a dead network): a check every `eval_every` iterations
should cost little next to them."""


def centre_window(img, side=None):
    """The centred window of `img` at most side x side (default WINDOW; a view, `img` itself
    when it fits)."""
    side = WINDOW if side is None else side
    h, w = img.shape[:2]
    if h <= side and w <= side:
        return img
    y0, x0 = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return img[y0:y0 + min(h, side), x0:x0 + min(w, side)]


def shrink_to(img, max_side):
    """`img` resized (bicubic) so that its longer side is at most `max_side` pixels."""
    if not max_side or max(img.shape[:2]) <= max_side:
        return img
    f = max_side / max(img.shape[:2])
    shape = scaled_shape(img.shape, f)
    return np.clip(resize(img, shape=shape), 0.0, 1.0).astype(np.float32)


def dihedral(img, k):
    """The k-th of the 8 flips/rotations (k in 0..7) of an (H, W, C) image, as a view."""
    out = np.rot90(img, k % 4, axes=(0, 1))
    return out[:, ::-1] if k >= 4 else out


def dihedral_inverse(img, k):
    """Undo `dihedral(., k)`."""
    out = img[:, ::-1] if k >= 4 else img
    return np.rot90(out, -(k % 4), axes=(0, 1))


def load_kernel(path):
    """A blur kernel from .npy or MATLAB .mat (variable `Kernel`), normalised to sum 1."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"kernel file {p} does not exist; give a .npy or .mat file with a 2-D blur kernel")
    try:
        if p.suffix.lower() == ".mat":
            from scipy.io import loadmat

            m = loadmat(str(p))
            if "Kernel" not in m:
                names = ", ".join(k for k in m if not k.startswith("__")) or "none"
                raise UserError(f"kernel file {p} has no variable 'Kernel' (it has: {names})")
            k = np.asarray(m["Kernel"], dtype=np.float64)
        else:
            k = np.asarray(np.load(str(p), allow_pickle=False), dtype=np.float64)
    except UserError:
        raise
    except Exception as e:  # corrupt file, pickled object, wrong format
        raise UserError(f"cannot read kernel file {p}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if k.ndim != 2 or min(k.shape) < 1 or not np.all(np.isfinite(k)) or k.sum() <= 0:
        raise UserError(f"kernel file {p} must hold a 2-D array of finite values with a positive sum, got shape {k.shape}")
    return k / k.sum()


class Pyramid:
    """The seed's training set: `levels` sharp copies from full size down to `smallest`
    of it (linearly spaced factors), each with its blurry twin. Fixed order, largest first."""

    def __init__(self, img, scale, levels=4, smallest=0.4, kernel=None):
        self.pairs = []
        h, w = img.shape[:2]
        for f in np.linspace(1.0, smallest, levels) if levels > 1 else [1.0]:
            shape = scaled_shape((h, w), f)
            sharp = img if shape == (h, w) else np.clip(resize(img, shape=shape), 0, 1).astype(np.float32)
            if min(shape) < 2 * scale:
                continue
            self.pairs.append((degrade(sharp, scale, kernel), np.ascontiguousarray(sharp)))
        if not self.pairs:
            raise UserError(f"the image ({h}x{w}) is too small to train at scale {scale}")

    def __len__(self):
        return len(self.pairs)

    def pair(self, i):
        return self.pairs[i % len(self.pairs)]


MIN_SCALE = 0.5  # CropSampler's smallest copy, relative to the image


def pool_factors(min_scale, max_scale):
    """The sizes (relative to the image) of CropSampler's copies: min_scale to max_scale
    in steps of about 0.1."""
    n = max(1, int(round((max_scale - min_scale) / 0.1)) + 1)
    return np.linspace(min_scale, max_scale, n) if n > 1 else np.array([max_scale])


def substep_factors(scale, gradual):
    """Gradual super-resolution inside one upscaling step by `scale`: the factors of the
    `gradual` networks trained one after the other (x2 in 2: 1.5 then 2)."""
    return [float(f) for f in np.linspace(1.0, scale, gradual + 1)[1:]]


def anisotropic_factors(scale, gradual):
    """ZSSR's anisotropic gradual chain: for each of `substep_factors` f_k (f_0 = 1), the
    three factors (f_(k-1), f_k), (f_k, f_(k-1)), (f_k, f_k) as (sy, sx). x2 in 2:
    (1, 1.5), (1.5, 1), (1.5, 1.5), (1.5, 2), (2, 1.5), (2, 2)."""
    out, prev = [], 1.0
    for f in substep_factors(scale, gradual):
        out += [(prev, f), (f, prev), (f, f)]
        prev = f
    return out


SOURCE_LEVELS = (1.0, 0.9, 0.8, 0.7)  # anisotropic chain: sizes of each earlier result's copies


class CropSampler:
    """ZSSR's training pairs: a fresh random father and son every call.

    Fathers come from a pool of copies of the image at factors min_scale, min_scale + 0.1,
    ..., max_scale of its size (made once), chosen with probability proportional to their
    area; then a random crop of `crop` pixels (the whole copy when it is smaller) and a
    random flip/rotation.

    `sources` (gradual super-resolution): earlier results of upscaling the image, as
    (image, factor) pairs, factor > 1 being its size relative to `img`. A copy at factor f
    is then made from the smallest source at least f times the image's size, and the pool
    goes up to the largest factor given (max_scale). A source may be the result for a
    window of the image only (large images, see data.WINDOW): (image, factor,
    weight), its copies then drawn `weight` times as often as their area says (weight =
    the image's area over the window's, so that the pool is shared as if it were whole).

    `source_levels` (the anisotropic chain, whose results have other aspect ratios): the
    pool is instead the image's copies up to its own size plus, of every source, copies at
    these fractions of the source's size; the sources' factors are then not used.
    `scale` may be (sy, sx) (see the module's docstring).

    `kernel_jitter` (an estimated kernel, `degradation.GaussianJitter`): each son is made
    with a kernel drawn around the estimate instead of `kernel` itself."""

    def __init__(self, img, scale, crop=128, kernel=None, noise=0.0, min_scale=MIN_SCALE, sources=(),
                 source_levels=None, kernel_jitter=None):
        self.scale, self.crop, self.kernel, self.noise = scale, crop, kernel, noise
        self.kernel_jitter = kernel_jitter
        self.transforms = transforms_for(scale)
        smallest = 2 * max(factor_pair(scale))
        h, w = img.shape[:2]
        sources = [(s[0], s[1], float(s[2]) if len(s) > 2 else 1.0) for s in sources]
        if source_levels is None:
            srcs = sorted([(1.0, img, 1.0)] + [(float(f), s, wt) for s, f, wt in sources], key=lambda t: t[0])
            copies = []
            for f in pool_factors(min_scale, srcs[-1][0]):
                b, src, wt = next(t for t in srcs if t[0] >= f - 1e-6)
                base = (h, w) if wt == 1.0 else scaled_shape(src.shape, 1.0 / b)  # a window's own size
                copies.append((src, scaled_shape(base, f), wt))
        else:
            copies = [(img, scaled_shape((h, w), f), 1.0) for f in pool_factors(min_scale, 1.0)]
            copies += [(s, scaled_shape(s.shape, t), wt) for s, _, wt in sources for t in source_levels]
        self.fathers, weights = [], []
        for src, shape, wt in copies:
            if min(shape) < smallest:
                continue
            cp = src if shape == src.shape[:2] else np.clip(resize(src, shape=shape), 0, 1).astype(np.float32)
            self.fathers.append(np.ascontiguousarray(cp, dtype=np.float32))
            weights.append(wt)
        if not self.fathers:
            raise UserError(f"the image ({h}x{w}) is too small to train at scale {scale}")
        areas = np.array([f.shape[0] * f.shape[1] for f in self.fathers], np.float64) * np.array(weights)
        self.p = areas / areas.sum()

    def sample(self, rng):
        father = self.fathers[rng.choice(len(self.fathers), p=self.p)]
        h, w = father.shape[:2]
        ch, cw = min(self.crop, h), min(self.crop, w)
        y0 = int(rng.integers(0, h - ch + 1))
        x0 = int(rng.integers(0, w - cw + 1))
        k = self.transforms[int(rng.integers(0, len(self.transforms)))]
        sharp = np.ascontiguousarray(dihedral(father[y0:y0 + ch, x0:x0 + cw], k))
        kernel = self.kernel if self.kernel_jitter is None else self.kernel_jitter.draw(rng)
        return degrade(sharp, self.scale, kernel, self.noise, rng), sharp
