"""The embedding, then the embedding and PDHG side by side: the automatic choice for LPs.

ADMM on the homogeneous self-dual embedding (``EmbeddingADMM``, with its adaptive scalar
and row penalties) runs first. It finishes most LPs in a few thousand iterations, far
fewer than PDHG, and reaches infeasibility certificates as a fixed point of its own
iteration (tau = 0) where PDHG and plain ADMM reach them only as the limit of their
iterate differences. On degenerate LPs it can stall where restarted PDHG keeps making
progress, and on others it needs ten times its budget and gets there long before PDHG.
So a run that has not settled after ``EMBEDDING_BUDGET`` iterations is joined by PDHG at
its first check with u_tau above ``TAU_FEASIBLE`` (``_hands_over``): an iteration heading
for a certificate keeps u_tau at 0 (at 94-100% of the checks on klein1, klein2, klein3,
bgetam and bgindy) and goes on to it alone. From then on the two runs take turns, one
check at a time, the one that has done less work first (``_Race``): work is iterations
times their cost in iterations of PDHG (``cvxprox.solvers.admm.hsde.work_ratio`` for
the embedding), so PDHG runs alone until it has done the embedding's work so
far and the two keep level after that. Whichever settles first is returned; neither
takes much more than twice the work it would take alone. The turns are decided by
counts, not clocks, so a run's iterates do not depend on the machine's speed. PDHG
starts from the embedding's best iterate when that point's duality gap is within
``WARM_GAP`` (1e-3) of its objective, and from the caller's warm start otherwise
(``_pdhg_start``).

Netlib, 10 s (``python -m compare --suite netlib --solvers NABLAPROX,SCS,PDLP,HIGHS``,
with ``--eps 1e-4`` and without), against PDHG taking over alone at the hand-over (the
embedding's run ended there; the committed results before this rule):

============================  ==========================  ==========================
                              eps 1e-4                    default tolerances
============================  ==========================  ==========================
PDHG alone after the budget   79/92, 24/28, sgm 1.50 s    77/92, 24/28, sgm 1.69 s
the two runs taking turns     82/92, 25/28, sgm 1.38 s    76/92, 25/28, sgm 1.65 s
============================  ==========================  ==========================

At 1e-4 the turns gain BNL1 (1.1 s), PEROLD (6.3 s), GREENBEA (4.8 s), GREENBEB (4.3 s)
and the infeasible vol1 (5.4 s), all settled by the embedding, and lose AGG, which PDHG
settled alone in 6.0 s (808750 iterations) and not in 10 s with the embedding beside it
(settled in 2.1 s, 100080 iterations, since PDHG's primal weight may fall below 1e-6:
``cvxprox.solvers.pdhg``); D2Q06C, which the embedding settles alone in 7.4 s, is still
out of reach. On the 102 cases both rules solve the time is 1.04 of the first's in
geometric mean: AGG3 (1.8 times), PILOTNOV (1.7), GFRD-PNC (1.4), TUFF, CYCLE and
80BAU3B (1.2-1.3) pay for the embedding's turns; LOTFI (0.59), MODSZK1 (0.71), MAROS and
FFFFF800 (0.90) are settled by the embedding sooner than PDHG settled them. At default
tolerances the turns lose AGG (PDHG alone: optimal_inaccurate at max_iters, 7.4 s) and
gain vol1; the median time ratio to SCS over the cases both solve is 1.66 (was 1.93).

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

PDHG runs alone from the start, and the embedding never factors, when its KKT factor
predicted from the pattern (``dear_factor``: minimum-degree elimination,
``cvxprox.backend.jit.fill``, within 0.91-1.62 of qdldl's nnz(L) on Netlib) makes an
iteration of it cost more than ``MAX_WORK_RATIO`` (10) of PDHG's
(``cvxprox.solvers.admm.hsde.work_ratio``). Netlib at eps 1e-4, 10 s (``python -m
compare --suite netlib --solvers NABLAPROX --eps 1e-4``, against the committed run
before the rule): QAP15, whose factorization (32 s) outlasted the limit and had the
process killed at 30 s, is solved in 1.0 s (2020 iterations); QAP12 in 0.41 s (was 4.6
s), QAP8 0.11 s (0.25), MAROS-R7 0.89 s (1.36), DFL001 6.2 s (7.6), in the same
iterations; 83/92 and 25/28, nothing else changed (iterations 1.01 of the first's in
geometric mean). The same rule applies when the measured factor says so and the
prediction did not: the budget is 0 (PDHG joins at the first check with u_tau above
``TAU_FEASIBLE``) and the embedding gets no more turns. On Netlib that ratio has median
5.0 and quartiles 4.5 and 5.5; the infeasible LPs are at most 7.1 (bgetam) and the
energy LPs 5.8 (8 x 144) and 8.5 (16 x 768); above 10 are MAROS-R7 (12.6), QAP8 (26.6),
DFL001 (30.3), QAP12 (59) and QAP15 (93), on which 10 s of the embedding ran 720, 270
(solved), 590, 150 and no iterations (QAP15's factorization alone outlasts the limit).
With the rule, when PDHG took over alone (``python -m compare --suite netlib --solvers
NABLAPROX``, alone on the machine): 74/92 and 24/28, time sgm 1.89 s; MAROS-R7 solved in
5.1 s (6870 iterations), QAP8 in 440 iterations (0.24 s, against 270 and 0.41 s), QAP12
optimal_inaccurate at the limit (2040 iterations; solved in 4.9 s once polishing kept to
a quarter of a run, ``PolishSchedule``), DFL001 not solved; nothing else changed.

The table below chose the budget when PDHG took over alone after it (the embedding's
run ended at the hand-over).

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
These runs predate the row multipliers' mean over the live rows
(``cvxprox.solvers.admm.penalty``), with which the embedding settles the 8 x 144 energy LP
alone, within its budget (2060 iterations at default tolerances, 2140 at eps 1e-4).
"""

from __future__ import annotations

import math
import time
from dataclasses import replace

import cvxpy.settings as s
import scipy.sparse as sp

from cvxprox.backend import Backend
from cvxprox.backend.jit.fill import predict_fill
from cvxprox.ir.program import AssembledProgram
from cvxprox.solvers.admm.hsde import EmbeddingADMM, factor_nnz_at
from cvxprox.solvers.common.algorithm import Algorithm, Progress, Steps, run_to_end, stop_run
from cvxprox.solvers.common.result import BestIterate, SolveResult
from cvxprox.solvers.pdhg import PDHG

#: Iterations after which PDHG joins the embedding (module docstring).
EMBEDDING_BUDGET = 2500
#: u_tau above which a check counts as heading for a solution, not a certificate.
TAU_FEASIBLE = 1e-6
#: The most an iteration of the embedding may cost, in iterations of PDHG, and still get
#: its budget and its turns (``cvxprox.solvers.admm.hsde.work_ratio``; module docstring).
MAX_WORK_RATIO = 10.0
#: The largest |pobj - dobj| / max(|pobj|, |dobj|) of the embedding's best iterate from
#: which PDHG starts (module docstring).
WARM_GAP = 1e-3

_SETTLED = (s.OPTIMAL, s.INFEASIBLE, s.UNBOUNDED)
_NAMES = ("embedding", "PDHG")


def dear_factor(program: AssembledProgram) -> str | None:
    """Why the embedding should not run on an LP, or None: its KKT factor, predicted
    before factoring (``cvxprox.backend.jit.fill.predict_fill``), makes an iteration cost
    more than ``MAX_WORK_RATIO`` of PDHG's, so that the embedding would end at its first
    check and the factorization (32 s on Netlib's QAP15, which PDHG solves in 1 s) would
    be spent for nothing."""
    n, m, A = program.n, program.m, program.A
    limit = factor_nnz_at(MAX_WORK_RATIO, A.nnz, n, m)
    if (n + m) * (n + m - 1) // 2 <= limit:
        return None  # not even a dense factor would be dear
    pattern = sp.block_array([[sp.csr_array((n, n)), A.T], [A, None]], format="csr")
    if not predict_fill(pattern, limit).capped:
        return None  # cheap, or the prediction gave up: the measured rule decides
    return (
        f"its KKT factor would have more than {limit} nonzeros "
        f"(minimum-degree elimination of its pattern), making an iteration of the "
        f"embedding cost more than {MAX_WORK_RATIO:g} of PDHG's"
    )


class EmbeddingThenPDHG(Algorithm):
    """The embedding, then the embedding and PDHG side by side when the embedding has not
    settled within its budget and is not heading for a certificate (module docstring)."""

    name = "hsde+pdhg"

    def _solve(self, backend: Backend, t0: float, reason: str) -> SolveResult:
        opts = self.opts
        dear = dear_factor(self.program)
        if dear is not None:
            method = PDHG(self.program, opts, self.warm_start)
            result = run_to_end(method.steps(backend, t0, f"{reason}; {dear}: PDHG alone"))
            return self._finish(result, t0, 0, 0, result.iterations, "PDHG")
        budget = min(opts.max_iters, EMBEDDING_BUDGET)
        method = EmbeddingADMM(self.program, opts, self.warm_start)
        method.log_tag = "hsde"
        embedding = method.steps(
            backend,
            t0,
            f"{reason}; the embedding, then PDHG beside it after {budget} iterations unless "
            f"u_tau is 0 (at once, and alone, when an iteration costs more than "
            f"{MAX_WORK_RATIO:g} of PDHG's)",
        )
        progress = None
        while progress is None or not _hands_over(progress, budget):
            try:
                progress = next(embedding)
            except StopIteration as end:
                return end.value
        handed = progress.iterations
        if handed >= opts.max_iters:
            return run_to_end(embedding)
        t1 = time.perf_counter()
        if t1 - t0 >= opts.time_limit:
            return stop_run(embedding, "time_limit")
        rest = replace(
            opts, max_iters=opts.max_iters - handed, time_limit=opts.time_limit - (t1 - t0)
        )
        start, origin = _pdhg_start(progress.best, self.warm_start)
        turns = progress.cost <= MAX_WORK_RATIO and backend.name == "numpy"
        method = PDHG(self.program, rest, start)
        method.log_tag = "pdhg"
        pdhg = method.steps(
            backend,
            t1,
            f"beside the embedding after its {handed} iterations, from {origin}; the run "
            "that has done less work goes next"
            if turns
            else f"after {handed} iterations of the embedding, from {origin}",
        )
        race = _Race(embedding, progress, pdhg, opts.max_iters, turns)
        result = race.run()
        return self._finish(
            result, t0, handed, race.iterations_of(0), race.iterations_of(1), race.winner
        )

    def _finish(
        self,
        result: SolveResult,
        t0: float,
        handed: int,
        embedding: int,
        pdhg: int,
        winner: str,
    ) -> SolveResult:
        """``result`` with the iterations of both runs, the solve time from t0 and the
        hybrid's statistics."""
        result.algorithm = self.name
        result.iterations = embedding + pdhg
        result.solve_time = time.perf_counter() - t0
        result.info["handover_iteration"] = handed
        result.info["embedding_iterations"] = embedding
        result.info["pdhg_iterations"] = pdhg
        if self.opts.verbose:
            print(
                f"hsde+pdhg: {result.status} from the {winner}'s run; iterations: "
                f"{embedding} of the embedding, {pdhg} of PDHG"
            )
        return result


def _hands_over(progress: Progress, budget: int) -> bool:
    """Whether the embedding's check ``progress`` ends its run alone: past its budget (0
    when an iteration costs more than ``MAX_WORK_RATIO`` of PDHG's) with u_tau above
    ``TAU_FEASIBLE``."""
    if progress.cost > MAX_WORK_RATIO:
        budget = 0
    return progress.iterations >= budget and progress.tau > TAU_FEASIBLE


class _Race:
    """The embedding (from its check at the hand-over) and PDHG, advanced one check at a
    time, the run that has done less work first: work is iterations times their cost in
    iterations of PDHG (``Progress.cost``), the embedding's counted from its start, so
    PDHG runs alone until it has done the embedding's work so far and the two keep level
    after that. Neither needs more than about twice its own work alone. Without
    ``turns`` (an embedding whose iterations are dear, or a backend other than NumPy,
    where ``work_ratio`` was not measured) the embedding's run ends at the hand-over and
    PDHG runs alone.

    The first run to settle wins and the other is dropped. A run stopped by
    ``time_limit`` stops the other; one stopped by its own ``max_iters`` leaves the other
    to go on; when the two runs' iterations together reach ``max_iters`` (checked after
    each turn: they may pass it by one check's iterations) both are stopped. When both
    stopped unsettled, the better point is returned (``_rank``), under the limit that
    stopped the last one."""

    def __init__(
        self, embedding: Steps, handed: Progress, pdhg: Steps, max_iters: int, turns: bool
    ) -> None:
        self._runs = [embedding, pdhg]
        self._progress: list[Progress | None] = [handed, None]
        self._results: list[SolveResult | None] = [None, None]
        self._max_iters = max_iters
        self._limit: str | None = None
        self.winner = ""
        if not turns:
            self._stop(0, "embedding_budget")

    @property
    def iterations(self) -> int:
        """The iterations of both runs."""
        return self.iterations_of(0) + self.iterations_of(1)

    @property
    def setup_time(self) -> float:
        """Both runs' setup seconds."""
        total = 0.0
        for result, progress in zip(self._results, self._progress, strict=True):
            if result is not None:
                total += result.setup_time
            elif progress is not None:
                total += progress.setup_time
        return total

    def iterations_of(self, i: int) -> int:
        """The iterations of the embedding (0) or PDHG (1)."""
        result, progress = self._results[i], self._progress[i]
        if result is not None:
            return result.iterations
        return 0 if progress is None else progress.iterations

    def run(self) -> SolveResult:
        """The returned run's result (its setup time the two runs')."""
        while True:
            alive = [i for i in (0, 1) if self._results[i] is None]
            if not alive:
                return self._better()
            i = alive[0] if len(alive) == 1 else self._turn()
            self._advance(i)
            settled = self._settled()
            if settled is not None:
                return settled
            if self.iterations >= self._max_iters:
                limit = "max_iters"
            elif self._limit == "time_limit":
                limit = "time_limit"
            else:
                continue
            for j in (0, 1):
                if self._results[j] is None:
                    self._stop(j, limit)
            settled = self._settled()
            if settled is not None:
                return settled

    def _turn(self) -> int:
        """0 (the embedding) or 1 (PDHG): the run that has done less work."""
        return 0 if self._work(0) <= self._work(1) else 1

    def _work(self, i: int) -> float:
        progress = self._progress[i]
        return 0.0 if progress is None else progress.iterations * progress.cost

    def _advance(self, i: int) -> None:
        try:
            self._progress[i] = next(self._runs[i])
        except StopIteration as end:
            self._end(i, end.value)

    def _stop(self, i: int, limit: str) -> None:
        self._end(i, stop_run(self._runs[i], limit))

    def _end(self, i: int, result: SolveResult) -> None:
        self._results[i] = result
        self._limit = result.info.get("limit")

    def _settled(self) -> SolveResult | None:
        """A run that settled (the other dropped), or None."""
        for i in (0, 1):
            result = self._results[i]
            if result is not None and result.status in _SETTLED:
                if self._results[1 - i] is None:
                    self._runs[1 - i].close()
                self.winner = _NAMES[i]
                result.setup_time = self.setup_time
                return result
        return None

    def _better(self) -> SolveResult:
        """Both runs stopped unsettled: the better by ``_rank``, PDHG's on a tie, named by
        the limit that stopped the last run."""
        first, second = self._results
        better = min((second, first), key=_rank)
        self.winner = _NAMES[0 if better is first else 1]
        better.setup_time = self.setup_time
        better.info["limit"] = self._limit
        return better


def _rank(result: SolveResult) -> tuple[int, float]:
    """An unsettled run's place: optimal_inaccurate, then an inaccurate certificate, then
    user_limit; within each, the smaller normalized KKT error."""
    order = {s.OPTIMAL_INACCURATE: 0, s.INFEASIBLE_INACCURATE: 1, s.UNBOUNDED_INACCURATE: 1}
    error = math.inf if result.kkt is None else result.kkt.normalized
    return order.get(result.status, 2), error if math.isfinite(error) else math.inf


def _pdhg_start(best: BestIterate, warm_start: dict | None) -> tuple[dict | None, str]:
    """PDHG's warm start and its origin in words: the embedding's best iterate (x, z, y)
    when its duality gap is within ``WARM_GAP`` of its objective, else ``warm_start``
    (the caller's, None for a cold start)."""
    kkt, point = best.kkt, best.point
    if kkt is not None and point is not None:
        scale = max(abs(kkt.primal_objective), abs(kkt.dual_objective))
        if kkt.gap <= WARM_GAP * scale:
            x, z, y = (1.0 * v for v in point)  # the embedding goes on writing its own
            return {"x": x, "z": z, "y": y}, "the embedding's best iterate"
    origin = "the caller's warm start" if warm_start is not None else "a cold start"
    return warm_start, origin
