"""Recording for ``agrad.compile``: run a function once on proxy arrays that compute their
real values *and* record every backend operation.

While a tracer is active, every array agrad hands to a backend is a
:class:`TraceArray` (a real array plus a slot number): the tape, the VJP rules, the
optimizers run unchanged on them, through :class:`RecordingNamespace`, so the trace
records exactly what eager execution does, in the same order, with the same dtypes
(a replay is bit-identical to an eager call). Python numbers that must stay live across
replays (a learning rate a scheduler changes, Adam's step count) are
:class:`TraceScalar` proxies. Anything that needs an array's *value* on the Python side
(``bool(x)``, ``float(x)``, ``.item()``, printing, copying to NumPy) cannot be recorded,
and is a :class:`CompileError` while tracing: never a stale replay.

This module records only. What the recording reads from and leaves in the world outside
(parameters, gradients, optimizer state) and the guards that keep a replay honest are
``agrad.compile.state``; the rest of agrad reaches the tracer through
``agrad.compile.hooks``. It imports nothing of agrad but the backend: the tape and the
Tensor read its slot (``_TRACER``) on every operation.
"""

from __future__ import annotations

import operator
from typing import Any, Callable

from .. import backend

__all__ = ["CompileError", "Recorder", "TraceArray", "TraceScalar", "active"]


class CompileError(RuntimeError):
    """Something inside a function being compiled cannot be replayed."""


_VALUE_HELP = ("a compiled function must be a fixed sequence of array operations: move it out of the "
               "function, or write it with array operations (agrad.where instead of an if on values)")

_TRACER: "Recorder | None" = None  # the hook slot: the tracer running now (agrad.compile.state.Tracer)


def active() -> "Recorder | None":
    """The tracer running in this process, or None (``agrad.compile.hooks.active``)."""
    return _TRACER


# --------------------------------------------------------------------------- proxies


def _unwrap(x: Any) -> Any:
    if isinstance(x, (TraceArray, TraceScalar)):
        return x.value
    if isinstance(x, tuple):
        return tuple(_unwrap(e) for e in x)
    if isinstance(x, list):
        return [_unwrap(e) for e in x]
    return x


class TraceScalar:
    """A Python number that a replay reads afresh (a learning rate, a step count)."""

    __slots__ = ("value", "slot", "tracer")

    def __init__(self, value: Any, slot: int, tracer: "Recorder") -> None:
        self.value, self.slot, self.tracer = value, slot, tracer

    def _op(self, fn: Callable, *args: Any) -> Any:
        return self.tracer.call(fn, args, {})

    def __add__(self, o): return self._op(operator.add, self, o)
    def __radd__(self, o): return self._op(operator.add, o, self)
    def __sub__(self, o): return self._op(operator.sub, self, o)
    def __rsub__(self, o): return self._op(operator.sub, o, self)
    def __mul__(self, o): return self._op(operator.mul, self, o)
    def __rmul__(self, o): return self._op(operator.mul, o, self)
    def __truediv__(self, o): return self._op(operator.truediv, self, o)
    def __rtruediv__(self, o): return self._op(operator.truediv, o, self)
    def __pow__(self, o): return self._op(operator.pow, self, o)
    def __rpow__(self, o): return self._op(operator.pow, o, self)
    def __neg__(self): return self._op(operator.neg, self)

    def __bool__(self) -> bool:
        raise CompileError(f"agrad.compile: a decision on a live number ({self.value!r}) inside the compiled "
                           f"function; {_VALUE_HELP}")

    def __float__(self) -> float:
        raise CompileError(f"agrad.compile: float() of a live number inside the compiled function; {_VALUE_HELP}")

    __int__ = __index__ = __float__

    def __repr__(self) -> str:
        return f"TraceScalar({self.value!r})"


class TraceArray:
    """A backend array under tracing: its real value, and the slot that names it."""

    __slots__ = ("value", "slot", "tracer")

    def __init__(self, value: Any, slot: int, tracer: "Recorder") -> None:
        self.value, self.slot, self.tracer = value, slot, tracer

    # ----------------------------------------------------------------- metadata (static)
    @property
    def shape(self) -> tuple:
        return tuple(self.value.shape)

    @property
    def dtype(self) -> Any:
        return self.value.dtype

    @property
    def device(self) -> Any:
        return self.value.device

    @property
    def ndim(self) -> int:
        return self.value.ndim

    @property
    def size(self) -> int:
        return self.value.size

    @property
    def base(self) -> Any:  # (backend.owns_memory asks whether an array owns its memory)
        return getattr(self.value, "base", 0)

    @property
    def mT(self) -> "TraceArray":
        return self.tracer.call(lambda a: a.mT, (self,), {})

    @property
    def T(self) -> "TraceArray":
        return self.tracer.call(lambda a: a.T, (self,), {})

    def __len__(self) -> int:
        return len(self.value)

    # ----------------------------------------------------------------- values are off limits
    def _value_needed(self, what: str) -> Any:
        raise CompileError(f"agrad.compile: {what} needs an array's values while tracing (value-dependent "
                           f"Python control flow, float(x), .item(), printing or a copy to NumPy); {_VALUE_HELP}")

    def __bool__(self) -> bool:
        return self._value_needed("bool(x)")

    def __float__(self) -> float:
        return self._value_needed("float(x)")

    def __int__(self) -> int:
        return self._value_needed("int(x)")

    def __index__(self) -> int:
        return self._value_needed("using an array as an index")

    def __complex__(self) -> complex:
        return self._value_needed("complex(x)")

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        return self._value_needed("converting to a NumPy array")

    def __repr__(self) -> str:
        return self._value_needed("printing an array")

    __str__ = __repr__

    def item(self) -> Any:
        return self._value_needed(".item()")

    def tolist(self) -> Any:
        return self._value_needed(".tolist()")

    def get(self) -> Any:
        return self._value_needed("copying to the host")

    def __iter__(self):
        return self._value_needed("iterating over an array")

    # ----------------------------------------------------------------- operations (recorded)
    def __getitem__(self, key): return self.tracer.call(operator.getitem, (self, key), {})

    def __setitem__(self, key, value) -> None:
        self._writable()
        self.tracer.call(operator.setitem, (self, key, value), {}, mutates=self)

    def _writable(self) -> None:
        """Before an in-place write: NumPy computes 0-d results as immutable scalars, which
        eager agrad holds as 0-d arrays; from here on this proxy (and every Tensor holding
        it) is such an array, made by a recorded conversion."""
        if backend.is_numpy_scalar(self.value):
            array = self.tracer.call(self.tracer.home.asarray, (self,), {})
            self.value, self.slot = array.value, array.slot

    def __array_namespace__(self, *args, **kwargs):
        return self.tracer.namespace


def _binary(fn: Callable, name: str):
    def op(self, other):
        return self.tracer.call(fn, (self, other), {})

    def rop(self, other):
        return self.tracer.call(fn, (other, self), {})

    op.__name__, rop.__name__ = f"__{name}__", f"__r{name}__"
    return op, rop


def _inplace(fn: Callable, name: str):
    def iop(self, other):
        self._writable()
        return self.tracer.call(fn, (self, other), {}, mutates=self)

    iop.__name__ = f"__i{name}__"
    return iop


for _name, _fn, _ifn in [("add", operator.add, operator.iadd), ("sub", operator.sub, operator.isub),
                         ("mul", operator.mul, operator.imul), ("truediv", operator.truediv, operator.itruediv),
                         ("floordiv", operator.floordiv, operator.ifloordiv), ("mod", operator.mod, operator.imod),
                         ("pow", operator.pow, operator.ipow), ("matmul", operator.matmul, operator.imatmul),
                         ("and", operator.and_, operator.iand), ("or", operator.or_, operator.ior),
                         ("xor", operator.xor, operator.ixor), ("lshift", operator.lshift, operator.ilshift),
                         ("rshift", operator.rshift, operator.irshift)]:
    _op, _rop = _binary(_fn, _name)
    setattr(TraceArray, f"__{_name}__", _op)
    setattr(TraceArray, f"__r{_name}__", _rop)
    setattr(TraceArray, f"__i{_name}__", _inplace(_ifn, _name))
for _name, _fn in [("lt", operator.lt), ("le", operator.le), ("gt", operator.gt), ("ge", operator.ge),
                   ("eq", operator.eq), ("ne", operator.ne)]:
    setattr(TraceArray, f"__{_name}__", _binary(_fn, _name)[0])
for _name, _fn in [("neg", operator.neg), ("pos", operator.pos), ("abs", operator.abs), ("invert", operator.invert)]:
    setattr(TraceArray, f"__{_name}__", (lambda f: lambda self: self.tracer.call(f, (self,), {}))(_fn))
TraceArray.__hash__ = object.__hash__  # type: ignore[assignment]
backend._PROXY_TYPES[TraceArray] = operator.attrgetter("value")


# --------------------------------------------------------------------------- the recording namespace

# Queries that look at dtypes, shapes or devices only: computed at trace time, not recorded.
_STATIC = {"isdtype", "result_type", "can_cast", "finfo", "iinfo", "name", "array_type", "multi_device", "mutable",
           "broadcast_shapes", "__array_namespace_info__"}


class RecordingNamespace:
    """An array namespace whose functions compute with the real backend and record the call."""

    def __init__(self, tracer: "Recorder", home: Any, prefix: str = "") -> None:
        self._tracer, self._home, self._prefix = tracer, home, prefix
        self.name = home.name
        self.array_type = TraceArray
        self.multi_device = home.multi_device
        self.mutable = home.mutable

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        target = getattr(self._home, name)
        if name in _STATIC or not callable(target) or isinstance(target, type):  # (NumPy's dtypes are classes)
            if name in ("linalg", "fft") and target is not None:
                return RecordingNamespace._sub(self._tracer, target, self._home)
            return target

        def recorded(*args: Any, **kwargs: Any) -> Any:
            return self._tracer.call(target, args, kwargs)

        recorded.__name__ = name
        return recorded

    @staticmethod
    def _sub(tracer: "Recorder", module: Any, home: Any) -> "RecordingNamespace":
        sub = RecordingNamespace.__new__(RecordingNamespace)
        sub._tracer, sub._home, sub._prefix = tracer, module, ""
        sub.name, sub.array_type, sub.multi_device, sub.mutable = home.name, TraceArray, home.multi_device, home.mutable
        return sub


# --------------------------------------------------------------------------- the tracer


class Instruction:
    """``outs = fn(*args, **kwargs)`` on slots (``_Slot`` entries in the arguments);
    ``mutates`` is the slot an in-place operation writes into (its first argument)."""

    __slots__ = ("fn", "args", "kwargs", "outs", "out_kind", "mutates")

    def __init__(self, fn: Callable, args: Any, kwargs: Any, outs: Any, out_kind: str,
                 mutates: int | None = None) -> None:
        self.fn, self.args, self.kwargs, self.outs, self.out_kind = fn, args, kwargs, outs, out_kind
        self.mutates = mutates


class _Slot:
    __slots__ = ("k",)

    def __init__(self, k: int) -> None:
        self.k = k


class Recorder:
    """Records the backend operations of one call: the instructions on numbered slots, and
    the outside arrays and numbers they read (``sources``). ``agrad.compile.state.Tracer``
    adds what the recording reads from and writes back to the world outside."""

    def __init__(self, home: Any) -> None:
        self.home = home
        self.namespace = RecordingNamespace(self, home)
        self.instructions: list[Instruction] = []
        self.n_slots = 0
        self.sources: list[tuple] = []  # (slot, kind, where...) for arrays and numbers read from outside
        self.numbers: set[int] = set()  # slots holding Python numbers (the rest hold arrays)
        self.source_values: dict[int, Any] = {}  # slot -> the outside array it was read from
        self.source_meta: dict[int, Any] = {}  # slot -> what the source looked like when first read
        self.values: dict[int, Any] = {}  # slot -> its value in the traced call (to fold constants)
        self.by_id: dict[int, TraceArray] = {}  # id(real array) -> its proxy (one slot per outside array)
        self.keep: list[Any] = []  # keeps outside arrays alive, so that their ids stay unique

    # ----------------------------------------------------------------- slots
    def new_slot(self) -> int:
        self.n_slots += 1
        return self.n_slots - 1

    def source_array(self, value: Any, kind: str, *where: Any) -> TraceArray:
        """The proxy of an array that comes from outside the trace (read afresh at replay)."""
        found = self.by_id.get(id(value))
        if found is not None:
            self.met_again(found, kind, where)
            return found
        t = TraceArray(value, self.new_slot(), self)
        self.by_id[id(value)] = t
        self.keep.append(value)
        self.sources.append((t.slot, kind, *where))
        self.first_read(t, value, kind, where)
        self.source_meta[t.slot] = _meta(value)
        self.source_values[t.slot] = value
        return t

    def met_again(self, proxy: TraceArray, kind: str, where: tuple) -> None:
        """An outside array read before is read again, as ``kind`` at ``where``."""

    def first_read(self, proxy: TraceArray, value: Any, kind: str, where: tuple) -> None:
        """An outside array is read for the first time."""

    def note_created(self, x: Any) -> None:
        """``x`` was made by agrad while tracing (``backend.created``)."""

    def as_eager(self, x: Any) -> Any:
        """``x`` as eager agrad holds it: where eager code turns NumPy's 0-d scalar results
        into 0-d arrays (``backend.as_array``), the trace does too, by a recorded call, so
        that what follows computes with arrays, bit for bit as eagerly (NumPy's scalar and
        array arithmetic may differ in the last bit)."""
        if x.__class__ is TraceArray and backend.is_numpy_scalar(x.value):
            return self.call(self.home.asarray, (x,), {})
        return x

    def source_scalar(self, value: Any, kind: str, *where: Any) -> TraceScalar:
        """The proxy of a Python number from outside the trace (read afresh at replay)."""
        s = TraceScalar(value, self.new_slot(), self)
        self.numbers.add(s.slot)
        self.sources.append((s.slot, kind, *where))
        self.source_meta[s.slot] = type(value)
        return s

    def value_of(self, slot: int) -> Any:
        """A slot's value in the traced call (None for parts of tuple results)."""
        return self.values.get(slot, self.source_values.get(slot))

    # ----------------------------------------------------------------- recording
    def _spec(self, x: Any) -> Any:
        if isinstance(x, (TraceArray, TraceScalar)):
            return _Slot(x.slot)
        if isinstance(x, tuple):
            return tuple(self._spec(e) for e in x)
        if isinstance(x, list):
            return [self._spec(e) for e in x]
        if _is_backend_array(x):  # an outside array met directly: a constant of the program
            return _Slot(self.source_array(x, "const", x).slot)
        return x

    def call(self, fn: Callable, args: tuple, kwargs: dict, mutates: TraceArray | None = None) -> Any:
        """Run ``fn`` on the real values and record it; returns proxies of the results."""
        spec_args, spec_kwargs = self._spec(args), {k: self._spec(v) for k, v in kwargs.items()}
        value = fn(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()})
        target = mutates.slot if mutates is not None else None
        if mutates is not None and fn is operator.setitem:
            self.instructions.append(Instruction(fn, spec_args, spec_kwargs, None, "none", target))
            return None
        out, kind, outs = self._wrap_result(value, args)
        self.instructions.append(Instruction(fn, spec_args, spec_kwargs, outs, kind, target))
        if kind == "one":
            self.values[outs] = value
        return out

    def _wrap_result(self, value: Any, args: tuple) -> tuple[Any, str, Any]:
        if _is_backend_array(value) or _is_array_scalar(value):
            t = TraceArray(value, self.new_slot(), self)
            return t, "one", t.slot
        if isinstance(value, (bool, int, float)) and any(isinstance(a, TraceScalar) for a in args):
            s = TraceScalar(value, self.new_slot(), self)
            self.numbers.add(s.slot)
            return s, "one", s.slot
        if isinstance(value, tuple) and all(_is_backend_array(v) or _is_array_scalar(v) for v in value):
            ts = [TraceArray(v, self.new_slot(), self) for v in value]
            return type(value)(*ts) if hasattr(value, "_fields") else tuple(ts), "tuple", tuple(t.slot for t in ts)
        if isinstance(value, (bool, int, float, str)) or value is None:
            return value, "const", value  # (a Python value from static inputs: baked in)
        raise CompileError(f"agrad.compile: cannot record a result of type {type(value).__name__}")


def _meta(a: Any) -> tuple:
    """What a replay assumes about an array: its type, shape, dtype and device."""
    device = getattr(a, "device", None)
    # cheap and hashable: checked on every replay (NumPy's device is the string "cpu")
    return (a.__class__, a.shape, a.dtype, device if device.__class__ is str else str(device))


def _is_array_scalar(x: Any) -> bool:
    """A NumPy scalar, what NumPy returns for a 0-d result: a value computed from arrays,
    never a constant to bake in (np.float64 is a Python float too)."""
    return x.__class__ not in (bool, int, float, complex) and hasattr(x, "dtype") and hasattr(x, "shape")


def _is_backend_array(x: Any) -> bool:
    if x is None or isinstance(x, (bool, int, float, complex, str, TraceArray, TraceScalar)):
        return False
    if backend.is_array_wrapper(x):  # (agrad.vmap's batched arrays: their physical arrays are adopted)
        return False
    ns = backend._BY_TYPE.get(x.__class__)
    if ns is not None:
        return x.__class__ is ns.array_type or hasattr(x, "shape")
    return hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, type)


def begin(tracer: Recorder) -> None:
    global _TRACER
    if _TRACER is not None:
        raise CompileError("agrad.compile: a compiled function called while another is being traced; compile the "
                           "outer function only")
    _TRACER = tracer
    backend._BY_TYPE[TraceArray] = tracer.namespace  # namespace_of(proxies) is the recording namespace
    backend._CREATION_HOOK[0] = tracer.note_created


def end() -> None:
    global _TRACER
    _TRACER = None
    backend._BY_TYPE.pop(TraceArray, None)
    backend._CREATION_HOOK[0] = None
