"""``agrad.vmap``: map a function over an axis of its arguments, with JAX's semantics.

The function runs once, on batched arrays (``agrad.batching.batched``) that hold
every example at once, so its ops run on whole batches (one matrix product for the
batch, not one per example), and every transform composes with it in any order:
``vmap(grad(f))`` (per-example gradients), ``grad(vmap(f))``, ``vmap(vmap(f))``,
``jvp(vmap(f))``, ``vmap(jvp(f))``, ``agrad.compile`` of either.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from .. import tree
from ..tensor import Tensor
from . import batched
from .batched import BatchedArray, VmapError

__all__ = ["vmap", "VmapError"]

_RANDOMNESS = ("error", "different", "same")


def vmap(fun: Callable, in_axes: Any = 0, out_axes: Any = 0, *, axis_size: int | None = None,
         chunk_size: int | None = None, randomness: str = "error") -> Callable:
    """Vectorise ``fun`` over an axis of its arguments: ``vmap(f)(xs)[i] == f(xs[i])``.

    - ``in_axes``: for each positional argument, the axis that holds the examples: an int
      (negative counts from the end), ``None`` (not mapped: every example sees the whole
      argument), or a pytree prefix of the arguments (a tuple with one entry per
      argument, nested tuples, lists and dicts for pytree arguments). Keyword arguments
      are mapped over their axis 0, as in JAX.
    - ``out_axes``: likewise for the outputs: where each output's examples go; ``None``
      for an output that does not depend on the mapped axis (an error when it does).
    - ``axis_size``: the number of examples, needed only when no argument is mapped.
    - ``chunk_size``: map at most this many examples at a time (and concatenate), to
      bound the memory of large batches.
    - ``randomness``: what random numbers drawn inside (agrad.random, Dropout) do:
      ``"error"`` (the default, as torch.func), ``"different"`` (each example draws its
      own) or ``"same"`` (one draw shared by all examples).

    Arguments may be Tensors or raw arrays of any backend; the function sees Tensors of
    one example's shape, and the outputs are Tensors. Errors name the argument: mapped
    sizes that disagree, an axis out of range, a value-dependent decision inside
    (``if x > 0``: use agrad.where), a data-dependent shape (nonzero), an in-place update
    of an unbatched Tensor with a batched value.
    """
    if randomness not in _RANDOMNESS:
        raise ValueError(f"agrad.vmap: randomness must be one of {_RANDOMNESS}, got {randomness!r}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"agrad.vmap: chunk_size must be a positive int or None, got {chunk_size!r}")
    _check_axes_spec(in_axes, "in_axes")
    _check_axes_spec(out_axes, "out_axes")

    @functools.wraps(fun)
    def mapped(*args: Any, **kwargs: Any) -> Any:
        if isinstance(in_axes, list) and not isinstance(in_axes, tuple):
            spec = tuple(in_axes)  # (JAX takes a list here as the tuple of the arguments' axes)
        else:
            spec = in_axes
        if isinstance(spec, tuple) and len(spec) != len(args):
            raise ValueError(f"agrad.vmap: in_axes has {len(spec)} entries but the function was called with "
                             f"{len(args)} positional argument(s); give one entry per argument (None: not mapped)")
        leaves, treedef = tree.flatten((tuple(args), kwargs))
        axes = _broadcast_prefix(spec, tuple(args), "in_axes", "args") + \
            _broadcast_prefix(0, kwargs, "in_axes", "kwargs")
        names = _leaf_names((tuple(args), kwargs))
        size = _mapped_size(leaves, axes, names, axis_size)
        axes = [None if ax is None else ax % _ndim(leaf) for leaf, ax in zip(leaves, axes)]
        if chunk_size is None or chunk_size >= size:
            return _run(fun, leaves, axes, treedef, size, out_axes, randomness)
        pieces = []
        for start in range(0, size, chunk_size):
            stop = min(start + chunk_size, size)
            chunk = [leaf if ax is None else _slice(leaf, ax, start, stop) for leaf, ax in zip(leaves, axes)]
            pieces.append(_run(fun, chunk, axes, treedef, stop - start, out_axes, randomness))
        return _concat_chunks(pieces, out_axes)

    return mapped


# --------------------------------------------------------------------------- in_axes


def _check_axes_spec(spec: Any, what: str) -> None:
    if spec is None or (isinstance(spec, int) and not isinstance(spec, bool)):
        return
    if isinstance(spec, (tuple, list)):
        for s in spec:
            _check_axes_spec(s, what)
        return
    if isinstance(spec, dict):
        for s in spec.values():
            _check_axes_spec(s, what)
        return
    raise TypeError(f"agrad.vmap: {what} must be an int, None, or a tuple/list/dict of them, got {spec!r}")


def _broadcast_prefix(prefix: Any, t: Any, what: str, where: str) -> list:
    """One axis per leaf of ``t`` (in tree.flatten's order) from the prefix tree ``prefix``."""
    if prefix is None or isinstance(prefix, int):
        return [prefix] * len(tree.flatten(t)[0])
    if isinstance(prefix, dict):
        if not isinstance(t, dict) or set(prefix) != set(t):
            raise ValueError(f"agrad.vmap: {what} gives a dict with keys {sorted(prefix)} for {where}, which is "
                             f"{_kind(t)}; the dict's keys must be the argument's")
        out = []
        for k in sorted(t):
            out += _broadcast_prefix(prefix[k], t[k], what, f"{where}[{k!r}]")
        return out
    if not isinstance(t, (tuple, list)) or len(t) != len(prefix):
        raise ValueError(f"agrad.vmap: {what} gives {len(prefix)} entries for {where}, which is {_kind(t)}; a "
                         f"tuple or list in {what} must match the structure of the argument it describes")
    out = []
    for i, (p, c) in enumerate(zip(prefix, t)):
        out += _broadcast_prefix(p, c, what, f"{where}[{i}]")
    return out


def _kind(t: Any) -> str:
    if isinstance(t, dict):
        return f"a dict with keys {sorted(t)}"
    if isinstance(t, (tuple, list)):
        return f"a {type(t).__name__} of {len(t)}"
    return f"a leaf ({type(t).__name__})"


def _leaf_names(t: Any) -> list[str]:
    """A readable name of each leaf: 'argument 0', "argument 1['w']", "keyword 'x'"."""
    args, kwargs = t
    names: list[str] = []

    def walk(x: Any, name: str) -> None:
        if isinstance(x, dict):
            for k in sorted(x):
                walk(x[k], f"{name}[{k!r}]")
        elif isinstance(x, (tuple, list)):
            for i, c in enumerate(x):
                walk(c, f"{name}[{i}]")
        else:
            names.append(name)

    for i, a in enumerate(args):
        walk(a, f"argument {i}")
    for k in sorted(kwargs):
        walk(kwargs[k], f"keyword {k!r}")
    return names


def _ndim(x: Any) -> int:
    return len(x.shape)


def _mapped_size(leaves: list, axes: list, names: list, axis_size: int | None) -> int:
    sizes = {}
    for leaf, ax, name in zip(leaves, axes, names):
        if ax is None:
            continue
        if not hasattr(leaf, "shape"):
            raise ValueError(f"agrad.vmap: {name} is mapped (in_axes {ax}) but is a {type(leaf).__name__}, not an "
                             f"array; give it in_axes None, or pass an array")
        n = _ndim(leaf)
        if not -n <= ax < n:
            raise ValueError(f"agrad.vmap: in_axes {ax} is out of range for {name}, which has shape "
                             f"{tuple(leaf.shape)} ({n} dimension(s))")
        sizes[name] = leaf.shape[ax % n]
    if not sizes:
        if axis_size is None:
            raise ValueError("agrad.vmap: no argument is mapped (every in_axes is None); give axis_size= to say how "
                             "many examples to map over")
        return axis_size
    distinct = set(sizes.values())
    if len(distinct) > 1:
        listed = ", ".join(f"{name} has size {s}" for name, s in sizes.items())
        raise ValueError(f"agrad.vmap: the mapped axes have different sizes: {listed}; they must agree")
    size = distinct.pop()
    if axis_size is not None and axis_size != size:
        raise ValueError(f"agrad.vmap: axis_size is {axis_size} but the mapped arguments have size {size}")
    return size


def _slice(x: Any, axis: int, start: int, stop: int) -> Any:
    key = (slice(None),) * axis + (slice(start, stop),)
    return x[key]


# --------------------------------------------------------------------------- one run


def _run(fun: Callable, leaves: list, axes: list, treedef: Any, size: int, out_axes: Any,
         randomness: str) -> Any:
    level = batched.new_level(size, randomness)
    try:
        inputs = [leaf if ax is None else Tensor._constant(batched.wrap(leaf, ax, level))
                  for leaf, ax in zip(leaves, axes)]
        args, kwargs = tree.unflatten(treedef, inputs)
        out = fun(*args, **kwargs)
        o_leaves, o_def = tree.flatten(out)
        o_axes = _broadcast_prefix(out_axes, out, "out_axes", "the output")
        return tree.unflatten(o_def, [_unbatch(o, ax, level, size, k) for k, (o, ax) in
                                      enumerate(zip(o_leaves, o_axes))])
    finally:
        batched.retire(level)


def _unbatch(o: Any, out_axis: int | None, level: int, size: int, k: int) -> Any:
    """Output leaf ``o`` of one run as a Tensor with its examples along ``out_axis``."""
    from .. import ops  # (late: agrad.ops imports the tape, which imports this package)

    data = o._data if isinstance(o, Tensor) else o
    if data.__class__ is BatchedArray and data.level == level:
        if out_axis is None:
            raise ValueError(f"agrad.vmap: out_axes is None for output {k}, but it depends on the mapped axis "
                             f"(its examples differ); give it an axis")
        n = data.ndim + 1
        if not -n <= out_axis < n:
            raise ValueError(f"agrad.vmap: out_axes {out_axis} is out of range for output {k}, of shape "
                             f"{data.shape} per example")
        return ops.moveaxis(data.value, data.bdim, out_axis % n) if data.bdim != out_axis % n else data.value
    if o is None:
        return None
    if out_axis is None:
        return o if isinstance(o, Tensor) else (Tensor(o) if hasattr(o, "shape") else o)
    # the same for every example: repeated along out_axis, as JAX does
    t = o if isinstance(o, Tensor) else ops.asarray(o)
    n = t.ndim + 1
    if not -n <= out_axis < n:
        raise ValueError(f"agrad.vmap: out_axes {out_axis} is out of range for output {k}, of shape {t.shape}")
    a = out_axis % n
    t = ops.expand_dims(t, axis=a)
    shape = list(t.shape)
    shape[a] = size
    return ops.broadcast_to(t, tuple(shape))


def _concat_chunks(pieces: list, out_axes: Any) -> Any:
    from .. import ops  # (late: see _unbatch)

    o_leaves0, o_def = tree.flatten(pieces[0])
    axes = _broadcast_prefix(out_axes, pieces[0], "out_axes", "the output")
    per_piece = [tree.flatten(p)[0] for p in pieces]
    out = []
    for k, ax in enumerate(axes):
        parts = [leaves[k] for leaves in per_piece]
        if ax is None or parts[0] is None:
            out.append(parts[0])
        else:
            out.append(ops.concat(parts, axis=ax % parts[0].ndim))
    return tree.unflatten(o_def, out)


def draw_shape(shape: tuple) -> tuple[tuple, list[int]]:
    """Random numbers of ``shape`` asked for inside running vmaps: the shape to draw (the
    examples' axes of the vmaps with randomness="different" in front, outermost first)
    and those vmaps' levels; an error under randomness="error" (agrad.random calls this)."""
    levels = batched.running_levels()
    if not levels:
        return shape, []
    different = []
    for level, (_size, mode) in levels.items():
        if mode == "error":
            raise VmapError(
                "agrad.vmap: random numbers drawn inside a mapped function (agrad.random, Dropout in training mode); "
                "pass randomness='different' (each example draws its own) or randomness='same' (one draw for all) "
                "to vmap, or draw them outside and pass them in")
        if mode == "different":
            different.append(level)
    sizes = tuple(levels[lv][0] for lv in different)
    return sizes + tuple(shape), different


def batch_draw(t: Tensor, levels: list[int]) -> Tensor:
    """A draw made with :func:`draw_shape`'s shape as one example's Tensor."""
    for level in levels:  # outermost first: each wraps the one before
        t = Tensor._constant(batched.BatchedArray(t, 0, level))
    return t


