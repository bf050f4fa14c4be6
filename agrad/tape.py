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

from . import backend, forward_mode, tracing
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
    array arguments (concat, stack). ``vjp_all(xp, g, ans, args, wanted, params)``
    returns every argument's gradient from one call (None where ``wanted[i]`` is false
    or there is none): for rules that share work between arguments (custom_vjp,
    checkpoint), with no cache that two nodes could share.
    Forward mode: ``jvps[i](xp, t, ans, *args, **params)`` is argument i's contribution
    to the output tangent given its tangent ``t`` (it may have the broadcast shape).
    ``jvp_all(xp, tangents, ans, args, params)`` gives the whole output tangent from the
    tangents of all arguments (None where an argument has none) in one call.
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
                 vjp_variadic: Callable | None = None, register: bool = True, has_aux: bool = False,
                 vjp_all: Callable | None = None, jvp_all: Callable | None = None) -> None:
        self.name = name
        self.has_aux = has_aux
        self.forward = forward
        self.vjps = tuple(vjps)
        self.vjp_variadic = vjp_variadic
        self.vjp_all = vjp_all
        self.jvp_all = jvp_all
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
              jvps: Sequence[Callable | None] | None = None, vjp_all: Callable | None = None,
              jvp_all: Callable | None = None) -> Primitive:
    """Declare a new differentiable operation.

    Example::

        cube = agrad.primitive("cube", lambda xp, x: x * x * x,
                               lambda xp, g, ans, x: g * 3 * x * x,
                               jvps=[lambda xp, t, ans, x: t * 3 * x * x])

    Write the rules only with operators and ``xp`` functions so that they also run
    on Tensors, which makes higher-order derivatives of the new op work too.
    Without ``jvps`` the op has no forward-mode rule (agrad.jvp then raises).
    Rules that share work between arguments give every gradient from one call
    instead: ``vjp_all(xp, g, ans, args, wanted, params)`` returns one gradient per
    argument (None where ``wanted[i]`` is false), ``jvp_all(xp, tangents, ans, args,
    params)`` the output tangent from all the arguments' tangents (None for none).
    """
    prim = Primitive(name, forward, vjps, register=register, vjp_all=vjp_all, jvp_all=jvp_all)
    if jvps is not None:
        prim.defjvp(*jvps)
    return prim


# --------------------------------------------------------------------------- forward


def apply(prim: Primitive, args: Sequence[Any], params: dict) -> Tensor:
    """Run ``prim`` on ``args`` and, when a differentiable input needs it, record it."""
    if tracing._TRACER is not None:  # agrad.compile is tracing: outside arrays become proxies
        args = tracing._TRACER.adopt_args(args)
    raw = []
    needs_grad = False
    has_tangents = False
    updated = False  # an input was updated in place before: remember the versions we saw
    for a in args:
        if isinstance(a, Tensor):
            raw.append(a._data)
            if a.requires_grad:
                needs_grad = True
            if a._tangents is not None:
                has_tangents = True
            if a._version:
                updated = True
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
    t._data = out
    t.grad = None
    t._tangents = None
    t._version = 0
    if needs_grad and _grad_mode.enabled:
        t.requires_grad = True
        t._prim = prim
        t._args = args
        t._inputs = raw
        t._params = params
        t._versions = tuple(a._version if isinstance(a, Tensor) else 0 for a in args) if updated else None
    else:
        t.requires_grad = False
        t._prim = None
        t._args = None
        t._inputs = None
        t._params = None
        t._versions = None
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


class Plan:
    """The part of a graph that a gradient with respect to ``targets`` needs.

    ``useful`` holds the ids of the targets and of every node with a path to one: only
    their VJPs run, so a sweep never wanders into (or frees) the graph of an enclosing
    computation. ``counts`` is the number of useful edges leading to each useful node.
    ``foreign`` says that the gradient depends on values that something else traces:
    a useful node takes a live input (see :func:`_live_nodes`) that does not lead to
    the targets, a target is itself a live recorded node (an enclosing transform traces
    its input), or a useful node carries forward-mode tangents. Then the backward pass
    must be recorded, or the enclosing derivative would silently lose the terms that
    flow through it.
    """

    __slots__ = ("counts", "useful", "foreign")

    def __init__(self, counts: dict[int, int], useful: set[int] | None, foreign: bool) -> None:
        self.counts, self.useful, self.foreign = counts, useful, foreign


def _post_order(roots: Sequence[Tensor], released_ok: bool = False) -> list[Tensor]:
    """The recorded nodes below ``roots``, inputs before their users, without recursion
    (graphs may be 100,000 nodes deep). A node freed by an earlier backward pass is an
    error, or with ``released_ok`` a node without inputs."""
    order: list[Tensor] = []
    seen: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(r, False) for r in roots if r._prim is not None and r.requires_grad]
    while stack:
        t, done = stack.pop()
        if done:
            order.append(t)
            continue
        if id(t) in seen:
            continue
        seen.add(id(t))
        if t._prim is RELEASED and not released_ok:
            raise _released_error(t)
        stack.append((t, True))
        for a in t._args:
            if isinstance(a, Tensor) and a.requires_grad and a._prim is not None and id(a) not in seen:
                stack.append((a, False))
    return order


def _live_nodes(order: Sequence[Tensor]) -> set[int]:
    """The nodes of ``order`` (post-order) that depend on a leaf that still requires a
    gradient. A transform's own inputs stop requiring one when it returns, so what it
    recorded on them is history nobody can differentiate any more."""
    live: set[int] = set()
    for t in order:
        for a in t._args:
            if isinstance(a, Tensor) and a.requires_grad and (a._prim is None or id(a) in live):
                live.add(id(t))
                break
    return live


def plan(roots: Sequence[Tensor], targets: Sequence[Tensor] | None) -> Plan:
    """Analyse the graph below ``roots``; ``targets`` None means every leaf (``backward``)."""
    if targets is None:
        return Plan(_dependency_counts(roots), None, False)
    target_ids = {id(t) for t in targets}
    order = _post_order(roots)
    live = _live_nodes(order)
    useful = set(target_ids)
    for t in order:
        if id(t) in useful or any(isinstance(a, Tensor) and id(a) in useful for a in t._args):
            useful.add(id(t))
    foreign = any(id(t) in live for t in targets)
    counts: dict[int, int] = {}
    for t in order:
        if id(t) not in useful:
            continue
        counts.setdefault(id(t), 0)
        if t._tangents is not None and forward_mode.active_levels((t,)):
            foreign = True
        for a in t._args:
            if not (isinstance(a, Tensor) and a.requires_grad):
                continue
            if id(a) in useful:
                if a._prim is not None:
                    counts[id(a)] = counts.get(id(a), 0) + 1
            elif a._prim is None or id(a) in live:
                foreign = True
    return Plan(counts, useful, foreign)


def without_dead_history(t: Tensor) -> Tensor:
    """``t`` itself if someone can still differentiate it, else the same data (and
    forward-mode tangents) with the dead history dropped: what transforms return, so
    that their results hold no graph that nothing can use."""
    if not isinstance(t, Tensor) or t._prim is None:
        return t
    order = _post_order([t], released_ok=True)
    if id(t) in _live_nodes(order):
        return t
    out = Tensor(t._data)
    if t._tangents is not None:
        out._tangents = {k: without_dead_history(v) for k, v in t._tangents.items()}
    return out


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


def _all_vjps(t: Tensor, xp: Any, g: Any, ans: Any, raw: Sequence[Any], useful: set[int] | None) -> list[Any]:
    """Every wanted argument's gradient from one call of the node's ``vjp_all`` rule."""
    if useful is None:
        wanted = tuple(isinstance(a, Tensor) and a.requires_grad for a in t._args)
    else:
        wanted = tuple(isinstance(a, Tensor) and id(a) in useful for a in t._args)
    grads = list(t._prim.vjp_all(xp, g, ans, tuple(raw), wanted, t._params))
    if len(grads) != len(wanted):
        raise ValueError(f"agrad.{t._prim.name}: its VJP returned {len(grads)} gradients for {len(wanted)} arguments")
    return grads


def _sweep(roots: Sequence[Tensor], seeds: Sequence[Any], retain_graph: bool, create_graph: bool,
           capture: dict[int, Any] | None, graph: Plan | None = None) -> None:
    """The reverse sweep shared by :func:`backward` and :func:`gradients`.

    Gradients in flight live in a dict local to this sweep (never on the nodes), so a
    sweep started inside another one (a custom rule, a checkpoint, a nested grad)
    cannot disturb it. Leaves receive theirs into ``.grad`` or, when ``capture`` is
    given, into ``capture[id(node)]`` for the leaves or nodes whose ids it holds.
    """
    dxp = _differentiable_namespace() if create_graph else None
    fast_leaves = capture is None and not create_graph
    if graph is None:
        graph = plan(roots, None)
    counts, useful = graph.counts, graph.useful

    by_type = backend._BY_TYPE
    pending: dict[int, Any] = {}
    for r, s in zip(roots, seeds):
        if r._prim is None:
            if (r.requires_grad and useful is None) or (useful is not None and id(r) in useful):
                _deliver_leaf(r, s, s, capture, create_graph)
        elif id(r) in counts:
            k = id(r)
            pending[k] = s if k not in pending else pending[k] + s
    # A root may also feed another root: it is ready only once nothing leads to it.
    ready = []
    for r in roots:
        if r._prim is not None and counts.get(id(r)) == 0 and not any(q is r for q in ready):
            ready.append(r)
    # Record the VJPs only for create_graph (plain save/restore: this runs every step).
    previous = _grad_mode.enabled
    _grad_mode.enabled = create_graph
    try:
        while ready:
            t = ready.pop()
            g = pending.pop(id(t))
            if capture is not None and id(t) in capture:
                capture[id(t)] = g if capture[id(t)] is None else capture[id(t)] + g
            args = t._args
            versions = t._versions
            if versions is None:  # every input was at version 0 when recorded: is one not any more?
                for a in args:
                    if isinstance(a, Tensor) and a._version:
                        _check_versions(t)
            elif any(a._version != v for a, v in zip(args, versions) if isinstance(a, Tensor)):
                _check_versions(t)
            if create_graph:
                xp, ans, raw = dxp, t, constants_as_tensors(args)
            else:
                ans = t._data
                xp = by_type[ans.__class__]
                raw = t._inputs
            prim, params = t._prim, t._params
            all_grads = None
            if prim.vjp_all is not None:
                all_grads = _all_vjps(t, xp, g, ans, raw, useful)
            for i, a in enumerate(args):
                if useful is None:
                    if not (isinstance(a, Tensor) and a.requires_grad):
                        continue
                elif not (isinstance(a, Tensor) and id(a) in useful):
                    continue  # a transform's targets may no longer require a gradient themselves
                if all_grads is not None:
                    ga = all_grads[i]
                elif prim.vjp_variadic is not None:
                    ga = prim.vjp_variadic(i, xp, g, ans, *raw, **params)
                else:
                    vjp = prim.vjps[i] if i < len(prim.vjps) else None
                    if vjp is None:
                        raise RuntimeError(f"agrad.{prim.name}: argument {i} is not differentiable "
                                           f"but requires a gradient")
                    ga = vjp(xp, g, ans, *raw, **params)
                if ga is None:
                    continue
                if not create_graph and ga.__class__ is not xp.array_type:
                    ga = as_array(xp, ga)
                shape = a._data.shape
                if ga.shape != shape:
                    ga = _sum_to_shape(xp, ga, shape)
                if ga.dtype != a._data.dtype:
                    ga = _cast_gradient(xp, ga, a, prim)
                if a._prim is None:
                    if fast_leaves and a.grad is None and ga is not g and getattr(ga, "base", 0) is None:
                        a.grad = _wrap(ga)  # the common case, inlined: a fresh array for a fresh leaf
                    else:
                        _deliver_leaf(a, ga, g, capture, create_graph)
                    continue
                k = id(a)
                pending[k] = ga if k not in pending else pending[k] + ga
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


def _cast_gradient(xp: Any, ga: Any, a: Tensor, prim: Primitive) -> Any:
    """A gradient in its input's dtype; a complex gradient for a real input is an error
    (casting would silently drop its imaginary part)."""
    rxp = backend.namespace_of((ga._data if isinstance(ga, Tensor) else ga,), prim.name)
    if rxp.isdtype(ga.dtype if not isinstance(ga, Tensor) else ga._data.dtype, "complex floating"):
        raise TypeError(f"agrad.{prim.name}: its gradient is complex (a complex constant met a traced real value); "
                        f"derivatives of complex numbers are not supported yet")
    return xp.astype(ga, a._data.dtype)


def _check_versions(t: Tensor) -> None:
    """A saved input changed in place after it was recorded: its gradient would be wrong."""
    saved = t._versions or (0,) * len(t._args)
    for i, (a, v) in enumerate(zip(t._args, saved)):
        if isinstance(a, Tensor) and a._version != v:
            raise RuntimeError(
                f"agrad.backward: argument {i} of {t._prim.name} ({backend.describe(a._data)}) was updated in place "
                f"after the operation was recorded (version {v}, now {a._version}); its gradient would use the new "
                f"values. Update it after backward() (optimizer.step() after loss.backward()), or compute a new "
                f"tensor instead of updating it in place."
            )


def constants_as_tensors(args: Sequence[Any]) -> list[Any]:
    """Raw array arguments as constant Tensors, so that a rule running on Tensors never
    meets ``raw_array <op> Tensor``: array-api-strict (unlike NumPy) refuses to defer to
    the Tensor's reflected operator."""
    return [a if isinstance(a, Tensor) or not hasattr(a, "shape") else Tensor(a) for a in args]


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
        if grad is g_in or not _owns(grad._data):
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
        leaf.grad = _wrap(leaf.grad._data + ga)


def _wrap(data: Any) -> Tensor:
    """A constant Tensor around an array already known to be valid (no checks)."""
    t = _new(Tensor)
    t._data = data
    t.grad = t._prim = t._args = t._inputs = t._params = t._tangents = t._versions = None
    t._version = 0
    t.requires_grad = False
    return t


def _owns(x: Any) -> bool:
    # NumPy and CuPy arrays that own their memory have base None; anything else
    # (views, read-only broadcasts, array-api-strict wrappers) is treated as shared.
    return getattr(x, "base", 0) is None


def _seed(root: Tensor, grad: Any, create_graph: bool, op: str) -> Any:
    if grad is None:
        if root._data.shape != ():
            raise RuntimeError(
                f"agrad.{op}: the output has shape {tuple(root._data.shape)}; backward() without a "
                f"gradient needs a scalar output. Pass grad= (an array of the output's shape) or "
                f"reduce the output first (e.g. .sum())."
            )
        xp = backend.namespace_of((root._data,), op)
        seed = xp.ones_like(root._data)
    else:
        seed = grad._data if isinstance(grad, Tensor) else grad
        xp = backend.namespace_of((root._data, seed), op)
        if isinstance(seed, (int, float)):
            seed = xp.full_like(root._data, seed)
        if tuple(seed.shape) != tuple(root._data.shape):
            raise ValueError(
                f"agrad.{op}: grad has shape {tuple(seed.shape)} but the output has shape "
                f"{tuple(root._data.shape)}; they must match"
            )
        if create_graph and isinstance(grad, Tensor):
            # A recorded cotangent stays one: the result is a differentiable function of it.
            if grad.dtype != root._data.dtype:
                return _differentiable_namespace().astype(grad, root._data.dtype)
            return grad
        if seed.dtype != root._data.dtype:
            seed = xp.astype(seed, root._data.dtype)
    if create_graph:
        return Tensor(seed)
    return seed


def is_traced(x: Any) -> bool:
    """Whether someone may differentiate with respect to ``x`` (tape or forward mode)."""
    return isinstance(x, Tensor) and (x.requires_grad or (x._tangents is not None and
                                                          bool(forward_mode.active_levels((x,)))))


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
              retain_graph: bool | None = None, create_graph: bool | None = False) -> list[Tensor]:
    """d(outputs)/d(inputs), returned rather than accumulated into ``.grad``.

    The analogue of ``torch.autograd.grad``: the gradient of ``sum_k <grad_outputs[k],
    outputs[k]>`` with respect to each input (a leaf or a recorded node); an input the
    outputs do not depend on gets zeros. Only the part of the graph between the outputs
    and the inputs is swept. The gradients are Tensors, recorded (and so differentiable)
    when ``create_graph=True``; ``create_graph=None`` records exactly when the result
    depends on values that something else traces (see :class:`Plan`) or on a recorded
    ``grad_outputs`` entry, which is how the function transforms call it.
    """
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"agrad.grad: {len(grad_outputs)} output gradients for {len(outputs)} outputs")
    roots, given = [], []
    input_ids = {id(x) for x in inputs}
    for out, go in zip(outputs, grad_outputs):
        if isinstance(out, Tensor) and (out.requires_grad or id(out) in input_ids):
            roots.append(out)
            given.append(go)
    graph = plan(roots, inputs)
    if create_graph is None:
        create_graph = graph.foreign or any(is_traced(go) for go in given)
    if retain_graph is None:
        retain_graph = create_graph
    seeds = [_seed(r, go, create_graph, "grad") for r, go in zip(roots, given)]
    capture: dict[int, Any] = {id(x): None for x in inputs}
    if roots:
        with _set_grad(create_graph):
            _sweep(roots, seeds, retain_graph, create_graph, capture, graph)
    result: list[Tensor] = []
    handed_out: set[int] = {id(s) for s in seeds}
    for x in inputs:
        g = capture[id(x)]
        if g is None:
            g = Tensor(backend.namespace_of((x._data,), "grad").zeros_like(x._data))
        elif create_graph:
            g = g if isinstance(g, Tensor) else Tensor(g)
            if id(g) in handed_out:  # every input gets a Tensor of its own, never an alias
                with _set_grad(True):
                    g = _differentiable_namespace().identity(g)
        else:
            if not _owns(g) or any(g is r._data for r in result):
                g = backend.namespace_of((g,), "grad").asarray(g, copy=True)
            g = Tensor(g)
        handed_out.add(id(g))
        result.append(g)
    return result
