"""Restarted reflected-Halpern PDHG with diagonal preconditioning (PDLP / cuPDLPx style).

The scaled program  minimize c'x + 1/2 x'Px  subject to  Ax - b in K  (x in R^n, A m x n)
is the saddle-point problem

    min_x max_y  c'x + 1/2 x'Px + y'(Ax - b) - f*(y),     f* = indicator of K° = -K*.

One step T: (x, y) -> (x+, y+) of the primal-dual hybrid gradient method, with the
quadratic linearized (Condat 2013, Vu 2013), is

    x+ = x - tau (c + P x + A'y)
    y+ = prox_{sigma f*}(y + sigma (A(2x+ - x) - b)) = proj_{K°}(y + sigma (A(2x+ - x) - b)),

since by Moreau's identity prox_{sigma f*}(v) = v - sigma prox_{f/sigma}(v / sigma), which
for a cone indicator is v - proj_K(v) = proj_{K°}(v). When P = diag(p) is diagonal (as
CVXPY makes it for sums of squares) the quadratic is not linearized but taken exactly,
x+ = (x - tau (c + A'y)) / (1 + tau p), and counts as L_P = 0 below. Fixed points of T
are exactly the KKT points (P x + c + A'y = 0, Ax - b in K, y in K°, y'(Ax - b) = 0). In
the metric

    M = [[I/tau, -A'], [-A, I/sigma]],   ||(dx, dy)||_M^2 = |dx|^2/tau + |dy|^2/sigma - 2 dy'A dx,

T is a forward-backward step, alpha-averaged when 1/tau - sigma ||A||^2 = beta L_P with
beta > 1/2 and L_P = lambda_max(P): alpha = 2 beta / (4 beta - 1), and alpha = 1/2 (firmly
nonexpansive) when L_P = 0. Step sizes are tau = eta / omega, sigma = eta omega with omega
the primal weight and eta the largest value with 1/tau - sigma ||A||^2 >= beta L_P
(eta = 1 / ||A|| when L_P = 0), shrunk by a safety factor; ||A||_2 and L_P come from power
iteration on the scaled data.

Reflected Halpern iteration with adaptive restarts (Lu & Yang 2024; cuPDLPx 2025): in
epoch n, from the anchor z^{n,0},

    z^{n,k+1} = (k+1)/(k+2) ((1 + gamma) T(z^{n,k}) - gamma z^{n,k}) + 1/(k+2) z^{n,0},

where the reflection (1 + gamma) T - gamma I stays nonexpansive for gamma <= 1/alpha - 1.
With the fixed-point residual r_k = ||z^{n,k} - T(z^{n,k})||_M, the epoch ends when

    r_k <= 0.2 r_0                       (sufficient decay),
    r_k <= 0.8 r_0 and r_k > r_{k-}      (necessary decay without local progress),
    k >= 0.36 (total iterations)         (artificial restart),

(r_{k-} the residual at the previous check), and the next anchor is the PDHG output
T(z^{n,k}). At a restart the primal weight follows PDLP's smoothed log rule

    log omega <- theta log(|dy| / |dx|) + (1 - theta) log omega,   theta = 1/2,

with dx, dy the moves of the anchor over the epoch; when L_P > 0 omega is kept above
0.3 beta L_P / ||A|| (``_primal_weight_floor``). Iterations keep A x, A'y and (when P is
linearized) P x of every point, as they are linear in the point, so a step costs one
product with each of A, A' and P. The data are preconditioned by Ruiz equilibration
followed by a Pock–Chambolle (alpha = 1) stage and a cost scaling (``cvxprox.scaling``).

Termination is tested every ``check_every`` iterations on the PDHG output, unscaled, with
z = proj_K(Ax - b). When the problem has no solution the steps z - T(z) converge to the
infimal displacement vector, whose y part is a Farkas certificate of primal
infeasibility and whose x part an unbounded direction; both the last step and the move
since the epoch's anchor are tested as certificates.

The iteration runs on the arrays of the backend the options select (``cvxprox.backend``:
NumPy, torch or CuPy, on the CPU or a GPU): data are moved to the device once, the
steps, Halpern combinations, restart tests and power iteration are array operations
and products with the device CSR matrices A and A' (its own CSR), and the scalars they
need are read back one at a time. Every ``check_every`` iterations the PDHG output is
copied to the host for the termination and certificate tests.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cvxpy.settings as s
import numpy as np
import scipy.sparse as sp

from cvxprox.algorithms.base import (
    Algorithm,
    BestIterate,
    ConeLimit,
    IterationLog,
    KKTChecker,
    KKTError,
    SolveResult,
    finish,
)
from cvxprox.algorithms.polish import PolishSchedule
from cvxprox.backend import Backend, get_backend
from cvxprox.ir import ProxProgram
from cvxprox.scaling import RuizScaling

# Step rule: 1/tau - sigma ||A||^2 >= _BETA L_P, eta shrunk by _STEP_SAFETY (the power
# iteration estimate of ||A|| is a lower bound).
_BETA = 1.0
_STEP_SAFETY = 0.99
_REFLECTION = 1.0
# Restart criteria on the fixed-point residual (cuPDLPx's values).
_RESTART_SUFFICIENT = 0.2
_RESTART_NECESSARY = 0.8
_RESTART_ARTIFICIAL = 0.36
# PDLP's primal weight update.
_PRIMAL_WEIGHT_SMOOTHING = 0.5
_OMEGA_MIN, _OMEGA_MAX = 1e-5, 1e5
# With P != 0 the primal weight is kept >= _QP_WEIGHT_FLOOR beta L_P / ||A|| (see
# _primal_weight_floor).
_QP_WEIGHT_FLOOR = 0.3
_TINY = 1e-10
# Power iteration.
_POWER_ITERS = 200
_POWER_TOL = 1e-6
_POWER_SEED = 0


@dataclass
class _Point:
    """A primal-dual point (x (n,), y (m,)) with the products A x (m,), A'y (n,) and P x
    (n,; None unless P is linearized)."""

    x: Any
    y: Any
    Ax: Any
    Aty: Any
    Px: Any | None

    def combine(self, a: float, other: _Point, b: float, anchor: _Point, c: float) -> _Point:
        """a self + b other + c anchor, products included (they are linear in the point)."""

        def lin(u: Any, v: Any, w: Any) -> Any:
            return a * u + b * v + c * w

        return _Point(
            lin(self.x, other.x, anchor.x),
            lin(self.y, other.y, anchor.y),
            lin(self.Ax, other.Ax, anchor.Ax),
            lin(self.Aty, other.Aty, anchor.Aty),
            None if self.Px is None else lin(self.Px, other.Px, anchor.Px),
        )


class _ScaledData:
    """The scaled program on the backend and the PDHG step T on it.

    A (m x n) and A' (n x m) are device CSR matrices (``Backend.csr``), c (n,) and b (m,)
    device vectors in the backend's dtype. A diagonal P = diag(p) is kept as the vector
    p (n,) and taken by its exact prox; any other P as an n x n CSR matrix, linearized.
    """

    def __init__(self, program: ProxProgram, scaling: RuizScaling, backend: Backend) -> None:
        self.backend = backend
        self.A = backend.csr(scaling.A)
        self.At = backend.csr(scaling.A.T)
        self.P = self.p = None
        if program.has_quadratic:
            diagonal = scaling.P.diagonal()
            if sp.csr_array(scaling.P - sp.diags_array(diagonal)).count_nonzero() == 0:
                self.p = backend.asarray(diagonal)
            else:
                self.P = backend.csr(scaling.P)
        self.c = backend.asarray(scaling.c)
        self.b = backend.asarray(scaling.b)
        self._cone = program.cone

    def point(self, x: Any, y: Any) -> _Point:
        """The point (x, y) with its products."""
        return _Point(x, y, self.A @ x, self.At @ y, None if self.P is None else self.P @ x)

    def quadratic(self, z: _Point) -> Any | None:
        """P x at the point z, or None when P = 0."""
        return self.p * z.x if self.p is not None else z.Px

    def step(self, z: _Point, tau: float, sigma: float) -> _Point:
        """T(z): one PDHG step (module docstring), 1 product with each of A, A', P."""
        if self.p is not None:
            x = (z.x - tau * (self.c + z.Aty)) / (1.0 + tau * self.p)
        elif self.P is not None:
            x = z.x - tau * (self.c + z.Aty + z.Px)
        else:
            x = z.x - tau * (self.c + z.Aty)
        Ax = self.A @ x
        v = z.y + sigma * (2.0 * Ax - z.Ax - self.b)
        y = self._cone.project_polar(v)
        return _Point(x, y, Ax, self.At @ y, None if self.P is None else self.P @ x)

    def residual(self, z: _Point, Tz: _Point, tau: float, sigma: float) -> float:
        """The fixed-point residual ||z - T(z)||_M (module docstring)."""
        dx, dy, dAx = z.x - Tz.x, z.y - Tz.y, z.Ax - Tz.Ax
        r2 = self.backend.scalar((dx @ dx) / tau + (dy @ dy) / sigma - 2.0 * (dy @ dAx))
        return math.sqrt(max(r2, 0.0))


class PDHG(Algorithm):
    """Restarted reflected-Halpern PDHG for a ProxProgram whose terms are cone indicators.

    Parameters
    ----------
    program : ProxProgram
    options : SolverOptions
    warm_start : dict, optional
        Unscaled ``x`` (n,), ``y`` (m,) of an earlier solve (``z`` is not needed) and,
        optionally, its final ``primal_weight``.
    """

    name = "pdhg"

    def solve(self, reason: str = "") -> SolveResult:
        """Run the method; ``reason`` (why PDHG was chosen) goes into the verbose header."""
        t0 = time.perf_counter()
        opts = self.opts
        backend = get_backend(opts.backend, opts.device, opts.dtype)
        with backend.serial():
            return self._run(backend, t0, reason)

    def _run(self, backend: Backend, t0: float, reason: str) -> SolveResult:
        """The solve on ``backend``, started at time ``t0``."""
        prog, opts = self.program, self.opts
        n, m = prog.n, prog.m
        scaling = RuizScaling(prog, opts.scaling_iters, pock_chambolle=True)
        checker = KKTChecker(prog, scaling, opts)
        data = _ScaledData(prog, scaling, backend)

        rng = np.random.default_rng(_POWER_SEED)
        start = backend.asarray(rng.random(n))
        norm_A = math.sqrt(_max_eigenvalue(backend, lambda v: data.At @ (data.A @ v), start))
        L_P = 0.0 if data.P is None else _max_eigenvalue(backend, lambda v: data.P @ v, start)

        if self.warm_start is not None:
            x = backend.asarray(scaling.scale_x(self.warm_start["x"]))
            y = backend.asarray(scaling.scale_y(self.warm_start["y"]))
            omega = self.warm_start.get("primal_weight")
        else:
            x, y, omega = backend.zeros(n), backend.zeros(m), None
        omega_floor = _primal_weight_floor(norm_A, L_P)
        if omega is None:
            omega = _initial_primal_weight(scaling.c, scaling.b)
        omega = max(omega, omega_floor)
        tau, sigma, gamma = _step_sizes(omega, norm_A, L_P)
        anchor = z = data.point(x, y)
        setup_time = time.perf_counter() - t0

        if data.p is not None:
            quadratic = "P diagonal (exact prox)"
        elif data.P is not None:
            quadratic = f"lambda_max(P) ~ {L_P:.3e} (linearized)"
        else:
            quadratic = "P = 0"
        log = IterationLog(opts.verbose)
        log.header(
            prog,
            "PDHG",
            reason,
            [
                f"scaling: Ruiz x{opts.scaling_iters} + Pock-Chambolle (alpha=1), "
                f"cost scale {scaling.k:.2e}",
                f"||A|| ~ {norm_A:.3e} (power iteration), {quadratic}",
                f"steps: tau={tau:.2e} sigma={sigma:.2e} primal weight={omega:.2e} "
                f"reflection={gamma:.2f}",
                f"restarts on r=||z - T(z)||_M: r <= {_RESTART_SUFFICIENT} r0, "
                f"r <= {_RESTART_NECESSARY} r0 and rising, k >= {_RESTART_ARTIFICIAL} iters",
                f"eps_abs={opts.eps_abs:.1e} eps_rel={opts.eps_rel:.1e} "
                f"eps_infeas={opts.eps_infeas:.1e} backend={backend.name} "
                f"device={opts.device} dtype={opts.dtype} "
                f"max_iters={opts.max_iters} time_limit={opts.time_limit}",
            ],
        )

        best = BestIterate()
        polisher = PolishSchedule(prog, checker, deadline=t0 + opts.time_limit)
        status, cert = None, None
        err: KKTError | None = None
        xu = zu = yu = None
        dx = dy = None
        k = 0  # iterations in the current epoch
        r0 = r_prev = math.inf
        restarts = 0
        logged = 0
        it = 0
        for it in range(1, opts.max_iters + 1):
            Tz = data.step(z, tau, sigma)
            check = it % opts.check_every == 0 or it == opts.max_iters
            if k == 0 or check:
                r = data.residual(z, Tz, tau, sigma)
                if k == 0:
                    r0 = r
            if check:
                xu = scaling.unscale_x(backend.to_host(Tz.x))
                yu = scaling.unscale_y(backend.to_host(Tz.y))
                Axu = scaling.unscale_z(backend.to_host(Tz.Ax))
                zu = prog.cone.project(Axu - prog.b)
                Px = data.quadratic(Tz)
                err = checker.kkt_error(
                    xu,
                    zu,
                    yu,
                    Axu,
                    scaling.unscale_gradient(backend.to_host(Tz.Aty)),
                    None if Px is None else scaling.unscale_gradient(backend.to_host(Px)),
                )
                best.offer(err, xu, zu, yu)
                if it % (opts.check_every * 10) == 0 or err.converged:
                    log.row(it, err, tau)
                    logged = it
                settled = polisher.settle(it, (xu, zu, yu), err)
                if settled is not None:
                    (xu, zu, yu), err = settled
                    status = s.OPTIMAL
                    break
                dx = scaling.unscale_x(backend.to_host(Tz.x - z.x))
                dy = scaling.unscale_y(backend.to_host(Tz.y - z.y))
                status, cert = checker.certificate(dx, dy, opts.eps_infeas, xu)
                if status is None and k > 0:
                    status, cert = checker.certificate(
                        scaling.unscale_x(backend.to_host(Tz.x - anchor.x)),
                        scaling.unscale_y(backend.to_host(Tz.y - anchor.y)),
                        opts.eps_infeas,
                        xu,
                    )
                if status is not None:
                    break
                if time.perf_counter() - t0 > opts.time_limit:
                    break
                if k > 0 and (
                    r <= _RESTART_SUFFICIENT * r0
                    or (r <= _RESTART_NECESSARY * r0 and r > r_prev)
                    or k >= _RESTART_ARTIFICIAL * it
                ):
                    omega = _updated_primal_weight(
                        omega,
                        _norm(backend, Tz.x - anchor.x),
                        _norm(backend, Tz.y - anchor.y),
                        omega_floor,
                    )
                    tau, sigma, gamma = _step_sizes(omega, norm_A, L_P)
                    anchor = z = Tz
                    k, r_prev = 0, math.inf
                    restarts += 1
                    continue
                r_prev = r
            w = (k + 1) / (k + 2)
            z = Tz.combine(w * (1.0 + gamma), z, -w * gamma, anchor, 1.0 - w)
            k += 1

        if err is not None and logged != it:
            log.row(it, err, tau)
        solve_time = time.perf_counter() - t0
        info = {
            "restarts": restarts,
            "primal_weight": omega,
            "tau": tau,
            "sigma": sigma,
            "norm_A": norm_A,
        }
        return finish(
            status,
            cert,
            None if err is None else ((xu, zu, yu), err),
            best,
            opts,
            (self.name, it, solve_time, setup_time),
            info,
            log,
            {"primal_weight": omega},
            ConeLimit(polisher, dx, dy, xu),
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
    """PDLP's omega = ||c||_2 / ||b||_2 of the scaled data (1 when either is ~0)."""
    c_norm, b_norm = float(np.linalg.norm(c)), float(np.linalg.norm(b))
    if c_norm > _TINY and b_norm > _TINY:
        return _clip(c_norm / b_norm, _OMEGA_MIN, _OMEGA_MAX)
    return 1.0


def _clip(value: float, low: float, high: float) -> float:
    """value clipped to [low, high]."""
    return min(max(value, low), high)


def _primal_weight_floor(norm_A: float, L_P: float) -> float:
    """The smallest primal weight worth using: _QP_WEIGHT_FLOOR beta L_P / ||A||.

    Below omega = beta L_P / ||A|| the step condition is dominated by the quadratic, so
    tau ~ 1 / (beta L_P) stops growing as omega falls while sigma = tau omega^2 keeps
    shrinking. Early epochs, when x moves towards the minimizer of the quadratic and y
    hardly moves, would otherwise drive omega (and the dual step) towards 0.
    """
    if L_P <= 0.0 or norm_A <= 0.0:
        return _OMEGA_MIN
    return _clip(_QP_WEIGHT_FLOOR * _BETA * L_P / norm_A, _OMEGA_MIN, _OMEGA_MAX)


def _updated_primal_weight(omega: float, dx_norm: float, dy_norm: float, floor: float) -> float:
    """PDLP's smoothed update log omega <- theta log(|dy| / |dx|) + (1 - theta) log omega."""
    if dx_norm <= _TINY or dy_norm <= _TINY:
        return omega
    theta = _PRIMAL_WEIGHT_SMOOTHING
    log_omega = theta * math.log(dy_norm / dx_norm) + (1.0 - theta) * math.log(omega)
    return _clip(math.exp(log_omega), floor, _OMEGA_MAX)


def _step_sizes(omega: float, norm_A: float, L_P: float) -> tuple[float, float, float]:
    """tau = eta / omega, sigma = eta omega and the reflection gamma (module docstring).

    eta is the positive root of omega ||A||^2 eta^2 + beta L_P eta - omega = 0, i.e. the
    largest with 1/tau - sigma ||A||^2 >= beta L_P, times the safety factor; gamma is
    the largest reflection <= _REFLECTION that keeps (1 + gamma) T - gamma I nonexpansive.
    """
    bL = _BETA * L_P
    disc = math.sqrt(bL * bL + 4.0 * omega * omega * norm_A * norm_A)
    eta = _STEP_SAFETY * 2.0 * omega / (bL + disc) if bL + disc > 0 else 1.0
    tau, sigma = eta / omega, eta * omega
    if L_P <= 0.0:
        return tau, sigma, _REFLECTION
    beta = (1.0 / tau - sigma * norm_A * norm_A) / L_P
    return tau, sigma, min(_REFLECTION, 1.0 - 1.0 / (2.0 * beta))
