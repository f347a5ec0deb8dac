"""The public transforms: ``grad``, ``value_and_grad``, ``vjp``, ``elementwise_grad``,
``make_wengert`` and ``stop_gradient``.

Each transform call starts a trace one level above the active ones, wraps the differentiable
leaves of the selected arguments in tracers of that trace, runs the user function (Python control
flow and all), and then, for the derivative transforms, runs ``reverse.backward`` over what was
recorded. Nothing is cached between calls: the function is traced at every call, which is what
makes any control flow correct. (``jit``, later, caches with guards.)

Invariants
----------
- Gradients come back in the structure of the argument they belong to, in the argument's dtype and
  Python type (a ``float`` argument gets a ``float`` back at the top level); leaves that cannot be
  differentiated (ints, bools, strings, ``None``, integer/bool arrays) inside a container get
  ``None``. Asking for the gradient of such a leaf directly (``argnums`` pointing at it) raises.
- Values returned by a transform are unwrapped exactly one level.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import pytree
from .errors import ArgnumsError, NonDifferentiableInputError, NonScalarOutputError
from .placement import full, put
from .primitives import stop_gradient_p
from .pytree import is_float_leaf, like_leaf
from .reverse import backward, zeros_cotangent
from .simplify import is_one_seed, one
from .tracing import Trace, Tracer, concrete, new_trace
from .wengert import Lit, Wengert

__all__ = ["grad", "value_and_grad", "vjp", "elementwise_grad", "make_wengert", "stop_gradient"]

Argnums = int | Sequence[int]

_PASS = object()  # marks a leaf that is passed through untraced
_LEAF = pytree.flatten(0.0)[1]  # the tree of a single leaf
_HOST_VALUES = (np.ndarray, np.generic, float, int)


def _fname(f: Callable) -> str:
    return getattr(f, "__name__", type(f).__name__)


def _normalize_argnums(argnums: Argnums | None, nargs: int, op: str) -> tuple[tuple[int, ...], bool]:
    if argnums is None:
        return tuple(range(nargs)), False
    single = isinstance(argnums, (int, np.integer))
    nums = (int(argnums),) if single else tuple(int(a) for a in argnums)
    bad = [a for a in nums if not -nargs <= a < nargs]
    if bad:
        raise ArgnumsError(
            op,
            f"argnums={argnums!r} names argument {bad[0]}, "
            f"but the function was called with {nargs} positional argument(s)",
            f"Use argnums between 0 and {nargs - 1}, or pass the argument positionally.",
        )
    nums = tuple(a % nargs for a in nums)
    if len(set(nums)) != len(nums):
        raise ArgnumsError(op, f"argnums={argnums!r} repeats an argument", "List each argument once.")
    return nums, single


def _check_top_leaf(x: Any, op: str, argnum: int) -> None:
    if is_float_leaf(x):
        return
    dt = getattr(x, "dtype", None)
    if isinstance(x, (bool, int, np.integer, np.bool_)) or (dt is not None and dt.kind in "iub"):
        what = f"an integer/boolean input ({type(x).__name__}{'' if dt is None else ' of dtype ' + str(dt)})"
        advice = "Pass a float instead (3.0, not 3; x.astype(float) for arrays), or leave it out of argnums."
    elif dt is not None and dt.kind == "c":
        what, advice = "a complex input", "gradjit differentiates real floating-point inputs only."
    else:
        what = f"an input of type {type(x).__name__}"
        advice = (
            "Only float scalars and float arrays (or containers of them) can be differentiated; "
            "leave it out of argnums."
        )
    raise NonDifferentiableInputError(op, f"cannot differentiate with respect to argument {argnum}: {what}", advice)


class _Traced:
    """The result of running ``f`` under a new trace."""

    __slots__ = ("trace", "in_leaves", "in_defs", "out")

    def __init__(self, trace: Trace, in_leaves: list, in_defs: list, out: Any):
        self.trace = trace
        self.in_leaves = in_leaves  # per argnum: list of (original leaf, Var or None)
        self.in_defs = in_defs
        self.out = out


def _run_traced(f: Callable, args: tuple, kwargs: dict, argnums: tuple[int, ...], op: str, strict: bool) -> _Traced:
    with new_trace() as trace:
        args = list(args)
        in_leaves, in_defs = [], []
        for n in argnums:
            x = args[n]
            if is_float_leaf(x):  # a single float leaf, the usual case: what the general path does for it
                t = trace.new_input(x)
                in_leaves.append([(x, t._var)])
                in_defs.append(_LEAF)
                args[n] = t
                continue
            leaves, td = pytree.flatten(x)
            if strict and td.kind == "leaf":
                _check_top_leaf(leaves[0], op, n)
            pairs, new = [], []
            for leaf in leaves:
                if is_float_leaf(leaf):
                    t = trace.new_input(leaf)
                    pairs.append((leaf, t._var))
                    new.append(t)
                else:
                    pairs.append((leaf, None))
                    new.append(leaf)
            args[n] = pytree.unflatten(td, new) if td.kind != "leaf" else new[0]
            in_leaves.append(pairs)
            in_defs.append(td)
        out = f(*args, **kwargs)
    return _Traced(trace, in_leaves, in_defs, out)


def _unwrap(x: Any, trace: Trace) -> Any:
    return x._value if type(x) is Tracer and x._trace is trace else x


def _unwrap_tree(tree: Any, trace: Trace) -> Any:
    if type(tree) is Tracer:
        return _unwrap(tree, trace)
    if tree is None or isinstance(tree, (float, int, np.ndarray, np.generic, str)):
        return tree
    return pytree.tree_map(lambda x: _unwrap(x, trace), tree)


def _input_grads(traced: _Traced, ct: dict[int, Any], single: bool) -> Any:
    grads = []
    for pairs, td in zip(traced.in_leaves, traced.in_defs):
        leaves = []
        for leaf, var in pairs:
            if var is None:
                leaves.append(None)
                continue
            g = ct.get(var.index)
            if g is None:
                g = zeros_cotangent(var)
            elif type(g) is Tracer and (type(leaf) is not Tracer or type(leaf._trace) is Trace):
                leaves.append(g)  # what like_leaf returns for a traced gradient (a plain trace has no note)
                continue
            elif is_one_seed(g):
                g = g.copy()  # the shared read-only seed must not escape (f = lambda x: x + 1)
            leaves.append(like_leaf(g, leaf))
        grads.append(pytree.unflatten(td, leaves) if td.kind != "leaf" else leaves[0])
    return grads[0] if single else tuple(grads)


def _scalar_output(out: Any, trace: Trace, f: Callable, op: str) -> Any:
    """The output's Var (or None for an output that does not depend on the inputs)."""
    if type(out) is Tracer and out._trace is trace:  # the usual case, decided without property calls
        var = out._var
        if var.shape == () and var.dtype.kind == "f":
            return var
    if type(out) is Tracer or isinstance(out, (np.ndarray, np.generic, int, float)):
        shape = np.shape(out) if type(out) is not Tracer else out.shape
        dtype = out.dtype if hasattr(out, "dtype") else np.result_type(out)
    else:  # a container (np.shape would convert the tracers inside it) or another object
        shape, dtype = None, None
    if dtype is None or shape != ():
        what = f"an output of shape {shape}" if dtype is not None else f"an output of type {type(out).__name__}"
        raise NonScalarOutputError(
            op,
            f"{_fname(f)} returned {what}; grad needs a scalar",
            "Reduce it (np.sum(...), np.mean(...)), use gradjit.elementwise_grad for elementwise "
            "functions, or gradjit.vjp for a vector-Jacobian product."
            + (" With has_aux=True, return (scalar, aux)." if isinstance(out, tuple) else ""),
        )
    if dtype.kind != "f":
        raise NonScalarOutputError(
            op, f"{_fname(f)} returned a {dtype} scalar; grad needs a float output", "Return a float value."
        )
    if type(out) is Tracer and out._trace is trace:
        return out._var
    return None


def value_and_grad(f: Callable, argnums: Argnums = 0, has_aux: bool = False) -> Callable:
    """``f``'s value and its gradient with respect to ``argnums``; traced at every call."""

    @functools.wraps(f)
    def value_and_grad_f(*args: Any, **kwargs: Any) -> Any:
        op = f"grad({_fname(f)})"
        nargs = len(args)
        if type(argnums) is int and -nargs <= argnums < nargs:  # the usual argnums=0: what the general path gives
            nums, single = (argnums % nargs,), True
        else:
            nums, single = _normalize_argnums(argnums, nargs, op)
        traced = _run_traced(f, args, kwargs, nums, op, strict=True)
        trace, out = traced.trace, traced.out
        if has_aux:
            if not (isinstance(out, (tuple, list)) and len(out) == 2):
                raise NonScalarOutputError(
                    op, f"with has_aux=True, {_fname(f)} must return a pair (output, aux)", "Return (loss, aux)."
                )
            out, aux = out
        var = _scalar_output(out, trace, f, op)
        value = _unwrap(out, trace)
        if var is None:
            ct = {}
        else:
            seed = one(var.dtype)
            if not isinstance(concrete(out), _HOST_VALUES):  # a device value gets a device seed
                seed = put(seed, like=out)
            ct = backward(trace.eqns, {var.index: seed}, trace.level)
        grads = _input_grads(traced, ct, single)
        if has_aux:
            return (value, _unwrap_tree(aux, trace)), grads
        return value, grads

    return value_and_grad_f


def grad(f: Callable, argnums: Argnums = 0, has_aux: bool = False) -> Callable:
    """A function computing the gradient of scalar-valued ``f`` with respect to ``argnums``.

    ``grad(f)(*args)`` runs ``f`` (so any Python control flow behaves as usual), records its
    Wengert list, and sweeps it backwards. With ``has_aux=True`` ``f`` returns ``(out, aux)`` and
    the result is ``(grad, aux)``.
    """
    vg = value_and_grad(f, argnums, has_aux)

    @functools.wraps(f)
    def grad_f(*args: Any, **kwargs: Any) -> Any:
        (value, g) = vg(*args, **kwargs)
        if has_aux:
            return g, value[1]
        return g

    return grad_f


def vjp(f: Callable, *primals: Any, has_aux: bool = False) -> tuple:
    """``(out, vjp_fn)`` with ``vjp_fn(cotangent) -> tuple of cotangents``, one per primal."""
    op = f"vjp({_fname(f)})"
    traced = _run_traced(f, primals, {}, tuple(range(len(primals))), op, strict=True)
    trace, out = traced.trace, traced.out
    if has_aux:
        out, aux = out
    out_leaves, out_def = pytree.flatten(out)

    def vjp_fn(cotangent: Any) -> tuple:
        ct_leaves, ct_def = pytree.flatten(cotangent)
        if ct_def != out_def:
            raise ValueError(f"{op}: cotangent structure {ct_def} does not match the output's {out_def}")
        seeds: dict[int, Any] = {}
        for o, c in zip(out_leaves, ct_leaves):
            if type(o) is Tracer and o._trace is trace and o.dtype.kind == "f":
                if np.shape(c) != o.shape:
                    raise ValueError(f"{op}: cotangent of shape {np.shape(c)} for an output of shape {o.shape}")
                i = o._var.index
                seeds[i] = c if i not in seeds else seeds[i] + c
        ct = backward(trace.eqns, seeds, trace.level) if seeds else {}
        return _input_grads(traced, ct, single=False)

    value = pytree.unflatten(out_def, [_unwrap(o, trace) for o in out_leaves])
    if has_aux:
        return value, vjp_fn, _unwrap_tree(aux, trace)
    return value, vjp_fn


def elementwise_grad(f: Callable, argnums: Argnums = 0) -> Callable:
    """Sum of the output's gradients: the derivative of an elementwise ``f``, same shape as input."""

    @functools.wraps(f)
    def elementwise_grad_f(*args: Any, **kwargs: Any) -> Any:
        op = f"elementwise_grad({_fname(f)})"
        nums, single = _normalize_argnums(argnums, len(args), op)
        traced = _run_traced(f, args, kwargs, nums, op, strict=True)
        out = traced.out
        if type(out) is Tracer and out._trace is traced.trace and out.dtype.kind == "f":
            ct = backward(
                traced.trace.eqns, {out._var.index: full(out.shape, 1, out.dtype, like=out)}, traced.trace.level
            )
        else:
            ct = {}
        return _input_grads(traced, ct, single)

    return elementwise_grad_f


def make_wengert(f: Callable, argnums: Argnums | None = None) -> Callable[..., Wengert]:
    """A function returning the Wengert list of ``f`` at the given arguments.

    ``argnums`` (default: all positional arguments) chooses which arguments become inputs; their
    float leaves are the list's inputs, everything else is a constant.
    """

    @functools.wraps(f)
    def make_wengert_f(*args: Any, **kwargs: Any) -> Wengert:
        op = f"make_wengert({_fname(f)})"
        nums, _ = _normalize_argnums(argnums, len(args), op)
        traced = _run_traced(f, args, kwargs, nums, op, strict=False)
        trace = traced.trace
        leaves, td = pytree.flatten(traced.out)
        outputs = []
        for leaf in leaves:
            if type(leaf) is Tracer and leaf._trace is trace:
                outputs.append(leaf._var)
            elif type(leaf) in (float, int, bool):
                outputs.append(Lit(leaf))
            elif isinstance(leaf, (np.ndarray, np.generic, Tracer)):
                outputs.append(trace.const(leaf))
            else:
                outputs.append(None)
        return trace.to_wengert(outputs, td)

    return make_wengert_f


def stop_gradient(x: Any) -> Any:
    """``x`` with its gradient cut: it is a constant for every transform around it."""
    return pytree.tree_map(lambda v: stop_gradient_p(v) if type(v) is Tracer else v, x)
