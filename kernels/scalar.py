"""Scalar helpers for the CPU executor's compiled code: NumPy's exact scalar semantics in Numba.

Every function here is ``@njit`` (small: LLVM inlines them) and works on ``float64`` and ``float32`` alike
(``i``-prefixed ones on ``int64``); the interpreter's op loops and fused loops call them through the
expressions of ``ops.EXPR``. They reproduce NumPy's definitions where Numba's or C's differ:

- ``remainder``/``floor_divide``: NumPy's ``npy_divmod`` (the sign of the divisor; ``x // 0`` is
  ``x / 0``), and the integer versions (``x // 0 == x % 0 == 0``);
- ``maximum``/``minimum`` propagate NaN, ``fmax``/``fmin`` ignore it; ``sign(nan)`` is NaN;
- ``logaddexp``/``logaddexp2`` as ``npy_logaddexp`` (``x == y`` handled exactly, so ``inf`` works);
- ``sinc`` as ``numpy.sinc`` (``pi * x`` with ``x == 0`` replaced by ``1e-20``);
- ``floor``, ``ceil``, ``trunc``, ``rint``, ``exp2``, ``cbrt``, ``log2`` call the C library by name
  (``floor``/``floorf``, ...), as NumPy does; Python's ``math.floor`` would return an int.

The transcendental functions ``exp``, ``log``, ``log1p``, ``expm1``, ``sin``, ``cos``, ``tanh`` come
from ``gradjit.kernels.vmath`` when that module provides them (branch-free implementations LLVM can
vectorize), otherwise from ``math`` (the C library). ``as_pointer`` turns an address into a typed
pointer, for ``numba.carray`` over memory the executor owns.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from . import ops

_scalar = numba.njit(error_model="numpy")


def like(x, c):
    """The constant ``c`` in the type of ``x`` (Numba would promote ``float32 + 0.5`` to float64)."""
    return c


@overload(like)
def _like(x, c):
    if x == types.float32:
        return lambda x, c: np.float32(c)
    if x == types.float64:
        return lambda x, c: np.float64(c)
    return lambda x, c: np.int64(c)


def round32(x):
    """A float64 value rounded to float32 (and back); integers unchanged. Keeps the type of ``x``."""
    return x


@overload(round32)
def _round32(x):
    if isinstance(x, types.Float):
        return lambda x: np.float64(np.float32(x))
    return lambda x: x


@intrinsic
def as_pointer(typingctx, address, dtype):
    """``as_pointer(address, np.float64)``: the int64 ``address`` as a ``float64*``."""
    ptr_t = types.CPointer(dtype.dtype)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(ptr_t))

    return ptr_t(address, dtype), codegen


def _libm(name: str, arity: int = 1):
    """An intrinsic calling the C library's ``name`` (``namef`` for float32) by symbol name."""

    def typer(typingctx, *args):
        if len(args) != arity or args[0] not in (types.float64, types.float32) or any(a != args[0] for a in args):
            return None

        def codegen(context, builder, signature, llargs):
            ty = context.get_value_type(signature.args[0])
            symbol = name if signature.args[0] == types.float64 else name + "f"
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ty, [ty] * arity), symbol)
            return builder.call(fn, llargs)

        return args[0](*args), codegen

    if arity == 1:

        def call(typingctx, x):
            return typer(typingctx, x)

    else:

        def call(typingctx, x, y):
            return typer(typingctx, x, y)

    call.__name__ = name
    return intrinsic(call)


floor = _libm("floor")
ceil = _libm("ceil")
trunc = _libm("trunc")
rint = _libm("rint")
exp2 = _libm("exp2")
cbrt = _libm("cbrt")
log2 = _libm("log2")
fmod = _libm("fmod", 2)


try:
    from . import vmath as _vmath
except ImportError:  # not written yet, or removed: the C library's functions
    _vmath = None


@_scalar
def _exp(x):
    return math.exp(x)


@_scalar
def _log(x):
    return math.log(x)


@_scalar
def _log1p(x):
    return math.log1p(x)


@_scalar
def _expm1(x):
    return math.expm1(x)


@_scalar
def _sin(x):
    return math.sin(x)


@_scalar
def _cos(x):
    return math.cos(x)


@_scalar
def _tanh(x):
    return math.tanh(x)


def _pick(name: str, fallback):
    fn = getattr(_vmath, name, None)
    if fn is None:
        return fallback
    return fn if isinstance(fn, numba.core.registry.CPUDispatcher) else _scalar(fn)


exp = _pick("exp", _exp)
log = _pick("log", _log)
log1p = _pick("log1p", _log1p)
expm1 = _pick("expm1", _expm1)
sin = _pick("sin", _sin)
cos = _pick("cos", _cos)
tanh = _pick("tanh", _tanh)


@_scalar
def remainder(a, b):
    mod = fmod(a, b)
    if b == 0:
        return mod
    if mod != 0:
        if (b < 0) != (mod < 0):
            mod += b
    else:
        mod = math.copysign(like(mod, 0.0), b)
    return mod


@_scalar
def floor_divide(a, b):
    if b == 0:
        return a / b
    mod = fmod(a, b)
    div = (a - mod) / b
    if mod != 0:
        if (b < 0) != (mod < 0):
            div -= like(div, 1.0)
    if div != 0:
        fl = floor(div)
        if div - fl > like(div, 0.5):
            fl += like(div, 1.0)
        return fl
    return math.copysign(like(div, 0.0), a / b)


@_scalar
def ifloor_divide(a, b):
    if b == 0:
        return a * 0
    if b == -1:
        return -a  # wraps for the smallest integer, as NumPy's does
    q = a // b
    return q


@_scalar
def iremainder(a, b):
    if b == 0:
        return a * 0
    if b == -1:
        return a * 0
    return a % b


@_scalar
def maximum(a, b):
    return a if (a >= b or a != a) else b


@_scalar
def minimum(a, b):
    return a if (a <= b or a != a) else b


@_scalar
def fmax(a, b):
    return a if (a >= b or b != b) else b


@_scalar
def fmin(a, b):
    return a if (a <= b or b != b) else b


@_scalar
def power(x, y):
    """``x ** y`` with the exponents gradients make most (0, 1, 2: ``d(u**2)`` is ``2 * u**1``)
    computed exactly without libm's ``pow``, which is a call per element that stops vectorization.
    The same values as ``pow`` (IEEE: ``x**0 == 1`` even for NaN, ``x**1 == x``; ``x*x`` is correctly
    rounded); an exponent invariant over a loop lets LLVM pick the loop once."""
    if y == 2:
        return x * x
    if y == 1:
        return x
    if y == 0:
        return like(x, 1.0)
    return x**y


@_scalar
def power012(x, y):
    """``power(x, y)`` for ``y`` in (0, 1, 2) only, as selects (a loop calling it vectorizes)."""
    return x * x if y == 2 else (x if y == 1 else like(x, 1.0))


@_scalar
def sign(x):
    if x > 0:
        return like(x, 1.0)
    if x < 0:
        return like(x, -1.0)
    return like(x, 0.0) if x == 0 else x  # +0 for -0 too, as NumPy; NaN stays


@_scalar
def isign(x):
    return (x > 0) - (x < 0)


@_scalar
def signbit(x):
    return math.copysign(1.0, x) < 0


@_scalar
def logaddexp(x, y):
    if x == y:
        return x + like(x, 0.6931471805599453)  # log(2)
    t = x - y
    if t > 0:
        return x + log1p(exp(-t))
    if t <= 0:
        return y + log1p(exp(t))
    return t  # NaN


@_scalar
def logaddexp2(x, y):
    if x == y:
        return x + like(x, 1.0)
    t = x - y
    if t > 0:
        return x + like(x, 1.4426950408889634) * log1p(exp2(-t))  # log2(e) * log1p
    if t <= 0:
        return y + like(x, 1.4426950408889634) * log1p(exp2(t))
    return t


@_scalar
def sinc(x):
    y = like(x, np.pi) * (x if x != 0 else like(x, 1.0e-20))
    return sin(y) / y


# -- small matrix products: the dot product of contiguous rows ---------------------------------------
LANES = 8


@intrinsic
def dot_lanes(typingctx, pa, pb, k):
    """``sum(a[t] * b[t] for t < k)`` over ``float64*``/``float32*`` pointers, in float64, in ``LANES``
    partial sums (lane ``t % 8`` takes term ``t``), then ``((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7))``.

    Written as vector instructions, so it is vectorized whatever LLVM decides about the code around
    it (which, for a 16x16 matrix-vector product with constant shapes, is to vectorize across rows
    with gathers: 3x slower). The interpreter and compiled templates both call it: same numbers."""
    floats = (types.float64, types.float32)
    if not all(isinstance(p, types.CPointer) and p.dtype in floats for p in (pa, pb)):
        return None
    if not isinstance(k, (types.Integer, types.IntegerLiteral)):
        return None

    def codegen(context, builder, signature, args):
        a, b, n = args
        f64 = ir.DoubleType()
        v8 = ir.VectorType(f64, LANES)
        i64 = ir.IntType(64)
        i32 = ir.IntType(32)
        acc = cgutils.alloca_once_value(builder, ir.Constant(v8, [0.0] * LANES))  # promoted to a register

        def vload(ptr, idx):
            el = ptr.type.pointee
            vp = builder.bitcast(builder.gep(ptr, [idx]), ir.VectorType(el, LANES).as_pointer())
            v = builder.load(vp, align=4 if el == ir.FloatType() else 8)
            return builder.fpext(v, v8) if el == ir.FloatType() else v

        def sload(ptr, idx):
            v = builder.load(builder.gep(ptr, [idx]))
            return builder.fpext(v, f64) if v.type == ir.FloatType() else v

        full = builder.udiv(n, ir.Constant(i64, LANES))
        with cgutils.for_range(builder, full) as loop:
            t = builder.mul(loop.index, ir.Constant(i64, LANES))
            builder.store(builder.fadd(builder.load(acc), builder.fmul(vload(a, t), vload(b, t))), acc)
        t0 = builder.mul(full, ir.Constant(i64, LANES))
        with cgutils.for_range(builder, builder.sub(n, t0)) as loop:  # the tail: lane l takes term t0 + l
            t = builder.add(t0, loop.index)
            vec = builder.load(acc)
            lane = builder.extract_element(vec, loop.index)
            vec = builder.insert_element(vec, builder.fadd(lane, builder.fmul(sload(a, t), sload(b, t))), loop.index)
            builder.store(vec, acc)

        # ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7)) by halving shuffles: the same additions
        def pick(v, idx):
            return builder.shuffle_vector(v, ir.Constant(v.type, None), ir.Constant(ir.VectorType(i32, len(idx)), idx))

        vec = builder.load(acc)
        pairs = builder.fadd(pick(vec, [0, 2, 4, 6]), pick(vec, [1, 3, 5, 7]))  # r0+r1, r2+r3, r4+r5, r6+r7
        quads = builder.fadd(pick(pairs, [0, 2]), pick(pairs, [1, 3]))
        lo, hi = (builder.extract_element(quads, ir.Constant(i32, j)) for j in (0, 1))
        return builder.fadd(lo, hi)

    return types.float64(pa, pb, types.int64), codegen


# -- reductions: NumPy's summation order, shared by the interpreter and fused loops --------------------
@_scalar
def pairwise_leaf(z, lo, n):
    """NumPy's pairwise-summation leaf (``n <= 128``): eight partial sums, then the rest."""
    if n < 8:
        res = like(z[lo], 0.0)
        for i in range(n):
            res += z[lo + i]
        return res
    r0, r1, r2, r3 = z[lo], z[lo + 1], z[lo + 2], z[lo + 3]
    r4, r5, r6, r7 = z[lo + 4], z[lo + 5], z[lo + 6], z[lo + 7]
    m = n - n % 8
    for i in range(8, m, 8):
        r0 += z[lo + i]
        r1 += z[lo + i + 1]
        r2 += z[lo + i + 2]
        r3 += z[lo + i + 3]
        r4 += z[lo + i + 4]
        r5 += z[lo + i + 5]
        r6 += z[lo + i + 6]
        r7 += z[lo + i + 7]
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for i in range(m, n):
        res += z[lo + i]
    return res


def _pairwise_level(inner):
    """One level of NumPy's pairwise recursion above ``inner`` (Numba's disk cache cannot reload
    recursive functions, so the recursion is unrolled: each level halves ``n`` at a multiple of 8)."""

    @_scalar
    def level(z, lo, n):
        if n <= 128:
            return pairwise_leaf(z, lo, n)
        n2 = n // 2
        n2 -= n2 % 8
        return inner(z, lo, n2) + inner(z, lo + n2, n - n2)

    return level


# Levels cover n <= 128 * 2**5 (halves may exceed n / 2 by up to 8 per level): every BLK-sized block.
_pw = pairwise_leaf
for _ in range(6):
    _pw = _pairwise_level(_pw)
pairwise_sum = _pw
pairwise_sum.__doc__ = "NumPy's pairwise summation of ``z[lo:lo+n]`` (same order, same rounding), ``n <= 4096``."
assert ops.BLK <= 4096


@_scalar
def fold(kind, acc, v):
    if kind == ops.ACC_SUM:
        return acc + v
    if kind == ops.ACC_PROD:
        return acc * v
    if kind == ops.ACC_MAX:
        return v if (v > acc or v != v) else acc
    if kind == ops.ACC_MIN:
        return v if (v < acc or v != v) else acc
    one, zero = like(acc, 1.0), like(acc, 0.0)
    if kind == ops.ACC_ANY:
        return acc if acc != 0 else (one if v != 0 else zero)
    return acc if acc == 0 else (one if v != 0 else zero)  # ops.ACC_ALL
