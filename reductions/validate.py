"""ValidateData: reject NaN and infinite problem data with an error that names its source.

Runs first in the NABLAPROX chain, on the user's problem: every constant and parameter
of the objective and constraints is checked, and the error names the parameter (or
shows the constant) and where it appears. Parameters are re-checked on every re-solve
(``update_parameters``), when the rest of the chain is bypassed. Infinite constants are
allowed in constraints, where they express absent bounds (``x <= np.inf``); the IR
turns such vacuous rows into trivially satisfied ones and rejects any other infinity.
"""

from __future__ import annotations

import numpy as np
from cvxpy.expressions.constants.parameter import Parameter
from cvxpy.problems.problem import Problem
from cvxpy.reductions.reduction import Reduction


class ValidateData(Reduction):
    """Checks the data of a CVXPY problem; passes the problem through unchanged."""

    def accepts(self, problem: Problem) -> bool:
        return isinstance(problem, Problem)

    def apply(self, problem: Problem) -> tuple[Problem, dict]:
        self._check(problem, parameters_only=False)
        return problem, {}

    def update_parameters(self, problem: Problem) -> None:
        self._check(problem, parameters_only=True)

    def invert(self, solution: object, inverse_data: dict) -> object:
        return solution

    @staticmethod
    def _check(problem: Problem, parameters_only: bool) -> None:
        places = [("the objective", problem.objective, False)]
        places += [
            (f"constraint {i} ({_one_line(str(c))})", c, True)
            for i, c in enumerate(problem.constraints)
        ]
        for where, expr, inf_ok in places:
            for param in expr.parameters():
                value = param.value
                if value is not None and not np.all(np.isfinite(value)):
                    raise ValueError(
                        f"parameter {param.name()!r} has a NaN or infinite value; "
                        f"it appears in {where}"
                    )
            if parameters_only:
                continue
            for const in expr.constants():
                value = const.value
                if isinstance(const, Parameter) or value is None:
                    continue
                data = value.data if hasattr(value, "nnz") else np.asarray(value)
                if np.any(np.isnan(data)):
                    raise ValueError(f"a constant in {where} contains NaN: {_show(data)}")
                if not inf_ok and np.any(np.isinf(data)):
                    raise ValueError(f"a constant in {where} contains inf: {_show(data)}")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _show(data: np.ndarray) -> str:
    text = np.array2string(np.asarray(data), threshold=8, edgeitems=2)
    return f"{_one_line(text)} (shape {np.shape(data)})"
