"""dtype casts and device transfers, both differentiable."""

from __future__ import annotations

from .. import backend
from ..tape import primitive

_astype = primitive(
    "astype", lambda xp, x, dtype: xp.astype(x, backend.resolve_dtype(xp, dtype)),
    lambda xp, g, ans, x, dtype: xp.astype(g, x.dtype),
)


def astype(x, dtype):
    """Cast to ``dtype`` ('float32', a backend dtype...); the gradient is cast back."""
    return _astype(x, dtype=dtype)


_to_device = primitive(
    "to_device", lambda xp, x, device: backend.to_device(x, device),
    lambda xp, g, ans, x, device: xp.to_device(g, x.device),
)


def to_device(x, device):
    """Move ``x`` to ``device`` ('cpu', 'cuda', 'cuda:N', array-api-strict devices...).

    NumPy <-> CuPy moves change backend. Differentiable: the gradient moves back.
    """
    return _to_device(x, device=device)
