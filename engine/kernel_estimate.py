"""Estimate an image's own downscaling kernel (`--kernel estimate`), on the CPU, in milliseconds.

The principle is KernelGAN's (Bell-Kligler, Shocher and Irani, NeurIPS 2019): the right
kernel is the one under which the image looks like a downscaled copy of a scene that
recurs across scales. KernelGAN learns it adversarially on patches; here the cross-scale
statistic is the power spectrum, whose self-similarity across scales is the same fact in
the frequency domain, and whose fit is closed-form.

Model. The low-resolution image y is (x * k) sampled every s pixels, x a scene whose power
spectrum is, along each orientation phi, a power law A(phi) |w|^-alpha(phi) (natural images
are close to this: scale invariance). Comparing y's spectrum at frequency nu (radians per
low-resolution pixel) with its spectrum at nu / 2 cancels the unknown scene:

    R(nu) = log P_y(nu / 2) - log P_y(nu) = alpha(phi) log 2 + log|K(nu / 2s)|^2 - log|K(nu / s)|^2

and for a Gaussian k of covariance C (high-resolution pixels) the kernel's part is
3 / (4 s^2) nu^T C nu. So R, measured on y alone, is linear in (1, cos 2 phi, sin 2 phi) and
the three entries of C: least squares gives C. (Comparing y's patches with those of its own
downscaled copy, KernelGAN's test, compares the same two spectra.)

Steps: the luma of y is cut into 32x32 tiles (half overlapping, at most MAX_TILES of them,
chosen by the seed when there are more), each Hann-windowed; their periodograms averaged
(Welch); R taken at every even frequency (2 m, 2 n) against (m, n), for 4 / 32 < |nu| / 2 pi
< 0.45 and where the power is well above 8-bit quantisation noise; C fitted. The same
residual is computed for MATLAB's bicubic kernel (an exact 8x8 kernel in the numeric
convention at x2), whose spectrum is not Gaussian: when it explains the data about as well
(residual within BICUBIC_MARGIN of the Gaussian's) the image is taken to be bicubic-downscaled
and zssr's default recipe runs unchanged; otherwise the Gaussian, drawn on the protocol's
(6 s + 1)^2 grid, is the kernel the training pairs and back-projection use.

Refinement (`refine_gaussian`). The closed form leaves out three things the calibration on
protocol images found to matter (bench/calibrate_kernel_estimate.py): (1) the 8-bit rounding
adds a white floor to the spectrum (the luma's share of it, LUMA_NOISE, is subtracted from
every bin before the logarithms); (2) sampling folds the spectrum above Nyquist back into
the band, so near Nyquist P_y is not |K|^2 times the scene (the model sums ALIAS_ORDERS
aliases each way of a power-law scene, exponent SCENE_ALPHA); (3) real scenes are not one
power law: noise and fine texture in the original add a white part (an isotropic
white-to-power-law ratio, fitted), and the Welch average mixes smooth and detailed regions
(the tiles are split in GROUPS by their detail, each group with its own scene terms). The
three sigmas-and-angle of the Gaussian and the white ratio are then fitted by Nelder-Mead
from the closed-form start (a few hundred evaluations of a closed-form model: tens of
milliseconds). The bicubic-or-not test is then made on this model too: bicubic's exact
spectrum (aliases summed, the white ratio fitted) against the refined Gaussian, bicubic when
its residual is within REFINED_BICUBIC_MARGIN of the Gaussian's (fewer protocol images
wrongly taken for bicubic than the closed form's test, no more bicubic ones missed).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from .errors import UserError

TILE = 32
MAX_TILES = 4096
NU_MAX = 0.9          # of the Nyquist frequency pi
NU_MIN_BINS = 4       # lowest |nu| used, in frequency bins of a tile
FLOOR = 3.0           # power must exceed FLOOR x the 8-bit quantisation noise (1/255)^2 / 12
BICUBIC_MARGIN = 1.5  # bicubic if its residual <= BICUBIC_MARGIN x the Gaussian's (closed form)
REFINED_BICUBIC_MARGIN = 1.3  # the same on the refined model (bench/calibrate_kernel_estimate.py)
MIN_SIGMA = 0.4       # smallest sigma (high-resolution pixels) of an estimate
MAX_SIGMA_PER_SCALE = 2.0  # largest sigma, times the scale
# the refinement (module docstring)
GROUPS = 2            # tiles split by detail (energy between 4 and 8 bins), scene terms per group
ALIAS_ORDERS = 1      # aliases summed each way: (2 a + 1)^2 terms
SCENE_ALPHA = 2.0     # power-law exponent of the scene in the alias model
# variance of the luma's rounding noise, in units of (1/255)^2 / 12: BT.601's weights
# (0.2568, 0.5041, 0.0979) squared and summed for independently rounded channels; their
# sum (0.8588) squared when the image is grey (one rounding shared by the three); 1 for a
# single channel (taken as it is); 0 for an image not on 8-bit levels
LUMA_NOISE = {"colour": 0.330, "grey": 0.7376, "single": 1.0, "unrounded": 0.0}
REFINE_EVALS = 1200   # Nelder-Mead's budget of model evaluations
# Below these sigmas (x2, high-resolution pixels; scaled by s / 2 at other scales) a Gaussian
# estimate is uncertain: bicubic-downscaled textures the fit misses (held-out grass, gravel,
# brick, retina: 9 of the 10 missed bicubic inputs of the calibration) and mildly blurred
# photos (19 of 190 protocol cases) fall there alike, and neither this fit nor a
# patch-recurrence score tells them apart. A wrong Gaussian there cost 4-12 dB on the
# textures, a wrong bicubic 0.7-3.4 dB on the photos, so the estimate is kept and the user
# told (KernelEstimate.caution).
UNCERTAIN_SIGMAS = (1.5, 1.3)
# Training with an estimate draws each pair's kernel around it (degradation.GaussianJitter):
# sigmas times exp(U[-JITTER_SPREAD, JITTER_SPREAD]), the angle turned by U[-JITTER_ANGLE,
# JITTER_ANGLE] radians. Over-estimating a blur costs far more than under-estimating it, and
# the estimate's sigmas are off by about 20% (spread); a network trained on the neighbourhood
# of the estimate is less committed to one width. Measured (2026-12-03, x2 protocol, `--preset
# fast --iters 1000`, one thread, 22 cases of 14 photos, dev and held-out): +0.10 dB mean,
# median +0.02, against training on the estimate alone (+1.07 and +1.25 dB where it was
# 10-16% too wide, -0.48 at worst); a spread of 0.25: the same mean, median -0.02, -0.61 at
# worst. README, the section on the estimate.
JITTER_SPREAD = 0.15
JITTER_ANGLE = 0.2


@dataclass
class KernelEstimate:
    """What `estimate_kernel` found. `kernel` is None when the image looks bicubic-downscaled
    (then zssr uses its default recipe)."""
    kernel: np.ndarray | None
    gaussian: np.ndarray
    sigma1: float
    sigma2: float
    theta: float
    residual_gaussian: float
    residual_bicubic: float
    bins: int
    seconds: float
    scale: float
    info: dict = field(default_factory=dict)

    @property
    def bicubic(self):
        return self.kernel is None

    @property
    def uncertain(self):
        """A Gaussian estimate in the zone where a bicubic-downscaled texture looks the same
        to the fit (UNCERTAIN_SIGMAS)."""
        f = self.scale / 2.0
        return (not self.bicubic and self.sigma1 < UNCERTAIN_SIGMAS[0] * f
                and self.sigma2 < UNCERTAIN_SIGMAS[1] * f)

    def jitter(self):
        """The kernels training draws around this estimate (degradation.GaussianJitter), or
        None when it looks bicubic."""
        from .degradation import GaussianJitter

        if self.bicubic:
            return None
        return GaussianJitter(self.sigma1, self.sigma2, self.theta, int(self.gaussian.shape[0]),
                              JITTER_SPREAD, JITTER_ANGLE)

    def caution(self):
        """One line for the user when the estimate is uncertain, else None."""
        if not self.uncertain:
            return None
        return ("caution: so small a blur is also what a digitally (bicubic) downscaled texture looks like "
                "to the estimate; if this image was resized by software rather than taken by a camera, "
                "run without --kernel estimate (a wrong kernel here can cost several dB)")

    def summary(self):
        what = ("bicubic (default recipe)" if self.bicubic else
                f"Gaussian sigma {self.sigma1:.2f} x {self.sigma2:.2f} px at {math.degrees(self.theta):.0f} deg")
        return (f"estimated kernel: {what}; fit residual Gaussian {self.residual_gaussian:.4f}, "
                f"bicubic {self.residual_bicubic:.4f}; {self.seconds:.2f} s")

    def to_dict(self):
        return {"bicubic": self.bicubic, "sigma1": self.sigma1, "sigma2": self.sigma2, "theta": self.theta,
                "residual_gaussian": self.residual_gaussian, "residual_bicubic": self.residual_bicubic,
                "bins": self.bins, "seconds": self.seconds, "uncertain": self.uncertain}


def luma(img):
    """BT.601 luma of an RGB image in [0, 1] (grey images pass through)."""
    img = np.asarray(img, np.float64)
    if img.ndim == 2:
        return img
    if img.shape[2] < 3:
        return img[:, :, 0]
    return (16.0 + 65.481 * img[..., 0] + 128.553 * img[..., 1] + 24.966 * img[..., 2]) / 255.0


def _tiles(y, tile, max_tiles, seed):
    """The corners of the half-overlapping tile x tile tiles of y (at most max_tiles, picked
    by the seed when there are more) and the 2-D Hann window."""
    h, w = y.shape
    if h < tile or w < tile:
        raise UserError(f"the image ({h}x{w}) is too small to estimate its kernel: it needs at least "
                        f"{tile}x{tile} pixels")
    step = tile // 2
    ys = np.arange(0, h - tile + 1, step)
    xs = np.arange(0, w - tile + 1, step)
    corners = np.stack(np.meshgrid(ys, xs, indexing="ij"), -1).reshape(-1, 2)
    if len(corners) > max_tiles:
        pick = np.random.default_rng(seed).choice(len(corners), max_tiles, replace=False)
        corners = corners[np.sort(pick)]
    return corners, np.outer(np.hanning(tile), np.hanning(tile))


def welch_spectrum(y, tile=TILE, max_tiles=MAX_TILES, seed=0):
    """Averaged periodogram of Hann-windowed, mean-removed tiles (half overlapping) of the
    2-D array y; a white noise of variance v gives v at every frequency."""
    corners, win = _tiles(y, tile, max_tiles, seed)
    acc = np.zeros((tile, tile))
    for a in range(0, len(corners), 256):
        batch = np.stack([y[i:i + tile, j:j + tile] for i, j in corners[a:a + 256]])
        batch = (batch - batch.mean(axis=(1, 2), keepdims=True)) * win
        acc += (np.abs(np.fft.fft2(batch)) ** 2).sum(axis=0)
    return acc / len(corners) / (win ** 2).sum()


def welch_groups(y, groups, tile=TILE, max_tiles=MAX_TILES, seed=0):
    """`welch_spectrum` of the tiles split in `groups` equal groups by their detail (the
    mean power between 4 and 8 bins, where every kernel of the protocol still passes
    something): a list of averaged periodograms, smoothest tiles first. The same tiles as
    welch_spectrum (the seed picks them when there are more than max_tiles)."""
    corners, win = _tiles(y, tile, max_tiles, seed)
    m = np.fft.fftfreq(tile) * tile
    r = np.hypot(m[:, None], m[None, :])
    band = (r >= 4) & (r <= 8)

    def periodograms(a):
        batch = np.stack([y[i:i + tile, j:j + tile] for i, j in corners[a:a + 256]])
        batch = (batch - batch.mean(axis=(1, 2), keepdims=True)) * win
        return np.abs(np.fft.fft2(batch)) ** 2

    energy = np.concatenate([periodograms(a)[:, band].mean(1) for a in range(0, len(corners), 256)])
    group = np.empty(len(corners), np.int64)
    for g, idx in enumerate(np.array_split(np.argsort(energy, kind="stable"), groups)):
        group[idx] = g
    acc = np.zeros((groups, tile, tile))
    for a in range(0, len(corners), 256):
        p = periodograms(a)
        for g in range(groups):
            acc[g] += p[group[a:a + 256] == g].sum(axis=0)
    counts = np.bincount(group, minlength=groups)
    return [acc[g] / max(counts[g], 1) / (win ** 2).sum() for g in range(groups)]


def cross_scale_ratios(P, floor, noise=0.0):
    """(nu_y, nu_x, R) at every even frequency of the periodogram P (square, side n) that
    is in the band and above the floor: R = log(P(nu / 2) - noise) - log(P(nu) - noise),
    `noise` a white floor known to be in P (0: none taken off; it must be below `floor`)."""
    n = P.shape[0]
    m = np.fft.fftfreq(n) * n                     # integer bin indices, signed
    my, mx = np.meshgrid(m, m, indexing="ij")
    nu_y, nu_x = 2 * np.pi * my / n, 2 * np.pi * mx / n
    r = np.hypot(nu_y, nu_x)
    keep = ((my % 2 == 0) & (mx % 2 == 0) & (r >= 2 * np.pi * NU_MIN_BINS / n) & (r <= NU_MAX * np.pi)
            & (P > floor))
    half = P[(my[keep] // 2).astype(int) % n, (mx[keep] // 2).astype(int) % n]
    ok = half > floor
    R = np.log(half[ok] - noise) - np.log(P[keep][ok] - noise)
    return nu_y[keep][ok], nu_x[keep][ok], R


def _design(nu_y, nu_x):
    phi = np.arctan2(nu_y, nu_x)
    return np.stack([np.ones_like(phi), np.cos(2 * phi), np.sin(2 * phi)], 1)


def fit_gaussian(nu_y, nu_x, R, scale):
    """Least-squares covariance (x, y order, high-resolution pixels) and mean squared residual."""
    c = 3.0 / (4.0 * scale * scale)
    A = np.concatenate([_design(nu_y, nu_x), np.stack([c * nu_x * nu_x, c * 2 * nu_x * nu_y, c * nu_y * nu_y], 1)], 1)
    sol, *_ = np.linalg.lstsq(A, R, rcond=None)
    cov = np.array([[sol[3], sol[4]], [sol[4], sol[5]]])
    return cov, float(np.mean((R - A @ sol) ** 2))


def _dtft_power(k, wy, wx):
    h, w = k.shape
    ty = np.arange(h) - (h - 1) / 2.0
    tx = np.arange(w) - (w - 1) / 2.0
    ey = np.exp(-1j * wy[:, None] * ty[None, :])
    ex = np.exp(-1j * wx[:, None] * tx[None, :])
    return np.abs(np.einsum("mh,hw,mw->m", ey, k, ex)) ** 2


def kernel_residual(k, nu_y, nu_x, R, scale):
    """Mean squared residual of R explained by the discrete kernel k (high-resolution grid)
    plus the scene's terms (1, cos 2 phi, sin 2 phi)."""
    pred = np.log(_dtft_power(k, nu_y / (2 * scale), nu_x / (2 * scale)) + 1e-12) \
        - np.log(_dtft_power(k, nu_y / scale, nu_x / scale) + 1e-12)
    A = _design(nu_y, nu_x)
    sol, *_ = np.linalg.lstsq(A, R - pred, rcond=None)
    return float(np.mean((R - pred - A @ sol) ** 2))


def bicubic_kernel(scale):
    """MATLAB's antialiased bicubic downscale by an integer `scale` as a numeric kernel
    (4 s x 4 s, separable): `resize(img, 1/s, kernel=bicubic_kernel(s))` equals
    `resize(img, 1/s)` away from the borders."""
    from .kernels.resize import contributions

    s = int(round(scale))
    w, idx = contributions(16 * s, 16, 1.0 / s)
    row = w[8]
    taps = idx[8] - idx[8].min()
    k1 = np.zeros(int(taps.max()) + 1)
    np.add.at(k1, taps, row)
    k1 = np.trim_zeros(k1)
    return np.outer(k1, k1)


def clamp_cov(cov, scale):
    """cov with its eigenvalues clamped to [MIN_SIGMA^2, (MAX_SIGMA_PER_SCALE s)^2]."""
    vals, vecs = np.linalg.eigh((cov + cov.T) / 2)
    vals = np.clip(vals, MIN_SIGMA ** 2, (MAX_SIGMA_PER_SCALE * scale) ** 2)
    return vecs @ np.diag(vals) @ vecs.T


def _cov(s1, s2, theta):
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    return rot @ np.diag([s1 * s1, s2 * s2]) @ rot.T


def _axes(cov):
    """(sigma1 >= sigma2, theta of sigma1's axis in [0, pi)) of a covariance."""
    vals, vecs = np.linalg.eigh(cov)
    return (math.sqrt(max(vals[1], 0.0)), math.sqrt(max(vals[0], 0.0)),
            math.atan2(vecs[1, 1], vecs[0, 1]) % math.pi)


def alias_log_spectrum(cov, nu_y, nu_x, scale, orders=ALIAS_ORDERS, alpha=SCENE_ALPHA):
    """log of the low-resolution spectrum at (nu_y, nu_x) of a power-law scene |w|^-alpha
    blurred by the Gaussian of covariance `cov` (x, y; high-resolution pixels) and sampled
    every `scale` pixels: the aliases within `orders` periods each way summed, the scene's
    own |nu|^-alpha taken off (so that without aliasing this is log|K(nu / s)|^2)."""
    return _AliasModel(nu_y, nu_x, scale, orders, alpha)(cov)


class _AliasModel:
    """alias_log_spectrum at fixed frequencies, for many covariances (the refinement's
    inner loop): the aliases' quadratic terms and scene weights computed once."""

    def __init__(self, nu_y, nu_x, scale, orders=ALIAS_ORDERS, alpha=SCENE_ALPHA):
        a = 2 * np.pi * np.arange(-orders, orders + 1)
        wy = (nu_y[None, None, :] + a[:, None, None]).repeat(len(a), 1)
        wx = (nu_x[None, None, :] + a[None, :, None]).repeat(len(a), 0)
        wy, wx = wy.reshape(-1, len(nu_y)), wx.reshape(-1, len(nu_x))
        inv = 1.0 / (scale * scale)
        self.q = np.stack([wx * wx * inv, 2 * wx * wy * inv, wy * wy * inv])
        self.weight = (wy * wy + wx * wx) ** (-alpha / 2)
        self.offset = alpha / 2 * np.log(nu_y * nu_y + nu_x * nu_x)

    def __call__(self, cov):
        e = np.exp(-(cov[0, 0] * self.q[0] + cov[0, 1] * self.q[1] + cov[1, 1] * self.q[2]))
        return np.log((e * self.weight).sum(axis=0) + 1e-300) + self.offset


def refine_gaussian(y, scale, seed=0, channels="colour", groups=None, start=None):
    """The refined fit of the module docstring on the luma y: (sigma1, sigma2, theta, info).
    `channels` (a key of LUMA_NOISE) says what y was made of, for its rounding noise.
    `start` (a covariance) replaces the closed-form start on the grouped data. None when the
    grouped spectra leave too few frequencies."""
    from scipy.optimize import minimize

    groups = GROUPS if groups is None else groups
    noise = LUMA_NOISE[channels] * (1.0 / 255.0) ** 2 / 12.0
    floor = FLOOR * (1.0 / 255.0) ** 2 / 12.0
    parts = [cross_scale_ratios(P, floor, noise) for P in welch_groups(y, groups, seed=seed)]
    parts = [p for p in parts if len(p[2]) >= 6]
    if not parts or sum(len(p[2]) for p in parts) < 12:
        return None
    nu_y, nu_x, R = (np.concatenate([p[i] for p in parts]) for i in range(3))
    # scene terms (1, cos 2 phi, sin 2 phi) for each group of tiles
    blocks = [_design(p[0], p[1]) for p in parts]
    width = blocks[0].shape[1]
    D = np.zeros((len(R), width * len(parts)))
    o = 0
    for g, b in enumerate(blocks):
        D[o:o + len(b), width * g:width * (g + 1)] = b
        o += len(b)
    proj = np.linalg.pinv(D)
    if start is None:
        c = 3.0 / (4.0 * scale * scale)
        K = np.stack([c * nu_x * nu_x, c * 2 * nu_x * nu_y, c * nu_y * nu_y], 1)
        sol, *_ = np.linalg.lstsq(np.concatenate([D, K], 1), R, rcond=None)
        start = np.array([[sol[-3], sol[-2]], [sol[-2], sol[-1]]])
    s1, s2, theta = _axes(clamp_cov(start, scale))
    lo, hi = math.log(MIN_SIGMA), math.log(MAX_SIGMA_PER_SCALE * scale)
    r2 = (nu_y * nu_y + nu_x * nu_x) ** (SCENE_ALPHA / 2)
    white_lo, white_hi = -12.0, 3.0  # log of the white ratio's range

    def unpack(p):
        return (math.exp(min(max(p[0], lo), hi)), math.exp(min(max(p[1], lo), hi)), p[2],
                math.exp(min(max(p[3], white_lo), white_hi)))

    at_half, at_nu = _AliasModel(nu_y / 2, nu_x / 2, scale), _AliasModel(nu_y, nu_x, scale)

    def residual(p):
        a, b, t, white = unpack(p)
        cov = _cov(a, b, t)
        pred = at_half(cov) - at_nu(cov) + np.log((2.0 ** SCENE_ALPHA / r2 + white) / (1.0 / r2 + white))
        d = R - pred
        d = d - D @ (proj @ d)
        return float(np.mean(d * d))

    x0 = [math.log(max(s1, MIN_SIGMA)), math.log(max(s2, MIN_SIGMA)), theta, -6.0]
    res = minimize(residual, x0, method="Nelder-Mead",
                   options=dict(xatol=1e-3, fatol=1e-8, maxfev=REFINE_EVALS))
    a, b, t, white = unpack(res.x)
    s1, s2, theta = _axes(_cov(a, b, t))
    # bicubic under the same model (its exact spectrum, aliases summed), the white ratio
    # fitted on a grid: the bicubic-or-not test
    kb = bicubic_kernel(scale)
    pred_b = _alias_log_power(kb, nu_y / 2, nu_x / 2, scale) - _alias_log_power(kb, nu_y, nu_x, scale)

    def residual_b(lw):
        d = R - pred_b - np.log((2.0 ** SCENE_ALPHA / r2 + math.exp(lw)) / (1.0 / r2 + math.exp(lw)))
        d = d - D @ (proj @ d)
        return float(np.mean(d * d))

    res_b = min(residual_b(lw) for lw in np.linspace(white_lo, white_hi, 121))
    return s1, s2, theta, {"refine_residual": float(res.fun), "refine_residual_bicubic": res_b,
                           "refine_evals": int(res.nfev), "white_ratio": white, "refine_bins": int(len(R)),
                           "groups": len(parts)}


def _alias_log_power(k, nu_y, nu_x, scale, orders=ALIAS_ORDERS, alpha=SCENE_ALPHA):
    """alias_log_spectrum for a discrete kernel k (high-resolution grid) instead of a Gaussian."""
    acc = 0.0
    for a in range(-orders, orders + 1):
        for b in range(-orders, orders + 1):
            wy, wx = nu_y + 2 * np.pi * a, nu_x + 2 * np.pi * b
            acc = acc + _dtft_power(k, wy / scale, wx / scale) * (wy * wy + wx * wx) ** (-alpha / 2)
    return np.log(acc + 1e-300) + alpha / 2 * np.log(nu_y * nu_y + nu_x * nu_x)


def estimate_kernel(img, scale=2.0, seed=0, progress=None):
    """Estimate the kernel that downscaled `img` (float HxWx3 in [0, 1]) by `scale`.

    Deterministic for a seed (the seed only picks the tiles of a very large image), and
    fast (tens of milliseconds for a photo of a few hundred pixels a side, the refinement
    included; at most MAX_TILES tiles are read; the first call also imports scipy.optimize).
    progress(done, total, label), when given, is called after each of the three phases.
    Returns a KernelEstimate: sigma1/sigma2/theta, `gaussian`, the two residuals and the
    bicubic-or-not decision are the refined fit's (`info["closed_form"]` has the closed
    form's, `info` the refinement's figures)."""
    from .degradation import gaussian_from_cov, gaussian_kernel, protocol_size

    t0 = time.perf_counter()
    scale = float(scale)
    if not (scale > 1):
        raise UserError(f"kernel estimation needs a scale > 1, got {scale}")
    img = np.asarray(img)
    y = luma(img)
    P = welch_spectrum(y, seed=seed)
    if progress:
        progress(1, 3, "spectrum")
    floor = FLOOR * (1.0 / 255.0) ** 2 / 12.0
    nu_y, nu_x, R = cross_scale_ratios(P, floor)
    if len(R) < 12:
        raise UserError("the image has too little detail to estimate its kernel; give --kernel FILE or none")
    cov, _ = fit_gaussian(nu_y, nu_x, R, scale)
    cov = clamp_cov(cov, scale)
    closed = gaussian_from_cov(cov, protocol_size(scale))
    s1, s2, theta = _axes(cov)
    info = {"closed_form": {"sigma1": s1, "sigma2": s2, "theta": theta}}
    v = np.asarray(img[::7, ::7], np.float64) * 255.0
    if not np.allclose(v, np.round(v), atol=1e-3):
        channels = "unrounded"  # not on 8-bit levels (16-bit or float input): no rounding floor
    elif img.ndim == 2 or img.shape[2] < 3:
        channels = "single"
    elif np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2]):
        channels = "grey"
    else:
        channels = "colour"
    refined = refine_gaussian(y, scale, seed=seed, channels=channels)
    if refined is not None:
        s1, s2, theta, more = refined
        info.update(more)
    gauss = gaussian_kernel(s1, s2, theta, protocol_size(scale))
    if progress:
        progress(2, 3, "Gaussian fit")
    # bicubic or not: bicubic's residual against the Gaussian's, on the refined model when
    # there is one, else on the closed form
    info["closed_form"]["residual_gaussian"] = kernel_residual(closed, nu_y, nu_x, R, scale)
    info["closed_form"]["residual_bicubic"] = kernel_residual(bicubic_kernel(scale), nu_y, nu_x, R, scale)
    if refined is not None:
        res_g, res_b, margin = info["refine_residual"], info["refine_residual_bicubic"], REFINED_BICUBIC_MARGIN
    else:
        res_g, res_b = info["closed_form"]["residual_gaussian"], info["closed_form"]["residual_bicubic"]
        margin = BICUBIC_MARGIN
    if progress:
        progress(3, 3, "bicubic or not")
    is_bic = res_b <= margin * res_g
    return KernelEstimate(kernel=None if is_bic else gauss, gaussian=gauss, sigma1=s1, sigma2=s2, theta=theta,
                          residual_gaussian=res_g, residual_bicubic=res_b, bins=int(len(R)),
                          seconds=time.perf_counter() - t0, scale=scale, info=info)


def kernel_transforms(kernel, tol=0.1):
    """The flips/rotations (engine.data.dihedral indices) that leave `kernel`'s shape about
    the same: its second moments (covariance) change by at most tol x their trace. A network
    trained with an anisotropic kernel undoes that kernel, not its rotations, so its
    self-ensemble may use only these (identity and rot180 always; all 8 for a round one)."""
    from .data import dihedral
    from .degradation import moments

    k = np.asarray(kernel, np.float64)
    _, cov = moments(k)
    out = []
    for t in range(8):
        kt = np.ascontiguousarray(dihedral(k[:, :, None], t)[:, :, 0])
        _, ct = moments(kt)
        if np.linalg.norm(ct - cov) <= tol * np.trace(cov):
            out.append(t)
    return tuple(out)


def plot_kernel(path, kernel, title="", force=False, protect=()):
    """Write a PNG showing the kernel (and its sigmas and angle)."""
    from .degradation import describe
    from .io import check_writable
    from .plots import _figure, _save

    check_writable(path, force=force, protect=protect)
    k = np.asarray(kernel, np.float64)
    d = describe(k)
    fig, ax = _figure(figsize=(3.6, 3.6))
    ax.imshow(k, cmap="magma", interpolation="nearest")
    ax.set_title((title + "\n" if title else "") +
                 f"sigma {d['sigma1']:.2f} x {d['sigma2']:.2f} px, {math.degrees(d['theta']):.0f} deg", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    _save(fig, path)


def save_kernel(path, kernel, force=False, protect=()):
    """Save a kernel as .npy, atomically."""
    from .io import atomic_write, check_writable

    check_writable(path, force=force, protect=protect)

    def writer(tmp):
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(kernel, np.float64), allow_pickle=False)

    atomic_write(path, writer)
