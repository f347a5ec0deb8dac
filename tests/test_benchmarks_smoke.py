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
