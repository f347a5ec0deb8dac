"""The Wengert list: printing, structural equality and hashing, consistency checks, and replay.

- ``str()`` is one equation a line (``v4:f64[] = sin v1``), with inputs, constants, guards, outputs.
- Equality and ``hash`` are structural: they ignore the values of inputs, constants and literals,
  but not shapes, dtypes, primitives, wiring, params or guards (another branch is another program).
- ``structural_hash()`` is the same in another process (it is the disk-cache key).
- ``make_wengert(grad(f))`` records the reverse sweep as ordinary equations.
- The reference executor (``gradjit.kernels.run``) replays a list, and refuses with
  ``GuardFailure`` when a guard no longer holds instead of returning a stale answer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from gradjit.kernels import run
from gradjit.kernels.reference import GuardFailure

import gradjit as gj
from gradjit.wengert import Eqn, Var, Wengert


def f_branch(a, b, c):
    if b > c:
        return a * np.sin(b)
    return a + b * c


W = np.arange(6.0).reshape(2, 3)


def f_affine(x):
    return np.sum(np.tanh(W @ x + 1.0))


# ---------------------------------------------------------------------------------------------
# Printing
# ---------------------------------------------------------------------------------------------
def test_str_one_equation_a_line_with_guards() -> None:
    wl = gj.make_wengert(f_branch)(3.5, 2.1, 1.1)
    assert str(wl) == "\n".join(
        [
            "inputs: v0:f64[] v1:f64[] v2:f64[]",
            "  v3:bool[] = gt v1 v2",
            "  guard bool(v3) == True",
            "  v4:f64[] = sin v1",
            "  v5:f64[] = mul v0 v4",
            "outputs: v5",
        ]
    )
    assert len(wl) == 3
    assert repr(wl) == "<Wengert: 3 inputs, 3 equations, 1 guards>"


def test_str_shows_constants_literals_and_params() -> None:
    wl = gj.make_wengert(f_affine)(np.ones(3))
    text = str(wl)
    print(text)
    lines = text.splitlines()
    assert lines[0] == "inputs: v0:f64[3]"
    assert lines[1] == "consts: c1:f64[2,3]"
    assert "  v2:f64[2] = matmul c1 v0" in lines
    assert "  v3:f64[2] = add v2 1.0" in lines  # a literal is inlined
    assert "  v4:f64[2] = tanh v3" in lines
    assert any(line.startswith("  v5:f64[] = reduce_sum v4  [axis=") for line in lines)
    assert lines[-1] == "outputs: v5"


def test_str_float32_and_integer_variables() -> None:
    wl = gj.make_wengert(lambda x: x[np.argmax(x)] * 2)(np.array([1.0, 3.0, 2.0], dtype=np.float32))
    lines = str(wl).splitlines()
    assert lines[0] == "inputs: v0:f32[3]"
    assert "  v1:i64[] = argmax v0  [axis=0 keepdims=False]" in lines
    # A traced array indexed by a traced integer: data flow (a getitem with an index operand), not a guard.
    assert "  v2:f32[] = getitem v0 v1  [tree=([])]" in lines
    assert "  v3:f32[] = mul v2 2" in lines
    assert not wl.guards


def test_outputs_keep_their_structure() -> None:
    wl = gj.make_wengert(lambda x: {"y": x * 2.0, "n": 3, "z": (np.sin(x), None)})(1.0)
    leaves = [repr(o) for o in wl.outputs]
    assert leaves == ["3", "v1", "v2", "None"]  # dict keys in sorted order: n, y, z


# ---------------------------------------------------------------------------------------------
# Structural equality and hashing
# ---------------------------------------------------------------------------------------------
def test_equal_at_other_values() -> None:
    a = gj.make_wengert(f_branch)(3.5, 2.1, 1.1)
    b = gj.make_wengert(f_branch)(-1.0, 5.0, 0.25)
    assert a == b and hash(a) == hash(b) and a.structural_hash() == b.structural_hash()
    x1, x2 = np.ones(3), np.array([0.5, -2.0, 7.0])
    assert gj.make_wengert(f_affine)(x1) == gj.make_wengert(f_affine)(x2)


def test_constant_and_literal_values_are_not_structure() -> None:
    def make(scale, table):
        return gj.make_wengert(lambda x: np.sum(x * scale + table))(np.ones(3))

    assert make(2.0, np.zeros(3)) == make(3.0, np.ones(3))


def test_other_branch_is_another_program() -> None:
    a = gj.make_wengert(f_branch)(3.5, 2.1, 1.1)
    b = gj.make_wengert(f_branch)(3.5, 1.1, 2.1)
    assert a != b and a.structural_hash() != b.structural_hash()


def test_only_the_guard_value_differs() -> None:
    # Same equations, different observed guard value: still different programs.
    def f(x):
        return x * 2.0 if x > 0 else x * 2.0

    a, b = gj.make_wengert(f)(1.0), gj.make_wengert(f)(-1.0)
    assert [str(e) for e in a.eqns] == [str(e) for e in b.eqns]
    assert a != b


@pytest.mark.parametrize(
    "other",
    [
        lambda: gj.make_wengert(f_affine)(np.ones(3, dtype=np.float32)),  # dtype
        lambda: gj.make_wengert(lambda x: np.sum(np.tanh(W.T @ x[:2] + 1.0)))(np.ones(3)),  # structure
        lambda: gj.make_wengert(lambda x: np.sum(np.sin(W @ x + 1.0)))(np.ones(3)),  # primitive
        lambda: gj.make_wengert(lambda x: np.sum(np.tanh(W @ x + 1.0), axis=0, keepdims=True))(np.ones(3)),  # params
        lambda: gj.make_wengert(lambda x: np.sum(np.tanh(W @ x + 1)))(np.ones(3)),  # literal type
    ],
    ids=["dtype", "structure", "primitive", "params", "literal-type"],
)
def test_differences_that_matter(other) -> None:
    base = gj.make_wengert(f_affine)(np.ones(3))
    assert base != other()
    assert base.structural_hash() != other().structural_hash()


def test_other_shape_is_another_program() -> None:
    f = lambda x: np.sum(np.sin(x))  # noqa: E731
    assert gj.make_wengert(f)(np.ones(3)) != gj.make_wengert(f)(np.ones(4))
    assert gj.make_wengert(f)(np.ones((3, 1))) != gj.make_wengert(f)(np.ones((1, 3)))


def test_wiring_matters() -> None:
    a = gj.make_wengert(lambda x, y: x * np.sin(y))(1.0, 2.0)
    b = gj.make_wengert(lambda x, y: y * np.sin(x))(1.0, 2.0)
    assert a != b


def test_usable_as_a_dict_key() -> None:
    cache = {gj.make_wengert(f_branch)(3.5, 2.1, 1.1): "first"}
    assert cache[gj.make_wengert(f_branch)(0.0, 9.0, 1.0)] == "first"
    assert gj.make_wengert(f_branch)(0.0, 1.0, 9.0) not in cache


_HASH_SCRIPT = textwrap.dedent(
    """
    import numpy as np
    import gradjit as gj

    W = np.arange(6.0).reshape(2, 3)

    def f(x, y):
        if np.sum(x) > 0:
            return np.sum(np.tanh(W @ x + 1.0)) * y, {"aux": x.astype(np.float32)}
        return y

    print(gj.make_wengert(f)(np.ones(3), 2.0).structural_hash())
    print(gj.make_wengert(gj.grad(lambda x: np.sum(np.tanh(W @ x) ** 2)))(np.ones(3)).structural_hash())
    """
)


def test_structural_hash_is_deterministic_across_processes() -> None:
    here: list[str] = []
    exec(compile(_HASH_SCRIPT, "<hash script>", "exec"), {"print": here.append})
    assert len(here) == 2 and all(len(h) == 64 for h in here) and here[0] != here[1]
    for seed in ("1", "12345"):  # str hashing differs between these processes
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run(
            [sys.executable, "-c", _HASH_SCRIPT], capture_output=True, text=True, env=env, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == here


# ---------------------------------------------------------------------------------------------
# check()
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [
        lambda: gj.make_wengert(f_branch)(3.5, 2.1, 1.1),
        lambda: gj.make_wengert(f_affine)(np.ones(3)),
        lambda: gj.make_wengert(gj.grad(f_affine))(np.ones(3)),
        lambda: gj.make_wengert(gj.grad(gj.grad(np.tanh)))(0.3),
        lambda: gj.make_wengert(lambda x: np.cumprod(x)[x > 0.5])(np.linspace(0, 1, 5)),
    ],
    ids=["branch", "affine", "grad", "grad-grad", "mask"],
)
def test_check_passes_on_real_lists(make) -> None:
    make().check()


def test_check_catches_use_before_definition_and_redefinition() -> None:
    wl = gj.make_wengert(lambda x: np.sin(np.cos(x)))(1.0)
    wl.check()
    swapped = Wengert(wl.inputs, wl.consts, wl.eqns[::-1], wl.outputs, wl.guards)
    with pytest.raises(ValueError, match="before it is defined"):
        swapped.check()
    e = wl.eqns[0]
    twice = Wengert(wl.inputs, wl.consts, [e, Eqn(e.prim, e.ins, e.out, e.params)], wl.outputs, wl.guards)
    with pytest.raises(ValueError, match="redefines"):
        twice.check()
    dangling = Wengert(wl.inputs, wl.consts, wl.eqns, [Var(99, (), np.dtype(float))], wl.guards)
    with pytest.raises(ValueError, match="undefined"):
        dangling.check()


# ---------------------------------------------------------------------------------------------
# The reverse sweep is a Wengert list
# ---------------------------------------------------------------------------------------------
def test_make_wengert_of_grad_contains_the_reverse_sweep() -> None:
    wl = gj.make_wengert(gj.grad(f_branch, argnums=(0, 1)))(3.0, 2.0, 1.0)
    print(wl)
    names = [e.prim.name for e in wl.eqns]
    # forward: gt, sin; reverse: d/da = sin(b) (the forward value), d/db = a cos(b). The forward
    # product a * sin(b) is not an output of grad: dead code, dropped (``gradjit.simplify``).
    assert names == ["gt", "sin", "cos", "mul"]
    assert len(wl.outputs) == 2
    assert [str(g) for g in wl.guards] == ["guard bool(v3) == True"]
    wl.check()


def test_make_wengert_of_grad_of_an_array_function() -> None:
    wl = gj.make_wengert(gj.grad(f_affine))(np.ones(3))
    names = [e.prim.name for e in wl.eqns]
    assert names.count("matmul") == 2  # W @ x forward, W^T @ g backward
    assert wl.outputs[0].shape == (3,)


# ---------------------------------------------------------------------------------------------
# Replay with the reference executor
# ---------------------------------------------------------------------------------------------
def test_reference_executor_reproduces_the_value() -> None:
    wl = gj.make_wengert(f_branch)(3.5, 2.1, 1.1)
    assert run(wl, 3.5, 2.1, 1.1) == [f_branch(3.5, 2.1, 1.1)]
    assert run(wl, 1.0, 3.0, 0.0) == [f_branch(1.0, 3.0, 0.0)]  # same branch, other values


def test_reference_executor_reproduces_arrays_and_gradients() -> None:
    x1, x2 = np.ones(3), np.array([0.3, -0.2, 0.1])
    wl = gj.make_wengert(f_affine)(x1)
    np.testing.assert_array_equal(run(wl, x2)[0], f_affine(x2))
    gwl = gj.make_wengert(gj.grad(f_affine))(x1)
    np.testing.assert_allclose(run(gwl, x2)[0], gj.grad(f_affine)(x2), rtol=1e-15)


def test_reference_executor_second_derivative() -> None:
    wl = gj.make_wengert(gj.grad(gj.grad(np.tanh)))(0.3)
    (d2,) = run(wl, 0.8)
    np.testing.assert_allclose(d2, gj.grad(gj.grad(np.tanh))(0.8), rtol=1e-15)


def test_reference_executor_raises_guard_failure_when_a_branch_flips() -> None:
    wl = gj.make_wengert(f_branch)(3.5, 2.1, 1.1)
    with pytest.raises(GuardFailure, match="bool"):
        run(wl, 3.5, 1.1, 2.1)
    gwl = gj.make_wengert(gj.grad(f_branch))(3.5, 2.1, 1.1)
    with pytest.raises(GuardFailure):
        run(gwl, 3.5, 1.1, 2.1)


def test_reference_executor_checks_loop_trip_counts() -> None:
    def f(x):
        while x < 10.0:
            x = x * 2.0
        return x

    wl = gj.make_wengert(f)(3.0)  # 3 -> 6 -> 12: two iterations
    assert run(wl, 4.0) == [16.0]
    with pytest.raises(GuardFailure):
        run(wl, 1.0)  # would need four iterations
    with pytest.raises(GuardFailure):
        run(wl, 5.0)  # one iteration


def test_reference_executor_checks_traced_indices() -> None:
    table = np.array([10.0, 20.0, 30.0])
    wl = gj.make_wengert(lambda x: table[np.argmax(x)] * np.max(x))(np.array([1.0, 3.0, 2.0]))
    assert run(wl, np.array([0.0, 5.0, 1.0])) == [100.0]
    with pytest.raises(GuardFailure, match="index"):
        run(wl, np.array([9.0, 5.0, 1.0]))


def test_reference_executor_rejects_wrong_inputs() -> None:
    wl = gj.make_wengert(f_affine)(np.ones(3))
    with pytest.raises(ValueError, match="shape"):
        run(wl, np.ones(4))
    with pytest.raises(ValueError, match="inputs"):
        run(wl, np.ones(3), np.ones(3))
