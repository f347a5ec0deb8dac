"""Reverse mode: walk a finished trace backwards and apply each primitive's VJP rule.

The walker owns everything the rules do not: skipping equations whose output received no
cotangent (dead code), skipping non-float variables, un-broadcasting a cotangent to its argument's
shape, casting it to the argument's dtype, and summing fan-out. Rules run on the forward values
recorded in the trace; when those values are tracers of an outer trace, every operation the rules
perform is recorded there, so the reverse sweep is itself a Wengert list and can be differentiated
again (``grad(grad(f))``).

While it runs, the walker sets ``tracing._PHASE`` to the level of the trace it sweeps, so the
equations its rules emit into outer traces are stamped as that sweep's (restored on exit, so sweeps
started inside rules nest). In debug mode (``gradjit.debug_nans``) it also checks every cotangent
for NaN/Inf; with debug mode off that costs one test of a local per equation.

Invariant: the cotangent stored for a variable always has that variable's shape and dtype.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import debug as _debug
from . import tracing as _tracing
from .errors import NoVJPError
from .placement import zeros
from .primitives import astype_p, broadcast_to_p, reduce_sum_p, reshape_p
from .tracing import ZERO, Tracer, identity_vjp
from .wengert import Eqn, Var


def _shape(x: Any) -> tuple[int, ...]:
    s = getattr(x, "shape", None)
    return s if s is not None else np.shape(x)


def unbroadcast(c: Any, shape: tuple[int, ...]) -> Any:
    """Sum ``c`` over the axes that broadcasting added or stretched, to get ``shape`` back."""
    cshape = _shape(c)
    if cshape == shape:
        return c
    extra = len(cshape) - len(shape)
    if extra < 0:  # a cotangent smaller than its argument (e.g. a scalar rule result)
        return broadcast_to_p(c, shape=shape)
    axes = tuple(range(extra)) + tuple(extra + i for i, n in enumerate(shape) if n == 1 and cshape[extra + i] != 1)
    if axes:
        c = reduce_sum_p(c, axis=axes, keepdims=False)
    if _shape(c) != shape:
        same_size = int(np.prod(_shape(c))) == int(np.prod(shape))
        c = reshape_p(c, shape=shape) if same_size else broadcast_to_p(c, shape=shape)
    return c


def _no_vjp(eqn: Eqn, argnum: int) -> NoVJPError:
    name = eqn.prim.name
    if eqn.prim.kind == "user":
        advice = (
            f"Give it one: {name}.defvjp(rule0, rule1, ...), one rule per positional argument, each "
            "rule(g, ans, *args) -> cotangent (gradjit.ZERO for an argument with no gradient)."
        )
    else:
        advice = (
            f"Register one: gradjit.defvjp(<the NumPy function for '{name}'>, lambda g, ans, *args: ...), "
            "one rule per argument."
        )
    return NoVJPError(name, f"no VJP for '{name}' with respect to argument {argnum}", advice, where=eqn.where)


def backward(eqns: list[Eqn], seeds: dict[int, Any], level: int | None = None) -> dict[int, Any]:
    """Propagate cotangents from ``seeds`` (var index -> cotangent) back through ``eqns``.

    ``level`` is that of the trace ``eqns`` were recorded in (default: one above the active traces,
    which it is when the sweep directly follows its trace); it stamps the emitted equations' phase.
    Returns the cotangents of every variable that received one (inputs included).
    """
    prev_phase = _tracing._PHASE
    _tracing._PHASE = len(_tracing._STACK) + 1 if level is None else level
    debug = _tracing._DEBUG is not None
    if debug:
        token = _debug.begin_sweep(seeds)
    try:
        return _walk(eqns, seeds, debug)
    finally:
        _tracing._PHASE = prev_phase
        if debug:
            _debug.end_sweep(token)


def _fit(c: Any, a: Var) -> Any:
    """Contribution ``c`` brought to variable ``a``'s shape and dtype (un-broadcast, cast)."""
    try:
        cs, cd = c.shape, c.dtype
    except AttributeError:
        c = np.asarray(c)
        cs, cd = c.shape, c.dtype
    if cs != a.shape:
        c = unbroadcast(c, a.shape)
    dt = a.dtype
    if cd is not dt and cd != dt:
        c = astype_p(c, dtype=dt)
    return c


def _walk(eqns: list[Eqn], seeds: dict[int, Any], debug: bool) -> dict[int, Any]:
    ct = dict(seeds)
    pop, get = ct.pop, ct.get
    F64 = _FLOAT64
    for eqn in reversed(eqns):
        out = eqn.out
        g = pop(out.index, None)
        if g is None:
            continue
        ins = eqn.ins
        prim = eqn.prim
        params = eqn.params
        rules = prim.vjps
        n = len(ins)
        if n <= 2 and not params and not debug and prim.vjp_all is None and n <= len(rules):
            # Fast path (most equations): one or two arguments, one rule each, no params. For each
            # float variable: the rule's contribution (identity_vjp's is g itself), fitted to the
            # variable unless it is a tracer or float64 scalar of its shape and dtype already, then
            # summed into its cotangent. The general path below does the same for everything else.
            ans = out.value
            x0 = ins[0].value
            x1 = ins[1].value if n == 2 else None
            for i in _POSITIONS[n]:
                a = ins[i]
                if type(a) is not Var:
                    continue  # literals and constants get no gradient
                dt = a.dtype
                if dt is not F64 and dt.kind != "f":
                    continue  # integer and boolean variables get no gradient
                rule = rules[i]
                if rule is identity_vjp:
                    c = g
                elif rule is ZERO:
                    continue
                elif rule is None:
                    raise _no_vjp(eqn, i)
                else:
                    c = rule(g, ans, x0, x1) if n == 2 else rule(g, ans, x0)
                tc = type(c)
                if tc is Tracer:
                    cv = c._var
                    if cv.dtype is not dt or cv.shape != a.shape:
                        c = _fit(c, a)
                elif tc is not _F64_SCALAR or dt is not F64 or a.shape != ():
                    c = _fit(c, a)
                idx = a.index
                prev = get(idx)
                ct[idx] = c if prev is None else prev + c
            c = prev = g = x0 = x1 = None  # drop this step's references before the next rule runs (see below)
            continue
        if debug:
            _debug.enter_rule(eqn)
        ans = eqn.out.value
        args = tuple([a.value for a in ins])
        joint = prim.vjp_all
        if joint is not None:
            contribs = joint(g, ans, *args, **params)
        else:
            contribs = None
            nrules = len(rules)
        for i in range(n):
            a = ins[i]
            if type(a) is not Var:
                continue  # literals and constants get no gradient
            dt = a.dtype
            if dt.kind != "f":
                continue  # integer and boolean variables get no gradient
            if contribs is not None:
                c = contribs[i]
                if c is None or c is ZERO:
                    continue
            else:
                rule = rules[i] if i < nrules else None
                if rule is identity_vjp:
                    c = g  # what the rule returns (add, sub, astype, ...), without the call
                elif rule is ZERO:
                    continue
                elif rule is None:
                    raise _no_vjp(eqn, i)
                else:
                    c = rule(g, ans, *args, **params) if params else rule(g, ans, *args)
            c = _fit(c, a)  # the variable's shape and dtype
            if debug:
                _debug.check_cotangent(eqn, i, c, args)
            idx = a.index
            prev = get(idx)
            ct[idx] = c if prev is None else prev + c
            if debug and prev is not None:
                _debug.check_sum(eqn, a, ct[idx])
        # Drop this step's references before the next rule runs, so cotangent-sized temporaries (the
        # contribution, the previous sum) are freed now rather than one equation later.
        c = prev = contribs = g = None
    return ct


_F64_SCALAR = np.float64
_FLOAT64 = np.dtype(np.float64)
_POSITIONS = ((), (0,), (0, 1))


def zeros_cotangent(var: Var) -> Any:
    value = var.value
    if type(value) is Tracer:
        return zeros(var.shape, var.dtype, like=value)
    return np.zeros_like(value)
