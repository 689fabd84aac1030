"""Every model of the zoo suite solved with default options, checked against Clarabel.

The zoo (compare/suites/zoo.py) covers the everyday model types (LP, QP, SOCP,
exponential, PSD and power cones); this keeps the 1e-4 objective accuracy that the zoo
benchmark reports from regressing unnoticed.
"""

import cvxpy as cp
import pytest

import cvxprox  # noqa: F401
from compare.suites.zoo import MODELS, REFERENCE_OPTIONS


@pytest.mark.parametrize("name", sorted(MODELS))
def test_zoo_model_matches_clarabel(name: str) -> None:
    prob = MODELS[name](0)
    prob.solve(solver="CLARABEL", **REFERENCE_OPTIONS)
    reference = prob.value
    prob = MODELS[name](0)
    prob.solve(solver="NABLAPROX")
    assert prob.status == cp.OPTIMAL
    assert abs(prob.value - reference) <= 1e-4 * max(1.0, abs(reference))
