"""Core benchmark: gradjit's ``grad`` against the hand-written NumPy gradient and HIPS autograd.

Run ``python benchmarks/bench_core.py`` (``--quick`` for a smoke run). Two workloads:

- W1: a scalar function ``f(a, b, c)`` with a Python branch on traced values; gradient with
  respect to all three arguments. This measures per-operation overhead (tracing, bookkeeping).
- W4: an RNN, hidden size 16, input size 8, unrolled 100 steps, ``h = tanh(W_h @ h + W_x @ x_t + b)``,
  loss = sum of squares of the final ``h``; gradient with respect to the parameter dict.

Systems, side by side in one process: gradjit ``gj.grad`` (tracing and reverse sweep, everything a
call does), the hand-written NumPy gradient (forward plus manual backprop), the NumPy forward pass
alone (no gradient; a floor for any tracing system), gradjit's tracing alone (``make_wengert``:
the forward half of a ``grad`` call), and HIPS ``autograd.grad`` with
``autograd.numpy`` when it is installed. The model code is written once against a ``numpy``-like
module and instantiated with ``numpy`` (gradjit traces plain NumPy) and with ``autograd.numpy``.

Invariants: BLAS runs single-threaded (the environment variables are set before NumPy is
imported); every system's gradient is checked against gradjit's before anything is timed; each
reported time is the median over repeats of the mean time per call, after warm-up calls.
Results are printed and written as Markdown to ``benchmarks/results/core.md`` (or ``--out``).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before NumPy is imported: single-threaded BLAS for every system

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from types import ModuleType  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

import gradjit as gj  # noqa: E402

try:  # HIPS autograd is optional (pip install -e ".[bench]")
    import autograd  # noqa: E402
    import autograd.numpy as anp  # noqa: E402
except ImportError:  # pragma: no cover - depends on the environment
    autograd = None
    anp = None

RESULTS = Path(__file__).resolve().parent / "results" / "core.md"

HIDDEN, INPUT, STEPS = 16, 8, 100


# --------------------------------------------------------------------------- W1: scalar with a branch


def make_scalar_fn(xnp: ModuleType) -> Callable:
    """The talk's branch function with a few more operations, written against ``xnp``."""

    def f(a, b, c):
        if b > c:
            y = a * xnp.sin(b) + xnp.exp(-c) * b
        else:
            y = a + b * c
        return y * xnp.tanh(a * c) + xnp.log(1.0 + b * b)

    return f


def scalar_grad_numpy(a: float, b: float, c: float) -> tuple[float, float, float]:
    """Hand-written gradient of ``make_scalar_fn`` (forward, then the chain rule by hand)."""
    if b > c:
        sb, ec = np.sin(b), np.exp(-c)
        y = a * sb + ec * b
        dy_da, dy_db, dy_dc = sb, a * np.cos(b) + ec, -ec * b
    else:
        y = a + b * c
        dy_da, dy_db, dy_dc = 1.0, c, b
    t = np.tanh(a * c)
    dt = 1.0 - t * t  # d tanh(u) / du at u = a*c
    dlog_db = 2.0 * b / (1.0 + b * b)
    da = dy_da * t + y * dt * c
    db = dy_db * t + dlog_db
    dc = dy_dc * t + y * dt * a
    return float(da), float(db), float(dc)


SCALAR_ARGS = (3.5, 2.1, 1.1)


# --------------------------------------------------------------------------- W4: RNN, 100 steps


def make_rnn_loss(xnp: ModuleType) -> Callable:
    """Loss of an unrolled tanh RNN, written against ``xnp``; ``params`` is a dict pytree."""

    def loss(params, xs):
        W_h, W_x, b = params["W_h"], params["W_x"], params["b"]
        h = xnp.zeros(W_h.shape[0])
        for t in range(xs.shape[0]):
            h = xnp.tanh(W_h @ h + W_x @ xs[t] + b)
        return xnp.sum(h * h)

    return loss


def rnn_grad_numpy(params: dict, xs: np.ndarray) -> dict:
    """Hand-written backprop through time for ``make_rnn_loss``."""
    W_h, W_x, b = params["W_h"], params["W_x"], params["b"]
    hs = [np.zeros(W_h.shape[0])]
    for t in range(xs.shape[0]):
        hs.append(np.tanh(W_h @ hs[-1] + W_x @ xs[t] + b))
    dW_h, dW_x, db = np.zeros_like(W_h), np.zeros_like(W_x), np.zeros_like(b)
    dh = 2.0 * hs[-1]
    for t in range(xs.shape[0] - 1, -1, -1):
        da = dh * (1.0 - hs[t + 1] ** 2)
        dW_h += np.outer(da, hs[t])
        dW_x += np.outer(da, xs[t])
        db += da
        dh = W_h.T @ da
    return {"W_h": dW_h, "W_x": dW_x, "b": db}


def rnn_data(seed: int = 0) -> tuple[dict, np.ndarray]:
    rng = np.random.default_rng(seed)
    params = {
        "W_h": rng.standard_normal((HIDDEN, HIDDEN)) * (0.9 / np.sqrt(HIDDEN)),
        "W_x": rng.standard_normal((HIDDEN, INPUT)) * (1.0 / np.sqrt(INPUT)),
        "b": rng.standard_normal(HIDDEN) * 0.1,
    }
    xs = rng.standard_normal((STEPS, INPUT))
    return params, xs


# --------------------------------------------------------------------------- systems and timing


@dataclass
class Case:
    """One (workload, system) cell: a zero-argument callable returning the gradient."""

    workload: str
    system: str
    call: Callable[[], Any]
    is_gradient: bool = True


@dataclass
class Row:
    workload: str
    system: str
    seconds: float
    ratio_to_gradjit: float


def _as_list(g: Any) -> list[np.ndarray]:
    if isinstance(g, dict):
        return [np.asarray(g[k], dtype=float) for k in sorted(g)]
    if isinstance(g, (tuple, list)):
        return [np.asarray(x, dtype=float) for x in g]
    return [np.asarray(g, dtype=float)]


def build_cases() -> list[Case]:
    """All (workload, system) cells; autograd's only when it is installed."""
    cases: list[Case] = []

    f_np = make_scalar_fn(np)
    g_gj = gj.grad(f_np, argnums=(0, 1, 2))
    w_gj = gj.make_wengert(f_np)
    a, b, c = SCALAR_ARGS
    cases += [
        Case("W1 scalar branch", "gradjit grad", lambda: g_gj(a, b, c)),
        Case("W1 scalar branch", "numpy hand-written grad", lambda: scalar_grad_numpy(a, b, c)),
        Case("W1 scalar branch", "numpy forward only", lambda: f_np(a, b, c), is_gradient=False),
        Case("W1 scalar branch", "gradjit trace only", lambda: w_gj(a, b, c), is_gradient=False),
    ]
    if autograd is not None:
        g_ag = autograd.grad(make_scalar_fn(anp), argnum=(0, 1, 2))
        cases.append(Case("W1 scalar branch", "HIPS autograd", lambda: g_ag(a, b, c)))

    params, xs = rnn_data()
    loss_np = make_rnn_loss(np)
    r_gj = gj.grad(loss_np)
    rw_gj = gj.make_wengert(loss_np, argnums=0)
    cases += [
        Case("W4 RNN h=16 T=100", "gradjit grad", lambda: r_gj(params, xs)),
        Case("W4 RNN h=16 T=100", "numpy hand-written grad", lambda: rnn_grad_numpy(params, xs)),
        Case("W4 RNN h=16 T=100", "numpy forward only", lambda: loss_np(params, xs), is_gradient=False),
        Case("W4 RNN h=16 T=100", "gradjit trace only", lambda: rw_gj(params, xs), is_gradient=False),
    ]
    if autograd is not None:
        r_ag = autograd.grad(make_rnn_loss(anp))
        cases.append(Case("W4 RNN h=16 T=100", "HIPS autograd", lambda: r_ag(params, xs)))
    return cases


def check_agreement(cases: list[Case], rtol: float = 1e-9, atol: float = 1e-12) -> None:
    """Raise ``AssertionError`` unless every system's gradient matches gradjit's on each workload."""
    reference: dict[str, list[np.ndarray]] = {}
    for case in cases:
        if case.system == "gradjit grad":
            reference[case.workload] = _as_list(case.call())
    for case in cases:
        if not case.is_gradient or case.system == "gradjit grad":
            continue
        got, want = _as_list(case.call()), reference[case.workload]
        assert len(got) == len(want), f"{case.workload}/{case.system}: {len(got)} gradients, expected {len(want)}"
        for x, y in zip(got, want, strict=True):
            np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=f"{case.workload}: {case.system}")


def time_call(call: Callable[[], Any], repeats: int, min_time: float, warmup: int) -> float:
    """Median over ``repeats`` of the mean seconds per call; each repeat runs >= ``min_time``."""
    for _ in range(warmup):
        call()
    number, elapsed = 1, 0.0
    while True:  # calibrate the number of calls per repeat
        t0 = time.perf_counter()
        for _ in range(number):
            call()
        elapsed = time.perf_counter() - t0
        if elapsed >= min_time or number >= 1 << 20:
            break
        number *= 2 if elapsed <= 0 else max(2, min(10, int(1.5 * min_time / elapsed) + 1))
    samples = [elapsed / number]
    for _ in range(repeats - 1):
        t0 = time.perf_counter()
        for _ in range(number):
            call()
        samples.append((time.perf_counter() - t0) / number)
    return statistics.median(samples)


def run(quick: bool = False) -> list[Row]:
    """Check agreement, then time every cell. ``quick``: a couple of short repeats (smoke test)."""
    cases = build_cases()
    check_agreement(cases)
    repeats, min_time, warmup = (2, 0.0, 1) if quick else (9, 0.1, 5)
    times = {(c.workload, c.system): time_call(c.call, repeats, min_time, warmup) for c in cases}
    rows = []
    for c in cases:
        t = times[(c.workload, c.system)]
        rows.append(Row(c.workload, c.system, t, t / times[(c.workload, "gradjit grad")]))
    return rows


# --------------------------------------------------------------------------- reporting


def versions() -> dict[str, str]:
    return {
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "gradjit": gj.__version__,
        "autograd": _autograd_version(),
        "machine": f"{platform.machine()}, {platform.system()}, BLAS threads = 1",
    }


def info_line() -> str:
    """One line of date, versions and machine, for the other benchmarks' Markdown headers."""
    return (
        f"Date {datetime.date.today().isoformat()}; Python {platform.python_version()}, NumPy {np.__version__}, "
        f"gradjit {gj.__version__}; {platform.machine()}, {platform.system()}, BLAS threads = 1."
    )


def _autograd_version() -> str:
    if autograd is None:
        return "not installed"
    try:
        from importlib.metadata import version

        return version("autograd")
    except Exception:  # pragma: no cover - metadata missing
        return "installed (version unknown)"


def _fmt_time(s: float) -> str:
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} us"


def summary_ratios(rows: list[Row]) -> dict[str, float]:
    """gradjit time / autograd time per workload (the target is <= 1/3)."""
    by = {(r.workload, r.system): r.seconds for r in rows}
    out = {}
    for w in dict.fromkeys(r.workload for r in rows):
        if (w, "HIPS autograd") in by:
            out[w] = by[(w, "gradjit grad")] / by[(w, "HIPS autograd")]
    return out


def to_markdown(rows: list[Row], info: dict[str, str]) -> str:
    lines = [
        "# Core benchmark: gradjit vs hand-written NumPy vs HIPS autograd",
        "",
        f"Date {info['date']}; Python {info['python']}, NumPy {info['numpy']}, gradjit {info['gradjit']}, "
        f"autograd {info['autograd']}; {info['machine']}.",
        "Median over repeats of the mean time per call, after warm-up. Produced by `python benchmarks/bench_core.py`.",
        "",
        "| workload | system | median time | time / gradjit |",
        "|---|---|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r.workload} | {r.system} | {_fmt_time(r.seconds)} | {r.ratio_to_gradjit:.2f} |")
    ratios = summary_ratios(rows)
    if ratios:
        lines += ["", "gradjit time / HIPS autograd time (target <= 0.33):", ""]
        lines += [f"- {w}: **{v:.2f}**" for w, v in ratios.items()]
    return "\n".join(lines) + "\n"


def to_table(rows: list[Row], info: dict[str, str]) -> str:
    head = f"{'workload':<20} {'system':<26} {'median':>11} {'/ gradjit':>10}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.workload:<20} {r.system:<26} {_fmt_time(r.seconds):>11} {r.ratio_to_gradjit:>10.2f}")
    lines.append("")
    for w, v in summary_ratios(rows).items():
        lines.append(f"gradjit / autograd, {w}: {v:.2f}  (target <= 0.33)")
    lines.append(
        f"date {info['date']}  Python {info['python']}  NumPy {info['numpy']}  autograd {info['autograd']}  "
        f"gradjit {info['gradjit']}  ({info['machine']})"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repetitions (smoke test); timings are noisy")
    parser.add_argument("--out", type=Path, default=None, help=f"Markdown results file (default {RESULTS})")
    args = parser.parse_args(argv)
    rows = run(quick=args.quick)
    info = versions()
    print(to_table(rows, info))
    out = args.out if args.out is not None else (None if args.quick else RESULTS)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(to_markdown(rows, info))
        print(f"wrote {out}")
    if autograd is None:
        print('HIPS autograd is not installed: pip install -e ".[bench]" to compare against it.', file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
