"""Elementwise primitives, each with its VJP beside it (and its JVP: see the end).

Every VJP is written with operators and ``xp`` functions only, so it runs on raw
arrays (plain backward) and on Tensors (``create_graph=True``). Broadcasting is
undone by the engine, so a VJP may return a gradient of the broadcast shape.
"""

from __future__ import annotations

import math

from ..tape import primitive

# --------------------------------------------------------------------------- binary

add = primitive(
    "add", lambda xp, x, y: x + y,
    lambda xp, g, ans, x, y: g,
    lambda xp, g, ans, x, y: g,
)
subtract = primitive(
    "subtract", lambda xp, x, y: x - y,
    lambda xp, g, ans, x, y: g,
    lambda xp, g, ans, x, y: -g,
)
multiply = primitive(
    "multiply", lambda xp, x, y: x * y,
    lambda xp, g, ans, x, y: g * y,
    lambda xp, g, ans, x, y: g * x,
)
divide = primitive(
    "divide", lambda xp, x, y: x / y,
    lambda xp, g, ans, x, y: g / y,
    lambda xp, g, ans, x, y: -g * ans / y,
)


def _pow_vjp_base(xp, g, ans, x, y):
    # d/dx x**y = y * x**(y-1), written without ans/x so that x == 0 gives 0, not nan.
    # At y == 0 it is exactly 0 (as PyTorch and JAX give it), not 0 * 0**-1 = nan at
    # x == 0. Since this rule is itself made of pow, the same care reaches every higher
    # derivative (d2/dx2 x**1 at 0 is 0).
    if isinstance(y, (int, float)):
        return g * 0.0 if y == 0 else g * y * x ** (y - 1)
    # An array exponent: only the point x == y == 0 is replaced, on both sides of the
    # where (so that no nan leaks into a derivative through the branch not taken);
    # elsewhere the expression, and so every derivative in x and in y, is the true one.
    zero_zero = (y == 0) & (x == 0)
    safe_x = xp.where(zero_zero, 1.0, x)
    return g * xp.where(zero_zero, 0.0, y * safe_x ** (y - 1.0))


def _pow_vjp_exponent(xp, g, ans, x, y):
    # d/dy x**y = x**y * log(x), taken as 0 where x <= 0 (where it is undefined).
    if isinstance(x, (int, float)):
        return g * ans * math.log(x) if x > 0 else g * 0.0
    safe = xp.where(x > 0, x, 1.0)
    return g * ans * xp.log(safe)


pow = primitive("pow", lambda xp, x, y: x ** y, _pow_vjp_base, _pow_vjp_exponent)


def _select_vjp(first: bool):
    # Where x == y the gradient is split evenly, as in PyTorch and JAX.
    def vjp(xp, g, ans, x, y):
        win = (x > y) if first else (y > x)
        return xp.where(win, g, xp.where(x == y, g * 0.5, 0.0))

    return vjp


def _select_vjp_min(first: bool):
    def vjp(xp, g, ans, x, y):
        win = (x < y) if first else (y < x)
        return xp.where(win, g, xp.where(x == y, g * 0.5, 0.0))

    return vjp


maximum = primitive("maximum", lambda xp, x, y: xp.maximum(x, y), _select_vjp(True), _select_vjp(False))
maximum.__doc__ = "Elementwise maximum; where x == y each input receives half of the gradient."
minimum = primitive("minimum", lambda xp, x, y: xp.minimum(x, y), _select_vjp_min(True), _select_vjp_min(False))
minimum.__doc__ = "Elementwise minimum; where x == y each input receives half of the gradient."

_where = primitive(
    "where", lambda xp, c, x, y: xp.where(c, x, y),
    None,
    lambda xp, g, ans, c, x, y: xp.where(c, g, 0.0),
    lambda xp, g, ans, c, x, y: xp.where(c, 0.0, g),
)


def where(condition, x1, x2):
    """``x1`` where ``condition`` holds, else ``x2`` (the condition gets no gradient)."""
    return _where(condition, x1, x2)


# --------------------------------------------------------------------------- unary

negative = primitive("negative", lambda xp, x: -x, lambda xp, g, ans, x: -g)
exp = primitive("exp", lambda xp, x: xp.exp(x), lambda xp, g, ans, x: g * ans)
log = primitive("log", lambda xp, x: xp.log(x), lambda xp, g, ans, x: g / x)
log1p = primitive("log1p", lambda xp, x: xp.log1p(x), lambda xp, g, ans, x: g / (x + 1.0))
expm1 = primitive("expm1", lambda xp, x: xp.expm1(x), lambda xp, g, ans, x: g * (ans + 1.0))
sqrt = primitive("sqrt", lambda xp, x: xp.sqrt(x), lambda xp, g, ans, x: g * 0.5 / ans)
square = primitive("square", lambda xp, x: xp.square(x), lambda xp, g, ans, x: g * 2.0 * x)
abs = primitive("abs", lambda xp, x: xp.abs(x), lambda xp, g, ans, x: g * xp.sign(x))
abs.__doc__ = "Elementwise absolute value; the gradient at 0 is 0 (sign(0))."
sin = primitive("sin", lambda xp, x: xp.sin(x), lambda xp, g, ans, x: g * xp.cos(x))
cos = primitive("cos", lambda xp, x: xp.cos(x), lambda xp, g, ans, x: -g * xp.sin(x))
tan = primitive("tan", lambda xp, x: xp.tan(x), lambda xp, g, ans, x: g * (1.0 + ans * ans))
tanh = primitive("tanh", lambda xp, x: xp.tanh(x), lambda xp, g, ans, x: g * (1.0 - ans * ans))


def _sigmoid(xp, x):
    # exp of a non-positive number never overflows: stable for any |x|.
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


sigmoid = primitive("sigmoid", _sigmoid, lambda xp, g, ans, x: g * ans * (1.0 - ans))
sigmoid.__doc__ = "The logistic function 1 / (1 + exp(-x)), computed without overflow."
relu = primitive("relu", lambda xp, x: xp.maximum(x, 0.0), lambda xp, g, ans, x: xp.where(x > 0, g, 0.0))
relu.__doc__ = "max(x, 0); the gradient at 0 is 0."


def _clip_vjp(xp, g, ans, x, min=None, max=None):
    inside = None
    if min is not None:
        inside = x >= min
    if max is not None:
        inside = (x <= max) if inside is None else (inside & (x <= max))
    return g if inside is None else xp.where(inside, g, 0.0)


_clip = primitive("clip", lambda xp, x, min=None, max=None: xp.clip(x, min=min, max=max), _clip_vjp)


def clip(x, min=None, max=None):
    """Clamp to [min, max] (Python scalars). The gradient is 1 inside, 0 outside."""
    if min is not None and max is not None and min > max:
        raise ValueError(f"agrad.clip: min ({min}) is greater than max ({max})")
    return _clip(x, min=min, max=max)


# Forward mode: every op here is elementwise, so its Jacobian is diagonal and each VJP,
# called with the tangent in place of g, is the JVP (broadcasting included).
for _prim in (add, subtract, multiply, divide, pow, maximum, minimum, _where, negative, exp, log, log1p, expm1,
              sqrt, square, abs, sin, cos, tan, tanh, sigmoid, relu, _clip):
    _prim.defjvp_from_vjp()
