"""Upscale a folder of images: in this process, or one task per image on a Dask cluster.

`upscale_folder` lists the images, skips those already done, and runs `engine.job.upscale_file`
on every other one:

- one worker and no scheduler: in this process, one image after another (Numba uses all the
  cores for each image);
- ``workers`` > 1: on an embedded ``distributed.LocalCluster`` of that many processes (one
  thread each), closed at the end;
- ``scheduler="tcp://HOST:PORT"``: on an existing Dask cluster (``dask scheduler`` and
  ``dask worker`` processes, on any number of machines).

On a cluster every image is one task running `upscale_task`. The task carries the image
file's bytes and returns the result file's bytes, so the workers need zssr installed but no
shared file system; the client writes each result atomically (temporary name, then rename)
as soon as it arrives. Only a few tasks per worker thread are in flight at a time, so a big
folder is never held in memory at once. Each task sets Numba's thread count so that the
zssr worker processes of one machine times their threads do not exceed its cores, and
within one process tasks run one at a time (Numba's threading layers must not be entered
by two threads at once).

A bad image never stops the others: the task catches the error and returns it as one line;
it is reported in ``failed``.
"""
import logging
import os
import tempfile
import threading
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from .errors import UserError
from .io import list_images

CONNECT_TIMEOUT = 5.0  # seconds to reach a scheduler, and to wait for its first worker
IN_FLIGHT_PER_THREAD = 2  # tasks submitted ahead, per worker thread of the cluster

_TASK_LOCK = threading.Lock()  # one image at a time in a worker process


def cores():
    """CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def numba_threads(processes_on_host):
    """Numba threads for one of `processes_on_host` zssr worker processes on this machine:
    cores // processes, at least 1, at most the NUMBA_NUM_THREADS fixed at numba's import."""
    import numba

    return max(1, min(numba.config.NUMBA_NUM_THREADS, cores() // max(1, processes_on_host)))


@contextmanager
def kept_environ():
    """Put os.environ back as it was on exit. A Nanny starting a local worker writes its
    ``distributed.nanny.pre-spawn-environ`` (OMP_NUM_THREADS=1, OPENBLAS_NUM_THREADS=1, ...)
    into the environment of the process that starts it, where it would outlive the cluster."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        for k in [k for k in os.environ if k not in saved]:
            del os.environ[k]
        for k, v in saved.items():
            if os.environ.get(k) != v:
                os.environ[k] = v


def worker_max_memory(max_memory=None):
    """Bytes one image may use in this process: ``max_memory`` (None: the default, 3/4 of
    the machine), and on a Dask worker at most that worker's memory limit (its nanny
    would kill it beyond)."""
    from .memory import default_max_memory

    want = default_max_memory() if max_memory is None else max_memory
    try:
        from distributed import get_worker

        limit = get_worker().memory_manager.memory_limit
    except (ImportError, ValueError, AttributeError):  # not on a worker
        limit = None
    return min(want, limit) if limit else want


def plan(folder, outdir, force=False):
    """Check the folders and create `outdir`; returns (todo [(src, dst)], skipped [names])."""
    folder, outdir = Path(folder), Path(outdir)
    files = list_images(folder)
    if outdir.exists() and not outdir.is_dir():
        raise UserError(f"{outdir} is a file; with a folder input, --output must be a folder")
    if outdir.resolve() == folder.resolve():
        raise UserError("the output folder must differ from the input folder")
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the output folder {outdir}: {e.strerror or e}") from None
    todo, skipped = [], []
    for src in files:
        dst = outdir / src.name
        if dst.exists() and not force:
            skipped.append(src.name)
        else:
            todo.append((src, dst))
    return todo, skipped


def _one_line(e):
    """An exception as one line: a UserError's message, else 'Type: message'."""
    msg = str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}".rstrip(": ")
    return " ".join(msg.split())


def upscale_task(name, data, cfg, opts, host_processes, src_label, dst_label):
    """One image, on a Dask worker: `data` is the input file's bytes, saved under `name` in
    a temporary folder; returns a dict with ok, error (one line) and the result's bytes.

    host_processes: {host: zssr worker processes there}, from the scheduler, to choose
    Numba's thread count. Never raises for a bad image."""
    import numba

    from .job import upscale_file

    try:
        from distributed import get_worker
        from distributed.comm import get_address_host

        address = get_worker().address
        host = get_address_host(address)
    except (ImportError, ValueError):  # called outside a worker (tests, debugging)
        address, host = None, None
    threads = numba_threads(host_processes.get(host, 1))
    out = {"name": name, "ok": False, "error": None, "data": None, "worker": address, "threads": threads}
    with _TASK_LOCK, tempfile.TemporaryDirectory(prefix="zssr-") as tmp:
        numba.set_num_threads(threads)  # per calling thread: set in the task itself
        src, dst = Path(tmp) / "in" / name, Path(tmp) / "out" / name
        t0 = time.perf_counter()
        try:
            src.parent.mkdir()
            dst.parent.mkdir()
            src.write_bytes(data)
            opts = dict(opts, max_memory=worker_max_memory(opts.get("max_memory")))
            _apply_precision(opts.pop("precision", None))
            r = upscale_file(src, dst, cfg, force=True, **opts)
            out.update(ok=True, data=dst.read_bytes(), iterations=r["iterations"], shape=r["shape"])
        except Exception as e:  # noqa: BLE001 - reported, never raised: the other images go on
            out["error"] = _one_line(e).replace(str(src), src_label).replace(str(dst), dst_label)
        out["seconds"] = time.perf_counter() - t0
    return out


def _connect(scheduler, workers):
    """(client, cluster or None): a client of the scheduler at `scheduler`, else of a new
    LocalCluster of `workers` processes with one thread each."""
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False)
        except Exception as e:  # noqa: BLE001 - OSError (refused, timed out, unknown host), TimeoutError
            timed_out = isinstance(e, TimeoutError) or "timed out" in str(e).lower()
            why = f"no answer within {CONNECT_TIMEOUT:g} s" if timed_out else _one_line(e)
            raise UserError(f"cannot reach the Dask scheduler at {scheduler} ({why}); "
                            "start one with `dask scheduler`, or check the address and the firewall") from None
        try:
            client.wait_for_workers(1, timeout=CONNECT_TIMEOUT)
        except Exception:  # noqa: BLE001 - a timeout
            client.close()
            raise UserError(f"the Dask scheduler at {scheduler} has no workers; start some with "
                            f"`dask worker {scheduler} --nworkers 1 --nthreads 1`") from None
        return client, None
    try:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None, scheduler_kwargs={"dashboard_address": ":0"},
                               silence_logs=logging.ERROR)  # no dashboard; health routes on a free port
    except Exception as e:  # noqa: BLE001 - OSError, RuntimeError("Nanny failed to start")
        raise UserError(f"cannot start {workers} local worker processes ({_one_line(e)})") from None
    client = Client(cluster, set_as_default=False)
    client.wait_for_workers(workers)
    return client, cluster


def _apply_precision(precision):
    """set_precision in this (worker) process; a CPU without AVX-512 BF16 asked for
    "bfloat16" is a UserError (reported per image)."""
    if precision is None:
        return
    from .kernels import conv3x3

    try:
        conv3x3.set_precision(precision)
    except ValueError as e:
        raise UserError(str(e)) from None


def _run_in_process(todo, cfg, opts, result, progress):
    from .job import upscale_file

    opts = dict(opts, max_memory=worker_max_memory(opts.get("max_memory")))
    _apply_precision(opts.pop("precision", None))
    for i, (src, dst) in enumerate(todo):
        try:
            upscale_file(src, dst, cfg, force=True, **opts)
            result["done"].append(src.name)
        except Exception as e:  # noqa: BLE001 - a bad image never stops the others
            result["failed"].append((src.name, _one_line(e)))
        if progress:
            progress(i + 1, len(todo), src.name)


def _run_on_cluster(todo, cfg, opts, result, progress, scheduler, workers):
    with kept_environ():
        client, cluster = _connect(scheduler, workers)
        try:
            _submit_and_collect(client, todo, cfg, opts, result, progress)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


def _submit_and_collect(client, todo, cfg, opts, result, progress):
    """Submit the images a few at a time; write each result as it arrives."""
    from distributed import as_completed

    from .io import atomic_write

    info = client.scheduler_info(n_workers=-1)
    hosts = Counter(w["host"] for w in info["workers"].values())
    window = max(2, IN_FLIGHT_PER_THREAD * sum(w["nthreads"] for w in info["workers"].values()))
    result["workers"] = len(info["workers"])
    run_id = uuid.uuid4().hex[:8]
    queue = iter(enumerate(todo))
    running = as_completed(loop=client.loop)
    where = {}  # future key -> (src, dst)
    count = 0

    def finish(src, error=None):
        nonlocal count
        if error is None:
            result["done"].append(src.name)
        else:
            result["failed"].append((src.name, error))
        count += 1
        if progress:
            progress(count, len(todo), src.name)

    def submit_next():
        for i, (src, dst) in queue:
            try:
                data = src.read_bytes()
            except OSError as e:
                finish(src, f"{src}: cannot read it: {e.strerror or e}")
                continue
            fut = client.submit(upscale_task, src.name, data, cfg, opts, dict(hosts), str(src), str(dst),
                                key=f"zssr-upscale-{run_id}-{i}", pure=False)
            where[fut.key] = (src, dst)
            running.add(fut)
            return

    for _ in range(window):
        submit_next()
    for fut in running:
        src, dst = where.pop(fut.key)
        try:
            r = fut.result()
        except Exception as e:  # noqa: BLE001 - a worker died, the task was cancelled, ...
            finish(src, f"{src.name}: the task failed on the cluster ({_one_line(e)})")
        else:
            if r["worker"]:
                result["threads"][r["worker"]] = r["threads"]
            if r["ok"]:
                try:
                    atomic_write(dst, lambda tmp, data=r["data"]: Path(tmp).write_bytes(data))
                    finish(src)
                except UserError as e:
                    finish(src, str(e))
            else:
                finish(src, r["error"])
        fut.release()
        submit_next()


def upscale_folder(folder, outdir, cfg, kernel=None, steps=1, ensemble=None, back_projection=None, tile=None,
                   force=False, workers=None, scheduler=None, progress=None, max_memory=None, precision=None):
    """Upscale every image of `folder` into `outdir` (same file names), training on each one
    with the TrainConfig `cfg`. Outputs that exist are kept unless `force`.

    workers: local worker processes (default: min(images to do, cores)); 1 runs in this
    process. scheduler: the address of an existing Dask scheduler (then `workers` must be
    None). progress(done, total, name) is called as images finish, in completion order, and
    once with (0, total, None) before the first. max_memory: bytes per image (None: 3/4 of
    the machine), on a Dask worker at most the worker's memory limit; an image whose job
    would need more fails before any work, with the figures. precision: inference's
    products on every worker ("auto", "float32", "bfloat16"; None: each process's own
    setting, see conv3x3.set_precision); "auto" is decided by each worker's CPU.

    Returns {"done": [names], "skipped": [names], "failed": [(name, one-line reason)],
    "workers": processes used (0: this process), "threads": {worker address: Numba threads}}.
    """
    if scheduler and workers is not None:
        raise UserError("--workers is for the local cluster; with --scheduler the cluster's own workers are used")
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    if scheduler:
        from distributed.comm import get_address_host_port

        try:
            get_address_host_port(scheduler)
        except (ValueError, TypeError):
            raise UserError(f"--scheduler must look like tcp://HOST:PORT (e.g. tcp://10.0.0.5:8786), "
                            f"got {scheduler!r}") from None
    todo, skipped = plan(folder, outdir, force)
    result = {"done": [], "skipped": skipped, "failed": [], "workers": 0, "threads": {}}
    if not todo:
        return result
    if progress:
        progress(0, len(todo), None)
    opts = dict(kernel=kernel, steps=steps, ensemble=ensemble, back_projection=back_projection, tile=tile,
                max_memory=max_memory, precision=precision)
    if workers is None:
        workers = min(len(todo), cores())
    if scheduler or workers > 1:
        _run_on_cluster(todo, cfg, opts, result, progress, scheduler, workers)
    else:
        _run_in_process(todo, cfg, opts, result, progress)
    order = {src.name: i for i, (src, _) in enumerate(todo)}
    result["done"].sort(key=order.get)
    result["failed"].sort(key=lambda f: order[f[0]])
    return result
