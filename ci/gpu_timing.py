"""Short forward+backward timings of a few ops on NumPy and, when present, CuPy."""

from __future__ import annotations

import time

import agrad
from agrad import backend as B


def _sync(xp_name):
    if xp_name == "cupy":
        import cupy

        cupy.cuda.Device().synchronize()


def time_op(name, fn, shape, backend, reps=50):
    rng = B.host_rng(0)
    host = rng.standard_normal(shape).astype("float32")
    with agrad.use_backend(backend):
        x = agrad.tensor(host, requires_grad=True)
        for _ in range(3):
            agrad.sum(fn(x)).backward()
        _sync(backend)
        t0 = time.perf_counter()
        for _ in range(reps):
            x.grad = None
            agrad.sum(fn(x)).backward()
        _sync(backend)
    return (time.perf_counter() - t0) / reps * 1e6


OPS = {
    "tanh": lambda x: agrad.tanh(x),
    "matmul": lambda x: x @ x,
    "logsumexp": lambda x: agrad.logsumexp(x, axis=1),
    "softmax": lambda x: agrad.softmax(x, axis=1),
}

if __name__ == "__main__":
    backends = [b for b in ("numpy", "cupy") if b in agrad.available_backends()]
    print(f"{'op':10s} {'shape':>12s} " + " ".join(f"{b + ' us':>12s}" for b in backends))
    for name, fn in OPS.items():
        for shape in ((128, 128), (1024, 1024)):
            row = [time_op(name, fn, shape, b) for b in backends]
            print(f"{name:10s} {str(shape):>12s} " + " ".join(f"{t:12.1f}" for t in row))
