"""zssr's engine: zero-shot super-resolution on the CPU, with hand-written Numba kernels.

    import numpy as np
    from zssr import engine
    net = engine.Network(width=64, depth=8, residual=True, bias=False, seed=0)
    opt = engine.Adam(net, lr=1e-3)
    loss = engine.train_step(net, opt, blurry, sharp, loss="l1")
    sr = net.predict(blurry)
"""
from .errors import UserError
from .kernels.activations import l1_loss, mse_loss, relu_backward, relu_forward, sse_loss
from .kernels.conv3x3 import conv3x3_backward, conv3x3_forward
from .network import Network, train_step
from .optim import SGD, Adam, make_optimizer

__all__ = [
    "UserError", "Network", "train_step", "SGD", "Adam", "make_optimizer",
    "conv3x3_forward", "conv3x3_backward", "relu_forward", "relu_backward",
    "sse_loss", "mse_loss", "l1_loss",
]
