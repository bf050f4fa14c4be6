"""Cost of Jacobians in forward and reverse mode (a benchmark, not a test).

For f(x) = tanh(A2 @ tanh(A1 @ x)) : R^n -> R^m, forward mode takes one jvp per input
(n passes) and reverse mode one vjp per output (m passes); "auto" should pick the
cheaper. Also reports the cost of one jvp against one evaluation of f: forward mode
costs a small constant times the forward pass, and agrad.jacobian (which vmaps one jvp or
one pullback over the rows of an identity) against the Python loop of n jvps or m vjps it
replaced, at n = m = 256 (goal: >= 5x faster).

    python benchmarks/jacobian_cost.py
    python benchmarks/jacobian_cost.py --quick     # fewer repetitions
"""

from __future__ import annotations

import argparse
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


def loop_jacobian(f, x, mode):
    """The Jacobian by a Python loop: one jvp per input (forward) or one pullback per output
    (reverse), stacked: what agrad.jacobian did before it vmapped."""
    n = x.shape[0]
    eye = np.eye(n if mode == "forward" else f(agrad.tensor(x)).shape[0], dtype=x.dtype)
    if mode == "forward":
        return agrad.stack([agrad.jvp(f, (x,), (eye[j],))[1] for j in range(n)], axis=-1)
    _, pullback = agrad.vjp(f, x)
    return agrad.stack([pullback(e)[0] for e in eye], axis=0)


def vmap_against_loop(n=256, m=256, reps=5):
    """(rows of the table): agrad.jacobian (vmapped) against the loop, per mode, in rotating rounds."""
    f = make_f(n, m)
    x = np.random.default_rng(4).standard_normal(n)
    rows = []
    for mode in ("forward", "reverse"):
        jac = agrad.jacobian(f, mode=mode)
        np.testing.assert_allclose(jac(x).numpy(), loop_jacobian(f, x, mode).numpy(), rtol=1e-10, atol=1e-12)
        tv, tl = float("inf"), float("inf")
        for _ in range(reps):  # alternate, so that both see the same state of a noisy machine
            tv = min(tv, best_time(lambda: jac(x), reps=1))
            tl = min(tl, best_time(lambda: loop_jacobian(f, x, mode), reps=1))
        rows.append((mode, tv, tl))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = p.parse_args(argv)
    reps = 2 if args.quick else 5
    print("| n (inputs) | m (outputs) | forward mode (ms) | reverse mode (ms) | auto (ms) | auto picked |")
    print("|---:|---:|---:|---:|---:|---|")
    for n, m in ((4, 256), (16, 256), (256, 16), (256, 4)):
        f = make_f(n, m)
        x = np.random.default_rng(1).standard_normal(n)
        tf = best_time(lambda: agrad.jacobian(f, mode="forward")(x), reps)
        tr = best_time(lambda: agrad.jacobian(f, mode="reverse")(x), reps)
        ta = best_time(lambda: agrad.jacobian(f)(x), reps)
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
    print("\n| n = m = 256 | agrad.jacobian, vmapped (ms) | loop of jvps / vjps (ms) | speed-up (goal >= 5x) |")
    print("|---|---:|---:|---:|")
    for mode, tv, tl in vmap_against_loop(reps=reps):
        print(f"| {mode} | {tv * 1e3:.2f} | {tl * 1e3:.2f} | {tl / tv:.1f}x |")


if __name__ == "__main__":
    main()
