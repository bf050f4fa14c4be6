"""Inverse trigonometric and hyperbolic functions, atan2 and hypot, each with its VJP
beside it. Elementwise, so each VJP (with the tangent for g) is also the JVP."""

from __future__ import annotations

from ..tape import primitive
from ..tensor import ArrayLike, Tensor

_asin = primitive("asin", lambda xp, x: xp.asin(x), lambda xp, g, ans, x: g / xp.sqrt(1.0 - x * x))
_acos = primitive("acos", lambda xp, x: xp.acos(x), lambda xp, g, ans, x: -g / xp.sqrt(1.0 - x * x))
_atan = primitive("atan", lambda xp, x: xp.atan(x), lambda xp, g, ans, x: g / (1.0 + x * x))
_sinh = primitive("sinh", lambda xp, x: xp.sinh(x), lambda xp, g, ans, x: g * xp.cosh(x))
_cosh = primitive("cosh", lambda xp, x: xp.cosh(x), lambda xp, g, ans, x: g * xp.sinh(x))
_asinh = primitive("asinh", lambda xp, x: xp.asinh(x), lambda xp, g, ans, x: g / xp.sqrt(x * x + 1.0))
_acosh = primitive("acosh", lambda xp, x: xp.acosh(x), lambda xp, g, ans, x: g / xp.sqrt(x * x - 1.0))
_atanh = primitive("atanh", lambda xp, x: xp.atanh(x), lambda xp, g, ans, x: g / (1.0 - x * x))
_atan2 = primitive(
    "atan2", lambda xp, y, x: xp.atan2(y, x),
    lambda xp, g, ans, y, x: g * x / (x * x + y * y),
    lambda xp, g, ans, y, x: -g * y / (x * x + y * y),
)
_hypot = primitive(
    "hypot", lambda xp, x, y: xp.hypot(x, y),
    lambda xp, g, ans, x, y: g * x / ans,
    lambda xp, g, ans, x, y: g * y / ans,
)

for _prim in (_asin, _acos, _atan, _sinh, _cosh, _asinh, _acosh, _atanh, _atan2, _hypot):
    _prim.defjvp_from_vjp()


def asin(x: ArrayLike, /) -> Tensor:
    """The inverse sine, in [-pi/2, pi/2]; its derivative is infinite at +-1."""
    return _asin(x)


def acos(x: ArrayLike, /) -> Tensor:
    """The inverse cosine, in [0, pi]; its derivative is infinite at +-1."""
    return _acos(x)


def atan(x: ArrayLike, /) -> Tensor:
    """The inverse tangent, in (-pi/2, pi/2)."""
    return _atan(x)


def atan2(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """The angle of the point (x2, x1), in [-pi, pi]; the gradient is undefined (nan) at (0, 0)."""
    return _atan2(x1, x2)


def sinh(x: ArrayLike, /) -> Tensor:
    """The hyperbolic sine."""
    return _sinh(x)


def cosh(x: ArrayLike, /) -> Tensor:
    """The hyperbolic cosine."""
    return _cosh(x)


def asinh(x: ArrayLike, /) -> Tensor:
    """The inverse hyperbolic sine."""
    return _asinh(x)


def acosh(x: ArrayLike, /) -> Tensor:
    """The inverse hyperbolic cosine (x >= 1)."""
    return _acosh(x)


def atanh(x: ArrayLike, /) -> Tensor:
    """The inverse hyperbolic tangent (for -1 < x < 1)."""
    return _atanh(x)


def hypot(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """sqrt(x1**2 + x2**2), without overflow; the gradient is undefined (nan) at (0, 0)."""
    return _hypot(x1, x2)
