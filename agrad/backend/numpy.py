"""The NumPy backend: host arrays, the one agrad always has."""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

from .base import REGISTRY, ArrayNamespace, Backend, BackendError
from .replay import UfuncReplays


class NumpyBackend(UfuncReplays, Backend):
    """NumPy through array-api-compat, with the hot functions of the backward pass
    called without wrapper layers, and 0-d results kept arrays."""

    name = "numpy"
    modules = ("numpy",)
    mutable = True
    is_host = True
    scalar_types = (np.generic,)

    def build_namespace(self) -> ArrayNamespace:
        import array_api_compat.numpy as cnp

        ns = self.namespace_from(cnp, np.ndarray)
        # numpy 2's own functions follow the standard here and skip a compat wrapper
        # layer; these sit on every backward pass.
        ns.matmul = np.matmul
        ns.matrix_transpose = _matrix_transpose
        ns.ones_like = np.ones_like
        ns.zeros_like = np.zeros_like
        ns.arange = np.arange
        # NumPy reductions and ufuncs on 0-D input return numpy scalars, not arrays;
        # agrad keeps everything an ndarray so that `.device`, in-place ops etc. work.
        for red in ("prod", "var", "std"):
            ns.__dict__[red] = _array_result(getattr(cnp, red))
        # sum/max/min sit on every backward pass: call the ufunc reductions directly
        # (a third of the cost of np.sum's wrapper layers, same results for the standard's
        # float inputs). Integer sums keep np.sum's promotion.
        ns.sum = _fast_reduction(np.add, cnp.sum)
        ns.max = _fast_reduction(np.maximum, cnp.max)
        ns.min = _fast_reduction(np.minimum, cnp.min)
        ns.mean = _fast_mean(cnp.mean)
        ns.expand_dims = _fast_expand_dims(cnp.expand_dims)
        return ns

    def owns(self, x: Any) -> bool:
        return array_api_compat.is_numpy_array(x)

    # ------------------------------------------------------------------ devices, transfers

    def resolve_device(self, device: Any) -> Any:
        if device is None or not isinstance(device, str):
            return device
        if device.lower() == "cpu":
            return "cpu"
        raise self.no_device(device)

    def default_device(self) -> Any:
        return "cpu"

    def to_device(self, x: Any, device: Any) -> Any:
        """'cpu' is where it is; a device of a backend that takes host arrays (CuPy's
        'cuda...') gives that backend's array."""
        if device == "cpu" or (isinstance(device, str) and device.lower() == "cpu"):
            return x
        for other in REGISTRY.values():
            if other.receives_host_transfers and other.claims_device(device):
                return other.from_host(None, x, device)
        from . import describe  # (late: the package imports this module)

        raise BackendError(f"agrad.to_device: cannot move {describe(x)} to {device!r}")

    def from_host(self, xp: ArrayNamespace, a: Any, device: Any) -> Any:
        if device not in (None, "cpu"):
            raise BackendError(f"agrad: the numpy backend has no device {device!r}; use 'cpu'")
        return a

    def to_host(self, x: Any) -> Any:
        return np.array(x, copy=True)

    def shares_memory(self, a: Any, b: Any) -> bool:
        return isinstance(b, np.ndarray) and bool(np.may_share_memory(a, b))

    # ------------------------------------------------------------------ indexing

    def scatter_add_at(self, xp: ArrayNamespace, z: Any, g: Any, key: tuple) -> Any:
        np.add.at(z, key, g)
        return z

    # ------------------------------------------------------------------ compiled replays

    def library(self) -> Any:
        return np

    def ufunc_type(self) -> type:
        return np.ufunc

    def reduction_into(self, reduction: str, xp: ArrayNamespace, operand: Any, keywords: tuple,
                       result: Any) -> Any:
        # the ufunc reductions eager code calls, minus np.sum's wrapper layers
        of_floats = getattr(getattr(operand, "dtype", None), "kind", None) in ("f", "c")
        ufunc = _REDUCTION_UFUNCS.get(reduction)
        if ufunc is not None and of_floats and "axis" in keywords and set(keywords) <= {"axis", "keepdims"}:
            return ufunc.reduce  # (its own default axis is 0: only where the call names one)
        count = mean_count(operand, result) if reduction == "mean" and of_floats and result is not None else 0
        return _mean_into_counted(count) if count else _REDUCTIONS_INTO[reduction]

    def replay_view(self, fn: Any, xp: ArrayNamespace, operand: Any, keywords: dict) -> tuple[str, Any] | None:
        """A view that a compiled replay on NumPy writes inline rather than calling ``fn``:
        ``(template, index)`` with ``{x}`` standing for the operand and ``{index}`` for a
        constant (NumPy's ``matrix_transpose`` is the ``mT`` attribute, ``expand_dims`` with
        an int axis an index with ``None``); None otherwise. The traced call checked the
        operand's dimensions and the axis, and a replay's operands have the traced shapes,
        so the checks of the function's Python wrapper have nothing left to catch."""
        if getattr(operand, "ndim", None) is None:
            return None
        if fn is _matrix_transpose and not keywords and operand.ndim >= 2:
            return "{x}.mT", None
        if fn is xp.expand_dims and set(keywords) == {"axis"} and keywords["axis"].__class__ is int:
            n, axis = operand.ndim, keywords["axis"]
            if -n - 1 <= axis <= n:
                return "{x}[{index}]", (slice(None),) * (axis if axis >= 0 else axis + n + 1) + (None,)
        return None


# --------------------------------------------------------------------------- fast eager functions


def _fast_expand_dims(fallback):
    def expand_dims(x, /, *, axis=0):
        n = x.ndim
        if axis.__class__ is int and -n - 1 <= axis <= n:  # a view by indexing: a tenth of np.expand_dims
            return x[(slice(None),) * (axis if axis >= 0 else axis + n + 1) + (None,)]
        return fallback(x, axis=axis)  # its error for a bad axis

    expand_dims.__doc__ = fallback.__doc__
    return expand_dims


def _fast_mean(fallback):
    add = np.add.reduce
    ndarray = np.ndarray

    def mean(x, /, *, axis=None, keepdims=False):
        if x.dtype.kind not in "fc":
            out = fallback(x, axis=axis, keepdims=keepdims)  # raises the standard's error for ints
            return out if out.__class__ is ndarray else np.asarray(out)
        total = add(x, axis=axis, keepdims=keepdims)
        count = mean_count(x, total)
        out = total / count if count else total * np.nan
        return out if out.__class__ is ndarray else np.asarray(out)

    mean.__doc__ = fallback.__doc__
    return mean


def _fast_reduction(ufunc, fallback):
    reduce = ufunc.reduce
    ndarray = np.ndarray
    asarray = np.asarray

    def reduction(x, /, *, axis=None, dtype=None, keepdims=False):
        if dtype is not None:
            out = fallback(x, axis=axis, dtype=dtype, keepdims=keepdims)
        elif x.dtype.kind not in "fc":
            out = fallback(x, axis=axis, keepdims=keepdims)
        else:
            out = reduce(x, axis=axis, keepdims=keepdims)
        return out if out.__class__ is ndarray else asarray(out)

    reduction.__name__ = fallback.__name__
    reduction.__doc__ = fallback.__doc__
    return reduction


def _matrix_transpose(x):
    if x.ndim < 2:
        raise ValueError(f"matrix_transpose needs at least 2 dimensions, got shape {x.shape}")
    return x.mT


def _array_result(fn):
    def wrapped(*args, **kwargs):
        out = fn(*args, **kwargs)
        return out if out.__class__ is np.ndarray else np.asarray(out)

    wrapped.__name__ = fn.__name__
    wrapped.__doc__ = fn.__doc__
    return wrapped


def mean_count(x: Any, total: Any) -> int:
    """How many elements of ``x`` each element of its sum ``total`` adds up (0: a mean of
    nothing, nan as NumPy's)."""
    return x.size // max(total.size, 1) if x.size else 0


# --------------------------------------------------------------------------- reductions with out=


def _reduction_into(ufunc: Any, fallback: Any) -> Any:
    reduce = ufunc.reduce

    def into(x: Any, /, *, axis: Any = None, keepdims: bool = False, out: Any = None) -> Any:
        if x.dtype.kind in "fc":  # as _fast_reduction computes it, into ``out``
            return reduce(x, axis=axis, keepdims=keepdims, out=out)
        return fallback(x, axis=axis, keepdims=keepdims, out=out)

    return into


def _mean_into(x: Any, /, *, axis: Any = None, keepdims: bool = False, out: Any = None) -> Any:
    if x.dtype.kind not in "fc":
        return np.mean(x, axis=axis, keepdims=keepdims, out=out)
    if out.ndim == 0:  # a loss: NumPy's scalar arithmetic, as _fast_mean computes it, costs a
        total = np.add.reduce(x, axis=axis, keepdims=keepdims)  # third of two ufunc calls into out
        count = mean_count(x, total)
        out[...] = total / count if count else total * np.nan
        return out
    np.add.reduce(x, axis=axis, keepdims=keepdims, out=out)  # then divided as _fast_mean divides
    count = mean_count(x, out)
    return np.true_divide(out, count, out=out) if count else np.multiply(out, np.nan, out=out)


def _mean_into_counted(count: int) -> Any:
    """``_mean_into`` for a float array whose mean adds up ``count`` (> 0) elements each."""
    add = np.add.reduce

    def mean_into(x: Any, /, *, axis: Any = None, keepdims: bool = False, out: Any = None) -> Any:
        if out.ndim == 0:
            out[...] = add(x, axis=axis, keepdims=keepdims) / count  # as _fast_mean: scalar arithmetic
            return out
        add(x, axis=axis, keepdims=keepdims, out=out)
        return np.true_divide(out, count, out=out)

    return mean_into


_REDUCTION_UFUNCS = {"sum": np.add, "max": np.maximum, "min": np.minimum}
_REDUCTIONS_INTO = {name: _reduction_into(ufunc, getattr(np, name)) for name, ufunc in _REDUCTION_UFUNCS.items()}
_REDUCTIONS_INTO["mean"] = _mean_into
