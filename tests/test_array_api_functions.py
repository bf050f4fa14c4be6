"""Functions of the standard that agrad builds from its primitives (tile, repeat, sort,
std, diff, vecdot, tril, meshgrid...): values against NumPy, gradients against finite
differences (first and second order), on every backend. The primitives themselves are
checked by tests/test_ops_gradcheck.py, which finds them in the registry."""

from __future__ import annotations

import numpy as np
import pytest

import agrad

RNG = np.random.default_rng(7)
A = RNG.standard_normal((3, 4))
V = RNG.standard_normal(5)

CASES = {
    "tile": (lambda x: agrad.tile(x, (2, 1, 3)), lambda x: np.tile(x, (2, 1, 3)), [A]),
    "repeat_int": (lambda x: agrad.repeat(x, 2, axis=0), lambda x: np.repeat(x, 2, axis=0), [A]),
    "repeat_counts": (lambda x: agrad.repeat(x, agrad.asarray(np.array([1, 0, 2, 1, 3]), device=x.device)),
                      lambda x: np.repeat(x, [1, 0, 2, 1, 3]), [V]),
    "moveaxis": (lambda x: agrad.moveaxis(agrad.reshape(x, (3, 2, 2)), 0, -1),
                 lambda x: np.moveaxis(x.reshape(3, 2, 2), 0, -1), [A]),
    "unstack": (lambda x: agrad.unstack(x, axis=1)[2], lambda x: x[:, 2], [A]),
    "broadcast_arrays": (lambda x: agrad.broadcast_arrays(x, agrad.ones((2, 1, 1), dtype="float64",
                                                                        device=x.device))[0],
                         lambda x: np.broadcast_arrays(x, np.ones((2, 1, 1)))[0], [A]),
    "take_along_axis": (lambda x: agrad.take_along_axis(x, agrad.asarray(np.array([[0, 3, 3], [1, 1, 0], [2, 0, 1]]),
                                                                          device=x.device), axis=1),
                        lambda x: np.take_along_axis(x, np.array([[0, 3, 3], [1, 1, 0], [2, 0, 1]]), axis=1), [A]),
    "sort": (lambda x: agrad.sort(x, axis=1), lambda x: np.sort(x, axis=1), [A]),
    "sort_descending": (lambda x: agrad.sort(x, descending=True), lambda x: -np.sort(-x), [V]),
    "std": (lambda x: agrad.std(x, axis=0, correction=1), lambda x: np.std(x, axis=0, ddof=1), [A]),
    "diff": (lambda x: agrad.diff(x, axis=1, n=2), lambda x: np.diff(x, axis=1, n=2), [A]),
    "diff_prepend": (lambda x: agrad.diff(x, prepend=agrad.zeros(1, dtype="float64", device=x.device)),
                     lambda x: np.diff(x, prepend=0.0), [V]),
    "vecdot": (lambda x, y: agrad.vecdot(x, y), lambda x, y: np.sum(x * y, axis=-1), [A, A[0]]),
    "tril": (lambda x: agrad.tril(x, k=1), lambda x: np.tril(x, k=1), [A]),
    "triu": (lambda x: agrad.triu(x, k=-1), lambda x: np.triu(x, k=-1), [A]),
    "meshgrid_xy": (lambda x, y: agrad.meshgrid(x, y)[0] * agrad.meshgrid(x, y)[1],
                    lambda x, y: np.meshgrid(x, y)[0] * np.meshgrid(x, y)[1], [V[:3], V[3:]]),
    "meshgrid_ij": (lambda x, y: agrad.meshgrid(x, y, indexing="ij")[1],
                    lambda x, y: np.meshgrid(x, y, indexing="ij")[1], [V[:3], V[3:]]),
    # linalg built from differentiable operations
    "vector_norm_1": (lambda x: agrad.linalg.vector_norm(x, ord=1, axis=0), lambda x: np.sum(np.abs(x), axis=0), [A]),
    "vector_norm_3": (lambda x: agrad.linalg.vector_norm(x, ord=3), lambda x: np.sum(np.abs(x) ** 3) ** (1 / 3), [V]),
    "vector_norm_inf": (lambda x: agrad.linalg.vector_norm(x, ord=float("inf")), lambda x: np.max(np.abs(x)), [V]),
    "matrix_norm_fro": (lambda x: agrad.linalg.matrix_norm(x), lambda x: np.linalg.norm(x), [A]),
    "matrix_norm_nuc": (lambda x: agrad.linalg.matrix_norm(x, ord="nuc"), lambda x: np.linalg.norm(x, "nuc"), [A]),
    "matrix_norm_2": (lambda x: agrad.linalg.matrix_norm(x, ord=2), lambda x: np.linalg.norm(x, 2), [A]),
    "matrix_norm_1": (lambda x: agrad.linalg.matrix_norm(x, ord=1), lambda x: np.linalg.norm(x, 1), [A]),
    "matrix_norm_inf": (lambda x: agrad.linalg.matrix_norm(x, ord=float("inf"), keepdims=True),
                        lambda x: np.linalg.norm(x, np.inf, keepdims=True), [A]),
    "matrix_power": (lambda x: agrad.linalg.matrix_power(x, 3), lambda x: np.linalg.matrix_power(x, 3), [A[:3, :3]]),
    "matrix_power_neg": (lambda x: agrad.linalg.matrix_power(x, -2),
                         lambda x: np.linalg.matrix_power(x, -2), [A[:3, :3] + 3 * np.eye(3)]),
    "diagonal": (lambda x: agrad.linalg.diagonal(x, offset=1), lambda x: np.diagonal(x, offset=1), [A]),
    "trace": (lambda x: agrad.linalg.trace(x, offset=-1), lambda x: np.trace(x, offset=-1), [A]),
    "outer": (lambda x, y: agrad.linalg.outer(x, y), np.outer, [V, V[:3]]),
    "cross": (lambda x, y: agrad.linalg.cross(x, y), np.cross, [A[:, :3], V[:3]]),
    "pinv": (lambda x: agrad.linalg.pinv(x), np.linalg.pinv, [A]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_values_match_numpy_and_gradients_match_finite_differences(name, on_backend):
    f, ref, host = CASES[name]
    xs = [on_backend(h) for h in host]
    np.testing.assert_allclose(f(*xs).numpy(), ref(*host), rtol=1e-12, atol=1e-12)
    agrad.check_grad(f, *xs)
    agrad.check_grad(f, *xs, order=2)
    # forward mode agrees with reverse mode: <u, J v> == <J^T u, v>
    rng = np.random.default_rng(0)
    vs = [on_backend(rng.standard_normal(h.shape)) for h in host]
    out, tangent = agrad.jvp(f, xs, vs)
    u = on_backend(rng.standard_normal(out.shape))
    cotangents = agrad.vjp(f, *xs)[1](u)
    left = float(agrad.sum(u * tangent))
    right = sum(float(agrad.sum(c * v)) for c, v in zip(cotangents, vs))
    assert left == pytest.approx(right, rel=1e-10, abs=1e-12)


def test_creation_functions_and_constants(on_backend):
    assert agrad.eye(3, 4, k=1).numpy().tolist() == np.eye(3, 4, k=1).tolist()
    np.testing.assert_allclose(agrad.linspace(0.0, 1.0, 5).numpy(), np.linspace(0, 1, 5), rtol=1e-6)
    assert agrad.linspace(0.0, 1.0, 4, endpoint=False).numpy().tolist() == [0.0, 0.25, 0.5, 0.75]
    assert agrad.pi == np.pi and agrad.e == np.e and agrad.inf == np.inf and np.isnan(agrad.nan)
    assert agrad.newaxis is None


def test_no_gradient_functions_follow_the_standard(on_backend):
    i = on_backend(np.array([6, 5, 12]), dtype=None)
    assert (i & 3).numpy().tolist() == [2, 1, 0]
    assert (i | 1).numpy().tolist() == [7, 5, 13]
    assert (i ^ 3).numpy().tolist() == [5, 6, 15]
    assert (~on_backend(np.array([True, False]), dtype=None)).numpy().tolist() == [False, True]
    assert (i // 4).numpy().tolist() == [1, 1, 3]
    x = on_backend(np.array([1.5, -0.0, np.inf]))
    assert agrad.signbit(x).numpy().tolist() == [False, True, False]
    assert agrad.isinf(x).numpy().tolist() == [False, False, True]
    assert agrad.count_nonzero(x).numpy() == 2
    assert [t.numpy().tolist() for t in agrad.nonzero(x)] == [[0, 2]]
    s = on_backend(np.array([1.0, 2.0, 4.0]))
    assert agrad.searchsorted(s, on_backend(np.array([0.5, 2.0, 5.0]))).numpy().tolist() == [0, 1, 3]
    assert agrad.argsort(on_backend(np.array([3.0, 1.0, 2.0]))).numpy().tolist() == [1, 2, 0]


def test_sort_sends_each_gradient_back_to_its_element():
    x = np.array([3.0, 1.0, 2.0])
    g = agrad.grad(lambda v: agrad.sum(agrad.sort(v) * agrad.asarray(np.array([1.0, 10.0, 100.0]))))(x)
    assert g.numpy().tolist() == [100.0, 1.0, 10.0]


def test_data_type_functions():
    assert agrad.isdtype(agrad.float32, "real floating") and agrad.isdtype("int8", ("bool", "integral"))
    assert not agrad.isdtype(agrad.float64, "integral") and agrad.isdtype(agrad.uint8, "numeric")
    assert agrad.result_type(agrad.float32, agrad.float64) == agrad.float64
    assert agrad.result_type(agrad.tensor([1.0]), 2.0) == agrad.float32  # Python scalars are weak
    assert agrad.result_type(agrad.int8, agrad.int16) == agrad.int16
    assert agrad.can_cast(agrad.int32, agrad.float64) and not agrad.can_cast(agrad.float64, agrad.float32)
    f = agrad.finfo(agrad.float32)
    assert f.eps == np.finfo(np.float32).eps and f.bits == 32 and f.dtype == agrad.float32
    assert agrad.iinfo(agrad.tensor(np.array([1], np.int16))).max == 32767
    assert agrad.broadcast_shapes((2, 1), (3,), ()) == (2, 3)
    with pytest.raises(ValueError, match="broadcast"):
        agrad.broadcast_shapes((2,), (3,))


def test_real_imag_conj_and_complex_derivatives_are_a_clear_error(on_backend):
    x = on_backend(np.array([1.5, -2.0]))
    np.testing.assert_array_equal(agrad.real(x).numpy(), [1.5, -2.0])
    np.testing.assert_array_equal(agrad.imag(x).numpy(), [0.0, 0.0])
    np.testing.assert_array_equal(agrad.grad(lambda v: agrad.sum(agrad.conj(v) * v))(x).numpy(), [3.0, -4.0])


@pytest.mark.filterwarnings("ignore::numpy.exceptions.ComplexWarning")  # the user's own cast of a complex value
def test_complex_values_are_computed_but_never_differentiated():
    c = agrad.asarray(np.array([1 + 2j]))
    assert agrad.real(c).numpy().tolist() == [1.0] and agrad.imag(c).numpy().tolist() == [2.0]  # computed...
    with pytest.raises(TypeError, match="complex numbers are not supported"):  # ...but never differentiated
        agrad.grad(lambda v: agrad.sum(agrad.real(v * agrad.asarray(np.array([1j])))))(np.array([1.0]))
    with pytest.raises(TypeError, match="complex"):
        agrad.tensor(np.array([1j]), requires_grad=True)
    with pytest.raises(TypeError, match="complex"):
        agrad.grad(lambda v: agrad.sum(agrad.astype(v * agrad.asarray(np.array([1j])), "float64")))(
            np.array([1.0]))


def test_set_functions(on_backend):
    x = on_backend(np.array([3.0, 1.0, 3.0, 2.0]))
    assert agrad.unique_values(x).numpy().tolist() == [1.0, 2.0, 3.0]
    r = agrad.unique_all(x)
    assert r.counts.numpy().tolist() == [1, 1, 2] and r.inverse_indices.numpy().tolist() == [2, 0, 2, 1]
    assert agrad.unique_counts(x).values.numpy().tolist() == [1.0, 2.0, 3.0]
    assert agrad.unique_inverse(x).inverse_indices.numpy().tolist() == [2, 0, 2, 1]
    with pytest.raises(TypeError, match="no derivative"):
        agrad.grad(lambda v: agrad.sum(agrad.unique_values(v)))(x)


def test_linalg_decompositions_match_numpy(on_backend):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((4, 3))
    sq = a[:3] + 3 * np.eye(3)
    spd = sq @ sq.T
    L = agrad.linalg
    np.testing.assert_allclose(L.inv(on_backend(sq)).numpy(), np.linalg.inv(sq), rtol=1e-10)
    np.testing.assert_allclose(L.det(on_backend(sq)).numpy(), np.linalg.det(sq), rtol=1e-10)
    sign, logabs = L.slogdet(on_backend(sq))
    assert (sign.numpy(), logabs.numpy()) == pytest.approx(np.linalg.slogdet(sq))
    np.testing.assert_allclose(L.cholesky(on_backend(spd)).numpy(), np.linalg.cholesky(spd), rtol=1e-10)
    np.testing.assert_allclose(L.eigvalsh(on_backend(spd)).numpy(), np.linalg.eigvalsh(spd), rtol=1e-10)
    u, s, vh = L.svd(on_backend(a), full_matrices=False)
    np.testing.assert_allclose((u.numpy() * s.numpy()) @ vh.numpy(), a, atol=1e-12)
    q, r = L.qr(on_backend(a))
    np.testing.assert_allclose(q.numpy() @ r.numpy(), a, atol=1e-12)
    assert int(L.matrix_rank(on_backend(a)).numpy()) == 3
    x = L.solve(on_backend(sq), on_backend(np.ones(3)))
    np.testing.assert_allclose(sq @ x.numpy(), np.ones(3), atol=1e-12)


def test_the_two_norm_of_zero_has_gradient_zero(on_backend):
    g = agrad.grad(lambda v: agrad.linalg.vector_norm(v))(on_backend(np.zeros(3)))
    assert g.numpy().tolist() == [0.0, 0.0, 0.0]


def test_derivatives_that_do_not_exist_are_clear_errors():
    x = agrad.tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(ValueError, match="full_matrices=False"):
        agrad.linalg.svd(x)
    with pytest.raises(ValueError, match="M >= N"):
        agrad.linalg.qr(x)
