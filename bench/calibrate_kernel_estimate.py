"""Calibration of `--kernel estimate` (engine/kernel_estimate.py) on the kernel itself.

For every (image, seed): the README's random-kernel protocol at x2 (engine.blind_eval.
degraded_pair: modcrop, a random anisotropic Gaussian, the numeric downscale, uint8 levels),
then estimate_kernel on the low-resolution image, scored against the true kernel:
kernel PSNR (degradation.kernel_error), the bias and spread of each sigma (log ratio,
estimate / true, larger with larger), the angle error of the clearly anisotropic kernels
(true sigma1 / sigma2 > 1.3), how often a protocol image is wrongly judged bicubic. Each
image is also bicubic-downscaled (MATLAB's, the literature's protocol) to count how often
that is missed. Two columns: the closed-form fit alone (the estimate's `info["closed_form"]`
and its own bicubic test: the estimator before the refinement) and the returned (refined)
estimate.

Two sets, to keep tuning honest: a development folder of ground-truth images (--dev, e.g.
Set5 and samples/) with seeds 0..N-1, and a held-out set of scikit-image's bundled photos
with seeds 100..100+N-1 (retina and hubble_deep_field cropped to 512x512; `clock` left out:
the original is itself motion-blurred, so no kernel is "true" for it). Cheap: tens of
milliseconds per estimate, a minute or two in all. Run::

    python bench/calibrate_kernel_estimate.py --dev /path/to/hr --seeds 10 [-v]
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from zssr.engine import metrics
from zssr.engine.blind_eval import degraded_pair
from zssr.engine.degradation import gaussian_kernel, kernel_error, modcrop, protocol_size
from zssr.engine.io import list_images, load_image
from zssr.engine.kernel_estimate import BICUBIC_MARGIN, estimate_kernel
from zssr.engine.kernels.resize import resize

HELD_OUT = ["camera", "rocket", "immunohistochemistry", "stereo_motorcycle", "moon", "coins", "grass",
            "gravel", "brick", "retina", "hubble_deep_field"]


def held_out_images():
    import skimage.data as data

    out = {}
    for name in HELD_OUT:
        x = getattr(data, name)()
        x = x[0] if isinstance(x, tuple) else x
        x = np.repeat(x[:, :, None], 3, 2) if x.ndim == 2 else x[:, :, :3]
        if name == "retina":
            x = x[450:962, 450:962]
        if name == "hubble_deep_field":
            x = x[:512, :512]
        out[name] = x.astype(np.float32) / 255.0
    return out


def closed_says_bicubic(est):
    """The closed form's own bicubic-or-not test (the estimator before the refinement)."""
    cf = est.info["closed_form"]
    return cf["residual_bicubic"] <= BICUBIC_MARGIN * cf["residual_gaussian"]


def study(images, seeds, verbose=False, label="", scale=2):
    rows = {"closed": [], "refined": []}
    fp = {"closed": 0, "refined": 0}
    fn = {"closed": 0, "refined": 0}
    n_bic = 0
    seconds = []
    for name, hr in images.items():
        for seed in seeds:
            _, lr, k, p = degraded_pair(hr, scale, seed)
            est = estimate_kernel(lr, scale, seed=seed)
            seconds.append(est.seconds)
            t1, t2 = max(p["sigma1"], p["sigma2"]), min(p["sigma1"], p["sigma2"])
            th = p["theta"] if p["sigma1"] >= p["sigma2"] else (p["theta"] + math.pi / 2) % math.pi
            cf = est.info["closed_form"]
            for col, (s1, s2, t) in (("closed", (cf["sigma1"], cf["sigma2"], cf["theta"])),
                                     ("refined", (est.sigma1, est.sigma2, est.theta))):
                g = gaussian_kernel(max(s1, 1e-3), max(s2, 1e-3), t, protocol_size(scale))
                e = kernel_error(g, k)
                ang = abs((t - th + math.pi / 2) % math.pi - math.pi / 2) if t1 / t2 > 1.3 else None
                rows[col].append((e["psnr"], math.log(s1 / t1), math.log(s2 / t2), ang))
            fp["closed"] += closed_says_bicubic(est)
            fp["refined"] += est.bicubic
            if verbose:
                print(f"{label:5s} {name:22s} {seed:4d} true {t1:.2f}x{t2:.2f} {math.degrees(th):4.0f}  "
                      f"closed {cf['sigma1']:.2f}x{cf['sigma2']:.2f} {math.degrees(cf['theta']):4.0f} "
                      f"({rows['closed'][-1][0]:.1f} dB)  refined {est.sigma1:.2f}x{est.sigma2:.2f} "
                      f"{math.degrees(est.theta):4.0f} ({rows['refined'][-1][0]:.1f} dB)"
                      f"{'  judged bicubic' if est.bicubic else ''}")
        bic = metrics.quantize(resize(np.ascontiguousarray(modcrop(hr, scale), np.float32), 1.0 / scale))
        n_bic += 1
        est = estimate_kernel(bic, scale)
        fn["closed"] += not closed_says_bicubic(est)
        fn["refined"] += not est.bicubic
    for col in ("closed", "refined"):
        a = np.array([r[:3] for r in rows[col]])
        ang = [r[3] for r in rows[col] if r[3] is not None]
        print(f"{label:5s} {col:8s} n={len(a):3d}  kernel PSNR mean {a[:, 0].mean():5.2f} median "
              f"{np.median(a[:, 0]):5.2f} p10 {np.percentile(a[:, 0], 10):5.2f} | sigma1 bias "
              f"{100 * math.expm1(a[:, 1].mean()):+5.1f}% spread {100 * a[:, 1].std():4.1f}% | sigma2 bias "
              f"{100 * math.expm1(a[:, 2].mean()):+5.1f}% spread {100 * a[:, 2].std():4.1f}% | angle error mean "
              f"{math.degrees(np.mean(ang)):4.1f} median {math.degrees(np.median(ang)):4.1f} deg (n={len(ang)}) | "
              f"judged bicubic {fp[col]}/{len(a)}")
    print(f"{label:5s} bicubic input missed: closed form {fn['closed']}/{n_bic}, refined {fn['refined']}/{n_bic}; "
          f"seconds per estimate median "
          f"{np.median(seconds):.3f}, max {max(seconds):.3f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dev", type=Path, help="folder of ground-truth images (the development set)")
    ap.add_argument("--seeds", type=int, default=10, help="seeds per image (dev 0.., held-out 100..)")
    ap.add_argument("--scale", type=int, default=2, help="the protocol's scale (2: x2, the default; 4: x4)")
    ap.add_argument("--no-held-out", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    if a.dev:
        study({p.stem: load_image(p).rgb for p in list_images(a.dev)}, range(a.seeds), a.verbose, "dev", a.scale)
    if not a.no_held_out:
        study(held_out_images(), range(100, 100 + a.seeds), a.verbose, "held", a.scale)


if __name__ == "__main__":
    main()
