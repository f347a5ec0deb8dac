"""gj.checkpoint: same gradients (bit for bit), intermediates not kept, recomputation in the sweep.

Covers: first-order gradients against the checkpoint-free function with ``np.array_equal``
(chains, contractions, pytrees, closures, kwargs, random numbers drawn inside the function),
both policies, higher order (grad of grad, forward-over-reverse, forward mode, Taylor mode), the
Wengert list (what is cut, what the reverse sweep recomputes, guards kept and checked on replay),
errors, and memory measured with tracemalloc (NumPy reports its allocations to it).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import gradjit as gj
from gradjit import kernels
from gradjit.checkpoint import CheckpointError, checkpoint

GuardFailure = kernels.reference.GuardFailure
run_list = kernels.reference.run


def tanh_block(h, n=4):
    for _ in range(n):
        h = np.tanh(h)
    return h


def tanh_loss(x, layers=8, every=0, policy="nothing"):
    h = x
    if every:
        block = checkpoint(lambda h: tanh_block(h, every), policy=policy)
        for _ in range(layers // every):
            h = block(h)
    else:
        h = tanh_block(h, layers)
    return np.sum(h * h)


def mlp_loss(x, Ws, every=0, policy="nothing"):
    def block(h, Wb):
        for W in Wb:
            h = np.tanh(h @ W)
        return h

    if every:
        block = checkpoint(block, policy=policy)
    h = x
    step = every or len(Ws)
    for i in range(0, len(Ws), step):
        h = block(h, Ws[i : i + step])
    return np.sum(h**2)


@pytest.fixture
def mlp(rng):
    return rng.normal(size=(5, 4)), [rng.normal(size=(4, 4)) * 0.6 for _ in range(6)]


# ---------------------------------------------------------------------------------------------
# Gradients: bit for bit
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["nothing", "contractions"])
@pytest.mark.parametrize("every", [1, 2, 4, 8])
def test_tanh_chain_gradient_bit_for_bit(rng, every, policy):
    x = rng.normal(size=50)
    want = gj.grad(tanh_loss)(x, 8)
    got = gj.grad(tanh_loss)(x, 8, every, policy)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("policy", ["nothing", "contractions"])
@pytest.mark.parametrize("every", [1, 2, 3])
def test_mlp_gradient_bit_for_bit(mlp, every, policy):
    x, Ws = mlp
    want = gj.grad(mlp_loss, argnums=(0, 1))(x, Ws)
    got = gj.grad(mlp_loss, argnums=(0, 1))(x, Ws, every, policy)
    assert np.array_equal(got[0], want[0])
    assert all(np.array_equal(a, b) for a, b in zip(got[1], want[1]))


def test_value_is_unchanged(mlp):
    x, Ws = mlp
    v0, _ = gj.value_and_grad(mlp_loss)(x, Ws)
    v1, _ = gj.value_and_grad(mlp_loss)(x, Ws, 2)
    assert v0 == v1 == mlp_loss(x, Ws)


def test_pytree_arguments_results_and_kwargs(rng):
    def block(d, scale=1.0):
        a = np.tanh(d["x"] @ d["W"])
        b = np.exp(-a) * scale
        return {"a": a, "b": b, "n": 3, "none": None}, b.sum()

    def loss(x, W, s, ck):
        fn = checkpoint(block) if ck else block
        r, total = fn({"x": x, "W": W}, scale=s)
        return np.sum(r["a"] * r["b"]) * r["n"] + total * total

    x, W = rng.normal(size=(3, 4)), rng.normal(size=(4, 2))
    want = gj.grad(loss, argnums=(0, 1, 2))(x, W, 0.7, False)
    got = gj.grad(loss, argnums=(0, 1, 2))(x, W, 0.7, True)
    for a, b in zip(got, want):
        assert np.array_equal(a, b)
    assert type(got[2]) is float


def test_unused_outputs_and_static_results(rng):
    block = checkpoint(lambda x: (np.sin(x), np.cos(x), "tag", 2))

    def loss(x):
        s, c, tag, k = block(x)
        assert tag == "tag" and k == 2
        return np.sum(c) * k

    x = rng.normal(size=6)
    assert np.array_equal(gj.grad(loss)(x), -2.0 * np.sin(x))


def test_output_that_is_an_input_or_a_constant(rng):
    const = rng.normal(size=4)
    block = checkpoint(lambda x, y: (x, np.tanh(y), const))

    def loss(x, y):
        a, b, c = block(x, y)
        assert c is const
        return np.sum(a * b * c)

    x, y = rng.normal(size=4), rng.normal(size=4)
    want = gj.grad(lambda x, y: np.sum(x * np.tanh(y) * const), argnums=(0, 1))(x, y)
    got = gj.grad(loss, argnums=(0, 1))(x, y)
    assert all(np.array_equal(a, b) for a, b in zip(got, want))


def test_captured_traced_values_are_inputs(rng):
    """A block closing over a traced W (and computing with W alone): gradients reach W."""

    def loss(x, W, ck):
        def block(h):
            return np.tanh(h @ np.sin(W)) * W[0, 0]

        fn = checkpoint(block) if ck else block
        return np.sum(fn(fn(x)) ** 2)

    x, W = rng.normal(size=(2, 3)), rng.normal(size=(3, 3))
    want = gj.grad(loss, argnums=(0, 1))(x, W, False)
    got = gj.grad(loss, argnums=(0, 1))(x, W, True)
    assert all(np.array_equal(a, b) for a, b in zip(got, want))


def test_random_numbers_drawn_inside_are_reused_by_the_recomputation(rng):
    def loss(x, ck, seed):
        gen = np.random.default_rng(seed)

        def block(h):
            return np.tanh(h) * gen.normal(size=h.shape)  # a new mask at every call

        fn = checkpoint(block) if ck else block
        return np.sum(fn(fn(x)))

    x = rng.normal(size=8)
    assert np.array_equal(gj.grad(loss)(x, True, 3), gj.grad(loss)(x, False, 3))


def test_integer_inputs_and_outputs(rng):
    block = checkpoint(lambda x, idx: (np.tanh(x)[idx], np.argmax(x)))

    def loss(x, idx):
        y, k = block(x, idx)
        return np.sum(y) * (k + 1)

    x, idx = rng.normal(size=7), np.array([0, 3, 3, 5])
    want = gj.grad(lambda x: np.sum(np.tanh(x)[idx]) * (np.argmax(x) + 1))(x)
    assert np.array_equal(gj.grad(loss)(x, idx), want)


def test_arguments_updated_in_place_are_rebound(rng):
    def block(h, y):
        h += 1.0
        y[1:] = np.sin(y[:-1])
        return np.tanh(h * y)

    def loss(x, y, ck):
        out = (checkpoint(block) if ck else block)(x, y)
        return np.sum(x * out * y)  # x and y as updated by block

    x, y = rng.normal(size=5), rng.normal(size=5)
    want = gj.grad(loss, argnums=(0, 1))(x, y, False)
    got = gj.grad(loss, argnums=(0, 1))(x, y, True)
    assert all(np.array_equal(a, b) for a, b in zip(got, want))


def test_without_an_active_trace_it_is_the_function(rng):
    x = rng.normal(size=3)
    assert np.array_equal(checkpoint(np.tanh)(x), np.tanh(x))


def test_decorator_forms(rng):
    @checkpoint
    def a(x):
        return np.sin(x)

    @checkpoint(policy="contractions")
    def b(x):
        return np.cos(x)

    x = rng.normal(size=3)
    assert np.array_equal(gj.grad(lambda x: np.sum(a(x) + b(x)))(x), np.cos(x) - np.sin(x))
    assert a.__name__ == "a" and gj.checkpoint is checkpoint


def test_nested_checkpoints_are_inlined(rng):
    inner = checkpoint(lambda h: np.tanh(np.tanh(h)))
    outer = checkpoint(lambda h: inner(inner(h)) * 2.0)
    x = rng.normal(size=5)
    want = gj.grad(lambda x: np.sum(np.tanh(np.tanh(np.tanh(np.tanh(x)))) * 2.0))(x)
    assert np.array_equal(gj.grad(lambda x: np.sum(outer(x)))(x), want)
    wl = gj.make_wengert(lambda x: outer(x))(x)
    assert [e.prim.name for e in wl.eqns] == ["checkpoint"]


def test_transform_inside_the_checkpointed_function(rng):
    def block(h):
        return gj.grad(lambda u: np.sum(np.sin(u) * h))(h) * h

    def loss(x, ck):
        fn = checkpoint(block) if ck else block
        return np.sum(fn(x))

    x = rng.normal(size=4)
    assert np.allclose(gj.grad(loss)(x, True), gj.grad(loss)(x, False), rtol=1e-13, atol=0)


def test_debug_mode_inlines(rng):
    x = rng.normal(size=3)
    with gj.debug_nans():
        g = gj.grad(lambda x: np.sum(checkpoint(np.tanh)(x)))(x)
    assert np.array_equal(g, 1 - np.tanh(x) ** 2)


# ---------------------------------------------------------------------------------------------
# Higher order and the other modes
# ---------------------------------------------------------------------------------------------
def test_grad_of_grad(rng):
    x = rng.normal(size=6)

    def h(x, every):
        return np.sum(gj.grad(tanh_loss)(x, 8, every) ** 2)

    assert np.allclose(gj.grad(h)(x, 2), gj.grad(h)(x, 0), rtol=1e-12, atol=1e-15)


def test_grad_of_grad_multi_export(mlp):
    x, Ws = mlp

    def h(x, every, policy):
        g = gj.grad(mlp_loss, argnums=(0, 1))(x, Ws, every, policy)
        return np.sum(g[0] ** 2) + sum(np.sum(w * w) for w in g[1])

    want = gj.grad(h)(x, 0, "nothing")
    for policy in ("nothing", "contractions"):
        assert np.allclose(gj.grad(h)(x, 2, policy), want, rtol=1e-11, atol=1e-14)


def test_third_order(rng):
    block = checkpoint(lambda x: np.sin(x) * np.exp(x))
    f0 = lambda x: np.sin(x) * np.exp(x)  # noqa: E731
    d3 = gj.grad(gj.grad(gj.grad(lambda x: block(x))))
    d3_0 = gj.grad(gj.grad(gj.grad(f0)))
    assert np.isclose(d3(0.3), d3_0(0.3), rtol=1e-13)


@pytest.mark.parametrize("policy", ["nothing", "contractions"])
def test_forward_mode_and_hvp(mlp, rng, policy):
    x, Ws = mlp
    v = rng.normal(size=x.shape)
    out0, t0 = gj.jvp(lambda x: mlp_loss(x, Ws), (x,), (v,))
    out1, t1 = gj.jvp(lambda x: mlp_loss(x, Ws, 2, policy), (x,), (v,))
    assert out0 == out1 and np.allclose(t1, t0, rtol=1e-13)
    h0 = gj.hvp(lambda x: mlp_loss(x, Ws), x, v)
    h1 = gj.hvp(lambda x: mlp_loss(x, Ws, 2, policy), x, v)
    assert np.allclose(h1, h0, rtol=1e-12, atol=1e-14)


def test_check_grads_both_modes(rng):
    block = checkpoint(lambda x, y: (np.tanh(x * y), np.sin(x) + y))

    def f(x, y):
        a, b = block(x, y)
        return np.sum(a * b)

    gj.check_grads(f, rng.normal(size=3), rng.normal(size=3), modes=("rev", "fwd"), order=2)


def test_taylor_mode(rng):
    block = checkpoint(lambda x: (np.tanh(x), np.exp(x)))

    def f(x):
        a, b = block(x)
        return a * b

    x, v = rng.normal(size=3), rng.normal(size=3)
    want = gj.taylor(lambda x: np.tanh(x) * np.exp(x), order=4)(x, v)
    got = gj.taylor(f, order=4)(x, v)
    assert all(np.allclose(a, b, rtol=1e-12) for a, b in zip(got, want))


# ---------------------------------------------------------------------------------------------
# The Wengert list
# ---------------------------------------------------------------------------------------------
def names(eqns):
    return [e.prim.name for e in eqns]


def test_forward_list_holds_only_checkpoint_equations(rng):
    x = rng.normal(size=4)
    wl = gj.make_wengert(tanh_loss)(x, 8, 4)
    wl.check()
    assert names(wl.eqns) == ["checkpoint", "checkpoint", "mul", "reduce_sum"]
    assert "export='out0'" in str(wl)
    assert run_list(wl, x)[0] == tanh_loss(x, 8, 4)


def test_reverse_sweep_shows_the_recomputation(rng):
    x = rng.normal(size=4)
    wl = gj.make_wengert(gj.grad(tanh_loss))(x, 8, 4)
    wl.check()
    forward = [e for e in wl.eqns if wl.sweep_depth(e) == 0]
    sweep = [e for e in wl.eqns if wl.sweep_depth(e) == 1]
    assert names(forward).count("tanh") == 0
    # Each block's 3 inner tanh are recomputed; its output is kept, not recomputed.
    assert names(sweep).count("tanh") == 6
    assert np.array_equal(run_list(wl, x)[0], gj.grad(tanh_loss)(x, 8))


def test_contractions_policy_keeps_products(mlp):
    x, Ws = mlp

    def sweep_matmuls(policy):
        wl = gj.make_wengert(gj.grad(mlp_loss))(x, Ws, 3, policy)
        return names(e for e in wl.eqns if wl.sweep_depth(e) == 1).count("matmul")

    # Per layer, the VJP takes one product (w.r.t. h); "nothing" recomputes the forward one too.
    assert sweep_matmuls("contractions") == 6
    assert sweep_matmuls("nothing") == 6 + 4  # each block's last product feeds a kept output
    wl = gj.make_wengert(mlp_loss)(x, Ws, 3, "contractions")
    assert sum("export='saved" in str(e) for e in wl.eqns) == 6  # every product: none is an output


def test_structure_is_a_cache_key(rng):
    a = gj.make_wengert(tanh_loss)(rng.normal(size=4), 8, 4, "contractions")
    b = gj.make_wengert(tanh_loss)(rng.normal(size=4), 8, 4, "contractions")
    c = gj.make_wengert(tanh_loss)(rng.normal(size=4), 8, 2, "contractions")
    assert a == b and a.structural_hash() == b.structural_hash()
    assert a != c


def branchy(h, s):
    if np.sum(h) > 0:
        return np.tanh(h) * s
    return np.sin(h) * s


def test_guards_inside_a_checkpoint_stay_in_the_list(rng):
    block = checkpoint(branchy)

    def f(x, s):
        return np.sum(block(x, s) ** 2)

    x = np.abs(rng.normal(size=5))
    wl = gj.make_wengert(f)(x, 1.5)
    wl.check()
    assert len(wl.guards) == 1 and "guard bool(" in str(wl)
    assert wl.guards[0].var is wl.eqns[0].out and wl.guards[0].position == 1
    assert np.isclose(run_list(wl, x, 1.5)[0], f(x, 1.5))
    with pytest.raises(GuardFailure):
        run_list(wl, -x, 1.5)
    for sign in (1, -1):
        want = gj.grad(lambda x: np.sum(branchy(x, 1.5) ** 2))(sign * x)
        assert np.array_equal(gj.grad(f)(sign * x, 1.5), want)
    wlg = gj.make_wengert(gj.grad(f))(x, 1.5)
    assert len(wlg.guards) == 1
    with pytest.raises(GuardFailure):
        run_list(wlg, -x, 1.5)


def test_multi_export_list_replays(mlp):
    x, Ws = mlp
    wl = gj.make_wengert(mlp_loss)(x, Ws, 3, "contractions")
    wl.check()
    assert "export='sweep'" in str(wl)
    assert np.isclose(run_list(wl, x, *Ws)[0], mlp_loss(x, Ws))


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------
def test_unknown_policy_names_the_operation_and_line():
    with pytest.raises(CheckpointError) as info:
        checkpoint(np.tanh, policy="everything")
    msg = str(info.value)
    assert msg.startswith("checkpoint: unknown policy 'everything'")
    assert "test_checkpoint.py" in msg and "policy='contractions'" in msg
    assert isinstance(info.value, (gj.GradjitError, ValueError))


def test_not_a_function():
    with pytest.raises(CheckpointError, match="expected a function"):
        checkpoint(3.0)


def test_errors_inside_leave_no_trace_behind(rng):
    def bad(x):
        raise ZeroDivisionError("inside")

    with pytest.raises(ZeroDivisionError):
        gj.grad(lambda x: np.sum(checkpoint(bad)(x)))(rng.normal(size=3))


# ---------------------------------------------------------------------------------------------
# Memory (measured, not timed)
# ---------------------------------------------------------------------------------------------
def _peak(fn, *args):
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = fn(*args)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, current - base, peak - base


def test_intermediates_are_not_retained(rng):
    x = rng.normal(size=50_000)  # 400 kB per array
    nbytes = x.nbytes
    wl0, kept0, _ = _peak(lambda: gj.make_wengert(tanh_loss)(x, 16))
    wl1, kept1, _ = _peak(lambda: gj.make_wengert(tanh_loss)(x, 16, 4))
    assert kept0 > 16 * nbytes  # every layer's output stays with the list
    assert kept1 < 5.5 * nbytes  # only the 4 block outputs and the loss's h * h (and small change) stay
    del wl0, wl1


def test_gradient_peak_memory_drops(rng):
    x = rng.normal(size=50_000)
    g0, _, peak0 = _peak(gj.grad(tanh_loss), x, 48)
    g1, _, peak1 = _peak(gj.grad(tanh_loss), x, 48, 8)
    assert np.array_equal(g0, g1)
    # Without: all 48 layer outputs at once. With: 6 block outputs, one block recomputed, temporaries
    # (measured 54 and 20 arrays).
    assert peak0 > 48 * x.nbytes
    assert peak1 < 22 * x.nbytes


def test_jit_checks_the_guard_of_a_checkpointed_branch(rng):
    block = checkpoint(branchy)
    fast = gj.jit(gj.grad(lambda x, s: np.sum(block(x, s) ** 2)))
    x = np.abs(rng.normal(size=5))
    for arg in (x, 2 * x, -x, x, -2 * x):
        want = gj.grad(lambda x: np.sum(branchy(x, 1.5) ** 2))(arg)
        np.testing.assert_allclose(fast(arg, 1.5), want, rtol=1e-14)  # executors agree to tolerance
    assert fast.stats["traces"] == 2 and fast.stats["guard_failures"] >= 1 and fast.stats["hits"] == 3


def test_jit_with_a_captured_array_lifted_into_the_checkpoint(rng):
    W = rng.normal(size=(4, 4))
    block = checkpoint(lambda h: np.tanh(h @ W), policy="contractions")
    fast = gj.jit(gj.grad(lambda x: np.sum(block(block(x)))))
    x = rng.normal(size=(3, 4))
    want = gj.grad(lambda x: np.sum(np.tanh(np.tanh(x @ W) @ W)))
    np.testing.assert_allclose(fast(x), want(x), rtol=1e-14)  # executors agree to tolerance
    W *= 2.0  # read at every call
    np.testing.assert_allclose(fast(x), want(x), rtol=1e-14)
    assert fast.stats["traces"] == 1


def test_benchmark_quick_run(tmp_path):
    """``benchmarks/bench_checkpoint.py --quick`` runs and finds every gradient equal bit for bit."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_checkpoint.py"
    saved_env = dict(os.environ)  # the module pins BLAS threads in os.environ; keep the test process's own
    spec = importlib.util.spec_from_file_location("bench_checkpoint", path)
    bench = importlib.util.module_from_spec(spec)
    sys.modules["bench_checkpoint"] = bench  # dataclasses look their module up there
    try:
        spec.loader.exec_module(bench)
        out = tmp_path / "checkpoint.md"
        assert bench.main(["--quick", "--out", str(out)]) == 0
    finally:
        sys.modules.pop("bench_checkpoint", None)
        os.environ.clear()
        os.environ.update(saved_env)
    text = out.read_text()
    assert text.count("| yes |") == 5 and "Issue target" in text
