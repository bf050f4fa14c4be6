"""Differentiate code that was written against the array API standard, not for agrad.

Such code asks its inputs for their namespace (``xp = array_namespace(x)``, as SciPy,
scikit-learn and array-api-extra write it) and uses only the standard's functions. Given
agrad Tensors, that namespace is agrad itself, so the same code becomes differentiable,
in reverse and forward mode, on NumPy, CuPy and array-api-strict arrays alike.

    python examples/array_api_code.py [--backend numpy|array_api_strict|cupy]

Two pieces of such code: a Newton solve for L2-regularised logistic regression, written
below with only the standard (its Hessian system solved by ``xp.linalg.solve``), and
array-api-extra's ``cov`` and ``sinc``, third-party functions we did not write. We take
the derivative of the *solution* of the Newton iterations with respect to the
regularisation strength (a hyperparameter gradient, by differentiating through the
solver) and check it against finite differences; then gradients and JVPs through
array-api-extra.
"""

from __future__ import annotations

import argparse

import array_api_compat
import numpy as np

import agrad


def newton_logistic_regression(X, y, lam, steps=8):
    """Minimise mean log(1 + exp(-y X w)) + lam/2 |w|^2 by Newton's method. Written only
    against the array API: every array operation goes through ``xp``."""
    xp = array_api_compat.array_namespace(X, y, lam)
    n, d = X.shape
    w = xp.zeros((d,), dtype=X.dtype, device=X.device)
    eye = xp.eye(d, dtype=X.dtype, device=X.device)
    for _ in range(steps):
        margin = y * (X @ w)
        p = 1.0 / (1.0 + xp.exp(margin))  # sigmoid(-margin)
        grad = -(X.mT @ (y * p)) / n + lam * w
        weights = p * (1.0 - p)
        hess = (X.mT * weights) @ X / n + lam * eye
        w = w - xp.linalg.solve(hess, grad)
    return w


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", default="numpy", help="numpy, array_api_strict or cupy")
    args = p.parse_args(argv)
    agrad.set_backend(args.backend)
    rng = np.random.default_rng(0)
    X = agrad.tensor(rng.standard_normal((40, 3)), dtype="float64")
    y = agrad.tensor(np.sign(rng.standard_normal(40)), dtype="float64")

    def solution_norm(lam):
        w = newton_logistic_regression(X, y, lam)
        return agrad.sum(w * w)

    lam = agrad.tensor(0.1, dtype="float64")
    g = agrad.grad(solution_norm)(lam)
    _, t = agrad.jvp(solution_norm, (lam,), (agrad.tensor(1.0, dtype="float64"),))
    h = 1e-5
    fd = (float(solution_norm(agrad.tensor(0.1 + h, dtype="float64"))) -
          float(solution_norm(agrad.tensor(0.1 - h, dtype="float64")))) / (2 * h)
    print(f"d|w*|^2/dlambda through 8 Newton steps: reverse {float(g):.8f}, forward {float(t):.8f}, "
          f"finite differences {fd:.8f}")

    import array_api_extra as xpx

    A = agrad.tensor(rng.standard_normal((3, 6)), dtype="float64")
    gc = agrad.grad(lambda a: agrad.sum(xpx.cov(a) ** 2))(A)
    s = agrad.tensor(np.array([0.3, 1.2, -0.7]), dtype="float64")
    gs = agrad.grad(lambda v: agrad.sum(xpx.sinc(v)))(s)
    _, ts = agrad.jvp(xpx.sinc, (s,), (agrad.ones_like(s),))
    print(f"array-api-extra: grad of sum(cov(A)^2) has shape {gc.shape}; d sinc/dx = {gs.numpy()} "
          f"(reverse) = {ts.numpy()} (forward)")
    return {"reverse": float(g), "forward": float(t), "fd": fd, "cov_grad": gc, "sinc_grad": gs, "sinc_jvp": ts}


if __name__ == "__main__":
    main()
