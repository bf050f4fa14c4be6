"""Linear algebra: matmul (1-D and batched operands), matrix_transpose, tensordot, linear,
vecdot, and the array API's linalg extension (this module is ``agrad.linalg``)."""

from __future__ import annotations

import math
from typing import Any

from .. import backend
from ..batching import rules
from ..tape import is_traced, primitive
from ..tensor import ArrayLike, Tensor
from . import reductions as R
from .creation import ones_like, zeros
from .data_types import conj, finfo, isdtype
from .elementwise import abs as _abs
from .elementwise import pow as _pow
from .elementwise import where
from .no_gradient import count_nonzero
from .shapes import broadcast_to, expand_dims, getitem, moveaxis, reshape, stack, take


def _matmul_vjp_x(xp, g, ans, x, y):
    if y.ndim == 1:
        if x.ndim == 1:
            return g * y  # dot product: g is 0-D
        return xp.expand_dims(g, axis=-1) * y  # (..., n) @ (n,): g is (...)
    if x.ndim == 1:
        # (n,) @ (..., n, m): x acts as a (1, n) row; the engine sums the batch axes.
        return xp.matmul(xp.expand_dims(g, axis=-2), xp.matrix_transpose(y))[..., 0, :]
    return xp.matmul(g, xp.matrix_transpose(y))


def _rows_product(xp, a, b):
    """``a^T b`` for (..., k, n) and (..., k, m), a weight's gradient. With k == 1 (a batch
    of one) it is an outer product, computed as one: NumPy's matmul takes 5-6x as long for a
    contraction of length 1 (157 against 27 us for (784, 1) @ (1, 72) in float32), the same
    values."""
    if a.shape[-2] == 1:
        return xp.matrix_transpose(a) * b
    return xp.matmul(xp.matrix_transpose(a), b)


def _matmul_vjp_y(xp, g, ans, x, y):
    if x.ndim == 1:
        if y.ndim == 1:
            return g * x
        return xp.expand_dims(x, axis=-1) * xp.expand_dims(g, axis=-2)  # outer(x, g), batched
    if y.ndim == 1:
        # (..., n, m) @ (m,): each batch contributes x^T g; the engine sums the batch axes.
        return xp.matmul(xp.matrix_transpose(x), xp.expand_dims(g, axis=-1))[..., 0]
    return _rows_product(xp, x, g)


def _matmul_batch(xp, dims, x, y):
    dx, dy = dims
    rx, ry = rules.logical_rank(x, dx), rules.logical_rank(y, dy)
    # One operand batched, its batch axis outside the matrix axes and the other operand no
    # wider than a matrix: one product as it is (the per-example case: x @ W).
    if dx is not None and dy is None and ry <= 2 and (rx == 1 or dx <= rx - 2):
        if rx == 1:
            return matmul_p(rules.to_front(xp, x, dx), y), 0
        return matmul_p(x, y), dx
    if dx is None and dy is not None and rx <= 2 and ry >= 2 and dy <= ry - 2:
        return matmul_p(x, y), dy
    # Else: batch axes in front, vectors as matrices, leading axes padded to one rank.
    squeeze = []
    if dx is not None:
        x = rules.to_front(xp, x, dx)
        if rx == 1:
            x = xp.expand_dims(x, axis=1)
            rx = 2
            squeeze.append(-2)
    if dy is not None:
        y = rules.to_front(xp, y, dy)
        if ry == 1:
            y = xp.expand_dims(y, axis=-1)
            ry = 2
            squeeze.append(-1)
    lead = max(rx if dx is not None else 0, ry if dy is not None else 0, rx, ry) - 2
    if dx is not None and rx - 2 < lead:
        x = xp.reshape(x, (x.shape[0],) + (1,) * (lead - rx + 2) + tuple(x.shape[1:]))
    if dy is not None and ry - 2 < lead:
        y = xp.reshape(y, (y.shape[0],) + (1,) * (lead - ry + 2) + tuple(y.shape[1:]))
    if dx is None and rx >= 2:
        x = xp.expand_dims(x, axis=0) if rx - 2 >= lead else x
    if dy is None and ry >= 2:
        y = xp.expand_dims(y, axis=0) if ry - 2 >= lead else y
    out = matmul_p(x, y)
    if squeeze:
        out = xp.squeeze(out, axis=tuple(sorted(squeeze)))
    return out, 0


matmul_p = primitive("matmul", lambda xp, x, y: xp.matmul(x, y), vjp=[_matmul_vjp_x, _matmul_vjp_y],
                     jvp=[lambda xp, t, ans, x, y: xp.matmul(t, y), lambda xp, t, ans, x, y: xp.matmul(x, t)],
                     batch=_matmul_batch)


def matmul(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """Matrix product with the array API's rules for 1-D and batched (broadcast) operands."""
    _check_matmul(x1, x2)
    return matmul_p(x1, x2)


def _check_matmul(x1, x2):
    s1, s2 = getattr(x1, "shape", None), getattr(x2, "shape", None)
    if s1 is None or s2 is None or len(s1) == 0 or len(s2) == 0:
        raise ValueError(f"agrad.matmul: operands must be at least 1-D arrays, got shapes {s1} and {s2}")
    k1 = s1[-1]
    k2 = s2[0] if len(s2) == 1 else s2[-2]
    if k1 != k2:
        raise ValueError(
            f"agrad.matmul: shapes {tuple(s1)} and {tuple(s2)} do not align: the last axis of the first "
            f"({k1}) must equal the {'only' if len(s2) == 1 else 'second-to-last'} axis of the second ({k2})"
        )


matrix_transpose_p = primitive(
    "matrix_transpose", lambda xp, x: xp.matrix_transpose(x),
    vjp=[lambda xp, g, ans, x: xp.matrix_transpose(g)], linear=True,
    view=lambda base, new: matrix_transpose(new),  # (a view of x: see agrad.inplace),
    batch=rules.matrix_op,
)


def matrix_transpose(x: ArrayLike, /) -> Tensor:
    """Swap the last two axes."""
    if len(getattr(x, "shape", ())) < 2:
        raise ValueError(f"agrad.matrix_transpose: needs at least 2-D input, got shape {tuple(x.shape)}")
    return matrix_transpose_p(x)


def _tensordot_axes(axes, nx: int, ny: int):
    if isinstance(axes, int):
        if axes < 0 or axes > min(nx, ny):
            raise ValueError(f"agrad.tensordot: axes={axes} is out of range for {nx}-D and {ny}-D inputs")
        return tuple(range(nx - axes, nx)), tuple(range(axes))
    ax, ay = axes
    ax = tuple(a % nx for a in ((ax,) if isinstance(ax, int) else ax))
    ay = tuple(a % ny for a in ((ay,) if isinstance(ay, int) else ay))
    if len(ax) != len(ay):
        raise ValueError(f"agrad.tensordot: axes {axes} pair {len(ax)} axes with {len(ay)}")
    return ax, ay


def _argsort(seq):
    return tuple(sorted(range(len(seq)), key=seq.__getitem__))


def _tensordot_vjp_x(xp, g, ans, x, y, axes):
    ax, ay = axes
    fx = [i for i in range(x.ndim) if i not in ax]
    fy = [i for i in range(y.ndim) if i not in ay]
    gx = xp.tensordot(g, y, axes=(list(range(len(fx), g.ndim)), fy))
    # gx's axes: x's free axes, then the contracted x axes ordered as y's remaining axes.
    order = fx + [ax[k] for k in _argsort(ay)]
    return xp.permute_dims(gx, _argsort(order))


def _tensordot_vjp_y(xp, g, ans, x, y, axes):
    ax, ay = axes
    fx = [i for i in range(x.ndim) if i not in ax]
    fy = [i for i in range(y.ndim) if i not in ay]
    gy = xp.tensordot(x, g, axes=(fx, list(range(len(fx)))))
    order = [ay[k] for k in _argsort(ax)] + fy
    return xp.permute_dims(gy, _argsort(order))


def _tensordot_batch(xp, dims, x, y, axes):
    """Batching of tensordot: the batch axis in front of the batched operand's free axes
    (both batched: a batched matrix product of the free and contracted axes)."""
    dx, dy = dims
    ax, ay = tuple(axes[0]), tuple(axes[1])
    if dy is None:
        x = rules.to_front(xp, x, dx)
        return tensordot_p(x, y, axes=(tuple(a + 1 for a in ax), ay)), 0
    if dx is None:
        y = rules.to_front(xp, y, dy)
        return tensordot_p(x, y, axes=(ax, tuple(a + 1 for a in ay))), x.ndim - len(ax)
    x, y = rules.to_front(xp, x, dx), rules.to_front(xp, y, dy)
    fx = [i for i in range(x.ndim - 1) if i not in ax]
    fy = [i for i in range(y.ndim - 1) if i not in ay]
    xs, ys = tuple(x.shape), tuple(y.shape)
    k = math.prod(xs[a + 1] for a in ax)
    xm = xp.reshape(xp.permute_dims(x, (0, *(i + 1 for i in fx), *(a + 1 for a in ax))),
                    (xs[0], math.prod(xs[i + 1] for i in fx), k))
    ym = xp.reshape(xp.permute_dims(y, (0, *(a + 1 for a in ay), *(i + 1 for i in fy))),
                    (ys[0], k, math.prod(ys[i + 1] for i in fy)))
    out = matmul_p(xm, ym)
    return xp.reshape(out, (xs[0], *(xs[i + 1] for i in fx), *(ys[i + 1] for i in fy))), 0


tensordot_p = primitive(
    # (tuples: CuPy compares the axes with ((), ()) to accept 0-d inputs)
    "tensordot", lambda xp, x, y, axes: xp.tensordot(x, y, axes=(tuple(axes[0]), tuple(axes[1]))),
    vjp=[_tensordot_vjp_x, _tensordot_vjp_y],
    jvp=[lambda xp, t, ans, x, y, axes: tensordot_p(t, y, axes=axes),
         lambda xp, t, ans, x, y, axes: tensordot_p(x, t, axes=axes)],
    batch=_tensordot_batch,
)


def tensordot(x1: ArrayLike, x2: ArrayLike, /, *, axes: int | tuple = 2) -> Tensor:
    """Sum products over the given axes (an int ``n``: the last n of x1 with the first n of x2)."""
    ax, ay = _tensordot_axes(axes, x1.ndim, x2.ndim)
    for a, b in zip(ax, ay):
        if x1.shape[a] != x2.shape[b]:
            raise ValueError(f"agrad.tensordot: axis {a} of shape {tuple(x1.shape)} does not match axis {b} "
                             f"of shape {tuple(x2.shape)}")
    return tensordot_p(x1, x2, axes=(ax, ay))


def _linear_forward(xp, x, w, b=None):
    out = xp.matmul(x, w)
    if b is None:
        return out
    if xp.mutable and out.dtype == b.dtype:
        out += b  # the matmul result is ours: add the bias without a second temporary
        return out
    return out + b


def _as_rows(xp, a):
    """(..., n) -> (prod(...), n), so that a batched x contributes x^T g in one product."""
    return a if a.ndim == 2 else xp.reshape(a, (-1, a.shape[-1]))


def _linear_batch(xp, dims, x, w, b=None):
    """Batching of ``x @ w + b``: per-example inputs with shared weights are one product
    (the examples as more rows); batched weights or biases (an ensemble) go through the
    matmul's and the addition's rules."""
    dx, dw = dims[0], dims[1]
    db = dims[2] if len(dims) > 2 else None
    if dw is None and db is None:
        x = rules.to_front(xp, x, dx)
        return (linear_p(x, w) if b is None else linear_p(x, w, b)), 0
    out, d = _matmul_batch(xp, (dx, dw), x, w) if dx is not None or dw is not None else (linear_p(x, w), None)
    if b is None:
        return out, d
    (out, b), d = rules.aligned(xp, (d, db), (out, b))
    return out + b, d


linear_p = primitive(
    "linear", _linear_forward,
    vjp=[lambda xp, g, ans, x, w, b=None: xp.matmul(g, xp.matrix_transpose(w)),
         lambda xp, g, ans, x, w, b=None: _rows_product(xp, _as_rows(xp, x), _as_rows(xp, g)),
         lambda xp, g, ans, x, w, b=None: xp.sum(g, axis=tuple(range(g.ndim - 1))) if g.ndim > 1 else g],
    jvp=[lambda xp, t, ans, x, w, b=None: xp.matmul(t, w),
         lambda xp, t, ans, x, w, b=None: xp.matmul(x, t),
         lambda xp, t, ans, x, w, b=None: t],
    batch=_linear_batch,
)


def linear(x: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None) -> Tensor:
    """``x @ weight + bias`` as one recorded op (one node, one temporary).

    ``x`` has shape (..., in), ``weight`` (in, out) and ``bias`` (out,).
    """
    xs, ws = getattr(x, "shape", ()), getattr(weight, "shape", ())
    if len(xs) < 1 or len(ws) != 2 or xs[-1] != ws[0]:
        raise ValueError(f"agrad.linear: x of shape {tuple(xs)} and weight of shape {tuple(ws)} do not align: x's "
                         f"last axis must equal weight's first (weight is (in_features, out_features))")
    if bias is None:
        return linear_p(x, weight)
    bs = getattr(bias, "shape", ())
    if len(bs) != 1 or bs[0] != ws[1]:
        raise ValueError(f"agrad.linear: bias has shape {tuple(bs)}, expected ({ws[1]},)")
    return linear_p(x, weight, bias)


def vecdot(x1: ArrayLike, x2: ArrayLike, /, *, axis: int = -1) -> Tensor:
    """The dot product of vectors along ``axis`` (the other axes broadcast): sum(conj(x1) * x2)."""
    n1, n2 = x1.shape[axis] if x1.ndim else None, x2.shape[axis] if x2.ndim else None
    if n1 is None or n1 != n2:
        raise ValueError(f"agrad.vecdot: axis {axis} must have the same length in both arrays, got shapes "
                         f"{tuple(x1.shape)} and {tuple(x2.shape)}")
    if isdtype(x1.dtype, "complex floating"):
        x1 = conj(x1)
    prod = x1 * x2
    return R.sum(prod, axis=axis, dtype=prod.dtype)


# --------------------------------------------------------------------------- the linalg extension
# agrad.linalg is this module: the solvers and decompositions live in decompositions.py
# (with their rules); what follows is built from differentiable operations.

from .decompositions import (  # noqa: E402  (re-exported: xp.linalg.* in rules run on this module)
    EighResult,
    QRResult,
    SlogdetResult,
    SVDResult,
    _eye_like,
    cholesky,
    det,
    eigh,
    eigvalsh,
    inv,
    qr,
    slogdet,
    solve,
    svd,
    svdvals,
)

__all__ = [
    "EighResult", "QRResult", "SVDResult", "SlogdetResult", "cholesky", "cross", "det", "diagonal", "eigh",
    "eigvalsh", "inv", "linear", "matmul", "matrix_norm", "matrix_power", "matrix_rank", "matrix_transpose", "outer",
    "pinv", "qr", "slogdet", "solve", "svd", "svdvals", "tensordot", "trace", "vecdot", "vector_norm",
]


def _two_norm_vjp(xp, g, ans, x, axis, keepdims):
    # x / |x|, and 0 where |x| = 0 (a subgradient, as PyTorch), not 0 / 0.
    norm = R._expand(xp, ans, x, axis, keepdims)
    return R._expand(xp, g, x, axis, keepdims) * x / xp.where(norm == 0.0, 1.0, norm)


def _two_norm_jvp(xp, t, ans, x, axis, keepdims):
    norm = R._expand(xp, ans, x, axis, keepdims)
    return xp.sum(t * x / xp.where(norm == 0.0, 1.0, norm), axis=axis, keepdims=keepdims)


vector_norm_2_p = primitive(
    "vector_norm_2", lambda xp, x, axis, keepdims: xp.linalg.vector_norm(x, axis=axis, keepdims=keepdims),
    vjp=[_two_norm_vjp], jvp=[_two_norm_jvp],
    batch=rules.reduction,
)


def vector_norm(x: ArrayLike, /, *, axis: int | tuple[int, ...] | None = None, keepdims: bool = False,
                ord: float = 2) -> Tensor:
    """The ``ord``-norm over ``axis`` (None: all elements). At the zero vector the gradient
    of the 2-norm is 0 (a subgradient, as PyTorch), not nan."""
    axes = R.normalize_axis(axis, x.ndim, "vector_norm")
    if ord == 2:
        return vector_norm_2_p(x, axis=axes, keepdims=keepdims)
    if ord == math.inf:
        return R.max(_abs(x), axis=axes, keepdims=keepdims)
    if ord == -math.inf:
        return R.min(_abs(x), axis=axes, keepdims=keepdims)
    if ord == 0:  # the number of nonzero elements: no gradient
        count = count_nonzero(x, axis=axes, keepdims=keepdims)._data
        xp = backend.namespace_of((count,), "vector_norm")
        return Tensor(xp.astype(count, (x._data if isinstance(x, Tensor) else x).dtype))
    if ord == 1:
        return R.sum(_abs(x), axis=axes, keepdims=keepdims)
    return _pow(R.sum(_pow(_abs(x), float(ord)), axis=axes, keepdims=keepdims), 1.0 / ord)


def matrix_norm(x: ArrayLike, /, *, keepdims: bool = False, ord: Any = "fro") -> Tensor:
    """The matrix norm over the last two axes: 'fro', 'nuc', 1, -1, 2, -2, inf or -inf."""
    axes = (x.ndim - 2, x.ndim - 1)
    if ord == "fro":
        return vector_norm(x, axis=axes, keepdims=keepdims)
    if ord in ("nuc", 2, -2):
        s = svdvals(x)
        out = R.sum(s, axis=-1) if ord == "nuc" else (R.max(s, axis=-1) if ord == 2 else R.min(s, axis=-1))
    elif ord in (1, -1):
        cols = R.sum(_abs(x), axis=-2)
        out = R.max(cols, axis=-1) if ord == 1 else R.min(cols, axis=-1)
    elif ord in (math.inf, -math.inf):
        rows = R.sum(_abs(x), axis=-1)
        out = R.max(rows, axis=-1) if ord == math.inf else R.min(rows, axis=-1)
    else:
        raise ValueError(f"agrad.linalg.matrix_norm: unknown ord {ord!r}")
    if keepdims:
        out = expand_dims(expand_dims(out, axis=-1), axis=-1)
    return out


def matrix_power(x: ArrayLike, n: int, /) -> Tensor:
    """x @ x @ ... (n times) for each square matrix; n < 0 uses the inverse, n == 0 the identity."""
    if not isinstance(n, int):
        raise TypeError(f"agrad.linalg.matrix_power: n must be an integer, got {n!r}")
    if n == 0:
        raw = x._data if isinstance(x, Tensor) else x
        eye = _eye_like(None, raw.shape[-1], raw)
        return broadcast_to(ones_like(x)[..., 0:1, 0:1] * Tensor(eye), tuple(x.shape))
    base = inv(x) if n < 0 else x
    n = abs(n)
    result = None
    while n:  # repeated squaring: log2(n) products
        if n & 1:
            result = base if result is None else result @ base
        n >>= 1
        if n:
            base = base @ base
    return result


def matrix_rank(x: ArrayLike, /, *, rtol: float | None = None) -> Tensor:
    """The number of singular values above rtol * the largest (no gradient)."""
    raw = x._data if isinstance(x, Tensor) else x
    xp = backend.namespace_of((raw,), "matrix_rank")
    return Tensor(xp.linalg.matrix_rank(raw, rtol=rtol))


def diagonal(x: ArrayLike, /, *, offset: int = 0) -> Tensor:
    """The ``offset`` diagonal of the last two axes."""
    rows, cols = x.shape[-2], x.shape[-1]
    start_r, start_c = max(-offset, 0), max(offset, 0)
    length = max(0, min(rows - start_r, cols - start_c))
    raw = x._data if isinstance(x, Tensor) else x
    xp = backend.namespace_of((raw,), "diagonal")
    k = xp.arange(length, device=raw.device)
    flat_index = (k + start_r) * cols + (k + start_c)
    flat = reshape(x, tuple(x.shape[:-2]) + (rows * cols,))
    return take(flat, flat_index, axis=flat.ndim - 1)


def trace(x: ArrayLike, /, *, offset: int = 0, dtype: Any = None) -> Tensor:
    """The sum of the ``offset`` diagonal of the last two axes."""
    return R.sum(diagonal(x, offset=offset), axis=-1, dtype=dtype)


def outer(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """The outer product of two vectors."""
    if len(x1.shape) != 1 or len(x2.shape) != 1:
        raise ValueError(f"agrad.linalg.outer: needs two vectors, got shapes {tuple(x1.shape)} and {tuple(x2.shape)}")
    return expand_dims(x1, axis=1) * expand_dims(x2, axis=0)


def cross(x1: ArrayLike, x2: ArrayLike, /, *, axis: int = -1) -> Tensor:
    """The cross product of 3-vectors along ``axis`` (the other axes broadcast)."""
    if x1.shape[axis] != 3 or x2.shape[axis] != 3:
        raise ValueError(f"agrad.linalg.cross: axis {axis} must have length 3, got shapes {tuple(x1.shape)} and "
                         f"{tuple(x2.shape)}")
    a1 = x1.ndim + axis if axis < 0 else axis
    a2 = x2.ndim + axis if axis < 0 else axis

    def part(v, a, i):
        return getitem(v, (slice(None),) * a + (i, Ellipsis))

    p = [part(x1, a1, i) for i in range(3)]
    q = [part(x2, a2, i) for i in range(3)]
    out = stack([p[1] * q[2] - p[2] * q[1], p[2] * q[0] - p[0] * q[2], p[0] * q[1] - p[1] * q[0]], axis=-1)
    nd = out.ndim
    ax = nd + axis if axis < 0 else axis
    return moveaxis(out, -1, ax) if ax != nd - 1 else out


def pinv(x: ArrayLike, /, *, rtol: float | None = None) -> Tensor:
    """The Moore-Penrose pseudo-inverse, from the reduced SVD; singular values at or below
    rtol * the largest are treated as zero (their derivative too)."""
    raw = x._data if isinstance(x, Tensor) else x
    if not is_traced(x):  # nothing to differentiate: the backend's own pinv (complex input included)
        xp = backend.namespace_of((raw,), "pinv")
        return Tensor(xp.linalg.pinv(raw, rtol=rtol._data if isinstance(rtol, Tensor) else rtol))
    if 0 in tuple(x.shape):  # an empty matrix, or an empty batch: the result is empty too
        return zeros(tuple(x.shape[:-2]) + (x.shape[-1], x.shape[-2]), dtype=raw.dtype, device=raw.device)
    u, s, vh = svd(x, full_matrices=False)
    if rtol is None:
        rtol = max(x.shape[-2], x.shape[-1]) * _eps(x)
    elif hasattr(rtol, "shape") and len(rtol.shape):  # one tolerance per matrix of the batch
        rtol = expand_dims(Tensor(rtol._data if isinstance(rtol, Tensor) else rtol), axis=-1)
    cutoff = R.max(s, axis=-1, keepdims=True).detach() * rtol
    keep = s > cutoff
    s_inv = where(keep, 1.0 / where(keep, s, 1.0), 0.0)
    return matrix_transpose(vh) @ (expand_dims(s_inv, axis=-1) * matrix_transpose(u))


def _eps(x: ArrayLike) -> float:
    return finfo(x.dtype if isinstance(x, Tensor) else x.dtype).eps
