"""The custom-gradient registry: new primitives, custom VJPs and scoped gradient overrides.

Four ways in, all ending in the same place (a ``Primitive``'s rules):

- ``@primitive`` makes a user function one opaque operation of the trace; ``f.defvjp(*rules)`` gives
  one rule per positional argument, ``rule(g, ans, *args, **kwargs)``.
- ``@custom_vjp`` with ``f.defvjp(fwd, bwd)``: ``fwd(*args) -> (out, residuals)``,
  ``bwd(residuals, g) -> tuple of cotangents``.
- ``defvjp(fn, *rules)`` sets the rules of an existing primitive for good; given a NumPy function
  gradjit does not support yet, it first makes that function a primitive.
- ``with gradients({np.floor: rule}):`` overrides the gradient of existing operations for a scope
  (the straight-through estimator). The override is applied when the operation is *traced*, so
  the Wengert list records which gradient an equation carries (``floor[custom]``).

Forward mode: ``defjvp(fn, *rules)`` and ``f.defjvp(*rules)`` set forward rules, one per positional
argument, ``rule(t, ans, *args, **kwargs) -> tangent contribution``. Wherever VJP rules are set here
and the user has not given JVP rules, forward mode is derived from them by transposition
(``jvp_rules.transposed_jvp``), so forward and reverse mode agree with the user's gradient.

Rules are written with NumPy operations and are therefore differentiable themselves.
A user primitive's forward function is only ever called on concrete values.
"""

from __future__ import annotations

import functools
import types
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from . import tracing
from .errors import user_line
from .jvp_rules import defjvp as _set_jvp_rules
from .jvp_rules import transposed_jvp
from .numpy_api import FUNCTION_OVERRIDES, HANDLED
from .primitives import UFUNC_TO_PRIM
from .rules import defvjp as _set_vjp_rules
from .tracing import Primitive, Tracer, bind

__all__ = ["primitive", "custom_vjp", "defvjp", "defjvp", "gradients", "register_module", "PrimitiveFunction"]

# Primitives whose forward rules a user set with ``defjvp``: setting VJP rules later keeps them.
_USER_JVP: weakref.WeakSet[Primitive] = weakref.WeakSet()


def _set_rules(prim: Primitive, *rules: Callable | Any) -> None:
    """Set ``prim``'s VJP rules; forward mode follows them (by transposition) unless user-given."""
    _set_vjp_rules(prim, *rules)
    _derive_jvp(prim)


def _derive_jvp(prim: Primitive) -> None:
    if prim not in _USER_JVP:
        prim.jvp_all = transposed_jvp(prim)


def _set_user_jvp(prim: Primitive, *rules: Callable | Any) -> None:
    _set_jvp_rules(prim, *rules)
    prim.jvp_all = None  # a joint rule would take precedence over the per-argument ones
    _USER_JVP.add(prim)


class PrimitiveFunction:
    """A user function made a primitive: one equation in the trace, differentiated by its rules."""

    def __init__(self, fn: Callable, name: str | None = None):
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.prim = Primitive(name or getattr(fn, "__name__", "user_fn"), fn, "user")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = bind(self.prim, *args, **kwargs)
        if self.prim.vjp_all is None and (len(self.prim.vjps) < len(args) or None in self.prim.vjps):
            _remember_line(out)  # a reverse sweep may reach this equation without a rule: say where
        return out

    def defvjp(self, *rules: Callable | Any) -> PrimitiveFunction:
        """One rule per positional argument, ``rule(g, ans, *args, **kwargs)``; ``None`` for none."""
        _set_rules(self.prim, *rules)
        return self

    def defjvp(self, *rules: Callable | Any) -> PrimitiveFunction:
        """Forward rules, one per positional argument, ``rule(t, ans, *args, **kwargs)``; ``ZERO`` for none.

        Without them forward mode transposes the VJP rules (one extra reverse sweep per equation).
        """
        _set_user_jvp(self.prim, *rules)
        return self

    def __repr__(self) -> str:
        return f"<gradjit primitive {self.prim.name}>"


def _remember_line(out: Any) -> None:
    """Note the user's source line on the equation that produced ``out``, at every trace level."""
    where = None
    t = out
    while type(t) is Tracer:
        eqns = t._trace.eqns
        if eqns and eqns[-1].out is t._var:
            where = where or user_line()
            eqns[-1].where = where
        t = t._value


def primitive(fn: Callable) -> PrimitiveFunction:
    """Decorator: trace ``fn`` as one operation; give it a gradient with ``.defvjp(...)``."""
    return PrimitiveFunction(fn)


class custom_vjp(PrimitiveFunction):
    """Decorator: a function whose gradient is given by ``defvjp(fwd, bwd)``.

    ``fwd(*args) -> (out, residuals)`` and ``bwd(residuals, g) -> tuple`` (one cotangent per
    positional argument, ``None`` for none). The reverse sweep calls ``fwd`` again on the recorded
    inputs to get the residuals, so ``bwd`` sees residuals of the right trace level under nesting.
    """

    def defvjp(self, fwd: Callable, bwd: Callable) -> custom_vjp:  # type: ignore[override]
        def joint(g: Any, ans: Any, *args: Any, **kwargs: Any) -> tuple:
            _, residuals = fwd(*args, **kwargs)
            out = bwd(residuals, g)
            if not isinstance(out, tuple):
                out = (out,)
            if len(out) != len(args):
                raise ValueError(
                    f"custom_vjp {self.prim.name}: bwd returned {len(out)} cotangent(s) for {len(args)} argument(s)"
                )
            return out

        self.prim.vjp_all = joint
        _derive_jvp(self.prim)
        return self


def _primitive_for(key: Any) -> tuple[Primitive | None, Callable | None]:
    """The primitive behind ``key``, or (None, numpy_function) if it is a composite/unsupported."""
    if isinstance(key, PrimitiveFunction):
        return key.prim, None
    if isinstance(key, Primitive):
        return key, None
    if key in UFUNC_TO_PRIM:
        return UFUNC_TO_PRIM[key], None
    if key in FUNCTION_OVERRIDES:
        return FUNCTION_OVERRIDES[key], None
    return None, key


def _as_rules(rules: Any) -> tuple:
    return tuple(rules) if isinstance(rules, (tuple, list)) else (rules,)


def _function_primitive(fn: Callable) -> Primitive:
    return Primitive(getattr(fn, "__name__", "fn"), fn, "user")


def _registered_primitive(fn: Any) -> Primitive:
    """The primitive behind ``fn``; a NumPy function without one becomes a primitive of its own."""
    prim, np_fn = _primitive_for(fn)
    if prim is None:
        prim = _function_primitive(np_fn)
        if isinstance(np_fn, np.ufunc):
            UFUNC_TO_PRIM[np_fn] = prim
        else:
            FUNCTION_OVERRIDES[np_fn] = prim
    return prim


def defvjp(fn: Any, *rules: Callable | Any) -> None:
    """Set the reverse rules of ``fn`` (a primitive, a @primitive function or a NumPy function)."""
    _set_rules(_registered_primitive(fn), *rules)


def defjvp(fn: Any, *rules: Callable | Any) -> None:
    """Set the forward rules of ``fn`` (a primitive, a @primitive function or a NumPy function).

    One rule per positional argument, ``rule(t, ans, *args, **kwargs) -> tangent contribution`` (``t``
    the tangent of that argument; ``ZERO`` for an argument with no derivative). They replace any
    forward rule ``fn`` had, including the one derived from its VJP rules.
    """
    _set_user_jvp(_registered_primitive(fn), *rules)


@contextmanager
def gradients(overrides: dict[Any, Callable | tuple]) -> Iterator[None]:
    """Within the block, trace the given operations with the given gradient rules.

    Keys are NumPy functions (``np.floor``), primitives or ``@primitive`` functions; values are a
    rule ``(g, ans, *args) -> cotangent`` or a tuple of rules, one per argument.
    """
    saved_prims: dict[Primitive, Primitive | None] = {}
    saved_fns: dict[Callable, Primitive | None] = {}
    try:
        for key, rules in overrides.items():
            prim, np_fn = _primitive_for(key)
            if prim is not None:
                base = prim
                new = Primitive(f"{base.name}[custom]", base.impl, base.kind)
                _set_rules(new, *_as_rules(rules))
                saved_prims.setdefault(base, tracing.OVERRIDES.get(base))
                tracing.OVERRIDES[base] = new
            else:
                if np_fn not in HANDLED and not callable(np_fn):
                    raise TypeError(f"gradients(): {key!r} is not a function or primitive")
                new = Primitive(f"{getattr(np_fn, '__name__', 'fn')}[custom]", np_fn, "user")
                _set_rules(new, *_as_rules(rules))
                saved_fns.setdefault(np_fn, FUNCTION_OVERRIDES.get(np_fn))
                FUNCTION_OVERRIDES[np_fn] = new
        yield
    finally:
        for p, old in saved_prims.items():
            if old is None:
                tracing.OVERRIDES.pop(p, None)
            else:
                tracing.OVERRIDES[p] = old
        for f, old in saved_fns.items():
            if old is None:
                FUNCTION_OVERRIDES.pop(f, None)
            else:
                FUNCTION_OVERRIDES[f] = old


def register_module(module: Any, gradients: dict[str, Callable | tuple], patch: bool = False) -> types.SimpleNamespace:
    """Make the named functions of ``module`` primitives with the given rules, all at once.

    ``gradients`` maps a function name to its rule or tuple of rules (one per argument). Returns a
    namespace of the new primitives; with ``patch=True`` they also replace the module's attributes,
    so existing code calling ``module.fn(x)`` is traced (as torch-autograd's ``overload.module``).
    """
    ns = types.SimpleNamespace()
    for name, rules in gradients.items():
        fn = getattr(module, name)
        pf = PrimitiveFunction(fn, name=f"{getattr(module, '__name__', 'module')}.{name}")
        pf.defvjp(*_as_rules(rules))
        setattr(ns, name, pf)
        if patch:
            setattr(module, name, pf)
    return ns
