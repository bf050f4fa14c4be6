"""Each optimizer's step against its formula computed by hand; L-BFGS on a convex problem."""

from __future__ import annotations

import numpy as np
import pytest

import agrad
from agrad import optim


def _param(on_backend, values):
    p = on_backend(np.asarray(values, dtype=float))
    p.requires_grad_()
    return p


def _set_grad(p, on_backend, g):
    p.grad = on_backend(np.asarray(g, dtype=float))


def test_sgd_plain_and_weight_decay(on_backend):
    p = _param(on_backend, [1.0, -2.0])
    opt = optim.SGD([p], lr=0.1, weight_decay=0.5)
    _set_grad(p, on_backend, [0.2, 0.4])
    opt.step()
    np.testing.assert_allclose(p.numpy(), [1.0 - 0.1 * (0.2 + 0.5), -2.0 - 0.1 * (0.4 - 1.0)])


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_two_steps(on_backend, nesterov):
    p = _param(on_backend, [1.0])
    opt = optim.SGD([p], lr=0.1, momentum=0.9, nesterov=nesterov)
    w, b = 1.0, None
    for g in (0.5, -0.25):
        _set_grad(p, on_backend, [g])
        opt.step()
        b = g if b is None else 0.9 * b + g
        w -= 0.1 * ((g + 0.9 * b) if nesterov else b)
        np.testing.assert_allclose(p.numpy(), [w], rtol=1e-12)


def test_adam_three_steps(on_backend):
    p = _param(on_backend, [0.5, -0.5])
    opt = optim.Adam([p], lr=0.01, betas=(0.9, 0.99), eps=1e-8)
    w = np.array([0.5, -0.5])
    m = v = np.zeros(2)
    for t, g in enumerate(([0.1, -0.3], [0.2, 0.1], [-0.4, 0.05]), start=1):
        g = np.array(g)
        _set_grad(p, on_backend, g)
        opt.step()
        m = 0.9 * m + 0.1 * g
        v = 0.99 * v + 0.01 * g * g
        w = w - 0.01 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.99 ** t)) + 1e-8)
        np.testing.assert_allclose(p.numpy(), w, rtol=1e-12)


def test_parameters_without_gradient_are_left_alone():
    p = agrad.tensor(np.ones(2), requires_grad=True)
    optim.SGD([p], lr=0.1).step()
    np.testing.assert_array_equal(p.numpy(), [1.0, 1.0])


@pytest.mark.parametrize("make", [
    lambda ps: optim.SGD(ps, lr=-1.0),
    lambda ps: optim.SGD(ps, lr=0.1, momentum=1.5),
    lambda ps: optim.SGD(ps, lr=0.1, nesterov=True),
    lambda ps: optim.Adam(ps, lr=-1e-3),
    lambda ps: optim.Adam(ps, betas=(0.9, 1.0)),
    lambda ps: optim.LBFGS(ps, history_size=0),
    lambda ps: optim.SGD([], lr=0.1),
])
def test_invalid_hyperparameters_are_clear_errors(make):
    with pytest.raises(ValueError):
        make([agrad.tensor(np.ones(1), requires_grad=True)])


def test_lbfgs_reaches_the_optimum_of_logistic_regression(on_backend):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 3))
    y = rng.integers(0, 2, 60)
    x_t, y_t = on_backend(X), on_backend(y, dtype=None)
    w = on_backend(np.zeros((3, 2)))
    w.requires_grad_()
    lam = 0.1

    def loss_fn():
        return agrad.nn.logistic_loss(x_t @ w, y_t) + agrad.nn.l2_penalty([w], lam)

    def closure():
        w.grad = None
        loss = loss_fn()
        loss.backward()
        return loss

    opt = optim.LBFGS([w], max_iter=100, tolerance_grad=1e-10, tolerance_change=0.0)
    opt.step(closure)
    closure()
    assert np.abs(w.grad.numpy()).max() < 1e-6  # the gradient vanishes at the optimum
    # a strongly convex problem has one minimum: gradient descent from elsewhere agrees
    w2 = agrad.tensor(np.ones((3, 2)), requires_grad=True)
    x2, y2 = agrad.tensor(X), agrad.tensor(y)
    sgd = optim.SGD([w2], lr=0.5)
    for _ in range(3000):
        w2.grad = None
        (agrad.nn.logistic_loss(x2 @ w2, y2) + agrad.nn.l2_penalty([w2], lam)).backward()
        sgd.step()
    np.testing.assert_allclose(w.numpy(), w2.numpy(), atol=1e-5)
