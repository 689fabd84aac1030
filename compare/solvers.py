"""The solvers the benchmark knows: what each applies to, and how it is called.

Each :class:`SolverSpec` says which problem classes a solver takes and how the run's
accuracy (``eps_abs``, ``eps_rel``) and time limit become that solver's own options.
Options are built in the solve's child process (:func:`solver_options`), since PDLP's
take an OR-Tools object whose import must come before CVXPY's (see ``preload``).
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

#: Problem classes, from the simplest cone to the richest.
PROBLEM_CLASSES = ("LP", "QP", "SOCP", "EXP", "SDP")

#: The solver this project provides (registered with CVXPY by ``import cvxprox``).
NABLAPROX = "NABLAPROX"

#: Iteration cap given to first-order solvers whose CVXPY default is low (OSQP: 1e4),
#: so that the time limit, not the iteration count, ends an unsolved run.
UNCAPPED_ITERATIONS = 2_000_000_000


@dataclass(frozen=True)
class SolveSettings:
    """What every solver of a run is asked for: accuracy, time limit, device.

    ``eps_abs = eps_rel = None`` asks each solver for its own default accuracy.
    ``nablaprox_options``: further options of NABLAPROX only, as (name, value) pairs.
    """

    eps_abs: float | None
    eps_rel: float | None
    time_limit: float
    device: str = "cpu"
    nablaprox_options: tuple[tuple[str, Any], ...] = ()

    @property
    def default_accuracy(self) -> bool:
        """Whether each solver keeps its default tolerances."""
        return self.eps_abs is None


def _clip(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def _eps(s: SolveSettings) -> dict[str, Any]:
    """``eps_abs``/``eps_rel`` options, none for the solver's default accuracy."""
    return {} if s.default_accuracy else {"eps_abs": s.eps_abs, "eps_rel": s.eps_rel}


def _nablaprox(s: SolveSettings) -> dict[str, Any]:
    return {
        **_eps(s),
        "time_limit": s.time_limit,
        "device": s.device,
        **dict(s.nablaprox_options),
    }


def _nablaprox_no_presolve(s: SolveSettings) -> dict[str, Any]:
    return {**_nablaprox(s), "presolve": False}


def _scs(s: SolveSettings) -> dict[str, Any]:
    return {**_eps(s), "time_limit_secs": s.time_limit, "max_iters": UNCAPPED_ITERATIONS}


def _osqp(s: SolveSettings) -> dict[str, Any]:
    return {**_eps(s), "time_limit": s.time_limit, "max_iter": UNCAPPED_ITERATIONS}


def _clarabel(s: SolveSettings) -> dict[str, Any]:
    options: dict[str, Any] = {"time_limit": s.time_limit}
    if not s.default_accuracy:
        options.update(tol_gap_abs=s.eps_abs, tol_gap_rel=s.eps_rel, tol_feas=s.eps_abs)
    return options


def _highs(s: SolveSettings, method: str | None = None) -> dict[str, Any]:
    options: dict[str, Any] = {"time_limit": s.time_limit}
    if method is not None:  # HiGHS's own option "solver" (the name clashes with CVXPY's)
        options["highs_options"] = {"solver": method}
    if s.default_accuracy:
        return options
    options.update(primal_feasibility_tolerance=s.eps_abs, dual_feasibility_tolerance=s.eps_abs)
    if s.eps_rel > 0:  # a relative gap; HiGHS takes no 0, so eps_rel = 0 keeps its default
        options["ipm_optimality_tolerance"] = s.eps_rel
    return options


def _gurobi(s: SolveSettings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "TimeLimit": s.time_limit,
        "reoptimize": True,  # CVXPY re-solves an "infeasible or unbounded" answer to decide
    }
    if s.default_accuracy:
        return options
    # FeasibilityTol and OptimalityTol must lie in [1e-9, 1e-2].
    options.update(
        FeasibilityTol=_clip(s.eps_abs, 1e-9, 1e-2), OptimalityTol=_clip(s.eps_abs, 1e-9, 1e-2)
    )
    if s.eps_rel > 0:  # a relative gap, which 0 makes unreachable: keep the default then
        options["BarConvTol"] = min(s.eps_rel, 1.0)
    return options


def _ecos(s: SolveSettings) -> dict[str, Any]:
    if s.default_accuracy:
        return {}
    options = {"abstol": s.eps_abs, "feastol": s.eps_abs}
    if s.eps_rel > 0:  # as for Gurobi
        options["reltol"] = s.eps_rel
    return options


def _pdlp(s: SolveSettings) -> dict[str, Any]:
    if s.default_accuracy:
        return {"time_limit_sec": s.time_limit}
    from ortools.pdlp import solvers_pb2  # only in the child, after the preload

    params = solvers_pb2.PrimalDualHybridGradientParams()
    criteria = params.termination_criteria.simple_optimality_criteria
    criteria.eps_optimal_absolute = s.eps_abs
    criteria.eps_optimal_relative = s.eps_rel
    return {"parameters_proto": params, "time_limit_sec": s.time_limit}


def _cupdlpx(s: SolveSettings) -> dict[str, Any]:
    if s.default_accuracy:
        return {"TimeLimit": s.time_limit}
    eps = max(s.eps_rel, s.eps_abs)  # cuPDLPx has relative tolerances only
    return {"FeasibilityTol": eps, "OptimalityTol": eps, "TimeLimit": s.time_limit}


@dataclass(frozen=True)
class SolverSpec:
    """How the benchmark uses one solver.

    ``classes`` are the problem classes it is run on; ``max_size`` (variables) excludes
    larger cases; ``options`` maps :class:`SolveSettings` to the solver's options;
    ``preload`` is a module the child imports before CVXPY; ``distribution`` is the
    Python package whose version the reports give; ``gpu`` marks a CUDA-only solver;
    ``cvxpy_name`` is the solver CVXPY runs (for variants of one solver with other
    options, named here on their own); ``default`` puts it in the default solver set.
    """

    name: str
    classes: frozenset[str]
    options: Callable[[SolveSettings], dict[str, Any]]
    distribution: str
    accuracy_note: str
    max_size: int | None = None
    preload: str | None = None
    gpu: bool = False
    cvxpy_name: str = ""
    default: bool = True

    @property
    def cvxpy_solver(self) -> str:
        """The name ``prob.solve(solver=...)`` takes."""
        return self.cvxpy_name or self.name

    def applies_to(self, problem_class: str, size: int) -> bool:
        """Whether this solver is run on a case of this class and size (variables)."""
        return problem_class in self.classes and (self.max_size is None or size <= self.max_size)


_ALL = frozenset(PROBLEM_CLASSES)
_LP_QP = frozenset({"LP", "QP"})

#: Every solver the harness can run, by CVXPY name.
SOLVERS: dict[str, SolverSpec] = {
    spec.name: spec
    for spec in (
        SolverSpec(NABLAPROX, _ALL, _nablaprox, "cvxprox", "eps_abs, eps_rel, time_limit"),
        SolverSpec(
            "NABLAPROX_NOPRESOLVE",
            _ALL,
            _nablaprox_no_presolve,
            "cvxprox",
            "eps_abs, eps_rel, time_limit, presolve=False",
            cvxpy_name=NABLAPROX,
            default=False,
        ),
        SolverSpec(
            "GUROBI",
            frozenset({"LP", "QP", "SOCP"}),
            _gurobi,
            "gurobipy",
            "FeasibilityTol = OptimalityTol = eps_abs, BarConvTol = eps_rel (if > 0), TimeLimit, "
            "reoptimize",
        ),
        SolverSpec(
            "HIGHS",
            _LP_QP,
            _highs,
            "highspy",
            "primal/dual feasibility tolerance = eps_abs, ipm_optimality_tolerance = "
            "eps_rel (if > 0), time_limit",
        ),
        SolverSpec(
            "HIGHS_IPM",
            _LP_QP,
            partial(_highs, method="ipm"),
            "highspy",
            "as HIGHS, with HiGHS's interior-point method",
            cvxpy_name="HIGHS",
            default=False,
        ),
        SolverSpec(
            "HIGHS_SIMPLEX",
            _LP_QP,
            partial(_highs, method="simplex"),
            "highspy",
            "as HIGHS, with HiGHS's simplex method",
            cvxpy_name="HIGHS",
            default=False,
        ),
        SolverSpec(
            "CLARABEL",
            _ALL,
            _clarabel,
            "clarabel",
            "tol_gap_abs = tol_feas = eps_abs, tol_gap_rel = eps_rel, time_limit",
        ),
        SolverSpec(
            "SCS", _ALL, _scs, "scs", "eps_abs, eps_rel, time_limit_secs, max_iters uncapped"
        ),
        SolverSpec(
            "OSQP", _LP_QP, _osqp, "osqp", "eps_abs, eps_rel, time_limit, max_iter uncapped"
        ),
        SolverSpec(
            "PDLP",
            frozenset({"LP"}),
            _pdlp,
            "ortools",
            "eps_optimal_absolute/relative, time_limit_sec",
            preload="ortools.pdlp.python.pdlp",
        ),
        SolverSpec(
            "ECOS",
            frozenset({"SOCP", "EXP"}),
            _ecos,
            "ecos",
            "abstol = feastol = eps_abs, reltol = eps_rel (if > 0); no time limit option",
            max_size=20_000,
        ),
        SolverSpec(
            "CUPDLPX",
            frozenset({"LP"}),
            _cupdlpx,
            "cupdlpx",
            "FeasibilityTol = OptimalityTol = max(eps_abs, eps_rel), TimeLimit",
            gpu=True,
        ),
    )
}


def solver_options(name: str, settings: SolveSettings) -> dict[str, Any]:
    """The CVXPY ``solve`` options of solver ``name`` for ``settings``."""
    return SOLVERS[name].options(settings)


def cuda_device_count() -> int:
    """Number of CUDA devices the driver sees (0 without a driver or a GPU)."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value


def unavailable_reason(name: str) -> str | None:
    """Why solver ``name`` cannot run on this machine, or None when it can."""
    spec = SOLVERS[name]
    if spec.gpu:
        try:
            importlib.import_module(spec.distribution)
        except ImportError:
            return f"the {spec.distribution} package is not installed"
        return None if cuda_device_count() > 0 else "no CUDA GPU"
    try:
        if spec.cvxpy_solver == NABLAPROX:
            import cvxprox  # noqa: F401  (registers the solver with CVXPY)
    except Exception as exc:  # any import-time failure of the package under test
        return f"`import cvxprox` failed ({type(exc).__name__}: {exc})"
    import cvxpy as cp

    return None if spec.cvxpy_solver in cp.installed_solvers() else "not installed for CVXPY"


def version(name: str) -> str:
    """``"<distribution> <version>"`` of solver ``name``'s package."""
    dist = SOLVERS[name].distribution
    try:
        return f"{dist} {importlib.metadata.version(dist)}"
    except importlib.metadata.PackageNotFoundError:
        return f"{dist} (version unknown)"
