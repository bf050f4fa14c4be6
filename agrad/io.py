"""Checkpoints in the safetensors format, through the ``safetensors`` package: no
pickle, so loading never runs code.

What agrad adds: files are written atomically (a temporary file in the same folder,
fsync, then rename), so a crash never leaves a half-written checkpoint; a truncated or
corrupt file is a ``CheckpointError`` naming it; arrays come from any backend and go
back to the one asked for, bit for bit. ``save`` takes a flat dict of arrays (the
format every safetensors reader knows) or any pytree of arrays and Python numbers,
strings and None (a model, an optimizer, a scheduler and the epoch in one file); the
tree's shape travels in the file's metadata, under ``agrad.tree``.

Weight layout: ``nn.Linear`` stores ``weight`` as (in_features, out_features), so that
the forward pass is ``x @ W``; PyTorch stores (out_features, in_features). Use
:func:`to_torch_state_dict` / :func:`from_torch_state_dict` to exchange weights with
PyTorch: they transpose exactly the Linear weights, so a square layer cannot be loaded
the wrong way round unnoticed.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from . import backend
from .nn.layers import Linear
from .tensor import Tensor

__all__ = ["CheckpointError", "from_torch_state_dict", "load", "load_with_metadata", "save", "to_torch_state_dict"]

_TREE_KEY = "agrad.tree"


class CheckpointError(ValueError):
    """A checkpoint file is truncated, corrupt or not a safetensors file."""


def _safetensors():
    try:
        import safetensors.numpy as stn
        from safetensors import safe_open
    except ImportError:  # pragma: no cover - a dependency, but say what to do if it is gone
        raise ImportError("agrad.save / agrad.load need the safetensors package: pip install safetensors") from None
    return stn, safe_open


def _is_array(v: Any) -> bool:
    return isinstance(v, Tensor) or (hasattr(v, "shape") and hasattr(v, "dtype"))


def _encode(tree: Any, path: str, arrays: dict[str, Any]) -> Any:
    """The tree as JSON, arrays replaced by the names they are stored under."""
    if _is_array(tree):
        name = path or "value"
        arrays[name] = backend.to_numpy(tree._data if isinstance(tree, Tensor) else tree)
        return {"array": name}
    if isinstance(tree, dict):
        for k in tree:
            if not isinstance(k, str):
                raise TypeError(f"agrad.save: dict keys must be strings, got {k!r} at {path or 'the top'}")
        return {"dict": {k: _encode(v, f"{path}/{k}" if path else k, arrays) for k, v in tree.items()}}
    if isinstance(tree, (list, tuple)):
        kind = "list" if isinstance(tree, list) else "tuple"
        return {kind: [_encode(v, f"{path}/{i}" if path else str(i), arrays) for i, v in enumerate(tree)]}
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return {"value": tree}
    raise TypeError(f"agrad.save: cannot store a {type(tree).__name__} (at {path or 'the top'}); a checkpoint holds "
                    f"arrays, Tensors, numbers, strings, None and lists/tuples/dicts of them")


def _decode(node: dict, arrays: dict[str, Tensor]) -> Any:
    if "array" in node:
        return arrays[node["array"]]
    if "dict" in node:
        return {k: _decode(v, arrays) for k, v in node["dict"].items()}
    if "list" in node:
        return [_decode(v, arrays) for v in node["list"]]
    if "tuple" in node:
        return tuple(_decode(v, arrays) for v in node["tuple"])
    return node["value"]


def save(state: Any, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Write ``state`` to ``path`` atomically.

    ``state`` is a dict name -> Tensor/array (any backend), stored as plain safetensors,
    or any pytree of them with numbers, strings and None (stored with its structure).
    ``metadata`` (str -> str) is kept in the file; :func:`load_with_metadata` returns it.
    """
    stn, _ = _safetensors()
    if isinstance(state, dict) and not state:
        raise ValueError("agrad.save: nothing to save (an empty dict)")
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    if _TREE_KEY in meta:
        raise ValueError(f"agrad.save: the metadata key {_TREE_KEY!r} is agrad's own")
    flat = isinstance(state, dict) and all(isinstance(k, str) and _is_array(v) for k, v in state.items())
    arrays: dict[str, Any] = {}
    if flat:
        arrays = {k: backend.to_numpy(v._data if isinstance(v, Tensor) else v) for k, v in state.items()}
    else:
        meta[_TREE_KEY] = json.dumps(_encode(state, "", arrays))
    try:
        blob = stn.save(arrays, metadata=meta or None)
    except Exception as exc:  # an unsupported dtype, say
        raise TypeError(f"agrad.save: {exc}") from None
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_with_metadata(path: str | os.PathLike, device: Any = None,
                       backend_name: str | None = None) -> tuple[Any, dict[str, str]]:
    """``(state, metadata)`` from a file written by :func:`save` (or any safetensors file):
    Tensors on the selected (or named) backend and ``device``, in the structure saved."""
    _, safe_open = _safetensors()
    path = os.fspath(path)
    size = os.path.getsize(path)
    if size < 8:
        raise CheckpointError(f"agrad.load: {path} is truncated ({size} bytes): not a safetensors file")
    try:
        with safe_open(path, framework="numpy") as f:
            meta = dict(f.metadata() or {})
            host = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors' own error types vary by version
        text = str(exc)
        kind = "truncated or corrupt" if "header" in text.lower() or "incomplete" in text.lower() else "corrupt"
        raise CheckpointError(f"agrad.load: {path} is {kind}: {text}") from None
    tensors = {k: Tensor(backend.from_numpy(a.copy(), backend=backend_name, device=device)) for k, a in host.items()}
    tree = meta.pop(_TREE_KEY, None)
    if tree is None:
        return tensors, meta
    try:
        return _decode(json.loads(tree), tensors), meta
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"agrad.load: {path} has a corrupt {_TREE_KEY} record ({exc})") from None


def load(path: str | os.PathLike, device: Any = None, backend_name: str | None = None) -> Any:
    """The state saved in ``path`` (see :func:`load_with_metadata` for the metadata too)."""
    return load_with_metadata(path, device=device, backend_name=backend_name)[0]


def _linear_weight_names(module: Any) -> set[str]:
    return {f"{name}.weight" if name else "weight" for name, m in module.named_modules() if isinstance(m, Linear)}


def to_torch_state_dict(module: Any) -> dict[str, Any]:
    """``module``'s state as PyTorch lays it out: host NumPy arrays, each Linear weight
    transposed to (out_features, in_features). ``torch_model.load_state_dict({k:
    torch.from_numpy(v) for k, v in ...})`` then loads it."""
    linear = _linear_weight_names(module)
    out = {}
    for name, p in module.named_parameters():
        host = backend.to_numpy(p._data)
        out[name] = host.T.copy() if name in linear else host
    return out


def from_torch_state_dict(module: Any, torch_state: dict[str, Any]) -> dict[str, Any]:
    """A PyTorch state dict (tensors or arrays) as ``module.load_state_dict`` wants it:
    each Linear weight transposed back to (in_features, out_features)."""
    linear = _linear_weight_names(module)
    out = {}
    for name, v in torch_state.items():
        host = v.detach().cpu().numpy() if hasattr(v, "detach") else backend.to_numpy(v)
        out[name] = host.T.copy() if name in linear else host
    return out
