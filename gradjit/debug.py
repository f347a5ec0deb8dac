"""NaN/Inf debugging: ``gradjit.debug_nans()`` stops at the first operation whose result is not finite.

    with gj.debug_nans():            # or gj.config.debug_nans = True, or GRADJIT_DEBUG_NANS=1
        gj.grad(f)(x)                # NonFiniteError: log: produced -inf from finite inputs: log(0.0)
                                     #   at model.py:12: return np.sum(np.log(p))

Debug mode is a hook on tracing (``tracing._DEBUG``, called on every emitted equation) plus checks in
the reverse walker (``reverse.backward``):

- forward: each equation records the user's source line (``Eqn.where``; finding it walks the Python
  stack, which is why it happens only in debug mode), and its value is checked at the trace level
  where it is concrete (outer levels hold tracers of it, so each operation is checked once);
- reverse sweep at the top level: the VJP rules run plain NumPy on arrays, not through ``bind``, so
  the walker checks every cotangent contribution (and every fan-out sum) and names the forward
  operation whose rule produced it, with that operation's source line;
- reverse sweep under an outer trace (``grad(grad(f))``, ``make_wengert(grad(f))``): the rules'
  operations are emitted like forward ones; the walker tells the hook which forward equation it is
  differentiating (``_STATE.origin``), so the error names that operation and its source line.

Values that are already NaN/Inf where they enter (an input, a captured array, a literal) are
reported as such when an operation's result is not finite, rather than blamed on that operation;
an operation whose arguments are not finite but whose result is (``np.where`` masking them out)
passes. Only traced computation is checked: plain NumPy outside ``grad``/``make_wengert`` is not.

Invariant: with debug mode off nothing here runs (``tracing._DEBUG is None``); what it costs then is
one global read per emitted equation and one test of a local per reverse step.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from . import tracing as _tracing
from .errors import GradjitError, user_line
from .placement import DeviceArray
from .tracing import Trace, Tracer, concrete
from .wengert import Const, Eqn, Lit, Var

__all__ = ["NonFiniteError", "debug_nans", "set_debug_nans", "debug_nans_enabled"]

_ADVICE_FORWARD = (
    "debug_nans stops at the first operation whose result is NaN or Inf. Keep its arguments in its "
    "domain (np.log(x + eps), np.clip(...)), or select safe arguments with np.where before the operation."
)
_ADVICE_REVERSE = (
    "The derivative is not finite there (sqrt or log at 0, a division by 0, ...). Move the argument "
    "off the singular point (np.sqrt(x + eps)), select a safe argument with np.where before the "
    "operation, or give it a custom gradient (gradjit.custom_vjp)."
)
_ADVICE_ENTRY = (
    "The value was not finite before gradjit saw it; check the data passed in (np.isfinite(x).all()). "
    "Operations whose results stay finite (np.where masking it out) do not stop debug mode."
)


class NonFiniteError(GradjitError, FloatingPointError):
    """A traced operation (or the gradient rule of one) produced NaN or Inf in debug mode.

    Attributes: ``op`` (the operation named first in the message), ``eqn`` (the equation whose
    value, or whose gradient, is not finite), ``sweep`` (``"forward"`` or ``"reverse"``) and
    ``origin`` (in a reverse sweep, the forward equation whose VJP rule was running, else None).
    """

    def __init__(
        self,
        op: str,
        problem: str,
        advice: str | None,
        where: str | None,
        eqn: Eqn | None = None,
        sweep: str = "forward",
        origin: Eqn | None = None,
    ):
        super().__init__(op, problem, advice, where=where or user_line())
        self.eqn = eqn
        self.sweep = sweep
        self.origin = origin


# -- switching it on and off ----------------------------------------------------------------------
def set_debug_nans(enabled: bool = True) -> None:
    """Switch debug mode on or off for everything traced from now on."""
    _tracing._DEBUG = _on_emit if enabled else None


def debug_nans_enabled() -> bool:
    return _tracing._DEBUG is not None


class debug_nans(contextlib.ContextDecorator):
    """Context manager (and decorator): debug mode inside, the previous setting restored after.

    ``debug_nans(False)`` switches it off for a block.
    """

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._saved: list[Any] = []  # a stack, so one instance can be entered recursively (as a decorator)

    def __enter__(self) -> debug_nans:
        self._saved.append(_tracing._DEBUG)
        set_debug_nans(self.enabled)
        return self

    def __exit__(self, *exc: Any) -> None:
        _tracing._DEBUG = self._saved.pop()


# -- state shared with the reverse walker ---------------------------------------------------------
class _State:
    __slots__ = ("origin",)

    def __init__(self) -> None:
        self.origin: Eqn | None = None  # the forward equation whose VJP rule is running


_STATE = _State()


def begin_sweep(seeds: dict[int, Any]) -> Eqn | None:
    """Called by ``reverse.backward`` in debug mode; returns what ``end_sweep`` restores."""
    for g in seeds.values():
        if type(g) is not Tracer and not _all_finite(g):
            raise NonFiniteError(
                "reverse sweep",
                f"the cotangent it starts from contains {_first_bad(_host(g))[1]}",
                "Pass a finite cotangent to the function returned by gradjit.vjp.",
                None,
                sweep="reverse",
            )
    return _STATE.origin


def end_sweep(token: Eqn | None) -> None:
    _STATE.origin = token


def enter_rule(eqn: Eqn) -> None:
    _STATE.origin = eqn


# -- the checks -----------------------------------------------------------------------------------
def _host(x: Any) -> np.ndarray:
    """``x`` as a NumPy array; a device array is copied (only to report a value that is not finite)."""
    return x.to_host() if isinstance(x, DeviceArray) else np.asarray(x)


def _all_finite(x: Any) -> bool:
    dt = getattr(x, "dtype", None)
    if dt is None:
        x = np.asarray(x)
        dt = x.dtype
    if dt.kind not in "fc":
        return True
    return bool(np.isfinite(x).all())


def _first_bad(x: np.ndarray) -> tuple[tuple[int, ...], str]:
    """The index of the first non-finite element and how it prints (``nan``, ``inf``, ``-inf``)."""
    bad = ~np.isfinite(x)
    idx = tuple(int(i) for i in np.argwhere(bad)[0]) if x.ndim else ()
    return idx, _fmt(x[idx])


def _fmt(v: Any) -> str:
    v = concrete(v)
    if isinstance(v, DeviceArray):
        v = v.to_host()
    if isinstance(v, (np.ndarray, np.generic)) and v.ndim == 0:
        v = v.item()
    if isinstance(v, np.ndarray):
        return f"<array {v.shape}>"
    return repr(v)


def _value_at(v: Any, idx: tuple[int, ...], shape: tuple[int, ...]) -> str:
    """The element of argument ``v`` that meets element ``idx`` of a result of ``shape``."""
    v = concrete(v)
    vshape = np.shape(v)
    if vshape == ():
        return _fmt(v)
    try:
        return _fmt(np.broadcast_to(v, shape)[idx])
    except (ValueError, IndexError):
        return "..."


def _call_at(eqn: Eqn, args: list[Any], idx: tuple[int, ...], shape: tuple[int, ...]) -> str:
    """``log(0.0)``: the operation applied to the elements that produced element ``idx``."""
    vals = ", ".join(_value_at(a, idx, shape) for a in args)
    at = f" (first at index {idx})" if idx else ""
    return f"{eqn.prim.name}({vals}){at}"


def _describe_entry(trace: Trace, atom: Any, bad: str) -> str:
    if type(atom) is Lit:
        return f"it is the literal {atom.value!r}"
    if type(atom) is Const:
        return (
            f"it is a constant of the trace ({atom!r}: an array from outside the differentiated arguments, "
            f"e.g. a closure or global variable or an argument not in argnums) that already contains {bad}"
        )
    for k, v in enumerate(trace.inputs):
        if v is atom:
            return f"it is input {k} ({atom!r}) of the traced function, which already contained {bad} when passed in"
    return f"{atom!r} was computed before debug mode was switched on"


def _on_emit(trace: Trace, eqn: Eqn) -> None:
    """The tracing hook: record the source line; check the value where it is concrete."""
    origin = _STATE.origin
    if origin is not None:
        eqn.origin = origin
        if eqn.where is None:
            eqn.where = origin.where  # a reverse-sweep operation is placed at its forward operation
    if eqn.where is None:
        eqn.where = user_line()
    out = eqn.out.value
    if type(out) is Tracer or _all_finite(out):
        return
    _raise_forward(trace, eqn, origin)


def _raise_forward(trace: Trace, eqn: Eqn, origin: Eqn | None) -> None:
    out = _host(eqn.out.value)
    idx, bad = _first_bad(out)
    name = eqn.prim.name
    args = [a.value for a in eqn.ins]
    entered = [(i, a) for i, (a, v) in enumerate(zip(eqn.ins, args)) if not _all_finite(concrete(v))]
    if entered:
        i, atom = entered[0]
        _, arg_bad = _first_bad(_host(concrete(args[i])))
        problem = f"its result contains {bad} because argument {i} was already not finite: " + _describe_entry(
            trace, atom, arg_bad
        )
        advice = _ADVICE_ENTRY
    else:
        detail = _call_at(eqn, args, idx, out.shape) if eqn.prim.kind == "elementwise" else f"at index {idx}"
        problem = f"produced {bad} from finite inputs: {detail}"
        advice = _ADVICE_FORWARD
    if origin is None:
        raise NonFiniteError(name, problem, advice, eqn.where, eqn=eqn)
    raise NonFiniteError(
        f"gradient of '{origin.prim.name}'",
        f"in the reverse sweep, '{name}' (an operation of its VJP rule) {problem}",
        _ADVICE_REVERSE,
        origin.where,
        eqn=eqn,
        sweep="reverse",
        origin=origin,
    )


def check_cotangent(eqn: Eqn, argnum: int, c: Any, args: list[Any]) -> None:
    """The walker's check of one contribution ``c`` to argument ``argnum``'s cotangent."""
    if type(c) is Tracer or _all_finite(c):
        return  # a tracer's value was checked where it was emitted
    c = _host(c)
    idx, bad = _first_bad(c)
    name = eqn.prim.name
    a = args[argnum]
    shape = np.shape(concrete(a))
    if eqn.prim.kind == "elementwise" and shape == eqn.out.shape:
        at = _call_at(eqn, args, idx, shape)
    else:
        at = f"argument {argnum} = {_value_at(a, idx, shape)}" + (f" (first at index {idx})" if idx else "")
    problem = f"the gradient with respect to argument {argnum} is {bad} at {at}"
    origin = getattr(eqn, "origin", None)
    if origin is not None:
        problem += f"; '{name}' is itself an operation of the VJP rule of '{origin.prim.name}' (a reverse sweep)"
    raise NonFiniteError(
        f"gradient of '{name}'", problem, _ADVICE_REVERSE, eqn.where, eqn=eqn, sweep="reverse", origin=eqn
    )


def check_sum(eqn: Eqn, var: Var, total: Any) -> None:
    """The walker's check of a fan-out sum (finite contributions can overflow)."""
    if type(total) is Tracer or _all_finite(total):
        return
    _, bad = _first_bad(_host(total))
    raise NonFiniteError(
        f"gradient of '{eqn.prim.name}'",
        f"adding its contribution to the gradient of {var!r} (used more than once) overflowed to {bad}",
        "Rescale the computation (e.g. a smaller loss scale) so that gradients stay in range.",
        eqn.where,
        eqn=eqn,
        sweep="reverse",
        origin=eqn,
    )
