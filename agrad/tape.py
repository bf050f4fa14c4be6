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
from .batching import batched
from .batching import rules as batching_rules
from .compile import trace as tracing
from .tensor import Tensor, alias, version_of

__all__ = ["Primitive", "primitive", "read_only_view", "no_grad", "enable_grad", "is_grad_enabled", "backward",
           "gradients"]


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

# The kinds of rule a primitive carries, each under its name in ``Primitive.rules``; a new
# transform (vmap's batching rules) adds a kind without touching the declaration or the engine.
VJP = "vjp"
JVP = "jvp"
BATCH = batched.BATCH  # "batch": agrad.vmap's batching rules (agrad.batching.rules)

Rule = Callable[..., Any]


class Primitive:
    """A differentiable operation: a forward function and its rules, one per kind.

    ``forward(xp, *arrays, **params)`` computes the result from raw arrays. ``rules`` maps
    a rule kind to its rule; every rule gets all the arguments at once:

    - ``rules["vjp"](xp, g, ans, wanted, *args, **params)`` returns one cotangent per
      argument, given the output's cotangent ``g`` and the output ``ans``; ``wanted[i]``
      says whether argument ``i``'s is used, and the rule computes no other (it returns
      None there, and None for an argument without one: indices, masks). A cotangent may
      have the broadcast shape, which the engine sums back to the argument's shape. A
      primitive declared without one is not differentiable in any argument.
    - ``rules["jvp"](xp, tangents, ans, *args, **params)`` returns the output's tangent
      from the arguments' tangents (None where an argument has none). JVP rules always
      run on Tensors with agrad's differentiable namespace, so they can be differentiated
      again.
    - ``rules["batch"](xp, dims, *args, **params)`` returns ``(out, out_dim)``, the op on
      many examples at once (agrad.vmap): ``dims[i]`` is the axis along which argument
      ``i`` holds its examples (None: not batched); see :mod:`agrad.batching.rules`.

    Declare primitives with :func:`primitive`, which also writes the rules of the common
    cases (per-argument rules, linear and elementwise ops); :meth:`def_rule` writes one.
    With ``has_aux=True`` the forward returns ``(out, aux)``: ``aux`` (e.g. a softmax the
    VJP would otherwise recompute) reaches the VJP as the keyword ``aux`` on a plain
    backward pass. Under ``create_graph`` the VJP gets Tensors and must recompute from
    them, so that the result stays differentiable.
    In-place updates (see :mod:`agrad.inplace`): ``saves`` says which values the VJP
    reads, so that an update of an input after the op was recorded is an error at
    backward exactly when the derivative needs the old values: None (the default) means
    every argument and the output; else one entry per argument (missing ones: nothing),
    each a tuple of the argument positions and ``"out"`` that argument's cotangent reads;
    an element ``("out", i, ...)`` says "the output, or, once the output was updated in
    place, arguments i, ... to recompute it": the VJP is then called with ``ans=None``.
    Linear ops read nothing. ``view(base, new, **params)`` marks an op whose result may
    share memory with its (first) argument: it returns ``base`` with the part the view
    shows replaced by ``new``, which is how an in-place update of the view reaches the
    history of its base.
    """

    # No __slots__: primitives are few, and a __dict__ lets each carry its own __doc__.

    def __init__(self, name: str, forward: Callable, *, has_aux: bool = False, saves: Sequence[tuple] | None = None,
                 view: Callable | None = None, register: bool = True) -> None:
        self.name = name
        self.forward = forward
        self.has_aux = has_aux
        self.saves = None if saves is None else tuple(tuple(e) for e in saves)
        self.view = view
        # The sweep reads rules["vjp"] without asking: until a VJP is declared, none is wanted.
        self.rules: dict[str, Rule] = {VJP: per_argument_vjp(name, ())}
        # The one argument's own rule when the VJP is per_argument_vjp's of one rule: the sweep
        # calls it directly (the same call the wrapper makes, one frame less).
        self._vjp1: Rule | None = None
        self.__doc__ = f"The agrad primitive {name!r}."
        if register:
            if name in REGISTRY:
                raise ValueError(f"agrad: a primitive named {name!r} is already registered")
            REGISTRY[name] = self

    def def_rule(self, kind: str, rule: Rule) -> "Primitive":
        """Write ``rule`` as this primitive's rule of ``kind`` ("vjp", "jvp", ...), as it is:
        a VJP written here must return one cotangent per argument, None where none is
        wanted (:func:`primitive` checks that of the rules it is given)."""
        self.rules[kind] = rule
        if kind == VJP:
            self._vjp1 = getattr(rule, "single_rule", None)
        return self

    # __call__(*args, **params): the op on its arguments, recorded when needed (apply, below).

    def __repr__(self) -> str:
        return f"<agrad primitive {self.name}>"


def primitive(name: str, forward: Callable, *, vjp: Rule | Sequence[Rule | None] | None = None,
              jvp: Rule | Sequence[Rule | None] | None = None, linear: bool = False, elementwise: bool = False,
              batch: Rule | None = None, saves: Sequence[tuple] | None = None, view: Callable | None = None,
              has_aux: bool = False, register: bool = True) -> Primitive:
    """Declare a new differentiable operation: the one way agrad's own ops are declared.

    Example::

        cube_p = agrad.primitive("cube", lambda xp, x: x * x * x,
                                 vjp=[lambda xp, g, ans, x: g * 3 * x * x], elementwise=True)

    ``vjp`` is the all-arguments rule ``vjp(xp, g, ans, wanted, *args, **params)`` (see
    :class:`Primitive`), or, the common case, a sequence of per-argument rules
    ``vjp[i](xp, g, ans, *args, **params)`` giving argument i's cotangent (None: the
    argument is not differentiable), each called only when its cotangent is wanted.
    ``jvp`` likewise: ``jvp(xp, tangents, ans, *args, **params)``, or per-argument rules
    ``jvp[i](xp, t, ans, *args, **params)`` giving argument i's share of the output's
    tangent for its tangent ``t`` (the shares are summed). Without either the op has no
    forward-mode rule (agrad.jvp then raises). Properties in place of a ``jvp``:

    - ``linear=True``: the op is linear in its array arguments, so the output's tangent
      is the op applied to the tangents, and the VJP reads no values (``saves=()``).
    - ``elementwise=True``: the Jacobian is diagonal, so the VJP with the tangent in
      place of ``g`` is the JVP (broadcasting included), and the op batches as it
      broadcasts (the batching rule is :func:`agrad.batching.rules.elementwise`).

    ``batch`` is the batching rule ``batch(xp, dims, *args, **params) -> (out, out_dim)``
    that ``agrad.vmap`` runs (see :mod:`agrad.batching.rules`, which also has the
    rules of reductions and ops along an axis); without one (and without
    ``elementwise=True``) the op cannot be mapped.

    Write the rules only with operators and ``xp`` functions so that they also run on
    Tensors, which makes higher-order derivatives of the new op work too.
    ``saves``, ``view`` and ``has_aux``: see :class:`Primitive`; ``register=False``
    keeps the op out of the registry (the gradient-check matrix of agrad's own ops).
    """
    if linear:
        if saves is not None and tuple(saves):
            raise ValueError(f"agrad.primitive {name!r}: a linear op's VJP reads no values (saves=())")
        saves = ()
    prim = Primitive(name, forward, has_aux=has_aux, saves=saves, view=view, register=register)
    if vjp is not None:
        per_arg = not callable(vjp)
        prim.def_rule(VJP, per_argument_vjp(name, vjp) if per_arg else _counted(name, vjp))
    if sum((jvp is not None, linear, elementwise)) > 1:
        raise ValueError(f"agrad.primitive {name!r}: give one of jvp=, linear=True and elementwise=True")
    if linear:
        prim.def_rule(JVP, _linear_jvp(prim))
    elif elementwise:
        if vjp is None:
            raise ValueError(f"agrad.primitive {name!r}: elementwise=True derives the JVP from vjp=, which is missing")
        prim.def_rule(JVP, per_argument_jvp(name, vjp) if per_arg else _jvp_from_vjp(vjp))
    elif jvp is not None:
        prim.def_rule(JVP, jvp if callable(jvp) else per_argument_jvp(name, jvp))
    if batch is not None:
        prim.def_rule(BATCH, batch(prim) if getattr(batch, "needs_primitive", False) else batch)
    elif elementwise:
        prim.def_rule(BATCH, batching_rules.elementwise(prim))
    return prim


def _not_differentiable(name: str, i: int) -> RuntimeError:
    return RuntimeError(f"agrad.{name}: argument {i} is not differentiable but requires a gradient")


def _counted(name: str, vjp: Rule) -> Rule:
    """An all-arguments VJP that is checked to return one cotangent per argument."""

    def counted(xp: Any, g: Any, ans: Any, wanted: tuple, *args: Any, **params: Any) -> Sequence[Any]:
        grads = vjp(xp, g, ans, wanted, *args, **params)
        if len(grads) != len(wanted):
            raise ValueError(f"agrad.{name}: its VJP returned {len(grads)} gradients for {len(wanted)} arguments")
        return [ga if w else None for ga, w in zip(grads, wanted)]  # (the sweep delivers what it gets)

    return counted


def _raiser(name: str, i: int) -> Rule:
    """The rule of an argument that has no derivative: an error if its cotangent is wanted."""

    def no_rule(*args: Any, **params: Any) -> Any:
        raise _not_differentiable(name, i)

    return no_rule


def per_argument_vjp(name: str, rules: Sequence[Rule | None]) -> Rule:
    """The all-arguments VJP that calls ``rules[i]`` for each wanted argument ``i``.
    One and two arguments (most ops) get a rule of their own: the sweep's hot path."""
    rules = tuple(rules)

    def vjp(xp: Any, g: Any, ans: Any, wanted: tuple, *args: Any, **params: Any) -> list:
        out: list = []
        for i, w in enumerate(wanted):
            if not w:
                out.append(None)
                continue
            rule = rules[i] if i < len(rules) else None
            if rule is None:
                raise _not_differentiable(name, i)
            out.append(rule(xp, g, ans, *args, **params))
        return out

    # Rules of one, two and three arguments (nearly every op) are called without a loop; a
    # missing rule (None) becomes one that raises, called only when its cotangent is wanted.
    full = tuple(r if r is not None else _raiser(name, i) for i, r in enumerate(rules))
    if len(full) == 1:
        (f,) = full

        def vjp1(xp: Any, g: Any, ans: Any, wanted: tuple, *args: Any, **params: Any) -> tuple:
            try:  # (free in CPython 3.11+ unless it raises; cheaper than comparing len(wanted))
                (w,) = wanted
            except ValueError:  # more arguments than rules
                return vjp(xp, g, ans, wanted, *args, **params)
            return (f(xp, g, ans, *args, **params),) if w else (None,)

        vjp1.single_rule = f  # type: ignore[attr-defined]
        return vjp1
    if len(full) == 2:
        f0, f1 = full

        def vjp2(xp: Any, g: Any, ans: Any, wanted: tuple, *args: Any, **params: Any) -> tuple:
            try:
                w0, w1 = wanted
            except ValueError:
                return vjp(xp, g, ans, wanted, *args, **params)
            return (f0(xp, g, ans, *args, **params) if w0 else None,
                    f1(xp, g, ans, *args, **params) if w1 else None)

        return vjp2
    if len(full) == 3:
        f0, f1, f2 = full

        def vjp3(xp: Any, g: Any, ans: Any, wanted: tuple, *args: Any, **params: Any) -> tuple:
            try:
                w0, w1, w2 = wanted
            except ValueError:  # (linear without a bias: two arguments)
                return vjp(xp, g, ans, wanted, *args, **params)
            return (f0(xp, g, ans, *args, **params) if w0 else None,
                    f1(xp, g, ans, *args, **params) if w1 else None,
                    f2(xp, g, ans, *args, **params) if w2 else None)

        return vjp3
    return vjp


def per_argument_jvp(name: str, rules: Sequence[Rule | None]) -> Rule:
    """The all-arguments JVP that sums ``rules[i](xp, t_i, ans, *args)`` over the arguments with a tangent."""
    rules = tuple(rules)

    def jvp(xp: Any, tangents: Sequence[Any], ans: Any, *args: Any, **params: Any) -> Any:
        total = None
        for i, t in enumerate(tangents):
            if t is None:
                continue
            rule = rules[i] if i < len(rules) else None
            if rule is None:
                raise forward_mode.NoJVPRule(f"agrad.jvp: argument {i} of {name!r} is not differentiable but has a "
                                             f"tangent")
            c = rule(xp, t, ans, *args, **params)
            total = c if total is None else total + c
        return total

    return jvp


def _jvp_from_vjp(vjp: Rule) -> Rule:
    """An elementwise op's JVP from its all-arguments VJP: each argument's cotangent, for
    its tangent in place of g, is its share of the output's tangent."""

    def jvp(xp: Any, tangents: Sequence[Any], ans: Any, *args: Any, **params: Any) -> Any:
        total = None
        n = len(tangents)
        for i, t in enumerate(tangents):
            if t is not None:
                c = vjp(xp, t, ans, (False,) * i + (True,) + (False,) * (n - i - 1), *args, **params)[i]
                total = c if total is None else total + c
        return total

    return jvp


def _linear_jvp(prim: Primitive) -> Rule:
    """A linear op's JVP: the op itself applied to the tangents (zeros where there are none)."""

    def jvp(xp: Any, tangents: Sequence[Any], ans: Any, *args: Any, **params: Any) -> Any:
        filled = [t if t is not None else (forward_mode.zeros_like(a) if hasattr(a, "shape") else a)
                  for a, t in zip(args, tangents)]
        return prim(*filled, **params)

    return jvp


# --------------------------------------------------------------------------- forward


def apply(prim: Primitive, /, *args: Any, **params: Any) -> Tensor:
    """Run ``prim`` on ``args`` and, when a differentiable input needs it, record it:
    ``prim(*args, **params)`` (this is :meth:`Primitive.__call__`, one frame per op)."""
    tracer = tracing._TRACER
    if tracer is not None:  # agrad.compile is tracing: outside arrays become proxies
        args = tracer.adopt_args(args)
    raw = versions = ()  # versions: the inputs' (0 for those without a version counter)
    needs_grad = counted = False  # counted: an input has a version counter (updated in place, or a view):
    cls = None  # record the versions. cls: the class of the arrays, while they are all one
    for a in args:
        if isinstance(a, Tensor):
            vc = a._vc
            if vc is not None:
                counted = True
                view = a._view
                if view is not None and view[2] != generation(view[0]):
                    refresh(a)  # its base was updated in place since: the same view of the new base
                versions += (vc[0],)
            else:
                versions += _ZERO
            d = a._data
            raw += (d,)
            if a.requires_grad:
                needs_grad = True
            if d.__class__ is not cls:
                cls = _SEVERAL if cls is not None else d.__class__
        else:
            raw += (a,)
            versions += _ZERO
            c = a.__class__
            if c is not cls and c not in _SCALARS:  # a raw array (or something namespace_of refuses)
                cls = _SEVERAL if cls is not None else c
    # One array class on a single-device backend: that backend, without asking namespace_of
    # (which finds the same, and checks backends and devices when there is more to check).
    xp = _by_type.get(cls)
    if xp is not None and not xp.multi_device:
        out = prim.forward(xp, *raw, **params)
    else:
        xp = namespace_of(raw, prim.name)
        if xp is None:
            xp = backend.creation_namespace()
        # Batched arrays (agrad.vmap): the batching rule, not the forward
        out = batched.run_rule(prim, args, raw, params) if xp.__class__ is _BatchNamespace else \
            prim.forward(xp, *raw, **params)
    plain_params = params
    if prim.has_aux:
        out, aux = out
        if needs_grad:
            params = {**params, "aux": aux}
    if out.__class__ is not xp.array_type:
        out = as_array(xp, out)
    elif tracer is not None:
        out = tracer.as_eager(out)
    # The result: a node (its versions: the inputs', then its own, None while all are 0), or
    # a constant; a view of its first argument shares that one's version counter.
    if prim.view is not None and args and isinstance(args[0], Tensor) and backend.aliases(out, args[0]._data):
        x = args[0]
        if needs_grad and _grad_mode.enabled:
            t = _node(out, prim, args, raw, params, versions + (version_of(x),))
        else:
            t = _constant(out)
        t._mark_view(x, prim, plain_params)
    elif needs_grad and _grad_mode.enabled:
        t = _node(out, prim, args, raw, params, versions + _ZERO if counted else None)
    else:
        t = _constant(out)
    if forward_mode._running:  # a jvp is running: tangents may propagate (none can otherwise)
        for a in args:
            if isinstance(a, Tensor) and a._tangents is not None:
                forward_mode.propagate(prim, args, plain_params, t)
                break
    return t


Primitive.__call__ = apply  # type: ignore[method-assign]
_ONE_WANTED = (True,)
_ZERO = (0,)
_SEVERAL = object()  # (no namespace's array class): arrays of several classes
_SCALARS = frozenset((bool, int, float, complex))  # the Python scalars, which have no namespace
_by_type = backend._BY_TYPE
_BatchNamespace = batched.BatchNamespace
_BatchedArray = batched.BatchedArray
_BATCH_NAMESPACE = batched.NAMESPACE
_node = Tensor._node  # (the fast constructors, one global look-up each)
_constant = Tensor._constant
namespace_of = backend.namespace_of
as_array = backend.as_array
owns_memory = backend.owns_memory


# --------------------------------------------------------------------------- views and in-place updates
# A Tensor is a node of the graph. An in-place update (agrad.inplace) keeps the Tensor
# object but makes it stand for a new node; uses recorded before keep the old node,
# which a *shell* (a new Tensor on the same memory) takes over. Every recorded node
# notes the versions of its inputs, so the sweep finds the node each use meant
# (:func:`_resolve_args`). A view notes the Tensor whose history it follows (its base)
# and the view ops from there; when an update replaced the base's node, the view
# stands for the same view of the new node from its next use on (:func:`refresh`).


_REPLACED = [False]  # any node replaced yet (in this process): until then no use needs resolving


class Past:
    """The nodes an in-place update made a Tensor stop standing for: ``entries`` holds
    (version from which the next node holds, shell of the old node), oldest first;
    ``generation`` counts the updates (views compare it to know they are stale)."""

    __slots__ = ("generation", "entries")

    def __init__(self) -> None:
        self.generation = 0
        self.entries: list[tuple[int, Tensor]] = []


def read_only_view(base: Any, new: Any, **params: Any) -> Any:
    """The ``view`` of an op whose result may not be written (broadcast_to: several of its
    elements are one element of memory)."""
    raise ValueError("agrad: this tensor is a broadcast view (several of its elements share one memory location), "
                     "which cannot be updated in place; make a copy first (agrad.asarray(t, copy=True))")


def generation(t: Tensor) -> int:
    past = t._past
    return 0 if past is None else past.generation


def replace_node(t: Tensor, new: Tensor, old: Tensor) -> None:
    """``t`` stands for ``new`` from now on: its history (when the tape records) and its
    tangents; ``new`` was computed from ``old``, a shell of ``t`` made before. Uses of ``t``
    recorded before keep ``old``. ``t``'s array stays: the update was written into it.
    Under ``no_grad`` the history stays, as in PyTorch (a graph that saved the old values
    then fails at backward: the version changed)."""
    past = t._past_record()
    past.generation += 1
    t._tangents = new._tangents
    if not _grad_mode.enabled or (new._prim is None and t._prim is None):
        return
    entries = past.entries
    entries.append((version_of(t), old))
    _REPLACED[0] = True
    # Runs of nodes freed by a backward pass lead to the same error: keep one of each run.
    while len(entries) > 1 and entries[-1][1]._prim is RELEASED and entries[-2][1]._prim is RELEASED:
        del entries[-2]
    if new._prim is None:  # a value without a derivative (x //= 2): a constant from now on
        t._stand_for(new, None)
    else:
        n = len(new._args)
        recorded = new._versions[:n] if new._versions is not None else (0,) * n
        t._stand_for(new, (*recorded, version_of(t)))


def refresh(v: Tensor) -> None:
    """A view whose base's node was replaced: ``v`` stands for the same view of the base's
    new node (history and tangents) from now on, whatever the grad mode."""
    base, steps, synced = v._view
    if synced == generation(base):
        return
    with _set_grad(True):
        r = base
        for prim, params in steps:
            r = apply(prim, r, **params)
    old = v._shell()
    v._sync_view(r._view if r._view is not None else (base, steps, generation(base)))
    if r._prim is None and v._prim is None:  # a constant before and after: only the tangents may change
        v._tangents = r._tangents
        return
    v._past_record().entries.append((version_of(v), old))
    _REPLACED[0] = True
    v._stand_for(r, r._versions)
    v._tangents = r._tangents


def fresh(t: Any) -> Any:
    """``t``, brought up to date if it is a view whose base was updated in place."""
    if isinstance(t, Tensor) and t._view is not None and t._view[2] != generation(t._view[0]):
        refresh(t)
    return t


def _resolve_args(t: Tensor) -> None:
    """Point ``t``'s inputs at the nodes they stood for when ``t`` was recorded: an in-place
    update may have made one of them stand for a new node since."""
    versions = t._versions
    args = t._args
    new = None
    for i, a in enumerate(args):
        if isinstance(a, Tensor) and a._past is not None:
            u = versions[i] if versions is not None else 0
            for r, node in a._past.entries:
                if r > u:
                    if new is None:
                        new = list(args)
                    new[i] = node
                    break
    if new is not None:
        t._args = tuple(new)


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
    replaced = _REPLACED[0]  # (nothing below replaces a node)
    while stack:
        t = stack.pop()
        if t._prim is RELEASED:
            raise _released_error(t)
        if replaced:
            for a in t._args:
                if isinstance(a, Tensor) and a._past is not None:
                    _resolve_args(t)
                    break
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
        if _REPLACED[0]:
            for a in t._args:
                if isinstance(a, Tensor) and a._past is not None:
                    _resolve_args(t)
                    break
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
    foreign = any(id(t) in live or (t._data.__class__ is _BatchedArray and batched.hides_trace(t._data))
                  for t in targets)
    counts: dict[int, int] = {}
    for t in order:
        if id(t) not in useful:
            continue
        counts.setdefault(id(t), 0)
        if t._tangents is not None and forward_mode.active_levels((t,)):
            foreign = True
        for a in t._args:
            if not (isinstance(a, Tensor) and a.requires_grad):
                # a constant here, but its examples (agrad.vmap) may be traced outside the vmap
                if isinstance(a, Tensor) and a._data.__class__ is _BatchedArray and batched.hides_trace(a._data):
                    foreign = True
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
    out = alias(t)
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


def _sweep(roots: Sequence[Tensor], seeds: Sequence[Any], retain_graph: bool, create_graph: bool,
           capture: dict[int, Any] | None, graph: Plan | None = None) -> None:
    """The reverse sweep shared by :func:`backward` and :func:`gradients`.

    Gradients in flight live in a dict local to this sweep (never on the nodes), so a
    sweep started inside another one (a custom rule, a checkpoint, a nested grad)
    cannot disturb it. Leaves receive theirs into ``.grad`` or, when ``capture`` is
    given, into ``capture[id(node)]`` for the leaves or nodes whose ids it holds.
    """
    dxp = _differentiable_namespace() if create_graph else None
    tracer = tracing._TRACER
    fast_leaves = capture is None and not create_graph
    if graph is None:
        graph = plan(roots, None)
    counts, useful = graph.counts, graph.useful

    by_type = backend._BY_TYPE
    # A batched seed of a graph recorded on unbatched values (vmap of a pullback, as
    # agrad.jacobian does): every cotangent is batched, so every VJP runs in the batched
    # arrays' namespace, not in the namespace of the value it differentiates.
    seed_xp = None
    if not create_graph:
        for s in seeds:
            if backend.is_array_wrapper(s):
                seed_xp = by_type[s.__class__]
    pending: dict[int, Any] = {}
    for r, s in zip(roots, seeds):
        if r._prim is None:
            if (r.requires_grad and useful is None) or (useful is not None and id(r) in useful):
                _deliver_leaf(r, s, s, capture, create_graph)
        elif id(r) in counts:
            k = id(r)
            pending[k] = s if k not in pending else pending[k] + s
    # A root may also feed another root: it is ready only once nothing leads to it.
    # ready: (node, its gradient) for the nodes whose users are all done.
    ready = []
    for r in roots:
        if r._prim is not None and counts.get(id(r)) == 0 and not any(q is r for q, _ in ready):
            ready.append((r, pending.pop(id(r))))
    # Record the VJPs only for create_graph (plain save/restore: this runs every step).
    previous = _grad_mode.enabled
    _grad_mode.enabled = create_graph
    try:
        while ready:
            t, g = ready.pop()
            if capture is not None and id(t) in capture:
                capture[id(t)] = g if capture[id(t)] is None else capture[id(t)] + g
            args = t._args
            if create_graph:
                xp, ans, raw = dxp, t, constants_as_tensors(args)
            else:
                ans = t._data
                xp = by_type[ans.__class__] if seed_xp is None else seed_xp
                raw = t._inputs
                if xp.__class__ is _BatchNamespace:  # (agrad.vmap: the VJP runs on Tensors, see _batched_vjp)
                    xp = None
            # One pass over the inputs: which cotangents this sweep uses (the rule computes no
            # other), and whether an input was updated in place since the node was recorded.
            wanted = ()
            versions = t._versions
            if versions is None:  # every input (and the output) was at version 0 when recorded: still?
                moved = t._vc is not None and t._vc[0]
                if useful is None:
                    for a in args:
                        if isinstance(a, Tensor):
                            wanted += (a.requires_grad,)
                            if a._vc is not None and a._vc[0]:
                                moved = True
                        else:
                            wanted += (False,)
                else:  # a transform's targets may no longer require a gradient themselves
                    for a in args:
                        if isinstance(a, Tensor):
                            wanted += (id(a) in useful,)
                            if a._vc is not None and a._vc[0]:
                                moved = True
                        else:
                            wanted += (False,)
                if moved:
                    if _check_versions(t, useful):
                        ans = None  # the VJP recomputes an output updated in place (see _check_versions)
            else:
                moved = (0 if t._vc is None else t._vc[0]) != versions[-1]
                if useful is None:
                    for a, v in zip(args, versions):
                        if isinstance(a, Tensor):
                            wanted += (a.requires_grad,)
                            if (0 if a._vc is None else a._vc[0]) != v:
                                moved = True
                        else:
                            wanted += (False,)
                else:
                    for a, v in zip(args, versions):
                        if isinstance(a, Tensor):
                            wanted += (id(a) in useful,)
                            if (0 if a._vc is None else a._vc[0]) != v:
                                moved = True
                        else:
                            wanted += (False,)
                if moved:
                    if _check_versions(t, useful):
                        ans = None
            # One cotangent per argument, None where none is wanted: the per-argument rules are
            # built so and primitive() checks the others, so that the hot path need not.
            if xp is None:
                xp = _BATCH_NAMESPACE
                grads = _batched_vjp(t, g, ans, wanted, args)
            elif wanted == _ONE_WANTED and t._prim._vjp1 is not None:  # what the rule's wrapper would do
                grads = (t._prim._vjp1(xp, g, ans, *raw, **t._params),)
            else:
                grads = t._prim.rules[VJP](xp, g, ans, wanted, *raw, **t._params)
            for a, ga in zip(args, grads):
                if ga is None:
                    continue
                if not create_graph and ga.__class__ is not xp.array_type:
                    ga = as_array(xp, ga)
                elif tracer is not None and not create_graph:
                    ga = tracer.as_eager(ga)
                shape = a._data.shape
                if ga.shape != shape:
                    ga = _sum_to_shape(xp, ga, shape)
                if ga.dtype != a._data.dtype:
                    ga = _cast_gradient(xp, ga, a, t._prim)
                if a._prim is None:
                    if fast_leaves and a.grad is None and ga is not g and owns_memory(ga):
                        a.grad = _wrap(ga)  # the common case, inlined: a fresh array for a fresh leaf
                    else:
                        _deliver_leaf(a, ga, g, capture, create_graph)
                    continue
                k = id(a)
                c = counts[k]
                if c == 1:  # its last user (the common case: a gradient that needs no dict)
                    ready.append((a, ga if k not in pending else pending.pop(k) + ga))
                else:
                    counts[k] = c - 1
                    pending[k] = ga if k not in pending else pending[k] + ga
            if not retain_graph:
                t._prim = RELEASED
                t._args = ()
                t._inputs = None
                t._params = None
    finally:
        _grad_mode.enabled = previous


def _batched_vjp(t: Tensor, g: Any, ans: Any, wanted: tuple, args: tuple) -> list:
    """The VJP of a node recorded on batched arrays (vmap of a derivative) on a plain
    backward pass: run on Tensors and agrad's namespace, unrecorded, because the raw arrays
    of some backends (array-api-strict) do not defer to a batched array's operators. The
    cotangents come back as arrays."""
    grads = t._prim.rules[VJP](_differentiable_namespace(), Tensor._constant(g), None if ans is None else t, wanted,
                               *constants_as_tensors(args), **t._params)
    return [ga._data if isinstance(ga, Tensor) else ga for ga in grads]


def _cast_gradient(xp: Any, ga: Any, a: Tensor, prim: Primitive) -> Any:
    """A gradient in its input's dtype; a complex gradient for a real input is an error
    (casting would silently drop its imaginary part)."""
    rxp = backend.namespace_of((ga._data if isinstance(ga, Tensor) else ga,), prim.name)
    if rxp.isdtype(ga.dtype if not isinstance(ga, Tensor) else ga._data.dtype, "complex floating"):
        raise TypeError(f"agrad.{prim.name}: its gradient is complex (a complex constant met a traced real value); "
                        f"derivatives of complex numbers are not supported yet")
    return xp.astype(ga, a._data.dtype)


def _check_versions(t: Tensor, useful: set[int] | None) -> bool:
    """An input (or the output) of ``t`` was updated in place after ``t`` was recorded:
    an error if the derivatives wanted from ``t`` read its values (they are gone). True
    when the VJPs are to recompute the updated output from their arguments (``ans=None``:
    the ``("out", i, ...)`` entries of ``Primitive.saves``)."""
    prim, args = t._prim, t._args
    n = len(args)
    saved = t._versions or (0,) * (n + 1)
    recompute = False
    if prim.saves is None:
        needed: set = set(range(n)) | {"out"}
    else:
        needed = set()
        out_updated = version_of(t) != saved[n]
        for i, a in enumerate(args):
            wanted = isinstance(a, Tensor) and (a.requires_grad if useful is None else id(a) in useful)
            if wanted and i < len(prim.saves):
                for e in prim.saves[i]:
                    if e.__class__ is not tuple:
                        needed.add(e)
                    elif out_updated:  # ("out", i, ...): recompute the output from these arguments
                        needed.update(e[1:])
                        recompute = True
    for i, a in enumerate(args):
        if i in needed and isinstance(a, Tensor) and version_of(a) != saved[i]:
            raise _modified_error(prim, f"argument {i}", a, saved[i])
    if "out" in needed and version_of(t) != saved[n]:
        raise _modified_error(prim, "the output", t, saved[n])
    return recompute


def _modified_error(prim: Primitive, which: str, a: Tensor, recorded: int) -> RuntimeError:
    update = a._vc[1] if a._vc is not None else "an update"
    return RuntimeError(
        f"agrad.backward: {which} of {prim.name} ({backend.describe(a._data)}) was updated in place by {update} "
        f"after {prim.name} was recorded (version {recorded}, now {version_of(a)}), through it or through a "
        f"Tensor sharing its memory (a view, a detached alias); the derivative of {prim.name} needs the old "
        f"values. Update it after backward() (optimizer.step() after loss.backward()), or compute a new tensor "
        f"instead of updating it in place (y = y + x, or a copy first: y = agrad.asarray(y, copy=True))."
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
        if grad is g_in or not owns_memory(grad._data):
            grad = grad * 1  # a recorded copy
        leaf.grad = grad if leaf.grad is None else leaf.grad + grad
        return
    if leaf.grad is None:
        if ga is g_in or not owns_memory(ga):
            # The VJP handed back the incoming gradient (or a view of it), which other
            # leaves or the caller may also hold: copy so that .grad is ours alone.
            xp = backend.namespace_of((ga,), "backward")
            ga = xp.asarray(ga, copy=True)
        leaf.grad = _wrap(ga)
    else:
        leaf.grad = _wrap(leaf.grad._data + ga)


_wrap = Tensor._constant  # a constant Tensor around an array already known to be valid (no checks)


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
    fresh(x)
    if not isinstance(x, Tensor):
        return False
    if x.requires_grad or (x._tangents is not None and bool(forward_mode.active_levels((x,)))):
        return True
    # inside agrad.vmap: a constant here whose examples a transform outside the vmap traces
    return x._data.__class__ is _BatchedArray and batched.hides_trace(x._data)


def backward(root: Tensor, grad: Any = None, retain_graph: bool = False, create_graph: bool = False) -> None:
    """Accumulate d(root)/d(leaf) into ``leaf.grad`` for every leaf that requires it.

    With ``create_graph=True`` the gradients are themselves recorded Tensors, so
    they can be differentiated again; the graph is then retained.
    """
    fresh(root)
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
        fresh(out)
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
            if not owns_memory(g) or any(g is r._data for r in result):
                g = backend.namespace_of((g,), "grad").asarray(g, copy=True)
            g = Tensor(g)
        handed_out.add(id(g))
        result.append(g)
    return result
