"""Microseconds per differentiated elementwise op (forward + backward) on a tiny (1, 72)
float32 array: the slope between chains of 10 and 110 tanh ops, i.e. the pure per-op
cost of the tape. Compared with the backend's own three calls per op (tanh forward;
multiply and subtract backward), PyTorch eager and HIPS autograd when installed.

    python benchmarks/op_overhead.py                  # NumPy
    python benchmarks/op_overhead.py --backend cupy   # CuPy, against torch CUDA
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

import agrad
from agrad import backend as B

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

SHAPE = (1, 72)
SHORT, LONG = 10, 110


def agrad_chain(n, x0):
    x = agrad.Tensor(x0, requires_grad=True)
    y = x
    for _ in range(n):
        y = agrad.tanh(y)
    agrad.sum(y).backward()


def hand_chain(n, x0):
    xp = B.namespace_of((x0,))
    y, outs = x0, []
    for _ in range(n):
        y = xp.tanh(y)
        outs.append(y)
    g = xp.ones_like(y)
    for o in reversed(outs):
        g = g * (1.0 - o * o)


def torch_chain(n, x0):
    import torch

    x = torch.as_tensor(x0, device=TORCH_DEVICE).requires_grad_()
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


TORCH_DEVICE = "cpu"


def per_op_us(fn, x0, sync, reps=300, rounds=7):
    def run(n):
        sync()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn(n, x0)
        sync()
        return (time.perf_counter() - t0) / reps

    slopes = []
    for _ in range(rounds):
        time.sleep(0.05)
        slopes.append((run(LONG) - run(SHORT)) / (LONG - SHORT) * 1e6)
    return statistics.median(slopes)


def main():
    global TORCH_DEVICE
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    args = p.parse_args()
    host = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    x0 = B.from_numpy(host, backend=args.backend)
    import common  # noqa: E402  (benchmarks/common.py: GPU synchronisation)

    def sync():
        common.sync(args.backend)

    contenders = {f"{args.backend} (3 calls, no tape)": hand_chain, "agrad": agrad_chain}
    try:
        import torch

        if args.backend == "numpy" or torch.cuda.is_available():
            TORCH_DEVICE = "cuda" if args.backend == "cupy" else "cpu"
            contenders["pytorch" + (" CUDA" if args.backend == "cupy" else "")] = torch_chain
    except ImportError:
        pass
    if args.backend == "numpy":
        try:
            import autograd  # noqa: F401

            contenders["hips-autograd"] = autograd_chain
        except ImportError:
            pass
    print(f"| contender ({args.backend}) | us per differentiated tanh on (1, 72) |\n|---|---:|")
    for name, fn in contenders.items():
        x = host if fn in (autograd_chain, torch_chain) else x0  # torch moves its copy itself (constant per chain)
        done = per_op_us(fn, x, (lambda: common.sync("torch-cuda")) if "CUDA" in name else sync)
        print(f"| {name} | {done:.2f} |", flush=True)


if __name__ == "__main__":
    main()
