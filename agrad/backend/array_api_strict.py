"""The array-api-strict backend: the standard and nothing more, with several devices.

It is what keeps agrad honest: everything here that NumPy does not need is a place
where the standard is narrower than NumPy (integer-array indexing, ``__setitem__``).
"""

from __future__ import annotations

from typing import Any, Callable

from .base import ArrayNamespace, Backend, is_index_array


class ArrayApiStrictBackend(Backend):
    """array_api_strict; devices 'cpu' (CPU_DEVICE), 'device1', 'device2' (and 'no_float64')."""

    name = "array_api_strict"
    modules = ("array_api_strict",)
    multi_device = True
    narrow_setitem = True

    def status(self) -> tuple[bool, str]:
        try:
            import array_api_strict  # noqa: F401
        except ImportError:
            return False, "array-api-strict is not installed: `pip install array-api-strict` (or agrad[test])."
        return True, ""

    def build_namespace(self) -> ArrayNamespace:
        import array_api_strict

        return self.namespace_from(array_api_strict, type(array_api_strict.asarray(0.0)))

    def owns(self, x: Any) -> bool:
        import array_api_compat

        get_ns = getattr(x, "__array_namespace__", None)
        return get_ns is not None and array_api_compat.is_array_api_strict_namespace(get_ns())

    # ------------------------------------------------------------------ devices

    def claims_device(self, device: Any) -> bool:
        if isinstance(device, str):
            return device.lower() in ("device1", "device2", "cpu_device")
        return type(device).__module__.startswith(self.modules)

    def resolve_device(self, device: Any) -> Any:
        if device is None or not isinstance(device, str):
            return device
        import array_api_strict

        name = device.lower()
        if name in ("cpu", "cpu_device"):
            return array_api_strict.Device("CPU_DEVICE")
        if device in ("device1", "device2", "no_float64"):
            return array_api_strict.Device(device)
        raise self.no_device(device)

    # ------------------------------------------------------------------ memory

    def memory(self, x: Any) -> Any:
        return x._array  # array-api-strict wraps a NumPy array, and its views are NumPy's views

    # ------------------------------------------------------------------ indexing

    def make_getitem(self, xp: ArrayNamespace) -> Callable[[Any, tuple], Any]:
        """``getitem(x, key)``: ``x[key]``, also where the standard is narrower than NumPy.

        The standard (and array-api-strict) only allows an integer index array when every
        other index is an array or an int; ``x[idx, ...]`` / ``x[:, idx]`` are spelled
        with ``take`` there.
        """

        def getitem(x: Any, key: tuple) -> Any:
            arrays = [i for i, k in enumerate(key) if is_index_array(k)]
            if len(arrays) != 1:
                return x[key]
            pos = arrays[0]
            rest = [k for i, k in enumerate(key) if i != pos]
            if any(not (k is Ellipsis or k == slice(None)) for k in rest) or sum(k is Ellipsis for k in key[:pos]):
                return x[key]
            idx = key[pos]
            out = xp.take(x, xp.reshape(idx, (-1,)), axis=pos)
            return xp.reshape(out, tuple(x.shape[:pos]) + tuple(idx.shape) + tuple(x.shape[pos + 1:]))

        return getitem

    def make_index_update(self, xp: ArrayNamespace) -> Callable[[Any, Any, tuple], Any]:
        """As the base's, but array-api-strict refuses integer arrays in ``__setitem__``:
        find each element's position among the sorted ones written, and select."""

        def index_update(x: Any, value: Any, key: tuple) -> Any:
            out = xp.asarray(x, copy=True)
            if any(is_index_array(k) for k in key):
                (positions,) = key
                n = positions.shape[0]
                if n == 0:
                    return out
                cells = xp.arange(out.shape[0], device=out.device)
                at = xp.clip(xp.searchsorted(positions, cells), max=n - 1)
                hit = xp.take(positions, at) == cells
                if hasattr(value, "shape") and value.ndim:
                    value = xp.take(value, at)
                return xp.where(hit, value, out)
            out[key] = value
            return out

        return index_update
