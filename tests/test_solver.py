"""The NABLAPROX solver interface: registration, options, statuses, stats, DPP, warm start."""

import cvxpy as cp
import numpy as np
import pytest
from cvxpy.error import SolverError
from cvxpy.reductions.dcp2cone.dcp2cone import Dcp2Cone

import cvxprox
from cvxprox.reductions import ConeProgToProx

TIGHT = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}


def _lp(seed: int = 0, m: int = 15, n: int = 10) -> tuple[cp.Problem, cp.Variable]:
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, n))
    x0 = rng.random(n)
    b = A @ x0 + rng.random(m)
    c = rng.standard_normal(n)
    x = cp.Variable(n)
    prob = cp.Problem(cp.Minimize(c @ x), [A @ x <= b, cp.abs(x) <= 2])
    return prob, x


def _portfolio(seed: int = 0, n: int = 20) -> tuple[cp.Problem, cp.Parameter, cp.Variable]:
    rng = np.random.default_rng(seed)
    F = rng.standard_normal((n, 3))
    Sigma = F @ F.T + 0.1 * np.eye(n)
    mu = cp.Parameter(n, value=rng.random(n))
    w = cp.Variable(n)
    prob = cp.Problem(
        cp.Maximize(mu @ w - cp.quad_form(w, Sigma)), [cp.sum(w) == 1, w >= 0, w <= 0.3]
    )
    return prob, mu, w


def test_registered() -> None:
    assert "NABLAPROX" in cp.installed_solvers()
    assert cvxprox.NABLAPROX == "NABLAPROX"


def test_other_solvers_unchanged() -> None:
    prob, x = _lp()
    prob.solve(solver="CLARABEL")
    assert type(prob.solver_stats.solver_name) is str
    assert prob.solver_stats.solver_name == "CLARABEL"


def test_lp_primal_dual_match_clarabel() -> None:
    prob, x = _lp(1)
    prob.solve(solver="CLARABEL", **TIGHT)
    ref_val, ref_x = prob.value, x.value
    ref_duals = [c.dual_value for c in prob.constraints]
    prob.solve(solver="NABLAPROX")
    assert prob.status == cp.OPTIMAL
    assert prob.value == pytest.approx(ref_val, rel=1e-4, abs=1e-5)
    np.testing.assert_allclose(x.value, ref_x, atol=1e-4)
    for con, ref in zip(prob.constraints, ref_duals, strict=True):
        np.testing.assert_allclose(con.dual_value, ref, atol=1e-4)


def test_maximize_qp_and_duals() -> None:
    prob, _, w = _portfolio()
    prob.solve(solver="CLARABEL", **TIGHT)
    ref_val, ref_w = prob.value, w.value
    ref_duals = [c.dual_value for c in prob.constraints]
    prob.solve(solver="NABLAPROX")
    assert prob.status == cp.OPTIMAL
    assert prob.value == pytest.approx(ref_val, rel=1e-4)
    np.testing.assert_allclose(w.value, ref_w, atol=1e-4)
    for con, ref in zip(prob.constraints, ref_duals, strict=True):
        np.testing.assert_allclose(con.dual_value, ref, atol=1e-4)


def test_hinge_loss_not_changed_by_bound_inference() -> None:
    """CVXPY 1.9's bound inference for auxiliary variables (used for solvers that take
    variable bounds) can fix the slacks of a hinge loss; NABLAPROX must not use it."""
    rng = np.random.default_rng(0)
    m, n = 200, 20
    labels = rng.choice([-1.0, 1.0], m)
    X = rng.standard_normal((m, n)) + 0.5 * labels[:, None] * rng.standard_normal(n)
    w, b = cp.Variable(n), cp.Variable()
    loss = cp.sum(cp.pos(1 - cp.multiply(labels, X @ w + b))) / m
    prob = cp.Problem(cp.Minimize(loss + 0.1 * cp.sum_squares(w)))
    prob.solve(solver="CLARABEL", **TIGHT)
    ref = prob.value
    prob.solve(solver="NABLAPROX")
    assert prob.status == cp.OPTIMAL
    assert prob.value == pytest.approx(ref, rel=1e-4)


def test_solver_stats() -> None:
    prob, _ = _lp()
    prob.solve(solver="NABLAPROX")
    stats = prob.solver_stats
    assert stats.solver_name == "NABLAPROX"
    assert stats.num_iters > 0
    assert stats.solve_time > 0 and stats.setup_time >= 0
    extra = stats.extra_stats
    assert extra["algorithm"] in ("hsde", "pdhg", "hsde+pdhg")
    for key in ("primal_residual", "dual_residual", "duality_gap"):
        assert extra[key] >= 0


def test_integer_variables_rejected() -> None:
    x = cp.Variable(3, integer=True)
    prob = cp.Problem(cp.Minimize(cp.sum(x)), [x >= 0.5])
    with pytest.raises(SolverError, match="integer or boolean variables are not supported"):
        prob.solve(solver="NABLAPROX")


@pytest.mark.parametrize(
    "options, match",
    [
        ({"eps": 1e-3}, "unknown NABLAPROX option 'eps'"),
        ({"max_iters": 0}, "max_iters"),
        ({"max_iters": 2.5}, "max_iters"),
        ({"eps_abs": -1.0}, "eps_abs"),
        ({"eps_rel": float("nan")}, "eps_rel"),
        ({"algorithm": "simplex"}, "algorithm"),
        ({"device": "tpu"}, "device"),
        ({"dtype": "float16"}, "dtype"),
        ({"time_limit": 0}, "time_limit"),
        ({"alpha": 2.0}, "alpha"),
        ({"dtype": "float32", "algorithm": "admm"}, "float32"),
        ({"threads": 0}, "threads"),
    ],
)
def test_bad_options(options: dict, match: str) -> None:
    prob, _ = _lp()
    with pytest.raises(ValueError, match=match):
        prob.solve(solver="NABLAPROX", **options)


def test_nan_constant_named() -> None:
    x = cp.Variable(2)
    A = np.array([[1.0, np.nan], [0.0, 1.0]])
    prob = cp.Problem(cp.Minimize(cp.sum(x)), [A @ x <= 1, x >= 0])
    with pytest.raises(ValueError, match=r"constraint 0 .* contains NaN"):
        prob.solve(solver="NABLAPROX")


def test_inf_in_objective_named() -> None:
    x = cp.Variable(2)
    prob = cp.Problem(cp.Minimize(np.array([1.0, np.inf]) @ x), [x >= 0])
    with pytest.raises(ValueError, match="the objective contains inf"):
        prob.solve(solver="NABLAPROX")


def test_inf_coefficient_named() -> None:
    x = cp.Variable(2)
    A = np.array([[1.0, np.inf], [0.0, 1.0]])
    prob = cp.Problem(cp.Minimize(cp.sum(x)), [x >= 0, A @ x <= 1])
    with pytest.raises(ValueError, match=r"constraint 1 .* contains inf"):
        prob.solve(solver="NABLAPROX")


def test_inf_parameter_named_on_resolve() -> None:
    prob, mu, _ = _portfolio()
    prob.solve(solver="NABLAPROX")
    value = mu.value.copy()
    value[0] = np.inf
    mu.value = value
    with pytest.raises(ValueError, match="parameter .* NaN or infinite"):
        prob.solve(solver="NABLAPROX")


def test_infinite_bound_is_vacuous() -> None:
    x = cp.Variable(2)
    prob = cp.Problem(cp.Minimize(cp.sum_squares(x - 3)), [x <= np.array([1.0, np.inf])])
    prob.solve(solver="NABLAPROX")
    assert prob.status == cp.OPTIMAL
    np.testing.assert_allclose(x.value, [1.0, 3.0], atol=1e-4)


def test_dpp_resolve_skips_reductions(monkeypatch: pytest.MonkeyPatch) -> None:
    prob, mu, w = _portfolio()
    prob.solve(solver="NABLAPROX")
    calls = {"dcp2cone": 0, "cone2prox": 0}

    def counting(name, original):
        def wrapper(self, *args, **kwargs):
            calls[name] += 1
            return original(self, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(Dcp2Cone, "apply", counting("dcp2cone", Dcp2Cone.apply))
    monkeypatch.setattr(ConeProgToProx, "apply", counting("cone2prox", ConeProgToProx.apply))
    rng = np.random.default_rng(5)
    for _ in range(3):
        mu.value = rng.random(mu.size)
        prob.solve(solver="NABLAPROX")
        assert prob.status == cp.OPTIMAL
        ours = prob.value
        prob_ref = cp.Problem(prob.objective, prob.constraints)
        prob_ref.solve(solver="CLARABEL", **TIGHT)
        assert ours == pytest.approx(prob_ref.value, rel=1e-4)
    # Clarabel's own chain ran Dcp2Cone; ours ran nothing.
    assert calls["cone2prox"] == 0
    assert calls["dcp2cone"] == 3


def test_warm_start_fewer_iterations() -> None:
    prob, mu, _ = _portfolio(seed=3, n=40)
    prob.solve(solver="NABLAPROX", eps_abs=1e-7, eps_rel=1e-7)
    mu.value = mu.value * 1.01
    prob.solve(solver="NABLAPROX", eps_abs=1e-7, eps_rel=1e-7, warm_start=False)
    cold = prob.solver_stats.num_iters
    prob.solve(solver="NABLAPROX", eps_abs=1e-7, eps_rel=1e-7, warm_start=True)
    warm = prob.solver_stats.num_iters
    assert prob.status == cp.OPTIMAL
    assert warm < cold


def test_iteration_limit_is_a_user_limit() -> None:
    prob, _ = _lp(2, m=60, n=40)
    prob.solve(solver="NABLAPROX", max_iters=3)
    assert prob.status == cp.USER_LIMIT
    assert prob.solver_stats.num_iters == 3
    assert prob.solver_stats.extra_stats["limit"] == "max_iters"
    assert prob.value is not None


@pytest.mark.parametrize("max_iters", [1, 2, 3, 7])
@pytest.mark.parametrize("algorithm", ["admm", "pdhg"])
def test_tiny_iteration_limits(max_iters: int, algorithm: str) -> None:
    prob, _, w = _portfolio(seed=1)
    prob.solve(solver="NABLAPROX", max_iters=max_iters, algorithm=algorithm)
    assert prob.status in (cp.USER_LIMIT, cp.OPTIMAL_INACCURATE, cp.OPTIMAL)
    assert prob.solver_stats.num_iters <= max_iters
    assert w.value is not None


def test_lp_is_solved_with_pdhg_beside_the_embedding_after_its_budget() -> None:
    """An LP that the embedding does not settle within its budget is solved with PDHG
    running beside it; the iterations reported are both runs'."""
    prob, x = _lp(3, m=80, n=60)
    prob.solve(solver="CLARABEL", **TIGHT)
    ref = prob.value
    prob.solve(solver="NABLAPROX", eps_abs=1e-9, eps_rel=1e-9)
    stats = prob.solver_stats
    assert prob.status in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE)
    assert prob.value == pytest.approx(ref, rel=1e-6)
    extra = stats.extra_stats
    if extra["algorithm"] == "hsde+pdhg":
        assert stats.num_iters == extra["embedding_iterations"] + extra["pdhg_iterations"]
        assert extra["pdhg_iterations"] > 0


def test_time_limit_is_a_user_limit() -> None:
    prob, _ = _lp(2, m=60, n=40)
    prob.solve(solver="NABLAPROX", time_limit=1e-9, check_every=1)
    assert prob.status == cp.USER_LIMIT
    assert prob.solver_stats.extra_stats["limit"] == "time_limit"


def test_verbose_prints_header_and_table(capsys: pytest.CaptureFixture) -> None:
    prob, _ = _lp()
    prob.solve(solver="NABLAPROX", verbose=True)
    out = capsys.readouterr().out
    assert "NABLAPROX" in out
    assert "pri res" in out and "dua res" in out and "gap" in out
    assert "status: optimal" in out


def test_unbounded() -> None:
    x = cp.Variable(2)
    prob = cp.Problem(cp.Minimize(x[0] - x[1]), [x[0] + x[1] >= 1, x >= -5, x[1] >= 0])
    prob.solve(solver="NABLAPROX")
    assert prob.status == cp.UNBOUNDED
    assert prob.value == -np.inf


def test_constant_problem() -> None:
    prob = cp.Problem(cp.Minimize(cp.Constant(3.0)))
    prob.solve(solver="NABLAPROX")
    assert prob.value == pytest.approx(3.0)
