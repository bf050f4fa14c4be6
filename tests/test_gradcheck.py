"""The gradient checker itself: it must fail on a wrong VJP and say where."""

from __future__ import annotations

import numpy as np
import pytest

import agrad

wrong_square = agrad.primitive("wrong_square", lambda xp, x: x * x, vjp=[lambda xp, g, ans, x: g * x], register=False)
# First derivative right, second wrong: the VJP uses a constant copy of x.
frozen_square = agrad.primitive(
    "frozen_square", lambda xp, x: x * x,
    vjp=[lambda xp, g, ans, x: g * 2.0 * (x.detach() if isinstance(x, agrad.Tensor) else x)], register=False)


def test_a_wrong_vjp_fails_with_a_report_of_the_worst_element():
    with pytest.raises(agrad.GradcheckError) as err:
        agrad.check_grad(lambda x: agrad.sum(wrong_square(x)), np.array([1.0, 2.0, 3.0]))
    msg = str(err.value)
    assert "input 0, index (2,)" in msg and "analytic 3" in msg and "numeric 6" in msg


def test_random_projection_mode_detects_a_wrong_vjp():
    with pytest.raises(agrad.GradcheckError, match="direction"):
        agrad.check_grad(wrong_square, np.random.default_rng(0).standard_normal(50), mode="random")


def test_second_order_mode_detects_a_wrong_second_derivative():
    agrad.check_grad(frozen_square, np.array([1.0, 2.0]))  # first order is right
    with pytest.raises(agrad.GradcheckError, match="second order"):
        agrad.check_grad(frozen_square, np.array([1.0, 2.0]), order=2)


def test_float32_gradient_checked_against_float64_reference(on_backend):
    x = on_backend(np.array([0.1, 0.5, -0.3]), dtype="float32")
    res = agrad.check_grad(lambda t: agrad.tanh(t) * t, x)
    assert res.ok


def test_result_object_without_raising():
    res = agrad.check_grad(lambda x: agrad.sum(wrong_square(x)), np.array([1.0]), raise_exception=False)
    assert not res.ok and res.max_abs_error > 0.5
