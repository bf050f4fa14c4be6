"""Checkpoints in the safetensors format: no pickle, so loading never runs code.

Files are written atomically (a temporary file in the same folder, fsync, then
rename), so a crash never leaves a half-written checkpoint. A truncated or corrupt
file is a clear error. Arrays are copied to the host to save and placed on the
requested backend/device to load; the bytes round-trip exactly.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from typing import Any

from . import backend
from .tensor import Tensor

_DTYPES = {  # safetensors name <-> NumPy name
    "F64": "float64", "F32": "float32", "F16": "float16", "I64": "int64", "I32": "int32", "I16": "int16",
    "I8": "int8", "U8": "uint8", "U16": "uint16", "U32": "uint32", "U64": "uint64", "BOOL": "bool",
}
_NAMES = {v: k for k, v in _DTYPES.items()}
_ITEMSIZE = {"float64": 8, "float32": 4, "float16": 2, "int64": 8, "int32": 4, "int16": 2, "int8": 1,
             "uint8": 1, "uint16": 2, "uint32": 4, "uint64": 8, "bool": 1}


class CheckpointError(ValueError):
    """A checkpoint file is truncated, corrupt or not a safetensors file."""


def save(state: dict[str, Any], path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Write ``state`` (name -> Tensor or array, any backend) to ``path`` atomically."""
    if not isinstance(state, dict) or not state:
        raise ValueError("agrad.save: state must be a non-empty dict of name -> Tensor/array")
    header: dict[str, Any] = {}
    blobs = []
    offset = 0
    for name in sorted(state):
        if not isinstance(name, str):
            raise TypeError(f"agrad.save: keys must be strings, got {name!r}")
        value = state[name]
        host = backend.to_numpy(value.data if isinstance(value, Tensor) else value)
        dtype = str(host.dtype)
        if dtype not in _NAMES:
            raise TypeError(f"agrad.save: {name}: dtype {dtype} cannot be stored in safetensors")
        blob = backend.array_to_bytes(host)
        header[name] = {"dtype": _NAMES[dtype], "shape": list(host.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # the format pads the header to 8 bytes
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(head)))
            f.write(head)
            for blob in blobs:
                f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path: str | os.PathLike, device: Any = None, backend_name: str | None = None) -> dict[str, Tensor]:
    """Read a safetensors file into name -> Tensor on the selected (or named) backend and ``device``."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise CheckpointError(f"agrad.load: {path} is truncated ({len(data)} bytes): not a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise CheckpointError(f"agrad.load: {path} is truncated or corrupt: header of {n} bytes but the file has "
                              f"{len(data)} bytes")
    try:
        header = json.loads(data[8:8 + n].decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"agrad.load: {path} has a corrupt header ({exc})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"agrad.load: {path} has a corrupt header (not a JSON object)")
    body = data[8 + n:]
    out = {}
    end_max = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _DTYPES[info["dtype"]]
            shape = tuple(int(s) for s in info["shape"])
            begin, end = (int(v) for v in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"agrad.load: {path}: entry {name!r} is malformed: {info!r}") from None
        itemsize = _ITEMSIZE[dtype]
        count = 1
        for s in shape:
            count *= s
        if not 0 <= begin <= end <= len(body) or end - begin != count * itemsize:
            raise CheckpointError(f"agrad.load: {path} is truncated or corrupt: entry {name!r} ({dtype}, shape "
                                  f"{shape}) needs bytes [{begin}, {end}) of a {len(body)}-byte body")
        end_max = max(end_max, end)
        host = backend.array_from_bytes(body[begin:end], dtype, shape)
        out[name] = Tensor(backend.from_numpy(host, backend=backend_name, device=device))
    if end_max != len(body):
        raise CheckpointError(f"agrad.load: {path} is corrupt: {len(body) - end_max} unexpected trailing bytes")
    return out
