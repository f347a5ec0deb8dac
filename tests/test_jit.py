"""``gradjit.jit``: traced once per signature, replayed with guards, never stale.

Every jitted call is compared with the un-jitted function on the same arguments (values, pytree
structure and Python types). The guard tests cover each way a stored variant can stop describing
the function: a branch that flips, a loop trip count, an ``int()`` of a traced value, a boolean-mask
count, a new shape, a new dtype, a new static argument, captured arrays changed in place or rebound,
captured scalars changed, and the variant cap with its warning. ``stats`` tells hits (the Python
function did not run) from traces; a side-effect counter checks the same thing from the outside.
"""

from __future__ import annotations

import collections
import subprocess
import sys
import warnings

import numpy as np
import pytest

import gradjit as gj
from gradjit.jit import JitOutputError, Jitted, VariantLimitWarning, jit


def assert_same(got, want, py_float_as_f64: bool = False) -> None:
    """Same pytree structure, same Python types and dtypes, same values.

    ``py_float_as_f64``: a Python ``float`` the un-jitted function computed with Python arithmetic
    on float arguments may come back as ``np.float64`` (a float subclass, the same value): traced,
    ``a + b * c`` is NumPy arithmetic, and jit cannot tell it from ``np.add(a, b * c)``.
    """
    if py_float_as_f64 and type(want) is float and type(got) is np.float64:
        assert got == pytest.approx(want, rel=1e-13, abs=1e-15)
        return
    assert type(got) is type(want), (type(got), type(want))
    if isinstance(want, dict):
        assert got.keys() == want.keys()
        for k in want:
            assert_same(got[k], want[k], py_float_as_f64)
    elif isinstance(want, (tuple, list)):
        assert len(got) == len(want)
        for a, b in zip(got, want):
            assert_same(a, b, py_float_as_f64)
    elif isinstance(want, (np.ndarray, np.generic)):
        assert got.dtype == want.dtype and np.shape(got) == np.shape(want)
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-13, abs=1e-15)
    else:
        assert got == want


def check_calls(fn, jitted, arg_list, py_float_as_f64: bool = False) -> None:
    for args in arg_list:
        assert_same(jitted(*args), fn(*args), py_float_as_f64)


# ---------------------------------------------------------------------------------------------
# The talk's branch example, jit(grad), value_and_grad, counting Python runs
# ---------------------------------------------------------------------------------------------
def f_branch(a, b, c):
    if b > c:
        return a * np.sin(b)
    return a + b * c


def test_later_calls_do_not_run_the_python_function() -> None:
    runs = []

    def f(x):
        runs.append(1)
        return np.sum(np.tanh(x) * x)

    jf = jit(f)
    x = np.linspace(-1.0, 1.0, 5)
    assert_same(jf(x), f(x))
    assert len(runs) == 2  # jf's trace and f's own call
    for k in range(5):
        assert_same(jf(x + k), np.sum(np.tanh(x + k) * (x + k)))
    assert len(runs) == 2
    assert jf.stats["hits"] == 5 and jf.stats["traces"] == 1
    assert "side effect" in jf.explain()  # `runs` changed while tracing: not replayed, not checked

    count = 0

    def g(x):
        nonlocal count
        count += 1
        return x * 2.0

    jg = jit(g)
    assert [jg(1.0), jg(2.0), jg(3.0)] == [2.0, 4.0, 6.0] and count == 1


def test_jit_grad_of_the_branch_example_flips_and_is_never_stale() -> None:
    df = gj.grad(f_branch, argnums=(0, 1, 2))
    jdf = jit(df)
    calls = [(3.5, 2.1, 1.1), (3.5, 1.1, 2.1), (3.0, 2.0, 1.0), (3.0, 1.0, 2.0), (1.0, 5.0, -1.0), (2.0, -5.0, 1.0)]
    check_calls(df, jdf, calls)
    assert jdf(3.5, 2.1, 1.1) == pytest.approx((np.sin(2.1), 3.5 * np.cos(2.1), 0.0))
    assert jdf.stats["traces"] == 2  # one variant per side of the branch
    assert jdf.stats["retraces"] == 1 and jdf.stats["hits"] == 5
    assert type(jdf(3.5, 2.1, 1.1)[0]) is float  # grad's float-in, float-out holds under jit


def test_jit_of_the_branch_function_itself() -> None:
    jf = jit(f_branch)
    check_calls(f_branch, jf, [(3.5, 2.1, 1.1), (3.5, 1.1, 2.1), (3.5, 2.5, 1.1), (3.5, 0.5, 1.1)], True)
    assert jf(3.5, 2.1, 1.1) == pytest.approx(3.0212327832711, abs=1e-12)
    assert jf.stats["traces"] == 2


def test_jit_value_and_grad_with_argnums_and_has_aux() -> None:
    vg = gj.value_and_grad(f_branch, argnums=(0, 1))
    check_calls(vg, jit(vg), [(3.0, 2.0, 1.0), (3.0, 1.0, 2.0), (2.0, 2.0, 1.0)])

    def loss(w, x):
        r = x @ w
        return np.sum(r * r), {"r": r, "n": 3}

    vga = gj.value_and_grad(loss, has_aux=True)
    w, x = np.array([0.5, -1.0]), np.array([[1.0, 2.0], [3.0, 4.0]])
    jvga = jit(vga)
    check_calls(vga, jvga, [(w, x), (w * 2, x), (w, x + 1)])
    assert jvga.stats["hits"] == 2
    ga = gj.grad(loss, has_aux=True)
    check_calls(ga, jit(ga), [(w, x), (-w, x)])


def test_grad_inside_a_jitted_function_and_grad_of_jit() -> None:
    def step(w, x):
        g = gj.grad(lambda w: np.sum(np.tanh(x @ w) ** 2))(w)
        return w - 0.1 * g

    w, x = np.array([0.3, -0.2]), np.array([[1.0, 2.0], [0.5, -1.0]])
    jstep = jit(step)
    check_calls(step, jstep, [(w, x), (w + 1, x), (w, 2 * x)])
    assert jstep.stats["hits"] == 2

    def f(w):
        return np.sum(np.sin(w) * w)

    # Under an active trace, jit just calls the function: the enclosing grad records it.
    check_calls(gj.grad(f), gj.grad(jit(f)), [(w,), (w * 3,)])
    check_calls(gj.grad(gj.grad(lambda a: a**3)), jit(gj.grad(gj.grad(lambda a: a**3))), [(2.0,), (3.0,)])
    check_calls(f, jit(jit(f)), [(w,), (w + 1,)])
    h = gj.hessian(f)
    jh = jit(h)
    check_calls(h, jh, [(w,), (w * 2,)])
    assert jh.stats["hits"] == 1


def test_pytree_arguments_and_results() -> None:
    Pair = collections.namedtuple("Pair", "first second")

    def f(params, data, scale=2.0):
        h = np.tanh(data["x"] @ params["W"][0] + params["b"])
        out = {"h": h, "pair": Pair(np.sum(h) * scale, [h[0], "tag"]), "none": None}
        return out

    rng = np.random.default_rng(0)
    params = {"W": [rng.standard_normal((3, 2))], "b": np.zeros(2)}
    data = {"x": rng.standard_normal((4, 3))}
    jf = jit(f)
    check_calls(f, jf, [(params, data), (params, {"x": data["x"] * 2})])
    assert_same(jf(params, data, scale=3.0), f(params, data, scale=3.0))
    assert jf.stats["hits"] == 1

    loss = lambda p, d: np.sum(f(p, d)["h"] ** 2)  # noqa: E731
    g = gj.grad(loss)
    jg = jit(g)
    check_calls(g, jg, [(params, data), ({"W": [params["W"][0] + 1], "b": params["b"] - 1}, data)])
    assert jg.stats["hits"] == 1


# ---------------------------------------------------------------------------------------------
# Guards, one kind at a time
# ---------------------------------------------------------------------------------------------
def test_guard_loop_trip_count_changes() -> None:
    def f(x):
        y = x
        while np.sum(y * y) < 100.0:  # the trip count depends on computed values
            y = y * 1.5 + 0.1
        return np.sum(y)

    jf, df, jdf = jit(f), gj.grad(f), jit(gj.grad(f))
    xs = [np.array([1.0, 2.0]), np.array([1.0, 2.0]) * 1.01, np.array([0.5, 0.5]), np.array([1.0, 2.0]), np.ones(2)]
    check_calls(f, jf, [(x,) for x in xs])
    check_calls(df, jdf, [(x,) for x in xs])
    assert jf.stats["hits"] >= 2 and jf.stats["retraces"] >= 1


def test_guard_int_of_a_traced_value() -> None:
    def f(x):
        k = int(np.floor(np.sum(x)))  # a Python int made from a traced value
        return np.sum(x ** (k % 3 + 1)) + k

    jf, df, jdf = jit(f), gj.grad(f), jit(gj.grad(f))
    xs = [np.array([0.5, 0.6]), np.array([0.5, 0.7]), np.array([1.5, 0.7]), np.array([0.1, 0.2]), np.array([2.5, 0.7])]
    check_calls(f, jf, [(x,) for x in xs])
    check_calls(df, jdf, [(x,) for x in xs])
    assert "guard int" in jf.explain()


def test_guard_count_of_a_boolean_mask() -> None:
    def f(x):
        return np.sum(x[x > 0] ** 2)

    jf = jit(f)
    xs = [np.array(v) for v in ([1.0, -1.0, 2.0], [3.0, -1.0, 1.0], [1.0, 1.0, 2.0], [-1.0, -1.0, 2.0])]
    check_calls(f, jf, [(x,) for x in xs])
    check_calls(gj.grad(f), jit(gj.grad(f)), [(x,) for x in xs])
    assert jf.stats["hits"] == 1


def test_integer_array_arguments_are_inputs_and_guarded() -> None:
    def f(x, idx, n):
        total = np.sum(x[idx]) * n
        for i in range(int(idx[0])):  # a Python loop bound read from an integer input
            total = total + x[i]
        return total

    x = np.arange(6.0)
    jf = jit(f)
    calls = [(x, np.array([1, 2]), 2), (x, np.array([1, 4]), 2), (x, np.array([3, 4]), 2), (x, np.array([1, 0]), 3)]
    check_calls(f, jf, calls)
    # A new index array of the same shape is read at the call (no re-trace): only idx[0] is guarded.
    assert jf.stats["hits"] == 1
    check_calls(gj.grad(f), jit(gj.grad(f)), calls)


def test_new_shape_and_new_dtype_are_new_signatures() -> None:
    def f(x):
        return np.sum(np.exp(x) * np.size(x))

    jf = jit(f)
    calls = [
        (np.ones(3),),
        (np.ones(4),),
        (np.ones(3, dtype=np.float32),),
        (np.ones((2, 2)),),
        (np.float32(1.5),),
        (1.5,),
        (np.ones(3) * 2,),
    ]
    check_calls(f, jf, calls)
    assert jf.stats["traces"] == 6 and jf.stats["hits"] == 1
    check_calls(gj.grad(f), jit(gj.grad(f)), calls)
    text = jf.explain()
    assert "f32[3]" in text and "f64[4]" in text and "float64 f64[]" not in text


def test_static_int_argument_is_part_of_the_signature() -> None:
    def f(a, n):
        for _ in range(n):
            a = a * a
        return a

    jf, jdf = jit(f), jit(gj.grad(f))
    check_calls(f, jf, [(3.0, 2), (3.0, 3), (2.0, 2), (2.0, 3)], True)
    assert jdf(3.0, 2) == 108.0 and jdf(3.0, 1) == 6.0 and jdf(3.0, 2) == 108.0  # the talk's loop
    assert jf.stats["hits"] == 2


# ---------------------------------------------------------------------------------------------
# Captured values
# ---------------------------------------------------------------------------------------------
W_GLOBAL = np.array([1.0, 2.0, 3.0])
SCALE = 2.0


def uses_globals(x):
    W2 = W_GLOBAL * SCALE  # computed from a captured array: recorded, not frozen
    if np.sum(W_GLOBAL) > 0:  # control flow on a captured array: guarded
        return np.sum(W2 * x)
    return -np.sum(x)


def test_closure_array_changed_in_place_is_seen() -> None:
    W = np.array([1.0, -2.0, 0.5])

    def f(x):
        W2 = W * 2.0  # a value computed from the closure array: must not be frozen
        return np.sum(W * x) + np.sum(W2 * W2)

    jf, jdf = jit(f), jit(gj.grad(f))
    x = np.array([0.1, 0.2, 0.3])
    assert_same(jf(x), f(x))
    assert_same(jdf(x), gj.grad(f)(x))
    W[0] = 10.0  # in place
    assert_same(jf(x), f(x))
    assert_same(jdf(x), gj.grad(f)(x))
    W[:] = [-1.0, 0.0, 4.0]
    assert_same(jf(x), f(x))
    assert jf.stats["traces"] == 1 and jf.stats["hits"] == 2
    assert "closure variable 'W'" in jf.explain()


def test_global_array_in_place_rebound_and_captured_scalar_changed() -> None:
    global W_GLOBAL, SCALE
    saved = W_GLOBAL.copy(), SCALE
    try:
        jf = jit(uses_globals)
        x = np.array([1.0, 1.0, 2.0])
        assert_same(jf(x), uses_globals(x))
        W_GLOBAL[1] = 5.0  # in place
        assert_same(jf(x), uses_globals(x))
        W_GLOBAL = np.array([-1.0, -2.0, -3.0])  # rebound, and the branch flips
        assert_same(jf(x), uses_globals(x))
        W_GLOBAL = np.array([1.0, 1.0, 1.0, 1.0])  # a new shape of a captured array
        assert_same(jf(np.ones(4)), uses_globals(np.ones(4)))
        SCALE = 3.0  # a captured Python scalar is a constant of the variant: a change re-traces
        assert_same(jf(np.ones(4)), uses_globals(np.ones(4)))
        assert jf.stats["hits"] == 1 and jf.stats["traces"] == 4
        text = jf.explain()
        assert "global 'W_GLOBAL'" in text and "global 'SCALE' of module" in text and "= 3.0" in text
    finally:
        W_GLOBAL, SCALE = saved[0], saved[1]


def test_rebinding_a_helper_function_retraces() -> None:
    def helper(x):
        return np.sin(x)

    def f(x):
        return np.sum(helper(x))

    jf = jit(f)
    x = np.array([0.5, 1.0])
    assert_same(jf(x), f(x))

    def helper(x):  # noqa: F811  (rebinds the closure cell f reads)
        return np.cos(x)

    assert_same(jf(x), f(x))
    assert jf.stats["traces"] == 2


def test_captured_float_array_used_as_plain_data_falls_back_to_snapshots() -> None:
    cfg = np.array([2.0, 0.5])

    def f(x):
        k = float(cfg[0])  # fine on a NumPy array, refused on a traced one: traced with a snapshot
        return np.sum(x**k) * cfg[1]

    jf = jit(f)
    x = np.array([1.0, 3.0])
    assert_same(jf(x), f(x))
    assert_same(jf(x * 2), f(x * 2))
    cfg[0] = 3.0  # in place: the snapshot comparison catches it
    assert_same(jf(x), f(x))
    assert jf.stats["hits"] == 1 and jf.stats["traces"] == 2
    assert "compared with a snapshot" in jf.explain()


def test_attributes_of_captured_objects_are_read_by_reference() -> None:
    class Model:
        def __init__(self):
            self.W = np.array([[1.0, 2.0], [3.0, 4.0]])

        def loss(self, x):
            return np.sum(np.tanh(x @ self.W))

    m = Model()
    jl = jit(m.loss)
    x = np.array([0.1, -0.3])
    assert_same(jl(x), m.loss(x))
    m.W[0, 0] = -5.0  # in place: the constant holds a reference to the array
    assert_same(jl(x), m.loss(x))
    assert "read by reference" in jl.explain()


# ---------------------------------------------------------------------------------------------
# The variant cap and its warning
# ---------------------------------------------------------------------------------------------
def test_variant_cap_warns_once_naming_the_guard_and_stays_correct() -> None:
    def f(x):
        y = x
        while y < 1000.0:  # a trip count that changes at nearly every call
            y = y * 2.0
        return y

    jf, jdf = jit(f, max_variants=3), jit(gj.grad(f), max_variants=3)
    xs = [1.0, 3.0, 5.0, 9.0, 17.0, 33.0, 3.0, 65.0, 1.0]
    with pytest.warns(VariantLimitWarning) as record:
        for x in xs:
            assert_same(jf(x), f(x), py_float_as_f64=True)
            assert_same(jdf(x), gj.grad(f)(x))
    assert len([w for w in record if w.category is VariantLimitWarning]) == 2  # once per function
    msg = str(record[0].message)
    assert "max_variants=3" in msg and "bool guard at" in msg and "while y < 1000.0" in msg and "True, False" in msg
    assert jf.stats["uncompiled"] >= 1
    assert "cap reached" in jf.explain()


def test_variant_cap_on_a_changing_shape_names_the_argument() -> None:
    jf = jit(lambda x: np.sum(x * x), max_variants=2)
    with pytest.warns(VariantLimitWarning, match=r"shape of args\[0\] \(observed \(1,\), \(2,\), \(3,\)"):
        for n in range(1, 6):
            assert jf(np.ones(n)) == float(n)
    assert jf(np.ones(1)) == 1.0 and jf.stats["hits"] == 1


def test_captured_scalar_that_keeps_changing_is_named() -> None:
    state = {"lr": 0.1}

    def f(x):
        return x * state["lr"]

    jf = jit(f, max_variants=2)
    with pytest.warns(VariantLimitWarning, match="closure variable 'state'"):
        for k in range(4):
            state["lr"] = 0.1 * (k + 1)
            assert_same(jf(2.0), f(2.0), py_float_as_f64=True)


# ---------------------------------------------------------------------------------------------
# explain(), errors, settings
# ---------------------------------------------------------------------------------------------
def test_explain_lists_variants_guards_lines_captured_and_constants() -> None:
    offset = np.array([0.5, -0.5])

    def f(x):
        table = np.array([1.0, 2.0])  # made while tracing: a frozen constant of the variant
        if np.sum(x) > 0:
            return np.sum((x + offset) * table)
        return np.sum(x * table)

    jf = jit(f)
    for x in ([1.0, 2.0], [1.0, 3.0], [-1.0, -2.0]):
        x = np.array(x)
        assert_same(jf(x), f(x))
    text = jf.explain()
    assert isinstance(text, str) and repr(text) == str(text)
    assert "3 calls, 1 compiled hits, 2 traces" in text
    assert "signature 1: (f64[2])" in text and "variant 1" in text and "variant 2" in text
    assert "guard bool(" in text and "== True" in text and "== False" in text
    assert "if np.sum(x) > 0:" in text  # the user's source line of the guard
    assert "closure variable 'offset'" in text and "f64[2] array, lifted" in text
    assert "frozen in this variant" in text
    assert "what made calls trace again" in text and "bool guard at" in text


def test_errors_are_those_of_the_unjitted_call() -> None:
    def f(x):
        return np.sum(np.asarray(x))

    with pytest.raises(gj.TracerConversionError, match=r"np.asarray[\s\S]*test_jit.py"):
        jit(f)(np.ones(2))

    def g(a):
        return np.sum(np.linalg.inv(a))

    jg = jit(g)
    assert_same(jg(np.eye(2) * 2), g(np.eye(2) * 2))
    with pytest.raises(np.linalg.LinAlgError):  # raised at replay: the call is redone un-jitted
        jg(np.zeros((2, 2)))
    with pytest.raises(TypeError, match="expected a function"):
        jit(3)
    with pytest.raises(JitOutputError, match=r"jit\(<lambda>\): the function returned a function[\s\S]*test_jit.py"):
        jit(lambda x: gj.vjp(np.sin, x))(np.ones(2))
    with pytest.raises(ValueError, match="max_variants"):
        jit(g, max_variants=0)
    with pytest.raises(ValueError, match="unknown executor 'nope'"):
        jit(g, executor="nope")(np.eye(2))


def test_unhashable_and_complex_arguments_run_uncompiled() -> None:
    def f(x, opts):
        return np.sum(x) * len(opts)

    jf = jit(f)
    assert jf(np.ones(2), {1, 2}) == 4.0  # a set: unhashable, not a pytree container
    assert jit(lambda z: np.sum(z))(np.ones(2, dtype=complex)) == 2.0
    assert jf.stats["uncompiled"] == 1


def test_config_executor_setting_and_environment_variable(monkeypatch) -> None:
    assert gj.config.executor in ("reference", "cpu")
    with pytest.raises(ValueError, match="unknown executor"):
        gj.config.executor = "nope"
    saved = gj.config.executor
    gj.config.executor = "reference"
    try:
        jf = jit(lambda x: x * 2.0)
        assert jf(2.0) == 4.0 and jf(3.0) == 6.0 and "executor 'reference'" in jf.explain()
    finally:
        gj.config.executor = saved
    code = "import gradjit; print(gradjit.config.executor)"
    env = {**__import__("os").environ, "GRADJIT_EXECUTOR": "reference"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "reference"


def test_debug_mode_and_gradient_overrides_bypass_or_key_the_cache() -> None:
    def f(a):
        return np.sum(np.floor(a**3))

    jg = jit(gj.grad(f))
    a = np.eye(2)
    assert_same(jg(a), np.zeros((2, 2)))
    with gj.gradients({np.floor: lambda g, ans, x: g}):  # straight-through floor: another variant
        assert_same(jg(a), 3 * np.eye(2))
    assert_same(jg(a), np.zeros((2, 2)))
    with gj.debug_nans():
        assert_same(jg(a), np.zeros((2, 2)))  # runs un-jitted so every operation is checked
    assert jg.stats["traces"] == 2


def test_jit_as_a_decorator_with_options() -> None:
    @jit(max_variants=2)
    def f(x):
        return x + 1.0

    assert isinstance(f, Jitted) and f.max_variants == 2 and f.__name__ == "f"
    assert f(1.0) == 2.0 and f(2.0) == 3.0 and f.stats["hits"] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert f(np.ones(2)).tolist() == [2.0, 2.0]
