"""The CPU executor agrees with the reference executor on the same Wengert lists (issue 3, item 5).

For every row of the primitive table (``primitive_table.ROWS``), in float64 and float32, the forward
list ``make_wengert(fn)`` and the gradient list ``make_wengert(grad(...))`` (forward and reverse
sweep in one list) are run on both executors, twice, with two draws of inputs (the second run
reuses the CPU executor's plan and arena). Results must have the same shapes and dtypes and agree
to a tight tolerance; operations that are exactly rounded in IEEE arithmetic (``+ - * /``, sqrt,
comparisons, min/max, floor, moves, ...) must agree bit for bit. The talk's examples are checked
the same way, and a guard that fails raises ``GuardFailure`` on both executors.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from gradjit.kernels import get_executor
from gradjit.kernels.reference import GuardFailure, ReferenceExecutor
from primitive_table import ROWS
from test_talk_examples import f_branch, f_loop, mlp_loss

import gradjit as gj
from gradjit import pytree

REF = ReferenceExecutor()
CPU = get_executor("cpu")
# float32 chains differ by a few ulps (float32 ops computed in float64 and rounded, vs NumPy's own
# float32 loops), amplified where values cancel: the tolerance is relative to each array's scale.
RTOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}

# Rows made only of operations whose results are exactly rounded (or exact), so the executors
# must agree bit for bit.
EXACT = frozenset(
    "neg positive reciprocal square sqrt abs fabs sign floor ceil rint trunc round isnan isinf isfinite signbit "
    "logical_not add sub mul div maximum minimum fmax fmin mod fmod copysign floor_divide eq ne lt le gt ge "
    "logical_and logical_or logical_xor bitwise_and bitwise_or bitwise_xor select astype stop_gradient "
    "reduce_max reduce_min reduce_any reduce_all argmax argmin argsort nonzero cumsum reshape transpose "
    "broadcast_to getitem index_set concatenate".split()
)


def assert_agree(got: list, want: list, rtol: float, exact: bool = False) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if w is None:
            assert g is None
            continue
        ga, wa = np.asarray(g), np.asarray(w)
        assert ga.shape == wa.shape and ga.dtype == wa.dtype, (ga.shape, ga.dtype, wa.shape, wa.dtype)
        if exact or wa.dtype.kind not in "fc":
            np.testing.assert_array_equal(ga, wa)
        else:
            scale = float(np.max(np.abs(wa[np.isfinite(wa)]), initial=0.0))
            np.testing.assert_allclose(ga, wa, rtol=rtol, atol=rtol * scale, equal_nan=True)


def run_both(wl: gj.Wengert, args: list, rtol: float, exact: bool = False) -> None:
    try:
        want = REF.run(wl, args)
    except GuardFailure:
        with pytest.raises(GuardFailure):
            CPU.run(wl, args)
        return
    assert_agree(CPU.run(wl, args), want, rtol, exact)


def _sum_sin(fn: Any) -> Any:
    return lambda *a: np.sum(np.sin(fn(*a)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_primitive_rows_agree(row: Any, dtype: Any) -> None:
    rng = np.random.default_rng(0)
    args = list(row.make_args(rng, dtype))
    again = list(row.make_args(np.random.default_rng(1), dtype))
    rtol = RTOL[np.result_type(*args)]
    exact = row.prims <= EXACT
    forward = gj.make_wengert(row.fn)(*args)
    argnums = tuple(range(len(args)))
    gradient = gj.make_wengert(gj.grad(_sum_sin(row.fn), argnums=argnums))(*args)
    for wl in (forward, gradient):
        run_both(wl, args, rtol, exact and wl is forward)
        run_both(wl, again, rtol, exact and wl is forward)


def test_the_talks_branch_and_its_guard() -> None:
    wl = gj.make_wengert(gj.grad(f_branch, argnums=(0, 1, 2)))(3.5, 2.1, 1.1)
    run_both(wl, [3.5, 2.1, 1.1], 1e-15)
    run_both(wl, [1.5, 2.5, 0.5], 1e-15)
    with pytest.raises(GuardFailure):
        CPU.run(wl, [3.5, 1.1, 2.1])  # b < c: the other branch


def test_the_talks_loop_and_mlp() -> None:
    wl = gj.make_wengert(gj.value_and_grad(f_loop), argnums=0)(3.0, 3)
    run_both(wl, [3.0], 1e-15)
    rng = np.random.default_rng(1)
    W = [rng.standard_normal((5, 8)) * 0.5, rng.standard_normal((8, 3)) * 0.5]
    params = {"W": W, "b": [np.ones(8), np.ones(3)]}
    x = rng.standard_normal((6, 5))
    y = np.eye(3)[rng.integers(0, 3, size=6)]
    wl = gj.make_wengert(gj.value_and_grad(mlp_loss), argnums=0)(params, x, y)
    leaves, _ = pytree.flatten(params)
    run_both(wl, leaves, 1e-12)
    run_both(wl, [leaf * 0.5 for leaf in leaves], 1e-12)


def test_straight_through_floor_and_affine_layer() -> None:
    a = np.eye(3) * 1.3
    with gj.gradients({np.floor: lambda g, ans, x: g}):
        wl = gj.make_wengert(gj.grad(lambda a: np.sum(np.floor(a**3))))(a)
    run_both(wl, [a], 0.0, exact=True)
    rng = np.random.default_rng(0)
    W, x, b = rng.standard_normal((4, 3)), rng.standard_normal(3), rng.standard_normal(4)
    wl = gj.make_wengert(gj.grad(lambda W, x, b: np.sum(W @ x + b), argnums=(0, 1, 2)))(W, x, b)
    run_both(wl, [W, x, b], 1e-14)
