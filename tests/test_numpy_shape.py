"""Array manipulation on traced values (``gradjit.numpy_shape``) and index assignment.

Each row of ``ROWS`` is a function of one float array. For every row:

- the forward values recorded while tracing, and those of the reference executor re-running the
  Wengert list, equal plain NumPy's exactly (same shapes, dtypes and bits);
- the value of ``sum(f(x) * w)`` (a fixed random weight per output) under ``value_and_grad`` equals
  NumPy's, and ``check_grads`` passes to second order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import gradjit as gj
from gradjit import kernels

C23 = np.arange(6.0).reshape(2, 3) / 7.0
C3 = np.array([0.5, -1.0, 2.0])
C31 = np.array([[1.0], [-2.0], [0.25]])


def _copy_then(mutate: Callable[[Any], None]) -> Callable[[Any], Any]:
    """``f(x)`` that copies ``x``, mutates the copy in place, and returns it (works on NumPy too)."""

    def f(x: Any) -> Any:
        y = x.copy()
        mutate(y)
        return y

    return f


def _set(idx: Any, value: Any) -> Callable[[Any], None]:
    def mutate(y: Any) -> None:
        y[idx] = value(y) if callable(value) else value

    return mutate


def _iadd_dup(y: Any) -> None:
    y[[0, 0]] += y[1:3] * 2.0  # NumPy: duplicates do not accumulate, the last write wins


def _iadd_tail(y: Any) -> None:
    y[1:] += y[:-1] * 0.5


def _imul_col(y: Any) -> None:
    y[:, 1] *= 3.0


def _mask_zero(y: Any) -> None:
    y[y > 0] = 0.0


def _nested_view(y: Any) -> None:
    row = y[1]
    row[::2] = row[::2] * 4.0


def _sort_inplace(x: Any) -> Any:
    y = x * 1.0
    y.sort(axis=0)
    return y


# (id, function, input shape)
ROWS = [
    # axes
    ("moveaxis", lambda x: np.moveaxis(x, 0, -1), (2, 3, 4)),
    ("moveaxis-multi", lambda x: np.moveaxis(x, [0, 1], [-1, 0]), (2, 3, 4)),
    ("swapaxes-neg", lambda x: np.swapaxes(x, -1, 0), (2, 3, 4)),
    ("swapaxes-method", lambda x: x.swapaxes(0, 1), (2, 3)),
    ("ravel", lambda x: np.ravel(x), (2, 3)),
    ("ravel-F", lambda x: np.ravel(x, order="F"), (2, 3)),
    ("flatten", lambda x: x.flatten(), (2, 3)),
    ("squeeze", lambda x: np.squeeze(x), (1, 3, 1)),
    ("squeeze-axis", lambda x: np.squeeze(x, axis=-1), (1, 3, 1)),
    ("squeeze-method", lambda x: x.squeeze(0), (1, 3, 1)),
    ("expand_dims", lambda x: np.expand_dims(x, (0, -1)), (2, 3)),
    ("atleast_1d-scalar", lambda x: np.atleast_1d(x), ()),
    ("atleast_1d-many", lambda x: np.atleast_1d(x[0, 0], x), (2, 3)),
    ("atleast_2d", lambda x: np.atleast_2d(x), (3,)),
    ("atleast_3d-1d", lambda x: np.atleast_3d(x), (3,)),
    ("atleast_3d-2d", lambda x: np.atleast_3d(x), (2, 3)),
    ("broadcast_arrays", lambda x: np.broadcast_arrays(x, C31), (1, 3)),
    # joining and splitting
    ("split-sections", lambda x: np.split(x, 2, axis=1), (2, 4)),
    ("split-indices", lambda x: np.split(x, [1, 3], axis=-1), (2, 4)),
    ("split-unordered", lambda x: np.split(x, [3, 1, 10]), (4, 2)),
    ("array_split", lambda x: np.array_split(x, 3), (7, 2)),
    ("hsplit", lambda x: np.hsplit(x, 2), (2, 4)),
    ("vsplit", lambda x: np.vsplit(x, [1]), (3, 2)),
    ("dsplit", lambda x: np.dsplit(x, 2), (2, 1, 4)),
    ("unstack", lambda x: np.unstack(x, axis=1), (2, 3)),
    ("hstack-1d", lambda x: np.hstack([x, C3, x[:1]]), (3,)),
    ("hstack-const-first", lambda x: np.hstack([C3, x]), (3,)),
    ("hstack-2d", lambda x: np.hstack([x, C23, x * 2.0]), (2, 3)),
    ("vstack-1d", lambda x: np.vstack([x, C3]), (3,)),
    ("vstack-2d", lambda x: np.vstack([x, C23]), (2, 3)),
    ("dstack", lambda x: np.dstack([x, C23]), (2, 3)),
    ("column_stack", lambda x: np.column_stack([x[0], C23, x[1]]), (2, 2)),
    ("concatenate-none", lambda x: np.concatenate([x, C23], axis=None), (2, 3)),
    ("append-flat", lambda x: np.append(x, C3), (2, 2)),
    ("append-axis", lambda x: np.append(x, C23, axis=0), (1, 3)),
    # tile, repeat, flip, roll, rot90
    ("tile-int", lambda x: np.tile(x, 2), (2, 3)),
    ("tile-tuple", lambda x: np.tile(x, (2, 1)), (2, 3)),
    ("tile-more-reps", lambda x: np.tile(x, (2, 1, 2)), (2, 3)),
    ("tile-scalar", lambda x: np.tile(x, 3), ()),
    ("repeat-none", lambda x: np.repeat(x, 2), (2, 3)),
    ("repeat-axis", lambda x: np.repeat(x, 3, axis=-1), (2, 2)),
    ("repeat-per-element", lambda x: np.repeat(x, [1, 0, 2], axis=0), (3, 2)),
    ("repeat-len1", lambda x: np.repeat(x, [2], axis=1), (2, 2)),
    ("repeat-method", lambda x: x.repeat(2, axis=1), (2, 2)),
    ("flip-all", lambda x: np.flip(x), (2, 3)),
    ("flip-axis", lambda x: np.flip(x, 1), (2, 3)),
    ("flip-axes", lambda x: np.flip(x, (0, -1)), (2, 3, 2)),
    ("fliplr", lambda x: np.fliplr(x), (2, 3)),
    ("flipud", lambda x: np.flipud(x), (2, 3)),
    ("roll-flat", lambda x: np.roll(x, 1), (2, 3)),
    ("roll-axis", lambda x: np.roll(x, -2, axis=1), (2, 3)),
    ("roll-tuple", lambda x: np.roll(x, (1, 2), axis=(0, 1)), (2, 3)),
    ("roll-repeated-axis", lambda x: np.roll(x, (1, 1), axis=(1, 1)), (2, 3)),
    ("roll-large", lambda x: np.roll(x, 7, axis=-1), (2, 3)),
    ("rot90", lambda x: np.rot90(x), (2, 3)),
    ("rot90-k2", lambda x: np.rot90(x, 2), (2, 3)),
    ("rot90-k3", lambda x: np.rot90(x, 3), (2, 3)),
    ("rot90-kneg", lambda x: np.rot90(x, -1, axes=(1, 0)), (2, 3)),
    ("rot90-axes", lambda x: np.rot90(x, 1, axes=(1, 2)), (2, 3, 2)),
    # diagonals, triangles, trace
    ("diag-1d", lambda x: np.diag(x), (3,)),
    ("diag-1d-k", lambda x: np.diag(x, 2), (3,)),
    ("diag-1d-kneg", lambda x: np.diag(x, -1), (3,)),
    ("diag-2d", lambda x: np.diag(x), (3, 4)),
    ("diag-2d-k", lambda x: np.diag(x, 1), (3, 4)),
    ("diag-2d-kneg", lambda x: np.diag(x, -2), (3, 4)),
    ("diagonal-offset", lambda x: np.diagonal(x, 1), (3, 4)),
    ("diagonal-axes", lambda x: np.diagonal(x, 0, 1, 2), (2, 3, 3)),
    ("diagonal-neg-axes", lambda x: np.diagonal(x, -1, axis1=-1, axis2=0), (3, 2, 4)),
    ("diagonal-method", lambda x: x.diagonal(), (3, 3)),
    ("trace", lambda x: np.trace(x), (3, 3)),
    ("trace-offset", lambda x: np.trace(x, 1), (3, 4)),
    ("trace-axes", lambda x: np.trace(x, 0, 0, 2), (3, 2, 3)),
    ("trace-method", lambda x: x.trace(), (3, 3)),
    ("triu", lambda x: np.triu(x), (3, 4)),
    ("triu-k", lambda x: np.triu(x, 1), (3, 4)),
    ("triu-batch", lambda x: np.triu(x, -1), (2, 3, 3)),
    ("tril", lambda x: np.tril(x), (3, 4)),
    ("tril-kneg", lambda x: np.tril(x, -1), (4, 3)),
    ("tril-1d", lambda x: np.tril(x), (3,)),
    # pad, every mode
    ("pad-constant", lambda x: np.pad(x, 1), (2, 3)),
    ("pad-constant-values", lambda x: np.pad(x, ((1, 2), (0, 3)), constant_values=((1.5, 2.0), (3.0, -4.0))), (2, 3)),
    ("pad-constant-traced", lambda x: np.pad(x[1:], (2, 1), constant_values=x[0, 0]), (3, 2)),
    ("pad-dict", lambda x: np.pad(x, {1: (1, 2)}), (2, 3)),
    ("pad-edge", lambda x: np.pad(x, ((2, 1), (1, 0)), mode="edge"), (2, 3)),
    ("pad-reflect", lambda x: np.pad(x, 2, mode="reflect"), (3, 4)),
    ("pad-reflect-wide", lambda x: np.pad(x, (5, 7), mode="reflect"), (3,)),
    ("pad-reflect-odd", lambda x: np.pad(x, (2, 1), mode="reflect", reflect_type="odd"), (3, 4)),
    ("pad-reflect-odd-wide", lambda x: np.pad(x, (5, 7), mode="reflect", reflect_type="odd"), (3,)),
    ("pad-symmetric-odd-wide", lambda x: np.pad(x, ((4, 1), (0, 6)), mode="symmetric", reflect_type="odd"), (2, 3)),
    ("pad-symmetric", lambda x: np.pad(x, ((1, 2), (2, 1)), mode="symmetric"), (3, 4)),
    ("pad-symmetric-wide", lambda x: np.pad(x, 5, mode="symmetric"), (2, 3)),
    ("pad-symmetric-odd", lambda x: np.pad(x, 2, mode="symmetric", reflect_type="odd"), (3,)),
    ("pad-wrap", lambda x: np.pad(x, ((1, 2), (3, 0)), mode="wrap"), (2, 3)),
    ("pad-wrap-wide", lambda x: np.pad(x, 7, mode="wrap"), (2, 3)),
    ("pad-maximum", lambda x: np.pad(x, 2, mode="maximum"), (3, 4)),
    ("pad-minimum-stat", lambda x: np.pad(x, ((1, 2), (1, 1)), mode="minimum", stat_length=2), (3, 4)),
    ("pad-mean", lambda x: np.pad(x, (1, 2), mode="mean", stat_length=((2, 3), (1, 4))), (3, 4)),
    # sort, take, take_along_axis
    ("sort", lambda x: np.sort(x), (3, 4)),
    ("sort-axis0", lambda x: np.sort(x, axis=0), (3, 4)),
    ("sort-none", lambda x: np.sort(x, axis=None), (3, 4)),
    ("sort-stable", lambda x: np.sort(x, kind="stable"), (5,)),
    ("sort-method", _sort_inplace, (3, 2)),
    ("take-dups", lambda x: np.take(x, [2, 0, 2], axis=1), (2, 3)),
    ("take-flat", lambda x: np.take(x, [[0, 5], [5, 1]]), (2, 3)),
    ("take-scalar", lambda x: np.take(x, -1, axis=0), (2, 3)),
    ("take-wrap", lambda x: np.take(x, [4, -4], axis=1, mode="wrap"), (2, 3)),
    ("take-clip", lambda x: np.take(x, [7, -2, 1], mode="clip"), (2, 3)),
    ("take-traced-indices", lambda x: np.take(x, np.argsort(x, axis=None)[:3]), (2, 3)),
    ("take-method", lambda x: x.take([1, 1], axis=0), (2, 3)),
    ("take_along_axis", lambda x: np.take_along_axis(x, np.array([[2, 0, 2, 1]]), axis=0), (3, 4)),
    ("take_along_axis-bcast", lambda x: np.take_along_axis(x, np.array([[1], [0]]), axis=-1), (2, 3)),
    ("take_along_axis-argsort", lambda x: np.take_along_axis(x, np.argsort(-x, axis=1), axis=1), (2, 3)),
    ("take_along_axis-none", lambda x: np.take_along_axis(x, np.array([4, 0, 4]), axis=None), (2, 3)),
    # diff, average
    ("diff", lambda x: np.diff(x), (2, 4)),
    ("diff-n2-axis0", lambda x: np.diff(x, n=2, axis=0), (4, 2)),
    ("diff-prepend", lambda x: np.diff(x, prepend=0.5), (2, 3)),
    ("diff-append", lambda x: np.diff(x, axis=0, append=C23[:1]), (2, 3)),
    ("average", lambda x: np.average(x), (2, 3)),
    ("average-axis", lambda x: np.average(x, axis=-1), (2, 3)),
    ("average-weights", lambda x: np.average(x, weights=C23 + 1.0), (2, 3)),
    ("average-1d-weights", lambda x: np.average(x, axis=0, weights=C3[:2] ** 2), (2, 3)),
    ("average-traced-weights", lambda x: np.average(C23, axis=1, weights=np.exp(x)), (3,)),
    ("average-returned", lambda x: np.average(x, axis=1, weights=C23 + 1.0, returned=True), (2, 3)),
    ("average-returned-unweighted", lambda x: np.average(x, axis=0, returned=True), (2, 3)),
    ("average-keepdims", lambda x: np.average(x, axis=0, keepdims=True), (2, 3)),
    # indexing on traced arrays
    ("getitem-int-array", lambda x: x[[2, 0, 2]], (3, 2)),
    ("getitem-bool-const", lambda x: x[np.array([True, False, True])], (3, 2)),
    ("getitem-bool-traced", lambda x: x[x > 0], (3, 2)),
    ("getitem-newaxis", lambda x: x[..., None], (3, 2)),
    ("getitem-column", lambda x: x[:, 1], (3, 2)),
    ("getitem-mixed", lambda x: x[None, ::-1, [1, 0, 1]], (2, 3)),
    # index assignment on traced arrays (recorded functionally)
    ("setitem-row", _copy_then(_set(1, lambda y: y[0] * 2.0)), (3, 2)),
    ("setitem-mask", _copy_then(_mask_zero), (3, 2)),
    ("setitem-int-array", _copy_then(_set([0, 2], 1.0)), (3, 2)),
    ("setitem-dup-traced", _copy_then(_set([0, 0], lambda y: y[1:3])), (3, 2)),
    ("iadd-slice", _copy_then(_iadd_tail), (3, 2)),
    ("iadd-dup-index", _copy_then(_iadd_dup), (3, 2)),
    ("imul-column", _copy_then(_imul_col), (3, 2)),
    ("setitem-nested-view", _copy_then(_nested_view), (3, 4)),
]


def _input(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    # Well-separated values, so sort/mask/max stay put under finite-difference steps.
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape, dtype=np.int64))
    x = (rng.permutation(n) - n / 2 + 0.25) / max(n, 1) * 3.0 + rng.uniform(-0.05, 0.05, n)
    return x.reshape(shape)


def _leaves(out: Any) -> list:
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _weights(expected: list) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.standard_normal(np.shape(e)) for e in expected]


def _loss(fn: Callable, w: list) -> Callable:
    def loss(x: Any) -> Any:
        outs = _leaves(fn(x))
        return sum(np.sum(o * wi) for o, wi in zip(outs, w, strict=True))

    return loss


def _assert_same(got: Any, expected: Any, what: str) -> None:
    got = np.asarray(got)
    expected = np.asarray(expected)
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != NumPy's {expected.shape}"
    assert got.dtype == expected.dtype, f"{what}: dtype {got.dtype} != NumPy's {expected.dtype}"
    assert np.array_equal(got, expected, equal_nan=True), f"{what}: {got} != NumPy's {expected}"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("fn", "shape"), [pytest.param(f, s, id=i) for i, f, s in ROWS])
def test_forward_matches_numpy(fn: Callable, shape: tuple[int, ...], dtype: type) -> None:
    x = _input(shape).astype(dtype)
    expected = _leaves(fn(x.copy()))
    wl = gj.make_wengert(fn)(x)
    recorded = [o.value for o in wl.outputs]
    assert len(recorded) == len(expected)
    for got, e in zip(recorded, expected, strict=True):
        _assert_same(got, e, "traced value")
    for got, e in zip(kernels.run(wl, x), expected, strict=True):
        _assert_same(got, e, "reference executor")
    loss = _loss(fn, _weights(expected))
    value, g = gj.value_and_grad(loss)(x)
    assert value == loss(x.copy())
    assert g.shape == x.shape


@pytest.mark.parametrize(("fn", "shape"), [pytest.param(f, s, id=i) for i, f, s in ROWS])
def test_grads_second_order(fn: Callable, shape: tuple[int, ...]) -> None:
    x = _input(shape)
    gj.check_grads(_loss(fn, _weights(_leaves(fn(x.copy())))), x, order=2)


def test_duplicate_index_assignment_gradient_is_last_write() -> None:
    # y[[0, 0]] = v writes v[1] last: v[0] has no effect on the result, so gets no gradient.
    def f(v: Any) -> Any:
        y = np.zeros((3,)) * v[0]
        y[[0, 0]] = v
        return np.sum(y * np.array([1.0, 2.0, 3.0]))

    assert f(np.array([5.0, 7.0])) == 7.0
    np.testing.assert_array_equal(gj.grad(f)(np.array([5.0, 7.0])), [0.0, 1.0])


def test_take_duplicates_accumulate_gradient() -> None:
    g = gj.grad(lambda x: np.sum(np.take(x, [0, 2, 0, 0])))(np.arange(3.0))
    np.testing.assert_array_equal(g, [3.0, 0.0, 1.0])


def test_repeat_gradient_sums_copies() -> None:
    g = gj.grad(lambda x: np.sum(np.repeat(x, [1, 0, 3]) * 2.0))(np.arange(3.0))
    np.testing.assert_array_equal(g, [2.0, 0.0, 6.0])


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: np.argsort(x),
        lambda x: np.argsort(x, axis=0),
        lambda x: np.argsort(x, axis=None),
        lambda x: x.argsort(kind="stable"),
        lambda x: np.argsort(np.round(x), kind="stable"),  # ties: stable order, like NumPy
    ],
)
def test_argsort_gives_integer_indices(fn: Callable) -> None:
    x = _input((3, 4))
    expected = fn(x)
    wl = gj.make_wengert(fn)(x)
    _assert_same(wl.outputs[0].value, expected, "traced argsort")
    _assert_same(kernels.run(wl, x)[0], expected, "reference executor")
    assert expected.dtype.kind == "i"


def test_shape_arguments_from_integer_tracers_are_guarded() -> None:
    # A repeat count computed from the data becomes a guard of the list, not a silent constant.
    def f(x: Any) -> Any:
        return np.repeat(x, np.sum(x > 1.0))

    wl = gj.make_wengert(f)(np.arange(3.0))
    assert [g.observed for g in wl.guards] == [1]
    _assert_same(kernels.run(wl, np.array([2.0, 0.0, 1.0]))[0], [2.0, 0.0, 1.0], "same count")
    with pytest.raises(kernels.reference.GuardFailure):
        kernels.run(wl, np.array([5.0, 5.0, 5.0]))
    np.testing.assert_array_equal(gj.grad(lambda x: np.sum(f(x) ** 2))(np.arange(3.0) * 2.0), [0.0, 8.0, 16.0])


@pytest.mark.parametrize(
    ("fn", "match"),
    [
        (lambda x: np.sort(x, order="a"), "order="),
        (lambda x: np.argsort(x, order="a"), "order="),
        (lambda x: np.pad(x, 1, mode="median"), "median"),
        (lambda x: np.pad(x, 1, mode="linear_ramp"), "linear_ramp"),
        (lambda x: np.pad(x, 1, mode=lambda v, w, i, k: None), "callable"),
        (lambda x: np.take(x, [0], out=np.zeros(1)), "out="),
        (lambda x: np.trace(x, out=np.zeros(())), "out="),
    ],
)
def test_unsupported_arguments_raise(fn: Callable, match: str) -> None:
    with pytest.raises(gj.UnsupportedOperationError, match=match):
        gj.grad(lambda x: np.sum(fn(x)))(_input((2, 3)))


@pytest.mark.parametrize(
    ("fn", "error"),
    [
        (lambda x: np.split(x, 4), ValueError),
        (lambda x: np.moveaxis(x, 0, 5), np.exceptions.AxisError),
        (lambda x: np.swapaxes(x, 0, 2), np.exceptions.AxisError),
        (lambda x: np.expand_dims(x, (0, 0)), ValueError),
        (lambda x: np.pad(x, -1), ValueError),
        (lambda x: np.pad(x, 1, mode="edge", constant_values=1.0), ValueError),
        (lambda x: np.repeat(x, [1, 2]), ValueError),
        (lambda x: np.take(x, [9]), IndexError),
        (lambda x: np.fliplr(x[0]), ValueError),
        (lambda x: np.diff(x, n=-1), ValueError),
        (lambda x: np.average(x, weights=np.zeros((2, 3))), ZeroDivisionError),
    ],
)
def test_invalid_arguments_raise_like_numpy(fn: Callable, error: type) -> None:
    x = _input((2, 3))
    with pytest.raises(error):
        fn(x)  # NumPy itself
    with pytest.raises(error):
        gj.grad(lambda x: np.sum(fn(x)))(x)
