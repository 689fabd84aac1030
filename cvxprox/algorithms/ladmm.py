"""Linearized ADMM (primal-dual splitting, Condat-Vu PDHG) for StructuredPrograms.

Matrix-free: a step costs one product with every A_i and one with every A_i'. The terms of
``minimize c'x + sum_i f_i(A_i x - b_i)`` are split three ways:

    G        one term whose operator is the identity or a permutation of x (the first
             nonsmooth one, else the first smooth one; ``PermutedTerm``): taken by its prox;
    h        the other smooth terms (SumSquares, Huber, Logistic): taken by their gradient
             grad h(x) = sum_{i in H} A_i' grad f_i(A_i x - b_i), Lipschitz with
             L_h <= sum_{i in H} L_i ||A_i||^2;
    f_j      all other terms, f_j(K_j x - b_j): split off as z_j = K_j x - b_j, with duals.

The saddle-point problem  min_x max_y c'x + G(x) + h(x) + sum_j y_j'(K_j x - b_j) - f_j*(y_j)
is solved by the primal-dual step T: (x, y) -> (x+, y+) of Condat (2013) and Vu (2013),

    x+   = prox_{tau G}(x - tau (c + grad h(x) + K'y))
    y_j+ = prox_{sigma_j f_j*}(v_j),    v_j = y_j + sigma_j (K_j (2 x+ - x) - b_j),

and z_j = (v_j - y_j+) / sigma_j = prox_{f_j / sigma_j}(v_j / sigma_j) by Moreau's identity,
so that y_j+ = sigma_j (v_j / sigma_j - z_j) lies in df_j(z_j). Without h this is
Chambolle-Pock, and linearized ADMM (Parikh & Boyd, Proximal Algorithms, 4.4.2, with
mu = tau, lambda = 1 / sigma and scaled duals u = y / sigma) up to the order of the two
updates: there the extrapolation falls on the dual.

Per-term dual steps (diagonal preconditioning by term): sigma_j = sigma / ||K_j||^2, i.e.
PDHG on the problem whose blocks K_j / ||K_j|| all have norm <= 1, so that the stacked
scaled operator has ||K~||^2 <= J (the number of dual blocks) whatever the norms of the
K_j; the y_j returned are those of the original blocks. Step sizes are tau = eta / omega,
sigma = eta omega with omega the primal weight and eta the largest value with

    1/tau - sigma ||K~||^2 >= beta L_h     (beta = ``_BETA``; Condat's condition is beta > 1/2),

times a safety factor. In the metric M = [[I/tau, -K'], [-K, Sigma^{-1}]] the step T is a
forward-backward step, alpha-averaged with alpha = 2 beta / (4 beta - 1) (1/2 when
L_h = 0), so the over-relaxed (Krasnosel'skii-Mann) iteration

    p <- p + rho (T(p) - p),    rho = 1 + ``_RELAXATION`` (1/alpha - 1) < 1/alpha

converges to a fixed point of T, i.e. a KKT point (rho = 1.9 when L_h = 0).

Adaptive restarts and primal weight, PDLP-style (Applegate et al. 2021, with the restart
tests of cuPDLPx, Lu & Yang 2025, made more frequent). Each epoch starts at a point p_0
and keeps the average of its outputs T(p). On every check, k iterations into the epoch,
the candidates are the current output T(p) and T(average), each with its fixed-point
residual r = ||q - T(q)||_M at its point q; the one with the smaller r is the restart
candidate, and a new epoch starts from it when

    r <= 0.7 r_0,   or   r <= 0.9 r_0 and r rose since the last check,   or
    k >= 0.1 (all iterations so far),

(r_0 = the residual at p_0). Then the primal weight follows PDLP's smoothed rule
log omega <- 1/2 log(|dy~| / |dx|) + 1/2 log omega, with dx, dy~ the candidate's move from
p_0 (dy~_j = ||K_j|| dy_j, the duals of the scaled blocks), kept above a floor when
L_h > 0 (``_primal_weight_floor``). The average makes linear programs converge (the last
iterate alone stalls there); the frequent restarts halved the iterations on TV denoising,
deconvolution and constrained least squares compared with the reflected Halpern scheme
of ``cvxprox.algorithms.pdhg``.

Optimality is tested on both candidates every ``check_every`` iterations by
``StructuredChecker`` (an extra step on the average: ``iterations`` counts steps from the
current point only): the smooth terms of h have z_i = A_i x+ - b_i and
y_i = grad f_i(z_i); the prox term has z_G = prox_{tau g}(w), w = P v - b_G and
y_G = (w - z_G) / tau (in dg(z_G)); the dual blocks have y_j+ from their conjugate prox
and z_j by Moreau. So y_i lies in df_i(z_i) for every term, and the residuals measure
A x - b - z and c + A'y.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import cvxpy.settings as s
import numpy as np

from cvxprox.algorithms.base import Algorithm, BestIterate, IterationLog, SolveResult, finish
from cvxprox.algorithms.fista import PermutedTerm, TermGroup
from cvxprox.algorithms.structured import StructuredChecker, TermLayout
from cvxprox.ir import StructuredProgram

# Step rule: 1/tau - sigma ||K~||^2 >= _BETA L_h, eta shrunk by _STEP_SAFETY (M stays
# positive definite when the norm bounds are tight).
_BETA = 1.0
_STEP_SAFETY = 0.99
# Over-relaxation: this fraction of the largest admissible rho - 1 = 1/alpha - 1.
_RELAXATION = 0.9
# Restart criteria on the fixed-point residual.
_RESTART_SUFFICIENT = 0.7
_RESTART_NECESSARY = 0.9
_RESTART_ARTIFICIAL = 0.1
# PDLP's primal weight update.
_PRIMAL_WEIGHT_SMOOTHING = 0.5
_OMEGA_MIN, _OMEGA_MAX = 1e-6, 1e6
# With smooth terms the primal weight is kept >= _WEIGHT_FLOOR beta L_h / ||K~|| (see
# _primal_weight_floor).
_WEIGHT_FLOOR = 0.3
_TINY = 1e-12


@dataclass
class _Point:
    """A primal-dual point: x (n,), the dual blocks' y (m_D,), and the products K x (m_D,),
    K'y (n,) and A_H x (m_H,) (the smooth terms'), which are linear in the point."""

    x: np.ndarray
    y: np.ndarray
    Kx: np.ndarray
    Kty: np.ndarray
    Hx: np.ndarray

    def relaxed(self, previous: _Point, rho: float) -> _Point:
        """previous + rho (self - previous), products included."""

        def lin(u: np.ndarray, v: np.ndarray) -> np.ndarray:
            return v + rho * (u - v)

        return _Point(
            lin(self.x, previous.x),
            lin(self.y, previous.y),
            lin(self.Kx, previous.Kx),
            lin(self.Kty, previous.Kty),
            lin(self.Hx, previous.Hx),
        )


@dataclass
class _Step:
    """T(p), with the prox outputs that make the optimality point: the dual blocks' z
    (m_D,) and the prox term's z_G, y_G (None without one)."""

    point: _Point
    z_dual: np.ndarray
    z_prox: np.ndarray | None
    y_prox: np.ndarray | None


class _Splitting:
    """The program's terms split into the prox term G, the smooth group h and the dual
    blocks (module docstring), with the step T and its residual.

    Parameters
    ----------
    program : StructuredProgram
    """

    def __init__(self, program: StructuredProgram) -> None:
        self.program = program
        n, terms = program.n, list(enumerate(program.terms))
        candidates = [(k, t) for k, t in terms if PermutedTerm.accepts(t, n)]
        candidates.sort(key=lambda kt: kt[1].function.smooth)
        self.prox = PermutedTerm(candidates[0][1], candidates[0][0]) if candidates else None
        taken = -1 if self.prox is None else self.prox.position
        self.smooth = TermGroup([(k, t) for k, t in terms if k != taken and t.function.smooth], n)
        self.dual = TermGroup([(k, t) for k, t in terms if k != taken and not t.function.smooth], n)
        norms = np.array([t.op.norm_bound() for t in self.dual.terms])
        self.block_weight = 1.0 / np.where(norms > 0, norms, 1.0) ** 2
        self.row_weight = np.concatenate(
            [np.full(t.size, w) for t, w in zip(self.dual.terms, self.block_weight, strict=True)]
            or [np.zeros(0)]
        )
        self.norm_K2 = float(np.count_nonzero(norms > 0))
        self.L_h = self.smooth.lipschitz()

    def point(self, x: np.ndarray, y: np.ndarray) -> _Point:
        """The point (x, y) with its products."""
        return _Point(x, y, self.dual.matvec(x), self.dual.rmatvec(y), self.smooth.matvec(x))

    def step(self, p: _Point, tau: float, sigma: float) -> _Step:
        """T(p) (module docstring): one product with every A_i and A_i'."""
        smooth, dual = self.smooth, self.dual
        grad = self.program.c + smooth.rmatvec(smooth.gradient(p.Hx - smooth.b))
        v = p.x - tau * (grad + p.Kty)
        z_prox = y_prox = None
        if self.prox is None:
            x = v
        else:
            x, z_prox, y_prox = self.prox.prox(v, tau)
        Kx = dual.matvec(x)
        w = p.y + (sigma * self.row_weight) * (2.0 * Kx - p.Kx - dual.b)
        y = np.empty(dual.m)
        for term, rows, weight in zip(dual.terms, dual.slices, self.block_weight, strict=True):
            y[rows] = term.function.prox_conj(w[rows], sigma * weight)
        z_dual = (w - y) / (sigma * self.row_weight)
        point = _Point(x, y, Kx, dual.rmatvec(y), smooth.matvec(x))
        return _Step(point, z_dual, z_prox, y_prox)

    def residual(self, p: _Point, Tp: _Point, tau: float, sigma: float) -> float:
        """The fixed-point residual ||p - T(p)||_M."""
        dx, dy, dKx = p.x - Tp.x, p.y - Tp.y, p.Kx - Tp.Kx
        r2 = float(dx @ dx) / tau + float(dy @ (dy / self.row_weight)) / sigma
        r2 -= 2.0 * float(dy @ dKx)
        return math.sqrt(max(r2, 0.0))

    def scaled_dual_norm(self, dy: np.ndarray) -> float:
        """||dy~||, dy~_j = ||K_j|| dy_j: the dual move in the scaled blocks' units."""
        return math.sqrt(float(dy @ (dy / self.row_weight)))

    def optimality_point(
        self, layout: TermLayout, step: _Step
    ) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray, np.ndarray]:
        """((x, z, y), A x, A'y) stacked in term order at T(p) (module docstring)."""
        p, smooth, dual = step.point, self.smooth, self.dual
        z, y, Ax = np.zeros(layout.m), np.zeros(layout.m), np.zeros(layout.m)
        z_s = p.Hx - smooth.b
        y_s = smooth.gradient(z_s)
        Aty = smooth.rmatvec(y_s) + p.Kty
        for group, z_g, y_g, Ax_g in ((smooth, z_s, y_s, p.Hx), (dual, step.z_dual, p.y, p.Kx)):
            for k, rows in zip(group.positions, group.slices, strict=True):
                z[layout.slices[k]], y[layout.slices[k]] = z_g[rows], y_g[rows]
                Ax[layout.slices[k]] = Ax_g[rows]
        if self.prox is not None:
            rows = layout.slices[self.prox.position]
            z[rows], y[rows] = step.z_prox, step.y_prox
            Ax[rows] = self.prox.term.op.matvec(p.x)
            Aty += self.prox.term.op.rmatvec(step.y_prox)
        return (p.x, z, y), Ax, Aty

    def dual_rows(self, layout: TermLayout, y: np.ndarray) -> np.ndarray:
        """The dual blocks' rows of a y stacked in term order."""
        if not self.dual.terms:
            return np.zeros(0)
        return np.concatenate([y[layout.slices[k]] for k in self.dual.positions])


class LinearizedADMM(Algorithm):
    """Over-relaxed Condat-Vu primal-dual splitting with adaptive primal weight
    (module docstring).

    Parameters
    ----------
    program : StructuredProgram
    options : SolverOptions
    warm_start : dict, optional
        ``x`` (n,) and ``y`` (m,) of an earlier solve (``z`` is not needed) and,
        optionally, its final ``primal_weight``; used when the shapes match.
    """

    name = "ladmm"

    def solve(self, reason: str = "") -> SolveResult:
        """Run the method; ``reason`` (why it was chosen) goes into the verbose header."""
        t0 = time.perf_counter()
        prog, opts = self.program, self.opts
        layout = TermLayout(prog)
        checker = StructuredChecker(layout, opts)
        split = _Splitting(prog)
        x, y = np.zeros(prog.n), np.zeros(split.dual.m)
        omega_floor = _primal_weight_floor(split.norm_K2, split.L_h)
        omega = 1.0
        warm = self.warm_start or {}
        if np.shape(warm.get("x")) == (prog.n,) and np.shape(warm.get("y")) == (layout.m,):
            x = np.array(warm["x"], dtype=np.float64)
            y = split.dual_rows(layout, np.asarray(warm["y"], dtype=np.float64))
            omega = float(warm.get("primal_weight", omega))
        omega = max(omega, omega_floor)
        tau, sigma, rho = _step_sizes(omega, split.norm_K2, split.L_h)
        start = average = p = split.point(x, y)
        setup_time = time.perf_counter() - t0

        log = IterationLog(opts.verbose)
        prox_name = split.prox.term.function.describe() if split.prox else "none"
        log.header(
            prog,
            "linearized ADMM (Condat-Vu PDHG)",
            reason,
            [
                f"prox term: {prox_name}; smooth terms by gradient: {len(split.smooth.terms)} "
                f"(L_h <= {split.L_h:.3e}); dual blocks: {len(split.dual.terms)} "
                f"(scaled to norm 1, ||K~||^2 <= {split.norm_K2:g})",
                f"steps: tau={tau:.2e} sigma={sigma:.2e} primal weight={omega:.2e} "
                f"relaxation={rho:.2f}",
                f"restarts to the current or average iterate on r=||p - T(p)||_M: "
                f"r <= {_RESTART_SUFFICIENT} r0, r <= {_RESTART_NECESSARY} r0 and rising, "
                f"k >= {_RESTART_ARTIFICIAL} iters",
                f"eps_abs={opts.eps_abs:.1e} eps_rel={opts.eps_rel:.1e} "
                f"max_iters={opts.max_iters} time_limit={opts.time_limit}",
            ],
        )

        best = BestIterate()
        status = None
        err = point = None
        k = 0  # iterations in the current epoch
        r0 = r_prev = math.inf
        restarts = logged = it = 0
        for it in range(1, opts.max_iters + 1):
            step = split.step(p, tau, sigma)
            average = step.point if k == 0 else step.point.relaxed(average, 1.0 / (k + 1))
            if k == 0:
                r0 = split.residual(p, step.point, tau, sigma)
            if it % opts.check_every == 0 or it == opts.max_iters:
                candidates = [(p, step)]
                if k > 0:
                    candidates.append((average, split.step(average, tau, sigma)))
                r = math.inf
                for base, candidate in candidates:
                    cand_point, Ax, Aty = split.optimality_point(layout, candidate)
                    cand_err = checker.evaluate(*cand_point, Ax=Ax, Aty=Aty)
                    best.offer(cand_err, *cand_point)
                    r_cand = split.residual(base, candidate.point, tau, sigma)
                    if cand_err.converged or r_cand < r:
                        r, err, point, restart_point = r_cand, cand_err, cand_point, candidate.point
                    if cand_err.converged:
                        status = s.OPTIMAL
                        break
                if status is not None:
                    break
                if it % (opts.check_every * 10) == 0:
                    log.row(it, err, tau)
                    logged = it
                if time.perf_counter() - t0 > opts.time_limit:
                    break
                if k > 0 and (
                    r <= _RESTART_SUFFICIENT * r0
                    or (r <= _RESTART_NECESSARY * r0 and r > r_prev)
                    or k >= _RESTART_ARTIFICIAL * it
                ):
                    omega = _updated_primal_weight(
                        omega,
                        float(np.linalg.norm(restart_point.x - start.x)),
                        split.scaled_dual_norm(restart_point.y - start.y),
                        omega_floor,
                    )
                    tau, sigma, rho = _step_sizes(omega, split.norm_K2, split.L_h)
                    start = p = restart_point
                    k, r_prev = 0, math.inf
                    restarts += 1
                    continue
                r_prev = r
            p = step.point.relaxed(p, rho)
            k += 1

        if err is not None and logged != it:
            log.row(it, err, tau)
        solve_time = time.perf_counter() - t0
        info = {
            "restarts": restarts,
            "primal_weight": omega,
            "step": tau,
            "tau": tau,
            "sigma": sigma,
            "lipschitz": split.L_h,
        }
        return finish(
            status,
            None,
            (point, err) if status is not None else None,
            best,
            opts,
            (self.name, it, solve_time, setup_time),
            info,
            log,
            {"primal_weight": omega},
        )


def _primal_weight_floor(norm_K2: float, L_h: float) -> float:
    """The smallest primal weight worth using: _WEIGHT_FLOOR beta L_h / ||K~||.

    Below omega = beta L_h / ||K~|| the step condition is dominated by the smooth terms, so
    tau ~ 1 / (beta L_h) stops growing as omega falls while sigma = tau omega^2 keeps
    shrinking. Early epochs, when x moves towards the minimizer of the smooth terms and y
    hardly moves, would otherwise drive omega (and the dual steps) towards 0.
    """
    if L_h <= 0.0 or norm_K2 <= 0.0:
        return _OMEGA_MIN
    floor = _WEIGHT_FLOOR * _BETA * L_h / math.sqrt(norm_K2)
    return float(np.clip(floor, _OMEGA_MIN, _OMEGA_MAX))


def _updated_primal_weight(omega: float, dx_norm: float, dy_norm: float, floor: float) -> float:
    """PDLP's smoothed update log omega <- theta log(|dy| / |dx|) + (1 - theta) log omega."""
    if dx_norm <= _TINY or dy_norm <= _TINY:
        return omega
    theta = _PRIMAL_WEIGHT_SMOOTHING
    log_omega = theta * math.log(dy_norm / dx_norm) + (1.0 - theta) * math.log(omega)
    return float(np.clip(math.exp(log_omega), floor, _OMEGA_MAX))


def _step_sizes(omega: float, norm_K2: float, L_h: float) -> tuple[float, float, float]:
    """tau = eta / omega, sigma = eta omega and the relaxation rho (module docstring).

    eta is the positive root of omega ||K~||^2 eta^2 + beta L_h eta - omega = 0, the largest
    with 1/tau - sigma ||K~||^2 >= beta L_h, times the safety factor. Without dual blocks
    and smooth terms (nothing bounds the step) tau = sigma = 1.
    """
    bL = _BETA * L_h
    root = bL + math.sqrt(bL * bL + 4.0 * omega * omega * norm_K2)
    eta = _STEP_SAFETY * 2.0 * omega / root if root > 0 else omega
    tau, sigma = eta / omega, eta * omega
    if L_h <= 0.0:
        return tau, sigma, 1.0 + _RELAXATION
    beta = (1.0 / tau - sigma * norm_K2) / L_h
    return tau, sigma, 1.0 + _RELAXATION * (1.0 - 1.0 / (2.0 * beta))
