"""Forward mode: walk a finished trace forwards and apply each primitive's JVP rule.

The mirror image of ``reverse``: given tangents for some variables of a recorded Wengert list, the
walker visits the equations in program order and computes the tangent of every equation output that
depends on a seeded variable. Rules (``gradjit.jvp_rules``) are NumPy code run on the recorded
forward values, so when those values are tracers of an outer trace every operation a rule performs is
recorded there: a forward sweep is itself a Wengert list, which is what lets forward mode compose with
reverse mode (``hvp`` is forward-over-reverse) and with itself.

The walker owns what the rules do not: skipping equations none of whose inputs carry a tangent,
skipping integer/boolean outputs (no tangent), summing per-argument contributions, broadcasting a
contribution to the output's shape and casting it to the output's dtype.

Invariant: the tangent stored for a variable has that variable's shape and dtype.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import NoVJPError
from .primitives import astype_p, broadcast_to_p
from .tracing import ZERO
from .wengert import Eqn, Var


class NoJVPError(NoVJPError):
    """A primitive on the path from the inputs to the outputs has no forward-mode rule."""


def _no_jvp(eqn: Eqn, argnum: int) -> NoJVPError:
    name = eqn.prim.name
    return NoJVPError(
        name,
        f"no JVP (forward-mode rule) for '{name}' with respect to argument {argnum}",
        "Register one with gradjit.defjvp(<function>, rule0, rule1, ...), each rule(t, ans, *args) -> the "
        "tangent contributed by that argument; or use reverse mode (grad/vjp/jacrev).",
        where=eqn.where,
    )


def fit(t: Any, shape: tuple[int, ...], dtype: np.dtype) -> Any:
    """Bring a tangent contribution to an output's shape and dtype."""
    try:
        ts, td = t.shape, t.dtype
    except AttributeError:
        t = np.asarray(t)
        ts, td = t.shape, t.dtype
    if ts != shape:
        t = broadcast_to_p(t, shape=shape)
    if td != dtype:
        t = astype_p(t, dtype=dtype)
    return t


def forward(eqns: list[Eqn], seeds: dict[int, Any]) -> dict[int, Any]:
    """Propagate tangents from ``seeds`` (var index -> tangent) forward through ``eqns``.

    Returns the tangents of every variable that has one (the seeds included); variables missing from
    the result have tangent zero.
    """
    tan = dict(seeds)
    get = tan.get
    for eqn in eqns:
        ins = eqn.ins
        ts = [get(a.index) if type(a) is Var else None for a in ins]
        if all(t is None for t in ts):
            continue
        out = eqn.out
        if out.dtype.kind != "f":
            continue  # integer and boolean results carry no tangent
        prim = eqn.prim
        params = eqn.params
        ans = out.value
        args = [a.value for a in ins]
        if prim.jvp_all is not None:
            t_out = prim.jvp_all(ts, ans, *args, **params)
            if t_out is None or t_out is ZERO:
                continue
        else:
            rules = prim.jvps
            t_out = None
            for i, t in enumerate(ts):
                if t is None:
                    continue
                rule = rules[i] if i < len(rules) else None
                if rule is ZERO:
                    continue
                if rule is None:
                    raise _no_jvp(eqn, i)
                c = rule(t, ans, *args, **params)
                if c is None or c is ZERO:
                    continue
                t_out = c if t_out is None else t_out + c
            if t_out is None:
                continue
        tan[out.index] = fit(t_out, out.shape, out.dtype)
    return tan
