"""Checkpointing: peak memory and time of a gradient with and without ``gj.checkpoint``.

Run ``python benchmarks/bench_checkpoint.py`` (``--quick`` for a smoke run with small sizes).

Workloads (64 layers each):

- **tanh chain**: ``h = tanh(h)`` on a vector of 10^6 float64 (8 MB per layer), loss ``sum(h*h)``,
  gradient w.r.t. the vector. Configurations: no checkpoint; a checkpoint every 8 layers with
  ``policy="nothing"`` (the issue's target: peak memory at least 3x lower, same gradient bit for bit).
- **matmul chain**: ``h = tanh(h @ W_i)`` with ``h`` 1024 x 128 (1 MB) and 64 weights 128 x 128,
  loss ``sum(h*h)``, gradient w.r.t. the input and all weights. Configurations: no checkpoint; every 8
  layers with ``"nothing"``; every 8 layers with ``"contractions"`` (the products are kept, only the
  ``tanh`` are recomputed).

For each configuration: the peak memory of one ``gj.grad`` call measured with ``tracemalloc`` (NumPy
reports its array allocations to it; the peak is counted from just before the call, so inputs and
weights are not included, the gradient is), also expressed in layer-sized arrays; the time of a call
(median over repeats, measured without tracemalloc); whether the gradient equals the checkpoint-free
one bit for bit (``np.array_equal``); the ratio of peak memory to the checkpoint-free one.

Invariants: BLAS runs single-threaded; a configuration whose gradient differs from the
checkpoint-free gradient is reported as such (and the run exits non-zero). Results are printed and
written as Markdown to ``benchmarks/results/checkpoint.md`` (or ``--out``).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before NumPy is imported

import argparse  # noqa: E402
import gc  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

import gradjit as gj  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_core  # noqa: E402  (shared timing and report helpers)

from gradjit import pytree  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "checkpoint.md"
LAYERS = 64
EVERY = 8


# ---------------------------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------------------------
def tanh_loss(x: Any, every: int = 0, policy: str = "nothing") -> Any:
    def block(h: Any, n: int) -> Any:
        for _ in range(n):
            h = np.tanh(h)
        return h

    if not every:
        h = block(x, LAYERS)
    else:
        ck = gj.checkpoint(block, policy=policy)
        h = x
        for _ in range(LAYERS // every):
            h = ck(h, every)
    return np.sum(h * h)


def mlp_loss(x: Any, Ws: list, every: int = 0, policy: str = "nothing") -> Any:
    def block(h: Any, Wb: list) -> Any:
        for W in Wb:
            h = np.tanh(h @ W)
        return h

    step = every or len(Ws)
    fn = gj.checkpoint(block, policy=policy) if every else block
    h = x
    for i in range(0, len(Ws), step):
        h = fn(h, Ws[i : i + step])
    return np.sum(h * h)


@dataclass
class Config:
    label: str
    every: int
    policy: str


@dataclass
class Row:
    workload: str
    config: Config
    peak_bytes: int
    layer_bytes: int
    seconds: float
    equal: bool
    ratio: float = 1.0  # peak of the checkpoint-free run / this peak


def _flat(g: Any) -> list[np.ndarray]:
    return [np.asarray(x) for x in pytree.flatten(g)[0]]


def measure_peak(call: Callable[[], Any]) -> tuple[Any, int]:
    """The result of ``call()`` and the peak bytes allocated during it (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = call()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return result, peak


def time_call(call: Callable[[], Any], repeats: int) -> float:
    """Median seconds per call over ``repeats`` calls (after one warm-up call)."""
    call()
    samples = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def _same(a: Any, b: Any) -> bool:
    la, lb = _flat(a), _flat(b)
    return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb))


def run_workload(name: str, make_call: Callable[[Config], Callable[[], Any]], configs: list[Config],
                 layer_bytes: int, repeats: int) -> list[Row]:  # fmt: skip
    rows: list[Row] = []
    reference = None
    for cfg in configs:
        call = make_call(cfg)
        grad, peak = measure_peak(call)
        if reference is None:
            reference = grad
        rows.append(Row(name, cfg, peak, layer_bytes, time_call(call, repeats), _same(grad, reference)))
        del grad
    for r in rows:
        r.ratio = rows[0].peak_bytes / r.peak_bytes
    return rows


def run(quick: bool = False) -> list[Row]:
    rng = np.random.default_rng(0)
    n = 10_000 if quick else 1_000_000
    batch, width = (64, 16) if quick else (1024, 128)
    repeats = 1 if quick else 5
    x = rng.normal(size=n)
    h0 = rng.normal(size=(batch, width))
    Ws = [rng.normal(size=(width, width)) / np.sqrt(width) * 1.2 for _ in range(LAYERS)]
    none = Config("no checkpoint", 0, "nothing")
    nothing = Config(f"every {EVERY} layers, policy 'nothing'", EVERY, "nothing")
    contractions = Config(f"every {EVERY} layers, policy 'contractions'", EVERY, "contractions")
    grad_tanh = gj.grad(tanh_loss)
    grad_mlp = gj.grad(mlp_loss, argnums=(0, 1))
    rows = run_workload(
        f"tanh chain, {LAYERS} layers, n = {n:,}",
        lambda c: lambda: grad_tanh(x, c.every, c.policy),
        [none, nothing],
        x.nbytes,
        repeats,
    )
    rows += run_workload(
        f"matmul chain, {LAYERS} layers, h {batch}x{width}",
        lambda c: lambda: grad_mlp(h0, Ws, c.every, c.policy),
        [none, nothing, contractions],
        h0.nbytes,
        repeats,
    )
    return rows


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
def _fmt_time(s: float) -> str:
    return f"{s:.2f} s" if s >= 1 else f"{s * 1e3:.0f} ms"


def to_markdown(rows: list[Row], quick: bool) -> str:
    lines = [
        "# Checkpointing: peak memory and time of a gradient",
        "",
        bench_core.info_line(),
        "Peak memory of one `gj.grad` call by tracemalloc (from just before the call: inputs and weights "
        "not counted, the gradient is); time: median over repeats of one call, without tracemalloc"
        + (" (QUICK RUN: small sizes, one repeat, numbers are noise)" if quick else "")
        + ". Produced by `python benchmarks/bench_checkpoint.py`.",
        "",
        "| workload | configuration | peak memory | in layer arrays | memory ratio | time | gradient bit for bit |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.workload} | {r.config.label} | {r.peak_bytes / 2**20:.1f} MiB | {r.peak_bytes / r.layer_bytes:.1f} "
            f"| {r.ratio:.2f}x | {_fmt_time(r.seconds)} | {'yes' if r.equal else 'NO'} |"
        )
    tanh = [r for r in rows if r.workload.startswith("tanh")]
    if len(tanh) == 2:
        lines += [
            "",
            f"Issue target (tanh chain, checkpoint every {EVERY} layers): peak memory {tanh[1].ratio:.2f}x lower "
            f"(target >= 3x), time {tanh[1].seconds / tanh[0].seconds:.2f}x, gradient "
            + ("identical bit for bit." if tanh[1].equal else "DIFFERENT."),
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat: a smoke run")
    parser.add_argument("--out", type=Path, default=RESULTS, help="Markdown output file")
    args = parser.parse_args(argv)
    rows = run(args.quick)
    text = to_markdown(rows, args.quick)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0 if all(r.equal for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
