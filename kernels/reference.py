"""The NumPy reference executor: runs a Wengert list one equation at a time with ``prim.impl``.

It is deliberately simple, so it can be the oracle that every other executor is tested against.
Running a list checks its guards: if a traced value would now convert to a different Python value
than it did when the list was recorded, the list no longer describes what the function does, and
``GuardFailure`` is raised instead of returning a stale answer.

Invariant: ``run(wl, inputs)`` equals calling the traced function on ``inputs`` whenever every
guard holds (constants are read from the list, as recorded).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gradjit.wengert import Lit, Var, Wengert


class GuardFailure(RuntimeError):
    """A guard of the Wengert list does not hold for these inputs: the list must be re-traced."""


_CONVERT = {
    "bool": bool,
    "int": int,
    "index": lambda v: v.__index__(),
    "float": float,
    "item": lambda v: v.item(),
    "tolist": lambda v: np.asarray(v).tolist(),
}


def _check_guards(env: dict[int, Any], guards: list) -> None:
    for g in guards:
        value = env[g.var.index]
        observed = value.shape[1] if g.kind == "count" else _CONVERT[g.kind](value)
        if observed != g.observed:
            raise GuardFailure(f"{g} failed: now {observed!r}")


def guards_by_position(wl: Wengert) -> dict[int, list]:
    """The list's guards grouped by the equation position where they are checked."""
    at: dict[int, list] = {}
    for g in wl.guards:
        at.setdefault(g.position, []).append(g)
    return at


def initial_env(wl: Wengert, inputs: Sequence[Any]) -> dict[int, Any]:
    """Variable index -> value for the list's inputs (shapes checked) and constants: where a run starts."""
    if len(inputs) != len(wl.inputs):
        raise ValueError(f"expected {len(wl.inputs)} inputs, got {len(inputs)}")
    env: dict[int, Any] = {}
    for var, x in zip(wl.inputs, inputs):
        if np.shape(x) != var.shape:
            raise ValueError(f"input {var!r} has shape {np.shape(x)}, the list was traced with {var.shape}")
        env[var.index] = x
    for c in wl.consts:
        env[c.index] = c.value
    return env


class _Plan:
    """What a run of one list needs beyond the list: guards by position, and when each value dies."""

    __slots__ = ("wl", "guards", "dead")

    def __init__(self, wl: Wengert):
        self.wl = wl  # kept alive, so the id this plan is filed under stays unique
        self.guards = guards_by_position(wl) if wl.guards else None
        keep = {a.index for a in wl.outputs if a is not None and type(a) is not Lit}
        keep.update(g.var.index for g in wl.guards)
        last: dict[int, int] = {}
        for i, eqn in enumerate(wl.eqns):
            for a in eqn.ins:
                if type(a) is Var:
                    last[a.index] = i
        self.dead: list[list[int]] = [[] for _ in wl.eqns]
        for index, i in last.items():
            if index not in keep:
                self.dead[i].append(index)


class ReferenceExecutor:
    """Runs Wengert lists with NumPy, freeing each intermediate after its last use."""

    name = "reference"

    def __init__(self) -> None:
        self._plans: dict[int, _Plan] = {}

    def _plan(self, wl: Wengert) -> _Plan:
        plan = self._plans.get(id(wl))
        if plan is None or plan.wl is not wl:
            if len(self._plans) >= 256:
                self._plans.clear()
            plan = self._plans[id(wl)] = _Plan(wl)
        return plan

    def run(self, wl: Wengert, inputs: Sequence[Any]) -> list[Any]:
        env = initial_env(wl, inputs)

        def read(a: Any) -> Any:
            return a.value if type(a) is Lit else env[a.index]

        plan = self._plan(wl)
        at, dead = plan.guards, plan.dead
        for i, eqn in enumerate(wl.eqns):
            if at is not None and i in at:
                _check_guards(env, at[i])
            env[eqn.out.index] = eqn.prim.impl(*[read(a) for a in eqn.ins], **eqn.params)
            for index in dead[i]:
                del env[index]
        if at is not None and len(wl.eqns) in at:
            _check_guards(env, at[len(wl.eqns)])
        return [None if a is None else read(a) for a in wl.outputs]


def run(wl: Wengert, *inputs: Any) -> list[Any]:
    return ReferenceExecutor().run(wl, inputs)


__all__ = ["ReferenceExecutor", "GuardFailure", "run"]
