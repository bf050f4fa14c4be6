"""In-place updates that differentiate: ``t op= x`` and ``t[key] = x``, as in PyTorch.

The rules:

- An update is *recorded* when its target or its value carries a derivative: it
  requires a gradient or has a recorded history (while the tape records), or it carries
  a forward-mode tangent. The Tensor stays the same Python object and stands for the
  updated value from then on; uses recorded before keep the old value's history.
- A leaf that requires a gradient, or a view of one, cannot be updated in place while
  the tape records (a clear error); under ``agrad.no_grad()`` it is updated as it is,
  which is how optimizers work.
- Anything else (nothing carries a derivative, or the tape is off) is updated in place
  and nothing is recorded; under ``no_grad`` a recorded tensor keeps its history.
- Every update bumps the version of the memory, one counter for all the Tensors on it
  (views, detached aliases). A recorded derivative that needs values an update has
  overwritten is an error at backward that names the op and the update, never a
  stale answer.
- An update of a view (basic indexing, reshape, transposes...; whatever returns a view
  on NumPy, CuPy or array-api-strict) writes through to its base, and when recorded it
  reaches the base's history: later uses of the base, and of its other views, see the
  update and its derivative.

A recorded update computes the new value with differentiable ops from a *shell* of the
target (a Tensor standing for its old node), writes it into the target's array, and makes
the target stand for the new node (see the tape's ``replace_node``).
"""

from __future__ import annotations

from typing import Any, Callable

from . import backend, forward_mode, tape
from . import ops as _ops  # (agrad.ops imports this module: a real cycle; only called at run time)
from .batching import batched
from .compile import trace as tracing
from .tensor import Tensor, bump_version


def augmented(t: Tensor, other: Any, op: str) -> Tensor:
    """``t op= other``: the same Tensor afterwards, with its shape and dtype (as NumPy
    and PyTorch), its array updated in place."""
    what = f"`{op}`"
    tape.fresh(t)
    tape.fresh(other)
    _check_writable(t, what)
    _check_batched(t, other, (), what)
    fn_name, copy_first = _FUNCTIONS[op]
    if not _recorded(t, other):
        if t._data.__class__ is batched.BatchedArray:
            return _augmented_batched(t, other, op, copy_first)
        return _augmented_in_place(t, other, op)
    _check_target(t, what)
    fn = getattr(_ops, fn_name)
    if isinstance(other, Tensor) and other._vc is not None and other._vc is t._vc and \
            _ops.isdtype(other.dtype, "real floating"):
        other = _ops.positive(other)  # on the memory written (z[1] *= z[0]): a copy the write cannot touch

    def compute(current: Tensor) -> Tensor:
        if copy_first and _ops.isdtype(current.dtype, "real floating"):
            current = _ops.positive(current)  # the op's derivative reads it: likewise
        return _fit(fn(current, other), t, op)

    _update(t, compute, what)
    return t


def setitem(t: Tensor, key: Any, value: Any) -> None:
    """``t[key] = value`` for every key :func:`agrad.ops.shapes.assign` takes."""
    what = "item assignment"
    tape.fresh(t)
    tape.fresh(value)
    _check_writable(t, what)
    _check_batched(t, value, key if isinstance(key, tuple) else (key,), what)
    raw = value._data if isinstance(value, Tensor) else value
    backend.namespace_of((t._data, raw), "Tensor.__setitem__")
    if not _recorded(t, value):
        _setitem_in_place(t, key, raw)
        return
    _check_target(t, what)
    _update(t, lambda current: _ops.assign(current, key, value), what)


# --------------------------------------------------------------------------- recorded updates


def _recorded(t: Tensor, value: Any) -> bool:
    if tape.is_grad_enabled() and (t.requires_grad or (isinstance(value, Tensor) and value.requires_grad)):
        return True
    return bool(forward_mode.active_levels((t, value)))


def _check_target(t: Tensor, what: str) -> None:
    if not tape.is_grad_enabled():
        return
    if t._prim is None and t.requires_grad:
        raise RuntimeError(
            f"agrad: {what} on a leaf that requires a gradient, while operations are recorded; do the update "
            f"under `with agrad.no_grad():` (as optimizers do), where it changes the tensor in place and keeps "
            f"requires_grad, or write `w = w - x` for a new, recorded tensor"
        )
    if t._view is not None:
        base = t._view[0]
        if base._prim is None and base.requires_grad:
            raise RuntimeError(
                f"agrad: {what} on a view of a leaf that requires a gradient, while operations are recorded "
                f"(the update would change the leaf); do it under `with agrad.no_grad():`, or update a copy "
                f"(agrad.asarray(w, copy=True))"
            )


def _check_batched(t: Tensor, value: Any, key: tuple, what: str) -> None:
    """Inside agrad.vmap: an array can hold one value per example only of the vmaps that
    batch it. A value (or index) batched by a vmap that does not batch ``t`` (made outside
    the mapped function, or batched by an outer vmap only) cannot be written into it."""
    need = batched.levels(value)
    for k in key:
        need |= batched.levels(k)
    if not need or need <= batched.levels(t):
        return
    culprit = value if batched.levels(value) - batched.levels(t) else next(
        k for k in key if batched.levels(k) - batched.levels(t))
    raw = culprit._data if isinstance(culprit, Tensor) else culprit
    raise batched.VmapError(
        f"agrad.vmap: {what} writes {backend.describe(raw)} (one per example) into {backend.describe(t._data)}, "
        f"which that vmap does not batch (it was made outside the mapped function, or batched by an outer vmap "
        f"only), so it cannot hold a value for each example. Create the array inside the mapped function "
        f"(e.g. agrad.zeros_like(x)), or compute a new array (t + v, agrad.where, agrad.assign) instead of "
        f"updating it in place")


def _check_writable(t: Tensor, what: str) -> None:
    if t._view is not None and any(prim.view is tape.read_only_view for prim, _ in t._view[1]):
        raise ValueError(f"agrad: {what} on a broadcast view ({backend.describe(t._data)}): several of its elements "
                         f"share one memory location, so it cannot be updated in place; make a copy first "
                         f"(agrad.asarray(t, copy=True))")


def _update(t: Tensor, compute: Callable[[Tensor], Tensor], what: str) -> None:
    """Record ``t := compute(t)``, written into ``t``'s array."""
    tracer = tracing.active()
    if tracer is not None:  # the write must reach the array the trace reads t from
        tracer.adopt_tensor(t)
    view = t._view
    if view is None:
        old = t._shell()
        new = compute(old)
        _write(t, new, what)
        tape.replace_node(t, new, old)
        return
    # A view: the new value is computed from the same view of the base's node, and the
    # base's new node is the old one with that part replaced.
    base, steps, _ = view
    if tracer is not None:
        tracer.adopt_tensor(base)
    old_base = base._shell()
    current = _apply(old_base, steps)
    new = compute(current)
    new_base = _write_back(old_base, steps, new)
    _write(t, new, what)
    tape.replace_node(base, new_base, old_base)
    tape.refresh(t)


def _apply(x: Tensor, steps: tuple) -> Tensor:
    for prim, params in steps:
        x = tape.apply(prim, x, **params)
    return x


def _write_back(base: Tensor, steps: tuple, new: Tensor) -> Tensor:
    """``base`` with the part that ``steps`` view replaced by ``new``."""
    if not steps:
        return new
    prim, params = steps[0]
    inner = tape.apply(prim, base, **params)
    return prim.view(base, _write_back(inner, steps[1:], new), **params)


def _write(t: Tensor, new: Tensor, what: str) -> None:
    """``new``'s values written into ``t``'s array, and a new version of its memory."""
    try:
        t._write(..., new._data, what)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"agrad: {what} cannot write into {backend.describe(t._data)}: {exc}") from None


def _fit(y: Tensor, t: Tensor, op: str) -> Tensor:
    """``y`` in ``t``'s shape and dtype, as an in-place update must leave it."""
    if y.shape != t.shape:
        raise ValueError(f"agrad: `{op}` would change {backend.describe(t._data)} into {backend.describe(y._data)}; "
                         f"an in-place update keeps the shape")
    if y.dtype != t.dtype:
        if _KIND[_kind(y)] > _KIND[_kind(t)]:  # NumPy's same_kind rule: a float into an integer array is refused
            raise TypeError(f"agrad: `{op}` cannot update {backend.describe(t._data)} in place with a result of "
                            f"dtype {y.dtype}: it would lose its kind")
        y = _ops.astype(y, t.dtype)
    return y


_KIND = {"bool": 0, "integral": 1, "real floating": 2, "complex floating": 3}


def _kind(x: Tensor) -> str:
    for kind in ("bool", "integral", "real floating"):
        if _ops.isdtype(x.dtype, kind):
            return kind
    return "complex floating"


# `op=` -> (agrad's function, whether that function's derivative reads its first argument)
_FUNCTIONS = {"+=": ("add", False), "-=": ("subtract", False), "*=": ("multiply", True), "/=": ("divide", False),
              "**=": ("pow", True), "%=": ("remainder", True), "//=": ("floor_divide", False),
              "&=": ("bitwise_and", False), "|=": ("bitwise_or", False), "^=": ("bitwise_xor", False),
              "<<=": ("bitwise_left_shift", False), ">>=": ("bitwise_right_shift", False), "@=": ("matmul", True)}


# --------------------------------------------------------------------------- unrecorded updates


def _augmented_batched(t: Tensor, other: Any, op: str, copy_first: bool) -> Tensor:
    """``t op= other`` on a batched Tensor (inside agrad.vmap): the new value written into
    the physical array (a batched array has no in-place operators of its own), so that the
    update reaches what ``t`` is a view of, and is recorded there when the physical arrays
    are traced. As for a recorded update, what the op's derivative reads is a copy, never
    the memory written over."""
    if copy_first:
        t_now = _ops.shapes._copy(t)
    else:
        t_now = t
    if isinstance(other, Tensor) and other._vc is not None and other._vc is t._vc:
        other = _ops.shapes._copy(other)
    new = _fit(getattr(_ops, _FUNCTIONS[op][0])(t_now, other), t, op)
    setitem(t, Ellipsis, new)
    return t


def _augmented_in_place(t: Tensor, other: Any, op: str) -> Tensor:
    """The backend array's own in-place operator (a new array where the backend has no
    in-place form; the Tensor is updated either way)."""
    raw = other._data if isinstance(other, Tensor) else other
    backend.namespace_of((t._data, raw), f"Tensor `{op}`")
    tracer = tracing.active()
    if tracer is not None:
        tracer.adopt_tensor(t)
    data = t._data
    try:
        data = _IN_PLACE[op](data, raw)
    except (TypeError, ValueError) as exc:  # a cast that loses kind, or a broadcast that grows t
        raise type(exc)(f"agrad: `{op}` cannot update {backend.describe(t._data)} with "
                        f"{backend.describe(raw)} in place: {exc}") from None
    if tuple(data.shape) != tuple(t._data.shape) or data.dtype != t._data.dtype:
        raise ValueError(f"agrad: `{op}` would change {backend.describe(t._data)} into "
                         f"{backend.describe(data)}; an in-place update keeps the shape and dtype")
    if data is t._data:
        bump_version(t, f"`{op}`")
    elif tracer is None:  # no in-place form: the array is new, and shares nothing any more
        t._replace_memory(data, f"`{op}`")
    else:  # (while agrad.compile traces: the proxy of the array updated in place)
        t._replace_array(data, f"`{op}`")
    return t


def _setitem_in_place(t: Tensor, key: Any, raw: Any) -> None:
    tracer = tracing.active()
    if tracer is not None:
        tracer.adopt_tensor(t)
    if isinstance(key, Tensor):
        key = key._data
    elif isinstance(key, tuple):
        key = tuple(k._data if isinstance(k, Tensor) else k for k in key)
    if t._data.__class__ is not batched.BatchedArray and \
            backend.namespace_of((t._data,), "setitem").backend.narrow_setitem:
        # (a batched array takes every key: agrad.batching.batched.setitem, which records the physical
        # update where the physical arrays are traced, as no_grad here would not)
        # The standard's __setitem__ takes no None, no integer arrays (on array-api-strict),
        # and no key naming fewer axes than the array has (NumPy's habit, kept by agrad):
        # such updates are computed as a recorded update would compute them, then written.
        scalar_mask = hasattr(key, "ndim") and key.ndim == 0
        normal = key if scalar_mask else _ops.shapes._normalize_key(t, key, t.ndim)
        if scalar_mask or any(k is None or backend.is_index_array(k) for k in normal):
            with tape.no_grad():
                raw = _ops.assign(Tensor(t._data), key, raw)._data
            normal = ...
        key = normal
    try:
        t._write(key, raw, "item assignment")
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"agrad: item assignment cannot write into {backend.describe(t._data)}: {exc}") from None


def _iadd(a, b): a += b; return a  # noqa: E702
def _isub(a, b): a -= b; return a  # noqa: E702
def _imul(a, b): a *= b; return a  # noqa: E702
def _itruediv(a, b): a /= b; return a  # noqa: E702
def _ipow(a, b): a **= b; return a  # noqa: E702
def _imod(a, b): a %= b; return a  # noqa: E702
def _ifloordiv(a, b): a //= b; return a  # noqa: E702
def _iand(a, b): a &= b; return a  # noqa: E702
def _ior(a, b): a |= b; return a  # noqa: E702
def _ixor(a, b): a ^= b; return a  # noqa: E702
def _ilshift(a, b): a <<= b; return a  # noqa: E702
def _irshift(a, b): a >>= b; return a  # noqa: E702
def _imatmul(a, b): a @= b; return a  # noqa: E702


_IN_PLACE = {"+=": _iadd, "-=": _isub, "*=": _imul, "/=": _itruediv, "**=": _ipow, "%=": _imod, "//=": _ifloordiv,
             "&=": _iand, "|=": _ior, "^=": _ixor, "<<=": _ilshift, ">>=": _irshift, "@=": _imatmul}
