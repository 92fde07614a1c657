"""The register tiles are built for the CPU's vector width: whole on AVX-512 (32 registers of
16 float32), cut into pieces on AVX2 (16 registers of 8). Both forms must give bitwise the
same results, every element being summed in the same order. This runs the convolutions
with the other width forced (ZSSR_VECTOR_BITS, in a child process with its own Numba cache)
and compares them with this process's, element for element."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from zssr.engine import conv3x3_backward, conv3x3_forward
from zssr.engine._numba import NATIVE_BITS

# (pixels, Cin, Cout, algorithm): the 64 -> 64 layers on each algorithm, the thin first and
# last layers (3 -> 64 direct, 64 -> 3 on the dot tiles), channel counts that are not 16k
CASES = [((9, 11), 64, 64, "direct"), ((9, 11), 64, 64, "winograd"), ((10, 13), 64, 64, "winograd4"),
         ((7, 9), 3, 64, "direct"), ((7, 9), 64, 3, "direct"), ((5, 6), 5, 20, "direct")]

SCRIPT = r"""
import sys
import numpy as np
from zssr.engine._numba import NATIVE_BITS
sys.path.insert(0, sys.argv[2])
from test_vector_width import CASES, compute
assert NATIVE_BITS == int(sys.argv[3]), NATIVE_BITS
np.savez(sys.argv[1], **compute())
"""


def compute():
    out = {}
    for i, (shape, ci, co, alg) in enumerate(CASES):
        for dtype in (np.float32, np.float64):
            rng = np.random.default_rng(i)
            x = rng.standard_normal(shape + (ci,)).astype(dtype)
            w = (rng.standard_normal((3, 3, ci, co)) / np.sqrt(9 * ci)).astype(dtype)
            b = rng.standard_normal(co).astype(dtype)
            dy = rng.standard_normal(shape + (co,)).astype(dtype)
            key = f"{i}_{np.dtype(dtype).name}"
            out[key + "_y"] = conv3x3_forward(x, w, b, relu=True, algorithm=alg)
            out[key + "_dx"], out[key + "_dw"], out[key + "_db"] = conv3x3_backward(x, w, dy, algorithm=alg)
    return out


def test_both_vector_widths_give_bitwise_the_same_results(tmp_path, request):
    other = 256 if NATIVE_BITS == 512 else 512
    cache = request.config.cache.mkdir(f"numba-vector-{other}")  # kept between runs: compiled once
    env = dict(os.environ, ZSSR_VECTOR_BITS=str(other), NUMBA_CACHE_DIR=str(cache))
    path = tmp_path / "other.npz"
    here = str(Path(__file__).resolve().parent)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(path), here, str(other)], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = np.load(path)
    ours = compute()
    assert sorted(theirs.files) == sorted(ours)
    for key, want in ours.items():
        assert theirs[key].dtype == want.dtype and np.array_equal(theirs[key], want), key
