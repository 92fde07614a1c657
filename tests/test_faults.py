"""Faults: a process killed mid-write, a full disk, NaN pixels, an enormous header, folders
where files are expected, and inputs that must never change."""
import errno
import os
import select
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

import zssr.engine.io as eio
from zssr.engine import checkpoint
from zssr.engine.network import Network

FAST = ["--iters", "3", "--crop", "16"]


def one_line_error(code, stderr):
    assert code == 2, stderr
    assert stderr.startswith("zssr: error:") and stderr.count("\n") == 1, stderr
    assert "Traceback" not in stderr


def tiny_net(seed):
    return Network(width=4, depth=2, seed=seed)


def same_params(a, b):
    return len(a.params) == len(b.params) and all(np.array_equal(p, q) for p, q in zip(a.params, b.params))


# --------------------------------------------------------------------------- killed mid-write

CHILD = r"""
import io, os, sys
import numpy as np
from zssr.engine import checkpoint
from zssr.engine.network import Network

real_savez = np.savez

def slow_savez(f, **arrays):
    buf = io.BytesIO()
    real_savez(buf, **arrays)
    data = buf.getvalue()
    f.write(data[: len(data) // 2])  # half of the new checkpoint is on disk...
    f.flush()
    os.fsync(f.fileno())
    os.write(1, b"M")                # ...tell the parent...
    sys.stdin.buffer.read(1)         # ...and wait here until it kills us

np.savez = slow_savez
checkpoint.save(sys.argv[1], Network(width=4, depth=2, seed=2), {"which": "new"}, force=True)
os.write(1, b"X")  # not reached
"""


def test_sigkill_while_saving_a_checkpoint_keeps_the_previous_one(tmp_path, run_cli, small_rgb):
    path = tmp_path / "model.npz"
    old = tiny_net(1)
    checkpoint.save(path, old, {"which": "old"})
    before = path.read_bytes()

    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 120)  # bounded, blocking wait
        assert ready, "the child never reached the middle of its write"
        marker = os.read(proc.stdout.fileno(), 1)
        assert marker == b"M", (marker, proc.stderr.read().decode())
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        for f in (proc.stdin, proc.stdout, proc.stderr):
            f.close()

    assert path.read_bytes() == before
    net, meta, _ = checkpoint.load(path)
    assert meta["which"] == "old" and same_params(net, old)
    # the child really was mid-write: its half-written temporary file is left behind, under
    # a hidden temporary name, never the target's
    leftovers = [p for p in tmp_path.iterdir() if p not in (path, small_rgb)]
    assert leftovers, "no partial file: the child was not killed in the middle of the write"
    for p in leftovers:
        assert p.name.startswith(f".model.npz.tmp-{proc.pid}-"), p.name
    # the next run that writes model.npz removes the dead writer's temporary file
    other = tmp_path / ".other.npz.tmp-1-x.npz"
    other.write_bytes(b"another name's: not ours to remove")
    code, _, stderr = run_cli("train", small_rgb, "-o", path, *FAST, "--force")
    assert code == 0, stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, "model.npz", "small.png"]


# --------------------------------------------------------------------------- disk full


def write_then_disk_full(tmp, *args, **kwargs):
    if hasattr(tmp, "write"):  # numpy.savez(file object, ...)
        tmp.write(b"PK partial")
        tmp.flush()
    else:  # engine.io._write_pixels(path, ...)
        Path(tmp).write_bytes(b"\x89PNG partial")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_writing_the_upscaled_image(run_cli, small_rgb, tmp_path, monkeypatch):
    out = tmp_path / "out.png"
    out.write_bytes(b"the previous result")
    src = small_rgb.read_bytes()
    monkeypatch.setattr(eio, "_write_pixels", write_then_disk_full)
    code, _, stderr = run_cli("upscale", small_rgb, "-o", out, *FAST, "--force")
    one_line_error(code, stderr)
    assert "No space left on device" in stderr and str(out) in stderr
    assert out.read_bytes() == b"the previous result"
    assert small_rgb.read_bytes() == src  # the input is untouched after a failing run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png", "small.png"]


def test_disk_full_writing_the_model(run_cli, small_rgb, tmp_path, monkeypatch):
    out = tmp_path / "m.npz"
    checkpoint.save(out, tiny_net(1), {"which": "old"})
    before = out.read_bytes()
    monkeypatch.setattr(np, "savez", write_then_disk_full)
    code, _, stderr = run_cli("train", small_rgb, "-o", out, *FAST, "--force")
    one_line_error(code, stderr)
    assert "No space left on device" in stderr and str(out) in stderr
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz", "small.png"]


# --------------------------------------------------------------------------- bad pixels, huge headers


def test_nan_pixel_in_a_float_tiff_is_refused(run_cli, tmp_path):
    import tifffile

    img = np.random.default_rng(0).random((40, 48, 3), dtype=np.float32)
    img[7, 9, 1] = np.nan
    src = tmp_path / "nan.tif"
    tifffile.imwrite(src, img, photometric="rgb")
    before = src.read_bytes()
    out = tmp_path / "m.npz"
    code, _, stderr = run_cli("train", src, "-o", out, *FAST)
    one_line_error(code, stderr)
    assert "NaN" in stderr and str(src) in stderr
    assert not out.exists()
    assert src.read_bytes() == before


def png_header_only(path, width, height):
    """A PNG whose IHDR claims width x height, with one row of real data: decoding it would
    need width * height pixels, reading its size needs 33 bytes."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" + bytes(3 * width))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("side,words", [
    (12000, "over the limit"),  # 144 M pixels: over zssr's limit of 100 M
    (40000, "decompression bomb"),  # 1.6 G pixels: over Pillow's bomb limit too
])
def test_enormous_header_is_refused_before_decoding(run_cli, tmp_path, monkeypatch, side, words):
    src = png_header_only(tmp_path / "huge.png", side, side)
    decoded = []
    real_decode = eio._decode

    def spy(*args, **kwargs):
        decoded.append(args)
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(eio, "_decode", spy)
    out = tmp_path / "out.png"
    code, _, stderr = run_cli("upscale", src, "-o", out, *FAST)
    one_line_error(code, stderr)
    assert words in stderr and str(src) in stderr
    assert decoded == []
    assert not out.exists()


# --------------------------------------------------------------------------- folders for files


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "model.npz"
    checkpoint.save(path, tiny_net(3), {})
    return path


def test_folder_where_a_file_is_expected(run_cli, small_rgb, model, tmp_path):
    folder = tmp_path / "pics"
    folder.mkdir()
    (folder / "a.png").write_bytes(small_rgb.read_bytes())
    cases = {
        "train DIR": ("train", folder, "-o", tmp_path / "m.npz", *FAST),
        "train --resume DIR": ("train", small_rgb, "-o", tmp_path / "m.npz", *FAST, "--resume", folder),
        "train --kernel DIR": ("train", small_rgb, "-o", tmp_path / "m.npz", *FAST, "--kernel", folder),
        "infer DIR": ("infer", folder, "-m", model, "-o", tmp_path / "sr.png", "--scale", "2"),
        "infer -m DIR": ("infer", small_rgb, "-m", folder, "-o", tmp_path / "sr.png", "--scale", "2"),
        "upscale -o DIR": ("upscale", small_rgb, "-o", folder, *FAST),
        "eval FILE": ("eval", small_rgb, "--iters", "3"),
    }
    for name, args in cases.items():
        code, _, stderr = run_cli(*args)
        assert code == 2, (name, stderr)
        assert stderr.startswith("zssr: error:") and stderr.count("\n") == 1, (name, stderr)
        assert "folder" in stderr, (name, stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz", "pics", "small.png"]
    assert [p.name for p in folder.iterdir()] == ["a.png"]


# --------------------------------------------------------------------------- the input never changes


def test_input_unchanged_after_failing_and_successful_runs(run_cli, small_rgb, tmp_path):
    before = small_rgb.read_bytes()
    out = tmp_path / "out.png"
    # failing: the input as its own output, and a bad option after the input was read
    code, _, stderr = run_cli("upscale", small_rgb, "-o", small_rgb, *FAST, "--force")
    one_line_error(code, stderr)
    assert small_rgb.read_bytes() == before
    code, _, stderr = run_cli("upscale", small_rgb, "-o", out, *FAST, "--steps", "0")
    assert code == 2 and not out.exists(), stderr
    assert small_rgb.read_bytes() == before
    # successful
    code, _, stderr = run_cli("upscale", small_rgb, "-o", out, *FAST, "--no-ensemble", "--back-projection", "2")
    assert code == 0, stderr
    assert out.exists() and small_rgb.read_bytes() == before
    model = tmp_path / "m.npz"
    assert run_cli("train", small_rgb, "-o", model, *FAST)[0] == 0
    assert run_cli("infer", small_rgb, "-m", model, "-o", tmp_path / "sr.png", "-s", "2", "--no-ensemble")[0] == 0
    assert small_rgb.read_bytes() == before
