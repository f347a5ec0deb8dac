"""The CUDA backend: device memory, generated kernels, and the array operations NumPy's API maps to.

This is the one module that talks to ``numba.cuda`` (with ``cuda_kernels``, the kernels' source text,
and ``cuda_scalar``, the names their expressions call): moving to another CUDA package for Python
changes these files only. Everything works the same under Numba's simulator
(``NUMBA_ENABLE_CUDASIM=1``), with small blocks so that tests stay fast (the simulator runs every
thread as a Python thread).

Operations (``gradjit.placement.DeviceArray`` in and out):

- **elementwise**: any program of scalar expressions from ``gradjit.kernels.ops.EXPR`` (the CPU
  executor's table, so both compute the same formula), over operands broadcast through strides
  (stride 0) and written through strides, so views and in-place updates need no copies; dimensions
  that are contiguous for every operand are merged first, so most launches index a rank-1 space;
- **reductions** (sum, prod, max, min, any, all) over any axes, **argmax/argmin**: the kept and the
  reduced dimensions are each merged, then a block of BX x BY threads reduces BX outputs with a tree
  in shared memory ("rows" when the reduced elements are contiguous, "columns" when the kept ones
  are, so loads coalesce either way); a long reduction is split over G blocks per output and a
  second launch reduces their partial results;
- **scans** (cumsum, cumprod): chunks scanned by one thread each, chunk totals scanned recursively,
  then added back;
- **matmul**: register-tiled (TM x TN per thread) shared-memory tiles (BM x BK of A, BK x BN of B),
  batched over broadcast leading dimensions, on strided operands (a transposed view is read in
  place); **einsum** as diagonals (strided views), sums, and batched matmuls;
- **indexing**: basic indexing is a view; advanced indexing gathers (``getitem``), scatter-adds with
  atomics (``index_add``: repeated indices accumulate) and scatters "last write wins" like NumPy
  (``index_set``: an atomic max claims each position for the last write in C order);
- ``nonzero`` (a scan of the mask, then a scatter of coordinates), ``concatenate`` (copies into
  views of the result);
- **on the host**, by a copy there and back (documented in docs/design.md): ``numpy.linalg``,
  ``argsort``, and the convolution and pooling primitives of ``gradjit.nn``.

Invariant: every function returns a new array or a view, never a host array, and raises NumPy's
errors (``ValueError``/``IndexError``/``TypeError``) for NumPy's mistakes, ``PlacementError`` for
mixing host and device arrays.
"""

from __future__ import annotations

import importlib
import math
import os
import re
from functools import cache, lru_cache
from typing import Any

import numpy as np
from numba import cuda

from gradjit.placement import DeviceArray, PlacementError, describe
from gradjit.primitives import BINARY_UFUNCS, UNARY_UFUNCS

from . import cuda_kernels as K
from .cache import load_module
from .cuda_scalar import SIM, check_names
from .ops import EXPR

__all__ = ["SIM", "from_host", "to_host", "empty", "full", "elementwise", "reduce", "matmul", "Scalar", "operands"]

CACHE = not SIM  # Numba's on-disk cache of compiled kernels (the simulator compiles nothing)

if "NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS" not in os.environ:
    # Small arrays make small grids, by design: Numba would warn about occupancy at every such launch.
    for _name in ("numba.core.config", "numba.cuda.core.config"):
        try:
            importlib.import_module(_name).CUDA_LOW_OCCUPANCY_WARNINGS = 0
        except ImportError:
            pass

# -- launch geometry: the GPU's, and the simulator's (tiny blocks, but the same code paths) -----------
if SIM:
    EW_THREADS, EW_MAX_BLOCKS = 4, 2
    RED_ROWS, RED_COLS, RED_ITEMS = (1, 4), (2, 2), 2
    MM_TILE = (4, 4, 2, 2, 2)  # BM, BN, BK, TM, TN: 4 threads
    SCAN_CHUNK = 2
else:
    EW_THREADS, EW_MAX_BLOCKS = 256, 1 << 20
    RED_ROWS, RED_COLS, RED_ITEMS = (1, 256), (32, 8), 8
    MM_TILE = (64, 64, 16, 4, 4)  # 256 threads, 4 x 4 results each
    SCAN_CHUNK = 64

_TYPE = {"f64": "np.float64", "f32": "np.float32", "i64": "np.int64"}
_S = {"f64": "S_F64", "f32": "S_F32", "i64": "S_I64"}
_MATH = {"f64": "MATH_F64", "f32": "MATH_F32", "i64": "MATH_I64"}
_COMPUTE_DTYPE = {"f64": np.dtype(np.float64), "f32": np.dtype(np.float32), "i64": np.dtype(np.int64)}


def tag_of(dtype: Any) -> str:
    """The compute type of values of ``dtype``: ``f64``, ``f32`` or ``i64`` (integers and booleans)."""
    dt = np.dtype(dtype)
    if dt == np.float64:
        return "f64"
    if dt == np.float32:
        return "f32"
    if dt.kind in "iub":
        return "i64"
    raise TypeError(f"arrays of dtype {dt} are not supported on the device (float64, float32, integers, bool)")


def available() -> bool:
    """Whether Numba sees a CUDA GPU (always true on the simulator)."""
    return SIM or bool(cuda.is_available())


@cache
def _target_blocks() -> int:
    if SIM:
        return 4
    return 4 * cuda.get_current_device().MULTIPROCESSOR_COUNT


# ---------------------------------------------------------------------------------------------
# Kernels: generated source, one cached module each
# ---------------------------------------------------------------------------------------------
_KERNELS: dict[tuple, Any] = {}


def _kernel(key: tuple, source: Any) -> Any:
    k = _KERNELS.get(key)
    if k is None:
        module = load_module(f"cuda_{key[0]}", K.HEADER + source())
        k = _KERNELS[key] = module.kernel
    return k


def _grid(n: int) -> int:
    return max(1, min((n + EW_THREADS - 1) // EW_THREADS, EW_MAX_BLOCKS))


# ---------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------
def _buffer(n: int, dtype: Any) -> Any:
    return cuda.device_array(max(int(n), 0), dtype=np.dtype(dtype))


def empty(shape: tuple[int, ...], dtype: Any) -> DeviceArray:
    shape = tuple(int(n) for n in shape)
    return DeviceArray(_buffer(math.prod(shape), dtype), shape)


def from_host(a: Any) -> DeviceArray:
    a = np.asarray(a)
    if a.dtype.kind not in "fiub":
        raise TypeError(f"arrays of dtype {a.dtype} are not supported on the device")
    if not a.flags.c_contiguous:
        a = a.copy(order="C")
    return DeviceArray(cuda.to_device(a.reshape(-1)), a.shape)


def to_host(x: DeviceArray) -> np.ndarray:
    if x.size == 0:
        return np.empty(x.shape, x.dtype)
    y = x if x.is_contiguous else copy(x)
    buf = y._buf
    if y._offset or buf.shape[0] != y.size:
        buf = buf[y._offset : y._offset + y.size]
    return buf.copy_to_host().reshape(x.shape)


def item(x: DeviceArray) -> Any:
    """The value of a size-1 array, as a NumPy scalar (one element crosses to the host)."""
    return x._buf[x._offset : x._offset + 1].copy_to_host()[0]


def full(shape: tuple[int, ...], value: Any, dtype: Any) -> DeviceArray:
    z = empty(shape, dtype)
    _copy_into(z, value)
    return z


def copy(x: DeviceArray, dtype: Any = None) -> DeviceArray:
    """A C-contiguous copy (of ``dtype``, default ``x``'s)."""
    z = empty(x.shape, x.dtype if dtype is None else dtype)
    _copy_into(z, x)
    return z


def contiguous(x: DeviceArray) -> DeviceArray:
    return x if x.is_contiguous else copy(x)


# ---------------------------------------------------------------------------------------------
# Operands: device arrays, and scalars passed by value
# ---------------------------------------------------------------------------------------------
class Scalar:
    """A value passed to a kernel by value: a Python scalar (weak, as NumPy 2 types them), a NumPy
    scalar, or a host array holding a single value (with the shape it broadcasts with)."""

    __slots__ = ("value", "dtype", "shape")

    def __init__(self, value: Any, dtype: np.dtype | None, shape: tuple[int, ...]):
        self.value = value
        self.dtype = dtype  # None: a weak Python scalar
        self.shape = shape

    def dtype_arg(self) -> Any:
        """What NumPy's type resolution takes for this operand: a dtype, or the Python type."""
        return self.dtype if self.dtype is not None else type(self.value)


def _single_value(a: np.ndarray) -> bool:
    return a.size <= 1 or all(s == 0 for s, n in zip(a.strides, a.shape) if n > 1)


def operands(op: str, args: Any) -> list:
    """Each argument as a ``DeviceArray`` or a ``Scalar``; ``PlacementError`` for a host array."""
    out, bad = [], []
    for i, a in enumerate(args):
        if isinstance(a, DeviceArray):
            out.append(a)
        elif type(a) is bool or isinstance(a, np.bool_):
            out.append(Scalar(np.bool_(a), np.dtype(np.bool_), ()))
        elif type(a) in (int, float):
            out.append(Scalar(a, None, ()))
        elif isinstance(a, np.generic):
            if a.dtype.kind not in "fiub":
                raise TypeError(f"{op}: values of dtype {a.dtype} are not supported on the device")
            out.append(Scalar(a, a.dtype, ()))
        else:
            arr = a if isinstance(a, np.ndarray) else np.asarray(a)
            if arr.dtype.kind not in "fiub":
                raise TypeError(f"{op}: values of dtype {arr.dtype} are not supported on the device")
            if not _single_value(arr):
                bad.append(i)
                out.append(None)
                continue
            value = arr.reshape(-1)[0] if arr.size else arr.dtype.type(0)
            out.append(Scalar(value, arr.dtype, arr.shape))
    if bad:
        raise placement_error(op, args, bad)
    return out


def placement_error(op: str, args: Any, host: list[int]) -> PlacementError:
    where = "; ".join(
        f"argument {i} is {describe(a)}" for i, a in enumerate(args) if i in host or isinstance(a, DeviceArray)
    )
    return PlacementError(
        op,
        f"host and device arrays in one operation ({where})",
        "Move the host array to the device with gradjit.to_device(...) (or the device array to the host "
        "with gradjit.to_host(...)); scalars and single values combine with either.",
    )


# ---------------------------------------------------------------------------------------------
# Elementwise programs
# ---------------------------------------------------------------------------------------------
_UFUNCS = {**UNARY_UFUNCS, **BINARY_UFUNCS}
_LOCAL_EXPR = {
    "positive": {"f": "{0}", "i": "{0}"},
    "fabs": {"f": "abs({0})"},
    "astype": {"f": "{0}", "i": "{0}"},
    "stop_gradient": {"f": "{0}", "i": "{0}"},
}
_T_CALL = re.compile(r"\bT\(")
_S_DOT = re.compile(r"\bS\.")
_MATH_DOT = re.compile(r"\bmath\.")


def expression(name: str, tag: str, params: dict | None = None) -> str:
    """The scalar expression of elementwise op ``name`` for compute type ``tag``, over ``{0}``, ``{1}``."""
    if name == "round":
        d = int((params or {}).get("decimals", 0))
        if tag == "i64":
            if d < 0:
                raise TypeError("np.round of integers with negative decimals is not supported on the device")
            return "{0}"
        f = repr(10.0 ** abs(d))
        e = f"S.rint({{0}} * T({f})) / T({f})" if d >= 0 else f"S.rint({{0}} / T({f})) * T({f})"
    else:
        table = _LOCAL_EXPR.get(name) or EXPR.get(name)
        if table is None:
            raise NotImplementedError(f"the CUDA backend has no elementwise kernel for {name!r}")
        e = table.get("i" if tag == "i64" else "f")
        if e is None:
            kind = "integer or boolean" if tag == "i64" else "floating-point"
            raise TypeError(f"{name} is not defined for {kind} values")
    check_names(e, tag)
    e = _T_CALL.sub(_TYPE[tag] + "(", e)
    e = _S_DOT.sub(_S[tag] + ".", e)
    return _MATH_DOT.sub(_MATH[tag] + ".", e)


def cast(dtype: np.dtype, text: str) -> str:
    """``text`` (a value of some compute type) as a value of ``dtype``'s canonical scalar type."""
    if dtype.kind == "b":
        return f"(({text}) != 0)"
    if dtype.kind in "iu":
        return f"np.int64({text})"
    return f"np.{dtype.name}({text})"


def program_body(ops: list, outs: list) -> list[str]:
    """Kernel body lines for ``ops`` = [(name, refs, tag, out dtype, params)], where a ref is
    ``("x", j)`` (input j) or ``("v", k)`` (op k), and ``outs`` = [(ref, dtype)] -> ``y0, y1, ...``."""
    lines = []
    for k, (name, refs, tag, dt, params) in enumerate(ops):
        t = _TYPE[tag]
        names = []
        for i, (kind, j) in enumerate(refs):
            lines.append(f"u{k}_{i} = {t}({kind}{j})")
            names.append(f"u{k}_{i}")
        lines.append(f"v{k} = {cast(dt, expression(name, tag, params).format(*names))}")
    for o, ((kind, j), dt) in enumerate(outs):
        lines.append(f"y{o} = {kind}{j} != 0" if dt.kind == "b" else f"y{o} = {kind}{j}")
    return lines


@lru_cache(maxsize=4096)
def _resolve(name: str, args: tuple) -> tuple:
    ufunc = _UFUNCS[name]
    try:
        return ufunc.resolve_dtypes(args + (None,))
    except Exception as e:  # numpy's _UFuncNoLoopError and friends
        raise TypeError(f"np.{ufunc.__name__}: {e}") from None


def _dtype_arg(x: Any) -> Any:
    return x.dtype if isinstance(x, DeviceArray) else x.dtype_arg()


def _value_for_result_type(x: Any) -> Any:
    if isinstance(x, DeviceArray) or x.dtype is not None:
        return x.dtype
    return x.value


def op_types(name: str, ins: list, params: dict | None) -> tuple[str, np.dtype]:
    """(compute tag, result dtype) of elementwise op ``name`` on these operands, as NumPy types it."""
    if name in _UFUNCS:
        dts = _resolve(name, tuple(_dtype_arg(x) for x in ins))
        return tag_of(dts[0]), np.dtype(dts[-1])
    if name == "select":
        out = np.result_type(*[_value_for_result_type(x) for x in ins[1:]])
        return tag_of(out), np.dtype(out)
    if name == "sinc":
        out = np.result_type(_value_for_result_type(ins[0]), 1.0)
        return tag_of(out), np.dtype(out)
    if name == "round":
        out = np.result_type(_value_for_result_type(ins[0]))
        return tag_of(out), np.dtype(out)
    if name in ("astype", "stop_gradient", "positive", "copy"):
        src = np.result_type(_value_for_result_type(ins[0]))
        out = np.dtype((params or {}).get("dtype", src))
        return tag_of(src), out
    raise NotImplementedError(f"the CUDA backend has no elementwise kernel for {name!r}")


def _bstrides(x: DeviceArray, shape: tuple[int, ...]) -> list[int]:
    """``x``'s element strides broadcast to ``shape`` (0 along broadcast dimensions)."""
    lead = len(shape) - x.ndim
    out = [0] * lead
    for n, s, target in zip(x.shape, x._strides, shape[lead:]):
        out.append(0 if n == 1 and target != 1 else s)
    return out


def _collapse(shape: tuple[int, ...], strides: list[list[int]]) -> tuple[list[int], list[list[int]]]:
    """Drop size-1 dimensions and merge neighbours that are contiguous for every operand."""
    dims: list[tuple[int, list[int]]] = []
    for d, n in enumerate(shape):
        if n == 1:
            continue
        ss = [s[d] for s in strides]
        if dims:
            pn, pss = dims[-1]
            if all(ps == q * n for ps, q in zip(pss, ss)):
                dims[-1] = (pn * n, ss)
                continue
        dims.append((n, ss))
    cshape = [n for n, _ in dims]
    cstrides = [[ss[i] for _, ss in dims] for i in range(len(strides))]
    return cshape, cstrides


def launch_elementwise(
    body: list[str], ins: list, outs: list[DeviceArray], shape: tuple[int, ...], reductions: tuple = ()
) -> None:
    """Run a program over ``shape``: ``ins`` broadcast to it, ``outs`` of exactly that shape.

    ``reductions`` = ((kind, tag, value name, out), ...): each value of the program is also reduced over
    the whole space (sum/prod/max/min) into ``out`` (a size-1 device array), in the same launch."""
    n = math.prod(shape)
    if n == 0:
        for kind, _, _, out in reductions:
            if kind in ("max", "min"):
                raise ValueError(f"zero-size array to reduction operation {kind}imum which has no identity")
            _copy_into(out, _IDENT_VALUE[kind])
        return
    arrays = [x for x in ins if isinstance(x, DeviceArray)] + list(outs)
    cshape, cstrides = _collapse(shape, [_bstrides(a, shape) for a in arrays])
    rank = len(cshape)
    scalar_in = tuple(not isinstance(x, DeviceArray) for x in ins)
    reds = tuple(
        (kind, _TYPE[tag], _IDENT[(kind, "i" if tag == "i64" else "f")].replace("T(", f"{_TYPE[tag]}("), value)
        for kind, tag, value, _ in reductions
    )
    key = ("ew", tuple(body), scalar_in, len(outs), rank, reds)
    kern = _kernel(key, lambda: K.elementwise(len(ins), scalar_in, body, len(outs), rank, CACHE, reds, EW_THREADS))
    args: list = [n, *cshape]
    it = iter(cstrides)
    for x in ins:
        if isinstance(x, DeviceArray):
            args += [x._buf, x._offset, *next(it)]
        else:
            args.append(x.value)
    for z in outs:
        args += [z._buf, z._offset, *next(it)]
    blocks = _grid(n)
    partials = [_buffer(blocks, _COMPUTE_DTYPE[tag]) for _, tag, _, _ in reductions]
    kern[blocks, EW_THREADS](*args, *partials)
    for (kind, tag, _, out), part in zip(reductions, partials):
        load = f"{_TYPE[tag]}(v)"
        _reduce_launch(kind, tag, load, part, 0, [], [], [blocks], [1], 1, blocks, out)


def unalias(x: Any, dst: DeviceArray) -> Any:
    """``x``, or a copy of it if it is a different view of ``dst``'s buffer (threads would race: NumPy
    buffers overlapping operands, ``x[1:] += x[:-1]``). The very same view is safe: each element is read
    and written by one thread."""
    if (
        isinstance(x, DeviceArray)
        and x._buf is dst._buf
        and (x._offset, x._strides, x.shape) != (dst._offset, dst._strides, dst.shape)
    ):
        return copy(x)
    return x


def elementwise(
    name: str, args: Any, params: dict | None = None, out: DeviceArray | None = None, op: str | None = None
) -> DeviceArray:
    """Elementwise op ``name`` (a primitive's name) on broadcast operands, into ``out`` if given."""
    op = op or f"np.{name}"
    if out is not None:
        args = [unalias(a, out) for a in args]
    ins = operands(op, args)
    shape = tuple(np.broadcast_shapes(*[x.shape for x in ins]))
    tag, out_dt = op_types(name, ins, params)
    if out is not None:
        if out.shape != shape:
            raise ValueError(f"{op}: non-broadcastable output operand with shape {out.shape} doesn't match {shape}")
        if not out._writeable:
            raise ValueError(f"{op}: output array is read-only")
    z = empty(shape, out_dt) if out is None else out
    launch_elementwise(_single_body(name, len(ins), tag, out_dt, z.dtype, _freeze(params)), ins, [z], shape)
    return z


def _freeze(params: dict | None) -> tuple:
    return tuple(sorted(params.items())) if params else ()


@lru_cache(maxsize=4096)
def _single_body(name: str, n_in: int, tag: str, out_dt: np.dtype, store_dt: np.dtype, params: tuple) -> tuple:
    """The program of one elementwise op (cached: eager calls make the same few again and again)."""
    return tuple(
        program_body([(name, [("x", j) for j in range(n_in)], tag, out_dt, dict(params))], [(("v", 0), store_dt)])
    )


def _copy_into(dst: DeviceArray, src: Any) -> None:
    """``dst[...] = src`` (broadcast, converted to ``dst``'s dtype)."""
    (s,) = operands("assignment", [unalias(src, dst)])
    shape = tuple(np.broadcast_shapes(s.shape, dst.shape))
    if shape != dst.shape:
        raise ValueError(f"could not broadcast input array from shape {s.shape} into shape {dst.shape}")
    if not dst._writeable:
        raise ValueError("assignment destination is read-only")
    src_dt = s.dtype if isinstance(s, DeviceArray) or s.dtype is not None else np.result_type(s.value)
    body = program_body([("astype", [("x", 0)], tag_of(src_dt), dst.dtype, None)], [(("v", 0), dst.dtype)])
    launch_elementwise(body, [s], [dst], dst.shape)


# ---------------------------------------------------------------------------------------------
# Views
# ---------------------------------------------------------------------------------------------
def view(x: DeviceArray, shape: Any, strides: Any, offset: int, writeable: bool | None = None) -> DeviceArray:
    return DeviceArray(x._buf, tuple(shape), tuple(strides), offset, x._writeable if writeable is None else writeable)


def reshape(x: DeviceArray, shape: Any) -> DeviceArray:
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(n) for n in shape)
    if shape.count(-1) > 1:
        raise ValueError("can only specify one unknown dimension")
    if -1 in shape:
        known = math.prod(n for n in shape if n != -1)
        if known == 0 or x.size % known:
            raise ValueError(f"cannot reshape array of size {x.size} into shape {shape}")
        shape = tuple(x.size // known if n == -1 else n for n in shape)
    if math.prod(shape) != x.size:
        raise ValueError(f"cannot reshape array of size {x.size} into shape {shape}")
    y = contiguous(x)
    return view(y, shape, _c(shape), y._offset)


def _c(shape: tuple[int, ...]) -> tuple[int, ...]:
    out, acc = [], 1
    for n in reversed(shape):
        out.append(acc)
        acc *= max(n, 1)
    return tuple(reversed(out))


def transpose(x: DeviceArray, axes: Any = None) -> DeviceArray:
    nd = x.ndim
    axes = tuple(range(nd))[::-1] if axes is None else tuple(int(a) % nd if nd else int(a) for a in axes)
    if sorted(axes) != list(range(nd)):
        raise ValueError("axes don't match array")
    return view(x, [x.shape[a] for a in axes], [x._strides[a] for a in axes], x._offset)


def broadcast_to(x: DeviceArray, shape: Any) -> DeviceArray:
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(n) for n in shape)
    if tuple(np.broadcast_shapes(x.shape, shape)) != shape:
        raise ValueError(f"operands could not be broadcast together with remapped shapes {x.shape} and {shape}")
    return view(x, shape, _bstrides(x, shape), x._offset, writeable=False)


# ---------------------------------------------------------------------------------------------
# Reductions
# ---------------------------------------------------------------------------------------------
_IDENT = {
    ("sum", "f"): "T(0)", ("prod", "f"): "T(1)", ("max", "f"): "T(-np.inf)", ("min", "f"): "T(np.inf)",
    ("sum", "i"): "T(0)", ("prod", "i"): "T(1)", ("max", "i"): "T(-9223372036854775807 - 1)",
    ("min", "i"): "T(9223372036854775807)", ("any", "i"): "T(0)", ("all", "i"): "T(1)",
}  # fmt: skip
_IDENT_VALUE = {"sum": 0, "prod": 1, "any": False, "all": True}


def reduce_dtype(kind: str, dtype: np.dtype, requested: Any = None) -> np.dtype:
    """NumPy's result dtype of a reduction (``np.sum`` of booleans and small integers is int64)."""
    if kind in ("any", "all"):
        return np.dtype(np.bool_)
    if requested is not None:
        return np.dtype(requested)
    if kind in ("sum", "prod"):
        if dtype.kind == "b" or (dtype.kind == "i" and dtype.itemsize < 8):
            return np.dtype(np.int64)
        if dtype.kind == "u" and dtype.itemsize < 8:
            return np.dtype(np.uint64)
    return dtype


def _group(x: DeviceArray, dims: list[int]) -> tuple[list[int], list[int]]:
    """The shape and strides of ``x`` along ``dims`` (in order), with mergeable neighbours merged."""
    shape, strides = _collapse(tuple(x.shape[d] for d in dims), [[x._strides[d] for d in dims]])
    return shape, strides[0]


def reduce(kind: str, x: DeviceArray, axes: tuple[int, ...], keepdims: bool, dtype: Any = None) -> DeviceArray:
    """``np.sum``/``prod``/``max``/``min``/``any``/``all`` of ``x`` over ``axes`` (normalized ints)."""
    out_dt = reduce_dtype(kind, x.dtype, dtype)
    tag = "i64" if kind in ("any", "all") or out_dt.kind in "iub" else tag_of(out_dt)
    kept = [d for d in range(x.ndim) if d not in axes]
    red = sorted(set(axes))
    out_shape = tuple(x.shape[d] for d in kept)
    final = tuple(1 if d in red else n for d, n in enumerate(x.shape)) if keepdims else out_shape
    Kn = math.prod(x.shape[d] for d in red)
    M = math.prod(out_shape)
    z = empty(out_shape, out_dt)
    if M == 0:
        return reshape(z, final)
    if Kn == 0:
        if kind in ("max", "min"):
            name = "maximum" if kind == "max" else "minimum"
            raise ValueError(f"zero-size array to reduction operation {name} which has no identity")
        _copy_into(z, _IDENT_VALUE[kind])
        return reshape(z, final)
    if not red:
        if kind in ("any", "all"):
            elementwise("ne", [x, 0], out=z)
        else:
            _copy_into(z, x)
        return reshape(z, final)
    kshape, kstr = _group(x, kept)
    rshape, rstr = _group(x, red)
    t = _TYPE[tag]
    load = "np.int64(v != 0)" if kind in ("any", "all") else f"{t}(v)"
    _reduce_launch(kind, tag, load, x._buf, x._offset, kshape, kstr, rshape, rstr, M, Kn, z)
    return reshape(z, final)


def _reduce_launch(
    kind: str, tag: str, load: str, buf: Any, off: int, kshape: list, kstr: list, rshape: list, rstr: list,
    M: int, Kn: int, z: DeviceArray,
) -> None:  # fmt: skip
    rows = not kshape or (bool(rstr) and min(rstr) < min(kstr))
    bx, by = RED_ROWS if rows else RED_COLS
    blocks_x = (M + bx - 1) // bx
    G = max(1, min((Kn + by * RED_ITEMS - 1) // (by * RED_ITEMS), -(-_target_blocks() // blocks_x), 65535))
    t = _TYPE[tag]
    ident = _IDENT[(kind, "i" if tag == "i64" else "f")].replace("T(", f"{t}(")
    final_store = "w != 0" if z.dtype.kind == "b" else "w"
    while True:
        target = z._buf if G == 1 else _buffer(M * G, _COMPUTE_DTYPE[tag])
        store = final_store if G == 1 else "w"
        rk, rr = len(kshape), len(rshape)
        key = ("reduce", kind, tag, ident, load, store, rk, rr, bx, by)
        kern = _kernel(key, lambda: K.reduction(kind, t, ident, load, store, rk, rr, bx, by, CACHE))
        kern[(blocks_x, G), (bx, by)](M, Kn, G, buf, off, *kshape, *kstr, *rshape, *rstr, target)
        if G == 1:
            return
        # Combine the G partial results of each output: a rows reduction of the [M, G] buffer.
        buf, off, kshape, kstr, rshape, rstr, Kn = target, 0, [M], [G], [G], [1], G
        load = "np.int64(v != 0)" if kind in ("any", "all") else f"{t}(v)"
        bx, by = RED_ROWS
        blocks_x = M
        G = max(1, min((Kn + by * RED_ITEMS - 1) // (by * RED_ITEMS), -(-_target_blocks() // blocks_x), 65535))


def arg_reduce(kind: str, x: DeviceArray, axis: int | None, keepdims: bool) -> DeviceArray:
    """``np.argmax``/``np.argmin``: the first extremum (the first NaN, if any) along ``axis``."""
    if axis is None:
        flat = reshape(x, (x.size,))
        r = arg_reduce(kind, flat, 0, False)
        return reshape(r, (1,) * x.ndim) if keepdims else r
    if x.shape[axis] == 0:
        raise ValueError(f"attempt to get {kind} of an empty sequence")
    kept = [d for d in range(x.ndim) if d != axis]
    out_shape = tuple(x.shape[d] for d in kept)
    z = empty(out_shape, np.intp)
    M = math.prod(out_shape)
    if M:
        kshape, kstr = _group(x, kept)
        rshape, rstr = _group(x, [axis])
        rows = not kshape or (bool(rstr) and min(rstr) < min(kstr))
        bx, by = RED_ROWS if rows else RED_COLS
        t = _TYPE["i64" if x.dtype.kind in "iub" else tag_of(x.dtype)]
        rk, rr = len(kshape), len(rshape)
        kern = _kernel(("argred", kind, t, rk, rr, bx, by), lambda: K.arg_reduction(kind, t, rk, rr, bx, by, CACHE))
        kern[((M + bx - 1) // bx, 1), (bx, by)](
            M, x.shape[axis], x._buf, x._offset, *kshape, *kstr, *rshape, *rstr, z._buf
        )
    if keepdims:
        return reshape(z, tuple(1 if d == axis else n for d, n in enumerate(x.shape)))
    return z


# ---------------------------------------------------------------------------------------------
# Scans
# ---------------------------------------------------------------------------------------------
def scan(kind: str, x: DeviceArray, axis: int | None) -> DeviceArray:
    """``np.cumsum`` (kind "sum") / ``np.cumprod`` ("prod") along ``axis`` (None: flattened)."""
    out_dt = reduce_dtype(kind, x.dtype)
    if axis is None:
        x, axis = reshape(x, (x.size,)), 0
    x = contiguous(x)
    z = empty(x.shape, out_dt)
    if x.size == 0:
        return z
    A, Kn, B = math.prod(x.shape[:axis]), x.shape[axis], math.prod(x.shape[axis + 1 :])
    _scan_into(kind, tag_of(out_dt), x._buf, x._offset, z._buf, A, Kn, B)
    return z


def _scan_into(kind: str, tag: str, a: Any, off: int, z: Any, A: int, Kn: int, B: int) -> None:
    t = _TYPE[tag]
    ident = f"{t}({0 if kind == 'sum' else 1})"
    L = SCAN_CHUNK
    C = (Kn + L - 1) // L
    tot = _buffer(A * C * B, _COMPUTE_DTYPE[tag])
    k1 = _kernel(("scan", kind, t), lambda: K.scan_chunks(kind, t, ident, CACHE))
    k1[_grid(A * C * B), EW_THREADS](A, Kn, B, L, C, a, off, z, tot)
    if C > 1:
        ts = _buffer(A * C * B, _COMPUTE_DTYPE[tag])
        _scan_into(kind, tag, tot, 0, ts, A, C, B)
        k3 = _kernel(("scanadd", kind), lambda: K.scan_add_back(kind, CACHE))
        k3[_grid(A * Kn * B), EW_THREADS](A, Kn, B, L, C, z, ts)


# ---------------------------------------------------------------------------------------------
# Matrix products
# ---------------------------------------------------------------------------------------------
def matmul(a: DeviceArray, b: DeviceArray) -> DeviceArray:
    """``np.matmul`` with NumPy's rules (1-D operands, broadcast batch dimensions)."""
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("matmul: Input operand does not have enough dimensions")
    a2 = view(a, (1,) + a.shape, (0,) + a._strides, a._offset) if a.ndim == 1 else a
    b2 = view(b, b.shape + (1,), b._strides + (0,), b._offset) if b.ndim == 1 else b
    M, Ka = a2.shape[-2:]
    Kb, N = b2.shape[-2:]
    if Ka != Kb:
        raise ValueError(
            f"matmul: Input operand 1 has a mismatch in its core dimension 0, with gufunc signature "
            f"(n?,k),(k,m?)->(n?,m?) (size {Kb} is different from {Ka})"
        )
    batch = tuple(np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2]))
    out_dt = np.result_type(a.dtype, b.dtype)
    z = empty(batch + (M, N), out_dt)
    if z.size:
        if Ka == 0:
            _copy_into(z, 0)
        else:
            _matmul_launch(a2, b2, batch, M, N, Ka, z)
    shape = batch + ((M,) if a.ndim > 1 else ()) + ((N,) if b.ndim > 1 else ())
    return z if shape == z.shape else reshape(z, shape)


def _matmul_launch(a: DeviceArray, b: DeviceArray, batch: tuple, M: int, N: int, Kn: int, z: DeviceArray) -> None:
    qa = _bstrides(view(a, a.shape[:-2], a._strides[:-2], a._offset), batch)
    qb = _bstrides(view(b, b.shape[:-2], b._strides[:-2], b._offset), batch)
    qshape, (qa, qb) = _collapse(batch, [qa, qb])
    NB = math.prod(batch)
    tag = tag_of(z.dtype)
    t = _TYPE[tag]
    bm, bn, bk, tm, tn = MM_TILE
    store = "w != 0" if z.dtype.kind == "b" else "w"
    rb = len(qshape)
    kern = _kernel(("mm", t, rb, MM_TILE, store), lambda: K.matmul(t, rb, bm, bn, bk, tm, tn, store, CACHE))
    grid = ((N + bn - 1) // bn, (M + bm - 1) // bm, min(NB, 65535))
    kern[grid, (bm // tm) * (bn // tn)](
        NB, M, N, Kn, a._buf, a._offset, a._strides[-2], a._strides[-1],
        b._buf, b._offset, b._strides[-2], b._strides[-1], z._buf, *qshape, *qa, *qb,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Host round trips (documented: numpy.linalg, argsort, convolution and pooling)
# ---------------------------------------------------------------------------------------------
def host_call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn`` on host copies of the device arrays among ``args``; array results come back to the device."""
    hargs = [to_host(a) if isinstance(a, DeviceArray) else a for a in args]
    hkw = {k: to_host(v) if isinstance(v, DeviceArray) else v for k, v in kwargs.items()}
    return _back(fn(*hargs, **hkw))


def _back(r: Any) -> Any:
    if isinstance(r, np.ndarray):
        return from_host(r)
    if isinstance(r, tuple):
        items = [_back(v) for v in r]
        return type(r)(*items) if hasattr(type(r), "_fields") else tuple(items)
    return r
