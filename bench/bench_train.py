"""The 8 x 64 network (residual, no biases): one training step on a 128x128 crop (forward,
MSE, backward, plain SGD update) and inference on a 512x512 image, the engine ("zssr")
beside PyTorch ("torch": same weights, NCHW, a real loss.backward() + optimizer.step();
inference under torch.no_grad()). Plus the thread scaling of the training step.

    python -m pytest bench/bench_train.py --benchmark-only
"""
import numba
import pytest

from zssr.engine import benchmark as B

SIDES = ("zssr", "torch")
TRAIN, PREDICT = 128, 512


@pytest.mark.benchmark(group=f"train_step {TRAIN}x{TRAIN}")
@pytest.mark.parametrize("side", SIDES)
def test_train_step(side, peer, measure):
    case = B.train_case(TRAIN, torch=peer(side))
    measure(case, side, rounds=10)


@pytest.mark.benchmark(group=f"predict {PREDICT}x{PREDICT}")
@pytest.mark.parametrize("side", SIDES)
def test_predict(side, peer, measure):
    case = B.predict_case(PREDICT, torch=peer(side))
    measure(case, side, rounds=4)


@pytest.fixture
def threads(request):
    """Numba's thread count for one test, put back afterwards."""
    before = numba.get_num_threads()
    numba.set_num_threads(request.param)
    yield request.param
    numba.set_num_threads(before)


# the target on the 2-core machines: all threads >= 1.7x one thread (compare the two rows)
@pytest.mark.benchmark(group=f"train_step {TRAIN}x{TRAIN} threads")
@pytest.mark.parametrize("threads", sorted({1, numba.config.NUMBA_NUM_THREADS}), indirect=True,
                         ids=lambda n: f"{n}thread")
def test_train_step_threads(threads, measure):
    measure(B.train_case(TRAIN), "zssr", rounds=10)
