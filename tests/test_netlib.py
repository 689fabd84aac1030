"""Netlib LPs (../shared/data/netlib): the smallest feasible and infeasible problems.

Feasible problems must reach the known optimum within 1e-4 relative; infeasible ones
must be certified infeasible. compare/netlib.py runs the whole set (92 + 28) against
SCS and HiGHS and reports how many are solved.
"""

import cvxpy as cp
import numpy as np
import pytest

import cvxprox  # noqa: F401
from compare.datasets import data_dir, load_netlib, netlib_problems

HAVE_DATA = (data_dir() / "netlib").is_dir()
pytestmark = pytest.mark.skipif(not HAVE_DATA, reason="Netlib data not found (../shared/data)")

FEASIBLE = netlib_problems()[:8] if HAVE_DATA else []
INFEASIBLE = netlib_problems(infeasible=True)[:4] if HAVE_DATA else []


@pytest.mark.parametrize("name", FEASIBLE)
def test_feasible(name: str) -> None:
    prob, known = load_netlib(name)
    prob.solve(solver="NABLAPROX")
    assert prob.status == cp.OPTIMAL
    assert abs(prob.value - known) <= 1e-4 * max(1.0, abs(known))


@pytest.mark.parametrize("name", INFEASIBLE)
def test_infeasible(name: str) -> None:
    prob, _ = load_netlib(name, infeasible=True)
    prob.solve(solver="NABLAPROX")
    assert prob.status == cp.INFEASIBLE


@pytest.mark.skipif(not HAVE_DATA, reason="Netlib data not found (../shared/data)")
def test_klein2_certified_through_the_embedding() -> None:
    """klein2 (54 variables, 531 rows, coefficients up to 252): PDHG does not certify it
    in 150000 iterations; the embedding, the first phase of the LP route, does within
    50000 iterations, its u_tau at 0 keeping PDHG out. Clarabel agrees that it is
    infeasible, and the returned duals are a Farkas certificate of the CVXPY problem:
    with lambda >= 0 on the constraints lhs <= rhs (free on equalities), g(x) = sum
    lambda'(lhs(x) - rhs) is <= 0 at every feasible x, and it is a positive constant
    (within eps_infeas = 1e-7 per unit of ||x||_1)."""
    prob, _ = load_netlib("klein2", infeasible=True)
    prob.solve(solver="CLARABEL")
    assert prob.status == cp.INFEASIBLE
    prob, _ = load_netlib("klein2", infeasible=True)
    prob.solve(solver="NABLAPROX", max_iters=50000)
    assert prob.status == cp.INFEASIBLE
    assert prob.solver_stats.extra_stats["algorithm"] == "hsde"
    assert prob.solver_stats.num_iters <= 50000
    lambdas = [c.dual_value for c in prob.constraints]
    assert all(
        np.all(lam >= 0)
        for c, lam in zip(prob.constraints, lambdas, strict=True)
        if isinstance(c, cp.constraints.Inequality)
    )
    x = prob.variables()[0]
    values = []
    for point in (np.zeros(x.size), np.random.default_rng(0).random(x.size)):
        x.value = point
        values.append(
            sum(
                float(np.sum(lam * (c.args[0].value - c.args[1].value)))
                for c, lam in zip(prob.constraints, lambdas, strict=True)
            )
        )
    assert values[0] > 0.5
    assert abs(values[1] - values[0]) <= 1e-7 * x.size * values[0]


@pytest.mark.parametrize("name", ["klein1", "pang"])
def test_certified_with_the_row_multipliers_moving_at_tau_zero(name: str) -> None:
    """klein1 and pang reach u_tau = 0 early; with the row multipliers held there the
    embedding did not certify them (klein1 in 1e6 iterations, pang in 800000 at eps
    1e-4). Moving on the homogeneous residuals, it does within 5000 (1350 and 1850)."""
    prob, _ = load_netlib(name, infeasible=True)
    prob.solve(solver="NABLAPROX", algorithm="hsde", eps_abs=1e-4, eps_rel=1e-4, max_iters=5000)
    assert prob.status == cp.INFEASIBLE
