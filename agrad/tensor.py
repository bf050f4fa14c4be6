"""``Tensor``: an array, its gradient and its place on the tape.

No array library is imported here: the array is whatever backend array the
Tensor wraps, and every operation goes through :mod:`agrad.ops`.
"""

from __future__ import annotations

from typing import Any

from . import backend, dtypes
from .compile import trace as tracing
from .dtypes import DType

ArrayLike = Any
"""What agrad functions take: a Tensor, a NumPy / CuPy / array-api-strict array, or a
Python scalar (a constant)."""

_AGRAD_DTYPES: dict = {}  # backend dtype class -> {backend dtype -> agrad dtype}, filled on first sight
_object_new = object.__new__  # (the fast constructors make Tensors without __init__)


class Tensor:
    """A backend array that can record the operations applied to it.

    ``data`` is the wrapped NumPy / CuPy / array-api-strict array, ``grad`` a Tensor
    holding the accumulated gradient (leaves only) or None, and ``requires_grad`` says
    whether operations on this tensor are recorded.
    """

    # _data: the array (``data`` checks writes); _tangents: forward-mode tangents,
    # {level: Tensor}, while an agrad.jvp is running. Versions (see agrad.inplace): _vc is
    # the version counter shared by every Tensor on the same memory (None: version 0,
    # shared with nobody yet), _versions the versions of a recorded node's inputs and of
    # its output when it was recorded (None: all 0). _view says how a view was made from
    # the Tensor whose history it follows, _past the nodes an in-place update replaced.
    # Only this module writes _data, _vc, _versions, _view and _past: see "internals" below.
    __slots__ = ("_data", "grad", "requires_grad", "_prim", "_args", "_inputs", "_params", "_tangents",
                 "_vc", "_versions", "_view", "_past", "__weakref__")
    grad: "Tensor | None"
    requires_grad: bool
    # numpy defers to Tensor's reflected operators (ndarray + Tensor -> Tensor.__radd__).
    __array_ufunc__ = None
    __array_priority__ = 1000

    def __init__(self, data: Any, requires_grad: bool = False) -> None:
        alias_of = None
        if isinstance(data, Tensor):
            alias_of, data = data, data._data
        xp = backend.namespace_of((data,), "Tensor")
        if xp is None or not hasattr(data, "shape"):
            xp = backend.creation_namespace()
            data = backend.created(xp.asarray(data))
            if xp.isdtype(data.dtype, "real floating"):  # a Python float: the default floating dtype
                default = backend.resolve_dtype(xp, dtypes.get_default_dtype())
                if data.dtype != default:
                    data = xp.astype(data, default)
        elif data.__class__ is not xp.array_type:
            data = xp.asarray(data)
        elif tracing._TRACER is not None:
            data = tracing._TRACER.as_eager(data)
        self._data = data
        self.grad = None
        self._prim = None
        self._args = None
        self._inputs = None
        self._params = None
        self._tangents = None
        self._vc = None
        self._versions = None
        self._view = None
        self._past = None
        self.requires_grad = False
        if alias_of is not None and data is alias_of._data:  # the same memory: one version counter
            self._vc = shared_counter(alias_of)
        if requires_grad:
            self.requires_grad_(True)

    @property
    def _version(self) -> int:
        """How many times this Tensor's memory was updated in place (through any alias)."""
        vc = self._vc
        return 0 if vc is None else vc[0]

    @_version.setter
    def _version(self, value: int) -> None:
        vc = self._vc
        if vc is None:
            self._vc = [value, "an update"]
        else:
            vc[0] = value

    @property
    def data(self) -> Any:
        """The backend array.

        Assigning a new one updates this tensor. That is allowed under
        ``agrad.no_grad()`` (and for tensors nobody differentiates), and refused for a
        recorded tensor or a leaf that requires a gradient while operations are recorded.
        """
        return self._data

    @data.setter
    def data(self, value: Any) -> None:
        if value is not self._data:  # (``t.data -= x`` updated the array in place already)
            _check_update(self, "assigning to .data")
            if isinstance(value, Tensor):
                value = value._data
            if backend.namespace_of((value,), "Tensor.data") is None:
                raise TypeError(f"agrad: .data must be a backend array, got {type(value).__name__}")
            self._replace_memory(value, "assigning to .data")
        else:
            bump_version(self, "assigning to .data")

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        """Mark this (leaf) tensor as needing a gradient. Only floating dtypes can."""
        if requires_grad:
            xp = backend.namespace_of((self._data,), "requires_grad")
            if not xp.isdtype(self._data.dtype, "real floating"):
                complex_ = xp.isdtype(self._data.dtype, "complex floating")
                raise TypeError(
                    f"agrad: only real floating-point tensors can require a gradient, but this tensor is "
                    f"{backend.describe(self._data)}"
                    + ("; derivatives of complex numbers are not supported yet" if complex_ else
                       "; convert it first, e.g. agrad.astype(x, 'float32')")
                )
            if self._prim is not None:
                raise RuntimeError("agrad: requires_grad_ can only be set on leaf tensors; use .detach() first")
        self.requires_grad = bool(requires_grad)
        return self

    # ----------------------------------------------------------------- internals: the only writers
    # _data, _vc, _versions, _view and _past are assigned here and nowhere else in agrad
    # (tests/test_layout.py scans for writes elsewhere): the tape, in-place updates,
    # optimizers, modules, initialisers and agrad.compile's tracer call these methods.
    # One exception, the compiled replay's fast path: the write-backs that
    # agrad/compile/codegen.py generates assign ``w._data = new`` and ``w._vc[0] += 1``
    # inline (the body of :meth:`_replace_array` for a Tensor whose counter the code
    # generator made beforehand with :func:`shared_counter`), because a method call there
    # would add Python bytecodes to every replayed step.

    @classmethod
    def _constant(cls, data: Any) -> "Tensor":
        """A constant Tensor (no history, no gradient) on ``data``, an array already known
        to be valid: no checks. The fast constructor of unrecorded results and gradients."""
        t = _object_new(cls)
        t._data = data
        t.grad = t._prim = t._args = t._inputs = t._params = t._tangents = t._versions = None
        t._vc = t._view = t._past = None
        t.requires_grad = False
        return t

    @classmethod
    def _node(cls, data: Any, prim: Any, args: tuple, inputs: tuple, params: dict, versions: tuple | None) -> "Tensor":
        """The recorded node ``prim(*args, **params)`` with value ``data`` (no checks): the
        fast constructor of ``tape.apply``, once per recorded op. ``inputs`` are the raw
        arrays of ``args``; ``versions`` the versions of ``args`` and of the output when it
        was recorded (None: all 0)."""
        t = _object_new(cls)
        t._data = data
        t.grad = None
        t.requires_grad = True
        t._prim = prim
        t._args = args
        t._inputs = inputs
        t._params = params
        t._tangents = None
        t._vc = None
        t._versions = versions
        t._view = None
        t._past = None
        return t

    def _shell(self) -> "Tensor":
        """A new Tensor standing for this Tensor's node and tangents as they are now, on its
        memory (sharing its version counter): what uses recorded before an in-place update
        keep (see the tape's ``replace_node``)."""
        s = _object_new(Tensor)
        s._data = self._data
        s.grad = None
        s.requires_grad = self.requires_grad
        s._prim, s._args, s._inputs, s._params, s._versions = (self._prim, self._args, self._inputs, self._params,
                                                                self._versions)
        s._tangents = dict(self._tangents) if self._tangents is not None else None
        s._vc = shared_counter(self)
        s._view = None
        s._past = None
        return s

    def _stand_for(self, node: "Tensor", versions: tuple | None) -> None:
        """Stand for ``node``'s history from now on (``requires_grad``, the primitive, its
        arguments), with ``versions`` as the recorded versions: the tape's
        ``replace_node`` and ``refresh``."""
        self.requires_grad = node.requires_grad
        self._prim, self._args, self._inputs, self._params = node._prim, node._args, node._inputs, node._params
        self._versions = versions

    def _past_record(self) -> "_tape.Past":
        """The record of the nodes in-place updates made this Tensor stop standing for
        (made on first need)."""
        past = self._past
        if past is None:
            past = self._past = _tape.Past()
        return past

    def _mark_view(self, x: "Tensor", prim: Any, params: dict) -> None:
        """This Tensor (made by ``prim`` from ``x``) shares ``x``'s memory: one version
        counter, and the way to make it again from the Tensor whose history it follows."""
        self._vc = shared_counter(x)
        if x._view is not None:
            base, steps = x._view[0], x._view[1]
        else:
            base, steps = x, ()
        self._view = (base, steps + ((prim, params),), _tape.generation(base))

    def _sync_view(self, view: tuple) -> None:
        """This view was made again from its base's new node (the tape's ``refresh``):
        ``view`` is (base, view steps, the base's generation it is now in step with)."""
        self._view = view

    def _share_counter(self, other: "Tensor") -> None:
        """This Tensor is on ``other``'s memory (a new alias): one version counter."""
        self._vc = shared_counter(other)

    def _replace_array(self, new: Any, update: str) -> None:
        """Hold ``new`` instead of the array (same shape and dtype: the same values'
        successor) and bump the version counter, naming the ``update`` ('an optimizer
        step', 'load_state_dict'...): graphs recorded before cannot use the new values
        silently. The counter stays shared with the Tensor's aliases. Optimizers call it
        for every parameter of every step."""
        self._data = new
        vc = self._vc
        if vc is None:
            self._vc = [1, update]
        else:
            vc[0] += 1
            vc[1] = update

    def _replace_memory(self, new: Any, update: str) -> None:
        """Hold ``new``, new memory, instead of the array: no longer an alias of anything
        (a counter of its own, no view), yet graphs that saved this Tensor see a new
        version, named by ``update``. (``.data = ...``; ``t op= x`` where the backend has
        no in-place form.)"""
        self._vc = [self._version, update]
        self._view = None
        self._data = new
        bump_version(self, update)

    def _write(self, key: Any, value: Any, update: str) -> None:
        """``array[key] = value``, in place, and a new version of the memory named by
        ``update`` (every Tensor on it sees it). Nothing is bumped if the write raises."""
        self._data[key] = value
        bump_version(self, update)

    def _trace_swap(self, array: Any) -> None:
        """agrad.compile's tracer only (compile/state.py): hold ``array``, the proxy of the
        same array or, after the trace, the real array back, with no new version (the
        values are the same)."""
        self._data = array

    # ----------------------------------------------------------------- properties
    @property
    def shape(self) -> tuple:
        return tuple(self._data.shape)

    @property
    def dtype(self) -> DType:
        """The agrad dtype (``agrad.float32``...), equal to the backend's own dtype object."""
        d = self._data.dtype
        # One table per dtype class: array-api-strict dtypes hash like NumPy's but must not
        # be compared with them.
        table = _AGRAD_DTYPES.get(d.__class__)
        if table is None:
            table = _AGRAD_DTYPES[d.__class__] = {}
        found = table.get(d)
        if found is None:
            found = table[d] = dtypes.as_dtype(d)
        return found

    @property
    def device(self) -> Any:
        """The array's device object ('cpu' for NumPy, a cupy Device, ...)."""
        return self._data.device

    @property
    def ndim(self) -> int:
        return self._data.ndim

    @property
    def size(self) -> int:
        n = 1
        for s in self._data.shape:
            n *= s
        return n

    @property
    def is_leaf(self) -> bool:
        return self._prim is None

    @property
    def T(self) -> "Tensor":
        if self._data.ndim != 2:
            raise ValueError(f"agrad: .T needs a 2-D tensor, got shape {self.shape}; use .mT or permute_dims")
        return _ops.matrix_transpose(self)

    @property
    def mT(self) -> "Tensor":
        return _ops.matrix_transpose(self)

    def __len__(self) -> int:
        if self._data.ndim == 0:
            raise TypeError("agrad: len() of a 0-D tensor")
        return self._data.shape[0]

    def __repr__(self) -> str:
        extra = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({self._data!r}{extra})"

    # ----------------------------------------------------------------- tape
    def backward(self, grad: Any = None, retain_graph: bool = False, create_graph: bool = False) -> None:
        """Accumulate the gradient of this tensor into ``.grad`` of every leaf.

        ``grad`` is required unless this tensor is a scalar. The graph's saved values
        are freed afterwards unless ``retain_graph`` (or ``create_graph``) is set.
        """
        _tape.backward(self, grad, retain_graph=retain_graph, create_graph=create_graph)

    def detach(self) -> "Tensor":
        """The same data, cut off from the tape and from forward-mode tangents (no copy).
        It shares this Tensor's version counter: an in-place update of either is seen by
        graphs that saved the other (as in PyTorch). Inside agrad.vmap the batched array's
        physical value is cut off too (``detached``)."""
        return detached(self)

    def zero_grad(self) -> None:
        self.grad = None

    # ----------------------------------------------------------------- devices
    def to(self, device: Any) -> "Tensor":
        """Move to ``device`` ('cpu', 'cuda', 'cuda:N', ...); differentiable."""
        return _ops.to_device(self, device)

    def cpu(self) -> "Tensor":
        return _ops.to_device(self, "cpu")

    def numpy(self) -> Any:
        """A host NumPy copy of the data (never a view)."""
        return backend.to_numpy(self._data)

    def item(self) -> Any:
        if self.size != 1:
            raise ValueError(f"agrad: item() needs a tensor with one element, got shape {self.shape}")
        return self.numpy().reshape(()).item()

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        xp = backend.namespace_of((self._data,), "__index__")
        if not xp.isdtype(self._data.dtype, "integral"):
            raise TypeError(f"agrad: only integer tensors can be used as an index, not {backend.describe(self._data)}")
        return int(self.item())

    def __complex__(self) -> complex:
        return complex(self.item())

    def __bool__(self) -> bool:
        return bool(self.item())

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        # NumPy may look inside a NumPy-backed tensor; for any other backend that would
        # be a silent device-to-host copy, so it is refused with the explicit spelling.
        # A traced tensor is refused too: NumPy would keep its values and silently drop
        # the derivative (np.asarray([x, 2 * x]) inside a grad).
        if self.requires_grad or (self._tangents is not None and _tape.is_traced(self)):
            raise TypeError(
                "agrad: numpy cannot read a Tensor that is being differentiated: it would keep the values and "
                "silently drop the derivative. Use agrad ops (agrad.asarray([...]) and agrad.stack are "
                "differentiable), or take the values explicitly with t.detach() or t.numpy()"
            )
        if isinstance(self._data, tracing.TraceArray):  # inside agrad.compile: a clear CompileError
            return self._data.__array__()
        if not backend.is_numpy_array(self._data):
            raise TypeError(
                f"agrad: numpy cannot convert {backend.describe(self._data)} implicitly (it would copy it to the "
                f"host silently); call tensor.numpy() for an explicit host copy"
            )
        if dtype is not None and dtype != self._data.dtype:
            return self._data.astype(dtype)
        return self._data.copy() if copy else self._data

    def __dlpack__(self, /, *, stream: Any = None, max_version: Any = None, dl_device: Any = None,
                   copy: bool | None = None) -> Any:
        kwargs = {k: v for k, v in (("stream", stream), ("max_version", max_version), ("dl_device", dl_device),
                                    ("copy", copy)) if v is not None}
        return self._data.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> Any:
        return self._data.__dlpack_device__()

    # ----------------------------------------------------------------- in-place operators
    # Differentiable where they must be (agrad.inplace has the rules): the Tensor stays
    # the same object and stands for the updated value from then on.
    def __iadd__(self, other): return _inplace.augmented(self, other, "+=")
    def __isub__(self, other): return _inplace.augmented(self, other, "-=")
    def __imul__(self, other): return _inplace.augmented(self, other, "*=")
    def __itruediv__(self, other): return _inplace.augmented(self, other, "/=")
    def __ipow__(self, other): return _inplace.augmented(self, other, "**=")
    def __imod__(self, other): return _inplace.augmented(self, other, "%=")
    def __ifloordiv__(self, other): return _inplace.augmented(self, other, "//=")
    def __iand__(self, other): return _inplace.augmented(self, other, "&=")
    def __ior__(self, other): return _inplace.augmented(self, other, "|=")
    def __ixor__(self, other): return _inplace.augmented(self, other, "^=")
    def __ilshift__(self, other): return _inplace.augmented(self, other, "<<=")
    def __irshift__(self, other): return _inplace.augmented(self, other, ">>=")
    def __imatmul__(self, other): return _inplace.augmented(self, other, "@=")

    # ----------------------------------------------------------------- the array API
    def __array_namespace__(self, /, *, api_version: str | None = None) -> Any:
        """agrad itself: array API code (``xp = array_namespace(x)``) then runs on Tensors,
        and is differentiable."""
        if api_version not in (None, "2023.12", "2024.12"):
            raise ValueError(f"agrad: array API version {api_version!r} is not supported; agrad implements 2024.12")
        import agrad  # (late: agrad imports this module)

        return agrad

    def to_device(self, device: Any, /, *, stream: Any = None) -> "Tensor":
        """The array API's spelling of :meth:`to` (differentiable)."""
        return _ops.to_device(self, device)

    # ----------------------------------------------------------------- operators
    def __add__(self, other): return _ops.add(self, other)
    def __radd__(self, other): return _ops.add(other, self)
    def __sub__(self, other): return _ops.subtract(self, other)
    def __rsub__(self, other): return _ops.subtract(other, self)
    def __mul__(self, other): return _ops.multiply(self, other)
    def __rmul__(self, other): return _ops.multiply(other, self)
    def __truediv__(self, other): return _ops.divide(self, other)
    def __rtruediv__(self, other): return _ops.divide(other, self)
    def __pow__(self, other): return _ops.pow(self, other)
    def __rpow__(self, other): return _ops.pow(other, self)
    def __matmul__(self, other): return _ops.matmul(self, other)
    def __rmatmul__(self, other): return _ops.matmul(other, self)
    def __neg__(self): return _ops.negative(self)
    def __pos__(self): return _ops.positive(self)
    def __abs__(self): return _ops.abs(self)
    def __getitem__(self, key): return _ops.getitem(self, key)

    def __setitem__(self, key, value) -> None:
        """``t[key] = value`` with any index the standard allows (and integer arrays and
        boolean masks), recorded when ``t`` or ``value`` carries a derivative: see
        :mod:`agrad.inplace`."""
        _inplace.setitem(self, key, value)

    # Comparisons give boolean tensors without a gradient.
    def __eq__(self, other): return _ops.equal(self, other)  # type: ignore[override]
    def __ne__(self, other): return _ops.not_equal(self, other)  # type: ignore[override]
    def __lt__(self, other): return _ops.less(self, other)
    def __le__(self, other): return _ops.less_equal(self, other)
    def __gt__(self, other): return _ops.greater(self, other)
    def __ge__(self, other): return _ops.greater_equal(self, other)
    # Bitwise, as the array API says (on booleans they are the logical operations).
    def __and__(self, other): return _ops.bitwise_and(self, other)
    def __rand__(self, other): return _ops.bitwise_and(other, self)
    def __or__(self, other): return _ops.bitwise_or(self, other)
    def __ror__(self, other): return _ops.bitwise_or(other, self)
    def __xor__(self, other): return _ops.bitwise_xor(self, other)
    def __rxor__(self, other): return _ops.bitwise_xor(other, self)
    def __invert__(self): return _ops.bitwise_invert(self)
    def __lshift__(self, other): return _ops.bitwise_left_shift(self, other)
    def __rshift__(self, other): return _ops.bitwise_right_shift(self, other)
    def __mod__(self, other): return _ops.remainder(self, other)
    def __rmod__(self, other): return _ops.remainder(other, self)
    def __floordiv__(self, other): return _ops.floor_divide(self, other)
    def __rfloordiv__(self, other): return _ops.floor_divide(other, self)
    __hash__ = object.__hash__

    # A few array-style methods, for PyTorch/NumPy habits.
    def sum(self, axis=None, keepdims=False): return _ops.sum(self, axis=axis, keepdims=keepdims)
    def mean(self, axis=None, keepdims=False): return _ops.mean(self, axis=axis, keepdims=keepdims)
    def max(self, axis=None, keepdims=False): return _ops.max(self, axis=axis, keepdims=keepdims)
    def min(self, axis=None, keepdims=False): return _ops.min(self, axis=axis, keepdims=keepdims)
    def reshape(self, *shape):
        return _ops.reshape(self, shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape)

    def astype(self, dtype): return _ops.astype(self, dtype)
    def exp(self): return _ops.exp(self)
    def log(self): return _ops.log(self)
    def tanh(self): return _ops.tanh(self)


def version_of(t: Tensor) -> int:
    """The version of ``t``'s memory: how many in-place updates it has seen."""
    vc = t._vc
    return 0 if vc is None else vc[0]


def shared_counter(t: Tensor) -> list:
    """``t``'s version counter, made shareable (a list [version, last update]) if it was not."""
    vc = t._vc
    if vc is None:
        vc = t._vc = [0, "an update"]
    return vc


def bump_version(t: Tensor, what: str) -> None:
    """``t``'s memory was written in place by ``what``: every Tensor on it sees a new version."""
    vc = t._vc
    if vc is None:
        t._vc = [1, what]
    else:
        vc[0] += 1
        vc[1] = what


def detached(t: Tensor) -> Tensor:
    """:func:`alias` cut off from derivatives at every vmap level: a batched array's physical
    value is detached too, else a derivative taken outside the vmap (grad of vmap) would
    still flow through it (detach, stop_gradient). (alias itself keeps the physical value:
    transforms inside a vmap make their input leaves with it, and outer derivatives must
    reach through them.)"""
    data = t._data
    if not hasattr(data, "_vmap_physical"):  # (agrad.batching.BatchedArray: it imports this module)
        return alias(t)
    out = Tensor(data.__class__(detached(data.value), data.bdim, data.level))
    out._share_counter(t)
    return out


def alias(t: Tensor) -> Tensor:
    """A new Tensor on ``t``'s array, with no history or tangents, sharing its version counter."""
    out = Tensor(t._data)
    out._share_counter(t)
    return out


def _check_update(t: Tensor, what: str) -> None:
    """Refuse a replacement of the array that would silently corrupt recorded derivatives."""
    if t._prim is not None:
        raise RuntimeError(
            f"agrad: {what} on a tensor computed by a recorded operation would corrupt the gradients that "
            f"depend on it; compute a new tensor instead (y = y - x), or detach() it first"
        )
    if t.requires_grad and _tape.is_grad_enabled():
        raise RuntimeError(
            f"agrad: {what} on a leaf that requires a gradient, while operations are recorded; do the update "
            f"under `with agrad.no_grad():` (as optimizers do), where it changes the tensor in place and keeps "
            f"requires_grad, or write `w = w - x` for a new, recorded tensor"
        )
    if t._tangents is not None and _tape.is_traced(t):
        raise RuntimeError(f"agrad: {what} on a tensor that carries a forward-mode tangent (inside agrad.jvp)")


# A Tensor's operators and methods call agrad.ops, agrad.tape and agrad.inplace, which all
# import this module: a real cycle, broken here, once Tensor and its helpers exist.
from . import inplace as _inplace  # noqa: E402
from . import ops as _ops  # noqa: E402
from . import tape as _tape  # noqa: E402
