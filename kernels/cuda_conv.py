"""CUDA kernels for 2-D convolution and pooling (NCHW): the device versions of ``kernels/conv.py``.

Same entry points, arguments and results as the CPU module (``gradjit.nn.ops`` picks this one when an
operand is a device array). Every kernel computes one output element per thread as a sum it reads
(a *gather*), so no two threads write the same element: no atomics, and results do not depend on
thread timing. The adjoints are gathers too: an input element sums the window positions that read it.

Semantics follow the CPU kernels exactly: windows like PyTorch's (no ceil mode), padding never holds
data, max pooling picks the first maximum in row-major window order (a NaN wins, the first NaN over
later ones), average pooling counts padding only with ``include_pad``. Integer operands compute in
float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda

from gradjit.placement import DeviceArray

from . import cuda as C

Pair = tuple[int, int]

__all__ = [
    "conv2d",
    "conv2d_grad_input",
    "conv2d_grad_weight",
    "max_pool2d_gather",
    "max_pool2d_scatter",
    "avg_pool2d",
    "avg_pool2d_grad",
]

_jit = cuda.jit(cache=C.CACHE)


@_jit
def _conv(x, w, y, N, Cin, H, W, NO, KH, KW, OH, OW, sh, sw, ph, pw):  # noqa: N803
    t = cuda.grid(1)
    while t < N * NO * OH * OW:
        ow = t % OW
        r = t // OW
        oh = r % OH
        r = r // OH
        o = r % NO
        n = r // NO
        acc = x[0] * 0
        for c in range(Cin):
            for i in range(KH):
                ih = oh * sh - ph + i
                if 0 <= ih < H:
                    for j in range(KW):
                        iw = ow * sw - pw + j
                        if 0 <= iw < W:
                            acc += w[((o * Cin + c) * KH + i) * KW + j] * x[((n * Cin + c) * H + ih) * W + iw]
        y[t] = acc
        t += cuda.gridsize(1)


@_jit
def _conv_grad_input(g, w, dx, N, Cin, H, W, NO, KH, KW, OH, OW, sh, sw, ph, pw):  # noqa: N803
    t = cuda.grid(1)
    while t < N * Cin * H * W:
        iw = t % W
        r = t // W
        ih = r % H
        r = r // H
        c = r % Cin
        n = r // Cin
        acc = g[0] * 0
        for i in range(KH):
            a = ih + ph - i
            if a >= 0 and a % sh == 0 and a // sh < OH:
                oh = a // sh
                for j in range(KW):
                    b = iw + pw - j
                    if b >= 0 and b % sw == 0 and b // sw < OW:
                        ow = b // sw
                        for o in range(NO):
                            acc += w[((o * Cin + c) * KH + i) * KW + j] * g[((n * NO + o) * OH + oh) * OW + ow]
        dx[t] = acc
        t += cuda.gridsize(1)


@_jit
def _conv_grad_weight(x, g, dw, N, Cin, H, W, NO, KH, KW, OH, OW, sh, sw, ph, pw):  # noqa: N803
    t = cuda.grid(1)
    while t < NO * Cin * KH * KW:
        j = t % KW
        r = t // KW
        i = r % KH
        r = r // KH
        c = r % Cin
        o = r // Cin
        acc = x[0] * 0
        for n in range(N):
            for oh in range(OH):
                ih = oh * sh - ph + i
                if 0 <= ih < H:
                    for ow in range(OW):
                        iw = ow * sw - pw + j
                        if 0 <= iw < W:
                            acc += x[((n * Cin + c) * H + ih) * W + iw] * g[((n * NO + o) * OH + oh) * OW + ow]
        dw[t] = acc
        t += cuda.gridsize(1)


@cuda.jit(device=True)
def _argmax_window(x, base, H, W, h0, w0, KH, KW):  # noqa: N803
    bi = -1
    best = x[base]
    for i in range(max(h0, 0), min(h0 + KH, H)):
        for j in range(max(w0, 0), min(w0 + KW, W)):
            v = x[base + i * W + j]
            if bi < 0 or v > best or (v != v and best == best):
                best = v
                bi = i * W + j
    return bi


@_jit
def _max_gather(a, x, out, NC, H, W, OH, OW, KH, KW, sh, sw, ph, pw):  # noqa: N803
    t = cuda.grid(1)
    while t < NC * OH * OW:
        ow = t % OW
        r = t // OW
        oh = r % OH
        nc = r // OH
        base = nc * H * W
        k = _argmax_window(x, base, H, W, oh * sh - ph, ow * sw - pw, KH, KW)
        out[t] = a[base + k] if k >= 0 else a[0] * 0
        t += cuda.gridsize(1)


@_jit
def _max_scatter(a, x, out, NC, H, W, OH, OW, KH, KW, sh, sw, ph, pw):  # noqa: N803
    t = cuda.grid(1)
    while t < NC * H * W:
        iw = t % W
        r = t // W
        ih = r % H
        nc = r // H
        base = nc * H * W
        acc = a[0] * 0
        # windows (oh, ow) whose span covers (ih, iw): oh * sh - ph <= ih < oh * sh - ph + KH
        for oh in range(max(0, (ih + ph - KH) // sh + 1), min(OH, (ih + ph) // sh + 1)):
            for ow in range(max(0, (iw + pw - KW) // sw + 1), min(OW, (iw + pw) // sw + 1)):
                if _argmax_window(x, base, H, W, oh * sh - ph, ow * sw - pw, KH, KW) == ih * W + iw:
                    acc += a[(nc * OH + oh) * OW + ow]
        out[t] = acc
        t += cuda.gridsize(1)


@_jit
def _avg(a, out, NC, H, W, OH, OW, KH, KW, sh, sw, ph, pw, include_pad):  # noqa: N803
    t = cuda.grid(1)
    while t < NC * OH * OW:
        ow = t % OW
        r = t // OW
        oh = r % OH
        nc = r // OH
        h0 = oh * sh - ph
        w0 = ow * sw - pw
        i_lo, i_hi = max(h0, 0), min(h0 + KH, H)
        j_lo, j_hi = max(w0, 0), min(w0 + KW, W)
        count = KH * KW if include_pad else (i_hi - i_lo) * (j_hi - j_lo)
        acc = a[0] * 0
        for i in range(i_lo, i_hi):
            for j in range(j_lo, j_hi):
                acc += a[(nc * H + i) * W + j]
        out[t] = acc / count if count > 0 else acc
        t += cuda.gridsize(1)


@_jit
def _avg_grad(g, out, NC, H, W, OH, OW, KH, KW, sh, sw, ph, pw, include_pad):  # noqa: N803
    t = cuda.grid(1)
    while t < NC * H * W:
        iw = t % W
        r = t // W
        ih = r % H
        nc = r // H
        acc = g[0] * 0
        for oh in range(max(0, (ih + ph - KH) // sh + 1), min(OH, (ih + ph) // sh + 1)):
            h0 = oh * sh - ph
            for ow in range(max(0, (iw + pw - KW) // sw + 1), min(OW, (iw + pw) // sw + 1)):
                w0 = ow * sw - pw
                if include_pad:
                    count = KH * KW
                else:
                    count = (min(h0 + KH, H) - max(h0, 0)) * (min(w0 + KW, W) - max(w0, 0))
                acc += g[(nc * OH + oh) * OW + ow] / count
        out[t] = acc
        t += cuda.gridsize(1)


# ---------------------------------------------------------------------------------------------
# Entry points: operands as contiguous device arrays of one float dtype, output allocated here.
# ---------------------------------------------------------------------------------------------
def _dtype(*xs: Any) -> np.dtype:
    dt = np.result_type(*[x.dtype if isinstance(x, DeviceArray) else x for x in xs])
    return dt if dt in (np.float32, np.float64) else np.dtype(np.float64)


def _prep(x: Any, dt: np.dtype) -> DeviceArray:
    if not isinstance(x, DeviceArray):
        (o,) = C.operands("conv/pool", [x])  # a host array here is a placement error
        x = C.from_host(np.asarray(o.value))
    return x if x.dtype == dt and x.is_contiguous and x._offset == 0 else C.copy(x, dt)


def _launch(kernel: Any, n: int, *args: Any) -> None:
    if n:
        kernel[C._grid(n), C.EW_THREADS](*args)


def _out(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


def conv2d(x: Any, w: Any, stride: Pair, padding: Pair) -> DeviceArray:
    dt = _dtype(x, w)
    x, w = _prep(x, dt), _prep(w, dt)
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    oh, ow = _out(h, kh, stride[0], padding[0]), _out(wd, kw, stride[1], padding[1])
    if oh <= 0 or ow <= 0:
        raise ValueError(f"conv2d: a {kh}x{kw} kernel does not fit a {h}x{wd} input with padding {padding}")
    y = C.empty((n, o, oh, ow), dt)
    _launch(_conv, y.size, x._buf, w._buf, y._buf, n, c, h, wd, o, kh, kw, oh, ow, *stride, *padding)
    return y


def conv2d_grad_input(g: Any, w: Any, stride: Pair, padding: Pair, shape: tuple[int, ...]) -> DeviceArray:
    dt = _dtype(g, w)
    g, w = _prep(g, dt), _prep(w, dt)
    n, c, h, wd = shape
    o, _, kh, kw = w.shape
    dx = C.empty(tuple(shape), dt)
    _launch(_conv_grad_input, dx.size, g._buf, w._buf, dx._buf, n, c, h, wd, o, kh, kw, *g.shape[2:], *stride, *padding)
    return dx


def conv2d_grad_weight(x: Any, g: Any, stride: Pair, padding: Pair, shape: tuple[int, ...]) -> DeviceArray:
    dt = _dtype(x, g)
    x, g = _prep(x, dt), _prep(g, dt)
    n, c, h, wd = x.shape
    o, _, kh, kw = shape
    dw = C.empty(tuple(shape), dt)
    _launch(
        _conv_grad_weight, dw.size, x._buf, g._buf, dw._buf, n, c, h, wd, o, kh, kw, *g.shape[2:], *stride, *padding
    )
    return dw


def _pool_shape(x: DeviceArray, kernel: tuple, stride: tuple, padding: tuple) -> Pair:
    return _out(x.shape[2], kernel[0], stride[0], padding[0]), _out(x.shape[3], kernel[1], stride[1], padding[1])


def max_pool2d_gather(a: Any, x: Any, kernel: Pair, stride: Pair, padding: Pair) -> Any:
    dt = _dtype(a, x)
    a, x = _prep(a, dt), _prep(x, dt)
    n, c, h, wd = x.shape
    oh, ow = _pool_shape(x, kernel, stride, padding)
    out = C.empty((n, c, oh, ow), dt)
    _launch(_max_gather, out.size, a._buf, x._buf, out._buf, n * c, h, wd, oh, ow, *kernel, *stride, *padding)
    return out


def max_pool2d_scatter(a: Any, x: Any, kernel: Pair, stride: Pair, padding: Pair) -> Any:
    dt = _dtype(a, x)
    a, x = _prep(a, dt), _prep(x, dt)
    n, c, h, wd = x.shape
    oh, ow = a.shape[2], a.shape[3]
    out = C.empty(x.shape, dt)
    _launch(_max_scatter, out.size, a._buf, x._buf, out._buf, n * c, h, wd, oh, ow, *kernel, *stride, *padding)
    return out


def avg_pool2d(x: Any, kernel: Pair, stride: Pair, padding: Pair, include_pad: bool) -> Any:
    dt = _dtype(x)
    x = _prep(x, dt)
    n, c, h, wd = x.shape
    oh, ow = _pool_shape(x, kernel, stride, padding)
    out = C.empty((n, c, oh, ow), dt)
    _launch(_avg, out.size, x._buf, out._buf, n * c, h, wd, oh, ow, *kernel, *stride, *padding, bool(include_pad))
    return out


def avg_pool2d_grad(
    g: Any,
    kernel: Pair,
    stride: Pair,
    padding: Pair,
    include_pad: bool,
    shape: tuple[int, ...],
) -> Any:
    dt = _dtype(g)
    g = _prep(g, dt)
    n, c, h, wd = shape
    oh, ow = g.shape[2], g.shape[3]
    out = C.empty(tuple(shape), dt)
    _launch(_avg_grad, out.size, g._buf, out._buf, n * c, h, wd, oh, ow, *kernel, *stride, *padding, bool(include_pad))
    return out
