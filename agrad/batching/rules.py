"""Batching rules of the common kinds of primitive, and the helpers rules are written with.

A batching rule is ``rule(xp, dims, *args, **params) -> (out, out_dim)``: ``args`` are
the primitive's arguments with every batched one replaced by its *physical* value (a
Tensor holding all the examples, along axis ``dims[i]``) and the others as they were
(``dims[i]`` None); ``xp`` is agrad's differentiable namespace. The rule returns the
physical result, computed with agrad ops (usually the primitive itself on rearranged
arguments), and the axis along which its examples lie. Rules move a batch axis only
when they must, and leave unbatched arguments unbatched.

Nothing of agrad is imported here: the tape names these rules while agrad is still
being imported.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

Rule = Callable[..., tuple[Any, "int | None"]]


# --------------------------------------------------------------------------- helpers


def moveaxis(xp: Any, x: Any, source: int, destination: int) -> Any:
    """``x`` with axis ``source`` moved to ``destination`` (``x`` itself when they agree)."""
    if source == destination:
        return x
    return xp.moveaxis(x, source, destination)


def to_front(xp: Any, x: Any, d: int | None) -> Any:
    """``x``'s batch axis ``d`` moved to the front (an unbatched ``x`` as it is)."""
    return x if d is None or d == 0 else xp.moveaxis(x, d, 0)


def logical_rank(x: Any, d: int | None) -> int:
    """The rank of one example of ``x`` (Python numbers: 0)."""
    n = len(getattr(x, "shape", ()))
    return n - 1 if d is not None else n


def aligned(xp: Any, dims: Sequence[int | None], args: Sequence[Any]) -> tuple[list, int]:
    """The arguments of an elementwise (broadcasting) op with their batch axes lined up:
    each batched one moved to the front and given unit axes up to the largest logical
    rank, unbatched ones left as they are (broadcasting lines them up from the right).
    Nothing moves when the batched arguments already share their batch axis and rank
    and no unbatched one reaches that axis. Returns the arguments and the batch axis."""
    ranks = [logical_rank(a, d) for a, d in zip(args, dims)]
    r = max(ranks)
    batched = [i for i, d in enumerate(dims) if d is not None]
    d0 = dims[batched[0]]
    if all(dims[i] == d0 and ranks[i] == r for i in batched) and \
            all(ranks[i] <= r - d0 for i, d in enumerate(dims) if d is None):
        return list(args), d0
    out = list(args)
    for i in batched:
        a = to_front(xp, args[i], dims[i])
        if ranks[i] < r:
            s = tuple(a.shape)
            a = xp.reshape(a, (s[0],) + (1,) * (r - ranks[i]) + s[1:])
        out[i] = a
    return out, 0


def logical_axes(axis: Any, ndim: int) -> tuple[int, ...]:
    """``axis`` (an int, a tuple of ints, or None for all) as non-negative axes of an
    ``ndim``-dimensional example."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    for a in axes:
        if not -max(ndim, 1) <= a < max(ndim, 1):
            raise ValueError(f"agrad.vmap: axis {a} is out of range for an example of {ndim} dimension(s)")
    return tuple(a % ndim if ndim else 0 for a in axes)


def physical_axes(axis: Any, bdim: int, ndim: int) -> tuple[int, ...]:
    """Logical axes ``axis`` (None: all) of an ``ndim``-dimensional example as axes of
    the physical array, whose batch axis is ``bdim``."""
    return tuple(a if a < bdim else a + 1 for a in logical_axes(axis, ndim))


def physical_axis(axis: int, bdim: int, ndim: int) -> int:
    (a,) = physical_axes(axis, bdim, ndim)
    return a


def reduced_bdim(bdim: int, axes: Sequence[int], keepdims: bool) -> int:
    """Where the batch axis is once physical ``axes`` (not it) are reduced."""
    return bdim if keepdims else bdim - sum(1 for a in axes if a < bdim)


# --------------------------------------------------------------------------- rule kinds


def _kind(factory: Callable) -> Callable:
    """A kind of rule: ``primitive(..., batch=kind)`` makes the primitive's rule with
    ``kind(prim)`` (the primitive does not exist yet where its declaration names it)."""
    factory.needs_primitive = True  # type: ignore[attr-defined]
    return factory


@_kind
def elementwise(prim: Any) -> Rule:
    """An op that maps elements to elements with broadcasting (``elementwise=True``
    writes it): the op itself on the aligned arguments."""

    def rule(xp: Any, dims: tuple, *args: Any, **params: Any) -> tuple[Any, int]:
        args, d = aligned(xp, dims, args)
        return prim(*args, **params), d

    return rule


@_kind
def reduction(prim: Any, *, keepdims_param: bool = True) -> Rule:
    """An op of one array reducing the logical axes ``axis`` (a tuple, or None for all;
    an int is taken too) with ``keepdims``: the same axes of the physical array."""

    def rule(xp: Any, dims: tuple, x: Any, *, axis: Any, **params: Any) -> tuple[Any, int]:
        (d,) = dims
        axes = physical_axes(axis, d, x.ndim - 1)
        out = prim(x, axis=axes, **params)
        return out, reduced_bdim(d, axes, bool(params.get("keepdims", False)) if keepdims_param else False)

    return rule


@_kind
def along_axis(prim: Any) -> Rule:
    """An op of one array along one logical axis ``axis`` that keeps the shape
    (softmax, cumulative sums...): the same axis of the physical array."""

    def rule(xp: Any, dims: tuple, x: Any, *, axis: int, **params: Any) -> tuple[Any, int]:
        (d,) = dims
        return prim(x, axis=physical_axis(axis, d, x.ndim - 1), **params), d

    return rule


@_kind
def leading_batch(prim: Any) -> Rule:
    """An op that already maps over leading axes, broadcasting them (matrix functions of
    the linalg extension: inv, det, cholesky...): the batch axes moved to the front, and
    given unit axes so that every batched argument has the same rank."""

    def rule(xp: Any, dims: tuple, *args: Any, **params: Any) -> tuple[Any, int]:
        ranks = [logical_rank(a, d) for a, d in zip(args, dims)]
        r = max(ranks)
        out = list(args)
        for i, d in enumerate(dims):
            if d is None:
                continue
            a = to_front(xp, args[i], d)
            if ranks[i] < r:
                s = tuple(a.shape)
                a = xp.reshape(a, (s[0],) + (1,) * (r - ranks[i]) + s[1:])
            out[i] = a
        for i, d in enumerate(dims):  # an unbatched argument gets a unit batch axis to broadcast along
            if d is None and hasattr(args[i], "shape"):
                s = tuple(args[i].shape)
                out[i] = xp.reshape(args[i], (1,) + (1,) * (r - ranks[i]) + s)
        return prim(*out, **params), 0

    return rule


@_kind
def along_axes(prim: Any) -> Rule:
    """An op of one array along logical ``axis`` (an int or a tuple) that keeps the shape
    (softmax, cumulative sums...): the same axes of the physical array."""

    def rule(xp: Any, dims: tuple, x: Any, *, axis: Any, **params: Any) -> tuple[Any, int]:
        (d,) = dims
        axes = physical_axes(axis, d, x.ndim - 1)
        return prim(x, axis=axes[0] if isinstance(axis, int) else axes, **params), d

    return rule


@_kind
def matrix_op(prim: Any) -> Rule:
    """A function of the last two axes of one array, mapped over the leading ones (inv,
    det, cholesky, svd...): as it is when the batch axis is a leading one, else moved to
    the front."""

    def rule(xp: Any, dims: tuple, x: Any, **params: Any) -> tuple[Any, int]:
        (d,) = dims
        if d <= x.ndim - 3:  # (physical rank: the example's plus one)
            return prim(x, **params), d
        return prim(to_front(xp, x, d), **params), 0

    return rule


def by_forward(xp: Any, dims: tuple, *args: Any, **params: Any) -> tuple[Any, int]:
    """The batching of custom_vjp, custom_jvp and checkpoint functions: their forward runs
    on the batched arrays themselves (the user's function sees one example, as it was
    written), and the node recorded on them keeps the user's rules, so vmap of a
    derivative uses those rules. ``batched.run_rule`` recognises this marker; it is never
    called."""
    raise AssertionError("agrad.batching.rules.by_forward is a marker for run_rule")
