"""Nested containers ("pytrees") of arrays: lists, tuples and dicts, as in JAX.

Transforms flatten their arguments to a list of leaves, differentiate with respect
to the leaves, and rebuild the same structure for the results.
"""

from __future__ import annotations

from typing import Any, Callable


class TreeDef:
    """The structure of a pytree with its leaves taken out."""

    __slots__ = ("kind", "meta", "children")

    def __init__(self, kind: str, meta: Any = None, children: tuple = ()) -> None:
        self.kind, self.meta, self.children = kind, meta, children

    def __repr__(self) -> str:
        return f"TreeDef({self.kind}, {self.meta!r}, {self.children!r})"


_LEAF = TreeDef("leaf")


def flatten(tree: Any) -> tuple[list, TreeDef]:
    """Leaves in a fixed order (dicts by sorted key) and the structure to rebuild them."""
    leaves: list = []
    return leaves, _flatten(tree, leaves)


def _flatten(tree: Any, leaves: list) -> TreeDef:
    if isinstance(tree, dict):
        keys = sorted(tree)
        return TreeDef("dict", (type(tree), tuple(keys)), tuple(_flatten(tree[k], leaves) for k in keys))
    if isinstance(tree, (list, tuple)):
        meta = type(tree) if not hasattr(tree, "_fields") else type(tree)  # namedtuples keep their type
        return TreeDef("seq", meta, tuple(_flatten(c, leaves) for c in tree))
    leaves.append(tree)
    return _LEAF


def unflatten(treedef: TreeDef, leaves: list) -> Any:
    it = iter(leaves)
    out = _unflatten(treedef, it)
    return out


def _unflatten(d: TreeDef, it: Any) -> Any:
    if d.kind == "leaf":
        return next(it)
    if d.kind == "dict":
        cls, keys = d.meta
        return cls(zip(keys, (_unflatten(c, it) for c in d.children)))
    items = [_unflatten(c, it) for c in d.children]
    cls = d.meta
    if hasattr(cls, "_fields"):
        return cls(*items)
    return cls(items)


def tree_map(fn: Callable, tree: Any) -> Any:
    leaves, d = flatten(tree)
    return unflatten(d, [fn(x) for x in leaves])
