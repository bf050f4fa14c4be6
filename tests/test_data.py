"""The MNIST loader on small synthetic IDX files (and the real files when present)."""

from __future__ import annotations

import gzip
import hashlib
import os
import struct

import numpy as np
import pytest

import agrad
from agrad import data

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist")


def _idx(arr: np.ndarray) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    return struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


@pytest.fixture
def fake_mnist(tmp_path, monkeypatch):
    """Small IDX files, with the loader's checksum table pointed at them."""
    rng = np.random.default_rng(0)
    contents = {
        "train-images-idx3-ubyte": _idx(rng.integers(0, 256, (20, 28, 28))),
        "train-labels-idx1-ubyte": _idx(rng.integers(0, 10, 20)),
        "t10k-images-idx3-ubyte": _idx(rng.integers(0, 256, (8, 28, 28))),
        "t10k-labels-idx1-ubyte": _idx(rng.integers(0, 10, 8)),
    }
    table = {}
    for name, blob in contents.items():
        shape = (20, 28, 28) if "train-images" in name else (20,) if "train" in name else \
            (8, 28, 28) if "images" in name else (8,)
        table[name] = (hashlib.sha256(blob).hexdigest(), shape)
        if "images" in name:
            (tmp_path / (name + ".gz")).write_bytes(gzip.compress(blob))
        else:
            (tmp_path / name).write_bytes(blob)  # raw files work too
    monkeypatch.setattr(data, "MNIST_FILES", table)
    return tmp_path, contents


def test_reads_gz_and_raw_idx(fake_mnist):
    folder, contents = fake_mnist
    train, test = data.mnist(str(folder), download=False)
    assert train.images.shape == (20, 784) and test.images.shape == (8, 784)
    assert train.images.dtype == np.float32 and 0.0 <= train.images.min() and train.images.max() <= 1.0
    assert train.labels.tolist() == list(contents["train-labels-idx1-ubyte"][8:])


def test_truncated_file_is_a_clear_error(fake_mnist):
    folder, contents = fake_mnist
    (folder / "train-labels-idx1-ubyte").write_bytes(contents["train-labels-idx1-ubyte"][:-3])
    with pytest.raises(data.DatasetError, match="truncated"):
        data.mnist(str(folder), download=False)


def test_corrupt_gzip_is_a_clear_error(fake_mnist):
    folder, _ = fake_mnist
    blob = (folder / "t10k-images-idx3-ubyte.gz").read_bytes()
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(data.DatasetError, match="corrupt|truncated"):
        data.mnist(str(folder), download=False)


def test_changed_content_fails_the_checksum(fake_mnist):
    folder, contents = fake_mnist
    blob = bytearray(contents["train-labels-idx1-ubyte"])
    blob[-1] = (blob[-1] + 1) % 10
    (folder / "train-labels-idx1-ubyte").write_bytes(bytes(blob))
    with pytest.raises(data.DatasetError, match="sha256"):
        data.mnist(str(folder), download=False)


def test_bad_magic_is_rejected():
    with pytest.raises(data.DatasetError, match="magic"):
        data.parse_idx(b"\x00\x00\x0d\x01\x00\x00\x00\x01\x00")


def test_missing_files_offline_name_the_folder_and_files(tmp_path):
    with pytest.raises(data.DatasetError) as err:
        data.mnist(str(tmp_path), download=True, mirrors=("http://127.0.0.1:9/",))
    msg = str(err.value)
    assert str(tmp_path) in msg and "train-images-idx3-ubyte.gz" in msg and "t10k-labels-idx1-ubyte.gz" in msg
    assert "download failed" in msg
    assert not [p for p in os.listdir(tmp_path) if not p.startswith(".")]  # nothing half-written


def test_data_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("AGRAD_DATA_DIR", str(tmp_path))
    assert data.default_data_dir() == str(tmp_path)


def test_loader_same_order_on_every_backend(on_backend):
    images = np.arange(10 * 3, dtype=np.float32).reshape(10, 3)
    labels = np.arange(10)
    ref = [y.numpy().tolist() for _, y in data.DataLoader(images, labels, 4, seed=3, backend_name="numpy")]
    loader = data.DataLoader(images, labels, 4, seed=3, device=on_backend.device)
    got = []
    for x, y in loader:
        assert agrad.backend.namespace_of((x.data,)).name == on_backend.backend
        got.append(y.numpy().tolist())
        np.testing.assert_array_equal(x.numpy()[:, 0], np.asarray(got[-1]) * 3)
    assert got == ref and len(loader) == 3
    assert sorted(sum(got, [])) == list(range(10))


@pytest.mark.skipif(not os.path.isdir(SHARED), reason="real MNIST not found at ../shared/data/mnist")
def test_real_mnist_files():
    train, test = data.mnist(SHARED, download=False)
    assert len(train) == 60000 and len(test) == 10000
