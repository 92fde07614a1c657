"""Where the time goes (engine.phases), the job's planned work (progress bars), and the
centre window that large images use for checks and intermediate results."""
import numpy as np
import pytest

from zssr.engine import data, phases
from zssr.engine.data import CropSampler, centre_window
from zssr.engine.job import planned_work, train_and_upscale, upscale_file
from zssr.engine.train import TrainConfig, Trainer


def image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.1, 0.9, w, dtype=np.float32)[None, :, None]
    return np.clip(ramp + 0.15 * rng.standard_normal((h, w, 3)).astype(np.float32), 0, 1)


class Clock:
    """A fake perf_counter: time moves only when the test says so."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_phases_are_exclusive_and_add_up(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(phases.time, "perf_counter", clock)
    with phases.recording() as rec:
        with phases.phase("outer"):
            clock.now += 2
            with phases.phase("inner"):
                clock.now += 3
            clock.now += 1
        clock.now += 0.5  # outside any phase: 'other'
        assert rec.total() == 6.5
    assert rec.seconds == {"outer": 3, "inner": 3}
    assert rec.summary(6.5) == "outer 3.0 s, inner 3.0 s, other 0.5 s"


def test_phase_outside_a_recording_records_nothing_and_advance_is_harmless():
    with phases.phase("x"):
        phases.advance(5)
    with phases.recording() as rec:
        pass
    assert rec.seconds == {} and rec.work == 0


def test_advance_reaches_the_listener_with_the_current_phase():
    seen = []
    with phases.recording(lambda done, name: seen.append((done, name))) as rec:
        with phases.phase("a"):
            phases.advance(2)
        phases.advance(3)
    assert seen == [(2, "a"), (5, "")] and rec.work == 5


def test_centre_window_is_the_image_when_it_fits_else_a_centred_view():
    small = image(30, 40)
    assert centre_window(small, 40) is small
    big = image(50, 70)
    w = centre_window(big, 20)
    assert w.shape == (20, 20, 3) and np.shares_memory(w, big)
    assert np.array_equal(w, big[15:35, 25:45])
    assert centre_window(big, 60).shape == (50, 60, 3)


@pytest.mark.parametrize("schedule,name", [("cosine", "CHECK_WINDOW"), ("policy", "WINDOW")])
def test_reconstruction_check_uses_the_window_only_for_large_images(monkeypatch, schedule, name):
    cfg = TrainConfig.make("zssr", iters=2, crop=16, eval_every=1, schedule=schedule)
    small = Trainer(image(40, 44), cfg)
    assert small.recon_in.shape == (40, 44, 3)
    monkeypatch.setattr(data, name, 24)
    big = Trainer(image(40, 44), cfg)
    assert big.recon_in.shape == (24, 24, 3) and big.recon_img.shape == (24, 24, 3)
    assert np.isfinite(big.reconstruction_error())


def test_weighted_sources_are_drawn_as_if_whole():
    img = image(40, 40)
    src = image(60, 60, seed=1)  # a x1.5 result
    whole = CropSampler(img, 2.0, crop=16, sources=[(src, 1.5)])
    same = CropSampler(img, 2.0, crop=16, sources=[(src, 1.5, 1.0)])
    assert np.array_equal(whole.p, same.p)  # weight 1: exactly the old pool
    # the same result made for a 20x20 window: its copies count 4 times their area
    win = image(30, 30, seed=2)
    part = CropSampler(img, 2.0, crop=16, sources=[(win, 1.5, 4.0)])
    assert [f.shape[:2] for f in part.fathers][-1] == (30, 30)  # copies of the window's own size
    a = CropSampler(img, (1.5, 2.0), crop=16, sources=[(win, (1.5, 1.5), 4.0)], source_levels=(1.0, 0.8))
    n_img = len(a.fathers) - 2
    areas = np.array([f.shape[0] * f.shape[1] for f in a.fathers], float)
    areas[n_img:] *= 4
    assert np.allclose(a.p, areas / areas.sum())


def test_large_image_intermediate_results_come_from_the_centre_window(monkeypatch):
    monkeypatch.setattr(data, "WINDOW", 24)
    seen = []
    import zssr.engine.infer as infer

    real = infer.super_resolve

    def spy(net, lr, *a, **k):
        seen.append(lr.shape[:2])
        return real(net, lr, *a, **k)

    monkeypatch.setattr(infer, "super_resolve", spy)
    pools = []
    real_release = Trainer.release

    def keep(self):
        pools.append([f.shape[:2] for f in self.sampler.fathers])
        real_release(self)

    monkeypatch.setattr(Trainer, "release", keep)
    cfg = TrainConfig.make("zssr", iters=12, crop=8, eval_every=0)
    sr, trainers, _ = train_and_upscale(image(30, 36), cfg, ensemble=False, back_projection=1)
    assert sr.shape == (60, 72, 3) and len(trainers) == 6
    assert seen == [(24, 24)] * 5 + [(30, 36)]  # five intermediate results of the window, the last of all
    assert (48, 36) in pools[-1]  # the (2, 1.5) result of the window, at its whole size
    assert all(t.sampler is None and not t.net._cache for t in trainers)  # pools released as the job goes


def _spy_transforms(monkeypatch):
    import zssr.engine.infer as infer

    seen, real = [], infer.super_resolve

    def spy(net, lr, *a, **k):
        seen.append((k.get("size"), k.get("transforms")))
        return real(net, lr, *a, **k)

    monkeypatch.setattr(infer, "super_resolve", spy)
    return seen


def test_a_large_result_gets_four_ensemble_members_unless_ensemble_is_asked(monkeypatch, tmp_path):
    import zssr.engine.job as job
    from zssr.engine.io import save_image

    monkeypatch.setattr(job, "FULL_ENSEMBLE_MAX_PIXELS", 60 * 72 - 1)  # the 60x72 result is "large"
    cfg = TrainConfig.make("fast", iters=8, crop=8, eval_every=0)
    seen = _spy_transforms(monkeypatch)
    train_and_upscale(image(30, 36), cfg, back_projection=1)
    assert seen[-1] == ((60, 72), data.AXIS_TRANSFORMS)   # the last network: 4 members
    assert len(seen[0][1]) == 8                          # the x1.5 network's smaller result: all 8
    seen.clear()
    train_and_upscale(image(30, 36), cfg, back_projection=1, ensemble=True)  # --ensemble: all 8
    assert [len(t) for _, t in seen] == [8, 8]
    # the progress bar's plan counts the members run
    small, full = planned_work(cfg, (30, 36)), planned_work(cfg, (30, 36), ensemble=True)
    assert full - small == pytest.approx(4 * 60 * 72)
    src = tmp_path / "in.png"
    save_image(src, image(30, 36))
    done = []
    upscale_file(src, tmp_path / "out.png", cfg, progress=lambda d, t, name: done.append((d, t)))
    assert done[-1][1] == pytest.approx(small) and done[-1][0] <= small * 1.001


def test_a_saved_model_upscales_a_large_result_with_four_members(monkeypatch):
    import zssr
    import zssr.engine.job as job

    model = zssr.train(image(24, 28), scale=2, preset="fast", iters=4, crop=8)
    seen = _spy_transforms(monkeypatch)
    model.upscale(image(24, 28), back_projection=0)
    assert seen[-1][1] is None  # 48x56: all 8
    monkeypatch.setattr(job, "FULL_ENSEMBLE_MAX_PIXELS", 48 * 56 - 1)
    model.upscale(image(24, 28), back_projection=0)
    assert seen[-1][1] == data.AXIS_TRANSFORMS
    model.upscale(image(24, 28), back_projection=0, ensemble=True)
    assert seen[-1][1] is None
    model.upscale(image(24, 28), back_projection=0, ensemble=False)
    assert seen[-1][1] is None


@pytest.mark.parametrize("preset", ["zssr", "fast", "seed"])
def test_progress_reaches_the_planned_work(tmp_path, preset):
    from zssr.engine.io import save_image

    src = tmp_path / "in.png"
    save_image(src, image(24, 28))
    extra = dict(iters=12, crop=8) if preset != "seed" else dict(epochs=1, max_side=0)
    cfg = TrainConfig.make(preset, **extra)
    seen = []
    r = upscale_file(src, tmp_path / "out.png", cfg, progress=lambda d, t, name: seen.append((d, t, name)))
    done, total = seen[-1][0], seen[-1][1]
    assert total == pytest.approx(planned_work(cfg, (24, 28)))
    assert all(b[0] >= a[0] for a, b in zip(seen, seen[1:]))  # never backwards
    if preset == "seed":
        assert done == pytest.approx(total)
    else:  # crops are exact here but for the fathers smaller than a crop: within a few per cent
        assert 0.9 * total <= done <= total * 1.001
    names = {n for _, _, n in seen}
    assert {"train: steps", "upscale: network"} <= names
    assert r["phases"]["train: steps"] > 0 and r["phases"]["upscale: network"] > 0
    assert r["phase_summary"].startswith(max(r["phases"], key=r["phases"].get))  # largest first


def test_upscale_prints_the_time_by_phase(run_cli, small_rgb, tmp_path):
    code, stdout, stderr = run_cli("upscale", small_rgb, "-o", tmp_path / "sr.png", "--preset", "fast",
                                   "--iters", "8", "--crop", "16")
    assert code == 0, stderr
    line = next(l for l in stdout.splitlines() if l.startswith("time by phase:"))
    assert "train: steps" in line and "upscale: network" in line


def test_benchmark_e2e_reports_phases(run_cli, tmp_path):
    import json

    from zssr.engine import benchmark as B

    assert B.e2e_photo().shape == (150, 200, 3) and B.e2e_photo((30, 44)).shape == (30, 44, 3)
    out = tmp_path / "e2e.json"
    code, stdout, stderr = run_cli("benchmark", "--e2e", "--preset", "fast", "--iters", "4", "--json", out)
    assert code == 0, stderr
    assert "zssr upscale chelsea (200x150) x2, preset fast, 4 iterations" in stdout
    assert "train: steps" in stdout and "upscale: network" in stdout
    r = json.loads(out.read_text())["e2e"]
    assert r["iterations"] == 4 and r["phases"]["train: steps"] > 0
    assert sum(r["phases"].values()) <= r["seconds"] + 1e-6
    assert r["precision"] == "float32" and "inference in float32 products" in stdout  # conftest: float32
