"""Folder throughput on Dask: eight small images (48x48, x2, 20 training iterations) upscaled
by `engine.batch.upscale_folder` on local clusters (one Dask thread per worker process):

- ``1w1t``: one worker with one Numba thread (NUMBA_NUM_THREADS=1 set before the worker starts);
- ``2w``: two workers, one Numba thread each (cores // workers on 2 cores, as zssr sets it);
- ``1w``: one worker as zssr sets it, with all the cores as Numba threads.

    python -m pytest bench/bench_batch.py --benchmark-only

``ratio_2_over_1`` (2w over 1w1t: the same worker, twice as many; the target on the 2-core
machines is >= 1.7) shows how the folder scales with workers. ``ratio_2_over_1_all_threads``
(2w over 1w) shows what a second process adds to one that already has all the cores as Numba
threads: on small images Numba's own threads scale well, so expect little.

All clusters are started and warmed up (Numba's cache loaded in every worker) before any
timing; the sides are then alternated, one whole folder each, `ROUNDS` times. The timed call
includes what a user waits for apart from the cluster start: connecting the client, shipping
the images, training, upscaling and writing the results. Ratios are medians of the per-round
ratios. The load average is stored too: on a shared, loaded machine the ratios are not worth
much.
"""
import logging
import os
import statistics
import time

import numpy as np
import pytest

from zssr.engine.batch import cores, kept_environ, upscale_folder
from zssr.engine.train import TrainConfig

IMAGES, SIZE, ITERS, ROUNDS = 8, 48, 20, 3
CFG = TrainConfig.make("zssr", iters=ITERS, crop=32, scale=2.0)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("batch") / "in"
    path.mkdir()
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    for i in range(IMAGES):
        base = np.stack([(x * (3 + i)) % 256, (y * 5 + x * i) % 256, ((x // 6 + y // 5) % 2) * 180 + 40], -1)
        noise = rng.integers(0, 24, (SIZE, SIZE, 3))
        Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(path / f"img{i}.png")
    return path


SIDES = {"1w1t": (1, {"NUMBA_NUM_THREADS": "1"}), "2w": (2, {}), "1w": (1, {})}


@pytest.fixture(scope="module")
def clusters(folder, tmp_path_factory):
    """{side: scheduler address} for the local clusters of SIDES, all warmed up on the folder."""
    distributed = pytest.importorskip("distributed")
    import dask

    made = {}
    try:
        for side, (n, env) in SIDES.items():
            # set in the environment the worker process is spawned with (before numba is imported);
            # kept_environ: the nanny also writes it into this process's environment
            spawn_env = {**dask.config.get("distributed.nanny.pre-spawn-environ"), **env}
            with kept_environ(), dask.config.set({"distributed.nanny.pre-spawn-environ": spawn_env}):
                made[side] = distributed.LocalCluster(
                    n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                    scheduler_kwargs={"dashboard_address": ":0"}, silence_logs=logging.ERROR)
            r = upscale_folder(folder, tmp_path_factory.mktemp(f"warm{side}"), CFG, scheduler=made[side].scheduler_address)
            assert len(r["done"]) == IMAGES, r["failed"]
        yield {side: c.scheduler_address for side, c in made.items()}
    finally:
        for c in made.values():
            c.close()


@pytest.mark.benchmark(group=f"batch {IMAGES} images {SIZE}x{SIZE}, 1 and 2 workers alternated")
def test_folder_throughput_1_vs_2_workers(benchmark, clusters, folder, tmp_path):
    seconds = {side: [] for side in SIDES}
    threads = {}

    def one_round():
        for side in SIDES:
            t0 = time.perf_counter()
            r = upscale_folder(folder, tmp_path / side, CFG, scheduler=clusters[side], force=True)
            seconds[side].append(time.perf_counter() - t0)
            assert len(r["done"]) == IMAGES and not r["failed"], r["failed"]
            threads[side] = sorted(set(r["threads"].values()))

    benchmark.pedantic(one_round, rounds=ROUNDS, warmup_rounds=0, iterations=1)
    assert threads == {"1w1t": [1], "2w": [max(1, cores() // 2)], "1w": [cores()]}, threads
    ips = {side: IMAGES / statistics.median(s) for side, s in seconds.items()}
    ratio = statistics.median(a / b for a, b in zip(seconds["1w1t"], seconds["2w"]))
    ratio_all = statistics.median(a / b for a, b in zip(seconds["1w"], seconds["2w"]))
    load = [round(v, 2) for v in os.getloadavg()]
    benchmark.extra_info.update(
        images=IMAGES, size=SIZE, iters=ITERS, cores=cores(), rounds=len(seconds["2w"]),
        numba_threads={side: threads[side] for side in SIDES},
        images_per_s={side: round(v, 3) for side, v in ips.items()},
        ratio_2_over_1=round(ratio, 3), ratio_2_over_1_all_threads=round(ratio_all, 3), load_avg=load,
    )
    print("\n" + ", ".join(f"{side} ({threads[side]} Numba threads) {ips[side]:.2f} img/s" for side in SIDES)
          + f"; 2w/1w1t {ratio:.2f}, 2w/1w {ratio_all:.2f}; load average {load[0]}")
