"""The memory guard: estimates, tile choice under a budget, refusals through the CLI."""
import numpy as np
import pytest
from PIL import Image

from zssr import engine
from zssr.engine import checkpoint
from zssr.engine.errors import UserError
from zssr.engine.memory import GIB, choose_tile, inference_bytes, parse_max_memory, training_bytes
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
