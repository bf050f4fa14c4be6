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


# --------------------------------------------------------------------------- Tensor internals
# A Tensor's array and its in-place bookkeeping are written only by agrad/tensor.py's
# methods (Tensor._replace_array, _node, _shell...); the one exception is the compiled
# replay's fast path, the write-backs agrad/compile/codegen.py generates (documented in
# both files): exactly these lines of generated code, and nothing else.
TENSOR_INTERNALS = ("_data", "_vc", "_versions", "_view", "_past")
GENERATED_WRITE = re.compile(r"\.(%s)\s*(\[[^\]]*\])?\s*(=(?!=)|[-+*/|&^]=)" % "|".join(TENSOR_INTERNALS))
ALLOWED_GENERATED = {("agrad/compile/codegen.py", "generated ._data ="),
                     ("agrad/compile/codegen.py", "generated ._vc[0] +=")}


def _internal_writes():
    """(path, line, what) for every write of a Tensor internal in agrad/: an assignment to
    the attribute, into it (``x._data[k] = v``, ``x._vc[0] += 1``), a setattr of it, or a
    string of generated code that does one of those."""
    import ast

    for path in sorted(AGRAD.rglob("*.py")):
        rel = path.relative_to(AGRAD.parent).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), rel)):
            writes = isinstance(getattr(node, "ctx", None), (ast.Store, ast.Del))
            if isinstance(node, ast.Attribute) and writes and node.attr in TENSOR_INTERNALS:
                yield rel, node.lineno, f".{node.attr} ="
            elif isinstance(node, ast.Subscript) and writes and isinstance(node.value, ast.Attribute) and \
                    node.value.attr in TENSOR_INTERNALS:
                yield rel, node.lineno, f".{node.value.attr}[...] ="
            elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) in (
                    "setattr", "__setattr__") and any(isinstance(a, ast.Constant) and a.value in TENSOR_INTERNALS
                                                      for a in node.args):
                yield rel, node.lineno, "setattr"
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                for m in GENERATED_WRITE.finditer(node.value):
                    yield rel, node.lineno, f"generated {m.group(0)}"


def test_only_tensor_py_writes_tensor_internals():
    outside = [f"{path}:{line}: {what}" for path, line, what in _internal_writes()
               if path != "agrad/tensor.py" and (path, what) not in ALLOWED_GENERATED]
    assert not outside, ("Tensor internals written outside agrad/tensor.py (call its methods: _replace_array, "
                         "_write, _node, _shell, _stand_for...; or document a new exception in both places):\n"
                         + "\n".join(outside))


def test_the_scan_finds_tensor_internal_writes():
    found = {(path, what) for path, _, what in _internal_writes()}
    assert ALLOWED_GENERATED <= found, f"the scan should see the compiled replay's write-backs: {found}"
    assert ("agrad/tensor.py", "._data =") in found and ("agrad/tensor.py", "._data[...] =") in found and \
        ("agrad/tensor.py", "._vc =") in found, f"the scan should see tensor.py's own writes: {found}"


def test_one_answer_to_whether_an_array_owns_its_memory():
    """``backend.owns_memory`` is the only code that reads an array's ``base`` (whether it
    is a view); the tape, ``clip_grad_norm_`` and ``backend.aliases`` ask it."""
    import ast

    readers = []
    for path in sorted(AGRAD.rglob("*.py")):
        rel = path.relative_to(AGRAD.parent).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), rel)):
            if isinstance(node, ast.Attribute) and node.attr == "base" or isinstance(node, ast.Call) and \
                    getattr(node.func, "id", None) in ("getattr", "hasattr") and len(node.args) > 1 and \
                    isinstance(node.args[1], ast.Constant) and node.args[1].value == "base":
                readers.append(f"{rel}:{node.lineno}")
    # owns_memory itself, and agrad.compile's proxy array passing the question on to its array
    where = sorted(r.split(":")[0] for r in readers)
    assert where == ["agrad/backend/__init__.py", "agrad/compile/trace.py"], (
        f"an array's base is read outside backend.owns_memory (call it instead): {readers}")
