"""Blind super-resolution on the command line: `zssr degrade`, `--kernel estimate` for
train/upscale, and `zssr eval --degradation random` (registered on main's app; imported at
the end of cli/main.py)."""
from pathlib import Path
from typing import Annotated

import typer

from .main import PlotKernel, SaveKernel, _check_out, _Progress, _write_json, app, friendly


def kernel_option(kernel):
    """`--kernel` of train/upscale: None, 'estimate', or a loaded .npy/.mat kernel."""
    if kernel is None:
        return None
    if str(kernel) == "estimate":
        return "estimate"
    from zssr.engine.data import load_kernel
    from zssr.engine.degradation import check_kernel

    return check_kernel(load_kernel(kernel), f"kernel file {kernel}")


def estimate_with_bar(img, scale, seed):
    """Estimate img's kernel with a progress bar; one line on stderr says what was found."""
    from zssr.engine.kernel_estimate import estimate_kernel

    with _Progress(3, "estimating kernel") as bar:
        est = estimate_kernel(img, scale, seed=seed, progress=lambda i, n, label: bar.update(completed=i, info=label))
    typer.echo(f"zssr: {est.summary()}", err=True)
    if est.caution():
        typer.echo(f"zssr: {est.caution()}", err=True)
    return est


def check_kernel_outputs(save_kernel, plot_kernel, force, protect):
    for p in (save_kernel, plot_kernel):
        if p is not None:
            _check_out(p, force, protect=protect)


def write_kernel_outputs(kernel, save_kernel, plot_kernel, force, protect, title=""):
    """Save/draw `kernel` (None: bicubic, drawn as MATLAB's bicubic kernel)."""
    from zssr.engine.kernel_estimate import bicubic_kernel, plot_kernel as draw, save_kernel as save

    if save_kernel is None and plot_kernel is None:
        return
    if kernel is None:
        kernel, title = bicubic_kernel(2), (title + " " if title else "") + "bicubic"
    if save_kernel is not None:
        save(save_kernel, kernel, force=force, protect=protect)
    if plot_kernel is not None:
        draw(plot_kernel, kernel, title=title, force=force, protect=protect)


def resolve_for_training(kernel, img, scale, seed, save_kernel, plot_kernel, force, protect):
    """(the kernel array or None, the estimate's jitter or None) for one image: estimated
    when asked, written out when asked."""
    title, jitter = "", None
    if isinstance(kernel, str) and kernel == "estimate":
        est = estimate_with_bar(img, scale, seed)
        kernel, jitter, title = est.kernel, est.jitter(), "estimated"
    elif kernel is not None:
        from zssr.engine.degradation import check_kernel

        kernel = check_kernel(kernel, "the blur kernel", img.shape[:2])
    write_kernel_outputs(kernel, save_kernel, plot_kernel, force, protect, title)
    return kernel, jitter


@app.command()
@friendly
def degrade(
    input: Annotated[Path, typer.Argument(help="A high-resolution image, or a folder of them.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The low-resolution image (or folder, for a folder input; PNG files with the same names, and each kernel beside as NAME_kernel.npy).")],
    scale: Annotated[int, typer.Option("--scale", "-s", help="Integer downscaling factor (2, 4, ...).")] = 2,
    kernel: Annotated[str, typer.Option("--kernel", help="random (the protocol, see README), gaussian:SIGMA1,SIGMA2,THETA (high-resolution pixels, radians) or a .npy/.mat kernel file.")] = "random",
    seed: Annotated[int, typer.Option(help="Seed of the random kernel (and noise); in a folder the i-th image (sorted by name, from 0) uses seed + i.")] = 0,
    noise: Annotated[float, typer.Option(help="Std of Gaussian noise added to the low-resolution image (on the [0, 1] scale).")] = 0.0,
    save_kernel: SaveKernel = None,
    plot_kernel: PlotKernel = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")] = False,
):
    """Make a low-resolution test image: blur with a kernel and subsample by --scale, the
    way the README's protocol says (MATLAB's pixel centres; no bicubic)."""
    import numpy as np

    from zssr.engine.degradation import degrade_image, parse_kernel_spec
    from zssr.engine.errors import UserError
    from zssr.engine.io import list_images, load_image, save_image

    if scale < 2:
        raise UserError(f"--scale must be an integer >= 2, got {scale}")
    if not (noise >= 0 and np.isfinite(noise)):
        raise UserError(f"--noise must be >= 0, got {noise}")
    if not input.exists():
        raise UserError(f"{input} does not exist")
    if input.is_dir():
        if save_kernel or plot_kernel:
            raise UserError("--save-kernel and --plot-kernel take a single image; a folder's kernels are saved beside its outputs")
        files = list_images(input)
        if output.exists() and not output.is_dir():
            raise UserError(f"{output} is a file; give a folder for a folder input")
        output.mkdir(parents=True, exist_ok=True)
        jobs = [(f, output / (f.stem + ".png"), output / (f.stem + "_kernel.npy"), seed + i) for i, f in enumerate(files)]
    else:
        jobs = [(input, output, save_kernel, seed)]
    for src, dst, kpath, s in jobs:
        _check_out(dst, force, protect=[src])
        check_kernel_outputs(kpath, plot_kernel if not input.is_dir() else None, force, [src, dst])
    for src, dst, kpath, s in jobs:
        rng = np.random.default_rng(s)
        k, params = parse_kernel_spec(kernel, scale, rng)
        inp = load_image(src)
        lr = degrade_image(inp.rgb, scale, k, noise=noise, rng=rng)
        save_image(dst, lr, mode="RGB" if inp.mode in ("RGB", "RGBA") else "L", bit_depth=8, force=force, protect=[src])
        write_kernel_outputs(k, kpath, plot_kernel if not input.is_dir() else None, force, [src, dst])
        what = (f"sigma {params['sigma1']:.2f}, {params['sigma2']:.2f} px, theta {params['theta']:.2f} rad"
                if params else f"kernel {k.shape[0]}x{k.shape[1]}")
        typer.echo(f"wrote {dst} ({lr.shape[1]}x{lr.shape[0]}, {what})")


def blind_eval(folder, scale, cfg, steps, seed, settings, json_out, degradation, max_memory=None):
    """`zssr eval --degradation random` (or `--kernel estimate` on the bicubic protocol)."""
    from zssr.engine.blind_eval import evaluate_blind, format_blind_table, parse_settings
    from zssr.engine.errors import UserError
    from zssr.engine.job import planned_iterations, train_and_upscale
    from zssr.engine.memory import check_job, parse_max_memory

    from .main import _bar_callback

    budget = parse_max_memory(max_memory)

    def check(name, hw):  # every image's first step, before any work (the job checks each step again)
        check_job(cfg, hw, steps, budget, name)

    def sr_fn(lr_img, kern, jitter=None):
        with _Progress(planned_iterations(cfg, steps, kern), "training") as bar:
            sr, trainers, _ = train_and_upscale(lr_img, cfg, steps=steps, kernel=kern, callback=_bar_callback(bar),
                                                max_memory=budget, kernel_jitter=jitter)
        for t in trainers:
            for e in t.events:
                typer.echo(f"zssr: {e}", err=True)
        return sr

    if degradation == "bicubic":  # the literature's protocol, with --kernel estimate
        from zssr.engine.evaluate import evaluate_folder, format_table
        from zssr.engine.kernel_estimate import estimate_kernel

        if settings != "estimate":
            raise UserError("with --degradation bicubic, --kernel takes only 'estimate' (the default is bicubic itself)")

        def sr_est(lr_img, s):
            est = estimate_kernel(lr_img, s, seed=cfg.seed)
            typer.echo(f"zssr: {est.summary()}", err=True)
            return sr_fn(lr_img, est.kernel, est.jitter())

        result = evaluate_folder(folder, scale, sr_est, check=check)
        typer.echo(format_table(result))
    elif degradation == "random":
        def on_row(r):
            parts = [f"{s} {r[s + '_psnr']:.2f} dB" for s in result_settings]
            typer.echo(f"{r['name']}: " + ", ".join(parts), err=True)

        result_settings = parse_settings(settings)
        result = evaluate_blind(folder, scale, seed, sr_fn, settings=result_settings, on_row=on_row,
                                check=check)
        typer.echo(format_blind_table(result))
    else:
        raise UserError(f"--degradation takes bicubic or random, got {degradation!r}")
    if json_out:
        _write_json(json_out, result)
