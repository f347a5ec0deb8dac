"""``check_grads``: derivatives against central finite differences, recursively to any order.

For order 1 it draws a random direction ``v`` for the inputs and a random cotangent ``u`` for the
output and compares ``<u, J v>`` with ``<u, (f(x + eps v) - f(x - eps v)) / 2 eps>``, computing
``<u, J v>`` from the VJP (mode ``"rev"``) and from the JVP (mode ``"fwd"``). For order k it checks
the derived functions ``x -> vjp(f, x)(u)`` (rev) and ``x -> jvp(f, x, v)`` (fwd) to order k - 1 in
every mode, so second order with both modes exercises reverse-over-reverse, forward-over-reverse,
reverse-over-forward and forward-over-forward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import pytree
from .api import vjp
from .jacobians import jvp
from .pytree import is_float_leaf

__all__ = ["check_grads"]


def _float_leaves(tree: Any) -> list[tuple[int, Any]]:
    leaves, _ = pytree.flatten(tree)
    return [(i, x) for i, x in enumerate(leaves) if is_float_leaf(x)]


def _random_like(x: Any, rng: np.random.Generator) -> Any:
    return rng.standard_normal(np.shape(x)).astype(np.result_type(x))


def _axpy(tree: Any, direction: list, scale: float) -> Any:
    leaves, td = pytree.flatten(tree)
    out = list(leaves)
    for (i, x), d in zip(_float_leaves(tree), direction):
        out[i] = type(x)(x + scale * d) if type(x) is float else (x + scale * d).astype(np.result_type(x))
    return pytree.unflatten(td, out)


def _inner(a_tree: Any, b_list: list) -> float:
    total = 0.0
    for (_, a), b in zip(_float_leaves(a_tree), b_list):
        total += float(np.sum(np.asarray(a, dtype=np.float64) * np.asarray(b, dtype=np.float64)))
    return total


def check_grads(
    f: Callable,
    *args: Any,
    order: int = 2,
    modes: Sequence[str] = ("rev",),
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-6,
    seed: int = 0,
) -> None:
    """Raise ``AssertionError`` unless ``f``'s derivatives match finite differences to ``order``.

    ``modes`` chooses how ``<u, J v>`` is computed: ``"rev"`` (VJP), ``"fwd"`` (JVP), or both.
    """
    modes = tuple(modes)
    for mode in modes:
        if mode not in ("rev", "fwd"):
            raise ValueError(f"check_grads: unknown mode {mode!r}; use 'rev' and/or 'fwd'")
    if not modes:
        raise ValueError("check_grads: modes is empty; use ('rev',), ('fwd',) or ('rev', 'fwd')")
    rng = np.random.default_rng(seed)
    _check(f, args, order, modes, eps, rtol, atol, rng)


def _tangent_trees(args: tuple, v: list) -> tuple:
    """The directions ``v`` (per argument, per float leaf) laid out in the arguments' structure."""
    trees = []
    for a, va in zip(args, v):
        leaves, td = pytree.flatten(a)
        out = list(leaves)
        for (i, x), d in zip(_float_leaves(a), va):
            out[i] = type(x)(d) if type(x) is float else d
        trees.append(pytree.unflatten(td, out))
    return tuple(trees)


def _compare(what: str, order: int, analytic: float, numeric: float, rtol: float, atol: float) -> None:
    if not abs(analytic - numeric) <= atol + rtol * abs(numeric):
        raise AssertionError(
            f"check_grads (order {order} remaining): {what} directional derivative {analytic!r} "
            f"does not match central differences {numeric!r} (difference {abs(analytic - numeric):.3g})"
        )


def _check(f: Callable, args: tuple, order: int, modes: tuple, eps: float, rtol: float, atol: float,
           rng: np.random.Generator) -> None:  # fmt: skip
    out, vjp_fn = vjp(f, *args)
    out_floats = _float_leaves(out)
    if not out_floats:
        raise AssertionError("check_grads: the function has no float output to check")
    u = [_random_like(o, rng) for _, o in out_floats]
    v = [[_random_like(x, rng) for _, x in _float_leaves(a)] for a in args]
    out_leaves, out_def = pytree.flatten(out)
    ct_leaves = list(out_leaves)
    for (i, o), ui in zip(out_floats, u):
        ct_leaves[i] = ui if isinstance(o, np.ndarray) else type(o)(ui)
    for i, leaf in enumerate(ct_leaves):
        if not is_float_leaf(leaf) and not isinstance(leaf, np.ndarray):
            ct_leaves[i] = leaf
    cotangent = pytree.unflatten(out_def, ct_leaves)

    plus = f(*[_axpy(a, vi, eps) for a, vi in zip(args, v)])
    minus = f(*[_axpy(a, vi, -eps) for a, vi in zip(args, v)])
    numeric = (_inner(plus, u) - _inner(minus, u)) / (2 * eps)
    tangents = _tangent_trees(args, v)
    if "rev" in modes:
        grads = vjp_fn(cotangent)
        analytic = sum(_inner(g, vi) for g, vi in zip(grads, v) if g is not None)
        _compare("reverse-mode", order, analytic, numeric, rtol, atol)
    if "fwd" in modes:
        _, t_out = jvp(f, args, tangents)
        _compare("forward-mode", order, _inner(t_out, u), numeric, rtol, atol)
    if order > 1:
        if "rev" in modes:

            def reverse_directional(*xs: Any) -> Any:
                return vjp(f, *xs)[1](cotangent)

            _check(reverse_directional, args, order - 1, modes, eps, rtol, atol, rng)
        if "fwd" in modes:

            def forward_directional(*xs: Any) -> Any:
                return jvp(f, xs, tangents)[1]

            _check(forward_directional, args, order - 1, modes, eps, rtol, atol, rng)
