"""Where a job's time goes: wall-clock seconds per phase, each second counted once.

    with phases.recording() as rec:          # around a whole job (upscale_file does it)
        ...
        with phases.phase("train: steps"):   # anywhere below it, at any depth
            ...
    rec.seconds   # {"train: steps": 81.2, ...}

`advance(units)` counts work done, so that a progress bar over the whole job (training and
inference alike) can show an honest ETA; job.planned_work says how much there will be.

Phases nest: time inside an inner phase is the inner phase's alone (the outer one is
paused), so the figures add up to the time recorded. Outside `recording()` a phase costs
a function call and records nothing. One recorder per process (a job runs in one process;
Dask workers are processes of their own).
"""
import time
from contextlib import contextmanager

_active = None  # the Recorder of the job in progress, or None


class Recorder:
    """Seconds per phase, and the work done so far (`advance`), for progress bars: `listener`
    (if given) is called as listener(work_done, current_phase) at every advance."""

    def __init__(self, listener=None):
        self.seconds = {}
        self.work = 0.0
        self.listener = listener
        self._stack = []
        self._since = time.perf_counter()
        self._t0 = self._since

    def current(self):
        return self._stack[-1] if self._stack else ""

    def _charge(self, now):
        if self._stack:
            name = self._stack[-1]
            self.seconds[name] = self.seconds.get(name, 0.0) + now - self._since
        self._since = now

    def enter(self, name):
        self._charge(time.perf_counter())
        self._stack.append(name)

    def leave(self):
        self._charge(time.perf_counter())
        self._stack.pop()

    def total(self):
        """Seconds since recording started."""
        return time.perf_counter() - self._t0

    def summary(self, total=None):
        """'train: steps 81.2 s, ...' largest first, with the unaccounted rest as 'other';
        phases under 0.5% of the total are left out."""
        total = self.total() if total is None else total
        least = 0.005 * total
        items = sorted(((k, v) for k, v in self.seconds.items() if v >= least), key=lambda kv: -kv[1])
        rest = total - sum(self.seconds.values())
        if rest >= least:
            items.append(("other", rest))
        return ", ".join(f"{k} {v:.1f} s" for k, v in items)


@contextmanager
def recording(listener=None):
    """Record the phases of the code run inside; yields the Recorder."""
    global _active
    prev, rec = _active, Recorder(listener)
    _active = rec
    try:
        yield rec
    finally:
        _active = prev


@contextmanager
def phase(name):
    """Count the time of the block as `name` (if a recording is in progress)."""
    rec = _active
    if rec is None:
        yield
        return
    rec.enter(name)
    try:
        yield
    finally:
        rec.leave()


def advance(units):
    """Count `units` of work done (pixels through the network: a training step on an
    h x w crop is 3 h w, an inference h w per ensemble member), for progress bars."""
    rec = _active
    if rec is not None:
        rec.work += units
        if rec.listener is not None:
            rec.listener(rec.work, rec.current())
