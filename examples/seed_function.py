"""The seed's section 2 example: f(x) = exp(exp(x) + exp(x)^2) + sin(exp(x) + exp(x)^2).

Prints f and df/dx from agrad next to the closed form of eq. 2.2.
Run: python examples/seed_function.py [--backend numpy|array_api_strict|cupy]
"""

from __future__ import annotations

import argparse
import math

import agrad


def f(x):
    a = agrad.exp(x)
    c = a + a ** 2
    return agrad.exp(c) + agrad.sin(c)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", default="numpy", choices=["numpy", "array_api_strict", "cupy"])
    args = parser.parse_args()
    agrad.set_backend(args.backend)
    for x0 in (-1.0, 0.0, 0.5):
        x = agrad.tensor(x0, dtype="float64", requires_grad=True)
        y = f(x)
        y.backward()
        e = math.exp(x0)
        closed = (math.exp(e + e * e) + math.cos(e + e * e)) * (e + 2 * e * e)
        print(f"x={x0:5.2f}  f={float(y):14.6f}  df/dx agrad={float(x.grad):14.6f}  eq. 2.2={closed:14.6f}")


if __name__ == "__main__":
    main()
