"""Plain NumPy on tracers: ``__array_ufunc__``, ``__array_function__``, operators and methods.

Users write ``import numpy as np``; a ``Tracer`` reaching a NumPy function is routed here through
NumPy's protocols (NEP 13 for ufuncs, NEP 18 for functions). Each supported function is either a
primitive or a composite of primitives, registered with ``@implements(np.fn)``. The long tail of
array manipulation lives in ``numpy_shape`` and contractions/linear algebra in ``numpy_linalg``;
they register into the same table.

Invariants
----------
- Composites call primitives (``bind``) or other composites directly, never ``np.*`` on tracers, so
  a composite costs one dispatch, not one per inner step.
- Any argument gradjit cannot honour (``out=``, an unsupported ``mode``) raises
  ``UnsupportedOperationError`` naming the function; nothing is silently ignored.
- In-place operators and index assignment on a tracer rebind that tracer object to a new variable
  (recorded functionally as ``index_set``). A tracer made by basic indexing remembers its base, and
  a write into it is written through to the base, as NumPy's views would be.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import UnsupportedOperationError
from .placement import DeviceArray, full, zeros
from .primitives import (
    ARRAY,
    UFUNC_TO_PRIM,
    P,
    argmax_p,
    argmin_p,
    astype_p,
    broadcast_to_p,
    concatenate_p,
    cumprod_p,
    cumsum_p,
    getitem_p,
    index_set_p,
    matmul_p,
    nonzero_p,
    reduce_all_p,
    reduce_any_p,
    reduce_max_p,
    reduce_min_p,
    reduce_prod_p,
    reduce_sum_p,
    reshape_p,
    round_p,
    select_p,
    sinc_p,
    transpose_p,
)
from .simplify import bind_simplified
from .tracing import OVERRIDES, Tracer, bind, bind_into

HANDLED: dict[Callable, Callable] = {}
# np function -> Primitive, installed by ``gradjit.gradients`` for functions that are composites.
FUNCTION_OVERRIDES: dict[Callable, Any] = {}


def implements(*np_functions: Callable) -> Callable:
    """Register the decorated function as the traced implementation of ``np_functions``."""

    def register(fn: Callable) -> Callable:
        for f in np_functions:
            HANDLED[f] = fn
        return fn

    return register


def _name(fn: Any) -> str:
    # numpy.fft -> np.fft.fft; private modules (numpy._core.fromnumeric) are not how users spell it.
    mod = getattr(fn, "__module__", "") or ""
    parts = [p for p in mod.split(".")[1:] if not p.startswith("_")] if mod.startswith("numpy") else []
    return ".".join(["np", *parts, getattr(fn, "__name__", repr(fn))])


def unsupported(op: str, problem: str, advice: str | None = None) -> UnsupportedOperationError:
    return UnsupportedOperationError(op, problem, advice)


def shape_of(x: Any) -> tuple[int, ...]:
    return x.shape if type(x) is Tracer else np.shape(x)


def ndim_of(x: Any) -> int:
    return len(shape_of(x))


def dtype_of(x: Any) -> np.dtype:
    return x.dtype if hasattr(x, "dtype") else np.result_type(x)


def norm_axis(axis: Any, nd: int, op: str = "axis") -> tuple[int, ...]:
    """``axis`` (None, int or tuple) as a sorted tuple of non-negative ints."""
    if axis is None:
        return tuple(range(nd))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        a = int(a)
        if not -nd <= a < max(nd, 1):
            raise np.exceptions.AxisError(a, nd)
        out.append(a % nd if nd else 0)
    return tuple(sorted(out))


def _check_no_out(op: str, kwargs: dict) -> None:
    out = kwargs.pop("out", None)
    if out is not None and not (isinstance(out, tuple) and all(o is None for o in out)):
        raise unsupported(
            op,
            "out= writes the result into an existing array in place, which cannot be recorded",
            "Assign the result instead: y = np.add(a, b), not np.add(a, b, out=y).",
        )


# ---------------------------------------------------------------------------------------------
# Ufuncs (NEP 13)
# ---------------------------------------------------------------------------------------------
_REDUCE = {np.add: "sum", np.multiply: "prod", np.maximum: "max", np.minimum: "min",
           np.logical_and: "all", np.logical_or: "any"}  # fmt: skip


def array_ufunc(self: Tracer, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
    if not kwargs and method == "__call__" and not FUNCTION_OVERRIDES:  # the common case, fast
        prim = UFUNC_TO_PRIM.get(ufunc)
        if prim is not None:
            return bind(prim, *inputs)
    op = f"np.{ufunc.__name__}" + ("" if method == "__call__" else f".{method}")
    _check_no_out(op, kwargs)
    if method == "__call__":
        where = kwargs.pop("where", True)
        dt = kwargs.pop("dtype", None)
        kwargs.pop("casting", None), kwargs.pop("order", None), kwargs.pop("subok", None)
        if kwargs:
            raise unsupported(op, f"unsupported keyword argument(s) {sorted(kwargs)}")
        prim = FUNCTION_OVERRIDES.get(ufunc) or UFUNC_TO_PRIM.get(ufunc)
        if prim is None:
            raise unsupported(
                op,
                "this ufunc is not supported on traced values",
                "Express it with supported NumPy operations, or wrap your function with "
                "@gradjit.primitive and give it a gradient with .defvjp(...).",
            )
        if dt is not None:
            inputs = tuple(astype(x, dt) for x in inputs)
        result = bind(prim, *inputs)
        if where is not True:
            # NumPy leaves masked-out entries uninitialized without out=; gradjit makes them 0.
            result = select_p(where, result, 0.0 if dtype_of(result).kind == "f" else 0)
        return result
    if method == "reduce" and ufunc in _REDUCE:
        (x,) = inputs
        axis = kwargs.pop("axis", 0)
        return REDUCTIONS[_REDUCE[ufunc]](x, axis=axis, **kwargs)
    if method == "accumulate" and ufunc in (np.add, np.multiply):
        (x,) = inputs
        axis = kwargs.pop("axis", 0)
        if kwargs.pop("dtype", None) is not None or kwargs:
            raise unsupported(op, "only axis= is supported")
        return cumsum(x, axis) if ufunc is np.add else HANDLED[np.cumprod](x, axis)
    raise unsupported(op, "this ufunc method is not supported on traced values")


# ---------------------------------------------------------------------------------------------
# Functions (NEP 18)
# ---------------------------------------------------------------------------------------------
def array_function(self: Tracer, func: Callable, types: Any, args: tuple, kwargs: dict) -> Any:
    override = FUNCTION_OVERRIDES.get(func)
    if override is not None:
        return bind(override, *args, **kwargs)
    impl = HANDLED.get(func)
    if impl is None:
        raise unsupported(
            _name(func),
            "is not supported on traced values",
            "Express it with supported NumPy operations, or wrap your function with "
            "@gradjit.primitive and give it a gradient with .defvjp(...).",
        )
    return impl(*args, **kwargs)


# ---------------------------------------------------------------------------------------------
# Elementwise functions that are not ufuncs, and casts
# ---------------------------------------------------------------------------------------------
def astype(x: Any, dt: Any) -> Any:
    dt = np.dtype(dt)
    if dtype_of(x) == dt:
        return x
    return astype_p(x, dtype=dt)


@implements(np.sinc)
def sinc(x: Any) -> Any:
    return sinc_p(x)


@implements(np.round, np.around)
def round_(x: Any, decimals: int = 0, out: Any = None) -> Any:
    _check_no_out("np.round", {"out": out})
    return round_p(x, decimals=int(decimals))


@implements(np.where)
def where(condition: Any, x: Any = None, y: Any = None) -> Any:
    if x is None and y is None:
        return nonzero(condition)
    return select_p(condition, x, y)


@implements(np.clip)
def clip(a: Any, a_min: Any = None, a_max: Any = None, out: Any = None, **kwargs: Any) -> Any:
    _check_no_out("np.clip", {"out": out})
    a_min = kwargs.pop("min", a_min)
    a_max = kwargs.pop("max", a_max)
    if a_min is not None:
        a = P("maximum")(a, a_min)
    if a_max is not None:
        a = P("minimum")(a, a_max)
    return a


@implements(np.nonzero)
def nonzero(x: Any) -> tuple:
    nz = nonzero_p(x)
    _guard_count(nz)
    return tuple(getitem_p(nz, tree=(i,)) for i in range(ndim_of(x)))


def _guard_count(nz: Tracer) -> None:
    # The number of nonzeros becomes a shape: guard it at every trace level, like int() would.
    t = nz
    while type(t) is Tracer:
        t._trace.guard("count", t._var, t.shape[1])
        t = t._value


# ---------------------------------------------------------------------------------------------
# Reductions
# ---------------------------------------------------------------------------------------------
def _reduce(prim: Any, op: str, x: Any, axis: Any, keepdims: bool, where: Any = True, fill: float = 0.0) -> Any:
    axes = norm_axis(axis, ndim_of(x), op)
    if where is not True:
        x = select_p(where, x, fill)
    if not axes:
        return x
    return prim(x, axis=axes, keepdims=bool(keepdims))


def _reduction(prim: Any, name: str, fill: float | None) -> Callable:
    def reduce(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False,
               initial: Any = None, where: Any = True) -> Any:  # fmt: skip
        _check_no_out(f"np.{name}", {"out": out})
        if dtype is not None:
            a = astype(a, dtype)
        if where is not True and fill is None and initial is None:
            raise unsupported(f"np.{name}", "where= needs initial= (as in NumPy)")
        r = _reduce(prim, f"np.{name}", a, axis, keepdims, where, fill if initial is None else initial)
        if initial is not None:
            r = (P("maximum") if name == "max" else P("minimum") if name == "min" else P("add"))(r, initial)
        return r

    reduce.__name__ = name
    return reduce


REDUCTIONS = {
    "sum": _reduction(reduce_sum_p, "sum", 0.0),
    "prod": _reduction(reduce_prod_p, "prod", 1.0),
    "max": _reduction(reduce_max_p, "max", None),
    "min": _reduction(reduce_min_p, "min", None),
    "any": _reduction(reduce_any_p, "any", False),
    "all": _reduction(reduce_all_p, "all", True),
}
implements(np.sum)(REDUCTIONS["sum"])
implements(np.prod)(REDUCTIONS["prod"])
implements(np.max, np.amax)(REDUCTIONS["max"])
implements(np.min, np.amin)(REDUCTIONS["min"])
implements(np.any)(REDUCTIONS["any"])
implements(np.all)(REDUCTIONS["all"])


def _count(x: Any, axes: tuple[int, ...]) -> int:
    s = shape_of(x)
    return int(np.prod([s[a] for a in axes], dtype=np.int64))


@implements(np.mean)
def mean(
    a: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False, where: Any = True
) -> Any:
    _check_no_out("np.mean", {"out": out})
    if dtype is not None:
        a = astype(a, dtype)
    elif dtype_of(a).kind in "iub":
        a = astype(a, np.float64)
    if where is not True:
        total = REDUCTIONS["sum"](a, axis=axis, keepdims=keepdims, where=where)
        n = REDUCTIONS["sum"](np.broadcast_to(where, shape_of(a)).astype(float), axis=axis, keepdims=keepdims)
        return total / n
    axes = norm_axis(axis, ndim_of(a))
    return REDUCTIONS["sum"](a, axis=axis, keepdims=keepdims) / float(_count(a, axes))


@implements(np.var)
def var(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, ddof: int = 0, keepdims: bool = False,
        where: Any = True, mean: Any = None, correction: Any = None) -> Any:  # fmt: skip
    _check_no_out("np.var", {"out": out})
    if where is not True or mean is not None:
        raise unsupported("np.var", "where= and mean= are not supported on traced values")
    ddof = correction if correction is not None else ddof
    m = HANDLED[np.mean](a, axis=axis, dtype=dtype, keepdims=True)  # `mean` is shadowed by the argument
    d = a - m
    axes = norm_axis(axis, ndim_of(a))
    return REDUCTIONS["sum"](d * d, axis=axis, keepdims=keepdims) / float(_count(a, axes) - ddof)


@implements(np.std)
def std(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, ddof: int = 0, keepdims: bool = False,
        where: Any = True, mean: Any = None, correction: Any = None) -> Any:  # fmt: skip
    return P("sqrt")(var(a, axis, dtype, out, ddof, keepdims, where, mean, correction))


def _arg_extremum(prim: Any, name: str) -> Callable:
    def arg(a: Any, axis: Any = None, out: Any = None, *, keepdims: bool = False) -> Any:
        _check_no_out(f"np.{name}", {"out": out})
        if axis is None:
            a = reshape(a, (-1,))
            axis = 0
        return prim(a, axis=norm_axis(axis, ndim_of(a))[0], keepdims=bool(keepdims))

    return arg


argmax = implements(np.argmax)(_arg_extremum(argmax_p, "argmax"))
argmin = implements(np.argmin)(_arg_extremum(argmin_p, "argmin"))


@implements(np.cumsum)
def cumsum(a: Any, axis: Any = None, dtype: Any = None, out: Any = None) -> Any:
    _check_no_out("np.cumsum", {"out": out})
    if dtype is not None:
        a = astype(a, dtype)
    if axis is None:
        a, axis = reshape(a, (-1,)), 0
    return cumsum_p(a, axis=norm_axis(axis, ndim_of(a))[0])


@implements(np.cumprod)
def cumprod(a: Any, axis: Any = None, dtype: Any = None, out: Any = None) -> Any:
    """Inclusive products: the ``cumprod`` primitive, so values are NumPy's bit for bit."""
    _check_no_out("np.cumprod", {"out": out})
    if dtype is not None:
        a = astype(a, dtype)
    if axis is None:
        a, axis = reshape(a, (-1,)), 0
    return cumprod_p(a, axis=norm_axis(axis, ndim_of(a))[0])


def cumprod_scan(a: Any, ax: int) -> Any:
    """Inclusive products along ``ax`` by a log-depth scan of multiplies. Its derivative (what the
    ``cumprod`` rule uses) is exact with zeros, needs no division, and is differentiable again; its
    values may differ from NumPy's sequential products in the last bit."""
    n = shape_of(a)[ax]
    pre = (slice(None),) * ax
    k = 1
    while k < n:
        shifted = getitem_p(a, tree=pre + (slice(None, n - k),))
        rest = getitem_p(a, tree=pre + (slice(k, None),))
        a = concatenate_p(getitem_p(a, tree=pre + (slice(None, k),)), rest * shifted, axis=ax)
        k *= 2
    return a


# ---------------------------------------------------------------------------------------------
# Core shape functions used by methods and composites (the rest is in numpy_shape)
# ---------------------------------------------------------------------------------------------
@implements(np.reshape)
def reshape(a: Any, shape_: Any = None, order: str = "C", *, newshape: Any = None, copy: Any = None, **kw: Any) -> Any:
    if "shape" in kw:
        shape_ = kw.pop("shape")
    if shape_ is None:
        shape_ = newshape
    if order != "C":
        raise unsupported("np.reshape", f"order={order!r} is not supported; only C order")
    if isinstance(shape_, (int, np.integer)):
        shape_ = (int(shape_),)
    shape_ = tuple(int(s) for s in shape_)
    if -1 in shape_:
        known = int(np.prod([s for s in shape_ if s != -1], dtype=np.int64))
        total = int(np.prod(shape_of(a), dtype=np.int64))
        shape_ = tuple(total // known if s == -1 and known else s for s in shape_)
    if shape_ == shape_of(a):
        return a
    return reshape_p(a, shape=shape_)


@implements(np.transpose)
def transpose(a: Any, axes: Any = None) -> Any:
    nd = ndim_of(a)
    axes = tuple(reversed(range(nd))) if axes is None else tuple(int(x) % nd for x in axes)
    if axes == tuple(range(nd)):
        return a
    return transpose_p(a, axes=axes)


@implements(np.broadcast_to)
def broadcast_to(a: Any, shape_: Any, subok: bool = False) -> Any:
    shape_ = (int(shape_),) if isinstance(shape_, (int, np.integer)) else tuple(int(s) for s in shape_)
    if shape_of(a) == shape_:
        return a
    return broadcast_to_p(a, shape=shape_)


@implements(np.concatenate)
def concatenate(arrays: Any, axis: Any = 0, out: Any = None, dtype: Any = None, casting: str = "same_kind") -> Any:
    _check_no_out("np.concatenate", {"out": out})
    arrays = list(arrays)
    if axis is None:
        arrays, axis = [reshape(a, (-1,)) for a in arrays], 0
    if dtype is not None:
        arrays = [astype(a, dtype) for a in arrays]
    if len(arrays) == 1:
        return arrays[0]
    return concatenate_p(*arrays, axis=norm_axis(axis, ndim_of(arrays[0]))[0])


@implements(np.stack)
def stack(arrays: Any, axis: int = 0, out: Any = None, dtype: Any = None, casting: str = "same_kind") -> Any:
    _check_no_out("np.stack", {"out": out})
    arrays = list(arrays)
    if not arrays:
        raise ValueError("need at least one array to stack")
    nd = ndim_of(arrays[0]) + 1
    ax = int(axis) % nd
    expanded = [reshape(a, shape_of(a)[:ax] + (1,) + shape_of(a)[ax:]) for a in arrays]
    return concatenate(expanded, axis=ax, dtype=dtype)


@implements(np.matmul)
def matmul(a: Any, b: Any, out: Any = None, **kwargs: Any) -> Any:
    _check_no_out("np.matmul", {"out": out})
    if ndim_of(a) == 0 or ndim_of(b) == 0:
        raise ValueError("matmul: Input operand does not have enough dimensions")
    return matmul_p(a, b)


@implements(np.dot)
def dot(a: Any, b: Any, out: Any = None) -> Any:
    _check_no_out("np.dot", {"out": out})
    na, nb = ndim_of(a), ndim_of(b)
    if na == 0 or nb == 0:
        return a * b
    if nb <= 2:
        return matmul(a, b)
    # N-D: sum over the last axis of a and the second-to-last of b.
    from .numpy_linalg import tensordot

    return tensordot(a, b, axes=([na - 1], [nb - 2]))


@implements(np.zeros_like)
def zeros_like(a: Any, dtype: Any = None, order: str = "K", subok: bool = True, shape: Any = None, **kw: Any) -> Any:
    return zeros(shape_of(a) if shape is None else shape, dtype or dtype_of(a), like=a)


@implements(np.ones_like)
def ones_like(a: Any, dtype: Any = None, order: str = "K", subok: bool = True, shape: Any = None, **kw: Any) -> Any:
    return full(shape_of(a) if shape is None else shape, 1, dtype or dtype_of(a), like=a)


@implements(np.full_like)
def full_like(a: Any, fill_value: Any, dtype: Any = None, order: str = "K", subok: bool = True, shape: Any = None,
              **kw: Any) -> Any:  # fmt: skip
    s = shape_of(a) if shape is None else shape
    dt = dtype or dtype_of(a)
    if type(fill_value) is Tracer:  # a traced fill value keeps its gradient
        return broadcast_to(astype(fill_value, dt), tuple(s) if not isinstance(s, int) else (s,))
    return full(s, fill_value, dt, like=a)


@implements(np.shape)
def _np_shape(a: Any) -> tuple[int, ...]:
    return shape_of(a)


@implements(np.ndim)
def _np_ndim(a: Any) -> int:
    return ndim_of(a)


@implements(np.size)
def _np_size(a: Any, axis: Any = None) -> int:
    s = shape_of(a)
    return int(np.prod(s, dtype=np.int64)) if axis is None else s[axis]


@implements(np.result_type)
def _result_type(*arrays_and_dtypes: Any) -> np.dtype:
    return np.result_type(*[a.dtype if type(a) is Tracer else a for a in arrays_and_dtypes])


@implements(np.copy)
def copy(a: Any, order: str = "K", subok: bool = False) -> Any:
    return Tracer(a._value, a._trace, a._var) if type(a) is Tracer else np.copy(a)


@implements(np.asarray, np.asanyarray)
def asarray(a: Any, dtype: Any = None, order: Any = None, **kw: Any) -> Any:
    # Only reached with a `like=` argument; np.asarray(tracer) goes through __array__ and raises.
    return a if dtype is None else astype(a, dtype)


# ---------------------------------------------------------------------------------------------
# Indexing
# ---------------------------------------------------------------------------------------------
def _static_int(v: Any) -> Any:
    return int(v) if type(v) is Tracer else v


def split_index(x: Any, idx: Any) -> tuple[tuple, tuple]:
    """Split an index expression into a static tree (with ``ARRAY`` slots) and index arrays."""
    if not isinstance(idx, tuple):
        idx = (idx,)
    tree: list = []
    arrays: list = []
    for item in idx:
        if item is None or item is Ellipsis:
            tree.append(item)
        elif isinstance(item, slice):
            tree.append(slice(_static_int(item.start), _static_int(item.stop), _static_int(item.step)))
        elif isinstance(item, (bool, np.bool_)):
            raise unsupported("x[...]", "a boolean scalar index is not supported on traced arrays")
        elif isinstance(item, (int, np.integer)):
            tree.append(int(item))
        elif type(item) is Tracer:
            k = item.dtype.kind
            if k == "b":
                nz = nonzero_p(item)
                _guard_count(nz)
                for i in range(item.ndim):
                    tree.append(ARRAY)
                    arrays.append(getitem_p(nz, tree=(i,)))
            elif k in "iu":
                tree.append(ARRAY)
                arrays.append(item)
            else:
                raise IndexError(f"arrays used as indices must be of integer or boolean type, not {item.dtype}")
        else:
            arr = item if isinstance(item, DeviceArray) else np.asarray(item)  # device indices stay there
            if arr.dtype.kind == "b":
                for row in np.nonzero(arr):
                    tree.append(ARRAY)
                    arrays.append(row)
            elif arr.dtype.kind in "iu":
                tree.append(ARRAY)
                arrays.append(arr)
            else:
                raise IndexError(f"arrays used as indices must be of integer or boolean type, not {arr.dtype}")
    return tuple(tree), tuple(arrays)


def getitem(x: Any, idx: Any) -> Any:
    if type(idx) is int or type(idx) is slice and _static_slice(idx):  # fast path: x[i], x[a:b]
        out = bind(getitem_p, x, tree=(idx,))
        if type(out) is Tracer and type(x) is Tracer:
            out._view = (x, idx)
        return out
    tree, arrays = split_index(x, idx)
    out = getitem_p(x, *arrays, tree=tree)
    if not arrays and type(out) is Tracer and type(x) is Tracer:
        out._view = (x, idx)  # basic indexing makes a view: writes go through to x
    return out


def _static_slice(s: slice) -> bool:
    return type(s.start) is not Tracer and type(s.stop) is not Tracer and type(s.step) is not Tracer


def _rebind(t: Tracer, new: Any) -> None:
    """Make tracer object ``t`` stand for ``new`` (NumPy's in-place semantics, recorded functionally)."""
    if type(new) is not Tracer:
        raise TypeError("in-place update produced an untraced value")
    view = t._view
    t._value, t._trace, t._var, t._view = new._value, new._trace, new._var, None
    if view is not None:
        base, idx = view
        setitem(base, idx, t)
        t._view = view


def setitem(x: Tracer, idx: Any, v: Any) -> None:
    tree, arrays = split_index(x, idx)
    if type(v) is Tracer and _just_written(x, v, tree):
        return  # `x[s] += y`: the in-place add already wrote x[s] through its view
    _rebind(x, index_set_p(x, v, *arrays, tree=tree))


def _just_written(x: Tracer, v: Tracer, tree: tuple) -> bool:
    eqns = x._trace.eqns
    if not eqns or v._trace is not x._trace:
        return False
    last = eqns[-1]
    return last.out is x._var and last.prim is index_set_p and last.ins[1] is v._var and last.params["tree"] == tree


def _inplace(prim_name: str) -> Callable:
    def op(self: Tracer, other: Any) -> Tracer:
        _rebind(self, P(prim_name)(self, other))
        return self

    return op


# ---------------------------------------------------------------------------------------------
# Operators, properties and methods on Tracer
# ---------------------------------------------------------------------------------------------
def _binary(name: str) -> tuple[Callable, Callable]:
    prim = P(name)

    # ``bind(prim, self, other)`` and ``bind(prim, other, self)`` with the top trace found inline
    # (``self`` is a tracer; among equal levels the first argument's trace wins, as in ``bind``) and
    # ``bind_into``'s dispatch to the simplifier inlined: operators are most of what VJP rules do, so
    # nested ``grad`` runs these once per operation.
    def fwd(self: Any, other: Any) -> Any:
        top = self._trace
        if type(other) is Tracer and other._trace.level > top.level:
            top = other._trace
        p = OVERRIDES.get(prim, prim) if OVERRIDES else prim
        if top.cse is not None and top.active:
            return bind_simplified(top, p, (self, other), {})
        return bind_into(top, p, (self, other), {})

    def rev(self: Any, other: Any) -> Any:
        top = self._trace
        if type(other) is Tracer and other._trace.level >= top.level:
            top = other._trace
        p = OVERRIDES.get(prim, prim) if OVERRIDES else prim
        if top.cse is not None and top.active:
            return bind_simplified(top, p, (other, self), {})
        return bind_into(top, p, (other, self), {})

    return fwd, rev


def _unary(name: str) -> Callable:
    prim = P(name)

    def op(self: Any) -> Any:  # ``bind(prim, self)``, as ``_binary``'s operators
        top = self._trace
        p = OVERRIDES.get(prim, prim) if OVERRIDES else prim
        if top.cse is not None and top.active:
            return bind_simplified(top, p, (self,), {})
        return bind_into(top, p, (self,), {})

    return op


def _method_reduction(name: str) -> Callable:
    fn = REDUCTIONS.get(name) or HANDLED[getattr(np, name)]

    def method(self: Tracer, axis: Any = None, *args: Any, **kwargs: Any) -> Any:
        return fn(self, axis, *args, **kwargs)

    method.__name__ = name
    return method


def _method_from(np_fn: Callable) -> Callable:
    def method(self: Tracer, *args: Any, **kwargs: Any) -> Any:
        return HANDLED[np_fn](self, *args, **kwargs)

    method.__name__ = np_fn.__name__
    return method


def _reshape_method(self: Tracer, *shape_: Any, order: str = "C", **kw: Any) -> Any:
    if "shape" in kw:
        shape_ = (kw.pop("shape"),)
    if len(shape_) == 1 and not isinstance(shape_[0], (int, np.integer)):
        shape_ = tuple(shape_[0])
    out = reshape(self, shape_, order)
    return out


def _transpose_method(self: Tracer, *axes: Any) -> Any:
    if len(axes) == 1 and not isinstance(axes[0], (int, np.integer)):
        axes = axes[0]
    return transpose(self, axes if axes else None)


def _sort_method(self: Tracer, axis: int = -1, kind: Any = None, order: Any = None, **kw: Any) -> None:
    _rebind(self, HANDLED[np.sort](self, axis=axis, kind=kind, order=order, **kw))


def _iter(self: Tracer) -> Any:
    if not self.shape:
        raise TypeError("iteration over a 0-d traced array")
    for i in range(self.shape[0]):
        yield getitem_p(self, tree=(i,))


def _invert(self: Tracer) -> Any:
    if self.dtype.kind != "b":
        raise unsupported("~", "bitwise not is supported on boolean traced arrays only")
    return P("logical_not")(self)


def _install_tracer_methods() -> None:
    T = Tracer
    for dunder, prim in [("add", "add"), ("sub", "sub"), ("mul", "mul"), ("truediv", "div"),
                         ("floordiv", "floor_divide"), ("mod", "mod"), ("pow", "pow"),
                         ("and", "bitwise_and"), ("or", "bitwise_or"), ("xor", "bitwise_xor")]:  # fmt: skip
        fwd, rev = _binary(prim)
        setattr(T, f"__{dunder}__", fwd)
        setattr(T, f"__r{dunder}__", rev)
        setattr(T, f"__i{dunder}__", _inplace(prim))
    for dunder, prim in [("eq", "eq"), ("ne", "ne"), ("lt", "lt"), ("le", "le"), ("gt", "gt"), ("ge", "ge")]:
        setattr(T, f"__{dunder}__", _binary(prim)[0])
    T.__matmul__ = lambda self, other: bind(matmul_p, self, other)  # NumPy's impl rejects 0-d operands
    T.__rmatmul__ = lambda self, other: bind(matmul_p, other, self)
    T.__imatmul__ = lambda self, other: (_rebind(self, matmul(self, other)), self)[1]
    T.__neg__ = _unary("neg")
    T.__pos__ = lambda self: self
    T.__abs__ = _unary("abs")
    T.__invert__ = _invert
    T.__getitem__ = getitem
    T.__setitem__ = setitem
    T.__iter__ = _iter
    T.__array_ufunc__ = array_ufunc
    T.__array_function__ = array_function
    T.T = property(lambda self: transpose(self))
    T.mT = property(lambda self: HANDLED[np.swapaxes](self, -1, -2))
    T.real = property(lambda self: self)
    T.reshape = _reshape_method
    T.transpose = _transpose_method
    T.astype = lambda self, dt, *a, **k: astype(self, dt)
    T.copy = lambda self, order="C": copy(self)
    T.sort = _sort_method
    T.conj = T.conjugate = lambda self: self
    T.mean = _method_reduction("mean")
    T.var = _method_reduction("var")
    T.std = _method_reduction("std")
    for name in ("sum", "prod", "max", "min", "any", "all"):
        setattr(T, name, _method_reduction(name))
    for name in ("argmax", "argmin", "cumsum", "cumprod"):
        setattr(T, name, _method_reduction(name))
    T.clip = lambda self, a_min=None, a_max=None, **kw: clip(self, a_min, a_max, **kw)
    T.dot = lambda self, b: dot(self, b)
    T.round = lambda self, decimals=0: round_(self, decimals)
    T.nonzero = lambda self: nonzero(self)
    for name in ("ravel", "flatten", "squeeze", "swapaxes", "repeat", "take", "trace", "diagonal",
                 "argsort"):  # fmt: skip
        np_fn = np.ravel if name == "flatten" else getattr(np, name)
        setattr(T, name, _method_from(np_fn))
    # A method honours a scoped gradient override of its NumPy function (gradjit.gradients) exactly
    # as np.fn(x) does through __array_function__: x.round() must not silently differ from np.round(x).
    for name in ("mean", "var", "std", "sum", "prod", "max", "min", "any", "all", "argmax", "argmin", "cumsum",
                 "cumprod", "clip", "dot", "round", "ravel", "flatten", "squeeze", "swapaxes", "repeat", "take",
                 "trace", "diagonal", "argsort"):  # fmt: skip
        np_fn = np.ravel if name == "flatten" else getattr(np, name)
        setattr(T, name, _honour_overrides(np_fn, getattr(T, name)))


def _honour_overrides(np_fn: Callable, method: Callable) -> Callable:
    def wrapped(self: Tracer, *args: Any, **kwargs: Any) -> Any:
        override = FUNCTION_OVERRIDES.get(np_fn) if FUNCTION_OVERRIDES else None
        if override is not None:
            return bind(override, self, *args, **kwargs)
        return method(self, *args, **kwargs)

    wrapped.__name__ = getattr(method, "__name__", np_fn.__name__)
    return wrapped


__all__ = ["HANDLED", "FUNCTION_OVERRIDES", "implements"]

# The rest of the NumPy surface registers itself on import.
from . import numpy_gather, numpy_linalg, numpy_shape  # noqa: E402,F401

_install_tracer_methods()
