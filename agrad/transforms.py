"""Function transforms: ``grad``, ``value_and_grad`` and ``vjp``.

They take functions of Tensors (or raw arrays) and return functions. Nested use
works: ``grad(grad(f))`` records the inner backward pass because the inner call
sees inputs that are already being differentiated by the outer one.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

from . import tape
from .tensor import Tensor


def _argnums(argnums: int | Sequence[int], nargs: int, name: str) -> tuple[int, ...]:
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    for i in nums:
        if not -nargs <= i < nargs:
            raise ValueError(f"agrad.{name}: argnums {argnums!r} is out of range for {nargs} positional argument(s)")
    return tuple(i % nargs for i in nums)


def _as_target(x: Any) -> tuple[Tensor, bool]:
    """A Tensor to differentiate with respect to, and whether an outer trace sees it."""
    if isinstance(x, Tensor) and x.requires_grad and tape.is_grad_enabled():
        return x, True
    return Tensor(x.data if isinstance(x, Tensor) else x, requires_grad=True), False


def _check_scalar(out: Any, name: str) -> Tensor:
    if not isinstance(out, Tensor):
        raise TypeError(f"agrad.{name}: the function must return an agrad Tensor, got {type(out).__name__}")
    if out.shape != ():
        raise ValueError(
            f"agrad.{name}: the function must return a scalar (shape ()), got shape {out.shape}; "
            f"use agrad.vjp for non-scalar outputs"
        )
    return out


def value_and_grad(f: Callable, argnums: int | Sequence[int] = 0) -> Callable:
    """A function returning ``(f(*args), df/d args[argnums])``.

    ``f`` must return a scalar Tensor. With an int ``argnums`` the gradient is one
    Tensor; with a tuple, a tuple of Tensors.
    """

    @functools.wraps(f)
    def wrapped(*args: Any, **kwargs: Any):
        nums = _argnums(argnums, len(args), "value_and_grad")
        args = list(args)
        targets, nested = [], False
        for i in nums:
            t, outer = _as_target(args[i])
            args[i] = t
            targets.append(t)
            nested = nested or outer
        with tape.enable_grad():
            out = _check_scalar(f(*args, **kwargs), "grad")
            grads = tape.gradients([out], targets, create_graph=nested)
        grads = [g if isinstance(g, Tensor) else Tensor(g) for g in grads]
        value = out if nested else out.detach()
        return value, (grads[0] if isinstance(argnums, int) else tuple(grads))

    return wrapped


def grad(f: Callable, argnums: int | Sequence[int] = 0) -> Callable:
    """The gradient of a scalar function: ``grad(f)(x)`` is df/dx as a Tensor.

    Compose freely: ``grad(grad(f))`` is the second derivative.
    """
    vg = value_and_grad(f, argnums)

    @functools.wraps(f)
    def wrapped(*args: Any, **kwargs: Any):
        return vg(*args, **kwargs)[1]

    return wrapped


def vjp(f: Callable, *primals: Any) -> tuple[Tensor, Callable]:
    """Evaluate ``f(*primals)`` and return ``(out, pullback)``.

    ``pullback(g)`` returns the tuple of vector-Jacobian products g^T df/dprimal_i,
    one per primal; it may be called several times.
    """
    targets, nested = [], False
    for p in primals:
        t, outer = _as_target(p)
        targets.append(t)
        nested = nested or outer
    with tape.enable_grad():
        out = f(*targets)
    if not isinstance(out, Tensor):
        raise TypeError(f"agrad.vjp: the function must return an agrad Tensor, got {type(out).__name__}")

    def pullback(g: Any) -> tuple[Tensor, ...]:
        with tape.enable_grad():
            grads = tape.gradients([out], targets, grad_outputs=[g], retain_graph=True, create_graph=nested)
        return tuple(x if isinstance(x, Tensor) else Tensor(x) for x in grads)

    return (out if nested else out.detach()), pullback
