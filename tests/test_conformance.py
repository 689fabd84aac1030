"""CVXPY's own solver conformance suite, run with solver="NABLAPROX" and default options.

Every continuous test of ``cvxpy.tests.solver_test_helpers`` at CVXPY's default
``places``. Skipped: the mixed-integer tests (NABLAPROX is continuous; see
test_solver.py for the error it gives) and ``test_lp_7``, which needs an SDPA backend.
"""

import cvxpy.tests.solver_test_helpers as helpers
import pytest

import cvxprox

SUITES = [
    helpers.StandardTestLPs,
    helpers.StandardTestQPs,
    helpers.StandardTestSOCPs,
    helpers.StandardTestSDPs,
    helpers.StandardTestECPs,
    helpers.StandardTestMixedCPs,
    helpers.StandardTestPCPs,
]
SKIP = {"test_lp_7"}


def _cases(suite: type) -> list:
    return [
        pytest.param(getattr(suite, name), id=f"{suite.__name__}.{name}")
        for name in sorted(dir(suite))
        if name.startswith("test_") and "_mi_" not in name and name not in SKIP
    ]


@pytest.mark.parametrize("case", [c for suite in SUITES for c in _cases(suite)])
def test_standard(case) -> None:
    case(solver=cvxprox.NABLAPROX)


@pytest.mark.parametrize("case", _cases(helpers.StandardTestInfeasibleProblems))
def test_infeasible(case) -> None:
    case(solver=cvxprox.NABLAPROX)
