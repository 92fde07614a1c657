"""The training loop: presets, learning-rate schedules, health checks, exact resume.

One iteration: a training pair from the recipe (data.py) -> forward -> loss -> backward ->
optimiser step. Every `eval_every` iterations: the reconstruction error (the network applied
to the blurry twin of the whole image, against the image), the learning-rate policy (when
that is the schedule), and a health check. Everything random comes from one numpy
Generator seeded by `seed`, and its state is in the checkpoint: interrupted at 20 of 40
iterations and resumed, training gives bitwise the weights of 40 straight.

Presets:
* "seed": the course report's method exactly: pyramid of whole images, fed one at a time
  in epochs, MSE as 1/2 sum (y - t)^2, plain SGD W := W - lr dE/dW, no residual, biases.
* "zssr" (the default): ZSSR's recipe: random crops with flips/rotations, residual
  learning, no biases, L1 loss, Adam; ZSSR's gradual super-resolution, six networks per
  x2 step at anisotropic then isotropic factors (`anisotropic`, `gradual`; each starting
  from the previous one and also learning from all earlier results: see job.py), each
  trained for a fixed share of `iters` with a cosine learning rate from `lr` down to
  `min_lr`. `schedule="policy"` is ZSSR's own rule instead (divide the rate by 10 when
  the reconstruction error stops falling, stop below `min_lr`), and gradual=1 with
  anisotropic=False its one-jump setting: on Set5 x2 the two (iters 1500) measured
  36.96 dB in 45 s per image (README has this preset's figures).
* "fast": the same recipe cut to two networks per x2 step (x1.5, then x2) and half the
  iterations: about half the time, about 0.1 dB less (README).
"""
import hashlib
import time
from dataclasses import asdict, dataclass, fields

import numpy as np

from . import data
from .data import SOURCE_LEVELS, CropSampler, Pyramid, centre_window, degrade, factor_pair, shrink_to
from .errors import UserError
from .network import Network
from .optim import make_optimizer
from .phases import advance, phase

TRAIN_COST = 3.0  # a training step costs about three forward passes (phases.advance's units)


@dataclass
class TrainConfig:
    preset: str = "zssr"
    scale: float = 2.0
    recipe: str = "crops"          # "crops" (ZSSR) or "pyramid" (seed)
    iters: int = 4400              # iterations per upscaling step, over its gradual sub-steps
                                   # (schedule "policy": an upper bound; it usually stops first)
    epochs: int = 0                # pyramid recipe: passes over the pyramid (overrides iters)
    time_budget: float = 0.0       # seconds; 0 = none
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    loss: str = "l1"
    bias: bool = False
    residual: bool = True
    init: str = "zssr"
    width: int = 64
    depth: int = 8
    crop: int = 96
    max_side: int = 0              # shrink the input so its longer side is at most this (0: never)
    levels: int = 4                # pyramid recipe: number of sharp copies
    noise: float = 0.0
    seed: int = 0
    schedule: str = "cosine"       # "cosine", "policy" (ZSSR's) or "constant"
    gradual: int = 2               # networks trained per upscaling step (1: ZSSR's one jump)
    anisotropic: bool = True       # ZSSR's chain: 3 networks per gradual factor, (1, 1.5), (1.5, 1), (1.5, 1.5), ...
    eval_every: int = 50           # iterations between reconstruction-error measurements
    policy_check_every: int = 60
    slope_range: int = 256         # iterations of recent reconstruction errors fitted by a line
    slope_ratio: float = 1.5
    min_lr: float = 9e-6
    min_iters: int = 256
    ensemble: bool = True          # inference defaults stored with the model
    back_projection: int = 10

    @classmethod
    def preset_defaults(cls, preset):
        if preset == "zssr":
            return cls()
        if preset == "fast":
            return cls(preset="fast", anisotropic=False, iters=2200)
        if preset == "seed":
            return cls(preset="seed", recipe="pyramid", epochs=30, iters=0, lr=2e-7, optimizer="sgd",
                       momentum=0.0, loss="sse", bias=True, residual=False, init="he", max_side=500,
                       schedule="constant", gradual=1, eval_every=0, ensemble=False, back_projection=0,
                       anisotropic=False)
        raise UserError(f"unknown preset {preset!r}; use 'zssr', 'fast' or 'seed'")

    @classmethod
    def make(cls, preset="zssr", **overrides):
        """The preset's defaults with `overrides` (None values ignored) applied and checked."""
        cfg = cls.preset_defaults(preset)
        names = {f.name for f in fields(cls)}
        for k, v in overrides.items():
            if k not in names:
                raise ValueError(f"unknown training option {k!r}")
            if v is not None:
                setattr(cfg, k, v)
        cfg.check()
        return cfg

    def check(self):
        bad = []
        if not (np.isfinite(self.scale) and self.scale > 1):
            bad.append(f"--scale must be a number > 1, got {self.scale}")
        if not (np.isfinite(self.lr) and self.lr > 0):
            bad.append(f"--lr must be > 0, got {self.lr}")
        if self.iters < 0 or self.epochs < 0:
            bad.append("--iters and --epochs must be >= 0")
        if self.recipe == "crops" and self.iters < 1:
            bad.append("--iters must be >= 1")
        if self.recipe == "pyramid" and self.iters < 1 and self.epochs < 1:
            bad.append("give --epochs or --iters >= 1")
        if self.crop < 4:
            bad.append(f"--crop must be >= 4, got {self.crop}")
        if not (self.noise >= 0 and np.isfinite(self.noise)):
            bad.append(f"--noise must be >= 0, got {self.noise}")
        if self.time_budget < 0 or not np.isfinite(self.time_budget):
            bad.append("--time-budget must be >= 0 seconds")
        if self.optimizer not in ("sgd", "adam"):
            bad.append(f"--optimizer must be sgd or adam, got {self.optimizer}")
        if self.loss not in ("mse", "l1", "sse"):
            bad.append(f"--loss must be mse, l1 or sse, got {self.loss}")
        if self.schedule not in ("cosine", "policy", "constant"):
            bad.append(f"schedule must be cosine, policy or constant, got {self.schedule}")
        if self.gradual < 1:
            bad.append(f"gradual must be >= 1, got {self.gradual}")
        if self.anisotropic and self.recipe != "crops":
            bad.append("--anisotropic is a zssr-preset setting (random crops), not the seed preset's")
        if self.recipe not in ("crops", "pyramid"):
            bad.append(f"recipe must be crops or pyramid, got {self.recipe}")
        if not 0 <= self.momentum < 1:
            bad.append(f"--momentum must be in [0, 1), got {self.momentum}")
        if self.max_side < 0:
            bad.append("--max-side must be >= 0")
        if bad:
            raise UserError("; ".join(bad))


def image_digest(img):
    return hashlib.sha256(np.ascontiguousarray(img, np.float32).tobytes()).hexdigest()[:16]


class Trainer:
    """Trains a Network on one image. `run()` until done; `state()` for a checkpoint."""

    def __init__(self, img, cfg, kernel=None, gt=None, sources=(), start=None, factor=None, kernel_jitter=None):
        """sources: earlier results of upscaling `img` as (image, factor) pairs, learnt from
        too (gradual super-resolution); start: a Network whose weights to start from;
        factor: (sy, sx) to learn instead of cfg.scale on both axes (the anisotropic chain;
        with cfg.anisotropic the sources are pooled by `data.SOURCE_LEVELS`); kernel_jitter:
        draw each random crop's kernel around an estimated `kernel` (`KernelEstimate.jitter`;
        the crops recipes only, the seed preset's pyramid keeps `kernel`)."""
        from . import warm

        warm.start()  # a first run on this machine: half of the kernels compile in a child (warm.py)
        self.cfg = cfg
        self.img = shrink_to(np.ascontiguousarray(img, np.float32), cfg.max_side)
        self.kernel = kernel
        self.gt = gt
        self.factor = (float(cfg.scale), float(cfg.scale)) if factor is None else factor_pair(factor)
        self.net = Network(width=cfg.width, depth=cfg.depth, residual=cfg.residual, bias=cfg.bias,
                           seed=cfg.seed, init=cfg.init)
        if start is not None:
            for p, q in zip(self.net.params, start.params):
                p[...] = q
        self.opt = make_optimizer(cfg.optimizer, self.net, cfg.lr, momentum=cfg.momentum)
        self.rng = np.random.default_rng(cfg.seed)
        if cfg.recipe == "pyramid":
            self.pyramid = Pyramid(self.img, cfg.scale, levels=cfg.levels, kernel=kernel)
            self.total = cfg.epochs * len(self.pyramid) if cfg.epochs else cfg.iters
            self.sampler = None
        else:
            self.sampler = CropSampler(self.img, self.factor, crop=cfg.crop, kernel=kernel, noise=cfg.noise,
                                       sources=sources, source_levels=SOURCE_LEVELS if cfg.anisotropic else None,
                                       kernel_jitter=kernel_jitter if kernel is not None else None)
            self.total = cfg.iters
            self.pyramid = None
        # the reconstruction error is measured on the image, or on its centre window when it is
        # large: ZSSR's policy steers by it (data.WINDOW); the other schedules only check health
        # by it (data.CHECK_WINDOW), every eval_every iterations, so that checking costs little
        side = data.WINDOW if cfg.schedule == "policy" else data.CHECK_WINDOW
        self.recon_img = np.ascontiguousarray(centre_window(self.img, side)) if cfg.eval_every else None
        self.recon_in = degrade(self.recon_img, self.factor, kernel) if cfg.eval_every else None
        # the reconstruction error of doing nothing (the blurry twin itself): a network far
        # worse than that has diverged, even while its numbers are still finite
        self.recon_base = float(np.mean((self.recon_in - self.recon_img) ** 2)) if cfg.eval_every else None
        self.iteration = 0
        self.history = {"iter": [], "loss": []}
        self.evals = {"iter": [], "recon": [], "lr": [], "psnr": []}
        self.epoch_loss = []
        self.events = []
        self.lr_change_iter = 0
        self.lr_scale = 1.0            # the cosine schedule's factor, lowered by divergence recovery
        self.offset = 0                # iterations of earlier sub-steps of the same job (progress bars)
        self.stop_requested = False
        self.stop_reason = ""
        self._good = None
        self._epoch_acc = []
        self.seconds = 0.0

    # -- one iteration ---------------------------------------------------------------------
    def next_pair(self):
        if self.pyramid is not None:
            return self.pyramid.pair(self.iteration)
        return self.sampler.sample(self.rng)

    def step(self):
        with phase("train: pairs"):
            blurry, sharp = self.next_pair()
        with phase("train: steps"):
            loss = self.net.loss_and_backward(blurry, sharp, self.cfg.loss)
            advance(TRAIN_COST * blurry.shape[0] * blurry.shape[1])
        if not np.isfinite(loss):
            self._recover(f"loss became {loss} at iteration {self.iteration + 1}")
            return loss
        if self.iteration < 3 and self.net.dead_layers():
            self._reinit(f"network dead at iteration {self.iteration}: layer {self.net.dead_layers()[0] + 1} outputs zero everywhere")
            return loss
        if self.cfg.schedule == "cosine":
            self.opt.lr = self.scheduled_lr()
        with np.errstate(over="ignore", invalid="ignore"), phase("train: steps"):  # divergence is handled below
            self.opt.step()
        self.iteration += 1
        self.history["iter"].append(self.iteration)
        self.history["loss"].append(float(loss))
        if self.pyramid is not None:
            self._epoch_acc.append(float(loss))
            if self.iteration % len(self.pyramid) == 0:
                self.epoch_loss.append(float(np.mean(self._epoch_acc)))
                self._epoch_acc = []
        if self.cfg.eval_every and self.iteration % self.cfg.eval_every == 0:
            with phase("train: checks"):
                self.evaluate()
        if self.cfg.schedule == "policy" and self.iteration % self.cfg.policy_check_every == 0:
            self._policy()
        return loss

    # -- measurement, policy, health -------------------------------------------------------
    def scheduled_lr(self):
        """The cosine schedule's rate for the current iteration: lr at the first, min_lr at
        the last (times lr_scale)."""
        cfg = self.cfg
        x = min(self.iteration / max(self.total - 1, 1), 1.0)
        return self.lr_scale * (cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + np.cos(np.pi * x)))

    def reconstruction_error(self):
        """MSE of the network applied to the blurry twin of the image (of its centre window
        when it is large, see __init__), against it."""
        from .infer import apply_network

        out = apply_network(self.net, self.recon_in, exact=True)  # training-time checks: float32 products
        with np.errstate(over="ignore", invalid="ignore"):
            return float(np.mean((out - self.recon_img) ** 2))

    def psnr_against_gt(self):
        """PSNR (Y, border = scale) of a quick super-resolution (no ensemble, no
        back-projection) of the training image against the ground truth given with --gt."""
        from .infer import super_resolve
        from .metrics import psnr_y

        sr = super_resolve(self.net, self.img, size=self.gt.shape[:2], ensemble=False, back_projection=0)
        return float(psnr_y(sr, self.gt, border=int(round(self.cfg.scale))))

    def evaluate(self):
        rec = self.reconstruction_error()
        self.evals["iter"].append(self.iteration)
        self.evals["recon"].append(rec)
        self.evals["lr"].append(self.opt.lr)
        self.evals["psnr"].append(self.psnr_against_gt() if self.gt is not None else float("nan"))
        if not np.isfinite(rec) or not all(np.all(np.isfinite(p)) for p in self.net.params):
            self._recover(f"weights or reconstruction became non-finite at iteration {self.iteration}")
            return
        if rec > 100.0 * max(self.recon_base, 1e-6):
            self._recover(f"reconstruction error exploded at iteration {self.iteration} ({rec:.3g})")
            return
        dead = self.net.dead_layers()
        if dead:
            self._reinit(f"network dead at iteration {self.iteration}: layer {dead[0] + 1} outputs zero everywhere")
            return
        recs = self.evals["recon"]
        if len(recs) >= 3 and self.iteration <= 20 * self.cfg.eval_every and \
                np.ptp(recs[-3:]) <= 1e-9 * max(abs(recs[-1]), 1e-12) and recs[0] == recs[-1]:
            self._reinit(f"network dead: reconstruction error flat at {recs[-1]:.9g} since the start")
            return
        self._good = self._snapshot()

    def _policy(self):
        """ZSSR's rule: fit a line to the reconstruction errors of the last `slope_range`
        iterations; when the fitted slope is not clearly negative (-ratio * slope < its
        standard error), divide the learning rate by 10."""
        cfg = self.cfg
        if self.iteration - self.lr_change_iter <= cfg.slope_range:
            return
        its = np.array(self.evals["iter"], np.float64)
        recs = np.array(self.evals["recon"], np.float64)
        sel = its > self.iteration - cfg.slope_range
        if sel.sum() < 4:
            return
        (slope, _), cov = np.polyfit(its[sel], recs[sel], 1, cov=True)
        std = float(np.sqrt(max(cov[0, 0], 0.0)))
        if -cfg.slope_ratio * slope < std:
            self.opt.lr /= 10.0
            self.lr_change_iter = self.iteration
            self.events.append(f"iteration {self.iteration}: learning rate -> {self.opt.lr:.3g}")

    def _snapshot(self):
        return ([p.copy() for p in self.net.params], [a.copy() for a in self.opt.state()["arrays"]],
                self.opt.t, self.opt.lr)

    def _recover(self, why):
        """Roll back to the last healthy state and lower the learning rate tenfold."""
        if self._good is None:
            self._reinit(why + "; no healthy state yet")
            self.opt.lr /= 10.0
            self.lr_scale /= 10.0
            return
        params, arrays, t, lr = self._good
        for p, s in zip(self.net.params, params):
            p[...] = s
        self.opt.load_state({"t": t, "lr": min(lr, self.opt.lr) / 10.0, "arrays": arrays})
        self.lr_scale /= 10.0
        self.lr_change_iter = self.iteration
        self.events.append(f"{why}: rolled back to the last good state, learning rate -> {self.opt.lr:.3g}")
        if self.opt.lr < self.cfg.min_lr * 1e-3 or self.lr_scale < 1e-3:
            raise UserError(f"training keeps diverging ({why}); try a smaller --lr")

    def _reinit(self, why):
        attempt = sum(1 for e in self.events if "re-initialised" in e) + 1
        if attempt > 3:
            raise UserError(f"{why}, three times; try --no-bias or another --seed")
        seed = self.cfg.seed + 1000 * attempt
        self.net.reinitialize(seed)
        lr = self.opt.lr
        self.opt = make_optimizer(self.cfg.optimizer, self.net, lr, momentum=self.cfg.momentum)
        self.evals = {k: [] for k in self.evals}
        self.lr_change_iter = self.iteration
        self.events.append(f"{why}: re-initialised with seed {seed}")

    def release(self):
        """Drop what only training needs: the pool of fathers (copies of the image and of
        the earlier results, hundreds of MB for a large photo) and the network's buffers.
        The weights, optimiser state and history stay (for meta() and checkpoints)."""
        self.sampler = self.pyramid = None
        self.net.release()

    # -- the loop ------------------------------------------------------------------------
    def done(self):
        cfg = self.cfg
        if self.stop_requested:
            return True
        if self.iteration >= self.total:
            self.stop_reason = self.stop_reason or "iterations done"
            return True
        if cfg.schedule == "policy" and self.opt.lr < cfg.min_lr and self.iteration >= cfg.min_iters:
            self.stop_reason = "learning rate below the minimum"
            return True
        if cfg.time_budget and self.seconds >= cfg.time_budget:
            self.stop_reason = "time budget reached"
            return True
        return False

    def run(self, callback=None):
        """Train until done (or stop_requested). callback(trainer) after every iteration."""
        while not self.done():
            t0 = time.perf_counter()
            self.step()
            self.seconds += time.perf_counter() - t0
            if callback is not None:
                callback(self)
        return self

    # -- checkpoints ---------------------------------------------------------------------
    def meta(self, image_path=None):
        return {
            "kind": "zssr-model",
            "config": asdict(self.cfg),
            "iteration": self.iteration,
            "seconds": self.seconds,
            "rng": self.rng.bit_generator.state,
            "lr_change_iter": self.lr_change_iter,
            "lr_scale": self.lr_scale,
            "history": self.history,
            "evals": self.evals,
            "epoch_loss": self.epoch_loss,
            "epoch_acc": self._epoch_acc,
            "events": self.events,
            "image": {"digest": image_digest(self.img), "shape": list(self.img.shape), "path": str(image_path or "")},
            "stop_reason": self.stop_reason,
        }

    def restore(self, meta, opt_arrays, net):
        """Continue from a checkpoint's state (the same image and options)."""
        if meta.get("image", {}).get("digest") != image_digest(self.img):
            raise UserError("the checkpoint was made from another image (or other --max-side); resume with the same input")
        for p, q in zip(self.net.params, net.params):
            p[...] = q
        o = meta.get("optimizer", {})
        if o.get("kind") != self.cfg.optimizer:
            raise UserError(f"the checkpoint used optimizer {o.get('kind')}, not {self.cfg.optimizer}")
        self.opt.load_state({"t": o["t"], "lr": o["lr"], "arrays": opt_arrays})
        self.rng.bit_generator.state = meta["rng"]
        self.iteration = int(meta["iteration"])
        self.seconds = float(meta.get("seconds", 0.0))
        self.lr_change_iter = int(meta["lr_change_iter"])
        self.lr_scale = float(meta.get("lr_scale", 1.0))
        self.history = meta["history"]
        self.evals = meta["evals"]
        self.epoch_loss = meta["epoch_loss"]
        self._epoch_acc = meta["epoch_acc"]
        self.events = meta["events"]
        self._good = self._snapshot()
