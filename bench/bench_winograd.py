"""The convolution algorithms side by side: Winograd F(2x2, 3x3) ("winograd"), F(4x4, 3x3)
("winograd4"), F(4x4) with bfloat16 products ("winograd4bf16", on CPUs with AVX-512 BF16)
and the direct convolution, on the 64 -> 64 layer (forward, input gradient,
weight gradient at 96x96 and 128x128), a training step of the 8 x 64 network (96x96,
128x128) and inference at 512x512. One benchmark group per op and size, one member per
algorithm; pytest-benchmark runs the members one after another, so for a ratio measured
with the calls alternated use ``engine.benchmark.compare_algorithms``.

    python -m pytest bench/bench_winograd.py --benchmark-only
"""
import pytest

from zssr.engine import benchmark as B
from zssr.engine.kernels import gemm_bf16

ALGORITHMS = ("winograd", "winograd4", "direct") + (("winograd4bf16",) if gemm_bf16.supported() else ())
KINDS = ("forward", "input grad", "weight grad")


def _params(ops):
    for op, size in ops:
        for alg in ALGORITHMS:
            yield pytest.param(op, size, alg, marks=pytest.mark.benchmark(group=f"{op} {size}x{size}"),
                               id=f"{op.replace(' ', '_')}-{size}-{alg}")


@pytest.mark.parametrize("kind,size,algorithm", list(_params([(k, s) for s in (96, 128) for k in KINDS])))
def test_conv3x3_algorithm(kind, size, algorithm, measure):
    measure(B.conv_case(kind, size, algorithm=algorithm), "zssr", 20)


@pytest.mark.parametrize("op,size,algorithm", list(_params([("train_step", 96), ("train_step", 128),
                                                            ("predict", 512)])))
def test_network_algorithm(op, size, algorithm, measure):
    if op == "train_step":
        measure(B.train_case(size, algorithm=algorithm), "zssr", 10)
    else:
        measure(B.predict_case(size, algorithm=algorithm), "zssr", 4)
