"""Sample inputs for every registered primitive, used by the automatic gradient checks.

Each case is ``(function, [host inputs], check_grad kwargs)``. Float64 host arrays
become differentiable inputs on the backend under test; integer arrays stay
constants. A primitive without a case here fails ``test_every_op_has_a_case``.
"""

from __future__ import annotations

import numpy as np

import agrad


def _pos(rng, *shape):
    return rng.uniform(0.5, 2.0, size=shape)


def _any(rng, *shape):
    return rng.standard_normal(shape)


def _away_from_zero(rng, *shape):
    x = rng.uniform(0.3, 1.5, size=shape)
    return x * rng.choice([-1.0, 1.0], size=shape)


def _well_conditioned(rng, n, batch=()):
    return rng.standard_normal(batch + (n, n)) + 3.0 * np.eye(n)


def _spd(rng, n, batch=()):
    """Symmetric positive definite, with well separated eigenvalues."""
    q, _ = np.linalg.qr(rng.standard_normal(batch + (n, n)))
    w = np.arange(1, n + 1, dtype=float) * 1.5
    return q @ (w[:, None] * np.swapaxes(q, -1, -2))


def _updated_in_place(x, v):
    """Item assignment and augmented assignment on a computed tensor and on views of it."""
    z = x * 1.0
    z[1:, ::2] = v  # a strided region
    z *= x  # the whole tensor (its old value is read by the derivative)
    row = z[0]  # a view: updating it updates z
    row += v[0, 0]
    z[-1, None, 1:3] -= 2.0 * v[:, :2]  # None, negative index, broadcasting
    return z * row


def cases(rng):
    c = {}
    # elementwise, with broadcasting in the binary ops
    c["add"] = [(lambda x, y: x + y, [_any(rng, 3, 4), _any(rng, 4)], {})]
    c["subtract"] = [(lambda x, y: x - y, [_any(rng, 3, 1), _any(rng, 1, 4)], {})]
    c["multiply"] = [(lambda x, y: x * y, [_any(rng, 2, 3), _any(rng, 3)], {}),
                     (lambda x: x * 2.5, [_any(rng, 3)], {})]
    c["divide"] = [(lambda x, y: x / y, [_any(rng, 2, 3), _pos(rng, 2, 3)], {}),
                   (lambda y: 1.5 / y, [_pos(rng, 4)], {})]
    c["pow"] = [(lambda x, y: x ** y, [_pos(rng, 3), _any(rng, 3)], {}),
                (lambda x: x ** 3.0, [_any(rng, 4)], {}),
                (lambda y: 2.0 ** y, [_any(rng, 3)], {})]
    c["maximum"] = [(lambda x, y: agrad.maximum(x, y), [_any(rng, 5), _any(rng, 5)], {})]
    c["minimum"] = [(lambda x, y: agrad.minimum(x, y), [_any(rng, 5), _any(rng, 2, 5)], {})]
    c["where"] = [(lambda x, y: agrad.where(x > 0.0, x, y),
                   [_away_from_zero(rng, 3, 4), _any(rng, 4)], {})]
    c["negative"] = [(lambda x: -x, [_any(rng, 3)], {})]
    c["exp"] = [(agrad.exp, [_any(rng, 3, 2)], {})]
    c["log"] = [(agrad.log, [_pos(rng, 4)], {})]
    c["log1p"] = [(agrad.log1p, [_pos(rng, 4)], {})]
    c["expm1"] = [(agrad.expm1, [_any(rng, 4)], {})]
    c["sqrt"] = [(agrad.sqrt, [_pos(rng, 4)], {})]
    c["square"] = [(agrad.square, [_any(rng, 4)], {})]
    c["abs"] = [(agrad.abs, [_away_from_zero(rng, 5)], {})]
    c["sin"] = [(agrad.sin, [_any(rng, 4)], {})]
    c["cos"] = [(agrad.cos, [_any(rng, 4)], {})]
    c["tan"] = [(agrad.tan, [rng.uniform(-1.0, 1.0, size=4)], {})]
    c["tanh"] = [(agrad.tanh, [_any(rng, 2, 3)], {})]
    c["sigmoid"] = [(agrad.sigmoid, [_any(rng, 2, 3) * 3], {})]
    c["relu"] = [(agrad.relu, [_away_from_zero(rng, 6)], {})]
    c["clip"] = [(lambda x: agrad.clip(x, min=-0.5, max=0.5),
                  [np.array([-1.2, -0.3, 0.1, 0.45, 0.9, -0.7])], {})]
    # inverse trigonometric and hyperbolic
    c["asin"] = [(agrad.asin, [rng.uniform(-0.8, 0.8, size=4)], {})]
    c["acos"] = [(agrad.acos, [rng.uniform(-0.8, 0.8, size=4)], {})]
    c["atan"] = [(agrad.atan, [_any(rng, 4)], {})]
    c["sinh"] = [(agrad.sinh, [_any(rng, 4)], {})]
    c["cosh"] = [(agrad.cosh, [_any(rng, 4)], {})]
    c["asinh"] = [(agrad.asinh, [_any(rng, 4)], {})]
    c["acosh"] = [(agrad.acosh, [rng.uniform(1.2, 3.0, size=4)], {})]
    c["atanh"] = [(agrad.atanh, [rng.uniform(-0.8, 0.8, size=4)], {})]
    c["atan2"] = [(agrad.atan2, [_away_from_zero(rng, 2, 3), _away_from_zero(rng, 3)], {})]
    c["hypot"] = [(agrad.hypot, [_away_from_zero(rng, 3), _away_from_zero(rng, 2, 3)], {})]
    # more elementwise
    c["log2"] = [(agrad.log2, [_pos(rng, 4)], {})]
    c["log10"] = [(agrad.log10, [_pos(rng, 4)], {})]
    c["logaddexp"] = [(agrad.logaddexp, [_any(rng, 3, 2), _any(rng, 2)], {})]
    c["reciprocal"] = [(agrad.reciprocal, [_away_from_zero(rng, 4)], {})]
    c["positive"] = [(agrad.positive, [_any(rng, 4)], {})]
    c["copysign"] = [(agrad.copysign, [_away_from_zero(rng, 5), _away_from_zero(rng, 5)], {})]
    c["remainder"] = [(lambda x, y: agrad.remainder(x, y),
                       [np.array([2.3, -1.7, 5.2, 0.4]), np.array([1.1, 0.9, -2.3, 0.7])], {})]
    # reductions
    c["sum"] = [(lambda x: agrad.sum(x, axis=1), [_any(rng, 3, 4)], {}),
                (lambda x: agrad.sum(x, axis=(0, 2), keepdims=True), [_any(rng, 2, 3, 2)], {})]
    c["mean"] = [(lambda x: agrad.mean(x, axis=0), [_any(rng, 3, 4)], {}), (agrad.mean, [_any(rng, 5)], {})]
    c["var"] = [(lambda x: agrad.var(x, axis=1, correction=1), [_any(rng, 3, 4)], {})]
    c["max"] = [(lambda x: agrad.max(x, axis=1), [_any(rng, 3, 4)], {}), (agrad.max, [_any(rng, 5)], {})]
    c["min"] = [(lambda x: agrad.min(x, axis=0, keepdims=True), [_any(rng, 3, 4)], {})]
    c["logsumexp"] = [(lambda x: agrad.logsumexp(x, axis=-1), [_any(rng, 3, 4)], {})]
    c["softmax"] = [(lambda x: agrad.softmax(x, axis=1), [_any(rng, 3, 4)], {})]
    c["log_softmax"] = [(lambda x: agrad.log_softmax(x, axis=0), [_any(rng, 3, 4)], {})]
    c["prod"] = [(lambda x: agrad.prod(x, axis=1), [_any(rng, 3, 4)], {}),
                 (lambda x: agrad.prod(x, axis=(0, 2), keepdims=True), [_any(rng, 2, 3, 2)], {}),
                 (agrad.prod, [np.array([1.3, 0.0, -0.7, 2.0])], {})]  # a zero: the gradient stays exact
    c["cumulative_sum"] = [(lambda x: agrad.cumulative_sum(x, axis=1), [_any(rng, 3, 4)], {}),
                           (lambda x: agrad.cumulative_sum(x, include_initial=True), [_any(rng, 5)], {})]
    c["cumulative_prod"] = [(lambda x: agrad.cumulative_prod(x, axis=0), [_any(rng, 4, 2)], {}),
                            (lambda x: agrad.cumulative_prod(x, include_initial=True),
                             [np.array([0.9, 0.0, -1.3, 0.6])], {})]
    c["flip"] = [(lambda x: agrad.flip(x, axis=1), [_any(rng, 2, 3)], {}), (agrad.flip, [_any(rng, 2, 3)], {})]
    c["roll"] = [(lambda x: agrad.roll(x, 2, axis=1), [_any(rng, 2, 3)], {}),
                 (lambda x: agrad.roll(x, -1), [_any(rng, 2, 3)], {})]
    # the linalg extension, with inputs in each function's domain
    c["inv"] = [(agrad.linalg.inv, [_well_conditioned(rng, 3)], {}),
                (agrad.linalg.inv, [_well_conditioned(rng, 2, batch=(2,))], {})]
    c["solve"] = [(agrad.linalg.solve, [_well_conditioned(rng, 3), _any(rng, 3, 2)], {}),
                  (agrad.linalg.solve, [_well_conditioned(rng, 3), _any(rng, 3)], {})]
    c["det"] = [(agrad.linalg.det, [_well_conditioned(rng, 3, batch=(2,))], {})]
    c["logabsdet"] = [(lambda a: agrad.linalg.slogdet(a).logabsdet, [_well_conditioned(rng, 3)], {})]
    c["cholesky"] = [(agrad.linalg.cholesky, [_spd(rng, 3)], {}),
                     (lambda a: agrad.linalg.cholesky(a, upper=True), [_spd(rng, 3, batch=(2,))], {})]
    c["eigvalsh"] = [(agrad.linalg.eigvalsh, [_spd(rng, 3)], {})]
    # eigenvectors and singular vectors are defined up to sign: check sign-free functions of them
    c["eigh_vectors"] = [(lambda a: agrad.linalg.eigh(a).eigenvectors ** 2, [_spd(rng, 3)], {})]
    c["svdvals"] = [(agrad.linalg.svdvals, [_any(rng, 4, 3)], {}), (agrad.linalg.svdvals, [_any(rng, 2, 3)], {})]
    c["svd_u"] = [(lambda a: agrad.linalg.svd(a, full_matrices=False).U ** 2, [_any(rng, 4, 3)], {})]
    c["svd_vh"] = [(lambda a: agrad.linalg.svd(a, full_matrices=False).Vh ** 2, [_any(rng, 3, 4)], {})]
    c["qr_q"] = [(lambda a: agrad.linalg.qr(a).Q, [_any(rng, 4, 3)], {})]
    c["qr_r"] = [(lambda a: agrad.linalg.qr(a).R, [_any(rng, 2, 3, 3)], {})]
    c["vector_norm_2"] = [(lambda x: agrad.linalg.vector_norm(x, axis=1), [_any(rng, 3, 4)], {}),
                          (agrad.linalg.vector_norm, [_any(rng, 5)], {})]
    # linear algebra
    c["matmul"] = [
        (lambda x, y: x @ y, [_any(rng, 3, 4), _any(rng, 4, 2)], {}),
        (lambda x, y: x @ y, [_any(rng, 3, 1), _any(rng, 1, 2)], {}),  # a contraction of length 1
        (lambda x, y: x @ y, [_any(rng, 2, 3, 1), _any(rng, 1, 1, 2)], {}),  # the same, batched
        (lambda x, y: x @ y, [_any(rng, 4), _any(rng, 4)], {}),
        (lambda x, y: x @ y, [_any(rng, 4), _any(rng, 2, 4, 3)], {}),
        (lambda x, y: x @ y, [_any(rng, 2, 3, 4), _any(rng, 4)], {}),
        (lambda x, y: x @ y, [_any(rng, 2, 3, 4), _any(rng, 4, 2)], {}),
    ]
    c["linear"] = [
        (lambda x, w, b: agrad.linear(x, w, b), [_any(rng, 3, 4), _any(rng, 4, 2), _any(rng, 2)], {}),
        (lambda x, w: agrad.linear(x, w), [_any(rng, 2, 3, 4), _any(rng, 4, 2)], {}),
        (lambda x, w, b: agrad.linear(x, w, b), [_any(rng, 4), _any(rng, 4, 2), _any(rng, 2)], {}),
        (lambda x, w, b: agrad.linear(x, w, b), [_any(rng, 1, 4), _any(rng, 4, 2), _any(rng, 2)], {}),  # outer
    ]
    c["matrix_transpose"] = [(agrad.matrix_transpose, [_any(rng, 2, 3, 4)], {})]
    c["tensordot"] = [(lambda x, y: agrad.tensordot(x, y, axes=([0, 2], [1, 0])),
                       [_any(rng, 2, 3, 4), _any(rng, 4, 2, 3)], {}),
                      (lambda x, y: agrad.tensordot(x, y, axes=1), [_any(rng, 3, 4), _any(rng, 4, 2)], {})]
    # shapes
    c["reshape"] = [(lambda x: agrad.reshape(x, (4, -1)), [_any(rng, 2, 3, 2)], {})]
    c["permute_dims"] = [(lambda x: agrad.permute_dims(x, (2, 0, 1)), [_any(rng, 2, 3, 4)], {})]
    c["expand_dims"] = [(lambda x: agrad.expand_dims(x, axis=1), [_any(rng, 2, 3)], {})]
    c["squeeze"] = [(lambda x: agrad.squeeze(x, axis=1), [_any(rng, 2, 1, 3)], {})]
    c["broadcast_to"] = [(lambda x: agrad.broadcast_to(x, (2, 3, 4)), [_any(rng, 3, 1)], {})]
    c["concat"] = [(lambda x, y: agrad.concat([x, y, x], axis=1), [_any(rng, 2, 3), _any(rng, 2, 1)], {})]
    c["stack"] = [(lambda x, y: agrad.stack([x, y], axis=1), [_any(rng, 2, 3), _any(rng, 2, 3)], {})]
    idx = np.array([0, 2, 2, 1, 0])
    c["getitem"] = [
        (lambda x: x[1:, ::2], [_any(rng, 3, 4)], {}),
        (lambda x: x[None, ..., 1], [_any(rng, 3, 4)], {}),
        (lambda x, i: x[i], [_any(rng, 3, 2), idx], {}),  # repeated indices
        (lambda x, i: agrad.take(x, i, axis=1), [_any(rng, 2, 3), idx], {}),
        (lambda x, i, j: x[i, j], [_any(rng, 3, 3), idx, idx[::-1].copy()], {}),
    ]
    c["index_update"] = [
        (lambda x, v: agrad.ops.assign(x, (slice(0, 2), 1), v), [_any(rng, 3, 4), _any(rng, 2)], {}),
        # a negative step, None, and a value broadcast to the region
        (lambda x, v: agrad.ops.assign(x, (slice(None, None, -2), None, slice(1, 3)), v),
         [_any(rng, 3, 4), _any(rng, 1, 2)], {}),
        (lambda x, v, i: agrad.ops.assign(x, i, v), [_any(rng, 4, 2), _any(rng, 5, 2), idx], {}),  # repeats
        (lambda x, v, i, j: agrad.ops.assign(x, (i, j), v), [_any(rng, 3, 3), _any(rng, 5), idx, idx[::-1].copy()],
         {}),
        (lambda x, v: agrad.ops.assign(x, x > 0.0, v), [_away_from_zero(rng, 3, 4), _any(rng, 1)], {}),  # a mask
        (_updated_in_place, [_any(rng, 3, 4), _any(rng, 1, 2)], {}),
    ]
    c["scatter_add"] = [(lambda g, i: agrad.scatter_add(g, (3, 2), (i,)), [_any(rng, 5, 2), idx], {})]
    c["astype"] = [(lambda x: agrad.astype(agrad.astype(x, "float32"), "float64") * x, [_any(rng, 4)],
                    {"eps": 1e-3, "rtol": 1e-4, "atol": 1e-4})]
    c["identity"] = [(lambda x: agrad.identity(x) * x, [_any(rng, 4)], {})]
    c["to_device"] = [(lambda x: agrad.to_device(x, x.device) * x, [_any(rng, 4)], {})]
    labels = np.array([0, 3, 1, 3])
    c["logistic_loss"] = [(lambda f, y: agrad.nn.logistic_loss(f, y), [_any(rng, 4, 5), labels], {})]
    # ---- agrad.special (values against SciPy: tests/test_special.py); points in every branch of each
    # approximation, both signs, away from poles, kinks and zeros of the derivatives' denominators
    sp = agrad.special
    c["erf"] = [(sp.erf, [np.array([-4.4, -2.2, -0.3, 0.1, 0.45, 1.3, 3.1])], {})]
    c["erfc"] = [(sp.erfc, [np.array([-1.7, -0.2, 0.35, 0.9, 2.5, 4.3])], {})]
    c["gammaln"] = [(sp.gammaln, [np.array([0.3, 0.9, 1.4, 1.95, 2.7, 6.5, 15.0, -0.6, -2.3])], {})]
    c["polygamma"] = [(sp.digamma, [np.array([0.4, 1.2, 1.5, 3.3, 12.0, -0.7, -1.4])], {}),
                      (lambda x: sp.polygamma(1, x), [np.array([0.6, 1.7, 4.2, 11.0, -0.4, -2.6])], {}),
                      (lambda x: sp.polygamma(2, x), [np.array([0.8, 2.5, 13.0, -1.3])], {})]
    c["i0e"] = [(sp.i0e, [np.array([-9.5, -2.1, -0.4, 0.6, 3.0, 7.5, 12.0])], {})]
    c["i1e"] = [(sp.i1e, [np.array([-11.0, -3.2, -0.5, 0.7, 2.4, 7.9, 9.1])], {})]
    c["entr"] = [(sp.entr, [_pos(rng, 5)], {})]
    c["logit"] = [(sp.logit, [rng.uniform(0.1, 0.9, size=5)], {})]
    c["xlogy"] = [(sp.xlogy, [_any(rng, 2, 3), _pos(rng, 3)], {})]
    c["xlog1py"] = [(sp.xlog1py, [_any(rng, 3), rng.uniform(-0.5, 2.0, size=(2, 3))], {})]
    return c
