"""Simplification of nested traces: common subexpressions, algebraic identities and dead code.

``grad`` nested k times records, in each outer trace, the reverse sweeps of every trace inside it.
Those sweeps re-emit the same products over and over (the rule of ``tanh`` is ``g * (1 - ans*ans)``
at every level), multiply by the seed ``1``, and leave forward values nobody reads; unsimplified, the
order-k list grows about 2.7x per order. This module keeps the growth down, at emission time (so the
work one level down is saved too, not only the equation) and when a list is finalized.

What it does
------------
- **Common subexpressions** (hash-consing): ``bind_simplified`` keys an equation by its primitive,
  its input atoms and its params; if that key was already emitted in the trace it returns a tracer of
  the existing output instead of computing and recording it again. The check comes before the value
  is computed one level down, so a hit costs a dictionary lookup at every level below it too. ``add``
  and ``mul`` are keyed with their operands in a canonical order.
- **Identities** that are exact in IEEE arithmetic for every value (inf and NaN included): ``x*1``,
  ``1*x``, ``x/1``, ``x-0`` (``0`` not ``-0.0``), ``neg(neg(x))``, ``astype`` to ``x``'s dtype,
  ``reshape``/``broadcast_to`` to ``x``'s shape, the identity ``transpose``. ``1`` is a Python literal
  (when ``x`` is a float) or a reverse-sweep seed (``one(dtype)``, read-only) or a view of one (a
  reduction's cotangent), as long as it does not broadcast ``x`` to a bigger shape. Rewrites that
  hold only for finite values (``x*0 -> 0``; ``x+0 -> x`` turns ``-0.0`` into ``+0.0``) are not made.
- **Dead code**: ``dead_code`` drops equations that neither an output nor a guard depends on, with
  the guards' positions renumbered; ``Trace.to_wengert`` applies it to simplified traces.
- **Constant folding** needs nothing here: ``bind`` computes an operation whose arguments are all
  constants of a trace without recording it there.

When it applies
---------------
A trace is simplified from the moment another trace starts above it (``enable``, called by
``tracing.new_trace``; equations recorded before that are entered into the table then): only then
does it receive other transforms' sweeps. A trace with nothing nested inside it, like the one of a
first-order ``grad`` or of ``make_wengert(f)``, records exactly what the function did, at the cost
of one attribute test per operation. ``gradjit.config.simplify = False`` turns it off for transforms
started afterwards (tests compare both ways).

Invariants
----------
- Every rewrite holds for all values of the trace's inputs, not only the traced ones: lists are
  replayed on other inputs (executors, ``jit``, linear maps), so nothing depends on a value except
  that of a Python literal (part of the program) or of a seed (a read-only constant of gradjit's).
- Only built-in primitives are merged; a user primitive (``kind == "user"``) may be impure and is
  always recorded and always kept.
- Input atoms are keyed by identity: the same ``Var``, the same ``Const`` (a captured array is one
  ``Const`` per array object; a constant that is a lower-level tracer is also keyed by the variable
  it stands for right now, since in-place operators rebind tracers), and literals by type and value
  (``-0.0`` apart from ``0.0``). Two different constants are never merged, even if equal. A
  captured array is assumed not to change while the function is traced (constants are read by
  reference anyway: the reverse sweep and replays see its current contents).
- An equation whose params cannot be keyed exactly (arrays, unhashable objects) is not merged.
- A simplified result is a new ``Tracer`` of an existing variable, never an argument object itself,
  so an in-place operator on it cannot rebind another tracer.
- The table ``Trace.cse`` maps ``(prim, atom keys)`` or ``(prim, atom keys, param keys)`` to a
  ``Var`` of the trace (``checkpoint`` drops entries that mention variables it cuts out).
- The seed ``one(dtype)`` is shared and read-only; ``grad`` copies it where it would be returned.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import tracing
from .wengert import Const, Eqn, Guard, Lit, Var

__all__ = ["ENABLED", "enable", "bind_simplified", "dead_code", "one"]

# Whether traces get simplified (``gradjit.config.simplify``); read when a transform starts inside another.
ENABLED = True

_ONES: dict[np.dtype, np.ndarray] = {}


def one(dtype: Any) -> np.ndarray:
    """The read-only 0-d array ``1`` of ``dtype``: the seed of reverse sweeps, known to be one."""
    dt = np.dtype(dtype)
    a = _ONES.get(dt)
    if a is None:
        a = np.ones((), dtype=dt)
        a.flags.writeable = False
        _ONES[dt] = a
    return a


def is_one_seed(x: Any) -> bool:
    """True for the array made by ``one`` (identity, not value: user arrays are never assumed one)."""
    return type(x) is np.ndarray and _ONES.get(x.dtype) is x


def enable(trace: Any) -> None:
    """Start simplifying ``trace``: enter the equations it already holds into its table."""
    if not _COMMUTATIVE:
        _init()
    table: dict = {}
    Tracer = tracing.Tracer
    for e in trace.eqns:
        if any(type(a) is Const and type(a.value) is Tracer for a in e.ins):
            continue  # which variable that tracer stood for when recorded is no longer known
        key = _key(e.prim, e.ins, e.params)
        if key is not None:
            table.setdefault(key, e.out)
            _note_inverse(table, e)
    trace.cse = table


# ---------------------------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------------------------
class _Unkeyable(Exception):
    pass


_NoneType = type(None)
_COMMUTATIVE: frozenset = frozenset()  # the add and mul primitives (``_init``)


def _atom_key(a: Any) -> Any:
    t = type(a)
    if t is Var:
        return a
    v = a.value
    if t is Lit:
        tv = type(v)
        return (tv, v) if v or tv is not float else (tv, v, math.copysign(1.0, v))
    # A Const: one per captured object; a lower-level tracer can be rebound by an in-place operator.
    return (a, v._var) if type(v) is tracing.Tracer else a


def _param_key(v: Any) -> Any:
    t = type(v)
    if t is tuple or t is list:
        return (t, tuple(_param_key(e) for e in v))
    if t is float:
        return (t, v, math.copysign(1.0, v)) if v == 0.0 else (t, v)
    if t is int or t is bool or t is str or t is _NoneType:
        return (t, v)
    if t is slice:
        return (t, _param_key(v.start), _param_key(v.stop), _param_key(v.step))
    if isinstance(v, np.ndarray):
        raise _Unkeyable
    try:
        hash(v)
    except TypeError:
        raise _Unkeyable from None
    return (t, v)  # dtypes, Ellipsis, placeholders, NumPy scalars, functions


def _key(prim: Any, ins: tuple, params: dict) -> tuple | None:
    """The CSE key of ``prim(*ins, **params)``, or None when it must not be merged."""
    if prim.kind == "user":
        return None
    # Unrolled for one and two inputs (most equations): this runs for every equation of a nested trace.
    n = len(ins)
    if n == 2:
        k0, k1 = ins
        if type(k0) is not Var:
            k0 = _atom_key(k0)
        if type(k1) is not Var:
            k1 = _atom_key(k1)
        if prim in _COMMUTATIVE and _swapped(k0, k1):
            atoms = (k1, k0)
        else:
            atoms = (k0, k1)
    elif n == 1:
        k0 = ins[0]
        atoms = (k0 if type(k0) is Var else _atom_key(k0),)
    else:
        atoms = tuple([_atom_key(a) for a in ins])
    if not params:
        return (prim, atoms)
    try:
        pk = tuple([(k, _param_key(v)) for k, v in params.items()])
    except _Unkeyable:
        return None
    return (prim, atoms, pk)


def _swapped(k0: Any, k1: Any) -> bool:
    """Whether the keys of a commutative operation's operands go in the other order. Any fixed order
    will do: two variables by index (what ``bind_simplified``'s fast path compares), else by hash."""
    if type(k0) is Var and type(k1) is Var:
        return k1.index < k0.index
    return hash(k1) < hash(k0)


def _outside_atom(top: Any, x: Any) -> tuple[Any, Any]:
    """The atom and key of an argument that is not a tracer: a literal for a Python scalar (keyed by
    type and value, ``-0.0`` apart), else a constant of ``top`` (its own key)."""
    tx = type(x)
    if tx is float or tx is int or tx is bool:
        return Lit(x), ((tx, x) if x or tx is not float else (tx, x, math.copysign(1.0, x)))
    c = top.const(x)
    return c, c


def _note_inverse(table: dict, eqn: Eqn) -> None:
    """After ``y = neg x``, ``neg y`` is ``x``: enter that into the table."""
    if eqn.prim is _NEG and type(eqn.ins[0]) is Var and not eqn.params:
        table.setdefault((eqn.prim, (eqn.out,)), eqn.ins[0])


# ---------------------------------------------------------------------------------------------
# Identities
# ---------------------------------------------------------------------------------------------
def _is_one(a: Any, x: Var) -> bool:
    """``a`` is a one that leaves float ``x`` unchanged in shape and dtype when multiplied in."""
    t = type(a)
    if t is Lit:
        v = a.value
        return (type(v) is float or type(v) is int) and v == 1
    if t is not Const:
        return False
    v = a.value
    if type(v) is not np.ndarray or v.dtype != x.dtype:
        return False
    seed = _ONES.get(v.dtype)
    if v is seed:
        return True
    # A view of the seed (a reduction's cotangent is np.broadcast_to(seed, shape)): every element is
    # one, and read-only; it must not broadcast x to a bigger shape.
    return seed is not None and v.base is seed and np.broadcast_shapes(x.shape, v.shape) == x.shape


def _mul_identity(ins: tuple, params: dict) -> Var | None:
    x, y = ins
    tx, ty = type(x), type(y)
    if tx is Var:
        if ty is Var:
            return None  # the common case, decided at once
        if x.dtype.kind == "f" and _is_one(y, x):
            return x
    if ty is Var and y.dtype.kind == "f" and _is_one(x, y):
        return y
    return None


def _div_identity(ins: tuple, params: dict) -> Var | None:
    x, y = ins
    return x if type(x) is Var and type(y) is not Var and x.dtype.kind == "f" and _is_one(y, x) else None


def _sub_identity(ins: tuple, params: dict) -> Var | None:
    x, y = ins
    if type(x) is Var and type(y) is Lit and x.dtype.kind == "f":
        v = y.value
        # x - 0.0 is x for every x (-0.0 - 0.0 is -0.0); x - (-0.0) is not (for x = -0.0).
        if (type(v) is int and v == 0) or (type(v) is float and v == 0.0 and math.copysign(1.0, v) > 0):
            return x
    return None


def _astype_identity(ins: tuple, params: dict) -> Var | None:
    x = ins[0]
    return x if type(x) is Var and len(ins) == 1 and params.get("dtype") == x.dtype else None


def _shape_identity(ins: tuple, params: dict) -> Var | None:
    x = ins[0]
    shape = params.get("shape")
    return x if type(x) is Var and len(ins) == 1 and shape is not None and tuple(shape) == x.shape else None


def _transpose_identity(ins: tuple, params: dict) -> Var | None:
    x = ins[0]
    axes = params.get("axes")
    if type(x) is Var and len(ins) == 1 and axes is not None:
        return x if tuple(axes) == tuple(range(len(x.shape))) else None
    return None


# primitive name -> fn(ins, params) -> the input variable the equation equals, or None.
_IDENTITY_RULES = {
    "mul": _mul_identity,
    "div": _div_identity,
    "sub": _sub_identity,
    "astype": _astype_identity,
    "reshape": _shape_identity,
    "broadcast_to": _shape_identity,
    "transpose": _transpose_identity,
}
# Those that can hold when every input is a variable (mul, div and sub need a literal or constant).
_PLAIN_IDENTITY_RULES = ("astype", "reshape", "broadcast_to", "transpose")


# ---------------------------------------------------------------------------------------------
# Emission
# ---------------------------------------------------------------------------------------------
def bind_simplified(top: Any, prim: Any, args: Any, params: dict) -> Any:
    """``bind`` into a simplified trace ``top``: reuse an equal equation, forward an identity, or
    compute one level down and record (``tracing.bind_into``'s loop, with the key built from the
    same atoms). This runs once per operation and level of a nested ``grad``: keep it lean."""
    Tracer = _Tracer
    table = top.cse
    ins = None
    if not params and prim.kind != "user":
        # Fast path: one or two arguments, all tracers of ``top`` (nearly every operation a reverse
        # sweep performs). The atoms are their own keys; no identity applies to two variables.
        n = len(args)
        if n == 2:
            a, b = args
            if type(a) is Tracer and type(b) is Tracer and a._trace is top and b._trace is top:
                va = a._var
                vb = b._var
                ins = (va, vb)
                key = (prim, (vb, va) if vb.index < va.index and prim in _COMMUTATIVE else ins)
                var = table.get(key)
                if var is not None:
                    return Tracer(var.value, top, var)
                a = a._value
                b = b._value
                vals = (a, b)
                below = a._trace if type(a) is Tracer else None
                if type(b) is Tracer and (below is None or b._trace.level > below.level):
                    below = b._trace
            elif type(a) is Tracer and a._trace is top and type(b) is not Tracer:
                # A variable and a literal or constant (x * c, a concrete cotangent in a sweep): the
                # general path's keys and identities, without its lists.
                va = a._var
                ob, kb = _outside_atom(top, b)
                ins = (va, ob)
                key = (prim, (kb, va) if prim in _COMMUTATIVE and _swapped(va, kb) else (va, kb))
                var = table.get(key)
                if var is None:
                    rule = _IDENTITIES.get(prim)
                    if rule is not None:
                        var = rule(ins, params)
                if var is not None:
                    return Tracer(var.value, top, var)
                a = a._value
                vals = (a, b)
                below = a._trace if type(a) is Tracer else None
            elif type(b) is Tracer and b._trace is top and type(a) is not Tracer:
                vb = b._var
                oa, ka = _outside_atom(top, a)
                ins = (oa, vb)
                key = (prim, (vb, ka) if prim in _COMMUTATIVE and _swapped(ka, vb) else (ka, vb))
                var = table.get(key)
                if var is None:
                    rule = _IDENTITIES.get(prim)
                    if rule is not None:
                        var = rule(ins, params)
                if var is not None:
                    return Tracer(var.value, top, var)
                b = b._value
                vals = (a, b)
                below = b._trace if type(b) is Tracer else None
        elif n == 1:
            a = args[0]
            if type(a) is Tracer and a._trace is top:
                ins = (a._var,)
                key = (prim, ins)
                var = table.get(key)
                if var is not None:
                    return Tracer(var.value, top, var)
                a = a._value
                vals = (a,)
                below = a._trace if type(a) is Tracer else None
    if ins is None:  # the general path
        ins = []
        vals = []
        keys = []  # the atoms' keys (``_atom_key``), built in the same pass
        plain = True  # every atom is a Var of ``top``
        below = None  # the highest trace among the values one level down
        for a in args:
            ta = type(a)
            if ta is Tracer:
                if a._trace is top:
                    v = a._var
                    ins.append(v)
                    keys.append(v)
                    a = a._value
                else:  # a lower-level tracer is a constant here, and can be rebound by an in-place operator
                    c = top.const(a)
                    ins.append(c)
                    keys.append((c, a._var))
                    plain = False
                if type(a) is Tracer:
                    t = a._trace
                    if below is None or t.level > below.level:
                        below = t
            elif ta is float or ta is int or ta is bool:
                ins.append(Lit(a))
                keys.append((ta, a) if a or ta is not float else (ta, a, math.copysign(1.0, a)))
                plain = False
            else:
                c = top.const(a)
                ins.append(c)
                keys.append(c)
                plain = False
            vals.append(a)
        ins = tuple(ins)
        key = None
        if prim.kind != "user":
            if len(keys) == 2 and prim in _COMMUTATIVE and _swapped(keys[0], keys[1]):
                keys.reverse()
            if not params:
                key = (prim, tuple(keys))
            else:
                try:
                    key = (prim, tuple(keys), tuple([(k, _param_key(v)) for k, v in params.items()]))
                except _Unkeyable:
                    key = None
            if key is not None:
                try:
                    var = table.get(key)
                except TypeError:  # a param whose hash() raises after all
                    key = var = None
                if var is not None:
                    return Tracer(var.value, top, var)
                # mul/div/sub identities need a literal or constant operand: skipped for plain atoms.
                rule = (_IDENTITIES_PLAIN if plain else _IDENTITIES).get(prim)
                if rule is not None:
                    var = rule(ins, params)
                    if var is not None:
                        return Tracer(var.value, top, var)
    # A miss: compute one level down (``below``, the highest trace among ``vals``; None for concrete
    # values), record in ``top`` and enter the key.
    if below is None:
        fast = _SCALAR_IMPLS.get(prim)
        out = fast(*vals) if fast is not None else prim.impl(*vals, **params)
    else:
        prim_below = _OVERRIDES.get(prim, prim) if _OVERRIDES else prim
        if below.cse is not None and below.active:  # ``bind_into``'s dispatch, one call saved per level
            out = bind_simplified(below, prim_below, vals, params)
        else:
            out = _bind_into(below, prim_below, vals, params)
    if type(top) is not _Trace:  # a trace kind with its own emit (Taylor, jit, checkpoint regions)
        result = top.emit(prim, ins, params, out)
        var = result._var
    else:  # ``Trace.emit``, inlined (hot path)
        to = type(out)
        if to is Tracer:
            v = out._var
            var = Var(top.n, v.shape, v.dtype, out)
        elif to is _F64_SCALAR:
            var = Var(top.n, (), _FLOAT64, out)
        else:
            try:
                shape, dtype = out.shape, out.dtype
            except AttributeError:
                out = np.asarray(out)
                shape, dtype = out.shape, out.dtype
            var = Var(top.n, shape, dtype, out)
        top.n += 1
        eqn = Eqn(prim, ins, var, params, tracing._PHASE)
        top.eqns.append(eqn)
        if tracing._DEBUG is not None:
            tracing._DEBUG(top, eqn)
        result = Tracer(out, top, var)
    if key is not None:
        table[key] = var
        if prim is _NEG:
            _note_inverse(table, top.eqns[-1])
    return result


# ---------------------------------------------------------------------------------------------
# Scalar arithmetic at the bottom of a nested trace
# ---------------------------------------------------------------------------------------------
# A nested ``grad`` of a scalar function ends each of its operations on float64 scalars, where a
# NumPy ufunc call costs ~0.4 us and the arithmetic ~0.03 us. These compute add, sub, mul, div and
# neg of two float64 scalars (``np.float64`` or ``float``) with Python's float arithmetic, which is
# the same IEEE double operation, so the value is the ufunc's bit for bit, returned as the ufunc
# returns it (an ``np.float64``). A result that may have raised a floating-point exception in NumPy
# (overflow, invalid, division by zero, underflow: anything but a finite normal number, or for
# add/sub a finite one, whose tiny results are exact) is computed again by the ufunc, so NumPy's
# warnings and ``np.errstate`` behave exactly as before. Any other argument goes to the ufunc.
_INF = math.inf
_MIN_NORMAL = 2.2250738585072014e-308
_fadd, _fsub, _fmul, _ftruediv = float.__add__, float.__sub__, float.__mul__, float.__truediv__


def _add_f64(x: Any, y: Any) -> Any:
    tx, ty = type(x), type(y)
    if (tx is _F64_SCALAR or tx is float) and (ty is _F64_SCALAR or ty is float):
        r = _fadd(x, y)
        if -_INF < r < _INF:
            return _F64_SCALAR(r)
    return np.add(x, y)


def _sub_f64(x: Any, y: Any) -> Any:
    tx, ty = type(x), type(y)
    if (tx is _F64_SCALAR or tx is float) and (ty is _F64_SCALAR or ty is float):
        r = _fsub(x, y)
        if -_INF < r < _INF:
            return _F64_SCALAR(r)
    return np.subtract(x, y)


def _mul_f64(x: Any, y: Any) -> Any:
    tx, ty = type(x), type(y)
    if (tx is _F64_SCALAR or tx is float) and (ty is _F64_SCALAR or ty is float):
        r = _fmul(x, y)
        if _MIN_NORMAL <= abs(r) < _INF:
            return _F64_SCALAR(r)
    return np.multiply(x, y)


def _div_f64(x: Any, y: Any) -> Any:
    tx, ty = type(x), type(y)
    if (tx is _F64_SCALAR or tx is float) and (ty is _F64_SCALAR or ty is float) and y != 0.0:
        r = _ftruediv(x, y)
        if _MIN_NORMAL <= abs(r) < _INF:
            return _F64_SCALAR(r)
    return np.true_divide(x, y)


def _neg_f64(x: Any) -> Any:
    tx = type(x)
    if tx is _F64_SCALAR or tx is float:
        return _F64_SCALAR(-float(x))  # a sign flip: exact, never an exception (NaN included)
    return np.negative(x)


_SCALAR_IMPL_FNS = {"add": _add_f64, "sub": _sub_f64, "mul": _mul_f64, "div": _div_f64, "neg": _neg_f64}
_SCALAR_IMPLS: dict = {}  # primitive -> the function above (``_init``)
BASE_UFUNCS = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.true_divide, "neg": np.negative}


# ---------------------------------------------------------------------------------------------
# Dead code
# ---------------------------------------------------------------------------------------------
def dead_code(eqns: list[Eqn], outputs: list[Any], guards: list[Guard]) -> list[Eqn]:
    """The equations an output or a guard depends on (and every user primitive, which may be impure),
    in order. The guards' positions are renumbered in place to count kept equations only (the same
    ``Guard`` objects: callers keep per-guard notes by identity); the result is a fixed point."""
    live: set[int] = set()
    for a in outputs:
        if isinstance(a, Var):
            live.add(a.index)
    for g in guards:
        live.add(g.var.index)
    keep = [False] * len(eqns)
    for i in range(len(eqns) - 1, -1, -1):
        e = eqns[i]
        if e.out.index in live or e.prim.kind == "user":
            keep[i] = True
            for a in e.ins:
                if isinstance(a, Var):
                    live.add(a.index)
    if all(keep):
        return list(eqns)
    # Position p (p equations recorded before the guard) becomes the number of those kept.
    kept_before = [0]
    for k in keep:
        kept_before.append(kept_before[-1] + k)
    for g in guards:
        g.position = kept_before[min(g.position, len(eqns))]
    return [e for e, k in zip(eqns, keep) if k]


def used_consts(consts: list[Const], eqns: list[Eqn], outputs: list[Any], guards: list[Guard]) -> list[Const]:
    """The constants that ``eqns``, ``outputs`` or ``guards`` still refer to."""
    used: set[int] = {a.index for e in eqns for a in e.ins if type(a) is Const}
    used.update(a.index for a in outputs if type(a) is Const)
    used.update(g.var.index for g in guards if type(g.var) is Const)
    return [c for c in consts if c.index in used]


def _init() -> None:
    """Fill in the primitive sets (primitives imports tracing, which imports this module)."""
    global _COMMUTATIVE, _NEG, _Tracer, _Trace, _bind_into, _OVERRIDES
    from .primitives import PRIMITIVES

    _Tracer = tracing.Tracer
    _Trace = tracing.Trace
    _bind_into = tracing.bind_into
    _OVERRIDES = tracing.OVERRIDES  # mutated in place by ``gradjit.gradients``, never rebound
    _COMMUTATIVE = frozenset(PRIMITIVES[n] for n in ("add", "mul"))
    _NEG = PRIMITIVES["neg"]
    _IDENTITIES.update({PRIMITIVES[n]: rule for n, rule in _IDENTITY_RULES.items()})
    _IDENTITIES_PLAIN.update({PRIMITIVES[n]: _IDENTITY_RULES[n] for n in _PLAIN_IDENTITY_RULES})
    for n, fn in _SCALAR_IMPL_FNS.items():
        if PRIMITIVES[n].impl is not BASE_UFUNCS[n]:
            raise AssertionError(f"simplify: the {n} primitive is no longer np.{BASE_UFUNCS[n].__name__}")
        _SCALAR_IMPLS[PRIMITIVES[n]] = fn


_IDENTITIES: dict = {}  # primitive -> identity rule (``_init``)
_IDENTITIES_PLAIN: dict = {}  # the rules that can apply when every input is a variable (``_init``)
_NEG: Any = None
_Tracer: Any = None  # tracing.Tracer and tracing.bind_into (``_init``: tracing imports this module)
_Trace: Any = None
_bind_into: Any = None
_OVERRIDES: Any = None
_FLOAT64 = np.dtype(np.float64)
_F64_SCALAR = np.float64
