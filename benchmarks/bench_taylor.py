"""Taylor mode against nested ``grad``: the k-th derivative of ``tanh`` at a scalar, k = 1..8.

Run ``python benchmarks/bench_taylor.py`` (``--quick`` for a smoke run, ``--orders N`` for 1..N).
For each order k it times

- ``gj.taylor(np.tanh, order=k)(x, 1.0)``: one trace of ``tanh`` and one propagation of a series of
  k coefficients (all derivatives 1..k at once);
- ``grad`` nested k times, ``gj.grad(gj.grad(...(np.tanh)))(x)``: the k-th derivative only;

at ``x = 1.0``, and reports the ratio nested / taylor. It also counts equations: the Wengert list of
the (k-1)-nested grad (``make_wengert(grad^(k-1)(tanh))``, the list the k-th ``grad`` sweeps), of
the k-nested grad (everything the k-th derivative records), and of the Taylor propagation itself
(``make_wengert`` of the function returning the k-th Taylor derivative).

Invariants: BLAS runs single-threaded; before timing, the k-th derivative from both methods must
agree to 1e-9 relative; each time is the median over repeats of the mean time per call, after
warm-up calls (calls per repeat calibrated so a repeat lasts at least ``min_time``). Results are
printed and written as Markdown to ``benchmarks/results/taylor.md`` (or ``--out``).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before NumPy is imported

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

import gradjit as gj  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_core  # noqa: E402  (shared timing and report helpers)

RESULTS = Path(__file__).resolve().parent / "results" / "taylor.md"
X = 1.0


@dataclass
class Row:
    order: int
    taylor_s: float
    nested_s: float
    eqns_nested_km1: int  # make_wengert(grad^(k-1)(tanh))
    eqns_nested_k: int  # make_wengert(grad^k(tanh))
    eqns_taylor: int  # make_wengert(x -> taylor(tanh, k)(x, 1.0)[k-1])
    value: float

    @property
    def ratio(self) -> float:
        return self.nested_s / self.taylor_s


def nested_grad(f: Callable, k: int) -> Callable:
    for _ in range(k):
        f = gj.grad(f)
    return f


def taylor_kth(k: int) -> Callable[[float], Any]:
    t = gj.taylor(np.tanh, order=k)
    return lambda x: t(x, 1.0)[k - 1]


def check_agreement(k: int, rtol: float = 1e-9) -> float:
    """The k-th derivative from Taylor mode and from nested grad; raises if they differ."""
    t = float(taylor_kth(k)(X))
    n = float(nested_grad(np.tanh, k)(X))
    if abs(t - n) > rtol * max(1.0, abs(n)):
        raise AssertionError(f"order {k}: taylor {t!r} != nested grad {n!r}")
    return t


def run(orders: int = 8, quick: bool = False) -> list[Row]:
    repeats, min_time, warmup = (1, 0.0, 1) if quick else (9, 0.1, 5)
    rows = []
    for k in range(1, orders + 1):
        value = check_agreement(k)
        tk = taylor_kth(k)
        gk = nested_grad(np.tanh, k)
        rows.append(
            Row(
                order=k,
                taylor_s=bench_core.time_call(lambda: tk(X), repeats, min_time, warmup),
                nested_s=bench_core.time_call(lambda: gk(X), repeats, min_time, warmup),
                eqns_nested_km1=len(gj.make_wengert(nested_grad(np.tanh, k - 1))(X)),
                eqns_nested_k=len(gj.make_wengert(gk)(X)),
                eqns_taylor=len(gj.make_wengert(tk)(X)),
                value=value,
            )
        )
    return rows


def _fmt_time(s: float) -> str:
    return f"{s * 1e3:.2f} ms" if s >= 1e-3 else f"{s * 1e6:.1f} us"


def to_markdown(rows: list[Row], quick: bool) -> str:
    lines = [
        "# Taylor mode vs nested grad: k-th derivative of tanh at x = 1.0",
        "",
        bench_core.info_line(),
        "Median over repeats of the mean time per call, after warm-up"
        + (" (QUICK RUN: one repeat, numbers are noise)" if quick else "")
        + ". Produced by `python benchmarks/bench_taylor.py`.",
        "",
        "`taylor` returns all derivatives 1..k in one call; nested grad returns the k-th only. Equations: "
        "`grad^(k-1)` is the list the k-th grad sweeps (`make_wengert` of the (k-1)-nested grad), `grad^k` "
        "the whole list of the k-th derivative, `taylor` the list of the series propagation.",
        "",
        "| k | d^k tanh(1) | taylor | nested grad | nested / taylor | eqns grad^(k-1) | eqns grad^k | eqns taylor |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.order} | {r.value:.10g} | {_fmt_time(r.taylor_s)} | {_fmt_time(r.nested_s)} | "
            f"{r.ratio:.1f} | {r.eqns_nested_km1} | {r.eqns_nested_k} | {r.eqns_taylor} |"
        )
    if len(rows) >= 2:
        growth_t = [b.taylor_s / a.taylor_s for a, b in zip(rows, rows[1:])]
        growth_n = [b.nested_s / a.nested_s for a, b in zip(rows, rows[1:])]
        lines += [
            "",
            f"Time per order, growth factor from k to k+1 (median): taylor {statistics.median(growth_t):.2f}x, "
            f"nested grad {statistics.median(growth_n):.2f}x.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat, no calibration: a smoke run")
    parser.add_argument("--orders", type=int, default=8, help="orders 1..N (default 8)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="Markdown output file")
    args = parser.parse_args(argv)
    rows = run(args.orders, args.quick)
    text = to_markdown(rows, args.quick)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
