"""`zssr upscale FOLDER` on Dask: a real scheduler and two worker processes on 127.0.0.1,
a folder with a broken file, a rerun; the embedded local cluster; bad cluster options."""
import numpy as np
import pytest
from PIL import Image

from conftest import write_png

TINY = ["-s", "2", "--iters", "3", "--crop", "16", "--no-ensemble"]
GOOD = ("a.png", "b.png", "c.png")


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    import logging

    from zssr.engine.batch import kept_environ

    # kept_environ: the nannies would leave OMP_NUM_THREADS=1 etc. in this process's environment
    with kept_environ(), distributed.LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None,
                                  scheduler_kwargs={"dashboard_address": ":0"}, silence_logs=logging.ERROR) as c:
        yield c


def make_folder(path, broken=True, names=GOOD):
    path.mkdir()
    rng = np.random.default_rng(7)
    for name in names:
        write_png(path / name, rng.integers(0, 256, (24, 28, 3), dtype=np.uint8))  # 28 wide, 24 high
    if broken:
        (path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (path / "notes.txt").write_text("not an image, not considered")
    return path


def test_folder_on_a_cluster_with_a_broken_file_and_a_rerun(run_cli, cluster, tmp_path):
    src, out = make_folder(tmp_path / "in"), tmp_path / "out"
    code, stdout, stderr = run_cli("upscale", src, "-o", out, *TINY, "--scheduler", cluster.scheduler_address)
    assert code == 1, stderr
    assert "3 upscaled, 0 already done, 1 failed" in stdout
    assert "broken.png" in stdout and "zssr-" not in stdout  # the worker's temporary paths are not shown
    assert sorted(p.name for p in out.iterdir()) == list(GOOD)  # no temporary files left behind
    for name in GOOD:
        with Image.open(out / name) as im:
            im.load()
            assert (im.format, im.size, im.mode) == ("PNG", (56, 48), "RGB")
    stamps = {name: (out / name).stat().st_mtime_ns for name in GOOD}
    code, stdout, _ = run_cli("upscale", src, "-o", out, *TINY, "--scheduler", cluster.scheduler_address)
    assert code == 1 and "0 upscaled, 3 already done, 1 failed" in stdout and "broken.png" in stdout
    assert {name: (out / name).stat().st_mtime_ns for name in GOOD} == stamps


def test_the_engine_api_sets_numba_threads_per_worker(cluster, tmp_path):
    from zssr.engine.batch import cores, upscale_folder
    from zssr.engine.train import TrainConfig

    src = make_folder(tmp_path / "in", broken=False, names=("a.png", "b.png"))
    cfg = TrainConfig.make("zssr", iters=2, crop=16)
    seen = []
    r = upscale_folder(src, tmp_path / "out", cfg, ensemble=False, back_projection=0,
                       scheduler=cluster.scheduler_address, progress=lambda *a: seen.append(a))
    assert r["done"] == ["a.png", "b.png"] and r["failed"] == [] and r["workers"] == 2
    # two zssr workers on this machine: together they use at most its cores
    assert r["threads"] and set(r["threads"].values()) == {max(1, cores() // 2)}
    assert seen[0] == (0, 2, None) and [s[:2] for s in seen[1:]] == [(1, 2), (2, 2)]
    assert sorted(s[2] for s in seen[1:]) == ["a.png", "b.png"]  # in the order they finished


def test_workers_2_without_a_scheduler_starts_a_local_cluster(run_cli, tmp_path):
    import os

    src, out = make_folder(tmp_path / "in", broken=False, names=("a.png", "b.png")), tmp_path / "out"
    env = dict(os.environ)
    code, stdout, stderr = run_cli("upscale", src, "-o", out, *TINY, "--workers", "2")
    assert code == 0, stderr
    assert dict(os.environ) == env  # the nannies' OMP_NUM_THREADS=1 etc. did not leak into this process
    assert "2 upscaled, 0 already done, 0 failed" in stdout and "2 worker(s)" in stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]


def test_a_scheduler_that_cannot_be_reached_is_one_line(run_cli, tmp_path):
    src = make_folder(tmp_path / "in", broken=False, names=("a.png",))
    code, stdout, stderr = run_cli("upscale", src, "-o", tmp_path / "out", *TINY, "--scheduler", "tcp://127.0.0.1:1")
    assert code == 2 and stdout == ""
    assert len(stderr.strip().splitlines()) == 1 and "cannot reach the Dask scheduler" in stderr
    assert not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("opts,match", [
    (["--scheduler", "nonsense"], "tcp://HOST:PORT"),
    (["--workers", "0"], "--workers must be >= 1"),
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "--workers is for the local cluster"),
])
def test_bad_cluster_options(run_cli, tmp_path, opts, match):
    src = make_folder(tmp_path / "in", broken=False, names=("a.png",))
    code, _, stderr = run_cli("upscale", src, "-o", tmp_path / "out", *TINY, *opts)
    assert code == 2 and match in stderr and len(stderr.strip().splitlines()) == 1


def test_cluster_options_take_a_folder(run_cli, small_rgb, tmp_path):
    code, _, stderr = run_cli("upscale", small_rgb, "-o", tmp_path / "x.png", *TINY, "--workers", "2")
    assert code == 2 and "take a folder" in stderr and not (tmp_path / "x.png").exists()


def test_a_task_reports_a_bad_image_with_the_callers_paths():
    from zssr.engine.batch import upscale_task
    from zssr.engine.train import TrainConfig

    r = upscale_task("broken.png", b"not an image", TrainConfig.make("zssr", iters=1, crop=16), {}, {},
                     "/photos/broken.png", "/out/broken.png")
    assert not r["ok"] and r["data"] is None
    assert r["error"].startswith("/photos/broken.png") and "\n" not in r["error"] and "zssr-" not in r["error"]
