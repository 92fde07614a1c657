"""`zssr infer`, `zssr upscale` (single image and folder) and `zssr eval` end to end."""
import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from conftest import write_png
from zssr.engine.errors import UserError

FAST = ["--iters", "4", "--crop", "24"]


@pytest.fixture
def model(run_cli, small_rgb, tmp_path):
    path = tmp_path / "model.npz"
    code, _, stderr = run_cli("train", small_rgb, "-o", path, *FAST)
    assert code == 0, stderr
    return path


def size_of(path):
    with Image.open(path) as im:
        return im.size, im.mode


@pytest.mark.parametrize("opts,want", [
    (["--scale", "2"], (96, 80)),
    (["--scale", "1.5"], (72, 60)),
    (["--scale", "4", "--steps", "2"], (192, 160)),
    (["--size", "100x90"], (100, 90)),
    (["--size", "60x120", "--steps", "2"], (60, 120)),
])
def test_infer_sizes(run_cli, small_rgb, model, tmp_path, opts, want):
    out = tmp_path / "sr.png"
    code, stdout, stderr = run_cli("infer", small_rgb, "-m", model, "-o", out, "--no-ensemble", *opts)
    assert code == 0, stderr
    assert size_of(out) == (want, "RGB")


def test_infer_with_ensemble_back_projection_tiles_and_compare(run_cli, small_rgb, model, tmp_path):
    a, b, cmp_ = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "cmp.png"
    assert run_cli("infer", small_rgb, "-m", model, "-o", a, "-s", "2", "--back-projection", "3", "--compare", cmp_)[0] == 0
    assert run_cli("infer", small_rgb, "-m", model, "-o", b, "-s", "2", "--back-projection", "3", "--tile", "17")[0] == 0
    assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))  # tiled == untiled
    assert size_of(cmp_)[0][0] > 200


@pytest.mark.parametrize("opts,match", [
    (["--scale", "0"], "--scale"), (["--scale", "-1"], "--scale"), (["--scale", "nan"], "--scale"),
    (["--scale", "inf"], "--scale"), (["--size", "20x20"], "shrink"), (["--size", "abc"], "WIDTHxHEIGHT"),
    ([], "--scale"), (["--scale", "2", "--size", "90x90"], "not both"), (["--scale", "2", "--steps", "0"], "steps"),
    (["--scale", "2", "--back-projection", "-1"], "back-projection"),
])
def test_infer_bad_options_write_nothing(run_cli, small_rgb, model, tmp_path, opts, match):
    out = tmp_path / "sr.png"
    code, _, stderr = run_cli("infer", small_rgb, "-m", model, "-o", out, *opts)
    assert code == 2 and stderr.count("\n") == 1 and match in stderr, stderr
    assert not out.exists()


def test_infer_missing_model_and_unwritable_output(run_cli, small_rgb, model, tmp_path):
    code, _, stderr = run_cli("infer", small_rgb, "-m", tmp_path / "nope.npz", "-o", tmp_path / "sr.png", "-s", "2")
    assert code == 2 and "does not exist" in stderr
    code, _, stderr = run_cli("infer", small_rgb, "-m", model, "-o", tmp_path / "no" / "such" / "dir" / "sr.png", "-s", "2")
    assert code == 2 and stderr.count("\n") == 1
    assert not (tmp_path / "no").exists()


def test_infer_with_a_model_of_another_width_is_fine_and_a_corrupt_one_is_not(run_cli, small_rgb, model, tmp_path):
    with np.load(model, allow_pickle=False) as z:
        d = {k: z[k] for k in z.files}
    d["param_0"] = d["param_0"][:, :, :2]  # weights for 2 input channels: not this network
    bad = tmp_path / "bad.npz"
    np.savez(bad, **d)
    code, _, stderr = run_cli("infer", small_rgb, "-m", bad, "-o", tmp_path / "sr.png", "-s", "2")
    assert code == 2 and "parameter 0" in stderr


@pytest.mark.parametrize("mode,depth", [("L", 8), ("RGBA", 8), ("L", 16), ("RGB", 16)])
def test_modes_and_bit_depth_are_kept(run_cli, tmp_path, mode, depth):
    rng = np.random.default_rng(0)
    src = tmp_path / f"in_{mode}{depth}.png"
    if depth == 16:
        from zssr.engine.io import save_image

        rgb = rng.random((30, 34, 3)).astype(np.float32)
        save_image(src, rgb, mode=mode, bit_depth=16)
    else:
        arr = rng.integers(0, 256, (30, 34, len(mode)), dtype=np.uint8)
        Image.fromarray(arr[..., 0] if mode == "L" else arr, mode).save(src)
    out = tmp_path / "out.png"
    code, _, stderr = run_cli("upscale", src, "-o", out, "--scale", "2", *FAST, "--no-ensemble")
    assert code == 0, stderr
    from zssr.engine.io import load_image

    img = load_image(out)
    assert (img.mode, img.bit_depth, img.rgb.shape[:2]) == (mode, depth, (60, 68))


def test_upscale_single_image_with_model_and_compare(run_cli, small_rgb, tmp_path):
    out, m, cmp_ = tmp_path / "up.png", tmp_path / "m.npz", tmp_path / "cmp.png"
    code, stdout, stderr = run_cli("upscale", small_rgb, "-o", out, "-s", "2", *FAST, "--save-model", m, "--compare", cmp_)
    assert code == 0, stderr
    assert size_of(out) == ((96, 80), "RGB") and m.exists() and cmp_.exists()
    # the saved model reproduces the same result through infer
    again = tmp_path / "again.png"
    assert run_cli("infer", small_rgb, "-m", m, "-o", again, "-s", "2")[0] == 0
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(again)))


def test_upscale_folder_with_a_broken_file_and_a_rerun(run_cli, small_rgb, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(1)
    for name in ("a.png", "b.png"):
        write_png(src / name, rng.integers(0, 256, (26, 30, 3), dtype=np.uint8))
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (src / "notes.txt").write_text("not an image, not considered")
    out = tmp_path / "out"
    code, stdout, stderr = run_cli("upscale", src, "-o", out, "-s", "2", *FAST, "--no-ensemble")
    assert code == 1
    assert "2 upscaled, 0 already done, 1 failed" in stdout and "broken.png" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    stamp = (out / "a.png").stat().st_mtime_ns
    code, stdout, _ = run_cli("upscale", src, "-o", out, "-s", "2", *FAST, "--no-ensemble")
    assert code == 1 and "0 upscaled, 2 already done, 1 failed" in stdout
    assert (out / "a.png").stat().st_mtime_ns == stamp
    (src / "broken.png").unlink()
    code, stdout, _ = run_cli("upscale", src, "-o", out, "-s", "2", *FAST, "--no-ensemble", "--force")
    assert code == 0 and "2 upscaled" in stdout


def test_upscale_refuses_same_folder_and_empty_folder(run_cli, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, stderr = run_cli("upscale", empty, "-o", tmp_path / "o", "-s", "2")
    assert code == 2 and "no images" in stderr


def test_eval_on_a_tiny_dataset(run_cli, tmp_path):
    data = tmp_path / "hr"
    data.mkdir()
    y, x = np.mgrid[0:36, 0:40]
    for i in range(2):
        img = np.stack([(x * (5 + i)) % 256, (y * 7) % 256, ((x + y) * 3) % 256], -1).astype(np.uint8)
        write_png(data / f"img{i}.png", img)
    js = tmp_path / "r.json"
    code, stdout, stderr = run_cli("eval", data, "--scale", "2", "--iters", "4", "--json", js)
    assert code == 0, stderr
    assert "img0" in stdout and "img1" in stdout and "mean" in stdout.lower()
    result = json.loads(js.read_text())
    assert len(result["rows"]) == 2 and all(np.isfinite(r["psnr"]) for r in result["rows"])


def test_upscale_in_steps_trains_anew_at_each_step_for_zssr_once_for_seed(run_cli, small_rgb, tmp_path):
    out = tmp_path / "x4.png"
    code, stdout, stderr = run_cli("upscale", small_rgb, "-o", out, "-s", "4", "--steps", "2", "--iters", "12",
                                   "--crop", "24", "--no-ensemble")
    assert code == 0, stderr
    assert "trained 24 iterations" in stdout  # 2 steps x 12 iterations: ZSSR's gradual SR
    assert size_of(out) == ((192, 160), "RGB")
    out2 = tmp_path / "seed_x4.png"
    code, stdout, stderr = run_cli("upscale", small_rgb, "-o", out2, "-s", "4", "--steps", "2", "--preset", "seed",
                                   "--epochs", "1")
    assert code == 0, stderr
    assert "trained 4 iterations" in stdout  # one network (4 pyramid levels x 1 epoch), applied twice
    assert size_of(out2) == ((192, 160), "RGB")


def test_default_steps_go_x2_at_a_time_for_zssr(run_cli, small_rgb, tmp_path):
    from zssr.engine.job import default_steps
    from zssr.engine.train import TrainConfig

    assert [default_steps(TrainConfig.make("zssr", scale=s)) for s in (1.5, 2, 3, 4, 8)] == [1, 1, 2, 2, 3]
    assert default_steps(TrainConfig.make("seed", scale=4)) == 1
    code, stdout, stderr = run_cli("upscale", small_rgb, "-o", tmp_path / "x4.png", "-s", "4", *FAST, "--no-ensemble",
                                   "--preset", "fast")
    assert code == 0 and "trained 8 iterations" in stdout, stderr
    code, _, stderr = run_cli("upscale", small_rgb, "-o", tmp_path / "x.png", "-s", "4", "--steps", "0", *FAST)
    assert code == 2 and "--steps" in stderr and not (tmp_path / "x.png").exists()


def record_pools(monkeypatch):
    """{trainer: the shapes of its pool of fathers}, taken as the job releases each pool."""
    from zssr.engine.train import Trainer

    pools, real = {}, Trainer.release

    def release(self):
        pools[self] = [f.shape for f in self.sampler.fathers]
        real(self)

    monkeypatch.setattr(Trainer, "release", release)
    return pools


def test_gradual_job_trains_two_networks_the_second_from_the_first_and_its_result(monkeypatch):
    from zssr.engine.job import planned_iterations, stage_plan, train_and_upscale
    from zssr.engine.train import TrainConfig

    img = np.random.default_rng(3).random((30, 34, 3)).astype(np.float32)
    cfg = TrainConfig.make("fast", iters=7, crop=16, eval_every=0)
    assert stage_plan(cfg, 1) == [(1.5, 3), (2.0, 4)] and planned_iterations(cfg) == 7
    assert planned_iterations(TrainConfig.make("fast", iters=7, scale=4)) == 14
    pools = record_pools(monkeypatch)
    sr, trainers, base = train_and_upscale(img, cfg, ensemble=False, back_projection=0)
    assert sr.shape == (60, 68, 3) and base is img
    first, second = trainers
    assert (first.cfg.scale, first.iteration, second.cfg.scale, second.iteration) == (1.5, 3, 2.0, 4)
    assert second.offset == 3
    assert pools[second][-1] == (45, 51, 3)  # the x1.5 result is learnt from
    assert max(f[0] for f in pools[first]) == 30
    assert first.sampler is None and second.sampler is None  # pools released as the job goes
    # a known kernel belongs to one factor: one network, in one jump
    k = np.ones((4, 4)) / 16
    assert stage_plan(cfg, 1, kernel=k) == [(2.0, 7)]
    assert stage_plan(TrainConfig.make("zssr", iters=7, gradual=1, anisotropic=False), 1) == [(2.0, 7)]
    assert stage_plan(TrainConfig.make("zssr", iters=7), 1, kernel=k) == [(2.0, 7)]  # also for the six-network chain


def test_anisotropic_job_trains_zssrs_six_networks_each_learning_from_all_earlier_results(monkeypatch):
    import zssr.engine.infer
    from zssr.engine.job import planned_iterations, stage_plan, train_and_upscale
    from zssr.engine.memory import training_bytes
    from zssr.engine.train import TrainConfig

    img = np.random.default_rng(3).random((30, 34, 3)).astype(np.float32)
    cfg = TrainConfig.make("zssr", iters=44, crop=16, eval_every=0, anisotropic=True)
    plan = stage_plan(cfg, 1)
    assert [f for f, _ in plan] == [(1.0, 1.5), (1.5, 1.0), (1.5, 1.5), (1.5, 2.0), (2.0, 1.5), (2.0, 2.0)]
    assert [n for _, n in plan] == [5, 5, 6, 8, 8, 12]  # job.CHAIN_SHARES
    assert planned_iterations(cfg) == 44
    assert [n for _, n in stage_plan(replace(cfg, iters=4400), 1)] == [500, 500, 600, 800, 800, 1200]
    # other chains: in proportion to the results' areas
    assert [n for _, n in stage_plan(replace(cfg, gradual=1, iters=8), 1)] == [2, 2, 4]  # (1, 2), (2, 1), (2, 2)
    used = []
    real = zssr.engine.infer.apply_network
    monkeypatch.setattr(zssr.engine.infer, "apply_network",
                        lambda net, x, ensemble=False, tile=None, transforms=None, exact=False:
                        used.append((x.shape[:2], transforms)) or real(net, x, ensemble, tile, transforms, exact))
    pools = record_pools(monkeypatch)
    sr, trainers, _ = train_and_upscale(img, cfg, back_projection=1)
    assert sr.shape == (60, 68, 3) and len(trainers) == 6
    assert not any(t.net._cache for t in trainers)  # each network's buffers released once its result is made
    assert [t.factor for t in trainers] == [f for f, _ in plan] and [t.iteration for t in trainers] == [n for _, n in plan]
    axes, all8 = (0, 2, 4, 6), tuple(range(8))
    assert used == [((30, 51), axes), ((45, 34), axes), ((45, 51), all8), ((45, 68), axes), ((60, 51), axes),
                    ((60, 68), all8)]  # every result from the input; no transposes at anisotropic factors
    assert {f[:2] for f in pools[trainers[-1]]} >= {(30, 51), (45, 34), (45, 51), (45, 68), (60, 51), (30, 34)}
    for a, b in zip(trainers, trainers[1:]):  # one progress count over the six
        assert b.offset == a.offset + a.iteration
    assert training_bytes(cfg, (300, 340)) > training_bytes(replace(cfg, anisotropic=False), (300, 340))
    with pytest.raises(UserError, match="anisotropic"):
        TrainConfig.make("seed", anisotropic=True)


def test_upscale_anisotropic_through_the_cli(run_cli, small_rgb, tmp_path):
    out = tmp_path / "x2.png"
    code, stdout, stderr = run_cli("upscale", small_rgb, "-o", out, "--iters", "12", "--crop", "24", "--anisotropic")
    assert code == 0, stderr
    assert "trained 12 iterations" in stdout and size_of(out) == ((96, 80), "RGB")
    code, _, stderr = run_cli("upscale", small_rgb, "-o", tmp_path / "y.png", "--preset", "seed", "--anisotropic")
    assert code == 2 and "--anisotropic" in stderr and not (tmp_path / "y.png").exists()


def test_upscale_one_jump_with_zssr_policy(run_cli, small_rgb, tmp_path):
    out = tmp_path / "x2.png"
    code, stdout, stderr = run_cli("upscale", small_rgb, "-o", out, *FAST, "--gradual", "1", "--schedule", "policy",
                                   "--no-ensemble")
    assert code == 0, stderr
    assert "trained 4 iterations" in stdout and size_of(out) == ((96, 80), "RGB")
    code, _, stderr = run_cli("upscale", small_rgb, "-o", tmp_path / "y.png", *FAST, "--schedule", "sawtooth")
    assert code == 2 and "schedule" in stderr and stderr.count("\n") == 1 and not (tmp_path / "y.png").exists()
