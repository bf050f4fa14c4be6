"""The reverse sweep: order, accumulation, aliasing, memory release, higher order."""

from __future__ import annotations

import gc
import math
import weakref

import numpy as np
import pytest

import agrad


def _np(t):
    return t.numpy() if isinstance(t, agrad.Tensor) else np.asarray(t)


def test_seed_example_matches_closed_form(on_backend):
    """Section 2 of the seed: f = exp(exp(x) + exp(x)^2) + sin(exp(x) + exp(x)^2), eq. 2.2."""
    xs = np.array([-1.0, 0.0, 0.3, 0.5])
    x = on_backend(xs)
    x.requires_grad_()
    a = agrad.exp(x)
    b = a ** 2
    c = a + b
    f = agrad.exp(c) + agrad.sin(c)
    agrad.sum(f).backward()
    e = np.exp(xs)
    expected_f = np.exp(e + e ** 2) + np.sin(e + e ** 2)
    expected_df = np.exp(e + e ** 2) * (e + 2 * e ** 2) + np.cos(e + e ** 2) * (e + 2 * e ** 2)
    np.testing.assert_allclose(_np(f), expected_f, rtol=1e-12)
    np.testing.assert_allclose(_np(x.grad), expected_df, rtol=1e-12)


def test_chain_of_100000_ops_is_not_recursive():
    x = agrad.tensor(np.array([0.5]), requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.0 + 0.0
    agrad.sum(y).backward()
    assert _np(x.grad).tolist() == [1.0]


def test_each_vjp_runs_once_on_a_diamond():
    calls = []
    spy = agrad.primitive("spy_double", lambda xp, x: 2.0 * x,
                          vjp=[lambda xp, g, ans, x: (calls.append(1), 2.0 * g)[1]], register=False)
    x = agrad.tensor(np.array([1.0, 2.0]), requires_grad=True)
    h = spy(x)
    out = agrad.sum(h * h + h)  # h feeds three paths
    out.backward()
    assert len(calls) == 1
    np.testing.assert_allclose(_np(x.grad), 2.0 * (2 * _np(h) + 1))


def test_gradients_accumulate_across_backward_calls():
    x = agrad.tensor(np.array([1.0, 2.0]), requires_grad=True)
    agrad.sum(x * 3.0).backward()
    agrad.sum(x * 4.0).backward()
    np.testing.assert_allclose(_np(x.grad), [7.0, 7.0])


def test_leaf_gradients_never_alias_each_other_or_the_seed():
    a = agrad.tensor(np.ones(3), requires_grad=True)
    b = agrad.tensor(np.ones(3), requires_grad=True)
    seed = np.ones(3)
    (a + b).backward(seed)
    a.grad.data[0] = 100.0
    assert _np(b.grad).tolist() == [1.0, 1.0, 1.0]
    assert seed.tolist() == [1.0, 1.0, 1.0]
    c = agrad.tensor(np.ones(3), requires_grad=True)
    c.backward(seed)  # the root is the leaf itself
    c.grad.data[1] = 7.0
    assert seed.tolist() == [1.0, 1.0, 1.0]


def test_gradient_does_not_alias_user_data_through_reshape():
    x = agrad.tensor(np.ones((2, 2)), requires_grad=True)
    g = np.ones(4)
    agrad.reshape(x, (4,)).backward(g)
    x.grad.data[0, 0] = 9.0
    assert g.tolist() == [1.0, 1.0, 1.0, 1.0]


def test_no_gradient_is_computed_for_inputs_that_do_not_need_one():
    calls = {"x": 0, "w": 0}
    mul = agrad.primitive(
        "spy_mul", lambda xp, x, w: x * w,
        vjp=[lambda xp, g, ans, x, w: (calls.__setitem__("x", calls["x"] + 1), g * w)[1],
             lambda xp, g, ans, x, w: (calls.__setitem__("w", calls["w"] + 1), g * x)[1]],
        register=False,
    )
    x = agrad.tensor(np.ones(3))
    w = agrad.tensor(np.ones(3), requires_grad=True)
    agrad.sum(mul(x, w)).backward()
    assert calls == {"x": 0, "w": 1}
    assert x.grad is None


def test_saved_values_are_released_after_backward():
    x = agrad.tensor(np.ones(1000), requires_grad=True)
    h = agrad.tanh(x)
    ref = weakref.ref(h)
    out = agrad.sum(h)
    del h
    gc.collect()
    assert ref() is not None  # kept alive by the graph
    out.backward()
    gc.collect()
    assert ref() is None  # freed with the graph


def test_second_backward_over_released_graph_raises():
    x = agrad.tensor(np.ones(2), requires_grad=True)
    out = agrad.sum(agrad.exp(x))
    out.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        out.backward()


def test_retain_graph_allows_a_second_backward():
    x = agrad.tensor(np.ones(2), requires_grad=True)
    out = agrad.sum(agrad.exp(x))
    out.backward(retain_graph=True)
    out.backward()
    np.testing.assert_allclose(_np(x.grad), 2 * np.e)


def test_backward_needs_a_gradient_for_non_scalars():
    x = agrad.tensor(np.ones(2), requires_grad=True)
    with pytest.raises(RuntimeError, match="scalar output"):
        (x * 2.0).backward()
    with pytest.raises(ValueError, match="shape"):
        (x * 2.0).backward(np.ones(3))


def test_backward_without_history_raises():
    x = agrad.tensor(np.ones(2))
    with pytest.raises(RuntimeError, match="requires_grad=True"):
        agrad.sum(x).backward()


def test_no_grad_records_nothing_and_detach_cuts_the_tape():
    x = agrad.tensor(np.ones(2), requires_grad=True)
    with agrad.no_grad():
        y = x * 2.0
    assert not y.requires_grad and y.is_leaf
    z = (x * 2.0).detach()
    assert not z.requires_grad
    with agrad.no_grad(), agrad.enable_grad():
        assert (x * 1.0).requires_grad


def test_no_grad_is_per_thread():
    import threading

    x = agrad.tensor(np.ones(2), requires_grad=True)
    seen = []
    with agrad.no_grad():
        t = threading.Thread(target=lambda: seen.append((x * 2.0).requires_grad))
        t.start()
        t.join()
    assert seen == [True]


def test_integer_and_boolean_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match="floating-point"):
        agrad.tensor(np.arange(3), requires_grad=True)
    with pytest.raises(TypeError, match="floating-point"):
        agrad.tensor(np.array([True]), requires_grad=True)


def test_scalar_promotion_keeps_float32():
    x = agrad.tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    y = x * 2.5 + 1 - 0.5 / (x + 1.0)
    assert y.dtype == np.float32
    agrad.sum(y).backward()
    assert x.grad.dtype == np.float32


def test_mixed_precision_gradient_has_the_input_dtype():
    x = agrad.tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    w = agrad.tensor(np.ones(3, dtype=np.float64), requires_grad=True)
    agrad.sum(x * w).backward()
    assert x.grad.dtype == np.float32 and w.grad.dtype == np.float64


def test_create_graph_gives_hessian_vector_products(on_backend):
    xs = np.array([0.3, -1.2, 0.8])
    x = on_backend(xs)
    x.requires_grad_()
    loss = agrad.sum(agrad.sin(x) * x ** 2)
    (g,) = agrad.gradients([loss], [x], create_graph=True)
    v = on_backend(np.array([1.0, 2.0, -1.0]))
    (hv,) = agrad.gradients([agrad.sum(g * v)], [x])
    # d2/dx2 (x^2 sin x) = 2 sin x + 4 x cos x - x^2 sin x (the Hessian is diagonal)
    h = 2 * np.sin(xs) + 4 * xs * np.cos(xs) - xs ** 2 * np.sin(xs)
    np.testing.assert_allclose(_np(hv), h * np.array([1.0, 2.0, -1.0]), rtol=1e-12)


def test_backward_create_graph_gives_differentiable_grad():
    x = agrad.tensor(np.array(0.7), requires_grad=True)
    (x ** 3).backward(create_graph=True)
    g = x.grad
    x.grad = None
    g.backward()
    assert math.isclose(float(x.grad), 6 * 0.7, rel_tol=1e-12)


def test_matmul_gradient_on_an_mlp_layer_matches_formula():
    rng = np.random.default_rng(0)
    X, W, b = rng.standard_normal((5, 3)), rng.standard_normal((3, 4)), rng.standard_normal(4)
    w_t, b_t = agrad.tensor(W, requires_grad=True), agrad.tensor(b, requires_grad=True)
    h = agrad.tanh(agrad.tensor(X) @ w_t + b_t)
    agrad.sum(h).backward()
    d = 1 - np.tanh(X @ W + b) ** 2
    np.testing.assert_allclose(_np(w_t.grad), X.T @ d, rtol=1e-12)
    np.testing.assert_allclose(_np(b_t.grad), d.sum(0), rtol=1e-12)
