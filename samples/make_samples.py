"""Regenerate the sample images in this folder from scikit-image's bundled data.

Each sample is a crop of one of ``skimage.data``'s colour photographs, downscaled x1/2 with
Pillow's LANCZOS filter and saved as an 8-bit RGB PNG. The crop boxes are
``(left, top, right, bottom)`` in pixels of the original image (right and bottom exclusive),
as Pillow's ``Image.crop`` takes them. Where each photograph comes from and its licence:
see README.md next to this script.

Usage::

    python samples/make_samples.py            # rewrite the PNGs next to this script
    python samples/make_samples.py --check    # exit 1 if a PNG differs from what it would write
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

# name: (skimage.data function, crop box (left, top, right, bottom), output size (width, height))
SAMPLES = {
    # Chelsea the cat (300 x 451): the face, both eyes, whiskers, striped fur.
    "chelsea": ("chelsea", (25, 0, 425, 300), (200, 150)),
    # Eileen Collins (512 x 512): face, hair, helmet ring, mission patch, flag, shuttle model.
    "astronaut": ("astronaut", (48, 0, 448, 400), (200, 200)),
    # Coffee cup (400 x 600): ellipses, spoon highlights, wood grain.
    "coffee": ("coffee", (100, 0, 500, 400), (200, 200)),
}


def make(name: str) -> np.ndarray:
    """The sample ``name`` as an H x W x 3 uint8 array."""
    func, box, size = SAMPLES[name]
    image = Image.fromarray(getattr(skimage.data, func)()).convert("RGB")
    image = image.crop(box)
    if image.size != size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    check = "--check" in argv
    here = Path(__file__).resolve().parent
    status = 0
    for name in SAMPLES:
        pixels = make(name)
        path = here / f"{name}.png"
        if check:
            same = path.exists() and np.array_equal(np.asarray(Image.open(path)), pixels)
            print(f"{path.name}: {'ok' if same else 'DIFFERS'}")
            status |= not same
        else:
            tmp = path.with_suffix(".png.tmp")
            Image.fromarray(pixels).save(tmp, format="PNG")
            tmp.replace(path)
            h, w = pixels.shape[:2]
            print(f"wrote {path.name} ({w}x{h})")
    return status


if __name__ == "__main__":
    sys.exit(main())
