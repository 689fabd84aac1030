"""FISTA on the dual (``cvxprox/solvers/dual_fista.py``) against Clarabel at tight
tolerance: values and every dual value, statuses at limits and on infeasible problems,
and the programs it refuses."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
import scipy.sparse as sp

import cvxprox
from cvxprox.functions.prox import GroupL2, Norm1, Quadratic, SumSquares
from cvxprox.interface.options import SolverOptions
from cvxprox.ir.program import Program, Term
from cvxprox.operators.linops import Diagonal, Gather, Identity, MatrixOp
from cvxprox.solvers import dual_fista
from cvxprox.solvers.common.termination import check_spacing
from cvxprox.solvers.dual_fista import DualFISTA

TIGHT = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}
EPS = 1e-8


def _phantom(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    image = np.zeros((rows, cols))
    image[rows // 4 : 3 * rows // 4, cols // 3 : 2 * cols // 3] = 1.0
    return image + 0.2 * rng.standard_normal((rows, cols))


def _tv_isotropic(bounded: bool = False) -> cp.Problem:
    rng = np.random.default_rng(0)
    noisy = _phantom(rng, 12, 10)
    X = cp.Variable((12, 10))
    constraints = [X >= 0, X <= 1] if bounded else []
    return cp.Problem(cp.Minimize(0.5 * cp.sum_squares(X - noisy) + 0.15 * cp.tv(X)), constraints)


def _tv_anisotropic() -> cp.Problem:
    rng = np.random.default_rng(1)
    noisy = _phantom(rng, 9, 11)
    X = cp.Variable((9, 11))
    tv = cp.sum(cp.abs(cp.diff(X, axis=0))) + cp.sum(cp.abs(cp.diff(X, axis=1)))
    return cp.Problem(cp.Minimize(0.5 * cp.sum_squares(X - noisy) + 0.1 * tv))


def _tv_1d() -> cp.Problem:
    rng = np.random.default_rng(2)
    signal = np.repeat(rng.uniform(-1, 1, 6), 8) + 0.1 * rng.standard_normal(48)
    x = cp.Variable(48)
    return cp.Problem(
        cp.Minimize(cp.sum_squares(x - signal) + 0.5 * cp.norm1(cp.diff(x))), [x >= -0.8]
    )


def _fused_lasso() -> cp.Problem:
    """Weighted least squares plus l1 of the differences and of x (the fused lasso signal
    approximator), with an equality constraint."""
    rng = np.random.default_rng(3)
    y = np.repeat(rng.uniform(-1, 1, 5), 8) + 0.1 * rng.standard_normal(40)
    w = rng.uniform(0.5, 2.0, 40)
    x = cp.Variable(40)
    objective = cp.sum(cp.multiply(w, cp.square(x - y))) + 0.4 * cp.norm1(cp.diff(x))
    return cp.Problem(cp.Minimize(objective + 0.1 * cp.norm1(x)), [cp.sum(x) == 2.0])


def _huber_ridge() -> cp.Problem:
    rng = np.random.default_rng(4)
    A, b = rng.standard_normal((30, 12)), rng.standard_normal(30)
    b[:3] += 8.0
    x = cp.Variable(12)
    objective = cp.sum(cp.huber(A @ x - b, 0.5)) + 0.3 * cp.sum_squares(x)
    return cp.Problem(cp.Minimize(objective), [cp.sum(x) == 1.0, x[:4] <= 0.05])


CASES = {
    "tv_isotropic": (_tv_isotropic, {}),
    "tv_isotropic_box": ((lambda: _tv_isotropic(bounded=True)), {}),
    "tv_anisotropic": (_tv_anisotropic, {"structure": "always", "algorithm": "dual_fista"}),
    "tv_1d": (_tv_1d, {"algorithm": "dual_fista"}),
    "fused_lasso": (_fused_lasso, {"algorithm": "dual_fista"}),
    "huber_ridge": (_huber_ridge, {}),
}

#: The cases whose constraints have unique multipliers (compared entry by entry too).
UNIQUE_DUALS = ("fused_lasso", "huber_ridge")


@pytest.mark.parametrize("name", list(CASES))
def test_dual_fista_matches_clarabel(name: str) -> None:
    build, options = CASES[name]
    ref = build()
    ref.solve(solver="CLARABEL", **TIGHT)
    prob = build()
    assert cvxprox.compile(prob, **options).algorithm == "dual_fista"
    prob.solve(solver="NABLAPROX", eps_abs=EPS, eps_rel=EPS, **options)
    assert prob.status == cp.OPTIMAL
    assert prob.solver_stats.extra_stats["algorithm"] == "dual_fista"
    assert prob.value == pytest.approx(ref.value, rel=1e-6)
    for got, want in zip(prob.variables(), ref.variables(), strict=True):
        np.testing.assert_allclose(got.value, want.value, atol=1e-5)
    # Where the image sits on a bound inside a flat region, the multipliers of the box
    # and of the TV term are not unique: every dual value must be optimal, i.e. the
    # Lagrangian's minimum with them (by Clarabel) must be the optimal value.
    lagrangian = prob.objective.expr + sum(
        cp.sum(cp.multiply(c.dual_value, c.expr)) for c in prob.constraints
    )
    dual = cp.Problem(cp.Minimize(lagrangian))
    dual.solve(solver="CLARABEL", **TIGHT)
    assert dual.value == pytest.approx(ref.value, rel=1e-7)
    if name in UNIQUE_DUALS:
        for got, want in zip(prob.constraints, ref.constraints, strict=True):
            np.testing.assert_allclose(got.dual_value, want.dual_value, atol=1e-5)


def test_dual_fista_on_torch_matches_numpy() -> None:
    pytest.importorskip("torch")
    results = []
    for backend in ("numpy", "torch"):
        prob = _tv_isotropic(bounded=True)
        prob.solve(solver="NABLAPROX", eps_abs=1e-9, eps_rel=1e-9, backend=backend)
        assert prob.solver_stats.extra_stats["algorithm"] == "dual_fista"
        results.append((prob.value, prob.variables()[0].value, prob.constraints[0].dual_value))
    (v0, x0, d0), (v1, x1, d1) = results
    assert v1 == pytest.approx(v0, rel=1e-7)
    np.testing.assert_allclose(x1, x0, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(d1, d0, rtol=1e-7, atol=1e-7)


def test_infeasible_bounds_give_a_certificate() -> None:
    rng = np.random.default_rng(5)
    x = cp.Variable(20)
    noisy = rng.standard_normal(20)
    prob = cp.Problem(
        cp.Minimize(cp.sum_squares(x - noisy) + 0.3 * cp.norm1(cp.diff(x))), [x >= 1, x <= 0]
    )
    # Presolve finds the crossing rows at once; without it dual FISTA's own test does.
    prob.solve(solver="NABLAPROX", algorithm="dual_fista", max_iters=20000)
    assert prob.status == cp.INFEASIBLE
    assert prob.solver_stats.extra_stats["algorithm"] == "presolve"
    prob.solve(solver="NABLAPROX", algorithm="dual_fista", max_iters=20000, presolve=False)
    assert prob.status == cp.INFEASIBLE
    assert prob.solver_stats.extra_stats["algorithm"] == "dual_fista"


def test_crossing_one_entry_constraints_are_infeasible_before_any_iteration() -> None:
    """X >= lo, X <= 0.5 with lo above 0.5 at two pixels: presolve reads the two terms'
    rows as bounds and returns the Farkas vector on the pixel that crosses by the most,
    as CVXPY duals: lower, upper >= 0, the Lagrangian's linear part -lower + upper zero
    and its constant lo'lower - 0.5 sum(upper) normalized to 1."""
    n = 12
    rng = np.random.default_rng(0)
    X = cp.Variable((n, n))
    lo = np.zeros((n, n))
    lo[5, 5], lo[2, 3] = 1.0, 0.7
    objective = 0.5 * cp.sum_squares(X - rng.random((n, n))) + 0.1 * cp.tv(X)
    prob = cp.Problem(cp.Minimize(objective), [X >= lo, X <= 0.5])
    prob.solve(solver="NABLAPROX")
    assert prob.status == cp.INFEASIBLE and prob.solver_stats.num_iters == 0
    assert prob.solver_stats.extra_stats["algorithm"] == "presolve"
    lower, upper = (c.dual_value for c in prob.constraints)
    assert np.all(lower >= 0) and np.all(upper >= 0) and lower[5, 5] > 0
    np.testing.assert_allclose(-lower + upper, 0.0, atol=1e-12)
    assert float(np.sum(lower * lo) - 0.5 * np.sum(upper)) == pytest.approx(1.0, rel=1e-12)


def test_crossing_singletons_on_equalities_and_scaled_rows() -> None:
    """An equality 2 x_0 = 4 against -3 x_0 + 3 >= 0 (x_0 <= 1): the vector is in the
    polar cone (<= 0 on the nonnegative row), A'y = 0 and b'y = -1; rows that do not
    cross give None."""
    from cvxprox.functions.cones import NonnegCone, ZeroCone
    from cvxprox.solvers.presolve import crossing_singletons

    n = 3
    equality = Term(
        ZeroCone(1), MatrixOp(sp.csr_array(np.array([[2.0, 0.0, 0.0]]))), np.array([4.0])
    )
    upper = Term(
        NonnegCone(2),
        MatrixOp(sp.csr_array(np.array([[-3.0, 0.0, 0.0], [0.0, 1.0, 1.0]]))),
        np.array([-3.0, 0.0]),
    )
    program = _program([equality, upper], n)
    y = crossing_singletons(program)
    A = np.vstack([equality.op.to_sparse().toarray(), upper.op.to_sparse().toarray()])
    b = np.concatenate([equality.b, upper.b])
    assert y is not None and y[1] <= 0 and y[2] == 0
    np.testing.assert_allclose(A.T @ y, 0.0, atol=1e-15)
    assert float(b @ y) == pytest.approx(-1.0, rel=1e-14)
    loose = Term(NonnegCone(2), upper.op, np.array([-6.0, 0.0]))  # x_0 <= 2: no crossing
    assert crossing_singletons(_program([equality, loose], n)) is None
    # 0.1 x_2 >= 0.03 and 0.3 x_2 <= 0.03 * 3 meet at 0.3; b / a crosses by rounding.
    low = Term(NonnegCone(1), MatrixOp(sp.csr_array(np.array([[0.0, 0.0, 0.1]]))), np.array([0.03]))
    high = Term(
        NonnegCone(1),
        MatrixOp(sp.csr_array(np.array([[0.0, 0.0, -0.1 * 3.0]]))),
        np.array([-0.03 * 3.0]),
    )
    assert 0.03 / 0.1 > (0.03 * 3.0) / (0.1 * 3.0)
    assert crossing_singletons(_program([low, high], n)) is None
    # Bounds whose spread overflows, and dense operators, are left to the method.
    huge = Term(
        NonnegCone(1), MatrixOp(sp.csr_array(np.array([[0.0, 1.0, 0.0]]))), np.array([1e308])
    )
    tiny = Term(
        NonnegCone(1), MatrixOp(sp.csr_array(np.array([[0.0, -1.0, 0.0]]))), np.array([1e308])
    )
    assert crossing_singletons(_program([huge, tiny], n)) is None
    dense = Term(ZeroCone(1), MatrixOp(np.array([[2.0, 0.0, 0.0]])), np.array([4.0]))
    assert crossing_singletons(_program([dense, upper], n)) is None


def test_bounds_and_a_constraint_that_exclude_each_other_give_a_certificate() -> None:
    """Bounds 0 <= x <= 1 are the program's l, u (clipped in x(y)); with sum(x) == 30 on
    20 entries the certificate holds the equality's dual and the bounds' multipliers."""
    rng = np.random.default_rng(6)
    x = cp.Variable(20)
    noisy = rng.standard_normal(20)
    objective = cp.sum_squares(x - noisy) + 0.3 * cp.norm1(cp.diff(x))
    prob = cp.Problem(cp.Minimize(objective), [x >= 0, x <= 1, cp.sum(x) == 30])
    assert cvxprox.compile(prob).algorithm == "dual_fista"
    prob.solve(solver="NABLAPROX", max_iters=20000)
    assert prob.status == cp.INFEASIBLE
    assert prob.solver_stats.extra_stats["algorithm"] == "dual_fista"
    lower, upper, total = (c.dual_value for c in prob.constraints)
    # Farkas, as Clarabel's certificate: with g(x) = (-x, x - 1, sum(x) - 30) and
    # multipliers (lower, upper >= 0, total), the Lagrangian's linear part vanishes and its
    # constant -sum(upper) - 30 total is positive (normalized to 1).
    assert np.all(lower >= -1e-9) and np.all(upper >= -1e-9)
    np.testing.assert_allclose(-lower + upper + total, 0.0, atol=1e-6)
    assert float(-np.sum(upper) - 30 * total) == pytest.approx(1.0, rel=1e-6)


def test_iteration_limit_is_reported() -> None:
    prob = _tv_isotropic(bounded=True)
    prob.solve(solver="NABLAPROX", max_iters=5)
    stats = prob.solver_stats.extra_stats
    assert stats["algorithm"] == "dual_fista"
    assert stats["limit"] == "max_iters"
    assert prob.status in (cp.OPTIMAL_INACCURATE, cp.USER_LIMIT)
    assert prob.status == (cp.OPTIMAL_INACCURATE if stats["kkt_error"] <= 1e3 else cp.USER_LIMIT)


def test_forcing_dual_fista_where_it_does_not_apply_names_the_reason() -> None:
    rng = np.random.default_rng(6)
    A, b = rng.standard_normal((15, 8)), rng.standard_normal(15)
    x = cp.Variable(8)
    lasso = cp.Problem(cp.Minimize(cp.sum_squares(A @ x - b) + cp.norm1(x)))
    with pytest.raises(ValueError, match="dual_fista' does not apply: no term is a sum of squares"):
        lasso.solve(solver="NABLAPROX", algorithm="dual_fista", structure="always")


def _program(terms: list[Term], n: int) -> Program:
    return Program(np.zeros(n), terms)


def test_applies_accepts_diagonal_hessians_only() -> None:
    n = 6
    l1 = Term(Norm1(5), MatrixOp(np.eye(5, n, 1) - np.eye(5, n)), np.zeros(5))
    # A gather that misses x[5] leaves it without curvature.
    partial = Term(SumSquares(5), Gather(np.arange(5), n), np.zeros(5))
    ok, reason = DualFISTA.applies(_program([partial, l1], n))
    assert not ok and "1 of 6 variables (x[5] first) without curvature" in reason
    # A diagonal operator, a gather and a diagonal quad_form add up to a diagonal Hessian.
    diagonal = Term(SumSquares(n, 0.5), Diagonal(np.arange(n) + 1.0), np.ones(n))
    quad = Term(Quadratic(np.diag(np.arange(1.0, 4.0))), Gather(np.array([0, 5, 5]), n), np.ones(3))
    ok, reason = DualFISTA.applies(_program([partial, quad, l1, diagonal], n))
    assert ok and "diagonal Hessian" in reason
    # A quad_form with a dense Q, or sums of squares of a difference, give no diagonal one.
    dense = Term(Quadratic(np.ones((n, n)) + np.eye(n)), Identity(n), np.zeros(n))
    diff = Term(SumSquares(5), l1.op, np.zeros(5))
    for terms in ([dense, l1], [diff, l1]):
        ok, reason = DualFISTA.applies(_program(terms, n))
        assert not ok and "no term is a sum of squares" in reason


def test_diagonal_quadratic_matches_its_matrices() -> None:
    """H = sum_i A_i'diag(kappa_i)A_i and q = c - sum_i A_i'diag(kappa_i) b_i, formed
    without matrices for identity and diagonal operators, equal the sparse products."""
    n = 6
    rng = np.random.default_rng(3)
    terms = [
        Term(SumSquares(n, 0.5), Diagonal(rng.standard_normal(n)), rng.standard_normal(n)),
        Term(SumSquares(n, 2.0), Identity(n), rng.standard_normal(n)),
        Term(Quadratic(np.diag([1.0, 2.0, 3.0])), Gather(np.array([0, 5, 5]), n), np.ones(3)),
    ]
    program = _program(terms, n)
    F = dual_fista.DiagonalQuadratic(program, [0, 1, 2])
    H, q = np.zeros(n), np.array(program.c, dtype=float)
    for term in terms:
        kappa = dual_fista.DiagonalQuadratic.curvature(term)
        M = term.op.to_sparse()
        H += (M.T @ (kappa[:, None] * M.toarray())).diagonal()
        q -= M.T @ (kappa * term.b)
    assert np.allclose(F.H, H, rtol=1e-14, atol=0) and np.allclose(F.q, q, rtol=1e-14, atol=1e-15)


def test_program_with_group_l2_against_clarabel() -> None:
    """A hand-built program: 1/2 ||x - a||^2_W (weights W) + group l2 of a difference,
    with Quadratic and SumSquares terms on a gather and a diagonal."""
    rng = np.random.default_rng(7)
    n = 10
    a = rng.standard_normal(n)
    d = rng.uniform(0.5, 2.0, n)
    D = np.eye(n - 2, n, 2) - np.eye(n - 2, n)
    terms = [
        Term(SumSquares(n, 0.5), Diagonal(d), d * a),
        Term(Quadratic(np.diag([1.0, 2.0])), Gather(np.array([3, 7]), n), np.zeros(2)),
        Term(GroupL2(n - 2, 2, 0.3), MatrixOp(D), np.zeros(n - 2)),
    ]
    program = Program(rng.standard_normal(n) * 0.1, terms)
    options = SolverOptions(eps_abs=EPS, eps_rel=EPS)
    result = DualFISTA(program, options).solve("test")
    assert result.status == cp.OPTIMAL

    x = cp.Variable(n)
    groups = cp.reshape(D @ x, ((n - 2) // 2, 2), order="C")
    objective = (
        program.c @ x
        + 0.5 * cp.sum_squares(cp.multiply(d, x) - d * a)
        + cp.square(x[3])
        + 2.0 * cp.square(x[7])
        + 0.3 * cp.sum(cp.norm(groups, 2, axis=1))
    )
    ref = cp.Problem(cp.Minimize(objective))
    ref.solve(solver="CLARABEL", **TIGHT)
    np.testing.assert_allclose(result.x, x.value, atol=1e-5)
    assert result.kkt.primal_objective == pytest.approx(ref.value, rel=1e-7)


@pytest.mark.parametrize("fused", [False, True])
def test_warm_start_from_the_previous_solution(
    fused: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain and (this small image let through) compiled TV iterations."""
    if fused:
        monkeypatch.setattr(dual_fista, "FUSED_FROM", 1)
    prob = _tv_isotropic(bounded=True)
    prob.solve(solver="NABLAPROX", eps_abs=EPS, eps_rel=EPS)
    assert prob.solver_stats.extra_stats["fused"] == fused
    cold = prob.solver_stats.num_iters
    value = prob.value
    prob.solve(solver="NABLAPROX", eps_abs=EPS, eps_rel=EPS, warm_start=True)
    assert prob.status == cp.OPTIMAL
    assert prob.solver_stats.extra_stats["fused"] == fused
    assert prob.solver_stats.num_iters < cold / 5
    assert prob.value == pytest.approx(value, rel=1e-7)


def test_checks_are_spaced_by_the_distance_to_the_tolerances() -> None:
    """Every check_every iterations below a ratio of 4 (or when it is not a number), then
    floor(log2 ratio) periods, at most four."""
    ratios = [0.5, 3.99, 4.0, 7.9, 8.0, 15.9, 16.0, 1e6, float("inf"), float("nan")]
    assert [check_spacing(r) for r in ratios] == [1, 1, 2, 2, 3, 3, 4, 4, 1, 1]


def test_costly_checks_are_spaced_by_their_cost() -> None:
    """A check that costs ``check_cost`` iterations comes sqrt(2 check_cost k) iterations
    after one at iteration k (in whole periods), or later when the distance rule says so."""
    assert check_spacing(0.5, check_cost=10.0, iteration=1000, period=10) == 14
    assert check_spacing(0.5, check_cost=10.0, iteration=40, period=10) == 2
    assert check_spacing(0.5, check_cost=10.0, iteration=4, period=10) == 1
    assert check_spacing(1e6, check_cost=1.0, iteration=50, period=10) == 4
    assert check_spacing(0.5, check_cost=0.0, iteration=10**6, period=10) == 1
