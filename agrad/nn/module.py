"""``Module`` and ``Parameter``: parameter traversal, state dicts, devices."""

from __future__ import annotations

from typing import Any, Iterator

from .. import backend
from ..tensor import Tensor


class Parameter(Tensor):
    """A leaf Tensor that a Module owns and optimizers update (requires_grad=True).

    It holds a copy of ``data``: training updates it in place, and must never change the
    array (or Tensor) it was made from.
    """

    __slots__ = ()

    def __init__(self, data: Any, requires_grad: bool = True) -> None:
        raw = data._data if isinstance(data, Tensor) else data
        if hasattr(raw, "shape") and backend.namespace_of((raw,), "Parameter") is not None:
            xp = backend.namespace_of((raw,), "Parameter")
            raw = xp.asarray(raw, copy=True)
        super().__init__(raw, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return f"Parameter({self.data!r})"


class Module:
    """Base class of layers and networks.

    Assigning a Parameter or a Module as an attribute registers it, so that
    ``parameters()`` / ``named_parameters()`` find it recursively, in assignment order.
    """

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})

    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # ----------------------------------------------------------------- traversal
    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """(dotted name, parameter) pairs, each parameter once, depth first."""
        seen: set[int] = set()
        stack = [(prefix, self)]
        out = []
        while stack:  # iterative: deep Sequentials must not hit the recursion limit
            pre, mod = stack.pop()
            for name, p in mod._parameters.items():
                if id(p) not in seen:
                    seen.add(id(p))
                    out.append((pre + name, p))
            for name, child in reversed(list(mod._modules.items())):
                stack.append((pre + name + ".", child))
        return iter(out)

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Tensor]:
        """Name -> Tensor (sharing data with the parameters; save() copies to host)."""
        return {name: Tensor(p.data) for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        """Copy ``state`` into the parameters, onto each parameter's own device.

        Missing or unexpected names (when ``strict``) and mismatched shapes are
        errors that list the offending entries.
        """
        own = dict(self.named_parameters())
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        problems = []
        if strict and missing:
            problems.append(f"missing keys: {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {unexpected}")
        for name in sorted(set(own) & set(state)):
            value = state[name]
            shape = tuple(getattr(value, "shape", ()))
            if shape != own[name].shape:
                problems.append(f"{name}: checkpoint shape {shape} != parameter shape {own[name].shape}")
        if problems:
            raise KeyError(f"{type(self).__name__}.load_state_dict: " + "; ".join(problems))
        for name in sorted(set(own) & set(state)):
            p = own[name]
            value = state[name].data if isinstance(state[name], Tensor) else state[name]
            p._data = _onto(value, p._data)
            p._version += 1
            p.grad = None

    def to(self, device: Any) -> "Module":
        """Move every parameter to ``device`` (in place) and return self."""
        for p in self.parameters():
            p._data = backend.to_device(p._data, device)
            p._version += 1
            p.grad = None
        return self

    def astype(self, dtype: Any) -> "Module":
        for p in self.parameters():
            xp = backend.namespace_of((p._data,), "astype")
            p._data = xp.astype(p._data, backend.resolve_dtype(xp, dtype))
            p._version += 1
            p.grad = None
        return self

    def __repr__(self) -> str:
        children = "".join(f"\n  ({k}): " + repr(m).replace("\n", "\n  ") for k, m in self._modules.items())
        return f"{type(self).__name__}({self.extra_repr()}{children}{chr(10) if children else ''})"

    def extra_repr(self) -> str:
        return ""


def _onto(value: Any, like: Any) -> Any:
    """``value`` with ``like``'s backend, device and dtype (loading is an explicit copy)."""
    xp = backend.namespace_of((like,), "load_state_dict")
    src = backend.namespace_of((value,), "load_state_dict")
    if src is None or src.name != xp.name:
        value = backend.from_numpy(backend.to_numpy(value), backend=xp.name, device=like.device)
    elif xp.multi_device and value.device != like.device:
        value = backend.to_device(value, like.device)
    if value.dtype != like.dtype:
        value = xp.astype(value, like.dtype)
    return value
