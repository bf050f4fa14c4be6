"""Sphinx configuration of agrad's API reference (built from the docstrings).

    python -m sphinx -W -n -b html docs/api docs/api/_build

``-W -n`` turn every warning, broken cross-references included, into an error; the
test suite runs this build (tests/test_docs.py).
"""

import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

project = "agrad"
author = "the agrad developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": False}
add_module_names = False
nitpicky = True
# Names in signatures that are not agrad's own objects: annotations of the standard
# library and of the backends, which this reference does not document.
nitpick_ignore_regex = [
    ("py:class", r"(typing\.)?(Any|Callable|Iterable|Iterator|Sequence|TypeAlias)"),
    ("py:class", r"(np|numpy|cupy|array_api_strict)\..*"),
    ("py:class", r"ArrayLike|ArrayNamespace|TreeDef|Plan|os\.PathLike"),
    ("py:class", r"agrad\.(tensor\.ArrayLike|tree\.TreeDef|tape\.Plan|backend\.base\.ArrayNamespace)"),
    ("py:obj", r".*"),
]
html_theme = "alabaster"
exclude_patterns = ["_build"]
