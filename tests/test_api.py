"""The public transforms: ``grad``, ``value_and_grad``, ``vjp``, ``elementwise_grad``, ``stop_gradient``.

Covers argument selection (``argnums`` as int, tuple, negative), ``has_aux``, keyword arguments,
pytrees of arguments and outputs, the type and dtype of what comes back, non-differentiable leaves,
higher order by nesting (closed forms, perturbation confusion), and Python control flow that
depends on traced values, including on an inner gradient.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest

import gradjit as gj

Point = collections.namedtuple("Point", ["x", "y"])


# ---------------------------------------------------------------------------------------------
# argnums, has_aux, kwargs
# ---------------------------------------------------------------------------------------------
def f3(a, b, c):
    return a * b**2 + np.sin(c)


def test_argnums_int_tuple_negative() -> None:
    args = (1.5, 2.0, 0.3)
    assert gj.grad(f3)(*args) == 4.0
    assert gj.grad(f3, argnums=1)(*args) == 2 * 1.5 * 2.0
    assert gj.grad(f3, argnums=-1)(*args) == np.cos(0.3)
    assert gj.grad(f3, argnums=(2, 0))(*args) == (np.cos(0.3), 4.0)
    assert gj.grad(f3, argnums=(0,))(*args) == (4.0,)  # a tuple of one stays a tuple
    assert gj.grad(f3, argnums=(-3, -2))(*args) == (4.0, 6.0)
    assert gj.grad(f3, argnums=np.int64(1))(*args) == 6.0


def test_value_and_grad() -> None:
    value, g = gj.value_and_grad(f3, argnums=(0, 1, 2))(1.5, 2.0, 0.3)
    assert value == f3(1.5, 2.0, 0.3)
    assert g == (4.0, 6.0, np.cos(0.3))


def test_has_aux() -> None:
    def f(x):
        y = np.sin(x)
        return np.sum(y), {"y": y, "n": 3}

    x = np.array([0.1, 0.2])
    g, aux = gj.grad(f, has_aux=True)(x)
    np.testing.assert_array_equal(g, np.cos(x))
    assert aux["n"] == 3
    assert type(aux["y"]) is np.ndarray  # traced values in aux come back as plain arrays
    np.testing.assert_array_equal(aux["y"], np.sin(x))
    (value, aux2), g2 = gj.value_and_grad(f, has_aux=True)(x)
    assert value == np.sum(np.sin(x))
    np.testing.assert_array_equal(g2, g)
    np.testing.assert_array_equal(aux2["y"], aux["y"])


def test_kwargs_pass_through_and_are_not_differentiated() -> None:
    def f(x, scale=1.0, mode="mul"):
        return x * scale if mode == "mul" else x + scale

    assert gj.grad(f)(2.0, scale=3.0) == 3.0
    assert gj.grad(f)(2.0, scale=3.0, mode="add") == 1.0
    assert gj.value_and_grad(f)(2.0, mode="add") == (3.0, 1.0)


def test_functools_wraps() -> None:
    df = gj.grad(f3)
    assert df.__name__ == "f3"


# ---------------------------------------------------------------------------------------------
# Types and dtypes of gradients
# ---------------------------------------------------------------------------------------------
def test_python_float_in_float_out() -> None:
    g = gj.grad(lambda x: x * x)(3.0)
    assert type(g) is float and g == 6.0


def test_0d_array_in_0d_array_out() -> None:
    g = gj.grad(lambda x: x * x)(np.array(3.0))
    assert type(g) is np.ndarray and g.shape == () and g == 6.0


def test_numpy_scalar_in_numpy_scalar_out() -> None:
    g = gj.grad(lambda x: x * x)(np.float64(3.0))
    assert isinstance(g, np.float64) and g == 6.0


def test_float32_stays_float32() -> None:
    x = np.arange(3, dtype=np.float32)
    g = gj.grad(lambda x: np.sum(x * 2.0 + np.exp(x)))(x)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, 2.0 + np.exp(x), rtol=1e-6)


def test_gradient_of_an_unused_argument_is_zero_of_its_type() -> None:
    assert gj.grad(lambda x, y: x * 2.0, argnums=1)(1.0, 5.0) == 0.0
    assert type(gj.grad(lambda x, y: x * 2.0, argnums=1)(1.0, 5.0)) is float
    g = gj.grad(lambda x, y: x * 2.0, argnums=1)(1.0, np.ones((2, 2), dtype=np.float32))
    assert g.shape == (2, 2) and g.dtype == np.float32 and not g.any()


def test_constant_output() -> None:
    assert gj.grad(lambda x: 3.0)(1.0) == 0.0
    np.testing.assert_array_equal(gj.grad(lambda x: np.sum(np.ones(3)))(np.ones(2)), np.zeros(2))


# ---------------------------------------------------------------------------------------------
# Pytrees
# ---------------------------------------------------------------------------------------------
def test_nested_containers_come_back_in_the_same_structure() -> None:
    params = {
        "layers": [{"W": np.ones((2, 2)), "b": np.zeros(2)}, {"W": 2 * np.ones((2, 2)), "b": np.ones(2)}],
        "scale": (0.5, Point(1.0, np.array([1.0, 2.0]))),
    }

    def loss(p, x):
        h = x
        for layer in p["layers"]:
            h = np.tanh(h @ layer["W"] + layer["b"])
        s0, pt = p["scale"]
        return s0 * np.sum(h) + pt.x * np.sum(pt.y**2)

    x = np.array([0.1, -0.2])
    g = gj.grad(loss)(params, x)
    assert type(g) is dict and set(g) == {"layers", "scale"}
    assert type(g["layers"]) is list and len(g["layers"]) == 2
    assert type(g["scale"]) is tuple and type(g["scale"][1]) is Point
    assert type(g["scale"][0]) is float
    assert type(g["scale"][1].x) is float
    np.testing.assert_array_equal(g["scale"][1].y, [2.0, 4.0])
    assert g["scale"][1].x == 5.0
    for gl, pl in zip(g["layers"], params["layers"], strict=True):
        assert gl["W"].shape == pl["W"].shape and gl["b"].shape == pl["b"].shape
    # Against finite differences, through a flat function of the leaves.
    gj.check_grads(lambda W0, W1: loss({**params, "layers": [{**params["layers"][0], "W": W0},
                                                            {**params["layers"][1], "W": W1}]}, x),
                   params["layers"][0]["W"], params["layers"][1]["W"], order=2)  # fmt: skip


def test_non_differentiable_leaves_pass_through_with_none() -> None:
    tree = {
        "x": np.array([1.0, 2.0]),
        "n": 3,
        "name": "layer",
        "none": None,
        "mask": np.array([True, False]),
        "idx": np.array([1, 0]),
        "flag": True,
    }

    def f(t):
        assert t["n"] == 3 and t["name"] == "layer" and t["none"] is None and t["flag"] is True
        assert t["mask"].dtype == bool and type(t["mask"]) is np.ndarray  # not traced
        return np.sum(np.where(t["mask"], t["x"], 0.0) * t["n"]) + np.sum(t["x"][t["idx"]])

    g = gj.grad(f)(tree)
    np.testing.assert_array_equal(g["x"], [4.0, 1.0])
    for k in ("n", "name", "none", "mask", "idx", "flag"):
        assert g[k] is None, k


def test_int_argument_outside_argnums_is_passed_as_is() -> None:
    def f(x, n, label):
        assert type(n) is int and label == "a"
        return x**n

    assert gj.grad(f)(2.0, 3, "a") == 12.0


def test_vjp_with_pytree_output() -> None:
    def f(x, y):
        return {"sum": x + y, "pair": (x * y, np.sin(x))}

    x, y = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    out, vjp_fn = gj.vjp(f, x, y)
    np.testing.assert_array_equal(out["sum"], x + y)
    np.testing.assert_array_equal(out["pair"][1], np.sin(x))
    ct = {"sum": np.ones(2), "pair": (np.array([1.0, 0.0]), np.array([0.0, 2.0]))}
    gx, gy = vjp_fn(ct)
    np.testing.assert_allclose(gx, [1.0 + 3.0, 1.0 + 2 * np.cos(2.0)])
    np.testing.assert_allclose(gy, [1.0 + 1.0, 1.0])


def test_vjp_with_namedtuple_and_list_args() -> None:
    def f(p, xs):
        return p.x * xs[0] + p.y * xs[1]

    p = Point(np.array(2.0), np.array(3.0))
    out, vjp_fn = gj.vjp(f, p, [1.0, 4.0])
    assert out == 14.0
    gp, gxs = vjp_fn(np.array(1.0))
    assert type(gp) is Point and gp.x == 1.0 and gp.y == 4.0
    assert type(gxs) is list and gxs == [2.0, 3.0] and type(gxs[0]) is float


def test_vjp_is_reusable_and_linear() -> None:
    out, vjp_fn = gj.vjp(lambda x: x**2, np.array([1.0, 2.0, 3.0]))
    (g1,) = vjp_fn(np.ones(3))
    (g2,) = vjp_fn(np.array([0.0, 2.0, 0.0]))
    np.testing.assert_array_equal(g1, [2.0, 4.0, 6.0])
    np.testing.assert_array_equal(g2, [0.0, 8.0, 0.0])


def test_vjp_rejects_a_cotangent_of_the_wrong_shape() -> None:
    _, vjp_fn = gj.vjp(lambda x: x * 2.0, np.ones(3))
    with pytest.raises(ValueError, match="shape"):
        vjp_fn(np.ones(4))


def test_elementwise_grad() -> None:
    x = np.linspace(-1, 1, 5)
    np.testing.assert_allclose(gj.elementwise_grad(np.tanh)(x), 1 - np.tanh(x) ** 2)
    second = gj.elementwise_grad(gj.elementwise_grad(np.tanh))(x)
    np.testing.assert_allclose(second, -2 * np.tanh(x) * (1 - np.tanh(x) ** 2))
    gx, gy = gj.elementwise_grad(lambda x, y: x * y, argnums=(0, 1))(x, 2 * x)
    np.testing.assert_array_equal(gx, 2 * x)
    np.testing.assert_array_equal(gy, x)


# ---------------------------------------------------------------------------------------------
# stop_gradient
# ---------------------------------------------------------------------------------------------
def test_stop_gradient() -> None:
    assert gj.grad(lambda x: x * gj.stop_gradient(x))(3.0) == 3.0
    assert gj.stop_gradient(2.5) == 2.5  # outside a trace it is the identity

    def f(t):
        s = gj.stop_gradient(t)
        return t["a"] * s["a"] + s["b"]

    g = gj.grad(f)({"a": 2.0, "b": 1.0})
    assert g == {"a": 2.0, "b": 0.0}


def test_stop_gradient_cuts_every_level() -> None:
    # As documented (and as in JAX): the value is a constant for every transform around it, so
    # applied inside an inner grad to a value of the outer one, the outer gradient is cut too.
    def inner(y, x):
        return gj.grad(lambda z: z * gj.stop_gradient(y))(x)

    assert gj.grad(lambda x: inner(x * x, x))(3.0) == 0.0
    assert gj.grad(lambda x: inner(x * x, x) + x)(3.0) == 1.0


# ---------------------------------------------------------------------------------------------
# Higher order
# ---------------------------------------------------------------------------------------------
def tanh_derivatives(x: float) -> list[float]:
    t = np.tanh(x)
    s = 1 - t**2
    return [t, s, -2 * t * s, s * (6 * t**2 - 2), 8 * t * s * (2 - 3 * t**2)]


def test_grad_of_grad() -> None:
    assert gj.grad(gj.grad(lambda x: x**3))(2.0) == 12.0
    x = 0.7
    np.testing.assert_allclose(gj.grad(gj.grad(np.sin))(x), -np.sin(x))


@pytest.mark.parametrize("x", [-1.3, 0.2, 0.9])
def test_tanh_derivatives_to_fourth_order(x: float) -> None:
    expected = tanh_derivatives(x)
    f = np.tanh
    for k in range(1, 5):
        f = gj.grad(f)
        np.testing.assert_allclose(f(x), expected[k], rtol=1e-12, atol=1e-14, err_msg=f"order {k}")


def test_sin_derivatives_cycle() -> None:
    x = 0.4
    expected = [np.cos(x), -np.sin(x), -np.cos(x), np.sin(x)]
    f = np.sin
    for k in range(4):
        f = gj.grad(f)
        np.testing.assert_allclose(f(x), expected[k], rtol=1e-13)


def test_grad_of_a_function_that_calls_grad() -> None:
    def f(x):
        df = gj.grad(lambda y: np.sin(y) * y)
        return df(x) * x  # (cos(x) x + sin(x)) x

    x = 0.8
    expected = (np.cos(x) * x + np.sin(x)) + x * (-np.sin(x) * x + 2 * np.cos(x))
    np.testing.assert_allclose(gj.grad(f)(x), expected, rtol=1e-13)


def test_perturbation_confusion() -> None:
    # Siskind & Pearlmutter: d/dx ( x * d/dy (x + y) |_{y=1} ) at x = 1 is 1, not 2.
    def outer(x):
        inner = gj.grad(lambda y: x + y)(1.0)
        return x * inner

    assert gj.grad(outer)(1.0) == 1.0


def test_perturbation_confusion_with_a_closure_over_the_outer_variable() -> None:
    # d/dx [ d/dy (x * y) ]  = d/dx x = 1 ; and d/dx [ x * d/dy (x * y) ] = 2 x.
    assert gj.grad(lambda x: gj.grad(lambda y: x * y)(2.0))(3.0) == 1.0
    assert gj.grad(lambda x: x * gj.grad(lambda y: x * y)(2.0))(3.0) == 6.0


def test_hessian_by_nesting() -> None:
    A = np.array([[2.0, 1.0], [1.0, 3.0]])

    def f(x):
        return 0.5 * x @ A @ x + np.sum(x**3)

    x = np.array([0.5, -1.0])
    H = np.stack([gj.grad(lambda x, i=i: gj.grad(f)(x)[i])(x) for i in range(2)])
    np.testing.assert_allclose(H, A + np.diag(6 * x), rtol=1e-13)


def test_control_flow_on_an_inner_gradients_value() -> None:
    def f(x):
        slope = gj.grad(lambda z: z**3 - 2 * z)(x)  # 3x^2 - 2
        if slope > 0:
            return x * slope  # 3x^3 - 2x
        return -x

    assert gj.grad(f)(1.0) == 9.0 - 2.0
    assert gj.grad(f)(0.5) == -1.0


def test_while_loop_on_a_computed_condition() -> None:
    def f(x):
        y = x
        while y < 100.0:
            y = y * 2.0
        return y

    # 3 -> 6 -> ... -> 192: seven doublings, so df/dx = 2^6 = 64.
    assert gj.value_and_grad(f)(3.0) == (192.0, 64.0)
    assert gj.value_and_grad(f)(30.0) == (120.0, 4.0)


def test_newton_iterations_with_a_data_dependent_stop() -> None:
    def sqrt_newton(a):
        x = a
        while np.abs(x * x - a) > 1e-12:
            x = 0.5 * (x + a / x)
        return x

    value, g = gj.value_and_grad(sqrt_newton)(2.0)
    np.testing.assert_allclose(value, np.sqrt(2.0), rtol=1e-14)
    np.testing.assert_allclose(g, 0.5 / np.sqrt(2.0), rtol=1e-10)


def test_for_loop_with_a_data_dependent_length() -> None:
    def f(x, n):
        total = 0.0
        for i in range(int(n)):
            total = total + x ** (i + 1)
        return total

    assert gj.grad(f)(2.0, 3.0) == 1.0 + 2 * 2.0 + 3 * 4.0
    # n traced too: int() on it is control flow (allowed), and its gradient is zero.
    assert gj.grad(f, argnums=(0, 1))(2.0, 2.0) == (5.0, 0.0)


def test_recursion() -> None:
    def power(x, n):
        if n == 0:
            return 1.0
        half = power(x, n // 2)
        return half * half * (x if n % 2 else 1.0)

    assert gj.value_and_grad(power)(1.5, 5) == (1.5**5, 5 * 1.5**4)


def test_print_and_side_effects_run_at_every_call(capsys) -> None:
    calls = []

    def f(x):
        calls.append(1)
        print("value:", x)
        return x * x

    df = gj.grad(f)
    df(1.0)
    df(2.0)
    assert len(calls) == 2
    assert capsys.readouterr().out == "value: 1.0\nvalue: 2.0\n"


def test_traced_values_behave_like_arrays() -> None:
    def f(x):
        assert x.shape == (2, 3) and x.ndim == 2 and x.dtype == np.float64 and len(x) == 2 and x.size == 6
        assert np.shape(x) == (2, 3) and np.ndim(x) == 2
        return np.sum(x.T @ x) + x.sum() + x.mean() + x.reshape(3, 2)[0, 1] + np.sum(x[..., None, 1:])

    x = np.arange(6.0).reshape(2, 3)
    value, g = gj.value_and_grad(f)(x)
    assert value == f(x)
    gj.check_grads(f, x, order=2)


# ---------------------------------------------------------------------------------------------
# Small cases that are easy to get wrong
# ---------------------------------------------------------------------------------------------
def test_identity_and_output_that_is_an_input() -> None:
    assert gj.grad(lambda x: x)(1.5) == 1.0
    assert gj.grad(lambda x, y: y, argnums=(0, 1))(1.0, 2.0) == (0.0, 1.0)
    np.testing.assert_array_equal(gj.elementwise_grad(lambda x: x)(np.ones(3)), np.ones(3))


def test_integer_output_is_an_error() -> None:
    with pytest.raises(gj.NonScalarOutputError, match="float output"):
        gj.grad(lambda x: np.argmax(x))(np.array([1.0, 2.0]))


def test_fan_out_accumulates() -> None:
    def f(x):
        y = np.sin(x)
        return y * y + y + np.sum(np.stack([y, y]))

    x = 0.3
    np.testing.assert_allclose(gj.grad(f)(x), (2 * np.sin(x) + 3) * np.cos(x), rtol=1e-15)


def test_vjp_with_has_aux() -> None:
    out, vjp_fn, aux = gj.vjp(lambda x: (x * 2.0, {"tag": "t", "sq": x * x}), np.array([1.0, 3.0]), has_aux=True)
    np.testing.assert_array_equal(out, [2.0, 6.0])
    assert aux["tag"] == "t" and type(aux["sq"]) is np.ndarray
    np.testing.assert_array_equal(vjp_fn(np.ones(2))[0], [2.0, 2.0])


def test_nested_grad_with_argnums_and_pytrees() -> None:
    def f(p, x):
        return p["a"] * x**3 + p["b"] * x

    p = {"a": 2.0, "b": 5.0}
    # d/dx f = 3 a x^2 + b; its gradient with respect to p is {a: 3 x^2, b: 1}.
    g = gj.grad(lambda p, x: gj.grad(f, argnums=1)(p, x))(p, 2.0)
    assert g == {"a": 12.0, "b": 1.0}


def test_jacobian_rows_by_vjp() -> None:
    def f(x):
        return np.stack([x[0] * x[1], np.sin(x[1]), x[0] ** 2])

    x = np.array([1.5, 0.5])
    out, vjp_fn = gj.vjp(f, x)
    J = np.stack([vjp_fn(e)[0] for e in np.eye(3)])
    np.testing.assert_allclose(J, [[0.5, 1.5], [0.0, np.cos(0.5)], [3.0, 0.0]], rtol=1e-15)


def test_inplace_update_of_an_outer_value_inside_a_nested_grad() -> None:
    """A lower-level tracer used as a constant keeps the value it had when it was used."""

    def h(x):
        def inner(y):
            nonlocal x
            z = x * y
            x += y  # rebinds the outer tracer object to a new (inner-level) value
            return z * x

        return gj.grad(inner)(2.0)

    eps = 1e-6
    assert h(3.0) == pytest.approx(3.0 * (3.0 + 2.0) + 3.0 * 2.0)
    assert gj.grad(h)(3.0) == pytest.approx((h(3.0 + eps) - h(3.0 - eps)) / (2 * eps), rel=1e-7)
