"""Accuracy and speed of gradjit.kernels.vmath: the numbers behind its docstrings.

Run ``python benchmarks/vmath_ulps.py`` (``--points N`` per function and dtype, default 10^7;
``--quick`` for 10^5). It writes ``benchmarks/results/vmath.md`` (or ``--out``) and prints it.

Accuracy: for each function and dtype, points spread over the domain in named regions (uniform in
the exponent over the whole range, plus the ranges that are hard for each method: subnormal results,
the switch points between formulas, arguments next to multiples of pi/2, ...). Errors are in ulps of
the target format at the reference value: against an extended-precision reference (x86 ``long
double`` for float64, 11 extra bits; float64 for float32) for vmath and for NumPy itself, and the
difference between vmath and NumPy.

Vectorization: a loop ``out[i] = f(x[i])`` is compiled (not cached) and its optimized LLVM IR
searched for vector types (``<8 x double>``) and its assembly for packed arithmetic and calls.

Speed: that loop on 10^6 elements against the NumPy ufunc and a Numba loop calling ``math.f``
(a libm call per element), and a fused elementwise expression (the W3 workload's integrand) written
three ways. Single thread; each time is the median of repeated calls after a warm-up call.
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numba
import numpy as np
from gradjit.kernels import vmath

RESULTS = Path(__file__).resolve().parent / "results" / "vmath.md"
NAMES = list(vmath.FUNCTIONS)
CHUNK = 1_000_000


# --------------------------------------------------------------------------- sampling


def _logu(rng, lo, hi, n, signs=(-1.0, 1.0)):
    """|x| uniform in the exponent between lo and hi, with random signs."""
    mag = np.exp2(rng.uniform(np.log2(lo), np.log2(hi), n))
    return mag * rng.choice(np.array(signs), n)


def regions(name: str, dtype) -> list[tuple[str, Callable]]:
    """(label, draw(rng, n)) for the regions of the domain of ``name`` in ``dtype``."""
    f32 = dtype == np.float32
    fi = np.finfo(dtype)
    tiny, big = float(fi.smallest_subnormal), float(fi.max)
    u = lambda lo, hi: lambda r, n: r.uniform(lo, hi, n)  # noqa: E731
    if name == "exp":
        sub = (-103.97, -87.34) if f32 else (-745.13, -708.4)
        return [
            ("subnormal results", u(*sub)),
            ("normal results", u(sub[1], 88.72 if f32 else 709.78)),
            ("[-1, 1]", u(-1, 1)),
            ("abs(x) in [2^-60, 1]", lambda r, n: _logu(r, 2.0**-60, 1, n)),
            ("abs(x) < 2^-60 (to subnormal)", lambda r, n: _logu(r, tiny, 2.0**-60, n)),
        ]
    if name == "expm1":
        return [
            ("[-40, max]", u(-40, 88.72 if f32 else 709.78)),
            ("[-1, 1]", u(-1, 1)),
            ("k = 1 switch [0.3, 0.4]", u(0.3, 0.4)),
            ("abs(x) in [2^-60, 1]", lambda r, n: _logu(r, 2.0**-60, 1, n)),
            ("abs(x) < 2^-60 (to subnormal)", lambda r, n: _logu(r, tiny, 2.0**-60, n)),
        ]
    if name == "log":
        return [
            ("all positive (incl. subnormal)", lambda r, n: _logu(r, tiny, big, n, (1.0,))),
            ("[0.5, 2]", u(0.5, 2)),
            ("1 + d, abs(d) in [2^-52, 0.5]", lambda r, n: 1 + _logu(r, 2.0**-52, 0.5, n)),
        ]
    if name == "log1p":
        return [
            ("(-1, 1)", u(-1, 1)),
            ("abs(x) in [tiny, 1], both signs", lambda r, n: _logu(r, tiny, 1, n)),
            ("[1, max]", lambda r, n: _logu(r, 1, big, n, (1.0,))),
            ("-1 + 2^-k", lambda r, n: -1 + np.exp2(-r.uniform(0, 23 if f32 else 52, n))),
        ]
    if name in ("sin", "cos"):
        kmax = 2**20
        near = lambda r, n: r.integers(-kmax, kmax, n) * (np.pi / 2)  # noqa: E731
        return [
            ("[-pi/4, pi/4]", u(-np.pi / 4, np.pi / 4)),
            ("[-100, 100]", u(-100, 100)),
            ("abs(x) in [2^-30, 1.6e6]", lambda r, n: _logu(r, 2.0**-30, vmath.TRIG_EXACT_MAX, n)),
            ("k pi/2 rounded, abs(k) < 2^20", near),
            ("abs(x) < 2^-30 (to subnormal)", lambda r, n: _logu(r, tiny, 2.0**-30, n)),
        ]
    if name == "tanh":
        return [
            ("[-20, 20]", u(-20, 20)),
            ("switch abs(x) in [0.5, 0.6]", lambda r, n: _logu(r, 0.5, 0.6, n)),
            ("abs(x) in [2^-30, 30]", lambda r, n: _logu(r, 2.0**-30, 30, n)),
            ("abs(x) < 2^-30 (to subnormal)", lambda r, n: _logu(r, tiny, 2.0**-30, n)),
        ]
    raise KeyError(name)


# --------------------------------------------------------------------------- error measurement


def ulp_error(got: np.ndarray, ref: np.ndarray, dtype) -> np.ndarray:
    """|got - ref| in ulps of ``dtype`` at ``ref`` (``ref`` in a wider format)."""
    fi = np.finfo(dtype)
    _, e = np.frexp(np.abs(ref))
    ulp_exp = np.maximum(e.astype(np.int64) - 1 - fi.nmant, fi.minexp - fi.nmant)
    return np.abs(got.astype(ref.dtype) - ref) / np.ldexp(np.ones_like(ref), ulp_exp)


def measure(name: str, dtype, points: int, rng) -> list[dict]:
    regs = regions(name, dtype)
    npf = vmath.FUNCTIONS[name][2]
    wide = np.longdouble if dtype == np.float64 else np.float64
    rows = []
    for label, draw in regs:
        worst = {"ours": (0.0, None), "numpy": (0.0, None), "diff": (0.0, None)}
        done = 0
        per = points // len(regs)
        while done < per:
            m = min(CHUNK, per - done)
            done += m
            x = draw(rng, m).astype(dtype)
            x = x[np.isfinite(x)]
            if name == "log1p":
                x = x[x > -1]
            with np.errstate(all="ignore"):
                ref = npf(x.astype(wide))
                theirs = npf(x)
            ours = vmath.apply(name, x)
            ok = np.isfinite(ref) & (np.abs(ref) <= np.finfo(dtype).max)
            for key, err in (
                ("ours", ulp_error(ours[ok], ref[ok], dtype)),
                ("numpy", ulp_error(theirs[ok], ref[ok], dtype)),
                ("diff", ulp_error(ours[ok], theirs[ok].astype(wide), dtype)),
            ):
                if err.size and err.max() > worst[key][0]:
                    worst[key] = (float(err.max()), x[ok][int(np.argmax(err))])
            # Overflowing or special results must be identical to NumPy's.
            with np.errstate(all="ignore"):
                assert np.array_equal(ours[~ok], theirs[~ok], equal_nan=True), (name, x[~ok])
        rows.append({"region": label, "n": per, **worst})
    return rows


# --------------------------------------------------------------------------- vectorization, speed


def _loop(fn):
    def loop(x, out):
        for i in range(x.size):
            out[i] = fn(x[i])

    return numba.njit(cache=False, error_model="numpy")(loop)


MATH = {n: getattr(math, n) for n in NAMES}


def vector_report(name: str, dtype) -> tuple[str, str]:
    f = _loop(vmath.FUNCTIONS[name][0])
    x = np.linspace(0.1, 2, 64).astype(dtype)
    f(x, np.empty_like(x))
    sig = f.signatures[0]
    vec = sorted(set(re.findall(r"<\d+ x (?:double|float)>", f.inspect_llvm(sig))))
    asm = f.inspect_asm(sig)
    packed = sorted(set(re.findall(r"\b(v?(?:fmadd|fmsub|fnmadd|mul|add|div)\w*pd)\s", asm)))
    # Direct calls by name (the indirect ones belong to the Python wrapper of the loop).
    calls = sorted(set(re.findall(r"call\w*\s+([A-Za-z_][\w.@$]*)", asm)))
    return ", ".join(vec) or "none", f"{', '.join(packed[:6]) or 'none'}; calls: {calls or 'none'}"


def timeit(fn: Callable, *args, repeats: int = 21) -> float:
    fn(*args)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


SPEED_DOMAIN = {
    "exp": (-10, 10),
    "log": (0.01, 100),
    "log1p": (-0.9, 10),
    "expm1": (-10, 10),
    "sin": (-10, 10),
    "cos": (-10, 10),
    "tanh": (-5, 5),
}


@numba.njit(cache=False, error_model="numpy")
def _w3_vmath(x, out):
    for i in range(x.size):
        v = x[i]
        out[i] = vmath.sin(v) * vmath.exp(-v * v) + vmath.log1p(v * v)


@numba.njit(cache=False, error_model="numpy")
def _w3_math(x, out):
    for i in range(x.size):
        v = x[i]
        out[i] = math.sin(v) * math.exp(-v * v) + math.log1p(v * v)


def _w3_numpy(x, out):
    np.add(np.sin(x) * np.exp(-x * x), np.log1p(x * x), out=out)


# --------------------------------------------------------------------------- report


def fmt(v: float) -> str:
    return f"{v:.3f}"


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=10_000_000)
    ap.add_argument("--quick", action="store_true", help="10^5 points, fewer timing repeats")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    points = 100_000 if args.quick else args.points
    repeats = 5 if args.quick else 21
    rng = np.random.default_rng(2024)
    wide_ok = np.finfo(np.longdouble).nmant >= 63
    t_start = time.perf_counter()

    lines = [
        "# vmath: accuracy and speed of the vectorizable transcendental functions",
        "",
        f"Date {datetime.date.today()}; Python {platform.python_version()}, NumPy {np.__version__}, "
        f"Numba {numba.__version__}; {platform.machine()}, {platform.system()}, CPU "
        f"{numba.config.CPU_NAME or __import__('llvmlite.binding').binding.get_host_cpu_name()}. "
        "Produced by `python benchmarks/vmath_ulps.py`.",
        "",
        "## Accuracy",
        "",
        f"{points:,} points per function and dtype, split evenly over the regions below. Errors are "
        "in ulps of the target format at the reference value; the reference is x86 `long double` "
        "(64-bit significand) for float64 and float64 for float32. *vmath* and *NumPy* are each "
        "against that reference; *vmath - NumPy* is the difference between the two. Points whose "
        "true value overflows the format are checked to be `inf` like NumPy's, not counted.",
        "",
    ]
    if not wide_ok:
        lines += ["**long double is not wider than double here: float64 errors are not exact.**", ""]
    summary = []
    for name in NAMES:
        for dtype in (np.float64, np.float32):
            dt = np.dtype(dtype).name
            rows = measure(name, dtype, points, rng)
            lines += [
                f"### {name} {dt}",
                "",
                "| region | points | vmath max ulp | at x | NumPy max ulp | vmath - NumPy max ulp |",
                "|---|---:|---:|---|---:|---:|",
            ]
            for r in rows:
                at = r["ours"][1]
                lines.append(
                    f"| {r['region']} | {r['n']:,} | {fmt(r['ours'][0])} | "
                    f"{'' if at is None else repr(float(at))} | {fmt(r['numpy'][0])} | "
                    f"{fmt(r['diff'][0])} |"
                )
            lines.append("")
            summary.append(
                (
                    name,
                    dt,
                    max(r["ours"][0] for r in rows),
                    max(r["numpy"][0] for r in rows),
                    max(r["diff"][0] for r in rows),
                    vmath.MAX_ULP[name][dt],
                )
            )
            print(f"{name} {dt}: max {summary[-1][2]:.3f} ulp", file=sys.stderr)
    head = [
        "### Summary (maximum over all regions)",
        "",
        "| function | dtype | vmath max ulp | MAX_ULP | NumPy max ulp | vmath - NumPy |",
        "|---|---|---:|---:|---:|---:|",
    ]
    head += [f"| {n} | {d} | {fmt(a)} | {b} | {fmt(c)} | {fmt(e)} |" for n, d, a, c, e, b in summary]
    i = lines.index("## Accuracy") + 2
    lines[i:i] = head + [""]
    lines += [
        "*MAX_ULP* is `vmath.MAX_ULP`, the bound the tests use, which also holds without FMA. "
        "sin and cos: the tables cover |x| <= 1.6e6 (2^20 pi/2), their exact range; past it the "
        "error grows like |x| 2^-53 (absolute) and the result is clamped to [-1, 1].",
        "",
        "## Vectorization",
        "",
        "A loop `for i in range(n): out[i] = f(x[i])` compiled with `numba.njit` (not cached): "
        "vector types in its optimized LLVM IR, packed-double instructions and calls in its "
        "assembly (direct calls by name: none means no libm, nor anything else, is called).",
        "",
        "| function | dtype | LLVM vector types | assembly |",
        "|---|---|---|---|",
    ]
    for name in NAMES:
        for dtype in (np.float64, np.float32):
            v, a = vector_report(name, dtype)
            lines.append(f"| {name} | {np.dtype(dtype).name} | {v} | {a} |")
    lines += [
        "",
        "## Speed",
        "",
        "10^6 elements, one thread, median of repeated calls (ms). *vmath loop*: the loop above; "
        "*NumPy*: the ufunc with `out=`; *math loop*: the same Numba loop calling `math.f` (a libm "
        "call per element, which is what a Numba loop gets without SVML).",
        "",
        "| function | dtype | vmath loop | NumPy | math loop | NumPy / vmath | math / vmath |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    n = 1_000_000
    for name in NAMES:
        ours_loop, math_loop = _loop(vmath.FUNCTIONS[name][0]), _loop(MATH[name])
        for dtype in (np.float64, np.float32):
            x = rng.uniform(*SPEED_DOMAIN[name], n).astype(dtype)
            out = np.empty_like(x)
            t_ours = timeit(ours_loop, x, out, repeats=repeats)
            t_np = timeit(lambda: vmath.FUNCTIONS[name][2](x, out=out), repeats=repeats)
            t_math = timeit(math_loop, x, out, repeats=repeats)
            lines.append(
                f"| {name} | {np.dtype(dtype).name} | {t_ours * 1e3:.3f} | {t_np * 1e3:.3f} | "
                f"{t_math * 1e3:.3f} | {t_np / t_ours:.2f} | {t_math / t_ours:.2f} |"
            )
    lines += [
        "",
        "Fused: `sin(x) * exp(-x*x) + log1p(x*x)` over 10^6 float64 in [-3, 3] (the W3 integrand): "
        "one Numba loop with vmath, the same loop with `math.*`, and NumPy (temporaries).",
        "",
        "| version | ms | / vmath |",
        "|---|---:|---:|",
    ]
    x = rng.uniform(-3, 3, n)
    out = np.empty_like(x)
    t_v, ref = None, None
    for label, fn in (("vmath loop", _w3_vmath), ("math loop", _w3_math), ("NumPy", _w3_numpy)):
        t = timeit(fn, x, out, repeats=repeats)
        t_v = t_v or t
        ref = out.copy() if ref is None else ref
        np.testing.assert_allclose(out, ref, rtol=1e-14, atol=1e-15)
        lines.append(f"| {label} | {t * 1e3:.3f} | {t / t_v:.2f} |")
    lines += ["", f"Run time of this script: {time.perf_counter() - t_start:.0f} s.", ""]
    text = "\n".join(lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
