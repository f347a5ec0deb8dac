"""Taylor mode (``gj.taylor``): every rule against nested ``grad`` for orders 1..5, pytrees and array
outputs, composition with ``grad`` (and ``grad`` inside), the cost's polynomial growth (equation
counts, no timings), and the errors.

The reference for ``d^j/ds^j f(x + s v)`` is ``grad`` nested j times of the scalar function
``h(s) = sum_leaves <w, f(x + s v)>`` at ``s = 0`` (``w`` random weights per output leaf), compared
with the same projection of the Taylor derivatives.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import gradjit as gj
from gradjit.taylor import NoTaylorRuleError, TaylorArgumentError, deftaylor

ORDER = 5
RTOL = 1e-8


def _inner(x):
    """A map with non-zero Taylor coefficients of every order, so each rule sees full input series."""
    return x + 0.25 * np.sin(x)


def _leaves(tree):
    return gj.pytree.flatten(tree)[0]


def _project(out, weights):
    return sum(np.sum(w * o) for w, o in zip(weights, _leaves(out)))


def _nested_grad_derivs(f, x, v, k, weights):
    def h(s):
        return _project(f(gj.tree_map(lambda a, b: a if b is None else a + s * b, x, v)), weights)

    out, g = [], h
    for _ in range(k):
        g = gj.grad(g)
        out.append(g(0.0))
    return out


def _weights(f, x, rng):
    return [rng.normal(size=np.shape(o)) for o in _leaves(f(x))]


def _check(f, x, v, k=ORDER, rtol=RTOL, seed=0):
    rng = np.random.default_rng(seed)
    weights = _weights(f, x, rng)
    derivs = gj.taylor(f, order=k)(x, v)
    assert len(derivs) == k
    ref = _nested_grad_derivs(f, x, v, k, weights)
    for j, (d, r) in enumerate(zip(derivs, ref), start=1):
        for leaf, out_leaf in zip(_leaves(d), _leaves(f(x))):
            assert np.shape(leaf) == np.shape(out_leaf), f"order {j}: shape"
        got = _project(d, weights)
        scale = max(1.0, abs(r))
        assert abs(got - r) <= rtol * scale, f"order {j}: taylor {got!r} vs nested grad {r!r}"


def _uniform(lo, hi, shape=(3,)):
    def make(rng):
        return rng.uniform(lo, hi, size=shape)

    return make


# (id, function of one array, sampler of x). Directions are standard normal.
UNARY = [
    ("exp", lambda x: np.exp(_inner(x)), _uniform(-1, 1)),
    ("exp2", lambda x: np.exp2(_inner(x)), _uniform(-1, 1)),
    ("expm1", lambda x: np.expm1(_inner(x)), _uniform(-1, 1)),
    ("log", lambda x: np.log(_inner(x)), _uniform(0.5, 2)),
    ("log2", lambda x: np.log2(_inner(x)), _uniform(0.5, 2)),
    ("log10", lambda x: np.log10(_inner(x)), _uniform(0.5, 2)),
    ("log1p", lambda x: np.log1p(_inner(x)), _uniform(-0.4, 2)),
    ("sqrt", lambda x: np.sqrt(_inner(x)), _uniform(0.5, 2)),
    ("cbrt", lambda x: np.cbrt(_inner(x)), _uniform(0.5, 2)),
    ("square", lambda x: np.square(_inner(x)), _uniform(-1, 1)),
    ("reciprocal", lambda x: np.reciprocal(_inner(x)), _uniform(0.5, 2)),
    ("sin", lambda x: np.sin(_inner(x)), _uniform(-2, 2)),
    ("cos", lambda x: np.cos(_inner(x)), _uniform(-2, 2)),
    ("tan", lambda x: np.tan(_inner(x)), _uniform(-1, 1)),
    ("sinh", lambda x: np.sinh(_inner(x)), _uniform(-1, 1)),
    ("cosh", lambda x: np.cosh(_inner(x)), _uniform(-1, 1)),
    ("tanh", lambda x: np.tanh(_inner(x)), _uniform(-1, 1)),
    ("arcsin", lambda x: np.arcsin(_inner(x)), _uniform(-0.5, 0.5)),
    ("arccos", lambda x: np.arccos(_inner(x)), _uniform(-0.5, 0.5)),
    ("arctan", lambda x: np.arctan(_inner(x)), _uniform(-2, 2)),
    ("arcsinh", lambda x: np.arcsinh(_inner(x)), _uniform(-2, 2)),
    ("arccosh", lambda x: np.arccosh(_inner(x)), _uniform(1.5, 3)),
    ("arctanh", lambda x: np.arctanh(_inner(x)), _uniform(-0.5, 0.5)),
    ("abs", lambda x: np.abs(_inner(x)), _uniform(-2, 2)),
    ("fabs", lambda x: np.fabs(_inner(x)), _uniform(-2, 2)),
    ("neg", lambda x: -np.exp(x), _uniform(-1, 1)),
    ("positive", lambda x: +np.exp(x), _uniform(-1, 1)),
    ("astype", lambda x: np.exp(x.astype(np.float32).astype(np.float64)), _uniform(-1, 1)),
    ("floor", lambda x: np.floor(x) * np.exp(x), _uniform(-2, 2)),
    ("sign", lambda x: np.sign(x) * np.sin(_inner(x)), _uniform(-2, 2)),
    ("pow int", lambda x: _inner(x) ** 3, _uniform(-2, 2)),
    ("pow int at 0", lambda x: (x - x) ** 4 + x**5, lambda rng: np.zeros(3)),
    ("pow negative int", lambda x: _inner(x) ** -2, _uniform(0.5, 2)),
    ("pow real", lambda x: _inner(x) ** 1.7, _uniform(0.5, 2)),
    ("pow array exponent", lambda x: _inner(x) ** np.array([0.5, 2.5, -1.5]), _uniform(0.5, 2)),
    ("pow constant base", lambda x: 2.5 ** _inner(x), _uniform(-1, 1)),
    ("pow both", lambda x: _inner(x) ** np.sin(x), _uniform(0.5, 2)),
    ("mul", lambda x: np.sin(x) * np.exp(x), _uniform(-1, 1)),
    ("mul constant", lambda x: np.array([1.0, -2.0, 3.0]) * np.sin(_inner(x)), _uniform(-1, 1)),
    ("div", lambda x: np.sin(x) / (2.0 + np.cos(_inner(x))), _uniform(-1, 1)),
    ("div constant numerator", lambda x: 3.0 / _inner(x), _uniform(0.5, 2)),
    ("add sub", lambda x: np.exp(x) - np.sin(x) + 2.0 * x, _uniform(-1, 1)),
    ("maximum", lambda x: np.maximum(np.sin(x), np.cos(_inner(x))), _uniform(-2, 2)),
    ("minimum", lambda x: np.minimum(np.sin(x), 0.1), _uniform(-2, 2)),
    ("fmax fmin", lambda x: np.fmax(np.sin(x), np.fmin(np.cos(x), 0.3)), _uniform(-2, 2)),
    ("clip", lambda x: np.clip(np.exp(_inner(x)), 0.5, 2.0), _uniform(-1, 1)),
    ("where", lambda x: np.where(x > 0, np.sin(_inner(x)), np.exp(x)), _uniform(-1, 1)),
    ("mod", lambda x: np.mod(np.exp(_inner(x)), 0.7), _uniform(-1, 1)),
    ("fmod", lambda x: np.fmod(np.exp(_inner(x)), 0.7 + 0.1 * np.sin(x)), _uniform(-1, 1)),
    ("copysign", lambda x: np.copysign(np.exp(x), np.sin(3 * x)), _uniform(-2, 2)),
]

BINARY = [  # functions of a pair (a, b): the point is a tuple pytree
    ("arctan2", lambda p: np.arctan2(_inner(p[0]), _inner(p[1])), _uniform(-2, 2)),
    ("hypot", lambda p: np.hypot(_inner(p[0]), _inner(p[1])), _uniform(-2, 2)),
    ("logaddexp", lambda p: np.logaddexp(_inner(p[0]), 3 * _inner(p[1])), _uniform(-2, 2)),
    ("logaddexp2", lambda p: np.logaddexp2(_inner(p[0]), 3 * _inner(p[1])), _uniform(-2, 2)),
    ("pow pair", lambda p: np.exp(p[0]) ** _inner(p[1]), _uniform(-1, 1)),
    ("div pair", lambda p: _inner(p[0]) / np.exp(p[1]), _uniform(-1, 1)),
    ("mod pair", lambda p: np.mod(np.exp(_inner(p[0])), 1.0 + np.exp(p[1])), _uniform(-1, 1)),
    ("maximum pair", lambda p: np.maximum(np.sin(p[0]), np.sin(p[1] ** 2)), _uniform(-2, 2)),
]


@pytest.mark.parametrize("name,f,sample", UNARY, ids=[r[0] for r in UNARY])
def test_elementwise_rules_match_nested_grad(name, f, sample):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x = sample(rng)
    _check(f, x, rng.normal(size=x.shape), rtol=1e-6 if name == "astype" else RTOL)  # float32 rounding


@pytest.mark.parametrize("name,f,sample", BINARY, ids=[r[0] for r in BINARY])
def test_binary_rules_match_nested_grad(name, f, sample):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x = (sample(rng), sample(rng))
    v = (rng.normal(size=3), rng.normal(size=3))
    _check(f, x, v)


def _spd(b):
    return b @ b.T + 3.0 * np.eye(b.shape[0])


ARRAYS = [  # (id, f, x shape)
    ("sum", lambda x: np.sum(np.sin(_inner(x)), axis=1), (3, 4)),
    ("sum keepdims", lambda x: np.exp(np.sum(x, axis=0, keepdims=True)) * x, (3, 4)),
    ("max", lambda x: np.max(np.sin(_inner(x)), axis=1), (3, 4)),
    ("min all", lambda x: np.min(np.cos(_inner(x))), (3, 4)),
    ("prod", lambda x: np.prod(_inner(x), axis=1), (3, 5)),
    ("prod all", lambda x: np.prod(1.0 + 0.5 * np.sin(x)), (2, 3)),
    ("cumsum", lambda x: np.cumsum(np.sin(_inner(x)), axis=1), (3, 4)),
    ("mean var", lambda x: np.var(np.exp(0.5 * x), axis=0) + np.mean(x), (3, 4)),
    ("reshape transpose", lambda x: np.tanh(np.reshape(_inner(x), (4, 3)).T), (3, 4)),
    ("broadcast", lambda x: np.sin(_inner(x))[:, None] * np.cos(x)[None, :], (4,)),
    ("getitem basic", lambda x: np.exp(_inner(x))[1:, ::2], (3, 4)),
    ("getitem advanced", lambda x: np.exp(_inner(x))[np.array([0, 2, 2]), np.array([1, 0, 3])], (3, 4)),
    ("concatenate", lambda x: np.concatenate([np.sin(_inner(x)), np.ones((1, 4)), x**2], axis=0), (3, 4)),
    ("stack", lambda x: np.stack([np.sin(_inner(x)), x**2]), (3, 4)),
    ("index_set", lambda x: _set_rows(x), (3, 4)),
    ("index_add", lambda x: _add_at(x), (3, 4)),
    ("matmul", lambda x: np.tanh(_inner(x)) @ np.sin(x).T, (3, 4)),
    ("matmul constant", lambda x: np.arange(12.0).reshape(4, 3) @ np.exp(_inner(x)), (3, 4)),
    ("matvec", lambda x: np.exp(_inner(x)) @ np.sin(x[0]), (3, 4)),
    ("einsum three", lambda x: np.einsum("ij,kj,ik->i", np.sin(x), np.cos(_inner(x)), np.exp(0.1 * x @ x.T)), (3, 4)),
    ("dot outer", lambda x: np.outer(np.sin(x), np.exp(_inner(x))) + np.dot(x, x), (4,)),
    ("inv", lambda x: np.linalg.inv(_spd(_inner(x))), (3, 3)),
    ("solve vector", lambda x: np.linalg.solve(_spd(_inner(x)), np.sin(x[0])), (3, 3)),
    ("solve matrix", lambda x: np.linalg.solve(_spd(_inner(x)), np.sin(x)), (3, 3)),
    ("det", lambda x: np.linalg.det(_spd(_inner(x)) - 4.0 * np.eye(3)), (3, 3)),
    ("slogdet", lambda x: np.linalg.slogdet(_spd(_inner(x)) - 4.0 * np.eye(3))[1], (3, 3)),
    ("cholesky", lambda x: np.linalg.cholesky(_spd(_inner(x))), (3, 3)),
    ("logsumexp", lambda x: np.log(np.sum(np.exp(_inner(x)), axis=1)), (3, 4)),
]


def _set_rows(x):
    y = np.zeros((3, 4)) + 0.0 * x[0, 0]
    y[1] = np.sin(_inner(x[0]))
    y[np.array([0, 2])] = np.exp(x[1:])
    return y * x


def _add_at(x):
    y = np.exp(_inner(x))
    y[np.array([0, 0]), np.array([1, 1])] += np.sin(x[1, :2])
    return y


@pytest.mark.parametrize("name,f,shape", ARRAYS, ids=[r[0] for r in ARRAYS])
def test_array_rules_match_nested_grad(name, f, shape):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x = rng.uniform(-1, 1, size=shape)
    _check(f, x, rng.normal(size=shape))


def test_nn_conv_and_pools_match_nested_grad():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(3, 2, 3, 3))

    def f(p):
        x, k = p
        h = gj.nn.ops.conv2d(np.tanh(x), k * np.exp(0.1 * k), padding=1)
        return gj.nn.ops.max_pool2d(np.sin(h), 2) + gj.nn.ops.avg_pool2d(h * h, 2)

    x = (rng.normal(size=(1, 2, 4, 4)), w)
    v = (rng.normal(size=(1, 2, 4, 4)), rng.normal(size=w.shape))
    _check(f, x, v, k=3)


def test_tanh_eighth_derivative_agrees_with_nested_grad():
    d8 = gj.taylor(np.tanh, order=8)(1.0, 1.0)[7]
    g = np.tanh
    for _ in range(8):
        g = gj.grad(g)
    ref = g(1.0)
    assert abs(d8 - ref) <= 1e-9 * abs(ref)
    assert abs(d8 - (-277.0621356031)) < 1e-8


def test_closed_forms():
    # exp: every derivative along v is exp(x) v^j; sin: cycles through cos, -sin, -cos, sin.
    x, v = 0.3, 1.7
    for j, d in enumerate(gj.taylor(np.exp, order=6)(x, v), start=1):
        assert d == pytest.approx(np.exp(x) * v**j, rel=1e-13)
    cycle = [np.cos(x), -np.sin(x), -np.cos(x), np.sin(x)]
    for j, d in enumerate(gj.taylor(np.sin, order=8)(x, 1.0), start=1):
        assert d == pytest.approx(cycle[(j - 1) % 4], rel=1e-12)
    # a polynomial of degree 3: derivatives 4..6 are exactly zero
    d = gj.taylor(lambda t: 2.0 * t**3 - t, order=6)(1.5, 1.0)
    assert d[:3] == pytest.approx([2 * 3 * 1.5**2 - 1, 12 * 1.5, 12.0])
    assert d[3:] == [0.0, 0.0, 0.0]


def test_pytree_point_and_output():
    rng = np.random.default_rng(7)
    x = {"w": rng.normal(size=(2, 3)), "b": rng.normal(size=3), "n": 4}
    v = {"w": rng.normal(size=(2, 3)), "b": rng.normal(size=3), "n": None}

    def f(p):
        h = np.tanh(p["w"] @ p["b"]) * p["n"]
        return {"h": h, "s": (np.sum(np.exp(p["b"])), np.log(1.0 + h * h))}

    _check(f, x, v)
    out = gj.taylor(f, order=2)(x, v)
    assert isinstance(out, list) and set(out[0]) == {"h", "s"}
    assert out[1]["h"].shape == (2,) and isinstance(out[1]["s"], tuple)


def test_with_value_extra_args_and_outputs_without_series():
    def f(x, scale, shift=0.0):
        return {"y": scale * np.sin(x) + shift, "c": np.ones(2), "i": np.argmax(x), "name": "f"}

    x = np.array([0.1, 0.7])
    value, derivs = gj.taylor(f, order=3, with_value=True)(x, np.ones(2), 2.0, shift=1.0)
    assert np.allclose(value["y"], 2.0 * np.sin(x) + 1.0)
    assert value["name"] == "f" and value["i"] == 1
    assert np.allclose(derivs[0]["y"], 2.0 * np.cos(x)) and np.allclose(derivs[2]["y"], -2.0 * np.cos(x))
    assert np.array_equal(derivs[1]["c"], np.zeros(2))
    assert derivs[0]["i"] is None and derivs[0]["name"] is None
    assert gj.taylor(lambda x: 3.0, order=2)(1.0, 1.0) == [0.0, 0.0]


def test_order_zero_and_dtype():
    assert gj.taylor(np.sin, order=0, with_value=True)(0.5, 1.0) == (np.sin(0.5), [])
    x = np.array([0.5, 1.0], dtype=np.float32)
    d = gj.taylor(lambda t: np.exp(t) * 0.5, order=3)(x, np.ones(2, dtype=np.float32))
    assert all(di.dtype == np.float32 for di in d)
    assert np.allclose(d[2], 0.5 * np.exp(x), rtol=1e-6)


def test_nonsmooth_first_order_follows_grad_conventions():
    # ties of maximum share equally; abs at 0 has derivative sign(0) = 0
    f = lambda t: np.maximum(t, 1.0 - t) + np.abs(t - 0.5)  # noqa: E731
    assert gj.taylor(f, order=2)(0.5, 1.0) == [gj.grad(f)(0.5), 0.0]
    g = lambda x: np.max(np.array([1.0, 1.0, 0.0]) * x)  # noqa: E731
    x = np.array([2.0, 2.0, 5.0])
    assert np.allclose(gj.taylor(g, order=1)(x, np.array([1.0, 3.0, 7.0]))[0], gj.grad(g)(x) @ [1.0, 3.0, 7.0])


def test_grad_of_a_taylor_coefficient():
    # d/dx of the third derivative of f is the fourth derivative (v = 1) ...
    f = lambda t: np.tanh(np.sin(t) + t * t)  # noqa: E731
    third = lambda t: gj.taylor(f, order=3)(t, 1.0)[2]  # noqa: E731
    assert gj.grad(third)(0.4) == pytest.approx(gj.taylor(f, order=4)(0.4, 1.0)[3], rel=1e-10)
    # ... and against central differences, with respect to the point and to the direction.
    rng = np.random.default_rng(11)
    x, v = rng.normal(size=3), rng.normal(size=3)

    def h(x, v):
        return np.sum(gj.taylor(lambda z: np.exp(np.sin(z)) * z, order=3)(x, v)[2])

    gx, gv = gj.grad(h, argnums=(0, 1))(x, v)
    eps = 1e-6
    for i in range(3):
        e = np.eye(3)[i] * eps
        assert gx[i] == pytest.approx((h(x + e, v) - h(x - e, v)) / (2 * eps), rel=1e-6, abs=1e-7)
        assert gv[i] == pytest.approx((h(x, v + e) - h(x, v - e)) / (2 * eps), rel=1e-6, abs=1e-7)
    # grad of grad of a coefficient (nesting both ways)
    hess_diag = gj.grad(gj.grad(lambda t: gj.taylor(np.sin, order=2)(t, 1.0)[1]))(0.3)
    assert hess_diag == pytest.approx(np.sin(0.3), rel=1e-12)


def test_taylor_of_grad_and_of_taylor():
    f = lambda x: np.sum(np.tanh(x) ** 2)  # noqa: E731
    rng = np.random.default_rng(5)
    x, v = rng.normal(size=3), rng.normal(size=3)
    _check(gj.grad(f), x, v, k=4)
    # taylor inside taylor: d/ds of the first derivative is the second
    inner = lambda t: gj.taylor(np.exp, order=1)(np.sin(t), 1.0)[0]  # noqa: E731
    assert gj.taylor(inner, order=2)(0.2, 1.0) == pytest.approx(
        [np.exp(np.sin(0.2)) * np.cos(0.2), np.exp(np.sin(0.2)) * (np.cos(0.2) ** 2 - np.sin(0.2))], rel=1e-12
    )


def _taylor_equations(k):
    return len(gj.make_wengert(lambda t: gj.taylor(np.tanh, order=k)(t, 1.0)[-1])(0.5))


def test_cost_grows_polynomially():
    counts = {k: _taylor_equations(k) for k in (4, 8, 16, 32)}
    for k in (4, 8, 16):
        assert counts[2 * k] <= 4.5 * counts[k], counts  # at most quadratic: doubling k at most ~4x
    # order 30 runs and is right where nested grad is out of reach: tanh = 1 - 2/(exp(2t) + 1)
    d30 = gj.taylor(np.tanh, order=30)(0.0, 1.0)
    assert d30[0] == 1.0 and d30[1] == 0.0 and d30[2] == pytest.approx(-2.0)
    assert all(abs(d) < 1e-9 * max(1, abs(d30[j + 1])) for j, d in enumerate(d30[1::2]))  # odd function


def test_missing_rule_names_primitive_and_line():
    with pytest.raises(NoTaylorRuleError) as err:
        gj.taylor(lambda t: np.sinc(t) * 2.0, order=2)(0.5, 1.0)  # the line named
    msg = str(err.value)
    assert "sinc" in msg and "test_taylor.py" in msg and "np.sinc(t)" in msg and "deftaylor" in msg


def test_user_primitive_and_deftaylor():
    @gj.primitive
    def cube(x):
        return x**3

    with pytest.raises(NoTaylorRuleError, match="cube"):
        gj.taylor(lambda t: cube(np.sin(t)), order=3)(0.3, 1.0)

    def cube_rule(k, series, ans, x):
        from gradjit.taylor import _full, s_int_power

        return s_int_power(_full(series[0], x, k), 3, k)[1:]

    deftaylor(cube, cube_rule)
    f = lambda t: cube(np.sin(t))  # noqa: E731
    ref = gj.taylor(lambda t: np.sin(t) ** 3, order=4)(0.3, 1.0)
    assert gj.taylor(f, order=4)(0.3, 1.0) == pytest.approx(ref, rel=1e-13)
    with pytest.raises(TypeError):
        deftaylor(np.sin, cube_rule)


def test_argument_errors():
    with pytest.raises(TaylorArgumentError, match="order"):
        gj.taylor(np.sin, order=-1)
    with pytest.raises(TaylorArgumentError, match="order"):
        gj.taylor(np.sin, order=2.0)
    with pytest.raises(TaylorArgumentError, match="structure"):
        gj.taylor(lambda p: p[0] * p[1], order=2)((1.0, 2.0), 1.0)
    with pytest.raises(TaylorArgumentError, match="shape"):
        gj.taylor(np.sin, order=2)(np.ones(3), np.ones(2))


def test_benchmark_quick_run(tmp_path, capsys):
    import importlib.util
    import os
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_taylor.py"
    saved = dict(os.environ)  # the module pins BLAS threads in os.environ
    spec = importlib.util.spec_from_file_location("bench_taylor", path)
    bench = importlib.util.module_from_spec(spec)
    sys.modules["bench_taylor"] = bench
    try:
        spec.loader.exec_module(bench)
        out = tmp_path / "taylor.md"
        assert bench.main(["--quick", "--orders", "3", "--out", str(out)]) == 0
        text = out.read_text()
        assert "| 3 | 0.6216266808 |" in text and "nested / taylor" in text
        assert "QUICK RUN" in capsys.readouterr().out
    finally:
        sys.modules.pop("bench_taylor", None)
        os.environ.clear()
        os.environ.update(saved)
