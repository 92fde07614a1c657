"""The evaluation protocol over a folder: make_lr, evaluate_folder, format_table."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zssr.engine import metrics
from zssr.engine.errors import UserError
from zssr.engine.evaluate import evaluate_folder, format_table, list_images, make_lr
from zssr.engine.infer import bicubic
from zssr.engine.kernels.resize import resize

SET5 = Path(__file__).resolve().parents[1].parent / "shared/data/Set5"


def write_pngs(folder, names=("b.png", "a.png"), h=24, w=20):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    for i, name in enumerate(names):
        smooth = 127 + 60 * np.sin((yy + 2 * i) / 4.0)[..., None] * np.cos(xx / 5.0)[..., None]
        img = np.clip(smooth + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / name)
    return folder


# ----------------------------------------------------------------------------- make_lr


def test_make_lr_crops_and_quantises():
    hr = np.random.default_rng(1).random((25, 31, 3)).astype(np.float32)
    hr_c, lr = make_lr(hr, 3)
    assert hr_c.shape == (24, 30, 3) and lr.shape == (8, 10, 3)
    assert np.array_equal(hr_c, hr[:24, :30])
    assert lr.dtype == np.float32
    assert np.array_equal(lr, metrics.quantize(lr))  # on the uint8 grid
    np.testing.assert_allclose(lr, resize(hr_c, scale=1 / 3), atol=0.5 / 255 + 1e-6)


def test_make_lr_bad_scale():
    hr = np.zeros((8, 8, 3), np.float32)
    for s in (0, 1.5, -2):
        with pytest.raises(UserError):
            make_lr(hr, s)


# ----------------------------------------------------------------------------- folders


def test_list_images_sorted_and_filtered(tmp_path):
    write_pngs(tmp_path)
    (tmp_path / "notes.txt").write_text("not an image")
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.png"]


def test_missing_or_empty_folder(tmp_path):
    with pytest.raises(UserError):
        evaluate_folder(tmp_path / "nope", 2, bicubic)
    with pytest.raises(UserError):
        evaluate_folder(tmp_path, 2, bicubic)  # empty
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(UserError):
        evaluate_folder(tmp_path, 2, bicubic)
    with pytest.raises(UserError):
        evaluate_folder(tmp_path / "readme.txt", 2, bicubic)  # a file, not a folder


def test_evaluate_folder_bicubic_equals_baseline(tmp_path):
    folder = write_pngs(tmp_path / "set")
    seen = []
    result = evaluate_folder(folder, 2, bicubic, progress=lambda name, i, n: seen.append((name, i, n)))
    assert seen == [("a.png", 0, 2), ("b.png", 1, 2)]
    rows = result["rows"]
    assert [r["name"] for r in rows] == ["a.png", "b.png"]
    for r in rows:
        assert (r["h"], r["w"]) == (24, 20)
        assert r["psnr"] == r["bicubic_psnr"]
        assert r["ssim"] == r["bicubic_ssim"]
        assert 10 < r["psnr"] < 60 and 0 < r["ssim"] <= 1
        assert r["seconds"] >= 0
    mean = result["mean"]
    for k in ("bicubic_psnr", "bicubic_ssim", "psnr", "ssim", "seconds"):
        assert mean[k] == pytest.approx(np.mean([r[k] for r in rows]))
    table = format_table(result)
    assert "a.png" in table and "b.png" in table and "mean" in table
    assert f"{mean['psnr']:.2f}" in table


def test_evaluate_folder_wrong_output_size(tmp_path):
    folder = write_pngs(tmp_path / "set", names=("a.png",))
    with pytest.raises(UserError):
        evaluate_folder(folder, 2, lambda lr, s: lr)


def test_format_table_aligned():
    rows = [dict(name="long_name.png", h=24, w=20, bicubic_psnr=30.0, bicubic_ssim=0.9,
                 psnr=31.5, ssim=0.91, seconds=1.25),
            dict(name="x.png", h=100, w=120, bicubic_psnr=28.123, bicubic_ssim=0.8,
                 psnr=29.0, ssim=0.85, seconds=12.0)]
    mean = {k: float(np.mean([r[k] for r in rows]))
            for k in ("bicubic_psnr", "bicubic_ssim", "psnr", "ssim", "seconds")}
    lines = format_table(dict(rows=rows, mean=mean)).splitlines()
    assert lines[0].startswith("image")
    assert lines[2].startswith("long_name.png") and "24x20" in lines[2] and "31.50" in lines[2]
    assert lines[-1].startswith("mean") and "30.25" in lines[-1]
    # numbers right-aligned: the rows (not the rules) end in the same column
    body = [ln for ln in lines if not ln.startswith("-")]
    assert len({len(ln) for ln in body}) == 1


# ----------------------------------------------------------------------------- the protocol


@pytest.mark.skipif(not SET5.is_dir(), reason="shared Set5 data not present")
def test_set5_bicubic_x2_protocol():
    psnrs = []
    for path in sorted(SET5.glob("*.png")):
        hr = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
        hr, lr = make_lr(hr, 2)
        psnrs.append(metrics.psnr_y(resize(lr, shape=hr.shape[:2]), hr, 2))
    assert len(psnrs) == 5
    assert 33.66 <= float(np.mean(psnrs)) <= 33.69
