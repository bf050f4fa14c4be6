"""agrad.vmap: JAX's semantics (in_axes, out_axes, axis_size, chunk_size, randomness), its
errors, and its compositions with the other transforms and agrad.compile, each against
a Python loop over the examples computed without vmap."""

from __future__ import annotations

import numpy as np
import pytest

import agrad
from agrad import VmapError, vmap

RNG = np.random.default_rng(19)


def _np(t):
    return t.numpy() if isinstance(t, agrad.Tensor) else np.asarray(t)


def loss(x, w):
    """One example's scalar: tanh(x @ w) summed, with a square so second derivatives are not trivial."""
    return agrad.sum(agrad.tanh(x @ w) ** 2)


@pytest.fixture
def data():
    return RNG.standard_normal((5, 3)), RNG.standard_normal((3, 4))


def test_values_match_a_loop_on_raw_arrays_and_tensors(data):
    xs, w = data
    ref = np.array([_np(loss(agrad.Tensor(x), agrad.Tensor(w))) for x in xs])
    np.testing.assert_allclose(_np(vmap(loss, in_axes=(0, None))(xs, w)), ref, rtol=1e-12)
    np.testing.assert_allclose(_np(vmap(loss, in_axes=(0, None))(agrad.Tensor(xs), agrad.Tensor(w))), ref,
                               rtol=1e-12)


def test_in_axes_negative_and_nonzero_and_out_axes(data):
    xs, w = data
    f = vmap(lambda x, w: agrad.tanh(x @ w), in_axes=(-1, None), out_axes=1)
    out = _np(f(xs.T.copy(), w))  # examples along the last axis of the input, the second of the output
    ref = np.stack([np.tanh(x @ w) for x in xs], axis=1)
    assert out.shape == (4, 5)
    np.testing.assert_allclose(out, ref, rtol=1e-12)
    out = _np(vmap(lambda x: x * 2.0, out_axes=-1)(xs))
    np.testing.assert_allclose(out, (xs * 2).T, rtol=1e-12)


def test_pytree_in_axes_and_outputs():
    params = {"w": RNG.standard_normal((5, 3, 2)), "b": RNG.standard_normal(2)}
    x = RNG.standard_normal(3)

    def f(p, x):
        y = x @ p["w"] + p["b"]
        return {"y": y, "n": agrad.sum(y * y)}, [y[0]]

    out, rest = vmap(f, in_axes=({"w": 0, "b": None}, None))(params, x)
    for i in range(5):
        y = x @ params["w"][i] + params["b"]
        np.testing.assert_allclose(_np(out["y"][i]), y, rtol=1e-12)
        np.testing.assert_allclose(_np(out["n"][i]), (y * y).sum(), rtol=1e-12)
        np.testing.assert_allclose(_np(rest[0][i]), y[0], rtol=1e-12)


def test_keyword_arguments_are_mapped_over_axis_0():
    xs, ys = RNG.standard_normal((4, 3)), RNG.standard_normal((4, 3))
    out = vmap(lambda x, *, y: agrad.sum(x * y))(xs, y=ys)
    np.testing.assert_allclose(_np(out), (xs * ys).sum(1), rtol=1e-12)


def test_out_axes_none_for_an_unbatched_output_and_an_error_for_a_batched_one(data):
    xs, w = data
    a, b = vmap(lambda x, w: (agrad.sum(w), x * 1.0), in_axes=(0, None), out_axes=(None, 0))(xs, w)
    np.testing.assert_allclose(_np(a), w.sum())
    with pytest.raises(ValueError, match="out_axes is None for output 0"):
        vmap(lambda x: x * 2.0, out_axes=None)(xs)


def test_an_output_that_does_not_depend_on_the_examples_is_repeated(data):
    xs, w = data
    out = _np(vmap(lambda x, w: agrad.sum(w), in_axes=(0, None))(xs, w))
    np.testing.assert_allclose(out, np.full(5, w.sum()))


def test_axis_size_when_nothing_is_mapped(data):
    _, w = data
    out = _np(vmap(lambda w: agrad.sum(w), in_axes=None, axis_size=3)(w))
    np.testing.assert_allclose(out, np.full(3, w.sum()))
    with pytest.raises(ValueError, match="axis_size"):
        vmap(lambda w: w, in_axes=None)(w)


def test_sizes_that_disagree_name_the_arguments():
    with pytest.raises(ValueError, match=r"argument 0 has size 3, argument 1 has size 4"):
        vmap(lambda a, b: a + b)(np.ones((3, 2)), np.ones((4, 2)))


def test_an_axis_out_of_range_names_the_argument():
    with pytest.raises(ValueError, match=r"in_axes 2 is out of range for argument 1"):
        vmap(lambda a, b: a + b, in_axes=(0, 2))(np.ones((3, 2)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="in_axes has 1 entries"):
        vmap(lambda a, b: a + b, in_axes=(0,))(np.ones(3), np.ones(3))


def test_chunk_size_gives_the_same_result(data):
    xs, w = data
    full = _np(vmap(loss, in_axes=(0, None))(xs, w))
    chunked = _np(vmap(loss, in_axes=(0, None), chunk_size=2)(xs, w))
    np.testing.assert_allclose(chunked, full, rtol=1e-12)
    g = _np(vmap(agrad.grad(loss, argnums=1), in_axes=(0, None), chunk_size=3)(xs, w))
    assert g.shape == (5, 3, 4)


def test_a_value_dependent_decision_is_a_clear_error(data):
    xs, _ = data

    def f(x):
        if agrad.sum(x) > 0:
            return x
        return -x

    with pytest.raises(VmapError, match="agrad.where"):
        vmap(f)(xs)


def test_data_dependent_shapes_are_refused(data):
    xs, _ = data
    with pytest.raises(VmapError, match="nonzero"):
        vmap(lambda x: agrad.nonzero(x > 0)[0])(xs)


def test_random_numbers_follow_randomness(data):
    xs, _ = data
    f = lambda x: x + agrad.random.normal((3,), dtype="float64")  # noqa: E731
    with pytest.raises(VmapError, match="randomness"):
        vmap(f)(xs)
    same = _np(vmap(f, randomness="same")(xs)) - xs
    np.testing.assert_allclose(same, np.broadcast_to(same[0], same.shape))
    different = _np(vmap(f, randomness="different")(xs)) - xs
    assert different.shape == (5, 3) and not np.allclose(different[0], different[1])
    drop = agrad.nn.Dropout(0.5)
    with pytest.raises(VmapError):
        vmap(drop)(xs)
    out = _np(vmap(drop, randomness="different")(xs))
    assert out.shape == xs.shape


def test_an_escaped_batched_value_is_an_error(data):
    xs, _ = data
    kept = []

    def f(x):
        kept.append(x)
        return x * 1.0

    vmap(f)(xs)
    with pytest.raises(VmapError, match="has returned"):
        kept[0] * 2.0


# --------------------------------------------------------------------------- compositions


def _loop_grads(fn, xs, w, argnums):
    return np.stack([_np(agrad.grad(fn, argnums=argnums)(agrad.Tensor(x), agrad.Tensor(w))) for x in xs])


def test_per_example_gradients(data):
    xs, w = data
    got = _np(vmap(agrad.grad(loss, argnums=1), in_axes=(0, None))(xs, w))
    np.testing.assert_allclose(got, _loop_grads(loss, xs, w, 1), rtol=1e-10)
    got = _np(vmap(agrad.grad(loss, argnums=0), in_axes=(0, None))(xs, w))
    np.testing.assert_allclose(got, _loop_grads(loss, xs, w, 0), rtol=1e-10)


def test_grad_of_vmap(data):
    xs, w = data
    got = _np(agrad.grad(lambda w: agrad.sum(vmap(loss, in_axes=(0, None))(xs, w)))(w))
    np.testing.assert_allclose(got, _loop_grads(loss, xs, w, 1).sum(0), rtol=1e-10)


def test_vmap_of_vmap_with_a_closure_over_the_outer_example():
    a, b = RNG.standard_normal(4), RNG.standard_normal(3)

    def outer(x):
        return vmap(lambda y: x * y + agrad.sin(x))(b)

    got = _np(vmap(outer)(a))
    np.testing.assert_allclose(got, a[:, None] * b[None, :] + np.sin(a)[:, None], rtol=1e-12)
    got = _np(vmap(vmap(lambda x, y: x * y, in_axes=(0, None)), in_axes=(None, 0))(a, b))  # outer: y, inner: x
    np.testing.assert_allclose(got, np.outer(b, a), rtol=1e-12)


def test_jvp_of_vmap_and_vmap_of_jvp(data):
    xs, w = data
    t = RNG.standard_normal(w.shape)
    _, ref = agrad.jvp(lambda w: agrad.stack([loss(agrad.Tensor(x), w) for x in xs]), (agrad.Tensor(w),),
                       (agrad.Tensor(t),))
    _, got = agrad.jvp(lambda w: vmap(loss, in_axes=(0, None))(xs, w), (w,), (t,))
    np.testing.assert_allclose(_np(got), _np(ref), rtol=1e-10)
    got = vmap(lambda x: agrad.jvp(lambda w: loss(x, w), (w,), (t,))[1])(xs)
    np.testing.assert_allclose(_np(got), _np(ref), rtol=1e-10)


def test_second_order_through_vmap_of_grad(data):
    """grad of vmap(grad): the inner backward pass must be recorded for the outer one, also
    when what it depends on is hidden inside batched arrays."""
    xs, w = data

    def total(w):
        return agrad.sum(vmap(agrad.grad(loss, argnums=0), in_axes=(0, None))(xs, w))

    ref = agrad.grad(lambda w: sum(agrad.sum(agrad.grad(loss, argnums=0)(agrad.Tensor(x), w)) for x in xs))(
        agrad.Tensor(w))
    np.testing.assert_allclose(_np(agrad.grad(total)(w)), _np(ref), rtol=1e-10)

    def total_x(xs):
        return agrad.sum(vmap(agrad.grad(loss, argnums=1), in_axes=(0, None))(xs, w))

    ref = agrad.grad(lambda X: sum(agrad.sum(agrad.grad(loss, argnums=1)(X[i], agrad.Tensor(w)))
                                   for i in range(5)))(agrad.Tensor(xs))
    np.testing.assert_allclose(_np(agrad.grad(total_x)(xs)), _np(ref), rtol=1e-10)


def test_hessian_per_example(data):
    xs, w = data
    got = _np(vmap(agrad.hessian(lambda x: loss(x, agrad.Tensor(w))))(xs))
    ref = np.stack([_np(agrad.hessian(lambda x: loss(x, agrad.Tensor(w)))(agrad.Tensor(x))) for x in xs])
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)


def test_compile_of_vmap_and_vmap_of_compile(data):
    xs, w = data
    ref = np.array([_np(loss(agrad.Tensor(x), agrad.Tensor(w))) for x in xs])
    compiled = agrad.compile(vmap(loss, in_axes=(0, None)))
    for _ in range(3):  # the trace, then replays
        np.testing.assert_allclose(_np(compiled(agrad.Tensor(xs), agrad.Tensor(w))), ref, rtol=1e-12)
    mapped = vmap(agrad.compile(loss), in_axes=(0, None))
    for _ in range(3):
        np.testing.assert_allclose(_np(mapped(xs, w)), ref, rtol=1e-12)


def test_on_array_api_strict(data):
    pytest.importorskip("array_api_strict")
    xs, w = data
    with agrad.use_backend("array_api_strict"):
        X, W = agrad.asarray(xs), agrad.asarray(w)
        got = vmap(agrad.grad(loss, argnums=1), in_axes=(0, None))(X, W)
        assert agrad.backend.namespace_of((got._data,)).name == "array_api_strict"
    np.testing.assert_allclose(got.numpy(), _loop_grads(loss, xs, w, 1), rtol=1e-10)
