"""Datasets and batching: MNIST from the standard IDX files, and a seeded batch iterator.

``mnist()`` reads ``train-images-idx3-ubyte`` etc. (gzip-compressed or raw) from a
data folder, verifies their content against the published sha256 sums, downloads
them from the usual public mirrors when they are missing (and the network allows),
and otherwise says which folder and which four files it needs.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Iterator

from . import backend
from . import random as arandom
from .tensor import Tensor

MNIST_FILES = {  # name -> (sha256 of the decompressed IDX content, expected shape)
    "train-images-idx3-ubyte": ("ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", (60000, 28, 28)),
    "train-labels-idx1-ubyte": ("65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", (60000,)),
    "t10k-images-idx3-ubyte": ("0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", (10000, 28, 28)),
    "t10k-labels-idx1-ubyte": ("ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", (10000,)),
}
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)


class DatasetError(RuntimeError):
    """A dataset file is missing, truncated or corrupt."""


def default_data_dir() -> str:
    """``$AGRAD_DATA_DIR``, else a per-user cache folder (``$XDG_CACHE_HOME/agrad`` or ``~/.cache/agrad``)."""
    env = os.environ.get("AGRAD_DATA_DIR")
    if env:
        return env
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "agrad")


def parse_idx(content: bytes, name: str = "IDX data") -> Any:
    """Decode an IDX file (magic 0x00000803 / 0x00000801 for uint8 images / labels)."""
    if len(content) < 4:
        raise DatasetError(f"{name}: truncated IDX file ({len(content)} bytes)")
    zero, dtype_code, ndim = content[0] << 8 | content[1], content[2], content[3]
    if zero != 0 or dtype_code != 0x08 or not 1 <= ndim <= 4:
        raise DatasetError(f"{name}: not an unsigned-byte IDX file (magic {content[:4].hex()})")
    head = 4 + 4 * ndim
    if len(content) < head:
        raise DatasetError(f"{name}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", content[4:head])
    count = 1
    for s in shape:
        count *= s
    if len(content) != head + count:
        raise DatasetError(f"{name}: truncated or corrupt IDX file: shape {shape} needs {head + count} bytes, "
                           f"found {len(content)}")
    return backend.array_from_bytes(content[head:], "uint8", shape)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        raw = f.read()
    if path.endswith(".gz"):
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DatasetError(f"{path}: truncated or corrupt gzip file ({exc})") from None
    return raw


def _find(folder: str, name: str) -> str | None:
    for candidate in (name, name + ".gz"):
        path = os.path.join(folder, candidate)
        if os.path.exists(path):
            return path
    return None


def _download(folder: str, name: str, mirrors: tuple[str, ...]) -> tuple[str | None, list[str]]:
    os.makedirs(folder, exist_ok=True)
    errors = []
    for mirror in mirrors:
        url = mirror + name + ".gz"
        try:
            with urllib.request.urlopen(url, timeout=20) as resp:
                blob = resp.read()
            content = gzip.decompress(blob)
        except (urllib.error.URLError, OSError, EOFError, ValueError) as exc:
            errors.append(f"{url}: {exc}")
            continue
        if hashlib.sha256(content).hexdigest() != MNIST_FILES[name][0]:
            errors.append(f"{url}: checksum mismatch")
            continue
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        path = os.path.join(folder, name + ".gz")
        os.replace(tmp, path)  # atomic: never a half-written file under the real name
        return path, errors
    return None, errors


@dataclass
class Split:
    """Images as float in [0, 1] of shape (n, 784) and integer labels, on the host."""

    images: Any
    labels: Any

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def mnist(data_dir: str | None = None, download: bool = True, mirrors: tuple[str, ...] = MNIST_MIRRORS,
          dtype: str = "float32") -> tuple[Split, Split]:
    """The MNIST (train, test) splits as host arrays (images flattened to 784, scaled to [0, 1]).

    Files are looked up in ``data_dir`` (default :func:`default_data_dir`), in
    ``data_dir/mnist`` too, as ``NAME`` or ``NAME.gz``; their decompressed content
    must match the published sha256. Missing files are downloaded into the folder
    when ``download`` is set; if that fails (e.g. offline), the error names the
    folder and the four files to put there.
    """
    root = data_dir or default_data_dir()
    folders = [root, os.path.join(root, "mnist")]
    arrays = {}
    for name, (sha, shape) in MNIST_FILES.items():
        path = next((p for p in (_find(f, name) for f in folders) if p), None)
        errors: list[str] = []
        if path is None and download:
            path, errors = _download(folders[0], name, mirrors)
        if path is None:
            files = ", ".join(f"{n}.gz" for n in MNIST_FILES)
            why = ("; download failed: " + " | ".join(errors[:2])) if errors else ""
            raise DatasetError(
                f"MNIST file {name}(.gz) not found in {os.path.abspath(root)}{why}. Put the four files "
                f"{files} (gzip-compressed or raw) in that folder, or point data_dir / AGRAD_DATA_DIR at a "
                f"folder that has them."
            )
        content = _read(path)
        arr = parse_idx(content, path)
        if tuple(arr.shape) != shape:
            raise DatasetError(f"{path}: expected shape {shape}, found {tuple(arr.shape)}")
        if hashlib.sha256(content).hexdigest() != sha:
            raise DatasetError(f"{path}: content does not match the published sha256 {sha[:12]}...; the file is "
                               f"corrupt: delete it and download it again")
        arrays[name] = arr
    hp = backend.host_namespace()

    def images(a):
        return hp.astype(hp.reshape(a, (a.shape[0], -1)), getattr(hp, dtype)) / 255.0

    train = Split(images(arrays["train-images-idx3-ubyte"]), hp.astype(arrays["train-labels-idx1-ubyte"], hp.int64))
    test = Split(images(arrays["t10k-images-idx3-ubyte"]), hp.astype(arrays["t10k-labels-idx1-ubyte"], hp.int64))
    return train, test


class DataLoader:
    """Batches of (images, labels) Tensors on the selected backend and device.

    The arrays are moved to the device once, at construction; each epoch draws a
    permutation on the host from a seeded generator (the same order on every
    backend) and gathers the batches on the device.
    """

    def __init__(self, images: Any, labels: Any, batch_size: int, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False, device: Any = None, backend_name: str | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be positive, got {batch_size}")
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"DataLoader: {images.shape[0]} images but {labels.shape[0]} labels")
        self.images = backend.from_numpy(images, backend=backend_name, device=device)
        self.labels = backend.from_numpy(labels, backend=backend_name, device=device)
        self.backend_name = backend_name
        self.device = device
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.rng = arandom.generator(seed)
        self.n = int(images.shape[0])

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        xp = backend.namespace_of((self.images,), "DataLoader")
        if self.shuffle:
            hp = backend.host_namespace()
            order = backend.from_numpy(hp.astype(self.rng.permutation(self.n), hp.int64),
                                       backend=self.backend_name, device=self.device)
        for b in range(len(self)):
            lo, hi = b * self.batch_size, min(self.n, (b + 1) * self.batch_size)
            if self.shuffle:
                idx = order[lo:hi]
                yield Tensor(xp.take(self.images, idx, axis=0)), Tensor(xp.take(self.labels, idx, axis=0))
            else:
                yield Tensor(self.images[lo:hi, ...]), Tensor(self.labels[lo:hi, ...])
