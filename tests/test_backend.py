"""Backend selection, devices, transfers and the errors for mixing them."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import agrad
from agrad import backend as B


def test_available_backends_lists_the_cpu_backends():
    names = agrad.available_backends()
    assert {"numpy", "array_api_strict"} <= set(names)
    assert set(names) <= {"numpy", "array_api_strict", "cupy"}


def test_cupy_is_available_only_with_a_usable_gpu():
    ok, why = B.backend_status("cupy")
    if ok:
        assert "cupy" in agrad.available_backends()
    else:
        assert "cupy" not in agrad.available_backends()
        with pytest.raises(agrad.BackendError) as err:
            agrad.set_backend("cupy")
        msg = str(err.value)
        assert "cupy" in msg and ("not installed" in msg or "no CUDA device" in msg)
        assert "agrad[cuda12]" in msg or "driver" in msg


def test_command_line_reports_backends_without_a_gpu():
    out = subprocess.run([sys.executable, "-c", "import agrad; print(agrad.available_backends())"],
                         capture_output=True, text=True, check=True)
    assert "numpy" in out.stdout and "array_api_strict" in out.stdout


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(agrad.BackendError, match="unknown backend 'jax'"):
        agrad.set_backend("jax")


def test_environment_variable_selects_the_backend():
    env = dict(os.environ, AGRAD_BACKEND="array_api_strict")
    out = subprocess.run([sys.executable, "-c", "import agrad; print(agrad.get_backend(), type(agrad.zeros(2).data))"],
                         capture_output=True, text=True, check=True, env=env)
    assert out.stdout.startswith("array_api_strict") and "array_api_strict" in out.stdout


def test_set_backend_changes_where_new_arrays_are_created():
    try:
        agrad.set_backend("array_api_strict")
        assert B.namespace_of((agrad.zeros(3).data,)).name == "array_api_strict"
        assert B.namespace_of((agrad.tensor([1.0, 2.0]).data,)).name == "array_api_strict"
        assert B.namespace_of((agrad.tensor(np.ones(2)).data,)).name == "array_api_strict"
    finally:
        agrad.set_backend("numpy")
    assert agrad.get_backend() == "numpy"


def test_use_backend_is_per_thread():
    seen = {}
    barrier = threading.Barrier(2)

    def worker(name):
        with agrad.use_backend(name):
            barrier.wait()
            seen[name] = B.namespace_of((agrad.ones(1).data,)).name
            barrier.wait()

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("numpy", "array_api_strict")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"numpy": "numpy", "array_api_strict": "array_api_strict"}
    assert agrad.get_backend() == "numpy"


def test_ops_follow_their_inputs_not_the_selected_backend():
    with agrad.use_backend("array_api_strict"):
        x = agrad.tensor([1.0, 2.0])
    y = agrad.exp(x)  # the numpy backend is selected here
    assert B.namespace_of((y.data,)).name == "array_api_strict"


def test_mixing_backends_is_an_error_that_names_both():
    x = agrad.tensor(np.ones(2))
    with agrad.use_backend("array_api_strict"):
        y = agrad.tensor([1.0, 2.0])
    with pytest.raises(agrad.BackendError) as err:
        x + y
    msg = str(err.value)
    assert "agrad.add" in msg and "numpy" in msg and "array_api_strict" in msg and "to_device" in msg


def test_mixing_devices_is_an_error_that_names_both():
    with agrad.use_backend("array_api_strict"):
        x = agrad.tensor([1.0, 2.0], device="device1")
        y = agrad.tensor([1.0, 2.0], device="device2")
    with pytest.raises(agrad.BackendError) as err:
        agrad.matmul(x, y)
    msg = str(err.value)
    assert "agrad.matmul" in msg and "device1" in msg and "device2" in msg


def test_transfer_between_devices_is_differentiable():
    with agrad.use_backend("array_api_strict"):
        x = agrad.tensor([1.0, 2.0], device="device1", requires_grad=True)
        y = x.to("device2")
        assert "device2" in str(y.device)
        w = agrad.tensor([3.0, 4.0], device="device2")
        agrad.sum(y * w).backward()
    assert "device1" in str(x.grad.device)
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 4.0])


def test_numpy_returns_a_host_copy(on_backend):
    t = on_backend(np.array([1.0, 2.0]))
    a = t.numpy()
    assert isinstance(a, np.ndarray)
    a[0] = 5.0
    assert t.numpy()[0] == 1.0


def test_numpy_to_cuda_without_gpu_explains_why():
    if B.backend_status("cupy")[0]:
        pytest.skip("a GPU is present")
    with pytest.raises(agrad.BackendError, match="cuda"):
        agrad.tensor(np.ones(2)).to("cuda")


def test_unknown_device_is_a_clear_error():
    with pytest.raises(agrad.BackendError, match="no device 'tpu'"):
        agrad.zeros(2, device="tpu")


def test_an_op_that_changes_backend_keeps_its_output_and_gradient_where_they_are():
    # The CPU stand-in for numpy <-> cupy transfers: neither the forward's output nor the
    # VJP's gradient may be pulled back into the input's backend by the tape.
    import array_api_strict

    to_strict = agrad.primitive(
        "to_strict_for_test", lambda xp, x: array_api_strict.asarray(x),
        vjp=[lambda xp, g, ans, x: np.from_dlpack(g)], register=False,
    )
    x = agrad.tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = to_strict(x)
    assert B.namespace_of((y.data,)).name == "array_api_strict"
    agrad.sum(y * y).backward()
    assert isinstance(x.grad.data, np.ndarray)
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0])


@pytest.mark.skipif(not B.backend_status("cupy")[0], reason="needs CuPy and a CUDA GPU")
def test_numpy_cupy_round_trip_is_differentiable():
    x = agrad.tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = x.to("cuda")
    assert B.namespace_of((y.data,)).name == "cupy"
    agrad.sum(y * y).backward()
    assert isinstance(x.grad.data, np.ndarray)
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0])


@pytest.mark.skipif(not B.backend_status("cupy")[0], reason="needs CuPy and a CUDA GPU")
def test_cupy_and_numpy_cannot_mix_silently():
    x = agrad.tensor(np.ones(2))
    y = x.to("cuda")
    with pytest.raises(agrad.BackendError, match="cupy"):
        x * y


def test_scatter_add_sums_repeated_indices(on_backend):
    g = on_backend(np.array([1.0, 2.0, 3.0, 4.0]))
    idx = on_backend(np.array([0, 2, 0, 0]), dtype=None)
    out = agrad.scatter_add(g, (3,), (idx,))
    np.testing.assert_allclose(out.numpy(), [8.0, 0.0, 2.0])


def test_numpy_conversion_is_implicit_only_on_the_host():
    t = agrad.tensor(np.array([1.0, 2.0]))
    np.testing.assert_array_equal(np.asarray(t), [1.0, 2.0])
    with agrad.use_backend("array_api_strict"):
        s = agrad.tensor([1.0, 2.0])
    with pytest.raises(TypeError, match=r"\.numpy\(\)"):
        np.asarray(s)
