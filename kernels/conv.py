"""Numba kernels for 2-D convolution and pooling (NCHW), the back end of ``gradjit.nn``'s primitives.

This module imports Numba at the top, so it is imported lazily: ``gradjit.nn``'s primitive
implementations import it the first time one of them runs, and ``import gradjit`` compiles nothing.

Three compiled kernels cover eight primitives, because Numba compile time is paid by every fresh
install (``cache=True`` keeps the machine code on disk afterwards, one entry per dtype):

- ``_conv2d_kernel``: one loop nest, three accumulations selected by ``mode``: the convolution
  (``y += x * w``), its adjoint with respect to the input (``x += y * w``) and with respect to the
  weight (``w += x * y``).
- ``_max_pool2d_kernel``: for each window find the argmax of ``x`` (the first maximum in row-major
  window order; a NaN wins over numbers, the first NaN over later ones), then either gather
  ``a[argmax]`` into the pooled output or scatter-add the pooled ``a`` to ``argmax``.
- ``_avg_pool2d_kernel``: the window mean and its adjoint (scatter ``a / count``).

Invariants
----------
- The Python wrappers below (``conv2d``, ``conv2d_grad_input``, ...) are the only entry points: they
  bring every operand to one C-contiguous, writable float32/float64 array type (so each kernel
  compiles once per dtype, never per layout) and allocate the output, which the kernels accumulate
  into. Integer inputs compute in float64.
- Windows are placed like PyTorch's (no ceil mode): ``out = (size + 2 * pad - kernel) // stride + 1``;
  padded positions never hold data (max pooling ignores them, average pooling counts them only when
  ``include_pad``).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

__all__ = [
    "conv2d",
    "conv2d_grad_input",
    "conv2d_grad_weight",
    "max_pool2d_gather",
    "max_pool2d_scatter",
    "avg_pool2d",
    "avg_pool2d_grad",
    "out_size",
]


def out_size(size: int, kernel: int, stride: int, pad: int) -> int:
    """Number of window positions along one axis."""
    return (size + 2 * pad - kernel) // stride + 1


@numba.njit(cache=True, inline="always")
def _valid_range(k: int, pad: int, stride: int, size: int, n_out: int) -> tuple[int, int]:
    # Output positions o with 0 <= o * stride - pad + k < size (the tap k of the window lands on data).
    lo = 0 if pad - k <= 0 else (pad - k + stride - 1) // stride
    hi = min(n_out, (size - 1 + pad - k) // stride + 1)
    return lo, hi


@numba.njit(cache=True)
def _conv2d_kernel(x, w, y, sh, sw, ph, pw, mode):  # noqa: ANN001, ANN202 (Numba)
    n_batch, n_in, h, wd = x.shape
    n_out, _, kh, kw = w.shape
    oh_n, ow_n = y.shape[2], y.shape[3]
    for n in range(n_batch):
        for o in range(n_out):
            for c in range(n_in):
                for i in range(kh):
                    oh_lo, oh_hi = _valid_range(i, ph, sh, h, oh_n)
                    for j in range(kw):
                        ow_lo, ow_hi = _valid_range(j, pw, sw, wd, ow_n)
                        if mode == 0:  # y += conv(x, w)
                            wv = w[o, c, i, j]
                            for oh in range(oh_lo, oh_hi):
                                ih = oh * sh - ph + i
                                for ow in range(ow_lo, ow_hi):
                                    y[n, o, oh, ow] += wv * x[n, c, ih, ow * sw - pw + j]
                        elif mode == 1:  # x += adjoint of conv in x, applied to y
                            wv = w[o, c, i, j]
                            for oh in range(oh_lo, oh_hi):
                                ih = oh * sh - ph + i
                                for ow in range(ow_lo, ow_hi):
                                    x[n, c, ih, ow * sw - pw + j] += wv * y[n, o, oh, ow]
                        else:  # w += correlation of x with y
                            acc = 0.0
                            for oh in range(oh_lo, oh_hi):
                                ih = oh * sh - ph + i
                                for ow in range(ow_lo, ow_hi):
                                    acc += x[n, c, ih, ow * sw - pw + j] * y[n, o, oh, ow]
                            w[o, c, i, j] += acc


@numba.njit(cache=True)
def _max_pool2d_kernel(a, x, out, kh, kw, sh, sw, ph, pw, scatter):  # noqa: ANN001, ANN202 (Numba)
    n_batch, n_ch, h, wd = x.shape
    if scatter:
        oh_n, ow_n = a.shape[2], a.shape[3]
    else:
        oh_n, ow_n = out.shape[2], out.shape[3]
    for n in range(n_batch):
        for c in range(n_ch):
            for oh in range(oh_n):
                h0 = oh * sh - ph
                for ow in range(ow_n):
                    w0 = ow * sw - pw
                    bi = -1
                    bj = -1
                    best = x[n, c, 0, 0]
                    for i in range(max(h0, 0), min(h0 + kh, h)):
                        for j in range(max(w0, 0), min(w0 + kw, wd)):
                            v = x[n, c, i, j]
                            if bi < 0 or v > best or (v != v and best == best):
                                best = v
                                bi = i
                                bj = j
                    if bi < 0:
                        continue  # a window of padding only (excluded by the wrapper's checks)
                    if scatter:
                        out[n, c, bi, bj] += a[n, c, oh, ow]
                    else:
                        out[n, c, oh, ow] = a[n, c, bi, bj]


@numba.njit(cache=True)
def _avg_pool2d_kernel(a, out, kh, kw, sh, sw, ph, pw, adjoint, include_pad):  # noqa: ANN001, ANN202 (Numba)
    if adjoint:
        n_batch, n_ch, h, wd = out.shape
        oh_n, ow_n = a.shape[2], a.shape[3]
    else:
        n_batch, n_ch, h, wd = a.shape
        oh_n, ow_n = out.shape[2], out.shape[3]
    for n in range(n_batch):
        for c in range(n_ch):
            for oh in range(oh_n):
                h0 = oh * sh - ph
                i_lo, i_hi = max(h0, 0), min(h0 + kh, h)
                for ow in range(ow_n):
                    w0 = ow * sw - pw
                    j_lo, j_hi = max(w0, 0), min(w0 + kw, wd)
                    count = kh * kw if include_pad else (i_hi - i_lo) * (j_hi - j_lo)
                    if count == 0:
                        continue
                    if adjoint:
                        v = a[n, c, oh, ow] / count
                        for i in range(i_lo, i_hi):
                            for j in range(j_lo, j_hi):
                                out[n, c, i, j] += v
                    else:
                        acc = 0.0
                        for i in range(i_lo, i_hi):
                            for j in range(j_lo, j_hi):
                                acc += a[n, c, i, j]
                        out[n, c, oh, ow] = acc / count


# ---------------------------------------------------------------------------------------------
# Python wrappers: operand normalization and output allocation.
# ---------------------------------------------------------------------------------------------
def _dtype(*xs: Any) -> np.dtype:
    dt = np.result_type(*xs)
    return dt if dt in (np.float32, np.float64) else np.dtype(np.float64)


def _prep(x: Any, dt: np.dtype) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=dt)
    return x if x.flags.writeable else x.copy()  # a read-only array is a distinct Numba type


def _check4(name: str, **arrays: Any) -> None:
    for k, v in arrays.items():
        if np.ndim(v) != 4:
            raise ValueError(f"{name}: {k} must be 4-D (NCHW / OIHW), got shape {np.shape(v)}")


def conv2d(x: Any, w: Any, stride: tuple[int, int], padding: tuple[int, int]) -> np.ndarray:
    """Cross-correlation of ``x`` (N, C, H, W) with ``w`` (O, C, KH, KW), as ``torch.nn.functional.conv2d``."""
    _check4("conv2d", x=x, w=w)
    if np.shape(x)[1] != np.shape(w)[1]:
        raise ValueError(f"conv2d: input has {np.shape(x)[1]} channels but the weight expects {np.shape(w)[1]}")
    dt = _dtype(x, w)
    x, w = _prep(x, dt), _prep(w, dt)
    n, _, h, wd = x.shape
    o, _, kh, kw = w.shape
    oh, ow = out_size(h, kh, stride[0], padding[0]), out_size(wd, kw, stride[1], padding[1])
    if oh <= 0 or ow <= 0:
        raise ValueError(f"conv2d: a {kh}x{kw} kernel does not fit a {h}x{wd} input with padding {padding}")
    y = np.zeros((n, o, oh, ow), dtype=dt)
    _conv2d_kernel(x, w, y, stride[0], stride[1], padding[0], padding[1], 0)
    return y


def conv2d_grad_input(
    g: Any, w: Any, stride: tuple[int, int], padding: tuple[int, int], shape: tuple[int, ...]
) -> np.ndarray:
    """The adjoint of ``conv2d`` in its input: ``g`` (N, O, OH, OW) back to an input of ``shape``."""
    dt = _dtype(g, w)
    g, w = _prep(g, dt), _prep(w, dt)
    dx = np.zeros(shape, dtype=dt)
    _conv2d_kernel(dx, w, g, stride[0], stride[1], padding[0], padding[1], 1)
    return dx


def conv2d_grad_weight(
    x: Any, g: Any, stride: tuple[int, int], padding: tuple[int, int], shape: tuple[int, ...]
) -> np.ndarray:
    """The adjoint of ``conv2d`` in its weight: correlate ``x`` with ``g`` into a weight of ``shape``."""
    dt = _dtype(x, g)
    x, g = _prep(x, dt), _prep(g, dt)
    dw = np.zeros(shape, dtype=dt)
    _conv2d_kernel(x, dw, g, stride[0], stride[1], padding[0], padding[1], 2)
    return dw


def max_pool2d_gather(
    a: Any, x: Any, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> np.ndarray:
    """``a`` (shaped like ``x``) read at the argmax of each window of ``x``; ``max_pool2d(x) = gather(x, x)``."""
    dt = _dtype(a, x)
    a, x = _prep(a, dt), _prep(x, dt)
    n, c, h, wd = x.shape
    out = np.zeros(
        (n, c, out_size(h, kernel[0], stride[0], padding[0]), out_size(wd, kernel[1], stride[1], padding[1])), dt
    )
    _max_pool2d_kernel(a, x, out, kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[1], False)
    return out


def max_pool2d_scatter(
    a: Any, x: Any, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> np.ndarray:
    """The pooled ``a`` added at the argmax of each window of ``x``: the gradient of max pooling."""
    dt = _dtype(a, x)
    a, x = _prep(a, dt), _prep(x, dt)
    out = np.zeros(x.shape, dt)
    _max_pool2d_kernel(a, x, out, kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[1], True)
    return out


def avg_pool2d(
    x: Any, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int], include_pad: bool
) -> np.ndarray:
    """Window means of ``x`` (N, C, H, W)."""
    dt = _dtype(x)
    x = _prep(x, dt)
    n, c, h, wd = x.shape
    out = np.zeros(
        (n, c, out_size(h, kernel[0], stride[0], padding[0]), out_size(wd, kernel[1], stride[1], padding[1])), dt
    )
    _avg_pool2d_kernel(x, out, kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[1], False, include_pad)
    return out


def avg_pool2d_grad(
    g: Any,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    include_pad: bool,
    shape: tuple[int, ...],
) -> np.ndarray:
    """The adjoint of ``avg_pool2d``: each pooled ``g`` spread over its window, into an input of ``shape``."""
    dt = _dtype(g)
    g = _prep(g, dt)
    out = np.zeros(shape, dt)
    _avg_pool2d_kernel(g, out, kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[1], True, include_pad)
    return out
