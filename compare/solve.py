"""One measured solve, as the child process runs it (see ``compare/child.py``).

:func:`run_task` builds the problem, warms the solver up on a tiny problem of the same
class (so that imports and JIT compilation are not charged), solves, and measures:
status, objective, worst constraint violation, CVXPY's compile time, the solve time
(the rest of ``prob.solve``'s wall time), iterations and the process's peak memory.
Every failure becomes an :class:`Outcome` status instead of an exception.
"""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import cvxpy as cp
import cvxpy.settings as cvxpy_settings
import numpy as np
from cvxpy.reductions.solution import Solution
from cvxpy.reductions.solvers.conic_solvers.pdlp_conif import PDLP
from cvxpy.reductions.solvers.solver import Solver

from compare.solvers import NABLAPROX, SOLVERS, SolveSettings, solver_options

#: CVXPY statuses that come with a primal solution.
SOLVED = (cp.OPTIMAL, cp.OPTIMAL_INACCURATE)

#: Statuses of failures outside the solver's own answer.
TIMEOUT, CRASH, OUT_OF_MEMORY, LICENCE_LIMIT, ERROR = (
    "timeout",
    "crash",
    "out of memory",
    "licence limit",
    "error",
)

#: Gurobi's error codes for "no licence" and "model too large for the size-limited licence".
GUROBI_LICENCE_ERRORS = (10009, 10010)


class Verdict(NamedTuple):
    """A suite's own success test of a solved problem (e.g. qpbenchmark's residuals)."""

    passed: bool
    note: str


#: Repeated solves (``SolveTask.repeats``) stop once one takes longer than this (s).
REPEAT_BELOW = 1.0


@dataclass(frozen=True)
class SolveTask:
    """What a child solves: a picklable builder, its class, the solver and its options.

    ``options`` overrides the options derived from ``settings`` (reference solves);
    ``assess`` is the suite's own success test, run on the solved problem; ``repeats``
    solves of freshly built copies keep the fastest (repeats stop once a solve takes
    longer than ``REPEAT_BELOW`` seconds, where timer noise no longer matters).
    """

    build: Callable[[], cp.Problem]
    problem_class: str
    solver: str
    settings: SolveSettings
    options: Mapping[str, Any] | None = None
    assess: Callable[[cp.Problem], Verdict] | None = None
    repeats: int = 1


@dataclass
class Outcome:
    """What a child measured (NaN where not measured)."""

    status: str
    objective: float = math.nan
    violation: float = math.nan
    compile_time: float = math.nan
    solve_time: float = math.nan
    iterations: float = math.nan
    memory_mb: float = math.nan
    constraints: float = math.nan
    verdict: bool | None = None
    note: str = ""
    algorithm: str = ""


# ------------------------------------------------------------------------- warm-up


def _warm_up_problem(problem_class: str) -> cp.Problem:
    """A tiny problem of ``problem_class`` (LP, QP, SOCP, EXP or SDP)."""
    x = cp.Variable(3)
    if problem_class == "LP":
        return cp.Problem(cp.Minimize(cp.sum(x)), [x >= 1, x[0] + x[1] == 3])
    if problem_class == "QP":
        return cp.Problem(cp.Minimize(cp.sum_squares(x - 2) + cp.sum(x)), [x >= 0])
    if problem_class == "SOCP":
        return cp.Problem(cp.Minimize(cp.norm(x - 1, 2)), [cp.sum(x) == 1])
    if problem_class == "EXP":
        return cp.Problem(cp.Maximize(cp.sum(cp.entr(x))), [cp.sum(x) == 1])
    X = cp.Variable((3, 3), PSD=True)
    return cp.Problem(cp.Minimize(cp.trace(np.diag([1.0, 2.0, 3.0]) @ X)), [cp.trace(X) == 1])


class PdlpBoundsAsConstraints(PDLP):
    """CVXPY's PDLP interface, given variable bounds as constraints, reporting iterations.

    CVXPY 1.9's own bound handling (``if problem.lower_bounds:``) fails with "truth value
    of an array is ambiguous" on any problem with bounded variables (``nonneg=True``).
    CVXPY's interface drops PDLP's solve log; this one keeps its iteration count
    (``solver_stats.num_iters``), the anchor NABLAPROX's PDHG iterations are compared with.
    """

    BOUNDED_VARIABLES = False

    def name(self) -> str:
        """A name of its own (CVXPY refuses custom solvers named like its own)."""
        return "PDLP_BOUNDS_AS_CONSTRAINTS"

    def solve_via_data(
        self,
        data: dict[str, Any],
        warm_start: bool,
        verbose: bool,
        solver_opts: dict[str, Any],
        solver_cache: dict | None = None,
    ) -> dict[str, Any]:
        """PDLP's solve as CVXPY runs it (glop presolve on, the options' proto merged in,
        ``time_limit_sec``), plus ``iterations`` from the solve log."""
        from ortools.pdlp import solvers_pb2
        from ortools.pdlp.python import pdlp

        parameters = solvers_pb2.PrimalDualHybridGradientParams()
        parameters.verbosity_level = 3 if verbose else 0
        parameters.presolve_options.use_glop = True
        if "parameters_proto" in solver_opts:
            parameters.MergeFrom(solver_opts["parameters_proto"])
        if "time_limit_sec" in solver_opts:
            parameters.termination_criteria.time_sec_limit = float(solver_opts["time_limit_sec"])
        result = pdlp.primal_dual_hybrid_gradient(data[self.PDLP_MODEL], parameters)
        log = result.solve_log
        info = self._get_convergence_info(log.solution_stats, log.solution_type)
        return {
            "primal": result.primal_solution,
            "dual": result.dual_solution,
            "status": self._status_map(log),
            "value": info.primal_objective if info is not None else -np.inf,
            "iterations": int(log.iteration_count),
        }

    def invert(self, solution: dict[str, Any], inverse_data: dict[str, Any]) -> Solution:
        """CVXPY's inversion, with the iteration count in the solution's attributes."""
        inverted = super().invert(solution, inverse_data)
        inverted.attr[cvxpy_settings.NUM_ITERS] = solution["iterations"]
        return inverted


def _solver_argument(name: str) -> str | Solver:
    """What ``prob.solve(solver=...)`` takes for ``name`` (registers NABLAPROX)."""
    if SOLVERS[name].cvxpy_solver == NABLAPROX:
        import cvxprox  # noqa: F401  (registers the solver with CVXPY)
    if name == "PDLP":
        return PdlpBoundsAsConstraints()
    if name == "CUPDLPX":
        from compare.cupdlpx_conif import CuPdlpx

        return CuPdlpx()
    return SOLVERS[name].cvxpy_solver


def warm_up(solver: str, problem_class: str, options: Mapping[str, Any]) -> None:
    """Solve a tiny problem of the same class, so one-off costs are not charged later."""
    try:
        _warm_up_problem(problem_class).solve(solver=_solver_argument(solver), **options)
    except Exception:
        pass  # a broken solver is reported by the measured solve that follows


# ---------------------------------------------------------------------- measurement


def worst_violation(prob: cp.Problem) -> float:
    """Worst relative constraint violation (NaN without values).

    For each constraint, the infinity norm of ``c.violation()`` divided by the largest
    magnitude among the constraint's own expressions (at least 1): a row of a badly scaled
    model is measured against its own data, not against the largest number in the model.
    """
    worst = 0.0
    for constraint in prob.constraints:
        try:
            violation = np.abs(np.asarray(constraint.violation(), dtype=float))
            scale = max(
                [1.0] + [float(np.max(np.abs(arg.value), initial=0.0)) for arg in constraint.args]
            )
        except (ValueError, TypeError):  # no value for some variable
            return math.nan
        worst = max(worst, float(np.max(violation, initial=0.0)) / scale)
    return worst


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def classify_error(exc: BaseException) -> tuple[str, str]:
    """``(status, note)`` of an exception raised while building or solving."""
    message = _one_line(f"{type(exc).__name__}: {exc}")
    errno = getattr(exc, "errno", None)
    if errno in GUROBI_LICENCE_ERRORS or "size-limited license" in str(exc):
        return LICENCE_LIMIT, message
    if isinstance(exc, MemoryError):
        return OUT_OF_MEMORY, message
    return ERROR, message


def gurobi_refusal(prob: cp.Problem) -> BaseException | None:
    """Gurobi's own error behind a failed GUROBI solve, or None.

    CVXPY's Gurobi interfaces swallow the exception of ``model.optimize()`` (so a
    size-limited licence's refusal reads as a plain solver failure); optimizing the
    model CVXPY kept in the problem's solver cache again raises it.
    """
    model = prob._solver_cache.get("GUROBI")  # noqa: SLF001  (no public accessor)
    if model is None:
        return None
    try:
        model.optimize()
    except Exception as exc:  # gurobipy.GurobiError
        return exc
    return None


def _measure(prob: cp.Problem, task: SolveTask, options: Mapping[str, Any]) -> Outcome:
    """Solve ``prob`` once and measure it."""
    solver = _solver_argument(task.solver)
    status, note = None, ""
    start = time.perf_counter()
    try:
        prob.solve(solver=solver, **options)
    except cp.SolverError as exc:
        refusal = gurobi_refusal(prob) if task.solver == "GUROBI" else None
        status, note = classify_error(refusal or exc)
    wall = time.perf_counter() - start
    compile_time = prob.compilation_time or 0.0
    outcome = Outcome(
        status=status or prob.status,
        compile_time=compile_time,
        solve_time=wall - compile_time,
        constraints=sum(c.size for c in prob.constraints),
        note=note,
    )
    if status is not None:
        return outcome
    iterations = prob.solver_stats.num_iters
    outcome.iterations = math.nan if iterations is None else float(iterations)
    extra = prob.solver_stats.extra_stats  # a dict for NABLAPROX; solver objects for others
    if isinstance(extra, dict):
        outcome.algorithm = str(extra.get("algorithm", ""))
    if prob.status in SOLVED and prob.value is not None:
        outcome.objective = float(prob.value)
        outcome.violation = worst_violation(prob)
    if task.assess is not None:
        outcome.verdict, outcome.note = task.assess(prob)
    return outcome


def run_task(task: SolveTask) -> Outcome:
    """Build, warm up, solve and measure; never raises (failures become statuses)."""
    try:
        options = dict(
            solver_options(task.solver, task.settings) if task.options is None else task.options
        )
        warm_up(task.solver, task.problem_class, options)
        outcome = _measure(task.build(), task, options)
        for _ in range(task.repeats - 1):
            if not outcome.compile_time + outcome.solve_time < REPEAT_BELOW:
                break
            again = _measure(task.build(), task, options)
            if again.compile_time + again.solve_time < outcome.compile_time + outcome.solve_time:
                outcome = again
    except Exception as exc:  # MemoryError included
        status, note = classify_error(exc)
        outcome = Outcome(status=status, note=note)
    outcome.memory_mb = peak_memory_mb()
    return outcome
