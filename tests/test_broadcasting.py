"""Hypothesis: broadcasting in binary ops gives gradients of the inputs' shapes whose
values equal the summed-back broadcast gradient."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import agrad

shapes = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3)


@settings(max_examples=60, deadline=None)
@given(shapes=shapes, op=st.sampled_from(["add", "subtract", "multiply", "divide", "maximum"]),
       seed=st.integers(0, 2**16))
def test_binary_op_gradients_under_broadcasting(shapes, op, seed):
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.5, 1.5, shapes.input_shapes[0])
    b = rng.uniform(0.5, 1.5, shapes.input_shapes[1]) + 0.01
    x, y = agrad.tensor(a, requires_grad=True), agrad.tensor(b, requires_grad=True)
    out = getattr(agrad, op)(x, y)
    assert out.shape == shapes.result_shape
    agrad.sum(out).backward()
    assert x.grad.shape == a.shape and y.grad.shape == b.shape
    ab, bb = np.broadcast_arrays(a, b)
    local = {
        "add": (np.ones_like(ab), np.ones_like(bb)),
        "subtract": (np.ones_like(ab), -np.ones_like(bb)),
        "multiply": (bb, ab),
        "divide": (1 / bb, -ab / bb ** 2),
        "maximum": ((ab > bb) + 0.5 * (ab == bb), (bb > ab) + 0.5 * (ab == bb)),
    }[op]

    def sum_to(g, shape):
        g = g.sum(axis=tuple(range(g.ndim - len(shape))))
        return g.sum(axis=tuple(i for i, s in enumerate(shape) if s == 1), keepdims=True).reshape(shape)

    np.testing.assert_allclose(x.grad.numpy(), sum_to(local[0], a.shape), rtol=1e-12)
    np.testing.assert_allclose(y.grad.numpy(), sum_to(local[1], b.shape), rtol=1e-12)
