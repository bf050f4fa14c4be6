"""Median time per training step of the seed network (784 -> 72 tanh -> 10, logistic
loss, forward + backward + SGD update) for agrad (eager and agrad.compile), hand-written
backprop on the same backend (the floor: on NumPy the best in-place step with out=
buffers, beside the plain one), PyTorch eager (and with CUDA graphs on a GPU) and HIPS
autograd (when installed).

    python benchmarks/mlp_step.py                      # numpy, all batch sizes, both dtypes
    python benchmarks/mlp_step.py --backend cupy       # GPU: agrad vs hand-written CuPy vs torch CUDA
    python benchmarks/mlp_step.py --quick              # fewer rounds

All contenders start from the same weights; their gradients are compared with the
hand-written ones before timing, and a contender that disagrees is reported, not timed.
Writes a markdown table (ratios to the floor) and JSON (--json PATH).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import agrad  # noqa: E402


def check_gradients(contenders, ref, rtol):
    wrong = {}
    for c in contenders:
        g = c.host_grads()
        errs = [float(np.max(np.abs(np.asarray(g[k]) - ref[k])) / (np.max(np.abs(ref[k])) + 1e-30)) for k in ref]
        if max(errs) > rtol:
            wrong[c.name] = max(errs)
    return wrong


def run(backend, batches, dtypes, rounds, target_seconds, contenders_wanted):
    rows = []
    for dtype in dtypes:
        w = common.initial_weights(dtype)
        for n in batches:
            x, y = common.batch(n, dtype)
            # The floor: the best hand-written step (in place, out= buffers) on NumPy; the
            # plain hand-written step on CuPy.
            floor = (common.HandWrittenInPlace if backend == "numpy" else common.HandWritten)(w, x, y, backend)
            ref = floor.host_grads()
            others = [common.Agrad(w, x, y, backend), common.AgradCompiled(w, x, y, backend),
                      common.AgradCompiledGradsDropped(w, x, y, backend), common.AgradCompiledNatural(w, x, y, backend)]
            if backend == "numpy":
                others[:0] = [common.HandWritten(w, x, y, backend), common.EagerArrayWork(w, x, y, backend),
                              common.MinimalTape(w, x, y, backend)]
            for cls in (common.Torch, common.TorchCudaGraph, common.HipsAutograd):
                if _wanted(cls, backend, contenders_wanted):
                    others.append(cls(w, x, y, backend))
            wrong = check_gradients(others, ref, rtol=1e-3 if dtype == "float32" else 1e-9)
            timed = [floor] + [c for c in others if c.name not in wrong]
            # steps per round so that a round takes about target_seconds for the floor
            floor.step()
            common.sync(backend)
            import time

            t0 = time.perf_counter()
            for _ in range(5):
                floor.step()
            common.sync(backend)
            per = (time.perf_counter() - t0) / 5
            steps = max(3, int(target_seconds / max(per, 1e-6)))
            med = common.time_rounds(timed, steps, rounds)
            fwd = _forward_share(next(c for c in others if c.name == "agrad"), steps, backend)
            for name in [c.name for c in [floor] + others]:
                rows.append({
                    "backend": backend, "dtype": dtype, "batch": n, "contender": name,
                    "ms_per_step": med[name] * 1e3 if name in med else None,
                    "ratio": med[name] / med[floor.name] if name in med else None,
                    "wrong_gradient": wrong.get(name),
                    "agrad_backward_over_forward": fwd if name == "agrad" else None,
                })
            print(_row_text(rows[-len(others) - 1:]), flush=True)
    return rows


def _wanted(cls, backend, contenders_wanted):
    if cls.name.split()[0] not in contenders_wanted or not common.available(cls, backend):
        return False
    if cls is common.TorchCudaGraph:  # CUDA graphs need a GPU; HIPS autograd is NumPy only
        return backend == "cupy"
    return backend == "numpy" or cls is not common.HipsAutograd


def _forward_share(a, steps, backend):
    """agrad's (step - forward) / forward: how much the backward pass and update cost."""
    import time

    best_f, best_s = float("inf"), float("inf")
    for _ in range(5):
        common.sync(backend)
        t0 = time.perf_counter()
        for _ in range(steps):
            a.forward()
        common.sync(backend)
        best_f = min(best_f, time.perf_counter() - t0)
        t0 = time.perf_counter()
        for _ in range(steps):
            a.step()
        common.sync(backend)
        best_s = min(best_s, time.perf_counter() - t0)
    return (best_s - best_f) / best_f


def _row_text(rows):
    r0 = rows[0]
    parts = [f"{r0['dtype']} batch {r0['batch']:>5}:"]
    for r in rows:
        if r["ratio"] is None:
            parts.append(f"{r['contender']} WRONG GRADIENT ({r['wrong_gradient']:.2g})")
        else:
            parts.append(f"{r['contender']} {r['ms_per_step']:.3f} ms ({r['ratio']:.2f}x)")
    return "  ".join(parts)


def markdown(rows):
    contenders = list(dict.fromkeys(r["contender"] for r in rows))
    head = "| dtype | batch | " + " | ".join(contenders) + " | agrad backward/forward |\n"
    head += "|---|---:|" + "---:|" * len(contenders) + "---:|\n"
    lines = []
    keys = list(dict.fromkeys((r["dtype"], r["batch"]) for r in rows))
    for dtype, n in keys:
        cells = []
        bf = ""
        for c in contenders:
            r = next((r for r in rows if r["dtype"] == dtype and r["batch"] == n and r["contender"] == c), None)
            if r is None:
                cells.append("-")
            elif r["ratio"] is None:
                cells.append("wrong gradient")
            else:
                cells.append(f"{r['ms_per_step']:.3f} ms ({r['ratio']:.2f}x)")
            if r is not None and r["agrad_backward_over_forward"] is not None:
                bf = f"{r['agrad_backward_over_forward']:.2f}"
        lines.append(f"| {dtype} | {n} | " + " | ".join(cells) + f" | {bf} |")
    return head + "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    p.add_argument("--batches", default="1,32,128,1024,10000")
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--seconds", type=float, default=0.25, help="target duration of one round of the floor")
    p.add_argument("--contenders", default="pytorch,hips-autograd")
    p.add_argument("--quick", action="store_true", help="3 rounds of 0.1 s")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    if args.quick:
        args.rounds, args.seconds = 3, 0.1
    if args.backend not in agrad.available_backends():
        sys.exit(f"backend {args.backend} is not available here: {agrad.backend.backend_status(args.backend)[1]}")
    rows = run(args.backend, [int(b) for b in args.batches.split(",")], args.dtypes.split(","), args.rounds,
               args.seconds, args.contenders.split(","))
    info = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}"
    print(f"\nbackend {args.backend}; {info}\n")
    print(markdown(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
