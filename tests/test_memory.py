"""The memory guard: estimates, tile choice under a budget, refusals through the CLI."""
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from zssr import engine
from zssr.engine import checkpoint
from zssr.engine.errors import UserError
from zssr.engine.memory import GIB, choose_tile, inference_bytes, parse_max_memory, training_bytes, training_shape
from zssr.engine.train import TrainConfig


def test_estimates_grow_with_the_job():
    net = engine.Network(width=64, depth=8)
    small = inference_bytes(net, (100, 100), (200, 200), 200, ensemble=False)
    assert inference_bytes(net, (1000, 1000), (2000, 2000), 512, ensemble=False) > small
    assert inference_bytes(net, (1000, 1000), (2000, 2000), 512, ensemble=True) > \
        inference_bytes(net, (1000, 1000), (2000, 2000), 512, ensemble=False)
    assert inference_bytes(net, (1000, 1000), (2000, 2000), 1024, False) > inference_bytes(net, (1000, 1000), (2000, 2000), 256, False)
    z = TrainConfig.make("zssr")
    assert training_bytes(TrainConfig.make("seed"), (500, 500)) > training_bytes(z, (500, 500))


def test_choose_tile_halves_to_fit_and_refuses_with_the_figures():
    net = engine.Network(width=64, depth=8)
    big = 64 * GIB
    assert choose_tile(net, (500, 500), (1000, 1000), None, False, big) == 1000  # untiled fits
    assert choose_tile(net, (600, 600), (1200, 1200), None, False, big) == 512  # the default tile of a large image
    need_256 = inference_bytes(net, (600, 600), (1200, 1200), 256, False)
    t = choose_tile(net, (600, 600), (1200, 1200), None, False, need_256)
    assert t <= 256 and inference_bytes(net, (600, 600), (1200, 1200), t, False) <= need_256
    with pytest.raises(UserError, match=r"needs about .* GiB .* --max-memory"):
        choose_tile(net, (600, 600), (1200, 1200), None, False, 0.1 * GIB)


def test_parse_max_memory():
    assert parse_max_memory(2) == 2 * GIB
    assert parse_max_memory(None) > GIB
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(UserError, match="--max-memory"):
            parse_max_memory(bad)


@pytest.fixture
def model(run_cli, small_rgb, tmp_path):
    path = tmp_path / "m.npz"
    assert run_cli("train", small_rgb, "-o", path, "--iters", "3", "--crop", "16")[0] == 0
    return path


def test_infer_refuses_a_job_over_the_budget_and_writes_nothing(run_cli, small_rgb, model, tmp_path):
    out = tmp_path / "sr.png"
    code, _, stderr = run_cli("infer", small_rgb, "-m", model, "-o", out, "-s", "2", "--max-memory", "0.01")
    assert code == 2 and stderr.count("\n") == 1 and "--max-memory" in stderr and "GiB" in stderr
    assert not out.exists()


def test_infer_tiles_smaller_to_fit_and_gives_the_same_result(run_cli, small_rgb, model, tmp_path):
    net, _, _ = checkpoint.load(model)
    # a budget that the untiled job exceeds but tiles of at most 32 pixels meet
    budget = inference_bytes(net, (40, 48), (80, 96), 32, True)
    assert budget < inference_bytes(net, (40, 48), (80, 96), 96, True)
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert run_cli("infer", small_rgb, "-m", model, "-o", a, "-s", "2")[0] == 0
    code, _, stderr = run_cli("infer", small_rgb, "-m", model, "-o", b, "-s", "2", "--max-memory", str(budget / GIB))
    assert code == 0, stderr
    assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))


def test_train_and_upscale_refuse_before_any_work(run_cli, small_rgb, tmp_path):
    for cmd in (["train", small_rgb, "-o", tmp_path / "m.npz"], ["upscale", small_rgb, "-o", tmp_path / "up.png"]):
        code, stdout, stderr = run_cli(*cmd, "--iters", "3", "--max-memory", "0.05")
        assert code == 2 and "--max-memory" in stderr and stderr.count("\n") == 1, stderr
        assert "trained" not in stdout
    assert not (tmp_path / "m.npz").exists() and not (tmp_path / "up.png").exists()


# --------------------------------------------------------------------------- what actually runs (issue 15)

BIG = 3000  # a photo larger than this machine could train on at full size with the seed preset


@pytest.fixture(scope="module")
def big_photo(tmp_path_factory):
    """A synthetic 3000x3000 RGB photo: gradients with a little noise."""
    y, x = np.mgrid[0:BIG, 0:BIG].astype(np.float32) / BIG
    noise = np.random.default_rng(0).integers(0, 8, (BIG, BIG, 3), dtype=np.uint8)
    img = (np.stack([x, y, (x + y) / 2], axis=-1) * 240).astype(np.uint8) + noise
    path = tmp_path_factory.mktemp("big") / "big.png"
    Image.fromarray(img).save(path, compress_level=1)
    return path


def test_the_estimate_is_for_the_image_shrunk_to_max_side():
    seed = TrainConfig.make("seed")  # --max-side 500
    full = replace(seed, max_side=0)
    assert training_bytes(full, (BIG, BIG)) > parse_max_memory(None)  # the premise: refused at full size
    # at 500x500, plus the full-size image held while training on its shrunk copy
    assert training_bytes(seed, (BIG, BIG)) == training_bytes(seed, (500, 500)) + BIG * BIG * 3 * 4
    assert training_shape(seed, (BIG, 1500)) == (500, 250) and training_shape(seed, (400, 300)) == (400, 300)
    for preset in ("zssr", "fast"):
        cfg = TrainConfig.make(preset, max_side=200)
        assert training_bytes(cfg, (BIG, BIG)) < training_bytes(replace(cfg, max_side=0), (BIG, BIG))


def test_seed_preset_trains_on_a_photo_too_big_at_full_size(run_cli, big_photo, tmp_path):
    out = tmp_path / "m.npz"
    # at full size (--max-side 0) the estimate is refused, with the figures and before any work
    code, stdout, stderr = run_cli("train", big_photo, "-o", out, "--preset", "seed", "--max-side", "0", "--epochs", "1")
    assert code == 2 and stderr.count("\n") == 1 and f"{BIG}x{BIG} image needs about" in stderr, stderr
    assert not out.exists()
    # shrunk (the seed's own case, with a smaller side to keep the test fast): the estimate is for what runs
    code, stdout, stderr = run_cli("train", big_photo, "-o", out, "--preset", "seed", "--max-side", "64", "--epochs", "1")
    assert code == 0, stderr
    assert "trained" in stdout and out.exists()
    _, meta, _ = checkpoint.load(out)
    assert meta["image"]["shape"][:2] == [64, 64]


def test_upscale_fast_and_zssr_presets_estimate_the_shrunk_image(run_cli, big_photo, tmp_path):
    budget = "0.6"  # GiB: under the full-size estimate of both, over the estimate at --max-side 64
    for preset in ("fast", "zssr"):
        assert training_bytes(TrainConfig.make(preset), (BIG, BIG)) > 0.6 * GIB
    out = tmp_path / "up.png"
    code, _, stderr = run_cli("upscale", big_photo, "-o", out, "--preset", "fast", "--iters", "4", "--crop", "24",
                              "--max-memory", budget)
    assert code == 2 and f"{BIG}x{BIG} image needs about" in stderr and not out.exists(), stderr
    code, stdout, stderr = run_cli("upscale", big_photo, "-o", out, "--preset", "fast", "--iters", "4", "--crop", "24",
                                   "--max-side", "64", "--no-ensemble", "--back-projection", "0", "--max-memory", budget)
    assert code == 0, stderr
    assert Image.open(out).size == (128, 128)
    code, _, stderr = run_cli("train", big_photo, "-o", tmp_path / "z.npz", "--iters", "2", "--crop", "24",
                              "--max-side", "64", "--max-memory", budget)
    assert code == 0, stderr


# --------------------------------------------------------------------------- every command has the guard


def _folder(path, sizes):
    path.mkdir()
    rng = np.random.default_rng(5)
    for name, (h, w) in sizes.items():
        y, x = np.mgrid[0:h, 0:w]
        img = np.dstack([x * 255 // w, y * 255 // h, (x + y) % 256]).astype(np.uint8)
        img = np.clip(img + rng.integers(0, 4, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(path / name, compress_level=1)
    return path


TINY = ["-s", "2", "--iters", "3", "--crop", "16", "--no-ensemble", "--back-projection", "0"]


def test_upscale_folder_in_process_takes_max_memory(run_cli, tmp_path):
    src, out = _folder(tmp_path / "in", {"a.png": (24, 28), "b.png": (20, 30)}), tmp_path / "out"
    code, stdout, stderr = run_cli("upscale", src, "-o", out, *TINY, "--workers", "1", "--max-memory", "0.05")
    assert code == 1, stderr
    assert "0 upscaled, 0 already done, 2 failed" in stdout and stdout.count("--max-memory 0.05 GiB") == 2, stdout
    assert sorted(p.name for p in out.iterdir()) == []


@pytest.fixture(scope="module")
def small_worker():
    """A Dask cluster of one worker process whose memory limit is 1 GiB."""
    distributed = pytest.importorskip("distributed")
    import logging

    from zssr.engine.batch import kept_environ

    with kept_environ(), distributed.LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1",
                                                  memory_limit="1GiB", dashboard_address=None,
                                                  scheduler_kwargs={"dashboard_address": ":0"},
                                                  silence_logs=logging.ERROR) as c:
        yield c


def test_upscale_folder_on_dask_is_held_to_the_workers_memory_limit(run_cli, small_worker, tmp_path):
    side = 3800  # its job needs more than the worker's 1 GiB, less than --max-memory 8
    assert GIB < training_bytes(TrainConfig.make("zssr"), (side, side)) < 8 * GIB
    src = _folder(tmp_path / "in", {"big.png": (side, side), "small.png": (24, 28)})
    out = tmp_path / "out"
    code, stdout, stderr = run_cli("upscale", src, "-o", out, *TINY, "--max-memory", "8",
                                   "--scheduler", small_worker.scheduler_address)
    assert code == 1, stderr
    assert "1 upscaled, 0 already done, 1 failed" in stdout, stdout
    line = next(s for s in stdout.splitlines() if s.startswith("big.png"))
    assert f"{side}x{side} image needs about" in line and "--max-memory 1.00 GiB" in line, line
    assert sorted(p.name for p in out.iterdir()) == ["small.png"]


def test_eval_checks_every_image_before_any_work(run_cli, tmp_path):
    data = _folder(tmp_path / "set", {"a.png": (24, 28), "b.png": (600, 600)})
    z = TrainConfig.make("zssr")
    small, big = training_bytes(z, (12, 14)), training_bytes(z, (300, 300))
    budget = (small + big) / 2 / GIB  # a's job fits, b's does not
    code, stdout, stderr = run_cli("eval", data, "--iters", "3", "--max-memory", f"{budget:.4f}")
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert stderr.startswith("zssr: error: b.png: training on a 300x300 image needs about"), stderr
    assert stdout == ""  # a was not trained either


def test_benchmark_takes_max_memory(run_cli, tmp_path):
    from zssr.engine.memory import benchmark_bytes

    assert benchmark_bytes(quick=True) > 0.1 * GIB
    code, stdout, stderr = run_cli("benchmark", "--quick", "--peer", "none", "--max-memory", "0.1")
    assert code == 2 and stderr.count("\n") == 1 and "the benchmark needs about" in stderr, stderr
    assert stdout == ""


def test_training_estimate_counts_the_earlier_results_of_the_centre_window_only(monkeypatch):
    """Intermediate results of a large image are made of its centre window (data.WINDOW):
    the pool's copies of them are that size, whatever the image's; an image within the
    window is counted whole."""
    from zssr.engine import data

    for preset in ("zssr", "fast"):
        cfg = TrainConfig.make(preset)
        small = training_bytes(cfg, (300, 300))
        big = training_bytes(cfg, (2000, 2000))
        monkeypatch.setattr(data, "WINDOW", 10 ** 6)  # as if results were made of the whole image
        assert training_bytes(cfg, (300, 300)) == small
        assert training_bytes(cfg, (2000, 2000)) > big + 0.2 * GIB
        monkeypatch.undo()
