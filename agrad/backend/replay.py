"""``out=`` for agrad.compile's replays on libraries with ufuncs (NumPy, CuPy).

A compiled replay writes each result into a buffer it keeps (``out=``); the standard has
no ``out=``, so only backends whose library has one mix :class:`UfuncReplays` in.
"""

from __future__ import annotations

from typing import Any

from .base import ArrayNamespace

_OPERATOR_UFUNCS = {"add": "add", "sub": "subtract", "mul": "multiply", "truediv": "divide", "neg": "negative",
                    "pow": "power"}
_IN_PLACE_ARITHMETIC = {"iadd", "isub", "imul", "itruediv", "ipow"}
REDUCTIONS = ("sum", "max", "min", "mean")


class UfuncReplays:
    """The ``out=`` functions of a library with ufuncs: ``library()`` is its module
    (numpy, cupy), ``ufunc_type()`` its ufunc class, :meth:`reduction_into` its
    reductions with ``out=``."""

    def library(self) -> Any:
        raise NotImplementedError

    def ufunc_type(self) -> type:
        raise NotImplementedError

    def special_out_function(self, fn: Any) -> Any:
        """``fn`` itself where it is one of the backend's own ``out=`` capable helpers."""
        return None

    def reduction_into(self, reduction: str, xp: ArrayNamespace, operand: Any, keywords: tuple,
                       result: Any) -> Any:
        return getattr(self.library(), reduction)

    def out_function(self, fn: Any, xp: ArrayNamespace, operand: Any = None, keywords: tuple = (),
                     result: Any = None) -> Any:
        """A function that computes what ``fn`` computes into a given array (``out=``), for
        agrad.compile's replays on NumPy and CuPy; None where there is none. With the traced
        call's first ``operand`` and ``keywords``, a NumPy reduction of a float array with an
        explicit axis is the ufunc's own ``reduce`` (what the eager reduction calls), without
        the wrapper that checks the dtype on every call; with its ``result`` too, a NumPy mean
        of a float array divides by the count the trace found (a replay's shapes are the
        traced ones)."""
        module = self.library()
        if isinstance(fn, self.ufunc_type()):
            return fn
        name = getattr(fn, "__name__", "")
        if getattr(fn, "__module__", None) == "_operator" and name in _OPERATOR_UFUNCS:
            return getattr(module, _OPERATOR_UFUNCS[name])
        if fn is getattr(xp, "matmul", None):
            return module.matmul
        special = self.special_out_function(fn)
        if special is not None:
            return special
        for reduction in REDUCTIONS:
            if fn is getattr(xp, reduction, None):
                return self.reduction_into(reduction, xp, operand, keywords, result)
        if fn is getattr(xp, "astype", None):
            return astype_into(module)
        return None

    def is_elementwise(self, fn: Any, xp: ArrayNamespace) -> bool:
        """Whether ``fn`` is an elementwise NumPy/CuPy operation (a ufunc, or in-place
        arithmetic), where a 0-d array may stand for a Python number."""
        if isinstance(self.out_function(fn, xp), self.ufunc_type()):
            return True
        return getattr(fn, "__module__", None) == "_operator" and getattr(fn, "__name__", "") in _IN_PLACE_ARITHMETIC


def copied_into(fn: Any) -> Any:
    """``fn``'s reduction computed, then copied into ``out`` (for CuPy's min and max)."""

    def into(x: Any, /, *, axis: Any = None, keepdims: bool = False, out: Any = None) -> Any:
        out[...] = fn(x, axis=axis, keepdims=keepdims)
        return out

    return into


def astype_into(module: Any) -> Any:
    def astype_into(x: Any, dtype: Any, copy: bool = True, device: Any = None, out: Any = None) -> Any:
        module.copyto(out, x, casting="unsafe")  # what astype computes, into ``out``
        return out

    return astype_into
