"""agrad.special: values against SciPy on dense grids (edges and tails included) in float64
and float32 on every backend, derivatives of first and second order in both modes against
SciPy's closed forms, the special values, and no warnings from branches not taken.
(tests/op_cases.py has the finite-difference gradient checks of every primitive here.)"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import agrad
from agrad import special as S

sc = pytest.importorskip("scipy.special", reason="SciPy is the reference for agrad.special's values")

INF, NAN = math.inf, math.nan


def _geom(lo, hi, n):
    return np.geomspace(lo, hi, n)


_EDGES = np.array([0.0, -0.0, INF, -INF, NAN])
_WIDE = np.concatenate([-_geom(1e-300, 1e300, 1001), _geom(1e-300, 1e300, 1001), _EDGES])


def _domain(name):
    """A dense grid over the function's domain, with its edges and tails."""
    if name in ("erf", "erfc", "ndtr"):
        return np.concatenate([np.linspace(-30.0, 30.0, 12001), np.linspace(-0.5, 0.5, 2001), _WIDE])
    if name == "expit":
        return np.concatenate([np.linspace(-800.0, 800.0, 8001), np.linspace(-5.0, 5.0, 2001), _WIDE])
    if name == "logit":
        return np.concatenate([np.linspace(0.0, 1.0, 20001), _geom(1e-300, 0.1, 501), 1.0 - _geom(1e-16, 0.1, 501),
                               [-1.0, 2.0, NAN]])
    if name == "entr":
        return np.concatenate([np.linspace(-1.0, 50.0, 5001), _WIDE])
    if name in ("gammaln", "digamma"):
        # both sides of every pole up to -40, the zeros of gammaln at 1 and 2, of digamma at 1.46 and -0.504
        return np.concatenate([np.linspace(-40.0, 40.0, 16001), np.linspace(0.0, 3.0, 6001),
                               np.linspace(-0.6, -0.4, 2001), -np.arange(1.0, 41.0), _WIDE])
    if name.startswith("polygamma"):  # (SciPy's own polygamma loops forever at x = -1e300: no far negatives)
        return np.concatenate([np.linspace(-40.0, 40.0, 16001), np.linspace(0.0, 3.0, 3001), _geom(1e-300, 1e300, 601),
                               -_geom(1.0, 1e4, 401), -np.arange(1.0, 41.0), _EDGES])
    if name in ("i0e", "i1e"):
        return np.concatenate([np.linspace(-60.0, 60.0, 12001), _WIDE])
    if name in ("i0", "i1"):
        return np.concatenate([np.linspace(-720.0, 720.0, 14401), np.linspace(-10.0, 10.0, 2001), _EDGES])
    raise KeyError(name)


UNARY = {
    "erf": (S.erf, sc.erf), "erfc": (S.erfc, sc.erfc), "expit": (S.expit, sc.expit), "logit": (S.logit, sc.logit),
    "ndtr": (S.ndtr, sc.ndtr),
    "entr": (S.entr, sc.entr), "gammaln": (S.gammaln, sc.gammaln), "digamma": (S.digamma, sc.psi),
    "polygamma1": (lambda x: S.polygamma(1, x), lambda x: sc.polygamma(1, x)),
    "polygamma2": (lambda x: S.polygamma(2, x), lambda x: sc.polygamma(2, x)),
    "polygamma3": (lambda x: S.polygamma(3, x), lambda x: sc.polygamma(3, x)),
    "i0e": (S.i0e, sc.i0e), "i1e": (S.i1e, sc.i1e), "i0": (S.i0, sc.i0), "i1": (S.i1, sc.i1),
}

# (rtol, atol) for float64, then float32. The absolute parts cover where a function crosses zero
# (gammaln, digamma, polygamma(2) at negative x: there the result is a difference of numbers of
# the size of log|x|, for SciPy too) and subnormal results (SciPy's erfc and expit underflow to 0
# a little earlier than agrad's). SciPy's erfc is off by up to 6e-14 in its far tail (agrad's is
# within 3e-16 of mpmath there: test_accuracy_against_mpmath).
_TOL = {
    "erf": ((1e-15, 0.0), (5e-7, 0.0)), "erfc": ((1e-13, 1e-300), (2e-6, 1e-37)),
    "expit": ((1e-15, 1e-300), (5e-7, 1e-37)), "logit": ((1e-15, 0.0), (5e-7, 0.0)),
    # ndtr's argument -x / sqrt(2) is rounded, and erfc's tail magnifies that by 2 y^2: in float32
    # (which SciPy computes in float64) down to x = -13 that is 2e-5 (PyTorch's float32 ndtr too)
    "ndtr": ((1e-13, 1e-300), (3e-5, 1e-37)),
    "entr": ((1e-15, 0.0), (5e-7, 0.0)), "gammaln": ((1e-14, 5e-15), (2e-6, 1e-6)),
    "digamma": ((5e-14, 5e-15), (5e-6, 1e-6)),  # (SciPy: 2e-14 off at x = -6e13, agrad 3e-16)
    "polygamma1": ((1e-14, 0.0), (2e-6, 0.0)),
    "polygamma2": ((1e-14, 2e-15), (5e-6, 1e-9)), "polygamma3": ((1e-14, 1e-300), (2e-6, 1e-37)),
    "i0e": ((1e-15, 0.0), (2e-6, 0.0)), "i1e": ((1e-15, 0.0), (3e-6, 0.0)),
    "i0": ((2e-15, 0.0), (2e-6, 0.0)), "i1": ((2e-15, 0.0), (3e-6, 0.0)),
}


def _reference(fn, host, dtype):
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = np.asarray(fn(host.astype(np.float64)), dtype=np.float64)
        return want.astype(dtype).astype(np.float64)  # SciPy computes float32 in float64 and rounds


def _assert_close(got, want, rtol, atol, what):
    got = np.asarray(got, dtype=np.float64)
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    with np.errstate(invalid="ignore"):
        bad = ~same & ~(np.abs(got - want) <= rtol * np.abs(want) + atol)
    if bad.any():
        i = np.flatnonzero(bad)[0]
        raise AssertionError(f"{what}: {bad.sum()} values off, e.g. at {i}: got {got.flat[i]!r}, want {want.flat[i]!r}")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(UNARY))
def test_values_match_scipy_on_dense_grids(name, dtype, on_backend):
    ours, theirs = UNARY[name]
    with np.errstate(over="ignore"):  # (huge float64 grid points are inf in float32)
        host = _domain(name).astype(dtype)
    want = _reference(theirs, host, dtype)
    with np.errstate(over="ignore"):  # (a result that overflows overflows: only that may warn)
        out = ours(on_backend(host, dtype=dtype))
    assert out.dtype == getattr(agrad, dtype)
    rtol, atol = _TOL[name][dtype == "float32"]
    _assert_close(out.numpy(), want, rtol, atol, f"{name} ({dtype})")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", ["xlogy", "xlog1py", "kl_div"])
def test_binary_values_match_scipy(name, dtype, on_backend):
    xs = np.concatenate([np.linspace(-5.0, 5.0, 41), [0.0, -0.0, 1e-300, INF, -INF, NAN]])
    ys = np.concatenate([np.linspace(-3.0, 30.0, 67), [0.0, -1.0, 1e-300, 1e300, INF, NAN]])
    x, y = (a.astype(dtype) for a in np.meshgrid(xs, ys))
    with np.errstate(all="ignore"):
        want = getattr(sc, name)(x.astype(np.float64), y.astype(np.float64)).astype(dtype).astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # (inf * 0 is nan, for SciPy as for agrad)
        out = getattr(S, name)(on_backend(x, dtype=dtype), on_backend(y, dtype=dtype))
    assert out.dtype == getattr(agrad, dtype)
    # (kl_div cancels where x is near y: float32 leaves an absolute error of a few eps * (|x| + |y|))
    atol = 1e-5 if name == "kl_div" and dtype == "float32" else 0.0
    _assert_close(out.numpy(), want, 1e-15 if dtype == "float64" else 5e-7, atol, f"{name} ({dtype})")


def test_special_values():
    t = agrad.tensor
    cases = [
        (S.erf, [-INF, INF, -0.0, NAN], [-1.0, 1.0, -0.0, NAN]),
        (S.erfc, [-INF, INF, 0.0, 27.0, NAN], [2.0, 0.0, 1.0, 5.2370464393526e-319, NAN]),
        (S.expit, [-INF, INF, 0.0, -800.0, 800.0], [0.0, 1.0, 0.5, 0.0, 1.0]),
        (S.logit, [0.0, 1.0, 0.5, -0.5, 1.5, NAN], [-INF, INF, 0.0, NAN, NAN, NAN]),
        (S.entr, [0.0, -1.0, INF, NAN, 1.0], [0.0, -INF, -INF, NAN, 0.0]),
        (S.gammaln, [0.0, -0.0, -1.0, -7.0, 1.0, 2.0, INF, -INF, 3e305, NAN], [INF, INF, INF, INF, 0.0, 0.0, INF, -INF,
                                                                                INF, NAN]),
        (S.digamma, [0.0, -0.0, -1.0, -3.0, INF, -INF, NAN], [-INF, INF, NAN, NAN, INF, NAN, NAN]),
        (lambda x: S.polygamma(1, x), [0.0, -2.0, INF, -INF], [INF, INF, 0.0, INF]),
        (lambda x: S.polygamma(2, x), [0.0, -2.0, INF, -INF], [-INF, -INF, -0.0, -INF]),
        (S.i0e, [0.0, INF, -INF, NAN], [1.0, 0.0, 0.0, NAN]),
        (S.i1e, [0.0, INF, -INF, NAN], [0.0, 0.0, -0.0, NAN]),
    ]
    for f, x, want in cases:
        np.testing.assert_array_equal(f(t(np.array(x))).numpy(), np.array(want), err_msg=str(f))
    np.testing.assert_array_equal(S.xlogy(t(np.array([0.0, 0.0, 0.0, 2.0])), t(np.array([0.0, -1.0, NAN, 1.0])))
                                  .numpy(), [0.0, 0.0, NAN, 0.0])
    np.testing.assert_array_equal(S.xlog1py(t(np.array([0.0, 0.0, 1.0])), t(np.array([-1.0, -2.0, -1.0]))).numpy(),
                                  [0.0, 0.0, -INF])
    assert math.isclose(float(S.erfc(t(np.float64(26.6)))), float(sc.erfc(26.6)), rel_tol=1e-12)  # still normal


def test_no_warnings_from_the_branches_not_taken():
    """Every branch is evaluated on clipped inputs: only a result that itself is infinite from a
    finite input may warn (a genuine overflow or division by zero), as NumPy does."""
    x = agrad.tensor(np.concatenate([np.linspace(-50.0, 50.0, 2001), [0.0, -0.0, NAN, 1e-300, 1e300, -1e300]]))
    u = agrad.tensor(np.concatenate([np.linspace(-0.5, 1.5, 201), [0.0, 1.0, NAN]]))
    with warnings.catch_warnings(), np.errstate(all="raise", over="ignore", under="ignore"):
        warnings.simplefilter("error")
        for f in (S.erf, S.erfc, S.expit, S.entr, S.gammaln, S.digamma, S.i0e, S.i1e, S.i0, S.i1,
                  lambda x: S.polygamma(1, x), lambda x: S.polygamma(4, x)):
            f(x)
        S.logit(u)
        S.xlogy(x, u[:, None])
        S.xlog1py(x, u[:, None] - 1.0)
        S.kl_div(u[:, None], x)


def test_dtypes_and_arguments():
    assert S.erf(agrad.tensor(np.array([1, 2]))).dtype == agrad.float64  # integers: float64, as SciPy
    assert S.erf(agrad.tensor(np.array([1.0], dtype=np.float32))).dtype == agrad.float32
    assert S.xlogy(agrad.tensor(np.array([1.0], dtype=np.float32)), 2.0).dtype == agrad.float32
    assert S.xlogy(2, agrad.tensor(np.array([3.0]))).shape == (1,)
    assert math.isclose(float(S.gammaln(5)), math.log(24.0), rel_tol=1e-15)
    assert math.isclose(float(S.polygamma(np.int64(1), 2.0)), math.pi ** 2 / 6 - 1, rel_tol=1e-6)
    assert S.psi is S.digamma
    with pytest.raises(TypeError, match="complex"):
        S.erf(agrad.tensor(np.array([1j])))
    with pytest.raises(ValueError, match=">= 0"):
        S.polygamma(-1, 1.0)
    with pytest.raises(TypeError, match="one non-negative integer"):
        S.polygamma(np.array([1, 2]), 1.0)


def test_agrad_is_the_namespace_with_special():
    x = agrad.tensor([0.5])
    assert x.__array_namespace__().special is S


# --------------------------------------------------------------------------- derivatives


def _d1(name, x):
    """The first derivative, from SciPy's functions."""
    e = np.exp(-x * x) * 2 / math.sqrt(math.pi)
    return {
        "erf": lambda: e, "erfc": lambda: -e, "expit": lambda: sc.expit(x) * sc.expit(-x),
        "ndtr": lambda: np.exp(-x * x / 2) / math.sqrt(2 * math.pi),
        "logit": lambda: 1 / (x * (1 - x)), "entr": lambda: -(np.log(x) + 1), "gammaln": lambda: sc.psi(x),
        "digamma": lambda: sc.polygamma(1, x), "polygamma1": lambda: sc.polygamma(2, x),
        "polygamma2": lambda: sc.polygamma(3, x), "polygamma3": lambda: sc.polygamma(4, x),
        "i0e": lambda: sc.i1e(x) - np.sign(x) * sc.i0e(x),
        "i1e": lambda: sc.i0e(x) - sc.i1e(x) / x - np.sign(x) * sc.i1e(x),
        "i0": lambda: sc.i1(x), "i1": lambda: sc.i0(x) - sc.i1(x) / x,
    }[name]()


def _d2(name, x):
    e = np.exp(-x * x) * 2 / math.sqrt(math.pi)
    s = sc.expit(x)
    return {
        "erf": lambda: -2 * x * e, "erfc": lambda: 2 * x * e, "expit": lambda: s * (1 - s) * (1 - 2 * s),
        "ndtr": lambda: -x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi),
        "logit": lambda: (2 * x - 1) / (x * (1 - x)) ** 2, "entr": lambda: -1 / x,
        "gammaln": lambda: sc.polygamma(1, x), "digamma": lambda: sc.polygamma(2, x),
        "polygamma1": lambda: sc.polygamma(3, x), "polygamma2": lambda: sc.polygamma(4, x),
        "polygamma3": lambda: sc.polygamma(5, x),
        # I0'' = I0 - I1/x; i0e = exp(-|x|) I0: i0e'' = i0e'' of the product rule, with s = sign(x)
        "i0e": lambda: (sc.i0e(x) - sc.i1e(x) / x) - 2 * np.sign(x) * sc.i1e(x) + sc.i0e(x),
        "i1e": lambda: (sc.i1e(x) * (1 + 2 / x ** 2) - sc.i0e(x) / x) - 2 * np.sign(x) * (sc.i0e(x) - sc.i1e(x) / x)
        + sc.i1e(x),
        "i0": lambda: sc.i0(x) - sc.i1(x) / x, "i1": lambda: sc.i1(x) * (1 + 2 / x ** 2) - sc.i0(x) / x,
    }[name]()


def _derivative_grid(name):
    if name == "logit":
        return np.linspace(0.02, 0.98, 41)
    if name == "entr":
        return np.geomspace(1e-3, 30.0, 41)
    if name in ("gammaln", "digamma") or name.startswith("polygamma"):
        g = np.concatenate([np.linspace(0.05, 25.0, 61), np.linspace(-4.9, -0.1, 49)])
        return g[np.abs(g - np.round(g)) > 0.04]  # away from the poles
    if name in ("i0", "i1"):
        return np.concatenate([np.linspace(-30.0, -0.1, 30), np.linspace(0.1, 30.0, 30)])
    g = np.linspace(-12.0, 12.0, 61)
    return g[np.abs(g) > 0.05]  # (i0e and i1e have a kink at 0)


@pytest.mark.parametrize("name", sorted(UNARY))
def test_derivatives_of_first_and_second_order_in_both_modes(name, on_backend):
    ours, _ = UNARY[name]
    host = _derivative_grid(name)
    x = on_backend(host)
    ones = on_backend(np.ones_like(host))

    def d(f):  # the elementwise derivative by reverse mode
        return lambda y: agrad.grad(lambda z: agrad.sum(f(z)))(y)

    def fwd(f):  # ... and by forward mode
        return lambda y: agrad.jvp(f, (y,), (ones,))[1]

    want1, want2 = _d1(name, host), _d2(name, host)
    rtol = 1e-12
    for got, want, what in [(d(ours)(x), want1, "grad"), (fwd(ours)(x), want1, "jvp"),
                            (d(d(ours))(x), want2, "grad of grad"), (fwd(fwd(ours))(x), want2, "jvp of jvp"),
                            (d(fwd(ours))(x), want2, "grad of jvp"), (fwd(d(ours))(x), want2, "jvp of grad")]:
        np.testing.assert_allclose(got.numpy(), want, rtol=rtol, atol=1e-13 * np.max(np.abs(want)),
                                   err_msg=f"{name}: {what}")


def test_derivatives_of_the_binary_functions(on_backend):
    rng = np.random.default_rng(5)
    x, y = rng.uniform(-2.0, 2.0, 20), rng.uniform(0.1, 3.0, 20)
    for f, dx, dy in [(S.xlogy, np.log(y), x / y), (S.xlog1py, np.log1p(y), x / (1 + y)),
                      (S.kl_div, None, None)]:
        xs = np.abs(x) if f is S.kl_div else x
        if f is S.kl_div:
            dx, dy = np.log(xs / y), 1 - xs / y
        gx, gy = agrad.grad(lambda a, b: agrad.sum(f(a, b)), argnums=(0, 1))(on_backend(xs), on_backend(y))
        np.testing.assert_allclose(gx.numpy(), dx, rtol=1e-13, err_msg=str(f))
        np.testing.assert_allclose(gy.numpy(), dy, rtol=1e-13, err_msg=str(f))
    # the conventions where x == 0: the function is 0 for every y, so its derivative in y is 0
    gx, gy = agrad.grad(lambda a, b: agrad.sum(S.xlogy(a, b)), argnums=(0, 1))(on_backend(np.array([0.0, 0.0])),
                                                                               on_backend(np.array([0.0, 2.0])))
    np.testing.assert_array_equal(gx.numpy(), [0.0, math.log(2.0)])
    np.testing.assert_array_equal(gy.numpy(), [0.0, 0.0])
    # entr's derivative at 0 is the one-sided limit, +inf (as PyTorch)
    assert agrad.grad(lambda a: agrad.sum(S.entr(a)))(on_backend(np.array([0.0]))).numpy()[0] == INF


def test_i1e_derivative_at_zero_and_i0_hessian(on_backend):
    g = agrad.grad(lambda a: agrad.sum(S.i1e(a)))(on_backend(np.array([0.0])))
    assert g.numpy()[0] == 0.5
    h = agrad.hessian(lambda a: agrad.sum(S.i0(a)))(on_backend(np.array([0.7, -1.3])))
    np.testing.assert_allclose(np.diag(h.numpy()), _d2("i0", np.array([0.7, -1.3])), rtol=1e-13)
