"""``agrad.compile``: trace a function once, then replay its array operations.

    @agrad.compile
    def step(x, y):
        opt.zero_grad()
        loss = agrad.nn.logistic_loss(model(x), y, check_labels=False)
        loss.backward()
        opt.step()
        return loss

    for x, y in loader:
        loss = step(x, y)          # the first call traces, the next ones replay
        sched.step()               # outside: its learning rate is read at every replay

The first call for a *signature* runs the function eagerly on proxy arrays
(:mod:`agrad.tracing`) and records every backend operation it performs: the forward
pass, the backward sweep and the optimizer update, in order. Later calls replay that
list of operations on the new inputs, without Tensors, tape or Python bookkeeping, and
write the results back where the function left them (parameters, gradients, optimizer
state) and return the outputs. A replay is bit-identical to an eager call.

What the replay reads afresh each call: the arguments, every Tensor the function used
(parameters), their gradients, the optimizers' state, and each parameter group's
learning rate. What is baked in: Python numbers and control flow, other hyperparameters,
shapes and dtypes. So the signature (cached per function, up to ``max_cache`` entries)
covers the arguments' structure, backends, devices, shapes and dtypes (and the values
of Python-number arguments), the shapes of the parameters and optimizer state, which
parameters have a gradient, the optimizers' other hyperparameters, grad mode and the
selected backend; a new one retraces (with a warning when that happens often).

Not allowed inside (a :class:`~agrad.tracing.CompileError` while tracing, never a stale
replay): Python decisions on array values (``if loss > 0``), ``float(x)``, ``.item()``,
printing arrays, copies to NumPy or between devices, random numbers (Dropout), setting a
learning rate (call the scheduler outside). Other Python side effects run while tracing
only, and the function must not depend on Python state that changes between calls.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, Callable

from . import backend, dtypes, tape, tracing, tree
from .optim.optimizers import optimizer_structure
from .tensor import Tensor
from .tracing import CompileError, TraceArray, Tracer, TraceScalar, _is_backend_array, _meta, _Slot

__all__ = ["compile", "CompileError", "Compiled"]


def _leaf_signature(x: Any) -> tuple:
    if isinstance(x, Tensor):
        return ("tensor", _meta(x._data), x.requires_grad)
    if _is_backend_array(x):
        return ("array", _meta(x))
    if isinstance(x, (bool, int, float, str)) or x is None:
        return ("value", type(x), x)
    raise CompileError(f"agrad.compile: cannot take an argument of type {type(x).__name__}; pass arrays, Tensors, "
                       f"Python numbers, or lists/tuples/dicts of them")


class _Program:
    """One trace, lowered to a Python function that calls the backend directly: its
    instructions, where its outside values come from and go to, and the guards that say
    when it may be replayed."""

    def __init__(self, tracer: Tracer, arg_slots: list, out_def: Any, out_spec: list, writes: list,
                 guards: list, effects: list, static_outputs: bool) -> None:
        self.sources = [s for s in tracer.sources if s[1] != "arg"]
        self.arg_slots = arg_slots  # per argument leaf: the slot it fills, or None (a Python value)
        self.out_def, self.out_spec = out_def, out_spec
        self.writes, self.guards, self.effects = writes, guards, effects
        returned = [slot for _, _, slot in writes if slot is not None] + [s for _, s in out_spec if isinstance(s, int)]
        # Results written back where the next call reads them (parameters, optimizer state, a
        # gradient that is accumulated into) never live in a reused buffer: the next call
        # could overwrite one while still reading it. Outputs and fresh gradients may, when
        # the user asks for static outputs.
        sourced = {(kind, id(where[0])) + ((where[1],) if kind == "dict" else ())
                   for _, kind, *where in tracer.sources if kind in ("tensor", "grad", "dict")}
        pinned = {slot for kind, w, slot in writes if slot is not None and
                  (kind == "tensor" or ((kind, id(w[0]), w[1]) if kind == "dict" else (kind, id(w))) in sourced)}
        reusable = set() if not static_outputs else set(returned) - pinned
        self.replay, self.source = _codegen(tracer, arg_slots, [s[0] for s in self.sources], returned, reusable)

    def matches(self) -> bool:
        return all(check() == expected for check, expected in self.guards)

    def run(self, leaves: list) -> Any:
        args = [leaf._data if isinstance(leaf, Tensor) else leaf for k, leaf in zip(self.arg_slots, leaves)
                if k is not None]
        values = self.replay(args, [_read(kind, where) for _, kind, *where in self.sources])
        i = 0
        for kind, where, slot in self.writes:
            if slot is None:
                _write(kind, where, None)
            else:
                _write(kind, where, values[i])
                i += 1
        for effect in self.effects:
            effect()
        outs = []
        for tensor, s in self.out_spec:
            if isinstance(s, int):
                outs.append(Tensor(values[i]) if tensor else values[i])
                i += 1
            else:
                outs.append(s)
        return tree.unflatten(self.out_def, outs)


def _read(kind: str, where: list) -> Any:
    if kind == "tensor":
        return where[0]._data
    if kind == "grad":
        return where[0].grad._data
    if kind in ("dict", "group"):
        return where[0][where[1]]
    return where[0]  # "const"


def _write(kind: str, where: Any, value: Any) -> None:
    if kind == "tensor":
        t = where
        if t._data is not value:
            t._data = value
        t._version += 1  # as after an eager update: graphs recorded before must not reuse it
    elif kind == "grad":
        where.grad = None if value is None else tape._wrap(value)
    else:  # "dict"
        where[0][where[1]] = value


# --------------------------------------------------------------------------- code generation

_IN_PLACE = {"iadd", "isub", "imul", "itruediv", "ifloordiv", "imod", "ipow", "imatmul", "iand", "ior", "ixor",
             "ilshift", "irshift", "setitem"}


# Functions whose result depends on their first argument's shape and dtype, not its values.
_SHAPE_ONLY = {"zeros_like", "ones_like", "full_like"}


def _slots_in(spec: Any) -> list[int]:
    if isinstance(spec, _Slot):
        return [spec.k]
    if isinstance(spec, (tuple, list)):
        return [k for e in spec for k in _slots_in(e)]
    if isinstance(spec, dict):
        return [k for e in spec.values() for k in _slots_in(e)]
    return []


def _outs(ins: Any) -> list[int]:
    if ins.out_kind == "one":
        return [ins.outs]
    if ins.out_kind == "tuple":
        return list(ins.outs)
    return []


def _codegen(tracer: Tracer, arg_slots: list, source_slots: list, returned: list,
             reusable: set) -> tuple[Callable, str]:
    """The replay as one generated function: locals for slots, direct calls to the backend's
    functions, constants folded, dead instructions dropped, and on NumPy / CuPy each
    result that stays inside the call computed into a buffer kept from call to call."""
    instructions = tracer.instructions
    out_xp = tracer.home
    fresh = set()  # slots whose producer returns a new array (never a view of its inputs)
    for ins in instructions:
        if ins.mutates is None and backend.out_function(ins.fn, out_xp) is not None:
            fresh.update(_outs(ins))
    # Slots that outlive a call (returned, written back, or viewed by one that is), and slots
    # written in place: neither may be folded into a constant, and only the ``reusable``
    # returned ones (static outputs) may live in a buffer kept from call to call.
    escaping, mutated = set(returned), set()
    for ins in reversed(instructions):
        outs = _outs(ins)
        if ins.mutates is not None:  # the result is the first argument itself, written in place
            aliases = [ins.mutates]
            mutated.add(ins.mutates)
        elif set(outs) & fresh:  # a new array: no alias of its inputs
            aliases = []
        else:  # maybe a view of its inputs (reshape, getitem...): assume so
            aliases = _slots_in(ins.args) + _slots_in(ins.kwargs)
        for k in aliases:
            if any(o in escaping for o in outs):
                escaping.add(k)
            if any(o in mutated for o in outs):
                mutated.add(k)
    # Constant folding: what depends only on constants is computed once (its traced value).
    const_sources = {slot for slot, kind, *_ in tracer.sources if kind == "const"}
    static = set(const_sources)
    for ins in instructions:
        ins_slots = _slots_in(ins.args) + _slots_in(ins.kwargs)
        if getattr(ins.fn, "__name__", None) in _SHAPE_ONLY:  # reads its first argument's shape and dtype only
            ins_slots = _slots_in(ins.args[1:]) + _slots_in(ins.kwargs)
        outs = _outs(ins)
        if ins.mutates is None and outs and all(k in static for k in ins_slots) and \
                not any(o in mutated or o in escaping for o in outs) and all(o in tracer.values for o in outs):
            static.update(outs)
    # Dead code: keep what the results and the in-place updates need.
    needed = set(returned)
    keep = [False] * len(instructions)
    for i in range(len(instructions) - 1, -1, -1):
        ins = instructions[i]
        outs = _outs(ins)
        if ins.mutates is not None or any(o in needed for o in outs):
            if outs and all(o in static for o in outs):
                continue
            keep[i] = True
            needed.update(_slots_in(ins.args) + _slots_in(ins.kwargs))
    env: dict[str, Any] = {}
    lines = ["def replay(args, sources):"]
    for i, k in enumerate(k for k in arg_slots if k is not None):
        lines.append(f"    v{k} = args[{i}]")
    for i, k in enumerate(source_slots):
        lines.append(f"    v{k} = sources[{i}]")
    folded = static - const_sources

    def name(k: int) -> str:
        if k in folded:
            env[f"c{k}"] = tracer.values[k]
            return f"c{k}"
        return f"v{k}"

    def expr(spec: Any) -> str:
        if isinstance(spec, _Slot):
            return name(spec.k)
        if isinstance(spec, tuple) and _slots_in(spec):
            return "(" + "".join(expr(e) + ", " for e in spec) + ")"
        if isinstance(spec, list) and _slots_in(spec):
            return "[" + ", ".join(expr(e) for e in spec) + "]"
        key = f"k{len(env)}"
        env[key] = spec
        return key

    for i, ins in enumerate(instructions):
        if not keep[i]:
            continue
        fn_name = f"f{i}"
        env[fn_name] = ins.fn
        call_args = [expr(a) for a in ins.args] + [f"{k}={expr(v)}" for k, v in ins.kwargs.items()]
        outs = _outs(ins)
        buffered = (ins.out_kind == "one" and ins.mutates is None
                    and (outs[0] not in escaping or outs[0] in reusable)
                    and backend.out_function(ins.fn, out_xp) is not None
                    and _is_backend_array(tracer.values.get(outs[0]))
                    and hasattr(tracer.values.get(outs[0]), "ndim"))
        if buffered:  # computed into its own buffer, allocated once (NumPy and CuPy)
            k = outs[0]
            env[fn_name] = backend.out_function(ins.fn, out_xp)
            value = tracer.values[k]
            env[f"b{k}"] = out_xp.empty_like(out_xp.asarray(value))
            lines.append(f"    v{k} = {fn_name}({', '.join(call_args)}, out=b{k})")
        elif ins.out_kind == "one":
            lines.append(f"    v{outs[0]} = {fn_name}({', '.join(call_args)})")
        elif ins.out_kind == "tuple":
            lines.append(f"    {', '.join(f'v{o}' for o in outs)}, = {fn_name}({', '.join(call_args)})")
        else:
            lines.append(f"    {fn_name}({', '.join(call_args)})")
    lines.append("    return (" + "".join(name(k) + ", " for k in returned) + ")")
    source = "\n".join(lines) + "\n"
    exec(compile_source(source), env)  # noqa: S102 - our own generated code, from our own trace
    return env["replay"], source


def compile_source(source: str) -> Any:
    import builtins

    return builtins.compile(source, "<agrad.compile replay>", "exec")


class Compiled:
    """A function compiled by :func:`compile`; call it like the function."""

    def __init__(self, fn: Callable, max_cache: int = 8, static_outputs: bool = False) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.max_cache = max_cache
        self.static_outputs = static_outputs
        self.programs: dict[tuple, list[_Program]] = {}
        self.traces = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        leaves, treedef = tree.flatten((args, kwargs))
        key = (treedef, tuple(_leaf_signature(x) for x in leaves), tape.is_grad_enabled(), backend.get_backend(),
               dtypes.get_default_dtype().name)
        for program in self.programs.get(key, []):
            if program.matches():
                return program.run(leaves)
        return self._trace(key, leaves, treedef)

    def _trace(self, key: tuple, leaves: list, treedef: Any) -> Any:
        self.traces += 1
        if self.traces > 2 * self.max_cache and self.traces % self.max_cache == 1:
            warnings.warn(f"agrad.compile: {self.__name__} has been traced {self.traces} times; its inputs' shapes, "
                          f"dtypes or Python values keep changing (each new one retraces)", stacklevel=3)
        home = None
        for x in leaves:
            raw = x._data if isinstance(x, Tensor) else x
            if _is_backend_array(raw):
                home = backend.namespace_of((raw,), "compile")
                break
        tracer = Tracer(home or backend.creation_namespace())
        tracing.begin(tracer)
        try:
            traced_leaves, arg_slots = [], []
            for i, x in enumerate(leaves):
                raw = x._data if isinstance(x, Tensor) else x
                if _is_backend_array(raw):
                    proxy = tracer.source_array(raw, "arg", i)
                    arg_slots.append(proxy.slot)
                    if isinstance(x, Tensor):
                        t = Tensor(proxy)
                        if x.requires_grad:
                            t.requires_grad = True
                        traced_leaves.append(t)
                    else:
                        traced_leaves.append(proxy)
                else:
                    arg_slots.append(None)
                    traced_leaves.append(x)
            args, kwargs = tree.unflatten(treedef, traced_leaves)
            result = self.fn(*args, **kwargs)
            out_leaves, out_def = tree.flatten(result)
        except BaseException:
            tracing.end()
            _restore(tracer, final=False)
            raise
        tracing.end()
        out_spec, outputs = [], []
        for o in out_leaves:
            data = o._data if isinstance(o, Tensor) else o
            if isinstance(data, TraceArray):
                out_spec.append((isinstance(o, Tensor), data.slot))
                outputs.append(Tensor(data.value) if isinstance(o, Tensor) else data.value)
            elif isinstance(data, TraceScalar):
                out_spec.append((False, data.slot))
                outputs.append(data.value)
            else:
                out_spec.append((False, o))
                outputs.append(o)
        writes = _restore(tracer, final=True)
        program = _Program(tracer, arg_slots, out_def, out_spec, writes, _guards(tracer), list(tracer.effects),
                           self.static_outputs)
        programs = self.programs.setdefault(key, [])
        programs.insert(0, program)
        del programs[self.max_cache:]
        return tree.unflatten(out_def, outputs)


def _guards(tracer: Tracer) -> list:
    """(check, expected) pairs: a replay needs each check to give what it gave at trace time."""
    guards = []
    for slot, kind, *where in tracer.sources:  # as each was when the trace first read it
        expected = tracer.source_meta.get(slot)
        if kind == "tensor":
            guards.append((lambda t=where[0]: _meta(t._data), expected))
        elif kind == "grad":
            guards.append((lambda t=where[0]: None if t.grad is None else _meta(t.grad._data), expected))
        elif kind == "dict":
            d, k = where
            guards.append((lambda d=d, k=k: (_meta(d[k]) if _is_backend_array(d[k]) else type(d[k])) if k in d
                           else None, expected))
    for t in tracer.grad_free:
        guards.append((lambda t=t: t.grad is None, True))
    for opt, structure in zip(tracer.optimizers, tracer.optimizer_entry_structure):
        guards.append((lambda o=opt: optimizer_structure(o), structure))
    return guards


def _restore(tracer: Tracer, final: bool) -> list:
    """Put real arrays back where the trace left proxies, and (after a successful trace) list
    the write-backs a replay must do."""
    writes = []
    source_slot = {id(where[0]) if kind in ("tensor", "grad") else (id(where[0]), where[1]): slot
                   for slot, kind, *where in tracer.sources if kind in ("tensor", "grad", "dict")}
    for t in tracer.tensors:
        data = t._data
        if isinstance(data, TraceArray):
            t._data = data.value
            if final and data.slot != source_slot.get(id(t)):
                writes.append(("tensor", t, data.slot))
        g = t.grad
        if t.requires_grad and t._prim is None:  # a leaf: its gradient is part of the state
            if g is None:
                if final and id(t) not in tracer.grad_free_ids:
                    writes.append(("grad", t, None))
            elif isinstance(g._data, TraceArray):
                slot = g._data.slot
                g._data = g._data.value
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


def compile(fn: Callable | None = None, *, max_cache: int = 8, static_outputs: bool = False) -> Any:
    """Trace ``fn`` on its first call for each signature and replay its array operations
    afterwards (see :mod:`agrad.compile`). Use as ``@agrad.compile`` or
    ``agrad.compile(fn, max_cache=..., static_outputs=...)``.

    Every intermediate lives in a buffer allocated once. The outputs and the gradients
    the function leaves on parameters are new arrays each call, as in eager mode; with
    ``static_outputs=True`` they live in buffers too, which the next call overwrites
    (as with CUDA graphs): then a step allocates no arrays at all, and a value kept
    across calls must be copied."""
    if fn is None:
        return lambda f: Compiled(f, max_cache, static_outputs)
    return Compiled(fn, max_cache, static_outputs)
