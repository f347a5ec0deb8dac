"""The torch-autograd talk's examples, with the values the talk printed.

The talk (Twitter Cortex, 2016) showed ``grad`` on plain numeric code: a sum-of-products, the same
with a branch, a loop and its recursive form, a straight-through ``floor``, and a small neural
network; and it showed the recorded trace. gradjit must give the same numbers, and its Wengert list
must read like the talk's trace.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradjit as gj


def f_sum(a: float, b: float, c: float) -> float:
    return a + b * c


def f_branch(a: float, b: float, c: float) -> float:
    if b > c:
        return a * np.sin(b)
    return a + b * c


def f_loop(a: float, b: int) -> float:
    for _ in range(b):
        a = a * a
    return a


def f_recursive(a: float, b: int) -> float:
    if b == 0:
        return a
    return f_recursive(a * a, b - 1)


def test_sum_of_products() -> None:
    value, grads = gj.value_and_grad(f_sum, argnums=(0, 1, 2))(3.5, 2.1, 1.1)
    assert value == pytest.approx(5.81, abs=1e-12)
    assert value == 3.5 + 2.1 * 1.1  # the same floating-point operations as plain Python
    assert grads == (1.0, 1.1, 2.1)
    assert gj.grad(f_sum)(3.5, 2.1, 1.1) == 1.0


def test_branch() -> None:
    value, da = gj.value_and_grad(f_branch)(3.5, 2.1, 1.1)
    assert value == pytest.approx(3.0212327832711, abs=1e-12)
    assert da == pytest.approx(0.86320936664887, abs=1e-13)
    assert type(da) is float
    # d/db = a cos(b) on this branch; the comparison contributes nothing.
    assert gj.grad(f_branch, argnums=1)(3.5, 2.1, 1.1) == pytest.approx(3.5 * np.cos(2.1), abs=1e-14)
    assert gj.grad(f_branch, argnums=2)(3.5, 2.1, 1.1) == 0.0


def test_branch_other_side_at_the_next_call() -> None:
    df = gj.grad(f_branch, argnums=(0, 1, 2))
    assert df(3.5, 2.1, 1.1) == pytest.approx((np.sin(2.1), 3.5 * np.cos(2.1), 0.0))
    assert df(3.5, 1.1, 2.1) == (1.0, 2.1, 1.1)  # b < c now: a + b * c, traced afresh


@pytest.mark.parametrize("fn", [f_loop, f_recursive], ids=["loop", "recursive"])
def test_loop_and_recursion(fn) -> None:
    value, grad = gj.value_and_grad(fn)(3.0, 2)
    assert value == 81.0
    assert grad == 108.0  # d/da a^4 = 4 a^3
    assert gj.value_and_grad(fn)(3.0, 3) == (6561.0, 8.0 * 3.0**7)


def test_straight_through_floor() -> None:
    def f(a: np.ndarray) -> float:
        return np.sum(np.floor(a**3))

    a = np.eye(3)
    np.testing.assert_array_equal(gj.grad(f)(a), np.zeros((3, 3)))
    with gj.gradients({np.floor: lambda g, ans, x: g}):
        g = gj.grad(f)(a)
    np.testing.assert_array_equal(g, 3 * np.eye(3))
    # Outside the block the default (zero) gradient is back.
    np.testing.assert_array_equal(gj.grad(f)(a), np.zeros((3, 3)))


def test_affine_layer() -> None:
    rng = np.random.default_rng(0)
    W, x, b = rng.standard_normal((4, 3)), rng.standard_normal(3), rng.standard_normal(4)

    def f(W, x, b):
        return np.sum(W @ x + b)

    gW, gx, gb = gj.grad(f, argnums=(0, 1, 2))(W, x, b)
    np.testing.assert_allclose(gW, np.outer(np.ones(4), x))
    np.testing.assert_allclose(gx, W.sum(axis=0))
    np.testing.assert_array_equal(gb, np.ones(4))


def mlp_loss(params: dict, x: np.ndarray, y: np.ndarray) -> float:
    """The talk's neural network: two tanh layers, a log-softmax and a negative log-likelihood."""
    h1 = np.tanh(x @ params["W"][0] + params["b"][0])
    h2 = h1 @ params["W"][1] + params["b"][1]
    logp = h2 - np.log(np.sum(np.exp(h2), axis=1, keepdims=True))
    return -np.mean(np.sum(logp * y, axis=1))


def test_mlp_gradients_have_the_parameter_structure_and_are_right() -> None:
    rng = np.random.default_rng(1)
    params = {
        "W": [rng.standard_normal((5, 8)) * 0.5, rng.standard_normal((8, 3)) * 0.5],
        "b": [np.zeros(8), np.zeros(3)],
    }
    x = rng.standard_normal((6, 5))
    y = np.eye(3)[rng.integers(0, 3, size=6)]
    value, g = gj.value_and_grad(mlp_loss)(params, x, y)
    assert value == mlp_loss(params, x, y)
    assert set(g) == {"W", "b"} and len(g["W"]) == 2 and len(g["b"]) == 2
    for gl, pl in zip(g["W"] + g["b"], params["W"] + params["b"], strict=True):
        assert gl.shape == pl.shape and gl.dtype == pl.dtype
    # The output layer's bias gradient in closed form: mean over the batch of softmax - y.
    h1 = np.tanh(x @ params["W"][0] + params["b"][0])
    h2 = h1 @ params["W"][1] + params["b"][1]
    p = np.exp(h2) / np.exp(h2).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(g["b"][1], (p - y).mean(axis=0), atol=1e-14)
    gj.check_grads(lambda W0, W1: mlp_loss({"W": [W0, W1], "b": params["b"]}, x, y), *params["W"], order=2)


def test_mlp_training_reduces_the_loss() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((40, 4))
    labels = (x[:, 0] + x[:, 1] > 0).astype(int) + (x[:, 2] > 1).astype(int)
    y = np.eye(3)[labels]
    params = {
        "W": [rng.standard_normal((4, 8)) * 0.3, rng.standard_normal((8, 3)) * 0.3],
        "b": [np.zeros(8), np.zeros(3)],
    }
    dloss = gj.value_and_grad(mlp_loss)
    first, _ = dloss(params, x, y)
    for _ in range(30):
        loss, g = dloss(params, x, y)
        params = gj.tree_map(lambda p, d: p - 0.5 * d, params, g)
    assert loss < 0.6 * first


def test_wengert_list_reads_like_the_talks_trace() -> None:
    wl = gj.make_wengert(f_branch)(3.5, 2.1, 1.1)
    text = str(wl)
    print(text)
    lines = text.splitlines()
    assert lines[0] == "inputs: v0:f64[] v1:f64[] v2:f64[]"
    assert lines[1:] == [
        "  v3:bool[] = gt v1 v2",
        "  guard bool(v3) == True",
        "  v4:f64[] = sin v1",
        "  v5:f64[] = mul v0 v4",
        "outputs: v5",
    ]


def test_wengert_list_of_the_loop_unrolls_it() -> None:
    wl = gj.make_wengert(f_loop, argnums=0)(3.0, 2)
    print(wl)
    assert [str(e) for e in wl.eqns] == ["v1:f64[] = mul v0 v0", "v2:f64[] = mul v1 v1"]
    assert gj.make_wengert(f_recursive, argnums=0)(3.0, 2) == wl


def test_wengert_list_of_the_affine_layer() -> None:
    W, x, b = np.ones((4, 3)), np.ones(3), np.ones(4)
    wl = gj.make_wengert(lambda W, x, b: np.sum(W @ x + b))(W, x, b)
    print(wl)
    assert [e.prim.name for e in wl.eqns][-2:] == ["add", "reduce_sum"]
    assert any(e.prim.name == "matmul" for e in wl.eqns)
    assert wl.eqns[-1].out.shape == ()
