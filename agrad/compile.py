"""``agrad.compile``: trace a function once, then replay its array operations::

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
(``agrad.tracing``) and records every backend operation it performs: the forward
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

Not allowed inside (a :class:`CompileError` while tracing, never a stale
replay): Python decisions on array values (``if loss > 0``), ``float(x)``, ``.item()``,
printing arrays, copies to NumPy or between devices, random numbers (Dropout), setting a
learning rate (call the scheduler outside). Other Python side effects run while tracing
only, and the function must not depend on Python state that changes between calls.

On CuPy the replay is captured as a CUDA graph on its second call and launched with one
call per step afterwards (see ``_GraphReplay`` in the source for how arguments,
numbers computed each call, and state written back keep the graph's fixed addresses
right); where capture is impossible it replays without a graph and says why.
"""

from __future__ import annotations

import builtins
import functools
import operator
import warnings
from typing import Any, Callable

from . import backend, dtypes, tape, tracing, tree
from .optim.optimizers import optimizer_structure, structure_stamp
from .tensor import Tensor, shared_counter
from .tracing import CompileError, TraceArray, Tracer, TraceScalar, _is_array_scalar, _is_backend_array, _meta, _Slot

__all__ = ["compile", "CompileError", "Compiled"]


_PYTHON_VALUES = (bool, int, float, str, type(None))


def _leaf_signature(x: Any) -> tuple:
    if isinstance(x, Tensor):
        return ("tensor", _meta(x._data), x.requires_grad)
    if _is_backend_array(x):
        return ("array", _meta(x))
    if isinstance(x, (bool, int, float, str)) or x is None:
        return ("value", type(x), x)
    raise CompileError(f"agrad.compile: cannot take an argument of type {type(x).__name__}; pass arrays, Tensors, "
                       f"Python numbers, or lists/tuples/dicts of them")


class _NoGraph(Exception):
    """Why a replay cannot be captured into a CUDA graph (it then replays without one)."""


class _GraphParts:
    """A replay split for a CUDA graph: ``check(args)`` runs the input checks (before any
    work); ``prepare()`` computes the numbers that change between calls on the host, fills
    their device scalars and returns the numbers among the results; ``compute(args)`` is
    the array work (what the graph records) returning the array results;
    ``finish(arrays + numbers)`` writes them back and builds the outputs. ``results``
    lists the result slots in that order."""

    def __init__(self, check: Callable, prepare: Callable, compute: Callable, finish: Callable, results: list,
                 n_arrays: int, source: str) -> None:
        self.check, self.prepare, self.compute, self.finish, self.results = check, prepare, compute, finish, results
        self.n_arrays, self.source = n_arrays, source


class _GraphReplay:
    """Launches a replay captured as a CUDA graph: one launch per call.

    A graph's kernels read and write fixed addresses. So the arguments are copied into
    buffers of the graph's own, results that the next call reads (parameters, optimizer
    state) are copied inside the graph into the arrays it read them from, and a
    parameter whose array was replaced from outside (``load_state_dict``) makes the
    next call capture afresh. Results live in the graph's memory: with ``static_outputs``
    the outputs and fresh gradients are those arrays, overwritten by the next call;
    without, they are copied out after the launch."""

    MAX_CAPTURES = 4

    def __init__(self, parts: _GraphParts, program: "_Program", capture: Callable, xp: Any) -> None:
        self.parts, self.program, self.capture_fn, self.xp = parts, program, capture, xp
        self.launch: Callable | None = None
        self.captured_sources: list = []
        self.source_ids: set[int] = set()
        self.static_args: list = []
        self.results: list = []
        self.captures = 0
        self.earlier: list = []

    def __call__(self, args: list) -> list:
        sources = self.program.read_sources()
        same = self.launch is not None and all(map(operator.is_, sources, self.captured_sources))
        source_ids = self.source_ids if same else {id(s) for s in sources}
        if not source_ids.isdisjoint(map(id, args)):  # the graph would read a copy of it, not it
            raise _NoGraph("an argument is also an array it reads from outside (a parameter, a gradient)")
        if not same:
            if self.captures >= self.MAX_CAPTURES:
                raise _NoGraph(f"the arrays it reads were replaced {self.captures} times (each needs a new capture)")
            try:
                self._capture(args, sources)
            except Exception as exc:  # a capture records and runs nothing: replaying without it is safe
                raise _NoGraph(f"the capture failed ({type(exc).__name__}: {exc})") from exc
        for buffer, a in zip(self.static_args, args):
            if buffer is not None:
                buffer[...] = a
        numbers = self.parts.prepare()
        self.launch()  # type: ignore[misc]
        arrays = self.results
        if self.program.copy_out:
            arrays = [self.xp.asarray(r, copy=True) if i in self.program.copy_out else r
                      for i, r in enumerate(arrays)]
        return self.parts.finish(arrays + numbers)

    def warm_up(self, args: list) -> list:
        """One call of the graph's own functions without capturing them: it compiles and
        loads every kernel the capture will record (capturing them cold is fragile)."""
        sources = self.program.read_sources()
        numbers = self.parts.prepare()
        arrays = self.parts.compute(args)
        for i, j in self.program.copy_back.items():
            if arrays[i] is not sources[j]:
                sources[j][...] = arrays[i]
                arrays[i] = sources[j]
        arrays = [self.xp.asarray(r, copy=True) if i in self.program.copy_out else r for i, r in enumerate(arrays)]
        return self.parts.finish(arrays + numbers)

    def _capture(self, args: list, sources: list) -> None:
        self.captures += 1
        xp = self.xp
        self.static_args = [xp.empty_like(a) if _is_backend_array(a) else None for a in args]
        graph_args = [b if b is not None else a for a, b in zip(args, self.static_args)]
        self.parts.prepare()  # (a stand-in capture runs the body: give it this call's numbers)
        copy_back = self.program.copy_back  # result index -> source index, for state written back

        def body() -> list:
            results = self.parts.compute(graph_args)
            for i, j in copy_back.items():
                if results[i] is not sources[j]:  # not updated in place: copy into the array read next call
                    sources[j][...] = results[i]
                    results[i] = sources[j]
            return results

        self.launch, self.results = self.capture_fn(body, sources)
        self.captured_sources, self.source_ids = sources, {id(s) for s in sources}
        # Earlier graphs stay alive: outputs of theirs the caller kept still use their memory.
        self.earlier.append(self.launch)


class _Program:
    """One trace, lowered to a Python function that calls the backend directly (reading its
    outside values, computing, writing results back, building the outputs), and the
    guards that say when it may be replayed."""

    def __init__(self, tracer: Tracer, arg_slots: list, out_def: Any, out_spec: list, writes: list,
                 guards: Callable[[list], bool], effects: list, static_outputs: bool, cuda_graph: bool,
                 name: str) -> None:
        self.out_def, self.effects, self.name = out_def, effects, name
        self.matches = guards  # (raw arguments) -> whether this program may replay now
        self.accepts: Callable[[tuple], list | None] | None = None  # set by Compiled: the fast signature check
        self.single_output = out_def.kind == "leaf"
        # Results written back where the next call reads them (parameters, optimizer state, a
        # gradient that is accumulated into) never live in a reused buffer: the next call
        # could overwrite one while still reading it. Outputs and fresh gradients may, when
        # the user asks for static outputs.
        array_sources = [(slot, kind, where) for slot, kind, *where in tracer.sources
                         if kind in ("tensor", "grad", "dict") and slot not in tracer.numbers]
        source_index = {_place(kind, where): j for j, (_, kind, where) in enumerate(array_sources)}
        self.array_sources = [(kind, where[0], where[1] if kind == "dict" else None)
                              for _, kind, where in array_sources]
        sourced = {_place(kind, where) for _, kind, *where in tracer.sources if kind in ("tensor", "grad", "dict")}
        pinned = {slot for kind, where, slot in writes if slot is not None and
                  (kind == "tensor" or _place(kind, _where(kind, where)) in sourced)}
        returned = [slot for _, _, slot in writes if slot is not None] + [s for _, s in out_spec if isinstance(s, int)]
        reusable = set() if not static_outputs else set(returned) - pinned
        capture = backend.graph_capturer(tracer.home) if cuda_graph else None
        self.replay, self.source, parts = _codegen(tracer, arg_slots, writes, out_spec, returned, reusable,
                                                   graph_wanted=capture is not None)
        self.graph: _GraphReplay | None = None
        self.graph_reason = "off (cuda_graph=False)" if not cuda_graph else \
            "the backend has no CUDA graphs" if capture is None else "captured on the second call"
        self.replays = 0
        if isinstance(parts, str):
            self._no_graph(parts)
        elif parts is not None:
            index = {k: i for i, k in enumerate(parts.results)}
            self.copy_back: dict[int, int] = {}
            for kind, where, slot in writes:
                j = source_index.get(_place(kind, _where(kind, where)))
                if slot is not None and j is not None:
                    if self.copy_back.get(index[slot], j) != j:
                        self._no_graph("one result is written back to two places")
                        return
                    self.copy_back[index[slot]] = j
            self.copy_out = set() if static_outputs else {index[k] for k in set(returned) - pinned
                                                          if index[k] < parts.n_arrays}
            self.graph = _GraphReplay(parts, self, capture, tracer.home)

    def _no_graph(self, reason: str) -> None:
        self.graph = None
        self.graph_reason = f"replays without a CUDA graph: {reason}"
        warnings.warn(f"agrad.compile: {self.name} {self.graph_reason}", stacklevel=4)

    def read_sources(self) -> list:
        """The arrays the replay reads from outside (parameters, gradients, state), now."""
        out = []
        for kind, holder, key in self.array_sources:
            out.append(holder._data if kind == "tensor" else holder.grad._data if kind == "grad" else holder[key])
        return out


    def run(self, args: Any) -> Any:
        graph = self.graph
        if graph is not None:
            graph.parts.check(args)  # (the plain replay checks its inputs itself)
        self.replays += 1
        if graph is None:
            outs = self.replay(args)
        elif self.replays == 1:
            try:
                outs = graph.warm_up(args)
            except Exception as exc:
                # It may have updated some state already: running the step again would apply
                # it twice, so this call fails (the next ones replay without a graph).
                self._no_graph(f"its first run failed ({type(exc).__name__}: {exc})")
                raise CompileError(f"agrad.compile: {self.name}: the first replay prepared for a CUDA graph failed "
                                   f"part way ({type(exc).__name__}: {exc}); parameters or optimizer state may be "
                                   f"partly updated. Later calls replay without a graph (or pass "
                                   f"cuda_graph=False)") from exc
        else:
            try:
                outs = graph(args)
            except _NoGraph as exc:  # raised before anything ran
                self._no_graph(str(exc))
                outs = self.replay(args)
            else:
                self.graph_reason = f"launched as a CUDA graph (captured {graph.captures} time(s))"
        for effect in self.effects:
            effect()
        return outs[0] if self.single_output else tree.unflatten(self.out_def, outs)

def _where(kind: str, where: Any) -> tuple:
    return where if kind == "dict" else (where,)


def _place(kind: str, where: Any) -> tuple:
    """Where a source is read from or a result written to, as a hashable key."""
    return (kind, id(where[0]), where[1]) if kind == "dict" else (kind, id(where[0]))


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


def _array_valued(value: Any) -> bool:
    """An array result (or a NumPy scalar, NumPy's 0-d result), which may be computed into a buffer."""
    return (_is_backend_array(value) and hasattr(value, "ndim")) or _is_array_scalar(value)


def _buffer_key(value: Any) -> tuple:
    """Buffers are shared only between results of the same shape, dtype, device and layout."""
    return (value.shape, value.dtype, str(getattr(value, "device", None)), getattr(value, "strides", None))


def _share_buffers(instructions: list, calls: dict, escaping: set, fresh: set, values: dict,
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
        ins_slots = _slots_in(ins.args) + _slots_in(ins.kwargs)
        for k in ins_slots:
            for r in roots.get(k, ()):
                last_use[r] = i
        outs = _outs(ins)
        if buffered:
            reach = {outs[0]}
        elif ins.mutates is not None:
            reach = set(roots.get(ins.mutates, ()))
        elif set(outs) & fresh:
            reach = set()
        else:  # maybe a view of its inputs
            reach = {r for k in ins_slots for r in roots.get(k, ())}
        for o in outs:
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
                    args = _slots_in(ins.args) + _slots_in(ins.kwargs)
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


def _inline_view(ins: Any, fn: Any, xp: Any, tracer: Tracer, graph: bool) -> tuple[str, Any] | None:
    """The backend's inline form of a view instruction (see ``backend.replay_view``), for
    a call on one traced array with literal keywords."""
    if graph or len(ins.args) != 1 or not isinstance(ins.args[0], _Slot) or _slots_in(ins.kwargs):
        return None
    return backend.replay_view(fn, xp, tracer.value_of(ins.args[0].k), ins.kwargs)


def _codegen(tracer: Tracer, arg_slots: list, writes: list, out_spec: list, returned: list,
             reusable: set, graph_wanted: bool) -> tuple[Callable, str, Any]:
    """The replay as one generated function ``replay(args) -> output leaves``: it reads the
    outside values (parameters, gradients, optimizer state, learning rates), calls the
    backend's functions directly on locals (constants folded, dead instructions dropped,
    and on NumPy / CuPy each result that stays inside the call computed into a buffer
    kept from call to call), writes the results back where the function left them, and
    builds the outputs. Generated rather than interpreted: a replay costs what
    hand-written code costs."""
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
    # A constant updated in place is none: an array made inside the function starts each
    # replay as a copy of its first value (eager code makes it anew each call), one
    # captured from outside is the same array each call, updated again.
    fresh_sources = mutated & set(tracer.initial_values)
    const_sources = {slot for slot, kind, *_ in tracer.sources if kind == "const" and slot not in mutated}
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
    numbers = tracer.numbers  # slots holding Python numbers; every other slot holds an array
    home_array = next((v for v in tracer.values.values() if _is_backend_array(v)), None)
    folded = static - const_sources
    env: dict[str, Any] = {"wrap": tape._wrap}
    # Scalars computed each call (a learning rate, Adam's bias corrections): in a CUDA graph
    # they live in 0-d device arrays filled before each launch, as a graph bakes in the
    # Python numbers its kernels were launched with.
    device_scalars: dict[tuple, str] = {}

    def name(k: int) -> str:
        if k in folded:
            env[f"c{k}"] = tracer.values[k]
            return f"c{k}"
        return f"v{k}"

    def expr(spec: Any, scalar_dtype: Any = None) -> str:
        if isinstance(spec, _Slot):
            k = spec.k
            if scalar_dtype is not None and k in numbers and k not in folded:
                key = (k, scalar_dtype)
                if key not in device_scalars:
                    device_scalars[key] = f"d{k}_{len(device_scalars)}"
                return device_scalars[key]
            return name(k)
        if isinstance(spec, tuple) and _slots_in(spec):
            return "(" + "".join(expr(e, scalar_dtype) + ", " for e in spec) + ")"
        if isinstance(spec, list) and _slots_in(spec):
            return "[" + ", ".join(expr(e, scalar_dtype) for e in spec) + "]"
        key = f"k{len(env)}"
        env[key] = spec
        return key

    def lower(graph: bool) -> tuple[list[str], list[str], list[str]]:
        """(host lines, array lines, fills): with ``graph``, the scalar work is split off."""
        host, arrays = [], []
        for slot, kind, *where in tracer.sources:
            if kind == "arg":
                continue
            env[f"h{slot}"] = where[0]
            into = host if graph and slot in numbers else arrays
            if slot in fresh_sources:  # made inside the function, then updated in place
                if graph:
                    raise _NoGraph("an array made inside the function is updated in place (a new one each call)")
                env[f"h{slot}"] = tracer.initial_values[slot]
                env[f"copy{slot}"] = out_xp.asarray
                into.append(f"v{slot} = copy{slot}(h{slot}, copy=True)")
            elif kind == "tensor":
                into.append(f"v{slot} = h{slot}._data")
            elif kind == "grad":
                into.append(f"v{slot} = h{slot}.grad._data")
            elif kind in ("dict", "group"):
                env[f"key{slot}"] = where[1]
                into.append(f"v{slot} = h{slot}[key{slot}]")
            else:  # "const": an array captured by the function, the same object each call
                into.append(f"v{slot} = h{slot}")
        # What each kept instruction calls, and whether it computes into a buffer of its own.
        calls: dict[int, tuple[Any, bool]] = {}
        for i, ins in enumerate(instructions):
            if not keep[i]:
                continue
            outs = _outs(ins)
            fn = ins.fn
            if graph:  # what a CUDA graph can record in place of fn (CuPy refuses cuBLAS calls in a capture)
                operands = [tracer.value_of(k) for k in _slots_in(ins.args)]
                fn = backend.capturable(ins.fn, out_xp, operands) or ins.fn
            buffered = (ins.out_kind == "one" and ins.mutates is None
                        and (outs[0] not in escaping or outs[0] in reusable or graph)
                        and backend.out_function(fn, out_xp) is not None
                        and _array_valued(tracer.values.get(outs[0])))
            calls[i] = fn, buffered
        buffer_of = _share_buffers(instructions, calls, escaping, fresh, tracer.values,
                                   lambda fn: backend.is_elementwise(fn, out_xp))
        for i, ins in enumerate(instructions):
            if i not in calls:
                continue
            fn, buffered = calls[i]
            outs = _outs(ins)
            on_host = graph and bool(outs) and all(o in numbers for o in outs)
            if on_host and any(k not in numbers for k in _slots_in(ins.args) + _slots_in(ins.kwargs)):
                raise _NoGraph(f"{getattr(ins.fn, '__name__', ins.fn)} turns an array into a Python number")
            scalar_dtype = None
            if graph and not on_host:
                live_scalars = [k for k in _slots_in(ins.args) + _slots_in(ins.kwargs)
                                if k in numbers and k not in folded]
                if live_scalars:
                    if not backend.is_elementwise(ins.fn, out_xp) or ins.out_kind != "one":
                        raise _NoGraph(f"a number computed each call (a learning rate, a step count) reaches "
                                       f"{getattr(ins.fn, '__name__', ins.fn)}, whose launch a CUDA graph would "
                                       f"freeze")
                    scalar_dtype = tracer.values[outs[0]].dtype
            prefix = "g" if graph else ""  # the graph's functions are its own: the plain replay keeps its
            fn_name = f"{prefix}f{i}"
            env[fn_name] = fn
            call_args = [expr(a, scalar_dtype) for a in ins.args] + \
                [f"{k}={expr(v, scalar_dtype)}" for k, v in ins.kwargs.items()]
            into = host if on_host else arrays
            if buffered:  # computed into a buffer allocated once (NumPy and CuPy), shared once dead
                k, b = outs[0], buffer_of[outs[0]]
                first = ins.args[0] if ins.args and isinstance(ins.args[0], _Slot) else None
                env[f"{prefix}o{i}"] = backend.out_function(fn, out_xp, None if first is None else
                                                            tracer.value_of(first.k), tuple(ins.kwargs),
                                                            tracer.values.get(k))
                if f"b{b}" not in env:
                    env[f"b{b}"] = out_xp.empty_like(out_xp.asarray(tracer.values[b]))
                into.append(f"v{k} = {prefix}o{i}({', '.join(call_args)}, out=b{b})")
            elif ins.out_kind == "one" and (view := _inline_view(ins, fn, out_xp, tracer, graph)) is not None:
                template, index = view  # a view written as an expression: no call, no wrapper
                index_name = expr(index) if index is not None else ""
                into.append(f"v{outs[0]} = " + template.format(x=call_args[0], index=index_name))
            elif ins.out_kind == "one":
                into.append(f"v{outs[0]} = {fn_name}({', '.join(call_args)})")
            elif ins.out_kind == "tuple":
                into.append(f"{', '.join(f'v{o}' for o in outs)}, = {fn_name}({', '.join(call_args)})")
            else:
                into.append(f"{fn_name}({', '.join(call_args)})")
        fills = []
        for (k, dtype), dname in device_scalars.items():
            if dname not in env:
                env[dname] = backend.device_scalar(out_xp, dtype, like=home_array)
            fills.append(f"{dname}.fill({name(k)})")
        return host, arrays, fills

    results = [slot for _, _, slot in writes if slot is not None] + [s for _, s in out_spec if isinstance(s, int)]
    position: dict[int, int] = {}  # result slot -> index: arrays (computed by the graph) first, then numbers
    for k in sorted(set(results), key=lambda k: (k in numbers, results.index(k))):
        position[k] = len(position)
    array_results = [k for k in position if k not in numbers]
    number_results = [k for k in position if k in numbers]

    def finish(value: Callable[[int], str]) -> list[str]:
        """Write-backs (results back where eager code leaves them), then the outputs."""
        lines = []
        for j, (kind, where, slot) in enumerate(writes):
            if kind == "tensor":
                env[f"w{j}"] = where
                lines.append(f"w{j}._data = {value(slot)}")
                # As an eager update: graphs recorded before can't reuse it. (A Tensor's version
                # counter, once made, stays a list: it is made now, and bumped inline.)
                shared_counter(where)
                lines.append(f"w{j}._vc[0] += 1")
            elif kind == "grad":
                env[f"w{j}"] = where
                if slot in reusable:  # (static outputs) the same buffer as last call: its Tensor may stay
                    lines.append(f"if (g := w{j}.grad) is None or g._data is not {value(slot)} or g._vc is not None or "
                                 f"g.requires_grad:")
                    lines.append(f"    w{j}.grad = wrap({value(slot)})")
                else:
                    lines.append(f"w{j}.grad = " + ("None" if slot is None else f"wrap({value(slot)})"))
            else:  # "dict": optimizer state
                env[f"w{j}"], env[f"wkey{j}"] = where
                lines.append(f"w{j}[wkey{j}] = {value(slot)}")
        outs = []
        for j, (tensor, s) in enumerate(out_spec):
            if isinstance(s, int):
                outs.append(f"wrap({value(s)})" if tensor else value(s))
            else:  # a Python value the function returned: the same each call
                env[f"out{j}"] = s
                outs.append(f"out{j}")
        lines.append("return [" + ", ".join(outs) + "]")
        return lines

    def body(lines: list[str]) -> str:
        return "".join(f"    {line}\n" for line in lines)

    args_lines = [f"v{k} = args[{i}]" for i, k in enumerate(arg_slots) if k is not None]
    check_lines = []  # input checks (label ranges...): before any work, so that a failing one changes nothing
    source_reads = {slot: (kind, where) for slot, kind, *where in tracer.sources}
    for j, (slot, check) in enumerate(tracer.input_checks):
        env[f"check{j}"] = check
        kind, where = source_reads[slot]
        if kind == "arg":
            read = f"args[{arg_slots.index(slot)}]"
        else:
            env[f"ch{j}"] = where[0]
            read = {"tensor": f"ch{j}._data", "grad": f"ch{j}.grad._data", "const": f"ch{j}"}.get(kind)
            if read is None:
                env[f"chkey{j}"] = where[1]
                read = f"ch{j}[chkey{j}]"
        check_lines.append(f"check{j}({read})")
    host, arrays, _ = lower(graph=False)
    plain_source = "def replay(args):\n" + body(check_lines + args_lines + host + arrays + finish(name))
    exec(builtins.compile(plain_source, "<agrad.compile replay>", "exec"), env)  # noqa: S102 - our own code
    replay = env["replay"]
    graph_parts = None
    if graph_wanted:
        device_scalars.clear()
        try:
            host, arrays, fills = lower(graph=True)
        except _NoGraph as exc:
            graph_parts = str(exc)
        else:
            def listing(slots: list) -> str:
                return "return [" + "".join(name(k) + ", " for k in slots) + "]"

            source = ("def check(args):\n" + body(check_lines + ["return None"]) +
                      "def prepare():\n" + body(host + fills + [listing(number_results)]) +
                      "def compute(args):\n" + body(args_lines + arrays + [listing(array_results)]) +
                      "def finish(res):\n" + body(finish(lambda k: f"res[{position[k]}]")))
            exec(builtins.compile(source, "<agrad.compile graph replay>", "exec"), env)  # noqa: S102
            graph_parts = _GraphParts(env["check"], env["prepare"], env["compute"], env["finish"], list(position),
                                      len(array_results), source)
    return replay, plain_source, graph_parts


class Compiled:
    """A function compiled by :func:`compile`; call it like the function."""

    def __init__(self, fn: Callable, max_cache: int = 8, static_outputs: bool = False,
                 cuda_graph: bool = True) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.max_cache = max_cache
        self.static_outputs = static_outputs
        self.cuda_graph = cuda_graph
        self.programs: dict[tuple, list[_Program]] = {}
        self.traces = 0
        self._last: _Program | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        last = self._last
        if last is not None and last.accepts is not None and not kwargs:
            # The program the last call ran, when these arguments have exactly the signature
            # it was traced for (what the cache key below says, checked without building it)
            raw = last.accepts(args)
            if raw is not None and last.matches(raw):
                return last.run(raw)
        try:  # positional arrays, Tensors and numbers
            if kwargs:
                raise CompileError("keyword arguments")
            leaves, treedef, signature = args, len(args), tuple(map(_leaf_signature, args))
        except CompileError:  # containers (or a bad argument, which raises again below)
            leaves, treedef = tree.flatten((args, kwargs))
            signature = tuple(map(_leaf_signature, leaves))
        raw = [leaf._data if isinstance(leaf, Tensor) else leaf for leaf in leaves]
        if len(raw) > 1:  # which arguments are one array: a trace bakes that in
            ids = [id(r) for r in raw if r.__class__ not in _PYTHON_VALUES]
            if len(set(ids)) < len(ids):
                signature += (tuple(ids.index(i) for i in ids),)
        key = (treedef, signature, tape.is_grad_enabled(), backend.get_backend(), dtypes.get_default_dtype())
        for program in self.programs.get(key, []):
            if program.matches(raw):
                self._last = program
                return program.run(raw)
        return self._trace(key, args, kwargs)

    def _trace(self, key: tuple, args: tuple, kwargs: dict) -> Any:
        self.traces += 1
        if self.traces > 2 * self.max_cache and self.traces % self.max_cache == 1:
            warnings.warn(f"agrad.compile: {self.__name__} has been traced {self.traces} times; its inputs' shapes, "
                          f"dtypes or Python values keep changing (each new one retraces)", stacklevel=3)
        leaves, treedef = tree.flatten((args, kwargs))
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
        if any(created for *_, created in tracer.state_owners):
            # This call created optimizer state (a first step): it ran eagerly, and the next
            # such call must create fresh state too, so it is traced again, not replayed.
            return tree.unflatten(out_def, outputs)
        program = _Program(tracer, arg_slots, out_def, out_spec, writes, _guards(tracer), list(tracer.effects),
                           self.static_outputs, self.cuda_graph, getattr(self, "__name__", "function"))
        program.accepts = _accepts(args, kwargs, key)
        programs = self.programs.setdefault(key, [])
        programs.insert(0, program)
        del programs[self.max_cache:]
        self._last = program
        return tree.unflatten(out_def, outputs)


def _array_check(env: dict, i: int, name: str, expr: str, expected: tuple) -> str:
    """Generated source: ``expr`` (bound to ``name``) is an array of the class, shape, dtype
    and device in ``expected`` (a ``_meta`` tuple), inlined so that the common case costs
    attribute reads, not calls (one device per class: the device is not compared)."""
    env[f"c{i}"], env[f"s{i}"], env[f"d{i}"], env[f"e{i}"] = expected[0], expected[1], expected[2], expected
    same = f"({name} := {expr}).__class__ is c{i} and {name}.shape == s{i} and {name}.dtype == d{i}"
    ns = backend._BY_TYPE.get(expected[0])
    return same if ns is not None and not ns.multi_device else f"{same} and _meta({name}) == e{i}"


def _accepts(args: tuple, kwargs: dict, key: tuple) -> Callable[[tuple], list | None] | None:
    """A generated check that positional arguments have exactly the signature in ``key``
    (the classes, shapes, dtypes and devices of their arrays, their Python values, which
    of them are one array, grad mode, backend and default dtype), returning their raw
    arrays; None (no fast path) for containers, keyword arguments or many arguments."""
    if kwargs or not isinstance(key[0], int) or len(args) > 8:
        return None
    _, signature, grad_enabled, backend_name, default_dtype = key
    env: dict[str, Any] = {"_meta": _meta, "_mode": tape._grad_mode, "_backend": backend.get_backend,
                           "_default_dtype": dtypes.get_default_dtype, "default_dtype": default_dtype}
    checks = [f"len(args) == {len(args)}", f"_mode.enabled is {grad_enabled}", f"_backend() == {backend_name!r}",
              "_default_dtype() is default_dtype"]
    arrays = []
    for i, (arg, sig) in enumerate(zip(args, signature)):
        env[f"k{i}"] = arg.__class__
        if sig[0] == "value":
            env[f"v{i}"] = sig[2]
            checks.append(f"(r{i} := args[{i}]).__class__ is k{i} and r{i} == v{i}")
            continue
        if sig[0] == "tensor":
            checks.append(f"(t{i} := args[{i}]).__class__ is k{i} and t{i}.requires_grad is {sig[2]}")
        checks.append(_array_check(env, i, f"r{i}", f"t{i}._data" if sig[0] == "tensor" else f"args[{i}]", sig[1]))
        arrays.append(i)
    pattern = signature[len(args)] if len(signature) > len(args) else None  # which arrays are one
    ids = [id(a._data if isinstance(a, Tensor) else a) for a in args]
    for j, b in enumerate(arrays):
        for a in arrays[:j]:
            one = pattern is not None and ids[a] == ids[b]
            checks.append(f"r{b} is {'' if one else 'not '}r{a}")
    source = ("def accepts(args):\n    if not (" + "\n            and ".join(checks) + "):\n        return None\n"
              f"    return [{', '.join(f'r{i}' for i in range(len(args)))}]\n")
    exec(builtins.compile(source, "<agrad.compile signature>", "exec"), env)  # noqa: S102 - our own code
    return env["accepts"]


def _guards(tracer: Tracer) -> Callable[[list], bool]:
    """One generated function saying whether a replay may run: every outside array the trace
    read (and where it found none) is as the trace met it, nothing it baked in changed."""
    env: dict[str, Any] = {"_meta": _meta, "_replaced": tracing._ATTRIBUTES_REPLACED}
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
    checks.append(f"_replaced[0] == {tracing.attributes_version()}")  # no module attribute replaced since
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


def compile(fn: Callable | None = None, *, max_cache: int = 8, static_outputs: bool = False,
            cuda_graph: bool = True) -> Any:
    """Trace ``fn`` on its first call for each signature and replay its array operations
    afterwards (see :mod:`agrad.compile`). Use as ``@agrad.compile`` or
    ``agrad.compile(fn, max_cache=..., static_outputs=..., cuda_graph=...)``.

    Every intermediate lives in a buffer allocated once. The outputs and the gradients
    the function leaves on parameters are new arrays each call, as in eager mode; with
    ``static_outputs=True`` they live in buffers too, which the next call overwrites
    (as with CUDA graphs): then a step allocates no arrays at all, and a value kept
    across calls must be copied.

    On CuPy the replay is captured into a CUDA graph on its second call and launched with
    one call afterwards (``cuda_graph=False`` turns that off); where capture is impossible
    it replays without one and warns once with the reason."""
    if fn is None:
        return lambda f: Compiled(f, max_cache, static_outputs, cuda_graph)
    return Compiled(fn, max_cache, static_outputs, cuda_graph)
