"""Nested containers ("pytrees") of arrays: lists, tuples (named too) and dicts, as in JAX.

Transforms flatten their arguments to a list of leaves, differentiate with respect
to the leaves, and rebuild the same structure for the results. The same functions
serve JAX-style code: ``tree_map(lambda p, g: p - 0.1 * g, params, grads)``.
``None`` is a leaf (unlike in JAX); dict leaves come in sorted key order.
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

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, TreeDef) and self.kind == other.kind and self.meta == other.meta
                and self.children == other.children)

    def __hash__(self) -> int:
        return hash((self.kind, self.children))

    @property
    def num_leaves(self) -> int:
        return 1 if self.kind == "leaf" else sum(c.num_leaves for c in self.children)


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


def tree_map(fn: Callable, tree: Any, *rest: Any) -> Any:
    """``fn`` applied leaf by leaf: ``tree_map(f, a, b)`` calls ``f(a_leaf, b_leaf)`` for
    trees of one structure, and returns a tree of that structure."""
    leaves, d = flatten(tree)
    others = []
    for k, r in enumerate(rest, start=1):
        r_leaves, r_def = flatten(r)
        if r_def != d:
            raise ValueError(f"agrad.tree.tree_map: tree {k} has structure {r_def}, but the first has {d}")
        others.append(r_leaves)
    return unflatten(d, [fn(*xs) for xs in zip(leaves, *others)])


def tree_leaves(tree: Any) -> list:
    """The leaves in order."""
    return flatten(tree)[0]


def tree_structure(tree: Any) -> TreeDef:
    return flatten(tree)[1]


def tree_flatten(tree: Any) -> tuple[list, TreeDef]:
    """``(leaves, treedef)``; ``tree_unflatten(treedef, leaves)`` rebuilds the tree."""
    return flatten(tree)


def tree_unflatten(treedef: TreeDef, leaves: list) -> Any:
    leaves = list(leaves)
    if len(leaves) != treedef.num_leaves:
        raise ValueError(f"agrad.tree.tree_unflatten: {len(leaves)} leaves for a structure of {treedef.num_leaves}")
    return unflatten(treedef, leaves)


__all__ = ["TreeDef", "tree_flatten", "tree_leaves", "tree_map", "tree_structure", "tree_unflatten"]
