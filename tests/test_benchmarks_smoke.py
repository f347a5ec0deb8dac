"""Smoke test of ``benchmarks/bench_core.py``: it runs in its quick mode, every system's gradient
agrees with gradjit's, and the agreement check does reject a wrong gradient. No timing assertions.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import gradjit as gj

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_core.py"


@pytest.fixture(scope="module")
def bench():
    saved = dict(os.environ)  # the module pins BLAS threads in os.environ; keep the test process's own
    spec = importlib.util.spec_from_file_location("bench_core", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_core"] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("bench_core", None)
        os.environ.clear()
        os.environ.update(saved)


def test_quick_run_writes_table(bench, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "core.md"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    text = out.read_text()
    for workload in ("W1 scalar branch", "W4 RNN h=16 T=100"):
        assert f"| {workload} | gradjit grad |" in text
        assert f"| {workload} | numpy hand-written grad |" in text
        assert workload in printed
    if bench.autograd is not None:
        assert "HIPS autograd" in text and "gradjit / autograd" in printed


def test_all_systems_agree(bench) -> None:
    cases = bench.build_cases()
    assert {c.system for c in cases} >= {"gradjit grad", "numpy hand-written grad"}
    bench.check_agreement(cases)


def test_agreement_check_rejects_a_wrong_gradient(bench) -> None:
    good = bench.build_cases()[0]
    wrong = bench.Case(good.workload, "wrong", lambda: (1.0, 2.0, 3.0))
    with pytest.raises(AssertionError):
        bench.check_agreement([good, wrong])


@pytest.mark.parametrize("args", [(3.5, 2.1, 1.1), (0.7, 1.0, 2.5), (-1.2, 0.3, 0.2)])
def test_hand_written_scalar_gradient_both_branches(bench, args: tuple) -> None:
    want = gj.grad(bench.make_scalar_fn(np), argnums=(0, 1, 2))(*args)
    np.testing.assert_allclose(bench.scalar_grad_numpy(*args), want, rtol=1e-12)


def test_hand_written_rnn_gradient(bench) -> None:
    params, xs = bench.rnn_data(seed=1)
    xs = xs[:7]
    want = gj.grad(bench.make_rnn_loss(np))(params, xs)
    got = bench.rnn_grad_numpy(params, xs)
    for k in params:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-10, atol=1e-14)


# --------------------------------------------------------------------------- issue 3: benchmarks/bench_issue3.py

BENCH3 = BENCH.parent / "bench_issue3.py"

# Peers (JAX, PyTorch, HIPS autograd) take part when installed, as in a real run; CI has none of them.
# W7 is represented by k = 2: its other orders run the same code, and JAX's eager nested grad at k = 8
# alone would take seconds.
QUICK_KEYS = ("W1", "W2s", "W2L", "W3", "W4", "W5", "W6", "W7k2")


@pytest.fixture(scope="module")
def bench3():
    saved_env, saved_path = dict(os.environ), list(sys.path)
    spec = importlib.util.spec_from_file_location("bench_issue3", BENCH3)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_issue3"] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        module.wk.DISABLED.clear()
        for name in ("bench_issue3", "workloads_issue3"):
            sys.modules.pop(name, None)
        sys.path[:] = saved_path
        os.environ.clear()
        os.environ.update(saved_env)


@pytest.mark.parametrize("key", QUICK_KEYS)
def test_issue3_every_system_agrees_and_is_timed(bench3, key: str) -> None:
    if key != "W3":  # compiling each Numba baseline costs a second; W3's exercises the path, the
        bench3.wk.DISABLED.add("numba")  # kernels themselves are checked as Python functions below
    try:
        res = bench3.measure(key, bench3.Settings.for_quick())
    finally:
        bench3.wk.DISABLED.clear()
    assert res.cells["gj"].steady is not None and not res.cells["gj"].error
    assert {"gj", "ag", "jax_jit", "jax", "torch"} & set(res.cells) >= {"gj"}
    for name, cell in res.cells.items():
        assert "DISAGREES" not in cell.error, (name, cell.error)
        expected_failure = key == "W5" and name == "jax_jit"  # jax.jit cannot run a Python while on traced values
        if expected_failure:
            assert cell.error and cell.steady is None
        else:
            assert not cell.error, (name, cell.error)
            assert cell.steady is not None and cell.steady > 0
    if "gj_jit" in res.cells and key in ("W1", "W5"):
        assert res.jit_ok, res.checks  # jit(grad) right on every call when the control flow changes


def test_issue3_systems_follow_what_is_available(bench3) -> None:
    wl = bench3.wk.build("W1", quick=True)
    assert ("gj_jit" in wl.factories) == hasattr(gj, "jit")
    assert {"gj", "np", "numba"} <= set(wl.factories)
    for peer, key in (("autograd", "ag"), ("jax", "jax_jit"), ("torch", "torch")):
        assert (key in wl.factories) == bench3.wk.available(peer)
    bench3.wk.DISABLED.update({"jax", "torch", "autograd"})
    try:
        assert set(bench3.wk.build("W3", quick=True).factories) <= {"gj", "gj_jit", "np", "numba"}
    finally:
        bench3.wk.DISABLED.clear()


def test_issue3_quick_run_writes_every_section(bench3, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "issue3.md"
    argv = ["--quick", "--only", "W1,W2L,W7k1,W7k2", "--no-subprocess", "--skip", "jax,torch", "--out", str(out)]
    executor = gj.config.executor
    try:
        assert bench3.main([*argv, "--executor", executor]) == 0
    finally:
        gj.config.executor = executor  # main sets it (globally) from --executor
    printed, text = capsys.readouterr().out, out.read_text()
    for title in ("W1 scalar branch", "W2 MLP 8x20-16-10", "W7 k-th derivative of tanh", "Peak memory", "Targets"):
        assert title in printed and f"## {title}" in text
    assert "| gradjit grad |" in text and "| numpy hand-written |" in text and "numpy " in text.split("Versions:")[1]
    assert "W1: grad / HIPS autograd" in text and "Memory, W2 large: grad peak" in text


def test_issue3_first_call_and_memory_in_a_child(bench3) -> None:
    s = bench3.Settings.for_quick()
    t = bench3.first_call_fresh("W1", "gj", s)  # a real fresh process
    assert isinstance(t, float) and t > 0, t
    assert bench3._child_first_call("W3", "gj", quick=True)["seconds"] > 0
    if bench3.rss_available():
        assert bench3._child_memory("W2L", "np", quick=True)["bytes"] >= 0
    assert bench3.memory_tracemalloc(lambda: np.ones(10_000)) >= 80_000
    assert "error" in bench3._run_child([sys.executable, "-c", "raise SystemExit(3)"])


def test_issue3_agreement_check_rejects_a_wrong_gradient(bench3) -> None:
    good = {"W": np.ones((2, 3)), "b": np.arange(3.0)}
    bench3.check_agreement({"b": np.arange(3.0), "W": np.ones((2, 3))}, good, "same")
    with pytest.raises(AssertionError):
        bench3.check_agreement({"W": np.ones((2, 3)), "b": np.arange(3.0) + 1e-3}, good, "wrong")
    with pytest.raises(AssertionError):
        bench3.check_agreement([np.ones((2, 3))], good, "missing leaf")


def test_issue3_a_disagreeing_system_is_reported_not_timed(bench3, monkeypatch: pytest.MonkeyPatch) -> None:
    real = bench3.wk.build

    def build(key, quick):
        wl = real(key, quick)
        wl.factories["np"] = lambda: bench3.wk.System(lambda: (1.0, 2.0, 3.0))
        return wl

    monkeypatch.setattr(bench3.wk, "build", build)
    res = bench3.measure("W1", bench3.Settings.for_quick())
    assert res.cells["np"].error.startswith("DISAGREES") and res.cells["np"].steady is None


def test_issue3_targets_are_judged(bench3) -> None:
    C, R = bench3.Cell, bench3.Result
    cells = {"gj": C("gj", steady=3.0), "ag": C("ag", steady=10.0)}
    rep = bench3.Report({"W1": R("W1", "W1", "", cells)}, {}, {"import gradjit": 1.5}, {})
    by = {t.name: t for t in bench3.targets(rep)}
    assert by["W1: grad / HIPS autograd"].value == pytest.approx(0.3)
    assert by["W1: grad / HIPS autograd"].status == "met"
    assert by["W1: jit(grad) / HIPS autograd"].status.startswith("n/a")
    assert by["import gradjit, fresh process (seconds)"].status == "NOT met"
    cells["gj"].steady = 4.0
    assert {t.name: t for t in bench3.targets(rep)}["W1: grad / HIPS autograd"].status == "NOT met"


@pytest.mark.parametrize("scale", [0.05, 0.3, 1.0, 6.0])
def test_issue3_hand_written_gradients(bench3, scale: float) -> None:
    wk = bench3.wk
    rng = np.random.default_rng(7)
    x = rng.standard_normal(16) * 2.0 * scale
    want = gj.grad(wk.make_w5(np))(x)
    np.testing.assert_allclose(wk.w5_grad_numpy(x), want, rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(wk._w5_grad_loop(x), want, rtol=1e-11, atol=1e-14)  # the Numba kernel, as Python
    x3 = rng.uniform(-3, 3, 50) * scale
    want3 = gj.grad(wk.make_w3(np))(x3)
    np.testing.assert_allclose(wk.w3_grad_numpy(x3), want3, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(wk._w3_grad_loop(x3), want3, rtol=1e-12, atol=1e-15)
    x6, v6 = 1.0 + scale * rng.standard_normal(10), rng.standard_normal(10)
    want6 = gj.hvp(wk.make_rosenbrock(np), x6, v6)
    np.testing.assert_allclose(wk.rosenbrock_hvp_numpy(x6, v6), want6, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(wk._rosenbrock_hvp_loop(x6, v6), want6, rtol=1e-12, atol=1e-12)
    a, b, c = rng.standard_normal(3) * 2 * scale
    np.testing.assert_allclose(wk._w1_grad_scalar(a, b, c), bench3.wk.bench_core.scalar_grad_numpy(a, b, c), rtol=1e-14)


def test_issue3_hand_written_mlp_and_rnn_gradients(bench3) -> None:
    wk = bench3.wk
    p, x, y = wk.mlp_data(5, 7, 6, 3, seed=2)
    want = gj.grad(wk.make_mlp_loss(np))(p, x, y)
    got = wk.mlp_grad_numpy(p, x, y)
    for k in p:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-11, atol=1e-14)
    params, xs = wk.bench_core.rnn_data(seed=3)
    xs = xs[:6]
    want = gj.grad(wk.bench_core.make_rnn_loss(np))(params, xs)
    got = wk._rnn_grad_loop(params["W_h"], params["W_x"], params["b"], xs)
    for k, g in zip(("W_h", "W_x", "b"), got, strict=True):
        np.testing.assert_allclose(g, want[k], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_issue3_tanh_derivative_closed_form(bench3, k: int) -> None:
    g = np.tanh
    for _ in range(k):
        g = gj.grad(g)
    assert bench3.wk.tanh_derivative(k, 0.3) == pytest.approx(g(0.3), rel=1e-12)
    assert bench3.wk.tanh_derivative(1, 0.3) == pytest.approx(1 - np.tanh(0.3) ** 2, rel=1e-15)
