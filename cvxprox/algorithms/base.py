"""What every algorithm shares: termination tests, certificates, results and logging.

All tests are made on the unscaled program (``cvxprox.ir`` conventions: z = Ax - b,
y in the subdifferential of f at z, so y lies in the polar cone for cone indicators):

    primal residual   ||A x - b - z||_inf <= eps_abs + eps_rel max(||Ax||, ||z||, ||b||)
    dual residual     ||P x + c + A'y||_inf <= eps_abs + eps_rel max(||Px||, ||A'y||, ||c||)
    duality gap       |pobj - dobj| <= eps_abs + eps_rel max(|pobj|, |dobj|),
                      pobj = 1/2 x'Px + c'x,  dobj = -1/2 x'Px - b'y

Infeasibility certificates (Farkas vectors, as in SCS and in Banjac et al. 2019):

    primal infeasible:  y in K°, A'y = 0, b'y < 0   ->  ||A'y|| <= eps_infeas (-b'y)
    unbounded:          d with P d = 0, A d in K, c'd < 0
                        ->  max(||P d||, dist(A d, K)) <= eps_infeas (-c'd)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cvxpy.settings as s
import numpy as np

from cvxprox.ir import ProxProgram
from cvxprox.jit import csc_arrays
from cvxprox.jit.cones import cone_layout, project
from cvxprox.jit.residuals import kkt_norms

if TYPE_CHECKING:
    from cvxprox.algorithms.polish import PolishSchedule
from cvxprox.options import SolverOptions
from cvxprox.scaling import RuizScaling

# Above this many nonzeros in the KKT matrix a sparse factorization is likely to be
# slow or to run out of memory: the matvec-only PDHG is preferred, and no polishing.
FACTORIZATION_NNZ_LIMIT = 5_000_000

# When an iteration or time limit stops a run: a certificate that passes at this looser
# tolerance marks an *_inaccurate certificate status, and a best iterate within
# loose_factor(options) of its tolerances marks optimal_inaccurate.
_LOOSE_CERTIFICATE = 1e-6
LOOSE_FACTOR = 1e3
LOOSE_EPS = 1e-3
# The certificate tests on the equilibrated data use this multiple of eps_infeas.
_SCALED_FACTOR = 100.0


@dataclass
class KKTError:
    """Residuals of the optimality conditions at one iterate (unscaled, inf-norms)."""

    primal: float
    dual: float
    gap: float
    primal_tol: float
    dual_tol: float
    gap_tol: float
    primal_objective: float
    dual_objective: float

    @property
    def converged(self) -> bool:
        return (
            self.primal <= self.primal_tol
            and self.dual <= self.dual_tol
            and (self.gap <= self.gap_tol)
        )

    @property
    def normalized(self) -> float:
        """max of residual / tolerance: below 1 means converged (a tolerance of 0, from
        eps_abs = 0 and zero data, counts a zero residual as 0 and any other as inf)."""
        return max(
            _ratio(self.primal, self.primal_tol),
            _ratio(self.dual, self.dual_tol),
            _ratio(self.gap, self.gap_tol),
        )


@dataclass
class SolveResult:
    """The outcome of a solve, in unscaled IR variables.

    ``x``, ``z``, ``y`` hold the solution when ``status`` is optimal, or the best
    iterate when it is optimal_inaccurate or user_limit (``kkt`` is then its KKT error;
    ``finish`` builds every result); for an infeasible status ``y`` holds the certificate
    (b'y = -1); for an unbounded status ``x`` holds the direction (c'x = -1).
    """

    status: str
    x: np.ndarray | None
    z: np.ndarray | None
    y: np.ndarray | None
    algorithm: str
    iterations: int
    solve_time: float
    setup_time: float
    kkt: KKTError | None = None
    info: dict = field(default_factory=dict)


class Algorithm:
    """What every algorithm is built from: a program, options, an optional warm start.

    Subclasses set ``name`` and implement ``solve(reason) -> SolveResult``.
    """

    name = ""

    def __init__(
        self, program: ProxProgram, options: SolverOptions, warm_start: dict | None = None
    ) -> None:
        self.program = program
        self.opts = options
        self.warm_start = warm_start


Point = tuple[np.ndarray, np.ndarray, np.ndarray]


def loose_factor(options: SolverOptions) -> float:
    """How far beyond its tolerances a best iterate may be and still be optimal_inaccurate.

    ``LOOSE_FACTOR`` (1e3) times the tolerances, but never looser than tolerances of
    ``LOOSE_EPS`` (1e-3): min(1e3, 1e-3 / max(eps_abs, eps_rel)), and at least 1.
    """
    eps = max(options.eps_abs, options.eps_rel)
    return float(np.clip(LOOSE_EPS / eps, 1.0, LOOSE_FACTOR))


@dataclass
class ConeLimit:
    """What a cone-route run tries when a limit stops it, before the inaccurate statuses.

    First a polished point from the best iterate (accepted only if it passes all three
    tests), then a loose certificate (``_LOOSE_CERTIFICATE``) from the last primal and
    dual directions ``dx``, ``dy``; ``x`` is the last primal iterate, for the radius test
    of the Farkas certificate.
    """

    polisher: PolishSchedule
    dx: np.ndarray | None
    dy: np.ndarray | None
    x: np.ndarray | None

    def settle(
        self, best: BestIterate, iterations: int, limit: str
    ) -> tuple[str, tuple[Point, KKTError] | None, np.ndarray | None] | None:
        """(OPTIMAL, polished point, None), (*_INACCURATE, None, certificate) or None.

        ``limit`` is the limit that stopped the run: after ``time_limit`` no polishing
        (it would run past the user's limit)."""
        polisher = self.polisher
        if polisher.enabled and limit == "max_iters":
            polished = polisher.attempt(iterations, best.point[1], best.point[2])
            if polished is not None:
                return s.OPTIMAL, polished, None
        status, cert = polisher.checker.certificate(self.dx, self.dy, _LOOSE_CERTIFICATE, self.x)
        if status is None:
            return None
        inaccurate = {s.INFEASIBLE: s.INFEASIBLE_INACCURATE, s.UNBOUNDED: s.UNBOUNDED_INACCURATE}
        return inaccurate[status], None, cert

    def record(self, info: dict) -> None:
        """The polishing statistics, into the result's info."""
        info.update(polish_attempts=self.polisher.attempts, polished=self.polisher.succeeded)


def finish(
    status: str | None,
    certificate: np.ndarray | None,
    last: tuple[Point, KKTError] | None,
    best: BestIterate,
    options: SolverOptions,
    timing: tuple[str, int, float, float],
    info: dict,
    log: IterationLog,
    warm_extra: dict | None = None,
    cone_limit: ConeLimit | None = None,
) -> SolveResult:
    """The SolveResult of a run of any algorithm, and the verbose footer.

    ``status`` is what the run's own tests settled: OPTIMAL with ``last`` = (point, KKT
    error) passing all three tests, INFEASIBLE with ``certificate`` the Farkas vector y,
    UNBOUNDED with ``certificate`` the direction x; or None when ``max_iters`` or
    ``time_limit`` stopped the run. Then (after ``cone_limit``, on the cone route) the
    status is the status of the best iterate seen (``best``, which every run offers at
    least its last check):

        optimal_inaccurate   best.kkt.normalized <= loose_factor(options)
        user_limit           otherwise

    and the best iterate is the returned point. ``info["limit"]`` names the limit that
    stopped the run ("max_iters", "time_limit"), None when its own tests stopped it.
    ``timing`` = (algorithm, iterations, solve time, setup time); ``warm_extra`` joins
    x, z, y in ``info["warm_start"]`` whenever a point is returned.
    """
    name, iterations, solve_time, setup_time = timing
    limit = None
    if status is None:
        limit = "max_iters" if iterations >= options.max_iters else "time_limit"
        settled = None if cone_limit is None else cone_limit.settle(best, iterations, limit)
        if settled is not None:
            status, last, certificate = settled
        elif best.kkt.normalized <= loose_factor(options):
            status, last = s.OPTIMAL_INACCURATE, (best.point, best.kkt)
        else:
            status, last = s.USER_LIMIT, (best.point, best.kkt)
    if cone_limit is not None:
        cone_limit.record(info)
    info["limit"] = limit
    x = z = y = kkt = None
    if status in s.SOLUTION_PRESENT:
        (x, z, y), kkt = last
    elif status in (s.INFEASIBLE, s.INFEASIBLE_INACCURATE):
        y = certificate
    else:
        x = certificate
    result = SolveResult(status, x, z, y, name, iterations, solve_time, setup_time, kkt, info)
    if status in s.SOLUTION_PRESENT:
        result.info["warm_start"] = {"x": x, "z": z, "y": y, **(warm_extra or {})}
    log.footer(result)
    return result


class KKTChecker:
    """Evaluates KKT errors and certificates of a program from its scaled iterates."""

    def __init__(self, program: ProxProgram, scaling: RuizScaling, options: SolverOptions) -> None:
        self.program = program
        self.scaling = scaling
        self.opts = options
        self._b_norm = _inf_norm(program.b)
        self._c_norm = _inf_norm(program.c)
        # The certificate tests project onto K on every check: compiled, with their own
        # warm starts (separate from the iteration's).
        self._layout = cone_layout(program.cone)
        self._A, self._P = csc_arrays(program.A), csc_arrays(program.P)

    def project(self, v: np.ndarray) -> np.ndarray:
        """Pi_K(v) for the program's cone (a new float64 array)."""
        return project(self._layout, v)

    def kkt_error(
        self,
        x: np.ndarray,
        z: np.ndarray,
        y: np.ndarray,
        Ax: np.ndarray,
        Aty: np.ndarray,
        Px: np.ndarray | None,
    ) -> KKTError:
        """KKT error of the unscaled iterate; Ax, Aty, Px are unscaled products."""
        prog = self.program
        dual_vec = prog.c + Aty
        xPx = Px_norm = 0.0
        if Px is not None:
            dual_vec = dual_vec + Px
            xPx = float(x @ Px)
            Px_norm = _inf_norm(Px)
        return self._error(
            _inf_norm(Ax - prog.b - z),
            _inf_norm(Ax),
            _inf_norm(z),
            _inf_norm(dual_vec),
            Px_norm,
            _inf_norm(Aty),
            xPx,
            float(prog.c @ x),
            float(prog.b @ y),
        )

    def evaluate(self, x: np.ndarray, z: np.ndarray, y: np.ndarray) -> KKTError:
        """KKT error of the unscaled float64 NumPy iterate (products computed here, compiled)."""
        return self._error(*kkt_norms(self._A, self._P, self.program.c, self.program.b, x, z, y))

    def _error(
        self,
        pres: float,
        Ax_norm: float,
        z_norm: float,
        dres: float,
        Px_norm: float,
        Aty_norm: float,
        xPx: float,
        cx: float,
        by: float,
    ) -> KKTError:
        eps_abs, eps_rel, offset = self.opts.eps_abs, self.opts.eps_rel, self.program.offset
        pobj, dobj = 0.5 * xPx + cx, -0.5 * xPx - by
        return KKTError(
            primal=pres,
            dual=dres,
            gap=abs(pobj - dobj),
            primal_tol=eps_abs + eps_rel * max(Ax_norm, z_norm, self._b_norm),
            dual_tol=eps_abs + eps_rel * max(Px_norm, Aty_norm, self._c_norm),
            gap_tol=eps_abs + eps_rel * max(abs(pobj), abs(dobj)),
            primal_objective=pobj + offset,
            dual_objective=dobj + offset,
        )

    def primal_infeasibility(
        self, dy: np.ndarray, eps: float, x: np.ndarray | None = None
    ) -> np.ndarray | None:
        """A Farkas certificate built from the dual direction dy, normalized to b'y = -1.

        Three tests must pass: SCS's ``||A'y|| <= eps (-b'y)`` on the original data;
        OSQP's ``||A^'y^|| <= eps_s ||y^||`` on the equilibrated data (eps_s = 100 eps);
        and, given the current primal iterate x, a radius test: with b'y = -1 the vector
        rules out every x with ||x||_1 < 1 / ||A'y||_inf, and that radius must exceed
        ``1 / eps_s`` times ||x||_1, so that a problem whose solution is merely large is
        not declared infeasible.
        """
        y = self._farkas(dy, eps)
        if y is None:
            return None
        scaled_eps = _SCALED_FACTOR * eps
        y_scaled = self.scaling.scale_y(y)
        if _inf_norm(self.scaling.A.T @ y_scaled) > scaled_eps * _inf_norm(y_scaled):
            return None
        if x is not None and _inf_norm(self.program.A.T @ y) * np.sum(np.abs(x)) > scaled_eps:
            return None
        return y

    def dual_infeasibility(self, dx: np.ndarray, eps: float) -> np.ndarray | None:
        """An unboundedness direction built from dx, normalized to c'd = -1.

        As for the Farkas certificate, the tests are made both relative to c'd on the
        original data and relative to ||d^|| on the equilibrated data.
        """
        d = self._ray(dx, eps)
        if d is None:
            return None
        scaling = self.scaling
        d_scaled = scaling.scale_x(d)
        viol = _recession_violation(scaling.A, scaling.P, self.project, d_scaled)
        if viol > _SCALED_FACTOR * eps * _inf_norm(d_scaled):
            return None
        return d

    def certificate(
        self,
        dx: np.ndarray | None,
        dy: np.ndarray | None,
        eps: float,
        x: np.ndarray | None = None,
    ) -> tuple[str | None, np.ndarray | None]:
        """INFEASIBLE and a Farkas vector, UNBOUNDED and a direction, or (None, None).

        ``dy``/``dx`` are the unscaled dual and primal directions (either may be None),
        ``x`` the current primal iterate for the radius test.
        """
        if dy is not None:
            cert = self.primal_infeasibility(dy, eps, x)
            if cert is not None:
                return s.INFEASIBLE, cert
        if dx is not None:
            cert = self.dual_infeasibility(dx, eps)
            if cert is not None:
                return s.UNBOUNDED, cert
        return None, None

    def suspects_infeasibility(self, dx: np.ndarray, dy: np.ndarray, eps: float) -> bool:
        """Whether the directions pass the tests on the original data (a certificate is
        forming); accelerated methods then fall back to plain steps to confirm it."""
        return self._farkas(dy, eps) is not None or self._ray(dx, eps) is not None

    def _farkas(self, dy: np.ndarray, eps: float) -> np.ndarray | None:
        prog = self.program
        y = dy - self.project(dy)
        by = float(prog.b @ y)
        if not by < 0 or _inf_norm(prog.A.T @ y) > eps * -by:
            return None
        return y / -by

    def _ray(self, dx: np.ndarray, eps: float) -> np.ndarray | None:
        prog = self.program
        cd = float(prog.c @ dx)
        if not cd < 0 or _recession_violation(prog.A, prog.P, self.project, dx) > eps * -cd:
            return None
        return dx / -cd


def _recession_violation(A, P, project, d: np.ndarray) -> float:  # noqa: ANN001
    """max(dist(A d, K), ||P d||): zero exactly when d is a recession direction.

    ``project`` is the projection onto K."""
    Ad = A @ d
    viol = _inf_norm(Ad - project(Ad))
    if P is not None and P.nnz:
        viol = max(viol, _inf_norm(P @ d))
    return viol


class IterationLog:
    """The verbose header, iteration table and footer, in the style of OSQP and SCS."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self._start = time.perf_counter()

    def header(self, program: ProxProgram, algorithm: str, reason: str, lines: list[str]) -> None:
        if not self.verbose:
            return
        bar = "-" * 78
        print(bar)
        print(f"  cvxprox {_version()}  NABLAPROX  ({algorithm}: {reason})".rstrip())
        print(bar)
        print(program.describe())
        for line in lines:
            print(line)
        print(bar)
        print(
            f"{'iter':>7} {'pri res':>10} {'dua res':>10} {'gap':>10} {'obj':>12} "
            f"{'step':>9} {'time(s)':>9}"
        )

    def row(self, it: int, kkt: KKTError, step: float) -> None:
        if not self.verbose:
            return
        print(
            f"{it:7d} {kkt.primal:10.2e} {kkt.dual:10.2e} {kkt.gap:10.2e} "
            f"{kkt.primal_objective:12.4e} {step:9.2e} {time.perf_counter() - self._start:9.2e}"
        )

    def footer(self, result: SolveResult) -> None:
        if not self.verbose:
            return
        print("-" * 78)
        polished = " (polished)" if result.info.get("polished") else ""
        limit = f" ({result.info['limit']} reached)" if result.info.get("limit") else ""
        print(
            f"status: {result.status}{polished}{limit}   iterations: {result.iterations}   "
            f"solve time: {result.solve_time:.3e}s   setup time: {result.setup_time:.3e}s"
        )
        if result.kkt is not None:
            print(
                f"objective: {result.kkt.primal_objective:.8e}   primal res: "
                f"{result.kkt.primal:.2e}   dual res: {result.kkt.dual:.2e}   "
                f"gap: {result.kkt.gap:.2e}"
            )
        print("-" * 78)


class BestIterate:
    """Keeps the iterate with the smallest normalized KKT error seen so far (an error
    that is not a number counts as infinite)."""

    def __init__(self) -> None:
        self.kkt: KKTError | None = None
        self.point: Point | None = None
        self._score = math.inf

    def offer(self, kkt: KKTError, x: np.ndarray, z: np.ndarray, y: np.ndarray) -> None:
        score = kkt.normalized if math.isfinite(kkt.normalized) else math.inf
        if self.kkt is None or score < self._score:
            self.kkt, self._score = kkt, score
            self.point = (x.copy(), z.copy(), y.copy())


def _ratio(residual: float, tolerance: float) -> float:
    if tolerance > 0:
        return residual / tolerance
    return 0.0 if residual == 0 else math.inf


def _inf_norm(v: np.ndarray) -> float:
    return float(np.max(np.abs(v), initial=0.0))


def _version() -> str:
    from cvxprox import __version__  # noqa: PLC0415

    return __version__
