"""Elementwise primitives, each with its VJP beside it (and its JVP: see the end).

Every VJP is written with operators and ``xp`` functions only, so it runs on raw
arrays (plain backward) and on Tensors (``create_graph=True``). Broadcasting is
undone by the engine, so a VJP may return a gradient of the broadcast shape.
"""

from __future__ import annotations

import math

from ..tape import primitive
from ..tensor import ArrayLike, Tensor

# --------------------------------------------------------------------------- binary

_add = primitive(
    "add", lambda xp, x, y: x + y,
    lambda xp, g, ans, x, y: g,
    lambda xp, g, ans, x, y: g,
)
_subtract = primitive(
    "subtract", lambda xp, x, y: x - y,
    lambda xp, g, ans, x, y: g,
    lambda xp, g, ans, x, y: -g,
)
_multiply = primitive(
    "multiply", lambda xp, x, y: x * y,
    lambda xp, g, ans, x, y: g * y,
    lambda xp, g, ans, x, y: g * x,
)
_divide = primitive(
    "divide", lambda xp, x, y: x / y,
    lambda xp, g, ans, x, y: g / y,
    # the quotient, or where it was updated in place (SciPy's zscore: xpx.at(z, zero).set(nan)),
    # recomputed from x (the same bits): saves below
    lambda xp, g, ans, x, y: -g * (x / y if ans is None else ans) / y,
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


_pow = primitive("pow", lambda xp, x, y: x ** y, _pow_vjp_base, _pow_vjp_exponent)


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


_maximum = primitive("maximum", lambda xp, x, y: xp.maximum(x, y), _select_vjp(True), _select_vjp(False))
_minimum = primitive("minimum", lambda xp, x, y: xp.minimum(x, y), _select_vjp_min(True), _select_vjp_min(False))

_where = primitive(
    "where", lambda xp, c, x, y: xp.where(c, x, y),
    None,
    lambda xp, g, ans, c, x, y: xp.where(c, g, 0.0),
    lambda xp, g, ans, c, x, y: xp.where(c, 0.0, g),
)


def where(condition: ArrayLike, x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """``x1`` where ``condition`` holds, else ``x2`` (the condition gets no gradient)."""
    return _where(condition, x1, x2)


_logaddexp = primitive(
    "logaddexp", lambda xp, x, y: xp.logaddexp(x, y),
    lambda xp, g, ans, x, y: g * xp.exp(x - ans),
    lambda xp, g, ans, x, y: g * xp.exp(y - ans),
)


def _copysign_vjp(xp, g, ans, x, y):
    # copysign(x, y) = |x| with y's sign: the derivative in x is +-1 (sign of x times sign of y).
    flip = xp.signbit(x) != xp.signbit(y)
    return xp.where(flip, -g, g)


_copysign = primitive("copysign", lambda xp, x, y: xp.copysign(x, y), _copysign_vjp, lambda xp, g, ans, x, y: g * 0.0)
_remainder = primitive(
    "remainder", lambda xp, x, y: xp.remainder(x, y),
    lambda xp, g, ans, x, y: g,
    lambda xp, g, ans, x, y: -g * xp.floor_divide(x, y),  # x - floor(x / y) * y (PyTorch, JAX)
)

# --------------------------------------------------------------------------- unary

_negative = primitive("negative", lambda xp, x: -x, lambda xp, g, ans, x: -g)
_exp = primitive("exp", lambda xp, x: xp.exp(x), lambda xp, g, ans, x: g * ans)
_log = primitive("log", lambda xp, x: xp.log(x), lambda xp, g, ans, x: g / x)
_log1p = primitive("log1p", lambda xp, x: xp.log1p(x), lambda xp, g, ans, x: g / (x + 1.0))
_expm1 = primitive("expm1", lambda xp, x: xp.expm1(x), lambda xp, g, ans, x: g * (ans + 1.0))
_log2 = primitive("log2", lambda xp, x: xp.log2(x), lambda xp, g, ans, x: g / (x * math.log(2.0)))
_log10 = primitive("log10", lambda xp, x: xp.log10(x), lambda xp, g, ans, x: g / (x * math.log(10.0)))
_reciprocal = primitive("reciprocal", lambda xp, x: xp.reciprocal(x), lambda xp, g, ans, x: -g * ans * ans)
_positive = primitive("positive", lambda xp, x: xp.positive(x), lambda xp, g, ans, x: g)
_sqrt = primitive("sqrt", lambda xp, x: xp.sqrt(x), lambda xp, g, ans, x: g * 0.5 / ans)
_square = primitive("square", lambda xp, x: xp.square(x), lambda xp, g, ans, x: g * 2.0 * x)
_abs = primitive("abs", lambda xp, x: xp.abs(x), lambda xp, g, ans, x: g * xp.sign(x))
_sin = primitive("sin", lambda xp, x: xp.sin(x), lambda xp, g, ans, x: g * xp.cos(x))
_cos = primitive("cos", lambda xp, x: xp.cos(x), lambda xp, g, ans, x: -g * xp.sin(x))
_tan = primitive("tan", lambda xp, x: xp.tan(x), lambda xp, g, ans, x: g * (1.0 + ans * ans))
_tanh = primitive("tanh", lambda xp, x: xp.tanh(x), lambda xp, g, ans, x: g * (1.0 - ans * ans))


def _sigmoid_forward(xp, x):
    # exp of a non-positive number never overflows: stable for any |x|.
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


_sigmoid = primitive("sigmoid", _sigmoid_forward, lambda xp, g, ans, x: g * ans * (1.0 - ans))
_relu = primitive("relu", lambda xp, x: xp.maximum(x, 0.0), lambda xp, g, ans, x: xp.where(x > 0, g, 0.0))


def _clip_vjp(xp, g, ans, x, min=None, max=None):
    inside = None
    if min is not None:
        inside = x >= min
    if max is not None:
        inside = (x <= max) if inside is None else (inside & (x <= max))
    return g if inside is None else xp.where(inside, g, 0.0)


_clip = primitive("clip", lambda xp, x, min=None, max=None: xp.clip(x, min=min, max=max), _clip_vjp)


def clip(x: ArrayLike, /, min: float | None = None, max: float | None = None) -> Tensor:
    """Clamp to [min, max] (Python scalars). The gradient is 1 inside, 0 outside."""
    if min is not None and max is not None and min > max:
        raise ValueError(f"agrad.clip: min ({min}) is greater than max ({max})")
    return _clip(x, min=min, max=max)


# What each VJP reads (see Primitive's ``saves``): an in-place update of a value no VJP
# reads is no error at backward. Ops not named here are taken to read everything.
_NOTHING, _OUT, _X = (), ("out",), (0,)
for _prim, _saves in [
    (_add, (_NOTHING, _NOTHING)), (_subtract, (_NOTHING, _NOTHING)), (_multiply, ((1,), (0,))),
    (_divide, ((1,), (1, ("out", 0)))), (_pow, ((0, 1), (0, "out"))), (_where, (_NOTHING, (0,), (0,))),
    (_remainder, (_NOTHING, (0, 1))),
    (_negative, (_NOTHING,)), (_positive, (_NOTHING,)),
    (_exp, (_OUT,)), (_expm1, (_OUT,)), (_reciprocal, (_OUT,)), (_sqrt, (_OUT,)), (_tan, (_OUT,)),
    (_tanh, (_OUT,)), (_sigmoid, (_OUT,)),
    (_log, (_X,)), (_log1p, (_X,)), (_log2, (_X,)), (_log10, (_X,)), (_square, (_X,)), (_abs, (_X,)),
    (_sin, (_X,)), (_cos, (_X,)), (_relu, (_X,)), (_clip, (_X,)),
]:
    _prim.saves = _saves

# Forward mode: every op here is elementwise, so its Jacobian is diagonal and each VJP,
# called with the tangent in place of g, is the JVP (broadcasting included).
for _prim in (_add, _subtract, _multiply, _divide, _pow, _maximum, _minimum, _where, _negative, _exp, _log, _log1p,
              _expm1, _sqrt, _square, _abs, _sin, _cos, _tan, _tanh, _sigmoid, _relu, _clip, _logaddexp, _copysign,
              _remainder, _log2, _log10, _reciprocal, _positive):
    _prim.defjvp_from_vjp()


# --------------------------------------------------------------------------- the public functions
# Real signatures (positional-only, as the array API) and docstrings; each calls its primitive.


def add(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """x1 + x2, elementwise, with broadcasting."""
    return _add(x1, x2)


def subtract(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """x1 - x2, elementwise, with broadcasting."""
    return _subtract(x1, x2)


def multiply(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """x1 * x2, elementwise, with broadcasting."""
    return _multiply(x1, x2)


def divide(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """x1 / x2, elementwise, with broadcasting."""
    return _divide(x1, x2)


def pow(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """x1 ** x2, elementwise. The derivative in x1 at x2 == 0 is 0 (also at x1 == 0);
    the derivative in x2 is taken as 0 where x1 <= 0 (where log x1 is undefined)."""
    return _pow(x1, x2)


def maximum(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """Elementwise maximum; where x1 == x2 each input receives half of the gradient."""
    return _maximum(x1, x2)


def minimum(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """Elementwise minimum; where x1 == x2 each input receives half of the gradient."""
    return _minimum(x1, x2)


def negative(x: ArrayLike, /) -> Tensor:
    """-x, elementwise."""
    return _negative(x)


def exp(x: ArrayLike, /) -> Tensor:
    """e ** x."""
    return _exp(x)


def log(x: ArrayLike, /) -> Tensor:
    """The natural logarithm."""
    return _log(x)


def log1p(x: ArrayLike, /) -> Tensor:
    """log(1 + x), accurate for small x."""
    return _log1p(x)


def expm1(x: ArrayLike, /) -> Tensor:
    """exp(x) - 1, accurate for small x."""
    return _expm1(x)


def sqrt(x: ArrayLike, /) -> Tensor:
    """The square root."""
    return _sqrt(x)


def square(x: ArrayLike, /) -> Tensor:
    """x * x, elementwise."""
    return _square(x)


def abs(x: ArrayLike, /) -> Tensor:
    """The absolute value; the gradient at 0 is 0 (sign(0))."""
    return _abs(x)


def sin(x: ArrayLike, /) -> Tensor:
    """The sine (radians)."""
    return _sin(x)


def cos(x: ArrayLike, /) -> Tensor:
    """The cosine (radians)."""
    return _cos(x)


def tan(x: ArrayLike, /) -> Tensor:
    """The tangent (radians)."""
    return _tan(x)


def tanh(x: ArrayLike, /) -> Tensor:
    """The hyperbolic tangent."""
    return _tanh(x)


def sigmoid(x: ArrayLike, /) -> Tensor:
    """The logistic function 1 / (1 + exp(-x)), computed without overflow for any x."""
    return _sigmoid(x)


def relu(x: ArrayLike, /) -> Tensor:
    """max(x, 0); the gradient at 0 is 0."""
    return _relu(x)


def log2(x: ArrayLike, /) -> Tensor:
    """The base-2 logarithm."""
    return _log2(x)


def log10(x: ArrayLike, /) -> Tensor:
    """The base-10 logarithm."""
    return _log10(x)


def logaddexp(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """log(exp(x1) + exp(x2)), without overflow."""
    return _logaddexp(x1, x2)


def reciprocal(x: ArrayLike, /) -> Tensor:
    """1 / x."""
    return _reciprocal(x)


def positive(x: ArrayLike, /) -> Tensor:
    """+x (a copy as a recorded op)."""
    return _positive(x)


def copysign(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """The magnitude of x1 with the sign of x2; the gradient flows to x1 only (x2 only gives a sign)."""
    return _copysign(x1, x2)


def remainder(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """x1 - floor(x1 / x2) * x2, with the sign of x2; its derivative in x2 is -floor(x1 / x2)."""
    return _remainder(x1, x2)
