"""The passes of ``agrad.compile``: analyses and rewrites of one traced program, in order.

A trace is a straight list of backend calls on numbered slots (``trace.Instruction``).
Before code generation it goes through :data:`PASSES`, each a function that reads the
:class:`Program` and fills in what it decides:

1. :func:`aliasing`: which results are new arrays, which may be views of their inputs,
   which outlive the call (returned, written back, or viewed by one that is) and which
   are written in place;
2. :func:`constant_folding`: what depends on constants only is computed once, at trace
   time (its traced value), and baked in;
3. :func:`dead_code`: only the instructions the results and the in-place updates need
   are kept.

Then, for each target the program is lowered for (the plain replay, and on CuPy the
CUDA graph, whose kernels differ), :data:`TARGET_PASSES` run on a :class:`Target`:

4. :func:`out_buffers`: which results compute into a buffer kept from call to call
   (``out=``, NumPy and CuPy), or, for outputs that must be new arrays each call, into
   one allocated for the call (``out=empty_like(...)``: the same values and layout as the
   eager call, without the Python wrapper of a reduction);
5. :func:`share_buffers`: a buffer whose value is dead is reused by a later result of
   the same kind, as hand-written code reuses its scratch arrays.

Every pass keeps the replay bit-identical to an eager call.
"""

from __future__ import annotations

from typing import Any, Callable

from .. import backend
from .trace import Recorder, _is_array_scalar, _is_backend_array, _Slot

__all__ = ["PASSES", "TARGET_PASSES", "Program", "Target", "run"]


# Functions whose result depends on their first argument's shape and dtype, not its values.
_SHAPE_ONLY = {"zeros_like", "ones_like", "full_like"}


class Program:
    """One traced program and what the passes decided about it.

    ``returned``: the result slots that leave the call (written back or output);
    ``reusable``: those of them that may live in a buffer kept from call to call
    (``static_outputs``); ``fresh_outputs``: those that must be new arrays each call
    (without static outputs), which the plain replay computes into a buffer allocated for
    that call, or into the last call's where nothing else can see it any more."""

    def __init__(self, tracer: Recorder, returned: list, reusable: set, fresh_outputs: set = frozenset()) -> None:
        self.tracer = tracer
        self.instructions = tracer.instructions
        self.xp = tracer.home
        self.returned, self.reusable, self.fresh_outputs = returned, reusable, fresh_outputs
        self.fresh: set[int] = set()  # (aliasing) slots whose producer returns a new array, never a view
        self.escaping: set[int] = set()  # (aliasing) slots that outlive a call
        self.mutated: set[int] = set()  # (aliasing) slots written in place, or viewing one that is
        self.const_sources: set[int] = set()  # (constant folding) outside arrays the same each call, not written
        self.fresh_sources: set[int] = set()  # (constant folding) arrays made inside, then updated in place
        self.static: set[int] = set()  # (constant folding) slots that depend on constants only
        self.folded: set[int] = set()  # (constant folding) computed slots baked in as their traced value
        self.keep: list[bool] = []  # (dead code) per instruction: whether the replay runs it


class Target:
    """A program lowered for one target (``graph``: a CUDA graph's kernels, else the plain
    replay's): what each kept instruction calls, and where its result is computed."""

    def __init__(self, program: Program, graph: bool) -> None:
        self.program, self.graph = program, graph
        # instruction index -> (the function it calls, whether it computes into a buffer of its own)
        self.calls: dict[int, tuple[Any, bool]] = {}
        self.buffer_of: dict[int, int] = {}  # buffered result -> the buffer (named by slot) it computes into


def slots_in(spec: Any) -> list[int]:
    """The slots named in an instruction's arguments (nested tuples, lists, dicts)."""
    if isinstance(spec, _Slot):
        return [spec.k]
    if isinstance(spec, (tuple, list)):
        return [k for e in spec for k in slots_in(e)]
    if isinstance(spec, dict):
        return [k for e in spec.values() for k in slots_in(e)]
    return []


def outs(ins: Any) -> list[int]:
    """The slots an instruction's results go to."""
    if ins.out_kind == "one":
        return [ins.outs]
    if ins.out_kind == "tuple":
        return list(ins.outs)
    return []


# --------------------------------------------------------------------------- the program passes


def aliasing(program: Program) -> None:
    """Which slots are new arrays, which outlive a call (returned, written back, or viewed by
    one that is), and which are written in place: neither of the last two may be folded into
    a constant, and only the ``reusable`` returned ones (static outputs) may live in a
    buffer kept from call to call."""
    instructions, xp = program.instructions, program.xp
    fresh = program.fresh
    for ins in instructions:
        if ins.mutates is None and backend.out_function(ins.fn, xp) is not None:
            fresh.update(outs(ins))
    escaping, mutated = program.escaping, program.mutated
    escaping.update(program.returned)
    for ins in reversed(instructions):
        results = outs(ins)
        if ins.mutates is not None:  # the result is the first argument itself, written in place
            aliases = [ins.mutates]
            mutated.add(ins.mutates)
        elif set(results) & fresh:  # a new array: no alias of its inputs
            aliases = []
        else:  # maybe a view of its inputs (reshape, getitem...): assume so
            aliases = slots_in(ins.args) + slots_in(ins.kwargs)
        for k in aliases:
            if any(o in escaping for o in results):
                escaping.add(k)
            if any(o in mutated for o in results):
                mutated.add(k)


def constant_folding(program: Program) -> None:
    """What depends only on constants is computed once (its traced value). A constant updated
    in place is none: an array made inside the function starts each replay as a copy of its
    first value (eager code makes it anew each call), one captured from outside is the same
    array each call, updated again."""
    tracer, mutated, escaping = program.tracer, program.mutated, program.escaping
    program.fresh_sources = mutated & set(tracer.initial_values)
    program.const_sources = {slot for slot, kind, *_ in tracer.sources if kind == "const" and slot not in mutated}
    static = program.static = set(program.const_sources)
    for ins in program.instructions:
        ins_slots = slots_in(ins.args) + slots_in(ins.kwargs)
        if getattr(ins.fn, "__name__", None) in _SHAPE_ONLY:  # reads its first argument's shape and dtype only
            ins_slots = slots_in(ins.args[1:]) + slots_in(ins.kwargs)
        results = outs(ins)
        if ins.mutates is None and results and all(k in static for k in ins_slots) and \
                not any(o in mutated or o in escaping for o in results) and all(o in tracer.values for o in results):
            static.update(results)
    program.folded = static - program.const_sources


def dead_code(program: Program) -> None:
    """Keep what the results and the in-place updates need (and nothing folded)."""
    instructions, static = program.instructions, program.static
    needed = set(program.returned)
    keep = program.keep = [False] * len(instructions)
    for i in range(len(instructions) - 1, -1, -1):
        ins = instructions[i]
        results = outs(ins)
        if ins.mutates is not None or any(o in needed for o in results):
            if results and all(o in static for o in results):
                continue
            keep[i] = True
            needed.update(slots_in(ins.args) + slots_in(ins.kwargs))


PASSES: tuple[Callable[[Program], None], ...] = (aliasing, constant_folding, dead_code)
"""The program passes, in the order they run (each reads what the earlier ones decided)."""


# --------------------------------------------------------------------------- the target passes


def _array_valued(value: Any) -> bool:
    """An array result (or a NumPy scalar, NumPy's 0-d result), which may be computed into a buffer."""
    return (_is_backend_array(value) and hasattr(value, "ndim")) or _is_array_scalar(value)


def _buffer_key(value: Any) -> tuple:
    """Buffers are shared only between results of the same shape, dtype, device and layout."""
    return (value.shape, value.dtype, str(getattr(value, "device", None)), getattr(value, "strides", None))


def out_buffers(target: Target) -> None:
    """What each kept instruction calls (in a CUDA graph, what can be recorded in its place),
    and whether it computes into a buffer of its own: a single array result, not written in
    place, that stays inside the call (or may be reused: static outputs, or a graph's
    results, which live in its memory), of a function the backend has an ``out=`` form of."""
    program = target.program
    tracer, xp = program.tracer, program.xp
    for i, ins in enumerate(program.instructions):
        if not program.keep[i]:
            continue
        results = outs(ins)
        fn = ins.fn
        if target.graph:  # what a CUDA graph can record in place of fn (CuPy refuses cuBLAS calls in a capture)
            operands = [tracer.value_of(k) for k in slots_in(ins.args)]
            fn = backend.capturable(ins.fn, xp, operands) or ins.fn
        buffered = (ins.out_kind == "one" and ins.mutates is None
                    and (results[0] not in program.escaping or results[0] in program.reusable
                         or results[0] in program.fresh_outputs or target.graph)
                    and backend.out_function(fn, xp) is not None
                    and _array_valued(tracer.values.get(results[0])))
        target.calls[i] = fn, buffered


def share_buffers(target: Target) -> None:
    """Which buffer each buffered result computes into (see :func:`_buffer_of`)."""
    program = target.program
    xp = program.xp
    target.buffer_of = _buffer_of(program.instructions, target.calls, program.escaping, program.fresh,
                                  program.tracer.values, lambda fn: backend.is_elementwise(fn, xp))


TARGET_PASSES: tuple[Callable[[Target], None], ...] = (out_buffers, share_buffers)
"""The passes run for each target the program is lowered for, in order."""


def run(program: Program) -> Program:
    """Run :data:`PASSES` on ``program``, in order."""
    for step in PASSES:
        step(program)
    return program


def lower(program: Program, graph: bool) -> Target:
    """Run :data:`TARGET_PASSES` for one target."""
    target = Target(program, graph)
    for step in TARGET_PASSES:
        step(target)
    return target


def _buffer_of(instructions: list, calls: dict, escaping: set, fresh: set, values: dict,
               elementwise: Callable[[Any], bool]) -> dict[int, int]:
    """Which buffer each buffered result computes into, named by the slot that first used it:
    a buffer whose value (and every view of it) is dead is reused by a later result of the
    same kind, as hand-written code reuses its scratch arrays (less memory, warmer caches).
    An elementwise operation may write over an input it is the last reader of; a result that
    outlives the call (returned, written back) keeps a buffer of its own."""
    roots: dict[int, set] = {}  # slot -> the buffered results whose memory it may be (views, in place)
    last_use: dict[int, int] = {}  # buffered result -> the last instruction reading it or a view of it
    pinned: set[int] = set()
    for i, (_, buffered) in calls.items():
        ins = instructions[i]
        ins_slots = slots_in(ins.args) + slots_in(ins.kwargs)
        for k in ins_slots:
            for r in roots.get(k, ()):
                last_use[r] = i
        results = outs(ins)
        if buffered:
            reach = {results[0]}
        elif ins.mutates is not None:
            reach = set(roots.get(ins.mutates, ()))
        elif set(results) & fresh:
            reach = set()
        else:  # maybe a view of its inputs
            reach = {r for k in ins_slots for r in roots.get(k, ())}
        for o in results:
            roots[o] = reach
            if o in escaping:
                pinned |= reach
    buffer_of: dict[int, int] = {}
    free: dict[tuple, list[int]] = {}  # kind -> buffers (named by slot) whose value is dead
    dying: dict[int, list[int]] = {}  # instruction -> buffered results last read there
    for r, i in last_use.items():
        dying.setdefault(i, []).append(r)
    for i, (fn, buffered) in calls.items():
        ins = instructions[i]
        if buffered:
            k = ins.outs
            kind = _buffer_key(values[k])
            chosen = None
            if k not in pinned:
                if free.get(kind):
                    chosen = free[kind].pop()
                elif elementwise(fn):  # write over an input read last here, read only as itself
                    args = slots_in(ins.args) + slots_in(ins.kwargs)
                    for a in args:
                        if a in buffer_of and roots.get(a) == {a} and a not in pinned and last_use.get(a) == i \
                                and _buffer_key(values[a]) == kind \
                                and not any(a in roots.get(o, ()) for o in args if o != a):
                            chosen = buffer_of[a]
                            dying[i].remove(a)
                            break
            buffer_of[k] = k if chosen is None else chosen
            if k not in last_use and k not in pinned:  # never read: free at once
                free.setdefault(kind, []).append(buffer_of[k])
        for r in dying.get(i, ()):
            if r not in pinned and r in buffer_of:
                free.setdefault(_buffer_key(values[r]), []).append(buffer_of[r])
    return buffer_of
