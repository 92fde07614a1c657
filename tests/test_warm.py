"""The first run's compilation shared with a child process (engine/warm.py)."""
import os
import subprocess
import sys
import textwrap

# after a tiny training job and an ensemble's inference, in a process whose cache the warming child filled first: how
# each warmed kernel was obtained (cache hits, compilations)
_JOB = textwrap.dedent("""
    import numpy as np
    from zssr.engine import warm
    from zssr.engine.train import Trainer, TrainConfig
    assert not warm.is_cold()
    img = np.random.default_rng(0).random((20, 24, 3)).astype(np.float32)
    tr = Trainer(img, TrainConfig.make("zssr", iters=2, crop=12, eval_every=0, anisotropic=False, gradual=1)).run()
    from zssr.engine.infer import apply_network
    apply_network(tr.net, img, ensemble=True)  # the self-ensemble's median
    for d in warm._kernels():
        print(d.py_func.__name__, sum(d.stats.cache_hits.values()), sum(d.stats.cache_misses.values()))
""")


def test_the_child_compiles_what_the_job_then_loads_from_the_cache(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), ZSSR_NO_WARM="1")
    run = lambda code: subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,  # noqa: E731
                                      timeout=600)
    r = run("from zssr.engine import warm; print(warm.is_cold())")
    assert r.returncode == 0 and r.stdout.strip() == "True", r.stderr
    r = subprocess.run([sys.executable, "-m", "zssr.engine.warm"], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    r = run(_JOB)
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines()]
    assert len(rows) == 7
    for name, hits, misses in rows:  # every warmed kernel came from the cache, none was compiled again
        assert int(hits) >= 1 and int(misses) == 0, (name, hits, misses)


def test_start_launches_only_on_a_cold_cache(tmp_path, monkeypatch):
    from zssr.engine import warm

    launched = []
    monkeypatch.setattr(warm.subprocess, "Popen", lambda *a, **k: launched.append(a) or "child")
    monkeypatch.setattr(warm, "_started", False)
    monkeypatch.setattr(warm, "is_cold", lambda: False)
    assert warm.start() is None and launched == []
    monkeypatch.setattr(warm, "_started", False)
    monkeypatch.setattr(warm, "is_cold", lambda: True)
    assert warm.start() == "child" and launched[0][0][1:] == ["-m", "zssr.engine.warm"]
    assert warm.start() is None and len(launched) == 1  # once per process
    monkeypatch.setattr(warm, "_started", False)
    monkeypatch.setenv("ZSSR_NO_WARM", "1")
    assert warm.start() is None and len(launched) == 1


def test_a_kernels_cache_is_stamped_with_every_engine_numba_source():
    """Numba tracks a function's own file only; the kernels inline gemm_tile's intrinsics, so
    their cache stamp also carries the digest of all the engine's Numba sources, and the
    vector width the intrinsics were built for (ZSSR_VECTOR_BITS may force another)."""
    from zssr.engine import _numba
    from zssr.engine.kernels import conv3x3, winograd4

    for kernel in (conv3x3._forward_kernel, winograd4._forward_kernel):
        stamp = kernel._cache._cache_file._source_stamp
        assert isinstance(stamp, tuple) and stamp[1] == (_numba.sources_digest(), _numba.NATIVE_BITS)


def test_the_digest_follows_the_kernels_dependencies_only(tmp_path):
    import shutil

    from zssr.engine import _numba

    root = tmp_path / "engine"
    shutil.copytree(_numba.ROOT, root, ignore=shutil.ignore_patterns("__pycache__", "api"))
    before = _numba.sources_digest(str(root))
    assert before == _numba.sources_digest()
    (root / "job.py").write_text((root / "job.py").read_text() + "\n# not Numba code\n")
    assert _numba.sources_digest(str(root)) == before
    (root / "kernels" / "gemm_tile.py").write_text((root / "kernels" / "gemm_tile.py").read_text() + "\n# changed\n")
    changed = _numba.sources_digest(str(root))
    assert changed != before
    (root / "optim.py").write_text((root / "optim.py").read_text() + "\n# changed\n")
    assert _numba.sources_digest(str(root)) not in (before, changed)
