"""Parameter initializers and the random-key convention of ``gradjit.nn``.

An initializer is ``init(key, shape, dtype=np.float64) -> np.ndarray``. A **key** is an ``int``
seed, a ``numpy.random.Generator`` (used and advanced in place), or ``None`` (fresh OS entropy: not
reproducible). The same int key always gives the same array; ``split_key(key, n)`` derives ``n``
independent int keys from one, so a model can hand one to each layer deterministically.

Fans follow the layouts ``gradjit.nn`` uses: a 2-D weight is ``(fan_in, fan_out)`` (``x @ W``); a
weight of rank >= 3 is ``(out, in, *kernel)`` (OIHW), with ``fan_in = in * prod(kernel)`` and
``fan_out = out * prod(kernel)``; a 1-D shape has ``fan_in = fan_out = shape[0]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "Key",
    "rng_from",
    "split_key",
    "fans",
    "zeros",
    "ones",
    "normal",
    "uniform",
    "glorot_uniform",
    "glorot_normal",
    "xavier_uniform",
    "xavier_normal",
    "he_uniform",
    "he_normal",
    "kaiming_uniform",
    "kaiming_normal",
    "lecun_normal",
    "orthogonal",
]

Key = int | np.integer | np.random.Generator | None
Shape = int | Sequence[int]


def rng_from(key: Key) -> np.random.Generator:
    """The generator a key stands for: a seeded one for an int, the generator itself, or a fresh one."""
    if isinstance(key, np.random.Generator):
        return key
    if key is None or isinstance(key, (int, np.integer)):
        return np.random.default_rng(None if key is None else int(key))
    raise TypeError(f"a random key must be an int seed, a numpy.random.Generator or None, not {type(key).__name__}")


def split_key(key: Key, num: int = 2) -> list[int]:
    """``num`` independent int keys derived from ``key`` (deterministic for an int key)."""
    if isinstance(key, (int, np.integer)):
        seqs = np.random.SeedSequence(int(key)).spawn(num)
        return [int(s.generate_state(1, np.uint64)[0] >> np.uint64(1)) for s in seqs]
    return [int(k) for k in rng_from(key).integers(0, 2**63 - 1, size=num)]


def _shape(shape: Shape) -> tuple[int, ...]:
    return (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)


def fans(shape: Shape) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of ``shape`` (see the module docstring)."""
    shape = _shape(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    field = int(np.prod(shape[2:]))
    return shape[1] * field, shape[0] * field


def zeros(key: Key, shape: Shape, dtype: Any = np.float64) -> np.ndarray:
    return np.zeros(_shape(shape), dtype)


def ones(key: Key, shape: Shape, dtype: Any = np.float64) -> np.ndarray:
    return np.ones(_shape(shape), dtype)


def normal(key: Key, shape: Shape, dtype: Any = np.float64, std: float = 1.0) -> np.ndarray:
    return (std * rng_from(key).standard_normal(_shape(shape))).astype(dtype)


def uniform(key: Key, shape: Shape, dtype: Any = np.float64, limit: float = 1.0) -> np.ndarray:
    return rng_from(key).uniform(-limit, limit, _shape(shape)).astype(dtype)


def glorot_uniform(key: Key, shape: Shape, dtype: Any = np.float64) -> np.ndarray:
    """U(-a, a) with ``a = sqrt(6 / (fan_in + fan_out))`` (Glorot & Bengio 2010)."""
    fi, fo = fans(shape)
    return uniform(key, shape, dtype, float(np.sqrt(6.0 / (fi + fo))))


def glorot_normal(key: Key, shape: Shape, dtype: Any = np.float64) -> np.ndarray:
    """N(0, 2 / (fan_in + fan_out))."""
    fi, fo = fans(shape)
    return normal(key, shape, dtype, float(np.sqrt(2.0 / (fi + fo))))


def he_uniform(key: Key, shape: Shape, dtype: Any = np.float64) -> np.ndarray:
    """U(-a, a) with ``a = sqrt(6 / fan_in)`` (He et al. 2015, for ReLU)."""
    return uniform(key, shape, dtype, float(np.sqrt(6.0 / fans(shape)[0])))


def he_normal(key: Key, shape: Shape, dtype: Any = np.float64) -> np.ndarray:
    """N(0, 2 / fan_in)."""
    return normal(key, shape, dtype, float(np.sqrt(2.0 / fans(shape)[0])))


def lecun_normal(key: Key, shape: Shape, dtype: Any = np.float64) -> np.ndarray:
    """N(0, 1 / fan_in)."""
    return normal(key, shape, dtype, float(np.sqrt(1.0 / fans(shape)[0])))


def orthogonal(key: Key, shape: Shape, dtype: Any = np.float64, gain: float = 1.0) -> np.ndarray:
    """A (semi-)orthogonal matrix: the shape flattened to (shape[0], rest), rows or columns orthonormal."""
    shape = _shape(shape)
    rows, cols = shape[0], int(np.prod(shape[1:])) if len(shape) > 1 else 1
    a = rng_from(key).standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))  # a uniform (Haar) draw, not biased by QR's sign convention
    if rows < cols:
        q = q.T
    return (gain * q).reshape(shape).astype(dtype)


xavier_uniform = glorot_uniform
xavier_normal = glorot_normal
kaiming_uniform = he_uniform
kaiming_normal = he_normal
