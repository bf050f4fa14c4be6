"""Wall time and peak memory of full MNIST epochs (batch 128, float32) for agrad (eager
and compiled), hand-written NumPy backprop (in place and plain) and PyTorch, each in its
own process; and agrad's resident memory after 10,000 steps against after 100 (the tape
must not leak).

    python benchmarks/epoch.py [--data-dir ../shared/data/mnist] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data", "mnist"))


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(contender: str, data_dir: str, epochs: int, leak_steps: int) -> dict:
    import common
    import numpy as np

    import agrad

    train, _ = agrad.datasets.mnist(data_dir, download=False)
    w = common.initial_weights("float32")
    n = len(train)
    order_rng = np.random.default_rng(0)
    first = {"agrad": common.Agrad, "agrad compiled": common.AgradCompiled, "hand-written": common.HandWritten,
             "hand-written in-place": common.HandWrittenInPlace, "pytorch": common.Torch}[contender]
    runner = first(w, train.images[:128], train.labels[:128], "numpy")
    times = []
    base_rss = rss_mb()
    for _ in range(epochs):
        order = order_rng.permutation(n)
        t0 = time.perf_counter()
        for lo in range(0, n, 128):
            idx = order[lo:lo + 128]
            _set_batch(runner, contender, train.images[idx], train.labels[idx])
            runner.step()
        times.append(time.perf_counter() - t0)
    out = {"contender": contender, "epoch_seconds": times, "rss_before_mb": base_rss,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if leak_steps:
        for _ in range(100):
            runner.step()
        rss100 = rss_mb()
        for _ in range(leak_steps - 100):
            runner.step()
        out.update(rss_after_100_mb=rss100, rss_after_steps_mb=rss_mb(), leak_steps=leak_steps)
    return out


def _set_batch(runner, contender, x, y):
    import agrad

    if contender == "agrad":
        runner.x, runner.y = agrad.Tensor(x), agrad.Tensor(y)
    elif contender == "agrad compiled":
        runner.xr, runner.yr = x, y
    elif contender == "pytorch":
        runner.x, runner.y = runner.torch.from_numpy(x), runner.torch.from_numpy(y)
    else:
        runner.x, runner.y = x, y


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("AGRAD_DATA_DIR", DEFAULT_DATA))
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--leak-steps", type=int, default=10000)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.data_dir, args.epochs, args.leak_steps)))
        return
    rows = []
    for contender in ("hand-written in-place", "hand-written", "agrad", "agrad compiled", "pytorch"):
        if contender == "pytorch":
            try:
                import torch  # noqa: F401
            except ImportError:
                continue
        leak = args.leak_steps if contender.startswith("agrad") else 0
        res = subprocess.run([sys.executable, __file__, "--child", contender, "--data-dir", args.data_dir,
                              "--epochs", str(args.epochs), "--leak-steps", str(leak)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        time.sleep(1.0)
    print("| contender | epoch time (s, best) | peak RSS (MB) |\n|---|---:|---:|")
    for r in rows:
        print(f"| {r['contender']} | {min(r['epoch_seconds']):.3f} | {r['peak_rss_mb']:.0f} |")
    for r in rows:
        if "rss_after_100_mb" in r:
            print(f"\n{r['contender']} resident memory: {r['rss_after_100_mb']:.1f} MB after 100 steps, "
                  f"{r['rss_after_steps_mb']:.1f} MB after {r['leak_steps']} steps")


if __name__ == "__main__":
    main()
