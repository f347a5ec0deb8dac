"""Table-driven tests of contractions and linear algebra (issue 2, item 7): ``einsum``, ``tensordot``,
``dot``, ``matmul``, ``inner``, ``outer``, ``vdot``, ``kron`` and ``numpy.linalg``.

Each row is a function written with plain NumPy and the shapes of its arguments (drawn from a
seeded generator; square matrices are made well conditioned as ``X + n I``). For every row:

- the traced forward value matches plain NumPy's to ``rtol=1e-12`` (shape included);
- ``gj.check_grads`` passes to second order on the output reduced with a fixed random weight,
  ``np.sum(f(*xs) * w)``, so the reverse sweep of the reverse sweep is checked too.

Functions of symmetric matrices (``cholesky``) are tested through ``sym(X) = (X + X.T)/2 + n I``,
so that every finite-difference direction stays in their domain.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import gradjit as gj
from gradjit.numpy_linalg import normalize_subscripts

SQ = "square"  # a shape marker: a well-conditioned square matrix (or a stack of them)


def _mT(x: Any) -> Any:
    return np.swapaxes(x, -1, -2)


def sym(x: Any) -> Any:
    """A symmetric positive definite matrix (stack) from any square one: linear in ``x``."""
    n = x.shape[-1]
    return 0.5 * (x + _mT(x)) + n * np.eye(n)


@dataclass
class Row:
    id: str
    f: Callable[..., Any]
    shapes: tuple
    square: tuple[int, ...] = ()  # argument positions to make well conditioned: x + n I


def row(id: str, f: Callable[..., Any], *shapes: Any, square: tuple[int, ...] = ()) -> Any:
    return pytest.param(Row(id, f, shapes, square), id=id)


EINSUM = [
    row("einsum ij,jk->ik", lambda a, b: np.einsum("ij,jk->ik", a, b), (3, 4), (4, 5)),
    row("einsum ij,ij->", lambda a, b: np.einsum("ij,ij->", a, b), (3, 4), (3, 4)),
    row("einsum ii->", lambda a: np.einsum("ii->", a), (4, 4)),
    row("einsum ii->i", lambda a: np.einsum("ii->i", a), (4, 4)),
    row("einsum ii", lambda a: np.einsum("ii", a), (3, 3)),
    row("einsum iii->i", lambda a: np.einsum("iii->i", a), (3, 3, 3)),
    row("einsum ii,i->i", lambda a, b: np.einsum("ii,i->i", a, b), (3, 3), (3,)),
    row("einsum iij->j", lambda a: np.einsum("iij->j", a), (3, 3, 2)),
    row("einsum ij->j", lambda a: np.einsum("ij->j", a), (3, 4)),
    row("einsum ij->", lambda a: np.einsum("ij->", a), (3, 4)),
    row("einsum ij->ji", lambda a: np.einsum("ij->ji", a), (3, 4)),
    row("einsum ij->ij", lambda a: np.einsum("ij->ij", a), (3, 4)),
    row("einsum i,j->ij", lambda a, b: np.einsum("i,j->ij", a, b), (3,), (4,)),
    row("einsum i,i", lambda a, b: np.einsum("i,i", a, b), (5,), (5,)),
    row("einsum ij,j", lambda a, b: np.einsum("ij,j", a, b), (3, 4), (4,)),
    row("einsum ...ij,...jk->...ik", lambda a, b: np.einsum("...ij,...jk->...ik", a, b), (2, 3, 4), (2, 4, 5)),
    row("einsum ...ij,...jk bcast", lambda a, b: np.einsum("...ij,...jk->...ik", a, b), (2, 1, 3, 4), (3, 4, 2)),
    row("einsum ...ii->...i", lambda a: np.einsum("...ii->...i", a), (2, 3, 3)),
    row("einsum i...->...", lambda a: np.einsum("i...->...", a), (3, 2, 4)),
    row("einsum j... implicit", lambda a: np.einsum("j...", a), (3, 2, 4)),
    row("einsum bij,bjk->bik", lambda a, b: np.einsum("bij,bjk->bik", a, b), (2, 3, 4), (2, 4, 5)),
    row("einsum ij,jk implicit", lambda a, b: np.einsum("ij,jk", a, b), (3, 4), (4, 5)),
    row("einsum bA implicit order", lambda a: np.einsum("bA", a), (3, 4)),
    row("einsum ij,jk,kl->il", lambda a, b, c: np.einsum("ij,jk,kl->il", a, b, c), (2, 3), (3, 4), (4, 2)),
    row("einsum ij,ik,jk->", lambda a, b, c: np.einsum("ij,ik,jk->", a, b, c), (2, 3), (2, 4), (3, 4)),
    row("einsum ijk,k->ij (sum over k elsewhere)", lambda a, b: np.einsum("ijk,j->i", a, b), (2, 3, 4), (3,)),
    row("einsum interleaved", lambda a, b: np.einsum(a, [0, 1], b, [1, 2], [0, 2]), (3, 4), (4, 5)),
    row("einsum interleaved ellipsis", lambda a, b: np.einsum(a, [Ellipsis, 0, 1], b, [1, 2]), (2, 3, 4), (4, 5)),
    row("einsum constant operand", lambda a: np.einsum("ij,jk->ik", a, np.arange(12.0).reshape(4, 3)), (3, 4)),
    row("einsum int constant", lambda a: np.einsum("ij,j->i", a, np.arange(4)), (3, 4)),
    row("einsum same operand twice", lambda a: np.einsum("ij,ij->i", a, a), (3, 4)),
]

CONTRACTIONS = [
    row("tensordot axes=2", lambda a, b: np.tensordot(a, b), (2, 3, 4), (3, 4, 5)),
    row("tensordot axes=1", lambda a, b: np.tensordot(a, b, axes=1), (2, 3), (3, 4)),
    row("tensordot axes=0", lambda a, b: np.tensordot(a, b, axes=0), (2, 3), (4,)),
    row("tensordot lists", lambda a, b: np.tensordot(a, b, axes=([1, 0], [0, 1])), (3, 2, 4), (2, 3, 5)),
    row("tensordot negative", lambda a, b: np.tensordot(a, b, axes=([-1], [-2])), (2, 3), (4, 3, 5)),
    row("tensordot ints", lambda a, b: np.tensordot(a, b, axes=(0, 1)), (3, 2), (4, 3)),
    row("tensordot full", lambda a, b: np.tensordot(a, b, axes=([0, 1], [1, 0])), (3, 2), (2, 3)),
    row("dot 2-D", lambda a, b: np.dot(a, b), (3, 4), (4, 2)),
    row("dot 1-D", lambda a, b: np.dot(a, b), (4,), (4,)),
    row("dot 2-D,1-D", lambda a, b: np.dot(a, b), (3, 4), (4,)),
    row("dot N-D", lambda a, b: np.dot(a, b), (2, 3, 4), (5, 4, 2)),
    row("dot N-D,2-D", lambda a, b: np.dot(a, b), (2, 3, 4), (4, 2)),
    row("dot method", lambda a, b: a.dot(b), (3, 4), (4, 2)),
    row("matmul 1-D,1-D", lambda a, b: a @ b, (4,), (4,)),
    row("matmul 1-D,N-D", lambda a, b: np.matmul(a, b), (3,), (2, 3, 4)),
    row("matmul N-D,1-D", lambda a, b: np.matmul(a, b), (2, 3, 4), (4,)),
    row("matmul batched", lambda a, b: a @ b, (2, 1, 3, 4), (3, 4, 2)),
    row("inner 1-D", lambda a, b: np.inner(a, b), (4,), (4,)),
    row("inner N-D", lambda a, b: np.inner(a, b), (2, 3), (4, 3)),
    row("inner scalar", lambda a, b: np.inner(a, b), (), (3,)),
    row("outer", lambda a, b: np.outer(a, b), (3,), (2, 2)),
    row("vdot", lambda a, b: np.vdot(a, b), (2, 3), (3, 2)),
    row("kron 2-D", lambda a, b: np.kron(a, b), (2, 3), (3, 2)),
    row("kron mixed rank", lambda a, b: np.kron(a, b), (2,), (2, 3)),
    row("kron scalar", lambda a, b: np.kron(a, b), (), (2, 3)),
    row("linalg.vecdot", lambda a, b: np.linalg.vecdot(a, b), (2, 3), (3,)),
    row("linalg.outer", lambda a, b: np.linalg.outer(a, b), (3,), (4,)),
    row("linalg.matmul", lambda a, b: np.linalg.matmul(a, b), (3, 4), (4, 2)),
    row("linalg.tensordot", lambda a, b: np.linalg.tensordot(a, b, axes=1), (3, 4), (4, 2)),
    row("linalg.multi_dot", lambda a, b, c: np.linalg.multi_dot([a, b, c]), (3,), (3, 4), (4,)),
    row("linalg.matrix_power 3", lambda a: np.linalg.matrix_power(a, 3), (3, 3), square=(0,)),
    row("linalg.matrix_power -2", lambda a: np.linalg.matrix_power(a, -2), (3, 3), square=(0,)),
]

LINALG = [
    row("inv", lambda a: np.linalg.inv(a), (3, 3), square=(0,)),
    row("inv batched", lambda a: np.linalg.inv(a), (2, 3, 3), square=(0,)),
    row("det", lambda a: np.linalg.det(a), (3, 3), square=(0,)),
    row("det batched", lambda a: np.linalg.det(a), (2, 3, 3), square=(0,)),
    row("det negative", lambda a: np.linalg.det(-a), (3, 3), square=(0,)),
    row("slogdet logabsdet", lambda a: np.linalg.slogdet(a).logabsdet, (3, 3), square=(0,)),
    row("slogdet tuple", lambda a: np.linalg.slogdet(-a)[0] * np.linalg.slogdet(-a)[1], (3, 3), square=(0,)),
    row("slogdet batched", lambda a: np.linalg.slogdet(a)[1], (2, 3, 3), square=(0,)),
    row("solve vector", lambda a, b: np.linalg.solve(a, b), (3, 3), (3,), square=(0,)),
    row("solve matrix", lambda a, b: np.linalg.solve(a, b), (3, 3), (3, 2), square=(0,)),
    row("solve batched", lambda a, b: np.linalg.solve(a, b), (2, 3, 3), (2, 3, 2), square=(0,)),
    row("solve batched a, vector b", lambda a, b: np.linalg.solve(a, b), (2, 3, 3), (3,), square=(0,)),
    row("solve batched a, matrix b", lambda a, b: np.linalg.solve(a, b), (2, 3, 3), (3, 2), square=(0,)),
    row("cholesky", lambda x: np.linalg.cholesky(sym(x)), (3, 3)),
    row("cholesky batched", lambda x: np.linalg.cholesky(sym(x)), (2, 3, 3)),
    row("cholesky upper", lambda x: np.linalg.cholesky(sym(x), upper=True), (3, 3)),
    row("norm vector", lambda x: np.linalg.norm(x), (5,)),
    row("norm flat N-D", lambda x: np.linalg.norm(x), (2, 3, 2)),
    row("norm flat keepdims", lambda x: np.linalg.norm(x, keepdims=True), (2, 3)),
    row("norm ord=1", lambda x: np.linalg.norm(x, 1), (5,)),
    row("norm ord=2", lambda x: np.linalg.norm(x, 2), (5,)),
    row("norm ord=inf", lambda x: np.linalg.norm(x, np.inf), (5,)),
    row("norm ord=-inf", lambda x: np.linalg.norm(x, -np.inf), (5,)),
    row("norm ord=3", lambda x: np.linalg.norm(x, 3), (5,)),
    row("norm ord=0.5", lambda x: np.linalg.norm(x, 0.5), (5,)),
    row("norm ord=-2", lambda x: np.linalg.norm(x, -2), (5,)),
    row("norm ord=0 (count)", lambda x: x[0] * np.linalg.norm(x, 0), (5,)),
    row("norm axis=1", lambda x: np.linalg.norm(x, axis=1), (3, 4)),
    row("norm axis=0 keepdims", lambda x: np.linalg.norm(x, 3, axis=0, keepdims=True), (3, 4)),
    row("norm fro", lambda x: np.linalg.norm(x, "fro"), (3, 4)),
    row("norm matrix 1", lambda x: np.linalg.norm(x, 1), (3, 4)),
    row("norm matrix -1", lambda x: np.linalg.norm(x, -1), (3, 4)),
    row("norm matrix inf", lambda x: np.linalg.norm(x, np.inf), (3, 4)),
    row("norm matrix -inf", lambda x: np.linalg.norm(x, -np.inf), (3, 4)),
    row("norm matrix axes", lambda x: np.linalg.norm(x, 1, axis=(2, 0)), (3, 2, 4)),
    row("norm matrix inf axes keepdims", lambda x: np.linalg.norm(x, np.inf, axis=(2, 0), keepdims=True), (3, 2, 4)),
    row("norm fro axes", lambda x: np.linalg.norm(x, axis=(-1, -2)), (2, 3, 4)),
    row("vector_norm", lambda x: np.linalg.vector_norm(x, axis=(0, 2), ord=3), (2, 3, 4)),
    row("vector_norm flat", lambda x: np.linalg.vector_norm(x), (2, 3)),
    row("matrix_norm", lambda x: np.linalg.matrix_norm(x, ord=1), (2, 3, 4)),
    row("matrix_norm fro keepdims", lambda x: np.linalg.matrix_norm(x, keepdims=True), (2, 3, 4)),
]


def _args(r: Row, rng: np.random.Generator) -> tuple:
    args = []
    for i, s in enumerate(r.shapes):
        x = rng.standard_normal(s)
        if i in r.square:
            x = x + s[-1] * np.eye(s[-1])
        args.append(x)
    return tuple(args)


@pytest.mark.parametrize("r", EINSUM + CONTRACTIONS + LINALG)
def test_value_and_grads(r: Row, rng: np.random.Generator) -> None:
    args = _args(r, rng)
    expected = r.f(*args)
    out, _ = gj.vjp(r.f, *args)
    assert np.shape(out) == np.shape(expected)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-13)

    w = rng.standard_normal(np.shape(expected))

    def scalar(*xs: Any) -> Any:
        return np.sum(r.f(*xs) * w)

    gj.check_grads(scalar, *args, order=2)


# ---------------------------------------------------------------------------------------------
# Exact gradients at a point, where the answer is known in closed form
# ---------------------------------------------------------------------------------------------
def test_einsum_trace_gradient_is_identity(rng: np.random.Generator) -> None:
    a = rng.standard_normal((4, 4))
    np.testing.assert_array_equal(gj.grad(lambda x: np.einsum("ii->", x))(a), np.eye(4))
    w = rng.standard_normal(4)
    np.testing.assert_allclose(gj.grad(lambda x: np.sum(np.einsum("ii->i", x) * w))(a), np.diag(w), rtol=1e-15)


def test_einsum_sum_reduced_letter_broadcasts_back(rng: np.random.Generator) -> None:
    a = rng.standard_normal((3, 4))
    w = rng.standard_normal(4)
    g = gj.grad(lambda x: np.sum(np.einsum("ij->j", x) * w))(a)
    np.testing.assert_allclose(g, np.broadcast_to(w, (3, 4)), rtol=1e-15)


def test_linalg_gradients_closed_form(rng: np.random.Generator) -> None:
    a = rng.standard_normal((3, 3)) + 3 * np.eye(3)
    inv_t = np.linalg.inv(a).T
    np.testing.assert_allclose(gj.grad(lambda x: np.linalg.det(x))(a), np.linalg.det(a) * inv_t, rtol=1e-12)
    np.testing.assert_allclose(gj.grad(lambda x: np.linalg.slogdet(x)[1])(a), inv_t, rtol=1e-12)
    x = rng.standard_normal(5)
    np.testing.assert_allclose(gj.grad(lambda v: np.linalg.norm(v))(x), x / np.linalg.norm(x), rtol=1e-14)


def test_hessian_of_quadratic_form_by_einsum(rng: np.random.Generator) -> None:
    # f(x) = x^T A x has Hessian A + A^T: grad of grad, row by row.
    a = rng.standard_normal((3, 3))
    x = rng.standard_normal(3)
    for i in range(3):
        hi = gj.grad(lambda v, i=i: gj.grad(lambda u: np.einsum("i,ij,j->", u, a, u))(v)[i])(x)
        np.testing.assert_allclose(hi, (a + a.T)[i], rtol=1e-13)


def test_grad_with_respect_to_a_constant_free_operand(rng: np.random.Generator) -> None:
    # Second argument only: the rule runs for the constant first operand too and must not fail.
    a = rng.standard_normal((3, 4))
    b = rng.standard_normal((4, 2))
    g = gj.grad(lambda a, b: np.sum(np.einsum("ij,jk->ik", a, b) ** 2), argnums=1)(a, b)
    np.testing.assert_allclose(g, 2 * a.T @ (a @ b), rtol=1e-13)


# ---------------------------------------------------------------------------------------------
# What the trace records, and NumPy's result types
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "ndims", "expected"),
    [
        ("ij,jk", [2, 2], "ij,jk->ik"),
        ("bA", [2], "bA->Ab"),
        ("ii", [2], "ii->"),
        ("...ij,...jk->...ik", [3, 3], "Aij,Ajk->Aik"),
        ("...ij,...jk->...ik", [4, 2], "ABij,jk->ABik"),
        ("j...", [3], "jAB->ABj"),
        ("i j , j k -> i k", [2, 2], "ij,jk->ik"),
    ],
)
def test_normalize_subscripts(spec: str, ndims: list[int], expected: str) -> None:
    assert normalize_subscripts(spec, ndims) == expected


def test_einsum_records_explicit_subscripts(rng: np.random.Generator) -> None:
    a, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 4, 5))
    w = gj.make_wengert(lambda a, b: np.einsum("...ij,...jk", a, b))(a, b)
    (eqn,) = [e for e in w.eqns if e.prim.name == "einsum"]
    assert eqn.params["subscripts"] == "Aij,Ajk->Aik"


def test_slogdet_returns_numpys_result_type(rng: np.random.Generator) -> None:
    a = rng.standard_normal((3, 3)) + 3 * np.eye(3)
    seen = {}

    def f(x: Any) -> Any:
        res = np.linalg.slogdet(x)
        seen["type"] = type(res)
        seen["fields"] = res._fields
        return res.sign * res.logabsdet

    gj.grad(f)(a)
    assert seen["type"] is type(np.linalg.slogdet(a))
    assert seen["fields"] == ("sign", "logabsdet")


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------
def test_einsum_errors(rng: np.random.Generator) -> None:
    a = rng.standard_normal((2, 3, 4))
    with pytest.raises(ValueError, match="ellipsis"):
        gj.grad(lambda x: np.sum(np.einsum("...j->j", x)))(a)
    with pytest.raises(ValueError, match="does not match"):
        gj.grad(lambda x: np.sum(np.einsum("ij->i", x)))(a)
    with pytest.raises(gj.UnsupportedOperationError, match="out="):
        gj.grad(lambda x: np.sum(np.einsum("ijk->i", x, out=np.zeros(2))))(a)


def test_tensordot_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="shape-mismatch"):
        gj.grad(lambda x: np.sum(np.tensordot(x, np.ones((4, 3)), axes=([0], [0]))))(np.ones((3, 2)))


@pytest.mark.parametrize("ord", [2, -2, "nuc"])
def test_svd_matrix_norms_are_unsupported(ord: Any) -> None:
    with pytest.raises(gj.UnsupportedOperationError, match="SVD"):
        gj.grad(lambda x: np.linalg.norm(x, ord))(np.eye(3))


def test_norm_bad_arguments() -> None:
    with pytest.raises(ValueError, match="Improper number of dimensions"):
        gj.grad(lambda x: np.linalg.norm(x, 1))(np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="Invalid norm order"):
        gj.grad(lambda x: np.linalg.norm(x, "fro"))(np.ones(3))
