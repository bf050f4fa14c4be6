"""Elementwise primitives, each with its VJP and public function beside it.

Every VJP is written with operators and ``xp`` functions only, so it runs on raw
arrays (plain backward) and on Tensors (``create_graph=True``). Broadcasting is
undone by the engine, so a VJP may return a gradient of the broadcast shape. Every op
here is elementwise (its Jacobian is diagonal): each VJP, called with the tangent in place
of g, is also its JVP. ``saves`` says what each VJP reads (see Primitive): an in-place
update of a value no VJP reads is no error at backward; ops without it read everything.
"""

from __future__ import annotations

import math

from ..tape import primitive
from ..tensor import ArrayLike, Tensor

# --------------------------------------------------------------------------- binary

add_p = primitive("add", lambda xp, x, y: x + y, vjp=[lambda xp, g, ans, x, y: g, lambda xp, g, ans, x, y: g],
                  saves=((), ()), elementwise=True)


def add(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """x1 + x2, elementwise, with broadcasting."""
    return add_p(x1, x2)


subtract_p = primitive("subtract", lambda xp, x, y: x - y,
                       vjp=[lambda xp, g, ans, x, y: g, lambda xp, g, ans, x, y: -g], saves=((), ()), elementwise=True)


def subtract(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """x1 - x2, elementwise, with broadcasting."""
    return subtract_p(x1, x2)


multiply_p = primitive("multiply", lambda xp, x, y: x * y,
                       vjp=[lambda xp, g, ans, x, y: g * y, lambda xp, g, ans, x, y: g * x], saves=((1,), (0,)),
                       elementwise=True)


def multiply(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """x1 * x2, elementwise, with broadcasting."""
    return multiply_p(x1, x2)


divide_p = primitive(
    "divide", lambda xp, x, y: x / y,
    vjp=[lambda xp, g, ans, x, y: g / y,
         # the quotient, or where it was updated in place (SciPy's zscore: xpx.at(z, zero).set(nan)),
         # recomputed from x (the same bits): saves
         lambda xp, g, ans, x, y: -g * (x / y if ans is None else ans) / y],
    saves=((1,), (1, ("out", 0))), elementwise=True,
)


def divide(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """x1 / x2, elementwise, with broadcasting."""
    return divide_p(x1, x2)


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


pow_p = primitive("pow", lambda xp, x, y: x ** y, vjp=[_pow_vjp_base, _pow_vjp_exponent], saves=((0, 1), (0, "out")),
                 elementwise=True)


def pow(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """x1 ** x2, elementwise. The derivative in x1 at x2 == 0 is 0 (also at x1 == 0);
    the derivative in x2 is taken as 0 where x1 <= 0 (where log x1 is undefined)."""
    return pow_p(x1, x2)


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


maximum_p = primitive("maximum", lambda xp, x, y: xp.maximum(x, y), vjp=[_select_vjp(True), _select_vjp(False)],
                      elementwise=True)


def maximum(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """Elementwise maximum; where x1 == x2 each input receives half of the gradient."""
    return maximum_p(x1, x2)


minimum_p = primitive("minimum", lambda xp, x, y: xp.minimum(x, y),
                      vjp=[_select_vjp_min(True), _select_vjp_min(False)], elementwise=True)


def minimum(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """Elementwise minimum; where x1 == x2 each input receives half of the gradient."""
    return minimum_p(x1, x2)


where_p = primitive(
    "where", lambda xp, c, x, y: xp.where(c, x, y),
    vjp=[None, lambda xp, g, ans, c, x, y: xp.where(c, g, 0.0), lambda xp, g, ans, c, x, y: xp.where(c, 0.0, g)],
    saves=((), (0,), (0,)), elementwise=True,
)


def where(condition: ArrayLike, x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """``x1`` where ``condition`` holds, else ``x2`` (the condition gets no gradient)."""
    return where_p(condition, x1, x2)


logaddexp_p = primitive(
    "logaddexp", lambda xp, x, y: xp.logaddexp(x, y),
    vjp=[lambda xp, g, ans, x, y: g * xp.exp(x - ans), lambda xp, g, ans, x, y: g * xp.exp(y - ans)], elementwise=True,
)


def logaddexp(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """log(exp(x1) + exp(x2)), without overflow."""
    return logaddexp_p(x1, x2)


def _copysign_vjp(xp, g, ans, x, y):
    # copysign(x, y) = |x| with y's sign: the derivative in x is +-1 (sign of x times sign of y).
    flip = xp.signbit(x) != xp.signbit(y)
    return xp.where(flip, -g, g)


copysign_p = primitive("copysign", lambda xp, x, y: xp.copysign(x, y),
                       vjp=[_copysign_vjp, lambda xp, g, ans, x, y: g * 0.0], elementwise=True)


def copysign(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """The magnitude of x1 with the sign of x2; the gradient flows to x1 only (x2 only gives a sign)."""
    return copysign_p(x1, x2)


remainder_p = primitive(
    "remainder", lambda xp, x, y: xp.remainder(x, y),
    vjp=[lambda xp, g, ans, x, y: g,
         lambda xp, g, ans, x, y: -g * xp.floor_divide(x, y)],  # x - floor(x / y) * y (PyTorch, JAX)
    saves=((), (0, 1)), elementwise=True,
)


def remainder(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """x1 - floor(x1 / x2) * x2, with the sign of x2; its derivative in x2 is -floor(x1 / x2)."""
    return remainder_p(x1, x2)



# --------------------------------------------------------------------------- unary

negative_p = primitive("negative", lambda xp, x: -x, vjp=[lambda xp, g, ans, x: -g], saves=((),), elementwise=True)


def negative(x: ArrayLike, /) -> Tensor:
    """-x, elementwise."""
    return negative_p(x)


exp_p = primitive("exp", lambda xp, x: xp.exp(x), vjp=[lambda xp, g, ans, x: g * ans],
                   saves=(("out",),), elementwise=True)


def exp(x: ArrayLike, /) -> Tensor:
    """e ** x."""
    return exp_p(x)


log_p = primitive("log", lambda xp, x: xp.log(x), vjp=[lambda xp, g, ans, x: g / x], saves=((0,),), elementwise=True)


def log(x: ArrayLike, /) -> Tensor:
    """The natural logarithm."""
    return log_p(x)


log1p_p = primitive("log1p", lambda xp, x: xp.log1p(x), vjp=[lambda xp, g, ans, x: g / (x + 1.0)],
                     saves=((0,),), elementwise=True)


def log1p(x: ArrayLike, /) -> Tensor:
    """log(1 + x), accurate for small x."""
    return log1p_p(x)


expm1_p = primitive("expm1", lambda xp, x: xp.expm1(x), vjp=[lambda xp, g, ans, x: g * (ans + 1.0)],
                     saves=(("out",),), elementwise=True)


def expm1(x: ArrayLike, /) -> Tensor:
    """exp(x) - 1, accurate for small x."""
    return expm1_p(x)


log2_p = primitive("log2", lambda xp, x: xp.log2(x), vjp=[lambda xp, g, ans, x: g / (x * math.log(2.0))],
                    saves=((0,),), elementwise=True)


def log2(x: ArrayLike, /) -> Tensor:
    """The base-2 logarithm."""
    return log2_p(x)


log10_p = primitive("log10", lambda xp, x: xp.log10(x), vjp=[lambda xp, g, ans, x: g / (x * math.log(10.0))],
                     saves=((0,),), elementwise=True)


def log10(x: ArrayLike, /) -> Tensor:
    """The base-10 logarithm."""
    return log10_p(x)


reciprocal_p = primitive("reciprocal", lambda xp, x: xp.reciprocal(x), vjp=[lambda xp, g, ans, x: -g * ans * ans],
                          saves=(("out",),), elementwise=True)


def reciprocal(x: ArrayLike, /) -> Tensor:
    """1 / x."""
    return reciprocal_p(x)


positive_p = primitive("positive", lambda xp, x: xp.positive(x), vjp=[lambda xp, g, ans, x: g],
                        saves=((),), elementwise=True)


def positive(x: ArrayLike, /) -> Tensor:
    """+x (a copy as a recorded op)."""
    return positive_p(x)


sqrt_p = primitive("sqrt", lambda xp, x: xp.sqrt(x), vjp=[lambda xp, g, ans, x: g * 0.5 / ans],
                    saves=(("out",),), elementwise=True)


def sqrt(x: ArrayLike, /) -> Tensor:
    """The square root."""
    return sqrt_p(x)


square_p = primitive("square", lambda xp, x: xp.square(x), vjp=[lambda xp, g, ans, x: g * 2.0 * x],
                      saves=((0,),), elementwise=True)


def square(x: ArrayLike, /) -> Tensor:
    """x * x, elementwise."""
    return square_p(x)


abs_p = primitive("abs", lambda xp, x: xp.abs(x), vjp=[lambda xp, g, ans, x: g * xp.sign(x)],
                   saves=((0,),), elementwise=True)


def abs(x: ArrayLike, /) -> Tensor:
    """The absolute value; the gradient at 0 is 0 (sign(0))."""
    return abs_p(x)


sin_p = primitive("sin", lambda xp, x: xp.sin(x), vjp=[lambda xp, g, ans, x: g * xp.cos(x)],
                   saves=((0,),), elementwise=True)


def sin(x: ArrayLike, /) -> Tensor:
    """The sine (radians)."""
    return sin_p(x)


cos_p = primitive("cos", lambda xp, x: xp.cos(x), vjp=[lambda xp, g, ans, x: -g * xp.sin(x)],
                   saves=((0,),), elementwise=True)


def cos(x: ArrayLike, /) -> Tensor:
    """The cosine (radians)."""
    return cos_p(x)


tan_p = primitive("tan", lambda xp, x: xp.tan(x), vjp=[lambda xp, g, ans, x: g * (1.0 + ans * ans)],
                   saves=(("out",),), elementwise=True)


def tan(x: ArrayLike, /) -> Tensor:
    """The tangent (radians)."""
    return tan_p(x)


tanh_p = primitive("tanh", lambda xp, x: xp.tanh(x), vjp=[lambda xp, g, ans, x: g * (1.0 - ans * ans)],
                    saves=(("out",),), elementwise=True)


def tanh(x: ArrayLike, /) -> Tensor:
    """The hyperbolic tangent."""
    return tanh_p(x)


def _sigmoid_forward(xp, x):
    # exp of a non-positive number never overflows: stable for any |x|.
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


sigmoid_p = primitive("sigmoid", _sigmoid_forward, vjp=[lambda xp, g, ans, x: g * ans * (1.0 - ans)],
                       saves=(("out",),), elementwise=True)


def sigmoid(x: ArrayLike, /) -> Tensor:
    """The logistic function 1 / (1 + exp(-x)), computed without overflow for any x."""
    return sigmoid_p(x)


relu_p = primitive("relu", lambda xp, x: xp.maximum(x, 0.0), vjp=[lambda xp, g, ans, x: xp.where(x > 0, g, 0.0)],
                    saves=((0,),), elementwise=True)


def relu(x: ArrayLike, /) -> Tensor:
    """max(x, 0); the gradient at 0 is 0."""
    return relu_p(x)


def _clip_vjp(xp, g, ans, x, min=None, max=None):
    inside = None
    if min is not None:
        inside = x >= min
    if max is not None:
        inside = (x <= max) if inside is None else (inside & (x <= max))
    return g if inside is None else xp.where(inside, g, 0.0)


clip_p = primitive("clip", lambda xp, x, min=None, max=None: xp.clip(x, min=min, max=max), vjp=[_clip_vjp],
                   saves=((0,),), elementwise=True)


def clip(x: ArrayLike, /, min: float | None = None, max: float | None = None) -> Tensor:
    """Clamp to [min, max] (Python scalars). The gradient is 1 inside, 0 outside."""
    if min is not None and max is not None and min > max:
        raise ValueError(f"agrad.clip: min ({min}) is greater than max ({max})")
    return clip_p(x, min=min, max=max)
