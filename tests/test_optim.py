"""``gradjit.optim``: the optimizers, schedules and ``minimize``.

- Convergence: every optimizer minimizes a convex quadratic over a pytree and the 2-D Rosenbrock
  function to tolerance (analytic gradients, so these runs measure the optimizers alone).
- Update formulas: single steps against hand-computed numbers, and several steps against a
  transcription of PyTorch's ``torch.optim`` pseudo-code (the definition ``gradjit.optim`` follows;
  Optax's sgd/adam/adamw are the same updates).
- Pytrees: structure, leaf types and dtypes preserved (float32 stays float32), ``None`` gradients
  leave leaves alone, inputs are not mutated; traced learning rates (a hypergradient through
  unrolled steps) against finite differences.
- ``minimize``: history, the kinds of ``data``, callbacks, L-BFGS through ``value_and_grad``, the
  NaN/Inf stop (loss, gradient leaf, update) with the last good params on the error, and the
  progress bar (quiet when not interactive or in CI, shown when asked).
"""

from __future__ import annotations

import collections
import io
import math

import numpy as np
import pytest

import gradjit as gj
from gradjit import optim
from gradjit.pytree import flatten

Pair = collections.namedtuple("Pair", ["u", "v"])


def run(opt: optim.Optimizer, grad_fn, params, steps: int, loss_fn=None):
    state = opt.init(params)
    for _ in range(steps):
        g = grad_fn(params)
        if opt.wants_loss:
            params, state = opt.update(g, state, params, value=loss_fn(params), loss_fn=loss_fn)
        else:
            params, state = opt.update(g, state, params)
    return params


# ---------------------------------------------------------------------------------------------
# convergence
# ---------------------------------------------------------------------------------------------
# A convex quadratic over a dict pytree, curvatures 1..8 (condition number 8), minimum at C.
H = {"a": np.array([1.0, 2.0, 4.0]), "b": np.array([[8.0, 3.0], [1.5, 5.0]])}
C = {"a": np.array([0.5, -1.0, 2.0]), "b": np.array([[1.0, -2.0], [0.25, 3.0]])}


def quad(p):
    return 0.5 * sum(np.sum(H[k] * (p[k] - C[k]) ** 2) for k in H)


def quad_grad(p):
    return {k: H[k] * (p[k] - C[k]) for k in H}


def rosen(x):
    return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


def rosen_grad(x):
    return np.array([-2 * (1 - x[0]) - 400 * x[0] * (x[1] - x[0] ** 2), 200 * (x[1] - x[0] ** 2)])


QUADRATIC = {
    "sgd": (optim.sgd(0.1), 300),
    "sgd-momentum": (optim.sgd(0.05, momentum=0.9), 300),
    "sgd-nesterov": (optim.sgd(0.05, momentum=0.9, nesterov=True), 300),
    "adam": (optim.adam(optim.cosine_decay(0.1, 1000)), 1000),
    "adamw": (optim.adamw(optim.cosine_decay(0.1, 1000), weight_decay=0.0), 1000),
    "rmsprop": (optim.rmsprop(optim.cosine_decay(0.01, 2000)), 2000),
    "adagrad": (optim.adagrad(0.5), 1000),
    "lbfgs": (optim.lbfgs(), 20),
    "lbfgs-fixed-step": (optim.lbfgs(line_search=None), 30),
}

ROSENBROCK = {
    "sgd-momentum": (optim.sgd(1e-3, momentum=0.9), 3000),
    "sgd-nesterov": (optim.sgd(1e-3, momentum=0.9, nesterov=True), 3000),
    "adam": (optim.adam(optim.cosine_decay(0.05, 5000)), 5000),
    "adamw": (optim.adamw(optim.cosine_decay(0.05, 5000), weight_decay=1e-5), 5000),
    "rmsprop": (optim.rmsprop(optim.cosine_decay(3e-3, 8000)), 8000),
    "rmsprop-momentum-centered": (optim.rmsprop(optim.cosine_decay(1e-3, 3000), momentum=0.9, centered=True), 3000),
    "adagrad": (optim.adagrad(0.5), 12000),
    "lbfgs": (optim.lbfgs(), 60),
    "lbfgs-fixed-step": (optim.lbfgs(line_search=None), 100),
}


@pytest.mark.parametrize("name", list(QUADRATIC))
def test_minimizes_convex_quadratic(name: str) -> None:
    opt, steps = QUADRATIC[name]
    p0 = {"a": np.zeros(3), "b": np.zeros((2, 2))}
    p = run(opt, quad_grad, p0, steps, quad)
    for k in C:
        np.testing.assert_allclose(p[k], C[k], atol=1e-4, err_msg=name)
    assert quad(p) < 1e-8


@pytest.mark.parametrize("name", list(ROSENBROCK))
def test_minimizes_rosenbrock(name: str) -> None:
    opt, steps = ROSENBROCK[name]
    x = run(opt, rosen_grad, np.array([-1.2, 1.0]), steps, rosen)
    np.testing.assert_allclose(x, [1.0, 1.0], atol=1e-3, err_msg=name)


# ---------------------------------------------------------------------------------------------
# update formulas
# ---------------------------------------------------------------------------------------------
def one_step(opt: optim.Optimizer, p: float, g: float) -> float:
    new, _ = opt.update(g, opt.init(p), p)
    assert type(new) is float
    return new


def test_single_steps_by_hand() -> None:
    # p = 1, g = 2 (then g = 1 for a second step), numbers worked out from the formulas by hand.
    assert one_step(optim.sgd(0.1), 1.0, 2.0) == pytest.approx(0.8, abs=1e-15)
    assert one_step(optim.sgd(0.1, weight_decay=0.5), 1.0, 2.0) == pytest.approx(1 - 0.1 * 2.5, abs=1e-15)
    assert one_step(optim.sgd(0.1, momentum=0.9, nesterov=True), 1.0, 2.0) == pytest.approx(1 - 0.1 * 3.8)
    opt = optim.sgd(0.1, momentum=0.9)
    p, s = opt.update(2.0, opt.init(1.0), 1.0)
    p, s = opt.update(1.0, s, p)
    assert p == pytest.approx(0.8 - 0.1 * (0.9 * 2 + 1)) and s.momentum == pytest.approx(2.8)
    # Adam's first step is lr * g / (|g| + eps') whatever the betas: m_hat = g, v_hat = g^2.
    assert one_step(optim.adam(0.1), 1.0, 2.0) == pytest.approx(1 - 0.2 / (2 + 1e-8), abs=1e-15)
    assert one_step(optim.adam(0.1, b1=0.5, b2=0.7), 1.0, -3.0) == pytest.approx(1 + 0.3 / (3 + 1e-8), abs=1e-15)
    assert one_step(optim.adam(0.1, weight_decay=0.5), 1.0, 2.0) == pytest.approx(0.9, abs=1e-8)  # L2: g -> 2.5
    assert one_step(optim.adamw(0.1, weight_decay=0.5), 1.0, 2.0) == pytest.approx(0.95 - 0.1, abs=1e-8)
    assert one_step(optim.rmsprop(0.01), 1.0, 2.0) == pytest.approx(1 - 0.01 * 2 / (0.2 + 1e-8), abs=1e-15)
    assert one_step(optim.adagrad(0.1), 1.0, 2.0) == pytest.approx(1 - 0.1 * 2 / (2 + 1e-10), abs=1e-15)
    assert one_step(optim.adagrad(0.1, initial_accumulator_value=5.0), 1.0, 2.0) == pytest.approx(1 - 0.2 / 3)


def torch_reference(kind: str, hp: dict, p: np.ndarray, grads: list[np.ndarray]) -> np.ndarray:
    """The algorithm boxes of PyTorch's torch.optim docs (SGD, Adam, AdamW, RMSprop, Adagrad), transcribed."""
    p = p.copy()
    state: dict = {}
    for t, g in enumerate(grads, start=1):
        g = g.copy()
        lr, wd = hp.get("lr"), hp.get("weight_decay", 0.0)
        if kind == "sgd":
            mu = hp.get("momentum", 0.0)
            if wd:
                g += wd * p
            if mu:
                state["b"] = g.copy() if t == 1 else mu * state["b"] + g  # dampening = 0
                g = g + mu * state["b"] if hp.get("nesterov") else state["b"]
            p -= lr * g
        elif kind in ("adam", "adamw"):
            b1, b2, eps = hp.get("b1", 0.9), hp.get("b2", 0.999), hp.get("eps", 1e-8)
            if kind == "adamw":
                p *= 1 - lr * wd
            elif wd:
                g += wd * p
            state["m"] = b1 * state.get("m", 0.0) + (1 - b1) * g
            state["v"] = b2 * state.get("v", 0.0) + (1 - b2) * g**2
            m_hat, v_hat = state["m"] / (1 - b1**t), state["v"] / (1 - b2**t)
            p -= lr * m_hat / (np.sqrt(v_hat) + eps)
        elif kind == "rmsprop":
            alpha, eps, mu = hp.get("alpha", 0.99), hp.get("eps", 1e-8), hp.get("momentum", 0.0)
            if wd:
                g += wd * p
            state["v"] = alpha * state.get("v", 0.0) + (1 - alpha) * g**2
            v_tilde = state["v"]
            if hp.get("centered"):
                state["g"] = alpha * state.get("g", 0.0) + (1 - alpha) * g
                v_tilde = v_tilde - state["g"] ** 2
            if mu:
                state["b"] = mu * state.get("b", 0.0) + g / (np.sqrt(v_tilde) + eps)
                p -= lr * state["b"]
            else:
                p -= lr * g / (np.sqrt(v_tilde) + eps)
        elif kind == "adagrad":
            eps, decay = hp.get("eps", 1e-10), hp.get("lr_decay", 0.0)
            clr = lr / (1 + (t - 1) * decay)
            if wd:
                g += wd * p
            state["s"] = state.get("s", hp.get("initial_accumulator_value", 0.0)) + g**2
            p -= clr * g / (np.sqrt(state["s"]) + eps)
    return p


REFERENCE_CASES = [
    ("sgd", {"lr": 0.1}),
    ("sgd", {"lr": 0.1, "weight_decay": 0.3}),
    ("sgd", {"lr": 0.05, "momentum": 0.9}),
    ("sgd", {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.1}),
    ("adam", {"lr": 0.01}),
    ("adam", {"lr": 0.02, "b1": 0.8, "b2": 0.95, "eps": 1e-3, "weight_decay": 0.2}),
    ("adamw", {"lr": 0.01, "weight_decay": 0.1}),
    ("rmsprop", {"lr": 0.01}),
    ("rmsprop", {"lr": 0.01, "alpha": 0.9, "momentum": 0.5, "centered": True, "weight_decay": 0.1}),
    ("adagrad", {"lr": 0.1}),
    ("adagrad", {"lr": 0.1, "lr_decay": 0.05, "weight_decay": 0.1, "initial_accumulator_value": 0.3}),
]


@pytest.mark.parametrize("kind,hp", REFERENCE_CASES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(REFERENCE_CASES)])
def test_steps_match_pytorch_definition(kind: str, hp: dict, rng: np.random.Generator) -> None:
    p0 = rng.normal(size=(3, 4))
    grads = [rng.normal(size=(3, 4)) for _ in range(4)]
    opt = getattr(optim, kind)(**hp)
    p, state = p0, opt.init(p0)
    for g in grads:
        p, state = opt.update(g, state, p)
    np.testing.assert_allclose(p, torch_reference(kind, hp, p0, grads), rtol=1e-12, atol=1e-14)


def test_schedules() -> None:
    s = optim.exponential_decay(1.0, 0.5, every=2)
    assert [s(k) for k in (0, 1, 2, 4)] == [1.0, 0.5**0.5, 0.5, 0.25]
    s = optim.exponential_decay(1.0, 0.5, every=2, staircase=True)
    assert [s(k) for k in (0, 1, 2, 3)] == [1.0, 1.0, 0.5, 0.5]
    s = optim.cosine_decay(1.0, 10, final=0.1)
    assert s(0) == 1.0 and s(5) == pytest.approx(0.55) and s(10) == pytest.approx(0.1) and s(50) == pytest.approx(0.1)
    s = optim.linear_warmup(optim.exponential_decay(1.0, 0.5), 4)
    assert [s(k) for k in (0, 1, 3)] == [0.25, 0.5 * 0.5, 0.125]
    # The optimizer asks the schedule for step 0 at its first update, then 1, 2, ...
    asked = []
    opt = optim.sgd(lambda k: asked.append(k) or 0.1 * (k + 1))
    p, s = 1.0, opt.init(1.0)
    for _ in range(3):
        p, s = opt.update(1.0, s, p)
    assert asked == [0, 1, 2] and p == pytest.approx(1 - 0.1 - 0.2 - 0.3)


# ---------------------------------------------------------------------------------------------
# pytrees, types, dtypes, no mutation
# ---------------------------------------------------------------------------------------------
ALL = {
    "sgd": optim.sgd(0.1, momentum=0.9, nesterov=True, weight_decay=1e-2),
    "adam": optim.adam(0.1, weight_decay=1e-2),
    "adamw": optim.adamw(optim.exponential_decay(0.1, 0.9)),
    "rmsprop": optim.rmsprop(0.1, momentum=0.5, centered=True, weight_decay=1e-2),
    "adagrad": optim.adagrad(np.float64(0.1), lr_decay=0.1, weight_decay=1e-2),
    "lbfgs": optim.lbfgs(),
    "lbfgs-fixed-step": optim.lbfgs(line_search=None, lr=0.5),
}


def tree_params() -> dict:
    return {
        "W1": np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3),
        "b": np.float32(0.5),
        "scale": 2.0,
        "steps": np.arange(3),  # an integer leaf: no gradient, never touched
        "pair": Pair(np.ones(2, np.float16), [np.full((1, 2), 3.0)]),
        "name": "mlp",
    }


def tree_loss(p):
    return (
        np.sum(p["W1"] ** 2) + p["b"] ** 2 + (p["scale"] - 1.0) ** 2
        + np.sum(p["pair"].u ** 2) + np.sum(p["pair"].v[0] ** 2)
    )  # fmt: skip


def leaf_kinds(tree) -> list:
    leaves, td = flatten(tree)
    return [td] + [(type(x), getattr(x, "dtype", None), np.shape(x)) for x in leaves]


@pytest.mark.parametrize("name", list(ALL))
def test_pytree_structure_types_and_dtypes_preserved(name: str) -> None:
    opt = ALL[name]
    params = tree_params()
    before = [np.array(x, copy=True) if isinstance(x, np.ndarray) else x for x in flatten(params)[0]]
    state = opt.init(params)
    flatten(state)  # a pytree
    loss_fn = lambda p: float(tree_loss(p))
    p = params
    for _ in range(3):
        value, grads = gj.value_and_grad(tree_loss)(p)
        assert grads["steps"] is None and grads["name"] is None
        new, state = opt.update(grads, state, p, value=value, loss_fn=loss_fn)
        assert leaf_kinds(new) == leaf_kinds(params)
        assert tree_loss(new) < tree_loss(p) or tree_loss(new) == 0.0
        p = new
    assert p["steps"] is params["steps"] and p["name"] == "mlp"
    for x, b in zip(flatten(params)[0], before):  # nothing was changed in place
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, b)
        else:
            assert x == b
    if isinstance(state, (optim.AdamState, optim.SGDState, optim.RMSpropState, optim.AdagradState)):
        # a slot is a tree like params: float leaves of the same type and dtype, None elsewhere
        expected = leaf_kinds({k: (v if k not in ("steps", "name") else None) for k, v in params.items()})
        assert leaf_kinds(state[1]) == expected


def test_state_leaves_keep_dtype() -> None:
    opt = optim.adam(0.1)
    p = {"w": np.ones(3, np.float32)}
    s = opt.init(p)
    p, s = opt.update({"w": np.ones(3, np.float32)}, s, p)
    assert s.mu["w"].dtype == np.float32 and s.nu["w"].dtype == np.float32 and p["w"].dtype == np.float32


def test_structure_mismatch_and_bad_arguments() -> None:
    opt = optim.adam()
    p = {"a": np.ones(2), "b": np.ones(2)}
    with pytest.raises(ValueError, match="gradient has structure"):
        opt.update({"a": np.ones(2)}, opt.init(p), p)
    with pytest.raises(ValueError, match="nesterov"):
        optim.sgd(0.1, nesterov=True)
    with pytest.raises(ValueError, match="line_search"):
        optim.lbfgs(line_search="wolfe")
    lb = optim.lbfgs()
    with pytest.raises(ValueError, match="loss_fn"):
        lb.update(p, lb.init(p), p)
    assert repr(optim.sgd(0.1, momentum=0.9)) == "sgd(lr=0.1, momentum=0.9, nesterov=False, weight_decay=0.0)"


def test_lbfgs_history_is_bounded_and_value_is_optional() -> None:
    opt = optim.lbfgs(history_size=3)
    p, s = np.array([-1.2, 1.0]), opt.init(np.zeros(2))
    calls = []
    for _ in range(8):
        p, s = opt.update(rosen_grad(p), s, p, loss_fn=lambda x: calls.append(1) or rosen(x))
    assert 0 < len(s.s) == len(s.y) <= 3 and rosen(p) < rosen(np.array([-1.2, 1.0]))
    assert len(calls) >= 16  # f(x) itself is evaluated when no value is passed, plus the trials


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop"])
def test_hypergradient_through_unrolled_steps(name: str) -> None:
    """d(validation loss)/d(lr) through 5 traced updates, against central finite differences."""
    make = {
        "sgd": lambda lr: optim.sgd(lr, momentum=0.9, nesterov=True),
        "adam": lambda lr: optim.adam(lr),
        "adamw": lambda lr: optim.adamw(lr, weight_decay=0.1),
        "rmsprop": lambda lr: optim.rmsprop(lr, momentum=0.5),
    }[name]
    train = lambda p: np.sum((p["w"] - np.array([1.0, -2.0])) ** 2) + np.sum(p["w"] ** 4)
    val = lambda p: np.sum((p["w"] - np.array([0.8, -1.5])) ** 2)

    def unrolled(lr):
        opt = make(lr)
        p = {"w": np.array([0.3, 0.2])}
        s = opt.init(p)
        for _ in range(5):
            p, s = opt.update(gj.grad(train)(p), s, p)
        return val(p)

    lr, h = 0.05, 1e-6
    fd = (unrolled(lr + h) - unrolled(lr - h)) / (2 * h)
    assert gj.grad(unrolled)(lr) == pytest.approx(fd, rel=1e-5, abs=1e-8)


# ---------------------------------------------------------------------------------------------
# minimize
# ---------------------------------------------------------------------------------------------
X = np.linspace(-1, 1, 20)
Y = 3.0 * X - 0.5


def mse(p, x, y):
    return np.mean((p["w"] * x + p["b"] - y) ** 2)


def test_minimize_full_batch_history_and_result() -> None:
    res = optim.minimize(mse, {"w": 0.0, "b": 0.0}, (X, Y), optim.adam(0.1), steps=300, progress=False)
    assert res.steps == 300 and res.history.shape == (300,) and res.history.dtype == np.float64
    assert res.history[0] == pytest.approx(mse({"w": 0.0, "b": 0.0}, X, Y))
    assert res.history[-1] < 1e-4 and res.history[-1] < res.history[0]
    params, history = res  # unpacks as a pair
    assert params["w"] == pytest.approx(3.0, abs=1e-2) and history is res.history
    assert isinstance(res.state, optim.AdamState) and res.state.count == 300
    assert "300 steps" in repr(res)
    more = optim.minimize(mse, params, (X, Y), optim.adam(0.1), steps=5, state=res.state, progress=False)
    assert more.state.count == 305


def test_minimize_data_kinds() -> None:
    p0 = {"w": 0.0, "b": 0.0}
    batches = [(X[:10], Y[:10]), (X[10:], Y[10:])]
    seen = []
    res = optim.minimize(mse, p0, batches, optim.sgd(0.1), steps=5, progress=False)  # a list: cycled (epochs)
    assert res.steps == 5
    res = optim.minimize(
        mse, p0, lambda k: seen.append(k) or batches[k % 2], optim.sgd(0.1), steps=4, progress=False
    )  # a callable: data(step)
    assert seen == [0, 1, 2, 3] and res.steps == 4
    with pytest.warns(UserWarning, match="data ran out after 3 of 10 steps"):
        res = optim.minimize(mse, p0, (b for b in batches + batches[:1]), optim.sgd(0.1), steps=10, progress=False)
    assert res.steps == 3 and len(res.history) == 3
    res = optim.minimize(lambda p: np.sum((p - 2.0) ** 2), np.zeros(3), None, optim.sgd(0.25), 20, progress=False)
    np.testing.assert_allclose(res.params, 2.0, atol=1e-5)
    res = optim.minimize(
        lambda p, x: np.sum((p - x) ** 2), np.zeros(3), np.ones(3), optim.sgd(0.25), 20, progress=False
    )
    np.testing.assert_allclose(res.params, 1.0, atol=1e-5)  # a single array is one argument, passed whole
    stop = optim.minimize(mse, p0, (X, Y), optim.sgd(0.1), steps=50, progress=False, callback=lambda k, p, v: k == 6)
    assert stop.steps == 7


def test_minimize_lbfgs_rosenbrock_through_value_and_grad() -> None:
    res = optim.minimize(rosen, np.array([-1.2, 1.0]), None, optim.lbfgs(), steps=60, progress=False)
    np.testing.assert_allclose(res.params, [1.0, 1.0], atol=1e-6)
    assert res.history[-1] < res.history[0]


def test_minimize_float32_params_stay_float32() -> None:
    p0 = {"w": np.zeros(1, np.float32), "b": np.float32(0.0)}
    x, y = X.astype(np.float32), Y.astype(np.float32)
    res = optim.minimize(mse, p0, (x, y), optim.adamw(optim.cosine_decay(0.1, 50)), steps=50, progress=False)
    assert res.params["w"].dtype == np.float32 and type(res.params["b"]) is np.float32


def test_nan_loss_stops_with_step_and_last_good_params() -> None:
    scale = lambda k: (np.inf if k == 3 else 1.0,)
    loss = lambda p, s: s * np.sum((p["w"] - 1.0) ** 2)
    seen = []
    with pytest.raises(optim.NonFiniteStepError) as info:
        optim.minimize(
            loss, {"w": np.zeros(2)}, scale, optim.sgd(0.1), steps=10, progress=False,
            callback=lambda k, p, v: seen.append(p),
        )  # fmt: skip
    err = info.value
    assert isinstance(err, gj.NonFiniteError) and isinstance(err, FloatingPointError)
    assert err.sweep == "forward" and err.eqn is None
    assert err.step == 3 and err.source == "loss" and err.path is None and math.isinf(err.value)
    assert len(err.history) == 3 and np.all(np.isfinite(err.history))
    # params of step 2 (loss and gradient finite there), and the params step 3 failed at
    np.testing.assert_array_equal(err.params["w"], seen[1]["w"])
    np.testing.assert_array_equal(err.failed_params["w"], seen[2]["w"])
    assert err.state.count == 2
    msg = str(err)
    assert "the loss became inf at step 3" in msg and "test_optim.py" in msg and "err.params" in msg


def test_nan_gradient_names_the_leaf() -> None:
    # d/dw sqrt(w^2 + c) = w / sqrt(w^2 + c) is 0/0 at w = 0 once c = 0 (step 2); the loss stays finite.
    loss = lambda p, c: np.sum(np.sqrt(p["W1"] ** 2 + c)) + np.sum(p["a"] ** 2)
    data = lambda k: (0.0 if k == 2 else 1.0,)
    params = {"a": np.ones(2), "W1": np.array([0.0, 1.0, 2.0])}
    with np.errstate(all="ignore"), pytest.raises(optim.NonFiniteStepError) as info:
        optim.minimize(loss, params, data, optim.adam(0.01), steps=10, progress=False)
    err = info.value
    assert err.step == 2 and err.source == "gradient" and err.path == "params['W1']" and math.isfinite(err.value)
    assert "the gradient of params['W1'] became non-finite at step 2" in str(err) and "1 NaN of 3 entries" in str(err)
    assert err.params is not None and err.state.count == 1
    # at the very first step there are no good params yet
    with np.errstate(all="ignore"), pytest.raises(optim.NonFiniteStepError) as info:
        optim.minimize(
            lambda p: np.sum(np.sqrt(p[1])) + np.sum(p[0]), [np.ones(2), np.array([0.0, 1.0])], None, optim.sgd(0.1), 5
        )
    assert info.value.step == 0 and info.value.path == "params[1]" and info.value.params is None
    assert "1 Inf of 2 entries" in str(info.value)


def test_nonfinite_update_is_reported() -> None:
    lr = lambda k: np.nan if k == 1 else 0.1
    with pytest.raises(optim.NonFiniteStepError) as info:
        optim.minimize(lambda p: (p.u - 1.0) ** 2 + p.v**2, Pair(0.0, 1.0), None, optim.sgd(lr), 5, progress=False)
    err = info.value
    assert err.step == 1 and err.source == "update" and err.path == "params.u"
    assert err.params.u == pytest.approx(0.2) and math.isnan(err.failed_params.u)
    assert "the optimizer's update made params.u non-finite at step 1" in str(err) and err.sweep == "update"


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_quiet_unless_interactive(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    pytest.importorskip("tqdm")
    args = (mse, {"w": 0.0, "b": 0.0}, (X, Y), optim.sgd(0.1), 5)
    optim.minimize(*args)  # stderr captured by pytest: not a terminal
    assert capsys.readouterr().err == ""
    optim.minimize(*args, progress=True)
    err = capsys.readouterr().err
    assert "minimize" in err and "loss=" in err and "5/5" in err

    term = FakeTerminal()
    monkeypatch.setattr("sys.stderr", term)
    monkeypatch.delenv("CI", raising=False)
    optim.minimize(*args, desc="fit")
    assert "fit" in term.getvalue() and "loss=" in term.getvalue()
    for ci in ("true", "1"):
        monkeypatch.setenv("CI", ci)
        term.seek(0), term.truncate()
        optim.minimize(*args)
        assert term.getvalue() == ""
    monkeypatch.setenv("CI", "true")
    optim.minimize(*args, progress=False)
    assert term.getvalue() == ""
