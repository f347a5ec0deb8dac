"""The custom-gradient registry: ``@gj.primitive`` + ``defvjp``, ``@gj.custom_vjp``, scoped overrides
with ``gj.gradients``, ``gj.defvjp`` on NumPy functions gradjit does not support, and
``gj.register_module``.

Rules follow torch-autograd's order, ``rule(g, ans, *args)``, one per positional argument, and are
written with NumPy, so they are differentiable again (checked to second order here).
"""

from __future__ import annotations

import types
from collections.abc import Iterator

import numpy as np
import pytest

import gradjit as gj
from gradjit import numpy_api, primitives


@pytest.fixture
def restore_registry() -> Iterator[None]:
    """``gj.defvjp`` on a NumPy function registers it for good; undo that after the test."""
    ufuncs = dict(primitives.UFUNC_TO_PRIM)
    functions = dict(numpy_api.FUNCTION_OVERRIDES)
    yield
    primitives.UFUNC_TO_PRIM.clear()
    primitives.UFUNC_TO_PRIM.update(ufuncs)
    numpy_api.FUNCTION_OVERRIDES.clear()
    numpy_api.FUNCTION_OVERRIDES.update(functions)


# ---------------------------------------------------------------------------------------------
# @gj.primitive + defvjp
# ---------------------------------------------------------------------------------------------
@gj.primitive
def logsumexp(x):
    m = np.max(x)
    return m + np.log(np.sum(np.exp(x - m)))


logsumexp.defvjp(lambda g, ans, x: g * np.exp(x - ans))


@gj.primitive
def weighted(x, w, power=1.0):
    return np.sum(w * x**power)


weighted.defvjp(
    lambda g, ans, x, w, power=1.0: g * w * power * x ** (power - 1.0),
    lambda g, ans, x, w, power=1.0: g * x**power,
)


def test_primitive_is_one_equation_and_computes_outside_a_trace() -> None:
    x = np.array([1.0, 2.0, 3.0])
    assert logsumexp(x) == pytest.approx(np.log(np.sum(np.exp(x))), rel=1e-15)
    wl = gj.make_wengert(lambda x: logsumexp(x) * 2.0)(x)
    assert [e.prim.name for e in wl.eqns] == ["logsumexp", "mul"]


def test_primitive_gradient_and_second_order() -> None:
    x = np.array([1.0, -2.0, 0.5])
    p = np.exp(x) / np.sum(np.exp(x))
    np.testing.assert_allclose(gj.grad(logsumexp)(x), p, rtol=1e-15)
    # The rule uses np.exp and a traced `ans`, so the Hessian comes out of the rule itself.
    H = np.stack([gj.grad(lambda x, i=i: gj.grad(logsumexp)(x)[i])(x) for i in range(3)])
    np.testing.assert_allclose(H, np.diag(p) - np.outer(p, p), atol=1e-15)
    gj.check_grads(logsumexp, x, order=3)


def test_primitive_with_two_arguments_and_a_keyword() -> None:
    x, w = np.array([1.0, 2.0]), np.array([3.0, 5.0])
    gx, gw = gj.grad(lambda x, w: weighted(x, w, power=3.0), argnums=(0, 1))(x, w)
    np.testing.assert_allclose(gx, w * 3.0 * x**2)
    np.testing.assert_allclose(gw, x**3)
    gj.check_grads(lambda x, w: weighted(x, w, power=2.5), x, w, order=2)


def test_primitive_inside_a_larger_function_and_with_broadcasting() -> None:
    x = np.array([[0.1, 0.2], [0.3, 0.4]])
    gj.check_grads(lambda x: np.tanh(logsumexp(np.sin(x))) * x, x, order=2)


def test_defvjp_returns_the_function_for_chaining_and_zero_marks_no_gradient() -> None:
    @gj.primitive
    def scaled_floor(x, s):
        return np.floor(x) * s

    assert scaled_floor.defvjp(gj.ZERO, lambda g, ans, x, s: g * np.floor(x)) is scaled_floor
    gx, gs = gj.grad(lambda x, s: scaled_floor(x, s), argnums=(0, 1))(2.5, 3.0)
    assert (gx, gs) == (0.0, 2.0)


# ---------------------------------------------------------------------------------------------
# @gj.custom_vjp
# ---------------------------------------------------------------------------------------------
@gj.custom_vjp
def log1pexp(x):
    return np.logaddexp(0.0, x)


def _log1pexp_fwd(x):
    return np.logaddexp(0.0, x), x


def _log1pexp_bwd(x, g):
    return (g * 0.5 * (1.0 + np.tanh(0.5 * x)),)  # the sigmoid, without overflow for large |x|


log1pexp.defvjp(_log1pexp_fwd, _log1pexp_bwd)


@gj.custom_vjp
def clip_gradient(x):
    return x


clip_gradient.defvjp(lambda x: (x, None), lambda res, g: (np.clip(g, -1.0, 1.0),))


def test_custom_vjp_stable_log1pexp() -> None:
    x = np.array([-800.0, -1.0, 0.0, 2.0, 800.0])
    value, g = gj.value_and_grad(lambda x: np.sum(log1pexp(x)))(x)
    assert np.isfinite(value)
    with np.errstate(over="ignore"):
        np.testing.assert_allclose(g, 1.0 / (1.0 + np.exp(-x)), rtol=1e-14, atol=1e-300)
    assert g[-1] == 1.0 and g[0] == 0.0
    gj.check_grads(log1pexp, np.array([-1.0, 0.3, 2.0]), order=2)


def test_custom_vjp_second_order_uses_the_bwd_rule() -> None:
    x = 0.7
    s = 1.0 / (1.0 + np.exp(-x))
    np.testing.assert_allclose(gj.grad(gj.grad(log1pexp))(x), s * (1 - s), rtol=1e-14)


def test_custom_vjp_clipped_gradient_identity() -> None:
    x = np.array([1.0, 2.0, 3.0])
    out, vjp_fn = gj.vjp(clip_gradient, x)
    np.testing.assert_array_equal(out, x)
    (g,) = vjp_fn(np.array([-5.0, 0.5, 5.0]))
    np.testing.assert_array_equal(g, [-1.0, 0.5, 1.0])
    assert gj.grad(lambda x: 10.0 * clip_gradient(x))(2.0) == 1.0


def test_custom_vjp_with_two_arguments_and_none() -> None:
    @gj.custom_vjp
    def mul_no_grad_y(x, y):
        return x * y

    mul_no_grad_y.defvjp(lambda x, y: (x * y, y), lambda y, g: (g * y, None))
    assert gj.grad(mul_no_grad_y, argnums=(0, 1))(2.0, 3.0) == (3.0, 0.0)


def test_custom_vjp_bwd_returning_the_wrong_count_is_an_error() -> None:
    @gj.custom_vjp
    def f(x, y):
        return x * y

    f.defvjp(lambda x, y: (x * y, None), lambda res, g: (g,))
    with pytest.raises(ValueError, match="1 cotangent"):
        gj.grad(f)(1.0, 2.0)


# ---------------------------------------------------------------------------------------------
# Scoped overrides: gj.gradients
# ---------------------------------------------------------------------------------------------
def straight_through(g, ans, x):
    return g


def test_straight_through_floor_is_scoped() -> None:
    f = lambda x: np.sum(np.floor(x * 3.0))  # noqa: E731
    x = np.array([0.2, 0.7])
    np.testing.assert_array_equal(gj.grad(f)(x), [0.0, 0.0])
    with gj.gradients({np.floor: straight_through}):
        np.testing.assert_array_equal(gj.grad(f)(x), [3.0, 3.0])
        wl = gj.make_wengert(f)(x)
        assert "floor[custom]" in str(wl)  # the list records which gradient an equation carries
    np.testing.assert_array_equal(gj.grad(f)(x), [0.0, 0.0])


def test_override_is_restored_after_an_exception() -> None:
    with pytest.raises(RuntimeError), gj.gradients({np.floor: straight_through}):
        raise RuntimeError("boom")
    assert gj.grad(np.floor)(1.5) == 0.0


def test_nested_overrides() -> None:
    f = lambda x: np.floor(x) + np.round(x)  # noqa: E731
    half = lambda g, ans, x: 0.5 * g  # noqa: E731
    assert gj.grad(f)(1.2) == 0.0
    with gj.gradients({np.floor: straight_through}):
        assert gj.grad(f)(1.2) == 1.0
        with gj.gradients({np.floor: half, np.round: straight_through}):
            assert gj.grad(f)(1.2) == 1.5
        assert gj.grad(f)(1.2) == 1.0  # the outer block's rule is back
    assert gj.grad(f)(1.2) == 0.0


def test_override_applies_when_traced_not_when_differentiated() -> None:
    # The rule is captured in the trace: a vjp made inside the block keeps it after the block.
    with gj.gradients({np.floor: straight_through}):
        _, vjp_fn = gj.vjp(np.floor, np.array([1.5]))
    np.testing.assert_array_equal(vjp_fn(np.array([2.0]))[0], [2.0])


def test_override_of_an_existing_smooth_operation_and_of_a_method_route() -> None:
    # np.sin with a (wrong on purpose) rule; reached through the ufunc.
    with gj.gradients({np.sin: lambda g, ans, x: 2.0 * g}):
        assert gj.grad(np.sin)(0.3) == 2.0
    assert gj.grad(np.sin)(0.3) == np.cos(0.3)


def test_override_of_a_binary_operation_with_one_rule_per_argument() -> None:
    rules = (lambda g, ans, x, y: g * 10.0, lambda g, ans, x, y: g * 100.0)
    with gj.gradients({np.multiply: rules}):
        assert gj.grad(lambda x, y: x * y, argnums=(0, 1))(2.0, 3.0) == (10.0, 100.0)


def test_override_of_a_composite_numpy_function() -> None:
    # np.clip is a composite (maximum then minimum); overriding it makes it one equation.
    with gj.gradients({np.clip: lambda g, ans, x, lo, hi: g}):
        g = gj.grad(lambda x: np.sum(np.clip(x, 0.0, 1.0)))(np.array([-1.0, 0.5, 2.0]))
    np.testing.assert_array_equal(g, [1.0, 1.0, 1.0])
    g = gj.grad(lambda x: np.sum(np.clip(x, 0.0, 1.0)))(np.array([-1.0, 0.5, 2.0]))
    np.testing.assert_array_equal(g, [0.0, 1.0, 0.0])


def test_override_rule_is_differentiable() -> None:
    # A smooth surrogate gradient for floor: d/dx ~ 1 + cos(2 pi x) (zero at half-integers).
    surrogate = lambda g, ans, x: g * (1.0 + np.cos(2 * np.pi * x))  # noqa: E731
    with gj.gradients({np.floor: surrogate}):
        d2 = gj.grad(gj.grad(np.floor))(0.1)
    np.testing.assert_allclose(d2, -2 * np.pi * np.sin(2 * np.pi * 0.1), rtol=1e-14)


def test_override_of_a_user_primitive() -> None:
    with gj.gradients({logsumexp: lambda g, ans, x: g * np.ones_like(x)}):
        np.testing.assert_array_equal(gj.grad(logsumexp)(np.zeros(3)), np.ones(3))
    np.testing.assert_allclose(gj.grad(logsumexp)(np.zeros(3)), np.full(3, 1 / 3))


# ---------------------------------------------------------------------------------------------
# gj.defvjp on NumPy functions gradjit does not support
# ---------------------------------------------------------------------------------------------
def test_defvjp_on_an_unsupported_ufunc(restore_registry) -> None:
    with pytest.raises(gj.UnsupportedOperationError, match="np.deg2rad"):
        gj.grad(np.deg2rad)(90.0)
    gj.defvjp(np.deg2rad, lambda g, ans, x: g * (np.pi / 180.0))
    value, g = gj.value_and_grad(lambda x: np.sin(np.deg2rad(x)))(90.0)
    assert value == 1.0
    np.testing.assert_allclose(g, np.cos(np.pi / 2) * np.pi / 180, atol=1e-20)
    gj.check_grads(lambda x: np.deg2rad(x) ** 2, np.array([10.0, 20.0]), order=2)


def test_defvjp_on_an_unsupported_array_function(restore_registry) -> None:
    special = pytest.importorskip("scipy.special")
    with pytest.raises(gj.UnsupportedOperationError, match="np.i0"):
        gj.grad(lambda x: np.sum(np.i0(x)))(np.ones(2))
    gj.defvjp(np.i0, lambda g, ans, x: g * special.i1(x))
    x = np.array([0.5, 1.5])
    value, g = gj.value_and_grad(lambda x: np.sum(np.i0(x)))(x)
    assert value == np.sum(np.i0(x))
    np.testing.assert_allclose(g, special.i1(x), rtol=1e-14)
    gj.check_grads(lambda x: np.i0(x), x, order=1)


def test_defvjp_on_an_existing_primitive_changes_it_for_good(restore_registry) -> None:
    prim = primitives.P("sinh")
    saved, saved_jvp = prim.vjps, prim.jvp_all
    try:
        gj.defvjp(np.sinh, lambda g, ans, x: g * 7.0)
        assert gj.grad(np.sinh)(0.0) == 7.0
        assert gj.jvp(np.sinh, (0.0,), (1.0,))[1] == 7.0  # forward mode follows (transposed VJP)
    finally:
        prim.vjps, prim.jvp_all = saved, saved_jvp
    assert gj.grad(np.sinh)(0.0) == 1.0


# ---------------------------------------------------------------------------------------------
# register_module
# ---------------------------------------------------------------------------------------------
def _make_module() -> types.ModuleType:
    mod = types.ModuleType("mymath")
    mod.softplus = lambda x: np.log1p(np.exp(x))
    mod.scale = lambda x, s: x * s
    mod.untouched = lambda x: x + 1.0
    return mod


MODULE_RULES = {
    "softplus": lambda g, ans, x: g / (1.0 + np.exp(-x)),
    "scale": (lambda g, ans, x, s: g * s, lambda g, ans, x, s: g * x),
}


def test_register_module_without_patching() -> None:
    mod = _make_module()
    original = mod.softplus
    ns = gj.register_module(mod, MODULE_RULES, patch=False)
    assert mod.softplus is original  # the module is left as it was
    x = np.array([-1.0, 0.0, 2.0])
    np.testing.assert_allclose(gj.grad(lambda x: np.sum(ns.softplus(x)))(x), 1 / (1 + np.exp(-x)))
    assert gj.grad(lambda x, s: ns.scale(x, s), argnums=(0, 1))(2.0, 3.0) == (3.0, 2.0)
    wl = gj.make_wengert(lambda x: ns.softplus(x))(x)
    assert [e.prim.name for e in wl.eqns] == ["mymath.softplus"]
    gj.check_grads(ns.softplus, x, order=2)


def test_register_module_with_patching() -> None:
    mod = _make_module()
    gj.register_module(mod, MODULE_RULES, patch=True)

    def user_code(x):  # written against the module, unaware of gradjit
        return np.sum(mod.scale(mod.softplus(x), 2.0)) + np.sum(mod.untouched(x))

    x = np.array([-1.0, 0.0, 2.0])
    wl = gj.make_wengert(user_code)(x)
    names = [e.prim.name for e in wl.eqns]
    assert "mymath.softplus" in names and "mymath.scale" in names
    assert "add" in names  # `untouched` was not registered: traced through as plain NumPy
    np.testing.assert_allclose(gj.grad(user_code)(x), 2 / (1 + np.exp(-x)) + 1.0)
    assert user_code(x) == 2 * np.sum(np.log1p(np.exp(x))) + np.sum(x + 1.0)  # still computes untraced


@pytest.mark.parametrize(
    "key, via_function, via_method",
    [
        (np.round, lambda x: np.sum(np.round(x)), lambda x: np.sum(x.round())),
        (np.clip, lambda x: np.sum(np.clip(x, 0.0, 1.5)), lambda x: np.sum(x.clip(0.0, 1.5))),
        (np.sum, lambda x: np.sum(x * 1.0), lambda x: (x * 1.0).sum()),
    ],
    ids=["round", "clip", "sum"],
)
def test_override_reaches_the_method_spelling_too(key, via_function, via_method) -> None:
    # x.round() and np.round(x) are the same operation: a scoped override must reach both.
    rule = lambda g, ans, x, *args, **kwargs: 2.0 * g * np.ones_like(x)  # noqa: E731
    x = np.array([0.3, 2.2])
    with gj.gradients({key: rule}):
        np.testing.assert_array_equal(gj.grad(via_function)(x), [2.0, 2.0])
        np.testing.assert_array_equal(gj.grad(via_method)(x), [2.0, 2.0])
    np.testing.assert_array_equal(gj.grad(via_method)(x), gj.grad(via_function)(x))
