"""The CUDA executor under Numba's CUDA simulator: device results agree with the host's.

Runs on any machine: this module sets ``NUMBA_ENABLE_CUDASIM=1`` before ``numba.cuda`` is imported
(``GRADJIT_TEST_GPU=1`` runs the same tests on a real GPU instead), at small sizes, because the
simulator runs every CUDA thread as a Python thread. Checked here:

- every row of the primitive table (``tests/primitive_table.py``): the value and a vector-Jacobian
  product on the device equal the host's, for float64 and float32, and they come back as device
  arrays (nothing of either sweep left the device);
- the talk's examples with device inputs (scalars as 0-d device arrays, the branch, the loop, the
  straight-through floor, the MLP's gradients and a few training steps);
- placement: ``to_device``/``to_host`` round trips over pytrees, mixing host and device arrays is an
  error naming which argument is where, ``np.asarray`` of a device array raises;
- control flow on device values: guards, with ``gj.jit``, including a branch that flips;
- the kernels' own edge cases: reductions over every axis combination and long enough to split over
  blocks, scans over several chunks, matmul tiles with ragged edges and broadcast batches, advanced
  indexing with NumPy's layout rules, last-write-wins assignment, scatter-add with repeats.
"""

from __future__ import annotations

import os
import sys

if os.environ.get("GRADJIT_TEST_GPU") != "1" and "numba.cuda" not in sys.modules:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    if "numba" in sys.modules:  # numba read its environment already: set just this switch
        import numba

        numba.config.ENABLE_CUDASIM = 1

import itertools  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import gradjit as gj  # noqa: E402
from gradjit.placement import DeviceArray, PlacementError, to_device, to_host  # noqa: E402

pytest.importorskip("numba.cuda")
from primitive_table import ROWS  # noqa: E402

try:
    from gradjit.kernels import cuda as backend  # noqa: E402
except Exception as e:  # pragma: no cover - no simulator and no GPU
    pytest.skip(f"CUDA backend unavailable: {e}", allow_module_level=True)

SIM = backend.SIM


@pytest.fixture(autouse=True, scope="module")
def _fast_thread_switches():
    # The simulator's block manager polls its Python threads; a short switch interval lets a block
    # reach its barriers (cuda.syncthreads) quickly. Restored after this module.
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    yield
    sys.setswitchinterval(old)


def _host(x):
    return to_host(x)


def _close(dev, host, dtype, what):
    assert isinstance(dev, DeviceArray) or np.ndim(host) == 0 and not isinstance(dev, np.ndarray), (
        f"{what}: expected a device array, got {type(dev).__name__}"
    )
    tol = 1e-5 if np.dtype(dtype) == np.float32 else 1e-11
    np.testing.assert_allclose(_host(dev), host, rtol=tol, atol=tol, err_msg=what)


# ---------------------------------------------------------------------------------------------
# The primitive table: value and VJP agree with the host, for float64 and float32
# ---------------------------------------------------------------------------------------------
def _device_sym(x):
    n = x.shape[-1]
    return 0.5 * (x + np.swapaxes(x, -1, -2)) + n * to_device(np.eye(n, dtype=x.dtype))


# Rows whose function builds a host constant combine it with device data: on the device the same
# function makes that constant on the device (mixing is an error, tested below).
DEVICE_FN = {
    "select": lambda x, y: np.where(to_device(np.array([True, False, True])), x, y),
    "concatenate": lambda x, y: np.concatenate([x, y, np.ones_like(x, shape=(1, 3))], axis=0),
    "cholesky": lambda x: np.linalg.cholesky(_device_sym(x)),
    "cholesky_batched": lambda x: np.linalg.cholesky(_device_sym(x)),
}


def _vjp_check(row, dtype, rng):
    args = row.make_args(rng, dtype)
    fn_host = row.fn
    fn_dev = DEVICE_FN.get(row.id, row.fn)
    out_host = fn_host(*args)
    w = rng.standard_normal(np.shape(out_host)).astype(np.result_type(out_host))
    # The cotangent is a device array: every primitive of both sweeps must run on the device.
    val_h, grads_h = gj.value_and_grad(lambda *a: np.sum(fn_host(*a) * w), argnums=tuple(range(len(args))))(*args)
    dargs = to_device(args)
    dw = to_device(w)
    val_d, grads_d = gj.value_and_grad(lambda *a: np.sum(fn_dev(*a) * dw), argnums=tuple(range(len(args))))(*dargs)
    _close(fn_dev(*dargs), out_host, dtype, f"{row.id} value")
    _close(val_d, val_h, dtype, f"{row.id} loss")
    for i, (gd, gh) in enumerate(zip(grads_d, grads_h)):
        assert type(gd) is DeviceArray, f"{row.id}: gradient {i} came back as {type(gd).__name__}"
        assert gd.dtype == gh.dtype and gd.shape == gh.shape
        _close(gd, gh, dtype, f"{row.id} gradient {i}")


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_primitive_row_float64(row, rng):
    _vjp_check(row, np.float64, rng)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_primitive_row_on_the_cuda_executor(row, rng):
    """The row's value-and-gradient list, stored by ``jit`` and replayed by the CUDA executor (fused)."""
    args = row.make_args(rng, np.float64)
    fn_dev = DEVICE_FN.get(row.id, row.fn)
    w = rng.standard_normal(np.shape(row.fn(*args))).astype(np.result_type(row.fn(*args)))
    argnums = tuple(range(len(args)))
    val_h, grads_h = gj.value_and_grad(lambda *a: np.sum(row.fn(*a) * w), argnums=argnums)(*args)
    dw = to_device(w)
    jf = gj.jit(gj.value_and_grad(lambda *a: np.sum(fn_dev(*a) * dw), argnums=argnums))
    jf(*to_device(args))  # traced
    val_d, grads_d = jf(*to_device(args))  # replayed on the CUDA executor
    assert jf.stats["hits"] == 1, jf.stats
    _close(val_d, val_h, np.float64, f"{row.id} loss (executor)")
    for i, (gd, gh) in enumerate(zip(grads_d, grads_h)):
        _close(gd, gh, np.float64, f"{row.id} gradient {i} (executor)")


# float32 on the rows whose kernels have a float32 path of their own (the rest share it).
F32_ROWS = [r for r in ROWS if r.id in {
    "exp", "tanh", "log1p", "sinc", "floor", "mod", "floor_divide", "maximum", "logaddexp", "select", "reduce_sum",
    "reduce_max", "argmax", "cumsum", "getitem_fancy", "index_add", "index_set_repeated", "matmul", "einsum",
    "concatenate", "conv2d", "max_pool2d", "avg_pool2d", "inv",
}]  # fmt: skip


@pytest.mark.parametrize("row", F32_ROWS, ids=lambda r: r.id)
def test_primitive_row_float32(row, rng):
    _vjp_check(row, np.float32, rng)


# ---------------------------------------------------------------------------------------------
# The talk's examples on the device
# ---------------------------------------------------------------------------------------------
def d(v, dtype=None):
    """A device array of ``v`` (a 0-d one for a number: Python floats are passed by value)."""
    return to_device(np.asarray(v, dtype=dtype))


def f_sum(a, b, c):
    return a + b * c


def f_branch(a, b, c):
    if b > c:  # a device scalar crosses to the host for Python's `if`
        return a * np.sin(b)
    return a + b * c


def f_loop(a, b):
    for _ in range(b):
        a = a * a
    return a


def f_recursive(a, b):
    return a if b == 0 else f_recursive(a * a, b - 1)


def test_talk_sum_and_branch_on_device():
    value, grads = gj.value_and_grad(f_sum, argnums=(0, 1, 2))(d(3.5), d(2.1), d(1.1))
    assert type(value) is DeviceArray and value.shape == ()
    assert float(value) == pytest.approx(5.81, abs=1e-12)
    assert [float(g) for g in grads] == pytest.approx([1.0, 1.1, 2.1], abs=1e-15)
    value, da = gj.value_and_grad(f_branch)(d(3.5), d(2.1), d(1.1))
    assert float(value) == pytest.approx(3.0212327832711, abs=1e-12)
    assert float(da) == pytest.approx(0.86320936664887, abs=1e-13)
    df = gj.grad(f_branch, argnums=(0, 1, 2))
    assert [float(g) for g in df(d(3.5), d(1.1), d(2.1))] == [1.0, 2.1, 1.1]  # the other side, traced afresh


@pytest.mark.parametrize("fn", [f_loop, f_recursive], ids=["loop", "recursive"])
def test_talk_loop_and_recursion_on_device(fn):
    value, grad = gj.value_and_grad(fn)(d(3.0), 2)
    assert (float(value), float(grad)) == (81.0, 108.0)


def test_talk_straight_through_floor_on_device():
    def f(a):
        return np.sum(np.floor(a**3))

    a = d(np.eye(3))
    np.testing.assert_array_equal(to_host(gj.grad(f)(a)), np.zeros((3, 3)))
    with gj.gradients({np.floor: lambda g, ans, x: g}):
        g = gj.grad(f)(a)
    assert type(g) is DeviceArray
    np.testing.assert_array_equal(to_host(g), 3 * np.eye(3))


def mlp_loss(params, x, y):
    h1 = np.tanh(x @ params["W"][0] + params["b"][0])
    h2 = h1 @ params["W"][1] + params["b"][1]
    logp = h2 - np.log(np.sum(np.exp(h2), axis=1, keepdims=True))
    return -np.mean(np.sum(logp * y, axis=1))


def _mlp_data(rng, n=6):
    params = {
        "W": [rng.standard_normal((5, 8)) * 0.5, rng.standard_normal((8, 3)) * 0.5],
        "b": [np.zeros(8), np.zeros(3)],
    }
    x = rng.standard_normal((n, 5))
    y = np.eye(3)[rng.integers(0, 3, size=n)]
    return params, x, y


def test_talk_mlp_gradients_on_device(rng):
    params, x, y = _mlp_data(rng)
    value_h, g_h = gj.value_and_grad(mlp_loss)(params, x, y)
    value_d, g_d = gj.value_and_grad(mlp_loss)(*to_device((params, x, y)))
    assert float(value_d) == pytest.approx(value_h, rel=1e-12)
    leaves_d, _ = gj.pytree.flatten(g_d)
    leaves_h, _ = gj.pytree.flatten(g_h)
    for gd, gh in zip(leaves_d, leaves_h, strict=True):
        assert type(gd) is DeviceArray
        np.testing.assert_allclose(to_host(gd), gh, rtol=1e-11, atol=1e-13)


def test_talk_mlp_training_on_device(rng):
    params, x, y = _mlp_data(rng, n=12)
    params, x, y = to_device((params, x, y))
    dloss = gj.value_and_grad(mlp_loss)
    first, _ = dloss(params, x, y)
    for _ in range(5):
        loss, g = dloss(params, x, y)
        params = gj.tree_map(lambda p, dp: p - 1.0 * dp, params, g)
    assert all(type(p) is DeviceArray for p in gj.pytree.flatten(params)[0])
    assert float(loss) < 0.7 * float(first)


def test_second_order_on_device(rng):
    f = lambda x: np.sum(np.tanh(x) ** 3)  # noqa: E731
    x = rng.standard_normal(5)
    h_host = gj.grad(lambda x: np.sum(gj.grad(f)(x) * np.arange(5.0)))(x)
    dx, dv = to_device((x, np.arange(5.0)))
    h_dev = gj.grad(lambda x: np.sum(gj.grad(f)(x) * dv))(dx)
    _close(h_dev, h_host, np.float64, "grad(grad)")
    _close(gj.hvp(f, dx, dv), gj.hvp(f, x, np.arange(5.0)), np.float64, "hvp")


def test_jacobians_on_device(rng):
    f = lambda x: np.tanh(x) * np.sum(x**2)  # noqa: E731
    x = rng.standard_normal(4)
    dx = to_device(x)
    for name, tr in (("jacrev", gj.jacrev), ("jacfwd", gj.jacfwd)):
        _close(tr(f)(dx), tr(f)(x), np.float64, name)
    h = lambda x: np.sum(f(x))  # noqa: E731
    _close(gj.hessian(h)(dx), gj.hessian(h)(x), np.float64, "hessian")


def test_nn_training_on_device_follows_the_host(rng):
    from gradjit import nn, optim

    X, y = rng.standard_normal((20, 8)), rng.integers(0, 3, 20)
    fn, params = nn.mlp([8, 16, 3], activation="tanh", key=0)

    def loss(params, X, y):
        return nn.cross_entropy(fn(params, X), y)

    host = optim.minimize(loss, params, (X, y), optim.adam(1e-2), steps=3, progress=False)
    dev = optim.minimize(loss, *to_device((params, (X, y))), optim.adam(1e-2), steps=3, progress=False)
    np.testing.assert_allclose(dev.history, host.history, rtol=1e-12)
    for a, b in zip(gj.pytree.flatten(dev.params)[0], gj.pytree.flatten(host.params)[0], strict=True):
        _close(a, b, np.float64, "trained parameter")


# ---------------------------------------------------------------------------------------------
# Placement
# ---------------------------------------------------------------------------------------------
def test_to_device_to_host_round_trip_over_pytrees(rng):
    from collections import namedtuple

    Pair = namedtuple("Pair", "a b")
    tree = {
        "w": rng.standard_normal((2, 3)),
        "f32": rng.standard_normal(4).astype(np.float32),
        "ints": np.arange(5),
        "mask": np.array([True, False]),
        "scalars": [1.5, 2, None, "name"],
        "pair": Pair(np.float64(2.5), (np.ones(1),)),
    }
    dev = to_device(tree)
    assert type(dev["w"]) is DeviceArray and type(dev["pair"].a) is DeviceArray and dev["pair"].a.shape == ()
    assert dev["scalars"] == [1.5, 2, None, "name"]  # Python scalars are passed by value, as they are
    assert to_device(dev)["w"] is dev["w"]  # already there
    back = to_host(dev)
    flat_back, td_back = gj.pytree.flatten(back)
    flat, td = gj.pytree.flatten(tree)
    assert td_back == td and isinstance(back["pair"], Pair)
    for b, t in zip(flat_back, flat, strict=True):
        if isinstance(t, (np.ndarray, np.generic)):
            assert isinstance(b, np.ndarray) and b.dtype == t.dtype and b.shape == np.shape(t)
            np.testing.assert_array_equal(b, t)
        else:
            assert b == t
    with pytest.raises(TypeError, match="complex128"):
        to_device(np.ones(2, complex))
    with pytest.raises(ValueError, match="unknown device"):
        to_device(np.ones(2), "tpu")


def test_mixing_host_and_device_arrays_names_which_is_where():
    x = d(np.ones((2, 3)))
    with pytest.raises(PlacementError) as e:
        x + np.ones(3)
    msg = str(e.value)
    assert "np.add" in msg and "argument 0 is a device array" in msg and "argument 1 is a host array" in msg
    assert "to_device" in msg and "test_cuda.py" in msg  # what to do, and the user's line
    with pytest.raises(PlacementError, match="argument 0 is a host array"):
        np.matmul(np.ones((3, 2)), x)
    w = np.ones(3)
    with pytest.raises(PlacementError, match=r"np\.multiply.*argument 1 is a host array") as e:
        gj.grad(lambda x: np.sum(x * w))(x)
    assert "lambda x: np.sum(x * w)" in str(e.value)  # the traced user line
    with pytest.raises(PlacementError, match="np.concatenate"):
        np.concatenate([x, np.ones((1, 3))])


def test_scalars_and_single_values_combine_with_device_arrays():
    x = d(np.arange(3.0), np.float32)
    for y in (x * 2.0, 2 * x, x * np.float32(2), x * np.full(1, 2, np.float32), x * np.full((1, 1), 2, np.float32)[0]):
        assert type(y) is DeviceArray and y.dtype == np.float32
        np.testing.assert_array_equal(to_host(y), [0.0, 2.0, 4.0])
    y = x + np.float64(1)  # a NumPy float64 scalar is strong, as in NumPy 2
    assert y.dtype == np.float64
    assert (x + np.broadcast_to(np.float32(1), (2, 3))).shape == (2, 3)  # a broadcast view holds one value


def test_no_silent_copies_to_the_host():
    x = d(np.ones(3))
    with pytest.raises(PlacementError, match="to_host"):
        np.asarray(x)
    with pytest.raises(ValueError, match="ambiguous"):
        bool(x > 0)
    s = np.sum(x)
    assert type(s) is DeviceArray and bool(s > 2) and float(s) == 3.0 and int(s) == 3
    assert f"{s:.1f}" == "3.0" and s.item() == 3.0 and x.tolist() == [1.0, 1.0, 1.0]


# ---------------------------------------------------------------------------------------------
# Guards on device values, with jit
# ---------------------------------------------------------------------------------------------
def test_jit_on_device_values_checks_guards_and_retraces_when_a_branch_flips():
    def f(x):
        if np.sum(x) > 0:  # a guard on a device scalar
            return np.sum(np.sin(x) * x)
        return np.sum(x**3)

    jf = gj.jit(gj.grad(f))
    xp, xn = np.array([0.5, 1.0, 2.0]), np.array([-0.5, -1.0, 0.25])
    for x in (xp, xp * 1.5, xn, xn * 2.0, xp):
        g = jf(d(x))
        assert type(g) is DeviceArray
        np.testing.assert_allclose(to_host(g), gj.grad(f)(x), rtol=1e-12)
    s = jf.stats
    assert s["traces"] == 2 and s["hits"] == 3 and s["guard_failures"] >= 1 and s["uncompiled"] == 0


def test_jit_on_device_mlp_matches_the_host_and_fuses(rng):
    from gradjit.kernels.cuda_exec import CudaExecutor
    from gradjit.kernels.reference import ReferenceExecutor

    params, x, y = _mlp_data(rng)
    host = gj.grad(mlp_loss)(params, x, y)
    jg = gj.jit(gj.grad(mlp_loss))
    dev = to_device((params, x, y))
    for _ in range(3):
        g = jg(*dev)
    assert jg.stats["hits"] == 2 and jg.stats["uncompiled"] == 0
    for gd, gh in zip(gj.pytree.flatten(g)[0], gj.pytree.flatten(host)[0], strict=True):
        assert type(gd) is DeviceArray
        np.testing.assert_allclose(to_host(gd), gh, rtol=1e-11, atol=1e-13)
    # The same list on the CUDA executor and on the reference executor, with device inputs.
    wl = gj.make_wengert(gj.grad(mlp_loss))(*dev)
    leaves = gj.pytree.flatten(dev)[0]
    ex = CudaExecutor()
    got = ex.run(wl, leaves)
    want = ReferenceExecutor().run(wl, leaves)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(to_host(a), to_host(b), rtol=1e-12, atol=1e-14)
    groups = [s for kind, _, s in ex._plan(wl).steps if kind == "group"]
    assert groups and max(len(g.eqns) for g in groups) >= 3  # elementwise chains became single kernels


# ---------------------------------------------------------------------------------------------
# Kernels: edge cases against NumPy
# ---------------------------------------------------------------------------------------------
def _eq(dev, host, rtol=1e-12, atol=1e-12):
    assert type(dev) is DeviceArray
    h = to_host(dev)
    assert h.dtype == np.asarray(host).dtype and h.shape == np.shape(host), (h.dtype, h.shape, np.shape(host))
    np.testing.assert_allclose(h, host, rtol=rtol, atol=atol)


def test_reductions_over_every_axis_set(rng):
    x = rng.standard_normal((3, 4, 5))
    x[0, 1, 2] = x[1, 1, 1]  # a tie
    dx = d(x)
    views = [(x, dx), (x.transpose(2, 0, 1), np.transpose(dx, (2, 0, 1))), (x[:, ::2, 1:], dx[:, ::2, 1:])]
    for h, v in views:
        for r in range(h.ndim + 1):
            for axes in [None, *itertools.combinations(range(h.ndim), r)]:
                for fn in (np.sum, np.max, np.min, np.prod):
                    _eq(fn(v, axis=axes, keepdims=r == 1), fn(h, axis=axes, keepdims=r == 1))
                _eq(np.any(v > 1.0, axis=axes), np.any(h > 1.0, axis=axes))
                _eq(np.all(v > -1.5, axis=axes), np.all(h > -1.5, axis=axes))
    long = rng.standard_normal((3, 97))  # split over several blocks per output, then combined
    _eq(np.sum(d(long), axis=1), np.sum(long, axis=1))
    _eq(np.max(d(long.T), axis=0), np.max(long.T, axis=0))
    _eq(np.sum(d(np.arange(10) > 4)), np.sum(np.arange(10) > 4))  # booleans sum as int64
    _eq(np.sum(d(x, np.float32), axis=1), np.sum(x.astype(np.float32), axis=1), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="zero-size array"):
        np.max(d(np.ones((0, 3))), axis=0)
    _eq(np.sum(d(np.ones((0, 3))), axis=0), np.zeros(3))


def test_argmax_ties_nan_and_scans(rng):
    x = np.array([[1.0, 3.0, 3.0, -1.0], [np.nan, 2.0, np.nan, 5.0], [0.0, 0.0, 0.0, 0.0]])
    for fn in (np.argmax, np.argmin):
        for axis in (None, 0, 1):
            _eq(fn(d(x), axis=axis), fn(x, axis=axis))
    y = rng.standard_normal((3, 9, 4))  # 9 > a few chunks: the chunk totals are scanned recursively
    for axis in (None, 0, 1, 2):
        _eq(np.cumsum(d(y), axis=axis), np.cumsum(y, axis=axis))
        _eq(np.cumprod(d(y), axis=axis), np.cumprod(y, axis=axis))
    _eq(np.cumsum(d(np.arange(7)), axis=0), np.cumsum(np.arange(7)))


def test_matmul_shapes_strides_and_dtypes(rng):
    cases = [
        ((5, 7), (7, 3)),
        ((2, 1, 3, 4), (5, 4, 2)),
        ((4,), (4, 3)),
        ((3, 4), (4,)),
        ((4,), (4,)),
        ((2, 3, 4), (4,)),
    ]
    for sa, sb in cases:
        a, b = rng.standard_normal(sa), rng.standard_normal(sb)
        _eq(d(a) @ d(b), a @ b)
    a, b = rng.standard_normal((6, 5)), rng.standard_normal((3, 6))
    _eq(d(a).T @ d(b).T, a.T @ b.T)  # transposed views are read in place
    ia, ib = rng.integers(-3, 3, (3, 4)), rng.integers(-3, 3, (4, 2))
    _eq(d(ia, np.int64) @ d(ib, np.int64), ia @ ib)
    _eq(d(a, np.float32) @ d(a.T, np.float32), a.astype(np.float32) @ a.T.astype(np.float32), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="mismatch"):
        d(a) @ d(a)


def test_advanced_indexing_follows_numpys_layout(rng):
    x = rng.standard_normal((4, 5, 6))
    dx = d(x)
    i, j = np.array([0, 3, 3]), np.array([[1], [3]])
    for index in [
        (i,), (slice(None), [4, 0]), (i, slice(1, 4)), (j, slice(None), i), (1, slice(None), i),
        (slice(None), i, j), (None, i), (Ellipsis, [-1, 0]), (x[:, 0, 0] > 0,), (x[..., 0] > 0, slice(2, 5)),
        (slice(None, None, -1), 2, slice(None, None, 2)),
    ]:  # fmt: skip
        _eq(dx[index], x[index])
        _eq(
            dx[tuple(d(k, np.int64) if isinstance(k, np.ndarray) and k.dtype.kind == "i" else k for k in index)],
            x[index],
        )
    with pytest.raises(IndexError):
        dx[np.array([4])]
    with pytest.raises(IndexError):
        dx[d(np.array([0, 9]), np.int64)]  # a device index: the kernel flags it
    with pytest.raises(IndexError):
        dx[0, 0, 0, 0]


def test_assignment_last_write_wins_and_scatter_add_accumulates(rng):
    x = rng.standard_normal((5, 3))
    v = rng.standard_normal((4, 3))
    idx = np.array([0, 2, 0, 4])
    y, dy = x.copy(), d(x)
    y[idx] = v
    dy[idx] = d(v)
    _eq(dy, y)
    y[1:3, ::2] = 7.0
    dy[1:3, ::2] = 7.0
    _eq(dy, y)
    z, dz = x.copy(), d(x)
    np.add.at(z, idx, v)
    np.add.at(dz, d(idx, np.int64), d(v))
    _eq(dz, z)
    with pytest.raises(ValueError, match="read-only"):
        np.broadcast_to(dz[0], (2, 3))[0, 0] = 1.0


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the simulator computes x % 0 with NumPy scalars
def test_nonzero_concatenate_einsum_and_elementwise_semantics(rng):
    m = rng.standard_normal((3, 4)) > 0
    for a, b in zip(np.nonzero(d(m, bool)), np.nonzero(m), strict=True):
        _eq(a, b)
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((4, 3)).astype(np.float32)
    _eq(np.concatenate([d(a), d(b, np.float32)]), np.concatenate([a, b]))
    s = rng.standard_normal((3, 3))
    c, e = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
    for sub, ops in [("ii->i", (s,)), ("ii->", (s,)), ("ij,jk,kl->il", (s, c, e)), ("i,i->", (s[0], s[1])),
                     ("ij,ik->jk", (s, c)), ("ijk->kji", (rng.standard_normal((2, 3, 4)),))]:  # fmt: skip
        _eq(np.einsum(sub, *[d(o) for o in ops]), np.einsum(sub, *ops))
    p, q = np.array([-7.5, 7.5, -3.0, 0.0, 5.0]), np.array([2.0, -2.0, 3.0, -1.5, 0.0])
    with np.errstate(divide="ignore", invalid="ignore"):
        for fn in (np.remainder, np.floor_divide, np.fmod, np.maximum, np.fmax, np.copysign, np.arctan2):
            _eq(fn(d(p), d(q)), fn(p, q))
    ip, iq = np.array([-7, 7, -3, 5]), np.array([2, -2, 3, 3])
    for fn in (np.remainder, np.floor_divide, np.add, np.maximum, np.bitwise_and):
        _eq(fn(d(ip, np.int64), d(iq, np.int64)), fn(ip, iq))
    nan = np.array([np.nan, 1.0, -np.inf])
    for fn in (np.isnan, np.isinf, np.isfinite, np.signbit, np.sign):
        _eq(fn(d(nan)), fn(nan))
    _eq(np.maximum(d(nan), 0.0), np.maximum(nan, 0.0))
    _eq(np.add(d(p), 1.0, where=d(p > 0, bool)), np.where(p > 0, p + 1.0, 0.0))
    _eq(np.round(d(p * 1.2345), 2), np.round(p * 1.2345, 2))
    _eq(d(p).astype(np.int64), p.astype(np.int64))
    _eq(d(p).astype(bool), p.astype(bool))


def test_an_elementwise_gradient_is_one_fused_kernel(rng):
    """W3's shape: the forward sweep, the reduction and the reverse sweep of an elementwise function
    become one kernel that reads x and writes the gradient (intermediates stay in registers)."""
    from gradjit.kernels.cuda_exec import CudaExecutor

    f = lambda x: np.sum(np.sin(x) * np.exp(-x * x) + np.log1p(x * x))  # noqa: E731
    x = rng.uniform(-3, 3, 37)
    dx = to_device(x)
    wl = gj.make_wengert(gj.value_and_grad(f))(dx)
    ex = CudaExecutor()
    value, grad = ex.run(wl, [dx])
    _close(value, f(x), np.float64, "value")
    _close(grad, gj.grad(f)(x), np.float64, "gradient")
    steps = ex._plan(wl).steps
    assert [kind for kind, _, _ in steps] == ["group"]
    (group,) = [s for _, _, s in steps]
    assert [v.index for v in group.outs] == [wl.outputs[1].index] and len(group.reds) == 1


def test_overlapping_views_are_read_before_they_are_written(rng):
    x = rng.standard_normal(9)
    y, dy = x.copy(), d(x)
    y[1:] += y[:-1]
    dy[1:] += dy[:-1]
    _eq(dy, y)
    y[::-1] = y[::1]  # NumPy reads overlapping operands before writing
    dy[::-1] = dy[::1]
    _eq(dy, y)
    y[np.array([0, 2, 4])] = y[1:4]
    dy[np.array([0, 2, 4])] = dy[1:4]
    _eq(dy, y)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # log(0) on the simulator's NumPy scalars
def test_debug_nans_on_device_names_the_operation():
    x = d(np.array([1.0, 0.0, 2.0]))
    with gj.debug_nans(), pytest.raises(gj.NonFiniteError, match=r"log: produced -inf .* log\(0\.0\)"):
        gj.grad(lambda x: np.sum(np.log(x) * x))(x)
