"""Habits that used to corrupt data or results silently (issue 9): copies, in-place
updates, data writes and one dtype story, on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import agrad
from agrad import backend as B

# --------------------------------------------------------------------------- copies


def test_a_parameter_never_aliases_the_array_it_was_made_from(on_backend):
    init = on_backend(np.ones(2), dtype="float32").data
    host_before = B.to_numpy(init).copy()
    p = agrad.nn.Parameter(init)
    opt = agrad.optim.SGD([p], lr=0.5)
    agrad.sum(p * p).backward()
    opt.step()
    np.testing.assert_array_equal(B.to_numpy(init), host_before)  # the user's array is untouched
    np.testing.assert_array_equal(p.numpy(), [0.0, 0.0])
    t = agrad.tensor(on_backend(np.ones(2)))
    q = agrad.nn.Parameter(t)
    with agrad.no_grad():
        q -= 1.0
    np.testing.assert_array_equal(t.numpy(), [1.0, 1.0])


def test_tensor_copies_and_asarray_shares(on_backend):
    src = on_backend(np.array([1.0, 2.0])).data
    t = agrad.tensor(src)
    s = agrad.asarray(src)
    with agrad.no_grad():
        t += 1.0
        s *= 10.0
    np.testing.assert_array_equal(B.to_numpy(src), [10.0, 20.0])  # asarray shared it
    np.testing.assert_array_equal(t.numpy(), [2.0, 3.0])  # tensor did not
    c = agrad.asarray(src, copy=True)
    with agrad.no_grad():
        c += 1.0
    np.testing.assert_array_equal(B.to_numpy(src), [10.0, 20.0])
    with pytest.raises(ValueError, match="copy=False"):
        agrad.asarray(src, dtype="float32", copy=False)


def test_numpy_data_tensor_copies_asarray_shares():
    host = np.array([1.0, 2.0])
    assert not np.shares_memory(agrad.tensor(host).data, host)
    assert np.shares_memory(agrad.asarray(host).data, host)
    assert np.shares_memory(agrad.from_dlpack(host).data, host)


# --------------------------------------------------------------------------- in-place updates


def test_in_place_update_under_no_grad_keeps_the_leaf(on_backend):
    w = agrad.tensor(on_backend(np.ones(2)), requires_grad=True)
    agrad.sum(w * w).backward()
    before = w
    with agrad.no_grad():
        w -= 0.1 * w.grad
        w *= 2.0
        w += 1.0
        w /= 2.0
    assert w is before and w.requires_grad and w.is_leaf
    np.testing.assert_allclose(w.numpy(), ((1 - 0.2) * 2 + 1) / 2 * np.ones(2))


def test_in_place_update_while_recording_is_an_error(on_backend):
    w = agrad.tensor(on_backend(np.ones(2)), requires_grad=True)
    with pytest.raises(RuntimeError, match="no_grad"):
        w -= 1.0
    with pytest.raises(RuntimeError, match="no_grad"):
        w.data = on_backend(np.zeros(2)).data
    np.testing.assert_array_equal(w.numpy(), [1.0, 1.0])  # nothing changed


def test_in_place_update_keeps_shape_and_dtype(on_backend):
    t = on_backend(np.ones(2), dtype="float32")
    with pytest.raises(ValueError):
        t += on_backend(np.ones((3, 2)), dtype="float32")  # broadcasting may not grow t
    i = on_backend(np.array([1, 2]), dtype=None)
    with pytest.raises((TypeError, ValueError)):
        i += 0.5  # a float into an integer array loses its kind


def test_an_input_updated_after_recording_is_caught_at_backward(on_backend):
    w = agrad.tensor(on_backend(np.ones(2)), requires_grad=True)
    loss = agrad.sum(agrad.exp(w) * w)
    with agrad.no_grad():
        w -= 1.0
    with pytest.raises(RuntimeError, match="updated in place"):
        loss.backward()
    # the normal order (backward, then the update) is fine, step after step
    opt = agrad.optim.SGD([w], lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        agrad.sum(w * w).backward()
        opt.step()


def test_data_writes_under_no_grad_update_the_tensor(on_backend):
    w = agrad.tensor(on_backend(np.ones(2)), requires_grad=True)
    with agrad.no_grad():
        w.data = on_backend(np.zeros(2)).data
    assert w.requires_grad
    np.testing.assert_array_equal(w.numpy(), [0.0, 0.0])
    if B.namespace_of((w.data,)).mutable:
        w.data -= 1.0  # in place on the array itself (the PyTorch idiom): allowed, and counted
        np.testing.assert_array_equal(w.numpy(), [-1.0, -1.0])


# --------------------------------------------------------------------------- dtypes


def test_agrad_dtypes_equal_every_backends_dtypes(on_backend):
    t = on_backend(np.ones(2), dtype="float32")
    assert t.dtype == agrad.float32 and t.dtype == "float32" and t.dtype != agrad.float64
    assert t.dtype == t.data.dtype  # the backend's own dtype object
    xp = B.namespace_of((t.data,))
    assert agrad.float32 == xp.float32 and agrad.int64 == xp.int64 and agrad.bool == xp.bool
    for spelling in (agrad.float64, "float64", xp.float64):
        assert agrad.astype(t, spelling).dtype == agrad.float64
        assert agrad.zeros(2, dtype=spelling).dtype == agrad.float64
    assert repr(agrad.float32) == "agrad.float32"


def test_one_default_floating_dtype(on_backend):
    assert agrad.get_default_dtype() == agrad.float32
    assert agrad.tensor([0.5, 1.0]).dtype == agrad.float32
    assert agrad.tensor(2).dtype == agrad.int64
    assert agrad.zeros(2).dtype == agrad.ones(2).dtype == agrad.full((2,), 1.5).dtype == agrad.float32
    assert agrad.nn.Linear(2, 3).weight.dtype == agrad.float32
    assert agrad.tensor(on_backend(np.ones(2))).dtype == agrad.float64  # arrays keep their own
    # Python complex numbers: the complex dtype of the default's precision (the standard; PyTorch)
    assert agrad.tensor([1j]).dtype == agrad.full((1,), 1j).dtype == agrad.complex64
    assert agrad.__array_namespace_info__().default_dtypes()["complex floating"] == agrad.complex64
    agrad.set_default_dtype(agrad.float64)
    try:
        assert agrad.tensor([0.5]).dtype == agrad.float64 and agrad.zeros(1).dtype == agrad.float64
        assert agrad.nn.Linear(2, 3).weight.dtype == agrad.float64
        assert agrad.tensor([1j]).dtype == agrad.full((1,), 1j).dtype == agrad.complex128
        assert agrad.__array_namespace_info__().default_dtypes()["complex floating"] == agrad.complex128
    finally:
        agrad.set_default_dtype("float32")
    with pytest.raises(ValueError, match="float32 or float64"):
        agrad.set_default_dtype("int32")


def test_float32_parameters_with_float64_inputs_promote_visibly(on_backend):
    # The array API's promotion (as NumPy and JAX): the output is float64, and each
    # parameter's gradient has the parameter's own dtype.
    layer = agrad.nn.Linear(3, 2, device=on_backend.device)
    x = on_backend(np.ones((4, 3)))
    y = layer(x)
    assert y.dtype == agrad.float64
    agrad.sum(y).backward()
    assert layer.weight.grad.dtype == agrad.float32 and layer.bias.grad.dtype == agrad.float32
