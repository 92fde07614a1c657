"""zssr: zero-shot super-resolution on the CPU, for scripts and notebooks.

    import numpy as np, zssr
    from PIL import Image

    photo = np.asarray(Image.open("photo.png"))              # uint8 (H, W, 3)
    big = zssr.upscale(photo, scale=2, preset="fast")        # uint8 (2H, 2W, 3): trains on photo itself
    model = zssr.train(photo, scale=2, preset="seed", epochs=5)
    model.save("seed.npz")
    bigger = zssr.load_model("seed.npz").upscale(photo, scale=4, steps=2)
    lr, k = zssr.degrade(photo, scale=2, seed=3)             # blind SR: a test image with a random kernel
    sr = zssr.upscale(lr, scale=2, kernel="estimate")        # the kernel estimated from lr itself first

Arrays go in and come out as they are: uint8, uint16 or float (values in [0, 1]); grey
(H, W), (H, W, 1), grey+alpha (H, W, 2), RGB (H, W, 3) or RGBA (H, W, 4); the result has
the input's dtype and channels (alpha is resized with plain bicubic). A mistake raises
:class:`UserError` (a ``ValueError``) with a one-line message.

This folder (engine/api/ in the source tree) is installed as the top-level package ``zssr``;
the folders engine/ and cli/ are installed as ``zssr.engine`` (the library: kernels, network,
training, inference) and ``zssr.cli`` (the ``zssr`` command, a thin layer over these
functions and the engine). Importing ``zssr`` is light: numba loads on first use.
"""
from __future__ import annotations

import numpy as np

__all__ = ["upscale", "train", "load_model", "Model", "estimate_kernel", "degrade", "UserError", "TRAIN_OPTIONS"]

TRAIN_OPTIONS = ("iters", "epochs", "time_budget", "lr", "optimizer", "momentum", "loss", "bias", "crop",
                 "max_side", "noise", "seed", "schedule", "gradual", "anisotropic")
"""The training options `train` and `upscale` take as keywords (as the commands' options)."""




def __getattr__(name):
    if name == "UserError":  # lazily: importing zssr.engine loads numba
        from .engine.errors import UserError

        return UserError
    raise AttributeError(f"module 'zssr' has no attribute {name!r}")


def _error(msg):
    from .engine.errors import UserError

    return UserError(msg)


# --------------------------------------------------------------------------- arrays in and out


def _to_float(image, name="image"):
    """(rgb float32 (H, W, 3) in [0, 1], alpha (H, W) or None, how to give it back)."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or not 1 <= a.shape[2] <= 4 or min(a.shape[:2]) < 1:
        raise _error(f"{name} must be (H, W) grey or (H, W, C) with C in 1..4 channels, got shape "
                        f"{np.shape(image)}")
    if a.dtype == np.uint8:
        x = a.astype(np.float32) / np.float32(255)
    elif a.dtype == np.uint16:
        x = a.astype(np.float32) / np.float32(65535)
    elif np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)):
            raise _error(f"{name} holds NaN or infinite values")
        if a.size and (a.min() < 0 or a.max() > 1):
            raise _error(f"{name}: float values must be in [0, 1], got {a.min():.4g}..{a.max():.4g}")
        x = a.astype(np.float32)
    else:
        raise _error(f"{name} must be uint8, uint16 or float in [0, 1], got {a.dtype}")
    c = x.shape[2]
    rgb = np.repeat(x[:, :, :1], 3, axis=2) if c <= 2 else np.ascontiguousarray(x[:, :, :3])
    alpha = np.ascontiguousarray(x[:, :, c - 1]) if c in (2, 4) else None
    return rgb, alpha, (np.asarray(image).ndim, c, a.dtype)


def _from_float(sr, alpha, like, alpha_sized=False):
    """sr float (H', W', 3) in [0, 1] (and the input's alpha, resized with bicubic unless
    `alpha_sized`: already (H', W')) back to the input's layout."""
    ndim, c, dtype = like
    if c <= 2:
        sr = sr.mean(axis=2, keepdims=True)
    if alpha is not None:
        a = alpha
        if not alpha_sized:
            from .engine.kernels.resize import resize

            a = np.clip(resize(alpha.astype(np.float32), shape=sr.shape[:2]), 0, 1)
        sr = np.concatenate([sr, a[:, :, None]], axis=2)
    sr = np.clip(sr, 0.0, 1.0)
    if ndim == 2:
        sr = sr[:, :, 0]
    if dtype == np.uint8:
        return np.round(sr * 255).astype(np.uint8)
    if dtype == np.uint16:
        return np.round(sr * 65535).astype(np.uint16)
    return sr.astype(dtype)


def _config(preset, scale, options):
    from .engine.train import TrainConfig

    unknown = sorted(set(options) - set(TRAIN_OPTIONS))
    if unknown:
        raise _error(f"unknown option(s) {', '.join(unknown)}; the training options are {', '.join(TRAIN_OPTIONS)}")
    return TrainConfig.make(preset, scale=float(scale), **options)


class _precision:
    """Within the block, inference uses `precision` ("auto", "float32", "bfloat16"; None:
    the process's setting, see ``zssr.engine.kernels.conv3x3.set_precision``); restored after."""

    def __init__(self, precision):
        self.precision = precision

    def __enter__(self):
        if self.precision is None:
            return self
        from .engine.kernels import conv3x3

        self.old = (conv3x3.AUTO_INFERENCE, conv3x3.REQUESTED)
        try:
            conv3x3.set_precision(self.precision)
        except ValueError as e:
            raise _error(f"precision: {e}") from None
        return self

    def __exit__(self, *exc):
        if self.precision is not None:
            from .engine.kernels import conv3x3

            conv3x3.AUTO_INFERENCE, conv3x3.REQUESTED = self.old
        return False


def _kernel(kernel, rgb, cfg, steps):
    """`kernel` of upscale/train as the job takes it (job.resolve_kernel): None (bicubic),
    "estimate" (estimated from rgb at the step's factor; None when it looks bicubic) or a
    2-D array (checked, normalised); and the estimate's jitter for training (else None)."""
    from .engine.job import resolve_kernel

    if isinstance(kernel, str) and kernel != "estimate":
        raise _error(f"kernel must be None, 'estimate' or a 2-D array, got {kernel!r}")
    if kernel is not None and not isinstance(kernel, str):
        kernel = np.asarray(kernel)
    k, est = resolve_kernel(rgb, kernel, cfg, steps)
    if est is not None and est.caution():
        import warnings

        warnings.warn(f"zssr: {est.caution()}", UserWarning, stacklevel=3)
    return k, (est.jitter() if est is not None else None)


def _budget(max_memory):
    from .engine.memory import parse_max_memory

    return parse_max_memory(max_memory)


# --------------------------------------------------------------------------- the API


def upscale(image, scale=2, preset="zssr", *, steps=None, kernel=None, ensemble=None, back_projection=None,
            tile=None, max_memory=None, callback=None, precision=None, **options):
    """Train on `image` itself, then upscale it by `scale`: what `zssr upscale` does to a file.

    Parameters
    ----------
    image : ndarray, uint8/uint16/float in [0, 1], (H, W), (H, W, 1..4)
    scale : float > 1
    preset : 'zssr' (ZSSR's recipe, six networks per x2 step), 'fast' (two networks, half
        the time) or 'seed' (the course report's method)
    steps : upscaling steps (default: zssr and fast at most x2 per step, seed one)
    kernel : a 2-D blur kernel the image was downscaled with, "estimate" (estimate it from
        the image first, see :func:`estimate_kernel`; training then draws its kernels
        around the estimate, `KernelEstimate.jitter`), or None (bicubic)
    ensemble, back_projection, tile : as the command's options (None: the preset's; the
        default ensemble gives a result above 2 megapixels 4 members, True all 8)
    max_memory : GiB the job may use (None: 3/4 of the machine); refused before any work
        (a UserError with the figures) when it cannot fit, tiled smaller when that helps
    callback : callable(trainer) after every training iteration, or None
    precision : products of the wide layers in inference: 'auto' (bfloat16 on CPUs with
        AVX-512 BF16 for results of 1 megapixel or more, else float32), 'float32' or
        'bfloat16'; None: the process's setting (ZSSR_PRECISION, default auto). Training
        is float32 always.
    **options : training options (TRAIN_OPTIONS), e.g. iters=500, seed=1, max_side=500

    Returns
    -------
    ndarray of the input's dtype and channels, the upscaled size (of the copy shrunk to
    max_side when the preset shrinks it: seed).
    """
    from .engine.job import train_and_upscale

    rgb, alpha, like = _to_float(image)
    cfg = _config(preset, scale, options)
    if steps is not None and (not isinstance(steps, (int, np.integer)) or steps < 1):
        raise _error(f"steps must be an integer >= 1, got {steps!r}")
    kernel, jitter = _kernel(kernel, rgb, cfg, steps)
    with _precision(precision):
        sr, _, _ = train_and_upscale(rgb, cfg, steps=steps, kernel=kernel, ensemble=ensemble,
                                     back_projection=back_projection, tile=tile, max_memory=_budget(max_memory),
                                     callback=callback, kernel_jitter=jitter)
    return _from_float(sr, alpha, like)


def train(image, scale=2, preset="zssr", *, kernel=None, gt=None, resume=None, max_memory=None, callback=None,
          **options):
    """Train one network on `image` itself (one jump to `scale`): what `zssr train` does.

    `gt`: a high-resolution ground truth array (PSNR is then tracked while training);
    `resume`: a checkpoint path to continue exactly. The other parameters as :func:`upscale`.
    Set ``trainer.stop_requested = True`` in `callback` to stop early. Returns a :class:`Model`.
    """
    from .engine import checkpoint
    from .engine.memory import check_training
    from .engine.train import Trainer

    rgb, _, _ = _to_float(image)
    cfg = _config(preset, scale, options)
    kernel, jitter = _kernel(kernel, rgb, cfg, 1)  # one network, one jump to the scale
    check_training(cfg, rgb.shape[:2], _budget(max_memory))
    tr = Trainer(rgb, cfg, kernel=kernel, gt=None if gt is None else _to_float(gt, "gt")[0], kernel_jitter=jitter)
    if resume is not None:
        net, meta, opt_arrays = checkpoint.load(resume)
        tr.restore(meta, opt_arrays, net)
    tr.run(callback)
    return Model(tr.net, tr.meta(), trainer=tr)


def estimate_kernel(image, scale=2, seed=0):
    """Estimate the blur kernel that downscaled `image` by `scale` (what `--kernel estimate`
    does first; milliseconds for a photo of a few hundred pixels a side). Deterministic.

    Returns an estimate with ``kernel`` (the 2-D kernel to train with, or None when the
    image looks bicubic-downscaled: then the default recipe is the right one), ``bicubic``,
    ``gaussian`` (the fitted Gaussian, whatever the decision), ``sigma1``, ``sigma2``
    (high-resolution pixels), ``theta`` (radians), ``summary()`` and ``to_dict()``.
    See the README's caution: textures downscaled with bicubic can be mistaken for blur;
    ``uncertain`` is True (and ``caution()`` says it in a line) when the estimate lies where
    they are (upscale/train with kernel="estimate" then warn, as the command does)."""
    from .engine.kernel_estimate import estimate_kernel as _estimate

    rgb, _, _ = _to_float(image)
    return _estimate(rgb, float(scale), seed=int(seed))


def degrade(image, scale=2, kernel="random", *, seed=0, noise=0.0):
    """A low-resolution test image, as `zssr degrade`: blur with `kernel` and keep every
    `scale`-th pixel (MATLAB's pixel centres; no bicubic), plus optional Gaussian noise.

    kernel : "random" (the README's protocol, drawn with `seed`), "gaussian:S1,S2,THETA"
        (sigmas in high-resolution pixels, THETA in radians) or a 2-D array
    scale : integer >= 2; noise : std on the [0, 1] scale

    Returns (lr, kernel): lr in the input's dtype and channels (alpha degraded alike), the
    kernel as a float64 array summing to 1.
    """
    from .engine.degradation import check_kernel, degrade_image, parse_kernel_spec

    rgb, alpha, like = _to_float(image)
    if isinstance(scale, bool) or not float(scale).is_integer() or scale < 2:
        raise _error(f"scale must be an integer >= 2, got {scale!r}")
    if not (np.isfinite(noise) and noise >= 0):
        raise _error(f"noise must be >= 0, got {noise!r}")
    rng = np.random.default_rng(seed)
    if isinstance(kernel, str):
        if kernel != "random" and not kernel.strip().lower().startswith("gaussian"):
            raise _error(f"kernel must be 'random', 'gaussian:S1,S2,THETA' or a 2-D array, got {kernel!r}")
        k, _ = parse_kernel_spec(kernel, int(scale), rng)
    else:
        k = check_kernel(kernel, "kernel")
    lr = degrade_image(rgb, int(scale), k, noise=float(noise), rng=rng)
    if alpha is not None:  # the same blur and subsampling, without noise
        alpha = degrade_image(np.repeat(alpha[:, :, None], 3, axis=2), int(scale), k)[:, :, 0]
    return _from_float(lr, alpha, like, alpha_sized=True), k


def load_model(path):
    """A model saved by `zssr train`, `zssr upscale --save-model` or :meth:`Model.save`."""
    from .engine import checkpoint

    net, meta, _ = checkpoint.load(path)
    return Model(net, meta)


class Model:
    """A trained network and what it was trained with (``meta["config"]``: the preset's
    recipe, its inference defaults)."""

    def __init__(self, net, meta, trainer=None):
        self.net, self.meta, self.trainer = net, meta, trainer

    @property
    def config(self):
        return self.meta.get("config", {})

    @property
    def preset(self):
        return self.config.get("preset", "zssr")

    def __repr__(self):
        return (f"zssr.Model(preset={self.preset!r}, scale={self.config.get('scale')}, "
                f"iterations={self.meta.get('iteration')}, width={self.net.width}, depth={self.net.depth})")

    def upscale(self, image, scale=None, size=None, steps=1, ensemble=None, back_projection=None, tile=None,
                max_memory=None, progress=None, precision=None):
        """Upscale `image` (any layout, as :func:`upscale`) with this network, in `steps`
        equal steps to `scale` or to `size` = (height, width) (neither: the scale it was
        trained for). The loop is the preset's: zssr and fast, per step bicubic up, the
        network, back-projection; seed, the network on the image itself first, then per
        step bicubic up and the network (steps + 1 passes). progress(i, n) after pass i;
        precision as :func:`upscale`'s. ensemble None: the model's default, which on a
        result above 2 megapixels (engine.job.FULL_ENSEMBLE_MAX_PIXELS) is the 4 members
        that keep rows rows; True: all 8."""
        from .engine.infer import scale_schedule, seed_loop, super_resolve
        from .engine.job import ensemble_transforms, infer_options

        rgb, alpha, like = _to_float(image)
        if scale is None and size is None:
            scale = float(self.config.get("scale", 2.0))
        if size is not None:
            try:
                size = (int(size[0]), int(size[1]))
            except (TypeError, ValueError, IndexError):
                raise _error(f"size must be (height, width), got {size!r}") from None
        ens, bp = infer_options(self.config, ensemble, back_projection)
        loop = seed_loop if self.config.get("recipe") == "pyramid" else super_resolve
        tf = None
        if ens and not ensemble:  # the default ensemble: 4 members on a large result (job.FULL_ENSEMBLE_MAX_PIXELS)
            hw = scale_schedule(rgb.shape[:2], scale=scale, size=size, steps=steps)[-1]
            tf = ensemble_transforms(float(self.config.get("scale", 2.0)), None, pixels=hw[0] * hw[1])
            tf = None if len(tf) == 8 else tf
        with _precision(precision):
            sr = loop(self.net, rgb, scale=scale, size=size, steps=steps, ensemble=ens, back_projection=bp,
                      tile=tile, progress=progress, max_memory=_budget(max_memory), transforms=tf)
        return _from_float(sr, alpha, like)

    def save(self, path, force=False):
        """Write the model (with the optimiser's state when it was trained here, so that
        `train(resume=path)` continues exactly) as .npz, atomically."""
        from .engine import checkpoint

        tr = self.trainer
        checkpoint.save(path, self.net, tr.meta() if tr else self.meta, tr.opt if tr else None, force=force)
        return path
