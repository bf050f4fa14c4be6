"""agrad's dtypes: one set of names for every backend, and the default floating dtype.

``agrad.float32`` compares equal to NumPy's, CuPy's and array-api-strict's float32
(and to the string "float32"); ``Tensor.dtype`` is an agrad dtype whatever the backend,
so ``t.dtype == agrad.float32`` means the same everywhere. Every ``dtype=`` argument
accepts an agrad dtype, a backend dtype or a name. The default floating dtype (float32,
as in PyTorch and JAX) is what Python floats become: in ``agrad.tensor([0.5])``,
``zeros``, ``ones``, layers and initialisers alike; Python complex numbers become its
complex counterpart (complex64 beside float32). Arrays keep their own dtype.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DType", "get_default_dtype", "set_default_dtype", "dtype_name", "is_floating"]


class DType:
    """A dtype named as in the array API standard ('float32', 'int64', 'bool', ...)."""

    __slots__ = ("name", "kind")

    def __init__(self, name: str, kind: str) -> None:
        self.name = name
        self.kind = kind  # 'bool', 'signed integer', 'unsigned integer', 'real floating', 'complex floating'

    def __eq__(self, other: object) -> bool:
        try:
            return dtype_name(other) == self.name
        except TypeError:
            return NotImplemented

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f"agrad.{self.name}"

    __str__ = __repr__

    def __reduce__(self) -> tuple:
        return (_by_name, (self.name,))


def dtype_name(dtype: Any) -> str:
    """'float32' for agrad.float32, numpy.float32, np.dtype('float32'), array_api_strict.float32 or 'float32'."""
    if isinstance(dtype, DType):
        return dtype.name
    if isinstance(dtype, str):
        return "bool" if dtype == "bool_" else dtype
    if isinstance(dtype, type):  # numpy scalar types: numpy.float32
        name = dtype.__name__
    else:
        name = getattr(dtype, "name", None)
        if name is None:
            from . import backend  # (late: the backend imports this module)

            if not type(dtype).__module__.startswith(backend.dtype_modules()):
                raise TypeError(f"agrad: {dtype!r} is not a dtype")
            name = str(dtype)
    name = str(name).replace("array_api_strict.", "")
    return "bool" if name == "bool_" else name


_KINDS = {
    "bool": "bool",
    "int8": "signed integer", "int16": "signed integer", "int32": "signed integer", "int64": "signed integer",
    "uint8": "unsigned integer", "uint16": "unsigned integer", "uint32": "unsigned integer",
    "uint64": "unsigned integer",
    "float16": "real floating", "float32": "real floating", "float64": "real floating",
    "complex64": "complex floating", "complex128": "complex floating",
}
ALL = {name: DType(name, kind) for name, kind in _KINDS.items()}


def _by_name(name: str) -> DType:
    return ALL[name]


def as_dtype(dtype: Any) -> DType:
    """The agrad dtype for any spelling of one (a clear TypeError for anything else)."""
    name = dtype_name(dtype)
    if name not in ALL:
        raise TypeError(f"agrad: unknown dtype {dtype!r}; use one of {', '.join(ALL)}")
    return ALL[name]


def is_floating(dtype: Any) -> bool:
    return as_dtype(dtype).kind in ("real floating", "complex floating")


_default = ALL["float32"]


def get_default_dtype() -> DType:
    """The floating dtype that Python floats and new floating arrays get (float32 unless set)."""
    return _default


def default_complex_dtype() -> DType:
    """The complex dtype that Python complex numbers get: the default floating dtype's
    complex counterpart (complex64 beside float32), as the standard asks and as PyTorch does."""
    return ALL["complex64"] if _default.name == "float32" else ALL["complex128"]


def set_default_dtype(dtype: Any) -> None:
    """Set the default floating dtype: agrad.float32 (the default) or agrad.float64."""
    global _default
    d = as_dtype(dtype)
    if d.name not in ("float32", "float64"):
        raise ValueError(f"agrad.set_default_dtype: the default dtype must be float32 or float64, got {d.name}")
    _default = d
