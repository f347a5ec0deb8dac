"""Issue 3 benchmark: gradjit against its peers on W1-W7, side by side in one run.

    python benchmarks/bench_issue3.py            # everything; writes benchmarks/results/issue3.md
    python benchmarks/bench_issue3.py --quick    # tiny sizes, few repeats: a smoke run (numbers are noise)
    python benchmarks/bench_issue3.py --only W1,W7k8 --skip torch

Systems (when installed; see ``workloads_issue3.py`` for the workloads): gradjit ``grad`` and, once
``gradjit.jit`` exists, ``jit(grad)``; the hand-written NumPy gradient; a hand-fused Numba loop (W1,
W3, W4, W5, W6); HIPS autograd; JAX with ``jit`` (and without, where the issue asks); PyTorch eager.

Three times per (workload, system):

- *steady*: the median over repeats of the mean time per call, after warm-up calls;
- *trace*: tracing alone, where a system has a separate trace step (gradjit ``grad``: the forward
  trace each call records; gradjit ``jit``: tracing the whole gradient into a list, ``make_wengert``;
  JAX: ``make_jaxpr`` of the gradient), median of repeated traces of a fresh function object;
- *first call*: the first call of a newly built function in a fresh Python process (a subprocess;
  imports, data and JAX's backend are set up before the clock starts; gradjit's disk cache is warm
  because the steady-state runs came first), median over ``--first-call-runs`` processes.

Plus: peak memory of the W2 large gradient (``tracemalloc`` for the NumPy-based systems; the peak
resident-set growth over one call in a fresh process, ``VmHWM`` after a reset, for every system), and
the time of ``import gradjit`` in a fresh process.

Invariants: every system is single-threaded (BLAS, Numba, XLA and PyTorch thread settings are made
before anything is imported, here and in the child processes); every system's derivative is checked
against gradjit's ``grad`` (and against the closed form where there is one) before it is timed, and a
system that disagrees or fails is reported as such, never timed; jit rows are also checked on inputs
that change the control flow between calls. Nothing here asserts a speed.
"""

from __future__ import annotations

import os

_XLA = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"  # before NumPy, Numba or a peer is imported: single-threaded for every system
if _XLA not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _XLA).strip()

import argparse  # noqa: E402
import datetime  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import workloads_issue3 as wk  # noqa: E402

import gradjit as gj  # noqa: E402

RESULTS = HERE / "results" / "issue3.md"
PEERS = ("autograd", "jax", "torch", "numba")  # --skip names; "numba" drops the hand-fused baselines


@dataclass
class Settings:
    repeats: int = 7
    min_time: float = 0.05  # seconds per repeat (calls per repeat are calibrated to reach it)
    warmup: int = 3
    budget: float = 3.0  # seconds of timed calls per row at most (slow rows get fewer repeats, >= 3)
    first_call_runs: int = 3
    subprocesses: bool = True
    quick: bool = False

    @classmethod
    def for_quick(cls) -> Settings:
        return cls(repeats=2, min_time=0.0, warmup=1, budget=0.2, first_call_runs=1, quick=True)


@dataclass
class Cell:
    """One (workload, system) result. Times in seconds; ``error`` set when the system failed or disagreed."""

    system: str
    steady: float | None = None
    trace: float | None = None
    first: float | None = None
    error: str = ""
    note: str = ""


@dataclass
class Result:
    key: str
    title: str
    what: str
    cells: dict[str, Cell]
    checks: list[str] = field(default_factory=list)
    jit_ok: bool | None = None  # jit(grad) right on every call of jit_check; None when not checked
    labels: dict[str, str] = field(default_factory=dict)

    def label(self, name: str) -> str:
        return self.labels.get(name, wk.LABELS[name])


# --------------------------------------------------------------------------- timing


def time_call(call: Callable[[], Any], s: Settings) -> float:
    """Median over repeats of the mean seconds per call, after warm-up; slow calls get fewer repeats."""
    t0 = time.perf_counter()
    call()
    per = time.perf_counter() - t0
    for _ in range(s.warmup - 1 if per < 0.1 else 0):
        t0 = time.perf_counter()
        call()
        per = time.perf_counter() - t0
    number = max(1, int(s.min_time / per)) if per > 0 else 1
    repeats = s.repeats
    if per * number * repeats > s.budget:
        repeats = max(min(3, s.repeats), int(s.budget / (per * number)))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            call()
        samples.append((time.perf_counter() - t0) / number)
    return statistics.median(samples)


# --------------------------------------------------------------------------- agreement


def leaves(x: Any) -> Iterator[np.ndarray]:
    """The arrays of a result (dict keys sorted; JAX arrays and torch tensors as NumPy)."""
    if isinstance(x, dict):
        for k in sorted(x):
            yield from leaves(x[k])
    elif isinstance(x, (list, tuple)):
        for e in x:
            yield from leaves(e)
    elif hasattr(x, "detach"):  # torch.Tensor
        yield x.detach().cpu().numpy().astype(float)
    else:
        yield np.asarray(x, dtype=float)


def check_agreement(got: Any, want: Any, what: str, rtol: float = 1e-7) -> None:
    """``AssertionError`` unless ``got`` matches ``want`` leaf by leaf (tolerance relative to the leaf's scale)."""
    g, w = list(leaves(got)), list(leaves(want))
    assert len(g) == len(w), f"{what}: {len(g)} arrays, expected {len(w)}"
    for a, b in zip(g, w, strict=True):
        assert a.shape == b.shape, f"{what}: shape {a.shape}, expected {b.shape}"
        scale = float(np.max(np.abs(b))) if b.size else 0.0
        np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-12 * max(scale, 1.0), err_msg=what)


def _short(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {msg[:60]}" if msg else type(e).__name__


# --------------------------------------------------------------------------- one workload


def measure(key: str, s: Settings) -> Result:
    """Build a workload's systems, check them against gradjit ``grad``, then time each that agrees."""
    wl = wk.build(key, s.quick)
    res = Result(wl.key, wl.title, wl.what, {}, labels=dict(wl.labels))
    systems: dict[str, wk.System] = {}
    for name in wk.LABELS:
        if name not in wl.factories:
            continue
        cell = res.cells[name] = Cell(name)
        try:
            systems[name] = wl.factories[name]()
            cell.note = systems[name].note
        except Exception as e:  # a peer that cannot build this workload: reported, not fatal
            cell.error = _short(e)
    reference = systems["gj"].call()  # gradjit grad must work: everything is checked against it
    if wl.exact is not None:
        check_agreement(reference, wl.exact(), f"{key}: gradjit grad vs the closed form", rtol=1e-10)
    for name, system in list(systems.items()):
        if name == "gj":
            continue
        try:
            check_agreement(system.call(), reference, f"{key}: {wl.label(name)} vs gradjit grad")
        except AssertionError as e:
            res.cells[name].error = "DISAGREES with gradjit grad: " + str(e).strip().splitlines()[-1][:120]
            del systems[name]
        except Exception as e:
            res.cells[name].error = _short(e)
            del systems[name]
    if wl.jit_check is not None and "gj_jit" in systems:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            bad = wl.jit_check(systems["gj_jit"].fn)
        res.jit_ok = not bad
        res.checks.append(
            "jit(grad) right on every call of the guard check" if not bad else f"jit(grad) WRONG: {', '.join(bad)}"
        )
        res.checks += [f"warning during the guard check: {w.message}" for w in caught]
    if not s.quick:  # a smoke run times whatever runs (its numbers are noise anyway)
        settle_compiles(systems)
    for name, system in systems.items():
        cell = res.cells[name]
        cell.steady = time_call(system.call, s)
        if system.trace is not None:
            cell.trace = time_call(system.trace, Settings(**{**s.__dict__, "repeats": min(s.repeats, 5)}))
    return res


def settle_compiles(systems: dict[str, wk.System]) -> None:
    """Steady state times compiled code: gradjit's CPU executor compiles a list in a background thread
    once it has run ``HOT_AFTER`` times and spent ``HOT_SECONDS`` in the interpreter (interpreting it
    meanwhile), so the time condition is dropped, each jit row is called that often, and the compiles
    are waited for before any timing. (First calls are timed in fresh processes, where nothing is
    waited for.)"""
    try:
        from gradjit.kernels import cpu, hot
    except ImportError:  # an executor without background compiles
        return
    # jit's executor runs on the reference executor until the interpreter has loaded (about 0.3 s in a
    # fresh process, in a background thread started with the executor): make the executors (one call
    # each), wait for the load, so that the runs below and the steady state are the CPU executor's.
    jit_systems = [system for name, system in systems.items() if "jit" in name and name.startswith("gj")]
    for system in jit_systems:
        system.call()
    cpu.wait_until_loaded()
    hot.HOT_SECONDS = 0.0
    for system in jit_systems:
        for _ in range(hot.HOT_AFTER + 1):
            system.call()
    hot.wait_for_background_compiles()


# --------------------------------------------------------------------------- fresh processes


def _child_argv(mode: str, key: str, system: str, s: Settings) -> list[str]:
    argv = [sys.executable, str(Path(__file__).resolve()), mode, key, system]
    if s.quick:
        argv.append("--quick")
    if wk.DISABLED:
        argv += ["--skip", ",".join(sorted(wk.DISABLED))]
    return argv


def _run_child(argv: list[str], env: dict[str, str] | None = None, timeout: float = 300.0) -> dict:
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"child exited {out.returncode}: {tail[:150]}"}


def first_call_fresh(key: str, system: str, s: Settings) -> float | str:
    """Median over fresh processes of the first call's time, or the error the child reported."""
    times = []
    for _ in range(max(1, s.first_call_runs)):
        r = _run_child(_child_argv("--child-first-call", key, system, s))
        if "error" in r:
            return r["error"]
        times.append(r["seconds"])
    return statistics.median(times)


def _child_first_call(key: str, system: str, quick: bool) -> dict:
    wl = wk.build(key, quick)
    sysm = wl.factories[system]()  # imports, data, JAX device arrays: before the clock starts
    t0 = time.perf_counter()
    sysm.call()
    return {"seconds": time.perf_counter() - t0}


def _status_kib(field_name: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field_name}:\s+(\d+) kB", text, re.M).group(1))


def rss_available() -> bool:
    return Path("/proc/self/clear_refs").exists() and Path("/proc/self/status").exists()


def _child_memory(key: str, system: str, quick: bool) -> dict:
    """Peak resident-set growth over one call, after two warm-up calls (Linux: VmHWM after a reset)."""
    wl = wk.build(key, quick)
    sysm = wl.factories[system]()
    sysm.call()
    sysm.call()
    gc.collect()
    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    out = sysm.call()
    peak = _status_kib("VmHWM")
    del out
    return {"bytes": (peak - before) * 1024}


def memory_fresh(key: str, system: str, s: Settings) -> float | str:
    # A fixed mmap threshold makes glibc return large blocks to the OS when freed, so a call's peak
    # shows up as resident-set growth instead of being served from memory an earlier call left behind.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    r = _run_child(_child_argv("--child-memory", key, system, s), env=env)
    return r.get("bytes", r.get("error", "no result"))


def memory_tracemalloc(call: Callable[[], Any]) -> int:
    """Peak bytes traced by ``tracemalloc`` during one call (after warm-up): NumPy's allocations are
    traced; memory allocated by compiled code outside Python's allocator hooks (Numba, XLA, PyTorch)
    is not."""
    call()
    call()
    gc.collect()
    tracemalloc.start()
    try:
        out = call()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    del out
    return peak


def import_time(stmt: str, runs: int) -> float | str:
    """Median seconds of ``stmt`` (an import) in fresh processes, not counting interpreter start-up."""
    code = f"import time; t0 = time.perf_counter(); {stmt}; print(time.perf_counter() - t0)"
    times = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
        if out.returncode != 0:
            return (out.stderr.strip().splitlines() or ["failed"])[-1][:150]
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


# --------------------------------------------------------------------------- the whole run


@dataclass
class Report:
    results: dict[str, Result]
    memory: dict[str, dict[str, Any]]  # system -> {"tracemalloc": bytes, "rss": bytes | error}
    imports: dict[str, float | str]
    info: dict[str, str]


def run(keys: tuple[str, ...], s: Settings, log: Callable[[str], None] = print) -> Report:
    results = {}
    for key in keys:
        t0 = time.perf_counter()
        results[key] = measure(key, s)
        log(f"  {key}: {len(results[key].cells)} systems, {time.perf_counter() - t0:.1f} s")
    memory: dict[str, dict[str, Any]] = {}
    imports: dict[str, float | str] = {}
    if s.subprocesses:
        for key in keys:  # after the steady-state runs: gradjit's disk cache is warm
            wl = wk.build(key, s.quick)
            for name in wl.first_call:
                cell = results[key].cells.get(name)
                if cell is None or cell.error:
                    continue
                r = first_call_fresh(key, name, s)
                if isinstance(r, str):
                    cell.note = (cell.note + "; " if cell.note else "") + f"first call failed: {r}"
                else:
                    cell.first = r
        log("  first calls measured in fresh processes")
    if "W2L" in keys:
        memory = measure_memory(results["W2L"], s)
        log("  memory measured")
    if s.subprocesses:
        runs = 1 if s.quick else 3
        imports["import gradjit"] = import_time("import gradjit", runs)
        imports["import gradjit (NumPy already imported)"] = import_time(
            "import numpy; t0 = time.perf_counter(); import gradjit", runs
        )
        for peer, stmt in (("jax", "import jax"), ("torch", "import torch"), ("autograd", "import autograd")):
            if wk.available(peer) and not s.quick:
                imports[stmt] = import_time(stmt, 1)
    return Report(results, memory, imports, versions())


def measure_memory(w2l: Result, s: Settings) -> dict[str, dict[str, Any]]:
    wl = wk.build("W2L", s.quick)
    out: dict[str, dict[str, Any]] = {}
    for name, cell in w2l.cells.items():
        if cell.error:
            continue
        m: dict[str, Any] = {}
        if name in ("gj", "gj_jit", "np", "ag"):  # NumPy-based: tracemalloc sees their arrays
            m["tracemalloc"] = memory_tracemalloc(wl.factories[name]().call)
        if s.subprocesses and rss_available():
            m["rss"] = memory_fresh("W2L", name, s)
        out[name] = m
    return out


def _version(dist: str) -> str:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:
        return "not installed"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True, check=False
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def versions() -> dict[str, str]:
    info = {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "python": platform.python_version(),
        "gradjit": f"{gj.__version__} (commit {_git_commit()})",
        "gradjit executor": str(getattr(gj.config, "executor", "reference (no executor setting yet)")),
        "gradjit jit": "yes" if wk.has_jit() else "not available",
        "numpy": np.__version__,
        "numba": _version("numba"),
    }
    for dist in ("autograd", "jax", "jaxlib", "torch"):
        peer = "jax" if dist == "jaxlib" else dist
        info[dist] = _version(dist) if wk.available(peer) else ("skipped" if peer in wk.DISABLED else "not installed")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"
    info["machine"] = (
        f"{_cpu()}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}; one thread per system; "
        f"load average {load} at the end of the run (other processes make times noisy)"
    )
    return info


# --------------------------------------------------------------------------- targets


@dataclass
class Target:
    name: str
    value: float | None  # the measured ratio (or seconds for import); None: not measurable now
    limit: float | None  # None: informational
    why_missing: str = ""
    unit: str = "x"

    @property
    def status(self) -> str:
        if self.value is None:
            return f"n/a ({self.why_missing})" if self.why_missing else "n/a"
        if self.limit is None:
            return "info"
        return "met" if self.value <= self.limit else "NOT met"


def _steady(rep: Report, key: str, name: str) -> float | None:
    r = rep.results.get(key)
    c = r.cells.get(name) if r else None
    return c.steady if c and not c.error else None


def _missing(rep: Report, key: str, *names: str) -> str:
    if key not in rep.results:
        return f"{key} not run"
    for n in names:
        c = rep.results[key].cells.get(n)
        if c is None:
            if n == "gj_jit":
                return "gj.jit not available"
            peer = {"ag": "autograd", "jax_jit": "jax", "jax": "jax"}.get(n, n)
            return f"{wk.LABELS[n]} {'skipped' if peer in wk.DISABLED else 'not installed'}"
        if c.error:
            return f"{wk.LABELS[n]} failed"
    return ""


def _ratio(rep: Report, name: str, key: str, a: str, b: str, limit: float | None) -> Target:
    ta, tb = _steady(rep, key, a), _steady(rep, key, b)
    value = ta / tb if ta is not None and tb else None
    return Target(name, value, limit, _missing(rep, key, a, b))


def targets(rep: Report) -> list[Target]:
    r = _ratio
    out = [
        r(rep, "W1: jit(grad) / HIPS autograd", "W1", "gj_jit", "ag", 0.10),
        r(rep, "W1: grad / HIPS autograd", "W1", "gj", "ag", 1 / 3),
        r(rep, "W2 large: jit(grad) / JAX jit", "W2L", "gj_jit", "jax_jit", 1.05),
        r(rep, "W2 large: grad / JAX jit", "W2L", "gj", "jax_jit", None),
        r(rep, "W2 small: jit(grad) / numpy hand-written", "W2s", "gj_jit", "np", 1.0),
        r(rep, "W2 small: grad / numpy hand-written", "W2s", "gj", "np", None),
        r(rep, "W3: jit(grad) / numba hand-fused", "W3", "gj_jit", "numba", 1.0),
        r(rep, "W3 (aim): jit(grad) / JAX jit", "W3", "gj_jit", "jax_jit", 1.0),
        r(rep, "W3: grad / numba hand-fused", "W3", "gj", "numba", None),
        r(rep, "W4: jit(grad) / JAX jit", "W4", "gj_jit", "jax_jit", 0.5),
        r(rep, "W4: grad / numpy hand-written", "W4", "gj", "np", 1.0),
        r(rep, "W5: jit(grad) / HIPS autograd (trip count repeating)", "W5", "gj_jit", "ag", 0.05),
        r(rep, "W5: grad / HIPS autograd", "W5", "gj", "ag", None),
        r(rep, "W6: jit(hvp) / JAX jit", "W6", "gj_jit", "jax_jit", 1.0),
        r(rep, "W6: hvp / JAX jit", "W6", "gj", "jax_jit", None),
        r(rep, "W7: grad at k=8 / PyTorch at k=8", "W7k8", "gj", "torch", 0.2),
    ]
    if "W5" in rep.results:
        ok = rep.results["W5"].jit_ok
        out.insert(
            11,
            Target(
                "W5: jit(grad) correct on every call (1 = yes)",
                None if ok is None else float(not ok),
                0.0,
                "gj.jit not available" if ok is None else "",
                unit="bool",
            ),
        )
    for name, label in (("gj", "grad"), ("gj_jit", "jit(grad)")):
        ts = [_steady(rep, f"W7k{k}", name) for k in range(1, 9)]
        if all(t is not None for t in ts):
            steps = [b / a for a, b in zip(ts, ts[1:], strict=False)]
            mean = (ts[-1] / ts[0]) ** (1 / 7)
            out.append(Target(f"W7: {label} growth per order, geometric mean k=1..8", mean, 2.0))
            out.append(Target(f"W7: {label} growth per order, largest step", max(steps), None))
        else:
            why = "gj.jit not available" if name == "gj_jit" and not wk.has_jit() else "W7 k=1..8 not all run"
            out.append(Target(f"W7: {label} growth per order", None, 2.0, why))
    mem = rep.memory
    if mem:
        np_peak = mem.get("np", {}).get("tracemalloc")
        for name, label in (("gj", "grad"), ("gj_jit", "jit(grad)")):
            peak = mem.get(name, {}).get("tracemalloc")
            value = peak / np_peak if peak is not None and np_peak else None
            why = "gj.jit not available" if name == "gj_jit" and not wk.has_jit() else "not measured"
            out.append(Target(f"Memory, W2 large: {label} peak / numpy hand-written (tracemalloc)", value, 1.2, why))
            rss, np_rss = mem.get(name, {}).get("rss"), mem.get("np", {}).get("rss")
            if isinstance(rss, int) and isinstance(np_rss, int) and np_rss > 0:
                out.append(Target(f"Memory, W2 large: {label} peak / numpy hand-written (RSS)", rss / np_rss, 1.2))
    for res in rep.results.values():
        jax_first = res.cells.get("jax_jit")
        for name, label in (("gj", "grad"), ("gj_jit", "jit(grad)")):
            c = res.cells.get(name)
            if c is None or c.first is None:
                continue
            if jax_first is not None and jax_first.first:
                out.append(Target(f"First call, {res.title}: {label} / JAX jit", c.first / jax_first.first, 0.25))
    imp = rep.imports.get("import gradjit")
    if imp is not None:
        out.append(
            Target("import gradjit, fresh process (seconds)", imp if isinstance(imp, float) else None, 1.0, unit="s")
        )
    return out


# --------------------------------------------------------------------------- reporting


def fmt_time(t: float | None) -> str:
    if t is None:
        return "-"
    if t >= 1.0:
        return f"{t:.2f} s"
    if t >= 1e-3:
        return f"{t * 1e3:.2f} ms"
    return f"{t * 1e6:.1f} us"


def fmt_bytes(b: Any) -> str:
    if not isinstance(b, (int, float)):
        return str(b)
    return f"{b / 2**20:.2f} MiB"


def _x(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "-"


def workload_rows(res: Result) -> list[list[str]]:
    """Rows: system, trace, first call, steady, steady / gradjit grad, steady / gradjit jit, note."""
    ref, ref_jit = res.cells["gj"].steady, None
    if "gj_jit" in res.cells and not res.cells["gj_jit"].error:
        ref_jit = res.cells["gj_jit"].steady
    rows = []
    for name, c in res.cells.items():
        # A failure with an explanatory note shows the error's type only (its message is long).
        note = f"{c.error.split(':')[0]}: {c.note}" if c.error and c.note else (c.error or c.note)
        rows.append(
            [
                res.label(name),
                fmt_time(c.trace),
                fmt_time(c.first),
                "fails" if c.error else fmt_time(c.steady),
                _x(c.steady, ref),
                _x(c.steady, ref_jit),
                note,
            ]
        )
    return rows


HEAD = ["system", "trace", "first call", "steady", "/ gj grad", "/ gj jit", "note"]


def w7_rows(rep: Report) -> tuple[list[str], list[list[str]]]:
    keys = [f"W7k{k}" for k in range(1, 9) if f"W7k{k}" in rep.results]
    names = [n for n in wk.LABELS if any(n in rep.results[k].cells for k in keys)]
    head = ["system"] + [f"k={k[3:]}" for k in keys] + ["growth per order"]
    rows = []
    for n in names:
        ts = [rep.results[k].cells.get(n) for k in keys]
        row = [wk.LABELS[n]] + ["fails" if c and c.error else fmt_time(c.steady if c else None) for c in ts]
        ok = [c.steady for c in ts if c and not c.error and c.steady]
        row.append(f"{(ok[-1] / ok[0]) ** (1 / (len(ok) - 1)):.2f}x" if len(ok) == len(keys) > 1 else "-")
        rows.append(row)
    return head, rows


def _text_table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    lines = [
        "  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w) for i, (v, w) in enumerate(zip(r, widths)))
        for r in [head, *rows]
    ]  # noqa: E501
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(line.rstrip() for line in lines)


def _md_table(head: list[str], rows: list[list[str]], right_from: int = 1) -> list[str]:
    align = ["---" if i < right_from or h in ("note", "status") else "---:" for i, h in enumerate(head)]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(str(v).replace("|", "\\|") for v in r) + " |" for r in rows]
    return out


def _target_rows(rep: Report) -> list[list[str]]:
    rows = []
    for t in targets(rep):
        if t.unit == "bool":
            value = "-" if t.value is None else ("yes" if t.value == 0 else "NO")
            limit = "yes"
        elif t.unit == "s":
            value = "-" if t.value is None else f"{t.value:.3f} s"
            limit = f"<= {t.limit:.2f} s"
        else:
            value = "-" if t.value is None else f"{t.value:.3f}"
            limit = "-" if t.limit is None else f"<= {t.limit:.2f}"
        rows.append([t.name, value, limit, t.status])
    return rows


def _memory_rows(rep: Report) -> list[list[str]]:
    rows = []
    for n, m in rep.memory.items():
        traced = fmt_bytes(m["tracemalloc"]) if "tracemalloc" in m else "-"
        rows.append([rep.results["W2L"].label(n), traced, fmt_bytes(m.get("rss", "-"))])
    return rows


def _sections(rep: Report) -> Iterator[tuple[str, str, list[str], list[list[str]]]]:
    """(title, description, head, rows) per table, in print order."""
    for key, res in rep.results.items():
        if key.startswith("W7k"):
            continue
        desc = res.what + ("" if not res.checks else "; " + "; ".join(res.checks))
        yield res.title, desc, HEAD, workload_rows(res)
    if any(k.startswith("W7k") for k in rep.results):
        head, rows = w7_rows(rep)
        yield "W7 k-th derivative of tanh, steady state", "nested grad k times, at x = 0.3", head, rows
    if rep.memory:
        yield (
            "Peak memory, W2 large gradient",
            "tracemalloc: peak traced bytes over one call (NumPy allocations; not Numba/XLA/PyTorch); "
            "RSS: peak resident-set growth over one call in a fresh process",
            ["system", "tracemalloc peak", "RSS peak growth"],
            _memory_rows(rep),
        )
    if rep.imports:
        yield (
            "Import time, fresh process",
            "",
            ["statement", "time"],
            [[k, fmt_time(v) if isinstance(v, float) else v] for k, v in rep.imports.items()],
        )
    yield (
        "Targets (issue 3)",
        "ratios of steady-state times in this run unless stated",
        ["target", "measured", "limit", "status"],
        _target_rows(rep),
    )  # noqa: E501


def to_text(rep: Report) -> str:
    parts = []
    for title, desc, head, rows in _sections(rep):
        parts += ["", f"== {title}", *([desc] if desc else []), _text_table(head, rows)]
    parts.append("")
    parts.append("; ".join(f"{k} {v}" for k, v in rep.info.items()))
    return "\n".join(parts)


def to_markdown(rep: Report, command: str) -> str:
    info = rep.info
    lines = [
        "# Issue 3 benchmark: gradjit vs hand-written NumPy, Numba, HIPS autograd, JAX and PyTorch",
        "",
        f"Run {info['date']} with `{command}`.",
        "",
        "Versions: " + ", ".join(f"{k} {info[k]}" for k in info if k not in ("date", "machine")) + ".",
        f"Machine: {info['machine']}.",
        "",
        "Steady: median over repeats of the mean time per call, after warm-up. Trace: tracing alone. First call: "
        "first call of a newly built function in a fresh process (gradjit's disk cache warm; imports, data and "
        "JAX's backend set up before the clock starts), median over fresh processes. `/ gj grad` and `/ gj jit`: "
        "steady time divided by gradjit's.",
    ]
    for title, desc, head, rows in _sections(rep):
        lines += ["", f"## {title}", ""]
        if desc:
            lines += [desc, ""]
        lines += _md_table(head, rows)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- command line


def _keys(only: str | None) -> tuple[str, ...]:
    if not only:
        return wk.WORKLOAD_KEYS
    keys: list[str] = []
    for part in only.split(","):
        part = part.strip()
        if part == "W7":
            keys += [k for k in wk.WORKLOAD_KEYS if k.startswith("W7k")]
        elif part == "W2":
            keys += ["W2s", "W2L"]
        elif part in wk.WORKLOAD_KEYS:
            keys.append(part)
        else:
            raise SystemExit(f"unknown workload {part!r}; known: W1, W2, W2s, W2L, W3, W4, W5, W6, W7, W7k1..W7k8")
    return tuple(dict.fromkeys(keys))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("--child-first-call", "--child-memory"):
        mode, key, system = argv[:3]
        quick = "--quick" in argv
        if "--skip" in argv:
            wk.DISABLED.update(argv[argv.index("--skip") + 1].split(","))
        try:
            r = (_child_first_call if mode == "--child-first-call" else _child_memory)(key, system, quick)
        except Exception as e:
            r = {"error": _short(e)}
        print(json.dumps(r))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few repeats: a smoke run, numbers are noise")
    parser.add_argument("--only", help="comma-separated workloads: W1,W2,W2s,W2L,W3,W4,W5,W6,W7,W7k1..W7k8")
    parser.add_argument("--skip", default="", help="comma-separated systems not to run: autograd,jax,torch,numba")
    parser.add_argument("--no-subprocess", action="store_true", help="skip first-call, RSS and import measurements")
    parser.add_argument("--executor", help="gradjit executor for this run and its child processes (gj.config.executor)")
    parser.add_argument("--first-call-runs", type=int, default=None, help="fresh processes per first-call time")
    parser.add_argument("--out", type=Path, default=None, help=f"Markdown results file (default {RESULTS}; "
                        "none for --quick unless given)")  # fmt: skip
    args = parser.parse_args(argv)
    wk.DISABLED.update(p for p in args.skip.split(",") if p)
    unknown = wk.DISABLED - set(PEERS)
    if unknown:
        raise SystemExit(f"--skip: unknown peers {sorted(unknown)}; known: {', '.join(PEERS)}")
    if args.executor:
        gj.config.executor = args.executor  # validates the name
        os.environ["GRADJIT_EXECUTOR"] = args.executor  # child processes read it at import
    s = Settings.for_quick() if args.quick else Settings()
    s.subprocesses = not args.no_subprocess
    if args.first_call_runs is not None:
        s.first_call_runs = args.first_call_runs
    keys = _keys(args.only)
    t0 = time.perf_counter()
    print(f"issue 3 benchmark: {', '.join(keys)}" + (" (quick)" if s.quick else ""), flush=True)
    rep = run(keys, s, log=lambda m: print(m, flush=True))
    print(to_text(rep))
    print(f"total {time.perf_counter() - t0:.0f} s")
    out = args.out if args.out is not None else (None if args.quick else RESULTS)
    if out is not None:
        command = "python benchmarks/bench_issue3.py" + (" " + " ".join(argv) if argv else "")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(to_markdown(rep, command))
        print(f"wrote {out}")
    missing = [p for p in PEERS if not wk.available(p) and p not in wk.DISABLED]  # numba: always there
    if missing:
        print(f"not installed, not compared: {', '.join(missing)} (pip install -e '.[bench]')", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
