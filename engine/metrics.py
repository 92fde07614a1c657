"""The literature's super-resolution evaluation protocol: PSNR and SSIM on the luma channel.

The protocol (x s), as used by SRCNN, VDSR, ZSSR and most papers since:

1. HR is cropped to a multiple of ``s`` (:func:`modcrop`).
2. LR is a MATLAB-style bicubic ``imresize(HR, 1/s)`` rounded to uint8 (not this module's job).
3. SR, the method's output, is rounded to uint8 (:func:`quantize`).
4. Both are converted to BT.601 luma Y in [16, 235] (:func:`rgb_to_y`), ``s`` pixels are cut
   from every border, and PSNR (peak 255) and SSIM (Gaussian window, sigma 1.5, data range
   255) are computed on Y (:func:`psnr_y`, :func:`ssim_y`, :func:`evaluate_pair`).

Images are numpy arrays H x W x C (C = 3 for RGB, C = 1 or a 2-D array for grey), either
float in [0, 1] (the engine's convention) or uint8 levels 0..255 (as read from a PNG).
Everything here is plain numpy plus :func:`skimage.metrics.structural_similarity`.
"""

from __future__ import annotations

import numbers

import numpy as np
from skimage.metrics import structural_similarity

from .errors import UserError

__all__ = [
    "modcrop",
    "rgb_to_y",
    "quantize",
    "psnr",
    "psnr_y",
    "ssim_y",
    "evaluate_pair",
]

# ITU-R BT.601 luma for R, G, B in [0, 1]: Y = 16 + 65.481 R + 128.553 G + 24.966 B.
_Y_OFFSET = 16.0
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966], dtype=np.float64)

PEAK = 255.0
SSIM_SIGMA = 1.5


# ----------------------------------------------------------------------------- checks


def _check_scale(scale) -> int:
    """A positive integer scale (an integral float such as 2.0 is accepted)."""
    if isinstance(scale, (bool, np.bool_)) or not isinstance(scale, numbers.Real):
        raise UserError(f"scale must be a positive integer, got {scale!r}")
    if scale != int(scale) or int(scale) < 1:
        raise UserError(f"scale must be a positive integer, got {scale!r}")
    return int(scale)


def _check_border(border) -> int:
    if isinstance(border, (bool, np.bool_)) or not isinstance(border, numbers.Real):
        raise UserError(f"border must be a non-negative integer, got {border!r}")
    if border != int(border) or int(border) < 0:
        raise UserError(f"border must be a non-negative integer, got {border!r}")
    return int(border)


def _check_image(img, name: str = "image") -> np.ndarray:
    """An H x W or H x W x C array with C in {1, 3}; returns it as a numpy array."""
    img = np.asarray(img)
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3)):
        raise UserError(
            f"{name} must be H x W (grey) or H x W x 1 / H x W x 3, got shape {img.shape}"
        )
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise UserError(f"{name} is empty (shape {img.shape})")
    return img


def _levels(img, name: str) -> np.ndarray:
    """Quantise to uint8 levels and return them as float64 in [0, 1] (exactly level/255).

    uint8 input is taken as levels 0..255 as is; float input as [0, 1] (clipped, rounded).
    """
    img = _check_image(img, name)
    if img.dtype == np.uint8:
        return img.astype(np.float64) / PEAK
    if not np.issubdtype(img.dtype, np.floating):
        raise UserError(
            f"{name} must be float in [0, 1] or uint8, got dtype {img.dtype}"
        )
    if not np.all(np.isfinite(img)):
        raise UserError(f"{name} contains NaN or infinite values")
    return np.round(np.clip(img.astype(np.float64), 0.0, 1.0) * PEAK) / PEAK


def _check_pair(sr, hr) -> tuple[np.ndarray, np.ndarray]:
    sr = _check_image(sr, "sr")
    hr = _check_image(hr, "hr")
    if sr.shape != hr.shape:
        raise UserError(
            f"sr and hr must have the same shape, got {sr.shape} and {hr.shape} "
            "(crop hr with modcrop(hr, scale) before upscaling its LR)"
        )
    return sr, hr


def _crop_border(y: np.ndarray, border: int) -> np.ndarray:
    h, w = y.shape[:2]
    if 2 * border >= h or 2 * border >= w:
        raise UserError(
            f"border {border} leaves nothing of a {h}x{w} image to score"
        )
    if border == 0:
        return y
    return y[border:h - border, border:w - border]


# ----------------------------------------------------------------------------- protocol


def modcrop(img, scale) -> np.ndarray:
    """Crop H and W down to multiples of ``scale``, keeping the top-left corner.

    Parameters
    ----------
    img : ndarray, H x W or H x W x C
    scale : int, >= 1

    Returns
    -------
    ndarray
        A view ``img[:H - H % scale, :W - W % scale]``.
    """
    scale = _check_scale(scale)
    img = np.asarray(img)
    if img.ndim not in (2, 3):
        raise UserError(f"image must be H x W or H x W x C, got shape {img.shape}")
    h, w = img.shape[:2]
    hh, ww = h - h % scale, w - w % scale
    if hh == 0 or ww == 0:
        raise UserError(f"a {h}x{w} image is smaller than the scale {scale}")
    return img[:hh, :ww]


def rgb_to_y(img) -> np.ndarray:
    """BT.601 luma Y = 16 + 65.481 R + 128.553 G + 24.966 B, for R, G, B in [0, 1].

    Parameters
    ----------
    img : ndarray, H x W x 3 (RGB), or H x W / H x W x 1 (grey: R = G = B), float in [0, 1]

    Returns
    -------
    ndarray, float64, H x W
        Y in [16, 235] for inputs in [0, 1]. No rounding or clipping is done here.
    """
    img = _check_image(img)
    x = img.astype(np.float64)
    if x.ndim == 3 and x.shape[2] == 3:
        return _Y_OFFSET + x @ _Y_WEIGHTS
    if x.ndim == 3:
        x = x[:, :, 0]
    return _Y_OFFSET + _Y_WEIGHTS.sum() * x


def quantize(img) -> np.ndarray:
    """Round to uint8 levels and back to float in [0, 1]: ``round(clip(img, 0, 1) * 255) / 255``.

    The result keeps the input's float dtype (float64 for non-float input).
    """
    x = np.asarray(img)
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
    x = x.astype(dtype, copy=False)
    return (np.round(np.clip(x, 0.0, 1.0) * 255.0) / 255.0).astype(dtype, copy=False)


def psnr(a, b, peak: float = PEAK) -> float:
    """PSNR in dB of two same-shaped arrays, taken as they are (no rounding, no cropping).

    ``10 log10(peak^2 / mean((a - b)^2))`` in float64; ``inf`` when they are equal.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise UserError(f"arrays must have the same shape, got {a.shape} and {b.shape}")
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(peak * peak / mse))


def _y_pair(sr, hr, border) -> tuple[np.ndarray, np.ndarray]:
    """Both images quantised, converted to Y, ``border`` pixels cut from every side."""
    sr, hr = _check_pair(sr, hr)
    border = _check_border(border)
    ys = _crop_border(rgb_to_y(_levels(sr, "sr")), border)
    yh = _crop_border(rgb_to_y(_levels(hr, "hr")), border)
    return ys, yh


def psnr_y(sr, hr, border) -> float:
    """PSNR (peak 255) on the Y channel of the uint8-quantised images, border cropped.

    Parameters
    ----------
    sr, hr : ndarray, same shape, float in [0, 1] or uint8
    border : int
        Pixels cut from every side before scoring (the protocol uses the scale).

    Returns
    -------
    float
        dB; ``inf`` when the quantised Y channels are identical.
    """
    ys, yh = _y_pair(sr, hr, border)
    return psnr(ys, yh, PEAK)


def ssim_y(sr, hr, border) -> float:
    """SSIM on the Y channel of the uint8-quantised images, border cropped.

    Uses :func:`skimage.metrics.structural_similarity` with a Gaussian window
    (sigma 1.5, i.e. 11 x 11), population covariances and data range 255, as in
    Wang et al. (2004). The cropped image must be at least 11 x 11.
    """
    ys, yh = _y_pair(sr, hr, border)
    return _ssim(ys, yh)


def _ssim(ys: np.ndarray, yh: np.ndarray) -> float:
    win = 2 * int(3.5 * SSIM_SIGMA + 0.5) + 1  # skimage's window for gaussian_weights
    if min(ys.shape) < win:
        raise UserError(
            f"SSIM needs at least {win}x{win} pixels after cropping the border, "
            f"got {ys.shape[0]}x{ys.shape[1]}"
        )
    value = structural_similarity(
        ys,
        yh,
        gaussian_weights=True,
        sigma=SSIM_SIGMA,
        use_sample_covariance=False,
        data_range=PEAK,
    )
    return float(value)


def evaluate_pair(sr, hr, scale) -> dict:
    """PSNR and SSIM of one SR result against its HR under the protocol (border = scale).

    ``hr`` should already be modcropped (:func:`modcrop`) and ``sr`` must have its shape.

    Returns
    -------
    dict
        ``{"psnr": float, "ssim": float}``.
    """
    scale = _check_scale(scale)
    ys, yh = _y_pair(sr, hr, scale)
    return {"psnr": psnr(ys, yh, PEAK), "ssim": _ssim(ys, yh)}
