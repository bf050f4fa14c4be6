"""Checkpoints: safetensors round trips across backends, atomic writes, corrupt files."""

from __future__ import annotations

import os

import numpy as np
import pytest

import agrad
from agrad import nn


def test_round_trip_is_bit_identical_across_backends(tmp_path, on_backend):
    net = nn.MLP([5, 4, 3], rng=agrad.random.generator(0), device=on_backend.device)
    path = tmp_path / "m.safetensors"
    agrad.save(net.state_dict(), path)
    host = agrad.load(path, backend_name="numpy")
    for name, p in net.named_parameters():
        assert host[name].numpy().tobytes() == p.numpy().tobytes()
    back = agrad.load(path, device=on_backend.device)  # onto the backend under test
    net2 = nn.MLP([5, 4, 3], rng=agrad.random.generator(1), device=on_backend.device)
    net2.load_state_dict(back)
    for (_, p), (_, q) in zip(net.named_parameters(), net2.named_parameters()):
        assert p.numpy().tobytes() == q.numpy().tobytes()


def test_readable_by_the_safetensors_package(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    agrad.save({"w": agrad.tensor(np.arange(6.0).reshape(2, 3)), "i": np.array([1, 2])}, tmp_path / "a.safetensors")
    loaded = st.load_file(str(tmp_path / "a.safetensors"))
    np.testing.assert_array_equal(loaded["w"], np.arange(6.0).reshape(2, 3))
    st.save_file({"x": np.ones(3, np.float32)}, str(tmp_path / "b.safetensors"))
    np.testing.assert_array_equal(agrad.load(tmp_path / "b.safetensors")["x"].numpy(), np.ones(3, np.float32))


def test_truncated_and_corrupt_files_are_clear_errors(tmp_path):
    path = tmp_path / "c.safetensors"
    agrad.save({"w": np.arange(10.0)}, path)
    blob = path.read_bytes()
    (tmp_path / "t.safetensors").write_bytes(blob[:-5])
    with pytest.raises(agrad.CheckpointError, match="truncated"):
        agrad.load(tmp_path / "t.safetensors")
    (tmp_path / "h.safetensors").write_bytes(blob[:8] + b"{not json" + blob[17:])
    with pytest.raises(agrad.CheckpointError, match="corrupt"):
        agrad.load(tmp_path / "h.safetensors")
    (tmp_path / "s.safetensors").write_bytes(b"abc")
    with pytest.raises(agrad.CheckpointError, match="truncated"):
        agrad.load(tmp_path / "s.safetensors")


def test_a_failed_write_leaves_the_old_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "d.safetensors"
    agrad.save({"w": np.zeros(3)}, path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        agrad.save({"w": np.ones(3)}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["d.safetensors"]
