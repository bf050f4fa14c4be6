"""CUDA graph capture for agrad.compile's replays on CuPy.

Imports without CuPy: CuPy is imported when a graph is captured.
"""

from __future__ import annotations

from typing import Any, Callable

from .cublas import _GEMM_WORKSPACES


def _capture_cuda_graph(body: Callable[[], Any], outside: list) -> tuple[Callable[[], None], Any]:
    import cupy

    current = cupy.cuda.get_current_stream()
    stream = cupy.cuda.Stream(non_blocking=True)  # capture needs a stream of its own
    # A private pool: memory a graph's kernels use (their temporaries too) must never be
    # handed to arrays outside it, which the next launch would overwrite.
    pool = cupy.cuda.MemoryPool()
    stream.wait_event(current.record())
    with stream, cupy.cuda.using_allocator(pool.malloc):
        stream.begin_capture()
        try:
            result = body()
        except BaseException:
            try:
                stream.end_capture()
            except Exception:  # noqa: S110 - the capture is already broken; body's error is the one to show
                pass
            raise
        finally:  # the workspace its matrix products use (if any) lives as long as the graph
            workspace = _GEMM_WORKSPACES.pop((cupy.cuda.Device().id, stream.ptr), None)
        graph = stream.end_capture()

    def launch() -> None:
        graph.launch(stream=cupy.cuda.get_current_stream())

    launch.keep_alive = (graph, stream, pool, workspace)  # type: ignore[attr-defined]
    return launch, result
