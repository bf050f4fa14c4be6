"""Optimizers: SGD (momentum, Nesterov, weight decay), Adam and full-batch L-BFGS.

Written through each parameter's array namespace, so they run on the GPU too.
Following MLX, each optimizer only says how to initialise the state of one
parameter and how to update it; the base class walks the parameters and validates
the hyperparameters up front.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

from .. import backend
from ..compile import hooks, trace
from ..tensor import Tensor


def _check(name: str, value: float, low: float, high: float = math.inf, low_open: bool = False) -> float:
    bad = isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value > high or (
        value <= low if low_open else value < low)
    if bad:
        lo = "(" if low_open else "["
        raise ValueError(f"invalid {name}: {value!r}; it must lie in {lo}{low}, {high}]")
    return float(value)


class ParamGroup(dict):
    """One parameter group: ``{"params": [...], "lr": ..., ...}``. Every hyperparameter is
    validated when the group is made and whenever it is set later (by a scheduler, or by
    hand), so a negative learning rate can never slip in."""

    def __init__(self, optimizer: "Optimizer", group: dict) -> None:
        super().__init__()
        object.__setattr__(self, "_optimizer", optimizer)
        for k, v in group.items():
            self[k] = v

    def __setitem__(self, key: str, value: Any) -> None:
        hook = hooks.active()
        if hook is not None:
            hook.hyperparameter_set(key)  # (refused: every replay reads the group's current learning rate)
        if key != "params":
            value = self._optimizer.validate(key, value)
        if key not in ("lr", "initial_lr"):
            self._optimizer._structure_version += 1  # what a compiled step bakes in changed
        super().__setitem__(key, value)


class Optimizer:
    """Base class: parameter groups, per-parameter state, and their state dict.

    ``params`` is an iterable of Tensors, or of dicts ``{"params": [...], "lr": ...}``
    (parameter groups, each with its own hyperparameters; missing ones take the
    constructor's values). Following MLX, each optimizer only says how to initialise
    the state of one parameter and how to update it.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], defaults: dict[str, Any]) -> None:
        self.defaults = {k: self.validate(k, v) for k, v in defaults.items()}
        self._structure_version = 0  # bumped whenever optimizer_structure() may change
        self.param_groups: list[ParamGroup] = []
        self.state: dict[int, dict[str, Any]] = {}  # id(parameter) -> its state
        self.steps = 0
        items = list(params)
        if not items:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        groups = items if isinstance(items[0], dict) else [{"params": items}]
        for g in groups:
            self.add_param_group(g)

    # ----------------------------------------------------------------- groups
    def validate(self, name: str, value: Any) -> Any:
        """Check one hyperparameter (subclasses list their own); unknown names pass."""
        return value

    def add_param_group(self, group: dict) -> None:
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"{type(self).__name__}: a parameter group is a dict with a 'params' list")
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for i, p in enumerate(params):
            if not isinstance(p, Tensor) or not p.requires_grad:
                raise TypeError(f"{type(self).__name__}: parameter {i} is not a Tensor that requires a gradient")
            if id(p) in seen:
                raise ValueError(f"{type(self).__name__}: parameter {i} appears in more than one group")
            seen.add(id(p))
        unknown = sorted(set(group) - set(self.defaults) - {"params"})
        if unknown:
            raise KeyError(f"{type(self).__name__}: unknown hyperparameters {unknown}; it has {sorted(self.defaults)}")
        full = {**self.defaults, **group, "params": params}
        self.param_groups.append(ParamGroup(self, full))

    @property
    def params(self) -> list[Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    @property
    def lr(self) -> float:
        """The learning rate of the first group; setting it sets every group's."""
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        for g in self.param_groups:
            g["lr"] = value

    # ----------------------------------------------------------------- steps
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop the gradients (None: the next backward writes fresh arrays), or zero them."""
        zero_grad(self.params, set_to_none)

    def step(self) -> None:
        """Update every parameter that has a gradient."""
        hook = trace._TRACER  # agrad.compile tracing this step (hooks.active(), inlined: every step)
        if hook is not None:
            hook.optimizer_step(self)
        self.steps += 1
        name = type(self).__name__
        by_type = backend._BY_TYPE
        for group in self.param_groups:
            if hook is not None:  # the parameters and their state are read afresh; the learning rate is live
                group = hook.group_update(self, group)
            for p in group["params"]:
                if p.grad is None:
                    continue
                data, g = p._data, p.grad._data
                # One array class on a single-device backend (as tape.apply): that backend, without
                # namespace_of, which checks backends and devices where there is more to check.
                xp = by_type.get(data.__class__)
                if xp is None or xp.multi_device or g.__class__ is not data.__class__:
                    xp = backend.namespace_of((data, g), name)
                state = self.state.get(id(p))
                if state is None:
                    state = self.state[id(p)] = {}
                    self._structure_version += 1
                    self.init_state(xp, data, state)
                    if hook is not None:
                        hook.state_created(self, p, state)
                # The new array, and a new version: graphs recorded before must not use the new values.
                p._replace_array(self.update(xp, data, g, state, group), "an optimizer step")

    def _count_step(self) -> None:
        self.steps += 1

    def init_state(self, xp: Any, w: Any, state: dict) -> None:
        pass

    def update(self, xp: Any, w: Any, g: Any, state: dict, group: dict) -> Any:
        raise NotImplementedError

    # ----------------------------------------------------------------- state dict
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: hyperparameters per group (parameters by index,
        in order) and each parameter's state (arrays stay on their device). Save it with
        ``agrad.save``; ``load_state_dict`` puts it back, bit for bit."""
        index = {id(p): i for i, p in enumerate(self.params)}
        groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [index[id(p)] for p in g["params"]]}
                  for g in self.param_groups]
        state = {str(index[k]): dict(v) for k, v in self.state.items() if k in index}
        return {"param_groups": groups, "state": state, "steps": self.steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` into this optimizer (built over the same parameters,
        in the same order). State arrays go onto each parameter's backend and device."""
        params = self.params
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups) or any(len(a["params"]) != len(b["params"])
                                                          for a, b in zip(groups, self.param_groups)):
            raise ValueError(f"{type(self).__name__}.load_state_dict: the saved groups "
                             f"{[len(g['params']) for g in groups]} do not match this optimizer's "
                             f"{[len(g['params']) for g in self.param_groups]}")
        for saved, group in zip(groups, self.param_groups):
            for k, v in saved.items():
                if k != "params":
                    group[k] = v
        self.state = {}
        self._structure_version += 1
        for key, st in state_dict["state"].items():
            p = params[int(key)]
            self.state[id(p)] = {k: _onto_param(v, p) for k, v in st.items()}
        self.steps = int(state_dict.get("steps", 0))


def zero_grad(params: list[Tensor], set_to_none: bool = True) -> None:
    """Drop the gradients of ``params`` (None: the next backward writes fresh arrays), or fill
    them with zeros: ``Optimizer.zero_grad`` and ``Module.zero_grad``."""
    if set_to_none:
        for p in params:
            p.grad = None
        hook = trace._TRACER  # (hooks.active(), inlined: every step)
        if hook is not None:  # a replay clears them too
            hook.grads_cleared(params)
        return
    for p in params:
        if p.grad is not None:
            xp = backend.namespace_of((p.grad._data,), "zero_grad")
            p.grad = Tensor(xp.zeros_like(p.grad._data))


def optimizer_structure(opt: Optimizer) -> tuple:
    """What a compiled step bakes in about an optimizer: which parameters have state (and
    under which keys), and every hyperparameter but the learning rate (agrad.compile)."""
    state = tuple(tuple(sorted(opt.state[id(p)])) if id(p) in opt.state else None for p in opt.params)
    hyper = tuple(tuple(sorted((k, repr(v)) for k, v in g.items() if k not in ("params", "lr", "initial_lr")))
                  for g in opt.param_groups)
    return state, hyper


def structure_stamp(opt: Optimizer) -> tuple:
    """A cheap stand-in for :func:`optimizer_structure`: while it is unchanged, so is the
    structure (agrad.compile checks it on every replay, and the full structure only when
    it moved)."""
    return opt._structure_version, len(opt.state), tuple(len(g["params"]) for g in opt.param_groups)


def _onto_param(value: Any, p: Tensor) -> Any:
    raw = value._data if isinstance(value, Tensor) else value
    if not hasattr(raw, "shape"):
        return raw  # a Python number (a step count)
    xp = backend.namespace_of((p._data,), "load_state_dict")
    raw, _ = backend.beside(raw, p._data, "load_state_dict")
    return xp.asarray(raw, copy=True)


class SGD(Optimizer):
    """Stochastic gradient descent, as in PyTorch:

        g <- g + weight_decay * w
        b <- momentum * b + g           (b = g on the first step)
        g <- g + momentum * b  (nesterov)   or   g <- b
        w <- w - lr * g

    ``lr=0`` is allowed (warm-up schedules start there); negative values never are.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum, "nesterov": nesterov,
                                  "weight_decay": weight_decay})

    def validate(self, name, value):
        if name == "lr":
            return _check("lr", value, 0.0)
        if name == "momentum":
            return _check("momentum", value, 0.0, 1.0)
        if name == "weight_decay":
            return _check("weight_decay", value, 0.0)
        if name == "nesterov":
            return bool(value)
        return value

    def add_param_group(self, group: dict) -> None:
        super().add_param_group(group)
        g = self.param_groups[-1]
        if g["nesterov"] and g["momentum"] == 0:
            raise ValueError("SGD: nesterov=True needs a momentum > 0")

    def update(self, xp, w, g, state, group):
        lr, momentum, weight_decay = group["lr"], group["momentum"], group["weight_decay"]
        if weight_decay:
            g = g + weight_decay * w
        if momentum:
            buf = state.get("momentum")
            if buf is None:
                buf = state["momentum"] = xp.asarray(g, copy=True)
            elif xp.mutable:
                buf *= momentum
                buf += g
            else:
                buf = state["momentum"] = momentum * buf + g
            g = g + momentum * buf if group["nesterov"] else buf
        if xp.mutable:
            w -= lr * g
            return w
        return w - lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba), with L2 ``weight_decay`` added to the gradient:

        m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
        w <- w - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    def validate(self, name, value):
        if name == "lr":
            return _check("lr", value, 0.0)
        if name == "betas":
            b1, b2 = (_check("beta", b, 0.0, 1.0) for b in value)
            if b1 >= 1.0 or b2 >= 1.0:
                raise ValueError(f"Adam: betas must be < 1, got {value}")
            return (b1, b2)
        if name == "eps":
            return _check("eps", value, 0.0, low_open=True)
        if name == "weight_decay":
            return _check("weight_decay", value, 0.0)
        return value

    def init_state(self, xp, w, state):
        state["m"] = xp.zeros_like(w)
        state["v"] = xp.zeros_like(w)
        state["t"] = 0

    def update(self, xp, w, g, state, group):
        lr, (b1, b2), eps, weight_decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if weight_decay:
            g = g + weight_decay * w
        state["t"] += 1
        t = state["t"]
        m = state["m"] = b1 * state["m"] + (1.0 - b1) * g
        v = state["v"] = b2 * state["v"] + (1.0 - b2) * (g * g)
        step = (lr / (1.0 - b1 ** t)) * m / (xp.sqrt(v / (1.0 - b2 ** t)) + eps)
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
        super().__init__(params, {"lr": lr, "max_iter": max_iter, "history_size": history_size,
                                  "tolerance_grad": tolerance_grad, "tolerance_change": tolerance_change,
                                  "weight_decay": weight_decay})
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS: works on one parameter group (the whole parameter vector)")
        self.s_hist: list[Any] = []
        self.y_hist: list[Any] = []
        self.xp = backend.namespace_of([p._data for p in self.params], "LBFGS")

    def validate(self, name, value):
        if name == "lr":
            return _check("lr", value, 0.0, low_open=True)
        if name in ("max_iter", "history_size"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"invalid {name}: {value!r}; it must be a positive integer")
            return value
        if name in ("tolerance_grad", "tolerance_change", "weight_decay"):
            return _check(name, value, 0.0)
        return value

    def __getattr__(self, name: str) -> Any:  # max_iter, weight_decay...: the group's values
        groups = self.__dict__.get("param_groups")
        if groups and name in groups[0]:
            return groups[0][name]
        raise AttributeError(name)

    def state_dict(self) -> dict[str, Any]:
        out = super().state_dict()
        out["history"] = {"s": list(self.s_hist), "y": list(self.y_hist)}
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        like = self.params[0]
        hist = state_dict.get("history", {"s": [], "y": []})
        self.s_hist = [_onto_param(a, like) for a in hist["s"]]
        self.y_hist = [_onto_param(a, like) for a in hist["y"]]

    def _flat(self, arrays):
        xp = self.xp
        return xp.concat([xp.reshape(a, (-1,)) for a in arrays])

    def _set(self, flat):
        xp = self.xp
        start = 0
        for p in self.params:
            n = p.size
            p._replace_array(xp.astype(xp.reshape(flat[start:start + n], p.shape), p._data.dtype), "an optimizer step")
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
