"""Seeded random numbers that are the same on every backend.

The array API has no random numbers, so agrad draws on the host with a NumPy
Generator and moves the result to the selected backend and device: one seed gives
the same initial weights and the same batch order on NumPy, CuPy and array-api-strict.
"""

from __future__ import annotations

from typing import Any

from . import backend, dtypes
from .compile import hooks
from .tensor import Tensor

_default = backend.host_rng(0)


def manual_seed(seed: int) -> None:
    """Reseed agrad's default generator (used by layers created without ``rng``)."""
    global _default
    _default = backend.host_rng(seed)


def generator(seed: int | None = None) -> Any:
    """A new host generator; pass it as ``rng=`` to layers and loaders."""
    return backend.host_rng(seed)


def default_generator() -> Any:
    return _default


def _no_tracing(what: str) -> None:
    """Random numbers are about to be drawn: refused inside a compiled function (a replay
    would repeat them)."""
    hook = hooks.active()
    if hook is not None:
        hook.random_numbers(what)


def uniform(low: float, high: float, shape: tuple, dtype: Any = None, device: Any = None,
            rng: Any = None) -> Tensor:
    """Uniform samples on [low, high), drawn on the host in float64 then cast and moved."""
    _no_tracing("random numbers")
    rng = rng or _default
    host = rng.uniform(low, high, size=shape)
    return _place(host, dtype, device)


def normal(shape: tuple, mean: float = 0.0, std: float = 1.0, dtype: Any = None, device: Any = None,
           rng: Any = None) -> Tensor:
    """Normal samples, drawn on the host in float64 then cast and moved."""
    _no_tracing("random numbers")
    rng = rng or _default
    return _place(rng.normal(mean, std, size=shape), dtype, device)


def permutation(n: int, rng: Any = None) -> Any:
    """A host permutation of range(n) (integers), the same on every backend."""
    return (rng or _default).permutation(n)


def _place(host: Any, dtype: Any, device: Any) -> Tensor:
    hp = backend.host_namespace()
    dtype = dtypes.get_default_dtype() if dtype is None else dtype
    host = hp.astype(host, backend.resolve_dtype(hp, dtype))
    return Tensor(backend.from_numpy(host, device=device))
