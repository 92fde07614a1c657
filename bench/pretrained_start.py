"""What a network trained beforehand on other photos buys as the job's starting point.

An experiment, not a feature: zssr is zero-shot (every network starts from random weights
and learns from the one image). This measures what the job would gain if its first network
started instead from weights learnt once, on other photos, for plain bicubic x2 (the idea of
meta-transfer zero-shot SR, MZSR, Soh, Cho and Cho, CVPR 2020, without its meta-learning):

    python bench/pretrained_start.py pretrain -o start.npz --iters 8000
    python bench/pretrained_start.py compare start.npz ../shared/data/Set5 samples \
        --preset fast --iters 2200,1100 --json out.json

`pretrain` trains one network (the fast preset's settings, x2, bicubic, random crops) on a
mosaic of twelve scikit-image photos and textures, none of them in Set5 or samples/ (rocket,
immunohistochemistry, stereo_motorcycle, hubble_deep_field, camera, coins, moon, brick,
grass, gravel, retina, colorwheel; each a 256x256 centre crop, shrunk first to 320 px when
larger), and saves it as a zssr model file. `compare` runs, for each ground-truth image,
the literature's x2 LR through the preset's whole job (`job.train_and_upscale`) from
random weights at the first budget, and with its first network starting from the file at
every budget given; later networks start from the one before, as always. PSNR on luma,
border 2. Run it with NUMBA_NUM_THREADS=1 for results that do not depend on the threads.
"""
import argparse
import json
import os
import time

import numpy as np

from zssr.engine import checkpoint, evaluate, metrics, train
from zssr.engine import job

PHOTOS = ["rocket", "immunohistochemistry", "stereo_motorcycle", "hubble_deep_field", "camera", "coins", "moon",
          "brick", "grass", "gravel", "retina", "colorwheel"]


def mosaic():
    """The twelve photos' 256x256 crops, 3 rows of 4: a 768x1024 RGB image in [0, 1]."""
    import skimage.data as sd

    from zssr.engine.kernels.resize import resize

    tiles = []
    for name in PHOTOS:
        x = getattr(sd, name)()
        x = x[0] if isinstance(x, tuple) else x
        x = np.repeat(x[:, :, None], 3, 2) if x.ndim == 2 else x[:, :, :3]
        x = x.astype(np.float32) / 255
        h, w = x.shape[:2]
        s = min(h, w)
        x = x[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        if s > 320:
            x = np.clip(resize(x, shape=(320, 320)), 0, 1)
        c = (x.shape[0] - 256) // 2
        tiles.append(x[c:c + 256, c:c + 256])
    rows = [np.concatenate(tiles[i:i + 4], 1) for i in range(0, 12, 4)]
    return np.ascontiguousarray(np.concatenate(rows, 0), np.float32)


def pretrain(out, iters, seed):
    from dataclasses import replace

    from zssr.engine.train import Trainer

    cfg = train.TrainConfig.make("fast", iters=iters, seed=seed)
    tr = Trainer(mosaic(), replace(cfg, scale=2.0), factor=(2.0, 2.0))
    t = time.time()
    tr.run(None)
    print(f"pretrained {iters} iterations in {time.time() - t:.0f} s")
    checkpoint.save(out, tr.net, {"pretrained_on": PHOTOS, "iters": iters, "seed": seed})


def images(paths):
    """(name, RGB) of each image given, or of each image in a folder given (io.list_images)."""
    from zssr.engine.io import list_images, load_image

    for p in paths:
        for f in list_images(p) if os.path.isdir(p) else [p]:
            yield os.path.splitext(os.path.basename(f))[0], load_image(f).rgb


def run_job(lr, cfg, first):
    """The preset's job, its first network starting from `first` (a Network) when given
    (Trainer's own `start` is how every later network starts from the one before)."""
    orig = train.Trainer.__init__

    def init(self, img, c, *a, start=None, **k):
        orig(self, img, c, *a, start=start if start is not None else first, **k)

    train.Trainer.__init__ = init
    try:
        return job.train_and_upscale(lr, cfg)[0]
    finally:
        train.Trainer.__init__ = orig


def compare(weights, paths, preset, budgets, seed, out_json):
    start, _, _ = checkpoint.load(weights)
    runs = [("random", budgets[0])] + [("pretrained", n) for n in budgets]
    rows = []
    for name, hr in images(paths):
        hr, lr = evaluate.make_lr(hr, 2)
        for how, n in runs:
            cfg = train.TrainConfig.make(preset, iters=n, seed=seed)
            t = time.time()
            sr = run_job(lr, cfg, start if how == "pretrained" else None)
            dt = time.time() - t
            p = metrics.evaluate_pair(metrics.quantize(sr), hr, 2)["psnr"]
            rows.append({"image": name, "start": how, "iters": n, "psnr": p, "seconds": dt})
            print(f"{name:12s} {how:10s} {n:5d} iterations  {p:.3f} dB  {dt:.0f} s", flush=True)
    for how, n in runs:
        sel = [r for r in rows if r["start"] == how and r["iters"] == n]
        print(f"mean  {how:10s} {n:5d} iterations  {np.mean([r['psnr'] for r in sel]):.3f} dB  "
              f"{np.mean([r['seconds'] for r in sel]):.0f} s per image")
    if out_json:
        with open(out_json, "w") as f:
            json.dump(rows, f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("pretrain", help="train the starting network on the mosaic")
    a.add_argument("-o", "--output", required=True)
    a.add_argument("--iters", type=int, default=8000)
    a.add_argument("--seed", type=int, default=0)
    b = sub.add_parser("compare", help="random start against the pretrained one, per image")
    b.add_argument("weights")
    b.add_argument("paths", nargs="+", help="ground-truth images or folders of PNGs")
    b.add_argument("--preset", default="fast")
    b.add_argument("--iters", default="2200,1100", help="budgets: the first for the random start too")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--json")
    args = ap.parse_args()
    if args.cmd == "pretrain":
        pretrain(args.output, args.iters, args.seed)
    else:
        compare(args.weights, args.paths, args.preset, [int(n) for n in args.iters.split(",")], args.seed, args.json)


if __name__ == "__main__":
    main()
