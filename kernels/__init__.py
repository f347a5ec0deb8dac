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


def _reference_executor(interactive: bool = False):
    return ReferenceExecutor()


def _cuda_executor(interactive: bool = False):
    """The CUDA executor (``cuda_exec``), imported only when asked for: it imports ``numba.cuda``."""
    from .cuda_exec import CudaExecutor

    return CudaExecutor()


def _cpu_executor(interactive: bool = False):
    """The Numba CPU executor (``cpu``), imported only when asked for: it imports Numba.

    ``interactive`` (jit's executor): never wait for the interpreter to load or compile; run on the
    reference executor meanwhile.
    """
    from .cpu import CpuExecutor

    return CpuExecutor(wait=not interactive)


EXECUTORS = {"reference": _reference_executor, "cpu": _cpu_executor, "cuda": _cuda_executor}


def get_executor(name: str = "reference", interactive: bool = False):
    try:
        make = EXECUTORS[name]
    except KeyError:
        raise ValueError(f"unknown executor {name!r}; available: {sorted(EXECUTORS)}") from None
    return make(interactive=interactive)


__all__ = ["ReferenceExecutor", "run", "get_executor", "EXECUTORS"]
