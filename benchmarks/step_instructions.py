"""Instructions per training step (valgrind callgrind), agrad against hand-written NumPy.

Wall-clock ratios on a shared 2-core machine move by +-10-20% between runs; instruction
counts do not. Each contender runs N1 and N2 steps in separate processes with one BLAS
thread; the difference divided by N2 - N1 is the cost of one step, warm-up excluded.

    python benchmarks/step_instructions.py [--batches 1,128] [--steps 20,120]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

CHILD = """
import sys
sys.path.insert(0, {here!r})
import common
which, n, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
w = common.initial_weights("float32")
x, y = common.batch(n, "float32")
c = {{"agrad": common.Agrad, "compiled": common.AgradCompiled, "hand": common.HandWritten,
      "inplace": common.HandWrittenInPlace, "dropped": common.AgradCompiledGradsDropped}}[which](w, x, y, "numpy")
for _ in range(steps):
    c.step()
"""


def instructions(script: str, who: str, batch: int, steps: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
        res = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
                              script, who, str(batch), str(steps)], capture_output=True, text=True, env=env)
        m = re.search(r"Collected : (\d+)", res.stderr)
        if not m:
            raise RuntimeError(f"callgrind failed: {res.stderr[-500:]}")
        return int(m.group(1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", default="1,128")
    p.add_argument("--steps", default="20,120")
    args = p.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    n1, n2 = (int(s) for s in args.steps.split(","))
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(CHILD.format(here=HERE))
        script = f.name
    print("| batch | hand-written in-place (floor) | hand-written | agrad eager | agrad compiled "
          "| agrad compiled, grads dropped |\n|---:|---:|---:|---:|---:|---:|")
    for batch in (int(b) for b in args.batches.split(",")):
        per = {}
        who_all = ("inplace", "hand", "agrad", "compiled", "dropped")
        for who in who_all:
            per[who] = (instructions(script, who, batch, n2) - instructions(script, who, batch, n1)) / (n2 - n1)
        floor = per["inplace"]
        cells = [f"{per[w] / 1e6:.3f} M ({per[w] / floor:.3f}x)" for w in who_all]
        print(f"| {batch} | " + " | ".join(cells) + " |", flush=True)
    os.unlink(script)


if __name__ == "__main__":
    main()
