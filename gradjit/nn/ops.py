"""Convolution and pooling primitives (NCHW), with VJP rules closed under differentiation.

Each public function here (``conv2d``, ``max_pool2d``, ``avg_pool2d``) is one primitive, so it is
one equation in a Wengert list, and its gradients are primitives too:

==========================  =================================  ====================================
primitive                   VJP of its first operand           VJP of its second operand
==========================  =================================  ====================================
conv2d(x, w)                conv2d_grad_input(g, w)            conv2d_grad_weight(x, g)
conv2d_grad_input(g, w)     conv2d(c, w)                       conv2d_grad_weight(c, g)
conv2d_grad_weight(x, g)    conv2d_grad_input(g, c)            conv2d(x, c)
max_pool2d(x)               max_pool2d_grad(g, x)              -
max_pool2d_grad(g, x)       max_pool2d_gather(c, x)            zero (argmax is locally constant)
max_pool2d_gather(a, x)     max_pool2d_grad(g, x)              zero
avg_pool2d(x)               avg_pool2d_grad(g)                 -
avg_pool2d_grad(g)          avg_pool2d(c)                      -
==========================  =================================  ====================================

(``c`` is the cotangent of the row's output.) The convolution is bilinear and its three forms are
adjoints of each other, so any order of derivative stays inside the table; the same holds for the
pooling pairs. Max pooling routes a gradient to the first maximum of each window in row-major
order, the same element its forward pass reads.

The implementations run Numba kernels from ``gradjit.kernels.conv``. That module is imported the
first time a primitive computes, never at ``import gradjit``: tracing, printing and the rest of
the front end work without Numba compiling anything. Static parameters (``stride``, ``padding``,
``kernel`` as int pairs, ``include_pad``, an output ``shape``) are equation params; arrays are
operands.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..placement import DeviceArray
from ..primitives import primitive
from ..rules import defvjp
from ..tracing import ZERO, Tracer

__all__ = [
    "conv2d",
    "max_pool2d",
    "avg_pool2d",
    "pair",
    "conv2d_p",
    "conv2d_grad_input_p",
    "conv2d_grad_weight_p",
    "max_pool2d_p",
    "max_pool2d_grad_p",
    "max_pool2d_gather_p",
    "avg_pool2d_p",
    "avg_pool2d_grad_p",
]

Pair = tuple[int, int]


def _k(*operands: Any) -> Any:
    """The kernel module for these operands (CPU, or CUDA for device arrays), imported on first use."""
    if any(type(a) is DeviceArray for a in operands):
        from gradjit.kernels import cuda_conv

        return cuda_conv
    from gradjit.kernels import conv

    return conv


# ---------------------------------------------------------------------------------------------
# Primitives: impls receive concrete arrays only.
# ---------------------------------------------------------------------------------------------
def _conv2d(x: Any, w: Any, stride: Pair, padding: Pair) -> np.ndarray:
    return _k(x, w).conv2d(x, w, stride, padding)


def _conv2d_grad_input(g: Any, w: Any, stride: Pair, padding: Pair, shape: tuple[int, ...]) -> np.ndarray:
    return _k(g, w).conv2d_grad_input(g, w, stride, padding, shape)


def _conv2d_grad_weight(x: Any, g: Any, stride: Pair, padding: Pair, shape: tuple[int, ...]) -> np.ndarray:
    return _k(x, g).conv2d_grad_weight(x, g, stride, padding, shape)


def _max_pool2d(x: Any, kernel: Pair, stride: Pair, padding: Pair) -> np.ndarray:
    return _k(x).max_pool2d_gather(x, x, kernel, stride, padding)


def _max_pool2d_grad(g: Any, x: Any, kernel: Pair, stride: Pair, padding: Pair) -> np.ndarray:
    return _k(g, x).max_pool2d_scatter(g, x, kernel, stride, padding)


def _max_pool2d_gather(a: Any, x: Any, kernel: Pair, stride: Pair, padding: Pair) -> np.ndarray:
    return _k(a, x).max_pool2d_gather(a, x, kernel, stride, padding)


def _avg_pool2d(x: Any, kernel: Pair, stride: Pair, padding: Pair, include_pad: bool) -> np.ndarray:
    return _k(x).avg_pool2d(x, kernel, stride, padding, include_pad)


def _avg_pool2d_grad(
    g: Any, kernel: Pair, stride: Pair, padding: Pair, include_pad: bool, shape: tuple[int, ...]
) -> np.ndarray:
    return _k(g).avg_pool2d_grad(g, kernel, stride, padding, include_pad, shape)


conv2d_p = primitive("conv2d", _conv2d, "contraction")
conv2d_grad_input_p = primitive("conv2d_grad_input", _conv2d_grad_input, "contraction")
conv2d_grad_weight_p = primitive("conv2d_grad_weight", _conv2d_grad_weight, "contraction")
max_pool2d_p = primitive("max_pool2d", _max_pool2d, "reduction")
max_pool2d_grad_p = primitive("max_pool2d_grad", _max_pool2d_grad, "movement")
max_pool2d_gather_p = primitive("max_pool2d_gather", _max_pool2d_gather, "movement")
avg_pool2d_p = primitive("avg_pool2d", _avg_pool2d, "reduction")
avg_pool2d_grad_p = primitive("avg_pool2d_grad", _avg_pool2d_grad, "movement")


# ---------------------------------------------------------------------------------------------
# VJP rules (the table in the module docstring).
# ---------------------------------------------------------------------------------------------
def _shape(x: Any) -> tuple[int, ...]:
    return tuple(x.shape)


defvjp(
    conv2d_p,
    lambda g, ans, x, w, stride, padding: conv2d_grad_input_p(g, w, stride=stride, padding=padding, shape=_shape(x)),
    lambda g, ans, x, w, stride, padding: conv2d_grad_weight_p(x, g, stride=stride, padding=padding, shape=_shape(w)),
)
defvjp(
    conv2d_grad_input_p,
    lambda c, ans, g, w, stride, padding, shape: conv2d_p(c, w, stride=stride, padding=padding),
    lambda c, ans, g, w, stride, padding, shape: conv2d_grad_weight_p(
        c, g, stride=stride, padding=padding, shape=_shape(w)
    ),
)
defvjp(
    conv2d_grad_weight_p,
    lambda c, ans, x, g, stride, padding, shape: conv2d_grad_input_p(
        g, c, stride=stride, padding=padding, shape=_shape(x)
    ),
    lambda c, ans, x, g, stride, padding, shape: conv2d_p(x, c, stride=stride, padding=padding),
)
defvjp(
    max_pool2d_p,
    lambda g, ans, x, kernel, stride, padding: max_pool2d_grad_p(g, x, kernel=kernel, stride=stride, padding=padding),
)
defvjp(
    max_pool2d_grad_p,
    lambda c, ans, g, x, kernel, stride, padding: max_pool2d_gather_p(
        c, x, kernel=kernel, stride=stride, padding=padding
    ),
    ZERO,
)
defvjp(
    max_pool2d_gather_p,
    lambda c, ans, a, x, kernel, stride, padding: max_pool2d_grad_p(
        c, x, kernel=kernel, stride=stride, padding=padding
    ),
    ZERO,
)
defvjp(
    avg_pool2d_p,
    lambda g, ans, x, kernel, stride, padding, include_pad: avg_pool2d_grad_p(
        g, kernel=kernel, stride=stride, padding=padding, include_pad=include_pad, shape=_shape(x)
    ),
)
defvjp(
    avg_pool2d_grad_p,
    lambda c, ans, g, kernel, stride, padding, include_pad, shape: avg_pool2d_p(
        c, kernel=kernel, stride=stride, padding=padding, include_pad=include_pad
    ),
)


# ---------------------------------------------------------------------------------------------
# The public operations: argument checking, then one primitive.
# ---------------------------------------------------------------------------------------------
def pair(v: int | tuple[int, int] | list[int], name: str = "value") -> Pair:
    """``3 -> (3, 3)``; a pair is checked and returned as a tuple of Python ints."""
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    try:
        a, b = v
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}") from None
    return int(a), int(b)


def _array(x: Any) -> Any:
    return x if type(x) is Tracer or isinstance(x, (np.ndarray, DeviceArray)) else np.asarray(x)


def _check_nchw(op: str, x: Any) -> None:
    if len(x.shape) != 4:
        raise ValueError(f"{op}: expected a 4-D input (N, C, H, W), got shape {tuple(x.shape)}")


def conv2d(x: Any, w: Any, b: Any = None, stride: int | Pair = 1, padding: int | Pair = 0) -> Any:
    """2-D cross-correlation, as ``torch.nn.functional.conv2d``: ``x`` (N, C, H, W), ``w`` (O, C, KH, KW).

    ``b`` (O,) is an optional bias; ``stride`` and ``padding`` (zeros) are ints or (h, w) pairs.
    Returns (N, O, OH, OW) with ``OH = (H + 2 * padding - KH) // stride + 1``.
    """
    x, w = _array(x), _array(w)
    _check_nchw("conv2d", x)
    if len(w.shape) != 4:
        raise ValueError(f"conv2d: expected a 4-D weight (O, C, KH, KW), got shape {tuple(w.shape)}")
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"conv2d: the input has {x.shape[1]} channels but the weight expects {w.shape[1]}")
    s, p = pair(stride, "stride"), pair(padding, "padding")
    if min(s) < 1 or min(p) < 0:
        raise ValueError(f"conv2d: stride must be >= 1 and padding >= 0, got stride={s}, padding={p}")
    if x.shape[2] + 2 * p[0] < w.shape[2] or x.shape[3] + 2 * p[1] < w.shape[3]:
        raise ValueError(f"conv2d: a {w.shape[2:]} kernel does not fit a {x.shape[2:]} input with padding {p}")
    y = conv2d_p(x, w, stride=s, padding=p)
    if b is not None:
        y = y + np.reshape(b, (-1, 1, 1))
    return y


def _pool_args(op: str, x: Any, kernel: Any, stride: Any, padding: Any) -> tuple[Pair, Pair, Pair]:
    _check_nchw(op, x)
    k = pair(kernel, "kernel")
    s = k if stride is None else pair(stride, "stride")
    p = pair(padding, "padding")
    if min(k) < 1 or min(s) < 1 or min(p) < 0:
        raise ValueError(f"{op}: kernel and stride must be >= 1, padding >= 0; got {k}, {s}, {p}")
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"{op}: padding {p} must be at most half the kernel {k} (as in PyTorch)")
    if x.shape[2] + 2 * p[0] < k[0] or x.shape[3] + 2 * p[1] < k[1]:
        raise ValueError(f"{op}: a {k} window does not fit a {tuple(x.shape[2:])} input with padding {p}")
    return k, s, p


def max_pool2d(x: Any, kernel: int | Pair, stride: int | Pair | None = None, padding: int | Pair = 0) -> Any:
    """Window maxima of ``x`` (N, C, H, W); ``stride`` defaults to ``kernel``; padding is never the max.

    The gradient goes to the first maximum of each window (row-major order); overlapping windows
    that pick the same element add up.
    """
    x = _array(x)
    k, s, p = _pool_args("max_pool2d", x, kernel, stride, padding)
    return max_pool2d_p(x, kernel=k, stride=s, padding=p)


def avg_pool2d(
    x: Any,
    kernel: int | Pair,
    stride: int | Pair | None = None,
    padding: int | Pair = 0,
    count_include_pad: bool = True,
) -> Any:
    """Window means of ``x`` (N, C, H, W); padding counts as zeros unless ``count_include_pad=False``."""
    x = _array(x)
    k, s, p = _pool_args("avg_pool2d", x, kernel, stride, padding)
    return avg_pool2d_p(x, kernel=k, stride=s, padding=p, include_pad=bool(count_include_pad))
