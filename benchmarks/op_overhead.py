"""Microseconds per differentiated elementwise op (forward + backward) on a tiny (1, 72)
float32 array: the slope between chains of 10 and 110 tanh ops, i.e. the pure per-op
cost of the tape. Compared with NumPy's own three calls per op (tanh forward; multiply
and subtract backward), PyTorch eager and HIPS autograd when installed.

    python benchmarks/op_overhead.py
"""

from __future__ import annotations

import statistics
import time

import numpy as np

import agrad

SHAPE = (1, 72)
SHORT, LONG = 10, 110


def agrad_chain(n, x0):
    x = agrad.Tensor(x0, requires_grad=True)
    y = x
    for _ in range(n):
        y = agrad.tanh(y)
    agrad.sum(y).backward()


def numpy_chain(n, x0):
    y, outs = x0, []
    for _ in range(n):
        y = np.tanh(y)
        outs.append(y)
    g = np.ones_like(y)
    for o in reversed(outs):
        g = g * (1.0 - o * o)


def torch_chain(n, x0):
    import torch

    x = torch.tensor(x0, requires_grad=True)
    y = x
    for _ in range(n):
        y = torch.tanh(y)
    y.sum().backward()


def autograd_chain(n, x0):
    import autograd
    import autograd.numpy as anp

    def f(x):
        for _ in range(n):
            x = anp.tanh(x)
        return anp.sum(x)

    autograd.grad(f)(x0)


def per_op_us(fn, x0, reps=300, rounds=7):
    def run(n):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn(n, x0)
        return (time.perf_counter() - t0) / reps

    slopes = []
    for _ in range(rounds):
        time.sleep(0.05)
        slopes.append((run(LONG) - run(SHORT)) / (LONG - SHORT) * 1e6)
    return statistics.median(slopes)


def main():
    x0 = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    contenders = {"numpy (3 calls, no tape)": numpy_chain, "agrad": agrad_chain}
    try:
        import torch  # noqa: F401

        contenders["pytorch"] = torch_chain
    except ImportError:
        pass
    try:
        import autograd  # noqa: F401

        contenders["hips-autograd"] = autograd_chain
    except ImportError:
        pass
    print("| contender | us per differentiated tanh on (1, 72) |\n|---|---:|")
    for name, fn in contenders.items():
        print(f"| {name} | {per_op_us(fn, x0):.2f} |", flush=True)


if __name__ == "__main__":
    main()
