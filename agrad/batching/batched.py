"""Batched arrays: what a function mapped by ``agrad.vmap`` computes on.

Inside ``vmap(f)``, ``f`` sees Tensors whose array is a :class:`BatchedArray`: a
*physical* value (an agrad Tensor holding every example at once) plus the axis along
which the examples lie (``bdim``) and the ``level`` of the vmap that made it (vmaps
nest: the physical value may itself hold a BatchedArray of an outer vmap). The
BatchedArray shows the *logical* shape, one example's, and behaves as an array of a
backend whose namespace is :data:`NAMESPACE`:

- A primitive applied to batched arrays runs its batching rule (``Primitive.rules
  ["batch"]``, see :func:`run_rule`) instead of its forward: the rule computes the
  result for all examples with agrad ops on the physical values, so the physical
  computation is recorded on the tape (and carries tangents) like any other, which is
  how ``grad(vmap(f))`` and ``jvp(vmap(f))`` work.
- The tape may record ops on batched arrays too (``vmap(grad(f))``): their VJPs then
  run with :data:`NAMESPACE` as ``xp``, whose functions are agrad's ops on batched
  arrays, so that every cotangent is a batched array as well (per-example gradients).
- Functions that are not primitives (comparisons, argmax, creation, dtype queries) have
  their batching here, in the namespace.

The levels follow JAX: an op meeting batched arrays of several levels batches the
innermost (highest) level first; arrays of the other levels are constants to it, and
the rule's own ops on them batch the outer levels in turn.
"""

from __future__ import annotations

import itertools
import math
import threading
from typing import Any, Callable, Sequence

from .. import backend, dtypes
from ..tensor import Tensor
from . import rules

BATCH = "batch"  # the kind of rule in ``Primitive.rules`` (tape.BATCH)

_levels = itertools.count(1)


class _Levels(threading.local):
    def __init__(self) -> None:
        # level -> (axis size, randomness) for every vmap running in this thread
        self.running: dict[int, tuple[int, str]] = {}
        self.entered: set[str] = set()  # the namespace functions running agrad's own (a loop guard)


_state = _Levels()


def new_level(size: int, randomness: str) -> int:
    level = next(_levels)
    _state.running[level] = (size, randomness)
    return level


def retire(level: int) -> None:
    _state.running.pop(level, None)


def running_levels() -> dict[int, tuple[int, str]]:
    """The vmaps running in this thread, outermost first: level -> (size, randomness)."""
    return _state.running


class VmapError(ValueError):
    """A function cannot be mapped as written (a value-dependent decision, a
    data-dependent shape, a batched value written into an unbatched array)."""


def _value_error(what: str) -> VmapError:
    return VmapError(
        f"agrad.vmap: {what} of a batched value: inside vmap each value stands for one example of many, so its "
        f"elements cannot be read as Python numbers (an `if` on values, float(x), x.item()). Write the decision "
        f"with array operations (agrad.where(cond, a, b)), or move it out of the mapped function"
    )


class BatchedArray:
    """One example's view of ``value``, which holds ``size`` examples along axis ``bdim``."""

    __slots__ = ("value", "bdim", "level", "__weakref__")
    __array_ufunc__ = None  # NumPy defers to the reflected operators below
    __array_priority__ = 2000

    def __init__(self, value: Tensor, bdim: int, level: int) -> None:
        self.value = value
        self.bdim = bdim
        self.level = level

    # ----------------------------------------------------------------- the logical array
    @property
    def shape(self) -> tuple:
        s = self.value._data.shape
        d = self.bdim
        return tuple(s[:d]) + tuple(s[d + 1:])

    @property
    def ndim(self) -> int:
        return self.value._data.ndim - 1

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def dtype(self) -> Any:
        return self.value._data.dtype

    @property
    def device(self) -> Any:
        return self.value._data.device

    @property
    def base(self) -> Any:
        """None when the physical array holds memory of its own (``backend.owns_memory``)."""
        return None if backend.owns_memory(self.value._data) else self.value

    @property
    def _vmap_physical(self) -> Any:
        """The physical array (every example): what a check of values reads (agrad.compile.hooks)."""
        return self.value._data

    @property
    def T(self) -> "BatchedArray":
        return NAMESPACE.permute_dims(self, tuple(range(self.ndim - 1, -1, -1)))

    @property
    def mT(self) -> "BatchedArray":
        return NAMESPACE.matrix_transpose(self)

    def __repr__(self) -> str:
        return f"BatchedArray(level={self.level}, bdim={self.bdim}, shape={self.shape}, value={self.value._data!r})"

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-D array")
        return self.shape[0]

    def __array_namespace__(self, /, *, api_version: str | None = None) -> Any:
        return NAMESPACE

    def to_device(self, device: Any, /, *, stream: Any = None) -> "BatchedArray":
        return NAMESPACE.to_device(self, device)

    def __bool__(self) -> bool:
        raise _value_error("bool()")

    def __float__(self) -> float:
        raise _value_error("float()")

    def __int__(self) -> int:
        raise _value_error("int()")

    def __complex__(self) -> complex:
        raise _value_error("complex()")

    def __index__(self) -> int:
        raise _value_error("using as an index")

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        raise _value_error("converting to NumPy")

    def __dlpack__(self, **kwargs: Any) -> Any:
        raise _value_error("DLPack export")

    def __iter__(self):
        raise TypeError("agrad.vmap: iterate over a batched array with indexing (x[i]) or agrad.unstack")

    def __getitem__(self, key: Any) -> "BatchedArray":
        return _raw(_ops().getitem(self, key))

    def __setitem__(self, key: Any, value: Any) -> None:
        setitem(self, key, value)

    __hash__ = object.__hash__


def _ops() -> Any:
    from .. import ops  # (late: agrad.ops declares its primitives' rules with agrad.batching.rules)

    return ops


def _raw(t: Any) -> Any:
    """A Tensor's array (a result of agrad's ops on raw arrays is a constant Tensor)."""
    return t._data if isinstance(t, Tensor) else t


def _binary(name: str) -> tuple[Callable, Callable]:
    def op(self: BatchedArray, other: Any) -> Any:
        return getattr(NAMESPACE, name)(self, other)

    def rop(self: BatchedArray, other: Any) -> Any:
        return getattr(NAMESPACE, name)(other, self)

    return op, rop


for _dunder, _fn in [("add", "add"), ("sub", "subtract"), ("mul", "multiply"), ("truediv", "divide"),
                     ("pow", "pow"), ("matmul", "matmul"), ("mod", "remainder"), ("floordiv", "floor_divide"),
                     ("and", "bitwise_and"), ("or", "bitwise_or"), ("xor", "bitwise_xor"),
                     ("lshift", "bitwise_left_shift"), ("rshift", "bitwise_right_shift")]:
    _op, _rop = _binary(_fn)
    setattr(BatchedArray, f"__{_dunder}__", _op)
    setattr(BatchedArray, f"__r{_dunder}__", _rop)
for _dunder, _fn in [("lt", "less"), ("le", "less_equal"), ("gt", "greater"), ("ge", "greater_equal"),
                     ("eq", "equal"), ("ne", "not_equal")]:
    setattr(BatchedArray, f"__{_dunder}__", _binary(_fn)[0])
for _dunder, _fn in [("neg", "negative"), ("pos", "positive"), ("abs", "abs"), ("invert", "bitwise_invert")]:
    setattr(BatchedArray, f"__{_dunder}__", (lambda name: lambda self: getattr(NAMESPACE, name)(self))(_fn))


def _inplace(name: str) -> Callable:
    """``x op= y`` on a batched array: the result written into the physical array, so that
    views of the same memory (a row of a batched array, its base) see it."""

    def iop(self: BatchedArray, other: Any) -> BatchedArray:
        result = getattr(NAMESPACE, name)(self, other)
        if result.dtype != self.dtype:
            result = NAMESPACE.astype(result, self.dtype)
        setitem(self, Ellipsis, result)
        return self

    return iop


for _dunder, _fn in [("add", "add"), ("sub", "subtract"), ("mul", "multiply"), ("truediv", "divide"),
                     ("pow", "pow"), ("matmul", "matmul"), ("mod", "remainder"), ("floordiv", "floor_divide"),
                     ("and", "bitwise_and"), ("or", "bitwise_or"), ("xor", "bitwise_xor"),
                     ("lshift", "bitwise_left_shift"), ("rshift", "bitwise_right_shift")]:
    setattr(BatchedArray, f"__i{_dunder}__", _inplace(_fn))
BatchedArray.__hash__ = object.__hash__  # type: ignore[assignment]


def wrap(value: Any, bdim: int | None, level: int) -> Any:
    """The batched array of ``value`` (a Tensor, or a raw array) with its examples along
    ``bdim``; ``value`` itself (its array) when ``bdim`` is None."""
    if bdim is None:
        return value
    if not isinstance(value, Tensor):
        value = Tensor(value)
    return BatchedArray(value, bdim, level)


def bottom(x: Any) -> Any:
    """The backend array under any batched arrays (every example of every level)."""
    while x.__class__ is BatchedArray:
        x = x.value._data
    return x


def hides_trace(x: Any) -> bool:
    """Whether a batched array's physical value (at any level) is traced by a transform
    outside the vmaps: a backward pass over ops on it must then be recorded."""
    from .. import forward_mode  # (late: forward_mode imports the tensor, which this module imports)

    while x.__class__ is BatchedArray:
        v = x.value
        if v.requires_grad or (v._tangents is not None and forward_mode.active_levels((v,))):
            return True
        x = v._data
    return False


# --------------------------------------------------------------------------- primitives


def run_rule(prim: Any, args: Sequence[Any], raw: Sequence[Any], params: dict) -> Any:
    """``prim`` on ``args`` (``raw``: their arrays) of which some are batched: its batching rule at
    the innermost level among them (the tape's ``apply`` calls this instead of the
    forward). Returns a batched array (``(out, None)`` for an op with ``has_aux``: the
    VJP recomputes what the forward would have handed it)."""
    level = 0
    for a in raw:
        if a.__class__ is BatchedArray and a.level > level:
            level = a.level
    if level not in _state.running:
        raise VmapError(f"agrad.vmap: {prim.name} got a batched value of a vmap that has returned (it escaped the "
                        f"mapped function, e.g. through a global or a closure); return it from the function instead")
    rule = prim.rules.get(BATCH)
    if rule is rules.by_forward:  # a custom_vjp / custom_jvp / checkpoint function: its forward on batched arrays
        if any(r.__class__ is BatchedArray and hides_trace(r) for r in raw):
            raise NotImplementedError(
                f"agrad.vmap: {prim.name} under a derivative taken outside the vmap (grad(vmap(f)) with a custom "
                f"rule or checkpoint inside) is not supported yet: its rule would be lost. Put the derivative "
                f"inside the vmap (vmap(grad(f))), or map the function without the custom rule")
        return prim.forward(NAMESPACE, *raw, **params)
    values, dims = [], []
    for a, r in zip(args, raw):
        if r.__class__ is BatchedArray and r.level == level:
            values.append(r.value)
            dims.append(r.bdim)
        else:  # (the Tensor itself: the rule's ops on it are recorded when it is traced)
            values.append(a)
            dims.append(None)
    if rule is None:
        raise NotImplementedError(
            f"agrad.vmap: the primitive {prim.name!r} has no batching rule; declare it with "
            f"agrad.primitive(..., batch=rule) (see agrad.batching.rules for the common cases)")
    out, out_dim = rule(_ops(), tuple(dims), *values, **params)
    result = wrap(out, out_dim, level) if out_dim is not None else _raw(out)
    return (result, None) if prim.has_aux else result


def setitem(target: BatchedArray, key: Any, value: Any) -> None:
    """``target[key] = value`` on the physical array: every example's element at ``key``."""
    level = target.level
    if value.__class__ is BatchedArray and value.level > level:
        raise VmapError(
            f"agrad.vmap: an in-place update writes a value batched by an inner vmap into an array that is batched "
            f"only by an outer one ({describe(target)}): the array cannot hold one value per inner example. Make "
            f"the array inside the inner vmap (agrad.zeros_like(x)), or compute a new one (agrad.where)")
    ops = _ops()
    phys_key = physical_key(key, target.bdim, target.ndim)
    sub_rank = _raw(ops.getitem(target.value, phys_key)).ndim - 1  # the logical rank of target[key]
    pos = batch_position(key, target.bdim, target.ndim)
    if value.__class__ is BatchedArray and value.level == level:
        # the value's examples along the batch axis of target[key] (after the axes the key keeps before it)
        v = ops.moveaxis(value.value, value.bdim, 0) if value.bdim else value.value
        vshape = tuple(v.shape)
        if len(vshape) - 1 < sub_rank:
            v = ops.reshape(v, (vshape[0],) + (1,) * (sub_rank - len(vshape) + 1) + vshape[1:])
        value = ops.moveaxis(v, 0, pos) if pos else v
    elif hasattr(value, "shape") and len(value.shape) > sub_rank - pos:
        # one value for every example: a unit axis where target[key] has its batch axis (broadcasting would
        # line the value's axes up with the batch axis otherwise)
        vshape = tuple(value.shape)
        v = ops.reshape(value, (1,) * (sub_rank - len(vshape)) + vshape) if len(vshape) < sub_rank else value
        value = ops.expand_dims(v, axis=pos)
    target.value[phys_key] = value


def batch_position(key: Any, bdim: int, ndim: int) -> int:
    """Where the batch axis ends up in ``physical[physical_key(key)]`` (basic indexing):
    after the axes the key keeps or adds before it."""
    entries = _expand_key(key, ndim)
    pos = 0
    seen = 0  # logical axes consumed
    for k in entries:
        if seen == bdim and k is not None:  # (physical_key puts the batch axis here)
            return pos
        if k is None:
            pos += 1
        elif isinstance(k, slice):
            pos += 1
            seen += 1
        else:  # an integer removes its axis
            seen += 1
    return pos


def _expand_key(key: Any, ndim: int) -> list:
    key = list(key) if isinstance(key, tuple) else [key]
    if any(not isinstance(k, (int, slice, type(None), type(Ellipsis))) for k in key):
        raise VmapError("agrad.vmap: in-place updates of batched arrays take basic indices (integers, slices, "
                        "None, ...); use agrad.where or agrad.index_update for array indices")
    n_used = sum(1 for k in key if k is not None and k is not Ellipsis)
    if Ellipsis in key:
        i = key.index(Ellipsis)
        key[i:i + 1] = [slice(None)] * (ndim - n_used)
    else:
        key += [slice(None)] * (ndim - n_used)
    return key


def physical_key(key: Any, bdim: int, ndim: int) -> tuple:
    """A basic index of the logical array as an index of the physical one: a full slice
    inserted where the batch axis lies."""
    entries = _expand_key(key, ndim)
    out, seen = [], 0
    inserted = False
    for k in entries:
        if seen == bdim and not inserted and k is not None:
            out.append(slice(None))
            inserted = True
        out.append(k)
        if k is not None:
            seen += 1
    if not inserted:
        out.append(slice(None))
    return tuple(out)


def describe(x: Any) -> str:
    return (f"a batched {dtypes.dtype_name(x.dtype)} array of logical shape {x.shape} (vmap level {x.level}, "
            f"{x.value.shape[x.bdim]} examples)")


# --------------------------------------------------------------------------- the namespace


class _Unbatched(Exception):
    pass


def _split(args: Sequence[Any]) -> tuple[int, list, list]:
    """The innermost level among ``args`` and their physical values and batch axes there."""
    level = 0
    for a in args:
        if a.__class__ is BatchedArray and a.level > level:
            level = a.level
    if not level:
        raise _Unbatched
    values, dims = [], []
    for a in args:
        if a.__class__ is BatchedArray and a.level == level:
            values.append(a.value)
            dims.append(a.bdim)
        else:
            values.append(a)
            dims.append(None)
    return level, values, dims


def _elementwise_raw(name: str) -> Callable:
    def fn(*args: Any, **kwargs: Any) -> Any:
        level, values, dims = _split(args)
        values, d = rules.aligned(_ops(), dims, values)
        return wrap(getattr(_ops(), name)(*values, **kwargs), d, level)

    fn.__name__ = name
    return fn


def _reduction_raw(name: str, single_axis: bool) -> Callable:
    """A reduction (argmax, all, count_nonzero...) over logical axes."""

    def fn(x: Any, /, *, axis: Any = None, keepdims: bool = False, **kwargs: Any) -> Any:
        if x.__class__ is not BatchedArray:
            raise _Unbatched
        ops = _ops()
        if axis is None and single_axis:  # over the flattened example
            v = ops.moveaxis(x.value, x.bdim, 0)
            v = ops.reshape(v, (v.shape[0], -1))
            out = getattr(ops, name)(v, axis=1, keepdims=False, **kwargs)
            if keepdims:
                out = ops.reshape(out, (out.shape[0],) + (1,) * x.ndim)
            return wrap(out, 0, x.level)
        axes = rules.physical_axes(axis, x.bdim, x.ndim)
        ax = axes[0] if single_axis else axes
        out = getattr(ops, name)(x.value, axis=ax, keepdims=keepdims, **kwargs)
        return wrap(out, rules.reduced_bdim(x.bdim, axes, keepdims), x.level)

    fn.__name__ = name
    return fn


def _sort_raw(name: str) -> Callable:
    def fn(x: Any, /, *, axis: int = -1, **kwargs: Any) -> Any:
        if x.__class__ is not BatchedArray:
            raise _Unbatched
        (ax,) = rules.physical_axes(axis, x.bdim, x.ndim)
        return wrap(getattr(_ops(), name)(x.value, axis=ax, **kwargs), x.bdim, x.level)

    fn.__name__ = name
    return fn


def _like_raw(name: str) -> Callable:
    def fn(x: Any, /, *args: Any, **kwargs: Any) -> Any:
        if x.__class__ is not BatchedArray:
            raise _Unbatched
        return wrap(getattr(_ops(), name)(x.value, *args, **kwargs), x.bdim, x.level)

    fn.__name__ = name
    return fn


def _data_dependent(name: str) -> Callable:
    def fn(*args: Any, **kwargs: Any) -> Any:
        if not any(a.__class__ is BatchedArray for a in args):
            raise _Unbatched
        raise VmapError(f"agrad.vmap: {name} has a shape that depends on the values, which differs from example to "
                        f"example, so it cannot be mapped; compute it outside vmap, or use a fixed-size form "
                        f"(agrad.where with a mask instead of nonzero)")

    fn.__name__ = name
    return fn


def _searchsorted(x1: Any, x2: Any, /, *, side: str = "left", sorter: Any = None) -> Any:
    if x1.__class__ is BatchedArray or sorter.__class__ is BatchedArray:
        raise VmapError("agrad.vmap: searchsorted over a batched sorted sequence is not supported; map over the "
                        "values searched for (x2) only, with the sequence unbatched")
    if x2.__class__ is not BatchedArray:
        raise _Unbatched
    return wrap(_ops().searchsorted(x1, x2.value, side=side, sorter=sorter), x2.bdim, x2.level)


def _dtype_of(x: Any) -> Any:
    return x.dtype if x.__class__ is BatchedArray else x


_ELEMENTWISE_RAW = (
    "equal", "not_equal", "less", "less_equal", "greater", "greater_equal", "logical_and", "logical_or",
    "logical_not", "logical_xor", "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_invert",
    "bitwise_left_shift", "bitwise_right_shift", "isfinite", "isinf", "isnan", "sign", "signbit", "floor", "ceil",
    "trunc", "round", "floor_divide", "nextafter",
)
_REDUCTIONS_RAW = {"argmax": True, "argmin": True, "all": False, "any": False, "count_nonzero": False}


class BatchNamespace:
    """The array API on batched arrays (``xp`` of the VJPs the tape runs on them).

    A function of agrad's ops that is a primitive runs its batching rule (through the
    tape's ``apply``); the others are batched here; creation functions and dtype queries
    are the selected backend's (their results are unbatched)."""

    batching = True  # (what the tape's apply and namespace_of ask)
    multi_device = True  # the tape's fast path never takes it: apply asks namespace_of, which finds this
    array_type = BatchedArray
    name = "vmap"

    def __init__(self) -> None:
        raw: dict[str, Callable] = {}
        for n in _ELEMENTWISE_RAW:
            raw[n] = _elementwise_raw(n)
        for n, single in _REDUCTIONS_RAW.items():
            raw[n] = _reduction_raw(n, single)
        raw["argsort"] = _sort_raw("argsort")
        for n in ("zeros_like", "ones_like", "empty_like", "full_like"):
            raw[n] = _like_raw(n)
        for n in ("nonzero", "unique_all", "unique_counts", "unique_inverse", "unique_values"):
            raw[n] = _data_dependent(n)
        raw["searchsorted"] = _searchsorted
        raw["astype"] = _like_raw("astype")  # (agrad's astype of integer and bool results asks the namespace)
        self._raw = raw
        self.linalg = _LinalgNamespace()
        self.backend = _BatchBackend()

    def __repr__(self) -> str:
        return "<agrad namespace vmap>"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # (private attributes of other namespaces: agrad.compile's _home)
            raise AttributeError(name)
        fn = self._raw.get(name)
        ops = _ops()
        if fn is not None:
            fallback = getattr(backend.creation_namespace(), name, None)

            def batched(*args: Any, **kwargs: Any) -> Any:
                try:
                    return fn(*args, **kwargs)
                except _Unbatched:  # nothing batched: the backend's own function
                    return _raw(getattr(ops, name)(*args, **kwargs)) if hasattr(ops, name) else \
                        fallback(*args, **kwargs)

            setattr(self, name, batched)
            return batched
        if name in ("isdtype", "finfo", "iinfo"):
            under = getattr(backend.creation_namespace(), name)

            def query(x: Any, *args: Any) -> Any:
                return under(_dtype_of(x), *args)

            return query
        if name in ("result_type", "can_cast"):
            under = getattr(backend.creation_namespace(), name)

            def dtypes_query(*args: Any) -> Any:
                return under(*(_dtype_of(a) for a in args))

            return dtypes_query
        if name in _SHAPE_EXTRAS:
            return _SHAPE_EXTRAS[name]
        if name in ("asarray",):
            return _asarray
        if hasattr(ops, name) and callable(getattr(ops, name)) and name not in _CREATION:
            op = getattr(ops, name)

            def through_ops(*args: Any, **kwargs: Any) -> Any:
                if name in _state.entered:  # agrad's function asks the namespace for itself again
                    raise NotImplementedError(f"agrad.vmap: {name} has no batching (agrad.{name} calls the "
                                              f"namespace's {name} on the arrays it was given)")
                _state.entered.add(name)
                try:
                    out = op(*args, **kwargs)
                finally:
                    _state.entered.discard(name)
                if isinstance(out, (tuple, list)):
                    return type(out)(_raw(o) for o in out)
                return _raw(out)

            through_ops.__name__ = name
            setattr(self, name, through_ops)
            return through_ops
        return getattr(backend.creation_namespace(), name)  # creation, dtypes, constants


_CREATION = frozenset(("zeros", "ones", "empty", "full", "eye", "arange", "linspace", "meshgrid", "from_dlpack",
                       "tensor"))


def _asarray(obj: Any, /, *, dtype: Any = None, device: Any = None, copy: bool | None = None) -> Any:
    if obj.__class__ is BatchedArray:
        v = _ops().asarray(obj.value, dtype=dtype, device=device, copy=copy)
        return wrap(v, obj.bdim, obj.level)
    return _raw(_ops().asarray(obj, dtype=dtype, device=device, copy=copy))


def _scatter_add(g: Any, shape: tuple, key: tuple) -> Any:
    return _raw(_ops().scatter_add(g, shape, key))


def _getitem(x: Any, key: tuple) -> Any:
    return _raw(_ops().getitem(x, key))


def _index_update(x: Any, value: Any, key: tuple) -> Any:
    return _raw(_ops().index_update(x, value, key))


_SHAPE_EXTRAS = {"scatter_add": _scatter_add, "getitem": _getitem, "index_update": _index_update}


def _matrix_raw(name: str) -> Callable:
    """A decomposition of the last two axes (eigh, svd, qr, slogdet) on raw batched arrays:
    the backend's own, mapped over the leading axes with the examples in front (agrad's
    wrappers of these call it for the values their primitives do not give)."""

    def fn(x: Any, /, **kwargs: Any) -> Any:
        if x.__class__ is not BatchedArray:
            return getattr(backend.namespace_of((x,), name).linalg, name)(x, **kwargs)
        v = x.value._data
        ns = backend.namespace_of((v,), name)
        if x.bdim:
            v = ns.moveaxis(v, x.bdim, 0)
        out = getattr(ns.linalg, name)(v, **kwargs)
        parts = tuple(wrap(o, 0, x.level) for o in out)
        return type(out)(*parts) if hasattr(out, "_fields") else parts

    fn.__name__ = name
    return fn


class _LinalgNamespace:
    def __init__(self) -> None:
        for n in ("eigh", "svd", "qr", "slogdet"):
            setattr(self, n, _matrix_raw(n))

    def __getattr__(self, name: str) -> Any:
        op = getattr(_ops().linalg, name)

        def through_ops(*args: Any, **kwargs: Any) -> Any:
            out = op(*args, **kwargs)
            if isinstance(out, tuple):
                return type(out)(*(_raw(o) for o in out)) if hasattr(out, "_fields") else tuple(_raw(o) for o in out)
            return _raw(out)

        return through_ops


class _BatchBackend:
    """The few backend questions asked of any array (memory, host copies, device names)."""

    name = "vmap"
    is_host = False
    multi_device = True

    def memory(self, x: BatchedArray) -> Any:
        return backend._memory(x.value._data)

    def shares_memory(self, a: Any, b: Any) -> bool:
        a = a.value._data if a.__class__ is BatchedArray else a
        b = b.value._data if b.__class__ is BatchedArray else b
        return backend.aliases(a, b)

    def to_host(self, x: BatchedArray) -> Any:
        raise _value_error("copying to the host")

    def device_name(self, x: BatchedArray) -> str:
        return backend.device_name(x.value._data)

    def __getattr__(self, name: str) -> Any:  # capabilities: the selected backend's
        return getattr(backend.creation_namespace().backend, name)


NAMESPACE = BatchNamespace()
backend.register_array_wrapper(BatchedArray, NAMESPACE, describe)
