"""Shape operations: reshape, permute_dims, expand_dims, squeeze, broadcast_to,
concat, stack, indexing and take. Their VJPs move the gradient back into place;
indexing's VJP is a scatter-add that sums repeated indices.
"""

from __future__ import annotations

from typing import Any, Sequence

from .. import backend, dtypes
from ..batching import batched, rules
from ..tape import primitive, read_only_view
from ..tensor import ArrayLike, Tensor
from .conversions import astype
from .data_types import broadcast_shapes
from .elementwise import positive
from .reductions import normalize_axis

# Every op here is linear in its array arguments, so the output's tangent is the op applied
# to the input tangents (and the VJPs read no values). Ops whose result may be a view of
# their input (NumPy, CuPy and array-api-strict return views for these where the layout
# allows) give their input with the viewed part replaced (``view``), so that an in-place
# update of the view reaches its base (agrad.inplace).

def _reshape_batch(xp, dims, x, shape):
    (d,) = dims
    x = rules.to_front(xp, x, d)
    return reshape_p(x, shape=(x.shape[0],) + tuple(shape)), 0


def _permute_dims_batch(xp, dims, x, axes):
    (d,) = dims
    return permute_dims_p(x, axes=(d,) + tuple(a if a < d else a + 1 for a in axes)), 0


def _expand_dims_batch(xp, dims, x, axis):
    (d,) = dims
    r = x.ndim - 1
    a = axis % (r + 1)  # where the new axis is among the result's r + 1 logical axes
    if a <= d:
        return expand_dims_p(x, axis=a), d + 1
    return expand_dims_p(x, axis=a + 1), d


def _squeeze_batch(xp, dims, x, axis):
    (d,) = dims
    axes = rules.physical_axes(axis, d, x.ndim - 1)
    return squeeze_p(x, axis=axes), rules.reduced_bdim(d, axes, False)


def _broadcast_to_batch(xp, dims, x, shape):
    (d,) = dims
    x = rules.to_front(xp, x, d)
    s = tuple(x.shape)
    if len(s) - 1 < len(shape):
        x = reshape_p(x, shape=(s[0],) + (1,) * (len(shape) - len(s) + 1) + s[1:])
    return broadcast_to_p(x, shape=(s[0],) + tuple(shape)), 0


reshape_p = primitive(
    "reshape", lambda xp, x, shape: xp.reshape(x, shape),
    vjp=[lambda xp, g, ans, x, shape: xp.reshape(g, tuple(x.shape))], linear=True,
    view=lambda base, new, shape: reshape(new, tuple(base.shape)),
    batch=_reshape_batch
)


def reshape(x: ArrayLike, /, shape: int | tuple[int, ...], *, copy: bool | None = None) -> Tensor:
    """Give ``x`` a new shape with the same number of elements (one entry may be -1).
    As in NumPy the result is a view of ``x`` where the layout allows (an in-place update
    of one is seen by the other, see :mod:`agrad.inplace`), else a copy; ``copy`` is
    accepted for the array API."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    size = 1
    for s in x.shape:
        size *= s
    known = 1
    for s in shape:
        if s != -1:
            known *= s
    if (-1 in shape and (known == 0 or size % known)) or (-1 not in shape and known != size):
        raise ValueError(f"agrad.reshape: cannot reshape an array of shape {tuple(x.shape)} ({size} elements) "
                         f"into shape {shape}")
    return reshape_p(x, shape=shape)


def _inverse_permutation(axes: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(sorted(range(len(axes)), key=axes.__getitem__))


permute_dims_p = primitive(
    "permute_dims", lambda xp, x, axes: xp.permute_dims(x, axes),
    vjp=[lambda xp, g, ans, x, axes: xp.permute_dims(g, _inverse_permutation(axes))], linear=True,
    view=lambda base, new, axes: permute_dims(new, _inverse_permutation(axes)),
    batch=_permute_dims_batch
)


def permute_dims(x: ArrayLike, /, axes: tuple[int, ...]) -> Tensor:
    """Reorder the axes of ``x`` (``axes`` is a permutation of range(x.ndim))."""
    axes = tuple(a % x.ndim for a in axes)
    if sorted(axes) != list(range(x.ndim)):
        raise ValueError(f"agrad.permute_dims: {axes} is not a permutation of the {x.ndim} axes of shape "
                         f"{tuple(x.shape)}")
    return permute_dims_p(x, axes=axes)


expand_dims_p = primitive(
    "expand_dims", lambda xp, x, axis: xp.expand_dims(x, axis=axis),
    vjp=[lambda xp, g, ans, x, axis: xp.reshape(g, tuple(x.shape))], linear=True,
    view=lambda base, new, axis: reshape(new, tuple(base.shape)),
    batch=_expand_dims_batch
)


def expand_dims(x: ArrayLike, /, axis: int = 0) -> Tensor:
    """Insert an axis of length 1 at ``axis``."""
    if not -x.ndim - 1 <= axis <= x.ndim:  # (an IndexError, as the standard says)
        raise IndexError(f"agrad.expand_dims: axis {axis} is out of range for shape {tuple(x.shape)}")
    return expand_dims_p(x, axis=axis)


squeeze_p = primitive(
    "squeeze", lambda xp, x, axis: xp.squeeze(x, axis=axis),
    vjp=[lambda xp, g, ans, x, axis: xp.reshape(g, tuple(x.shape))], linear=True,
    view=lambda base, new, axis: reshape(new, tuple(base.shape)),
    batch=_squeeze_batch
)


def squeeze(x: ArrayLike, /, axis: int | tuple[int, ...]) -> Tensor:
    """Remove axes of length 1."""
    axes = normalize_axis(axis, x.ndim, "squeeze")
    for a in axes:
        if x.shape[a] != 1:
            raise ValueError(f"agrad.squeeze: axis {a} of shape {tuple(x.shape)} has length {x.shape[a]}, not 1")
    return squeeze_p(x, axis=axes)


broadcast_to_p = primitive(
    "broadcast_to", lambda xp, x, shape: xp.broadcast_to(x, shape),
    vjp=[lambda xp, g, ans, x, shape: g], linear=True,  # the engine sums g back to x's shape
    view=read_only_view,
    batch=_broadcast_to_batch
)


def broadcast_to(x: ArrayLike, /, shape: tuple[int, ...]) -> Tensor:
    """Broadcast ``x`` to ``shape`` (a read-only view: it cannot be updated in place)."""
    shape = tuple(shape)
    xs = tuple(x.shape)
    ok = len(shape) >= len(xs) and all(a in (1, b) for a, b in zip(xs[::-1], shape[::-1]))
    if not ok:
        raise ValueError(f"agrad.broadcast_to: cannot broadcast shape {xs} to {shape}")
    return broadcast_to_p(x, shape=shape)


def _concat_vjp(xp, g, ans, wanted, *arrays, axis):
    # Any number of arguments: each wanted one gets its slice of g.
    grads, start = [], 0
    for a, w in zip(arrays, wanted):
        stop = start + a.shape[axis]
        grads.append(g[(slice(None),) * axis + (slice(start, stop),) + (Ellipsis,)] if w else None)
        start = stop
    return grads


def _batch_size(dims: Sequence[int | None], args: Sequence[Any]) -> int:
    """The number of examples: the length of a batched argument's batch axis."""
    for a, d in zip(args, dims):
        if d is not None:
            return a.shape[d]
    raise AssertionError("a batching rule ran with no batched argument")


def _with_batch(a: Any, d: int | None, size: int) -> Any:
    """``a`` with its examples along axis 0: a batched ``a``'s batch axis moved there, an
    unbatched one repeated ``size`` times (a broadcast view, no copy)."""
    if d is not None:
        return moveaxis(a, d, 0) if d else a
    return broadcast_to(expand_dims(a, axis=0), (size,) + tuple(a.shape))


def _same_dims(dims: Sequence[int | None]) -> int | None:
    """The batch axis every argument shares (None when one is unbatched or they differ)."""
    d = dims[0]
    return d if d is not None and all(e == d for e in dims) else None


def _concat_batch(xp, dims, *arrays, axis):
    d = _same_dims(dims)
    if d is not None:  # every example's arrays joined along the same physical axis, nothing moves
        return concat_p(*arrays, axis=rules.physical_axis(axis, d, arrays[0].ndim - 1)), d
    size = _batch_size(dims, arrays)
    return concat_p(*(_with_batch(a, e, size) for a, e in zip(arrays, dims)), axis=axis + 1), 0


concat_p = primitive("concat", lambda xp, *arrays, axis: xp.concat(arrays, axis=axis), vjp=_concat_vjp, linear=True,
                     batch=_concat_batch)


def concat(arrays: Sequence[ArrayLike], /, *, axis: int | None = 0) -> Tensor:
    """Join a sequence of arrays along an existing axis (None: flatten them first)."""
    arrays = tuple(arrays)
    if not arrays:
        raise ValueError("agrad.concat: needs at least one array")
    if axis is None:
        arrays = tuple(reshape(a, (-1,)) for a in arrays)
        axis = 0
    nd = arrays[0].ndim
    axis = normalize_axis(axis, nd, "concat")[0]
    for a in arrays:
        s0, s = tuple(arrays[0].shape), tuple(a.shape)
        if a.ndim != nd or s0[:axis] + s0[axis + 1:] != s[:axis] + s[axis + 1:]:
            raise ValueError(f"agrad.concat: shapes {s0} and {s} differ outside axis {axis}")
    return concat_p(*arrays, axis=axis)


def _stack_vjp(xp, g, ans, wanted, *arrays, axis):
    return [g[(slice(None),) * axis + (i,) + (Ellipsis,)] if w else None for i, w in enumerate(wanted)]


def _stack_batch(xp, dims, *arrays, axis):
    d = _same_dims(dims)
    if d is not None:  # the new axis goes before the batch axis (which moves up one) or after it
        return (stack_p(*arrays, axis=axis), d + 1) if axis <= d else (stack_p(*arrays, axis=axis + 1), d)
    size = _batch_size(dims, arrays)
    return stack_p(*(_with_batch(a, e, size) for a, e in zip(arrays, dims)), axis=axis + 1), 0


stack_p = primitive("stack", lambda xp, *arrays, axis: xp.stack(arrays, axis=axis), vjp=_stack_vjp, linear=True,
                    batch=_stack_batch)


def stack(arrays: Sequence[ArrayLike], /, *, axis: int = 0) -> Tensor:
    """Join a sequence of same-shaped arrays along a new axis."""
    arrays = tuple(arrays)
    if not arrays:
        raise ValueError("agrad.stack: needs at least one array")
    for a in arrays:
        if tuple(a.shape) != tuple(arrays[0].shape):
            raise ValueError(f"agrad.stack: all shapes must match, got {tuple(arrays[0].shape)} and {tuple(a.shape)}")
    axis = normalize_axis(axis, arrays[0].ndim + 1, "stack")[0]
    return stack_p(*arrays, axis=axis)


# --------------------------------------------------------------------------- indexing

def _getitem_batch(xp, dims, x, key):
    (d,) = dims
    r = x.ndim - 1
    if not any(backend.is_index_array(k) for k in key):
        return getitem_p(x, key=batched.physical_key(key, d, r)), batched.batch_position(key, d, r)
    entries = tuple(_Index(k, None) if backend.is_index_array(k) else k for k in key)
    phys, out_dim, _ = _batched_key(tuple(x.shape[:d]) + tuple(x.shape[d + 1:]), d, x.shape[d], entries, x)
    return _index(x, phys), out_dim


getitem_p = primitive(
    "getitem", lambda xp, x, key: xp.getitem(x, key),
    vjp=[lambda xp, g, ans, x, key: xp.scatter_add(g, tuple(x.shape), key)], linear=True,
    view=lambda base, new, key: assign(base, key, new),
    batch=_getitem_batch,
)


def _scatter_add_batch(xp, dims, g, shape, key):
    (d,) = dims
    size = g.shape[d]
    r = len(shape)
    if not any(backend.is_index_array(k) for k in key):
        # every example's zeros(shape) at once, the batch axis in front: g's examples go where
        # physical_key puts the batch axis of zeros[key]
        entries = batched._expand_key(key, r)
        region_rank = sum(1 for k in entries if k is None or isinstance(k, slice))
        g = _lay_out(g, d, batched.batch_position(key, 0, r), region_rank)
        return scatter_add(g, (size,) + tuple(shape), batched.physical_key(key, 0, r)), 0
    entries = tuple(_Index(k, None) if backend.is_index_array(k) else k for k in key)
    return _scatter_batched(g, d, size, tuple(shape), entries)


scatter_add_p = primitive(
    "scatter_add", lambda xp, g, shape, key: xp.scatter_add(g, shape, key),
    vjp=[lambda xp, gg, ans, g, shape, key: xp.getitem(gg, key)], linear=True,
    batch=_scatter_add_batch,
)


# Keys that hold batched index arrays (``logits[label]`` inside vmap, with a per-example
# label) cannot be a primitive's parameter: the tape looks for batched values among the
# positional arguments only. Such a key goes to ``gather`` and ``scatter``, which take its
# index arrays as arguments (``_SLOT`` marks their places in the key); their batching
# rules index the physical arrays, and the plain getitem/scatter_add do the work.


class _Slot:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<index argument>"


_SLOT = _Slot()


def _fill(key: tuple, arrays: Sequence[Any]) -> tuple:
    """``key`` with its slots filled by ``arrays``, in order."""
    it = iter(arrays)
    return tuple(next(it) if k is _SLOT else k for k in key)


def _split_key(key: tuple) -> tuple[tuple, list]:
    """``key`` with its index arrays replaced by slots, and those arrays."""
    arrays = [k for k in key if backend.is_index_array(k)]
    return tuple(_SLOT if backend.is_index_array(k) else k for k in key), arrays


def _holds_batched(key: tuple) -> bool:
    return any(k.__class__ is batched.BatchedArray for k in key)


def _index(x: Any, key: tuple) -> Tensor:
    """``x[key]`` for a normalised key: a batched index array makes it a ``gather``."""
    if _holds_batched(key):
        template, arrays = _split_key(key)
        return gather_p(x, *arrays, key=template)
    return getitem_p(x, key=key)


def _gather_vjp(xp, g, ans, wanted, x, *arrays, key):
    gx = xp.scatter_add(g, tuple(x.shape), _fill(key, arrays)) if wanted[0] else None
    return [gx] + [None] * len(arrays)  # (integer indices have no derivative)


def _gather_jvp(xp, tangents, ans, x, *arrays, key):
    t = tangents[0]
    return xp.getitem(t, _fill(key, arrays)) if t is not None else xp.zeros_like(ans)


def _gather_batch(xp, dims, x, *arrays, key):
    d = dims[0]
    size = _batch_size(dims, (x,) + arrays)
    it = iter(zip(arrays, dims[1:]))
    entries = tuple(_Index(*next(it)) if k is _SLOT else k for k in key)
    shape = tuple(x.shape) if d is None else tuple(x.shape[:d]) + tuple(x.shape[d + 1:])
    phys, out_dim, _ = _batched_key(shape, d, size, entries, x)
    return _index(x, phys), out_dim


gather_p = primitive(
    "gather", lambda xp, x, *arrays, key: xp.getitem(x, _fill(key, arrays)),
    vjp=_gather_vjp, jvp=_gather_jvp, batch=_gather_batch, register=False,
)


def _scatter_vjp(xp, gg, ans, wanted, g, *arrays, shape, key):
    return [xp.getitem(gg, _fill(key, arrays)) if wanted[0] else None] + [None] * len(arrays)


def _scatter_jvp(xp, tangents, ans, g, *arrays, shape, key):
    t = tangents[0]
    return xp.scatter_add(t, shape, _fill(key, arrays)) if t is not None else xp.zeros_like(ans)


def _scatter_batch(xp, dims, g, *arrays, shape, key):
    size = _batch_size(dims, (g,) + arrays)
    it = iter(zip(arrays, dims[1:]))
    entries = tuple(_Index(*next(it)) if k is _SLOT else k for k in key)
    return _scatter_batched(g, dims[0], size, shape, entries)


scatter_p = primitive(
    "scatter", lambda xp, g, *arrays, shape, key: xp.scatter_add(g, shape, _fill(key, arrays)),
    vjp=_scatter_vjp, jvp=_scatter_jvp, batch=_scatter_batch, register=False,
)


def _scatter_batched(g: Any, d: int | None, size: int, shape: tuple, entries: tuple) -> tuple[Tensor, int]:
    """Every example's ``scatter_add(g, shape, key)`` at once: zeros of (size,) + shape
    with each example's ``g`` added at its key (batch axis 0)."""
    phys, out_dim, region = _batched_key(shape, 0, size, entries, g)
    region = region[:out_dim] + (size,) + region[out_dim:]
    g = _lay_out(g, d, out_dim, len(region) - 1)
    if tuple(g.shape) != region:  # (an unbatched g, or one that broadcasts: the examples' cells in full)
        g = broadcast_to(g, region)
    return scatter_add(g, (size,) + shape, phys), 0


def _lay_out(v: Any, d: int | None, pos: int, rank: int) -> Any:
    """``v`` (batch axis ``d``, None: unbatched) for a region of logical rank ``rank`` whose
    batch axis is ``pos``: unit axes where it broadcasts, its batch axis at ``pos`` (a unit
    axis there when unbatched)."""
    if not hasattr(v, "shape"):
        return v
    if d is None:
        s = tuple(v.shape)
        v = reshape(v, (1,) * (rank - len(s)) + s) if len(s) < rank else v
        return expand_dims(v, axis=pos)
    v = moveaxis(v, d, 0) if d else v
    s = tuple(v.shape)
    if len(s) - 1 < rank:
        v = reshape(v, (s[0],) + (1,) * (rank - len(s) + 1) + s[1:])
    return moveaxis(v, 0, pos) if pos else v


class _Index:
    """An index array of a key being batched: ``value`` holds every example's index along
    axis ``dim`` (None: the same index for every example)."""

    __slots__ = ("value", "dim")

    def __init__(self, value: Any, dim: int | None) -> None:
        self.value = value
        self.dim = dim

    @property
    def shape(self) -> tuple:
        s = tuple(self.value.shape)
        return s if self.dim is None else s[:self.dim] + s[self.dim + 1:]


def _batched_key(shape: tuple, d: int | None, size: int, entries: tuple, like: Any) -> tuple[tuple, int, tuple]:
    """A key of the physical array that computes every example's ``x[key]`` at once.

    ``shape``: one example's shape; ``d``: the physical array's batch axis (None: every
    example indexes the same array); ``entries``: the key (normalised), its index arrays
    as :class:`_Index`. Returns the physical key, the batch axis of the result and one
    example's result shape. The common cases keep the backend's own indexing (one index
    array among full slices: a ``take``, which array-api-strict has too); the others index
    every axis with broadcast integer arrays (the batch axis with an arange), which every
    backend takes, laid out where NumPy puts each axis of ``x[key]``."""
    expanded = _spell_out(entries, len(shape))
    arrays = [k for k in expanded if isinstance(k, _Index)]
    if len(arrays) == 1 and all(isinstance(k, _Index) or k == slice(None) for k in expanded):
        (idx,) = arrays
        p = next(i for i, k in enumerate(expanded) if isinstance(k, _Index))
        out_shape = shape[:p] + idx.shape + shape[p + 1:]
        if d is not None and idx.dim is None:  # the batch axis as a full slice
            key = [_raw(k.value) if isinstance(k, _Index) else k for k in expanded]
            key.insert(d, slice(None))
            return tuple(key), (d if d <= p else d - 1 + len(idx.shape)), out_shape
        if d is None:  # the same array for every example: index it with the batched index itself
            return tuple(_raw(k.value) if isinstance(k, _Index) else k for k in expanded), p + idx.dim, out_shape
    return _full_key(shape, d, size, entries, expanded, like)


def _spell_out(entries: tuple, ndim: int) -> list:
    """The entries with ``...`` spelled out as full slices and full slices for the axes a
    key leaves out (None kept: it adds an axis)."""
    used = sum(1 for k in entries if k is not None and k is not Ellipsis)
    out: list = []
    for k in entries:
        if k is Ellipsis:
            out.extend([slice(None)] * (ndim - used))
            used = ndim
        else:
            out.append(k)
    out.extend([slice(None)] * (ndim - used))
    if sum(1 for k in out if k is not None) != ndim:
        raise IndexError(f"agrad.getitem: too many indices for an example of {ndim} dimension(s)")
    return out


def _full_key(shape: tuple, d: int | None, size: int, entries: tuple, expanded: list,
              like: Any) -> tuple[tuple, int, tuple]:
    """The physical key that indexes every axis with an integer array (see _batched_key)."""
    from . import creation  # (late: creation imports this module)

    # NumPy's rule: the index arrays' broadcast axes (integers count as 0-d arrays) go where
    # the first one is when they are consecutive in the key as written, else in front.
    adv = [i for i, k in enumerate(entries) if isinstance(k, (_Index, int))]
    consecutive = adv[-1] - adv[0] + 1 == len(adv)
    ib = broadcast_shapes(*(k.shape for k in entries if isinstance(k, _Index)))
    n_ib = len(ib)
    pos = 0 if consecutive else n_ib
    block = None if consecutive else 0
    placed = []  # per axis of x: (entry, its position in the result) for slices, (entry, None) otherwise
    for k in expanded:
        if k is None:
            pos += 1
            continue
        if isinstance(k, slice):
            placed.append((k, pos))
            pos += 1
            continue
        if block is None:
            block = pos
            pos += n_ib
        placed.append((k, None))
    rank = pos  # of one example's result
    out_shape = [1] * rank
    device = like.device
    key = []
    for axis, (k, q) in enumerate(placed):
        if isinstance(k, slice):
            r = range(*k.indices(shape[axis]))
            out_shape[q] = len(r)
            a = creation.arange(r.start, r.stop, r.step, device=device)
            key.append(_raw(reshape(a, (1,) * (1 + q) + (len(r),) + (1,) * (rank - q - 1))))
        elif isinstance(k, int):
            key.append(k)
        else:
            s = k.shape
            lead = (1,) * block + (1,) * (n_ib - len(s))
            tail = (1,) * (rank - block - n_ib)
            if k.dim is None:
                key.append(_raw(reshape(k.value, (1,) + lead + s + tail)))
            else:
                v = moveaxis(k.value, k.dim, 0) if k.dim else k.value
                key.append(_raw(reshape(v, (size,) + lead + s + tail)))
    if block is not None:
        out_shape[block:block + n_ib] = ib
    if d is not None:  # each example indexes its own array: an arange along the batch axis
        b = creation.arange(size, device=device)
        key.insert(d, _raw(reshape(b, (size,) + (1,) * rank)))
    return tuple(key), 0, tuple(out_shape)


def _raw(t: Any) -> Any:
    return t._data if isinstance(t, Tensor) else t


def _index_update_batch(xp, dims, x, value, key):
    dx, dv = dims
    size = _batch_size(dims, (x, value))
    if dx is None:  # one array for every example, updated with each example's value: a copy for each
        x, dx = _with_batch(x, None, size), 0
    r = x.ndim - 1
    if not any(backend.is_index_array(k) for k in key):  # basic indices (assign removes None)
        region_rank = sum(1 for k in batched._expand_key(key, r) if isinstance(k, slice))
        value = _lay_out(value, dv, batched.batch_position(key, dx, r), region_rank)
        region = tuple(_raw(getitem_p(_raw(x), key=batched.physical_key(key, dx, r))).shape)
        if hasattr(value, "shape") and tuple(value.shape) != region:
            value = broadcast_to(value, region)
        return index_update_p(x, value, key=batched.physical_key(key, dx, r)), dx
    # The form assign hands down: ascending distinct positions into a 1-D x. Every example's
    # positions, offset by its place in the flattened batch, are still ascending and distinct.
    if len(key) != 1 or r != 1:
        raise ValueError(f"agrad.index_update: index arrays must be one array of positions into a 1-D array, got "
                         f"{len(key)} entries for {r} dimension(s); use agrad.assign for other keys")
    from . import creation  # (late: creation imports this module)

    (positions,) = key
    flat = reshape(moveaxis(x, dx, 0) if dx else x, (-1,))
    n = x.shape[1 - dx]
    offsets = reshape(creation.arange(size, device=x.device) * n, (size, 1))
    at = _raw(reshape(offsets + reshape(positions, (1, -1)), (-1,)))
    if dv is None:
        value = broadcast_to(value, (size, positions.shape[0])) if hasattr(value, "shape") else value
    else:
        value = moveaxis(value, dv, 0) if dv else value
    value = reshape(value, (-1,)) if hasattr(value, "shape") else value
    return reshape(index_update(flat, value, (at,)), (size, n)), 0


index_update_p = primitive(
    "index_update", lambda xp, x, value, key: xp.index_update(x, value, key),
    vjp=[lambda xp, g, ans, x, value, key: xp.index_update(g, 0.0, key),
         lambda xp, g, ans, x, value, key: xp.getitem(g, key)], linear=True,
    batch=_index_update_batch,
)


def index_update(x: ArrayLike, value: ArrayLike, key: tuple) -> Tensor:
    """A copy of ``x`` with ``x[key] = value``, for a key that writes every element at most
    once and a ``value`` of exactly the shape ``x[key]`` has: the primitive behind
    :func:`assign` (which accepts every key and broadcasts)."""
    if _holds_batched(key):  # (inside vmap: positions that differ by example, see _assign_batched)
        return assign(x, key, value)
    return index_update_p(x, value, key=key)


def _assign_where(x: Tensor, mask: Any, value: Any, xp: Any) -> Tensor:
    """``x[mask] = value`` with a batched mask of x's shape (agrad.vmap: each example its
    own mask): ``where(mask, value, x)``, for one value written at every selected place
    (a value per selected element would have a size that differs between examples)."""
    from . import elementwise  # (late: it imports this module)

    value = _as_value(value, x, xp)
    size = 1
    for n in value.shape:
        size *= n
    if size != 1:
        raise batched.VmapError(
            f"agrad.vmap: x[mask] = value with a batched mask takes one value for every selected element (a value "
            f"of one element), got shape {tuple(value.shape)}: the number of selected elements differs between "
            f"examples. Write agrad.where(mask, values, x) with values of x's shape")
    if value.dtype != x.dtype:
        value = astype(value, x.dtype)
    m = mask if isinstance(mask, Tensor) else Tensor._constant(mask)
    return elementwise.where(m, reshape(value, ()), x)


def assign(x: ArrayLike, key: Any, value: ArrayLike) -> Tensor:
    """``x`` with ``x[key] = value``, as a new Tensor, differentiable in ``x`` and ``value``.

    Every key ``x[key]`` takes (ints, slices with any step, ``...``, ``None``, integer
    arrays, boolean masks); ``value`` is cast to ``x``'s dtype and broadcast to the
    shape of ``x[key]``. Where integer indices repeat, the last write wins on every
    backend (the standard leaves it unspecified), and the derivative follows the value
    that was kept: the others get none.
    """
    if not isinstance(x, Tensor):
        x = Tensor(x)
    raw = x._data
    xp = backend.namespace_of((raw,), "setitem")
    raw_key = key._data if isinstance(key, Tensor) else key
    if hasattr(raw_key, "dtype") and len(raw_key.shape) == 0 and dtypes.as_dtype(raw_key.dtype) == dtypes.ALL[
            "bool"] and raw_key.__class__ is not batched.BatchedArray:  # (a batched one: _normalize_key's error)
        # A 0-d boolean mask selects x itself behind a new axis of length 1 (True) or nothing.
        if not bool(raw_key):
            return _copy(x)
        value = reshape(broadcast_to(_as_value(value, x, xp), (1,) + tuple(x.shape)), tuple(x.shape))
        key = Ellipsis
    if raw_key.__class__ is batched.BatchedArray and dtypes.as_dtype(raw_key.dtype) == dtypes.ALL["bool"] and \
            tuple(raw_key.shape) == tuple(x.shape):
        return _assign_where(x, key, value, xp)
    key = _normalize_key(x, key, x.ndim)
    value = _as_value(value, x, xp)
    if value.dtype != x.dtype:
        value = astype(value, x.dtype)
    if _holds_batched(key):
        return _assign_batched(x, key, value)
    region = tuple(xp.getitem(raw, key).shape)
    try:
        value = broadcast_to(value, region)
    except ValueError:
        raise ValueError(f"agrad.setitem: cannot assign a value of shape {value.shape} to x[key] of shape {region} "
                         f"(x has shape {x.shape}): it must broadcast to it") from None
    if all(k is Ellipsis or (isinstance(k, slice) and k.indices(n) == (0, n, 1))
           for k, n in zip(_expand_ellipsis(key, x.ndim), x.shape)):
        # Every element written: the result does not depend on x (nor does its derivative).
        return _copy(broadcast_to(value, tuple(x.shape))) if region == tuple(x.shape) else \
            _copy(reshape(value, tuple(x.shape)))
    if not any(backend.is_index_array(k) for k in key):
        # Basic indexing writes each element once. The standard allows no None in
        # __setitem__: the value loses those axes (all of length 1) instead.
        if any(k is None for k in key):
            key = tuple(k for k in key if k is not None)
            value = reshape(value, tuple(xp.getitem(raw, key).shape))
        return index_update(x, value, key)
    # Integer arrays: the flat positions written, each kept once, at its last write.
    size = 1
    for n in x.shape:
        size *= n
    positions = xp.reshape(xp.getitem(xp.reshape(_arange_beside(xp, size, raw), tuple(x.shape)), key), (-1,))
    if positions.shape[0] == 0:
        return _copy(x)
    order = xp.argsort(positions, stable=True)
    ordered = xp.take(positions, order)
    last = xp.concat([ordered[1:] != ordered[:-1], backend.create(xp, "ones", (1,), dtype=xp.bool,
                                                                  device=raw.device)])
    winners = xp.take(order, xp.nonzero(last)[0])  # ascending positions, one per element written
    kept = take(reshape(value, (-1,)), winners, axis=0)
    flat = index_update(reshape(x, (-1,)), kept, (xp.take(positions, winners),))
    return reshape(flat, tuple(x.shape))


def _assign_batched(x: Tensor, key: tuple, value: Tensor) -> Tensor:
    """``assign`` for a key holding batched index arrays (inside vmap): the positions
    written differ by example, so the fixed-size form of the last write winning: each
    write is kept where no later one hits its position (found by a stable sort), the kept
    values are scattered, and a scatter of ones says which positions were written."""
    from . import creation, elementwise, no_gradient, sorting  # (late: they import this module)

    size = 1
    for n in x.shape:
        size *= n
    cells = reshape(creation.arange(size, device=x.device), tuple(x.shape))
    positions = _index(cells, key)
    try:
        value = broadcast_to(value, tuple(positions.shape))
    except ValueError:
        raise ValueError(f"agrad.setitem: cannot assign a value of shape {value.shape} to x[key] of shape "
                         f"{positions.shape} (x has shape {x.shape}): it must broadcast to it") from None
    positions, value = reshape(positions, (-1,)), reshape(value, (-1,))
    order = sorting.argsort(positions, stable=True)
    ordered = take(positions, order, axis=0)
    last = concat([no_gradient.not_equal(ordered[1:], ordered[:-1]),
                   creation.ones((1,), dtype=dtypes.ALL["bool"], device=x.device)])
    kept = take(last, sorting.argsort(order, stable=True), axis=0)  # (the inverse permutation)
    zero = creation.zeros((), dtype=value.dtype, device=x.device)
    written = scatter_add(astype(kept, dtypes.ALL["int64"]), (size,), (positions,))
    new = scatter_add(elementwise.where(kept, value, zero), (size,), (positions,))
    out = elementwise.where(no_gradient.greater(written, 0), new, reshape(x, (-1,)))
    return reshape(out, tuple(x.shape))


def _expand_ellipsis(key: tuple, ndim: int) -> tuple:
    """A key without index arrays, one entry per axis of x: ``...`` spelled out as full
    slices; None and index arrays (which do not map one axis to one) make it ()."""
    if any(k is None or backend.is_index_array(k) for k in key):
        return (0,) * (ndim + 1)  # (never "every element": zip stops at the axes, the 0s are not slices)
    out = []
    for k in key:
        if k is Ellipsis:
            out.extend([slice(None)] * (ndim - (len(key) - 1)))
        else:
            out.append(k)
    return tuple(out)


def _as_value(value: Any, x: Tensor, xp: Any) -> Tensor:
    """An assigned value as a Tensor beside ``x`` (a Python number in ``x``'s dtype)."""
    if isinstance(value, Tensor):
        return value
    if hasattr(value, "shape"):
        backend.namespace_of((x._data, value), "setitem")
        return Tensor(value)
    return Tensor(backend.create(xp, "asarray", value, dtype=x._data.dtype, device=x._data.device))


def _arange_beside(xp: Any, n: int, like: Any) -> Any:
    return backend.create(xp, "arange", n, device=like.device)


def scatter_add(g: ArrayLike, shape: tuple[int, ...], key: Any) -> Tensor:
    """zeros(shape) with ``g`` added at ``key``; repeated indices are summed, not dropped."""
    key = _normalize_key(g, key, len(shape))
    if _holds_batched(key):  # (inside vmap: index arrays that differ by example)
        template, arrays = _split_key(key)
        return scatter_p(g, *arrays, shape=tuple(shape), key=template)
    return scatter_add_p(g, shape=tuple(shape), key=key)


def _normalize_key(x, key, ndim: int) -> tuple:
    """A tuple key of ints, slices, None, Ellipsis and raw integer arrays.

    Lists become arrays on x's backend, Tensors become their data, a boolean mask
    becomes its nonzero() indices, and a trailing Ellipsis is added when the key
    names fewer axes than x has (the standard demands it).
    """
    if not isinstance(key, tuple):
        key = (key,)
    out = []
    for k in key:
        if isinstance(k, Tensor):
            k = k.data
        if isinstance(k, list):
            xp = backend.namespace_of((x.data if isinstance(x, Tensor) else x,), "getitem")
            # An empty list selects nothing: it is an (empty) integer index, not a float array.
            k = xp.asarray(k, device=x.device) if k else xp.asarray(k, dtype=xp.int64, device=x.device)
        if hasattr(k, "dtype") and not isinstance(k, (int, bool)):
            xp = backend.namespace_of((x.data if isinstance(x, Tensor) else x, k), "getitem")
            if k.dtype == xp.bool:
                if k.__class__ is batched.BatchedArray:
                    raise batched.VmapError(
                        f"agrad.vmap: a batched boolean mask as an index ({batched.describe(k)}): the number of "
                        f"elements it selects differs from example to example, a shape that depends on the values. "
                        f"Use agrad.where(mask, x, 0) (and a masked sum or mean) instead of x[mask]")
                out.extend(_raw(i) for i in xp.nonzero(k))  # (the batching namespace gives Tensors)
                continue
            if not xp.isdtype(k.dtype, "integral"):
                raise IndexError(f"agrad.getitem: index arrays must be integer or boolean, got dtype {k.dtype}")
        out.append(k)
    if not any(k is Ellipsis for k in out):
        used = sum(1 for k in out if k is not None)
        if used < ndim:
            out.append(Ellipsis)
    return tuple(out)


def getitem(x: ArrayLike, key: Any) -> Tensor:
    """``x[key]`` with ints, slices, ``...``, ``None``, integer arrays and boolean masks.

    The gradient scatters back with repeated indices summed.
    """
    raw_key = key._data if isinstance(key, Tensor) else key
    if hasattr(raw_key, "dtype") and len(getattr(raw_key, "shape", (1,))) == 0 and dtypes.as_dtype(
            raw_key.dtype) == dtypes.ALL["bool"]:
        # A 0-d boolean mask adds an axis of length 1 (True) or 0 (False), as in NumPy.
        xp = backend.namespace_of((raw_key,), "getitem")
        keep = xp.reshape(xp.nonzero(xp.reshape(raw_key, (1,)))[0], (-1,))
        return take(expand_dims(x, axis=0), keep, axis=0)
    return _index(x, _normalize_key(x, key, x.ndim))


def take(x: ArrayLike, indices: ArrayLike, /, *, axis: int | None = None) -> Tensor:
    """Elements of ``x`` at integer ``indices`` along ``axis`` (as ``xp.take``)."""
    if axis is None:
        if x.ndim != 1:
            raise ValueError(f"agrad.take: axis is required for a {x.ndim}-D input")
        axis = 0
    axis = normalize_axis(axis, x.ndim, "take")[0]
    return getitem(x, (slice(None),) * axis + (indices,) + (Ellipsis,))


flip_p = primitive(
    "flip", lambda xp, x, axis: xp.flip(x, axis=axis),
    vjp=[lambda xp, g, ans, x, axis: xp.flip(g, axis=axis)], linear=True,
    view=lambda base, new, axis: flip(new, axis=axis),
    batch=lambda xp, dims, x, axis: (flip_p(x, axis=rules.physical_axes(axis, dims[0], x.ndim - 1)), dims[0]),
)


def flip(x: ArrayLike, /, *, axis: int | tuple[int, ...] | None = None) -> Tensor:
    """Reverse the order of elements along ``axis`` (None: every axis)."""
    return flip_p(x, axis=normalize_axis(axis, x.ndim, "flip"))


roll_p = primitive(
    "roll", lambda xp, x, shift, axis: xp.roll(x, shift, axis=axis),
    vjp=[lambda xp, g, ans, x, shift, axis: xp.roll(g, tuple(-s for s in shift) if isinstance(shift, tuple)
                                                    else -shift, axis=axis)], linear=True,
    batch=lambda xp, dims, x, shift, axis: _roll_batch(dims[0], x, shift, axis),
)


def _roll_batch(d: int, x: Tensor, shift: Any, axis: Any) -> tuple[Tensor, int]:
    if axis is None:  # each example rolled over its flattened elements
        shape = tuple(x.shape)
        flat = reshape(moveaxis(x, d, 0) if d else x, (shape[d], -1))
        out = reshape(roll_p(flat, shift=shift, axis=1), (shape[d],) + shape[:d] + shape[d + 1:])
        return out, 0
    r = x.ndim - 1
    phys = rules.physical_axis(axis, d, r) if isinstance(axis, int) else rules.physical_axes(axis, d, r)
    return roll_p(x, shift=shift, axis=phys), d


def roll(x: ArrayLike, /, shift: int | tuple[int, ...], *, axis: int | tuple[int, ...] | None = None) -> Tensor:
    """Shift elements along ``axis`` cyclically (None: over the flattened array)."""
    if isinstance(shift, list):
        shift = tuple(shift)
    if axis is not None and not isinstance(axis, int):
        normalize_axis(axis, x.ndim, "roll")  # (the checks; the order must stay: shift[i] goes with axis[i])
        axis = tuple(a % x.ndim for a in axis)
    elif axis is not None:
        axis = normalize_axis(axis, x.ndim, "roll")[0]
    return roll_p(x, shift=shift, axis=axis)


def moveaxis(x: ArrayLike, source: int | tuple[int, ...], destination: int | tuple[int, ...], /) -> Tensor:
    """Move axes to new positions; the others keep their order."""
    src = (source,) if isinstance(source, int) else tuple(source)
    dst = (destination,) if isinstance(destination, int) else tuple(destination)
    if len(src) != len(dst):
        raise ValueError(f"agrad.moveaxis: {len(src)} source axes but {len(dst)} destinations")
    nd = x.ndim
    src, dst = tuple(a % nd for a in src), tuple(a % nd for a in dst)
    order = [a for a in range(nd) if a not in src]
    for d, s_ in sorted(zip(dst, src)):
        order.insert(d, s_)
    return permute_dims(x, tuple(order))


def tile(x: ArrayLike, repetitions: tuple[int, ...], /) -> Tensor:
    """``x`` repeated ``repetitions[i]`` times along axis i (leading axes added as needed)."""
    reps = tuple(repetitions)
    nd = max(x.ndim, len(reps))
    reps = (1,) * (nd - len(reps)) + reps
    shape = (1,) * (nd - x.ndim) + tuple(x.shape)
    # Each axis of length n becomes the pair (r, n): a length-1 axis in front, broadcast to r,
    # then the pair merged; every step is a view or a reshape, all differentiable.
    y = reshape(x, sum(((1, n) for n in shape), ()))
    y = broadcast_to(y, sum(((r, n) for r, n in zip(reps, shape)), ()))
    return _new_memory(reshape(y, tuple(r * n for r, n in zip(reps, shape))), x)


def _new_memory(y: Tensor, x: ArrayLike) -> Tensor:
    """``y``, or a copy of it where it is still a (read-only, broadcast) view of ``x``: a
    tile or a repeat is a new array, as in NumPy."""
    raw = x._data if isinstance(x, Tensor) else x
    if hasattr(raw, "shape") and backend.aliases(y._data, raw):
        return _copy(y)
    return y


def _copy(x: Tensor) -> Tensor:
    """A copy of ``x`` in new memory, as a recorded op: ``positive(x)``, except for booleans,
    for which the standard has no ``positive`` (array-api-strict refuses it); they carry no
    derivative, and ``astype`` copies them."""
    return astype(x, x.dtype) if x.dtype == dtypes.ALL["bool"] else positive(x)


def repeat(x: ArrayLike, repeats: int | ArrayLike, /, *, axis: int | None = None) -> Tensor:
    """Repeat each element ``repeats`` times (an int, or one count per element) along ``axis``
    (None: over the flattened array)."""
    if axis is None:
        x = reshape(x, (-1,))
        axis = 0
    axis = normalize_axis(axis, x.ndim, "repeat")[0]
    if isinstance(repeats, int):
        y = expand_dims(x, axis=axis + 1)
        shape = list(y.shape)
        shape[axis + 1] = repeats
        y = broadcast_to(y, tuple(shape))
        out = list(x.shape)
        out[axis] *= repeats
        return _new_memory(reshape(y, tuple(out)), x)
    counts = repeats._data if isinstance(repeats, Tensor) else repeats
    xp = backend.namespace_of((counts,), "repeat")
    index = xp.repeat(xp.arange(x.shape[axis], device=counts.device), counts)
    return take(x, index, axis=axis)


def unstack(x: ArrayLike, /, *, axis: int = 0) -> tuple[Tensor, ...]:
    """The slices of ``x`` along ``axis``, as a tuple."""
    axis = normalize_axis(axis, x.ndim, "unstack")[0]
    lead = (slice(None),) * axis
    return tuple(getitem(x, lead + (i, Ellipsis)) for i in range(x.shape[axis]))


def broadcast_arrays(*arrays: ArrayLike) -> list[Tensor]:
    """The arrays broadcast to their common shape."""
    shape = broadcast_shapes(*(tuple(a.shape) for a in arrays))
    return [broadcast_to(a, shape) for a in arrays]


def take_along_axis(x: ArrayLike, indices: ArrayLike, /, *, axis: int = -1) -> Tensor:
    """Elements of ``x`` at ``indices`` along ``axis``, matched position by position on the
    other axes; the gradient scatters back with repeated indices summed."""
    axis = normalize_axis(axis, x.ndim, "take_along_axis")[0]
    idx = indices._data if isinstance(indices, Tensor) else indices
    xp = backend.namespace_of((x._data if isinstance(x, Tensor) else x, idx), "take_along_axis")
    key = []
    for a in range(x.ndim):
        if a == axis:
            key.append(idx)
        else:
            shape = tuple(x.shape[a] if b == a else 1 for b in range(x.ndim))
            key.append(xp.reshape(xp.arange(x.shape[a], device=idx.device), shape))
    return _index(x, tuple(key))

