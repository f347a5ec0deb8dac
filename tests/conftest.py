"""Shared pytest fixtures for gradjit's tests.

- ``rng``: a seeded NumPy generator, so every test draws the same inputs on every run.
- An autouse guard that fails a test which leaves gradjit's global state dirty: a trace still on
  the stack (a transform that did not clean up after an exception), or a scoped gradient override
  (``gj.gradients``) that outlived its ``with`` block. Either would silently change later tests.
- BLAS on one thread for the whole session: the tests multiply small matrices, and a multi-threaded
  BLAS on a busy 2-core machine makes those 7-15x slower (seen in CI-like runs).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # effective if NumPy is not imported yet; threadpoolctl below if it is

from collections.abc import Iterator  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

try:  # a dependency of scikit-learn (test extra); limits an already-loaded BLAS too
    from threadpoolctl import threadpool_limits

    _BLAS_LIMIT = threadpool_limits(limits=1, user_api="blas")
except ImportError:  # pragma: no cover
    _BLAS_LIMIT = None

from gradjit import numpy_api, tracing  # noqa: E402


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240601)


@pytest.fixture(autouse=True)
def _no_leaked_global_state() -> Iterator[None]:
    overrides = dict(tracing.OVERRIDES)
    function_overrides = dict(numpy_api.FUNCTION_OVERRIDES)
    yield
    assert not tracing._STACK, f"a trace was left active: {tracing._STACK!r}"
    assert tracing.OVERRIDES == overrides, "a scoped gradient override leaked out of its block"
    assert numpy_api.FUNCTION_OVERRIDES == function_overrides, "a function override leaked out of its test"
