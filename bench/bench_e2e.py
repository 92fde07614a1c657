"""The main job end to end, as a user runs it: `zssr upscale` x2 of a fixed 200x150 photo
(scikit-image's chelsea, see engine.benchmark.E2E_PHOTO), one round per preset, with the
seconds of every phase (training steps, training pairs, checks, upscaling, back-projection,
...) in ``extra_info``, so that a slowdown anywhere in the job shows, not only in a kernel.

    python -m pytest bench/bench_e2e.py --benchmark-only                # fast and zssr presets (minutes)
    python -m pytest bench/bench_e2e.py --benchmark-only -k fast        # the fast preset alone

`zssr benchmark --e2e [--preset fast]` prints the same measurement as a table.
"""
import pytest

from zssr.engine import benchmark as B


@pytest.mark.benchmark(group="e2e upscale x2 chelsea 200x150")
@pytest.mark.parametrize("preset", ["fast", "zssr"])
def test_e2e_upscale(benchmark, preset):
    B.e2e(preset=preset, iters=12)  # compile and warm the caches outside the timed round
    result = {}

    def run():
        result.update(B.e2e(preset=preset))

    benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    benchmark.extra_info.update(seconds=result["seconds"], iterations=result["iterations"],
                                ms_per_iteration=result["ms_per_iteration"],
                                **{f"s {k}": v for k, v in result["phases"].items()})
    assert result["iterations"] > 0 and result["seconds"] > 0
