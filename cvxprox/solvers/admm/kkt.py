"""ADMM with a cached sparse factorization of the KKT matrix (OSQP/COSMO style).

For  minimize 1/2 x'Px + c'x + f(Ax - b)  the splitting z = Ax - b gives, with a
diagonal penalty R = diag(rho) (constant on every cone block), relaxation alpha and
a small proximal weight sigma on x:

    [P + sigma I    A'    ] [x~]   [sigma x^k - c        ]
    [A           -R^{-1}  ] [nu] = [b + z^k - R^{-1} y^k ]          (factored once)
    z~      = z^k + R^{-1} (nu - y^k)                                (= A x~ - b)
    x^{k+1} = alpha x~ + (1 - alpha) x^k
    z^      = alpha z~ + (1 - alpha) z^k
    z^{k+1} = prox_{f/R}(z^ + R^{-1} y^k)
    y^{k+1} = y^k + R (z^ - z^{k+1})

For a cone indicator the prox is the projection onto K, so z stays in K and y in the
polar cone at every iteration. The penalty (``cvxprox.solvers.admm.penalty``: a scalar
adapted from the ratio of the primal and dual residuals of the termination test, 1e3
times larger on equality rows) changes by refactoring with the same sparsity pattern.
The differences y^{k+1} - y^k and x^{k+1} - x^k converge to infeasibility and
unboundedness certificates when the problem has no solution (Banjac, Goulart, Stellato,
Boyd 2019).

The iterations between two checks run in one of two loops with the same arithmetic:
on NumPy the compiled ``cvxprox.backend.jit.admm.admm_iterations`` (LDL' solve, cone projection
and Anderson step fused), on torch and CuPy ``_PlainLoop``, written against the array
namespace with the backend's cone projections (``ProductCone.project``), ``PlainAnderson``
and a KKT solve on the device: an LU factor of the dense KKT matrix
(``Backend.lu_solver``) when n + m <= ``DENSE_KKT_MAX``, else the host's LDL' factor, each
solve then copying the right-hand side to the host and the solution back (by design: a
sparse LDL' factor has no device version here). ``_PlainLoop`` on NumPy is the reference
the compiled loop is tested against, and it runs small problems (n + m <=
``PLAIN_FIRST_MAX``) while the compiled loop has no version compiled in the process or in
Numba's disk cache, until the plain loop has run ``PLAIN_FIRST_BUDGET`` seconds in the
process: the first solves of small problems after installation then skip the loop's
compilation (about 2.4 s, the time the plain loop loses in some 2000 iterations of a small
LP); a later solve compiles it once for all.

Every ``check_every`` iterations the termination, certificate and polishing tests, the
best-iterate tracking, the plateau test of Anderson acceleration and the penalty update
run where the iterates live (``_HostChecks``, ``_DeviceChecks``): on NumPy on the host,
with the compiled ``KKTChecker.evaluate``; on torch and CuPy on the device in float64
(``KKTChecker.kkt_error`` and ``KKTChecker.certificate`` on device arrays, the products
with the scaled data as device CSR matrices), reading back scalars only. Vectors come back
to the host only for a due polishing attempt (``PolishSchedule.attempt``: x, z, y), for
the returned point or certificate, once at the end, and for the host LDL' solves above
``DENSE_KKT_MAX``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import cvxpy.settings as s
import numpy as np
import scipy.sparse as sp

from cvxprox.backend import Array, Backend
from cvxprox.backend.jit.admm import admm_iterations
from cvxprox.backend.jit.anderson import G_ACCEPTED, PENDING, REJECTED
from cvxprox.backend.jit.cones import cone_layout
from cvxprox.backend.jit.ldl import LDLFactor, kkt_upper
from cvxprox.functions.cones import ProductCone
from cvxprox.interface.options import SolverOptions
from cvxprox.solvers.admm.penalty import Penalty
from cvxprox.solvers.common.algorithm import Algorithm
from cvxprox.solvers.common.anderson import AndersonAcceleration, SafeguardedLoop
from cvxprox.solvers.common.kkt_checks import KKTChecker
from cvxprox.solvers.common.log import IterationLog
from cvxprox.solvers.common.polish import PolishSchedule
from cvxprox.solvers.common.result import BestIterate, ConeLimit, SolveResult, finish
from cvxprox.solvers.common.scaling import DiagonalScaling, RuizScaling
from cvxprox.solvers.common.termination import KKTError

_SIGMA = 1e-6
# Anderson acceleration: memory, and the factor by which an extrapolated point may
# increase the fixed-point residual before it is rejected.
_AA_MEMORY = 30
# Cap on the numbers Anderson acceleration stores (two dim x memory arrays): large
# problems get a shorter memory.
_AA_STORAGE = 20_000_000
_AA_SAFEGUARD = 1.0
# Anderson steps after every this many-th iteration, plain steps in between (SCS's
# acceleration_interval): the memory spans 10 times more iterations.
_AA_INTERVAL = 10
# Before this many iterations, an Anderson step after every iteration: a problem that
# converges in a few hundred iterations gets there in about half as many (zoo).
_AA_DENSE_UNTIL = 500
# When the fixed-point residual ||T(w) - w|| stops changing (to this relative tolerance
# over this many iterations) it has converged to a nonzero displacement: the problem
# is infeasible or unbounded. Acceleration is then switched off, because the plain
# iteration's differences are what converge to the certificates.
_TINY = 1e-280
# The certificate tests (projections and products with A) run on every this many-th
# convergence check: a certificate that forms is confirmed a few dozen iterations later.
_CERTIFICATE_EVERY = 5
_AA_PLATEAU_WINDOW = 500
_AA_PLATEAU_RTOL = 1e-5
#: On torch and CuPy the KKT matrix is factored dense on the device up to this n + m.
DENSE_KKT_MAX = 3000
#: On NumPy, problems up to this n + m run the plain loop while the compiled one is not
#: compiled or cached, until the plain loop has run this many seconds in the process.
PLAIN_FIRST_MAX = 2000
PLAIN_FIRST_BUDGET = 2.0


class ADMM(Algorithm):
    """The ADMM solver for an AssembledProgram whose terms are cone indicators.

    Parameters
    ----------
    program : AssembledProgram
    options : SolverOptions
    warm_start : dict, optional
        Unscaled ``x``, ``z``, ``y`` (and ``rho``) of an earlier solve.

    Attributes
    ----------
    fused : bool or None
        On NumPy, run the compiled loop (True) or its plain reference (False); None, the
        default, runs the compiled loop but for small problems while it is not compiled
        (module docstring).
    """

    name = "admm"
    fused: bool | None = None
    #: Seconds this process has spent in plain loops that stood in for the compiled one.
    _plain_first_seconds = 0.0

    def _solve(self, backend: Backend, t0: float, reason: str) -> SolveResult:
        prog, opts = self.program, self.opts
        n, m = prog.n, prog.m
        scaling = RuizScaling(prog, opts.scaling_iters)
        checker = KKTChecker(prog, scaling, opts)
        P, c, b = scaling.P, scaling.c, scaling.b
        At = sp.csc_array(scaling.A.T)
        cone = prog.cone

        x, z, y = np.zeros(n), np.zeros(m), np.zeros(m)
        rho = opts.rho
        if self.warm_start is not None:
            x = scaling.scale_x(self.warm_start["x"])
            z = scaling.scale_z(self.warm_start["z"])
            y = scaling.scale_y(self.warm_start["y"])
            rho = float(self.warm_start.get("rho", rho))
        penalty = Penalty(prog, rho)
        rho_vec = penalty.vector
        kkt = _KKTSystem(P, At, _SIGMA, rho_vec)
        setup_time = time.perf_counter() - t0

        log = IterationLog(opts.verbose)
        log.header(
            prog,
            "ADMM",
            reason,
            [
                f"scaling: Ruiz x{opts.scaling_iters}, cost scale {scaling.k:.2e}; "
                f"KKT LDL' n+m={n + m}, nnz(L)={kkt.factor.nnz}",
                settings_line(opts, rho),
            ],
        )

        best = BestIterate()
        polisher = PolishSchedule(prog, checker, deadline=t0 + opts.time_limit)
        memory = anderson_memory(n + m)
        inv_rho = 1.0 / rho_vec
        start, data = (x, z + y / rho_vec), (c, b, inv_rho)
        fused = self.fused
        deferring = (
            fused is None and backend.name == "numpy" and _defer_compilation(n + m, admm_iterations)
        )
        if backend.name == "numpy" and fused is not False and not deferring:
            loop = _FusedLoop(start, data, kkt, (cone, checker.project), memory)
        else:
            loop = _PlainLoop(start, data, kkt, cone, memory, backend)
        checks = _HostChecks(checker, At) if backend.name == "numpy" else _DeviceChecks(checker)
        sc, rho_side = checks.scaling, checks.put(rho_vec)
        w = None
        accelerate = True
        plateau_ref = np.inf
        status, cert, err = None, None, None
        dx = dy = None
        it = 0
        while it < opts.max_iters:
            it_end = min((it // opts.check_every + 1) * opts.check_every, opts.max_iters)
            run_start = time.perf_counter()
            interval = (1 if it < _AA_DENSE_UNTIL else _AA_INTERVAL) if accelerate else 0
            it, accepted = loop.run(it, it_end, (opts.alpha, _SIGMA, _AA_SAFEGUARD, interval))
            if deferring:
                ADMM._plain_first_seconds += time.perf_counter() - run_start
            if not accepted:  # the check's iteration was a rejected extrapolation
                if it < opts.max_iters and time.perf_counter() - t0 <= opts.time_limit:
                    continue
                loop.undo_rejected()  # a run ends with a check
            f, w, z_next, y_over_rho = checks.state(loop)
            x, v = f[:n], f[n:]
            y_next = rho_side * (v - z_next)
            dx, dy = x - w[:n], y_next - rho_side * y_over_rho
            xu, zu, yu = sc.unscale_x(x), sc.unscale_z(z_next), sc.unscale_y(y_next)
            err = checks.evaluate(x, y_next, (xu, zu, yu))
            best.offer(err, xu, zu, yu)
            if it % (opts.check_every * 10) == 0 or err.converged:
                log.row(it, err, penalty.rho)
            settled = polisher.settle(it, (xu, zu, yu), err)
            if settled is not None:
                (xu, zu, yu), err = settled
                status = s.OPTIMAL
                break
            if (it // opts.check_every) % _CERTIFICATE_EVERY == 0:
                dxu, dyu = sc.unscale_x(dx), sc.unscale_y(dy)
                status, cert = checker.certificate(dxu, dyu, opts.eps_infeas, xu)
                if status is not None:
                    break
                if accelerate and checker.suspects_infeasibility(dxu, dyu, opts.eps_infeas):
                    accelerate = False
            if time.perf_counter() - t0 > opts.time_limit:
                break
            g_norm = loop.residual_norm
            if accelerate and it % _AA_PLATEAU_WINDOW == 0:
                accelerate = abs(g_norm - plateau_ref) > _AA_PLATEAU_RTOL * g_norm
                plateau_ref = g_norm
            if opts.adaptive_rho:
                penalty.observe(err)
                if penalty.update(it):
                    rho_vec = penalty.vector
                    inv_rho[:] = 1.0 / rho_vec
                    kkt.update_rho(rho_vec)
                    rho_side = checks.put(rho_vec)
                    # Same (x, z, y), new penalty: restart the fixed-point iteration.
                    loop.restart(z_next + y_next / rho_side, inv_rho)

        solve_time = time.perf_counter() - t0
        # The returned point (or certificate) to the host, once.
        last = None
        if status == s.OPTIMAL:
            last = (tuple(checker.to_host(u) for u in (xu, zu, yu)), err)
        elif status is None and best.point is not None:
            best.point = tuple(checker.to_host(u) for u in best.point)
        cert = checker.to_host(cert)
        info = {
            "rho": penalty.rho,
            "refactorizations": penalty.changes,
            "rejected_accelerations": loop.rejected,
            "accelerated": accelerate,
        }
        return finish(
            status,
            cert,
            last,
            best,
            opts,
            (self.name, it, solve_time, setup_time),
            info,
            log,
            {"rho": penalty.rho},
            ConeLimit(
                polisher,
                sc.unscale_x(dx) if dx is not None else None,
                sc.unscale_y(dy) if dy is not None else None,
                sc.unscale_x((checks.state(loop)[1] if w is None else w)[:n]),
            ),
        )


def settings_line(options: SolverOptions, rho: float) -> str:
    """The log header's line of an ADMM run's tolerances, relaxation, penalty and limits."""
    return (
        f"eps_abs={options.eps_abs:.1e} eps_rel={options.eps_rel:.1e} "
        f"eps_infeas={options.eps_infeas:.1e} alpha={options.alpha} rho={rho:.2e} "
        f"max_iters={options.max_iters} time_limit={options.time_limit}"
    )


def anderson_memory(dim: int) -> int:
    """Anderson acceleration's memory for iterates of ``dim`` entries: ``_AA_MEMORY``,
    shorter where two dim x memory arrays would exceed ``_AA_STORAGE`` numbers, at
    least 5."""
    return int(np.clip(_AA_STORAGE // (2 * dim), 5, _AA_MEMORY))


def _defer_compilation(size: int, kernel: Callable) -> bool:
    """Whether a NumPy solve of n + m = ``size`` runs the plain loop in place of the compiled
    ``kernel``: a small problem, a kernel with no version in this process nor in Numba's
    disk cache (any version: a cached one for other cone kinds counts), and less than
    ``PLAIN_FIRST_BUDGET`` seconds in such plain loops in the process so far."""
    if size > PLAIN_FIRST_MAX or ADMM._plain_first_seconds >= PLAIN_FIRST_BUDGET:  # noqa: SLF001
        return False
    if kernel.signatures:
        return False
    cache = getattr(kernel, "_cache", None)
    load_index = getattr(getattr(cache, "_cache_file", None), "_load_index", None)
    return load_index is not None and not load_index()


def _flush_tiny(v: np.ndarray) -> None:
    """Set entries below 1e-280 in magnitude to zero, in place.

    Iterates that decay geometrically towards zero eventually become subnormal floats,
    on which arithmetic is hundreds of times slower; such values are zero for any
    problem.
    """
    v[np.abs(v) < _TINY] = 0.0


class _HostChecks:
    """ADMM's checks on the host (NumPy): the scaled iterates as they are, the compiled
    ``KKTChecker.evaluate``, the products with the scaled data A^ (m, n), A^' and P^."""

    def __init__(self, checker: KKTChecker, At: sp.csc_array) -> None:
        self._checker = checker
        self.scaling: DiagonalScaling = checker.scaling
        sc = checker.scaling
        self._A, self._At, self._P = sc.A, At, sc.P
        self.c, self.b = sc.c, sc.b

    def put(self, v: np.ndarray) -> np.ndarray:
        """A host vector on this side."""
        return v

    def state(self, loop: _FusedLoop | _PlainLoop) -> tuple[np.ndarray, ...]:
        """The loop's (f, w, z_next, y_over_rho) on the host."""
        return loop.host_state()

    def products(self, x: np.ndarray, y: np.ndarray) -> tuple[Array, Array | None, Array]:
        """(A^ x, P^ x (None without P), A^'y) of scaled iterates."""
        return self._A @ x, None if self._P is None else self._P @ x, self._At @ y

    def evaluate(self, x: np.ndarray, y: np.ndarray, point: tuple) -> KKTError:
        """The KKT error of the unscaled ``point`` (x, z, y); x, y are its scaled parts."""
        return self._checker.evaluate(*point)


class _DeviceChecks:
    """ADMM's checks on a torch or CuPy device, in float64 (``KKTChecker.device``): the
    loop's iterates converted there, the scaling maps, c^, b^ and the scaled A^, A^', P^
    as device CSR matrices; the KKT error from the device products (scalars read back)."""

    def __init__(self, checker: KKTChecker) -> None:
        bk, sc = checker.device, checker.scaling
        self._checker, self._backend = checker, bk
        self.scaling = sc.on(bk)
        self._A, self._At = bk.csr(sc.A), bk.csr(sc.A.T)
        self._P = None if sc.P is None else bk.csr(sc.P)
        self.c, self.b = bk.asarray(sc.c), bk.asarray(sc.b)

    def put(self, v: np.ndarray) -> Array:
        """A host vector moved to the device (float64)."""
        return self._backend.asarray(v)

    def state(self, loop: _PlainLoop) -> tuple[Array, ...]:
        """The loop's (f, w, z_next, y_over_rho) in float64 on the device."""
        xp, dtype = self._backend.xp, self._backend.dtype
        return tuple(xp.astype(v, dtype, copy=False) for v in loop.device_state())

    def products(self, x: Array, y: Array) -> tuple[Array, Array | None, Array]:
        """(A^ x, P^ x (None without P), A^'y) of scaled iterates, on the device."""
        return self._A @ x, None if self._P is None else self._P @ x, self._At @ y

    def evaluate(self, x: Array, y: Array, point: tuple) -> KKTError:
        """The KKT error of the unscaled ``point`` (x, z, y) on the device, with the
        unscaled products A x = E^-1 A^ x^, A'y and P x = (k D)^-1 (A^'y^, P^ x^)."""
        Ax, Px, Aty = self.products(x, y)
        sc = self.scaling
        return self._checker.kkt_error(
            *point,
            sc.unscale_z(Ax),
            sc.unscale_gradient(Aty),
            None if Px is None else sc.unscale_gradient(Px),
        )


class CompiledLoop:
    """What the compiled loops (``_FusedLoop``, the embedding's) share: the safeguard's
    state vectors ``_fstate`` and ``_istate``
    (``cvxprox.backend.jit.anderson.anderson_safeguard``) and what the solver reads of them."""

    _fstate: np.ndarray
    _istate: np.ndarray

    @property
    def residual_norm(self) -> float:
        """||T(w) - w|| at the last accepted point."""
        return float(self._fstate[G_ACCEPTED])

    @property
    def rejected(self) -> int:
        """How many extrapolated points were rejected."""
        return int(self._istate[REJECTED])


class _FusedLoop(CompiledLoop):
    """The compiled iteration (``cvxprox.backend.jit.admm.admm_iterations``) and its arrays.

    Starts from the scaled point ``start`` = (x, v), v = z + y / rho; ``data`` = (c, b,
    1/rho) on the host (1/rho updated in place by the caller), ``kkt`` the factored KKT
    system, ``cone`` = (K, the checker's projection onto K), ``memory`` Anderson's.
    """

    def __init__(
        self,
        start: tuple[np.ndarray, np.ndarray],
        data: tuple,
        kkt: _KKTSystem,
        cone: tuple[ProductCone, Callable[[np.ndarray], np.ndarray]],
        memory: int,
    ) -> None:
        x, v = start
        n, m = len(x), len(v)
        self.w = np.concatenate([x, v])
        self.f = self.w.copy()
        self.z_next = np.zeros(m)
        self.y_over_rho = np.zeros(m)
        self._fstate = np.zeros(1)
        self._istate = np.zeros(2, dtype=np.int64)
        self.state = (
            self.w,
            np.empty(m),
            self.f,
            np.empty(n + m),
            self.z_next,
            self.y_over_rho,
            np.empty(n + m),
            np.empty(n + m),
            self._fstate,
            self._istate,
        )
        self._n = n
        self._data = data
        self._kkt = kkt
        self._cone = cone_layout(cone[0]).arrays
        self._project = cone[1]
        self._accel = AndersonAcceleration(n + m, memory)

    def run(self, it: int, it_end: int, controls: tuple) -> tuple[int, bool]:
        """Iterations it + 1 .. it_end; returns (last iteration, accepted)."""
        return admm_iterations(
            it,
            it_end,
            self._data,
            self.state,
            self._kkt.factor.arrays,
            self._cone,
            self._accel.arrays,
            controls,
        )

    def host_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(f, w, z_next, y_over_rho) on the host, tiny entries of f flushed to zero."""
        _flush_tiny(self.f)
        return self.f, self.w, self.z_next, self.y_over_rho

    def undo_rejected(self) -> None:
        """Make the last accepted image w the point to check, after a call that ended on a
        rejected extrapolation: f = w, z_next = Pi_K(w_v), y/rho = w_v - z_next, so that
        the differences x - w_x and y - rho y_over_rho are zero."""
        n = self._n
        self.f[:] = self.w
        self.z_next[:] = self._project(self.w[n:])
        self.y_over_rho[:] = self.w[n:] - self.z_next

    def restart(self, v: np.ndarray, inv_rho: np.ndarray) -> None:
        """Continue from x = f_x and a new v after a penalty change (the KKT system is
        refactored and 1/rho updated by the caller); the Anderson memory is reset."""
        n = self._n
        self.w[:n] = self.f[:n]
        self.w[n:] = v
        self._istate[PENDING] = 0
        self._accel.reset()


class _PlainLoop(SafeguardedLoop):
    """The iteration of ``admm_iterations`` on a backend's arrays (module docstring).

    Same state and interface as ``_FusedLoop``: w, f (n + m,), z_next, y_over_rho (m,)
    on the device; ``host_state`` copies them to the host.
    """

    def __init__(
        self,
        start: tuple[np.ndarray, np.ndarray],
        data: tuple,
        kkt: _KKTSystem,
        cone: ProductCone,
        memory: int,
        backend: Backend,
    ) -> None:
        x, v = start
        n, m = len(x), len(v)
        self._backend, self._xp, self._n, self._kkt = backend, backend.xp, n, kkt
        self.cone = cone
        c, b, inv_rho = data
        self._c, self._b = backend.asarray(c), backend.asarray(b)
        self._inv_rho = backend.asarray(inv_rho)
        self._solve = kkt.solver(backend)
        self._start(backend.asarray(np.concatenate([x, v])), memory, backend)
        self.z_next, self.y_over_rho = backend.zeros(m), backend.zeros(m)

    def run(self, it: int, it_end: int, controls: tuple) -> tuple[int, bool]:
        """Iterations it + 1 .. it_end; returns (last iteration, accepted)."""
        xp, n, cone = self._xp, self._n, self.cone
        alpha, sigma, safeguard, interval = controls
        c, b, inv_rho = self._c, self._b, self._inv_rho
        advance, self._pending = self._pending, False
        while it < it_end:
            if advance:
                self._advance(it, interval)
            it += 1
            w = self.w
            z = cone.project(w[n:])
            yr = w[n:] - z
            sol = self._solve(xp.concat([sigma * w[:n] - c, b + z - yr]))
            f = xp.concat(
                [
                    alpha * sol[:n] + (1.0 - alpha) * w[:n],
                    z + alpha * sol[n:] * inv_rho + (1.0 - alpha) * yr,
                ]
            )
            self.f, self.y_over_rho = f, yr
            g = f - w
            if not self._safeguard(f, math.sqrt(self._backend.scalar(g @ g)), safeguard):
                advance = False
                if it == it_end:
                    return it, False
                continue
            if it == it_end:
                self.z_next = cone.project(f[n:])
                self._pending = True
                return it, True
            advance = True
        return it, False

    def device_state(self) -> tuple[Array, Array, Array, Array]:
        """(f, w, z_next, y_over_rho) on the device, tiny entries of f flushed to zero
        (as the compiled loop does in place)."""
        xp = self._xp
        self.f = xp.where(xp.abs(self.f) < _TINY, 0.0, self.f)
        return self.f, self.w, self.z_next, self.y_over_rho

    def host_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``device_state`` copied to the host."""
        f, w, z_next, y_over_rho = self.device_state()
        to_host = self._backend.to_host
        return to_host(f), to_host(w), to_host(z_next), to_host(y_over_rho)

    def undo_rejected(self) -> None:
        """As ``_FusedLoop.undo_rejected``."""
        n = self._n
        self.f = self.w
        self.z_next = self.cone.project(self.w[n:])
        self.y_over_rho = self.w[n:] - self.z_next

    def restart(self, v: Array, inv_rho: np.ndarray) -> None:
        """As ``_FusedLoop.restart``, with the new 1/rho and KKT solve moved to the device;
        v (m,) is a host vector or a vector of the checks' float64 device."""
        n, backend = self._n, self._backend
        self._inv_rho = backend.asarray(inv_rho)
        self._solve = self._kkt.solver(backend)
        v = backend.asarray(v) if isinstance(v, np.ndarray) else self._xp.astype(v, backend.dtype)
        self.w = self._xp.concat([self.f[:n], v])
        self._pending = False
        self._accel.reset()


class _KKTSystem:
    """LDL' factorization of [[P + sigma I, A'], [A, -diag(1/rho)]] (quasi-definite)."""

    def __init__(
        self, P: sp.csc_array | None, At: sp.csc_array, sigma: float, rho: np.ndarray
    ) -> None:
        self._K, self._diag_pos = kkt_upper(P, At, sigma, rho)
        self.factor = LDLFactor(self._K, upper=True)

    def update_rho(self, rho: np.ndarray) -> None:
        self._K.data[self._diag_pos] = -1.0 / rho
        self.factor.refactor(self._K)

    def solver(self, backend: Backend) -> Callable[[Array], Array]:
        """rhs -> K^{-1} rhs on the backend's vectors: the LDL' factor on NumPy; on a
        device an LU factor of the dense K there when n + m <= ``DENSE_KKT_MAX``, else the
        host's LDL' factor with the right-hand side copied to the host and back."""
        if backend.name == "numpy":
            return self.factor.solve
        if self._K.shape[0] <= DENSE_KKT_MAX:
            upper = self._K.toarray()
            return backend.lu_solver(upper + np.triu(upper, 1).T)
        factor = self.factor
        return lambda rhs: backend.asarray(factor.solve(backend.to_host(rhs)))
