"""pytest plugin: run array-api-extra's own test suite with agrad as more backends.

array-api-extra (xpx) parametrises its tests over the members of its ``Backend`` enum
(``array_api_extra._lib._backends``); its conftest builds the ``library`` and ``xp``
fixtures from it, and its tests import it at collection. This plugin is loaded with
``-p`` before that conftest is imported, and swaps the enum for a copy with agrad's
members, so nothing of xpx is edited. The namespace is ``agrad`` for each of them (the
conftest imports ``Backend.modname``, "agrad", and takes ``array_namespace(xp.empty(0))``,
which is agrad, since ``Tensor.__array_namespace__`` returns the module); they differ in
what agrad creates during the test (see ``AGRAD_MEMBERS``):

- ``agrad``: as users get it, NumPy arrays, float32 the default floating dtype;
- ``agrad_float64``: NumPy arrays, float64 the default, as NumPy's and array-api-strict's
  (xpx's expected values are mostly written for float64 defaults);
- ``agrad_strict``: array-api-strict arrays (agrad's own use of the standard), float32.

Options: ``--xpx-backends agrad,array_api_strict`` runs only those backends' tests
(test ids of the ``library`` parameter; the default is all); ``--xpx-outcomes FILE``
writes ``{backend id: {test key: outcome}}`` as JSON, where the key is the test id with
the backend's id replaced by ``{backend}`` (so one test on two backends has one key) and
the outcome is "passed", "failed", "error", "skipped", "xfailed" or "xpassed". By hand::

    python -m pytest -p tests.xpx_agrad_plugin --pyargs array_api_extra.tests.main \\
        --xpx-backends agrad,array_api_strict -W error -o xfail_strict=true

(``-W error`` and ``xfail_strict`` are what xpx's own pyproject sets.)
"""

from __future__ import annotations

import enum
import json
from pathlib import Path

import array_api_extra.tests
import pytest
from array_api_extra._lib import _backends

_ORIGINAL = _backends.Backend
# member name -> (enum value, agrad backend, default floating dtype) during the test
AGRAD_MEMBERS = {
    "AGRAD": ("agrad", "numpy", "float32"),
    "AGRAD_FLOAT64": ("agrad:float64", "numpy", "float64"),
    "AGRAD_STRICT": ("agrad:strict", "array_api_strict", "float32"),
}


def _extended(old: type[enum.Enum]) -> type[enum.Enum]:
    """A copy of xpx's ``Backend`` enum with agrad's members (an Enum with members cannot be
    subclassed, so the class is rebuilt and its methods copied over)."""
    members = [(m.name, m.value) for m in old] + [(name, spec[0]) for name, spec in AGRAD_MEMBERS.items()]
    new = enum.Enum(old.__name__, members, module=old.__module__, qualname=old.__qualname__)
    for name in ("modname", "like", "pytest_param"):
        setattr(new, name, vars(old)[name])
    new.__doc__ = old.__doc__
    return new


if "AGRAD" not in _ORIGINAL.__members__:
    _backends.Backend = _extended(_ORIGINAL)
Backend = _backends.Backend


def _backend_id(b: enum.Enum) -> str:
    return b.pytest_param().id


def pytest_addoption(parser):
    group = parser.getgroup("xpx-agrad")
    group.addoption("--xpx-backends", default=None,
                    help="comma-separated backend ids of array-api-extra's tests to run (default: all)")
    group.addoption("--xpx-outcomes", default=None, help="write each test's outcome per backend to this JSON file")


def pytest_configure(config):
    # The markers xpx's pyproject registers (it is not installed with the wheel).
    config.addinivalue_line("markers", "skip_xp_backend(library, /, *, reason=None): skip for a backend")
    config.addinivalue_line("markers", "xfail_xp_backend(library, /, *, reason=None, strict=None): xfail for a backend")
    config.addinivalue_line("markers", "thread_unsafe: not safe to run in parallel threads")
    path = config.getoption("--xpx-outcomes")
    if path:
        config.pluginmanager.register(_Recorder(path), "xpx-agrad-recorder")


def _library(item) -> enum.Enum | None:
    callspec = getattr(item, "callspec", None)
    lib = callspec.params.get("library") if callspec is not None else None
    return lib if isinstance(lib, Backend) else None


_SUITE = Path(array_api_extra.tests.__file__).parent


def _key(item, lib: enum.Enum) -> str:
    """The test id, its file relative to xpx's tests package (wherever pytest's rootdir is),
    with the backend's id replaced by ``{backend}``: the same for a test on any backend."""
    parts = item.callspec.id.split("-")
    bid = _backend_id(lib)
    parts = ["{backend}" if p == bid else p for p in parts]
    path = Path(item.path).relative_to(_SUITE).as_posix()
    name = item.nodeid.split("::", 1)[1].split("[", 1)[0]
    return f"{path}::{name}[{'-'.join(parts)}]"


def pytest_collection_modifyitems(config, items):
    chosen = config.getoption("--xpx-backends")
    if not chosen:
        return
    chosen = set(chosen.split(","))
    keep, drop = [], []
    for item in items:
        lib = _library(item)
        # Tests without a backend parameter are the same for every backend: not ours to compare.
        (keep if lib is not None and _backend_id(lib) in chosen else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(autouse=True)
def _agrad_setup(request):
    """On agrad's backends, select what agrad creates during the test: the array backend
    and the default floating dtype (a global setting, restored afterwards)."""
    lib = _library(request.node)
    if lib is None or lib.name not in AGRAD_MEMBERS:
        yield
        return
    import agrad

    _, backend, dtype = AGRAD_MEMBERS[lib.name]
    previous = agrad.get_default_dtype()
    agrad.set_default_dtype(dtype)
    try:
        with agrad.use_backend(backend):
            yield
    finally:
        agrad.set_default_dtype(previous)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef, request):
    """xpx's ``infinity`` fixture is the largest finite value of the backend's default
    floating dtype: float64's, except float32's for PyTorch, whose default is float32 (a
    test compares ``nan_to_num(inf)`` with ``asarray(infinity)``). agrad's default is
    float32 too, so its tests get float32's, as PyTorch's do. (A fixture of a plugin cannot
    override one of a conftest, hence this hook; pytest hands the test the cached value.)"""
    value = yield
    lib = _library(request.node)
    if fixturedef.argname == "infinity" and lib is not None and lib.name in AGRAD_MEMBERS:
        import agrad

        value = float(agrad.finfo(agrad.get_default_dtype()).max)
        fixturedef.cached_result = (value, *fixturedef.cached_result[1:])
    return value


class _Recorder:
    """Collects each compared test's outcome (one per test: its worst phase) and writes them out."""

    def __init__(self, path: str):
        self.path = path
        self.keys: dict[str, tuple[str, str]] = {}  # nodeid -> (backend id, key)
        self.outcomes: dict[str, dict[str, str]] = {}

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items):
        for item in items:
            lib = _library(item)
            if lib is not None:
                self.keys[item.nodeid] = (_backend_id(lib), _key(item, lib))

    def pytest_runtest_logreport(self, report):
        if report.nodeid not in self.keys or (report.when != "call" and report.passed):
            return
        bid, key = self.keys[report.nodeid]
        if hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.skipped else "xpassed"
        elif report.failed:
            outcome = "failed" if report.when == "call" else "error"  # (a strict XPASS fails)
        else:
            outcome = report.outcome
        backend = self.outcomes.setdefault(bid, {})
        if backend.get(key) in (None, "passed"):  # a teardown error after a passing call is no pass
            backend[key] = outcome

    def pytest_sessionfinish(self):
        with open(self.path, "w") as f:
            json.dump(self.outcomes, f, indent=1, sort_keys=True)
