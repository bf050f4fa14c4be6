"""Inverse trigonometric and hyperbolic functions, atan2 and hypot, each primitive with its
VJP and public function beside it. Elementwise, so each VJP (with the tangent for g) is also
the JVP."""

from __future__ import annotations

from ..tape import primitive
from ..tensor import ArrayLike, Tensor

asin_p = primitive("asin", lambda xp, x: xp.asin(x), vjp=[lambda xp, g, ans, x: g / xp.sqrt(1.0 - x * x)],
                    elementwise=True)


def asin(x: ArrayLike, /) -> Tensor:
    """The inverse sine, in [-pi/2, pi/2]; its derivative is infinite at +-1."""
    return asin_p(x)


acos_p = primitive("acos", lambda xp, x: xp.acos(x), vjp=[lambda xp, g, ans, x: -g / xp.sqrt(1.0 - x * x)],
                    elementwise=True)


def acos(x: ArrayLike, /) -> Tensor:
    """The inverse cosine, in [0, pi]; its derivative is infinite at +-1."""
    return acos_p(x)


atan_p = primitive("atan", lambda xp, x: xp.atan(x), vjp=[lambda xp, g, ans, x: g / (1.0 + x * x)], elementwise=True)


def atan(x: ArrayLike, /) -> Tensor:
    """The inverse tangent, in (-pi/2, pi/2)."""
    return atan_p(x)


atan2_p = primitive(
    "atan2", lambda xp, y, x: xp.atan2(y, x),
    vjp=[lambda xp, g, ans, y, x: g * x / (x * x + y * y), lambda xp, g, ans, y, x: -g * y / (x * x + y * y)],
    elementwise=True,
)


def atan2(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """The angle of the point (x2, x1), in [-pi, pi]; the gradient is undefined (nan) at (0, 0)."""
    return atan2_p(x1, x2)


sinh_p = primitive("sinh", lambda xp, x: xp.sinh(x), vjp=[lambda xp, g, ans, x: g * xp.cosh(x)], elementwise=True)


def sinh(x: ArrayLike, /) -> Tensor:
    """The hyperbolic sine."""
    return sinh_p(x)


cosh_p = primitive("cosh", lambda xp, x: xp.cosh(x), vjp=[lambda xp, g, ans, x: g * xp.sinh(x)], elementwise=True)


def cosh(x: ArrayLike, /) -> Tensor:
    """The hyperbolic cosine."""
    return cosh_p(x)


asinh_p = primitive("asinh", lambda xp, x: xp.asinh(x), vjp=[lambda xp, g, ans, x: g / xp.sqrt(x * x + 1.0)],
                     elementwise=True)


def asinh(x: ArrayLike, /) -> Tensor:
    """The inverse hyperbolic sine."""
    return asinh_p(x)


acosh_p = primitive("acosh", lambda xp, x: xp.acosh(x), vjp=[lambda xp, g, ans, x: g / xp.sqrt(x * x - 1.0)],
                     elementwise=True)


def acosh(x: ArrayLike, /) -> Tensor:
    """The inverse hyperbolic cosine (x >= 1)."""
    return acosh_p(x)


atanh_p = primitive("atanh", lambda xp, x: xp.atanh(x), vjp=[lambda xp, g, ans, x: g / (1.0 - x * x)], elementwise=True)


def atanh(x: ArrayLike, /) -> Tensor:
    """The inverse hyperbolic tangent (for -1 < x < 1)."""
    return atanh_p(x)


hypot_p = primitive(
    "hypot", lambda xp, x, y: xp.hypot(x, y),
    vjp=[lambda xp, g, ans, x, y: g * x / ans, lambda xp, g, ans, x, y: g * y / ans], elementwise=True,
)


def hypot(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """sqrt(x1**2 + x2**2), without overflow; the gradient is undefined (nan) at (0, 0)."""
    return hypot_p(x1, x2)
