"""The standard's data-type functions (isdtype, result_type, can_cast, finfo, iinfo),
on agrad dtypes, Tensors and backend arrays alike; and real / imag / conj, which agrad
supports for real inputs only until complex numbers arrive."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import backend, dtypes
from ..dtypes import DType
from ..tape import is_traced
from ..tensor import ArrayLike, Tensor
from .elementwise import positive

_KIND_GROUPS = {
    "integral": ("signed integer", "unsigned integer"),
    "numeric": ("signed integer", "unsigned integer", "real floating", "complex floating"),
}


def _dtype_of(x: Any) -> DType:
    if isinstance(x, Tensor):
        return x.dtype
    if hasattr(x, "dtype") and hasattr(x, "shape"):
        return dtypes.as_dtype(x.dtype)
    return dtypes.as_dtype(x)


def isdtype(dtype: Any, kind: Any) -> bool:
    """Whether ``dtype`` is of ``kind``: a dtype, or one of 'bool', 'signed integer',
    'unsigned integer', 'integral', 'real floating', 'complex floating', 'numeric', or a
    tuple of these."""
    d = dtypes.as_dtype(dtype)
    if isinstance(kind, tuple):
        return any(isdtype(d, k) for k in kind)
    if isinstance(kind, str) and kind in (*_KIND_GROUPS, "bool", "signed integer", "unsigned integer",
                                           "real floating", "complex floating"):
        return d.kind in _KIND_GROUPS.get(kind, (kind,))
    return d == dtypes.as_dtype(kind)


def _host(d: DType) -> Any:
    return backend.resolve_dtype(backend.host_namespace(), d)


def result_type(*arrays_and_dtypes: Any) -> DType:
    """The dtype the standard's promotion gives these arrays, dtypes and Python scalars."""
    hp = backend.host_namespace()
    args = [a if isinstance(a, (bool, int, float, complex)) else _host(_dtype_of(a)) for a in arrays_and_dtypes]
    if not any(not isinstance(a, (bool, int, float, complex)) for a in args):
        raise TypeError("agrad.result_type: needs at least one array or dtype")
    return dtypes.as_dtype(hp.result_type(*args))


def can_cast(from_: Any, to: Any, /) -> bool:
    """Whether ``from_`` (a dtype or an array) casts to ``to`` without loss, as the standard's
    promotion allows."""
    return bool(backend.host_namespace().can_cast(_host(_dtype_of(from_)), _host(dtypes.as_dtype(to))))


@dataclass(frozen=True)
class finfo_object:
    """Limits of a floating dtype."""

    bits: int
    eps: float
    max: float
    min: float
    smallest_normal: float
    dtype: DType


@dataclass(frozen=True)
class iinfo_object:
    """Limits of an integer dtype."""

    bits: int
    max: int
    min: int
    dtype: DType


def finfo(type: Any, /) -> finfo_object:
    """bits, eps, max, min and smallest_normal of a floating dtype (or an array's)."""
    d = _dtype_of(type)
    f = backend.host_namespace().finfo(_host(d))
    # (a complex dtype's limits are those of its real components, and say so)
    return finfo_object(int(f.bits), float(f.eps), float(f.max), float(f.min), float(f.smallest_normal),
                        dtypes.as_dtype(f.dtype))


def iinfo(type: Any, /) -> iinfo_object:
    """bits, max and min of an integer dtype (or an array's)."""
    d = _dtype_of(type)
    i = backend.host_namespace().iinfo(_host(d))
    return iinfo_object(int(i.bits), int(i.max), int(i.min), d)


def _complex_part(x: ArrayLike, op: str) -> Any:
    """The raw result of real/imag/conj for a complex ``x`` nobody differentiates; None for
    real input. Derivatives of complex functions are not supported yet: a clear error."""
    if not isdtype(_dtype_of(x), "complex floating"):
        return None

    if is_traced(x):
        raise TypeError(f"agrad.{op}: derivatives of complex numbers are not supported yet (agrad differentiates "
                        f"real arrays)")
    raw = x._data if isinstance(x, Tensor) else x
    return getattr(backend.namespace_of((raw,), op), op)(raw)


def real(x: ArrayLike, /) -> Tensor:
    """The real part (``x`` itself for real input). Complex input is computed, but not
    differentiated (a clear error if it is traced)."""
    out = _complex_part(x, "real")
    return positive(x) if out is None else Tensor(out)


def imag(x: ArrayLike, /) -> Tensor:
    """The imaginary part (zeros for real input); complex input as for :func:`real`."""
    out = _complex_part(x, "imag")
    if out is not None:
        return Tensor(out)
    return x * 0.0 if isinstance(x, Tensor) else Tensor(x) * 0.0


def conj(x: ArrayLike, /) -> Tensor:
    """The complex conjugate (``x`` itself for real input); complex input as for :func:`real`."""
    out = _complex_part(x, "conj")
    return positive(x) if out is None else Tensor(out)


def broadcast_shapes(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """The shape that arrays of these shapes broadcast to (a ValueError if they do not)."""
    out: tuple[int, ...] = ()
    for s in shapes:
        s = tuple(s)
        n = max(len(out), len(s))
        a, b = (1,) * (n - len(out)) + out, (1,) * (n - len(s)) + s
        if any(p != q and 1 not in (p, q) for p, q in zip(a, b)):
            raise ValueError(f"agrad.broadcast_shapes: shapes {out} and {s} do not broadcast")
        out = tuple(q if p == 1 else p for p, q in zip(a, b))
    return out
