"""Reverse-mode rules: one line per primitive argument, ``rule(g, ans, *args, **params)``.

Rules are written with the same NumPy operations users write. Run on concrete arrays they just
compute; run on tracers of an outer trace they *emit equations*, which is how the reverse sweep
becomes a Wengert list of its own and how ``grad(grad(f))`` works.

Rules do not un-broadcast, cast to the input's dtype, skip zero cotangents or accumulate fan-out:
the reverse walker does that. A rule may return a cotangent of any shape that broadcasts to the
argument's shape. ``ZERO`` declares an argument with identically zero gradient.

Rules must be safe for higher order: no ``np.where`` over a branch that can produce inf/nan for
the unselected side (``log(0)``, ``1/0``); sanitize the input of the dangerous branch instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .placement import full, put, zeros
from .primitives import P, getitem_p, index_add_p, index_set_p
from .tracing import ZERO, Primitive, identity_vjp

LN2 = float(np.log(2.0))
LN10 = float(np.log(10.0))


def defvjp(prim: Primitive, *rules: Callable[..., Any] | Any) -> None:
    """Register one reverse rule per positional argument of ``prim`` (``ZERO`` for none)."""
    prim.vjps = tuple(rules)


def defvjp_all(prim: Primitive, rule: Callable[..., tuple]) -> None:
    """Register a joint rule ``rule(g, ans, *args, **params) -> tuple of cotangents``."""
    prim.vjp_all = rule


def _replace_zero(x: Any, val: float) -> Any:
    return np.where(x == 0, val, x)


def _balanced(g: Any, ans: Any, x: Any, other: Any) -> Any:
    """Gradient of max/min to ``x``: all of it where x won, half where x tied with ``other``."""
    return g * np.where(x == ans, np.where(x == other, 0.5, 1.0), 0.0)


# ---------------------------------------------------------------------------------------------
# Elementwise, unary
# ---------------------------------------------------------------------------------------------
defvjp(P("neg"), lambda g, ans, x: -g)
defvjp(P("positive"), identity_vjp)
defvjp(P("reciprocal"), lambda g, ans, x: -g * ans * ans)
defvjp(P("square"), lambda g, ans, x: g * 2.0 * x)
defvjp(P("sqrt"), lambda g, ans, x: g * 0.5 / ans)
defvjp(P("cbrt"), lambda g, ans, x: g / (3.0 * ans * ans))
defvjp(P("exp"), lambda g, ans, x: g * ans)
defvjp(P("exp2"), lambda g, ans, x: g * ans * LN2)
defvjp(P("expm1"), lambda g, ans, x: g * (ans + 1.0))
defvjp(P("log"), lambda g, ans, x: g / x)
defvjp(P("log2"), lambda g, ans, x: g / (x * LN2))
defvjp(P("log10"), lambda g, ans, x: g / (x * LN10))
defvjp(P("log1p"), lambda g, ans, x: g / (x + 1.0))
defvjp(P("sin"), lambda g, ans, x: g * np.cos(x))
defvjp(P("cos"), lambda g, ans, x: -g * np.sin(x))
defvjp(P("tan"), lambda g, ans, x: g * (1.0 + ans * ans))
defvjp(P("arcsin"), lambda g, ans, x: g / np.sqrt(1.0 - x * x))
defvjp(P("arccos"), lambda g, ans, x: -g / np.sqrt(1.0 - x * x))
defvjp(P("arctan"), lambda g, ans, x: g / (1.0 + x * x))
defvjp(P("sinh"), lambda g, ans, x: g * np.cosh(x))
defvjp(P("cosh"), lambda g, ans, x: g * np.sinh(x))
defvjp(P("tanh"), lambda g, ans, x: g * (1.0 - ans * ans))
defvjp(P("arcsinh"), lambda g, ans, x: g / np.sqrt(x * x + 1.0))
defvjp(P("arccosh"), lambda g, ans, x: g / np.sqrt(x * x - 1.0))
defvjp(P("arctanh"), lambda g, ans, x: g / (1.0 - x * x))
defvjp(P("abs"), lambda g, ans, x: g * np.sign(x))
defvjp(P("fabs"), lambda g, ans, x: g * np.sign(x))


# sinc'(x) = sum_k (-1)^k 2k pi^2k x^(2k-1) / (2k+1)!, k >= 1: used where x == 0 (its value there is 0,
# but its derivatives are sinc's derivatives at 0, up to order 8, for higher-order gradients).
_SINC_SERIES = [(-1.0) ** k * 2 * k * np.pi ** (2 * k) / float(np.prod(np.arange(1, 2 * k + 2))) for k in range(1, 5)]


def _sinc_vjp(g: Any, ans: Any, x: Any) -> Any:
    # d/dx sin(pi x)/(pi x) = (cos(pi x) - sinc(x)) / x away from 0.
    safe = _replace_zero(x, 1.0)
    at_zero = sum(c * x ** (2 * k + 1) for k, c in enumerate(_SINC_SERIES))
    return g * np.where(x == 0, at_zero, (np.cos(np.pi * safe) - np.sinc(safe)) / safe)


defvjp(P("sinc"), _sinc_vjp)
defvjp(P("astype"), identity_vjp)
defvjp(P("stop_gradient"), ZERO)

for _name in ("sign", "floor", "ceil", "rint", "trunc", "round", "logical_not", "isnan", "isinf",
              "isfinite", "signbit"):  # fmt: skip
    defvjp(P(_name), ZERO)

# ---------------------------------------------------------------------------------------------
# Elementwise, binary
# ---------------------------------------------------------------------------------------------
defvjp(P("add"), identity_vjp, identity_vjp)
defvjp(P("sub"), identity_vjp, lambda g, ans, x, y: -g)
defvjp(P("mul"), lambda g, ans, x, y: g * y, lambda g, ans, x, y: g * x)
defvjp(P("div"), lambda g, ans, x, y: g / y, lambda g, ans, x, y: -g * ans / y)


def _pow_vjp_x(g: Any, ans: Any, x: Any, y: Any) -> Any:
    if type(y) is int or type(y) is float:
        # A literal exponent of 0, 1 or 2 (x**2 above all) needs no pow: x**1 is x and x**0 is 1 exactly,
        # and a product of two floats of x's precision is exact in float64, so the result is bit for bit
        # the general formula's while a nested or compiled sweep gets two equations fewer.
        if y == 2 or y == 0:
            return g * y * x
        if y == 1:
            return g * y
    return g * y * x ** np.where(y == 0, 1.0, y - 1.0)


defvjp(P("pow"), _pow_vjp_x, lambda g, ans, x, y: g * np.log(_replace_zero(x, 1.0)) * ans)
defvjp(
    P("arctan2"),
    lambda g, ans, y, x: g * x / (x * x + y * y),
    lambda g, ans, y, x: -g * y / (x * x + y * y),
)
defvjp(P("hypot"), lambda g, ans, x, y: g * x / ans, lambda g, ans, x, y: g * y / ans)
defvjp(
    P("logaddexp"),
    lambda g, ans, x, y: g * np.exp(x - ans),
    lambda g, ans, x, y: g * np.exp(y - ans),
)
defvjp(
    P("logaddexp2"),
    lambda g, ans, x, y: g * np.exp2(x - ans),
    lambda g, ans, x, y: g * np.exp2(y - ans),
)
for _name in ("maximum", "minimum", "fmax", "fmin"):
    defvjp(P(_name), lambda g, ans, x, y: _balanced(g, ans, x, y), lambda g, ans, x, y: _balanced(g, ans, y, x))
defvjp(P("mod"), identity_vjp, lambda g, ans, x, y: -g * np.floor_divide(x, y))
defvjp(P("fmod"), identity_vjp, lambda g, ans, x, y: -g * np.trunc(x / y))
defvjp(P("copysign"), lambda g, ans, x, y: g * np.sign(x) * np.sign(ans), ZERO)
for _name in ("floor_divide", "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or",
              "logical_xor", "bitwise_and", "bitwise_or", "bitwise_xor"):  # fmt: skip
    defvjp(P(_name), ZERO, ZERO)

defvjp(
    P("select"),
    ZERO,
    lambda g, ans, c, x, y: np.where(c, g, 0.0),
    lambda g, ans, c, x, y: np.where(c, 0.0, g),
)


# ---------------------------------------------------------------------------------------------
# Reductions
# ---------------------------------------------------------------------------------------------
def _unreduce(g: Any, x: Any, axis: tuple[int, ...], keepdims: bool) -> Any:
    """Give ``g`` (a reduction's cotangent) back the reduced axes, as size-1 dims."""
    if not keepdims:
        g = np.reshape(g, tuple(1 if i in axis else n for i, n in enumerate(np.shape(x))))
    return g


def _sum_vjp(g: Any, ans: Any, x: Any, axis: tuple[int, ...], keepdims: bool) -> Any:
    return np.broadcast_to(_unreduce(g, x, axis, keepdims), np.shape(x))


def _extremum_vjp(g: Any, ans: Any, x: Any, axis: tuple[int, ...], keepdims: bool) -> Any:
    # Ties share the gradient equally, as HIPS autograd does.
    ans = _unreduce(ans, x, axis, keepdims)
    hit = x == ans
    count = np.sum(hit, axis=axis, keepdims=True)
    return _unreduce(g, x, axis, keepdims) * hit / count


def _prod_vjp(g: Any, ans: Any, x: Any, axis: tuple[int, ...], keepdims: bool) -> Any:
    # d prod / d x_i = product of all the others: exclusive cumulative products from both sides,
    # so zeros in x are handled exactly (no division by x).
    from .numpy_api import cumprod

    shape = np.shape(x)
    rest = tuple(i for i in range(len(shape)) if i not in axis)
    perm = rest + axis
    xt = np.reshape(np.transpose(x, perm), tuple(shape[i] for i in rest) + (-1,))
    ones = full(xt.shape[:-1] + (1,), 1, xt.dtype, like=xt)
    left = cumprod(np.concatenate([ones, xt[..., :-1]], axis=-1), axis=-1)
    right = cumprod(np.concatenate([ones, xt[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
    others = np.reshape(left * right, tuple(shape[i] for i in perm))
    others = np.transpose(others, tuple(np.argsort(perm)))
    return _unreduce(g, x, axis, keepdims) * others


def _cumsum_vjp(g: Any, ans: Any, x: Any, axis: int) -> Any:
    return np.flip(np.cumsum(np.flip(g, axis), axis=axis), axis)


def _cumprod_vjp(g: Any, ans: Any, x: Any, axis: int) -> Any:
    # The VJP of the log-depth scan of multiplies (``numpy_api.cumprod_scan``): exact where x has
    # zeros, and written in primitives, so it is recorded (and differentiable) under nesting.
    from .numpy_api import cumprod_scan
    from .reverse import backward
    from .tracing import new_trace

    with new_trace() as trace:
        xt = trace.new_input(x)
        out = cumprod_scan(xt, axis)
    ct = backward(trace.eqns, {out._var.index: g})
    c = ct.get(xt._var.index)
    return zeros(np.shape(x), np.float64, like=x) if c is None else c


defvjp(P("reduce_sum"), _sum_vjp)
defvjp(P("reduce_max"), _extremum_vjp)
defvjp(P("reduce_min"), _extremum_vjp)
defvjp(P("reduce_prod"), _prod_vjp)
defvjp(P("cumsum"), _cumsum_vjp)
defvjp(P("cumprod"), _cumprod_vjp)
for _name in ("reduce_any", "reduce_all", "argmax", "argmin", "argsort", "nonzero"):
    defvjp(P(_name), ZERO)


# ---------------------------------------------------------------------------------------------
# Movement and indexing
# ---------------------------------------------------------------------------------------------
def _getitem_vjp(g: Any, ans: Any, x: Any, *arrays: Any, tree: tuple) -> Any:
    return index_add_p(zeros(np.shape(x), np.result_type(g), like=g), g, *arrays, tree=tree)


def _index_vjp_x(g: Any, ans: Any, x: Any, v: Any, *arrays: Any, tree: tuple) -> Any:
    return g


def _index_set_vjp_x(g: Any, ans: Any, x: Any, v: Any, *arrays: Any, tree: tuple) -> Any:
    return index_set_p(g, 0.0, *arrays, tree=tree)


def _index_vjp_v(g: Any, ans: Any, x: Any, v: Any, *arrays: Any, tree: tuple) -> Any:
    return getitem_p(g, *arrays, tree=tree)


def _index_set_vjp_v(g: Any, ans: Any, x: Any, v: Any, *arrays: Any, tree: tuple) -> Any:
    # With repeated integer indices NumPy keeps the last write (``y[[0, 0]] = v`` stores v[1]): only
    # the entries of v that won their position reach the output. Number the written slots, store
    # the numbers the same way, read them back: a slot won where it reads back its own number.
    gv = getitem_p(g, *arrays, tree=tree)
    if not arrays:
        return gv  # basic indexing writes each position once
    slots = put(np.arange(int(np.prod(np.shape(gv), dtype=np.int64))).reshape(np.shape(gv)), like=g)
    owner = index_set_p(full(np.shape(x), -1, np.int64, like=g), slots, *arrays, tree=tree)
    won = getitem_p(owner, *arrays, tree=tree) == slots
    if isinstance(won, np.ndarray) and won.all():
        return gv  # no repeated indices (concrete indices only: traced ones may change between calls)
    return np.where(won, gv, 0.0)


def _concatenate_vjp_all(g: Any, ans: Any, *xs: Any, axis: int) -> tuple:
    out, start = [], 0
    for x in xs:
        n = np.shape(x)[axis]
        index = (slice(None),) * axis + (slice(start, start + n),)
        out.append(getitem_p(g, tree=index))
        start += n
    return tuple(out)


defvjp(P("reshape"), lambda g, ans, x, shape: np.reshape(g, np.shape(x)))
defvjp(P("transpose"), lambda g, ans, x, axes: np.transpose(g, tuple(np.argsort(axes))))
defvjp(P("broadcast_to"), identity_vjp)  # the walker sums over broadcast axes
defvjp(P("getitem"), _getitem_vjp)
defvjp(P("index_add"), _index_vjp_x, _index_vjp_v)
defvjp(P("index_set"), _index_set_vjp_x, _index_set_vjp_v)
defvjp_all(P("concatenate"), _concatenate_vjp_all)


# ---------------------------------------------------------------------------------------------
# Contractions
# ---------------------------------------------------------------------------------------------
def _mT(x: Any) -> Any:
    return np.swapaxes(x, -1, -2)


def _matmul_vjp_a(g: Any, ans: Any, a: Any, b: Any) -> Any:
    # NumPy's 1-D operands act as a row (a) or a column (b) that is removed from the result.
    if np.ndim(b) == 1:
        na = np.ndim(a)
        return g * b if na == 1 else np.outer(g, b) if na == 2 else g[..., None] * b
    if np.ndim(a) == 1:
        return np.matmul(g[..., None, :], _mT(b))[..., 0, :]
    return g @ _mT(b)


def _matmul_vjp_b(g: Any, ans: Any, a: Any, b: Any) -> Any:
    if np.ndim(a) == 1:
        return g * a if np.ndim(b) == 1 else a[:, None] * g[..., None, :]
    if np.ndim(b) == 1:
        return g @ a if np.ndim(a) == 2 else np.matmul(g[..., None, :], a)[..., 0, :]
    return _mT(a) @ g


defvjp(P("matmul"), _matmul_vjp_a, _matmul_vjp_b)


def _einsum_vjp_all(g: Any, ans: Any, *operands: Any, subscripts: str) -> tuple:
    from .numpy_linalg import einsum_operand_grad

    return tuple(einsum_operand_grad(g, operands, subscripts, i) for i in range(len(operands)))


defvjp_all(P("einsum"), _einsum_vjp_all)


# ---------------------------------------------------------------------------------------------
# Linear algebra (batched over leading dims)
# ---------------------------------------------------------------------------------------------
def _solve_vjp_all(g: Any, ans: Any, a: Any, b: Any) -> tuple:
    if np.ndim(b) == 1:
        # One vector b, broadcast over a's batch: solve with g as a column so a batched g is not
        # read as a matrix right-hand side.
        gb = np.linalg.solve(_mT(a), g[..., None])[..., 0]
        ga = -gb[..., :, None] * ans[..., None, :]
    else:
        gb = np.linalg.solve(_mT(a), g)
        ga = -gb @ _mT(ans)
    return ga, gb


def _cholesky_vjp(g: Any, L: Any, x: Any) -> Any:
    # Murray (2016): with phi(A) = tril(A) with its diagonal halved,
    # S = L^-T phi(L^T g) L^-1, and the symmetric gradient is (S + S^T) / 2.
    n = np.shape(L)[-1]
    half_diag = put(np.tril(np.ones((n, n))) - 0.5 * np.eye(n), like=L)
    phi = (_mT(L) @ g) * half_diag
    linv = np.linalg.inv(L)
    s = _mT(linv) @ phi @ linv
    return 0.5 * (s + _mT(s))


defvjp(P("inv"), lambda g, ans, x: -_mT(ans) @ g @ _mT(ans))
defvjp(P("det"), lambda g, ans, x: (g * ans)[..., None, None] * _mT(np.linalg.inv(x)))
defvjp(P("logabsdet"), lambda g, ans, x: g[..., None, None] * _mT(np.linalg.inv(x)))
defvjp(P("slogdet_sign"), ZERO)
defvjp_all(P("solve"), _solve_vjp_all)
defvjp(P("cholesky"), _cholesky_vjp)

__all__ = ["defvjp", "defvjp_all"]
