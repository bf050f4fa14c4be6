"""Every registered primitive, gradient-checked in float64 on every backend, first and
second order. The ops are discovered from the registry, so a new op cannot escape."""

from __future__ import annotations

import numpy as np
import pytest

import agrad
from agrad.gradcheck import check_grad
from agrad.tape import REGISTRY

from .op_cases import cases

CASES = cases(np.random.default_rng(0))


def test_every_op_has_a_case():
    missing = sorted(set(REGISTRY) - set(CASES))
    assert not missing, f"registered primitives without a gradient-check case in tests/op_cases.py: {missing}"


def _inputs(put, host):
    return [put(h) if h.dtype.kind == "f" else put(h, dtype=None) for h in host]


@pytest.mark.parametrize("name", sorted(REGISTRY))
@pytest.mark.parametrize("order", [1, 2])
def test_gradcheck(name, order, on_backend):
    assert name in CASES, f"no case for primitive {name!r}"
    for f, host, kwargs in CASES[name]:
        xs = _inputs(on_backend, host)
        wrt = [i for i, h in enumerate(host) if h.dtype.kind == "f"]
        check_grad(f, *xs, wrt=wrt, order=order, **kwargs)


def test_the_op_is_actually_exercised():
    """Each case's function must record its own primitive, or the check proves nothing."""
    for name, entries in CASES.items():
        for f, host, _ in entries:
            xs = [agrad.tensor(h, requires_grad=h.dtype.kind == "f") for h in host]
            out = f(*xs)
            seen, visited, stack = set(), set(), [out]
            while stack:
                t = stack.pop()
                if t._prim is None or id(t) in visited:
                    continue
                visited.add(id(t))
                seen.add(t._prim.name)
                stack.extend(a for a in t._args if isinstance(a, agrad.Tensor))
            assert name in seen, f"the case for {name!r} never calls it (saw {sorted(seen)})"
