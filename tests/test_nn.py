"""gradjit.nn: the convolution/pooling primitives against NumPy references, and every layer, activation,
loss and model against finite differences.

- ``conv2d``, ``max_pool2d`` and ``avg_pool2d`` agree with direct NumPy references (written below with
  ``np.pad``, strided slices and ``einsum``) on random shapes, strides and paddings, in float64 and
  float32, forward; their gradients agree with gradjit's gradient *of the reference* (a different
  program: pads, slices and einsums), to first and second order, and pass ``check_grads``.
- Each primitive is one equation of the Wengert list; ``import gradjit`` does not import Numba.
- Every layer and loss passes ``check_grads`` to second order where smooth (relu and max pooling
  too: at random points no kink is within the finite-difference step).
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest

import gradjit as gj
from gradjit import nn
from gradjit.nn import init as nninit


# ---------------------------------------------------------------------------------------------
# NumPy references (plain NumPy, also traceable by gradjit, which gives the gradient reference)
# ---------------------------------------------------------------------------------------------
def _windows(xp: Any, k: tuple, s: tuple, out: tuple) -> list:
    """The (N, C, OH, OW) strided views of padded ``xp``, one per window offset (i, j)."""
    return [
        xp[:, :, i : i + s[0] * (out[0] - 1) + 1 : s[0], j : j + s[1] * (out[1] - 1) + 1 : s[1]]
        for i in range(k[0])
        for j in range(k[1])
    ]


def _out(x_shape: tuple, k: tuple, s: tuple, p: tuple) -> tuple:
    return ((x_shape[2] + 2 * p[0] - k[0]) // s[0] + 1, (x_shape[3] + 2 * p[1] - k[1]) // s[1] + 1)


def conv_ref(x: Any, w: Any, s: tuple, p: tuple) -> Any:
    k = np.shape(w)[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    views = _windows(xp, k, s, _out(np.shape(x), k, s, p))
    y = 0.0
    for (i, j), v in zip([(i, j) for i in range(k[0]) for j in range(k[1])], views):
        y = y + np.einsum("nchw,oc->nohw", v, w[:, :, i, j])
    return y


def conv_loops(x: np.ndarray, w: np.ndarray, s: tuple, p: tuple) -> np.ndarray:
    """The definition, one output element at a time (for a tiny case)."""
    n_, c_, h_, w_ = x.shape
    o_, _, kh, kw = w.shape
    oh, ow = _out(x.shape, (kh, kw), s, p)
    y = np.zeros((n_, o_, oh, ow))
    for n in range(n_):
        for o in range(o_):
            for a in range(oh):
                for b in range(ow):
                    for c in range(c_):
                        for i in range(kh):
                            for j in range(kw):
                                r, q = a * s[0] - p[0] + i, b * s[1] - p[1] + j
                                if 0 <= r < h_ and 0 <= q < w_:
                                    y[n, o, a, b] += x[n, c, r, q] * w[o, c, i, j]
    return y


def max_pool_ref(x: Any, k: tuple, s: tuple, p: tuple) -> Any:
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])), constant_values=-np.inf)
    return np.max(np.stack(_windows(xp, k, s, _out(np.shape(x), k, s, p))), axis=0)


def avg_pool_ref(x: Any, k: tuple, s: tuple, p: tuple, include_pad: bool) -> Any:
    pads = ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1]))
    out = _out(np.shape(x), k, s, p)
    total = np.sum(np.stack(_windows(np.pad(x, pads), k, s, out)), axis=0)
    if include_pad:
        return total / (k[0] * k[1])
    count = np.sum(np.stack(_windows(np.pad(np.ones(np.shape(x)), pads), k, s, out)), axis=0)
    return total / count


def random_case(seed: int, pool: bool = False) -> dict:
    """Random NCHW shape, kernel, stride and padding (padding <= kernel // 2 for pooling)."""
    r = np.random.default_rng(seed)
    k = (int(r.integers(1, 5)), int(r.integers(1, 5)))
    if pool:
        p = (int(r.integers(0, k[0] // 2 + 1)), int(r.integers(0, k[1] // 2 + 1)))
    else:
        p = (int(r.integers(0, 3)), int(r.integers(0, 3)))
    s = (int(r.integers(1, 4)), int(r.integers(1, 4)))
    h = int(r.integers(max(k[0] - 2 * p[0], 1), 10))
    w = int(r.integers(max(k[1] - 2 * p[1], 1), 10))
    return {
        "x": r.standard_normal((int(r.integers(1, 4)), int(r.integers(1, 4)), h, w)),
        "o": int(r.integers(1, 5)),
        "k": k,
        "s": s,
        "p": p,
        "r": r,
    }


SEEDS = range(8)


# ---------------------------------------------------------------------------------------------
# conv2d
# ---------------------------------------------------------------------------------------------
def test_conv2d_matches_the_definition_loop_by_loop() -> None:
    r = np.random.default_rng(1)
    x, w = r.standard_normal((2, 3, 5, 4)), r.standard_normal((2, 3, 3, 2))
    for s, p in [((1, 1), (0, 0)), ((2, 1), (1, 2)), ((3, 2), (2, 1))]:
        np.testing.assert_allclose(nn.ops.conv2d(x, w, stride=s, padding=p), conv_loops(x, w, s, p), atol=1e-12)
        np.testing.assert_allclose(conv_ref(x, w, s, p), conv_loops(x, w, s, p), atol=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_conv2d_forward_and_gradients_match_numpy_reference(seed: int) -> None:
    c = random_case(seed)
    x, s, p, r = c["x"], c["s"], c["p"], c["r"]
    w = r.standard_normal((c["o"], x.shape[1], *c["k"]))
    b = r.standard_normal(c["o"])
    y = nn.ops.conv2d(x, w, b, stride=s, padding=p)
    ref = conv_ref(x, w, s, p) + b[:, None, None]
    assert y.shape == ref.shape and y.dtype == np.float64
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)

    # float32 in, float32 out, to float32 accuracy
    y32 = nn.ops.conv2d(x.astype(np.float32), w.astype(np.float32), stride=s, padding=p)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, ref - b[:, None, None], rtol=1e-4, atol=1e-4)

    # gradients: ours against gradjit's gradient of the reference program
    u = r.standard_normal(y.shape)
    ours = gj.grad(lambda x, w, b: np.sum(np.tanh(nn.ops.conv2d(x, w, b, stride=s, padding=p)) * u), (0, 1, 2))
    theirs = gj.grad(lambda x, w, b: np.sum(np.tanh(conv_ref(x, w, s, p) + b[:, None, None]) * u), (0, 1, 2))
    for g1, g2 in zip(ours(x, w, b), theirs(x, w, b)):
        np.testing.assert_allclose(g1, g2, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("seed", SEEDS[:4])
def test_conv2d_second_order_matches_numpy_reference(seed: int) -> None:
    c = random_case(seed)
    x, s, p, r = c["x"], c["s"], c["p"], c["r"]
    w = r.standard_normal((c["o"], x.shape[1], *c["k"]))
    vx, vw = r.standard_normal(x.shape), r.standard_normal(w.shape)

    def hvp(conv: Any) -> Any:
        loss = lambda x, w: np.sum(np.sin(conv(x, w)))

        # d/d(x, w) of <grad(loss), v>: exercises the VJPs of conv2d_grad_input and conv2d_grad_weight
        def directional(x: Any, w: Any) -> Any:
            gx, gw = gj.grad(loss, (0, 1))(x, w)
            return np.sum(gx * vx) + np.sum(gw * vw)

        return gj.grad(directional, (0, 1))(x, w)

    ours = hvp(lambda x, w: nn.ops.conv2d(x, w, stride=s, padding=p))
    theirs = hvp(lambda x, w: conv_ref(x, w, s, p))
    for g1, g2 in zip(ours, theirs):
        np.testing.assert_allclose(g1, g2, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_conv2d_check_grads_third_order(seed: int) -> None:
    c = random_case(seed)
    x, s, p, r = c["x"], c["s"], c["p"], c["r"]
    w = r.standard_normal((c["o"], x.shape[1], *c["k"]))
    b = r.standard_normal(c["o"])
    gj.check_grads(lambda x, w, b: nn.ops.conv2d(x, w, b, stride=s, padding=p) ** 2, x, w, b, order=3)


def test_conv2d_layer_and_checks() -> None:
    r = np.random.default_rng(2)
    params = nn.init_conv2d(0, 2, 3, (3, 2))
    params["b"] = r.standard_normal(3)
    x = r.standard_normal((2, 2, 5, 6))
    y = nn.conv2d(params, x, stride=(1, 2), padding=1)
    np.testing.assert_allclose(y, conv_ref(x, params["W"], (1, 2), (1, 1)) + params["b"][:, None, None], atol=1e-12)
    gj.check_grads(lambda p, x: nn.tanh(nn.conv2d(p, x, stride=2, padding=(1, 0))), params, x, order=2)
    assert nn.conv2d({"W": params["W"]}, x).shape == (2, 3, 3, 5)  # no bias
    with pytest.raises(ValueError, match="channels"):
        nn.ops.conv2d(x, np.ones((1, 3, 2, 2)))
    with pytest.raises(ValueError, match="4-D"):
        nn.ops.conv2d(x[0], params["W"])
    with pytest.raises(ValueError, match="does not fit"):
        nn.ops.conv2d(x, np.ones((1, 2, 9, 1)))
    with pytest.raises(ValueError, match="stride"):
        nn.ops.conv2d(x, params["W"], stride=0)


def test_conv2d_odd_inputs_integer_non_contiguous_mixed_dtypes() -> None:
    r = np.random.default_rng(3)
    xi = r.integers(-3, 4, (1, 2, 5, 5))
    w = r.standard_normal((2, 2, 2, 2))
    np.testing.assert_allclose(nn.ops.conv2d(xi, w), conv_ref(xi.astype(float), w, (1, 1), (0, 0)), atol=1e-12)
    xt = r.standard_normal((5, 5, 2, 1)).transpose(3, 2, 0, 1)  # non-contiguous view
    np.testing.assert_allclose(nn.ops.conv2d(xt, w, padding=1), conv_ref(xt, w, (1, 1), (1, 1)), atol=1e-12)
    y = nn.ops.conv2d(xt.astype(np.float32), w)  # float32 x float64 -> float64, as NumPy promotes
    assert y.dtype == np.float64
    g = gj.grad(lambda w: np.sum(nn.ops.conv2d(xt.astype(np.float32), w)))(w.astype(np.float32))
    assert g.dtype == np.float32


def test_conv2d_and_its_gradients_are_single_equations() -> None:
    x, w = np.ones((1, 1, 4, 4)), np.ones((2, 1, 3, 3))
    wl = gj.make_wengert(lambda x, w: nn.ops.conv2d(x, w, padding=1))(x, w)
    assert [e.prim.name for e in wl.eqns] == ["conv2d"]
    assert "stride=(1,1) padding=(1,1)" in str(wl)
    names = [e.prim.name for e in gj.make_wengert(gj.grad(lambda x, w: np.sum(nn.ops.conv2d(x, w)), (0, 1)))(x, w).eqns]
    assert "conv2d_grad_input" in names and "conv2d_grad_weight" in names


def test_conv_and_pool_primitives_replay_on_the_reference_executor() -> None:
    from gradjit import kernels

    r = np.random.default_rng(4)
    x, w = r.standard_normal((2, 1, 6, 6)), r.standard_normal((3, 1, 3, 3))
    f = lambda x, w: nn.avg_pool2d(nn.max_pool2d(nn.ops.conv2d(x, w, padding=1), 2), 3, 1, 1)
    wl = gj.make_wengert(f)(x, w)
    x2, w2 = r.standard_normal(x.shape), r.standard_normal(w.shape)
    np.testing.assert_allclose(kernels.run(wl, x2, w2)[0], f(x2, w2), atol=1e-12)


def test_import_gradjit_does_not_import_numba() -> None:
    code = "import sys, gradjit, gradjit.nn; assert 'numba' not in sys.modules, 'numba imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_max_pool2d_matches_numpy_reference(seed: int) -> None:
    c = random_case(100 + seed, pool=True)
    x, k, s, p, r = c["x"], c["k"], c["s"], c["p"], c["r"]
    y = nn.max_pool2d(x, k, s, p)
    np.testing.assert_array_equal(y, max_pool_ref(x, k, s, p))
    np.testing.assert_array_equal(
        nn.max_pool2d(x.astype(np.float32), k, s, p), max_pool_ref(x, k, s, p).astype(np.float32)
    )
    u = r.standard_normal(y.shape)
    ours = gj.grad(lambda x: np.sum(nn.max_pool2d(x, k, s, p) ** 3 * u))(x)
    theirs = gj.grad(lambda x: np.sum(max_pool_ref(x, k, s, p) ** 3 * u))(x)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)
    # second order: the VJP of max_pool2d_grad is the gather, and the gather's VJP is the scatter
    gj.check_grads(lambda x: nn.max_pool2d(x, k, s, p) ** 3, x, order=3)


def test_max_pool2d_gradient_goes_to_the_first_maximum_like_the_forward() -> None:
    x = np.zeros((1, 1, 4, 4))
    g = gj.grad(lambda x: np.sum(nn.max_pool2d(x, 2)))(x)
    expect = np.zeros((4, 4))
    expect[::2, ::2] = 1.0
    np.testing.assert_array_equal(g[0, 0], expect)
    # overlapping windows (stride 1) that pick the same element add up
    x = np.array([[[[0.0, 1.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 0.0]]]])
    g = gj.grad(lambda x: np.sum(nn.max_pool2d(x, 2, 1)))(x)
    assert g[0, 0, 1, 1] == 4.0 and g.sum() == 4.0
    # padding never wins, even against negative values; NaN propagates
    x = -np.ones((1, 1, 2, 2))
    np.testing.assert_array_equal(nn.max_pool2d(x, 2, 1, 1), -np.ones((1, 1, 3, 3)))
    x[0, 0, 1, 1] = np.nan
    assert np.isnan(nn.max_pool2d(x, 2)[0, 0, 0, 0])


@pytest.mark.parametrize("include_pad", [True, False])
@pytest.mark.parametrize("seed", SEEDS)
def test_avg_pool2d_matches_numpy_reference(seed: int, include_pad: bool) -> None:
    c = random_case(200 + seed, pool=True)
    x, k, s, p, r = c["x"], c["k"], c["s"], c["p"], c["r"]
    y = nn.avg_pool2d(x, k, s, p, count_include_pad=include_pad)
    np.testing.assert_allclose(y, avg_pool_ref(x, k, s, p, include_pad), rtol=1e-12, atol=1e-12)
    y32 = nn.avg_pool2d(x.astype(np.float32), k, s, p, count_include_pad=include_pad)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, y, rtol=1e-5, atol=1e-5)
    u = r.standard_normal(y.shape)
    ours = gj.grad(lambda x: np.sum(np.sin(nn.avg_pool2d(x, k, s, p, include_pad)) * u))(x)
    theirs = gj.grad(lambda x: np.sum(np.sin(avg_pool_ref(x, k, s, p, include_pad)) * u))(x)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)
    gj.check_grads(lambda x: nn.avg_pool2d(x, k, s, p, include_pad) ** 2, x, order=3)


def test_pool_argument_checks() -> None:
    x = np.ones((1, 1, 4, 4))
    assert nn.max_pool2d(x, 2).shape == (1, 1, 2, 2)  # stride defaults to the kernel
    assert nn.avg_pool2d(x, (2, 1), stride=1).shape == (1, 1, 3, 4)
    with pytest.raises(ValueError, match="at most half"):
        nn.max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="4-D"):
        nn.avg_pool2d(x[0], 2)
    with pytest.raises(ValueError, match="pair"):
        nn.max_pool2d(x, (1, 2, 3))


# ---------------------------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------------------------
ACTS = {
    "tanh": (nn.tanh, np.tanh),
    "relu": (nn.relu, lambda x: np.maximum(x, 0.0)),
    "leaky_relu": (nn.leaky_relu, lambda x: np.where(x > 0, x, 0.01 * x)),
    "sigmoid": (nn.sigmoid, lambda x: 1.0 / (1.0 + np.exp(-x))),
    "softplus": (nn.softplus, lambda x: np.log1p(np.exp(x))),
    "gelu": (nn.gelu, lambda x: 0.5 * x * (1.0 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))),
    "gelu_sigmoid": (lambda x: nn.gelu(x, "sigmoid"), lambda x: x / (1.0 + np.exp(-1.702 * x))),
    "log_softmax": (nn.log_softmax, lambda x: x - np.log(np.sum(np.exp(x), -1, keepdims=True))),
    "softmax": (nn.softmax, lambda x: np.exp(x) / np.sum(np.exp(x), -1, keepdims=True)),
    "logsumexp": (nn.logsumexp, lambda x: np.log(np.sum(np.exp(x), -1))),
}


@pytest.mark.parametrize("name", sorted(ACTS))
def test_activation_values_and_second_order_gradients(name: str, rng: np.random.Generator) -> None:
    fn, ref = ACTS[name]
    x = rng.standard_normal((3, 5)) * 2.0
    np.testing.assert_allclose(fn(x), ref(x), rtol=1e-12, atol=1e-12)
    gj.check_grads(fn, x, order=2)


def test_relu_gradient_at_zero_is_zero_and_activations_are_stable() -> None:
    assert gj.grad(lambda x: nn.relu(x))(0.0) == 0.0
    big = np.array([[-1000.0, 0.0, 1000.0]])
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        np.testing.assert_allclose(nn.softmax(big), [[0.0, 0.0, 1.0]])
        np.testing.assert_allclose(nn.log_softmax(big), [[-2000.0, -1000.0, 0.0]])
        np.testing.assert_allclose(nn.sigmoid(big), [[0.0, 0.5, 1.0]])
        np.testing.assert_allclose(nn.softplus(big), [[0.0, np.log(2.0), 1000.0]])
        g = gj.grad(lambda x: np.sum(nn.log_softmax(x) * np.array([[1.0, 2.0, 3.0]])))(big)
    assert np.all(np.isfinite(g))
    assert nn.activation("gelu") is nn.gelu and nn.activation(np.sin) is np.sin
    with pytest.raises(ValueError, match="unknown activation"):
        nn.activation("swishy")


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------
def test_one_hot() -> None:
    np.testing.assert_array_equal(nn.one_hot([2, 0], 3), [[0, 0, 1], [1, 0, 0]])
    assert nn.one_hot(np.array([[1], [0]])).shape == (2, 1, 2)
    assert nn.one_hot([1], 2, dtype=np.float32).dtype == np.float32
    with pytest.raises(TypeError):
        nn.one_hot([0.5])


def test_loss_values(rng: np.random.Generator) -> None:
    logits, labels = rng.standard_normal((6, 4)), rng.integers(0, 4, 6)
    lp = logits - np.log(np.sum(np.exp(logits), -1, keepdims=True))
    per = -lp[np.arange(6), labels]
    np.testing.assert_allclose(nn.cross_entropy(logits, labels), per.mean())
    np.testing.assert_allclose(nn.cross_entropy(logits, labels, "sum"), per.sum())
    np.testing.assert_allclose(nn.cross_entropy(logits, labels, "none"), per)
    np.testing.assert_allclose(nn.nll(lp, labels), per.mean())
    np.testing.assert_allclose(nn.cross_entropy(lp, labels), per.mean())  # log_softmax is idempotent
    onehot = nn.one_hot(labels, 4)
    np.testing.assert_allclose(nn.cross_entropy(logits, onehot), per.mean())  # soft labels
    np.testing.assert_allclose(nn.log_multinomial_loss(nn.log_softmax(logits), onehot), per.sum())
    np.testing.assert_allclose(nn.log_multinomial_loss(lp, onehot, "mean"), per.mean())
    a, b = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    np.testing.assert_allclose(nn.mse(a, b), np.mean((a - b) ** 2))
    p, t = rng.uniform(0.05, 0.95, 5), rng.integers(0, 2, 5).astype(float)
    bce = -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))
    np.testing.assert_allclose(nn.binary_cross_entropy(p, t), bce)
    np.testing.assert_allclose(nn.binary_cross_entropy_with_logits(np.log(p / (1 - p)), t), bce)
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        assert np.isfinite(nn.binary_cross_entropy_with_logits(np.array([800.0, -800.0]), np.array([0.0, 1.0])))
    with pytest.raises(ValueError, match="reduction"):
        nn.mse(a, b, reduction="avg")
    with pytest.raises(TypeError, match="integer"):
        nn.nll(lp, labels.astype(float))


def test_loss_gradients_second_order(rng: np.random.Generator) -> None:
    logits, labels = rng.standard_normal((5, 3)), rng.integers(0, 3, 5)
    onehot = nn.one_hot(labels, 3)
    gj.check_grads(lambda z: nn.cross_entropy(z, labels), logits, order=2)
    gj.check_grads(lambda z, t: nn.cross_entropy(z, t), logits, nn.softmax(rng.standard_normal((5, 3))), order=2)
    gj.check_grads(lambda z: nn.nll(nn.log_softmax(z), labels, "sum"), logits, order=2)
    gj.check_grads(lambda z: nn.log_multinomial_loss(nn.log_softmax(z), onehot), logits, order=2)
    gj.check_grads(nn.mse, logits, rng.standard_normal((5, 3)), order=2)
    p, t = rng.uniform(0.1, 0.9, 4), rng.uniform(0, 1, 4)
    gj.check_grads(nn.binary_cross_entropy, p, t, order=2, eps=1e-7)
    gj.check_grads(nn.binary_cross_entropy_with_logits, rng.standard_normal(4), t, order=2)
    # the talk's loss: gradient of the log-multinomial loss is softmax - onehot
    g = gj.grad(lambda z: nn.log_multinomial_loss(nn.log_softmax(z), onehot))(logits)
    np.testing.assert_allclose(g, nn.softmax(logits) - onehot, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------
def test_linear(rng: np.random.Generator) -> None:
    params = nn.init_linear(1, 4, 3)
    params["b"] = rng.standard_normal(3)
    x = rng.standard_normal((2, 4))
    np.testing.assert_allclose(nn.linear(params, x), x @ params["W"] + params["b"])
    np.testing.assert_allclose(nn.linear({"W": params["W"]}, x), x @ params["W"])
    gj.check_grads(lambda p, x: nn.tanh(nn.linear(p, x)), params, x, order=2)


def test_dropout_is_deterministic_given_the_key(rng: np.random.Generator) -> None:
    x = rng.standard_normal((50, 40)) + 3.0
    y1, y2 = nn.dropout(7, x, 0.3), nn.dropout(7, x, 0.3)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(y1, nn.dropout(8, x, 0.3))
    kept = y1 != 0
    assert 0.6 < kept.mean() < 0.8
    np.testing.assert_allclose(y1[kept], x[kept] / 0.7)
    assert nn.dropout(7, x, 0.3, train=False) is x and nn.dropout(7, x, 0.0) is x
    assert np.all(nn.dropout(7, x, 1.0) == 0)
    gen = np.random.default_rng(5)
    assert not np.array_equal(nn.dropout(gen, x, 0.5), nn.dropout(gen, x, 0.5))  # a generator advances
    assert nn.dropout(1, x.astype(np.float32), 0.5).dtype == np.float32
    gj.check_grads(lambda x: nn.dropout(3, x, 0.5) ** 2, x[:4, :5], order=2)
    g = gj.grad(lambda x: np.sum(nn.dropout(3, x, 0.5)))(x)
    np.testing.assert_allclose(g, (nn.dropout(3, x, 0.5) != 0) / 0.5)
    with pytest.raises(ValueError):
        nn.dropout(0, x, 1.5)
    with pytest.raises(TypeError, match="random key"):
        nn.dropout("seed", x, 0.5)


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 2, 2)])
def test_batch_norm(shape: tuple, rng: np.random.Generator) -> None:
    params, state = nn.init_batch_norm(3)
    params = {"gamma": rng.uniform(0.5, 2, 3), "beta": rng.standard_normal(3)}
    x = rng.standard_normal(shape) * 3 + 1
    axes = (0,) + tuple(range(2, len(shape)))
    cs = (1, 3) + (1,) * (len(shape) - 2)
    mean, var = x.mean(axes), x.var(axes)
    y, new = nn.batch_norm(params, x, state, momentum=0.25)
    expect = (x - mean.reshape(cs)) / np.sqrt(var.reshape(cs) + 1e-5) * params["gamma"].reshape(cs)
    np.testing.assert_allclose(y, expect + params["beta"].reshape(cs), atol=1e-12)
    n = x.size // 3
    np.testing.assert_allclose(new["mean"], 0.25 * mean)
    np.testing.assert_allclose(new["var"], 0.75 + 0.25 * var * n / (n - 1))
    ye, same = nn.batch_norm(params, x, new, train=False)
    assert same is new
    np.testing.assert_allclose(ye, (x - new["mean"].reshape(cs)) / np.sqrt(new["var"].reshape(cs) + 1e-5)
                               * params["gamma"].reshape(cs) + params["beta"].reshape(cs), atol=1e-12)  # fmt: skip
    gj.check_grads(lambda p, x: nn.batch_norm(p, x)[0] ** 2, params, x, order=2)
    gj.check_grads(lambda p, x: nn.batch_norm(p, x, new, train=False)[0] ** 2, params, x, order=2)
    gj.check_grads(lambda x: nn.batch_norm(None, x)[0] ** 3, x, order=2)
    # the state update inside grad: no gradient flows into it, and it comes back as plain arrays
    g, aux = gj.grad(lambda p: (np.sum(nn.batch_norm(p, x, state)[0] ** 2), nn.batch_norm(p, x, state)[1]),
                     has_aux=True)(params)  # fmt: skip
    assert isinstance(aux["mean"], np.ndarray)
    np.testing.assert_allclose(aux["mean"], new["mean"] / 0.25 * 0.1)
    with pytest.raises(ValueError, match="state"):
        nn.batch_norm(params, x, train=False)


def test_layer_norm(rng: np.random.Generator) -> None:
    params = {"gamma": rng.uniform(0.5, 2, 4), "beta": rng.standard_normal(4)}
    x = rng.standard_normal((3, 4)) * 2
    expect = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(nn.layer_norm(params, x), expect * params["gamma"] + params["beta"], atol=1e-12)
    np.testing.assert_allclose(nn.layer_norm(None, x), expect, atol=1e-12)
    assert set(nn.init_layer_norm(4)) == {"gamma", "beta"}
    gj.check_grads(lambda p, x: nn.layer_norm(p, x) ** 2, params, x, order=2)


def test_embedding(rng: np.random.Generator) -> None:
    params = nn.init_embedding(0, 5, 3)
    ids = np.array([[0, 4], [4, 2]])
    np.testing.assert_array_equal(nn.embedding(params, ids), params["W"][ids])
    g = gj.grad(lambda p: np.sum(nn.embedding(p, ids)))(params)["W"]
    np.testing.assert_array_equal(g[:, 0], [1, 0, 1, 0, 2])  # repeated ids accumulate
    gj.check_grads(lambda p: np.sin(nn.embedding(p, ids)), params, order=2)
    with pytest.raises(TypeError):
        nn.embedding(params, np.array([0.0]))


def _sig(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def test_recurrent_cells(rng: np.random.Generator) -> None:
    x, h, c = rng.standard_normal((2, 3)), rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    p = nn.init_lstm_cell(0, 3, 4)
    p["b"] = p["b"] + 0.1 * rng.standard_normal(16)
    z = x @ p["Wx"] + h @ p["Wh"] + p["b"]
    c2 = _sig(z[:, 4:8]) * c + _sig(z[:, :4]) * np.tanh(z[:, 8:12])
    h2, c2_ = nn.lstm_cell(p, x, (h, c))
    np.testing.assert_allclose(c2_, c2, atol=1e-12)
    np.testing.assert_allclose(h2, _sig(z[:, 12:]) * np.tanh(c2), atol=1e-12)
    np.testing.assert_allclose(p["b"][4:8] - 0.1 * 0, p["b"][4:8])
    assert np.allclose(nn.init_lstm_cell(0, 3, 4)["b"][4:8], 1.0)  # forget-gate bias
    gj.check_grads(lambda p, x, h, c: nn.lstm_cell(p, x, (h, c)), p, x, h, c, order=2)

    q = nn.init_gru_cell(1, 3, 4)
    q["bh"] = rng.standard_normal(12)
    gx, gh = x @ q["Wx"] + q["b"], h @ q["Wh"] + q["bh"]
    r, zz = _sig(gx[:, :4] + gh[:, :4]), _sig(gx[:, 4:8] + gh[:, 4:8])
    n = np.tanh(gx[:, 8:] + r * gh[:, 8:])
    np.testing.assert_allclose(nn.gru_cell(q, x, h), (1 - zz) * n + zz * h, atol=1e-12)
    gj.check_grads(nn.gru_cell, q, x, h, order=2)

    e = nn.init_rnn_cell(2, 3, 4)
    np.testing.assert_allclose(nn.rnn_cell(e, x, h), np.tanh(x @ e["Wx"] + h @ e["Wh"] + e["b"]), atol=1e-12)
    gj.check_grads(nn.rnn_cell, e, x, h, order=2)


# ---------------------------------------------------------------------------------------------
# Initializers
# ---------------------------------------------------------------------------------------------
def test_initializers() -> None:
    for name in ["glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_normal", "orthogonal"]:
        init = getattr(nninit, name)
        a, b = init(3, (30, 20)), init(3, (30, 20))
        np.testing.assert_array_equal(a, b)  # an int key is deterministic
        assert a.shape == (30, 20) and a.dtype == np.float64
        assert init(np.random.default_rng(0), (2, 3), np.float32).dtype == np.float32
    assert nninit.xavier_uniform is nninit.glorot_uniform and nninit.kaiming_normal is nninit.he_normal
    np.testing.assert_allclose(nninit.glorot_uniform(0, (300, 200)).var(), 2 / 500, rtol=0.05)
    np.testing.assert_allclose(nninit.glorot_normal(0, (300, 200)).var(), 2 / 500, rtol=0.05)
    np.testing.assert_allclose(nninit.he_normal(0, (16, 8, 3, 3)).var(), 2 / 72, rtol=0.1)
    np.testing.assert_allclose(nninit.he_uniform(0, (400, 100)).var(), 2 / 400, rtol=0.05)
    assert nninit.fans((16, 8, 3, 3)) == (72, 144) and nninit.fans((5, 7)) == (5, 7)
    q = nninit.orthogonal(0, (6, 4))
    np.testing.assert_allclose(q.T @ q, np.eye(4), atol=1e-12)
    q = nninit.orthogonal(0, (4, 6))
    np.testing.assert_allclose(q @ q.T, np.eye(4), atol=1e-12)
    assert np.all(nninit.zeros(0, 3) == 0) and np.all(nninit.ones(0, (2, 2)) == 1)
    assert nn.split_key(5, 3) == nn.split_key(5, 3) and len(set(nn.split_key(5, 3))) == 3


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------
def test_mlp_model(rng: np.random.Generator) -> None:
    fn, params = nn.mlp([4, 5, 3], activation="tanh")
    x, y = rng.standard_normal((6, 4)), rng.integers(0, 3, 6)
    out = fn(params, x)
    assert out.shape == (6, 3)
    np.testing.assert_allclose(np.exp(out).sum(1), 1.0)  # log-probabilities
    h = np.tanh(x @ params[0]["W"] + params[0]["b"]) @ params[1]["W"] + params[1]["b"]
    np.testing.assert_allclose(out, nn.log_softmax(h), atol=1e-12)
    reg_fn, reg_params = nn.mlp([4, 5, 2], activation=nn.relu, classifier=False, key=3)
    assert reg_fn(reg_params, x).shape == (6, 2)
    gj.check_grads(lambda p: nn.nll(fn(p, x), y), params, order=2)
    with pytest.raises(ValueError):
        nn.mlp([4])


def test_cnn_model(rng: np.random.Generator) -> None:
    fn, params = nn.cnn(in_shape=(1, 8, 8), channels=(3,), hidden=(5,))
    x, y = rng.standard_normal((4, 64)), rng.integers(0, 10, 4)
    out = fn(params, x)
    assert out.shape == (4, 10)
    np.testing.assert_allclose(out, fn(params, x.reshape(4, 1, 8, 8)))
    assert params["conv"][0]["W"].shape == (3, 1, 3, 3) and params["fc"][0]["W"].shape == (48, 5)
    gj.check_grads(lambda p: nn.nll(fn(p, x), y), params, order=1)
    wl = gj.make_wengert(lambda p: nn.nll(fn(p, x), y))(params)
    assert [e.prim.name for e in wl.eqns].count("conv2d") == 1


@pytest.mark.parametrize("cell", ["tanh", "lstm", "gru"])
def test_rnn_models(cell: str, rng: np.random.Generator) -> None:
    fn, params = nn.rnn(3, 4, 2, cell=cell, classifier=True)
    xs, y = rng.standard_normal((2, 5, 3)), rng.integers(0, 2, 2)
    out = fn(params, xs)
    assert out.shape == (2, 2)
    gj.check_grads(lambda p: nn.nll(fn(p, xs), y), params, order=1)
    gj.check_grads(lambda xs: fn(params, xs), xs, order=1)
    if cell == "lstm":
        np.testing.assert_allclose(nn.lstm(3, 4, 2, classifier=True)[0](params, xs), out)
    if cell == "gru":
        np.testing.assert_allclose(nn.gru(3, 4, 2, classifier=True)[0](params, xs), out)
    with pytest.raises(ValueError):
        fn(params, xs[0])
