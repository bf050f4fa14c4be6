"""Differentiable special functions: ``agrad.special``, and ``xp.special`` for array API code.

With ``SCIPY_ARRAY_API=1``, SciPy's ``scipy.special.erf(x)`` (and the others SciPy dispatches
by backend: ``scipy/special/_support_alternative_backends.py``) takes ``xp =
array_namespace(x)``, which is agrad itself for a Tensor, and, finding no SciPy-like
namespace for it (``scipy_namespace_for``: only CuPy, JAX and PyTorch have one), uses
``getattr(xp.special, name)`` when that exists, else a generic array API version where
SciPy has one, else NumPy (which agrad refuses while differentiating). So the functions here,
under SciPy's names (``psi`` is ``digamma``), serve SciPy's special functions on Tensors, and
through them scipy.stats and friends, differentiably.

Every forward is written with the array API standard's functions only, so it runs on every
backend, array-api-strict included: W. J. Cody's rational approximations for erf and erfc,
Cephes' for gammaln, i0e and i1e, recurrence plus asymptotic series for digamma and
polygamma. Every branch is computed on inputs clipped into its range and one is picked with
``where``: the branches not taken neither warn nor leak a nan. Every derivative rule is made of
differentiable functions (d gammaln = digamma, d digamma = polygamma(1, .), d polygamma(n, .) =
polygamma(n + 1, .), d i0e = i1e - sign * i0e, ...), so that derivatives of every order work,
in reverse and forward mode.
"""

from __future__ import annotations

import functools
import math
import operator
import struct
from fractions import Fraction
from typing import Any

from . import dtypes as _dtypes
from . import ops as _ops
from .batching import rules
from .tape import Primitive, primitive
from .tensor import ArrayLike, Tensor

__all__ = ["digamma", "entr", "erf", "erfc", "expit", "gammaln", "i0", "i0e", "i1", "i1e", "kl_div", "logit",
           "ndtr", "polygamma", "psi", "xlog1py", "xlogy"]


def _call(xp: Any, prim: Primitive, *args: Any, **params: Any) -> Any:
    """``prim`` applied inside a derivative rule: recorded (so differentiable again) when the
    rule runs on Tensors with agrad's namespace, a plain computation on raw arrays otherwise."""
    if xp is _ops:
        return prim(*args, **params)
    return prim.forward(xp, *args, **params)


def _polevl(x: Any, coefficients: tuple) -> Any:
    """The polynomial with these coefficients (highest degree first) at x, by Horner's rule."""
    r = x * coefficients[0] + coefficients[1]
    for c in coefficients[2:]:
        r = r * x + c
    return r


def _chbevl(x: Any, coefficients: tuple) -> Any:
    """Cephes' ``chbevl``: a Chebyshev series (Clenshaw's recurrence), x in [-2, 2]."""
    b0, b1, b2 = coefficients[0], 0.0, 0.0
    for c in coefficients[1:]:
        b2 = b1
        b1 = b0
        b0 = x * b1 - b2 + c
    return 0.5 * (b0 - b2)


def _bernoulli(n: int) -> Fraction:
    """The Bernoulli number B_n (n even, n >= 2), exactly, from the standard recurrence."""
    b = [Fraction(1)]
    for m in range(1, n + 1):
        b.append(-sum(math.comb(m + 1, k) * b[k] for k in range(m)) / (m + 1))
    return b[n]


def _floats(*args: Any) -> list:
    """The arguments as Tensors of one real floating dtype on one device: Python numbers take the
    arrays' dtype, integers and booleans become float64 (as in SciPy)."""
    arrays = [a for a in args if hasattr(a, "shape")]
    if not arrays:
        args = tuple(_ops.asarray(a) for a in args)
        arrays = list(args)
    dtype = _ops.result_type(*args)
    if _ops.isdtype(dtype, "complex floating"):
        raise TypeError("agrad.special: complex arguments are not supported")
    if not _ops.isdtype(dtype, "real floating"):
        dtype = _dtypes.ALL["float64"]
    device = arrays[0].device
    return [a if isinstance(a, Tensor) and a.dtype == dtype else _ops.asarray(a, dtype=dtype, device=device)
            for a in args]


# --------------------------------------------------------------------------- erf, erfc, ndtr
# W. J. Cody, "Rational Chebyshev approximations for the error function", Math. Comp. 23
# (1969) 631-638, as in his SPECFUN CALERF: erf on |x| <= 0.46875, erfc on (0.46875, 4] and
# above 4. erfc of a large x is exp(-x^2) times a rational function: no early underflow.

_ERF_A = (1.85777706184603153e-1, 3.16112374387056560e0, 1.13864154151050156e2, 3.77485237685302021e2,
          3.20937758913846947e3)
_ERF_B = (1.0, 2.36012909523441209e1, 2.44024637934444173e2, 1.28261652607737228e3, 2.84423683343917062e3)
_ERFC_C = (2.15311535474403846e-8, 5.64188496988670089e-1, 8.88314979438837594e0, 6.61191906371416295e1,
           2.98635138197400131e2, 8.81952221241769090e2, 1.71204761263407058e3, 2.05107837782607147e3,
           1.23033935479799725e3)
_ERFC_D = (1.0, 1.57449261107098347e1, 1.17693950891312499e2, 5.37181101862009858e2, 1.62138957456669019e3,
           3.29079923573345963e3, 4.36261909014324716e3, 3.43936767414372164e3, 1.23033935480374942e3)
_ERFC_P = (1.63153871373020978e-2, 3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
           1.60837851487422766e-2, 6.58749161529837803e-4)
_ERFC_Q = (1.0, 2.56852019228982242e0, 1.87295284992346047e0, 5.27905102951428412e-1, 6.05183413124413191e-2,
           2.33520497626869185e-3)
_INV_SQRT_PI = 5.6418958354775628695e-1
_ERF_SPLIT = 0.46875


def _erf_small(xp: Any, x: Any) -> Any:
    """erf(x) for |x| <= 0.46875 (x clipped there by the caller)."""
    z = x * x
    return x * _polevl(z, _ERF_A) / _polevl(z, _ERF_B)


def _erfc_large(xp: Any, y: Any) -> Any:
    """erfc(y) for y > 0.46875."""
    y2 = xp.clip(y, _ERF_SPLIT, 4.0)
    mid = _polevl(y2, _ERFC_C) / _polevl(y2, _ERFC_D)
    y3 = xp.clip(y, 4.0, 28.0)  # erfc(28) underflows to 0 in float64 already; inf would make nan below
    z = 1.0 / (y3 * y3)
    tail = (_INV_SQRT_PI - z * _polevl(z, _ERFC_P) / _polevl(z, _ERFC_Q)) / y3
    ys = xp.clip(y, _ERF_SPLIT, 28.0)
    # exp(-y^2) as exp(-a^2) exp(-(y - a)(y + a)) with a = y rounded down to 1/16 (Cody): the
    # rounding error of y * y would otherwise be amplified by y^2 in the exponential.
    a = xp.trunc(ys * 16.0) / 16.0
    return xp.exp(-a * a) * xp.exp(-(ys - a) * (ys + a)) * xp.where(y <= 4.0, mid, tail)


def _erf_forward(xp: Any, x: Any) -> Any:
    y = xp.abs(x)
    small = y <= _ERF_SPLIT
    inner = _erf_small(xp, xp.where(small, x, 0.0))
    outer = 1.0 - _erfc_large(xp, y)
    return xp.where(small, inner, xp.where(x < 0, -outer, outer))


_TWO_OVER_SQRT_PI = 2.0 * _INV_SQRT_PI
erf_p = primitive("erf", _erf_forward, vjp=[lambda xp, g, ans, x: g * _TWO_OVER_SQRT_PI * xp.exp(-x * x)],
                  jvp=[lambda xp, t, ans, x: t * _TWO_OVER_SQRT_PI * xp.exp(-x * x)], saves=[(0,)],
                  batch=rules.elementwise)


def erf(x: ArrayLike, /) -> Tensor:
    """The error function 2/sqrt(pi) * integral_0^x exp(-t^2) dt (W. J. Cody's approximation)."""
    (x,) = _floats(x)
    return erf_p(x)


def _erfc_forward(xp: Any, x: Any) -> Any:
    y = xp.abs(x)
    small = y <= _ERF_SPLIT
    inner = 1.0 - _erf_small(xp, xp.where(small, x, 0.0))
    outer = _erfc_large(xp, y)
    return xp.where(small, inner, xp.where(x < 0, 2.0 - outer, outer))


erfc_p = primitive("erfc", _erfc_forward, vjp=[lambda xp, g, ans, x: g * -_TWO_OVER_SQRT_PI * xp.exp(-x * x)],
                   jvp=[lambda xp, t, ans, x: t * -_TWO_OVER_SQRT_PI * xp.exp(-x * x)], saves=[(0,)],
                   batch=rules.elementwise)


def erfc(x: ArrayLike, /) -> Tensor:
    """The complementary error function 1 - erf(x), accurate in the tail (no early underflow)."""
    (x,) = _floats(x)
    return erfc_p(x)


def ndtr(x: ArrayLike, /) -> Tensor:
    """The standard normal distribution function, 0.5 * erfc(-x / sqrt(2)) (as Cephes computes it:
    accurate in the lower tail); its derivative is the normal density."""
    (x,) = _floats(x)
    return 0.5 * erfc_p(x * -0.70710678118654752440)


# --------------------------------------------------------------------------- gammaln
# Cephes lgam (S. L. Moshier): a rational approximation of log Gamma(2 + t), t in [0, 1),
# reached by the recurrence below 13 (which keeps the zeros at 1 and 2 accurate); Stirling's
# series above 13; the reflection formula for negative x.

_LG_A = (8.11614167470508450300e-4, -5.95061904284301438324e-4, 7.93650340457716943945e-4,
         -2.77777777730099687205e-3, 8.33333333333331927722e-2)
_LG_B = (-1.37825152569120859100e3, -3.88016315134637840924e4, -3.31612992738871184744e5,
         -1.16237097492762307383e6, -1.72173700820839662146e6, -8.53555664245765465627e5)
_LG_C = (1.0, -3.51815701436523470549e2, -1.70642106651881159223e4, -2.20528590553854454839e5,
         -1.13933444367982507207e6, -2.53252307177582951285e6, -2.01889141433532773231e6)
# log Gamma(2 + e) = (1 - gamma) e + sum_{k>=2} (-1)^k (zeta(k) - 1) / k e^k, highest power first
# (the coefficients of e^16 ... e^1, computed with mpmath at 50 digits); |e| < 0.2 needs 16.
_LG_AT_2 = (9.55141213040742e-07, -2.039215753801366e-06, 4.374866789907488e-06, -9.439488275268397e-06,
            2.050721277567069e-05, -4.492623673813314e-05, 9.945751278180853e-05, -0.00022315475845357939,
            0.0005096695247430425, -0.001192753911703261, 0.0028905103307415234, -0.007385551028673986,
            0.020580808427784546, -0.0673523010531981, 0.3224670334241132, 0.42278433509846713)
_LOG_SQRT_2PI = 0.91893853320467274178
_LOG_PI = 1.14472988584940017414


def _sinpi_abs(xp: Any, x: Any) -> Any:
    """|sin(pi x)|, with the argument reduced exactly (x - round(x) has no rounding error)."""
    return xp.abs(xp.sin(math.pi * (x - xp.round(x))))


def _gammaln_positive(xp: Any, w: Any) -> Any:
    """log Gamma(w) for w >= 0 (inf at 0)."""
    ws = xp.clip(w, 0.0, 13.0)
    f = xp.floor(ws)
    t = ws - f  # exact
    n = f - 2.0  # Gamma(w) = Gamma(2 + t) (2 + t) (3 + t) ... (n + 1 + t) for n >= 0
    prod = xp.ones_like(t)
    for k in range(10):
        prod = prod * xp.where(n > k, t + (2.0 + k), 1.0)
    ts = xp.where(t > 0, t, 1.0)
    # Below 2 the recurrence divides: by 1 + t on [1, 2), by t (1 + t) on [0, 1); log1p(t)
    # keeps log Gamma(1 + t) relatively accurate near its zero at 1.
    shift = xp.where(n >= 0, xp.log(prod), xp.where(n == -1, -xp.log1p(t), -xp.log(ts) - xp.log1p(t)))
    small = shift + t * _polevl(t, _LG_B) / _polevl(t, _LG_C)
    fmax = float(xp.finfo(w.dtype).max)
    big = fmax / math.log(fmax / math.log(fmax))  # just below where w (log w - 1) overflows
    wl = xp.clip(w, 13.0, big)
    inv = 1.0 / wl
    log_w = xp.log(wl)
    large = wl * (log_w - 1.0) + (_LOG_SQRT_2PI - 0.5 * log_w + _polevl(inv * inv, _LG_A) * inv)
    out = xp.where(w < 13.0, small, large)
    # Just below 1 and 2 the recurrence above cancels: the Taylor series of log Gamma(2 + e)
    # instead, with log Gamma(1 + e) = log Gamma(2 + e) - log1p(e). (w - 2 and w - 1 are exact.)
    near2 = (w > 1.8) & (w < 2.0)
    near1 = (w > 0.8) & (w < 1.0)
    e = xp.where(near2, w - 2.0, xp.where(near1, w - 1.0, 0.0))
    series = e * _polevl(e, _LG_AT_2)
    out = xp.where(near2, series, xp.where(near1, series - xp.log1p(e), out))
    return xp.where((w > big) | (w == 0), math.inf, out)


def _gammaln_forward(xp: Any, x: Any) -> Any:
    # On (-1, 0) the recurrence, log|Gamma(x)| = log Gamma(x + 1) - log(-x): the reflection's
    # sin(pi x) would lose the digits of a subnormal x. Below -1 the reflection formula,
    # log|Gamma(x)| = log(pi) - log|sin(pi x)| - log Gamma(1 - x); inf at the poles x = 0, -1, ...
    neg = x < 0
    near = neg & (x > -1.0)
    pos = _gammaln_positive(xp, xp.where(near, x + 1.0, xp.where(neg, 1.0 - x, x)))
    recurrence = pos - xp.log(xp.where(near, -x, 1.0))
    s = _sinpi_abs(xp, xp.where(neg & xp.isfinite(x), x, 0.5))
    reflected = xp.where(s > 0, _LOG_PI - xp.log(xp.where(s > 0, s, 1.0)) - pos, math.inf)
    out = xp.where(near, recurrence, xp.where(neg, reflected, pos))
    return xp.where(x == -math.inf, -math.inf, out)


gammaln_p = primitive(
    "gammaln", _gammaln_forward,
    vjp=[lambda xp, g, ans, x: g * _call(xp, polygamma_p, x, n=0)],
    jvp=[lambda xp, t, ans, x: t * _call(xp, polygamma_p, x, n=0)], saves=[(0,)],
    batch=rules.elementwise,
)


def gammaln(x: ArrayLike, /) -> Tensor:
    """log|Gamma(x)| for real x (inf at 0, -1, -2, ...); its derivative is digamma."""
    (x,) = _floats(x)
    return gammaln_p(x)


# --------------------------------------------------------------------------- digamma, polygamma
# psi(x) = psi(x + N) - sum_{k<N} 1/(x + k), then the asymptotic series at x + N >= 10;
# psi^(n)(x) = (-1)^(n+1) n! zeta(n + 1, x), the Hurwitz zeta by Euler-Maclaurin summation.
# Negative x: the reflection formula psi(1 - x) - psi(x) = pi cot(pi x), differentiated n times.

_PSI_SHIFT = 10
# psi(s) ~ log(s) - 1/(2s) - sum_k B_2k / (2k s^2k): the sum's coefficients in z = 1/s^2, highest first
_PSI_SERIES = tuple(float(_bernoulli(2 * k) / (2 * k)) for k in range(8, 0, -1))


# Near psi's zeros the formulas above cancel (psi is a difference of numbers near 2): its Taylor
# series there instead, psi(r + d) = sum_k psi^(k)(r) / k! d^k (mpmath, 50 digits), as SciPy
# does at the negative zero. The zero r = hi + lo in two doubles, the radius where the series is
# used in float64 and in float32 (wider: the cancellation costs more of float32's digits, and fewer
# terms suffice), the coefficients of d^K ... d^1.
_PSI_ROOTS = (
    (1.4616321449683622, 9.549995429965697e-17, 0.1, 0.3, (
        0.002305126326734928, -0.003369801655439328, 0.004926781395729853, -0.007204534386356869,
        0.010538791616612175, -0.01542476590494896, 0.022597648232218104, -0.03316112647484736,
        0.04880428816414311, -0.07219956125645471, 0.10782405069126237, -0.16394270544240652,
        0.258499760955651, -0.4427631689835921, 0.9676722454476212)),
    (-0.5040830082644554, -8.15428206243813e-18, 0.05, 0.15, (
        530280.3912420176, -36529.94596948565, 132262.95480834588, -8051.818155363498, 32997.785655255044,
        -1743.364608867363, 8234.667099203069, -368.5783503832191, 2055.5357119463315, -75.37700066344631,
        513.2704629562862, -14.70672173553036, 128.27342343090902, -2.761011648790828, 32.258572064915505,
        -0.8093454625306507, 8.939798558792134)),
)


def _at_digamma_roots(xp: Any, x: Any, out: Any) -> Any:
    single = x.dtype == xp.float32
    for hi, lo, radius64, radius32, coefficients in _PSI_ROOTS:
        a = struct.unpack("f", struct.pack("f", hi))[0] if single else hi  # exact in x's dtype
        d = (x - a) - ((hi - a) + lo)
        near = xp.abs(d) < (radius32 if single else radius64)
        d = xp.where(near, d, 0.0)
        out = xp.where(near, d * _polevl(d, coefficients), out)
    return out


def _digamma_positive(xp: Any, w: Any) -> Any:
    """psi(w) for w > 0."""
    acc = 1.0 / w
    for k in range(1, _PSI_SHIFT):
        acc = acc + 1.0 / (w + float(k))
    s = w + float(_PSI_SHIFT)
    inv = 1.0 / s
    z = inv * inv
    return xp.log(s) - 0.5 * inv - z * _polevl(z, _PSI_SERIES) - acc


@functools.lru_cache(maxsize=None)
def _zeta_plan(s: int) -> tuple[int, tuple]:
    """For the Hurwitz zeta(s, x), s >= 2: the number N of terms summed directly and the
    Euler-Maclaurin coefficients B_2j / (2j)! s (s + 1) ... (s + 2j - 2), j = 1..10, highest first.
    N grows with s until the first term left out is below 1e-17 of the result."""
    terms = 10
    coefficients = []
    rising = Fraction(s)
    for j in range(1, terms + 2):
        coefficients.append(_bernoulli(2 * j) / math.factorial(2 * j) * rising)
        rising *= (s + 2 * j - 1) * (s + 2 * j)
    first_left_out = abs(float(coefficients.pop()))
    n = 10
    while first_left_out * (s - 1) * float(n) ** (-2 * terms - 2) > 1e-17:
        n += 1
    return n, tuple(float(c) for c in reversed(coefficients))


def _hurwitz_zeta_positive(xp: Any, w: Any, s: int) -> Any:
    """zeta(s, w) = sum_k (w + k)^-s for integer s >= 2 and w > 0."""
    n, coefficients = _zeta_plan(s)
    acc = w ** -s
    for k in range(1, n):
        acc = acc + (w + float(k)) ** -s
    a = w + float(n)
    inv = 1.0 / a
    tail = inv ** (s - 1) / (s - 1) + 0.5 * inv ** s + inv ** (s + 1) * _polevl(inv * inv, coefficients)
    return acc + tail


@functools.lru_cache(maxsize=None)
def _cot_derivative(n: int) -> tuple:
    """The polynomial P_n (coefficients highest first) with d^n/dx^n cot(pi x) = pi^n P_n(cot(pi x)):
    P_0(c) = c and P_{m+1}(c) = -(1 + c^2) P_m'(c), since d/dx cot(pi x) = -pi (1 + cot(pi x)^2)."""
    p = [0, 1]  # lowest degree first
    for _ in range(n):
        d = [k * p[k] for k in range(1, len(p))] or [0]
        q = [0] * (len(d) + 2)
        for k, c in enumerate(d):
            q[k] -= c
            q[k + 2] -= c
        p = q
    return tuple(float(c) for c in reversed(p))


def _cotpi(xp: Any, r: Any) -> Any:
    """cot(pi r) for 0 < |r| <= 1/2: as tan(pi (1/2 - |r|)) for |r| > 1/4, where 1/2 - |r| is exact,
    so that cot is exactly 0 at the half-integers (1 / tan(pi / 2) is 6e-17, which the n-th
    derivative's reflection term would amplify)."""
    a = xp.abs(r)
    near_pole = 1.0 / xp.tan(math.pi * xp.minimum(a, 0.25))
    far = xp.tan(math.pi * (0.5 - xp.maximum(a, 0.25)))
    c = xp.where(a <= 0.25, near_pole, far)
    return xp.where(r < 0, -c, c)


def _polygamma_forward(xp: Any, x: Any, n: int = 0) -> Any:
    neg = x < 0
    w = xp.where(neg, 1.0 - x, xp.where(x == 0, 1.0, x))
    if n == 0:
        pos = _at_digamma_roots(xp, w, _digamma_positive(xp, w))
    else:
        pos = (-1.0) ** (n + 1) * math.factorial(n) * _hurwitz_zeta_positive(xp, w, n + 1)
    # psi^(n)(x) = (-1)^n psi^(n)(1 - x) - pi^(n+1) P_n(cot(pi x)) for x < 0
    xn = xp.where(neg & xp.isfinite(x), x, -0.25)
    r = xn - xp.round(xn)  # cot has period pi: cot(pi x) = cot(pi r), and r is exact
    pole = r == 0
    value = _polevl(_cotpi(xp, xp.where(pole, 0.25, r)), _cot_derivative(n))
    reflected = (-1.0) ** n * pos - math.pi ** (n + 1) * value
    # At the poles: psi(+0) = -inf, psi(-0) = +inf, psi(-1, -2, ...) = nan (SciPy); for n >= 1
    # the pole is (-1)^(n+1) inf; psi^(n)(-inf) likewise (nan for n == 0).
    pole_value = (-1.0) ** (n + 1) * math.inf
    if n == 0:
        at_zero = xp.where(xp.signbit(x), math.inf, xp.full_like(x, -math.inf))
        at_poles = xp.where(x == 0, at_zero, math.nan)
    else:
        at_poles = xp.full_like(x, pole_value)
    out = xp.where(neg, xp.where(pole, at_poles, reflected), pos)
    if n == 0:
        out = _at_digamma_roots(xp, x, out)
    out = xp.where(x == 0, at_poles, out)
    return xp.where(x == -math.inf, at_poles if n else math.nan, out)


polygamma_p = primitive(
    "polygamma", _polygamma_forward,
    vjp=[lambda xp, g, ans, x, n=0: g * _call(xp, polygamma_p, x, n=n + 1)],
    jvp=[lambda xp, t, ans, x, n=0: t * _call(xp, polygamma_p, x, n=n + 1)], saves=[(0,)],
    batch=rules.elementwise,
)
polygamma_p.__doc__ = "The agrad primitive 'polygamma': psi^(n)(x), n a static parameter (n = 0: digamma)."


def digamma(x: ArrayLike, /) -> Tensor:
    """The digamma function psi(x) = d/dx log Gamma(x) (nan at -1, -2, ..., -inf at +0)."""
    (x,) = _floats(x)
    return polygamma_p(x, n=0)


psi = digamma  # SciPy's name: scipy.special.psi (and digamma) look up xp.special.psi


def _order(n: Any) -> int:
    try:
        order = operator.index(n)
    except TypeError:
        shape = getattr(n, "shape", None)
        if shape is None or math.prod(shape) != 1:
            raise TypeError("agrad.special.polygamma: the order n must be one non-negative integer (a Python int "
                            f"or a one-element integer array), not {n!r}") from None
        order = int(n)
    if order < 0:
        raise ValueError(f"agrad.special.polygamma: the order n must be >= 0, not {order}")
    return order


def polygamma(n: Any, x: ArrayLike, /) -> Tensor:
    """The n-th derivative of digamma, psi^(n)(x), for one integer order n >= 0 (a Python int, read
    when the call is made); its derivative in x is polygamma(n + 1, x)."""
    (x,) = _floats(x)
    return polygamma_p(x, n=_order(n))


# --------------------------------------------------------------------------- i0e, i0, i1e, i1
# Cephes i0e and i1e: Chebyshev series in x/2 - 2 on [0, 8] and in 32/x - 2 above.

_I0E_A = (-4.41534164647933937950e-18, 3.33079451882223809783e-17, -2.43127984654795469359e-16,
          1.71539128555513303061e-15, -1.16853328779934516808e-14, 7.67618549860493561688e-14,
          -4.85644678311192946090e-13, 2.95505266312963983461e-12, -1.72682629144155570723e-11,
          9.67580903537323691224e-11, -5.18979560163526290666e-10, 2.65982372468238665035e-9,
          -1.30002500998624804212e-8, 6.04699502254191894932e-8, -2.67079385394061173391e-7,
          1.11738753912010371815e-6, -4.41673835845875056359e-6, 1.64484480707288970893e-5,
          -5.75419501008210370398e-5, 1.88502885095841655729e-4, -5.76375574538582365885e-4,
          1.63947561694133579842e-3, -4.32430999505057594430e-3, 1.05464603945949983183e-2,
          -2.37374148058994688156e-2, 4.93052842396707084878e-2, -9.49010970480476444210e-2,
          1.71620901522208775349e-1, -3.04682672343198398683e-1, 6.76795274409476084995e-1)
_I0E_B = (-7.23318048787475395456e-18, -4.83050448594418207126e-18, 4.46562142029675999901e-17,
          3.46122286769746109310e-17, -2.82762398051658348494e-16, -3.42548561967721913462e-16,
          1.77256013305652638360e-15, 3.81168066935262242075e-15, -9.55484669882830764870e-15,
          -4.15056934728722208663e-14, 1.54008621752140982691e-14, 3.85277838274214270114e-13,
          7.18012445138366623367e-13, -1.79417853150680611778e-12, -1.32158118404477131188e-11,
          -3.14991652796324136454e-11, 1.18891471078464383424e-11, 4.94060238822496958910e-10,
          3.39623202570838634515e-9, 2.26666899049817806459e-8, 2.04891858946906374183e-7,
          2.89137052083475648297e-6, 6.88975834691682398426e-5, 3.36911647825569408990e-3,
          8.04490411014108831608e-1)
_I1E_A = (2.77791411276104639959e-18, -2.11142121435816608115e-17, 1.55363195773620046921e-16,
          -1.10559694773538630805e-15, 7.60068429473540693410e-15, -5.04218550472791168711e-14,
          3.22379336594557470981e-13, -1.98397439776494371520e-12, 1.17361862988909016308e-11,
          -6.66348972350202774223e-11, 3.62559028155211703701e-10, -1.88724975172282928790e-9,
          9.38153738649577178388e-9, -4.44505912879632808065e-8, 2.00329475355213526229e-7,
          -8.56872026469545474066e-7, 3.47025130813767847674e-6, -1.32731636560394358279e-5,
          4.78156510755005422638e-5, -1.61760815825896745588e-4, 5.12285956168575772895e-4,
          -1.51357245063125314899e-3, 4.15642294431288815669e-3, -1.05640848946261981558e-2,
          2.47264490306265168283e-2, -5.29459812080949914269e-2, 1.02643658689847095384e-1,
          -1.76416518357834055153e-1, 2.52587186443633654823e-1)
_I1E_B = (7.51729631084210481353e-18, 4.41434832307170791151e-18, -4.65030536848935832153e-17,
          -3.20952592199342395980e-17, 2.96262899764595013876e-16, 3.30820231092092828324e-16,
          -1.88035477551078244854e-15, -3.81440307243700780478e-15, 1.04202769841288027642e-14,
          4.27244001671195135429e-14, -2.10154184277266431302e-14, -4.08355111109219731823e-13,
          -7.19855177624590851209e-13, 2.03562854414708950722e-12, 1.41258074366137813316e-11,
          3.25260358301548823856e-11, -1.89749581235054123450e-11, -5.58974346219658380687e-10,
          -3.83538038596423702205e-9, -2.63146884688951950684e-8, -2.51223623787020892529e-7,
          -3.88256480887769039346e-6, -1.10588938762623716291e-4, -9.76109749136146840777e-3,
          7.78576235018280120474e-1)


def _bessel_scaled(xp: Any, x: Any, small: tuple, large: tuple, odd: bool) -> Any:
    y = xp.abs(x)
    y1 = xp.minimum(y, 8.0)
    inner = _chbevl(y1 * 0.5 - 2.0, small)
    if odd:
        inner = inner * y1
    y2 = xp.maximum(y, 8.0)  # (inf gives 32/inf = 0 and 1/sqrt(inf) = 0: the limit, 0)
    outer = _chbevl(32.0 / y2 - 2.0, large) / xp.sqrt(y2)
    out = xp.where(y <= 8.0, inner, outer)
    return xp.where(x < 0, -out, out) if odd else out


i0e_p = primitive(
    "i0e", lambda xp, x: _bessel_scaled(xp, x, _I0E_A, _I0E_B, odd=False),
    vjp=[lambda xp, g, ans, x: g * (_call(xp, i1e_p, x) - xp.sign(x) * ans)],
    jvp=[lambda xp, t, ans, x: t * (_call(xp, i1e_p, x) - xp.sign(x) * ans)], saves=[(0, "out")],
    batch=rules.elementwise,
)


def i0e(x: ArrayLike, /) -> Tensor:
    """The exponentially scaled modified Bessel function of order 0, ``exp(-abs(x)) * I0(x)``."""
    (x,) = _floats(x)
    return i0e_p(x)


def _unscaled(scaled: Tensor, x: Tensor) -> Tensor:
    # scaled * exp(|x|) as two half steps: exp(|x|) alone overflows before the product does
    half = _ops.exp(_ops.abs(x) * 0.5)
    return scaled * half * half


def i0(x: ArrayLike, /) -> Tensor:
    """The modified Bessel function of order 0, ``I0(x) = i0e(x) * exp(abs(x))``."""
    (x,) = _floats(x)
    return _unscaled(i0e_p(x), x)


def _i1e_over_x(xp: Any, x: Any, i1e_x: Any) -> Any:
    """i1e(x) / x, with its limit 1/2 at 0."""
    zero = x == 0
    return xp.where(zero, 0.5, i1e_x / xp.where(zero, 1.0, x))


def _i1e_derivative(xp: Any, ans: Any, x: Any) -> Any:
    # d/dx exp(-|x|) I1(x) = exp(-|x|) (I0(x) - I1(x)/x) - sign(x) exp(-|x|) I1(x)
    return _call(xp, i0e_p, x) - _i1e_over_x(xp, x, ans) - xp.sign(x) * ans


i1e_p = primitive(
    "i1e", lambda xp, x: _bessel_scaled(xp, x, _I1E_A, _I1E_B, odd=True),
    vjp=[lambda xp, g, ans, x: g * _i1e_derivative(xp, ans, x)],
    jvp=[lambda xp, t, ans, x: t * _i1e_derivative(xp, ans, x)], saves=[(0, "out")],
    batch=rules.elementwise,
)


def i1e(x: ArrayLike, /) -> Tensor:
    """The exponentially scaled modified Bessel function of order 1, ``exp(-abs(x)) * I1(x)``."""
    (x,) = _floats(x)
    return i1e_p(x)


def i1(x: ArrayLike, /) -> Tensor:
    """The modified Bessel function of order 1, ``I1(x) = i1e(x) * exp(abs(x))``."""
    (x,) = _floats(x)
    return _unscaled(i1e_p(x), x)


# --------------------------------------------------------------------------- entr, logit, expit, xlogy, xlog1py, kl_div


def _entr_forward(xp: Any, x: Any) -> Any:
    xs = xp.where(x > 0, x, 1.0)  # (-inf * log(1) would warn)
    r = -xs * xp.log(xs)  # entr(inf) = -inf
    return xp.where(x < 0, -math.inf, xp.where(x == 0, 0.0, xp.where(xp.isnan(x), x, r)))


def _entr_derivative(xp: Any, x: Any) -> Any:
    # -(log x + 1); +inf at 0 (the one-sided derivative, as PyTorch); 0 where entr is -inf
    inner = -(xp.log(xp.where(x > 0, x, 1.0)) + 1.0)
    return xp.where(x > 0, inner, xp.where(x == 0, math.inf, xp.zeros_like(x)))


entr_p = primitive("entr", _entr_forward, vjp=[lambda xp, g, ans, x: g * _entr_derivative(xp, x)],
                   jvp=[lambda xp, t, ans, x: t * _entr_derivative(xp, x)], saves=[(0,)], batch=rules.elementwise)


def entr(x: ArrayLike, /) -> Tensor:
    """The elementwise entropy -x log(x): 0 at 0, -inf for x < 0. Its derivative at 0 is +inf."""
    (x,) = _floats(x)
    return entr_p(x)


def _logit_forward(xp: Any, x: Any) -> Any:
    inside = (x > 0) & (x < 1)
    xs = xp.where(inside, x, 0.5)
    # Near 1/2, log1p of (2x - 1)/(1 - x) (both exact there) keeps the small result relatively accurate.
    xm = xp.clip(xs, 0.25, 0.75)
    near_half = xp.log1p((2.0 * xm - 1.0) / (1.0 - xm))
    far = xp.log(xs / (1.0 - xs))
    value = xp.where(xp.abs(xs - 0.5) < 0.25, near_half, far)
    edges = xp.where(x == 0, -math.inf, xp.where(x == 1, math.inf, xp.full_like(x, math.nan)))
    return xp.where(inside, value, edges)


logit_p = primitive("logit", _logit_forward, vjp=[lambda xp, g, ans, x: g / (x * (1.0 - x))],
                    jvp=[lambda xp, t, ans, x: t / (x * (1.0 - x))], saves=[(0,)], batch=rules.elementwise)


def logit(x: ArrayLike, /) -> Tensor:
    """log(x / (1 - x)), the inverse of expit: -inf at 0, inf at 1, nan outside [0, 1]."""
    (x,) = _floats(x)
    return logit_p(x)


def expit(x: ArrayLike, /) -> Tensor:
    """The logistic sigmoid 1 / (1 + exp(-x)), without overflow for any x (agrad.sigmoid)."""
    (x,) = _floats(x)
    return _ops.sigmoid(x)


def _x_log_forward(log_fn: str, lowest: float):
    """x * log(y) (x * log1p(y)) with 0 where x == 0 unless y is nan, as SciPy's xlogy (xlog1py);
    ``lowest`` is where the log is -inf (0, -1), below it nan. No warnings from the branches not taken."""

    def forward(xp: Any, x: Any, y: Any) -> Any:
        ok = y > lowest
        log = getattr(xp, log_fn)(xp.where(ok, y, lowest + 1.0))
        log = xp.where(ok, log, xp.where(y == lowest, -math.inf, xp.full_like(y, math.nan)))
        log = xp.where(x == 0, xp.where(xp.isnan(y), y, 0.0), log)  # (never 0 * inf)
        return x * log

    return forward


def _x_log_vjps(prim_name: str, shift: float):
    """The derivatives of x * log(y + shift): log(y + shift) in x (0 where x == 0 and y + shift <= 0,
    as PyTorch), x / (y + shift) in y (0 where x == 0: the function is 0 there for every y)."""

    def d_x(xp: Any, g: Any, ans: Any, x: Any, y: Any) -> Any:
        return xp.where((x == 0) & (y + shift <= 0), 0.0, _call(xp, _X_LOG[prim_name], g, y))

    def d_y(xp: Any, g: Any, ans: Any, x: Any, y: Any) -> Any:
        zero = x == 0
        return xp.where(zero, 0.0, g * x / (xp.where(zero, 1.0, y) + shift))

    return d_x, d_y


_X_LOG: dict[str, Primitive] = {}
for _name, _log_fn, _lowest in (("xlogy", "log", 0.0), ("xlog1py", "log1p", -1.0)):
    _d_x, _d_y = _x_log_vjps(_name, -_lowest)
    _X_LOG[_name] = primitive(_name, _x_log_forward(_log_fn, _lowest), vjp=[_d_x, _d_y], elementwise=True,
                              saves=[(0, 1), (0, 1)])
xlogy_p, xlog1py_p = _X_LOG["xlogy"], _X_LOG["xlog1py"]


def xlogy(x: ArrayLike, y: ArrayLike, /) -> Tensor:
    """x * log(y), and 0 where x == 0 (unless y is nan), with broadcasting."""
    x, y = _floats(x, y)
    return xlogy_p(x, y)


def xlog1py(x: ArrayLike, y: ArrayLike, /) -> Tensor:
    """x * log1p(y), and 0 where x == 0 (unless y is nan), with broadcasting."""
    x, y = _floats(x, y)
    return xlog1py_p(x, y)


def kl_div(x: ArrayLike, y: ArrayLike, /) -> Tensor:
    """x log(x / y) - x + y where x, y > 0; y where x == 0 and y >= 0; inf elsewhere (nan for nan)."""
    x, y = _floats(x, y)
    both = (x > 0) & (y > 0)
    xs, ys = _ops.where(both, x, 1.0), _ops.where(both, y, 1.0)  # (no nan from the branch not taken)
    inner = xs * _ops.log(xs / ys) - xs + ys
    out = _ops.where(both, inner, _ops.where((x == 0) & (y >= 0), y, math.inf))
    return _ops.where(_ops.isnan(x) | _ops.isnan(y), math.nan, out)
