"""The main job, as one function: train on an image itself, then upscale it, then save.

`zssr upscale` calls `upscale_file` for a single image and for every image of a folder
(locally, or as a task on a Dask cluster): it takes and returns plain values, so it can be
shipped to another process as it is.
"""
import math
import time
from pathlib import Path

import numpy as np

from .errors import UserError
from .kernels import conv3x3
from .phases import phase, recording


def infer_options(cfg, ensemble=None, back_projection=None):
    """(ensemble, back_projection): the explicit choices, else the model's stored defaults."""
    ens = bool(cfg.get("ensemble", True)) if ensemble is None else bool(ensemble)
    bp = int(cfg.get("back_projection", 10)) if back_projection is None else int(back_projection)
    if bp < 0:
        raise UserError(f"--back-projection must be >= 0, got {bp}")
    return ens, bp


def save_result(path, sr, like, force=False, protect=()):
    """Save sr with the mode and bit depth of the input image `like` (an io.Image); its
    alpha channel, if any, is resized with plain bicubic."""
    from .io import save_image
    from .kernels.resize import resize

    alpha = None
    if like.alpha is not None:
        alpha = np.clip(resize(like.alpha.astype(np.float32), shape=sr.shape[:2]), 0, 1)
    save_image(path, sr, alpha=alpha, mode=like.mode, bit_depth=like.bit_depth, force=force, protect=protect)


def default_steps(cfg):
    """Steps when none are asked for: the zssr and fast presets go at most x2 at a time (x4
    in two steps: measured +1.2 dB on Set5 over one x4 step); the seed preset in one."""
    if cfg.recipe != "crops" or cfg.scale <= 2.0 + 1e-9:
        return 1
    return int(math.ceil(math.log2(cfg.scale) - 1e-9))


# How the anisotropic chain of two gradual factors (six networks) shares a step's
# iterations. Measured on Set5 x2 at 4,400 iterations, two seeds each: these shares
# 37.42 / 37.43 dB; in proportion to the results' areas (6:6:9:12:12:16) 37.38 / 37.39;
# equal within each factor 37.39 (one seed).
CHAIN_SHARES = {2: (5, 5, 6, 8, 8, 12)}


def stage_plan(cfg, steps, kernel=None):
    """The networks trained for one upscaling step: a list of (factor, iterations).

    Random crops (zssr, fast): `cfg.gradual` factors 1 + k (s - 1) / gradual (x2 in 2: 1.5
    then 2). Isotropic (fast): a network per factor, the iterations of the step shared in
    proportion to the factors. Anisotropic (zssr, ZSSR's chain): three networks per
    factor f after f' (f' before it, 1 at first): (f', f), (f, f'), (f, f) as (sy, sx),
    x2: (1, 1.5), (1.5, 1), (1.5, 1.5), (1.5, 2), (2, 1.5), (2, 2), the iterations shared
    by `CHAIN_SHARES` (else in proportion to sy * sx, the result's area). One network for
    the seed preset, or with a known blur kernel (it belongs to one factor)."""
    from .data import anisotropic_factors, substep_factors

    if steps < 1:
        raise UserError(f"--steps must be >= 1, got {steps}")
    s = float(cfg.scale) ** (1.0 / steps)
    if cfg.recipe != "crops" or kernel is not None or (cfg.gradual == 1 and not cfg.anisotropic):
        return [(s, cfg.iters)]
    if cfg.anisotropic:
        fs = anisotropic_factors(s, cfg.gradual)
        weights = CHAIN_SHARES.get(cfg.gradual) or [a * b for a, b in fs]
    else:
        fs = weights = substep_factors(s, cfg.gradual)
    return list(zip(fs, _apportion(cfg.iters, weights)))


def _apportion(total, weights):
    """`total` iterations shared in proportion to `weights`, each at least 1, summing to
    `total` when it is at least len(weights) (largest remainders get the rounding)."""
    exact = [total * w / sum(weights) for w in weights]
    its = [max(1, int(e)) for e in exact]
    order = sorted(range(len(exact)), key=lambda i: int(exact[i]) - exact[i])  # largest remainder first
    for i in order[:max(0, total - sum(its))]:
        its[i] += 1
    return its


def planned_iterations(cfg, steps=None, kernel=None):
    """Iterations of the whole job (for progress bars; the policy schedule may stop sooner)."""
    steps = default_steps(cfg) if steps is None else steps
    per_step = sum(n for _, n in stage_plan(cfg, steps, kernel))
    return per_step * (steps if cfg.recipe == "crops" else 1)


def planned_work(cfg, in_hw, steps=None, kernel=None, ensemble=None):
    """The whole job's work in `phases.advance` units, for a progress bar over training and
    inference alike: training steps (3 pixels per crop pixel; crops are taken as whole,
    so it is an estimate for images smaller than a crop), reconstruction checks, and every
    network's inference (output pixels times ensemble members)."""
    from . import data
    from .data import factor_pair, scaled_shape
    from .infer import scale_schedule
    from .train import TRAIN_COST

    steps = default_steps(cfg) if steps is None else steps
    ens = cfg.ensemble if ensemble is None else ensemble
    plan = stage_plan(cfg, steps, kernel)
    h, w = in_hw
    if cfg.max_side and max(h, w) > cfg.max_side:
        h, w = scaled_shape((h, w), cfg.max_side / max(h, w))
    if cfg.recipe != "crops":  # the seed's pyramid, whole images, then its test loop
        fs = np.linspace(1.0, 0.4, cfg.levels) if cfg.levels > 1 else [1.0]
        areas = [a * b for a, b in (scaled_shape((h, w), f) for f in fs) if min(a, b) >= 2 * plan[-1][0]]
        iters = cfg.epochs * len(areas) if cfg.epochs else cfg.iters
        work = TRAIN_COST * sum(areas[i % len(areas)] for i in range(iters)) if areas else 0.0
        sizes = [(h, w)] + scale_schedule((h, w), scale=cfg.scale, steps=steps)
        return work + sum(a * b for a, b in sizes) * (8 if ens else 1)
    work, cur = 0.0, (h, w)
    for hw in scale_schedule(cur, scale=cfg.scale, steps=steps):
        win = (min(cur[0], data.WINDOW), min(cur[1], data.WINDOW))
        side = data.WINDOW if cfg.schedule == "policy" else data.CHECK_WINDOW
        for k, (f, n) in enumerate(plan):
            work += TRAIN_COST * n * min(cfg.crop, cur[0]) * min(cfg.crop, cur[1])
            if cfg.eval_every:
                work += (n // cfg.eval_every) * min(cur[0], side) * min(cur[1], side)
            out = hw if k == len(plan) - 1 else scale_schedule(win, scale=factor_pair(f))[0]
            members = len(ensemble_transforms(f, kernel, pixels=out[0] * out[1], full=bool(ensemble)))
            work += out[0] * out[1] * (members if ens else 1)
        cur = hw
    return work


def train_and_upscale(img, cfg, steps=None, kernel=None, ensemble=None, back_projection=None, tile=None,
                      max_memory=None, callback=None, kernel_jitter=None):
    """Train on `img` and upscale it by cfg.scale in `steps` equal factors. Returns
    (sr, trainers, base), base being the image the first network learned from.

    Random crops (zssr, fast), ZSSR's gradual super-resolution: each step's result is the
    next step's input, and inside a step (`stage_plan`) each network starts from the
    previous one's weights and learns also from the earlier networks' results, each made
    from the step's input (fast, x2: a network at x1.5, its x1.5 result, then a network
    at x2 learning from the image and that result; zssr: six networks, the anisotropic
    ones with the four-transform ensemble, see `data.CropSampler` for the pool). seed
    preset (pyramid): one network, trained at cfg.scale's step factor, applied to the
    image itself first, then again at every step (the seed's loop "sharpen, then upscale
    and sharpen until the wanted size", `infer.seed_loop`). kernel_jitter: training draws
    its kernels around an estimated `kernel` (`KernelEstimate.jitter`, see Trainer)."""
    from dataclasses import replace

    from .data import centre_window, factor_pair, shrink_to
    from .infer import scale_schedule, seed_loop, super_resolve
    from .memory import check_training
    from .train import Trainer

    steps = default_steps(cfg) if steps is None else steps
    ens, bp = infer_options({"ensemble": cfg.ensemble, "back_projection": cfg.back_projection}, ensemble, back_projection)
    plan = stage_plan(cfg, steps, kernel)
    if cfg.recipe != "crops":
        step_cfg = replace(cfg, scale=plan[-1][0])
        if max_memory is not None:
            check_training(step_cfg, img.shape[:2], max_memory)
        with phase("train: preparing"):
            tr = Trainer(img, step_cfg, kernel=kernel)
        tr.run(callback)
        # the seed preset may have shrunk the input to --max-side: it upscales what it learned from
        base = tr.img if cfg.max_side else img
        sr = seed_loop(tr.net, base, scale=cfg.scale, steps=steps, ensemble=ens, back_projection=bp,
                           tile=tile, kernel=kernel, max_memory=max_memory)
        return sr, [tr], base
    trainers = []
    cur = base = shrink_to(img, cfg.max_side)
    for hw in scale_schedule(base.shape[:2], scale=cfg.scale, steps=steps):
        if max_memory is not None:
            check_training(replace(cfg, scale=max(factor_pair(plan[-1][0]))), cur.shape[:2], max_memory)
        sources, net = [], None
        for k, (f, n) in enumerate(plan):
            budget = cfg.time_budget * n / sum(m for _, m in plan)  # --time-budget is per step, shared alike
            fy, fx = factor_pair(f)
            with phase("train: preparing"):
                tr = Trainer(cur, replace(cfg, scale=max(fy, fx), iters=n, time_budget=budget), kernel=kernel,
                             sources=sources, start=net, factor=(fy, fx), kernel_jitter=kernel_jitter)
            tr.offset = sum(t.iteration for t in trainers)
            tr.run(callback)
            tr.release()  # its pool of fathers and training buffers, before the inference's (the weights stay)
            trainers.append(tr)
            last = k == len(plan) - 1
            # an intermediate result is only training material for the later networks: of a
            # large image, the centre window's is enough (its copies drawn as often as the
            # whole result's would be); the last network upscales the whole image
            src = cur if last else centre_window(cur)
            size = hw if last else scale_schedule(src.shape[:2], scale=(fy, fx))[0]
            tf = ensemble_transforms((fy, fx), kernel, pixels=size[0] * size[1], full=bool(ensemble))
            out = super_resolve(tr.net, src, size=size, ensemble=ens, back_projection=bp, tile=tile, kernel=kernel,
                                max_memory=max_memory, transforms=tf)
            sources.append((out, f) if src is cur else (out, f, cur.shape[0] * cur.shape[1] / (src.shape[0] * src.shape[1])))
            tr.net.release()  # and its inference buffers: six networks add up
            net = tr.net
        cur = out
    return cur, trainers, base


# A result larger than this (pixels) gets, by default, only the 4 ensemble members that keep
# rows rows (data.AXIS_TRANSFORMS: identity, the two flips, rot180) instead of all 8: on a
# large photo the last network's ensemble is most of the job (x2 of 2592x1944 on the AVX2
# machine, 61% of 480 s), and 4 members cost 0.00-0.02 dB (README: Set5 and samples/ with the
# fast preset, and larger scikit-image photos). `--ensemble` given explicitly keeps all 8.
FULL_ENSEMBLE_MAX_PIXELS = 2_000_000


def ensemble_transforms(factor, kernel, pixels=None, full=False):
    """The self-ensemble's transforms: those of the factor, and with a blur kernel only the
    ones that leave the kernel as it is (a network undoes that kernel, not its rotations);
    for a result of more than FULL_ENSEMBLE_MAX_PIXELS `pixels`, only those of
    data.AXIS_TRANSFORMS unless `full` (the user asked for --ensemble)."""
    from .data import AXIS_TRANSFORMS, transforms_for
    from .kernel_estimate import kernel_transforms

    tf = transforms_for(factor)
    if not full and pixels is not None and pixels > FULL_ENSEMBLE_MAX_PIXELS:
        tf = tuple(t for t in tf if t in AXIS_TRANSFORMS)
    return tf if kernel is None else tuple(t for t in tf if t in kernel_transforms(kernel))


def resolve_kernel(img, kernel, cfg, steps=None):
    """`kernel` as train_and_upscale takes it: an array or None as given, or for "estimate"
    the kernel estimated from `img` at the step factor (None when it looks bicubic).
    Returns (kernel, KernelEstimate or None)."""
    if isinstance(kernel, np.ndarray):
        from .degradation import check_kernel

        return check_kernel(kernel, "the blur kernel", img.shape[:2]), None
    if not (isinstance(kernel, str) and kernel == "estimate"):
        return kernel, None
    from .kernel_estimate import estimate_kernel

    steps = default_steps(cfg) if steps is None else steps
    est = estimate_kernel(img, float(cfg.scale) ** (1.0 / steps), seed=cfg.seed)
    return est.kernel, est


def upscale_file(src, dst, cfg, kernel=None, steps=None, ensemble=None, back_projection=None, tile=None,
                 save_model=None, compare=None, force=False, callback=None, max_memory=None, progress=None,
                 kernel_jitter=None):
    """Train on the image at `src` with the TrainConfig `cfg`, upscale it by cfg.scale (in
    `steps`, see `train_and_upscale`), and write the result to `dst` (atomically, never
    over `src`). Returns a summary dict; `save_model` saves the last step's network.

    callback(trainer) is called after every training iteration; progress(done, total, phase)
    whenever work is done, training or inference, in `planned_work` units (progress bars).
    The summary's "phases" are the seconds spent in each phase (engine.phases).
    max_memory (bytes, or None: no check): refuse before any work when training would not
    fit, and tile the upscaling smaller when it would not (engine.memory). kernel "estimate"
    is estimated here and trained with its jitter; an estimate made by the caller comes
    with its `kernel_jitter` (`KernelEstimate.jitter()`)."""
    from . import checkpoint
    from .io import check_writable, load_image

    t0 = time.perf_counter()
    plan = {"total": None}

    def listener(done, name):
        if progress is not None and plan["total"]:
            progress(done, plan["total"], name)

    with recording(listener) as rec:
        check_writable(dst, force=force, protect=[src])
        with phase("read"):
            inp = load_image(src)
        with phase("kernel estimate"):
            kernel, est = resolve_kernel(inp.rgb, kernel, cfg, steps)  # --kernel estimate
            if est is not None:
                kernel_jitter = est.jitter()
        plan["total"] = planned_work(cfg, inp.rgb.shape[:2], steps, kernel, ensemble)
        sr, trainers, base = train_and_upscale(inp.rgb, cfg, steps=steps, kernel=kernel, ensemble=ensemble,
                                               back_projection=back_projection, tile=tile, max_memory=max_memory,
                                               callback=callback, kernel_jitter=kernel_jitter)
        tr = trainers[-1]
        with phase("write"):
            save_result(dst, sr, inp, force=force, protect=[src])
            if save_model:
                checkpoint.save(save_model, tr.net, tr.meta(src), tr.opt, force=force, protect=[src, dst])
            if compare:
                from .plots import comparison

                comparison(compare, base, sr)
    seconds = time.perf_counter() - t0
    return {"src": str(src), "dst": str(dst), "iterations": sum(t.iteration for t in trainers),
            "train_seconds": sum(t.seconds for t in trainers), "seconds": seconds,
            "phases": dict(rec.seconds), "phase_summary": rec.summary(seconds),
            "shape": [int(sr.shape[1]), int(sr.shape[0])], "events": [e for t in trainers for e in t.events],
            "stop_reason": tr.stop_reason, "name": Path(src).name,
            "kernel_estimate": est.to_dict() if est is not None else None,
            "precision": conv3x3.inference_precision(sr.shape[0] * sr.shape[1])}
