"""The `zssr` command: train, infer, upscale, eval, benchmark.

Start-up stays light: nothing here imports numba or the engine at module level, so
`zssr --help` answers at once; each command imports what it needs when it runs.
A user mistake prints one line on stderr and exits with status 2; nothing is written.
"""
import functools
import os
import signal
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Zero-shot super-resolution on the CPU: train a small CNN on the image itself, then upscale it.",
    context_settings={"help_option_names": ["-h", "--help"]},
)

EXIT_USER = 2
EXIT_INTERRUPTED = 130


def _err(msg):
    typer.echo(f"zssr: error: {msg}", err=True)


def friendly(fn):
    """Turn the engine's UserError (and a few OS errors) into one line and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from zssr.engine.errors import UserError

        try:
            return fn(*args, **kwargs)
        except UserError as e:
            _err(str(e))
            raise typer.Exit(EXIT_USER)
        except MemoryError:
            _err("out of memory; use a smaller --tile or a smaller image")
            raise typer.Exit(EXIT_USER)
        except KeyboardInterrupt:
            _err("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED)

    return wrapper


# ---------------------------------------------------------------------------------------
# Options shared by train, upscale and eval (declared once)
# ---------------------------------------------------------------------------------------
Scale = Annotated[float, typer.Option("--scale", "-s", help="Upscaling factor (> 1; non-integer allowed).")]
Preset = Annotated[str, typer.Option(help="'zssr' (default: ZSSR's recipe with its six networks per x2 step), 'fast' (two networks and half the iterations: about half the time, about 0.1 dB less) or 'seed' (the course report's method exactly).")]
Iters = Annotated[Optional[int], typer.Option(help="Training iterations per upscaling step, shared by its networks (zssr: 4400, fast: 2200; with --schedule policy an upper bound).")]
Schedule = Annotated[Optional[str], typer.Option("--schedule", help="Learning rate: cosine (zssr default: from --lr down to 9e-6 over the iterations), policy (ZSSR's: divide by 10 when the reconstruction error stops falling, stop below 9e-6) or constant (seed).")]
Gradual = Annotated[Optional[int], typer.Option("--gradual", help="zssr, fast: factors per upscaling step (2: x1.5 then x2), a network for each (three with --anisotropic), each starting from the last and learning from the earlier results; 1 with --isotropic is ZSSR's one jump.")]
Anisotropic = Annotated[Optional[bool], typer.Option("--anisotropic/--isotropic", help="ZSSR's anisotropic chain, three networks per --gradual factor (x2: x1 by x1.5, x1.5 by x1, x1.5, x1.5 by x2, x2 by x1.5, x2), each learning from all earlier results (zssr default); --isotropic: one network per factor (fast default).")]
Epochs = Annotated[Optional[int], typer.Option(help="Seed preset: passes over the image pyramid.")]
TimeBudget = Annotated[Optional[float], typer.Option("--time-budget", help="Stop training after this many seconds.")]
Lr = Annotated[Optional[float], typer.Option(help="Initial learning rate (zssr 1e-3, seed 2e-7).")]
Optim = Annotated[Optional[str], typer.Option("--optimizer", help="sgd or adam.")]
Momentum = Annotated[Optional[float], typer.Option(help="SGD momentum (seed preset: 0, the plain update).")]
Loss = Annotated[Optional[str], typer.Option(help="l1, mse, or sse (the seed's 1/2 sum of squares).")]
Bias = Annotated[Optional[bool], typer.Option("--bias/--no-bias", help="Biases in the convolutions (zssr: none).")]
Crop = Annotated[Optional[int], typer.Option(help="Training crop size in pixels (zssr recipe).")]
MaxSide = Annotated[Optional[int], typer.Option("--max-side", help="Shrink the input so its longer side is at most this (seed: 500).")]
KernelOpt = Annotated[Optional[Path], typer.Option("--kernel", help="Known blur kernel (.npy, or .mat with variable Kernel) used to make training pairs (and back-projection), or 'estimate': estimate it from the image first (bicubic if it looks so; else training draws Gaussians around the estimate, its sigmas within +-15%).")]
SaveKernel = Annotated[Optional[Path], typer.Option("--save-kernel", help="Also save the kernel used (e.g. the estimated one) as .npy.")]
PlotKernel = Annotated[Optional[Path], typer.Option("--plot-kernel", help="Also draw the kernel used as a PNG.")]
Noise = Annotated[Optional[float], typer.Option(help="Std of Gaussian noise added to the training sons (for real photos, e.g. 0.01).")]
Seed = Annotated[int, typer.Option(help="Random seed: the same seed gives bitwise the same weights.")]
Force = Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")]
Ensemble = Annotated[Optional[bool], typer.Option("--ensemble/--no-ensemble", help="Median over the 8 flips/rotations (zssr default: on; by default a result above 2 megapixels gets the 4 that keep rows rows, half the ensemble's time for 0.00-0.02 dB: --ensemble keeps all 8).")]
BackProj = Annotated[Optional[int], typer.Option("--back-projection", help="Back-projection iterations per step (zssr default 10).")]
Tile = Annotated[Optional[int], typer.Option(help="Process large images in tiles of this many pixels (exact result).")]
Steps = Annotated[int, typer.Option(help="Reach the scale in this many equal upscaling steps.")]
TrainSteps = Annotated[Optional[int], typer.Option("--steps", help="Reach the scale in this many equal steps; zssr and fast presets: each step trains anew on the previous step's result (ZSSR's gradual super-resolution). Default: zssr and fast at most x2 per step (x4 in 2), seed 1.")]
Compare = Annotated[Optional[Path], typer.Option("--compare", help="Also write a PNG comparing bicubic and ours, with a zoomed detail.")]
Precision = Annotated[Optional[str], typer.Option("--precision", help="Products of the networks' wide layers in inference: auto (default: bfloat16 on CPUs with AVX-512 BF16 for results of 1 megapixel or more, else float32), float32, or bfloat16. Training is always float32. bfloat16 measured 37.443 dB on Set5 x2 against 37.447 and took a fifth off a large photo's inference. Default from ZSSR_PRECISION.")]
MaxMemory = Annotated[Optional[float], typer.Option("--max-memory", help="GiB the job may use (default: 3/4 of the machine's memory); large images are tiled smaller to fit, or refused before any work.")]


def _train_overrides(iters=None, epochs=None, time_budget=None, lr=None, optimizer=None, momentum=None, loss=None,
                     bias=None, crop=None, max_side=None, noise=None, seed=None, scale=None, schedule=None,
                     gradual=None, anisotropic=None):
    return dict(iters=iters, epochs=epochs, time_budget=time_budget, lr=lr, optimizer=optimizer, momentum=momentum,
                loss=loss, bias=bias, crop=crop, max_side=max_side, noise=noise, seed=seed, scale=scale,
                schedule=schedule, gradual=gradual, anisotropic=anisotropic)


def _set_precision(precision):
    """Apply --precision (else ZSSR_PRECISION, else auto) to this process and to the
    processes it starts (through the environment). Returns the value applied."""
    from zssr.engine.errors import UserError
    from zssr.engine.kernels import conv3x3

    value = (precision.strip().lower() or "auto") if precision is not None else conv3x3.env_precision()
    try:
        conv3x3.set_precision(value)
    except ValueError as e:
        where = "--precision" if precision is not None else "ZSSR_PRECISION"
        raise UserError(f"{where}: {e}") from None
    os.environ["ZSSR_PRECISION"] = value
    return value


def _parse_size(size):
    from zssr.engine.errors import UserError

    try:
        w, h = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise UserError(f"--size must look like WIDTHxHEIGHT, e.g. 800x600, got {size!r}") from None
    if w < 1 or h < 1:
        raise UserError(f"--size must be positive, got {size!r}")
    return h, w


class _Progress:
    """A rich progress bar on stderr (quiet when stderr is not a terminal)."""

    def __init__(self, total, description, percent=False):
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), TaskProgressColumn() if percent else MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            console=console, transient=False, disable=not console.is_terminal,
        )
        self.total = total
        self.task = self.progress.add_task(description, total=total, info="")

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        self.progress.__exit__(*exc)

    def update(self, completed=None, total=None, info=None, advance=None, description=None):
        kw = {} if description is None else {"description": description}
        if completed is not None:
            kw["completed"] = completed
        if total is not None:
            kw["total"] = self.total = total
        if info is not None:
            kw["info"] = info
        if advance is not None:
            kw["advance"] = advance
        self.progress.update(self.task, **kw)


def _bar_callback(bar):
    """A Trainer callback that shows iteration, loss, learning rate (and PSNR) on `bar`."""
    import math

    def cb(t):
        if t.iteration % 5 and not t.stop_requested and not t.done():
            return
        info = f"loss {t.history['loss'][-1]:.4g}  lr {t.opt.lr:.2g}" if t.history["loss"] else ""
        if t.evals["psnr"] and not math.isnan(t.evals["psnr"][-1]):
            info += f"  psnr {t.evals['psnr'][-1]:.2f} dB"
        done = t.offset + t.iteration  # over the sub-steps of a gradual job
        if t.done() and not t.stop_requested:
            # stopped before its planned iterations (the policy or the budget): take them off the total
            total = done if bar.total is None else max(done, bar.total - max(t.total - t.iteration, 0))
            bar.update(completed=done, total=max(total, 1), info=info)
        else:
            bar.update(completed=done, info=info)

    return cb


_PHASE_LABELS = {"train: steps": "training", "train: pairs": "training", "train: checks": "checking",
                 "train: preparing": "preparing", "upscale: network": "upscaling", "upscale: bicubic": "upscaling",
                 "upscale: back-projection": "upscaling"}


def _info_callback(bar):
    """A Trainer callback that shows which network is training, its loss and learning rate."""
    seen = {}

    def cb(t):
        if t.iteration % 5 and not t.done():
            return
        k = seen.setdefault(id(t), len(seen) + 1)
        loss = f" loss {t.history['loss'][-1]:.3g} lr {t.opt.lr:.1g}" if t.history["loss"] else ""
        bar.update(info=f"net {k}{loss}")

    return cb


def _train(image, cfg, kernel=None, gt=None, resume=None, label="training", on_interrupt=None, kernel_jitter=None):
    """Train with a progress bar. Ctrl-C: stop after the current step, call on_interrupt."""
    from zssr.engine import checkpoint
    from zssr.engine.train import Trainer

    tr = Trainer(image, cfg, kernel=kernel, gt=gt, kernel_jitter=kernel_jitter)
    if resume is not None:
        net, meta, opt_arrays = checkpoint.load(resume)
        tr.restore(meta, opt_arrays, net)

    def on_sigint(signum, frame):
        tr.stop_requested = True

    old = signal.signal(signal.SIGINT, on_sigint)
    # fault injection for the tests: a real SIGINT, sent to ourselves at that iteration
    sigint_at = int(os.environ.get("ZSSR_TEST_SIGINT_AT", "0") or 0)
    try:
        with _Progress(tr.total, label) as bar:
            show = _bar_callback(bar)

            def cb(t):
                if sigint_at and t.iteration == sigint_at:
                    os.kill(os.getpid(), signal.SIGINT)
                show(t)

            tr.run(cb)
    finally:
        signal.signal(signal.SIGINT, old)
    for e in tr.events:
        typer.echo(f"zssr: {e}", err=True)
    if tr.stop_requested:
        if on_interrupt is not None:
            on_interrupt(tr)
        raise typer.Exit(EXIT_INTERRUPTED)
    return tr


def _write_log(path, tr):
    """Metrics per iteration as CSV: iteration, loss, lr, recon, psnr (blank between evaluations)."""
    import io as _io

    from zssr.engine.io import atomic_write

    ev = {i: (r, l, p) for i, r, l, p in zip(tr.evals["iter"], tr.evals["recon"], tr.evals["lr"], tr.evals["psnr"])}
    buf = _io.StringIO()
    buf.write("iteration,loss,lr,reconstruction_mse,psnr\n")
    for i, loss in zip(tr.history["iter"], tr.history["loss"]):
        r, lr, p = ev.get(i, ("", "", ""))
        p = "" if p == "" or p != p else f"{p:.4f}"
        buf.write(f"{i},{loss:.9g},{lr if lr == '' else f'{lr:.3g}'},{r if r == '' else f'{r:.9g}'},{p}\n")

    def writer(tmp):
        Path(tmp).write_text(buf.getvalue())

    atomic_write(path, writer)


def _load_rgb(path):
    from zssr.engine.io import load_image

    return load_image(path)


def _check_out(path, force, protect=()):
    from zssr.engine.io import check_writable

    check_writable(path, force=force, protect=protect)


@app.command()
@friendly
def train(
    image: Annotated[Path, typer.Argument(help="The image to learn from (PNG, JPEG, BMP, TIFF, GIF).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the model (.npz).")],
    scale: Scale = 2.0,
    preset: Preset = "zssr",
    iters: Iters = None,
    epochs: Epochs = None,
    time_budget: TimeBudget = None,
    schedule: Schedule = None,
    lr: Lr = None,
    optimizer: Optim = None,
    momentum: Momentum = None,
    loss: Loss = None,
    bias: Bias = None,
    crop: Crop = None,
    max_side: MaxSide = None,
    kernel: KernelOpt = None,
    save_kernel: SaveKernel = None,
    plot_kernel: PlotKernel = None,
    noise: Noise = None,
    gt: Annotated[Optional[Path], typer.Option("--gt", help="High-resolution ground truth: show PSNR while training.")] = None,
    seed: Seed = 0,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue from this checkpoint (same image and options).")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write the loss curve as a PNG.")] = None,
    log: Annotated[Optional[Path], typer.Option("--log", help="Write metrics per iteration as CSV.")] = None,
    precision: Precision = None,
    max_memory: MaxMemory = None,
    force: Force = False,
):
    """Train a network on IMAGE itself (internal learning) and save it as a model.

    This trains one network, in one jump to --scale, for --iters iterations. `zssr upscale`
    (zssr and fast presets) trains several networks per step (six for x2 with zssr, two
    with fast), the later ones also on the earlier ones' results; its --save-model keeps
    the last of them, which `zssr infer` then uses.

    Ctrl-C saves a checkpoint to OUTPUT and exits with status 130; --resume continues it
    exactly (the same weights as an uninterrupted run)."""
    from zssr.engine import checkpoint
    from zssr.engine.memory import check_training, parse_max_memory
    from zssr.engine.train import TrainConfig

    _set_precision(precision)

    inp = _load_rgb(image)
    cfg = TrainConfig.make(preset, **_train_overrides(iters, epochs, time_budget, lr, optimizer, momentum, loss, bias,
                                                      crop, max_side, noise, seed, scale, schedule))
    check_training(cfg, inp.rgb.shape[:2], parse_max_memory(max_memory))
    protect = [image] + ([gt] if gt else []) + ([resume] if resume else []) + ([kernel] if kernel else [])
    overwrite_resume = resume is not None and Path(resume).resolve() == Path(output).resolve()
    _check_out(output, force or overwrite_resume, protect=[p for p in protect if not (overwrite_resume and p == resume)])
    for extra in (plot, log):
        if extra is not None:
            _check_out(extra, force, protect=protect + [output])
    from .blind import check_kernel_outputs, kernel_option, resolve_for_training

    check_kernel_outputs(save_kernel, plot_kernel, force, protect + [output])
    k, jitter = resolve_for_training(kernel_option(kernel), inp.rgb, cfg.scale, cfg.seed, save_kernel, plot_kernel,
                                     force, protect + [output])
    g = _load_rgb(gt).rgb if gt else None

    def save(tr):
        checkpoint.save(output, tr.net, tr.meta(image), tr.opt, force=True)
        if log:
            _write_log(log, tr)

    def interrupted(tr):
        save(tr)
        typer.echo(f"zssr: interrupted at iteration {tr.iteration}; checkpoint saved to {output} (resume with --resume {output})", err=True)

    tr = _train(inp.rgb, cfg, kernel=k, gt=g, resume=resume, on_interrupt=interrupted, kernel_jitter=jitter)
    save(tr)
    if plot:
        from zssr.engine.plots import loss_plot

        loss_plot(plot, tr)
    last = f", final loss {tr.history['loss'][-1]:.4g}" if tr.history["loss"] else ""
    typer.echo(f"trained {tr.iteration} iterations in {tr.seconds:.1f} s ({tr.stop_reason}){last}; model saved to {output}")


def _check_scale(scale, size):
    import math

    from zssr.engine.errors import UserError

    if size is not None and scale is not None:
        raise UserError("give --scale or --size, not both")
    if size is None and scale is None:
        raise UserError("give --scale (e.g. 2) or --size (e.g. 800x600)")
    if scale is not None and not (math.isfinite(scale) and scale > 1):
        raise UserError(f"--scale must be a number > 1, got {scale}")


@app.command()
@friendly
def infer(
    image: Annotated[Path, typer.Argument(help="The low-resolution image.")],
    model: Annotated[Path, typer.Option("--model", "-m", help="A model from `zssr train` (.npz).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the result.")],
    scale: Annotated[Optional[float], typer.Option("--scale", "-s", help="Upscaling factor (> 1).")] = None,
    size: Annotated[Optional[str], typer.Option("--size", help="Exact output size WIDTHxHEIGHT (any aspect).")] = None,
    steps: Steps = 1,
    ensemble: Ensemble = None,
    back_projection: BackProj = None,
    tile: Tile = None,
    compare: Compare = None,
    precision: Precision = None,
    max_memory: MaxMemory = None,
    force: Force = False,
):
    """Upscale IMAGE with a trained model, in --steps equal steps.

    The loop follows the model's preset. zssr and fast: each step is a bicubic upscale,
    the network, and back-projection against the step's input. seed (the course report's
    loop, exactly): the network first sharpens IMAGE itself at its own size, then each
    step is a bicubic upscale and the network; so the network runs --steps + 1 times."""
    import zssr
    from zssr.engine.infer import scale_schedule
    from zssr.engine.job import save_result

    _set_precision(precision)

    _check_scale(scale, size)
    target = _parse_size(size) if size else None
    _check_out(output, force, protect=[image, model])
    if compare:
        _check_out(compare, force, protect=[image, model, output])
    inp = _load_rgb(image)
    scale_schedule(inp.rgb.shape[:2], scale=scale, size=target, steps=steps)  # checks the sizes first
    m = zssr.load_model(model)
    with _Progress(None, "upscaling") as bar:  # the preset's loop: Model.upscale
        sr = m.upscale(inp.rgb, scale=scale, size=target, steps=steps, ensemble=ensemble,
                       back_projection=back_projection, tile=tile, max_memory=max_memory,
                       progress=lambda i, n: bar.update(completed=i + 1, total=n))
    save_result(output, sr, inp, force, [image, model])
    if compare:
        from zssr.engine.plots import comparison

        comparison(compare, inp.rgb, sr)
    typer.echo(f"wrote {output} ({sr.shape[1]}x{sr.shape[0]})")


@app.command()
@friendly
def upscale(
    input: Annotated[Path, typer.Argument(help="An image, or a folder of images.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The output image (or folder, for a folder input).")],
    scale: Scale = 2.0,
    preset: Preset = "zssr",
    iters: Iters = None,
    epochs: Epochs = None,
    time_budget: TimeBudget = None,
    schedule: Schedule = None,
    lr: Lr = None,
    optimizer: Optim = None,
    momentum: Momentum = None,
    loss: Loss = None,
    bias: Bias = None,
    crop: Crop = None,
    max_side: MaxSide = None,
    kernel: KernelOpt = None,
    save_kernel: SaveKernel = None,
    plot_kernel: PlotKernel = None,
    noise: Noise = None,
    seed: Seed = 0,
    steps: TrainSteps = None,
    gradual: Gradual = None,
    anisotropic: Anisotropic = None,
    ensemble: Ensemble = None,
    back_projection: BackProj = None,
    tile: Tile = None,
    save_model: Annotated[Optional[Path], typer.Option("--save-model", help="Also save the trained model (.npz).")] = None,
    compare: Compare = None,
    precision: Precision = None,
    max_memory: MaxMemory = None,
    force: Force = False,
    workers: Annotated[Optional[int], typer.Option("--workers", help="Folder: local worker processes, one image each at a time (default: one per core, at most one per image; 1 runs in this process).")] = None,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="Folder: run every image as a task on the existing Dask cluster at this address, e.g. tcp://HOST:8786.")] = None,
):
    """The main job: train on INPUT itself, then upscale it by --scale.

    With a folder, every image in it is upscaled into the OUTPUT folder, on --workers local
    processes or on a Dask cluster (--scheduler); a bad file is reported and skipped,
    finished outputs are kept on a rerun (unless --force), and the exit status is 1 if any
    image failed. --max-memory then holds for each image in its process: on a Dask cluster,
    at most the worker's own memory limit (default: that limit, or 3/4 of its machine)."""
    from zssr.engine.errors import UserError
    from zssr.engine.memory import parse_max_memory
    from zssr.engine.train import TrainConfig

    precision = _set_precision(precision)
    cfg = TrainConfig.make(preset, **_train_overrides(iters, epochs, time_budget, lr, optimizer, momentum, loss, bias,
                                                      crop, max_side, noise, seed, scale, schedule, gradual,
                                                      anisotropic))
    from .blind import check_kernel_outputs, kernel_option, resolve_for_training

    k = kernel_option(kernel)
    if input.is_dir():
        if save_model or compare or save_kernel or plot_kernel:
            raise UserError("--save-model, --compare, --save-kernel and --plot-kernel take a single image, not a folder")
        return _upscale_folder(input, output, cfg, k, steps, ensemble, back_projection, tile, force, workers, scheduler,
                               max_memory=None if max_memory is None else parse_max_memory(max_memory),
                               precision=precision)
    if workers is not None or scheduler:
        raise UserError("--workers and --scheduler take a folder of images, not a single image")
    if not input.exists():
        raise UserError(f"{input} does not exist")
    _check_out(output, force, protect=[input])
    for extra in (save_model, compare):
        if extra:
            _check_out(extra, force, protect=[input, output])
    check_kernel_outputs(save_kernel, plot_kernel, force, [input, output])
    from zssr.engine.job import default_steps, upscale_file

    jitter = None
    if k is not None:
        k, jitter = resolve_for_training(k, _load_rgb(input).rgb, cfg.scale ** (1.0 / (steps or default_steps(cfg))),
                                         cfg.seed, save_kernel, plot_kernel, force, [input, output])

    with _Progress(None, "starting", percent=True) as bar:
        # one bar over the whole job (training and inference, planned_work units), the phase as its label
        def on_work(done, total, name):
            name = _PHASE_LABELS.get(name, name)
            bar.update(completed=min(done, total), total=total, description=f"{name:<11}")

        r = upscale_file(input, output, cfg, kernel=k, steps=steps, ensemble=ensemble, back_projection=back_projection,
                         tile=tile, save_model=save_model, compare=compare, force=force, callback=_info_callback(bar),
                         max_memory=parse_max_memory(max_memory), progress=on_work, kernel_jitter=jitter)
    for e in r["events"]:
        typer.echo(f"zssr: {e}", err=True)
    typer.echo(f"wrote {output} ({r['shape'][0]}x{r['shape'][1]}); trained {r['iterations']} iterations "
               f"in {r['train_seconds']:.1f} s, {r['seconds']:.1f} s in all")
    typer.echo(f"time by phase: {r['phase_summary']}; the result's inference in {r['precision']} products (--precision)")


def _upscale_folder(folder, outdir, cfg, kernel, steps, ensemble, back_projection, tile, force, workers=None,
                    scheduler=None, max_memory=None, precision=None):
    from zssr.engine.batch import upscale_folder

    with _Progress(None, "images") as bar:
        def progress(done, total, name):
            bar.update(completed=done, total=total, info=name or "")

        r = upscale_folder(folder, outdir, cfg, kernel=kernel, steps=steps, ensemble=ensemble,
                           back_projection=back_projection, tile=tile, force=force, workers=workers,
                           scheduler=scheduler, progress=progress, max_memory=max_memory,
                           precision=precision)
    if r["workers"]:
        threads = sorted(set(r["threads"].values()))
        where = f"the cluster at {scheduler}" if scheduler else "a local cluster"
        typer.echo(f"zssr: ran on {where}: {r['workers']} worker(s), {'/'.join(map(str, threads)) or '?'} "
                   f"Numba thread(s) each", err=True)
    failed = r["failed"]
    typer.echo(f"{len(r['done'])} upscaled, {len(r['skipped'])} already done, {len(failed)} failed")
    if failed:
        width = max(len("image"), *(len(name) for name, _ in failed))
        typer.echo(f"\n{'image':<{width}}  reason")
        for name, why in failed:
            typer.echo(f"{name:<{width}}  {why}")
        raise typer.Exit(1)


@app.command("eval")
@friendly
def eval_(
    folder: Annotated[Path, typer.Argument(help="A folder of high-resolution images (e.g. Set5).")],
    scale: Annotated[int, typer.Option("--scale", "-s", help="Integer scale of the protocol (2, 3, 4).")] = 2,
    preset: Preset = "zssr",
    iters: Iters = None,
    time_budget: TimeBudget = None,
    schedule: Schedule = None,
    seed: Seed = 0,
    steps: TrainSteps = None,
    gradual: Gradual = None,
    anisotropic: Anisotropic = None,
    degradation: Annotated[str, typer.Option("--degradation", help="bicubic (the literature's protocol) or random (the README's random-kernel protocol: blind super-resolution).")] = "bicubic",
    kernel: Annotated[Optional[str], typer.Option("--kernel", help="What the super-resolution assumes, comma-separated: bicubic, true, estimate (random degradation: default all three); with bicubic degradation only 'estimate'.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the results as JSON.")] = None,
    precision: Precision = None,
    max_memory: MaxMemory = None,
    force: Force = False,
):
    """The literature's protocol: modcrop, MATLAB-bicubic LR in uint8, upscale, PSNR/SSIM
    on luma with a border of `scale` pixels. Bicubic beside ours, per image and mean.

    --degradation random: each image blurred by a random kernel of the README's protocol
    (image i, sorted by name, drawn with seed --seed + i), then super-resolved assuming
    bicubic, the true kernel, and the estimated one; the estimate's error is reported too."""
    from zssr.engine.evaluate import evaluate_folder, format_table
    from zssr.engine.job import planned_iterations, train_and_upscale
    from zssr.engine.train import TrainConfig

    _set_precision(precision)

    cfg = TrainConfig.make(preset, **_train_overrides(iters=iters, time_budget=time_budget, seed=seed, scale=float(scale),
                                                      schedule=schedule, gradual=gradual, anisotropic=anisotropic))
    if json_out:
        _check_out(json_out, force)
    if degradation != "bicubic" or kernel is not None:
        from .blind import blind_eval

        return blind_eval(folder, scale, cfg, steps, seed, kernel, json_out, degradation, max_memory)

    from zssr.engine.memory import check_job, parse_max_memory

    budget = parse_max_memory(max_memory)

    def sr_fn(lr_img, s):
        with _Progress(planned_iterations(cfg, steps), "training") as bar:
            sr, trainers, _ = train_and_upscale(lr_img, cfg, steps=steps, callback=_bar_callback(bar),
                                                max_memory=budget)
        for t in trainers:
            for e in t.events:
                typer.echo(f"zssr: {e}", err=True)
        return sr

    def on_row(r):
        typer.echo(f"{r['name']}: bicubic {r['bicubic_psnr']:.2f} dB, zssr {r['psnr']:.2f} dB / {r['ssim']:.4f} "
                   f"in {r['seconds']:.1f} s", err=True)

    # every image's first step checked before any training (the job checks each step again)
    result = evaluate_folder(folder, scale, sr_fn, on_row=on_row,
                             check=lambda name, hw: check_job(cfg, hw, steps, budget, name))
    typer.echo(format_table(result))
    if json_out:
        _write_json(json_out, result)


@app.command()
@friendly
def benchmark(
    quick: Annotated[bool, typer.Option("--quick", help="A short run: fewer sizes and repetitions.")] = False,
    peer: Annotated[str, typer.Option(help="auto (PyTorch when it imports), torch, or none.")] = "auto",
    threads: Annotated[Optional[int], typer.Option(help="Threads (default: all cores).")] = None,
    scaling: Annotated[bool, typer.Option("--scaling/--no-scaling", help="Also time a training step on 1 thread against all.")] = True,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the rows as JSON.")] = None,
    e2e: Annotated[bool, typer.Option("--e2e", help="Instead: run the main job (zssr upscale x2) on a fixed 200x150 photo and show its seconds per phase (minutes with the default preset).")] = False,
    preset: Annotated[str, typer.Option(help="--e2e: the preset to run (zssr, fast or seed).")] = "zssr",
    iters: Annotated[Optional[int], typer.Option(help="--e2e: iterations per step instead of the preset's.")] = None,
    size: Annotated[str, typer.Option("--size", help="--e2e: the photo's size WIDTHxHEIGHT (2592x1944: the seed's camera size).")] = "200x150",
    precision: Annotated[Optional[str], typer.Option("--precision", help="--e2e: inference's products, as zssr upscale's --precision (the table itself times float32, as PyTorch computes).")] = None,
    cold: Annotated[bool, typer.Option("--cold", help="Instead: time a first run on a machine: zssr upscale of a tiny image in a child process with an empty, temporary Numba cache, then again with the cache it filled (the difference is compiling). Your own cache is not touched.")] = False,
    runs: Annotated[Optional[int], typer.Option("--runs", help="--cold: how many first runs (each with a new empty cache; default 1).")] = None,
    max_memory: MaxMemory = None,
    force: Force = False,
):
    """Time the kernels, a training step and inference; compare with PyTorch and sgemm.

    Ratios are measured side by side in one run, the two sides alternated call by call.
    numpy's sgemm runs in a child process without the OPENBLAS_* variables. With --e2e,
    time the whole main job instead, by phase, so that a slowdown anywhere shows; with
    --cold, a first run on a machine (compiling included)."""
    from zssr.engine import benchmark as B
    from zssr.engine.errors import UserError

    _set_precision(precision)
    if json_out:
        _check_out(json_out, force)
    if threads is not None and threads < 1:
        raise UserError(f"--threads must be >= 1, got {threads}")
    if e2e and cold:
        raise UserError("--e2e and --cold are two different benchmarks: choose one")
    if runs is not None and not cold:
        raise UserError("--runs counts first runs: it goes with --cold")
    if e2e:
        return _benchmark_e2e(B, preset, iters, _parse_size(size), json_out)
    if cold:
        return _benchmark_cold(B, 1 if runs is None else runs, json_out)
    import importlib.util

    from zssr.engine.memory import check_benchmark, parse_max_memory

    with_peer = peer == "torch" or (peer == "auto" and importlib.util.find_spec("torch") is not None)
    check_benchmark(quick, with_peer, parse_max_memory(max_memory))
    with _Progress(None, "benchmark") as bar:
        rows = B.run(quick=quick, peer=peer, threads=threads,
                     progress=lambda label, done, total: bar.update(completed=done, total=total, info=label))
        sc = B.scaling(quick=quick, threads=threads) if scaling else None
    m = B.machine()
    typer.echo(B.format_machine(m))
    typer.echo(B.format_table(rows))
    if sc:
        typer.echo(B.format_scaling(sc))
    if json_out:
        _write_json(json_out, {"machine": m, "rows": rows, "scaling": sc})


def _write_json(path, payload):
    """payload as indented JSON at path, written atomically (never half a file)."""
    import json

    from zssr.engine.io import atomic_write

    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(payload, indent=2)))


from . import blind as _blind  # noqa: E402,F401  (registers `zssr degrade`)


def _benchmark_e2e(B, preset, iters, size, json_out):
    with _Progress(None, "starting", percent=True) as bar:
        r = B.e2e(preset=preset, iters=iters, size=size, progress=lambda done, total, name: bar.update(
            completed=min(done, total), total=total, description=f"{_PHASE_LABELS.get(name, name):<11}"))
    m = B.machine()
    typer.echo(B.format_machine(m, torch=False))
    typer.echo(B.format_e2e(r))
    if json_out:
        _write_json(json_out, {"machine": m, "e2e": r})


def _benchmark_cold(B, runs, json_out):
    with _Progress(None, "first run") as bar:
        r = B.cold_start(runs=runs, progress=lambda label, done, total: bar.update(
            completed=done, total=total, info=label))
    m = B.machine()
    typer.echo(B.format_machine(m, torch=False))
    typer.echo(B.format_cold(r))
    if json_out:
        _write_json(json_out, {"machine": m, "cold": r})


def main():
    app()


if __name__ == "__main__":
    main()
