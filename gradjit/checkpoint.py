"""Checkpointing: ``checkpoint(fn)`` keeps only the boundary of ``fn`` for the reverse sweep.

    block = gj.checkpoint(lambda h: np.tanh(np.tanh(h)))       # or policy="contractions"
    gj.grad(lambda x: np.sum(block(block(x))))(x)

A traced value is an ``Eqn`` holding its output (``Var.value``), and that is what keeps every
intermediate alive until the reverse sweep. A checkpointed call records ``fn`` as usual and then
*cuts* what it recorded out of every active trace, replacing it by a few ``checkpoint`` equations:
one per **export** (an output leaf of ``fn``, a value a guard inside ``fn`` looked at, or, with
``policy="contractions"``, a contraction result), each computing that export from the region's
**inputs** (the traced leaves of the arguments and the traced values ``fn`` captured). Only the
exports' values stay; the rest is garbage as soon as ``fn`` returns. The reverse sweep reaching
a ``checkpoint`` equation recomputes the region from its inputs and sweeps that recomputation.

How
---
- While ``fn`` runs, its arguments are tracers of a private **region trace** one level above every
  active trace, whose values are the real arguments. Every operation is therefore recorded twice: in
  the region trace (that record, stripped of its values, is the region's *structure*) and, through
  ``bind``'s usual recursion, in the real traces below (so guards, nested transforms and outer traces
  see exactly what they would see without the checkpoint). Each region equation's value is the real
  tracer it produced: following those chains maps every real variable recorded inside the region to
  the structure variable it stands for, at every level.
- Cutting a real trace: the equations of the region that stand for a structure variable are removed;
  those that do not (work on captured values only, ``np.sin(W)`` with ``W`` captured) are kept where
  they are. The exports are re-defined by ``checkpoint`` equations that reuse their ``Var`` objects,
  so tracers handed out stay valid. A traced value ``fn`` captured from outside (a closure, a
  global ``jit`` lifted) becomes one more region input (closure conversion). An argument ``fn``
  updated in place (``h += 1``) is one more output, and the caller's tracer is rebound to it
  afterwards, as without the checkpoint. Constants that only the removed equations used are
  removed; the simplifier's table (``Trace.cse``) forgets removed variables.
- The recomputation **replays the structure** (``bind`` per equation) on the recorded input values
  rather than calling ``fn`` again: the same path by construction, the same random numbers drawn in
  ``fn`` (they are constants of the structure), no Python re-run. Replayed on concrete values it is
  plain NumPy with the same ``impl`` calls, so results are bit for bit those of the original run;
  replayed on tracers of an outer trace it is recorded there (``grad(grad(f))``,
  ``make_wengert(grad(f))`` shows the recomputation in the reverse sweep). Exports are replayed with
  their kept values (an equation emitted with a given output, not computed): the region's outputs
  are not computed twice, and ``"contractions"`` gets its saved products back.
- Several exports share one recomputation. With two or more float exports the cut also records a
  ``sweep`` equation (a 0-d zero) before them, and every float export takes it as an extra input.
  The walker reaches the exports first (they come later in the list): each export's rule only stores
  its cotangent and gives the ``sweep`` variable a zero, so the walker reaches the ``sweep`` equation
  last, whose rule replays once, seeds every stored cotangent and sweeps. Forward mode and Taylor
  mode share work the same way (the first export visited computes all and leaves the rest cached).
- Guards: a conversion inside ``fn`` is recorded in the real traces as usual. If its variable was
  cut, it becomes a ``guardN`` export, and the guard is kept (same order, positions recounted) just
  after it, before any output export: replaying the list on other inputs (an executor, ``jit``)
  checks it before anything path-dependent runs. The ``impl`` of an export replays the structure.

Invariants
----------
- The gradient is bit for bit the one without checkpoint, except where a region input is also used
  after the region (its contributions are then summed in another order) and for the sign of an
  exact zero in a multi-export region.
- A checkpoint inside a checkpointed function, or any checkpoint in debug mode
  (``gradjit.debug_nans``), is inlined: ``fn`` is simply called.
- User primitives inside ``fn`` are recomputed like everything else: one with hidden randomness
  would not recompute the same (NumPy randomness drawn in ``fn`` itself is a constant: safe).
- A ``checkpoint`` equation only makes sense in the trace it was cut into (its ``part`` param holds
  that level's layout and kept values).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np

from . import pytree
from . import tracing as _tracing
from .errors import GradjitError
from .forward import forward
from .numpy_api import _rebind
from .reverse import backward
from .taylor import deftaylor, propagate
from .tracing import Primitive, Trace, Tracer, bind, const_key, new_trace
from .wengert import Const, Eqn, Guard, Lit, Var, Wengert

__all__ = ["checkpoint", "CheckpointError", "POLICIES", "checkpoint_p"]

# policy -> which primitives' results are kept (the rest of the region is recomputed)
POLICIES: dict[str, Callable[[Primitive], bool]] = {
    "nothing": lambda prim: False,
    "contractions": lambda prim: prim.kind in ("contraction", "linalg"),
}
_POLICY_HELP = (
    "Use policy='nothing' (keep only the function's outputs, recompute everything else in the "
    "reverse sweep) or policy='contractions' (also keep the results of matmul, einsum, the "
    "numpy.linalg operations and convolutions; recompute the rest)."
)
_PY_SCALARS = (float, int, bool)
_F64 = np.dtype(np.float64)


class CheckpointError(GradjitError, ValueError):
    """``checkpoint`` was given something it cannot use (an unknown policy, a non-callable)."""


class _RegionTrace(Trace):
    """The private trace a checkpointed call records its structure in; never cut, never seen outside."""

    __slots__ = ()


# ---------------------------------------------------------------------------------------------
# The recorded region and its per-level layout
# ---------------------------------------------------------------------------------------------
class _Region:
    """The structure of one checkpointed call: inputs, constants, equations (no values kept)."""

    __slots__ = ("name", "policy", "inputs", "consts", "eqns", "_key")

    def __init__(self, name: str, policy: str, inputs: list[Var], consts: list[Const], eqns: list[Eqn]):
        self.name = name
        self.policy = policy
        self.inputs = inputs  # structure variables standing for the region inputs, in order
        self.consts = consts  # constants that are not region inputs (captured arrays), with values
        self.eqns = eqns
        self._key: str | None = None

    def key(self) -> str:
        if self._key is None:  # computed on demand: only printing and structural equality need it
            wl = Wengert(self.inputs, self.consts, self.eqns, [], [])
            self._key = hashlib.sha256(repr((self.policy, wl._key())).encode()).hexdigest()[:16]
        return self._key


class _Part:
    """One real trace's share of a region: its exports, which inputs are differentiable there, the
    kept values, and the scratch space that lets several exports share one recomputation."""

    __slots__ = ("region", "exports", "floats", "n_in", "diff", "saved", "sweep", "stash", "tangents")

    def __init__(
        self, region: _Region, exports: dict[str, int], floats: tuple, n_in: int, diff: tuple, saved: dict, sweep: bool
    ):
        self.region = region
        self.exports = exports  # label ("out0", "guard1", "saved2") -> structure variable index
        self.floats = floats  # the labels of the float exports (the differentiable ones)
        self.n_in = n_in
        self.diff = diff  # positions of the inputs that are float variables of this trace
        self.saved = saved  # structure variable index -> kept value (one level down)
        self.sweep = sweep  # whether a "sweep" equation collects the exports' cotangents
        self.stash: dict[str, Any] = {}
        self.tangents: tuple | None = None

    def _layout(self) -> tuple:
        region = self.region
        return (region.name, region.key(), tuple(self.exports.items()), self.n_in, self.diff, self.sweep)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Part) and self._layout() == other._layout()

    def __hash__(self) -> int:
        return hash(self._layout())

    def __repr__(self) -> str:
        return f"{self.region.name}[{self.region.policy}]#{self.region.key()[:8]}"


# ---------------------------------------------------------------------------------------------
# Replaying the structure
# ---------------------------------------------------------------------------------------------
def _atom(trace: Trace, v: Any) -> Any:
    if type(v) is Tracer:
        return v._var if v._trace is trace else trace.const(v)
    if type(v) in _PY_SCALARS:
        return Lit(v)
    return trace.const(v)


def _emit_kept(own: Trace, prim: Primitive, args: list, params: dict, value: Any) -> Any:
    """``bind`` with a known result: record ``prim`` in ``own`` with ``value`` (a value one level
    down, kept from the original run) as its output, without computing it. If no argument is a
    tracer of ``own`` the result is a constant there, and ``value`` already is that constant."""
    if any(type(a) is Tracer and a._trace is own for a in args):
        return own.emit(prim, tuple(_atom(own, a) for a in args), params, value)
    return value


def _needed(region: _Region, targets: list[int]) -> list[Eqn]:
    """The equations the structure variables ``targets`` depend on, in order."""
    live = set(targets)
    keep = []
    for e in reversed(region.eqns):
        if e.out.index in live:
            keep.append(e)
            live.update(a.index for a in e.ins if type(a) is not Lit)
    keep.reverse()
    return keep


def _replay(
    region: _Region, inputs: list, targets: list[int], saved: dict | None = None, own: Trace | None = None
) -> dict[int, Any]:
    """Compute the structure variables ``targets`` (and what they depend on) from ``inputs`` through
    ``bind``; returns the environment (variable index -> value). Variables in ``saved`` are not
    recomputed but emitted into ``own`` with their kept values."""
    env: dict[int, Any] = {}
    for c in region.consts:
        env[c.index] = c.value
    for var, v in zip(region.inputs, inputs):
        env[var.index] = v
    for e in _needed(region, targets):
        args = [a.value if type(a) is Lit else env[a.index] for a in e.ins]
        out = e.out.index
        if saved and out in saved:
            env[out] = _emit_kept(own, e.prim, args, e.params, saved[out])
        else:
            env[out] = bind(e.prim, *args, **e.params)
    return env


def _retrace(part: _Part, args: tuple, wrap: list[int], labels: Any) -> tuple[Trace, dict[int, Any]]:
    """Replay what ``part``'s exports ``labels`` need, in a new trace whose inputs are the arguments
    at ``wrap``."""
    with new_trace() as trace:
        inputs = list(args[: part.n_in])
        for i in wrap:
            inputs[i] = trace.new_input(inputs[i])
        env = _replay(part.region, inputs, [part.exports[k] for k in labels], part.saved, trace)
    return trace, env


def _own_var(trace: Trace, x: Any) -> Var | None:
    return x._var if type(x) is Tracer and x._trace is trace else None


# ---------------------------------------------------------------------------------------------
# The primitive
# ---------------------------------------------------------------------------------------------
def _impl(*args: Any, part: _Part, export: str) -> Any:
    """Concrete evaluation (executors replaying a list): replay the structure up to the export."""
    if export == "sweep":
        return np.zeros((), dtype=_F64)
    index = part.exports[export]
    return _replay(part.region, list(args[: part.n_in]), [index])[index]


def _sweep(part: _Part, args: tuple, seeds: dict[str, Any]) -> list:
    """Recompute the region on ``args`` and sweep it from ``seeds`` (label -> cotangent)."""
    trace, env = _retrace(part, args, list(part.diff), seeds)
    ct_seeds: dict[int, Any] = {}
    for label, g in seeds.items():
        var = _own_var(trace, env[part.exports[label]])
        if var is not None:
            i = var.index
            ct_seeds[i] = g if i not in ct_seeds else ct_seeds[i] + g
    ct = backward(trace.eqns, ct_seeds, trace.level) if ct_seeds else {}
    contribs: list = [None] * len(args)
    for pos, var in zip(part.diff, trace.inputs):
        contribs[pos] = ct.get(var.index)
    return contribs


def _vjp(g: Any, ans: Any, *args: Any, part: _Part, export: str) -> tuple:
    if not part.sweep:
        return tuple(_sweep(part, args, {export: g}))
    if export != "sweep":
        part.stash[export] = g  # the "sweep" equation, reached later, recomputes once for all
        contribs = [None] * len(args)
        contribs[-1] = np.zeros((), dtype=_F64)  # makes sure the walker reaches it
        return tuple(contribs)
    seeds, part.stash = part.stash, {}
    return tuple(_sweep(part, args, seeds))


def _float_exports(part: _Part, env: dict, trace: Trace) -> list[tuple[str, Var]]:
    """The float exports that depend on ``trace``'s inputs, with their variables there."""
    out = []
    for label in part.floats:
        var = _own_var(trace, env[part.exports[label]])
        if var is not None:
            out.append((label, var))
    return out


def _cached(part: _Part, key: tuple, export: str, compute: Callable[[], dict]) -> Any:
    """The result for ``export`` of a computation shared by all exports of ``part`` (forward and
    Taylor mode visit the exports in order with the same arguments: the first computes, the others
    take their entry; ``key`` holds the arguments, compared by identity)."""
    cached = part.tangents
    if cached is not None and len(cached[0]) == len(key) and all(a is b for a, b in zip(cached[0], key)):
        results = cached[1]
    else:
        results = compute()
    value = results.pop(export, None)
    part.tangents = (key, results) if results else None
    return value


def _jvp(ts: list, ans: Any, *args: Any, part: _Part, export: str) -> Any:
    if export == "sweep":
        return None
    n = part.n_in
    wrap = [i for i in range(n) if ts[i] is not None]
    if not wrap:
        return None

    def compute() -> dict:
        trace, env = _retrace(part, args, wrap, part.floats)
        tan = forward(trace.eqns, {var.index: ts[i] for i, var in zip(wrap, trace.inputs)})
        return {label: tan.get(var.index) for label, var in _float_exports(part, env, trace)}

    return _cached(part, (*ts[:n], *args[:n]), export, compute)


def _taylor(k: int, series: list, ans: Any, *args: Any, part: _Part, export: str) -> Any:
    if export == "sweep":
        return None
    n = part.n_in
    wrap = [i for i in range(n) if series[i] is not None]
    if not wrap:
        return None

    def compute() -> dict:
        trace, env = _retrace(part, args, wrap, part.floats)
        ser = propagate(trace.eqns, {var.index: series[i] for i, var in zip(wrap, trace.inputs)}, k)
        return {label: ser.get(var.index) for label, var in _float_exports(part, env, trace)}

    return _cached(part, (k, *series[:n], *args[:n]), export, compute)


checkpoint_p = Primitive("checkpoint", _impl, "checkpoint")
checkpoint_p.vjp_all = _vjp
checkpoint_p.jvp_all = _jvp
deftaylor(checkpoint_p, _taylor)


# ---------------------------------------------------------------------------------------------
# Recording a call and cutting the traces
# ---------------------------------------------------------------------------------------------
def _view(x: Any, level: int) -> Any:
    """``x`` as seen by the trace at ``level``: unwrap tracers of higher levels."""
    while type(x) is Tracer and x._trace.level > level:
        x = x._value
    return x


def _chains(region: _RegionTrace, real: list[Trace]) -> dict[int, dict[int, int]]:
    """Per real trace (by id): real variable index -> the structure variable it stands for."""
    maps: dict[int, dict[int, int]] = {id(t): {} for t in real}
    for e in region.eqns:
        t = e.out.value
        while type(t) is Tracer:
            m = maps.get(id(t._trace))
            if m is not None:
                m[t._var.index] = e.out.index
            t = t._value
    return maps


class _Cut:
    """What cutting one real trace removed (for the simplifier's table)."""

    def __init__(self) -> None:
        self.vars: set[int] = set()  # ids of removed Var objects (all levels)
        self.consts: set[int] = set()  # ids of removed Const objects
        self.alive: list = []  # the removed objects, alive until the tables are cleaned (ids stay unique)


def _cut_trace(
    trace: Trace,
    mark: tuple[int, int, int],
    chain: dict[int, int],
    inputs: list,
    out_indices: list[int],
    region: _Region,
    kept_kinds: Callable[[Primitive], bool],
    removed: _Cut,
) -> None:
    start, g_start, c_start = mark
    body = trace.eqns[start:]
    cut: dict[int, Var] = {}
    kept: list[Eqn] = []
    for e in body:
        if e.out.index in chain or any(type(a) is Var and a.index in cut for a in e.ins):
            cut[e.out.index] = e.out
        else:
            kept.append(e)
    if not cut:
        return

    # Constants only the removed equations used go too (they may hold lower-level intermediates).
    used = {a.index for e in kept for a in e.ins if type(a) is Const}
    new_consts = []
    for c in trace.consts[c_start:]:
        if c.index in used:
            new_consts.append(c)
            continue
        removed.consts.add(id(c))
        removed.alive.append(c)
        key = const_key(c.value)
        if trace._const_ids.get(key) is c:
            del trace._const_ids[key]
    trace.consts[c_start:] = new_consts

    # The exports: guarded variables (in guard order), then outputs, then kept contractions.
    order: list[int] = []  # real variable indices
    roles: dict[int, str] = {}
    guards = trace.guards[g_start:]
    for g in guards:
        i = g.var.index
        if i in cut and i not in roles:
            if i not in chain:  # a conversion inside fn is always of a region tracer
                raise RuntimeError(f"checkpoint: internal error, guard on {g.var!r} outside the structure")
            roles[i] = f"guard{len(order)}"
            order.append(i)
    struct_to_real = {}
    for i in cut:
        if i in chain:
            struct_to_real.setdefault(chain[i], i)
    for n, s in enumerate(out_indices):
        i = struct_to_real.get(s)
        if i is not None:
            if i not in roles:
                order.append(i)
            if not roles.get(i, "").startswith("out"):
                roles[i] = f"out{n}"
    for e in region.eqns:
        if kept_kinds(e.prim):
            i = struct_to_real.get(e.out.index)
            if i is not None and i not in roles:
                roles[i] = f"saved{len(order)}"
                order.append(i)
    for i in cut:
        if i not in roles:
            removed.vars.add(id(cut[i]))
            removed.alive.append(cut[i])
    exports = {roles[i]: chain[i] for i in order}
    saved = {chain[i]: cut[i].value for i in order}

    ins = tuple(_atom(trace, _view(x, trace.level)) for x in inputs)
    diff = tuple(p for p, a in enumerate(ins) if type(a) is Var and a.dtype.kind == "f")
    floats = tuple(roles[i] for i in order if cut[i].dtype.kind == "f")
    part = _Part(region, exports, floats, len(ins), diff, saved, len(floats) >= 2)

    phase = _tracing._PHASE
    new_eqns = list(kept)
    defined_at: dict[int, int] = {e.out.index: start + k + 1 for k, e in enumerate(kept)}
    float_ins = ins
    if part.sweep:
        token = Var(trace.n, (), _F64, np.zeros((), dtype=_F64))
        trace.n += 1
        new_eqns.append(Eqn(checkpoint_p, ins, token, {"part": part, "export": "sweep"}, phase))
        float_ins = (*ins, token)
    for i in order:
        var = cut[i]
        e_ins = float_ins if var.dtype.kind == "f" else ins
        new_eqns.append(Eqn(checkpoint_p, e_ins, var, {"part": part, "export": roles[i]}, phase))
        defined_at[i] = start + len(new_eqns)
    trace.eqns[start:] = new_eqns

    # Guards: same order, positions recounted (each just after its variable is defined again).
    new_guards = []
    last = start
    for g in guards:
        pos = max(defined_at.get(g.var.index, start), last)
        new_guards.append(Guard(g.kind, g.var, g.observed, pos))
        last = pos
    trace.guards[g_start:] = new_guards


def _forget(trace: Trace, removed: _Cut) -> None:
    """Drop the simplifier's table entries that mention removed variables or constants."""
    table = getattr(trace, "cse", None)
    if not table:
        return
    gone_v, gone_c = removed.vars, removed.consts

    def mentions(x: Any) -> bool:
        t = type(x)
        if t is Var:
            return id(x) in gone_v
        if t is Const:
            return id(x) in gone_c
        if t is tuple:
            return any(mentions(y) for y in x)
        return False

    for k in [k for k, v in table.items() if mentions(v) or mentions(k[1])]:
        del table[k]


def _call(fn: Callable, policy: str, args: tuple, kwargs: dict) -> Any:
    stack = _tracing._STACK
    real = [t for t in stack if not isinstance(t, _RegionTrace)]
    marks = {id(t): (len(t.eqns), len(t.guards), len(t.consts)) for t in real}
    leaves, td = pytree.flatten((args, kwargs))
    region_trace = _RegionTrace(len(stack) + 1)
    stack.append(region_trace)
    try:
        new = [region_trace.new_input(x) if type(x) is Tracer else x for x in leaves]
        new_tracers = [t for t in new if type(t) is Tracer]
        a, kw = pytree.unflatten(td, new)
        out = fn(*a, **kw)
    finally:
        region_trace.active = False
        stack.remove(region_trace)

    out_leaves, out_td = pytree.flatten(out)
    results = [x._value if type(x) is Tracer and x._trace is region_trace else x for x in out_leaves]
    out_indices = [x._var.index if type(x) is Tracer and x._trace is region_trace else -1 for x in out_leaves]
    # An argument fn updated in place (``h += 1``, ``h[0] = y``) is one more output: after the cut the
    # caller's tracer is rebound to it, as it would have been without the checkpoint.
    mutated = []
    for leaf, t, var in zip([x for x in leaves if type(x) is Tracer], new_tracers, region_trace.inputs):
        if t._trace is region_trace and t._var is not var and type(t._value) is Tracer:
            mutated.append((leaf, t._value))
            out_indices.append(t._var.index)

    # Region inputs: the traced arguments, then traced values fn captured (closure conversion).
    inputs = [x for x in leaves if type(x) is Tracer]
    in_vars: list[Var] = list(region_trace.inputs)
    consts: list[Const] = []
    for c in region_trace.consts:
        if type(c.value) is Tracer:
            inputs.append(c.value)
            in_vars.append(c)
        else:
            consts.append(c)
    chains = _chains(region_trace, real)
    for v in (*region_trace.inputs, *(e.out for e in region_trace.eqns)):
        v.value = None  # the structure keeps no values: they are the memory being saved
    for c in in_vars:
        c.value = None
    region = _Region(getattr(fn, "__name__", "fn"), policy, in_vars, consts, list(region_trace.eqns))

    removed = _Cut()
    kept_kinds = POLICIES[policy]
    for t in real:
        if len(t.eqns) > marks[id(t)][0]:
            _cut_trace(t, marks[id(t)], chains[id(t)], inputs, out_indices, region, kept_kinds, removed)
    if removed.vars or removed.consts:
        for t in real:
            _forget(t, removed)
    for leaf, value in mutated:
        _rebind(leaf, value)
    return pytree.unflatten(out_td, results)


def checkpoint(fn: Callable | None = None, *, policy: str = "nothing") -> Any:
    """``fn``, with its intermediates recomputed in the reverse sweep instead of kept.

    Under ``grad`` (or any transform), a call of the result keeps only ``fn``'s outputs (and, with
    ``policy="contractions"``, the results of its matrix products, einsums, linear-algebra operations
    and convolutions); the reverse sweep recomputes the rest from ``fn``'s inputs, then sweeps it.
    The gradient is the same, bit for bit. Arguments and results may be pytrees; traced values that
    ``fn`` uses without receiving them as arguments (closures) are handled. Outside any transform the
    result simply calls ``fn``. Usable as a decorator, with or without ``policy``.
    """
    if policy not in POLICIES:
        raise CheckpointError("checkpoint", f"unknown policy {policy!r}", _POLICY_HELP)
    if fn is None:
        return functools.partial(checkpoint, policy=policy)
    if not callable(fn):
        raise CheckpointError(
            "checkpoint",
            f"expected a function, got {type(fn).__name__}",
            "Pass the function to checkpoint: gj.checkpoint(block)(x), or use @gj.checkpoint.",
        )

    @functools.wraps(fn)
    def checkpointed(*args: Any, **kwargs: Any) -> Any:
        stack = _tracing._STACK
        if not stack or _tracing._DEBUG is not None or any(isinstance(t, _RegionTrace) for t in stack):
            return fn(*args, **kwargs)  # nothing recorded, debug mode, or inside another checkpoint
        return _call(fn, policy, args, kwargs)

    checkpointed.__gradjit_checkpoint__ = policy  # type: ignore[attr-defined]
    return checkpointed
