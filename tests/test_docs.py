"""The API reference builds from the docstrings with every warning an error: a broken
cross-reference, a malformed docstring or an undocumented name in the reference fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs", "api")


def _build(src, out):
    command = [sys.executable, "-m", "sphinx.cmd.build", "-W", "--keep-going", "-n", "-q", "-E", "-b", "html", src, out]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_the_api_reference_builds_without_warnings(tmp_path):
    pytest.importorskip("sphinx.cmd.build")
    run = _build(DOCS, str(tmp_path / "html"))
    assert run.returncode == 0, run.stderr


def test_a_broken_reference_fails_the_build(tmp_path):
    pytest.importorskip("sphinx.cmd.build")
    src = tmp_path / "src"
    shutil.copytree(DOCS, src, ignore=shutil.ignore_patterns("_build"))
    (src / "index.rst").write_text((src / "index.rst").read_text() + "\nSee :func:`agrad.no_such_function`.\n")
    run = _build(str(src), str(tmp_path / "html"))
    assert run.returncode != 0 and "no_such_function" in run.stderr
