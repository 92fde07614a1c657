"""`zssr train` end to end: presets, plots and logs, kernels, determinism, exact resume,
SIGINT, and bad input. Tiny images and few iterations keep it fast."""
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, write_png

FAST = ["--iters", "6", "--crop", "24"]


def params_of(path):
    with np.load(path, allow_pickle=False) as z:
        return [z[k] for k in sorted((k for k in z.files if k.startswith("param_")), key=lambda k: int(k[6:]))]


def test_train_writes_a_model_plot_and_log(run_cli, small_rgb, tmp_path):
    out, plot, log = tmp_path / "m.npz", tmp_path / "loss.png", tmp_path / "log.csv"
    code, stdout, stderr = run_cli("train", small_rgb, "-o", out, *FAST, "--plot", plot, "--log", log)
    assert code == 0, stderr
    assert "trained 6 iterations" in stdout
    assert len(params_of(out)) == 8  # zssr preset: no biases
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = log.read_text().splitlines()
    assert lines[0].startswith("iteration,loss") and len(lines) == 7


def test_seed_preset_trains_the_pyramid_in_epochs_with_its_plot(run_cli, small_rgb, tmp_path):
    out, plot = tmp_path / "seed.npz", tmp_path / "seed.png"
    code, stdout, stderr = run_cli("train", small_rgb, "-o", out, "--preset", "seed", "--epochs", "2", "--plot", plot)
    assert code == 0, stderr
    assert "trained 8 iterations" in stdout  # 4 pyramid levels x 2 epochs
    assert len(params_of(out)) == 16  # biases
    assert plot.stat().st_size > 1000


def test_same_seed_same_weights(run_cli, small_rgb, tmp_path):
    a, b, c = tmp_path / "a.npz", tmp_path / "b.npz", tmp_path / "c.npz"
    for path, seed in ((a, 3), (b, 3), (c, 4)):
        assert run_cli("train", small_rgb, "-o", path, *FAST, "--seed", seed)[0] == 0
    assert all(np.array_equal(x, y) for x, y in zip(params_of(a), params_of(b)))
    assert not np.array_equal(params_of(a)[0], params_of(c)[0])


def test_resume_is_exact(run_cli, small_rgb, tmp_path):
    """Interrupted at iteration 6 of 12 (a real SIGINT) and resumed: bitwise the weights of
    12 straight, the cosine schedule included."""
    straight, half = tmp_path / "straight.npz", tmp_path / "half.npz"
    opts = ["--iters", "12", "--crop", "24", "--seed", "1"]
    assert run_cli("train", small_rgb, "-o", straight, *opts)[0] == 0
    env = dict(os.environ, ZSSR_TEST_SIGINT_AT="6")
    proc = subprocess.run([sys.executable, "-m", "zssr.cli.main", "train", str(small_rgb), "-o", str(half), *opts],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 130, proc.stderr
    assert not all(np.array_equal(x, y) for x, y in zip(params_of(straight), params_of(half)))
    code, _, stderr = run_cli("train", small_rgb, "-o", half, *opts, "--resume", half)
    assert code == 0, stderr
    assert all(np.array_equal(x, y) for x, y in zip(params_of(straight), params_of(half)))


def test_resume_extends_a_policy_run(run_cli, small_rgb, tmp_path):
    """With ZSSR's policy (no planned end), a finished run can be resumed to more iterations."""
    straight, half = tmp_path / "straight.npz", tmp_path / "half.npz"
    opts = ["--crop", "24", "--seed", "1", "--schedule", "policy"]
    assert run_cli("train", small_rgb, "-o", straight, "--iters", "12", *opts)[0] == 0
    assert run_cli("train", small_rgb, "-o", half, "--iters", "6", *opts)[0] == 0
    code, _, stderr = run_cli("train", small_rgb, "-o", half, "--iters", "12", *opts, "--resume", half)
    assert code == 0, stderr
    assert all(np.array_equal(x, y) for x, y in zip(params_of(straight), params_of(half)))


def test_kernel_mode_npy_and_mat(run_cli, small_rgb, tmp_path):
    from scipy.io import savemat

    k = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]).astype(np.float64)
    np.save(tmp_path / "k.npy", k)
    savemat(tmp_path / "k.mat", {"Kernel": k})
    for f in ("k.npy", "k.mat"):
        code, _, stderr = run_cli("train", small_rgb, "-o", tmp_path / f"{f}.npz", *FAST, "--kernel", tmp_path / f)
        assert code == 0, stderr
    savemat(tmp_path / "bad.mat", {"Other": k})
    code, _, stderr = run_cli("train", small_rgb, "-o", tmp_path / "x.npz", *FAST, "--kernel", tmp_path / "bad.mat")
    assert code == 2 and "no variable 'Kernel'" in stderr
    assert not (tmp_path / "x.npz").exists()


def test_real_kernel_from_shared_data(run_cli, small_rgb, tmp_path, shared_data):
    code, _, stderr = run_cli("train", small_rgb, "-o", tmp_path / "m.npz", *FAST,
                              "--kernel", shared_data / "real" / "bsd100_100_kernel_x2.mat", "--noise", "0.01")
    assert code == 0, stderr


def test_sigint_saves_a_checkpoint_and_exits_130(small_rgb, tmp_path):
    """A real SIGINT (sent by the process to itself at iteration 3, see ZSSR_TEST_SIGINT_AT):
    exit status 130, a checkpoint that resumes."""
    out = tmp_path / "ck.npz"
    env = dict(os.environ, ZSSR_TEST_SIGINT_AT="3")
    proc = subprocess.run([sys.executable, "-m", "zssr.cli.main", "train", str(small_rgb), "-o", str(out), "--iters", "50",
                           "--crop", "24"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 130, proc.stderr
    assert "checkpoint saved" in proc.stderr
    with np.load(out, allow_pickle=False) as z:
        assert "param_0" in z.files
    import json

    with np.load(out, allow_pickle=False) as z:
        assert json.loads(str(z["meta"]))["iteration"] == 3


@pytest.mark.parametrize("content,match", [
    (None, "no such file"),
    (b"", "empty"),
    (b"this is not an image at all", "cannot read it as an image"),
])
def test_bad_image_files(run_cli, tmp_path, content, match):
    src = tmp_path / "in.png"
    if content is not None:
        src.write_bytes(content)
    out = tmp_path / "m.npz"
    code, stdout, stderr = run_cli("train", src, "-o", out, *FAST)
    assert code == 2
    assert stderr.startswith("zssr: error:") and stderr.count("\n") == 1, stderr
    assert match in stderr.lower()
    assert not out.exists()


def test_truncated_png(run_cli, small_rgb, tmp_path):
    data = small_rgb.read_bytes()
    bad = tmp_path / "trunc.png"
    bad.write_bytes(data[: len(data) // 2])
    code, _, stderr = run_cli("train", bad, "-o", tmp_path / "m.npz", *FAST)
    assert code == 2 and stderr.count("\n") == 1
    assert not (tmp_path / "m.npz").exists()


def test_too_small_image(run_cli, tmp_path):
    src = write_png(tmp_path / "tiny.png", np.zeros((2, 2, 3), np.uint8))
    code, _, stderr = run_cli("train", src, "-o", tmp_path / "m.npz", *FAST)
    assert code == 2 and "small" in stderr.lower()


@pytest.mark.parametrize("opts,match", [
    (["--scale", "0"], "--scale"), (["--scale", "nan"], "--scale"), (["--scale", "-2"], "--scale"),
    (["--lr", "0"], "--lr"), (["--optimizer", "rmsprop"], "--optimizer"), (["--loss", "huber"], "--loss"),
    (["--preset", "turbo"], "preset"),
])
def test_bad_options(run_cli, small_rgb, tmp_path, opts, match):
    code, _, stderr = run_cli("train", small_rgb, "-o", tmp_path / "m.npz", *FAST, *opts)
    assert code == 2 and match in stderr, stderr
    assert not (tmp_path / "m.npz").exists()


def test_never_overwrites_without_force_nor_the_input(run_cli, small_rgb, tmp_path):
    out = tmp_path / "m.npz"
    out.write_bytes(b"precious")
    code, _, stderr = run_cli("train", small_rgb, "-o", out, *FAST)
    assert code == 2 and "--force" in stderr and out.read_bytes() == b"precious"
    before = small_rgb.read_bytes()
    code, _, stderr = run_cli("train", small_rgb, "-o", small_rgb, *FAST, "--force")
    assert code == 2 and small_rgb.read_bytes() == before


@pytest.mark.parametrize("kind", ["garbage", "pickled", "wrong_shape", "newer"])
def test_bad_checkpoints_are_refused(run_cli, small_rgb, tmp_path, kind):
    good = tmp_path / "good.npz"
    assert run_cli("train", small_rgb, "-o", good, *FAST)[0] == 0
    bad = tmp_path / "bad.npz"
    if kind == "garbage":
        bad.write_bytes(b"PK\x03\x04 not really a zip")
    else:
        with np.load(good, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
        if kind == "pickled":
            d["param_0"] = np.array([{"evil": 1}], dtype=object)
        elif kind == "wrong_shape":
            d["param_1"] = np.zeros((3, 3, 2, 2), np.float32)
        else:
            d["format"] = np.array(99)
        np.savez(bad, **d)
    out = tmp_path / "sr.png"
    code, _, stderr = run_cli("infer", small_rgb, "-m", bad, "-o", out, "--scale", "2")
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert {"garbage": "not a zssr model", "pickled": "pickled", "wrong_shape": "parameter 1", "newer": "newer"}[kind] in stderr
    assert not out.exists()
    code, _, stderr = run_cli("train", small_rgb, "-o", tmp_path / "r.npz", *FAST, "--resume", bad)
    assert code == 2


def test_help_does_not_import_numba():
    code = "import sys; from zssr.cli.main import app; assert 'numba' not in sys.modules; print('ok')"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.stdout.strip() == "ok", proc.stderr
    proc = subprocess.run([sys.executable, "-m", "zssr.cli.main", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and "upscale" in proc.stdout


def test_gt_adds_psnr_to_the_log(run_cli, small_rgb, tmp_path):
    """--gt: the PSNR of a quick super-resolution against the ground truth, at each evaluation."""
    from PIL import Image

    gt = tmp_path / "gt.png"
    Image.open(small_rgb).resize((96, 80), Image.BICUBIC).save(gt)
    log = tmp_path / "log.csv"
    code, _, stderr = run_cli("train", small_rgb, "-o", tmp_path / "m.npz", "--iters", "50", "--crop", "24",
                              "--gt", gt, "--log", log)
    assert code == 0, stderr
    rows = [line.split(",") for line in log.read_text().splitlines()[1:]]
    psnrs = [float(r[4]) for r in rows if r[4]]
    assert len(psnrs) == 1 and 10 < psnrs[0] < 60  # evaluated at iteration 50


def test_benchmark_command_quick(run_cli, tmp_path):
    js = tmp_path / "bench.json"
    code, stdout, stderr = run_cli("benchmark", "--quick", "--peer", "none", "--no-scaling", "--json", js)
    assert code == 0, stderr
    for op in ("conv3x3 forward", "train_step", "predict", "sgemm"):
        assert op in stdout
    import json

    rows = json.loads(js.read_text())["rows"]
    assert all(r["ms"] > 0 for r in rows)
