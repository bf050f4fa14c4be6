"""Code written against the array API standard, not for agrad, becomes differentiable:
the example's Newton solver and array-api-extra's functions, in both modes, on every
backend (examples/array_api_code.py)."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import agrad

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples"))


def test_array_api_code_is_differentiable_in_both_modes(backend_device):
    pytest.importorskip("array_api_extra")
    import array_api_code

    name, dev = backend_device
    if dev is not None:
        pytest.skip("the example runs on a backend's default device")
    previous = agrad.get_backend()
    try:
        with agrad.use_backend(name):
            out = array_api_code.main(["--backend", name])  # (it selects the backend, as a script does)
    finally:
        agrad.set_backend(previous)
    assert out["reverse"] == pytest.approx(out["fd"], rel=1e-6)
    assert out["forward"] == pytest.approx(out["reverse"], rel=1e-12)
    np.testing.assert_allclose(out["sinc_grad"].numpy(), out["sinc_jvp"].numpy(), rtol=1e-12)


def test_a_third_party_array_api_function_passes_the_gradient_check(on_backend):
    xpx = pytest.importorskip("array_api_extra")
    a = on_backend(np.random.default_rng(1).standard_normal((3, 5)))
    agrad.check_grad(lambda m: xpx.cov(m), a)
    agrad.check_grad(lambda m: xpx.cov(m), a, order=2)
