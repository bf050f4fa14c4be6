"""grad, value_and_grad, vjp, and nesting them."""

from __future__ import annotations

import numpy as np
import pytest

import agrad


def test_grad_of_the_seed_function(on_backend):
    def f(x):
        a = agrad.exp(x)
        return agrad.exp(a + a ** 2) + agrad.sin(a + a ** 2)

    x = on_backend(np.array(0.25))
    e = np.exp(0.25)
    expected = (np.exp(e + e * e) + np.cos(e + e * e)) * (e + 2 * e * e)
    assert abs(float(agrad.grad(f)(x)) - expected) < 1e-10


def test_nested_grad_gives_higher_derivatives():
    f = lambda x: agrad.sin(x) * x  # noqa: E731
    x = np.float64(0.7)  # (a Python float would be float32, the default dtype)
    assert abs(float(agrad.grad(agrad.grad(f))(x)) - (2 * np.cos(x) - x * np.sin(x))) < 1e-12
    assert abs(float(agrad.grad(agrad.grad(agrad.grad(f)))(x)) - (-3 * np.sin(x) - x * np.cos(x))) < 1e-12


def test_value_and_grad_with_several_argnums():
    v, (ga, gb) = agrad.value_and_grad(lambda a, b: agrad.sum(a * b), argnums=(0, 1))(
        np.array([1.0, 2.0]), np.array([3.0, 4.0]))
    assert float(v) == 11.0
    np.testing.assert_allclose(ga.numpy(), [3.0, 4.0])
    np.testing.assert_allclose(gb.numpy(), [1.0, 2.0])


def test_grad_does_not_touch_leaf_grads():
    x = agrad.tensor(np.ones(2), requires_grad=True)
    agrad.grad(lambda t: agrad.sum(t * t))(x)
    assert x.grad is None


def test_vjp_pullback_is_reusable():
    out, pullback = agrad.vjp(lambda a: a * a, np.array([1.0, 2.0]))
    np.testing.assert_allclose(out.numpy(), [1.0, 4.0])
    (g1,) = pullback(np.ones(2))
    (g2,) = pullback(np.array([1.0, 0.0]))
    np.testing.assert_allclose(g1.numpy(), [2.0, 4.0])
    np.testing.assert_allclose(g2.numpy(), [2.0, 0.0])


def test_argnums_out_of_range():
    with pytest.raises(ValueError, match="argnums"):
        agrad.grad(lambda x: agrad.sum(x), argnums=2)(np.ones(2))


def test_unused_input_gets_zero_gradient():
    g = agrad.grad(lambda x, y: agrad.sum(x * 2.0), argnums=1)(np.ones(2), np.ones(3))
    np.testing.assert_allclose(g.numpy(), np.zeros(3))
