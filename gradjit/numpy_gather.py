"""Padding, sorting and gathering on tracers: operations that select elements by an index map.

Split from ``numpy_shape`` (which it builds on) to keep each module readable in one sitting. The
index maps are computed on concrete integers with NumPy (``np.pad(np.arange(n), width, mode)``,
``argsort``) and applied with ``getitem`` gathers, so forward values equal NumPy's exactly and the
gradients come from ``getitem``'s (a scatter-add), to any order.

Invariants are those of ``numpy_shape``: shapes are decided on concrete values (an integer tracer in
such a place records a guard), and arguments that cannot be honoured raise ``unsupported``.
"""

from __future__ import annotations

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
    unsupported,
)
from .numpy_shape import _arr, _axis, _concrete, _gather, _int_index, _slice
from .primitives import ARRAY, P, argsort_p, getitem_p
from .tracing import Tracer

# ---------------------------------------------------------------------------------------------
# Padding
# ---------------------------------------------------------------------------------------------
_PAD_KWARGS = {"constant": ("constant_values",), "edge": (), "wrap": (), "empty": (),
               "reflect": ("reflect_type",), "symmetric": ("reflect_type",), "maximum": ("stat_length",),
               "minimum": ("stat_length",), "mean": ("stat_length",)}  # fmt: skip


def _as_pairs(x: Any, nd: int, as_index: bool = False) -> list:
    """NumPy's ``pad`` argument broadcasting to ``nd`` (before, after) pairs, for concrete ``x``."""
    if x is None:
        return [(None, None)] * nd
    x = np.array(x)
    if as_index:
        x = np.round(x).astype(np.intp, copy=False)
    if x.ndim < 3:
        if x.size == 1:
            x = x.ravel()
            if as_index and x[0] < 0:
                raise ValueError("index can't contain negative values")
            return [(x[0].item(), x[0].item())] * nd
        if x.size == 2 and x.shape != (2, 1):
            x = x.ravel()
            if as_index and (x[0] < 0 or x[1] < 0):
                raise ValueError("index can't contain negative values")
            return [(x[0].item(), x[1].item())] * nd
    if as_index and x.min() < 0:
        raise ValueError("index can't contain negative values")
    return [tuple(p) for p in np.broadcast_to(x, (nd, 2)).tolist()]


def _traced_pairs(x: Tracer, nd: int) -> list:
    """``_as_pairs`` for a traced ``constant_values``: scalars picked out with ``getitem``."""
    s = x.shape
    if len(s) < 3 and x.size == 1:
        v = reshape(x, ())
        return [(v, v)] * nd
    if len(s) < 3 and x.size == 2 and s != (2, 1):
        r = reshape(x, (2,))
        return [(getitem_p(r, tree=(0,)), getitem_p(r, tree=(1,)))] * nd
    b = broadcast_to(x, (nd, 2))
    return [(getitem_p(b, tree=(i, 0)), getitem_p(b, tree=(i, 1))) for i in range(nd)]


def _fill(value: Any, shape: tuple[int, ...], dt: np.dtype) -> Any:
    if type(value) is Tracer:
        return broadcast_to(astype(value, dt), shape)
    return np.full(shape, value, dtype=dt)


def _pad_with(a: Any, ax: int, before: Any, after: Any, nb: int, na: int) -> Any:
    """``a`` with ``before``/``after`` blocks (already shaped, ``nb``/``na`` long) joined along ``ax``."""
    parts = ([before] if nb else []) + [a] + ([after] if na else [])
    return concatenate(parts, axis=ax) if len(parts) > 1 else a


@implements(np.pad)
def pad(array: Any, pad_width: Any, mode: Any = "constant", **kwargs: Any) -> Any:
    a = _arr(array)
    nd = ndim_of(a)
    dt = dtype_of(a)
    if callable(mode):
        raise unsupported("np.pad", "a callable mode is not supported on traced arrays",
                          "Build the padding with np.concatenate of traced pieces.")  # fmt: skip
    if mode not in _PAD_KWARGS:
        if mode in ("linear_ramp", "median"):
            raise unsupported("np.pad", f"mode={mode!r} is not supported on traced arrays",
                              "Supported modes: " + ", ".join(_PAD_KWARGS) + ".")  # fmt: skip
        raise ValueError(f"mode '{mode}' is not supported")
    bad = set(kwargs) - set(_PAD_KWARGS[mode])
    if bad:
        raise ValueError(f"unsupported keyword arguments for mode '{mode}': {bad}")
    if isinstance(pad_width, dict):
        seq = [(0, 0)] * nd
        for ax, w in pad_width.items():
            seq[ax] = (w, w) if isinstance(w, (int, np.integer)) else tuple(w)
        pad_width = seq
    pw = _concrete(pad_width)
    if pw.dtype.kind not in "iu":
        raise TypeError("`pad_width` must be of integral type.")
    widths = _as_pairs(pw, nd, as_index=True)
    shape = list(shape_of(a))

    if mode in ("constant", "empty"):
        # Axis by axis, like NumPy: later axes' blocks span earlier axes' padding (corners).
        # 'empty' leaves the padding undefined in NumPy; it is zeros here.
        cv = kwargs.get("constant_values", 0)
        pairs = _traced_pairs(cv, nd) if type(cv) is Tracer else _as_pairs(cv, nd)
        for ax, ((nb, na), (vb, va)) in enumerate(zip(widths, pairs, strict=True)):
            if not (nb or na):
                continue
            sb = tuple(shape[:ax]) + (nb,) + tuple(shape[ax + 1 :])
            sa = tuple(shape[:ax]) + (na,) + tuple(shape[ax + 1 :])
            a = _pad_with(a, ax, _fill(vb, sb, dt), _fill(va, sa, dt), nb, na)
            shape[ax] += nb + na
        return a

    if mode in ("maximum", "minimum", "mean"):
        return _pad_stat(a, widths, mode, kwargs.get("stat_length"))

    reflect_type = kwargs.get("reflect_type", "even")
    if reflect_type not in ("even", "odd"):
        raise ValueError(f"reflect_type must be 'even' or 'odd', not {reflect_type!r}")
    extra = {"reflect_type": reflect_type} if mode in ("reflect", "symmetric") else {}
    for ax, (nb, na) in enumerate(widths):
        if not (nb or na):
            continue
        n = shape[ax]
        if reflect_type == "odd" and extra and n > 1:
            # Odd reflection computes values (2 * edge - mirrored), so follow NumPy's own loop.
            a = _reflect_odd(a, ax, nb, na, include_edge=mode == "symmetric")
        else:
            # Edge, reflect, symmetric and wrap only copy elements: gather by NumPy's index map.
            a = _gather(a, np.pad(np.arange(n), (nb, na), mode, **extra), ax)
        shape[ax] += nb + na
    return a


def _reflect_odd(a: Any, ax: int, left: int, right: int, include_edge: bool) -> Any:
    """NumPy's iterative odd reflection along ``ax`` (``_set_reflect_both``), with the same arithmetic.

    Each round mirrors at most the filled length onto each side, so wide pads take several rounds
    and later rounds reflect values computed by earlier ones, exactly as NumPy does.
    """
    n = shape_of(a)[ax]
    while left > 0 or right > 0:
        filled = shape_of(a)[ax]
        if include_edge:
            old, eo = filled // n * n, 1
        else:
            old, eo = (filled - 1) // (n - 1) * (n - 1), 0
        if left > 0:
            k = min(old, left)
            chunk = _slice(a, ax, k - eo, None if eo else 0, -1)
            a = concatenate([2 * _slice(a, ax, 0, 1) - chunk, a], axis=ax)
            left -= k
        if right > 0:
            k = min(old, right)
            chunk = _slice(a, ax, eo - 2, eo - 2 - k, -1)
            a = concatenate([a, 2 * _slice(a, ax, -1, None) - chunk], axis=ax)
            right -= k
    return a


def _pad_stat(a: Any, widths: list, mode: str, stat_length: Any) -> Any:
    nd = ndim_of(a)
    lengths = _as_pairs(_concrete(stat_length) if stat_length is not None else None, nd, as_index=True)
    reduce = {"maximum": REDUCTIONS["max"], "minimum": REDUCTIONS["min"], "mean": mean}[mode]
    integer = dtype_of(a).kind in "iu"
    for ax, ((nb, na), (lb, la)) in enumerate(zip(widths, lengths, strict=True)):
        if not (nb or na):
            continue
        n = shape_of(a)[ax]
        lb = n if lb is None else min(lb, n)
        la = n if la is None else min(la, n)
        if (nb and lb == 0) or (na and la == 0):
            raise ValueError("stat_length of 0 yields no value for padding")
        stats = []
        for length, from_end in ((lb, False), (la, True)):
            chunk = _slice(a, ax, n - length, None) if from_end else _slice(a, ax, None, length)
            st = reduce(chunk, axis=ax, keepdims=True)
            if mode == "mean" and integer:
                st = astype(P("rint")(st), dtype_of(a))
            stats.append(st)
        s = shape_of(a)
        before = broadcast_to(stats[0], s[:ax] + (nb,) + s[ax + 1 :])
        after = broadcast_to(stats[1], s[:ax] + (na,) + s[ax + 1 :])
        a = _pad_with(a, ax, before, after, nb, na)
    return a


# ---------------------------------------------------------------------------------------------
# Sorting and gathering
# ---------------------------------------------------------------------------------------------
_KINDS = (None, "quicksort", "mergesort", "heapsort", "stable")


def _sort_args(op: str, a: Any, axis: Any, kind: Any, order: Any, stable: Any) -> tuple[Any, int, bool]:
    if order is not None:
        raise unsupported(op, "order= (sorting structured arrays by field) is not supported on traced arrays")
    if kind not in _KINDS:
        raise ValueError(f"{op}: sort kind must be one of {_KINDS[1:]}, not {kind!r}")
    if stable is not None and kind is not None:
        raise ValueError("`kind` and `stable` parameters can't be provided at the same time. Use only one of them.")
    a = _arr(a)
    if axis is None:
        a, axis = reshape(a, (-1,)), 0
    # quicksort and heapsort are both "unstable": their values are NumPy's, tie order may differ.
    return a, _axis(axis, ndim_of(a)), bool(stable) or kind in ("mergesort", "stable")


@implements(np.argsort)
def argsort(a: Any, axis: Any = -1, kind: Any = None, order: Any = None, *, stable: Any = None) -> Any:
    a, ax, is_stable = _sort_args("np.argsort", a, axis, kind, order, stable)
    return argsort_p(a, axis=ax, stable=is_stable)


@implements(np.sort)
def sort(a: Any, axis: Any = -1, kind: Any = None, order: Any = None, *, stable: Any = None) -> Any:
    a, ax, is_stable = _sort_args("np.sort", a, axis, kind, order, stable)
    return take_along_axis(a, argsort_p(a, axis=ax, stable=is_stable), ax)


@implements(np.take_along_axis)
def take_along_axis(arr: Any, indices: Any, axis: Any = -1) -> Any:
    arr = _arr(arr)
    indices = _int_index(indices, "np.take_along_axis")
    if axis is None:
        if ndim_of(indices) != 1:
            raise ValueError("when axis=None, `indices` must have a single dimension.")
        arr, axis = reshape(arr, (-1,)), 0
    nd = ndim_of(arr)
    if ndim_of(indices) != nd:
        raise ValueError("`indices` and `arr` must have the same number of dimensions")
    ax = _axis(axis, nd)
    # Index every other axis with an arange shaped to broadcast against ``indices``, as NumPy does.
    s = shape_of(arr)
    arrays = [
        indices if d == ax else np.arange(s[d]).reshape((1,) * d + (s[d],) + (1,) * (nd - d - 1)) for d in range(nd)
    ]
    return getitem_p(arr, *arrays, tree=(ARRAY,) * nd)


@implements(np.take)
def take(a: Any, indices: Any, axis: Any = None, out: Any = None, mode: str = "raise") -> Any:
    _check_no_out("np.take", {"out": out})
    a = _arr(a)
    if axis is None:
        a, ax = reshape(a, (-1,)), 0
    else:
        ax = _axis(axis, ndim_of(a))
    idx = _int_index(indices, "np.take")
    n = shape_of(a)[ax]
    if mode in ("wrap", "clip") and n == 0:
        raise IndexError("cannot do a non-empty take from an empty axes.")
    if mode == "wrap":
        idx = P("mod")(idx, n)
    elif mode == "clip":
        idx = P("minimum")(P("maximum")(idx, 0), n - 1)
    elif mode != "raise":
        raise ValueError(f"clipmode must be one of 'clip', 'raise', or 'wrap' (got {mode!r})")
    return _gather(a, idx, ax)


__all__ = ["pad", "argsort", "sort", "take_along_axis", "take"]
