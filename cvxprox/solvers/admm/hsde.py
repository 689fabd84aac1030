"""ADMM on SCS's homogeneous self-dual embedding (O'Donoghue, Chu, Parikh, Boyd 2016;
SCS 3: O'Donoghue 2021), with a quadratic objective.

For  minimize 1/2 x'Px + c'x  subject to  Ax - b in K  the program is written in SCS's form
A_s x + s = b_s, s in K, with A_s = -A, b_s = -b; its dual variable y_s lies in K* and
ours is y = -y_s. The embedding's variable u = (x, y_s, tau), with its companion
(r, s, kappa), is found by Douglas-Rachford splitting on the state v (n + m + 1,). With
R = diag(r_x I, r_y, r_tau) (r_x = sigma, r_y = 1 / rho, 1 / (1e3 rho) on equality rows,
r_tau = 10), h = (c, b_s) and

    M = [[P + r_x I, A_s'], [A_s, -diag(r_y)]]                         (factored once)
    g = M^{-1} (c, -b_s)

one iteration is

    v       <- sqrt(n + m + 1) v / ||v||                     (the embedding is homogeneous)
    p       = M^{-1} (r_x v_x, -r_y v_y)
    tau~    = the larger root of  a t^2 + b' t + c' = 0,  a = r_tau + g'Rg,
              b' = v'Rg - 2 p'Rg - r_tau v_tau,  c' = p'Rp - p'Rv  (R over the first n + m)
    u~      = (p - tau~ g, tau~)
    u       = Pi_C(2 u~ - v),   C = R^n x K* x R_+,  Pi_K*(w) = w + Pi_K(-w)
    s       = r_y (v_y + u_y - 2 u~_y) = r_y Pi_K(-(2 u~_y - v_y))   (in K)
    v       <- v + alpha (u - u~)

(the first iteration sets tau~ = u_tau = 1 and skips the normalization). The point read
back is x = u_x / tau, z = s / tau, y = -u_y / tau; when tau tends to zero, u_x and -u_y
themselves tend to an unboundedness direction or a Farkas certificate, and are tested as
such (``KKTChecker.certificate``) at the points where u_tau = 0; a Farkas candidate that
fails SCS's test there is refined (``KKTChecker.refine_farkas``) and tested again, the
refinements taking at most ``REFINE_SHARE`` of the run's time. Anderson
acceleration extrapolates v after every ``interval``-th iteration, with the safeguard of
``cvxprox.solvers.admm.kkt``. The penalty rho (m,) adapts its scalar and its row
multipliers (``cvxprox.solvers.admm.penalty``), and after a change v_y is moved by
s (1 / r_y,new - 1 / r_y,old) so that (u, u~, s) stay the same (SCS's update_scale).
Where u_tau = 0 the point read back does not exist, and the scalar rule, which balances
its residuals, stays; the multipliers keep moving on the rows' homogeneous residuals
A u_x - s relative to their sizes, which the directions tending to a certificate make
(SCS 3.3 keeps its diagonal scale moving there too: without it, it certifies Netlib's
klein1 in 63175 iterations instead of 975). Held at u_tau = 0, the multipliers left
klein1 uncertified in 1e6 iterations and pang in 800000 at eps 1e-4; moving, klein1 is
certified in 1350 iterations and pang in 1850.

On NumPy the iterations between two checks are one compiled call
(``cvxprox.backend.jit.hsde.embedding_iterations``; QSCAGR7 10.7 us per iteration against
48 us for the plain loop); ``_EmbeddingLoop``, written against the array namespace, is
its reference and runs elsewhere, and on NumPy while the compiled loop is not compiled
for a small problem (as ADMM's, ``cvxprox.solvers.admm.kkt``).
"""

from __future__ import annotations

import math
import time

import cvxpy.settings as s
import numpy as np
import scipy.sparse as sp

from cvxprox.backend import Backend
from cvxprox.backend.jit.anderson import PENDING
from cvxprox.backend.jit.cones import cone_layout
from cvxprox.backend.jit.hsde import U_TAU, embedding_iterations, root_plus
from cvxprox.functions.cones import ProductCone
from cvxprox.solvers.admm.kkt import (
    _AA_INTERVAL,
    _AA_SAFEGUARD,
    _CERTIFICATE_EVERY,
    _SIGMA,
    _TINY,
    ADMM,
    CompiledLoop,
    _defer_compilation,
    _KKTSystem,
    anderson_memory,
    settings_line,
)
from cvxprox.solvers.admm.penalty import Penalty
from cvxprox.solvers.common.algorithm import Progress, SteppedAlgorithm, Steps
from cvxprox.solvers.common.anderson import AndersonAcceleration, SafeguardedLoop
from cvxprox.solvers.common.kkt_checks import KKTChecker
from cvxprox.solvers.common.log import IterationLog
from cvxprox.solvers.common.polish import PolishSchedule
from cvxprox.solvers.common.result import BestIterate, ConeLimit, finish
from cvxprox.solvers.common.scaling import RuizScaling

#: r_tau, SCS's TAU_FACTOR.
_TAU_FACTOR = 10.0
#: Below this tau the point read back does not steer the penalty.
_TAU_MIN = 1e-12
#: The share of the run's time that refining Farkas candidates may take
#: (``KKTChecker.refine_farkas``): without a bound, refinements that fail took 9.6 of
#: Netlib's klein2's 10 s at eps 1e-4 (183 of them) and its certificate was not reached.
REFINE_SHARE = 0.1
#: SCS's MIN_NORMALIZATION_FACTOR and MAX_NORMALIZATION_FACTOR.
_BC_NORM_MIN, _BC_NORM_MAX = 1e-4, 1e4


def work_ratio(nnz_L: int, nnz_A: int, n: int, m: int) -> float:
    """What one iteration costs against one of PDHG, whose unit is 2 nnz(A) + n + m (two
    products with A and A' and a pass over the vectors):

        (2 nnz(L) + 3 nnz(A) + 10 (n + m)) / (2 nnz(A) + n + m),

    the two triangular solves with the KKT factor, the products with A and A' of the
    checks and the penalty's rows, and about ten passes over vectors of n + m entries (the
    Anderson memory's update, the cone projection, the relaxation). Fitted to the compiled
    loops' time per iteration, checks included, on twelve LPs (the energy LP at 4 x 24 and
    8 x 144, BNL1, PEROLD, GREENBEA, AGG, GFRD-PNC, 80BAU3B, CYCLE, D2Q06C, SHIP12L,
    FIT2P): the embedding's time is 1.9 nnz(L) + 3.0 nnz(A) + 10.8 (n + m) ns within
    13%, PDHG's 2.2 nnz(A) + 1.3 (n + m) ns on the ones with n + m above 10000 (below,
    a fixed cost per check of about 9 us dominates it: on AGG the embedding's iteration
    costs 1.7 of PDHG's, not 4.9). On 8 x 144 the ratio is 5.8 against 5.5 measured,
    FIT2P 4.1 against 5.6, GREENBEA 6.5 against 6.4. The fixed constants keep the
    hybrid's turns (``cvxprox.solvers.hybrid``) independent of the machine's speed."""
    return (2.0 * nnz_L + 3.0 * nnz_A + 10.0 * (n + m)) / (2.0 * nnz_A + n + m)


def factor_nnz_at(ratio: float, nnz_A: int, n: int, m: int) -> int:
    """The nnz(L) at which ``work_ratio`` reaches ``ratio`` (its inverse in nnz(L))."""
    return max(0, int((ratio * (2.0 * nnz_A + n + m) - 3.0 * nnz_A - 10.0 * (n + m)) / 2.0))


class EmbeddingADMM(SteppedAlgorithm, ADMM):
    """``ADMM`` on the homogeneous self-dual embedding (module docstring): same program,
    options, warm start, checks, penalty rule and result as ``ADMM``. Its run can be
    driven check by check (``steps``; each ``Progress`` carries u_tau)."""

    name = "hsde"

    def steps(self, backend: Backend, t0: float, reason: str) -> Steps:
        """The run as a generator (``cvxprox.solvers.common.algorithm.Steps``)."""
        prog, opts = self.program, self.opts
        n, m = prog.n, prog.m
        scaling = RuizScaling(prog, opts.scaling_iters)
        checker = KKTChecker(prog, scaling, opts)
        sc = checker.scaling
        # The embedding's data: P^ / k, sigma c^ / k, sigma b^ (module docstring).
        P = None if scaling.P is None else scaling.P / scaling.k
        c, b = scaling.c / scaling.k, scaling.b
        sigma = _bc_scale(c, b)
        c, b = sigma * c, sigma * b

        rho, multipliers = opts.rho, None
        start = None
        if self.warm_start is not None:
            rho = float(self.warm_start.get("rho", rho))
            multipliers = self.warm_start.get("row_multipliers")
            start = (
                sigma * scaling.scale_x(self.warm_start["x"]),
                sigma * scaling.scale_z(self.warm_start["z"]),
                -sigma * scaling.scale_y(self.warm_start["y"]) / scaling.k,
            )
        penalty = Penalty(prog, rho, rows=True, multipliers=multipliers)
        rho_vec = penalty.vector
        kkt = _KKTSystem(P, sp.csc_array(-scaling.A.T), _SIGMA, rho_vec)
        ratio = work_ratio(kkt.factor.nnz, prog.A.nnz, n, m)
        setup_time = time.perf_counter() - t0

        log = IterationLog(opts.verbose, self.log_tag)
        log.header(
            prog,
            "ADMM on the homogeneous self-dual embedding",
            reason,
            [
                f"scaling: Ruiz x{opts.scaling_iters}, b and c scale {sigma:.2e}; "
                f"KKT LDL' n+m={n + m}, nnz(L)={kkt.factor.nnz}, an iteration costs about "
                f"{ratio:.1f} of PDHG's",
                settings_line(opts, rho),
            ],
        )

        best = BestIterate()
        polisher = PolishSchedule(prog, checker, deadline=t0 + opts.time_limit)
        memory = anderson_memory(n + m + 1)
        fused = self.fused
        deferring = (
            fused is None
            and backend.name == "numpy"
            and _defer_compilation(n + m, embedding_iterations)
        )
        if backend.name == "numpy" and fused is not False and not deferring:
            loop = _FusedEmbeddingLoop((c, b), kkt, prog.cone, rho_vec, memory, start)
        else:
            loop = _EmbeddingLoop((c, b), kkt, prog.cone, rho_vec, memory, backend, start)
        status, cert, err, stop = None, None, None, None
        dx = dy = xu = zu = yu = None
        boundary = False
        refining = 0.0
        it = 0
        while it < opts.max_iters:
            it_end = min((it // opts.check_every + 1) * opts.check_every, opts.max_iters)
            run_start = time.perf_counter()
            it, accepted = loop.run(it, it_end, (opts.alpha, _AA_SAFEGUARD, _AA_INTERVAL))
            if deferring:
                ADMM._plain_first_seconds += time.perf_counter() - run_start  # noqa: SLF001
            if not accepted and it < opts.max_iters:
                if time.perf_counter() - t0 <= opts.time_limit:
                    continue
            ux, uy, s_, tau = loop.host_point()
            # x^ = u_x / (sigma tau), z^ = s / (sigma tau), y^ = -k u_y / (sigma tau); the
            # numerators are the directions that tend to certificates as tau tends to 0.
            dx, dy = sc.unscale_x(ux), sc.unscale_y(-scaling.k * uy)
            t = max(sigma * tau, _TINY)
            xu, zu, yu = dx / t, sc.unscale_z(s_ / t), dy / t
            err = checker.evaluate(xu, zu, yu)
            best.offer(err, xu, zu, yu)
            if it % (opts.check_every * 10) == 0 or err.converged:
                log.row(it, err, penalty.rho)
            settled = polisher.settle(it, (xu, zu, yu), err)
            if settled is not None:
                (xu, zu, yu), err = settled
                status = s.OPTIMAL
                break
            # Certificates only from a point with tau = 0 (its projection onto R_+): the
            # fixed points of a feasible, bounded program all have tau > 0 (tau kappa = 0,
            # and kappa > 0 needs a certificate), so one whose solution is merely large
            # (a small tau) is not taken for infeasible, and the radius test of
            # ``KKTChecker.primal_infeasibility`` is made against u_x.
            boundary = tau == 0.0
            if boundary and (it // opts.check_every) % _CERTIFICATE_EVERY == 0:
                status, cert = checker.certificate(dx, dy, opts.eps_infeas, dx)
                begun = time.perf_counter()
                if status is None and refining <= REFINE_SHARE * (begun - t0):
                    refined = checker.refine_farkas(dy, opts.eps_infeas)
                    if refined is not None:
                        status, cert = checker.certificate(None, refined, opts.eps_infeas, dx)
                    refining += time.perf_counter() - begun
                if status is not None:
                    break
            if time.perf_counter() - t0 > opts.time_limit:
                break
            stop = yield Progress(it, ratio, best, setup_time, tau)
            if stop is not None:
                break
            if opts.adaptive_rho and (sigma * tau > _TAU_MIN or boundary):
                if boundary:
                    penalty.observe(None, (prog.A @ dx, sc.unscale_z(s_), np.zeros(prog.m)))
                else:
                    penalty.observe(err, (prog.A @ xu, zu, prog.b))
                if penalty.update(it):
                    rho_vec = penalty.vector
                    kkt.update_rho(rho_vec)
                    loop.rescale(rho_vec)

        solve_time = time.perf_counter() - t0
        info = {
            "rho": penalty.rho,
            "refactorizations": penalty.changes,
            "rejected_accelerations": loop.rejected,
            "accelerated": True,
        }
        return finish(
            status,
            cert,
            ((xu, zu, yu), err) if status == s.OPTIMAL else None,
            best,
            opts,
            (self.name, it, solve_time, setup_time),
            info,
            log,
            {"rho": penalty.rho, "row_multipliers": penalty.multipliers},
            ConeLimit(polisher, dx if boundary else None, dy if boundary else None, dx),
            stop,
        )


def _bc_scale(c: np.ndarray, b: np.ndarray) -> float:
    """SCS's scale of b and c: 1 / max(||c||_inf, ||b||_inf), the norm clipped to
    [1e-4, 1e4] (1 when it is below 1e-4)."""
    norm = max(float(np.max(np.abs(c), initial=0.0)), float(np.max(np.abs(b), initial=0.0)))
    if norm < _BC_NORM_MIN:
        return 1.0
    return 1.0 / min(norm, _BC_NORM_MAX)


def _penalty_terms(
    n: int, rho: np.ndarray, kkt: _KKTSystem, h: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """On the host, for the KKT system's current factor: R = (r_x, 1 / rho) (n + m,),
    g = M^{-1} h with h = (c, b), and g'Rg (both loops' penalty-dependent data)."""
    r = np.concatenate([np.full(n, _SIGMA), 1.0 / rho])
    g = kkt.factor.solve(h)
    return r, g, float(g @ (r * g))


def _starting_state(
    n: int, r_y: np.ndarray, start: tuple[np.ndarray, np.ndarray, np.ndarray] | None
) -> np.ndarray:
    """The state v (n + m + 1,) the iteration starts from: (0, 0, 1), or from a warm
    start (x, z, y_s), (x, y_s + z / r_y, 1)."""
    v = np.zeros(n + r_y.shape[0] + 1)
    v[-1] = 1.0
    if start is not None:
        x, z, y_s = start
        v[:n], v[n:-1] = x, y_s + z / r_y
    return v


class _EmbeddingLoop(SafeguardedLoop):
    """The Douglas-Rachford iteration on the embedding (module docstring), on a backend's
    arrays: the state v (n + m + 1,), the last iteration's u, u~, s, the Anderson memory."""

    def __init__(
        self,
        data: tuple[np.ndarray, np.ndarray],
        kkt: _KKTSystem,
        cone: ProductCone,
        rho: np.ndarray,
        memory: int,
        backend: Backend,
        start: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    ) -> None:
        c, b = data
        n, m = len(c), len(b)
        self._backend, self._xp, self._n, self._m = backend, backend.xp, n, m
        self._kkt, self.cone = kkt, cone
        self._h = np.concatenate([c, b])  # (c, -b_s)
        self._set_penalty(rho)
        v = _starting_state(n, self._r_y_host, start)
        self._start(backend.asarray(v), memory, backend)
        self.u = self.w
        self.s = backend.zeros(m)

    def _set_penalty(self, rho: np.ndarray) -> None:
        """R_y = 1 / rho, the KKT solve and g = M^{-1} (c, b) for the current factor."""
        bk, n = self._backend, self._n
        r, g, self._gRg = _penalty_terms(n, rho, self._kkt, self._h)
        self._r_y_host = r[n:]
        self._solve = self._kkt.solver(bk)
        self._r, self._r_y, self._g = bk.asarray(r), bk.asarray(r[n:]), bk.asarray(g)
        self._r_x = _SIGMA

    def run(self, it: int, it_end: int, controls: tuple) -> tuple[int, bool]:
        """Iterations it + 1 .. it_end; returns (last iteration, accepted)."""
        xp, n, m, cone, bk = self._xp, self._n, self._m, self.cone, self._backend
        alpha, safeguard, interval = controls
        r, r_y, g = self._r, self._r_y, self._g
        nm = n + m
        advance, self._pending = self._pending, False
        while it < it_end:
            if advance:
                self._advance(it, interval)
            first = it == 0
            it += 1
            v = self.w
            if not first:
                norm = math.sqrt(bk.scalar(v @ v))
                if norm > 0:
                    v = v * (math.sqrt(nm + 1) / norm)
                    self.w = v
            vx, vy, vt = v[:n], v[n:nm], v[nm]
            p = self._solve(xp.concat([self._r_x * vx, -r_y * vy]))
            if first:
                tau_t = 1.0
            else:
                rg, rp = r * g, r * p
                a = _TAU_FACTOR + self._gRg
                bq = bk.scalar(v[:nm] @ rg) - 2.0 * bk.scalar(p @ rg) - float(vt) * _TAU_FACTOR
                cq = bk.scalar(p @ rp) - bk.scalar(v[:nm] @ rp)
                tau_t = root_plus(a, bq, cq)
            ut = p - tau_t * g
            wy = 2.0 * ut[n:] - vy
            proj = cone.project(-wy)
            uy = wy + proj
            ux = 2.0 * ut[:n] - vx
            u_tau = 1.0 if first else max(2.0 * tau_t - float(vt), 0.0)
            f_tau = float(vt) + alpha * (u_tau - tau_t)
            f = xp.concat(
                [
                    vx + alpha * (ux - ut[:n]),
                    vy + alpha * (uy - ut[n:]),
                    bk.asarray(np.array([f_tau])),
                ]
            )
            self.f = f
            self.u = (ux, uy, u_tau)
            self.s = r_y * proj
            gv = f - v
            if not self._safeguard(f, math.sqrt(bk.scalar(gv @ gv)), safeguard):
                advance = False
                if it == it_end:
                    return it, False
                continue
            if it == it_end:
                self._pending = True
                return it, True
            advance = True
        return it, False

    def host_point(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """(u_x, u_y (SCS's sign), s, tau) of the last iteration, on the host."""
        ux, uy, tau = self.u
        to_host = self._backend.to_host
        return to_host(ux), to_host(uy), to_host(self.s), float(tau)

    def rescale(self, rho: np.ndarray) -> None:
        """After a penalty change (KKT system refactored by the caller): new R_y and g,
        v_y moved by s (1 / r_y,new - 1 / r_y,old) in the next state, memory reset."""
        n, m = self._n, self._m
        old = self._r_y_host
        self._set_penalty(rho)
        shift = self.s * self._backend.asarray(1.0 / self._r_y_host - 1.0 / old)
        self.f = self._xp.concat([self.f[:n], self.f[n : n + m] + shift, self.f[n + m :]])
        self._f_plain = self.f
        self.w = self.f
        self._pending = False
        self._accel.reset()


class _FusedEmbeddingLoop(CompiledLoop):
    """The compiled iteration (``cvxprox.backend.jit.hsde.embedding_iterations``) on
    NumPy arrays, with ``_EmbeddingLoop``'s interface (its reference)."""

    def __init__(
        self,
        data: tuple[np.ndarray, np.ndarray],
        kkt: _KKTSystem,
        cone: ProductCone,
        rho: np.ndarray,
        memory: int,
        start: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    ) -> None:
        c, b = data
        n, m = len(c), len(b)
        self._n, self._m, self._kkt = n, m, kkt
        self._h = np.concatenate([c, b])
        self._cone = cone_layout(cone).arrays
        self._scalars = np.array([_SIGMA, _TAU_FACTOR, 0.0])
        self._set_penalty(rho)
        nm = n + m
        self.w = _starting_state(n, self._r[n:], start)
        self.f = self.w.copy()
        self._u = np.zeros(nm)
        self._s = np.zeros(m)
        self._fstate = np.zeros(2)
        self._fstate[U_TAU] = 1.0
        self._istate = np.zeros(2, dtype=np.int64)
        self._state = (
            self.w,
            self.f,
            self.f.copy(),
            np.empty(nm),
            np.empty(nm),
            np.empty(nm),
            np.empty(m),
            np.empty(m),
            self._u,
            self._s,
            self._fstate,
            self._istate,
        )
        self._accel = AndersonAcceleration(nm + 1, memory)

    def _set_penalty(self, rho: np.ndarray) -> None:
        """R = (r_x, 1 / rho), g = M^{-1} (c, b) and g'Rg for the current factor."""
        self._r, self._g, self._scalars[2] = _penalty_terms(self._n, rho, self._kkt, self._h)

    def run(self, it: int, it_end: int, controls: tuple) -> tuple[int, bool]:
        """Iterations it + 1 .. it_end; returns (last iteration, accepted)."""
        return embedding_iterations(
            it,
            it_end,
            (self._r, self._g, self._scalars),
            self._state,
            self._kkt.factor.arrays,
            self._cone,
            self._accel.arrays,
            controls,
        )

    def host_point(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """(u_x, u_y (SCS's sign), s, tau) of the last iteration (copies)."""
        n = self._n
        return self._u[:n].copy(), self._u[n:].copy(), self._s.copy(), float(self._fstate[U_TAU])

    def rescale(self, rho: np.ndarray) -> None:
        """As ``_EmbeddingLoop.rescale``."""
        n, m = self._n, self._m
        old = self._r[n:].copy()
        self._set_penalty(rho)
        self.f[n : n + m] += self._s * (1.0 / self._r[n:] - 1.0 / old)
        self._state[2][:] = self.f
        self.w[:] = self.f
        self._istate[PENDING] = 0
        self._accel.reset()
