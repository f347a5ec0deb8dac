"""Shared pytest fixtures for gradjit's tests.

- ``rng``: a seeded NumPy generator, so every test draws the same inputs on every run.
- An autouse guard that fails a test which leaves gradjit's global state dirty: a trace still on
  the stack (a transform that did not clean up after an exception), or a scoped gradient override
  (``gj.gradients``) that outlived its ``with`` block. Either would silently change later tests.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from gradjit import numpy_api, tracing


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
