"""The official array API conformance suite (data-apis/array-api-tests, the copy in
../shared/array-api-tests) against agrad's namespace, the way array-API code finds it
(``agrad.tensor(1.0).__array_namespace__()``).

Settings: standard 2024.12, complex and fft deselected (complex numbers are the next
step), ``AGRAD_CONFORMANCE_EXAMPLES`` hypothesis examples per test (5 in CI; the
numbers in docs/conformance.md come from longer runs). Every failure must be listed in
tests/conformance_expected_failures.txt, each one a test that array-api-strict, the
standard's reference implementation, fails too under the same settings. The hypothesis
seed is fixed, so a run is reproducible.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

import agrad

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUITE = os.path.normpath(os.path.join(ROOT, "..", "shared", "array-api-tests"))
EXPECTED = os.path.join(os.path.dirname(__file__), "conformance_expected_failures.txt")
EXAMPLES = os.environ.get("AGRAD_CONFORMANCE_EXAMPLES", "5")
# Complex numbers and fft are out of scope for now: their tests, and the special cases of
# complex inputs (named after real(x_i) / imag(x_i)), are deselected.
DESELECT = "not fft and not complex and not real and not imag"


def _expected() -> set[str]:
    with open(EXPECTED) as f:
        return {line.strip() for line in f if line.strip() and not line.startswith("#")}


def test_the_namespace_is_found_as_array_api_code_finds_it():
    import array_api_compat

    t = agrad.tensor(1.0)
    assert t.__array_namespace__() is agrad
    assert array_api_compat.array_namespace(t) is agrad
    assert agrad.__array_api_version__ == "2024.12"


@pytest.mark.skipif(not os.path.isdir(SUITE), reason=f"the conformance suite is not at {SUITE}")
def test_the_official_conformance_suite(tmp_path):
    for module in ("ndindex", "pytest_jsonreport", "hypothesis"):
        pytest.importorskip(module)
    suite = tmp_path / "array-api-tests"
    shutil.copytree(SUITE, suite)  # the suite writes caches beside itself
    for path in [suite, *suite.rglob("*")]:  # (the shared copy is read-only)
        path.chmod(path.stat().st_mode | 0o200)
    report = tmp_path / "report.json"
    env = {**os.environ, "ARRAY_API_TESTS_MODULE": "agrad", "ARRAY_API_TESTS_VERSION": agrad.__array_api_version__,
           "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--max-examples", EXAMPLES,
         "--hypothesis-seed=1", "--disable-deadline",  # a loaded CI machine must not turn slowness into failures
         "--disable-warnings", "-k", DESELECT, "--json-report", f"--json-report-file={report}",
         "array_api_tests/"],
        cwd=suite, env=env, capture_output=True, text=True, timeout=1200,
    )
    assert report.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    tests = json.loads(report.read_text())["tests"]
    failed = {t["nodeid"] for t in tests if t["outcome"] == "failed"}
    passed = sum(t["outcome"] == "passed" for t in tests)
    unexpected = sorted(failed - _expected())
    assert not unexpected, f"{len(unexpected)} conformance tests fail that array-api-strict passes: {unexpected}"
    assert passed > 1000, f"only {passed} conformance tests passed"
