"""Figures: the loss curve of a training run, and a bicubic-versus-ours comparison.

matplotlib (Agg backend, no screen needed) draws them; files are written atomically.
"""
import numpy as np


def _save(fig, path):
    from .io import atomic_write

    def writer(tmp):
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")

    try:
        atomic_write(path, writer)
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def _figure(*args, **kwargs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def smooth(values, window):
    """Moving average over `window` points (shorter at the start)."""
    v = np.asarray(values, np.float64)
    if v.size == 0 or window <= 1:
        return v
    c = np.cumsum(np.insert(v, 0, 0.0))
    idx = np.arange(1, v.size + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def loss_plot(path, tr):
    """Seed preset: loss per epoch. ZSSR preset: loss per iteration (raw and smoothed), and
    the reconstruction error of the whole image on a second axis."""
    fig, ax = _figure(figsize=(7, 4))
    if tr.epoch_loss:
        ax.plot(np.arange(1, len(tr.epoch_loss) + 1), tr.epoch_loss, marker="o")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{tr.cfg.loss} loss (mean over the pyramid)")
    else:
        it, loss = tr.history["iter"], tr.history["loss"]
        ax.plot(it, loss, color="0.8", lw=0.8, label="loss")
        ax.plot(it, smooth(loss, 25), color="C0", label="loss, smoothed")
        ax.set_xlabel("iteration")
        ax.set_ylabel(f"{tr.cfg.loss} loss")
        if tr.evals["iter"]:
            ax2 = ax.twinx()
            ax2.plot(tr.evals["iter"], tr.evals["recon"], color="C1", marker=".", label="reconstruction MSE")
            ax2.set_ylabel("reconstruction MSE", color="C1")
        ax.legend(loc="upper right")
    ax.set_yscale("log")
    ax.set_title(f"zssr training ({tr.cfg.preset} preset, x{tr.cfg.scale:g})")
    _save(fig, path)


def detail_box(img, size):
    """(y, x) of the size x size window with the most gradient energy (the most detail)."""
    g = img.mean(axis=2) if img.ndim == 3 else img
    e = np.zeros_like(g)
    e[:-1, :] += np.diff(g, axis=0) ** 2
    e[:, :-1] += np.diff(g, axis=1) ** 2
    h, w = g.shape
    size = min(size, h, w)
    c = np.pad(e.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = c[size:, size:] - c[:-size, size:] - c[size:, :-size] + c[:-size, :-size]
    y, x = np.unravel_index(np.argmax(sums), sums.shape)
    return int(y), int(x), size


def comparison(path, lr, sr):
    """Bicubic and ours side by side, each with a zoomed crop of the most detailed region."""
    from matplotlib.patches import Rectangle

    from .kernels.resize import resize

    bic = np.clip(resize(lr, shape=sr.shape[:2]), 0, 1)
    y, x, s = detail_box(sr, max(16, min(sr.shape[:2]) // 4))
    fig, axes = _figure(2, 2, figsize=(9, 9 * (sr.shape[0] / sr.shape[1]) * 0.5 + 4.5))
    for col, (name, im) in enumerate((("bicubic", bic), ("zssr", np.clip(sr, 0, 1)))):
        axes[0, col].imshow(im)
        axes[0, col].add_patch(Rectangle((x, y), s, s, fill=False, edgecolor="red", lw=1.5))
        axes[0, col].set_title(name)
        axes[1, col].imshow(im[y:y + s, x:x + s], interpolation="nearest")
        axes[1, col].set_title(f"{name}, detail")
        for a in axes[:, col]:
            a.set_axis_off()
    _save(fig, path)
