"""Parameter-free pieces of ``gradjit.nn``: activations, losses, ``one_hot`` and ``dropout``.

Everything here is a composite of gradjit's NumPy-level operations, written as plain NumPy code, so
it works on plain arrays and on traced values alike and is differentiable to any order where the
math is (``relu`` and friends have a kink at 0, where the gradient taken is the one-sided 0).

Numerical stability: ``log_softmax``/``softmax`` subtract the (gradient-stopped) maximum; ``sigmoid``
is ``(1 + tanh(x / 2)) / 2`` and ``softplus`` is ``logaddexp(x, 0)``, both finite everywhere; the
``*_with_logits`` losses never form a probability.

Losses take ``reduction``: ``"mean"`` (over samples: every axis but the class axis for
classification losses, every element for ``mse``), ``"sum"`` or ``"none"``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..api import stop_gradient
from ..placement import DeviceArray
from .init import Key, rng_from

__all__ = [
    "tanh",
    "relu",
    "leaky_relu",
    "sigmoid",
    "softplus",
    "gelu",
    "log_softmax",
    "softmax",
    "logsumexp",
    "one_hot",
    "cross_entropy",
    "nll",
    "mse",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "log_multinomial_loss",
    "dropout",
    "activation",
    "ACTIVATIONS",
]

_SQRT_2_OVER_PI = float(np.sqrt(2.0 / np.pi))


# ---------------------------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------------------------
def tanh(x: Any) -> Any:
    return np.tanh(x)


def relu(x: Any) -> Any:
    """``max(x, 0)``; the gradient at exactly 0 is 0 (as in PyTorch)."""
    return np.where(x > 0, x, 0.0)


def leaky_relu(x: Any, slope: float = 0.01) -> Any:
    return np.where(x > 0, x, slope * x)


def sigmoid(x: Any) -> Any:
    """The logistic function, as ``(1 + tanh(x / 2)) / 2``: no overflow for large ``|x|``."""
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


def softplus(x: Any) -> Any:
    """``log(1 + exp(x))``, finite for any ``x``."""
    return np.logaddexp(x, 0.0)


def gelu(x: Any, approximate: str = "tanh") -> Any:
    """Gaussian error linear unit without erf: ``approximate="tanh"`` (Hendrycks & Gimpel's tanh form,
    PyTorch's ``approximate="tanh"``) or ``"sigmoid"`` (``x * sigmoid(1.702 x)``)."""
    if approximate == "tanh":
        return 0.5 * x * (1.0 + np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))
    if approximate == "sigmoid":
        return x * sigmoid(1.702 * x)
    raise ValueError(f"gelu: approximate must be 'tanh' or 'sigmoid', not {approximate!r}")


def logsumexp(x: Any, axis: int = -1, keepdims: bool = False) -> Any:
    """``log(sum(exp(x), axis))`` computed stably."""
    m = stop_gradient(np.max(x, axis=axis, keepdims=True))  # any constant shift gives the same value
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def log_softmax(x: Any, axis: int = -1) -> Any:
    """``x - logsumexp(x)`` along ``axis``, stable for large logits."""
    s = x - stop_gradient(np.max(x, axis=axis, keepdims=True))
    return s - np.log(np.sum(np.exp(s), axis=axis, keepdims=True))


def softmax(x: Any, axis: int = -1) -> Any:
    e = np.exp(x - stop_gradient(np.max(x, axis=axis, keepdims=True)))
    return e / np.sum(e, axis=axis, keepdims=True)


ACTIVATIONS: dict[str, Callable[[Any], Any]] = {
    "tanh": tanh,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "sigmoid": sigmoid,
    "softplus": softplus,
    "gelu": gelu,
    "identity": lambda x: x,
}


def activation(spec: str | Callable[[Any], Any]) -> Callable[[Any], Any]:
    """An activation by name (``"tanh"``, ``"relu"``, ...) or the callable itself."""
    if callable(spec):
        return spec
    try:
        return ACTIVATIONS[spec]
    except KeyError:
        raise ValueError(
            f"unknown activation {spec!r}; choose one of {sorted(ACTIVATIONS)} or pass a function"
        ) from None


# ---------------------------------------------------------------------------------------------
# Labels and losses
# ---------------------------------------------------------------------------------------------
def one_hot(labels: Any, num_classes: int | None = None, dtype: Any = np.float64) -> np.ndarray:
    """``(..., num_classes)`` indicator array of integer ``labels`` (default: ``max(labels) + 1`` classes)."""
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"one_hot: labels must be integers, got dtype {labels.dtype}")
    k = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    return (labels[..., None] == np.arange(k)).astype(dtype)


def _reduce(loss: Any, reduction: str, op: str) -> Any:
    if reduction == "mean":
        return np.mean(loss)
    if reduction == "sum":
        return np.sum(loss)
    if reduction == "none":
        return loss
    raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', not {reduction!r}")


def _int_labels(labels: Any, op: str) -> np.ndarray:
    labels = labels if isinstance(labels, DeviceArray) else np.asarray(labels)  # device labels stay there
    if labels.dtype.kind not in "iu":
        raise TypeError(f"{op}: labels must be integer class indices, got dtype {labels.dtype}")
    return labels


def nll(log_probs: Any, labels: Any, reduction: str = "mean") -> Any:
    """Negative log-likelihood of integer ``labels`` (...,) under ``log_probs`` (..., classes)."""
    labels = _int_labels(labels, "nll")
    picked = np.take_along_axis(log_probs, labels[..., None], axis=-1)
    return _reduce(-picked[..., 0], reduction, "nll")


def cross_entropy(logits: Any, labels: Any, reduction: str = "mean") -> Any:
    """Softmax cross-entropy of ``logits`` (..., classes) with integer ``labels`` (...,), or with target
    probabilities of the same shape as ``logits`` (soft labels)."""
    lp = log_softmax(logits, axis=-1)
    dt = getattr(labels, "dtype", None)
    dt = np.asarray(labels).dtype if dt is None else dt
    if dt.kind == "f" and np.shape(labels) == np.shape(logits):
        return _reduce(-np.sum(labels * lp, axis=-1), reduction, "cross_entropy")
    return nll(lp, labels, reduction)


def mse(pred: Any, target: Any, reduction: str = "mean") -> Any:
    """Squared error, averaged over every element by default."""
    d = pred - target
    return _reduce(d * d, reduction, "mse")


def binary_cross_entropy(probs: Any, targets: Any, reduction: str = "mean") -> Any:
    """``-(t log p + (1 - t) log(1 - p))`` for probabilities strictly inside (0, 1).

    For outputs of a sigmoid prefer ``binary_cross_entropy_with_logits``: it is exact where ``p``
    would round to 0 or 1.
    """
    loss = -(targets * np.log(probs) + (1.0 - targets) * np.log1p(-probs))
    return _reduce(loss, reduction, "binary_cross_entropy")


def binary_cross_entropy_with_logits(logits: Any, targets: Any, reduction: str = "mean") -> Any:
    """``binary_cross_entropy(sigmoid(logits), targets)`` as ``softplus(x) - t x``: stable for any logit."""
    return _reduce(softplus(logits) - targets * logits, reduction, "binary_cross_entropy_with_logits")


def log_multinomial_loss(log_probs: Any, targets: Any, reduction: str = "sum") -> Any:
    """The talk's loss: ``-sum(targets * log_probs)`` for one-hot (or probability) ``targets``.

    torch-autograd's example computes ``yHat = h - log(sum(exp(h)))`` (a log-softmax) and returns
    ``-sum(yHat * y)``; that is ``log_multinomial_loss(log_softmax(h), one_hot(labels))``. The default
    ``reduction="sum"`` is the talk's; ``"mean"`` averages over samples.
    """
    return _reduce(-np.sum(targets * log_probs, axis=-1), reduction, "log_multinomial_loss")


# ---------------------------------------------------------------------------------------------
# Dropout
# ---------------------------------------------------------------------------------------------
def dropout(key: Key, x: Any, rate: float, train: bool = True) -> Any:
    """Zero each element with probability ``rate`` and scale the rest by ``1 / (1 - rate)`` (inverted
    dropout); identity when ``train`` is false or ``rate`` is 0.

    ``key`` follows ``gradjit.nn.init``'s convention: an int seed gives the same mask every time (draw
    a new key per step, e.g. ``split_key(step)``), a ``numpy.random.Generator`` is advanced.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"dropout: rate must be in [0, 1], got {rate}")
    if not train or rate == 0.0:
        return x
    if rate == 1.0:
        return x * 0.0
    keep = rng_from(key).random(np.shape(x)) >= rate
    return x * (keep.astype(np.result_type(x)) / np.asarray(1.0 - rate, dtype=np.result_type(x)))
