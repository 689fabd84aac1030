"""ADMM and half-quadratic splitting (HQS) for Programs (their terms).

The program (``cvxprox.ir.program.Program``, x in R^n) is

    minimize  c'x + sum_k f_k(A_k x - b_k).

Terms whose function is SumSquares, f_q(v) = sum_j w_qj v_j^2 (q in Q), are absorbed into
the x-update exactly; every other term i in S is split by z_i = A_i x - b_i, with its own
penalty rho_i and scaled dual u_i. One iteration of over-relaxed ADMM (Boyd et al. 2011,
section 3.4.3) with relaxation alpha is

    x+   = argmin_x c'x + sum_Q f_q(A_q x - b_q) + sum_S rho_i/2 ||A_i x - b_i - z_i + u_i||^2
           (+ sigma/2 ||x - x_k||^2),  that is  H x+ = r  with
           H = sum_Q 2 A_q' W_q A_q + sum_S rho_i A_i'A_i + sigma I,
           r = -c + sum_Q 2 A_q' W_q b_q + sum_S rho_i A_i'(b_i + z_i - u_i) + sigma x_k,
    v_i  = alpha (A_i x+ - b_i) + (1 - alpha) z_i + u_i
    z_i+ = prox_{f_i / rho_i}(v_i)
    u_i+ = v_i - z_i+,

with H solved by the solver ``cvxprox.solvers.admm.xupdate.make_xupdate`` picks (exact Gram,
Woodbury, dense or sparse Cholesky, or conjugate gradients). The duals are
y_i = rho_i u_i+, which lies in df_i(z_i+) by the optimality condition of the prox, and
for an absorbed term z_q = A_q x - b_q and y_q = grad f_q(z_q) = 2 W_q z_q. The
StructuredChecker (``cvxprox.solvers.common.term_checks``) tests these stacked in the program's
term order. From the x-update's optimality condition (sigma = 0) the dual residual is

    c + A'y+ = -sum_S s_i,    s_i = rho_i A_i'((z_i+ - z_i) + (1 - alpha)(A_i x+ - b_i - z_i)).

Penalties start at rho_i = 10 rho kappa / ||A_i||^2, with ``rho`` the option (0.1 by
default, tuned for the equilibrated cone programs; the factor 10 makes the default start
at rho_i = kappa / ||A_i||^2), ||A_i|| the operator's norm (``xupdate.norm_estimate``) and
kappa = sum_Q 2 max(w_q) ||A_q||^2 the curvature of the absorbed terms (1 without them).
The start follows a rescaling of a term (A_i -> s A_i and f_i(v) -> f_i(v / s) give
rho_i -> rho_i / s^2, the same iterates). The penalties are adapted by residual balancing
(OSQP; Boyd et al. 2011, section 3.4.1) term by term, with relative residuals

    rho_i <- rho_i sqrt(p_i / d_i),
    p_i = ||A_i x - b_i - z_i|| / max(||A_i x||, ||z_i||, ||b_i||, e),
    d_i = ||s_i|| / max(||c||, max_k ||A_k'y_k||, e),       e = eps_abs / eps_rel,

(the scales have the floor e of the stopping test's tolerances eps_abs + eps_rel scale:
without it a cold start, where y is still near 0, makes d_i large, and the penalty then
shrinks and keeps y small), every ``_ADAPT_EVERY`` iterations at most, and only once the
iterations since the last change number five times the refactorization's cost in
x-update solves (``XUpdate.refactor_cost``, estimated from the sizes, so that a run does
not depend on the machine's load), when some ratio sqrt(p_i / d_i) leaves [1/2.5, 2.5];
u_i is rescaled by rho_old / rho_new.

The proximal term sigma > 0 is added only when H would be singular: a variable that
appears in no term (with c nonzero there the problem is unbounded, which is reported with
the direction -c restricted to those variables) or a factorization that meets a zero pivot.

Infeasibility: when the indicator terms (cones, Box, Simplex and the norm balls)
cannot hold together, the successive differences dy of the duals converge to a Farkas
certificate (Banjac et al. 2019): with sigma_C the support function of term i's set,

    sum_i A_i' dy_i = 0,    sum_i sigma_{C_i}(dy_i) + b_i'dy_i < 0

over the indicator terms proves that no x has A_i x - b_i in C_i for all of them (for
such an x, sum_i dy_i'(A_i x - b_i) is at most sum_i sigma_{C_i}(dy_i) and equals
-sum_i b_i'dy_i). It is tested every ``_CERTIFICATE_EVERY`` checks and returned
normalized to sum_i sigma_{C_i}(y_i) + b_i'y_i = -1 (for cones sigma_C = 0 on the polar
cone, and this is b'y = -1), zero on the other terms. Only the indicator terms take part,
so no condition on the other terms' dy is needed: their A_i'dy_i would show in A'y.

Anderson acceleration (type II, ``cvxprox.solvers.common.anderson``'s ``PlainAnderson``,
whose products are BLAS calls on NumPy) extrapolates the
iteration as a fixed-point map v -> T(v) of the prox arguments v = (v_i): z_i =
prox_{f_i / rho_i}(v_i) and u_i = v_i - z_i start the next iteration, so v alone (the
split rows, half of (z, u)) is the state. The termination test, the penalty rule and
the Farkas test read the plain iterate T(v); the next iteration starts from the
extrapolated point, whose prox gives its z and u. As in SCS, an extrapolated point
whose residual ||T(v) - v|| exceeds the last accepted one is rejected (the run goes on
from the last accepted image, the memory reset), and the memory is reset when the
penalties change. The steps begin after ``_AA_START`` iterations: far from the solution,
with the penalties still moving, they gain nothing (TV inpainting at eps 1e-4 took 440
iterations at 64 x 64 and 430 at 128 x 128 when accelerated from the start, 350 and 380
from iteration 200). When the residual stops changing (``_AA_PLATEAU_RTOL`` over
``_AA_PLATEAU_WINDOW`` iterations) it has converged to a nonzero displacement (no
solution), and acceleration stops: the plain iteration's differences are what converge to
the certificates. The memory is ``_AA_MEMORY``, shorter when the split rows are many
(``_AA_STORAGE``). On the structured suite's TV inpainting at 64 x 64 (its known pixels
eliminated) it cuts the iterations to the default tolerance 1e-6 from 8160 to 1490 (20 x
20: 3880 to 820), at a cost per iteration of some 4 m M flops for m split rows. It runs
only with a direct x-update (``XUpdate.exact``): conjugate gradients' solutions move
with their tolerance, so the map changes from one iteration to the next (on 128 x 128
L1-TV denoising, whose x-update is CG, acceleration took 15990 iterations to the
default tolerance against 13900, with 3241 rejections; at 48 x 48, with a sparse LDL'
x-update, 2230 against 3890).

Measured and not kept, on the structured suite's TV inpainting (its known pixels
eliminated, the box split) at 64, 128 and 192 pixels a side, default tolerance 1e-6,
where the defaults take 1510, 1740 and 2630 iterations (about 1.4 ms each at 128, half
of it the Anderson step and its second prox): starting penalties 10 times larger
(1310, 1100, 1620, but on the nine models of ``tests/test_fista_ladmm.py`` at 1e-7 a
geometric mean of 154 iterations against 134, 2-D TV denoising 720 against 290) or 3
times (1690, 1350, 2840); the first penalty update after 20 iterations instead of 50
(1430, 1500, 3250) or 10 (1770, 1500, 2720); updates every 20 iterations (1590, 1610,
2230) or at ratios beyond 1.5 (1550, 1710 at 64 and 128); alpha 1.0 (1740, 1780) or 1.8
(1870, 1700); Anderson steps from iteration 0 (1780, 1870) or 50 (1850, 1880), memory 5
(6100, 2580) or 20 (1620, 1560), type-I steps (4030, 3660), a step every second (2210,
2250) or third iteration (3150, 2790), with the differences stored in float32 (1700,
1570, 2790; 0.33 ms a step against 0.48 at 128), in the penalty-weighted metric
sqrt(rho_i) v_i (2080, 1920, 2550) or v_i / sqrt(rho_i) (2480, 1660, 2870); a safeguard
that accepts up to 1.5 or 3 times the accepted residual (1530, 1770; 1690, 1680); Halpern
anchoring with restarts (alpha 1.99; restarts at 0.2, 0.8, 0.36 of the anchor's
residual) instead of Anderson (15380, 10990). Without the bounds (the solution lies in
[0, 1]) the 128 case takes 1720: splitting the box is not what makes it slow. The tail
is a few rows: at iteration 1600 of the 128 case 2 of the 42058 split rows and 7 of the
9800 variables still fail the per-row test, whose residuals fall roughly as 1/k from
iteration 300 on.

Variable bounds l <= x <= u are one more split term, Box(l, u) of the identity
(``with_bound_term``): its z is the projection of x, its y the bounds' multipliers. The
result's z and y are the program's own (the bound term's y is kept in the warm start).

HQS is a penalty method (Geman & Yang 1995), meant mostly for plug-and-play priors, where
the prox of f_i is replaced by a denoiser: no duals are carried (u = 0), the z-step comes
first and the penalty grows geometrically between the z- and x-steps:

    z_i  = prox_{f_i / rho_i}(A_i x - b_i),   y_i = rho_i (A_i x - b_i - z_i)  in df_i(z_i),
    rho_i <- 1.5 rho_i,                       x = argmin (as above with u = 0).

The sign makes y_i a subgradient: the prox's optimality condition is
rho_i (v - z_i) in df_i(z_i) at v = A_i x - b_i. The iterate (x, z, y) is tested with the
same KKT conditions, at every iteration: the primal residual is y_i / rho_i, which the
growing penalty drives to zero, and the penalty grows only while the primal residual is
the larger of the two (relative to its tolerance), so that x can catch up at a fixed
penalty (at a fast-growing penalty the x-step stalls). It starts from a penalty 100 times
smaller than ADMM's and stops growing at 1e10 times that start. A penalty method reaches
tight tolerances slowly: it is meant for loose ones (around 1e-3 or 1e-4). At tight ones
its progress slows below O(1/k): when the best normalized KKT error has not halved
between iterations K and 2K (K = 1000, 2000, ...), the run stops with the best iterate
(``info["stalled"]``) instead of running to max_iters.

Both methods run on the arrays of the backend the options select (``cvxprox.backend``):
x, z, u and the terms' products and proxes live there (``TermLayout``'s device terms), the
x-update solves there (``cvxprox.solvers.admm.xupdate``), and the termination test runs
there reading back scalars. The Farkas test (every ``_CERTIFICATE_EVERY``-th check) runs
there too: the terms' support functions (``ProxFunction.support``) take the device's
dual differences, and its sums and norms are read back as scalars. The penalties are host
floats, one per split term: their balancing reads back a few norms per term (scalars)
and computes the new penalties on the host from those, with no vector copied. The
returned point (or certificate) is copied to the host once, at the end.
"""

from __future__ import annotations

import math
import time

import cvxpy.settings as s
import numpy as np

from cvxprox.backend import Array, Backend, array_namespace, get_backend
from cvxprox.functions.prox import Box, SumSquares
from cvxprox.interface.options import SolverOptions
from cvxprox.ir.program import Program, Term
from cvxprox.operators.linops import Identity
from cvxprox.solvers.admm.xupdate import (
    SIGMA_RTOL,
    NormalOperator,
    XUpdate,
    make_xupdate,
    norm_estimate,
)
from cvxprox.solvers.common.algorithm import Algorithm
from cvxprox.solvers.common.anderson import PlainAnderson
from cvxprox.solvers.common.log import IterationLog
from cvxprox.solvers.common.result import BestIterate, SolveResult, finish, result_to_host
from cvxprox.solvers.common.term_checks import StructuredChecker
from cvxprox.solvers.common.terms import TermLayout

# The starting penalties are _RHO_FACTOR rho kappa / ||A_i||^2 (see the module docstring).
_RHO_FACTOR = 10.0
# Penalty adaptation: iterations between updates, the factor a balanced penalty must
# differ by to be applied, the bound on one update's factor, and the range around the
# starting penalty it keeps to.
_ADAPT_EVERY = 50
_ADAPT_TRIGGER = 2.5
_ADAPT_STEP = 1e3
_RHO_RANGE = 1e8
# An adaptation waits until the iterations since the last one number this many times the
# refactorization's cost in x-update solves.
_ADAPT_COST_RATIO = 5.0
# The Farkas test runs on every this many-th check; the radius test compares the
# certificate with the iterate at this multiple of eps_infeas (as in ``base``).
_CERTIFICATE_EVERY = 5
_RADIUS_FACTOR = 100.0
# Conjugate-gradient tolerance: this fraction of the current normalized KKT error times
# the dual tolerance, and not below this fraction of the dual tolerance.
_CG_FRACTION = 0.1
_CG_FLOOR = 0.01
# HQS: starting penalty relative to ADMM's, growth per iteration, and the cap on growth.
_HQS_START = 1e-2
_HQS_GROWTH = 1.5
_HQS_MAX_GROWTH = 1e10
# HQS stops as stalled when, from one checkpoint to the next (iterations 1000, 2000,
# 4000, ...), the best normalized KKT error has not at least halved: slower than O(1/k),
# the pace at which the penalty's growth (and the x-step at each penalty) moves it.
_HQS_FIRST_CHECKPOINT = 1000
_HQS_STALL = 0.5
# A probe entry of A_k'g below this fraction of the term's largest (round-off) marks a
# variable the term does not use.
_UNUSED_RTOL = 1e-13
_TINY = 1e-300
# Anderson acceleration: memory, the cap on the numbers its two (memory, rows) arrays
# hold (a shorter memory for many rows, none below _AA_MIN_MEMORY), and the plateau
# test that switches it off.
_AA_MEMORY = 10
# Anderson steps begin after this many iterations (see the module docstring).
_AA_START = 200
_AA_MIN_MEMORY = 3
_AA_STORAGE = 20_000_000
_AA_PLATEAU_WINDOW = 500
_AA_PLATEAU_RTOL = 1e-5


class SplitSetup:
    """The terms of a Program sorted for the x-update, and what both methods share.

    Parameters
    ----------
    program : Program
    options : SolverOptions
    backend : Backend, optional
        Where the iterates live (NumPy by default).

    Attributes
    ----------
    terms : list of Term
        The split terms on the backend.
    absorbed, split : list of int
        Positions of the SumSquares terms and of the split terms.
    rho0 : ndarray, shape (len(split),)
        The starting penalties 10 rho kappa / ||A_i||^2.
    unused : ndarray of bool, shape (n,)
        Variables that appear in no term.
    """

    def __init__(
        self, program: Program, options: SolverOptions, backend: Backend | None = None
    ) -> None:
        self.program = program
        self.opts = options
        self.backend = backend = backend or get_backend("numpy")
        self.layout = TermLayout(program, backend)
        self.checker = StructuredChecker(self.layout, options)
        terms = program.terms
        self.absorbed = [k for k, t in enumerate(terms) if isinstance(t.function, SumSquares)]
        self.split = [k for k, t in enumerate(terms) if not isinstance(t.function, SumSquares)]
        self.terms = [self.layout.terms[k] for k in self.split]
        norms = [norm_estimate(t.op) for t in terms]
        norms = np.array([nb if nb > 0 else 1.0 for nb in norms])
        self._weights = {k: 2.0 * terms[k].function.weight for k in self.absorbed}
        kappa = sum(float(np.max(self._weights[k])) * norms[k] ** 2 for k in self.absorbed)
        self.rho0 = (
            _RHO_FACTOR * options.rho * (kappa if kappa > 0 else 1.0) / norms[self.split] ** 2
        )
        self.unused = _unused_variables(program, self._weights)
        rhs0 = -program.c.copy()
        for k in self.absorbed:
            t = terms[k]
            rhs0 += t.op.rmatvec(self._weights[k] * t.b)
        self.rhs0 = backend.asarray(rhs0)

    def unbounded_direction(self) -> np.ndarray | None:
        """-c on the unused variables, scaled to c'd = -1, when c is nonzero there."""
        c_unused = np.where(self.unused, self.program.c, 0.0)
        cc = float(c_unused @ c_unused)
        return -c_unused / cc if cc > 0 else None

    def xupdate(self, rho: np.ndarray) -> XUpdate:
        """The x-update solver for the penalties rho (with sigma when a variable is unused)."""
        terms = self.program.terms
        normal = NormalOperator(
            self.program.n,
            [terms[k].op for k in self.absorbed + self.split],
            [self._weights[k] for k in self.absorbed] + [1.0] * len(self.split),
            self.scales(rho),
        )
        if self.unused.any():
            normal.sigma = SIGMA_RTOL * normal.norm_estimate()
        return make_xupdate(normal, backend=self.backend)

    def scales(self, rho: np.ndarray) -> np.ndarray:
        """The NormalOperator's scales: 1 for the absorbed terms, then the penalties."""
        return np.concatenate([np.ones(len(self.absorbed)), rho])

    def rhs(
        self,
        x: Array,
        z: list[Array],
        u: list[Array] | None,
        rho: np.ndarray,
        sigma: float,
    ) -> Array:
        """r = rhs0 + sum_S rho_i A_i'(b_i + z_i - u_i) + sigma x (u = None: u = 0)."""
        r = self.rhs0 + sigma * x if sigma > 0 else 1.0 * self.rhs0
        for pos, t in enumerate(self.terms):
            w = t.b + z[pos]
            if u is not None:
                w -= u[pos]
            w *= float(rho[pos])
            r += t.op.rmatvec(w)
        return r

    def point(
        self,
        x: Array,
        ax: list[Array],
        z: list[Array],
        y: list[Array],
    ) -> tuple[Array, Array, Array, Array, float]:
        """The stacked (z, y, A x, A'y) from the split terms' blocks and the absorbed terms.

        Returns z, y, A x, A'y and max_k ||A_k'y_k||_inf.
        """
        terms, slices, m = self.layout.terms, self.layout.slices, self.layout.m
        backend = self.backend
        Ax, zs, ys = backend.zeros(m), backend.zeros(m), backend.zeros(m)
        for pos, k in enumerate(self.split):
            rows = slices[k]
            Ax[rows], zs[rows], ys[rows] = ax[pos], z[pos], y[pos]
        for k in self.absorbed:
            t, rows = terms[k], slices[k]
            Ax[rows] = t.op.matvec(x)
            zs[rows] = Ax[rows] - t.b
            ys[rows] = t.function.grad(zs[rows])
        Aty = backend.zeros(self.program.n)
        largest = 0.0
        for t, rows in zip(terms, slices, strict=True):
            part = t.op.rmatvec(ys[rows])
            Aty += part
            largest = max(largest, _inf_norm(part))
        return zs, ys, Ax, Aty, largest

    def unbounded_result(self, name: str, direction: np.ndarray, t0: float) -> SolveResult:
        """UNBOUNDED with the direction of the unused variables."""
        timing = (name, 0, 0.0, time.perf_counter() - t0)
        log = IterationLog(self.opts.verbose)
        return finish(s.UNBOUNDED, direction, None, BestIterate(), self.opts, timing, {}, log)

    def warm_point(
        self, warm: dict | None
    ) -> tuple[Array, list[Array], list[Array], np.ndarray | None]:
        """x, the split terms' z and y blocks (on the backend), and the penalties of a warm
        start (zeros and None when absent or of the wrong shapes)."""
        n, m, slices = self.program.n, self.layout.m, self.layout.slices
        backend = self.backend
        sizes = [slices[k].stop - slices[k].start for k in self.split]
        if not warm or any(
            np.shape(warm.get(key)) != shape
            for key, shape in (("x", (n,)), ("z", (m,)), ("y", (m,)))
        ):
            zeros = [backend.zeros(size) for size in sizes]
            return backend.zeros(n), zeros, [backend.zeros(size) for size in sizes], None
        x = backend.asarray(np.array(warm["x"], dtype=np.float64))
        z = [backend.asarray(np.array(warm["z"][slices[k]], dtype=np.float64)) for k in self.split]
        y = [backend.asarray(np.array(warm["y"][slices[k]], dtype=np.float64)) for k in self.split]
        rho = warm.get("rho")
        if np.shape(rho) == (len(self.program.terms),):
            rho = np.asarray(rho, dtype=np.float64)[self.split]
            rho = rho if np.all(rho > 0) else None
        else:
            rho = None
        return x, z, y, rho

    def per_term_rho(self, rho: np.ndarray) -> np.ndarray:
        """One penalty per program term, NaN for the absorbed terms."""
        out = np.full(len(self.program.terms), np.nan)
        out[self.split] = rho
        return out

    def header_lines(self, xup: XUpdate, rho: np.ndarray) -> list[str]:
        opts = self.opts
        rho_text = (
            f"rho in [{np.min(rho):.2e}, {np.max(rho):.2e}] on {len(self.split)} split terms"
            if len(rho)
            else "no split terms"
        )
        return [
            f"{xup.description}; {len(self.absorbed)} sum_squares terms absorbed",
            f"{rho_text}; eps_abs={opts.eps_abs:.1e} eps_rel={opts.eps_rel:.1e} "
            f"alpha={opts.alpha} max_iters={opts.max_iters} time_limit={opts.time_limit}",
        ]


def xupdate_description(program: Program, options: SolverOptions) -> str:
    """The one-line x-update choice ADMM and HQS make for the program (the solver is built,
    so a factorization is computed)."""
    setup = SplitSetup(program, options)
    return setup.xupdate(setup.rho0).description


class StructuredADMM(Algorithm):
    """Over-relaxed ADMM with per-term adaptive penalties for a Program.

    Parameters
    ----------
    program : Program
    options : SolverOptions
    warm_start : dict, optional
        ``x`` (n,), ``z`` and ``y`` (m,) of an earlier solve, and optionally ``rho``
        (one penalty per term, as in ``info["rho"]``); ignored when the shapes differ.
    """

    name = "admm"

    def _solve(self, backend: Backend, t0: float, reason: str) -> SolveResult:
        """Run ADMM; the result's info holds "x_update", "cg_iterations", "rho" (per term,
        NaN for absorbed terms), "rho_updates", "sigma", "anderson_memory" (0 without
        acceleration) and "anderson_rejected" (extrapolated points rejected by the
        safeguard)."""
        prog, opts = with_bound_term(self.program), self.opts
        setup = SplitSetup(prog, opts, backend)
        direction = setup.unbounded_direction()
        if direction is not None:
            return setup.unbounded_result(self.name, direction, t0)
        terms = setup.terms
        x, z, y, rho = setup.warm_point(_bound_term_warm_start(self.program, self.warm_start))
        rho = setup.rho0.copy() if rho is None else rho
        u = [yi / float(r) for yi, r in zip(y, rho, strict=True)]
        xup = setup.xupdate(rho)
        sigma = xup.normal.sigma
        farkas = FarkasTest(prog, setup.layout, setup.split, opts.eps_infeas)
        setup_time = time.perf_counter() - t0

        accel = _Acceleration.make(terms, backend) if xup.exact else None
        memory = 0 if accel is None else accel.memory
        lines = setup.header_lines(xup, rho)
        if accel is not None:
            lines.append(f"Anderson acceleration of the prox arguments, memory {accel.memory}")
        log = IterationLog(opts.verbose)
        log.header(prog, "ADMM", reason, lines)
        alpha = opts.alpha
        scale_floor = opts.eps_abs / opts.eps_rel if opts.eps_rel > 0 else np.inf
        check_every = 1 if not setup.split else opts.check_every
        best = BestIterate()
        ax = [backend.zeros(t.size) for t in terms]
        status, cert, kkt, last = None, None, None, None
        it = checks = last_adapt = rho_updates = 0
        cg_atol = math.inf
        rejected = 0
        while it < opts.max_iters:
            it += 1
            check = it % check_every == 0 or it == opts.max_iters
            active = accel is not None and it > _AA_START
            if active:
                accel.start(terms, z, u, rho)
            if check:
                z_old, u_old = [1.0 * zi for zi in z], [1.0 * ui for ui in u]
            x = xup.solve(setup.rhs(x, z, u, rho, sigma), x)
            for pos, t in enumerate(terms):
                ax[pos] = t.op.matvec(x)
                v = ax[pos] - t.b
                if alpha != 1.0:
                    v *= alpha
                    v += (1.0 - alpha) * z[pos]
                v += u[pos]
                if active:
                    accel.image[accel.slices[pos]] = v
                z[pos] = t.function.prox(v, 1.0 / float(rho[pos]))
                u[pos] = v - z[pos]
            if active and not accel.advance(it):
                rejected, accel = accel.rejected, None
            timed_out = time.perf_counter() - t0 > opts.time_limit
            if not (check or timed_out):
                continue
            y = [float(r) * ui for r, ui in zip(rho, u, strict=True)]
            zs, ys, Ax, Aty, aty_max = setup.point(x, ax, z, y)
            kkt = setup.checker.evaluate(x, zs, ys, Ax, Aty)
            last = (1.0 * x, zs, ys)
            best.offer(kkt, *last)
            if it % (10 * check_every) == 0 or kkt.converged:
                log.row(it, kkt, _geometric_mean(rho))
            if kkt.converged:
                status = s.OPTIMAL
                break
            if timed_out or not check:
                break
            checks += 1
            if checks % _CERTIFICATE_EVERY == 0:
                dy = [float(r) * (ui - uo) for r, ui, uo in zip(rho, u, u_old, strict=True)]
                cert = farkas.certificate(dy, x)
                if cert is not None:
                    status = s.INFEASIBLE
                    break
            cg_atol = min(cg_atol, kkt.dual_tol * max(_CG_FRACTION * kkt.normalized, _CG_FLOOR))
            xup.set_tolerance(cg_atol)
            if (
                opts.adaptive_rho
                and setup.split
                and it - last_adapt >= max(_ADAPT_EVERY, _ADAPT_COST_RATIO * xup.refactor_cost)
            ):
                last_adapt = it
                ratios = _balance_ratios(
                    terms,
                    rho,
                    (ax, z, z_old),
                    alpha,
                    (max(_inf_norm(prog.c), aty_max), scale_floor),
                )
                if np.any((ratios > _ADAPT_TRIGGER) | (ratios < 1.0 / _ADAPT_TRIGGER)):
                    new_rho = np.clip(
                        rho * ratios, setup.rho0 / _RHO_RANGE, setup.rho0 * _RHO_RANGE
                    )
                    u = [ui * float(r / nr) for ui, r, nr in zip(u, rho, new_rho, strict=True)]
                    rho = new_rho
                    xup.rescale(setup.scales(rho))
                    rho_updates += 1
                    if accel is not None:
                        accel.reset()

        info = {
            "x_update": xup.description,
            "cg_iterations": xup.iterations,
            "rho": setup.per_term_rho(rho),
            "rho_updates": rho_updates,
            "sigma": sigma,
            "anderson_memory": memory,
            "anderson_rejected": rejected if accel is None else accel.rejected,
        }
        timing = (self.name, it, time.perf_counter() - t0, setup_time)
        last, cert = result_to_host(backend, status, last, best, cert)
        result = finish(
            status,
            cert,
            (last, kkt) if status == s.OPTIMAL else None,
            best,
            opts,
            timing,
            info,
            log,
            {"rho": setup.per_term_rho(rho)},
        )
        return _without_bound_term(self.program, result)


class HQS(Algorithm):
    """Half-quadratic splitting (a penalty method; see the module docstring).

    Meant mostly for plug-and-play priors: it reaches the KKT tolerances only as the
    penalty grows, and each growth step refactors the x-update (cheap for the exact Gram
    and conjugate-gradient solvers).

    Parameters
    ----------
    program : Program
    options : SolverOptions
    warm_start : dict, optional
        ``x`` (n,), ``z``, ``y`` (m,) of an earlier solve (only x is used).
    """

    name = "hqs"

    def _solve(self, backend: Backend, t0: float, reason: str) -> SolveResult:
        """Run HQS; the result's info holds "x_update", "cg_iterations", "rho" and "sigma"."""
        prog, opts = with_bound_term(self.program), self.opts
        setup = SplitSetup(prog, opts, backend)
        direction = setup.unbounded_direction()
        if direction is not None:
            return setup.unbounded_result(self.name, direction, t0)
        terms = setup.terms
        x, z, _, _ = setup.warm_point(_bound_term_warm_start(self.program, self.warm_start))
        rho = _HQS_START * setup.rho0
        rho_cap = _HQS_MAX_GROWTH * rho
        xup = setup.xupdate(rho)
        sigma = xup.normal.sigma
        setup_time = time.perf_counter() - t0

        log = IterationLog(opts.verbose)
        log.header(prog, "HQS", reason, setup.header_lines(xup, rho))
        best = BestIterate()
        ax = [backend.zeros(t.size) for t in terms]
        status, kkt, last = None, None, None
        it = 0
        cg_atol = math.inf
        stalled = False
        checkpoint, checkpoint_error = _HQS_FIRST_CHECKPOINT, math.inf
        while it < opts.max_iters:
            it += 1
            y = []
            for pos, t in enumerate(terms):
                ax[pos] = t.op.matvec(x)
                v = ax[pos] - t.b
                z[pos] = t.function.prox(v, 1.0 / float(rho[pos]))
                y.append(float(rho[pos]) * (v - z[pos]))
            zs, ys, Ax, Aty, _ = setup.point(x, ax, z, y)
            kkt = setup.checker.evaluate(x, zs, ys, Ax, Aty)
            last = (1.0 * x, zs, ys)
            best.offer(kkt, *last)
            if it % (10 * opts.check_every) == 0 or kkt.converged:
                log.row(it, kkt, _geometric_mean(rho))
            if kkt.converged:
                status = s.OPTIMAL
                break
            if time.perf_counter() - t0 > opts.time_limit or it == opts.max_iters:
                break
            if it == checkpoint:
                stalled = best.kkt.normalized > _HQS_STALL * checkpoint_error
                if stalled:
                    break
                checkpoint, checkpoint_error = 2 * checkpoint, best.kkt.normalized
            cg_atol = min(cg_atol, kkt.dual_tol * max(_CG_FRACTION * kkt.normalized, _CG_FLOOR))
            xup.set_tolerance(cg_atol)
            grow = kkt.primal / kkt.primal_tol >= kkt.dual / kkt.dual_tol
            if setup.split and grow and np.all(rho < rho_cap):
                rho = np.minimum(_HQS_GROWTH * rho, rho_cap)
                xup.rescale(setup.scales(rho))
            x = xup.solve(setup.rhs(x, z, None, rho, sigma), x)

        info = {
            "x_update": xup.description,
            "cg_iterations": xup.iterations,
            "rho": setup.per_term_rho(rho),
            "sigma": sigma,
            "stalled": stalled,
        }
        timing = (self.name, it, time.perf_counter() - t0, setup_time)
        last, _ = result_to_host(backend, status, last, best, None)
        result = finish(
            status,
            None,
            (last, kkt) if status == s.OPTIMAL else None,
            best,
            opts,
            timing,
            info,
            log,
        )
        return _without_bound_term(self.program, result)


def with_bound_term(program: Program) -> Program:
    """The program with its bounds l <= x <= u as a last term Box(l, u) of the identity
    (the program itself when it has none)."""
    if not program.has_bounds:
        return program
    n = program.n
    l, u = (
        np.full(n, fill) if bound is None else bound
        for bound, fill in ((program.l, -np.inf), (program.u, np.inf))
    )
    box = Term(Box(l, u), Identity(n), np.zeros(n), "bounds l <= x <= u")
    return Program(program.c, [*program.terms, box], offset=program.offset)


def project_bounds(program: Program, x: np.ndarray) -> np.ndarray:
    """proj_[l, u](x) on the host."""
    if program.l is not None:
        x = np.maximum(x, program.l)
    return x if program.u is None else np.minimum(x, program.u)


def _bound_term_warm_start(program: Program, warm: dict | None) -> dict | None:
    """A warm start of the program extended to its bound term: z = x there, y the
    ``bounds_y`` an earlier result kept (else 0)."""
    if not program.has_bounds or not warm:
        return warm
    shapes = [(key, np.shape(warm.get(key))) for key in ("x", "z", "y")]
    if shapes != [("x", (program.n,)), ("z", (program.m,)), ("y", (program.m,))]:
        return warm
    y_box = warm.get("bounds_y", np.zeros(program.n))
    return {
        **warm,
        "z": np.concatenate([np.asarray(warm["z"]), np.asarray(warm["x"])]),
        "y": np.concatenate([np.asarray(warm["y"]), np.asarray(y_box)]),
    }


def _without_bound_term(program: Program, result: SolveResult) -> SolveResult:
    """The result of ``with_bound_term(program)`` as one of the program: x the bound
    term's z, the projection onto the box (exactly at an active bound; x and it differ by
    that term's primal residual), z, y (or a certificate) on the program's own rows; the
    warm start keeps the bound term's y."""
    if not program.has_bounds:
        return result
    m = program.m
    if result.x is not None and result.z is not None and result.status != s.UNBOUNDED:
        result.x = result.z[m:]
    warm = result.info.get("warm_start")
    if warm is not None and np.shape(warm.get("y")) == (m + program.n,):
        warm["bounds_y"] = warm["y"][m:]
        warm["z"], warm["y"] = warm["z"][:m], warm["y"][:m]
    result.z = None if result.z is None else result.z[:m]
    result.y = None if result.y is None else result.y[:m]
    return result


class _Acceleration:
    """Anderson acceleration of ADMM's prox arguments v (see the module docstring).

    ``start`` begins an iteration: when the last one extrapolated (or a rejection sends
    the run back to the last accepted image), z_i and u_i are set from that point. The
    iteration writes T(v) into ``image`` (one block per split term, ``slices``);
    ``advance`` then accepts or rejects it and extrapolates the next point.

    Parameters
    ----------
    terms : list
        The split terms (device terms with ``size`` and ``function``).
    memory : int
    backend : Backend
    """

    def __init__(self, terms: list, memory: int, backend: Backend) -> None:
        sizes = np.cumsum([0] + [t.size for t in terms])
        dim = int(sizes[-1])
        self.slices = [slice(int(a), int(b)) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        self._backend = backend
        self.memory = memory
        self._anderson = PlainAnderson(dim, memory, backend)
        self.image = backend.zeros(dim)
        self._point = self.image
        self._accepted_image = self.image
        self._next = None
        self._accepted = 0.0
        self._plateau = math.inf
        self.rejected = 0

    @classmethod
    def make(cls, terms: list, backend: Backend) -> _Acceleration | None:
        """The acceleration for these split terms, or None when their rows are too many
        for a memory of ``_AA_MIN_MEMORY`` in ``_AA_STORAGE`` numbers (or there are none)."""
        dim = sum(t.size for t in terms)
        memory = min(_AA_MEMORY, _AA_STORAGE // max(2 * dim, 1))
        return cls(terms, memory, backend) if dim and memory >= _AA_MIN_MEMORY else None

    def start(self, terms: list, z: list[Array], u: list[Array], rho: np.ndarray) -> None:
        """Set z, u (in place) from the pending point, and record the iteration's v."""
        point = self._next
        self._next = None
        if point is None:
            self._point = self._backend.zeros(self.image.shape[0])
            for pos, rows in enumerate(self.slices):
                self._point[rows] = z[pos] + u[pos]
            return
        self._point = point
        for pos, (t, rows) in enumerate(zip(terms, self.slices, strict=True)):
            v = point[rows]
            z[pos] = t.function.prox(v, 1.0 / float(rho[pos]))
            u[pos] = v - z[pos]

    def advance(self, it: int) -> bool:
        """Accept T(v) (and extrapolate) or reject it; False once the residual plateaus
        (acceleration then stops)."""
        image, point = self.image, self._point
        diff = image - point
        residual = math.sqrt(self._backend.scalar(diff @ diff))
        if self._anderson.extrapolated and residual > self._accepted:
            self._next = self._accepted_image
            self._anderson.reset()
            self.rejected += 1
        else:
            self._accepted, self._accepted_image = residual, image
            self._next = self._anderson.step(point, image, diff)
            if not self._anderson.extrapolated:
                self._next = None
        self.image = self._backend.zeros(image.shape[0])
        if it % _AA_PLATEAU_WINDOW == 0:
            if abs(self._accepted - self._plateau) <= _AA_PLATEAU_RTOL * self._accepted:
                return False
            self._plateau = self._accepted
        return True

    def reset(self) -> None:
        """Forget the memory and go on from the plain iterate (the penalties changed)."""
        self._anderson.reset()
        self._next = None


class FarkasTest:
    """Farkas certificates from dual differences of the split indicator terms.

    The indicator terms whose support function is known (``ProxFunction.support``: cones,
    Box, Simplex, the norm balls) and the terms with a domain (entropy, KL: z >= 0) take
    part; the certificate is zero on all other terms (whose domain is the whole space).

    Parameters
    ----------
    program : Program
    layout : TermLayout
    split : list of int
        Positions of the split terms (the blocks of ``dy`` passed to ``certificate``).
    eps : float
        Tolerance: ||sum_i A_i'y_i||_inf <= eps once normalized.
    """

    def __init__(self, program: Program, layout: TermLayout, split: list[int], eps: float) -> None:
        self.program = program
        self.layout = layout
        self.eps = eps
        self.members = [
            (pos, k)
            for pos, k in enumerate(split)
            if program.terms[k].function.support(np.zeros(program.terms[k].size)) is not None
        ]

    def certificate(self, dy: list[Array], x: Array) -> Array | None:
        """The normalized certificate y (m,) built from the split terms' dy, or None.

        Besides ||A'y||_inf <= eps, the radius test of ``base``: y rules out every x with
        ||x||_1 < 1 / ||A'y||_inf, which must exceed ||x||_1 / (100 eps) for the iterate x.
        dy, x and y are arrays of the layout's backend (its terms compute there; scalars
        are read back).
        """
        if not self.members:
            return None
        layout = self.layout
        terms, slices = layout.terms, layout.slices
        y = layout.backend.zeros(layout.m)
        value = 0.0
        for pos, k in self.members:
            projected, support = terms[k].function.support(dy[pos])
            y[slices[k]] = projected
            value += support + float(terms[k].b @ projected)
        if not value < 0 or not math.isfinite(value):
            return None
        y = y / -value
        Aty = layout.backend.zeros(self.program.n)
        for _, k in self.members:
            Aty = Aty + terms[k].op.rmatvec(y[slices[k]])
        residual = _inf_norm(Aty)
        xp = array_namespace(x)
        if residual > self.eps or residual * float(xp.sum(xp.abs(x))) > _RADIUS_FACTOR * self.eps:
            return None
        return y


def _balance_ratios(
    terms: list,
    rho: np.ndarray,
    iterates: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]],
    alpha: float,
    scales: tuple[float, float],
) -> np.ndarray:
    """sqrt(p_i / d_i) per split term (see the module docstring); 1 where undefined.

    ``iterates`` = (A_i x+, z_i+, z_i) per split term; ``scales`` = (the dual residual's
    scale, the floor of both scales).
    """
    ax, z, z_old = iterates
    dual_scale, floor = scales
    ratios = np.ones(len(terms))
    for pos, t in enumerate(terms):
        r = ax[pos] - t.b
        scale = max(_inf_norm(ax[pos]), _inf_norm(z[pos]), _inf_norm(t.b))
        primal = _inf_norm(r - z[pos]) / max(scale, floor, _TINY)
        move = (z[pos] - z_old[pos]) + (1.0 - alpha) * (r - z_old[pos])
        dual = rho[pos] * _inf_norm(t.op.rmatvec(move)) / max(dual_scale, floor, _TINY)
        if primal > 0 and dual > 0:
            ratios[pos] = np.clip(np.sqrt(primal / dual), 1.0 / _ADAPT_STEP, _ADAPT_STEP)
    return ratios


def _unused_variables(program: Program, weights: dict[int, object]) -> np.ndarray:
    """Variables j with A_k e_j = 0 in every term (rows of zero weight left out).

    Found with two random probes g per term: (A_k'g)_j is zero for such a j and almost
    surely not otherwise. Each term's probe is compared with that term's own largest
    entry, at round-off level, so that a column of small norm (a variable scaled by
    1e-8 next to one scaled by 1e3) counts as used."""
    rng = np.random.default_rng(0)
    used = np.zeros(program.n, dtype=bool)
    for k, t in enumerate(program.terms):
        w = weights.get(k, 1.0)
        coverage = np.zeros(program.n)
        for _ in range(2):
            coverage += np.abs(t.op.rmatvec(w * rng.standard_normal(t.size)))
        used |= coverage > _UNUSED_RTOL * np.max(coverage, initial=0.0)
    return ~used


def _geometric_mean(rho: np.ndarray) -> float:
    return float(np.exp(np.mean(np.log(rho)))) if len(rho) else 0.0


def _inf_norm(v: Array) -> float:
    """max_i |v_i| (0 for an empty vector), for a vector of any backend."""
    if v.shape[0] == 0:
        return 0.0
    xp = array_namespace(v)
    return float(xp.max(xp.abs(v)))
