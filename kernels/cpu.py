"""The Numba CPU executor: runs Wengert lists through the compiled interpreter (``interp``).

``CpuExecutor().run(wl, inputs)`` has the reference executor's contract: the list's outputs for
these inputs, or ``GuardFailure`` when a guard does not hold (checked where its value is computed).

How a run goes:

- The list's *plan* (``plan.make_plan``) is looked up by structural hash (computed once per list
  object) or built; plans are values of the structure only, shared by every list that has it.
- Memory: inputs and constants are read in place (a non-contiguous input is copied first); the
  program's intermediate values live in the plan's *arena*, allocated once and reused by later runs
  (a run that finds it busy, in another thread or a nested call, gets a fresh one); the list's
  outputs go to a fresh block per run, so what a run returns is never overwritten.
- The interpreter runs each *segment* (the instructions between two host steps) in one call;
  host steps (contractions, linear algebra, user primitives, ...) run ``prim.impl`` on arrays that
  view the same memory.
- Hot plans: once a plan has run ``hot_after`` times and spent ``hot_seconds`` interpreted, it is
  compiled whole (``hot``) in a background thread; runs use the compiled code once it is ready, through
  one call that also sets the inputs' addresses (``_run_compiled``).

Numba compiles nothing on a first call: the interpreter is one function with fixed argument
types, compiled once per installation (``interp_module``) and then loaded from the disk cache (in a
background thread started when the executor is created).
"""

from __future__ import annotations

import importlib.util
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from gradjit.wengert import Const, Lit, Wengert

from . import cache, ops
from . import hot as _hot
from .hot import HOT_AFTER, Hot, out_block
from .plan import ARENA, EXT, OUT, Plan, _cstrides, bind_literals, make_plan
from .reference import _CONVERT, GuardFailure, ReferenceExecutor

__all__ = ["CpuExecutor", "interp_module", "plan_of"]

_DEPENDENCIES = ("gradjit.kernels.ops", "gradjit.kernels.scalar", "gradjit.kernels.vmath")
_INTERP: list[ModuleType] = []
_INTERP_LOCK = threading.Lock()


def interp_module() -> ModuleType:
    """The compiled interpreter: ``interp.py`` as a cached module keyed by its dependencies' source."""
    if _INTERP:
        return _INTERP[0]
    with _INTERP_LOCK:
        if not _INTERP:
            text = Path(importlib.util.find_spec("gradjit.kernels.interp").origin).read_text()
            body = text + f"\n# dependencies: sha256={cache.digest(cache.source_of(*_DEPENDENCIES))}\n"
            _INTERP.append(cache.load_module("interp", body, warm=lambda m: m.warm()))
    return _INTERP[0]


_PRELOADING: list[threading.Thread] = []  # the background thread loading the interpreter, if any


def wait_until_loaded() -> None:
    """Block until the background load of the interpreter (if one is running) has finished."""
    for thread in list(_PRELOADING):
        thread.join()


def _preload() -> None:
    try:
        interp_module()
    except Exception:  # reported by the first run, which loads it again
        pass


# Plans by structural hash, held by the lists that use them (a structure no list has any more lets its
# plan and arena go; a new list of it plans again, and its fused loops come back from the disk cache).
_PLANS: weakref.WeakValueDictionary[str, Runner] = weakref.WeakValueDictionary()
_PLANS_LOCK = threading.Lock()


_F8 = np.dtype(np.float64)
_NO_OUT = np.zeros(8, np.uint8)  # the output block of plans that have none


def _address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


class _Arena:
    """The plan's scratch memory and the arrays viewing it that host steps read."""

    __slots__ = ("buf", "views", "bases", "scratch")

    def __init__(self, plan: Plan):
        self.buf = np.empty(plan.arena_bytes, np.uint8)
        self.bases = np.zeros(plan.n_slots, np.int64)  # the program's memory table, filled in per run
        self.bases[0] = _address(self.buf)
        self.scratch = np.empty(ops.BLK, np.float64)  # compiled templates' reduction buffers (``hot``)
        self.views: dict[int, np.ndarray] = {}
        for v in (*plan.host_reads, *plan.arena_inputs):
            lay = plan.layouts[v]
            if plan.root_kind.get(lay.root) == ARENA:
                isz = lay.dtype.itemsize
                off = plan.root_off[lay.root] + lay.offset * isz
                strides = tuple(s * isz for s in lay.strides)
                self.views[v] = np.ndarray(lay.shape, lay.dtype, buffer=self.buf, offset=off, strides=strides)


class Runner:
    """A plan and its run-time state: the arena, the number of runs, fused code once compiled."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.lock = threading.Lock()
        self.arena: _Arena | None = None
        self.runs = 0
        self.interpreted = 0.0  # seconds spent running the plan uncompiled (``hot_seconds``)
        self.hot = Hot()

    def acquire(self) -> tuple[_Arena, bool]:
        if self.lock.acquire(blocking=False):
            if self.arena is None:
                self.arena = _Arena(self.plan)
            return self.arena, True
        return _Arena(self.plan), False


def _binding(wl: Wengert) -> list:
    """``wl``'s runner, its literal values and its ``_Calls`` call data once built (cached on the list
    object; the plan by structural hash)."""
    bound = wl.__dict__.get("_gradjit_cpu")
    if bound is None:
        key = wl.structural_hash()
        runner = _PLANS.get(key)
        if runner is None:
            runner = Runner(make_plan(wl))
            with _PLANS_LOCK:
                runner = _PLANS.setdefault(key, runner)
        bound = wl.__dict__["_gradjit_cpu"] = [runner, *bind_literals(runner.plan, wl), None]
    return bound


def plan_of(wl: Wengert) -> Runner:
    """The runner of ``wl``'s plan (shared by every list with its structure)."""
    return _binding(wl)[0]


def _guard_message(wl: Wengert, gi: int, value: Any) -> str:
    g = wl.guards[gi]
    try:
        observed = value.shape[1] if g.kind == "count" else _CONVERT[g.kind](value)
    except Exception as exc:  # the conversion itself fails now (e.g. NaN to int)
        observed = exc
    return f"{g} failed: now {observed!r}"


def _checked(var: Any, x: Any) -> Any:
    """Input ``x`` for ``var``: a Python float as it is, otherwise an array of ``var``'s shape and dtype."""
    if type(x) is float and var.shape == () and var.dtype == _F8:
        return x  # a Python float: copied into the arena, or passed to host steps as it is
    a = x if type(x) is np.ndarray else np.asarray(x)
    if a.shape != var.shape:
        raise ValueError(f"input {var!r} has shape {a.shape}, the list was traced with {var.shape}")
    if a.dtype != var.dtype:
        if a.ndim or not np.can_cast(a.dtype, var.dtype, "same_kind"):
            raise ValueError(f"input {var!r} has dtype {a.dtype}, the list was traced with {var.dtype}")
        a = a.astype(var.dtype)
    return a


def _scalar(a: Any, file: int) -> float | int:
    """The one value of ``a`` as ``run_whole`` takes it: a float (float registers) or an int."""
    v = a.item() if type(a) is np.ndarray else a
    return float(v) if file == ops.F64 else int(v)


_OUT_VIEW, _ARENA_VALUE, _INPUT, _VALUE, _VIEW, _OUT_ARRAY, _OUT_SLICE = 0, 1, 2, 3, 4, 5, 6


class _Calls:
    """What a list needs for a call of its compiled plan (``CpuExecutor._run_compiled``): where each
    input goes in the entry point's arguments, its constants, and how each result is read out."""

    def __init__(self, wl: Wengert, plan: Plan, compiled: Any):
        pos = {r: j for j, r in enumerate(plan.kernel_inputs)}
        n = len(pos)
        for j, r in enumerate(plan.arena_inputs):
            pos[r] = n + j
        file = dict(zip(plan.arena_inputs, compiled.files))
        self.inputs = [(v, v.shape, v.dtype, pos.get(v.index, -1), file.get(v.index, -1)) for v in wl.inputs]
        block = out_block(plan)
        self.out_block = None if block is None else block[:2]  # the array to allocate, else bytes
        self.args: list[Any] = [None] * (n + len(plan.arena_inputs))
        self.copied_consts: list[tuple[int, Any, np.dtype]] = []
        for c in wl.consts:
            j = pos.get(c.index)
            if j is None:
                continue
            if c.index in file:  # a single value: the array itself, read by the compiled code at each run
                value = c.value if type(c.value) is np.ndarray else np.asarray(c.value)  # (a scalar is immutable)
                self.args[j] = value if value.flags.c_contiguous else np.ascontiguousarray(value)
                continue
            value = c.value
            dtype = plan.layouts[c.index].dtype
            if type(value) is not np.ndarray or not value.flags.c_contiguous or value.dtype != dtype:
                self.copied_consts.append((j, value, dtype))  # copied at each run: it may change in place
            self.args[j] = value
        given = {v.index: i for i, v in enumerate(wl.inputs)}
        self.outputs: list[tuple[int, Any]] = []
        for a in wl.outputs:
            if a is None:
                self.outputs.append((_VALUE, None))
            elif type(a) is Lit or type(a) is Const:
                self.outputs.append((_VALUE, a.value))
            elif a.index in given:
                self.outputs.append((_INPUT, given[a.index]))
            else:
                lay = plan.layouts[a.index]
                kind = plan.root_kind[lay.root]
                if kind == ARENA:
                    self.outputs.append((_ARENA_VALUE, a.index))
                elif kind == OUT:
                    isz = lay.dtype.itemsize
                    off = plan.root_off[lay.root] + lay.offset * isz
                    strides = tuple(s * isz for s in lay.strides)
                    if block is not None and block[2] and lay == plan.layouts[lay.root]:
                        self.outputs.append((_OUT_ARRAY, None))  # the output block itself
                    elif block is not None and lay.strides == _cstrides(lay.shape) and off % isz == 0:
                        start = off // isz  # a C-contiguous result: a slice of the block
                        self.outputs.append((_OUT_SLICE, (start, start + int(np.prod(lay.shape)), lay.shape)))
                    else:
                        self.outputs.append((_OUT_VIEW, (lay.shape, lay.dtype, off, strides)))
                else:
                    self.outputs.append((_VIEW, a))


class CpuExecutor:
    """Runs Wengert lists with Numba-compiled kernels (see the module docstring)."""

    name = "cpu"

    def __init__(self, hot_after: int = HOT_AFTER, hot_seconds: float | None = None, fuse: bool | str = True,
                 preload: bool = True, wait: bool = True):  # fmt: skip
        self.hot_after = hot_after
        self.hot_seconds = hot_seconds  # None: ``hot.HOT_SECONDS`` at the time of the run
        self.fuse = fuse  # True: in a background thread; "sync": on the calling thread; False: never
        # wait=False (jit's executor): while the interpreter is still being loaded or, on a fresh
        # installation, compiled (about 30 s once), runs go to the NumPy reference executor instead of
        # waiting: the same results and guards, no compile on any call's path.
        self.wait = wait
        self._fallback = ReferenceExecutor()
        if preload and not _INTERP and not (_PRELOADING and _PRELOADING[-1].is_alive()):
            # Loading the interpreter (Numba, its BLAS check, the cached machine code) takes about half
            # a second: start it now, so that the first run (jit's second call) finds it ready.
            thread = threading.Thread(target=_preload, daemon=True, name="gradjit-preload")
            _PRELOADING.append(thread)
            thread.start()

    def run(self, wl: Wengert, inputs: Sequence[Any]) -> list[Any]:
        if not self.wait and not _INTERP and _PRELOADING and _PRELOADING[-1].is_alive():
            return self._fallback.run(wl, inputs)
        if len(inputs) != len(wl.inputs):
            raise ValueError(f"expected {len(wl.inputs)} inputs, got {len(inputs)}")
        bound = _binding(wl)
        runner, fconst, iconst, calls = bound
        plan = runner.plan
        hot = runner.hot
        if self.fuse:
            compiled = hot.compiled
            if compiled is not None:
                if calls is None:
                    calls = bound[3] = _Calls(wl, plan, compiled)
                return self._run_compiled(wl, inputs, runner, compiled, calls, fconst, iconst)
            if not hot.started and runner.runs + 1 >= self.hot_after:
                seconds = _hot.HOT_SECONDS if self.hot_seconds is None else self.hot_seconds
                if runner.interpreted >= seconds:
                    hot.start(plan, background=self.fuse != "sync")
                    if hot.compiled is not None:  # compiled on this thread ("sync")
                        return self.run(wl, inputs)
        t0 = time.perf_counter()
        env: dict[int, Any] = {}
        for var, x in zip(wl.inputs, inputs):
            env[var.index] = _checked(var, x)
        for c in wl.consts:
            env[c.index] = c.value
        layouts = plan.layouts
        for r in plan.kernel_inputs:
            a = env[r]
            if type(a) is not np.ndarray or not a.flags.c_contiguous or a.dtype != layouts[r].dtype:
                env[r] = np.ascontiguousarray(a, dtype=layouts[r].dtype)
        arena, owned = runner.acquire()
        try:
            bases = arena.bases
            out = _NO_OUT
            if plan.out_bytes:
                out = np.empty(plan.out_bytes, np.uint8)
            for r in plan.kernel_inputs:
                bases[plan.ext_slot[r]] = _address(env[r])
            for r in plan.arena_inputs:
                arena.views[r][...] = env[r]
            bases[1] = _address(out)
            self._steps(wl, plan, plan.steps, env, bases, arena, out, fconst, iconst)
            results = [self._output(wl, plan, env, arena, out, a, x) for a, x in self._outputs(wl, inputs)]
        finally:
            if owned:
                runner.lock.release()
        runner.runs += 1
        runner.interpreted += time.perf_counter() - t0
        return results

    def _run_compiled(self, wl: Wengert, inputs: Sequence[Any], runner: Runner, compiled: Any, calls: _Calls,
                      fconst: np.ndarray, iconst: np.ndarray) -> list[Any]:  # fmt: skip
        """A compiled plan: its entry point sets the inputs' addresses and single values itself, then runs
        every row (``run_whole``), or the executor's steps run (host steps between compiled runs)."""
        args = list(calls.args)
        split = compiled.run_whole is None
        env: dict[int, Any] = {}
        for (var, shape, dtype, pos, file), x in zip(calls.inputs, inputs):
            if file < 0 and type(x) is np.ndarray and x.shape == shape and x.dtype == dtype:
                a = x if x.flags.c_contiguous else np.ascontiguousarray(x)
            elif file == ops.F64 and type(x) is float and dtype == _F8:
                a = x
            else:
                a = _checked(var, x)
                if file < 0 and pos >= 0 and not a.flags.c_contiguous:
                    a = np.ascontiguousarray(a)
            if split:
                env[var.index] = a
            if pos >= 0:
                args[pos] = a if file < 0 or type(a) is float else _scalar(a, file)
        for pos, c, dtype in calls.copied_consts:  # not a C-contiguous array of its dtype: copied per run
            args[pos] = np.ascontiguousarray(c, dtype=dtype)
        plan = runner.plan
        lock = runner.lock
        owned = lock.acquire(False)
        arena = runner.arena if owned else _Arena(plan)
        if arena is None:
            arena = runner.arena = _Arena(plan)
        try:
            if arena.scratch.shape[0] < compiled.scratch:
                arena.scratch = np.empty(compiled.scratch, np.float64)
            if calls.out_block is not None:
                out = np.empty(*calls.out_block)
            else:
                out = np.empty(plan.out_bytes, np.uint8) if plan.out_bytes else _NO_OUT
            if split:
                for c in wl.consts:
                    env[c.index] = c.value
                compiled.set_inputs(arena.bases, out, *args)
                self._steps(wl, plan, compiled.steps, env, arena.bases, arena, out, fconst, iconst)
            else:
                failed = compiled.run_whole(compiled.tab, fconst, iconst, arena.scratch, arena.bases, out, *args)
                if failed >= 0:
                    v = wl.guards[failed].var.index
                    env = {var.index: _checked(var, x) for var, x in zip(wl.inputs, inputs)}
                    raise GuardFailure(_guard_message(wl, failed, self._obj(plan, env, arena, out, v)))
            results = []
            for kind, what in calls.outputs:
                if kind == _OUT_ARRAY:
                    results.append(out)
                elif kind == _OUT_SLICE:
                    a, b, shape = what
                    results.append(out[a:b].reshape(shape))
                elif kind == _OUT_VIEW:
                    shape, dtype, off, strides = what
                    o = np.ndarray(shape, dtype, buffer=out, offset=off, strides=strides)
                    results.append(o[()] if not shape else o)
                elif kind == _ARENA_VALUE:
                    o = arena.views[what]
                    results.append(o[()] if o.ndim == 0 else o.copy())
                elif kind == _INPUT:
                    results.append(inputs[what])
                elif kind == _VALUE:
                    results.append(what)
                else:  # a host result, or a view of an input or a constant (NumPy's own view of it)
                    if not split:
                        env = {v.index: _checked(v, x) for v, x in zip(wl.inputs, inputs)}
                        env.update((c.index, c.value) for c in wl.consts)
                    results.append(self._output(wl, plan, env, arena, out, what, None))
        finally:
            if owned:
                lock.release()
        runner.runs += 1
        return results

    def _steps(self, wl: Wengert, plan: Plan, steps: list, env: dict, bases: np.ndarray, arena: _Arena,
               out: np.ndarray, fconst: np.ndarray, iconst: np.ndarray) -> None:  # fmt: skip
        run = None
        for step in steps:
            kind = step[0]
            if kind == "hot":
                failed = step[1](step[2], bases, fconst, iconst, arena.scratch, step[3], step[4])
                if failed >= 0:
                    v = wl.guards[failed].var.index
                    raise GuardFailure(_guard_message(wl, failed, self._obj(plan, env, arena, out, v)))
            elif kind == "seg":
                if run is None:
                    run = interp_module().run
                failed = run(plan.prog, fconst, iconst, bases, step[1], step[2])
                if failed >= 0:
                    v = wl.guards[failed].var.index
                    raise GuardFailure(_guard_message(wl, failed, self._obj(plan, env, arena, out, v)))
            elif kind == "host":
                e = wl.eqns[step[1]]
                args = [a.value if type(a) is Lit else self._obj(plan, env, arena, out, a.index) for a in e.ins]
                res = e.prim.impl(*args, **e.params)
                v = e.out.index
                env[v] = res
                if v in plan.kernel_ext:
                    a = np.ascontiguousarray(res, dtype=e.out.dtype)
                    env[("kernel", v)] = a  # keeps the converted array alive for the program
                    bases[plan.ext_slot[v]] = _address(a)
            else:  # a guard checked on the host
                g = wl.guards[step[1]]
                value = self._obj(plan, env, arena, out, g.var.index)
                observed = value.shape[1] if g.kind == "count" else _CONVERT[g.kind](value)
                if observed != g.observed:
                    raise GuardFailure(f"{g} failed: now {observed!r}")

    def _obj(self, plan: Plan, env: dict, arena: _Arena, out: np.ndarray, v: int) -> Any:
        """Variable ``v`` as an array (or the object a host step returned)."""
        o = env.get(v)
        if o is not None:
            return o
        lay = plan.layouts[v]
        kind = plan.root_kind[lay.root]
        if kind == ARENA:
            o = arena.views[v]
        elif kind == OUT:
            isz = lay.dtype.itemsize
            off = plan.root_off[lay.root] + lay.offset * isz
            o = np.ndarray(lay.shape, lay.dtype, buffer=out, offset=off, strides=tuple(s * isz for s in lay.strides))
        else:  # a view of an input, constant or host result: NumPy's own view of it
            e = plan.view_eqn[v]
            o = e.prim.impl(self._obj(plan, env, arena, out, e.ins[0].index), **e.params)
        env[v] = o
        return o

    @staticmethod
    def _outputs(wl: Wengert, inputs: Sequence[Any]) -> list[tuple[Any, Any]]:
        given = {var.index: x for var, x in zip(wl.inputs, inputs)}
        return [(a, given.get(a.index) if a is not None and type(a) is not Lit else None) for a in wl.outputs]

    def _output(self, wl: Wengert, plan: Plan, env: dict, arena: _Arena, out: np.ndarray, a: Any, given: Any) -> Any:
        if a is None:
            return None
        if type(a) is Lit:
            return a.value
        if given is not None:
            return given  # an input returned as it is, as the reference executor does
        if type(a) is Const:
            return a.value
        o = self._obj(plan, env, arena, out, a.index)
        kind = plan.root_kind[plan.layouts[a.index].root]
        if kind == ARENA:  # a single value, read out: the next run overwrites the arena
            return o[()] if o.ndim == 0 else o.copy()
        if kind == EXT and isinstance(o, np.ndarray) and np.may_share_memory(o, arena.buf):
            o = o.copy()  # a host result viewing the arena
        if kind == OUT and o.ndim == 0:
            o = o[()]
        return o
