"""The standard's set functions: unique_values, unique_counts, unique_inverse, unique_all.

A set function has no derivative worth the name (the result changes shape as values
meet), so, as in PyTorch, a traced input is an error rather than a silently constant
result: detach it first.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import backend
from ..tape import is_traced
from ..tensor import ArrayLike, Tensor


class UniqueAllResult(NamedTuple):
    values: Tensor
    indices: Tensor
    inverse_indices: Tensor
    counts: Tensor


class UniqueCountsResult(NamedTuple):
    values: Tensor
    counts: Tensor


class UniqueInverseResult(NamedTuple):
    values: Tensor
    inverse_indices: Tensor


def _raw(x: ArrayLike, op: str) -> tuple[Any, Any]:
    if is_traced(x):
        raise TypeError(f"agrad.{op}: set functions have no derivative; call it on x.detach() (the values) and "
                        f"select from x with the indices it returns if a gradient must flow")
    raw = x._data if isinstance(x, Tensor) else x
    return backend.namespace_of((raw,), op), raw


def unique_values(x: ArrayLike, /) -> Tensor:
    """The distinct values of ``x``, sorted."""
    xp, raw = _raw(x, "unique_values")
    return Tensor(xp.unique_values(raw))


def unique_counts(x: ArrayLike, /) -> UniqueCountsResult:
    """The distinct values and how often each occurs."""
    xp, raw = _raw(x, "unique_counts")
    r = xp.unique_counts(raw)
    return UniqueCountsResult(Tensor(r.values), Tensor(r.counts))


def unique_inverse(x: ArrayLike, /) -> UniqueInverseResult:
    """The distinct values, and for each element of ``x`` the index of its value."""
    xp, raw = _raw(x, "unique_inverse")
    r = xp.unique_inverse(raw)
    return UniqueInverseResult(Tensor(r.values), Tensor(r.inverse_indices))


def unique_all(x: ArrayLike, /) -> UniqueAllResult:
    """Values, first indices, inverse indices and counts."""
    xp, raw = _raw(x, "unique_all")
    r = xp.unique_all(raw)
    return UniqueAllResult(Tensor(r.values), Tensor(r.indices), Tensor(r.inverse_indices), Tensor(r.counts))
