"""The benchmarks time what they claim to: every agrad contender of the step benchmark
computes the same gradients as the hand-written floor, for a batch of one (the outer
products) and a small batch, in float64."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import common  # noqa: E402


@pytest.mark.parametrize("n", [1, 5])
def test_every_contender_computes_the_floors_gradients(n):
    w = common.initial_weights("float64")
    x, y = common.batch(n, "float64")
    want = common.HandWrittenInPlace(w, x, y, "numpy").host_grads()
    for cls in (common.HandWritten, common.Agrad, common.AgradCompiled, common.AgradCompiledGradsDropped):
        contender = cls(w, x, y, "numpy")
        for _ in range(3):  # traced, traced again, replayed: the gradients of the starting weights each time
            got = contender.host_grads()
            assert set(got) == set(want)
            for name in want:
                np.testing.assert_allclose(got[name], want[name], rtol=1e-10, atol=1e-12,
                                           err_msg=f"{contender.name}: {name}")
