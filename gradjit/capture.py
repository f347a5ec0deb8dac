"""What a jitted function reads from outside its arguments: closure cells and module globals.

``jit`` skips the Python function on later calls, so whatever the function read from its
environment must be re-read (arrays) or re-checked (everything else) at every call. ``scan(fn)``
finds those reads statically: the closure cells of ``fn`` and the globals its code (and the code of
the lambdas and comprehensions inside it) loads by name, then recursively the same for the Python
functions found there (helpers, ``functools.partial``/``wraps`` targets, the ``f`` inside
``grad(f)``). Library code (NumPy, the standard library, site-packages) is not scanned; gradjit's
own wrappers are only followed (their cells lead to the user's function), never captured.

Each captured name becomes a ``Binding`` whose value is flattened like an argument pytree, one slot
per leaf:

- ``in``: an int/float/bool ``ndarray``; *lifted*: while tracing, the binding is temporarily swapped
  for a tracer (an input of the Wengert list), and at every later call the current array is read and
  fed to the executor. So in-place changes and rebinding are both seen, arithmetic on it inside the
  function (``W * 2``) is recorded rather than frozen, and control flow on it is guarded.
- ``eq``: a Python/NumPy scalar, string or ``None``: a constant of the variant; checked for equality at
  every call (a change re-traces).
- ``is``: any other object (functions, model objects, ...): checked for identity at every call
  (rebinding a helper re-traces); arrays reached through its attributes are read by reference only.
- ``ref``: the conservative mode (``lift=False``, used when tracing a lifted array failed, e.g.
  ``np.asarray(W)`` on a captured float array): identity plus a content comparison with a snapshot.

Invariant: if ``Binding.collect`` accepts the current environment, running the stored list on the
collected inputs computes what the function would compute now (up to what is documented in
docs/design.md, "jit and guards": attributes of objects, other modules' globals, random numbers).
"""

from __future__ import annotations

import dis
import functools
import os
import sysconfig
import types
from collections.abc import Callable
from typing import Any

import numpy as np

from . import pytree
from .errors import _is_internal
from .tracing import Trace, Tracer

__all__ = ["Binding", "scan"]

_MAX_DEPTH = 6  # how far helpers of helpers are followed
_MAX_LEAVES = 64  # a larger captured container is checked by identity only (not flattened per call)
_MISSING = object()
_LIFT_KINDS = "fiub"
_STATIC = (float, int, bool, complex, str, bytes, type(None), np.generic)

_LIBRARY_DIRS = tuple(
    os.path.abspath(p) + os.sep
    for p in {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
)


def _is_library(filename: str) -> bool:
    return filename.startswith("<frozen") or os.path.abspath(filename).startswith(_LIBRARY_DIRS)


def _global_names(code: types.CodeType) -> list[str]:
    """Names loaded as globals by ``code`` and the code objects nested in it, in first-use order."""
    names: dict[str, None] = {}
    stack = [code]
    while stack:
        c = stack.pop()
        for ins in dis.get_instructions(c):
            if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
                names.setdefault(ins.argval)
        stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    return list(names)


def _skip(value: Any) -> bool:
    """Values not worth checking: modules, classes, builtins and ufuncs do not change under a function."""
    return isinstance(value, (types.ModuleType, type, types.BuiltinFunctionType, np.ufunc))


class Binding:
    """One name the function reads from outside: a closure cell or an entry of a globals dict."""

    __slots__ = (
        "where", "owner", "name", "is_cell", "td", "slots", "single", "lifted", "written", "_saved", "_swapped",
    )  # fmt: skip

    def __init__(self, where: str, owner: Any, name: str, is_cell: bool, value: Any, lift: bool):
        self.where = where
        self.owner = owner
        self.name = name
        self.is_cell = is_cell
        leaves, td = pytree.flatten(value)
        if td.kind != "leaf" and len(leaves) > _MAX_LEAVES:
            leaves, td = [value], pytree.flatten(None)[1]
            self.slots = [("is", value)]
        else:
            self.slots = [_slot(x, lift) for x in leaves]
        self.td = td
        self.single = td.kind == "leaf"
        self.lifted = sum(1 for s in self.slots if s[0] == "in")
        self.written = False
        self._saved = _MISSING
        self._swapped = None

    def read(self) -> Any:
        if self.is_cell:
            try:
                return self.owner.cell_contents
            except ValueError:  # an empty cell
                return _MISSING
        return self.owner.get(self.name, _MISSING)

    def _write(self, value: Any) -> None:
        if self.is_cell:
            self.owner.cell_contents = value
        else:
            self.owner[self.name] = value

    def collect(self, inputs: list) -> str | None:
        """Append the lifted arrays' current values to ``inputs``; a reason string if anything changed."""
        if self.written:
            return None
        v = self.read()
        if self.single:
            return _check(self.slots[0], v, inputs, self)
        if v is _MISSING:
            return f"{self.where} is no longer defined"
        leaves, td = pytree.flatten(v)
        if td != self.td:
            return f"the structure of {self.where} changed"
        for slot, x in zip(self.slots, leaves):
            why = _check(slot, x, inputs, self)
            if why is not None:
                return why
        return None

    # -- tracing: swap lifted arrays for tracers, and back ---------------------------------------
    def lift(self, trace: Trace) -> None:
        """Replace the binding's arrays by inputs of ``trace`` (call ``restore`` afterwards)."""
        if not self.lifted:
            return
        value = self.read()
        leaves, td = pytree.flatten(value)
        new = [trace.new_input(x) if s[0] == "in" else x for s, x in zip(self.slots, leaves)]
        swapped = new[0] if self.single else pytree.unflatten(td, new)
        self._saved, self._swapped = value, swapped
        self._write(swapped)

    def restore(self) -> None:
        if self._saved is _MISSING:
            return
        if self.read() is self._swapped:  # the function did not rebind it itself (`global W; W = ...`)
            self._write(self._saved)
        self._saved, self._swapped = _MISSING, None

    def settle(self) -> None:
        """After tracing: a value the function itself changed (``log.append(x)``, ``nonlocal n; n += 1``)
        is a side effect. Side effects are not replayed, so it is neither checked nor lifted."""
        if not self.lifted and self.collect([]) is not None:
            self.written = True

    def describe(self) -> list[str]:
        """Lines for ``explain()``: what is captured and how it is checked."""
        if self.written:
            return [f"{self.where}: changed by the function while tracing (a side effect: not replayed, not checked)"]
        out = []
        for i, (kind, payload) in enumerate(self.slots):
            where = self.where if self.single else f"{self.where} (leaf {i})"
            if kind == "in":
                _, shape, dtype = payload
                out.append(f"{where}: {_aval(shape, dtype)} array, lifted: read at every call")
            elif kind == "eq":
                out.append(f"{where} = {payload!r}: a constant of this variant (a change re-traces)")
            elif kind == "ref":
                obj = payload[0]
                out.append(f"{where}: {_aval(obj.shape, obj.dtype)} array, compared with a snapshot at every call")
            else:
                out.append(f"{where}: {_short(payload)}, checked for identity at every call")
        return out


def _aval(shape: tuple, dtype: np.dtype) -> str:
    from .wengert import aval_str

    return aval_str(tuple(shape), np.dtype(dtype))


def _short(x: Any) -> str:
    name = getattr(x, "__qualname__", None) or getattr(x, "__name__", None)
    return f"{type(x).__name__} {name}" if name else f"a {type(x).__name__} object"


def _slot(x: Any, lift: bool) -> tuple:
    t = type(x)
    if isinstance(x, np.ndarray):
        if lift and x.dtype.kind in _LIFT_KINDS:
            return ("in", (t, x.shape, x.dtype))
        return ("ref", (x, np.array(x, copy=True)))
    if isinstance(x, _STATIC):
        return ("eq", x)
    return ("is", x)


def _check(slot: tuple, x: Any, inputs: list, b: Binding) -> str | None:
    kind, p = slot
    if kind == "in":
        if type(x) is p[0] and x.shape == p[1] and x.dtype == p[2]:
            inputs.append(x)
            return None
        if x is _MISSING:
            return f"{b.where} is no longer defined"
        if not isinstance(x, np.ndarray):
            return f"{b.where} is now a {type(x).__name__}, not an array"
        return f"{b.where} changed from {_aval(p[1], p[2])} to {_aval(x.shape, x.dtype)}"
    if kind == "eq":
        if x is p or (type(x) is type(p) and x == p):
            return None
        return f"{b.where} changed: {p!r} -> {x!r}" if x is not _MISSING else f"{b.where} is no longer defined"
    if kind == "is":
        return None if x is p else f"{b.where} was rebound"
    obj, snap = p  # "ref"
    if x is obj and np.array_equal(x, snap, equal_nan=x.dtype.kind in "fc"):
        return None
    return f"{b.where} changed (its contents differ from the snapshot taken when tracing)"


def _follow(value: Any) -> list[Callable]:
    """Functions reachable from ``value`` that may read captured state."""
    if isinstance(value, functools.partial):
        return [value.func]
    if isinstance(value, types.MethodType):
        return [value.__func__]
    out = []
    wrapped = getattr(value, "__wrapped__", None)
    if wrapped is not None:
        out.append(wrapped)
    inner = getattr(value, "__gradjit_fn__", None)  # a jitted function: its Python function
    if inner is not None:
        out.append(inner)
    if isinstance(value, types.FunctionType):
        out.append(value)
    return out


def scan(fn: Callable, lift: bool = True) -> list[Binding]:
    """The bindings ``fn`` reads (see the module docstring), parents before the helpers they lead to."""
    bindings: list[Binding] = []
    seen_fns: set[int] = set()
    seen_names: set[tuple[int, str]] = set()
    stack: list[tuple[Any, int]] = [(f, 0) for f in reversed(_follow(fn))]
    while stack:
        f, depth = stack.pop()
        if id(f) in seen_fns or depth > _MAX_DEPTH:
            continue
        seen_fns.add(id(f))
        if not isinstance(f, types.FunctionType):
            stack.extend((g, depth + 1) for g in _follow(f))
            continue
        code = f.__code__
        if _is_library(code.co_filename):
            continue
        user = not _is_internal(os.path.abspath(code.co_filename))
        found: list[tuple[str, Any, str, bool, Any]] = []
        for name, cell in zip(code.co_freevars, f.__closure__ or ()):
            try:
                value = cell.cell_contents
            except ValueError:
                continue
            found.append((f"closure variable '{name}' of {f.__qualname__}", cell, name, True, value))
        if user:
            g = f.__globals__
            module = g.get("__name__", "?")
            for name in _global_names(code):
                if name in g:
                    found.append((f"global '{name}' of module {module}", g, name, False, g[name]))
        children = []
        for where, owner, name, is_cell, value in found:
            if _skip(value):
                continue
            if user:
                key = (id(owner), name)
                if key not in seen_names:
                    seen_names.add(key)
                    bindings.append(Binding(where, owner, name, is_cell, value, lift))
            children.extend(_follow(value) if not isinstance(value, Tracer) else ())
        # depth-first, in the order found (the stack pops the last pushed first)
        stack.extend((c, depth + 1) for c in reversed(children))
        stack.extend((g2, depth + 1) for g2 in reversed(_follow(f)) if g2 is not f)
    return bindings
