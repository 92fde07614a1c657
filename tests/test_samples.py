"""The sample images in samples/: present, small RGB uint8 PNGs, each documented in the README."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def sample_files():
    return sorted(p for p in SAMPLES.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def test_there_are_samples():
    files = sample_files()
    assert len(files) >= 2, f"expected at least two sample images in {SAMPLES}"
    assert (SAMPLES / "README.md").is_file()
    assert (SAMPLES / "make_samples.py").is_file()


@pytest.mark.parametrize("path", sample_files(), ids=lambda p: p.name)
def test_sample_is_small_rgb_uint8(path):
    with Image.open(path) as im:
        assert im.mode == "RGB", f"{path.name} is {im.mode}, not RGB"
        pixels = np.asarray(im)
    assert pixels.dtype == np.uint8
    assert pixels.ndim == 3 and pixels.shape[2] == 3
    h, w = pixels.shape[:2]
    assert 96 <= h <= 256 and 96 <= w <= 256, f"{path.name} is {w}x{h}"
    assert pixels.std() > 10, f"{path.name} is nearly flat"


@pytest.mark.parametrize("path", sample_files(), ids=lambda p: p.name)
def test_sample_is_listed_in_readme(path):
    readme = (SAMPLES / "README.md").read_text(encoding="utf-8")
    assert f"`{path.name}`" in readme, f"{path.name} is not described in samples/README.md"


def test_every_sample_the_script_makes_exists():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_samples", SAMPLES / "make_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in module.SAMPLES:
        assert (SAMPLES / f"{name}.png").is_file(), f"samples/{name}.png is missing"
