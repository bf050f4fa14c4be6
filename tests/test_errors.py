"""Bad input gets a clear error naming the op, the shapes and the fix."""

from __future__ import annotations

import numpy as np
import pytest

import agrad


def test_matmul_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"agrad.matmul: shapes \(2, 3\) and \(4, 5\)"):
        agrad.tensor(np.ones((2, 3))) @ agrad.tensor(np.ones((4, 5)))


def test_reshape_to_a_wrong_size():
    with pytest.raises(ValueError, match=r"agrad.reshape: cannot reshape .* \(2, 3\) .* into shape \(4,\)"):
        agrad.reshape(agrad.tensor(np.ones((2, 3))), (4,))


def test_axis_out_of_range():
    with pytest.raises(ValueError, match="agrad.sum: axis 2 is out of range for a 2-D input"):
        agrad.sum(agrad.tensor(np.ones((2, 3))), axis=2)


def test_broadcast_to_incompatible():
    with pytest.raises(ValueError, match="agrad.broadcast_to"):
        agrad.broadcast_to(agrad.tensor(np.ones(3)), (2, 4))


def test_concat_and_stack_shape_errors():
    with pytest.raises(ValueError, match="agrad.concat"):
        agrad.concat([agrad.tensor(np.ones((2, 3))), agrad.tensor(np.ones((3, 3)))], axis=1)
    with pytest.raises(ValueError, match="agrad.stack"):
        agrad.stack([agrad.tensor(np.ones(2)), agrad.tensor(np.ones(3))])


def test_non_array_input_is_a_type_error():
    with pytest.raises(TypeError, match="cannot use an object of type str"):
        agrad.exp("x")


def test_item_assignment_follows_the_in_place_rules():
    t = agrad.tensor(np.ones(3))
    t[0] = 5.0  # nobody differentiates t: an ordinary update
    assert t.numpy().tolist() == [5.0, 1.0, 1.0]
    w = agrad.tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="where|no_grad"):
        w[0] = 1.0  # while recording: refused, with the way out
    with agrad.no_grad():
        w[1] = 3.0
    assert w.numpy().tolist() == [1.0, 3.0, 1.0] and w.requires_grad
    y = w * 2.0
    y[0] = 0.0  # a recorded tensor: the update is recorded too (agrad.inplace)
    agrad.sum(y * y).backward()
    assert w.grad.numpy().tolist() == [0.0, 24.0, 8.0]
    v = w[1:]
    with pytest.raises(RuntimeError, match="view of a leaf"):
        v[0] = 1.0


def test_clip_bounds():
    with pytest.raises(ValueError, match="agrad.clip: min"):
        agrad.clip(agrad.tensor(np.ones(2)), min=2.0, max=1.0)


def test_squeeze_of_a_long_axis():
    with pytest.raises(ValueError, match="agrad.squeeze: axis 0"):
        agrad.squeeze(agrad.tensor(np.ones((2, 1))), axis=0)


def test_grad_of_non_scalar_function():
    with pytest.raises(ValueError, match="must return a scalar"):
        agrad.grad(lambda x: x * 2.0)(np.ones(3))


def test_duplicate_primitive_name_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        agrad.primitive("exp", lambda xp, x: x)


def test_gradient_of_non_differentiable_argument():
    x = agrad.tensor(np.array([1.0, -1.0]), requires_grad=True)
    cond = agrad.tensor(np.array([True, False]))
    out = agrad.where(cond, x, 0.0)
    agrad.sum(out).backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 0.0])
