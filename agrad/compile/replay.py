"""The call path of ``agrad.compile``: :class:`Compiled` (the cache of programs per
signature, the fast path that rechecks the last one, tracing a new one) and the replay
of one program, plain or as a CUDA graph (:class:`_GraphReplay`)."""

from __future__ import annotations

import builtins
import functools
import operator
import warnings
from typing import Any, Callable

from .. import backend, dtypes, tape, tree
from ..tensor import Tensor
from . import trace
from .codegen import _GraphParts, _NoGraph, generate
from .state import Tracer, _array_check, _place, _where, guards, restore
from .trace import CompileError, TraceArray, TraceScalar, _is_backend_array, _meta

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
        fresh = set(returned) - pinned if not static_outputs else set()  # new arrays each call, as eagerly
        capture = backend.graph_capturer(tracer.home) if cuda_graph else None
        self.replay, self.source, parts = generate(tracer, arg_slots, writes, out_spec, returned, reusable,
                                                   graph_wanted=capture is not None, fresh=fresh)
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

def _batched_leaf(args: tuple, kwargs: dict) -> bool:
    """Whether an argument holds a batched array (the call is inside agrad.vmap)."""
    for leaf in tree.flatten((args, kwargs))[0] if kwargs or any(isinstance(a, (list, tuple, dict)) for a in args) \
            else args:
        if isinstance(leaf, Tensor) and backend.is_array_wrapper(leaf._data):
            return True
    return False


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
        self._vmapped: dict[tuple, Compiled] = {}  # in_axes -> this function vmapped, compiled

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        last = self._last
        if last is not None and last.accepts is not None and not kwargs:
            # The program the last call ran, when these arguments have exactly the signature
            # it was traced for (what the cache key below says, checked without building it)
            raw = last.accepts(args)
            if raw is not None and last.matches(raw):
                return last.run(raw)
        if _batched_leaf(args, kwargs):
            return self._call_batched(args, kwargs)
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

    def _call_batched(self, args: tuple, kwargs: dict) -> Any:
        """Called inside agrad.vmap (some arguments are batched arrays): the function
        vmapped over the innermost vmap's axes, compiled, on every example at once (as
        JAX batches a jitted function); its outputs batched along axis 0."""
        from ..batching import batched, vmap  # (late: agrad.batching imports the tape, which imports this package)

        leaves, treedef = tree.flatten((args, kwargs))
        data = [leaf._data if isinstance(leaf, Tensor) else leaf for leaf in leaves]
        level = builtins.max(d.level for d in data if d.__class__ is batched.BatchedArray)
        axes = tuple(d.bdim if d.__class__ is batched.BatchedArray and d.level == level else None for d in data)
        physical = [d.value if a is not None else leaf for leaf, d, a in zip(leaves, data, axes)]
        key = (treedef, axes)
        inner = self._vmapped.get(key)
        if inner is None:
            def flat(*xs: Any) -> Any:
                a, k = tree.unflatten(treedef, list(xs))
                return self.fn(*a, **k)

            inner = self._vmapped[key] = Compiled(vmap.vmap(flat, in_axes=axes), self.max_cache,
                                                  self.static_outputs, self.cuda_graph)
        out = inner(*physical)
        return tree.tree_map(lambda o: Tensor._constant(batched.BatchedArray(o, 0, level))
                             if isinstance(o, Tensor) else o, out)

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
        trace.begin(tracer)
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
            trace.end()
            restore(tracer, final=False)
            raise
        trace.end()
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
        writes = restore(tracer, final=True)
        if any(created for *_, created in tracer.state_owners):
            # This call created optimizer state (a first step): it ran eagerly, and the next
            # such call must create fresh state too, so it is traced again, not replayed.
            return tree.unflatten(out_def, outputs)
        program = _Program(tracer, arg_slots, out_def, out_spec, writes, guards(tracer), list(tracer.effects),
                           self.static_outputs, self.cuda_graph, getattr(self, "__name__", "function"))
        program.accepts = _accepts(args, kwargs, key)
        programs = self.programs.setdefault(key, [])
        programs.insert(0, program)
        del programs[self.max_cache:]
        self._last = program
        return tree.unflatten(out_def, outputs)


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
