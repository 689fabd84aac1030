"""Netlib LPs (../shared/data/netlib): a fast subset in CI, the rest marked slow.

Feasible problems must reach the known optimum within 1e-4 relative; infeasible ones
must be certified infeasible. compare/netlib.py runs the whole set against SCS and HiGHS.
"""

import cvxpy as cp
import pytest

import cvxprox  # noqa: F401
from compare.datasets import data_dir, load_netlib, netlib_problems

pytestmark = pytest.mark.skipif(
    not (data_dir() / "netlib").is_dir(), reason="Netlib data not found (../shared/data)"
)

FAST_FEASIBLE = 8
FAST_INFEASIBLE = 4


def _params(names: list[str], fast: int) -> list:
    return [
        pytest.param(name, marks=() if i < fast else pytest.mark.slow, id=name)
        for i, name in enumerate(names)
    ]


def _names(infeasible: bool) -> list[str]:
    return netlib_problems(infeasible) if (data_dir() / "netlib").is_dir() else []


@pytest.mark.parametrize("name", _params(_names(False), FAST_FEASIBLE))
def test_feasible(name: str) -> None:
    prob, known = load_netlib(name)
    prob.solve(solver="NABLAPROX")
    assert prob.status == cp.OPTIMAL
    assert abs(prob.value - known) <= 1e-4 * max(1.0, abs(known))


@pytest.mark.parametrize("name", _params(_names(True), FAST_INFEASIBLE))
def test_infeasible(name: str) -> None:
    prob, _ = load_netlib(name, infeasible=True)
    prob.solve(solver="NABLAPROX")
    assert prob.status == cp.INFEASIBLE
