"""dtype casts and device transfers, both differentiable."""

from __future__ import annotations

from typing import Any

from .. import backend, dtypes
from ..tape import primitive
from ..tensor import ArrayLike, Tensor

_astype = primitive(
    "astype", lambda xp, x, dtype: xp.astype(x, backend.resolve_dtype(xp, dtype)),
    lambda xp, g, ans, x, dtype: xp.astype(g, x.dtype),
)


def astype(x: ArrayLike, dtype: Any, /, *, copy: bool = True, device: Any = None) -> Tensor:
    """Cast to ``dtype`` (agrad.float32, 'float32', a backend dtype...); the gradient is
    cast back. ``device`` moves the result too; with ``copy=False`` an unchanged ``x`` is
    returned as it is."""
    if device is not None:
        x = to_device(x, device)
    if not copy and isinstance(x, Tensor) and x.dtype == dtype:
        return x
    if not dtypes.is_floating(dtype):  # integer and boolean results carry no gradient
        raw = x._data if isinstance(x, Tensor) else x
        xp = backend.namespace_of((raw,), "astype")
        return Tensor(xp.astype(raw, backend.resolve_dtype(xp, dtype)))
    return _astype(x, dtype=dtype)


_to_device = primitive(
    "to_device", lambda xp, x, device: backend.to_device(x, device),
    lambda xp, g, ans, x, device: xp.to_device(g, x.device),
)


def to_device(x: ArrayLike, device: Any, /, *, stream: Any = None) -> Tensor:
    """Move ``x`` to ``device`` ('cpu', 'cuda', 'cuda:N', array-api-strict devices...).

    NumPy <-> CuPy moves change backend. Differentiable: the gradient moves back.
    """
    return _to_device(x, device=device)


_identity = primitive("identity", lambda xp, x: x, lambda xp, g, ans, x: g)


def identity(x: ArrayLike, /) -> Tensor:
    """``x`` itself as a recorded op: a new Tensor on the tape (no copy of the data)."""
    return _identity(x)


# Casts, transfers and the identity are linear: tangents are cast, moved, passed on.
for _prim in (_astype, _to_device, _identity):
    _prim.defjvp(linear=True)
# The identity, and a transfer to the device an array is on, give the input's array itself
# (a view, for in-place updates: see agrad.inplace).
_identity.view = lambda base, new: new
_to_device.view = lambda base, new, device: to_device(new, base.device)
