"""Seeded random numbers that are the same on every backend.

The array API has no random numbers, so agrad draws on the host with a NumPy
Generator and moves the result to the selected backend and device: one seed gives
the same initial weights and the same batch order on NumPy, CuPy and array-api-strict.
"""

from __future__ import annotations

from typing import Any

from . import backend, dtypes
from .batching import vmap as _vmap
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


def draw(what: str, shape: tuple, sample: Any) -> tuple[Any, list[int]]:
    """``sample(full_shape)`` on the host: random numbers of ``shape`` for each example of
    the running vmaps that asked for different ones (their axes in front; the levels to
    batch the result over come back too), refused inside agrad.compile and inside a vmap
    with randomness="error"."""
    _no_tracing(what)
    full, levels = _vmap.draw_shape(tuple(shape))
    return sample(full), levels


def uniform(low: float, high: float, shape: tuple, dtype: Any = None, device: Any = None,
            rng: Any = None) -> Tensor:
    """Uniform samples on [low, high), drawn on the host in float64 then cast and moved."""
    rng = rng or _default
    host, levels = draw("random numbers", shape, lambda s: rng.uniform(low, high, size=s))
    return _vmap.batch_draw(_place(host, dtype, device), levels)


def normal(shape: tuple, mean: float = 0.0, std: float = 1.0, dtype: Any = None, device: Any = None,
           rng: Any = None) -> Tensor:
    """Normal samples, drawn on the host in float64 then cast and moved."""
    rng = rng or _default
    host, levels = draw("random numbers", shape, lambda s: rng.normal(mean, std, size=s))
    return _vmap.batch_draw(_place(host, dtype, device), levels)


def permutation(n: int, rng: Any = None) -> Any:
    """A host permutation of range(n) (integers), the same on every backend."""
    _, levels = _vmap.draw_shape((n,))
    if levels:
        raise _vmap.VmapError("agrad.random.permutation returns a host array, which cannot differ from example to "
                              "example inside vmap(randomness='different'); draw it outside the mapped function")
    return (rng or _default).permutation(n)


def _place(host: Any, dtype: Any, device: Any) -> Tensor:
    hp = backend.host_namespace()
    dtype = dtypes.get_default_dtype() if dtype is None else dtype
    host = hp.astype(host, backend.resolve_dtype(hp, dtype))
    return Tensor(backend.from_numpy(host, device=device))
