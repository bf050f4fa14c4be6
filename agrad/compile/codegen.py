"""Code generation for ``agrad.compile``: a traced program, after its passes, as Python.

:func:`generate` writes the replay of one trace as the source of a Python function that
calls the backend directly on locals, and compiles it: the plain replay, and where a
CUDA graph is wanted, the same program split for capture (:class:`_GraphParts`).
"""

from __future__ import annotations

import builtins
import sys
import weakref
from typing import Any, Callable

from .. import backend, tape
from ..tensor import shared_counter
from . import passes
from .passes import slots_in
from .state import Tracer
from .trace import _is_backend_array, _Slot

__all__ = ["generate"]


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


def _inline_view(ins: Any, fn: Any, xp: Any, tracer: Tracer, graph: bool) -> tuple[str, Any] | None:
    """The backend's inline form of a view instruction (see ``backend.replay_view``), for
    a call on one traced array with literal keywords."""
    if graph or len(ins.args) != 1 or not isinstance(ins.args[0], _Slot) or slots_in(ins.kwargs):
        return None
    return backend.replay_view(fn, xp, tracer.value_of(ins.args[0].k), ins.kwargs)


# Whether reference counts say when nothing else holds an object (CPython with its GIL).
_REFCOUNTS = sys.implementation.name == "cpython" and getattr(sys, "_is_gil_enabled", lambda: True)()


def _unseen_grad(holder: str, last: str) -> str:
    """Generated source of an expression that equals, on an unseen gradient, the value
    :func:`_calibrate` measures: ``holder.grad`` is a plain Tensor around ``last[0]`` (the
    array the last call left there), and neither is referenced (nor weakly) from anywhere
    but ``holder.grad``, that Tensor and ``last``. Then no one can see that array any more,
    and writing the next gradient into it, in the same Tensor, cannot be told from making
    new ones (as reusing freed memory cannot). Anything else: a new array and Tensor."""
    # (A Tensor updated in place, or re-pointed at a node, has a version counter: _vc is None
    # says it is still what wrap() made, up to requires_grad and its own .grad.)
    return f"{_unseen_found(holder, last)} and {_UNSEEN_COUNTS} == unseen"


def _unseen_found(holder: str, last: str) -> str:
    return f"(g := {holder}.grad) is not None and (a := g._data) is {last}[0] and g.grad is None"


_UNSEEN_COUNTS = "(rc(g), rc(a), wc(g), wc(a), g._vc, g.requires_grad)"


def _calibrate(env: dict, template: Any) -> Any:
    """What :func:`_unseen_grad`'s test evaluates to on a gradient that nothing else
    references, measured in code of the same shape (reference counts depend on it)."""
    probe_env = {"rc": env["rc"], "wc": env["wc"]}
    source = f"def probe(holder, last):\n    assert {_unseen_found('holder', 'last')}\n    return {_UNSEEN_COUNTS}\n"
    exec(builtins.compile(source, "<agrad.compile probe>", "exec"), probe_env)  # noqa: S102 - our own code

    class Holder:
        grad = None

    holder, last = Holder(), [env["new"](template)]
    holder.grad = env["wrap"](last[0])
    return probe_env["probe"](holder, last)


def _range_reductions(xp: Any, value: Any) -> tuple[Any, Any] | None:
    """(min, max) over all of an integer array, as the backend's ufunc reductions (no
    wrapper): a value-range check in a replay costs two calls. None where there are none."""
    if not _is_backend_array(value) or getattr(value, "ndim", None) != 1 or not value.shape[0] or \
            not xp.isdtype(value.dtype, "integral"):  # (a replay's arrays have the traced shapes and dtypes)
        return None
    lo, hi = backend.out_function(xp.minimum, xp), backend.out_function(xp.maximum, xp)
    if not (backend.is_elementwise(xp.minimum, xp) and backend.is_elementwise(xp.maximum, xp)):
        return None
    lo, hi = getattr(lo, "reduce", None), getattr(hi, "reduce", None)
    return None if lo is None or hi is None else (lo, hi)


def generate(tracer: Tracer, arg_slots: list, writes: list, out_spec: list, returned: list,
             reusable: set, graph_wanted: bool, fresh: set = frozenset()) -> tuple[Callable, str, Any]:
    """The replay as one generated function ``replay(args) -> output leaves``: it reads the
    outside values (parameters, gradients, optimizer state, learning rates), calls the
    backend's functions directly on locals (after :data:`~agrad.compile.passes.PASSES`:
    constants folded, dead instructions dropped, and on NumPy / CuPy each result that
    stays inside the call computed into a buffer kept from call to call), writes the
    results back where the function left them, and builds the outputs. Generated rather
    than interpreted: a replay costs what hand-written code costs.

    Returns the replay, its source, and the parts of a CUDA graph replay (when
    ``graph_wanted``; a string saying why not where the program cannot be captured)."""
    instructions = tracer.instructions
    out_xp = tracer.home
    library = getattr(getattr(out_xp, "backend", None), "library", None)  # (NumPy, CuPy: the backends with out=)
    new = library().empty_like if library is not None else None
    program = passes.run(passes.Program(tracer, returned, reusable, fresh if new is not None else set()))
    fresh_sources, folded = program.fresh_sources, program.folded
    numbers = tracer.numbers  # slots holding Python numbers; every other slot holds an array
    home_array = next((v for v in tracer.values.values() if _is_backend_array(v)), None)
    env: dict[str, Any] = {"wrap": tape._wrap, "new": new, "rc": sys.getrefcount, "wc": weakref.getweakrefcount}
    # Fresh gradients (new arrays each call, no static outputs) that may go into the last
    # call's array where nothing but their parameter's .grad can see it any more:
    results = [slot for _, _, slot in writes if slot is not None] + [s for _, s in out_spec if isinstance(s, int)]
    recyclable = {slot for kind, _, slot in writes if kind == "grad" and slot in program.fresh_outputs
                  and results.count(slot) == 1} if _REFCOUNTS else set()
    recycled: set[int] = set()  # (those of them the plain replay computes into a buffer)
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
        if isinstance(spec, tuple) and slots_in(spec):
            return "(" + "".join(expr(e, scalar_dtype) + ", " for e in spec) + ")"
        if isinstance(spec, list) and slots_in(spec):
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
        target = passes.lower(program, graph)  # what each kept instruction calls, into which buffer
        calls, buffer_of = target.calls, target.buffer_of
        for i, ins in enumerate(instructions):
            if i not in calls:
                continue
            fn, buffered = calls[i]
            outs = passes.outs(ins)
            on_host = graph and bool(outs) and all(o in numbers for o in outs)
            if on_host and any(k not in numbers for k in slots_in(ins.args) + slots_in(ins.kwargs)):
                raise _NoGraph(f"{getattr(ins.fn, '__name__', ins.fn)} turns an array into a Python number")
            scalar_dtype = None
            if graph and not on_host:
                live_scalars = [k for k in slots_in(ins.args) + slots_in(ins.kwargs)
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
                out = f"b{b}"
                if not graph and k in program.fresh_outputs:  # a new array each call, laid out as eagerly
                    out = f"new(b{b})"
                    if k in recyclable:
                        out = f"fb{k}"
                        recycled.add(k)
                into.append(f"v{k} = {prefix}o{i}({', '.join(call_args)}, out={out})")
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

    position: dict[int, int] = {}  # result slot -> index: arrays (computed by the graph) first, then numbers
    for k in sorted(set(results), key=lambda k: (k in numbers, results.index(k))):
        position[k] = len(position)
    array_results = [k for k in position if k not in numbers]
    number_results = [k for k in position if k in numbers]

    def finish(value: Callable[[int], str], plain: bool = False) -> list[str]:
        """Write-backs (results back where eager code leaves them), then the outputs."""
        lines = []
        for j, (kind, where, slot) in enumerate(writes):
            if kind == "tensor":
                env[f"w{j}"] = where
                # The compiled replay's fast path, the one writer of Tensor internals outside
                # agrad/tensor.py (documented there): Tensor._replace_array's body, inline.
                lines.append(f"w{j}._data = {value(slot)}")
                # As an eager update: graphs recorded before can't reuse it. (A Tensor's version
                # counter, once made, stays a list: it is made now, and bumped inline.)
                shared_counter(where)
                lines.append(f"w{j}._vc[0] += 1")
            elif kind == "grad":
                env[f"w{j}"] = where
                if plain and slot in recycled:  # computed into the last call's array: its Tensor is still .grad
                    lines.append(f"if fn{slot}:")
                    lines.append(f"    w{j}.grad = wrap({value(slot)})")
                elif slot in reusable:  # (static outputs) the same buffer as last call: its Tensor may stay
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
    for j, (slot, check, bounds) in enumerate(tracer.input_checks):
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
        reductions = _range_reductions(out_xp, tracer.value_of(slot)) if bounds is not None else None
        if reductions is None:
            check_lines.append(f"check{j}({read})")
        else:  # the values' range by two reductions; the check itself (for its error) only when it fails
            env[f"chmin{j}"], env[f"chmax{j}"] = reductions
            lo, hi = (int(b) for b in bounds)
            check_lines.append(f"if not ({lo} <= chmin{j}(x := {read}) and chmax{j}(x) < {hi}):")
            check_lines.append(f"    check{j}(x)")
    host, arrays, _ = lower(graph=False)
    recycle_lines = []
    for j, (_, where, slot) in enumerate(writes):
        if slot in recycled:
            env[f"w{j}"], env[f"last{slot}"] = where, [None]
            if "unseen" not in env:
                env["unseen"] = _calibrate(env, env[f"b{slot}"])
            recycle_lines += [f"if {_unseen_grad(f'w{j}', f'last{slot}')}:",
                              f"    fb{slot}, fn{slot} = a, False",
                              "else:",
                              f"    fb{slot} = last{slot}[0] = new(b{slot})",
                              f"    fn{slot} = True"]
    plain_source = "def replay(args):\n" + body(check_lines + recycle_lines + args_lines + host + arrays +
                                                 finish(name, plain=True))
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
