"""GPU rows of issue 4: gradjit on the GPU against the CPU executor, JAX jit, PyTorch CUDA and CuPy.

    python benchmarks/bench_gpu.py                 # needs an NVIDIA GPU and gradjit[cuda]
    python benchmarks/bench_gpu.py --write         # also writes benchmarks/results/gpu.md
    python benchmarks/bench_gpu.py --simulator     # tiny sizes on Numba's CUDA simulator: checks the
                                                   # script and the agreement of results, times are noise

Workloads (float32 by default, ``--dtype float64`` for the other):

- **W2** the talk's MLP at batch 4096, 784-2048-2048-10 (``tanh`` layers, log-softmax, squared loss
  against one-hot targets, as W2 of issue 3 with one more hidden layer); gradient w.r.t. all weights.
  Target: gradjit within 2x of PyTorch CUDA.
- **W3** ``sum(sin(x) * exp(-x*x) + log1p(x*x))`` over 10^8 elements; gradient. Target: gradjit
  within 1.5x of the time to read x and write the gradient once at the GPU's memory bandwidth
  (measured here as a device-to-device copy of x: one read and one write).
- **W6** Hessian-vector product of the extended Rosenbrock function at n = 10^7 (forward-over-reverse,
  ``gj.hvp``). Target: gradjit within 1.5x of JAX ``jit``.

Systems, each run only when available: ``gradjit jit`` (``gj.jit`` of the derivative on device arrays:
the CUDA executor, elementwise chains fused), ``gradjit eager`` (the same derivative traced at every
call, one kernel per primitive), ``gradjit CPU`` (``gj.jit`` on host arrays with the CPU executor;
skipped above ``--cpu-max`` elements per array), ``JAX jit`` on the GPU, ``PyTorch CUDA`` (autograd),
``CuPy`` (a hand-written gradient). Before timing, every system's result is compared with gradjit's.
Each time is the median over repeats of the mean per call, with the device synchronized before the
clock stops; the first call (trace and compile) is reported separately for gradjit.

Without a GPU the script exits with a message (status 2) and writes nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "gpu.md"


# ---------------------------------------------------------------------------------------------
# Models, written once against a NumPy-like module
# ---------------------------------------------------------------------------------------------
def make_mlp_loss(xnp: Any, depth: int) -> Callable:
    """W2 of issue 3 with ``depth`` tanh layers: log-softmax (tanh bounds it: no max shift), squared loss."""

    def loss(p, x, y):
        h = x
        for k in range(1, depth + 1):
            h = xnp.tanh(h @ p[f"W{k}"] + p[f"b{k}"])
        logp = h - xnp.log(xnp.sum(xnp.exp(h), axis=1, keepdims=True))
        return xnp.sum((logp - y) ** 2) / x.shape[0]

    return loss


def make_w3(xnp: Any) -> Callable:
    def f(x):
        return xnp.sum(xnp.sin(x) * xnp.exp(-x * x) + xnp.log1p(x * x))

    return f


def make_rosenbrock(xnp: Any) -> Callable:
    def f(x):
        u, w = x[0::2], x[1::2]
        return xnp.sum(100.0 * (w - u * u) ** 2 + (1.0 - u) ** 2)

    return f


def mlp_data(dims: tuple[int, ...], batch: int, dtype: Any, seed: int = 0) -> tuple[dict, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = {}
    for k in range(1, len(dims)):
        p[f"W{k}"] = (rng.standard_normal((dims[k - 1], dims[k])) / np.sqrt(dims[k - 1])).astype(dtype)
        p[f"b{k}"] = (0.1 * rng.standard_normal(dims[k])).astype(dtype)
    x = rng.standard_normal((batch, dims[0])).astype(dtype)
    y = np.eye(dims[-1], dtype=dtype)[rng.integers(0, dims[-1], batch)]
    return p, x, y


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------
def timeit(call: Callable[[], Any], sync: Callable[[], None], repeats: int, min_time: float) -> float:
    call()
    sync()
    n, t = 1, 0.0
    while True:  # calibrate the calls per repeat
        t0 = time.perf_counter()
        for _ in range(n):
            call()
        sync()
        t = time.perf_counter() - t0
        if t >= min_time or n >= 1 << 16:
            break
        n *= 2
    times = [t / n]
    for _ in range(repeats - 1):
        t0 = time.perf_counter()
        for _ in range(n):
            call()
        sync()
        times.append((time.perf_counter() - t0) / n)
    return statistics.median(times)


def first_call(call: Callable[[], Any], sync: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    call()
    sync()
    return time.perf_counter() - t0


def available(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


class Row:
    def __init__(self, workload: str, system: str, seconds: float | None, note: str = ""):
        self.workload, self.system, self.seconds, self.note = workload, system, seconds, note


# ---------------------------------------------------------------------------------------------
# Peers
# ---------------------------------------------------------------------------------------------
def torch_cuda() -> Any:
    if not available("torch"):
        return None
    import torch

    return torch if torch.cuda.is_available() else None


def jax_gpu(dtype: Any) -> Any:
    if not available("jax"):
        return None
    import jax

    if np.dtype(dtype) == np.float64:
        jax.config.update("jax_enable_x64", True)
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:
        return None
    return jax if gpus else None


def cupy_module() -> Any:
    if not available("cupy"):
        return None
    try:
        import cupy

        cupy.cuda.runtime.getDeviceCount()
        return cupy
    except Exception:  # no driver/device for CuPy
        return None


def jax_timed(jax: Any, fn: Callable[[], Any]) -> tuple[Callable[[], Any], Callable[[], None]]:
    """A call keeping its result, and a sync that waits for the last one (JAX dispatches asynchronously)."""
    last: list = [None]

    def call() -> None:
        last[0] = fn()

    return call, lambda: jax.block_until_ready(last[0])


def _leaves(tree: Any) -> list:
    import gradjit as gj

    return gj.pytree.flatten(tree)[0]


def agree(name: str, got: Any, want: Any, rtol: float) -> None:
    got_l = [np.asarray(g) for g in _leaves(got)]
    want_l = [np.asarray(w) for w in _leaves(want)]
    for g, w in zip(got_l, want_l, strict=True):
        scale = max(1e-30, float(np.max(np.abs(w))))
        err = float(np.max(np.abs(g.astype(np.float64) - w.astype(np.float64)))) / scale
        if err > rtol:
            raise AssertionError(f"{name}: result differs from gradjit's by {err:.2e} (relative to max |value|)")


# ---------------------------------------------------------------------------------------------
# The workloads
# ---------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> list[Row]:
    from numba import cuda

    import gradjit as gj

    dtype = np.dtype(args.dtype)
    rtol = 2e-3 if dtype == np.float32 else 1e-9
    sync = cuda.synchronize
    rows: list[Row] = []
    torch, jax, cupy = torch_cuda(), jax_gpu(dtype), cupy_module()
    sim = args.simulator

    def host(tree: Any) -> Any:
        return gj.to_host(tree)

    def bench(workload: str, system: str, call: Callable[[], Any], sync_fn: Callable[[], None], note: str = "") -> None:
        try:
            t = timeit(call, sync_fn, args.repeats, args.min_time)
            rows.append(Row(workload, system, t, note))
        except Exception as e:  # a peer that cannot run this size: say why in the table
            rows.append(Row(workload, system, None, f"failed: {type(e).__name__}: {str(e)[:80]}"))
        print(f"  {workload} {system}: {rows[-1].seconds}", file=sys.stderr)

    # -- W2 ---------------------------------------------------------------------------------
    dims = (784, 2048, 2048, 10) if not sim else (8, 12, 12, 4)
    batch = 4096 if not sim else 16
    p, x, y = mlp_data(dims, batch, dtype)
    loss = make_mlp_loss(np, len(dims) - 1)
    dp, dx, dy = gj.to_device((p, x, y))
    eager = gj.grad(loss)
    jitted = gj.jit(gj.grad(loss))
    ref = host(eager(dp, dx, dy))
    rows.append(Row("W2", "gradjit jit (first call)", first_call(lambda: jitted(dp, dx, dy), sync)))
    agree("W2 gradjit jit", host(jitted(dp, dx, dy)), ref, rtol)
    bench("W2", "gradjit jit", lambda: jitted(dp, dx, dy), sync)
    bench("W2", "gradjit eager", lambda: eager(dp, dx, dy), sync)
    if batch * max(dims) <= args.cpu_max:
        cj = gj.jit(gj.grad(loss), executor=args.cpu_executor)
        agree("W2 gradjit CPU", cj(p, x, y), ref, rtol)
        bench("W2", f"gradjit CPU ({args.cpu_executor})", lambda: cj(p, x, y), lambda: None)
    if torch is not None:
        tdt = getattr(torch, dtype.name)
        tp = {k: torch.tensor(v, device="cuda", dtype=tdt, requires_grad=True) for k, v in p.items()}
        tx, ty = torch.tensor(x, device="cuda"), torch.tensor(y, device="cuda")
        tloss = make_mlp_loss(torch, len(dims) - 1)

        def torch_w2() -> Any:
            return torch.autograd.grad(tloss(tp, tx, ty), list(tp.values()))

        agree("W2 torch", {k: g.cpu().numpy() for k, g in zip(tp, torch_w2())}, ref, rtol)
        bench("W2", "PyTorch CUDA", torch_w2, torch.cuda.synchronize)
    if jax is not None:
        jnp = jax.numpy
        jp, jx, jy = jax.device_put((p, x, y), jax.devices("gpu")[0])
        jg = jax.jit(jax.grad(make_mlp_loss(jnp, len(dims) - 1)))
        agree("W2 jax", jax.device_get(jg(jp, jx, jy)), ref, rtol)
        bench("W2", "JAX jit", *jax_timed(jax, lambda: jg(jp, jx, jy)))

    # -- W3 ---------------------------------------------------------------------------------
    n3 = args.w3_n if not sim else 1000
    x3 = np.random.default_rng(3).uniform(-3.0, 3.0, n3).astype(dtype)
    f3 = make_w3(np)
    d3 = gj.to_device(x3)
    e3, j3 = gj.grad(f3), gj.jit(gj.grad(f3))
    ref3 = host(e3(d3))
    rows.append(Row("W3", "gradjit jit (first call)", first_call(lambda: j3(d3), sync)))
    agree("W3 gradjit jit", host(j3(d3)), ref3, rtol)
    bench("W3", "gradjit jit", lambda: j3(d3), sync)
    bench("W3", "gradjit eager", lambda: e3(d3), sync)
    out3 = cuda.device_array_like(d3._buf)
    bench(
        "W3", "device copy of x (read + write once)", lambda: out3.copy_to_device(d3._buf), sync, "the bandwidth floor"
    )
    if n3 <= args.cpu_max:
        c3 = gj.jit(gj.grad(f3), executor=args.cpu_executor)
        bench("W3", f"gradjit CPU ({args.cpu_executor})", lambda: c3(x3), lambda: None)
    if torch is not None:
        tx3 = torch.tensor(x3, device="cuda", requires_grad=True)
        tf3 = make_w3(torch)
        bench("W3", "PyTorch CUDA", lambda: torch.autograd.grad(tf3(tx3), tx3), torch.cuda.synchronize)
    if jax is not None:
        jx3 = jax.device_put(x3, jax.devices("gpu")[0])
        jg3 = jax.jit(jax.grad(make_w3(jax.numpy)))
        agree("W3 jax", jax.device_get(jg3(jx3)), ref3, rtol)
        bench("W3", "JAX jit", *jax_timed(jax, lambda: jg3(jx3)))
    if cupy is not None:
        cx3 = cupy.asarray(x3)

        def cupy_w3() -> Any:
            e = cupy.exp(-cx3 * cx3)
            return cupy.cos(cx3) * e - 2.0 * cx3 * cupy.sin(cx3) * e + 2.0 * cx3 / (1.0 + cx3 * cx3)

        agree("W3 cupy", cupy.asnumpy(cupy_w3()), ref3, rtol)
        bench("W3", "CuPy hand-written", cupy_w3, cupy.cuda.Device().synchronize)

    # -- W6 ---------------------------------------------------------------------------------
    n6 = args.w6_n if not sim else 1000
    rng = np.random.default_rng(6)
    x6 = (1.0 + 0.3 * rng.standard_normal(n6)).astype(dtype)
    v6 = rng.standard_normal(n6).astype(dtype)
    f6 = make_rosenbrock(np)
    d6, dv6 = gj.to_device((x6, v6))

    def hvp(x: Any, v: Any) -> Any:
        return gj.hvp(f6, x, v)

    j6 = gj.jit(hvp)
    ref6 = host(hvp(d6, dv6))
    rows.append(Row("W6", "gradjit jit (first call)", first_call(lambda: j6(d6, dv6), sync)))
    agree("W6 gradjit jit", host(j6(d6, dv6)), ref6, rtol)
    bench("W6", "gradjit jit", lambda: j6(d6, dv6), sync)
    bench("W6", "gradjit eager", lambda: hvp(d6, dv6), sync)
    if n6 <= args.cpu_max:
        c6 = gj.jit(hvp, executor=args.cpu_executor)
        bench("W6", f"gradjit CPU ({args.cpu_executor})", lambda: c6(x6, v6), lambda: None)
    if jax is not None:
        jf6 = make_rosenbrock(jax.numpy)
        jx6, jv6 = jax.device_put((x6, v6), jax.devices("gpu")[0])
        jh = jax.jit(lambda x, v: jax.jvp(jax.grad(jf6), (x,), (v,))[1])
        agree("W6 jax", jax.device_get(jh(jx6, jv6)), ref6, rtol)
        bench("W6", "JAX jit", *jax_timed(jax, lambda: jh(jx6, jv6)))
    if torch is not None:
        tx6 = torch.tensor(x6, device="cuda", requires_grad=True)
        tv6 = torch.tensor(v6, device="cuda")
        tf6 = make_rosenbrock(torch)

        def torch_w6() -> Any:
            (g,) = torch.autograd.grad(tf6(tx6), tx6, create_graph=True)
            return torch.autograd.grad(g, tx6, tv6)

        bench("W6", "PyTorch CUDA (reverse-over-reverse)", torch_w6, torch.cuda.synchronize)
    return rows


TARGETS = {
    "W2": ("gradjit jit", "PyTorch CUDA", 2.0),
    "W3": ("gradjit jit", "device copy of x (read + write once)", 1.5),
    "W6": ("gradjit jit", "JAX jit", 1.5),
}


def report(rows: list[Row], args: argparse.Namespace) -> str:
    from numba import cuda

    import gradjit as gj

    if args.simulator:
        name = "Numba's CUDA simulator"
    else:
        dev = cuda.get_current_device()
        name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    head = [
        "# GPU benchmarks (issue 4)",
        "",
        f"Run of {time.strftime('%Y-%m-%d')}; {name}{' (times are noise)' if args.simulator else ''}; "
        f"Python {platform.python_version()}, NumPy {np.__version__}, gradjit {gj.__version__}; dtype {args.dtype}. "
        "Median of mean time per call, device synchronized.",
        "",
        "| workload | system | time | note |",
        "|---|---|---:|---|",
    ]
    for r in rows:
        t = "-" if r.seconds is None else f"{r.seconds * 1e3:.3f} ms"
        head.append(f"| {r.workload} | {r.system} | {t} | {r.note} |")
    head += ["", "| target | ratio | aim |", "|---|---:|---:|"]
    by = {(r.workload, r.system): r.seconds for r in rows}
    for w, (a, b, aim) in TARGETS.items():
        ta, tb = by.get((w, a)), by.get((w, b))
        ratio = "-" if not ta or not tb else f"{ta / tb:.2f}"
        head.append(f"| {w}: {a} / {b} | {ratio} | <= {aim} |")
    return "\n".join(head) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds per repeat (calls are calibrated)")
    parser.add_argument("--w3-n", type=int, default=10**8)
    parser.add_argument("--w6-n", type=int, default=10**7)
    parser.add_argument("--cpu-max", type=int, default=10**7, help="largest array the CPU executor is timed on")
    parser.add_argument("--cpu-executor", default="cpu")
    parser.add_argument("--simulator", action="store_true", help="tiny sizes on Numba's CUDA simulator")
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.relative_to(HERE.parent)}")
    args = parser.parse_args()
    if args.simulator:
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
        args.repeats, args.min_time = 1, 0.0
    elif os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        raise SystemExit("bench_gpu: NUMBA_ENABLE_CUDASIM=1 is set: the simulator is not a GPU (use --simulator)")
    try:
        from numba import cuda
    except ImportError as e:
        print(f"bench_gpu: numba.cuda is not importable ({e}); install gradjit[cuda].", file=sys.stderr)
        raise SystemExit(2) from None
    if not cuda.is_available():
        print("bench_gpu: no CUDA GPU is available; these rows need one (see benchmarks/README.md).", file=sys.stderr)
        raise SystemExit(2)
    import gradjit.kernels as kernels

    if args.cpu_executor not in kernels.EXECUTORS:
        args.cpu_executor = "reference"
    rows = run(args)
    text = report(rows, args)
    print(text)
    if args.write and not args.simulator:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
