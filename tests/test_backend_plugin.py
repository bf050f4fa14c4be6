"""A backend added from outside agrad (agrad.backend.register_backend): defined here, on
the Backend interface alone, it differentiates, checks gradients and trains like the
built-in ones, and leaves no trace once unregistered."""

from __future__ import annotations

import numpy as np
import pytest

import agrad
from agrad import backend as B
from agrad import nn, optim

array_api_strict = pytest.importorskip("array_api_strict")


class PluginBackend(B.Backend):
    """array-api-strict written as a third-party backend would write it: the interface's
    defaults (the standard's own ways) and what this library needs beyond them."""

    name = "plugin_strict"
    modules = ("array_api_strict",)
    multi_device = True
    narrow_setitem = True  # array-api-strict's __setitem__ takes only the standard's keys

    def build_namespace(self):
        return self.namespace_from(array_api_strict, type(array_api_strict.asarray(0.0)))

    def owns(self, x):
        return isinstance(x, type(array_api_strict.asarray(0.0)))

    def resolve_device(self, device):
        if isinstance(device, str):
            if device == "cpu":
                return array_api_strict.Device("CPU_DEVICE")
            if device == "device1":
                return array_api_strict.Device("device1")
            raise self.no_device(device)
        return device


@pytest.fixture
def plugin():
    be = B.register_backend(PluginBackend)
    try:
        with agrad.use_backend("plugin_strict"):
            yield be
    finally:
        B.unregister_backend("plugin_strict")


def test_a_registered_backend_is_selectable_and_creates_its_arrays(plugin):
    assert "plugin_strict" in agrad.available_backends() and agrad.get_backend() == "plugin_strict"
    x = agrad.tensor([1.0, 2.0, 3.0])
    xp = B.namespace_of((x._data,))
    assert xp.name == "plugin_strict" and xp.backend is plugin
    assert B.describe(x._data).startswith("a plugin_strict float32 array of shape (3,)")
    np.testing.assert_array_equal(B.to_numpy(x._data), [1.0, 2.0, 3.0])
    on_device1 = B.from_numpy(np.ones(2), backend="plugin_strict", device="device1")
    assert str(on_device1.device) == str(array_api_strict.Device("device1"))


def test_check_grad_on_a_registered_backend(plugin):
    rng = B.host_rng(0)
    x = agrad.astype(agrad.tensor(B.from_numpy(rng.standard_normal((3, 4)))), "float64")
    w = agrad.astype(agrad.tensor(B.from_numpy(rng.standard_normal((4, 2)))), "float64")

    def f(x, w):
        return agrad.sum(agrad.tanh(x @ w) * agrad.exp(-x[:, :2] ** 2))

    result = agrad.check_grad(f, x, w)
    assert result
    gx = agrad.grad(f)(x, w)
    assert B.namespace_of((gx._data,)).name == "plugin_strict"


def test_a_training_step_on_a_registered_backend(plugin):
    rng = B.host_rng(1)
    model = nn.Sequential(nn.Linear(4, 8), agrad.tanh, nn.Linear(8, 1))
    opt = optim.Adam(model.parameters(), lr=0.05)
    x = agrad.tensor(B.from_numpy(rng.standard_normal((16, 4)).astype(np.float32)))
    y = agrad.tensor(B.from_numpy(rng.standard_normal((16, 1)).astype(np.float32)))
    assert all(B.namespace_of((p._data,)).name == "plugin_strict" for p in model.parameters())
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = agrad.mean((model(x) - y) ** 2)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0]
    state = model.state_dict()  # a checkpoint loads back onto the NumPy backend
    with agrad.use_backend("numpy"):
        twin = nn.Sequential(nn.Linear(4, 8), agrad.tanh, nn.Linear(8, 1))
        twin.load_state_dict(state)
        assert B.namespace_of((twin[0].weight._data,)).name == "numpy"
    np.testing.assert_allclose(twin[0].weight.numpy(), model[0].weight.numpy())


def test_registering_and_unregistering():
    with pytest.raises(ValueError, match="registered already"):
        B.register_backend(B.get("numpy").__class__)
    with pytest.raises(TypeError, match="Backend subclass or instance"):
        B.register_backend(object())
    with pytest.raises(ValueError, match="built in"):
        B.unregister_backend("numpy")
    strict_array = agrad.zeros(2, device="device1")._data  # the built-in backend, before
    B.register_backend(PluginBackend())
    try:
        with agrad.use_backend("plugin_strict"):
            assert B.namespace_of((agrad.zeros(2)._data,)).name == "plugin_strict"
            with pytest.raises(agrad.BackendError, match="selected"):
                B.unregister_backend("plugin_strict")
    finally:
        B.unregister_backend("plugin_strict")
    assert "plugin_strict" not in agrad.available_backends()
    assert B.namespace_of((strict_array,)).name == "array_api_strict"  # its arrays given back
    with pytest.raises(agrad.BackendError, match="unknown backend 'plugin_strict'"):
        agrad.set_backend("plugin_strict")


def test_only_the_backend_package_imports_array_libraries_or_names_backends():
    """The layout the registry relies on: array libraries are imported in agrad/backend/
    only, and code elsewhere reads a backend's capabilities, never compares its name."""
    import ast
    import pathlib
    import re

    root = pathlib.Path(agrad.__file__).parent
    libraries = {"numpy", "cupy", "cupyx", "array_api_compat", "array_api_strict"}
    compared = re.compile(r"""(==|!=|\bin)\s*\(?\s*["'](numpy|cupy|array_api_strict)["']""")
    for path in root.rglob("*.py"):
        if path.parent.name == "backend":
            continue
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            assert not {n.split(".")[0] for n in names} & libraries, f"{path.name} imports {names}"
        assert not compared.search(source), f"{path.name} compares a backend's name"
