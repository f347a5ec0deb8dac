"""Tests of gradjit.kernels.vmath: special values as NumPy gives them, the documented ulp bounds on
random points of each function's domain, scalar calls from Python, and that a loop over each
function is vectorized by LLVM (no libm call in the loop).

The reference for the ulp errors is computed one format up: x86 ``long double`` for float64 (skipped
where ``long double`` is no wider than double), float64 for float32. The full measurement (10^7
points, also against NumPy) is ``benchmarks/vmath_ulps.py``.
"""

from __future__ import annotations

import platform
import re

import numpy as np
import pytest

numba = pytest.importorskip("numba")

from gradjit.kernels import vmath  # noqa: E402

NAMES = list(vmath.FUNCTIONS)
DTYPES = [np.float64, np.float32]
WIDE_LONGDOUBLE = np.finfo(np.longdouble).nmant >= 63


def ulp_error(got: np.ndarray, ref: np.ndarray, dtype) -> np.ndarray:
    """|got - ref| in units of the spacing of ``dtype`` at ``ref`` (ref in a wider format)."""
    fi = np.finfo(dtype)
    _, e = np.frexp(np.abs(ref))
    ulp_exp = np.maximum(e.astype(np.int64) - 1 - fi.nmant, fi.minexp - fi.nmant)
    ulp = np.ldexp(np.ones_like(ref), ulp_exp)
    return np.abs(got.astype(ref.dtype) - ref) / ulp


def samples(name: str, dtype, n: int, rng: np.random.Generator) -> np.ndarray:
    """Points spread over the domain: uniform in the exponent, plus the ranges that are hard."""
    f32 = dtype == np.float32
    top = np.log(np.finfo(dtype).max)

    def logu(lo, hi, m):  # magnitudes uniform in the exponent, both signs
        return np.exp(rng.uniform(np.log(lo), np.log(hi), m)) * rng.choice([-1.0, 1.0], m)

    m = n // 4
    if name in ("exp", "expm1"):
        lo = -104.0 if f32 else -746.0
        parts = [rng.uniform(lo if name == "exp" else -50, top, m), rng.uniform(-2, 2, m)]
        parts += [logu(1e-30 if f32 else 1e-300, 1, m), rng.uniform(-0.5, 0.5, m) + np.log(2)]
    elif name == "log":
        lo, hi = (-149, 128) if f32 else (-1074, 1024)
        parts = [np.exp2(rng.uniform(lo, hi, 2 * m)), rng.uniform(0.5, 2, m)]
        parts += [1 + logu(1e-7 if f32 else 1e-15, 0.5, m)]
    elif name == "log1p":
        parts = [logu(1e-30 if f32 else 1e-300, 1e30 if f32 else 1e300, m), rng.uniform(-1, 1, m)]
        parts += [-1 + np.exp2(-rng.uniform(0, 23 if f32 else 52, m)), rng.uniform(0.3, 3, m)]
    elif name in ("sin", "cos"):
        k = rng.integers(-1_000_000, 1_000_000, m)  # next to multiples of pi/2: hard reductions
        parts = [rng.uniform(-1.6e6, 1.6e6, m), rng.uniform(-10, 10, m)]
        parts += [logu(1e-30 if f32 else 1e-300, 1e6, m), k * (np.pi / 2)]
    else:  # tanh
        parts = [rng.uniform(-20, 20, m), logu(1e-30 if f32 else 1e-300, 30, m)]
        parts += [rng.uniform(-1, 1, m), rng.uniform(0.5, 0.6, m)]
    x = np.concatenate(parts).astype(dtype)
    x = x[np.isfinite(x)]
    if name == "log1p":
        x = x[x > -1]
    return x


def reference(name: str, x: np.ndarray) -> np.ndarray:
    wide = np.longdouble if x.dtype == np.float64 else np.float64
    with np.errstate(all="ignore"):
        return vmath.FUNCTIONS[name][2](x.astype(wide))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name", NAMES)
def test_ulp_error_within_documented_bound(name, dtype, rng):
    if dtype == np.float64 and not WIDE_LONGDOUBLE:
        pytest.skip("needs an 80-bit long double as the float64 reference")
    x = samples(name, dtype, 200_000, rng)
    got = vmath.apply(name, x)
    assert got.dtype == dtype
    ref = reference(name, x)
    finite = np.isfinite(ref) & (np.abs(ref) <= np.finfo(dtype).max)
    err = ulp_error(got[finite], ref[finite], dtype)
    bound = vmath.MAX_ULP[name][np.dtype(dtype).name]
    worst = int(np.argmax(err))
    assert err[worst] <= bound, (name, dtype, x[finite][worst], got[finite][worst], err[worst])
    # Where the true value overflows the format, the result is inf like NumPy's.
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(got[~finite], vmath.FUNCTIONS[name][2](x[~finite]))


def special_points(dtype) -> np.ndarray:
    fi = np.finfo(dtype)
    base = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 0.5, -0.5, 2.0, 1e-3, -1e-3]
    base += [fi.smallest_subnormal, -fi.smallest_subnormal, fi.smallest_normal, fi.max, -fi.max]
    base += [fi.smallest_normal * 0.75, -fi.smallest_normal * 0.75, fi.eps, fi.epsneg]
    if dtype == np.float64:  # exp/expm1 overflow and exp underflow/subnormal thresholds
        base += [709.782712893384, 709.7827128933841, 709.79, -745.1332191019411]
        base += [-745.1332191019412, -745.14, -708.3964185322641, -708.4, -37.5, -1.5]
        base += [0.55, -0.55, 19.1, 1e5, 1.6e6, -1e-300, 1e-300, 6.0e-17, -6.0e-17]
    else:
        base += [88.72283, 88.72284, 88.8, -103.97207, -103.97208, -87.33654, -87.4, -17.4]
        base += [0.55, -0.55, 9.1, 1e5, -1e-30, 1e-30, 1.5e-8, -1.5e-8]
    pts = np.array(base, dtype=dtype)
    with np.errstate(over="ignore"):
        return np.concatenate([pts, np.nextafter(pts, np.inf), np.nextafter(pts, -np.inf)])


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name", NAMES)
def test_special_values_match_numpy(name, dtype):
    x = special_points(dtype)
    got = vmath.apply(name, x)
    with np.errstate(all="ignore"):
        want = vmath.FUNCTIONS[name][2](x)
    assert got.dtype == want.dtype == dtype
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{name}: nan at {x}")
    exact = ~np.isfinite(want) | (want == 0)  # inf, nan, zeros: the same value and sign
    np.testing.assert_array_equal(got[exact], want[exact])
    signed = exact & ~np.isnan(want)  # the sign of a nan means nothing
    assert (np.signbit(got[signed]) == np.signbit(want[signed])).all(), (name, x[signed])
    # Elsewhere (subnormals, thresholds, +-1) within the documented bound of the exact value;
    # sin and cos past their exact range: finite and in [-1, 1].
    ok = ~exact
    if name in ("sin", "cos"):
        far = np.abs(x) > vmath.TRIG_EXACT_MAX
        assert (np.abs(got[far & ok]) <= 1).all(), (name, x[far & ok], got[far & ok])
        ok &= ~far
    if dtype == np.float32 or WIDE_LONGDOUBLE:
        err = ulp_error(got[ok], reference(name, x[ok]), dtype)
        assert err.max(initial=0) <= vmath.MAX_ULP[name][np.dtype(dtype).name], (name, x[ok], err)


@pytest.mark.parametrize("name", NAMES)
def test_scalar_calls_from_python(name):
    f, _, npf = vmath.FUNCTIONS[name]
    for x in (np.float64(0.3), np.float32(0.3)):
        y = f(x)
        assert isinstance(y, float)
        assert abs(y - npf(x)) <= 2 * np.spacing(abs(npf(x)))
    assert f(1) == f(1.0)  # integers compute in float64


@numba.njit(cache=False)
def _all_seven(x, out):
    for i in range(x.size):
        v = x[i]
        out[i] = (vmath.exp(v) + vmath.log(v) + vmath.log1p(v) + vmath.expm1(v) + vmath.sin(v)) + (
            vmath.cos(v) + vmath.tanh(v)
        )


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_loop_over_all_functions_is_vectorized(dtype):
    x = np.linspace(0.1, 3.0, 64).astype(dtype)
    out = np.empty_like(x)
    _all_seven(x, out)  # compiles (not cached, so the IR and assembly can be inspected)
    want = np.exp(x) + np.log(x) + np.log1p(x) + np.expm1(x) + np.sin(x) + np.cos(x) + np.tanh(x)
    np.testing.assert_allclose(out, want, rtol=1e-6 if dtype == np.float32 else 1e-14)
    sig = [s for s in _all_seven.signatures if s[0].dtype == numba.from_dtype(dtype)][0]
    llvm_ir = _all_seven.inspect_llvm(sig)
    assert re.search(r"<\d+ x double>", llvm_ir), "the loop was not vectorized"
    if platform.machine().lower() in ("x86_64", "amd64"):
        asm = _all_seven.inspect_asm(sig)
        packed = re.findall(r"\b(v?(?:mul|add|sub|div|fmadd\d*|fnmadd\d*)pd)\s", asm)
        assert len(packed) > 20, "no packed-double arithmetic in the loop"
        assert not re.search(r"call\w*\s+\S*(exp|log|sin|cos|tanh)", asm), "libm call in the loop"
