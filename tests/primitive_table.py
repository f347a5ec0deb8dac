"""The primitive table: one list of rows that, together, exercise every primitive of gradjit.

Shared by the test files that check something *for every primitive* (forward rules, executors).
It is a plain module, not a test file: ``from primitive_table import ROWS`` works from any test
module because pytest puts ``tests/`` on ``sys.path`` (rootdir conftest, no ``__init__.py``).

A row is ``Row(id, fn, make_args, prims)``:

- ``fn(*args)`` is plain NumPy code (a primitive called directly only where NumPy has no spelling
  for it: ``index_add``, the gradient primitives of ``conv2d`` and the pools). It returns one float
  array, so every row has a derivative to check, also for primitives whose own output is boolean or
  integer (comparisons, ``argmax``, ...): those rows combine them with float operations.
- ``make_args(rng, dtype) -> tuple`` draws the arguments: float arrays of ``dtype`` (only the
  ``astype`` row fixes its own, float32, to have a float-to-float cast to differentiate), from the
  operations' domains and away from kinks, ties and jumps, so central finite differences with a
  small step see the same smooth branch.
- ``prims`` names the primitives the row covers (a subset of those it traces; a test checks that).

Invariants (asserted by ``tests/test_forward_rules.py``): the union of ``prims`` over ``ROWS`` is
exactly ``set(PRIMITIVES)``; every name in ``NO_TANGENT`` (primitives whose output is never a float:
they have no derivative of their own) is covered by a row too. ``fd=False`` marks the one row whose
derivative is not the function's (``stop_gradient``): finite differences do not apply to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import gradjit as gj
from gradjit.nn import ops as nn_ops
from gradjit.primitives import ARRAY, index_add_p

Maker = Callable[[np.random.Generator, Any], tuple]


@dataclass(frozen=True)
class Row:
    id: str
    fn: Callable[..., Any]
    make_args: Maker
    prims: frozenset[str]
    fd: bool = True  # the derivative is the function's (False only for stop_gradient)

    def __repr__(self) -> str:
        return f"Row({self.id})"


def row(id: str, fn: Callable[..., Any], make_args: Maker, *prims: str, fd: bool = True) -> Row:
    return Row(id, fn, make_args, frozenset(prims or (id,)), fd)


# Primitives whose output is boolean or integer: no tangent flows out of them.
NO_TANGENT = frozenset(
    "argmax argmin argsort nonzero reduce_any reduce_all eq ne lt le gt ge logical_and logical_or "
    "logical_xor logical_not bitwise_and bitwise_or bitwise_xor isnan isinf isfinite signbit".split()
)


# ---------------------------------------------------------------------------------------------
# Input makers: ``make(rng, dtype) -> tuple of arrays``.
# ---------------------------------------------------------------------------------------------
def _cast(a: Any, dtype: Any) -> np.ndarray:
    return np.asarray(a, dtype=dtype)


def uniform(*shapes: tuple, lo: float = -2.0, hi: float = 2.0) -> Maker:
    """Each argument uniform in [lo, hi]."""
    return lambda rng, dtype: tuple(_cast(rng.uniform(lo, hi, s), dtype) for s in shapes)


def signed(*shapes: tuple, lo: float = 0.5, hi: float = 2.0) -> Maker:
    """|x| in [lo, hi] with a random sign: away from 0 (1/x, abs, sign, copysign)."""
    return lambda rng, dtype: tuple(_cast(rng.uniform(lo, hi, s) * rng.choice([-1.0, 1.0], s), dtype) for s in shapes)


def off_integers(*shapes: tuple) -> Maker:
    """k + u, u in [0.15, 0.35] or [0.65, 0.85]: away from integers and halves (rounding is flat)."""

    def make(rng: np.random.Generator, dtype: Any) -> tuple:
        return tuple(
            _cast(rng.integers(-3, 3, s) + rng.uniform(0.15, 0.35, s) + 0.5 * rng.integers(0, 2, s), dtype)
            for s in shapes
        )

    return make


def separated(*shapes: tuple) -> Maker:
    """Arguments on interleaved grids: any two values (across arguments, after broadcasting) differ
    by at least 0.06, so max/min/comparisons never meet a tie."""

    def make(rng: np.random.Generator, dtype: Any) -> tuple:
        return tuple(
            _cast(0.2 * rng.integers(-10, 10, s) + 0.1 * (j % 2) + rng.uniform(-0.02, 0.02, s), dtype)
            for j, s in enumerate(shapes)
        )

    return make


def distinct(*shapes: tuple, lo: float = -2.0, hi: float = 2.0) -> Maker:
    """Values pairwise distinct (by about (hi - lo) / size) within and across arguments."""

    def make(rng: np.random.Generator, dtype: Any) -> tuple:
        sizes = [int(np.prod(s)) for s in shapes]
        vals = rng.permutation(np.linspace(lo, hi, sum(sizes)))
        out, start = [], 0
        for s, n in zip(shapes, sizes):
            out.append(_cast(vals[start : start + n].reshape(s), dtype))
            start += n
        return tuple(out)

    return make


def mod_args(sx: tuple, sy: tuple) -> Maker:
    """x % y, x // y away from their jumps: y near 1.5, x = y * (k + u) with u well inside (0, 1)."""

    def make(rng: np.random.Generator, dtype: Any) -> tuple:
        y = rng.uniform(1.5, 1.51, sy)
        x = 1.5 * (rng.integers(-3, 3, sx) + rng.uniform(0.25, 0.75, sx))
        return _cast(x, dtype), _cast(y, dtype)

    return make


def square(*shapes: tuple) -> Maker:
    """Well-conditioned square matrices (stacks): standard normal + n I."""
    return lambda rng, dtype: tuple(_cast(rng.standard_normal(s) + s[-1] * np.eye(s[-1]), dtype) for s in shapes)


def normal(*shapes: tuple) -> Maker:
    return lambda rng, dtype: tuple(_cast(rng.standard_normal(s), dtype) for s in shapes)


def then(*makers: Maker) -> Maker:
    """Concatenate the arguments of several makers (e.g. a square matrix, then a right-hand side)."""
    return lambda rng, dtype: tuple(a for m in makers for a in m(rng, dtype))


def float32(maker: Maker) -> Maker:
    """The arguments in float32 whatever the requested dtype."""
    return lambda rng, dtype: maker(rng, np.float32)


S = (2, 3)  # the shape of an elementwise operand
B = (3,)  # a second operand broadcast against S


def _sym(x: Any) -> Any:
    """A symmetric positive definite matrix from any square one: linear in ``x``."""
    n = x.shape[-1]
    return 0.5 * (x + np.swapaxes(x, -1, -2)) + n * np.eye(n, dtype=x.dtype)


def _cmp(op: Callable) -> Callable:
    return lambda x, y: np.where(op(x, y), x * y, x - y)


def _flag(op: Callable) -> Callable:
    return lambda x, y: np.where(op(x > 0.1, y < 0.1), x, 2.0 * y)


# conv/pool shapes: NCHW inputs, OIHW weights
X4 = (2, 2, 5, 5)
W4 = (3, 2, 3, 3)
CONV = {"stride": (1, 1), "padding": (1, 1)}
CONV_OUT = (2, 3, 5, 5)
POOL = {"kernel": (2, 2), "stride": (1, 1), "padding": (0, 0)}
POOL_OUT = (2, 2, 4, 4)
AVG = {"kernel": (3, 3), "stride": (2, 2), "padding": (1, 1), "include_pad": False}
AVG_OUT = (2, 2, 3, 3)

# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------
ROWS: list[Row] = [
    # -- elementwise, unary ----------------------------------------------------------------------
    row("neg", np.negative, uniform(S)),
    row("positive", lambda x: np.positive(x) * 2.0, uniform(S), "positive", "mul"),
    row("reciprocal", np.reciprocal, signed(S)),
    row("square", np.square, uniform(S)),
    row("sqrt", np.sqrt, uniform(S, lo=0.3, hi=3.0)),
    row("cbrt", np.cbrt, signed(S, lo=0.3, hi=3.0)),
    row("exp", np.exp, uniform(S)),
    row("exp2", np.exp2, uniform(S)),
    row("expm1", np.expm1, uniform(S)),
    row("log", np.log, uniform(S, lo=0.3, hi=3.0)),
    row("log2", np.log2, uniform(S, lo=0.3, hi=3.0)),
    row("log10", np.log10, uniform(S, lo=0.3, hi=3.0)),
    row("log1p", np.log1p, uniform(S, lo=-0.7, hi=3.0)),
    row("sin", np.sin, uniform(S, lo=-3.0, hi=3.0)),
    row("cos", np.cos, uniform(S, lo=-3.0, hi=3.0)),
    row("tan", np.tan, uniform(S, lo=-1.2, hi=1.2)),
    row("arcsin", np.arcsin, uniform(S, lo=-0.9, hi=0.9)),
    row("arccos", np.arccos, uniform(S, lo=-0.9, hi=0.9)),
    row("arctan", np.arctan, uniform(S, lo=-3.0, hi=3.0)),
    row("sinh", np.sinh, uniform(S)),
    row("cosh", np.cosh, uniform(S)),
    row("tanh", np.tanh, uniform(S)),
    row("arcsinh", np.arcsinh, uniform(S, lo=-3.0, hi=3.0)),
    row("arccosh", np.arccosh, uniform(S, lo=1.2, hi=3.0)),
    row("arctanh", np.arctanh, uniform(S, lo=-0.9, hi=0.9)),
    row("abs", np.abs, signed(S, lo=0.1)),
    row("fabs", np.fabs, signed(S, lo=0.1)),
    row("sinc", np.sinc, signed(S, lo=0.1, hi=2.5)),
    # zero derivative: multiplied by x so that the row's tangent is not zero
    row("sign", lambda x: np.sign(x) * x, signed(S, lo=0.1), "sign", "mul"),
    row("floor", lambda x: np.floor(x) * x, off_integers(S), "floor", "mul"),
    row("ceil", lambda x: np.ceil(x) * x, off_integers(S), "ceil", "mul"),
    row("rint", lambda x: np.rint(x) * x, off_integers(S), "rint", "mul"),
    row("trunc", lambda x: np.trunc(x) * x, off_integers(S), "trunc", "mul"),
    row("round", lambda x: np.round(x, 1) * x + np.round(x), off_integers(S), "round", "mul", "add"),
    row("isnan", lambda x: np.where(np.isnan(x), 0.0, x * x), uniform(S), "isnan", "select", "mul"),
    row("isinf", lambda x: np.where(np.isinf(x), 0.0, x * x), uniform(S), "isinf", "select", "mul"),
    row("isfinite", lambda x: np.where(np.isfinite(x), x * x, 0.0), uniform(S), "isfinite", "select", "mul"),
    row("signbit", lambda x: np.signbit(x) * x + x, signed(S, lo=0.1), "signbit", "mul", "add"),
    row(
        "logical_not",
        lambda x: np.where(np.logical_not(x > 0.1), x, -x),
        separated(S),
        "logical_not",
        "gt",
        "select",
        "neg",
    ),  # fmt: skip
    # -- elementwise, binary (the second operand broadcast) --------------------------------------
    row("add", np.add, uniform(S, B)),
    row("sub", np.subtract, uniform(S, B)),
    row("mul", np.multiply, uniform(S, B)),
    row("div", np.true_divide, signed(S, B)),
    row("pow", np.power, then(uniform(S, lo=0.5, hi=2.0), uniform(B))),
    row("pow_int_exponent", lambda x: x**3, uniform(S), "pow"),
    row("arctan2", np.arctan2, signed(S, B, lo=0.3)),
    row("hypot", np.hypot, signed(S, B, lo=0.3)),
    row("logaddexp", np.logaddexp, uniform(S, B, lo=-3.0, hi=3.0)),
    row("logaddexp2", np.logaddexp2, uniform(S, B, lo=-3.0, hi=3.0)),
    row("maximum", np.maximum, separated(S, B)),
    row("minimum", np.minimum, separated(S, B)),
    row("fmax", np.fmax, separated(S, B)),
    row("fmin", np.fmin, separated(S, B)),
    row("mod", np.remainder, mod_args(S, B)),
    row("fmod", np.fmod, mod_args(S, B)),
    row("copysign", np.copysign, signed(S, B, lo=0.3)),
    row("floor_divide", lambda x, y: np.floor_divide(x, y) * x, mod_args(S, B), "floor_divide", "mul"),
    row("eq", _cmp(np.equal), separated(S, B), "eq", "select", "mul", "sub"),
    row("ne", _cmp(np.not_equal), separated(S, B), "ne", "select", "mul", "sub"),
    row("lt", _cmp(np.less), separated(S, B), "lt", "select", "mul", "sub"),
    row("le", _cmp(np.less_equal), separated(S, B), "le", "select", "mul", "sub"),
    row("gt", _cmp(np.greater), separated(S, B), "gt", "select", "mul", "sub"),
    row("ge", _cmp(np.greater_equal), separated(S, B), "ge", "select", "mul", "sub"),
    row("logical_and", _flag(np.logical_and), separated(S, B), "logical_and", "gt", "lt", "select"),
    row("logical_or", _flag(np.logical_or), separated(S, B), "logical_or", "gt", "lt", "select"),
    row("logical_xor", _flag(np.logical_xor), separated(S, B), "logical_xor", "gt", "lt", "select"),
    row("bitwise_and", _flag(lambda a, b: a & b), separated(S, B), "bitwise_and", "gt", "lt", "select"),
    row("bitwise_or", _flag(lambda a, b: a | b), separated(S, B), "bitwise_or", "gt", "lt", "select"),
    row("bitwise_xor", _flag(lambda a, b: a ^ b), separated(S, B), "bitwise_xor", "gt", "lt", "select"),
    row("select", lambda x, y: np.where(np.array([True, False, True]), x, y), uniform(S, B)),
    row("astype", lambda x: np.sin(x.astype(np.float64)), float32(uniform(S)), "astype", "sin"),
    row("stop_gradient", lambda x: gj.stop_gradient(x) * x, uniform(S), "stop_gradient", "mul", fd=False),
    # -- reductions ------------------------------------------------------------------------------
    row("reduce_sum", lambda x: np.sum(x, axis=1), uniform((3, 4))),
    row(
        "reduce_sum_keepdims_all", lambda x: np.sum(x, axis=(0, 2), keepdims=True), uniform((2, 3, 2)), "reduce_sum"
    ),  # fmt: skip
    row("reduce_max", lambda x: np.max(x, axis=0), distinct((3, 4))),
    row("reduce_min", lambda x: np.min(x, axis=-1, keepdims=True), distinct((3, 4))),
    row("reduce_prod", lambda x: np.prod(x, axis=1), signed((3, 4), lo=0.5, hi=1.5)),
    row("reduce_prod_all", np.prod, signed((2, 3), lo=0.5, hi=1.5), "reduce_prod"),
    row(
        "reduce_any",
        lambda x: np.where(np.any(x > 1.1, axis=1, keepdims=True), x, -x),
        separated((3, 4)),
        "reduce_any",
        "gt",
        "select",
        "neg",
    ),  # fmt: skip
    row(
        "reduce_all",
        lambda x: np.where(np.all(x > -1.1, axis=0), x, x * x),
        separated((3, 4)),
        "reduce_all",
        "gt",
        "select",
        "mul",
    ),  # fmt: skip
    row(
        "argmax", lambda x: np.argmax(x, axis=1) * np.sum(x, axis=1), distinct((3, 4)), "argmax", "reduce_sum", "mul"
    ),  # fmt: skip
    row(
        "argmin", lambda x: np.argmin(x, axis=0) * np.sum(x, axis=0), distinct((3, 4)), "argmin", "reduce_sum", "mul"
    ),  # fmt: skip
    row("argsort", lambda x: np.sort(x, axis=1), distinct((3, 4)), "argsort", "getitem"),
    row("nonzero", lambda x: x[np.nonzero(x > 0)], signed((3, 4)), "nonzero", "gt", "getitem"),
    row("cumsum", lambda x: np.cumsum(x, axis=1), uniform((3, 4))),
    row("cumprod", lambda x: np.cumprod(x, axis=0), signed((4, 3), lo=0.5, hi=1.5)),
    # -- movement and indexing -------------------------------------------------------------------
    row("reshape", lambda x: np.reshape(x, (3, 2)), uniform(S)),
    row("transpose", lambda x: np.transpose(x, (1, 2, 0)), uniform((2, 3, 2))),
    row("broadcast_to", lambda x: np.broadcast_to(x, (2, 2, 3)), uniform((2, 1, 3))),
    row("getitem_basic", lambda x: x[1:, ::2], uniform((3, 4)), "getitem"),
    row("getitem_fancy", lambda x: x[np.array([2, 0, 2]), 1:], uniform((3, 4)), "getitem"),
    row("index_set", lambda x, v: _set_rows(x, v), uniform((4, 3), (2, 3)), "index_set", "mul"),
    row("index_set_repeated", lambda x, v: _set_repeated(x, v), uniform((4, 3), (3,)), "index_set", "mul"),
    row("index_add", lambda x, v: index_add_p(x, v, np.array([2, 0, 2]), tree=(ARRAY,)), uniform((4, 3), (3, 3))),
    row(
        "index_add_basic", lambda x, v: index_add_p(x, v, tree=(slice(1, 3),)), uniform((4, 3), (2, 3)), "index_add"
    ),  # fmt: skip
    row("concatenate", lambda x, y: np.concatenate([x, y, np.ones((1, 3), x.dtype)], axis=0), uniform(S, (1, 3))),
    # -- contractions ----------------------------------------------------------------------------
    row("matmul", np.matmul, normal((2, 3), (3, 4))),
    row("matmul_batched_vector", np.matmul, normal((2, 3, 4), (4,)), "matmul"),
    row("matmul_vector_batched", np.matmul, normal((3,), (2, 3, 4)), "matmul"),
    row("einsum", lambda a, b: np.einsum("ij,jk->ik", a, b), normal((2, 3), (3, 4))),
    row(
        "einsum_three", lambda a, b, c: np.einsum("ij,jk,kl->il", a, b, c), normal((2, 3), (3, 4), (4, 2)), "einsum"
    ),  # fmt: skip
    row("einsum_same_operand", lambda a: np.einsum("ij,ij->i", a, a), normal((3, 4)), "einsum"),
    # -- linear algebra --------------------------------------------------------------------------
    row("inv", np.linalg.inv, square((3, 3))),
    row("inv_batched", np.linalg.inv, square((2, 3, 3)), "inv"),
    row("det", np.linalg.det, square((2, 3, 3))),
    row("logabsdet", lambda a: np.linalg.slogdet(a)[1], square((3, 3))),
    row(
        "slogdet_sign",
        lambda a: np.linalg.slogdet(-a)[0] * np.linalg.slogdet(-a)[1],
        square((3, 3)),
        "slogdet_sign",
        "logabsdet",
        "mul",
        "neg",
    ),  # fmt: skip
    row("solve_vector", np.linalg.solve, then(square((3, 3)), normal((3,))), "solve"),
    row("solve_matrix", np.linalg.solve, then(square((3, 3)), normal((3, 2))), "solve"),
    row("solve_batched_vector", np.linalg.solve, then(square((2, 3, 3)), normal((3,))), "solve"),
    row("cholesky", lambda x: np.linalg.cholesky(_sym(x)), normal((3, 3))),
    row("cholesky_batched", lambda x: np.linalg.cholesky(_sym(x)), normal((2, 3, 3)), "cholesky"),
    # -- convolution and pooling (gradjit.nn.ops) ------------------------------------------------
    row("conv2d", lambda x, w: nn_ops.conv2d(x, w, stride=1, padding=1), normal(X4, W4)),
    row("conv2d_strided", lambda x, w: nn_ops.conv2d(x, w, stride=2, padding=0), normal(X4, W4), "conv2d"),
    row("conv2d_grad_input", lambda g, w: nn_ops.conv2d_grad_input_p(g, w, shape=X4, **CONV), normal(CONV_OUT, W4)),
    row(
        "conv2d_grad_weight", lambda x, g: nn_ops.conv2d_grad_weight_p(x, g, shape=W4, **CONV), normal(X4, CONV_OUT)
    ),  # fmt: skip
    row("max_pool2d", lambda x: nn_ops.max_pool2d(x, 2, stride=1), distinct(X4)),
    row("max_pool2d_grad", lambda g, x: nn_ops.max_pool2d_grad_p(g, x, **POOL), distinct(POOL_OUT, X4)),
    row("max_pool2d_gather", lambda a, x: nn_ops.max_pool2d_gather_p(a, x, **POOL), distinct(X4, X4)),
    row("avg_pool2d", lambda x: nn_ops.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False), normal(X4)),
    row("avg_pool2d_grad", lambda g: nn_ops.avg_pool2d_grad_p(g, shape=X4, **AVG), normal(AVG_OUT)),
]


def _set_rows(x: Any, v: Any) -> Any:
    y = x * 1.0
    y[1:3] = v
    return y


def _set_repeated(x: Any, v: Any) -> Any:
    y = x * 1.0
    y[np.array([0, 2, 0])] = v  # the last write to row 0 wins
    return y


ROWS_BY_ID: dict[str, Row] = {r.id: r for r in ROWS}
assert len(ROWS_BY_ID) == len(ROWS), "row ids must be unique"


def covered() -> set[str]:
    """The union of ``prims`` over all rows."""
    return set().union(*(r.prims for r in ROWS))
