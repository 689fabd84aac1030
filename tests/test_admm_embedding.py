"""ADMM on the homogeneous self-dual embedding (``cvxprox.solvers.admm.hsde``): the
iteration against SCS's own, the solver against Clarabel and on infeasible and unbounded
programs."""

import time

import cvxpy as cp
import numpy as np
import pytest
import scipy.sparse as sp

import cvxprox  # noqa: F401
from cvxprox.backend import get_backend
from cvxprox.functions.cones import NonnegCone, ProductCone, ZeroCone
from cvxprox.interface.options import SolverOptions
from cvxprox.solvers.admm.hsde import EmbeddingADMM, _EmbeddingLoop, _FusedEmbeddingLoop
from cvxprox.solvers.admm.kkt import _SIGMA, _KKTSystem
from cvxprox.solvers.common.algorithm import run_to_end, stop_run

LOOPS = ["plain", "compiled"]


def _loop(kind: str, data: tuple, kkt: _KKTSystem, cone: ProductCone, rho: np.ndarray, memory: int):
    """The embedding's plain loop on NumPy arrays or its compiled version."""
    if kind == "plain":
        return _EmbeddingLoop(data, kkt, cone, rho, memory, get_backend("numpy"), None)
    return _FusedEmbeddingLoop(data, kkt, cone, rho, memory, None)


def _program(prob: cp.Problem):
    data, _, _ = prob.get_problem_data("NABLAPROX")
    return data["prox_program"].assemble()


def _scs_form(seed: int, quadratic: bool) -> tuple:
    """A feasible, bounded program in SCS's form A_s x + s = b_s, s in {0}^3 x R_+^12."""
    rng = np.random.default_rng(seed)
    n, mz, ml = 8, 3, 12
    A_s = sp.csc_array(rng.standard_normal((mz + ml, n)))
    b_s = A_s @ rng.random(n) + np.concatenate([np.zeros(mz), rng.random(ml)])
    c = -A_s.T @ np.concatenate([rng.standard_normal(mz), rng.random(ml)])
    P = sp.csc_array(np.diag(rng.random(n))) if quadratic else None
    return A_s, b_s, c, P, mz, ml


@pytest.mark.parametrize("kind", LOOPS)
@pytest.mark.parametrize("quadratic", [False, True])
def test_embedding_iterates_are_scs_iterates(quadratic: bool, kind: str) -> None:
    """Without acceleration, normalization of the data or penalty changes, both loops
    and SCS (same rho_x, scale, alpha) produce the same x / tau, y / tau, s / tau after
    k iterations."""
    scs = pytest.importorskip("scs")
    A_s, b_s, c, P, mz, ml = _scs_form(1, quadratic)
    m = mz + ml
    rho = 0.1 * np.where(np.arange(m) < mz, 1e3, 1.0)
    cone = ProductCone([ZeroCone(mz), NonnegCone(ml)])
    data = {"A": A_s, "b": b_s, "c": c} | ({"P": P} if quadratic else {})
    for k in (1, 2, 5, 40):
        solver = scs.SCS(
            data,
            {"z": mz, "l": ml},
            normalize=False,
            acceleration_lookback=0,
            adaptive_scale=False,
            alpha=1.5,
            rho_x=_SIGMA,
            scale=0.1,
            max_iters=k,
            eps_abs=1e-15,
            eps_rel=1e-15,
            verbose=False,
        )
        reference = solver.solve()
        kkt = _KKTSystem(
            None if P is None else sp.triu(P, format="csc"), sp.csc_array(A_s.T), _SIGMA, rho
        )
        # Our form: A x - b in K with A = -A_s, b = -b_s.
        loop = _loop(kind, (c, -b_s), kkt, cone, rho, 5)
        loop.run(0, k, (1.5, 1.0, 0))
        x, y, s, tau = loop.host_point()
        np.testing.assert_allclose(x / tau, reference["x"], rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(y / tau, reference["y"], rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(s / tau, reference["s"], rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("kind", LOOPS)
def test_penalty_change_keeps_the_point(kind: str) -> None:
    """After a penalty change the state is moved so that (u, s) are unchanged:
    v_y' = s / r_y' + 2 u~_y - u_y. With the same penalty this is the identity, and the
    iteration continues exactly as without the change."""
    A_s, b_s, c, _, mz, ml = _scs_form(2, False)
    m = mz + ml
    rho = 0.1 * np.ones(m)
    cone = ProductCone([ZeroCone(mz), NonnegCone(ml)])
    points = []
    for change in (False, True):
        kkt = _KKTSystem(None, sp.csc_array(A_s.T), _SIGMA, rho)
        loop = _loop(kind, (c, -b_s), kkt, cone, rho, 5)
        loop.run(0, 20, (1.5, 1.0, 0))
        if change:
            kkt.update_rho(rho)
            loop.rescale(rho)
        loop.run(20, 30, (1.5, 1.0, 0))
        points.append(loop.host_point())
    for a, b in zip(points[0], points[1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("quadratic", [False, True])
def test_compiled_loop_follows_the_plain_loop(quadratic: bool) -> None:
    """The compiled loop against its reference, Anderson acceleration and a change of the
    row penalties included: the same accepted and rejected steps, the same points up to
    rounding (different summation orders) over 200 iterations."""
    A_s, b_s, c, P, mz, ml = _scs_form(4, quadratic)
    m = mz + ml
    rho = 0.1 * np.where(np.arange(m) < mz, 1e3, 1.0)
    cone = ProductCone([ZeroCone(mz), NonnegCone(ml)])
    upper = None if P is None else sp.triu(P, format="csc")
    kkts = [_KKTSystem(upper, sp.csc_array(A_s.T), _SIGMA, rho) for _ in LOOPS]
    loops = [
        _loop(kind, (c, -b_s), kkt, cone, rho, 5) for kind, kkt in zip(LOOPS, kkts, strict=True)
    ]
    its = [0, 0]
    for period in range(20):
        if period == 12:
            new = rho * np.geomspace(0.2, 5.0, m)
            for kkt, loop in zip(kkts, loops, strict=True):
                kkt.update_rho(new)
                loop.rescale(new)
        for k, loop in enumerate(loops):
            its[k], accepted = loop.run(its[k], its[k] + 10, (1.6, 1.0, 5))
        plain, compiled = (loop.host_point() for loop in loops)
        for a, b in zip(plain, compiled, strict=True):
            np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-9)
        assert loops[0].rejected == loops[1].rejected
        assert loops[0].residual_norm == pytest.approx(loops[1].residual_norm, abs=1e-9)
    assert loops[0].rejected > 0


def _lp_and_qp(seed: int) -> list[cp.Problem]:
    rng = np.random.default_rng(seed)
    n, m = 20, 30
    A = rng.standard_normal((m, n))
    b = A @ rng.random(n) + rng.random(m)
    c = rng.standard_normal(n)
    F = rng.standard_normal((n, n))
    x = cp.Variable(n)
    constraints = [A @ x <= b, x >= -1, cp.sum(x) == 1]
    return [
        cp.Problem(cp.Minimize(c @ x), constraints),
        cp.Problem(cp.Minimize(cp.sum_squares(F @ x) / 2 + c @ x), constraints),
    ]


@pytest.mark.parametrize("which", [0, 1])
def test_embedding_admm_solves_lp_and_qp(which: int) -> None:
    prob = _lp_and_qp(3)[which]
    prob.solve(solver="CLARABEL", tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    reference = prob.value
    result = EmbeddingADMM(_program(prob), SolverOptions(eps_abs=1e-6, eps_rel=1e-6)).solve()
    assert result.status == cp.OPTIMAL
    assert result.kkt.primal_objective == pytest.approx(reference, rel=1e-4, abs=1e-5)


def test_embedding_admm_certifies_infeasible_and_unbounded() -> None:
    x = cp.Variable(3)
    infeasible = cp.Problem(cp.Minimize(cp.sum(x)), [x >= 1, cp.sum(x) <= 1])
    unbounded = cp.Problem(cp.Minimize(cp.sum(x)), [x <= 1])
    assert EmbeddingADMM(_program(infeasible), SolverOptions()).solve().status == cp.INFEASIBLE
    assert EmbeddingADMM(_program(unbounded), SolverOptions()).solve().status == cp.UNBOUNDED


def test_embedding_run_is_driven_check_by_check() -> None:
    """The run yields a Progress at every check: its iterations, u_tau (positive on a
    feasible LP), an iteration's cost in iterations of PDHG and the best iterate; a
    limit's name sent at a check ends the run there, unsettled, under that name. Left to
    itself, the run of an infeasible program ends with its certificate."""
    program = _program(_lp_and_qp(3)[0])
    options = SolverOptions(eps_abs=1e-9, eps_rel=1e-9)
    backend = get_backend(options.backend, options.device, options.dtype)
    steps = EmbeddingADMM(program, options).steps(backend, time.perf_counter(), "")
    first, second = next(steps), next(steps)
    assert 0 < first.iterations < second.iterations
    assert second.tau > 0.0 and second.cost >= 1.0 and second.best.kkt is not None
    result = stop_run(steps, "time_limit")
    assert result.iterations == second.iterations
    assert result.status not in (cp.OPTIMAL, cp.INFEASIBLE, cp.UNBOUNDED)
    assert result.info["limit"] == "time_limit"
    x = cp.Variable(3)
    infeasible = cp.Problem(cp.Minimize(cp.sum(x)), [x >= 1, cp.sum(x) <= 1])
    steps = EmbeddingADMM(_program(infeasible), options).steps(backend, time.perf_counter(), "")
    assert run_to_end(steps).status == cp.INFEASIBLE
