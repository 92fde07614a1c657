"""The literature's evaluation protocol over a folder of HR images (x s, integer s).

For every image: HR cropped to a multiple of ``s`` (modcrop); LR = MATLAB-style bicubic
``imresize(HR, 1/s)`` rounded to uint8 levels; the method upscales the LR back to the HR's
size; both the method's output and the bicubic baseline are rounded to uint8 and scored on
the BT.601 luma channel with ``s`` pixels cut from every border (:mod:`engine.metrics`).
See ``data/README.md`` in the shared folder for the protocol and reference figures.
"""
from __future__ import annotations

import time

import numpy as np

from . import metrics
from .errors import UserError
from .io import IMAGE_SUFFIXES, list_images

__all__ = ["IMAGE_SUFFIXES", "make_lr", "list_images", "evaluate_folder", "format_table"]


_SCORES = ("bicubic_psnr", "bicubic_ssim", "psnr", "ssim", "seconds")


def _resize(*args, **kwargs):
    from .kernels.resize import resize  # lazily: a sibling module
    return resize(*args, **kwargs)


def make_lr(hr, scale):
    """(hr cropped to a multiple of ``scale``, its bicubic x1/scale LR in uint8 levels).

    Parameters
    ----------
    hr : ndarray (H, W, 3), float in [0, 1]
    scale : int >= 1 (an integral float is accepted)

    Returns
    -------
    (hr_cropped, lr) : float32 arrays; ``lr`` is ``(H // scale, W // scale, 3)`` with values
    on the 1/255 grid.
    """
    hr = np.asarray(hr)
    if not np.issubdtype(hr.dtype, np.floating):
        raise UserError(f"hr must be float in [0, 1], got dtype {hr.dtype}")
    hr = np.ascontiguousarray(metrics.modcrop(hr, scale), dtype=np.float32)
    s = int(scale)
    lr = _resize(hr, scale=1.0 / s, shape=(hr.shape[0] // s, hr.shape[1] // s))
    return hr, metrics.quantize(lr)


def evaluate_folder(folder, scale, sr_fn, progress=None, on_row=None, check=None):
    """Score ``sr_fn`` and the bicubic baseline on every image of ``folder``.

    Parameters
    ----------
    folder : path of HR images
    scale : int >= 1
    sr_fn : callable(lr, scale) -> sr, float (H, W, 3) of the cropped HR's size
    progress : callable(name, i, n) or None, called before image i (0-based) of n
    on_row : callable(row) or None, called with each image's row as soon as it is scored
    check : callable(name, lr_hw) or None, called for every image before the first
        ``sr_fn`` (e.g. the memory guard: a job that cannot fit fails before any work)

    Returns
    -------
    dict
        ``rows``: one dict per image, ``{name, h, w, bicubic_psnr, bicubic_ssim, psnr, ssim,
        seconds}`` (h, w of the cropped HR; seconds of ``sr_fn`` alone); ``mean``: the mean
        of the score columns over the images.
    """
    metrics._check_scale(scale)
    scale = int(scale)
    files = list_images(folder)
    from .io import load_image  # lazily: a sibling module
    if check is not None:
        for path in files:
            check(path.name, make_lr(load_image(path).rgb, scale)[1].shape[:2])
    rows = []
    for i, path in enumerate(files):
        if progress is not None:
            progress(path.name, i, len(files))
        hr, lr = make_lr(load_image(path).rgb, scale)
        base = _resize(lr, shape=hr.shape[:2])
        t0 = time.perf_counter()
        sr = sr_fn(lr, scale)
        seconds = time.perf_counter() - t0
        sr = np.asarray(sr)
        if sr.shape != hr.shape:
            raise UserError(f"{path.name}: the method returned {sr.shape}, expected {hr.shape}")
        b = metrics.evaluate_pair(metrics.quantize(base), hr, scale)
        o = metrics.evaluate_pair(metrics.quantize(sr), hr, scale)
        rows.append(dict(name=path.name, h=int(hr.shape[0]), w=int(hr.shape[1]),
                         bicubic_psnr=b["psnr"], bicubic_ssim=b["ssim"],
                         psnr=o["psnr"], ssim=o["ssim"], seconds=seconds))
        if on_row is not None:
            on_row(rows[-1])
    mean = {k: float(np.mean([r[k] for r in rows])) for k in _SCORES}
    return dict(rows=rows, mean=mean)


def format_table(result):
    """A plain, aligned text table: one line per image, the mean at the bottom."""
    head = ("image", "size", "bicubic PSNR", "SSIM", "ours PSNR", "SSIM", "seconds")

    def line(name, size, r):
        return (name, size, f"{r['bicubic_psnr']:.2f}", f"{r['bicubic_ssim']:.4f}",
                f"{r['psnr']:.2f}", f"{r['ssim']:.4f}", f"{r['seconds']:.2f}")

    body = [line(r["name"], f"{r['h']}x{r['w']}", r) for r in result["rows"]]
    foot = line("mean", "", result["mean"])
    cells = [head] + body + [foot]
    widths = [max(len(c[j]) for c in cells) for j in range(len(head))]

    def fmt(c):
        # names left-aligned, numbers right-aligned
        parts = [c[0].ljust(widths[0]), c[1].ljust(widths[1])]
        parts += [v.rjust(wd) for v, wd in zip(c[2:], widths[2:])]
        return "  ".join(parts).rstrip()

    rule = "-" * len(fmt(head))
    return "\n".join([fmt(head), rule] + [fmt(c) for c in body] + [rule, fmt(foot)])
