"""FISTA on the dual of a strongly convex, diagonal quadratic plus prox terms
(Beck & Teboulle's fast gradient projection, 2009, for TV denoising and its relatives).

The program (``cvxprox.ir.program.Program``, x in R^n)

    minimize  F(x) + sum_{j in G} g_j(K_j x - b_j),
    F(x) = c'x + sum_{i in Q} f_i(A_i x - b_i) = 1/2 x'Hx + q'x + const,

where each f_i (i in Q) is ``SumSquares`` (f(v) = sum_r w_r v_r^2) or a ``Quadratic``
with a diagonal Q (f(v) = w sum_r Q_rr v_r^2), on an operator A_i each of whose rows has at
most one nonzero (identity, diagonal, gather, or such a matrix: ``DiagonalQuadratic``).
With kappa_r = 2 w_r (2 w Q_rr) the curvature of row r, F's Hessian is the diagonal

    H = sum_i (A_i o A_i)' kappa_i,     q = c - sum_i A_i'(kappa_i o b_i),

and the method applies when every H_j > 0 (F is mu-strongly convex, mu = min H). Every
other term (norms, group l2 / TV, Huber, cones, boxes, sums of squares of any other
operator, ...) is a g_j: only its prox is used, through prox_{s g*}(v) (Moreau).

Dual. With K, b the g-terms' operators and constants stacked and the variable bounds
l <= x <= u of the program (infinite where it has none), x(y) = argmin_{l <= x <= u} F(x)
+ y'Kx = clip(-(q + K'y) / H, l, u) (F is separable), and the dual problem is

    maximize_y  phi(y) - sum_j g_j*(y_j),   phi(y) = F(x(y)) + y'(K x(y) - b),

phi concave and smooth, grad phi(y) = K x(y) - b, Lipschitz with L = ||K H^{-1/2}||^2
(at most ||K||^2 / mu; 8 / mu for 2-D forward differences). FISTA minimizes
psi(y) = -phi(y) + sum_j g_j*(y_j): from the extrapolated point y~ (with K'y~ a
combination of the stored K'y_k, K'y_{k-1}: no product),

    x~   = -(q + K'y~) / H,
    y+_j = prox_{g_j*/L}(y~_j + (K_j x~ - b_j) / L),

two products per iteration (K x~ and K'y+). The step rule is that of ``fista.py``
(Scheinberg, Goldfarb & Bai 2014: the trial constant decreases by ``_DECREASE`` after each
step, doubles until the descent test holds), started from a guaranteed bound on
||K H^{-1/2}||^2 (``dual_lipschitz``; clipping does not raise it). -phi(y) = psi(q + K'y) +
b'y with psi separable (a quadratic 1/2 ||w||^2_{H^{-1}} without bounds, Huber-like with
them), so the descent test psi(w+) - psi(w~) - psi'(w~)'(w+ - w~) <= L/2 ||d||^2 is exact
and needs no product: with d = y+ - y~, v = -w / H, x = clip(v, l, u), dx = x+ - x~,

    sum_r H_r dx_r (dx_r / 2 + v+_r - x+_r) <= L/2 ||d||^2,

which is ||K'd||^2_{H^{-1}} <= L ||d||^2 without bounds.

Adaptive restart (O'Donoghue & Candes 2015, gradient scheme): when
(y~ - y+)'(y+ - y_k) > 0 the momentum is reset. Nothing is tuned.

Optimality. The checks test the candidate of a step from the current iterate y_k without
extrapolation, at the last accepted constant L (``DualIterations.probe``):

    x_k = x(y_k),  y' = prox_{g*/L}(y_k + (K x_k - b) / L),  z' = L (y_k - y') + K x_k - b,

with the answer x = x(y') (so the dual residual c + A'y = H x + q + K'y' is zero up to
round-off where no bound is active, and on an active bound it is the bound's multiplier,
H (x - v), of the bound's sign) and the g-terms' pair (z', y'), y'_j in dg_j(z'_j) exactly
(the prox's optimality condition); the quadratic terms have z_i = A_i x - b_i, y_i =
grad f_i(z_i). ``StructuredChecker`` tests the primal residual K x - b - z', the dual
residual and the duality gap on the unscaled problem, per row, as for every other
method on a Program's terms. The residual is then L (y_k - y') + K (x_k - x), the
gradient mapping at y_k, whose size FISTA's analysis bounds (by sqrt(2 L (psi(y_k) -
psi*))); the same pair at the extrapolated point y~ rides the momentum's oscillation.
It costs one more trial step per check. TV denoising at eps 1e-4: 512 x 512 passes at
iteration 370 (the extrapolated pair at 1000: its worst ratio 0.96 against 7.3 at 370),
1024 x 1024 at 450 (860).

Checks. A check costs about ``_CHECK_COST`` iterations (``_CHECK_COST_FUSED`` for the
fused ones). The test runs every ``check_every`` iterations, or further apart: floor(log2
r) periods after a worst ratio r >= 4 of a residual to its tolerance, at most 4, and at
least sqrt(2 cost k) iterations after one at iteration k, which balances the checks'
cost against the iterations run past convergence
(``cvxprox.solvers.common.termination.check_spacing``). On the fused iterations a check
tests the TV rows first, from the candidate and ``term_sums`` alone: their residual is
the largest |K x - z'| over the term's rows against the tolerance of its largest
magnitude, exactly the share the full test takes for them, so when it fails so does the
full test, and the check stops there (no stacked point, no dual residual or gap; the
verbose row shows the primal residual only). The spacing, the precision and the window
rounds then go by that ratio. The full test runs when the TV rows pass, at the run's
last check (a limit reached: the run returns a fully tested point), and for a
certificate test on a program with bounds. TV denoising 1024 x 1024 at defaults: one full
test in 22 checks, and about 1 s less for the same 1732 iterations (three runs of each,
alternating: 4.7-5.1 s against 5.7-6.4 s).

Windows. On the fused iterations, a check that fails on a few rows of the image is
followed by a round of block-coordinate descent on the dual over small windows around
them, every other row held fixed (``cvxprox.solvers.dual_windows``: when, how far, and
what it measured), and by a check at once; its work counts in the iterations as image
passes (TV denoising 1024 x 1024 at eps 1e-6: 1732 iterations against 6570).

Precision. On NumPy, the fused iterations start in single precision when eps_abs and
eps_rel are at least ``_SINGLE_EPS`` (the pass is compute-bound, and float32 lanes do
twice the work of float64 ones: TV denoising 1024 x 1024 on two threads, 1.7 ms a pass
against 3.1 ms). The checks stay exact: each one's candidate is computed in double
precision from the current y (a float32 vector is a valid dual point), so a check never
passes on single precision's rounding. The iterations go on in double precision
(``FusedTVIterations.promote``, ``Promotion``) from the first check whose worst ratio of
a residual to its tolerance is at most ``_PROMOTE_RATIO``, whose TV rows' tolerance is
under ``_SINGLE_FLOOR`` max |x| (rounding some 6e-8 of |x| per operation would then be a
fair share of it), or that is the ``_STALL_CHECKS``-th in a row without a worst ratio
under ``_PROGRESS`` times the smallest before; it takes effect after the check's window
round, if any. Window rounds solve their windows in double precision from the rounded y
and write theirs back rounded. On the phantom at defaults at 1024 x 1024 all 1619 of the
run's own iterations are in single precision (the 1732 it counts include the window
rounds' 113 image passes). Switching at the first window round instead (after 1450)
gave the same iterations on the phantom (512 x 512 seeds 0-2 and 1024 x 1024 seeds 0-1)
and about 0.4 s more at 1024 x 1024; the test image's twelve runs of ``dual_windows``'
docstring 43582 passes against 43639. A ratio of 1.5 in place of 3 changed nothing on the
phantom and took the test image to 43803 passes.

Infeasibility. When the indicator terms cannot hold together, the dual objective is
unbounded and the iterates diverge along a Farkas certificate: y - y_0 (y_0 the
starting point) is tested (``FarkasTest``, as in split ADMM) at the first check after
every ``_CERTIFICATE_EVERY`` periods of ``check_every`` iterations; with variable bounds
on the program with its bound term (``with_bound_term``), whose y is the bound
multiplier -(H x + q + K'y) = H (v - x). The other terms' duals stay bounded while the
indicators' grow without bound, so the share of K'(y - y_0) that the test does not count
vanishes relative to it.

The iterations run on the arrays of the backend the options select (``cvxprox.backend``),
with the terms' device versions; the scalars of the step rule are read back one at a
time, and x, z, y are copied to the host once, at the end (``DualIterations``). On CuPy,
when the prox terms are CVXPY's isotropic 2-D total variation (b = 0), a trial step is
two kernels and one read-back of three sums (``Backend.dual_tv_trial``,
``cvxprox.backend.cuda_kernels.TVDualTrial``). On NumPy,
when the prox terms are CVXPY's 2-D total variation (isotropic or anisotropic, b = 0), the
iterations between two checks run as one compiled call (``cvxprox.backend.jit.dual_tv``:
one pass over the image per iteration instead of some twenty NumPy temporaries, in
column blocks on several threads for large images, the same arithmetic up to rounding;
``DualIterations`` is its reference).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import cvxpy.settings as s
import numpy as np
import scipy.sparse as sp

from cvxprox.backend import Backend
from cvxprox.backend.jit.dual_tv import FusedTVIterations, TVGrid, tv_grid, tv_lipschitz
from cvxprox.functions.prox import Quadratic, SumSquares
from cvxprox.ir.program import Program, Term
from cvxprox.operators.linops import Compose, Diagonal, Identity, VStack
from cvxprox.solvers.admm.split import FarkasTest, with_bound_term
from cvxprox.solvers.common.algorithm import Algorithm
from cvxprox.solvers.common.log import IterationLog
from cvxprox.solvers.common.result import BestIterate, SolveResult, finish, result_to_host
from cvxprox.solvers.common.term_checks import SPARSE_KINDS, StructuredChecker, TermSums
from cvxprox.solvers.common.termination import check_spacing
from cvxprox.solvers.common.terms import StackedTerms, TermLayout
from cvxprox.solvers.dual_windows import MARGIN, SHARE, WindowRefinement

# Step rule (fista.py's): the trial constant after an accepted step is _DECREASE L
# (``DualFISTA.iterations``' default); a failed descent test multiplies it by
# _BACKTRACK. Passes (iterations and failed trials) with 0.97 against 0.9: TV denoising
# at defaults (``build_tv_denoising``) 512 x 512 seeds 0-2 1771, 1782, 1751 against
# 1906, 1925, 1751, 1024 x 1024 1782 against 1917, 192 x 192 1583 against 1740; the
# twelve runs of the test image of ``tests/test_dual_windows.py`` (three sizes, free and
# in [0, 1], eps 1e-6 and 1e-7, fused) 44289 against 52154 in all, one run 1% more than
# with 0.9. 0.95: 1024 x 1024 1992 passes; a backtrack of 1.5: 2101. FISTA's inner TV
# prox (``fista.TVProxTerm``: short warm-started runs) keeps 0.9.
_DECREASE = 0.97
_BACKTRACK = 2.0
_MAX_BACKTRACKS = 100
# The constant is kept above _L_FLOOR times its first value.
_L_FLOOR = 1e-12
# Images of fewer pixels take the plain iterations: on a first solve, loading Numba and
# the cached kernel costs more than they do (TV denoising at eps 1e-4 on a loaded 2-core
# machine: 128 x 128 1.0 s fused against 0.7 s plain, a second solve 0.3 s against 0.7 s;
# 192 x 192 1.7 s against 3.1 s).
FUSED_FROM = 160 * 160
# What a termination test costs, in iterations (``check_spacing``): about as much as one
# plain iteration, and some ten to twenty of the fused ones (TV denoising 1024 x 1024
# on two threads: about 40 ms, the TV terms' share in one compiled pass, against 3.1 ms
# a pass in double precision and 1.7 ms in single). 15 in the spacing, with double
# precision throughout (phantom 512 x 512 seeds 0-2, 1024 x 1024, 192 x 192 at
# defaults): 1800, 1811, 1631, 1801, 1620 iterations against 1700, 1711, 1681, 1711,
# 1520 with 10, in the same times; 20 with the single-precision passes (1024 x 1024
# seeds 0-1): 1772 and 1792 against 1732 and 1721, within the machine's noise in time.
_CHECK_COST = 1.0
_CHECK_COST_FUSED = 10.0
# The fused iterations run in single precision until a check's worst ratio of a residual
# to its tolerance is at most _PROMOTE_RATIO, a check whose TV rows' tolerance is under
# _SINGLE_FLOOR times max |x| (single precision's rounding, some 6e-8 of |x| per
# operation, would then be a fair share of it), or _STALL_CHECKS checks in a row whose
# worst ratio is not below _PROGRESS times the smallest before: module docstring,
# Precision.
_PROMOTE_RATIO = 3.0
_SINGLE_FLOOR = 1e-6
_STALL_CHECKS = 4
_PROGRESS = 0.95
# They start in single precision only when eps_abs and eps_rel are at least this.
_SINGLE_EPS = 1e-6
# Window rounds taken at consecutive checks, with no iterations between them, at most.
_ROUNDS_IN_A_ROW = 2
# Farkas certificate tests: one per this many times check_every iterations.
_CERTIFICATE_EVERY = 10


class DiagonalQuadratic:
    """F(x) = c'x + sum_i f_i(A_i x - b_i) = 1/2 x'Hx + q'x + const for the terms that
    ``curvature`` accepts, with H (n,) the diagonal Hessian and q (n,) the gradient at 0.

    Parameters
    ----------
    program : Program
    positions : list of int
        The accepted terms (``curvature`` is not None for each).
    """

    def __init__(self, program: Program, positions: list[int]) -> None:
        H = np.zeros(program.n)
        q = np.array(program.c, dtype=np.float64)
        for k in positions:
            term = program.terms[k]
            kappa = self.curvature(term)
            if isinstance(term.op, (Identity, Diagonal)):
                # A = diag(d): A'diag(kappa)A = diag(d^2 kappa), no matrix (a 1M-pixel
                # image's identity as CSR took 25 ms, and ``applies`` forms F too).
                d = 1.0 if isinstance(term.op, Identity) else term.op.d
                H += d * d * kappa
                q -= d * (kappa * term.b)
                continue
            M = sp.csr_array(term.op.to_sparse())
            H += (M * M).T @ kappa
            q -= M.T @ (kappa * term.b)
        self.H = H
        self.q = q

    @staticmethod
    def curvature(term: Term) -> np.ndarray | None:
        """kappa (m_i,), with f_i(v) = sum_r kappa_r v_r^2 / 2, when f_i is a sum of squares
        (or a quad_form with a diagonal Q) and each row of A_i has at most one nonzero
        (A_i'diag(kappa)A_i is then diagonal); else None."""
        function = term.function
        if isinstance(function, SumSquares):
            kappa = np.broadcast_to(2.0 * np.asarray(function.weight), (term.size,))
        elif isinstance(function, Quadratic):
            Q = function.Q
            if np.count_nonzero(Q - np.diag(np.diag(Q))):
                return None
            kappa = 2.0 * function.weight * np.diag(Q)
        else:
            return None
        if not isinstance(term.op, SPARSE_KINDS):
            return None
        if not isinstance(term.op, (Identity, Diagonal)):
            M = sp.csr_array(term.op.to_sparse())
            if M.shape[0] and int(np.max(np.diff(M.indptr))) > 1:
                return None
        return np.array(kappa, dtype=np.float64)


def split_terms(program: Program) -> tuple[list[int], list[int]]:
    """(positions of the terms that make up F, positions of the prox terms g_j)."""
    quadratic, others = [], []
    for k, term in enumerate(program.terms):
        (quadratic if DiagonalQuadratic.curvature(term) is not None else others).append(k)
    return quadratic, others


def dual_lipschitz(
    program: Program, positions: list[int], H: np.ndarray, grid: TVGrid | None = None
) -> float:
    """An upper bound on L = ||K H^{-1/2}||^2 for the stacked operators K of the terms at
    ``positions``, without products: when every operator is a sparse kind, the guaranteed
    min(||M||_1 ||M||_inf, ||M||_F^2) of M = K H^{-1/2} (8 / mu for 2-D forward
    differences, a bound of the spectral norm that is tight there); else ||K||^2 / min H
    from the operators' ``norm_bound``. The step rule lowers a loose constant by
    ``_DECREASE`` per step. ``grid``: the terms' ``TVGrid`` (``tv_grid``) when they are
    2-D TV; on ``cp.tv``'s matrix the same bound then comes from the grid
    (``tv_lipschitz``: no sparse products on the 2M x 1M matrix of a 1024 x 1024
    image)."""
    ops = [program.terms[k].op for k in positions]
    if not ops:
        return 0.0
    if grid is not None and grid.iso:
        return tv_lipschitz(grid, H)
    scale = 1.0 / np.sqrt(H)
    if all(isinstance(op, SPARSE_KINDS) for op in ops):
        # With |K| (entrywise), column sums scale o |K|'1, row sums |K| scale, and
        # ||M||_F^2 = (K o K)'1 . scale^2, one operator at a time: no stacked copy.
        columns, inf, frobenius = np.zeros(len(scale)), 0.0, 0.0
        for op in ops:
            K = sp.csr_array(op.to_sparse())
            magnitude = sp.csr_array((np.abs(K.data), K.indices, K.indptr), shape=K.shape)
            columns += magnitude.T @ np.ones(K.shape[0])
            inf = max(inf, float(np.max(magnitude @ scale, initial=0.0)))
            magnitude.data *= magnitude.data
            frobenius += float((magnitude.T @ np.ones(K.shape[0])) @ (scale * scale))
        one = float(np.max(scale * columns, initial=0.0))
        return min(one * inf, frobenius)
    return Compose(VStack(ops), Diagonal(scale)).norm_bound() ** 2


class ProxTerms(StackedTerms):
    """The prox terms g_j(K_j x - b_j), stacked (``StackedTerms``), with the prox of the
    conjugates; a single term's products are its operator's own (no stacking copy)."""

    def matvec(self, x: Any) -> Any:
        """K x, shape (m,)."""
        if len(self.terms) == 1:
            return self.terms[0].op.matvec(x)
        return super().matvec(x)

    def rmatvec(self, y: Any) -> Any:
        """K'y, shape (n,)."""
        if len(self.terms) == 1:
            return self.terms[0].op.rmatvec(y)
        return super().rmatvec(y)

    def prox_conj(self, v: Any, step: float) -> Any:
        """prox_{step g_j*}(v_j) for every term, stacked, shape (m,)."""
        if len(self.terms) == 1:
            return self.terms[0].function.prox_conj(v, step)
        return self.concat(
            [t.function.prox_conj(v[r], step) for t, r in zip(self.terms, self.slices, strict=True)]
        )


class DualFISTA(Algorithm):
    """FISTA with backtracking and adaptive restart on the dual (module docstring).

    Parameters
    ----------
    program : Program
        A program for which ``DualFISTA.applies`` holds.
    options : SolverOptions
    warm_start : dict, optional
        ``y`` (m,) of an earlier solve (stacked over all terms; the prox terms' blocks are
        used) and, optionally, its final ``lipschitz`` constant.
    """

    name = "dual_fista"

    @staticmethod
    def applies(program: Program) -> tuple[bool, str]:
        """Whether the dual method can solve the program, and why (or why not)."""
        if program.P is not None:
            return False, "the program has a quadratic part P"
        quadratic, others = split_terms(program)
        if not quadratic:
            return False, (
                "no term is a sum of squares (or a diagonal quad_form) of x through an "
                "operator with at most one nonzero per row, so F is not strongly convex "
                "with a diagonal Hessian"
            )
        H = DiagonalQuadratic(program, quadratic).H
        flat = np.flatnonzero(H <= 0)
        if flat.size:
            return False, (
                f"the sums of squares on x leave {flat.size} of {program.n} variables "
                f"(x[{flat[0]}] first) without curvature, so F is not strongly convex"
            )
        names = ", ".join(program.terms[k].function.describe() for k in others) or "none"
        return True, (
            f"{len(quadratic)} sum(s) of squares give a diagonal Hessian (mu = "
            f"{float(np.min(H)):.3g}); prox terms through the dual: {names}"
        )

    def _solve(self, backend: Backend, t0: float, reason: str) -> SolveResult:
        prog, opts = self.program, self.opts
        ok, why = self.applies(prog)
        if not ok:
            raise ValueError(f"dual_fista does not apply: {why}")
        layout = TermLayout(prog, backend)
        checker = StructuredChecker(layout, opts)
        quadratic_at, prox_at = split_terms(prog)
        smooth = DiagonalQuadratic(prog, quadratic_at)
        K = ProxTerms([layout.terms[k] for k in prox_at], prog.n, backend)
        grid = tv_grid([prog.terms[k] for k in prox_at], prog.n)
        L0 = dual_lipschitz(prog, prox_at, smooth.H, grid)
        L0 = L0 if L0 > 0 else 1.0
        L_min = _L_FLOOR * L0
        L = L0
        if prog.has_bounds:
            extended = with_bound_term(prog)
            farkas = FarkasTest(
                extended,
                TermLayout(extended, backend),
                [*prox_at, len(prog.terms)],
                opts.eps_infeas,
            )
        else:
            farkas = FarkasTest(prog, layout, prox_at, opts.eps_infeas)

        y = K.backend.zeros(K.m)
        warm = self.warm_start or {}
        if np.shape(warm.get("y")) == (layout.m,):
            y_all = np.asarray(warm["y"], dtype=np.float64)
            y = backend.asarray(np.concatenate([y_all[layout.slices[k]] for k in prox_at]))
            L = max(float(warm.get("lipschitz", L)), L_min)
        bounds = (prog.l, prog.u) if prog.has_bounds else None
        single = min(opts.eps_abs, opts.eps_rel) >= _SINGLE_EPS
        steps = self.iterations(
            prog, backend, K, smooth, prox_at, bounds, y, L, L_min, grid=grid, single=single
        )
        y_start, Kty_start = steps.start
        q, H, H_inv, clip = steps.q, steps.H, steps.H_inv, steps.clip
        fused = isinstance(steps, FusedTVIterations) or steps.fused is not None
        check_cost = _CHECK_COST_FUSED if fused else _CHECK_COST
        windows = WindowRefinement(steps) if isinstance(steps, FusedTVIterations) else None
        setup_time = time.perf_counter() - t0

        log = IterationLog(opts.verbose)
        log.header(
            prog,
            "dual FISTA",
            reason,
            [
                f"F: {len(quadratic_at)} sum(s) of squares, diagonal Hessian in "
                f"[{float(np.min(smooth.H)):.3e}, {float(np.max(smooth.H)):.3e}]; "
                f"prox terms on the dual: {len(prox_at)} ({K.m} dual variables)",
                f"L = ||K H^-1/2||^2 <= {L0:.3e}, first step 1/L = {1.0 / L:.3e}; "
                f"backtracking x{_BACKTRACK:g}, decrease x{_DECREASE:g} per step",
                "adaptive restart (gradient scheme, O'Donoghue-Candes)"
                + (
                    f"; block rounds on windows around the failing rows (<= {SHARE:g} of "
                    f"the image, margin {MARGIN})"
                    if windows is not None
                    else ""
                ),
                *(
                    [
                        f"single precision until a check's worst ratio <= {_PROMOTE_RATIO:g}"
                        f", a TV tolerance under {_SINGLE_FLOOR:g} max|x|, or "
                        f"{_STALL_CHECKS} checks without progress; checks in double "
                        "precision"
                    ]
                    if windows is not None and steps.single
                    else []
                ),
                f"eps_abs={opts.eps_abs:.1e} eps_rel={opts.eps_rel:.1e} "
                f"max_iters={opts.max_iters} time_limit={opts.time_limit}",
            ],
        )

        best = BestIterate()
        status = cert = None
        err = point = None
        logged = certified = it = 0
        spacing = 1
        log_every, certify_every = 10 * opts.check_every, _CERTIFICATE_EVERY * opts.check_every
        # z, y and A x stacked over all terms, filled in place at every check; two pairs
        # of (z, y): the best iterate keeps the one it took (no copy), the next check
        # fills the other.
        Ax_stacked = backend.zeros(layout.m)
        pairs = [tuple(backend.zeros(layout.m) for _ in range(2)) for _ in range(2)]
        # A window round is tested at once (``dual_windows``): no iterations before the
        # next check; ``streak`` rounds have been taken at checks with none between.
        retest = False
        streak = 0
        promotion = Promotion()
        terms = steps.grid.terms if windows is not None else 0
        block = prox_block(layout, prox_at) if isinstance(steps, FusedTVIterations) else None
        fitted = [k for k in quadratic_at if layout.terms[k].size]
        while it < opts.max_iters or retest:
            if retest:
                count = 0
            else:
                span = spacing * opts.check_every - it % opts.check_every
                count = min(span, opts.max_iters - it)
                steps.run(count)
                streak = 0
            it += count
            certify = it // certify_every > certified // certify_every
            screened = table = None
            if windows is not None:
                Kty = steps.step_candidate()
            else:
                y, z_g, Kty = steps.probe()
            v = -(q + Kty) * H_inv
            x = clip(v)
            if windows is not None:
                # The TV rows' test first, on the candidate alone (module docstring).
                table = steps.term_sums(x)
                tol = np.array([checker.tolerance(m) for m in table[:, 1]])
                ratio = float(np.max(table[:terms, 0] / tol[:terms]))
                last = it >= opts.max_iters or time.perf_counter() - t0 > opts.time_limit
                if ratio > 1.0 and not last and not (certify and prog.has_bounds):
                    screened = (ratio, float(np.max(table[:terms, 0])))
                elif block is not None:
                    # The candidate's (y', z') straight into the stacked pair the check fills.
                    z_stacked, y_stacked = pairs[0]
                    y, z_g = steps.candidate_terms(out=(y_stacked[block], z_stacked[block]))
                else:
                    y, z_g = steps.candidate_terms()
            L = steps.L
            if screened is None:
                sums = None if table is None else tv_term_sums(steps.grid, table, prox_at)
                stacked = (*pairs[0], Ax_stacked)
                point, Ax_full, Aty = self._point(
                    layout, K, prox_at, x, z_g, y, Kty, stacked, sums, written=block is not None
                )
                # The quadratic terms' shares from the point itself: their z is A x - b.
                sums = dict(sums or {})
                for k in fitted:
                    rows = layout.slices[k]
                    sums[k] = checker.fitted_sums(k, Ax_full[rows], point[1][rows], point[2][rows])
                err = checker.evaluate(*point, Ax=Ax_full, Aty=Aty, sums=sums)
                if best.offer(err, *point, take=True):
                    pairs.reverse()
                if err.converged:
                    status = s.OPTIMAL
                    break
                ratio, failing = err.normalized, err.primal > err.primal_tol
            else:
                ratio, failing = screened[0], True
            if it // log_every > logged // log_every:
                if screened is None:
                    log.row(it, err, 1.0 / L)
                else:
                    log.primal_row(it, screened[1], 1.0 / L)
                logged = it
            spacing = check_spacing(ratio, check_cost, it, opts.check_every)
            promote = windows is not None and steps.single and promotion.due(ratio, tol[:terms], x)
            if windows is not None and failing and streak < _ROUNDS_IN_A_ROW:
                most = opts.max_iters - it - 1
                passes = windows.refine(x, tol, it, most, t0 + opts.time_limit)
                it += passes
                retest = passes > 0
                streak += retest
            else:
                retest = False
            if promote:
                steps.promote()
            if certify and screened is None:
                certified = it
                dy = y - y_start
                blocks = [dy[r] for r in K.slices]
                if prog.has_bounds:
                    v_start = -(q + Kty_start) * H_inv
                    blocks.append(H * ((v - x) - (v_start - clip(v_start))))
                cert = farkas.certificate(blocks, x)
                if cert is not None:
                    status = s.INFEASIBLE
                    cert = cert[: layout.m]
                    break
            if time.perf_counter() - t0 > opts.time_limit and not retest:
                if screened is None:
                    break
                # The run stops at a full check: one more, without iterations before it.
                retest = True

        L = steps.L
        if err is not None and logged != it:
            log.row(it, err, 1.0 / L)
        solve_time = time.perf_counter() - t0
        info = {
            "restarts": steps.restarts,
            "backtracks": steps.backtracks,
            "step": 1.0 / L,
            "lipschitz": L,
            "fused": fused,
        }
        if windows is not None:
            info["single_iterations"] = steps.single_iterations
            info["window_rounds"] = windows.rounds
            info["window_passes"] = windows.work
        point, cert = result_to_host(backend, status, point, best, cert)
        return finish(
            status,
            cert,
            (point, err) if status == s.OPTIMAL else None,
            best,
            opts,
            (self.name, it, solve_time, setup_time),
            info,
            log,
            {"lipschitz": L},
        )

    @staticmethod
    def iterations(
        program: Program,
        backend: Backend,
        K: ProxTerms,
        smooth: DiagonalQuadratic,
        prox_at: list[int],
        bounds: tuple[np.ndarray | None, np.ndarray | None] | None,
        y: Any,
        L: float,
        L_min: float,
        fuse: bool | None = None,
        grid: TVGrid | None = None,
        decrease: float = _DECREASE,
        single: bool = False,
    ) -> DualIterations | FusedTVIterations:
        """The iterations from y at the trial constant L. When the prox terms are 2-D
        total variation in a form ``tv_grid`` knows and ``fuse`` is True (None: on NumPy
        from ``FUSED_FROM`` pixels, on other backends always): on NumPy the whole loop
        compiled (``cvxprox.backend.jit.dual_tv``), elsewhere ``DualIterations`` with the
        backend's fused trial step (``Backend.dual_tv_trial``; None where it has none).
        Else ``DualIterations``, the reference. ``grid``: the prox terms' ``TVGrid``
        when the caller knows it (a solver calling this at every step). ``single``: the
        compiled iterations start in single precision (``FusedTVIterations``)."""
        n = program.n
        if bounds is not None:
            lower, upper = (
                np.full(n, fill) if bound is None else np.asarray(bound, dtype=np.float64)
                for bound, fill in zip(bounds, (-np.inf, np.inf), strict=True)
            )
            bounds = (np.broadcast_to(lower, (n,)).copy(), np.broadcast_to(upper, (n,)).copy())
        if fuse is None:
            fuse = n >= FUSED_FROM or backend.name != "numpy"
        if grid is None and fuse:
            grid = tv_grid([program.terms[k] for k in prox_at], n)
        grid = grid if fuse else None
        if grid is not None and backend.name == "numpy":
            rule = (decrease, _BACKTRACK, _MAX_BACKTRACKS)
            return FusedTVIterations(
                grid, smooth.q, smooth.H, bounds, y, L, L_min, rule, single=single
            )
        trial = None
        if grid is not None:
            trial = backend.dual_tv_trial(grid, smooth.q, smooth.H, bounds)
        return DualIterations(K, smooth, bounds, backend, y, L, L_min, trial, decrease)

    @staticmethod
    def _point(
        layout: TermLayout,
        K: ProxTerms,
        prox_at: list[int],
        x: Any,
        z_g: Any,
        y_g: Any,
        Kty_g: Any,
        stacked: tuple[Any, Any, Any],
        sums: dict[int, TermSums] | None = None,
        written: bool = False,
    ) -> tuple[tuple[Any, Any, Any], Any, Any]:
        """((x, z, y), A x, A'y) stacked in term order (module docstring), on the layout's
        backend, with z, y, A x written into ``stacked`` (three (m,) arrays); ``Kty_g`` =
        K'y_g, the prox terms' share of A'y, which the iterations keep (no product, and
        no transposed matrix built for it). A x is not formed on the rows of the terms
        in ``sums`` (the check does not read it there). The quadratic terms' z is A x - b
        exactly (``StructuredChecker.fitted_sums``). ``written``: z_g and y_g are already
        the prox terms' rows of ``stacked`` (``prox_block``)."""
        z, y, Ax = stacked
        Aty = Kty_g
        prox_rows = dict(zip(prox_at, K.slices, strict=True))
        for k, (term, rows) in enumerate(zip(layout.terms, layout.slices, strict=True)):
            if sums is None or k not in sums:
                Ax[rows] = term.op.matvec(x)
            if k in prox_rows:
                if not written:
                    z[rows], y[rows] = z_g[prox_rows[k]], y_g[prox_rows[k]]
            else:
                z[rows] = Ax[rows] - term.b
                y[rows] = term.function.grad(z[rows])
                Aty = Aty + term.op.rmatvec(y[rows])
        return (x, z, y), Ax, Aty


class Promotion:
    """When single-precision iterations go on in double precision (module docstring,
    Precision), decided check by check."""

    def __init__(self) -> None:
        self.best = math.inf
        self.stalled = 0

    def due(self, ratio: float, tol: np.ndarray, x: np.ndarray) -> bool:
        """After a check with worst ratio ``ratio`` (of a residual to its tolerance) at
        the image x, ``tol`` the TV terms' row tolerances (one per term): whether the
        ratio is at most ``_PROMOTE_RATIO``, a tolerance is under ``_SINGLE_FLOOR`` max
        |x|, or this is the ``_STALL_CHECKS``-th check in a row whose ratio is not below
        ``_PROGRESS`` times the smallest before."""
        if ratio < _PROGRESS * self.best:
            self.best, self.stalled = ratio, 0
        else:
            self.stalled += 1
        largest = max(float(np.max(x)), -float(np.min(x))) if x.size else 0.0
        floor = _SINGLE_FLOOR * largest
        return (
            ratio <= _PROMOTE_RATIO or float(np.min(tol)) < floor or self.stalled >= _STALL_CHECKS
        )


def prox_block(layout: TermLayout, prox_at: list[int]) -> slice | None:
    """The stacked rows of the prox terms when they follow one another in ``prox_at``'s
    order (the prox terms' own stack is then a block of the stacked vectors), else None."""
    slices = [layout.slices[k] for k in prox_at]
    if not slices or any(a.stop != b.start for a, b in zip(slices, slices[1:], strict=False)):
        return None
    return slice(slices[0].start, slices[-1].stop)


def tv_term_sums(grid: TVGrid, table: np.ndarray, prox_at: list[int]) -> dict[int, TermSums]:
    """The TV terms' ``TermSums`` by term index from ``FusedTVIterations.term_sums``'
    table (the grid's b is 0, so y'(z + b) = y'z). Anisotropic: the term whose rows
    come first in the prox terms' stack has the offset 0."""
    if grid.iso:
        order = [0]
    else:
        order = [0, 1] if grid.offsets[0] == 0 else [1, 0]
    return {k: TermSums(*(float(v) for v in table[t])) for k, t in zip(prox_at, order, strict=True)}


class DualIterations:
    """The iterations of the method (module docstring) on the backend's arrays: the
    reference that ``cvxprox.backend.jit.dual_tv`` fuses for 2-D TV.

    Parameters
    ----------
    K : ProxTerms
    smooth : DiagonalQuadratic
    bounds : (ndarray (n,), ndarray (n,)) or None
        l and u (infinite entries where a side is free).
    backend : Backend
    y : array (m,)
        The starting point, on the backend.
    L, L_min : float
        The first trial constant and its floor.
    fused : callable, optional
        The backend's fused trial step (``Backend.dual_tv_trial``).
    decrease : float
        The step rule's decrease of the trial constant after an accepted step.

    Attributes
    ----------
    y, Kty : the current iterate and K'y.
    start : (y, K'y) at the start.
    L : the last accepted constant.
    restarts, backtracks : counts.
    """

    def __init__(
        self,
        K: ProxTerms,
        smooth: DiagonalQuadratic,
        bounds: tuple[np.ndarray, np.ndarray] | None,
        backend: Backend,
        y: Any,
        L: float,
        L_min: float,
        fused: Callable | None = None,
        decrease: float = _DECREASE,
    ) -> None:
        self.K, self.backend, self.fused, self.decrease = K, backend, fused, decrease
        self.H = backend.to_device(smooth.H)
        self.H_inv, self.q = 1.0 / self.H, backend.to_device(smooth.q)
        self.bounds = None if bounds is None else tuple(backend.asarray(b) for b in bounds)
        self.y = self.y_prev = y
        self.Kty = self.Kty_prev = K.rmatvec(y)
        self.start = (self.y, self.Kty)
        self.t, self.L, self.L_min = 1.0, L, L_min
        self.restarts = self.backtracks = 0

    def clip(self, v: Any) -> Any:
        """v clipped to the bounds (v itself without bounds)."""
        if self.bounds is None:
            return v
        xp = self.backend.xp
        return xp.minimum(xp.maximum(v, self.bounds[0]), self.bounds[1])

    def run(self, count: int) -> None:
        """``count`` iterations (module docstring): the step rule around ``trial``."""
        y, y_prev, Kty, Kty_prev = self.y, self.y_prev, self.Kty, self.Kty_prev
        t, L = self.t, self.L
        for _ in range(count):
            L_try = max(self.decrease * L, self.L_min)
            for attempt in range(_MAX_BACKTRACKS):
                if attempt:
                    L_try *= _BACKTRACK
                    self.backtracks += 1
                t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * (L_try / L) * t * t))
                beta = (t - 1.0) / t_next
                y_new, Kty_new, dd, descent, restart, _ = self.trial(
                    y, y_prev, Kty, Kty_prev, beta, L_try, False
                )
                if descent <= L_try * dd:
                    break
            if self.restart_product(restart) < 0.0:
                t_next = 1.0
                self.restarts += 1
            y_prev, Kty_prev, y, Kty = y, Kty, y_new, Kty_new
            t, L = t_next, L_try
        self.y, self.y_prev, self.Kty, self.Kty_prev, self.t, self.L = (
            y, y_prev, Kty, Kty_prev, t, L,
        )  # fmt: skip

    def probe(self) -> tuple[Any, Any, Any]:
        """The candidate the checks test (module docstring, Optimality): (y', z', K'y')
        of a step from the current y without extrapolation at the last accepted
        constant, y' = prox_{g*/L}(y + (K x(y) - b) / L), z' = L (y - y') + K x(y) - b."""
        y_new, Kty_new, _, _, _, z = self.trial(
            self.y, self.y, self.Kty, self.Kty, 0.0, self.L, True
        )
        return y_new, z, Kty_new

    def trial(
        self, y: Any, y_prev: Any, Kty: Any, Kty_prev: Any, beta: float, L: float, with_z: bool
    ) -> tuple[Any, Any, float, float, Any, Any]:
        """One trial step at the constant L from the extrapolation y~ = y + beta (y -
        y_prev): (y+, K'y+, ||d||^2, the descent test's left side, the restart test's
        operands (``restart_product``), z = L (y~ - y+) + K x~ - b when ``with_z`` else
        None), d = y+ - y~. The backend's fused trial (``Backend.dual_tv_trial``) when it
        has one, else the array operations."""
        if self.fused is not None:
            y_new, Kty_new, (dd, rd, descent), z = self.fused(
                y, y_prev, Kty, Kty_prev, beta, L, with_z
            )
            return y_new, Kty_new, dd, descent, rd, z if with_z else None
        K, q, H, H_inv, scalar = self.K, self.q, self.H, self.H_inv, self.backend.scalar
        y_t = y + beta * (y - y_prev)
        Kty_t = Kty + beta * (Kty - Kty_prev)
        x_t = self.clip(-(q + Kty_t) * H_inv)
        Kx_t = K.matvec(x_t)
        y_new = K.prox_conj(y_t + (Kx_t - K.b) / L, 1.0 / L)
        Kty_new = K.rmatvec(y_new)
        d = y_new - y_t
        if self.bounds is None:
            Ktd = Kty_new - Kty_t
            descent = scalar(Ktd @ (Ktd * H_inv))
        else:
            v_new = -(q + Kty_new) * H_inv
            x_new = self.clip(v_new)
            dx = x_new - x_t
            descent = 2.0 * scalar(H @ (dx * (0.5 * dx + v_new - x_new)))
        z = L * (y_t - y_new) + Kx_t - K.b if with_z else None
        return y_new, Kty_new, scalar(d @ d), descent, (d, y_new, y), z

    def restart_product(self, restart: Any) -> float:
        """d'(y+ - y) of a trial, the gradient restart's test, from the operands ``trial``
        returns: the fused trial's sum, or on the array path read back only now, once per
        iteration."""
        if isinstance(restart, tuple):
            d, y_new, y = restart
            return self.backend.scalar(d @ (y_new - y))
        return restart
