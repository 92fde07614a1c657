"""Numba options, set in one place.

Every kernel module takes its decorator from here, so the fastmath flags, caching and
threading choices can be changed (or a kernel debugged) without touching the kernels.

- ``fastmath``: only the flags that allow contraction into FMA and reassociation of
  reductions inside one thread. Results stay deterministic: the same inputs, seed and
  thread count give bitwise the same outputs (reductions across threads are done in a
  fixed order by the kernels themselves).
- ``cache=True``: compiled code is written next to the sources (or to NUMBA_CACHE_DIR), so
  only the first run on a machine pays for compilation.
"""
from numba import njit

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
