"""Shared fixtures: every test that takes ``backend_device`` runs on each backend/device.

``--backend NAME`` restricts the matrix to one backend (numpy, array_api_strict, cupy).
CuPy cases are skipped with a reason when no GPU is usable.
"""

from __future__ import annotations

import os

# SciPy reads SCIPY_ARRAY_API once, at its first import, and only then dispatches on agrad
# Tensors (tests/test_scipy.py): set it before any test module can import SciPy.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import pytest  # noqa: E402

import agrad
from agrad import backend as B

# agrad targets the 2024.12 standard: array-api-strict is pinned to it for the whole
# suite, so that nothing newer (nor anything outside the standard) slips in.
try:
    import array_api_strict

    array_api_strict.set_array_api_strict_flags(api_version=agrad.__array_api_version__)
except ImportError:  # pragma: no cover - the test extra installs it
    pass

MATRIX = [
    ("numpy", None),
    ("array_api_strict", None),
    ("array_api_strict", "device1"),
    ("cupy", None),
]


def pytest_addoption(parser):
    parser.addoption("--backend", action="store", default=os.environ.get("AGRAD_TEST_BACKEND"),
                     help="run the backend matrix on this backend only (numpy, array_api_strict, cupy)")


def _selected(config):
    return config.getoption("--backend")


def pytest_generate_tests(metafunc):
    if "backend_device" in metafunc.fixturenames:
        chosen = _selected(metafunc.config)
        params = []
        for name, dev in MATRIX:
            if chosen and name != chosen:
                continue
            ok, why = B.backend_status(name)
            marks = [] if ok else [pytest.mark.skip(reason=f"{name} unavailable: {why}")]
            params.append(pytest.param((name, dev), marks=marks, id=f"{name}-{dev or 'default'}"))
        metafunc.parametrize("backend_device", params)


@pytest.fixture
def on_backend(backend_device):
    """Select the backend for the test; yields a helper that puts host data on it."""
    name, dev = backend_device

    def put(host_array, dtype="float64"):
        t = agrad.tensor(B.from_numpy(host_array, backend=name, device=dev))
        return agrad.astype(t, dtype) if dtype is not None else t

    put.device = dev
    put.backend = name
    with agrad.use_backend(name):
        yield put


@pytest.fixture
def rng():
    return B.host_rng(1234)
