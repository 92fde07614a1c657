"""Blind super-resolution, evaluated: `zssr eval DIR --degradation random`.

For every ground-truth image of a folder (sorted by name; the i-th, from 0, uses the seed
`seed + i`): modcrop, a random kernel of the protocol (`engine.degradation`), the
low-resolution image made with it and rounded to uint8 levels; then super-resolution with
each asked setting:

* ``bicubic``: the bicubic assumption, zssr's default recipe as for any photo;
* ``true``: the true kernel given (the upper bound of knowing it);
* ``estimate``: the kernel estimated from the low-resolution image (`--kernel estimate`).

Scored as the literature's protocol does: outputs rounded to uint8, PSNR/SSIM on luma with
`scale` pixels cut from every border. The estimate's own error against the true kernel
(`degradation.kernel_error`) is reported beside, and the seconds of estimation and of
super-resolution apart.
"""
from __future__ import annotations

import time

import numpy as np

from . import metrics
from .errors import UserError

SETTINGS = ("bicubic", "true", "estimate")


def parse_settings(text):
    """'bicubic,true,estimate' (any subset, in any order) -> a tuple in SETTINGS' order."""
    if text is None or str(text).strip() in ("", "all"):
        return SETTINGS
    asked = [t.strip() for t in str(text).split(",") if t.strip()]
    bad = [t for t in asked if t not in SETTINGS]
    if bad:
        raise UserError(f"--kernel for eval takes {', '.join(SETTINGS)} (comma-separated), got {bad[0]!r}")
    return tuple(s for s in SETTINGS if s in asked)


def degraded_pair(hr, scale, seed, noise=0.0):
    """(hr cropped, lr in uint8 levels, kernel, params) of the protocol for this seed."""
    from .degradation import degrade_image, modcrop, protocol_kernel

    rng = np.random.default_rng(seed)
    k, params = protocol_kernel(scale, rng)
    lr = degrade_image(hr, scale, k, noise=noise, rng=rng)
    return np.ascontiguousarray(modcrop(hr, scale), np.float32), metrics.quantize(lr), k, params


def evaluate_blind(folder, scale, seed, sr_fn, settings=SETTINGS, on_row=None, noise=0.0, check=None):
    """Run the experiment on a folder (module docstring). sr_fn(lr, kernel, jitter) -> sr
    (kernel None: the bicubic assumption; jitter: the estimate's `KernelEstimate.jitter()`
    for training, else None). Returns {"rows": [...], "mean": {...}, "settings": [...]}.
    Each row: name, h, w, seed, the true kernel's k_sigma1/k_sigma2/k_theta, per setting
    `{setting}_psnr`, `{setting}_ssim`, `{setting}_seconds` (super-resolution alone); with estimate also
    estimation_seconds, kernel_l2, kernel_psnr, estimate_bicubic (the estimate judged the image
    bicubic) and the estimate's sigmas and angle. ``check(name, lr_hw)``, if given, is called
    for every image before any work (e.g. the memory guard)."""
    from .degradation import kernel_error
    from .io import list_images, load_image
    from .kernel_estimate import estimate_kernel

    s = int(round(scale))
    if abs(scale - s) > 1e-9 or s < 2:
        raise UserError(f"--degradation random needs an integer --scale >= 2, got {scale}")
    files = list_images(folder)
    if check is not None:
        for path in files:
            h, w = load_image(path).rgb.shape[:2]
            check(path.name, (h // s, w // s))
    rows = []
    for i, path in enumerate(files):
        hr, lr, k, params = degraded_pair(load_image(path).rgb, s, seed + i, noise)
        row = dict(name=path.name, h=int(hr.shape[0]), w=int(hr.shape[1]), seed=seed + i,
                   k_sigma1=params["sigma1"], k_sigma2=params["sigma2"], k_theta=params["theta"])
        for setting in settings:
            kern = jitter = None
            if setting == "true":
                kern = k
            elif setting == "estimate":
                est = estimate_kernel(lr, s, seed=seed + i)
                err = kernel_error(est.gaussian, k)
                row.update(estimation_seconds=est.seconds, estimate_bicubic=est.bicubic, kernel_l2=err["l2"],
                           kernel_psnr=err["psnr"], est_sigma1=est.sigma1, est_sigma2=est.sigma2,
                           est_theta=est.theta)
                kern, jitter = est.kernel, est.jitter()
            t0 = time.perf_counter()
            sr = np.asarray(sr_fn(lr, kern, jitter))
            row[f"{setting}_seconds"] = time.perf_counter() - t0
            if sr.shape != hr.shape:
                raise UserError(f"{path.name}: the method returned {sr.shape}, expected {hr.shape}")
            o = metrics.evaluate_pair(metrics.quantize(sr), hr, s)
            row[f"{setting}_psnr"], row[f"{setting}_ssim"] = o["psnr"], o["ssim"]
        rows.append(row)
        if on_row is not None:
            on_row(row)
    keys = [k for k in rows[0] if isinstance(rows[0][k], float) and not k.startswith(("k_", "est_"))] if rows else []
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    return dict(rows=rows, mean=mean, settings=list(settings), scale=s, seed=seed)


def format_blind_table(result):
    """One line per image: each setting's PSNR / SSIM, the kernel's error, the seconds."""
    st = result["settings"]
    head = ["image"] + [f"{s} PSNR / SSIM" for s in st]
    if "estimate" in st:
        head += ["kernel PSNR", "kernel L2", "estimation s", "SR s (estimate)"]

    def line(name, r):
        c = [name] + [f"{r[s + '_psnr']:.2f} / {r[s + '_ssim']:.4f}" for s in st]
        if "estimate" in st:
            c += [f"{r['kernel_psnr']:.1f}", f"{r['kernel_l2']:.3f}", f"{r['estimation_seconds']:.2f}",
                  f"{r['estimate_seconds']:.1f}"]
        return c

    body = [line(r["name"] + (" (bicubic?)" if r.get("estimate_bicubic") else ""), r) for r in result["rows"]]
    cells = [head] + body + ([line("mean", result["mean"])] if result["rows"] else [])
    widths = [max(len(c[j]) for c in cells) for j in range(len(head))]

    def fmt(c):
        return "  ".join([c[0].ljust(widths[0])] + [v.rjust(w) for v, w in zip(c[1:], widths[1:])]).rstrip()

    rule = "-" * len(fmt(head))
    out = [fmt(head), rule] + [fmt(c) for c in body]
    if result["rows"]:
        out += [rule, fmt(cells[-1])]
    return "\n".join(out)
