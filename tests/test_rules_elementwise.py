"""Table-driven tests of the elementwise and reduction operations of issue 2, item 7.

One row per operation (several for operations reachable several ways: operator, ufunc, method).
Each row names a function written with plain NumPy, an input maker drawing values from the
operation's domain (away from kinks and discontinuities, so finite differences are meaningful), and
the shapes to try, broadcasting cases and scalars included. For every row and shape:

- the forward value equals plain NumPy's bit for bit, dtype included (checked through ``vjp`` for the
  raw output and through ``value_and_grad`` for the summed one);
- each gradient has its input's shape, dtype and Python type;
- ``gj.check_grads(f, *args, order=2)`` passes (the reverse sweep of the reverse sweep is right);
- zero-gradient operations give a gradient that is exactly zero.

Points where an operation is not differentiable (ties of max/min, zeros of prod) have their own
tests below the table, with the values gradjit promises there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

import gradjit as gj

PY = "py"  # a shape marker: a Python float, not an array

# ---------------------------------------------------------------------------------------------
# Input makers. A maker is ``make(rng, dtype, *shapes) -> tuple of arguments``.
# ---------------------------------------------------------------------------------------------


def _cast(a: np.ndarray, shape: Any, dtype: Any) -> Any:
    if shape == PY:
        return float(a)
    return np.asarray(a, dtype=dtype)


def _draw(rng: np.random.Generator, shape: Any, lo: float, hi: float) -> np.ndarray:
    return rng.uniform(lo, hi, size=() if shape == PY else shape)


def uniform(lo: float, hi: float) -> Callable:
    """Each argument uniform in [lo, hi]."""

    def make(rng: np.random.Generator, dtype: Any, *shapes: Any) -> tuple:
        return tuple(_cast(_draw(rng, s, lo, hi), s, dtype) for s in shapes)

    return make


def signed(lo: float, hi: float) -> Callable:
    """Each argument with |x| in [lo, hi] and a random sign (keeps away from 0, e.g. for 1/x)."""

    def make(rng: np.random.Generator, dtype: Any, *shapes: Any) -> tuple:
        out = []
        for s in shapes:
            a = _draw(rng, s, lo, hi) * rng.choice([-1.0, 1.0], size=() if s == PY else s)
            out.append(_cast(a, s, dtype))
        return tuple(out)

    return make


def off_integers(lo: int, hi: int) -> Callable:
    """Values k + u with u in [0.15, 0.35] or [0.65, 0.85]: away from integers and half-integers,
    so floor/ceil/round/rint/trunc are locally constant (and round-half cases do not arise)."""

    def make(rng: np.random.Generator, dtype: Any, *shapes: Any) -> tuple:
        out = []
        for s in shapes:
            size = () if s == PY else s
            k = rng.integers(lo, hi, size=size)
            u = rng.uniform(0.15, 0.35, size=size) + 0.5 * rng.integers(0, 2, size=size)
            out.append(_cast(k + u, s, dtype))
        return tuple(out)

    return make


def separated(lo: int = -3, hi: int = 3) -> Callable:
    """Arguments on interleaved grids (x near odd tenths*2, y near even), so that any pair of
    values, after broadcasting, differs by at least 0.06: max/min/clip/abs never meet a tie."""

    def make(rng: np.random.Generator, dtype: Any, *shapes: Any) -> tuple:
        out = []
        for j, s in enumerate(shapes):
            size = () if s == PY else s
            a = 0.2 * rng.integers(lo * 5, hi * 5, size=size) + 0.1 * (j % 2) + rng.uniform(-0.02, 0.02, size=size)
            out.append(_cast(a, s, dtype))
        return tuple(out)

    return make


def mod_args(rng: np.random.Generator, dtype: Any, sx: Any, sy: Any) -> tuple:
    """x % y, x // y away from their jumps: y near 1.5, x = y * (k + u) with u well inside (0, 1)."""
    y = _draw(rng, sy, 1.5, 1.51)
    size = () if sx == PY else sx
    x = 1.5 * (rng.integers(-3, 3, size=size) + rng.uniform(0.25, 0.75, size=size))
    return _cast(x, sx, dtype), _cast(y, sy, dtype)


def with_mask(inner: Callable) -> Callable:
    """A fixed boolean condition (a constant) first, then the float arguments of ``inner``."""

    def make(rng: np.random.Generator, dtype: Any, *shapes: Any) -> tuple:
        return (np.array([True, False, True, True]),) + inner(rng, dtype, *shapes)

    return make


def distinct(lo: float, hi: float) -> Callable:
    """Uniform values that are pairwise distinct by at least 1e-3 (max/min without ties)."""

    def make(rng: np.random.Generator, dtype: Any, *shapes: Any) -> tuple:
        out = []
        for s in shapes:
            n = int(np.prod(s)) if s != PY else 1
            vals = rng.permutation(np.linspace(lo, hi, max(n, 2)))[:n] + rng.uniform(-1e-4, 1e-4, size=n)
            out.append(_cast(vals.reshape(() if s == PY else s), s, dtype))
        return tuple(out)

    return make


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------
UNARY_SHAPES = [(PY,), ((),), ((3,),), ((2, 3),)]
BINARY_SHAPES = [(PY, PY), ((3,), (3,)), ((3, 1), (4,)), (PY, (2, 3)), ((2, 3), ())]
REDUCE_SHAPES = [((5,),), ((3, 4),), ((2, 3, 4),)]
MASK_SHAPES = [((4,), (4,)), ((3, 1), (4,)), ((), (3, 4))]


@dataclass
class Row:
    id: str
    fn: Callable
    make: Callable
    shapes: list = field(default_factory=lambda: UNARY_SHAPES)
    zero_grad: bool = False  # the gradient is exactly zero everywhere in the domain
    check: bool = True  # run check_grads (off where finite differences cannot see the function)
    rtol: float = 1e-5


def U(id: str, fn: Callable, make: Callable, **kw: Any) -> Row:
    return Row(id, fn, make, UNARY_SHAPES, **kw)


def B(id: str, fn: Callable, make: Callable, **kw: Any) -> Row:
    return Row(id, fn, make, BINARY_SHAPES, **kw)


def R(id: str, fn: Callable, make: Callable | None = None, **kw: Any) -> Row:
    return Row(id, fn, make or uniform(-2, 2), REDUCE_SHAPES, **kw)


ROWS: list[Row] = [
    # -- arithmetic: operators, reflected operators with a Python scalar, and ufuncs -----------
    B("op_add", lambda x, y: x + y, uniform(-2, 2)),
    B("op_sub", lambda x, y: x - y, uniform(-2, 2)),
    B("op_mul", lambda x, y: x * y, uniform(-2, 2)),
    B("op_truediv", lambda x, y: x / y, signed(0.5, 2)),
    B("op_floordiv", lambda x, y: x // y, mod_args, zero_grad=True),
    B("op_mod", lambda x, y: x % y, mod_args),
    B("op_pow", lambda x, y: x**y, uniform(0.5, 2)),
    U("op_pow_int", lambda x: x**3, uniform(-2, 2)),
    U("op_pow_float_literal", lambda x: x**2.5, uniform(0.5, 2)),
    U("op_rsub", lambda x: 2.0 - x, uniform(-2, 2)),
    U("op_rtruediv", lambda x: 2.0 / x, signed(0.5, 2)),
    U("op_rpow", lambda x: 1.7**x, uniform(-2, 2)),
    U("op_rmod", lambda x: 5.0 % x, uniform(1.1, 1.2)),
    U("op_neg", lambda x: -x, uniform(-2, 2)),
    U("op_pos", lambda x: +x, uniform(-2, 2)),
    U("op_abs", lambda x: abs(x), signed(0.1, 2)),
    B("add", np.add, uniform(-2, 2)),
    B("subtract", np.subtract, uniform(-2, 2)),
    B("multiply", np.multiply, uniform(-2, 2)),
    B("divide", np.divide, signed(0.5, 2)),
    B("true_divide", np.true_divide, signed(0.5, 2)),
    B("floor_divide", np.floor_divide, mod_args, zero_grad=True),
    B("remainder", np.remainder, mod_args),
    B("mod", np.mod, mod_args),
    B("fmod", np.fmod, mod_args),
    B("power", np.power, uniform(0.5, 2)),
    U("negative", np.negative, uniform(-2, 2)),
    U("positive", np.positive, uniform(-2, 2)),
    U("reciprocal", np.reciprocal, signed(0.5, 2)),
    U("square", np.square, uniform(-2, 2)),
    U("sqrt", np.sqrt, uniform(0.3, 3)),
    U("cbrt", np.cbrt, signed(0.3, 3)),
    # -- exponentials and logarithms -----------------------------------------------------------
    U("exp", np.exp, uniform(-2, 2)),
    U("exp2", np.exp2, uniform(-2, 2)),
    U("expm1", np.expm1, uniform(-2, 2)),
    U("log", np.log, uniform(0.3, 3)),
    U("log2", np.log2, uniform(0.3, 3)),
    U("log10", np.log10, uniform(0.3, 3)),
    U("log1p", np.log1p, uniform(-0.7, 3)),
    B("logaddexp", np.logaddexp, uniform(-3, 3)),
    B("logaddexp2", np.logaddexp2, uniform(-3, 3)),
    # -- trigonometric and hyperbolic ----------------------------------------------------------
    U("sin", np.sin, uniform(-3, 3)),
    U("cos", np.cos, uniform(-3, 3)),
    U("tan", np.tan, uniform(-1.2, 1.2)),
    U("arcsin", np.arcsin, uniform(-0.9, 0.9)),
    U("arccos", np.arccos, uniform(-0.9, 0.9)),
    U("arctan", np.arctan, uniform(-3, 3)),
    B("arctan2", np.arctan2, signed(0.3, 2)),
    B("hypot", np.hypot, signed(0.3, 2)),
    U("sinh", np.sinh, uniform(-2, 2)),
    U("cosh", np.cosh, uniform(-2, 2)),
    U("tanh", np.tanh, uniform(-2, 2)),
    U("arcsinh", np.arcsinh, uniform(-3, 3)),
    U("arccosh", np.arccosh, uniform(1.2, 3)),
    U("arctanh", np.arctanh, uniform(-0.9, 0.9)),
    U("sinc", np.sinc, signed(0.1, 2.5)),
    # -- absolute value, sign, rounding --------------------------------------------------------
    U("abs", np.abs, signed(0.1, 2)),
    U("absolute", np.absolute, signed(0.1, 2)),
    U("fabs", np.fabs, signed(0.1, 2)),
    U("sign", np.sign, signed(0.1, 2), zero_grad=True),
    U("floor", np.floor, off_integers(-3, 3), zero_grad=True),
    U("ceil", np.ceil, off_integers(-3, 3), zero_grad=True),
    U("round", np.round, off_integers(-3, 3), zero_grad=True),
    U("round_decimals", lambda x: np.round(x, 1), off_integers(-3, 3), zero_grad=True, check=False),
    Row("round_method", lambda x: x.round(), off_integers(-3, 3), [((3,),), ((2, 3),)], zero_grad=True),
    U("rint", np.rint, off_integers(-3, 3), zero_grad=True),
    U("trunc", np.trunc, off_integers(-3, 3), zero_grad=True),
    # -- clipping, extrema, selection ----------------------------------------------------------
    U("clip", lambda x: np.clip(x, -0.5, 0.5), separated(-1, 1)),
    U("clip_lower_only", lambda x: np.clip(x, -0.5, None), separated(-1, 1)),
    Row(
        "clip_traced_bounds",
        lambda x, lo, hi: np.clip(x, lo, hi),
        separated(-2, 2),
        [((4,), (), ()), ((3, 4), (4,), (3, 1))],
    ),  # fmt: skip
    B("maximum", np.maximum, separated()),
    B("minimum", np.minimum, separated()),
    B("fmax", np.fmax, separated()),
    B("fmin", np.fmin, separated()),
    Row("where", lambda c, x, y: np.where(c, x, y), with_mask(uniform(-2, 2)), MASK_SHAPES),
    Row("where_on_traced_condition", lambda x, y: np.where(x > y, x * y, x - y), separated(), BINARY_SHAPES),
    # -- comparisons and logical operations: zero gradient ----------------------------------------
    *[
        B(
            f"cmp_{name}", (lambda op: lambda x, y: op(x, y) * 1.0)(op), separated(), zero_grad=True, check=False
        )  # fmt: skip
        for name, op in [
            ("gt", np.greater),
            ("ge", np.greater_equal),
            ("lt", np.less),
            ("le", np.less_equal),
            ("eq", np.equal),
            ("ne", np.not_equal),
            ("op_gt", lambda x, y: x > y),
            ("op_le", lambda x, y: x <= y),
            ("op_eq", lambda x, y: x == y),
            ("op_ne", lambda x, y: x != y),
            ("logical_and", lambda x, y: np.logical_and(x > 0, y > 0)),
            ("logical_or", lambda x, y: np.logical_or(x > 0, y > 0)),
            ("logical_xor", lambda x, y: np.logical_xor(x > 0, y > 0)),
            ("logical_and_on_floats", np.logical_and),
            ("logical_not", lambda x, y: np.logical_not(x > y)),
            ("op_and", lambda x, y: (x > 0) & (y > 0)),
            ("op_or", lambda x, y: (x > 0) | (y > 0)),
            ("op_invert", lambda x, y: ~np.greater(x, y)),
        ]
    ],  # fmt: skip
    # -- reductions ------------------------------------------------------------------------------
    R("sum", np.sum),
    R("sum_axis0", lambda x: np.sum(x, axis=0)),
    R("sum_axis_neg_keepdims", lambda x: np.sum(x, axis=-1, keepdims=True)),
    R("sum_method", lambda x: x.sum()),
    R("prod", np.prod, signed(0.5, 1.5)),
    R("prod_axis_last", lambda x: np.prod(x, axis=-1), signed(0.5, 1.5)),
    R("prod_keepdims", lambda x: np.prod(x, axis=0, keepdims=True), signed(0.5, 1.5)),
    R("mean", np.mean),
    R("mean_axis", lambda x: np.mean(x, axis=-1)),
    R("mean_method_keepdims", lambda x: x.mean(axis=0, keepdims=True)),
    R("var", np.var),
    R("var_ddof1_axis", lambda x: np.var(x, axis=-1, ddof=1)),
    R("var_method", lambda x: x.var(axis=0)),
    R("std", np.std),
    R("std_ddof1", lambda x: np.std(x, ddof=1)),
    R("std_axis_keepdims", lambda x: np.std(x, axis=-1, keepdims=True)),
    R("max", np.max, distinct(-2, 2)),
    R("max_axis0", lambda x: np.max(x, axis=0), distinct(-2, 2)),
    R("max_keepdims", lambda x: np.max(x, axis=-1, keepdims=True), distinct(-2, 2)),
    R("max_method", lambda x: x.max(), distinct(-2, 2)),
    R("min", np.min, distinct(-2, 2)),
    R("min_axis_last", lambda x: np.min(x, axis=-1), distinct(-2, 2)),
    R("amax", np.amax, distinct(-2, 2)),
    R("amax_axis", lambda x: np.amax(x, axis=0, keepdims=True), distinct(-2, 2)),
    R("amin", np.amin, distinct(-2, 2)),
    R("amin_axis", lambda x: np.amin(x, axis=-1), distinct(-2, 2)),
    R("cumsum", np.cumsum),
    R("cumsum_axis", lambda x: np.cumsum(x, axis=-1)),
    R("cumsum_method", lambda x: x.cumsum(axis=0)),
    R("cumprod", np.cumprod, signed(0.5, 1.5)),
    R("cumprod_axis", lambda x: np.cumprod(x, axis=-1), signed(0.5, 1.5)),
    R("cumprod_axis0", lambda x: np.cumprod(x, axis=0), signed(0.5, 1.5)),
    # -- ufunc methods ---------------------------------------------------------------------------
    R("add_reduce", lambda x: np.add.reduce(x, axis=-1)),
    R("multiply_reduce", lambda x: np.multiply.reduce(x), signed(0.5, 1.5)),
    R("maximum_reduce", lambda x: np.maximum.reduce(x, axis=0), distinct(-2, 2)),
    R("add_accumulate", lambda x: np.add.accumulate(x, axis=0)),
    R("multiply_accumulate", lambda x: np.multiply.accumulate(x, axis=-1), signed(0.5, 1.5)),
    # -- mixing traced values with constants: NumPy arrays and scalars on either side ----------
    Row(
        "const_array_left",
        lambda x: np.arange(1.0, 4.0) * x - np.ones(3) / (x + 3.0),
        uniform(-2, 2),
        [(PY,), ((3,),), ((2, 3),)],
    ),  # fmt: skip
    U("numpy_scalar_left", lambda x: np.float64(2.5) * x + np.float64(1.0) / (x * x + 1.0), uniform(-2, 2)),
    U("int_literals", lambda x: (x + 1) * 2 - x / 2 + x**0 + x**1, uniform(-2, 2)),
    Row(
        "builtin_sum_and_max", lambda x: sum([x, 2.0 * x, np.sin(x)]) + max(x, 0.25), separated(-1, 1), [(PY,), ((),)]
    ),  # fmt: skip
    # -- array creation from a traced array, and casts ----------------------------------------
    U("zeros_like", lambda x: np.zeros_like(x) + x * 2.0, uniform(-2, 2)),
    U("ones_like", lambda x: np.ones_like(x) * x, uniform(-2, 2)),
    U("full_like", lambda x: np.full_like(x, 2.5) * x, uniform(-2, 2)),
    Row("full_like_traced_fill", lambda x, v: np.full_like(x, v) * x, uniform(-2, 2), [((3,), ()), ((2, 3), PY)]),
    Row("astype_same_dtype", lambda x: x.astype(np.float64) * x, uniform(-2, 2), [((),), ((2, 3),)]),
]
ROW_IDS = [r.id for r in ROWS]
assert len(set(ROW_IDS)) == len(ROW_IDS), "duplicate row ids"

CASES = [
    pytest.param(row, shapes, id=f"{row.id}-{'-'.join(map(str, shapes))}") for row in ROWS for shapes in row.shapes
]


def _same_value(got: Any, want: Any) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.tobytes() == want.tobytes(), f"forward value differs from NumPy's:\n{got}\n{want}"


def _check_grad_matches_input(g: Any, x: Any) -> None:
    if isinstance(x, float):
        assert type(g) is float, f"a float argument should get a float gradient, got {type(g)}"
    else:
        assert isinstance(g, np.ndarray), type(g)
        assert g.shape == x.shape and g.dtype == x.dtype, (g.shape, g.dtype, x.shape, x.dtype)


def _float_argnums(args: tuple) -> tuple[int, ...]:
    return tuple(i for i, a in enumerate(args) if isinstance(a, float) or np.asarray(a).dtype.kind == "f")


def _summed(fn: Callable) -> Callable:
    return lambda *a: np.sum(fn(*a))


def _close_over_constants(fn: Callable, args: tuple) -> tuple[Callable, tuple]:
    """``fn`` as a function of its float arguments only (bool masks etc. become constants)."""
    nums = _float_argnums(args)
    if len(nums) == len(args):
        return fn, args

    def closed(*xs: Any) -> Any:
        full = list(args)
        for i, x in zip(nums, xs, strict=True):
            full[i] = x
        return fn(*full)

    return closed, tuple(args[i] for i in nums)


@pytest.mark.parametrize("row, shapes", CASES)
def test_row(row: Row, shapes: tuple, rng: np.random.Generator) -> None:
    args = row.make(rng, np.float64, *shapes)
    expected = row.fn(*args)
    fn, float_args = _close_over_constants(row.fn, args)

    # Forward value, raw output, through vjp (which traces every argument).
    out, _ = gj.vjp(fn, *float_args)
    _same_value(out, expected)

    # Summed output through value_and_grad with respect to every float argument.
    nums = _float_argnums(args)
    value, grads = gj.value_and_grad(_summed(row.fn), argnums=nums)(*args)
    _same_value(value, np.sum(expected))
    for i, g in zip(nums, grads, strict=True):
        _check_grad_matches_input(g, args[i])
        assert np.all(np.isfinite(g)), f"gradient of argument {i} is not finite: {g}"
        if row.zero_grad:
            assert not np.any(g), f"expected an exactly zero gradient for argument {i}, got {g}"

    if row.check:
        gj.check_grads(fn, *float_args, order=2, rtol=row.rtol)


# ---------------------------------------------------------------------------------------------
# float32: forward values are NumPy's float32 values, gradients come back float32
# ---------------------------------------------------------------------------------------------
F32_ROWS = ["op_mul", "op_truediv", "sin", "exp", "tanh", "log", "maximum", "sum_axis0", "mean", "std", "prod",
            "cumsum", "op_pow_float_literal", "logaddexp", "where"]  # fmt: skip


@pytest.mark.parametrize("name", F32_ROWS)
def test_float32(name: str, rng: np.random.Generator) -> None:
    row = next(r for r in ROWS if r.id == name)
    shapes = tuple(s if s != PY else () for s in row.shapes[1])
    args = row.make(rng, np.float32, *shapes)
    expected = row.fn(*args)
    fn, float_args = _close_over_constants(row.fn, args)
    out, _ = gj.vjp(fn, *float_args)
    _same_value(out, expected)
    nums = _float_argnums(args)
    value, grads = gj.value_and_grad(_summed(row.fn), argnums=nums)(*args)
    _same_value(value, np.sum(expected))
    # The same gradient in float64, as a reference.
    args64 = tuple(np.asarray(a, np.float64) if np.asarray(a).dtype.kind == "f" else a for a in args)
    grads64 = gj.grad(_summed(row.fn), argnums=nums)(*args64)
    for i, g, g64 in zip(nums, grads, grads64, strict=True):
        assert g.dtype == np.float32 and g.shape == args[i].shape
        np.testing.assert_allclose(g, g64, rtol=1e-4, atol=1e-5)


def test_float32_with_float64_operand_keeps_its_dtype() -> None:
    x = np.array([0.5, 1.5], dtype=np.float32)
    y = np.array([2.0, 3.0])
    gx, gy = gj.grad(lambda x, y: np.sum(x * y), argnums=(0, 1))(x, y)
    assert gx.dtype == np.float32 and gy.dtype == np.float64
    np.testing.assert_array_equal(gx, np.float32([2.0, 3.0]))
    np.testing.assert_array_equal(gy, [0.5, 1.5])


def test_float32_0d_array_and_numpy_scalar() -> None:
    g = gj.grad(lambda x: np.sin(x) * 2.0)(np.array(0.5, dtype=np.float32))
    assert isinstance(g, np.ndarray) and g.shape == () and g.dtype == np.float32
    g = gj.grad(lambda x: np.sin(x) * 2.0)(np.float32(0.5))
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, 2 * np.cos(0.5), rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Casts
# ---------------------------------------------------------------------------------------------
def test_astype_float32_forward_and_gradient_dtype() -> None:
    x = np.array([0.1, 0.2, 0.3])
    out, _ = gj.vjp(lambda x: x.astype(np.float32), x)
    _same_value(out, x.astype(np.float32))
    g = gj.grad(lambda x: np.sum(x.astype(np.float32) * np.float32(3.0)))(x)
    assert g.dtype == np.float64
    np.testing.assert_array_equal(g, [3.0, 3.0, 3.0])


def test_astype_float32_to_float64_gradient_is_float32() -> None:
    x = np.array([0.1, 0.2, 0.3], dtype=np.float32)
    g = gj.grad(lambda x: np.sum(np.square(x.astype(np.float64))))(x)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, 2 * x.astype(np.float64), rtol=1e-7)


def test_astype_to_int_cuts_the_gradient() -> None:
    g = gj.grad(lambda x: np.sum(x.astype(np.int64) * x))(np.array([1.5, 2.5]))
    np.testing.assert_array_equal(g, [1.0, 2.0])


def test_ufunc_dtype_keyword() -> None:
    x = np.array([0.5, 1.0], dtype=np.float32)
    out, _ = gj.vjp(lambda x: np.sin(x, dtype=np.float64), x)
    _same_value(out, np.sin(x, dtype=np.float64))
    g = gj.grad(lambda x: np.sum(np.sin(x, dtype=np.float64)))(x)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, np.cos(x.astype(np.float64)), rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Non-differentiable points: the values gradjit promises there
# ---------------------------------------------------------------------------------------------
def test_prod_with_one_zero() -> None:
    x = np.array([2.0, 0.0, 3.0, 4.0])
    value, g = gj.value_and_grad(np.prod)(x)
    assert value == 0.0
    np.testing.assert_array_equal(g, [0.0, 24.0, 0.0, 0.0])
    gj.check_grads(np.prod, x, order=2)


def test_prod_with_two_zeros() -> None:
    x = np.array([2.0, 0.0, 3.0, 0.0])
    np.testing.assert_array_equal(gj.grad(np.prod)(x), np.zeros(4))
    # The Hessian is not zero: d2/dx1 dx3 prod = 2 * 3.
    h = np.stack([gj.grad(lambda x, i=i: gj.grad(np.prod)(x)[i])(x) for i in range(4)])
    expected = np.zeros((4, 4))
    expected[1, 3] = expected[3, 1] = 6.0
    np.testing.assert_array_equal(h, expected)
    gj.check_grads(np.prod, x, order=2)


def test_prod_with_zeros_along_an_axis() -> None:
    x = np.array([[1.0, 0.0, 2.0], [3.0, 4.0, 5.0], [0.0, 0.0, 7.0]])
    g = gj.grad(lambda x: np.sum(np.prod(x, axis=1) * np.array([1.0, 2.0, 3.0])))(x)
    np.testing.assert_array_equal(g, [[0.0, 2.0, 0.0], [40.0, 30.0, 24.0], [0.0, 0.0, 0.0]])
    gj.check_grads(lambda x: np.prod(x, axis=0), x, order=2)


def test_cumprod_with_zeros() -> None:
    x = np.array([2.0, 0.0, 3.0, 0.0, 5.0])
    out, _ = gj.vjp(np.cumprod, x)
    _same_value(out, np.cumprod(x))
    g = gj.grad(lambda x: np.sum(np.cumprod(x)))(x)
    # d/dx_i sum_k prod_{j<=k} x_j = sum_{k>=i} prod_{j<=k, j!=i} x_j
    expected = [1.0 + 0.0, 2.0 + 6.0, 0.0, 0.0, 0.0]
    np.testing.assert_array_equal(g, expected)
    gj.check_grads(np.cumprod, x, order=2)


@pytest.mark.parametrize("fn", [np.max, np.amax, lambda x: x.max()], ids=["max", "amax", "method"])
def test_max_ties_share_the_gradient(fn: Callable) -> None:
    x = np.array([1.0, 3.0, 2.0, 3.0])
    np.testing.assert_array_equal(gj.grad(fn)(x), [0.0, 0.5, 0.0, 0.5])


def test_min_ties_along_an_axis_with_keepdims() -> None:
    x = np.array([[1.0, 1.0, 2.0], [0.0, 5.0, 0.0], [4.0, 3.0, 3.0]])
    g = gj.grad(lambda x: np.sum(np.amin(x, axis=1, keepdims=True) * np.array([[1.0], [2.0], [4.0]])))(x)
    np.testing.assert_array_equal(g, [[0.5, 0.5, 0.0], [1.0, 0.0, 1.0], [0.0, 2.0, 2.0]])


def test_maximum_tie_gives_half_to_each_side() -> None:
    assert gj.grad(lambda x: np.maximum(x, 1.0))(1.0) == 0.5
    assert gj.grad(lambda x: np.minimum(x, x))(1.0) == 1.0  # both sides are x


def test_abs_and_sign_at_zero() -> None:
    assert gj.grad(np.abs)(0.0) == 0.0
    assert gj.grad(lambda x: np.sign(x) * x)(0.0) == 0.0


def test_sinc_at_zero_to_second_order() -> None:
    assert gj.grad(np.sinc)(0.0) == 0.0
    # sinc(x) = 1 - (pi x)^2 / 6 + ...: the second derivative at 0 is -pi^2 / 3.
    np.testing.assert_allclose(gj.grad(gj.grad(np.sinc))(0.0), -(np.pi**2) / 3, rtol=1e-6)


def test_sqrt_and_pow_gradients_at_zero_do_not_poison_neighbours() -> None:
    # x ** 2 at x = 0 and 0 ** y: finite gradients (the pow rule guards log(0) and 0 ** -1).
    assert gj.grad(lambda x: x**2)(0.0) == 0.0
    assert gj.grad(lambda x: x**2.0)(0.0) == 0.0
    assert gj.grad(lambda y: 0.0**y, argnums=0)(2.0) == 0.0
    gx, gy = gj.grad(lambda x, y: np.sum(x**y), argnums=(0, 1))(np.array([0.0, 2.0]), np.array([2.0, 3.0]))
    np.testing.assert_array_equal(gx, [0.0, 12.0])
    np.testing.assert_allclose(gy, [0.0, 8.0 * np.log(2.0)])


def test_where_does_not_leak_nan_from_the_unselected_branch_of_a_safe_function() -> None:
    # The classic trap: the gradient of the unselected side is multiplied by 0, which is only
    # safe if it is finite. Here both sides are finite, so the gradient must be exact.
    x = np.array([-1.0, 2.0])
    g = gj.grad(lambda x: np.sum(np.where(x > 0, x**2, -x)))(x)
    np.testing.assert_array_equal(g, [-1.0, 4.0])


def test_ufunc_where_keyword_masks_to_zero() -> None:
    x = np.array([1.0, 2.0, 3.0])
    mask = np.array([True, False, True])
    g = gj.grad(lambda x: np.sum(np.sin(x, where=mask)))(x)
    np.testing.assert_allclose(g, np.cos(x) * mask)


def test_reduction_where_keyword() -> None:
    x = np.array([1.0, 2.0, 3.0])
    mask = np.array([True, False, True])
    value, g = gj.value_and_grad(lambda x: np.sum(x * x, where=mask))(x)
    assert value == np.sum(x * x, where=mask)
    np.testing.assert_array_equal(g, [2.0, 0.0, 6.0])
