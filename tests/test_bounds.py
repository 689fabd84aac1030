"""Variable bounds on the structured route: the lowering takes elementwise bounds into the
program's l <= x <= u, every method on the terms honours them, and each bound
constraint's dual_value is its multiplier, read from the reduced cost; all against
Clarabel at tight tolerance."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest

import cvxprox
from compare.suites.structured import build_tv_inpainting
from cvxprox.functions.prox import Norm1, SumSquares
from cvxprox.interface.options import SolverOptions
from cvxprox.ir.program import Program, Term
from cvxprox.operators.linops import Identity
from cvxprox.reductions.structure import StructureLowering
from cvxprox.solvers.select import solve_program

TIGHT = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}
EPS = {"eps_abs": 1e-9, "eps_rel": 1e-9}
RNG = np.random.default_rng(7)
LASSO_A, LASSO_B = RNG.standard_normal((30, 12)), RNG.standard_normal(30)


def _reference(prob: cp.Problem) -> tuple[float, list[np.ndarray], list[np.ndarray]]:
    prob.solve(solver="CLARABEL", **TIGHT)
    assert prob.status == cp.OPTIMAL
    values = [np.array(v.value, dtype=float) for v in prob.variables()]
    duals = [np.array(c.dual_value, dtype=float) for c in prob.constraints]
    return prob.value, values, duals


def _assert_matches(
    prob: cp.Problem,
    reference: tuple,
    tol: float = 1e-5,
    kinked: tuple[int, ...] = (),
    totals: tuple[int, ...] = (),
) -> None:
    """Status, value, variables and every dual against Clarabel's. The duals of the
    constraints ``kinked`` are not unique (bounds on entries where a nonsmooth term has a
    kink: the reduced cost splits between the term's subgradient and the multiplier):
    their sign and support are tested, and for those in ``totals`` their sum."""
    value, values, duals = reference
    assert prob.status == cp.OPTIMAL
    assert prob.value == pytest.approx(value, rel=tol, abs=tol)
    for var, ref in zip(prob.variables(), values, strict=True):
        np.testing.assert_allclose(var.value, ref, atol=tol * max(1.0, np.abs(ref).max()))
    for k, (con, ref) in enumerate(zip(prob.constraints, duals, strict=True)):
        scale = max(1.0, np.abs(ref).max())
        dual = np.asarray(con.dual_value)
        if k not in kinked:
            np.testing.assert_allclose(dual, ref, atol=10 * tol * scale)
            continue
        slack = np.abs(np.asarray(con.expr.value))
        assert np.all(dual >= 0) and np.all(dual[slack > 1e-4] == 0)
        if k in totals:
            assert dual.sum() == pytest.approx(ref.sum(), rel=10 * tol, abs=10 * tol * scale)


def _nonneg_lasso() -> cp.Problem:
    """At x_j = 0 the l1 term's subgradient and x_j >= 0's multiplier share the reduced
    cost (not unique); the upper bounds hold at x_j > 0."""
    x = cp.Variable(12)
    objective = cp.sum_squares(LASSO_A @ x - LASSO_B) + 0.5 * cp.norm1(x)
    return cp.Problem(cp.Minimize(objective), [x >= 0, x[:4] <= 0.2])


def _nonneg_lasso_kkt(prob: cp.Problem, tol: float) -> None:
    """0 in 2 A'(A x - b) + w d|x| - lam + mu (lam, mu the duals of x >= 0, x[:4] <= 0.2):
    the bound multipliers complete the l1 term's subgradient."""
    x = prob.variables()[0].value
    grad = 2 * LASSO_A.T @ (LASSO_A @ x - LASSO_B)
    lam, mu = (np.asarray(c.dual_value) for c in prob.constraints)
    reduced = grad - lam
    reduced[:4] += mu
    positive = x > 1e-6
    np.testing.assert_allclose(reduced[positive], -0.5, atol=tol)
    assert np.all(np.abs(reduced[~positive]) <= 0.5 + tol)


def _bounded_huber() -> cp.Problem:
    A, b = RNG.standard_normal((40, 10)), 3 * RNG.standard_normal(40)
    x = cp.Variable(10)
    objective = cp.sum(cp.huber(A @ x - b, 1.0)) + 0.1 * cp.sum_squares(x)
    return cp.Problem(cp.Minimize(objective), [x >= -0.3, 2 * x <= 0.4, x[3] >= 0.1])


def _tv_in_box() -> cp.Problem:
    """A bound and a TV term on the same variable, the bound on a masked subset."""
    X = cp.Variable((8, 8))
    noisy = np.linspace(-0.5, 1.5, 64).reshape(8, 8) + 0.3 * RNG.standard_normal((8, 8))
    mask = RNG.uniform(size=(8, 8)) < 0.5
    constraints = [X[mask] >= 0.1, X <= 1]
    return cp.Problem(cp.Minimize(cp.sum_squares(X - noisy) + 0.3 * cp.tv(X)), constraints)


MODELS = {"nonneg_lasso": _nonneg_lasso, "bounded_huber": _bounded_huber, "tv_in_box": _tv_in_box}
# The constraints with duals that are not unique, and those among them whose sum is
# (``_assert_matches``): TV's subgradient on a flat stretch at a bound moves the
# multiplier among its entries only.
KINKED = {"nonneg_lasso": (0,), "bounded_huber": (), "tv_in_box": (0, 1)}
TOTALS = {"nonneg_lasso": (), "bounded_huber": (), "tv_in_box": (0, 1)}


@pytest.mark.parametrize("name", MODELS)
def test_bounds_are_the_programs_not_terms(name: str) -> None:
    prob = MODELS[name]()
    lowered = StructureLowering(prob).lower()
    assert lowered.program.has_bounds
    assert not any(t.function.is_indicator for t in lowered.program.terms)
    assert not lowered.constraints
    assert [b.constraint_id for b in lowered.bound_constraints] == [c.id for c in prob.constraints]


@pytest.mark.parametrize(
    "name, algorithm",
    [
        ("nonneg_lasso", "auto"),
        ("nonneg_lasso", "pdhg"),
        ("nonneg_lasso", "admm"),
        ("bounded_huber", "auto"),
        ("bounded_huber", "fista"),
        ("bounded_huber", "pdhg"),
        ("bounded_huber", "admm"),
        ("tv_in_box", "auto"),
        ("tv_in_box", "pdhg"),
        ("tv_in_box", "admm"),
    ],
)
def test_bounded_model_matches_clarabel(name: str, algorithm: str) -> None:
    prob = MODELS[name]()
    reference = _reference(prob)
    prob.solve(solver="NABLAPROX", structure="always", algorithm=algorithm, **EPS)
    assert prob.solver_stats.extra_stats["algorithm"] == (
        algorithm if algorithm != "auto" else prob.solver_stats.extra_stats["algorithm"]
    )
    _assert_matches(prob, reference, kinked=KINKED[name], totals=TOTALS[name])
    if name == "nonneg_lasso":
        _nonneg_lasso_kkt(prob, 1e-5)


def test_tv_inpainting_in_a_box_matches_clarabel() -> None:
    """The structured suite's TV inpainting (0 <= X <= 1) at 10 x 10. Its solution is not
    unique (a missing pixel inside a flat stretch may take any value between its
    neighbours'): the objective, the box, and the bounds' duals (zero: the bounds hold
    no solution of TV inpainting from data inside [0, 1]) are compared."""
    prob = build_tv_inpainting(size=10)
    value, _, duals = _reference(prob)
    for algorithm in ("auto", "admm"):
        prob.solve(solver="NABLAPROX", eps_abs=1e-6, eps_rel=1e-6, algorithm=algorithm)
        expected = "pdhg" if algorithm == "auto" else "admm"
        assert prob.solver_stats.extra_stats["algorithm"] == expected
        _check_tv_inpainting(prob, value, duals)


def _check_tv_inpainting(prob: cp.Problem, value: float, duals: list) -> None:
    assert prob.status == cp.OPTIMAL
    assert prob.value == pytest.approx(value, rel=1e-5)
    X = prob.variables()[0].value
    assert X.min() >= 0 and X.max() <= 1
    for con, ref in zip(prob.constraints[1:], duals[1:], strict=True):
        np.testing.assert_allclose(con.dual_value, ref, atol=1e-5)


def test_hqs_with_bounds() -> None:
    """HQS (a penalty method, slow at tight tolerances) splits the box off like ADMM: on
    a separable model, x = clip(soft(t), l, u) and the multipliers are Clarabel's."""
    t = np.array([2.0, -3.0, 0.5, -0.02, 1.0])
    x = cp.Variable(5)
    cons = [x >= np.array([-1.0, -1.0, 0.6, -1.0, 0.0]), x <= np.array([1.0, 9.0, 2.0, 0.3, 0.5])]
    prob = cp.Problem(cp.Minimize(cp.sum_squares(x - t) + 0.1 * cp.norm1(x)), cons)
    reference = _reference(prob)
    prob.solve(solver="NABLAPROX", structure="always", algorithm="hqs", eps_abs=1e-7, eps_rel=1e-7)
    assert prob.solver_stats.extra_stats["algorithm"] == "hqs"
    _assert_matches(prob, reference, tol=1e-5)


def test_fista_does_not_apply_to_a_nonsmooth_term_with_bounds() -> None:
    prob = _nonneg_lasso()
    with pytest.raises(ValueError, match="fista.*does not apply.*variable bounds"):
        prob.solve(solver="NABLAPROX", structure="always", algorithm="fista")
    compiled = cvxprox.compile(prob, structure="always")
    assert compiled.algorithm != "fista"


def test_the_tightest_bound_holds_the_dual() -> None:
    """Several bounds on one entry: the tightest per side is the program's, and only its
    constraint gets the multiplier (bounds=, nonneg and constraints together)."""
    target = np.array([-2.0, -1.0, 0.3, 2.0, 3.0])
    x = cp.Variable(5, nonneg=True, bounds=[-1.0, np.array([5.0, 5.0, 5.0, 1.5, 5.0])])
    cons = [x >= -0.5, x[:2] >= 0.25, x <= 2.5, x[3:] <= 1.0, x[3:] <= 2.0]
    prob = cp.Problem(cp.Minimize(cp.sum_squares(x - target) + cp.norm2(x)), cons)
    lowered = StructureLowering(prob).lower()
    np.testing.assert_array_equal(lowered.program.l, [0.25, 0.25, 0, 0, 0])
    np.testing.assert_array_equal(lowered.program.u, [2.5, 2.5, 2.5, 1.0, 1.0])
    reference = _reference(prob)
    prob.solve(solver="NABLAPROX", structure="always", **EPS)
    _assert_matches(prob, reference)
    assert np.all(cons[0].dual_value == 0) and np.all(cons[4].dual_value == 0)
    assert np.all(cons[1].dual_value > 0) and cons[3].dual_value[1] > 0


def test_parametric_bounds_refresh_on_a_resolve() -> None:
    """x >= lo and the attribute bounds=[., hi] with parameters: each solve lowers at the
    current values, with the chain reused; values and duals as Clarabel's."""
    lo, hi = cp.Parameter(6), cp.Parameter(6)
    x = cp.Variable(6, bounds=[None, hi])
    A, b = RNG.standard_normal((15, 6)), RNG.standard_normal(15)
    lower = x >= lo
    objective = cp.Minimize(cp.sum(cp.huber(A @ x - b)) + 0.1 * cp.norm2(x))
    prob, clarabel = cp.Problem(objective, [lower]), cp.Problem(objective, [lower])
    chain = None
    for step in range(3):
        lo.value = -0.1 * (step + 1) * np.ones(6) + 0.2 * RNG.standard_normal(6)
        hi.value = lo.value + 0.3 + 0.2 * step
        reference = _reference(clarabel)
        prob.solve(solver="NABLAPROX", structure="always", **EPS)
        if chain is not None:
            assert prob._cache.solving_chain is chain
        chain = prob._cache.solving_chain
        _assert_matches(prob, reference)
        assert np.all(x.value >= lo.value) and np.all(x.value <= hi.value)


def test_bounds_of_a_lowering_solved_as_cones_keep_their_duals() -> None:
    """An l1 regression in a box under structure="auto" is solved by its assembled view
    (the structure does not pay off); the bound rows' duals are the constraints'."""
    A, b = RNG.standard_normal((20, 6)), RNG.standard_normal(20)
    x = cp.Variable(6)
    cons = [x >= -0.1, x[2:] <= 0.05]
    prob = cp.Problem(cp.Minimize(cp.norm1(A @ x - b) + cp.sum_squares(x)), cons)
    assert "built from the structured lowering" in cvxprox.compile(prob).reduction
    reference = _reference(prob)
    prob.solve(solver="NABLAPROX", **EPS)
    _assert_matches(prob, reference)


@pytest.mark.parametrize("algorithm", ["pdhg", "admm", "hqs"])
def test_every_method_on_terms_projects_a_program_onto_its_bounds(algorithm: str) -> None:
    """min ||x - t||^2 + 0.1 ||x||_1 over l <= x <= u (IR level): x = clip(soft(t), l, u)
    (separable), and the reported y is the terms' own."""
    t = np.array([2.0, -3.0, 0.5, -0.02, 1.0])
    l, u = np.array([-1.0, -1.0, 0.6, -np.inf, 0.0]), np.array([1.0, np.inf, 2.0, 0.0, 0.5])
    terms = [
        Term(SumSquares(5), Identity(5), t, "fit"),
        Term(Norm1(5, weight=0.1), Identity(5), np.zeros(5), "l1"),
    ]
    program = Program(np.zeros(5), terms, l=l, u=u)
    eps = 1e-7 if algorithm == "hqs" else 1e-10
    options = SolverOptions.from_kwargs(
        {"algorithm": algorithm, "eps_abs": eps, "eps_rel": eps, "max_iters": 100000}
    )
    result = solve_program(program, options)
    soft = np.sign(t) * np.maximum(np.abs(t) - 0.05, 0.0)
    np.testing.assert_allclose(result.x, np.clip(soft, l, u), atol=100 * eps)
    assert result.y.shape == (10,) and result.z.shape == (10,)


def _masked_equality() -> tuple[cp.Problem, np.ndarray]:
    """multiply(m, x) == m * 0.4 with zeros in m (entries 0 == 0) and coefficients of
    both signs: the other entries are fixed at 0.4."""
    x = cp.Variable(12)
    m = np.zeros(12)
    m[[1, 4, 6]] = [1.0, -2.0, 0.5]
    objective = cp.sum_squares(LASSO_A @ x - LASSO_B) + 0.3 * cp.norm1(x)
    return cp.Problem(cp.Minimize(objective), [cp.multiply(m, x) == m * 0.4]), m


def test_an_equality_on_entries_fixes_them_as_bounds() -> None:
    prob, m = _masked_equality()
    lowered = StructureLowering(prob).lower()
    program = lowered.program
    assert not program.terms[-1].function.is_indicator and not lowered.constraints
    fixed = m != 0
    np.testing.assert_array_equal(program.l[fixed], 0.4)
    np.testing.assert_array_equal(program.u[fixed], 0.4)
    assert np.all(np.isinf(program.l[~fixed])) and np.all(np.isinf(program.u[~fixed]))


@pytest.mark.parametrize("algorithm", ["auto", "pdhg", "admm"])
def test_an_equality_held_as_bounds_matches_clarabel(algorithm: str) -> None:
    """Values and the equality's dual (-r_j / a_j on the fixed entries, 0 on the vacuous
    ones) as Clarabel's: unique here, the fixed entries are away from l1's kink."""
    prob, _ = _masked_equality()
    reference = _reference(prob)
    prob.solve(solver="NABLAPROX", structure="always", algorithm=algorithm, **EPS)
    _assert_matches(prob, reference)


def test_an_equality_at_a_bound_shares_the_multiplier() -> None:
    """x[0] == 1 and x <= 1: the equality (first) holds both of x_0's bounds, x <= 1 gets
    0 there; Clarabel may split the multiplier between them, so the sum nu_0 + mu_0
    (the stationarity of x_0: r_0 + nu_0 + mu_0 = 0) is compared, and the rest exactly."""
    x = cp.Variable(12)
    cons = [x[0] == 1, x <= 1]
    objective = cp.sum_squares(LASSO_A @ x - LASSO_B) + 0.3 * cp.norm1(x)
    prob = cp.Problem(cp.Minimize(objective), cons)
    value, _, duals = _reference(prob)
    prob.solve(solver="NABLAPROX", structure="always", **EPS)
    assert prob.status == cp.OPTIMAL and prob.value == pytest.approx(value, rel=1e-7)
    nu, mu = float(cons[0].dual_value), np.asarray(cons[1].dual_value)
    assert mu[0] == 0.0
    assert nu + mu[0] == pytest.approx(float(duals[0]) + duals[1][0], abs=1e-5)
    np.testing.assert_allclose(mu[1:], duals[1][1:], atol=1e-5)


@pytest.mark.parametrize(
    "constraints",
    [
        lambda x: [cp.multiply(np.r_[np.zeros(3), np.ones(9)], x) == 1.0],  # 0 == 1 entries
        lambda x: [x[0] == 2, x <= 1],  # an equality across a bound
    ],
    ids=["vacuous_entry_nonzero", "crossing"],
)
def test_an_infeasible_equality_on_entries_is_certified(constraints) -> None:
    """Kept as a term (0 == 1), or as rows (bounds that cross): ADMM certifies the
    infeasibility, as Clarabel finds it."""
    x = cp.Variable(12)
    prob = cp.Problem(cp.Minimize(cp.sum_squares(LASSO_A @ x - LASSO_B)), constraints(x))
    prob.solve(solver="NABLAPROX", structure="always", algorithm="admm")
    assert prob.status == cp.INFEASIBLE


def test_fixed_variables_leave_the_iterations() -> None:
    """Entries fixed by an equality (bounds l_j = u_j) are eliminated before the method
    runs (``FixedColumns``): x, the value and every dual, the equality's from the reduced
    costs on the original program, match Clarabel's."""
    rng = np.random.default_rng(3)
    A, b = rng.standard_normal((30, 12)), rng.standard_normal(30)
    x = cp.Variable(12)
    cons = [x[:4] == np.array([0.5, -0.2, 0.1, 0.3]), x >= -0.4, x <= 0.6]
    prob = cp.Problem(cp.Minimize(cp.norm2(A @ x - b) + 0.3 * cp.norm1(x)), cons)
    reference = _reference(prob)
    compiled = cvxprox.compile(prob, structure="always")
    assert "4 of 12 variables fixed (l_j = u_j) and eliminated" in compiled.reason
    prob.solve(solver="NABLAPROX", structure="always", eps_abs=1e-8, eps_rel=1e-8)
    assert prob.solver_stats.extra_stats["fixed_columns"] == 4
    _assert_matches(prob, reference, tol=1e-5)
