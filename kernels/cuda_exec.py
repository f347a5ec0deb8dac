"""The CUDA executor: runs a Wengert list on device arrays, with chains of elementwise equations fused.

``gradjit.jit`` runs a stored list through an executor; with device inputs it picks this one
(``get_executor("cuda")``). The list is planned once (per list object):

- elementwise equations (and ``broadcast_to``) with the same output shape become one **fused
  kernel** when what they read is computed by then: one launch that reads each external operand once
  (broadcast through strides) and writes only the values needed later (by another step, an output or
  a guard). The forward and reverse sweeps of an elementwise function thus become one kernel: the
  intermediates the reverse sweep reads are recomputed in registers, never stored. A reduction of
  a fused value over all its axes is folded into the same kernel (a tree per block, then one small
  launch over the blocks' partial results). The scalar expressions are ``gradjit.kernels.ops.EXPR``,
  as in the CPU executor's fused loops;
- every other equation runs its primitive's implementation on device arrays (``prim.impl``: a CUDA
  kernel through ``DeviceArray``'s NumPy protocols).

Guards are checked before the first step that starts at or after their position (the value a guard
reads is computed by then; a fused kernel may have computed some later elementwise values already,
which is harmless: they are pure); a failing guard raises ``GuardFailure`` (a scalar crosses to the
host for the check).

Invariant: ``run(wl, inputs)`` equals ``ReferenceExecutor().run(wl, inputs)`` to rounding, with every
array result on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gradjit.wengert import Lit, Var, Wengert

from . import cuda as C
from .reference import GuardFailure, initial_env

__all__ = ["CudaExecutor"]


def _convert(kind: str, value: Any) -> Any:
    if kind == "count":
        return value.shape[1]
    if kind == "bool":
        return bool(value)
    if kind in ("int", "float"):
        return int(value) if kind == "int" else float(value)
    if kind == "index":
        return value.__index__()
    if kind == "item":
        return value.item()
    if kind == "tolist":
        return value.tolist() if hasattr(value, "tolist") else np.asarray(value).tolist()
    raise ValueError(f"unknown guard kind {kind!r}")


class _Group:
    """A fused kernel: elementwise equations over one shape, and full reductions of their values."""

    __slots__ = ("shape", "start", "eqns", "ext", "ext_index", "ops", "local", "outs", "body", "names", "reds")

    def __init__(self, shape: tuple[int, ...], start: int):
        self.shape = shape
        self.start = start  # the index of the step that launches it
        self.eqns: list = []
        self.ext: list = []  # external atoms (Var, Const or Lit), in first-use order
        self.ext_index: dict = {}
        self.ops: list = []  # program_body's ops
        self.local: dict[int, int] = {}  # var index -> op number
        self.outs: list[Var] = []
        self.body: list[str] = []
        self.names: str = ""
        self.reds: list = []  # (eqn, kind, tag, op number) of the fused full reductions

    def ref(self, atom: Any) -> tuple[str, int]:
        if type(atom) is Var and atom.index in self.local:
            return ("v", self.local[atom.index])
        key = ("lit", len(self.ext)) if type(atom) is Lit else atom.index
        j = self.ext_index.get(key)
        if j is None:
            j = self.ext_index[key] = len(self.ext)
            self.ext.append(atom)
        return ("x", j)


def _standin(atom: Any) -> C.Scalar:
    """What ``cuda.op_types`` needs of an operand, at planning time."""
    if type(atom) is Lit:
        v = atom.value
        return C.Scalar(v, np.dtype(np.bool_) if type(v) is bool else None, ())
    return C.Scalar(None, np.dtype(atom.dtype), tuple(atom.shape))


def _fusable(eqn: Any) -> tuple | None:
    """``(name, compute tag, params)`` if ``eqn`` can be an op of a fused kernel, else None.

    Elementwise primitives with an expression, and ``broadcast_to`` (its operand is read broadcast)."""
    prim = eqn.prim
    name, params = prim.name, eqn.params
    if name == "broadcast_to":
        name, params = "astype", {"dtype": eqn.out.dtype}
    elif prim.kind != "elementwise":
        return None
    if not any(type(a) is Var for a in eqn.ins):
        return None  # constants only: computed where they live, as the reference executor does
    try:
        for a in eqn.ins:
            if type(a) is not Lit:
                C.tag_of(a.dtype)
        C.tag_of(eqn.out.dtype)
        tag, _ = C.op_types(name, [_standin(a) for a in eqn.ins], params)
        C.expression(name, tag, params)
    except (TypeError, NotImplementedError, KeyError):
        return None
    return (name, tag, params or None)


_FUSED_REDUCTIONS = {"reduce_sum": "sum", "reduce_prod": "prod", "reduce_max": "max", "reduce_min": "min"}


class _Plan:
    """Steps in launch order: ("eqn", first index, eqn) or ("group", first index, _Group).

    An elementwise equation joins the latest group of its shape when everything it reads is computed
    by then (inside that group, or by a step launched before it); otherwise it starts a new group.
    A reduction over all axes of a value computed in a group is folded into that group's kernel."""

    __slots__ = ("steps",)

    def __init__(self, wl: Wengert):
        steps: list = []
        made_by: dict[int, int] = {}  # var index -> index of the step that makes it available
        latest: dict[tuple, _Group] = {}
        group_of: dict[int, _Group] = {}  # var index -> group computing it per element

        def ready_for(g: _Group, eqn: Any) -> bool:
            return all(type(a) is not Var or a.index in g.local or made_by.get(a.index, -1) < g.start for a in eqn.ins)

        for i, eqn in enumerate(wl.eqns):
            fused = _fusable(eqn)
            if fused is not None:
                shape = tuple(eqn.out.shape)
                g = latest.get(shape)
                if g is None or not ready_for(g, eqn):
                    g = latest[shape] = _Group(shape, len(steps))
                    steps.append(("group", i, g))
                name, tag, params = fused
                refs = [g.ref(a) for a in eqn.ins]
                g.local[eqn.out.index] = len(g.ops)
                g.ops.append((name, refs, tag, np.dtype(eqn.out.dtype), params))
                g.eqns.append(eqn)
                group_of[eqn.out.index] = g
                made_by[eqn.out.index] = g.start
                continue
            kind = _FUSED_REDUCTIONS.get(eqn.prim.name)
            src = eqn.ins[0] if eqn.ins else None
            g = group_of.get(src.index) if type(src) is Var else None
            if (
                kind is not None
                and g is not None
                and len(eqn.params.get("axis", ())) == len(src.shape)
                and eqn.out.dtype.kind in "fiub"
                and np.dtype(eqn.out.dtype) == C.reduce_dtype(kind, np.dtype(src.dtype))
            ):
                g.reds.append((eqn, kind, C.tag_of(eqn.out.dtype), g.local[src.index]))
                made_by[eqn.out.index] = g.start
                continue
            made_by[eqn.out.index] = len(steps)
            steps.append(("eqn", i, eqn))
        # A fused value is stored when something outside its group reads it.
        needed: set[int] = {g.var.index for g in wl.guards}
        needed.update(a.index for a in wl.outputs if type(a) is Var)
        fused_by: dict[int, _Group] = {}
        for kind, _, step in steps:
            if kind == "group":
                for eqn, *_ in step.reds:
                    fused_by[eqn.out.index] = step
        for eqn in wl.eqns:
            own = group_of.get(eqn.out.index) or fused_by.get(eqn.out.index)
            for a in eqn.ins:
                if type(a) is Var and a.index in group_of and group_of[a.index] is not own:
                    needed.add(a.index)
        for kind, _, step in steps:
            if kind != "group":
                continue
            step.outs = [e.out for e in step.eqns if e.out.index in needed]
            outs = [(("v", step.local[v.index]), np.dtype(v.dtype)) for v in step.outs]
            step.body = tuple(C.program_body(step.ops, outs))
            step.names = "jit: fused " + ", ".join(e.prim.name for e in step.eqns)
        self.steps = steps


class CudaExecutor:
    """Runs Wengert lists on device arrays (``DeviceArray``), fusing elementwise chains."""

    name = "cuda"

    def __init__(self) -> None:
        self._plans: dict[int, tuple[Wengert, _Plan]] = {}

    def _plan(self, wl: Wengert) -> _Plan:
        entry = self._plans.get(id(wl))
        if entry is None or entry[0] is not wl:
            entry = self._plans[id(wl)] = (wl, _Plan(wl))
        return entry[1]

    def run(self, wl: Wengert, inputs: Sequence[Any]) -> list[Any]:
        env = initial_env(wl, inputs)
        plan = self._plan(wl)

        def read(a: Any) -> Any:
            return a.value if type(a) is Lit else env[a.index]

        guards = sorted(wl.guards, key=lambda g: g.position)
        k = 0
        for kind, i, step in plan.steps:
            while k < len(guards) and guards[k].position <= i:  # (a fused group may have run later equations)
                _check(env, guards[k])
                k += 1
            if kind == "eqn":
                env[step.out.index] = step.prim.impl(*[read(a) for a in step.ins], **step.params)
                continue
            ins = C.operands(step.names, [read(a) for a in step.ext])
            outs = [C.empty(step.shape, v.dtype) for v in step.outs]
            reds = [(kind, tag, f"v{op}", C.empty(e.out.shape, e.out.dtype)) for e, kind, tag, op in step.reds]
            C.launch_elementwise(step.body, ins, outs, step.shape, tuple(reds))
            for v, z in zip(step.outs, outs):
                env[v.index] = z
            for (e, *_), r in zip(step.reds, reds):
                env[e.out.index] = r[3]
        for g in guards[k:]:
            _check(env, g)
        return [None if a is None else read(a) for a in wl.outputs]


def _check(env: dict[int, Any], g: Any) -> None:
    observed = _convert(g.kind, env[g.var.index])
    if observed != g.observed:
        raise GuardFailure(f"{g} failed: now {observed!r}")
