"""Pytrees: nested ``dict``/``list``/``tuple``/namedtuple containers of leaves.

``flatten(tree) -> (leaves, treedef)`` and ``unflatten(treedef, leaves)`` are exact inverses.
``None`` is a leaf (so a gradient tree can hold ``None`` for non-differentiable leaves). Dicts are
flattened in sorted key order when the keys are sortable, so the order is deterministic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .placement import DeviceArray
from .tracing import Tracer

__all__ = ["flatten", "unflatten", "tree_map", "like_leaf", "is_float_leaf", "TreeDef"]


class TreeDef:
    __slots__ = ("kind", "meta", "children")

    def __init__(self, kind: str, meta: Any, children: tuple):
        self.kind = kind  # "leaf", "tuple", "list", "dict", "namedtuple"
        self.meta = meta
        self.children = children

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, TreeDef)
            and self.kind == other.kind
            and self.meta == other.meta
            and self.children == other.children
        )

    def __hash__(self) -> int:
        return hash((self.kind, self.meta, self.children))

    def __repr__(self) -> str:
        if self.kind == "leaf":
            return "*"
        return f"{self.kind}{self.meta if self.kind != 'tuple' else ''}{list(self.children)}"


_LEAF = TreeDef("leaf", None, ())


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def _sorted_keys(d: dict) -> list:
    try:
        return sorted(d)
    except TypeError:
        return list(d)


def flatten(tree: Any, leaves: list | None = None) -> tuple[list, TreeDef]:
    out = [] if leaves is None else leaves
    t = type(tree)
    if t is tuple or t is list:
        children = tuple(flatten(c, out)[1] for c in tree)
        return out, TreeDef("tuple" if t is tuple else "list", None, children)
    if t is dict or isinstance(tree, dict):
        keys = _sorted_keys(tree)
        children = tuple(flatten(tree[k], out)[1] for k in keys)
        return out, TreeDef("dict", (t, tuple(keys)), children)
    if _is_namedtuple(tree):
        children = tuple(flatten(c, out)[1] for c in tree)
        return out, TreeDef("namedtuple", t, children)
    out.append(tree)
    return out, _LEAF


def unflatten(treedef: TreeDef, leaves: list) -> Any:
    it = iter(leaves)
    result = _build(treedef, it)
    return result


def _build(td: TreeDef, it: Any) -> Any:
    if td.kind == "leaf":
        return next(it)
    kids = [_build(c, it) for c in td.children]
    if td.kind == "tuple":
        return tuple(kids)
    if td.kind == "list":
        return kids
    if td.kind == "dict":
        cls, keys = td.meta
        d = dict(zip(keys, kids))
        return d if cls is dict else cls(d)
    return td.meta(*kids)  # namedtuple


def tree_map(fn: Callable[..., Any], tree: Any, *rest: Any) -> Any:
    leaves, td = flatten(tree)
    others = [flatten(r)[0] for r in rest]
    return unflatten(td, [fn(*xs) for xs in zip(leaves, *others)])


def like_leaf(value: Any, leaf: Any) -> Any:
    """``value`` in the Python type and dtype of ``leaf`` (a gradient or an update for that leaf).

    A ``float`` leaf gets a ``float``, an array leaf an array of its dtype, a NumPy scalar leaf a scalar
    of its type. Traced values (of either) pass through unchanged: their type is the tracer's.
    """
    if type(value) is Tracer or type(leaf) is Tracer:
        if type(leaf) is Tracer:  # jit's trace remembers the type an un-traced call would return
            note = getattr(leaf._trace, "note_like_leaf", None)
            if note is not None:
                note(value, leaf)
        return value
    if type(leaf) is float:
        return float(value)
    if type(leaf) is DeviceArray:  # a device leaf's gradient lives on the device too
        value = value if type(value) is DeviceArray else leaf.device_put(value)
        return value if value.dtype == leaf.dtype else value.astype(leaf.dtype)
    if isinstance(leaf, np.ndarray):
        value = np.asarray(value)
        return value if value.dtype == leaf.dtype else value.astype(leaf.dtype)
    if isinstance(leaf, np.generic):
        return leaf.dtype.type(value)
    return value


def is_float_leaf(x: Any) -> bool:
    """A differentiable leaf: a Python ``float``, or a float NumPy array, scalar, device array or traced value."""
    if type(x) is float:
        return True
    dt = getattr(x, "dtype", None)
    return dt is not None and dt.kind == "f" and isinstance(x, (np.ndarray, np.generic, Tracer, DeviceArray))
