"""Creating arrays: on the selected backend, on a device, or beside other arrays."""

from __future__ import annotations

import builtins
from typing import Any

from .. import backend, dtypes
from ..tensor import ArrayLike, Tensor
from .conversions import astype, to_device
from .elementwise import where
from .shapes import broadcast_to, reshape, stack


def _raw(x: Any) -> Any:
    return x.data if isinstance(x, Tensor) else x


def tensor(data: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """A new Tensor holding a copy of ``data`` (a list, scalar or array), as ``torch.tensor``.

    Python data and NumPy arrays go to the selected backend (``agrad.set_backend``) or
    to ``device``; CuPy and array-api-strict arrays keep theirs unless ``device`` says
    otherwise. Python floats get the default floating dtype (``agrad.get_default_dtype()``,
    float32 unless set), Python complex numbers its complex counterpart (complex64 beside
    float32); arrays keep their own. ``dtype`` accepts agrad dtypes, backend
    dtypes and names. The result never shares memory with ``data`` (see :func:`asarray`
    for that). A (nested) list or tuple holding Tensors is stacked with
    :func:`~agrad.ops.shapes.stack`, so derivatives flow through it in both modes.
    """
    if isinstance(data, (list, tuple)) and _holds_tensor(data):
        if requires_grad:
            raise ValueError(
                "agrad.tensor: requires_grad=True makes a new leaf, but the data holds Tensors whose history "
                "would be cut; leave requires_grad out to get a differentiable stack of them, or detach them first"
            )
        out = _stack_nested(data, _first_tensor(data))
        if device is not None:
            out = to_device(out, device)
        return out if dtype is None else _astype(out, dtype)
    return Tensor(_new_array(_raw(data), dtype, device, copy=True, op="tensor"), requires_grad=requires_grad)


def asarray(obj: Any, /, *, dtype: Any = None, device: Any = None, copy: bool | None = None) -> Tensor:
    """``obj`` as a Tensor, sharing memory with it where the backend allows (the array API's
    ``asarray``): ``copy=None`` copies only when it must (another backend or device, another
    dtype), ``copy=True`` always copies, ``copy=False`` never does (a ValueError if it would
    have to). A Tensor comes back unchanged (with its history) when nothing is asked of it;
    a (nested) sequence holding Tensors becomes their differentiable stack.
    """
    if isinstance(obj, Tensor):
        if dtype is None and device is None and not copy:
            return obj
        if obj.requires_grad or obj._tangents is not None:  # keep the history: differentiable conversions

            out = obj if device is None else to_device(obj, device)
            out = out if dtype is None else _astype(out, dtype)
            if copy is False and out._data is not obj._data:
                raise ValueError("agrad.asarray: the dtype or device asked for needs a copy, but copy=False")
            return out * 1 if copy and out._data is obj._data else out  # (x * 1: a recorded copy)
    if isinstance(obj, (list, tuple)) and _holds_tensor(obj):
        return tensor(obj, dtype=dtype, device=device)
    out = Tensor(_new_array(_raw(obj), dtype, device, copy=copy, op="asarray"))
    if isinstance(obj, Tensor) and backend.aliases(out._data, obj._data):
        out._share_counter(obj)  # the same memory: one version counter
    return out


def from_dlpack(x: Any, /, *, device: Any = None, copy: bool | None = None) -> Tensor:
    """A Tensor on the array behind any DLPack-capable object (sharing its memory where
    the backend allows), on the backend of ``x`` when agrad knows it, else on the selected one."""
    return Tensor(backend.from_dlpack(_raw(x), device=device, copy=copy))


def _has_typed_scalars(data: Any) -> bool:
    """Whether (nested) Python data holds numbers with a dtype of their own (np.float64(0.5)):
    they keep it, as in PyTorch, where plain Python floats get the default dtype."""
    if isinstance(data, (list, tuple)):
        return any(_has_typed_scalars(d) for d in data)
    return hasattr(data, "dtype")


def _new_array(data: Any, dtype: Any, device: Any, copy: bool | None, op: str) -> Any:
    """``data`` as a backend array on ``device`` with ``dtype``; ``copy`` as in :func:`asarray`."""
    src = backend.namespace_of((data,), op) if hasattr(data, "shape") else None
    if src is None:  # Python data: a new array, floats in the default floating dtype
        xp = backend.namespace_for_device(device)
        arr = backend.create(xp, "asarray", data, dtype=backend.resolve_dtype(xp, dtype),
                      device=backend.resolve_device(xp, device))
        if dtype is None and xp.isdtype(arr.dtype, ("real floating", "complex floating")) and \
                not _has_typed_scalars(data):
            default = dtypes.get_default_dtype() if xp.isdtype(arr.dtype, "real floating") else \
                dtypes.default_complex_dtype()
            default = backend.resolve_dtype(xp, default)
            if arr.dtype != default:
                arr = xp.astype(arr, default)
        return arr
    copied = False
    if src.backend.is_host and not backend.namespace_for_device(device).backend.is_host:
        if copy is False:
            raise ValueError(f"agrad.{op}: a NumPy array must be copied to reach the {backend.get_backend()} backend "
                             f"or device {device!r}, but copy=False")
        arr, copied = backend.from_numpy(data, device=device), True  # host data onto the selected backend
    elif device is not None:
        arr = backend.to_device(data, device)
        copied = arr is not data
        if copied and copy is False:
            raise ValueError(f"agrad.{op}: moving to {device!r} copies, but copy=False")
    else:
        arr = data
    xp = backend.namespace_of((arr,), op)
    if dtype is not None and arr.dtype != backend.resolve_dtype(xp, dtype):
        if copy is False:
            raise ValueError(f"agrad.{op}: changing the dtype copies, but copy=False")
        arr, copied = xp.astype(arr, backend.resolve_dtype(xp, dtype)), True
    if copy and not copied:
        arr = backend.created(xp.asarray(arr, copy=True))
    return arr


def _is_array(e: Any) -> bool:
    return isinstance(e, Tensor) or (hasattr(e, "shape") and not backend.is_numpy_array(e))


def _holds_tensor(seq: Any) -> bool:
    """Whether a nested sequence holds Tensors (or arrays that only stack, not asarray, accepts)."""
    return builtins.any(_is_array(e) or (isinstance(e, (list, tuple)) and _holds_tensor(e)) for e in seq)


def _first_tensor(seq: Any) -> Tensor:
    for e in seq:
        if _is_array(e):
            return e if isinstance(e, Tensor) else Tensor(e)
        if isinstance(e, (list, tuple)) and _holds_tensor(e):
            return _first_tensor(e)
    raise AssertionError("no Tensor in the sequence")


def _stack_nested(x: Any, like: Tensor) -> Tensor:
    """A nested sequence of Tensors, arrays and numbers as one differentiable Tensor."""
    if isinstance(x, Tensor):
        return x
    if _is_array(x):
        backend.namespace_of((like.data, x), "asarray")  # same backend and device, or a clear error
        return Tensor(x)
    if isinstance(x, (list, tuple)):
        if not x:
            raise ValueError("agrad.asarray: an empty sequence beside Tensors has no shape to stack with")
        return stack([_stack_nested(e, like) for e in x])
    # A constant beside the Tensors: on their backend and device; Python numbers take their dtype.
    xp = backend.namespace_of((like.data,), "asarray")
    raw = x.data if isinstance(x, Tensor) else x
    if isinstance(raw, (bool, int, float)) and xp.isdtype(like.data.dtype, "real floating"):
        return Tensor(backend.create(xp, "asarray", raw, dtype=like.data.dtype, device=like.data.device))
    if hasattr(raw, "shape"):
        backend.namespace_of((like.data, raw), "asarray")  # same backend and device, or a clear error
        return Tensor(raw)
    return Tensor(backend.create(xp, "asarray", raw, device=like.data.device))


def _astype(x: Tensor, dtype: Any) -> Tensor:
    xp = backend.namespace_of((x.data,), "tensor")
    resolved = backend.resolve_dtype(xp, dtype)
    return x if x.data.dtype == resolved else astype(x, resolved)


def _factory(fn: str, shape: Any, dtype: Any, device: Any, requires_grad: bool, backend_name: str | None) -> Tensor:
    xp = backend.namespace_for_device(device, backend_name)
    dtype = dtypes.get_default_dtype() if dtype is None else dtype
    arr = backend.create(xp, fn, shape, dtype=backend.resolve_dtype(xp, dtype),
                         device=backend.resolve_device(xp, device))
    return Tensor(arr, requires_grad=requires_grad)


def zeros(shape: int | tuple[int, ...], *, dtype: Any = None, device: Any = None, requires_grad: bool = False,
          backend_name: str | None = None) -> Tensor:
    """A new tensor of zeros on the selected backend (or ``device``), in the default
    floating dtype unless ``dtype`` is given."""
    return _factory("zeros", shape, dtype, device, requires_grad, backend_name)


def ones(shape: int | tuple[int, ...], *, dtype: Any = None, device: Any = None, requires_grad: bool = False,
         backend_name: str | None = None) -> Tensor:
    """A new tensor of ones on the selected backend (or ``device``)."""
    return _factory("ones", shape, dtype, device, requires_grad, backend_name)


def empty(shape: int | tuple[int, ...], *, dtype: Any = None, device: Any = None, requires_grad: bool = False,
          backend_name: str | None = None) -> Tensor:
    """A new uninitialised tensor on the selected backend (or ``device``)."""
    return _factory("empty", shape, dtype, device, requires_grad, backend_name)


def full(shape: int | tuple[int, ...], fill_value: Any, *, dtype: Any = None, device: Any = None,
         requires_grad: bool = False) -> Tensor:
    """A new tensor filled with ``fill_value`` on the selected backend (a float fill gets
    the default floating dtype unless ``dtype`` is given)."""
    xp = backend.namespace_for_device(device)
    if dtype is None and isinstance(fill_value, float):
        dtype = dtypes.get_default_dtype()
    elif dtype is None and isinstance(fill_value, complex):
        dtype = dtypes.default_complex_dtype()
    arr = backend.create(xp, "full", shape, fill_value, dtype=backend.resolve_dtype(xp, dtype),
                  device=backend.resolve_device(xp, device))
    return Tensor(arr, requires_grad=requires_grad)


def arange(start: int | float, /, stop: int | float | None = None, step: int | float = 1, *, dtype: Any = None,
           device: Any = None) -> Tensor:
    """Evenly spaced values on the selected backend (floats in the default floating dtype)."""
    xp = backend.namespace_for_device(device)
    if dtype is None and builtins.any(isinstance(v, float) for v in (start, stop, step)):
        dtype = dtypes.get_default_dtype()
    return Tensor(backend.create(xp, "arange", start, stop, step, dtype=backend.resolve_dtype(xp, dtype),
                          device=backend.resolve_device(xp, device)))


def zeros_like(x: ArrayLike, /, *, dtype: Any = None, device: Any = None) -> Tensor:
    """Zeros with the shape, dtype and device of ``x`` (or the ``dtype`` / ``device`` given)."""
    return _like("zeros_like", x, dtype, device)


def ones_like(x: ArrayLike, /, *, dtype: Any = None, device: Any = None) -> Tensor:
    """Ones with the shape, dtype and device of ``x`` (or the ``dtype`` / ``device`` given)."""
    return _like("ones_like", x, dtype, device)


def empty_like(x: ArrayLike, /, *, dtype: Any = None, device: Any = None) -> Tensor:
    """An uninitialised array with the shape, dtype and device of ``x``."""
    return _like("empty_like", x, dtype, device)


def full_like(x: ArrayLike, /, fill_value: Any, *, dtype: Any = None, device: Any = None) -> Tensor:
    """``fill_value`` with the shape, dtype and device of ``x``."""
    return _like("full_like", x, dtype, device, fill_value)


def _like(fn: str, x: Any, dtype: Any, device: Any, *fill: Any) -> Tensor:
    x = _raw(x)
    xp = backend.namespace_of((x,), fn)
    out = getattr(xp, fn)(x, *fill, dtype=backend.resolve_dtype(xp, dtype))
    return Tensor(out if device is None else backend.to_device(out, device))


def eye(n_rows: int, n_cols: int | None = None, /, *, k: int = 0, dtype: Any = None, device: Any = None) -> Tensor:
    """Ones on the k-th diagonal, zeros elsewhere (the default floating dtype)."""
    xp = backend.namespace_for_device(device)
    dtype = dtypes.get_default_dtype() if dtype is None else dtype
    return Tensor(backend.create(xp, "eye", n_rows, n_cols, k=k, dtype=backend.resolve_dtype(xp, dtype),
                                 device=backend.resolve_device(xp, device)))


def linspace(start: float, stop: float, /, num: int, *, dtype: Any = None, device: Any = None,
             endpoint: bool = True) -> Tensor:
    """``num`` evenly spaced values from ``start`` to ``stop`` (the default floating dtype)."""
    xp = backend.namespace_for_device(device)
    dtype = dtypes.get_default_dtype() if dtype is None else dtype
    return Tensor(backend.create(xp, "linspace", start, stop, num, dtype=backend.resolve_dtype(xp, dtype),
                                 device=backend.resolve_device(xp, device), endpoint=endpoint))


def meshgrid(*arrays: ArrayLike, indexing: str = "xy") -> list[Tensor]:
    """Coordinate grids from 1-D arrays ('xy': Cartesian, 'ij': matrix indexing);
    differentiable (each grid is its array broadcast)."""
    if indexing not in ("xy", "ij"):
        raise ValueError(f"agrad.meshgrid: indexing must be 'xy' or 'ij', got {indexing!r}")
    n = len(arrays)
    sizes = [a.shape[0] for a in arrays]
    if indexing == "xy" and n >= 2:
        sizes[0], sizes[1] = sizes[1], sizes[0]
    out = []
    for i, a in enumerate(arrays):
        pos = (1 - i if i < 2 else i) if indexing == "xy" and n >= 2 else i
        shape = tuple(a.shape[0] if k == pos else 1 for k in range(n))
        out.append(broadcast_to(reshape(a, shape), tuple(sizes)))
    return out


def _triangle(name: str, x: ArrayLike, k: int) -> Tensor:
    raw = x._data if isinstance(x, Tensor) else x
    xp = backend.namespace_of((raw,), name)
    rows = xp.arange(raw.shape[-2], device=raw.device)
    cols = xp.arange(raw.shape[-1], device=raw.device)
    diff = xp.expand_dims(cols, axis=0) - xp.expand_dims(rows, axis=1)  # column - row
    keep = diff <= k if name == "tril" else diff >= k
    return where(Tensor(keep), x, 0.0)


def tril(x: ArrayLike, /, *, k: int = 0) -> Tensor:
    """The lower triangle of the last two axes (on and below the k-th diagonal), the rest zero."""
    return _triangle("tril", x, k)


def triu(x: ArrayLike, /, *, k: int = 0) -> Tensor:
    """The upper triangle of the last two axes (on and above the k-th diagonal), the rest zero."""
    return _triangle("triu", x, k)
