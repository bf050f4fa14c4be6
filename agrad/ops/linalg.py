"""Linear algebra: matmul (1-D and batched operands), matrix_transpose, tensordot."""

from __future__ import annotations

from ..tape import primitive
from ..tensor import ArrayLike, Tensor


def _matmul_vjp_x(xp, g, ans, x, y):
    if y.ndim == 1:
        if x.ndim == 1:
            return g * y  # dot product: g is 0-D
        return xp.expand_dims(g, axis=-1) * y  # (..., n) @ (n,): g is (...)
    if x.ndim == 1:
        # (n,) @ (..., n, m): x acts as a (1, n) row; the engine sums the batch axes.
        return xp.matmul(xp.expand_dims(g, axis=-2), xp.matrix_transpose(y))[..., 0, :]
    return xp.matmul(g, xp.matrix_transpose(y))


def _matmul_vjp_y(xp, g, ans, x, y):
    if x.ndim == 1:
        if y.ndim == 1:
            return g * x
        return xp.expand_dims(x, axis=-1) * xp.expand_dims(g, axis=-2)  # outer(x, g), batched
    if y.ndim == 1:
        # (..., n, m) @ (m,): each batch contributes x^T g; the engine sums the batch axes.
        return xp.matmul(xp.matrix_transpose(x), xp.expand_dims(g, axis=-1))[..., 0]
    return xp.matmul(xp.matrix_transpose(x), g)


_matmul = primitive("matmul", lambda xp, x, y: xp.matmul(x, y), _matmul_vjp_x, _matmul_vjp_y,
                    jvps=[lambda xp, t, ans, x, y: xp.matmul(t, y), lambda xp, t, ans, x, y: xp.matmul(x, t)])


def matmul(x1: ArrayLike, x2: ArrayLike, /) -> Tensor:
    """Matrix product with the array API's rules for 1-D and batched (broadcast) operands."""
    _check_matmul(x1, x2)
    return _matmul(x1, x2)


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


_matrix_transpose = primitive(
    "matrix_transpose", lambda xp, x: xp.matrix_transpose(x),
    lambda xp, g, ans, x: xp.matrix_transpose(g),
).defjvp(linear=True)


def matrix_transpose(x: ArrayLike, /) -> Tensor:
    """Swap the last two axes."""
    if len(getattr(x, "shape", ())) < 2:
        raise ValueError(f"agrad.matrix_transpose: needs at least 2-D input, got shape {tuple(x.shape)}")
    return _matrix_transpose(x)


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


_tensordot = primitive(
    "tensordot", lambda xp, x, y, axes: xp.tensordot(x, y, axes=(list(axes[0]), list(axes[1]))),
    _tensordot_vjp_x, _tensordot_vjp_y,
    jvps=[lambda xp, t, ans, x, y, axes: _tensordot(t, y, axes=axes),
          lambda xp, t, ans, x, y, axes: _tensordot(x, t, axes=axes)],
)


def tensordot(x1: ArrayLike, x2: ArrayLike, /, *, axes: int | tuple = 2) -> Tensor:
    """Sum products over the given axes (an int ``n``: the last n of x1 with the first n of x2)."""
    ax, ay = _tensordot_axes(axes, x1.ndim, x2.ndim)
    for a, b in zip(ax, ay):
        if x1.shape[a] != x2.shape[b]:
            raise ValueError(f"agrad.tensordot: axis {a} of shape {tuple(x1.shape)} does not match axis {b} "
                             f"of shape {tuple(x2.shape)}")
    return _tensordot(x1, x2, axes=(ax, ay))


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


_linear = primitive(
    "linear", _linear_forward,
    lambda xp, g, ans, x, w, b=None: xp.matmul(g, xp.matrix_transpose(w)),
    lambda xp, g, ans, x, w, b=None: xp.matmul(xp.matrix_transpose(_as_rows(xp, x)), _as_rows(xp, g)),
    lambda xp, g, ans, x, w, b=None: xp.sum(g, axis=tuple(range(g.ndim - 1))) if g.ndim > 1 else g,
    jvps=[lambda xp, t, ans, x, w, b=None: xp.matmul(t, w),
          lambda xp, t, ans, x, w, b=None: xp.matmul(x, t),
          lambda xp, t, ans, x, w, b=None: t],
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
        return _linear(x, weight)
    bs = getattr(bias, "shape", ())
    if len(bs) != 1 or bs[0] != ws[1]:
        raise ValueError(f"agrad.linear: bias has shape {tuple(bs)}, expected ({ws[1]},)")
    return _linear(x, weight, bias)


def vecdot(x1: ArrayLike, x2: ArrayLike, /, *, axis: int = -1) -> Tensor:
    """The dot product of vectors along ``axis`` (broadcasting the other axes), for real inputs."""
    from .reductions import sum

    return sum(x1 * x2, axis=axis)
