"""The restarted Halpern PDHG algorithm (``algorithm="pdhg"``) against CLARABEL."""

import math
import time

import cvxpy as cp
import numpy as np
import pytest
import scipy.sparse as sp

import cvxprox  # noqa: F401  (registers NABLAPROX)
from compare.datasets import data_dir, load_netlib
from cvxprox.backend import get_backend
from cvxprox.functions.cones import NonnegCone, ProductCone, SecondOrderCone, ZeroCone
from cvxprox.interface.options import SolverOptions
from cvxprox.interface.solver import PROGRAM
from cvxprox.ir.program import AssembledProgram
from cvxprox.solvers import pdhg
from cvxprox.solvers.common.result import BestIterate
from cvxprox.solvers.common.scaling import RuizScaling
from cvxprox.solvers.pdhg import PDHG, _ConeProblem, _step_sizes
from cvxprox.solvers.presolve import presolve

TIGHT = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}
# These tests are about the cone path's PDHG: structure-preserving lowering is off.
PDHG_OPTS = {
    "algorithm": "pdhg",
    "eps_abs": 1e-6,
    "eps_rel": 1e-6,
    "warm_start": False,
    "structure": "never",
}


def _reference(prob: cp.Problem, x: cp.Variable) -> tuple[float, np.ndarray]:
    prob.solve(solver="CLARABEL", **TIGHT)
    assert prob.status == cp.OPTIMAL
    return prob.value, np.array(x.value, copy=True)


def _pdhg(prob: cp.Problem, **opts: object) -> None:
    prob.solve(solver="NABLAPROX", **{**PDHG_OPTS, **opts})
    assert prob.solver_stats.extra_stats["algorithm"] == "pdhg"


def _compare(prob: cp.Problem, x: cp.Variable, obj_rtol: float, x_atol: float) -> None:
    ref_value, ref_x = _reference(prob, x)
    _pdhg(prob)
    assert prob.status == cp.OPTIMAL
    assert prob.value == pytest.approx(ref_value, rel=obj_rtol, abs=obj_rtol)
    np.testing.assert_allclose(x.value, ref_x, atol=x_atol)


def _lp(seed: int = 0, m: int = 30, n: int = 20) -> tuple[cp.Problem, cp.Variable, cp.Parameter]:
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, n))
    b = cp.Parameter(m, value=A @ rng.random(n) + rng.random(m))
    c = rng.standard_normal(n)
    x = cp.Variable(n)
    return cp.Problem(cp.Minimize(c @ x), [A @ x <= b, x >= -1, x <= 2]), x, b


def _program(prob: cp.Problem) -> AssembledProgram:
    """The IR of a CVXPY problem, as NABLAPROX builds it."""
    data, _, _ = prob.get_problem_data(solver="NABLAPROX", solver_opts={"structure": "never"})
    return data[PROGRAM].assemble()


def test_lp() -> None:
    prob, x, _ = _lp()
    _compare(prob, x, obj_rtol=1e-5, x_atol=1e-4)


def test_equality_lp() -> None:
    rng = np.random.default_rng(1)
    A = rng.standard_normal((15, 40))
    x = cp.Variable(40)
    prob = cp.Problem(cp.Minimize(rng.random(40) @ x), [A @ x == A @ rng.random(40), x >= 0])
    _compare(prob, x, obj_rtol=1e-5, x_atol=1e-4)


def test_markowitz_qp() -> None:
    rng = np.random.default_rng(2)
    n = 30
    F = rng.standard_normal((n, 5)) * 0.3
    Sigma = F @ F.T + np.diag(rng.random(n) * 0.1)
    mu = rng.random(n) * 0.1
    w = cp.Variable(n)
    prob = cp.Problem(
        cp.Minimize(cp.quad_form(w, Sigma) - mu @ w), [cp.sum(w) == 1, w >= 0, w <= 0.2]
    )
    _compare(prob, w, obj_rtol=1e-5, x_atol=1e-4)


def test_least_squares_exact_diagonal_prox(capsys: pytest.CaptureFixture[str]) -> None:
    """sum_squares gives a diagonal P, which PDHG takes by its exact prox."""
    rng = np.random.default_rng(14)
    A, b = rng.standard_normal((60, 40)), rng.standard_normal(60)
    x = cp.Variable(40)
    prob = cp.Problem(cp.Minimize(cp.sum_squares(A @ x - b)), [x >= 0, cp.sum(x) <= 1])
    ref_value, ref_x = _reference(prob, x)
    _pdhg(prob, verbose=True)
    assert "P diagonal (exact prox)" in capsys.readouterr().out
    assert prob.status == cp.OPTIMAL
    assert prob.value == pytest.approx(ref_value, rel=1e-5)
    np.testing.assert_allclose(x.value, ref_x, atol=1e-4)


def test_socp() -> None:
    rng = np.random.default_rng(3)
    n = 10
    x = cp.Variable(n)
    cons = [cp.norm(x) <= 3]
    for _ in range(5):
        Ai, bi, ci = rng.standard_normal((4, n)), rng.standard_normal(4), rng.standard_normal(n)
        cons.append(cp.norm(Ai @ x + bi) <= ci @ x + 5)
    prob = cp.Problem(cp.Minimize(rng.standard_normal(n) @ x), cons)
    _compare(prob, x, obj_rtol=1e-5, x_atol=1e-4)


def test_exponential_cone() -> None:
    rng = np.random.default_rng(4)
    n = 8
    A = rng.random((3, n))
    x = cp.Variable(n)
    prob = cp.Problem(
        cp.Maximize(cp.sum(cp.entr(x))), [A @ x == A @ np.full(n, 0.5), cp.sum(x) <= 5]
    )
    _compare(prob, x, obj_rtol=1e-5, x_atol=1e-4)


def test_sdp() -> None:
    rng = np.random.default_rng(5)
    n = 5
    M = rng.standard_normal((n, n))
    M = (M + M.T) / 2
    X = cp.Variable((n, n), symmetric=True)
    prob = cp.Problem(cp.Minimize(cp.sum_squares(X - M)), [X >> 0, cp.diag(X) == 1])
    _compare(prob, X, obj_rtol=1e-5, x_atol=1e-4)


def _infeasible_lp() -> cp.Problem:
    """An LP with sum(x) >= 1 and sum(x) <= 0.5 among its rows."""
    rng = np.random.default_rng(6)
    A = rng.standard_normal((40, 30))
    x = cp.Variable(30)
    return cp.Problem(
        cp.Minimize(rng.standard_normal(30) @ x),
        [A @ x <= rng.random(40), x >= 0, cp.sum(x) >= 1, cp.sum(x) <= 0.5],
    )


def test_infeasible_lp() -> None:
    """PDHG's own certificate (presolve would find the crossing parallel rows)."""
    prob = _infeasible_lp()
    _pdhg(prob, presolve=False)
    assert prob.status == cp.INFEASIBLE


def test_unbounded_lp() -> None:
    rng = np.random.default_rng(7)
    A = np.abs(rng.standard_normal((20, 30)))
    x = cp.Variable(30)
    prob = cp.Problem(cp.Minimize(rng.standard_normal(30) @ x), [A @ x >= 1, x >= 0])
    _pdhg(prob)
    assert prob.status == cp.UNBOUNDED


def test_float32() -> None:
    prob, x, _ = _lp(seed=8)
    ref_value, ref_x = _reference(prob, x)
    _pdhg(prob, dtype="float32", eps_abs=1e-4, eps_rel=1e-4)
    assert prob.status == cp.OPTIMAL
    assert prob.value == pytest.approx(ref_value, rel=1e-3)
    np.testing.assert_allclose(x.value, ref_x, atol=1e-2)


def test_iteration_limit() -> None:
    prob, _, _ = _lp(seed=9)
    with pytest.warns(UserWarning, match="inaccurate"):
        _pdhg(prob, max_iters=5)
    assert prob.status in (cp.USER_LIMIT, cp.OPTIMAL_INACCURATE)
    assert prob.solver_stats.num_iters == 5


def test_warm_start_saves_iterations() -> None:
    # Large enough that the cold solve outlasts the first polish attempt (100 iterations).
    prob, x, b = _lp(seed=10, m=60, n=40)
    _pdhg(prob, warm_start=True)
    b.value = b.value + 1e-3 * np.random.default_rng(11).standard_normal(b.size)
    _pdhg(prob, warm_start=True)
    warm_iters, warm_x = prob.solver_stats.num_iters, x.value.copy()
    _pdhg(prob, warm_start=False)
    assert prob.status == cp.OPTIMAL
    assert warm_iters < prob.solver_stats.num_iters
    np.testing.assert_allclose(warm_x, x.value, atol=1e-4)


def test_direct_call_and_resolve_from_solution() -> None:
    """PDHG on the IR: unscaled warm-start data, and a re-solve from it stops at once."""
    prob, _, _ = _lp(seed=12)
    program = _program(prob)
    opts = SolverOptions.from_kwargs({"eps_abs": 1e-6, "eps_rel": 1e-6})
    result = PDHG(program, opts).solve()
    assert result.status == cp.OPTIMAL and result.algorithm == "pdhg"
    warm = result.info["warm_start"]
    assert warm["x"].shape == (program.n,) and warm["y"].shape == (program.m,)
    z = program.A @ warm["x"] - program.b
    np.testing.assert_allclose(warm["z"], program.cone.project(z))
    again = PDHG(program, opts, warm).solve()
    assert again.status == cp.OPTIMAL
    assert again.iterations == opts.check_every


def test_step_sizes() -> None:
    """tau sigma ||A||^2 < 1 for P = 0; 1/tau - sigma ||A||^2 >= L_P and gamma < 1 otherwise."""
    tau, sigma, gamma = _step_sizes(omega=3.0, norm_K=2.0, L_h=0.0)
    assert tau * sigma * 4.0 < 1.0 and sigma / tau == pytest.approx(9.0) and gamma == 1.0
    tau, sigma, gamma = _step_sizes(omega=0.5, norm_K=2.0, L_h=5.0)
    assert 1.0 / tau - sigma * 4.0 >= 5.0 and 0.0 < gamma < 1.0


def test_pock_chambolle_scaling() -> None:
    """The extra stage gives ||A^_B||_2 <= 1 on the rows B that are not bounds, keeps cone
    blocks uniform and is off by default."""
    rng = np.random.default_rng(13)
    x = cp.Variable(6)
    M = rng.standard_normal((8, 6)) * np.logspace(-2, 2, 6)
    prob = cp.Problem(cp.Minimize(cp.sum(x)), [cp.norm(M[:4] @ x) <= 1, M[4:] @ x <= 1])
    program = _program(prob)
    plain = RuizScaling(program, 0)
    assert np.all(plain.D == 1.0) and np.all(plain.E == 1.0)
    blocks = program.cone.scaling_blocks()
    starts = np.cumsum([0, *blocks[:-1]])
    assert max(blocks) > 1
    one_entry = np.diff(sp.csr_array(program.A).indptr) == 1
    not_bound = ~(one_entry & (np.repeat(blocks, blocks) == 1))
    assert not np.all(not_bound)
    for iters in (0, 15):
        pc = RuizScaling(program, iters, pock_chambolle=True)
        assert np.linalg.norm(pc.A.toarray()[not_bound], 2) <= 1.0 + 1e-12
        for start, size in zip(starts, blocks, strict=True):
            assert np.ptp(pc.E[start : start + size]) == 0.0
        np.testing.assert_allclose(
            pc.A.toarray(), np.diag(pc.E) @ program.A.toarray() @ np.diag(pc.D), atol=1e-14
        )


def test_pock_chambolle_column_scale_leaves_out_bound_rows() -> None:
    """Bound rows (one entry, projected on by PDHG) do not change the Pock-Chambolle column
    scale: without Ruiz passes D is that of the program without them, and with or without
    passes the other rows have ||A^_B||_2 <= 1."""
    rng = np.random.default_rng(5)
    x = cp.Variable(6)
    M = rng.standard_normal((4, 6)) * np.logspace(-2, 2, 6)
    rows = [M @ x <= 1, cp.sum(x) == 1]
    bounded = _program(cp.Problem(cp.Minimize(cp.sum(x)), [*rows, x >= -1, 100 * x <= 3]))
    free = _program(cp.Problem(cp.Minimize(cp.sum(x)), rows))
    other = np.flatnonzero(np.diff(sp.csr_array(bounded.A).indptr) > 1)
    assert other.size == free.m < bounded.m
    pc = RuizScaling(bounded, 0, pock_chambolle=True)
    np.testing.assert_allclose(pc.D, RuizScaling(free, 0, pock_chambolle=True).D, rtol=1e-12)
    for iters in (0, 15):
        pc = RuizScaling(bounded, iters, pock_chambolle=True)
        assert np.linalg.norm(pc.A.toarray()[other], 2) <= 1.0 + 1e-12


def _bounded_lp() -> tuple[cp.Problem, cp.Variable, list]:
    """An LP whose bounds are written as one-entry rows in several ways: each side of
    every variable, a scaled row, a negative coefficient and a looser duplicate."""
    rng = np.random.default_rng(11)
    m, n = 25, 20
    A = rng.standard_normal((m, n))
    x = cp.Variable(n)
    constraints = [
        A @ x <= A @ rng.random(n) + rng.random(m),
        x >= -1,
        x <= 2,
        2 * x[:5] <= 3,  # x <= 1.5, tighter than x <= 2
        x[0] >= -3,  # looser than x >= -1: no multiplier
        -x[5:10] >= -1.25,  # x <= 1.25
    ]
    return cp.Problem(cp.Minimize(rng.standard_normal(n) @ x), constraints), x, constraints


def test_one_entry_rows_are_bounds_projected_in_the_primal_step(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Presolve turns the 51 one-entry rows into 40 bounds (the tightest per side); x and
    every constraint's dual (the bound multipliers from the reduced costs, on the
    tightest row) match Clarabel's."""
    prob, x, constraints = _bounded_lp()
    ref_value, ref_x = _reference(prob, x)
    ref_duals = [np.array(con.dual_value, copy=True) for con in constraints]
    _pdhg(prob, eps_abs=1e-8, eps_rel=1e-8, verbose=True)
    out = capsys.readouterr().out
    assert "51 singleton (to bounds)" in out
    assert "bounds: 40 bound rows projected" in out
    assert prob.status == cp.OPTIMAL
    assert prob.value == pytest.approx(ref_value, rel=1e-7)
    np.testing.assert_allclose(x.value, ref_x, atol=1e-6)
    for con, ref in zip(constraints, ref_duals, strict=True):
        np.testing.assert_allclose(con.dual_value, ref, atol=1e-5)
    assert np.all(constraints[4].dual_value == 0.0)


def test_the_bounds_attribute_is_projected() -> None:
    rng = np.random.default_rng(12)
    A = rng.standard_normal((15, 10))
    x = cp.Variable(10, bounds=[-1.0, np.r_[np.full(5, 2.0), np.full(5, np.inf)]])
    con = A @ x <= A @ rng.random(10) + rng.random(15)
    prob = cp.Problem(cp.Minimize(rng.standard_normal(10) @ x + cp.sum(x[5:])), [con])
    ref_value, ref_x = _reference(prob, x)
    ref_dual = np.array(con.dual_value, copy=True)
    _pdhg(prob, eps_abs=1e-8, eps_rel=1e-8)
    assert prob.status == cp.OPTIMAL
    assert prob.value == pytest.approx(ref_value, rel=1e-7)
    np.testing.assert_allclose(x.value, ref_x, atol=1e-6)
    np.testing.assert_allclose(con.dual_value, ref_dual, atol=1e-5)


@pytest.mark.parametrize("presolve", [False, True])
@pytest.mark.parametrize("crossing", [False, True])
def test_infeasible_by_bounds(crossing: bool, presolve: bool) -> None:
    """0 <= x <= 1 with sum(x) >= 25 > 20: the Farkas certificate takes the bound
    multipliers, found by PDHG or by presolve (activity and crossing bounds)."""
    x = cp.Variable(20)
    if crossing:
        constraints = [x >= 0, x[0] >= 1, x[0] <= 0, cp.sum(x) <= 30]
    else:
        constraints = [x >= 0, x <= 1, cp.sum(x) >= 25]
    prob = cp.Problem(cp.Minimize(cp.sum(x)), constraints)
    if presolve:
        prob.solve(solver="NABLAPROX", **PDHG_OPTS)
        assert prob.solver_stats.extra_stats["algorithm"] == "presolve"
    else:
        _pdhg(prob, presolve=False)
    assert prob.status == cp.INFEASIBLE
    y = [np.atleast_1d(con.dual_value) for con in constraints]
    assert all(np.all(v >= -1e-12) for v in y)
    if not crossing:
        # CVXPY's duals of a Farkas certificate: x >= 0, -x >= -1, sum(x) >= 25 with
        # y_1 - y_2 + y_3 1 = 0 and 0 - 1'y_2 + 25 y_3 > 0.
        np.testing.assert_allclose(y[0] - y[1] + y[2], 0.0, atol=1e-6 * np.max(y[2]))
        assert 25 * y[2][0] - np.sum(y[1]) > 0


@pytest.mark.skipif(
    not (data_dir() / "netlib").is_dir(), reason="Netlib data not found (../shared/data)"
)
def test_feasibility_polishing_saves_iterations() -> None:
    """On SHARE1B the gap passes its test long before the primal residual does; the
    polished point passes the test in fewer iterations, at Clarabel's optimum."""
    prob, _ = load_netlib("SHARE1B")
    prob.solve(solver="CLARABEL", tol_gap_abs=1e-9, tol_gap_rel=1e-9, tol_feas=1e-9)
    assert prob.status == cp.OPTIMAL
    reference = prob.value
    iterations = {}
    for polishing in (False, True):
        _pdhg(prob, eps_abs=1e-4, eps_rel=1e-4, feasibility_polishing=polishing)
        assert prob.status == cp.OPTIMAL
        assert prob.value == pytest.approx(reference, rel=2e-4)
        iterations[polishing] = prob.solver_stats.num_iters
    assert prob.solver_stats.extra_stats["feasibility_polish_iterations"] > 0
    assert iterations[True] < 0.8 * iterations[False]


def test_feasibility_polishing_never_passes_an_infeasible_lp() -> None:
    """Polishing an infeasible LP's iterate spends iterations and returns nothing (no
    point passes the test), and the solve with polishing still ends with a certificate."""
    prob = _infeasible_lp()
    opts = SolverOptions.from_kwargs({"eps_abs": 1e-6, "eps_rel": 1e-6})
    problem = _ConeProblem(_program(prob), opts, get_backend(), time.perf_counter())
    z, omega = problem.initial(None)
    tau, sigma, _ = _step_sizes(omega, problem.norm_K, 0.0)
    for _ in range(50):
        z = problem.step(z, tau, sigma).point
    step, best = problem.step(z, tau, sigma), BestIterate()
    err = problem.check(50, step, z, z, best).err
    assert err.primal > err.primal_tol
    polished, spent = problem.feasibility.run(50, err, step.point, omega, best)
    assert polished is None
    assert 0 < spent <= problem.feasibility._budget(50)
    _pdhg(prob, presolve=False, feasibility_polishing=True)
    assert prob.status == cp.INFEASIBLE


def test_feasibility_polishing_option_is_checked() -> None:
    with pytest.raises(ValueError, match="option 'feasibility_polishing' must be True or False"):
        SolverOptions.from_kwargs({"feasibility_polishing": "yes"})


def test_termination_tests_are_spaced_while_far_from_tolerance(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A test that fails by a factor r >= 4 is followed by the next one floor(log2 r)
    periods later (the cost rule off): fewer tests than periods, and the answer of the
    test."""
    monkeypatch.setattr(pdhg, "_CHECK_COST", 0.0)
    prob, x, _ = _lp()
    ref_value, ref_x = _reference(prob, x)
    _pdhg(prob, feasibility_polishing=False)
    assert prob.status == cp.OPTIMAL
    assert prob.value == pytest.approx(ref_value, rel=1e-5, abs=1e-5)
    np.testing.assert_allclose(x.value, ref_x, atol=1e-4)
    stats = prob.solver_stats
    assert 0 < stats.extra_stats["termination_tests"] < 0.8 * (stats.num_iters // 10)


def _random_step_problem(rng: np.random.Generator, quadratic: bool) -> _ConeProblem:
    """PDHG's problem of a random LP (or diagonal QP) with equality rows, inequality rows
    and bounds, presolved (its one-entry rows become bound rows)."""
    A, E = rng.standard_normal((12, 9)), rng.standard_normal((3, 9))
    x = cp.Variable(9)
    objective = rng.standard_normal(9) @ x + (cp.sum_squares(x) if quadratic else 0)
    constraints = [A @ x <= rng.random(12), E @ x == E @ rng.random(9), x >= -1, x <= 2]
    prob = cp.Problem(cp.Minimize(objective), constraints)
    opts = SolverOptions.from_kwargs({"eps_abs": 1e-6, "eps_rel": 1e-6})
    program = presolve(_program(prob)).program
    return _ConeProblem(program, opts, get_backend(), time.perf_counter())


@pytest.mark.parametrize("quadratic", [False, True])
def test_compiled_step_matches_the_array_step(quadratic: bool) -> None:
    """On NumPy in float64 an LP's (or a diagonal QP's) step runs as two compiled passes
    (``cvxprox.backend.jit.pdhg``); the array-namespace step is its reference: from the
    same points, with equality rows, inequality rows and bounds, the same x, y, A x and
    A'y, bit for bit."""
    rng = np.random.default_rng(8)
    problem = _random_step_problem(rng, quadratic)
    assert problem._polar_free is not None and problem._polar_free.any()
    assert problem.bounds.active and (problem.p is not None) == quadratic
    z, omega = problem.initial(None)
    tau, sigma, _ = _step_sizes(omega, problem.norm_K, 0.0)
    for k in range(30):
        point = problem.point(rng.standard_normal(z.x.shape), rng.standard_normal(z.y.shape))
        if k % 2:
            point = z
        compiled = problem.step(point, tau, sigma).point
        free, problem._polar_free = problem._polar_free, None
        plain = problem.step(point, tau, sigma).point
        problem._polar_free = free
        for name in ("x", "y", "Kx", "Kty"):
            assert np.array_equal(getattr(compiled, name), getattr(plain, name)), name
        z = compiled


@pytest.mark.parametrize("quadratic", [False, True])
def test_halpern_iteration_fuses_the_next_point(quadratic: bool) -> None:
    """On an LP (or a diagonal QP) with reflected Halpern steps, the fused updates form
    the next point's x, y and K x in their passes (``_ConeProblem.iterate``): bit for bit
    the step followed by ``_Epoch.advance``'s combination, across a restart."""
    from cvxprox.solvers.pdhg import _Epoch, _plain_iteration  # noqa: PLC0415

    rng = np.random.default_rng(9)
    problem = _random_step_problem(rng, quadratic)
    assert problem.scheme.halpern and not problem.scheme.average
    start, omega = problem.initial(None)
    tau, sigma, gamma = _step_sizes(omega, problem.norm_K, 0.0, problem.scheme.relaxation)
    fused = _Epoch(problem.backend, problem.scheme, start)
    plain = _Epoch(problem.backend, problem.scheme, start)
    for k in range(12):
        if k == 6:
            point = problem.point(
                rng.standard_normal(start.x.shape), rng.standard_normal(start.y.shape)
            )
            fused.restart(point)
            plain.restart(point)
        step, _, advanced = problem.iterate(fused, start, tau, sigma, gamma)
        assert advanced is not None
        fused.advance(step.point, gamma, advanced)
        reference, _, none = _plain_iteration(problem, plain, start, tau, sigma)
        assert none is None
        plain.advance(reference.point, gamma)
        for name in ("x", "y", "Kx", "Kty"):
            assert np.array_equal(getattr(step.point, name), getattr(reference.point, name))
            assert np.array_equal(getattr(fused.z, name), getattr(plain.z, name)), (k, name)


@pytest.mark.parametrize("quadratic", [False, True])
def test_compiled_loop_matches_the_fused_iterations(
    quadratic: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The iterations up to a check as one compiled call (``_ConeProblem.advance``,
    ``cvxprox.backend.jit.pdhg.halpern_iterations``): bit for bit count - 1 ``iterate``
    and ``_Epoch.advance`` steps and the check's ``iterate`` (its T(z), its next point
    and the epoch at its z), from inside an epoch, with equality rows, inequality rows,
    bounds and (for a QP) a diagonal P."""
    from cvxprox.solvers.pdhg import _Epoch  # noqa: PLC0415

    monkeypatch.setattr(pdhg, "_FUSE_AFTER", 0.0)
    rng = np.random.default_rng(10)
    problem = _random_step_problem(rng, quadratic)
    start, omega = problem.initial(None)
    tau, sigma, gamma = _step_sizes(omega, problem.norm_K, 0.0, problem.scheme.relaxation)
    anchor = problem.point(rng.standard_normal(start.x.shape), rng.standard_normal(start.y.shape))
    looped = _Epoch(problem.backend, problem.scheme, anchor)
    stepped = _Epoch(problem.backend, problem.scheme, anchor)
    for epoch in (looped, stepped):
        step, _, advanced = problem.iterate(epoch, anchor, tau, sigma, gamma)
        epoch.advance(step.point, gamma, advanced)
    for count in (1, 9, 25):
        looped_step, looped_next = problem.advance(looped, tau, sigma, gamma, count)
        for _ in range(count - 1):
            step, _, advanced = problem.iterate(stepped, anchor, tau, sigma, gamma)
            stepped.advance(step.point, gamma, advanced)
        step, _, advanced = problem.iterate(stepped, anchor, tau, sigma, gamma)
        assert looped.k == stepped.k
        for name in ("x", "y", "Kx", "Kty"):
            assert np.array_equal(getattr(looped.z, name), getattr(stepped.z, name)), name
            assert np.array_equal(getattr(looped_step.point, name), getattr(step.point, name)), name
            assert np.array_equal(getattr(looped_next, name), getattr(advanced, name)), name
        looped.advance(looped_step.point, gamma, looped_next)
        stepped.advance(step.point, gamma, advanced)
    for name in ("x", "y", "Kx", "Kty"):
        assert not np.array_equal(getattr(looped.z, name), getattr(anchor, name)), name


def test_a_solve_with_the_compiled_loop_is_the_solve_without_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PDHG on a Netlib LP with bounds, from its start with the compiled loop (the
    iterations up to each check, its own step included) and without it: the same
    iterations and the same point, bit for bit."""
    from cvxprox.backend.numpy import NumPyBackend  # noqa: PLC0415

    if not (data_dir() / "netlib").is_dir():
        pytest.skip("Netlib data not found")
    results = []
    for fused in (True, False):
        monkeypatch.setattr(pdhg, "_FUSE_AFTER", 0.0 if fused else math.inf)
        calls = []
        loop = NumPyBackend.pdhg_halpern_iterations

        def counted(self: NumPyBackend, *args: object, _loop=loop, _calls=calls) -> tuple:  # noqa: ANN001
            _calls.append(args[0])
            return _loop(self, *args)

        monkeypatch.setattr(NumPyBackend, "pdhg_halpern_iterations", counted)
        prob, _ = load_netlib("SC50A")
        prob.solve(solver="NABLAPROX", algorithm="pdhg")
        assert prob.status == cp.OPTIMAL
        assert (sum(calls) > prob.solver_stats.num_iters // 2) == fused
        results.append((prob.solver_stats.num_iters, [v.value for v in prob.variables()]))
    assert results[0][0] == results[1][0]
    for a, b in zip(results[0][1], results[1][1], strict=True):
        assert np.array_equal(a, b)


def test_polar_free_rows() -> None:
    cone = ProductCone([ZeroCone(2), NonnegCone(3), ZeroCone(1)])
    assert pdhg._polar_free_rows(cone).tolist() == [1, 1, 0, 0, 0, 1]
    assert pdhg._polar_free_rows(ProductCone([NonnegCone(2), SecondOrderCone([3])])) is None


def test_tv_in_a_box_step_matches_the_array_step() -> None:
    """TV inpainting (2-D TV, fixed pixels as l = u bounds, 0 <= X <= 1) takes PDHG on
    its full grid; on NumPy its step is one compiled pass (``cvxprox.backend.jit.pdhg_tv``)
    that agrees with the array step to rounding from the same points."""
    from compare.suites.structured import build_tv_inpainting  # noqa: PLC0415
    from cvxprox.solvers.pdhg import _StructuredProblem  # noqa: PLC0415

    prob = build_tv_inpainting(size=13)
    program = cvxprox.compile(prob).program
    assert pdhg.tv_in_a_box(program) is not None
    opts = SolverOptions.from_kwargs({})
    problem = _StructuredProblem(program, opts, get_backend())
    assert problem.tv is not None
    rng = np.random.default_rng(3)
    z, omega = problem.initial(None)
    tau, sigma, _ = _step_sizes(omega, problem.norm_K, 0.0)
    for k in range(20):
        point = z if k % 2 else problem.point(rng.random(program.n), rng.standard_normal(z.y.shape))
        fused = problem.step(point, tau, sigma)
        grid, problem.tv = problem.tv, None
        plain = problem.step(point, tau, sigma)
        problem.tv = grid
        for name in ("x", "y", "Kx", "Kty"):
            a, b = getattr(fused.point, name), getattr(plain.point, name)
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(fused.z_dual, plain.z_dual, rtol=1e-10, atol=1e-10)
        z = fused.point
    prob.solve(solver="NABLAPROX")
    assert prob.solver_stats.extra_stats["algorithm"] == "pdhg"
    assert prob.status == cp.OPTIMAL
    value = prob.value
    prob.solve(solver="CLARABEL", **TIGHT)
    assert value == pytest.approx(prob.value, rel=1e-5)


def test_tv_in_a_box_iteration_fuses_the_combinations() -> None:
    """On TV in a box the step, the KM point and the running average are one compiled
    pass (``_StructuredProblem.iterate``), bit for bit the step followed by the separate
    combinations (``_plain_iteration``, ``_Epoch.advance``), at the epoch's first
    iteration (no average yet) and later ones."""
    from compare.suites.structured import build_tv_inpainting  # noqa: PLC0415
    from cvxprox.solvers.pdhg import _Epoch, _plain_iteration, _StructuredProblem  # noqa: PLC0415

    program = cvxprox.compile(build_tv_inpainting(size=11)).program
    problem = _StructuredProblem(program, SolverOptions.from_kwargs({}), get_backend())
    assert problem.tv is not None and not problem.scheme.halpern and problem.scheme.average
    rng = np.random.default_rng(5)
    start, omega = problem.initial(None)
    tau, sigma, gamma = _step_sizes(omega, problem.norm_K, 0.0, problem.scheme.relaxation)
    fused_epoch = _Epoch(problem.backend, problem.scheme, start)
    plain_epoch = _Epoch(problem.backend, problem.scheme, start)
    fused_average = plain_average = start
    for k in range(6):
        if k == 3:  # a point off the iteration's path, as after a restart
            point = problem.point(rng.random(program.n), rng.standard_normal(start.y.shape))
            fused_epoch.z = plain_epoch.z = point
        step, fused_average, advanced = problem.iterate(
            fused_epoch, fused_average, tau, sigma, gamma
        )
        assert advanced is not None
        fused_epoch.advance(step.point, gamma, advanced)
        plain, plain_average, none = _plain_iteration(
            problem, plain_epoch, plain_average, tau, sigma
        )
        assert none is None
        plain_epoch.advance(plain.point, gamma)
        for name in ("x", "y", "Kx", "Kty"):
            for a, b in (
                (step.point, plain.point),
                (fused_epoch.z, plain_epoch.z),
                (fused_average, plain_average),
            ):
                assert np.array_equal(getattr(a, name), getattr(b, name)), (k, name)
        assert np.array_equal(step.z_dual, plain.z_dual)


def test_termination_tests_are_spaced_by_their_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``_CHECK_COST`` = c, the next test comes sqrt(2 c k) iterations after one at
    iteration k, rounded down to whole periods: a run of K iterations makes about
    sqrt(2 K / c) tests (a few more from the rounding), where a test every period makes
    many more; the small LP and ADLITTLE at 1e-8 both end optimal at the reference's
    objective with either spacing."""
    spaced = pdhg._CHECK_COST
    prob, x, _ = _lp()
    ref_value, _ = _reference(prob, x)
    _pdhg(prob, feasibility_polishing=False)
    assert prob.value == pytest.approx(ref_value, rel=1e-5, abs=1e-5)
    iters, tests = prob.solver_stats.num_iters, prob.solver_stats.extra_stats["termination_tests"]
    assert tests <= math.sqrt(2 * iters / spaced) + 10
    if not (data_dir() / "netlib").is_dir():
        pytest.skip("Netlib data not found")
    runs = {}
    for cost in (spaced, 0.0):
        monkeypatch.setattr(pdhg, "_CHECK_COST", cost)
        prob, known = load_netlib("ADLITTLE")
        prob.solve(solver="NABLAPROX", algorithm="pdhg", eps_abs=1e-8, eps_rel=1e-8)
        assert prob.status == cp.OPTIMAL
        assert prob.value == pytest.approx(known, rel=1e-6)
        stats = prob.solver_stats
        runs[cost] = (stats.num_iters, stats.extra_stats["termination_tests"])
    (iters, tests), (_, tests_every) = runs[spaced], runs[0.0]
    assert tests <= math.sqrt(2 * iters / spaced) + 10
    assert tests_every > 2 * tests
