"""Inference: gradual upscaling, geometric self-ensemble, back-projection, tiling.

Data flow (DESIGN.md, "Inference")::

    lr -> for each size of the scale schedule:
              up  = bicubic resize(cur, shape=size)
              out = network(up)           tiled; optionally over the 8 flips/rotations, median
              out = back_project(out, cur) optional
              cur = out
       -> clip to [0, 1]

Shapes: images are float32 (H, W, 3) in [0, 1], channels last.

Tiling. The network is a chain of ``depth`` 3x3 convolutions with zero padding, so an
output pixel depends on the input pixels within ``depth`` of it, and the arithmetic for a
pixel does not depend on where it is. A tile computed from a window that reaches
``depth`` pixels past the tile on every side (or to the image edge, where the zero padding
is the same as untiled) is therefore bitwise the untiled result. Here the image is cut into
nearly equal tiles of at most ``tile`` pixels a side, and every window has the same size,
``min(extent, tile + 2 * depth)`` per axis, slid inwards at the image border: a window
that reaches further than needed changes nothing, and one window shape means one set of the
network's cached buffers, not one per edge case.

Memory. With the ensemble, the 8 transforms are applied per tile and their median taken
per tile, so at most 8 tile-sized outputs exist at once. The full-size arrays alive in
:func:`super_resolve` are the upscaled input and the network's output (the input is dropped
before back-projection, which works in place and adds its upscaled correction strip by
strip). Measured: x2 of a 2592 x 2592 image, tile 512, peak RSS about 1.0 GiB.
"""
from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np

from .data import dihedral, dihedral_inverse
from .errors import UserError
from .kernels import conv3x3 as K
from .kernels.median import median_into
from .phases import advance, phase

__all__ = ["scale_schedule", "apply_network", "back_project", "super_resolve", "bicubic",
           "AUTO_TILE_PIXELS", "AUTO_TILE"]

AUTO_TILE_PIXELS = 1024 * 1024
"""Images with more pixels than this are tiled even when ``tile`` is None."""
AUTO_TILE = 512
"""The tile size used then."""

_SIZE_RTOL = 1e-9  # in * scale within this (relative) of an integer counts as that integer


def _resize(*args, **kwargs):
    from .kernels.resize import resize  # lazily: a sibling module
    return resize(*args, **kwargs)


# --------------------------------------------------------------------------- arguments


def _is_number(v):
    return isinstance(v, (Real, np.number)) and not isinstance(v, (bool, np.bool_))


def _pair(value, what):
    """A number or a pair of numbers -> a pair."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if _is_number(value):
        return (value, value)
    if isinstance(value, (str, bytes)):
        raise UserError(f"{what} must be a number or a pair of numbers, got {value!r}")
    try:
        items = tuple(value)
    except TypeError:
        raise UserError(f"{what} must be a number or a pair of numbers, got {value!r}") from None
    if len(items) != 2:
        raise UserError(f"{what} must have 2 entries (rows, columns), got {len(items)}")
    return items


def _positive_int(v, what):
    ok = isinstance(v, (Integral, np.integer)) and not isinstance(v, (bool, np.bool_))
    if not ok and _is_number(v) and math.isfinite(float(v)) and float(v) == int(v):
        ok = True
    if not ok or int(v) < 1:
        raise UserError(f"{what} must be a positive whole number, got {v!r}")
    return int(v)


def _target_len(n, s):
    """``ceil(n * s)`` as MATLAB's imresize, with products within 1e-9 of an integer exact."""
    v = n * s
    r = round(v)
    if abs(v - r) <= _SIZE_RTOL * max(1.0, abs(v)):
        return int(r)
    return int(math.ceil(v))


def _check_image(img, dtype, what="image"):
    if not isinstance(img, np.ndarray):
        raise UserError(f"{what} must be a numpy array (H, W, 3), got {type(img).__name__}")
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] < 1 or img.shape[1] < 1:
        raise UserError(f"{what} must be an RGB array of shape (H, W, 3), got {img.shape}")
    if not np.issubdtype(img.dtype, np.floating):
        raise UserError(f"{what} must be float in [0, 1], got dtype {img.dtype}")
    return np.ascontiguousarray(img, dtype=dtype)


# --------------------------------------------------------------------------- schedule


def scale_schedule(in_hw, scale=None, size=None, steps=1):
    """The image size after each step of a gradual upscale.

    Parameters
    ----------
    in_hw : (h, w), the input size.
    scale : number or (sy, sx), the total factor per axis; the final size is
        ``ceil(in * scale)`` (MATLAB's imresize; a product within 1e-9 of an integer counts
        as that integer, so 2 * 100 = 200).
    size : (h, w), the final size instead of ``scale`` (any aspect ratio).
    steps : int >= 1, how many equal steps: each multiplies by ``f = total ** (1/steps)``;
        the size after step k < steps is ``round(in * f**k)``, the last is the target.

    Returns
    -------
    list of (h, w), ``steps`` entries, the last one the final size.

    Raises
    ------
    UserError
        Not exactly one of scale/size; a scale that is not a positive finite number; a
        total factor below 1 on either axis (this upscales only); a factor of exactly 1 on
        both axes (nothing to do); steps < 1.
    """
    hw = _pair(in_hw, "input size")
    hw = tuple(_positive_int(n, "input size") for n in hw)
    steps = _positive_int(steps, "steps")
    if (scale is None) == (size is None):
        raise UserError("give exactly one of scale or size")
    if scale is not None:
        factors = []
        for s in _pair(scale, "scale"):
            if not _is_number(s) or not math.isfinite(float(s)) or float(s) <= 0.0:
                raise UserError(f"scale must be a positive finite number, got {s!r}")
            factors.append(float(s))
        target = tuple(_target_len(n, s) for n, s in zip(hw, factors))
    else:
        if isinstance(size, np.ndarray) and size.ndim == 0 or _is_number(size):
            raise UserError(f"size must be a pair (height, width), got {size!r}")
        target = tuple(_positive_int(n, "size") for n in _pair(size, "size"))
        factors = [t / n for t, n in zip(target, hw)]
    if any(f < 1.0 or t < n for f, t, n in zip(factors, target, hw)):
        raise UserError(
            f"this upscales only: {hw[0]}x{hw[1]} -> {target[0]}x{target[1]} shrinks an axis "
            "(use a scale or size of at least the input's)")
    if all(t == n for t, n in zip(target, hw)):
        raise UserError(f"nothing to do: the output size {target[0]}x{target[1]} is the input's")
    out = []
    per_step = [f ** (1.0 / steps) for f in factors]
    for k in range(1, steps):
        step = tuple(min(t, max(n, int(math.floor(n * f ** k + 0.5))))
                     for n, f, t in zip(hw, per_step, target))
        out.append(step)
    out.append(target)
    return out


# --------------------------------------------------------------------------- network


# The 8 dihedral transforms as (k, flip): forward t(x) = rot90(fliplr(x) if flip else x, k)
def _tiles(n, tile, depth):
    """Per axis: [(lo, hi, w0)], tile [lo, hi) computed from the window [w0, w0 + wn), for
    a network of `depth` layers.

    Windows start on multiples of 4 and (n - wn) is a multiple of 4: the Winograd kernels
    compute in 2x2 or 4x4 blocks, and a pixel must fall at the same place of its block
    (also after the flips of the ensemble) tiled or not, for bitwise results. The halo is
    winograd4.tile_halo(depth): an F(4x4) output depends, by rounding, on a few pixels
    beyond its 3x3 window."""
    from .kernels.winograd4 import tile_halo

    halo = tile_halo(depth)
    count = -(-n // tile)
    size = -(-n // count)  # nearly equal tiles of at most `tile`
    wn = min(n, size + 2 * halo + 3)
    wn += (n - wn) % 4
    out = []
    for lo in range(0, n, size):
        hi = min(n, lo + size)
        w0 = min(max(lo - halo, 0) // 4 * 4, n - wn)
        out.append((lo, hi, w0))
    return out, wn


def apply_network(net, img, ensemble=False, tile=None, transforms=None, exact=False):
    """out = net(img), optionally the median over the 8 flips/rotations, optionally tiled.

    Parameters
    ----------
    net : engine.Network
    img : ndarray (H, W, 3), float (converted to the network's dtype)
    ensemble : bool
        ZSSR's geometric self-ensemble: each of the 8 dihedral transforms of the input
        through the network, transformed back, the per-pixel median of the 8.
    tile : int or None
        Process tiles of at most ``tile`` x ``tile`` pixels, each from a window with a
        ``net.depth``-pixel halo: bitwise the untiled result. None: untiled, unless the
        image has more than ``AUTO_TILE_PIXELS`` pixels (then ``AUTO_TILE``).
    transforms : sequence of dihedral indices (0..7) or None
        The ensemble's members instead of all 8: a network trained on an anisotropic
        factor gets ``data.AXIS_TRANSFORMS`` (no transposes), as ZSSR does.
    exact : bool
        The training's arithmetic (float32 products) instead of the inference precision
        (`conv3x3.set_precision`; see ``Network.predict``).

    Returns
    -------
    ndarray (H, W, 3) of the network's dtype (not clipped).
    """
    img = _check_image(img, net.dtype)
    h, w = img.shape[:2]
    if tile is None:
        tile = AUTO_TILE if h * w > AUTO_TILE_PIXELS else max(h, w)
    tile = _positive_int(tile, "tile")
    rows, wh = _tiles(h, tile, net.depth)
    cols, ww = _tiles(w, tile, net.depth)
    out = np.empty_like(img)
    if not ensemble:
        res = np.empty((wh, ww, 3), net.dtype)
        for y0, y1, wy in rows:
            for x0, x1, wx in cols:
                net.predict(img[wy:wy + wh, wx:wx + ww], out=res, exact=exact)
                out[y0:y1, x0:x1] = res[y0 - wy:y1 - wy, x0 - wx:x1 - wx]
                advance((y1 - y0) * (x1 - x0))
        return out
    # one result buffer per window orientation; the 8 centres of a tile, then their median
    ks = tuple(range(8)) if transforms is None else tuple(int(k) for k in transforms)
    if not ks or any(not 0 <= k < 8 for k in ks):
        raise UserError(f"ensemble transforms must be indices 0..7, got {transforms!r}")
    res = {(wh, ww): np.empty((wh, ww, 3), net.dtype), (ww, wh): np.empty((ww, wh, 3), net.dtype)}
    stack = np.empty((len(ks), rows[0][1] - rows[0][0], cols[0][1] - cols[0][0], 3), net.dtype)
    for y0, y1, wy in rows:
        for x0, x1, wx in cols:
            win = img[wy:wy + wh, wx:wx + ww]
            cen = stack[:, :y1 - y0, :x1 - x0]
            for i, k in enumerate(ks):
                xt = dihedral(win, k)
                r = res[xt.shape[:2]]
                net.predict(xt, out=r, exact=exact)
                advance((y1 - y0) * (x1 - x0))
                cen[i] = dihedral_inverse(r, k)[y0 - wy:y1 - wy, x0 - wx:x1 - wx]
            median_into(stack, out, y1 - y0, x1 - x0, y0, x0)  # np.median(cen, axis=0) into out, 10x faster
    return out


# --------------------------------------------------------------------------- back-projection


def back_project(sr, lr, iters, kernel="cubic", inplace=False):
    """Make ``sr`` consistent with ``lr``: ``iters`` times ``sr += up(lr - down(sr))``.

    ``down`` resizes to ``lr``'s size with the given blur kernel (a 2-D array) or bicubic
    (``"cubic"`` or None); ``up`` is bicubic to ``sr``'s size. The result is clipped to
    [0, 1] at the end.

    Parameters
    ----------
    sr : ndarray (H, W, 3), float
    lr : ndarray (h, w, 3), float, h <= H, w <= W
    iters : int >= 0
    kernel : "cubic", None or a 2-D numpy blur kernel
    inplace : bool
        Update ``sr`` itself (it must then be float32 or float64 and contiguous) instead of
        a copy; saves one full-size array.

    Returns
    -------
    ndarray, sr's shape and dtype (float32 unless sr is float64).
    """
    iters = int(iters)
    if iters < 0:
        raise UserError(f"back-projection iterations must be >= 0, got {iters}")
    if kernel is None:
        kernel = "cubic"
    if inplace:
        if not isinstance(sr, np.ndarray) or sr.dtype not in (np.float32, np.float64) \
                or not sr.flags.c_contiguous:
            raise UserError("back_project(inplace=True) needs a contiguous float32/float64 sr")
        _check_image(sr, sr.dtype, "sr")
    else:
        sr = _check_image(sr, np.float64 if getattr(sr, "dtype", None) == np.float64 else np.float32, "sr")
        sr = sr.copy()
    lr = _check_image(lr, sr.dtype, "lr")
    if lr.shape[0] > sr.shape[0] or lr.shape[1] > sr.shape[1]:
        raise UserError(f"lr {lr.shape[:2]} must not be larger than sr {sr.shape[:2]}")
    for _ in range(iters):
        diff = _resize(sr, shape=lr.shape[:2], kernel=kernel)
        np.subtract(lr, diff, out=diff)
        _add_upscaled(sr, diff)
    np.clip(sr, 0.0, 1.0, out=sr)
    return sr


_STRIP = 256  # output rows per strip of the column pass in _add_upscaled


def _add_upscaled(dst, small):
    """dst += bicubic resize of ``small`` to dst's size, without a full-size temporary.

    The resize is separable: the row pass is done whole (dst's height x small's width), the
    column pass strip by strip, each strip added into ``dst`` at once. The same linear map
    as one ``resize(small, shape=dst.shape[:2])`` (rounding may differ in the last bit:
    MATLAB's order does the axis with the smaller factor first)."""
    H, W = dst.shape[:2]
    rows = _resize(small, shape=(H, small.shape[1])) if small.shape[0] != H else small
    if small.shape[1] == W:
        dst += rows
        return
    for a in range(0, H, _STRIP):
        b = min(H, a + _STRIP)
        dst[a:b] += _resize(rows[a:b], shape=(b - a, W))


# --------------------------------------------------------------------------- the loop


def super_resolve(net, lr, scale=None, size=None, steps=1, ensemble=True, back_projection=2,
                  tile=None, kernel=None, progress=None, max_memory=None, transforms=None):
    """Upscale ``lr`` step by step: bicubic, network, back-projection, per step.

    Parameters
    ----------
    net : engine.Network, trained on ``lr``
    lr : ndarray (h, w, 3), float in [0, 1]
    scale, size, steps : the schedule, see :func:`scale_schedule`.
    ensemble : bool, the 8-transform median (:func:`apply_network`).
    transforms : the ensemble's transforms instead of all 8 (:func:`apply_network`).
    back_projection : int, back-projection iterations per step (0: none).
    tile : int or None, see :func:`apply_network`.
    kernel : None or a 2-D blur kernel for back-projection's downscale (None: bicubic).
    progress : callable(i, n) or None, called when step i (0-based) of n is done.
    max_memory : bytes or None. When given, each step's tile is the largest (at most
        ``tile``) whose estimated peak memory fits (engine.memory); a UserError with the
        figures when even small tiles do not fit. Checked for every step before any work.

    Returns
    -------
    ndarray float32 (H, W, 3), clipped to [0, 1], H x W the schedule's last size.
    """
    cur = _check_image(lr, net.dtype, "lr")
    schedule = scale_schedule(cur.shape[:2], scale=scale, size=size, steps=steps)
    back_projection = int(back_projection or 0)
    if back_projection < 0:
        raise UserError(f"back-projection iterations must be >= 0, got {back_projection}")
    n = len(schedule)
    tiles = [tile] * n
    if max_memory is not None:
        from .memory import choose_tile

        prev = cur.shape[:2]
        for i, hw in enumerate(schedule):
            tiles[i] = choose_tile(net, prev, hw, tile, ensemble, max_memory)
            prev = hw
    for i, hw in enumerate(schedule):
        with phase("upscale: bicubic"):
            up = _resize(cur, shape=hw)
        with phase("upscale: network"):
            exact = K.inference_precision(hw[0] * hw[1]) == "float32"  # bfloat16 for large results only
            out = apply_network(net, up, ensemble=ensemble, tile=tiles[i], transforms=transforms, exact=exact)
        del up
        if back_projection:
            with phase("upscale: back-projection"):
                out = back_project(out, cur, back_projection, kernel, inplace=True)
        else:
            np.clip(out, 0.0, 1.0, out=out)
        cur = out
        if progress is not None:
            progress(i, n)
    return cur.astype(np.float32, copy=False)


def bicubic(lr, scale=None, size=None):
    """The bicubic baseline: one MATLAB-style bicubic resize to the final size, clipped."""
    lr = _check_image(lr, np.float32, "lr")
    hw = scale_schedule(lr.shape[:2], scale=scale, size=size, steps=1)[-1]
    out = _resize(lr, shape=hw)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def seed_loop(net, lr, scale=None, size=None, steps=1, ensemble=False, back_projection=0, tile=None, kernel=None,
              progress=None, max_memory=None, transforms=None):
    """The seed preset's test loop, exactly as its report: the network first sharpens ``lr``
    itself (no upscaling, no back-projection), then :func:`super_resolve` repeats (bicubic
    up, network) ``steps`` times until the wanted size: ``steps + 1`` passes in all.

    Parameters and result as :func:`super_resolve`; ``progress(i, n)`` counts the first
    pass too (n = steps + 1)."""
    cur = _check_image(lr, net.dtype, "lr")
    n = len(scale_schedule(cur.shape[:2], scale=scale, size=size, steps=steps)) + 1  # bad sizes fail first
    t = tile
    if max_memory is not None:
        from .memory import choose_tile

        t = choose_tile(net, cur.shape[:2], cur.shape[:2], tile, ensemble, max_memory)
    with phase("upscale: network"):
        first = apply_network(net, cur, ensemble=ensemble, tile=t, transforms=transforms)
    np.clip(first, 0.0, 1.0, out=first)
    if progress is not None:
        progress(0, n)
    return super_resolve(net, first, scale=scale, size=size, steps=steps, ensemble=ensemble,
                         back_projection=back_projection, tile=tile, kernel=kernel, max_memory=max_memory,
                         progress=None if progress is None else (lambda i, _n: progress(i + 1, n)),
                         transforms=transforms)
