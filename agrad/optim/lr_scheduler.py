"""Learning-rate schedules, as in ``torch.optim.lr_scheduler``.

A scheduler sets ``group["lr"]`` of every parameter group of its optimizer from the
group's starting rate (``group["initial_lr"]``, recorded on first use) and a step
counter. ``step()`` advances the counter, per batch or per epoch as you choose; the
schedule is the closed form of the counter, so a resumed run (``state_dict`` /
``load_state_dict``) continues exactly where it stopped. Every rate passes the
optimizer's checks: a schedule can never set a negative rate. ::

    opt = agrad.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    sched = agrad.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    for batch in loader:
        ...; opt.step(); sched.step()
"""

from __future__ import annotations

import bisect
import math
from typing import Any, Callable, Sequence

from .optimizers import Optimizer

__all__ = ["CosineAnnealingLR", "CosineAnnealingWarmRestarts", "ExponentialLR", "LRScheduler", "LambdaLR",
           "LinearLR", "MultiStepLR", "OneCycleLR", "SequentialLR", "StepLR"]


class LRScheduler:
    """Base class: ``lr_at(base_lr, step)`` gives one group's rate after ``step`` steps."""

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected an agrad optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        for g in optimizer.param_groups:
            if "initial_lr" not in g:
                dict.__setitem__(g, "initial_lr", g["lr"])
        self.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()

    def lr_at(self, base_lr: float, step: int) -> float:
        raise NotImplementedError

    def step(self) -> None:
        """Advance one step and set every group's learning rate."""
        self.last_epoch += 1
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = self.lr_at(base, self.last_epoch)

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """The counter and settings (no optimizer, no functions): enough to resume."""
        return {k: v for k, v in self.__dict__.items() if k != "optimizer" and not callable(v)
                and not isinstance(v, LRScheduler) and k != "schedulers"}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = self.lr_at(base, self.last_epoch)


class StepLR(LRScheduler):
    """lr = base * gamma ** (step // step_size)."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1) -> None:
        if step_size < 1:
            raise ValueError(f"StepLR: step_size must be >= 1, got {step_size}")
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr, step):
        return base_lr * self.gamma ** (step // self.step_size)


class MultiStepLR(LRScheduler):
    """lr = base * gamma ** (number of milestones passed)."""

    def __init__(self, optimizer: Optimizer, milestones: Sequence[int], gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        self.milestones, self.gamma = sorted(milestones), gamma
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr, step):
        return base_lr * self.gamma ** bisect.bisect_right(self.milestones, step)


class ExponentialLR(LRScheduler):
    """lr = base * gamma ** step."""

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr, step):
        return base_lr * self.gamma ** step


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (base - eta_min) * (1 + cos(pi * step / T_max)) / 2 (SGDR without restarts)."""

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        if T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be >= 1, got {T_max}")
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr, step):
        return self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * step / self.T_max)) / 2


class CosineAnnealingWarmRestarts(LRScheduler):
    """Cosine annealing restarted every T_i steps, T_0 first and each period T_mult times
    the previous (Loshchilov & Hutter, SGDR)."""

    def __init__(self, optimizer: Optimizer, T_0: int, T_mult: int = 1, eta_min: float = 0.0,
                 last_epoch: int = -1) -> None:
        if T_0 < 1 or not isinstance(T_mult, int) or T_mult < 1:
            raise ValueError(f"CosineAnnealingWarmRestarts: needs T_0 >= 1 and an integer T_mult >= 1, got {T_0}, "
                             f"{T_mult}")
        self.T_0, self.T_mult, self.eta_min = T_0, T_mult, eta_min
        super().__init__(optimizer, last_epoch)

    def period(self, step: int) -> tuple[int, int]:
        """(steps into the current period, its length)."""
        if self.T_mult == 1:
            return step % self.T_0, self.T_0
        n = int(math.log(step / self.T_0 * (self.T_mult - 1) + 1, self.T_mult))
        start = self.T_0 * (self.T_mult ** n - 1) // (self.T_mult - 1)
        length = self.T_0 * self.T_mult ** n
        if step < start:  # (float log on an exact power)
            n -= 1
            length //= self.T_mult
            start -= length
        elif step >= start + length:
            start, length = start + length, length * self.T_mult
        return step - start, length

    def lr_at(self, base_lr, step):
        t_cur, t_i = self.period(step)
        return self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * t_cur / t_i)) / 2


class LinearLR(LRScheduler):
    """lr = base * factor, the factor moving linearly from ``start_factor`` to
    ``end_factor`` over ``total_iters`` steps, then staying (a linear warm-up)."""

    def __init__(self, optimizer: Optimizer, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5, last_epoch: int = -1) -> None:
        if not (0.0 <= start_factor <= 1.0 and 0.0 <= end_factor <= 1.0) or total_iters < 1:
            raise ValueError(f"LinearLR: factors must lie in [0, 1] and total_iters >= 1, got {start_factor}, "
                             f"{end_factor}, {total_iters}")
        self.start_factor, self.end_factor, self.total_iters = start_factor, end_factor, total_iters
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr, step):
        frac = min(step, self.total_iters) / self.total_iters
        return base_lr * (self.start_factor + (self.end_factor - self.start_factor) * frac)


class LambdaLR(LRScheduler):
    """lr = base * lr_lambda(step)."""

    def __init__(self, optimizer: Optimizer, lr_lambda: Callable[[int], float], last_epoch: int = -1) -> None:
        self.lr_lambda = lr_lambda
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr, step):
        return base_lr * self.lr_lambda(step)


class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith & Topin): from max_lr / div_factor up to ``max_lr`` over the
    first ``pct_start`` of ``total_steps``, then down to max_lr / (div_factor *
    final_div_factor), by cosine (or linear) annealing. ``max_lr`` replaces the
    optimizer's rate."""

    def __init__(self, optimizer: Optimizer, max_lr: float | Sequence[float], total_steps: int,
                 pct_start: float = 0.3, anneal_strategy: str = "cos", div_factor: float = 25.0,
                 final_div_factor: float = 1e4, last_epoch: int = -1) -> None:
        if total_steps < 2 or not 0.0 < pct_start < 1.0 or anneal_strategy not in ("cos", "linear"):
            raise ValueError("OneCycleLR: needs total_steps >= 2, 0 < pct_start < 1 and anneal_strategy 'cos' or "
                             "'linear'")
        maxes = list(max_lr) if isinstance(max_lr, (list, tuple)) else [max_lr] * len(optimizer.param_groups)
        for g, m in zip(optimizer.param_groups, maxes):
            dict.__setitem__(g, "initial_lr", m / div_factor)
            dict.__setitem__(g, "max_lr", m)
        self.total_steps, self.pct_start, self.anneal_strategy = total_steps, pct_start, anneal_strategy
        self.div_factor, self.final_div_factor = div_factor, final_div_factor
        super().__init__(optimizer, last_epoch)

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def lr_at(self, base_lr, step):
        if step >= self.total_steps:
            raise ValueError(f"OneCycleLR: stepped {step + 1} times for total_steps={self.total_steps}")
        peak = base_lr * self.div_factor
        low = base_lr / self.final_div_factor
        up_end = float(self.pct_start * self.total_steps) - 1
        if step <= up_end:
            return self._anneal(base_lr, peak, step / up_end if up_end > 0 else 1.0)
        down = self.total_steps - 1 - up_end
        return self._anneal(peak, low, (step - up_end) / down)


class SequentialLR(LRScheduler):
    """Run ``schedulers`` one after another, switching at ``milestones`` (a warm-up, then a
    decay): each runs on its own counter from 0."""

    def __init__(self, optimizer: Optimizer, schedulers: Sequence[LRScheduler], milestones: Sequence[int],
                 last_epoch: int = -1) -> None:
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(f"SequentialLR: {len(schedulers)} schedulers need {len(schedulers) - 1} milestones")
        self.schedulers, self.milestones = list(schedulers), list(milestones)
        super().__init__(optimizer, last_epoch)

    def step(self) -> None:
        self.last_epoch += 1
        k = bisect.bisect_right(self.milestones, self.last_epoch)
        local = self.last_epoch - (self.milestones[k - 1] if k else 0)
        sched = self.schedulers[k]
        sched.last_epoch = local
        for g, base in zip(self.optimizer.param_groups, sched.base_lrs):
            g["lr"] = sched.lr_at(base, local)

    def lr_at(self, base_lr, step):
        k = bisect.bisect_right(self.milestones, step)
        return self.schedulers[k].lr_at(base_lr, step - (self.milestones[k - 1] if k else 0))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.last_epoch -= 1
        self.step()
