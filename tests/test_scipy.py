"""SciPy's array-API functions on agrad Tensors: values, and derivatives in both modes.

With ``SCIPY_ARRAY_API=1`` (tests/conftest.py sets it before SciPy is imported), SciPy takes
``xp = array_namespace(x)``, agrad for a Tensor, and computes with it: its vendored
array-api-extra writes in place (``at(x, mask).set(...)``), its special functions look up
``xp.special.<name>`` (agrad.special). Each function below is compared with SciPy's NumPy
result, then differentiated through agrad in reverse mode (agrad.check_grad, every element),
forward mode (agrad.jvp) and the pairing of the two, against central differences in float64
(tests/checks.py), on every backend.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

import agrad

from .checks import check_both_modes

scipy = pytest.importorskip("scipy", minversion="1.17", reason="SciPy >= 1.17 is the client tested here")
special = pytest.importorskip("scipy.special")
stats = pytest.importorskip("scipy.stats")
integrate = pytest.importorskip("scipy.integrate")
optimize = pytest.importorskip("scipy.optimize")

RNG = np.random.default_rng(11)
POS = RNG.uniform(0.2, 2.0, (3, 4))  # positive: entropies, means, logs
ANY = RNG.standard_normal((3, 4))
UNIT = RNG.uniform(0.05, 0.95, (3, 4))  # inside (0, 1): logit
PROBS = RNG.uniform(0.1, 1.0, (2, 5))

# name -> (function of Tensors or arrays, host inputs). Each runs the same code on NumPy arrays
# (the reference values) and on agrad Tensors.
FUNCTIONS = {
    # scipy.special: the functions SciPy finds in xp.special, and its generic array API ones
    "special.erf": (special.erf, [ANY]),
    "special.erfc": (special.erfc, [ANY]),
    "special.expit": (special.expit, [ANY]),
    "special.logit": (special.logit, [UNIT]),
    "special.ndtr": (special.ndtr, [ANY]),
    "special.entr": (special.entr, [POS]),
    "special.xlogy": (special.xlogy, [ANY, POS]),
    "special.xlog1py": (special.xlog1py, [ANY, POS]),
    "special.gammaln": (special.gammaln, [POS * 3]),
    "special.psi": (special.psi, [POS * 3]),
    "special.i0e": (special.i0e, [ANY * 3]),
    "special.i1e": (special.i1e, [ANY * 3]),
    "special.rel_entr": (special.rel_entr, [PROBS[0], PROBS[1]]),  # (at().set inside)
    "special.kl_div": (special.kl_div, [PROBS[0], PROBS[1]]),
    "special.logsumexp": (lambda x: special.logsumexp(x, axis=1), [ANY]),
    "special.softmax": (lambda x: special.softmax(x, axis=0), [ANY]),
    "special.log_softmax": (lambda x: special.log_softmax(x, axis=1), [ANY]),
    # scipy.stats
    "stats.entropy": (lambda p: stats.entropy(p, axis=1), [PROBS]),
    "stats.entropy_relative": (lambda p, q: stats.entropy(p, q), [PROBS[0], PROBS[1]]),
    "stats.zscore": (lambda x: stats.zscore(x, axis=1), [ANY]),
    "stats.moment": (lambda x: stats.moment(x, 3, axis=1), [ANY]),
    "stats.skew": (lambda x: stats.skew(x, axis=1), [ANY]),
    "stats.kurtosis": (lambda x: stats.kurtosis(x, axis=0), [ANY]),
    "stats.variation": (lambda x: stats.variation(x, axis=1), [POS]),
    "stats.gmean": (lambda x: stats.gmean(x, axis=1), [POS]),
    "stats.hmean": (lambda x: stats.hmean(x, axis=0), [POS]),
    "stats.pmean": (lambda x: stats.pmean(x, 1.5, axis=1), [POS]),
    "stats.sem": (lambda x: stats.sem(x, axis=1), [ANY]),
    "stats.tmean": (lambda x: stats.tmean(x, (0.3, 1.8)), [POS]),
    "stats.circmean": (lambda x: stats.circmean(x, axis=1), [ANY]),
    # scipy.integrate
    "integrate.trapezoid": (lambda y: integrate.trapezoid(y, axis=1), [ANY]),
    "integrate.trapezoid_x": (lambda y, x: integrate.trapezoid(y, x, axis=1), [ANY, np.cumsum(POS, axis=1)]),
    "integrate.cumulative_trapezoid": (lambda y: integrate.cumulative_trapezoid(y, dx=0.5, axis=1), [ANY]),
    # (dx an array beside y: SciPy makes a scalar dx an array of the default floating dtype, float32 in agrad
    # as in PyTorch, on the default device)
    "integrate.cumulative_simpson": (lambda y, dx: integrate.cumulative_simpson(y, dx=dx, axis=1),
                                     [ANY, POS[:, :1]]),
    # scipy.optimize
    "optimize.rosen": (lambda x: optimize.rosen(x[0]), [ANY]),
}


# SciPy code that creates arrays without device= (on the default device): on another device it mixes
# devices, which agrad refuses (as it would for PyTorch tensors on a second GPU)
DEFAULT_DEVICE_ONLY = {
    "integrate.cumulative_simpson": "SciPy's cumulative_simpson makes its work array with xp.empty(shape, dtype=...), "
                                    "on the default device",
}


def _inputs(name, on_backend):
    if name in DEFAULT_DEVICE_ONLY and on_backend.device is not None:
        pytest.skip(DEFAULT_DEVICE_ONLY[name])
    return [on_backend(h) for h in FUNCTIONS[name][1]]


def _scipy_dispatches_on_tensors() -> None:
    if not isinstance(special.erf(agrad.tensor([0.5])), agrad.Tensor):
        pytest.fail("SciPy returned no Tensor for a Tensor: it was imported before SCIPY_ARRAY_API=1 was set "
                    f"(SCIPY_ARRAY_API={os.environ.get('SCIPY_ARRAY_API')!r}); tests/conftest.py sets it first")


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_values_match_scipy_on_numpy(name, on_backend):
    _scipy_dispatches_on_tensors()
    f, host = FUNCTIONS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        want = np.asarray(f(*host))
        got = f(*_inputs(name, on_backend))
    assert isinstance(got, agrad.Tensor), f"{name} returned {type(got).__name__}, not a Tensor"
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_derivatives_in_both_modes(name, on_backend):
    _scipy_dispatches_on_tensors()
    check_both_modes(FUNCTIONS[name][0], *_inputs(name, on_backend))


def test_a_function_scipy_computes_with_numpy_is_refused_while_differentiating(on_backend):
    """Where SciPy finds neither xp.special.<name> nor a generic version it falls back to NumPy
    (np.asarray of the Tensor): agrad refuses rather than drop the derivative."""
    _scipy_dispatches_on_tensors()
    x = on_backend(POS)
    with pytest.raises(TypeError, match="drop the derivative"):
        agrad.grad(lambda v: agrad.sum(special.erfcx(v)))(x)


def test_logsumexp_with_weights_is_a_clear_error_at_backward_as_in_pytorch(on_backend):
    """SciPy's logsumexp with ``b`` takes the maximum of ``a`` and then updates ``a`` in place
    (``at(a, i_max).set(-inf, copy=None)``): the maximum's derivative needs the old values, so
    backward stops with an error naming max and the update (PyTorch stops there too)."""
    _scipy_dispatches_on_tensors()
    a, b = on_backend(ANY), on_backend(POS)
    np.testing.assert_allclose(special.logsumexp(a, b=b, axis=0).numpy(), special.logsumexp(ANY, b=POS, axis=0),
                               rtol=1e-12)
    with pytest.raises(RuntimeError, match="argument 0 of max .* updated in place by item assignment"):
        agrad.grad(lambda v: agrad.sum(special.logsumexp(v, b=b, axis=0)))(a)
