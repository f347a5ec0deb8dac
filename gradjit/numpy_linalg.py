"""Contractions and linear algebra on tracers: ``einsum``, ``tensordot``, ``inner``/``outer``/``vdot``/``kron``
and ``numpy.linalg``.

Contractions lower to the ``matmul`` and ``einsum`` primitives; ``numpy.linalg`` functions map to
the linear-algebra primitives (``inv``, ``det``, ``logabsdet``, ``slogdet_sign``, ``solve``,
``cholesky``) or are composites (``norm``, ``multi_dot``, ``matrix_power``).

Invariants
----------
- The ``einsum`` primitive only ever sees fully explicit subscripts: no ``...`` (expanded into
  letters from the operands' ranks) and an explicit ``->`` output (NumPy's implicit output is
  computed here). Its VJP (``einsum_operand_grad``) relies on that.
- Like every composite, the functions here call primitives or other composites directly, never
  ``np.*`` on tracers; they also accept concrete arrays (``bind`` then just computes), which is
  what lets ``einsum_operand_grad`` serve both the plain reverse sweep and a traced one.
- Anything NumPy accepts but gradjit cannot differentiate (``ord='nuc'``, ``ord=2`` for matrices,
  which need an SVD) raises ``UnsupportedOperationError``; nothing is silently approximated.
"""

from __future__ import annotations

import string
from collections import Counter
from typing import Any

import numpy as np

from .numpy_api import (
    REDUCTIONS,
    astype,
    broadcast_to,
    dtype_of,
    implements,
    matmul,
    ndim_of,
    norm_axis,
    reshape,
    shape_of,
    transpose,
    unsupported,
)
from .placement import put
from .primitives import (
    P,
    cholesky_p,
    det_p,
    einsum_p,
    inv_p,
    logabsdet_p,
    matmul_p,
    slogdet_sign_p,
    solve_p,
)

try:  # NumPy >= 2
    from numpy.linalg._linalg import SlogdetResult
except ImportError:  # pragma: no cover - NumPy 1.x returns a plain tuple
    SlogdetResult = None

__all__ = ["einsum", "einsum_operand_grad", "tensordot", "inner", "outer", "vdot", "kron", "norm"]

# NumPy's interleaved einsum format numbers labels 0..51 as A..Z, a..z.
_LETTERS = string.ascii_uppercase + string.ascii_lowercase


def _mul(a: Any, b: Any) -> Any:
    return P("mul")(a, b)


def _abs(x: Any) -> Any:
    return P("abs")(x)


def _as_float(x: Any) -> Any:
    return x if dtype_of(x).kind in "fc" else astype(x, np.float64)


def _sum(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    return REDUCTIONS["sum"](x, axis=axis, keepdims=keepdims)


def _swap_last(x: Any) -> Any:
    nd = ndim_of(x)
    return transpose(x, list(range(nd - 2)) + [nd - 1, nd - 2])


# ---------------------------------------------------------------------------------------------
# einsum
# ---------------------------------------------------------------------------------------------
def _sublist_to_str(sub: Any) -> str:
    out = []
    for s in sub:
        if s is Ellipsis:
            out.append("...")
        else:
            s = int(s)
            if not 0 <= s < len(_LETTERS):
                raise ValueError(f"einsum: subscript {s} is not in [0, 52)")
            out.append(_LETTERS[s])
    return "".join(out)


def _parse_einsum_args(args: tuple) -> tuple[str, list]:
    """``(subscripts, *operands)`` or NumPy's interleaved ``(op0, sub0, op1, sub1, ..., [out])``."""
    if isinstance(args[0], str):
        return args[0], list(args[1:])
    operands, subs = [], []
    rest = list(args)
    while len(rest) >= 2:
        operands.append(rest.pop(0))
        subs.append(_sublist_to_str(rest.pop(0)))
    spec = ",".join(subs)
    if rest:
        spec += "->" + _sublist_to_str(rest[0])
    return spec, operands


def normalize_subscripts(subscripts: str, ndims: list[int]) -> str:
    """Fully explicit einsum subscripts: ``...`` expanded into fresh letters, ``->`` output always present.

    Broadcast (ellipsis) dimensions are right-aligned across operands, as in NumPy; the implicit
    output is the ellipsis dimensions followed by the letters used exactly once, in sorted order.
    """
    spec = subscripts.replace(" ", "")
    ins, arrow, out = spec.partition("->")
    terms = ins.split(",")
    if len(terms) != len(ndims):
        raise ValueError(f"einsum: {len(terms)} operand subscript(s) in {subscripts!r} for {len(ndims)} operand(s)")
    for c in spec.replace("...", "").replace(",", "").replace("->", ""):
        if c not in _LETTERS:
            raise ValueError(f"einsum: invalid subscript {c!r} in {subscripts!r}; use letters a-z, A-Z")
    n_ell = 0
    for t, nd in zip(terms, ndims, strict=True):
        k = nd - len(t.replace("...", ""))
        if "..." in t:
            if k < 0:
                raise ValueError(f"einsum: operand of rank {nd} has too many subscripts in {t!r}")
            n_ell = max(n_ell, k)
        elif k != 0:
            raise ValueError(f"einsum: operand of rank {nd} does not match its subscripts {t!r}")
    used = set(spec)
    ell = "".join([c for c in _LETTERS if c not in used][:n_ell])
    if len(ell) < n_ell:
        raise ValueError("einsum: too many dimensions; at most 52 distinct subscripts")
    expanded = []
    for t, nd in zip(terms, ndims, strict=True):
        if "..." in t:
            k = nd - len(t.replace("...", ""))
            t = t.replace("...", ell[n_ell - k :])
        expanded.append(t)
    if not arrow:
        counts = Counter("".join(terms).replace("...", ""))
        out = ell + "".join(sorted(c for c, n in counts.items() if n == 1))
    elif "..." in out:
        out = out.replace("...", ell)
    elif n_ell:
        raise ValueError(
            "einsum: output has more dimensions than subscripts given in einstein sum, but no '...' "
            "ellipsis provided to broadcast the extra dimensions."
        )
    return ",".join(expanded) + "->" + out


@implements(np.einsum)
def einsum(*args: Any, out: Any = None, dtype: Any = None, order: str = "K", casting: str = "safe",
           optimize: Any = False) -> Any:  # fmt: skip
    if out is not None:
        raise unsupported(
            "np.einsum",
            "out= writes the result into an existing array in place, which cannot be recorded",
            "Assign the result instead: y = np.einsum(...).",
        )
    subscripts, operands = _parse_einsum_args(args)
    if dtype is not None:
        operands = [astype(x, dtype) for x in operands]
    spec = normalize_subscripts(subscripts, [ndim_of(x) for x in operands])
    return einsum_p(*operands, subscripts=spec)


def einsum_operand_grad(g: Any, operands: tuple, subscripts: str, i: int) -> Any:
    """Cotangent of operand ``i`` of ``einsum(subscripts, *operands)`` given the output cotangent ``g``.

    ``subscripts`` is fully explicit (see ``normalize_subscripts``). The cotangent is an einsum of
    ``g`` with the other operands. A letter repeated within operand ``i`` (a diagonal, ``'ii->'``)
    is renamed and tied to its first occurrence by an identity matrix, which scatters the
    cotangent onto the diagonal. A letter of operand ``i`` found nowhere else was summed away in
    the forward pass, so the cotangent is broadcast back along it.
    """
    ins, _, out = subscripts.partition("->")
    terms = ins.split(",")
    target = terms[i]
    shape = shape_of(operands[i])
    fresh = iter([c for c in _LETTERS if c not in set(subscripts)])
    renamed, eye_terms, eyes = [], [], []
    for c, n in zip(target, shape, strict=True):
        if c in renamed:
            d = next(fresh)
            renamed.append(d)
            eye_terms.append(c + d)
            eyes.append(put(np.eye(n, dtype=dtype_of(g)), like=g))
        else:
            renamed.append(c)
    other_terms = [t for j, t in enumerate(terms) if j != i]
    other_ops = [x for j, x in enumerate(operands) if j != i]
    present = set(out).union(*other_terms, *eye_terms)
    kept = "".join(c for c in renamed if c in present)
    in_terms = [out, *other_terms, *eye_terms]
    if len(in_terms) == 1 and in_terms[0] == kept:
        r = g  # operand i is the output up to summed-away axes
    else:
        r = einsum_p(g, *other_ops, *eyes, subscripts=",".join(in_terms) + "->" + kept)
    if len(kept) < len(renamed):
        it = iter(shape_of(r))
        full = tuple(next(it) if c in present else n for c, n in zip(renamed, shape, strict=True))
        expanded = tuple(s if c in present else 1 for c, s in zip(renamed, full, strict=True))
        r = broadcast_to(reshape(r, expanded), full)
    return r


# ---------------------------------------------------------------------------------------------
# tensordot, inner, outer, vdot, kron
# ---------------------------------------------------------------------------------------------
@implements(np.tensordot, np.linalg.tensordot)
def tensordot(a: Any, b: Any, axes: Any = 2) -> Any:
    na, nb = ndim_of(a), ndim_of(b)
    sa, sb = shape_of(a), shape_of(b)
    if isinstance(axes, (int, np.integer)):
        n = int(axes)
        if n < 0 or n > na or n > nb:
            raise ValueError(f"tensordot: axes={n} is out of range for operands of rank {na} and {nb}")
        axes_a, axes_b = list(range(na - n, na)), list(range(n))
    else:
        axes_a, axes_b = axes
        axes_a = [axes_a] if isinstance(axes_a, (int, np.integer)) else list(axes_a)
        axes_b = [axes_b] if isinstance(axes_b, (int, np.integer)) else list(axes_b)
        if len(axes_a) != len(axes_b):
            raise ValueError("tensordot: shape-mismatch for sum (different numbers of axes)")
        axes_a = list(norm_axis(x, na) for x in axes_a)
        axes_b = list(norm_axis(x, nb) for x in axes_b)
        axes_a, axes_b = [x[0] for x in axes_a], [x[0] for x in axes_b]
    for i, j in zip(axes_a, axes_b, strict=True):
        if sa[i] != sb[j]:
            raise ValueError(
                f"tensordot: shape-mismatch for sum (axis {i} of size {sa[i]} vs axis {j} of size {sb[j]})"
            )
    free_a = [i for i in range(na) if i not in axes_a]
    free_b = [i for i in range(nb) if i not in axes_b]
    k = int(np.prod([sa[i] for i in axes_a], dtype=np.int64))
    m = int(np.prod([sa[i] for i in free_a], dtype=np.int64))
    n = int(np.prod([sb[i] for i in free_b], dtype=np.int64))
    a2 = reshape(transpose(a, free_a + axes_a), (m, k))
    b2 = reshape(transpose(b, axes_b + free_b), (k, n))
    return reshape(matmul_p(a2, b2), tuple(sa[i] for i in free_a) + tuple(sb[i] for i in free_b))


@implements(np.inner)
def inner(a: Any, b: Any) -> Any:
    if ndim_of(a) == 0 or ndim_of(b) == 0:
        return _mul(a, b)
    return tensordot(a, b, axes=([-1], [-1]))


@implements(np.outer)
def outer(a: Any, b: Any, out: Any = None) -> Any:
    if out is not None:
        raise unsupported("np.outer", "out= cannot be recorded", "Assign the result instead.")
    return _mul(reshape(a, (-1, 1)), reshape(b, (1, -1)))


@implements(np.linalg.outer)
def linalg_outer(x1: Any, x2: Any) -> Any:
    if ndim_of(x1) != 1 or ndim_of(x2) != 1:
        raise ValueError(f"Input arrays must be one-dimensional, but they are {ndim_of(x1)=} and {ndim_of(x2)=}.")
    return outer(x1, x2)


@implements(np.vdot)
def vdot(a: Any, b: Any) -> Any:
    # Real inputs only (tracers are real), so the conjugate of a is a itself.
    return matmul_p(reshape(a, (-1,)), reshape(b, (-1,)))


@implements(np.kron)
def kron(a: Any, b: Any) -> Any:
    """Interleave the axes of ``a`` and ``b`` with size-1 axes, multiply, and merge axis pairs."""
    sa, sb = shape_of(a), shape_of(b)
    nd = max(len(sa), len(sb))
    sa, sb = (1,) * (nd - len(sa)) + tuple(sa), (1,) * (nd - len(sb)) + tuple(sb)
    a2 = reshape(a, tuple(x for s in sa for x in (s, 1)))
    b2 = reshape(b, tuple(x for s in sb for x in (1, s)))
    return reshape(_mul(a2, b2), tuple(x * y for x, y in zip(sa, sb, strict=True)))


@implements(np.linalg.vecdot)
def vecdot(x1: Any, x2: Any, /, *, axis: int = -1) -> Any:
    return _sum(_mul(x1, x2), axis=axis)


@implements(np.linalg.matmul)
def linalg_matmul(x1: Any, x2: Any, /) -> Any:
    return matmul(x1, x2)


@implements(np.linalg.multi_dot)
def multi_dot(arrays: Any, *, out: Any = None) -> Any:
    if out is not None:
        raise unsupported("np.linalg.multi_dot", "out= cannot be recorded", "Assign the result instead.")
    arrays = list(arrays)
    if len(arrays) < 2:
        raise ValueError("Expecting at least two arrays.")
    r = arrays[0]
    for x in arrays[1:]:
        r = matmul(r, x)
    return r


@implements(np.linalg.matrix_power)
def matrix_power(a: Any, n: Any) -> Any:
    n = int(n)
    s = shape_of(a)
    if len(s) < 2 or s[-1] != s[-2]:
        raise np.linalg.LinAlgError("Last 2 dimensions of the array must be square")
    if n == 0:
        return np.copy(np.broadcast_to(put(np.eye(s[-1], dtype=dtype_of(a)), like=a), s))
    if n < 0:
        a, n = inv(a), -n
    result, base = None, a
    while n:  # binary powering, like NumPy
        if n & 1:
            result = base if result is None else matmul_p(result, base)
        n >>= 1
        if n:
            base = matmul_p(base, base)
    return result


# ---------------------------------------------------------------------------------------------
# numpy.linalg: primitives
# ---------------------------------------------------------------------------------------------
@implements(np.linalg.inv)
def inv(a: Any) -> Any:
    return inv_p(a)


@implements(np.linalg.det)
def det(a: Any) -> Any:
    return det_p(a)


@implements(np.linalg.slogdet)
def slogdet(a: Any) -> Any:
    sign, logabsdet = slogdet_sign_p(a), logabsdet_p(a)
    return (sign, logabsdet) if SlogdetResult is None else SlogdetResult(sign, logabsdet)


@implements(np.linalg.solve)
def solve(a: Any, b: Any) -> Any:
    return solve_p(a, b)


@implements(np.linalg.cholesky)
def cholesky(a: Any, /, *, upper: bool = False) -> Any:
    L = cholesky_p(a)
    return _swap_last(L) if upper else L


# ---------------------------------------------------------------------------------------------
# numpy.linalg: norms (composites of abs, sum, max/min, sqrt, power)
# ---------------------------------------------------------------------------------------------
def _vector_norm(x: Any, ord: Any, axes: tuple[int, ...], keepdims: bool) -> Any:
    if ord is None or ord == 2:
        return P("sqrt")(_sum(_mul(x, x), axis=axes, keepdims=keepdims))
    if isinstance(ord, str):
        raise ValueError(f"Invalid norm order {ord!r} for vectors")
    if ord == np.inf:
        return REDUCTIONS["max"](_abs(x), axis=axes, keepdims=keepdims)
    if ord == -np.inf:
        return REDUCTIONS["min"](_abs(x), axis=axes, keepdims=keepdims)
    if ord == 0:
        return _sum(astype(P("ne")(x, 0), dtype_of(x)), axis=axes, keepdims=keepdims)
    if ord == 1:
        return _sum(_abs(x), axis=axes, keepdims=keepdims)
    p = float(ord)
    return P("pow")(_sum(P("pow")(_abs(x), p), axis=axes, keepdims=keepdims), 1.0 / p)


def _matrix_norm(x: Any, ord: Any, row: int, col: int, keepdims: bool) -> Any:
    if ord in (None, "fro", "f"):
        r = P("sqrt")(_sum(_mul(x, x), axis=(row, col)))
    elif ord in (1, -1, np.inf, -np.inf):
        # 1-norms sum over rows and pick the extreme column; inf-norms the other way round.
        summed, picked = (row, col) if ord in (1, -1) else (col, row)
        extreme = REDUCTIONS["max" if ord > 0 else "min"]
        r = extreme(_sum(_abs(x), axis=summed), axis=picked - (picked > summed))
    elif ord in (2, -2, "nuc"):
        raise unsupported(
            "np.linalg.norm",
            f"the matrix norm ord={ord!r} needs singular values (an SVD), which gradjit does not differentiate",
            "Use ord='fro', 1, -1, np.inf or -np.inf, or wrap your function with @gradjit.primitive.",
        )
    else:
        raise ValueError(f"Invalid norm order {ord!r} for matrices")
    if keepdims:
        s = list(shape_of(x))
        s[row] = s[col] = 1
        r = reshape(r, tuple(s))
    return r


@implements(np.linalg.norm)
def norm(x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> Any:
    x = _as_float(x)
    nd = ndim_of(x)
    if axis is None:
        if ord is None:
            r = _vector_norm(reshape(x, (-1,)), None, (0,), False)
            return reshape(r, (1,) * nd) if keepdims else r
        if nd == 1:
            axis = (0,)
        elif nd == 2:
            axis = (0, 1)
        else:
            raise ValueError("Improper number of dimensions to norm.")
    elif isinstance(axis, (int, np.integer)):
        axis = (int(axis),)
    axis = tuple(axis)
    if len(axis) == 1:
        return _vector_norm(x, ord, norm_axis(axis, nd), keepdims)
    if len(axis) == 2:
        row, col = (int(a) % nd if -nd <= int(a) < nd else None for a in axis)
        if row is None or col is None:
            raise np.exceptions.AxisError(f"axis {axis} is out of bounds for array of dimension {nd}")
        if row == col:
            raise ValueError("Duplicate axes given.")
        return _matrix_norm(x, ord, row, col, keepdims)
    raise ValueError("Improper number of dimensions to norm.")


@implements(np.linalg.vector_norm)
def vector_norm(x: Any, /, *, axis: Any = None, keepdims: bool = False, ord: Any = 2) -> Any:
    x = _as_float(x)
    axes = norm_axis(axis, ndim_of(x))
    return _vector_norm(x, ord, axes, keepdims)


@implements(np.linalg.matrix_norm)
def matrix_norm(x: Any, /, *, keepdims: bool = False, ord: Any = "fro") -> Any:
    x = _as_float(x)
    nd = ndim_of(x)
    if nd < 2:
        raise ValueError(f"The input array must be at least 2-dimensional, but it is {nd}-dimensional")
    return _matrix_norm(x, ord, nd - 2, nd - 1, keepdims)
