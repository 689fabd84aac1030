"""Netlib LPs (../shared/data/netlib): the smallest feasible and infeasible problems.

Feasible problems must reach the known optimum within 1e-4 relative; infeasible ones
must be certified infeasible. compare/netlib.py runs the whole set (92 + 28) against
SCS and HiGHS and reports how many are solved.
"""

import cvxpy as cp
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
