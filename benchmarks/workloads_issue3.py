"""Workloads W1-W7 of issue 3, each as a set of systems that compute the same derivative.

Used by ``benchmarks/bench_issue3.py`` (the runner: timing, subprocesses, reporting). This module only
*builds* callables; it never times anything.

A workload is a name, a description and a dict ``system key -> factory``. A factory builds a
``System`` (its zero-argument ``call`` computes one derivative, with the result ready: JAX results
are blocked on) without calling it, so the runner can time a system's *first* call in a fresh
process. Model code is written once against a NumPy-like module ``xnp`` and instantiated with
``numpy`` (gradjit traces plain NumPy), ``autograd.numpy``, ``jax.numpy`` and ``torch`` (which
accepts NumPy's ``axis=``/``keepdims=`` spellings); only JAX ``jit`` of W1 needs its own version
(``lax.cond`` for the branch).

Invariants
----------
- Importing this module imports NumPy and gradjit only. Numba, JAX, PyTorch and HIPS autograd are
  imported inside the factories that use them, so a fresh process timing gradjit's first call does
  not pre-load Numba (gradjit loads it lazily: that cost belongs to gradjit's first call) and does
  not pay for the peers.
- A peer's factories exist only when the peer is importable and not disabled (``DISABLED``).
  ``gradjit jit`` rows exist only when ``gradjit.jit`` does; W6 uses ``gj.hvp`` (forward-over-reverse)
  when it exists, reverse-over-reverse otherwise.
- All systems compute in float64 (JAX with ``jax_enable_x64``, PyTorch's default dtype set to float64).
- Inputs are made once per workload from a fixed seed; JAX and PyTorch get their own copies, converted
  before timing (a JAX user passes device arrays, a PyTorch user leaf tensors).
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import gradjit as gj

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_core  # noqa: E402  (W1 and W4 models and their hand-written gradients are shared with it)

# System keys, in display order, and their labels. "gj" is the reference every other system is
# checked against.
LABELS = {
    "gj": "gradjit grad",
    "gj_jit": "gradjit jit(grad)",
    "gj_r2": "gradjit rev-over-rev",
    "np": "numpy hand-written",
    "numba": "numba hand-fused",
    "ag": "HIPS autograd",
    "jax_jit": "jax jit(grad)",
    "jax": "jax grad (no jit)",
    "torch": "torch",
}

DISABLED: set[str] = set()  # peers ("jax", "torch", "autograd", "numba": its baselines) not to run


def available(peer: str) -> bool:
    """Whether a peer is importable and not disabled; does not import it."""
    if peer in DISABLED:
        return False
    try:
        return importlib.util.find_spec(peer) is not None
    except (ImportError, ValueError):  # a broken install, or a module set to None in sys.modules
        return False


def has_jit() -> bool:
    return hasattr(gj, "jit")


@dataclass
class System:
    """One way to compute a workload's derivative. ``call`` returns it, ready (not a future)."""

    call: Callable[[], Any]
    trace: Callable[[], Any] | None = None  # tracing alone, for systems with a separate trace step
    note: str = ""
    fn: Callable | None = None  # gradjit jit rows: the jitted function itself, for Workload.jit_check


@dataclass
class Workload:
    key: str  # "W1", "W2s", ..., "W7k8"
    title: str
    what: str
    factories: dict[str, Callable[[], System]]
    exact: Callable[[], Any] | None = None  # a closed-form answer, when there is one
    # Inputs other than the timed one, for checking that jit(grad) is right on every call (guards).
    jit_check: Callable[[Callable], list[str]] | None = None
    first_call: tuple[str, ...] = ("gj", "gj_jit", "jax_jit")  # systems timed in a fresh process
    meta: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)  # overrides of LABELS for this workload

    def label(self, name: str) -> str:
        return self.labels.get(name, LABELS[name])


# --------------------------------------------------------------------------- peers, loaded lazily

_PEERS: dict[str, Any] = {}


def load_jax() -> tuple[Any, Any]:
    if "jax" not in _PEERS:
        import jax
        import jax.numpy as jnp

        jax.config.update("jax_enable_x64", True)
        _PEERS["jax"] = (jax, jnp)
    return _PEERS["jax"]


def load_torch() -> Any:
    if "torch" not in _PEERS:
        import torch

        torch.set_num_threads(1)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set (it may only be set once per process)
            pass
        torch.set_default_dtype(torch.float64)
        _PEERS["torch"] = torch
    return _PEERS["torch"]


def load_autograd() -> tuple[Any, Any]:
    if "autograd" not in _PEERS:
        import autograd
        import autograd.numpy as anp

        _PEERS["autograd"] = (autograd, anp)
    return _PEERS["autograd"]


_NJIT: dict[Callable, Callable] = {}


def njit(fn: Callable) -> Callable:
    """``numba.njit(fn)``, compiled once per process; Numba is imported only here."""
    if fn not in _NJIT:
        import numba

        _NJIT[fn] = numba.njit(fn)
    return _NJIT[fn]


def _jax_ready_call(jax: Any, g: Callable, args: tuple) -> Callable[[], Any]:
    """``g(*args)`` with the result ready: JAX dispatches asynchronously."""
    return lambda: jax.block_until_ready(g(*args))


def _jax_tree(jax: Any, tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda a: jax.device_put(np.asarray(a)), tree)


def _torch_leaf(torch: Any, a: Any) -> Any:
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def _fresh(f: Callable) -> Callable:
    """A new function object calling ``f``: defeats caches keyed on function identity (JAX's)."""
    return lambda *a: f(*a)


def _gradjit_systems(
    grad_fn: Callable[[], Callable],
    args: tuple,
    forward: Callable,
    argnums: Any,
) -> dict[str, Callable[[], System]]:
    """``gj`` and (when ``gj.jit`` exists) ``gj_jit`` factories for ``grad_fn()`` called on ``args``.

    Trace columns: for ``grad``, the forward trace each call records (``make_wengert(f)``); for
    ``jit(grad)``, tracing the whole gradient into a list (``make_wengert(grad(f))``), which is what
    ``jit`` does once per signature.
    """

    def gj_factory() -> System:
        g = grad_fn()
        fwd = gj.make_wengert(forward, argnums=argnums)
        return System(lambda: g(*args), trace=lambda: fwd(*args))

    out = {"gj": gj_factory}
    if has_jit():

        def gj_jit_factory() -> System:
            jg = gj.jit(grad_fn())
            trace = lambda: gj.make_wengert(_fresh(grad_fn()))(*args)  # noqa: E731
            return System(lambda: jg(*args), trace=trace, fn=jg)

        out["gj_jit"] = gj_jit_factory
    return out


# --------------------------------------------------------------------------- W1: scalar with a branch


def _w1_grad_scalar(a: float, b: float, c: float) -> tuple[float, float, float]:
    """Hand-written gradient of ``bench_core.make_scalar_fn`` with ``math``, for ``numba.njit``."""
    if b > c:
        sb, ec = math.sin(b), math.exp(-c)
        y = a * sb + ec * b
        dya, dyb, dyc = sb, a * math.cos(b) + ec, -ec * b
    else:
        y = a + b * c
        dya, dyb, dyc = 1.0, c, b
    t = math.tanh(a * c)
    dt = 1.0 - t * t
    return dya * t + y * dt * c, dyb * t + 2.0 * b / (1.0 + b * b), dyc * t + y * dt * a


def w1(quick: bool) -> Workload:
    args = bench_core.SCALAR_ARGS
    f = bench_core.make_scalar_fn(np)
    fac = _gradjit_systems(lambda: gj.grad(f, argnums=(0, 1, 2)), args, f, None)
    fac["np"] = lambda: System(lambda: bench_core.scalar_grad_numpy(*args))

    def numba_factory() -> System:
        k = njit(_w1_grad_scalar)
        return System(lambda: k(*args))

    if available("numba"):
        fac["numba"] = numba_factory
    if available("autograd"):

        def ag_factory() -> System:
            autograd, anp = load_autograd()
            g = autograd.grad(bench_core.make_scalar_fn(anp), argnum=(0, 1, 2))
            return System(lambda: g(*args))

        fac["ag"] = ag_factory
    if available("jax"):

        def jax_f(jnp: Any, lax: Any) -> Callable:
            def f(a, b, c):  # the branch as lax.cond: jit cannot run a Python `if` on a traced value
                y = lax.cond(
                    b > c, lambda a, b, c: a * jnp.sin(b) + jnp.exp(-c) * b, lambda a, b, c: a + b * c, a, b, c
                )
                return y * jnp.tanh(a * c) + jnp.log(1.0 + b * b)

            return f

        def jax_jit_factory() -> System:
            jax, jnp = load_jax()
            f = jax_f(jnp, jax.lax)
            g = jax.jit(jax.grad(f, argnums=(0, 1, 2)))
            tr = lambda: jax.make_jaxpr(jax.grad(_fresh(f), argnums=(0, 1, 2)))(*args)  # noqa: E731
            return System(_jax_ready_call(jax, g, args), trace=tr, note="branch written with lax.cond")

        def jax_factory() -> System:
            jax, jnp = load_jax()
            g = jax.grad(bench_core.make_scalar_fn(jnp), argnums=(0, 1, 2))
            return System(_jax_ready_call(jax, g, args))

        fac["jax_jit"] = jax_jit_factory
        fac["jax"] = jax_factory
    if available("torch"):

        def torch_factory() -> System:
            torch = load_torch()
            f = bench_core.make_scalar_fn(torch)
            xs = [_torch_leaf(torch, a) for a in args]
            return System(lambda: torch.autograd.grad(f(*xs), xs))

        fac["torch"] = torch_factory

    def jit_check(jg: Callable) -> list[str]:
        """Both branches, back and forth: a branch that flips must re-trace, never reuse a variant."""
        bad = []
        for point in (args, (0.7, 1.0, 2.5), args, (-1.2, 0.3, 0.2), (0.7, 1.0, 2.5)):
            want = bench_core.scalar_grad_numpy(*point)
            if not np.allclose(jg(*point), want, rtol=1e-12, atol=1e-14):
                bad.append(f"at {point}")
        return bad

    return Workload(
        "W1",
        "W1 scalar branch",
        "`f(a,b,c)` = (`a*sin(b) + exp(-c)*b` if `b > c` else `a + b*c`) * `tanh(a*c)` + `log(1+b*b)`, "
        "gradient w.r.t. a, b, c",
        fac,
        jit_check=jit_check,
    )


# --------------------------------------------------------------------------- W2: the talk's MLP


def make_mlp_loss(xnp: Any) -> Callable:
    """``tanh(x@W1+b1)``, ``tanh(h1@W2+b2)``, log-softmax by log-sum-exp, squared loss vs one-hot ``y``."""

    def loss(p, x, y):
        h1 = xnp.tanh(x @ p["W1"] + p["b1"])
        h2 = xnp.tanh(h1 @ p["W2"] + p["b2"])
        logp = h2 - xnp.log(xnp.sum(xnp.exp(h2), axis=1, keepdims=True))  # tanh bounds h2: no max shift needed
        return xnp.sum((logp - y) ** 2) / x.shape[0]

    return loss


def mlp_grad_numpy(p: dict, x: np.ndarray, y: np.ndarray) -> dict:
    """Hand-written backprop for ``make_mlp_loss``."""
    h1 = np.tanh(x @ p["W1"] + p["b1"])
    h2 = np.tanh(h1 @ p["W2"] + p["b2"])
    e = np.exp(h2)
    s = np.sum(e, axis=1, keepdims=True)
    r = h2 - np.log(s) - y
    dlogp = (2.0 / x.shape[0]) * r
    dh2 = dlogp - (e / s) * np.sum(dlogp, axis=1, keepdims=True)
    da2 = dh2 * (1.0 - h2 * h2)
    dh1 = da2 @ p["W2"].T
    da1 = dh1 * (1.0 - h1 * h1)
    return {"W1": x.T @ da1, "b1": da1.sum(axis=0), "W2": h1.T @ da2, "b2": da2.sum(axis=0)}


def mlp_data(batch: int, n_in: int, hidden: int, n_out: int, seed: int = 0) -> tuple[dict, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = {
        "W1": rng.standard_normal((n_in, hidden)) / np.sqrt(n_in),
        "b1": rng.standard_normal(hidden) * 0.1,
        "W2": rng.standard_normal((hidden, n_out)) / np.sqrt(hidden),
        "b2": rng.standard_normal(n_out) * 0.1,
    }
    x = rng.standard_normal((batch, n_in))
    y = np.eye(n_out)[rng.integers(0, n_out, size=batch)]
    return p, x, y


def _model_peers(fac: dict, make: Callable[[Any], Callable], args: tuple, jit_ok: bool = True) -> None:
    """Add autograd, JAX (jit and eager) and PyTorch factories for a model ``make(xnp)(*args)``,
    gradient w.r.t. the first argument (a pytree)."""
    if available("autograd"):

        def ag_factory() -> System:
            autograd, anp = load_autograd()
            g = autograd.grad(make(anp))
            return System(lambda: g(*args))

        fac["ag"] = ag_factory
    if available("jax"):

        def jax_jit_factory() -> System:
            jax, jnp = load_jax()
            f = make(jnp)
            jargs = _jax_tree(jax, args)
            g = jax.jit(jax.grad(f))
            return System(_jax_ready_call(jax, g, jargs), trace=lambda: jax.make_jaxpr(jax.grad(_fresh(f)))(*jargs))

        def jax_factory() -> System:
            jax, jnp = load_jax()
            jargs = _jax_tree(jax, args)
            return System(_jax_ready_call(jax, jax.grad(make(jnp)), jargs))

        if jit_ok:
            fac["jax_jit"] = jax_jit_factory
        fac["jax"] = jax_factory
    if available("torch"):

        def torch_factory() -> System:
            torch = load_torch()
            f = make(torch)
            p0, rest = args[0], args[1:]
            if isinstance(p0, dict):
                keys = sorted(p0)
                leaves = [_torch_leaf(torch, p0[k]) for k in keys]
                tp = dict(zip(keys, leaves, strict=True))
            else:
                leaves = [_torch_leaf(torch, p0)]
                tp = leaves[0]
            trest = [torch.tensor(np.asarray(a, dtype=np.float64)) for a in rest]

            def call():
                gs = torch.autograd.grad(f(tp, *trest), leaves)
                return dict(zip(keys, gs, strict=True)) if isinstance(p0, dict) else gs[0]

            return System(call)

        fac["torch"] = torch_factory


def w2(quick: bool, large: bool) -> Workload:
    if large:
        dims = (8, 20, 16, 10) if quick else (256, 784, 512, 10)
    else:
        dims = (1, 64, 50, 4) if quick else (1, 4096, 50, 4)
    p, x, y = mlp_data(*dims)
    args = (p, x, y)
    f = make_mlp_loss(np)
    fac = _gradjit_systems(lambda: gj.grad(f), args, f, 0)
    fac["np"] = lambda: System(lambda: mlp_grad_numpy(*args))
    _model_peers(fac, make_mlp_loss, args)
    b, i, h, o = dims
    return Workload(
        "W2L" if large else "W2s",
        f"W2 MLP {b}x{i}-{h}-{o}",
        f"the talk's MLP at batch {b}, {i} inputs, {h} hidden, {o} outputs: `tanh(x@W1+b1)`, `tanh(h1@W2+b2)`, "
        "log-softmax by log-sum-exp, squared loss against one-hot targets; gradient w.r.t. W1, b1, W2, b2",
        fac,
        meta={"dims": dims},
    )


# --------------------------------------------------------------------------- W3: elementwise, 10^6


def make_w3(xnp: Any) -> Callable:
    def f(x):
        return xnp.sum(xnp.sin(x) * xnp.exp(-x * x) + xnp.log1p(x * x))

    return f


def w3_grad_numpy(x: np.ndarray) -> np.ndarray:
    e = np.exp(-x * x)
    return np.cos(x) * e - 2.0 * x * np.sin(x) * e + 2.0 * x / (1.0 + x * x)


def _w3_grad_loop(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        xi = x[i]
        e = math.exp(-xi * xi)
        out[i] = math.cos(xi) * e - 2.0 * xi * math.sin(xi) * e + 2.0 * xi / (1.0 + xi * xi)
    return out


def w3(quick: bool) -> Workload:
    n = 1000 if quick else 10**6
    x = np.random.default_rng(3).uniform(-3.0, 3.0, n)
    f = make_w3(np)
    fac = _gradjit_systems(lambda: gj.grad(f), (x,), f, 0)
    fac["np"] = lambda: System(lambda: w3_grad_numpy(x))

    def numba_factory() -> System:
        k = njit(_w3_grad_loop)
        return System(lambda: k(x))

    if available("numba"):
        fac["numba"] = numba_factory
    _model_peers(fac, make_w3, (x,))
    return Workload(
        "W3",
        f"W3 elementwise n={n:.0e}".replace("e+0", "e"),
        f"`sum(sin(x)*exp(-x*x) + log1p(x*x))` over {n} elements, gradient w.r.t. x",
        fac,
    )


# --------------------------------------------------------------------------- W4: RNN, 100 steps


def _rnn_grad_loop(W_h: np.ndarray, W_x: np.ndarray, b: np.ndarray, xs: np.ndarray):
    """Backprop through time with explicit loops (small matrices: loops beat BLAS calls)."""
    T, H, n_in = xs.shape[0], W_h.shape[0], W_x.shape[1]
    hs = np.zeros((T + 1, H))
    for t in range(T):
        for i in range(H):
            acc = b[i]
            for j in range(H):
                acc += W_h[i, j] * hs[t, j]
            for j in range(n_in):
                acc += W_x[i, j] * xs[t, j]
            hs[t + 1, i] = math.tanh(acc)
    dW_h, dW_x, db = np.zeros_like(W_h), np.zeros_like(W_x), np.zeros_like(b)
    dh = 2.0 * hs[T]
    da = np.empty(H)
    for t in range(T - 1, -1, -1):
        for i in range(H):
            da[i] = dh[i] * (1.0 - hs[t + 1, i] * hs[t + 1, i])
            db[i] += da[i]
            for j in range(H):
                dW_h[i, j] += da[i] * hs[t, j]
            for j in range(n_in):
                dW_x[i, j] += da[i] * xs[t, j]
        for j in range(H):
            acc = 0.0
            for i in range(H):
                acc += W_h[i, j] * da[i]
            dh[j] = acc
    return dW_h, dW_x, db


def w4(quick: bool) -> Workload:
    params, xs = bench_core.rnn_data()
    if quick:
        xs = xs[:10]
    args = (params, xs)
    f = bench_core.make_rnn_loss(np)
    fac = _gradjit_systems(lambda: gj.grad(f), args, f, 0)
    fac["np"] = lambda: System(lambda: bench_core.rnn_grad_numpy(*args))

    def numba_factory() -> System:
        k = njit(_rnn_grad_loop)

        def call():
            dW_h, dW_x, db = k(params["W_h"], params["W_x"], params["b"], xs)
            return {"W_h": dW_h, "W_x": dW_x, "b": db}

        return System(call)

    if available("numba"):
        fac["numba"] = numba_factory
    _model_peers(fac, bench_core.make_rnn_loss, args)
    return Workload(
        "W4",
        f"W4 RNN h=16 T={xs.shape[0]}",
        f"`h = tanh(W_h@h + W_x@x_t + b)` unrolled {xs.shape[0]} steps (hidden 16, input 8), loss `sum(h*h)`; "
        "gradient w.r.t. W_h, W_x, b",
        fac,
    )


# --------------------------------------------------------------------------- W5: data-dependent while


W5_TOL = 1e-2


def make_w5(xnp: Any) -> Callable:
    """Shrink ``s`` until its squared norm is below ``W5_TOL``: the trip count depends on ``x``."""

    def f(x):
        s = x
        while xnp.sum(s * s) > W5_TOL:
            s = 0.8 * xnp.tanh(s)
        return xnp.sum(xnp.sin(s) * x)

    return f


def w5_trips(x: np.ndarray) -> int:
    s, n = x, 0
    while np.sum(s * s) > W5_TOL:
        s, n = 0.8 * np.tanh(s), n + 1
    return n


def w5_grad_numpy(x: np.ndarray) -> np.ndarray:
    ts, s = [], x
    while np.sum(s * s) > W5_TOL:
        t = np.tanh(s)
        ts.append(t)
        s = 0.8 * t
    ds = np.cos(s) * x
    for t in reversed(ts):
        ds = ds * (0.8 * (1.0 - t * t))
    return np.sin(s) + ds


def _w5_grad_loop(x: np.ndarray) -> np.ndarray:
    n = x.shape[0]
    cap = 64
    ts = np.empty((cap, n))
    s = x.copy()
    k = 0
    while True:
        acc = 0.0
        for i in range(n):
            acc += s[i] * s[i]
        if acc <= W5_TOL:
            break
        if k == cap:  # grow the tape
            bigger = np.empty((2 * cap, n))
            bigger[:cap] = ts
            ts, cap = bigger, 2 * cap
        for i in range(n):
            t = math.tanh(s[i])
            ts[k, i] = t
            s[i] = 0.8 * t
        k += 1
    out = np.empty(n)
    for i in range(n):
        ds = math.cos(s[i]) * x[i]
        for j in range(k - 1, -1, -1):
            ds *= 0.8 * (1.0 - ts[j, i] * ts[j, i])
        out[i] = math.sin(s[i]) + ds
    return out


def w5(quick: bool) -> Workload:
    x = np.random.default_rng(5).standard_normal(16) * 2.0
    f = make_w5(np)
    fac = _gradjit_systems(lambda: gj.grad(f), (x,), f, 0)
    fac["np"] = lambda: System(lambda: w5_grad_numpy(x))

    def numba_factory() -> System:
        k = njit(_w5_grad_loop)
        return System(lambda: k(x))

    if available("numba"):
        fac["numba"] = numba_factory
    _model_peers(fac, make_w5, (x,))
    if "jax" in fac:  # jax.jit cannot run this loop; the row shows the error it raises

        def jax_jit_factory() -> System:
            jax, jnp = load_jax()
            g = jax.jit(jax.grad(make_w5(jnp)))
            jx = jax.device_put(x)
            note = "a Python `while` on a traced value; lax.while_loop has no reverse-mode derivative"
            return System(_jax_ready_call(jax, g, (jx,)), note=note)

        fac["jax_jit"] = jax_jit_factory
    scales = (1.0, 0.3, 2.5, 0.05, 6.0, 1.0, 0.3)

    def jit_check(jg: Callable) -> list[str]:
        """Trip counts that change between calls (and come back) must each give the right gradient."""
        bad = []
        for sc in scales:
            if not np.allclose(jg(x * sc), w5_grad_numpy(x * sc), rtol=1e-12, atol=1e-14):
                bad.append(f"scale {sc} ({w5_trips(x * sc)} trips)")
        return bad

    trips = [w5_trips(x * sc) for sc in scales]
    return Workload(
        "W5",
        f"W5 while loop ({w5_trips(x)} trips)",
        f"`while sum(s*s) > {W5_TOL}: s = 0.8*tanh(s)` from `s = x` (16 elements), loss `sum(sin(s)*x)`; "
        f"gradient w.r.t. x; timed at a repeating trip count ({w5_trips(x)}); jit checked at trip counts {trips}",
        fac,
        jit_check=jit_check,
    )


# --------------------------------------------------------------------------- W6: Hessian-vector product


def make_rosenbrock(xnp: Any) -> Callable:
    """Extended Rosenbrock: sum over pairs of ``100 (x[2i+1] - x[2i]^2)^2 + (1 - x[2i])^2``."""

    def f(x):
        u, w = x[0::2], x[1::2]
        return xnp.sum(100.0 * (w - u * u) ** 2 + (1.0 - u) ** 2)

    return f


def rosenbrock_hvp_numpy(x: np.ndarray, v: np.ndarray) -> np.ndarray:
    u, w, vu, vw = x[0::2], x[1::2], v[0::2], v[1::2]
    out = np.empty_like(x)
    out[0::2] = (1200.0 * u * u - 400.0 * w + 2.0) * vu - 400.0 * u * vw
    out[1::2] = -400.0 * u * vu + 200.0 * vw
    return out


def _rosenbrock_hvp_loop(x: np.ndarray, v: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    for i in range(0, x.shape[0], 2):
        u, w, vu, vw = x[i], x[i + 1], v[i], v[i + 1]
        out[i] = (1200.0 * u * u - 400.0 * w + 2.0) * vu - 400.0 * u * vw
        out[i + 1] = -400.0 * u * vu + 200.0 * vw
    return out


def w6(quick: bool) -> Workload:
    n = 100 if quick else 10**4
    rng = np.random.default_rng(6)
    x, v = 1.0 + 0.3 * rng.standard_normal(n), rng.standard_normal(n)
    f = make_rosenbrock(np)
    forward_over_reverse = hasattr(gj, "hvp")

    def rev_over_rev(x, v):
        return gj.grad(lambda x: np.dot(gj.grad(f)(x), v))(x)

    hvp = (lambda x, v: gj.hvp(f, x, v)) if forward_over_reverse else rev_over_rev

    def gj_factory() -> System:
        return System(lambda: hvp(x, v), trace=lambda: gj.make_wengert(f)(x))

    fac: dict[str, Callable[[], System]] = {"gj": gj_factory}
    if has_jit():

        def gj_jit_factory() -> System:
            jh = gj.jit(_fresh(hvp))
            trace = lambda: gj.make_wengert(_fresh(hvp), argnums=0)(x, v)  # noqa: E731
            return System(lambda: jh(x, v), trace=trace, fn=jh)

        fac["gj_jit"] = gj_jit_factory
    if forward_over_reverse:
        fac["gj_r2"] = lambda: System(lambda: rev_over_rev(x, v))
    fac["np"] = lambda: System(lambda: rosenbrock_hvp_numpy(x, v))

    def numba_factory() -> System:
        k = njit(_rosenbrock_hvp_loop)
        return System(lambda: k(x, v))

    if available("numba"):
        fac["numba"] = numba_factory
    if available("autograd"):

        def ag_factory() -> System:
            autograd, anp = load_autograd()
            h = autograd.hessian_vector_product(make_rosenbrock(anp))  # reverse-over-reverse
            return System(lambda: h(x, v), note="reverse-over-reverse")

        fac["ag"] = ag_factory
    if available("jax"):

        def jax_hvp(jax: Any, f: Callable) -> Callable:
            return lambda x, v: jax.jvp(jax.grad(f), (x,), (v,))[1]

        def jax_jit_factory() -> System:
            jax, jnp = load_jax()
            fj = make_rosenbrock(jnp)
            jx, jv = jax.device_put(x), jax.device_put(v)
            h = jax.jit(jax_hvp(jax, fj))
            tr = lambda: jax.make_jaxpr(jax_hvp(jax, _fresh(fj)))(jx, jv)  # noqa: E731
            return System(_jax_ready_call(jax, h, (jx, jv)), trace=tr)

        def jax_factory() -> System:
            jax, jnp = load_jax()
            jx, jv = jax.device_put(x), jax.device_put(v)
            return System(_jax_ready_call(jax, jax_hvp(jax, make_rosenbrock(jnp)), (jx, jv)))

        fac["jax_jit"] = jax_jit_factory
        fac["jax"] = jax_factory
    if available("torch"):

        def torch_factory() -> System:
            torch = load_torch()
            ft = make_rosenbrock(torch)
            tx, tv = torch.tensor(x), torch.tensor(v)
            return System(lambda: torch.func.jvp(torch.func.grad(ft), (tx,), (tv,))[1])

        fac["torch"] = torch_factory
    how = "forward-over-reverse (`gj.hvp`)" if forward_over_reverse else "reverse-over-reverse"
    return Workload(
        "W6",
        f"W6 HVP Rosenbrock n={n:.0e}".replace("e+0", "e"),
        f"Hessian-vector product of the extended Rosenbrock function, n = {n}; gradjit: {how}; JAX and "
        "PyTorch (`torch.func`): forward-over-reverse; autograd: reverse-over-reverse",
        fac,
        exact=lambda: rosenbrock_hvp_numpy(x, v),
        meta={"gradjit_mode": how},
        labels={
            "gj": "gradjit hvp" if forward_over_reverse else "gradjit grad(grad.v)",
            "gj_jit": "gradjit jit(hvp)",
            "jax_jit": "jax jit(hvp)",
            "jax": "jax hvp (no jit)",
        },
    )


# --------------------------------------------------------------------------- W7: nested grad of tanh

W7_X = 0.3


def tanh_derivative(k: int, x: float) -> float:
    """Exact k-th derivative of tanh: ``P_{k+1}(t) = P_k'(t) (1 - t^2)``, ``P_0(t) = t``, ``t = tanh x``."""
    p = np.polynomial.Polynomial([0.0, 1.0])
    one_minus_t2 = np.polynomial.Polynomial([1.0, 0.0, -1.0])
    for _ in range(k):
        p = p.deriv() * one_minus_t2
    return float(p(math.tanh(x)))


def _nest(grad: Callable, f: Callable, k: int) -> Callable:
    for _ in range(k):
        f = grad(f)
    return f


def w7(quick: bool, k: int) -> Workload:
    x0 = W7_X
    fac: dict[str, Callable[[], System]] = {}

    def gj_factory() -> System:
        g = _nest(gj.grad, np.tanh, k)
        return System(lambda: g(x0))

    fac["gj"] = gj_factory
    if has_jit():

        def gj_jit_factory() -> System:
            g = gj.jit(_nest(gj.grad, np.tanh, k))
            return System(lambda: g(x0), trace=lambda: gj.make_wengert(_nest(gj.grad, np.tanh, k))(x0), fn=g)

        fac["gj_jit"] = gj_jit_factory
    if available("autograd"):

        def ag_factory() -> System:
            autograd, anp = load_autograd()
            g = _nest(autograd.grad, anp.tanh, k)
            return System(lambda: g(x0))

        fac["ag"] = ag_factory
    if available("jax"):

        def jax_jit_factory() -> System:
            jax, jnp = load_jax()
            g = jax.jit(_nest(jax.grad, jnp.tanh, k))
            tr = lambda: jax.make_jaxpr(_nest(jax.grad, _fresh(jnp.tanh), k))(x0)  # noqa: E731
            return System(_jax_ready_call(jax, g, (x0,)), trace=tr)

        def jax_factory() -> System:
            jax, jnp = load_jax()
            return System(_jax_ready_call(jax, _nest(jax.grad, jnp.tanh, k), (x0,)))

        fac["jax_jit"] = jax_jit_factory
        fac["jax"] = jax_factory
    if available("torch"):

        def torch_factory() -> System:
            torch = load_torch()
            tx = torch.tensor(x0, requires_grad=True)

            def call():
                y = torch.tanh(tx)
                for _ in range(k):
                    (y,) = torch.autograd.grad(y, tx, create_graph=True)
                return y.detach()

            return System(call, note="nested autograd.grad, create_graph=True")

        fac["torch"] = torch_factory
    return Workload(
        f"W7k{k}",
        f"W7 d^{k} tanh",
        f"the {k}-th derivative of tanh at {x0} by nesting grad {k} times",
        fac,
        exact=lambda: tanh_derivative(k, x0),
        first_call=("gj", "gj_jit", "jax_jit") if k == 8 else (),
        meta={"k": k},
    )


# --------------------------------------------------------------------------- all of them

WORKLOAD_KEYS = ("W1", "W2s", "W2L", "W3", "W4", "W5", "W6") + tuple(f"W7k{k}" for k in range(1, 9))


def build(key: str, quick: bool) -> Workload:
    """The workload named ``key`` (see ``WORKLOAD_KEYS``); ``quick``: tiny sizes for smoke runs."""
    if key == "W1":
        return w1(quick)
    if key in ("W2s", "W2L"):
        return w2(quick, large=key == "W2L")
    if key == "W3":
        return w3(quick)
    if key == "W4":
        return w4(quick)
    if key == "W5":
        return w5(quick)
    if key == "W6":
        return w6(quick)
    if key.startswith("W7k"):
        return w7(quick, int(key[3:]))
    raise KeyError(f"unknown workload {key!r}; known: {', '.join(WORKLOAD_KEYS)}")
