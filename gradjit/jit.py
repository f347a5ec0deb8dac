"""``jit(fn)``: trace once per argument signature, replay the Wengert list, guard every assumption.

    fast = gj.jit(gj.grad(f))
    fast(3.0, 2.0, 1.0)        # traces f (and its reverse sweep) into a Wengert list
    fast(3.5, 2.1, 1.1)        # runs the stored list on an executor; f's Python does not run
    print(fast.explain())      # variants, guards, captured values, hits

The first call with a new **signature** traces ``fn`` (a trace one level above none: ``jit`` under an
active transform just calls ``fn``, see below) and returns the values computed while tracing. The
signature is the argument pytree's structure, the shape and dtype of every array leaf, and the value
of every static leaf:

- Python ``float`` leaves and ``ndarray``/NumPy-scalar leaves of float, integer or boolean dtype are
  **inputs** of the list: read at every call. Integer and boolean arrays (labels, index arrays) are
  inputs too, not static, so a new minibatch of labels does not re-trace; no transform differentiates
  them (``grad`` only differentiates its own float inputs), and any Python value taken from them is
  guarded like any other.
- ``int``, ``bool``, ``str``, ``None`` and other hashable leaves are **static**: their values are
  part of the signature (a new value is a new signature). Unhashable leaves and complex/object
  arrays make the call run uncompiled.

Later calls with that signature skip ``fn`` and run a stored **variant** (a Wengert list with its
guards and captured environment, see ``capture``) through an executor (``executor=`` or
``gradjit.config.executor``). A variant is valid while (1) its captured environment still matches
(``capture.Binding.collect``) and (2) every guard recorded while tracing (each ``bool``/``int``/
index/count a traced value was turned into) still holds; the executor checks guards as it computes
them and raises ``GuardFailure``. Either failure moves on to the signature's next variant (most
recently successful first), and when none fits, ``fn`` is traced again and the new path stored as
one more variant. Never a stale answer: a call returns a variant's result only if every assumption
the variant was built on held.

Variants are capped per jitted function (``max_variants``, default 8; new signatures count too).
Past the cap, calls that match no stored variant run ``fn`` uncompiled, and gradjit warns once
(``VariantLimitWarning``), naming the guard that kept changing: its kind, the user's source line,
the values observed.

Invariants
----------
- ``jit`` never changes what ``fn`` returns: values, pytree structure and Python types are those of
  an un-jitted call (a ``float`` stays a ``float``: ``grad``'s ``like_leaf`` tells the trace which
  outputs must come back as which type).
- Under an active trace (``grad(jit(f))``, ``jit`` inside a jitted or differentiated function) or in
  debug mode (``gradjit.debug_nans``), ``fn`` is simply called: the enclosing trace records it.
- Python side effects (``print``, appending to a list, counters) happen only when ``fn`` is traced.
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from . import pytree, tracing
from .capture import Binding, scan
from .config import config
from .errors import GradjitError, TracerConversionError, UnsupportedOperationError, user_line
from .placement import DeviceArray
from .tracing import OVERRIDES, Trace, Tracer, concrete
from .wengert import Guard, Lit, Wengert, aval_str

__all__ = ["jit", "Jitted", "VariantLimitWarning", "JitOutputError"]

_STACK = tracing._STACK  # the active traces (the list object itself, mutated in place)
_CONTAINERS = (tuple, list, dict)
_INPUT_KINDS = "fiub"


class JitOutputError(GradjitError, TypeError):
    """A jitted function returned something that cannot be replayed (a function, an object)."""


class VariantLimitWarning(UserWarning):
    """A jitted function reached its variant cap; calls that match no variant now run uncompiled."""


# ---------------------------------------------------------------------------------------------
# The trace jit records into
# ---------------------------------------------------------------------------------------------
class _JitTrace(Trace):
    """A trace that also remembers where each guard was taken and which outputs ``like_leaf`` typed."""

    __slots__ = ("wheres", "like")

    def __init__(self, level: int):
        super().__init__(level)
        self.wheres: list[str] = []  # the user's source line of each guard, parallel to self.guards
        self.like: dict[tuple, Any] = {}  # output -> conversion to the type an un-jitted call returns

    def guard(self, kind: str, var: Any, observed: Any) -> None:
        super().guard(kind, var, observed)
        self.wheres.append(user_line())

    def note_like_leaf(self, value: Any, leaf: Tracer) -> None:
        """``pytree.like_leaf(value, leaf)`` on a traced leaf: an un-jitted call would return ``value``
        in ``leaf``'s type (``float`` for a float argument), so the output must come back that way."""
        if type(value) is Tracer:
            if value._trace is self:
                self.like[("v", value._var.index)] = _conversion(concrete(leaf))
        else:  # a gradient that does not depend on the inputs: a plain array
            self.like[("id", id(value))] = (value, _conversion(concrete(leaf)))

    def like_conversion(self, leaf: Any) -> Callable[[Any], Any] | None:
        if type(leaf) is Tracer:
            return self.like.get(("v", leaf._var.index))
        entry = self.like.get(("id", id(leaf)))
        return entry[1] if entry is not None and entry[0] is leaf else None

    def guard_wheres(self, guards: list[Guard]) -> list[str | None]:
        """Source lines for a list's guards (``to_wengert`` may renumber them, never reorder or drop)."""
        if len(guards) == len(self.wheres):
            return list(self.wheres)
        return [None] * len(guards)


def _conversion(example: Any) -> Callable[[Any], Any]:
    """A function giving an executor's output the Python type of ``example``."""
    t = type(example)
    if t is float or t is int or t is bool:
        return t
    if isinstance(example, np.generic):
        return lambda v: v if type(v) is t else t(v)
    if t is DeviceArray:
        return _identity  # the device executor's results stay on the device
    return _as_array


def _as_array(v: Any) -> Any:
    return v if type(v) is np.ndarray else np.asarray(v)


def _name(fn: Any) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


def _describe_leaf(leaf: Any) -> str:
    if type(leaf) is Tracer:
        return "a traced value of another transform"
    name = getattr(leaf, "__qualname__", None)
    return f"a {type(leaf).__name__}" + (f" ({name})" if name else "")


def _static(obj: Any) -> Callable[[Any], Any]:
    return lambda _: obj


def _identity(v: Any) -> Any:
    return v


# ---------------------------------------------------------------------------------------------
# Signatures
# ---------------------------------------------------------------------------------------------
_FLOAT = ("float",)
_UNSUPPORTED = object()


def _leaf_key(x: Any) -> Any:
    t = type(x)
    if t is float:
        return _FLOAT
    if t is np.ndarray or isinstance(x, (np.ndarray, np.generic, DeviceArray)):
        return (t, x.shape, x.dtype)
    if t is Tracer:
        return _UNSUPPORTED
    try:
        hash(x)
    except TypeError:
        return _UNSUPPORTED
    return (t, x)


def _is_input(x: Any) -> bool:
    return type(x) is float or (isinstance(x, (np.ndarray, np.generic, DeviceArray)) and x.dtype.kind in _INPUT_KINDS)


def _paths(tree: Any, prefix: str) -> list[str]:
    """Leaf names in ``pytree.flatten`` order: ``args[0]['W']``."""
    t = type(tree)
    if t is tuple or t is list or (isinstance(tree, tuple) and hasattr(t, "_fields")):
        return [p for i, c in enumerate(tree) for p in _paths(c, f"{prefix}[{i}]")]
    if isinstance(tree, dict):
        return [p for k in pytree._sorted_keys(tree) for p in _paths(tree[k], f"{prefix}[{k!r}]")]
    return [prefix]


def _leaf_desc(k: Any) -> str:
    if k is _FLOAT:
        return "float"
    if isinstance(k, tuple) and len(k) == 3 and isinstance(k[2], np.dtype):
        text = aval_str(k[1], k[2])
        return text if k[0] is np.ndarray else f"{k[0].__name__} {text}"
    return f"{k[0].__name__} {k[1]!r}" if isinstance(k, tuple) and len(k) == 2 else repr(k)


def _signature_change(old: tuple, new: tuple, old_names: list[str], names: list[str]) -> tuple:
    """(label, old, new, None) for the first difference between two signatures (``names``: leaf paths)."""
    (otd, okeys, _), (ntd, nkeys, nov) = old, new
    if otd != ntd:
        return ("argument structure", f"({', '.join(old_names)})", f"({', '.join(names)})", None)
    for name, a, b in zip(names, okeys, nkeys):
        if a == b:
            continue
        if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b) == 3 and a[0] is b[0]:
            if a[1] != b[1]:
                return (f"shape of {name}", a[1], b[1], None)
            return (f"dtype of {name}", str(a[2]), str(b[2]), None)
        if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b) == 2 and a[0] is b[0]:
            return (f"static argument {name}", a[1], b[1], None)
        return (f"type of {name}", _leaf_desc(a), _leaf_desc(b), None)
    return ("gradient overrides (gradjit.gradients)", "outside", "inside" if nov else "outside", None)


# ---------------------------------------------------------------------------------------------
# Variants
# ---------------------------------------------------------------------------------------------
class _Variant:
    """One traced path: the list, what it captured, how to rebuild outputs, and its statistics."""

    __slots__ = ("number", "wl", "bindings", "convs", "out_td", "flat_tuple", "hits", "wheres", "consts", "mode")

    def __init__(self, number: int, wl: Wengert, bindings: list[Binding], convs: list, out_td: Any, wheres: list):
        self.number = number
        self.wl = wl
        self.bindings = bindings
        self.convs = convs
        self.out_td = out_td
        self.flat_tuple = out_td.kind == "tuple" and all(c.kind == "leaf" for c in out_td.children)
        self.hits = 0
        self.wheres = wheres  # the user's source line of each guard, parallel to wl.guards
        self.consts = [_const_origin(c.value) for c in wl.consts]
        self.mode = "lifted" if all(s[0] != "ref" for b in bindings for s in b.slots) else "snapshot"

    def collect(self, inputs: list) -> tuple[str, str] | None:
        """Append the captured inputs; ``(where, why)`` for the first captured value that changed."""
        for b in self.bindings:
            why = b.collect(inputs)
            if why is not None:
                return (b.where, why)
        return None

    def build(self, outs: list) -> Any:
        vals = [c(o) for c, o in zip(self.convs, outs)]
        kind = self.out_td.kind
        if kind == "leaf":
            return vals[0]
        if self.flat_tuple:
            return tuple(vals)
        return pytree.unflatten(self.out_td, vals)


def _const_origin(value: Any) -> str:
    """Whether a constant array is shared with the outside (read by reference) or was made while tracing."""
    if isinstance(value, Tracer):
        return "a value of an enclosing trace"
    # References: the Const's slot, this frame's argument, getrefcount's own argument.
    if sys.getrefcount(value) > 3:
        return "held outside the function: read by reference (in-place changes are seen)"
    base = getattr(value, "base", None)
    if base is not None and sys.getrefcount(base) > 3:
        return "a view of an array held outside the function: read by reference"
    return "made while tracing from untraced data: frozen in this variant"


class _Entry:
    """The variants of one signature, most recently successful first."""

    __slots__ = ("input_pos", "names", "variants", "calls")

    def __init__(self, input_pos: list[int], names: list[str]):
        self.input_pos = input_pos
        self.names = names  # the argument leaves' paths, args[0]['W']
        self.variants: list[_Variant] = []
        self.calls = 0


_EXECUTORS: dict[str, Any] = {}


def _executor(name: str) -> Any:
    ex = _EXECUTORS.get(name)
    if ex is None:
        from .kernels import get_executor

        ex = _EXECUTORS[name] = get_executor(name, interactive=True)  # never waits for a compile
    return ex


def _guard_failure_type() -> type:
    from .kernels.reference import GuardFailure

    return GuardFailure


# ---------------------------------------------------------------------------------------------
# The jitted function
# ---------------------------------------------------------------------------------------------
class Jitted:
    """``jit(fn)``: call it like ``fn``; ``explain()`` shows what it stored; ``stats`` counts calls."""

    def __init__(self, fn: Callable, max_variants: int = 8, executor: str | None = None):
        if not callable(fn):
            raise TypeError(f"jit: expected a function, got {type(fn).__name__}")
        if isinstance(max_variants, bool) or not isinstance(max_variants, int) or max_variants < 1:
            raise ValueError(f"jit: max_variants must be a positive int, got {max_variants!r}")
        functools.update_wrapper(self, fn)
        self.__gradjit_fn__ = fn
        self.fn = fn
        self.max_variants = max_variants
        self.executor = executor
        if executor is not None:
            _executor(executor)  # an unknown name fails here, not at the second call
        self._entries: dict[tuple, _Entry] = {}
        self._order: list[tuple] = []  # signature keys in first-seen order (for explain)
        self._n_variants = 0
        self._last_key: tuple | None = None
        self._changes: dict[str, _Change] = {}  # what made calls re-trace, by label
        self._warned = False
        self._guard_failure = _guard_failure_type()
        self.stats = {"calls": 0, "hits": 0, "traces": 0, "retraces": 0, "uncompiled": 0, "guard_failures": 0}

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        return self if obj is None else functools.partial(self, obj)

    def __repr__(self) -> str:
        return f"<jit({getattr(self.fn, '__name__', self.fn)!s}): {self._n_variants} variant(s)>"

    # -- calls -------------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if _STACK or tracing._DEBUG is not None:
            return self.fn(*args, **kwargs)
        stats = self.stats
        stats["calls"] += 1
        # Positional leaves only (the common case) skip pytree.flatten: the key's first part says which.
        leaves, td = args, len(args)
        if kwargs:
            leaves, td = pytree.flatten((args, kwargs))
        else:
            for a in args:
                if type(a) in _CONTAINERS or isinstance(a, _CONTAINERS):
                    leaves, td = pytree.flatten((args, kwargs))
                    break
        keys = tuple([_FLOAT if type(x) is float else _leaf_key(x) for x in leaves])
        if _UNSUPPORTED in keys:
            stats["uncompiled"] += 1
            return self.fn(*args, **kwargs)
        key = (td, keys, tuple(OVERRIDES.items()) if OVERRIDES else ())
        entry = self._entries.get(key)
        failed: tuple[_Variant, tuple | None] | None = None
        if entry is not None:
            entry.calls += 1
            name = self.executor or ("cuda" if any(type(x) is DeviceArray for x in leaves) else config.executor)
            ex = _EXECUTORS.get(name) or _executor(name)
            for v in entry.variants if not self._warned else entry.variants[:1]:
                inputs = [leaves[i] for i in entry.input_pos]
                if v.bindings:
                    why = v.collect(inputs)
                    if why is not None:
                        failed = failed or (v, why)
                        continue
                try:
                    outs = ex.run(v.wl, inputs)
                except self._guard_failure:
                    stats["guard_failures"] += 1
                    failed = failed or (v, None)
                    continue
                except Exception:
                    # The un-jitted call raises the same error with the user's line (or, if an
                    # executor is at fault, returns the right value).
                    stats["uncompiled"] += 1
                    return self.fn(*args, **kwargs)
                v.hits += 1
                stats["hits"] += 1
                if v is not entry.variants[0]:
                    entry.variants.remove(v)
                    entry.variants.insert(0, v)
                self._last_key = key
                return v.build(outs)
        return self._miss(args, kwargs, key, leaves, td, entry, failed)

    def _miss(
        self, args: tuple, kwargs: dict, key: tuple, leaves: list, td: Any, entry: _Entry | None, failed: Any
    ) -> Any:
        if self._warned:
            self.stats["uncompiled"] += 1
            return self.fn(*args, **kwargs)
        input_pos = entry.input_pos if entry is not None else [i for i, x in enumerate(leaves) if _is_input(x)]
        if any(isinstance(x, np.ndarray) and x.dtype.kind not in _INPUT_KINDS for x in leaves):
            self.stats["uncompiled"] += 1  # complex/object/string arrays: not traced by jit
            return self.fn(*args, **kwargs)
        if type(td) is int:  # the positional fast path: the real treedef, for unflattening tracers
            leaves, td = pytree.flatten((args, kwargs))
        variant, out = self._trace(td, leaves, input_pos)
        self.stats["traces"] += 1
        change = self._note_change(key, failed, variant, args, kwargs)
        if self._n_variants >= self.max_variants:
            self._warn(change)
            self.stats["uncompiled"] += 1
            return out
        if entry is None:
            entry = self._entries[key] = _Entry(input_pos, _paths(args, "args") + _paths(kwargs, "kwargs"))
            self._order.append(key)
        elif failed is not None:
            self.stats["retraces"] += 1
        self._n_variants += 1
        variant.number = self._n_variants
        entry.variants.insert(0, variant)
        self._last_key = key
        return out

    # -- tracing -----------------------------------------------------------------------------
    def _trace(self, td: Any, leaves: list, input_pos: list[int]) -> tuple[_Variant, Any]:
        bindings = scan(self.fn, lift=True)
        try:
            return self._trace_once(td, leaves, input_pos, bindings)
        except (TracerConversionError, UnsupportedOperationError):
            if not any(b.lifted for b in bindings):
                raise
        # A captured array could not be traced (np.asarray(W), float(W[0]), a library call): trace
        # again with captured arrays as plain constants, each compared with a snapshot at every call.
        return self._trace_once(td, leaves, input_pos, scan(self.fn, lift=False))

    def _trace_once(self, td: Any, leaves: list, input_pos: list[int], bindings: list[Binding]) -> tuple[_Variant, Any]:
        trace = _JitTrace(len(_STACK) + 1)
        _STACK.append(trace)
        lifted: list[Binding] = []
        try:
            new_leaves = list(leaves)
            for i in input_pos:
                new_leaves[i] = trace.new_input(leaves[i])
            try:
                for b in bindings:
                    b.lift(trace)
                    lifted.append(b)
                targs, tkwargs = pytree.unflatten(td, new_leaves)
                out = self.fn(*targs, **tkwargs)
            finally:
                for b in reversed(lifted):
                    b.restore()
        finally:
            trace.active = False
            _STACK.remove(trace)
        out_leaves, out_td = pytree.flatten(out)
        atoms, convs, values = [], [], []
        for leaf in out_leaves:
            if type(leaf) is Tracer and leaf._trace is trace:
                conv = trace.like_conversion(leaf) or _conversion(leaf._value)
                atoms.append(leaf._var)
                values.append(conv(leaf._value))
            elif type(leaf) in (float, int, bool):
                conv = _identity
                atoms.append(Lit(leaf))
                values.append(leaf)
            elif isinstance(leaf, (np.ndarray, np.generic, DeviceArray)):
                conv = trace.like_conversion(leaf) or _identity
                atoms.append(trace.const(leaf))
                values.append(conv(leaf))
            elif isinstance(leaf, (str, bytes, complex, type(None))):  # constants of the variant
                conv = _static(leaf)
                atoms.append(None)
                values.append(leaf)
            else:  # a function (a vjp closure), a model object, a tracer: replaying it would be stale
                raise JitOutputError(
                    f"jit({_name(self.fn)})",
                    f"the function returned {_describe_leaf(leaf)} (output leaf {len(convs)}); a jitted "
                    "function can return arrays, scalars, strings and None, in lists, tuples and dicts",
                    "Return the values instead (call vjp_fn inside the jitted function), or call the "
                    "function without jit.",
                )
            convs.append(conv)
        for b in bindings:
            b.settle()
        wl = trace.to_wengert(atoms, out_td)
        # The list keeps shapes and dtypes; the first call's intermediate values are not kept alive.
        for var in wl.inputs:
            var.value = None
        for e in wl.eqns:
            e.out.value = None
        variant = _Variant(0, wl, [b for b in bindings], convs, out_td, trace.guard_wheres(wl.guards))
        result = values[0] if out_td.kind == "leaf" else pytree.unflatten(out_td, values)
        return variant, result

    # -- what changed, and the cap's warning -------------------------------------------------
    def _note_change(self, key: tuple, failed: Any, new: _Variant, args: tuple, kwargs: dict) -> _Change | None:
        """Record what made this call need a new trace (the variant cap's warning names the most frequent)."""
        if failed is not None:
            old, why = failed
            found = ("captured " + why[0], None, why[1], None) if why is not None else _guard_change(old, new)
        elif self._last_key is not None and key != self._last_key:
            names = _paths(args, "args") + _paths(kwargs, "kwargs")
            found = _signature_change(self._last_key, key, self._entries[self._last_key].names, names)
        else:
            return None
        if found is None:
            return None
        label, a, b, evaluation = found
        change = self._changes.get(label)
        if change is None:
            change = self._changes[label] = _Change(label)
        change.add(a, b, evaluation)
        return change

    def _warn(self, change: _Change | None) -> None:
        self._warned = True
        name = _name(self.fn)
        worst = max(self._changes.values(), key=lambda c: c.count, default=None)
        if change is not None and worst is not None and change.count >= worst.count:
            worst = change
        what = (
            f"The guard that keeps changing: {worst.text()}"
            if worst is not None
            else "No single guard was identified as changing"
        )
        warnings.warn(
            f"jit({name}): {self._n_variants} variants reached max_variants={self.max_variants}; calls that "
            f"match no stored variant now run uncompiled. {what}. Make that value an argument (an array "
            "leaf is read at every call; an int is part of the signature), move the branch out of the "
            "jitted function, or raise max_variants.",
            VariantLimitWarning,
            stacklevel=4,  # the user's call of the jitted function
        )

    def _on_device(self) -> bool:
        """Whether a stored signature has device-array arguments (they run on the 'cuda' executor)."""
        return any(type(k) is tuple and k and k[0] is DeviceArray for key in self._order for k in key[1])

    # -- explain -----------------------------------------------------------------------------
    def explain(self) -> Explanation:
        """A readable listing of signatures, variants, guards, captured values and counts."""
        name = _name(self.fn)
        s = self.stats
        lines = [
            f"jit({name}): {s['calls']} calls, {s['hits']} compiled hits, {s['traces']} traces "
            f"({s['retraces']} after a guard or captured value changed), {s['uncompiled']} uncompiled calls; "
            f"{self._n_variants}/{self.max_variants} variants, executor {self.executor or config.executor!r}"
            + (" ('cuda' for device arrays)" if not self.executor and self._on_device() else "")
        ]
        if self._warned:
            lines.append("  variant cap reached: calls that match no stored variant run uncompiled")
        for n, key in enumerate(self._order, 1):
            entry = self._entries[key]
            td, keys, overrides = key
            sig = ", ".join(_leaf_desc(k) for k in keys)
            lines.append(f"signature {n}: ({sig}){'  [with gradient overrides]' if overrides else ''}")
            lines.append(f"  {entry.calls + 1} calls, {len(entry.variants)} variant(s), most recently successful first")
            for v in entry.variants:
                lines.extend("  " + line for line in _describe_variant(v))
        if self._changes:
            lines.append("what made calls trace again:")
            lines.extend(f"  {c.text()}, {c.count} time(s)" for c in self._changes.values())
        return Explanation("\n".join(lines))


class Explanation(str):
    """``explain()``'s text; shown as is in a REPL or notebook."""

    def __repr__(self) -> str:
        return str(self)


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe_variant(v: _Variant) -> list[str]:
    wl = v.wl
    out = [
        f"variant {v.number}: {v.hits} hits; {len(wl.inputs)} input(s), {len(wl.eqns)} equation(s), "
        f"{len(wl.guards)} guard(s), structural hash {wl.structural_hash()[:12]}"
    ]
    if wl.guards:
        out.append("  guards:")
        i, gs = 0, wl.guards
        while i < len(gs):  # a run of equal guards from one line (a loop) is shown once, with its count
            j = i + 1
            same = (v.wheres[i], gs[i].kind, gs[i].observed)
            while j < len(gs) and (v.wheres[j], gs[j].kind, gs[j].observed) == same:
                j += 1
            text = str(gs[i]) if j - i == 1 else f"{gs[i]}  (x{j - i}, through {gs[j - 1].var!r})"
            out.append(f"    {text}" + (f"   at {v.wheres[i]}" if v.wheres[i] else ""))
            i = j
    captured = [line for b in v.bindings for line in b.describe()]
    if captured:
        out.append("  captured:")
        out.extend(f"    {line}" for line in captured)
    if wl.consts:
        out.append("  constants:")
        for c, origin in zip(wl.consts, v.consts):
            out.append(f"    {c!r}: {aval_str(c.shape, c.dtype)}, {origin}")
    return out


class _Change:
    """One thing that made calls trace again: a guard (by source line), an argument, a captured value."""

    __slots__ = ("label", "observed", "count", "evaluations")

    def __init__(self, label: str):
        self.label = label
        self.observed: list = []  # distinct values, in the order first seen
        self.count = 0
        self.evaluations: list[int] = []  # for a guard: which evaluation of its line changed

    def add(self, old: Any, new: Any, evaluation: int | None) -> None:
        self.count += 1
        for v in (old, new):
            if v is not None and v not in self.observed:
                self.observed.append(v)
        if evaluation is not None and evaluation not in self.evaluations:
            self.evaluations.append(evaluation)

    def text(self) -> str:
        shown = ", ".join(_short(v) for v in self.observed[:6]) + (", ..." if len(self.observed) > 6 else "")
        out = f"{self.label} (observed {shown}"
        if any(e > 1 for e in self.evaluations):  # a loop: the line's n-th evaluation changed
            nth = ", ".join(str(e) for e in sorted(self.evaluations)[:8])
            out += f"; changed at evaluation {nth} of that line"
        return out + ")"


def _guard_change(old: _Variant, new: _Variant) -> tuple | None:
    """The first guard that differs between two variants: (label, old value, new value, evaluation)."""
    og, ng = old.wl.guards, new.wl.guards
    n = min(len(og), len(ng))
    i = next(
        (
            k
            for k in range(n)
            if (og[k].kind, og[k].position, og[k].var.index, og[k].observed)
            != (ng[k].kind, ng[k].position, ng[k].var.index, ng[k].observed)
        ),
        n if len(og) != len(ng) else None,
    )
    if i is None:
        return None
    guards, wheres = (ng, new.wheres) if i < len(ng) else (og, old.wheres)
    g, where = guards[i], wheres[i]
    evaluation = 1 + sum(1 for k in range(i) if wheres[k] == where and guards[k].kind == g.kind)
    label = f"{g.kind} guard at {where or 'an unknown line'}"
    return (label, og[i].observed if i < len(og) else None, ng[i].observed if i < len(ng) else None, evaluation)


def jit(fn: Callable | None = None, max_variants: int = 8, executor: str | None = None) -> Any:
    """Compile ``fn``: trace once per argument signature, replay the Wengert list on later calls.

    Guards keep it correct under Python control flow on traced values (a changed branch, loop trip
    count or ``int()`` re-traces and stores another variant); arrays captured from closures and
    globals are read at every call. ``executor`` names a ``gradjit.kernels`` executor (default:
    ``gradjit.config.executor``). Usable as ``@jit`` or ``@jit(max_variants=4)``.
    """
    if fn is None:
        return lambda f: Jitted(f, max_variants, executor)
    return Jitted(fn, max_variants, executor)
