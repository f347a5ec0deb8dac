"""Tests of forward mode and the Jacobian family (issue 5, items 1-2).

Every result is checked against an independent computation: central finite differences of the
function (Jacobians) or of its gradient (Hessians, HVPs), and the other mode (``jacfwd`` against
``jacrev``). A spy on the batching fallback asserts that Jacobians of ordinary NumPy code are computed
by batched sweeps, not by a loop of one sweep per row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import gradjit as gj
from gradjit import batching

EPS = 1e-6


def fd_jacobian(f: Callable, x: np.ndarray) -> np.ndarray:
    """Central differences, laid out as out.shape + x.shape."""
    cols = []
    for e in np.eye(x.size):
        e = e.reshape(x.shape)
        cols.append((np.asarray(f(x + EPS * e)) - np.asarray(f(x - EPS * e))) / (2 * EPS))
    j = np.stack(cols, axis=-1)
    return j.reshape(np.shape(f(x)) + x.shape)


A = np.random.default_rng(1).standard_normal((3, 4))
B = np.random.default_rng(2).standard_normal((4, 4)) + 4 * np.eye(4)

# Vector functions R^4 -> R^m exercising each batching-rule family.
VECTOR_FUNCTIONS: dict[str, Callable] = {
    "elementwise": lambda x: np.sin(x) * np.exp(-x * x) + np.log1p(x * x),
    "matmul_2d_1d": lambda x: np.tanh(A @ x),
    "matmul_1d_2d": lambda x: x @ B @ x * x,
    "matmul_1d_1d": lambda x: np.atleast_1d(x @ x),
    "outer_and_reduce": lambda x: np.sum(np.outer(x, x) ** 2, axis=0),
    "reshape_transpose": lambda x: (x.reshape(2, 2).T * x[:2]).ravel(),
    "broadcast": lambda x: (x[:, None] * x[None, :] + x).max(axis=1),
    "getitem_basic": lambda x: x[1:3] * x[::-1][:2],
    "getitem_advanced": lambda x: x[np.array([0, 2, 2])] ** 2,
    "index_assign": lambda x: _assign(x),
    "concatenate": lambda x: np.concatenate([x[:2] ** 2, np.sin(x)]),
    "einsum": lambda x: np.einsum("ij,j,j->i", A, x, x),
    "cumsum_prod": lambda x: np.cumsum(x * x) + np.prod(x),
    "solve_inv": lambda x: np.linalg.solve(B + np.diag(x * x), x) + np.linalg.inv(B + np.diag(x))[0],
    "where_clip": lambda x: np.where(x > 0, x**2, np.sin(x)) + np.clip(x, -0.5, 0.5),
    "logsumexp": lambda x: np.atleast_1d(np.log(np.sum(np.exp(x)))),
}


def _assign(x: Any) -> Any:
    y = np.zeros(5) * x[0]
    y[1:] = np.cos(x)
    y[0] = x[3] * x[1]
    return y


X = np.array([0.3, -0.7, 1.1, 0.45])


@pytest.fixture
def no_loop_fallback(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every equation that fell back to the per-row loop."""
    fallbacks: list[str] = []
    original = batching._loop

    def spy(vals: list, bat: list, batch: int, eqn: Any) -> Any:
        fallbacks.append(eqn.prim.name)
        return original(vals, bat, batch, eqn)

    monkeypatch.setattr(batching, "_loop", spy)
    return fallbacks


@pytest.mark.parametrize("name", list(VECTOR_FUNCTIONS))
def test_jacfwd_and_jacrev_match_finite_differences(name: str, no_loop_fallback: list[str]) -> None:
    f = VECTOR_FUNCTIONS[name]
    expected = fd_jacobian(f, X)
    jr = gj.jacrev(f)(X)
    jf = gj.jacfwd(f)(X)
    assert jr.shape == expected.shape and jf.shape == expected.shape
    np.testing.assert_allclose(jr, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(jf, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(jf, jr, rtol=1e-12, atol=1e-12)
    assert no_loop_fallback == [], f"equations computed row by row: {no_loop_fallback}"


@pytest.mark.parametrize("seed", range(4))
def test_jacobians_of_random_mlps(seed: int) -> None:
    rng = np.random.default_rng(seed)
    w1, w2 = rng.standard_normal((5, 3)), rng.standard_normal((2, 5))

    def f(x: np.ndarray) -> np.ndarray:
        return w2 @ np.tanh(w1 @ x) + np.sum(x**3)

    x = rng.standard_normal(3)
    jr, jf, j = gj.jacrev(f)(x), gj.jacfwd(f)(x), gj.jacobian(f)(x)
    np.testing.assert_allclose(jr, fd_jacobian(f, x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(jf, jr, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(j, jr, rtol=1e-12, atol=1e-12)


def test_jacobian_picks_the_cheaper_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    from gradjit import jacobians

    used: list[str] = []
    for name in ("_pullback", "_pushforward"):
        original = getattr(jacobians, name)
        monkeypatch.setattr(jacobians, name, lambda t, _o=original, _n=name: used.append(_n) or _o(t))
    gj.jacobian(lambda x: np.sum(x**2))(np.ones(5))  # 1 output, 5 inputs: reverse
    gj.jacobian(lambda x: np.sin(x) * np.arange(6.0))(np.ones(1))  # 6 outputs, 1 input: forward
    assert used == ["_pullback", "_pushforward"]


def rosenbrock(x: np.ndarray) -> Any:
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


SCALAR_FUNCTIONS: dict[str, Callable] = {
    "rosenbrock": rosenbrock,
    "quartic": lambda x: np.sum(x**4) * np.sum(np.sin(x)) + x[0] * x[-1],
    "logsumexp_quadratic": lambda x: np.log(np.sum(np.exp(A @ x))) + x @ B @ x,
    "softplus_norm": lambda x: np.sum(np.logaddexp(0.0, x)) * np.linalg.norm(x),
}


@pytest.mark.parametrize("name", list(SCALAR_FUNCTIONS))
def test_hessian_hvp_vhp_match_finite_differences_of_the_gradient(name: str, rng: np.random.Generator) -> None:
    f = SCALAR_FUNCTIONS[name]
    x = rng.uniform(-1, 1, 4)
    v = rng.standard_normal(4)
    g = gj.grad(f)
    fd_h = fd_jacobian(g, x)
    h = gj.hessian(f)(x)
    np.testing.assert_allclose(h, fd_h, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h, h.T, rtol=1e-10, atol=1e-10)
    hv = gj.hvp(f, x, v)
    fd_hv = (g(x + EPS * v) - g(x - EPS * v)) / (2 * EPS)
    np.testing.assert_allclose(hv, fd_hv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(hv, h @ v, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gj.vhp(f, x, v), v @ h, rtol=1e-10, atol=1e-10)


def test_hvp_does_not_form_the_hessian() -> None:
    """Forward-over-reverse: the traced HVP of a 1000-variable function has O(n) sized values only."""
    n = 1000
    wl = gj.make_wengert(lambda x, v: gj.hvp(rosenbrock, x, v))(np.ones(n) * 0.5, np.ones(n))
    biggest = max(int(np.prod(e.out.shape)) for e in wl.eqns)
    assert biggest <= n


def test_hessian_with_pytrees_and_argnums(rng: np.random.Generator) -> None:
    def f(p: dict, y: np.ndarray) -> Any:
        return np.sum(np.tanh(p["w"] * y) ** 2) + p["b"] ** 2 * np.sum(y)

    p = {"w": rng.standard_normal(3), "b": 0.7}
    y = rng.standard_normal(3)
    h = gj.hessian(f)(p, y)
    assert set(h) == {"w", "b"} and set(h["w"]) == {"w", "b"}
    assert h["w"]["w"].shape == (3, 3) and np.shape(h["w"]["b"]) == (3,) and type(h["b"]["b"]) is float
    gw = gj.grad(f)
    fd_ww = fd_jacobian(lambda w: gw({"w": w, "b": p["b"]}, y)["w"], p["w"])
    np.testing.assert_allclose(h["w"]["w"], fd_ww, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(h["b"]["b"], 2 * np.sum(y), rtol=1e-12)
    # argnums=(0, 1): a tuple of per-argument blocks
    h01 = gj.hessian(f, argnums=(0, 1))(p, y)
    assert isinstance(h01, tuple) and h01[1][1].shape == (3, 3)
    gy = gj.grad(f, argnums=1)
    np.testing.assert_allclose(h01[1][1], fd_jacobian(lambda z: gy(p, z), y), rtol=1e-6, atol=1e-7)
    # hvp on a pytree argument agrees with the Hessian blocks
    v = {"w": rng.standard_normal(3), "b": 0.3}
    hv = gj.hvp(lambda q: f(q, y), p, v)
    np.testing.assert_allclose(hv["w"], h["w"]["w"] @ v["w"] + h["w"]["b"] * v["b"], rtol=1e-10)
    np.testing.assert_allclose(hv["b"], h["b"]["w"] @ v["w"] + h["b"]["b"] * v["b"], rtol=1e-10)


def test_hvp_with_several_arguments(rng: np.random.Generator) -> None:
    def f(x: np.ndarray, y: np.ndarray) -> Any:
        return np.sum(np.sin(x * y)) + np.sum(x**2 * y)

    x, y, vx, vy = (rng.standard_normal(3) for _ in range(4))
    hx, hy = gj.hvp(f, (x, y), (vx, vy))
    hxx, hxy = gj.hessian(f, argnums=(0, 1))(x, y)[0]
    hyx, hyy = gj.hessian(f, argnums=(0, 1))(x, y)[1]
    np.testing.assert_allclose(hx, hxx @ vx + hxy @ vy, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(hy, hyx @ vx + hyy @ vy, rtol=1e-10, atol=1e-12)
    only_y = gj.hvp(f, (x, y), (vy,), argnums=(1,))
    np.testing.assert_allclose(only_y[0], hyy @ vy, rtol=1e-10, atol=1e-12)


def test_jvp_and_linearize(rng: np.random.Generator) -> None:
    f = VECTOR_FUNCTIONS["elementwise"]
    t = rng.standard_normal(4)
    out, tout = gj.jvp(f, (X,), (t,))
    assert np.array_equal(out, f(X))
    np.testing.assert_allclose(tout, fd_jacobian(f, X) @ t, rtol=1e-6, atol=1e-8)
    value, f_jvp = gj.linearize(f, X)
    assert np.array_equal(value, out)
    np.testing.assert_allclose(f_jvp(t), tout, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(f_jvp(2 * t), 2 * tout, rtol=1e-14, atol=1e-15)


def test_jvp_pytrees_float_types_and_constant_outputs() -> None:
    def f(p: dict) -> tuple:
        return p["a"] * p["b"], 3.0, np.ones(2)

    out, t = gj.jvp(f, ({"a": 2.0, "b": np.array([1.0, 2.0])},), ({"a": 1.0, "b": np.array([0.5, 0.0])},))
    np.testing.assert_allclose(t[0], [1.0 + 2 * 0.5, 2.0])
    assert t[1] == 0.0 and type(t[1]) is float
    assert np.array_equal(t[2], np.zeros(2))


def test_jvp_rejects_mismatched_tangents() -> None:
    with pytest.raises(ValueError, match="tangent of shape"):
        gj.jvp(np.sin, (np.ones(3),), (np.ones(2),))
    with pytest.raises(ValueError, match="primals but"):
        gj.jvp(np.sin, (np.ones(3),), ())


def test_third_order_mixed_modes(rng: np.random.Generator) -> None:
    """grad of a Hessian-vector product (reverse-over-forward-over-reverse) against differences."""
    v = rng.standard_normal(4)

    def vhv(x: np.ndarray) -> Any:
        return gj.hvp(rosenbrock, x, v) @ v

    x = rng.uniform(-1, 1, 4)
    g = gj.grad(vhv)(x)
    fd = np.array([(vhv(x + EPS * e) - vhv(x - EPS * e)) / (2 * EPS) for e in np.eye(4)])
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-4)


def test_jacobian_of_a_function_with_control_flow(rng: np.random.Generator) -> None:
    def f(x: np.ndarray) -> Any:
        y = x
        while np.sum(y * y) < 10.0:
            y = y * 1.5 + np.sin(y)
        return y

    x = rng.uniform(0.2, 0.5, 3)
    np.testing.assert_allclose(gj.jacfwd(f)(x), fd_jacobian(f, x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gj.jacrev(f)(x), gj.jacfwd(f)(x), rtol=1e-12, atol=1e-12)


def test_check_grads_in_both_modes_and_its_failure() -> None:
    gj.check_grads(lambda x: np.sum(np.tanh(x) ** 3), np.array([0.1, 0.5]), order=2, modes=("rev", "fwd"))
    from gradjit.primitives import P

    wrong = gj.primitive(lambda x: np.sin(x))
    wrong.defvjp(lambda g, ans, x: g * np.cos(x))
    gj.defjvp(wrong, lambda t, ans, x: t * 2.0 * np.cos(x))  # forward rule off by a factor of 2
    with pytest.raises(AssertionError, match="forward-mode"):
        gj.check_grads(wrong, np.array([0.3]), order=1, modes=("fwd",))
    gj.check_grads(wrong, np.array([0.3]), order=1, modes=("rev",))
    with pytest.raises(ValueError, match="unknown mode"):
        gj.check_grads(np.sin, 0.3, modes=("sideways",))
    assert P("sin").jvps  # the built-in table is registered


from primitive_table import ROWS  # noqa: E402

# Equations the batching rules leave to the per-row loop, by design (documented in batching.py).
LOOPED = {"conv2d", "conv2d_grad_input", "conv2d_grad_weight", "max_pool2d", "max_pool2d_grad",
          "max_pool2d_gather", "avg_pool2d", "avg_pool2d_grad"}  # fmt: skip


@pytest.mark.parametrize("row", [r for r in ROWS if r.fd], ids=lambda r: r.id)
def test_every_primitive_row_jacfwd_equals_jacrev(row: Any, no_loop_fallback: list[str]) -> None:
    args = row.make_args(np.random.default_rng(0), np.float64)
    nums = tuple(range(len(args)))
    jf = gj.jacfwd(row.fn, argnums=nums)(*args)
    jr = gj.jacrev(row.fn, argnums=nums)(*args)
    tol = 1e-10 if all(np.asarray(a).dtype == np.float64 for a in args) else 1e-5
    for a, b in zip(jf, jr):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    assert set(no_loop_fallback) <= LOOPED, f"looped: {set(no_loop_fallback) - LOOPED}"
