"""Bicubic x2 upscale of a 2048x2048 RGB float32 image: engine.kernels.resize vs Pillow.

Pillow's float ("F" mode) BICUBIC is applied per channel, which is how one would use it on
an RGB float image. Run explicitly::

    python -m pytest bench/bench_resize.py --benchmark-only -q

The third entry alternates the two sides inside one run and stores the median of the
per-pair ratios (Pillow time / our time) in ``extra_info["ratio_pillow_over_ours"]``.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from zssr.engine.kernels.resize import resize

SIZE = 2048
SCALE = 2
GROUP = "resize-2048-x2"


@pytest.fixture(scope="module")
def image():
    img = np.random.default_rng(0).random((SIZE, SIZE, 3), dtype=np.float32)
    resize(img[:32, :32], SCALE)  # compile (or load from the cache) outside the timing
    return img


def ours(img):
    return resize(img, SCALE)


def pillow(img):
    h, w = img.shape[:2]
    chans = [
        np.asarray(
            Image.fromarray(img[:, :, c], mode="F").resize((w * SCALE, h * SCALE), Image.BICUBIC)
        )
        for c in range(img.shape[2])
    ]
    return np.stack(chans, axis=2)


@pytest.mark.benchmark(group=GROUP)
def test_resize_ours(benchmark, image):
    out = benchmark.pedantic(ours, args=(image,), rounds=5, warmup_rounds=1)
    assert out.shape == (SIZE * SCALE, SIZE * SCALE, 3)


@pytest.mark.benchmark(group=GROUP)
def test_resize_pillow_float_bicubic(benchmark, image):
    out = benchmark.pedantic(pillow, args=(image,), rounds=5, warmup_rounds=1)
    assert out.shape == (SIZE * SCALE, SIZE * SCALE, 3)


@pytest.mark.benchmark(group=GROUP)
def test_resize_alternated_pair(benchmark, image):
    ratios = []

    def pair():
        t0 = time.perf_counter()
        ours(image)
        t1 = time.perf_counter()
        pillow(image)
        t2 = time.perf_counter()
        ratios.append((t2 - t1) / (t1 - t0))

    benchmark.pedantic(pair, rounds=5, warmup_rounds=1)
    ratio = float(np.median(ratios[1:] if len(ratios) > 1 else ratios))
    benchmark.extra_info["ratio_pillow_over_ours"] = round(ratio, 2)
    print(f"\nresize 2048x2048x3 x2: Pillow / ours = {ratio:.2f} (median of alternated pairs)")
    assert ratio > 0
