"""Blur kernels and the degradation protocol of `zssr degrade` (and `zssr eval --degradation random`).

The protocol (x s, s = 2 or 4; other integer s by the same rule):

* kernel: an anisotropic Gaussian on a (6 s + 1) x (6 s + 1) grid (13x13 for x2, 25x25 for
  x4) centred on its middle pixel, with standard deviations sigma1, sigma2 drawn uniformly
  in [0.6, 1.25 s] high-resolution pixels ([0.6, 2.5] for x2, [0.6, 5.0] for x4) along axes
  turned by an angle theta drawn uniformly in [0, pi) (sigma1 along theta, measured from the
  x axis towards +y, i.e. downwards in the image), each entry then multiplied by a factor
  drawn uniformly in [0.75, 1.25], and the whole renormalised to sum 1. Draws, in this order,
  from numpy's ``default_rng(seed)``: sigma1, sigma2, theta, then the factors row by row.
* downscale (`engine.kernels.resize`, numeric kernel): low-resolution pixel (i, j) is the
  kernel-weighted sum of the high-resolution pixels around (s i + (s-1)/2, s j + (s-1)/2),
  MATLAB's pixel-centre convention: the kernel shifted by (s-1)/2 px with a cubic spline,
  correlated with mirrored borders, every s-th pixel kept from 0. The high-resolution image
  is first cropped to a multiple of s (modcrop); the low-resolution one is h/s x w/s.
* optional Gaussian noise of std `noise` (on the [0, 1] scale) on the low-resolution image,
  then clipped to [0, 1] and rounded to the file's bit depth when saved.

Every `--kernel k.npy` of zssr (training pairs, back-projection) uses the same downscale,
so a `zssr degrade --kernel k.npy` followed by `zssr upscale --kernel k.npy` is consistent.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError

SIGMA_MIN = 0.6


def protocol_size(scale):
    """Side of the protocol's kernel grid at this scale: 6 s + 1 (13 for x2, 25 for x4)."""
    return 6 * int(round(scale)) + 1


def protocol_sigma_max(scale):
    """Largest sigma of the protocol at this scale: 1.25 s (2.5 for x2, 5.0 for x4)."""
    return 1.25 * float(scale)


def gaussian_kernel(sigma1, sigma2, theta, size):
    """An anisotropic Gaussian on a size x size grid centred on its middle, sum 1: std
    sigma1 along the direction at angle theta (radians, from +x towards +y = down), sigma2
    across it."""
    if not (sigma1 > 0 and sigma2 > 0 and math.isfinite(sigma1) and math.isfinite(sigma2) and math.isfinite(theta)):
        raise UserError(f"Gaussian kernel: sigmas must be positive and finite, got {sigma1}, {sigma2}")
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, -s], [s, c]])  # columns: the two axes, in (x, y)
    cov = rot @ np.diag([sigma1 ** 2, sigma2 ** 2]) @ rot.T
    return gaussian_from_cov(cov, size)


@dataclass(frozen=True)
class GaussianJitter:
    """Gaussians around an estimated one, for training (`--kernel estimate`): each draw
    multiplies sigma1 and sigma2 by exp(u), u uniform in [-spread, spread] (each its own),
    and turns the angle by a uniform amount in [-angle, angle] radians, on the same
    size x size grid. A network trained on pairs made with such draws undoes a blur about
    that wide rather than exactly that one (kernel_estimate.JITTER_SPREAD: why)."""
    sigma1: float
    sigma2: float
    theta: float
    size: int
    spread: float
    angle: float

    def draw(self, rng):
        u1, u2 = rng.uniform(-self.spread, self.spread, 2)
        v = rng.uniform(-self.angle, self.angle)
        return gaussian_kernel(self.sigma1 * math.exp(u1), self.sigma2 * math.exp(u2), self.theta + v, self.size)


def gaussian_from_cov(cov, size):
    """A Gaussian with covariance `cov` (2x2, in (x, y) = (column, row) order) on a size x
    size grid (size may be (h, w)) centred on its middle, normalised to sum 1."""
    h, w = (size, size) if np.isscalar(size) else size
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    x -= (w - 1) / 2.0
    y -= (h - 1) / 2.0
    inv = np.linalg.inv(np.asarray(cov, np.float64))
    q = inv[0, 0] * x * x + 2 * inv[0, 1] * x * y + inv[1, 1] * y * y
    k = np.exp(-0.5 * q)
    return k / k.sum()


def protocol_kernel(scale, rng):
    """A random kernel of the protocol (module docstring). Returns (kernel, params), params a
    dict of sigma1, sigma2, theta."""
    scale = int(round(scale))
    lo, hi = SIGMA_MIN, protocol_sigma_max(scale)
    s1, s2 = rng.uniform(lo, hi), rng.uniform(lo, hi)
    theta = rng.uniform(0.0, math.pi)
    n = protocol_size(scale)
    k = gaussian_kernel(s1, s2, theta, n)
    k = k * rng.uniform(0.75, 1.25, size=k.shape)
    return k / k.sum(), {"sigma1": float(s1), "sigma2": float(s2), "theta": float(theta)}


def check_kernel(k, what="kernel", image_shape=None):
    """A usable blur kernel as float64 summing to 1, or a UserError in one line: it must be
    2-D, finite, with a positive sum, and no larger than the image (when its shape is given)."""
    try:
        k = np.asarray(k, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"{what} must be a 2-D array of numbers") from None
    if k.ndim != 2 or min(k.shape) < 1:
        raise UserError(f"{what} must be a 2-D array, got shape {k.shape}")
    if not np.all(np.isfinite(k)):
        raise UserError(f"{what} has NaN or infinite values")
    if not k.sum() > 0:
        raise UserError(f"{what} must have a positive sum, got {k.sum():.4g}")
    if image_shape is not None and (k.shape[0] > image_shape[0] or k.shape[1] > image_shape[1]):
        raise UserError(f"{what} ({k.shape[0]}x{k.shape[1]}) is larger than the image "
                        f"({image_shape[0]}x{image_shape[1]})")
    return k / k.sum()


_GAUSS = re.compile(r"^gaussian:([^,]+),([^,]+),([^,]+)$")


def parse_kernel_spec(spec, scale, rng=None):
    """`--kernel` of `zssr degrade`: 'random' (the protocol, drawn from rng),
    'gaussian:S1,S2,THETA' (sigmas in high-resolution pixels, THETA in radians; on the
    protocol's grid) or a .npy/.mat file. Returns (kernel, params or None)."""
    from .data import load_kernel

    spec = str(spec)
    if spec == "random":
        return protocol_kernel(scale, rng if rng is not None else np.random.default_rng())
    m = _GAUSS.match(spec.strip().lower())
    if m:
        try:
            s1, s2, th = (float(v) for v in m.groups())
        except ValueError:
            raise UserError(f"--kernel {spec}: give gaussian:SIGMA1,SIGMA2,THETA with numbers, e.g. gaussian:2,0.8,0.5") from None
        return gaussian_kernel(s1, s2, th, protocol_size(scale)), {"sigma1": s1, "sigma2": s2, "theta": th}
    if spec.startswith("gaussian"):
        raise UserError(f"--kernel {spec}: give gaussian:SIGMA1,SIGMA2,THETA, e.g. gaussian:2,0.8,0.5")
    return load_kernel(Path(spec)), None


def modcrop(img, scale):
    s = int(round(scale))
    h, w = img.shape[0] - img.shape[0] % s, img.shape[1] - img.shape[1] % s
    return img[:h, :w]


def degrade_image(hr, scale, kernel, noise=0.0, rng=None):
    """The protocol's low-resolution image of `hr` (float HxWx3 in [0, 1]): modcrop, the
    numeric-kernel downscale by the integer `scale`, optional Gaussian noise, clipped."""
    from .kernels.resize import resize

    s = int(round(scale))
    if abs(scale - s) > 1e-9 or s < 2:
        raise UserError(f"degrade: --scale must be an integer >= 2, got {scale}")
    hr = modcrop(hr, s)
    if hr.shape[0] < s or hr.shape[1] < s:
        raise UserError(f"the image ({hr.shape[0]}x{hr.shape[1]}) is too small for x{s}")
    kernel = check_kernel(kernel, "the kernel", hr.shape[:2])
    lr = resize(np.ascontiguousarray(hr, dtype=np.float32), scale=1.0 / s,
                shape=(hr.shape[0] // s, hr.shape[1] // s), kernel=kernel)
    if noise:
        rng = rng if rng is not None else np.random.default_rng()
        lr = lr + (rng.standard_normal(lr.shape) * noise).astype(np.float32)
    return np.clip(lr, 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------- kernel error


def moments(k):
    """(centre (y, x), covariance 2x2 in (x, y) order) of a kernel's positive mass."""
    k = np.clip(np.asarray(k, np.float64), 0, None)
    k = k / k.sum()
    y, x = np.mgrid[0:k.shape[0], 0:k.shape[1]].astype(np.float64)
    cy, cx = (k * y).sum(), (k * x).sum()
    dx, dy = x - cx, y - cy
    cov = np.array([[(k * dx * dx).sum(), (k * dx * dy).sum()], [(k * dx * dy).sum(), (k * dy * dy).sum()]])
    return (cy, cx), cov


def describe(k):
    """sigma1 >= sigma2 and theta in [0, pi) (of sigma1's axis) from a kernel's moments."""
    _, cov = moments(k)
    vals, vecs = np.linalg.eigh(cov)
    s1, s2 = math.sqrt(max(vals[1], 0)), math.sqrt(max(vals[0], 0))
    theta = math.atan2(vecs[1, 1], vecs[0, 1]) % math.pi
    return {"sigma1": s1, "sigma2": s2, "theta": theta}


def centred(k, size):
    """`k` on a size x size canvas, its centre of mass moved to the middle (cubic spline)."""
    from scipy import ndimage

    k = np.asarray(k, np.float64)
    canvas = np.zeros((size, size))
    h, w = k.shape
    if h > size or w > size:
        raise UserError(f"kernel {h}x{w} is larger than the comparison canvas {size}")
    y0, x0 = (size - h) // 2, (size - w) // 2
    canvas[y0:y0 + h, x0:x0 + w] = k
    (cy, cx), _ = moments(canvas)
    out = ndimage.shift(canvas, ((size - 1) / 2 - cy, (size - 1) / 2 - cx), order=3, mode="constant")
    return out / out.sum()


def kernel_error(est, true):
    """How far an estimated kernel is from the true one, both centred (centre of mass in the
    middle) on a common canvas: {"l2": ||est - true||, "psnr": 10 log10(max(true)^2 / MSE)
    over the true kernel's grid, "sigma"/"theta": the moments' figures of both}."""
    n = int(max(max(est.shape), max(true.shape))) | 1
    a, b = centred(est, n), centred(true, n)
    l2 = float(np.sqrt(((a - b) ** 2).sum()))
    m = max(true.shape)
    o = (n - m) // 2
    mse = float(((a - b)[o:o + m, o:o + m] ** 2).mean())
    psnr = 10 * math.log10(b.max() ** 2 / mse) if mse > 0 else float("inf")
    return {"l2": l2, "psnr": psnr, "est": describe(est), "true": describe(true)}
