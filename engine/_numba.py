"""Numba options, set in one place.

Every kernel module takes its decorator from here, so the fastmath flags, caching and
threading choices can be changed (or a kernel debugged) without touching the kernels.

- ``fastmath``: only the flags that allow contraction into FMA and reassociation of
  reductions inside one thread. Results stay deterministic: the same inputs, seed and
  thread count give bitwise the same outputs (reductions across threads are done in a
  fixed order by the kernels themselves).
- ``cache=True``: compiled code is written next to the sources (or to NUMBA_CACHE_DIR), so
  only the first run on a machine pays for compilation. Numba keys a function's cache on
  its own source file only, but the kernels inline code from other modules (gemm_tile's
  intrinsics above all): a change there alone would leave every kernel that uses it
  running its old compiled code. So the stamp of every engine function's cache also
  carries a digest of all the engine's Numba sources (`sources_digest`) and the vector
  width the intrinsics are built for (`NATIVE_BITS`), and any change to
  them recompiles the kernels on the next run (`_track_dependencies`).
"""
import functools
import hashlib
import os

from numba import njit

ROOT = os.path.dirname(os.path.abspath(__file__))


def sources_digest(root=ROOT):
    """sha256 over the engine's Numba sources: this file, every kernels/*.py, and every
    engine module that takes its decorators from here."""
    names = [os.path.join("kernels", f) for f in os.listdir(os.path.join(root, "kernels")) if f.endswith(".py")]
    for f in os.listdir(root):
        if f.endswith(".py"):
            with open(os.path.join(root, f), encoding="utf-8") as fh:
                if f == "_numba.py" or "_numba import" in fh.read():
                    names.append(f)
    h = hashlib.sha256()
    for name in sorted(names):
        with open(os.path.join(root, name), "rb") as fh:
            h.update(name.encode() + b"\0" + fh.read() + b"\0")
    return h.hexdigest()


def native_vector_bits():
    """The width of the vector registers the engine's intrinsics are written for: 512 on CPUs
    with AVX-512 (32 registers of 16 float32), else 256 (AVX2: 16 registers of 8). The
    kernels' data layout stays in 16-float32 blocks either way (`gemm_tile.lanes`); on 256
    bits the register tiles are cut into pieces that fit 16 registers (`gemm_tile`).
    ZSSR_VECTOR_BITS=256 forces the AVX2 form (to test it on an AVX-512 machine)."""
    forced = os.environ.get("ZSSR_VECTOR_BITS", "").strip()
    if forced in ("256", "512"):
        return int(forced)
    from numba.core import config

    if config.CPU_NAME not in (None, "host"):
        return 512 if "+avx512f" in (config.CPU_FEATURES or "") else 256
    return 512 if host_has("avx512f") else 256


@functools.lru_cache(maxsize=None)
def host_has(feature):
    """Whether the host CPU has `feature` (LLVM's name: "avx512f", "avx512bf16"), asked of
    LLVM once per process and feature (the question costs about 0.5 ms)."""
    try:
        import llvmlite.binding as llvm

        return bool(llvm.get_host_cpu_features().get(feature, False))
    except RuntimeError:
        return False


NATIVE_BITS = native_vector_bits()


def _track_dependencies():
    """Make the cache stamp of functions defined under ROOT (source hash, sources_digest()),
    by wrapping Numba's cache locators. Does nothing on a Numba without these internals
    (then only a function's own file is tracked, as Numba does by itself)."""
    try:
        from numba.core import caching
        impl = caching.CacheImpl
        classes = list(impl._locator_classes)
    except (ImportError, AttributeError):
        return
    if getattr(impl, "_zssr_digest", None):
        return
    digest = (sources_digest(), NATIVE_BITS)  # the intrinsics' code depends on the vector width
    prefix = ROOT + os.sep

    def wrap(base):
        class Locator(base):
            def get_source_stamp(self):
                stamp = super().get_source_stamp()
                if os.path.abspath(getattr(self, "_py_file", "") or "").startswith(prefix):
                    return (stamp, digest)
                return stamp

        Locator.__name__ = Locator.__qualname__ = "Zssr" + base.__name__
        return Locator

    impl._locator_classes = [wrap(c) for c in classes]
    impl._zssr_digest = digest


_track_dependencies()

FASTMATH = {"contract", "reassoc", "nsz", "arcp"}

JIT = dict(cache=True, nogil=True, fastmath=FASTMATH)
"""Options for serial kernels."""

PJIT = dict(JIT, parallel=True)
"""Options for kernels that use ``prange``."""


def jit(fn=None, **extra):
    """``numba.njit`` with the project's serial options."""
    opts = dict(JIT, **extra)
    return njit(**opts)(fn) if fn is not None else njit(**opts)


def pjit(fn=None, **extra):
    """``numba.njit`` with the project's parallel options."""
    opts = dict(PJIT, **extra)
    return njit(**opts)(fn) if fn is not None else njit(**opts)
