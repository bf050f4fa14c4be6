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
(``agrad.compile.trace``) and records every backend operation it performs: the forward
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
call per step afterwards (see ``_GraphReplay`` in ``agrad/compile/replay.py`` for how
arguments, numbers computed each call, and state written back keep the graph's fixed
addresses right); where capture is impossible it replays without a graph and says why.

The package, in the order a call goes through it:

- ``trace``: recording only: the proxy arrays and numbers, the recording namespace, the
  instructions (imports nothing of agrad but the backend; the tape reads its slot);
- ``hooks``: the events optimizers, modules, layers, losses and ``agrad.random`` report
  to the tracer (one slot, one documented interface);
- ``state``: what a trace reads from and leaves outside (parameters, gradients, optimizer
  state, arrays made inside), the guards that say when a replay may run, the write-backs;
- ``passes``: aliasing, constant folding, dead code, then per target out-buffers and
  buffer sharing, as an ordered list of functions over the traced program;
- ``codegen``: the replay written as Python source and compiled;
- ``replay``: :class:`Compiled` (the cache and the call path) and the CUDA graph replay.
"""

from __future__ import annotations

from typing import Any

from .trace import CompileError

__all__ = ["compile", "CompileError", "Compiled"]


def __getattr__(name: str) -> Any:
    # compile and Compiled live in .replay, which needs the Tensor, the tape and the
    # optimizers; those import .trace (through this package) while agrad loads, so the
    # replay is imported on first use (agrad/__init__.py asks for it once everything is in).
    if name in ("compile", "Compiled"):
        from . import replay

        globals().update(compile=replay.compile, Compiled=replay.Compiled)  # later look-ups skip this
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
