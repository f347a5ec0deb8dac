"""Simplification of nested traces (``gradjit.simplify``): fewer equations, the same numbers.

Every comparison with the unsimplified lists switches ``gj.config.simplify`` off (fixture ``plain``).
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from gradjit.kernels.reference import GuardFailure
from gradjit.kernels.reference import run as replay

import gradjit as gj
from gradjit.simplify import one
from gradjit.wengert import Const, Lit


@contextlib.contextmanager
def simplification(enabled: bool):
    before = gj.config.simplify
    gj.config.simplify = enabled
    try:
        yield
    finally:
        gj.config.simplify = before


def nest(f, k: int):
    for _ in range(k):
        f = gj.grad(f)
    return f


def count(f, *args) -> int:
    return len(gj.make_wengert(f)(*args).eqns)


def names(wl) -> list[str]:
    return [e.prim.name for e in wl.eqns]


# ---------------------------------------------------------------------------------------------
# Equation counts
# ---------------------------------------------------------------------------------------------
def test_grad_of_grad_of_tanh_is_three_equations_and_shares_the_inner_sweep() -> None:
    wl = gj.make_wengert(nest(np.tanh, 2))(0.3)
    print(wl)
    # tanh, then 1 - t*t once (the outer sweep reuses the inner sweep's), then the outer product chain.
    assert names(wl).count("tanh") == 1
    assert names(wl).count("sub") == 1
    assert sum(1 for e in wl.eqns if e.prim.name == "mul" and e.ins[0] is e.ins[1]) == 1  # t*t once
    assert len(wl.eqns) == 6
    with simplification(False):
        assert count(nest(np.tanh, 2), 0.3) == 10
    wl.check()


# Measured when simplification was written: equations of make_wengert(grad^(k-1)(tanh))(1.0), the list
# the k-th derivative's outermost sweep walks, for k = 2..8. Unsimplified: 4, 10, 23, 54, 133, 344, 927.
TANH_COUNTS = {2: 3, 3: 6, 4: 12, 5: 25, 6: 51, 7: 97, 8: 195}


def test_tanh_order_8_list_stays_small() -> None:
    # A regression bound, not a timing test: the order-8 list had 195 equations (927 unsimplified).
    n8 = count(nest(np.tanh, 7), 1.0)
    assert n8 <= 195 * 1.1
    counts = [count(nest(np.tanh, k - 1), 1.0) for k in range(2, 8)] + [n8]
    assert counts <= [int(TANH_COUNTS[k] * 1.1) for k in range(2, 9)]
    # about 2x per order, not 2.7x
    assert all(b <= 2.2 * a for a, b in zip(counts[2:], counts[3:]))


def test_repeated_subexpression_in_user_code_is_merged_under_nesting() -> None:
    def f(x):
        return np.sin(x) * np.sin(x) + np.sin(x)

    wl = gj.make_wengert(gj.grad(f))(0.7)
    assert names(wl).count("sin") == 1
    with simplification(False):
        assert names(gj.make_wengert(gj.grad(f))(0.7)).count("sin") == 3


def test_commutative_operands_are_merged() -> None:
    def f(x):
        y = np.exp(x)
        return x * y + y * x + (x + y) * (y + x)

    wl = gj.make_wengert(gj.grad(f))(0.4)
    fwd = [e for e in wl.eqns if wl.sweep_depth(e) == 0]
    assert [e.prim.name for e in fwd].count("mul") <= 2  # x*y once; (x+y)*(y+x) is t*t


def test_first_order_lists_are_recorded_verbatim() -> None:
    # Nothing is nested in make_wengert(f)'s trace: it records exactly what f did, duplicates and all.
    def f(x):
        unused = np.cos(x)  # noqa: F841
        return np.sin(x) * np.sin(x) * 1.0

    assert names(gj.make_wengert(f)(0.5)) == ["cos", "sin", "sin", "mul", "mul"]


# ---------------------------------------------------------------------------------------------
# The same numbers
# ---------------------------------------------------------------------------------------------
def f_branch(a, b, c):
    if b > c:
        return a * np.sin(b)
    return a + b * c


def f_loop(a):
    for _ in range(3):
        a = a * a
    return a


def mlp_loss(W0, W1, x, y):
    h1 = np.tanh(x @ W0)
    h2 = h1 @ W1
    logp = h2 - np.log(np.sum(np.exp(h2), axis=1, keepdims=True))
    return -np.mean(np.sum(logp * y, axis=1))


def _random_function(rng: np.random.Generator, depth: int):
    """A random scalar expression in x, built from a few primitives (every one differentiable)."""
    unary = [np.sin, np.cos, np.tanh, np.exp, lambda z: z * z, lambda z: -z, lambda z: np.log1p(z * z)]
    binary = [np.add, np.multiply, np.subtract, lambda p, q: p / (1.5 + q * q)]
    ops = [(rng.integers(len(unary)), rng.integers(len(binary)), rng.integers(3)) for _ in range(depth)]
    consts = rng.standard_normal(depth)

    def f(x):
        terms = [x]
        for (u, b, pick), c in zip(ops, consts):
            t = unary[u](terms[-1])
            other = terms[pick % len(terms)]
            terms.append(binary[b](t, other * c if pick == 1 else other))
        return np.sum(terms[-1]) + np.sum(terms[len(terms) // 2])

    return f


def _derivatives(f, x, orders: int = 3) -> list:
    out, g = [], f
    for _ in range(orders):
        g = gj.grad(g)
        out.append(g(x))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_random_functions_same_derivatives_to_third_order(seed: int) -> None:
    rng = np.random.default_rng(seed)
    f = _random_function(rng, 6)
    x = float(rng.uniform(-0.8, 0.8))
    simplified = _derivatives(f, x)
    with simplification(False):
        plain = _derivatives(f, x)
    np.testing.assert_allclose(simplified, plain, rtol=1e-12, atol=1e-12)


def test_talk_examples_same_derivatives_to_third_order() -> None:
    for f, args in ((f_branch, (3.5, 2.1, 1.1)), (f_loop, (0.9,))):
        for argnum in range(len(args)):
            g = lambda *a, _n=argnum: gj.grad(f, argnums=_n)(*a)  # noqa: E731
            h = lambda *a, _g=g, _n=argnum: gj.grad(_g, argnums=_n)(*a)  # noqa: E731
            k = lambda *a, _h=h, _n=argnum: gj.grad(_h, argnums=_n)(*a)  # noqa: E731
            got = [g(*args), h(*args), k(*args)]
            with simplification(False):
                want = [g(*args), h(*args), k(*args)]
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)


def test_mlp_hessian_vector_product_matches_unsimplified() -> None:
    rng = np.random.default_rng(3)
    W0, W1 = rng.standard_normal((4, 6)) * 0.5, rng.standard_normal((6, 3)) * 0.5
    x, y = rng.standard_normal((5, 4)), np.eye(3)[rng.integers(0, 3, 5)]
    v = rng.standard_normal(W0.shape)

    def hvp(W0):
        return gj.grad(lambda w: np.sum(gj.grad(mlp_loss)(w, W1, x, y) * v))(W0)

    got = hvp(W0)
    with simplification(False):
        want = hvp(W0)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_tanh_eighth_derivative() -> None:
    assert nest(np.tanh, 8)(1.0) == pytest.approx(-277.0621356031, rel=1e-10)


# ---------------------------------------------------------------------------------------------
# What must not be merged or rewritten
# ---------------------------------------------------------------------------------------------
def _forward_muls_with(wl, value) -> int:
    return sum(
        1
        for e in wl.eqns
        if wl.sweep_depth(e) == 0 and e.prim.name == "mul" and any(type(c) is Const and c.value is value for c in e.ins)
    )


def test_different_constants_are_not_merged_even_if_equal() -> None:
    a, b = np.array([1.0, 2.0]), np.array([1.0, 2.0])

    def f(x):
        return np.sum(np.sin(x * a)) + np.sum(np.sin(x * b)) + np.sum(np.sin(x * a))

    wl = gj.make_wengert(gj.grad(f))(np.ones(2))
    assert _forward_muls_with(wl, a) == 1 and _forward_muls_with(wl, b) == 1
    np.testing.assert_allclose(replay(wl, np.full(2, 0.3))[0], gj.grad(f)(np.full(2, 0.3)))


def _literal_muls(wl, value) -> list:
    return [e for e in wl.eqns if e.prim.name == "mul" and any(type(a) is Lit and a.value == value for a in e.ins)]


def test_signed_zero_literals_are_different() -> None:
    def f(x):
        return gj.value_and_grad(lambda y: np.sum(y * 0.0 + y * -0.0))(x)[0]

    wl = gj.make_wengert(f)(np.ones(2))
    lits = sorted(str(a.value) for e in _literal_muls(wl, 0.0) for a in e.ins if type(a) is Lit)
    assert lits == ["-0.0", "0.0"]


def test_integer_and_float_literals_are_different() -> None:
    def inner(y):
        n = np.floor(y * 3.0).astype(np.int64)
        return np.sum(y * (n * 2)) + np.sum(y * (n * 2.0))

    x = np.array([0.5, 1.0])
    wl = gj.make_wengert(lambda x: gj.value_and_grad(inner)(x)[0])(x)
    assert sorted(str(e.out.dtype) for e in _literal_muls(wl, 2)) == ["float64", "int64"]
    assert replay(wl, x)[0] == inner(x)


def test_impure_user_primitives_are_neither_merged_nor_dropped() -> None:
    calls = []

    @gj.primitive
    def noisy(x):
        calls.append(1)
        return x * 2.0

    noisy.defvjp(lambda g, ans, x: 2.0 * g)

    def f(x):
        noisy(x)  # result unused: still kept, it may have effects
        return noisy(x) + noisy(x)

    wl = gj.make_wengert(gj.grad(lambda x: f(x) * x))(0.5)
    assert names(wl).count("noisy") == 3
    calls.clear()
    gj.grad(gj.grad(f))(0.5)
    assert len(calls) == 3  # each call ran once, at the innermost level only (impl sees concrete values)


def test_inexact_identities_are_not_applied() -> None:
    def f(x):
        return gj.value_and_grad(lambda y: np.sum(y * 0.0 + (y + 0.0) + (y - -0.0)))(x)[0]

    wl = gj.make_wengert(f)(np.ones(2))
    print(wl)
    lits = [(e.prim.name, str(a.value)) for e in wl.eqns for a in e.ins if type(a) is Lit]
    # x*0 is NaN for x = inf, x + 0.0 is +0.0 for x = -0.0, x - (-0.0) too: all kept
    assert sorted(lits) == [("add", "0.0"), ("mul", "0.0"), ("sub", "-0.0")]


def test_exact_identities_leave_no_equation() -> None:
    def inner(y):
        z = y * 1.0
        z = 1 * z
        z = z / 1.0
        z = z - 0.0
        z = -z
        z = -z  # neg(neg(z))
        z = z.astype(np.float64).reshape(z.shape)
        z = np.transpose(z)  # of a vector: the identity permutation
        return np.sum(np.sin(z))

    def outer(x):
        return gj.grad(inner)(x) * x

    x = np.array([0.1, 0.2, 0.3])
    wl = gj.make_wengert(outer)(x)
    print(wl)
    assert names(wl) == ["cos", "mul"]
    np.testing.assert_allclose(replay(wl, x)[0], np.cos(x) * x)
    with simplification(False):
        assert len(gj.make_wengert(outer)(x).eqns) > 10


def test_inplace_update_of_a_simplified_result_does_not_touch_its_source() -> None:
    def f(x):
        y = x * 1.0  # simplified to x's variable, but a different tracer object
        y += 1.0
        z = x * x
        z2 = x * x  # the same variable as z
        z2 += 3.0
        return np.sum(x * y) + np.sum(z) + np.sum(z2)

    def ref(x):
        return np.sum(x * (x + 1.0)) + 2 * np.sum(x * x) + 3.0 * x.size

    x = np.array([0.5, -1.5])
    h = gj.grad(lambda x: np.sum(gj.grad(f)(x) * x))(x)
    with simplification(False):
        h_plain = gj.grad(lambda x: np.sum(gj.grad(f)(x) * x))(x)
    np.testing.assert_allclose(h, h_plain)
    np.testing.assert_allclose(h, gj.grad(lambda x: np.sum(gj.grad(ref)(x) * x))(x))


def test_unkeyable_params_are_not_merged() -> None:
    from gradjit import simplify
    from gradjit.primitives import P
    from gradjit.wengert import Var

    v = Var(0, (3,), np.dtype(np.float64))
    assert simplify._key(P("reshape"), (v,), {"shape": np.array([3])}) is None
    assert simplify._key(P("reshape"), (v,), {"shape": (3,)}) is not None
    k_int = simplify._key(P("round"), (v,), {"decimals": 1})
    k_float = simplify._key(P("round"), (v,), {"decimals": 1.0})
    assert k_int != k_float


# ---------------------------------------------------------------------------------------------
# Dead code, guards and replay
# ---------------------------------------------------------------------------------------------
def test_dead_code_keeps_guards_and_replays() -> None:
    def f(a, b):
        waste = np.exp(a) * np.cos(b)  # noqa: F841
        if b > 0.5:
            return a * np.sin(b)
        return a + b

    df = gj.grad(f, argnums=(0, 1))
    wl = gj.make_wengert(lambda a, b: gj.grad(lambda a, b: f(a, b) * b)(a, b))(1.3, 0.9)
    wl.check()
    assert "exp" not in names(wl)
    assert [g.kind for g in wl.guards] == ["bool"]
    assert replay(wl, 1.3, 0.9)[0] == pytest.approx(gj.grad(lambda a, b: f(a, b) * b)(1.3, 0.9))
    with pytest.raises(GuardFailure):
        replay(wl, 1.3, 0.1)
    assert df(1.3, 0.9) == pytest.approx((np.sin(0.9), 1.3 * np.cos(0.9)))


def test_make_wengert_of_grad_drops_the_unused_forward_value() -> None:
    wl = gj.make_wengert(gj.grad(f_branch, argnums=(0, 1)))(3.0, 2.0, 1.0)
    assert names(wl) == ["gt", "sin", "cos", "mul"]
    wl_vg = gj.make_wengert(gj.value_and_grad(f_branch, argnums=(0, 1)))(3.0, 2.0, 1.0)
    assert names(wl_vg)[:3] == ["gt", "sin", "mul"]  # the value is an output: its code is live
    out = replay(wl, 3.0, 2.0, 1.0)
    assert out == pytest.approx([np.sin(2.0), 3.0 * np.cos(2.0)])


def test_switching_off_gives_the_verbatim_lists() -> None:
    with simplification(False):
        wl = gj.make_wengert(nest(np.tanh, 2))(0.3)
        assert gj.config.simplify is False
    assert len(wl.eqns) == 10 and "c4" in str(wl)  # the seed multiplications are there
    assert gj.config.simplify is True


# ---------------------------------------------------------------------------------------------
# The seed
# ---------------------------------------------------------------------------------------------
def test_the_shared_seed_does_not_escape() -> None:
    g = gj.grad(lambda x: x + 1.0)(np.array(2.0))
    assert g == 1.0 and g is not one(np.float64) and g.flags.writeable
    g[...] = 5.0  # the user's array now
    assert gj.grad(lambda x: x * 3.0)(np.array(2.0)) == 3.0
    assert not one(np.float64).flags.writeable and one(np.float32).dtype == np.float32


def test_an_outer_tracer_updated_in_place_is_a_new_constant() -> None:
    def outer(x):
        box = [x * 2.0]  # a tracer of the outer trace, a constant for the middle one

        def middle(y):
            gj.grad(np.sin)(y)  # a trace nested in this one: from here on it is simplified
            a = y * box[0]
            box[0] += 1.0  # rebinds that tracer object to a new outer variable
            b = y * box[0]  # so this is not the product a
            return a + b

        # The value, y (2x) + y (2x + 1) at y = x. (Not the gradient: constants are read by reference,
        # so the reverse sweep of middle sees box[0]'s current variable in both products.)
        return gj.value_and_grad(middle)(x)[0]

    assert outer(1.5) == pytest.approx(4 * 1.5**2 + 1.5)
    assert gj.grad(outer)(1.5) == pytest.approx(8 * 1.5 + 1)


# ---------------------------------------------------------------------------------------------
# Scalar arithmetic at the bottom of nested traces
# ---------------------------------------------------------------------------------------------
_SPECIAL = [0.0, -0.0, 1.0, -1.5, 0.1, 3.0, 7e-155, 1e-200, 1e-310, -1e-310, 2.2250738585072014e-308, 1e308, -1e308,
            np.inf, -np.inf, np.nan]  # fmt: skip


def _outcome(fn, *xs):
    """``fn(*xs)``'s value (type and bytes), warnings, and the error under ``np.errstate(all="raise")``."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = fn(*xs)
    with np.errstate(all="raise"):
        try:
            fn(*xs)
            error = None
        except FloatingPointError as e:
            error = str(e)
    return type(value), np.asarray(value).tobytes(), [str(w.message) for w in caught], error


def test_scalar_arithmetic_is_the_ufuncs_bit_for_bit_with_the_same_warnings() -> None:
    from gradjit import simplify

    values = _SPECIAL + [np.float64(v) for v in _SPECIAL]
    for fast, ufunc in ((simplify._add_f64, np.add), (simplify._sub_f64, np.subtract),
                        (simplify._mul_f64, np.multiply), (simplify._div_f64, np.true_divide)):  # fmt: skip
        for x in values:
            for y in values:
                assert _outcome(fast, x, y) == _outcome(ufunc, x, y), (ufunc.__name__, x, y)
    for x in values:
        assert _outcome(simplify._neg_f64, x) == _outcome(np.negative, x), x
    # Anything else (arrays, float32, integers) is the ufunc's.
    a, b = np.array([1.5, -2.0]), np.float32(3.0)
    assert simplify._mul_f64(a, a).tolist() == [2.25, 4.0] and type(simplify._add_f64(b, b)) is np.float32
    assert type(simplify._sub_f64(3, 1)) is np.int64 and type(simplify._neg_f64(b)) is np.float32


def test_nested_scalar_derivatives_overflow_warns_as_numpy_does() -> None:
    # Derivatives of exp(x*x) near x = 26.6 overflow in the multiplies of the nested sweeps (exp itself
    # does not): the same infinities and the same warnings as without simplification (plain ufuncs).
    def run():
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            values = [nest(lambda x: np.exp(x * x), k)(26.6) for k in (1, 2, 3)]
        return values, sorted({str(w.message) for w in caught})

    got = run()
    with simplification(False):
        want = run()
    assert got[0] == want[0] and got[1] == want[1]
    assert np.isinf(got[0][-1]) and "overflow encountered in multiply" in got[1]
