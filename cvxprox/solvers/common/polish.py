"""Solution polishing for polyhedral programs (OSQP's polish, in the IR's conventions).

For minimize 1/2 x'Px + c'x subject to A_eq x - b_eq = 0 and A_in x - b_in >= 0, a
first-order iterate (x, z, y) with y in the polar cone (y_in <= 0) suggests the active
set: every equality row, and every inequality row whose slack z_i is smaller than its
multiplier |y_i|. On that set the optimality conditions are linear,

    [P + delta I   A_act'  ] [x ]   [-c    ]
    [A_act       -delta I  ] [nu] = [b_act ],

solved with a regularized LDL' factorization by refinement steps against the
unregularized system from the iterate, on the equilibrated data. The polished point is
x, y_act = nu, y = 0 elsewhere (projected onto the polar cone), and the caller keeps it
only if its KKT error is acceptable; if not, the signs of nu and the rows x violates
give the next active set (a primal-dual active-set step), for a few solves. With P = 0
the system is singular unless exactly n rows are active (a basis), and an LP is
polished only then (``PolishSchedule.determined``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import qdldl
import scipy.sparse as sp

from cvxprox.backend.jit.fill import predict_fill
from cvxprox.functions.cones import ZeroCone
from cvxprox.ir.program import AssembledProgram
from cvxprox.solvers.common.algorithm import FACTORIZATION_NNZ_LIMIT
from cvxprox.solvers.common.kkt_checks import KKTChecker
from cvxprox.solvers.common.scaling import RuizScaling
from cvxprox.solvers.common.termination import KKTError

_DELTA = 1e-6
_REFINE_STEPS = 5
#: The most reduced systems an attempt solves (``PolishSchedule.attempt``).
ACTIVE_SET_ROUNDS = 4
#: The largest share of a run's time that the attempts so far may have taken for another
#: to be due (``PolishSchedule``).
POLISH_SHARE = 0.25
#: Seconds of attempts that the share always allows: a small program's attempts (about a
#: millisecond each) are never skipped, so that its iterates do not depend on the speed
#: of the machine.
POLISH_ALLOWANCE = 0.1
#: Seconds a flop of the factorization takes: qdldl on Netlib's KKT matrices on a 2-core
#: machine, 0.4 to 0.55 ns (``cvxprox.backend.jit.fill``). It prices an attempt before
#: it is made.
FACTOR_FLOP_SECONDS = 0.5e-9


def is_polishable(program: AssembledProgram) -> bool:
    """Whether every term is a zero or nonnegative cone (a QP or LP) small enough to factor."""
    nnz = program.A.nnz + (0 if program.P is None else program.P.nnz)
    return program.is_polyhedral and nnz <= FACTORIZATION_NNZ_LIMIT


def active_rows(program: AssembledProgram, z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The active set (m,) bool that the unscaled slack ``z`` and dual ``y`` of an iterate
    suggest: every equality row, and every inequality row whose slack is smaller than
    its multiplier."""
    return program.equality_rows | (z < -y)


def reduced_kkt(P: sp.csc_array | None, A: sp.sparray, active: np.ndarray) -> sp.csc_array:
    """[[P, A_act'], [A_act, 0]] (n + k square, CSC) for the rows ``active`` of A."""
    n = A.shape[1]
    A_act = sp.csc_array(A[active])
    P = P if P is not None else sp.csc_array((n, n))
    if not A_act.shape[0]:
        return sp.csc_array(P)
    return sp.block_array([[P, A_act.T], [A_act, None]], format="csc")


@dataclass
class Polished:
    """A polished point (x, z, y), z and y projected onto the cone and its polar, and the
    active set that its unprojected slack A x - b and multipliers suggest next."""

    x: np.ndarray
    z: np.ndarray
    y: np.ndarray
    next_active: np.ndarray

    @property
    def point(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.x, self.z, self.y


def polish(
    program: AssembledProgram,
    scaling: RuizScaling,
    active: np.ndarray,
    start: tuple[np.ndarray, np.ndarray] | None = None,
) -> Polished | None:
    """The point polished on the rows ``active`` (``active_rows``), or None on failure.

    The reduced system is solved on the equilibrated data (``scaling``), where it is far
    better conditioned, and the result is returned unscaled. The regularized factor's
    refinement steps are proximal-point steps on the reduced system: from ``start``
    (the iterate's x and y, unscaled) they converge to the solution nearest to it. Where
    more than n rows are active (a degenerate vertex) the multipliers are not unique,
    and those nearest the iterate's keep its signs, where the solve from zero gives some
    the wrong sign (Maros-Meszaros' QFORPLAN and QGFRDXPN: 429 rows active on 418
    variables, 1244 on 1066). The residuals of the refinement are computed in extended
    precision (``np.longdouble``: 64 bits of mantissa on x86, a software quadruple on
    aarch64 Linux, float64 where the platform has nothing longer; six products with the
    reduced matrix, against a factorization), so that the point is exact to its own
    rounding, not to the residual's: HUESTIS' exact gap 1.6e-5 against 6.8e-3 with
    float64 residuals (its terms 7e11, the tolerance 1e-3).
    """
    n, m = program.n, program.m
    K = reduced_kkt(scaling.P, scaling.A, active)
    k = K.shape[0] - n
    regularization = sp.diags_array(np.concatenate([np.full(n, _DELTA), np.full(k, -_DELTA)]))
    rhs = np.concatenate([-scaling.c, scaling.b[active]])
    sol = np.zeros(n + k, dtype=np.longdouble)
    if start is not None:
        sol[:n] = scaling.scale_x(start[0])
        sol[n:] = scaling.scale_y(start[1])[active]
    K_long, rhs_long = K.astype(np.longdouble), rhs.astype(np.longdouble)
    try:
        factor = qdldl.Solver(sp.csc_array(K + regularization))
        for _ in range(_REFINE_STEPS + 1):
            sol = sol + factor.solve((rhs_long - K_long @ sol).astype(np.float64))
    except (ValueError, RuntimeError):
        return None
    if not np.all(np.isfinite(sol)):
        return None
    x = scaling.unscale_x(sol[:n].astype(np.float64))
    y_scaled = np.zeros(m)
    y_scaled[active] = sol[n:]
    y = scaling.unscale_y(y_scaled)
    slack = program.A @ x - program.b
    return Polished(
        x,
        program.cone.project(slack),
        program.cone.project_polar(y),
        active_rows(program, slack, y),
    )


class PolishSchedule:
    """When to try polishing: at checks on a doubling schedule, and once at a limit.

    A polished point is accepted only if it satisfies the termination criteria, so a
    wrong active set costs one factorization and nothing else. Each attempt is priced
    before it is made (``priced_within``: the first by the predicted flops of its
    factorization, later ones by the time of the last solve) and skipped when dearer than
    the share and the deadline allow. No attempt starts when
    the previous one took longer than the time left before ``deadline`` (a
    ``time.perf_counter()`` value; the run's time limit), so that polishing a large
    problem never carries a run far past its ``time_limit``, nor while the attempts so
    far took more than ``POLISH_SHARE`` of the time since the schedule began and more
    than ``POLISH_ALLOWANCE`` seconds (``within_share``), so that a program whose
    factorization fills in (Netlib's QAP12: 2 s an attempt against 0.14 ms a PDHG
    iteration) spends its time iterating. The run began at ``started`` (a
    ``time.perf_counter()`` value; by default now).
    """

    def __init__(
        self,
        program: AssembledProgram,
        checker: KKTChecker,
        first: int = 100,
        deadline: float = math.inf,
        started: float | None = None,
    ) -> None:
        self.enabled = is_polishable(program)
        self.program = program
        self._equalities = int(np.count_nonzero(program.equality_rows))
        self._inequalities = [t.rows for t in program.terms if not isinstance(t.function, ZeroCone)]
        self.checker = checker
        self.next = first
        self.deadline = deadline
        self.attempts = 0
        self.succeeded = False
        self._last_seconds = 0.0
        self._attempt_seconds: float | None = None
        self._spent = 0.0
        self._started = time.perf_counter() if started is None else started

    def due(self, iteration: int) -> bool:
        return self.enabled and iteration >= self.next and self.affordable() and self.within_share()

    def within_share(self) -> bool:
        """Whether the attempts so far took at most their share (``_share``)."""
        return self._spent <= self._share(time.perf_counter())

    def _share(self, now: float) -> float:
        """The seconds all attempts may take at ``now``: ``POLISH_SHARE`` of the time
        since the schedule began, or ``POLISH_ALLOWANCE`` if more."""
        return max(POLISH_ALLOWANCE, POLISH_SHARE * (now - self._started))

    def priced_within(self, active: np.ndarray, now: float) -> bool:
        """Whether an attempt's first solve on the rows ``active``, priced before it is
        made (the last solve's time; before any, the flops of its factorization predicted
        by ``predict_fill``, times ``FACTOR_FLOP_SECONDS``), takes at most the share
        ``within_share`` gives all attempts and ends before the deadline (an attempt whose
        prediction gave up is made). A factor that fills in (Netlib's QAP15: 32 s) is not
        attempted at the first check of a run that needs one second."""
        budget = min(self._share(now), self.deadline - now)
        if budget <= 0:
            return False
        if self._attempt_seconds is not None:
            return self._attempt_seconds <= budget
        flops = budget / FACTOR_FLOP_SECONDS
        N = self.program.n + int(np.count_nonzero(active))
        if N**3 / 3.0 <= flops:
            return True  # not even a dense factor would overrun
        K = reduced_kkt(self.program.P, self.program.A, active)
        return not predict_fill(K, K.shape[0] ** 2, flops).capped

    def determined(self, z: Any, y: Any) -> bool:
        """Whether the reduced system on the active rows of (z, y) (``active_rows``; host
        or device arrays, counted where they are) can have one solution: always with P,
        while for an LP (P = 0) [[0, A_act'], [A_act, 0]] is singular unless A_act is
        square, so exactly n rows must be active. The regularized solve of a singular
        system gives a point far from optimal: on the 60 smallest Netlib LPs at default
        tolerances, 365 attempts at the doubling schedule's checks, 6 of them on n active
        rows, and the only one that passed among them."""
        active = self._equalities
        for rows in self._inequalities:
            active += int((z[rows] < -y[rows]).sum())
        return self._solvable(active)

    def _solvable(self, active: int) -> bool:
        """Whether a reduced system on ``active`` rows can have one solution: any with P,
        exactly n for an LP (``determined``)."""
        return self.program.has_quadratic or active == self.program.n

    def affordable(self) -> bool:
        """Whether an attempt as long as the previous one ends before the deadline."""
        return time.perf_counter() + self._last_seconds < self.deadline

    def settle(
        self,
        iteration: int,
        point: tuple[np.ndarray, np.ndarray, np.ndarray],
        kkt: KKTError,
    ) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], KKTError] | None:
        """Where a run may stop at a check: the iterate itself if it is converged, else a
        polished point when one is due and converged, else None."""
        if kkt.converged:
            return point, kkt
        if self.due(iteration):
            return self.attempt(iteration, point[1], point[2], point[0])
        return None

    def attempt(
        self, iteration: int, z: np.ndarray, y: np.ndarray, x: np.ndarray | None = None
    ) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], KKTError] | None:
        """The polished point and its KKT error if it is converged, else None (x, z and y
        may be device arrays: polishing factors on the host). An LP's attempt waits, at
        no cost, for a check whose active set is a basis (``determined``).

        An attempt is a primal-dual active-set method (Hintermueller, Ito & Kunisch
        2002) started from the iterate's active set: a point that fails the test gives
        the next set, its rows with a multiplier of the wrong sign dropped and those
        its x violates added (``Polished.next_active``), for at most
        ``ACTIVE_SET_ROUNDS`` solves, while the set changes, an LP's stays a basis
        and the time allows another solve as long as the last."""
        if not self.determined(z, y):
            return None
        self.next = 2 * max(iteration, self.next)
        start = time.perf_counter()
        z, y = self.checker.to_host(z), self.checker.to_host(y)
        active = active_rows(self.program, z, y)
        if not self.priced_within(active, start):
            self._last_seconds = time.perf_counter() - start
            self._spent += self._last_seconds
            return None
        self.attempts += 1
        iterate = None if x is None else (self.checker.to_host(x), y)
        found = None
        for _ in range(ACTIVE_SET_ROUNDS):
            begun = time.perf_counter()
            polished = polish(self.program, self.checker.scaling, active, iterate)
            self._attempt_seconds = time.perf_counter() - begun
            if polished is None:
                break
            err = self.checker.evaluate(*polished.point)
            if err.converged:
                found = (polished.point, err)
                break
            if np.array_equal(polished.next_active, active) or not self._another_round(start):
                break
            active, iterate = polished.next_active, (polished.x, polished.y)
            if not self._solvable(int(np.count_nonzero(active))):
                break
        self._last_seconds = time.perf_counter() - start
        self._spent += self._last_seconds
        self.succeeded = found is not None
        return found

    def _another_round(self, started: float) -> bool:
        """Whether a solve as long as the last one still fits the attempts' share of the
        run and ends before the deadline (the attempt began at ``started``)."""
        now = time.perf_counter()
        spent = self._spent + (now - started) + self._attempt_seconds
        return spent <= self._share(now) and now + self._attempt_seconds < self.deadline
