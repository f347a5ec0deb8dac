"""Tracing: primitives, traces, tracers and ``bind``. Knows nothing about derivatives.

A ``Tracer`` stands for an array inside a running trace. It carries the concrete ``_value`` (an
array, or a tracer of the trace one level below), the ``_trace`` it belongs to, and its ``_var`` in
that trace's Wengert list. Every operation on tracers goes through ``bind(prim, *args, **params)``:

- with no tracer among the arguments it just calls ``prim.impl``;
- otherwise it picks the highest-level trace among the arguments, binds the primitive again on the
  arguments' values one level down (which records the equation in lower traces too, or computes
  it), and appends ``out = prim(args)`` to the top trace; once another trace has started above
  the top one, ``simplify.bind_simplified`` does that step and may reuse an equal equation instead.
  ``bind_into(top, prim, args, params)`` is that step for a known top trace: the levels below are
  entered through it directly (and ``Tracer``'s operators call it), not through ``bind`` again.

Invariants
----------
- Traces nest strictly: a trace's ``level`` is one more than the number of traces active when it
  started, and it is active exactly while its transform runs the user function.
- A tracer is only ever unwrapped by its own trace; a tracer of a lower level is, for a higher
  trace, a constant. That is what keeps nested derivatives apart (no perturbation confusion).
- Values are computed eagerly, so Python control flow sees real numbers; each conversion of a
  traced value to a Python value (``bool``, ``int``, ``index``) is recorded as a ``Guard``.
- Conversions that would silently drop a gradient (``float``, ``.item()``, ``__array__``) raise.
- Every equation is stamped with the reverse sweep that emitted it (``Eqn.phase``: the level of the
  trace ``reverse.backward`` was sweeping, 0 for forward code); an annotation, not structure.

The NumPy-facing surface of ``Tracer`` (operators, methods, ``__array_ufunc__``,
``__array_function__``) is attached by ``numpy_api`` at import, by registration.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import simplify as _simplify
from .errors import EscapedTracerError, TracerConversionError
from .placement import DeviceArray
from .wengert import Const, Eqn, Guard, Lit, Var, Wengert

__all__ = ["Primitive", "Trace", "Tracer", "bind", "bind_into", "new_trace", "ZERO", "identity_vjp"]


class _Zero:
    """Marks an argument whose gradient is identically zero (``floor``, comparisons, indices)."""

    def __repr__(self) -> str:
        return "ZERO"


ZERO = _Zero()


def identity_vjp(g: Any, ans: Any, *args: Any, **params: Any) -> Any:
    """The rule of an argument whose cotangent is the output's, unchanged (``add``, ``astype``, ...).
    The reverse walker recognizes it and passes ``g`` on without calling it."""
    return g


class Primitive:
    """One operation of the closed set that traces are made of.

    ``impl`` computes it on concrete NumPy values. ``vjps`` holds one reverse rule per positional
    argument, ``rule(g, ans, *args, **params) -> contribution`` (``ZERO`` for none, ``None`` for
    not differentiable: an error if reached); ``vjp_all(g, ans, *args, **params) -> tuple`` is an
    alternative joint rule. Forward mode mirrors it: ``jvps`` holds one rule per positional argument,
    ``rule(t, ans, *args, **params) -> contribution`` (``t`` the tangent of that argument), and
    ``jvp_all(ts, ans, *args, **params) -> tangent`` is a joint rule (``ts[i]`` is None for an argument
    without a tangent).
    """

    __slots__ = ("name", "impl", "vjps", "vjp_all", "jvps", "jvp_all", "kind", "__weakref__")

    def __init__(self, name: str, impl: Callable[..., Any], kind: str = "opaque"):
        self.name = name
        self.impl = impl
        self.vjps: tuple = ()
        self.vjp_all: Callable[..., tuple] | None = None
        self.jvps: tuple = ()
        self.jvp_all: Callable[..., Any] | None = None
        self.kind = kind

    def __call__(self, *args: Any, **params: Any) -> Any:
        return bind(self, *args, **params)

    def __repr__(self) -> str:
        return f"<primitive {self.name}>"


# Scoped gradient overrides (``gradjit.gradients``): primitive -> replacement primitive.
OVERRIDES: dict[Primitive, Primitive] = {}

# Active traces, innermost last.
_STACK: list[Trace] = []

# The reverse sweep now running: the level of the trace whose ``reverse.backward`` is executing, 0
# for none. ``Trace.emit`` stamps it on every equation (one global read), so a Wengert list can tell
# the forward equations from those a (possibly nested) ``grad`` emitted while sweeping backwards.
_PHASE = 0

# Debug mode (``gradjit.debug``): a hook ``_DEBUG(trace, eqn)`` called on every emitted equation, or
# None when debug mode is off (one global read per equation; the hook walks the stack, so only then).
_DEBUG: Callable[[Trace, Eqn], None] | None = None


class Trace:
    """One level of recording: an in-progress Wengert list."""

    __slots__ = ("level", "active", "n", "inputs", "consts", "eqns", "guards", "_const_ids", "cse")

    def __init__(self, level: int):
        self.level = level
        self.active = True
        self.n = 0
        self.inputs: list[Var] = []
        self.consts: list[Const] = []
        self.eqns: list[Eqn] = []
        self.guards: list[Guard] = []
        self._const_ids: dict[int, Const] = {}
        self.cse: dict | None = None  # the simplifier's table, once a trace was nested in this one

    def new_input(self, value: Any) -> Tracer:
        if type(value) is float:
            var = Var(self.n, (), _FLOAT64, value)
        else:
            var = Var(self.n, tuple(value.shape), _dtype_of(value), value)
        self.n += 1
        self.inputs.append(var)
        return Tracer(value, self, var)

    def const(self, value: Any) -> Const:
        # A tracer of a lower level is keyed by its variable and stored as a snapshot: in-place
        # operators rebind a tracer object to a new variable, and the recorded constant must keep
        # the value it had when it was used (the reverse sweep reads it later).
        tv = type(value)
        if tv is _F64_SCALAR:  # a concrete float64 scalar (a cotangent in a nested sweep): the common case
            key = id(value)
            c = self._const_ids.get(key)
            if c is None:
                c = Const(self.n, (), _FLOAT64, value)
                self.n += 1
                self.consts.append(c)
                self._const_ids[key] = c
            return c
        is_tracer = tv is Tracer
        if not is_tracer and not isinstance(value, (np.ndarray, np.generic, DeviceArray)):
            value = np.asarray(value)  # keyed after conversion: the array is kept alive, its id stays unique
        key = const_key(value)
        c = self._const_ids.get(key)
        if c is None:
            if is_tracer:
                if not value._trace.active:
                    raise EscapedTracerError(
                        "use of a traced value",
                        "this value belongs to a grad/trace that has already finished",
                        "Return it from the transformed function instead of storing it outside.",
                    )
                value = Tracer(value._value, value._trace, value._var)
            c = Const(self.n, tuple(value.shape), _dtype_of(value), value)
            self.n += 1
            self.consts.append(c)
            self._const_ids[key] = c
        return c

    def emit(self, prim: Primitive, ins: tuple, params: dict, out: Any) -> Tracer:
        # Hot path (every recorded equation): the output's shape and dtype without property calls
        # for the two common kinds of value, a lower-level tracer and a float64 scalar.
        to = type(out)
        if to is Tracer:
            v = out._var
            shape, dtype = v.shape, v.dtype
        elif to is _F64_SCALAR:
            shape, dtype = (), _FLOAT64
        else:
            try:
                shape, dtype = out.shape, out.dtype
            except AttributeError:
                out = np.asarray(out)
                shape, dtype = out.shape, out.dtype
        n = self.n
        var = Var(n, shape, dtype, out)
        self.n = n + 1
        eqn = Eqn(prim, ins, var, params, _PHASE)
        self.eqns.append(eqn)
        if _DEBUG is not None:
            _DEBUG(self, eqn)
        return Tracer(out, self, var)

    def guard(self, kind: str, var: Var, observed: Any) -> None:
        self.guards.append(Guard(kind, var, observed, len(self.eqns)))

    def to_wengert(self, outputs: list[Any], out_tree: Any = None) -> Wengert:
        if self.cse is not None and not self.active:
            # A finished simplified trace is finalized: the code its sweeps left dead is dropped from the
            # trace itself (guards renumbered in place), so calling this again gives the same list.
            self.eqns = _simplify.dead_code(self.eqns, outputs, self.guards)
            self.consts = _simplify.used_consts(self.consts, self.eqns, outputs, self.guards)
        return Wengert(
            list(self.inputs), list(self.consts), list(self.eqns), outputs, list(self.guards), out_tree, self.level
        )


def const_key(value: Any) -> int:
    """The key ``Trace.const`` files a constant under: a lower-level tracer's variable, else the object."""
    return id(value._var) if type(value) is Tracer else id(value)


def _dtype_of(value: Any) -> np.dtype:
    if type(value) is Tracer:
        return value._var.dtype
    dt = getattr(value, "dtype", None)
    return dt if dt is not None else np.result_type(value)


class new_trace:
    """Context manager: start a trace one level above the active ones."""

    __slots__ = ("trace",)

    def __enter__(self) -> Trace:
        if _STACK and _simplify.ENABLED:
            for t in _STACK:  # the traces below will receive this one's sweeps: simplify them
                if t.cse is None:
                    _simplify.enable(t)
        self.trace = Trace(len(_STACK) + 1)
        _STACK.append(self.trace)
        return self.trace

    def __exit__(self, *exc: Any) -> None:
        self.trace.active = False
        _STACK.remove(self.trace)


_PY_SCALARS = (float, int, bool)
_FLOAT64 = np.dtype(np.float64)
_F64_SCALAR = np.float64


def bind(prim: Primitive, *args: Any, **params: Any) -> Any:
    """Apply ``prim``: record it in the highest active trace among ``args``, or just compute it."""
    top = None
    for a in args:
        if type(a) is Tracer:
            t = a._trace
            if top is None or t.level > top.level:
                top = t
    if OVERRIDES:
        prim = OVERRIDES.get(prim, prim)
    if top is None:
        return prim.impl(*args, **params)
    return bind_into(top, prim, args, params)


def bind_into(top: Trace, prim: Primitive, args: Any, params: dict) -> Tracer:
    """``bind`` once the highest trace among ``args`` is known to be ``top`` (``prim`` already
    overridden): record ``prim`` there, computing it one level down first.

    The values one level down are collected in the same pass, together with the highest trace
    among them, so the levels below are entered directly rather than through ``bind`` again.
    """
    if not top.active:
        raise EscapedTracerError(
            prim.name,
            "an argument belongs to a grad/trace that has already finished",
            "Return traced values from the transformed function instead of storing them outside.",
        )
    if top.cse is not None:  # a trace with another nested in it: see ``simplify``
        return _simplify.bind_simplified(top, prim, args, params)
    # One pass builds both the equation's atoms and the values one level down (hot path).
    ins = []
    vals = []
    below = None
    for a in args:
        ta = type(a)
        if ta is Tracer:
            if a._trace is top:
                ins.append(a._var)
                a = a._value
            else:
                ins.append(top.const(a))
            if type(a) is Tracer:
                t = a._trace
                if below is None or t.level > below.level:
                    below = t
        elif ta in _PY_SCALARS:
            ins.append(Lit(a))
        else:
            ins.append(top.const(a))
        vals.append(a)
    if below is None:
        out = prim.impl(*vals, **params)
    else:
        out = bind_into(below, OVERRIDES.get(prim, prim) if OVERRIDES else prim, vals, params)
    return top.emit(prim, tuple(ins), params, out)


def _conversion_error(what: str, advice: str) -> TracerConversionError:
    return TracerConversionError(
        what, "this would turn a traced value into a constant and silently drop its gradient", advice
    )


_FLOAT_ADVICE = (
    "Keep computing with NumPy operations on the traced value (np.sin, not math.sin). For control "
    "flow use a comparison (`if x > 0:`) or int(); to stop a gradient on purpose use "
    "gradjit.stop_gradient(x)."
)


class Tracer:
    """An array-like value being traced. Behaves like an ``ndarray`` for NumPy code."""

    __slots__ = ("_value", "_trace", "_var", "_view")
    __array_priority__ = 1000

    def __init__(self, value: Any, trace: Trace, var: Var):
        self._value = value
        self._trace = trace
        self._var = var
        self._view = None  # (base tracer, index) when made by basic indexing

    # -- abstract value -------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self._var.shape

    @property
    def dtype(self) -> np.dtype:
        return self._var.dtype

    @property
    def ndim(self) -> int:
        return len(self._var.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self._var.shape, dtype=np.int64))

    def __len__(self) -> int:
        if not self._var.shape:
            raise TypeError("len() of unsized object (a 0-d traced array)")
        return self._var.shape[0]

    # -- conversions: control flow is allowed and guarded, gradient-dropping ones raise ---
    def _guarded(self, kind: str, convert: Callable[[Any], Any]) -> Any:
        v = convert(self._value)  # a lower-level tracer guards its own level first
        self._trace.guard(kind, self._var, v)
        return v

    def __bool__(self) -> bool:
        return self._guarded("bool", bool)

    def __int__(self) -> int:
        return self._guarded("int", int)

    def __index__(self) -> int:
        if self.dtype.kind not in "iub":
            raise TypeError(
                f"only integer traced values can be used as an index, not {self.dtype}; use int(x) to convert"
            )
        return self._guarded("index", lambda v: v.__index__())

    def __float__(self) -> float:
        if self.dtype.kind in "iub":
            return self._guarded("float", float)
        raise _conversion_error("float() (or a math-module function, or storing into a NumPy array)", _FLOAT_ADVICE)

    def __complex__(self) -> complex:
        raise _conversion_error("complex()", _FLOAT_ADVICE)

    def item(self, *args: Any) -> Any:
        if self.dtype.kind in "iub":
            return self._guarded("item", lambda v: v.item(*args))
        raise _conversion_error(".item()", _FLOAT_ADVICE)

    def tolist(self) -> Any:
        if self.dtype.kind in "iub":
            return self._guarded("tolist", lambda v: np.asarray(_concrete(v)).tolist())
        raise _conversion_error(".tolist()", "Keep the value an array; index it (x[0]) or use np.split/unstack.")

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if self.dtype.kind in "iub":
            # Integer/boolean values carry no gradient: converting them (a plain array indexed by
            # traced indices, np.take(table, idx)) is control flow, guarded like int().
            v = self._value
            v = v.__array__() if type(v) is Tracer else np.asarray(v)  # lower levels guard themselves
            self._trace.guard("tolist", self._var, v.tolist())
            return v if dtype is None else v.astype(dtype, copy=False)
        raise _conversion_error(
            "np.asarray / np.array / storing into a NumPy array",
            "To build an array from traced values use np.stack([x, y]) or np.concatenate; to set "
            "entries, start from a traced array (y = np.zeros(3) * x ... or y = np.stack(...)) and "
            "assign into it: traced index assignment is recorded.",
        )

    def __repr__(self) -> str:
        return f"Traced<{self.dtype}{list(self.shape)}>({_concrete(self._value)!r})"

    def __str__(self) -> str:
        return str(_concrete(self._value))

    def __format__(self, spec: str) -> str:
        return format(_concrete(self._value), spec)

    __hash__ = None  # like ndarray: == is elementwise


def _concrete(x: Any) -> Any:
    """The innermost concrete value of a (possibly nested) tracer; for display only."""
    while type(x) is Tracer:
        x = x._value
    return x


def concrete(x: Any) -> Any:
    return _concrete(x)
