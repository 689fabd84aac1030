"""A CVXPY interface to cuPDLPx, the GPU PDHG solver for LPs (CVXPY 1.9 has none).

Modelled on CVXPY's own PDLP interface, which poses the same LP form
``min c'x + d  s.t.  l <= Ax <= u,  lb <= x <= ub``: CVXPY's conic form
``Ax + b in {0}^z x R_+^m`` becomes ``l = -b`` (with ``u = -b`` on the ``z`` equality
rows), and cuPDLPx's duals follow PDLP's sign convention (nonnegative on an active
lower bound), which is CVXPY's. Use it as ``prob.solve(solver=CuPdlpx(), **options)``,
with cuPDLPx's parameter names (``TimeLimit``, ``FeasibilityTol``, ``OptimalityTol``, ...).
"""

from __future__ import annotations

from typing import Any

import cvxpy.settings as s
import numpy as np
from cvxpy.constraints import NonNeg, Zero
from cvxpy.reductions.solution import Solution, failure_solution
from cvxpy.reductions.solvers import utilities
from cvxpy.reductions.solvers.conic_solvers.conic_solver import ConicSolver
from scipy.sparse import csr_array

#: cuPDLPx status codes (``cupdlpx.PDLP``) -> CVXPY statuses.
STATUS_MAP = {
    0: s.OPTIMAL,
    1: s.INFEASIBLE,
    2: s.UNBOUNDED,
    3: s.USER_LIMIT,
    4: s.USER_LIMIT,
    5: s.INFEASIBLE_OR_UNBOUNDED,
    6: s.OPTIMAL,  # feasibility polishing succeeded
}

#: The paper to cite for cuPDLPx.
CITATION = """@article{lu2025cupdlpx,
  title={cuPDLPx: A Further Enhanced GPU-Based First-Order Solver for Linear Programming},
  author={Lu, Haihao and Peng, Zedong and Yang, Jinwen},
  journal={arXiv preprint arXiv:2507.14051},
  year={2025}
}"""


class CuPdlpx(ConicSolver):
    """CVXPY conic-solver interface to ``cupdlpx.Model``."""

    SUPPORTED_CONSTRAINTS = [Zero, NonNeg]
    BOUNDED_VARIABLES = True
    MIP_CAPABLE = False

    def name(self) -> str:
        """The solver's name."""
        return "CUPDLPX"

    def import_solver(self) -> None:
        """Import the solver (fails without the ``cupdlpx`` package)."""
        import cupdlpx  # noqa: F401

    def apply(self, problem: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """The LP's data in cuPDLPx's form, and what :meth:`invert` needs."""
        if not problem.formatted:
            problem = self.format_constraints(problem, None)
        c, d, A, b = problem.apply_parameters()
        num_eq = problem.cone_dims.zero
        lower = -np.asarray(b, dtype=float)
        upper = np.full_like(lower, np.inf)
        upper[:num_eq] = lower[:num_eq]
        n = c.size
        data = {
            "c": c,
            "offset": float(np.ravel(d)[0]) if np.ndim(d) else float(d),
            "A": csr_array(A),
            "l": lower,
            "u": upper,
            "lb": problem.lower_bounds if problem.lower_bounds is not None else np.full(n, -np.inf),
            "ub": problem.upper_bounds if problem.upper_bounds is not None else np.full(n, np.inf),
            s.PARAM_PROB: problem,
            self.DIMS: problem.cone_dims,
        }
        constr_map = problem.constr_map
        inverse = {self.VAR_ID: problem.x.id, "constraints": constr_map[Zero] + constr_map[NonNeg]}
        return data, inverse

    def solve_via_data(
        self,
        data: dict[str, Any],
        warm_start: bool,
        verbose: bool,
        solver_opts: dict[str, Any],
        solver_cache: dict | None = None,
    ) -> dict[str, Any]:
        """Solve with ``cupdlpx.Model``; ``solver_opts`` are cuPDLPx parameters."""
        import cupdlpx

        model = cupdlpx.Model(
            objective_vector=data["c"],
            constraint_matrix=data["A"],
            constraint_lower_bound=data["l"],
            constraint_upper_bound=data["u"],
            variable_lower_bound=data["lb"],
            variable_upper_bound=data["ub"],
            objective_constant=data["offset"],
        )
        model.setParams(OutputFlag=verbose, **solver_opts)
        model.optimize()
        return {
            "status": STATUS_MAP.get(model.Status, s.SOLVER_ERROR),
            "value": model.ObjVal,
            "primal": model.X,
            "dual": model.Pi,
            s.NUM_ITERS: model.IterCount,
            s.SOLVE_TIME: model.Runtime,
        }

    def cite(self, data: dict[str, Any]) -> str:
        """BibTeX of the cuPDLPx paper."""
        return CITATION

    def invert(self, solution: dict[str, Any], inverse_data: dict[str, Any]) -> Solution:
        """The CVXPY solution of the cuPDLPx result."""
        status = solution["status"]
        attr = {s.NUM_ITERS: solution[s.NUM_ITERS], s.SOLVE_TIME: solution[s.SOLVE_TIME]}
        if status not in s.SOLUTION_PRESENT or solution["primal"] is None:
            return failure_solution(status, attr)
        primal = {inverse_data[self.VAR_ID]: np.asarray(solution["primal"])}
        duals = utilities.get_dual_values(
            result_vec=np.asarray(solution["dual"]),
            parse_func=utilities.extract_dual_value,
            constraints=inverse_data["constraints"],
        )
        return Solution(status, solution["value"], primal, duals, attr)
