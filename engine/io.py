"""Image files in and out.

``load_image`` turns PNG, JPEG, BMP, TIFF or GIF (first frame) into float32 H x W x 3 in
[0, 1] plus an optional alpha plane, remembering the file's mode (``L``, ``LA``, ``RGB``,
``RGBA``) and bit depth (8 or 16) so that ``save_image`` can write the result back the same
way. PNG is read and written with libpng (``imagecodecs``: 8 and 16 bit, grey, grey+alpha,
RGB, RGBA; palette, low-bit and tRNS images expanded), which keeps 16-bit colour that Pillow
reduces to 8 bit; TIFF with ``tifffile`` (16-bit and float colour; its Orientation tag
applied) or Pillow for the layouts tifffile leaves raw (palette, CMYK, 1 bit); the other
formats with Pillow (through ``imageio.v3``). EXIF orientation is applied for JPEG and PNG.

Every user mistake raises :class:`engine.errors.UserError` with one line that names the file
and says what to do. Images are sized from the header before any pixel is decoded, so a
decompression bomb is refused cheaply.

Writes are atomic (:func:`atomic_write`): the file is written under a temporary name in the
target folder, flushed to disk, then renamed over the target. On any failure the temporary
file is removed and whatever was at the target before is left untouched.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from dataclasses import dataclass
from glob import escape as glob_escape
from pathlib import Path

import imageio.v3 as iio
import imagecodecs
import numpy as np
import tifffile
from PIL import Image as PILImage

from .errors import UserError

__all__ = [
    "Image",
    "load_image",
    "save_image",
    "check_writable",
    "atomic_write",
    "atomic_path",
    "SAVE_FORMATS",
]


@dataclass
class Image:
    """A loaded image.

    rgb : float32 (H, W, 3) in [0, 1]; grey images have three equal channels.
    alpha : float32 (H, W) in [0, 1], or None.
    mode : the file's mode, one of 'L', 'LA', 'RGB', 'RGBA' (palette images become
        'RGB' or 'RGBA').
    bit_depth : 8 or 16 (16 also for float TIFFs).
    path : where it came from.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    mode: str = "RGB"
    bit_depth: int = 8
    path: Path | None = None

    @property
    def shape(self):
        """(H, W)."""
        return self.rgb.shape[:2]


# --------------------------------------------------------------------------- formats


@dataclass(frozen=True)
class _Format:
    name: str
    alpha: bool  # can hold an alpha channel
    depth16: bool  # can hold 16 bits per sample


SAVE_FORMATS = {
    ".png": _Format("PNG", True, True),
    ".tif": _Format("TIFF", True, True),
    ".tiff": _Format("TIFF", True, True),
    ".jpg": _Format("JPEG", False, False),
    ".jpeg": _Format("JPEG", False, False),
    ".bmp": _Format("BMP", False, False),
    ".gif": _Format("GIF", False, False),
}
"""Extensions ``save_image`` writes, with what each can hold."""

_MODES = ("L", "LA", "RGB", "RGBA")
_JPEG_QUALITY = 95  # with 4:4:4 chroma: an upscaled image should keep its colour detail

# Pillow mode -> mode to convert to before reading pixels (None: read as it is)
_PIL_TARGET = {
    "1": "L",
    "L": None,
    "LA": None,
    "La": "LA",
    "RGB": None,
    "RGBA": None,
    "RGBa": "RGBA",
    "RGBX": "RGB",
    "PA": "RGBA",
    "CMYK": "RGB",
    "YCbCr": "RGB",
    "LAB": "RGB",
    "HSV": "RGB",
    "I": None,
    "I;16": None,
    "I;16B": None,
    "I;16L": None,
    "I;16N": None,
    "F": None,
}

# EXIF orientation -> array transform (what PIL.ImageOps.exif_transpose does)
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
    8: lambda a: np.rot90(a, 1),
}


def _one_line(exc):
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# --------------------------------------------------------------------------- loading


@dataclass
class _Header:
    width: int
    height: int
    mode: str | None  # Pillow's mode, None when Pillow cannot open the file
    format: str | None
    orientation: int = 1
    transparency: bool = False


def _check_readable(p):
    if not p.exists():
        raise UserError(f"{p}: no such file; check the path")
    if p.is_dir():
        raise UserError(f"{p}: is a folder, not an image file; give the path of an image")
    try:
        size = p.stat().st_size
    except OSError as e:
        raise UserError(f"{p}: cannot read ({_one_line(e)}); check its permissions") from None
    if size == 0:
        raise UserError(f"{p}: the file is empty; give a real image file")
    if not os.access(p, os.R_OK):
        raise UserError(f"{p}: not readable; check its permissions")


def _read_header(p):
    """Size and mode from the header only (Pillow's open does not decode pixels)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(p) as im:
                hdr = _Header(im.size[0], im.size[1], im.mode, im.format)
                hdr.transparency = "transparency" in im.info
                if im.format in ("JPEG", "MPO", "WEBP") or (
                    im.format == "PNG" and "exif" in im.info
                ):
                    try:
                        orient = int(im.getexif().get(0x0112, 1))
                    except Exception:  # unreadable EXIF: ignore it, as viewers do
                        orient = 1
                    hdr.orientation = orient if orient in _ORIENT else 1
    except PILImage.DecompressionBombError as e:
        raise UserError(
            f"{p}: refused as a possible decompression bomb ({_one_line(e)}); "
            "use a smaller image"
        ) from None
    except UserError:
        raise
    except Exception as e:
        if p.suffix.lower() in (".tif", ".tiff"):  # TIFF layouts Pillow does not know
            try:
                w, h, orient = _tiff_info(p)
                return _Header(w, h, None, "TIFF", orientation=orient)
            except Exception:
                pass
        raise UserError(
            f"{p}: cannot read it as an image ({_one_line(e)}); the file is damaged, "
            "truncated or not a PNG, JPEG, BMP, TIFF or GIF image"
        ) from None
    if hdr.format == "TIFF" and hdr.mode in _TIFFFILE_MODES:
        # decoded by tifffile: the stored size and the Orientation tag to apply, as it reads
        # them (Pillow, which decodes the other layouts, applies the tag itself)
        with contextlib.suppress(Exception):  # tifffile cannot parse it: Pillow decodes it
            hdr.width, hdr.height, hdr.orientation = _tiff_info(p)
    return hdr


_TIFFFILE_MODES = (None, "RGB", "RGBA", "LA")  # TIFFs read with tifffile (Pillow's mode; None: unknown to Pillow)


def _tiff_info(p):
    """(width, height, orientation) of a TIFF's first page, from tifffile (tags only)."""
    with tifffile.TiffFile(p) as tf:
        page = tf.pages[0]
        shape = page.shape
        if len(shape) == 3 and shape[-1] not in (1, 2, 3, 4) and shape[0] in (1, 2, 3, 4):
            shape = shape[1:]  # planar
        tag = page.tags.get(274)  # Orientation
        orient = int(tag.value) if tag is not None else 1
    return int(shape[1]), int(shape[0]), orient if orient in _ORIENT else 1


def _decode(p, hdr):
    """Pixels as an integer/float array (H, W) or (H, W, C), before orientation."""
    if hdr.format == "PNG":  # libpng: every bit depth and colour type, palette expanded
        try:
            return imagecodecs.png_decode(p.read_bytes())
        except imagecodecs.PngError as e:
            raise UserError(
                f"{p}: cannot decode the image ({_one_line(e)}); the file is damaged or truncated"
            ) from None
    if hdr.format == "TIFF" and hdr.mode in _TIFFFILE_MODES:
        try:  # tifffile keeps 16-bit colour and float colour that Pillow cannot
            arr = tifffile.imread(p, key=0)
            if arr.ndim == 3 and arr.shape[-1] not in (1, 2, 3, 4) and arr.shape[0] in (1, 2, 3, 4):
                arr = np.moveaxis(arr, 0, -1)  # planar -> channels last
            return arr
        except Exception as e:
            if hdr.mode is None:
                raise UserError(
                    f"{p}: cannot decode the TIFF ({_one_line(e)}); save it as PNG or plain TIFF"
                ) from None
            with PILImage.open(p) as im:  # Pillow then: its size, turned by the tag
                hdr.width, hdr.height, hdr.orientation = im.size[0], im.size[1], 1
    if hdr.mode == "P":
        target = "RGBA" if hdr.transparency else "RGB"
    elif hdr.mode in _PIL_TARGET:
        target = _PIL_TARGET[hdr.mode]
    else:
        target = "RGBA" if "A" in (hdr.mode or "") else "RGB"
    return iio.imread(p, plugin="pillow", index=0, mode=target)


def _to_float(p, arr):
    """Integer or float samples -> (float32 array in [0, 1], bit depth)."""
    if arr.dtype == np.bool_:
        return arr.astype(np.float32), 8
    if arr.dtype == np.uint8:
        out = arr.astype(np.float32)
        out /= np.float32(255)
        return out, 8
    if arr.dtype.kind == "u" and arr.dtype.itemsize == 2:
        out = arr.astype(np.float32)
        out /= np.float32(65535)
        return out, 16
    if arr.dtype.kind in "iu":
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo < 0 or hi > 65535:
            raise UserError(
                f"{p}: integer samples outside 0..65535 ({lo}..{hi}); convert it to 8 or 16 bit"
            )
        out = arr.astype(np.float32)
        out /= np.float32(65535)
        return out, 16
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise UserError(f"{p}: the image contains NaN or infinite values; fix or re-export it")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise UserError(
                f"{p}: float samples outside [0, 1] ({lo:.4g}..{hi:.4g}); rescale it to [0, 1]"
            )
        return arr.astype(np.float32), 16
    raise UserError(f"{p}: unsupported sample type {arr.dtype}; convert it to 8 or 16 bit")


def load_image(path, max_pixels=100_000_000, min_side=1) -> Image:
    """Read an image file.

    Parameters
    ----------
    path : str or Path
        PNG, JPEG, BMP, TIFF or GIF (first frame). Grey, grey+alpha, RGB, RGBA and palette
        images, 8 or 16 bits per sample (float TIFFs in [0, 1] too). EXIF orientation is
        applied (JPEG, PNG).
    max_pixels : int
        Refuse images with more pixels than this, judged from the header before decoding.
    min_side : int
        Refuse images with a side shorter than this.

    Returns
    -------
    Image

    Raises
    ------
    UserError
        Missing path, folder, empty, truncated or non-image file, too small, too large,
        NaN samples.
    """
    p = Path(path)
    _check_readable(p)
    hdr = _read_header(p)
    w, h = hdr.width, hdr.height
    if w * h > max_pixels:
        raise UserError(
            f"{p}: {w}x{h} = {w * h:,} pixels is over the limit of {max_pixels:,}; "
            "use a smaller image or raise the limit"
        )
    if min(w, h) < min_side:
        raise UserError(
            f"{p}: {w}x{h} is too small; each side needs at least {min_side} pixels"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            arr = _decode(p, hdr)
    except UserError:
        raise
    except MemoryError:
        raise UserError(f"{p}: not enough memory to decode {w}x{h} pixels; use a smaller image") from None
    except Exception as e:
        raise UserError(
            f"{p}: cannot decode the image ({_one_line(e)}); the file is damaged or truncated"
        ) from None
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    w, h = hdr.width, hdr.height  # a TIFF that tifffile could not decode: Pillow's size
    if arr.ndim != 3 or arr.shape[:2] != (h, w) or not 1 <= arr.shape[2] <= 4:
        raise UserError(
            f"{p}: unexpected pixel layout {arr.shape} for a {w}x{h} image; "
            "save it as a plain grey, RGB or RGBA image"
        )
    if hdr.orientation in _ORIENT:
        arr = _ORIENT[hdr.orientation](arr)
    x, depth = _to_float(p, arr)
    c = x.shape[2]
    mode = _MODES[c - 1]
    if c <= 2:
        rgb = np.repeat(x[:, :, :1], 3, axis=2)
    else:
        rgb = np.ascontiguousarray(x[:, :, :3])
    alpha = np.ascontiguousarray(x[:, :, c - 1]) if c in (2, 4) else None
    return Image(rgb=rgb, alpha=alpha, mode=mode, bit_depth=depth, path=p)


# --------------------------------------------------------------------------- atomic writes


def _umask():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _reason(e):
    return e.strerror or _one_line(e) if isinstance(e, OSError) else _one_line(e)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, under another user
        return True
    return True


def _remove_stale_temporaries(p):
    """Remove ``.NAME.tmp-PID-*`` files next to ``p`` left by a write that was killed (its
    process PID is gone); temporaries of live writers, on this machine, are kept."""
    for q in p.parent.glob(f".{glob_escape(p.name)}.tmp-*"):
        pid = q.name[len(p.name) + 6:].split("-", 1)[0]
        if pid.isdigit() and _alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            q.unlink()


@contextlib.contextmanager
def atomic_path(path):
    """Context manager: yields a temporary path next to ``path``; on a clean exit the
    file written there is flushed to disk and renamed to ``path``. The temporary name is
    hidden and carries the writer's process id (``.NAME.tmp-PID-XXXX``), so that a later
    write of NAME removes what a killed writer left behind.

    On any exception the temporary file is removed and ``path`` is left as it was;
    an ``OSError`` (folder missing or read-only, disk full) becomes a ``UserError``.
    """
    p = Path(path)
    folder = p.parent
    if not folder.is_dir():
        raise UserError(f"cannot write {p}: folder {folder} does not exist; create it first")
    _remove_stale_temporaries(p)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{p.name}.tmp-{os.getpid()}-", suffix=p.suffix)
        os.close(fd)
    except OSError as e:
        raise UserError(
            f"cannot write {p}: {_reason(e)}; check the folder's permissions and free space"
        ) from None
    tmp = Path(tmp_name)
    done = False
    try:
        yield tmp
        try:
            mode = p.stat().st_mode & 0o777 if p.exists() else 0o666 & ~_umask()
            os.chmod(tmp, mode)
        except OSError:
            pass
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, p)
        done = True
        with contextlib.suppress(OSError):  # make the rename itself durable
            dfd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    except OSError as e:
        raise UserError(
            f"cannot write {p}: {_reason(e)}; nothing was changed there "
            "(check free space and permissions)"
        ) from None
    finally:
        if not done:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def atomic_write(path, writer):
    """Write ``path`` atomically: ``writer(tmp_path)`` writes the file under a temporary
    name in the same folder (same extension), then it is fsynced and renamed over ``path``.

    Any failure removes the temporary file and leaves ``path`` untouched; ``OSError``
    becomes ``UserError``. Returns ``Path(path)``.
    """
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


# --------------------------------------------------------------------------- saving


def _same_file(a, b):
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_writable(path, force=False, protect=()):
    """Refuse (``UserError``) to write ``path`` when it is one of ``protect`` (the input
    files; even with ``force``), a folder, an existing file without ``force`` (the message
    names ``--force``), or in a folder that does not exist.
    """
    p = Path(path)
    for q in protect or ():
        if q is not None and _same_file(p, Path(q)):
            raise UserError(f"{p}: is an input file; choose a different output path")
    if p.is_dir():
        raise UserError(f"{p}: is a folder; give an output file name such as {p / 'out.png'}")
    if p.exists() and not force:
        raise UserError(f"{p}: already exists; pass --force to overwrite it")
    if not p.parent.is_dir():
        raise UserError(f"cannot write {p}: folder {p.parent} does not exist; create it first")


def _plane(name, a, h, w):
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim != 2 or a.shape != (h, w):
        raise UserError(f"save_image: {name} must be (H, W) = ({h}, {w}), got shape {a.shape}")
    return a


def _quantize(x, maxv, dtype):
    y = np.clip(x, 0.0, 1.0) * maxv
    np.round(y, out=y)
    return y.astype(dtype)


def save_image(path, rgb, alpha=None, mode="RGB", bit_depth=8, force=False, protect=()):
    """Write an image file atomically.

    Parameters
    ----------
    path : str or Path
        The format comes from the extension: .png, .tif/.tiff, .jpg/.jpeg, .bmp, .gif.
    rgb : float array (H, W, 3) in [0, 1] (or (H, W) grey)
        Clipped to [0, 1] and rounded. For mode 'L'/'LA' the mean of the three channels
        is written (they are equal for a grey input).
    alpha : float array (H, W) in [0, 1], optional
        Written for 'LA'/'RGBA' (opaque when None); ignored for 'L'/'RGB'.
    mode : 'L', 'LA', 'RGB' or 'RGBA'
    bit_depth : 8 or 16
        16 is written as 16-bit PNG/TIFF; formats that cannot hold it get 8 bits.
    force : bool
        Overwrite an existing file.
    protect : iterable of paths
        Files never to overwrite (the inputs), even with ``force``.

    Returns
    -------
    Path
    """
    p = Path(path)
    fmt = SAVE_FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise UserError(
            f"{p}: unknown image extension {p.suffix!r}; use one of "
            + ", ".join(sorted(SAVE_FORMATS))
        )
    if mode not in _MODES:
        raise UserError(f"save_image: mode must be one of {', '.join(_MODES)}, got {mode!r}")
    if bit_depth not in (8, 16):
        raise UserError(f"save_image: bit_depth must be 8 or 16, got {bit_depth!r}")
    has_alpha = mode in ("LA", "RGBA")
    if has_alpha and not fmt.alpha:
        raise UserError(
            f"{p}: {fmt.name} cannot hold transparency; save as .png or .tif, or drop the alpha"
        )
    rgb = np.asarray(rgb)
    if rgb.ndim == 2:
        rgb = rgb[:, :, None]
    if rgb.ndim != 3 or rgb.shape[2] not in (1, 3) or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise UserError(f"save_image: rgb must be (H, W, 3) or (H, W), got shape {rgb.shape}")
    if not np.issubdtype(rgb.dtype, np.floating):
        raise UserError(f"save_image: rgb must be a float array in [0, 1], got {rgb.dtype}")
    h, w = rgb.shape[:2]
    if has_alpha and alpha is not None:
        alpha = _plane("alpha", alpha, h, w)
        if not np.issubdtype(alpha.dtype, np.floating):
            raise UserError(f"save_image: alpha must be a float array in [0, 1], got {alpha.dtype}")
    if not np.all(np.isfinite(rgb)) or (
        has_alpha and alpha is not None and not np.all(np.isfinite(alpha))
    ):
        raise UserError(f"{p}: the image has NaN or infinite values; nothing was written")
    check_writable(p, force, protect)

    depth = 16 if (bit_depth == 16 and fmt.depth16) else 8
    maxv, dtype = (65535.0, np.uint16) if depth == 16 else (255.0, np.uint8)
    if mode in ("L", "LA"):
        grey = rgb[:, :, 0] if rgb.shape[2] == 1 else rgb.mean(axis=2, dtype=np.float64)
        planes = [_quantize(grey, maxv, dtype)]
    else:
        if rgb.shape[2] == 1:
            rgb = np.repeat(rgb, 3, axis=2)
        planes = [_quantize(rgb, maxv, dtype)]
    if has_alpha:
        planes.append(
            np.full((h, w), maxv, dtype) if alpha is None else _quantize(alpha, maxv, dtype)
        )
    if len(planes) == 1:
        data = planes[0]
    else:
        first = planes[0] if planes[0].ndim == 3 else planes[0][:, :, None]
        data = np.concatenate([first, planes[1][:, :, None]], axis=2)

    def writer(tmp):
        _write_pixels(tmp, data, fmt, depth)

    return atomic_write(p, writer)


def _write_pixels(tmp, data, fmt, depth):
    """Write uint8/uint16 samples (H, W) or (H, W, C) to ``tmp`` in ``fmt``."""
    if fmt.name == "PNG":  # libpng, 8 or 16 bit, 1 to 4 channels
        Path(tmp).write_bytes(imagecodecs.png_encode(np.ascontiguousarray(data), level=6))
    elif fmt.name == "TIFF":
        if depth == 16:
            c = 1 if data.ndim == 2 else data.shape[2]
            kw = {"photometric": "minisblack" if c <= 2 else "rgb", "compression": "zlib"}
            if c > 1:
                kw["planarconfig"] = "contig"
            if c in (2, 4):
                kw["extrasamples"] = ["unassalpha"]
            tifffile.imwrite(tmp, data, **kw)
        else:
            iio.imwrite(tmp, data, extension=".tif", plugin="pillow", compression="tiff_deflate")
    elif fmt.name == "JPEG":
        iio.imwrite(
            tmp, data, extension=".jpg", plugin="pillow", quality=_JPEG_QUALITY, subsampling=0
        )
    else:
        iio.imwrite(tmp, data, extension="." + fmt.name.lower(), plugin="pillow")


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif")
"""What counts as an image in a folder (by extension)."""


def list_images(folder):
    """The image files directly in ``folder`` (by extension), sorted by name. A missing
    folder, a file instead of a folder, or a folder without images is a UserError."""
    folder = Path(folder)
    if not folder.exists():
        raise UserError(f"folder {folder} does not exist")
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"{folder} holds no images ({', '.join(s[1:] for s in IMAGE_SUFFIXES)})")
    return files
