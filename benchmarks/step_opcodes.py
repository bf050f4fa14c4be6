"""Python bytecodes executed per training step of the seed network, per contender and per
function: the interpreter's share of a step, counted exactly (``sys.settrace`` with
opcode events), independent of the machine's load.

Wall-clock ratios on a shared machine move by +-10-20% between runs, and callgrind's
instruction counts (step_instructions.py) mix the interpreter with the array work. This
count is the Python work alone: the tape's bookkeeping, the module and optimizer calls,
and the Python wrappers of the array libraries (NumPy's ``ones_like``, array-api-compat's
``astype``); the array work inside C functions counts one opcode per call.

    python benchmarks/step_opcodes.py                 # batch 1 and 128, every contender
    python benchmarks/step_opcodes.py --top 25        # and agrad eager's costliest functions
    python benchmarks/step_opcodes.py --top 15 --of "agrad compiled, natural"
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

CONTENDERS = {"hand-written in-place": common.HandWrittenInPlace, "hand-written": common.HandWritten,
              "minimal tape, no checks": common.MinimalTape, "agrad eager": common.Agrad,
              "agrad compiled": common.AgradCompiled,
              "agrad compiled, grads dropped": common.AgradCompiledGradsDropped,
              "agrad compiled, natural": common.AgradCompiledNatural}


def count(step: Callable[[], Any]) -> tuple[collections.Counter, collections.Counter]:
    """(opcodes, calls) per function ("file:function:line") during one call of ``step``."""
    opcodes: collections.Counter = collections.Counter()
    calls: collections.Counter = collections.Counter()

    def trace(frame: Any, event: str, arg: Any) -> Callable:
        frame.f_trace_opcodes = True
        code = frame.f_code
        key = f"{os.path.basename(code.co_filename)}:{code.co_name}:{code.co_firstlineno}"
        if event == "opcode":
            opcodes[key] += 1
        elif event == "call":
            calls[key] += 1
        return trace

    sys.settrace(trace)
    try:
        step()
    finally:
        sys.settrace(None)
    return opcodes, calls


def measure(name: str, batch: int, warm_steps: int = 3) -> tuple[collections.Counter, collections.Counter]:
    w = common.initial_weights("float32")
    x, y = common.batch(batch, "float32")
    contender = CONTENDERS[name](w, x, y, "numpy")
    for _ in range(warm_steps):  # past the traces of a compiled step and the optimizer's first step
        contender.step()
    return count(contender.step)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", default="1,128")
    p.add_argument("--top", type=int, default=0, help="list the N costliest functions of --of")
    p.add_argument("--of", default="agrad eager", choices=list(CONTENDERS), help="the contender --top lists")
    args = p.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    print("| batch | contender | opcodes per step | Python calls per step |\n|---:|---|---:|---:|")
    for n in batches:
        for name in CONTENDERS:
            opcodes, calls = measure(name, n)
            print(f"| {n} | {name} | {sum(opcodes.values())} | {sum(calls.values())} |", flush=True)
    if args.top:
        opcodes, calls = measure(args.of, batches[0])
        print(f"\n{args.of}, batch {batches[0]}: the {args.top} functions executing the most opcodes\n")
        print("| opcodes | calls | function |\n|---:|---:|---|")
        for key, k in opcodes.most_common(args.top):
            print(f"| {k} | {calls[key]} | `{key}` |")


if __name__ == "__main__":
    main()
