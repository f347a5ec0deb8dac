"""The closed set of primitives that Wengert lists are made of, with their NumPy implementations.

Every NumPy function gradjit supports is either one of these or a composite of them
(``numpy_api``). Primitives are grouped as elementwise, reduction, movement/indexing, contraction
and linear algebra. Gradient rules live in ``rules``; a test asserts each primitive has its parts.

Invariants
----------
- ``impl`` is called only on concrete NumPy values (never tracers) and must not mutate its inputs.
- A primitive has one output. Params are static (hashable after ``wengert._freeze``); anything
  that varies between calls of the same program is a positional argument.
- Elementwise primitives broadcast like NumPy ufuncs; the reverse walker un-broadcasts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .tracing import Primitive

PRIMITIVES: dict[str, Primitive] = {}


def primitive(name: str, impl: Any, kind: str) -> Primitive:
    p = Primitive(name, impl, kind)
    PRIMITIVES[name] = p
    return p


# ---------------------------------------------------------------------------------------------
# Elementwise: one ufunc each, so forward values are bit-identical to NumPy's.
# ---------------------------------------------------------------------------------------------
UNARY_UFUNCS = {
    "neg": np.negative, "reciprocal": np.reciprocal, "square": np.square, "sqrt": np.sqrt,
    "cbrt": np.cbrt, "exp": np.exp, "exp2": np.exp2, "expm1": np.expm1, "log": np.log,
    "log2": np.log2, "log10": np.log10, "log1p": np.log1p, "sin": np.sin, "cos": np.cos,
    "tan": np.tan, "arcsin": np.arcsin, "arccos": np.arccos, "arctan": np.arctan, "sinh": np.sinh,
    "cosh": np.cosh, "tanh": np.tanh, "arcsinh": np.arcsinh, "arccosh": np.arccosh,
    "arctanh": np.arctanh, "abs": np.absolute, "fabs": np.fabs,
    # zero gradient
    "sign": np.sign, "floor": np.floor, "ceil": np.ceil, "rint": np.rint, "trunc": np.trunc,
    "logical_not": np.logical_not, "isnan": np.isnan, "isinf": np.isinf, "isfinite": np.isfinite,
    "signbit": np.signbit, "positive": np.positive,
}  # fmt: skip
BINARY_UFUNCS = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.true_divide,
    "pow": np.power, "arctan2": np.arctan2, "hypot": np.hypot, "logaddexp": np.logaddexp,
    "logaddexp2": np.logaddexp2, "maximum": np.maximum, "minimum": np.minimum, "fmax": np.fmax,
    "fmin": np.fmin, "mod": np.remainder, "fmod": np.fmod, "copysign": np.copysign,
    # zero gradient
    "floor_divide": np.floor_divide, "eq": np.equal, "ne": np.not_equal, "lt": np.less,
    "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal, "logical_and": np.logical_and,
    "logical_or": np.logical_or, "logical_xor": np.logical_xor, "bitwise_and": np.bitwise_and,
    "bitwise_or": np.bitwise_or, "bitwise_xor": np.bitwise_xor,
}  # fmt: skip

for _name, _uf in {**UNARY_UFUNCS, **BINARY_UFUNCS}.items():
    primitive(_name, _uf, "elementwise")

# NumPy ufunc -> primitive, for __array_ufunc__ dispatch.
UFUNC_TO_PRIM: dict[Any, Primitive] = {uf: PRIMITIVES[n] for n, uf in {**UNARY_UFUNCS, **BINARY_UFUNCS}.items()}
UFUNC_TO_PRIM[np.bitwise_not] = PRIMITIVES["logical_not"]  # ~ on booleans


def _sinc(x: Any) -> Any:
    return np.sinc(x)


def _round(x: Any, decimals: int = 0) -> Any:
    return np.round(x, decimals)


def _astype(x: Any, dtype: np.dtype) -> Any:
    # Arrays (host or device) convert themselves; scalars become 0-d arrays.
    return x.astype(dtype) if hasattr(x, "astype") and not isinstance(x, np.generic) else np.asarray(x).astype(dtype)


def _stop_gradient(x: Any) -> Any:
    return x


sinc_p = primitive("sinc", _sinc, "elementwise")
round_p = primitive("round", _round, "elementwise")
select_p = primitive("select", np.where, "elementwise")  # select(cond, x, y)
astype_p = primitive("astype", _astype, "elementwise")
stop_gradient_p = primitive("stop_gradient", _stop_gradient, "elementwise")


# ---------------------------------------------------------------------------------------------
# Reductions (``axis`` is always a normalized tuple of non-negative ints).
# ---------------------------------------------------------------------------------------------
def _reducer(fn: Any) -> Any:
    def impl(x: Any, axis: tuple[int, ...], keepdims: bool) -> Any:
        return fn(x, axis=axis, keepdims=keepdims)

    impl.__name__ = fn.__name__
    return impl


reduce_sum_p = primitive("reduce_sum", _reducer(np.sum), "reduction")
reduce_max_p = primitive("reduce_max", _reducer(np.max), "reduction")
reduce_min_p = primitive("reduce_min", _reducer(np.min), "reduction")
reduce_prod_p = primitive("reduce_prod", _reducer(np.prod), "reduction")
reduce_any_p = primitive("reduce_any", _reducer(np.any), "reduction")
reduce_all_p = primitive("reduce_all", _reducer(np.all), "reduction")


def _argmax(x: Any, axis: int | None, keepdims: bool) -> Any:
    return np.argmax(x, axis=axis, keepdims=keepdims)


def _argmin(x: Any, axis: int | None, keepdims: bool) -> Any:
    return np.argmin(x, axis=axis, keepdims=keepdims)


def _argsort(x: Any, axis: int, stable: bool) -> Any:
    return np.argsort(x, axis=axis, kind="stable" if stable else None)


def _cumsum(x: Any, axis: int) -> Any:
    return np.cumsum(x, axis=axis)


def _cumprod(x: Any, axis: int) -> Any:
    return np.cumprod(x, axis=axis)


def _nonzero(x: Any) -> Any:
    return np.reshape(np.stack(np.nonzero(x)).astype(np.intp, copy=False), (np.ndim(x), -1))


argmax_p = primitive("argmax", _argmax, "reduction")
argmin_p = primitive("argmin", _argmin, "reduction")
argsort_p = primitive("argsort", _argsort, "reduction")
cumsum_p = primitive("cumsum", _cumsum, "reduction")
cumprod_p = primitive("cumprod", _cumprod, "reduction")  # NumPy's sequential products, bit for bit
nonzero_p = primitive("nonzero", _nonzero, "reduction")


# ---------------------------------------------------------------------------------------------
# Movement and indexing. An index expression is split into a static ``tree`` (slices, ints,
# None, Ellipsis, and ``ARRAY`` placeholders) and the index arrays, passed positionally.
# ---------------------------------------------------------------------------------------------
class _ArrayPlaceholder:
    def __repr__(self) -> str:
        return "[]"


ARRAY = _ArrayPlaceholder()


def build_index(tree: tuple, arrays: tuple) -> tuple:
    it = iter(arrays)
    return tuple(next(it) if t is ARRAY else t for t in tree)


def _reshape(x: Any, shape: tuple[int, ...]) -> Any:
    return np.reshape(x, shape)


def _transpose(x: Any, axes: tuple[int, ...]) -> Any:
    return np.transpose(x, axes)


def _broadcast_to(x: Any, shape: tuple[int, ...]) -> Any:
    return np.broadcast_to(x, shape)


def _getitem(x: Any, *arrays: Any, tree: tuple) -> Any:
    return x[build_index(tree, arrays)]


def _index_add(x: Any, v: Any, *arrays: Any, tree: tuple) -> Any:
    out = np.copy(x)  # np.copy dispatches: a device array is copied on the device
    idx = build_index(tree, arrays)
    if arrays:
        np.add.at(out, idx, v)  # repeated indices accumulate
    else:
        out[idx] += v
    return out


def _index_set(x: Any, v: Any, *arrays: Any, tree: tuple) -> Any:
    out = np.copy(x)  # np.copy dispatches: a device array is copied on the device
    out[build_index(tree, arrays)] = v
    return out


def _concatenate(*xs: Any, axis: int) -> Any:
    return np.concatenate(xs, axis=axis)


reshape_p = primitive("reshape", _reshape, "movement")
transpose_p = primitive("transpose", _transpose, "movement")
broadcast_to_p = primitive("broadcast_to", _broadcast_to, "movement")
getitem_p = primitive("getitem", _getitem, "movement")
index_add_p = primitive("index_add", _index_add, "movement")
index_set_p = primitive("index_set", _index_set, "movement")
concatenate_p = primitive("concatenate", _concatenate, "movement")


# ---------------------------------------------------------------------------------------------
# Contractions: ``matmul`` on operands of rank >= 2 (batch dims broadcast), and ``einsum`` with
# fully explicit subscripts (no ellipsis, explicit output).
# ---------------------------------------------------------------------------------------------
def _einsum(*operands: Any, subscripts: str) -> Any:
    return np.einsum(subscripts, *operands, optimize=len(operands) > 2)


matmul_p = primitive("matmul", np.matmul, "contraction")
UFUNC_TO_PRIM[np.matmul] = matmul_p  # a gufunc in NumPy 2, so it arrives through __array_ufunc__
einsum_p = primitive("einsum", _einsum, "contraction")


# ---------------------------------------------------------------------------------------------
# Linear algebra (batched over leading dims, like numpy.linalg).
# ---------------------------------------------------------------------------------------------
def _logabsdet(x: Any) -> Any:
    return np.linalg.slogdet(x)[1]


def _slogdet_sign(x: Any) -> Any:
    return np.linalg.slogdet(x)[0]


def _solve(a: Any, b: Any) -> Any:
    return np.linalg.solve(a, b)


inv_p = primitive("inv", np.linalg.inv, "linalg")
det_p = primitive("det", np.linalg.det, "linalg")
logabsdet_p = primitive("logabsdet", _logabsdet, "linalg")
slogdet_sign_p = primitive("slogdet_sign", _slogdet_sign, "linalg")
solve_p = primitive("solve", _solve, "linalg")
cholesky_p = primitive("cholesky", np.linalg.cholesky, "linalg")


def P(name: str) -> Primitive:
    """The primitive called ``name``."""
    return PRIMITIVES[name]
