"""Restarted primal-dual hybrid gradient (PDHG) for assembled cone programs and Programs.

Both program kinds are  minimize_x c'x + G(x) + h(x) + sum_j f_j(K_j x - b_j),  with G taken
by its prox, h by its gradient and each f_j through its conjugate, i.e. the saddle-point
problem

    min_x max_y  c'x + G(x) + h(x) + sum_j y_j'(K_j x - b_j) - f_j*(y_j).

A cone program (``AssembledProgram``: minimize c'x + 1/2 x'Px subject to Ax - b in K, scaled by
``cvxprox.solvers.common.scaling``) has one f = the indicator of K, whose conjugate prox is
the polar projection proj_{K°} (Moreau: prox_{sigma f*}(v) = v - proj_K(v) = proj_{K°}(v)),
G(x) = 1/2 x'diag(p)x when P = diag(p) is diagonal (as CVXPY makes it for sums of squares)
and h(x) = 1/2 x'Px otherwise. A Program (``cvxprox.ir.program``) brings its terms:
G is one term whose operator is the identity or a permutation of x (the first nonsmooth
one, else the first smooth one; ``PermutedTerm``), or with variable bounds l <= x <= u
the indicator of the box (prox: the projection; every term then goes to h or f_j),
h the other smooth terms (SumSquares,
Huber, Logistic; grad h(x) = sum_{i in H} A_i' grad f_i(A_i x - b_i), Lipschitz with
L_h <= sum_i L_i ||A_i||^2) and f_j all other terms, with per-term dual steps
sigma_j = sigma / ||K_j||^2 (diagonal preconditioning by term: the blocks K_j / ||K_j||
have norm <= 1, so the stacked scaled operator has ||K~||^2 <= J, the number of blocks).

On a cone program the variable bounds l <= x <= u (the assembled view's ``bound_rows``)
are taken into G as the indicator of the box (PDLP, cuPDLPx): the x-step below
ends with the projection onto [l, u] (with a diagonal P, G's prox is the projection of
its unconstrained minimizer, both being separable), and their duals are the bound
multipliers read from the reduced cost (``_Bounds``).

One step T: (x, y) -> (x+, y+) (Condat 2013, Vu 2013):

    x+   = prox_{tau G}(x - tau (c + grad h(x) + K'y))
    y_j+ = prox_{sigma_j f_j*}(v_j),    v_j = y_j + sigma_j (K_j (2 x+ - x) - b_j),

and z_j = (v_j - y_j+) / sigma_j = prox_{f_j / sigma_j}(v_j / sigma_j) by Moreau's identity,
so y_j+ lies in df_j(z_j). Fixed points of T are the KKT points. In the metric

    M = [[I/tau, -K'], [-K, Sigma^{-1}]],

T is a forward-backward step, alpha-averaged when 1/tau - sigma ||K~||^2 = beta L_h with
beta > 1/2: alpha = 2 beta / (4 beta - 1), and alpha = 1/2 when L_h = 0. Step sizes are
tau = eta / omega, sigma = eta omega with omega the primal weight and eta the largest
value with 1/tau - sigma ||K~||^2 >= beta L_h, shrunk by a safety factor (||K~|| = ||A||_2
by power iteration on a cone program's scaled data, sqrt(J) on a Program).

Iteration in epochs (one scheme, ``Scheme``, with a default per program kind chosen by
measurement). In epoch n, from the anchor z^{n,0},

    z^{k+1} = w_k ((1 + gamma) T(z^k) - gamma z^k) + (1 - w_k) z^{n,0},

with gamma = ``relaxation`` (1/alpha - 1), so that (1 + gamma) T - gamma I stays
nonexpansive, and w_k = (k+1)/(k+2) (reflected Halpern, Lu & Yang 2024; cuPDLPx 2025) or
w_k = 1 (over-relaxed Krasnosel'skii-Mann). With ``average`` the epoch also keeps the
average of its outputs T(z^k). On every check, k iterations into the epoch, the restart
candidates are T(z^k) and (with ``average``) T(average), each with its fixed-point residual
r = ||q - T(q)||_M at its point q; the one with the smaller r is kept, and the next epoch
starts from it when

    r <= sufficient r_0,   or   r <= necessary r_0 and r rose since the last check,   or
    k >= artificial (all iterations so far),

(r_0 the residual at the anchor). At a restart the primal weight follows PDLP's smoothed
rule log omega <- theta log(|dy~| / |dx|) + (1 - theta) log omega (theta = ``smoothing``:
0.8 on cone programs, PDLP's 0.5 on Programs, 0.9 on 2-D TV in a box,
``TV_BOX_SCHEME``), kept above 0.3 beta L_h / ||K~|| when L_h > 0
(``_primal_weight_floor``), with (dx, dy~) (dy~_j = ||K_j|| dy_j) read from the restart
candidate T(q) (``weight_from_step``):

- on cone programs, the step T(q) - q that made it. Without L_h its M-norm is
  omega |dx|^2 / eta + |dy|^2 / (eta omega) - 2 dy'K dx, whose two diagonal parts are
  balanced, and their sum least, at omega = |dy| / |dx|: the weight that would have made
  the step's primal and dual parts count alike in the residual the restarts test;
- on Programs, its move T(q) - anchor, PDLP's rule: the weight that balances the
  distances travelled.

Against the move from the anchor on cone programs (PDHG forced; iterations, which
restarts and polishing attempts alone decide): Netlib at eps 1e-4, 20 s, all 120 LPs, 81/92
feasible and 20/28 infeasible solved against 79/92 and 20/28, 0.968 times the
iterations in geometric mean over the 98 both solve (45 fewer, 34 more; BANDM 12160
against 32060, MODSZK1 57740 against 75080, WOODW 6650 against 11700; QAP15 3100
against 2020, FINNIS 26370 against 11740), the median iteration ratio to OR-Tools PDLP
0.63 against 0.76 over the 35 cases where both pass the suite's check and 1.10 against
1.16 over the 88 (86) where PDLP reports `optimal`; the energy LP 8x144 16080 against
17340; the first 60 Maros-Meszaros QPs (eps_abs 1e-3, eps_rel 0, 10 s) 51 solved either
way, 0.929 times the iterations (13 fewer, 9 more). Points keep K x, K'y and the smooth
terms' products, which are linear in the point, so a step costs one product with each
operator and its adjoint.

Measured defaults (iterations, max_iters 20000: the 15 smallest Netlib LPs at eps 1e-4;
the six models of ``tests/test_fista_ladmm.py`` at 1e-7 plus the structured suite's
tv_inpainting 48, deconvolution 1500 and tv_denoising 64 at 1e-4): cone programs run
reflected Halpern with full reflection and restarts at (0.2, 0.8, 0.36) (cuPDLPx's
values), Programs KM with relaxation 0.9 and the average, restarts at
(0.7, 0.9, 0.1):

    scheme                                    Netlib     structured
    Halpern (0.2, 0.8, 0.36)                  141470     10340
    Halpern + average (0.2, 0.8, 0.36)        141470
    Halpern + average (0.7, 0.9, 0.1)                     6390
    KM 0.9 + average (0.7, 0.9, 0.1)          147400      6390

On cone programs the alternatives of cuPDLPx were measured against these defaults
(geometric mean of the PDHG iteration ratio to OR-Tools PDLP over the 17 of 20 small
Netlib LPs that every variant and PDLP solve at eps 1e-4; 1.47 with the defaults):
cuPDLPx's PID primal weight (k_p = 0.99, k_i = 0.01, integral decay 0.3) 1.60, step
0.998/||A|| 1.47 with two more cases failing the check, necessary reduction 0.5 1.47,
initial weight (||c||+1)/(||b||+1) (what cuPDLPx's bound and objective rescaling amounts
to: a uniform scaling of x and y is a change of the primal weight) 1.49, smoothing 0.2
1.58 and 0.8 1.41 (10 of 20 cases better, 10 worse; 0.8 is the default by the
measurements below), Ruiz x10 instead of x15 1.50. The others were not kept. The weight
can move by a factor 77 at one restart (STANDMPS, 33.8 to 2610 at iteration 1790); a cap
on that move, a factor 10 or 3 per restart, on all of Netlib at eps 1e-4 (``python -m
compare --suite netlib --solvers NABLAPROX --eps 1e-4 --nablaprox-option
algorithm=pdhg``): iterations 1.07 and 1.25 times (geometric mean over the cases both
solve), the median ratio to PDLP over the cases both pass 0.95 and 0.97 against 0.76;
not kept.

The primal weight (read from the move from the anchor, ``weight_from_step`` False) and the
step rule were measured on the energy LP 8x144 at eps 1e-4
(``compare.suites.energy``; OR-Tools PDLP takes 6208 iterations) and on the first 40
feasible and 28 infeasible Netlib LPs at eps 1e-4, 10 s (PDHG forced; 34/40 and 18/28 solved
with smoothing 0.5, median PDHG iteration ratio to PDLP 1.42 over the 34 cases PDLP calls
optimal, 0.82 over the 17 whose PDLP point passes the per-row check). With smoothing 0.5 the
energy LP takes 31380 iterations: the weight falls to ~3e-4, climbs to ~5 by iteration 4800,
when the primal residual is met and the dual one stays near 2 for 7000 iterations, then
falls slowly to ~4e-5, where the run converges. Neither a bound nor a push by the residual
balance (rho_p, rho_d: the residuals over their tolerances at the restart point) helps: no
fall of the weight while rho_d > 10 rho_p and no rise while rho_p > 10 rho_d froze it (not
converged at 80450 iterations); the opposite bound (no rise while rho_d > 10 rho_p, no fall
in the other case) 62730, and that bound with the weight at least halved (doubled) 56010.
PDLP's adaptive step (eta accepted while eta <= (omega ||dx||^2 + ||dy||^2 / omega) / (2
|dy'A dx|), i.e. while the move keeps ||.||_M positive, next eta = min((1 - (n+1)^-0.3)
limit, (1 + (n+1)^-0.6) eta), the weight changing sigma and tau at fixed eta) makes the
reflected Halpern iterates oscillate (not converged at 90100); without the reflection (gamma
= 0) 52500 without converging, and on Netlib 30/40 and 12/28 solved, median ratio to PDLP
2.86 (not counting the rejected steps), all with smoothing 0.5. None of these was kept. The
smoothing theta of the weight update, on the energy LP: 0.3 76670, 0.5 31380, 0.6 22460, 0.7
22570, 0.8 19450, 0.9 26060, 1 31810; 0.8 against 0.5 on the Netlib cases: the same solved
(two more within 10 s on a less loaded machine, at 106300 and 111540 iterations), iterations
0.99 times (geometric mean over the 43 cases both solve, 23 fewer and 18 more), median ratio
to PDLP over the 34 feasible cases both solve 1.417 against 1.418; on the first 25
Maros-Meszaros QPs (eps 1e-3, 10 s, PDHG forced) 24 solved against 21 (HS268, S268 in 120450
iterations where 0.5 reaches the time limit after 250000; QSHARE2B), iterations 1.08 times
over the 21 both solve (4 fewer, 6 more). Cone programs take 0.8. PDLP's 6208 iterations on
the energy LP are counted under its own test (l2 norms relative to ||b||, ||c||, after
glop's presolve); its point fails the benchmark's check (worst relative constraint violation
1.3e-4 > 1e-4).

On the structured set the Halpern variant with frequent restarts ties in total but
takes 1.4-2.5x the iterations on five of the six test models (and 4x fewer on TV
inpainting); the KM scheme is kept there. (Measured with the inf-norm termination test;
with the per-entry test of ``cvxprox.solvers.common.termination`` the defaults take 138940
and 6390, as the two methods they replace did.)

The restart test runs every ``check_every`` iterations. Termination is tested on each
candidate at the larger of two spacings (``check_spacing``): floor(log2 ratio) periods
after a test whose worst ratio of a residual to its tolerance was 4 or more (at most 4),
and sqrt(2 ``_CHECK_COST`` k) iterations after a test at iteration k, which balances what
the tests cost against the iterations run past convergence. A test costs as much as eight
step-by-step iterations on Netlib's AGG (0.39 ms against 0.05 ms) and 14 on the energy LP
8x144 (2.4 ms against 0.17 ms; 30 of the compiled loop's, ``_ConeProblem.advance``);
``_CHECK_COST`` is the smaller, a constant so that the iterates do not depend on the
machine's speed (measured on NumPy LPs; structured programs and the GPU backends take it
as it is). Against tests every period while the ratio is below 4 (``python -m compare
--suite netlib --solvers NABLAPROX``, default tolerances, 10 s, one run each): 77/92
feasible instead of 75/92 (AGG and MAROS finish within the limit, the tests having taken
more than a quarter of their time), 24/28 infeasible as before; the cases PDHG finishes
take about 5% more iterations (the test comes later) and 0.94 of the time in geometric
mean. The energy LP at default tolerances with ``auto`` (the embedding, then PDHG;
``python -m compare --suite energy``): 8x144 the same 15720 iterations in 3.57 s against
3.88 s, 16x768 62930 iterations against 48710 (169 s against 162 s; run side by side, 161
s with 124 tests against 164 s with 1142): more than the later tests account for (under
1000 iterations at that length), so the run took another path, feasibility polishing being
tried only at a test. The tests are then: on a cone program unscaled by ``KKTChecker``
(with z = proj_K(Ax - b)), where the steps z - T(z) and the moves since the anchor are
also tested as Farkas certificates and unbounded directions (they converge to the infimal
displacement vector when there is no solution); on a Program by ``StructuredChecker`` with
y_i in df_i(z_i) for every term (smooth terms: z_i = A_i x - b_i, y_i = grad f_i(z_i); G:
z_G = prox_{tau g}(w), w = P v - b_G, y_G = (w - z_G) / tau; dual blocks: y_j+ and z_j by
Moreau).

Both kinds iterate on the arrays of the backend the options select (``cvxprox.backend``:
NumPy, torch or CuPy, on the CPU or a GPU): data are moved to the device once, the steps,
combinations, restart tests and power iteration are array operations, products with
device CSR matrices and (on a Program) the terms' device versions
(``ProxFunction.on``, ``LinOp.on``: elementwise and group proxes, dense and sparse
matrices, diagonals, gathers, finite differences, 1-D and 2-D FFT convolutions and their
compositions, sums, stacks and block diagonals; any other term is named in an error),
and the scalars they need are read back one at a time. A Program's termination
tests run on the device too (``StructuredChecker`` on the device terms) and read back
scalars only; its returned point is copied to the host once, at the end. So do a cone
program's termination and certificate tests (``KKTChecker`` on the device, in float64);
a vector comes back only when a polish attempt (a host factorization) is due. The step
of a cone program with zero and nonnegative cones and no P or a diagonal one (LPs,
separable QPs) is the backend's two fused updates around the products
(``Backend.pdhg_primal_step``, ``Backend.pdhg_dual_step``, and their Halpern forms, which
also form the next point: compiled passes on NumPy in float64, bit for bit the array
reference; elementwise kernels on CuPy); combinations of points are ``Backend.combine``,
one pass on NumPy and CuPy.

On an LP, once an iterate's gap passes its test while a residual lags, PDHG runs on the
primal feasibility problem (c = 0) from its x and on the dual feasibility problem (b = 0,
finite bounds at 0) from its y, and the combined point ends the run when it passes the
termination test (PDLP's feasibility polishing, ``_FeasibilityPolish``).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cvxpy.settings as s
import numpy as np
import scipy.sparse as sp

from cvxprox.backend import Backend
from cvxprox.backend.jit.dual_tv import TVGrid, tv_grid
from cvxprox.functions.cones import NonnegCone, ProductCone, ZeroCone
from cvxprox.ir.program import AssembledProgram, Program, RowTerm
from cvxprox.solvers.common.algorithm import Progress, SteppedAlgorithm, Steps
from cvxprox.solvers.common.kkt_checks import KKTChecker
from cvxprox.solvers.common.log import IterationLog
from cvxprox.solvers.common.polish import PolishSchedule
from cvxprox.solvers.common.result import BestIterate, ConeLimit, Point, finish
from cvxprox.solvers.common.scaling import DiagonalScaling, RuizScaling
from cvxprox.solvers.common.term_checks import StructuredChecker
from cvxprox.solvers.common.termination import KKTError, check_spacing
from cvxprox.solvers.common.terms import TermLayout
from cvxprox.solvers.fista import PermutedTerm, TermGroup

# Step rule: 1/tau - sigma ||K~||^2 >= _BETA L_h, eta shrunk by _STEP_SAFETY (the power
# iteration estimate of ||A|| is a lower bound).
_BETA = 1.0
_STEP_SAFETY = 0.99
# Bounds on the primal weight: a guard against overflow, not a rule. Netlib at eps 1e-4,
# PDHG alone (``python -m compare --suite netlib --solvers NABLAPROX --eps 1e-4
# --nablaprox-option algorithm=pdhg``): with [1e-6, 1e6] the weight of AGG, AGG2 and AGG3
# sat on 1e-6 (their |dy| / |dx| is smaller), and they took 806250, 168990 and 122120
# iterations; with [1e-12, 1e12] 81340, 3370 and 2790, LOTFI, SHELL, ISRAEL, bgetam, pang
# and ex72a 0.4-0.7 times theirs, no case more than 5% slower; 98/120 solved either way,
# median iteration ratio to OR-Tools PDLP 1.22 against 1.36 (the anchor's own `optimal`,
# 75 cases) and 0.76 against 0.81 (both pass the per-row check, 34 cases).
_OMEGA_MIN, _OMEGA_MAX = 1e-12, 1e12
# With L_h > 0 the primal weight is kept >= _WEIGHT_FLOOR beta L_h / ||K~|| (see
# _primal_weight_floor).
_WEIGHT_FLOOR = 0.3
_TINY = 1e-12
# Power iteration.
_POWER_ITERS = 200
_POWER_TOL = 1e-6
_POWER_SEED = 0
#: Seconds into a run after which the iterations up to a check run as one compiled
#: call where the backend has one (``_ConeProblem.advance``): loading it costs 0.2 s in a
#: new process (compiling it, once per install, 0.8 s), which a shorter run does not
#: recover.
_FUSE_AFTER = 0.2
#: What a termination test costs, in iterations (``check_spacing``'s cost rule; module
#: docstring).
_CHECK_COST = 8.0
# Feasibility polishing (_FeasibilityPolish): each phase's iteration budget, a fraction
# of the run's iterations so far and at least a minimum; the gap that starts an attempt,
# as a fraction of its tolerance.
_POLISH_FRACTION = 0.25
_POLISH_MIN_ITERS = 100
_POLISH_GAP = 0.1
# The next attempt comes at _POLISH_RETRY times the iterations of the last one.
_POLISH_RETRY = 1.1


@dataclass(frozen=True)
class Scheme:
    """The iteration and restart scheme (module docstring).

    Attributes
    ----------
    halpern : bool
        Anchor weight 1 - w_k = 1/(k+2) (reflected Halpern), else 0 (Krasnosel'skii-Mann).
    relaxation : float
        gamma as a fraction of its largest admissible value 1/alpha - 1.
    average : bool
        Whether T(average of the epoch's outputs) is a restart candidate.
    sufficient, necessary, artificial : float
        The restart thresholds.
    smoothing : float
        theta of the primal weight update (``_updated_primal_weight``).
    weight_from_step : bool
        Whether the update reads the restart candidate's step T(q) - q, else its move
        T(q) - anchor (module docstring).
    """

    halpern: bool
    relaxation: float
    average: bool
    sufficient: float
    necessary: float
    artificial: float
    smoothing: float
    weight_from_step: bool


#: Default schemes per program kind (module docstring).
CONE_SCHEME = Scheme(True, 1.0, False, 0.2, 0.8, 0.36, 0.8, True)
STRUCTURED_SCHEME = Scheme(False, 0.9, True, 0.7, 0.9, 0.1, 0.5, False)
#: 2-D TV in a box (``tv_in_a_box``): the structured scheme with primal weight smoothing
#: 0.9. On TV inpainting at default options (iterations; 64, 96, 128, 192 pixels a side):
#: 0.5 2840, 1470, 3910, 1120; 0.9 730, 840, 750, 540; 0.8 1200, 550, 820, 1200; 1.0 770,
#: 310, 560, 1180. Seeds 1-4 at 100 and 160: 11820 iterations in all at 0.5, 5990 at 0.9,
#: 6100 at 1.0. With a data term (TV denoising, in a box or not) 0.9 is worse than 0.5
#: (128 x 128: 790 against 2710 iterations in a box), hence a scheme of its own.
TV_BOX_SCHEME = Scheme(False, 0.9, True, 0.7, 0.9, 0.1, 0.9, False)


@dataclass
class _Point:
    """A primal-dual point (x (n,), y (m,)) with the products K x (m,), K'y (n,) and H x
    (the linearized smooth part's product; None without one), linear in the point."""

    x: Any
    y: Any
    Kx: Any
    Kty: Any
    Hx: Any | None


def _combination(backend: Backend, *terms: tuple[float, _Point]) -> _Point:
    """sum_i a_i p_i over (a_i, p_i), products included (``Backend.combine``)."""
    coefficients = [a for a, _ in terms]

    def lin(field: str) -> Any:
        parts = [getattr(p, field) for _, p in terms]
        return None if parts[0] is None else backend.combine(coefficients, parts)

    return _Point(lin("x"), lin("y"), lin("Kx"), lin("Kty"), lin("Hx"))


def _plain_iteration(
    problem: Any, epoch: _Epoch, average: _Point, tau: float, sigma: float
) -> tuple[_Step, _Point, _Point | None]:
    """(T(z), the running average with T(z) (``scheme.average``), None) for the epoch's z:
    the step, then the average's combination; the epoch forms its next point itself."""
    step, k = problem.step(epoch.z, tau, sigma), epoch.k
    if problem.scheme.average:
        average = (
            step.point
            if k == 0
            else _combination(problem.backend, (k / (k + 1), average), (1.0 / (k + 1), step.point))
        )
    return step, average, None


class _Epoch:
    """The iterate z^k of the current epoch, its anchor z^{n,0} and the restart test of
    ``scheme`` (module docstring).

    Attributes
    ----------
    anchor, z : _Point
    k : int
        Iterations into the epoch.
    r0 : float
        ||z - T(z)||_M at the anchor (set by the caller on the epoch's first step).
    r_prev : float
        The candidate's residual at the previous check of the epoch.
    """

    def __init__(self, backend: Backend, scheme: Scheme, start: _Point) -> None:
        self.backend, self.scheme = backend, scheme
        self.restart(start)

    def restart(self, point: _Point) -> None:
        """A new epoch anchored at ``point``."""
        self.anchor = self.z = point
        self.k = 0
        self.r0 = self.r_prev = math.inf

    def restart_due(self, r: float, iterations: int) -> bool:
        """Whether a candidate with residual r ends the epoch after ``iterations`` in
        all: r <= sufficient r0, or r <= necessary r0 and rising, or k >= artificial
        iterations; remembers r for the next check when it does not."""
        scheme = self.scheme
        due = self.k > 0 and (
            r <= scheme.sufficient * self.r0
            or (r <= scheme.necessary * self.r0 and r > self.r_prev)
            or self.k >= scheme.artificial * iterations
        )
        if not due:
            self.r_prev = r
        return due

    def advance(self, Tz: _Point, gamma: float, advanced: _Point | None = None) -> None:
        """z <- w ((1 + gamma) T(z) - gamma z) + (1 - w) anchor, w = (k+1)/(k+2)
        (Halpern) or 1 (KM); ``advanced`` is that point when the step formed it
        (``_plain_iteration``'s fused forms)."""
        if advanced is not None:
            self.z = advanced
        elif not self.scheme.halpern:
            self.z = _combination(self.backend, (1.0 + gamma, Tz), (-gamma, self.z))
        else:
            a, b, e = self.halpern_coefficients(gamma)
            self.z = _combination(self.backend, (a, Tz), (b, self.z), (e, self.anchor))
        self.k += 1

    def halpern_coefficients(self, gamma: float) -> tuple[float, float, float]:
        """(w (1 + gamma), -w gamma, 1 - w), w = (k+1)/(k+2): the weights of T(z), z and
        the anchor in the next reflected Halpern point."""
        w = (self.k + 1) / (self.k + 2)
        return w * (1.0 + gamma), -w * gamma, 1.0 - w


@dataclass
class _Step:
    """T(p), with what the optimality point needs besides it: a Program's dual
    blocks' z (m_D,) and its prox term's z_G, y_G (None on a cone program or without G)."""

    point: _Point
    z_dual: Any = None
    z_prox: Any = None
    y_prox: Any = None


@dataclass
class _Check:
    """The outcome of a termination check at a candidate: its KKT error and optimality
    point, and a status (OPTIMAL, INFEASIBLE, UNBOUNDED) when a test settled the run."""

    err: KKTError
    point: Point
    status: str | None = None
    certificate: np.ndarray | None = None


class _Bounds:
    """The variable bounds l <= x <= u of a scaled cone program, which its assembled view
    holds as the nonnegative rows ``bound_rows`` (``cvxprox.ir.program.bound_rows``): the
    primal step projects onto them (PDLP, cuPDLPx) instead of iterating their duals.
    Presolve (``cvxprox.solvers.presolve``) has turned the program's other one-entry
    rows into such bounds.

    A bound row ``a x_j - b >= 0`` is x_j >= b / a (a > 0) or x_j <= b / a (a < 0). With
    the reduced cost g = c + P x + A_K'y_K over the other rows K, the full dual is

        y_K on K,   -max(g_j, 0) / a on x_j's lower row,   -max(-g_j, 0) / |a| on its upper
        row,

    (IR duals of a nonnegative cone are <= 0), so that the dual residual
    g + sum_rows a_r y_r e_j is the part of g the bounds cannot take: the distance of
    -g to the normal cone of the box, and b'y gains the bound terms l'max(g, 0) -
    u'max(-g, 0). With g = A_K'dy_K (no c, P) the same map completes a Farkas direction.
    Everything is tested on the full rows (``KKTChecker``), so the full point is what the
    checks, certificates and polishing see.

    A program without bound rows, or whose bounds cross (l_j > u_j: an infeasible
    program, certified on the rows), keeps every row (``active`` False).

    Parameters
    ----------
    A : scipy.sparse array, shape (m, n)
        The scaled stacked operator.
    b : ndarray, shape (m,)
    terms : list of RowTerm
    rows : slice or None
        The bound rows of the assembled view.
    backend : Backend
    """

    def __init__(
        self,
        A: sp.sparray,
        b: np.ndarray,
        terms: list[RowTerm],
        rows: slice | None,
        backend: Backend,
    ) -> None:
        m, n = A.shape
        csr = sp.csr_array(A, copy=True)
        csr.eliminate_zeros()
        single = np.zeros(m, dtype=bool)
        if rows is not None:
            single[rows] = True
        rows = np.flatnonzero(single)
        cols, vals = csr.indices[csr.indptr[rows]], csr.data[csr.indptr[rows]]
        beta = b[rows] / vals if rows.size else np.zeros(0)
        lo, hi = np.full(n, -np.inf), np.full(n, np.inf)
        lo_row, hi_row = np.full(n, -1), np.full(n, -1)
        lower = vals > 0
        lo[cols[lower]], lo_row[cols[lower]] = beta[lower], rows[lower]
        hi[cols[~lower]], hi_row[cols[~lower]] = beta[~lower], rows[~lower]
        self.active = bool(rows.size) and not np.any(lo > hi)
        self.count = int(rows.size) if self.active else 0
        if not self.active:
            return
        keep = np.flatnonzero(~single)
        self.A = csr[keep]
        self.b = b[keep]
        self.keep = keep
        kept = []
        for term in terms:
            size = int(np.count_nonzero(~single[term.rows]))
            if isinstance(term.function, NonnegCone):
                if size:
                    kept.append(NonnegCone(size))
            else:
                kept.append(term.function)
        self.cone = ProductCone(kept)
        xp = backend.xp
        self.xp = xp
        self.l, self.u = lo, hi
        self.lo, self.hi = backend.asarray(lo), backend.asarray(hi)
        self.has_lo = backend.asarray(np.isfinite(lo).astype(np.float64))
        self.has_hi = backend.asarray(np.isfinite(hi).astype(np.float64))
        # y_full = S y_K + L max(g, 0) + U max(-g, 0);  A x = S A_K x + B x.
        select = (np.ones(keep.size), (keep, np.arange(keep.size)))
        self.S = backend.csr(sp.csr_array(select, shape=(m, keep.size)))
        j_lo, j_hi = np.flatnonzero(lo_row >= 0), np.flatnonzero(hi_row >= 0)
        a = np.zeros(m)
        a[rows] = vals
        a_lo, a_hi = a[lo_row[j_lo]], a[hi_row[j_hi]]
        self.L = backend.csr(sp.csr_array((-1.0 / a_lo, (lo_row[j_lo], j_lo)), shape=(m, n)))
        self.U = backend.csr(sp.csr_array((1.0 / a_hi, (hi_row[j_hi], j_hi)), shape=(m, n)))
        self.B = backend.csr(sp.csr_array((vals, (rows, cols)), shape=(m, n)))

    @property
    def box(self) -> tuple[Any, Any] | None:
        """(l, u) on the device when the bounds are projected, else None (the fused
        steps' ``bounds``)."""
        return (self.lo, self.hi) if self.active else None

    def project(self, x: Any) -> Any:
        """proj_[l, u](x)."""
        return self.xp.minimum(self.xp.maximum(x, self.lo), self.hi)

    def homogeneous(self) -> _Bounds:
        """These bounds with their right-hand sides zeroed: l0 <= x <= u0, l0_j = 0 where
        l_j is finite (-inf elsewhere), u0 likewise (the dual feasibility problem of
        ``_FeasibilityPolish``)."""
        out = copy.copy(self)
        zero = self.xp.zeros_like(self.lo)
        out.lo = self.xp.where(self.has_lo > 0, zero, self.lo)
        out.hi = self.xp.where(self.has_hi > 0, zero, self.hi)
        return out

    def full_y(self, y: Any, g: Any) -> tuple[Any, Any]:
        """(y on every row, the change of A'y) from y_K and the reduced cost g."""
        pos = 0.5 * (g + abs(g))  # max(g, 0), exactly
        neg = pos - g
        return self.S @ y + self.L @ pos + self.U @ neg, self.has_hi * neg - self.has_lo * pos

    def full_Ax(self, x: Any, Ax: Any) -> Any:
        """A x on every row from A_K x."""
        return self.S @ Ax + self.B @ x


class _ConeProblem:
    """A cone program, scaled, on the backend: the PDHG step T and its checks.

    Its bound rows are bounds l <= x <= u (``_Bounds``): the primal step projects onto
    them,
    x+ = proj_[l, u](x - tau (c + A'y)), and A, b, y and the cone are those of the other
    rows; the checks see every row. A (m x n) and A' (n x m) are device CSR matrices
    (``Backend.csr``), c (n,) and b (m,) device vectors in the backend's dtype. A
    diagonal P = diag(p) is kept as the vector p (n,) and taken by its exact prox (G); any
    other P as an n x n CSR matrix, linearized (h, with H x = P x).
    """

    scheme = CONE_SCHEME

    def __init__(
        self, program: AssembledProgram, options: Any, backend: Backend, t0: float
    ) -> None:
        self.program, self.backend = program, backend
        self.scaling = scaling = RuizScaling(program, options.scaling_iters, pock_chambolle=True)
        self.checker = KKTChecker(program, scaling, options)
        self.side = _CheckSide.of(backend, self.checker, scaling, program.b)
        self.polisher = PolishSchedule(program, self.checker, deadline=t0 + options.time_limit)
        self.t0 = t0
        self.eps_infeas, self.scaling_iters = options.eps_infeas, options.scaling_iters
        self.bounds = _Bounds(scaling.A, scaling.b, program.terms, program.bound_rows, backend)
        if self.bounds.active:
            A, b, self.cone = self.bounds.A, self.bounds.b, self.bounds.cone
        else:
            A, b, self.cone = scaling.A, scaling.b, program.cone
        self.m = A.shape[0]
        self.A = backend.csr(A)
        self.At = backend.csr(A.T)
        self.P = self.p = None
        if program.has_quadratic:
            diagonal = scaling.P.diagonal()
            if sp.csr_array(scaling.P - sp.diags_array(diagonal)).count_nonzero() == 0:
                self.p = backend.asarray(diagonal)
            else:
                self.P = backend.csr(scaling.P)
        self.c = backend.asarray(scaling.c)
        self.b_host, self.b = b, backend.asarray(b)
        rng = np.random.default_rng(_POWER_SEED)
        start = backend.asarray(rng.random(program.n))
        self.norm_K = math.sqrt(_max_eigenvalue(backend, lambda v: self.At @ (self.A @ v), start))
        self.L_h = 0.0 if self.P is None else _max_eigenvalue(backend, lambda v: self.P @ v, start)
        self.dx = self.dy = self.x = None
        free = _polar_free_rows(self.cone)
        self._polar_free = None if free is None else backend.asmask(free)
        self.feasibility = None
        if options.feasibility_polishing and program.is_polyhedral and not program.has_quadratic:
            self.feasibility = _FeasibilityPolish(self, options, t0 + options.time_limit)

    def describe(self) -> list[str]:
        """The verbose header's lines about the splitting."""
        if self.p is not None:
            quadratic = "P diagonal (exact prox)"
        elif self.P is not None:
            quadratic = f"lambda_max(P) ~ {self.L_h:.3e} (linearized)"
        else:
            quadratic = "P = 0"
        return [
            f"scaling: Ruiz x{self.scaling_iters} + Pock-Chambolle (alpha=1), "
            f"cost scale {self.scaling.k:.2e}",
            f"||A|| ~ {self.norm_K:.3e} (power iteration), {quadratic}",
            f"bounds: {self.bounds.count} bound rows projected in the primal step",
            "feasibility polishing: "
            + (
                f"from gap <= {_POLISH_GAP} tol, phases of <= {_POLISH_FRACTION} of the "
                "iterations so far"
                if self.feasibility is not None
                else "off"
            ),
        ]

    def initial(self, warm: dict | None) -> tuple[_Point, float]:
        """The starting point (scaled warm start, else 0) and primal weight."""
        backend, scaling = self.backend, self.scaling
        if warm is not None:
            x = scaling.scale_x(warm["x"])
            y = scaling.scale_y(warm["y"])
            if self.bounds.active:
                x, y = np.clip(x, self.bounds.l, self.bounds.u), y[self.bounds.keep]
            x, y = backend.asarray(x), backend.asarray(y)
            omega = warm.get("primal_weight")
        else:
            x, y, omega = backend.zeros(self.program.n), backend.zeros(self.m), None
        if omega is None:
            # ||b|| of the rows iterated, bounds excluded (PDLP).
            omega = _initial_primal_weight(scaling.c, self.b_host)
        return self.point(x, y), omega

    def point(self, x: Any, y: Any) -> _Point:
        """The point (x, y) with its products."""
        return _Point(x, y, self.A @ x, self.At @ y, None if self.P is None else self.P @ x)

    def _halpern_fuses(self) -> bool:
        """Whether the step is the backend's two fused updates (``_polar_free``, no P) and
        the scheme reflected Halpern without the average, so that the updates can form
        the next point too (``iterate``, ``advance``)."""
        scheme = self.scheme
        return (
            self._polar_free is not None
            and self.P is None
            and scheme.halpern
            and not scheme.average
        )

    def iterate(
        self, epoch: _Epoch, average: _Point, tau: float, sigma: float, gamma: float
    ) -> tuple[_Step, _Point, _Point | None]:
        """T(z) of the epoch's z, the running average, and the epoch's next point: where
        the step is the backend's two fused updates (``_polar_free``, no P) and the scheme
        reflected Halpern without the average, the updates also form the next point's x,
        y and K x (``Backend.pdhg_primal_halpern``, ``pdhg_dual_halpern``; bit for bit
        ``_Epoch.advance``), and K'y takes one ``Backend.combine``; else
        ``_plain_iteration``."""
        if not self._halpern_fuses():
            return _plain_iteration(self, epoch, average, tau, sigma)
        free, backend = self._polar_free, self.backend
        z, anchor = epoch.z, epoch.anchor
        coefficients = epoch.halpern_coefficients(gamma)
        x, x_next = backend.pdhg_primal_halpern(
            z.x, z.Kty, self.c, tau, self.p, self.bounds.box, coefficients, anchor.x
        )
        Ax = self.A @ x
        y, y_next, Kx_next = backend.pdhg_dual_halpern(
            z.y, Ax, z.Kx, self.b, sigma, free, coefficients, anchor.y, anchor.Kx
        )
        Aty = self.At @ y
        Kty_next = backend.combine(coefficients, [Aty, z.Kty, anchor.Kty])
        step = _Step(_Point(x, y, Ax, Aty, None))
        return step, average, _Point(x_next, y_next, Kx_next, Kty_next, None)

    def advance(
        self, epoch: _Epoch, tau: float, sigma: float, gamma: float, count: int
    ) -> tuple[_Step, _Point] | None:
        """The iterations up to the next check in one call of the backend's compiled loop
        (``Backend.pdhg_halpern_iterations``), where ``iterate`` would take its fused path
        and the run has lasted ``_FUSE_AFTER`` seconds: ``count`` - 1 iterations move the
        epoch on, and the last one's T(z) and next point come back as ``iterate``'s do,
        with the epoch at that z (None where it did not run; nothing changed). Bit for bit
        ``count`` - 1 calls of ``iterate`` and ``_Epoch.advance`` and one of ``iterate``.

        On Netlib (``python -m compare --suite netlib``, auto, default tolerances) the 22
        LPs that PDHG finishes take 0.87 of their time in geometric mean (AGG3 0.63,
        MODSZK1 0.70, TUFF 0.70) against every iteration stepped in Python, with the same
        iterations. The check's own step in the loop too (``iterate`` costs 2 to 5 of its
        iterations: DFL001 330 against 170 us, MODSZK1 36 against 7 us): 0.90 of the time
        in geometric mean, with the same iterations, on DFL001, MODSZK1, QAP15, STOCFOR2,
        FIT2P, SCSD8, WOODW, STAIR, FFFFF800 and the energy LP 8x144 (eps 1e-4, PDHG
        forced, best of three alternating runs; 0.82 on STAIR and FFFFF800, 1.0 on QAP15
        and the energy LP)."""
        if not self._halpern_fuses() or time.perf_counter() - self.t0 < _FUSE_AFTER:
            return None
        free = self._polar_free
        z, anchor = epoch.z, epoch.anchor
        moved = self.backend.pdhg_halpern_iterations(
            count,
            epoch.k,
            (gamma, tau, sigma),
            (self.c, self.p, self.bounds.box, self.b, free),
            (self.A, self.At),
            (z.x, z.y, z.Kx, z.Kty),
            (anchor.x, anchor.y, anchor.Kx, anchor.Kty),
        )
        if moved is None:
            return None
        advanced, step, before = moved
        epoch.z = _Point(*before, None)
        epoch.k += count - 1
        return _Step(_Point(*step, None)), _Point(*advanced, None)

    def step(self, z: _Point, tau: float, sigma: float) -> _Step:
        """T(z) (module docstring), 1 product with each of A, A', P; the backend's fused
        primal and dual updates where ``_polar_free`` allows (zero and nonnegative cones,
        no P or a diagonal one)."""
        free, backend = self._polar_free, self.backend
        if free is not None and self.P is None:
            x = backend.pdhg_primal_step(z.x, z.Kty, self.c, tau, self.p, self.bounds.box)
            Ax = self.A @ x
            y = backend.pdhg_dual_step(z.y, Ax, z.Kx, self.b, sigma, free)
            return _Step(_Point(x, y, Ax, self.At @ y, None))
        if self.p is not None:
            x = (z.x - tau * (self.c + z.Kty)) / (1.0 + tau * self.p)
        elif self.P is not None:
            x = z.x - tau * (self.c + z.Kty + z.Hx)
        else:
            x = z.x - tau * (self.c + z.Kty)
        if self.bounds.active:
            x = self.bounds.project(x)
        Ax = self.A @ x
        v = z.y + sigma * (2.0 * Ax - z.Kx - self.b)
        y = self.cone.project_polar(v)
        return _Step(_Point(x, y, Ax, self.At @ y, None if self.P is None else self.P @ x))

    def residual(self, z: _Point, Tz: _Point, tau: float, sigma: float) -> float:
        """The fixed-point residual ||z - T(z)||_M (module docstring)."""
        dx, dy, dAx = z.x - Tz.x, z.y - Tz.y, z.Kx - Tz.Kx
        r2 = self.backend.scalar((dx @ dx) / tau + (dy @ dy) / sigma - 2.0 * (dy @ dAx))
        return math.sqrt(max(r2, 0.0))

    def norms(self, dp: _Point) -> tuple[float, float]:
        """(||dx||, ||dy||) of a move."""
        return _norm(self.backend, dp.x), _norm(self.backend, dp.y)

    def check(
        self, it: int, step: _Step, base: _Point, anchor: _Point, best: BestIterate
    ) -> _Check:
        """KKT error of T(base) unscaled, the polisher's schedule, and the certificates
        of the last step and of the move since the anchor. A converged iterate of a
        polishable program is polished once more, and the polished point (a vertex,
        accurate to the factorization) is returned when it passes the test too.

        On NumPy the iterate is unscaled in float64 on the host; on another backend it is
        unscaled and tested on the device in float64 (``KKTChecker``), and only scalars
        come back, until a certificate or a polish attempt needs a vector."""
        checker, side = self.checker, self.side
        sc = side.scaling
        Tz = step.point
        Px = self.p * Tz.x if self.p is not None else Tz.Hx
        xu, zu, Axu = self.primal_part(Tz.x, Tz.Kx)
        yu, Atyu = self.dual_part(Tz.y, Tz.Kty, Px)
        err = checker.kkt_error(
            xu, zu, yu, Axu, Atyu, None if Px is None else sc.unscale_gradient(side.f64(Px))
        )
        best.offer(err, xu, zu, yu)
        settled = self.polisher.settle(it, (xu, zu, yu), err)
        if settled is not None:
            return self.optimal(it, *settled)
        self.x = xu
        self.dx = sc.unscale_x(side.f64(Tz.x - base.x))
        self.dy = sc.unscale_y(side.f64(self._full_direction(Tz, base)))
        status, cert = checker.certificate(self.dx, self.dy, self.eps_infeas, xu)
        if status is None and anchor is not base:
            status, cert = checker.certificate(
                sc.unscale_x(side.f64(Tz.x - anchor.x)),
                sc.unscale_y(side.f64(self._full_direction(Tz, anchor))),
                self.eps_infeas,
                xu,
            )
        return _Check(err, (xu, zu, yu), status, checker.to_host(cert))

    def primal_part(self, x: Any, Kx: Any) -> tuple[Any, Any, Any]:
        """The unscaled (x, z, A x) of a scaled x with its product K x, z = Pi_K(A x - b),
        on every row (``_Bounds``), in float64 where the checks compute."""
        side = self.side
        if self.bounds.active:
            Kx = self.bounds.full_Ax(x, Kx)
        Axu = side.scaling.unscale_z(side.f64(Kx))
        return side.scaling.unscale_x(side.f64(x)), self.program.cone.project(Axu - side.b), Axu

    def dual_part(self, y: Any, Kty: Any, Px: Any | None) -> tuple[Any, Any]:
        """The unscaled (y, A'y) of a scaled y with its product K'y on every row (the
        bound rows take the reduced cost c + P x + K'y, ``_Bounds``)."""
        side = self.side
        if self.bounds.active:
            g = self.c + Kty if Px is None else self.c + Kty + Px
            y, dKty = self.bounds.full_y(y, g)
            Kty = Kty + dKty
        return side.scaling.unscale_y(side.f64(y)), side.scaling.unscale_gradient(side.f64(Kty))

    def optimal(self, it: int, point: Point, err: KKTError) -> _Check:
        """The OPTIMAL result of a point that passed the test, or its polished vertex
        when the first factorization polish of a polishable program passes it too (an
        attempt within the polisher's share of the run's time)."""
        polisher = self.polisher
        if (
            err.converged
            and polisher.enabled
            and not polisher.succeeded
            and polisher.within_share()
        ):
            point, err = polisher.attempt(it, point[1], point[2], point[0]) or (point, err)
        return _Check(err, point, s.OPTIMAL)

    def polish_feasibility(
        self, it: int, err: KKTError, point: _Point, omega: float, best: BestIterate
    ) -> tuple[_Check | None, int]:
        """Feasibility polishing from the candidate ``point`` when it is due
        (``_FeasibilityPolish``): the OPTIMAL check of the polished point, or None, and
        the iterations spent."""
        if self.feasibility is None or not self.feasibility.due(it, err):
            return None, 0
        return self.feasibility.run(it, err, point, omega, best)

    def _full_direction(self, Tz: _Point, base: _Point) -> Any:
        """The dual move Tz.y - base.y on every row (``_Bounds``: the bound rows take
        the reduced cost A_K'dy of the move)."""
        dy = Tz.y - base.y
        if not self.bounds.active:
            return dy
        return self.bounds.full_y(dy, Tz.Kty - base.Kty)[0]

    def limit(self) -> ConeLimit:
        """What ``finish`` tries when a limit stops the run."""
        return ConeLimit(self.polisher, self.dx, self.dy, self.x)

    def host_point(self, point: Point | None) -> Point | None:
        """The point on the host."""
        return None if point is None else tuple(self.checker.to_host(v) for v in point)


class _FeasibilityPolish:
    """PDLP's feasibility polishing (Applegate et al., "PDLP: a practical first-order
    method for large-scale linear programming", arXiv:2501.07018) for an LP's scaled cone
    program.

    Late in a solve the gap of an LP's iterate has often passed its test while the primal
    or the dual residual lags. Feasibility is a problem PDHG solves fast: on the primal
    feasibility problem (the objective zeroed)

        minimize 0   subject to   A x - b in K,   l <= x <= u,

    PDHG from (x, 0) stays within the M-distance of its start from the feasible set (it
    is Fejer monotone towards every fixed point), so it ends at a primal-feasible point
    near x; on the dual feasibility problem (the right-hand sides zeroed: b = 0 and the
    finite bounds moved to 0)

        minimize c'x   subject to   A x in K,   l0 <= x <= u0,

    whose dual's feasible set is that of the LP's dual with the objective 0, PDHG from
    (0, y) ends at a dual-feasible y near y. The combined point keeps the gap of the
    iterate approximately, since both moved little.

    Rules (each measured on Netlib, ``compare``):

    - due at a check of an unconverged iterate whose gap is within ``_POLISH_GAP`` of
      its tolerance (the primal phase moves c'x, and a gap just under its tolerance
      rarely survives), once the run has reached ``next`` iterations; ``next`` is
      ``_POLISH_RETRY`` (1.1) times the iterations at the last attempt (a failed attempt
      mostly ends at its first check, where the gap fails);
    - each phase runs restarted reflected Halpern PDHG (``CONE_SCHEME``, the main run's
      primal weight to start) for at most ``_POLISH_FRACTION`` of the iterations so far
      (at least ``_POLISH_MIN_ITERS``), stopping at the first check where its part of
      the test (primal or dual residual) passes, and giving up at the first where the
      gap fails (neither phase aims at the gap, and it seldom comes back);
    - the primal phase runs first and only when the iterate's primal residual fails its
      test; the dual phase only when the primal part passes and the dual part fails;
    - every check of a phase tests the combined point (the phase's iterate with the
      other part's latest point) with the run's termination test (``KKTChecker``), so a
      polished point is returned only when it passes that test; it is also offered as
      the best iterate.

    The iterations of both phases count in the run's iterations.

    Measured on the 33 Netlib LPs that plain PDHG takes 1000 to 60000 iterations for
    (eps 1e-4, at most 60000 iterations, success as in ``compare``: ``optimal`` and the
    objective within 1e-4): 26 solved without polishing, 28 with it (SHELL's polished
    point passes the test on the presolved program but only loosely on the original),
    and the geometric mean of the iteration ratio over the cases both solve 0.89 (0.54
    on SHARE1B, 0.60 on SHIP08S, 0.63 on FIT1D; at most 1.08 where attempts fail).
    Variants: phases that go on while the gap fails, 0.90 (and up to 1.13); gap
    fraction 1 instead of 0.1, 0.99, 0.3: 0.96, 0.03: 0.89 but 26 solved; budget
    fraction 1/8 instead of 1/4, 0.90; no attempt before 1000 iterations, 0.89. The main
    run's primal weight times 0.1 or 10 to start a phase changed nothing (the phases'
    restarts adapt it). The retry factor, on the 37 feasible Netlib LPs under 3000
    variables that auto hands to PDHG (PDHG forced, eps 1e-4, at most 60000 iterations,
    20 s): 2 (doubling) solves 26, 1.5 27 (iterations 0.89 times over the 26 both solve),
    1.25 27 (0.82; SHARE1B 14% more), 1.1 27 (0.76, none more than 5% more: 25FV47 50710
    -> 11060, FIT1D 14300 -> 4040, SHARE1B 23710 -> 14070, GFRD-PNC solved in 40170), 1.05
    27 (0.78), 1.0 27 (0.82, STOCFOR2 more); on the energy LP 8x144 1.1 takes 16720
    iterations against 18750.
    """

    def __init__(self, problem: _ConeProblem, options: Any, deadline: float) -> None:
        self.problem = problem
        self.check_every, self.max_iters = options.check_every, options.max_iters
        self.deadline = deadline
        self.next = 0
        self.attempts = 0
        backend = problem.backend
        self.primal = copy.copy(problem)
        self.primal.c = backend.zeros(problem.program.n)
        self.dual = copy.copy(problem)
        self.dual.b = backend.zeros(problem.m)
        if problem.bounds.active:
            self.dual.bounds = problem.bounds.homogeneous()

    def due(self, it: int, err: KKTError) -> bool:
        """Whether to polish at iteration ``it`` of a check with error ``err``."""
        return (
            it >= self.next
            and it + 2 * self._budget(it) <= self.max_iters
            and not err.converged
            and err.gap <= _POLISH_GAP * err.gap_tol
            and time.perf_counter() < self.deadline
        )

    def run(
        self, it: int, err: KKTError, point: _Point, omega: float, best: BestIterate
    ) -> tuple[_Check | None, int]:
        """Polish the scaled iterate ``point`` (KKT error ``err``): the OPTIMAL check of
        the polished point (None when it does not pass the test) and the iterations
        spent."""
        problem, backend = self.problem, self.problem.backend
        self.next = int(_POLISH_RETRY * it)
        self.attempts += 1
        budget = self._budget(it)
        primal = problem.primal_part(point.x, point.Kx)
        dual = problem.dual_part(point.y, point.Kty, None)
        spent = 0
        if err.primal > err.primal_tol:
            start = self.primal.point(point.x, backend.zeros(problem.m))
            found, used = self._phase(
                self.primal,
                start,
                omega,
                budget,
                lambda p: (problem.primal_part(p.x, p.Kx), dual),
                "primal",
                best,
            )
            spent += used
            if found is None:
                return None, spent
            primal, dual, err = found
        if err.dual > err.dual_tol:
            start = self.dual.point(backend.zeros(problem.program.n), point.y)
            found, used = self._phase(
                self.dual,
                start,
                omega,
                budget,
                lambda p: (primal, problem.dual_part(p.y, p.Kty, None)),
                "dual",
                best,
            )
            spent += used
            if found is None:
                return None, spent
            primal, dual, err = found
        if not err.converged:
            return None, spent
        return problem.optimal(it + spent, (primal[0], primal[1], dual[0]), err), spent

    def _budget(self, it: int) -> int:
        """The iterations of one phase after ``it`` iterations of the run."""
        return max(_POLISH_MIN_ITERS, int(_POLISH_FRACTION * it))

    def _phase(
        self,
        sub: _ConeProblem,
        start: _Point,
        omega: float,
        budget: int,
        combine: Callable[[_Point], tuple[tuple, tuple]],
        part: str,
        best: BestIterate,
    ) -> tuple[tuple[tuple, tuple, KKTError] | None, int]:
        """Restarted PDHG on the feasibility problem ``sub`` from ``start``. At each
        check, ``combine`` makes the unscaled primal part (x, z, A x) and dual part
        (y, A'y) of a point from T(z); the phase ends when their KKT error passes the
        ``part`` ("primal" or "dual") test: (the parts and their error, or None when
        the budget or the deadline ran out first; iterations spent)."""
        checker, scheme = self.problem.checker, CONE_SCHEME
        tau, sigma, gamma = _step_sizes(omega, sub.norm_K, 0.0, scheme.relaxation)
        epoch = _Epoch(sub.backend, scheme, start)
        for j in range(1, budget + 1):
            step = sub.step(epoch.z, tau, sigma)
            if epoch.k == 0:
                epoch.r0 = sub.residual(epoch.z, step.point, tau, sigma)
            if j % self.check_every == 0:
                (x, z, Ax), (y, Aty) = parts = combine(step.point)
                err = checker.kkt_error(x, z, y, Ax, Aty, None)
                best.offer(err, x, z, y)
                if getattr(err, part) <= getattr(err, f"{part}_tol"):
                    return (*parts, err), j
                if err.gap > err.gap_tol or time.perf_counter() > self.deadline:
                    return None, j
                r = sub.residual(epoch.z, step.point, tau, sigma)
                if epoch.restart_due(r, j):
                    omega = _restart_weight(sub, epoch, step.point, epoch.z, omega, _OMEGA_MIN)
                    tau, sigma, gamma = _step_sizes(omega, sub.norm_K, 0.0, scheme.relaxation)
                    epoch.restart(step.point)
                    continue
            epoch.advance(step.point, gamma)
        return None, budget


@dataclass
class _CheckSide:
    """Where a cone program's checks compute: the scaling maps and b there, and the
    conversion of an iterate to float64 there (to the host on NumPy)."""

    scaling: DiagonalScaling
    b: Any
    f64: Callable[[Any], Any]

    @staticmethod
    def of(
        backend: Backend, checker: KKTChecker, scaling: RuizScaling, b: np.ndarray
    ) -> _CheckSide:
        """The side of ``backend``'s iterates."""
        if backend.name == "numpy":
            return _CheckSide(scaling, b, backend.to_host)
        device, xp = checker.device, checker.device.xp
        return _CheckSide(
            scaling.on(device), device.asarray(b), lambda v: xp.astype(v, device.dtype)
        )


class _StructuredProblem:
    """A Program's terms split into G, h and the dual blocks (module docstring),
    with the step T and its checks on the backend's arrays.

    Steps and checks use the terms moved to the backend (``device_terms``:
    ``ProxFunction.on``, ``LinOp.on``; the program's own terms on NumPy); the checks read
    back scalars only, and the returned point is copied to the host once (``host_point``).
    """

    def __init__(self, program: Program, options: Any, backend: Backend) -> None:
        self.program, self.backend = program, backend
        self.layout = TermLayout(program, backend)
        self.checker = StructuredChecker(self.layout, options)
        n, terms = program.n, list(enumerate(program.terms))
        # With bounds, G is the box's indicator and every term goes to h or the duals.
        candidates = [
            (k, t) for k, t in terms if PermutedTerm.accepts(t, n) and not program.has_bounds
        ]
        candidates.sort(key=lambda kt: kt[1].function.smooth)
        taken = candidates[0][0] if candidates else -1
        smooth = [k for k, t in terms if k != taken and t.function.smooth]
        dual = [k for k, t in terms if k != taken and not t.function.smooth]
        device = self.layout.terms
        self.prox = PermutedTerm(device[taken], taken) if taken >= 0 else None
        self.smooth = TermGroup([(k, device[k]) for k in smooth], n, backend)
        self.dual = TermGroup([(k, device[k]) for k in dual], n, backend)
        norms = np.array([program.terms[k].op.norm_bound() for k in dual])
        self.block_weight = 1.0 / np.where(norms > 0, norms, 1.0) ** 2
        row_weight = np.concatenate(
            [
                np.full(program.terms[k].size, w)
                for k, w in zip(dual, self.block_weight, strict=True)
            ]
            or [np.zeros(0)]
        )
        self.row_weight = backend.asarray(row_weight)
        self.c = backend.asarray(program.c)
        self.norm_K = math.sqrt(float(np.count_nonzero(norms > 0)))
        self.L_h = TermGroup([(k, program.terms[k]) for k in smooth], n).lipschitz()
        self.box = None
        if program.has_bounds:
            self.box = tuple(
                backend.asarray(np.full(n, fill) if bound is None else bound)
                for bound, fill in ((program.l, -np.inf), (program.u, np.inf))
            )
        # The grid of 2-D TV in a box, whose step the backend may fuse
        # (``Backend.tv_pdhg_iteration``), and its discs' radii on the device.
        self.tv = tv_in_a_box(program)
        self.scheme = STRUCTURED_SCHEME if self.tv is None else TV_BOX_SCHEME
        self.tv_weight = None if self.tv is None else backend.asarray(self.tv.w0)

    def describe(self) -> list[str]:
        """The verbose header's lines about the splitting."""
        prox = self.prox
        prox_name = self.program.terms[prox.position].function.describe() if prox else "none"
        if self.box is not None:
            prox_name = "the bounds l <= x <= u (projection)"
        return [
            f"prox term: {prox_name}; smooth terms by gradient: {len(self.smooth.terms)} "
            f"(L_h <= {self.L_h:.3e}); dual blocks: {len(self.dual.terms)} "
            f"(scaled to norm 1, ||K~||^2 <= {self.norm_K**2:g})"
        ]

    def initial(self, warm: dict | None) -> tuple[_Point, float]:
        """The starting point (the warm start when its shapes match, else 0) and primal
        weight."""
        program, warm = self.program, warm or {}
        dual_b = np.concatenate([program.terms[k].b for k in self.dual.positions] or [np.zeros(0)])
        x, y = np.zeros(program.n), np.zeros(self.dual.m)
        omega = _initial_primal_weight(program.c, dual_b)
        if np.shape(warm.get("x")) == (program.n,) and np.shape(warm.get("y")) == (self.layout.m,):
            x = np.array(warm["x"], dtype=np.float64)
            y = self._dual_rows(np.asarray(warm["y"], dtype=np.float64))
            omega = float(warm.get("primal_weight", omega))
        x = self.backend.asarray(x)
        x = x if self.box is None else self._project(x)
        return self.point(x, self.backend.asarray(y)), omega

    def _project(self, x: Any) -> Any:
        """proj_[l, u](x)."""
        xp = self.backend.xp
        return xp.minimum(xp.maximum(x, self.box[0]), self.box[1])

    def point(self, x: Any, y: Any) -> _Point:
        """The point (x, y) with its products."""
        return _Point(x, y, self.dual.matvec(x), self.dual.rmatvec(y), self.smooth.matvec(x))

    def advance(
        self, epoch: _Epoch, tau: float, sigma: float, gamma: float, count: int
    ) -> tuple[_Step, _Point] | None:
        """None: a Program's iterations run one ``iterate`` at a time (the interface of
        ``_ConeProblem.advance``)."""
        return None

    def iterate(
        self, epoch: _Epoch, average: _Point, tau: float, sigma: float, gamma: float
    ) -> tuple[_Step, _Point, _Point | None]:
        """T(z) of the epoch's z, the running average, and the epoch's next point: for
        2-D TV in a box (``self.tv``) all three in one compiled pass
        (``tv_pdhg_iteration``: the KM point (1 + gamma) T(z) - gamma z and the average
        k/(k+1) average + T(z)/(k+1), bit for bit ``_plain_iteration``'s), else
        ``_plain_iteration``."""
        if self.tv is None or self.scheme.halpern or not self.scheme.average:
            return _plain_iteration(self, epoch, average, tau, sigma)
        k = epoch.k
        mean = (average.x, average.y, average.Kx, average.Kty) if k > 0 else None
        fields = self._tv_iteration(
            epoch.z, tau, sigma, (1.0 + gamma, -gamma, mean, k / (k + 1), 1.0 / (k + 1))
        )
        if fields is None:
            return _plain_iteration(self, epoch, average, tau, sigma)
        Hx = self.smooth.matvec(fields[0])
        step = _Step(_Point(*fields[:4], Hx), fields[4], None, None)
        advanced = _Point(*fields[5:9], self.smooth.matvec(fields[5]))
        if k > 0:
            average = _Point(*fields[9:13], self.smooth.matvec(fields[9]))
        else:
            average = step.point
        return step, average, advanced

    def _tv_iteration(
        self, p: _Point, tau: float, sigma: float, combination: tuple | None = None
    ) -> tuple | None:
        """``Backend.tv_pdhg_iteration`` at the point p (the TV block's dual step is
        sigma times its row weight), or None where the backend has no fused form."""
        return self.backend.tv_pdhg_iteration(
            self.tv, self.tv_weight, p.x, p.Kty, p.y, p.Kx, self.c, self.box[0], self.box[1],
            tau, sigma * float(self.block_weight[0]), combination,
        )  # fmt: skip

    def step(self, p: _Point, tau: float, sigma: float) -> _Step:
        """T(p) (module docstring): one product with every A_i and A_i'; the backend's
        fused step when the program is 2-D TV in a box (``self.tv``,
        ``Backend.tv_pdhg_iteration``: one compiled pass on NumPy, three kernels on
        CuPy)."""
        smooth, dual = self.smooth, self.dual
        fused = None if self.tv is None else self._tv_iteration(p, tau, sigma)
        if fused is not None:
            x, y, Kx, Kty, z_dual = fused[:5]
            return _Step(_Point(x, y, Kx, Kty, smooth.matvec(x)), z_dual, None, None)
        grad = self.c + smooth.rmatvec(smooth.gradient(p.Hx - smooth.b))
        v = p.x - tau * (grad + p.Kty)
        z_prox = y_prox = None
        if self.box is not None:
            x = self._project(v)
        elif self.prox is None:
            x = v
        else:
            x, z_prox, y_prox = self.prox.prox(v, tau)
        Kx = dual.matvec(x)
        w = p.y + (sigma * self.row_weight) * (2.0 * Kx - p.Kx - dual.b)
        y = dual.concat(
            [
                term.function.prox_conj(w[rows], sigma * weight)
                for term, rows, weight in zip(
                    dual.terms, dual.slices, self.block_weight, strict=True
                )
            ]
        )
        z_dual = (w - y) / (sigma * self.row_weight)
        point = _Point(x, y, Kx, dual.rmatvec(y), smooth.matvec(x))
        return _Step(point, z_dual, z_prox, y_prox)

    def residual(self, p: _Point, Tp: _Point, tau: float, sigma: float) -> float:
        """The fixed-point residual ||p - T(p)||_M (one scalar read back)."""
        dx, dy, dKx = p.x - Tp.x, p.y - Tp.y, p.Kx - Tp.Kx
        r2 = (dx @ dx) / tau + (dy @ (dy / self.row_weight)) / sigma - 2.0 * (dy @ dKx)
        return math.sqrt(max(self.backend.scalar(r2), 0.0))

    def norms(self, dp: _Point) -> tuple[float, float]:
        """(||dx||, ||dy~||) of a move, dy~_j = ||K_j|| dy_j (the scaled blocks' duals)."""
        dx, dy, scalar = dp.x, dp.y, self.backend.scalar
        return math.sqrt(scalar(dx @ dx)), math.sqrt(scalar(dy @ (dy / self.row_weight)))

    def check(
        self, it: int, step: _Step, base: _Point, anchor: _Point, best: BestIterate
    ) -> _Check:
        """KKT error at T(base): ((x, z, y), A x, A'y) stacked in term order (module
        docstring), on the backend's arrays."""
        p, smooth, dual, concat = step.point, self.smooth, self.dual, self.layout.concat
        z_s = p.Hx - smooth.b
        y_s = smooth.gradient(z_s)
        Aty = smooth.rmatvec(y_s) + p.Kty
        blocks: dict[int, tuple[Any, Any, Any]] = {}
        for group, z_g, y_g, Ax_g in ((smooth, z_s, y_s, p.Hx), (dual, step.z_dual, p.y, p.Kx)):
            for k, rows in zip(group.positions, group.slices, strict=True):
                blocks[k] = (z_g[rows], y_g[rows], Ax_g[rows])
        if self.prox is not None:
            op = self.prox.term.op
            blocks[self.prox.position] = (step.z_prox, step.y_prox, op.matvec(p.x))
            Aty = Aty + op.rmatvec(step.y_prox)
        order = [blocks[k] for k in range(len(self.program.terms))]
        z, y, Ax = (concat([block[i] for block in order]) for i in range(3))
        err = self.checker.evaluate(p.x, z, y, Ax=Ax, Aty=Aty)
        best.offer(err, p.x, z, y)
        return _Check(err, (p.x, z, y), s.OPTIMAL if err.converged else None)

    def host_point(self, point: Point | None) -> Point | None:
        """A point of device vectors copied to the host."""
        return None if point is None else tuple(self.backend.to_host(v) for v in point)

    def limit(self) -> None:
        """Nothing beyond the best iterate when a limit stops the run."""
        return None

    def polish_feasibility(
        self, it: int, err: KKTError, point: _Point, omega: float, best: BestIterate
    ) -> tuple[None, int]:
        """A Program's terms are not polished (``_FeasibilityPolish`` is for LPs)."""
        return None, 0

    def _dual_rows(self, y: np.ndarray) -> np.ndarray:
        """The dual blocks' rows of a y stacked in term order."""
        if not self.dual.terms:
            return np.zeros(0)
        return np.concatenate([y[self.layout.slices[k]] for k in self.dual.positions])


class PDHG(SteppedAlgorithm):
    """Restarted PDHG for an AssembledProgram whose terms are cone indicators or a
    Program (module docstring).

    Parameters
    ----------
    program : AssembledProgram or Program
    options : SolverOptions
    warm_start : dict, optional
        ``x`` (n,), ``y`` (m,) of an earlier solve (``z`` is not needed; unscaled on a cone
        program) and, optionally, its final ``primal_weight``.
    """

    name = "pdhg"

    def steps(self, backend: Backend, t0: float, reason: str) -> Steps:
        """The run as a generator (``cvxprox.solvers.common.algorithm.Steps``)."""
        if isinstance(self.program, Program):
            problem = _StructuredProblem(self.program, self.opts, backend)
        else:
            problem = _ConeProblem(self.program, self.opts, backend, t0)
        return (yield from self._run(problem, backend.name, t0, reason))

    def _run(self, problem: Any, backend: str, t0: float, reason: str) -> Steps:
        """The solve of ``problem`` (a _ConeProblem or _StructuredProblem), started at t0:
        a ``Progress`` at every check."""
        opts, scheme = self.opts, problem.scheme
        norm_K, L_h = problem.norm_K, problem.L_h
        start, omega = problem.initial(self.warm_start)
        omega_floor = _primal_weight_floor(norm_K, L_h)
        omega = max(omega, omega_floor)
        tau, sigma, gamma = _step_sizes(omega, norm_K, L_h, scheme.relaxation)
        epoch = _Epoch(problem.backend, scheme, start)
        average = start
        setup_time = time.perf_counter() - t0

        log = IterationLog(opts.verbose, self.log_tag)
        log.header(
            self.program,
            "PDHG",
            reason,
            [
                *problem.describe(),
                f"steps: tau={tau:.2e} sigma={sigma:.2e} primal weight={omega:.2e} "
                f"relaxation={gamma:.2f} ({'Halpern' if scheme.halpern else 'KM'})",
                f"restarts on r=||z - T(z)||_M{' (or the average)' if scheme.average else ''}: "
                f"r <= {scheme.sufficient} r0, r <= {scheme.necessary} r0 and rising, "
                f"k >= {scheme.artificial} iters",
                f"eps_abs={opts.eps_abs:.1e} eps_rel={opts.eps_rel:.1e} "
                f"eps_infeas={opts.eps_infeas:.1e} backend={backend} "
                f"device={opts.device} dtype={opts.dtype} "
                f"max_iters={opts.max_iters} time_limit={opts.time_limit}",
            ],
        )

        best = BestIterate()
        stop = None
        last: _Check | None = None
        restarts = logged = it = polish_iters = next_test = tests = 0
        next_log = 10 * opts.check_every
        while it < opts.max_iters:
            it += 1
            # The iterations up to the next check, in one call where the problem has one.
            count = min(-it % opts.check_every, opts.max_iters - polish_iters - it) + 1
            looped = None
            if epoch.k > 0 and count > 1:
                looped = problem.advance(epoch, tau, sigma, gamma, count)
            z, k = epoch.z, epoch.k
            if looped is not None:
                it += count - 1
                step, advanced = looped
            else:
                step, average, advanced = problem.iterate(epoch, average, tau, sigma, gamma)
            if k == 0:
                epoch.r0 = problem.residual(z, step.point, tau, sigma)
            final = it + polish_iters >= opts.max_iters
            if it % opts.check_every == 0 or final:
                candidates = [(z, step)]
                if scheme.average and k > 0:
                    candidates.append((average, problem.step(average, tau, sigma)))
                out_of_time = time.perf_counter() - t0 > opts.time_limit
                test = it >= next_test or final or out_of_time
                tests += test
                r = math.inf
                for base, candidate in candidates:
                    r_cand = problem.residual(base, candidate.point, tau, sigma)
                    if not test:
                        if r_cand < r:
                            r, restart_point, restart_base = r_cand, candidate.point, base
                        continue
                    checked = problem.check(it, candidate, base, epoch.anchor, best)
                    if checked.status is not None or r_cand < r:
                        r, last, restart_point = r_cand, checked, candidate.point
                        restart_base = base
                    if checked.status is not None:
                        break
                if test:
                    if last.status is not None:
                        break
                    polished, spent = problem.polish_feasibility(
                        it + polish_iters, last.err, restart_point, omega, best
                    )
                    polish_iters += spent
                    if polished is not None:
                        last = polished
                        break
                    spacing = check_spacing(last.err.normalized, _CHECK_COST, it, opts.check_every)
                    next_test = it + spacing * opts.check_every
                if test and it >= next_log:
                    log.row(it + polish_iters, last.err, tau)
                    logged = it
                    next_log = it + 10 * opts.check_every
                if out_of_time or it + polish_iters >= opts.max_iters:
                    break
                stop = yield Progress(it + polish_iters, 1.0, best, setup_time)
                if stop is not None:
                    break
                if epoch.restart_due(r, it):
                    omega = _restart_weight(
                        problem, epoch, restart_point, restart_base, omega, omega_floor
                    )
                    tau, sigma, gamma = _step_sizes(omega, norm_K, L_h, scheme.relaxation)
                    epoch.restart(restart_point)
                    restarts += 1
                    continue
            epoch.advance(step.point, gamma, advanced)

        if last is not None and logged != it:
            log.row(it + polish_iters, last.err, tau)
        if last is not None and last.status is not None:
            last.point = problem.host_point(last.point)
        else:
            best.point = problem.host_point(best.point)
        solve_time = time.perf_counter() - t0
        info = {
            "restarts": restarts,
            "termination_tests": tests,
            "primal_weight": omega,
            "tau": tau,
            "sigma": sigma,
            "norm_A": norm_K,
            "lipschitz": L_h,
            "feasibility_polish_iterations": polish_iters,
        }
        return finish(
            None if last is None else last.status,
            None if last is None else last.certificate,
            None if last is None else (last.point, last.err),
            best,
            opts,
            (self.name, it + polish_iters, solve_time, setup_time),
            info,
            log,
            {"primal_weight": omega},
            problem.limit(),
            stop,
        )


def tv_in_a_box(program: Program) -> TVGrid | None:
    """The grid of a program whose only term is CVXPY's isotropic 2-D TV with b = 0
    (``tv_grid``) and which has variable bounds, such as TV inpainting: PDHG's step on
    it is one compiled pass over the image on NumPy (``cvxprox.backend.jit.pdhg_tv``);
    else None."""
    if not program.has_bounds or len(program.terms) != 1:
        return None
    grid = tv_grid(program.terms, program.n)
    return grid if grid is not None and grid.iso else None


def _polar_free_rows(cone: ProductCone) -> np.ndarray | None:
    """The rows of zero cones (bool, (m,)) when every member of ``cone`` is a zero or a
    nonnegative cone (the backend's fused step, ``Backend.pdhg_dual_step``, applies), else
    None."""
    members = cone.cones if isinstance(cone, ProductCone) else [cone]
    if not all(isinstance(member, (ZeroCone, NonnegCone)) for member in members):
        return None
    return np.concatenate(
        [np.full(member.dim, isinstance(member, ZeroCone)) for member in members]
        or [np.zeros(0, dtype=bool)]
    )


def _norm(backend: Backend, v: Any) -> float:
    """||v||_2 of a device vector (scaled data: no overflow to guard against)."""
    return math.sqrt(backend.scalar(v @ v))


def _max_eigenvalue(backend: Backend, apply: Callable[[Any], Any], v: Any) -> float:
    """lambda_max of a symmetric PSD operator B by power iteration from v (a lower bound).

    Returns ||B u|| for the last unit iterate u, which lies between u'Bu and lambda_max.
    """
    norm = _norm(backend, v)
    if norm == 0.0:
        return 0.0
    u = v / norm
    lam = 0.0
    for _ in range(_POWER_ITERS):
        w = apply(u)
        lam_new = _norm(backend, w)
        if lam_new == 0.0:
            return 0.0
        u = w / lam_new
        if abs(lam_new - lam) <= _POWER_TOL * lam_new:
            return lam_new
        lam = lam_new
    return lam


def _initial_primal_weight(c: np.ndarray, b: np.ndarray) -> float:
    """PDLP's omega = ||c||_2 / ||b||_2 (1 when either is ~0)."""
    c_norm, b_norm = float(np.linalg.norm(c)), float(np.linalg.norm(b))
    if c_norm > _TINY and b_norm > _TINY:
        return _clip(c_norm / b_norm, _OMEGA_MIN, _OMEGA_MAX)
    return 1.0


def _clip(value: float, low: float, high: float) -> float:
    """value clipped to [low, high]."""
    return min(max(value, low), high)


def _primal_weight_floor(norm_K: float, L_h: float) -> float:
    """The smallest primal weight worth using: _WEIGHT_FLOOR beta L_h / ||K~||.

    Below omega = beta L_h / ||K~|| the step condition is dominated by the smooth terms, so
    tau ~ 1 / (beta L_h) stops growing as omega falls while sigma = tau omega^2 keeps
    shrinking. Early epochs, when x moves towards the minimizer of the smooth terms and y
    hardly moves, would otherwise drive omega (and the dual steps) towards 0.
    """
    if L_h <= 0.0 or norm_K <= 0.0:
        return _OMEGA_MIN
    return _clip(_WEIGHT_FLOOR * _BETA * L_h / norm_K, _OMEGA_MIN, _OMEGA_MAX)


def _restart_weight(
    problem: Any, epoch: _Epoch, point: _Point, base: _Point, omega: float, floor: float
) -> float:
    """The primal weight for ``epoch`` restarting at ``point`` = T(``base``): PDLP's
    update (``_updated_primal_weight``) from the parts of the step T(q) - q where the
    epoch's scheme has ``weight_from_step``, else of the move from its anchor (module
    docstring)."""
    reference = base if epoch.scheme.weight_from_step else epoch.anchor
    dx, dy = problem.norms(_combination(problem.backend, (1.0, point), (-1.0, reference)))
    return _updated_primal_weight(omega, dx, dy, floor, epoch.scheme.smoothing)


def _updated_primal_weight(
    omega: float, dx_norm: float, dy_norm: float, floor: float, theta: float
) -> float:
    """PDLP's smoothed update log omega <- theta log(|dy| / |dx|) + (1 - theta) log omega,
    clipped to [floor, _OMEGA_MAX]; omega unchanged when either part of the move or
    step is ~0."""
    if dx_norm <= _TINY or dy_norm <= _TINY:
        return omega
    log_omega = theta * math.log(dy_norm / dx_norm) + (1.0 - theta) * math.log(omega)
    return _clip(math.exp(log_omega), floor, _OMEGA_MAX)


def _step_sizes(
    omega: float, norm_K: float, L_h: float, relaxation: float = 1.0
) -> tuple[float, float, float]:
    """tau = eta / omega, sigma = eta omega and gamma = relaxation (1/alpha - 1) (module
    docstring).

    eta is the positive root of omega ||K~||^2 eta^2 + beta L_h eta - omega = 0, i.e. the
    largest with 1/tau - sigma ||K~||^2 >= beta L_h, times the safety factor; then
    1/alpha - 1 = 1 - 1/(2 beta) for the beta the steps reach (1 when L_h = 0). Without
    operators and smooth terms (nothing bounds the step) tau = sigma = 1.
    """
    bL = _BETA * L_h
    root = bL + math.sqrt(bL * bL + 4.0 * omega * omega * norm_K * norm_K)
    eta = _STEP_SAFETY * 2.0 * omega / root if root > 0 else omega
    tau, sigma = eta / omega, eta * omega
    if L_h <= 0.0:
        return tau, sigma, relaxation
    beta = (1.0 / tau - sigma * norm_K * norm_K) / L_h
    return tau, sigma, relaxation * (1.0 - 1.0 / (2.0 * beta))
