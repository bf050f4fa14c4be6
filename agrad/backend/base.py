"""The interface every agrad backend implements, and what backends share.

A backend is one instance of a :class:`Backend` subclass, registered by name (see
``agrad.backend.register_backend``). It owns an array library: its array API namespace
(an :class:`ArrayNamespace`, built once), its array type, its devices, transfers to and
from the host, and the places where the standard leaves agrad a workaround to write
(scatter-add, indexing with integer arrays, ``out=`` for compiled replays, CUDA graphs).

The rest of agrad never names a backend: it asks the namespace of its data for
``xp.backend`` and reads a capability (``is_host``, ``creation_enters_device``,
``narrow_setitem``, ``supports_cuda_graphs``...) or calls a method.
"""

from __future__ import annotations

import types
from typing import Any, Callable, ClassVar

import array_api_compat

SCALAR_TYPES = (bool, int, float, complex)

# The devices each built-in backend takes by name, for the error that lists them.
_DEVICE_HELP = "use 'cpu' for numpy, 'cuda' or 'cuda:N' for cupy, 'cpu', 'device1' or 'device2' for array_api_strict"


class BackendError(RuntimeError):
    """A backend cannot be used here, or arrays of two backends/devices were mixed."""


class ArrayNamespace(types.SimpleNamespace):
    """An array API namespace plus agrad's extras (``scatter_add``, ``getitem``,
    ``index_update``, ``to_device``) and ``backend``, the :class:`Backend` it belongs to.

    Attributes are copied from the array-api-compat namespace, so looking one up is a
    plain instance-dict access (this sits on the hot path of every op).
    """

    def __repr__(self) -> str:
        return f"<agrad namespace {self.name}>"


def is_index_array(k: Any) -> bool:
    """Whether an entry of an index key is an integer (or boolean) array, not a basic index."""
    return not isinstance(k, (int, slice, type(None), type(Ellipsis)))


def cached_isdtype(isdtype: Callable) -> Callable:
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


# Every registered backend by name, in registration order (the built-in ones first):
# agrad.backend's registry functions fill it; backends look each other up here for
# transfers that change backend (NumPy -> CuPy).
REGISTRY: dict[str, "Backend"] = {}


class Backend:
    """One array library as agrad uses it. Subclass it, set ``name``, implement
    :meth:`build_namespace` and :meth:`owns`, and override what your library does
    differently from the defaults (which follow the array API standard).

    Capabilities (the class attributes below) are what the rest of agrad branches on,
    never the backend's name. Register an instance with ``agrad.backend.register_backend``.
    """

    name: ClassVar[str] = ""
    #: Module name prefixes of the library's objects (dtypes, devices).
    modules: ClassVar[tuple[str, ...]] = ()
    #: Arrays may live on several devices, so namespace_of compares devices too.
    multi_device: ClassVar[bool] = False
    #: In-place updates (``x[...] = y``) are guaranteed (optimizers rely on them).
    mutable: ClassVar[bool] = False
    #: Its arrays are the host's NumPy arrays (what from_numpy takes and to_numpy gives).
    is_host: ClassVar[bool] = False
    #: Creation functions ignore ``device=``: create inside ``with device:`` (CuPy via array-api-compat).
    creation_enters_device: ClassVar[bool] = False
    #: 'cpu' is one of its devices; where not (CuPy), asking for 'cpu' means the host backend.
    has_cpu: ClassVar[bool] = True
    #: ``to_device`` from the host onto one of its devices gives one of its arrays (NumPy -> CuPy).
    receives_host_transfers: ClassVar[bool] = False
    #: ``__setitem__`` takes only what the standard allows: no None, no integer arrays,
    #: no key naming fewer axes than the array has.
    narrow_setitem: ClassVar[bool] = False
    #: agrad.compile may record a replay as a CUDA graph (see :meth:`graph_capturer`).
    supports_cuda_graphs: ClassVar[bool] = False
    #: Types of its 0-d results that are no arrays (NumPy scalars), which namespace_of remembers.
    scalar_types: ClassVar[tuple[type, ...]] = ()

    def __repr__(self) -> str:
        return f"<agrad backend {self.name}>"

    # ------------------------------------------------------------------ the library

    def status(self) -> tuple[bool, str]:
        """(usable, why not): whether the library imports and has a device here."""
        return True, ""

    def build_namespace(self) -> ArrayNamespace:
        """The library's namespace with agrad's extras; called once, on first use."""
        raise NotImplementedError(f"backend {self.name!r} does not build a namespace")

    def owns(self, x: Any) -> bool:
        """Whether ``x`` is one of this backend's arrays (asked once per new array type)."""
        return False

    def namespace_from(self, module: Any, array_type: type) -> ArrayNamespace:
        """An :class:`ArrayNamespace` with every public name of the array API namespace
        ``module`` and agrad's extras, bound to this backend."""
        attrs = {k: getattr(module, k) for k in dir(module) if not k.startswith("_")}
        for extension in ("linalg", "fft"):  # (array-api-strict serves its extensions lazily)
            if extension not in attrs and getattr(module, extension, None) is not None:
                attrs[extension] = getattr(module, extension)
        ns = ArrayNamespace(**attrs)
        ns.name = self.name
        ns.backend = self
        ns.array_type = array_type
        ns.multi_device = self.multi_device
        ns.mutable = self.mutable
        ns.isdtype = cached_isdtype(module.isdtype)
        ns.scatter_add = self.make_scatter_add(ns)
        ns.index_update = self.make_index_update(ns)
        ns.getitem = self.make_getitem(ns)
        return ns

    # ------------------------------------------------------------------ devices

    def claims_device(self, device: Any) -> bool:
        """Whether asking for ``device`` ('cuda:1', 'device1', a device object) means this
        backend whatever backend is selected (``namespace_for_device``)."""
        return False

    def resolve_device(self, device: Any) -> Any:
        """Turn 'cpu', 'cuda', 'cuda:N', 'device1'... into this backend's device object."""
        if device is None or not isinstance(device, str):
            return device
        raise self.no_device(device)

    def no_device(self, device: Any) -> BackendError:
        return BackendError(f"agrad: the {self.name} backend has no device {device!r}; {_DEVICE_HELP}")

    def default_device(self) -> Any:
        """The device new arrays land on when none is asked for."""
        return self.resolve_device("cpu")

    def device_name(self, x: Any) -> str:
        """A readable name of the device ``x`` lives on: 'cpu', 'cuda:0', 'device1'..."""
        dev = array_api_compat.device(x)
        name = getattr(dev, "name", None)  # array_api_strict.Device
        if isinstance(name, str):
            return name
        return str(dev)

    # ------------------------------------------------------------------ transfers

    def to_device(self, x: Any, device: Any) -> Any:
        """``x`` (one of this backend's arrays) on ``device``; itself if already there."""
        target = self.resolve_device(device)
        if target is None:
            return x
        if x.device == target:
            return x
        return x.to_device(target)

    def from_host(self, xp: ArrayNamespace | None, a: Any, device: Any) -> Any:
        """An array of this backend from the host NumPy array ``a``, on ``device``
        (``xp`` is this backend's namespace; None from a host array's ``to_device``,
        only for a backend that ``receives_host_transfers``)."""
        out = xp.asarray(a)
        target = self.resolve_device(device)
        return out if target is None else out.to_device(target)

    def to_host(self, x: Any) -> Any:
        """A host NumPy copy of ``x`` (through DLPack from the CPU device)."""
        import numpy as np  # (the backend layer is where NumPy is imported)

        return np.array(np.from_dlpack(x.to_device(self.resolve_device("cpu"))), copy=True)

    # ------------------------------------------------------------------ memory

    def memory(self, x: Any) -> Any:
        """The array holding ``x``'s elements (for a wrapper type, the wrapped array)."""
        return x

    def shares_memory(self, a: Any, b: Any) -> bool:
        """Whether ``a`` (an array that may not own its memory: see
        ``agrad.backend.owns_memory``) may share memory with ``b``."""
        return False

    # ------------------------------------------------------------------ indexing

    def make_scatter_add(self, xp: ArrayNamespace) -> Callable[[Any, tuple, tuple], Any]:
        """``scatter_add(g, shape, key)``: zeros(shape) with g added at key, repeats summed.

        The standard's ``z[idx] += g`` silently drops repeated indices, so each backend
        gets the right tool (:meth:`scatter_add_at`): np.add.at, cupyx.scatter_add, or a
        portable one-hot product.
        """
        enters_device = self.creation_enters_device
        add_at = self.scatter_add_at

        def scatter_add(g: Any, shape: tuple, key: tuple) -> Any:
            if enters_device:
                with g.device:  # compat's cupy creation ignores device=, see ARRAY_API_NOTES
                    z = xp.zeros(shape, dtype=g.dtype)
            else:
                z = xp.zeros(shape, dtype=g.dtype, device=g.device)
            if not any(is_index_array(k) for k in key):
                # Basic indexing selects each element at most once, so assignment is exact.
                # The standard forbids None in setitem: drop the new axes from g instead.
                if any(k is None for k in key):
                    key = tuple(k for k in key if k is not None)
                    g = xp.reshape(g, tuple(z[key].shape))
                z[key] = g
                return z
            return add_at(xp, z, g, key)

        return scatter_add

    def scatter_add_at(self, xp: ArrayNamespace, z: Any, g: Any, key: tuple) -> Any:
        """``z`` (zeros) with ``g`` added at ``key`` (with index arrays), repeats summed.

        Exact, with standard functions only: a one-hot matrix product. Uses
        O(len(indices) * z.size) memory, processed in chunks; only backends with no
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

    def make_getitem(self, xp: ArrayNamespace) -> Callable[[Any, tuple], Any]:
        """``getitem(x, key)``: ``x[key]`` (a backend narrower than NumPy rewrites some keys)."""

        def getitem(x: Any, key: tuple) -> Any:
            return x[key]

        return getitem

    def make_index_update(self, xp: ArrayNamespace) -> Callable[[Any, Any, tuple], Any]:
        """``index_update(x, value, key)``: a copy of x with ``x[key] = value``, for a key that
        writes each element at most once: basic indices, or one array of distinct ascending
        positions into a 1-D x (what ``agrad.ops.assign`` hands down)."""

        def index_update(x: Any, value: Any, key: tuple) -> Any:
            out = xp.asarray(x, copy=True)
            out[key] = value
            return out

        return index_update

    # ------------------------------------------------------------------ compiled replays

    def out_function(self, fn: Any, xp: ArrayNamespace, operand: Any = None, keywords: tuple = (),
                     result: Any = None) -> Any:
        """A function computing what ``fn`` computes into a given array (``out=``), for
        agrad.compile's replays; None where there is none (the standard has no ``out=``)."""
        return None

    def replay_view(self, fn: Any, xp: ArrayNamespace, operand: Any, keywords: dict) -> tuple[str, Any] | None:
        """A view a compiled replay writes inline (``(template, index)``); None: call ``fn``."""
        return None

    def is_elementwise(self, fn: Any, xp: ArrayNamespace) -> bool:
        """Whether ``fn`` is elementwise here, where a 0-d array may stand for a number."""
        return False

    def capturable(self, fn: Any, xp: ArrayNamespace, operands: list) -> Any:
        """A stand-in for ``fn`` that a CUDA graph capture can record; None: ``fn`` is fine."""
        return None

    def graph_capturer(self) -> Callable[[Callable[[], Any], list], tuple[Callable[[], None], Any]] | None:
        """``capture(body, outside) -> (launch, result)`` recording ``body``'s device work
        as a graph; None where the backend has no graphs."""
        return None
