"""gradjit.kernels: the back end. Executors that run a Wengert list.

- ``reference``: NumPy, one primitive at a time; simple and obviously correct, the oracle in tests.
- ``cpu``: Numba-compiled kernels (``cpu``): elementwise chains fused, buffers reused, hot traces
  compiled into fused loops; imported only when asked for (it imports Numba).
- ``cuda``: device arrays (``gradjit.to_device``), elementwise chains fused into CUDA kernels.

Import direction is one way: kernels import gradjit's Wengert-list and primitive modules; gradjit
reaches executors only through ``get_executor``.
"""

from __future__ import annotations

from .reference import ReferenceExecutor, run


def _cuda_executor():
    """The CUDA executor (``cuda_exec``), imported only when asked for: it imports ``numba.cuda``."""
    from .cuda_exec import CudaExecutor

    return CudaExecutor()


def _cpu_executor():
    """The Numba CPU executor (``cpu``), imported only when asked for: it imports Numba."""
    from .cpu import CpuExecutor

    return CpuExecutor()


EXECUTORS = {"reference": ReferenceExecutor, "cpu": _cpu_executor, "cuda": _cuda_executor}


def get_executor(name: str = "reference"):
    try:
        return EXECUTORS[name]()
    except KeyError:
        raise ValueError(f"unknown executor {name!r}; available: {sorted(EXECUTORS)}") from None


__all__ = ["ReferenceExecutor", "run", "get_executor", "EXECUTORS"]
