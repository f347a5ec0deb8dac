"""Errors that name the operation and the user's source line, and say what to do instead.

``user_line()`` walks the Python stack outward past frames that belong to gradjit or NumPy and
returns the first frame of user code, formatted ``file:line: source``. Every error gradjit raises on
bad input goes through ``GradjitError`` subclasses built here, so messages share one shape::

    <operation>: <what is wrong>
      at <file>:<line>: <source text>
    <what to do instead>
"""

from __future__ import annotations

import linecache
import os
import sys

import numpy as np

_GRADJIT_DIR = os.path.dirname(os.path.abspath(__file__))
_KERNELS_DIR = os.path.join(os.path.dirname(_GRADJIT_DIR), "kernels")
_NUMPY_DIR = os.path.dirname(os.path.abspath(np.__file__))
_SKIP = (_GRADJIT_DIR + os.sep, _KERNELS_DIR + os.sep, _NUMPY_DIR + os.sep)


def _is_internal(filename: str) -> bool:
    return filename.startswith(_SKIP) or filename.startswith("<__array_function__")


def user_line(skip_tests: bool = False) -> str:
    """``file:line: source`` of the innermost stack frame outside gradjit and NumPy."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = (
            os.path.abspath(frame.f_code.co_filename)
            if not frame.f_code.co_filename.startswith("<")
            else frame.f_code.co_filename
        )
        if not _is_internal(filename):
            src = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
            where = f"{frame.f_code.co_filename}:{frame.f_lineno}"
            return f"{where}: {src}" if src else where
        frame = frame.f_back
    return "<unknown location>"


def _message(op: str, problem: str, advice: str | None, where: str | None = None) -> str:
    msg = f"{op}: {problem}\n  at {where or user_line()}"
    if advice:
        msg += f"\n{advice}"
    return msg


class GradjitError(Exception):
    """Base class of gradjit's errors about how it was used."""

    def __init__(self, op: str, problem: str, advice: str | None = None, where: str | None = None):
        self.op = op
        super().__init__(_message(op, problem, advice, where))


class TracerConversionError(GradjitError):
    """A traced value was turned into a Python or NumPy value in a way that drops its gradient.

    Deliberately not a ``TypeError``: NumPy turns a ``TypeError`` from ``__float__`` into an
    unrelated "setting an array element with a sequence" message when a traced value is stored
    into a plain array (``y[0] = x``); any other exception type reaches the user intact.
    """


class NonScalarOutputError(GradjitError, TypeError):
    """``grad`` of a function whose output is not a scalar."""


class NonDifferentiableInputError(GradjitError, TypeError):
    """Differentiation asked for with respect to an integer, boolean or non-numeric input."""


class NoVJPError(GradjitError, NotImplementedError):
    """An operation was reached in the reverse sweep that has no VJP rule for that argument."""


class UnsupportedOperationError(GradjitError, NotImplementedError):
    """A NumPy function or argument gradjit cannot trace."""


class ArgnumsError(GradjitError, ValueError):
    """``argnums`` names arguments the function was not called with."""


class EscapedTracerError(GradjitError, RuntimeError):
    """A traced value was used after the transform that made it had finished."""
