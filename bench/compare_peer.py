"""Whole jobs side by side: `zssr upscale` against the PyTorch ZSSR (peer_torch_zssr.py) on
images with ground truth, as a user runs them (one process per job, start-up included).

    python bench/compare_peer.py ../shared/data/Set5 samples --scale 2 --out /tmp/cmp
    python bench/compare_peer.py samples --only zssr-fast,torch --json cmp.json

For every image (the literature's protocol, engine/evaluate.py): the HR cropped to a
multiple of the scale, its MATLAB-bicubic LR saved as a PNG; then each contender upscales
that PNG in its own process, the contenders' order rotating from image to image so that a
drift of the machine's speed falls on all of them; PSNR / SSIM on luma with the scale's
border. Contenders: "zssr" (`zssr upscale`, defaults), "zssr-fast" (`--preset fast`),
"zssr-onejump" (zssr with the peer's recipe: ZSSR's learning-rate rule, one network, at
most 3000 iterations on 128-pixel crops), "torch" (the peer; needs torch) and, only when
asked for, "zssr-w512" (the defaults with the 512-bit register tiles forced:
on a CPU without AVX-512, the code before 2026-12-03). Prints a table and the ratios of the medians of seconds;
--json writes every row (with the last line each job printed: the peer's phases and
iterations, zssr's summary). The OPENBLAS_* variables are removed from the jobs' environment
(the peer's products may go through a BLAS).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from zssr.engine import evaluate, metrics
from zssr.engine.io import list_images

HERE = Path(__file__).resolve().parent
CONTENDERS = {
    "zssr": lambda lr, out, s, seed: ["zssr", "upscale", lr, "-o", out, "--scale", str(s), "--seed", str(seed)],
    "zssr-fast": lambda lr, out, s, seed: ["zssr", "upscale", lr, "-o", out, "--scale", str(s), "--seed", str(seed),
                                           "--preset", "fast"],
    "zssr-onejump": lambda lr, out, s, seed: ["zssr", "upscale", lr, "-o", out, "--scale", str(s), "--seed", str(seed),
                                              "--schedule", "policy", "--gradual", "1", "--isotropic", "--iters", "3000",
                                              "--crop", "128"],
    "torch": lambda lr, out, s, seed: [sys.executable, str(HERE / "peer_torch_zssr.py"), lr, "-o", out,
                                       "--scale", str(s), "--seed", str(seed)],
}
# the defaults with the 512-bit register tiles forced: on a CPU without AVX-512, the code as it
# was before the tiles followed the CPU's width (its own Numba cache, so that the two forms'
# compiled code do not evict each other)
CONTENDERS["zssr-w512"] = CONTENDERS["zssr"]
ENV = {"zssr-w512": {"ZSSR_VECTOR_BITS": "512",
                     "NUMBA_CACHE_DIR": os.path.join(os.path.expanduser("~"), ".cache", "zssr-w512-numba")}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", help="folders of ground-truth images")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default="zssr,zssr-fast,zssr-onejump,torch", help="contenders, comma-separated")
    ap.add_argument("--out", default="compare_peer_out", help="folder for the LR inputs and the results")
    ap.add_argument("--json", help="write the rows here")
    a = ap.parse_args(argv)
    names = [n.strip() for n in a.only.split(",") if n.strip()]
    bad = [n for n in names if n not in CONTENDERS]
    if bad:
        ap.error(f"unknown contender(s) {', '.join(bad)}; choose from {', '.join(CONTENDERS)}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENBLAS_")}
    images = [p for f in a.folders for p in list_images(Path(f))]
    rows = []
    for i, path in enumerate(images):
        hr = iio.imread(path)[..., :3].astype(np.float32) / 255.0
        hr, lr = evaluate.make_lr(hr, a.scale)
        lr_path = out / f"{path.stem}_lr.png"
        iio.imwrite(lr_path, np.round(lr * 255.0).astype(np.uint8))
        bic = evaluate._resize(lr, shape=hr.shape[:2])
        row = {"image": path.stem, "lr_size": f"{lr.shape[1]}x{lr.shape[0]}",
               "bicubic_psnr": metrics.evaluate_pair(metrics.quantize(np.clip(bic, 0, 1)), hr, a.scale)["psnr"]}
        order = names[i % len(names):] + names[:i % len(names)]
        for name in order:
            sr_path = out / f"{path.stem}_{name}.png"
            cmd = CONTENDERS[name](str(lr_path), str(sr_path), a.scale, a.seed)
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, env=dict(env, **ENV.get(name, {})), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            seconds = time.perf_counter() - t0
            if proc.returncode != 0:
                print(f"{path.stem}: {name} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                row[name] = {"failed": True}
                continue
            sr = iio.imread(sr_path)[..., :3].astype(np.float32) / 255.0
            score = metrics.evaluate_pair(sr, hr, a.scale)
            row[name] = {"psnr": score["psnr"], "ssim": score["ssim"], "seconds": seconds,
                         "output": (proc.stdout.strip().splitlines() or [""])[-1][:500]}
        rows.append(row)
        print(f"{path.stem:12s} {row['lr_size']:>9s}  bicubic {row['bicubic_psnr']:.2f}  " + "  ".join(
            f"{n} {row[n]['psnr']:.2f} dB {row[n]['seconds']:.1f} s" for n in names if "psnr" in row[n]), flush=True)
    print()
    print(f"{'contender':12s} {'mean PSNR':>10s} {'median s':>9s} {'total s':>8s}")
    med = {}
    for n in names:
        ok = [r[n] for r in rows if "psnr" in r[n]]
        if not ok:
            continue
        med[n] = statistics.median(x["seconds"] for x in ok)
        print(f"{n:12s} {np.mean([x['psnr'] for x in ok]):10.2f} {med[n]:9.1f} {sum(x['seconds'] for x in ok):8.1f}")
    if "torch" in med:
        for n in med:
            if n != "torch":
                print(f"{n} / torch, median seconds: {med[n] / med['torch']:.2f}")
    if a.json:
        Path(a.json).write_text(json.dumps({"scale": a.scale, "seed": a.seed, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
