"""Layers: Linear, activations, Sequential and the MLP."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from .. import backend, ops
from .. import random as arandom
from ..batching import batched
from ..batching import vmap as _vmap
from ..compile import hooks
from .module import Module, Parameter


class Linear(Module):
    """y = x @ W + b.

    ``W`` has shape (in_features, out_features) so the forward pass needs no
    transpose; ``W[:, j]`` holds unit j's input weights (the seed's w_j).
    Initialisation: W and b uniform on +-1/sqrt(in_features), drawn on the host
    from ``rng`` (default: agrad.random's generator), so one seed gives the same
    parameters on every backend.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, rng: Any = None,
                 dtype: Any = None, device: Any = None) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(f"Linear: sizes must be positive, got {in_features} -> {out_features}")
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features)
        self.weight = Parameter(arandom.uniform(-bound, bound, (in_features, out_features), dtype, device, rng))
        self.bias = Parameter(arandom.uniform(-bound, bound, (out_features,), dtype, device, rng)) if bias else None

    def forward(self, x):
        return ops.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_features} -> {self.out_features}, bias={self.bias is not None}"


class Activation(Module):
    """An elementwise function as a layer."""

    fn: Callable = staticmethod(lambda x: x)

    def forward(self, x):
        return type(self).fn(x)


class Tanh(Activation):
    """tanh(x)."""

    fn = staticmethod(ops.tanh)


class Sigmoid(Activation):
    """1 / (1 + exp(-x)), stable for large positive or negative x."""

    fn = staticmethod(ops.sigmoid)


class ReLU(Activation):
    """max(x, 0)."""

    fn = staticmethod(ops.relu)


class Identity(Activation):
    """x (the seed's output units)."""

    fn = staticmethod(lambda x: x)


class Dropout(Module):
    """Zero each element with probability ``p`` in training mode, scaling the rest by
    1 / (1 - p); the identity in evaluation mode (``model.eval()``).

    The mask is drawn on the host from ``rng`` (default: agrad.random's generator), as
    the array API has no random numbers, and moved beside the input.
    """

    def __init__(self, p: float = 0.5, rng: Any = None) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must lie in [0, 1), got {p}")
        self.p = float(p)
        self.rng = rng

    def forward(self, x):
        if not self.training or self.p == 0.0:
            hook = hooks.active()
            if hook is not None:  # a replay must not skip the dropout once training again
                hook.guard(lambda m=self: not m.training or m.p == 0.0, True)
            return x
        rng = self.rng or arandom.default_generator()
        keep, levels = arandom.draw("Dropout (in training mode)", tuple(x.shape), lambda s: rng.random(s) >= self.p)
        like = batched.bottom(x._data)  # (inside vmap: the array holding the examples)
        mask = backend.from_numpy(keep / (1.0 - self.p), backend=backend.namespace_of((like,), "Dropout").name,
                                  device=like.device)
        return x * ops.astype(_vmap.batch_draw(ops.asarray(mask), levels), x.dtype)

    def extra_repr(self) -> str:
        return f"p={self.p}"


ACTIVATIONS = {"tanh": Tanh, "sigmoid": Sigmoid, "relu": ReLU, "identity": Identity}


class Lambda(Module):
    """A plain function as a layer without parameters (``Sequential`` wraps callables in it)."""

    def __init__(self, fn: Callable) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args, **kwargs):
        return self.fn(*args, **kwargs)

    def extra_repr(self) -> str:
        return getattr(self.fn, "__name__", repr(self.fn))


class Sequential(Module):
    """Apply modules in order. Plain callables (``agrad.tanh``, a lambda) are wrapped in
    :class:`Lambda`; anything else is an error, never silently skipped."""

    def __init__(self, *modules: Module | Callable) -> None:
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                if not callable(m):
                    raise TypeError(f"Sequential: item {i} is a {type(m).__name__}, neither a Module nor a callable")
                m = Lambda(m)
            setattr(self, str(i), m)

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def __len__(self) -> int:
        return len(self._modules)

    def __getitem__(self, i: int) -> Module:
        return list(self._modules.values())[i]


class MLP(Sequential):
    """A multi-layer perceptron: Linear layers of ``sizes`` with ``activation`` between
    them and ``output_activation`` after the last (default identity, as in the seed).

    ``MLP([784, 72, 10])`` is the seed's network: h = tanh(x M + b), f = h W + c.
    """

    def __init__(self, sizes: Sequence[int], activation: str = "tanh", output_activation: str = "identity",
                 rng: Any = None, dtype: Any = None, device: Any = None) -> None:
        if len(sizes) < 2:
            raise ValueError(f"MLP: needs at least an input and an output size, got {list(sizes)}")
        for name in (activation, output_activation):
            if name not in ACTIVATIONS:
                raise ValueError(f"MLP: unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}")
        layers: list[Module] = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(Linear(n_in, n_out, rng=rng, dtype=dtype, device=device))
            last = i == len(sizes) - 2
            act = output_activation if last else activation
            if act != "identity":
                layers.append(ACTIVATIONS[act]())
        super().__init__(*layers)
        self.sizes = list(sizes)

    def linear_layers(self) -> list[Linear]:
        return [m for m in self._modules.values() if isinstance(m, Linear)]
