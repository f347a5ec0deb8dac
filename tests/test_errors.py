"""Errors that help (issue 2, item 10).

Each misuse raises a gradjit error class whose message names the operation, points at the user's
source line (here: this test file, and the very line that did it), and says what to do instead.
Conversions that are control flow (``bool``, ``int``, indexing by a traced integer) are allowed and
recorded as guards.
"""

from __future__ import annotations

import linecache
import math
import re

import numpy as np
import pytest

import gradjit as gj

_AT = re.compile(r"^  at (?P<file>.+?):(?P<line>\d+): (?P<src>.*)$", re.MULTILINE)


def assert_points_here(exc: BaseException, source: str) -> None:
    """The message's ``at file:line: source`` names this test file and a line containing ``source``."""
    msg = str(exc)
    m = _AT.search(msg)
    assert m is not None, f"no source location in:\n{msg}"
    assert m["file"] == __file__, f"points at {m['file']}, not this test file:\n{msg}"
    assert source in m["src"], f"expected the line {source!r}, got {m['src']!r}"
    assert linecache.getline(__file__, int(m["line"])).strip() == m["src"], "line number and text disagree"


# ---------------------------------------------------------------------------------------------
# Misuse of the transforms
# ---------------------------------------------------------------------------------------------
def test_non_scalar_output() -> None:
    def f(x):
        return np.sin(x)

    with pytest.raises(gj.NonScalarOutputError) as info:
        gj.grad(f)(np.ones(3))
    msg = str(info.value)
    assert "grad(f)" in msg and "shape (3,)" in msg
    assert "elementwise_grad" in msg and "np.sum" in msg  # what to do instead
    assert_points_here(info.value, "gj.grad(f)(np.ones(3))")


def test_non_scalar_output_with_has_aux_forgotten() -> None:
    with pytest.raises(gj.NonScalarOutputError) as info:
        gj.grad(lambda x: (np.sum(x), x))(np.ones(3))
    assert "has_aux=True" in str(info.value)
    assert_points_here(info.value, "gj.grad(lambda x: (np.sum(x), x))(np.ones(3))")


def test_integer_python_scalar_input() -> None:
    with pytest.raises(gj.NonDifferentiableInputError) as info:
        gj.grad(lambda x: x * 2.0)(3)
    msg = str(info.value)
    assert "argument 0" in msg and "int" in msg and "3.0" in msg
    assert_points_here(info.value, "gj.grad(lambda x: x * 2.0)(3)")


def test_integer_array_input() -> None:
    with pytest.raises(gj.NonDifferentiableInputError) as info:
        gj.value_and_grad(lambda x, y: np.sum(x * y), argnums=1)(np.ones(3), np.arange(3))
    msg = str(info.value)
    assert "argument 1" in msg and "int64" in msg and "astype(float)" in msg
    assert_points_here(info.value, "np.arange(3))")


def test_unknown_argnums() -> None:
    with pytest.raises(gj.ArgnumsError) as info:
        gj.grad(lambda x, y: x * y, argnums=2)(1.0, 2.0)
    msg = str(info.value)
    assert "argnums=2" in msg and "2 positional" in msg
    assert_points_here(info.value, "argnums=2)(1.0, 2.0)")
    with pytest.raises(gj.ArgnumsError):
        gj.grad(lambda x, y: x * y, argnums=(0, -3))(1.0, 2.0)
    with pytest.raises(gj.ArgnumsError, match="repeats"):
        gj.grad(lambda x, y: x * y, argnums=(0, -2))(1.0, 2.0)
    assert isinstance(info.value, ValueError)  # also catchable as the builtin it refines


# ---------------------------------------------------------------------------------------------
# Operations without a gradient, unsupported functions and arguments
# ---------------------------------------------------------------------------------------------
def test_operation_with_no_vjp() -> None:
    @gj.primitive
    def double_it(x):
        return 2.0 * x

    with pytest.raises(gj.NoVJPError) as info:
        gj.grad(lambda x: double_it(x) + 1.0)(1.0)
    msg = str(info.value)
    assert "no VJP for 'double_it' with respect to argument 0" in msg
    assert "defvjp" in msg
    assert_points_here(info.value, "gj.grad(lambda x: double_it(x) + 1.0)(1.0)")
    # Forward evaluation (no gradient needed) is fine.
    assert double_it(2.0) == 4.0


def test_no_vjp_names_the_line_that_used_the_operation() -> None:
    @gj.primitive
    def halve(x):
        return 0.5 * x

    def loss(x):
        y = np.sin(x)
        return halve(y)

    with pytest.raises(gj.NoVJPError) as info:
        gj.grad(loss)(1.0)
    assert_points_here(info.value, "return halve(y)")
    assert "halve.defvjp(" in str(info.value)


def test_no_vjp_for_the_second_argument_only() -> None:
    @gj.primitive
    def scale(x, s):
        return x * s

    scale.defvjp(lambda g, ans, x, s: g * s)
    assert gj.grad(lambda x: scale(x, 3.0))(1.0) == 3.0
    with pytest.raises(gj.NoVJPError, match="argument 1") as info:
        gj.grad(lambda s: scale(2.0, s))(3.0)
    assert_points_here(info.value, "gj.grad(lambda s: scale(2.0, s))(3.0)")


@pytest.mark.parametrize(
    "fn, name",
    [
        (lambda x: np.sum(np.fft.fft(x).real), "np.fft.fft"),
        (lambda x: np.sum(np.i0(x)), "np.i0"),
        (lambda x: np.sum(np.convolve(x, x)), "np.convolve"),
    ],
    ids=["fft", "i0", "convolve"],
)
def test_unsupported_numpy_function_is_named(fn, name: str) -> None:
    with pytest.raises(gj.UnsupportedOperationError) as info:
        gj.grad(fn)(np.ones(4))
    msg = str(info.value)
    assert msg.startswith(name + ":"), msg
    assert "@gradjit.primitive" in msg
    assert_points_here(info.value, name.removeprefix("np.") + "(x")


def test_unsupported_ufunc() -> None:
    with pytest.raises(gj.UnsupportedOperationError) as info:
        gj.grad(lambda x: np.sum(np.spacing(x)))(np.ones(2))
    assert str(info.value).startswith("np.spacing:")
    assert_points_here(info.value, "np.spacing(x)")


def test_mutating_out_argument() -> None:
    def f(x):
        y = np.zeros(3)
        np.add(x, 1.0, out=y)
        return np.sum(y)

    with pytest.raises(gj.UnsupportedOperationError) as info:
        gj.grad(f)(np.ones(3))
    msg = str(info.value)
    assert msg.startswith("np.add:") and "out=" in msg and "y = np.add(a, b)" in msg
    assert_points_here(info.value, "np.add(x, 1.0, out=y)")


def test_mutating_out_argument_of_an_array_function() -> None:
    def f(x):
        y = np.zeros(())
        np.sum(x, out=y)
        return y

    with pytest.raises(gj.UnsupportedOperationError) as info:
        gj.grad(f)(np.ones(3))
    assert str(info.value).startswith("np.sum:")
    assert_points_here(info.value, "np.sum(x, out=y)")


# ---------------------------------------------------------------------------------------------
# Conversions that would silently drop a gradient
# ---------------------------------------------------------------------------------------------
def test_float_of_a_traced_value() -> None:
    with pytest.raises(gj.TracerConversionError) as info:
        gj.grad(lambda x: float(x) * x)(2.0)
    msg = str(info.value)
    assert "float()" in msg and "drop its gradient" in msg and "stop_gradient" in msg
    assert_points_here(info.value, "float(x) * x")


def test_item_of_a_traced_value() -> None:
    with pytest.raises(gj.TracerConversionError) as info:
        gj.grad(lambda x: x.item() * x)(np.array(2.0))
    assert ".item()" in str(info.value)
    assert_points_here(info.value, "x.item() * x")


def test_math_module_function_on_a_traced_value() -> None:
    with pytest.raises(gj.TracerConversionError) as info:
        gj.grad(lambda x: math.sin(x))(2.0)
    msg = str(info.value)
    assert "math-module" in msg and "np.sin, not math.sin" in msg
    assert_points_here(info.value, "math.sin(x)")


def test_storing_a_traced_value_into_a_plain_array() -> None:
    def f(x):
        y = np.zeros(3)
        y[0] = x
        return np.sum(y)

    # NumPy turns the error raised by the conversion into its own ValueError; gradjit's error is
    # kept as the cause, so the traceback shows it (and what to do instead).
    with pytest.raises((gj.TracerConversionError, ValueError)) as info:
        gj.grad(f)(2.0)
    exc = info.value
    cause = exc if isinstance(exc, gj.TracerConversionError) else exc.__cause__
    assert isinstance(cause, gj.TracerConversionError), f"{type(exc).__name__}: {exc} (cause {exc.__cause__!r})"
    assert "storing into a NumPy array" in str(cause)
    assert_points_here(cause, "y[0] = x")


def test_np_array_of_traced_values() -> None:
    with pytest.raises(gj.TracerConversionError) as info:
        gj.grad(lambda x, y: np.sum(np.array([x, y])), argnums=(0, 1))(1.0, 2.0)
    msg = str(info.value)
    assert "np.asarray / np.array" in msg and "np.stack([x, y])" in msg
    assert_points_here(info.value, "np.array([x, y])")
    # What the message suggests works:
    assert gj.grad(lambda x, y: np.sum(np.stack([x, y]) ** 2), argnums=(0, 1))(1.0, 2.0) == (2.0, 4.0)


def test_np_asarray_of_a_traced_value() -> None:
    with pytest.raises(gj.TracerConversionError) as info:
        gj.grad(lambda x: np.sum(np.asarray(x)))(np.ones(2))
    assert_points_here(info.value, "np.sum(np.asarray(x))")


def test_errors_are_gradjit_errors_and_keep_the_operation() -> None:
    with pytest.raises(gj.GradjitError) as info:
        gj.grad(lambda x: float(x))(1.0)
    assert info.value.op.startswith("float()")
    assert not isinstance(info.value, TypeError)  # NumPy would swallow a TypeError (see errors.py)


def test_escaped_tracer() -> None:
    leaked = []

    def f(x):
        leaked.append(x)
        return x * 2.0

    gj.grad(f)(1.0)
    with pytest.raises(gj.EscapedTracerError) as info:
        gj.grad(lambda y: y * leaked[0])(1.0)
    assert_points_here(info.value, "gj.grad(lambda y: y * leaked[0])(1.0)")


def test_no_trace_is_left_behind_after_an_error() -> None:
    with pytest.raises(gj.TracerConversionError):
        gj.grad(lambda x: gj.grad(lambda y: float(y) * x)(x))(1.0)
    from gradjit import tracing

    assert not tracing._STACK
    assert gj.grad(lambda x: x * x)(3.0) == 6.0


# ---------------------------------------------------------------------------------------------
# Conversions that are control flow: allowed, and recorded as guards
# ---------------------------------------------------------------------------------------------
def test_bool_int_and_traced_integer_index_are_allowed_and_guarded() -> None:
    table = np.array([10.0, 20.0, 30.0])

    def f(x, k):
        if x > 0:  # bool
            n = int(x)  # int of a float: control flow, no gradient through n
            return table[np.argmax(k)] * x + n  # index by a traced integer
        return x

    x, k = 2.5, np.array([0.1, 0.9, 0.3])
    assert gj.grad(f)(x, k) == 20.0
    wl = gj.make_wengert(f)(x, k)
    kinds = [(g.kind, g.observed) for g in wl.guards]
    assert ("bool", True) in kinds and ("int", 2) in kinds and ("index", 1) in kinds
    text = str(wl)
    assert "guard bool(" in text and "guard int(" in text and "guard index(" in text


def test_traced_integer_used_in_range_and_as_a_slice_bound() -> None:
    def f(x):
        n = np.argmax(x)
        total = 0.0
        for i in range(n):
            total = total + x[i]
        return total + np.sum(x[:n])

    x = np.array([1.0, 2.0, 5.0, 3.0])
    np.testing.assert_array_equal(gj.grad(f)(x), [2.0, 2.0, 0.0, 0.0])


def test_float_of_an_integer_traced_value_is_allowed() -> None:
    def f(x):
        return x * float(np.argmax(x))

    np.testing.assert_array_equal(gj.grad(lambda x: np.sum(f(x)))(np.array([0.0, 3.0, 1.0])), [1.0, 1.0, 1.0])


def test_plain_array_indexed_by_traced_integer_arrays() -> None:
    table = np.array([10.0, 20.0, 30.0])

    def f(x):
        order = np.argsort(x)
        return np.sum(table[order] * x) + np.sum(np.take(table, order) * x)

    x = np.array([3.0, 1.0, 2.0])
    np.testing.assert_array_equal(gj.grad(f)(x), 2 * table[np.argsort(x)])
    wl = gj.make_wengert(f)(x)
    assert ("tolist", [1, 2, 0]) in [(g.kind, g.observed) for g in wl.guards]
