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


def _tanh_net(n, m, seed=0):
    rng = np.random.default_rng(seed)
    a1, a2 = rng.standard_normal((6, n)), rng.standard_normal((m, 6))
    return (lambda x: agrad.tanh(agrad.tensor(a2) @ agrad.tanh(agrad.tensor(a1) @ x))), a1, a2


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_jacobian_runs_the_function_once_however_many_basis_vectors(mode):
    """The jvps (vjps) of agrad.jacobian run as one vmap, as JAX's jacfwd (jacrev): f runs
    once to find the output's shape and once on batched tangents, not n (m) times."""
    f, a1, a2 = _tanh_net(7, 9)
    calls = []

    def counted(x):
        calls.append(1)
        return f(x)

    x = np.linspace(-1.0, 1.0, 7)
    J = agrad.jacobian(counted, mode=mode)(x)
    assert len(calls) == 2
    h = np.tanh(a1 @ x)
    want = (1 - np.tanh(a2 @ h) ** 2)[:, None] * (a2 @ ((1 - h ** 2)[:, None] * a1))
    np.testing.assert_allclose(J.numpy(), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_jacobian_of_python_control_flow_on_the_primal(mode):
    """vmap batches only the tangents (cotangents): a decision on the point's values still works."""
    def f(x):
        return x * 2.0 if float(x[0]) > 0 else x * x

    np.testing.assert_allclose(agrad.jacobian(f, mode=mode)(np.array([1.0, 2.0])).numpy(), 2 * np.eye(2))
    np.testing.assert_allclose(agrad.jacobian(f, mode=mode)(np.array([-1.0, 2.0])).numpy(), np.diag([-2.0, 4.0]))


def test_jacobian_of_pytrees_with_several_leaves_in_both_modes():
    def f(p, x):
        return {"y": agrad.tanh(x @ p["w"] + p["b"]), "s": agrad.sum(p["w"] * p["w"])}

    rng = np.random.default_rng(3)
    p = {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}
    x = rng.standard_normal(3)
    fwd = agrad.jacobian(f, argnums=(0, 1), mode="forward")(p, x)
    rev = agrad.jacobian(f, argnums=(0, 1), mode="reverse")(p, x)
    for out, shape in (("y", (2,)), ("s", ())):
        for k in ("w", "b"):
            assert fwd[out][0][k].shape == shape + p[k].shape
            np.testing.assert_allclose(fwd[out][0][k].numpy(), rev[out][0][k].numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(fwd[out][1].numpy(), rev[out][1].numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rev["s"][0]["w"].numpy(), 2 * p["w"])
