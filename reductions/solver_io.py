"""What NABLAPROX's chain hands the solver, and what the solver hands back, in IR terms.

The last reduction of the chain produces a ``ParametricProgram``: an IR program whose
data depend on CVXPY parameters. CVXPY caches it after the first compilation and, on a
re-solve with new parameter values, calls only ``solver.apply`` on it, so
``apply_parameters`` is where the numbers are refreshed without re-running the chain.

The solver returns a ``ProgramSolution``: the IR's x and y (y in the subdifferential of
the terms at z = A x - b, see ``cvxprox.ir.program``), the status, the objective value and the
statistics. Each reduction's ``invert`` maps it back one step; the solver knows nothing
of CVXPY's variables and constraints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from cvxpy.reductions.solution import Solution

if TYPE_CHECKING:
    from cvxprox.ir.program import Program


class ParametricProgram(Protocol):
    """An IR program whose data are functions of CVXPY parameters."""

    @property
    def parameters(self) -> list[Any]:
        """The CVXPY parameters the data depend on."""

    def apply_parameters(self) -> Program:
        """The IR ``Program`` at the parameters' current values."""

    def cvxpy_data(self) -> dict[str, Any]:
        """Entries of CVXPY's problem data that describe the program as of the last
        ``apply_parameters``, for callers of ``get_problem_data`` (CVXPY's conformance
        tests read a cone program's dimensions and variable bounds)."""


class ProgramSolution(Solution):
    """A solution of an IR program with n variables and m rows.

    ``x`` (n,) is the primal point (None when the status has no solution); ``y`` (m,)
    the dual point in the IR's convention, or for an infeasible status the Farkas
    certificate (None when the solver returned none). ``opt_val`` is the program's
    objective at x including its offset (+inf for infeasible, -inf for unbounded, NaN
    otherwise when there is no solution); ``attr`` holds CVXPY's solver statistics.
    As a CVXPY ``Solution`` its ``primal_vars`` and ``dual_vars`` hold these two
    vectors only, under the keys ``X`` and ``Y``.

    ``bound_duals`` is (lam_lo, lam_hi) (n,) each, the multipliers >= 0 of the variable
    bounds l <= x and x <= u, when a step has read them (``ConeFormReduction.invert``
    from the bound rows of an assembled view); None otherwise (the structured invert
    then computes them from the reduced cost).
    """

    X = "x"
    Y = "y"

    def __init__(
        self,
        status: str,
        opt_val: float,
        x: np.ndarray | None,
        y: np.ndarray | None,
        attr: dict,
        bound_duals: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.bound_duals = bound_duals
        super().__init__(
            status,
            opt_val,
            {} if x is None else {self.X: x},
            {} if y is None else {self.Y: y},
            attr,
        )

    @property
    def x(self) -> np.ndarray | None:
        return self.primal_vars.get(self.X)

    @property
    def y(self) -> np.ndarray | None:
        return self.dual_vars.get(self.Y)
