"""gradjit.nn: functional neural-network building blocks over plain pytrees of arrays.

Parameters are dicts/lists of NumPy arrays; layers are functions of ``(params, x)``; everything is
ordinary NumPy code on gradjit's traced values, so ``gradjit.grad`` differentiates it (to any
order) and the Wengert list shows it. Three levels, as in the talk:

    import gradjit as gj
    from gradjit import nn

    # 1. NumPy operations:  h = np.tanh(x @ W1 + b1) ...
    # 2. layers:            h = nn.tanh(nn.linear(params[0], x)); loss = nn.cross_entropy(out, y)
    # 3. a whole model:     fn, params = nn.mlp([64, 32, 10]); loss = nn.nll(fn(params, x), y)

Layers with parameters take them first: ``nn.conv2d(params, x, stride, padding)`` is the layer
(``params = {"W", "b"}``), ``nn.ops.conv2d(x, w, b, stride, padding)`` the bare operation in
``torch.nn.functional`` style. Pooling, activations and losses have no parameters.

Modules: ``ops`` (``conv2d``, ``max_pool2d``, ``avg_pool2d``: primitives with Numba kernels, imported
lazily on first use), ``functional`` (activations, losses, ``one_hot``, ``dropout``), ``layers``
(parametrized layers and their ``init_*``), ``init`` (initializers and the random-key convention:
an int seed or a ``numpy.random.Generator``), ``models`` (``mlp``, ``cnn``, ``rnn``/``lstm``/``gru``).
"""

from __future__ import annotations

from . import functional, init, layers, models, ops
from .functional import (
    ACTIVATIONS,
    activation,
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cross_entropy,
    dropout,
    gelu,
    leaky_relu,
    log_multinomial_loss,
    log_softmax,
    logsumexp,
    mse,
    nll,
    one_hot,
    relu,
    sigmoid,
    softmax,
    softplus,
    tanh,
)
from .init import split_key
from .layers import (
    batch_norm,
    conv2d,
    embedding,
    flatten,
    gru_cell,
    init_batch_norm,
    init_conv2d,
    init_embedding,
    init_gru_cell,
    init_layer_norm,
    init_linear,
    init_lstm_cell,
    init_rnn_cell,
    layer_norm,
    linear,
    lstm_cell,
    rnn_cell,
)
from .models import cnn, gru, lstm, mlp, rnn
from .ops import avg_pool2d, max_pool2d

__all__ = [
    "ops", "functional", "layers", "init", "models",
    "linear", "conv2d", "max_pool2d", "avg_pool2d", "dropout", "batch_norm", "layer_norm", "embedding",
    "rnn_cell", "lstm_cell", "gru_cell", "flatten",
    "tanh", "relu", "leaky_relu", "sigmoid", "softplus", "gelu", "log_softmax", "softmax", "logsumexp",
    "activation", "ACTIVATIONS",
    "cross_entropy", "nll", "mse", "binary_cross_entropy", "binary_cross_entropy_with_logits",
    "log_multinomial_loss", "one_hot",
    "init_linear", "init_conv2d", "init_batch_norm", "init_layer_norm", "init_embedding", "init_rnn_cell",
    "init_lstm_cell", "init_gru_cell", "split_key",
    "mlp", "cnn", "rnn", "lstm", "gru",
]  # fmt: skip
