"""Statuses at iteration and time limits, on both routes, and the solver interface's edges.

Every model of CVXPY's conformance helpers that ``test_conformance.py`` runs, and a few
structured-route models, are solved with ``max_iters`` = 1, ..., 60 and with a tiny
``time_limit``. Whatever the limit, a solve returns (no exception) with a truthful
status: ``optimal`` only with the objective of Clarabel (tight tolerances) to 1e-4
relative; ``optimal_inaccurate`` (with the objective to 1e-2) or ``user_limit`` with
variable values and the limit named in ``solver_stats.extra_stats["limit"]``; a
certificate status only for a problem that has no solution, of the right kind. Each
solve starts cold (``warm_start=False``), so that ``max_iters`` counts every iteration.
A NablaProx instance's ``structure`` is the one its solves use; ``cvxprox.compile``
names the parameters that have no value.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import cvxpy as cp
import cvxpy.settings as s
import cvxpy.tests.solver_test_helpers as helpers
import numpy as np
import pytest
import scipy.sparse as sp
from cvxpy.error import ParameterError

import cvxprox
from compare.datasets import (
    data_dir,
    maros_meszaros_blocks,
    maros_meszaros_problem,
    read_maros_meszaros,
)
from compare.suites.maros_meszaros import qpbenchmark_residuals
from cvxprox.interface.solver import PROGRAM
from cvxprox.ir.program import Program
from cvxprox.solvers import hybrid
from cvxprox.solvers.admm import hsde
from cvxprox.solvers.common.algorithm import Progress, Steps
from cvxprox.solvers.common.result import BestIterate, SolveResult
from cvxprox.solvers.common.termination import KKTError, exact_gap

# CVXPY warns on every inaccurate status (user_limit included), which these tests expect.
pytestmark = pytest.mark.filterwarnings("ignore:Solution may be inaccurate:UserWarning")

TIGHT = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}
MAX_ITERS = range(1, 61)
SOLVED = (s.OPTIMAL, s.OPTIMAL_INACCURATE, s.USER_LIMIT)
# A status that may follow from Clarabel's status of the same problem.
TRUTHFUL = {
    s.OPTIMAL: {s.OPTIMAL, s.OPTIMAL_INACCURATE, s.USER_LIMIT},
    s.INFEASIBLE: {s.INFEASIBLE, s.INFEASIBLE_INACCURATE, s.USER_LIMIT},
    s.UNBOUNDED: {s.UNBOUNDED, s.UNBOUNDED_INACCURATE, s.USER_LIMIT},
}
CERTIFICATES = (s.INFEASIBLE, s.INFEASIBLE_INACCURATE)


@dataclass
class Model:
    """A problem, the NABLAPROX options it is solved with, and Clarabel's answer."""

    problem: cp.Problem
    options: dict
    status: str = ""
    value: float = np.nan

    def reference(self) -> Model:
        self.problem.solve(solver="CLARABEL", **TIGHT)
        self.status, self.value = self.problem.status, self.problem.value
        return self


def _conformance_models() -> dict[str, Callable[[], cp.Problem]]:
    """The helper models of every continuous test in ``test_conformance.py``."""
    models = {
        name: getattr(helpers, name)
        for name in (
            "lp_0 lp_1 lp_2 lp_3 lp_4 lp_5 lp_6 lp_bound_attr qp_0 qp_bound_attr socp_0 "
            "socp_1 socp_2 socp_4 socp_bounds_attr sdp_2 sdp_batched expcone_1 "
            "expcone_socp_1 sdp_pcp_1 pcp_1 pcp_2 pcp_3"
        ).split()
    }
    models["socp_3ax0"] = lambda: helpers.socp_3(axis=0)
    models["socp_3ax1"] = lambda: helpers.socp_3(axis=1)
    models["sdp_1min"] = lambda: helpers.sdp_1("min")
    models["sdp_1max"] = lambda: helpers.sdp_1("max")
    return {name: lambda make=make: make().prob for name, make in models.items()}


def _infeasible_lp() -> cp.Problem:
    x = cp.Variable(2)
    A = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    return cp.Problem(cp.Minimize(0), [A @ x <= np.array([0.0, 0.0, -1.0])])


def _small_qp() -> cp.Problem:
    x = cp.Variable(3)
    target = np.array([1.0, 2.0, 3.0])
    return cp.Problem(cp.Minimize(cp.sum_squares(x - target) + cp.sum(x)), [x >= 0, cp.sum(x) <= 2])


def _lasso() -> cp.Problem:
    rng = np.random.default_rng(0)
    M = rng.standard_normal((40, 20))
    b = M @ (rng.standard_normal(20) * (rng.random(20) < 0.3)) + 0.1 * rng.standard_normal(40)
    x = cp.Variable(20)
    return cp.Problem(cp.Minimize(cp.sum_squares(M @ x - b) + 2.0 * cp.norm1(x)))


def _tv_denoising() -> cp.Problem:
    rng = np.random.default_rng(1)
    truth = np.zeros((12, 12))
    truth[3:9, 4:10] = 1.0
    noisy = truth + 0.2 * rng.standard_normal(truth.shape)
    X = cp.Variable(truth.shape)
    return cp.Problem(cp.Minimize(cp.sum_squares(X - noisy) + 0.5 * cp.tv(X)), [X >= 0, X <= 1])


def _hinge() -> cp.Problem:
    rng = np.random.default_rng(2)
    A = rng.standard_normal((50, 8))
    labels = np.sign(A @ rng.standard_normal(8) + 0.3 * rng.standard_normal(50))
    w, v = cp.Variable(8), cp.Variable()
    loss = cp.sum(cp.pos(1 - cp.multiply(labels, A @ w - v)))
    return cp.Problem(cp.Minimize(loss / 50 + 0.1 * cp.sum_squares(w)))


STRUCTURED = {
    "lasso_fista": (_lasso, {"algorithm": "fista"}),
    "tv_admm": (_tv_denoising, {"algorithm": "admm"}),
    "tv_ladmm": (_tv_denoising, {"algorithm": "ladmm"}),
    "tv_hqs": (_tv_denoising, {"algorithm": "hqs"}),
    "hinge_admm": (_hinge, {"structure": "always", "algorithm": "admm"}),
}
CONE = {name: (make, {}) for name, make in _conformance_models().items()}
CONE |= {
    "infeasible_lp": (_infeasible_lp, {}),
    "small_qp": (_small_qp, {}),
    "small_qp_pdhg": (_small_qp, {"algorithm": "pdhg"}),
    "lp_5_pdhg": (lambda: helpers.lp_5().prob, {"algorithm": "pdhg"}),
}
MODELS = CONE | STRUCTURED


def _check(model: Model, limit: dict) -> str:
    """Solve under ``limit`` and check that the status is truthful; returns the status."""
    prob = model.problem
    prob.solve(solver="NABLAPROX", warm_start=False, **model.options, **limit)
    status = prob.status
    assert status in TRUTHFUL[model.status], (limit, status, model.status)
    stats = prob.solver_stats
    if "max_iters" in limit:
        assert stats.num_iters <= limit["max_iters"]
    if status == s.OPTIMAL:
        assert prob.value == pytest.approx(model.value, rel=1e-4, abs=1e-6), limit
    elif status in SOLVED:
        if status == s.OPTIMAL_INACCURATE:  # residuals within 1e3 of the 1e-6 tolerances
            assert prob.value == pytest.approx(model.value, rel=1e-2, abs=1e-2), limit
        assert all(v.value is not None for v in prob.variables()), (limit, status)
        assert np.isfinite(prob.value)
        assert stats.extra_stats["limit"] in ("max_iters", "time_limit")
    elif status in CERTIFICATES:
        assert all(c.dual_value is not None for c in prob.constraints), (limit, status)
    return status


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_iteration_limit_gives_a_truthful_status(name: str) -> None:
    make, options = MODELS[name]
    model = Model(make(), options).reference()
    for k in MAX_ITERS:
        _check(model, {"max_iters": k})


@pytest.mark.parametrize("name", sorted(MODELS))
def test_tiny_time_limit_gives_a_truthful_status(name: str) -> None:
    make, options = MODELS[name]
    model = Model(make(), options).reference()
    for check_every in (1, 10):
        _check(model, {"time_limit": 1e-9, "check_every": check_every})


def test_user_limit_keeps_the_best_iterate_and_names_the_limit() -> None:
    prob = _infeasible_lp()  # presolve would certify it (x <= 0 and x_0 + x_1 >= 1)
    prob.solve(solver="NABLAPROX", max_iters=1, presolve=False)
    assert prob.status == s.USER_LIMIT
    assert prob.solver_stats.extra_stats["limit"] == "max_iters"
    assert prob.variables()[0].value is not None
    prob = _lasso()
    prob.solve(solver="NABLAPROX", time_limit=1e-9, eps_abs=1e-9, eps_rel=1e-9)
    assert prob.status == s.USER_LIMIT
    assert prob.solver_stats.extra_stats["limit"] == "time_limit"
    assert prob.variables()[0].value is not None


def test_verbose_footer_names_the_limit(capsys: pytest.CaptureFixture) -> None:
    _infeasible_lp().solve(solver="NABLAPROX", max_iters=1, verbose=True, presolve=False)
    assert "status: user_limit (max_iters reached)" in capsys.readouterr().out


def test_optimal_inaccurate_meets_the_loose_tolerance() -> None:
    """A limit that stops a run near the solution gives optimal_inaccurate, with residuals
    within 1e3 times the tolerances (normalized KKT error <= loose_factor = 1e3 here)."""
    prob = _tv_denoising()
    prob.solve(solver="CLARABEL", **TIGHT)
    reference = prob.value
    seen = set()
    for k in range(20, 400, 20):
        prob.solve(
            solver="NABLAPROX",
            algorithm="ladmm",
            max_iters=k,
            eps_abs=1e-8,
            eps_rel=1e-8,
            warm_start=False,
        )
        error = prob.solver_stats.extra_stats["kkt_error"]
        seen.add(prob.status)
        if prob.status == s.OPTIMAL_INACCURATE:
            assert 1.0 < error <= 1e3
            assert prob.value == pytest.approx(reference, rel=1e-3)
        elif prob.status == s.USER_LIMIT:
            assert error > 1e3
    assert {s.OPTIMAL_INACCURATE, s.USER_LIMIT} <= seen


@pytest.mark.parametrize("structure", ["auto", "always", "never"])
def test_solver_instance_structure_is_honoured(structure: str) -> None:
    prob = _tv_denoising()
    prob.solve(solver="CLARABEL", **TIGHT)
    reference = prob.value
    solver = cvxprox.NablaProx(structure=structure)
    data, _, _ = prob.get_problem_data(solver=solver)
    assert isinstance(data[PROGRAM], Program)
    assert data[PROGRAM].solve_assembled == (structure == "never")
    for _ in range(2):  # the first solve and a re-solve with the cached chain
        prob.solve(solver=solver, eps_abs=1e-8, eps_rel=1e-8)
        assert prob.status == s.OPTIMAL
        assert prob.value == pytest.approx(reference, rel=1e-5)
    with pytest.raises(ValueError, match="differs from the one this problem was compiled"):
        other = "never" if structure != "never" else "always"
        prob.solve(solver=solver, structure=other)


def test_structure_option_is_kept_for_later_solves_that_omit_it() -> None:
    prob = _tv_denoising()
    prob.solve(solver="NABLAPROX", structure="never")
    prob.solve(solver="NABLAPROX")
    assert prob.status == s.OPTIMAL


@pytest.mark.parametrize("make", [_small_qp, _tv_denoising], ids=["cones", "structured"])
def test_compile_names_parameters_without_values(make: Callable[[], cp.Problem]) -> None:
    base = make()
    target = cp.Parameter(name="target")
    weight = cp.Parameter(nonneg=True, name="weight")
    x = base.variables()[0]
    prob = cp.Problem(
        cp.Minimize(base.objective.expr + weight * cp.sum_squares(x - target)), base.constraints
    )
    with pytest.raises(ParameterError, match="without a value: target, weight"):
        cvxprox.compile(prob)
    target.value, weight.value = 0.5, 1.0
    compiled = cvxprox.compile(prob)
    assert compiled.program.n >= x.size


def test_zero_absolute_tolerance_on_zero_data() -> None:
    """eps_abs = 0 with zero data makes a tolerance 0; a zero residual still passes."""
    x = cp.Variable(2)
    prob = cp.Problem(cp.Minimize(0), [x >= 0])
    prob.solve(solver="NABLAPROX", eps_abs=0.0, eps_rel=1e-6)
    assert prob.status == s.OPTIMAL
    assert np.all(x.value >= 0)


def test_lp_handed_to_pdhg_keeps_the_better_iterate_of_both_phases(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An LP that the embedding does not settle within its budget (here 40 iterations)
    goes on with PDHG; when the limit then stops PDHG early, the embedding's better
    iterate is returned."""
    budget = 40
    monkeypatch.setattr(hybrid, "EMBEDDING_BUDGET", budget)
    rng = np.random.default_rng(2)
    A = rng.standard_normal((80, 60))
    b = A @ rng.random(60) + rng.random(80)
    x = cp.Variable(60)
    prob = cp.Problem(cp.Minimize(rng.standard_normal(60) @ x), [A @ x <= b, cp.abs(x) <= 2])
    tight = {"eps_abs": 1e-9, "eps_rel": 1e-9, "warm_start": False}
    prob.solve(solver="NABLAPROX", max_iters=budget, **tight)
    embedding = prob.solver_stats.extra_stats
    prob.solve(solver="NABLAPROX", max_iters=budget + 20, **tight)
    both = prob.solver_stats.extra_stats
    assert both["algorithm"] == "hsde+pdhg" and both["handover_iteration"] == budget
    assert both["kkt_error"] <= embedding["kkt_error"]
    assert prob.status in (s.OPTIMAL_INACCURATE, s.USER_LIMIT)


def _embedding_best(gap: float, pobj: float, dobj: float) -> BestIterate:
    """An embedding's best iterate of the given gap."""
    best = BestIterate()
    kkt = KKTError(1.0, 1.0, gap, 1e-6, 1e-6, 1e-6, pobj, dobj)
    best.offer(kkt, np.ones(2), np.zeros(3), -np.ones(3))
    return best


def test_pdhg_starts_from_the_embeddings_point_only_near_the_optimal_face() -> None:
    """PDHG starts from a copy of the embedding's best iterate (x, z, y) when its duality
    gap is within WARM_GAP of the objective, else from the caller's warm start."""
    caller = {"x": np.zeros(2), "y": np.zeros(3)}
    near = _embedding_best(gap=0.5 * hybrid.WARM_GAP * 200.0, pobj=200.0, dobj=-150.0)
    start, origin = hybrid._pdhg_start(near, caller)
    assert set(start) == {"x", "z", "y"} and "embedding" in origin
    np.testing.assert_array_equal(start["y"], -np.ones(3))
    assert start["y"] is not near.point[2]
    far = _embedding_best(gap=2.0 * hybrid.WARM_GAP * 200.0, pobj=200.0, dobj=-150.0)
    assert hybrid._pdhg_start(far, caller) == (caller, "the caller's warm start")
    assert hybrid._pdhg_start(far, None) == (None, "a cold start")


def test_the_embedding_hands_over_past_its_budget_unless_heading_for_a_certificate() -> None:
    """An iteration costs (2 nnz(L) + 3 nnz(A) + 10 (n + m)) / (2 nnz(A) + n + m) of PDHG's. The
    embedding is joined by PDHG at a check past its budget with u_tau above TAU_FEASIBLE, at its
    first such check when an iteration costs more than MAX_WORK_RATIO of PDHG's."""
    assert hsde.work_ratio(nnz_L=0, nnz_A=0, n=3, m=7) == 10.0
    assert hsde.work_ratio(nnz_L=90, nnz_A=5, n=3, m=7) == pytest.approx(295.0 / 20.0)

    def check(iterations: int, cost: float, tau: float) -> Progress:
        return Progress(iterations, cost, BestIterate(), tau=tau)

    assert not hybrid._hands_over(check(2490, 3.0, 1.0), 2500)
    assert hybrid._hands_over(check(2500, 3.0, 1.0), 2500)
    assert not hybrid._hands_over(check(9000, 3.0, 0.0), 2500)
    assert hybrid._hands_over(check(10, hybrid.MAX_WORK_RATIO + 0.5, 1.0), 2500)
    assert not hybrid._hands_over(check(10, hybrid.MAX_WORK_RATIO, 1.0), 2500)


def _run(
    name: str, cost: float, checks: int, final: SolveResult, trace: list[tuple[str, int]]
) -> Steps:
    """A fake run: a check every 10 iterations of the given cost, ``final`` at the end (or
    when a limit's name is sent, which it then records)."""
    for k in range(1, checks + 1):
        trace.append((name, 10 * k))
        stop = yield Progress(10 * k, cost, BestIterate())
        if stop is not None:
            final.info["limit"], final.iterations = stop, 10 * k
            return final
    final.iterations = 10 * (checks + 1)
    return final


def _result(status: str, normalized: float = 1.0) -> SolveResult:
    kkt = KKTError(normalized, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0)
    return SolveResult(status, None, None, None, "fake", 0, 0.0, 0.1, kkt, {})


def _race(
    embedding: tuple[float, int, SolveResult],
    pdhg: tuple[float, int, SolveResult],
    max_iters: int = 10**6,
    turns: bool = True,
) -> tuple[SolveResult, list[tuple[str, int]], hybrid._Race]:
    trace: list[tuple[str, int]] = []
    runs = _run("hsde", *embedding, trace), _run("pdhg", *pdhg, trace)
    handed = next(runs[0])
    race = hybrid._Race(runs[0], handed, runs[1], max_iters, turns)
    return race.run(), trace, race


def test_the_race_gives_the_next_check_to_the_run_that_has_done_less_work() -> None:
    """The embedding (3 products an iteration, 10 iterations at the hand-over) and PDHG (1
    product): PDHG runs alone until it has done the embedding's 30 products, then the
    two keep level; PDHG settles first, and the embedding's run is dropped."""
    result, trace, race = _race((3.0, 100, _result(s.USER_LIMIT)), (1.0, 5, _result(s.OPTIMAL)))
    order = ["hsde", "pdhg", "pdhg", "pdhg", "hsde", "pdhg", "pdhg"]
    assert [name for name, _ in trace] == order
    assert result.status == s.OPTIMAL and result.algorithm == "fake"
    assert (race.iterations_of(0), race.iterations_of(1)) == (20, 60)


def test_the_race_returns_the_first_run_to_settle() -> None:
    """The embedding settles while PDHG is still running."""
    infeasible = _result(s.INFEASIBLE)
    result, _, race = _race((1.0, 2, infeasible), (1.0, 100, _result(s.USER_LIMIT)))
    assert result is infeasible
    assert race.iterations_of(0) == 30


def test_the_race_stops_both_runs_at_max_iters_together() -> None:
    """The two runs' iterations together stay within max_iters: both are stopped, under
    that limit, and the better point (the smaller normalized KKT error) is returned."""
    embedding, pdhg = _result(s.USER_LIMIT, 5.0), _result(s.USER_LIMIT, 50.0)
    result, _, race = _race((1.0, 100, embedding), (1.0, 100, pdhg), max_iters=60)
    assert race.iterations == 60
    assert embedding.info["limit"] == pdhg.info["limit"] == "max_iters"
    assert result is embedding and result.setup_time == pytest.approx(0.2)


def test_a_run_stopped_by_the_time_limit_stops_the_other() -> None:
    """PDHG ends by the time limit; the embedding is stopped where it stands, under the
    same name, and the better point is returned under it."""
    out_of_time = _result(s.USER_LIMIT, 50.0)
    out_of_time.info["limit"] = "time_limit"
    embedding = _result(s.USER_LIMIT, 5.0)
    result, trace, race = _race((1.0, 100, embedding), (1.0, 1, out_of_time))
    assert embedding.info["limit"] == "time_limit"
    assert result is embedding and result.info["limit"] == "time_limit"
    assert trace == [("hsde", 10), ("pdhg", 10), ("hsde", 20)]
    assert race.iterations_of(0) == 20


def test_without_turns_the_embedding_ends_at_the_hand_over() -> None:
    """A dear embedding (or a backend other than NumPy): its run is stopped at the
    hand-over and PDHG runs alone to its end."""
    embedding, pdhg = _result(s.USER_LIMIT, 5.0), _result(s.OPTIMAL)
    result, trace, race = _race((20.0, 100, embedding), (1.0, 8, pdhg), turns=False)
    assert embedding.info["limit"] == "embedding_budget"
    assert result is pdhg and [name for name, _ in trace].count("hsde") == 1
    assert (race.iterations_of(0), race.iterations_of(1)) == (10, 90)


def test_a_run_polished_at_max_iters_is_returned_as_settled() -> None:
    """Both runs stopped at max_iters: one whose stop ends optimal (its polishing passed)
    is returned as it is."""
    polished = _result(s.OPTIMAL, 0.5)
    result, _, _ = _race((1.0, 100, polished), (1.0, 100, _result(s.USER_LIMIT, 0.1)), 40)
    assert result is polished and result.info["limit"] == "max_iters"


def test_the_race_prefers_an_inaccurate_status_to_a_user_limit() -> None:
    """Both runs end by their own limits: an optimal_inaccurate point is returned before a
    user-limit point with a smaller error."""
    inaccurate = _result(s.OPTIMAL_INACCURATE, 100.0)
    result, _, _ = _race((1.0, 3, _result(s.USER_LIMIT, 2.0)), (1.0, 3, inaccurate))
    assert result is inaccurate


def test_lp_with_a_dear_factor_goes_to_pdhg_at_the_first_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When an iteration of the embedding costs more than MAX_WORK_RATIO of PDHG's (here
    where the prediction before factoring did not say so), the embedding's run ends at
    its first check and PDHG alone solves the LP."""
    monkeypatch.setattr(hybrid, "MAX_WORK_RATIO", 1.0)
    monkeypatch.setattr(hybrid, "dear_factor", lambda program: None)
    rng = np.random.default_rng(4)
    A = rng.standard_normal((30, 20))
    x = cp.Variable(20)
    prob = cp.Problem(cp.Minimize(rng.random(20) @ x), [A @ x <= 1 + rng.random(30), x >= -1])
    prob.solve(solver="NABLAPROX", check_every=10, warm_start=False)
    stats = prob.solver_stats.extra_stats
    assert stats["algorithm"] == "hsde+pdhg" and stats["handover_iteration"] == 10
    assert stats["embedding_iterations"] == 10 and stats["pdhg_iterations"] > 0
    assert prob.status == s.OPTIMAL
    reference = prob.value
    prob.solve(solver="CLARABEL")
    assert abs(prob.value - reference) <= 1e-5 * max(1.0, abs(reference))


def test_lp_whose_factor_is_predicted_dear_is_not_factored() -> None:
    """An LP whose KKT factor fills in (a sparse expander, as Netlib's QAPs: nnz(L) 14
    times its nnz(A)) runs PDHG alone from the start: the embedding never factors."""
    rng = np.random.default_rng(5)
    m, n = 600, 800
    rows = rng.integers(0, m, size=(n, 3)).ravel()
    A = sp.csr_array((rng.random(rows.size) + 0.5, (rows, np.repeat(np.arange(n), 3))), (m, n))
    A.sum_duplicates()
    x = cp.Variable(n)
    b = A @ rng.random(n)
    prob = cp.Problem(cp.Minimize(rng.random(n) @ x), [A @ x == b, x >= 0])
    prob.solve(solver="NABLAPROX", eps_abs=1e-7, eps_rel=1e-7, warm_start=False)
    stats = prob.solver_stats.extra_stats
    assert stats["algorithm"] == "hsde+pdhg" and stats["handover_iteration"] == 0
    assert stats["embedding_iterations"] == 0 and stats["pdhg_iterations"] > 0
    assert prob.status == s.OPTIMAL
    reference = prob.value
    prob.solve(solver="CLARABEL", tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    assert abs(prob.value - reference) <= 1e-5 * max(1.0, abs(reference))


@pytest.mark.parametrize("algorithm", ["admm", "pdhg"])
def test_a_time_limit_is_not_extended_by_polishing(algorithm: str) -> None:
    """At max_iters the best iterate of a QP is polished once more; at time_limit it is
    not (the factorization could take longer than the limit itself). (A QP: an LP's
    polish waits for an active set of n rows, which three iterations do not give.)"""
    rng = np.random.default_rng(3)
    A = rng.standard_normal((40, 60))
    x = cp.Variable(60)
    objective = rng.random(60) @ x + 0.1 * cp.sum_squares(x)
    prob = cp.Problem(cp.Minimize(objective), [A @ x <= 1 + rng.random(40), x >= -1])
    prob.solve(solver="NABLAPROX", algorithm=algorithm, time_limit=1e-9, warm_start=False)
    stats = prob.solver_stats.extra_stats
    assert stats["limit"] == "time_limit"
    assert stats["polish_attempts"] == 0
    prob.solve(solver="NABLAPROX", algorithm=algorithm, max_iters=3, warm_start=False)
    stats = prob.solver_stats.extra_stats
    assert stats["limit"] in ("max_iters", None)
    assert stats["polish_attempts"] >= 1


def test_a_gap_tolerance_below_rounding_is_met_at_the_rounding_level() -> None:
    """A gap within its rounding level passes the test, but the point is not reported as
    verified to a tolerance below that level."""
    kkt = KKTError(0.0, 0.0, 5e-4, 1.0, 1.0, 1e-6, 0.0, 0.0, gap_floor=1e-3)
    assert kkt.converged and not kkt.gap_verified
    assert kkt.normalized == pytest.approx(0.5)
    assert KKTError(0.0, 0.0, 5e-7, 1.0, 1.0, 1e-6, 0.0, 0.0, gap_floor=1e-9).gap_verified


def test_an_absolute_gap_below_rounding_gives_optimal_inaccurate() -> None:
    """With eps_rel = 0 and an objective of 2.5e8, eps_abs = 1e-10 asks the gap for less
    than its rounding level (2.5e-6): the solve ends there, and the gap of the point
    computed without rounding (about 2e-9) exceeds the tolerance: optimal_inaccurate,
    saying why. At eps_abs = 1e-7, also below the rounding level, that gap is within the
    tolerance: optimal; eps_abs = 1e-3 lies above the rounding level: optimal."""
    rng = np.random.default_rng(3)
    A = rng.random((10, 20))
    lower = 1e7 * (1.0 + rng.random(20))
    x = cp.Variable(20)
    constraints = [A @ x <= A @ (lower + 5e6), x >= lower, x <= lower + 1e7]
    prob = cp.Problem(cp.Minimize(rng.standard_normal(20) @ x), constraints)
    prob.solve(solver="CLARABEL", **TIGHT)
    reference = prob.value
    prob.solve(solver="NABLAPROX", eps_abs=1e-10, eps_rel=0.0)
    assert prob.status == s.OPTIMAL_INACCURATE
    assert "rounding level" in prob.solver_stats.extra_stats["inaccurate"]
    assert prob.value == pytest.approx(reference, rel=1e-8)
    prob.solve(solver="NABLAPROX", eps_abs=1e-7, eps_rel=0.0)
    assert prob.status == s.OPTIMAL
    assert prob.solver_stats.extra_stats["exact_gap"] < 1e-7
    assert prob.value == pytest.approx(reference, rel=1e-8)
    prob.solve(solver="NABLAPROX", eps_abs=1e-3, eps_rel=0.0)
    assert prob.status == s.OPTIMAL
    assert "inaccurate" not in prob.solver_stats.extra_stats
    assert "exact_gap" not in prob.solver_stats.extra_stats


def test_a_structured_program_below_rounding_is_not_assembled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A lasso solved on its terms (FISTA) with eps_rel = 0 and an objective of 9e12: its
    gap tolerance lies below the rounding level, and its gap is not a cone program's, so
    the point is optimal_inaccurate without the cone form being built (a term without
    one would raise) or polished."""

    def no_cone_form(self: Program) -> None:
        raise AssertionError("assembled")

    monkeypatch.setattr(Program, "assemble", no_cone_form)
    rng = np.random.default_rng(0)
    A, b = rng.standard_normal((40, 20)), 1e6 * rng.standard_normal(40)
    x = cp.Variable(20)
    prob = cp.Problem(cp.Minimize(cp.sum_squares(A @ x - b) + cp.norm1(x)))
    prob.solve(solver="NABLAPROX", eps_abs=1e-3, eps_rel=0.0)
    assert prob.status == s.OPTIMAL_INACCURATE
    assert prob.solver_stats.extra_stats["algorithm"] == "fista"
    assert "rounding level" in prob.solver_stats.extra_stats["inaccurate"]


def test_the_exact_gap_is_the_correctly_rounded_gap() -> None:
    """``exact_gap`` against rational arithmetic, on a point whose gap cancels terms of
    1e10 down to about 1e-3 (the floating-point sums are off by far more), and its
    spread against the change of the gap when x and y move by a unit roundoff."""
    rng = np.random.default_rng(5)
    n, m = 300, 200
    c, b = rng.standard_normal(n) * 1e4, rng.standard_normal(m) * 1e4
    x, y = rng.standard_normal(n) * 1e6, rng.standard_normal(m) * 1e6
    P = sp.random_array((n, n), density=0.05, random_state=6, format="csc")
    P = (P + P.T) * 1e-2
    y[0] = 0.0
    partial = _exact(c, b, P, x, y)
    y[0] = float(-partial / Fraction(b[0]))  # the gap nearly cancels
    exact = abs(_exact(c, b, P, x, y))
    gap, spread = exact_gap(c, b, P, x, y)
    assert gap == float(exact) and 0.0 < gap < 1e-1
    assert abs(float(x @ (P @ x) + c @ x + b @ y) - gap) > 10 * gap
    moved = _exact(c, b, P, x * (1 + 2.0**-52), y * (1 - 2.0**-52))
    assert abs(float(moved) - gap) <= spread
    assert math.isnan(exact_gap(c, b, P, x * 1e300, y)[0])


def _exact(c, b, P, x, y) -> Fraction:  # noqa: ANN001
    """x'Px + c'x + b'y in rational arithmetic."""
    P = sp.coo_array(P)
    total = sum(Fraction(ci) * Fraction(xi) for ci, xi in zip(c, x, strict=True))
    total += sum(Fraction(bi) * Fraction(yi) for bi, yi in zip(b, y, strict=True))
    for v, i, j in zip(P.data, P.row, P.col, strict=True):
        total += Fraction(v) * Fraction(x[i]) * Fraction(x[j])
    return total


HAVE_MAROS_MESZAROS = (data_dir() / "maros_meszaros").is_dir()


@pytest.mark.skipif(not HAVE_MAROS_MESZAROS, reason="Maros-Meszaros data not found")
@pytest.mark.parametrize("name", ["QFORPLAN", "QCAPRI", "HUESTIS", "QSHELL", "POWELL20"])
def test_polished_maros_meszaros_points_meet_an_absolute_gap_tolerance(name: str) -> None:
    """eps_abs = 1e-3, eps_rel = 0 on objectives of 7.5e9, 6.7e7, 3.5e11, 1.6e12 and
    5.2e10: the iterations stall far above that gap, and only a polished point meets it.
    QFORPLAN's vertex is degenerate (the multipliers are refined from the iterate's),
    QCAPRI's first active set is wrong (the rounds move it), HUESTIS' and QSHELL's gap
    tolerances lie below the computed gap's rounding level (refined in extended
    precision, their gaps computed without rounding), and POWELL20's iterations end with
    a gap that passes at the rounding level but not without rounding (its point is
    polished then). qpbenchmark's own residuals at the point are all below 1e-3."""
    data = read_maros_meszaros(name)
    prob = maros_meszaros_problem(data)
    prob.solve(solver="NABLAPROX", eps_abs=1e-3, eps_rel=0.0, time_limit=60)
    assert prob.status == s.OPTIMAL
    assert prob.solver_stats.extra_stats["polished"]
    x = prob.variables()[0].value
    duals = [c.dual_value for c in prob.constraints]
    residuals = qpbenchmark_residuals(data, maros_meszaros_blocks(data), x, duals)
    assert max(residuals) < 1e-3
