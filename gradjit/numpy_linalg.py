"""Contractions and linear algebra on tracers: ``tensordot``, ``einsum``, ``numpy.linalg``.

Contractions lower to the ``matmul`` and ``einsum`` primitives; ``numpy.linalg`` functions map to
the linear-algebra primitives (``inv``, ``det``, ``logabsdet``, ``solve``, ``cholesky``) or are
composites (``norm``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .numpy_api import implements, matmul, ndim_of, reshape, shape_of, transpose


@implements(np.tensordot)
def tensordot(a: Any, b: Any, axes: Any = 2) -> Any:
    na, nb = ndim_of(a), ndim_of(b)
    if isinstance(axes, (int, np.integer)):
        axes_a, axes_b = list(range(na - int(axes), na)), list(range(int(axes)))
    else:
        axes_a, axes_b = axes
        axes_a = [axes_a] if isinstance(axes_a, (int, np.integer)) else list(axes_a)
        axes_b = [axes_b] if isinstance(axes_b, (int, np.integer)) else list(axes_b)
    axes_a = [int(x) % na for x in axes_a]
    axes_b = [int(x) % nb for x in axes_b]
    free_a = [i for i in range(na) if i not in axes_a]
    free_b = [i for i in range(nb) if i not in axes_b]
    sa, sb = shape_of(a), shape_of(b)
    k = int(np.prod([sa[i] for i in axes_a], dtype=np.int64))
    a2 = reshape(transpose(a, free_a + axes_a), (-1, k) if free_a else (1, k))
    b2 = reshape(transpose(b, axes_b + free_b), (k, -1) if free_b else (k, 1))
    out = matmul(a2, b2)
    return reshape(out, tuple(sa[i] for i in free_a) + tuple(sb[i] for i in free_b))


def einsum_operand_grad(g: Any, operands: tuple, subscripts: str, i: int) -> Any:
    raise NotImplementedError("einsum gradient")
