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
    for cls in (common.HandWritten, common.EagerArrayWork, common.MinimalTape, common.Agrad, common.AgradCompiled,
                common.AgradCompiledGradsDropped):
        contender = cls(w, x, y, "numpy")
        for _ in range(3):  # traced, traced again, replayed: the gradients of the starting weights each time
            got = contender.host_grads()
            assert set(got) == set(want)
            for name in want:
                np.testing.assert_allclose(got[name], want[name], rtol=1e-10, atol=1e-12,
                                           err_msg=f"{contender.name}: {name}")


def test_the_opcode_count_sees_every_python_frame_of_a_step():
    """step_opcodes.py counts the Python work of one step: the floor's one function, the
    tape's functions for eager agrad, and a compiled step's generated replay."""
    import step_opcodes

    floor, _ = step_opcodes.measure("hand-written in-place", 1)
    eager, eager_calls = step_opcodes.measure("agrad eager", 1)
    compiled, _ = step_opcodes.measure("agrad compiled", 1)
    assert any(key.startswith("common.py:step:") for key in floor)
    assert any(key.startswith("tape.py:_sweep:") for key in eager) and eager_calls[next(
        key for key in eager if key.startswith("tape.py:apply:"))] == 4  # linear, tanh, linear, the loss
    assert any(key.startswith("<agrad.compile replay>") for key in compiled)
    assert not any(key.startswith("tape.py:") and "_wrap" not in key for key in compiled)  # no tape in a replay


def test_per_example_gradient_contenders_agree_with_the_floor():
    """per_example_grads.py: vmap(grad) (eager and compiled), the loop of grads and (when
    installed) torch.func compute the hand-written per-example gradients."""
    import per_example_grads

    _, wrong, med = per_example_grads.run(batch=3, dtype="float64", rounds=1, seconds=0.0, threads=1,
                                          with_torch=common.available(common.Torch))
    assert not wrong
    assert {"agrad vmap(grad)", "agrad compile(vmap(grad))", "agrad loop of grad"} <= set(med)


def test_the_vmapped_jacobian_matches_the_loop_it_replaced():
    import jacobian_cost

    assert [mode for mode, _, _ in jacobian_cost.vmap_against_loop(n=5, m=7, reps=1)] == ["forward", "reverse"]
