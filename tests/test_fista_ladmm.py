"""FISTA and PDHG (linearized ADMM) on StructuredPrograms built by hand, against CLARABEL."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest

import cvxprox
from cvxprox.functions.cones import NonnegCone, ZeroCone
from cvxprox.functions.prox import Box, GroupL2, Huber, Logistic, Norm1, Norm2, SumSquares
from cvxprox.interface.options import SolverOptions
from cvxprox.ir.program import Program, Term
from cvxprox.operators.linops import (
    Compose,
    Convolve1D,
    FiniteDiff,
    Gather,
    Identity,
    MatrixOp,
    VStack,
)
from cvxprox.solvers.fista import FISTA
from cvxprox.solvers.pdhg import PDHG

TIGHT = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}
EPS = 1e-7


def _term(function: object, op: object, b: np.ndarray | None = None, label: str = "") -> object:
    m = op.shape[0]
    return Term(function, op, np.zeros(m) if b is None else b, label)


def _reference(objective: cp.Expression, constraints: list | None = None) -> cp.Problem:
    prob = cp.Problem(cp.Minimize(objective), constraints or [])
    prob.solve(solver="CLARABEL", **TIGHT)
    assert prob.status == cp.OPTIMAL
    return prob


def _solve(algorithm: type, program: Program, warm: dict | None = None, **opts: object):
    options = SolverOptions(**{"eps_abs": EPS, "eps_rel": EPS, **opts})
    return algorithm(program, options, warm).solve("test")


def _check(result: object, program: Program, prob: cp.Problem, x: cp.Variable) -> None:
    """Optimal, with the objective within 1e-5 (relative) of CLARABEL's."""
    assert result.status == cp.OPTIMAL, result.kkt
    assert result.kkt.converged
    assert result.kkt.primal_objective == pytest.approx(prob.value, rel=1e-5, abs=1e-7)
    np.testing.assert_allclose(result.x, np.ravel(x.value, order="F"), atol=1e-3)


# --------------------------------------------------------------------------------------------
# Problems
# --------------------------------------------------------------------------------------------


def _lasso(seed: int = 0, m: int = 40, n: int = 20, lam: float = 2.0):
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((m, n))
    b = M @ (rng.standard_normal(n) * (rng.random(n) < 0.3)) + 0.1 * rng.standard_normal(m)
    program = Program(
        np.zeros(n),
        [
            _term(SumSquares(m), MatrixOp(M), b, "data"),
            _term(Norm1(n, weight=lam), Identity(n), label="l1"),
        ],
    )
    x = cp.Variable(n)
    return program, (cp.sum_squares(M @ x - b) + lam * cp.norm1(x), []), x, b


def _logistic(seed: int = 1, m: int = 60, n: int = 12):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, n))
    labels = np.sign(A @ rng.standard_normal(n) + 0.5 * rng.standard_normal(m))
    mu, lam = 0.1, 1.0
    c = 0.05 * rng.standard_normal(n)
    program = Program(
        c,
        [
            _term(Logistic(m), MatrixOp(-labels[:, None] * A), label="loss"),
            _term(SumSquares(n, weight=mu), Identity(n), label="ridge"),
            _term(Norm1(n, weight=lam), Identity(n), label="l1"),
        ],
    )
    x = cp.Variable(n)
    objective = (
        c @ x
        + cp.sum(cp.logistic(-cp.multiply(labels, A @ x)))
        + mu * cp.sum_squares(x)
        + lam * cp.norm1(x)
    )
    return program, (objective, []), x


def _huber_permuted(seed: int = 2, m: int = 50, n: int = 20):
    """Huber regression with outliers, a weighted l1 term on a permutation of x."""
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((m, n))
    b = M @ rng.standard_normal(n) + 0.1 * rng.standard_normal(m)
    b[::7] += 10.0
    perm = rng.permutation(n)
    w = rng.random(n) + 0.5
    program = Program(
        np.zeros(n),
        [
            _term(Huber(m, M=1.0), MatrixOp(M), b, "huber"),
            _term(Norm1(n, weight=w), Gather(perm, n), label="l1"),
        ],
    )
    x = cp.Variable(n)
    objective = cp.sum(cp.huber(M @ x - b, 1.0)) + w @ cp.abs(x[perm])
    return program, (objective, []), x


def _tv1d(seed: int = 3, n: int = 200, lam: float = 1.0):
    rng = np.random.default_rng(seed)
    signal = np.repeat(rng.standard_normal(8) * 3, n // 8)
    noisy = signal + 0.5 * rng.standard_normal(n)
    program = Program(
        np.zeros(n),
        [
            _term(SumSquares(n), Identity(n), noisy, "data"),
            _term(Norm1(n - 1, weight=lam), FiniteDiff((n,), 0), label="tv"),
        ],
    )
    x = cp.Variable(n)
    return program, (cp.sum_squares(x - noisy) + lam * cp.norm1(cp.diff(x)), []), x


def tv2d_operator(m: int, n: int) -> Compose:
    """The gradient of an m x n image (F-flattened) as pairs (d_row, d_col) per pixel.

    Pixel (i, j), i < m - 1, j < n - 1, taken in F order, owns rows 2p, 2p + 1: the
    differences X[i+1, j] - X[i, j] and X[i, j+1] - X[i, j], as in ``cp.tv``.
    """
    rows = FiniteDiff((m, n), 0)  # (m-1) x n differences, F order
    cols = FiniteDiff((m, n), 1)  # m x (n-1) differences, F order
    i, j = np.meshgrid(np.arange(m - 1), np.arange(n - 1), indexing="ij")
    i, j = i.ravel(order="F"), j.ravel(order="F")
    offset = (m - 1) * n
    index = np.column_stack([i + (m - 1) * j, offset + i + m * j]).ravel()
    return Compose(Gather(index, offset + m * (n - 1)), VStack([rows, cols]))


def _tv2d(seed: int = 4, m: int = 12, n: int = 14, lam: float = 0.3):
    rng = np.random.default_rng(seed)
    image = np.zeros((m, n))
    image[3:9, 4:11] = 1.0
    noisy = image + 0.2 * rng.standard_normal((m, n))
    grad = tv2d_operator(m, n)
    size = m * n
    program = Program(
        np.zeros(size),
        [
            _term(SumSquares(size), Identity(size), noisy.ravel(order="F"), "data"),
            _term(GroupL2(grad.shape[0], 2, weight=lam), grad, label="tv"),
        ],
    )
    X = cp.Variable((m, n))
    return program, (cp.sum_squares(X - noisy) + lam * cp.tv(X), []), X


def _deconvolution(seed: int = 5, n: int = 100, lam: float = 0.05):
    rng = np.random.default_rng(seed)
    kernel = np.exp(-0.5 * (np.arange(-3, 4) / 1.5) ** 2)
    kernel /= kernel.sum()
    signal = np.repeat(rng.standard_normal(5), n // 5)
    observed = np.convolve(kernel, signal) + 0.05 * rng.standard_normal(n + kernel.size - 1)
    program = Program(
        np.zeros(n),
        [
            _term(SumSquares(observed.size), Convolve1D(kernel, n), observed, "data"),
            _term(Norm1(n - 1, weight=lam), FiniteDiff((n,), 0), label="tv"),
        ],
    )
    x = cp.Variable(n)
    objective = cp.sum_squares(cp.convolve(kernel, x) - observed) + lam * cp.norm1(cp.diff(x))
    return program, (objective, []), x


def _nnls(seed: int = 6, m: int = 30, n: int = 20):
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((m, n))
    b = M @ rng.standard_normal(n) + 0.1 * rng.standard_normal(m)
    program = Program(
        np.zeros(n),
        [
            _term(SumSquares(m), MatrixOp(M), b, "data"),
            _term(NonnegCone(n), Identity(n), label="x >= 0"),
        ],
    )
    x = cp.Variable(n)
    return program, (cp.sum_squares(M @ x - b), [x >= 0]), x


def _constrained_ls(seed: int = 8, m: int = 60, n: int = 30, p: int = 20):
    """Least squares with inequality rows scaled by 1e3 and a box on x: the dual blocks'
    operators have norms 1e3 apart from the data term's."""
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((m, n))
    b = M @ rng.standard_normal(n) + rng.standard_normal(m)
    C = 1e3 * rng.standard_normal((p, n))
    d = 1e3 * rng.random(p)
    program = Program(
        np.zeros(n),
        [
            _term(SumSquares(m), MatrixOp(M), b, "data"),
            _term(NonnegCone(p), MatrixOp(-C), -d, "C x <= d"),
            _term(Box(-0.5, 0.5, n), Identity(n), label="|x| <= 0.5"),
        ],
    )
    x = cp.Variable(n)
    constraints = [C @ x <= d, x >= -0.5, x <= 0.5]
    return program, (cp.sum_squares(M @ x - b), constraints), x


def _equality(seed: int = 7, m: int = 30, n: int = 20, p: int = 5, lam: float = 0.5):
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((m, n))
    b = M @ rng.standard_normal(n)
    E = rng.standard_normal((p, n))
    f = E @ rng.standard_normal(n)
    program = Program(
        np.zeros(n),
        [
            _term(SumSquares(m), MatrixOp(M), b, "data"),
            _term(Norm1(n, weight=lam), Identity(n), label="l1"),
            _term(ZeroCone(p), MatrixOp(E), f, "E x == f"),
        ],
    )
    x = cp.Variable(n)
    return program, (cp.sum_squares(M @ x - b) + lam * cp.norm1(x), [E @ x == f]), x


# --------------------------------------------------------------------------------------------
# FISTA
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("build", [_lasso, _logistic, _huber_permuted])
def test_fista_against_clarabel(build) -> None:
    program, (objective, constraints), x, *_ = build()
    ok, _ = FISTA.applies(program)
    assert ok
    prob = _reference(objective, constraints)
    result = _solve(FISTA, program)
    _check(result, program, prob, x)
    assert result.algorithm == "fista"


def test_fista_applies_rejects_constraints_and_two_nonsmooth_terms() -> None:
    rng = np.random.default_rng(0)
    M = rng.standard_normal((5, 4))
    smooth = _term(SumSquares(5), MatrixOp(M), rng.standard_normal(5), "data")
    constrained = Program(
        np.zeros(4), [smooth, _term(NonnegCone(5), MatrixOp(M), label="M x >= 0")]
    )
    ok, reason = FISTA.applies(constrained)
    assert not ok and "constraint" in reason and "M x >= 0" in reason
    two = Program(
        np.zeros(4),
        [
            smooth,
            _term(Norm1(4), Identity(4), label="l1"),
            _term(Norm2(4), Identity(4), label="l2"),
        ],
    )
    ok, reason = FISTA.applies(two)
    assert not ok and "2 nonsmooth terms" in reason
    with pytest.raises(ValueError, match="does not apply"):
        _solve(FISTA, two)


def test_fista_limit_and_warm_start() -> None:
    program, *_ = _lasso()
    limited = _solve(FISTA, program, max_iters=3)
    assert limited.status == cp.USER_LIMIT and limited.info["limit"] == "max_iters"
    assert limited.x is not None and limited.iterations == 3
    cold = _solve(FISTA, program)
    assert cold.status == cp.OPTIMAL
    perturbed = _perturbed(program, 0)
    again_cold = _solve(FISTA, perturbed)
    warm = _solve(FISTA, perturbed, cold.info["warm_start"])
    assert warm.status == cp.OPTIMAL
    assert warm.iterations < again_cold.iterations


def test_fista_follows_a_convolution_through_its_gram(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sum of squares of a 1-D convolution is followed through A'A x (``GramImages``:
    one FFT pair per step, an exact descent test); the run takes the same steps as the
    one through A x (``LinearImages``) and reaches Clarabel's objective."""
    from compare.suites.structured import build_deconvolution  # noqa: PLC0415
    from cvxprox.solvers import fista  # noqa: PLC0415

    prob = build_deconvolution(size=400)
    prob.solve(solver="NABLAPROX", algorithm="fista", eps_abs=1e-7, eps_rel=1e-7, warm_start=False)
    assert prob.status == cp.OPTIMAL
    gram_value, gram_x = prob.value, prob.variables()[0].value
    gram_iterations = prob.solver_stats.num_iters
    program = cvxprox.compile(prob, algorithm="fista").program
    smooth = fista.TermGroup(
        [(k, t) for k, t in enumerate(program.terms) if t.function.smooth], program.n
    )
    assert fista.GramImages.applies(smooth)
    monkeypatch.setattr(fista.GramImages, "applies", staticmethod(lambda smooth: False))
    prob.solve(solver="NABLAPROX", algorithm="fista", eps_abs=1e-7, eps_rel=1e-7, warm_start=False)
    assert prob.status == cp.OPTIMAL
    assert abs(prob.solver_stats.num_iters - gram_iterations) <= 0.1 * gram_iterations
    np.testing.assert_allclose(prob.variables()[0].value, gram_x, atol=1e-5)
    prob.solve(solver="CLARABEL", **TIGHT)
    assert gram_value == pytest.approx(prob.value, rel=1e-6)


def _perturbed(program: Program, k: int) -> Program:
    """The program with b_k moved by 0.1%."""
    terms = list(program.terms)
    t = terms[k]
    terms[k] = Term(t.function, t.op, t.b * 1.001, t.label)
    return Program(program.c, terms, offset=program.offset)


# --------------------------------------------------------------------------------------------
# Linearized ADMM
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("build", [_tv1d, _tv2d, _deconvolution, _nnls, _constrained_ls, _equality])
def test_ladmm_against_clarabel(build) -> None:
    program, (objective, constraints), x = build()
    prob = _reference(objective, constraints)
    result = _solve(PDHG, program)
    _check(result, program, prob, x)
    assert result.algorithm == "pdhg"


def test_ladmm_equality_dual() -> None:
    """The ZeroCone term's y is CLARABEL's dual of E x == f (CVXPY's sign convention agrees:
    both are the multiplier of E x - f in the Lagrangian)."""
    program, (objective, constraints), _ = _equality()
    _reference(objective, constraints)
    result = _solve(PDHG, program)
    rows = slice(program.terms[0].size + program.terms[1].size, program.m)
    np.testing.assert_allclose(result.y[rows], constraints[0].dual_value, atol=1e-4)


def test_ladmm_optimality_inclusions() -> None:
    """y_i lies in df_i(z_i): l1 duals within the weights, equal to them where z != 0."""
    program, _, _ = _tv1d()
    result = _solve(PDHG, program)
    tv = slice(program.terms[0].size, program.m)
    z, y = result.z[tv], result.y[tv]
    assert np.all(np.abs(y) <= 1.0 + 1e-12)
    np.testing.assert_allclose(y[z != 0], np.sign(z[z != 0]), atol=1e-12)


def test_ladmm_limit_and_warm_start() -> None:
    program, _, _ = _tv1d()
    limited = _solve(PDHG, program, max_iters=3)
    assert limited.status == cp.USER_LIMIT and limited.info["limit"] == "max_iters"
    assert limited.x is not None and limited.iterations == 3
    # Checked every other iteration, so that spaced tests (``check_spacing``) do not
    # round both runs to the same count.
    cold = _solve(PDHG, program, check_every=2)
    perturbed = _perturbed(program, 0)
    again_cold = _solve(PDHG, perturbed, check_every=2)
    warm = _solve(PDHG, perturbed, cold.info["warm_start"], check_every=2)
    assert warm.status == cp.OPTIMAL
    assert warm.iterations < again_cold.iterations
