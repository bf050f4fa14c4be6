"""Reductions (sum, mean, var, max, min, logsumexp) and softmax / log_softmax."""

from __future__ import annotations

import builtins
import math
from typing import Any

from ..batching import rules
from ..tape import primitive
from ..tensor import ArrayLike, Tensor
from .conversions import astype


def normalize_axis(axis, ndim: int, op: str) -> tuple:
    """``axis`` (None, int or tuple) as a sorted tuple of non-negative ints."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    for a in axes:
        if not isinstance(a, int) or not -ndim <= a < builtins.max(ndim, 1):
            raise ValueError(f"agrad.{op}: axis {a!r} is out of range for a {ndim}-D input")
        out.append(a % ndim if ndim else 0)
    if len(set(out)) != len(out):
        raise ValueError(f"agrad.{op}: repeated axis in {axis!r}")
    return tuple(sorted(out))


def _kept_shape(shape: tuple, axes: tuple) -> tuple:
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


def _expand(xp, g, x, axes, keepdims):
    """Reshape a reduced gradient so that it broadcasts against ``x``."""
    return g if keepdims else xp.reshape(g, _kept_shape(tuple(x.shape), axes))


def _count(shape, axes) -> int:
    n = 1
    for a in axes:
        n *= shape[a]
    return n


def _ndim(x) -> int:
    return len(x.shape) if hasattr(x, "shape") else 0


# Reductions receive ``axis`` already normalised to a tuple by the public wrappers.


def _reduce_batch(prim, dims, x, axis, keepdims, **params):
    """Batching: the same logical axes (None: all) of the physical array."""
    (d,) = dims
    axes = rules.physical_axes(axis, d, x.ndim - 1)
    return prim(x, axis=axes, keepdims=keepdims, **params), rules.reduced_bdim(d, axes, keepdims)


sum_p = primitive(
    "sum", lambda xp, x, axis, keepdims: xp.sum(x, axis=axis, keepdims=keepdims),
    vjp=[lambda xp, g, ans, x, axis, keepdims: xp.broadcast_to(_expand(xp, g, x, axis, keepdims), tuple(x.shape))],
    linear=True, batch=lambda xp, dims, x, axis, keepdims: _reduce_batch(sum_p, dims, x, axis, keepdims),
)


def sum(x: ArrayLike, /, *, axis: int | tuple[int, ...] | None = None, dtype: Any = None,
        keepdims: bool = False) -> Tensor:
    """Sum over ``axis`` (None: all axes), in ``dtype`` if given (the input is cast first)."""
    if dtype is not None:
        x = astype(x, dtype)
    out = sum_p(x, axis=normalize_axis(axis, _ndim(x), "sum"), keepdims=keepdims)
    if dtype is not None and out.dtype != dtype:  # (NumPy accumulates small integers in 64 bits)

        out = astype(out, dtype)
    return out


mean_p = primitive(
    "mean", lambda xp, x, axis, keepdims: xp.mean(x, axis=axis, keepdims=keepdims),
    vjp=[lambda xp, g, ans, x, axis, keepdims: xp.broadcast_to(
        _expand(xp, g, x, axis, keepdims) / _count(tuple(x.shape), axis), tuple(x.shape))],
    linear=True,
    batch=rules.reduction,
)


def mean(x: ArrayLike, /, *, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
    """Arithmetic mean over ``axis``."""
    return mean_p(x, axis=normalize_axis(axis, _ndim(x), "mean"), keepdims=keepdims)


def _var_scale(x, axis, correction) -> float:
    # 2 / (n - correction); with no degrees of freedom left it is inf, so that the
    # gradient is nan/inf as the value is (PyTorch, NumPy), never a ZeroDivisionError.
    dof = _count(tuple(x.shape), axis) - correction
    return 2.0 / dof if dof != 0 else math.inf


def _var_vjp(xp, g, ans, x, axis, keepdims, correction):
    centred = x - xp.mean(x, axis=axis, keepdims=True)
    return _expand(xp, g, x, axis, keepdims) * centred * _var_scale(x, axis, correction)


def _var_jvp(xp, t, ans, x, axis, keepdims, correction):
    centred = x - xp.mean(x, axis=axis, keepdims=True)
    return xp.sum(centred * t, axis=axis, keepdims=keepdims) * _var_scale(x, axis, correction)


var_p = primitive(
    "var", lambda xp, x, axis, keepdims, correction: xp.var(x, axis=axis, keepdims=keepdims, correction=correction),
    vjp=[_var_vjp], jvp=[_var_jvp],
    batch=rules.reduction,
)


def var(x: ArrayLike, /, *, axis: int | tuple[int, ...] | None = None, correction: float = 0.0,
        keepdims: bool = False) -> Tensor:
    """Variance over ``axis`` with ``correction`` degrees of freedom (0: population). With
    no degrees of freedom left the value and gradient are nan/inf, as in NumPy."""
    return var_p(x, axis=normalize_axis(axis, _ndim(x), "var"), keepdims=keepdims, correction=correction)


def _extremum_rules(name):
    # The rules find the extremal elements by reducing x again rather than by reading the output:
    # code that updates a maximum in place before using it (SciPy's log_softmax:
    # xpx.at(m, ~isfinite(m)).set(0)) can still differentiate through it (saves: x only).
    def hit(xp, x, axis):
        return xp.astype(x == getattr(xp, name)(x, axis=axis, keepdims=True), x.dtype)

    def vjp(xp, g, ans, x, axis, keepdims):
        # Ties share the gradient equally: each maximal element gets g / (number of ties).
        h = hit(xp, x, axis)
        return _expand(xp, g, x, axis, keepdims) * (h / xp.sum(h, axis=axis, keepdims=True))

    def jvp(xp, t, ans, x, axis, keepdims):
        h = hit(xp, x, axis)
        return xp.sum(t * h, axis=axis, keepdims=keepdims) / xp.sum(h, axis=axis, keepdims=keepdims)

    return vjp, jvp


_max_vjp, _max_jvp = _extremum_rules("max")
max_p = primitive("max", lambda xp, x, axis, keepdims: xp.max(x, axis=axis, keepdims=keepdims), vjp=[_max_vjp],
                  jvp=[_max_jvp], saves=[(0,)], batch=rules.reduction)


def max(x: ArrayLike, /, *, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
    """Maximum over ``axis``. Tied maxima share the gradient equally."""
    return max_p(x, axis=normalize_axis(axis, _ndim(x), "max"), keepdims=keepdims)


_min_vjp, _min_jvp = _extremum_rules("min")
min_p = primitive("min", lambda xp, x, axis, keepdims: xp.min(x, axis=axis, keepdims=keepdims), vjp=[_min_vjp],
                  jvp=[_min_jvp], saves=[(0,)], batch=rules.reduction)


def min(x: ArrayLike, /, *, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
    """Minimum over ``axis``. Tied minima share the gradient equally."""
    return min_p(x, axis=normalize_axis(axis, _ndim(x), "min"), keepdims=keepdims)


def _empty_along(x, axis) -> bool:
    return any(x.shape[a] == 0 for a in axis)


def _logsumexp(xp, x, axis, keepdims):
    if _empty_along(x, axis):  # the log of an empty sum: -inf (max has no identity to start from)
        return xp.sum(x, axis=axis, keepdims=keepdims) - math.inf
    m = xp.max(x, axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0.0)  # all -inf (or inf) rows: keep them exact
    out = xp.log(xp.sum(xp.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else xp.reshape(out, tuple(s for i, s in enumerate(out.shape) if i not in axis))


logsumexp_p = primitive(
    "logsumexp", _logsumexp,
    vjp=[lambda xp, g, ans, x, axis, keepdims: _expand(xp, g, x, axis, keepdims)
         * xp.exp(x - _expand(xp, ans, x, axis, keepdims))],
    jvp=[lambda xp, t, ans, x, axis, keepdims: xp.sum(
        t * xp.exp(x - _expand(xp, ans, x, axis, keepdims)), axis=axis, keepdims=keepdims)],
    batch=rules.reduction,
)


def logsumexp(x: ArrayLike, /, *, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
    """log(sum(exp(x))) over ``axis``, computed stably (finite for inputs of +-1e4; -inf
    over an empty axis)."""
    return logsumexp_p(x, axis=normalize_axis(axis, _ndim(x), "logsumexp"), keepdims=keepdims)


def _softmax(xp, x, axis):
    if _empty_along(x, axis):
        return xp.zeros_like(x)
    e = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
    return e / xp.sum(e, axis=axis, keepdims=True)


softmax_p = primitive(
    "softmax", _softmax,
    vjp=[lambda xp, g, ans, x, axis: ans * (g - xp.sum(g * ans, axis=axis, keepdims=True))],
    jvp=[lambda xp, t, ans, x, axis: ans * (t - xp.sum(ans * t, axis=axis, keepdims=True))],
    batch=rules.along_axes,
)


def softmax(x: ArrayLike, /, axis: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along ``axis``, computed stably."""
    return softmax_p(x, axis=normalize_axis(axis, _ndim(x), "softmax"))


def _log_softmax(xp, x, axis):
    if _empty_along(x, axis):
        return xp.zeros_like(x)
    shifted = x - xp.max(x, axis=axis, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))


log_softmax_p = primitive(
    "log_softmax", _log_softmax,
    vjp=[lambda xp, g, ans, x, axis: g - xp.exp(ans) * xp.sum(g, axis=axis, keepdims=True)],
    jvp=[lambda xp, t, ans, x, axis: t - xp.sum(xp.exp(ans) * t, axis=axis, keepdims=True)],
    batch=rules.along_axes,
)


def log_softmax(x: ArrayLike, /, axis: int = -1) -> Tensor:
    """x - logsumexp(x) along ``axis``, computed stably."""
    return log_softmax_p(x, axis=normalize_axis(axis, _ndim(x), "log_softmax"))
