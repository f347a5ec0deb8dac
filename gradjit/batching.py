"""Linear maps captured as Wengert lists, replayed on one vector or on a whole batch at once.

A ``LinearMap`` is the record of a traced function of its ``inputs`` (the pushforward ``t -> J t`` or
the pullback ``u -> u^T J`` of some traced function, see ``jacobians``): equations, and output atoms.
``replay`` runs it on one set of inputs; ``replay_batched`` runs it on inputs that carry one extra
leading batch axis, equation by equation, through *batching rules* that rewrite each primitive to act
on the batch: elementwise operations align ranks, reductions and movement shift their axes, ``matmul``
and ``einsum`` absorb the batch axis into their own broadcasting, ``numpy.linalg`` primitives batch
natively. That is how Jacobians are computed with one batched sweep instead of a Python loop of one
sweep per row. A primitive without a batching rule (user primitives, convolutions, advanced indexing
whose result axes NumPy would move) falls back to a loop over the batch for that one equation:
correct, just slower, and only for that equation.

Both replays call ``bind``, so when constants of the map are tracers of an outer trace the replay is
recorded there (this is how ``hessian = jacfwd(jacrev(f))`` becomes forward-over-reverse).

Invariants
----------
- In ``replay_batched`` every value of a batched variable has shape ``(B,) + var.shape`` (checked after
  each equation; a mismatch is an internal error, never a silently wrong Jacobian).
- A linear map must not contain guards: its control flow may not depend on its inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .placement import zeros
from .primitives import ARRAY, PRIMITIVES, broadcast_to_p, reshape_p
from .tracing import bind, concrete
from .wengert import Const, Eqn, Lit, Var


@dataclass
class LinearMap:
    """``outputs = f(inputs)``, linear in ``inputs``, as recorded. Output atoms may be None (zero)."""

    inputs: list[Var]
    eqns: list[Eqn]
    outputs: list[Any]  # Var | Const | Lit | None, one per output
    out_avals: list[tuple[tuple[int, ...], np.dtype]]


def _shape(x: Any) -> tuple[int, ...]:
    return x.shape if hasattr(x, "shape") else np.shape(x)


def _read(env: dict[int, Any], a: Any) -> Any:
    if type(a) is Lit:
        return a.value
    if type(a) is Const:
        return a.value
    return env[a.index]


def replay(lm: LinearMap, inputs: Sequence[Any]) -> list[Any]:
    """Run the linear map on ``inputs`` (one value per input variable)."""
    env = {v.index: x for v, x in zip(lm.inputs, inputs)}
    for eqn in lm.eqns:
        env[eqn.out.index] = bind(eqn.prim, *[_read(env, a) for a in eqn.ins], **eqn.params)
    out = []
    for a, (shape, dtype) in zip(lm.outputs, lm.out_avals):
        out.append(np.zeros(shape, dtype) if a is None else _read(env, a))
    return out


def replay_batched(lm: LinearMap, inputs: Sequence[Any], batch: int) -> list[Any]:
    """Run the linear map on ``inputs`` that each have a leading batch axis of size ``batch``."""
    env: dict[int, Any] = {}
    batched: set[int] = set()
    for v, x in zip(lm.inputs, inputs):
        env[v.index] = x
        batched.add(v.index)
    for eqn in lm.eqns:
        vals = [_read(env, a) for a in eqn.ins]
        bat = [type(a) is Var and a.index in batched for a in eqn.ins]
        if not any(bat):
            env[eqn.out.index] = bind(eqn.prim, *vals, **eqn.params)
            continue
        rule = BATCH_RULES.get(eqn.prim.name)
        ranks = [len(a.shape) if type(a) is not Lit else np.ndim(a.value) for a in eqn.ins]
        out = None if rule is None else rule(vals, bat, ranks, batch, eqn)
        if out is None:
            out = _loop(vals, bat, batch, eqn)
        want = (batch,) + eqn.out.shape
        if _shape(out) != want:
            raise AssertionError(f"batching rule for {eqn.prim.name} gave shape {_shape(out)}, expected {want}")
        env[eqn.out.index] = out
        batched.add(eqn.out.index)
    result = []
    for a, (shape, dtype) in zip(lm.outputs, lm.out_avals):
        if a is None:
            result.append(zeros((batch,) + shape, dtype, like=inputs[0] if inputs else None))
        elif type(a) is Var and a.index in batched:
            result.append(env[a.index])
        else:  # an output that does not depend on the inputs (a linear map's constant is zero)
            result.append(broadcast_to_p(_read(env, a), shape=(batch,) + shape))
    return result


def _loop(vals: list, bat: list[bool], batch: int, eqn: Eqn) -> Any:
    """The fallback: one application per batch member, stacked."""
    rows = [bind(eqn.prim, *[v[i] if b else v for v, b in zip(vals, bat)], **eqn.params) for i in range(batch)]
    return np.stack(rows)


# ---------------------------------------------------------------------------------------------
# Batching rules: ``rule(vals, batched, ranks, B, eqn) -> value of shape (B,) + out.shape`` or
# None to fall back to the loop. ``ranks`` are the unbatched ranks of the arguments.
# ---------------------------------------------------------------------------------------------
BATCH_RULES: dict[str, Callable[..., Any]] = {}


def _lift(x: Any, rank: int, to: int) -> Any:
    """A batched value of unbatched rank ``rank`` with ones inserted after the batch axis to rank ``to``."""
    if rank >= to:
        return x
    s = _shape(x)
    return reshape_p(x, shape=(s[0],) + (1,) * (to - rank) + s[1:])


def _materialize(x: Any, b: bool, batch: int, shape: tuple[int, ...]) -> Any:
    """A batched version of ``x`` (broadcast along the batch when it is not batched)."""
    return x if b else broadcast_to_p(x, shape=(batch,) + shape)


def _elementwise(vals: list, bat: list[bool], ranks: list[int], batch: int, eqn: Eqn) -> Any:
    r = max(ranks)
    args = [_lift(v, k, r) if b else v for v, b, k in zip(vals, bat, ranks)]
    return bind(eqn.prim, *args, **eqn.params)


def _shift_axis(ax: Any) -> Any:
    if ax is None:
        return None
    if isinstance(ax, tuple):
        return tuple(a + 1 for a in ax)
    return ax + 1


def _reduction(vals: list, bat: list[bool], ranks: list[int], batch: int, eqn: Eqn) -> Any:
    params = dict(eqn.params)
    ax = params.get("axis")
    if ax is None:
        if "keepdims" in params and params["keepdims"]:
            return None
        ax = tuple(range(ranks[0])) if eqn.prim.name.startswith("reduce_") else None
        if ax is None:
            return None
    if isinstance(ax, int) and ax < 0 or isinstance(ax, tuple) and any(a < 0 for a in ax):
        return None
    params["axis"] = _shift_axis(ax)
    return bind(eqn.prim, vals[0], **params)


def _reshape(vals: list, bat: list[bool], ranks: list[int], batch: int, eqn: Eqn) -> Any:
    return reshape_p(vals[0], shape=(batch,) + eqn.out.shape)


def _transpose(vals: list, bat: list[bool], ranks: list[int], batch: int, eqn: Eqn) -> Any:
    return bind(eqn.prim, vals[0], axes=(0,) + tuple(a + 1 for a in eqn.params["axes"]))


def _broadcast_to(vals: list, bat: list[bool], ranks: list[int], batch: int, eqn: Eqn) -> Any:
    out = eqn.out.shape
    return broadcast_to_p(_lift(vals[0], ranks[0], len(out)), shape=(batch,) + out)


def _advanced_positions(tree: tuple) -> list[int]:
    has_array = any(t is ARRAY for t in tree)
    return [i for i, t in enumerate(tree) if t is ARRAY or (has_array and isinstance(t, (int, np.integer)))]


def _prefixable(tree: tuple) -> bool:
    """True when prefixing the index with ``:`` keeps the batch axis first (advanced indices adjacent)."""
    pos = _advanced_positions(tree)
    return not pos or pos == list(range(pos[0], pos[0] + len(pos)))


def _getitem(vals: list, bat: list[bool], ranks: list[int], batch: int, eqn: Eqn) -> Any:
    tree = eqn.params["tree"]
    if any(bat[1:]) or not _prefixable(tree):
        return None
    return bind(eqn.prim, *vals, tree=(slice(None),) + tuple(tree))


def _index_update(vals: list, bat: list[bool], ranks: list[int], batch: int, eqn: Eqn) -> Any:
    tree = eqn.params["tree"]
    if any(bat[2:]) or not _prefixable(tree):
        return None
    x = _materialize(vals[0], bat[0], batch, eqn.ins[0].shape)
    v = vals[1]
    if bat[1]:
        # Align v (B, *vshape) with the indexed region (B, *region): ones inserted after the batch
        # axis, so that NumPy's right-aligned broadcasting does not meet the batch axis. The region's
        # rank comes from indexing a zero-stride stand-in of x (no copy for basic indices).
        probe = np.broadcast_to(np.False_, eqn.ins[0].shape)[_concrete_index(tree, vals[2:])]
        v = _lift(v, ranks[1], probe.ndim)
    return bind(eqn.prim, x, v, *vals[2:], tree=(slice(None),) + tuple(tree))


def _concrete_index(tree: tuple, arrays: list) -> tuple:
    it = iter(arrays)
    return tuple(np.asarray(concrete(next(it))) if t is ARRAY else t for t in tree)


def _concatenate(vals: list, bat: list[bool], ranks: list[int], batch: int, eqn: Eqn) -> Any:
    ax = eqn.params["axis"]
    if ax < 0:
        ax += ranks[0]
    xs = [_materialize(v, b, batch, a.shape) for v, b, a in zip(vals, bat, eqn.ins)]
    return bind(eqn.prim, *xs, axis=ax + 1)


def _matmul(vals: list, bat: list[bool], ranks: list[int], batch: int, eqn: Eqn) -> Any:
    a, b = vals
    ra, rb = ranks
    if ra == 1:
        a = reshape_p(a, shape=(batch, 1) + _shape(a)[1:]) if bat[0] else reshape_p(a, shape=(1,) + _shape(a))
        ra = 2
    if rb == 1:
        b = reshape_p(b, shape=(batch,) + _shape(b)[1:] + (1,)) if bat[1] else reshape_p(b, shape=_shape(b) + (1,))
        rb = 2
    r = max(ra, rb)
    if bat[0]:
        a = _lift(a, ra, r)
    if bat[1]:
        b = _lift(b, rb, r)
    return reshape_p(bind(eqn.prim, a, b), shape=(batch,) + eqn.out.shape)


def _einsum(vals: list, bat: list[bool], ranks: list[int], batch: int, eqn: Eqn) -> Any:
    spec = eqn.params["subscripts"]
    lhs, out = spec.split("->")
    free = next(c for c in "ZYXWVUTSRQPONMLKJIHGFEDCBAzyxwvutsrqponmlkjihgfedcba" if c not in spec)
    terms = [free + t if b else t for t, b in zip(lhs.split(","), bat)]
    return bind(eqn.prim, *vals, subscripts=",".join(terms) + "->" + free + out)


def _linalg_unary(vals: list, bat: list[bool], ranks: list[int], batch: int, eqn: Eqn) -> Any:
    return bind(eqn.prim, vals[0], **eqn.params)


def _solve(vals: list, bat: list[bool], ranks: list[int], batch: int, eqn: Eqn) -> Any:
    a, b = vals
    ra, rb = ranks
    if rb == 1:  # a vector: make it a one-column matrix so NumPy does not read the batch as columns
        b = reshape_p(b, shape=_shape(b) + (1,))
        rb = 2
    r = max(ra, rb)  # lift the batched operands so their batch axis meets nobody else's stack axes
    if bat[0]:
        a = _lift(a, ra, r)
    if bat[1]:
        b = _lift(b, rb, r)
    return reshape_p(bind(eqn.prim, a, b), shape=(batch,) + eqn.out.shape)


for _name, _p in PRIMITIVES.items():
    if _p.kind == "elementwise":
        BATCH_RULES[_name] = _elementwise
for _name in ("reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "reduce_any", "reduce_all",
              "cumsum", "cumprod", "argsort", "argmax", "argmin"):  # fmt: skip
    BATCH_RULES[_name] = _reduction
BATCH_RULES.update(
    reshape=_reshape,
    transpose=_transpose,
    broadcast_to=_broadcast_to,
    getitem=_getitem,
    index_add=_index_update,
    index_set=_index_update,
    concatenate=_concatenate,
    matmul=_matmul,
    einsum=_einsum,
    inv=_linalg_unary,
    det=_linalg_unary,
    logabsdet=_linalg_unary,
    slogdet_sign=_linalg_unary,
    cholesky=_linalg_unary,
    solve=_solve,
)

__all__ = ["LinearMap", "replay", "replay_batched", "BATCH_RULES"]
