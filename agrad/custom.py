"""User-defined derivatives (``custom_vjp``, ``custom_jvp``) and ``checkpoint``.

All three are built on :class:`agrad.tape.Primitive`, the mechanism agrad's own ops
use, made convenient for whole functions of Tensors.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from . import backend, forward_mode, tape
from .tensor import Tensor


def _wrap_inputs(raw: tuple) -> list:
    return [Tensor(r) if hasattr(r, "shape") else r for r in raw]


def _zeros_like(x: Any) -> Any:
    raw = x.data if isinstance(x, Tensor) else x
    return backend.namespace_of((raw,), "custom").zeros_like(raw)


class _OnceEachG:
    """A node's VJPs are called once per argument with the same g: compute all
    argument gradients on the first call and hand them out."""

    def __init__(self) -> None:
        self.key: Any = None
        self.value: Any = None

    def get(self, g: Any, compute: Callable[[], Any]) -> Any:
        if self.key is not g:
            self.value = compute()
            self.key = g
        return self.value


def _as_mode(x: Any, like_g: Any, arg: Any) -> Any:
    """A gradient in the form the engine expects: raw on a plain backward pass, a Tensor
    when the backward pass is recorded; zeros for None."""
    if x is None:
        x = _zeros_like(arg)
    if isinstance(like_g, Tensor):
        return x if isinstance(x, Tensor) else Tensor(x)
    return x.data if isinstance(x, Tensor) else x


class custom_vjp:
    """A function with a hand-written reverse-mode derivative, as in JAX::

        @agrad.custom_vjp
        def f(x, y): return agrad.sin(x) * y

        def f_fwd(x, y): return f(x, y), (agrad.cos(x), agrad.sin(x), y)   # (output, residuals)
        def f_bwd(res, g): cos_x, sin_x, y = res; return (cos_x * g * y, sin_x * g)

        f.defvjp(f_fwd, f_bwd)

    ``f_bwd`` returns one gradient per positional argument (None for none). Residuals
    are constants of the backward pass: second derivatives do not flow through them.
    Forward mode (``agrad.jvp``) through a custom_vjp function is an error, as in JAX.
    """

    def __init__(self, fun: Callable) -> None:
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.prim: tape.Primitive | None = None
        self._inside_fwd = 0

    def defvjp(self, fwd: Callable, bwd: Callable) -> "custom_vjp":
        name = getattr(self.fun, "__name__", "function")
        cache = _OnceEachG()

        def forward(xp, *raw):
            self._inside_fwd += 1  # fwd may call f itself (the JAX idiom): run the plain function then
            try:
                with tape.no_grad():
                    out, res = fwd(*_wrap_inputs(raw))
            finally:
                self._inside_fwd -= 1
            return out.data, res

        def vjp(i, xp, g, ans, *args, aux=None):
            def compute():
                grads = bwd(aux, g if isinstance(g, Tensor) else Tensor(g))
                grads = tuple(grads) if isinstance(grads, (tuple, list)) else (grads,)
                if len(grads) != len(args):
                    raise ValueError(f"agrad.custom_vjp: the bwd of {name} returned {len(grads)} gradients for "
                                     f"{len(args)} arguments")
                return grads

            return _as_mode(cache.get(g, compute)[i], g, args[i])

        self.prim = tape.Primitive(f"custom_vjp:{name}", forward, vjp_variadic=vjp, register=False, has_aux=True)
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

    The rule receives the primals and their tangents (zeros for arguments without
    one) and returns ``(output, output_tangent)``. Reverse mode differentiates the
    function's own operations.
    """

    def __init__(self, fun: Callable) -> None:
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.rule: Callable | None = None

    def defjvp(self, rule: Callable) -> Callable:
        self.rule = rule
        return rule

    def __call__(self, *args: Any) -> Any:
        levels = forward_mode.active_levels(args)
        if not levels or self.rule is None:
            return self.fun(*args)
        with forward_mode.suspended(levels):  # the function's own ops must not propagate these levels
            out = self.fun(*args)
        for level in sorted(levels):
            tangents = tuple(_tangent_or_zeros(a, level) for a in args)
            with forward_mode.suspended((level,)):
                _, t_out = self.rule(tuple(args), tangents)
            forward_mode.attach(out, level, t_out if isinstance(t_out, Tensor) else Tensor(t_out))
        return out


def _tangent_or_zeros(a: Any, level: int) -> Any:
    t = forward_mode.tangent_of(a, level)
    if t is not None:
        return t
    return Tensor(_zeros_like(a)) if hasattr(a, "shape") else None


def checkpoint(f: Callable) -> Callable:
    """``f`` (a function of Tensors returning one Tensor) that stores only its inputs.

    The forward pass runs without recording; the backward pass runs ``f`` again,
    recording, and differentiates that: memory for time, as in ``torch.utils.checkpoint``
    and ``jax.checkpoint``. Works with create_graph (higher order) and forward mode.
    """
    name = getattr(f, "__name__", "function")
    cache = _OnceEachG()

    def forward(xp, *raw):
        with tape.no_grad():
            out = f(*_wrap_inputs(raw))
        if not isinstance(out, Tensor):
            raise TypeError(f"agrad.checkpoint: {name} must return one Tensor, got {type(out).__name__}")
        return out.data

    def vjp(i, xp, g, ans, *args):
        def compute():
            recorded = isinstance(g, Tensor)  # create_graph: differentiate through the recomputation
            if recorded:
                xs = [a if isinstance(a, Tensor) and a.requires_grad else a for a in args]
            else:
                xs = [Tensor(a, requires_grad=True) if _is_float(a) else a for a in args]
            targets = [x for x in xs if isinstance(x, Tensor) and x.requires_grad]
            with tape.enable_grad():
                out = f(*xs)
                grads = tape.gradients([out], targets, grad_outputs=[g], create_graph=recorded)
            by_id = {id(t): gr for t, gr in zip(targets, grads)}
            return [by_id.get(id(x)) for x in xs]

        return _as_mode(cache.get(g, compute)[i], g, args[i])

    def jvp_rule(k):
        def rule(xp, t, ans, *args):
            from .transforms import jvp

            def f_k(x):
                full = list(args)
                full[k] = x
                return f(*full)

            return jvp(f_k, (args[k],), (t,))[1]

        return rule

    prim = tape.Primitive(f"checkpoint:{name}", forward, vjp_variadic=vjp, register=False)

    @functools.wraps(f)
    def wrapped(*args: Any) -> Tensor:
        prim.jvps = tuple(jvp_rule(k) for k in range(len(args)))
        return prim(*args)

    return wrapped


def _is_float(a: Any) -> bool:
    xp = backend.namespace_of((a,), "checkpoint")
    return xp is not None and hasattr(a, "dtype") and xp.isdtype(a.dtype, "real floating")
