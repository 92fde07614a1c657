"""Peak-memory estimates, so that a large job is tiled smaller or refused before it starts
rather than killed half-way.

The estimates count the big arrays the engine allocates (images, the network's padded
buffers per window, the ensemble's per-tile stack, the training buffers) and round up;
they do not count the interpreter and libraries (~300 MB), which `budget` leaves aside.
"""
import os

from .errors import UserError
from .kernels.conv3x3 import padded_channels

GIB = 2 ** 30
BASELINE = 400 * 2 ** 20  # Python, numpy, numba, compiled code


def total_memory():
    """Physical memory of this machine, in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def default_max_memory():
    """The default --max-memory: three quarters of the machine's memory."""
    return 0.75 * total_memory()


def parse_max_memory(gib):
    """--max-memory in GiB (None: the default) -> bytes; a bad value is a UserError."""
    if gib is None:
        return default_max_memory()
    if not (gib == gib and 0 < gib < float("inf")):
        raise UserError(f"--max-memory must be a positive number of GiB, got {gib}")
    return gib * GIB


def _window(n, tile, depth):
    """The window side the tiling uses for an axis of n pixels (see infer._tiles)."""
    from .kernels.winograd4 import tile_halo

    count = -(-n // tile)
    size = -(-n // count)
    wn = min(n, size + 2 * tile_halo(depth) + 3)
    return wn + ((n - wn) % 4)


def window_bytes(net, wh, ww):
    """The network's inference buffers for one window shape: input, two ping-pong buffers,
    the last layer's output (padded), and the result."""
    item = net.dtype.itemsize
    per = (wh + 2) * (ww + 2) * item
    c_in = padded_channels(3, net.dtype)
    c_w = padded_channels(net.width, net.dtype)
    return per * (2 * c_in + 2 * c_w) + wh * ww * 3 * item


def inference_bytes(net, in_hw, out_hw, tile, ensemble=True):
    """Peak bytes of one upscaling step from in_hw to out_hw with tiles of `tile` pixels."""
    H, W = out_hw
    item = net.dtype.itemsize
    image = H * W * 3 * item
    # the step's input, the bicubic upscale, the output, and one resize intermediate
    resident = in_hw[0] * in_hw[1] * 3 * item + 3 * image + H * in_hw[1] * 3 * item
    wh, ww = _window(H, tile, net.depth), _window(W, tile, net.depth)
    windows = window_bytes(net, wh, ww)
    if ensemble:
        if wh != ww:
            windows += window_bytes(net, ww, wh)  # the rotated windows have their own buffers
        windows += 8 * min(tile, H) * min(tile, W) * 3 * item  # the 8 results of one tile
    return BASELINE + resident + windows


def training_shape(cfg, img_hw):
    """The (h, w) training runs on for an image of img_hw: shrunk so that its longer side
    is at most cfg.max_side, as the Trainer does (data.shrink_to)."""
    from .data import scaled_shape

    h, w = img_hw
    if not cfg.max_side or max(h, w) <= cfg.max_side:
        return h, w
    return scaled_shape((h, w), cfg.max_side / max(h, w))


def training_bytes(cfg, img_hw, dtype_size=4):
    """Peak bytes of training on an image of img_hw: per training shape, the network's saved
    activations and gradient buffers (crops for zssr, every pyramid level for seed), plus
    the image pool (the image's copies, and copies of the earlier networks' results, which
    for an image larger than data.WINDOW are results for its centre window only), all at the
    size training runs on (`training_shape`, after --max-side), plus the full-size image
    itself when it was shrunk. Each network's pool is released before the next one's is
    made (Trainer.release), so one pool is counted: the last network's, the largest."""
    from numpy import linspace

    from .data import MIN_SCALE, SOURCE_LEVELS, WINDOW, anisotropic_factors, pool_factors, substep_factors

    h, w = training_shape(cfg, img_hw)
    full = img_hw[0] * img_hw[1] * 3 * dtype_size if (h, w) != tuple(img_hw) else 0
    if cfg.recipe == "pyramid":
        shapes = [(max(1, round(h * f)), max(1, round(w * f))) for f in linspace(1.0, 0.4, cfg.levels)]
        pool = 6 * h * w * 3 * dtype_size  # every level's sharp and blurry copies
    else:
        shapes = [(min(cfg.crop, h), min(cfg.crop, w))]
        # the copies fathers are cut from: of the image, and of the earlier sub-steps' results,
        # which are made of the image's centre window only (data.WINDOW) when it is larger
        win = min(h, WINDOW) * min(w, WINDOW)
        if cfg.anisotropic:  # the image's copies, and copies of every earlier network's result
            earlier = sum(a * b for a, b in anisotropic_factors(cfg.scale, cfg.gradual)[:-1])
            area = sum(f * f for f in pool_factors(MIN_SCALE, 1.0)) * h * w \
                + earlier * sum(t * t for t in SOURCE_LEVELS) * win
        else:
            subs = substep_factors(cfg.scale, cfg.gradual)
            top = subs[-2] if len(subs) > 1 else 1.0
            area = sum(f * f * (h * w if f <= 1.0 + 1e-9 else win) for f in pool_factors(MIN_SCALE, top))
        pool = area * 3 * dtype_size
    c_w = -(-cfg.width // 16) * 16
    per_shape = sum((a + 2) * (b + 2) * dtype_size * c_w * (cfg.depth + 3) for a, b in shapes)
    return BASELINE + per_shape + int(pool) + full


def check_job(cfg, img_hw, steps, max_bytes, name=None):
    """The training check of a train-and-upscale job's first step on an image of img_hw
    (job.train_and_upscale checks every step again as it reaches it); ``name`` prefixes
    the message."""
    from dataclasses import replace

    from .job import default_steps

    steps = default_steps(cfg) if steps is None else steps
    try:
        check_training(replace(cfg, scale=float(cfg.scale) ** (1.0 / steps)), img_hw, max_bytes)
    except UserError as e:
        raise UserError(f"{name}: {e}" if name else str(e)) from None


def benchmark_bytes(quick=False, peer=False):
    """Peak bytes of `zssr benchmark`: its largest case (a convolution's four padded
    buffers, a training step on a crop, inference on a whole image; numpy's sgemm runs in
    a child process with its three matrices), twice when the PyTorch peer runs the same
    case beside it."""
    from types import SimpleNamespace

    import numpy as np

    from .benchmark import OP_PREDICT, OP_SGEMM, OP_TRAIN, plan
    from .train import TrainConfig

    net = SimpleNamespace(dtype=np.dtype(np.float32), width=64, depth=8)
    c_w = padded_channels(64, net.dtype)
    worst = 0
    for op, size in plan(quick=quick):
        if op == OP_TRAIN:
            need = training_bytes(TrainConfig.make("fast", crop=size), (size, size)) - BASELINE
        elif op == OP_PREDICT:
            need = inference_bytes(net, (size, size), (size, size), size, ensemble=False) - BASELINE
        elif op == OP_SGEMM:
            need = BASELINE + 3 * size * size * 4  # a second process: its own interpreter and numpy
        else:  # a 64 -> 64 convolution
            need = 4 * (size + 2) * (size + 2) * c_w * 4
        worst = max(worst, need * (2 if peer and op != OP_SGEMM else 1))
    return BASELINE + worst


def check_benchmark(quick, peer, max_bytes):
    need = benchmark_bytes(quick, peer)
    if need > max_bytes:
        raise UserError(f"the benchmark needs about {need / GIB:.2f} GiB, more than --max-memory "
                        f"{max_bytes / GIB:.2f} GiB; raise --max-memory{'' if quick else ', or use --quick'}")


def choose_tile(net, in_hw, out_hw, tile, ensemble, max_bytes):
    """The largest tile (the given one, else untiled or the default) whose estimate fits in
    max_bytes, halving down to 32 pixels; a UserError with the figures when none fits."""
    from .infer import AUTO_TILE, AUTO_TILE_PIXELS

    H, W = out_hw
    if tile is None:
        tile = AUTO_TILE if H * W > AUTO_TILE_PIXELS else max(H, W)
    t = tile
    while True:
        need = inference_bytes(net, in_hw, out_hw, t, ensemble)
        if need <= max_bytes:
            return t
        if t <= 32:
            raise UserError(f"upscaling to {W}x{H} needs about {need / GIB:.2f} GiB even in tiles of {t} pixels, "
                            f"more than --max-memory {max_bytes / GIB:.2f} GiB; raise --max-memory or upscale less")
        t = max(32, t // 2)


def check_training(cfg, img_hw, max_bytes):
    """A UserError with the figures when training on an image of img_hw (shrunk to
    cfg.max_side first, as training does) would need more than max_bytes."""
    need = training_bytes(cfg, img_hw)
    if need > max_bytes:
        h, w = training_shape(cfg, img_hw)
        shrunk = f" (shrunk from {img_hw[1]}x{img_hw[0]} by --max-side)" if (h, w) != tuple(img_hw) else ""
        raise UserError(f"training on a {w}x{h} image{shrunk} needs about {need / GIB:.2f} GiB, more than "
                        f"--max-memory {max_bytes / GIB:.2f} GiB; raise --max-memory, or use --max-side or a smaller --crop")
