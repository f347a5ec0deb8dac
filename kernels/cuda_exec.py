"""The CUDA executor: runs a Wengert list on device arrays, with chains of elementwise equations fused.

``gradjit.jit`` runs a stored list through an executor; with device inputs it picks this one
(``get_executor("cuda")``). The list is planned once (per list object):

- maximal runs of elementwise equations with the same output shape become one **fused kernel**: one
  launch that reads each external operand once (broadcast through strides) and writes only the
  values needed later (by another step, an output or a guard); the scalar expressions are those of
  ``gradjit.kernels.ops.EXPR``, as in the CPU executor's fused loops;
- every other equation runs its primitive's implementation on device arrays (``prim.impl``: a CUDA
  kernel through ``DeviceArray``'s NumPy protocols).

Guards are checked where the reference executor checks them (before the equation at their
position); a fused run never spans a guard's position, so a failing guard stops the sweep before
anything after it runs, and raises ``GuardFailure`` (a scalar crosses to the host for the check).

Invariant: ``run(wl, inputs)`` equals ``ReferenceExecutor().run(wl, inputs)`` to rounding, with every
array result on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gradjit.wengert import Lit, Var, Wengert

from . import cuda as C
from .reference import GuardFailure

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
    """A fused run of elementwise equations over one output shape."""

    __slots__ = ("shape", "eqns", "ext", "ext_index", "ops", "local", "outs", "body", "names")

    def __init__(self, shape: tuple[int, ...]):
        self.shape = shape
        self.eqns: list = []
        self.ext: list = []  # external atoms (Var, Const or Lit), in first-use order
        self.ext_index: dict = {}
        self.ops: list = []  # program_body's ops
        self.local: dict[int, int] = {}  # var index -> op number
        self.outs: list[Var] = []
        self.body: list[str] = []
        self.names: str = ""

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
    """(compute tag,) if ``eqn`` can join a fused kernel, else None."""
    prim = eqn.prim
    if prim.kind != "elementwise" or not any(type(a) is not Lit for a in eqn.ins):
        return None
    if not any(type(a) is Var for a in eqn.ins):
        return None
    try:
        for a in eqn.ins:
            if type(a) is not Lit:
                C.tag_of(a.dtype)
        C.tag_of(eqn.out.dtype)
        tag, _ = C.op_types(prim.name, [_standin(a) for a in eqn.ins], eqn.params)
        C.expression(prim.name, tag, eqn.params)
    except (TypeError, NotImplementedError, KeyError):
        return None
    return (tag,)


class _Plan:
    __slots__ = ("steps",)

    def __init__(self, wl: Wengert):
        guard_at = {g.position for g in wl.guards}
        steps: list = []
        cur: _Group | None = None
        group_of: dict[int, _Group] = {}
        for i, eqn in enumerate(wl.eqns):
            if i in guard_at:
                cur = None
            fused = _fusable(eqn)
            if fused is None:
                cur = None
                steps.append(("eqn", i, eqn))
                continue
            if cur is None or cur.shape != tuple(eqn.out.shape):
                cur = _Group(tuple(eqn.out.shape))
                steps.append(("group", i, cur))
            refs = [cur.ref(a) for a in eqn.ins]
            cur.local[eqn.out.index] = len(cur.ops)
            cur.ops.append((eqn.prim.name, refs, fused[0], np.dtype(eqn.out.dtype), eqn.params or None))
            cur.eqns.append(eqn)
            group_of[eqn.out.index] = cur
        # A fused value is stored when something outside its group reads it.
        needed: set[int] = {g.var.index for g in wl.guards}
        needed.update(a.index for a in wl.outputs if type(a) is Var)
        for eqn in wl.eqns:
            own = group_of.get(eqn.out.index)
            for a in eqn.ins:
                if type(a) is Var and a.index in group_of and group_of[a.index] is not own:
                    needed.add(a.index)
        for kind, _, step in steps:
            if kind != "group":
                continue
            step.outs = [e.out for e in step.eqns if e.out.index in needed]
            outs = [(("v", step.local[v.index]), np.dtype(v.dtype)) for v in step.outs]
            step.body = C.program_body(step.ops, outs)
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
        if len(inputs) != len(wl.inputs):
            raise ValueError(f"expected {len(wl.inputs)} inputs, got {len(inputs)}")
        plan = self._plan(wl)
        env: dict[int, Any] = {}
        for var, x in zip(wl.inputs, inputs):
            if np.shape(x) != var.shape:
                raise ValueError(f"input {var!r} has shape {np.shape(x)}, the list was traced with {var.shape}")
            env[var.index] = x
        for c in wl.consts:
            env[c.index] = c.value

        def read(a: Any) -> Any:
            return a.value if type(a) is Lit else env[a.index]

        guards = list(wl.guards)
        for kind, i, step in plan.steps:
            if guards:
                _check(env, i, guards)
            if kind == "eqn":
                env[step.out.index] = step.prim.impl(*[read(a) for a in step.ins], **step.params)
                continue
            ins = C.operands(step.names, [read(a) for a in step.ext])
            outs = [C.empty(step.shape, v.dtype) for v in step.outs]
            C.launch_elementwise(step.body, ins, outs, step.shape)
            for v, z in zip(step.outs, outs):
                env[v.index] = z
        if guards:
            _check(env, len(wl.eqns), guards)
        return [None if a is None else read(a) for a in wl.outputs]


def _check(env: dict[int, Any], position: int, guards: list) -> None:
    for g in guards:
        if g.position == position:
            observed = _convert(g.kind, env[g.var.index])
            if observed != g.observed:
                raise GuardFailure(f"{g} failed: now {observed!r}")
