"""``Module`` and ``Parameter``: parameter traversal, state dicts, devices."""

from __future__ import annotations

from typing import Any, Callable, Iterator

from .. import backend, dtypes
from ..compile import hooks
from ..optim.optimizers import zero_grad
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
    A list or tuple of Modules becomes a :class:`ModuleList`, a dict of them a
    :class:`ModuleDict`, and a list of Parameters a :class:`ParameterList`, so nothing
    held in a container is silently missed; a container mixing them with other values
    is an error.
    """

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        value = _registrable(type(self).__name__, name, value)
        if name in self.__dict__ and name != "training":
            hooks.attribute_replaced()  # compiled functions that baked the old value retrace
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
        out = []
        for pre, mod in self.named_modules(prefix.rstrip(".")):
            pre = pre + "." if pre else ""
            for name, p in mod._parameters.items():
                if id(p) not in seen:
                    seen.add(id(p))
                    out.append((pre + name, p))
        return iter(out)

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        """(dotted name, module) pairs for this module ('' or ``prefix``) and every
        submodule, each once, depth first in assignment order."""
        seen: set[int] = set()
        out = []
        stack = [(prefix, self)]
        while stack:  # iterative: deep Sequentials must not hit the recursion limit
            name, mod = stack.pop()
            if id(mod) in seen:
                continue
            seen.add(id(mod))
            out.append((name, mod))
            for child_name, child in reversed(list(mod._modules.items())):
                stack.append((f"{name}.{child_name}" if name else child_name, child))
        return iter(out)

    def modules(self) -> list["Module"]:
        return [m for _, m in self.named_modules()]

    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        return iter(list(self._modules.items()))

    def children(self) -> list["Module"]:
        return list(self._modules.values())

    def apply(self, fn: Callable[["Module"], Any]) -> "Module":
        """Call ``fn`` on every submodule (children first) and on this module; return self.
        ``model.apply(init_fn)`` is how a custom initialisation reaches every layer."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    def train(self, mode: bool = True) -> "Module":
        """Set training mode (``training=True``) here and in every submodule; return self.
        Layers such as Dropout behave differently in training and evaluation."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> "Module":
        """Evaluation mode: ``train(False)``."""
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every parameter's gradient (``set_to_none``, the default), or fill it with zeros."""
        zero_grad(self.parameters(), set_to_none)

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Tensor]:
        """Name -> Tensor (sharing data with the parameters; save() copies to host)."""
        return {name: Tensor(p.data) for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict[str, Any], strict: bool = True, cast_dtype: bool = False) -> None:
        """Copy ``state`` (name -> Tensor or array, any backend) into the parameters, onto
        each parameter's own backend and device.

        Missing or unexpected names (when ``strict``), mismatched shapes and (unless
        ``cast_dtype``) mismatched dtypes are a ValueError that lists every offending
        entry; nothing is loaded then.
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
            elif not cast_dtype and dtypes.as_dtype(value.dtype) != own[name].dtype:
                problems.append(f"{name}: checkpoint dtype {dtypes.as_dtype(value.dtype).name} != parameter dtype "
                                f"{own[name].dtype.name} (pass cast_dtype=True to convert)")
        if problems:
            raise ValueError(f"{type(self).__name__}.load_state_dict: " + "; ".join(problems))
        for name in sorted(set(own) & set(state)):
            p = own[name]
            value = state[name]._data if isinstance(state[name], Tensor) else state[name]
            p._replace_array(_onto(value, p._data), "load_state_dict")
            p.grad = None

    def to(self, device: Any) -> "Module":
        """Move every parameter to ``device`` (in place) and return self."""
        for p in self.parameters():
            p._replace_array(backend.to_device(p._data, device), "Module.to()")
            p.grad = None
        return self

    def astype(self, dtype: Any) -> "Module":
        for p in self.parameters():
            xp = backend.namespace_of((p._data,), "astype")
            p._replace_array(xp.astype(p._data, backend.resolve_dtype(xp, dtype)), "Module.astype()")
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
    value, copied = backend.beside(value, like, "load_state_dict")
    if value.dtype != like.dtype:
        value, copied = xp.astype(value, like.dtype), True
    if not copied:
        # Never the caller's array: a state dict loaded into two models (or taken from a
        # model that keeps training) must not tie their parameters together.
        value = xp.asarray(value, copy=True)
    return value


class ModuleList(Module):
    """A list of Modules, registered as this module's children '0', '1', ..."""

    def __init__(self, modules: Any = ()) -> None:
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module: Module) -> "ModuleList":
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList: expected a Module, got {type(module).__name__}")
        setattr(self, str(len(self._modules)), module)
        return self

    def extend(self, modules: Any) -> "ModuleList":
        for m in modules:
            self.append(m)
        return self

    def __getitem__(self, i: int) -> Module:
        return list(self._modules.values())[i]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(list(self._modules.values()))


class ModuleDict(Module):
    """A dict of Modules (string keys), registered as this module's children."""

    def __init__(self, modules: Any = None) -> None:
        super().__init__()
        for k, m in (dict(modules) if modules else {}).items():
            self[k] = m

    def __setitem__(self, key: str, module: Module) -> None:
        if not isinstance(key, str) or not isinstance(module, Module):
            raise TypeError(f"ModuleDict: expected str -> Module, got {key!r} -> {type(module).__name__}")
        setattr(self, key, module)

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._modules))

    def keys(self) -> list[str]:
        return list(self._modules)

    def values(self) -> list[Module]:
        return list(self._modules.values())

    def items(self) -> list[tuple[str, Module]]:
        return list(self._modules.items())


class ParameterList(Module):
    """A list of Parameters, registered as '0', '1', ..."""

    def __init__(self, parameters: Any = ()) -> None:
        super().__init__()
        for p in parameters:
            self.append(p)

    def append(self, p: Any) -> "ParameterList":
        setattr(self, str(len(self._parameters)), p if isinstance(p, Parameter) else Parameter(p))
        return self

    def __getitem__(self, i: int) -> Parameter:
        return list(self._parameters.values())[i]

    def __len__(self) -> int:
        return len(self._parameters)

    def __iter__(self) -> Iterator[Parameter]:
        return iter(list(self._parameters.values()))


def _registrable(owner: str, name: str, value: Any) -> Any:
    """Containers of Modules / Parameters become registered containers, so that no
    parameter is silently left out of ``parameters()`` (and of every optimizer)."""
    if isinstance(value, (list, tuple)) and value:
        kinds = {isinstance(v, Module) for v in value} | {isinstance(v, Parameter) for v in value}
        if all(isinstance(v, Module) for v in value):
            return ModuleList(value)
        if all(isinstance(v, Parameter) for v in value):
            return ParameterList(value)
        if True in kinds:
            raise TypeError(f"{owner}.{name}: a list mixing Modules or Parameters with other values would hide "
                            f"them from parameters(); use ModuleList / ParameterList, or keep them apart")
    if isinstance(value, dict) and value:
        if all(isinstance(v, Module) for v in value.values()) and all(isinstance(k, str) for k in value):
            return ModuleDict(value)
        if any(isinstance(v, (Module, Parameter)) for v in value.values()):
            raise TypeError(f"{owner}.{name}: a dict holding Modules or Parameters beside other values would hide "
                            f"them from parameters(); use ModuleDict")
    return value
