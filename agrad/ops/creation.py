"""Creating arrays on the selected backend, and operations without a gradient."""

from __future__ import annotations

import builtins
from typing import Any

from .. import backend
from ..tensor import Tensor


def _raw(x: Any) -> Any:
    return x.data if isinstance(x, Tensor) else x


def tensor(data: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """A new Tensor from a list, scalar or array.

    Python data and NumPy arrays go to the selected backend (``agrad.set_backend``);
    CuPy and array-api-strict arrays keep theirs. ``dtype`` accepts 'float32' or a
    backend dtype. A (nested) list or tuple holding Tensors is stacked with
    :func:`agrad.stack`, so derivatives flow through it in both modes.
    """
    if isinstance(data, (list, tuple)) and _holds_tensor(data):
        if requires_grad:
            raise ValueError(
                "agrad.tensor: requires_grad=True makes a new leaf, but the data holds Tensors whose history "
                "would be cut; leave requires_grad out to get a differentiable stack of them, or detach them first"
            )
        out = _stack_nested(data, _first_tensor(data))
        if device is not None:
            from .conversions import to_device

            out = to_device(out, device)
        return out if dtype is None else _astype(out, dtype)
    data = _raw(data)
    if backend.is_numpy_array(data) and backend.get_backend() != "numpy":
        arr = backend.from_numpy(data, device=device)  # host data onto the selected backend
    elif hasattr(data, "shape") and backend.namespace_of((data,), "tensor") is not None:
        arr = data if device is None else backend.to_device(data, device)
    else:
        xp = backend.namespace_for_device(device)
        arr = _create(xp, "asarray", data, dtype=backend.resolve_dtype(xp, dtype),
                      device=backend.resolve_device(xp, device))
    xp = backend.namespace_of((arr,), "tensor")
    if dtype is not None and arr.dtype != backend.resolve_dtype(xp, dtype):
        arr = xp.astype(arr, backend.resolve_dtype(xp, dtype))
    return Tensor(arr, requires_grad=requires_grad)


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
    from .shapes import stack

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
    if isinstance(raw, (bool, int, float)) and xp.isdtype(like.dtype, "real floating"):
        return Tensor(_create(xp, "asarray", raw, dtype=like.dtype, device=like.data.device))
    if hasattr(raw, "shape"):
        backend.namespace_of((like.data, raw), "asarray")  # same backend and device, or a clear error
        return Tensor(raw)
    return Tensor(_create(xp, "asarray", raw, device=like.data.device))


def _astype(x: Tensor, dtype: Any) -> Tensor:
    from .conversions import astype

    xp = backend.namespace_of((x.data,), "tensor")
    resolved = backend.resolve_dtype(xp, dtype)
    return x if x.dtype == resolved else astype(x, resolved)


def _create(xp: Any, fn: str, *args: Any, device: Any = None, **kwargs: Any) -> Any:
    if xp.name == "cupy":
        # array-api-compat's cupy wrapper ignores device= for creation: enter the device.
        dev = device if device is not None else backend.default_device(xp)
        with dev:
            return getattr(xp, fn)(*args, **kwargs)
    return getattr(xp, fn)(*args, device=device, **kwargs)


def _factory(fn: str, doc: str):
    def make(shape, dtype: Any = "float64", device: Any = None, requires_grad: bool = False,
             backend_name: str | None = None) -> Tensor:
        xp = backend.namespace_for_device(device, backend_name)
        arr = _create(xp, fn, shape, dtype=backend.resolve_dtype(xp, dtype), device=backend.resolve_device(xp, device))
        return Tensor(arr, requires_grad=requires_grad)

    make.__name__ = fn
    make.__doc__ = doc
    return make


zeros = _factory("zeros", "A new tensor of zeros on the selected backend.")
ones = _factory("ones", "A new tensor of ones on the selected backend.")
empty = _factory("empty", "A new uninitialised tensor on the selected backend.")


def full(shape, fill_value, dtype: Any = "float64", device: Any = None, requires_grad: bool = False) -> Tensor:
    """A new tensor filled with ``fill_value`` on the selected backend."""
    xp = backend.namespace_for_device(device)
    arr = _create(xp, "full", shape, fill_value, dtype=backend.resolve_dtype(xp, dtype),
                  device=backend.resolve_device(xp, device))
    return Tensor(arr, requires_grad=requires_grad)


def arange(start, stop=None, step=1, dtype: Any = None, device: Any = None) -> Tensor:
    """Evenly spaced values on the selected backend."""
    xp = backend.namespace_for_device(device)
    return Tensor(_create(xp, "arange", start, stop, step, dtype=backend.resolve_dtype(xp, dtype),
                          device=backend.resolve_device(xp, device)))


def _like(fn: str, doc: str):
    def make(x: Any, dtype: Any = None) -> Tensor:
        x = _raw(x)
        xp = backend.namespace_of((x,), fn)
        return Tensor(getattr(xp, fn)(x, dtype=backend.resolve_dtype(xp, dtype)))

    make.__name__ = fn
    make.__doc__ = doc
    return make


zeros_like = _like("zeros_like", "Zeros with the shape, dtype and device of ``x``.")
ones_like = _like("ones_like", "Ones with the shape, dtype and device of ``x``.")


def full_like(x: Any, fill_value: Any, dtype: Any = None) -> Tensor:
    """``fill_value`` with the shape, dtype and device of ``x``."""
    x = _raw(x)
    xp = backend.namespace_of((x,), "full_like")
    return Tensor(xp.full_like(x, fill_value, dtype=backend.resolve_dtype(xp, dtype)))


def asarray(x: Any, dtype: Any = None, device: Any = None, copy: bool | None = None) -> Tensor:
    """Like ``tensor`` but without a gradient flag; Tensors pass through unchanged, and a
    (nested) sequence holding Tensors becomes their differentiable stack."""
    if isinstance(x, Tensor) and dtype is None and device is None and not copy:
        return x
    return tensor(x, dtype=dtype, device=device)


# --------------------------------------------------------------------------- no gradient


def _nondiff(name: str, doc: str):
    """Wrap an ``xp`` function whose result has no gradient (comparisons, sign, argmax)."""

    def op(*args: Any, **kwargs: Any) -> Tensor:
        raw = [_raw(a) for a in args]
        xp = backend.namespace_of(raw, name) or backend.creation_namespace()
        out = getattr(xp, name)(*raw, **kwargs)
        if out.__class__ is not xp.array_type:
            out = xp.asarray(out)
        return Tensor(out)

    op.__name__ = name
    op.__doc__ = doc
    return op


equal = _nondiff("equal", "x1 == x2 (no gradient).")
not_equal = _nondiff("not_equal", "x1 != x2 (no gradient).")
less = _nondiff("less", "x1 < x2 (no gradient).")
less_equal = _nondiff("less_equal", "x1 <= x2 (no gradient).")
greater = _nondiff("greater", "x1 > x2 (no gradient).")
greater_equal = _nondiff("greater_equal", "x1 >= x2 (no gradient).")
logical_and = _nondiff("logical_and", "Elementwise and (no gradient).")
logical_or = _nondiff("logical_or", "Elementwise or (no gradient).")
logical_not = _nondiff("logical_not", "Elementwise not (no gradient).")
sign = _nondiff("sign", "Elementwise sign (its derivative is zero almost everywhere).")
floor = _nondiff("floor", "Round down (no gradient).")
ceil = _nondiff("ceil", "Round up (no gradient).")
round = _nondiff("round", "Round to nearest (no gradient).")
isfinite = _nondiff("isfinite", "Elementwise isfinite (no gradient).")
isnan = _nondiff("isnan", "Elementwise isnan (no gradient).")
argmax = _nondiff("argmax", "Index of the maximum along ``axis`` (no gradient).")
argmin = _nondiff("argmin", "Index of the minimum along ``axis`` (no gradient).")
all = _nondiff("all", "Whether all elements are true (no gradient).")
any = _nondiff("any", "Whether any element is true (no gradient).")
