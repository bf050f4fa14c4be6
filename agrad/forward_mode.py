"""Forward-mode differentiation: tangents carried alongside values.

While ``agrad.jvp`` runs, a Tensor may carry tangents in ``_tangents``, a dict
``{level: Tensor}``; each jvp call gets its own level, so that jvps nest (forward
over forward) and compose with the tape (forward over reverse, reverse over
forward). Every op applied to an input with tangents computes its output's tangent
at once from the op's JVP rules (see :class:`agrad.tape.Primitive`): the cost is a
small constant times the forward pass, never one pass per output.

A JVP rule for level L runs with level L suspended, so its own operations carry
every other level's tangents (the cross terms of nested derivatives) but not L's.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from typing import Any, Iterable, Iterator

from . import backend
from .tensor import Tensor

JVP = "jvp"  # (tape.JVP: the kind of rule read here)

_levels = itertools.count(1)


class _State(threading.local):
    def __init__(self) -> None:
        self.suspended: set[int] = set()


_state = _State()
# Levels of the jvp calls still running (in any thread). A finished jvp's tangents may
# linger on intermediate Tensors; they must not propagate into later computations.
_running: set[int] = set()


def new_level() -> int:
    level = next(_levels)
    _running.add(level)
    return level


def retire(level: int) -> None:
    """The jvp of ``level`` has returned."""
    _running.discard(level)


class NoJVPRule(NotImplementedError):
    """An op was reached by forward mode but has no JVP rule."""


def zeros_like(x: Any) -> Tensor:
    """Zeros of ``x``'s shape and dtype, beside it: the tangent of an argument without one."""
    raw = x._data if isinstance(x, Tensor) else x
    xp = backend.namespace_of((raw,), "jvp")
    return Tensor(xp.zeros_like(raw))


def active_levels(args: Iterable[Any]) -> set[int]:
    """The forward-mode levels whose tangents ``args`` carry and that are not suspended."""
    levels: set[int] = set()
    for a in args:
        if isinstance(a, Tensor) and a._tangents is not None:
            levels.update(a._tangents)
    return (levels & _running) - _state.suspended


@contextlib.contextmanager
def suspended(levels: Iterable[int]) -> Iterator[None]:
    """Ops inside do not propagate these levels' tangents."""
    added = set(levels) - _state.suspended
    _state.suspended.update(added)
    try:
        yield
    finally:
        _state.suspended.difference_update(added)


def propagate(prim: Any, args: tuple, params: dict, out: Tensor) -> None:
    """Set ``out._tangents`` from the tangents of ``args`` (called by the tape's apply)."""
    levels = active_levels(args)
    if not levels:
        return
    from . import ops as dxp  # the differentiable namespace (imported late: it imports the tape)

    tangents = {}
    for level in sorted(levels):  # outer (older) levels first: inner rules see their tangents
        with suspended((level,)):
            t = _rule(prim, level, args, params, out, dxp)
        if t is not None:
            tangents[level] = t
            out._tangents = dict(tangents)  # visible to the next (inner) level's rules
    out._tangents = tangents or None


def _tangent(a: Any, level: int) -> Tensor | None:
    if isinstance(a, Tensor) and a._tangents is not None:
        return a._tangents.get(level)
    return None


def _rule(prim: Any, level: int, args: tuple, params: dict, out: Tensor, dxp: Any) -> Tensor | None:
    ts = [_tangent(a, level) for a in args]
    if all(t is None for t in ts):
        return None
    from .tape import constants_as_tensors  # (late: the tape imports this module)

    args = tuple(constants_as_tensors(args))
    rule = prim.rules.get(JVP)
    if rule is None:
        raise NoJVPRule(
            f"agrad.jvp: the primitive {prim.name!r} has no forward-mode (JVP) rule; declare it with "
            f"agrad.primitive(..., jvp=...), or use reverse mode (agrad.grad / agrad.vjp) for this function"
        )
    total = rule(dxp, tuple(ts), out, *args, **params)
    if not isinstance(total, Tensor):
        total = Tensor(total)
    if total.shape != out.shape:
        total = dxp.broadcast_to(total, out.shape)
    if total.dtype != out.dtype:
        total = dxp.astype(total, out.dtype)
    return total


def attach(x: Tensor, level: int, tangent: Tensor) -> None:
    x._tangents = dict(x._tangents or {})
    x._tangents[level] = tangent


def tangent_of(x: Any, level: int) -> Tensor | None:
    return _tangent(x, level)


def strip(x: Tensor, level: int) -> None:
    if x._tangents is not None:
        x._tangents.pop(level, None)
        if not x._tangents:
            x._tangents = None
