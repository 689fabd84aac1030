"""ADMM then PDHG, the automatic choice for linear programs.

On Netlib, ADMM with its factorization finishes easy LPs in a few hundred iterations,
often several times faster than PDHG, but stalls on degenerate ones, where restarted
PDHG keeps making progress (first 40 Netlib LPs, 10 s each: PDHG 33 solved, ADMM 25).
So an LP gets a short ADMM run; if that does not settle it, PDHG takes over with the
remaining iteration and time budget. PDHG starts from the caller's warm start, not from
ADMM's last iterate: on GFRD-PNC and SHELL that iterate made PDHG miss the 100k
iteration limit that a cold start meets in 46k and 44k iterations.
"""

from __future__ import annotations

from dataclasses import replace

import cvxpy.settings as s

from cvxprox.solvers.admm.kkt import ADMM
from cvxprox.solvers.common.algorithm import Algorithm
from cvxprox.solvers.common.result import SolveResult
from cvxprox.solvers.pdhg import PDHG

# Iterations of the ADMM phase: it solves the easy Netlib LPs well within this budget.
ADMM_BUDGET = 2500

_SETTLED = (s.OPTIMAL, s.INFEASIBLE, s.UNBOUNDED)


class ADMMThenPDHG(Algorithm):
    """A short ADMM run, then PDHG when ADMM has not converged."""

    name = "admm+pdhg"

    def solve(self, reason: str = "") -> SolveResult:
        opts = self.opts
        budget = min(opts.max_iters, ADMM_BUDGET)
        first = ADMM(self.program, replace(opts, max_iters=budget), self.warm_start).solve(
            f"{reason}; ADMM for up to {budget} iterations, then PDHG"
        )
        time_left = opts.time_limit - first.solve_time
        if first.status in _SETTLED or opts.max_iters <= budget or time_left <= 0:
            return first
        rest = replace(opts, max_iters=opts.max_iters - first.iterations, time_limit=time_left)
        second = PDHG(self.program, rest, self.warm_start).solve(
            f"taking over after {first.iterations} ADMM iterations"
        )
        _keep_the_better_point(first, second)
        second.algorithm = self.name
        second.iterations += first.iterations
        second.solve_time += first.solve_time
        second.setup_time += first.setup_time
        second.info["admm_iterations"] = first.iterations
        return second


def _keep_the_better_point(first: SolveResult, second: SolveResult) -> None:
    """When a limit stopped both phases without a certificate, the returned point is the
    best iterate of both (smaller normalized KKT error), with the status ``finish`` gave
    it; copied into ``second``."""
    unsettled = (s.OPTIMAL_INACCURATE, s.USER_LIMIT)
    if (
        first.status in unsettled
        and second.status in unsettled
        and first.kkt.normalized < second.kkt.normalized
    ):
        second.status, second.kkt = first.status, first.kkt
        second.x, second.z, second.y = first.x, first.z, first.y
        second.info["warm_start"] = first.info["warm_start"]
