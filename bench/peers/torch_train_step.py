"""PyTorch peer for `nmsparse bench train --torch`: the same MLP training step (784-H-...-10, SGD Nesterov 0.9,
softmax cross-entropy, MNIST-sized random batches), dense and SR-STE 2:4 the way PyTorch runs it on a CPU (the
mask recomputed from |W| every step and W ⊙ m multiplied densely: torch has no CPU N:M kernels). Prints one JSON
object: median milliseconds per step of each. Run with OMP_WAIT_POLICY=PASSIVE; threads from argv."""
import json
import sys
import time

import torch

hidden = [int(h) for h in sys.argv[1].split(",")]
batch, steps, threads = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
torch.manual_seed(0)
dims = [784] + hidden + [10]


def model():
    layers = []
    for i in range(len(dims) - 1):
        layers.append(torch.nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def mask24(w):
    g = w.detach().abs().reshape(-1, 4)
    idx = g.topk(2, dim=1).indices
    return torch.zeros_like(g).scatter_(1, idx, 1.0).reshape(w.shape)


class SrsteLinear(torch.autograd.Function):
    """y = x·(W⊙m)ᵀ + b; dW = STE gradient + λ(1 − m)⊙W (Zhou et al. 2021)."""

    @staticmethod
    def forward(ctx, x, w, b, m):
        ctx.save_for_backward(x, w, m)
        return torch.nn.functional.linear(x, w * m, b)

    @staticmethod
    def backward(ctx, dy):
        x, w, m = ctx.saved_tensors
        dx = dy @ (w * m)
        dw = dy.t() @ x + 2e-4 * (1 - m) * w
        return dx, dw, dy.sum(0), None


def run(sparse):
    net = model()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    lin = [m for m in net if isinstance(m, torch.nn.Linear)]
    x = torch.randn(batch, 784)
    y = torch.randint(0, 10, (batch,))
    times = []
    for step in range(steps + 2):
        t0 = time.perf_counter()
        h = x
        for i, m in enumerate(net):
            if isinstance(m, torch.nn.Linear) and sparse and m is not lin[-1]:
                h = SrsteLinear.apply(h, m.weight, m.bias, mask24(m.weight))
            else:
                h = m(h)
        loss = torch.nn.functional.cross_entropy(h, y)
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()
        if step >= 2:
            times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return times[len(times) // 2]


print(json.dumps({"torch": torch.__version__, "threads": threads, "dense": run(False), "srste24": run(True)}))
