"""Function transforms: grad, value_and_grad, vjp, jvp, jacobian, hessian, hvp,
custom derivatives, stop_gradient and checkpoint.

They take functions of Tensors and return functions. Arguments may be nested lists,
tuples and dicts of arrays (a model's parameter dict, say): the derivatives come
back in the same structure. Transforms compose: ``grad(grad(f))``,
``jvp(grad(f), ...)`` (forward over reverse), ``grad`` of a function using ``jvp``.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Sequence

from . import backend, forward_mode, ops, tape, tree
from .batching.vmap import vmap
from .tensor import Tensor, alias, detached


def _argnums(argnums: int | Sequence[int], nargs: int, name: str) -> tuple[int, ...]:
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    for i in nums:
        if not -nargs <= i < nargs:
            raise ValueError(f"agrad.{name}: argnums {argnums!r} is out of range for {nargs} positional argument(s)")
    return tuple(i % nargs for i in nums)


def _raw(x: Any) -> Any:
    return x._data if isinstance(x, Tensor) else x


def target(x: Any) -> Tensor:
    """A Tensor of its own for one input position, to differentiate with respect to.

    It is always a new node, even when two positions hold the same object or an
    enclosing transform traces ``x``: a derivative with respect to it is then the
    partial derivative for this position alone, and no inner derivative can be
    confused with an outer one. A traced ``x`` is linked by a recorded identity (outer
    derivatives flow through it); forward-mode tangents ride along.
    """
    if isinstance(x, Tensor):
        if x.requires_grad:
            with tape.enable_grad():
                return ops.identity(x)
        t = alias(x).requires_grad_(True)  # (one version counter: an update of x is seen)
        if x._tangents is not None:
            t._tangents = dict(x._tangents)
        return t
    return Tensor(x, requires_grad=True)


def retire(targets: Sequence[Tensor]) -> None:
    """A transform has returned: its own input leaves stop requiring a gradient, so that
    what was recorded on them no longer counts as traced (see ``tape.Plan``)."""
    for t in targets:
        if t._prim is None:
            t.requires_grad = False


def _targets_of(trees: Sequence[Any]) -> tuple[list[Any], list[tuple], list[Tensor]]:
    """Each pytree with its leaves replaced by targets; the specs to split gradients back."""
    new_trees, specs, targets = [], [], []
    for tr in trees:
        leaves, treedef = tree.flatten(tr)
        ts = [target(leaf) for leaf in leaves]
        new_trees.append(tree.unflatten(treedef, ts))
        specs.append((treedef, len(ts)))
        targets.extend(ts)
    return new_trees, specs, targets


def _split(specs: list[tuple], grads: Sequence[Any]) -> list[Any]:
    pieces, start = [], 0
    for treedef, n in specs:
        pieces.append(tree.unflatten(treedef, list(grads[start:start + n])))
        start += n
    return pieces


def _output(out: Any, name: str, scalar: bool) -> Tensor:
    """The function's output as a Tensor: real floating, and a scalar when ``scalar``."""
    if not isinstance(out, Tensor):
        if isinstance(out, bool) or not (isinstance(out, (int, float)) or hasattr(out, "shape")):
            raise TypeError(f"agrad.{name}: the function must return an agrad Tensor, got {type(out).__name__}")
        out = Tensor(out)  # a constant: its derivative is zero
    xp = backend.namespace_of((out._data,), name)
    if not xp.isdtype(out._data.dtype, "real floating"):
        raise TypeError(
            f"agrad.{name}: the function's output must be real floating point to be differentiated, but it is "
            f"{backend.describe(out._data)}" + ("; for a complex output differentiate its real and imaginary "
                                               "parts separately" if xp.isdtype(out._data.dtype, "complex floating")
                                               else "; cast it, e.g. agrad.astype(y, 'float64')")
        )
    if scalar and out.shape != ():
        raise ValueError(
            f"agrad.{name}: the function must return a scalar (shape ()), got shape {out.shape}; "
            f"use agrad.vjp or agrad.jacobian for non-scalar outputs"
        )
    return out


def value_and_grad(f: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False) -> Callable:
    """A function returning ``(f(*args), df/d args[argnums])``.

    ``f`` must return a real scalar (or ``(scalar, aux)`` with ``has_aux=True``, in
    which case the result is ``((value, aux), grad)``). Each differentiated argument may
    be a pytree; its gradient has the same structure. With an int ``argnums`` the
    gradient is one pytree, with a tuple a tuple of them. Called inside another
    transform, the result stays differentiable by the enclosing one, also through values
    ``f`` closes over.
    """

    @functools.wraps(f)
    def wrapped(*args: Any, **kwargs: Any):
        nums = _argnums(argnums, len(args), "value_and_grad")
        args = list(args)
        new_trees, specs, targets = _targets_of([args[i] for i in nums])
        for i, new in zip(nums, new_trees):
            args[i] = new
        with tape.enable_grad():
            result = f(*args, **kwargs)
            if has_aux:
                if not (isinstance(result, (tuple, list)) and len(result) == 2):
                    raise TypeError("agrad.grad(has_aux=True): the function must return a pair (output, aux)")
                out, aux = result
            else:
                out, aux = result, None
            out = _output(out, "grad", scalar=True)
            grads = tape.gradients([out], targets, create_graph=None)
        retire(targets)
        pieces = _split(specs, [tape.without_dead_history(g) for g in grads])
        g = pieces[0] if isinstance(argnums, int) else tuple(pieces)
        value = tape.without_dead_history(out)
        return ((value, aux), g) if has_aux else (value, g)

    return wrapped


def grad(f: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False) -> Callable:
    """The gradient of a scalar function: ``grad(f)(x)`` is df/dx (same structure as x).

    Compose freely: ``grad(grad(f))`` is the second derivative. With ``has_aux=True``
    ``f`` returns ``(output, aux)`` and the result is ``(grad, aux)``.
    """
    vg = value_and_grad(f, argnums, has_aux)

    @functools.wraps(f)
    def wrapped(*args: Any, **kwargs: Any):
        value, g = vg(*args, **kwargs)
        return (g, value[1]) if has_aux else g

    return wrapped


def vjp(f: Callable, *primals: Any, has_aux: bool = False) -> tuple:
    """Evaluate ``f(*primals)`` and return ``(out, pullback)`` (``(out, pullback, aux)``
    with ``has_aux=True``, where ``f`` returns ``(out, aux)``).

    ``out`` may be a pytree of Tensors. ``pullback(cotangent)``, with a cotangent of
    ``out``'s structure, returns the tuple of vector-Jacobian products, one per primal
    (each with the primal's pytree structure). It may be called many times, and it is an
    ordinary differentiable function of the cotangent and of the primals.
    """
    args, specs, targets = _targets_of(primals)
    with tape.enable_grad():
        result = f(*args)
    if has_aux:
        if not (isinstance(result, (tuple, list)) and len(result) == 2):
            raise TypeError("agrad.vjp(has_aux=True): the function must return a pair (output, aux)")
        result, aux = result
    o_leaves, o_def = tree.flatten(result)
    o_leaves = [_output(o, "vjp", scalar=False) for o in o_leaves]
    retire(targets)  # the pullback still differentiates with respect to them; nothing else can

    def pullback(cotangent: Any) -> tuple:
        c_leaves, c_def = tree.flatten(cotangent)
        if len(c_leaves) != len(o_leaves) or (len(o_leaves) == 1 and o_def.kind == "leaf") != (c_def.kind == "leaf"):
            raise ValueError(f"agrad.vjp: the cotangent must have the structure of the output ({len(o_leaves)} "
                             f"array(s)), got {len(c_leaves)}")
        for k, (c, o) in enumerate(zip(c_leaves, o_leaves)):
            if tuple(getattr(c, "shape", ())) != o.shape:
                raise ValueError(f"agrad.vjp: cotangent {k} has shape {tuple(getattr(c, 'shape', ()))} but the "
                                 f"output has shape {o.shape}")
        with tape.enable_grad():
            grads = tape.gradients(o_leaves, targets, c_leaves, retain_graph=True, create_graph=None)
        return tuple(_split(specs, [tape.without_dead_history(g) for g in grads]))

    out = tree.unflatten(o_def, [tape.without_dead_history(o) for o in o_leaves])
    return (out, pullback, aux) if has_aux else (out, pullback)


def jvp(f: Callable, primals: Sequence[Any], tangents: Sequence[Any]) -> tuple[Any, Any]:
    """Forward mode: ``(f(*primals), J_f(primals) @ tangents)`` in one pass.

    ``primals`` and ``tangents`` are sequences of pytrees of the same structure and
    shapes. The cost is a small constant times the cost of ``f`` (every op computes its
    output's tangent as it runs), whatever the size of the output.
    """
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise TypeError("agrad.jvp: primals and tangents must be tuples (or lists), e.g. jvp(f, (x,), (v,))")
    p_leaves, p_def = tree.flatten(list(primals))
    t_leaves, _ = tree.flatten(list(tangents))
    if len(p_leaves) != len(t_leaves):
        raise ValueError(f"agrad.jvp: {len(p_leaves)} primal arrays but {len(t_leaves)} tangent arrays; "
                         f"tangents must have the primals' structure")
    level = forward_mode.new_level()
    inputs = []
    for k, (p, t) in enumerate(zip(p_leaves, t_leaves)):
        if isinstance(p, Tensor) and p.requires_grad:
            with tape.enable_grad():
                x = ops.identity(p)  # a node of its own: keeps p's tape and tangents, and may be annotated
        elif isinstance(p, Tensor):
            x = alias(p)
            x._tangents = dict(p._tangents) if p._tangents is not None else None
        else:
            x = Tensor(_raw(p))
        if isinstance(t, Tensor):
            tt = t
        elif hasattr(t, "shape"):
            tt = Tensor(t)
        else:  # a Python number: beside its primal
            tt = ops.full_like(x, t)
        if tt.shape != x.shape:
            raise ValueError(f"agrad.jvp: tangent {k} has shape {tt.shape} but its primal has shape {x.shape}")
        if tt.dtype != x.dtype:
            tt = ops.astype(tt, x.dtype)
        forward_mode.attach(x, level, tt)
        inputs.append(x)
    out = f(*tree.unflatten(p_def, inputs))
    o_leaves, o_def = tree.flatten(out)
    for o in o_leaves:
        if not isinstance(o, Tensor):
            raise TypeError(f"agrad.jvp: the function must return Tensors (or pytrees of them), got {type(o).__name__}")
    # Read every output's tangent before stripping any: one Tensor may fill several positions.
    t_out = [forward_mode.tangent_of(o, level) for o in o_leaves]
    for o in o_leaves:
        forward_mode.strip(o, level)
    forward_mode.retire(level)
    for k, (o, t) in enumerate(zip(o_leaves, t_out)):
        if t is None:  # the output does not depend on the inputs
            t_out[k] = Tensor(backend.namespace_of((o._data,), "jvp").zeros_like(o._data))
        else:
            t_out[k] = tape.without_dead_history(t)
    out = tree.unflatten(o_def, [tape.without_dead_history(o) for o in o_leaves])
    return out, tree.unflatten(o_def, t_out)


def _basis(x: Tensor) -> Any:
    """The n unit vectors of x's shape, as the rows of an (n, n) identity on x's device."""
    xp = backend.namespace_of((x._data,), "jacobian")
    n = x.size
    if xp.backend.creation_enters_device:
        with x._data.device:
            return xp.eye(n, dtype=x._data.dtype)
    return xp.eye(n, dtype=x._data.dtype, device=x._data.device)


def _zeros_beside(x: Tensor, shape: tuple) -> Tensor:
    xp = backend.namespace_of((x._data,), "jacobian")
    return Tensor(backend.create(xp, "zeros", shape, dtype=x._data.dtype, device=x._data.device))


def jacobian(f: Callable, argnums: int | Sequence[int] = 0, mode: str = "auto") -> Callable:
    """The Jacobian of ``f`` with respect to arguments ``argnums``.

    For an array output and an array argument x the result has shape
    ``out.shape + x.shape``. Pytrees nest as in JAX: each output leaf holds the
    arguments' structure, with leaves of shape ``out_leaf.shape + x_leaf.shape``. ``mode="forward"``
    takes one jvp per input element, ``"reverse"`` one vjp per output element, and
    ``"auto"`` picks forward mode when there are fewer inputs than outputs. The jvps (vjps)
    run together, as ``agrad.vmap`` of one jvp (pullback) over the rows of an
    identity, as JAX's ``jacfwd`` (``jacrev``): ``f`` runs once, on batched tangents, so it
    must be mappable (a value-dependent ``if`` in it raises ``agrad.VmapError``: write
    it with ``agrad.where``).
    """
    if mode not in ("auto", "forward", "reverse"):
        raise ValueError(f"agrad.jacobian: mode must be 'auto', 'forward' or 'reverse', got {mode!r}")
    def jac(*args: Any):
        nums = _argnums(argnums, len(args), "jacobian")
        specs, xs = [], []
        for i in nums:  # each differentiated argument may be a pytree of arrays
            leaves, treedef = tree.flatten(args[i])
            specs.append((treedef, len(leaves)))
            xs.extend(leaf if isinstance(leaf, Tensor) else Tensor(leaf) for leaf in leaves)

        def f_of(*sel):
            full, start = list(args), 0
            for i, (treedef, n) in zip(nums, specs):
                full[i] = tree.unflatten(treedef, list(sel[start:start + n]))
                start += n
            return f(*full)

        with tape.no_grad():
            o_leaves, o_def = tree.flatten(f_of(*[alias(x) for x in xs]))
        for o in o_leaves:
            if not isinstance(o, Tensor):
                raise TypeError(f"agrad.jacobian: the function must return Tensors (or pytrees of them), "
                                f"got {type(o).__name__}")
        o_shapes = [o.shape for o in o_leaves]
        single = len(o_leaves) == 1 and o_def.kind == "leaf"

        def f_vec(*sel):  # all outputs as one vector
            leaves, _ = tree.flatten(f_of(*sel))
            return leaves[0] if single else ops.concat([ops.reshape(o, (-1,)) for o in leaves])

        out_shape = o_shapes[0] if single else (sum(math.prod(s) for s in o_shapes),)
        n_in = sum(x.size for x in xs)
        n_out = math.prod(out_shape)
        use_forward = mode == "forward" or (mode == "auto" and n_in < n_out)
        results = []
        if n_in == 0 or n_out == 0:  # nothing to differentiate or nothing differentiated: empty blocks
            results = [_zeros_beside(x, out_shape + x.shape) for x in xs]
        elif use_forward:
            # One jvp per input element, all at once: the jvp mapped over the rows of an
            # identity (vmap runs f_vec once, on batched tangents), as JAX's jacfwd.
            for k, x in enumerate(xs):
                if x.size == 0:
                    results.append(_zeros_beside(x, out_shape + x.shape))
                    continue

                def column(e, k=k, x=x):
                    tangents = [ops.reshape(e, x.shape) if m == k else ops.zeros_like(y) for m, y in enumerate(xs)]
                    return jvp(f_vec, xs, tangents)[1]

                cols = vmap(column, out_axes=-1)(_basis(x))  # out_shape + (x.size,)
                results.append(ops.reshape(cols, out_shape + x.shape))
        else:
            # One vjp per output element, all at once: the pullback mapped over the rows of
            # an identity, as JAX's jacrev.
            out, pullback = vjp(f_vec, *xs)
            rows = vmap(lambda e: pullback(ops.reshape(e, out_shape)))(_basis(out))
            for k, x in enumerate(xs):
                results.append(ops.reshape(rows[k], out_shape + x.shape))

        def by_input(blocks):  # per-argnum pytrees of the given per-leaf blocks
            pieces, start = [], 0
            for treedef, n in specs:
                pieces.append(tree.unflatten(treedef, blocks[start:start + n]))
                start += n
            return pieces[0] if isinstance(argnums, int) else tuple(pieces)

        if single:
            return by_input(results)
        per_output, offset = [], 0
        for shape in o_shapes:
            size = math.prod(shape)
            per_output.append(by_input([ops.reshape(r[offset:offset + size, ...], shape + x.shape)
                                        for r, x in zip(results, xs)]))
            offset += size
        return tree.unflatten(o_def, per_output)

    return jac


def hessian(f: Callable, argnums: int = 0) -> Callable:
    """The Hessian of a scalar function (forward over reverse): shape x.shape + x.shape."""
    return jacobian(grad(f, argnums), argnums, mode="forward")


def hvp(f: Callable, x: Any, v: Any) -> Tensor:
    """The Hessian-vector product H(x) v of a scalar function, forward over reverse:
    one gradient evaluation carrying a tangent, without forming H."""
    return jvp(grad(f), (x,), (v,))[1]


def stop_gradient(x: Any) -> Any:
    """``x`` (a pytree) with no derivative flowing through it, in either mode."""
    return tree.tree_map(lambda a: detached(a) if isinstance(a, Tensor) else Tensor(a) if hasattr(a, "shape") else a, x)
