"""The one place where the rest of agrad tells ``agrad.compile`` what it does.

Optimizers, modules, layers, losses and ``agrad.random`` do not look inside the tracer:
they ask :func:`active` for the hook slot (None unless a compiled function is being
traced: eager code pays one call and one ``is None``) and, when there is one, report
the few events a trace cannot see in the backend calls it records:

======================================  ==========================================================
event (a :class:`Hooks` method)         called from
======================================  ==========================================================
``optimizer_step(opt)``                 ``Optimizer.step``, once per step, before any update
``group_update(opt, group)``            ``Optimizer.step``, per parameter group: returns the
                                        hyperparameters the update reads (the learning rate live)
``state_created(opt, p, state)``        ``Optimizer.step``, when a parameter's state is made
``hyperparameter_set(key)``             ``ParamGroup.__setitem__`` (refused: set it outside)
``grads_cleared(params)``               ``zero_grad(set_to_none=True)`` of optimizers and modules
``guard(check, expected)``              ``Dropout`` in evaluation mode (a decision on Python state)
``random_numbers(what)``                ``agrad.random``, ``Dropout`` in training mode (refused)
``check_values(array, check, what)``    ``logistic_loss``'s label check, through :func:`check_values`
======================================  ==========================================================

Two notifications hold whether or not a trace runs: :func:`attribute_replaced`
(``Module.__setattr__``: replays that baked the old attribute in must retrace) and
:func:`check_values` (an op validating its inputs' values, now and before every replay).

The slot itself is ``agrad.compile.trace._TRACER``: the tape and the Tensor read it
directly on every operation, and so do ``Optimizer.step`` and ``zero_grad`` (once per
training step: a call less). This module imports nothing else, so that any part of agrad
may import it.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from .trace import active

__all__ = ["Hooks", "active", "attribute_replaced", "attributes_version", "check_values"]


class Hooks:
    """The events the tracer hears from outside the backend calls it records (see the module
    docstring for who calls which). ``agrad.compile.state.Tracer`` implements them."""

    def optimizer_step(self, opt: Any) -> None:
        """``opt.step()`` begins: a replay repeats its Python bookkeeping (the step count), and
        may run only while the optimizer's structure is the one met here."""
        raise NotImplementedError

    def group_update(self, opt: Any, group: dict) -> dict:
        """``opt`` is about to update the parameters of ``group`` that have a gradient: they,
        and the state they have, are read afresh by every replay. Returns the group as the
        update must read it: the learning rate live (a scheduler changes it between calls),
        the other hyperparameters baked in."""
        raise NotImplementedError

    def state_created(self, opt: Any, p: Any, state: dict) -> None:
        """``opt`` made parameter ``p``'s state in this call (a first step): such a call is
        not replayed, as the next one must make fresh state too."""
        raise NotImplementedError

    def hyperparameter_set(self, key: str) -> None:
        """A parameter group's ``key`` is being set inside the compiled function: refused
        (a replay reads the learning rate afresh; call the scheduler outside)."""
        raise NotImplementedError

    def grads_cleared(self, params: Iterable[Any]) -> None:
        """``zero_grad(set_to_none=True)`` set these gradients to None: a replay does too."""
        raise NotImplementedError

    def guard(self, check: Callable[[], Any], expected: Any) -> None:
        """The function took a Python decision on state outside it (``Dropout``'s mode): a
        replay runs only while ``check()`` still returns ``expected``."""
        raise NotImplementedError

    def random_numbers(self, what: str) -> None:
        """Random numbers are being drawn on the host: refused (a replay would repeat them)."""
        raise NotImplementedError

    def check_values(self, array: Any, check: Callable[[Any], None], what: str,
                     bounds: tuple[int, int] | None = None) -> None:
        """Run ``check`` on ``array`` (an argument's or an outside array's values) now and
        before every replay, ahead of any work. ``bounds=(lo, hi)`` says that ``check``
        passes exactly when every value lies in [lo, hi): a replay may then test that with
        two reductions and call ``check`` (for its error) only when it fails."""
        raise NotImplementedError


_ATTRIBUTES_REPLACED = [0]  # bumped whenever a Module attribute is replaced (nn.Module.__setattr__)


def attribute_replaced() -> None:
    """A module attribute (a parameter, a submodule, a hyperparameter) was replaced: a
    compiled function may have baked the old one in, so its replays must retrace."""
    _ATTRIBUTES_REPLACED[0] += 1


def attributes_version() -> int:
    """How many module attributes were replaced so far (the guards compare it)."""
    return _ATTRIBUTES_REPLACED[0]


def check_values(array: Any, check: Callable[[Any], None], what: str, bounds: tuple[int, int] | None = None) -> None:
    """``check(array)`` (which raises on bad values), and under agrad.compile again before
    every replay: how an op validates its inputs' values (see :meth:`Hooks.check_values`)."""
    while hasattr(array, "_vmap_physical"):  # inside agrad.vmap: every example's values
        array = array._vmap_physical
    hook = active()
    if hook is None:
        check(array)
    else:
        hook.check_values(array, check, what, bounds)
