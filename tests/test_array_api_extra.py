"""array-api-extra (xpx) on agrad: its own test suite, and its functions differentiated.

1. xpx's own test suite (shipped inside its wheel) runs with agrad as more backends
   (tests/xpx_agrad_plugin.py): every test that passes for array_api_strict passes for
   agrad, except the differences listed in ``KNOWN_DIFFERENCES``, each with its reason.
2. xpx's public functions that take arrays, written only against the standard, are
   differentiated through agrad in reverse mode (``agrad.check_grad`` perturbs every
   element; ``agrad.vjp``) and forward mode (``agrad.jvp``), against central differences
   in float64, on every backend; value-only functions are checked for their values.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import agrad

from .checks import EPS, check_both_modes

xpx = pytest.importorskip("array_api_extra", reason="array-api-extra is not installed (pip install -e '.[test]')")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# --------------------------------------------------------------------------- 1. xpx's own suite

# The backends of xpx's suite that run: the reference, and agrad's (see the plugin).
REFERENCE = "array_api_strict"
AGRAD_BACKENDS = ("agrad", "agrad_float64", "agrad_strict")

# Tests that pass for array_api_strict and are expected to fail on an agrad backend: (the
# agrad backends, why, the tests' keys). A listed test that passes makes the check fail,
# so that the list is kept exact.
KNOWN_DIFFERENCES = [
    (AGRAD_BACKENDS,
     "NumPy's ufuncs cannot read a Tensor (Tensor.__array_ufunc__ is None: NumPy would drop the derivative); "
     "the test expects that only of array_api_strict and JAX, and dispatch through __array_ufunc__ from others",
     ["main/test_testing.py::test_lazy_xp_function_cython_ufuncs[{backend}]"]),
    (("agrad", "agrad_strict"),
     "float32 default: NumPy's float32 atan2 is one ulp from the correctly rounded pi/4 "
     "(np.arctan2(np.float32(1), np.float32(1)) != np.float32(np.pi / 4)), and the test compares exactly; "
     "it passes with float64 defaults (agrad_float64)",
     ["main/test_elementwise.py::TestAngle::test_2d[{backend}]",
      "main/test_elementwise.py::TestAngle::test_complex[{backend}]"]),
    (("agrad_strict",),
     "array-api-strict refuses int arrays mixed with Python floats, and agrad on it does too; the test expects "
     "that refusal of array_api_strict alone, and NumPy's casts (int[:] = 1.1) from every other library",
     [f"main/test_at.py::test_incompatible_dtype[{{backend}}-{op}-{bool_mask}-{copy}]"
      for op, bool_mask, copy in [("set", False, None), ("set", False, True)] +
      [(op, mask, copy) for op in ("min", "max") for mask in (False, True) for copy in (None, True)]]),
    (("agrad_strict",),
     "np.asarray(tensor) is refused for a Tensor on array-api-strict (Tensor.__array__: 'it would copy it to "
     "the host silently'), where array-api-strict itself lets NumPy read its CPU arrays; lazy_apply(as_numpy=True) "
     "and the test's class convert with np.asarray",
     ["main/test_lazy.py::test_lazy_apply_broadcast[{backend}-True]",
      "main/test_lazy.py::test_lazy_apply_kwargs[{backend}-True]",
      "main/test_lazy.py::test_lazy_apply_multi_output[{backend}-True]",
      "main/test_lazy.py::test_lazy_apply_multi_output_broadcast_dtype[{backend}-True]",
      "main/test_lazy.py::test_lazy_apply_simple[{backend}-float64-shape0-True]",
      "main/test_lazy.py::test_lazy_apply_simple[{backend}-float64-shape1-True]",
      "main/test_lazy.py::test_lazy_apply_simple[{backend}-int32-shape0-True]",
      "main/test_lazy.py::test_lazy_apply_simple[{backend}-int32-shape1-True]",
      "main/test_testing.py::TestLazyXpFunctionClasses::test_lazy_xp_function_classes[{backend}]"]),
]

# xpx's own pytest settings (its pyproject.toml, which the wheel does not ship).
_XPX_INI = "[pytest]\nxfail_strict = true\nfilterwarnings =\n    error\n"


def _known(backend: str) -> dict[str, str]:
    return {key: why for backends, why, keys in KNOWN_DIFFERENCES if backend in backends for key in keys}


def test_xpx_suite_passes_for_agrad_wherever_it_passes_for_array_api_strict(tmp_path, request):
    """About 20 s: xpx's suite for array_api_strict and agrad's three backends, in a subprocess."""
    if importlib.util.find_spec("array_api_extra.tests.main") is None:
        pytest.skip("this array-api-extra has no test suite inside (array_api_extra.tests.main)")
    pytest.importorskip("array_api_strict")
    if request.config.getoption("--backend") == "cupy":
        pytest.skip("xpx's suite runs agrad on NumPy and array-api-strict; the cupy run checks agrad's own tests")
    ini, outcomes = tmp_path / "pytest.ini", tmp_path / "outcomes.json"
    ini.write_text(_XPX_INI)
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("AGRAD_BACKEND", None)  # (the plugin selects agrad's backend per test)
    cmd = [sys.executable, "-m", "pytest", "-c", str(ini), "--rootdir", str(tmp_path), "-p", "no:cacheprovider",
           "-p", "tests.xpx_agrad_plugin", "--pyargs", "array_api_extra.tests.main", "-q", "--tb=short", "-rfE",
           "--xpx-backends", ",".join((REFERENCE, *AGRAD_BACKENDS)), "--xpx-outcomes", str(outcomes)]
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    log = run.stdout[-6000:] + run.stderr[-3000:]
    assert outcomes.exists(), f"xpx's suite did not run (exit {run.returncode}):\n{log}"
    results = json.loads(outcomes.read_text())

    passed_ref = {k for k, v in results.get(REFERENCE, {}).items() if v == "passed"}
    assert len(passed_ref) > 500, f"only {len(passed_ref)} xpx tests passed for {REFERENCE}:\n{log}"
    problems = []
    for backend in AGRAD_BACKENDS:
        ours = results.get(backend, {})
        passed = {k for k, v in ours.items() if v == "passed"}
        known = _known(backend)
        for key in sorted(passed_ref - passed):
            if key not in known:
                problems.append(f"{key.format(backend=backend)}: {ours.get(key, 'not run')} "
                                f"(passes for {REFERENCE})")
        for key in sorted(set(known) & passed):
            problems.append(f"{key.format(backend=backend)} passes now: remove it from KNOWN_DIFFERENCES")
    assert not problems, "\n".join(problems) + f"\n\nrerun by hand: cd {tmp_path} && PYTHONPATH={ROOT} " + \
        " ".join(cmd[1:]) + f"\n\n{log}"


# --------------------------------------------------------------------------- 2. derivatives

def _x_y(on_backend, key):
    """A (4, 3) target and a value of the shape of ``target[key]``, both positive (for power, divide)."""
    rng = np.random.default_rng(1)
    x = rng.uniform(0.5, 1.5, (4, 3))
    return on_backend(x), on_backend(rng.uniform(0.5, 1.5, x[key].shape))


def _index(on_backend, kind):
    """(key as agrad takes it, key as NumPy takes it) for each kind of index at() takes."""
    if kind == "slice":
        return (slice(1, 3),), (slice(1, 3),)
    if kind == "int":
        return 2, 2
    if kind == "int_array":
        rows = np.array([3, 0])
        return on_backend(rows, dtype=None), rows
    if kind == "mixed":
        rows = np.array([0, 2])
        return (on_backend(rows, dtype=None), 1), (rows, 1)
    mask = np.zeros((4, 3), dtype=bool)
    mask.flat[[0, 4, 5, 7, 11]] = True
    return on_backend(mask, dtype=None), mask


AT_OPS = ["set", "add", "subtract", "multiply", "divide", "power", "min", "max"]
INDEX_KINDS = ["slice", "int", "int_array", "mixed", "bool_mask"]
COPIES = [None, True, False]


def _at(op, key, copy):
    """x, y -> at(x, key).op(y, copy=copy). copy=None or False may update its target in place, and
    agrad refuses that for a leaf that requires a gradient while recording: the target is then
    x * 1, a computed Tensor (which the in-place update turns into the result)."""

    def f(x, y):
        target = x if copy else x * 1
        return getattr(xpx.at(target, key), op)(y, copy=copy)

    return f


@pytest.mark.parametrize("copy", COPIES, ids=lambda c: f"copy={c}")
@pytest.mark.parametrize("kind", INDEX_KINDS)
@pytest.mark.parametrize("op", AT_OPS)
def test_at_updates_differentiate_in_forward_mode(op, kind, copy, on_backend):
    key, np_key = _index(on_backend, kind)
    x, y = _x_y(on_backend, np_key)
    f = _at(op, key, copy)
    vs = [agrad.ones_like(x), agrad.ones_like(y) * 0.5]
    with agrad.no_grad():
        fd = (f(x + EPS * vs[0], y + EPS * vs[1]).numpy() - f(x - EPS * vs[0], y - EPS * vs[1]).numpy()) / (2 * EPS)
    out, tangent = agrad.jvp(f, (x, y), tuple(vs))
    np.testing.assert_allclose(tangent.numpy(), fd, rtol=1e-5, atol=1e-7)
    # the value: NumPy's update of a copy
    expected = x.numpy().copy()
    region, value = expected[np_key], y.numpy()
    expected[np_key] = {"set": value, "add": region + value, "subtract": region - value,
                        "multiply": region * value, "divide": region / value, "power": region ** value,
                        "min": np.minimum(region, value), "max": np.maximum(region, value)}[op]
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-14)


_VIEW_MIN_MAX = pytest.mark.xfail(
    strict=True, raises=RuntimeError,
    reason="at(x, basic key).min/max is x[key] = minimum(x[key], y): minimum saves x[key], a view of x, and the "
           "write overwrites it; its derivative needs the old values, so backward is a clear error (as in PyTorch)")


def _reverse_cases():
    for op in AT_OPS:
        for kind in INDEX_KINDS:
            for copy in COPIES:
                marks = [_VIEW_MIN_MAX] if op in ("min", "max") and kind in ("slice", "int") else []
                yield pytest.param(op, kind, copy, marks=marks, id=f"{op}-{kind}-copy={copy}")


@pytest.mark.parametrize(("op", "kind", "copy"), list(_reverse_cases()))
def test_at_updates_differentiate_in_reverse_mode(op, kind, copy, on_backend):
    """Both the target and the value are differentiated (the value is a Tensor too)."""
    key, np_key = _index(on_backend, kind)
    x, y = _x_y(on_backend, np_key)
    check_both_modes(_at(op, key, copy), x, y)


def test_at_min_max_through_a_view_is_a_clear_error_at_backward(on_backend):
    """The reason for the xfails above: the error names the op and the update."""
    x, y = _x_y(on_backend, (slice(1, 3),))
    with pytest.raises(RuntimeError, match=r"argument 0 of minimum .* was updated in place by item assignment"):
        agrad.grad(lambda x: agrad.sum(xpx.at(x, slice(1, 3)).min(y, copy=True)))(x)


@pytest.mark.parametrize("copy", [None, False], ids=lambda c: f"copy={c}")
def test_at_in_place_on_a_leaf_that_requires_grad_is_refused_clearly(copy, on_backend):
    """copy=None updates a writeable array in place (agrad's are), as copy=False does: on the
    input of agrad.grad, a leaf that requires a gradient, agrad refuses and says what to do."""
    x, _ = _x_y(on_backend, 0)
    with pytest.raises(RuntimeError, match="leaf that requires a gradient.*agrad.no_grad"):
        agrad.grad(lambda x: agrad.sum(xpx.at(x, 0).set(0.0, copy=copy)))(x)
    # copy=True (JAX's semantics) differentiates the leaf
    g = agrad.grad(lambda x: agrad.sum(xpx.at(x, 0).set(0.0, copy=True) * x))(x)
    expected = 2 * x.numpy()
    expected[0] = 0.0
    np.testing.assert_allclose(g.numpy(), expected, rtol=1e-14)


RNG = np.random.default_rng(3)
A = RNG.standard_normal((3, 4))
B = RNG.standard_normal((2, 2))
V = np.array([0.0, 0.3, -1.2, 2.5])  # (sinc at 0 too)
W = np.array([1.5, -0.4, 0.7])  # none of it in V


def _deprecated(fn):
    """xpx.expand_dims and broadcast_shapes are deprecated (the 2025.12 standard has them);
    they still run, and agrad (2024.12) relies on xpx's versions."""

    def call(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return fn(*args, **kwargs)

    return call


def _specials(x):
    """inf, -inf and nan beside x: constants of its dtype and device."""
    return agrad.asarray(np.array([np.inf, -np.inf, np.nan]), dtype=x.dtype, device=x.device)


def _without_infs(out):
    """``out`` without the two elements where ``_specials`` put the infinities."""
    return agrad.concat([out[:-3], out[-1:]])


FUNCTIONS = {
    "pad": (lambda x: xpx.pad(x, 2), [A]),
    "pad_widths_and_value": (lambda x: xpx.pad(x, ((1, 0), (0, 2)), constant_values=1.5), [A]),
    "create_diagonal": (lambda x: xpx.create_diagonal(x), [V]),
    "create_diagonal_offset": (lambda x: xpx.create_diagonal(x, offset=-1), [V]),
    "create_diagonal_batched": (lambda x: xpx.create_diagonal(x, offset=1), [A]),
    "apply_where": (lambda x, y: xpx.apply_where(x > 0, (x, y), lambda a, b: a * b, lambda a, b: a - b * b),
                    [A, A + 2.0]),
    "apply_where_fill_value": (lambda x: xpx.apply_where(x > 0, x, agrad.sqrt, fill_value=0.0), [A]),
    "kron": (lambda x, y: xpx.kron(x, y), [A, B]),
    "kron_1d": (lambda x, y: xpx.kron(x, y), [V, W]),
    "cov": (lambda x: xpx.cov(x), [A]),
    "sinc": (lambda x: xpx.sinc(x), [V]),
    # nan and inf beside x, as constants: made from x (x / 0, x * nan) their derivatives would be
    # 0 * inf = nan, in PyTorch and JAX too. The infinities become the largest floats, which would
    # drown the finite differences: the result without them (their values: xpx's own suite)
    "nan_to_num": (lambda x: _without_infs(xpx.nan_to_num(agrad.concat([x, _specials(x)]))), [W]),
    "nan_to_num_fill_value": (lambda x: _without_infs(xpx.nan_to_num(agrad.concat([x, _specials(x)]),
                                                                     fill_value=2.0)), [W]),
    "expand_dims": (lambda x: _deprecated(xpx.expand_dims)(x, axis=(0, 2)), [A]),
    "atleast_nd": (lambda x: xpx.atleast_nd(x, ndim=4), [A]),
    "atleast_nd_0d": (lambda x: xpx.atleast_nd(agrad.sum(x), ndim=2), [A]),
    # elements of x1 that are in x2 are dropped, the others keep their derivative
    "setdiff1d": (lambda x, y: xpx.setdiff1d(agrad.concat([x, y[:1]]), y, assume_unique=True), [V, W]),
    "nansum": (lambda x: xpx.nansum(x, axis=0), [A]),
    "nanmean": (lambda x: xpx.nanmean(agrad.concat([x, _specials(x)[2:]])), [V]),
    "nanmax": (lambda x: xpx.nanmax(x, axis=1), [A]),
    "nanmin": (lambda x: xpx.nanmin(x), [A]),
    "deg2rad": (lambda x: xpx.deg2rad(x), [A]),
    "rad2deg": (lambda x: xpx.rad2deg(x), [A]),
    "angle": (lambda x: xpx.angle(x), [W]),  # (a jump at 0)
    "partition": (lambda x: xpx.partition(x, 2, axis=1), [A]),
}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_xpx_functions_differentiate_in_both_modes(name, on_backend):
    f, host = FUNCTIONS[name]
    check_both_modes(f, *[on_backend(h) for h in host])


def test_xpx_values_of_functions_without_derivatives(on_backend):
    """broadcast_shapes, nunique, isclose, one_hot, setdiff1d and isin: values, and isclose inside a
    differentiated function (a boolean result carries no derivative, and stops none)."""
    assert _deprecated(xpx.broadcast_shapes)((2, 1), (3,), ()) == (2, 3)
    ints = on_backend(np.array([[1, 1], [0, 2], [2, 2]]), dtype=None)
    assert int(xpx.nunique(ints)) == 3
    x = on_backend(V)
    assert xpx.isclose(x, x + 1e-12).numpy().tolist() == [True] * 4
    assert xpx.isclose(x, on_backend(np.array([0.0, 0.31, -1.2, np.nan]))).numpy().tolist() == \
        [True, False, True, False]
    g = agrad.grad(lambda v: agrad.sum(agrad.where(xpx.isclose(v, agrad.zeros_like(v)), 0.0, v * v)))(x)
    np.testing.assert_allclose(g.numpy(), np.where(V == 0.0, 0.0, 2 * V), rtol=1e-14)
    hot = xpx.one_hot(on_backend(np.array([0, 2, 1]), dtype=None), 3)
    assert hot.numpy().tolist() == np.eye(3)[[0, 2, 1]].tolist()
    assert xpx.setdiff1d(on_backend(np.array([3.0, 1.0, 3.0, 2.0])), on_backend(np.array([2.0]))).numpy().tolist() \
        == [1.0, 3.0]
    assert xpx.isin(x, on_backend(W[:1] * 0 + 0.3)).numpy().tolist() == [False, True, False, False]


def test_xpx_setdiff1d_of_non_unique_values_has_no_derivative(on_backend):
    """Without assume_unique, setdiff1d takes unique values, which agrad does not differentiate: a clear error."""
    x, y = on_backend(V), on_backend(W)
    with pytest.raises(TypeError, match="no derivative"):
        agrad.grad(lambda v: agrad.sum(xpx.setdiff1d(v, y)))(x)
