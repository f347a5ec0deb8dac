"""Lowering rules: how one equation of a Wengert list becomes ops of the CPU executor.

``classify(eqn)`` says what an equation is for the planner:

- ``View``: a movement primitive whose result is a view of its input (reshape, transpose,
  broadcast_to, basic indexing, stop_gradient): no code, only a new layout of the same memory;
- ``Ew``: elementwise, a short list of register ops (usually one; a float32 result adds a rounding
  op; ``round``, ``select`` and ``astype`` take a few);
- ``Reduce``: reduce_sum/prod/max/min/any/all, folded into its output by the group that computes
  its input (``ops.OP_ACC``);
- ``Scan``: argmax/argmin/cumsum/cumprod along one axis;
- ``Matmul``: a float matmul small enough that a loop beats a call into BLAS (``ops.MATMUL_MAX``);
- ``None``: anything else runs on the host with the primitive's own implementation (contractions
  call BLAS through NumPy, linear algebra LAPACK, conv/pool their Numba kernels, user primitives
  their Python function), as do dtypes the register files do not hold exactly (float16, complex,
  integer loops other than int64, casts that would wrap).

An op's arguments are ``("x", k, file, dtype)`` (input ``k`` of the equation, in register file
``file``; ``dtype`` is NumPy's loop dtype, used to convert a literal the way NumPy does) or
``("t", j)`` (the result of op ``j`` of the same equation). Every rule follows NumPy's type
resolution (``ufunc.resolve_dtypes``), so results have NumPy's dtypes and values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gradjit.primitives import ARRAY, BINARY_UFUNCS, UNARY_UFUNCS
from gradjit.wengert import Eqn, Lit

from . import ops
from .ops import F64, I64

F8, F4, I8, I4, B1 = (np.dtype(t) for t in (np.float64, np.float32, np.int64, np.int32, np.bool_))
UFUNCS = {**UNARY_UFUNCS, **BINARY_UFUNCS}
VIEWS = frozenset(["reshape", "transpose", "broadcast_to", "getitem", "stop_gradient"])
REDUCES = frozenset(ops.ACC_OF_PRIM)
SCANS = {"argmax": ops.SCAN_ARGMAX, "argmin": ops.SCAN_ARGMIN, "cumsum": ops.SCAN_CUMSUM, "cumprod": ops.SCAN_CUMPROD}
# On booleans NumPy's add is "or" and multiply is "and"; these ops keep 0/1 as they are.
_BOOL_LOOP = {"add": "logical_or", "mul": "logical_and"} | dict.fromkeys(["abs", "floor", "ceil", "trunc"], "copy")
_BOOL_SAFE = frozenset(
    "maximum minimum fmax fmin bitwise_and bitwise_or bitwise_xor eq ne lt le gt ge logical_and logical_or "
    "logical_xor logical_not isnan isinf isfinite".split()
)
_INT_COPY = frozenset(["floor", "ceil", "trunc", "positive"])
_SAME_AS = {"positive": "copy", "fabs": "abs"}  # primitives that are another op of the table


def file_of(dtype: np.dtype) -> int | None:
    """The register file that holds values of ``dtype`` exactly, or None."""
    code = ops.DTYPE_CODE.get(np.dtype(dtype))
    return None if code is None else ops.FILE_OF_DTYPE[code]


@dataclass
class Ew:
    ops: list[tuple[str, int, list[tuple]]]  # (name, file, args); the last op's result is the value


@dataclass
class Reduce:
    acc: int  # ops.ACC_*
    file: int  # the file the input is folded in
    identity: float | int


@dataclass
class Scan:
    op: int  # ops.SCAN_*
    file: int
    round32: bool  # a float32 running sum/product is rounded at every step, as NumPy's is


@dataclass
class View:
    pass


@dataclass
class Matmul:
    pass


@dataclass
class Scatter:
    """``index_add``/``index_set`` with basic indexing (no index arrays): the output is a copy of ``x``,
    then ``v`` is added to (or stored into) a view of it; two elementwise passes, no gathers."""

    add: bool
    file: int


def _lit_type(v: Any) -> Any:
    if isinstance(v, (bool, np.bool_)):
        return B1
    if isinstance(v, np.generic):
        return v.dtype
    if isinstance(v, int):
        return int if -(2**63) <= v < 2**63 else None
    if isinstance(v, float):
        return float
    return None


def _in_type(a: Any) -> Any:
    return _lit_type(a.value) if type(a) is Lit else a.dtype


def _round32(out: np.dtype, ops_: list) -> list:
    if out == F4:
        ops_.append(("round32", F64, [("t", len(ops_) - 1)]))
    return ops_


def _ufunc(eqn: Eqn) -> Ew | None:
    name = eqn.prim.name
    types_ = [_in_type(a) for a in eqn.ins]
    if any(t is None for t in types_):
        return None
    try:
        loop = UFUNCS[name].resolve_dtypes((*types_, None))
    except (TypeError, ValueError):
        return None
    cdt, out = loop[0], loop[-1]
    if out != eqn.out.dtype or any(t != cdt for t in loop[:-1]):
        return None
    name = _SAME_AS.get(name, name)
    if cdt == B1:
        name = _BOOL_LOOP.get(name, name if name in _BOOL_SAFE else None)
        file = I64
    elif cdt == I8:
        if name in _INT_COPY:
            name = "copy"
        file = I64
    elif cdt in (F8, F4):
        file = F64
    else:
        return None
    if name is None or name not in ops.EXPR or ops.expr(name, file) is None or (name == "pow" and file == I64):
        return None
    args = [("x", k, file, cdt) for k in range(len(eqn.ins))]
    return Ew(_round32(out, [(name, file, args)]))


def _truth(k: int, a: Any, file: int, ops_: list) -> tuple:
    """Argument: input ``k`` as 0/1 in ``file`` (a condition, as ``np.where`` reads it)."""
    t = _in_type(a)
    if t == B1 or t is None:
        return ("x", k, file, B1)
    natural = I64 if t in (int, I8, I4) else F64
    ops_.append(("nonzero", natural, [("x", k, natural, t)]))
    if natural != file:
        ops_.append(("cvt", file, [("t", len(ops_) - 1)]))
    return ("t", len(ops_) - 1)


def _select(eqn: Eqn) -> Ew | None:
    out = eqn.out.dtype
    file = file_of(out)
    if file is None or out == I4 or any(_in_type(a) is None for a in eqn.ins):
        return None
    ops_: list = []
    cond = _truth(0, eqn.ins[0], file, ops_)
    ops_.append(("select", file, [cond, ("x", 1, file, out), ("x", 2, file, out)]))
    return Ew(ops_)


def _astype(eqn: Eqn) -> Ew | None:
    a = eqn.ins[0]
    src, dst = _in_type(a), eqn.out.dtype
    fs = I64 if src in (int, I8, I4, B1) else F64 if src in (float, F8, F4) else None
    if fs is None or file_of(dst) is None:
        return None
    x = ("x", 0, fs, src)
    if dst == B1:
        return Ew([("nonzero", fs, [x])])
    if dst in (F8, F4):
        ops_ = [("copy", F64, [x])] if fs == F64 else [("cvt", F64, [x])]
        return Ew(_round32(dst, ops_) if src != F4 else ops_)
    if dst == I8 or (dst == I4 and src in (I4, B1)):
        return Ew([("copy", I64, [x])] if fs == I64 else [("cvt", I64, [x])])
    return None  # a cast that wraps (to int32): NumPy's semantics on the host


def _round(eqn: Eqn) -> Ew | None:
    a, d = eqn.ins[0], int(eqn.params.get("decimals", 0))
    t = _in_type(a)
    if t in (I8, I4, B1, int) and d >= 0:
        return Ew([("copy", I64, [("x", 0, I64, t)])]) if eqn.out.dtype in (I8, I4, B1) else None
    if t not in (F8, F4, float) or eqn.out.dtype not in (F8, F4):
        return None
    out = eqn.out.dtype
    x = ("x", 0, F64, out)
    if d == 0:
        return Ew(_round32(out, [("rint", F64, [x])]))
    f = float(10.0 ** abs(d))
    first, last = ("mul", "div") if d > 0 else ("div", "mul")
    ops_ = _round32(out, [(first, F64, [x, ("c", f, out)])])
    ops_.append(("rint", F64, [("t", len(ops_) - 1)]))
    ops_.append((last, F64, [("t", len(ops_) - 1), ("c", f, out)]))
    return Ew(_round32(out, ops_))


def _sinc(eqn: Eqn) -> Ew | None:
    out = eqn.out.dtype
    if out not in (F8, F4) or _in_type(eqn.ins[0]) is None:
        return None
    return Ew(_round32(out, [("sinc", F64, [("x", 0, F64, out)])]))


def _reduce(eqn: Eqn) -> Reduce | None:
    x = eqn.ins[0]
    if type(x) is Lit:
        return None
    acc = ops.ACC_OF_PRIM[eqn.prim.name]
    di, do = x.dtype, eqn.out.dtype
    if acc in (ops.ACC_SUM, ops.ACC_PROD):
        if do in (F8, F4):
            return Reduce(acc, F64, 0.0 if acc == ops.ACC_SUM else 1.0)
        if do == I8 and di in (I8, I4, B1):
            return Reduce(acc, I64, 0 if acc == ops.ACC_SUM else 1)
        return None
    if acc in (ops.ACC_MAX, ops.ACC_MIN):
        big = acc == ops.ACC_MIN
        if do != di:
            return None
        if do in (F8, F4):
            return Reduce(acc, F64, float("inf") if big else float("-inf"))
        if do == I8:
            return Reduce(acc, I64, 2**63 - 1 if big else -(2**63))
        if do == B1:
            return Reduce(acc, I64, 1 if big else 0)
        return None
    if do != B1 or file_of(di) is None:
        return None
    return Reduce(acc, file_of(di), 1 if acc == ops.ACC_ALL else 0)


def _scan(eqn: Eqn) -> Scan | None:
    x = eqn.ins[0]
    if type(x) is Lit or file_of(x.dtype) is None:
        return None
    op = SCANS[eqn.prim.name]
    if op in (ops.SCAN_ARGMAX, ops.SCAN_ARGMIN):
        return Scan(op, file_of(x.dtype), False) if eqn.out.dtype == I8 else None
    do = eqn.out.dtype
    if do in (F8, F4) or (do == I8 and x.dtype in (I8, I4, B1)):
        return Scan(op, file_of(do), do == F4)
    return None


def _matmul(eqn: Eqn) -> Matmul | Ew | None:
    """A small float matmul runs in the interpreter; a large one calls BLAS on the host; an outer
    product (contraction length 1, both operands matrices) is the elementwise product of the
    broadcast operands (``a[..., i, 0] * b[..., 0, j]``: one rounding, as BLAS; BLAS's k=1 product is
    several times slower than writing the result)."""
    a, b = eqn.ins
    if type(a) is Lit or type(b) is Lit or not (a.dtype == b.dtype == eqn.out.dtype) or a.dtype not in (F8, F4):
        return None
    if len(a.shape) >= 2 and len(b.shape) >= 2 and a.shape[-1] == 1:
        return Ew(_round32(eqn.out.dtype, [("mul", F64, [("x", 0, F64, a.dtype), ("x", 1, F64, a.dtype)])]))
    m = a.shape[-2] if len(a.shape) > 1 else 1
    n = b.shape[-1] if len(b.shape) > 1 else 1
    k = a.shape[-1]
    batch = eqn.out.shape[: len(eqn.out.shape) - (len(a.shape) > 1) - (len(b.shape) > 1)]
    if len(batch) + 3 > ops.MAXR or int(np.prod(batch)) * m * n * k > ops.MATMUL_MAX:
        return None
    return Matmul()


def _basic(tree: tuple) -> bool:
    """Whether an index is basic (ints, slices, None, Ellipsis): its result is a view."""
    return all(t is not ARRAY and (t is None or t is Ellipsis or isinstance(t, (int, slice))) for t in tree)


def _is_view(eqn: Eqn) -> bool:
    name = eqn.prim.name
    if name == "getitem":
        return _basic(eqn.params["tree"])
    return name in VIEWS


def _scatter(eqn: Eqn) -> Scatter | None:
    if len(eqn.ins) != 2 or type(eqn.ins[1]) is Lit or not _basic(eqn.params["tree"]):
        return None
    x, v, out = eqn.ins[0], eqn.ins[1], eqn.out.dtype
    if x.dtype != out or out not in (F8, F4, I8):
        return None
    if not (v.dtype == out or (out in (F8, F4) and v.dtype in (F8, F4))):
        return None  # NumPy's casts of other mixes: on the host
    return Scatter(eqn.prim.name == "index_add", file_of(out))


_RULES = {"select": _select, "astype": _astype, "round": _round, "sinc": _sinc, "matmul": _matmul}
_RULES["index_add"] = _RULES["index_set"] = _scatter


def classify(eqn: Eqn) -> Ew | Reduce | Scan | View | Matmul | Scatter | None:
    """What the planner does with ``eqn`` (None: run it on the host)."""
    name = eqn.prim.name
    if eqn.prim.kind == "user" or any(np.ndim(a.value) if type(a) is Lit else 0 for a in eqn.ins):
        return None
    shapes = [eqn.out.shape] + [a.shape for a in eqn.ins if type(a) is not Lit]
    if any(len(s) > ops.MAXR or 0 in s for s in shapes):
        return None  # more axes than the encoding holds, or nothing to compute
    if any(type(a) is not Lit and file_of(a.dtype) is None for a in eqn.ins) and name != "stop_gradient":
        return None
    if _is_view(eqn):
        return View()
    if name in _RULES:
        return _RULES[name](eqn)
    if name in UFUNCS:
        return _ufunc(eqn)
    if name in REDUCES:
        return _reduce(eqn)
    if name in SCANS:
        return _scan(eqn)
    return None
