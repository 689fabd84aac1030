"""The NABLAPROX solver as CVXPY sees it.

CVXPY's conic chain (Dcp2Cone, CvxAttr2Constr, ConeMatrixStuffing) ends in a
ParamConeProg; ``NablaProx.apply`` lowers it to the proximal-splitting IR with
``ConeProgToProx`` (once per problem: re-solves only re-evaluate the parameter map),
``solve_via_data`` runs an algorithm, and ``invert`` hands CVXPY its primal values,
duals in CVXPY's sign conventions, status and statistics.

CVXPY has no plugin entry point for solver names, so :func:`register` adds an
instance to CVXPY's solver maps and wraps the chain builder for this solver only:
it rejects integer problems with a clear message, puts ``ValidateData`` in front
of the chain, and turns off the bound inference for auxiliary variables (see
``register``). Other solvers' chains are built by CVXPY's own function, untouched.
"""

from __future__ import annotations

import weakref

import cvxpy.settings as s
import numpy as np
from cvxpy.constraints import SOC, ExpCone, PowCone3D, SvecPSD
from cvxpy.error import ParameterError, SolverError
from cvxpy.reductions.dcp2cone.cone_matrix_stuffing import ParamConeProg
from cvxpy.reductions.solution import Solution, failure_solution
from cvxpy.reductions.solvers import utilities
from cvxpy.reductions.solvers.conic_solvers.conic_solver import ConicSolver
from cvxpy.utilities.psd_utils import TriangleKind

from cvxprox.algorithms.base import SolveResult
from cvxprox.compile import solve_program
from cvxprox.options import STRUCTURE_MODES, SolverOptions
from cvxprox.reductions import ConeProgToProx, ParamProxProgram
from cvxprox.reductions.dispatch import (
    ParamStructuredProgram,
    ProxOrCone,
    structured_solution,
)

NAME = "NABLAPROX"
PROGRAM = "prox_program"
LOWERED = "lowered"
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
    """CVXPY conic-solver interface to cvxprox's proximal algorithms."""

    MIP_CAPABLE = False
    SUPPORTED_CONSTRAINTS = ConicSolver.SUPPORTED_CONSTRAINTS + [SOC, ExpCone, SvecPSD, PowCone3D]
    REQUIRES_CONSTR = False
    PSD_TRIANGLE_KIND = TriangleKind.LOWER
    PSD_SQRT2_SCALING = True
    EXP_CONE_ORDER = [0, 1, 2]
    BOUNDED_VARIABLES = True

    def __init__(self, structure: str = "auto") -> None:
        super().__init__()
        if structure not in STRUCTURE_MODES:
            raise ValueError(
                f"option 'structure' must be one of {STRUCTURE_MODES}, got {structure!r}"
            )
        self.structure = structure
        self._lowered: weakref.WeakKeyDictionary[ParamConeProg, ParamProxProgram] = (
            weakref.WeakKeyDictionary()
        )

    def name(self) -> str:
        return NAME

    def import_solver(self) -> None:
        """Nothing to import: the algorithms are part of cvxprox."""

    def supports_quad_obj(self) -> bool:
        return True

    def cite(self, data: dict) -> str:
        """BibTeX of the methods NABLAPROX implements."""
        return CITATION

    def lower(self, problem: ParamConeProg) -> ParamProxProgram:
        """The IR of a formatted cone program, computed once per program."""
        param_ir = self._lowered.get(problem)
        if param_ir is None:
            param_ir, _ = ConeProgToProx().apply(problem)
            self._lowered[problem] = param_ir
        return param_ir

    def apply(self, problem: ParamConeProg | ParamStructuredProgram) -> tuple[dict, dict]:
        if isinstance(problem, ParamStructuredProgram):
            lowered = problem.apply_parameters()
            inverse = {LOWERED: lowered}
            lowered.program.solve_assembled = problem.cones
            data = {
                PROGRAM: lowered.program,
                LOWERED: lowered,
                STRUCTURE: self.structure,
                s.PARAM_PROB: problem,
            }
            return data, inverse
        problem, data, inv_data = self._prepare_data_and_inv_data(problem)
        data[STRUCTURE] = self.structure
        unset = [p.name() for p in problem.parameters if p.value is None]
        # Without values there is no program yet (get_problem_data for the parametric
        # structure alone, as differentiable layers do); a solve then names the parameters.
        data[PROGRAM] = None if unset else self.lower(problem).apply_parameters()
        data[UNSET] = unset
        data[s.LOWER_BOUNDS] = problem.lower_bounds
        data[s.UPPER_BOUNDS] = problem.upper_bounds
        # Row counts in the conventions of CVXPY's QP interfaces (bounds not included).
        data["n_eq"] = problem.cone_dims.zero
        data["n_ineq"] = problem.cone_dims.nonneg
        return data, inv_data

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

    def invert(self, solution: SolveResult, inverse_data: dict) -> Solution:
        result = solution
        attr = {
            s.SOLVE_TIME: result.solve_time,
            s.SETUP_TIME: result.setup_time,
            s.NUM_ITERS: result.iterations,
            s.EXTRA_STATS: _extra_stats(result),
        }
        if LOWERED in inverse_data:
            return structured_solution(inverse_data[LOWERED], result, attr)
        dual_vars = None
        if result.y is not None:
            # IR duals lie in the polar cone; CVXPY's lie in the dual cone.
            dual_vars = _split_duals(-result.y, inverse_data)
        if result.status in s.SOLUTION_PRESENT:
            primal_vars = {inverse_data[self.VAR_ID]: result.x}
            return Solution(
                result.status, result.kkt.primal_objective, primal_vars, dual_vars, attr
            )
        return failure_solution(result.status, attr, dual_vars)


def _split_duals(y: np.ndarray, inverse_data: dict) -> dict:
    zero = inverse_data[ConicSolver.DIMS].zero
    duals = utilities.get_dual_values(
        y[:zero], utilities.extract_dual_value, inverse_data[ConicSolver.EQ_CONSTR]
    )
    duals.update(
        utilities.get_dual_values(
            y[zero:], utilities.extract_dual_value, inverse_data[ConicSolver.NEQ_CONSTR]
        )
    )
    return duals


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
    from cvxpy.reductions.dcp2cone.dcp2cone import Dcp2Cone  # noqa: PLC0415

    *reductions, solver = reductions
    if not isinstance(solver, NablaProx):  # e.g. CVXPY's ConstantSolver
        return [*reductions, solver]
    start = next((i for i, r in enumerate(reductions) if isinstance(r, Dcp2Cone)), None)
    if start is None:
        return [*reductions, NablaProx(structure)]
    head, cone = reductions[:start], reductions[start:]
    return [*head, ProxOrCone(cone, structure), NablaProx(structure)]


def _is_nablaprox(solver: object) -> bool:
    if isinstance(solver, str):
        return solver.upper() == NAME
    return isinstance(solver, NablaProx)


def register() -> None:
    """Make ``solver="NABLAPROX"`` available to every CVXPY problem (idempotent)."""
    import cvxpy.problems.problem as problem_module  # noqa: PLC0415
    from cvxpy.reductions.solvers import defines  # noqa: PLC0415
    from cvxpy.reductions.solvers.solving_chain import SolvingChain  # noqa: PLC0415

    from cvxprox.reductions import ValidateData  # noqa: PLC0415

    if NAME not in defines.SOLVER_MAP_CONIC:
        defines.SOLVER_MAP_CONIC[NAME] = NablaProx()
    for names in (
        defines.CONIC_SOLVERS,
        defines.INSTALLED_SOLVERS,
        defines.INSTALLED_CONIC_SOLVERS,
    ):
        if NAME not in names:
            names.append(NAME)

    build = problem_module.resolve_and_build_chain
    if getattr(build, "_cvxprox_wrapped", False):
        return

    def resolve_and_build_chain(problem, solver=None, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not _is_nablaprox(solver):
            return build(problem, solver, *args, **kwargs)
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

    resolve_and_build_chain._cvxprox_wrapped = True  # type: ignore[attr-defined]
    problem_module.resolve_and_build_chain = resolve_and_build_chain
