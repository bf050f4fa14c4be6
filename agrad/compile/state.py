"""What a trace reads from and leaves in the world outside it, for ``agrad.compile``.

A traced function reads parameters, their gradients, optimizer state and learning rates
from outside and leaves new ones there. :class:`Tracer` (a :class:`~agrad.compile.trace.Recorder`
that implements :class:`~agrad.compile.hooks.Hooks`) notes all of it while tracing: which
Tensors it adopted, which gradients were absent or cleared, which state dicts it wrote,
which arrays were made inside (and their initial values). From that, :func:`guards`
builds the check that says when a replay may run, and :func:`restore` puts the real
arrays back after the trace and lists the write-backs a replay must do.
"""

from __future__ import annotations

import builtins
from typing import Any, Callable, Iterable

from .. import backend
from ..optim.optimizers import optimizer_structure, structure_stamp
from ..tensor import Tensor
from . import hooks
from .trace import _VALUE_HELP, CompileError, Recorder, TraceArray, TraceScalar, _is_backend_array, _meta

__all__ = ["Tracer", "guards", "restore"]


class Tracer(Recorder, hooks.Hooks):
    """Records one call (:class:`~agrad.compile.trace.Recorder`) and what it reads from and
    writes to the world outside; see :mod:`agrad.compile` for its use."""

    def __init__(self, home: Any) -> None:
        super().__init__(home)
        self.optimizers: list[Any] = []
        self.tensors: list[Any] = []  # Tensors whose arrays the trace read (parameters, constants...)
        self.grad_free: list[Any] = []  # leaves that had no gradient when the trace met them
        self.grad_free_ids: set[int] = set()
        self.effects: list[Callable[[], None]] = []  # Python updates a replay repeats (an optimizer's step count)
        self.optimizer_entry_structure: list[tuple] = []  # per optimizer, as the trace first met it
        self.optimizer_entry_stamp: list[tuple] = []
        # (optimizer, id(parameter), its state dict, created by this call): a replay writes into
        # those dicts, so they must still be the optimizer's; a call that creates state is
        # not replayed (the next such call creates fresh dicts, as eager code does)
        self.state_owners: list[tuple] = []
        self.extra_guards: list[tuple] = []  # (check, expected) pairs layers add (Dropout's mode)
        self.arg_index: dict[int, int] = {}  # slot -> argument position, for the arguments
        # (argument position, kind, where): the function also reads that argument's array from
        # outside (as a parameter...); a replay needs the same to hold
        self.arg_aliases: list[tuple] = []
        self.input_checks: list[tuple] = []  # (slot, check, bounds): run on that input's array before each replay
        self.cleared: list[Any] = []  # Tensors whose gradient the function itself set to None (zero_grad)
        self.cleared_ids: set[int] = set()
        # Arrays agrad made while tracing (agrad.zeros inside the function...), and for those the
        # trace reads, their values when first read: one the function updates in place is a
        # new array in every eager call, so a replay starts from a copy of that value.
        self.created_ids: set[int] = set()
        self.initial_values: dict[int, Any] = {}  # slot -> value

    # ----------------------------------------------------------------- sources
    def met_again(self, proxy: TraceArray, kind: str, where: tuple) -> None:
        arg = self.arg_index.get(proxy.slot)
        if arg is not None and kind != "arg":  # an argument that is also read from outside (a parameter)
            self.arg_aliases.append((arg, kind, where))

    def first_read(self, proxy: TraceArray, value: Any, kind: str, where: tuple) -> None:
        if kind == "arg":
            self.arg_index[proxy.slot] = where[0]
        if kind in ("const", "tensor") and id(value) in self.created_ids:
            self.initial_values[proxy.slot] = backend.namespace_of((value,), "compile").asarray(value, copy=True)

    def note_created(self, x: Any) -> None:
        if not isinstance(x, TraceArray):
            self.created_ids.add(id(x))
            self.keep.append(x)  # (its id stays unique)

    def check_input(self, proxy: Any, check: Callable[[Any], None], what: str,
                    bounds: tuple[int, int] | None = None) -> None:
        """Run ``check`` (which raises on bad values) on the array behind ``proxy`` now and
        before every replay, ahead of any work: an argument's or outside array's values
        checked as eager code checks them. Values computed inside the function cannot be."""
        if _is_backend_array(proxy):  # an array from outside the function: read afresh each call
            proxy = self.source_array(proxy, "const", proxy)
        if not isinstance(proxy, TraceArray) or proxy.slot not in self.source_values:
            raise CompileError(f"agrad.compile: {what} needs the values of an array computed inside the compiled "
                               f"function; {_VALUE_HELP}")
        check(proxy.value)
        self.input_checks.append((proxy.slot, check, bounds))

    def adopt_tensor(self, t: Any) -> None:
        """Make a Tensor from outside the trace (a parameter, a constant) proxy-backed; its
        array, and its gradient if it has one, become sources the replay reads afresh."""
        if isinstance(t._data, TraceArray) or backend.is_array_wrapper(t._data):
            return  # (a batched array of agrad.vmap: its physical Tensor is adopted when an op uses it)
        t._trace_swap(self.source_array(t._data, "tensor", t))
        self.tensors.append(t)
        if t.grad is not None:
            if not isinstance(t.grad._data, TraceArray):
                t.grad._trace_swap(self.source_array(t.grad._data, "grad", t))
        elif t.requires_grad and t._prim is None and id(t) not in self.cleared_ids:
            # No gradient when met, and not because the function cleared it: a replay needs
            # the same (a gradient present at entry would be accumulated into, eagerly).
            self.grad_free.append(t)
            self.grad_free_ids.add(id(t))

    def adopt_args(self, args: Any) -> Any:
        """A primitive's arguments with every outside array proxy-backed."""
        changed = False
        out = []
        for a in args:
            if isinstance(a, Tensor):
                self.adopt_tensor(a)
            elif _is_backend_array(a):
                a = self.source_array(a, "const", a)
                changed = True
            out.append(a)
        return tuple(out) if changed else args

    def adopt_state(self, state: dict) -> None:
        """An optimizer's per-parameter state: arrays and numbers become sources."""
        for k, v in list(state.items()):
            if isinstance(v, (TraceArray, TraceScalar)):
                continue
            if _is_backend_array(v):
                state[k] = self.source_array(v, "dict", state, k)
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                state[k] = self.source_scalar(v, "dict", state, k)

    # ----------------------------------------------------------------- hooks (see agrad.compile.hooks)
    def optimizer_step(self, opt: Any) -> None:
        if opt not in self.optimizers:
            self.optimizers.append(opt)
            self.effects.append(opt._count_step)
            self.optimizer_entry_structure.append(optimizer_structure(opt))  # before this step changes it
            self.optimizer_entry_stamp.append(structure_stamp(opt))

    def group_update(self, opt: Any, group: dict) -> dict:
        view = dict(group)
        view["lr"] = self.source_scalar(group["lr"], "group", group, "lr")
        for p in group["params"]:
            if p.grad is None:
                continue
            self.adopt_tensor(p)
            state = opt.state.get(id(p))
            if state is not None:  # (state made by this step is reported by state_created)
                self.state_owners.append((opt, id(p), state, False))
                self.adopt_state(state)
        return view

    def state_created(self, opt: Any, p: Any, state: dict) -> None:
        self.state_owners.append((opt, id(p), state, True))
        self.adopt_state(state)

    def hyperparameter_set(self, key: str) -> None:
        raise CompileError(
            f"agrad.compile: setting {key!r} of a parameter group inside a compiled function; call the scheduler "
            f"(or set the rate) outside it: every replay reads the group's current learning rate")

    def grads_cleared(self, params: Iterable[Any]) -> None:
        for t in params:
            if id(t) not in self.cleared_ids:
                self.cleared.append(t)
                self.cleared_ids.add(id(t))

    def guard(self, check: Callable[[], Any], expected: Any) -> None:
        self.extra_guards.append((check, expected))

    def random_numbers(self, what: str) -> None:
        raise CompileError(f"agrad.compile: {what} inside a compiled function would draw once and replay the "
                           f"same numbers every call; draw them outside and pass them in as an argument")

    def check_values(self, array: Any, check: Callable[[Any], None], what: str,
                     bounds: tuple[int, int] | None = None) -> None:
        self.check_input(array, check, what, bounds)


def _array_check(env: dict, i: int, name: str, expr: str, expected: tuple) -> str:
    """Generated source: ``expr`` (bound to ``name``) is an array of the class, shape, dtype
    and device in ``expected`` (a ``_meta`` tuple), inlined so that the common case costs
    attribute reads, not calls (one device per class: the device is not compared)."""
    env[f"c{i}"], env[f"s{i}"], env[f"d{i}"], env[f"e{i}"] = expected[0], expected[1], expected[2], expected
    same = f"({name} := {expr}).__class__ is c{i} and {name}.shape == s{i} and {name}.dtype == d{i}"
    ns = backend._BY_TYPE.get(expected[0])
    return same if ns is not None and not ns.multi_device else f"{same} and _meta({name}) == e{i}"


def guards(tracer: Tracer) -> Callable[[list], bool]:
    """One generated function saying whether a replay may run: every outside array the trace
    read (and where it found none) is as the trace met it, nothing it baked in changed."""
    env: dict[str, Any] = {"_meta": _meta, "_replaced": hooks._ATTRIBUTES_REPLACED}
    checks = []

    for i, (slot, kind, *where) in enumerate(tracer.sources):  # as each was when the trace first read it
        expected = tracer.source_meta.get(slot)
        env[f"t{i}"] = where[0]
        if kind == "tensor":
            checks.append(_array_check(env, i, "a", f"t{i}._data", expected))
        elif kind == "grad":
            checks.append(f"t{i}.grad is None" if expected is None else
                          f"(g := t{i}.grad) is not None and {_array_check(env, i, 'a', 'g._data', expected)}")
        elif kind == "dict":
            env[f"k{i}"], env[f"e{i}"] = where[1], expected
            env[f"q{i}"] = lambda d=where[0], k=where[1]: ((_meta(d[k]) if _is_backend_array(d[k]) else type(d[k]))
                                                          if k in d else None)
            checks.append(f"q{i}() == e{i}")
    for i, t in enumerate(tracer.grad_free):
        env[f"n{i}"] = t
        checks.append(f"n{i}.grad is None")
    checks.append(f"_replaced[0] == {hooks.attributes_version()}")  # no module attribute replaced since
    for i, (check, expected) in enumerate(tracer.extra_guards):
        env[f"x{i}"], env[f"xe{i}"] = check, expected
        checks.append(f"x{i}() == xe{i}")
    for i, (opt, pid, state, _) in enumerate(tracer.state_owners):  # the state dicts it writes are still its own
        env[f"so{i}"], env[f"sk{i}"], env[f"sd{i}"] = opt, pid, state
        checks.append(f"so{i}.state.get(sk{i}) is sd{i}")
    for i, (opt, structure, stamp) in enumerate(zip(tracer.optimizers, tracer.optimizer_entry_structure,
                                                    tracer.optimizer_entry_stamp)):
        # The same groups holding the same parameters (a replay updates those Tensors), and
        # while nothing bumped its structure version, the same structure; else the full check.
        env[f"o{i}"], env[f"og{i}"] = opt, _OptimizerGuard(opt, structure, stamp)
        same = [f"len(o{i}.param_groups) == {len(opt.param_groups)}"]
        for j, group in enumerate(opt.param_groups):
            env[f"pg{i}_{j}"] = group
            same.append(f"o{i}.param_groups[{j}] is pg{i}_{j} "
                        f"and len(P := pg{i}_{j}['params']) == {len(group['params'])}")
            for k, param in enumerate(group["params"]):
                env[f"p{i}_{j}_{k}"] = param
                same.append(f"P[{k}] is p{i}_{j}_{k}")
        version, n_state = stamp[0], stamp[1]
        checks.append(" and ".join(same) +
                      f" and (o{i}._structure_version == {version} and len(o{i}.state) == {n_state} or og{i}())")
    for i, (arg, kind, where) in enumerate(tracer.arg_aliases):  # still the same array as that argument
        env[f"al{i}"] = where[0]
        read = {"tensor": f"al{i}._data", "grad": f"(al{i}.grad._data if al{i}.grad is not None else None)",
                "const": f"al{i}"}.get(kind)
        if read is None:
            env[f"alk{i}"] = where[1]
            read = f"al{i}.get(alk{i})"
        checks.append(f"{read} is args[{arg}]")
    source = "def matches(args):\n    return (" + "\n            and ".join(checks) + ")\n"
    exec(builtins.compile(source, "<agrad.compile guards>", "exec"), env)  # noqa: S102 - our own code
    return env["matches"]


class _OptimizerGuard:
    """Whether an optimizer's structure (state keys, hyperparameters but the learning rate)
    is what the trace met; the full comparison runs only when its cheap stamp moved."""

    def __init__(self, opt: Any, structure: tuple, stamp: tuple) -> None:
        self.opt, self.structure, self.stamp = opt, structure, stamp

    def __call__(self) -> bool:
        stamp = structure_stamp(self.opt)
        if stamp == self.stamp:
            return True
        if optimizer_structure(self.opt) == self.structure:
            self.stamp = stamp
            return True
        return False


def restore(tracer: Tracer, final: bool) -> list:
    """Put real arrays back where the trace left proxies, and (after a successful trace) list
    the write-backs a replay must do."""
    writes = []
    source_slot = {id(where[0]) if kind in ("tensor", "grad") else (id(where[0]), where[1]): slot
                   for slot, kind, *where in tracer.sources if kind in ("tensor", "grad", "dict")}
    for t in tracer.tensors:
        data = t._data
        if isinstance(data, TraceArray):
            t._trace_swap(data.value)
            if final and data.slot != source_slot.get(id(t)):
                writes.append(("tensor", t, data.slot))
        g = t.grad
        if t.requires_grad and t._prim is None:  # a leaf: its gradient is part of the state
            if g is None:
                if final and id(t) not in tracer.grad_free_ids:
                    writes.append(("grad", t, None))
            elif isinstance(g._data, TraceArray):
                slot = g._data.slot
                g._trace_swap(g._data.value)
                if final:
                    writes.append(("grad", t, slot))
    adopted = {id(t) for t in tracer.tensors}
    for t in tracer.cleared:
        if id(t) not in adopted and final:  # cleared, never used: the replay clears it too
            writes.append(("grad", t, None))
    for opt in tracer.optimizers:
        for state in opt.state.values():
            for k, v in list(state.items()):
                if isinstance(v, (TraceArray, TraceScalar)):
                    state[k] = v.value
                    if final and v.slot != source_slot.get((id(state), k)):
                        writes.append(("dict", (state, k), v.slot))
    return writes


def _where(kind: str, where: Any) -> tuple:
    return where if kind == "dict" else (where,)


def _place(kind: str, where: Any) -> tuple:
    """Where a source is read from or a result written to, as a hashable key."""
    return (kind, id(where[0]), where[1]) if kind == "dict" else (kind, id(where[0]))
