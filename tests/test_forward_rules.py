"""Forward mode, primitive by primitive, on the shared table (``tests/primitive_table.py``).

The table is checked first: it covers every primitive, each row traces the primitives it claims.
Then, for every row (float64, small shapes):

- ``jvp``'s value equals gradjit's traced forward value and NumPy's, bit for bit;
- the tangent has the output's shape and dtype, and equals central finite differences along the
  tangent (elementwise) and the reverse-mode directional derivative (``<u, J t> == <J^T u, t>``);
- second order: forward-over-forward (``jvp`` of ``t1 -> jvp(f, x, t1)``) and forward-over-reverse
  (``jvp`` of ``x -> vjp(f, x)(u)``) against central differences of those functions;
- ``check_grads(..., modes=("rev", "fwd"), order=2)``, which adds reverse-over-forward.

Below the table: float32 spot checks, the conventions at kinks (ties of max/min shared equally, as
in reverse mode; prod/cumprod exact at zeros), and forward mode through user-defined gradients
(``gj.defjvp``, and the transposed-VJP fallback for ``@gj.primitive``, ``custom_vjp``, ``gj.gradients``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from primitive_table import NO_TANGENT, ROWS, ROWS_BY_ID, Row, covered

import gradjit as gj
from gradjit import jvp_rules
from gradjit.forward import NoJVPError
from gradjit.primitives import PRIMITIVES

EPS = 1e-6
# Rows whose traced forward value is not NumPy's bit for bit: gradjit's einsum of three or more
# operands contracts in an optimized order (``optimize=True``), plain np.einsum does not.
NOT_BITWISE = {"einsum_three"}


def _f64(args: tuple) -> tuple:
    return tuple(np.asarray(a, dtype=np.float64) for a in args)


def _directions(rng: np.random.Generator, args: tuple) -> tuple:
    return tuple(rng.standard_normal(np.shape(a)).astype(a.dtype) for a in args)


def _fd(f: Callable, args: tuple, ts: tuple) -> Any:
    """Central differences of ``f`` along ``ts``, evaluated in float64 (a pytree of f's output)."""
    xs = _f64(args)
    plus = f(*[x + EPS * t for x, t in zip(xs, ts)])
    minus = f(*[x - EPS * t for x, t in zip(xs, ts)])
    return gj.tree_map(lambda p, m: (np.asarray(p) - np.asarray(m)) / (2 * EPS), plus, minus)


def _close(actual: Any, expected: Any, what: str, rtol: float = 1e-6, atol: float = 1e-6) -> None:
    a_leaves = _leaves(actual)
    e_leaves = _leaves(expected)
    assert len(a_leaves) == len(e_leaves), what
    for a, e in zip(a_leaves, e_leaves):
        np.testing.assert_allclose(np.asarray(a, dtype=np.float64), e, rtol=rtol, atol=atol, err_msg=what)


def _leaves(tree: Any) -> list:
    if isinstance(tree, (tuple, list)):
        return [leaf for t in tree for leaf in _leaves(t)]
    return [tree]


def _inner(a: Any, b: Any) -> float:
    return float(
        sum(np.sum(np.asarray(x, np.float64) * np.asarray(y, np.float64)) for x, y in zip(_leaves(a), _leaves(b)))
    )


def _setup(r: Row, seed: int = 0) -> tuple:
    rng = np.random.default_rng(seed)
    args = r.make_args(rng, np.float64)
    return rng, args, _directions(rng, args)


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------
def test_the_table_covers_every_primitive() -> None:
    assert covered() == set(PRIMITIVES), (
        f"no row for {sorted(set(PRIMITIVES) - covered())}; unknown names {sorted(covered() - set(PRIMITIVES))}"
    )
    assert NO_TANGENT <= set(PRIMITIVES)


@pytest.mark.parametrize("r", ROWS, ids=lambda r: r.id)
def test_row_traces_its_primitives_and_returns_floats(r: Row) -> None:
    args = r.make_args(np.random.default_rng(0), np.float64)
    expected = r.fn(*args)
    assert np.result_type(expected).kind == "f"
    traced = {e.prim.name for e in gj.make_wengert(r.fn)(*args).eqns}
    assert r.prims <= traced, f"{r.id}: claims {sorted(r.prims - traced)} but traces {sorted(traced)}"


# ---------------------------------------------------------------------------------------------
# Every row: value, first order, second order
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("r", ROWS, ids=lambda r: r.id)
def test_jvp_value_and_tangent(r: Row) -> None:
    rng, args, ts = _setup(r)
    out, t_out = gj.jvp(r.fn, args, ts)
    traced, vjp_fn = gj.vjp(r.fn, *args)
    assert np.shape(out) == np.shape(traced) and out.dtype == traced.dtype
    np.testing.assert_array_equal(out, traced)  # the same forward computation, bit for bit
    expected = r.fn(*args)
    if r.id not in NOT_BITWISE:
        assert out.dtype == expected.dtype
        np.testing.assert_array_equal(out, expected)
    else:
        np.testing.assert_allclose(out, expected, rtol=1e-13)
    assert np.shape(t_out) == np.shape(out) and t_out.dtype == out.dtype

    # <u, J t> == <J^T u, t>: the forward and reverse rules are transposes of each other.
    u = rng.standard_normal(np.shape(out))
    forward = _inner(u, t_out)
    reverse = _inner(vjp_fn(u), ts)
    tol = 1e-6 if any(a.dtype == np.float32 for a in args) else 1e-10  # J^T u is cast to float32
    assert forward == pytest.approx(reverse, rel=tol, abs=tol)
    if r.fd:
        _close(t_out, _fd(r.fn, args, ts), f"{r.id}: J t vs central differences")


@pytest.mark.parametrize("r", [r for r in ROWS if r.fd], ids=lambda r: r.id)
def test_forward_over_forward(r: Row) -> None:
    rng, args, t1 = _setup(r)
    t2 = _directions(rng, args)

    def tangent(*xs: Any) -> Any:
        return gj.jvp(r.fn, xs, t1)[1]

    _, second = gj.jvp(tangent, args, t2)
    _close(second, _fd(tangent, args, t2), f"{r.id}: forward-over-forward", rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("r", [r for r in ROWS if r.fd], ids=lambda r: r.id)
def test_forward_over_reverse(r: Row) -> None:
    rng, args, ts = _setup(r)
    u = rng.standard_normal(np.shape(r.fn(*args)))

    def pullback(*xs: Any) -> Any:
        return gj.vjp(r.fn, *xs)[1](u)

    _, second = gj.jvp(pullback, args, ts)
    _close(second, _fd(pullback, args, ts), f"{r.id}: forward-over-reverse", rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("r", [r for r in ROWS if r.fd], ids=lambda r: r.id)
def test_check_grads_both_modes_to_second_order(r: Row) -> None:
    args = r.make_args(np.random.default_rng(1), np.float64)
    if any(a.dtype == np.float32 for a in args):  # the astype row: steps the float32 inputs can take
        gj.check_grads(r.fn, *args, order=2, modes=("rev", "fwd"), eps=1e-3, rtol=1e-3, atol=1e-4)
    else:
        gj.check_grads(r.fn, *args, order=2, modes=("rev", "fwd"))


def test_stop_gradient_row_has_the_tangent_of_its_unstopped_factor_only() -> None:
    r = ROWS_BY_ID["stop_gradient"]
    _, args, ts = _setup(r)
    _, t_out = gj.jvp(r.fn, args, ts)
    np.testing.assert_array_equal(t_out, args[0] * ts[0])


# ---------------------------------------------------------------------------------------------
# float32: values bit for bit, tangents in float32 and close to the float64 ones
# ---------------------------------------------------------------------------------------------
F32_ROWS = ["exp", "tanh", "div", "pow", "maximum", "select", "reduce_sum", "reduce_max", "reduce_prod", "cumprod",
            "getitem_fancy", "index_set_repeated", "concatenate", "matmul", "einsum", "solve_matrix", "cholesky",
            "conv2d", "max_pool2d", "avg_pool2d"]  # fmt: skip


@pytest.mark.parametrize("rid", F32_ROWS)
def test_float32_spot_checks(rid: str) -> None:
    r = ROWS_BY_ID[rid]
    rng = np.random.default_rng(3)
    args = r.make_args(rng, np.float32)
    ts = _directions(rng, args)
    out, t_out = gj.jvp(r.fn, args, ts)
    expected = r.fn(*args)
    assert out.dtype == expected.dtype == np.float32 and t_out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)
    _, t64 = gj.jvp(r.fn, _f64(args), _f64(ts))
    np.testing.assert_allclose(t_out, t64, rtol=2e-4, atol=2e-4)


def test_astype_row_tangent_flows_from_float32_to_float64() -> None:
    r = ROWS_BY_ID["astype"]
    rng, args, ts = _setup(r)
    assert args[0].dtype == np.float32
    _, t_out = gj.jvp(r.fn, args, ts)
    assert t_out.dtype == np.float64
    np.testing.assert_array_equal(t_out, np.cos(args[0].astype(np.float64)) * ts[0].astype(np.float64))


# ---------------------------------------------------------------------------------------------
# Conventions where the derivative does not exist (shared with reverse mode)
# ---------------------------------------------------------------------------------------------
def test_reduction_ties_share_the_tangent_equally() -> None:
    x = np.array([1.0, 3.0, 3.0, -2.0])
    t = np.array([10.0, 20.0, 40.0, 80.0])
    assert gj.jvp(np.max, (x,), (t,))[1] == 30.0
    assert gj.jvp(lambda x: np.min(-x), (x,), (t,))[1] == -30.0
    # and it is the transpose of the reverse rule's convention
    np.testing.assert_array_equal(gj.grad(np.max)(x), [0.0, 0.5, 0.5, 0.0])


def test_maximum_ties_share_the_tangent_equally() -> None:
    x = np.array([1.0, 2.0])
    y = np.array([1.0, 3.0])
    _, t = gj.jvp(np.maximum, (x, y), (np.array([2.0, 5.0]), np.array([4.0, 7.0])))
    np.testing.assert_array_equal(t, [3.0, 7.0])


def test_prod_and_cumprod_tangents_are_exact_at_zeros() -> None:
    x = np.array([2.0, 0.0, 3.0, 4.0])
    t = np.array([1.0, 10.0, 100.0, 1000.0])
    assert gj.jvp(np.prod, (x,), (t,))[1] == 10.0 * 24.0  # only the zero's own tangent survives
    np.testing.assert_array_equal(gj.jvp(np.cumprod, (x,), (t,))[1], [1.0, 20.0, 60.0, 240.0])
    two_zeros = np.array([0.0, 5.0, 0.0])
    assert gj.jvp(np.prod, (two_zeros,), (np.ones(3),))[1] == 0.0


def test_cholesky_sees_the_symmetric_part_of_its_tangent() -> None:
    a = np.array([[4.0, 1.0], [1.0, 3.0]])
    t = np.array([[0.0, 2.0], [0.0, 0.0]])
    _, t_out = gj.jvp(np.linalg.cholesky, (a,), (t,))
    _, t_sym = gj.jvp(np.linalg.cholesky, (a,), (0.5 * (t + t.T),))
    np.testing.assert_allclose(t_out, t_sym, rtol=1e-15)


# ---------------------------------------------------------------------------------------------
# Nested forward mode is recorded: the rules run on outer tracers
# ---------------------------------------------------------------------------------------------
def test_forward_sweep_is_a_wengert_list_of_its_own() -> None:
    x = np.array([0.1, 0.2, 0.3])
    wl = gj.make_wengert(lambda x: gj.jvp(np.sin, (x,), (np.ones(3),))[1])(x)
    assert "cos" in {e.prim.name for e in wl.eqns}  # sin's rule, recorded one level down
    np.testing.assert_array_equal(gj.grad(lambda x: np.sum(gj.jvp(np.sin, (x,), (np.ones(3),))[1]))(x), -np.sin(x))


def test_third_order_by_nesting_jvp() -> None:
    def d(f: Callable) -> Callable:
        return lambda x: gj.jvp(f, (x,), (np.ones_like(x),))[1]

    x = np.array([0.3, -0.7])
    eg = gj.elementwise_grad
    np.testing.assert_allclose(d(d(d(np.tanh)))(x), eg(eg(eg(np.tanh)))(x), rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# User-defined gradients
# ---------------------------------------------------------------------------------------------
def _softplus_impl(x: Any) -> Any:
    return np.log1p(np.exp(x))


def _sigmoid(x: Any) -> Any:
    return 1.0 / (1.0 + np.exp(-x))


def test_user_primitive_without_jvp_transposes_its_vjp() -> None:
    softplus = gj.primitive(_softplus_impl)
    softplus.defvjp(lambda g, ans, x: g * _sigmoid(x))
    assert jvp_rules.is_transposed(softplus.prim)
    x = np.array([-1.0, 0.5, 2.0])
    t = np.array([1.0, -2.0, 0.5])
    out, t_out = gj.jvp(softplus, (x,), (t,))
    np.testing.assert_array_equal(out, _softplus_impl(x))
    np.testing.assert_allclose(t_out, _sigmoid(x) * t, rtol=1e-14)
    gj.check_grads(lambda x: softplus(x) * x, x, order=2, modes=("rev", "fwd"))
    # the Hessian-vector product goes forward through the transposed rule of the reverse sweep
    np.testing.assert_allclose(gj.hvp(lambda x: np.sum(softplus(x)), x, t), _sigmoid(x) * (1 - _sigmoid(x)) * t,
                               rtol=1e-12)  # fmt: skip


def test_user_primitive_with_two_arguments_and_broadcasting() -> None:
    scale = gj.primitive(lambda x, s: x * s)
    scale.defvjp(lambda g, ans, x, s: g * s, lambda g, ans, x, s: g * x)
    x, s = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), np.array([0.5, -1.0, 2.0])
    tx, ts = np.ones((2, 3)), np.array([1.0, 2.0, 3.0])
    _, t_out = gj.jvp(scale, (x, s), (tx, ts))
    np.testing.assert_allclose(t_out, tx * s + x * ts, rtol=1e-15)
    _, t_only_s = gj.jvp(lambda s: scale(x, s), (s,), (ts,))
    np.testing.assert_allclose(t_only_s, x * ts, rtol=1e-15)


def test_user_defjvp_is_used_and_survives_a_later_defvjp() -> None:
    calls = []

    def cube_jvp(t: Any, ans: Any, x: Any) -> Any:
        calls.append(1)
        return 3.0 * x * x * t

    cube = gj.primitive(lambda x: x**3)
    cube.defjvp(cube_jvp)
    cube.defvjp(lambda g, ans, x: g * 3.0 * x * x)
    assert not jvp_rules.is_transposed(cube.prim)
    _, t = gj.jvp(cube, (np.array([2.0]),), (np.array([1.0]),))
    assert t[0] == 12.0 and calls
    gj.check_grads(cube, np.array([0.7, -1.3]), order=2, modes=("rev", "fwd"))


def test_defjvp_accepts_a_primitive_function_or_a_primitive() -> None:
    double = gj.primitive(lambda x: 2.0 * x)
    gj.defjvp(double, lambda t, ans, x: 2.0 * t)
    assert gj.jvp(double, (1.0,), (3.0,))[1] == 6.0
    gj.defjvp(double.prim, lambda t, ans, x: 5.0 * t)
    assert gj.jvp(double, (1.0,), (3.0,))[1] == 15.0


def test_custom_vjp_gets_forward_mode_from_its_bwd() -> None:
    @gj.custom_vjp
    def log1pexp(x: Any) -> Any:
        return np.log1p(np.exp(x))

    log1pexp.defvjp(lambda x: (log1pexp(x), _sigmoid(x)), lambda s, g: (g * s,))
    x = np.array([-3.0, 0.0, 4.0])
    _, t = gj.jvp(log1pexp, (x,), (np.ones(3),))
    np.testing.assert_allclose(t, _sigmoid(x), rtol=1e-14)
    gj.check_grads(log1pexp, x, order=2, modes=("rev", "fwd"))


def test_straight_through_floor_in_forward_mode_and_hvp() -> None:
    x = np.array([0.3, 1.7, -2.2])
    v = np.array([1.0, 2.0, 3.0])
    with gj.gradients({np.floor: lambda g, ans, x: g}):
        _, t = gj.jvp(lambda x: np.floor(x) * 2.0, (x,), (v,))
        np.testing.assert_array_equal(t, 2.0 * v)
        # f = sum(floor(x)^2) with floor's derivative taken as 1: H = 2 I
        np.testing.assert_array_equal(gj.hvp(lambda x: np.sum(np.floor(x) ** 2), x, v), 2.0 * v)
    assert gj.jvp(np.floor, (x,), (v,))[1].tolist() == [0.0, 0.0, 0.0]


def test_user_primitive_without_any_rule_names_it() -> None:
    mystery = gj.primitive(lambda x: x * 2.0)
    with pytest.raises(NoJVPError, match="<lambda>"):
        gj.jvp(mystery, (np.ones(2),), (np.ones(2),))


def test_user_primitive_missing_the_vjp_of_one_argument_is_an_error_in_forward_mode() -> None:
    half = gj.primitive(lambda x, y: x * y)
    half.defvjp(lambda g, ans, x, y: g * y)  # no rule for y
    x, y = np.ones(2), np.full(2, 3.0)
    assert gj.jvp(lambda x: half(x, y), (x,), (np.ones(2),))[1].tolist() == [3.0, 3.0]
    with pytest.raises(NoJVPError, match="argument 1"):
        gj.jvp(lambda y: half(x, y), (y,), (np.ones(2),))


def test_defjvp_on_an_unsupported_numpy_function_makes_it_a_primitive() -> None:
    from gradjit import numpy_api

    special = pytest.importorskip("scipy.special")
    saved = dict(numpy_api.FUNCTION_OVERRIDES)
    try:
        gj.defjvp(np.i0, lambda t, ans, x: t * special.i1(x))
        x, t = np.array([0.5, 1.5]), np.array([1.0, -2.0])
        out, t_out = gj.jvp(np.i0, (x,), (t,))
        np.testing.assert_array_equal(out, np.i0(x))
        np.testing.assert_allclose(t_out, special.i1(x) * t, rtol=1e-14)
    finally:
        numpy_api.FUNCTION_OVERRIDES.clear()
        numpy_api.FUNCTION_OVERRIDES.update(saved)
