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
