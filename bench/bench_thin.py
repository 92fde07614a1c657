"""The network's thin layers at the training crop (96x96): the first (3 -> 64) and the last
(64 -> 3) convolution, every pass a training step runs on them (the first layer's input
gradient is never needed). One group per layer and pass, members: the engine's kernels as
the network runs them ("auto"), the general direct kernel ("direct", the reference the
"auto" kernel replaced where they differ) and PyTorch's.

"auto" differs from "direct" only in the last layer's forward, which runs on the
few-outputs kernel (vectorised over the 64 inputs instead of 16 output lanes of which 13
are padding: conv3x3._forward_few_kernel); the others share the direct kernels, whose
output pass is fused into their tiles either way.

    python -m pytest bench/bench_thin.py --benchmark-only

Measured 2026-12-02 (fourth session, 2 threads, min of 30 calls, one run; pytest-benchmark
runs the members one after another, so these are not alternated): first layer forward
173 us (PyTorch 301), weight gradient 225-255 (PyTorch 288-314; 479 before its bias-gradient
loop was vectorised); last layer forward 243 "auto" against 772 "direct" (PyTorch 962),
input gradient 183 (PyTorch 1,067), weight gradient 245-262 (PyTorch 1,093-1,103; 305-311
before the same fix).
"""
import pytest

from zssr.engine import benchmark as B

LAYERS = {"3->64": (3, 64, ("forward", "weight grad")),
          "64->3": (64, 3, ("forward", "input grad", "weight grad"))}
SIDES = ("auto", "direct", "torch")
SIZE = 96


def _params():
    for layer, (ci, co, kinds) in LAYERS.items():
        for kind in kinds:
            for side in SIDES:
                yield pytest.param(ci, co, kind, side, marks=pytest.mark.benchmark(group=f"conv3x3 {layer} {kind} {SIZE}x{SIZE}"),
                                   id=f"{layer}-{kind.replace(' ', '_')}-{side}")


@pytest.mark.parametrize("ci,co,kind,side", list(_params()))
def test_thin_layer(ci, co, kind, side, peer, measure):
    if side == "torch":
        measure(B.conv_case(kind, SIZE, torch=peer("torch"), ci=ci, co=co), "torch", 30)
    else:
        measure(B.conv_case(kind, SIZE, algorithm=side, ci=ci, co=co), "zssr", 30)
