"""Per-example gradients of the seed network (784 -> 72 tanh -> 10, cross-entropy) for a
batch (128, float32 by default): ``agrad.vmap(agrad.grad(loss), in_axes=(None, 0, 0))``
(eager and under agrad.compile) against

- one batched gradient of the mean loss (agrad, the fused logistic loss): what a
  training step computes, the goal being vmap(grad) <= 3x its time;
- a Python loop of per-example ``agrad.grad`` calls (goal: vmap(grad) >= 20x faster);
- ``torch.func.vmap(torch.func.grad(loss))`` (goal: faster than it), and torch's
  batched gradient for scale;
- the hand-written NumPy per-example gradients (the explicit formulas, outer products by
  broadcasting): the floor.

    python benchmarks/per_example_grads.py                  # batch 128, float32
    python benchmarks/per_example_grads.py --quick          # fewer, shorter rounds
    python benchmarks/per_example_grads.py --batch 32 --dtype float64 --json out.json

Every contender's per-example gradients are checked against the floor's before timing
(one that disagrees is reported, not timed). The contenders run in one process in
rotating rounds with pauses between them (common.time_rounds); BLAS and torch use
--threads threads each (default 1: on a shared 2-core machine two-thread BLAS calls are
erratic, up to 30x slower when another process holds a core).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys


def _threads_from_argv(default: int = 1) -> int:
    for i, a in enumerate(sys.argv):
        if a == "--threads" and i + 1 < len(sys.argv):
            return int(sys.argv[i + 1])
        if a.startswith("--threads="):
            return int(a.split("=", 1)[1])
    return default


if __name__ == "__main__":  # before NumPy starts its BLAS thread pool
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = str(_threads_from_argv())

import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import agrad  # noqa: E402

NAMES = ("W1", "b1", "W2", "b2")


def net(p, x):
    return agrad.tanh(x @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]


def fused_loss(p, x, y):
    """One example's loss as written for vmap: the batch-of-one cross-entropy."""
    return agrad.nn.logistic_loss(net(p, x[None, ...]), y[None, ...], check_labels=False)


class Contender:
    backend = "numpy"

    def __init__(self, name, fn, to_host):
        self.name, self.fn, self.to_host = name, fn, to_host

    def step(self):
        return self.fn()

    def host_grads(self):
        return self.to_host(self.fn())


def agrad_host(g):
    return {k: g[k].numpy() for k in NAMES}


def hand_written(w, x, y):
    """The per-example gradients by the explicit formulas (NumPy): the floor."""
    onehot = np.eye(common.SIZES[-1], dtype=x.dtype)[y]

    def grads():
        h = np.tanh(x @ w["W1"] + w["b1"])
        f = h @ w["W2"] + w["b2"]
        e = np.exp(f - np.max(f, axis=1, keepdims=True))
        df = e / np.sum(e, axis=1, keepdims=True) - onehot
        da = (df @ w["W2"].T) * (1.0 - h * h)
        return {"W1": x[:, :, None] * da[:, None, :], "b1": da, "W2": h[:, :, None] * df[:, None, :], "b2": df}

    return Contender("hand-written NumPy", grads, lambda g: g)


def agrad_contenders(w, x, y):
    p = {k: agrad.tensor(v) for k, v in w.items()}
    xt, yt = agrad.Tensor(x), agrad.Tensor(y)
    loss, label, note = fused_loss, yt, "nn.logistic_loss of a batch of one"
    per_example = agrad.vmap(agrad.grad(loss), in_axes=(None, 0, 0))
    compiled = agrad.compile(per_example)
    one = agrad.grad(loss)
    rows = [label[i] for i in range(x.shape[0])]
    xs = [xt[i] for i in range(x.shape[0])]

    def loop():
        return [one(p, xi, li) for xi, li in zip(xs, rows)]

    def loop_host(gs):
        return {k: np.stack([g[k].numpy() for g in gs]) for k in NAMES}

    batched = agrad.grad(lambda q: agrad.nn.logistic_loss(net(q, xt), yt, check_labels=False))
    return note, [Contender("agrad vmap(grad)", lambda: per_example(p, xt, label), agrad_host),
                  Contender("agrad compile(vmap(grad))", lambda: compiled(p, xt, label), agrad_host),
                  Contender("agrad loop of grad", loop, loop_host),
                  Contender("agrad batched grad", lambda: batched(p), None)]


def torch_contenders(w, x, y, threads):
    import torch
    from torch.func import grad, vmap

    torch.set_num_threads(threads)
    F = torch.nn.functional
    p = {k: torch.tensor(v) for k, v in w.items()}
    xt, yt = torch.tensor(x), torch.tensor(y)

    def tnet(q, xb):
        return torch.tanh(xb @ q["W1"] + q["b1"]) @ q["W2"] + q["b2"]

    def loss(q, xi, yi):
        return F.cross_entropy(tnet(q, xi.unsqueeze(0)), yi.unsqueeze(0))

    per_example = vmap(grad(loss), in_dims=(None, 0, 0))
    batched = grad(lambda q: F.cross_entropy(tnet(q, xt), yt))
    return [Contender("torch.func vmap(grad)", lambda: per_example(p, xt, yt),
                      lambda g: {k: g[k].numpy() for k in NAMES}),
            Contender("torch batched grad", lambda: batched(p), None)]


def check(contenders, ref, rtol):
    wrong = {}
    for c in contenders:
        if c.to_host is None:
            continue
        g = c.host_grads()
        err = max(float(np.max(np.abs(g[k] - ref[k])) / (np.max(np.abs(ref[k])) + 1e-30)) for k in NAMES)
        if err > rtol:
            wrong[c.name] = err
    return wrong


def run(batch, dtype, rounds, seconds, threads, with_torch=True):
    w = common.initial_weights(dtype)
    x, y = common.batch(batch, dtype)
    floor = hand_written(w, x, y)
    note, others = agrad_contenders(w, x, y)
    if with_torch and common.available(common.Torch):
        others += torch_contenders(w, x, y, threads)
    wrong = check(others, floor.host_grads(), rtol=1e-4 if dtype == "float32" else 1e-10)
    timed = [floor] + [c for c in others if c.name not in wrong]
    t0 = time.perf_counter()
    floor.step()
    steps = max(2, int(seconds / max(time.perf_counter() - t0, 1e-6)))
    med = common.time_rounds(timed, steps, rounds)
    return note, wrong, med


def report(med, wrong, note, batch, dtype, threads):
    vm = med.get("agrad vmap(grad)")
    lines = [f"per-example gradients of the seed network, batch {batch}, {dtype}; {threads} thread(s) each; "
             f"loss: {note}", "", "| contender | ms per batch | vs agrad vmap(grad) |", "|---|---:|---:|"]
    for name, t in med.items():
        lines.append(f"| {name} | {t * 1e3:.2f} | {t / vm:.2f}x |" if vm else f"| {name} | {t * 1e3:.2f} | - |")
    for name, err in wrong.items():
        lines.append(f"| {name} | WRONG GRADIENTS (relative error {err:.2g}) | |")
    if vm:
        lines.append("")
        goals = [("batched grad", "agrad batched grad", lambda r: r <= 3, "vmap(grad) / batched grad", True),
                 ("loop", "agrad loop of grad", lambda r: r >= 20, "loop / vmap(grad)", False),
                 ("torch", "torch.func vmap(grad)", lambda r: r > 1, "torch.func / agrad vmap(grad)", False)]
        for _, other, ok, label, inverse in goals:
            if other in med:
                r = vm / med[other] if inverse else med[other] / vm
                lines.append(f"{label}: {r:.2f} ({'goal met' if ok(r) else 'goal missed'})")
        if "hand-written NumPy" in med:
            lines.append(f"agrad vmap(grad) / hand-written floor: {vm / med['hand-written NumPy']:.2f}")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--seconds", type=float, default=0.25, help="target duration of one round of the floor")
    p.add_argument("--threads", type=int, default=1, help="BLAS and torch threads (set before NumPy loads)")
    p.add_argument("--no-torch", action="store_true", help="leave torch out")
    p.add_argument("--quick", action="store_true", help="3 rounds of 0.05 s")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds = 3, 0.05
    note, wrong, med = run(args.batch, args.dtype, args.rounds, args.seconds, args.threads, not args.no_torch)
    info = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}"
    print(report(med, wrong, note, args.batch, args.dtype, args.threads))
    print(f"\n{info}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "batch": args.batch, "dtype": args.dtype, "threads": args.threads,
                       "loss": note, "ms": {k: v * 1e3 for k, v in med.items()}, "wrong": wrong}, f, indent=1)
    return med


if __name__ == "__main__":
    main()
