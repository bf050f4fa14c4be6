"""The CuPy backend: CUDA arrays, with CUDA graphs for agrad.compile's replays.

This module imports without CuPy (so that agrad imports on any machine): CuPy is
imported where a method needs it, and :meth:`CupyBackend.status` says why it cannot
be used here.
"""

from __future__ import annotations

from typing import Any, Callable

import array_api_compat

from . import cublas, cuda_graph
from .base import ArrayNamespace, Backend, BackendError
from .replay import UfuncReplays, copied_into


class CupyBackend(UfuncReplays, Backend):
    """CuPy through array-api-compat; devices are 'cuda', 'cuda:N' (or cupy.cuda.Device)."""

    name = "cupy"
    modules = ("cupy",)
    multi_device = True
    mutable = True
    # array-api-compat's cupy wrapper ignores device= for creation: enter the device.
    creation_enters_device = True
    has_cpu = False
    receives_host_transfers = True
    supports_cuda_graphs = True

    def status(self) -> tuple[bool, str]:
        """Whether CuPy imports and sees a CUDA device; if not, why not."""
        try:
            import cupy
        except Exception as exc:  # a broken CuPy install raises more than ImportError
            return False, (
                f"CuPy is not installed or does not import ({type(exc).__name__}: {exc}). "
                f"Install it with `pip install 'agrad[cuda12]'` or `pip install 'agrad[cuda13]'` "
                f"(matching your CUDA driver)."
            )
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:
            return False, (
                f"CuPy is installed but no CUDA device or driver is usable ({type(exc).__name__}: {exc}). "
                f"Run on a machine with an NVIDIA GPU and driver, or use the 'numpy' backend."
            )
        if count < 1:
            return False, "CuPy is installed but no CUDA device is present; use the 'numpy' backend."
        return True, ""

    def build_namespace(self) -> ArrayNamespace:
        import array_api_compat.cupy as ccp
        import cupy

        return self.namespace_from(ccp, cupy.ndarray)

    def owns(self, x: Any) -> bool:
        return array_api_compat.is_cupy_array(x)

    # ------------------------------------------------------------------ devices

    def claims_device(self, device: Any) -> bool:
        if isinstance(device, str):
            return device.lower().startswith(("cuda", "gpu"))
        return _is_cupy_device(device)

    def resolve_device(self, device: Any) -> Any:
        if device is None or not isinstance(device, str):
            return device
        name = device.lower()
        import cupy

        if name in ("cuda", "gpu"):
            return cupy.cuda.Device()
        if name.startswith("cuda:") and name[5:].isdigit():
            n = int(name[5:])
            count = cupy.cuda.runtime.getDeviceCount()
            if n >= count:
                raise BackendError(f"agrad: device {device!r} does not exist; this machine has {count} CUDA device(s)")
            return cupy.cuda.Device(n)
        raise self.no_device(device)

    def default_device(self) -> Any:
        import cupy

        return cupy.cuda.Device()

    def device_name(self, x: Any) -> str:
        if array_api_compat.is_cupy_array(x):
            return f"cuda:{array_api_compat.device(x).id}"
        return super().device_name(x)

    # ------------------------------------------------------------------ transfers

    def to_device(self, x: Any, device: Any) -> Any:
        """'cpu' gives a NumPy array; another CUDA device an explicit peer copy."""
        dev_str = device.lower() if isinstance(device, str) else None
        if dev_str == "cpu" or device == "cpu":
            return x.get()
        target = self.resolve_device(device)
        if not _is_cupy_device(target):
            from . import describe  # (late: the package imports this module)

            raise BackendError(f"agrad.to_device: cannot move {describe(x)} to {device!r}")
        return _cupy_to_cupy(x, target)

    def from_host(self, xp: ArrayNamespace | None, a: Any, device: Any) -> Any:
        """``a`` (a NumPy array) copied onto ``device`` (default: the current CUDA device)."""
        if device is None:
            device = "cuda"
        ok, why = self.status()
        if not ok:
            raise BackendError(f"agrad.to_device: cannot move data to {device!r}: {why}")
        import cupy

        target = self.resolve_device(device) if isinstance(device, str) else device
        with target:
            return cupy.asarray(a)

    def to_host(self, x: Any) -> Any:
        return x.get()

    def shares_memory(self, a: Any, b: Any) -> bool:
        import cupy

        return isinstance(b, cupy.ndarray) and bool(cupy.may_share_memory(a, b))

    # ------------------------------------------------------------------ indexing

    def scatter_add_at(self, xp: ArrayNamespace, z: Any, g: Any, key: tuple) -> Any:
        if g.dtype == xp.float32:
            import cupyx

            cupyx.scatter_add(z, key, g)  # atomicAdd: float32 only among floats (CuPy docs)
            return z
        return _bincount_scatter_add(xp, z, g, key)

    # ------------------------------------------------------------------ compiled replays

    def library(self) -> Any:
        import cupy

        return cupy

    def ufunc_type(self) -> type:
        import cupy

        return cupy.ufunc

    def special_out_function(self, fn: Any) -> Any:
        if fn is cublas._matmul_by_reduction or fn is cublas._matmul_by_cublas:
            return fn
        return None

    def reduction_into(self, reduction: str, xp: ArrayNamespace, operand: Any, keywords: tuple,
                       result: Any) -> Any:
        if reduction in ("max", "min"):  # CuPy 14's min/max with out= fail in its CUB path
            return copied_into(getattr(self.library(), reduction))
        return getattr(self.library(), reduction)

    def capturable(self, fn: Any, xp: ArrayNamespace, operands: list) -> Any:
        """A function computing what ``fn`` computes on ``operands`` that a CUDA graph capture
        can record, where ``fn`` itself cannot be; None where ``fn`` is fine as it is.

        CuPy refuses every cuBLAS call during a stream capture (its stream setter checks),
        though cuBLAS itself supports capture. So a float32/float64 matrix product there calls
        cuBLAS's gemm directly, on a handle of agrad's own (``_CublasGemm``); other matrix
        products are a reduction kernel over the broadcast product (the same sums in another
        order: results agree with cuBLAS to rounding, not bit for bit)."""
        if fn is not getattr(xp, "matmul", None):
            return None
        if len(operands) != 2 or operands[0].dtype != operands[1].dtype:
            return None  # (mixed dtypes keep CuPy's matmul: such a graph falls back)
        if all(1 <= o.ndim <= 2 for o in operands) and str(operands[0].dtype) in cublas._CublasGemm.ROUTINES \
                and cublas._CublasGemm.get() is not None:
            return cublas._matmul_by_cublas
        if any(o.ndim < 2 for o in operands):
            return None  # (a vector product without cuBLAS has no substitute: such a graph falls back)
        return cublas._matmul_by_reduction

    def graph_capturer(self) -> Callable[[Callable[[], Any], list], tuple[Callable[[], None], Any]] | None:
        return cuda_graph._capture_cuda_graph


def _is_cupy_device(device: Any) -> bool:
    return type(device).__module__.startswith("cupy")


def _cupy_to_cupy(x: Any, target: Any) -> Any:
    import cupy

    if x.device.id == target.id:
        return x
    x = cupy.ascontiguousarray(x)
    with target:
        out = cupy.empty_like(x)
    # An explicit peer copy: cupy.asarray under another device would keep x as is.
    out.data.copy_from_device(x.data, x.nbytes)
    return out


def _bincount_scatter_add(xp: ArrayNamespace, z: Any, g: Any, key: tuple) -> Any:
    """Scatter-add as a weighted bincount over flat positions (float64 accumulation),
    for CuPy dtypes its atomicAdd-based scatter_add does not support."""
    import cupy

    size = z.size
    with z.device:
        positions = xp.reshape(xp.arange(size), z.shape)[key]
    flat_pos = xp.reshape(positions, (-1,))
    flat_g = xp.reshape(xp.broadcast_to(g, positions.shape), (-1,))
    total = cupy.bincount(flat_pos, weights=flat_g, minlength=size)
    return xp.reshape(xp.astype(total, z.dtype), z.shape)
