"""Operations whose result carries no gradient: comparisons, rounding, logical and
bitwise operations, argmax/argmin, counting and searching.

Their results are integer or boolean, or piecewise constant (floor, trunc...), so
their derivative is zero wherever it exists: no node is recorded, as in PyTorch and JAX.
"""

from __future__ import annotations

from typing import Any

from .. import backend
from ..compile import trace as tracing
from ..tensor import ArrayLike, Tensor


def _raw(x: Any) -> Any:
    return x._data if isinstance(x, Tensor) else x


def _no_gradient(name: str, *args: Any, **kwargs: Any) -> Tensor:
    """Run the backend's ``name`` on raw arrays: a result without a gradient."""
    raw = [_raw(a) for a in args]
    xp = backend.namespace_of(raw, name) or backend.creation_namespace()
    out = getattr(xp, name)(*raw, **kwargs)
    if out.__class__ is not xp.array_type:
        out = xp.asarray(out)
    elif tracing.active() is not None:
        out = tracing.active().as_eager(out)
    return Tensor(out)


def equal(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """x1 == x2 (no gradient)."""
    return _no_gradient("equal", x1, x2)


def not_equal(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """x1 != x2 (no gradient)."""
    return _no_gradient("not_equal", x1, x2)


def less(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """x1 < x2 (no gradient)."""
    return _no_gradient("less", x1, x2)


def less_equal(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """x1 <= x2 (no gradient)."""
    return _no_gradient("less_equal", x1, x2)


def greater(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """x1 > x2 (no gradient)."""
    return _no_gradient("greater", x1, x2)


def greater_equal(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """x1 >= x2 (no gradient)."""
    return _no_gradient("greater_equal", x1, x2)


def logical_and(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """Elementwise and of booleans (no gradient)."""
    return _no_gradient("logical_and", x1, x2)


def logical_or(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """Elementwise or of booleans (no gradient)."""
    return _no_gradient("logical_or", x1, x2)


def logical_not(x: ArrayLike, /) -> Tensor:
    """Elementwise not of booleans (no gradient)."""
    return _no_gradient("logical_not", x)


def sign(x: ArrayLike, /) -> Tensor:
    """-1, 0 or 1 (its derivative is zero almost everywhere: none is recorded)."""
    return _no_gradient("sign", x)


def floor(x: ArrayLike, /) -> Tensor:
    """Round down (no gradient)."""
    return _no_gradient("floor", x)


def ceil(x: ArrayLike, /) -> Tensor:
    """Round up (no gradient)."""
    return _no_gradient("ceil", x)


def round(x: ArrayLike, /) -> Tensor:
    """Round to the nearest integer, halves to even (no gradient)."""
    return _no_gradient("round", x)


def isfinite(x: ArrayLike, /) -> Tensor:
    """Whether each element is finite (no gradient)."""
    return _no_gradient("isfinite", x)


def isnan(x: ArrayLike, /) -> Tensor:
    """Whether each element is nan (no gradient)."""
    return _no_gradient("isnan", x)


def argmax(x: ArrayLike, /, *, axis: int | None = None, keepdims: bool = False) -> Tensor:
    """Index of the (first) maximum along ``axis`` (no gradient)."""
    return _no_gradient("argmax", x, axis=axis, keepdims=keepdims)


def argmin(x: ArrayLike, /, *, axis: int | None = None, keepdims: bool = False) -> Tensor:
    """Index of the (first) minimum along ``axis`` (no gradient)."""
    return _no_gradient("argmin", x, axis=axis, keepdims=keepdims)


def all(x: ArrayLike, /, *, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
    """Whether every element (along ``axis``) is true (no gradient)."""
    return _no_gradient("all", x, axis=axis, keepdims=keepdims)


def any(x: ArrayLike, /, *, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
    """Whether any element (along ``axis``) is true (no gradient)."""
    return _no_gradient("any", x, axis=axis, keepdims=keepdims)


def logical_xor(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """Elementwise exclusive or of booleans (no gradient)."""
    return _no_gradient("logical_xor", x1, x2)


def isinf(x: ArrayLike, /) -> Tensor:
    """Whether each element is +-inf (no gradient)."""
    return _no_gradient("isinf", x)


def signbit(x: ArrayLike, /) -> Tensor:
    """Whether each element's sign bit is set (-0.0 included; no gradient)."""
    return _no_gradient("signbit", x)


def trunc(x: ArrayLike, /) -> Tensor:
    """Round towards zero (no gradient: piecewise constant)."""
    return _no_gradient("trunc", x)


def floor_divide(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """floor(x1 / x2) (no gradient: piecewise constant)."""
    return _no_gradient("floor_divide", x1, x2)


def nextafter(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """The next representable number after x1 towards x2 (no gradient)."""
    return _no_gradient("nextafter", x1, x2)


def bitwise_and(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """Bitwise and of integers or booleans (no gradient)."""
    return _no_gradient("bitwise_and", x1, x2)


def bitwise_or(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """Bitwise or of integers or booleans (no gradient)."""
    return _no_gradient("bitwise_or", x1, x2)


def bitwise_xor(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """Bitwise exclusive or of integers or booleans (no gradient)."""
    return _no_gradient("bitwise_xor", x1, x2)


def bitwise_invert(x: ArrayLike, /) -> Tensor:
    """Bitwise not of integers or booleans (no gradient)."""
    return _no_gradient("bitwise_invert", x)


def bitwise_left_shift(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """x1 << x2 for integers (no gradient)."""
    return _no_gradient("bitwise_left_shift", x1, x2)


def bitwise_right_shift(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """x1 >> x2 for integers (no gradient)."""
    return _no_gradient("bitwise_right_shift", x1, x2)


def count_nonzero(x: ArrayLike, /, *, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
    """How many elements (along ``axis``) are not zero (no gradient)."""
    return _no_gradient("count_nonzero", x, axis=axis, keepdims=keepdims)


def nonzero(x: ArrayLike, /) -> tuple[Tensor, ...]:
    """The indices of the nonzero elements, one integer Tensor per axis (no gradient)."""
    raw = _raw(x)
    xp = backend.namespace_of((raw,), "nonzero")
    return tuple(Tensor(i) for i in xp.nonzero(raw))


def searchsorted(x1: ArrayLike, x2: ArrayLike, /, *, side: str = "left", sorter: ArrayLike | None = None) -> Tensor:
    """Indices where the values ``x2`` would be inserted into the sorted ``x1`` (no gradient)."""
    kwargs = {"side": side} if sorter is None else {"side": side, "sorter": _raw(sorter)}
    return _no_gradient("searchsorted", x1, x2, **kwargs)
