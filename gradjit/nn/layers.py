"""Layers with parameters: functions of ``(params, x)`` where ``params`` is a plain dict of arrays.

Each layer has an ``init_<layer>(key, ...)`` that builds its parameter dict (see ``gradjit.nn.init``
for keys). Layouts, fixed throughout ``gradjit.nn``:

- ``linear``: ``{"W": (in, out), "b": (out,)}``, ``y = x @ W + b`` (the talk's ``x * W``).
- ``conv2d``: ``{"W": (O, C, KH, KW), "b": (O,)}`` on NCHW inputs (one ``conv2d`` primitive).
- ``batch_norm`` / ``layer_norm``: ``{"gamma": (C,), "beta": (C,)}``; batch norm's running statistics
  are a separate ``state`` dict ``{"mean": (C,), "var": (C,)}`` that the layer returns updated.
- ``embedding``: ``{"W": (vocab, dim)}``.
- ``rnn_cell`` / ``lstm_cell`` / ``gru_cell``: ``{"Wx": (in, G*H), "Wh": (H, G*H), "b": (G*H,)}`` with
  G = 1, 4 (gates i, f, g, o) and 3 (r, z, n; the GRU also has ``"bh"``: (3H,), the hidden-side bias
  that the reset gate multiplies, as in PyTorch).

A bias key may be missing (or ``None``): the layer then has no bias.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..api import stop_gradient
from .functional import sigmoid
from .init import Key, glorot_uniform, he_normal, normal, orthogonal, split_key
from .ops import conv2d as _conv2d
from .ops import pair

__all__ = [
    "linear",
    "conv2d",
    "batch_norm",
    "layer_norm",
    "embedding",
    "rnn_cell",
    "lstm_cell",
    "gru_cell",
    "flatten",
    "init_linear",
    "init_conv2d",
    "init_batch_norm",
    "init_layer_norm",
    "init_embedding",
    "init_rnn_cell",
    "init_lstm_cell",
    "init_gru_cell",
]

Params = dict[str, Any]


def _bias(params: Params, name: str = "b") -> Any:
    return params.get(name) if isinstance(params, dict) else None


def linear(params: Params, x: Any) -> Any:
    """``x @ W + b`` for ``x`` of shape (..., in)."""
    y = x @ params["W"]
    b = _bias(params)
    return y if b is None else y + b


def conv2d(params: Params, x: Any, stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0) -> Any:
    """2-D convolution layer on NCHW ``x`` (see ``gradjit.nn.ops.conv2d`` for the operation)."""
    return _conv2d(x, params["W"], _bias(params), stride=stride, padding=padding)


def flatten(x: Any) -> Any:
    """(N, ...) -> (N, prod(...))."""
    return np.reshape(x, (np.shape(x)[0], -1))


def _channel_shape(x: Any) -> tuple[int, ...]:
    nd = len(np.shape(x))
    if nd < 2:
        raise ValueError(f"batch_norm: expected an input (N, C, ...), got shape {np.shape(x)}")
    return (1, np.shape(x)[1]) + (1,) * (nd - 2)


def batch_norm(
    params: Params | None,
    x: Any,
    state: dict[str, Any] | None = None,
    train: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> tuple[Any, dict[str, Any] | None]:
    """Batch normalization over every axis but the channel axis 1 of ``x`` (N, C) or (N, C, H, W).

    Training (``train=True``) normalizes with the batch's statistics and, when ``state`` is given,
    returns ``(y, new_state)`` with ``new = (1 - momentum) * old + momentum * batch`` (the unbiased
    batch variance, as PyTorch; gradients never flow into the state). Evaluation normalizes with
    ``state`` and returns it unchanged. ``params=None`` means no affine ``gamma``/``beta``.
    """
    cshape = _channel_shape(x)
    c = cshape[1]
    axes = (0,) + tuple(range(2, len(cshape)))
    new_state = state
    if train:
        mean = np.mean(x, axis=axes, keepdims=True)
        d = x - mean
        var = np.mean(d * d, axis=axes, keepdims=True)
        if state is not None:
            n = int(np.prod(np.shape(x))) // c
            bm = stop_gradient(np.reshape(mean, (c,)))
            bv = stop_gradient(np.reshape(var, (c,))) * (n / max(n - 1, 1))
            new_state = {
                "mean": (1.0 - momentum) * state["mean"] + momentum * bm,
                "var": (1.0 - momentum) * state["var"] + momentum * bv,
            }
    else:
        if state is None:
            raise ValueError("batch_norm: evaluation (train=False) needs the running statistics `state`")
        mean, var = np.reshape(state["mean"], cshape), np.reshape(state["var"], cshape)
        d = x - mean
    y = d / np.sqrt(var + eps)
    if params is not None:
        y = y * np.reshape(params["gamma"], cshape) + np.reshape(params["beta"], cshape)
    return y, new_state


def layer_norm(params: Params | None, x: Any, eps: float = 1e-5) -> Any:
    """Normalize over the last axis of ``x``; then ``* gamma + beta`` unless ``params`` is None."""
    mean = np.mean(x, axis=-1, keepdims=True)
    d = x - mean
    y = d / np.sqrt(np.mean(d * d, axis=-1, keepdims=True) + eps)
    if params is not None:
        y = y * params["gamma"] + params["beta"]
    return y


def embedding(params: Params, ids: Any) -> Any:
    """Rows ``W[ids]`` for integer ``ids`` of any shape: (..., dim)."""
    ids = np.asarray(ids) if not hasattr(ids, "dtype") else ids
    if ids.dtype.kind not in "iu":
        raise TypeError(f"embedding: ids must be integers, got dtype {ids.dtype}")
    return params["W"][ids]


def rnn_cell(params: Params, x: Any, h: Any) -> Any:
    """Elman cell: ``tanh(x @ Wx + h @ Wh + b)``; returns the new hidden state."""
    return np.tanh(linear({"W": params["Wx"], "b": _bias(params)}, x) + h @ params["Wh"])


def lstm_cell(params: Params, x: Any, state: tuple[Any, Any]) -> tuple[Any, Any]:
    """LSTM cell: ``state = (h, c)`` -> ``(h', c')``; the gates are [i, f, g, o] along the last axis."""
    h, c = state
    n = np.shape(h)[-1]
    z = linear({"W": params["Wx"], "b": _bias(params)}, x) + h @ params["Wh"]
    i, f = sigmoid(z[..., :n]), sigmoid(z[..., n : 2 * n])
    g, o = np.tanh(z[..., 2 * n : 3 * n]), sigmoid(z[..., 3 * n :])
    c = f * c + i * g
    return o * np.tanh(c), c


def gru_cell(params: Params, x: Any, h: Any) -> Any:
    """GRU cell (PyTorch's form): ``n = tanh(xn + r * (h Whn + bhn))``, ``h' = (1 - z) n + z h``."""
    n = np.shape(h)[-1]
    gx = linear({"W": params["Wx"], "b": _bias(params)}, x)
    gh = linear({"W": params["Wh"], "b": _bias(params, "bh")}, h)
    r = sigmoid(gx[..., :n] + gh[..., :n])
    z = sigmoid(gx[..., n : 2 * n] + gh[..., n : 2 * n])
    cand = np.tanh(gx[..., 2 * n :] + r * gh[..., 2 * n :])
    return (1.0 - z) * cand + z * h


# ---------------------------------------------------------------------------------------------
# Initialization
# ---------------------------------------------------------------------------------------------
def init_linear(key: Key, n_in: int, n_out: int, w_init: Any = glorot_uniform, bias: bool = True,
                dtype: Any = np.float64) -> Params:  # fmt: skip
    p = {"W": w_init(key, (n_in, n_out), dtype)}
    if bias:
        p["b"] = np.zeros(n_out, dtype)
    return p


def init_conv2d(key: Key, c_in: int, c_out: int, kernel: int | tuple[int, int], w_init: Any = he_normal,
                bias: bool = True, dtype: Any = np.float64) -> Params:  # fmt: skip
    kh, kw = pair(kernel, "kernel")
    p = {"W": w_init(key, (c_out, c_in, kh, kw), dtype)}
    if bias:
        p["b"] = np.zeros(c_out, dtype)
    return p


def init_batch_norm(n: int, dtype: Any = np.float64) -> tuple[Params, dict[str, Any]]:
    """``(params, state)``: gamma = 1, beta = 0, running mean 0 and variance 1."""
    return {"gamma": np.ones(n, dtype), "beta": np.zeros(n, dtype)}, {
        "mean": np.zeros(n, dtype),
        "var": np.ones(n, dtype),
    }


def init_layer_norm(n: int, dtype: Any = np.float64) -> Params:
    return {"gamma": np.ones(n, dtype), "beta": np.zeros(n, dtype)}


def init_embedding(key: Key, vocab: int, dim: int, dtype: Any = np.float64) -> Params:
    return {"W": normal(key, (vocab, dim), dtype)}


def _recurrent(key: Key, n_in: int, n_hidden: int, gates: int, dtype: Any) -> Params:
    kx, kh = split_key(key, 2)
    wh = [orthogonal(k, (n_hidden, n_hidden), dtype) for k in split_key(kh, gates)]
    return {
        "Wx": glorot_uniform(kx, (n_in, gates * n_hidden), dtype),
        "Wh": np.concatenate(wh, axis=1),
        "b": np.zeros(gates * n_hidden, dtype),
    }


def init_rnn_cell(key: Key, n_in: int, n_hidden: int, dtype: Any = np.float64) -> Params:
    return _recurrent(key, n_in, n_hidden, 1, dtype)


def init_lstm_cell(key: Key, n_in: int, n_hidden: int, dtype: Any = np.float64) -> Params:
    """Glorot input weights, orthogonal recurrent blocks, forget-gate bias 1 (Jozefowicz et al. 2015)."""
    p = _recurrent(key, n_in, n_hidden, 4, dtype)
    p["b"][n_hidden : 2 * n_hidden] = 1.0
    return p


def init_gru_cell(key: Key, n_in: int, n_hidden: int, dtype: Any = np.float64) -> Params:
    p = _recurrent(key, n_in, n_hidden, 3, dtype)
    p["bh"] = np.zeros(3 * n_hidden, dtype)
    return p
