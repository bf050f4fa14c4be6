"""agrad.vmap of shape and indexing operations, against a Python loop over the examples.

Every check computes the reference without vmap (the function on each example, stacked),
then compares vmap's values, ``grad`` of a weighted sum through vmap, vmap of ``grad``
(per-example gradients), ``jvp`` of vmap and vmap of ``jvp``, on each backend, with the
examples along axis 0 and along other axes, and with unmapped (``in_axes`` None) arguments.
"""

from __future__ import annotations

import numpy as np
import pytest

import agrad

N = 3  # examples


def _example(a, ax, i):
    return a if ax is None else a[(slice(None),) * ax + (i,) + (Ellipsis,)]


def _loop(f, args, in_axes):
    return agrad.stack([f(*[_example(a, ax, i) for a, ax in zip(args, in_axes)]) for i in range(N)])


def _close(got, want, what):
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-10, atol=1e-12, err_msg=what)


def check(put, f, host_args, in_axes, diff=(0,), seed=0):
    """vmap(f) against the loop: values, and derivatives in the float arguments ``diff``."""
    in_axes = tuple(in_axes)
    args = [put(a, dtype=None) for a in host_args]
    try:
        want = _loop(f, args, in_axes)
    except IndexError as exc:  # (array-api-strict indexes with fewer kinds of keys, eagerly too)
        if put.backend != "array_api_strict":
            raise
        pytest.skip(f"the backend cannot index so eagerly: {exc}")
    got = agrad.vmap(f, in_axes=in_axes)(*args)
    assert got.shape == want.shape
    _close(got, want, "values")
    rng = np.random.default_rng(seed)
    w = put(rng.standard_normal(want.shape))
    for k in diff:
        def with_arg(x, k=k):
            return args[:k] + [x] + args[k + 1:]

        def through_vmap(x):
            return agrad.sum(agrad.vmap(f, in_axes=in_axes)(*with_arg(x)) * w)

        def through_loop(x):
            return agrad.sum(_loop(f, with_arg(x), in_axes) * w)

        _close(agrad.grad(through_vmap)(args[k]), agrad.grad(through_loop)(args[k]), f"grad of vmap, argument {k}")

        def weighted(*a, k=k):  # one example's weighted output, as a function of its argument k
            return agrad.grad(lambda x: agrad.sum(f(*(a[:k] + (x,) + a[k + 1:-1])) * a[-1]))(a[k])

        per_example = agrad.vmap(weighted, in_axes=in_axes + (0,))(*args, w)
        reference = agrad.stack([weighted(*[_example(a, ax, i) for a, ax in zip(args, in_axes)], w[i])
                                 for i in range(N)])
        _close(per_example, reference, f"vmap of grad, argument {k}")

        v = put(rng.standard_normal(args[k].shape))
        out, tangent = agrad.jvp(lambda x: agrad.vmap(f, in_axes=in_axes)(*with_arg(x)), (args[k],), (v,))
        out_l, tangent_l = agrad.jvp(lambda x: _loop(f, with_arg(x), in_axes), (args[k],), (v,))
        _close(out, out_l, f"jvp of vmap's value, argument {k}")
        _close(tangent, tangent_l, f"jvp of vmap, argument {k}")

        def tangent_of(*a, k=k):  # one example's tangent, its argument k's tangent last
            return agrad.jvp(lambda x: f(*(a[:k] + (x,) + a[k + 1:-1])), (a[k],), (a[-1],))[1]

        t_axes = in_axes + (in_axes[k],)
        if in_axes[k] is not None:
            _close(agrad.vmap(tangent_of, in_axes=t_axes)(*args, v), _loop(tangent_of, args + [v], t_axes),
                   f"vmap of jvp, argument {k}")


def _x(*shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape)


# --------------------------------------------------------------------------- joining, flips, rolls


@pytest.mark.parametrize("in_axes", [(0, 0), (1, 0), (0, None), (None, 2)])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat_and_stack(on_backend, in_axes, axis):
    a = np.moveaxis(_x(N, 2, 4), 0, in_axes[0]) if in_axes[0] is not None else _x(2, 4)
    b = np.moveaxis(_x(N, 2, 4, seed=2), 0, in_axes[1]) if in_axes[1] is not None else _x(2, 4, seed=2)
    check(on_backend, lambda p, q: agrad.concat([p, q, p], axis=axis), [a, b], in_axes, diff=(0, 1))
    check(on_backend, lambda p, q: agrad.stack([p, q], axis=axis), [a, b], in_axes, diff=(0, 1))


@pytest.mark.parametrize("in_axis", [0, 2])
def test_flip_and_roll(on_backend, in_axis):
    x = _x(2, 4, N) if in_axis == 2 else _x(N, 2, 4)
    for f in (lambda t: agrad.flip(t), lambda t: agrad.flip(t, axis=1), lambda t: agrad.roll(t, 1),
              lambda t: agrad.roll(t, -1, axis=0), lambda t: agrad.roll(t, (1, 2), axis=(1, 0))):
        check(on_backend, f, [x], (in_axis,))


# --------------------------------------------------------------------------- getitem


KEYS = {
    "int": lambda i, j: (1,),
    "slices": lambda i, j: (slice(None, None, -1), slice(1, 3)),
    "none-ellipsis": lambda i, j: (None, Ellipsis, 0),
    "array-front": lambda i, j: (i,),
    "array-middle": lambda i, j: (slice(None), i),
    "array-last": lambda i, j: (Ellipsis, j),
    "two-arrays": lambda i, j: (i, slice(None), j),
    "two-adjacent": lambda i, j: (slice(None), i, j),
    "int-and-array": lambda i, j: (0, slice(None), j),
    "int-beside-array": lambda i, j: (slice(None), 0, j),
    "array-none": lambda i, j: (i, None),
    "all-arrays": lambda i, j: (i, i, j),
    "mask": lambda i, j: (np.array([True, False, True, True]),),
    "mask-middle": lambda i, j: (slice(None), np.array([True, False, True])),
}


@pytest.mark.parametrize("name", sorted(KEYS))
@pytest.mark.parametrize("in_axis", [0, 1])
def test_getitem_with_unbatched_keys(on_backend, name, in_axis):
    x = _x(4, 3, 5)
    x = np.moveaxis(np.stack([x + k for k in range(N)]), 0, in_axis)
    i = np.array([[0, 2], [1, 2]])
    j = np.array([4, 0])
    key = KEYS[name](i, j)

    def f(t):
        k = tuple(on_backend(a, dtype=None) if isinstance(a, np.ndarray) else a for a in key)
        return t[k]

    check(on_backend, f, [x], (in_axis,))


def test_per_example_label(on_backend):
    """The per-example loss's ``logits[label]``, the label mapped with the logits."""
    logits = _x(N, 5)
    labels = np.array([4, 0, 2])
    check(on_backend, lambda z, y: z[y], [logits, labels], (0, 0))
    check(on_backend, lambda z, y: z[y] * agrad.sum(z * z), [logits, labels], (0, 0))
    check(on_backend, lambda z, y: z[y], [logits.T, labels], (1, 0))


@pytest.mark.parametrize("in_axes", [(None, 0), (0, 0), (1, 0), (None, 1)])
def test_batched_index_arrays(on_backend, in_axes):
    """Index arrays that differ by example: an embedding table indexed by each example's
    tokens (the table unmapped), and every position a key can hold them in."""
    table = _x(6, 4) if in_axes[0] is None else np.moveaxis(_x(N, 6, 4), 0, in_axes[0])
    tokens = np.array([[1, 5], [0, 0], [3, 2]])
    tokens = tokens if in_axes[1] == 0 else tokens.T
    check(on_backend, lambda t, k: t[k], [table, tokens], in_axes)
    check(on_backend, lambda t, k: t[:, k % 4], [table, tokens], in_axes)
    check(on_backend, lambda t, k: t[k, k % 4], [table, tokens], in_axes)
    check(on_backend, lambda t, k: t[k[0], 1:], [table, tokens], in_axes)
    check(on_backend, lambda t, k: agrad.take(t, k[1], axis=0), [table, tokens], in_axes)


def test_batched_indices_nested(on_backend):
    """vmap of vmap with indices of either level."""
    x = _x(N, 2, 5)
    idx = np.array([[0, 4], [1, 1], [3, 2]])
    inner = agrad.vmap(lambda row, i: row[i], in_axes=(0, None))
    check(on_backend, lambda t, i: inner(t, i), [x, idx], (0, 0))
    inner2 = agrad.vmap(lambda row, i: row[i], in_axes=(None, 0))
    check(on_backend, lambda t, i: inner2(t[0], i), [x, idx], (0, 0))
    check(on_backend, lambda t, i: inner2(t[1, 0], i), [x, idx], (None, 0))


def test_take_along_axis_and_sort(on_backend):
    x = _x(N, 3, 4)
    idx = np.array([[[0, 3], [1, 1], [2, 0]]] * N)
    check(on_backend, lambda t, i: agrad.take_along_axis(t, i, axis=1), [x, idx], (0, 0))
    check(on_backend, lambda t, i: agrad.take_along_axis(t, i, axis=1), [x, idx[0]], (0, None))
    check(on_backend, lambda t: agrad.sort(t, axis=0), [x], (0,))
    check(on_backend, lambda t: agrad.sort(t, axis=-1, descending=True), [np.moveaxis(x, 0, 2)], (2,))
    got = agrad.vmap(lambda t: agrad.argsort(t, axis=0))(on_backend(x))
    np.testing.assert_array_equal(got.numpy(), np.argsort(x, axis=1, kind="stable"))


def test_shape_functions(on_backend):
    x = _x(N, 3, 4)
    for f in (lambda t: agrad.moveaxis(t, 0, 1), lambda t: agrad.unstack(t, axis=1)[2],
              lambda t: agrad.tile(t, (2, 1)), lambda t: agrad.repeat(t, 2, axis=1),
              lambda t: agrad.broadcast_arrays(t, agrad.ones((2, 1, 1), dtype=t.dtype))[0],
              lambda t: agrad.meshgrid(t[0], t[1, :2])[1], lambda t: agrad.tril(t), lambda t: agrad.triu(t, k=1)):
        check(on_backend, f, [x], (0,))
        check(on_backend, f, [np.moveaxis(x, 0, 2)], (2,))
    edges = on_backend(np.array([-1.0, 0.0, 1.0]))
    got = agrad.vmap(lambda t: agrad.searchsorted(edges, t))(on_backend(x))
    np.testing.assert_array_equal(got.numpy(), np.searchsorted(np.array([-1.0, 0.0, 1.0]), x))


def test_data_dependent_shapes_are_vmap_errors(on_backend):
    x = on_backend(_x(N, 4))
    for f in (lambda t: t[t > 0], agrad.nonzero, agrad.unique_values, lambda t: agrad.unique_counts(t)[0]):
        with pytest.raises(agrad.VmapError, match="values"):
            agrad.vmap(f)(x)
    with pytest.raises(agrad.VmapError, match="boolean mask"):
        agrad.vmap(lambda t: agrad.sum(t[t > 0]))(x)


# --------------------------------------------------------------------------- updates


def test_assign_and_setitem_on_batched_tensors(on_backend):
    x = _x(N, 4)
    labels = np.array([3, 0, 0])
    idx = np.array([2, 0, 2])  # (repeated: the last write wins)

    def basic(t):
        z = agrad.zeros_like(t)
        z[1:3] = t[:2] * 2.0
        z[0] = agrad.sum(t)
        return z

    def arrays(t):
        z = agrad.ones_like(t)
        z[on_backend(idx, dtype=None)] = t[:3] * 3.0
        return z

    def one_hot(t, y):
        z = agrad.zeros_like(t)
        z[y] = 1.0
        return z * t

    def per_example_write(t, y):
        z = agrad.zeros_like(t)
        z[y] = t[0] * t[1]
        return z

    def functional(t, y):
        return agrad.ops.assign(agrad.zeros((4,), dtype=t.dtype, device=t.device), y, t[2])

    def through_a_view(t):  # an update of a view reaches its base; z[1] *= z[0] reads the old z[0]
        z = agrad.zeros_like(t) + t
        v = z[1:]
        v *= 2.0
        z[1] *= z[0]
        return z

    def grown(t):  # augmented assignment on a batched Tensor
        z = agrad.zeros_like(t)
        z += t * t
        z[1:] *= t[:3]
        return z

    check(on_backend, basic, [x], (0,))
    check(on_backend, basic, [x.T], (1,))
    check(on_backend, arrays, [x], (0,))
    check(on_backend, one_hot, [x, labels], (0, 0))
    check(on_backend, per_example_write, [x, labels], (0, 0))
    check(on_backend, functional, [x, labels], (0, 0))
    check(on_backend, grown, [x], (0,))
    check(on_backend, through_a_view, [x], (0,))


def test_inplace_update_of_unbatched_tensor_is_a_vmap_error(on_backend):
    x = on_backend(_x(N, 4))

    def into_outside(t):
        z = agrad.zeros((4,), dtype=t.dtype, device=t.device)
        z[0] = t[1]
        return z

    def added_outside(t):
        z = agrad.zeros((4,), dtype=t.dtype, device=t.device)
        z += t
        return z

    def indexed_by_batched(t):
        z = agrad.zeros((4,), dtype=t.dtype, device=t.device)
        z[agrad.argmax(t)] = 1.0
        return z

    for f in (into_outside, added_outside, indexed_by_batched):
        with pytest.raises(agrad.VmapError, match="zeros_like"):
            agrad.vmap(f)(x)
    outer_only = agrad.vmap(lambda t, s: added_outside(s), in_axes=(0, None))
    with pytest.raises(agrad.VmapError, match="zeros_like"):
        agrad.vmap(lambda t: agrad.vmap(lambda u: _add_into(t, u))(t))(on_backend(_x(N, N, 4)))
    del outer_only


def _add_into(target, value):
    z = agrad.zeros_like(target)  # batched by the outer vmap only
    z += value  # batched by the inner one too
    return z
