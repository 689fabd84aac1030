"""ADMM then PDHG, the automatic choice for linear programs.

On Netlib, ADMM with its factorization finishes easy LPs in a few hundred iterations,
often several times faster than PDHG, but stalls on degenerate ones, where restarted
PDHG keeps making progress (first 40 Netlib LPs, 10 s each: PDHG 33 solved, ADMM 25).
So an LP gets a short ADMM run; if that does not settle it, PDHG takes over with the
remaining iteration and time budget. PDHG starts from the caller's warm start, not from
ADMM's last iterate: on GFRD-PNC and SHELL that iterate made PDHG miss the 100k
iteration limit that a cold start meets in 46k and 44k iterations.

When ADMM's dual directions came close to a Farkas certificate (``farkas_ratio``, the
larger of the two certificate test ratios, at most ``SUSPECT_RATIO``), ADMM on the
homogeneous self-dual embedding (``EmbeddingADMM``, a fixed penalty ``EMBEDDING_RHO``)
runs first, for at most ``EMBEDDING_SHARE`` of the time left. Plain ADMM and PDHG reach a
certificate only as the limit of their iterate differences (the infimal displacement,
at a sublinear rate), the embedding as a fixed point (tau = 0) of its own iteration.
On the infeasible Netlib LPs klein1, klein2, klein3 and refinery the differences of
2500 ADMM iterations come within 1.1e-3 .. 1.0e-2 of a certificate, and in 10 s neither
ADMM nor PDHG gets below 1e-6, where the test asks 1e-7; the embedding certifies them in
2550 (refinery) to 101150 (klein1) iterations, 0.3-5 s on this machine unloaded (klein1
missed half of the 10 s under load, hence ``EMBEDDING_SHARE``). With ADMM's adaptive
penalty the embedding stalls near 1e-4 on klein1 (its penalty rule follows x / tau, which
diverges as tau tends to 0); fixed penalties 1e2 .. 1e4 certify klein1 and klein3, 0.1
and 1e-6 .. 1e-4 do not. Of the 92 feasible Netlib LPs three come that close (GANGES
2.2e-3, BORE3D 4.6e-3, MAROS 7.5e-3; TUFF next at 2.8e-2), none of which ADMM then PDHG
solved in 10 s (BORE3D was, in 8.9 s, in one of two runs). An infeasible program's
embedding iterates approach tau = 0: u_tau is exactly 0 at 94-100% of the checks on
klein1, klein2, klein3, bgetam and bgindy, and the run certifies refinery (median u_tau
7e-3) in 2550 iterations and cplex1 (2.4e-7) in 1150, where GANGES and MAROS keep u_tau
near 1.2e-3 and BORE3D near 9.5e-4. So the phase ends after ``EMBEDDING_PROBE[0]``
iterations at the first check with u_tau above ``EMBEDDING_PROBE[1]``, and PDHG gets
nearly all of the time on those three. Infeasible LPs whose differences stay far from a
certificate (pang 0.64, vol1, qual, gosh) are not helped: the embedding's own ratio after
1 s does not tell them from feasible ones either (1.7e-4 .. 2e-2 on 23 feasible LPs).

Netlib, auto, default tolerances, 10 s (``python -m compare --suite netlib --solvers
NABLAPROX``, two runs): 23/28 infeasible certified (18 before: klein1, klein2, klein3,
refinery and cplex1, which was reported unbounded, now infeasible), 65/92 feasible in
both runs; BORE3D (8.7 s) was missed in the run before the probe, TRUSS (9.4-10.0 s, not
triggering the phase) in the other.
"""

from __future__ import annotations

import math
from dataclasses import replace

import cvxpy.settings as s

from cvxprox.interface.options import SolverOptions
from cvxprox.ir.program import AssembledProgram
from cvxprox.solvers.admm.hsde import EmbeddingADMM
from cvxprox.solvers.admm.kkt import ADMM
from cvxprox.solvers.common.algorithm import Algorithm
from cvxprox.solvers.common.result import SolveResult
from cvxprox.solvers.pdhg import PDHG

# Iterations of the ADMM phase: it solves the easy Netlib LPs well within this budget.
ADMM_BUDGET = 2500
# The embedding phase: when ADMM's farkas_ratio is at most SUSPECT_RATIO, at most this
# share of the time left, with this fixed penalty (module docstring).
SUSPECT_RATIO = 2e-2
EMBEDDING_SHARE = 0.8
EMBEDDING_RHO = 1e3
# The embedding phase ends after EMBEDDING_PROBE[0] iterations at the first check whose
# u_tau exceeds EMBEDDING_PROBE[1] (``EmbeddingADMM.probe``; module docstring).
EMBEDDING_PROBE = (3000, 1e-6)

_SETTLED = (s.OPTIMAL, s.INFEASIBLE, s.UNBOUNDED)


class ADMMThenPDHG(Algorithm):
    """A short ADMM run, then PDHG when ADMM has not converged (and the embedding phase
    between them when ADMM's directions point to infeasibility; module docstring).

    ``original``, when the program is a presolved one, is the program before presolve:
    the embedding phase runs on it, and a result it settles is marked
    ``info["solved_original"]`` (its point or certificate is the original's, tested on
    it, and is not postsolved). On klein2 the embedding certifies the original program
    in 23800 iterations (24000 +- 300 with its rows permuted) and the presolved one (one
    of two singleton rows of a variable dropped, the other a bound row) not in 139000.
    """

    name = "admm+pdhg"

    def __init__(
        self,
        program: AssembledProgram,
        options: SolverOptions,
        warm_start: dict | None = None,
        original: AssembledProgram | None = None,
    ) -> None:
        super().__init__(program, options, warm_start)
        self.original = original

    def solve(self, reason: str = "") -> SolveResult:
        opts = self.opts
        budget = min(opts.max_iters, ADMM_BUDGET)
        first = ADMM(self.program, replace(opts, max_iters=budget), self.warm_start).solve(
            f"{reason}; ADMM for up to {budget} iterations, then PDHG"
        )
        time_left = opts.time_limit - first.solve_time
        if first.status in _SETTLED or opts.max_iters <= budget or time_left <= 0:
            return first
        if first.info.get("farkas_ratio", math.inf) <= SUSPECT_RATIO:
            embedding = EmbeddingADMM(
                self.program if self.original is None else self.original,
                replace(
                    opts,
                    max_iters=opts.max_iters - first.iterations,
                    time_limit=EMBEDDING_SHARE * time_left,
                    rho=EMBEDDING_RHO,
                    adaptive_rho=False,
                ),
            )
            embedding.probe = EMBEDDING_PROBE
            embedding = embedding.solve(
                f"ADMM's differences came within {first.info['farkas_ratio']:.1e} of a "
                "Farkas certificate"
            )
            _add_phase(embedding, first)
            embedding.info["embedding_iterations"] = embedding.iterations - first.iterations
            if embedding.status in _SETTLED:
                embedding.info["solved_original"] = self.original is not None
                return embedding
            first = _with_point(first, embedding)
            time_left = opts.time_limit - first.solve_time
            if opts.max_iters <= first.iterations or time_left <= 0:
                return first
        rest = replace(opts, max_iters=opts.max_iters - first.iterations, time_limit=time_left)
        second = PDHG(self.program, rest, self.warm_start).solve(
            f"taking over after {first.iterations} ADMM iterations"
        )
        _keep_the_better_point(first, second)
        _add_phase(second, first)
        return second


def _add_phase(later: SolveResult, earlier: SolveResult) -> None:
    """``later`` (a phase's result) counts the iterations and times of the phases before
    it (``earlier``), in place; ``admm_iterations`` (and ``embedding_iterations``) are
    those of the first phases."""
    later.algorithm = ADMMThenPDHG.name
    later.info["admm_iterations"] = earlier.info.get("admm_iterations", earlier.iterations)
    if "embedding_iterations" in earlier.info:
        later.info["embedding_iterations"] = earlier.info["embedding_iterations"]
    later.iterations += earlier.iterations
    later.solve_time += earlier.solve_time
    later.setup_time += earlier.setup_time


def _with_point(first: SolveResult, embedding: SolveResult) -> SolveResult:
    """The ADMM phase's result with the embedding phase's iterations and times counted
    (``embedding`` already holds both), keeping ADMM's point: the embedding phase's
    point is not offered to PDHG's comparison."""
    return replace(
        first,
        algorithm=ADMMThenPDHG.name,
        iterations=embedding.iterations,
        solve_time=embedding.solve_time,
        setup_time=embedding.setup_time,
        info={
            **first.info,
            "admm_iterations": first.iterations,
            "embedding_iterations": embedding.info["embedding_iterations"],
        },
    )


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
