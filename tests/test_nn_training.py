"""Short training runs of gradjit.nn's ready-made models on scikit-learn's handwritten digits.

The 8x8 digits (1797 images) are split 75/25, stratified, with a fixed seed; each model trains with
``gradjit.optim.adam`` on minibatches of 128 drawn with a fixed seed and must reach >= 95% test
accuracy (the issue's bar) for the MLP and the CNN. An LSTM reading the images row by row (8 steps of
8 pixels) must reach 90%. Each run takes about a second.

BLAS runs on one thread here: these are small matrix products (128 x 32 by 32 x 128), for which
OpenBLAS's second thread only adds synchronization, and on a busy 2-core machine its spinning made
the LSTM run 30x slower (50 s instead of 1.5 s).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import gradjit as gj
from gradjit import nn, optim

sklearn_datasets = pytest.importorskip("sklearn.datasets")
model_selection = pytest.importorskip("sklearn.model_selection")


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread() -> Iterator[None]:
    try:
        from threadpoolctl import threadpool_limits  # a scikit-learn dependency
    except ImportError:  # pragma: no cover
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = sklearn_datasets.load_digits(return_X_y=True)
    return tuple(model_selection.train_test_split(x / 16.0, y, test_size=0.25, random_state=0, stratify=y))


def train(fn: Callable, params: Any, x: np.ndarray, y: np.ndarray, steps: int, lr: float, seed: int = 0) -> tuple:
    """Adam on minibatches of 128; returns (params, first loss, last loss)."""
    opt = optim.adam(lr)
    state = opt.init(params)
    value_and_grad = gj.value_and_grad(lambda p, xb, yb: nn.nll(fn(p, xb), yb))
    rng = np.random.default_rng(seed)
    losses = []
    for _ in range(steps):
        idx = rng.choice(len(x), 128, replace=False)
        loss, grads = value_and_grad(params, x[idx], y[idx])
        params, state = opt.update(grads, state, params)
        losses.append(float(loss))
    return params, losses[0], losses[-1]


def accuracy(fn: Callable, params: Any, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(fn(params, x), axis=1) == y))


def test_mlp_reaches_95_percent_on_digits(digits: tuple) -> None:
    xtr, xte, ytr, yte = digits
    fn, params = nn.mlp([64, 64, 10], activation="tanh", classifier=True, key=0)
    assert accuracy(fn, params, xte, yte) < 0.5  # untrained: the test can fail
    params, first, last = train(fn, params, xtr, ytr, steps=200, lr=0.01)
    assert last < first / 10
    assert accuracy(fn, params, xte, yte) >= 0.95


def test_cnn_reaches_95_percent_on_digits(digits: tuple) -> None:
    xtr, xte, ytr, yte = digits
    fn, params = nn.cnn(in_shape=(1, 8, 8), channels=(8,), key=0)  # conv 3x3 -> relu -> maxpool 2 -> linear
    assert accuracy(fn, params, xte, yte) < 0.5
    params, first, last = train(fn, params, xtr, ytr, steps=300, lr=0.01)
    assert last < first / 10
    assert accuracy(fn, params, xte, yte) >= 0.95


def test_lstm_reads_digits_row_by_row(digits: tuple) -> None:
    xtr, xte, ytr, yte = (a.reshape(-1, 8, 8) if a.ndim == 2 else a for a in digits)
    fn, params = nn.lstm(8, 32, 10, classifier=True, key=0)
    params, first, last = train(fn, params, xtr, ytr, steps=400, lr=0.02)
    assert last < first / 10
    assert accuracy(fn, params, xte, yte) >= 0.90
