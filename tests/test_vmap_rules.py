"""Focused tests of agrad.vmap's batching rules for the non-shape primitives: every rule
against a Python loop over the examples (values, grad of vmap, vmap of grad, jvp of
vmap, vmap of jvp), with batch axes 0 and non-zero and unbatched operands mixed in, for
the conventions that are easy to get wrong (axes, keepdims, 1-D operands, solve's
vector right-hand side, the label check of the loss, user-defined derivatives)."""

from __future__ import annotations

import numpy as np
import pytest

import agrad
from agrad.tape import REGISTRY


def test_every_registered_primitive_has_a_batching_rule():
    missing = sorted(n for n, p in REGISTRY.items() if "batch" not in p.rules)
    assert not missing, f"primitives without a batching rule (agrad.primitive(..., batch=rule)): {missing}"


# --------------------------------------------------------------------------- the harness


def _np(x):
    return agrad.backend.to_numpy(x._data if isinstance(x, agrad.Tensor) else x)


def _example(a, ax, i):
    return a if ax is None else a[(slice(None),) * ax + (i,)]


def _stack(outs):
    return np.stack([_np(o) for o in outs])


def _close(a, b, what):
    np.testing.assert_allclose(_np(a) if not isinstance(a, np.ndarray) else a, b, rtol=1e-9, atol=1e-11,
                               err_msg=what)


def check(f, args, in_axes, *, diff=None, grad=True, jvp=True):
    """vmap(f) against the loop over the examples: the values, and (for the float
    arguments ``diff``, default all mapped or unmapped float Tensors) grad of vmap, vmap of
    grad, jvp of vmap and vmap of jvp."""
    in_axes = tuple(in_axes)
    size = next(a.shape[ax] for a, ax in zip(args, in_axes) if ax is not None)
    per = [[_example(a, ax, i) for a, ax in zip(args, in_axes)] for i in range(size)]
    out = agrad.vmap(f, in_axes=in_axes)(*args)
    _close(out, _stack([f(*p) for p in per]), "values")
    if diff is None:
        diff = [k for k, a in enumerate(args)
                if isinstance(a, agrad.Tensor) and agrad.isdtype(a.dtype, "real floating")]
    if not diff:
        return

    def with_diff(new, base):
        full = list(base)
        for k, v in zip(diff, new):
            full[k] = v
        return full

    rng = np.random.default_rng(7)
    w = agrad.asarray(rng.standard_normal(tuple(out.shape)), dtype=out.dtype, device=out.device)

    def s(o):  # a scalar of the output whose gradient depends on the values
        return agrad.sum(agrad.sin(o) * (o + 1.5))

    if grad:
        # grad of vmap: through the physical computation the rules record
        g = agrad.grad(lambda *d: agrad.sum(agrad.vmap(f, in_axes=in_axes)(*with_diff(d, args)) * w),
                       argnums=tuple(range(len(diff))))(*[args[k] for k in diff])

        def looped(*d):
            full = with_diff(d, args)
            return sum(agrad.sum(f(*[_example(a, ax, i) for a, ax in zip(full, in_axes)]) * w[i])
                       for i in range(size))

        g_loop = agrad.grad(looped, argnums=tuple(range(len(diff))))(*[args[k] for k in diff])
        for k, (a, b) in enumerate(zip(g, g_loop)):
            _close(a, _np(b), f"grad of vmap, argument {diff[k]}")
        # vmap of grad: per-example gradients (the rule's op recorded on batched arrays)
        pg = agrad.vmap(lambda *a: agrad.grad(lambda *d: s(f(*with_diff(d, a))), argnums=tuple(range(len(diff))))(
            *[a[k] for k in diff]), in_axes=in_axes)(*args)
        for j, k in enumerate(diff):
            expect = _stack([agrad.grad(lambda *d: s(f(*with_diff(d, p))), argnums=tuple(range(len(diff))))(
                *[p[m] for m in diff])[j] for p in per])
            _close(pg[j], expect, f"vmap of grad, argument {k}")
    if jvp:
        ts = [agrad.asarray(rng.standard_normal(tuple(args[k].shape)), dtype=args[k].dtype, device=args[k].device)
              for k in diff]
        _, t = agrad.jvp(lambda *d: agrad.vmap(f, in_axes=in_axes)(*with_diff(d, args)),
                         tuple(args[k] for k in diff), tuple(ts))
        expect = _stack([agrad.jvp(lambda *d: f(*with_diff(d, p)), tuple(p[k] for k in diff),
                                   tuple(_example(tv, in_axes[k], i) for tv, k in zip(ts, diff)))[1]
                         for i, p in enumerate(per)])
        _close(t, expect, "jvp of vmap")
        nd = len(diff)

        def inner(*a):
            prim, tang = a[:len(args)], a[len(args):]
            return agrad.jvp(lambda *d: f(*with_diff(d, prim)), tuple(prim[k] for k in diff), tuple(tang))[1]

        vt = agrad.vmap(inner, in_axes=in_axes + tuple(in_axes[k] for k in diff))(*args, *ts)
        _close(vt, expect, "vmap of jvp")
        assert nd == len(ts)


@pytest.fixture
def data(on_backend):
    rng = np.random.default_rng(3)

    def make(*shape, spd=False, positive=False):
        a = rng.standard_normal(shape)
        if spd:
            a = a @ np.swapaxes(a, -1, -2) + shape[-1] * np.eye(shape[-1])
        if positive:
            a = np.abs(a) + 0.5
        return on_backend(a)

    return make


# --------------------------------------------------------------------------- reductions


@pytest.mark.parametrize("name", ["sum", "mean", "var", "max", "min", "logsumexp", "prod"])
@pytest.mark.parametrize("axis,keepdims", [(None, False), (0, False), (-1, True), ((0, 2), False), ((1,), True)])
@pytest.mark.parametrize("bdim", [0, 2])
def test_reductions(data, name, axis, keepdims, bdim):
    fn = getattr(agrad, name)
    x = data(3, 4, 5, 2) if bdim == 0 else data(3, 4, 2, 5)
    check(lambda v: fn(v, axis=axis, keepdims=keepdims), [x], [bdim])


def test_var_correction_and_vector_norm(data):
    x = data(4, 3, 5)
    check(lambda v: agrad.var(v, axis=1, correction=1), [x], [2])
    check(lambda v: agrad.linalg.vector_norm(v, axis=(0,), keepdims=True), [x], [1])
    check(lambda v: agrad.linalg.vector_norm(v), [x], [0])
    check(lambda v: agrad.linalg.vector_norm(v, ord=1, axis=-1), [x], [0])
    check(lambda v: agrad.std(v, axis=0), [x], [1])


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("axis,bdim", [(-1, 0), (0, 0), (0, 1), (-1, 2), (1, 2)])
def test_softmax(data, name, axis, bdim):
    x = data(3, 4, 5)
    check(lambda v: getattr(agrad, name)(v, axis=axis), [x], [bdim])


@pytest.mark.parametrize("name", ["cumulative_sum", "cumulative_prod"])
@pytest.mark.parametrize("axis,bdim,initial", [(0, 0, False), (-1, 1, True), (0, 2, True), (1, 0, False)])
def test_cumulative(data, name, axis, bdim, initial):
    x = data(3, 4, 2)
    check(lambda v: getattr(agrad, name)(v, axis=axis, include_initial=initial), [x], [bdim])


def test_cumulative_1d_examples(data):
    x = data(4, 3)
    check(lambda v: agrad.cumulative_sum(v), [x], [1])
    check(lambda v: agrad.cumulative_prod(v), [x], [0])


# --------------------------------------------------------------------------- linalg


@pytest.mark.parametrize("bdim", [0, 1, 2])
def test_matrix_transpose(data, bdim):
    check(lambda v: agrad.matrix_transpose(v) * 1.0, [data(3, 4, 2)], [bdim])
    check(lambda v: v.mT @ v, [data(2, 3, 4, 2)], [bdim])


@pytest.mark.parametrize("case", [
    # (x shape, bx, y shape, by, axes)
    ((5, 3, 4), 0, (3, 4, 2), None, 2),
    ((3, 5, 4), 1, (4, 2), None, 1),
    ((3, 4), None, (4, 5, 2), 1, 1),
    ((3, 4), None, (2, 4, 5), 2, ((1,), (1,))),
    ((5, 3, 4), 0, (5, 4, 3), 0, ((0, 1), (1, 0))),
    ((3, 5, 4), 1, (4, 2, 5), 2, ((1,), (0,))),
    ((5, 3), 0, (2, 5), 1, 0),
])
def test_tensordot(data, case):
    sx, bx, sy, by, axes = case
    check(lambda a, b: agrad.tensordot(a, b, axes=axes), [data(*sx), data(*sy)], [bx, by])


def test_vecdot_outer_and_cross(data):
    check(lambda a, b: agrad.vecdot(a, b), [data(4, 3), data(3)], [0, None])
    check(lambda a, b: agrad.vecdot(a, b, axis=0), [data(3, 2, 4), data(4, 3, 2)], [2, 0])
    check(lambda a, b: agrad.linalg.outer(a, b), [data(3, 4), data(2, 4)], [1, 1])
    check(lambda a, b: agrad.linalg.cross(a, b), [data(4, 3), data(3)], [0, None])


def test_linear_shared_weights_is_one_product(data, monkeypatch):
    x, w, b = data(6, 4), data(4, 3), data(3)
    check(lambda v, w_, b_: agrad.linear(v, w_, b_), [x, w, b], [0, None, None])
    check(lambda v, w_: agrad.linear(v, w_), [data(4, 6), w], [1, None])  # the examples along the features
    check(lambda v, w_, b_: agrad.linear(v, w_, b_), [data(2, 6, 4), w, b], [1, None, None])
    # one linear of the batch, no moves: count the primitives the mapped function runs
    from agrad import tape
    calls = []
    apply = tape.apply

    def counting(prim, *args, **params):
        calls.append(prim.name)
        return apply(prim, *args, **params)

    monkeypatch.setattr(tape.Primitive, "__call__", counting)
    agrad.vmap(lambda v: agrad.linear(v, w, b))(x)
    assert calls == ["linear", "linear"], calls  # the logical op, then its rule's one physical op


def test_linear_ensemble(data):
    # vmap over an ensemble of models: batched weights (and bias), inputs shared or per model
    x, ws, bs = data(6, 4), data(5, 4, 3), data(5, 3)
    check(lambda w_, b_: agrad.linear(x, w_, b_), [ws, bs], [0, 0])
    check(lambda v, w_, b_: agrad.linear(v, w_, b_), [data(5, 6, 4), ws, data(3)], [0, 0, None])
    check(lambda v, w_, b_: agrad.linear(v, w_, b_), [data(6, 5, 4), data(4, 5, 3), bs], [1, 1, 0])
    check(lambda v, w_, b_: agrad.linear(v, w_, b_), [data(5, 4), data(4, 3), bs], [0, None, 0])
    v1 = data(4)
    check(lambda w_: agrad.linear(v1, w_), [ws], [0])  # one 1-D input for every model


@pytest.mark.parametrize("name", ["inv", "det", "cholesky", "eigvalsh"])
@pytest.mark.parametrize("bdim", [0, 2])
def test_square_matrix_ops(data, name, bdim):
    a = data(3, 4, 4, spd=True)
    if bdim == 2:
        a = agrad.moveaxis(a, 0, 2)
    check(lambda v: getattr(agrad.linalg, name)(v), [a], [bdim])


def test_stacks_of_matrices_and_decompositions(data):
    a = data(2, 3, 4, 4, spd=True)
    check(lambda v: agrad.linalg.det(v), [a], [1])  # the batch axis a leading one: stays there
    check(lambda v: agrad.linalg.slogdet(v).logabsdet, [a], [0])
    check(lambda v: agrad.linalg.slogdet(v).sign, [a], [0], grad=False, jvp=False)
    check(lambda v: agrad.linalg.eigh(v).eigenvectors[..., -1] ** 2, [a], [0])
    t = data(3, 5, 3)
    check(lambda v: agrad.linalg.svdvals(v), [t], [0])
    check(lambda v: agrad.linalg.svd(v, full_matrices=False).U[..., 0] ** 2, [t], [2])
    check(lambda v: agrad.linalg.svd(v, full_matrices=False).Vh[0] ** 2, [t], [1])
    check(lambda v: agrad.linalg.qr(v).Q * agrad.linalg.qr(v).R[0, 0], [t], [0])
    check(lambda v: agrad.linalg.qr(v).R, [t], [1])
    check(lambda v: agrad.linalg.pinv(v), [t], [0])
    check(lambda v: agrad.linalg.matrix_rank(v), [t], [0], grad=False, jvp=False)
    check(lambda v: agrad.linalg.svd(v).S, [t], [0], grad=False, jvp=False)  # the full (non-square) SVD
    check(lambda v: agrad.linalg.qr(v, mode="complete").Q, [t], [0], grad=False, jvp=False)


@pytest.mark.parametrize("case", [
    # (a shape, ba, b shape, bb): one example's b is a vector (M,) or a matrix (M, K)
    ((3, 4, 4), 0, (3, 4), 0),
    ((4, 4), None, (4, 3), 1),
    ((4, 4, 3), 2, (4,), None),
    ((3, 4, 4), 0, (3, 4, 2), 0),
    ((4, 4), None, (3, 4, 2), 0),
    ((4, 3, 4), 1, (4, 2), None),
    ((3, 2, 4, 4), 0, (3, 4), 0),  # a stack of matrices with a vector: broadcast over the stack
])
def test_solve_vector_and_matrix_rhs(data, case):
    sa, ba, sb, bb = case
    a = _well_conditioned(data, sa, ba)
    check(lambda x1, x2: agrad.linalg.solve(x1, x2), [a, data(*sb)], [ba, bb])


def _well_conditioned(data, shape, bdim):
    """A batch of diagonally dominant matrices of physical ``shape``, batch axis ``bdim``."""
    a = data(*shape)
    logical = [s for k, s in enumerate(shape) if k != bdim]
    eye = agrad.eye(logical[-1], dtype=a.dtype, device=a.device)
    if bdim is not None and bdim >= len(shape) - 2:  # the batch axis between or after the matrix axes
        eye = agrad.expand_dims(eye, axis=bdim - len(shape) + 3)
    return a + 6.0 * eye


# --------------------------------------------------------------------------- elementwise-like ops


@pytest.mark.parametrize("name", ["erf", "erfc", "gammaln", "digamma", "i0e", "i1e", "entr", "logit"])
def test_special(data, name, on_backend):
    x = data(3, 4, positive=True) * 0.4  # in (0, 1) mostly: logit, entr
    x = agrad.clip(x, 0.05, 0.95)
    check(lambda v: getattr(agrad.special, name)(v) * 1.0, [x], [1])


def test_special_binary_and_params(data):
    x, y = data(3, 4, positive=True), data(4, positive=True)
    check(lambda a, b: agrad.special.xlogy(a, b), [x, y], [0, None])
    check(lambda a: agrad.special.polygamma(2, a), [x], [1])
    check(lambda a, b: agrad.special.kl_div(a, b), [x, data(4, 3, positive=True)], [1, 0])


def test_conversions_and_clip(data):
    x = data(3, 4)
    check(lambda v: agrad.astype(v, agrad.float32) * 1.0, [x], [1], grad=False, jvp=False)
    check(lambda v: agrad.astype(agrad.astype(v, agrad.float32), agrad.float64), [x], [1])
    check(lambda v: agrad.astype(v > 0, agrad.int32), [x], [0], grad=False, jvp=False)
    check(lambda v: agrad.to_device(v, v.device) * v, [x], [0])
    check(lambda v: agrad.identity(v) * v, [x], [1])
    check(lambda v: agrad.clip(v, -0.5, 0.5) + agrad.relu(v), [x], [1])
    check(lambda v, e: agrad.pow(agrad.abs(v) + 0.5, e), [x, data(4)], [0, None])


# --------------------------------------------------------------------------- the logistic loss


def _labels(on_backend, *shape, hi=4):
    rng = np.random.default_rng(5)
    return on_backend(rng.integers(0, hi, shape), dtype=None)


def test_logistic_loss_per_example(data, on_backend):
    logits, labels = data(5, 2, 4), _labels(on_backend, 5, 2)
    check(lambda f, y: agrad.nn.logistic_loss(f, y), [logits, labels], [0, 0])
    check(lambda f, y: agrad.nn.logistic_loss(f, y), [agrad.moveaxis(logits, 0, 2), labels], [2, 0])
    check(lambda f, y: agrad.nn.logistic_loss(f, y), [logits, labels[0]], [0, None])
    check(lambda f, y: agrad.nn.logistic_loss(f, y), [logits[0], labels], [None, 0])
    # one example's logits (C,) and its label (): as a batch of one
    check(lambda f, y: agrad.nn.logistic_loss(agrad.reshape(f, (1, -1)), agrad.reshape(y, (1,))),
          [logits[:, 0], labels[:, 0]], [0, 0])
    check(lambda f, y: agrad.nn.logistic_loss(f[None], y[None]), [logits[:, 0], labels[:, 0]], [0, 0])


def test_logistic_loss_checks_every_examples_labels(data, on_backend):
    logits = data(5, 2, 4)
    bad = on_backend(np.array([[0, 1]] * 4 + [[0, 4]]), dtype=None)  # the last example's label is out of range
    with pytest.raises(ValueError, match="labels must lie in"):
        agrad.vmap(agrad.nn.logistic_loss)(logits, bad)
    with pytest.raises(ValueError, match="labels must lie in"):
        agrad.vmap(agrad.grad(agrad.nn.logistic_loss))(logits, bad)


def test_logistic_loss_vjp_recomputes_without_aux(data, on_backend):
    # vmap of grad: the op recorded on batched arrays, whose VJP gets aux=None
    logits, labels = data(5, 3, 4), _labels(on_backend, 5, 3)
    per = agrad.vmap(agrad.grad(agrad.nn.logistic_loss))(logits, labels)
    for i in range(5):
        _close(per[i], _np(agrad.grad(agrad.nn.logistic_loss)(logits[i], labels[i])), f"example {i}")


# --------------------------------------------------------------------------- compositions


def test_nested_vmap_of_rules(data):
    x, w = data(2, 3, 4, 5), data(5, 3)
    f = agrad.vmap(agrad.vmap(lambda v: agrad.linear(agrad.softmax(v, axis=0), w)), in_axes=1)
    expect = np.stack([np.stack([_np(agrad.linear(agrad.softmax(x[i, j], axis=0), w)) for i in range(2)])
                       for j in range(3)])
    _close(f(x), expect, "vmap of vmap")
    g = agrad.grad(lambda v: agrad.sum(agrad.sin(f(v))))(x)
    g_loop = agrad.grad(lambda v: sum(agrad.sum(agrad.sin(agrad.linear(agrad.softmax(v[i, j], axis=0), w)))
                                      for i in range(2) for j in range(3)))(x)
    _close(g, _np(g_loop), "grad of vmap of vmap")


def test_grad_of_vmap_of_grad(data):
    x = data(4, 3)

    def inner(v):
        return agrad.logsumexp(v * v, axis=0) + agrad.prod(v)

    def outer(xs):
        return agrad.sum(agrad.vmap(agrad.grad(inner))(xs) ** 2)

    def looped(xs):
        return sum(agrad.sum(agrad.grad(inner)(xs[i]) ** 2) for i in range(4))

    _close(agrad.grad(outer)(x), _np(agrad.grad(looped)(x)), "grad of vmap of grad")


# --------------------------------------------------------------------------- user-defined derivatives


def _doubled_custom_vjp():
    """sin(x) * w whose custom rule is twice the true gradient: a result that uses the rule
    differs from one that differentiates the function."""

    @agrad.custom_vjp
    def f(x, w):
        return agrad.sin(x) * w

    def f_fwd(x, w):
        return f(x, w), (agrad.cos(x), agrad.sin(x), w)  # (fwd calls f itself: the JAX idiom)

    def f_bwd(res, g):
        cos_x, sin_x, w = res
        return 2.0 * cos_x * g * w, 2.0 * sin_x * g

    f.defvjp(f_fwd, f_bwd)
    return f


def _doubled(x, w):
    """What the doubled rule differentiates as: 2 sin(x) w, with the value of sin(x) w."""
    return agrad.sin(x) * w * 2.0 - agrad.stop_gradient(agrad.sin(x) * w)


@pytest.mark.parametrize("in_axes", [(0, None), (1, None), (0, 0), (None, 1)])
def test_custom_vjp_under_vmap_uses_the_rule(data, in_axes):
    f = _doubled_custom_vjp()
    x = data(4, 3) if in_axes[0] != 1 else data(3, 4)
    w = data(3) if in_axes[1] is None else (data(4, 3) if in_axes[1] == 0 else data(3, 4))
    if in_axes[0] is None:
        x = data(3)
    sq = lambda fn: lambda a, b: fn(a, b) ** 2  # noqa: E731
    got = agrad.vmap(f, in_axes=in_axes)(x, w)
    _close(got, _np(agrad.vmap(_doubled, in_axes=in_axes)(x, w)), "values")
    for transform in ("grad of vmap", "vmap of grad", "jvp of vmap"):
        results = []
        for fn in (f, _doubled):
            if transform == "grad of vmap":
                r = agrad.grad(lambda a, b: agrad.sum(agrad.vmap(sq(fn), in_axes=in_axes)(a, b)), argnums=(0, 1))(x, w)
            elif transform == "vmap of grad":
                r = agrad.vmap(agrad.grad(lambda a, b: agrad.sum(sq(fn)(a, b)), argnums=(0, 1)), in_axes=in_axes)(x, w)
            else:
                r = agrad.jvp(lambda a, b: agrad.vmap(sq(fn), in_axes=in_axes)(a, b), (x, w),
                              (agrad.ones_like(x), agrad.ones_like(w)))[1:]
            results.append(r)
        for a, b in zip(*results):
            _close(a, _np(b), transform)


def test_custom_jvp_and_checkpoint_under_vmap(data):
    @agrad.custom_jvp
    def h(x):
        return agrad.sin(x)

    @h.defjvp
    def _(primals, tangents):
        return h(primals[0]), 2.0 * agrad.cos(primals[0]) * tangents[0]  # twice the true tangent

    x, w = data(4, 3), data(3)
    two_cos = 2.0 * np.cos(_np(x))
    _close(agrad.grad(lambda a: agrad.sum(agrad.vmap(h, in_axes=1)(a)))(x), two_cos, "custom_jvp: grad of vmap")
    _close(agrad.vmap(agrad.grad(lambda a: agrad.sum(h(a))), in_axes=1)(x), two_cos.T, "custom_jvp: vmap of grad")
    _close(agrad.jvp(agrad.vmap(h), (x,), (agrad.ones_like(x),))[1], two_cos, "custom_jvp: jvp of vmap")
    c = agrad.checkpoint(lambda a, b: agrad.sum(agrad.sin(a) * b))
    check(c, [x, w], [0, None])
    check(c, [agrad.matrix_transpose(x), w], [1, None])
