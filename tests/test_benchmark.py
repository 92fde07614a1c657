"""engine.benchmark works: right rows, sane numbers, the peer path, the sgemm child's
environment. Nothing here times anything or asserts a speed (see bench/ for that)."""
import json
import math
import os
import subprocess
import sys

import numba
import numpy as np
import pytest

from zssr import engine
from zssr.engine import benchmark as B
from zssr.engine.errors import UserError

TINY = {"conv": [16], "train": 16, "predict": 16, "sgemm": 64}
KEYS = {"op", "size", "ms", "gflops", "mpx_s", "peer_ms", "ratio_peer", "ratio_sgemm"}


def _positive(v):
    return isinstance(v, float) and math.isfinite(v) and v > 0


def test_macs_match_the_design_numbers():
    assert B.network_macs_per_pixel() == 224_640
    assert B.MACS_CONV64 == 36_864
    assert B.train_macs_per_pixel() == 3 * 224_640 - 1_728


def test_plan_default_and_quick():
    full = B.plan()
    assert [s for op, s in full if op == "conv3x3 forward"] == [64, 128, 256]
    assert dict((op, s) for op, s in full if op not in B.OPS_CONV) == {"train_step": 128, "predict": 512, "sgemm": 2048}
    quick = B.plan(quick=True)
    assert {s for op, s in quick if op in B.OPS_CONV} == {128}
    assert dict(quick)["predict"] == 256
    assert {op for op, _ in quick} == set(B.OPS)
    with pytest.raises(UserError):
        B.plan(sizes={"bogus": 3})
    with pytest.raises(UserError):
        B.plan(sizes={"train": 0})


def test_run_quick_without_peer():
    seen = []
    rows = B.run(quick=True, peer="none", sizes=TINY, reps=2, progress=lambda *a: seen.append(a))
    assert [(r["op"], r["size"]) for r in rows] == [
        ("conv3x3 forward", "16x16"), ("conv3x3 input grad", "16x16"), ("conv3x3 weight grad", "16x16"),
        ("train_step", "16x16"), ("predict", "16x16"), ("sgemm", "n=64")]
    for r in rows:
        assert set(r) == KEYS
        assert _positive(r["ms"]) and _positive(r["gflops"]) and _positive(r["ratio_sgemm"])
        assert r["peer_ms"] is None and r["ratio_peer"] is None
        assert (r["mpx_s"] is None) == (r["op"] == "sgemm")
        if r["mpx_s"] is not None:
            assert _positive(r["mpx_s"])
    assert rows[-1]["ratio_sgemm"] == 1.0
    json.dumps(rows)  # --json
    assert seen[-1] == ("done", 6, 6) and [d for _, d, _ in seen] == list(range(7))


def test_format_table_and_machine():
    rows = [
        {"op": "conv3x3 forward", "size": "64x64", "ms": 1.5, "gflops": 200.0, "mpx_s": 2.7,
         "peer_ms": 1.0, "ratio_peer": 1.5, "ratio_sgemm": 0.4},
        {"op": "sgemm", "size": "n=2048", "ms": 40.0, "gflops": 430.0, "mpx_s": None,
         "peer_ms": None, "ratio_peer": None, "ratio_sgemm": 1.0},
    ]
    text = B.format_table(rows, title="zssr benchmark")
    for word in ("conv3x3 forward", "sgemm", "64x64", "n=2048", "200.0", "1.50", "40%"):
        assert word in text
    assert "\x1b[" not in text  # plain text, no colour codes
    m = B.machine()
    assert {"cpu", "cores", "numba_threads", "numpy", "numba", "torch", "python", "load_avg", "llvm_cpu",
            "vector_bits"} <= set(m)
    assert m["vector_bits"] in (256, 512)
    assert f"{m['vector_bits']}-bit vectors" in B.format_machine(m) and "torch" not in B.format_machine(m, torch=False)
    assert m["cores"] == os.cpu_count() and m["numba_threads"] == numba.get_num_threads()
    json.dumps(m)
    line = B.format_scaling({"op": "train_step", "size": "16x16", "threads": 2, "ms_1": 2.0,
                             "ms_n": 1.1, "speedup": 1.82, "efficiency": 0.91})
    assert "1.82x" in line


def test_threads_are_set_and_put_back():
    before = numba.get_num_threads()
    rows = B.run(quick=True, peer="none", sizes=dict(TINY, conv=[]), reps=1, threads=1)
    assert [r["op"] for r in rows] == ["train_step", "predict", "sgemm"]
    assert numba.get_num_threads() == before
    s = B.scaling(size=16, reps=2)
    assert s["threads"] == numba.config.NUMBA_NUM_THREADS and _positive(s["speedup"])
    assert numba.get_num_threads() == before
    for bad in (0, numba.config.NUMBA_NUM_THREADS + 1, 1.5):
        with pytest.raises(UserError):
            B.run(quick=True, peer="none", sizes=TINY, reps=1, threads=bad)
    with pytest.raises(UserError):
        B.run(quick=True, peer="bogus", sizes=TINY, reps=1)


def test_sgemm_child_environment_drops_openblas_only_there(monkeypatch):
    monkeypatch.setenv("OPENBLAS_FAKE_TEST_VAR", "1")  # monkeypatch puts the environment back
    before = dict(os.environ)
    env = B.sgemm_env(threads=1)
    assert env["OPENBLAS_NUM_THREADS"] == "1"
    assert not [k for k in env if k.startswith("OPENBLAS_") and k != "OPENBLAS_NUM_THREADS"]
    assert B.sgemm_env(clean=False)["OPENBLAS_FAKE_TEST_VAR"] == "1"
    assert _positive(B.sgemm_gflops(n=32, reps=2))
    assert dict(os.environ) == before


def test_no_torch_means_no_peer(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails
    rows = B.run(quick=True, peer="auto", sizes=dict(TINY, conv=[]), reps=1)
    assert all(r["ratio_peer"] is None for r in rows)
    with pytest.raises(UserError, match="torch"):
        B.run(quick=True, peer="torch", sizes=TINY, reps=1)


def test_import_is_light():
    code = "import sys, zssr.engine.benchmark; print('torch' in sys.modules, 'rich' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# -- the peer --------------------------------------------------------------------------------

def test_peer_rows_have_ratios():
    pytest.importorskip("torch")
    rows = B.run(quick=True, peer="torch", sizes=TINY, reps=2)
    for r in rows:
        if r["op"] == "sgemm":
            assert r["ratio_peer"] is None
        else:
            assert _positive(r["peer_ms"]) and _positive(r["ratio_peer"])
            assert r["ratio_peer"] == pytest.approx(r["ms"] / r["peer_ms"])


def test_peer_computes_the_same_ops():
    torch = pytest.importorskip("torch")
    for kind in ("forward", "input grad", "weight grad"):
        case = B.conv_case(kind, 12, torch)
        case.ours()
        got = case.peer()
        x, w, dy = case.data["x"], case.data["w"], case.data["dy"]
        if kind == "forward":
            want = engine.conv3x3_forward(x, w)
            peer = got[0].numpy().transpose(1, 2, 0)
        elif kind == "input grad":
            want = engine.conv3x3_backward(x, w, dy)[0]
            peer = got[0][0].numpy().transpose(1, 2, 0)
        else:
            want = engine.conv3x3_backward(x, w, dy, need_dx=False)[1]
            peer = got[1].numpy().transpose(2, 3, 1, 0)
        scale = np.abs(want).max()
        np.testing.assert_allclose(case.result(), want, atol=1e-5 * scale)
        np.testing.assert_allclose(peer, want, atol=1e-4 * scale)

    case = B.predict_case(16, torch)
    case.ours()
    peer = case.peer()[0].numpy().transpose(1, 2, 0)
    np.testing.assert_allclose(peer, case.result(), atol=1e-4)

    # the training step: the same loss on the first step (same weights, same data)
    case = B.train_case(16, torch)
    assert float(case.peer().detach()) == pytest.approx(case.ours(), rel=1e-4)


# ---------------------------------------------------------------- the first-run benchmark

_FAKE_CHILD = r"""
import os, subprocess, sys
src, dst, log = sys.argv[1:4]
cache = os.environ["NUMBA_CACHE_DIR"]
entries = sorted(os.listdir(cache))
with open(log, "a") as f:
    f.write(f"{cache} {','.join(entries) or '-'}\n")
open(os.path.join(cache, "filled"), "w").close()
if len(sys.argv) > 4:  # leave a process behind, as the cache-warming child may be
    g = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    open(sys.argv[4], "w").write(str(g.pid))
    os._exit(0)  # without closing its stdin: it would wait for ever
open(dst, "wb").write(open(src, "rb").read())
"""


def test_cold_start_gives_every_run_a_new_empty_cache_then_reruns_on_it(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "users-own-cache"))
    log = tmp_path / "log.txt"
    work = tmp_path / "work"
    work.mkdir()
    r = B.cold_start(runs=2, workdir=work,
                     command=lambda src, dst, iters: [sys.executable, "-c", _FAKE_CHILD, str(src), str(dst), str(log)])
    lines = [ln.split() for ln in log.read_text().splitlines()]
    assert len(lines) == 4
    (c0, e0), (w0, f0), (c1, e1), (w1, f1) = lines
    assert c0 == w0 and c1 == w1 and c0 != c1  # a cache per run, kept for its second launch
    assert e0 == e1 == "-" and f0 == f1 == "filled"  # empty first, then what the first launch left
    assert "users-own-cache" not in c0 + c1
    assert not (tmp_path / "users-own-cache").exists()
    assert list(work.iterdir()) == []  # the temporary caches and images are gone
    assert r["size"] == "48x40" and r["iters"] == B.COLD_ITERS and len(r["runs"]) == 2
    assert all(_positive(float(v)) for row in r["runs"] for v in row.values())
    assert r["cold_median"] == pytest.approx((r["runs"][0]["cold"] + r["runs"][1]["cold"]) / 2, abs=0.011)
    text = B.format_cold(r)
    assert "run 2" in text and "median" in text and "compiling about" in text


def test_cold_start_stops_what_its_child_left_running(tmp_path):
    pidfile = tmp_path / "pid"
    with pytest.raises(UserError, match="wrote no image"):
        B.cold_start(runs=1, workdir=tmp_path, command=lambda src, dst, iters: [
            sys.executable, "-c", _FAKE_CHILD, str(src), str(dst), str(tmp_path / "log"), str(pidfile)])
    pid = int(pidfile.read_text())
    status = f"/proc/{pid}/status"
    if os.path.exists(status):  # gone, or a zombie waiting for init to reap it
        state = [ln for ln in open(status).read().splitlines() if ln.startswith("State:")]
        assert state and "Z" in state[0].split()[1]


def test_cold_start_reports_a_failing_child_in_one_line(tmp_path):
    with pytest.raises(UserError, match=r"exit 3\): no such thing"):
        B.cold_start(runs=1, workdir=tmp_path, command=lambda src, dst, iters: [
            sys.executable, "-c", "import sys; print('compiling'); print('no such thing'); sys.exit(3)"])
    with pytest.raises(UserError, match="--runs"):
        B.cold_start(runs=0, workdir=tmp_path)


def test_cold_command_is_a_working_upscale(tmp_path):
    # the real command, on the suite's own (warm) cache: it must write the x2 image
    from zssr.engine.io import load_image, save_image

    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    save_image(src, B.e2e_photo(B.COLD_SIZE))
    subprocess.run(B.cold_command(src, dst, iters=2), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=600)
    assert load_image(dst).rgb.shape == (2 * B.COLD_SIZE[0], 2 * B.COLD_SIZE[1], 3)


def test_cli_benchmark_cold(run_cli, tmp_path, monkeypatch):
    log = tmp_path / "log.txt"
    monkeypatch.setattr(B, "cold_command", lambda src, dst, iters: [
        sys.executable, "-c", _FAKE_CHILD, str(src), str(dst), str(log)])
    js = tmp_path / "cold.json"
    code, stdout, stderr = run_cli("benchmark", "--cold", "--runs", "2", "--json", js)
    assert code == 0, stderr
    assert "first run: zssr upscale of a 48x40 image" in stdout and "run 2: first" in stdout
    payload = json.loads(js.read_text())
    assert len(payload["cold"]["runs"]) == 2 and "llvm_cpu" in payload["machine"]
    assert len(log.read_text().splitlines()) == 4
    for bad in (("--cold", "--runs", "0"), ("--cold", "--e2e"), ("--runs", "2", "--quick")):
        code, stdout, stderr = run_cli("benchmark", *bad)
        assert code != 0 and len(stderr.strip().splitlines()) == 1, (bad, stderr)
