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
BICUBIC_MARGIN = 1.5  # bicubic if its residual <= BICUBIC_MARGIN x the Gaussian's
MIN_SIGMA = 0.4       # smallest sigma (high-resolution pixels) of an estimate
MAX_SIGMA_PER_SCALE = 2.0  # largest sigma, times the scale


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

    def summary(self):
        what = ("bicubic (default recipe)" if self.bicubic else
                f"Gaussian sigma {self.sigma1:.2f} x {self.sigma2:.2f} px at {math.degrees(self.theta):.0f} deg")
        return (f"estimated kernel: {what}; fit residual Gaussian {self.residual_gaussian:.4f}, "
                f"bicubic {self.residual_bicubic:.4f}; {self.seconds:.2f} s")

    def to_dict(self):
        return {"bicubic": self.bicubic, "sigma1": self.sigma1, "sigma2": self.sigma2, "theta": self.theta,
                "residual_gaussian": self.residual_gaussian, "residual_bicubic": self.residual_bicubic,
                "bins": self.bins, "seconds": self.seconds}


def luma(img):
    """BT.601 luma of an RGB image in [0, 1] (grey images pass through)."""
    img = np.asarray(img, np.float64)
    if img.ndim == 2:
        return img
    if img.shape[2] < 3:
        return img[:, :, 0]
    return (16.0 + 65.481 * img[..., 0] + 128.553 * img[..., 1] + 24.966 * img[..., 2]) / 255.0


def welch_spectrum(y, tile=TILE, max_tiles=MAX_TILES, seed=0):
    """Averaged periodogram of Hann-windowed, mean-removed tiles (half overlapping) of the
    2-D array y; a white noise of variance v gives v at every frequency."""
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
    win = np.outer(np.hanning(tile), np.hanning(tile))
    acc = np.zeros((tile, tile))
    for a in range(0, len(corners), 256):
        batch = np.stack([y[i:i + tile, j:j + tile] for i, j in corners[a:a + 256]])
        batch = (batch - batch.mean(axis=(1, 2), keepdims=True)) * win
        acc += (np.abs(np.fft.fft2(batch)) ** 2).sum(axis=0)
    return acc / len(corners) / (win ** 2).sum()


def cross_scale_ratios(P, floor):
    """(nu_y, nu_x, R) at every even frequency of the periodogram P (square, side n) that
    is in the band and above the floor: R = log P(nu / 2) - log P(nu)."""
    n = P.shape[0]
    m = np.fft.fftfreq(n) * n                     # integer bin indices, signed
    my, mx = np.meshgrid(m, m, indexing="ij")
    nu_y, nu_x = 2 * np.pi * my / n, 2 * np.pi * mx / n
    r = np.hypot(nu_y, nu_x)
    keep = ((my % 2 == 0) & (mx % 2 == 0) & (r >= 2 * np.pi * NU_MIN_BINS / n) & (r <= NU_MAX * np.pi)
            & (P > floor))
    half = P[(my[keep] // 2).astype(int) % n, (mx[keep] // 2).astype(int) % n]
    ok = half > floor
    R = np.log(half[ok]) - np.log(P[keep][ok])
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


def estimate_kernel(img, scale=2.0, seed=0, progress=None):
    """Estimate the kernel that downscaled `img` (float HxWx3 in [0, 1]) by `scale`.

    Deterministic for a seed (the seed only picks the tiles of a very large image), and
    fast (tens of milliseconds for a photo of a few hundred pixels a side; at most
    MAX_TILES tiles are read). progress(done, total, label), when given, is called after
    each of the three phases. Returns a KernelEstimate."""
    from .degradation import gaussian_from_cov, protocol_size

    t0 = time.perf_counter()
    scale = float(scale)
    if not (scale > 1):
        raise UserError(f"kernel estimation needs a scale > 1, got {scale}")
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
    gauss = gaussian_from_cov(cov, protocol_size(scale))
    if progress:
        progress(2, 3, "Gaussian fit")
    res_g = kernel_residual(gauss, nu_y, nu_x, R, scale)
    res_b = kernel_residual(bicubic_kernel(scale), nu_y, nu_x, R, scale)
    if progress:
        progress(3, 3, "bicubic or not")
    vals, vecs = np.linalg.eigh(cov)
    theta = math.atan2(vecs[1, 1], vecs[0, 1]) % math.pi
    is_bic = res_b <= BICUBIC_MARGIN * res_g
    return KernelEstimate(kernel=None if is_bic else gauss, gaussian=gauss, sigma1=math.sqrt(vals[1]),
                          sigma2=math.sqrt(vals[0]), theta=theta, residual_gaussian=res_g, residual_bicubic=res_b,
                          bins=int(len(R)), seconds=time.perf_counter() - t0, scale=scale)


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
