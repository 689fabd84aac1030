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
iteration and time budget. It starts from the embedding's best iterate when that point's
duality gap is within ``WARM_GAP`` (1e-3) of its objective, and from the caller's warm
start otherwise (``_pdhg_start``).

The start of PDHG, Netlib at default tolerances, 10 s (``python -m compare --suite netlib
--solvers NABLAPROX``, the two runs side by side): from the caller's warm start, 73/92
feasible, 24/28 infeasible, time sgm 2.11 s; from the embedding's best iterate always,
72/92, 24/28, 2.01 s, PDHG's iterations 0.84 of the first's in geometric mean over the
cases both solve. The embedding's point halves PDHG's iterations or better on AGG2 (0.03),
25FV47 (0.06), FIT2P (0.08), SCFXM3, ETAMACRO, STAIR and FFFFF800, whose gaps at the
hand-over are 1e-9 to 7e-4 of the objective, and costs iterations on PILOTNOV (lost: not
solved in 187000 against 56000), MODSZK1 (1.57 times), CYCLE (1.87), AGG3 (1.19) and
GFRD-PNC (1.10), whose gaps are 3e-3 to 0.47 of it: far from the optimal face, the point
anchors the Halpern iterations where they do not need to go. The energy LP of
``examples/energy_planning.py``, whose gaps at the hand-over are 3e-8 (4 nodes x 24
hours) and 2.5e-6 (8 x 144): 28350 and 23490 iterations from a cold start, 9520 and
15720 from the embedding's point. With ``WARM_GAP`` (kept), in the same conditions: 73/92,
24/28, time sgm 1.89 s; no case lost, iterations 0.81 of the first's in geometric mean,
a third or less on SHARE1B, ETAMACRO, AGG2, STAIR, SCFXM3, 25FV47 and FIT2P.

The budget is 0 (PDHG takes over at the first check with u_tau above ``TAU_FEASIBLE``)
when an iteration of the embedding costs more than ``MAX_WORK_RATIO`` (10) products with
A and A' (``cvxprox.solvers.admm.hsde.work_ratio``: the KKT factor has more than about
4.5 times the nonzeros of A). On Netlib that ratio has median 2.6 and quartiles 2.2 and
3.4; the infeasible LPs are at most 4.7 and the energy LPs 3.1 (8 x 144) and 5.8 (16 x
768); above 10 are MAROS-R7 (11.5), QAP8 (24.5), DFL001 (27.8), QAP12 (57) and QAP15
(91), on which 10 s of the embedding ran 720, 270 (solved), 590, 150 and no iterations
(QAP15's factorization alone outlasts the limit). With the rule (``python -m compare
--suite netlib --solvers NABLAPROX``, alone on the machine): 74/92 and 24/28, time sgm
1.89 s; MAROS-R7 solved in 5.1 s (6870 iterations), QAP8 in 440 iterations (0.24 s,
against 270 and 0.41 s), QAP12 optimal_inaccurate at the limit (2040 iterations; solved in
4.9 s once polishing kept to a quarter of a run, ``PolishSchedule``), DFL001 not solved;
nothing else changes.

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

from cvxprox.solvers.admm.hsde import EmbeddingADMM, Probe
from cvxprox.solvers.common.algorithm import Algorithm
from cvxprox.solvers.common.result import SolveResult
from cvxprox.solvers.pdhg import PDHG

#: Iterations after which the embedding hands over to PDHG (module docstring).
EMBEDDING_BUDGET = 2500
#: u_tau above which a check counts as heading for a solution, not a certificate.
TAU_FEASIBLE = 1e-6
#: The most products with A and A' an iteration of the embedding may cost and still get
#: its budget (``cvxprox.solvers.admm.hsde.work_ratio``; module docstring).
MAX_WORK_RATIO = 10.0
#: The largest |pobj - dobj| / max(|pobj|, |dobj|) of the embedding's best iterate from
#: which PDHG starts (module docstring).
WARM_GAP = 1e-3

_SETTLED = (s.OPTIMAL, s.INFEASIBLE, s.UNBOUNDED)


class EmbeddingThenPDHG(Algorithm):
    """The embedding, then PDHG when the embedding has not settled within its budget and
    is not heading for a certificate (module docstring)."""

    name = "hsde+pdhg"

    def solve(self, reason: str = "") -> SolveResult:
        opts = self.opts
        budget = min(opts.max_iters, EMBEDDING_BUDGET)
        embedding = EmbeddingADMM(self.program, opts, self.warm_start)
        embedding.probe = Probe(budget, TAU_FEASIBLE, MAX_WORK_RATIO)
        first = embedding.solve(
            f"{reason}; the embedding, then PDHG after {budget} iterations unless u_tau is 0 "
            f"(at once when an iteration costs more than {MAX_WORK_RATIO:g} products)"
        )
        time_left = opts.time_limit - first.solve_time
        if first.status in _SETTLED or opts.max_iters <= first.iterations:
            return first
        if time_left <= 0:  # the budget stopped the embedding, but the user's limit is out
            first.info["limit"] = "time_limit"
            return first
        rest = replace(opts, max_iters=opts.max_iters - first.iterations, time_limit=time_left)
        start, origin = _pdhg_start(first, self.warm_start)
        second = PDHG(self.program, rest, start).solve(
            f"taking over after {first.iterations} iterations of the embedding, from {origin}"
        )
        _keep_the_better_point(first, second)
        second.algorithm = self.name
        second.info["embedding_iterations"] = first.iterations
        second.iterations += first.iterations
        second.solve_time += first.solve_time
        second.setup_time += first.setup_time
        return second


def _pdhg_start(first: SolveResult, warm_start: dict | None) -> tuple[dict | None, str]:
    """PDHG's warm start and its origin in words: the embedding's best iterate (x, z, y)
    when its duality gap is within ``WARM_GAP`` of its objective, else ``warm_start``
    (the caller's, None for a cold start)."""
    kkt, point = first.kkt, first.info.get("warm_start")
    if kkt is not None and point is not None:
        scale = max(abs(kkt.primal_objective), abs(kkt.dual_objective))
        if kkt.gap <= WARM_GAP * scale:
            return {key: point[key] for key in ("x", "z", "y")}, "the embedding's best iterate"
    origin = "the caller's warm start" if warm_start is not None else "a cold start"
    return warm_start, origin


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
