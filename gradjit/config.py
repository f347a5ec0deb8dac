"""Global settings: ``gradjit.config``.

    gj.config.debug_nans = True      # same as gj.set_debug_nans(True); scoped: `with gj.debug_nans():`

Settings are properties that switch the machinery they name (nothing polls this object on a hot
path). Environment variables give their initial values when gradjit is imported:

- ``GRADJIT_DEBUG_NANS=1``: start with NaN/Inf debugging on (see ``gradjit.debug``).
- ``GRADJIT_EXECUTOR=cpu``: the executor ``gradjit.jit`` runs stored Wengert lists on (a name
  registered in ``gradjit.kernels``, checked when first used): ``cpu`` (the default, Numba-compiled)
  or ``reference`` (NumPy, one primitive at a time).
- ``GRADJIT_CACHE_DIR=/path``: where compiled kernels are cached on disk (default
  ``$XDG_CACHE_HOME/gradjit``, or ``~/.cache/gradjit``); see ``gradjit.kernels.cache``.
"""

from __future__ import annotations

import os

from . import debug
from . import simplify as _simplify

__all__ = ["Config", "config"]

_TRUE = ("1", "true", "yes", "on")

# The executor name; not validated at import (that would import gradjit.kernels eagerly).
_executor = os.environ.get("GRADJIT_EXECUTOR", "").strip() or "cpu"

_cache_dir = os.environ.get("GRADJIT_CACHE_DIR", "").strip() or os.path.join(
    os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join(os.path.expanduser("~"), ".cache"), "gradjit"
)


class Config:
    """gradjit's settings; use the instance ``gradjit.config``."""

    __slots__ = ()

    @property
    def debug_nans(self) -> bool:
        """Stop at the first traced operation (or gradient) whose result is NaN or Inf."""
        return debug.debug_nans_enabled()

    @debug_nans.setter
    def debug_nans(self, enabled: bool) -> None:
        debug.set_debug_nans(bool(enabled))

    @property
    def executor(self) -> str:
        """The executor ``gradjit.jit`` runs stored Wengert lists on (``GRADJIT_EXECUTOR``)."""
        return _executor

    @executor.setter
    def executor(self, name: str) -> None:
        global _executor
        from .kernels import EXECUTORS

        if name not in EXECUTORS:
            raise ValueError(f"unknown executor {name!r}; available: {sorted(EXECUTORS)}")
        _executor = name

    @property
    def simplify(self) -> bool:
        """Simplify nested traces (common subexpressions, exact identities, dead code; see
        ``gradjit.simplify``); on by default. Read when a transform starts inside another."""
        return _simplify.ENABLED

    @simplify.setter
    def simplify(self, enabled: bool) -> None:
        _simplify.ENABLED = bool(enabled)

    @property
    def cache_dir(self) -> str:
        """Where compiled kernels are cached on disk (``GRADJIT_CACHE_DIR``); read when a kernel module
        is first loaded in the process."""
        return _cache_dir

    @cache_dir.setter
    def cache_dir(self, path: str | os.PathLike) -> None:
        global _cache_dir
        _cache_dir = os.fspath(path)

    def __repr__(self) -> str:
        return f"gradjit.config(debug_nans={self.debug_nans})"


config = Config()

if os.environ.get("GRADJIT_DEBUG_NANS", "").strip().lower() in _TRUE:
    config.debug_nans = True
