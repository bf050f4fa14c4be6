"""The coverage table of docs/conformance.md and the README: the 2024.12 standard's
functions and constants per category, which agrad has, and which are differentiable.

    python docs/array_api_coverage.py ../shared/array-api-tests/array-api/src

Reads the standard's own signature stubs (the copy beside the conformance suite).
"""

from __future__ import annotations

import ast
import os
import sys

import agrad

# Functions whose results carry no derivative by definition: integer or boolean results,
# piecewise-constant values, set functions, dtype and device queries.
NO_DERIVATIVE = {
    "argmax", "argmin", "argsort", "nonzero", "searchsorted", "count_nonzero", "unique_all", "unique_counts",
    "unique_inverse", "unique_values", "equal", "not_equal", "greater", "greater_equal", "less", "less_equal",
    "logical_and", "logical_or", "logical_not", "logical_xor", "isfinite", "isinf", "isnan", "signbit", "sign",
    "floor", "ceil", "round", "trunc", "floor_divide", "nextafter", "bitwise_and", "bitwise_or", "bitwise_xor",
    "bitwise_invert", "bitwise_left_shift", "bitwise_right_shift", "all", "any", "can_cast", "finfo", "iinfo",
    "isdtype", "result_type", "broadcast_shapes", "arange", "empty", "empty_like", "eye", "full", "full_like",
    "linspace", "ones", "ones_like", "zeros", "zeros_like", "matrix_rank", "from_dlpack", "asarray", "tril_indices",
}
CATEGORIES = ["creation_functions", "data_type_functions", "elementwise_functions", "indexing_functions",
              "linear_algebra_functions", "manipulation_functions", "searching_functions", "set_functions",
              "sorting_functions", "statistical_functions", "utility_functions", "constants", "linalg", "fft"]


def names(path: str) -> list[str]:
    tree = ast.parse(open(path).read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return [e.value for e in node.value.elts]
    return []


def main(src: str) -> None:
    stubs = os.path.join(src, "array_api_stubs", "_2024_12")
    rows, totals = [], [0, 0, 0, 0]
    for cat in CATEGORIES:
        ns = agrad.linalg if cat == "linalg" else (getattr(agrad, "fft", None) if cat == "fft" else agrad)
        found = names(os.path.join(stubs, f"{cat}.py"))
        have = [n for n in found if ns is not None and hasattr(ns, n)]
        constant = cat == "constants"
        with_derivative = [n for n in found if n not in NO_DERIVATIVE and not constant]
        diff = [n for n in with_derivative if n in have]
        rows.append((cat.replace("_", " "), len(found), len(have), len(with_derivative), len(diff),
                     sorted(set(found) - set(have))))
        for i, v in enumerate((len(found), len(have), len(with_derivative), len(diff))):
            totals[i] += v
    print("| category | in the standard | in agrad | have a derivative | differentiable in agrad | missing |")
    print("|---|---:|---:|---:|---:|---|")
    for cat, n, h, d, dd, missing in rows:
        print(f"| {cat} | {n} | {h} | {d} | {dd} | {', '.join(missing) or '-'} |")
    print(f"| **total** | {totals[0]} | {totals[1]} | {totals[2]} | {totals[3]} | |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                                                             "array-api-tests", "array-api", "src"))
