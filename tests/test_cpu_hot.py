"""Hot plans compiled whole (``gradjit.kernels.hot``): the same numbers as the interpreter, bit for bit.

Each list here is compiled synchronously (``CpuExecutor(hot_after=1, hot_seconds=0, fuse="sync")``) and its results
compared with the interpreter's (``fuse=False``, the same plan) exactly, and with the reference
executor's to a tolerance. Compiling costs about a second per list on a cold cache, so the lists are
few and each covers much: elementwise groups of every rank with broadcast, strided and reversed
operands, reductions folded whole and along axes, integers, booleans and float32, both forms of the
small matmul (contiguous rows in lanes, the others in sequence), guards checked in compiled code,
host steps between compiled runs, and an RNN's gradient.
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

import numpy as np
import pytest
from gradjit.kernels import cache, hot
from gradjit.kernels.cpu import CpuExecutor, plan_of
from gradjit.kernels.reference import GuardFailure, ReferenceExecutor

import gradjit as gj

REF = ReferenceExecutor()
INTERPRETED = CpuExecutor(fuse=False)
COMPILED = CpuExecutor(hot_after=1, hot_seconds=0.0, fuse="sync")


def compiled_agrees(wl: gj.Wengert, *args: Any, whole: bool | None = None) -> list:
    """Run ``wl`` compiled: bit for bit the interpreter's results, and the reference's to 1e-12."""
    want = INTERPRETED.run(wl, list(args))
    got = COMPILED.run(wl, list(args))
    compiled = plan_of(wl).hot.compiled
    assert compiled is not None and any(s[0] == "hot" for s in compiled.steps), compiled
    if whole is not None:
        assert (compiled.run_whole is not None) == whole
    ref = REF.run(wl, list(args))
    for g, w, r in zip(got, want, ref, strict=True):
        ga, wa = np.asarray(g), np.asarray(w)
        assert ga.dtype == wa.dtype and ga.shape == wa.shape
        np.testing.assert_array_equal(ga, wa)
        if wa.dtype.kind == "f":
            tol = 1e-12 if wa.dtype == np.float64 else 1e-5  # float32: relative to the array's scale
            np.testing.assert_allclose(ga, r, rtol=tol, atol=tol * float(np.max(np.abs(r), initial=0.0)))
        else:
            np.testing.assert_array_equal(ga, r)
    return got


def _groups(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> Any:
    """Reductions folded whole and along an axis, integers and booleans, a float32 cast, broadcast,
    strided and reversed operands, and ops of several ranks. (Few transcendental functions: each one
    is a long inlined polynomial, and compile time grows with the code; their values are the
    interpreter's expressions, which ``test_executor_agreement`` checks.)"""
    a = np.sqrt(x * x + 1.0) * (x - y) - x[:, ::-1] * 0.5
    i = (a * 4.0).astype(np.int64) // 3
    m = (a > 0.1) & (i != 2)
    t = np.tanh(z[::2]) * z[1::2] ** 2
    return (
        np.sum(a), np.sum(a * y, axis=0), np.max(np.where(m, a, -a), axis=1), (a * i).astype(np.float32),
        np.any(m), np.prod(t[:4]), t, np.sum(i, axis=1), np.sum(i),
    )  # fmt: skip


def test_groups_and_reductions_give_the_interpreters_numbers() -> None:
    rng = np.random.default_rng(5)
    x, y, z = rng.uniform(-2, 2, (7, 9)), rng.uniform(-1, 1, (1, 9)), rng.uniform(-1, 1, 40)
    compiled_agrees(gj.make_wengert(_groups)(x, y, z), x, y, z, whole=True)


def test_a_gradient_list() -> None:
    rng = np.random.default_rng(6)
    x, y = rng.uniform(-2, 2, (7, 9)), rng.uniform(-1, 1, (1, 9))

    def loss(x, y):
        a = np.sqrt(x * x + 1.0) * y - x / (1.0 + y * y)
        # x[:, ::2]'s gradient adds into a strided view (index_add in compiled code); a square's gradient
        # is a power by a constant exponent (1.0: the loop that vectorizes)
        return np.sum(np.tanh(a) * y) + np.max(a) + np.sum(x[:, ::2] ** 2) + np.sum((a * a + 1.0) ** 1.5)

    wl = gj.make_wengert(gj.grad(loss, (0, 1)))(x, y)
    compiled_agrees(wl, x, y)
    compiled_agrees(wl, x * 0.5, y)  # a second run reuses the compiled code


def test_matmuls_in_lanes_and_in_sequence() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((2, 1, 3, 13)), rng.standard_normal((4, 13, 2))
    v, w = rng.standard_normal(13), rng.standard_normal((13, 13))

    def f(a, b, v, w):
        # a @ b: rows of b strided (in sequence); w @ v and v @ v: contiguous rows (8 lanes and a tail);
        # v @ w: a column of w per output; w.T @ v: a transposed operand; float32 products
        return a @ b, w @ v, v @ v, v @ w, w.T @ v, w[:5].astype(np.float32) @ w[:3].astype(np.float32).T

    compiled_agrees(gj.make_wengert(f)(a, b, v, w), a, b, v, w, whole=True)


def test_the_rnn_gradient() -> None:
    rng = np.random.default_rng(8)
    params = {"W_h": rng.standard_normal((6, 6)) * 0.4, "W_x": rng.standard_normal((6, 3)), "b": rng.standard_normal(6)}
    xs = rng.standard_normal((7, 3))

    def rnn(params, xs):
        h = np.zeros(6)
        for t in range(xs.shape[0]):
            h = np.tanh(params["W_h"] @ h + params["W_x"] @ xs[t] + params["b"])
        return np.sum(h * h)

    wl = gj.make_wengert(gj.grad(rnn))(params, xs)
    compiled_agrees(wl, params["W_h"], params["W_x"], params["b"], xs, whole=True)


def test_scalar_inputs_and_guards_in_compiled_code() -> None:
    def f(a, b, c):
        if b > c:  # a guard checked in compiled code
            return a * np.sin(b) + np.exp(-c) * b
        return a + b * c

    wl = gj.make_wengert(gj.grad(f, (0, 1, 2)))(3.5, 2.1, 1.1)
    got = compiled_agrees(wl, 3.5, 2.1, 1.1, whole=True)
    assert all(type(g) is np.float64 for g in got)
    compiled_agrees(wl, np.float64(1.5), np.array(2.5), 0.5)
    with pytest.raises(GuardFailure, match="bool"):
        COMPILED.run(wl, [3.5, 1.1, 2.1])  # b < c: the other branch

    def g(x):  # a guard between a host step (a large matmul) and compiled runs
        y = x @ np.ones((200, 200))
        if np.sum(y[0]) > 0:
            return np.sum(y * y, axis=0) * 2.0
        return y[0]

    x = np.full((2, 200), 0.01)
    wl = gj.make_wengert(g)(x)
    compiled_agrees(wl, x, whole=False)
    with pytest.raises(GuardFailure):
        COMPILED.run(wl, [-x])


def test_hot_compile_never_blocks_a_first_call() -> None:
    x = np.linspace(-1, 1, 41)
    wl = gj.make_wengert(lambda x: np.tanh(x) * np.cos(x) - x * 0.25)(x)
    ex = CpuExecutor(hot_after=3, hot_seconds=0.0)  # compiled in a background thread from the third run on
    ex.run(wl, [x])
    ex.run(wl, [x])
    assert not plan_of(wl).hot.started  # two runs compiled nothing
    want = ex.run(wl, [x])[0]
    assert plan_of(wl).hot.started
    hot.wait_for_background_compiles()
    assert plan_of(wl).hot.compiled is not None
    assert not [t for t in threading.enumerate() if t.name == "gradjit-hot"]
    np.testing.assert_array_equal(ex.run(wl, [x])[0], want)


def test_a_failed_compile_warns_and_keeps_interpreting(monkeypatch: Any) -> None:
    def fail(plan: Any) -> None:
        raise RuntimeError("no compiler")

    monkeypatch.setattr(hot, "compile_plan", fail)
    x = np.linspace(-1, 1, 43)
    wl = gj.make_wengert(lambda x: np.sqrt(x * x + 1.0) * 3.5)(x)
    with pytest.warns(UserWarning, match="compiling a hot plan failed"):
        got = CpuExecutor(hot_after=1, hot_seconds=0.0, fuse="sync").run(wl, [x])
    np.testing.assert_array_equal(got[0], np.sqrt(x * x + 1.0) * 3.5)
    assert plan_of(wl).hot.compiled is None


def test_stale_and_corrupt_cached_modules_are_rebuilt(tmp_path: Any) -> None:
    old = gj.config.cache_dir
    gj.config.cache_dir = str(tmp_path)
    cache._MODULES.clear()
    try:
        x = np.linspace(-1, 1, 9)
        wl = gj.make_wengert(lambda x: x * 3.0 + 1.0)(x)
        INTERPRETED.run(wl, [x])
        plan = plan_of(wl).plan
        hot.compile_plan(plan)
        (path,) = tmp_path.glob("hot_*.py")
        path.write_text(path.read_text().replace("return -1", "return 7"))  # tampered: the hash no longer matches
        for f in (tmp_path / "__pycache__").glob(f"{path.stem}.*"):
            f.write_bytes(b"garbage")
        cache._MODULES.clear()
        compiled = hot.compile_plan(plan)
        assert "return 7" not in path.read_text()
        shape, dtype, single = hot.out_block(plan)  # one output: the output block is that array
        assert single
        out = np.empty(shape, dtype)
        from gradjit.kernels.cpu import _binding

        runner, fconst, iconst, _ = _binding(wl)
        arena, _ = runner.acquire()
        runner.lock.release()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            status = compiled.run_whole(compiled.tab, fconst, iconst, arena.scratch, arena.bases, out, x)
        assert status == -1
        np.testing.assert_array_equal(out, x * 3.0 + 1.0)
    finally:
        gj.config.cache_dir = old
        cache._MODULES.clear()
