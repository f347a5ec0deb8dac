"""Array manipulation on tracers: composites of reshape, transpose, getitem, concatenate.

Every function here registers with ``numpy_api.implements`` and is built only from primitives and
other composites, so its gradient comes from theirs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .numpy_api import implements, ndim_of, norm_axis, reshape, shape_of, transpose


@implements(np.swapaxes)
def swapaxes(a: Any, axis1: int, axis2: int) -> Any:
    nd = ndim_of(a)
    perm = list(range(nd))
    i, j = int(axis1) % nd, int(axis2) % nd
    perm[i], perm[j] = perm[j], perm[i]
    return transpose(a, perm)


@implements(np.ravel)
def ravel(a: Any, order: str = "C") -> Any:
    return reshape(a, (-1,), order)


@implements(np.squeeze)
def squeeze(a: Any, axis: Any = None) -> Any:
    s = shape_of(a)
    axes = tuple(i for i, n in enumerate(s) if n == 1) if axis is None else norm_axis(axis, len(s))
    for i in axes:
        if s[i] != 1:
            raise ValueError("cannot select an axis to squeeze out which has size not equal to one")
    return reshape(a, tuple(n for i, n in enumerate(s) if i not in axes))


@implements(np.expand_dims)
def expand_dims(a: Any, axis: Any) -> Any:
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    nd = ndim_of(a) + len(axes)
    axes = norm_axis(axes, nd)
    it = iter(shape_of(a))
    return reshape(a, tuple(1 if i in axes else next(it) for i in range(nd)))
