"""examples/per_example_gradients.py: vmap(grad) gives each example's gradient, DP-SGD's
update reduces to the batch's mean gradient without clipping and noise, and a short
DP-SGD run on the real MNIST learns."""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest

import agrad

SHARED = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))


def _setup(n=5):
    import per_example_gradients as ex

    model = agrad.nn.MLP([784, 8, 10], activation="tanh", rng=agrad.random.generator(0), dtype="float64")
    params = agrad.nn.utils.parameters_dict(model)
    rng = np.random.default_rng(0)
    x, y = agrad.tensor(rng.uniform(0, 1, (n, 784))), agrad.tensor(rng.integers(0, 10, n))
    return ex, model, params, x, y, ex.per_example_loss(model), y


def test_per_example_gradients_are_each_examples_gradient():
    ex, model, params, x, y, loss, labels = _setup()
    got = agrad.vmap(agrad.grad(loss), in_axes=(None, 0, 0))(params, x, labels)
    for i in range(x.shape[0]):
        want = agrad.grad(lambda ps: agrad.nn.logistic_loss(agrad.nn.utils.functional_call(model, ps, x[i:i + 1]),
                                                            y[i:i + 1]))(params)
        for k in params:
            np.testing.assert_allclose(got[k].numpy()[i], want[k].numpy(), rtol=1e-10, atol=1e-12)


def test_dp_sgd_without_clipping_or_noise_is_the_mean_gradient_and_clipping_bounds_each_example():
    ex, model, params, x, y, loss, labels = _setup()
    grads = agrad.vmap(agrad.grad(loss), in_axes=(None, 0, 0))(params, x, labels)
    update, norms = ex.dp_sgd_update(grads, math.inf, 0.0, None, x.shape[0])
    mean = agrad.grad(lambda ps: agrad.nn.logistic_loss(agrad.nn.utils.functional_call(model, ps, x), y))(params)
    for k in params:
        np.testing.assert_allclose(update[k].numpy(), mean[k].numpy(), rtol=1e-10, atol=1e-12)
    want_norms = np.sqrt(sum((g.numpy().reshape(x.shape[0], -1) ** 2).sum(axis=1) for g in grads.values()))
    np.testing.assert_allclose(norms.numpy(), want_norms, rtol=1e-12)
    clip = float(np.min(want_norms)) / 2  # every example clipped: the sum's norm is at most n * clip
    update, _ = ex.dp_sgd_update(grads, clip, 0.0, None, x.shape[0])
    total = math.sqrt(sum(float((u.numpy() ** 2).sum()) for u in update.values()))
    assert total <= clip * (1 + 1e-9)


@pytest.mark.skipif(not os.path.isdir(SHARED), reason="real MNIST not found at ../shared/data/mnist")
def test_a_short_dp_sgd_run_learns(tmp_path):
    import per_example_gradients as ex

    results = ex.main(["--epochs", "1", "--train-size", "3840", "--data-dir", SHARED, "--out", str(tmp_path),
                       "--quiet", "--no-figures"])
    assert results["test_accuracy"] >= 0.6
    assert (tmp_path / "results.json").exists()
