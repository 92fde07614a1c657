"""3x3 convolution 64 -> 64 on one image, 64x64, 128x128 and 256x256: forward, input
gradient, weight gradient. Each group holds the engine's kernel ("zssr", writing into
preallocated padded buffers) and PyTorch's ("torch", NCHW, aten.convolution_backward for
the gradients) on the same data. GFLOP/s (36,864 multiply-adds per pixel) in extra_info.

    python -m pytest bench/bench_kernels.py --benchmark-only
"""
import pytest

from zssr.engine import benchmark as B

KINDS = ("forward", "input grad", "weight grad")
SIZES = (64, 128, 256)
SIDES = ("zssr", "torch")
ROUNDS = {64: 30, 128: 15, 256: 8}


def _params():
    for kind in KINDS:
        for size in SIZES:
            group = f"conv3x3 {kind} {size}x{size}"
            for side in SIDES:
                yield pytest.param(kind, size, side, marks=pytest.mark.benchmark(group=group),
                                   id=f"{kind.replace(' ', '_')}-{size}-{side}")


@pytest.mark.parametrize("kind,size,side", list(_params()))
def test_conv3x3(kind, size, side, peer, measure):
    case = B.conv_case(kind, size, torch=peer(side))
    measure(case, side, ROUNDS[size])
