"""sort and argsort. The gradient of sort flows through the permutation (each element's
gradient goes back to where it came from), as in PyTorch and JAX; argsort has none."""

from __future__ import annotations

from .. import backend
from ..tensor import ArrayLike, Tensor
from .reductions import normalize_axis
from .shapes import take_along_axis


def argsort(x: ArrayLike, /, *, axis: int = -1, descending: bool = False, stable: bool = True) -> Tensor:
    """The indices that sort ``x`` along ``axis`` (no gradient)."""
    raw = x._data if isinstance(x, Tensor) else x
    xp = backend.namespace_of((raw,), "argsort")
    return Tensor(xp.argsort(raw, axis=axis, descending=descending, stable=stable))


def sort(x: ArrayLike, /, *, axis: int = -1, descending: bool = False, stable: bool = True) -> Tensor:
    """``x`` sorted along ``axis``; differentiable through the permutation."""
    axis = normalize_axis(axis, x.ndim, "sort")[0]
    return take_along_axis(x, argsort(x, axis=axis, descending=descending, stable=stable), axis=axis)
