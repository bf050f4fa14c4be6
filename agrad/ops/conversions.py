"""dtype casts and device transfers, both differentiable."""

from __future__ import annotations

from typing import Any

from .. import backend, dtypes
from ..batching import rules
from ..tape import primitive
from ..tensor import ArrayLike, Tensor

# Casts, transfers and the identity are linear: tangents are cast, moved, passed on.

astype_p = primitive(
    "astype", lambda xp, x, dtype: xp.astype(x, backend.resolve_dtype(xp, dtype)),
    vjp=[lambda xp, g, ans, x, dtype: xp.astype(g, x.dtype)], linear=True,
    batch=rules.elementwise,
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
    return astype_p(x, dtype=dtype)


# A transfer to the device an array is on gives the input's array itself (a view, for
# in-place updates: see agrad.inplace).
to_device_p = primitive(
    "to_device", lambda xp, x, device: backend.to_device(x, device),
    vjp=[lambda xp, g, ans, x, device: xp.to_device(g, x.device)], linear=True,
    view=lambda base, new, device: to_device(new, base.device),
    batch=rules.elementwise,
)


def to_device(x: ArrayLike, device: Any, /, *, stream: Any = None) -> Tensor:
    """Move ``x`` to ``device`` ('cpu', 'cuda', 'cuda:N', array-api-strict devices...).

    NumPy <-> CuPy moves change backend. Differentiable: the gradient moves back.
    """
    return to_device_p(x, device=device)


identity_p = primitive("identity", lambda xp, x: x, vjp=[lambda xp, g, ans, x: g], linear=True,
                       view=lambda base, new: new, batch=rules.elementwise)  # (the input's array itself: a view)


def identity(x: ArrayLike, /) -> Tensor:
    """``x`` itself as a recorded op: a new Tensor on the tape (no copy of the data)."""
    return identity_p(x)

