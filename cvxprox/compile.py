"""Choosing and running an algorithm for a ProxProgram."""

from __future__ import annotations

from functools import cache

from threadpoolctl import ThreadpoolController

from cvxprox.algorithms.admm import ADMM
from cvxprox.algorithms.base import FACTORIZATION_NNZ_LIMIT, SolveResult
from cvxprox.algorithms.hybrid import ADMMThenPDHG
from cvxprox.algorithms.pdhg import PDHG
from cvxprox.ir import ProxProgram
from cvxprox.options import SolverOptions


def choose_algorithm(program: ProxProgram, options: SolverOptions) -> tuple[type, str]:
    """The algorithm class to run and a one-line reason.

    ``auto`` takes ADMM then PDHG for linear programs (ADMM is fastest on easy LPs,
    restarted PDHG most robust on degenerate ones; see ``algorithms/hybrid.py``), PDHG
    for float32 and for problems too large to factor, and ADMM with its cached
    factorization for everything else (QPs and non-polyhedral cones, where it needs far
    fewer iterations).
    """
    if options.algorithm == "admm":
        return ADMM, "forced by algorithm='admm'"
    if options.algorithm == "pdhg":
        return PDHG, "forced by algorithm='pdhg'"
    nnz = program.A.nnz + (0 if program.P is None else program.P.nnz)
    if nnz > FACTORIZATION_NNZ_LIMIT:
        return PDHG, f"auto: {nnz} nonzeros is too many to factor; matvec-only PDHG"
    if options.dtype == "float32":
        return PDHG, "auto: float32 iterations (ADMM factors in float64)"
    if program.is_polyhedral and not program.has_quadratic:
        return ADMMThenPDHG, "auto: a linear program"
    return ADMM, f"auto: KKT matrix with {nnz} nonzeros is cheap to factor once"


@cache
def _blas() -> ThreadpoolController:
    return ThreadpoolController()


def solve_program(
    program: ProxProgram, options: SolverOptions, warm_start: dict | None = None
) -> SolveResult:
    """Solve a ProxProgram with the algorithm the options ask for (or the automatic choice).

    The iterations are vector operations (dot products, axpys) for which a threaded BLAS
    only adds synchronization; on a loaded machine its spinning threads can make a
    single dot product a thousand times slower. BLAS runs single-threaded during the solve.
    """
    algorithm, reason = choose_algorithm(program, options)
    with _blas().limit(limits=1, user_api="blas"):
        return algorithm(program, options, warm_start).solve(reason)
