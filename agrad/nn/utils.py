"""Training utilities: gradient clipping and calling a Module with other parameters."""

from __future__ import annotations

import contextlib
import math
from typing import Any, Iterable, Iterator

from .. import backend
from ..tensor import Tensor, alias
from .module import Module

__all__ = ["clip_grad_norm_", "clip_grad_value_", "functional_call"]


def _with_grads(parameters: Iterable[Tensor] | Tensor) -> list[Tensor]:
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p for p in parameters if p.grad is not None]


def clip_grad_norm_(parameters: Iterable[Tensor] | Tensor, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> Tensor:
    """Scale the gradients in place so that their joint ``norm_type``-norm is at most
    ``max_norm``; return the norm they had (a 0-d Tensor on their device, no host sync)."""
    if max_norm < 0:
        raise ValueError(f"clip_grad_norm_: max_norm must be >= 0, got {max_norm}")
    params = _with_grads(parameters)
    if not params:
        return Tensor(0.0)
    grads = [p.grad._data for p in params]
    xp = backend.namespace_of(grads, "clip_grad_norm_")
    if norm_type == math.inf:
        total = xp.max(xp.stack([xp.max(xp.abs(g)) for g in grads]))
    else:
        total = xp.sum(xp.stack([xp.sum(xp.abs(g) ** norm_type) for g in grads])) ** (1.0 / norm_type)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(f"clip_grad_norm_: the total {norm_type}-norm of the gradients is {float(total)}")
    coef = xp.minimum(max_norm / (total + 1e-6), xp.asarray(1.0, dtype=total.dtype, device=total.device))
    for p in params:
        g = p.grad._data
        scaled = g * xp.astype(coef, g.dtype)
        if xp.mutable and backend.owns_memory(g):
            g[...] = scaled
        else:
            p.grad = Tensor(scaled)
    return Tensor(total)


def clip_grad_value_(parameters: Iterable[Tensor] | Tensor, clip_value: float) -> None:
    """Clamp every gradient element to [-clip_value, clip_value], in place."""
    if clip_value < 0:
        raise ValueError(f"clip_grad_value_: clip_value must be >= 0, got {clip_value}")
    for p in _with_grads(parameters):
        xp = backend.namespace_of((p.grad._data,), "clip_grad_value_")
        p.grad = Tensor(xp.clip(p.grad._data, min=-clip_value, max=clip_value))


@contextlib.contextmanager
def _swapped(module: Module, params: dict[str, Any]) -> Iterator[None]:
    owners = {}
    for name, mod in module.named_modules():
        for pname in mod._parameters:
            owners[f"{name}.{pname}" if name else pname] = (mod, pname)
    unknown = sorted(set(params) - set(owners))
    if unknown:
        raise KeyError(f"functional_call: {type(module).__name__} has no parameters named {unknown}; "
                       f"its parameters are {sorted(owners)}")
    saved = {}
    try:
        for key, value in params.items():
            mod, pname = owners[key]
            saved[key] = mod._parameters[pname]
            # A plain attribute for the call: the value (a traced Tensor, say) is used as it is.
            mod._parameters[pname] = value
            object.__setattr__(mod, pname, value)
        yield
    finally:
        for key, p in saved.items():
            mod, pname = owners[key]
            mod._parameters[pname] = p
            object.__setattr__(mod, pname, p)


def functional_call(module: Module, params: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``module(*args, **kwargs)`` with some or all of its parameters replaced by
    ``params`` (dotted name -> Tensor or array), as ``torch.func.functional_call``.

    The JAX habit: parameters as a pytree, differentiated with ``agrad.grad``::

        params = {k: p.detach() for k, p in model.named_parameters()}
        grads = agrad.grad(lambda ps: loss(agrad.nn.utils.functional_call(model, ps, x), y))(params)
    """
    with _swapped(module, params):
        return module(*args, **kwargs)


def parameters_dict(module: Module) -> dict[str, Tensor]:
    """A module's parameters as a pytree {dotted name: Tensor} (sharing their data)."""
    return {name: alias(p) for name, p in module.named_parameters()}


def load_parameters_dict(module: Module, params: dict[str, Any]) -> None:
    """Write a pytree from :func:`parameters_dict` (or a transform's result) back into
    the module's parameters, in place (the module's state after an update step)."""
    module.load_state_dict({k: (v._data if isinstance(v, Tensor) else v) for k, v in params.items()})


__all__ += ["load_parameters_dict", "parameters_dict"]

