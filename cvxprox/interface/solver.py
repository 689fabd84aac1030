"""The NABLAPROX solver as CVXPY sees it.

NABLAPROX's chain (``solving_chain``) is CVXPY's conic chain with its middle wrapped in
``ProxOrCone`` (``reductions/dispatch.py``), whose result is a parametric IR program
(``reductions/solver_io.py``). ``NablaProx.apply`` evaluates it at the parameters'
current values (CVXPY's DPP fast path calls only this on a re-solve), ``solve_via_data``
runs an algorithm, and ``invert`` returns the IR solution (x, y, status, statistics);
the chain's reductions map it back to CVXPY's variables and constraints.

CVXPY has no plugin entry point for solver names, so :func:`register` adds an
instance to CVXPY's solver maps and has CVXPY build NABLAPROX's chains with
``solving_chain`` (``cvxprox/cvxpy_compat.py``). Other solvers' chains are built by
CVXPY's own function, untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cvxpy.settings as s
import numpy as np
from cvxpy.constraints import SOC, ExpCone, PowCone3D, SvecPSD
from cvxpy.error import ParameterError, SolverError
from cvxpy.problems.problem import Problem
from cvxpy.reductions.dcp2cone.dcp2cone import Dcp2Cone
from cvxpy.reductions.solvers import defines
from cvxpy.reductions.solvers.conic_solvers.conic_solver import ConicSolver
from cvxpy.reductions.solvers.solving_chain import SolvingChain, resolve_and_build_chain
from cvxpy.utilities.psd_utils import TriangleKind

from cvxprox import cvxpy_compat
from cvxprox.interface.options import STRUCTURE_MODES, SolverOptions
from cvxprox.reductions import ValidateData
from cvxprox.reductions.cone2prox import EXP_CONE_ORDER
from cvxprox.reductions.dispatch import ProxOrCone
from cvxprox.reductions.solver_io import ParametricProgram, ProgramSolution
from cvxprox.solvers.common.result import SolveResult
from cvxprox.solvers.select import solve_program

NAME = "NABLAPROX"
PROGRAM = "prox_program"
STRUCTURE = "structure"
UNSET = "unset_parameters"

CITATION = r"""@article{osqp,
  author  = {Stellato, B. and Banjac, G. and Goulart, P. and Bemporad, A. and Boyd, S.},
  title   = {{OSQP}: an operator splitting solver for quadratic programs},
  journal = {Mathematical Programming Computation},
  year    = {2020}, volume = {12}, number = {4}, pages = {637--672}
}
@inproceedings{pdlp,
  author    = {Applegate, D. and D{\'\i}az, M. and Hinder, O. and Lu, H. and Lubin, M. and
               O'Donoghue, B. and Schudy, W.},
  title     = {Practical large-scale linear programming using primal-dual hybrid gradient},
  booktitle = {Advances in Neural Information Processing Systems},
  year      = {2021}
}
"""


class NablaProx(ConicSolver):
    """CVXPY interface to cvxprox's proximal algorithms.

    A ``ConicSolver`` for CVXPY's chain construction (the cones it supports, the
    quadratic objective, the PSD and exponential cone conventions); what it receives is
    a parametric IR program (``ParametricProgram``), and what it returns is a
    ``ProgramSolution``.
    """

    MIP_CAPABLE = False
    SUPPORTED_CONSTRAINTS = ConicSolver.SUPPORTED_CONSTRAINTS + [SOC, ExpCone, SvecPSD, PowCone3D]
    REQUIRES_CONSTR = False
    PSD_TRIANGLE_KIND = TriangleKind.LOWER
    PSD_SQRT2_SCALING = True
    EXP_CONE_ORDER = EXP_CONE_ORDER
    BOUNDED_VARIABLES = True

    def __init__(self, structure: str = "auto") -> None:
        super().__init__()
        if structure not in STRUCTURE_MODES:
            raise ValueError(
                f"option 'structure' must be one of {STRUCTURE_MODES}, got {structure!r}"
            )
        self.structure = structure

    def name(self) -> str:
        return NAME

    def import_solver(self) -> None:
        """Nothing to import: the algorithms are part of cvxprox."""

    def supports_quad_obj(self) -> bool:
        return True

    def cite(self, data: dict) -> str:
        """BibTeX of the methods NABLAPROX implements."""
        return CITATION

    def accepts(self, problem: object) -> bool:
        return all(
            hasattr(problem, name) for name in ("apply_parameters", "parameters", "cvxpy_data")
        )

    def apply(self, problem: ParametricProgram) -> tuple[dict, dict]:
        """The IR program at the parameters' current values (``data[PROGRAM]``).

        Without values there is no program yet (``get_problem_data`` for the parametric
        structure alone, as differentiable layers do); a solve then names the parameters.
        """
        if not self.accepts(problem):
            raise TypeError(
                f"{NAME} solves the parametric programs of its own chain, got "
                f"{type(problem).__name__}; use problem.solve(solver={NAME!r})"
            )
        unset = [p.name() for p in problem.parameters if p.value is None]
        data = {
            PROGRAM: None if unset else problem.apply_parameters(),
            UNSET: unset,
            STRUCTURE: self.structure,
            s.PARAM_PROB: problem,
        }
        data.update(problem.cvxpy_data())
        return data, {}

    def solve_via_data(
        self,
        data: dict,
        warm_start: bool,
        verbose: bool,
        solver_opts: dict,
        solver_cache: dict | None = None,
    ) -> SolveResult:
        options = SolverOptions.from_kwargs({**solver_opts, "verbose": bool(verbose)})
        program = data[PROGRAM]
        if program is None:
            raise ParameterError(
                f"parameters without a value: {', '.join(data[UNSET])}; assign their values"
            )
        if "structure" in solver_opts and options.structure != data[STRUCTURE]:
            raise ValueError(
                f"option structure={options.structure!r} differs from the one this problem was "
                "compiled with (it takes effect on a problem's first solve); build a new "
                "cvxpy.Problem to change it"
            )
        warm = None
        if warm_start and solver_cache is not None:
            warm = solver_cache.get(self.name())
        result = solve_program(program, options, warm)
        if solver_cache is not None and result.info.get("warm_start") is not None:
            solver_cache[self.name()] = result.info["warm_start"]
        return result

    def invert(self, solution: SolveResult, inverse_data: Any) -> ProgramSolution:
        """The IR solution: x (when the status has a solution), y (the duals, or an
        infeasibility certificate), the objective value, the status and the statistics."""
        result = solution
        attr = {
            s.SOLVE_TIME: result.solve_time,
            s.SETUP_TIME: result.setup_time,
            s.NUM_ITERS: result.iterations,
            s.EXTRA_STATS: _extra_stats(result),
        }
        if result.status in s.SOLUTION_PRESENT:
            value, x = result.kkt.primal_objective, result.x
        else:
            value, x = _failure_value(result.status), None
        return ProgramSolution(result.status, value, x, result.y, attr)


def _failure_value(status: str) -> float:
    if status in (s.INFEASIBLE, s.INFEASIBLE_INACCURATE):
        return np.inf
    if status in (s.UNBOUNDED, s.UNBOUNDED_INACCURATE):
        return -np.inf
    return np.nan


def _extra_stats(result: SolveResult) -> dict:
    stats = {
        "algorithm": result.algorithm,
        **{k: v for k, v in result.info.items() if k != "warm_start"},
    }
    if result.kkt is not None:
        stats.update(
            primal_residual=result.kkt.primal,
            dual_residual=result.kkt.dual,
            duality_gap=result.kkt.gap,
            dual_objective=result.kkt.dual_objective,
            kkt_error=result.kkt.normalized,
        )
    return stats


def _wrap_cone_reductions(reductions: list, structure: str) -> list:
    """CVXPY's NABLAPROX chain with Dcp2Cone..ConeMatrixStuffing inside a ProxOrCone.

    The solver at the end is a fresh NablaProx that knows the ``structure`` option the
    chain was built with.
    """
    *reductions, solver = reductions
    if not isinstance(solver, NablaProx):  # e.g. CVXPY's ConstantSolver
        return [*reductions, solver]
    start = next((i for i, r in enumerate(reductions) if isinstance(r, Dcp2Cone)), None)
    if start is None:
        names = " -> ".join(type(r).__name__ for r in reductions)
        raise SolverError(f"CVXPY built a chain for {NAME} without Dcp2Cone: {names}")
    head, cone = reductions[:start], reductions[start:]
    return [*head, ProxOrCone(cone, structure), NablaProx(structure)]


def _is_nablaprox(solver: object) -> bool:
    """Whether CVXPY's ``solver`` argument names NABLAPROX (a name or an instance)."""
    if isinstance(solver, str):
        return solver.upper() == NAME
    return isinstance(solver, NablaProx)


def solving_chain(
    problem: Problem,
    solver: str | NablaProx = NAME,
    *args: Any,
    build: Callable[..., SolvingChain] | None = None,
    **kwargs: Any,
) -> SolvingChain:
    """NABLAPROX's solving chain for ``problem``:
    ValidateData -> [FlipObjective, ...] -> ProxOrCone(Dcp2Cone..ConeMatrixStuffing) -> NablaProx.

    ``args`` and ``kwargs`` are those of CVXPY's ``resolve_and_build_chain`` (``gp``,
    ``enforce_dpp``, ``solver_opts``, ...), and ``build`` that function (CVXPY's own by
    default), which builds the conic chain this one wraps. Integer problems raise a
    SolverError that names the integer variables.
    """
    if build is None:
        build = resolve_and_build_chain
    if problem.is_mixed_integer():
        names = sorted(
            v.name()
            for v in problem.variables()
            if v.attributes["boolean"] or v.attributes["integer"]
        )
        raise SolverError(
            f"{NAME} solves continuous problems only; integer or boolean variables are "
            f"not supported (found: {', '.join(names)})"
        )
    chain = build(problem, solver, *args, **kwargs)
    opts = kwargs.get("solver_opts") or {}
    default = solver.structure if isinstance(solver, NablaProx) else "auto"
    structure = opts.get("structure", default)
    # Keep the user's variable bounds as bounds, but do not let the canonicalizers
    # give auxiliary variables bounds inferred by interval arithmetic: in CVXPY 1.9
    # that inference can produce wrong bounds (inf * 0 in a matrix product), which
    # silently changes the problem (e.g. a hinge-loss SVM gets fixed slacks).
    if chain.solver_context is not None:
        chain.solver_context.solver_supports_bounds = False
    return SolvingChain(
        reductions=[ValidateData(), *_wrap_cone_reductions(chain.reductions, structure)],
        solver_context=chain.solver_context,
    )


def register() -> None:
    """Make ``solver="NABLAPROX"`` available to every CVXPY problem (idempotent)."""
    if NAME not in defines.SOLVER_MAP_CONIC:
        defines.SOLVER_MAP_CONIC[NAME] = NablaProx()
    for names in (
        defines.CONIC_SOLVERS,
        defines.INSTALLED_SOLVERS,
        defines.INSTALLED_CONIC_SOLVERS,
    ):
        if NAME not in names:
            names.append(NAME)
    cvxpy_compat.route_chain_builder(_is_nablaprox, solving_chain)
