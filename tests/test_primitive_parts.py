"""Every primitive has every part.

For each primitive in ``gradjit.primitives.PRIMITIVES``: a NumPy implementation, a known kind, a
reverse rule for every positional (array) argument, either one per argument in ``vjps`` (a callable
or ``ZERO``) or a joint ``vjp_all``, and likewise a forward rule (``jvps`` or ``jvp_all``), written
for the primitive itself: the transposed-VJP fallback (``jvp_rules.transposed_jvp``) is for
user-defined gradients only. The number of array arguments is read from the implementation:
a ufunc's ``nin``, otherwise its positional parameters minus the static ones (passed as params).
A new primitive with a new static parameter name fails here until it is added to ``STATIC``: that is
the point, the test must know how to count a primitive's operands.

The elementwise rules (both modes) are also run once on sample values, so a rule that cannot even be called
(wrong signature, a typo in a NumPy name) is caught even if no other test reaches it.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import gradjit as gj  # noqa: F401  (installs every rule)
from gradjit import jvp_rules, primitives
from gradjit.primitives import PRIMITIVES, UFUNC_TO_PRIM
from gradjit.tracing import ZERO, Primitive

KINDS = {"elementwise", "reduction", "movement", "contraction", "linalg"}
# Parameter names that are static params (keywords of ``bind``), not operands.
STATIC = {"axis", "axes", "keepdims", "shape", "dtype", "stable", "tree", "subscripts", "decimals", "upper", "ord",
          "stride", "padding", "kernel", "include_pad"}  # fmt: skip
# Primitives whose variadic operands are integer index arrays (no gradient is ever needed).
INDEX_OPERANDS = {"getitem", "index_add", "index_set"}

NAMES = sorted(PRIMITIVES)


def operand_count(prim: Primitive) -> tuple[int, bool]:
    """(number of fixed array operands, whether more differentiable operands follow as *args)."""
    impl = prim.impl
    if isinstance(impl, np.ufunc):
        return impl.nin, False
    params = inspect.signature(impl).parameters.values()
    fixed = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in STATIC]
    unknown = [p.name for p in params if p.kind == p.KEYWORD_ONLY and p.name not in STATIC]
    assert not unknown, f"{prim.name}: keyword-only parameter(s) {unknown} are not in STATIC; add them if static"
    variadic = any(p.kind == p.VAR_POSITIONAL for p in params) and prim.name not in INDEX_OPERANDS
    return len(fixed), variadic


def test_the_primitive_set_is_not_empty_and_names_are_consistent() -> None:
    assert len(PRIMITIVES) >= 60
    for name, prim in PRIMITIVES.items():
        assert isinstance(prim, Primitive) and prim.name == name


def test_every_primitive_object_in_the_module_is_registered() -> None:
    found = {v for v in vars(primitives).values() if isinstance(v, Primitive)}
    registered = set(PRIMITIVES.values())
    assert found <= registered, sorted(p.name for p in found - registered)


def test_every_dispatched_ufunc_maps_to_a_registered_primitive() -> None:
    registered = set(PRIMITIVES.values())
    for ufunc, prim in UFUNC_TO_PRIM.items():
        if prim.kind == "user":  # registered at run time by gj.defvjp on a NumPy ufunc
            continue
        assert prim in registered, ufunc
        if ufunc is not np.bitwise_not:  # ~ on booleans is logical_not
            assert prim.impl is ufunc, (ufunc, prim)


@pytest.mark.parametrize("name", NAMES)
def test_primitive_has_every_part(name: str) -> None:
    prim = PRIMITIVES[name]
    assert callable(prim.impl), f"{name}: no implementation"
    assert prim.kind in KINDS, f"{name}: unknown kind {prim.kind!r}"
    n, variadic = operand_count(prim)
    if prim.vjp_all is not None:
        assert callable(prim.vjp_all)
        return
    assert not variadic, f"{name}: variadic differentiable operands need a joint rule (defvjp_all)"
    assert len(prim.vjps) >= n, f"{name}: {len(prim.vjps)} VJP rule(s) for {n} operand(s)"
    for i, rule in enumerate(prim.vjps[:n]):
        assert rule is ZERO or callable(rule), f"{name}: the rule for argument {i} is {rule!r}"


@pytest.mark.parametrize("name", NAMES)
def test_primitive_has_a_forward_rule(name: str) -> None:
    prim = PRIMITIVES[name]
    assert not jvp_rules.is_transposed(prim), f"{name}: a built-in primitive needs a forward rule of its own"
    n, variadic = operand_count(prim)
    if prim.jvp_all is not None:
        assert callable(prim.jvp_all)
        return
    assert not variadic, f"{name}: variadic differentiable operands need a joint rule (defjvp_all)"
    assert len(prim.jvps) >= n, f"{name}: {len(prim.jvps)} JVP rule(s) for {n} operand(s)"
    for i, rule in enumerate(prim.jvps[:n]):
        assert rule is ZERO or callable(rule), f"{name}: the forward rule for argument {i} is {rule!r}"


ELEMENTWISE_UFUNC_PRIMS = sorted(
    n for n, p in PRIMITIVES.items() if isinstance(p.impl, np.ufunc) and p.kind == "elementwise"
)


@pytest.mark.parametrize("name", ELEMENTWISE_UFUNC_PRIMS)
def test_elementwise_rules_run_on_sample_values(name: str) -> None:
    prim = PRIMITIVES[name]
    uf = prim.impl
    xs = [np.array([0.3, 0.6, 0.9]) + 0.1 * i for i in range(uf.nin)]
    with np.errstate(all="ignore"):
        try:
            ans = uf(*xs)
        except TypeError:  # bool/int-only ufuncs (bitwise ops)
            xs = [x > 0.5 for x in xs]
            ans = uf(*xs)
        g = np.ones_like(ans, dtype=float)
        rules = prim.vjp_all(g, ans, *xs) if prim.vjp_all is not None else [
            r if r is ZERO else r(g, ans, *xs) for r in prim.vjps
        ]  # fmt: skip
    for i, c in enumerate(rules):
        if c is ZERO or c is None:
            continue
        assert np.broadcast_shapes(np.shape(c), xs[i].shape) == xs[i].shape, f"{name}: argument {i}"
    with np.errstate(all="ignore"):
        tangents = [r if r is ZERO else r(np.ones_like(x, dtype=float), ans, *xs) for r, x in zip(prim.jvps, xs)]
    for i, c in enumerate(tangents):
        if c is not ZERO:  # a contribution broadcasts to the output's shape
            assert np.broadcast_shapes(np.shape(c), np.shape(ans)) == np.shape(ans), f"{name}: tangent {i}"
