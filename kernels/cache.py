"""The disk cache of generated Numba modules: one real ``.py`` file per compiled unit.

Numba caches machine code (``cache=True``) only for functions defined in real source files, and it
checks only the timestamp of the file that defines a function, not of the functions it calls. So
gradjit writes every compiled unit (the interpreter, a fused trace) as a module of its own in the
cache directory, named by a hash of everything its machine code depends on, and verifies the file
before trusting it.

The directory is ``gradjit.config.cache_dir`` (``GRADJIT_CACHE_DIR``; by default
``$XDG_CACHE_HOME/gradjit`` or ``~/.cache/gradjit``). Numba's own cache files for these modules go to
``__pycache__`` inside it.

Invariants
----------
- A module file is ``<kind>_<key>.py``; its first line is the header
  ``# gradjit-cache sha256=<hash of the rest of the file> <versions>``, where ``<key>`` is a hash of
  the header. Loading checks the header and re-hashes the body: a stale file (other versions, other
  source) has another name, and a corrupt or truncated one is deleted and written again.
- Files are written atomically (a temporary file, then ``os.replace``), so concurrent processes
  never import half a file.
- ``load_module`` runs ``warm(module)`` (which should compile or load the module's kernels); if that
  raises (a corrupt Numba cache entry, a file that does not compile), the module's files are deleted
  and the module is written, imported and warmed once more from scratch.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["cache_dir", "load_module", "module_path", "versions", "source_of", "digest"]

_MODULES: dict[str, ModuleType] = {}  # file path -> module loaded in this process


def cache_dir() -> Path:
    """The directory generated modules go to (created if missing)."""
    from gradjit.config import config

    path = Path(config.cache_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        if os.access(path, os.W_OK):
            return path
    except OSError:
        pass
    # Not writable (a read-only home, a sandbox): a private directory under the system's temp dir.
    fallback = Path(tempfile.gettempdir()) / f"gradjit-cache-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def versions() -> str:
    """The versions machine code depends on, as they appear in a header."""
    import numba
    import numpy

    import gradjit

    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    return f"gradjit={gradjit.__version__} numba={numba.__version__} numpy={numpy.__version__} python={py}"


def digest(*texts: str) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    return h.hexdigest()


def source_of(*module_names: str) -> str:
    """The concatenated source text of modules (those a compiled unit's machine code depends on)."""
    parts = []
    for name in module_names:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        parts.append(Path(spec.origin).read_text())
    return "\n".join(parts)


def _header(body: str) -> str:
    return f"# gradjit-cache sha256={digest(body)} {versions()}\n"


def module_path(kind: str, body: str) -> Path:
    """Where the module with this body is (or would be) stored."""
    header = _header(body)
    return cache_dir() / f"{kind}_{digest(header)[:20]}.py"


def _valid(path: Path, header: str) -> bool:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return False
    first, _, rest = text.partition("\n")
    return first + "\n" == header and f"sha256={digest(rest)} " in first


def _remove(path: Path) -> None:
    """Delete a module file and Numba's cache entries for it."""
    stem = path.stem
    for p in [path, *path.parent.joinpath("__pycache__").glob(f"{stem}.*")]:
        try:
            p.unlink()
        except OSError:
            pass


def _write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".py")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _import(path: Path) -> ModuleType:
    name = f"_gradjit_cache_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def load_module(kind: str, body: str, warm: Callable[[ModuleType], Any] | None = None) -> ModuleType:
    """Import the cached module ``kind`` with source ``body``, writing it first if needed.

    ``warm(module)`` is called once after import (compile or load its kernels); a failure there or
    at import deletes the files and starts over once; a second failure propagates.
    """
    header = _header(body)
    path = module_path(kind, body)
    key = str(path)
    if key in _MODULES:
        return _MODULES[key]
    for attempt in (0, 1):
        if attempt or not _valid(path, header):
            _remove(path)
            _write(path, header + body)
        try:
            module = _import(path)
            if warm is not None:
                warm(module)
        except Exception:
            if attempt:
                raise
            continue
        _MODULES[key] = module
        return module
    raise AssertionError("unreachable")
