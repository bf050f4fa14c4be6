"""Derivative checks shared by the tests of code written by others against the standard
(array-api-extra, SciPy) and of in-place updates: reverse mode, forward mode and the
pairing of the two, all against central differences in float64 on the backend under test."""

from __future__ import annotations

import numpy as np
import pytest

import agrad

EPS = 1e-6


def check_both_modes(f, *xs, order: int = 1, rtol: float = 1e-5, atol: float = 1e-7, seed: int = 0) -> None:
    """Check ``f`` at the float64 Tensors ``xs`` in reverse and forward mode.

    Reverse: ``agrad.check_grad`` to ``order`` (every element, through the tape) and ``agrad.vjp``;
    forward: ``agrad.jvp``, whose tangent along a random direction ``v`` is compared elementwise with
    the central difference, as is the pullback of a random ``u``:
    <J^T u, v> = <u, (f(x + eps v) - f(x - eps v)) / 2 eps>. The differences are evaluated on the
    inputs' backend and device, where the constants ``f`` closes over live.
    """
    agrad.check_grad(f, *xs, order=order)
    rng = np.random.default_rng(seed)
    vs = [agrad.asarray(rng.standard_normal(x.shape), dtype=x.dtype, device=x.device) for x in xs]
    with agrad.no_grad():
        fd = (f(*[x + EPS * v for x, v in zip(xs, vs)]).numpy() - f(*[x - EPS * v for x, v in zip(xs, vs)]).numpy()) \
            / (2 * EPS)
        value = f(*xs).numpy()
    out, tangent = agrad.jvp(f, tuple(xs), tuple(vs))
    np.testing.assert_allclose(out.numpy(), value, rtol=1e-12, atol=0, err_msg="jvp's value")
    np.testing.assert_allclose(tangent.numpy(), fd, rtol=rtol, atol=atol, err_msg="jvp's tangent")
    out, pullback = agrad.vjp(f, *xs)
    u = rng.standard_normal(out.shape)
    cotangents = pullback(agrad.asarray(u, dtype=out.dtype, device=out.device))
    assert sum(float(agrad.sum(c * v)) for c, v in zip(cotangents, vs)) == \
        pytest.approx(float(np.sum(u * fd)), rel=rtol, abs=atol), "vjp against the differences"
