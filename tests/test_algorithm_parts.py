"""Unit tests of the pieces the algorithms are built from: Anderson acceleration,
polishing, equilibration."""

import math

import cvxpy as cp
import numpy as np
import pytest
import scipy.sparse as sp

import cvxprox  # noqa: F401
from cvxprox.backend import get_backend
from cvxprox.backend.jit.residuals import worst_ratio
from cvxprox.functions.cones import NonnegCone, SecondOrderCone, ZeroCone
from cvxprox.interface.options import SolverOptions
from cvxprox.ir.program import AssembledProgram, Program
from cvxprox.solvers.admm.kkt import ADMM
from cvxprox.solvers.admm.penalty import (
    ADAPT_EVERY,
    PROFILE_FLOOR,
    ROW_DAMPING,
    Penalty,
    RowMultipliers,
)
from cvxprox.solvers.common import polish as polish_module
from cvxprox.solvers.common.anderson import AndersonAcceleration, PlainAnderson
from cvxprox.solvers.common.kkt_checks import KKTChecker
from cvxprox.solvers.common.polish import (
    ACTIVE_SET_ROUNDS,
    POLISH_ALLOWANCE,
    POLISH_SHARE,
    PolishSchedule,
    active_rows,
    is_polishable,
    polish,
)
from cvxprox.solvers.common.scaling import RuizScaling
from cvxprox.solvers.common.termination import KKTError, worst_entry


def _program(prob: cp.Problem):
    data, _, _ = prob.get_problem_data("NABLAPROX")
    return data["prox_program"].assemble()


def test_anderson_accelerates_a_linear_fixed_point() -> None:
    """w <- M w + q with a slowly contracting M: plain iteration needs hundreds of
    steps, Anderson (memory 10) reaches 1e-10 in far fewer."""
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((40, 40)))
    M = Q @ np.diag(np.linspace(0.5, 0.99, 40)) @ Q.T
    q = rng.standard_normal(40)
    fixed = np.linalg.solve(np.eye(40) - M, q)

    def iterations(accelerate: bool) -> int:
        w = np.zeros(40)
        aa = AndersonAcceleration(40, 10)
        for k in range(1, 5000):
            f = M @ w + q
            if np.linalg.norm(f - fixed) < 1e-10:
                return k
            w = aa.extrapolate(w, f) if accelerate else f
        return 5000

    plain, accelerated = iterations(False), iterations(True)
    assert accelerated < plain / 5


def test_anderson_reset_forgets_memory() -> None:
    aa = AndersonAcceleration(3, 2)
    w = np.zeros(3)
    for _ in range(3):
        w = aa.extrapolate(w, w + 1.0)
    aa.reset()
    out = aa.extrapolate(w, w + 1.0)
    assert not aa.extrapolated
    np.testing.assert_array_equal(out, w + 1.0)


def test_plain_anderson_matches_the_compiled_step() -> None:
    """PlainAnderson (image differences F = S + Y, fused products) takes the compiled
    step's points, through the ring buffer's wrap-around (memory 4, 12 steps) and a reset."""
    rng = np.random.default_rng(1)
    Q, _ = np.linalg.qr(rng.standard_normal((30, 30)))
    M = Q @ np.diag(np.linspace(0.3, 0.98, 30)) @ Q.T
    q = rng.standard_normal(30)
    compiled, plain = AndersonAcceleration(30, 4), PlainAnderson(30, 4, get_backend("numpy"))
    w_c = w_p = np.zeros(30)
    for k in range(12):
        if k == 7:
            compiled.reset()
            plain.reset()
        w_c = compiled.extrapolate(w_c, M @ w_c + q)
        w_p = plain.step(w_p, M @ w_p + q)
        assert plain.extrapolated == compiled.extrapolated
        np.testing.assert_allclose(w_p, w_c, rtol=1e-9, atol=1e-12)


def _qp(seed: int = 0) -> tuple[cp.Problem, cp.Variable]:
    rng = np.random.default_rng(seed)
    n, m = 15, 25
    F = rng.standard_normal((n, n))
    x = cp.Variable(n)
    A = rng.standard_normal((m, n))
    b = A @ rng.random(n) + 0.1
    prob = cp.Problem(
        cp.Minimize(cp.sum_squares(F @ x) / 2 + rng.standard_normal(n) @ x),
        [A @ x <= b, cp.sum(x) == 1],
    )
    return prob, x


def test_polish_recovers_the_exact_solution_from_a_rough_iterate() -> None:
    prob, _ = _qp(0)  # a QP whose rough solve converges before a polishing attempt
    prob.solve(solver="CLARABEL", tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    reference = prob.value
    program = _program(prob)
    assert is_polishable(program)
    # A rough ADMM solve: the active set is already right, the digits are not.
    rough = ADMM(program, SolverOptions(eps_abs=1e-3, eps_rel=1e-3)).solve()
    assert rough.status == cp.OPTIMAL and not rough.info["polished"]
    assert abs(rough.kkt.primal_objective - reference) > 1e-9 * abs(reference)
    scaling = RuizScaling(program, SolverOptions().scaling_iters)
    point = polish(program, scaling, active_rows(program, rough.z, rough.y))
    assert point is not None
    x, z, y = point.point
    checker = KKTChecker(program, scaling, SolverOptions(eps_abs=1e-9, eps_rel=1e-9))
    err = checker.kkt_error(x, z, y, program.A @ x, program.A.T @ y, program.P @ x)
    assert err.converged
    assert err.primal_objective == pytest.approx(reference, rel=1e-8)


def _degenerate_qp() -> AssembledProgram:
    """minimize 1/2 ||x - (3, 2)||^2 subject to x1 <= 1, x2 <= 1, x1 + x2 <= 2 and
    x2 - x1 <= 0: at the solution (1, 1) all four rows are active on two variables, and
    the multipliers (l1 + l3 - l4, l2 + l3 + l4) = (2, 1), l >= 0, are not unique."""
    x = cp.Variable(2)
    prob = cp.Problem(
        cp.Minimize(cp.sum_squares(x - np.array([3.0, 2.0])) / 2),
        [x[0] <= 1, x[1] <= 1, x[0] + x[1] <= 2, x[1] - x[0] <= 0],
    )
    return _program(prob)


def test_polish_from_the_iterate_keeps_the_signs_of_degenerate_multipliers() -> None:
    """On more active rows than variables the reduced system's multipliers are not
    unique: solved from zero, the smallest ones give x2 - x1 <= 0 a multiplier of the
    wrong sign, whose projection leaves a dual residual; refined from the iterate, they
    are the solution nearest to it, which keeps its signs."""
    program = _degenerate_qp()
    rough = ADMM(program, SolverOptions(eps_abs=1e-3, eps_rel=1e-3)).solve()
    scaling = RuizScaling(program, SolverOptions().scaling_iters)
    checker = KKTChecker(program, scaling, SolverOptions(eps_abs=1e-9, eps_rel=1e-9))
    active = active_rows(program, np.zeros(program.m), -np.ones(program.m))
    assert np.count_nonzero(active) == program.m and program.m - program.n == 2

    def error(polished: polish_module.Polished) -> KKTError:
        x, z, y = polished.point
        return checker.kkt_error(x, z, y, program.A @ x, program.A.T @ y, program.P @ x)

    from_zero = polish(program, scaling, active)
    assert from_zero is not None and not error(from_zero).converged
    assert error(from_zero).dual > 0.1
    from_iterate = polish(program, scaling, active, (rough.x, rough.y))
    assert from_iterate is not None and error(from_iterate).converged
    np.testing.assert_allclose(program.A @ from_iterate.x - program.b, 0.0, atol=1e-9)


def test_a_polishing_attempt_moves_its_active_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """An attempt whose first solve fails the test solves again on the set its point
    suggests (the row with a multiplier of the wrong sign dropped), and stops there."""
    program = _degenerate_qp()
    scaling = RuizScaling(program, SolverOptions().scaling_iters)
    checker = KKTChecker(program, scaling, SolverOptions(eps_abs=1e-9, eps_rel=1e-9))
    schedule = PolishSchedule(program, checker)
    solved = []

    def counted(*args: object) -> polish_module.Polished | None:
        solved.append(np.count_nonzero(args[2]))
        return polish(*args)

    monkeypatch.setattr(polish_module, "polish", counted)
    found = schedule.attempt(100, np.zeros(program.m), -np.ones(program.m))
    assert found is not None and found[1].converged
    assert solved == [program.m, program.m - 1]
    assert schedule.attempts == 1 and schedule.succeeded
    x, _, y = found[0]
    assert np.all(program.A @ x - program.b >= -1e-9) and np.all(y[2:] <= 0.0)


def test_an_lp_is_polished_only_on_a_basis(monkeypatch: pytest.MonkeyPatch) -> None:
    """An LP's reduced KKT system is singular unless n rows are active: an attempt on
    fewer or more waits, at no cost and without moving the doubling schedule, for a check
    whose active set is a basis; a QP's attempts are made on any active set."""
    rng = np.random.default_rng(4)
    n = 4
    x = cp.Variable(n)
    lp = cp.Problem(cp.Minimize(rng.random(n) @ x), [rng.standard_normal((6, n)) @ x <= 1])
    program = _program(lp)
    assert program.m == 6 and not program.has_quadratic
    attempts = []
    monkeypatch.setattr(polish_module, "polish", lambda *args: attempts.append(args[2]))
    scaling = RuizScaling(program, SolverOptions().scaling_iters)
    schedule = PolishSchedule(program, KKTChecker(program, scaling, SolverOptions()))
    y = -np.ones(program.m)
    for active in (3, 5, 6):  # rows with z < -y are active
        z = np.r_[np.zeros(active), 2.0 * np.ones(program.m - active)]
        assert schedule.attempt(100, z, y) is None
    assert attempts == [] and schedule.next == 100 and schedule.attempts == 0
    z = np.r_[np.zeros(n), 2.0 * np.ones(program.m - n)]
    assert schedule.attempt(100, z, y) is None
    assert len(attempts) == 1 and np.count_nonzero(attempts[0]) == n
    assert schedule.next == 200 and schedule.attempts == 1
    qp = _program(_qp(0)[0])
    scaling = RuizScaling(qp, SolverOptions().scaling_iters)
    schedule = PolishSchedule(qp, KKTChecker(qp, scaling, SolverOptions()))
    assert schedule.attempt(100, np.ones(qp.m), -np.ones(qp.m)) is None  # none active
    assert len(attempts) == 2


class _Clock:
    """A ``time`` module whose ``perf_counter`` reads ``now``."""

    now = 0.0

    def perf_counter(self) -> float:
        return self.now


def _timed_schedule(
    monkeypatch: pytest.MonkeyPatch, cost: float
) -> tuple[PolishSchedule, _Clock, int]:
    """A polishing schedule on a small QP whose every attempt advances a fake clock by
    ``cost`` seconds (and finds nothing); returns it, the clock and the QP's m."""
    clock = _Clock()

    def polish_at_cost(*args: object) -> None:
        clock.now += cost

    monkeypatch.setattr(polish_module, "time", clock)
    monkeypatch.setattr(polish_module, "polish", polish_at_cost)
    program = _program(_qp(0)[0])
    scaling = RuizScaling(program, SolverOptions().scaling_iters)
    return PolishSchedule(program, KKTChecker(program, scaling, SolverOptions())), clock, program.m


@pytest.mark.parametrize(
    "cost, deadline, solves",
    [(0.01, math.inf, ACTIVE_SET_ROUNDS), (0.15, math.inf, 1), (0.01, 1.015, 1)],
)
def test_active_set_rounds_stop_at_the_share_and_the_deadline(
    monkeypatch: pytest.MonkeyPatch, cost: float, deadline: float, solves: int
) -> None:
    """An attempt whose solves fail and move the active set solves again while another
    solve as long as the last fits the polishing share of a run that has lasted 1 s
    (0.25 s) and ends before the deadline: a 0.01 s solve goes on to the last round, a
    0.15 s one stops after the first (0.3 s would pass the share), and so does a 0.01 s
    one 0.015 s before the deadline."""
    clock = _Clock()
    program = _program(_qp(0)[0])
    solved = []

    def failing_solve(program: AssembledProgram, scaling, active, start=None):  # noqa: ANN001, ANN202
        clock.now += cost
        solved.append(active.copy())
        zero = np.zeros(program.m)
        return polish_module.Polished(np.zeros(program.n), zero, zero, ~active)

    monkeypatch.setattr(polish_module, "time", clock)
    monkeypatch.setattr(polish_module, "polish", failing_solve)
    scaling = RuizScaling(program, SolverOptions().scaling_iters)
    checker = KKTChecker(program, scaling, SolverOptions())
    clock.now = 1.0
    schedule = PolishSchedule(program, checker, deadline=deadline, started=0.0)
    assert schedule.attempt(100, np.zeros(program.m), -np.ones(program.m)) is None
    assert len(solved) == solves and schedule.attempts == 1
    assert all(np.array_equal(b, ~a) for a, b in zip(solved[:-1], solved[1:], strict=True))


def test_polishing_takes_at_most_its_share_of_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """An attempt that costs 2 s (a factorization that fills in) postpones the next one,
    due by the doubling schedule, until the run has lasted 2 / ``POLISH_SHARE`` s."""
    schedule, clock, m = _timed_schedule(monkeypatch, 2.0)
    clock.now = 0.01
    assert schedule.due(100)
    assert schedule.attempt(100, np.zeros(m), np.zeros(m)) is None
    assert schedule.next == 200 and not schedule.due(200)
    clock.now = 2.0 / POLISH_SHARE - 0.01
    assert not schedule.due(200) and not schedule.within_share()
    clock.now = 2.0 / POLISH_SHARE
    assert schedule.due(200)
    assert not schedule.due(199)


def test_cheap_polishing_is_never_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Attempts that take more than ``POLISH_SHARE`` of a short run but less than
    ``POLISH_ALLOWANCE`` in all are due by the doubling schedule alone, so a small
    program's iterates do not depend on the machine's speed; past the allowance the share
    rules again."""
    schedule, _, m = _timed_schedule(monkeypatch, 0.3 * POLISH_ALLOWANCE)
    for iteration in (100, 200, 400, 800):
        assert schedule.due(iteration), iteration
        schedule.attempt(iteration, np.zeros(m), np.zeros(m))
    assert not schedule.due(1600)  # 1.2 allowances spent, all of the run's time


def test_an_attempt_priced_over_its_share_is_not_made(monkeypatch: pytest.MonkeyPatch) -> None:
    """An attempt is priced before it is made (its factorization's predicted flops): one
    dearer than the share allows is skipped, counted as no attempt, and the doubling
    schedule moves on; the same attempt at the measured price is made."""
    program = _program(_qp(0)[0])
    scaling = RuizScaling(program, SolverOptions().scaling_iters)
    checker = KKTChecker(program, scaling, SolverOptions())
    rough = ADMM(program, SolverOptions(eps_abs=1e-3, eps_rel=1e-3)).solve()
    monkeypatch.setattr(polish_module, "FACTOR_FLOP_SECONDS", 1.0)
    schedule = PolishSchedule(program, checker)
    assert schedule.due(100)
    assert schedule.attempt(100, rough.z, rough.y) is None
    assert schedule.attempts == 0 and schedule.next == 200
    monkeypatch.undo()
    schedule = PolishSchedule(program, checker)
    assert schedule.attempt(100, rough.z, rough.y) is not None
    assert schedule.attempts == 1 and schedule.succeeded


def test_polished_solve_is_reported() -> None:
    prob, _ = _qp(1)
    prob.solve(solver="NABLAPROX")
    stats = prob.solver_stats.extra_stats
    assert prob.status == cp.OPTIMAL
    assert "polished" in stats and "polish_attempts" in stats


@pytest.mark.parametrize("iters", [0, 1, 15])
def test_ruiz_scaling_round_trip(iters: int) -> None:
    prob, _ = _qp(2)
    program = _program(prob)
    sc = RuizScaling(program, iters)
    D, E, k = sc.D, sc.E, sc.k
    np.testing.assert_allclose(sc.A.toarray(), np.diag(E) @ program.A.toarray() @ np.diag(D))
    np.testing.assert_allclose(sc.P.toarray(), k * np.diag(D) @ program.P.toarray() @ np.diag(D))
    np.testing.assert_allclose(sc.c, k * D * program.c)
    np.testing.assert_allclose(sc.b, E * program.b)
    v = np.random.default_rng(0).standard_normal(program.n)
    np.testing.assert_allclose(sc.unscale_x(sc.scale_x(v)), v)
    if iters:
        # Equilibrated: every column and row of A^ has inf-norm near 1.
        assert np.abs(sc.A.toarray()).max() <= 1.0 + 1e-6


def test_ruiz_rows_uniform_on_cone_blocks() -> None:
    """Row scaling must be constant on each second-order cone, or the cone changes."""
    x = cp.Variable(3)
    prob = cp.Problem(
        cp.Minimize(cp.sum(x)), [cp.norm(np.diag([1.0, 100.0, 0.01]) @ x) <= x[0] + 5, x >= -1]
    )
    program = _program(prob)
    sc = RuizScaling(program, 15)
    socs = [t for t in program.terms if t.function.name == "soc"]
    assert socs
    for term in socs:
        E = sc.E[term.rows]
        offset = 0
        for block in term.function.scaling_blocks():
            assert np.ptp(E[offset : offset + block]) == 0
            offset += block


def test_compiled_termination_vectors_match_the_numpy_evaluation() -> None:
    prob, _ = _qp(3)
    program = _program(prob)
    checker = KKTChecker(program, RuizScaling(program, 15), SolverOptions())
    rng = np.random.default_rng(5)
    x, z, y = (
        rng.standard_normal(program.n),
        rng.standard_normal(program.m),
        rng.standard_normal(program.m),
    )
    compiled = checker.evaluate(x, z, y)
    reference = checker.kkt_error(x, z, y, program.A @ x, program.A.T @ y, program.P @ x)
    for name in ("primal", "dual", "gap", "primal_tol", "dual_tol", "gap_tol", "primal_objective"):
        assert getattr(compiled, name) == pytest.approx(getattr(reference, name), rel=1e-12)


def test_compiled_worst_entry_matches_numpy() -> None:
    """``worst_ratio`` against ``worst_entry``: one or two magnitudes, a scalar or a vector
    unit, zero tolerances (ratio 0 or inf), ties, NaN and inf entries."""
    rng = np.random.default_rng(11)
    k = 500
    residual, first, second = rng.standard_normal((3, k))
    unit = rng.uniform(0.0, 1.0, k)
    unit[:50] = 0.0
    first[:60] = 0.0
    second[:60] = 0.0
    residual[10] = 0.0
    cases = [(residual, [first], np.array([0.5])), (residual, [first, second], unit)]
    tied = residual.copy()
    tied[100:] = 0.0
    cases.append((tied, [first, second], unit))
    cases.append((np.ones(k), [np.ones(k)], np.array([1.0])))
    for bad in (np.nan, np.inf):
        spoiled = residual.copy()
        spoiled[[300, 400]] = bad
        cases.append((spoiled, [first, second], unit))
        spoiled_scale = second.copy()
        spoiled_scale[200] = bad
        cases.append((residual, [first, spoiled_scale], unit))
    for eps_abs, eps_rel in ((1e-4, 1e-4), (0.0, 1e-3), (1e-3, 0.0)):
        for r, magnitudes, u in cases:
            second = magnitudes[1] if len(magnitudes) > 1 else np.zeros(0)
            scalar_or_vector = u if u.size > 1 else float(u[0])
            with np.errstate(invalid="ignore"):  # inf * 0 where eps_rel = 0
                reference = worst_entry(r, magnitudes, scalar_or_vector, eps_abs, eps_rel)
            compiled = worst_ratio(r, magnitudes[0], second, u, eps_abs, eps_rel)
            np.testing.assert_array_equal(compiled, reference)
    assert worst_ratio(np.zeros(0), np.zeros(0), np.zeros(0), np.ones(1), 1e-4, 1e-4) == (0.0, 1.0)


@pytest.mark.parametrize(("row_factor", "factor"), [(1e-8, 1.0), (1.0, 1e-8)])
def test_termination_test_is_invariant_to_row_and_cost_scaling(
    row_factor: float, factor: float
) -> None:
    """Scaling one row by ``row_factor`` or the objective by ``factor`` leaves every
    residual / tolerance ratio of the termination test about unchanged."""
    prob, _ = _qp(3)
    program = _program(prob)
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal(program.n), rng.standard_normal(program.m)
    z = program.A @ x - program.b + 1e-7 * rng.standard_normal(program.m)

    def ratios(prog, x, z, y):
        checker = KKTChecker(prog, RuizScaling(prog, 15), SolverOptions())
        err = checker.evaluate(x, z, y)
        return np.array(
            [err.primal / err.primal_tol, err.dual / err.dual_tol, err.gap / err.gap_tol]
        )

    reference = ratios(program, x, z, y)
    row = np.ones(program.m)
    row[0] = row_factor
    scaled = AssembledProgram(
        factor * program.c,
        sp.csc_array(sp.diags_array(row) @ program.A),
        row * program.b,
        program.terms,
        factor * program.P,
        factor * program.offset,
    )
    # Within a factor 4 (Ruiz's passes are not exactly scale invariant); a constant
    # eps_abs would move a ratio by the factor 1e8 itself.
    moved = ratios(scaled, x, row * z, y * factor / row) / reference
    assert np.all(np.abs(np.log(moved)) <= np.log(4.0))


def test_penalty_moves_by_the_geometric_mean_of_the_residual_ratios() -> None:
    def error(primal_ratio: float, dual_ratio: float) -> KKTError:
        return KKTError(primal_ratio * 1e-4, dual_ratio * 1e-3, 0.0, 1e-4, 1e-3, 1.0, 0.0, 0.0)

    program = Program.from_rows(
        np.zeros(2), sp.csr_array(np.eye(3, 2)), np.zeros(3), [ZeroCone(1), NonnegCone(2)]
    ).assemble()
    # Before 100 iterations nothing moves; then the factor is sqrt of the geometric mean
    # of p / d over the checks: p / d = 1000 and 10 give sqrt(100) = 10.
    penalty = Penalty(program, 0.1)
    penalty.observe(error(1000.0, 1.0))
    assert not penalty.update(50)
    penalty.observe(error(100.0, 10.0))
    assert penalty.update(100)
    assert penalty.rho == pytest.approx(1.0, rel=1e-12)
    # Equality rows carry the factor 1e3; the multipliers stay 1 without rows=True.
    np.testing.assert_allclose(penalty.vector, [1e3, 1.0, 1.0], rtol=1e-12)
    # The record restarts after a change; a factor within [1/2, 2] keeps the penalty.
    penalty.observe(error(1.0, 2.0))
    assert not penalty.update(250)
    penalty.observe(error(1.0, 1000.0))
    assert penalty.update(260)
    assert penalty.rho == pytest.approx((0.5 * 0.001) ** 0.25, rel=1e-12)
    assert penalty.changes == 2


def test_row_multipliers_follow_the_rows_relative_primal_residuals() -> None:
    """Rows whose residual lags the others (relative to their size) get a larger penalty;
    the step has mean zero, is damped, is constant on a second-order cone block, and the
    denominator of a row with b_i = 0 is floored at the block's scale."""
    A = sp.csr_array(np.eye(5, 2))
    program = Program.from_rows(
        np.zeros(2), A, np.zeros(5), [NonnegCone(2), SecondOrderCone(3)]
    ).assemble()
    balanced = KKTError(1e-4, 1e-3, 0.0, 1e-4, 1e-3, 1.0, 0.0, 0.0)
    penalty = Penalty(program, 1.0, rows=True)
    Ax = np.array([1.0, 1.0, 2.0, 1.0, 1.0])
    b = np.array([1.0, 1.0, 1.0, 1.0, 0.0])
    # q = |Ax - b - z| / max(|Ax|, |z|, |b|): row 0 lags row 1 by 10^4.
    z = Ax - b - np.array([1e-2, 1e-6, 1e-3, 1e-5, 1e-4])
    for _ in range(3):
        penalty.observe(balanced, (Ax, z, b))
    assert penalty.update(100)
    assert penalty.rho == 1.0
    log_m = np.log(penalty.multipliers)
    q = np.abs(Ax - b - z) / np.maximum.reduce([np.abs(Ax), np.abs(z), np.abs(b)])
    step = ROW_DAMPING * (np.log(q) - np.log(q).mean())
    np.testing.assert_allclose(log_m[:2], step[:2], rtol=1e-12)
    np.testing.assert_allclose(log_m[2:], step[2:].mean(), rtol=1e-12)
    assert log_m[0] - log_m[1] == pytest.approx(ROW_DAMPING * np.log(1e4), rel=1e-12)
    assert abs(log_m.sum()) < 1e-12
    # A row whose every term vanishes divides by the floor 1e-3 x rms of its block.
    rule = RowMultipliers(program)
    rule.observe(
        np.array([0.0, 1.0, 1.0, 1.0, 1.0]), np.array([-1e-9, 0.5, 1.0, 1.0, 1.0]), np.zeros(5)
    )
    profile = rule.step() / ROW_DAMPING
    floor = 1e-3 * np.sqrt((1e-18 + 1.0) / 2.0)
    assert profile[0] - profile[1] == pytest.approx(np.log(1e-9 / floor) - np.log(0.5))


def test_rows_with_a_vanishing_residual_do_not_move_the_others() -> None:
    """A row whose residual is zero enters the profile at PROFILE_FLOOR times the geometric
    mean of the others, and its multiplier moves down; the step's mean is taken over the
    rows that rose above the floor, so the others move as they would without it."""

    def program(rows: int) -> AssembledProgram:
        A = sp.csr_array(np.eye(rows, 2))
        return Program.from_rows(np.zeros(2), A, np.zeros(rows), [NonnegCone(rows)]).assemble()

    residual = np.array([1e-3, 1e-2, 1e-3, 0.0])
    rule, live_only = RowMultipliers(program(4)), RowMultipliers(program(3))
    rule.observe(np.ones(4), np.ones(4) - residual, np.zeros(4))
    live_only.observe(np.ones(3), np.ones(3) - residual[:3], np.zeros(3))
    profile = np.log(residual[:3])
    center = profile.mean()
    np.testing.assert_allclose(rule.step()[:3], ROW_DAMPING * (profile - center), rtol=1e-12)
    np.testing.assert_allclose(rule.step()[:3], live_only.step(), rtol=1e-12)
    assert rule.step()[3] == pytest.approx(ROW_DAMPING * np.log(PROFILE_FLOOR), rel=1e-12)
    # A row above the floor at one check of the record counts in the mean.
    rule.observe(np.ones(4), np.ones(4) - np.array([1e-3, 1e-2, 1e-3, 1e-3]), np.zeros(4))
    profile = (
        np.log([1e-3, 1e-2, 1e-3, PROFILE_FLOOR * np.exp(center)])
        + np.log([1e-3, 1e-2, 1e-3, 1e-3])
    ) / 2
    np.testing.assert_allclose(rule.step(), ROW_DAMPING * (profile - profile.mean()), rtol=1e-12)
    # After a change the record starts again: a row at the floor throughout is left out.
    rule.reset()
    rule.observe(np.ones(4), np.ones(4) - residual, np.zeros(4))
    np.testing.assert_allclose(rule.step()[:3], live_only.step(), rtol=1e-12)


def test_adaptive_penalty_recovers_from_a_poor_initial_penalty() -> None:
    """Started at rho = 1e-4, three orders of magnitude below a balanced penalty, ADMM
    adapts rho from the residual ratio and converges in a fraction of the iterations
    of the fixed-penalty run, to the same answer."""
    prob, _ = _qp(1)
    program = _program(prob)
    fixed = ADMM(program, SolverOptions(rho=1e-4, adaptive_rho=False, max_iters=20_000)).solve()
    adaptive = ADMM(program, SolverOptions(rho=1e-4)).solve()
    assert adaptive.status == cp.OPTIMAL
    assert adaptive.info["refactorizations"] >= 1 and adaptive.info["rho"] > 1e-3
    assert adaptive.iterations < fixed.iterations / 3
    assert adaptive.kkt.primal_objective == pytest.approx(fixed.kkt.primal_objective, rel=1e-5)


def _farkas_vector(program: AssembledProgram) -> np.ndarray:
    """A Farkas certificate of an infeasible LP: y in the polar cone, A'y = 0, b'y = -1
    (a basic solution of that system, by HiGHS)."""
    from scipy.optimize import linprog

    free = np.zeros(program.m, dtype=bool)
    for term in program.terms:
        free[term.rows] = isinstance(term.function, ZeroCone)
    bounds = [(None, None) if f else (None, 0.0) for f in free]
    A_eq = sp.vstack([program.A.T, sp.csr_array(program.b[np.newaxis, :])])
    rhs = np.zeros(program.n + 1)
    rhs[-1] = -1.0
    found = linprog(np.zeros(program.m), A_eq=A_eq, b_eq=rhs, bounds=bounds, method="highs")
    assert found.status == 0
    return found.x


def test_a_stalled_farkas_candidate_is_refined_into_a_certificate() -> None:
    """A certificate perturbed by 1e-5 fails SCS's test at eps_infeas 1e-7; its refinement
    (projections onto A'y = 0, b'y = -1 and onto the polar cone) passes every test. On a
    feasible LP no direction becomes a certificate."""
    x = cp.Variable(4)
    infeasible = _program(cp.Problem(cp.Minimize(cp.sum(x)), [x >= 1, cp.sum(x) <= 3, x <= 5]))
    checker = KKTChecker(infeasible, RuizScaling(infeasible, 15), SolverOptions())
    y = _farkas_vector(infeasible)
    rng = np.random.default_rng(2)
    stalled = y + 1e-5 * rng.standard_normal(y.size)
    assert checker.certificate(None, stalled, 1e-7) == (None, None)
    refined = checker.refine_farkas(stalled, 1e-7)
    status, certificate = checker.certificate(None, refined, 1e-7)
    assert status == "infeasible"
    assert np.linalg.norm(infeasible.A.T @ certificate, np.inf) <= 1e-7
    assert infeasible.b @ certificate == pytest.approx(-1.0)
    assert checker.refine_farkas(y + 1.0 * rng.standard_normal(y.size), 1e-7) is None

    feasible = _program(cp.Problem(cp.Minimize(cp.sum(x)), [x >= 1, cp.sum(x) <= 5, x <= 5]))
    checker = KKTChecker(feasible, RuizScaling(feasible, 15), SolverOptions())
    direction = -np.abs(rng.standard_normal(feasible.m))
    refined = checker.refine_farkas(direction, 1e-7)
    assert checker.certificate(None, direction if refined is None else refined, 1e-7)[0] is None


def test_a_check_without_a_point_moves_only_the_row_multipliers() -> None:
    """Where u_tau = 0 the embedding records the rows' homogeneous residuals and no KKT
    error: the multipliers step, the scalar penalty stays."""
    A = sp.csr_array(np.eye(3, 2))
    program = Program.from_rows(np.zeros(2), A, np.zeros(3), [NonnegCone(3)]).assemble()
    penalty = Penalty(program, rho=0.1, rows=True)
    for _ in range(3):
        residual = np.array([1e-1, 1e-4, 1e-4])
        penalty.observe(None, (np.ones(3), np.ones(3) - residual, np.zeros(3)))
    assert penalty.update(ADAPT_EVERY)
    assert penalty.rho == 0.1
    assert penalty.multipliers[0] > 1.0 > penalty.multipliers[1]
