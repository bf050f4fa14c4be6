"""Train the seed network for one epoch on the real MNIST and reach 90% test accuracy."""

from __future__ import annotations

import os
import sys

import pytest

SHARED = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))


@pytest.mark.skipif(not os.path.isdir(SHARED), reason="real MNIST not found at ../shared/data/mnist")
def test_one_epoch_reaches_90_percent(tmp_path):
    import mnist_mlp

    results = mnist_mlp.main(["--epochs", "1", "--data-dir", SHARED, "--out", str(tmp_path), "--quiet"])
    assert results["test_accuracy"] >= 0.90
    assert (tmp_path / "mnist_mlp.safetensors").exists()
    pytest.importorskip("matplotlib")
    for name in ("hidden_weights.png", "output_weights.png", "features_and_scores.png", "training_curve.png"):
        assert (tmp_path / name).stat().st_size > 1000


@pytest.mark.skipif(not os.path.isdir(SHARED), reason="real MNIST not found at ../shared/data/mnist")
def test_restarts_keep_the_best_validation_loss(tmp_path):
    import mnist_mlp

    results = mnist_mlp.main(["--epochs", "1", "--restarts", "2", "--data-dir", SHARED, "--out", str(tmp_path),
                              "--quiet", "--no-figures", "--hidden", "16"])
    losses = [r["validation_loss"] for r in results["restarts"]]
    assert len(losses) == 2 and results["test_accuracy"] >= 0.85
