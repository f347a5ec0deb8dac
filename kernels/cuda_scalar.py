"""The names CUDA kernels' scalar expressions call: ``math.*`` and ``S.*`` for each compute type.

The elementwise expressions are the CPU executor's (``gradjit.kernels.ops.EXPR``: ``"S.exp({0})"``,
``"math.hypot({0}, {1})"``, ...), so both executors compute the same thing by the same formula. What
a name like ``S.exp`` or ``math.hypot`` *is* depends on the target, and this module provides it for
CUDA: one module object per compute type, bound to ``S`` and ``math`` in the generated kernel modules
(``from gradjit.kernels.cuda_scalar import S_F64, MATH_F64``; the backend writes ``S_F64.exp(...)``).

- On a GPU: ``math.name`` is libdevice's ``name`` (``namef`` for float32; Numba's own ``math`` would
  give ``math.floor`` an integer result). ``S.name`` is libdevice's for the C-library functions the
  CPU executor calls by symbol or replaces by its vectorizable versions (``floor``, ``rint``,
  ``exp2``, ``exp``, ``sin``, ``fmod``, ...), and otherwise the CPU executor's own function
  (``gradjit.kernels.scalar``: NumPy's ``remainder``/``floor_divide`` as ``npy_divmod``,
  NaN-propagating ``maximum``, ``logaddexp``, ``sinc``, ...) compiled as a device function from the
  *same code object*, its global names rebound to this module's device versions.
- Under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) kernels run as Python on NumPy scalars,
  and every name is the NumPy function (``np.remainder``, ``np.arctan2``, ...): float32 stays float32
  and the semantics are NumPy's by definition.

Names are resolved on first use, so the table of expressions can grow without this module changing
as long as each new name is a libdevice function or a function of ``gradjit.kernels.scalar``;
``check_names`` raises at code generation (not at launch) for a name that is neither.
"""

from __future__ import annotations

import re
import types
from typing import Any

import numba
import numpy as np

SIM = bool(numba.config.ENABLE_CUDASIM)

__all__ = ["SIM", "S_F64", "S_F32", "S_I64", "MATH_F64", "MATH_F32", "MATH_I64", "check_names"]

# NumPy's spelling of a name, where it differs (simulator).
_NUMPY_NAME = {
    "asin": "arcsin", "acos": "arccos", "atan": "arctan", "asinh": "arcsinh", "acosh": "arccosh",
    "atanh": "arctanh", "atan2": "arctan2", "pow": "power", "isign": "sign", "iremainder": "remainder",
    "ifloor_divide": "floor_divide", "fabs": "absolute",
}  # fmt: skip
# libdevice's spelling of the boolean tests (they return ints), by compute type.
_LIBDEVICE_TEST = {
    "f64": {"isinf": "isinfd", "isfinite": "isfinited", "isnan": "isnand", "signbit": "signbitd"},
    "f32": {"isinf": "isinff", "isfinite": "finitef", "isnan": "isnanf", "signbit": "signbitf"},
}
# S.* names taken from libdevice rather than from the CPU executor's code: the C-library functions it
# calls by symbol, and those it replaces by vectorizable versions (which use CPU intrinsics).
_S_FROM_LIBDEVICE = {"floor", "ceil", "trunc", "rint", "exp2", "cbrt", "log2", "fmod", "exp", "log", "log1p",
                     "expm1", "sin", "cos", "tanh"}  # fmt: skip


class _Namespace(types.ModuleType):
    """A module whose attributes are made on first access by ``resolve(name)`` (AttributeError: none)."""

    def __init__(self, name: str, resolve: Any):
        super().__init__(name)
        self._resolve = resolve

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        value = self._resolve(name)
        if value is None:
            raise AttributeError(f"{self.__name__} has no scalar function {name!r}")
        setattr(self, name, value)
        return value


def _sim_resolve(name: str) -> Any:
    return getattr(np, _NUMPY_NAME.get(name, name), None)


def _libdevice(tag: str, name: str) -> Any:
    from numba.cuda import libdevice

    if tag == "i64":
        return None
    test = _LIBDEVICE_TEST[tag].get(name)
    if test is not None:
        fn = getattr(libdevice, test)
        return _device(_as_bool(fn))
    if tag == "f32":
        fn = getattr(libdevice, name + "f", None)
        if fn is not None:
            return fn
    return getattr(libdevice, name, None)


def _as_bool(test: Any) -> Any:
    def fn(x: Any) -> bool:
        return test(x) != 0  # libdevice's tests return an int

    return fn


def _device(fn: Any) -> Any:
    from numba import cuda

    return cuda.jit(device=True, inline=True)(fn)


def _rebind(fn: Any, s_space: Any, math_space: Any) -> Any:
    """The Python code of a ``gradjit.kernels.scalar`` function, its global names bound to device versions:
    ``math`` is libdevice, the other helpers it calls are this compute type's (resolved now, since Numba
    reads a function's globals as a plain dict)."""
    from . import scalar

    py = fn.py_func
    namespace = {"math": math_space, "np": np, "like": scalar.like, "numba": numba}
    for name in py.__code__.co_names:
        if name not in namespace and name != py.__name__:
            try:
                namespace[name] = getattr(s_space, name)
            except AttributeError:
                pass  # an attribute name (np.pi's "pi"), not a global
    return types.FunctionType(py.__code__, namespace, py.__name__, py.__defaults__, py.__closure__)


def _gpu_s_resolver(tag: str, spaces: dict) -> Any:
    def resolve(name: str) -> Any:
        from . import scalar

        if name in _S_FROM_LIBDEVICE or name in _LIBDEVICE_TEST.get(tag, {}):
            fn = _libdevice(tag, name)
            if fn is not None:
                return fn
        cpu = getattr(scalar, name, None)
        if cpu is None or not hasattr(cpu, "py_func"):
            return None
        return _device(_rebind(cpu, spaces["S"], spaces["math"]))

    return resolve


def _make(tag: str) -> tuple[types.ModuleType, types.ModuleType]:
    if SIM:
        return _Namespace(f"gradjit_cuda_s_{tag}", _sim_resolve), _Namespace(f"gradjit_cuda_math_{tag}", _sim_resolve)
    math_space = _Namespace(f"gradjit_cuda_math_{tag}", lambda name: _libdevice("f64" if tag == "i64" else tag, name))
    spaces: dict = {"math": math_space}
    s_space = spaces["S"] = _Namespace(f"gradjit_cuda_s_{tag}", _gpu_s_resolver(tag, spaces))
    return s_space, math_space


S_F64, MATH_F64 = _make("f64")
S_F32, MATH_F32 = _make("f32")
S_I64, MATH_I64 = _make("i64")

_NAME = re.compile(r"\b(S|math)\.(\w+)")
_BY_TAG = {"f64": (S_F64, MATH_F64), "f32": (S_F32, MATH_F32), "i64": (S_I64, MATH_I64)}


def check_names(expr: str, tag: str) -> None:
    """Resolve every ``S.``/``math.`` name ``expr`` calls for ``tag``; raise for one that has no definition."""
    s_space, math_space = _BY_TAG[tag]
    for space, name in _NAME.findall(expr):
        if not hasattr(s_space if space == "S" else math_space, name):
            raise NotImplementedError(
                f"the CUDA backend has no scalar function {space}.{name} for {tag} (in the expression {expr!r}); "
                "add it to gradjit.kernels.cuda_scalar"
            )
