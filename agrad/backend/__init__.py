"""Backends, array namespaces, devices and transfers.

This package is the only part of agrad that imports numpy, cupy, array_api_compat or
array_api_strict. Everything else asks the data for its namespace (``xp``) through
:func:`namespace_of`, and creates new arrays through :func:`creation_namespace`.

A namespace here is an :class:`ArrayNamespace`: the array library's array API
namespace (via array-api-compat), with the few functions the standard lacks that
agrad needs (scatter-add, device transfer) and with NumPy's habit of returning
scalars from 0-D operations smoothed over. ``xp.backend`` is the :class:`Backend` it
belongs to: one instance per array library (``numpy.py``, ``cupy.py``,
``array_api_strict.py`` here), registered by name; :func:`register_backend` adds one.
Code outside this package reads the backend's capabilities, never its name.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, Callable, Iterator

import numpy as np

from .. import dtypes
from .array_api_strict import ArrayApiStrictBackend
from .base import REGISTRY, SCALAR_TYPES, ArrayNamespace, Backend, BackendError, is_index_array
from .cublas import _GEMM_WORKSPACES, _gemm_arguments, _matmul_by_cublas, _matmul_by_reduction
from .cuda_graph import _capture_cuda_graph
from .cupy import CupyBackend
from .numpy import NumpyBackend
from .replay import copied_into as _copied_into

__all__ = [
    "ArrayNamespace",
    "Backend",
    "available_backends",
    "creation_namespace",
    "describe",
    "get_backend",
    "namespace_of",
    "register_backend",
    "set_backend",
    "to_device",
    "to_numpy",
    "unregister_backend",
    "use_backend",
]

BACKENDS = ("numpy", "cupy", "array_api_strict")  # the built-in ones
_SCALAR_TYPES = SCALAR_TYPES

# (agrad.compile's tests reach these helpers here)
_private_reexports = (_GEMM_WORKSPACES, _gemm_arguments, _matmul_by_cublas, _matmul_by_reduction, _capture_cuda_graph,
                      _copied_into, is_index_array)


# --------------------------------------------------------------------------- the registry

_NAMESPACES: dict[str, ArrayNamespace] = {}
# An array type -> its namespace, None for Python scalars: namespace_of's one dict lookup.
_BY_TYPE: dict[type, ArrayNamespace | None] = {t: None for t in SCALAR_TYPES}
_lock = threading.Lock()


def register_backend(backend: Backend | type[Backend], *, replace: bool = False) -> Backend:
    """Add a backend (a :class:`~agrad.backend.base.Backend` subclass or instance) under its ``name``.

    It can then be selected (``agrad.set_backend(name)``, ``agrad.use_backend(name)``),
    and its arrays (``backend.owns(x)``) are used by every op. A backend whose array
    type another backend already uses takes that type over once its namespace is built,
    until :func:`unregister_backend`. Raises ValueError for a name already registered,
    unless ``replace``. Returns the registered instance.
    """
    instance = backend() if isinstance(backend, type) else backend
    if not isinstance(instance, Backend):
        raise TypeError(f"agrad.register_backend: expected a Backend subclass or instance, got {instance!r}")
    name = instance.name
    if not isinstance(name, str) or not name:
        raise ValueError(f"agrad.register_backend: {type(instance).__name__} needs a name")
    with _lock:
        if name in REGISTRY and not replace:
            raise ValueError(f"agrad.register_backend: a backend named {name!r} is registered already")
        if name in REGISTRY:
            _forget(name)
        REGISTRY[name] = instance
    return instance


def unregister_backend(name: str) -> None:
    """Remove the backend ``name`` (its array types go back to the backends that had them)."""
    if name in BACKENDS:
        raise ValueError(f"agrad.unregister_backend: {name!r} is built in")
    if get_backend() == name or _global_backend == name:
        raise BackendError(f"agrad.unregister_backend: {name!r} is selected")
    with _lock:
        _forget(name)
        REGISTRY.pop(name, None)


def _forget(name: str) -> None:
    ns = _NAMESPACES.pop(name, None)
    if ns is None:
        return
    for t in [t for t, owner in _BY_TYPE.items() if owner is ns]:
        del _BY_TYPE[t]
        for other in _NAMESPACES.values():  # (the built-in backend that used it first)
            if other.array_type is t:
                _BY_TYPE[t] = other
                break


def get(name: str) -> Backend:
    """The registered backend ``name`` (KeyError if none)."""
    return REGISTRY[name]


for _builtin in (NumpyBackend, CupyBackend, ArrayApiStrictBackend):
    register_backend(_builtin)


# --------------------------------------------------------------------------- namespaces


def _namespace(name: str) -> ArrayNamespace:
    ns = _NAMESPACES.get(name)
    if ns is None:
        with _lock:
            ns = _NAMESPACES.get(name)
            if ns is None:
                ns = REGISTRY[name].build_namespace()
                ns.to_device = to_device
                _NAMESPACES[name] = ns
                _BY_TYPE[ns.array_type] = ns
    return ns


def _namespace_for_type(x: Any) -> ArrayNamespace | None:
    """Slow path of :func:`namespace_of`: first sight of an array type."""
    for be in REGISTRY.values():
        if be.scalar_types and isinstance(x, be.scalar_types):  # (NumPy's scalars are Python floats too)
            ns = _namespace(be.name)
            _BY_TYPE[type(x)] = ns
            return ns
    if isinstance(x, SCALAR_TYPES):
        return None
    for be in REGISTRY.values():
        if be.owns(x):
            return _namespace(be.name)
    raise TypeError(
        f"agrad cannot use an object of type {type(x).__name__} as an array; "
        f"pass an agrad.Tensor, a NumPy/CuPy/array-api-strict array or a Python scalar "
        f"(agrad.tensor(data) converts lists)"
    )


_MISSING = object()


def namespace_of(arrays: Any, op: str = "operation") -> ArrayNamespace | None:
    """The namespace shared by ``arrays`` (Python scalars are ignored).

    Raises a :class:`BackendError` naming ``op`` when the arrays come from different
    backends or live on different devices: agrad never copies data silently.
    Returns None when every entry is a Python scalar.
    """
    xp = None
    first = None
    for a in arrays:
        ns = _BY_TYPE.get(a.__class__, _MISSING)
        if ns is _MISSING:
            ns = _namespace_for_type(a)
        if ns is None:
            continue
        if xp is None:
            xp, first = ns, a
        elif ns is not xp or (ns.multi_device and a.device != first.device):
            traced = _traced_pair(xp, ns) or _wrapper_pair(xp, ns)
            if traced is None or (ns.multi_device and a.device != first.device):
                raise _mixed_error(op, list(arrays), first, a)
            xp = traced
    return xp


def _traced_pair(a: Any, b: Any) -> Any:
    """While agrad.compile traces, a proxy array meets real arrays of the backend it
    wraps (a constant index, say): the recording namespace serves both; else None."""
    home_a, home_b = getattr(a, "_home", None), getattr(b, "_home", None)
    if home_a is b:
        return a
    if home_b is a:
        return b
    return None


_WRAPPERS: dict[type, Callable[[Any], str]] = {}  # array types wrapping other arrays -> how to describe one


def register_array_wrapper(array_type: type, namespace: Any, describe: Callable[[Any], str]) -> None:
    """``array_type`` wraps arrays of the backends (agrad.vmap's batched arrays): its
    ``namespace`` serves it, and wins when it meets the arrays it wraps (``namespace_of``)."""
    _BY_TYPE[array_type] = namespace
    _WRAPPERS[array_type] = describe


def is_array_wrapper(x: Any) -> bool:
    """Whether ``x`` wraps other arrays (a batched array of agrad.vmap) rather than holding memory."""
    return x.__class__ in _WRAPPERS


def _wrapper_pair(a: Any, b: Any) -> Any:
    """A wrapper's namespace meets another: the wrapper's serves both (its functions take
    the others' arrays as constants); else None."""
    if getattr(a, "batching", False):
        return a
    if getattr(b, "batching", False):
        return b
    return None


def as_array(xp: ArrayNamespace, x: Any) -> Any:
    """``x`` as an array: scalars (NumPy's 0-d reductions, Python numbers) go through
    ``xp.asarray``; an array of any backend stays where it is. A transfer op returns an
    array of another backend, and converting it back would copy it silently.
    """
    ns = _BY_TYPE.get(x.__class__)
    if ns is None and not isinstance(x, (list, tuple, *SCALAR_TYPES)):
        ns = _namespace_for_type(x)  # first sight of this array type
    if ns is not None and x.__class__ is ns.array_type:
        return x
    return xp.asarray(x)


def _mixed_error(op: str, arrays: list, a: Any, b: Any) -> BackendError:
    i = next(k for k, v in enumerate(arrays) if v is a)
    j = next(k for k, v in enumerate(arrays) if v is b)
    return BackendError(
        f"agrad.{op}: argument {i} is {describe(a)} but argument {j} is {describe(b)}. "
        f"agrad never copies between backends or devices silently: move one of them first, "
        f"e.g. `b = b.to(a.device)` or `agrad.to_device(b, a.device)`."
    )


def is_numpy_scalar(x: Any) -> bool:
    return isinstance(x, np.generic)


def is_numpy_array(x: Any) -> bool:
    return isinstance(x, (np.ndarray, np.generic))


def describe(x: Any) -> str:
    """'a numpy float32 array of shape (2, 3) on cpu' -- for error messages."""
    wrapper = _WRAPPERS.get(type(x))
    if wrapper is not None:
        return wrapper(x)
    try:
        ns = _BY_TYPE.get(type(x)) or _namespace_for_type(x)
    except TypeError:
        return f"a {type(x).__name__}"
    if ns is None:
        return f"the Python scalar {x!r}"
    return f"a {ns.name} {_dtype_name(x.dtype)} array of shape {tuple(x.shape)} on {device_name(x)}"


def _dtype_name(dtype: Any) -> str:
    return dtypes.dtype_name(dtype)


_ANY_BACKEND = Backend()  # the interface's defaults, for objects no backend owns


def device_name(x: Any) -> str:
    """A readable name of the device ``x`` lives on: 'cpu', 'cuda:0', 'device1'..."""
    ns = _BY_TYPE.get(x.__class__)
    if ns is None:
        try:
            ns = _namespace_for_type(x)
        except TypeError:
            ns = None
    return (_ANY_BACKEND if ns is None else ns.backend).device_name(x)


def dtype_modules() -> tuple[str, ...]:
    """Module name prefixes of every registered backend's objects (its dtypes, devices)."""
    return tuple(m for be in REGISTRY.values() for m in be.modules)


# --------------------------------------------------------------------------- selection


def backend_status(name: str) -> tuple[bool, str]:
    """(usable, reason) for a backend name."""
    be = REGISTRY.get(name)
    if be is None:
        return False, f"unknown backend {name!r}; choose one of {', '.join(REGISTRY)}"
    return be.status()


def available_backends() -> list[str]:
    """The backends usable on this machine, e.g. ``['numpy', 'array_api_strict']``."""
    return [name for name in REGISTRY if backend_status(name)[0]]


class _Selection(threading.local):
    override: list[str]

    def __init__(self) -> None:
        self.override = []


_selection = _Selection()
_global_backend = "numpy"


def _check(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"agrad.set_backend: backend name must be a string, got {type(name).__name__}")
    ok, why = backend_status(name)
    if not ok:
        raise BackendError(f"agrad cannot use the {name!r} backend: {why}")
    return name


def set_backend(name: str) -> None:
    """Select the backend that creates new arrays: 'numpy', 'cupy', 'array_api_strict'
    (or a registered one).

    Operations always follow their inputs; the backend only decides where new arrays
    (``agrad.tensor``, ``agrad.zeros``, initialisation, datasets) are created.
    """
    global _global_backend
    _global_backend = _check(name)
    _namespace(name)


def get_backend() -> str:
    """The backend new arrays are created on in this thread."""
    return _selection.override[-1] if _selection.override else _global_backend


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Context manager selecting a backend for the current thread only."""
    _check(name)
    _namespace(name)
    _selection.override.append(name)
    try:
        yield
    finally:
        _selection.override.pop()


def creation_namespace(backend: str | None = None) -> ArrayNamespace:
    """Namespace of the selected (or named) backend, for creating new arrays."""
    name = backend or get_backend()
    ns = _NAMESPACES.get(name)
    return ns if ns is not None else _namespace(_check(name))


def namespace_for_device(device: Any, backend: str | None = None) -> ArrayNamespace:
    """Where to create an array asked for on ``device``: the backend that owns a device
    object (a helper array beside its inputs stays on their backend, whatever is
    selected), CuPy for 'cuda...', NumPy for 'cpu' when a GPU backend is selected, else
    the selected (or named) backend."""
    if backend is not None or device is None:
        return creation_namespace(backend)
    for be in REGISTRY.values():
        if be.claims_device(device):
            return _namespace(_check(be.name))
    selected = creation_namespace()
    if isinstance(device, str) and device.lower() == "cpu" and not selected.backend.has_cpu:
        return host_namespace()
    return selected


# --------------------------------------------------------------------------- devices, transfers


def resolve_device(xp: ArrayNamespace, device: Any) -> Any:
    """Turn 'cpu', 'cuda', 'cuda:N', 'device1'... into ``xp``'s device object."""
    return xp.backend.resolve_device(device)


def default_device(xp: ArrayNamespace) -> Any:
    """The device ``xp`` creates arrays on when none is asked for."""
    return xp.backend.default_device()


def to_device(x: Any, device: Any) -> Any:
    """Move a raw array to ``device`` ('cpu', 'cuda', 'cuda:N', or a device object).

    NumPy <-> CuPy transfers change backend ('cuda...' from NumPy gives a CuPy array,
    'cpu' from CuPy a NumPy array); array_api_strict moves between its own devices.
    """
    xp = namespace_of((x,), "to_device")
    if xp is None:
        raise TypeError(f"agrad.to_device: expected an array, got {describe(x)}")
    return xp.backend.to_device(x, device)


def create(xp: ArrayNamespace, fn: str, *args: Any, device: Any = None, **kwargs: Any) -> Any:
    """``xp.fn(*args, device=device, **kwargs)``, a creation function, on ``device``."""
    be = xp.backend
    if be.creation_enters_device:
        dev = device if device is not None else be.default_device()
        with dev:
            return created(getattr(xp, fn)(*args, **kwargs))
    return created(getattr(xp, fn)(*args, device=device, **kwargs))


_CREATION_HOOK: list = [None]  # agrad.compile's tracer notes the arrays made while it traces


def created(x: Any) -> Any:
    """``x``, an array agrad has just made (not one it was given): while agrad.compile
    traces, a replay must make it afresh if the function updates it in place."""
    hook = _CREATION_HOOK[0]
    if hook is not None:
        hook(x)
    return x


def from_dlpack(x: Any, device: Any = None, copy: bool | None = None) -> Any:
    """An array of the backend that owns ``x`` (or the selected one) from any DLPack
    capable object, sharing memory unless ``copy`` (or a move to ``device``) needs a copy."""
    try:
        xp = namespace_of((x,), "from_dlpack")
    except TypeError:
        xp = None
    xp = xp or creation_namespace()
    kwargs = {} if copy is None else {"copy": copy}
    try:
        out = xp.from_dlpack(x, **kwargs)
    except (TypeError, BufferError):  # no copy= here, or (CuPy) only for copies to the host
        out = xp.from_dlpack(x)
        if copy:
            out = xp.asarray(out, copy=True)
    return out if device is None else to_device(out, device)


def to_numpy(x: Any) -> np.ndarray:
    """A host NumPy copy of any backend's array."""
    xp = namespace_of((x,), "numpy")
    if xp is None:
        return np.asarray(x)
    return xp.backend.to_host(x)


def from_numpy(a: np.ndarray, backend: str | None = None, device: Any = None) -> Any:
    """Put a host NumPy array on ``backend`` (default: the selected one) and ``device``."""
    xp = creation_namespace(backend)
    return xp.backend.from_host(xp, np.asarray(a), device)


def beside(x: Any, like: Any, op: str = "transfer") -> tuple[Any, bool]:
    """``x`` on ``like``'s backend and device, and whether that made a copy: a host round
    trip between backends, a device transfer within one, else ``x`` itself."""
    xp = namespace_of((like,), op)
    src = namespace_of((x,), op)
    if src is None or src.backend is not xp.backend:
        return from_numpy(to_numpy(x), backend=xp.name, device=like.device), True
    if xp.multi_device and x.device != like.device:
        return to_device(x, like.device), True
    return x, False


def host_namespace() -> ArrayNamespace:
    """The NumPy namespace, for host-side work (finite differences, data files)."""
    return _namespace("numpy")


def host_rng(seed: int | None = None) -> np.random.Generator:
    """A seeded host random generator: draw on the host, then move, for the same
    numbers on every backend (the array API has no random numbers)."""
    return np.random.default_rng(seed)


def array_from_bytes(buf: bytes, dtype: str, shape: tuple, byteorder: str = "<") -> np.ndarray:
    """A host array (a copy) from raw bytes; ``dtype`` is a NumPy name like 'float32'."""
    dt = np.dtype(dtype).newbyteorder(byteorder)
    return np.frombuffer(buf, dtype=dt).reshape(shape).astype(np.dtype(dtype), copy=True)


def resolve_dtype(xp: ArrayNamespace, dtype: Any) -> Any:
    """Accept agrad.float32, 'float32' or any backend's dtype; return ``xp``'s dtype."""
    if dtype is None:
        return None
    try:
        name = dtypes.dtype_name(dtype)
    except TypeError:
        raise TypeError(f"agrad: {dtype!r} is not a dtype; use agrad.float32, 'float32' or a backend dtype") from None
    found = getattr(xp, name, None)
    if found is None or name not in dtypes.ALL:
        raise TypeError(f"agrad: unknown dtype {dtype!r} for the {xp.name} backend")
    return found


def device_scalar(xp: ArrayNamespace, dtype: Any, like: Any) -> Any:
    """A 0-d array of ``dtype`` on ``like``'s device."""
    return create(xp, "zeros", (), dtype=dtype, device=getattr(like, "device", None))


# --------------------------------------------------------------------------- compiled replays
# (agrad.compile calls these through this module, so that tests can stand in for them)


def out_function(fn: Any, xp: ArrayNamespace, operand: Any = None, keywords: tuple = (), result: Any = None) -> Any:
    """A function that computes what ``fn`` computes into a given array (``out=``), for
    agrad.compile's replays; None where there is none (see ``Backend.out_function``)."""
    return xp.backend.out_function(fn, xp, operand, keywords, result)


def replay_view(fn: Any, xp: ArrayNamespace, operand: Any, keywords: dict) -> tuple[str, Any] | None:
    """A view that a compiled replay writes inline rather than calling ``fn``:
    ``(template, index)``; None otherwise (see ``Backend.replay_view``)."""
    return xp.backend.replay_view(fn, xp, operand, keywords)


def is_elementwise(fn: Any, xp: ArrayNamespace) -> bool:
    """Whether ``fn`` is an elementwise operation of ``xp`` with ``out=`` (a ufunc, or
    in-place arithmetic), where a 0-d array may stand for a Python number."""
    return xp.backend.is_elementwise(fn, xp)


def capturable(fn: Any, xp: ArrayNamespace, operands: list) -> Any:
    """A function computing what ``fn`` computes on ``operands`` that a CUDA graph capture
    can record, where ``fn`` itself cannot be; None where ``fn`` is fine as it is."""
    return xp.backend.capturable(fn, xp, operands)


def graph_capturer(xp: ArrayNamespace) -> Callable[[Callable[[], Any], list], tuple[Callable[[], None], Any]] | None:
    """``capture(body, outside) -> (launch, result)``: records the GPU work ``body``
    enqueues as a CUDA graph (``body`` runs once, its kernels are recorded, not run) and
    returns a function that launches it on the current stream, with ``body``'s return
    value; None where the backend has no graphs (NumPy, array-api-strict). ``outside``
    lists the arrays outside the graph's memory that ``body`` writes (a stand-in that
    runs ``body`` instead of recording it, as the tests' does, must restore them)."""
    return xp.backend.graph_capturer()


# --------------------------------------------------------------------------- memory

_PROXY_TYPES: dict[type, Callable[[Any], Any]] = {}  # agrad.compile's proxy arrays -> their real array


def _memory(x: Any) -> Any:
    """The NumPy / CuPy array holding ``x``'s elements."""
    unwrap = _PROXY_TYPES.get(x.__class__)
    if unwrap is not None:
        x = unwrap(x)
    ns = _BY_TYPE.get(x.__class__)
    return x if ns is None else ns.backend.memory(x)


def owns_memory(x: Any) -> bool:
    """Whether array ``x`` certainly holds memory of its own, shared with no other array:
    a NumPy or CuPy array that is not a view (its ``base`` is None). Anything else (views,
    read-only broadcasts, wrappers such as array-api-strict's arrays or agrad.compile's
    proxies of them, which have no ``base``) may share its memory. agrad's one answer to
    this question: the tape asks it before keeping a gradient as a leaf's ``.grad``,
    ``clip_grad_norm_`` before scaling a gradient in place, :func:`aliases` before asking
    the backend."""
    return getattr(x, "base", 0) is None


def aliases(a: Any, b: Any) -> bool:
    """Whether array ``a``, made from ``b``, shares memory with it (is it, or a view of it)."""
    if a is b:
        return True
    a, b = _memory(a), _memory(b)
    if a is b:
        return True
    if owns_memory(a):  # a new array
        return False
    ns = _BY_TYPE.get(a.__class__) or _namespace_for_type(a)
    return ns.backend.shares_memory(a, b)


# The environment variable is read last, once everything above is defined.
_env_backend = os.environ.get("AGRAD_BACKEND")
if _env_backend:
    set_backend(_env_backend)
