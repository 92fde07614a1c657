"""pytest-benchmark suites: collection of bench_*.py, the PyTorch peer, the sgemm reference.

The suites live in files named ``bench_*.py`` so that the main test run (testpaths =
["tests"], default file pattern test_*.py) never times anything. This conftest makes
``python -m pytest bench/`` collect them anyway (see `pytest_collect_file`); naming a file
(``python -m pytest bench/bench_kernels.py``) works too.

Fixtures for the suites:

* ``peer(side)`` -> the torch module for side "torch" (skips the test when torch does not
  import), None for side "zssr"; PyTorch gets Numba's thread count.
* ``measure(case, side, rounds)`` -> times ``case.ours`` or ``case.peer`` with
  ``benchmark.pedantic`` (one warm-up call outside the timing: Numba compilation and the
  first call's allocations) and records GFLOP/s, Mpx/s and the share of sgemm in
  ``benchmark.extra_info``.
* ``sgemm_reference`` -> numpy sgemm GFLOP/s (n = 2048) measured once per session in a child
  process without the OPENBLAS_* variables (see engine.benchmark.sgemm_env). It is also
  written into the saved run's machine_info. ``--no-sgemm`` skips it.
"""
import numba
import pytest

from zssr.engine import benchmark as B

_SGEMM = {}  # measured once per session: {"gflops": ..., "n": ..., "threads": ...}


def pytest_addoption(parser):
    parser.addoption("--no-sgemm", action="store_true", default=False,
                     help="zssr bench: do not measure numpy's sgemm reference (saves a few seconds)")


def pytest_collect_file(file_path, parent):
    """Collect bench_*.py below this folder as test modules. A file named on the command
    line is collected by pytest itself whatever its name: leave it to pytest, or it would
    be collected twice."""
    if file_path.suffix == ".py" and file_path.name.startswith("bench_") \
            and not parent.session.isinitpath(file_path):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_benchmark_update_machine_info(config, machine_info):
    """Saved runs (--benchmark-autosave / --benchmark-save) record the engine's view of the
    machine, and the sgemm reference when this session measured it."""
    machine_info["zssr"] = B.machine()
    if _SGEMM:
        machine_info["zssr"]["sgemm"] = dict(_SGEMM)


@pytest.fixture(scope="session")
def sgemm_reference(request):
    """numpy sgemm GFLOP/s (n = 2048, OPENBLAS_* removed in the child), or None."""
    if request.config.getoption("--no-sgemm") or request.config.getoption("benchmark_disable", False):
        return None
    if not _SGEMM:
        threads = numba.get_num_threads()
        _SGEMM.update(gflops=B.sgemm_gflops(n=2048, threads=threads), n=2048, threads=threads)
    return _SGEMM["gflops"]


@pytest.fixture
def peer(request):
    """Factory: peer(side) -> torch (side "torch"; skips without torch) or None."""
    restore = []

    def get(side):
        if side == "zssr":
            return None
        if side != "torch":
            raise ValueError(f"side must be 'zssr' or 'torch', got {side!r}")
        torch = pytest.importorskip("torch")
        restore.append((torch, torch.get_num_threads()))
        torch.set_num_threads(numba.get_num_threads())
        return torch

    yield get
    for torch, n in restore:
        torch.set_num_threads(n)


@pytest.fixture
def measure(benchmark, sgemm_reference):
    """Factory: measure(case, side, rounds) times one side of an engine.benchmark.Case."""

    def run(case, side, rounds):
        fn = case.ours if side == "zssr" else case.peer
        if fn is None:
            pytest.skip(f"no {side} side for {case.op}")
        info = benchmark.extra_info
        info.update(op=case.op, size=case.size, side=side, threads=numba.get_num_threads(),
                    macs=float(case.macs))
        out = benchmark.pedantic(fn, rounds=rounds, warmup_rounds=1, iterations=1)
        if benchmark.stats:  # None / empty when benchmarks are disabled
            s = benchmark.stats.stats.median
            info["gflops"] = round(case.flops / s / 1e9, 2)
            if case.pixels:
                info["mpx_s"] = round(case.pixels / s / 1e6, 3)
            if sgemm_reference:
                info["sgemm_gflops"] = round(sgemm_reference, 1)
                info["ratio_sgemm"] = round(case.flops / s / 1e9 / sgemm_reference, 3)
        return out

    return run
