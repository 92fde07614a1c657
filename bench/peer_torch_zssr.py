"""A PyTorch ZSSR, the benchmark peer of `zssr upscale` for whole jobs (never imported by
the engine; needs `pip install torch==2.13.0`).

    python bench/peer_torch_zssr.py LR.png -o SR.png --scale 2 [--seed 0] [--threads 2]

ZSSR's one-jump recipe as the paper (Shocher, Cohen and Irani, CVPR 2018) and its
published configuration describe it, written here for this comparison: an 8-layer, 64-channel
3x3 CNN with ReLU, no biases, learning the residual over the bicubic-interpolated input;
"HR fathers" are random 128x128 crops of the image or of a copy downscaled by a factor in
[0.5, 1] (a copy picked with probability proportional to its area), turned by one of the 8
rotations/flips; each one's "LR son" is the father bicubic-downscaled by the scale and
interpolated back to the father's size; L1 loss, Adam (learning rate 1e-3). Every 50
iterations the reconstruction error (the network on the downscaled-and-interpolated image,
against the image); every 60, ZSSR's learning-rate rule: a line fitted to the last 256
iterations' errors, and when its slope is not clearly negative (1.5 x slope against its
standard error) the rate is divided by 10; training stops below 9e-6 (after at least 256
iterations) or at 3000. The result: the median of 8 rotated/flipped passes, each
back-projected 10 times, then back-projected 10 times again.

Resizing (MATLAB-style bicubic) is zssr's own (`zssr.engine.kernels.resize.resize`), so
that both programs see the same training pairs and the comparison is of the rest: the
network's training and inference, which here run in PyTorch (float32, channels first, on
`--threads` threads). Prints one JSON line: seconds by phase, iterations, final rate.
"""
import argparse
import json
import sys
import time

import imageio.v3 as iio
import numpy as np
import torch
from torch import nn

from zssr.engine.kernels.resize import resize

CROP = 128
ITERS_MAX = 3000
ITERS_MIN = 256
LR0 = 1e-3
LR_MIN = 9e-6
EVAL_EVERY = 50
POLICY_EVERY = 60
SLOPE_RANGE = 256
SLOPE_RATIO = 1.5
BACK_PROJECTIONS = 10


def network(seed):
    torch.manual_seed(seed)
    layers = []
    chans = [3] + [64] * 7 + [3]
    for i in range(8):
        conv = nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False)
        nn.init.normal_(conv.weight, 0.0, float(np.sqrt(0.1 / (9 * chans[i]))))
        layers.append(conv)
        if i < 7:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def to_t(img):
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]


def from_t(t):
    return t[0].numpy().transpose(1, 2, 0)


def son(father, s):
    """The father bicubic-downscaled by s, interpolated back to its size."""
    small = resize(father, scale=1.0 / s)
    return resize(small, shape=father.shape[:2])


def predict(net, img):
    with torch.no_grad():
        x = to_t(img)
        return from_t(x + net(x))


def back_project(sr, lr, s, n=BACK_PROJECTIONS):
    for _ in range(n):
        sr = sr + resize(lr - resize(sr, shape=lr.shape[:2]), shape=sr.shape[:2])
    return sr


def run(lr_img, s, seed=0, log=None, max_iters=ITERS_MAX):
    rng = np.random.default_rng(seed)
    net = network(seed)
    opt = torch.optim.Adam(net.parameters(), lr=LR0)
    t0 = time.perf_counter()
    # the fathers' pool: the image and copies downscaled by factors in [0.5, 1)
    pool = [lr_img] + [resize(lr_img, scale=f) for f in np.linspace(0.9, 0.5, 5)]
    pool = [p for p in pool if min(p.shape[:2]) >= 2 * s]
    area = np.array([p.shape[0] * p.shape[1] for p in pool], np.float64)
    rec_input = to_t(son(lr_img, s))
    rec_target = to_t(lr_img)
    its, recs = [], []
    lr_changed = 0
    it = 0
    while it < max_iters:
        src = pool[rng.choice(len(pool), p=area / area.sum())]
        h, w = src.shape[:2]
        ch, cw = min(CROP, h), min(CROP, w)
        y0 = rng.integers(0, h - ch + 1)
        x0 = rng.integers(0, w - cw + 1)
        father = np.rot90(src[y0:y0 + ch, x0:x0 + cw], rng.integers(4))
        if rng.integers(2):
            father = father[:, ::-1]
        father = np.ascontiguousarray(father, np.float32)
        x = to_t(son(father, s))
        out = x + net(x)
        loss = torch.mean(torch.abs(out - to_t(father)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        it += 1
        if it % EVAL_EVERY == 0:
            with torch.no_grad():
                err = rec_input + net(rec_input) - rec_target
                recs.append(float(torch.mean(err * err)))
                its.append(it)
        if it % POLICY_EVERY == 0 and it - lr_changed > SLOPE_RANGE:
            sel = np.array(its) > it - SLOPE_RANGE
            if sel.sum() >= 4:
                (slope, _), cov = np.polyfit(np.array(its)[sel], np.array(recs)[sel], 1, cov=True)
                if -SLOPE_RATIO * slope < np.sqrt(max(cov[0, 0], 0.0)):
                    for g in opt.param_groups:
                        g["lr"] /= 10.0
                    lr_changed = it
        rate = opt.param_groups[0]["lr"]
        if rate < LR_MIN and it >= ITERS_MIN:
            break
        if log and it % 500 == 0:
            log(f"iteration {it}, rate {rate:.3g}, reconstruction {recs[-1] if recs else float('nan'):.3g}")
    t1 = time.perf_counter()
    net.eval()
    H, W = lr_img.shape[0] * s, lr_img.shape[1] * s
    base = resize(lr_img, shape=(H, W))
    members = []
    for k in range(8):
        b = np.rot90(base, k % 4)
        if k >= 4:
            b = b[:, ::-1]
        o = predict(net, np.ascontiguousarray(b, np.float32))
        if k >= 4:
            o = o[:, ::-1]
        o = np.rot90(o, -(k % 4))
        members.append(back_project(np.ascontiguousarray(o), lr_img, s))
    sr = back_project(np.median(np.stack(members), axis=0).astype(np.float32), lr_img, s)
    t2 = time.perf_counter()
    return np.clip(sr, 0.0, 1.0), {"train_s": t1 - t0, "infer_s": t2 - t1, "iterations": it,
                                    "final_rate": opt.param_groups[0]["lr"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="PyTorch threads (0: all cores)")
    ap.add_argument("--max-iters", type=int, default=ITERS_MAX, help="upper bound on iterations (3000: ZSSR's)")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    t_start = time.perf_counter()
    if a.threads:
        torch.set_num_threads(a.threads)
    img = iio.imread(a.input)
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    lr_img = np.ascontiguousarray(img[..., :3], np.float32) / 255.0
    log = (lambda m: print(m, file=sys.stderr, flush=True)) if a.verbose else None
    sr, info = run(lr_img, a.scale, a.seed, log, a.max_iters)
    iio.imwrite(a.output, np.round(sr * 255.0).astype(np.uint8))
    info["total_s"] = time.perf_counter() - t_start
    info["torch_threads"] = torch.get_num_threads()
    print(json.dumps(info))


if __name__ == "__main__":
    main()
