"""What the rest of agrad tells ``agrad.compile`` while it traces (and when it does not).

:func:`active` is the hook slot (the tracer running now, or None);
:func:`attribute_replaced` (``Module.__setattr__``: replays that baked the old
attribute in must retrace) and :func:`check_values` (an op validating its inputs'
values, now and before every replay) hold whether or not a trace runs.
"""

from __future__ import annotations

from typing import Any, Callable

from .trace import active

__all__ = ["active", "attribute_replaced", "attributes_version", "check_values"]


_ATTRIBUTES_REPLACED = [0]  # bumped whenever a Module attribute is replaced (nn.Module.__setattr__)


def attribute_replaced() -> None:
    """A module attribute (a parameter, a submodule, a hyperparameter) was replaced: a
    compiled function may have baked the old one in, so its replays must retrace."""
    _ATTRIBUTES_REPLACED[0] += 1


def attributes_version() -> int:
    """How many module attributes were replaced so far (the guards compare it)."""
    return _ATTRIBUTES_REPLACED[0]


def check_values(array: Any, check: Callable[[Any], None], what: str) -> None:
    """``check(array)`` (which raises on bad values), and under agrad.compile again before
    every replay: how an op validates its inputs' values (see ``state.Tracer.check_input``)."""
    hook = active()
    if hook is None:
        check(array)
    else:
        hook.check_input(array, check, what)
