"""The whole-job benchmark peer (bench/peer_torch_zssr.py, needs torch) and its driver
(bench/compare_peer.py): the peer's recipe runs and returns the right image; the driver
scores what a contender writes under the evaluation protocol. Nothing here times anything."""
import importlib.util
import json
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from zssr.engine import evaluate, metrics

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_peer_network_is_zssrs():
    pytest.importorskip("torch")
    peer = _load("peer_torch_zssr")
    net = peer.network(0)
    convs = [m for m in net if m.__class__.__name__ == "Conv2d"]
    assert len(convs) == 8 and all(c.bias is None for c in convs)
    assert [c.in_channels for c in convs] == [3] + [64] * 7 and convs[-1].out_channels == 3
    assert sum(m.__class__.__name__ == "ReLU" for m in net) == 7


def test_peer_upscales_and_is_reproducible():
    pytest.importorskip("torch")
    peer = _load("peer_torch_zssr")
    rng = np.random.default_rng(0)
    lr = rng.random((10, 12, 3), dtype=np.float32)
    sr, info = peer.run(lr, 2, seed=3, max_iters=3)
    assert sr.shape == (20, 24, 3) and sr.dtype == np.float32
    assert 0.0 <= sr.min() and sr.max() <= 1.0
    assert info["iterations"] == 3 and info["final_rate"] == peer.LR0
    again, _ = peer.run(lr, 2, seed=3, max_iters=3)
    assert np.array_equal(sr, again)


def test_driver_scores_what_a_contender_writes(tmp_path, monkeypatch, capsys):
    """A contender that writes the bicubic interpolation scores the bicubic PSNR; a failing
    one is reported and left out of the table."""
    compare = _load("compare_peer")
    hr = (np.random.default_rng(1).random((24, 30, 3)) * 255).astype(np.uint8)
    (tmp_path / "gt").mkdir()
    iio.imwrite(tmp_path / "gt" / "a.png", hr)
    script = ("import sys, numpy as np, imageio.v3 as iio; from zssr.engine import evaluate; "
              "lr = iio.imread(sys.argv[1]).astype(np.float32) / 255; "
              "sr = evaluate._resize(lr, shape=(2 * lr.shape[0], 2 * lr.shape[1])); "
              "iio.imwrite(sys.argv[2], np.round(np.clip(sr, 0, 1) * 255).astype(np.uint8))")
    monkeypatch.setitem(compare.CONTENDERS, "bicubic", lambda lr, out, s, seed: [sys.executable, "-c", script, lr, out])
    monkeypatch.setitem(compare.CONTENDERS, "broken", lambda lr, out, s, seed: [sys.executable, "-c", "raise SystemExit(3)"])
    out = tmp_path / "out"
    compare.main([str(tmp_path / "gt"), "--only", "bicubic,broken", "--out", str(out), "--json", str(tmp_path / "r.json")])
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert len(rows) == 1 and rows[0]["broken"] == {"failed": True}
    h, lr = evaluate.make_lr(hr.astype(np.float32) / 255, 2)
    want = metrics.evaluate_pair(metrics.quantize(np.clip(evaluate._resize(lr, shape=h.shape[:2]), 0, 1)), h, 2)["psnr"]
    assert rows[0]["bicubic"]["psnr"] == pytest.approx(want, abs=1e-9)
    assert rows[0]["bicubic"]["seconds"] > 0
    err = capsys.readouterr().err
    assert "broken failed" in err


def test_driver_refuses_unknown_contenders(tmp_path):
    compare = _load("compare_peer")
    with pytest.raises(SystemExit):
        compare.main([str(tmp_path), "--only", "zssr,bogus"])


def test_ensemble_members_script_reproduces_the_job_and_scores_each_choice(tmp_path, capsys):
    """bench/ensemble_members.py: its 8-member re-run of the last network is the job's own
    result (a small one, which keeps all 8), and every choice of members is scored."""
    script = _load("ensemble_members")
    from skimage import data

    iio.imwrite(tmp_path / "a.png", data.chelsea()[100:140, 150:196])  # fur: the members differ
    script.main([str(tmp_path / "a.png"), "--iters", "60", "--json", str(tmp_path / "r.json")])
    (row,) = json.loads((tmp_path / "r.json").read_text())
    assert row["lr"] == [20, 23]
    assert row["psnr_8"] == row["job"]
    assert all(np.isfinite(row[f"psnr_{k}"]) and row[f"seconds_{k}"] > 0 for k in ("8", "4", "2"))
    assert len({row["psnr_8"], row["psnr_4"], row["psnr_2"]}) == 3  # the members change the result
    assert "8 members" in capsys.readouterr().out
