"""engine.io: every readable mode, EXIF orientation, bad files, atomic and guarded writes."""
from __future__ import annotations

import errno
import os
import stat
import struct
import zlib
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageOps

from zssr.engine import io as eio
from zssr.engine.errors import UserError
from zssr.engine.io import atomic_write, load_image, save_image

RNG = np.random.default_rng(1234)
U8 = (RNG.random((6, 9, 3)) * 255).round().astype(np.uint8)
U16 = (RNG.random((6, 9, 3)) * 65535).round().astype(np.uint16)
A8 = (RNG.random((6, 9)) * 255).round().astype(np.uint8)
A16 = (RNG.random((6, 9)) * 65535).round().astype(np.uint16)


def f8(a):
    return a.astype(np.float64) / 255.0


def f16(a):
    return a.astype(np.float64) / 65535.0


def assert_image(im, mode, depth, rgb, alpha=None, atol=1e-7):
    assert im.mode == mode and im.bit_depth == depth
    assert im.rgb.dtype == np.float32 and im.rgb.ndim == 3 and im.rgb.shape[2] == 3
    assert im.rgb.flags.c_contiguous
    rgb = np.asarray(rgb, np.float64)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    np.testing.assert_allclose(im.rgb, rgb, atol=atol, rtol=0)
    if alpha is None:
        assert im.alpha is None
    else:
        assert im.alpha.dtype == np.float32 and im.alpha.shape == im.rgb.shape[:2]
        np.testing.assert_allclose(im.alpha, alpha, atol=atol, rtol=0)


def listing(folder):
    return sorted(os.listdir(folder))


# --------------------------------------------------------------------------- naive PNG encoder


def naive_png(path, samples, depth):
    """A PNG with the row filter cycling through all five types, written by plain loops."""
    if samples.ndim == 2:
        samples = samples[:, :, None]
    h, w, c = samples.shape
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    nb = depth // 8
    bpp = c * nb
    rows = []
    for y in range(h):
        row = bytearray()
        for x in range(w):
            for ch in range(c):
                row += int(samples[y, x, ch]).to_bytes(nb, "big")
        rows.append(bytes(row))
    out = bytearray()
    for y, row in enumerate(rows):
        prior = rows[y - 1] if y > 0 else bytes(len(row))
        ft = y % 5
        out.append(ft)
        for i, v in enumerate(row):
            a = row[i - bpp] if i >= bpp else 0
            b = prior[i]
            cc = prior[i - bpp] if i >= bpp else 0
            if ft == 0:
                pred = 0
            elif ft == 1:
                pred = a
            elif ft == 2:
                pred = b
            elif ft == 3:
                pred = (a + b) // 2
            else:
                p = a + b - cc
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - cc)
                pred = a if (pa <= pb and pa <= pc) else (b if pb <= pc else cc)
            out.append((v - pred) % 256)

    def chunk(t, body):
        return struct.pack(">I", len(body)) + t + body + struct.pack(">I", zlib.crc32(t + body))

    data = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(bytes(out)))
        + chunk(b"IEND", b"")
    )
    Path(path).write_bytes(data)
    return data


# --------------------------------------------------------------------------- loading: modes


def test_load_grey_png(tmp_path):
    p = tmp_path / "g.png"
    PILImage.fromarray(U8[:, :, 0]).save(p)
    im = load_image(p)
    assert_image(im, "L", 8, f8(U8[:, :, 0]))
    assert im.path == p and im.shape == (6, 9)


def test_load_grey_alpha_png(tmp_path):
    p = tmp_path / "la.png"
    PILImage.fromarray(np.stack([U8[:, :, 1], A8], axis=2), mode="LA").save(p)
    assert_image(load_image(p), "LA", 8, f8(U8[:, :, 1]), f8(A8))


def test_load_rgb_and_rgba_png(tmp_path):
    PILImage.fromarray(U8).save(tmp_path / "c.png")
    assert_image(load_image(tmp_path / "c.png"), "RGB", 8, f8(U8))
    PILImage.fromarray(np.dstack([U8, A8]), mode="RGBA").save(tmp_path / "ca.png")
    assert_image(load_image(tmp_path / "ca.png"), "RGBA", 8, f8(U8), f8(A8))


def test_load_palette_png(tmp_path):
    pal = PILImage.fromarray(U8).convert("P", palette=PILImage.Palette.ADAPTIVE, colors=7)
    pal.save(tmp_path / "p.png")
    expected = np.asarray(pal.convert("RGB"))
    assert_image(load_image(tmp_path / "p.png"), "RGB", 8, f8(expected))
    # with a transparent palette entry -> RGBA
    index = np.asarray(pal)
    pal.save(tmp_path / "pt.png", transparency=int(index[0, 0]))
    im = load_image(tmp_path / "pt.png")
    assert_image(im, "RGBA", 8, f8(expected), (index != index[0, 0]).astype(np.float64))


def test_load_one_bit_png(tmp_path):
    bits = U8[:, :, 0] > 127
    PILImage.fromarray(bits).save(tmp_path / "b.png")
    assert_image(load_image(tmp_path / "b.png"), "L", 8, bits.astype(np.float64))


def test_load_16bit_grey_png(tmp_path):
    PILImage.fromarray(U16[:, :, 0]).save(tmp_path / "g16.png")
    assert PILImage.open(tmp_path / "g16.png").mode.startswith("I;16")
    assert_image(load_image(tmp_path / "g16.png"), "L", 16, f16(U16[:, :, 0]))


@pytest.mark.parametrize("channels,mode", [(2, "LA"), (3, "RGB"), (4, "RGBA")])
def test_load_16bit_colour_png_all_filters(tmp_path, channels, mode):
    samples = np.dstack([U16, A16])[:, :, :channels] if channels > 2 else np.dstack([U16[:, :, 0], A16])
    p = tmp_path / f"c16_{channels}.png"
    naive_png(p, samples, 16)
    im = load_image(p)
    rgb = samples[:, :, 0] if channels == 2 else samples[:, :, :3]
    alpha = f16(samples[:, :, -1]) if channels in (2, 4) else None
    assert_image(im, mode, 16, f16(rgb), alpha)


def test_png_decoder_matches_pillow_on_8bit(tmp_path):
    # Pillow chooses row filters adaptively: another, independent source of filtered rows
    y, x = np.mgrid[0:40, 0:50]
    smooth = np.dstack([(x * 5) % 256, (y * 3 + x) % 256, (x * y) % 256]).astype(np.uint8)
    noisy = np.clip(smooth.astype(int) + (RNG.random((40, 50, 3)) * 20).astype(int), 0, 255).astype(np.uint8)
    PILImage.fromarray(noisy).save(tmp_path / "n.png")
    assert_image(load_image(tmp_path / "n.png"), "RGB", 8, f8(np.asarray(PILImage.open(tmp_path / "n.png"))))
    naive_png(tmp_path / "n8.png", noisy, 8)
    assert_image(load_image(tmp_path / "n8.png"), "RGB", 8, f8(noisy))


@pytest.mark.parametrize("channels,mode", [(1, "L"), (2, "LA"), (3, "RGB"), (4, "RGBA")])
@pytest.mark.parametrize("depth", [8, 16])
def test_png_written_is_read_back_by_an_independent_decoder(tmp_path, channels, mode, depth):
    # zssr writes PNG with libpng; the naive decoder below (zlib + the five row filters)
    # reads it back exactly, in every mode and bit depth
    maxv = 255 if depth == 8 else 65535
    rgb = (U16 / 65535.0) if channels > 2 else np.repeat((U16[:, :, :1] / 65535.0), 3, axis=2)
    alpha = A16 / 65535.0 if channels in (2, 4) else None
    p = tmp_path / "w.png"
    save_image(p, rgb, alpha=alpha, mode=mode, bit_depth=depth)
    want = np.round(np.dstack([rgb[:, :, :1] if channels <= 2 else rgb] + ([alpha] if alpha is not None else [])) * maxv)
    np.testing.assert_array_equal(naive_png_decode(p), want)


def naive_png_decode(path):
    """(H, W, C) samples of a non-interlaced 8/16-bit grey/RGB/(grey|RGB)+alpha PNG, by plain loops."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        n, t = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if t == b"IHDR":
            w, h, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif t == b"IDAT":
            idat += body
        pos += 12 + n
    assert interlace == 0
    c = {0: 1, 4: 2, 2: 3, 6: 4}[colour]
    nb = depth // 8
    bpp, stride = c * nb, w * c * nb
    raw = zlib.decompress(idat)
    rows, prior = [], bytes(stride)
    for y in range(h):
        ft, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, cc = prior[i], (prior[i - bpp] if i >= bpp else 0)
            if ft == 4:
                pp = a + b - cc
                pa, pb, pc = abs(pp - a), abs(pp - b), abs(pp - cc)
                pred = a if (pa <= pb and pa <= pc) else (b if pb <= pc else cc)
            else:
                pred = (0, a, b, (a + b) // 2)[ft]
            line[i] = (line[i] + pred) % 256
        rows.append(bytes(line))
        prior = line
    return np.frombuffer(b"".join(rows), ">u2" if nb == 2 else np.uint8).reshape(h, w, c).astype(np.float64)


def test_load_jpeg_rgb_grey_and_cmyk(tmp_path):
    PILImage.fromarray(U8).save(tmp_path / "c.jpg", quality=90)
    expected = np.asarray(PILImage.open(tmp_path / "c.jpg"))
    assert_image(load_image(tmp_path / "c.jpg"), "RGB", 8, f8(expected))
    PILImage.fromarray(U8[:, :, 0]).save(tmp_path / "g.jpeg")
    expected = np.asarray(PILImage.open(tmp_path / "g.jpeg"))
    assert_image(load_image(tmp_path / "g.jpeg"), "L", 8, f8(expected))
    PILImage.fromarray(U8).convert("CMYK").save(tmp_path / "k.jpg")
    expected = np.asarray(PILImage.open(tmp_path / "k.jpg").convert("RGB"))
    assert_image(load_image(tmp_path / "k.jpg"), "RGB", 8, f8(expected))


def test_load_bmp(tmp_path):
    PILImage.fromarray(U8).save(tmp_path / "c.bmp")
    assert_image(load_image(tmp_path / "c.bmp"), "RGB", 8, f8(U8))
    PILImage.fromarray(U8[:, :, 2]).save(tmp_path / "g.bmp")
    assert_image(load_image(tmp_path / "g.bmp"), "L", 8, f8(U8[:, :, 2]))


def test_load_tiff(tmp_path):
    PILImage.fromarray(U8).save(tmp_path / "c.tif")
    assert_image(load_image(tmp_path / "c.tif"), "RGB", 8, f8(U8))
    PILImage.fromarray(np.dstack([U8, A8]), mode="RGBA").save(tmp_path / "ca.tiff")
    assert_image(load_image(tmp_path / "ca.tiff"), "RGBA", 8, f8(U8), f8(A8))
    PILImage.fromarray(U16[:, :, 0]).save(tmp_path / "g16.tif")
    assert_image(load_image(tmp_path / "g16.tif"), "L", 16, f16(U16[:, :, 0]))
    iio.imwrite(tmp_path / "c16.tif", U16)  # 16-bit RGB, which Pillow reads as 8 bit
    assert_image(load_image(tmp_path / "c16.tif"), "RGB", 16, f16(U16))
    grey = (U16[:, :, 1] / 65535.0).astype(np.float32)
    PILImage.fromarray(grey, mode="F").save(tmp_path / "f.tif")
    assert_image(load_image(tmp_path / "f.tif"), "L", 16, grey, atol=0)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_tiff_orientation_tag_is_applied_like_pillow(tmp_path, orientation):
    import tifffile

    tag = [(274, "H", 1, orientation, True)]
    p8, p16 = tmp_path / f"o{orientation}.tif", tmp_path / f"o{orientation}_16.tif"
    tifffile.imwrite(p8, U8, photometric="rgb", extratags=tag)
    expected = np.asarray(ImageOps.exif_transpose(PILImage.open(p8)))  # Pillow reads the tag itself
    assert_image(load_image(p8), "RGB", 8, f8(expected))
    # 16-bit colour (which only tifffile reads), turned the same way
    tifffile.imwrite(p16, U8.astype(np.uint16) * 257, photometric="rgb", extratags=tag)
    assert_image(load_image(p16), "RGB", 16, f8(expected))


def test_load_gif_first_frame(tmp_path):
    frames = [PILImage.fromarray(np.full((5, 8, 3), v, np.uint8)) for v in ((200, 30, 10), (0, 90, 250))]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=100)
    assert PILImage.open(tmp_path / "a.gif").n_frames == 2
    im = load_image(tmp_path / "a.gif")
    assert_image(im, "RGB", 8, np.broadcast_to(f8(np.array([200, 30, 10])), (5, 8, 3)))


# --------------------------------------------------------------------------- EXIF orientation


def _jpeg_with_orientation(path, orientation):
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    PILImage.fromarray(np.repeat(np.repeat(U8, 2, 0), 2, 1)).save(path, exif=exif, quality=95)


def test_exif_orientation_6_transposes_shape(tmp_path):
    p = tmp_path / "o6.jpg"
    _jpeg_with_orientation(p, 6)
    im = load_image(p)
    assert im.shape == (18, 12)  # stored 12 x 18, shown rotated


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path, orientation):
    p = tmp_path / f"o{orientation}.jpg"
    _jpeg_with_orientation(p, orientation)
    expected = np.asarray(ImageOps.exif_transpose(PILImage.open(p)))
    assert_image(load_image(p), "RGB", 8, f8(expected))


# --------------------------------------------------------------------------- loading: bad input


def _png_header_only(path, w, h):
    def chunk(t, body):
        return struct.pack(">I", len(body)) + t + body + struct.pack(">I", zlib.crc32(t + body))

    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if any pixel decoder is called."""

    def boom(*a, **k):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(eio.iio, "imread", boom)
    monkeypatch.setattr(eio.imagecodecs, "png_decode", boom)
    monkeypatch.setattr(eio.tifffile, "imread", boom)


def _bad_files(tmp_path):
    cases = {}
    cases["missing"] = tmp_path / "nope.png"
    (tmp_path / "folder.png").mkdir()
    cases["folder"] = tmp_path / "folder.png"
    (tmp_path / "empty.png").write_bytes(b"")
    cases["empty"] = tmp_path / "empty.png"
    (tmp_path / "text.png").write_text("this is not an image\n")
    cases["text"] = tmp_path / "text.png"
    PILImage.fromarray(np.repeat(np.repeat(U8, 8, 0), 8, 1)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    cases["truncated png"] = tmp_path / "trunc.png"
    PILImage.fromarray(np.repeat(np.repeat(U8, 8, 0), 8, 1)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])
    cases["truncated jpeg"] = tmp_path / "trunc.jpg"
    data = naive_png(tmp_path / "full16.png", np.repeat(U16, 4, 0), 16)
    (tmp_path / "trunc16.png").write_bytes(data[: len(data) - 40])
    cases["truncated 16-bit png"] = tmp_path / "trunc16.png"
    bad = bytearray(data)
    bad[60] ^= 0xFF  # inside IDAT: checksum mismatch
    (tmp_path / "crc16.png").write_bytes(bytes(bad))
    cases["corrupt 16-bit png"] = tmp_path / "crc16.png"
    nan = np.full((4, 4), 0.5, np.float32)
    nan[1, 2] = np.nan
    PILImage.fromarray(nan, mode="F").save(tmp_path / "nan.tif")
    cases["nan tiff"] = tmp_path / "nan.tif"
    nan3 = np.full((4, 4, 3), 0.5, np.float32)
    nan3[0, 0, 1] = np.inf
    iio.imwrite(tmp_path / "inf3.tif", nan3)
    cases["inf rgb tiff"] = tmp_path / "inf3.tif"
    PILImage.fromarray(np.full((4, 4), 3.0, np.float32), mode="F").save(tmp_path / "big.tif")
    cases["float out of range"] = tmp_path / "big.tif"
    _png_header_only(tmp_path / "bomb.png", 30000, 30000)
    cases["decompression bomb"] = tmp_path / "bomb.png"
    _png_header_only(tmp_path / "huge.png", 12000, 12000)
    cases["over max_pixels"] = tmp_path / "huge.png"
    return cases


BAD = [
    "missing",
    "folder",
    "empty",
    "text",
    "truncated png",
    "truncated jpeg",
    "truncated 16-bit png",
    "corrupt 16-bit png",
    "nan tiff",
    "inf rgb tiff",
    "float out of range",
    "decompression bomb",
    "over max_pixels",
]


@pytest.mark.parametrize("case", BAD)
def test_bad_files_raise_user_error(tmp_path, case):
    path = _bad_files(tmp_path)[case]
    before = listing(tmp_path)
    with pytest.raises(UserError) as info:
        load_image(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg, msg
    assert listing(tmp_path) == before


@pytest.mark.parametrize("case", ["decompression bomb", "over max_pixels"])
def test_size_refused_before_decoding(tmp_path, case, no_decoding):
    path = _bad_files(tmp_path)[case]
    with pytest.raises(UserError, match="pixels|bomb"):
        load_image(path)


def test_max_pixels_and_min_side(tmp_path, no_decoding):
    # PNG 9 x 6: refused from the header alone
    PILImage.fromarray(U8).save(tmp_path / "c.png")
    with pytest.raises(UserError, match="over the limit of 50"):
        load_image(tmp_path / "c.png", max_pixels=50)
    with pytest.raises(UserError, match="at least 7 pixels"):
        load_image(tmp_path / "c.png", min_side=7)


def test_limits_allow_exact_sizes(tmp_path):
    PILImage.fromarray(U8).save(tmp_path / "c.png")
    assert load_image(tmp_path / "c.png", max_pixels=54, min_side=6).shape == (6, 9)


# --------------------------------------------------------------------------- saving: round trips

MODES = ["L", "LA", "RGB", "RGBA"]
RGB_F = RNG.random((7, 10, 3)).astype(np.float32)
ALPHA_F = RNG.random((7, 10)).astype(np.float32)


def _expected(mode, depth):
    m = 255.0 if depth == 8 else 65535.0
    if mode in ("L", "LA"):
        rgb = np.round(RGB_F.mean(axis=2, dtype=np.float64) * m) / m
    else:
        rgb = np.round(RGB_F.astype(np.float64) * m) / m
    alpha = np.round(ALPHA_F.astype(np.float64) * m) / m if mode in ("LA", "RGBA") else None
    return rgb, alpha


@pytest.mark.parametrize("ext", [".png", ".tif"])
@pytest.mark.parametrize("depth", [8, 16])
@pytest.mark.parametrize("mode", MODES)
def test_save_load_round_trip_lossless(tmp_path, ext, depth, mode):
    p = tmp_path / f"out{ext}"
    assert save_image(p, RGB_F, ALPHA_F, mode=mode, bit_depth=depth) == p
    im = load_image(p)
    rgb, alpha = _expected(mode, depth)
    assert_image(im, mode, depth, rgb, alpha)
    # and once more: what was loaded saves to the same samples
    q = tmp_path / f"again{ext}"
    save_image(q, im.rgb, im.alpha, mode=im.mode, bit_depth=im.bit_depth)
    im2 = load_image(q)
    np.testing.assert_array_equal(im2.rgb, im.rgb)
    assert listing(tmp_path) == sorted([p.name, q.name])


@pytest.mark.parametrize("ext", [".bmp", ".gif", ".jpg", ".jpeg"])
@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_save_8bit_formats(tmp_path, ext, mode):
    p = tmp_path / f"out{ext}"
    save_image(p, RGB_F, mode=mode, bit_depth=16)  # 16 bit cannot be held: 8 bit written
    im = load_image(p)
    assert im.bit_depth == 8
    rgb, _ = _expected(mode, 8)
    if ext in (".jpg", ".jpeg"):
        assert im.mode == mode
        # lossy: the same samples as Pillow's own encoder at quality 95, 4:4:4
        data = np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)
        PILImage.fromarray(data).save(tmp_path / f"pil{ext}", quality=95, subsampling=0)
        expected = np.asarray(PILImage.open(tmp_path / f"pil{ext}"))
        assert_image(im, mode, 8, f8(expected))
    elif ext == ".gif":  # palette file: comes back as RGB
        assert im.mode == "RGB"
        assert_image(im, "RGB", 8, rgb)
    else:
        assert_image(im, mode, 8, rgb)


def test_save_rounds_and_clips(tmp_path):
    x = np.array([[[-0.5, 0.5 / 255, 1.2], [1.4 / 255, 1.6 / 255, 254.5 / 255]]], np.float32)
    save_image(tmp_path / "r.png", x)
    got = np.asarray(PILImage.open(tmp_path / "r.png"))
    np.testing.assert_array_equal(got, [[[0, 0, 255], [1, 2, 254]]])  # np.round: half to even


def test_save_grey_from_grey_input(tmp_path):
    grey = np.repeat(RGB_F[:, :, :1], 3, axis=2)
    save_image(tmp_path / "g.png", grey, mode="L")
    pil = PILImage.open(tmp_path / "g.png")
    assert pil.mode == "L"
    np.testing.assert_array_equal(np.asarray(pil), np.round(RGB_F[:, :, 0] * 255).astype(np.uint8))


def test_save_opaque_alpha_when_none(tmp_path):
    save_image(tmp_path / "a.png", RGB_F, None, mode="RGBA")
    im = load_image(tmp_path / "a.png")
    assert im.mode == "RGBA" and np.all(im.alpha == 1.0)


def test_saved_file_permissions_follow_umask(tmp_path):
    p = tmp_path / "perm.png"
    save_image(p, RGB_F)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~eio._umask()


# --------------------------------------------------------------------------- saving: guards


def test_refuses_to_overwrite_without_force(tmp_path):
    p = tmp_path / "out.png"
    save_image(p, RGB_F)
    before = p.read_bytes()
    with pytest.raises(UserError, match="--force"):
        save_image(p, 1.0 - RGB_F)
    assert p.read_bytes() == before
    save_image(p, 1.0 - RGB_F, force=True)
    assert p.read_bytes() != before
    assert listing(tmp_path) == ["out.png"]


def test_protect_wins_over_force(tmp_path, monkeypatch):
    src = tmp_path / "in.png"
    PILImage.fromarray(U8).save(src)
    before = src.read_bytes()
    monkeypatch.chdir(tmp_path)
    for target in (src, "in.png", tmp_path / "sub" / ".." / "in.png"):
        if "sub" in str(target):
            (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(UserError, match="input file"):
            save_image(target, RGB_F, force=True, protect=[src])
    os.symlink(src, tmp_path / "link.png")
    with pytest.raises(UserError, match="input file"):
        save_image(tmp_path / "link.png", RGB_F, force=True, protect=[str(src)])
    assert src.read_bytes() == before


@pytest.mark.parametrize(
    "name,kwargs,words",
    [
        ("out.xyz", {}, "unknown image extension"),
        ("out", {}, "unknown image extension"),
        ("out.jpg", {"mode": "RGBA"}, "transparency"),
        ("out.bmp", {"mode": "LA"}, "transparency"),
        ("out.png", {"mode": "CMYK"}, "mode"),
        ("out.png", {"bit_depth": 12}, "bit_depth"),
        ("missing/out.png", {}, "does not exist"),
    ],
)
def test_save_bad_arguments(tmp_path, name, kwargs, words):
    with pytest.raises(UserError, match=words) as info:
        save_image(tmp_path / name, RGB_F, ALPHA_F, **kwargs)
    assert "\n" not in str(info.value)
    assert listing(tmp_path) == []


def test_save_bad_arrays(tmp_path):
    bad = RGB_F.copy()
    bad[0, 0, 0] = np.nan
    for rgb, alpha, mode, words in [
        (bad, None, "RGB", "NaN"),
        (RGB_F[:, :, :2], None, "RGB", "rgb must be"),
        ((RGB_F * 255).astype(np.uint8), None, "RGB", "float"),
        (RGB_F, ALPHA_F[:3], "RGBA", "alpha must be"),
    ]:
        with pytest.raises(UserError, match=words):
            save_image(tmp_path / "x.png", rgb, alpha, mode=mode)
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(UserError, match="folder"):
        save_image(tmp_path / "dir.png", RGB_F, force=True)
    assert listing(tmp_path) == ["dir.png"]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(UserError, match="cannot write"):
            save_image(ro / "out.png", RGB_F)
    finally:
        ro.chmod(0o700)


# --------------------------------------------------------------------------- atomicity


def test_failed_write_leaves_previous_file_and_no_temp(tmp_path, monkeypatch):
    p = tmp_path / "out.png"
    save_image(p, RGB_F)
    before = p.read_bytes()
    seen = []

    def half_then_disk_full(tmp, data, fmt, depth):
        seen.append(Path(tmp))
        Path(tmp).write_bytes(before[: len(before) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(eio, "_write_pixels", half_then_disk_full)
    with pytest.raises(UserError, match="No space left") as info:
        save_image(p, 1.0 - RGB_F, force=True)
    assert "\n" not in str(info.value)
    assert seen and seen[0].parent == tmp_path and seen[0].suffix == ".png"
    assert seen[0].name.startswith(".out.png.tmp-")
    assert p.read_bytes() == before
    assert listing(tmp_path) == ["out.png"]


def test_bug_in_writer_propagates_and_cleans_up(tmp_path, monkeypatch):
    p = tmp_path / "out.png"

    def broken(tmp, data, fmt, depth):
        Path(tmp).write_bytes(b"partial")
        raise RuntimeError("bug")

    monkeypatch.setattr(eio, "_write_pixels", broken)
    with pytest.raises(RuntimeError, match="bug"):
        save_image(p, RGB_F)
    assert listing(tmp_path) == []


def test_fsync_failure_is_a_user_error(tmp_path, monkeypatch):
    p = tmp_path / "model.bin"
    p.write_bytes(b"old")

    def bad_fsync(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(eio.os, "fsync", bad_fsync)
    with pytest.raises(UserError, match="Input/output error"):
        atomic_write(p, lambda tmp: Path(tmp).write_bytes(b"new"))
    assert p.read_bytes() == b"old"
    assert listing(tmp_path) == ["model.bin"]


def test_atomic_write_helper(tmp_path):
    p = tmp_path / "ckpt.npz"
    names = []

    def writer(tmp):
        names.append(Path(tmp).name)
        np.savez(tmp, w=np.arange(3))

    assert atomic_write(p, writer) == p
    assert names[0].endswith(".npz") and names[0] != "ckpt.npz"
    np.testing.assert_array_equal(np.load(p)["w"], np.arange(3))
    atomic_write(p, lambda tmp: np.savez(tmp, w=np.arange(5)))  # replaces
    np.testing.assert_array_equal(np.load(p)["w"], np.arange(5))
    assert listing(tmp_path) == ["ckpt.npz"]
    with pytest.raises(UserError, match="does not exist"):
        atomic_write(tmp_path / "no" / "x.npz", writer)


def test_check_writable_alone(tmp_path):
    from zssr.engine.io import check_writable

    ckpt = tmp_path / "model.npz"
    check_writable(ckpt)  # new file: fine
    ckpt.write_bytes(b"x")
    with pytest.raises(UserError, match="--force"):
        check_writable(str(ckpt))
    check_writable(ckpt, force=True)
    with pytest.raises(UserError, match="input file"):
        check_writable(ckpt, force=True, protect=[ckpt])
    with pytest.raises(UserError, match="does not exist"):
        check_writable(tmp_path / "no" / "model.npz")
