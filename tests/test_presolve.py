"""Presolve (cvxprox/solvers/presolve.py): each reduction against Clarabel at tight
tolerance (the values and every constraint's dual, removed rows included), presolve on
and off on the zoo and on Netlib, certificates of programs that presolve settles, and
re-solves with new parameter values."""

from dataclasses import replace

import cvxpy as cp
import numpy as np
import pytest
import scipy.sparse as sp

import cvxprox  # noqa: F401
from compare.datasets import data_dir, load_netlib, netlib_problems
from compare.solve import worst_violation
from compare.suites.zoo import MODELS, REFERENCE_OPTIONS
from cvxprox.functions.cones import NonnegCone, ZeroCone
from cvxprox.interface.options import SolverOptions
from cvxprox.ir.program import AssembledProgram, RowTerm
from cvxprox.solvers import select
from cvxprox.solvers.common.kkt_checks import KKTChecker, KKTUnits
from cvxprox.solvers.common.scaling import RuizScaling
from cvxprox.solvers.presolve import Presolved, presolve

TIGHT = {"eps_abs": 1e-9, "eps_rel": 1e-9}
HAVE_NETLIB = (data_dir() / "netlib").is_dir()


def _every_rule(quadratic: bool) -> tuple[cp.Problem, list[cp.Variable], dict[str, int]]:
    """A model on which each reduction applies, and the count each must report."""
    rng = np.random.default_rng(3)
    n, m = 12, 8
    A = rng.standard_normal((m, n))
    x = cp.Variable(n)
    w = cp.Variable(2)  # only in the objective: empty columns
    Z = np.vstack([np.zeros(n), A[:2]])  # an empty row
    constraints = [
        A @ x <= A @ rng.random(n) + rng.random(m),
        x >= -1,  # 12 singleton rows, 7 more below
        x <= 2,  # 12 singleton rows
        x[0] == 0.25,  # a fixed column (substituted)
        3 * x[1] <= 1.5,  # tighter than x <= 2
        x[2] >= -4,  # looser than x >= -1: no multiplier
        Z @ x <= np.r_[1.0, 50.0, 60.0],  # empty row; duplicates of rows 0, 1 of A
        A[3] @ x >= -0.5,  # with the next: the equality A[3] x = -0.5
        -2 * A[3] @ x >= 1.0,
        cp.sum(x[4:7]) >= -10,  # free: the bounds make it hold
        w >= 0,
        w <= 1,
    ]
    objective = rng.standard_normal(n) @ x + np.array([1.0, -2.0]) @ w
    if quadratic:
        objective += 0.5 * cp.sum_squares(x - rng.standard_normal(n))
    # Rows 0, 1 and 3 of A come back (3 duplicates and the equality: 4).
    counts = {"empty": 1, "singleton (to bounds)": 31, "duplicate": 4, "free": 1}
    return cp.Problem(cp.Minimize(objective), constraints), [x, w], counts


@pytest.mark.parametrize("quadratic", [False, True])
def test_every_rule_matches_clarabel(quadratic: bool) -> None:
    """The LP runs auto (the embedding then PDHG), the QP PDHG: presolve runs before both (not
    before ADMM alone)."""
    prob, variables, counts = _every_rule(quadratic)
    prob.solve(solver="CLARABEL", **REFERENCE_OPTIONS)
    ref_value = prob.value
    ref_x = [v.value.copy() for v in variables]
    ref_y = [np.array(con.dual_value, copy=True) for con in prob.constraints]
    prob.solve(solver="NABLAPROX", algorithm="pdhg" if quadratic else "auto", **TIGHT)
    report = prob.solver_stats.extra_stats["presolve"]
    if not quadratic:  # the QP's x - r rows add one singleton row and fixed column
        for name, count in counts.items():
            assert f"{count} {name}" in report
        assert "1 fixed and 2 empty columns" in report
    assert prob.status == cp.OPTIMAL
    assert prob.value == pytest.approx(ref_value, rel=1e-7)
    for v, ref in zip(variables, ref_x, strict=True):
        np.testing.assert_allclose(v.value, ref, atol=1e-6)
    y = [np.array(con.dual_value) for con in prob.constraints]
    # The two rows of the equality A[3] x = -0.5 share one multiplier d_7 - 2 d_8 (any
    # split is optimal); presolve puts it on one row.
    assert y[7] - 2 * y[8] == pytest.approx(ref_y[7] - 2 * ref_y[8], abs=1e-5)
    assert min(y[7], y[8]) == 0.0
    for k, (con, ref) in enumerate(zip(prob.constraints, ref_y, strict=True)):
        if k not in (7, 8):
            np.testing.assert_allclose(y[k], ref, atol=1e-5, err_msg=str(con))


def _farkas_ok(program: AssembledProgram, y: np.ndarray) -> None:
    """y in K° (IR convention), A'y = 0 and b'y = -1."""
    np.testing.assert_allclose(program.A.T @ y, 0.0, atol=1e-12)
    assert program.b @ y == pytest.approx(-1.0)
    np.testing.assert_allclose(program.cone.project_polar(y), y, atol=1e-12)


def _program(A: np.ndarray, b: np.ndarray, zero: int) -> AssembledProgram:
    m, n = A.shape
    terms = [RowTerm(ZeroCone(zero), slice(0, zero)), RowTerm(NonnegCone(m - zero), slice(zero, m))]
    return AssembledProgram(np.ones(n), sp.csc_array(A), b, terms)


@pytest.mark.parametrize(
    ("A", "b", "zero"),
    [
        # an empty equality row 0 = 1 after x_0 = 1 is substituted
        (np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), np.array([1.0, 2.0, 0.0]), 1),
        # crossing bounds x_0 >= 2, x_0 <= 1
        (np.array([[1.0, 1.0], [1.0, 0.0], [-1.0, 0.0]]), np.array([0.0, 2.0, -1.0]), 0),
        # activity: x in [0, 1]^2 and x_0 + x_1 >= 3
        (np.array([[1, 0], [0, 1], [-1, 0], [0, -1], [1, 1.0]]), np.r_[0, 0, -1, -1, 3.0], 0),
        # parallel rows that cross: x_0 + 2 x_1 >= 1 and -2 x_0 - 4 x_1 >= 0
        (np.array([[1.0, 2.0], [-2.0, -4.0]]), np.array([1.0, 0.0]), 0),
        # parallel equalities that disagree
        (np.array([[1.0, 2.0], [3.0, 6.0]]), np.array([1.0, 2.0]), 2),
    ],
)
def test_infeasible_by_presolve_has_a_farkas_certificate(
    A: np.ndarray, b: np.ndarray, zero: int
) -> None:
    program = _program(A, b, zero)
    presolved = presolve(program)
    assert presolved.status == cp.INFEASIBLE
    _farkas_ok(program, presolved.certificate)


def test_unbounded_empty_column() -> None:
    """x_1 only in the objective with no lower bound: unbounded along -e_1."""
    x = cp.Variable(2)
    prob = cp.Problem(cp.Minimize(x[0] + x[1]), [x[0] >= 0, x[1] <= 3])
    prob.solve(solver="NABLAPROX")
    assert prob.status == cp.UNBOUNDED
    assert prob.solver_stats.extra_stats["algorithm"] == "presolve"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_zoo_presolve_on_and_off_agree(name: str) -> None:
    values = []
    for flag in (True, False):
        prob = MODELS[name](0)
        prob.solve(solver="NABLAPROX", presolve=flag)
        assert prob.status == cp.OPTIMAL
        values.append(prob.value)
    assert values[0] == pytest.approx(values[1], rel=1e-4, abs=1e-4)


@pytest.mark.skipif(not HAVE_NETLIB, reason="Netlib data not found (../shared/data)")
@pytest.mark.parametrize("name", netlib_problems()[:6] if HAVE_NETLIB else [])
def test_netlib_presolve_on_and_off_agree(name: str) -> None:
    for flag in (True, False):
        prob, known = load_netlib(name)
        prob.solve(solver="NABLAPROX", presolve=flag)
        assert prob.status == cp.OPTIMAL
        assert abs(prob.value - known) <= 1e-4 * max(1.0, abs(known))


@pytest.mark.skipif(not HAVE_NETLIB, reason="Netlib data not found (../shared/data)")
@pytest.mark.parametrize(("algorithm", "flag"), [("auto", True), ("auto", False), ("pdhg", True)])
def test_grow7_is_never_optimal_and_wrong(algorithm: str, flag: bool) -> None:
    """GROW7 has x up to 1e6 in rows with O(1) data: PDHG's iterate with a 2.9e-2
    violation passed a test relative to (|A||x|)_i ~ 1e5 and was returned as optimal;
    the row test is relative to |(Ax)_i| now."""
    prob, known = load_netlib("GROW7")
    prob.solve(solver="NABLAPROX", algorithm=algorithm, presolve=flag, time_limit=60)
    if prob.status == cp.OPTIMAL:
        assert worst_violation(prob) <= 1e-4
        assert abs(prob.value - known) <= 1e-4 * abs(known)


@pytest.mark.skipif(not HAVE_NETLIB, reason="Netlib data not found (../shared/data)")
@pytest.mark.parametrize("name", ["SHELL", "SCFXM1"])
def test_a_postsolved_point_failing_the_original_test_resumes_tighter(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the reduced program's units 100 times looser than the original's, PDHG at
    1e-4 ends optimal on the reduced SHELL and SCFXM1 with points whose postsolved
    residuals fail the original test; the reduced run resumes with tighter tolerances
    (twice) until the original test passes."""
    reduced_units = Presolved.reduced_units

    def looser(self: Presolved, units: KKTUnits) -> KKTUnits:
        own = reduced_units(self, units)
        return replace(own, row=100.0 * own.row, col=100.0 * own.col)

    runs = []
    run = select._run

    def counted(*args: object) -> object:
        runs.append(args[1].eps_abs)
        return run(*args)

    monkeypatch.setattr(Presolved, "reduced_units", looser)
    monkeypatch.setattr(select, "_run", counted)
    prob, known = load_netlib(name)
    eps = {"eps_abs": 1e-4, "eps_rel": 1e-4}
    prob.solve(solver="NABLAPROX", algorithm="pdhg", time_limit=60, **eps)
    assert runs == pytest.approx([1e-4, 1e-5, 1e-6])
    assert prob.status == cp.OPTIMAL
    assert "presolve_check" not in prob.solver_stats.extra_stats
    assert abs(prob.value - known) <= 1e-4 * abs(known)
    assert worst_violation(prob) <= 1e-3


def test_dpp_resolve_presolves_the_new_values() -> None:
    """Bounds from parameters: each solve presolves the evaluated program (PDHG: presolve
    does not run before ADMM alone), warm started from the last solution; the last values
    fix x_6 = x_7 = 3 (two fixed columns removed, whose two bound duals share one
    multiplier)."""
    rng = np.random.default_rng(5)
    A = rng.standard_normal((6, 8))
    low = cp.Parameter(8)
    x = cp.Variable(8)
    prob = cp.Problem(
        cp.Minimize(rng.standard_normal(8) @ x + cp.sum_squares(x)),
        [A @ x <= 5.0, x >= low, x <= 3.0],
    )
    for value in (-np.ones(8), np.linspace(-0.5, 0.5, 8), np.r_[np.zeros(6), 3.0, 3.0]):
        low.value = value
        prob.solve(solver="CLARABEL", **REFERENCE_OPTIONS)
        ref_x = x.value.copy()
        ref_y = [np.array(con.dual_value, copy=True) for con in prob.constraints]
        prob.solve(solver="NABLAPROX", algorithm="pdhg", warm_start=True, **TIGHT)
        assert prob.status == cp.OPTIMAL
        presolved = prob.solver_stats.extra_stats.get("presolve", "")
        assert ("2 fixed" in presolved) == (value[-1] == 3.0), presolved
        y = [con.dual_value for con in prob.constraints]
        np.testing.assert_allclose(x.value, ref_x, atol=1e-6)
        np.testing.assert_allclose(y[0], ref_y[0], atol=1e-5)
        np.testing.assert_allclose(y[1] - y[2], ref_y[1] - ref_y[2], atol=1e-5)
        np.testing.assert_allclose(np.minimum(y[1], y[2])[:6], 0.0, atol=1e-7)


@pytest.mark.parametrize(("algorithm", "presolved"), [("admm", False), ("auto", True)])
def test_admm_alone_solves_the_program_as_it_is(algorithm: str, presolved: bool) -> None:
    """Before ADMM alone (``algorithm='admm'``) presolve does not run: its KKT
    factorization takes bound rows, fixed columns and duplicate rows as they are. ``auto``
    takes the embedding for a QP, after presolve. Both answers are Clarabel's."""
    prob, variables, _ = _every_rule(quadratic=True)
    prob.solve(solver="CLARABEL", **REFERENCE_OPTIONS)
    ref_value, ref_x = prob.value, [v.value.copy() for v in variables]
    prob.solve(solver="NABLAPROX", algorithm=algorithm, **TIGHT)
    stats = prob.solver_stats.extra_stats
    assert stats["algorithm"] == ("hsde" if presolved else "admm")
    assert ("presolve" in stats) == presolved
    assert prob.status == cp.OPTIMAL
    assert prob.value == pytest.approx(ref_value, rel=1e-7)
    for v, ref in zip(variables, ref_x, strict=True):
        np.testing.assert_allclose(v.value, ref, atol=1e-6)


def test_a_certificate_is_tested_on_the_original_program() -> None:
    """Presolve's Farkas vector for crossing bounds (x_0 >= 2, x_0 <= 1) passes the
    original program's test; with -t on the row x_0 + x_1 >= 0 (still in K°, b'y = -1
    still, ||A'y|| = t) it passes only the loose test 1e-6 at t = 5e-7 (infeasible_inaccurate)
    and neither at t = 1e-2 (solver_error)."""
    import cvxpy.settings as s  # noqa: PLC0415

    from cvxprox.interface.options import SolverOptions  # noqa: PLC0415
    from cvxprox.solvers.common.result import SolveResult  # noqa: PLC0415
    from cvxprox.solvers.select import _original_checker, _verify_certificate  # noqa: PLC0415

    program = _program(np.array([[1.0, 1.0], [1.0, 0.0], [-1.0, 0.0]]), np.r_[0.0, 2.0, -1.0], 0)
    y = presolve(program).certificate
    options = SolverOptions()
    checker = _original_checker(program, options)
    statuses = []
    for t in (0.0, 5e-7, 1e-2):
        moved = y - t * np.array([1.0, 0.0, 0.0])
        result = SolveResult(s.INFEASIBLE, None, None, moved, "presolve", 0, 0.0, 0.0)
        _verify_certificate(result, checker, options)
        statuses.append(result.status)
    assert statuses == [s.INFEASIBLE, s.INFEASIBLE_INACCURATE, s.SOLVER_ERROR]


def _shifted_program() -> AssembledProgram:
    """An LP whose fixed column x_0 = 2 (from 4 x_0 = 8) carries most of three rows and of
    the objective, with bounds from singleton rows of coefficients 3, -0.5, 2 and 1."""
    rng = np.random.default_rng(5)
    n, m = 5, 3
    A_in = rng.standard_normal((m, n))
    A_in[:, 0] = [50.0, -80.0, 30.0]
    eye = np.eye(n)
    bounds = np.vstack([3.0 * eye[1], -0.5 * eye[2], 2.0 * eye[2], 2.0 * eye[3], eye[4]])
    rows = np.vstack([4.0 * eye[0], A_in, bounds])
    b = np.concatenate(
        [[8.0], A_in @ np.r_[2.0, 0.5, 0.5, 0.5, 0.5] - 1.0, [0.3, -2.0, -1.0, -1.0, 0.0]]
    )
    k = rows.shape[0] - 1
    terms = [RowTerm(ZeroCone(1), slice(0, 1)), RowTerm(NonnegCone(k), slice(1, k + 1))]
    c = np.r_[40.0, rng.random(n - 1)]
    return AssembledProgram(c, sp.csc_array(rows), b, terms, offset=1.5)


def test_the_reduced_program_is_tested_as_the_original() -> None:
    """A presolved program carries the original's termination units and magnitudes
    (``Presolved.reduced_units``): at any point, its worst primal and dual ratios are the
    original's at the postsolved point (each bound row stands for its provenance row, the
    fixed column's share of each row counts in the row's magnitude), and at the optimum
    so is the gap's tolerance (the fixed column's share of the objective counts too)."""
    original = _shifted_program()
    presolved = presolve(original)
    reduced = presolved.program
    assert "1 fixed" in presolved.stats.describe() and reduced.n == original.n - 1
    options = SolverOptions(eps_abs=1e-6, eps_rel=1e-6)
    checker = KKTChecker(original, RuizScaling(original, options.scaling_iters), options)
    reduced.units = presolved.reduced_units(checker.units)
    own = KKTChecker(reduced, RuizScaling(reduced, options.scaling_iters), options)
    rng = np.random.default_rng(0)
    for _ in range(5):
        x_r = rng.standard_normal(reduced.n)
        y_r = reduced.cone.project_polar(rng.standard_normal(reduced.m))
        z_r = reduced.cone.project(reduced.A @ x_r - reduced.b)
        x, y = presolved.postsolve(x_r, y_r)
        z = original.cone.project(original.A @ x - original.b)
        mine, theirs = own.evaluate(x_r, z_r, y_r), checker.evaluate(x, z, y)
        assert mine.primal / mine.primal_tol == pytest.approx(
            theirs.primal / theirs.primal_tol, rel=1e-12
        )
        assert mine.dual / mine.dual_tol == pytest.approx(theirs.dual / theirs.dual_tol, rel=1e-12)
        assert mine.primal_objective == pytest.approx(theirs.primal_objective, rel=1e-12)
    prob_x = cp.Variable(original.n)
    lp = cp.Problem(
        cp.Minimize(original.c @ prob_x + original.offset),
        [original.A[:1] @ prob_x == original.b[:1], original.A[1:] @ prob_x >= original.b[1:]],
    )
    lp.solve(solver="CLARABEL", **REFERENCE_OPTIONS)
    x = prob_x.value
    y = np.concatenate([lp.constraints[0].dual_value, -lp.constraints[1].dual_value])
    warm = presolved.reduce_warm_start({"x": x, "y": y})
    mine = own.evaluate(warm["x"], warm["z"], warm["y"])
    theirs = checker.evaluate(x, original.cone.project(original.A @ x - original.b), y)
    assert mine.gap_tol == pytest.approx(theirs.gap_tol, rel=1e-6)
