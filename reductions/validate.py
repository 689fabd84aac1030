"""ValidateData: reject NaN and infinite problem data with an error that names its source.

Runs first in the NABLAPROX chain, on the user's problem: every constant and parameter
of the objective and constraints is checked, and the error names the parameter (or
shows the constant) and where it appears. Parameters are re-checked on every re-solve
(``update_parameters``), when the rest of the chain is bypassed. An infinite constant is
allowed only where it can express an absent bound: added at the top level of a
constraint (``x <= np.inf``, ``A @ x + lb <= 0``); the IR turns such vacuous rows into
trivially satisfied ones and rejects any infinity that would make a row meaningless.
"""

from __future__ import annotations

import numpy as np
from cvxpy.atoms.affine.add_expr import AddExpression
from cvxpy.atoms.affine.unary_operators import NegExpression
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
        places = [(-1, problem.objective), *enumerate(problem.constraints)]
        for index, expr in places:
            bounds = _top_level_terms(expr) if index >= 0 else set()
            for param in expr.parameters():
                value = param.value
                if value is not None and not np.all(np.isfinite(value)):
                    raise ValueError(
                        f"parameter {param.name()!r} has a NaN or infinite value; "
                        f"it appears in {_where(index, expr)}"
                    )
            if parameters_only:
                continue
            for const in expr.constants():
                value = const.value
                if isinstance(const, Parameter) or value is None:
                    continue
                data = value.data if hasattr(value, "nnz") else np.asarray(value)
                if np.any(np.isnan(data)):
                    raise ValueError(
                        f"a constant in {_where(index, expr)} contains NaN: {_show(data)}"
                    )
                if id(const) not in bounds and np.any(np.isinf(data)):
                    raise ValueError(
                        f"a constant in {_where(index, expr)} contains inf: {_show(data)}"
                    )


def _where(index: int, expr: object) -> str:
    """'the objective' or 'constraint i (<the constraint>)', built only for an error."""
    if index < 0:
        return "the objective"
    return f"constraint {index} ({_one_line(str(expr))})"


def _top_level_terms(constraint: object) -> set[int]:
    """ids of the expressions added at the top level of a constraint's sides."""
    found: set[int] = set()
    stack = list(constraint.args)
    while stack:
        expr = stack.pop()
        found.add(id(expr))
        if isinstance(expr, (AddExpression, NegExpression)):
            stack.extend(expr.args)
    return found


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _show(data: np.ndarray) -> str:
    text = np.array2string(np.asarray(data), threshold=8, edgeitems=2)
    return f"{_one_line(text)} (shape {np.shape(data)})"
