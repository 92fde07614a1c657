"""What the last network's self-ensemble buys: 8, 4 or 2 members on one trained chain.

For each image (ground truth): the literature's x2 LR (engine.evaluate.make_lr), one
`zssr upscale` job's training (train_and_upscale, the preset's defaults), then the last
network applied to the LR again with all 8 dihedral members, the 4 that keep the axes
(data.AXIS_TRANSFORMS, what a result above job.FULL_ENSEMBLE_MAX_PIXELS gets by default)
and 2 (identity, rot180), each with the preset's back-projection. Prints PSNR (Y, border
2) and the seconds of each inference, and the job's own result (which on a large result
is the 4-member one).

    python bench/ensemble_members.py rocket motorcycle retina --preset fast --seed 1
    python bench/ensemble_members.py ../shared/data/Set5/baby.png

An image is a file, or the name of a scikit-image photo (rocket, motorcycle, retina,
astronaut, coffee, chelsea; their original sizes).
"""
import argparse
import json
import time

import numpy as np

from zssr.engine import evaluate, metrics
from zssr.engine.data import AXIS_TRANSFORMS
from zssr.engine.infer import super_resolve
from zssr.engine.job import infer_options, train_and_upscale
from zssr.engine.train import TrainConfig

MEMBERS = {"8": None, "4": AXIS_TRANSFORMS, "2": (0, 2)}


def load(name):
    from skimage import data

    photos = {"rocket": data.rocket, "motorcycle": lambda: data.stereo_motorcycle()[0], "retina": data.retina,
              "astronaut": data.astronaut, "coffee": data.coffee, "chelsea": data.chelsea}
    if name in photos:
        return photos[name]()[..., :3].astype(np.float32) / 255.0
    from zssr.engine.io import load_image

    return load_image(name).rgb


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("images", nargs="+")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--iters", type=int, default=None)
    ap.add_argument("--json", help="write the rows here")
    a = ap.parse_args(argv)
    rows = []
    for name in a.images:
        hr, lr = evaluate.make_lr(load(name), 2)
        cfg = TrainConfig.make(a.preset, seed=a.seed, iters=a.iters)
        sr, trainers, _ = train_and_upscale(lr, cfg)
        _, bp = infer_options({"back_projection": cfg.back_projection})
        row = {"image": name, "lr": list(lr.shape[:2]), "job": metrics.evaluate_pair(metrics.quantize(sr), hr, 2)["psnr"]}
        for label, tf in MEMBERS.items():
            t0 = time.perf_counter()
            out = super_resolve(trainers[-1].net, lr, size=hr.shape[:2], ensemble=True, back_projection=bp, transforms=tf)
            row[f"seconds_{label}"] = time.perf_counter() - t0
            row[f"psnr_{label}"] = metrics.evaluate_pair(metrics.quantize(out), hr, 2)["psnr"]
        rows.append(row)
        print(f"{name} (LR {lr.shape[1]}x{lr.shape[0]}): job {row['job']:.3f} dB; "
              + ", ".join(f"{k} members {row[f'psnr_{k}']:.3f} dB in {row[f'seconds_{k}']:.1f} s" for k in MEMBERS),
              flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
