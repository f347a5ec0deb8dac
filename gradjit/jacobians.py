"""Forward mode and the Jacobian family: ``jvp``, ``linearize``, ``jacfwd``, ``jacrev``, ``jacobian``,
``hessian``, ``hvp`` and ``vhp``.

``jvp`` traces the function (one level above the active ones, like ``grad``) and runs the forward
walker (``forward.forward``) over the recorded equations. Everything else is built from two linear
maps of a traced function, each captured as a Wengert list of its own:

- the pushforward ``t -> J t``: the forward walk, traced with the tangents as inputs;
- the pullback ``u -> u^T J``: the reverse walk, traced with the cotangents as inputs.

Their constants are the forward values of the traced function (tracers of an outer level when the
transform is itself being traced), so replaying a linear map (``batching.replay``) records into
outer traces like any other computation: ``hessian = jacfwd(jacrev(f))`` and ``hvp`` are
forward-over-reverse. Jacobians replay a linear map *once* on a batch of basis vectors
(``batching.replay_batched``): one batched sweep, not a Python loop of one sweep per row.

Invariants
----------
- Tangents and cotangents have the shape and dtype of their primal (inputs and outputs alike); the
  tangent of an output that does not depend on the inputs is zero.
- ``jacobian`` results are laid out as ``out.shape + in.shape`` per (output leaf, input leaf), nested
  as the output structure of the argument structure (JAX's convention).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import pytree
from .api import _fname, _run_traced, _Traced, _unwrap_tree
from .forward import forward
from .pytree import is_float_leaf, like_leaf
from .tracing import Tracer

__all__ = ["jvp"]


def _tangent_seeds(traced: _Traced, tangents: tuple, op: str) -> dict[int, Any]:
    seeds: dict[int, Any] = {}
    for n, (pairs, td) in enumerate(zip(traced.in_leaves, traced.in_defs)):
        t_leaves, t_def = pytree.flatten(tangents[n])
        if t_def != td:
            raise ValueError(f"{op}: tangent {n} has structure {t_def}, its primal has {td}")
        for (_leaf, var), t in zip(pairs, t_leaves):
            if var is None:
                continue
            if np.shape(t) != var.shape:
                raise ValueError(f"{op}: tangent of shape {np.shape(t)} for a primal of shape {var.shape}")
            dt = getattr(t, "dtype", None)
            seeds[var.index] = t if dt == var.dtype else np.asarray(t, dtype=var.dtype)
    return seeds


def _output_tangents(out: Any, traced: _Traced, tan: dict[int, Any]) -> Any:
    trace = traced.trace
    leaves, td = pytree.flatten(out)
    result = []
    for o in leaves:
        if type(o) is Tracer and o._trace is trace:
            t = tan.get(o._var.index) if o.dtype.kind == "f" else None
            value = o._value
            if t is None:
                t = np.zeros(o.shape, dtype=o.dtype) if o.dtype.kind == "f" else None
            result.append(None if t is None else like_leaf(t, value))
        elif is_float_leaf(o):
            result.append(like_leaf(np.zeros(np.shape(o), dtype=np.result_type(o)), o))
        else:
            result.append(None)
    return pytree.unflatten(td, result)


def jvp(f: Callable, primals: tuple | list, tangents: tuple | list, has_aux: bool = False) -> tuple:
    """``(f(*primals), J t)``: the value and the Jacobian-vector product along ``tangents``.

    ``primals`` and ``tangents`` are sequences of the same length and structure (pytrees allowed);
    one forward sweep, no Jacobian formed. With ``has_aux=True`` ``f`` returns ``(out, aux)`` and the
    result is ``(out, tangent_out, aux)``.
    """
    op = f"jvp({_fname(f)})"
    primals, tangents = tuple(primals), tuple(tangents)
    if len(primals) != len(tangents):
        raise ValueError(f"{op}: {len(primals)} primals but {len(tangents)} tangents")
    traced = _run_traced(f, primals, {}, tuple(range(len(primals))), op, strict=True)
    out = traced.out
    if has_aux:
        out, aux = out
    seeds = _tangent_seeds(traced, tangents, op)
    tan = forward(traced.trace.eqns, seeds)
    value = _unwrap_tree(out, traced.trace)
    t_out = _output_tangents(out, traced, tan)
    if has_aux:
        return value, t_out, _unwrap_tree(aux, traced.trace)
    return value, t_out
