"""The penalty of the KKT-factored ADMMs (``ADMM``, ``EmbeddingADMM``) and its adaptation.

Row i of A x - b in K gets the penalty

    rho_i = rho e_i m_i,

* rho the scalar penalty, moved by ``ScalarRule`` (SCS 3's scale rule);
* e_i = ``EQUALITY_FACTOR`` on the rows of zero cones (equalities), 1 elsewhere;
* m_i the row multipliers, moved by ``RowMultipliers`` where the solver asks for them
  (``Penalty(rows=True)``), 1 otherwise.

Row multipliers. At every check each row's relative primal residual

    q_i = |(A x - b - z)_i| / max(|(A x)_i|, |z_i|, |b_i|, f_B)

is recorded, floored at ``PROFILE_FLOOR`` g, g the geometric mean of the check's nonzero
q_i. f_B is ``DENOMINATOR_FLOOR`` times the root mean square over the row's cone block B
of d_i = max(|(A x)_i|, |z_i|, |b_i|): a row with b_i = 0 would otherwise divide by two
numbers that vanish as the iterates converge, and its q_i would grow while the row
converges. q_i is invariant under the row and column scaling of the data. With p_i the
mean of log q_i over the checks since the last change and L the live rows, those whose
q_j rose above the floor at one of these checks at least, an update moves

    log m_i  +=  ``ROW_DAMPING`` (p_i - mean_{j in L} p_j),

averaged over every cone block whose projection is not separable (second-order, PSD,
exponential and power cones: a penalty constant on the block keeps its projection the
Euclidean one), and clipped to [-log ``ROW_RANGE``, log ``ROW_RANGE``]. A row whose
residual lags the others, each measured against its own size, gets a larger penalty,
which drives its residual down faster; the step has mean zero over the live rows, so the
balance of the primal and dual residuals stays rho's. This is the row half of Ruiz
equilibration driven by the residuals the iterations produce rather than by the matrix
norms, the idea of SCS 3.3's ``adaptive_diag_scale`` (cvxgrp/scs#401), with its damping
and range.

The floor. A row whose residual vanishes (an inactive inequality, where the projection
puts z on A x - b to round-off) has log q_i near log 0; a few such rows drag the mean
down and every other row's step up to the top of the range, at every update. On QFORPLAN
without the floor 500 of the 574 multipliers sat at the ends of the range and the
penalty changed at every chance (1389 refactorizations in 139000 iterations, not solved
in 10 s); with it, solved in 8160 iterations. A row 1e-4 ahead of the others is far
enough ahead for its step to reach the end of the range in one update anyway.

The mean. A row at the floor throughout the record has p_i = log(``PROFILE_FLOOR`` g),
nine units of log below the others: it moves down by 2.3 per update, and it says nothing
about how the other rows compare, so it is left out of the mean. Counted in it, the rows
at the floor (from a tenth to two fifths of BNL2's 5666) lowered the mean, every live
row's step rose with it, and the live rows' multipliers drifted to the top of the range
(median 20 to 150 on BNL2, 2000 to 2500 rows at 1e3) where their differences, the
information the rule is for, were clipped away. Netlib at eps 1e-4, 10 s (``python -m
compare --suite netlib --solvers NABLAPROX --eps 1e-4``, against the committed run):
87/92 (was 84; gains PILOT4 in 2.1 s, BNL2 7.0 s, STOCFOR3 9.0 s, PILOT-WE 9.8 s, loses
PEROLD, 6.3 s before) and 25/28 (gains qual, loses pang), time sgm 1.23 s (1.29),
iterations 0.86 of the committed run's in geometric mean over the cases both solve.
Maros-Meszaros (as below): 122/137 (loses QFORPLAN, whose gap of 0.3 on an objective of
7.5e9 against eps_abs 1e-3 stays there; its polishing passed before), iterations 0.99 of
before. Left out of the rows' steps as well (a held row keeps its multiplier), Netlib
86/92 with iterations 1.22 of before (SCFXM2 16 times, SCORPION 14, D6CUBE 9) and
Maros-Meszaros 121 (QGROW7 and QGROW15 stall): the inactive rows' descent helps the easy
LPs.

Measured on Maros-Meszaros (qpbenchmark's low accuracy, 10 s, ``python -m compare
--suite maros-meszaros --solvers NABLAPROX --timeout 10``), ``EmbeddingADMM``: with the
multipliers SCS 3.3 solves QBORE3D in 1175 iterations, without them (its
``adaptive_diag_scale=0``) not in 100000, nor does either ADMM here without them. The
suite: 105 of 137 without the multipliers, 123 with them (``cvxprox.solvers.select``).
The damping and the range, with the floor, on 20 problems (QETAMACR, QFORPLAN, QSCFXM2,
QGROW22, QSCFXM3, Q25FV47, YAO, QSTAIR, QGROW15, QSEBA, QSIERRA, QBORE3D, LISWET9,
QGFRDXPN, QCAPRI, CONT-101, POWELL20, QSCFXM1, QSHIP08L, STADAT3), solved in 10 s:
damping 0.25 and range 1e3, 18; 0.5 and 1e2, 16 (on the 15 both solved, the
first took 0.76 of the second's iterations in geometric mean). Variants, 16 each: at
0.25 and 1e3, the floor replaced by a clip of log q_i to within log(``ROW_RANGE``) /
``ROW_DAMPING`` of the check's mean, or a change only when a multiplier would move by
sqrt(10) instead of ``UPDATE_RATIO``; at 0.5 and 1e2, the zero-cone rows left at
m_i = 1. The floor at 1e-2, 1e-3 or 1e-4 of g, at 0.5 and 1e2, on QFORPLAN, QGROW22,
Q25FV47, QETAMACR, QSTAIR, CONT-101 and CVXQP3_L: 4, 4 and 5 solved. (Without the
floor, 0.5 and 1e2 were the best pair, 119 of 137: the wider range let the thrashing
reach penalties where the KKT factor loses accuracy.)

Updates. Once ``ADAPT_EVERY`` iterations have passed since the last change, the scalar
factor f (``ScalarRule``) and the multipliers' step are formed; the penalty changes when f
lies outside [1 / ``UPDATE_RATIO``, ``UPDATE_RATIO``] or a multiplier would move by at
least that ratio. A change refactors the KKT matrix (same pattern) and restarts the
solver's fixed-point iteration, so rare changes are cheap and frequent ones thrash.
"""

from __future__ import annotations

import math

import numpy as np

from cvxprox.functions.cones import NonnegCone, ZeroCone
from cvxprox.ir.program import AssembledProgram
from cvxprox.solvers.common.termination import KKTError

#: e_i on the rows of zero cones.
EQUALITY_FACTOR = 1e3
#: The range of the scalar penalty.
RHO_MIN, RHO_MAX = 1e-6, 1e6
#: Least change of a factor worth a refactorization.
UPDATE_RATIO = 2.0
#: Least number of iterations between two changes.
ADAPT_EVERY = 100
#: The row multipliers' damping, range, denominator floor and profile floor (module
#: docstring).
ROW_DAMPING = 0.25
ROW_RANGE = 1e3
DENOMINATOR_FLOOR = 1e-3
PROFILE_FLOOR = 1e-4
_TINY = 1e-280


class ScalarRule:
    """SCS 3's scale rule on the residuals of the termination test.

    Each check records log(p / d), p and d the primal and dual residuals relative to
    their tolerances (``KKTError``: the worst row's |r_i| / tol_i, the worst column's
    |d_j| / tol_j), so that the penalty balances what termination asks of each side row by
    row. A larger penalty drives p down faster, so the factor is f = sqrt(exp(mean of the
    recorded logs)), the square root of the geometric mean of p / d over the checks since
    the last change.

    SCS measures p and d relative to the data instead, ||A x - b - z|| / max(||A x||,
    ||z||, ||b||) and ||P x + A'y + c|| / max(||P x||, ||A'y||, ||c||). With the row
    multipliers on Maros-Meszaros (10 s) that solved 113 problems against 114 here, not
    the same ones (it gains QSTAIR, YAO, POWELL20, HUESTIS and loses QGROW7, QFFFFF80,
    CONT-050, CONT-100, STADAT3).
    """

    def __init__(self) -> None:
        self._sum_log = 0.0
        self._count = 0

    def observe(self, err: KKTError) -> None:
        """Record log(p / d) of one check's KKT error."""
        prim = err.primal / max(err.primal_tol, _TINY)
        dual = err.dual / max(err.dual_tol, _TINY)
        self._sum_log += math.log(max(prim, _TINY)) - math.log(max(dual, _TINY))
        self._count += 1

    def factor(self) -> float:
        """f (1 before any check)."""
        if self._count == 0:
            return 1.0
        return math.sqrt(math.exp(self._sum_log / self._count))

    def reset(self) -> None:
        """Forget the checks recorded so far."""
        self._sum_log, self._count = 0.0, 0


class RowMultipliers:
    """The row multipliers' record and step (module docstring) for one program."""

    def __init__(self, program: AssembledProgram) -> None:
        m = program.m
        self._blocks = [(t.rows.start, t.rows.stop) for t in program.terms if t.size]
        self._joint = [
            (t.rows.start, t.rows.stop)
            for t in program.terms
            if t.size and not isinstance(t.function, (ZeroCone, NonnegCone))
        ]
        self._sum_log = np.zeros(m)
        self._live = np.zeros(m, dtype=bool)
        self._count = 0

    def observe(self, Ax: np.ndarray, z: np.ndarray, b: np.ndarray) -> None:
        """Record log q_i of one check, from A x, z and b (m,) on the same side (scaled
        or not)."""
        denominator = np.maximum(np.maximum(np.abs(Ax), np.abs(z)), np.abs(b))
        for start, stop in self._blocks:
            block = denominator[start:stop]
            floor = DENOMINATOR_FLOOR * math.sqrt(float(block @ block) / block.size)
            np.maximum(block, floor, out=block)
        q = np.abs(Ax - b - z) / np.maximum(denominator, _TINY)
        positive = q[q > 0]
        center = math.exp(float(np.mean(np.log(positive)))) if positive.size else 1.0
        floor = PROFILE_FLOOR * center
        self._live |= q > floor
        self._sum_log += np.log(np.maximum(q, floor))
        self._count += 1

    def step(self) -> np.ndarray | None:
        """The step of log m (m,), or None before any check."""
        if self._count == 0:
            return None
        live = self._live.copy()
        for start, stop in self._joint:
            live[start:stop] = live[start:stop].any()
        if not live.any():
            return np.zeros_like(self._sum_log)
        profile = self._sum_log / self._count
        step = ROW_DAMPING * (profile - profile[live].mean())
        for start, stop in self._joint:
            step[start:stop] = step[start:stop].mean()
        return step

    def reset(self) -> None:
        """Forget the checks recorded so far."""
        self._sum_log[:] = 0.0
        self._live[:] = False
        self._count = 0


class Penalty:
    """rho_i = rho e_i m_i of one solve (module docstring).

    Parameters
    ----------
    program : AssembledProgram
    rho : float
        The starting scalar penalty.
    rows : bool
        Adapt the row multipliers (else they stay 1).
    multipliers : ndarray (m,), optional
        Starting multipliers (a warm start's).

    Attributes
    ----------
    rho : float
        The current scalar penalty.
    multipliers : ndarray (m,)
        The current m.
    changes : int
        How many times the penalty changed.
    """

    def __init__(
        self,
        program: AssembledProgram,
        rho: float,
        rows: bool = False,
        multipliers: np.ndarray | None = None,
    ) -> None:
        self._equality = np.where(program.equality_rows, EQUALITY_FACTOR, 1.0)
        self.rho = float(rho)
        self._log_m = np.zeros(program.m)
        if multipliers is not None and np.shape(multipliers) == (program.m,):
            self._log_m = np.log(np.clip(multipliers, 1.0 / ROW_RANGE, ROW_RANGE))
        self._scalar = ScalarRule()
        self._rows = RowMultipliers(program) if rows else None
        self._last = 0
        self.changes = 0

    @property
    def multipliers(self) -> np.ndarray:
        return np.exp(self._log_m)

    @property
    def vector(self) -> np.ndarray:
        """rho_i (m,)."""
        return self.rho * self._equality * np.exp(self._log_m)

    @property
    def adapts_rows(self) -> bool:
        """Whether the row multipliers move (``observe`` then wants A x, z and b)."""
        return self._rows is not None

    def observe(self, err: KKTError | None, rows: tuple[np.ndarray, ...] | None = None) -> None:
        """Record one check: its KKT error (None: the scalar records nothing) and, when
        the multipliers move, (A x, z, b) (m,) on the host, scaled or not."""
        if err is not None:
            self._scalar.observe(err)
        if self._rows is not None and rows is not None:
            self._rows.observe(*rows)

    def update(self, it: int) -> bool:
        """At iteration ``it``: change the penalty if due (module docstring); whether it
        changed (the caller then refactors with ``vector``)."""
        if it - self._last < ADAPT_EVERY:
            return False
        factor = self._scalar.factor()
        rho = self.rho
        if not 1.0 / UPDATE_RATIO <= factor <= UPDATE_RATIO:
            rho = float(np.clip(self.rho * factor, RHO_MIN, RHO_MAX))
        log_m = self._log_m
        step = None if self._rows is None else self._rows.step()
        if step is not None:
            bound = math.log(ROW_RANGE)
            log_m = np.clip(self._log_m + step, -bound, bound)
        moved = np.max(np.abs(log_m - self._log_m), initial=0.0) >= math.log(UPDATE_RATIO)
        if rho == self.rho and not moved:
            return False
        self.rho, self._log_m = rho, log_m
        self._scalar.reset()
        if self._rows is not None:
            self._rows.reset()
        self._last = it
        self.changes += 1
        return True
