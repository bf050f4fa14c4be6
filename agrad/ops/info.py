"""``__array_namespace_info__``: what agrad's namespace offers, as the standard asks."""

from __future__ import annotations

from typing import Any

from .. import backend, dtypes
from .data_types import isdtype


class Info:
    """Capabilities, devices and dtypes of agrad's namespace (on the selected backend)."""

    def capabilities(self) -> dict[str, Any]:
        return {"boolean indexing": True, "data-dependent shapes": True, "max dimensions": None}

    def default_device(self) -> Any:
        return backend.default_device(backend.creation_namespace())

    def devices(self) -> list[Any]:
        xp = backend.creation_namespace()
        info = getattr(xp, "__array_namespace_info__", None)
        if info is not None:
            try:
                return list(info().devices())
            except Exception:  # a backend whose info object lacks devices()
                pass
        return [self.default_device()]

    def default_dtypes(self, *, device: Any = None) -> dict[str, dtypes.DType]:
        return {"real floating": dtypes.get_default_dtype(), "complex floating": dtypes.default_complex_dtype(),
                "integral": dtypes.ALL["int64"], "indexing": dtypes.ALL["int64"]}

    def dtypes(self, *, device: Any = None, kind: Any = None) -> dict[str, dtypes.DType]:
        names = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32",
                 "float64", "complex64", "complex128"]
        out = {n: dtypes.ALL[n] for n in names}
        if kind is None:
            return out
        return {n: d for n, d in out.items() if isdtype(d, kind)}


def __array_namespace_info__() -> Info:
    return Info()
