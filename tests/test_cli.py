"""examples/mnist_mlp.py's error paths, run as a user runs them: each ends with one
clear line on stderr and a non-zero exit, not a traceback, before any training."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "examples", "mnist_mlp.py")


def _run(*args, tmp_path):
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=120)


@pytest.mark.parametrize("args,expected", [
    (["--backend", "nosuch"], "--backend nosuch: choose numpy, cupy or array_api_strict"),
    (["--device", "tpu"], "--device tpu:"),
    (["--out", "/proc/agrad-cannot-write-here"], "--out /proc/agrad-cannot-write-here: cannot write there"),
    (["--lr", "-1"], "--lr must be positive"),
    (["--epochs", "0"], "must be positive"),
])
def test_user_errors_are_one_line(args, expected, tmp_path):
    run = _run(*args, "--data-dir", str(tmp_path), tmp_path=tmp_path)
    assert run.returncode != 0
    assert "Traceback" not in run.stderr, run.stderr
    assert expected in run.stderr.strip().splitlines()[-1], run.stderr


def test_missing_data_names_the_folder_and_the_files(tmp_path):
    empty = tmp_path / "nodata"
    empty.mkdir()
    run = _run("--data-dir", str(empty), tmp_path=tmp_path)
    assert run.returncode != 0 and "Traceback" not in run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert str(empty) in last and "train-images-idx3-ubyte.gz" in last


def test_a_gpu_device_without_cupy_says_so(tmp_path):
    from agrad import backend

    if backend.backend_status("cupy")[0]:
        pytest.skip("a GPU is present")
    run = _run("--device", "cuda", "--data-dir", str(tmp_path), tmp_path=tmp_path)
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert "--device cuda" in run.stderr and "cupy" in run.stderr.lower()


def test_help_shows_every_option_with_its_default(tmp_path):
    run = _run("--help", tmp_path=tmp_path)
    assert run.returncode == 0
    for option, default in [("--epochs", "10"), ("--batch-size", "128"), ("--optimizer", "sgd"),
                            ("--schedule", "cosine"), ("--weight-decay", "0.0001"), ("--hidden", "72")]:
        assert option in run.stdout and f"(default: {default})" in run.stdout, option
