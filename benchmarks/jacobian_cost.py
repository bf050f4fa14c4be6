"""Cost of Jacobians in forward and reverse mode (a benchmark, not a test).

For f(x) = tanh(A2 @ tanh(A1 @ x)) : R^n -> R^m, forward mode takes one jvp per input
(n passes) and reverse mode one vjp per output (m passes); "auto" should pick the
cheaper. Also reports the cost of one jvp against one evaluation of f: forward mode
costs a small constant times the forward pass.

    python benchmarks/jacobian_cost.py
"""

from __future__ import annotations

import time

import numpy as np

import agrad


def best_time(fn, reps=5):
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def make_f(n, m, hidden=64, seed=0):
    rng = np.random.default_rng(seed)
    a1 = agrad.tensor(rng.standard_normal((hidden, n)) / np.sqrt(n))
    a2 = agrad.tensor(rng.standard_normal((m, hidden)) / np.sqrt(hidden))
    return lambda x: agrad.tanh(a2 @ agrad.tanh(a1 @ x))


def main():
    print("| n (inputs) | m (outputs) | forward mode (ms) | reverse mode (ms) | auto (ms) | auto picked |")
    print("|---:|---:|---:|---:|---:|---|")
    for n, m in ((4, 256), (16, 256), (256, 16), (256, 4)):
        f = make_f(n, m)
        x = np.random.default_rng(1).standard_normal(n)
        tf = best_time(lambda: agrad.jacobian(f, mode="forward")(x))
        tr = best_time(lambda: agrad.jacobian(f, mode="reverse")(x))
        ta = best_time(lambda: agrad.jacobian(f)(x))
        picked = "forward" if n < m else "reverse"
        print(f"| {n} | {m} | {tf * 1e3:.2f} | {tr * 1e3:.2f} | {ta * 1e3:.2f} | {picked} |")
    f = make_f(512, 512, hidden=512)
    x = np.random.default_rng(2).standard_normal(512)
    v = np.random.default_rng(3).standard_normal(512)
    plain = best_time(lambda: f(agrad.tensor(x)), reps=20)
    fwd = best_time(lambda: agrad.jvp(f, (x,), (v,)), reps=20)
    rev = best_time(lambda: agrad.vjp(f, x)[1](np.ones(512)), reps=20)
    print(f"\none evaluation of f (512 -> 512 -> 512): {plain * 1e6:.0f} us; one jvp: {fwd * 1e6:.0f} us "
          f"({fwd / plain:.1f}x); one vjp (forward + pullback): {rev * 1e6:.0f} us ({rev / plain:.1f}x)")


if __name__ == "__main__":
    main()
