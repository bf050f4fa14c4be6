"""The public API as users and their tools see it: real signatures, docstrings, errors
that name the op and the keyword, and types that mypy can check."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap

import pytest

import agrad


def _public_functions():
    for name in agrad.ops.__all__:
        obj = getattr(agrad, name)
        if callable(obj) and not isinstance(obj, type):
            yield name, obj


@pytest.mark.parametrize("name,fn", list(_public_functions()))
def test_every_public_op_has_a_real_signature_and_a_docstring(name, fn):
    sig = inspect.signature(fn)
    kinds = {p.kind for p in sig.parameters.values()}
    assert kinds and kinds != {inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD}, name
    assert fn.__doc__ and len(fn.__doc__.strip()) > 5, f"agrad.{name} has no docstring"


def test_a_wrong_keyword_names_the_op_and_the_keyword():
    with pytest.raises(TypeError, match=r"exp\(\) got an unexpected keyword argument 'axis'"):
        agrad.exp(agrad.tensor([1.0]), axis=0)
    with pytest.raises(TypeError, match=r"sum\(\) got an unexpected keyword argument 'dim'"):
        agrad.sum(agrad.tensor([1.0]), dim=0)


def test_the_package_is_typed_and_mypy_checks_user_code(tmp_path):
    pytest.importorskip("mypy")
    assert os.path.exists(os.path.join(os.path.dirname(agrad.__file__), "py.typed"))
    user = tmp_path / "user_code.py"
    user.write_text(textwrap.dedent("""
        import agrad
        x = agrad.tensor([1.0, 2.0], requires_grad=True)
        y: agrad.Tensor = agrad.sum(agrad.exp(x))
        y.backward()
        g = x.grad
        reveal_type(g)
        n: int = agrad.exp(x)  # a Tensor is not an int: mypy must say so
    """))
    root = os.path.dirname(os.path.dirname(os.path.abspath(agrad.__file__)))
    run = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "--follow-imports=silent",
                          "--ignore-missing-imports", str(user)], capture_output=True, text=True,
                         cwd=root, env={**os.environ, "MYPYPATH": root})
    out = run.stdout
    assert 'Revealed type is "Union[agrad.tensor.Tensor, None]"' in out or \
        'Revealed type is "agrad.tensor.Tensor | None"' in out, out
    assert 'Incompatible types in assignment (expression has type "Tensor", variable has type "int")' in out, out
    assert out.count("error:") == 1, out


def test_the_targeted_array_api_version_is_the_one_the_suite_runs_against():
    strict = pytest.importorskip("array_api_strict")
    assert agrad.__array_api_version__ == "2024.12"
    assert strict.__array_api_version__ == agrad.__array_api_version__  # pinned by conftest for every test
