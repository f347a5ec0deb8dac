"""Indexing on the device: basic indexing as views, advanced indexing as gather and scatter kernels.

An index expression is normalized once (``plan``): ``Ellipsis`` expanded, boolean masks turned into
integer arrays (``nonzero``), host index arrays copied to the device (they are indices, not data:
PyTorch accepts CPU indices for CUDA tensors too). Without index arrays the result is a view. With
them, slices apply first (a view of the same rank), and the index space of the result is laid out by
NumPy's rule: the broadcast shape of the index arrays replaces them where they stand when they are
adjacent in the index, and goes first otherwise (an integer counts as a 0-d index array then, a
``None`` or a slice between two arrays separates them).

- ``getitem``: gather into a new array;
- ``index_add`` (``np.add.at``): atomic adds, so repeated indices accumulate;
- ``setitem`` with arrays: the last write in C order wins, as in NumPy, by claiming each target
  position with an atomic max of the write's position, then writing where the claim held.

Invariant: an out-of-range index raises ``IndexError`` (host indices are checked on the host, device
indices by a flag the kernel sets, read after the launch).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gradjit.placement import DeviceArray

from . import cuda as C
from . import cuda_kernels as K

__all__ = ["getitem", "setitem", "index_add", "nonzero", "concatenate"]


class _Plan:
    __slots__ = ("v", "shape", "roles", "p0", "nblock", "I", "bshape", "check")

    def __init__(self, v, shape, roles, p0, nblock, I, bshape, check):  # noqa: E741
        self.v = v  # the sliced view of the source (rank = source rank)
        self.shape = shape  # the result's (index space's) shape
        self.roles = roles  # per source dim: result dim, or -1 - k for index array k
        self.p0 = p0  # where the broadcast block starts in the result
        self.nblock = nblock
        self.I = I  # int64 (n_arrays, bsize) on the device
        self.bshape = bshape
        self.check = check  # whether device indices need the out-of-range flag read back


def _expand(x: DeviceArray, index: Any) -> list:
    if not isinstance(index, tuple):
        index = (index,)
    items: list = []
    for it in index:
        if isinstance(it, DeviceArray):
            if it.dtype.kind == "b":
                items.extend(nonzero(it))
                continue
            if it.dtype.kind not in "iu":
                raise IndexError("arrays used as indices must be of integer (or boolean) type")
            items.append(it)
        elif isinstance(it, (list, np.ndarray)):
            arr = np.asarray(it)
            if arr.dtype.kind == "b":
                items.extend(np.nonzero(arr))
            elif arr.dtype.kind in "iu" or arr.size == 0:
                items.append(arr.astype(np.int64, copy=False))
            else:
                raise IndexError("arrays used as indices must be of integer (or boolean) type")
        elif isinstance(it, (bool, np.bool_)):
            raise IndexError("a boolean scalar index is not supported on device arrays")
        elif isinstance(it, (int, np.integer)) or it is None or it is Ellipsis or isinstance(it, slice):
            items.append(int(it) if isinstance(it, (int, np.integer)) else it)
        elif hasattr(it, "__index__"):
            items.append(it.__index__())
        else:
            raise IndexError(
                "only integers, slices (`:`), ellipsis (`...`), numpy.newaxis (`None`) and integer or "
                "boolean arrays are valid indices"
            )
    n_ell = sum(1 for it in items if it is Ellipsis)
    if n_ell > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    used = sum(1 for it in items if it is not None and it is not Ellipsis)
    if used > x.ndim:
        raise IndexError(f"too many indices for array: array is {x.ndim}-dimensional, but {used} were indexed")
    fill = [slice(None)] * (x.ndim - used)
    if n_ell:
        i = next(i for i, it in enumerate(items) if it is Ellipsis)
        items = items[:i] + fill + items[i + 1 :]
    else:
        items = items + fill
    return items


def _is_array(it: Any) -> bool:
    return isinstance(it, (DeviceArray, np.ndarray))


def _bounds(i: int, n: int, axis: int) -> int:
    j = i + n if i < 0 else i
    if not 0 <= j < n:
        raise IndexError(f"index {i} is out of bounds for axis {axis} with size {n}")
    return j


def _basic(x: DeviceArray, items: list) -> DeviceArray:
    shape, strides, off, d = [], [], x._offset, 0
    for it in items:
        if it is None:
            shape.append(1)
            strides.append(0)
            continue
        n, s = x.shape[d], x._strides[d]
        if isinstance(it, slice):
            start, stop, step = it.indices(n)
            length = len(range(start, stop, step))
            if length:
                off += start * s
            shape.append(length)
            strides.append(s * step)
        else:
            off += _bounds(it, n, d) * s
        d += 1
    return C.view(x, shape, strides, off)


def plan(x: DeviceArray, index: Any) -> _Plan | DeviceArray:
    """The view for a basic index; a gather/scatter plan for an advanced one."""
    items = _expand(x, index)
    if not any(_is_array(it) for it in items):
        return _basic(x, items)
    # Slices narrow the source first (a view of the same rank); arrays and ints index it.
    sl = [slice(None) if (_is_array(it) or isinstance(it, int)) else it for it in items if it is not None]
    v = _basic(x, sl)
    arrays, adv_pos, basic_dims = [], [], []  # basic_dims: (item position, source dim or None, size)
    d = 0
    for pos, it in enumerate(items):
        if it is None:
            basic_dims.append((pos, None, 1))
        elif _is_array(it) or isinstance(it, int):
            arrays.append((d, np.asarray(it, dtype=np.int64) if isinstance(it, int) else it))
            adv_pos.append(pos)
            d += 1
        else:
            basic_dims.append((pos, d, v.shape[d]))
            d += 1
    bshape = tuple(np.broadcast_shapes(*[a.shape for _, a in arrays]))
    adjacent = adv_pos == list(range(adv_pos[0], adv_pos[-1] + 1))
    before = [b for b in basic_dims if adjacent and b[0] < adv_pos[0]]
    after = [b for b in basic_dims if b not in before]
    p0 = len(before)
    shape = tuple(n for _, _, n in before) + bshape + tuple(n for _, _, n in after)
    roles = [0] * v.ndim
    for j, (_, src, _) in enumerate(before):
        if src is not None:
            roles[src] = j
    for j, (_, src, _) in enumerate(after):
        if src is not None:
            roles[src] = p0 + len(bshape) + j
    for k, (src, _) in enumerate(arrays):
        roles[src] = -1 - k
    # The index arrays, broadcast to the block and stacked as int64 rows on the device.
    bsize = math.prod(bshape)
    I = C.empty((len(arrays), bsize), np.int64)  # noqa: E741
    check = False
    for k, (src, a) in enumerate(arrays):
        row = C.view(I, bshape, C._c(bshape), k * bsize)
        if isinstance(a, np.ndarray):
            if a.size:
                n = v.shape[src]
                lo, hi = int(a.min()), int(a.max())
                if lo < -n or hi >= n:
                    bad = lo if lo < -n else hi
                    raise IndexError(f"index {bad} is out of bounds for axis {src} with size {n}")
            a = C.from_host(a) if a.ndim else int(a)
        else:
            check = True
        C._copy_into(row, a)
    return _Plan(v, shape, tuple(roles), p0, len(bshape), I, bshape, check)


def _index_args(p: _Plan, flag: Any) -> list:
    v = p.v
    bstr = C._c(p.bshape) if p.bshape else ()
    return [
        math.prod(p.shape),
        *p.shape,
        v._buf,
        v._offset,
        *v._strides,
        *v.shape,
        p.I._buf,
        max(p.I.shape[1], 1),
        *bstr,
        flag,
    ]


def _flag() -> Any:
    return C.from_host(np.zeros(1, np.int32))


def _check_flag(p: _Plan, flag: DeviceArray) -> None:
    if p.check and int(C.item(flag)):
        raise IndexError("an index array holds an index out of bounds for the indexed axis")


def getitem(x: DeviceArray, index: Any) -> DeviceArray:
    p = plan(x, index)
    if isinstance(p, DeviceArray):
        return p
    z = C.empty(p.shape, x.dtype)
    n = z.size
    if n:
        flag = _flag()
        store = "w != 0" if x.dtype.kind == "b" else "w"
        key = ("gather", len(p.shape), p.roles, p.p0, p.nblock, store)
        kern = C._kernel(key, lambda: K.gather(len(p.shape), p.roles, p.p0, p.nblock, store, C.CACHE))
        kern[C._grid(n), C.EW_THREADS](*_index_args(p, flag._buf), z._buf)
        _check_flag(p, flag)
    return z


def _values(p: _Plan, value: Any, dtype: np.dtype) -> DeviceArray:
    """``value`` as a device array broadcast over the index space (converted to ``dtype``), never a view of
    the target's buffer (the scatter would read what it writes)."""
    if isinstance(value, DeviceArray) and value._buf is p.v._buf:
        value = C.copy(value)
    (u,) = C.operands("index assignment", [value])
    if not isinstance(u, DeviceArray) or u.dtype != dtype:
        w = C.empty(u.shape, dtype)
        C._copy_into(w, value)
        u = w
    if tuple(np.broadcast_shapes(u.shape, p.shape)) != p.shape:
        raise ValueError(
            f"shape mismatch: value array of shape {u.shape} could not be broadcast to indexing result of "
            f"shape {p.shape}"
        )
    return C.broadcast_to(u, p.shape)


def _scatter(p: _Plan, u: DeviceArray, mode: str, own: Any) -> None:
    n = math.prod(p.shape)
    key = ("scatter", len(p.shape), p.roles, p.p0, p.nblock, mode)
    kern = C._kernel(key, lambda: K.scatter(len(p.shape), p.roles, p.p0, p.nblock, mode, C.CACHE))
    flag = _flag()
    kern[C._grid(n), C.EW_THREADS](*_index_args(p, flag._buf), u._buf, u._offset, *u._strides, own)
    _check_flag(p, flag)


def setitem(x: DeviceArray, index: Any, value: Any) -> None:
    """``x[index] = value`` in place; with repeated indices the last write wins."""
    if not x._writeable:
        raise ValueError("assignment destination is read-only")
    p = plan(x, index)
    if isinstance(p, DeviceArray):
        C._copy_into(p, value)
        return
    if not math.prod(p.shape):
        return
    u = _values(p, value, x.dtype)
    own = C.full((x._buf.shape[0],), -1, np.int64)._buf
    _scatter(p, u, "claim", own)
    _scatter(p, u, "set_claimed", own)


def index_add(x: DeviceArray, index: Any, value: Any) -> None:
    """``np.add.at(x, index, value)`` in place: repeated indices accumulate (atomic adds)."""
    if not x._writeable:
        raise ValueError("assignment destination is read-only")
    p = plan(x, index)
    if isinstance(p, DeviceArray):
        C.elementwise("add", [p, value], out=p, op="np.add.at")
        return
    if not math.prod(p.shape):
        return
    u = _values(p, value, x.dtype)
    _scatter(p, u, "add", u._buf)


# ---------------------------------------------------------------------------------------------
# nonzero and concatenate
# ---------------------------------------------------------------------------------------------
def nonzero(x: DeviceArray) -> tuple[DeviceArray, ...]:
    if x.ndim == 0:
        raise ValueError("Calling nonzero on 0d arrays is not allowed. Use np.atleast_1d(scalar).nonzero() instead.")
    flags = C.elementwise("ne", [C.contiguous(x), 0])
    flat = C.reshape(flags, (x.size,))
    pos = C.scan("sum", flat, 0)
    total = int(C.item(C.view(pos, (), (), pos._offset + x.size - 1))) if x.size else 0
    z = C.empty((x.ndim, total), np.intp)
    if total:
        rank = x.ndim
        kern = C._kernel(("nonzero", rank), lambda: K.nonzero(rank, C.CACHE))
        kern[C._grid(x.size), C.EW_THREADS](x.size, total, *x.shape, flat._buf, pos._buf, z._buf)
    return tuple(C.view(z, (total,), (1,), d * total) for d in range(x.ndim))


def concatenate(xs: list, axis: int | None) -> DeviceArray:
    ins = C.operands("np.concatenate", xs)
    arrays = []
    for a, x in zip(ins, xs):
        if not isinstance(a, DeviceArray):  # a host scalar value: NumPy needs arrays with dimensions
            if np.ndim(x) == 0:
                raise ValueError("zero-dimensional arrays cannot be concatenated")
            a = C.from_host(np.asarray(x))
        arrays.append(a)
    if axis is None:
        arrays, axis = [C.reshape(a, (a.size,)) for a in arrays], 0
    nd = arrays[0].ndim
    if nd == 0:
        raise ValueError("zero-dimensional arrays cannot be concatenated")
    axis = int(axis)
    if not -nd <= axis < nd:
        raise np.exceptions.AxisError(axis, nd)
    axis %= nd
    for a in arrays[1:]:
        if a.ndim != nd or any(m != n for d, (m, n) in enumerate(zip(a.shape, arrays[0].shape)) if d != axis):
            raise ValueError(
                "all the input array dimensions except for the concatenation axis must match exactly, but "
                f"the shapes are {arrays[0].shape} and {a.shape}"
            )
    dt = np.result_type(*[a.dtype for a in arrays])
    shape = list(arrays[0].shape)
    shape[axis] = sum(a.shape[axis] for a in arrays)
    z = C.empty(tuple(shape), dt)
    start = 0
    for a in arrays:
        n = a.shape[axis]
        if n:
            dst = C.view(z, a.shape, z._strides, z._offset + start * z._strides[axis])
            C._copy_into(dst, a)
        start += n
    return z
