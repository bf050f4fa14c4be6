"""User-defined derivatives (``custom_vjp``, ``custom_jvp``) and ``checkpoint``.

All three are declared with :func:`agrad.tape.primitive`, the declaration agrad's own ops
use, made convenient for whole functions of Tensors.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

from . import backend, ops, tape, transforms
from .batching import rules as batching_rules
from .tensor import Tensor


def _wrap_inputs(raw: tuple) -> list:
    return [Tensor(r) if hasattr(r, "shape") else r for r in raw]


def _zeros_like(x: Any) -> Any:
    raw = x._data if isinstance(x, Tensor) else x
    return backend.namespace_of((raw,), "custom").zeros_like(raw)


def _as_mode(x: Any, like_g: Any, arg: Any) -> Any:
    """A gradient in the form the engine expects: raw on a plain backward pass, a Tensor
    when the backward pass is recorded; zeros for None."""
    if x is None:
        x = _zeros_like(arg)
    if isinstance(like_g, Tensor):
        return x if isinstance(x, Tensor) else Tensor(x)
    return x._data if isinstance(x, Tensor) else x


def _check_gradient_shape(name: str, kind: str, i: int, grad: Any, arg: Any) -> None:
    gs, xs = tuple(getattr(grad, "shape", ())), tuple(getattr(arg, "shape", ()))
    if gs == xs:
        return
    # A gradient of the broadcast shape is summed back by the engine; anything else is a bug in the rule.
    ok = len(gs) >= len(xs) and all(x in (1, g) for x, g in zip(xs[::-1], gs[::-1]))
    if not ok:
        raise ValueError(f"agrad.{kind}: the backward rule of {name} returned a gradient of shape {gs} for "
                         f"argument {i} of shape {xs}")


def _inner_product(grads: Sequence[Any], tangents: Sequence[Any]) -> Tensor | None:
    """sum_i <grads[i], tangents[i]> over the arguments that have a tangent."""
    total = None
    for gr, t in zip(grads, tangents):
        if t is None or gr is None:
            continue
        term = ops.sum(gr * t)
        total = term if total is None else total + term
    return total


def _transposed_jvp(pullback: Callable[[Tensor], Sequence[Any]], ans: Tensor, tangents: Sequence[Any]) -> Tensor:
    """J t from a linear pullback u -> J^T u: J t is the gradient of <J^T u, t> in u.

    This is how a custom_vjp function gets a forward-mode derivative: its backward rule
    is linear in the cotangent, so transposing it gives the JVP (and, being written with
    agrad ops, the result can be differentiated again).
    """
    u = Tensor(_zeros_like(ans), requires_grad=True)
    with tape.enable_grad():
        s = _inner_product(pullback(u), tangents)
        if s is None or not s.requires_grad:
            return ops.zeros_like(ans)
        (jt,) = tape.gradients([s], [u], create_graph=True)
    u.requires_grad = False
    return jt


class custom_vjp:
    """A function with a hand-written reverse-mode derivative, as in JAX::

        @agrad.custom_vjp
        def f(x, y): return agrad.sin(x) * y

        def f_fwd(x, y): return f(x, y), (agrad.cos(x), agrad.sin(x), y)   # (output, residuals)
        def f_bwd(res, g): cos_x, sin_x, y = res; return (cos_x * g * y, sin_x * g)

        f.defvjp(f_fwd, f_bwd)

    ``f_bwd`` returns one gradient per positional argument (None for none), all from one
    call; every call of ``f`` keeps its own residuals. Higher order follows JAX: when
    the backward pass is itself differentiated, ``f_fwd`` runs again on the recorded
    inputs, so the residuals are functions of them, and ``f_bwd`` (written with agrad
    ops) is differentiated. Forward mode transposes ``f_bwd``, which is linear in ``g``:
    ``jvp``, ``hessian`` and ``jacobian(mode="forward")`` work too.
    """

    def __init__(self, fun: Callable) -> None:
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.prim: tape.Primitive | None = None
        self._inside_fwd = 0

    def _fwd(self, fwd: Callable, args: Sequence[Any]) -> tuple[Any, Any]:
        self._inside_fwd += 1  # fwd may call f itself (the JAX idiom): run the plain function then
        try:
            out, res = fwd(*args)
        finally:
            self._inside_fwd -= 1
        if not isinstance(out, Tensor):
            raise TypeError(f"agrad.custom_vjp: the fwd of {self.__name__} must return (output Tensor, residuals), "
                            f"got an output of type {type(out).__name__}")
        return out, res

    def _bwd(self, bwd: Callable, res: Any, g: Tensor, args: Sequence[Any]) -> list[Any]:
        grads = bwd(res, g)
        grads = list(grads) if isinstance(grads, (tuple, list)) else [grads]
        if len(grads) != len(args):
            raise ValueError(f"agrad.custom_vjp: the bwd of {self.__name__} returned {len(grads)} gradients for "
                             f"{len(args)} arguments")
        for i, (gr, a) in enumerate(zip(grads, args)):
            if gr is not None:
                _check_gradient_shape(self.__name__, "custom_vjp", i, gr, a)
        return grads

    def defvjp(self, fwd: Callable, bwd: Callable) -> "custom_vjp":
        def forward(xp, *raw):
            with tape.no_grad():
                out, res = self._fwd(fwd, _wrap_inputs(raw))
            return out._data, res

        def vjp(xp, g, ans, wanted, *args, aux=None):
            if isinstance(g, Tensor):  # recorded backward pass: residuals as functions of the inputs
                with tape.enable_grad():
                    _, res = self._fwd(fwd, args)
                    grads = self._bwd(bwd, res, g, args)
            else:
                grads = self._bwd(bwd, aux, Tensor(g), args)
            return [_as_mode(gr, g, a) if w else None for gr, a, w in zip(grads, args, wanted)]

        def jvp(xp, tangents, ans, *args):
            _, res = self._fwd(fwd, args)
            return _transposed_jvp(lambda u: self._bwd(bwd, res, u, args), ans, tangents)

        self.prim = tape.primitive(f"custom_vjp:{self.__name__}", forward, vjp=vjp, jvp=jvp, has_aux=True,
                                   batch=batching_rules.by_forward, register=False)
        return self

    def __call__(self, *args: Any) -> Tensor:
        if self.prim is None:
            raise TypeError(f"agrad.custom_vjp: call {self.__name__}.defvjp(fwd, bwd) before using it")
        if self._inside_fwd:
            return self.fun(*args)
        return self.prim(*args)


class custom_jvp:
    """A function with a hand-written forward-mode derivative::

        @agrad.custom_jvp
        def safe_log1pexp(x): return agrad.log1p(agrad.exp(x))

        @safe_log1pexp.defjvp
        def _(primals, tangents):
            (x,), (t,) = primals, tangents
            return safe_log1pexp(x), t * agrad.sigmoid(x)

    The rule receives the primals and their tangents (zeros for arrays without one,
    None for Python scalars) and returns ``(output, output_tangent)``; the tangent must
    be linear in the tangents. Both modes use the rule, as in JAX: reverse mode
    transposes it (the gradient of ``<output_tangent, g>`` with respect to the
    tangents), so forward and reverse derivatives, and every composition of them,
    agree. Each call is a node of its own.
    """

    def __init__(self, fun: Callable) -> None:
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.rule: Callable | None = None
        self.prim: tape.Primitive | None = None

    def defjvp(self, rule: Callable) -> Callable:
        name = self.__name__

        def forward(xp, *raw):
            with tape.no_grad():
                out = self.fun(*_wrap_inputs(raw))
            if not isinstance(out, Tensor):
                raise TypeError(f"agrad.custom_jvp: {name} must return one Tensor, got {type(out).__name__}")
            return out._data

        def tangent_out(primals: Sequence[Any], tangents: Sequence[Any]) -> Tensor:
            _, t = rule(tuple(primals), tuple(tangents))
            return t if isinstance(t, Tensor) else Tensor(t)

        def jvp(xp, tangents, ans, *args):
            filled = [t if t is not None else (Tensor(_zeros_like(a)) if hasattr(a, "shape") else None)
                      for a, t in zip(args, tangents)]
            return tangent_out(args, filled)

        def vjp(xp, g, ans, wanted, *args):
            recorded = isinstance(g, Tensor)
            primals = list(args) if recorded else _wrap_inputs(args)
            ts, leaves = [], []
            for a, w in zip(args, wanted):
                if w:
                    t = Tensor(_zeros_like(a), requires_grad=True)
                    leaves.append(t)
                else:
                    t = Tensor(_zeros_like(a)) if hasattr(a, "shape") else None
                ts.append(t)
            with tape.enable_grad():
                t_out = tangent_out(primals, ts)
                s = _inner_product([t_out], [g if recorded else Tensor(g)])
                grads = tape.gradients([s], leaves, create_graph=recorded) if s is not None else []
            for t in leaves:
                t.requires_grad = False
            it = iter(grads)
            return [_as_mode(next(it, None), g, a) if w else None for a, w in zip(args, wanted)]

        self.rule = rule
        self.prim = tape.primitive(f"custom_jvp:{name}", forward, vjp=vjp, jvp=jvp, batch=batching_rules.by_forward,
                                   register=False)
        return rule

    def __call__(self, *args: Any) -> Any:
        if self.prim is None:
            return self.fun(*args)
        return self.prim(*args)


def checkpoint(f: Callable) -> Callable:
    """``f`` (a function of Tensors returning one Tensor) that stores only its inputs.

    The forward pass runs without recording; the backward pass runs ``f`` again,
    recording, and differentiates that: memory for time, as in ``torch.utils.checkpoint``
    and ``jax.checkpoint``. Each call is a node of its own. Works with create_graph
    (higher order) and forward mode.
    """
    name = getattr(f, "__name__", "function")

    def forward(xp, *raw):
        with tape.no_grad():
            out = f(*_wrap_inputs(raw))
        if not isinstance(out, Tensor):
            raise TypeError(f"agrad.checkpoint: {name} must return one Tensor, got {type(out).__name__}")
        return out._data

    def vjp(xp, g, ans, wanted, *args):
        recorded = isinstance(g, Tensor)  # create_graph: differentiate through the recomputation
        xs, targets = [], []
        for a, w in zip(args, wanted):
            if w:
                # A node of its own per argument: partial derivatives, even when one argument
                # is computed from another or two arguments are the same Tensor.
                x = transforms.target(a) if recorded else Tensor(a, requires_grad=True)
                targets.append(x)
                xs.append(x)
            else:  # as in the forward pass, f sees Tensors (constants here)
                xs.append(a if isinstance(a, Tensor) or not hasattr(a, "shape") else Tensor(a))
        with tape.enable_grad():
            out = f(*xs)
            grads = tape.gradients([out], targets, grad_outputs=[g], create_graph=recorded)
        transforms.retire(targets)
        it = iter(grads)
        return [_as_mode(next(it), g, a) if w else None for a, w in zip(args, wanted)]

    def jvp(xp, tangents, ans, *args):
        idx = [i for i, t in enumerate(tangents) if t is not None]

        def f_sel(*sel):
            full = list(args)
            for i, x in zip(idx, sel):
                full[i] = x
            return f(*full)

        return transforms.jvp(f_sel, [args[i] for i in idx], [tangents[i] for i in idx])[1]

    prim = tape.primitive(f"checkpoint:{name}", forward, vjp=vjp, jvp=jvp, batch=batching_rules.by_forward,
                          register=False)

    @functools.wraps(f)
    def wrapped(*args: Any) -> Tensor:
        return prim(*args)

    return wrapped


def _is_float(a: Any) -> bool:
    xp = backend.namespace_of((a,), "checkpoint")
    return xp is not None and hasattr(a, "dtype") and xp.isdtype(a.dtype, "real floating")
