"""Vectorizable exp, log, log1p, expm1, sin, cos and tanh for Numba-compiled loops.

Numba here has no SVML, so ``math.exp`` in a loop is a call into libm and LLVM cannot vectorize the
loop. The functions below use only arithmetic, comparisons (which become selects) and integer
operations on the bits of a float, so a loop that calls them is vectorized by LLVM (``<8 x double>``
with AVX-512, ``<4 x double>`` with AVX2) at NumPy's accuracy.

Use in compiled code (the fused loops of the CPU executor)::

    from gradjit.kernels.vmath import exp, log, log1p, expm1, sin, cos, tanh

    @numba.njit(cache=True, error_model="numpy")
    def kernel(x, out):
        for i in range(x.size):
            out[i] = tanh(x[i]) * exp(-x[i]) / x[i]

Each public function is a Numba dispatcher (``inline="always"``, a one-line body) that calls the
implementation for the argument's type through an LLVM ``alwaysinline`` call: the implementations
compile once per dtype (and are cached on disk), and LLVM copies their optimized bodies into the
caller, so the caller's loop holds no call and vectorizes, at about the compile time of a loop
without transcendentals (0.1-0.3 s). A float64 argument takes the float64 implementation, float32
the float32 one (the result has the argument's type), an integer or bool is converted to float64.
Called from Python a function compiles for that scalar type; ``apply(name, x)`` maps one over an
array. Two things in the *caller* also stop vectorization: Numba's default ``error_model="python"``
checks every ``/`` and ``//`` for a zero divisor (use ``error_model="numpy"``, which is NumPy's
semantics anyway), and ``math.*`` calls. CPU only (the CUDA target has libdevice's ``math.*``).

Methods (``x = 2^k * m`` throughout; every reduction is exact or carries its rounding error along)
-------------------------------------------------------------------------------------------------
- exp, expm1: ``k = rint(x / ln2)`` by the 1.5 * 2^52 shift trick (the integer ``k`` is then read
  from the low bits of the shifted value), ``r = x - k*ln2`` with a two-part (Cody-Waite) ln2,
  ``e^r = 1 + r + r^2 Q(r)`` with a degree-10 minimax ``Q``, the last additions done with their
  rounding errors added back (Fast2Sum), ``2^k`` built from bits (two factors, so subnormal results
  and ``k = 1024`` are exact scalings). expm1 evaluates ``2^k (1 + r + ...) - 1`` as a sum of two
  terms plus the error of that sum, so there is no cancellation near ``x = ln2``.
- log, log1p: fdlibm's method. ``m`` in ``[sqrt(2)/2, sqrt(2))`` from the bits, ``f = m - 1``,
  ``s = f / (2 + f)``, ``log(1+f) = f - f^2/2 + s (f^2/2 + R(s^2))`` with fdlibm's degree-7 ``R``.
  log1p reduces ``u = 1 + x`` and adds the rounding error of that sum back as ``c / u``.
- sin, cos: fdlibm's medium-size ``rem_pio2`` with the branch replaced by selects: ``n = rint(x *
  2/pi)``, ``x - n pi/2`` with pi/2 in three 33-bit parts plus tails (exact products for
  ``|n| < 2^20``), giving the reduced argument as a double-double ``y0 + y1``; fdlibm's sine and
  cosine kernels on ``[-pi/4, pi/4]``; both kernels are evaluated and the quadrant ``n & 3`` picks.
- tanh: ``x + x^3 P(x^2)`` (degree-10 minimax ``P``) for ``|x| < 0.55``, otherwise
  ``t / (t + 2)`` with ``t = expm1(2|x|)``, the denominator kept as an exact sum of two doubles and
  the quotient refined by one Newton step; both paths are evaluated and a select picks.
- float32: the same reductions computed in float64 with lower-degree polynomials (relative error
  below 2^-33 before the final rounding), then rounded once to float32; float32 subnormals are
  normal in float64, so they need no special path.

Invariants
----------
- No libm calls, no table look-ups, no data-dependent branches that LLVM cannot turn into selects:
  the special cases (inf, nan, 0, -0, subnormals, overflow and underflow thresholds, out-of-domain
  arguments) are handled by comparisons at the end of each function and agree with NumPy.
- No fast-math flags: inf and nan propagate as IEEE says. Polynomial steps use ``llvm.fmuladd``
  (fused where the target CPU has FMA, as every x86-64 CPU since 2013 and every ARM64 CPU does;
  else a multiply and an add), while the steps whose exactness matters (Cody-Waite products,
  Fast2Sum) are plain operations. The docstrings' numbers are measured with FMA; without it
  (e.g. ``NUMBA_CPU_NAME=generic`` on x86-64) tanh's float64 error reaches 1.23 ulp (its Newton
  step needs the fused residual) and expm1's 0.96 ulp, the others are unchanged. ``MAX_ULP``
  holds both ways.
- Error bounds: each function's docstring states the maximum error measured in ulps, against a
  reference computed in extended precision (x86 ``long double``, 11 extra bits for float64; float64
  for float32) and against NumPy itself; ``benchmarks/vmath_ulps.py`` measures them and writes
  ``benchmarks/results/vmath.md``. One ulp is the spacing of the target format at the reference.
- sin and cos are accurate for ``|x| <= 2^20 * pi/2 (about 1.6e6)``. Beyond that the product
  ``n * pi/2`` is no longer exact: the absolute error grows like ``|x| * 2^-53`` (about 1e-7 at
  1e9, so a few float32 ulps; ``O(1)`` past 1e16), the result stays finite and in [-1, 1] (``inf``
  and ``nan`` give ``nan``). A correct reduction there (Payne-Hanek) needs table look-ups; NumPy is
  exact there. A caller that must match NumPy everywhere can OR ``abs(x) > TRIG_EXACT_MAX`` into a
  flag inside its loop (that vectorizes) and redo the rare flagged call another way.

Constants: ``Q`` (exp/expm1), ``P`` (tanh) and the float32 polynomials are minimax fits made with
mpmath's 60-digit arithmetic (Remez exchange, weighted by their contribution to the result); the log
``Lg*``, sine ``S*``, cosine ``C*`` coefficients and the split constants of ln2 and pi/2 are fdlibm's
(Sun Microsystems, 1993, freely redistributable), whose stated bounds we re-checked the same way.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = [
    "exp",
    "log",
    "log1p",
    "expm1",
    "sin",
    "cos",
    "tanh",
    "apply",
    "FUNCTIONS",
    "MAX_ULP",
    "TRIG_EXACT_MAX",
    "CODE_VERSION",
]

CODE_VERSION = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
"""Hash of this file. Numba's disk cache of a *caller* does not notice when code inlined into it
changes: fold this into the cache key of generated code that calls these functions."""

# ---------------------------------------------------------------------------------------------
# LLVM-level helpers: bit casts and a contractible multiply-add.


@intrinsic
def _bits(typingctx, x):
    """The IEEE bit pattern of a float64 as an int64 (a free bitcast)."""
    if x != types.float64:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@intrinsic
def _from_bits(typingctx, i):
    """The float64 whose IEEE bit pattern is the int64 ``i``."""
    if i != types.int64:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@intrinsic
def _fma(typingctx, a, b, c):
    """``a * b + c`` via ``llvm.fmuladd``: one rounding where the CPU has FMA, two otherwise."""
    if not all(t == types.float64 for t in (a, b, c)):
        return None

    def codegen(context, builder, sig, args):
        d = ir.DoubleType()
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(d, [d, d, d]), "llvm.fmuladd.f64")
        return builder.call(fn, args)

    return types.float64(types.float64, types.float64, types.float64), codegen


@intrinsic
def _div(typingctx, a, b):
    """``a / b`` as a plain IEEE division: Numba's ``/`` checks for a zero divisor (raising
    ZeroDivisionError) unless the *caller* compiles with ``error_model="numpy"``, and that branch
    stops vectorization."""
    if not (a == types.float64 and b == types.float64):
        return None

    def codegen(context, builder, sig, args):
        return builder.fdiv(args[0], args[1])

    return types.float64(types.float64, types.float64), codegen


# ---------------------------------------------------------------------------------------------
# Constants.

_INF = np.inf
_NAN = np.nan
_SHIFT = 6755399441055744.0  # 1.5 * 2^52: (v + _SHIFT) - _SHIFT rounds v to an integer, |v| < 2^51
_SHIFT_BITS = 0x4338000000000000  # bits of _SHIFT; bits(v + _SHIFT) - _SHIFT_BITS = rint(v)
_MANT = 0x000FFFFFFFFFFFFF
_TINY = 2.2250738585072014e-308  # smallest normal float64
_TWO54 = 18014398509481984.0

_INV_LN2 = 1.4426950408889634
_LN2 = 0.6931471805599453
_LN2_HI = 0.6931471803691238  # 0x3fe62e42fee00000: 32 significant bits, k * _LN2_HI is exact
_LN2_LO = 1.9082149292705877e-10  # ln2 - _LN2_HI

# e^r = 1 + r + r^2 Q(r) on |r| <= ln2/2. Minimax for the relative error of expm1(r) (weight |r|):
# max |r (Q - Qtrue)| = 5.9e-19 with these doubles (so max |r^2 (Q - Qtrue)| is below that too).
_Q0 = 0.5
_Q1 = 0.16666666666666677
_Q2 = 0.0416666666666667
_Q3 = 0.008333333333321626
_Q4 = 0.0013888888888866858
_Q5 = 0.00019841269886132612
_Q6 = 2.480158736051702e-05
_Q7 = 2.7557244210864458e-06
_Q8 = 2.7557242792989123e-07
_Q9 = 2.510903389524912e-08
_Q10 = 2.0924433065655923e-09

# float32 version (evaluated in float64): max |r (Q - Qtrue)| = 5.2e-12.
_QF0 = 0.4999999999973626
_QF1 = 0.166666667544891
_QF2 = 0.0416666669550757
_QF3 = 0.008333288974612076
_QF4 = 0.001388880932015868
_QF5 = 0.00019904946624549357
_QF6 = 2.4882493511227073e-05

# log(1+f) = f - f^2/2 + s (f^2/2 + R(s^2)), s = f/(2+f); fdlibm: |R - Rtrue| <= 2^-58.45.
_LG1 = 6.666666666666735130e-01
_LG2 = 3.999999999940941908e-01
_LG3 = 2.857142874366239149e-01
_LG4 = 2.222219843214978396e-01
_LG5 = 1.818357216161805012e-01
_LG6 = 1.531383769920937332e-01
_LG7 = 1.479819860511658591e-01
# float32 version: log(1+f) = s (2 + R(s^2)), max |R - Rtrue| = 1.6e-11.
_LF1 = 0.6666666575753212
_LF2 = 0.40000338917521494
_LF3 = 0.2853605212727848
_LF4 = 0.23617416468361854
_LOG_ADD = 0x00095F6200000000  # (0x3ff00000 - 0x3fe6a09e) << 32: m lands in [sqrt(2)/2, sqrt(2))
_LOG_BASE = 0x3FE6A09E00000000

# pi/2 = _PIO2_1 + _PIO2_2 + _PIO2_3 + _PIO2_3T (33 + 33 + 33 + 53 bits); _PIO2_kT = tail after k.
_INV_PIO2 = 0.6366197723675814
_PIO4 = 0.7853981633974484  # a little above pi/4: the clamp bound of the reduced argument
TRIG_EXACT_MAX = 1647099.0  # about 2^20 * pi/2: sin and cos are within MAX_ULP up to here
_PIO2_1 = 1.5707963267341256
_PIO2_1T = 6.077100506506192e-11
_PIO2_2 = 6.077100506303966e-11
_PIO2_2T = 2.0222662487959506e-21
_PIO2_3 = 2.0222662487111665e-21
_PIO2_3T = 8.4784276603689e-32
# fdlibm kernels on |x| <= pi/4: sin x = x + x^3 S(x^2), cos x = 1 - x^2/2 + x^4 C(x^2).
_S1 = -1.66666666666666324348e-01
_S2 = 8.33333333332248946124e-03
_S3 = -1.98412698298579493134e-04
_S4 = 2.75573137070700676789e-06
_S5 = -2.50507602534068634195e-08
_S6 = 1.58969099521155010221e-10
_C1 = 4.16666666666666019037e-02
_C2 = -1.38888888888741095749e-03
_C3 = 2.48015872894767294178e-05
_C4 = -2.75573143513906633035e-07
_C5 = 2.08757232129817482790e-09
_C6 = -1.13596475577881948265e-11
# float32 versions: relative errors 8.0e-12 (sin), 2.8e-13 (cos).
_SF1 = -0.1666666664421115
_SF2 = 0.0083333293279044
_SF3 = -0.0001983926115355807
_SF4 = 2.717345650879284e-06
_CF1 = 0.04166666664792727
_CF2 = -0.001388888554648317
_CF3 = 2.479991133552761e-05
_CF4 = -2.723713561646136e-07

# tanh x = x + x^3 P(x^2) on |x| <= 0.55; max relative error 7.3e-18.
_TANH_SMALL = 0.55
_T0 = -0.33333333333333315
_T1 = 0.13333333333329025
_T2 = -0.05396825396481092
_T3 = 0.021869488408070424
_T4 = -0.008863232861701355
_T5 = 0.0035920938012220143
_T6 = -0.0014555496624605888
_T7 = 0.0005884566993922856
_T8 = -0.0002333785016301149
_T9 = 8.327023672530133e-05
_T10 = -1.944393009897232e-05


# ---------------------------------------------------------------------------------------------
# Shared pieces (float64).


@njit(inline="always", cache=True)
def _to_float(k):
    # int64 -> float64 through the shift constant (exact for |k| < 2^51); unlike sitofp it
    # vectorizes on AVX2, which has no packed int64 -> double conversion.
    return _from_bits(k + _SHIFT_BITS) - _SHIFT


@njit(inline="always", cache=True)
def _q(r):
    q = _fma(r, _Q10, _Q9)
    q = _fma(r, q, _Q8)
    q = _fma(r, q, _Q7)
    q = _fma(r, q, _Q6)
    q = _fma(r, q, _Q5)
    q = _fma(r, q, _Q4)
    q = _fma(r, q, _Q3)
    q = _fma(r, q, _Q2)
    q = _fma(r, q, _Q1)
    return _fma(r, q, _Q0)


@njit(inline="always", cache=True)
def _qf(r):
    q = _fma(r, _QF6, _QF5)
    q = _fma(r, q, _QF4)
    q = _fma(r, q, _QF3)
    q = _fma(r, q, _QF2)
    q = _fma(r, q, _QF1)
    return _fma(r, q, _QF0)


@njit(inline="always", cache=True)
def _log_kernel(f):
    """fdlibm's pieces of log(1+f) for f in [sqrt(2)/2 - 1, sqrt(2) - 1): (hfsq, s*(hfsq + R))."""
    hfsq = 0.5 * f * f
    s = _div(f, 2.0 + f)
    z = s * s
    w = z * z
    t1 = w * _fma(w, _fma(w, _LG6, _LG4), _LG2)
    t2 = z * _fma(w, _fma(w, _fma(w, _LG7, _LG5), _LG3), _LG1)
    return hfsq, s * (hfsq + (t2 + t1))


@njit(inline="always", cache=True)
def _log_kernel_f(f):
    """log(1+f) in float64 to about 2^-35 relative (for float32 results)."""
    s = _div(f, 2.0 + f)
    z = s * s
    return s * _fma(z, _fma(z, _fma(z, _fma(z, _LF4, _LF3), _LF2), _LF1), 2.0)


@njit(inline="always", cache=True)
def _rem_pio2(x):
    """x - n*pi/2 as a double-double (y0, y1), and n; fdlibm's medium path without branches.

    Exact products for |n| < 2^20. Three rounds of growing precision are computed and the one
    fdlibm would stop at is selected by the cancellation (exponent drop) of the previous round.
    """
    t = x * _INV_PIO2 + _SHIFT
    fn = t - _SHIFT
    n = _bits(t) - _SHIFT_BITS
    r1 = x - fn * _PIO2_1  # exact (Sterbenz; the product is exact)
    w1 = fn * _PIO2_1T
    y01 = r1 - w1  # good to 85 bits
    w = fn * _PIO2_2
    r2 = r1 - w
    w2 = fn * _PIO2_2T - ((r1 - r2) - w)
    y02 = r2 - w2  # good to 118 bits
    w = fn * _PIO2_3
    r3 = r2 - w
    w3 = fn * _PIO2_3T - ((r2 - r3) - w)
    y03 = r3 - w3  # good to 151 bits
    ex = (_bits(x) >> 52) & 0x7FF
    drop1 = ex - ((_bits(y01) >> 52) & 0x7FF)
    drop2 = ex - ((_bits(y02) >> 52) & 0x7FF)
    r, w, y0 = r1, w1, y01
    if drop1 > 16:
        r, w, y0 = r2, w2, y02
        if drop2 > 49:
            r, w, y0 = r3, w3, y03
    y1 = (r - y0) - w
    # Past the exact range (|x| > 2^20 pi/2) y0 drifts out of [-pi/4, pi/4] (far out: without
    # bound, or nan where n * pi/2 overflows); clamping keeps sin and cos finite and in [-1, 1].
    if not abs(y0) < _PIO4:
        y0 = _PIO4 if y0 > 0.0 else -_PIO4
        y1 = 0.0
    return y0, y1, n


@njit(inline="always", cache=True)
def _ksin(x, y):
    """fdlibm __kernel_sin(x, y, 1): sin(x + y) for |x + y| <= pi/4, y the tail of x."""
    z = x * x
    w = z * z
    r = _fma(z, _fma(z, _S4, _S3), _S2) + z * w * _fma(z, _S6, _S5)
    v = z * x
    return x - ((z * (0.5 * y - v * r) - y) - v * _S1)


@njit(inline="always", cache=True)
def _kcos(x, y):
    """fdlibm __kernel_cos(x, y): cos(x + y) for |x + y| <= pi/4."""
    z = x * x
    w = z * z
    r = z * _fma(z, _fma(z, _C3, _C2), _C1) + w * w * _fma(z, _fma(z, _C6, _C5), _C4)
    hz = 0.5 * z
    w = 1.0 - hz
    return w + (((1.0 - w) - hz) + (z * r - x * y))


@njit(inline="always", cache=True)
def _rem_pio2_f(x):
    """x - n*pi/2 in float64 for float32 arguments: exact products for |n| < 2^20."""
    t = x * _INV_PIO2 + _SHIFT
    fn = t - _SHIFT
    r = (x - fn * _PIO2_1) - fn * _PIO2_2
    r = r - fn * _PIO2_2T
    if not abs(r) < _PIO4:  # past the exact range, as in _rem_pio2
        r = _PIO4 if r > 0.0 else -_PIO4
    return r, _bits(t) - _SHIFT_BITS


@njit(inline="always", cache=True)
def _ksin_f(x):
    z = x * x
    return _fma(x * z, _fma(z, _fma(z, _fma(z, _SF4, _SF3), _SF2), _SF1), x)


@njit(inline="always", cache=True)
def _kcos_f(x):
    z = x * x
    return _fma(z * z, _fma(z, _fma(z, _fma(z, _CF4, _CF3), _CF2), _CF1), 1.0 - 0.5 * z)


@njit(inline="always", cache=True)
def _expm1_f(x):
    """expm1 in float64 to about 2^-33 relative, for float32 results; x in [-40, 89]."""
    t = x * _INV_LN2 + _SHIFT
    kf = t - _SHIFT
    r = (x - kf * _LN2_HI) - kf * _LN2_LO
    p = _fma(r * r, _qf(r), r)  # expm1(r)
    tk = _from_bits((_bits(t) - _SHIFT_BITS + 1023) << 52)
    return _fma(tk, p, tk - 1.0)


# ---------------------------------------------------------------------------------------------
# float64 implementations.


@njit(cache=True)
def _exp_f64(x):
    t = x * _INV_LN2 + _SHIFT
    kf = t - _SHIFT
    hi = x - kf * _LN2_HI  # exact
    lo = kf * _LN2_LO
    r = hi - lo
    # e^r = 1 + hi + (r^2 Q(r) - lo); the rounding error of 1 + hi is added back (Fast2Sum).
    tail = _fma(r * r, _q(r), -lo)
    s = 1.0 + hi
    y = s + ((hi - (s - 1.0)) + tail)
    k = _bits(t) - _SHIFT_BITS
    k1 = k >> 1  # 2^k as two normal factors: subnormal results and k = 1024 scale exactly
    y = y * _from_bits((k1 + 1023) << 52) * _from_bits((k - k1 + 1023) << 52)
    if x > 710.0:
        y = _INF
    if x < -746.0:
        y = 0.0
    return y


@njit(cache=True)
def _expm1_f64(x):
    xc = x if x > -40.0 else -40.0  # expm1 rounds to -1 below -37.5; keeps 2^k normal
    t = xc * _INV_LN2 + _SHIFT
    kf = t - _SHIFT
    hi = xc - kf * _LN2_HI
    lo = kf * _LN2_LO
    r = hi - lo
    c = (hi - r) - lo  # rounding error of r
    p_lo = _fma(r * r, _q(r), _fma(c, r, c))  # expm1(r + c) = r + p_lo
    k = _bits(t) - _SHIFT_BITS
    big = k > 1000  # 2^k would overflow near the top of the range: scale by 2^64 at the end
    km = k - 64 if big else k
    tk = _from_bits((km + 1023) << 52)
    # 2^k (1 + r + p_lo) - 1 = b + a + (2^k p_lo - m) with b = 2^k - (1 - m) exact: m = 0 while
    # 2^k - 1 has at most 53 bits, else the -1 joins the small terms. |b| >= |a|: Fast2Sum.
    m = 0.0 if km < 53 else 1.0
    b = tk - (1.0 - m)
    a = tk * r
    s = b + a
    y = s + ((a - (s - b)) + _fma(tk, p_lo, -m))
    if big:
        y = y * 18446744073709551616.0
    if x > 710.0:
        y = _INF
    if abs(x) < 5.551115123125783e-17:  # 2^-54: expm1(x) rounds to x (keeps -0, subnormals)
        y = x
    if x != x:
        y = x
    return y


@njit(cache=True)
def _log_f64(x):
    sub = x < _TINY
    xs = x * _TWO54 if sub else x  # subnormals become normal
    ix = _bits(xs) + _LOG_ADD
    k = (ix >> 52) - (1077 if sub else 1023)
    f = _from_bits((ix & _MANT) + _LOG_BASE) - 1.0
    hfsq, sr = _log_kernel(f)
    dk = _to_float(k)
    y = sr + dk * _LN2_LO - hfsq + f + dk * _LN2_HI
    if x == _INF:
        y = x
    if not x >= 0.0:  # negative or nan
        y = _NAN
    if x == 0.0:
        y = -_INF
    return y


@njit(cache=True)
def _log1p_f64(x):
    u = 1.0 + x
    iu = _bits(u) + _LOG_ADD
    k = (iu >> 52) - 1023
    f = _from_bits((iu & _MANT) + _LOG_BASE) - 1.0
    # u + c = 1 + x exactly (Fast2Sum, the larger operand first); log(1 + x) = log(u) + c/u.
    c = (1.0 - (u - x)) if k >= 2 else (x - (u - 1.0))
    c = _div(c, u)
    if k == 0:  # 1 + x already in [sqrt(2)/2, sqrt(2)): f = x exactly
        f = x
        c = 0.0
    hfsq, sr = _log_kernel(f)
    dk = _to_float(k)
    y = sr + (dk * _LN2_LO + c) - hfsq + f + dk * _LN2_HI
    if x == _INF:
        y = x
    if not x >= -1.0:  # below -1 or nan
        y = _NAN
    if x == -1.0:
        y = -_INF
    if abs(x) < 5.551115123125783e-17:  # 2^-54: log1p(x) rounds to x
        y = x
    return y


@njit(cache=True)
def _sin_f64(x):
    y0, y1, n = _rem_pio2(x)
    s = _ksin(y0, y1)
    c = _kcos(y0, y1)
    y = c if n & 1 else s
    if n & 2:
        y = -y
    if abs(x) < 1.4901161193847656e-08:  # 2^-26: sin(x) rounds to x
        y = x
    if not abs(x) < _INF:  # inf or nan
        y = _NAN
    return y


@njit(cache=True)
def _cos_f64(x):
    y0, y1, n = _rem_pio2(x)
    s = _ksin(y0, y1)
    c = _kcos(y0, y1)
    y = s if n & 1 else c
    if (n + 1) & 2:
        y = -y
    if not abs(x) < _INF:
        y = _NAN
    return y


@njit(cache=True)
def _tanh_f64(x):
    u = x * x
    p = _fma(u, _T10, _T9)
    p = _fma(u, p, _T8)
    p = _fma(u, p, _T7)
    p = _fma(u, p, _T6)
    p = _fma(u, p, _T5)
    p = _fma(u, p, _T4)
    p = _fma(u, p, _T3)
    p = _fma(u, p, _T2)
    p = _fma(u, p, _T1)
    p = _fma(u, p, _T0)
    small = _fma(x * u, p, x)
    ax = abs(x)
    a = ax if ax < 20.0 else 20.0  # tanh rounds to 1 from 19.06; keeps e^2a finite
    em = _EXPM1(a + a)
    den = em + 2.0
    den_lo = 2.0 - (den - em)  # em + 2 = den + den_lo exactly (Fast2Sum, em >= 2 here)
    q = _div(em, den)
    # One Newton step on the quotient: the residual em - q * den is exact where fmuladd fuses.
    large = q + _div(_fma(-q, den, em) - q * den_lo, den)
    if x < 0.0:
        large = -large
    y = small if ax < _TANH_SMALL else large
    if ax < 7.450580596923828e-09:  # 2^-27: tanh(x) rounds to x (keeps -0, subnormals)
        y = x
    if x != x:
        y = x
    return y


# ---------------------------------------------------------------------------------------------
# float32 implementations: computed in float64, rounded once at the end.


@njit(cache=True)
def _exp_f32(x32):
    x = np.float64(x32)
    t = x * _INV_LN2 + _SHIFT
    kf = t - _SHIFT
    r = (x - kf * _LN2_HI) - kf * _LN2_LO
    y = _fma(r * r, _qf(r), r) + 1.0
    y = y * _from_bits((_bits(t) - _SHIFT_BITS + 1023) << 52)  # 2^k normal for k in [-151, 129]
    if x > 89.0:
        y = _INF
    if x < -104.0:
        y = 0.0
    return np.float32(y)


@njit(cache=True)
def _expm1_f32(x32):
    x = np.float64(x32)
    xc = x if x > -40.0 else -40.0  # expm1 rounds to -1 in float32 below -17.4
    y = _expm1_f(xc if xc < 89.0 else 89.0)
    if x > 89.0:
        y = _INF
    if abs(x) < 1.4901161193847656e-08:  # 2^-26
        y = x
    if x != x:
        y = x
    return np.float32(y)


@njit(cache=True)
def _log_f32(x32):
    x = np.float64(x32)  # float32 subnormals are normal here
    ix = _bits(x) + _LOG_ADD
    k = (ix >> 52) - 1023
    f = _from_bits((ix & _MANT) + _LOG_BASE) - 1.0
    y = _to_float(k) * _LN2 + _log_kernel_f(f)
    if x == _INF:
        y = x
    if not x >= 0.0:
        y = _NAN
    if x == 0.0:
        y = -_INF
    return np.float32(y)


@njit(cache=True)
def _log1p_f32(x32):
    x = np.float64(x32)
    u = 1.0 + x  # exact unless |x| < 2^-29 (then k == 0 and f = x below) or x > 2^53
    iu = _bits(u) + _LOG_ADD
    k = (iu >> 52) - 1023
    f = _from_bits((iu & _MANT) + _LOG_BASE) - 1.0
    if k == 0:
        f = x
    y = _to_float(k) * _LN2 + _log_kernel_f(f)
    if x == _INF:
        y = x
    if not x >= -1.0:
        y = _NAN
    if x == -1.0:
        y = -_INF
    if abs(x) < 1.4901161193847656e-08:
        y = x
    return np.float32(y)


@njit(cache=True)
def _sin_f32(x32):
    x = np.float64(x32)
    r, n = _rem_pio2_f(x)
    y = _kcos_f(r) if n & 1 else _ksin_f(r)
    if n & 2:
        y = -y
    if abs(x) < 1.4901161193847656e-08:
        y = x
    if not abs(x) < _INF:
        y = _NAN
    return np.float32(y)


@njit(cache=True)
def _cos_f32(x32):
    x = np.float64(x32)
    r, n = _rem_pio2_f(x)
    y = _ksin_f(r) if n & 1 else _kcos_f(r)
    if (n + 1) & 2:
        y = -y
    if not abs(x) < _INF:
        y = _NAN
    return np.float32(y)


@njit(cache=True)
def _tanh_f32(x32):
    x = np.float64(x32)
    ax = abs(x)
    ax = ax if ax < 20.0 else 20.0  # tanh rounds to 1 in float32 from 9.01
    em = _expm1_f(ax + ax)
    y = _div(em, em + 2.0)
    if x < 0.0:
        y = -y
    if abs(x) < 1.4901161193847656e-08:  # also keeps -0
        y = x
    if x != x:
        y = x
    return np.float32(y)


MAX_ULP = {
    "exp": {"float64": 1.0, "float32": 0.51},
    "log": {"float64": 1.0, "float32": 0.51},
    "log1p": {"float64": 1.0, "float32": 0.51},
    "expm1": {"float64": 1.0, "float32": 0.51},
    "sin": {"float64": 1.0, "float32": 0.51},
    "cos": {"float64": 1.0, "float32": 0.51},
    "tanh": {"float64": 1.25, "float32": 0.51},
}
"""Bounds on the error in ulps against the exact value, with or without FMA (the tests' bounds;
sin, cos: for |x| <= TRIG_EXACT_MAX). The docstrings give the measured maxima."""


# ---------------------------------------------------------------------------------------------
# Type dispatch: one public dispatcher per function, generic over float32/float64/int/bool.


def _inlined(impl64, impl32):
    """An intrinsic that calls ``impl32`` on float32 and ``impl64`` on anything else numeric
    (converted to float64), with the call marked ``alwaysinline``.

    Why not Numba's ``inline="always"``: that copies and re-types the whole body at every call
    site (seconds per fused loop). Here each implementation compiles once per dtype (and is cached
    on disk), and LLVM's inliner copies its optimized body into the caller, so the caller's loop
    holds no call and vectorizes, for about the compile time of a loop without transcendentals.
    """

    @intrinsic
    def call(typingctx, x):
        if x == types.float32:
            impl, ty = impl32, types.float32
        elif isinstance(x, (types.Float, types.Integer, types.Boolean)):
            impl, ty = impl64, types.float64
        else:
            return None

        def codegen(context, builder, sig, args):
            arg = context.cast(builder, args[0], sig.args[0], ty)
            impl.compile((ty,))  # a no-op once compiled; loads from the disk cache if there
            cres = impl.overloads[(ty,)]
            context.add_linking_libs([cres.library])
            fn = context.declare_function(builder.module, cres.fndesc)
            status, res = context.call_conv.call_function(builder, fn, ty, (ty,), (arg,))
            for instr in reversed(builder.block.instructions):
                if isinstance(instr, ir.CallInstr) and instr.callee is fn:
                    instr.attributes.add("alwaysinline")
                    break
            else:  # pragma: no cover - Numba changed how it emits calls
                raise AssertionError(f"vmath: no call to {fn.name} to mark alwaysinline")
            with cgutils.if_unlikely(builder, status.is_error):  # never taken: no raise inside
                context.call_conv.return_status_propagate(builder, status)
            return res

        return ty(x), codegen

    return call


_EXP = _inlined(_exp_f64, _exp_f32)
_LOG = _inlined(_log_f64, _log_f32)
_LOG1P = _inlined(_log1p_f64, _log1p_f32)
_EXPM1 = _inlined(_expm1_f64, _expm1_f32)
_SIN = _inlined(_sin_f64, _sin_f32)
_COS = _inlined(_cos_f64, _cos_f32)
_TANH = _inlined(_tanh_f64, _tanh_f32)


@njit(inline="always", cache=True)
def exp(x):
    """e**x. Vectorizable; float64 or float32 in, the same out.

    Max error against the exact value: 0.78 ulp (float64), 0.50 ulp (float32), measured on 10^7
    points per dtype over the whole domain (``benchmarks/vmath_ulps.py``). Differs from NumPy by
    at most 1 ulp (float64) and 2 ulp (float32, where NumPy's own error reaches 2.4 ulp).
    """
    return _EXP(x)


@njit(inline="always", cache=True)
def log(x):
    """Natural logarithm. Vectorizable; float64 or float32 in, the same out.

    Max error against the exact value: 0.83 ulp (float64), 0.50 ulp (float32), measured on 10^7
    points per dtype over the whole domain (``benchmarks/vmath_ulps.py``). Differs from NumPy by
    at most 1 ulp (float64) and 4 ulp (float32, where NumPy's own error reaches 3.7 ulp).
    """
    return _LOG(x)


@njit(inline="always", cache=True)
def log1p(x):
    """log(1 + x), accurate near x = 0. Vectorizable; float64 or float32 in, the same out.

    Max error against the exact value: 0.84 ulp (float64), 0.50 ulp (float32), measured on 10^7
    points per dtype over the whole domain (``benchmarks/vmath_ulps.py``). Differs from NumPy by
    at most 1 ulp (float64) and 2 ulp (float32, where NumPy's own error reaches 1.9 ulp).
    """
    return _LOG1P(x)


@njit(inline="always", cache=True)
def expm1(x):
    """e**x - 1, accurate near x = 0. Vectorizable; float64 or float32 in, the same out.

    Max error against the exact value: 0.89 ulp (float64), 0.50 ulp (float32), measured on 10^7
    points per dtype over the whole domain (``benchmarks/vmath_ulps.py``). Differs from NumPy by
    at most 1 ulp (float64) and 3 ulp (float32, where NumPy's own error reaches 2.6 ulp).
    """
    return _EXPM1(x)


@njit(inline="always", cache=True)
def sin(x):
    """Sine. Vectorizable; float64 or float32 in, the same out.

    Max error against the exact value: 0.78 ulp (float64), 0.50 ulp (float32), measured on 10^7
    points per dtype over the whole domain (``benchmarks/vmath_ulps.py``). Differs from NumPy by
    at most 1 ulp (float64) and 1 ulp (float32).

    For |x| <= TRIG_EXACT_MAX (2^20 pi/2, about 1.6e6); past it the absolute error grows like
    |x| * 2^-53 and the result stays in [-1, 1] (see the module docstring).
    """
    return _SIN(x)


@njit(inline="always", cache=True)
def cos(x):
    """Cosine. Vectorizable; float64 or float32 in, the same out.

    Max error against the exact value: 0.77 ulp (float64), 0.50 ulp (float32), measured on 10^7
    points per dtype over the whole domain (``benchmarks/vmath_ulps.py``). Differs from NumPy by
    at most 1 ulp (float64) and 1 ulp (float32).

    For |x| <= TRIG_EXACT_MAX (2^20 pi/2, about 1.6e6); past it the absolute error grows like
    |x| * 2^-53 and the result stays in [-1, 1] (see the module docstring).
    """
    return _COS(x)


@njit(inline="always", cache=True)
def tanh(x):
    """Hyperbolic tangent. Vectorizable; float64 or float32 in, the same out.

    Max error against the exact value: 0.78 ulp (float64), 0.50 ulp (float32), measured on 10^7
    points per dtype over the whole domain (``benchmarks/vmath_ulps.py``). Differs from NumPy by
    at most 1 ulp (float64, where NumPy's own error reaches 1.19 ulp) and 1 ulp (float32).
    Without FMA the float64 error reaches 1.23 ulp (see the module docstring).
    """
    return _TANH(x)


# ---------------------------------------------------------------------------------------------
# Array level: one compiled loop per function (each compiles per dtype on first use, then cached).


@njit(cache=True)
def _map_exp(x, out):
    for i in range(x.size):
        out[i] = exp(x[i])


@njit(cache=True)
def _map_log(x, out):
    for i in range(x.size):
        out[i] = log(x[i])


@njit(cache=True)
def _map_log1p(x, out):
    for i in range(x.size):
        out[i] = log1p(x[i])


@njit(cache=True)
def _map_expm1(x, out):
    for i in range(x.size):
        out[i] = expm1(x[i])


@njit(cache=True)
def _map_sin(x, out):
    for i in range(x.size):
        out[i] = sin(x[i])


@njit(cache=True)
def _map_cos(x, out):
    for i in range(x.size):
        out[i] = cos(x[i])


@njit(cache=True)
def _map_tanh(x, out):
    for i in range(x.size):
        out[i] = tanh(x[i])


FUNCTIONS = {
    "exp": (exp, _map_exp, np.exp),
    "log": (log, _map_log, np.log),
    "log1p": (log1p, _map_log1p, np.log1p),
    "expm1": (expm1, _map_expm1, np.expm1),
    "sin": (sin, _map_sin, np.sin),
    "cos": (cos, _map_cos, np.cos),
    "tanh": (tanh, _map_tanh, np.tanh),
}
"""name -> (scalar function, compiled 1-D loop ``loop(x, out)``, the NumPy ufunc it replaces)."""


def apply(name: str, x: np.ndarray) -> np.ndarray:
    """``name`` (a key of FUNCTIONS) elementwise over a float32 or float64 array, in its dtype."""
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"vmath.apply({name!r}): expected float32 or float64, got {x.dtype}")
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty_like(flat)
    FUNCTIONS[name][1](flat, out)
    return out.reshape(x.shape)
