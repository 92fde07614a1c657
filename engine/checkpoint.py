"""Checkpoints and models: one .npz format, read with allow_pickle=False.

A file holds plain arrays only:
    format            int, FORMAT_VERSION
    meta              JSON text: network config, training config, optimiser kind/hyper,
                      iteration, RNG state, learning-rate policy state, history, events
    param_0..param_k  the network's parameters, in `Network.params` order
    opt_0..opt_m      the optimiser's state arrays (moments), in its own order
A model for `zssr infer` is the same file (the optimiser part is then ignored).
Writes are atomic: a temporary file in the target folder, then a rename.
"""
import json
import zipfile

import numpy as np

from .errors import UserError
from .network import Network

FORMAT_VERSION = 1


def save(path, net, meta, opt=None, force=True, protect=()):
    """Write net (+ optimiser state) and the JSON-able `meta` dict to `path` atomically."""
    from .io import atomic_write, check_writable

    check_writable(path, force=force, protect=protect)
    arrays = {"format": np.array(FORMAT_VERSION)}
    full = dict(meta, net=net.config())
    if opt is not None:
        st = opt.state()
        full["optimizer"] = {"kind": st["kind"], "t": st["t"], "lr": st["lr"], "hyper": opt.hyper()}
        for i, a in enumerate(st["arrays"]):
            arrays[f"opt_{i}"] = a
    arrays["meta"] = np.array(json.dumps(full))
    for i, p in enumerate(net.params):
        arrays[f"param_{i}"] = p

    def writer(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, writer)


def load(path):
    """Read a checkpoint: returns (net, meta, opt_arrays). Any problem is a UserError."""
    try:
        with np.load(str(path), allow_pickle=False) as z:
            files = dict((k, z[k]) for k in z.files)
    except FileNotFoundError:
        raise UserError(f"model file {path} does not exist") from None
    except IsADirectoryError:
        raise UserError(f"model path {path} is a folder; give a .npz model file") from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        why = "it holds pickled objects, which are never loaded" if "pickle" in str(e) else "it is not a readable .npz file"
        raise UserError(f"{path} is not a zssr model: {why}") from None
    if "format" not in files or "meta" not in files:
        raise UserError(f"{path} is not a zssr model (no format/meta entries)")
    try:
        version = int(files["format"])
        meta = json.loads(str(files["meta"]))
    except (TypeError, ValueError):
        raise UserError(f"{path} is not a zssr model (unreadable format/meta)") from None
    if version > FORMAT_VERSION:
        raise UserError(f"{path} was written by a newer zssr (format {version}; this one reads up to {FORMAT_VERSION}); upgrade zssr")
    cfg = meta.get("net")
    try:
        net = Network(width=cfg["width"], depth=cfg["depth"], residual=cfg["residual"], bias=cfg["bias"],
                      seed=cfg["seed"], init=cfg["init"], dtype=np.dtype(cfg.get("dtype", "float32")))
    except (TypeError, KeyError, ValueError):
        raise UserError(f"{path} is not a zssr model (bad network description)") from None
    params = net.params
    for i, p in enumerate(params):
        a = files.get(f"param_{i}")
        if a is None or a.shape != p.shape or a.dtype != p.dtype:
            got = "missing" if a is None else f"{a.dtype} {a.shape}"
            raise UserError(f"{path}: parameter {i} should be {p.dtype} {p.shape}, got {got}; the file is damaged or not a zssr model")
        if not np.all(np.isfinite(a)):
            raise UserError(f"{path}: parameter {i} holds NaN or inf; the model is unusable")
        p[...] = a
    if f"param_{len(params)}" in files:
        raise UserError(f"{path}: more parameters than its network description has; the file is damaged")
    opt_arrays = []
    while f"opt_{len(opt_arrays)}" in files:
        opt_arrays.append(files[f"opt_{len(opt_arrays)}"])
    return net, meta, opt_arrays
