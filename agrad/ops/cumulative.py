"""Products and running totals: prod, cumulative_sum, cumulative_prod, diff, and std.

Every rule here stays exact where elements are zero: the gradient of a product is the
product of the *other* elements, formed from running products, never a division by x.
"""

from __future__ import annotations

from typing import Any

from .. import backend
from ..batching import rules
from ..tape import primitive
from ..tensor import ArrayLike, Tensor
from .conversions import astype
from .elementwise import sqrt
from .reductions import normalize_axis, var
from .shapes import concat, getitem


def _in_dtype(x: Any, dtype: Any) -> Any:
    """``x`` cast to ``dtype`` when one is asked for (NumPy accumulates small integers in 64
    bits: the cast is applied before and after the backend's reduction)."""
    if dtype is None or x.dtype == dtype:
        return x

    return astype(x, dtype)


def _flip_last(xp, x):
    return xp.flip(x, axis=-1)


def _others_product(xp, x):
    """prod_{j != k} x_j along the last axis, for every k: exclusive running products from
    both ends, exact with zeros."""
    left = xp.cumulative_prod(x, axis=-1, include_initial=True)[..., :-1]
    right = _flip_last(xp, xp.cumulative_prod(_flip_last(xp, x), axis=-1, include_initial=True)[..., :-1])
    return left * right


def _prod_forward(xp, x, axis, keepdims):
    return xp.prod(x, axis=axis, keepdims=keepdims)


def _prod_vjp(xp, g, ans, x, axis, keepdims):
    # Flatten the reduced axes into one last axis; each element's gradient is the product of
    # the others (exact with zeros), times g.
    nd = x.ndim
    kept = tuple(a for a in range(nd) if a not in axis)
    xl = xp.permute_dims(x, kept + axis)
    flat_shape = tuple(x.shape[a] for a in kept) + (-1,)
    others = _others_product(xp, xp.reshape(xl, flat_shape))
    others = xp.reshape(others, tuple(xl.shape))
    back = tuple(sorted(range(nd), key=(kept + axis).__getitem__))
    gk = g if keepdims else xp.reshape(g, tuple(1 if i in axis else s for i, s in enumerate(x.shape)))
    return gk * xp.permute_dims(others, back)


def _prod_jvp(xp, t, ans, x, axis, keepdims):
    return xp.sum(_prod_vjp(xp, xp.ones_like(ans), ans, x, axis, keepdims) * t, axis=axis, keepdims=keepdims)


prod_p = primitive("prod", _prod_forward, vjp=[_prod_vjp], jvp=[_prod_jvp], batch=rules.reduction)


def prod(x: ArrayLike, /, *, axis: int | tuple[int, ...] | None = None, dtype: Any = None,
         keepdims: bool = False) -> Tensor:
    """The product over ``axis`` (None: all). Its gradient is the product of the other
    elements, exact where some are zero."""
    x = _in_dtype(x, dtype)
    return _in_dtype(prod_p(x, axis=normalize_axis(axis, x.ndim, "prod"), keepdims=keepdims), dtype)


def _single_axis(x, axis, op: str) -> int:
    if axis is None:
        if x.ndim != 1:
            raise ValueError(f"agrad.{op}: axis is required for a {x.ndim}-D input")
        return 0
    return normalize_axis(axis, x.ndim, op)[0]


def _cumsum_vjp(xp, g, ans, x, axis, include_initial):
    # Each x_k feeds every later running total: the gradient is the reversed running sum of g.
    if include_initial:
        g = g[(slice(None),) * axis + (slice(1, None),) + (Ellipsis,)]
    return xp.flip(xp.cumulative_sum(xp.flip(g, axis=axis), axis=axis), axis=axis)


cumulative_sum_p = primitive(
    "cumulative_sum", lambda xp, x, axis, include_initial: xp.cumulative_sum(x, axis=axis,
                                                                              include_initial=include_initial),
    vjp=[_cumsum_vjp], linear=True,
    batch=rules.along_axes,
)


def cumulative_sum(x: ArrayLike, /, *, axis: int | None = None, dtype: Any = None,
                   include_initial: bool = False) -> Tensor:
    """Running sums along ``axis`` (optional for 1-D input); ``include_initial`` starts with 0."""
    x = _in_dtype(x, dtype)
    out = cumulative_sum_p(x, axis=_single_axis(x, axis, "cumulative_sum"), include_initial=include_initial)
    return _in_dtype(out, dtype)


def _last_axis(x, axis: int):
    """``x`` with ``axis`` moved to the end, and the permutation that undoes it."""
    nd = x.ndim
    order = tuple(a for a in range(nd) if a != axis) + (axis,)
    back = tuple(sorted(range(nd), key=order.__getitem__))
    return order, back


def _masks(n: int, like: Any) -> tuple[Any, Any]:
    """Constant (n, n) boolean masks beside ``like``: the diagonal, and "column i >= row k"."""
    raw = like._data if isinstance(like, Tensor) else like
    rxp = backend.namespace_of((raw,), "cumulative_prod")
    idx = rxp.arange(n, device=raw.device)
    rows, cols = rxp.expand_dims(idx, axis=1), rxp.expand_dims(idx, axis=0)
    diag, upper = rows == cols, rows <= cols
    return (Tensor(diag), Tensor(upper)) if isinstance(like, Tensor) else (diag, upper)


def _running_products_without_each(xp, xl):
    """P[..., k, i] = prod_{j <= i, j != k} x_j along the last axis (row k is the running
    product of x with x_k replaced by 1): O(n^2) memory, exact where x has zeros."""
    diag, upper = _masks(xl.shape[-1], xl)
    return xp.cumulative_prod(xp.where(diag, 1.0, xp.expand_dims(xl, axis=-2)), axis=-1), upper


def _cumprod_vjp(xp, g, ans, x, axis, include_initial):
    # y_i = prod_{j<=i} x_j, so dL/dx_k = sum_{i>=k} g_i P[k, i].
    order, back = _last_axis(x, axis)
    xl, gl = xp.permute_dims(x, order), xp.permute_dims(g, order)
    if include_initial:
        gl = gl[..., 1:]
    p, upper = _running_products_without_each(xp, xl)
    grad = xp.sum(xp.where(upper, p * xp.expand_dims(gl, axis=-2), 0.0), axis=-1)
    return xp.permute_dims(grad, back)


def _cumprod_jvp(xp, t, ans, x, axis, include_initial):
    # dy_i = sum_{k<=i} t_k P[k, i]: the same matrix, contracted over k.
    order, back = _last_axis(x, axis)
    xl, tl = xp.permute_dims(x, order), xp.permute_dims(t, order)
    p, upper = _running_products_without_each(xp, xl)
    out = xp.permute_dims(xp.sum(xp.where(upper, p * xp.expand_dims(tl, axis=-1), 0.0), axis=-2), back)
    if include_initial:  # the leading 1 does not move
        lead = (slice(None),) * axis + (slice(0, 1),)
        out = xp.concat([xp.zeros_like(out[lead + (Ellipsis,)]), out], axis=axis)
    return out


cumulative_prod_p = primitive(
    "cumulative_prod", lambda xp, x, axis, include_initial: xp.cumulative_prod(x, axis=axis,
                                                                                include_initial=include_initial),
    vjp=[_cumprod_vjp], jvp=[_cumprod_jvp],
    batch=rules.along_axes,
)


def cumulative_prod(x: ArrayLike, /, *, axis: int | None = None, dtype: Any = None,
                    include_initial: bool = False) -> Tensor:
    """Running products along ``axis``; ``include_initial`` starts with 1. The gradient is
    exact where elements are zero (it costs memory quadratic in the axis length)."""
    x = _in_dtype(x, dtype)
    out = cumulative_prod_p(x, axis=_single_axis(x, axis, "cumulative_prod"), include_initial=include_initial)
    return _in_dtype(out, dtype)


def diff(x: ArrayLike, /, *, axis: int = -1, n: int = 1, prepend: ArrayLike | None = None,
         append: ArrayLike | None = None) -> Tensor:
    """The n-th forward difference along ``axis`` (after joining ``prepend`` / ``append``)."""
    if n < 0:
        raise ValueError(f"agrad.diff: n must be >= 0, got {n}")
    axis = normalize_axis(axis, x.ndim, "diff")[0]
    parts = [p for p in (prepend, x, append) if p is not None]
    y = concat(parts, axis=axis) if len(parts) > 1 else x
    lead = (slice(None),) * axis
    for _ in range(n):
        y = getitem(y, lead + (slice(1, None),)) - getitem(y, lead + (slice(None, -1),))
    return y


def std(x: ArrayLike, /, *, axis: int | tuple[int, ...] | None = None, correction: float = 0.0,
        keepdims: bool = False) -> Tensor:
    """The standard deviation: sqrt(var). Its gradient is inf/nan where the spread is 0,
    as in NumPy and PyTorch."""
    return sqrt(var(x, axis=axis, correction=correction, keepdims=keepdims))
