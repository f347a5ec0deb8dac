"""The Wengert list: gradjit's intermediate representation.

A Wengert list is a flat, ordered record of what a traced function did:

- ``inputs``: the variables the trace was started on (one per differentiable leaf);
- ``consts``: arrays that entered from outside (closures, globals, values of an outer trace);
- ``eqns``: ``out = prim(in0, in1, ..., **params)`` in program order, single output each;
- ``guards``: every place a traced value became a Python value (``bool``, ``int``, index), with the
  value observed and the position in the program where it happened;
- ``outputs``: the atoms returned.

Invariants
----------
- Every variable is defined before it is used; ``Var.index`` numbers inputs, constants and
  equation outputs together in definition order (``check()`` verifies this).
- Variables carry their shape and dtype. Literals (Python scalars) are inlined in equations.
- Equality and ``hash()`` are *structural*: they compare primitives, params, shapes, dtypes and the
  wiring, and ignore the values of inputs, constants and literals. Two calls of the same function
  on same-shaped data give equal lists; this is the cache key for compiled sweeps.
- Records hold runtime values (``value``) only so that the reverse sweep and executors can find
  them; values never take part in equality, hashing or printing of the structure.
- Equations carry two annotations that are not structure either: ``phase`` (which reverse sweep
  emitted them; it follows from the program and the transforms applied, and two lists that compute
  the same thing must share a cache key however they were produced) and ``where`` (the user's
  source line, recorded in debug mode and where errors need it).

Printing: ``str()`` gives one equation a line, with a marker line where the sweep changes;
``_repr_html_`` (a table, for notebooks), ``to_dot()`` and ``render()`` live in ``gradjit.display``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

__all__ = ["Var", "Const", "Lit", "Eqn", "Guard", "Wengert", "Atom", "sweep_label"]

_DTYPE_SHORT = {
    "float64": "f64",
    "float32": "f32",
    "float16": "f16",
    "int64": "i64",
    "int32": "i32",
    "int16": "i16",
    "int8": "i8",
    "uint8": "u8",
    "bool": "bool",
    "complex128": "c128",
    "complex64": "c64",
}


def aval_str(shape: tuple[int, ...], dtype: np.dtype) -> str:
    """``f64[3,4]``: the short type the printed list uses."""
    name = _DTYPE_SHORT.get(str(dtype), str(dtype))
    return f"{name}[{','.join(map(str, shape))}]"


class Var:
    """A value computed inside the trace: an input or an equation's output."""

    __slots__ = ("index", "shape", "dtype", "value")

    def __init__(self, index: int, shape: tuple[int, ...], dtype: np.dtype, value: Any = None):
        self.index = index
        self.shape = shape
        self.dtype = dtype
        self.value = value

    def key(self) -> tuple:
        return ("v", self.index)

    def __repr__(self) -> str:
        return f"v{self.index}"


class Const(Var):
    """An array (or outer-trace value) that entered the trace from outside; read at each run."""

    __slots__ = ()

    def key(self) -> tuple:
        return ("c", self.index)

    def __repr__(self) -> str:
        return f"c{self.index}"


class Lit:
    """A Python scalar inlined into an equation. Its value is not part of the structure."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    @property
    def shape(self) -> tuple[int, ...]:
        return ()

    @property
    def dtype(self) -> np.dtype:
        return np.result_type(self.value)

    def key(self) -> tuple:
        return ("lit", type(self.value).__name__)

    def __repr__(self) -> str:
        return repr(self.value)


Atom = Var | Lit


def _freeze(x: Any) -> Any:
    """A hashable, deterministic stand-in for a parameter value."""
    if isinstance(x, (tuple, list)):
        return tuple(_freeze(e) for e in x)
    if isinstance(x, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in x.items()))
    if isinstance(x, slice):
        return ("slice", x.start, x.stop, x.step)
    if isinstance(x, np.dtype) or (isinstance(x, type) and issubclass(x, np.generic)):
        return ("dtype", str(np.dtype(x)))
    if x is Ellipsis:
        return "..."
    if isinstance(x, np.ndarray):
        return ("array", x.shape, str(x.dtype))
    if callable(x):
        return ("fn", getattr(x, "__qualname__", repr(x)))
    return x


def _param_str(v: Any) -> str:
    if isinstance(v, slice):
        text = f"{'' if v.start is None else v.start}:{'' if v.stop is None else v.stop}"
        return text + ("" if v.step is None else f":{v.step}")
    if isinstance(v, tuple):
        return "(" + ",".join(_param_str(e) for e in v) + ")"
    if v is Ellipsis:
        return "..."
    if isinstance(v, np.dtype):
        return str(v)
    if callable(v):
        return getattr(v, "__name__", repr(v))
    return repr(v)


class Eqn:
    """``out = prim(*ins, **params)``.

    ``phase`` is the level of the trace whose reverse sweep emitted the equation (0: forward code);
    ``Wengert.sweep_depth`` turns it into a depth relative to the list. ``origin`` (set only in debug
    mode, so read it with ``getattr(eqn, "origin", None)``) is the forward equation whose VJP rule
    emitted this one.
    """

    __slots__ = ("prim", "ins", "out", "params", "where", "phase", "origin")

    def __init__(self, prim: Any, ins: tuple, out: Var, params: dict, phase: int = 0):
        self.prim = prim
        self.ins = ins
        self.out = out
        self.params = params
        self.where: str | None = None  # the user's source line, recorded only where errors need it
        self.phase = phase

    def key(self) -> tuple:
        return (
            self.prim.name,
            tuple(a.key() for a in self.ins),
            (self.out.shape, str(self.out.dtype)),
            _freeze(self.params),
        )

    def __str__(self) -> str:
        args = " ".join(repr(a) for a in self.ins)
        params = " ".join(f"{k}={_param_str(v)}" for k, v in self.params.items())
        lhs = f"{self.out!r}:{aval_str(self.out.shape, self.out.dtype)}"
        return f"{lhs} = {self.prim.name} {args}" + (f"  [{params}]" if params else "")


class Guard:
    """A traced value became a Python value: ``kind(var) == observed`` held at ``position``.

    ``position`` is the number of equations recorded before the conversion. A compiled replay of the
    list is valid only while every guard still holds; otherwise the function must be traced again.
    """

    __slots__ = ("kind", "var", "observed", "position")

    def __init__(self, kind: str, var: Var, observed: Any, position: int):
        self.kind = kind
        self.var = var
        self.observed = observed
        self.position = position

    def key(self) -> tuple:
        # The observed value is structure: another branch taken is another program.
        return ("guard", self.kind, self.var.key(), self.observed, self.position)

    def __str__(self) -> str:
        return f"guard {self.kind}({self.var!r}) == {self.observed!r}"


def sweep_label(depth: int, max_depth: int) -> str:
    """How printing names the sweep an equation belongs to (``depth`` as in ``Wengert.sweep_depth``)."""
    if depth == 0:
        return "forward"
    if max_depth == 1:
        return "reverse sweep of grad"
    if max_depth == 2:
        return "reverse sweep of the outer grad" if depth == 1 else "reverse sweep of the inner grad"
    return f"reverse sweep of grad #{depth} (#1 is the outermost)"


class Wengert:
    """A traced program. Build one with ``gradjit.make_wengert(f)(*args)``."""

    def __init__(
        self,
        inputs: list[Var],
        consts: list[Const],
        eqns: list[Eqn],
        outputs: list[Any],
        guards: list[Guard],
        out_tree: Any = None,
        level: int = 0,
    ):
        self.inputs = inputs
        self.consts = consts
        self.eqns = eqns
        self.outputs = outputs  # Var, Const, Lit, or None for a non-array output leaf
        self.guards = guards
        self.out_tree = out_tree
        self.level = level  # the level of the trace that recorded it (phases are relative to it)

    # -- sweeps ----------------------------------------------------------------------------
    def sweep_depth(self, eqn: Eqn) -> int:
        """0 for forward code; d >= 1 for the reverse sweep of the d-th nested ``grad`` (1: outermost)."""
        d = eqn.phase - self.level
        return d if d > 0 else 0

    def max_sweep_depth(self) -> int:
        return max((self.sweep_depth(e) for e in self.eqns), default=0)

    # -- structure -------------------------------------------------------------------------
    def _key(self) -> tuple:
        def atom_key(a: Any) -> Any:
            return None if a is None else a.key()

        return (
            tuple((v.shape, str(v.dtype)) for v in self.inputs),
            tuple((c.shape, str(c.dtype)) for c in self.consts),
            tuple(e.key() for e in self.eqns),
            tuple(g.key() for g in self.guards),
            tuple(atom_key(a) for a in self.outputs),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Wengert) and self._key() == other._key()

    def __hash__(self) -> int:
        return int(self.structural_hash()[:16], 16)

    def structural_hash(self) -> str:
        """A deterministic hex digest of the structure (stable across processes, unlike ``hash``)."""
        return hashlib.sha256(repr(self._key()).encode()).hexdigest()

    def check(self) -> None:
        """Raise ``ValueError`` if a variable is used before it is defined or defined twice."""
        defined: set[int] = set()
        for v in (*self.inputs, *self.consts):
            if v.index in defined:
                raise ValueError(f"{v!r} defined twice")
            defined.add(v.index)
        for i, e in enumerate(self.eqns):
            for a in e.ins:
                if isinstance(a, Var) and a.index not in defined:
                    raise ValueError(f"equation {i} ({e}) uses {a!r} before it is defined")
            if e.out.index in defined:
                raise ValueError(f"equation {i} redefines {e.out!r}")
            defined.add(e.out.index)
        for g in self.guards:
            if g.var.index not in defined:
                raise ValueError(f"{g} refers to an undefined variable")
        for a in self.outputs:
            if isinstance(a, Var) and a.index not in defined:
                raise ValueError(f"output {a!r} is undefined")

    # -- printing --------------------------------------------------------------------------
    def lines(self) -> list[str]:
        def decl(v: Var) -> str:
            return f"{v!r}:{aval_str(v.shape, v.dtype)}"

        out = ["inputs: " + " ".join(decl(v) for v in self.inputs)]
        if self.consts:
            out.append("consts: " + " ".join(decl(c) for c in self.consts))
        guards = sorted(self.guards, key=lambda g: g.position)
        gi = 0
        depth, max_depth = 0, self.max_sweep_depth()
        for i, e in enumerate(self.eqns):
            while gi < len(guards) and guards[gi].position <= i:
                out.append(f"  {guards[gi]}")
                gi += 1
            if max_depth:
                d = self.sweep_depth(e)
                if d != depth:
                    out.append(f"  -- {sweep_label(d, max_depth)} --")
                    depth = d
            out.append(f"  {e}")
        out.extend(f"  {g}" for g in guards[gi:])
        out.append("outputs: " + " ".join(repr(a) for a in self.outputs))
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def __repr__(self) -> str:
        return f"<Wengert: {len(self.inputs)} inputs, {len(self.eqns)} equations, {len(self.guards)} guards>"

    def __len__(self) -> int:
        return len(self.eqns)

    # -- notebook and graph views (gradjit.display) ----------------------------------------
    def _repr_html_(self) -> str:
        from .display import to_html

        return to_html(self)

    def to_html(self, max_rows: int | None = 500) -> str:
        """An HTML table: one row per equation, with types, guards, sweeps, inputs and outputs."""
        from .display import to_html

        return to_html(self, max_rows=max_rows)

    def to_dot(self) -> str:
        """Graphviz DOT source: a node per input, constant and equation, an edge per use."""
        from .display import to_dot

        return to_dot(self)

    def render(self, path: str | None = None, format: str = "svg") -> Any:
        """The graph drawn by Graphviz's ``dot`` program (shown inline in a notebook); see ``display.render``."""
        from .display import render

        return render(self, path=path, format=format)
