"""The main job, ``python -m gradjit`` (console script ``gradjit-demo``): a tour in one run.

It prints, in order:

1. the torch-autograd talk's examples with their values and gradients (sum, branch, loop and its
   recursive form, ``sum(floor(a**3))`` with the default zero gradient and with a straight-through
   ``floor`` installed by ``gj.gradients``);
2. a Wengert list (``gj.make_wengert``);
3. a small MLP trained with ``gj.grad`` on scikit-learn's handwritten digits (plain NumPy model, a
   dict of parameters, Adam written inline), with the loss every few epochs and the test accuracy;
4. a gradient check at the trained parameters (``gj.check_grads`` plus one entry against central
   differences).

Invariants: deterministic (fixed split and seeds); uses only NumPy, gradjit and, for the data,
scikit-learn (a missing scikit-learn is reported with the command that installs it, and the run
exits non-zero without a traceback). The model is written with plain ``import numpy as np`` calls,
exactly as a user would write it.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import textwrap
import time
from typing import Any

import numpy as np

import gradjit as gj

__all__ = ["main", "talk_examples", "train_mlp"]


def _rule(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 74 - len(title)))


# --------------------------------------------------------------------------- 1. the talk's examples


def talk_examples() -> None:
    """The examples of the torch-autograd talk, with their values and gradients."""
    _rule("1. The talk's examples: grad of plain NumPy functions")

    def f_sum(a, b, c):
        return a + b * c

    value, g = gj.value_and_grad(f_sum)(3.5, 2.1, 1.1)
    print("f(a, b, c) = a + b * c")
    print(f"  f(3.5, 2.1, 1.1) = {value:.15g}    df/da = {g:.15g}")
    grads = gj.grad(f_sum, argnums=(0, 1, 2))(3.5, 2.1, 1.1)
    print("  gradient w.r.t. (a, b, c), argnums=(0, 1, 2): (" + ", ".join(f"{x:.15g}" for x in grads) + ")")

    def f_branch(a, b, c):
        if b > c:  # Python control flow on a traced value
            return a * np.sin(b)
        return a + b * c

    value, g = gj.value_and_grad(f_branch)(3.5, 2.1, 1.1)
    print("f(a, b, c) = a * sin(b) if b > c else a + b * c")
    print(f"  f(3.5, 2.1, 1.1) = {value:.14g}    df/da = {g:.14g}")

    def f_loop(a, b):
        for _ in range(int(b)):
            a = a * a
        return a

    def f_rec(a, b):
        if b == 0:
            return a
        return f_rec(a * a, b - 1)

    value, g = gj.value_and_grad(f_loop)(3.0, 2.0)
    print("loop:      for i in range(b): a = a * a")
    print(f"  f(3, 2) = {value:g}    df/da = {g:g}")
    value, g = gj.value_and_grad(f_rec)(3.0, 2.0)
    print("recursive: f(a, b) = a if b == 0 else f(a * a, b - 1)")
    print(f"  f(3, 2) = {value:g}    df/da = {g:g}")

    def f_floor(a):
        return np.sum(np.floor(a**3))

    a = np.eye(3)
    print("f(a) = sum(floor(a ** 3)) at a = eye(3); floor has zero gradient:")
    print(_indent(np.array2string(gj.grad(f_floor)(a))))
    print("the same with a straight-through floor, with gj.gradients({np.floor: lambda g, ans, x: g}):")
    with gj.gradients({np.floor: lambda g, ans, x: g}):
        print(_indent(np.array2string(gj.grad(f_floor)(a))))

    _rule("2. A Wengert list: gj.make_wengert(f)(3.5, 2.1, 1.1)")

    def f(a, b, c):
        if b > c:
            return a * np.sin(b) + np.exp(-c) * np.tanh(a * b)
        return a + b * c

    print(textwrap.dedent(inspect.getsource(f)))
    print(gj.make_wengert(f)(3.5, 2.1, 1.1))


def _indent(text: str, pad: str = "  ") -> str:
    return "\n".join(pad + line for line in text.splitlines())


# --------------------------------------------------------------------------- 3. an MLP on the digits


def _load_digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Standardized digits, fixed 75/25 split (seed 0)."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    perm = np.random.default_rng(0).permutation(len(y))
    X, y = X[perm].astype(np.float64), y[perm]
    n_train = int(0.75 * len(y))
    X_train, X_test, y_train, y_test = X[:n_train], X[n_train:], y[:n_train], y[n_train:]
    mean, std = X_train.mean(axis=0), X_train.std(axis=0)
    std[std == 0] = 1.0  # constant (always blank) pixels
    return (X_train - mean) / std, (X_test - mean) / std, y_train, y_test


def init_params(n_in: int, n_hidden: int, n_out: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "W1": rng.standard_normal((n_in, n_hidden)) / np.sqrt(n_in),
        "b1": np.zeros(n_hidden),
        "W2": rng.standard_normal((n_hidden, n_out)) / np.sqrt(n_hidden),
        "b2": np.zeros(n_out),
    }


def predict_logits(params: dict[str, Any], X: np.ndarray) -> Any:
    h = np.tanh(X @ params["W1"] + params["b1"])
    return h @ params["W2"] + params["b2"]


def loss_fn(params: dict[str, Any], X: np.ndarray, Y: np.ndarray, l2: float = 1e-4) -> Any:
    """Mean cross-entropy of a log-softmax over one-hot targets ``Y``, plus a small L2 penalty."""
    logits = predict_logits(params, X)
    m = np.max(logits, axis=1, keepdims=True)
    log_probs = logits - m - np.log(np.sum(np.exp(logits - m), axis=1, keepdims=True))
    nll = -np.sum(log_probs * Y) / X.shape[0]
    return nll + l2 * (np.sum(params["W1"] ** 2) + np.sum(params["W2"] ** 2))


def accuracy(params: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(predict_logits(params, X), axis=1) == y))


def train_mlp(
    epochs: int, batch_size: int = 64, lr: float = 3e-3, hidden: int = 64, log_every: int = 5, seed: int = 0
) -> tuple[dict[str, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], float]:
    """Train with ``gj.grad`` and an inline Adam; returns (params, data, test accuracy)."""
    X_train, X_test, y_train, y_test = data = _load_digits()
    n_classes = 10
    Y_train = np.eye(n_classes)[y_train]
    params = init_params(X_train.shape[1], hidden, n_classes, seed)
    print(f"digits: {len(y_train)} train / {len(y_test)} test images of 8x8 pixels, 10 classes")
    print(f"model: 64 -> {hidden} tanh -> 10, log-softmax cross-entropy; Adam lr={lr}, batch {batch_size}")

    grad_loss = gj.grad(loss_fn)  # d loss / d params, a dict shaped like params
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(v) for k, v in params.items()}
    beta1, beta2, eps, step = 0.9, 0.999, 1e-8, 0
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(y_train))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            g = grad_loss(params, X_train[idx], Y_train[idx])
            step += 1
            for k in params:  # Adam, written out
                m[k] = beta1 * m[k] + (1 - beta1) * g[k]
                v[k] = beta2 * v[k] + (1 - beta2) * g[k] ** 2
                m_hat = m[k] / (1 - beta1**step)
                v_hat = v[k] / (1 - beta2**step)
                params[k] = params[k] - lr * m_hat / (np.sqrt(v_hat) + eps)
        if epoch % log_every == 0 or epoch == 1 or epoch == epochs:
            train_loss = float(loss_fn(params, X_train, Y_train))
            print(
                f"  epoch {epoch:3d}  train loss {train_loss:.4f}  train acc {accuracy(params, X_train, y_train):6.2%}"
                f"  ({time.perf_counter() - t0:.1f} s)"
            )
    test_acc = accuracy(params, X_test, y_test)
    print(f"test accuracy: {test_acc:.2%} ({len(y_test)} held-out images, {step} gradient steps)")
    return params, data, test_acc


def gradient_check(params: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray) -> None:
    """``gj.check_grads`` on the loss at ``params``, and one entry against central differences."""
    Y = np.eye(10)[y]

    def loss_of_params(p: dict[str, Any]) -> Any:
        return loss_fn(p, X, Y)

    gj.check_grads(loss_of_params, params, order=2)
    print(f"gj.check_grads(loss, params, order=2) on {len(y)} images: passed (reverse mode and reverse-of-reverse)")

    g = gj.grad(loss_of_params)(params)
    i, j, eps = 3, 5, 1e-6
    plus = {k: v.copy() for k, v in params.items()}
    minus = {k: v.copy() for k, v in params.items()}
    plus["W1"][i, j] += eps
    minus["W1"][i, j] -= eps
    numeric = (float(loss_of_params(plus)) - float(loss_of_params(minus))) / (2 * eps)
    analytic = float(g["W1"][i, j])
    rel = abs(analytic - numeric) / max(abs(numeric), 1e-12)
    print(f"d loss / d W1[{i},{j}]: gradjit {analytic:.10e}   central difference {numeric:.10e}   rel. error {rel:.1e}")
    if rel > 1e-4:
        raise AssertionError(f"gradient entry disagrees with central differences (relative error {rel:.1e})")


# --------------------------------------------------------------------------- entry point


def _have_sklearn() -> bool:
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    """Run the tour; ``--quick`` trains for a few epochs only (used by the tests)."""
    parser = argparse.ArgumentParser(prog="python -m gradjit", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="train for a few epochs only")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 30, 3 with --quick)")
    args = parser.parse_args(argv)
    epochs = args.epochs if args.epochs is not None else (3 if args.quick else 30)

    print(f"gradjit {gj.__version__}: grad as a higher-order function over plain NumPy code")
    talk_examples()

    _rule("3. Training an MLP on handwritten digits with gj.grad")
    if not _have_sklearn():
        print(
            "scikit-learn is needed for the digits data set and is not installed.\n"
            'Install it with:  python -m pip install -e ".[demo]"   (or: python -m pip install scikit-learn)',
            file=sys.stderr,
        )
        return 1
    params, (_, X_test, _, y_test), _ = train_mlp(epochs, log_every=1 if epochs <= 5 else 5)

    _rule("4. Gradient check at the trained parameters")
    gradient_check(params, X_test[:50], y_test[:50])
    print("\ndone.")
    return 0
