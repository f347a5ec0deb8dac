"""``check_grads``: derivatives against central finite differences, recursively to any order.

For order 1 it draws a random direction ``v`` for the inputs and a random cotangent ``u`` for the
output and compares ``<u, J v>`` from the VJP with ``<u, (f(x + eps v) - f(x - eps v)) / 2 eps>``.
For order k it checks the function ``x -> vjp(f, x)(u)`` to order k - 1, so second order exercises
the reverse sweep of the reverse sweep.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import pytree
from .api import vjp
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
    """Raise ``AssertionError`` unless ``f``'s derivatives match finite differences to ``order``."""
    for mode in modes:
        if mode != "rev":
            raise NotImplementedError(f"check_grads: mode {mode!r} is not available yet (only 'rev')")
    rng = np.random.default_rng(seed)
    _check_rev(f, args, order, eps, rtol, atol, rng)


def _check_rev(f: Callable, args: tuple, order: int, eps: float, rtol: float, atol: float,
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

    grads = vjp_fn(cotangent)
    analytic = sum(_inner(g, vi) for g, vi in zip(grads, v) if g is not None)
    plus = f(*[_axpy(a, vi, eps) for a, vi in zip(args, v)])
    minus = f(*[_axpy(a, vi, -eps) for a, vi in zip(args, v)])
    numeric = (_inner(plus, u) - _inner(minus, u)) / (2 * eps)
    if not abs(analytic - numeric) <= atol + rtol * abs(numeric):
        raise AssertionError(
            f"check_grads (order {order} remaining): reverse-mode directional derivative {analytic!r} "
            f"does not match central differences {numeric!r} (difference {abs(analytic - numeric):.3g})"
        )
    if order > 1:

        def directional(*xs: Any) -> Any:
            return vjp(f, *xs)[1](cotangent)

        _check_rev(directional, args, order - 1, eps, rtol, atol, rng)
