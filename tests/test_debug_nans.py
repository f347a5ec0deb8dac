"""NaN/Inf debugging (``gj.debug_nans``): the first operation producing NaN or Inf, forward or reverse.

Each error must name the operation (for the reverse sweep: the forward operation whose gradient
rule produced the value) and the user's source line, here a line of this file.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys

import numpy as np
import pytest

import gradjit as gj
from gradjit import tracing
from gradjit.errors import GradjitError


@pytest.fixture(autouse=True)
def _quiet_and_restored():
    """NumPy's divide warnings are expected here; debug mode is off again after each test."""
    before = gj.config.debug_nans
    with np.errstate(all="ignore"):
        yield
    gj.set_debug_nans(before)


def line_of(fn, text: str) -> str:
    """``file:line`` of the line of ``fn``'s source that contains ``text``."""
    lines, first = inspect.getsourcelines(fn)
    for k, line in enumerate(lines):
        if text in line:
            return f"{fn.__code__.co_filename}:{first + k}"
    raise AssertionError(f"{text!r} not in the source of {fn.__name__}")


def f_log(x):
    return np.sum(np.log(x))


def f_div(x):
    y = x * 2.0
    return y / y


def f_sqrt(x):
    return np.sqrt(x) + x


def f_pow(x):
    return x**1.5


# ---------------------------------------------------------------------------------------------
# Forward
# ---------------------------------------------------------------------------------------------
def test_log_of_zero_names_log_and_the_line() -> None:
    with gj.debug_nans(), pytest.raises(gj.NonFiniteError) as e:
        gj.grad(f_log)(np.array([1.0, 2.0, 0.0]))
    msg = str(e.value)
    assert msg.startswith("log: produced -inf from finite inputs: log(0.0) (first at index (2,))")
    assert line_of(f_log, "np.log(x)") + ": return np.sum(np.log(x))" in msg
    assert isinstance(e.value, FloatingPointError) and isinstance(e.value, GradjitError)
    assert e.value.sweep == "forward" and e.value.origin is None and e.value.eqn.prim.name == "log"


def test_zero_over_zero_names_div() -> None:
    with (
        gj.debug_nans(),
        pytest.raises(gj.NonFiniteError, match=r"^div: produced nan from finite inputs: div\(0.0, 0.0\)") as e,
    ):
        gj.grad(f_div)(0.0)
    assert line_of(f_div, "y / y") in str(e.value)


def test_forward_is_checked_without_grad_and_at_every_nesting_level() -> None:
    with gj.debug_nans():
        with pytest.raises(gj.NonFiniteError, match="^log: produced -inf"):
            gj.make_wengert(f_log)(np.zeros(2))
        with pytest.raises(gj.NonFiniteError, match="^log: produced -inf") as e:
            gj.grad(gj.grad(lambda x: f_log(x) * x))(0.0)
        assert line_of(f_log, "np.log(x)") in str(e.value)


def test_inputs_already_nan_are_reported_as_such() -> None:
    with gj.debug_nans(), pytest.raises(gj.NonFiniteError) as e:
        gj.grad(lambda x: np.sum(np.sin(x)))(np.array([0.0, np.nan]))
    msg = str(e.value)
    assert msg.startswith("sin: its result contains nan because argument 0 was already not finite")
    assert "input 0 (v0) of the traced function, which already contained nan when passed in" in msg
    assert "produced" not in msg.splitlines()[0]


def test_a_captured_constant_with_inf_is_reported_as_such() -> None:
    table = np.array([1.0, np.inf])
    with gj.debug_nans(), pytest.raises(gj.NonFiniteError, match="a constant of the trace .* already contains inf"):
        gj.grad(lambda x: np.sum(x * table))(np.ones(2))


def test_non_finite_values_masked_out_do_not_stop() -> None:
    def f(x):
        safe = np.where(x > 0.0, x, 1.0)  # nan > 0 is False: the nan never reaches the result
        return np.sum(np.log(safe))

    x = np.array([np.nan, 2.0])
    with gj.debug_nans():
        g = gj.grad(f)(x)
    np.testing.assert_allclose(g, [0.0, 0.5])


# ---------------------------------------------------------------------------------------------
# Reverse sweep
# ---------------------------------------------------------------------------------------------
def test_gradient_of_sqrt_at_zero_names_sqrt_and_its_line() -> None:
    with gj.debug_nans(), pytest.raises(gj.NonFiniteError) as e:
        gj.grad(f_sqrt)(0.0)  # the forward pass is finite: sqrt(0) = 0
    msg = str(e.value)
    assert msg.startswith("gradient of 'sqrt': the gradient with respect to argument 0 is inf at sqrt(0.0)")
    assert line_of(f_sqrt, "np.sqrt(x)") in msg
    assert e.value.sweep == "reverse" and e.value.eqn.prim.name == "sqrt"


def test_gradient_of_log_in_an_array_names_the_element() -> None:
    def f(x):
        return np.sum(np.log(x + 1.0))

    with gj.debug_nans(), pytest.raises(gj.NonFiniteError) as e:
        gj.grad(f)(np.array([[1.0, -1.0]]))  # log(0): forward -inf first
    assert str(e.value).startswith("log: produced -inf from finite inputs: log(0.0) (first at index (0, 1))")


def test_second_derivative_inf_inside_the_inner_reverse_sweep() -> None:
    # grad(grad(f)): the inner VJP rule of sqrt (0.5 * g / ans) runs traced by the outer grad.
    with gj.debug_nans(), pytest.raises(gj.NonFiniteError) as e:
        gj.grad(gj.grad(f_sqrt))(0.0)
    msg = str(e.value)
    assert msg.startswith("gradient of 'sqrt': in the reverse sweep, 'div' (an operation of its VJP rule) produced inf")
    assert line_of(f_sqrt, "np.sqrt(x)") in msg
    assert e.value.sweep == "reverse" and e.value.origin.prim.name == "sqrt" and e.value.eqn.prim.name == "div"


def test_second_derivative_inf_in_the_outer_reverse_sweep() -> None:
    # (x**1.5)' = 1.5 x**0.5 is finite at 0; differentiating the inner sweep's pow gives inf.
    with gj.debug_nans(), pytest.raises(gj.NonFiniteError) as e:
        gj.grad(gj.grad(f_pow))(0.0)
    msg = str(e.value)
    assert msg.startswith("gradient of 'pow': the gradient with respect to argument 0 is inf")
    assert "is itself an operation of the VJP rule of 'pow'" in msg
    assert line_of(f_pow, "x**1.5") in msg


def test_make_wengert_of_grad_checks_the_recorded_reverse_sweep() -> None:
    with gj.debug_nans(), pytest.raises(gj.NonFiniteError, match="^gradient of 'sqrt': in the reverse sweep"):
        gj.make_wengert(gj.grad(f_sqrt))(0.0)


def test_fan_out_sum_that_overflows() -> None:
    def f(x):
        return 1e308 * x + 1e308 * x  # each contribution to x's gradient is 1e308; their sum is inf

    with (
        gj.debug_nans(),
        pytest.raises(gj.NonFiniteError, match=r"gradient of v0 \(used more than once\) overflowed to inf"),
    ):
        gj.grad(f)(1e-300)


def test_vjp_with_a_nan_cotangent() -> None:
    _, pullback = gj.vjp(np.sin, np.ones(2))
    with gj.debug_nans(), pytest.raises(gj.NonFiniteError, match="cotangent it starts from contains nan"):
        pullback(np.array([1.0, np.nan]))


# ---------------------------------------------------------------------------------------------
# The setting
# ---------------------------------------------------------------------------------------------
@pytest.mark.skipif(os.environ.get("GRADJIT_DEBUG_NANS"), reason="debug mode switched on by the environment")
def test_off_by_default_records_nothing_and_lets_inf_through() -> None:
    assert gj.config.debug_nans is False and tracing._DEBUG is None
    assert gj.grad(f_sqrt)(0.0) == np.inf
    wl = gj.make_wengert(gj.grad(f_sqrt))(1.0)
    assert all(e.where is None for e in wl.eqns)  # the stack is never walked when off


def test_context_manager_setting_and_decorator_restore() -> None:
    gj.set_debug_nans(False)
    with gj.debug_nans():
        assert gj.config.debug_nans
        with gj.debug_nans(False):
            assert gj.grad(f_sqrt)(0.0) == np.inf
        assert gj.config.debug_nans
    assert not gj.config.debug_nans
    gj.config.debug_nans = True
    with pytest.raises(gj.NonFiniteError):
        gj.grad(f_sqrt)(0.0)
    gj.config.debug_nans = False

    @gj.debug_nans()
    def checked(x):
        return gj.grad(f_sqrt)(x)

    with pytest.raises(gj.NonFiniteError):
        checked(0.0)
    assert not gj.config.debug_nans and repr(gj.config) == "gradjit.config(debug_nans=False)"


def test_environment_variable_switches_it_on() -> None:
    code = "import gradjit; print(gradjit.config.debug_nans)"
    env = dict(os.environ, GRADJIT_DEBUG_NANS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_debug_mode_changes_no_values_and_records_source_lines() -> None:
    def f(x):
        h = np.tanh(x @ np.ones((3, 2)))
        return np.sum(h * h) + np.max(x)

    x = np.array([0.3, -0.2, 0.5])
    plain = gj.grad(f)(x)
    with gj.debug_nans():
        checked = gj.grad(f)(x)
        wl = gj.make_wengert(gj.grad(f))(x)
    np.testing.assert_array_equal(plain, checked)
    tanh = next(e for e in wl.eqns if e.prim.name == "tanh")
    assert tanh.where.startswith(line_of(f, "np.tanh"))
    # Reverse-sweep equations are placed at the forward operation whose rule emitted them.
    rev = [e for e in wl.eqns if wl.sweep_depth(e)]
    assert rev and all(e.where and e.origin is not None for e in rev)
    assert "source" in wl._repr_html_()
