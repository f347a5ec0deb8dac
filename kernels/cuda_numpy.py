"""NumPy's API on device arrays: what ``DeviceArray.__array_ufunc__``/``__array_function__`` run.

Two tiers:

1. **Direct**: every NumPy call a primitive's implementation makes (``gradjit.primitives``: ufuncs,
   ``np.sum(x, axis=(...), keepdims=...)``, ``np.reshape``, ``np.where``, ``np.einsum``, ...), the
   ufunc methods ``reduce``/``accumulate``/``at``, metadata (``np.shape``, ``np.result_type``) and
   creation with ``like=``. These run CUDA kernels (``gradjit.kernels.cuda``).
2. **Composites**: any other NumPy function gradjit supports on traced values (``np.mean``,
   ``np.stack``, ``np.pad``, ``np.linalg.norm``, ...) runs gradjit's own composite
   (``gradjit.numpy_api.HANDLED``) on the device arrays wrapped as tracers of a private trace that
   is thrown away afterwards: the composite binds primitives, whose implementations come back to
   tier 1. So the device supports exactly the NumPy surface tracing supports, with one definition.

Arguments that are tracers (a traced computation on device values) make both protocols return
``NotImplemented``, so the tracer's own protocol records the operation.

Invariant: tier 1 never calls tier 2 for the same function (no dispatch loops).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from gradjit.errors import UnsupportedOperationError
from gradjit.placement import DeviceArray, PlacementError
from gradjit.primitives import UFUNC_TO_PRIM

from . import cuda as C
from . import cuda_index as X

DIRECT: dict[Callable, Callable] = {}


def direct(*fns: Callable) -> Callable:
    def register(impl: Callable) -> Callable:
        for f in fns:
            DIRECT[f] = impl
        return impl

    return register


def _foreign(x: Any) -> bool:
    """A value with its own NumPy protocol that is not ours or NumPy's (a gradjit tracer)."""
    return hasattr(type(x), "__array_ufunc__") and not isinstance(x, (DeviceArray, np.ndarray, np.generic))


def _unsupported(op: str) -> UnsupportedOperationError:
    return UnsupportedOperationError(
        op,
        "is not supported on device arrays",
        "Copy the data to the host with gradjit.to_host(x) for this step, or express it with supported "
        "NumPy operations.",
    )


def _axes(axis: Any, nd: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(nd))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        a = int(a)
        if not -nd <= a < max(nd, 1):
            raise np.exceptions.AxisError(a, nd)
        out.append(a % nd if nd else 0)
    if len(set(out)) != len(out):
        raise ValueError("duplicate value in 'axis'")
    return tuple(sorted(out))


def _device(x: Any, op: str) -> DeviceArray:
    """``x`` as a device array (a host scalar is uploaded; a host array raises)."""
    if isinstance(x, DeviceArray):
        return x
    (o,) = C.operands(op, [x])
    return C.from_host(np.asarray(o.value, dtype=o.dtype) if o.dtype is not None else np.asarray(o.value))


# ---------------------------------------------------------------------------------------------
# Ufuncs (NEP 13)
# ---------------------------------------------------------------------------------------------
_REDUCE_KIND = {np.add: "sum", np.multiply: "prod", np.maximum: "max", np.minimum: "min",
                np.logical_and: "all", np.logical_or: "any"}  # fmt: skip


def array_ufunc(ufunc: np.ufunc, method: str, inputs: tuple, kwargs: dict) -> Any:
    out = kwargs.get("out")
    outs = out if isinstance(out, tuple) else (() if out is None else (out,))
    if any(_foreign(x) for x in inputs + tuple(outs)):
        return NotImplemented
    op = f"np.{ufunc.__name__}" + ("" if method == "__call__" else f".{method}")
    if method == "__call__":
        return _call(ufunc, op, inputs, dict(kwargs), outs)
    if method == "reduce" and ufunc in _REDUCE_KIND:
        (x,) = inputs
        axis = kwargs.get("axis", 0)
        x = _device(x, op)
        r = C.reduce(
            _REDUCE_KIND[ufunc], x, _axes(axis, x.ndim), bool(kwargs.get("keepdims", False)), kwargs.get("dtype")
        )
        return _into(r, outs)
    if method == "accumulate" and ufunc in (np.add, np.multiply):
        (x,) = inputs
        x = _device(x, op)
        r = C.scan("sum" if ufunc is np.add else "prod", x, _axes(kwargs.get("axis", 0), x.ndim)[0])
        return _into(r, outs)
    if method == "at" and ufunc is np.add:
        a, idx, *rest = inputs
        if not isinstance(a, DeviceArray):
            raise PlacementError(op, "the target of np.add.at must be the device array", None)
        X.index_add(a, idx, rest[0] if rest else 1)
        return None
    raise _unsupported(op)


def _into(r: DeviceArray, outs: tuple) -> DeviceArray:
    if not outs or outs[0] is None:
        return r
    C._copy_into(outs[0], r)
    return outs[0]


def _call(ufunc: np.ufunc, op: str, inputs: tuple, kwargs: dict, outs: tuple) -> Any:
    kwargs.pop("out", None)
    where = kwargs.pop("where", True)
    dtype = kwargs.pop("dtype", None)
    for k in ("casting", "order", "subok"):
        kwargs.pop(k, None)
    if kwargs or len(outs) > 1:
        raise UnsupportedOperationError(op, f"unsupported keyword argument(s) {sorted(kwargs)} on device arrays")
    target = outs[0] if outs else None
    if target is not None and not isinstance(target, DeviceArray):
        raise PlacementError(op, "out= must be a device array when the operands are on the device", None)
    if dtype is not None:
        inputs = tuple(astype(x, dtype, False) if isinstance(x, DeviceArray) else x for x in inputs)
    if ufunc is np.matmul:
        a, b = (_device_operand(x, op, inputs) for x in inputs)
        return _into(C.matmul(a, b), outs)
    prim = UFUNC_TO_PRIM.get(ufunc)
    if prim is None or prim.kind != "elementwise":
        raise _unsupported(op)
    name = prim.name
    if ufunc is np.bitwise_not and any(getattr(x, "dtype", np.dtype(bool)).kind != "b" for x in inputs):
        raise _unsupported("np.invert of integers")
    if where is True:
        return C.elementwise(name, inputs, out=target, op=op)
    result = C.elementwise(name, inputs, op=op)
    if target is None:  # NumPy leaves masked-out entries uninitialized; gradjit makes them 0
        return C.elementwise("select", [where, result, 0], op=op)
    return C.elementwise("select", [where, result, target], out=target, op=op)


def _device_operand(x: Any, op: str, inputs: tuple) -> DeviceArray:
    if isinstance(x, DeviceArray):
        return x
    if isinstance(x, np.ndarray) and x.ndim:
        raise C.placement_error(op, inputs, [i for i, y in enumerate(inputs) if y is x])
    raise ValueError(f"{op}: Input operand does not have enough dimensions")


# ---------------------------------------------------------------------------------------------
# Functions (NEP 18)
# ---------------------------------------------------------------------------------------------
def array_function(func: Callable, types: Any, args: tuple, kwargs: dict) -> Any:
    if any(not issubclass(t, (DeviceArray, np.ndarray)) for t in types):
        return NotImplemented
    impl = DIRECT.get(func)
    if impl is not None:
        return impl(*args, **kwargs)
    return _composite(func, args, kwargs)


def _composite(func: Callable, args: tuple, kwargs: dict) -> Any:
    from gradjit import numpy_api, pytree
    from gradjit.tracing import _STACK, Trace, Tracer

    impl = numpy_api.HANDLED.get(func)
    if impl is None:
        raise _unsupported(numpy_api._name(func))
    trace = Trace(len(_STACK) + 1)  # private: never on the stack, discarded afterwards

    def wrap(x: Any) -> Any:
        return trace.new_input(x) if isinstance(x, DeviceArray) else x

    try:
        out = impl(*pytree.tree_map(wrap, list(args)), **{k: pytree.tree_map(wrap, v) for k, v in kwargs.items()})
    finally:
        trace.active = False

    def unwrap(x: Any) -> Any:
        return x._value if type(x) is Tracer and x._trace is trace else x

    return pytree.tree_map(unwrap, out)


# -- metadata ----------------------------------------------------------------------------------
@direct(np.shape)
def _shape(a: Any) -> tuple[int, ...]:
    return a.shape if isinstance(a, DeviceArray) else np.shape(a)


@direct(np.ndim)
def _ndim(a: Any) -> int:
    return a.ndim if isinstance(a, DeviceArray) else np.ndim(a)


@direct(np.size)
def _size(a: Any, axis: Any = None) -> int:
    s = _shape(a)
    return math.prod(s) if axis is None else s[axis]


@direct(np.result_type)
def _result_type(*arrays_and_dtypes: Any) -> np.dtype:
    return np.result_type(*[a.dtype if isinstance(a, DeviceArray) else a for a in arrays_and_dtypes])


# -- creation ------------------------------------------------------------------------------------
def astype(x: DeviceArray, dtype: Any, copy: bool = True) -> DeviceArray:
    dt = np.dtype(dtype)
    if dt == x.dtype and not copy:
        return x
    C.tag_of(dt)
    return C.copy(x, dt)


@direct(np.copy)
def _copy(a: Any, order: str = "K", subok: bool = False) -> Any:
    return C.copy(a) if isinstance(a, DeviceArray) else np.copy(a)


@direct(np.asarray, np.asanyarray, np.array, np.ascontiguousarray)
def _asarray(a: Any, dtype: Any = None, *args: Any, copy: Any = None, **kwargs: Any) -> DeviceArray:
    # Only reached with like=device_array (or a device array argument): the result is on the device.
    if isinstance(a, DeviceArray):
        if dtype is not None and np.dtype(dtype) != a.dtype:
            return C.copy(a, dtype)
        return C.copy(a) if copy else (C.contiguous(a) if a.is_contiguous is False else a)
    return C.from_host(np.asarray(a, dtype=dtype))


@direct(np.zeros, np.empty)
def _zeros(shape: Any, dtype: Any = float, order: str = "C", **kw: Any) -> DeviceArray:
    return C.full(_shape_tuple(shape), 0, dtype)


@direct(np.ones)
def _ones(shape: Any, dtype: Any = float, order: str = "C", **kw: Any) -> DeviceArray:
    return C.full(_shape_tuple(shape), 1, dtype)


@direct(np.full)
def _full(shape: Any, fill_value: Any, dtype: Any = None, order: str = "C", **kw: Any) -> DeviceArray:
    if isinstance(fill_value, DeviceArray):
        return C.copy(C.broadcast_to(fill_value, _shape_tuple(shape)), dtype or fill_value.dtype)
    return C.full(_shape_tuple(shape), fill_value, dtype or np.result_type(fill_value))


def _creation_on_host(fn: Callable) -> Callable:
    def make(*args: Any, **kwargs: Any) -> DeviceArray:
        return C.from_host(fn(*args, **kwargs))  # small index/identity arrays: built on the host

    return make


for _fn in (np.arange, np.eye, np.identity, np.linspace, np.tri):
    DIRECT[_fn] = _creation_on_host(_fn)


def _like(fill: Any) -> Callable:
    def like(a: Any, dtype: Any = None, order: str = "K", subok: bool = True, shape: Any = None, **kw: Any) -> Any:
        s = a.shape if shape is None else _shape_tuple(shape)
        return C.full(s, fill, dtype or a.dtype)

    return like


DIRECT[np.zeros_like] = _like(0)
DIRECT[np.empty_like] = _like(0)
DIRECT[np.ones_like] = _like(1)


@direct(np.full_like)
def _full_like(a: Any, fill_value: Any, dtype: Any = None, order: str = "K", subok: bool = True,
               shape: Any = None, **kw: Any) -> Any:  # fmt: skip
    s = a.shape if shape is None else _shape_tuple(shape)
    return C.full(s, fill_value, dtype or a.dtype)


def _shape_tuple(shape: Any) -> tuple[int, ...]:
    return (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(n) for n in shape)


def item(x: DeviceArray, *args: Any) -> Any:
    if args:
        return item(X.getitem(x, args if len(args) > 1 else args[0]))
    if x.size != 1:
        raise ValueError("can only convert an array of size 1 to a Python scalar")
    v = x if x.ndim == 0 else C.reshape(x, ())
    return C.item(v).item()


# -- elementwise that are not ufuncs --------------------------------------------------------------
@direct(np.where)
def _where(condition: Any, x: Any = None, y: Any = None) -> Any:
    if x is None and y is None:
        return X.nonzero(_device(condition, "np.where"))
    if x is None or y is None:
        raise ValueError("either both or neither of x and y should be given")
    return C.elementwise("select", [condition, x, y], op="np.where")


@direct(np.sinc)
def _sinc(x: Any) -> Any:
    return C.elementwise("sinc", [x], op="np.sinc")


@direct(np.round, np.around)
def _round(a: Any, decimals: int = 0, out: Any = None) -> Any:
    return C.elementwise("round", [a], {"decimals": int(decimals)}, out=out, op="np.round")


# -- reductions -----------------------------------------------------------------------------------
def _reducer(kind: str, op: str) -> Callable:
    def reduce(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False, **kw: Any) -> Any:
        if kw.get("initial", np._NoValue) is not np._NoValue or kw.get("where", True) is not True:
            raise UnsupportedOperationError(op, "initial= and where= are not supported on device arrays")
        a = _device(a, op)
        return _into(C.reduce(kind, a, _axes(axis, a.ndim), bool(keepdims), dtype), (out,) if out is not None else ())

    return reduce


for _f, _k in ((np.sum, "sum"), (np.prod, "prod"), (np.max, "max"), (np.amax, "max"), (np.min, "min"),
               (np.amin, "min"), (np.any, "any"), (np.all, "all")):  # fmt: skip
    DIRECT[_f] = _reducer(_k, f"np.{_f.__name__}")


def _arg(kind: str) -> Callable:
    def arg(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False) -> Any:
        a = _device(a, f"np.{kind}")
        ax = None if axis is None else _axes(axis, a.ndim)[0]
        return C.arg_reduce(kind, a, ax, bool(keepdims))

    return arg


DIRECT[np.argmax] = _arg("argmax")
DIRECT[np.argmin] = _arg("argmin")


def _scanner(kind: str) -> Callable:
    def scan(a: Any, axis: Any = None, dtype: Any = None, out: Any = None) -> Any:
        a = _device(a, "np.cumsum" if kind == "sum" else "np.cumprod")
        if dtype is not None:
            a = astype(a, dtype, False)
        r = C.scan(kind, a, None if axis is None else _axes(axis, a.ndim)[0])
        return _into(r, (out,) if out is not None else ())

    return scan


DIRECT[np.cumsum] = _scanner("sum")
DIRECT[np.cumprod] = _scanner("prod")


@direct(np.nonzero)
def _nonzero(a: Any) -> tuple:
    return X.nonzero(_device(a, "np.nonzero"))


@direct(np.argsort)
def _argsort(a: Any, axis: int = -1, kind: Any = None, order: Any = None, stable: Any = None) -> Any:
    return C.host_call(np.argsort, a, axis=axis, kind=kind, stable=stable)


# -- movement -------------------------------------------------------------------------------------
@direct(np.reshape)
def _reshape(a: Any, /, shape: Any = None, order: str = "C", *, newshape: Any = None, copy: Any = None) -> Any:
    if order != "C":
        raise UnsupportedOperationError("np.reshape", "only order='C' is supported on device arrays")
    return C.reshape(_device(a, "np.reshape"), shape if shape is not None else newshape)


@direct(np.transpose)
def _transpose(a: Any, axes: Any = None) -> Any:
    return C.transpose(_device(a, "np.transpose"), axes)


@direct(np.broadcast_to)
def _broadcast_to(array: Any, shape: Any, subok: bool = False) -> Any:
    return C.broadcast_to(_device(array, "np.broadcast_to"), shape)


@direct(np.ravel)
def _ravel(a: Any, order: str = "C") -> Any:
    a = _device(a, "np.ravel")
    return C.reshape(a, (a.size,))


@direct(np.concatenate)
def _concatenate(arrays: Any, axis: Any = 0, out: Any = None, dtype: Any = None, casting: Any = None) -> Any:
    r = X.concatenate(list(arrays), axis)
    if dtype is not None:
        r = astype(r, dtype, False)
    return _into(r, (out,) if out is not None else ())


@direct(np.matmul)
def _matmul(a: Any, b: Any, out: Any = None, **kw: Any) -> Any:
    return _into(C.matmul(_device_operand(a, "np.matmul", (a, b)), _device_operand(b, "np.matmul", (a, b))),
                 (out,) if out is not None else ())  # fmt: skip


# -- einsum: diagonals as strided views, lone indices summed, pairs contracted by batched matmul ----
@direct(np.einsum)
def _einsum(subscripts: Any, *operands: Any, optimize: Any = False, **kw: Any) -> Any:
    if not isinstance(subscripts, str) or "..." in subscripts or "->" not in subscripts or kw:
        return _composite(np.einsum, (subscripts, *operands), {"optimize": optimize, **kw})
    ins, out = subscripts.replace(" ", "").split("->")
    terms = ins.split(",")
    if len(terms) != len(operands):
        raise ValueError("more operands provided to einstein sum function than specified in the subscripts string")
    ops = []
    for letters, x in zip(terms, operands):
        x = _device(x, "np.einsum")
        if len(letters) != x.ndim:
            raise ValueError(f"operand has more dimensions than subscripts given in einstein sum, {letters!r}")
        ops.append(_diagonals(x, letters))
    sizes: dict[str, int] = {}
    for x, letters in ops:
        for c, n in zip(letters, x.shape):
            if sizes.setdefault(c, n) != n:
                raise ValueError(f"operands could not be broadcast together: size {n} vs {sizes[c]} for {c!r}")
    ops = [_sum_lonely(x, letters, out, ops, i) for i, (x, letters) in enumerate(ops)]
    x, letters = ops[0]
    for i in range(1, len(ops)):
        keep = set(out).union(*[set(lt) for _, lt in ops[i + 1 :]])
        x, letters = _contract(x, letters, *ops[i], keep)
    extra = [i for i, c in enumerate(letters) if c not in out]
    if extra:
        x = C.reduce("sum", x, tuple(extra), False)
        letters = "".join(c for c in letters if c in out)
    return C.transpose(x, [letters.index(c) for c in out]) if letters != out else x


def _diagonals(x: DeviceArray, letters: str) -> tuple[DeviceArray, str]:
    while len(set(letters)) < len(letters):
        c = next(c for c in letters if letters.count(c) > 1)
        i = letters.index(c)
        j = letters.index(c, i + 1)
        if x.shape[i] != x.shape[j]:
            raise ValueError(f"dimensions in operand for collapsing index '{c}' don't match")
        shape = [n for d, n in enumerate(x.shape) if d != j]
        strides = [s + (x._strides[j] if d == i else 0) for d, s in enumerate(x._strides) if d != j]
        x = C.view(x, shape, strides, x._offset, writeable=False)
        letters = letters[:j] + letters[j + 1 :]
    return x, letters


def _sum_lonely(x: DeviceArray, letters: str, out: str, ops: list, i: int) -> tuple[DeviceArray, str]:
    others = set(out).union(*[set(lt) for k, (_, lt) in enumerate(ops) if k != i])
    lonely = tuple(d for d, c in enumerate(letters) if c not in others)
    if not lonely:
        return x, letters
    return C.reduce("sum", x, lonely, False), "".join(c for d, c in enumerate(letters) if d not in lonely)


def _contract(a: DeviceArray, la: str, b: DeviceArray, lb: str, keep: set) -> tuple[DeviceArray, str]:
    batch = [c for c in la if c in lb and c in keep]
    contr = [c for c in la if c in lb and c not in keep]
    fa = [c for c in la if c not in lb]
    fb = [c for c in lb if c not in la]
    size = dict(zip(la, a.shape)) | dict(zip(lb, b.shape))

    def arrange(x: DeviceArray, lx: str, groups: list) -> DeviceArray:
        x = C.transpose(x, [lx.index(c) for g in groups for c in g])
        return C.reshape(x, tuple(math.prod(size[c] for c in g) for g in groups))

    r = C.matmul(arrange(a, la, [batch, fa, contr]), arrange(b, lb, [batch, contr, fb]))
    letters = "".join(batch + fa + fb)
    return C.reshape(r, tuple(size[c] for c in letters)), letters


# -- numpy.linalg: on the host (documented) --------------------------------------------------------
def _on_host(fn: Callable) -> Callable:
    def run(*args: Any, **kwargs: Any) -> Any:
        return C.host_call(fn, *args, **kwargs)

    return run


_LINALG = (np.linalg.inv, np.linalg.det, np.linalg.slogdet, np.linalg.solve, np.linalg.cholesky, np.linalg.eigh,
           np.linalg.eigvalsh, np.linalg.svd, np.linalg.qr, np.linalg.lstsq, np.linalg.pinv)  # fmt: skip
for _fn in _LINALG:
    DIRECT[_fn] = _on_host(_fn)


# -- indexing -------------------------------------------------------------------------------------
def getitem(x: DeviceArray, index: Any) -> Any:
    if _foreign(index) or (isinstance(index, tuple) and any(_foreign(i) for i in index)):
        # device_array[traced_index]: the traced indexing records it (x is a constant of that trace).
        from gradjit.numpy_api import getitem as traced_getitem

        return traced_getitem(x, index)
    return X.getitem(x, index)


def setitem(x: DeviceArray, index: Any, value: Any) -> None:
    if _foreign(value):
        raise PlacementError(
            "x[...] = value",
            "a traced value cannot be stored into a device array that is not traced",
            "Start from a traced array (y = x * 0.0 ...) and assign into it; traced index assignment is recorded.",
        )
    X.setitem(x, index, value)
