"""Backends, array namespaces, devices and transfers.

This is the only module of agrad that imports numpy, cupy, array_api_compat or
array_api_strict. Everything else asks the data for its namespace (``xp``) through
:func:`namespace_of`, and creates new arrays through :func:`creation_namespace`.

A namespace here is an :class:`ArrayNamespace`: the array library's array API
namespace (via array-api-compat), with the few functions the standard lacks that
agrad needs (scatter-add, device transfer) and with NumPy's habit of returning
scalars from 0-D operations smoothed over.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
import types
from typing import Any, Callable, Iterator

import array_api_compat
import numpy as np

from .. import dtypes

__all__ = [
    "ArrayNamespace",
    "available_backends",
    "creation_namespace",
    "describe",
    "get_backend",
    "namespace_of",
    "set_backend",
    "to_device",
    "to_numpy",
    "use_backend",
]

BACKENDS = ("numpy", "cupy", "array_api_strict")
_SCALAR_TYPES = (bool, int, float, complex)


class BackendError(RuntimeError):
    """A backend cannot be used here, or arrays of two backends/devices were mixed."""


# --------------------------------------------------------------------------- namespaces


class ArrayNamespace(types.SimpleNamespace):
    """An array API namespace plus agrad's extras (``scatter_add``, ``to_device``).

    Attributes are copied from the array-api-compat namespace, so looking one up is a
    plain instance-dict access (this sits on the hot path of every op).
    """

    def __repr__(self) -> str:
        return f"<agrad namespace {self.name}>"


def _build_namespace(name: str, module: Any, array_type: type, multi_device: bool) -> ArrayNamespace:
    attrs = {k: getattr(module, k) for k in dir(module) if not k.startswith("_")}
    for extension in ("linalg", "fft"):  # (array-api-strict serves its extensions lazily)
        if extension not in attrs and getattr(module, extension, None) is not None:
            attrs[extension] = getattr(module, extension)
    ns = ArrayNamespace(**attrs)
    ns.name = name
    ns.array_type = array_type
    ns.multi_device = multi_device
    # In-place updates (optimizers) are only relied on where they are guaranteed.
    ns.mutable = name in ("numpy", "cupy")
    ns.isdtype = _cached_isdtype(module.isdtype)
    ns.scatter_add = _make_scatter_add(ns)
    ns.index_update = _make_index_update(ns)
    ns.getitem = _make_getitem(ns)
    ns.to_device = to_device
    return ns


def _numpy_namespace() -> ArrayNamespace:
    import array_api_compat.numpy as cnp

    ns = _build_namespace("numpy", cnp, np.ndarray, multi_device=False)
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
        count = _mean_count(x, total)
        out = total / count if count else total * np.nan
        return out if out.__class__ is ndarray else np.asarray(out)

    mean.__doc__ = fallback.__doc__
    return mean


def _cached_isdtype(isdtype):
    """``isdtype`` answers the same for the same (dtype, kind): remember it (it is slow)."""
    cache: dict = {}

    def cached(dtype, kind):
        key = (dtype, kind)
        hit = cache.get(key)
        if hit is None:
            hit = cache[key] = isdtype(dtype, kind)
        return hit

    cached.__doc__ = isdtype.__doc__
    return cached


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


def _strict_namespace() -> ArrayNamespace:
    import array_api_strict

    return _build_namespace("array_api_strict", array_api_strict, type(array_api_strict.asarray(0.0)),
                            multi_device=True)


def _cupy_namespace() -> ArrayNamespace:
    import array_api_compat.cupy as ccp
    import cupy

    return _build_namespace("cupy", ccp, cupy.ndarray, multi_device=True)


_NAMESPACES: dict[str, ArrayNamespace] = {}
_BY_TYPE: dict[type, ArrayNamespace | None] = {t: None for t in _SCALAR_TYPES}
_lock = threading.Lock()


def _namespace(name: str) -> ArrayNamespace:
    ns = _NAMESPACES.get(name)
    if ns is None:
        with _lock:
            ns = _NAMESPACES.get(name)
            if ns is None:
                ns = {"numpy": _numpy_namespace, "cupy": _cupy_namespace, "array_api_strict": _strict_namespace}[name]()
                _NAMESPACES[name] = ns
                _BY_TYPE[ns.array_type] = ns
    return ns


def _namespace_for_type(x: Any) -> ArrayNamespace | None:
    """Slow path of :func:`namespace_of`: first sight of an array type."""
    if isinstance(x, np.generic):
        ns = _namespace("numpy")
        _BY_TYPE[type(x)] = ns
        return ns
    if isinstance(x, _SCALAR_TYPES):
        return None
    if array_api_compat.is_numpy_array(x):
        return _namespace("numpy")
    if array_api_compat.is_cupy_array(x):
        return _namespace("cupy")
    get_ns = getattr(x, "__array_namespace__", None)
    if get_ns is not None and array_api_compat.is_array_api_strict_namespace(get_ns()):
        return _namespace("array_api_strict")
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
            traced = _traced_pair(xp, ns)
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


def as_array(xp: ArrayNamespace, x: Any) -> Any:
    """``x`` as an array: scalars (NumPy's 0-d reductions, Python numbers) go through
    ``xp.asarray``; an array of any backend stays where it is. A transfer op returns an
    array of another backend, and converting it back would copy it silently.
    """
    ns = _BY_TYPE.get(x.__class__)
    if ns is None and not isinstance(x, (list, tuple, *_SCALAR_TYPES)):
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
    try:
        ns = _BY_TYPE.get(type(x)) or _namespace_for_type(x)
    except TypeError:
        return f"a {type(x).__name__}"
    if ns is None:
        return f"the Python scalar {x!r}"
    return f"a {ns.name} {_dtype_name(x.dtype)} array of shape {tuple(x.shape)} on {device_name(x)}"


def _dtype_name(dtype: Any) -> str:
    return dtypes.dtype_name(dtype)


def device_name(x: Any) -> str:
    """A readable name of the device ``x`` lives on: 'cpu', 'cuda:0', 'device1'..."""
    dev = array_api_compat.device(x)
    if array_api_compat.is_cupy_array(x):
        return f"cuda:{dev.id}"
    name = getattr(dev, "name", None)  # array_api_strict.Device
    if isinstance(name, str):
        return name
    return str(dev)


# --------------------------------------------------------------------------- backends


def _cupy_status() -> tuple[bool, str]:
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


def _strict_status() -> tuple[bool, str]:
    try:
        import array_api_strict  # noqa: F401
    except ImportError:
        return False, "array-api-strict is not installed: `pip install array-api-strict` (or agrad[test])."
    return True, ""


def backend_status(name: str) -> tuple[bool, str]:
    """(usable, reason) for a backend name."""
    if name == "numpy":
        return True, ""
    if name == "cupy":
        return _cupy_status()
    if name == "array_api_strict":
        return _strict_status()
    return False, f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}"


def available_backends() -> list[str]:
    """The backends usable on this machine, e.g. ``['numpy', 'array_api_strict']``."""
    return [name for name in BACKENDS if backend_status(name)[0]]


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
    """Select the backend that creates new arrays: 'numpy', 'cupy' or 'array_api_strict'.

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
    if isinstance(device, str):
        name = device.lower()
        if name.startswith(("cuda", "gpu")):
            return _namespace(_check("cupy"))
        if name in ("device1", "device2", "cpu_device"):
            return _namespace(_check("array_api_strict"))
        selected = creation_namespace()
        if name == "cpu" and selected.name == "cupy":
            return _namespace("numpy")
        return selected
    module = type(device).__module__
    if module.startswith("cupy"):
        return _namespace(_check("cupy"))
    if module.startswith("array_api_strict"):
        return _namespace(_check("array_api_strict"))
    return creation_namespace()




# --------------------------------------------------------------------------- devices


def resolve_device(xp: ArrayNamespace, device: Any) -> Any:
    """Turn 'cpu', 'cuda', 'cuda:N', 'device1'... into ``xp``'s device object."""
    if device is None or not isinstance(device, str):
        return device
    name = device.lower()
    if xp.name == "numpy":
        if name == "cpu":
            return "cpu"
    elif xp.name == "cupy":
        import cupy

        if name in ("cuda", "gpu"):
            return cupy.cuda.Device()
        if name.startswith("cuda:") and name[5:].isdigit():
            n = int(name[5:])
            count = cupy.cuda.runtime.getDeviceCount()
            if n >= count:
                raise BackendError(f"agrad: device {device!r} does not exist; this machine has {count} CUDA device(s)")
            return cupy.cuda.Device(n)
    elif xp.name == "array_api_strict":
        import array_api_strict

        if name in ("cpu", "cpu_device"):
            return array_api_strict.Device("CPU_DEVICE")
        if device in ("device1", "device2", "no_float64"):
            return array_api_strict.Device(device)
    raise BackendError(
        f"agrad: the {xp.name} backend has no device {device!r}; "
        f"use 'cpu' for numpy, 'cuda' or 'cuda:N' for cupy, 'cpu', 'device1' or 'device2' for array_api_strict"
    )


def to_device(x: Any, device: Any) -> Any:
    """Move a raw array to ``device`` ('cpu', 'cuda', 'cuda:N', or a device object).

    NumPy <-> CuPy transfers change backend ('cuda...' from NumPy gives a CuPy array,
    'cpu' from CuPy a NumPy array); array_api_strict moves between its own devices.
    """
    xp = namespace_of((x,), "to_device")
    if xp is None:
        raise TypeError(f"agrad.to_device: expected an array, got {describe(x)}")
    dev_str = device.lower() if isinstance(device, str) else None
    if xp.name == "numpy":
        if dev_str is not None and dev_str.startswith(("cuda", "gpu")):
            return _numpy_to_cupy(x, device)
        if dev_str == "cpu" or device == "cpu":
            return x
        if _is_cupy_device(device):
            return _numpy_to_cupy(x, device)
        raise BackendError(f"agrad.to_device: cannot move {describe(x)} to {device!r}")
    if xp.name == "cupy":
        if dev_str == "cpu" or device == "cpu":
            return x.get()
        target = resolve_device(xp, device)
        if not _is_cupy_device(target):
            raise BackendError(f"agrad.to_device: cannot move {describe(x)} to {device!r}")
        return _cupy_to_cupy(x, target)
    target = resolve_device(xp, device)
    if target is None:
        return x
    if x.device == target:
        return x
    return x.to_device(target)


def _is_cupy_device(device: Any) -> bool:
    return type(device).__module__.startswith("cupy")


def _numpy_to_cupy(x: Any, device: Any) -> Any:
    ok, why = _cupy_status()
    if not ok:
        raise BackendError(f"agrad.to_device: cannot move data to {device!r}: {why}")
    import cupy

    target = resolve_device(_namespace("cupy"), device) if isinstance(device, str) else device
    with target:
        return cupy.asarray(x)


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


def create(xp: ArrayNamespace, fn: str, *args: Any, device: Any = None, **kwargs: Any) -> Any:
    """``xp.fn(*args, device=device, **kwargs)``, a creation function, on ``device``."""
    if xp.name == "cupy":
        # array-api-compat's cupy wrapper ignores device= for creation: enter the device.
        dev = device if device is not None else default_device(xp)
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
    if xp.name == "numpy":
        return np.array(x, copy=True)
    if xp.name == "cupy":
        return x.get()
    return np.array(np.from_dlpack(x.to_device(resolve_device(xp, "cpu"))), copy=True)


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


def from_numpy(a: np.ndarray, backend: str | None = None, device: Any = None) -> Any:
    """Put a host NumPy array on ``backend`` (default: the selected one) and ``device``."""
    xp = creation_namespace(backend)
    a = np.asarray(a)
    if xp.name == "numpy":
        if device not in (None, "cpu"):
            raise BackendError(f"agrad: the numpy backend has no device {device!r}; use 'cpu'")
        return a
    if xp.name == "cupy":
        return _numpy_to_cupy(a, device if device is not None else "cuda")
    out = xp.asarray(a)
    target = resolve_device(xp, device)
    return out if target is None else out.to_device(target)


def default_device(xp: ArrayNamespace) -> Any:
    if xp.name == "cupy":
        import cupy

        return cupy.cuda.Device()
    if xp.name == "array_api_strict":
        return resolve_device(xp, "cpu")
    return "cpu"


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


# --------------------------------------------------------------------------- compiled replays

_OPERATOR_UFUNCS = {"add": "add", "sub": "subtract", "mul": "multiply", "truediv": "divide", "neg": "negative",
                    "pow": "power"}


def out_function(fn: Any, xp: ArrayNamespace, operand: Any = None, keywords: tuple = (), result: Any = None) -> Any:
    """A function that computes what ``fn`` computes into a given array (``out=``), for
    agrad.compile's replays on NumPy and CuPy; None where there is none. With the traced
    call's first ``operand`` and ``keywords``, a NumPy reduction of a float array with an
    explicit axis is the ufunc's own ``reduce`` (what the eager reduction calls), without
    the wrapper that checks the dtype on every call; with its ``result`` too, a NumPy mean
    of a float array divides by the count the trace found (a replay's shapes are the
    traced ones)."""
    if xp.name not in ("numpy", "cupy"):
        return None
    module = np if xp.name == "numpy" else __import__("cupy")
    ufunc_type = np.ufunc if xp.name == "numpy" else module.ufunc
    if isinstance(fn, ufunc_type):
        return fn
    name = getattr(fn, "__name__", "")
    if getattr(fn, "__module__", None) == "_operator" and name in _OPERATOR_UFUNCS:
        return getattr(module, _OPERATOR_UFUNCS[name])
    if fn is getattr(xp, "matmul", None):
        return module.matmul
    if fn is _matmul_by_reduction or fn is _matmul_by_cublas:
        return fn
    for reduction in ("sum", "max", "min", "mean"):
        if fn is getattr(xp, reduction, None):
            if xp.name == "numpy":  # the ufunc reductions eager code calls, minus np.sum's wrapper layers
                of_floats = getattr(getattr(operand, "dtype", None), "kind", None) in ("f", "c")
                ufunc = _REDUCTION_UFUNCS.get(reduction)
                if ufunc is not None and of_floats and "axis" in keywords and set(keywords) <= {"axis", "keepdims"}:
                    return ufunc.reduce  # (its own default axis is 0: only where the call names one)
                count = _mean_count(operand, result) if reduction == "mean" and of_floats and result is not None else 0
                return _mean_into_counted(count) if count else _REDUCTIONS_INTO[reduction]
            if reduction in ("max", "min"):  # CuPy 14's min/max with out= fail in its CUB path
                return _copied_into(getattr(module, reduction))
            return getattr(module, reduction)
    if fn is getattr(xp, "astype", None):
        return _astype_into(module)
    return None


def replay_view(fn: Any, xp: ArrayNamespace, operand: Any, keywords: dict) -> tuple[str, Any] | None:
    """A view that a compiled replay on NumPy writes inline rather than calling ``fn``:
    ``(template, index)`` with ``{x}`` standing for the operand and ``{index}`` for a
    constant (NumPy's ``matrix_transpose`` is the ``mT`` attribute, ``expand_dims`` with
    an int axis an index with ``None``); None otherwise. The traced call checked the
    operand's dimensions and the axis, and a replay's operands have the traced shapes,
    so the checks of the function's Python wrapper have nothing left to catch."""
    if xp.name != "numpy" or getattr(operand, "ndim", None) is None:
        return None
    if fn is _matrix_transpose and not keywords and operand.ndim >= 2:
        return "{x}.mT", None
    if fn is xp.expand_dims and set(keywords) == {"axis"} and keywords["axis"].__class__ is int:
        n, axis = operand.ndim, keywords["axis"]
        if -n - 1 <= axis <= n:
            return "{x}[{index}]", (slice(None),) * (axis if axis >= 0 else axis + n + 1) + (None,)
    return None


_IN_PLACE_ARITHMETIC = {"iadd", "isub", "imul", "itruediv", "ipow"}


def is_elementwise(fn: Any, xp: ArrayNamespace) -> bool:
    """Whether ``fn`` is an elementwise NumPy/CuPy operation (a ufunc, or in-place
    arithmetic), where a 0-d array may stand for a Python number."""
    if xp.name not in ("numpy", "cupy"):
        return False
    ufunc_type = np.ufunc if xp.name == "numpy" else __import__("cupy").ufunc
    if isinstance(out_function(fn, xp), ufunc_type):
        return True
    return getattr(fn, "__module__", None) == "_operator" and getattr(fn, "__name__", "") in _IN_PLACE_ARITHMETIC


def capturable(fn: Any, xp: ArrayNamespace, operands: list) -> Any:
    """A function computing what ``fn`` computes on ``operands`` that a CUDA graph capture
    can record, where ``fn`` itself cannot be; None where ``fn`` is fine as it is.

    CuPy refuses every cuBLAS call during a stream capture (its stream setter checks),
    though cuBLAS itself supports capture. So a float32/float64 matrix product there calls
    cuBLAS's gemm directly, on a handle of agrad's own (``_CublasGemm``); other matrix
    products are a reduction kernel over the broadcast product (the same sums in another
    order: results agree with cuBLAS to rounding, not bit for bit)."""
    if xp.name != "cupy" or fn is not getattr(xp, "matmul", None):
        return None
    if len(operands) != 2 or operands[0].dtype != operands[1].dtype:
        return None  # (mixed dtypes keep CuPy's matmul: such a graph falls back)
    if all(1 <= o.ndim <= 2 for o in operands) and str(operands[0].dtype) in _CublasGemm.ROUTINES \
            and _CublasGemm.get() is not None:
        return _matmul_by_cublas
    if any(o.ndim < 2 for o in operands):
        return None  # (a vector product without cuBLAS has no substitute: such a graph falls back)
    return _matmul_by_reduction


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


def device_scalar(xp: ArrayNamespace, dtype: Any, like: Any) -> Any:
    """A 0-d array of ``dtype`` on ``like``'s device."""
    return create(xp, "zeros", (), dtype=dtype, device=getattr(like, "device", None))


def graph_capturer(xp: ArrayNamespace) -> Callable[[Callable[[], Any], list], tuple[Callable[[], None], Any]] | None:
    """``capture(body, outside) -> (launch, result)``: records the GPU work ``body``
    enqueues as a CUDA graph (``body`` runs once, its kernels are recorded, not run) and
    returns a function that launches it on the current stream, with ``body``'s return
    value; None where the backend has no graphs (NumPy, array-api-strict). ``outside``
    lists the arrays outside the graph's memory that ``body`` writes (a stand-in that
    runs ``body`` instead of recording it, as the tests' does, must restore them)."""
    if xp.name != "cupy":
        return None
    return _capture_cuda_graph


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
        count = _mean_count(x, total)
        out[...] = total / count if count else total * np.nan
        return out
    np.add.reduce(x, axis=axis, keepdims=keepdims, out=out)  # then divided as _fast_mean divides
    count = _mean_count(x, out)
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


def _mean_count(x: Any, total: Any) -> int:
    """How many elements of ``x`` each element of its sum ``total`` adds up (0: a mean of
    nothing, nan as NumPy's)."""
    return x.size // max(total.size, 1) if x.size else 0


_REDUCTION_UFUNCS = {"sum": np.add, "max": np.maximum, "min": np.minimum}
_REDUCTIONS_INTO = {name: _reduction_into(ufunc, getattr(np, name)) for name, ufunc in _REDUCTION_UFUNCS.items()}
_REDUCTIONS_INTO["mean"] = _mean_into


def _copied_into(fn: Any) -> Any:
    """``fn``'s reduction computed, then copied into ``out`` (for CuPy's min and max)."""

    def into(x: Any, /, *, axis: Any = None, keepdims: bool = False, out: Any = None) -> Any:
        out[...] = fn(x, axis=axis, keepdims=keepdims)
        return out

    return into


def _astype_into(module: Any) -> Any:
    def astype_into(x: Any, dtype: Any, copy: bool = True, device: Any = None, out: Any = None) -> Any:
        module.copyto(out, x, casting="unsafe")  # what astype computes, into ``out``
        return out

    return astype_into


# --------------------------------------------------------------------------- scatter-add


def _make_scatter_add(xp: ArrayNamespace):
    """``scatter_add(g, shape, key)``: zeros(shape) with g added at key, repeats summed.

    The standard's ``z[idx] += g`` silently drops repeated indices, so each backend
    gets the right tool: np.add.at, cupyx.scatter_add, or a portable one-hot product.
    """

    def scatter_add(g: Any, shape: tuple, key: tuple) -> Any:
        if xp.name == "cupy":
            with g.device:  # compat's cupy creation ignores device=, see ARRAY_API_NOTES
                z = xp.zeros(shape, dtype=g.dtype)
        else:
            z = xp.zeros(shape, dtype=g.dtype, device=g.device)
        if not any(_is_index_array(k) for k in key):
            # Basic indexing selects each element at most once, so assignment is exact.
            # The standard forbids None in setitem: drop the new axes from g instead.
            if any(k is None for k in key):
                key = tuple(k for k in key if k is not None)
                g = xp.reshape(g, tuple(z[key].shape))
            z[key] = g
            return z
        if xp.name == "numpy":
            np.add.at(z, key, g)
        elif xp.name == "cupy":
            if g.dtype == xp.float32:
                import cupyx

                cupyx.scatter_add(z, key, g)  # atomicAdd: float32 only among floats (CuPy docs)
            else:
                z = _bincount_scatter_add(xp, z, g, key)
        else:
            z = _portable_scatter_add(xp, z, g, key)
        return z

    return scatter_add


def _make_getitem(xp: ArrayNamespace):
    """``getitem(x, key)``: ``x[key]``, also where the standard is narrower than NumPy.

    The standard (and array-api-strict) only allows an integer index array when every
    other index is an array or an int; ``x[idx, ...]`` / ``x[:, idx]`` are spelled
    with ``take`` there.
    """

    def getitem(x: Any, key: tuple) -> Any:
        if xp.name in ("numpy", "cupy"):
            return x[key]
        arrays = [i for i, k in enumerate(key) if _is_index_array(k)]
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


def _is_index_array(k: Any) -> bool:
    return not isinstance(k, (int, slice, type(None), type(Ellipsis)))


is_index_array = _is_index_array


def _make_index_update(xp: ArrayNamespace):
    """``index_update(x, value, key)``: a copy of x with ``x[key] = value``, for a key that
    writes each element at most once: basic indices, or one array of distinct ascending
    positions into a 1-D x (what ``agrad.ops.assign`` hands down)."""

    def index_update(x: Any, value: Any, key: tuple) -> Any:
        out = xp.asarray(x, copy=True)
        if xp.name == "array_api_strict" and any(_is_index_array(k) for k in key):
            # array-api-strict refuses integer arrays in __setitem__: find each element's
            # position among the sorted ones written, and select.
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


_PROXY_TYPES: dict[type, Callable[[Any], Any]] = {}  # agrad.compile's proxy arrays -> their real array


def _memory(x: Any) -> Any:
    """The NumPy / CuPy array holding ``x``'s elements."""
    unwrap = _PROXY_TYPES.get(x.__class__)
    if unwrap is not None:
        x = unwrap(x)
    strict = _NAMESPACES.get("array_api_strict")
    if strict is not None and x.__class__ is strict.array_type:
        x = x._array  # array-api-strict wraps a NumPy array, and its views are NumPy's views
    return x


def aliases(a: Any, b: Any) -> bool:
    """Whether array ``a``, made from ``b``, shares memory with it (is it, or a view of it)."""
    if a is b:
        return True
    a, b = _memory(a), _memory(b)
    if a is b:
        return True
    if getattr(a, "base", None) is None:  # owns its memory: a new array
        return False
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and bool(np.may_share_memory(a, b))
    import cupy

    return isinstance(b, cupy.ndarray) and bool(cupy.may_share_memory(a, b))


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


def _portable_scatter_add(xp: ArrayNamespace, z: Any, g: Any, key: tuple) -> Any:
    """Exact scatter-add with standard functions only: a one-hot matrix product.

    Uses O(len(indices) * z.size) memory, processed in chunks; only backends with no
    native scatter-add (e.g. array-api-strict) take this path.
    """
    size = 1
    for s in z.shape:
        size *= s
    positions = xp.getitem(xp.reshape(xp.arange(size, device=z.device), z.shape), key)
    flat_pos = xp.reshape(positions, (-1,))
    flat_g = xp.reshape(xp.broadcast_to(g, positions.shape), (-1,))
    total = xp.zeros((size,), dtype=g.dtype, device=z.device)
    cells = xp.arange(size, device=z.device)
    chunk = max(1, (1 << 22) // max(size, 1))
    n = flat_pos.shape[0]
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        one_hot = xp.astype(flat_pos[start:stop, None] == cells[None, :], g.dtype)
        total = total + xp.matmul(flat_g[None, start:stop], one_hot)[0, ...]
    return xp.reshape(total, z.shape)


# The environment variable is read last, once everything above is defined.
_env_backend = os.environ.get("AGRAD_BACKEND")
if _env_backend:
    set_backend(_env_backend)
