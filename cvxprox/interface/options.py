"""Solver options: names, defaults and validation.

Every option a user can pass to ``prob.solve(solver="NABLAPROX", ...)`` is declared
here once; an unknown option or a bad value raises a ValueError that names it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from cvxprox.backend import BACKENDS, DEVICES, resolve_backend

ALGORITHMS = ("auto", "admm", "hsde", "pdhg", "ladmm", "hqs", "fista", "dual_fista")
DTYPES = ("float64", "float32")
STRUCTURE_MODES = ("auto", "always", "never")

# Options CVXPY itself may forward to a solver; accepted and ignored.
_CVXPY_PASSTHROUGH = ("use_quad_obj",)


@dataclass
class SolverOptions:
    """Options of the NABLAPROX solver.

    Attributes
    ----------
    eps_abs, eps_rel : float
        Absolute and relative tolerances on the primal residual, dual residual and
        duality gap (all measured in the infinity norm on the unscaled problem).
    eps_infeas : float
        Tolerance of the infeasibility and unboundedness certificates.
    max_iters : int
        Iteration limit. The compiled ADMM iteration costs microseconds on small
        problems, so the default (1e6) lets slowly converging problems finish;
        ``time_limit`` bounds the wall time.
    time_limit : float
        Wall-clock limit in seconds (``inf``: none).

        When either limit stops a run, the status is that of the best iterate seen
        (smallest normalized KKT error ``max(residual / tolerance)`` over the primal
        residual, dual residual and gap): ``optimal`` if its polished point passes all
        three tests (LPs and QPs), ``infeasible_inaccurate``/``unbounded_inaccurate``
        if the last iterates give a certificate at the loose tolerance 1e-6,
        ``optimal_inaccurate`` if its normalized KKT error is at most
        ``min(1e3, 1e-3 / max(eps_abs, eps_rel))`` (at least 1: residuals within 1e3
        times the tolerances, but no looser than tolerances of 1e-3), and CVXPY's
        ``user_limit`` otherwise; the best iterate is the solution returned.
        ``solver_stats.extra_stats["limit"]`` names the limit.
    algorithm : {"auto", "admm", "hsde", "pdhg", "ladmm", "hqs", "fista", "dual_fista"}
        ``auto`` picks from the problem's structure. Cone programs run ADMM, ADMM on
        the homogeneous self-dual embedding (``hsde``, SCS's method) or PDHG;
        structured programs (``cvxprox.reductions.structure``) run ADMM, PDHG
        (``pdhg``, i.e. linearized ADMM; ``ladmm`` means the same), half-quadratic splitting
        (``hqs``), FISTA (``fista``, when the objective is smooth plus one prox term) or
        FISTA on the dual (``dual_fista``, when sums of squares on x make the objective
        strongly convex with a diagonal Hessian).
    backend : {"auto", "numpy", "torch", "cupy"}
        The arrays the iterations run on (``cvxprox.backend``): ``auto`` is NumPy on
        the CPU and CuPy with ``device="cuda"``. Every algorithm runs on every backend
        and ``auto`` picks the same one on each; structured terms run with their device
        versions (``ProxFunction.on``, ``LinOp.on``).
    device : {"cpu", "cuda"}
        ``cuda`` runs on a GPU, with CuPy or (``backend="torch"``) a CUDA build of torch.
    dtype : {"float64", "float32"}
    verbose : bool
    scaling_iters : int
        Ruiz equilibration passes (0 disables scaling).
    check_every : int
        Iterations between residual checks (PDHG's restart test); a termination test
        that failed by a factor of 4 or more, or that costs many iterations (PDHG, dual
        FISTA), comes whole periods later.
    rho : float
        ADMM penalty (initial value, adapted during the solve when ``adaptive_rho``).
    alpha : float
        ADMM over-relaxation parameter in (0, 2).
    adaptive_rho : bool
    structure : {"auto", "always", "never"}
        Whether norms, Huber, TV, convolutions and similar atoms are kept as prox terms
        and operators (``cvxprox.reductions.structure``) instead of CVXPY's cones:
        ``auto`` keeps them when the structure pays off (an FFT operator, smooth terms
        plus one prox, a TV/l2/Huber/logistic term; see ``Lowered.keeps_structure``),
        the parts without a prox term being expanded into cone terms; ``always``
        whenever the lowering takes the problem; ``never`` uses cones. It takes effect
        when CVXPY builds the problem's chain (the first solve); a later solve of the
        same problem that omits it keeps it, one with another value raises an error.
        ``cvxprox.NablaProx(structure=...)`` sets it for the solves that use that solver
        instance.
    presolve : bool
        Reduce a cone program's equality and inequality rows before the solve
        (``cvxprox.solvers.presolve``: empty, one-entry, duplicate and free rows, fixed
        and empty columns, infeasibility from the bounds) and map the solution, every
        dual and any certificate back; ``verbose`` prints what it removed. A Program
        solved on its terms is not reduced, but two one-entry constraint rows that
        cross make it infeasible before any iteration (``crossing_singletons``).
    feasibility_polishing : bool
        PDHG on an LP: once the duality gap passes its test, run PDHG on the primal and
        dual feasibility problems from the iterate (PDLP's feasibility polishing,
        ``cvxprox.solvers.pdhg._FeasibilityPolish``); the polished point is returned
        only when it passes the termination test.
    threads : int or None
        CPU threads for the kernels that can use them: on NumPy the compiled 2-D TV
        iterations of dual FISTA (images of 512 x 512 pixels and more, swept in column
        blocks; the iterates do not depend on the count), on torch its intra-op threads.
        Capped at Numba's thread count (``NUMBA_NUM_THREADS``) and at torch's current
        one. None (the default): Numba's current thread count (all cores unless set
        otherwise) for the TV iterations, whose passes over a large image pay off on
        every core (TV denoising 1024 x 1024 at 1e-4 on two cores: 5.2 s on two threads
        against 8.2 s on one; 9.0 s against 10.3 s with another process busy on one of
        the cores), and one thread for torch, whose operations on the vectors of an
        iteration are too small for threads to pay off.
    """

    eps_abs: float = 1e-6
    eps_rel: float = 1e-6
    eps_infeas: float = 1e-7
    max_iters: int = 1_000_000
    time_limit: float = math.inf
    algorithm: str = "auto"
    backend: str = "auto"
    device: str = "cpu"
    dtype: str = "float64"
    verbose: bool = False
    scaling_iters: int = 15
    check_every: int = 10
    rho: float = 0.1
    alpha: float = 1.6
    adaptive_rho: bool = True
    structure: str = "auto"
    presolve: bool = True
    feasibility_polishing: bool = True
    threads: int | None = None

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> SolverOptions:
        """Build options from keyword arguments, validating names and values."""
        names = {f.name for f in fields(cls)}
        given = {}
        for key, value in kwargs.items():
            if key in _CVXPY_PASSTHROUGH:
                continue
            if key not in names:
                valid = ", ".join(sorted(names))
                raise ValueError(f"unknown NABLAPROX option {key!r}; valid options are: {valid}")
            given[key] = value
        opts = cls(**given)
        opts.validate()
        return opts

    def validate(self) -> None:
        """Raise ValueError naming the first option with a bad value."""
        for name in ("eps_abs", "eps_rel", "eps_infeas"):
            _check_real(name, getattr(self, name), low=0.0)
        if self.eps_abs == 0 and self.eps_rel == 0:
            raise ValueError("eps_abs and eps_rel cannot both be 0")
        _check_int(name="max_iters", value=self.max_iters, low=1)
        _check_real("time_limit", self.time_limit, low=0.0, allow_inf=True, strict=True)
        _check_choice("algorithm", self.algorithm, ALGORITHMS)
        _check_choice("backend", self.backend, BACKENDS)
        _check_choice("device", self.device, DEVICES)
        resolve_backend(self.backend, self.device)
        _check_choice("dtype", self.dtype, DTYPES)
        if self.dtype == "float32" and self.algorithm == "admm":
            raise ValueError(
                "option dtype='float32' needs algorithm='pdhg' or 'auto' (ADMM factors in float64)"
            )
        _check_bool("verbose", self.verbose)
        _check_int(name="scaling_iters", value=self.scaling_iters, low=0)
        _check_int(name="check_every", value=self.check_every, low=1)
        if self.threads is not None:
            _check_int(name="threads", value=self.threads, low=1)
        _check_real("rho", self.rho, low=0.0, strict=True)
        _check_real("alpha", self.alpha, low=0.0, strict=True)
        if self.alpha >= 2:
            raise ValueError(f"option 'alpha' must lie in (0, 2), got {self.alpha!r}")
        _check_bool("adaptive_rho", self.adaptive_rho)
        _check_choice("structure", self.structure, STRUCTURE_MODES)
        _check_bool("presolve", self.presolve)
        _check_bool("feasibility_polishing", self.feasibility_polishing)


def _check_real(
    name: str, value: Any, low: float, allow_inf: bool = False, strict: bool = False
) -> None:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok:
        ok = not math.isnan(value) and (allow_inf or math.isfinite(value))
        ok = ok and (value > low if strict else value >= low)
    if not ok:
        bound = f"> {low}" if strict else f">= {low}"
        raise ValueError(f"option {name!r} must be a real number {bound}, got {value!r}")


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"option {name!r} must be an integer >= {low}, got {value!r}")


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"option {name!r} must be True or False, got {value!r}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"option {name!r} must be one of {choices}, got {value!r}")
