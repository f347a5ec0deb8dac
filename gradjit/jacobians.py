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

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from . import pytree
from .api import Argnums, _fname, _normalize_argnums, _run_traced, _Traced, _unwrap_tree, grad, vjp
from .batching import LinearMap, replay, replay_batched
from .forward import forward
from .placement import put, zeros
from .pytree import is_float_leaf, like_leaf
from .reverse import backward
from .tracing import Tracer, new_trace
from .wengert import Const, Var

__all__ = ["jvp", "linearize", "jacfwd", "jacrev", "jacobian", "hessian", "hvp", "vhp"]


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
                t = zeros(o.shape, o.dtype, like=value) if o.dtype.kind == "f" else None
            result.append(None if t is None else like_leaf(t, value))
        elif is_float_leaf(o):
            result.append(like_leaf(zeros(np.shape(o), np.result_type(o), like=o), o))
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


# ---------------------------------------------------------------------------------------------
# Linear maps of a traced function, captured as Wengert lists
# ---------------------------------------------------------------------------------------------
def _in_vars(traced: _Traced) -> list[Var]:
    return [var for pairs in traced.in_leaves for _leaf, var in pairs if var is not None]


def _out_vars(out: Any, trace: Any) -> list[tuple[Any, Var | None]]:
    """Each float output leaf with its Var in ``trace`` (None for one that does not depend on the inputs)."""
    result = []
    for o in pytree.flatten(out)[0]:
        if type(o) is Tracer and o._trace is trace:
            result.append((o, o._var if o.dtype.kind == "f" else None))
        else:
            result.append((o, None))
    return result


def _atom(x: Any, lin: Any) -> Any:
    if x is None:
        return None
    if type(x) is Tracer and x._trace is lin:
        return x._var
    dtype = x.dtype if hasattr(x, "dtype") else np.result_type(x)
    return Const(-1, tuple(x.shape if hasattr(x, "shape") else np.shape(x)), dtype, x)


def _capture(lin: Any, values: list[Any], avals: list) -> LinearMap:
    return LinearMap(list(lin.inputs), list(lin.eqns), [_atom(v, lin) for v in values], avals)


def _pushforward(traced: _Traced) -> LinearMap:
    """``t -> J t`` for the traced function, as a Wengert list over one tangent per input leaf."""
    in_vars = _in_vars(traced)
    outs = _out_vars(traced.out, traced.trace)
    with new_trace() as lin:
        seeds = {v.index: lin.new_input(zeros(v.shape, v.dtype, like=v.value)) for v in in_vars}
        tan = forward(traced.trace.eqns, seeds)
    values = [None if var is None else tan.get(var.index) for _o, var in outs]
    avals = [(_shape(o), _float_dtype(o)) for o, _var in outs]
    return _capture(lin, values, avals)


def _pullback(traced: _Traced) -> LinearMap:
    """``u -> u^T J`` for the traced function, as a Wengert list over one cotangent per output leaf."""
    in_vars = _in_vars(traced)
    outs = _out_vars(traced.out, traced.trace)
    with new_trace() as lin:
        seeds: dict[int, Any] = {}
        for o, var in outs:
            u = lin.new_input(zeros(_shape(o), _float_dtype(o), like=o))
            if var is not None:
                seeds[var.index] = u if var.index not in seeds else seeds[var.index] + u
        ct = backward(traced.trace.eqns, seeds, traced.trace.level) if seeds else {}
    values = [ct.get(v.index) for v in in_vars]
    avals = [(v.shape, v.dtype) for v in in_vars]
    return _capture(lin, values, avals)


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(x.shape) if hasattr(x, "shape") else np.shape(x)


def _float_dtype(x: Any) -> np.dtype:
    dt = np.result_type(x.dtype if hasattr(x, "dtype") else x)
    return dt if dt.kind == "f" else np.dtype(np.float64)


def linearize(f: Callable, *primals: Any) -> tuple[Any, Callable]:
    """``(f(*primals), f_jvp)``: ``f_jvp(*tangents)`` is the Jacobian-vector product at ``primals``.

    ``f`` is traced once; ``f_jvp`` replays the captured forward sweep (a Wengert list of tangent
    operations only), so each call costs the linear part alone.
    """
    op = f"linearize({_fname(f)})"
    traced = _run_traced(f, primals, {}, tuple(range(len(primals))), op, strict=True)
    lm = _pushforward(traced)
    value = _unwrap_tree(traced.out, traced.trace)
    out_def = pytree.flatten(traced.out)[1]
    out_leaves = pytree.flatten(value)[0]

    def f_jvp(*tangents: Any) -> Any:
        if len(tangents) != len(primals):
            raise ValueError(f"{op}: expected {len(primals)} tangents, got {len(tangents)}")
        seeds = _tangent_seeds(traced, tangents, op)
        outs = replay(lm, [seeds[v.index] for v in lm.inputs])
        leaves = [like_leaf(t, o) if is_float_leaf(o) else None for t, o in zip(outs, out_leaves)]
        return pytree.unflatten(out_def, leaves)

    return value, f_jvp


# ---------------------------------------------------------------------------------------------
# Jacobians: one batched replay of a linear map over a basis
# ---------------------------------------------------------------------------------------------
def _basis(
    shapes: list[tuple[int, ...]], dtypes: list[np.dtype], like: Any = None
) -> tuple[list[np.ndarray], list[int], int]:
    """One-hot batches: block ``k`` of the batch has identity rows for leaf ``k``, zeros elsewhere
    (placed where ``like`` lives)."""
    sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
    total = sum(sizes)
    offsets, basis, off = [], [], 0
    for shape, dtype, n in zip(shapes, dtypes, sizes):
        e = np.zeros((total, n), dtype=dtype)
        e[off : off + n] = np.eye(n, dtype=dtype)
        basis.append(put(e.reshape((total,) + shape), like=like))
        offsets.append(off)
        off += n
    return basis, offsets, total


def _rows(x: Any, start: int, n: int) -> Any:
    return x[start : start + n]


def _jacobian(f: Callable, argnums: Argnums, mode: str, name: str) -> Callable:
    @functools.wraps(f)
    def jacobian_f(*args: Any, **kwargs: Any) -> Any:
        op = f"{name}({_fname(f)})"
        nums, single = _normalize_argnums(argnums, len(args), op)
        traced = _run_traced(f, args, kwargs, nums, op, strict=True)
        ins = [(leaf, var) for pairs in traced.in_leaves for leaf, var in pairs if var is not None]
        out_leaves = pytree.flatten(_unwrap_tree(traced.out, traced.trace))[0]
        float_out = [is_float_leaf(o) or (hasattr(o, "dtype") and o.dtype.kind == "f") for o in out_leaves]
        n_in = sum(int(np.prod(v.shape)) for _l, v in ins)
        n_out = sum(int(np.prod(np.shape(o))) for o, fl in zip(out_leaves, float_out) if fl)
        use_rev = mode == "rev" or (mode == "auto" and n_out < n_in)
        blocks: dict[tuple[int, int], Any] = {}
        if use_rev:
            lm = _pullback(traced)
            shapes = [tuple(np.shape(o)) if fl else (0,) for o, fl in zip(out_leaves, float_out)]
            basis, offsets, total = _basis(
                shapes, [_float_dtype(o) for o in out_leaves], like=ins[0][1].value if ins else None
            )
            res = replay_batched(lm, basis, total) if total else [np.zeros((0,) + v.shape, v.dtype) for _l, v in ins]
            for j, fl in enumerate(float_out):
                if not fl:
                    continue
                for i, (_leaf, v) in enumerate(ins):
                    blocks[j, i] = np.reshape(_rows(res[i], offsets[j], int(np.prod(shapes[j]))), shapes[j] + v.shape)
        else:
            lm = _pushforward(traced)
            basis, offsets, total = _basis(
                [v.shape for _l, v in ins], [v.dtype for _l, v in ins], like=ins[0][1].value if ins else None
            )
            if total:
                res = replay_batched(lm, basis, total)
            else:
                res = [np.zeros((0,) + np.shape(o), _float_dtype(o)) for o in out_leaves]
            for j, (o, fl) in enumerate(zip(out_leaves, float_out)):
                if not fl:
                    continue
                oshape = tuple(np.shape(o))
                for i, (_leaf, v) in enumerate(ins):
                    r = np.reshape(_rows(res[j], offsets[i], int(np.prod(v.shape))), v.shape + oshape)
                    k, m = len(v.shape), len(oshape)
                    blocks[j, i] = np.transpose(r, tuple(range(k, k + m)) + tuple(range(k)))
        return _assemble(traced, out_leaves, float_out, blocks, single)

    return jacobian_f


def _assemble(traced: _Traced, out_leaves: list, float_out: list[bool], blocks: dict, single: bool) -> Any:
    """Nest the blocks as the output structure of (the argument structure of) Jacobian arrays."""
    out_def = pytree.flatten(traced.out)[1]
    result = []
    for j, (o, fl) in enumerate(zip(out_leaves, float_out)):
        if not fl:
            result.append(None)
            continue
        per_arg, i = [], 0
        for pairs, td in zip(traced.in_leaves, traced.in_defs):
            leaves = []
            for leaf, var in pairs:
                if var is None:
                    leaves.append(None)
                    continue
                b = blocks[j, i]
                i += 1
                leaves.append(like_leaf(b, leaf) if np.ndim(o) == 0 and type(leaf) is float else b)
            per_arg.append(pytree.unflatten(td, leaves) if td.kind != "leaf" else leaves[0])
        result.append(per_arg[0] if single else tuple(per_arg))
    return pytree.unflatten(out_def, result)


def jacrev(f: Callable, argnums: Argnums = 0) -> Callable:
    """The Jacobian of ``f`` by reverse mode: one batched pullback over the output basis."""
    return _jacobian(f, argnums, "rev", "jacrev")


def jacfwd(f: Callable, argnums: Argnums = 0) -> Callable:
    """The Jacobian of ``f`` by forward mode: one batched pushforward over the input basis."""
    return _jacobian(f, argnums, "fwd", "jacfwd")


def jacobian(f: Callable, argnums: Argnums = 0) -> Callable:
    """The Jacobian of ``f``, by reverse mode when it has fewer outputs than inputs, else forward."""
    return _jacobian(f, argnums, "auto", "jacobian")


def hessian(f: Callable, argnums: Argnums = 0) -> Callable:
    """The Hessian of scalar ``f``: forward-over-reverse, ``jacfwd(jacrev(f))``."""
    return jacfwd(jacrev(f, argnums), argnums)


# ---------------------------------------------------------------------------------------------
# Hessian-vector products
# ---------------------------------------------------------------------------------------------
def _restricted(f: Callable, primals: Any, argnums: Argnums | None, op: str) -> tuple[Callable, tuple, bool]:
    """``f`` as a function of the selected arguments only, plus those arguments."""
    args = primals if isinstance(primals, tuple) else (primals,)
    nums, single = _normalize_argnums(argnums, len(args), op)
    single = single or not isinstance(primals, tuple)

    def g(*sel: Any) -> Any:
        full = list(args)
        for n, x in zip(nums, sel):
            full[n] = x
        return f(*full)

    return g, tuple(args[n] for n in nums), single


def hvp(f: Callable, primals: Any, tangents: Any, argnums: Argnums | None = None) -> Any:
    """``H v``: the Hessian of scalar ``f`` at ``primals`` times ``tangents``, forward-over-reverse.

    One reverse sweep traced once, then one forward sweep over it; the Hessian is never formed.
    ``primals`` is one argument, or a tuple of all positional arguments (then ``argnums``, default
    all, selects those ``tangents`` go with: a tuple, one per selected argument). A single argument that
    is itself a tuple must be wrapped: ``hvp(f, ((a, b),), ((va, vb),))``.
    """
    op = f"hvp({_fname(f)})"
    g, sel, single = _restricted(f, primals, argnums, op)
    ts = (tangents,) if single else tuple(tangents)
    nums = tuple(range(len(sel)))
    _, out = jvp(grad(g, argnums=nums), sel, ts)
    return out[0] if single else out


def vhp(f: Callable, primals: Any, tangents: Any, argnums: Argnums | None = None) -> Any:
    """``v^T H``: reverse-over-reverse (the VJP of the gradient); arguments as for ``hvp``."""
    op = f"vhp({_fname(f)})"
    g, sel, single = _restricted(f, primals, argnums, op)
    ts = (tangents,) if single else tuple(tangents)
    nums = tuple(range(len(sel)))
    _, pullback = vjp(grad(g, argnums=nums), *sel)
    out = pullback(ts)
    return out[0] if single else out
