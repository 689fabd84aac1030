"""The embedding then PDHG, the automatic choice for linear programs.

ADMM on the homogeneous self-dual embedding (``EmbeddingADMM``, with its adaptive scalar
and row penalties) runs first. It finishes most LPs in a few thousand iterations, far
fewer than PDHG, and reaches infeasibility certificates as a fixed point of its own
iteration (tau = 0) where PDHG and plain ADMM reach them only as the limit of their
iterate differences. On degenerate LPs it can stall where restarted PDHG keeps making
progress, so a run that has not settled after ``EMBEDDING_BUDGET`` iterations hands over
to PDHG at its first check with u_tau above ``TAU_FEASIBLE`` (``EmbeddingADMM.probe``):
an iteration heading for a certificate keeps u_tau at 0 (at 94-100% of the checks on
klein1, klein2, klein3, bgetam and bgindy) and goes on to it. PDHG gets the remaining
iteration and time budget and starts from the caller's warm start, not from the
embedding's last point (on GFRD-PNC and SHELL a first phase's last iterate made PDHG
miss the 100k iteration limit that a cold start meets in 46k and 44k iterations).

Netlib, auto, default tolerances, 10 s (``python -m compare --suite netlib --solvers
NABLAPROX``, one run each on this machine, the first six two at a time, the last alone):

=============================================  ========  ==========  ============
first phase                                    feasible  infeasible  time sgm (s)
=============================================  ========  ==========  ============
ADMM for 2500 iterations, the embedding with      73/92       23/28          2.54
a fixed penalty 1e3 when ADMM's differences
came within 2e-2 of a Farkas certificate
the embedding alone, no PDHG                      69/92       27/28          1.93
the embedding for 4000 iterations                72/92       21/28          2.16
the embedding for 10000 iterations               72/92       22/28          2.04
the embedding, probe after 10000 iterations       72/92       24/28          1.94
the embedding, probe after 5000 iterations        72/92       24/28          1.99
the embedding, probe after 2500 iterations        73/92       24/28          2.05
=============================================  ========  ==========  ============

The last is ``EMBEDDING_BUDGET``. Against the first row it gains the infeasible pang (in
10000 iterations) and gosh (1400) and loses klein1 (the embedding with the adaptive
penalty certifies it in 807000 iterations, 6.8 s, alone; with the fixed penalty 1e3 in
about 100000). The iterations of the cases both solve: 0.23 of the first row's in
geometric mean. 5000 lost FIT2P (9.1 s with 2500) and the energy LP of
``examples/energy_planning.py`` at 8 nodes x 144 hours, which the embedding does not
solve alone (84740 iterations in 60 s), took 7.6 s against 5.6 s with 2500 (PDHG
finishes it; ``python -m compare --suite energy --sizes 8x144``). The embedding without
PDHG misses GFRD-PNC, SIERRA, PILOTNOV, CYCLE, 80BAU3B and FIT2P, which PDHG finishes.
"""

from __future__ import annotations

from dataclasses import replace

import cvxpy.settings as s

from cvxprox.solvers.admm.hsde import EmbeddingADMM
from cvxprox.solvers.common.algorithm import Algorithm
from cvxprox.solvers.common.result import SolveResult
from cvxprox.solvers.pdhg import PDHG

#: Iterations after which the embedding hands over to PDHG (module docstring).
EMBEDDING_BUDGET = 2500
#: u_tau above which a check counts as heading for a solution, not a certificate.
TAU_FEASIBLE = 1e-6

_SETTLED = (s.OPTIMAL, s.INFEASIBLE, s.UNBOUNDED)


class EmbeddingThenPDHG(Algorithm):
    """The embedding, then PDHG when the embedding has not settled within its budget and
    is not heading for a certificate (module docstring)."""

    name = "hsde+pdhg"

    def solve(self, reason: str = "") -> SolveResult:
        opts = self.opts
        budget = min(opts.max_iters, EMBEDDING_BUDGET)
        embedding = EmbeddingADMM(self.program, opts, self.warm_start)
        embedding.probe = (budget, TAU_FEASIBLE)
        first = embedding.solve(
            f"{reason}; the embedding, then PDHG after {budget} iterations unless u_tau is 0"
        )
        time_left = opts.time_limit - first.solve_time
        if first.status in _SETTLED or opts.max_iters <= first.iterations or time_left <= 0:
            return first
        rest = replace(opts, max_iters=opts.max_iters - first.iterations, time_limit=time_left)
        second = PDHG(self.program, rest, self.warm_start).solve(
            f"taking over after {first.iterations} iterations of the embedding"
        )
        _keep_the_better_point(first, second)
        second.algorithm = self.name
        second.info["embedding_iterations"] = first.iterations
        second.iterations += first.iterations
        second.solve_time += first.solve_time
        second.setup_time += first.setup_time
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
