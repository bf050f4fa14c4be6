"""Initialisers, in place under no_grad, drawn on the host from a seeded generator.

Weights in agrad are stored (in_features, out_features): ``fan_in`` is the first axis
and ``fan_out`` the second (for more axes, as PyTorch: the rest multiply both). Each
function returns the tensor it filled. ``rng`` defaults to agrad.random's generator,
so ``agrad.manual_seed(k)`` fixes every initialisation on every backend.

The seed notes (section 6) start from small random weights and restart from several
initialisations; ``Linear``'s default, uniform on +-1/sqrt(fan_in), is that scale.
"""

from __future__ import annotations

import math
from typing import Any

from .. import backend
from .. import random as arandom
from ..tape import no_grad
from ..tensor import Tensor

__all__ = ["calculate_gain", "constant_", "kaiming_normal_", "kaiming_uniform_", "normal_", "ones_", "uniform_",
           "xavier_normal_", "xavier_uniform_", "zeros_"]


def _fill(t: Tensor, host: Any) -> Tensor:
    """Write host values into ``t`` in place (its backend, device and dtype kept)."""
    if not isinstance(t, Tensor):
        raise TypeError(f"agrad.nn.init: expected a Tensor, got {type(t).__name__}")
    xp = backend.namespace_of((t._data,), "init")
    new = backend.from_numpy(host, backend=xp.name, device=t._data.device)
    new = xp.astype(new, t._data.dtype)
    with no_grad():
        if xp.mutable:
            t._write(..., new, "an initialiser")
        else:
            t.data = new
    return t


def _fans(t: Tensor) -> tuple[int, int]:
    shape = t.shape
    if len(shape) < 1:
        raise ValueError("agrad.nn.init: fan in and fan out need a tensor with at least one axis")
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[0] * receptive, shape[1] * receptive


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The gain that keeps activations' variance for ``nonlinearity`` (as PyTorch)."""
    gains = {"linear": 1.0, "identity": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3.0, "relu": math.sqrt(2.0)}
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity not in gains:
        raise ValueError(f"agrad.nn.init.calculate_gain: unknown nonlinearity {nonlinearity!r}; choose from "
                         f"{sorted(gains) + ['leaky_relu']}")
    return gains[nonlinearity]


def uniform_(t: Tensor, a: float = 0.0, b: float = 1.0, rng: Any = None) -> Tensor:
    """Fill ``t`` with samples uniform on [a, b)."""
    return _fill(t, (rng or arandom.default_generator()).uniform(a, b, size=t.shape))


def normal_(t: Tensor, mean: float = 0.0, std: float = 1.0, rng: Any = None) -> Tensor:
    """Fill ``t`` with normal samples."""
    return _fill(t, (rng or arandom.default_generator()).normal(mean, std, size=t.shape))


def constant_(t: Tensor, value: float) -> Tensor:
    hp = backend.host_namespace()
    return _fill(t, hp.full(t.shape, value, dtype=hp.float64))


def zeros_(t: Tensor) -> Tensor:
    return constant_(t, 0.0)


def ones_(t: Tensor) -> Tensor:
    return constant_(t, 1.0)


def xavier_uniform_(t: Tensor, gain: float = 1.0, rng: Any = None) -> Tensor:
    """Glorot & Bengio (2010): uniform on +-gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(t)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(t, -bound, bound, rng)


def xavier_normal_(t: Tensor, gain: float = 1.0, rng: Any = None) -> Tensor:
    """Glorot & Bengio (2010): normal with std gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(t)
    return normal_(t, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), rng)


def _kaiming_std(t: Tensor, mode: str, nonlinearity: str, a: float) -> float:
    fan_in, fan_out = _fans(t)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"agrad.nn.init: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(t: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "relu",
                     rng: Any = None) -> Tensor:
    """He et al. (2015): uniform on +-sqrt(3) * gain / sqrt(fan)."""
    bound = math.sqrt(3.0) * _kaiming_std(t, mode, nonlinearity, a)
    return uniform_(t, -bound, bound, rng)


def kaiming_normal_(t: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "relu",
                    rng: Any = None) -> Tensor:
    """He et al. (2015): normal with std gain / sqrt(fan)."""
    return normal_(t, 0.0, _kaiming_std(t, mode, nonlinearity, a), rng)


# Short names as in Keras / JAX users expect them.
glorot_uniform_, glorot_normal_, he_uniform_, he_normal_ = xavier_uniform_, xavier_normal_, kaiming_uniform_, \
    kaiming_normal_
__all__ += ["glorot_normal_", "glorot_uniform_", "he_normal_", "he_uniform_"]
