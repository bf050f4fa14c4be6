"""The README's code examples run and give what they say."""

from __future__ import annotations

import math
import os
import re

import numpy as np

README = os.path.join(os.path.dirname(__file__), "..", "README.md")


def _blocks():
    with open(README) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), re.S)


def test_seed_example():
    ns: dict = {}
    exec(next(b for b in _blocks() if "x.grad" in b), ns)
    e = math.exp(0.5)
    assert math.isclose(float(ns["x"].grad), (math.exp(e + e * e) + math.cos(e + e * e)) * (e + 2 * e * e))
    assert math.isfinite(float(ns["d2f"](0.1)))


def test_transforms_example():
    ns: dict = {}
    exec(next(b for b in _blocks() if "agrad.jvp" in b), ns)
    x = ns["x"]
    np.testing.assert_allclose(ns["t"].numpy(), np.cos(x) * ns["v"])
    assert ns["H"].shape == (3, 3) and ns["J"].shape == (2, 3)
    np.testing.assert_allclose(ns["Hv"].numpy(), ns["H"].numpy() @ ns["v"])
    assert set(ns["grads"]) == {"w", "b"}
    agrad = ns["agrad"]
    clipped = agrad.grad(lambda y: agrad.sum(ns["clip_gradient"](y) * 5.0))(np.ones(2))
    np.testing.assert_allclose(clipped.numpy(), [1.0, 1.0])


def test_scipy_example():
    """SciPy through agrad (SCIPY_ARRAY_API is set by tests/conftest.py before SciPy is imported)."""
    import pytest

    pytest.importorskip("scipy", reason="the example needs SciPy")
    ns: dict = {}
    exec(next(b for b in _blocks() if "stats.entropy" in b), ns)
    p = ns["p"].numpy().astype(np.float64)
    q = p / p.sum()
    # H(p / sum p): dH/dp_i = -(log q_i + H) / sum p
    np.testing.assert_allclose(ns["g"].numpy(), -(np.log(q) + -np.sum(q * np.log(q))) / p.sum(), rtol=1e-5)
    x = ns["x"].numpy().astype(np.float64)
    np.testing.assert_allclose(float(ns["tangent"]), np.exp(x[0]) / np.exp(x).sum(), rtol=1e-6)
