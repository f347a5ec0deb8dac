"""gradjit.kernels: the back end. Executors that run a Wengert list.

- ``reference``: NumPy, one primitive at a time; simple and obviously correct, the oracle in tests.

Import direction is one way: kernels import gradjit's Wengert-list and primitive modules; gradjit
reaches executors only through ``get_executor``.
"""

from __future__ import annotations

from .reference import ReferenceExecutor, run

EXECUTORS = {"reference": ReferenceExecutor}


def get_executor(name: str = "reference"):
    try:
        return EXECUTORS[name]()
    except KeyError:
        raise ValueError(f"unknown executor {name!r}; available: {sorted(EXECUTORS)}") from None


__all__ = ["ReferenceExecutor", "run", "get_executor", "EXECUTORS"]
