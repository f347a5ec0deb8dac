"""The Numba CPU executor: memory, layouts, guards, special values and the disk cache.

``test_executor_agreement.py`` checks every primitive against the reference executor; this file
checks what is particular to the CPU executor: its arena is reused between runs (results must never
be overwritten), runs may be concurrent, inputs may be any array layout, host steps may return views,
guards raise before anything that depends on them runs, and the generated-module cache rebuilds what
is stale or corrupt.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from gradjit.kernels import cache, get_executor
from gradjit.kernels.cpu import CpuExecutor, plan_of
from gradjit.kernels.reference import GuardFailure, ReferenceExecutor

import gradjit as gj

REF = ReferenceExecutor()
CPU = get_executor("cpu")


def agree(wl: gj.Wengert, *args: Any, exact: bool = False) -> list:
    want = REF.run(wl, args)
    got = CPU.run(wl, args)
    for g, w in zip(got, want, strict=True):
        ga, wa = np.asarray(g), np.asarray(w)
        assert ga.shape == wa.shape and ga.dtype == wa.dtype
        if exact:
            np.testing.assert_array_equal(ga, wa)
        else:
            scale = float(np.max(np.abs(wa), initial=0.0)) if wa.dtype.kind == "f" else 0.0
            np.testing.assert_allclose(ga, wa, rtol=1e-13, atol=1e-13 * scale)
    return got


def test_registered_and_named() -> None:
    assert isinstance(CPU, CpuExecutor) and CPU.name == "cpu"


# -- memory --------------------------------------------------------------------------------------
def test_results_survive_later_runs_of_the_same_list() -> None:
    def f(x):
        h = np.tanh(x @ np.ones((4, 3)))  # a host step between kernel segments
        return h * h + x[:, :3], np.sum(h, axis=0)

    x = np.linspace(-1, 1, 8).reshape(2, 4)
    wl = gj.make_wengert(f)(x)
    first = [np.copy(r) for r in CPU.run(wl, [x])]
    kept = CPU.run(wl, [x])
    CPU.run(wl, [x * 3.0])
    for a, b in zip(kept, first):
        np.testing.assert_array_equal(a, b)
    agree(wl, x * 0.5)


def test_lists_with_the_same_structure_share_a_plan() -> None:
    f = lambda x: np.exp(x) * 2.0
    wl1 = gj.make_wengert(f)(np.ones(3))
    wl2 = gj.make_wengert(f)(np.zeros(3))
    assert plan_of(wl1) is plan_of(wl2)
    assert plan_of(wl1) is not plan_of(gj.make_wengert(f)(np.ones(4)))


def test_literals_are_read_from_each_list() -> None:
    x = np.arange(4.0, dtype=np.float32)
    wl2 = gj.make_wengert(lambda x: x * 2.0 + 1)(x)
    wl3 = gj.make_wengert(lambda x: x * 3.0 + 5)(x)
    assert wl2 == wl3 and plan_of(wl2) is plan_of(wl3)  # literal values are not structure
    agree(wl2, x, exact=True)
    agree(wl3, x, exact=True)
    wl_f32 = gj.make_wengert(lambda x: x * 0.1)(x)  # a Python float with float32 is a float32
    agree(wl_f32, x, exact=True)


def test_concurrent_runs_use_their_own_memory() -> None:
    def f(x):
        y = np.sin(x) * x
        return np.cumsum(y) + np.sum(y * y)

    x0 = np.linspace(0, 1, 5000)
    wl = gj.make_wengert(gj.grad(lambda x: np.sum(f(x))))(x0)
    inputs = [x0 * k for k in range(1, 9)]
    want = [REF.run(wl, [x])[0] for x in inputs]
    got: dict[int, np.ndarray] = {}

    def work(k: int) -> None:
        for _ in range(20):
            got[k] = CPU.run(wl, [inputs[k]])[0]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(len(inputs)):
        np.testing.assert_allclose(got[k], want[k], rtol=1e-13, atol=1e-13 * np.max(np.abs(want[k])))


def test_a_host_result_that_views_the_arena_is_copied_out() -> None:
    identity = gj.primitive(lambda a: a[::-1])  # returns a view of its argument

    def f(x):
        y = x * 2.0 + 1.0
        return identity(y) * 1.0, identity(y)

    x = np.arange(4.0)
    wl = gj.make_wengert(f)(x)
    a = CPU.run(wl, [x])
    b = CPU.run(wl, [x + 10.0])
    np.testing.assert_array_equal(a[1], [7.0, 5.0, 3.0, 1.0])
    np.testing.assert_array_equal(b[1], [27.0, 25.0, 23.0, 21.0])


def test_inputs_any_layout_and_python_scalars() -> None:
    base = np.arange(24.0).reshape(4, 6)
    wl = gj.make_wengert(lambda x, s: np.sqrt(x + 1.0) * s)(base[:, ::2].T, 2.0)
    agree(wl, base[:, ::2].T, 2.0)
    agree(wl, np.ascontiguousarray(base[:, 1::2].T), np.float64(3.0))
    with pytest.raises(ValueError, match="shape"):
        CPU.run(wl, [np.ones((2, 2)), 1.0])
    with pytest.raises(ValueError, match="dtype"):
        CPU.run(wl, [base[:, ::2].T.astype(np.float32), 1.0])


def test_outputs_inputs_views_and_scalars() -> None:
    def f(x):
        return x, x.T, np.sum(x), np.reshape(x * 2.0, (6,)), 3.0

    x = np.arange(6.0).reshape(2, 3)
    wl = gj.make_wengert(f)(x)
    out = CPU.run(wl, [x])
    assert out[0] is x and out[4] == 3.0
    np.testing.assert_array_equal(out[1], x.T)
    assert type(out[2]) is np.float64 and out[2] == 15.0
    np.testing.assert_array_equal(out[3], np.arange(6.0) * 2.0)


# -- layouts -------------------------------------------------------------------------------------
def test_strided_broadcast_and_transposed_operands() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((3, 4, 5)), rng.standard_normal((5, 4))

    def f(x, y):
        a = x * y.T + x[:, ::-1, :] - np.broadcast_to(y[None, None, :, 0], (3, 4, 5))
        b = np.transpose(a, (2, 0, 1)).reshape(5, 12)  # a reshape that needs a copy
        return np.sum(a, axis=(0, 2)), np.max(b, axis=1, keepdims=True), b[::2, 1:7:3], np.cumsum(a, axis=1)

    wl = gj.make_wengert(f)(x, y)
    agree(wl, x, y)
    agree(gj.make_wengert(gj.grad(lambda x, y: np.sum(f(x, y)[0] ** 2) + np.sum(f(x, y)[3]), (0, 1)))(x, y), x, y)


def test_reductions_and_scans_over_any_axes() -> None:
    x = np.random.default_rng(1).standard_normal((3, 4, 5))
    for axis in [(0,), (1,), (2,), (0, 2), (0, 1, 2)]:
        for keep in (False, True):
            agree(gj.make_wengert(lambda x: np.sum(x, axis=axis, keepdims=keep))(x), x)
            agree(gj.make_wengert(lambda x: np.min(x, axis=axis, keepdims=keep))(x), x, exact=True)
            agree(gj.make_wengert(lambda x: np.prod(x, axis=axis, keepdims=keep))(x), x)
    for axis in (None, 0, 1, 2):
        agree(gj.make_wengert(lambda x: (np.argmax(x, axis=axis), np.argmin(x.T, axis=axis)))(x), x, exact=True)
    for axis in (0, 1, 2):
        agree(gj.make_wengert(lambda x: np.cumprod(x, axis=axis))(x), x, exact=True)


def test_matmuls_small_in_the_interpreter_large_through_blas() -> None:
    from gradjit.kernels import lower

    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((2, 1, 3, 5)), rng.standard_normal((4, 5, 2))
    v = rng.standard_normal(5)
    big = rng.standard_normal((64, 64))

    def f(a, b, v, big):
        return a @ b, v @ b, a @ v, v @ v, np.swapaxes(a, -1, -2)[0, 0] @ a[1, 0], big @ big.T

    wl = gj.make_wengert(f)(a, b, v, big)
    kinds = [type(lower.classify(e)).__name__ for e in wl.eqns if e.prim.name == "matmul"]
    assert kinds.count("Matmul") == 5 and kinds.count("NoneType") == 1  # the 64x64 product calls BLAS
    agree(wl, a, b, v, big)
    grad_wl = gj.make_wengert(gj.grad(lambda *xs: sum(np.sum(np.tanh(r)) for r in f(*xs)), (0, 1, 2, 3)))(a, b, v, big)
    agree(grad_wl, a, b, v, big)
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    got = CPU.run(gj.make_wengert(np.matmul)(a32, b32), [a32, b32])[0]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, a32 @ b32, rtol=1e-5, atol=1e-6)


def test_index_add_and_set_with_basic_indexing_run_in_the_program() -> None:
    from gradjit.primitives import index_add_p, index_set_p
    from gradjit.tracing import bind

    rng = np.random.default_rng(9)
    x = rng.standard_normal((6, 5))
    trees = [
        ((slice(1, None, 2),), (3, 5)), ((slice(None, None, -2), 2), (3,)), ((1,), (5,)), ((2, 3), ()),
        ((slice(None), slice(4, 0, -1)), (6, 4)), ((Ellipsis, 0), (6,)), ((slice(1, 4), None), (3, 1, 5)),
        ((slice(None),), (5,)),  # broadcast over the rows
    ]  # fmt: skip
    for tree, vshape in trees:
        v = rng.standard_normal(vshape)
        for prim in (index_add_p, index_set_p):
            wl = gj.make_wengert(lambda x, v: bind(prim, x * 1.5, v * 2.0, tree=tree) + 1.0)(x, v)
            assert [s[0] for s in plan_of(wl).plan.steps] == ["seg"]  # no host step
            agree(wl, x, v, exact=True)
    x32 = x.astype(np.float32)  # float32 into float32, float64 added into float32 (rounded once, as NumPy)
    wl = gj.make_wengert(lambda x, v: bind(index_add_p, x, v, tree=(slice(None, 3),)))(x32, x[:3].astype(np.float64))
    agree(wl, x32, x[:3], exact=True)


def test_an_outer_product_matmul_is_an_elementwise_product() -> None:
    from gradjit.kernels import lower

    rng = np.random.default_rng(10)
    a, b = rng.standard_normal((3, 200, 1)), rng.standard_normal((1, 300))  # 60000 products, k = 1
    wl = gj.make_wengert(lambda a, b: (a @ b, a[0].T @ a[1]))(a, b)
    assert [type(lower.classify(e)).__name__ for e in wl.eqns if e.prim.name == "matmul"] == ["Ew", "Matmul"]
    agree(gj.make_wengert(np.matmul)(a, b), a, b, exact=True)  # one product per element: exactly BLAS's
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    agree(gj.make_wengert(np.matmul)(a32, b32), a32, b32, exact=True)


def test_large_reduction_is_accurate() -> None:
    x = np.random.default_rng(2).standard_normal(300_001)
    got = CPU.run(gj.make_wengert(np.sum)(x), [x])[0]
    assert abs(got - np.sum(x)) <= 1e-12 * np.sum(np.abs(x))
    x32 = x.astype(np.float32)
    got32 = CPU.run(gj.make_wengert(np.sum)(x32), [x32])[0]
    assert got32.dtype == np.float32 and abs(float(got32) - np.sum(x)) <= 1e-5 * np.sum(np.abs(x))


# -- integers, booleans, casts, special values ------------------------------------------------------
def test_integer_and_boolean_operations_are_exact() -> None:
    def f(x):
        i = (x * 7.0).astype(np.int64)
        j = i // 3 + i % 5 - (i & 6) + (i | 1) * (i ^ 3) - np.abs(i) * np.sign(i)
        mask = (i > 2) & ~(i == 5) | (x < -0.5)
        return j, mask, np.sum(mask), np.where(mask, j, -j), np.max(mask), np.cumsum(i), np.any(mask, axis=0)

    x = np.random.default_rng(3).uniform(-2, 2, (4, 6))
    wl = gj.make_wengert(f)(x)
    agree(wl, x, exact=True)
    big = np.full((4, 6), 2.0**60 / 7)  # int64 values beyond 2**53 stay exact
    agree(wl, big, exact=True)


def test_casts_and_float32_rounding() -> None:
    def f(x):
        y = x.astype(np.float32) * np.float32(1.1) + 0.1
        return y, y.astype(np.float64) / 3.0, (y > 0.5).astype(np.float32), np.round(y, 2), np.round(x, -1)

    x = np.random.default_rng(4).uniform(-20, 20, 50)
    agree(gj.make_wengert(f)(x), x, exact=True)


def test_special_values_follow_numpy() -> None:
    a = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 2.5, -2.5, 1e308])
    b = np.array([0.0, 1.0, -0.0, 0.0, np.inf, 2.0, 1.0, -np.inf, np.nan, 1e-308])

    def f(a, b):
        return (
            np.maximum(a, b), np.minimum(a, b), np.fmax(a, b), np.fmin(a, b), np.sign(a), a // b, a % b,
            np.fmod(a, b), np.logaddexp(a, b), np.logaddexp2(a, b), np.copysign(a, b), a / b, np.sinc(a),
            np.floor(a), np.rint(a), np.signbit(a), np.isnan(a / b), np.isinf(a), np.power(np.abs(a), b),
        )  # fmt: skip

    with np.errstate(all="ignore"):
        wl = gj.make_wengert(f)(a, b)
        want = REF.run(wl, [a, b])
        got = CPU.run(wl, [a, b])
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
        zero = np.asarray(w) == 0
        np.testing.assert_array_equal(np.signbit(g)[zero], np.signbit(w)[zero])  # signed zeros too


def test_integer_division_by_zero_gives_zero() -> None:
    x = np.array([3.0, -7.0, 0.0, 5.0])
    f = lambda x: (x.astype(np.int64) // np.array([0, 2, 0, -1]), x.astype(np.int64) % np.array([0, 2, 0, -1]))
    with np.errstate(all="ignore"):
        agree(gj.make_wengert(f)(x), x, exact=True)


# -- guards --------------------------------------------------------------------------------------------
def test_bool_guard_fails_before_the_branch_runs() -> None:
    def f(x):
        if np.sum(x) > 0:
            return np.log(x)
        return -x

    wl = gj.make_wengert(f)(np.ones(3))
    agree(wl, np.full(3, 2.0))
    with pytest.raises(GuardFailure, match="bool"):
        CPU.run(wl, [np.full(3, -1.0)])


def test_int_guards_on_integer_and_float_values() -> None:
    def f(x):
        n = int(np.sum(x > 0))  # an integer value: checked in the kernel
        k = int(np.max(x))  # a float value: checked on the host
        return x[:n] * k

    x = np.array([3.5, -1.0, 2.0])
    wl = gj.make_wengert(f)(x)
    agree(wl, x * 1.1)
    with pytest.raises(GuardFailure):
        CPU.run(wl, [np.array([3.5, 1.0, 2.0])])  # n changes
    with pytest.raises(GuardFailure):
        CPU.run(wl, [np.array([4.5, -1.0, 2.0])])  # k changes


def test_count_guard_of_a_data_dependent_shape() -> None:
    f = lambda x: x[np.nonzero(x > 0)] * 2.0
    x = np.array([1.0, -2.0, 3.0])
    wl = gj.make_wengert(f)(x)
    agree(wl, np.array([5.0, -1.0, 1.0]))
    with pytest.raises(GuardFailure):
        CPU.run(wl, [np.array([1.0, 2.0, 3.0])])


def test_while_loop_guards() -> None:
    def f(x):
        while np.max(np.abs(x)) > 1.0:
            x = x * 0.5
        return x

    x = np.array([3.0, -1.0])
    wl = gj.make_wengert(gj.grad(lambda x: np.sum(f(x) ** 2)))(x)
    agree(wl, np.array([3.5, -0.5]))
    with pytest.raises(GuardFailure):
        CPU.run(wl, [np.array([9.0, 0.0])])  # one more iteration


# -- hot plans compiled whole: tests/test_cpu_hot.py ---------------------------------------------------


# -- the disk cache --------------------------------------------------------------------------------------
_SOURCE = """
import numba


@numba.njit(cache=True)
def twice(x):
    return 2 * x


def warm(module):
    module.twice.compile("float64(float64)")
"""


@pytest.fixture
def cache_dir(tmp_path: Any) -> Any:
    old = gj.config.cache_dir
    gj.config.cache_dir = str(tmp_path)
    cache._MODULES.clear()
    yield tmp_path
    gj.config.cache_dir = old
    cache._MODULES.clear()


def _load(body: str = _SOURCE) -> Any:
    return cache.load_module("test", body, warm=lambda m: m.warm(m))


def test_cache_dir_setting_and_module_header(cache_dir: Any) -> None:
    m = _load()
    assert m.twice(2.0) == 4.0
    path = cache.module_path("test", _SOURCE)
    assert path.parent == cache_dir and path.exists()
    header = path.read_text().splitlines()[0]
    assert header.startswith("# gradjit-cache sha256=") and "numba=" in header and "gradjit=" in header
    assert list((cache_dir / "__pycache__").glob(f"{path.stem}.*.nbi"))


def test_a_corrupt_module_file_is_rewritten(cache_dir: Any) -> None:
    _load()
    path = cache.module_path("test", _SOURCE)
    path.write_text(path.read_text().replace("2 * x", "3 * x"))  # tampered: the hash no longer matches
    cache._MODULES.clear()
    assert _load().twice(2.0) == 4.0
    path.write_text(path.read_text()[:40])  # truncated
    cache._MODULES.clear()
    assert _load().twice(2.0) == 4.0


def test_corrupt_numba_cache_files_are_rebuilt(cache_dir: Any) -> None:
    _load()
    stem = cache.module_path("test", _SOURCE).stem
    for f in (cache_dir / "__pycache__").glob(f"{stem}.*"):
        f.write_bytes(b"\x80\x04garbage" * 3)
    cache._MODULES.clear()
    assert _load().twice(5.0) == 10.0


def test_a_module_that_fails_to_load_is_deleted_and_retried_once(cache_dir: Any) -> None:
    calls = []

    def warm(m: Any) -> None:
        calls.append(m)
        if len(calls) == 1:
            raise RuntimeError("simulated failure to compile")

    m = cache.load_module("test", _SOURCE, warm=warm)
    assert len(calls) == 2 and m.twice(1.0) == 2.0
    with pytest.raises(RuntimeError):
        cache._MODULES.clear()
        cache.load_module("test", _SOURCE + "\n# other\n", warm=lambda m: (_ for _ in ()).throw(RuntimeError("always")))


def test_interactive_executor_does_not_wait_for_the_interpreter(monkeypatch) -> None:
    """jit's executor (interactive) runs on the reference executor while the interpreter still loads."""
    import threading

    import numpy as np
    from gradjit.kernels import cpu, get_executor

    import gradjit as gj

    release = threading.Event()
    loading = threading.Thread(target=release.wait, daemon=True)
    loading.start()
    monkeypatch.setattr(cpu, "_INTERP", [])
    monkeypatch.setattr(cpu, "_PRELOADING", [loading])
    try:
        ex = get_executor("cpu", interactive=True)
        x = np.array([0.3, -1.2])
        wl = gj.make_wengert(gj.grad(lambda x: np.sum(np.tanh(x) ** 2)))(x)
        calls = []
        monkeypatch.setattr(ex._fallback, "run", lambda wl, inputs: calls.append(1) or [7.0])
        assert ex.run(wl, [x]) == [7.0] and calls == [1]
        assert get_executor("cpu").wait and not ex.wait
    finally:
        release.set()
