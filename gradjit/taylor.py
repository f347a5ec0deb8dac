"""Taylor mode: the first k directional derivatives of a function in one propagation of series.

``taylor(f, order=k)(x, v)`` returns ``[d/ds f(x + s v), ..., d^k/ds^k f(x + s v)]`` at ``s = 0``.
``f`` is traced once at ``x`` (a trace one level above the active ones, like ``grad``); then every
variable ``u`` of the recorded Wengert list gets a truncated Taylor series ``u(s) = u0 + u1 s + ...
+ uk s^k`` in *normalized* coefficients ``u_j = u^(j)(0) / j!``: an input's series is ``x + v s``,
a constant's is itself. The walker (``propagate``) visits the equations in program order and asks
each primitive's Taylor rule for the output's coefficients from the inputs'. Derivatives are
``j! * out_j`` at the end. The rules use the standard recurrences (Griewank & Walther, *Evaluating
Derivatives*, chapter 13): products are Cauchy products, and ``exp``, ``log``, ``sin``/``cos``,
``tanh``, ``sqrt``, division, ``pow`` ... solve the differential equation they satisfy (``y' = a' y``
for ``y = exp(a)``) coefficient by coefficient, so an elementwise operation costs O(k^2)
operations on arrays, a contraction O(k^2) contractions: polynomial in k, where ``grad`` nested k
times grows exponentially.

Rules live in ``RULES``, a table keyed by primitive (``Primitive`` itself is not touched):
``rule(k, series, ans, *args, **params) -> [u1, ..., uk]``, where ``series[i]`` is ``None`` for an
argument that does not depend on ``s`` and otherwise the list ``[a1, ..., ak]`` of its higher
coefficients (``args[i]`` is its value, ``a0``; ``ans`` is the output's value). ``deftaylor`` adds
rules for other primitives (user primitives included).

Invariants
----------
- A zero coefficient is ``None`` (never an array of zeros inside the walk): rules skip the terms it
  would contribute, so ``x + v s`` (whose coefficients 2..k are zero) costs what it should.
- The coefficient stored for a variable has that variable's shape and dtype (the walker fits it,
  as ``forward`` does for tangents); rules may return anything that broadcasts to it.
- Rules are NumPy code run on the recorded values. When those values are tracers of an outer trace
  (``grad`` of a Taylor coefficient, ``make_wengert(taylor(f, k))``), every operation a rule performs
  is recorded there, so Taylor mode composes with ``grad`` and with itself.
- Non-smooth points follow the VJP rules' conventions: ``abs`` uses ``sign(x)``; ``maximum`` /
  ``minimum`` / ``reduce_max`` / ``reduce_min`` take the active branch and share equally on ties;
  ``floor``, ``sign`` and friends have zero series.
- A primitive reached with a non-constant series and no rule raises ``NoTaylorRuleError`` naming the
  primitive and the user's source line (the Taylor trace records the line of every equation whose
  primitive has no rule, and only of those).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from . import pytree
from . import tracing as _tracing
from .api import _fname, _unwrap_tree
from .errors import GradjitError, user_line
from .forward import fit
from .nn import ops as _nn_ops
from .primitives import PRIMITIVES
from .pytree import is_float_leaf, like_leaf
from .tracing import Primitive, Trace, Tracer
from .wengert import Eqn, Var

__all__ = ["taylor", "propagate", "deftaylor", "RULES", "NoTaylorRuleError", "TaylorArgumentError"]

LN2 = float(np.log(2.0))
LN10 = float(np.log(10.0))

Rule = Callable[..., Any]
RULES: dict[Primitive, Rule] = {}


class NoTaylorRuleError(GradjitError, NotImplementedError):
    """A primitive on the path from the inputs to the outputs has no Taylor rule."""


class TaylorArgumentError(GradjitError, ValueError):
    """``taylor`` was called with an order, direction or structure it cannot use."""


def deftaylor(prim: Any, rule: Rule) -> None:
    """Register ``rule(k, series, ans, *args, **params) -> [u1, ..., uk]`` for ``prim``.

    ``prim`` is a ``Primitive`` or a function made one with ``gradjit.primitive``. See the module
    docstring for the arguments; return ``None`` (or ``None`` entries) for zero coefficients.
    """
    p = getattr(prim, "prim", prim)
    if not isinstance(p, Primitive):
        raise TypeError(f"deftaylor: expected a primitive, got {type(prim).__name__}")
    RULES[p] = rule


# ---------------------------------------------------------------------------------------------
# Coefficient arithmetic with None for zero. Factors equal to 1 are not multiplied (each operation
# is an equation when the walk is itself traced).
# ---------------------------------------------------------------------------------------------
def _add(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def _sub(a: Any, b: Any) -> Any:
    if b is None:
        return a
    if a is None:
        return -b
    return a - b


def _mul(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    return a * b


def _scale(a: Any, c: float) -> Any:
    if a is None:
        return None
    return a if c == 1 else a * c


def _total(terms: Any) -> Any:
    acc = None
    for t in terms:
        if t is not None:
            acc = t if acc is None else acc + t
    return acc


def _full(s: list | None, a0: Any, k: int) -> list:
    """The whole series ``[a0, a1, ..., ak]`` of an argument."""
    return [a0, *s] if s is not None else [a0] + [None] * k


def _shape(x: Any) -> tuple[int, ...]:
    s = getattr(x, "shape", None)
    return tuple(s) if s is not None else ()


# ---------------------------------------------------------------------------------------------
# Series operations on whole series (index 0..n). Each takes the known value c0 of its result.
# ---------------------------------------------------------------------------------------------
def _cauchy(a: list, b: list, j: int, lo: int = 0) -> Any:
    """Coefficient j of the product, from the terms a_i b_{j-i}, i >= lo."""
    return _total(_mul(a[i], b[j - i]) for i in range(lo, j + 1))


def _square_coef(a: list, j: int) -> Any:
    """Coefficient j of a*a, each cross term once (doubled)."""
    half = _total(_mul(a[i], a[j - i]) for i in range((j + 1) // 2))
    mid = _mul(a[j // 2], a[j // 2]) if j % 2 == 0 else None
    return _add(_scale(half, 2.0), mid)


def s_mul(a: list, b: list, n: int, c0: Any) -> list:
    return [c0] + [_cauchy(a, b, j) for j in range(1, n + 1)]


def s_square(a: list, n: int, c0: Any) -> list:
    return [c0] + [_square_coef(a, j) for j in range(1, n + 1)]


def s_div(a: list, b: list, n: int, c0: Any) -> list:
    """c = a / b: b0 c_j = a_j - sum_{i=1..j} b_i c_{j-i}."""
    c = [c0]
    for j in range(1, n + 1):
        r = _sub(a[j], _cauchy(b, c, j, lo=1))
        c.append(None if r is None else r / b[0])
    return c


def s_sqrt(a: list, n: int, c0: Any) -> list:
    """c = sqrt(a): c*c = a, so 2 c0 c_j = a_j - sum_{i=1..j-1} c_i c_{j-i}."""
    c = [c0]
    two_c0 = None
    for j in range(1, n + 1):
        inner = _total(_mul(c[i], c[j - i]) for i in range(1, j))
        r = _sub(a[j], inner)
        if r is None:
            c.append(None)
            continue
        if two_c0 is None:
            two_c0 = 2.0 * c0
        c.append(r / two_c0)
    return c


def _weighted(a: list, n: int, factor: float = 1.0) -> list:
    """``[None, 1 a1, 2 a2, ..., n an]`` times ``factor``: the coefficients of ``s a'(s)``."""
    return [None] + [_scale(a[i], i * factor) for i in range(1, n + 1)]


def s_exp(a: list, n: int, c0: Any, factor: float = 1.0) -> list:
    """c = exp(factor * a): c' = factor a' c, so j c_j = sum_{i=1..j} i a_i c_{j-i} (times factor)."""
    da = _weighted(a, n, factor)
    c = [c0]
    for j in range(1, n + 1):
        c.append(_scale(_cauchy(da, c, j, lo=1), 1.0 / j))
    return c


def s_log(a: list, n: int, c0: Any) -> list:
    """c = log(a): a c' = a', so a0 c_j = a_j - (1/j) sum_{i=1..j-1} i c_i a_{j-i}."""
    c = [c0]
    dc = [None]
    for j in range(1, n + 1):
        inner = _total(_mul(dc[i], a[j - i]) for i in range(1, j))
        r = _sub(a[j], _scale(inner, 1.0 / j))
        c.append(None if r is None else r / a[0])
        dc.append(_scale(c[j], float(j)))
    return c


def s_sincos(a: list, n: int, s0: Any, c0: Any, hyperbolic: bool = False) -> tuple[list, list]:
    """sin and cos (or sinh and cosh) together: s' = a' c, c' = -a' s (c' = a' s)."""
    da = _weighted(a, n)
    s, c = [s0], [c0]
    for j in range(1, n + 1):
        s.append(_scale(_cauchy(da, c, j, lo=1), 1.0 / j))
        c.append(_scale(_cauchy(da, s, j, lo=1), (1.0 if hyperbolic else -1.0) / j))
    return s, c


def s_tanlike(a: list, n: int, t0: Any, sign: float) -> list:
    """t = tan(a) (sign +1) or tanh(a) (sign -1): t' = a' u with u = 1 + sign t^2."""
    da = _weighted(a, n)
    t = [t0]
    u = [1.0 + sign * (t0 * t0)]
    for j in range(1, n + 1):
        t.append(_scale(_cauchy(da, u, j, lo=1), 1.0 / j))
        if j < n:
            u.append(_scale(_square_coef(t, j), sign))
    return t


def s_real_power(a: list, r: Any, n: int, c0: Any) -> list:
    """c = a^r for an exponent r constant in s: a c' = r a' c, so
    j a0 c_j = sum_{i=1..j} ((r + 1) i - j) a_i c_{j-i}. Needs a0 != 0."""
    c = [c0]
    for j in range(1, n + 1):
        terms = []
        for i in range(1, j + 1):
            p = _mul(a[i], c[j - i])
            if p is not None:
                f = (r + 1.0) * i - j
                terms.append(p * f)
        tot = _total(terms)
        c.append(None if tot is None else tot / (j * a[0]))
    return c


def s_int_power(a: list, m: int, n: int) -> list:
    """c = a^m for a non-negative integer m, by repeated squaring (exact at a0 = 0)."""
    if m == 0:
        return [np.ones_like(a[0]) if hasattr(a[0], "shape") else 1.0] + [None] * n
    result = None
    base = a
    while m:
        if m & 1:
            result = base if result is None else s_mul(result, base, n, result[0] * base[0])
        m >>= 1
        if m:
            base = s_square(base, n, base[0] * base[0])
    return result


def _deriv(a: list, n: int) -> list:
    """The series of a'(s) to index n - 1: ``(m + 1) a_{m+1}``."""
    return [_scale(a[m + 1], float(m + 1)) for m in range(n)]


def _integrate(q: list, n: int) -> list:
    """Coefficients 1..n of the function whose derivative has series q (index 0..n-1)."""
    return [_scale(q[j - 1], 1.0 / j) for j in range(1, n + 1)]


# ---------------------------------------------------------------------------------------------
# Rule builders
# ---------------------------------------------------------------------------------------------
def _unary(fn: Callable[[list, Any, Any, int], list]) -> Rule:
    """A rule from ``fn(a, ans, x, k) -> whole series``, for one-argument elementwise primitives."""

    def rule(k: int, series: list, ans: Any, x: Any, **params: Any) -> list:
        return fn(_full(series[0], x, k), ans, x, k)[1:]

    return rule


def _linear(prim: Primitive) -> Rule:
    """Linear in its first argument (others constant, or piecewise constant: index arrays, argmax)."""

    def rule(k: int, series: list, ans: Any, x: Any, *rest: Any, **params: Any) -> list | None:
        s = series[0]
        if s is None:
            return None
        return [None if c is None else prim(c, *rest, **params) for c in s]

    return rule


def _zero_rule(k: int, series: list, ans: Any, *args: Any, **params: Any) -> None:
    return None


def _compositions(j: int, m: int) -> Iterator[tuple[int, ...]]:
    """Every m-tuple of non-negative integers summing to j."""
    if m == 1:
        yield (j,)
        return
    for first in range(j + 1):
        for rest in _compositions(j - first, m - 1):
            yield (first, *rest)


def _multilinear(prim: Primitive) -> Rule:
    """Linear in each argument separately (matmul, einsum, convolutions): a Cauchy product of its
    operands' series, one call of the primitive per term."""

    def rule(k: int, series: list, ans: Any, *args: Any, **params: Any) -> list:
        live = [i for i, s in enumerate(series) if s is not None]
        fulls = {i: _full(series[i], args[i], k) for i in live}
        out = []
        for j in range(1, k + 1):
            terms = []
            for combo in _compositions(j, len(live)):
                ops = list(args)
                for i, ji in zip(live, combo):
                    ops[i] = fulls[i][ji]
                if all(ops[i] is not None for i in live):
                    terms.append(prim(*ops, **params))
            out.append(_total(terms))
        return out

    return rule


# ---------------------------------------------------------------------------------------------
# Elementwise, unary
# ---------------------------------------------------------------------------------------------
def _inverse_trig(kind: str) -> Rule:
    """Inverse functions whose derivative is a' / w(a): integrate the series of a' / w."""

    def fn(a: list, ans: Any, x: Any, k: int) -> list:
        n = k - 1
        a2 = s_square(a, n, x * x)
        if kind in ("arctan", "arctanh"):
            w = [1.0 + a2[0] if kind == "arctan" else 1.0 - a2[0]]
            w += a2[1:] if kind == "arctan" else [_scale(c, -1.0) for c in a2[1:]]
        else:
            if kind in ("arcsin", "arccos"):
                inside = [1.0 - a2[0]] + [_scale(c, -1.0) for c in a2[1:]]
            elif kind == "arcsinh":
                inside = [a2[0] + 1.0] + a2[1:]
            else:  # arccosh
                inside = [a2[0] - 1.0] + a2[1:]
            w = s_sqrt(inside, n, np.sqrt(inside[0]))
        da = _deriv(a, k)
        q = s_div(da, w, n, None if da[0] is None else da[0] / w[0])
        if kind == "arccos":
            q = [_scale(c, -1.0) for c in q]
        return [ans, *_integrate(q, k)]

    return _unary(fn)


def _abs_rule(k: int, series: list, ans: Any, x: Any) -> list:
    sgn = np.sign(x)
    return [_mul(c, sgn) for c in series[0]]


def _log_scaled(scale: float) -> Rule:
    return _unary(lambda a, ans, x, k: [ans] + [_scale(c, scale) for c in s_log(a, k, np.log(x))[1:]])


def _log1p(a: list, ans: Any, x: Any, k: int) -> list:
    return s_log([1.0 + x, *a[1:]], k, ans)


_UNARY: dict[str, Rule] = {
    "exp": _unary(lambda a, ans, x, k: s_exp(a, k, ans)),
    "exp2": _unary(lambda a, ans, x, k: s_exp(a, k, ans, LN2)),
    "expm1": _unary(lambda a, ans, x, k: s_exp(a, k, ans + 1.0)),
    "log": _unary(lambda a, ans, x, k: s_log(a, k, ans)),
    "log2": _log_scaled(1.0 / LN2),
    "log10": _log_scaled(1.0 / LN10),
    "log1p": _unary(_log1p),
    "sqrt": _unary(lambda a, ans, x, k: s_sqrt(a, k, ans)),
    "cbrt": _unary(lambda a, ans, x, k: s_real_power(a, 1.0 / 3.0, k, ans)),
    "square": _unary(lambda a, ans, x, k: s_square(a, k, ans)),
    "reciprocal": _unary(lambda a, ans, x, k: s_div([1.0] + [None] * k, a, k, ans)),
    "sin": _unary(lambda a, ans, x, k: s_sincos(a, k, ans, np.cos(x))[0]),
    "cos": _unary(lambda a, ans, x, k: s_sincos(a, k, np.sin(x), ans)[1]),
    "sinh": _unary(lambda a, ans, x, k: s_sincos(a, k, ans, np.cosh(x), hyperbolic=True)[0]),
    "cosh": _unary(lambda a, ans, x, k: s_sincos(a, k, np.sinh(x), ans, hyperbolic=True)[1]),
    "tan": _unary(lambda a, ans, x, k: s_tanlike(a, k, ans, 1.0)),
    "tanh": _unary(lambda a, ans, x, k: s_tanlike(a, k, ans, -1.0)),
    "arcsin": _inverse_trig("arcsin"),
    "arccos": _inverse_trig("arccos"),
    "arctan": _inverse_trig("arctan"),
    "arcsinh": _inverse_trig("arcsinh"),
    "arccosh": _inverse_trig("arccosh"),
    "arctanh": _inverse_trig("arctanh"),
    "abs": _abs_rule,
    "fabs": _abs_rule,
}


# ---------------------------------------------------------------------------------------------
# Elementwise, binary
# ---------------------------------------------------------------------------------------------
def _add_rule(k: int, series: list, ans: Any, x: Any, y: Any) -> list:
    sx, sy = series
    return [_add(None if sx is None else sx[j], None if sy is None else sy[j]) for j in range(k)]


def _sub_rule(k: int, series: list, ans: Any, x: Any, y: Any) -> list:
    sx, sy = series
    return [_sub(None if sx is None else sx[j], None if sy is None else sy[j]) for j in range(k)]


def _neg_rule(k: int, series: list, ans: Any, x: Any) -> list:
    return [_scale(c, -1.0) for c in series[0]]


def _identity_rule(k: int, series: list, ans: Any, x: Any, **params: Any) -> list:
    return list(series[0])


def _mul_rule(k: int, series: list, ans: Any, x: Any, y: Any) -> list:
    return s_mul(_full(series[0], x, k), _full(series[1], y, k), k, ans)[1:]


def _div_rule(k: int, series: list, ans: Any, x: Any, y: Any) -> list:
    return s_div(_full(series[0], x, k), _full(series[1], y, k), k, ans)[1:]


def _small_int(r: Any) -> int | None:
    """The exponent as a Python int when it is a concrete integral scalar of modest size."""
    if type(r) in (int, float) or (isinstance(r, (np.ndarray, np.generic)) and np.ndim(r) == 0):
        v = float(r)
        if v.is_integer() and abs(v) <= 64:
            return int(v)
    return None


def _pow_rule(k: int, series: list, ans: Any, x: Any, y: Any) -> list:
    sx, sy = series
    a = _full(sx, x, k)
    if sy is None:
        m = _small_int(y)
        if m is None:
            return s_real_power(a, y, k, ans)[1:]
        if m >= 0:
            return s_int_power(a, m, k)[1:]
        positive = s_int_power(a, -m, k)
        return s_div([1.0] + [None] * k, positive, k, ans)[1:]
    # The exponent moves: x^y = exp(y log x). A constant base 0 contributes log 0 -> 0 as in the VJP.
    logx = s_log(a, k, np.log(x)) if sx is not None else [np.log(np.where(x == 0, 1.0, x))] + [None] * k
    e = s_mul(_full(sy, y, k), logx, k, None)
    return s_exp(e, k, ans)[1:]


def _arctan2_rule(k: int, series: list, ans: Any, y: Any, x: Any) -> list:
    # atan2(y, x)' = (x y' - y x') / (x^2 + y^2)
    yy, xx = _full(series[0], y, k), _full(series[1], x, k)
    n = k - 1
    dy, dx = _deriv(yy, k), _deriv(xx, k)
    num1 = s_mul(xx, dy, n, _mul(x, dy[0]))
    num2 = s_mul(yy, dx, n, _mul(y, dx[0]))
    num = [_sub(p, q) for p, q in zip(num1, num2)]
    den2 = [_add(p, q) for p, q in zip(s_square(xx, n, x * x), s_square(yy, n, y * y))]
    q = s_div(num, den2, n, None if num[0] is None else num[0] / den2[0])
    return _integrate(q, k)


def _hypot_rule(k: int, series: list, ans: Any, x: Any, y: Any) -> list:
    xx, yy = _full(series[0], x, k), _full(series[1], y, k)
    inside = [_add(p, q) for p, q in zip(s_square(xx, k, x * x), s_square(yy, k, y * y))]
    return s_sqrt(inside, k, ans)[1:]


def _logaddexp(base2: bool) -> Rule:
    """b = y + softplus(x - y): b' = y' + sig d' with d = x - y and sig' = sig (1 - sig) d' (ln 2 d'
    for base 2); sig = exp(x - b) is the VJP's weight, stable for any x, y."""
    scale = LN2 if base2 else 1.0

    def rule(k: int, series: list, ans: Any, x: Any, y: Any) -> list:
        xx, yy = _full(series[0], x, k), _full(series[1], y, k)
        d = [None] + [_sub(xx[i], yy[i]) for i in range(1, k + 1)]
        dd = _weighted(d, k)
        sig0 = np.exp2(x - ans) if base2 else np.exp(x - ans)
        sig = [sig0]
        u = [sig0 - sig0 * sig0]
        out = []
        for j in range(1, k + 1):
            out.append(_add(yy[j], _scale(_cauchy(dd, sig, j, lo=1), 1.0 / j)))
            if j < k:
                sig.append(_scale(_cauchy(dd, u, j, lo=1), scale / j))
                u.append(_sub(sig[j], _square_coef(sig, j)))
        return out

    return rule


def _extremum_pair(k: int, series: list, ans: Any, x: Any, y: Any) -> list:
    # The active branch, shared equally on ties (the VJP's convention).
    wx = np.where(x == ans, np.where(x == y, 0.5, 1.0), 0.0)
    wy = 1.0 - wx
    sx, sy = series
    return [_add(None if sx is None else _mul(sx[j], wx), None if sy is None else _mul(sy[j], wy)) for j in range(k)]


def _mod_rule(trunc: bool) -> Rule:
    def rule(k: int, series: list, ans: Any, x: Any, y: Any) -> list:
        sx, sy = series
        q = None if sy is None else (np.trunc(x / y) if trunc else np.floor_divide(x, y))
        return [_sub(None if sx is None else sx[j], None if sy is None else _mul(sy[j], q)) for j in range(k)]

    return rule


def _copysign_rule(k: int, series: list, ans: Any, x: Any, y: Any) -> list | None:
    if series[0] is None:
        return None
    f = np.sign(x) * np.sign(ans)
    return [_mul(c, f) for c in series[0]]


def _select_rule(k: int, series: list, ans: Any, c: Any, x: Any, y: Any) -> list:
    _, sx, sy = series
    out = []
    for j in range(k):
        a = None if sx is None else sx[j]
        b = None if sy is None else sy[j]
        out.append(None if a is None and b is None else np.where(c, 0.0 if a is None else a, 0.0 if b is None else b))
    return out


_BINARY: dict[str, Rule] = {
    "add": _add_rule,
    "sub": _sub_rule,
    "mul": _mul_rule,
    "div": _div_rule,
    "pow": _pow_rule,
    "arctan2": _arctan2_rule,
    "hypot": _hypot_rule,
    "logaddexp": _logaddexp(False),
    "logaddexp2": _logaddexp(True),
    "maximum": _extremum_pair,
    "minimum": _extremum_pair,
    "fmax": _extremum_pair,
    "fmin": _extremum_pair,
    "mod": _mod_rule(False),
    "fmod": _mod_rule(True),
    "copysign": _copysign_rule,
    "select": _select_rule,
}


# ---------------------------------------------------------------------------------------------
# Reductions
# ---------------------------------------------------------------------------------------------
def _extremum_reduce(k: int, series: list, ans: Any, x: Any, axis: tuple[int, ...], keepdims: bool) -> list:
    # The active element, shared equally between tied maxima (the VJP's convention).
    full = ans if keepdims else np.reshape(ans, tuple(1 if i in axis else n for i, n in enumerate(_shape(x))))
    hit = x == full
    w = hit / np.sum(hit, axis=axis, keepdims=True)
    return [None if c is None else np.sum(c * w, axis=axis, keepdims=keepdims) for c in series[0]]


def _concat_last(a: Any, b: Any, shape_a: tuple, shape_b: tuple, dtype: np.dtype) -> Any:
    if a is None and b is None:
        return None
    a = np.zeros(shape_a, dtype=dtype) if a is None else a
    b = np.zeros(shape_b, dtype=dtype) if b is None else b
    return np.concatenate([a, b], axis=-1)


def _prod_reduce(k: int, series: list, ans: Any, x: Any, axis: tuple[int, ...], keepdims: bool) -> list | None:
    """Multiply the series pairwise in a balanced tree along the reduced axes: log2(n) products."""
    shape = _shape(x)
    rest = tuple(i for i in range(len(shape)) if i not in axis)
    perm = rest + tuple(axis)
    lead = tuple(shape[i] for i in rest)

    def prep(c: Any) -> Any:
        return None if c is None else np.reshape(np.transpose(c, perm), (*lead, -1))

    cur = [prep(x)] + [prep(c) for c in series[0]]
    n = int(np.prod([shape[i] for i in axis], dtype=np.int64))
    if n == 0:
        return None
    while n > 1:
        h = n // 2
        left = [None if c is None else c[..., :h] for c in cur]
        right = [None if c is None else c[..., h : 2 * h] for c in cur]
        prod = s_mul(left, right, k, left[0] * right[0])
        if n % 2:  # the odd element out is carried to the next round
            tail = [None if c is None else c[..., 2 * h :] for c in cur]
            prod = [_concat_last(p, t, (*lead, h), (*lead, 1), ans.dtype) for p, t in zip(prod, tail)]
        cur = prod
        n = h + n % 2
    out_shape = _shape(ans)
    return [None if c is None else np.reshape(c, out_shape) for c in cur[1:]]


# ---------------------------------------------------------------------------------------------
# Movement and indexing: linear (jointly in the operands that carry data)
# ---------------------------------------------------------------------------------------------
def _index_rule(prim: Primitive, is_set: bool) -> Rule:
    def rule(k: int, series: list, ans: Any, x: Any, v: Any, *arrays: Any, tree: tuple) -> list:
        sx, sv = series[0], series[1]
        out = []
        for j in range(k):
            a = None if sx is None else sx[j]
            b = None if sv is None else sv[j]
            if b is None:
                out.append(None if a is None else (prim(a, 0.0, *arrays, tree=tree) if is_set else a))
                continue
            base = np.zeros(_shape(x), dtype=ans.dtype) if a is None else a
            out.append(prim(base, b, *arrays, tree=tree))
        return out

    return rule


def _concatenate_rule(k: int, series: list, ans: Any, *xs: Any, axis: int) -> list:
    out = []
    for j in range(k):
        cs = [None if s is None else s[j] for s in series]
        if all(c is None for c in cs):
            out.append(None)
            continue
        parts = [np.zeros(_shape(x), dtype=ans.dtype) if c is None else c for c, x in zip(cs, xs)]
        out.append(np.concatenate(parts, axis=axis))
    return out


# ---------------------------------------------------------------------------------------------
# Linear algebra (batched over leading dimensions)
# ---------------------------------------------------------------------------------------------
def _mT(x: Any) -> Any:
    return np.swapaxes(x, -1, -2)


def _s_inv(a: list, n: int, b0: Any) -> list:
    """B = A^-1: sum_i A_i B_{j-i} = 0 for j >= 1, so B_j = -B0 sum_{i=1..j} A_i B_{j-i}."""
    b = [b0]
    for j in range(1, n + 1):
        r = _total(None if a[i] is None or b[j - i] is None else a[i] @ b[j - i] for i in range(1, j + 1))
        b.append(None if r is None else -(b0 @ r))
    return b


def _inv_rule(k: int, series: list, ans: Any, x: Any) -> list:
    return _s_inv(_full(series[0], x, k), k, ans)[1:]


def _solve_rule(k: int, series: list, ans: Any, a: Any, b: Any) -> list:
    vector = len(_shape(b)) == 1  # NumPy's rule: a 1-d b is one vector (broadcast over a's batch)
    aa = _full(series[0], a, k)
    bb = _full(series[1], b, k)
    if vector:
        bb = [None if c is None else c[..., None] for c in bb]
        xs = [ans[..., None]]
    else:
        xs = [ans]
    for j in range(1, k + 1):
        r = _total(None if aa[i] is None or xs[j - i] is None else aa[i] @ xs[j - i] for i in range(1, j + 1))
        rhs = _sub(bb[j], r)
        xs.append(None if rhs is None else np.linalg.solve(a, rhs))
    return [None if c is None else (c[..., 0] if vector else c) for c in xs[1:]]


def _trace_series(a: Any, n: int) -> list:
    """The series of tr(A^-1 A'), index 0..n-1 (the derivative of log|det A|)."""
    w = _s_inv(a, n - 1, np.linalg.inv(a[0]))
    da = _deriv(a, n)
    out = []
    for m in range(n):
        terms = [None if w[i] is None or da[m - i] is None else w[i] @ da[m - i] for i in range(m + 1)]
        t = _total(terms)
        out.append(None if t is None else np.trace(t, axis1=-2, axis2=-1))
    return out


def _logabsdet_rule(k: int, series: list, ans: Any, x: Any) -> list:
    return _integrate(_trace_series(_full(series[0], x, k), k), k)


def _det_rule(k: int, series: list, ans: Any, x: Any) -> list:
    # det' = det tr(A^-1 A'): j det_j = sum_{i=1..j} q_{i-1} det_{j-i}
    q = _trace_series(_full(series[0], x, k), k)
    d = [ans]
    for j in range(1, k + 1):
        d.append(_scale(_total(_mul(q[i - 1], d[j - i]) for i in range(1, j + 1)), 1.0 / j))
    return d[1:]


def _cholesky_rule(k: int, series: list, ans: Any, x: Any) -> list:
    # L L^T = A: L0 L_j^T + L_j L0^T = C_j = sym(A_j) - sum_{i=1..j-1} L_i L_{j-i}^T, solved by
    # L_j = L0 phi(L0^-1 C_j L0^-T) with phi = lower triangle, diagonal halved. A_j is symmetrized
    # as the VJP's gradient is (cholesky reads one triangle of a symmetric matrix).
    s = series[0]
    n = _shape(ans)[-1]
    half = np.tril(np.ones((n, n))) - 0.5 * np.eye(n)
    linv = np.linalg.inv(ans)
    ls = [ans]
    for j in range(1, k + 1):
        aj = None if s[j - 1] is None else 0.5 * (s[j - 1] + _mT(s[j - 1]))
        inner = _total(None if ls[i] is None or ls[j - i] is None else ls[i] @ _mT(ls[j - i]) for i in range(1, j))
        c = _sub(aj, inner)
        ls.append(None if c is None else ans @ ((linv @ c @ _mT(linv)) * half))
    return ls[1:]


# ---------------------------------------------------------------------------------------------
# Pooling (gradjit.nn): max pooling reads the element its forward pass chose, a fixed choice.
# ---------------------------------------------------------------------------------------------
def _gather_rule(k: int, series: list, ans: Any, a: Any, x: Any, **params: Any) -> list | None:
    if series[0] is None:
        return None
    return [None if c is None else _nn_ops.max_pool2d_gather_p(c, x, **params) for c in series[0]]


def _max_pool_rule(k: int, series: list, ans: Any, x: Any, **params: Any) -> list:
    return [None if c is None else _nn_ops.max_pool2d_gather_p(c, x, **params) for c in series[0]]


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------
def _install() -> None:
    p = PRIMITIVES
    table: dict[str, Rule] = {**_UNARY, **_BINARY}
    table["neg"] = _neg_rule
    table["positive"] = _identity_rule
    table["astype"] = _identity_rule  # the walker casts each coefficient to the output's dtype
    for name in ("sign", "floor", "ceil", "rint", "trunc", "round", "stop_gradient", "slogdet_sign"):
        table[name] = _zero_rule
    for name in ("reshape", "transpose", "broadcast_to", "getitem", "reduce_sum", "cumsum"):
        table[name] = _linear(p[name])
    table["reduce_max"] = _extremum_reduce
    table["reduce_min"] = _extremum_reduce
    table["reduce_prod"] = _prod_reduce
    table["index_add"] = _index_rule(p["index_add"], is_set=False)
    table["index_set"] = _index_rule(p["index_set"], is_set=True)
    table["concatenate"] = _concatenate_rule
    for name in ("matmul", "einsum", "conv2d", "conv2d_grad_input", "conv2d_grad_weight"):
        table[name] = _multilinear(p[name])
    table["inv"] = _inv_rule
    table["solve"] = _solve_rule
    table["det"] = _det_rule
    table["logabsdet"] = _logabsdet_rule
    table["cholesky"] = _cholesky_rule
    table["max_pool2d"] = _max_pool_rule
    table["max_pool2d_gather"] = _gather_rule
    for name in ("max_pool2d_grad", "avg_pool2d", "avg_pool2d_grad"):
        table[name] = _linear(p[name])
    for name, rule in table.items():
        RULES[p[name]] = rule


_install()


# ---------------------------------------------------------------------------------------------
# The walker
# ---------------------------------------------------------------------------------------------
def _no_rule(eqn: Eqn) -> NoTaylorRuleError:
    name = eqn.prim.name
    return NoTaylorRuleError(
        name,
        f"no Taylor rule for '{name}': taylor mode cannot propagate a series through it",
        "Register one with `from gradjit.taylor import deftaylor; deftaylor(<primitive>, rule)`, "
        "rule(k, series, ans, *args, **params) -> [c1, ..., ck]; or differentiate this function "
        "with nested gradjit.grad instead.",
        where=eqn.where,
    )


def propagate(eqns: list[Eqn], seeds: dict[int, list], order: int) -> dict[int, list]:
    """Propagate Taylor coefficients from ``seeds`` (var index -> ``[c1, ..., ck]``) through ``eqns``.

    Returns the coefficients of every variable whose series is not constant; variables missing
    from the result are constant in ``s``.
    """
    ser = dict(seeds)
    get = ser.get
    for eqn in eqns:
        ins = eqn.ins
        series = [get(a.index) if type(a) is Var else None for a in ins]
        if all(s is None for s in series):
            continue
        out = eqn.out
        if out.dtype.kind != "f":
            continue  # integer and boolean results are locally constant
        rule = RULES.get(eqn.prim)
        if rule is None:
            raise _no_rule(eqn)
        res = rule(order, series, out.value, *[a.value for a in ins], **eqn.params)
        if res is None:
            continue
        coeffs = [None if c is None else fit(c, out.shape, out.dtype) for c in res]
        if any(c is not None for c in coeffs):
            ser[out.index] = coeffs
    return ser


# ---------------------------------------------------------------------------------------------
# The trace: records the user's line of equations without a rule, so the error can name it.
# ---------------------------------------------------------------------------------------------
class _TaylorTrace(Trace):
    __slots__ = ()

    def emit(self, prim: Primitive, ins: tuple, params: dict, out: Any) -> Tracer:
        t = Trace.emit(self, prim, ins, params, out)
        if prim not in RULES:
            eqn = self.eqns[-1]
            if eqn.where is None:
                eqn.where = user_line()
        return t


class _taylor_trace:
    """``tracing.new_trace`` with a ``_TaylorTrace``: one level above the active traces."""

    __slots__ = ("trace",)

    def __enter__(self) -> Trace:
        self.trace = _TaylorTrace(len(_tracing._STACK) + 1)
        _tracing._STACK.append(self.trace)
        return self.trace

    def __exit__(self, *exc: Any) -> None:
        self.trace.active = False
        _tracing._STACK.remove(self.trace)


# ---------------------------------------------------------------------------------------------
# The transform
# ---------------------------------------------------------------------------------------------
def _direction(d: Any, var: Var, op: str, n: int) -> Any:
    shape = tuple(d.shape) if type(d) is Tracer else np.shape(d)
    if shape != var.shape:
        raise TaylorArgumentError(
            op,
            f"direction leaf {n} has shape {shape}, its point x has shape {var.shape}",
            "Give v the structure and shapes of x.",
        )
    if type(d) is Tracer:
        return fit(d, var.shape, var.dtype)
    return np.asarray(d, dtype=var.dtype)


def _derivative(c: Any, j: int, var: Var, leaf: Any) -> Any:
    if c is None:
        c = np.zeros(var.shape, dtype=var.dtype)
    elif j > 1:
        c = c * float(math.factorial(j))
    return like_leaf(c, leaf)


def _zero_like(leaf: Any) -> Any:
    if type(leaf) is float:
        return 0.0
    if type(leaf) is Tracer:
        return np.zeros(leaf.shape, dtype=leaf.dtype)
    return like_leaf(np.zeros(np.shape(leaf), dtype=leaf.dtype), leaf)


def taylor(f: Callable, order: int, with_value: bool = False) -> Callable:
    """Directional derivatives of ``f`` of orders 1..``order``, by one Taylor-series propagation.

    ``taylor(f, order=k)(x, v, *args, **kwargs)`` returns the list ``[D1, ..., Dk]`` with
    ``Dj = d^j/ds^j f(x + s v, *args, **kwargs)`` at ``s = 0``, each in the structure of ``f``'s
    output (leaves of its shapes and dtypes; ``None`` for integer or non-array output leaves).
    ``x`` and ``v`` are arrays, floats or pytrees of the same structure; the derivative is taken
    along ``v`` in all float leaves of ``x`` at once. Further positional and keyword arguments are
    passed to ``f`` unchanged and held constant; to move several arguments, pass them as one tuple
    ``x`` (and ``f`` unpacks it). With ``with_value=True`` the result is ``(f(x), [D1, ..., Dk])``.

    ``f`` is traced once and the series propagated through its equations at a cost polynomial in
    ``k`` (O(k^2) per elementwise operation); the result can be differentiated again (``grad`` of a
    coefficient) and traced (``make_wengert``).
    """
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 0:
        raise TaylorArgumentError(
            f"taylor({_fname(f)})", f"order must be a non-negative int, got {order!r}", "Pass order=k, k >= 1."
        )
    k = int(order)

    @functools.wraps(f)
    def taylor_f(x: Any, v: Any, *args: Any, **kwargs: Any) -> Any:
        op = f"taylor({_fname(f)}, order={k})"
        x_leaves, x_def = pytree.flatten(x)
        v_leaves, v_def = pytree.flatten(v)
        if v_def != x_def:
            raise TaylorArgumentError(
                op,
                f"the direction v has structure {v_def}, the point x has {x_def}",
                "Pass v with the structure of x: one direction leaf per leaf of x.",
            )
        with _taylor_trace() as trace:
            seeds: dict[int, list] = {}
            traced = []
            for n, (leaf, d) in enumerate(zip(x_leaves, v_leaves)):
                if not is_float_leaf(leaf):
                    traced.append(leaf)
                    continue
                t = trace.new_input(leaf)
                traced.append(t)
                if k and d is not None:
                    seeds[t._var.index] = [_direction(d, t._var, op, n)] + [None] * (k - 1)
            out = f(pytree.unflatten(x_def, traced), *args, **kwargs)
        ser = propagate(trace.eqns, seeds, k)
        out_leaves, out_def = pytree.flatten(out)
        columns = []  # per output leaf: its k derivatives
        for leaf in out_leaves:
            if type(leaf) is Tracer and leaf._trace is trace:
                var = leaf._var
                if var.dtype.kind != "f":
                    columns.append([None] * k)
                    continue
                cs = ser.get(var.index) or [None] * k
                columns.append([_derivative(cs[j], j + 1, var, leaf._value) for j in range(k)])
            elif is_float_leaf(leaf):
                columns.append([_zero_like(leaf) for _ in range(k)])
            else:
                columns.append([None] * k)
        derivs = [pytree.unflatten(out_def, [col[j] for col in columns]) for j in range(k)]
        if with_value:
            return _unwrap_tree(out, trace), derivs
        return derivs

    return taylor_f
