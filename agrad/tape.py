"""Recording operations and the reverse sweep.

A recorded op is a :class:`~agrad.tensor.Tensor` whose ``_prim`` is the primitive
that made it, ``_args`` its inputs (Tensors or constants) and ``_params`` its static
keyword parameters. The graph is walked iteratively (no recursion) and every VJP
runs exactly once per backward pass. No array library is imported here.

Each VJP is written once against "an array namespace" ``xp``: a plain backward pass
hands it the raw arrays and the backend's namespace; ``create_graph=True`` hands it
Tensors and agrad's own differentiable namespace, so the backward pass is itself
recorded and can be differentiated again.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable, Iterator, Sequence

from . import backend, forward_mode
from .tensor import Tensor

__all__ = ["Primitive", "primitive", "no_grad", "enable_grad", "is_grad_enabled", "backward", "gradients"]


class _GradMode(threading.local):
    enabled = True


_grad_mode = _GradMode()


def is_grad_enabled() -> bool:
    """Whether operations are being recorded in this thread."""
    return _grad_mode.enabled


@contextlib.contextmanager
def _set_grad(enabled: bool) -> Iterator[None]:
    prev = _grad_mode.enabled
    _grad_mode.enabled = enabled
    try:
        yield
    finally:
        _grad_mode.enabled = prev


def no_grad():
    """Context manager (and decorator) under which no operation is recorded."""
    return _set_grad(False)


def enable_grad():
    """Context manager that turns recording back on inside ``no_grad``."""
    return _set_grad(True)


REGISTRY: dict[str, "Primitive"] = {}


class Primitive:
    """A differentiable operation: a forward function and one VJP per argument.

    ``forward(xp, *arrays, **params)`` computes the result from raw arrays.
    ``vjps[i](xp, g, ans, *args, **params)`` returns the gradient for argument ``i``
    given the output gradient ``g`` and the output ``ans``; it may return a gradient
    of the broadcast shape, which the engine sums back to the argument's shape.
    ``None`` marks an argument that is not differentiable (indices, masks).
    ``vjp_variadic(i, xp, g, ans, *args, **params)`` serves ops with any number of
    array arguments (concat, stack).
    Forward mode: ``jvps[i](xp, t, ans, *args, **params)`` is argument i's contribution
    to the output tangent given its tangent ``t`` (it may have the broadcast shape).
    ``jvp_linear=True`` says the op is linear in its array arguments, so the output
    tangent is the op itself applied to the tangents. JVP rules always run on Tensors
    with agrad's differentiable namespace, so they can be differentiated again.
    With ``has_aux=True`` the forward returns ``(out, aux)``: ``aux`` (e.g. a softmax
    the VJP would otherwise recompute) reaches the VJPs as the keyword ``aux`` on a
    plain backward pass. Under ``create_graph`` the VJP gets Tensors and must recompute
    from them, so that the result stays differentiable.
    """

    # No __slots__: primitives are few, and a __dict__ lets each carry its own __doc__.

    def __init__(self, name: str, forward: Callable, vjps: Sequence[Callable | None] = (),
                 vjp_variadic: Callable | None = None, register: bool = True, has_aux: bool = False) -> None:
        self.name = name
        self.has_aux = has_aux
        self.forward = forward
        self.vjps = tuple(vjps)
        self.vjp_variadic = vjp_variadic
        self.jvps: tuple = ()
        self.jvp_linear = False
        self.__doc__ = f"The agrad primitive {name!r}."
        if register:
            if name in REGISTRY:
                raise ValueError(f"agrad: a primitive named {name!r} is already registered")
            REGISTRY[name] = self

    def defvjp(self, *vjps: Callable | None) -> "Primitive":
        self.vjps = vjps
        return self

    def defjvp(self, *jvps: Callable | None, linear: bool = False) -> "Primitive":
        """Set the forward-mode rules (one per argument), or ``linear=True``."""
        self.jvps = jvps
        self.jvp_linear = linear
        return self

    def defjvp_from_vjp(self) -> "Primitive":
        """For elementwise ops the Jacobian is diagonal, so the VJP with g := t is the JVP."""
        self.jvps = self.vjps
        return self

    def __call__(self, *args: Any, **params: Any) -> Tensor:
        return apply(self, args, params)


    def __repr__(self) -> str:
        return f"<agrad primitive {self.name}>"


def primitive(name: str, forward: Callable, *vjps: Callable | None, register: bool = True,
              jvps: Sequence[Callable | None] | None = None) -> Primitive:
    """Declare a new differentiable operation.

    Example::

        cube = agrad.primitive("cube", lambda xp, x: x * x * x,
                               lambda xp, g, ans, x: g * 3 * x * x,
                               jvps=[lambda xp, t, ans, x: t * 3 * x * x])

    Write the rules only with operators and ``xp`` functions so that they also run
    on Tensors, which makes higher-order derivatives of the new op work too.
    Without ``jvps`` the op has no forward-mode rule (agrad.jvp then raises).
    """
    prim = Primitive(name, forward, vjps, register=register)
    if jvps is not None:
        prim.defjvp(*jvps)
    return prim


# --------------------------------------------------------------------------- forward


def apply(prim: Primitive, args: Sequence[Any], params: dict) -> Tensor:
    """Run ``prim`` on ``args`` and, when a differentiable input needs it, record it."""
    raw = []
    needs_grad = False
    has_tangents = False
    for a in args:
        if isinstance(a, Tensor):
            raw.append(a.data)
            if a.requires_grad:
                needs_grad = True
            if a._tangents is not None:
                has_tangents = True
        else:
            raw.append(a)
    xp = namespace_of(raw, prim.name)
    if xp is None:
        xp = backend.creation_namespace()
    out = prim.forward(xp, *raw, **params)
    plain_params = params
    if prim.has_aux:
        out, aux = out
        if needs_grad:
            params = {**params, "aux": aux}
    if out.__class__ is not xp.array_type:
        out = as_array(xp, out)
    t = _new(Tensor)
    t.data = out
    t.grad = None
    t._pending = None
    t._tangents = None
    if needs_grad and _grad_mode.enabled:
        t.requires_grad = True
        t._prim = prim
        t._args = args
        t._inputs = raw
        t._params = params
    else:
        t.requires_grad = False
        t._prim = None
        t._args = None
        t._inputs = None
        t._params = None
    if has_tangents:
        forward_mode.propagate(prim, args, plain_params, t)
    return t


_new = object.__new__
namespace_of = backend.namespace_of
as_array = backend.as_array


# --------------------------------------------------------------------------- reverse


class _Released:
    """Marks a node whose saved inputs were freed by a backward pass."""

    name = "released"


RELEASED = _Released()


def _released_error(t: Tensor) -> RuntimeError:
    return RuntimeError(
        "agrad: trying to backward through a part of the graph a second time, but its saved "
        "intermediate values were freed by the first backward. Pass retain_graph=True to the "
        "first backward() if you need to run backward twice."
    )


def _dependency_counts(roots: Sequence[Tensor]) -> dict[int, int]:
    """For every recorded (non-leaf) node reachable from ``roots``: how many edges lead to it."""
    counts: dict[int, int] = {}
    stack = []
    for r in roots:
        if r._prim is not None and id(r) not in counts:
            counts[id(r)] = 0
            stack.append(r)
    while stack:
        t = stack.pop()
        if t._prim is RELEASED:
            raise _released_error(t)
        for a in t._args:
            if isinstance(a, Tensor) and a.requires_grad and a._prim is not None:
                k = id(a)
                if k in counts:
                    counts[k] += 1
                else:
                    counts[k] = 1
                    stack.append(a)
    return counts


def _sum_to_shape(xp: Any, g: Any, shape: tuple) -> Any:
    """Undo broadcasting: sum ``g`` over the axes along which the input was expanded."""
    gshape = g.shape
    if gshape == shape:
        return g
    lead = len(gshape) - len(shape)
    if lead > 0:
        g = xp.sum(g, axis=tuple(range(lead)))
    if g.shape != shape:
        if len(g.shape) == len(shape):
            axes = tuple(i for i, (s, n) in enumerate(zip(shape, g.shape)) if s == 1 and n != 1)
            if axes:
                g = xp.sum(g, axis=axes, keepdims=True)
        if g.shape != shape:
            g = xp.broadcast_to(g, shape)
    return g


def _sweep(roots: Sequence[Tensor], seeds: Sequence[Any], retain_graph: bool, create_graph: bool,
           capture: dict[int, Any] | None) -> None:
    """The reverse sweep shared by :func:`backward` and :func:`gradients`.

    Gradients flow through the ``_pending`` slot of each node. Leaves receive theirs
    into ``.grad`` or, when ``capture`` is given, into ``capture[id(leaf)]`` for the
    leaves (or intermediate nodes) whose ids it holds.
    """
    dxp = _differentiable_namespace() if create_graph else None
    fast_leaves = capture is None and not create_graph

    by_type = backend._BY_TYPE
    counts = _dependency_counts(roots)
    for r, s in zip(roots, seeds):
        if r._prim is None:
            _deliver_leaf(r, s, s, capture, create_graph)
        else:
            r._pending = s if r._pending is None else r._pending + s
    # A root may also feed another root: it is ready only once nothing leads to it.
    ready = []
    for r in roots:
        if r._prim is not None and counts[id(r)] == 0 and not any(q is r for q in ready):
            ready.append(r)
    # Record the VJPs only for create_graph (plain save/restore: this runs every step).
    previous = _grad_mode.enabled
    _grad_mode.enabled = create_graph
    try:
        while ready:
            t = ready.pop()
            g = t._pending
            t._pending = None
            if capture is not None and id(t) in capture:
                capture[id(t)] = g if capture[id(t)] is None else capture[id(t)] + g
            prim, args, params = t._prim, t._args, t._params
            if create_graph:
                xp, ans, raw = dxp, t, args
            else:
                ans = t.data
                xp = by_type[ans.__class__]
                raw = t._inputs
            vjps, variadic = prim.vjps, prim.vjp_variadic
            for i, a in enumerate(args):
                if not (isinstance(a, Tensor) and a.requires_grad):
                    continue
                if variadic is not None:
                    ga = variadic(i, xp, g, ans, *raw, **params)
                else:
                    vjp = vjps[i] if i < len(vjps) else None
                    if vjp is None:
                        raise RuntimeError(f"agrad.{prim.name}: argument {i} is not differentiable "
                                           f"but requires a gradient")
                    ga = vjp(xp, g, ans, *raw, **params)
                if create_graph:
                    shape = a.data.shape
                else:
                    if ga.__class__ is not xp.array_type:
                        ga = as_array(xp, ga)
                    shape = raw[i].shape
                if ga.shape != shape:
                    ga = _sum_to_shape(xp, ga, shape)
                if ga.dtype != a.data.dtype:
                    ga = xp.astype(ga, a.data.dtype)
                if a._prim is None:
                    if fast_leaves and a.grad is None and ga is not g and getattr(ga, "base", 0) is None:
                        a.grad = _wrap(ga)  # the common case, inlined: a fresh array for a fresh leaf
                    else:
                        _deliver_leaf(a, ga, g, capture, create_graph)
                    continue
                a._pending = ga if a._pending is None else a._pending + ga
                k = id(a)
                counts[k] -= 1
                if counts[k] == 0:
                    ready.append(a)
            if not retain_graph:
                t._prim = RELEASED
                t._args = ()
                t._inputs = None
                t._params = None
    finally:
        _grad_mode.enabled = previous


def _differentiable_namespace() -> Any:
    from . import ops  # imported late: agrad.ops imports this module

    return ops


def _deliver_leaf(leaf: Tensor, ga: Any, g_in: Any, capture: dict[int, Any] | None, create_graph: bool) -> None:
    """Add a gradient to a leaf without ever aliasing another gradient or user data."""
    if capture is not None:
        k = id(leaf)
        if k in capture:
            capture[k] = ga if capture[k] is None else capture[k] + ga
        return
    if create_graph:
        grad = ga if isinstance(ga, Tensor) else Tensor(ga)
        if grad is g_in or not _owns(grad.data):
            grad = grad * 1  # a recorded copy
        leaf.grad = grad if leaf.grad is None else leaf.grad + grad
        return
    if leaf.grad is None:
        if ga is g_in or not _owns(ga):
            # The VJP handed back the incoming gradient (or a view of it), which other
            # leaves or the caller may also hold: copy so that .grad is ours alone.
            xp = backend.namespace_of((ga,), "backward")
            ga = xp.asarray(ga, copy=True)
        leaf.grad = _wrap(ga)
    else:
        leaf.grad = _wrap(leaf.grad.data + ga)


def _wrap(data: Any) -> Tensor:
    """A constant Tensor around an array already known to be valid (no checks)."""
    t = _new(Tensor)
    t.data = data
    t.grad = t._prim = t._args = t._inputs = t._params = t._pending = t._tangents = None
    t.requires_grad = False
    return t


def _owns(x: Any) -> bool:
    # NumPy and CuPy arrays that own their memory have base None; anything else
    # (views, read-only broadcasts, array-api-strict wrappers) is treated as shared.
    return getattr(x, "base", 0) is None


def _seed(root: Tensor, grad: Any, create_graph: bool, op: str) -> Any:
    if grad is None:
        if root.data.shape != ():
            raise RuntimeError(
                f"agrad.{op}: the output has shape {tuple(root.data.shape)}; backward() without a "
                f"gradient needs a scalar output. Pass grad= (an array of the output's shape) or "
                f"reduce the output first (e.g. .sum())."
            )
        xp = backend.namespace_of((root.data,), op)
        seed = xp.ones_like(root.data)
    else:
        seed = grad.data if isinstance(grad, Tensor) else grad
        xp = backend.namespace_of((root.data, seed), op)
        if isinstance(seed, (int, float)):
            seed = xp.full_like(root.data, seed)
        if tuple(seed.shape) != tuple(root.data.shape):
            raise ValueError(
                f"agrad.{op}: grad has shape {tuple(seed.shape)} but the output has shape "
                f"{tuple(root.data.shape)}; they must match"
            )
        if seed.dtype != root.data.dtype:
            seed = xp.astype(seed, root.data.dtype)
    if create_graph:
        return grad if isinstance(grad, Tensor) else Tensor(seed)
    return seed


def backward(root: Tensor, grad: Any = None, retain_graph: bool = False, create_graph: bool = False) -> None:
    """Accumulate d(root)/d(leaf) into ``leaf.grad`` for every leaf that requires it.

    With ``create_graph=True`` the gradients are themselves recorded Tensors, so
    they can be differentiated again; the graph is then retained.
    """
    if not root.requires_grad:
        raise RuntimeError(
            "agrad.backward: this tensor does not require a gradient and has no recorded history; "
            "create the inputs with requires_grad=True (and not under agrad.no_grad())."
        )
    seed = _seed(root, grad, create_graph, "backward")
    _sweep([root], [seed], retain_graph or create_graph, create_graph, None)


def gradients(outputs: Sequence[Tensor], inputs: Sequence[Tensor], grad_outputs: Sequence[Any] | None = None,
              retain_graph: bool | None = None, create_graph: bool = False) -> list[Any]:
    """d(outputs)/d(inputs), returned rather than accumulated into ``.grad``.

    The analogue of ``torch.autograd.grad``. An input the outputs do not depend on
    gets a zero gradient. The gradients are Tensors, themselves recorded (and so
    differentiable) when ``create_graph=True``.
    """
    if retain_graph is None:
        retain_graph = create_graph
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    roots, seeds = [], []
    for out, go in zip(outputs, grad_outputs):
        if not isinstance(out, Tensor) or not out.requires_grad:
            continue
        roots.append(out)
        seeds.append(_seed(out, go, create_graph, "grad"))
    capture: dict[int, Any] = {id(x): None for x in inputs}
    if roots:
        _sweep(roots, seeds, retain_graph, create_graph, capture)
    result = []
    for x in inputs:
        g = capture[id(x)]
        if g is None:
            xp = backend.namespace_of((x.data,), "grad")
            g = xp.zeros_like(x.data)
            if create_graph:
                g = Tensor(g)
        elif not create_graph and not _owns(g):
            g = backend.namespace_of((g,), "grad").asarray(g, copy=True)
        result.append(g if isinstance(g, Tensor) else Tensor(g))
    return result
