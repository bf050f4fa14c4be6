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


concat_p = primitive("concat", lambda xp, *arrays, axis: xp.concat(arrays, axis=axis), vjp=_concat_vjp, linear=True)


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


stack_p = primitive("stack", lambda xp, *arrays, axis: xp.stack(arrays, axis=axis), vjp=_stack_vjp, linear=True)


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
    return getitem_p(x, key=batched.physical_key(key, d, r)), batched.batch_position(key, d, r)


getitem_p = primitive(
    "getitem", lambda xp, x, key: xp.getitem(x, key),
    vjp=[lambda xp, g, ans, x, key: xp.scatter_add(g, tuple(x.shape), key)], linear=True,
    view=lambda base, new, key: assign(base, key, new),
    batch=_getitem_batch,
)
scatter_add_p = primitive(
    "scatter_add", lambda xp, g, shape, key: xp.scatter_add(g, shape, key),
    vjp=[lambda xp, gg, ans, g, shape, key: xp.getitem(gg, key)], linear=True,
)


index_update_p = primitive(
    "index_update", lambda xp, x, value, key: xp.index_update(x, value, key),
    vjp=[lambda xp, g, ans, x, value, key: xp.index_update(g, 0.0, key),
         lambda xp, g, ans, x, value, key: xp.getitem(g, key)], linear=True,
)


def index_update(x: ArrayLike, value: ArrayLike, key: tuple) -> Tensor:
    """A copy of ``x`` with ``x[key] = value``, for a key that writes every element at most
    once and a ``value`` of exactly the shape ``x[key]`` has: the primitive behind
    :func:`assign` (which accepts every key and broadcasts)."""
    return index_update_p(x, value, key=key)


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
    if hasattr(raw_key, "dtype") and len(raw_key.shape) == 0 and dtypes.as_dtype(raw_key.dtype) == dtypes.ALL["bool"]:
        # A 0-d boolean mask selects x itself behind a new axis of length 1 (True) or nothing.
        if not bool(raw_key):
            return _copy(x)
        value = reshape(broadcast_to(_as_value(value, x, xp), (1,) + tuple(x.shape)), tuple(x.shape))
        key = Ellipsis
    key = _normalize_key(x, key, x.ndim)
    value = _as_value(value, x, xp)
    if value.dtype != x.dtype:
        value = astype(value, x.dtype)
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
    return scatter_add_p(g, shape=tuple(shape), key=_normalize_key(g, key, len(shape)))


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
                out.extend(xp.nonzero(k))
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
    return getitem_p(x, key=_normalize_key(x, key, x.ndim))


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
)


def flip(x: ArrayLike, /, *, axis: int | tuple[int, ...] | None = None) -> Tensor:
    """Reverse the order of elements along ``axis`` (None: every axis)."""
    return flip_p(x, axis=normalize_axis(axis, x.ndim, "flip"))


roll_p = primitive(
    "roll", lambda xp, x, shift, axis: xp.roll(x, shift, axis=axis),
    vjp=[lambda xp, g, ans, x, shift, axis: xp.roll(g, tuple(-s for s in shift) if isinstance(shift, tuple)
                                                    else -shift, axis=axis)], linear=True,
)


def roll(x: ArrayLike, /, shift: int | tuple[int, ...], *, axis: int | tuple[int, ...] | None = None) -> Tensor:
    """Shift elements along ``axis`` cyclically (None: over the flattened array)."""
    if isinstance(shift, list):
        shift = tuple(shift)
    if axis is not None:
        axis = normalize_axis(axis, x.ndim, "roll") if not isinstance(axis, int) else axis % x.ndim
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
    return getitem_p(x, key=tuple(key))

