"""Optimizers: SGD (momentum, Nesterov, weight decay), Adam and full-batch L-BFGS.

Written through each parameter's array namespace, so they run on the GPU too.
Following MLX, each optimizer only says how to initialise the state of one
parameter and how to update it; the base class walks the parameters and validates
the hyperparameters up front.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

from . import backend
from .tensor import Tensor


def _check(name: str, value: float, low: float, high: float = math.inf, low_open: bool = False) -> float:
    bad = not isinstance(value, (int, float)) or math.isnan(value) or value > high or (
        value <= low if low_open else value < low)
    if bad:
        lo = "(" if low_open else "["
        raise ValueError(f"invalid {name}: {value!r}; it must lie in {lo}{low}, {high}]")
    return float(value)


class Optimizer:
    """Base class: holds the parameters and per-parameter state."""

    def __init__(self, params: Iterable[Tensor]) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        for i, p in enumerate(self.params):
            if not isinstance(p, Tensor) or not p.requires_grad:
                raise TypeError(f"{type(self).__name__}: parameter {i} is not a Tensor that requires a gradient")
        self.state: list[dict[str, Any]] = [{} for _ in self.params]
        self.steps = 0

    def zero_grad(self) -> None:
        """Drop the gradients (set to None, so the next backward writes fresh arrays)."""
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Update every parameter that has a gradient."""
        self.steps += 1
        for p, state in zip(self.params, self.state):
            if p.grad is None:
                continue
            xp = backend.namespace_of((p.data, p.grad.data), type(self).__name__)
            if "initialised" not in state:
                self.init_state(xp, p.data, state)
                state["initialised"] = True
            new = self.update(xp, p._data, p.grad._data, state)
            p._data = new
            p._version += 1  # graphs recorded before this step must not use the updated values

    def init_state(self, xp: Any, w: Any, state: dict) -> None:
        pass

    def update(self, xp: Any, w: Any, g: Any, state: dict) -> Any:
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent, as in PyTorch:

        g <- g + weight_decay * w
        b <- momentum * b + g           (b = g on the first step)
        g <- g + momentum * b  (nesterov)   or   g <- b
        w <- w - lr * g
    """

    def __init__(self, params: Iterable[Tensor], lr: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params)
        self.lr = _check("lr", lr, 0.0, low_open=True)
        self.momentum = _check("momentum", momentum, 0.0, 1.0)
        self.weight_decay = _check("weight_decay", weight_decay, 0.0)
        if nesterov and self.momentum == 0:
            raise ValueError("SGD: nesterov=True needs a momentum > 0")
        self.nesterov = nesterov

    def update(self, xp, w, g, state):
        if self.weight_decay:
            g = g + self.weight_decay * w
        if self.momentum:
            buf = state.get("momentum")
            if buf is None:
                buf = state["momentum"] = xp.asarray(g, copy=True)
            elif xp.mutable:
                buf *= self.momentum
                buf += g
            else:
                buf = state["momentum"] = self.momentum * buf + g
            g = g + self.momentum * buf if self.nesterov else buf
        if xp.mutable:
            w -= self.lr * g
            return w
        return w - self.lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba), with L2 ``weight_decay`` added to the gradient:

        m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
        w <- w - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
    """

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(params)
        self.lr = _check("lr", lr, 0.0, low_open=True)
        self.b1 = _check("beta1", betas[0], 0.0, 1.0)
        self.b2 = _check("beta2", betas[1], 0.0, 1.0)
        if self.b1 >= 1.0 or self.b2 >= 1.0:
            raise ValueError(f"Adam: betas must be < 1, got {betas}")
        self.eps = _check("eps", eps, 0.0, low_open=True)
        self.weight_decay = _check("weight_decay", weight_decay, 0.0)

    def init_state(self, xp, w, state):
        state["m"] = xp.zeros_like(w)
        state["v"] = xp.zeros_like(w)
        state["t"] = 0

    def update(self, xp, w, g, state):
        if self.weight_decay:
            g = g + self.weight_decay * w
        state["t"] += 1
        t = state["t"]
        m = state["m"] = self.b1 * state["m"] + (1.0 - self.b1) * g
        v = state["v"] = self.b2 * state["v"] + (1.0 - self.b2) * (g * g)
        step = (self.lr / (1.0 - self.b1 ** t)) * m / (xp.sqrt(v / (1.0 - self.b2 ** t)) + self.eps)
        if xp.mutable:
            w -= step
            return w
        return w - step


class LBFGS(Optimizer):
    """Full-batch L-BFGS (limited-memory BFGS; the seed names BFGS) with a
    backtracking Armijo line search.

    ``step(closure)`` runs up to ``max_iter`` iterations; ``closure()`` must zero the
    gradients, compute the loss, call ``backward()`` and return the loss.
    """

    def __init__(self, params: Iterable[Tensor], lr: float = 1.0, max_iter: int = 20, history_size: int = 10,
                 tolerance_grad: float = 1e-7, tolerance_change: float = 1e-10, weight_decay: float = 0.0) -> None:
        super().__init__(params)
        self.lr = _check("lr", lr, 0.0, low_open=True)
        if not isinstance(max_iter, int) or max_iter < 1:
            raise ValueError(f"invalid max_iter: {max_iter!r}; it must be a positive integer")
        if not isinstance(history_size, int) or history_size < 1:
            raise ValueError(f"invalid history_size: {history_size!r}; it must be a positive integer")
        self.max_iter, self.history_size = max_iter, history_size
        self.tolerance_grad = _check("tolerance_grad", tolerance_grad, 0.0)
        self.tolerance_change = _check("tolerance_change", tolerance_change, 0.0)
        self.weight_decay = _check("weight_decay", weight_decay, 0.0)
        self.s_hist: list[Any] = []
        self.y_hist: list[Any] = []
        self.xp = backend.namespace_of([p.data for p in self.params], "LBFGS")

    def _flat(self, arrays):
        xp = self.xp
        return xp.concat([xp.reshape(a, (-1,)) for a in arrays])

    def _set(self, flat):
        xp = self.xp
        start = 0
        for p in self.params:
            n = p.size
            p._data = xp.astype(xp.reshape(flat[start:start + n], p.shape), p._data.dtype)
            p._version += 1
            start += n

    def _evaluate(self, closure) -> tuple[float, Any]:
        loss = float(closure())
        xp = self.xp
        grads = [p.grad.data if p.grad is not None else xp.zeros_like(p.data) for p in self.params]
        g = self._flat(grads)
        if self.weight_decay:
            w = self._flat([p.data for p in self.params])
            loss += 0.5 * self.weight_decay * float(xp.sum(w * w))
            g = g + self.weight_decay * w
        return loss, g

    def step(self, closure: Callable[[], Any]) -> float:  # type: ignore[override]
        xp = self.xp
        loss, g = self._evaluate(closure)
        x = self._flat([p.data for p in self.params])
        for _ in range(self.max_iter):
            if float(xp.max(xp.abs(g))) <= self.tolerance_grad:
                break
            self.steps += 1
            d = self._direction(g)
            gd = float(xp.sum(g * d))
            if gd >= 0:  # not a descent direction: restart from steepest descent
                self.s_hist.clear()
                self.y_hist.clear()
                d = -g
                gd = float(xp.sum(g * d))
            t = self.lr if self.s_hist else min(1.0, 1.0 / float(xp.sum(xp.abs(g)))) * self.lr
            new_loss, new_g, new_x = None, None, None
            for _ls in range(30):
                new_x = x + t * d
                self._set(new_x)
                new_loss, new_g = self._evaluate(closure)
                if new_loss <= loss + 1e-4 * t * gd:
                    break
                t *= 0.5
            else:
                self._set(x)
                self._evaluate(closure)
                break
            s, y = new_x - x, new_g - g
            if float(xp.sum(s * y)) > 1e-10:
                self.s_hist.append(s)
                self.y_hist.append(y)
                if len(self.s_hist) > self.history_size:
                    self.s_hist.pop(0)
                    self.y_hist.pop(0)
            change = abs(new_loss - loss)
            x, g, loss = new_x, new_g, new_loss
            if change <= self.tolerance_change:
                break
        return loss

    def _direction(self, g):
        """The two-loop recursion: -H g with H the L-BFGS inverse-Hessian estimate."""
        xp = self.xp
        q = g
        alphas = []
        for s, y in zip(reversed(self.s_hist), reversed(self.y_hist)):
            rho = 1.0 / float(xp.sum(y * s))
            a = rho * float(xp.sum(s * q))
            alphas.append((a, rho, s, y))
            q = q - a * y
        if self.s_hist:
            s, y = self.s_hist[-1], self.y_hist[-1]
            q = q * (float(xp.sum(s * y)) / float(xp.sum(y * y)))
        for a, rho, s, y in reversed(alphas):
            b = rho * float(xp.sum(y * q))
            q = q + s * (a - b)
        return -q
