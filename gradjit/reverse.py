"""Reverse mode: walk a finished trace backwards and apply each primitive's VJP rule.

The walker owns everything the rules do not: skipping equations whose output received no
cotangent (dead code), skipping non-float variables, un-broadcasting a cotangent to its argument's
shape, casting it to the argument's dtype, and summing fan-out. Rules run on the forward values
recorded in the trace; when those values are tracers of an outer trace, every operation the rules
perform is recorded there, so the reverse sweep is itself a Wengert list and can be differentiated
again (``grad(grad(f))``).

Invariant: the cotangent stored for a variable always has that variable's shape and dtype.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import NoVJPError
from .primitives import astype_p, broadcast_to_p, reduce_sum_p, reshape_p
from .tracing import ZERO, Tracer
from .wengert import Eqn, Var


def _shape(x: Any) -> tuple[int, ...]:
    s = getattr(x, "shape", None)
    return s if s is not None else np.shape(x)


def _dtype(x: Any) -> np.dtype:
    d = getattr(x, "dtype", None)
    return d if d is not None else np.result_type(x)


def unbroadcast(c: Any, shape: tuple[int, ...]) -> Any:
    """Sum ``c`` over the axes that broadcasting added or stretched, to get ``shape`` back."""
    cshape = _shape(c)
    if cshape == shape:
        return c
    extra = len(cshape) - len(shape)
    if extra < 0:  # a cotangent smaller than its argument (e.g. a scalar rule result)
        return broadcast_to_p(c, shape)
    axes = tuple(range(extra)) + tuple(extra + i for i, n in enumerate(shape) if n == 1 and cshape[extra + i] != 1)
    if axes:
        c = reduce_sum_p(c, axis=axes, keepdims=False)
    if _shape(c) != shape:
        c = reshape_p(c, shape) if int(np.prod(_shape(c))) == int(np.prod(shape)) else broadcast_to_p(c, shape)
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


def backward(eqns: list[Eqn], seeds: dict[int, Any]) -> dict[int, Any]:
    """Propagate cotangents from ``seeds`` (var index -> cotangent) back through ``eqns``.

    Returns the cotangents of every variable that received one (inputs included).
    """
    ct = dict(seeds)
    pop, get = ct.pop, ct.get
    for eqn in reversed(eqns):
        g = pop(eqn.out.index, None)
        if g is None:
            continue
        ins = eqn.ins
        prim = eqn.prim
        params = eqn.params
        ans = eqn.out.value
        args = [a.value for a in ins]
        joint = prim.vjp_all
        contribs = joint(g, ans, *args, **params) if joint is not None else None
        rules = prim.vjps
        for i, a in enumerate(ins):
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
                rule = rules[i] if i < len(rules) else None
                if rule is ZERO:
                    continue
                if rule is None:
                    raise _no_vjp(eqn, i)
                c = rule(g, ans, *args, **params)
            # Bring the contribution to the variable's shape and dtype (inlined _fit: hot path).
            try:
                cs, cd = c.shape, c.dtype
            except AttributeError:
                c = np.asarray(c)
                cs, cd = c.shape, c.dtype
            if cs != a.shape:
                c = unbroadcast(c, a.shape)
            if cd is not dt and cd != dt:
                c = astype_p(c, dtype=dt)
            idx = a.index
            prev = get(idx)
            ct[idx] = c if prev is None else prev + c
    return ct


def zeros_cotangent(var: Var) -> Any:
    value = var.value
    if type(value) is Tracer:
        return np.zeros(var.shape, dtype=var.dtype)
    return np.zeros_like(value)
