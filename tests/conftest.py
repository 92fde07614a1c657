"""Shared fixtures: tiny images on disk, the CLI runner, the shared data folder."""
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def write_png(path, arr):
    from PIL import Image

    Image.fromarray(arr).save(path)
    return path


@pytest.fixture(autouse=True)
def float32_inference(monkeypatch):
    """Every test runs inference with float32 products (the training's arithmetic), on every
    CPU, so that its tolerances and bitwise checks mean the same on all machines; the
    bfloat16 default of AVX-512 BF16 CPUs is tested where a test asks for it
    (`bf16_inference`, tests/test_precision.py). Set through the environment too, for the
    CLI run in-process and for child processes (Dask workers, `zssr` subprocesses)."""
    from zssr.engine.kernels import conv3x3

    monkeypatch.setenv("ZSSR_PRECISION", "float32")
    monkeypatch.setattr(conv3x3, "AUTO_INFERENCE", "auto")
    monkeypatch.setattr(conv3x3, "REQUESTED", "float32")


@pytest.fixture
def small_rgb(tmp_path):
    """A 40x48 RGB PNG with some structure (stripes and a gradient)."""
    y, x = np.mgrid[0:40, 0:48]
    img = np.stack([(x * 5) % 256, (y * 7 + x * 3) % 256, ((x // 6 + y // 5) % 2) * 200 + 30], axis=-1).astype(np.uint8)
    return write_png(tmp_path / "small.png", img)


@pytest.fixture
def run_cli():
    """Invoke the zssr app in-process; returns (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    from zssr.cli.main import app

    runner = CliRunner()

    def run(*args):
        res = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
        return res.exit_code, res.stdout, res.stderr

    return run


@pytest.fixture
def shared_data():
    if not SHARED.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED


def pytest_sessionfinish(session, exitstatus):
    """Everything goes through the installed names (zssr.engine, zssr.cli): a stray
    `import engine` would load a second copy of the modules from the checkout."""
    import sys

    stray = sorted(name for name in ("engine", "cli") if name in sys.modules)
    if stray:
        print(f"\nimported by their folder names instead of zssr.*: {', '.join(stray)}")
        session.exitstatus = 1
