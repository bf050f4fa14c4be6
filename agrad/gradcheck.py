"""Finite-difference gradient checking.

The analytic gradient is computed where the inputs live (any backend, any dtype);
the reference is a central difference of float64 copies of the inputs, evaluated where
the inputs live too, so that ``f`` may use arrays of its backend and device (a model's
weights on a GPU, an index array): a float32 gradient on a GPU is checked against a
float64 difference computed there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from . import backend, ops, tape
from .tensor import Tensor


class GradcheckError(AssertionError):
    """An analytic gradient disagrees with finite differences."""


@dataclass
class GradcheckResult:
    ok: bool
    max_abs_error: float
    report: str


def _host64(x: Any) -> Any:
    raw = x.data if isinstance(x, Tensor) else x
    arr = backend.to_numpy(raw)
    hp = backend.host_namespace()
    if hp.isdtype(arr.dtype, "real floating"):
        arr = hp.astype(arr, hp.float64)
    return arr


def _is_float(x: Any) -> bool:
    raw = x.data if isinstance(x, Tensor) else x
    xp = backend.namespace_of((raw,), "check_grad")
    return xp is not None and hasattr(raw, "dtype") and xp.isdtype(raw.dtype, "real floating")


def _projected(f: Callable, u: dict) -> Callable:
    """L(xs) = sum(f(xs) * u): a scalar whose gradient is the VJP with u."""

    def scalar(*xs: Any) -> Tensor:
        out = f(*xs)
        if not isinstance(out, Tensor):
            raise TypeError(f"agrad.check_grad: f must return a Tensor, got {type(out).__name__}")
        if out.shape == ():
            return out  # already a scalar: its gradient is the one to check
        if "u" not in u:
            rng = backend.host_rng(u["seed"])
            u["host"] = rng.standard_normal(out.shape)
            u["u"] = {}
        key = (backend.namespace_of((out.data,), "check_grad").name, str(out.device), str(out.dtype))
        if key not in u["u"]:
            raw = backend.from_numpy(u["host"], backend=key[0], device=out.device)
            xp = backend.namespace_of((raw,), "check_grad")
            u["u"][key] = xp.astype(raw, out.data.dtype)
        return ops.sum(out * u["u"][key])

    return scalar


def check_grad(f: Callable, *inputs: Any, wrt: Sequence[int] | None = None, eps: float = 1e-6,
               atol: float | None = None, rtol: float | None = None, mode: str = "full",
               num_directions: int = 3, order: int = 1, seed: int = 0, raise_exception: bool = True
               ) -> GradcheckResult:
    """Check the gradient of ``f`` at ``inputs`` against central finite differences.

    Args:
        f: a function of Tensors returning a Tensor of any shape (non-scalar outputs
            are projected on a fixed random vector).
        inputs: Tensors or arrays, on any backend and device.
        wrt: indices of the inputs to check (default: every floating-point input).
        eps: finite-difference step, applied to float64 copies of the inputs.
        mode: "full" perturbs every element; "random" checks ``num_directions``
            random directional derivatives (cheap for large inputs).
        order: 1 checks the VJP; 2 also checks the derivative of the VJP (it
            differentiates x -> <grad f(x), w> for a random w).
        raise_exception: raise :class:`GradcheckError` on failure (else return).

    Returns a :class:`GradcheckResult`; on failure the report names the worst element
    (input, index, analytic, numeric).
    """
    if mode not in ("full", "random"):
        raise ValueError(f"agrad.check_grad: mode must be 'full' or 'random', got {mode!r}")
    if order not in (1, 2):
        raise ValueError(f"agrad.check_grad: order must be 1 or 2, got {order!r}")
    wrt = [i for i, x in enumerate(inputs) if _is_float(x)] if wrt is None else list(wrt)
    if not wrt:
        raise ValueError("agrad.check_grad: no floating-point input to check")
    scalar = _projected(f, {"seed": seed})
    result = _check_first_order(scalar, inputs, wrt, eps, atol, rtol, mode, num_directions, seed)
    if result.ok and order == 2:
        second = _gradient_projection(scalar, wrt, seed + 1, inputs)
        result2 = _check_first_order(second, inputs, wrt, eps, atol, rtol, mode, num_directions, seed + 2)
        result = GradcheckResult(result2.ok, max(result.max_abs_error, result2.max_abs_error),
                                 "second order: " + result2.report)
    if not result.ok and raise_exception:
        raise GradcheckError(result.report)
    return result


def _gradient_projection(scalar: Callable, wrt: list[int], seed: int, inputs: Sequence[Any]) -> Callable:
    """x -> sum_i <dL/dx_i, w_i>, recorded so that it can be differentiated again."""
    rng = backend.host_rng(seed)
    w_host = {i: rng.standard_normal(_host64(inputs[i]).shape) for i in wrt}

    def h(*xs: Any) -> Tensor:
        xs = list(xs)
        for i in wrt:  # on the finite-difference side the inputs are plain constants
            if not xs[i].requires_grad:
                xs[i] = Tensor(xs[i].data, requires_grad=True)
        targets = [xs[i] for i in wrt]
        with tape.enable_grad():
            out = scalar(*xs)
            grads = tape.gradients([out], targets, create_graph=True)
        total = None
        for i, g in zip(wrt, grads):
            w = backend.from_numpy(w_host[i], backend=backend.namespace_of((g.data,), "check_grad").name,
                                   device=g.device)
            term = ops.sum(g * ops.astype(Tensor(w), g.dtype))
            total = term if total is None else total + term
        return total

    return h


def _leaves(inputs: Sequence[Any], wrt: list[int]) -> list[Any]:
    out = []
    for i, x in enumerate(inputs):
        raw = x.data if isinstance(x, Tensor) else x
        out.append(Tensor(raw, requires_grad=True) if i in wrt else (Tensor(raw) if hasattr(raw, "shape") else raw))
    return out


def _placements(inputs: Sequence[Any]) -> list[tuple[str, Any] | None]:
    """(backend name, device) of each array input (None for other arguments)."""
    out = []
    for x in inputs:
        raw = x.data if isinstance(x, Tensor) else x
        out.append((backend.namespace_of((raw,), "check_grad").name, Tensor(raw).device) if hasattr(raw, "shape")
                   else None)
    return out


def _host_eval(scalar: Callable, host: list[Any], places: list[tuple[str, Any] | None]) -> float:
    """``scalar`` at the (perturbed) host copies, each moved back to its input's backend and device."""
    xs = [Tensor(backend.from_numpy(h, backend=p[0], device=p[1])) if p is not None else h
          for h, p in zip(host, places)]
    name = next((p[0] for p in places if p is not None), backend.host_namespace().name)
    with backend.use_backend(name), tape.no_grad():
        return float(scalar(*xs).numpy())


def _unravel(k: int, shape: tuple) -> tuple:
    idx = []
    for s in reversed(shape):
        idx.append(k % s)
        k //= s
    return tuple(reversed(idx))


def _check_first_order(scalar: Callable, inputs: Sequence[Any], wrt: list[int], eps: float, atol: float | None,
                       rtol: float | None, mode: str, num_directions: int, seed: int) -> GradcheckResult:
    xs = _leaves(inputs, wrt)
    with tape.enable_grad():
        out = scalar(*xs)
        if not out.requires_grad:
            grads = [backend.namespace_of((xs[i].data,), "check_grad").zeros_like(xs[i].data) for i in wrt]
        else:
            grads = [g.data for g in tape.gradients([out], [xs[i] for i in wrt])]
    low_precision = any(str(getattr(g, "dtype", "")).endswith(("float32", "float16")) for g in grads)
    atol = (1e-4 if low_precision else 1e-6) if atol is None else atol
    rtol = (1e-3 if low_precision else 1e-5) if rtol is None else rtol
    hp = backend.host_namespace()
    analytic = {i: hp.reshape(hp.astype(backend.to_numpy(g), hp.float64), (-1,)) for i, g in zip(wrt, grads)}
    host = [_host64(x) if hasattr(x.data if isinstance(x, Tensor) else x, "shape") else x for x in inputs]
    places = _placements(inputs)

    worst = (0.0, "")
    ok = True
    if mode == "full":
        for i in wrt:
            shape = host[i].shape
            flat = hp.reshape(hp.asarray(host[i], copy=True), (-1,))
            probe = list(host)
            numeric = hp.zeros_like(flat)
            for k in range(flat.shape[0]):
                old = float(flat[k])
                flat[k] = old + eps
                probe[i] = hp.reshape(flat, shape)
                up = _host_eval(scalar, probe, places)
                flat[k] = old - eps
                probe[i] = hp.reshape(flat, shape)
                down = _host_eval(scalar, probe, places)
                flat[k] = old
                numeric[k] = (up - down) / (2 * eps)
            a = analytic[i]
            err = hp.abs(a - numeric)
            bad = err > atol + rtol * hp.abs(numeric)
            n_bad = int(hp.sum(hp.astype(bad, hp.int64)))
            ok = ok and n_bad == 0
            if err.shape[0]:
                k = int(hp.argmax(err - rtol * hp.abs(numeric)))
                if n_bad or (not worst[1].startswith("FAIL") and float(err[k]) >= worst[0]):
                    idx = _unravel(k, shape)
                    worst = (float(err[k]), ("FAIL " if n_bad else "") +
                             f"input {i}, index {idx}: analytic {float(a[k]):.10g}, "
                             f"numeric {float(numeric[k]):.10g}, |difference| {float(err[k]):.3g} "
                             f"(atol {atol:g}, rtol {rtol:g}; {n_bad} of {err.shape[0]} elements fail)")
    else:
        rng = backend.host_rng(seed + 1000)
        for d in range(num_directions):
            dirs = {i: rng.standard_normal(host[i].shape) for i in wrt}
            plus = list(host)
            minus = list(host)
            for i in wrt:
                plus[i] = host[i] + eps * dirs[i]
                minus[i] = host[i] - eps * dirs[i]
            numeric = (_host_eval(scalar, plus, places) - _host_eval(scalar, minus, places)) / (2 * eps)
            a = float(sum(float(hp.sum(analytic[i] * hp.reshape(dirs[i], (-1,)))) for i in wrt))
            err = abs(a - numeric)
            bad = err > atol + rtol * abs(numeric)
            ok = ok and not bad
            if err >= worst[0]:
                worst = (err, ("FAIL " if bad else "") + f"direction {d}: analytic {a:.10g}, numeric {numeric:.10g}, "
                         f"|difference| {err:.3g} (atol {atol:g}, rtol {rtol:g})")
    report = ("gradient check passed; " if ok else "gradient check failed; worst: ") + worst[1]
    return GradcheckResult(ok, worst[0], report)
