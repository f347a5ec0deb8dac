"""Forward-mode rules: ``rule(t, ans, *args, **params)``, the tangent one argument contributes.

The mirror image of ``rules`` (reverse mode). ``t`` is the tangent of one argument (its shape and
dtype); the forward walker (``forward``) sums the contributions of the arguments that have a tangent,
broadcasts the sum to the output's shape and casts it to the output's dtype, skips arguments without
a tangent and outputs that are not floats. ``ZERO`` declares an argument with identically zero
derivative. A joint rule ``jvp_all(ts, ans, *args, **params)`` (``ts[i]`` None for an argument
without a tangent) is used where one equation beats a sum of contributions (``select``, indexing,
``concatenate``, ``einsum``).

Rules are NumPy code on the recorded forward values. When those are tracers of an outer trace, every
operation a rule performs is recorded there: the forward sweep is a Wengert list of its own, so
forward mode composes with reverse mode (``hvp`` is forward-over-reverse) and with itself. The same
safety rules hold as for the VJP rules: no ``np.where`` whose unselected branch can be inf/nan.

Conventions shared with the VJP rules, so that ``<u, J t> == <J^T u, t>`` holds everywhere, kinks
included: ties of ``maximum``/``minimum`` and of ``max``/``min`` reductions share the derivative
equally; max pooling follows the first maximum of each window; ``prod`` and ``cumprod`` are exact
where ``x`` has zeros; ``cholesky`` sees the symmetric part of its input's tangent.

User-defined gradients
----------------------
A primitive with VJP rules but no JVP rules (``@gj.primitive`` with ``defvjp``, ``custom_vjp``, a
scoped ``gj.gradients`` override, ``gj.defvjp`` on any function) gets forward mode by *transposing*
its VJP (``transposed_jvp``): a VJP rule is linear in its cotangent ``u``, so
``J t = grad_u <vjp(u), t>``. The registry installs it whenever it sets VJP rules, unless the user gave
JVP rules with ``gj.defjvp``. That is why ``hvp`` works through, e.g., the straight-through ``floor``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import tracing as _tracing
from .nn import ops as _nn
from .placement import full, put, zeros
from .primitives import (
    P,
    broadcast_to_p,
    concatenate_p,
    cumsum_p,
    einsum_p,
    getitem_p,
    index_add_p,
    index_set_p,
    matmul_p,
    reduce_sum_p,
    reshape_p,
    select_p,
    solve_p,
    transpose_p,
)
from .rules import _mT, _prod_vjp, _unreduce
from .tracing import ZERO, Primitive, Tracer

__all__ = ["defjvp", "defjvp_all", "transposed_jvp", "is_transposed"]


def defjvp(prim: Primitive, *rules: Callable[..., Any] | Any) -> None:
    """Register one forward rule per positional argument of ``prim`` (``ZERO`` for none)."""
    prim.jvps = tuple(rules)


def defjvp_all(prim: Primitive, rule: Callable[..., Any]) -> None:
    """Register a joint rule ``rule(ts, ans, *args, **params) -> tangent``."""
    prim.jvp_all = rule


def _dtype(x: Any) -> np.dtype:
    dt = getattr(x, "dtype", None)
    return dt if dt is not None else np.result_type(x)


def _zeros_like(x: Any) -> Any:
    return zeros(np.shape(x), _dtype(x), like=x)


# ---------------------------------------------------------------------------------------------
# Elementwise, unary and binary
# ---------------------------------------------------------------------------------------------
# The Jacobian of an elementwise operation with respect to one operand is diagonal (after
# broadcasting): ``J t`` and ``J^T g`` are the same product of the local derivative with the
# incoming vector. So each forward rule *is* the reverse rule, given the tangent in place of the
# cotangent: one formula, one set of safety guards (pow at y == 0, log of x == 0, sinc at 0), and
# the tie conventions of maximum/minimum (shared equally) agree between the modes by construction.
# The walker broadcasts a contribution of the operand's shape to the output's.
_DIAGONAL = (
    "neg positive reciprocal square sqrt cbrt exp exp2 expm1 log log2 log10 log1p sin cos tan arcsin "
    "arccos arctan sinh cosh tanh arcsinh arccosh arctanh abs fabs sinc "
    "add sub mul div pow arctan2 hypot logaddexp logaddexp2 maximum minimum fmax fmin mod fmod copysign"
).split()
for _name in _DIAGONAL:
    _prim = P(_name)
    defjvp(_prim, *_prim.vjps)

# Piecewise constant, or boolean/integer valued: no derivative.
for _name in ("sign", "floor", "ceil", "rint", "trunc", "round", "logical_not", "isnan", "isinf",
              "isfinite", "signbit"):  # fmt: skip
    defjvp(P(_name), ZERO)
for _name in ("floor_divide", "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or",
              "logical_xor", "bitwise_and", "bitwise_or", "bitwise_xor"):  # fmt: skip
    defjvp(P(_name), ZERO, ZERO)


def _select_jvp(ts: list, ans: Any, c: Any, x: Any, y: Any) -> Any:
    tx, ty = ts[1], ts[2]
    if tx is None and ty is None:
        return ZERO
    return select_p(c, 0.0 if tx is None else tx, 0.0 if ty is None else ty)


defjvp_all(P("select"), _select_jvp)
defjvp(P("astype"), lambda t, ans, x, dtype: t)  # the walker casts to the output's dtype
defjvp(P("stop_gradient"), ZERO)


# ---------------------------------------------------------------------------------------------
# Reductions
# ---------------------------------------------------------------------------------------------
def _sum_jvp(t: Any, ans: Any, x: Any, axis: tuple[int, ...], keepdims: bool) -> Any:
    return reduce_sum_p(t, axis=axis, keepdims=keepdims)


def _partials_jvp(vjp_rule: Callable) -> Callable:
    """The JVP of a reduction from its VJP rule: with ``g = 1`` the VJP rule gives the local
    derivatives ``d ans / d x`` laid out like ``x`` (ties shared, zeros exact); the tangent is their
    product with ``t`` summed over the reduced axes."""

    def rule(t: Any, ans: Any, x: Any, axis: tuple[int, ...], keepdims: bool) -> Any:
        partials = vjp_rule(full(np.shape(ans), 1, _dtype(ans), like=ans), ans, x, axis, keepdims)
        return reduce_sum_p(partials * t, axis=axis, keepdims=keepdims)

    return rule


def _extremum_jvp(t: Any, ans: Any, x: Any, axis: tuple[int, ...], keepdims: bool) -> Any:
    # The mean of t over the positions that attain the extremum (ties share equally, as in the VJP
    # rule ``rules._extremum_vjp``).
    hit = x == _unreduce(ans, x, axis, keepdims)
    count = np.sum(hit, axis=axis, keepdims=keepdims)
    return reduce_sum_p(t * hit, axis=axis, keepdims=keepdims) / count


def _cumprod_jvp(t: Any, ans: Any, x: Any, axis: int) -> Any:
    # Forward mode through the log-depth scan of multiplies that the VJP rule differentiates too
    # (``numpy_api.cumprod_scan``): exact where x has zeros, no division, and made of primitives, so
    # it is recorded (and differentiable) under nesting.
    from .forward import forward
    from .numpy_api import cumprod_scan
    from .tracing import new_trace

    with new_trace() as trace:
        xt = trace.new_input(x)
        out = cumprod_scan(xt, axis)
    tan = forward(trace.eqns, {xt._var.index: t})
    return tan.get(out._var.index, ZERO)


defjvp(P("reduce_sum"), _sum_jvp)
defjvp(P("reduce_max"), _extremum_jvp)
defjvp(P("reduce_min"), _extremum_jvp)
defjvp(P("reduce_prod"), _partials_jvp(_prod_vjp))
defjvp(P("cumsum"), lambda t, ans, x, axis: cumsum_p(t, axis=axis))
defjvp(P("cumprod"), _cumprod_jvp)
for _name in ("reduce_any", "reduce_all", "argmax", "argmin", "argsort", "nonzero"):
    defjvp(P(_name), ZERO)


# ---------------------------------------------------------------------------------------------
# Movement and indexing: linear, so the tangent is the primitive applied to the tangent(s).
# ---------------------------------------------------------------------------------------------
def _getitem_jvp(t: Any, ans: Any, x: Any, *arrays: Any, tree: tuple) -> Any:
    return getitem_p(t, *arrays, tree=tree)


def _index_add_jvp(ts: list, ans: Any, x: Any, v: Any, *arrays: Any, tree: tuple) -> Any:
    tx, tv = ts[0], ts[1]
    if tv is None:
        return ZERO if tx is None else tx
    return index_add_p(_zeros_like(ans) if tx is None else tx, tv, *arrays, tree=tree)


def _index_set_jvp(ts: list, ans: Any, x: Any, v: Any, *arrays: Any, tree: tuple) -> Any:
    # Writing the tangents in the same order as the values: with repeated integer indices the last
    # write wins for both, so the tangent of each position is that of the value that won it.
    tx, tv = ts[0], ts[1]
    if tx is None and tv is None:
        return ZERO
    return index_set_p(_zeros_like(ans) if tx is None else tx, 0.0 if tv is None else tv, *arrays, tree=tree)


def _concatenate_jvp(ts: list, ans: Any, *xs: Any, axis: int) -> Any:
    return concatenate_p(*[_zeros_like(x) if t is None else t for t, x in zip(ts, xs)], axis=axis)


defjvp(P("reshape"), lambda t, ans, x, shape: reshape_p(t, shape=shape))
defjvp(P("transpose"), lambda t, ans, x, axes: transpose_p(t, axes=axes))
defjvp(P("broadcast_to"), lambda t, ans, x, shape: broadcast_to_p(t, shape=shape))
defjvp(P("getitem"), _getitem_jvp)
defjvp_all(P("index_add"), _index_add_jvp)
defjvp_all(P("index_set"), _index_set_jvp)
defjvp_all(P("concatenate"), _concatenate_jvp)


# ---------------------------------------------------------------------------------------------
# Contractions: multilinear, so one term per operand with that operand replaced by its tangent.
# ---------------------------------------------------------------------------------------------
def _einsum_jvp(ts: list, ans: Any, *operands: Any, subscripts: str) -> Any:
    out = ZERO
    for i, t in enumerate(ts):
        if t is None:
            continue
        ops = list(operands)
        ops[i] = t
        term = einsum_p(*ops, subscripts=subscripts)
        out = term if out is ZERO else out + term
    return out


defjvp(P("matmul"), lambda t, ans, a, b: matmul_p(t, b), lambda t, ans, a, b: matmul_p(a, t))
defjvp_all(P("einsum"), _einsum_jvp)


# ---------------------------------------------------------------------------------------------
# Linear algebra (batched over leading dims)
# ---------------------------------------------------------------------------------------------
def _trace_of_inv_times(x: Any, t: Any) -> Any:
    """tr(x^-1 t) over the last two axes: sum_ij (x^-1)_ji t_ij."""
    return np.sum(_mT(np.linalg.inv(x)) * t, axis=(-2, -1))


def _solve_jvp_a(t: Any, ans: Any, a: Any, b: Any) -> Any:
    # d(a^-1 b) = -a^-1 (da) a^-1 b = -solve(a, da @ ans); a 1-D b is a column (ans is (..., n)).
    if np.ndim(b) == 1:
        return -solve_p(a, matmul_p(t, ans[..., None]))[..., 0]
    return -solve_p(a, matmul_p(t, ans))


def _cholesky_jvp(t: Any, L: Any, x: Any) -> Any:
    # dL = L phi(L^-1 dA L^-T), phi = lower triangle with the diagonal halved (Murray 2016), with
    # dA the symmetric part of the tangent: the same map whose transpose the VJP rule computes.
    n = np.shape(L)[-1]
    half_diag = put(np.tril(np.ones((n, n))) - 0.5 * np.eye(n), like=L)
    sym = 0.5 * (t + _mT(t))
    linv = np.linalg.inv(L)
    return matmul_p(L, matmul_p(matmul_p(linv, sym), _mT(linv)) * half_diag)


defjvp(P("inv"), lambda t, ans, x: -matmul_p(matmul_p(ans, t), ans))
defjvp(P("det"), lambda t, ans, x: ans * _trace_of_inv_times(x, t))
defjvp(P("logabsdet"), lambda t, ans, x: _trace_of_inv_times(x, t))
defjvp(P("slogdet_sign"), ZERO)
defjvp(P("solve"), _solve_jvp_a, lambda t, ans, a, b: solve_p(a, t))
defjvp(P("cholesky"), _cholesky_jvp)


# ---------------------------------------------------------------------------------------------
# Convolution and pooling (gradjit.nn.ops): the convolution forms are bilinear, the pools' gradient
# primitives linear in their first operand; max pooling's window argmax is locally constant.
# ---------------------------------------------------------------------------------------------
defjvp(
    _nn.conv2d_p,
    lambda t, ans, x, w, stride, padding: _nn.conv2d_p(t, w, stride=stride, padding=padding),
    lambda t, ans, x, w, stride, padding: _nn.conv2d_p(x, t, stride=stride, padding=padding),
)
defjvp(
    _nn.conv2d_grad_input_p,
    lambda t, ans, g, w, stride, padding, shape: _nn.conv2d_grad_input_p(
        t, w, stride=stride, padding=padding, shape=shape
    ),
    lambda t, ans, g, w, stride, padding, shape: _nn.conv2d_grad_input_p(
        g, t, stride=stride, padding=padding, shape=shape
    ),
)
defjvp(
    _nn.conv2d_grad_weight_p,
    lambda t, ans, x, g, stride, padding, shape: _nn.conv2d_grad_weight_p(
        t, g, stride=stride, padding=padding, shape=shape
    ),
    lambda t, ans, x, g, stride, padding, shape: _nn.conv2d_grad_weight_p(
        x, t, stride=stride, padding=padding, shape=shape
    ),
)
defjvp(
    _nn.max_pool2d_p,
    lambda t, ans, x, kernel, stride, padding: _nn.max_pool2d_gather_p(
        t, x, kernel=kernel, stride=stride, padding=padding
    ),
)
defjvp(
    _nn.max_pool2d_grad_p,
    lambda t, ans, g, x, kernel, stride, padding: _nn.max_pool2d_grad_p(
        t, x, kernel=kernel, stride=stride, padding=padding
    ),
    ZERO,
)
defjvp(
    _nn.max_pool2d_gather_p,
    lambda t, ans, a, x, kernel, stride, padding: _nn.max_pool2d_gather_p(
        t, x, kernel=kernel, stride=stride, padding=padding
    ),
    ZERO,
)
defjvp(
    _nn.avg_pool2d_p,
    lambda t, ans, x, kernel, stride, padding, include_pad: _nn.avg_pool2d_p(
        t, kernel=kernel, stride=stride, padding=padding, include_pad=include_pad
    ),
)
defjvp(
    _nn.avg_pool2d_grad_p,
    lambda t, ans, g, kernel, stride, padding, include_pad, shape: _nn.avg_pool2d_grad_p(
        t, kernel=kernel, stride=stride, padding=padding, include_pad=include_pad, shape=shape
    ),
)


# ---------------------------------------------------------------------------------------------
# The fallback for user-defined gradients: forward mode by transposing the VJP.
# ---------------------------------------------------------------------------------------------
def transposed_jvp(prim: Primitive) -> Callable[..., Any]:
    """A joint JVP rule for ``prim`` computed from its VJP rules (``vjps`` or ``vjp_all``).

    A VJP rule is linear in its cotangent ``u``: ``vjp(u) = J^T u``. So ``J t`` is the gradient of
    ``<vjp(u), t>`` with respect to ``u``: the rule traces ``u -> sum_i <rule_i(u, ans, *args), t_i>``
    at a fresh level (``u`` a new input of the output's shape) and sweeps that trace backwards. The
    values it records on are the forward values (tracers of outer levels when nested), so the result
    is recorded there, like any rule's: forward-over-reverse and forward-over-forward work through
    it. Costs one VJP rule evaluation and one reverse sweep of it per equation.
    """

    def jvp_all(ts: list, ans: Any, *args: Any, **params: Any) -> Any:
        from .forward import NoJVPError
        from .reverse import backward
        from .tracing import new_trace

        with new_trace() as trace:
            u = trace.new_input(full(np.shape(ans), 1, _dtype(ans), like=ans))
            if prim.vjp_all is not None:
                contribs = list(prim.vjp_all(u, ans, *args, **params))
            else:
                contribs = []
                for i, t in enumerate(ts):
                    rule = prim.vjps[i] if i < len(prim.vjps) else None
                    if t is not None and rule is None:
                        raise NoJVPError(
                            prim.name,
                            f"no JVP for '{prim.name}' with respect to argument {i}: it has no VJP rule there to "
                            "transpose either",
                            "Give it a forward rule with gradjit.defjvp, or a reverse rule for that argument.",
                        )
                    contribs.append(None if t is None or rule is ZERO else rule(u, ans, *args, **params))
            total = None
            for c, t in zip(contribs, ts):
                if t is None or c is None or c is ZERO:
                    continue
                term = np.sum(c * t)  # == <unbroadcast(c), t>: t broadcasts as its argument did
                total = term if total is None else total + term
        if type(total) is not Tracer or total._trace is not trace:
            return ZERO  # no contribution depends on u: the rules say the derivative is zero
        # Keep the phase of the sweep this rule runs in: the equations it emits belong to that sweep.
        ct = backward(
            trace.eqns, {total._var.index: full(total.shape, 1, total.dtype, like=total)}, level=_tracing._PHASE
        )
        return ct.get(u._var.index, ZERO)

    jvp_all.transposed_from = prim  # type: ignore[attr-defined]
    return jvp_all


def is_transposed(prim: Primitive) -> bool:
    """Whether ``prim``'s forward mode is the transposed-VJP fallback."""
    return getattr(prim.jvp_all, "transposed_from", None) is prim
