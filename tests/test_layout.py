"""The layout rules a newcomer can rely on (docs/architecture.md): an import inside a
function only where it breaks a real import cycle or defers an optional library, each
saying why."""

from __future__ import annotations

import pathlib
import re

AGRAD = pathlib.Path(__file__).resolve().parent.parent / "agrad"
# Optional or heavy array libraries, imported by the backend layer when first needed.
DEFERRED_LIBRARIES = ("cupy", "cupyx", "cupy_backends", "array_api_compat", "array_api_strict", "numpy", "safetensors")


def _late_imports():
    for path in sorted(AGRAD.rglob("*.py")):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            m = re.match(r"^\s+(?:from\s+(\S+)\s+import|import\s+(\S+))", line)
            if m:
                yield path.relative_to(AGRAD.parent), i + 1, line, lines[max(0, i - 3):i], m.group(1) or m.group(2)


def test_every_late_import_of_agrad_says_which_cycle_it_breaks():
    unexplained = []
    for path, n, line, before, module in _late_imports():
        if module.split(".")[0] in DEFERRED_LIBRARIES or module in ("math", "builtins"):
            continue
        said = "late" in line or any("late" in b or "first use" in b for b in before)
        if not said:
            unexplained.append(f"{path}:{n}: {line.strip()}")
    assert not unexplained, ("imports inside functions without the cycle they break (move them to the top, or say "
                             "'(late: ...)' why):\n" + "\n".join(unexplained))


def test_the_scan_finds_late_imports():
    found = {module for *_, module in _late_imports()}
    assert {".", "cupy"} <= found, f"the scan should see the tape's late import of agrad.ops and CuPy's: {found}"
