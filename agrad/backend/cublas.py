"""cuBLAS through ctypes, for matrix products inside a CUDA graph capture.

CuPy refuses every cuBLAS call during a stream capture (its stream setter checks),
though cuBLAS itself supports capture. So a float32/float64 matrix product there calls
cuBLAS's gemm directly, on a handle of agrad's own (``_CublasGemm``); other matrix
products are a reduction kernel over the broadcast product (``_matmul_by_reduction``).

Imports without CuPy: CuPy is imported where a function needs it.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any


class _CublasGemm:
    """cuBLAS's ``cublasSgemm_v2`` / ``cublasDgemm_v2`` called through ctypes on handles of
    agrad's own (one per device and thread), with a workspace of its own per stream (and
    so per captured graph). ``get()`` is None where the library cannot be found (then
    matrix products in a graph use the reduction kernel)."""

    ROUTINES = {"float32": ("cublasSgemm_v2", ctypes.c_float), "float64": ("cublasDgemm_v2", ctypes.c_double)}
    WORKSPACE_BYTES = 32 << 20  # what cuBLAS asks for on Hopper; more than it needs elsewhere
    _instance: list = []

    def __init__(self, lib: Any) -> None:
        self.lib, self.path = lib, ""
        self.handles: dict[tuple[int, int], ctypes.c_void_p] = {}
        pointer, integer = ctypes.c_void_p, ctypes.c_int
        for name, _ in self.ROUTINES.values():
            routine = getattr(lib, name)
            routine.argtypes = [pointer, integer, integer, integer, integer, integer, pointer, pointer, integer,
                                pointer, integer, pointer, pointer, integer]
            routine.restype = integer
        lib.cublasCreate_v2.argtypes = [ctypes.POINTER(pointer)]
        lib.cublasSetStream_v2.argtypes = [pointer, pointer]
        lib.cublasSetWorkspace_v2.argtypes = [pointer, pointer, ctypes.c_size_t]
        for name in ("cublasCreate_v2", "cublasSetStream_v2", "cublasSetWorkspace_v2"):
            getattr(lib, name).restype = integer

    @classmethod
    def get(cls) -> "_CublasGemm | None":
        if not cls._instance:
            cls._instance.append(cls._load())
        return cls._instance[0]

    @classmethod
    def _load(cls) -> "_CublasGemm | None":
        """The cuBLAS library CuPy itself calls: among the copies loaded in this process (a
        PyTorch import brings its own), the one whose version is the one CuPy reports."""
        import cupy
        from cupy_backends.cuda.libs import cublas as cupy_cublas

        try:
            wanted = cupy_cublas.getVersion(cupy.cuda.device.get_cublas_handle())  # (loads it too)
            with open("/proc/self/maps") as maps:
                paths = {line.split(None, 5)[-1].strip() for line in maps if "libcublas.so" in line}
        except (OSError, AttributeError, RuntimeError):
            return None
        for path in sorted(paths):
            if "libcublasLt" in path:
                continue
            try:
                lib = ctypes.CDLL(path)
                lib.cublasGetProperty.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
                parts = [ctypes.c_int() for _ in range(3)]  # MAJOR_VERSION, MINOR_VERSION, PATCH_LEVEL
                if any(lib.cublasGetProperty(i, ctypes.byref(v)) != 0 for i, v in enumerate(parts)):
                    continue
                major, minor, patch = (v.value for v in parts)
                if major * 10000 + minor * 100 + patch == wanted:  # cuBLAS's own version encoding
                    found = cls(lib)
                    found.path = path
                    return found
            except (OSError, AttributeError):
                continue
        return None

    def _check(self, status: int, what: str) -> None:
        if status != 0:
            raise RuntimeError(f"agrad: cuBLAS {what} failed with status {status}")

    def handle(self) -> ctypes.c_void_p:
        """This device and thread's handle, bound to the current stream and that stream's
        workspace (setting a stream resets cuBLAS's workspace to its default pool).

        One workspace per stream: two streams' products may run at once and must not share
        scratch memory. A capture's stream is its graph's own, so each graph gets its own
        workspace (from the graph's memory pool), which ``_capture_cuda_graph`` hands to the
        graph to keep: launches of two graphs on two streams never share one either."""
        import cupy

        where = cupy.cuda.Device().id, threading.get_ident()  # a handle serves one thread at a time
        if where not in self.handles:
            handle = ctypes.c_void_p()
            self._check(self.lib.cublasCreate_v2(ctypes.byref(handle)), "cublasCreate")
            self.handles[where] = handle
        handle = self.handles[where]
        stream = cupy.cuda.get_current_stream().ptr
        workspace = _GEMM_WORKSPACES.get((where[0], stream))
        if workspace is None:
            workspace = _GEMM_WORKSPACES[where[0], stream] = cupy.cuda.memory.alloc(self.WORKSPACE_BYTES)
        self._check(self.lib.cublasSetStream_v2(handle, stream), "cublasSetStream")
        self._check(self.lib.cublasSetWorkspace_v2(handle, workspace.ptr, self.WORKSPACE_BYTES),
                    "cublasSetWorkspace")
        return handle

    def matmul(self, a: Any, b: Any, out: Any) -> None:
        """``out = a @ b`` for nonempty 2-D arrays of one dtype, ``out`` C-contiguous (m, n)."""
        trans_a, trans_b, m, n, k, first, ld_first, second, ld_second, ld_out = _gemm_arguments(a, b)
        name, scalar = self.ROUTINES[str(a.dtype)]
        one, zero = scalar(1.0), scalar(0.0)
        status = getattr(self.lib, name)(self.handle(), trans_a, trans_b, m, n, k, ctypes.byref(one),
                                         first.data.ptr, ld_first, second.data.ptr, ld_second, ctypes.byref(zero),
                                         out.data.ptr, ld_out)
        self._check(status, name)


_GEMM_WORKSPACES: dict[tuple[int, int], Any] = {}  # (device, stream) -> the cuBLAS workspace its products use


def _gemm_arguments(a: Any, b: Any) -> tuple:
    """cuBLAS gemm's (transa, transb, m, n, k, A, lda, B, ldb, ldc) for the row-major
    product ``a @ b`` of nonempty 2-D arrays, written into a C-contiguous (rows of a, columns
    of b) array. cuBLAS is column-major, where a row-major (r, c) array is its (c, r)
    transpose: so it computes out^T = b^T a^T, with b first; a C-contiguous operand is
    passed as it is, a transposed view of one (F-contiguous) with the transpose flag."""
    (m, k), n = a.shape, b.shape[1]
    (op_a, ld_a, a), (op_b, ld_b, b) = _gemm_operand(a), _gemm_operand(b)
    return op_b, op_a, n, m, k, b, ld_b, a, ld_a, max(1, n)


def _gemm_operand(x: Any) -> tuple[int, int, Any]:
    """(transpose flag, leading dimension, array) for a 2-D operand of ``_CublasGemm.matmul``:
    C-contiguous as it is, F-contiguous transposed, anything else copied contiguous."""
    if not (x.flags.c_contiguous or x.flags.f_contiguous):
        x = x.copy(order="C")
    if x.flags.c_contiguous:
        return 0, max(1, x.shape[1]), x  # CUBLAS_OP_N: row-major (r, c) is column-major (c, r) with ld c
    return 1, max(1, x.shape[0]), x  # CUBLAS_OP_T: column-major (r, c) with ld r, transposed


def _matmul_by_cublas(x: Any, w: Any, out: Any = None) -> Any:
    """``x @ w`` for 1-D and 2-D float32/float64 CuPy arrays through cuBLAS's gemm, which a
    CUDA graph capture can record (CuPy's own matmul refuses to be captured)."""
    import cupy

    a = x[None, :] if x.ndim == 1 else x
    b = w[:, None] if w.ndim == 1 else w
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul: shapes {tuple(x.shape)} and {tuple(w.shape)} do not match")
    m, k, n = a.shape[0], a.shape[1], b.shape[1]
    shape = ((m,) if x.ndim == 2 else ()) + ((n,) if w.ndim == 2 else ())
    target = out if out is not None and out.flags.c_contiguous and out.dtype == x.dtype else \
        cupy.empty(shape, dtype=x.dtype)
    if m and n:
        if k:
            _CublasGemm.get().matmul(a, b, target.reshape(m, n))  # type: ignore[union-attr]
        else:
            target[...] = 0
    if out is not None and target is not out:
        out[...] = target
        return out
    return target


_MATMUL_KERNEL: list = []


def _matmul_by_reduction(x: Any, w: Any, out: Any = None) -> Any:
    """``x @ w`` for arrays of 2 or more dimensions, without cuBLAS: the product
    ``x[..., i, k] * w[..., k, j]`` over the broadcast (..., i, k, j), summed over k."""
    import cupy

    if not _MATMUL_KERNEL:
        _MATMUL_KERNEL.append(cupy.ReductionKernel("T x, T w", "T y", "x * w", "a + b", "y = a", "0",
                                                   "agrad_matmul_by_reduction"))
    nd = max(x.ndim, w.ndim) + 1
    return _MATMUL_KERNEL[0](x[..., :, :, None], w[..., None, :, :], axis=nd - 2, out=out)
