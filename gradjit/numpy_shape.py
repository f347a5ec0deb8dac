"""Array manipulation on tracers: composites of reshape, transpose, broadcast, getitem, concatenate.

Every function here registers with ``numpy_api.implements`` and is built only from primitives
(``getitem_p`` with a static ``tree`` and index arrays, ``index_set_p``, ``select_p``, ``argsort_p``,
``concatenate``...) and other composites, so its gradient comes from theirs and it is
differentiable to any order.

Invariants
----------
- Forward values equal NumPy's exactly: every function moves or selects elements (gathers, slices,
  concatenations, selects), it never recomputes them, except ``diff``/``average``/``trace`` and the
  ``pad`` modes that compute (odd reflection, ``mean``), which do NumPy's arithmetic in NumPy's order.
- Everything that decides a shape (axes, repeats, pad widths, split points, shifts) is made concrete
  here; an integer tracer in such a place is converted with ``int()``/``tolist()``, which records a
  guard. Index maps are computed on concrete integers with NumPy (e.g. ``np.pad(np.arange(n), ...)``)
  and become constant index arrays of a ``getitem`` equation.
- Arguments that cannot be honoured raise ``unsupported(...)``; none is silently ignored.
- Arguments that are not tracers are accepted (``np.concatenate([x, np.ones(3)])``): primitives
  just compute on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .numpy_api import (
    REDUCTIONS,
    _check_no_out,
    astype,
    broadcast_to,
    concatenate,
    dtype_of,
    implements,
    mean,
    ndim_of,
    reshape,
    shape_of,
    transpose,
)
from .placement import DeviceArray, put, zeros
from .primitives import ARRAY, P, getitem_p, index_set_p, select_p
from .tracing import Tracer

_NOVALUE = np._NoValue  # NumPy's own "argument not given" sentinel, so defaults match its signatures


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def _arr(x: Any) -> Any:
    """A tracer as is; anything else as a NumPy array."""
    return x if type(x) is Tracer else np.asarray(x)


def _concrete(x: Any) -> Any:
    """A concrete NumPy value for a shape-deciding argument (integer tracers are guarded)."""
    if type(x) is Tracer:
        return np.asarray(x.tolist())
    if isinstance(x, (list, tuple)):
        return np.asarray([_concrete(v) for v in x]) if any(type(v) is Tracer for v in x) else np.asarray(x)
    return np.asarray(x)


def _int(x: Any) -> int:
    return int(x)


def _axis(axis: Any, nd: int) -> int:
    """One axis, normalized to ``0 <= axis < nd``; ``AxisError`` when out of range."""
    a = _int(axis)
    if not -nd <= a < nd:
        raise np.exceptions.AxisError(a, nd)
    return a % nd


def _axes(axis: Any, nd: int, allow_duplicate: bool = False) -> tuple[int, ...]:
    """Axes in the order given (not sorted), normalized; duplicates raise like NumPy's."""
    axes = (axis,) if isinstance(axis, (int, np.integer)) or type(axis) is Tracer else tuple(axis)
    out = tuple(_axis(a, nd) for a in axes)
    if not allow_duplicate and len(set(out)) != len(out):
        raise ValueError("repeated axis")
    return out


def _along(ax: int, item: Any) -> tuple:
    """An index tree selecting ``item`` along axis ``ax`` and everything along the others."""
    return (slice(None),) * ax + (item,)


def _slice(a: Any, ax: int, start: Any = None, stop: Any = None, step: Any = None) -> Any:
    return getitem_p(a, tree=_along(ax, slice(start, stop, step)))


def _gather(a: Any, idx: Any, ax: int) -> Any:
    """``a`` indexed by the integer array ``idx`` along axis ``ax`` (``np.take`` semantics)."""
    return getitem_p(a, idx, tree=_along(ax, ARRAY))


def _int_index(indices: Any, op: str) -> Any:
    """An integer index array (tracer or NumPy); empty sequences become ``intp`` as in NumPy."""
    if type(indices) is Tracer or isinstance(indices, DeviceArray):
        if indices.dtype.kind not in "iu":
            raise IndexError(f"{op}: indices must be integers, not {indices.dtype}")
        return indices
    idx = np.asarray(indices)
    if idx.size == 0 and idx.dtype.kind not in "iu":
        idx = idx.astype(np.intp)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"{op}: cannot use indices of dtype {idx.dtype}; they must be integers")
    return idx


# ---------------------------------------------------------------------------------------------
# Axes
# ---------------------------------------------------------------------------------------------
@implements(np.swapaxes)
def swapaxes(a: Any, axis1: int, axis2: int) -> Any:
    nd = ndim_of(a)
    perm = list(range(nd))
    i, j = _axis(axis1, nd), _axis(axis2, nd)
    perm[i], perm[j] = perm[j], perm[i]
    return transpose(a, perm)


@implements(np.moveaxis)
def moveaxis(a: Any, source: Any, destination: Any) -> Any:
    nd = ndim_of(a)
    src, dst = _axes(source, nd), _axes(destination, nd)
    if len(src) != len(dst):
        raise ValueError("`source` and `destination` arguments must have the same number of elements")
    order = [n for n in range(nd) if n not in src]
    for d, s in sorted(zip(dst, src, strict=True)):
        order.insert(d, s)
    return transpose(a, order)


@implements(np.ravel)
def ravel(a: Any, order: str = "C") -> Any:
    if order == "F":
        return reshape(transpose(a), (-1,))
    return reshape(a, (-1,), order)


@implements(np.squeeze)
def squeeze(a: Any, axis: Any = None) -> Any:
    s = shape_of(a)
    axes = tuple(i for i, n in enumerate(s) if n == 1) if axis is None else _axes(axis, len(s))
    for i in axes:
        if s[i] != 1:
            raise ValueError("cannot select an axis to squeeze out which has size not equal to one")
    return reshape(a, tuple(n for i, n in enumerate(s) if i not in axes))


@implements(np.expand_dims)
def expand_dims(a: Any, axis: Any) -> Any:
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    nd = ndim_of(a) + len(axes)
    axes = _axes(axes, nd)
    it = iter(shape_of(a))
    return reshape(a, tuple(1 if i in axes else next(it) for i in range(nd)))


def _atleast(a: Any, nd: int) -> Any:
    a = _arr(a)
    s = shape_of(a)
    if len(s) >= nd:
        return a
    if nd == 3 and len(s) == 1:
        return reshape(a, (1,) + s + (1,))
    if nd == 3 and len(s) == 2:
        return reshape(a, s + (1,))
    return reshape(a, (1,) * (nd - len(s)) + s)


def _atleast_nd(nd: int) -> Any:
    def atleast(*arys: Any) -> Any:
        res = tuple(_atleast(a, nd) for a in arys)
        return res[0] if len(res) == 1 else res

    atleast.__name__ = f"atleast_{nd}d"
    return atleast


atleast_1d = implements(np.atleast_1d)(_atleast_nd(1))
atleast_2d = implements(np.atleast_2d)(_atleast_nd(2))
atleast_3d = implements(np.atleast_3d)(_atleast_nd(3))


@implements(np.broadcast_arrays)
def broadcast_arrays(*args: Any, subok: bool = False) -> tuple:
    args = [_arr(a) for a in args]
    shape = np.broadcast_shapes(*[shape_of(a) for a in args])
    return tuple(broadcast_to(a, shape) for a in args)


# ---------------------------------------------------------------------------------------------
# Joining and splitting
# ---------------------------------------------------------------------------------------------
@implements(np.hstack)
def hstack(tup: Sequence[Any], *, dtype: Any = None, casting: str = "same_kind") -> Any:
    arrs = [_atleast(a, 1) for a in tup]
    axis = 0 if arrs and ndim_of(arrs[0]) == 1 else 1
    return concatenate(arrs, axis=axis, dtype=dtype, casting=casting)


@implements(np.vstack)
def vstack(tup: Sequence[Any], *, dtype: Any = None, casting: str = "same_kind") -> Any:
    return concatenate([_atleast(a, 2) for a in tup], axis=0, dtype=dtype, casting=casting)


@implements(np.dstack)
def dstack(tup: Sequence[Any]) -> Any:
    return concatenate([_atleast(a, 3) for a in tup], axis=2)


@implements(np.column_stack)
def column_stack(tup: Sequence[Any]) -> Any:
    cols = []
    for v in tup:
        v = _arr(v)
        s = shape_of(v)
        cols.append(v if len(s) >= 2 else reshape(v, (s[0] if s else 1, 1)))
    return concatenate(cols, axis=1)


@implements(np.append)
def append(arr: Any, values: Any, axis: Any = None) -> Any:
    arr, values = _arr(arr), _arr(values)
    if axis is None:
        return concatenate([reshape(arr, (-1,)), reshape(values, (-1,))], axis=0)
    return concatenate([arr, values], axis=axis)


def _split_points(n: int, indices_or_sections: Any) -> list[int]:
    if isinstance(indices_or_sections, (int, np.integer)) or (
        type(indices_or_sections) is Tracer and indices_or_sections.ndim == 0
    ):
        sections = _int(indices_or_sections)
        if sections <= 0:
            raise ValueError("number sections must be larger than 0.")
        each, extras = divmod(n, sections)
        sizes = [0] + extras * [each + 1] + (sections - extras) * [each]
        return np.cumsum(sizes).tolist()
    return [0] + [int(i) for i in _concrete(indices_or_sections).tolist()] + [n]


@implements(np.array_split)
def array_split(ary: Any, indices_or_sections: Any, axis: int = 0) -> list:
    ary = _arr(ary)
    ax = _axis(axis, ndim_of(ary))
    points = _split_points(shape_of(ary)[ax], indices_or_sections)
    return [_slice(ary, ax, points[i], points[i + 1]) for i in range(len(points) - 1)]


@implements(np.split)
def split(ary: Any, indices_or_sections: Any, axis: int = 0) -> list:
    ary = _arr(ary)
    if isinstance(indices_or_sections, (int, np.integer)) or (
        type(indices_or_sections) is Tracer and indices_or_sections.ndim == 0
    ):
        sections = _int(indices_or_sections)
        if sections and shape_of(ary)[_axis(axis, ndim_of(ary))] % sections:
            raise ValueError("array split does not result in an equal division")
    return array_split(ary, indices_or_sections, axis)


def _nsplit(name: str, min_nd: int, axis_of: Any) -> Any:
    def fn(ary: Any, indices_or_sections: Any) -> list:
        nd = ndim_of(ary)
        if nd < min_nd:
            raise ValueError(f"{name} only works on arrays of {min_nd} or more dimensions")
        return split(ary, indices_or_sections, axis_of(nd))

    fn.__name__ = name
    return fn


hsplit = implements(np.hsplit)(_nsplit("hsplit", 1, lambda nd: 1 if nd > 1 else 0))
vsplit = implements(np.vsplit)(_nsplit("vsplit", 2, lambda nd: 0))
dsplit = implements(np.dsplit)(_nsplit("dsplit", 3, lambda nd: 2))


@implements(np.unstack)
def unstack(x: Any, /, *, axis: int = 0) -> tuple:
    ax = _axis(axis, ndim_of(x))
    return tuple(getitem_p(x, tree=_along(ax, i)) for i in range(shape_of(x)[ax]))


# ---------------------------------------------------------------------------------------------
# Tiling, repeating, flipping, rolling, rotating
# ---------------------------------------------------------------------------------------------
@implements(np.tile)
def tile(A: Any, reps: Any) -> Any:
    A = _arr(A)
    reps = tuple(int(r) for r in np.atleast_1d(_concrete(reps)).tolist())
    s = shape_of(A)
    d = max(len(reps), len(s))
    s = (1,) * (d - len(s)) + s
    reps = (1,) * (d - len(reps)) + reps
    if all(r == 1 for r in reps):
        return reshape(A, s)
    # Interleave a broadcast axis of size r before each axis of size n, then merge each pair.
    a = reshape(A, tuple(x for n in s for x in (1, n)))
    a = broadcast_to(a, tuple(x for r, n in zip(reps, s, strict=True) for x in (r, n)))
    return reshape(a, tuple(r * n for r, n in zip(reps, s, strict=True)))


@implements(np.repeat)
def repeat(a: Any, repeats: Any, axis: Any = None) -> Any:
    a = _arr(a)
    if axis is None:
        a, ax = reshape(a, (-1,)), 0
    else:
        ax = _axis(axis, ndim_of(a))
    s = shape_of(a)
    n = s[ax]
    reps = _concrete(repeats)
    if reps.dtype.kind not in "iub" and reps.size:
        raise TypeError(f"np.repeat: repeats must be integers, not {reps.dtype}")
    if (reps < 0).any():
        raise ValueError("repeats may not contain negative values.")
    if reps.size == 1:
        r = int(reps.reshape(()))
        # A broadcast along a new axis after ``ax``, then merged: no gather needed.
        b = reshape(a, s[: ax + 1] + (1,) + s[ax + 1 :])
        b = broadcast_to(b, s[: ax + 1] + (r,) + s[ax + 1 :])
        return reshape(b, s[:ax] + (n * r,) + s[ax + 1 :])
    if reps.shape != (n,):
        raise ValueError(f"operands could not be broadcast together with shape ({n},) ({reps.size},)")
    return _gather(a, np.repeat(np.arange(n), reps), ax)


@implements(np.flip)
def flip(m: Any, axis: Any = None) -> Any:
    m = _arr(m)
    nd = ndim_of(m)
    axes = range(nd) if axis is None else _axes(axis, nd)
    tree = [slice(None)] * nd
    for ax in axes:
        tree[ax] = slice(None, None, -1)
    return getitem_p(m, tree=tuple(tree)) if nd else m


@implements(np.fliplr)
def fliplr(m: Any) -> Any:
    if ndim_of(m) < 2:
        raise ValueError("Input must be >= 2-d.")
    return flip(m, 1)


@implements(np.flipud)
def flipud(m: Any) -> Any:
    if ndim_of(m) < 1:
        raise ValueError("Input must be >= 1-d.")
    return flip(m, 0)


@implements(np.roll)
def roll(a: Any, shift: Any, axis: Any = None) -> Any:
    a = _arr(a)
    if axis is None:
        return reshape(roll(reshape(a, (-1,)), shift, 0), shape_of(a))
    nd = ndim_of(a)
    axes = _axes(axis, nd, allow_duplicate=True)
    shifts = _concrete(shift)
    b = np.broadcast(shifts, np.asarray(axes) if not isinstance(axis, (int, np.integer)) else axes[0])
    if b.nd > 1:
        raise ValueError("'shift' and 'axis' should be scalars or 1D sequences")
    total = dict.fromkeys(range(nd), 0)
    for sh, ax in b:
        total[int(ax)] += int(sh)
    for ax, sh in total.items():
        n = shape_of(a)[ax]
        k = sh % n if n else 0
        if k:
            a = concatenate([_slice(a, ax, n - k, None), _slice(a, ax, None, n - k)], axis=ax)
    return a


@implements(np.rot90)
def rot90(m: Any, k: int = 1, axes: Any = (0, 1)) -> Any:
    m = _arr(m)
    axes = tuple(axes)
    nd = ndim_of(m)
    if len(axes) != 2:
        raise ValueError("len(axes) must be 2.")
    if axes[0] == axes[1] or abs(axes[0] - axes[1]) == nd:
        raise ValueError("Axes must be different.")
    if axes[0] >= nd or axes[0] < -nd or axes[1] >= nd or axes[1] < -nd:
        raise ValueError(f"Axes={axes} out of range for array of ndim={nd}.")
    k = _int(k) % 4
    if k == 0:
        return m
    if k == 2:
        return flip(flip(m, axes[0]), axes[1])
    perm = list(range(nd))
    perm[axes[0]], perm[axes[1]] = perm[axes[1]], perm[axes[0]]
    if k == 1:
        return transpose(flip(m, axes[1]), perm)
    return flip(transpose(m, perm), axes[1])


# ---------------------------------------------------------------------------------------------
# Diagonals and triangles
# ---------------------------------------------------------------------------------------------
@implements(np.diagonal)
def diagonal(a: Any, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Any:
    a = _arr(a)
    nd = ndim_of(a)
    if nd < 2:
        raise ValueError("diag requires an array of at least two dimensions")
    i, j = _axis(axis1, nd), _axis(axis2, nd)
    if i == j:
        raise ValueError("axis1 and axis2 cannot be the same")
    offset = _int(offset)
    rest = [d for d in range(nd) if d not in (i, j)]
    t = transpose(a, rest + [i, j])
    n1, n2 = shape_of(a)[i], shape_of(a)[j]
    length = max(0, min(n1, n2 - offset) if offset >= 0 else min(n1 + offset, n2))
    k = np.arange(length)
    rows, cols = k + max(-offset, 0), k + max(offset, 0)
    return getitem_p(t, rows, cols, tree=(Ellipsis, ARRAY, ARRAY))


@implements(np.diag)
def diag(v: Any, k: int = 0) -> Any:
    v = _arr(v)
    k = _int(k)
    s = shape_of(v)
    if len(s) == 2:
        return diagonal(v, k)
    if len(s) != 1:
        raise ValueError("Input must be 1- or 2-d.")
    n = s[0] + abs(k)
    idx = np.arange(s[0])
    rows, cols = idx + max(-k, 0), idx + max(k, 0)
    return index_set_p(zeros((n, n), dtype_of(v), like=v), v, rows, cols, tree=(ARRAY, ARRAY))


@implements(np.trace)
def trace(a: Any, offset: int = 0, axis1: int = 0, axis2: int = 1, dtype: Any = None, out: Any = None) -> Any:
    _check_no_out("np.trace", {"out": out})
    return REDUCTIONS["sum"](diagonal(a, offset, axis1, axis2), axis=-1, dtype=dtype)


def _triangle(m: Any, k: int, upper: bool) -> Any:
    m = _arr(m)
    s = shape_of(m)
    if not s:
        raise ValueError(f"np.{'triu' if upper else 'tril'}: input must be at least 1-d")
    rows, cols = (s[-2], s[-1]) if len(s) >= 2 else (s[-1], s[-1])
    zero = np.zeros(1, dtype=dtype_of(m))
    if upper:
        return select_p(put(np.tri(rows, cols, k=_int(k) - 1, dtype=bool), like=m), zero, m)
    return select_p(put(np.tri(rows, cols, k=_int(k), dtype=bool), like=m), m, zero)


@implements(np.triu)
def triu(m: Any, k: int = 0) -> Any:
    return _triangle(m, k, upper=True)


@implements(np.tril)
def tril(m: Any, k: int = 0) -> Any:
    return _triangle(m, k, upper=False)


# ---------------------------------------------------------------------------------------------
# Differences and weighted averages
# ---------------------------------------------------------------------------------------------
@implements(np.diff)
def diff(a: Any, n: int = 1, axis: int = -1, prepend: Any = _NOVALUE, append: Any = _NOVALUE) -> Any:
    a = _arr(a)
    n = _int(n)
    if n == 0:
        return a
    if n < 0:
        raise ValueError(f"order must be non-negative but got {n!r}")
    nd = ndim_of(a)
    if nd == 0:
        raise ValueError("diff requires input that is at least one dimensional")
    ax = _axis(axis, nd)
    parts = []
    for extra, at_end in ((prepend, False), (append, True)):
        if extra is _NOVALUE:
            continue
        extra = _arr(extra)
        if ndim_of(extra) == 0:
            s = shape_of(a)
            extra = broadcast_to(extra, s[:ax] + (1,) + s[ax + 1 :])
        parts.append((extra, at_end))
    if parts:
        a = concatenate([p for p, end in parts if not end] + [a] + [p for p, end in parts if end], axis=ax)
    boolean = dtype_of(a) == np.bool_
    for _ in range(n):
        hi, lo = _slice(a, ax, 1, None), _slice(a, ax, None, -1)
        a = P("ne")(hi, lo) if boolean else hi - lo
    return a


@implements(np.average)
def average(a: Any, axis: Any = None, weights: Any = None, returned: bool = False, *,
            keepdims: Any = _NOVALUE) -> Any:  # fmt: skip
    a = _arr(a)
    keep = False if keepdims is _NOVALUE else bool(keepdims)
    if weights is None:
        avg = mean(a, axis=axis, keepdims=keep)
        scl = float(np.prod(shape_of(a), dtype=np.int64) / max(int(np.prod(shape_of(avg), dtype=np.int64)), 1))
        scl = np.asarray(scl, dtype=dtype_of(avg))
    else:
        w = _arr(weights)
        int_like = dtype_of(a).kind in "iub"
        rdt = np.result_type(dtype_of(a), dtype_of(w), "f8") if int_like else np.result_type(dtype_of(a), dtype_of(w))
        if shape_of(a) != shape_of(w):
            if axis is None:
                raise TypeError("Axis must be specified when shapes of a and weights differ.")
            if ndim_of(w) != 1:
                raise TypeError("1D weights expected when shapes of a and weights differ.")
            axes = _axes(axis, ndim_of(a))
            if len(axes) != 1:
                raise TypeError("1D weights expected when shapes of a and weights differ.")
            if shape_of(w)[0] != shape_of(a)[axes[0]]:
                raise ValueError("Length of weights not compatible with specified axis.")
            nd = ndim_of(a)
            w = moveaxis(broadcast_to(w, (1,) * (nd - 1) + shape_of(w)), -1, axes[0])
        scl = REDUCTIONS["sum"](w, axis=axis, dtype=rdt, keepdims=keep)
        if REDUCTIONS["any"](scl == 0.0):
            raise ZeroDivisionError("Weights sum to zero, can't be normalized")
        avg = REDUCTIONS["sum"](astype(a, rdt) * astype(w, rdt), axis=axis, keepdims=keep) / scl
    if returned:
        if shape_of(scl) != shape_of(avg):
            scl = broadcast_to(scl, shape_of(avg))
        return avg, scl
    return avg


__all__ = [
    "swapaxes", "moveaxis", "ravel", "squeeze", "expand_dims", "atleast_1d", "atleast_2d", "atleast_3d",
    "broadcast_arrays", "hstack", "vstack", "dstack", "column_stack", "append", "split", "array_split",
    "hsplit", "vsplit", "dsplit", "unstack", "tile", "repeat", "flip", "fliplr", "flipud", "roll", "rot90",
    "diagonal", "diag", "trace", "triu", "tril", "diff", "average",
]  # fmt: skip
