"""Ready-made models: each returns ``(fn, params)``, as torch-autograd's ``model.NeuralNetwork`` did.

``fn(params, x)`` is a plain function of a parameter pytree (lists and dicts of arrays) and the
input, so ``gradjit.grad(lambda p: loss(fn(p, x), y))(params)`` trains it. Classifiers return
log-probabilities (a ``log_softmax`` output): use them with ``nll``, ``cross_entropy`` (the
log-softmax of log-probabilities is themselves) or ``log_multinomial_loss``, and ``argmax`` them
for predictions. Initialization is deterministic given ``key`` (an int seed by default).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .functional import activation as _activation
from .functional import log_softmax
from .init import Key, split_key
from .layers import (
    conv2d,
    flatten,
    gru_cell,
    init_conv2d,
    init_gru_cell,
    init_linear,
    init_lstm_cell,
    init_rnn_cell,
    linear,
    lstm_cell,
    rnn_cell,
)
from .ops import max_pool2d, pair

__all__ = ["mlp", "cnn", "rnn", "lstm", "gru"]

Model = tuple[Callable[..., Any], Any]


def mlp(
    sizes: Sequence[int],
    activation: str | Callable[[Any], Any] = "tanh",
    classifier: bool = True,
    key: Key = 0,
    dtype: Any = np.float64,
) -> Model:
    """A fully connected network with layer widths ``sizes`` (input first, output last).

    ``params`` is a list of ``{"W", "b"}`` dicts, one per layer; ``activation`` follows every layer
    but the last; with ``classifier`` the output is ``log_softmax`` of the last layer.
    """
    if len(sizes) < 2:
        raise ValueError(f"mlp: sizes needs at least an input and an output width, got {list(sizes)}")
    act = _activation(activation)
    keys = split_key(key, len(sizes) - 1)
    params = [init_linear(k, a, b, dtype=dtype) for k, a, b in zip(keys, sizes[:-1], sizes[1:])]

    def mlp_fn(params: list, x: Any) -> Any:
        h = x
        for layer in params[:-1]:
            h = act(linear(layer, h))
        out = linear(params[-1], h)
        return log_softmax(out) if classifier else out

    return mlp_fn, params


def cnn(
    in_shape: tuple[int, int, int] = (1, 8, 8),
    n_classes: int = 10,
    channels: Sequence[int] = (16,),
    kernel: int = 3,
    pool: int = 2,
    hidden: Sequence[int] = (),
    activation: str | Callable[[Any], Any] = "relu",
    key: Key = 0,
    dtype: Any = np.float64,
) -> Model:
    """A small convolutional classifier; the defaults suit scikit-learn's 8x8 digits.

    Per entry of ``channels``: ``conv2d`` (``kernel`` x ``kernel``, "same" padding) -> activation ->
    ``max_pool2d(pool)``; then flatten, the ``hidden`` fully connected layers with the activation, and
    a linear layer to ``n_classes`` log-probabilities. ``x`` may be (N, C, H, W) or flat (N, C*H*W).
    ``params = {"conv": [{"W", "b"}, ...], "fc": [{"W", "b"}, ...]}``.
    """
    act = _activation(activation)
    c, h, w = in_shape
    kc, kf = split_key(key, 2)
    conv_keys = split_key(kc, max(len(channels), 1))
    convs = []
    for k, c_out in zip(conv_keys, channels):
        convs.append(init_conv2d(k, c, c_out, kernel, dtype=dtype))
        c, h, w = c_out, h // pool, w // pool
    if h < 1 or w < 1:
        raise ValueError(f"cnn: {len(channels)} pooling stage(s) of {pool} do not fit an input of {in_shape}")
    widths = [c * h * w, *hidden, n_classes]
    fcs = [
        init_linear(k, a, b, dtype=dtype) for k, a, b in zip(split_key(kf, len(widths) - 1), widths[:-1], widths[1:])
    ]
    pad = pair(kernel)[0] // 2

    def cnn_fn(params: dict, x: Any) -> Any:
        h = np.reshape(x, (np.shape(x)[0], *in_shape))
        for layer in params["conv"]:
            h = max_pool2d(act(conv2d(layer, h, padding=pad)), pool)
        h = flatten(h)
        for layer in params["fc"][:-1]:
            h = act(linear(layer, h))
        return log_softmax(linear(params["fc"][-1], h))

    return cnn_fn, {"conv": convs, "fc": fcs}


_CELLS = {
    "tanh": (init_rnn_cell, rnn_cell),
    "lstm": (init_lstm_cell, lstm_cell),
    "gru": (init_gru_cell, gru_cell),
}


def rnn(
    n_in: int,
    n_hidden: int,
    n_out: int,
    cell: str = "tanh",
    classifier: bool = False,
    key: Key = 0,
    dtype: Any = np.float64,
) -> Model:
    """A recurrent network over sequences ``xs`` (N, T, n_in), read from the final hidden state.

    ``cell`` is ``"tanh"`` (Elman), ``"lstm"`` or ``"gru"``. The loop over T is a Python loop, so
    the Wengert list is the unrolled network (sequences of different lengths are simply different
    traces). ``fn(params, xs)`` returns (N, n_out): log-probabilities with ``classifier``.
    ``params = {"cell": {...}, "out": {"W", "b"}}``.
    """
    try:
        init_cell, step = _CELLS[cell]
    except KeyError:
        raise ValueError(f"rnn: cell must be one of {sorted(_CELLS)}, not {cell!r}") from None
    kc, ko = split_key(key, 2)
    params = {"cell": init_cell(kc, n_in, n_hidden, dtype), "out": init_linear(ko, n_hidden, n_out, dtype=dtype)}

    def rnn_fn(params: dict, xs: Any) -> Any:
        if len(np.shape(xs)) != 3:
            raise ValueError(f"rnn: expected sequences of shape (N, T, {n_in}), got {np.shape(xs)}")
        n, steps = np.shape(xs)[0], np.shape(xs)[1]
        h = np.zeros((n, n_hidden), dtype)
        state = (h, np.zeros((n, n_hidden), dtype)) if cell == "lstm" else h
        for t in range(steps):
            state = step(params["cell"], xs[:, t], state)
            h = state[0] if cell == "lstm" else state
        out = linear(params["out"], h)
        return log_softmax(out) if classifier else out

    return rnn_fn, params


def lstm(
    n_in: int, n_hidden: int, n_out: int, classifier: bool = False, key: Key = 0, dtype: Any = np.float64
) -> Model:
    """``rnn(..., cell="lstm")``."""
    return rnn(n_in, n_hidden, n_out, "lstm", classifier, key, dtype)


def gru(n_in: int, n_hidden: int, n_out: int, classifier: bool = False, key: Key = 0, dtype: Any = np.float64) -> Model:
    """``rnn(..., cell="gru")``."""
    return rnn(n_in, n_hidden, n_out, "gru", classifier, key, dtype)
