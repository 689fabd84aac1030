"""The one way a solve's outcome is built: statuses, the best iterate, limits.

``finish`` turns what a run's own tests settled (or the limit that stopped it)
into a ``SolveResult``. A status never claims more than was checked: OPTIMAL only
when the three tests pass; at a limit OPTIMAL_INACCURATE when the best iterate is
within ``loose_factor`` of the tolerances, USER_LIMIT otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cvxpy.settings as s
import numpy as np

from cvxprox.interface.options import SolverOptions
from cvxprox.solvers.common.termination import KKTError

if TYPE_CHECKING:
    from cvxprox.backend import Array, Backend
    from cvxprox.solvers.common.log import IterationLog
    from cvxprox.solvers.common.polish import PolishSchedule


# When an iteration or time limit stops a run: a certificate that passes at this looser
# tolerance marks an *_inaccurate certificate status, and a best iterate within
# loose_factor(options) of its tolerances marks optimal_inaccurate.
LOOSE_CERTIFICATE = 1e-6


LOOSE_FACTOR = 1e3


LOOSE_EPS = 1e-3


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
    tests), then a loose certificate (``LOOSE_CERTIFICATE``) from the last primal and
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

        ``limit`` is the limit that stopped the run: only at ``max_iters`` is the best
        iterate polished (after ``time_limit`` it would run past the user's limit)."""
        polisher = self.polisher
        if polisher.enabled and limit == "max_iters":
            polished = polisher.attempt(iterations, best.point[1], best.point[2], best.point[0])
            if polished is not None:
                return s.OPTIMAL, polished, None
        status, cert = polisher.checker.certificate(self.dx, self.dy, LOOSE_CERTIFICATE, self.x)
        if status is None:
            return None
        inaccurate = {s.INFEASIBLE: s.INFEASIBLE_INACCURATE, s.UNBOUNDED: s.UNBOUNDED_INACCURATE}
        return inaccurate[status], None, polisher.checker.to_host(cert)

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
    stop: str | None = None,
) -> SolveResult:
    """The SolveResult of a run of any algorithm, and the verbose footer.

    ``status`` is what the run's own tests settled: OPTIMAL with ``last`` = (point, KKT
    error) passing all three tests, INFEASIBLE with ``certificate`` the Farkas vector y,
    UNBOUNDED with ``certificate`` the direction x; or None when ``max_iters``,
    ``time_limit`` or the caller's ``stop`` stopped the run. Then (after ``cone_limit``,
    on the cone route) the status is the status of the best iterate seen (``best``,
    which every run offers at least its last check):

        optimal_inaccurate   best.kkt.normalized <= loose_factor(options)
        user_limit           otherwise

    and the best iterate is the returned point. ``info["limit"]`` names the limit that
    stopped the run ("max_iters", "time_limit", or ``stop``, the limit a method driving
    the run sent it: ``cvxprox.solvers.common.algorithm.Steps``), None when its own tests
    stopped it.
    ``timing`` = (algorithm, iterations, solve time, setup time); ``warm_extra`` joins
    x, z, y in ``info["warm_start"]`` whenever a point is returned.
    """
    name, iterations, solve_time, setup_time = timing
    limit = None
    if status is None:
        limit = stop or ("max_iters" if iterations >= options.max_iters else "time_limit")
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


class BestIterate:
    """Keeps the iterate with the smallest normalized KKT error seen so far (an error
    that is not a number counts as infinite)."""

    def __init__(self) -> None:
        self.kkt: KKTError | None = None
        self.point: Point | None = None
        self._score = math.inf

    def offer(
        self, kkt: KKTError, x: np.ndarray, z: np.ndarray, y: np.ndarray, take: bool = False
    ) -> bool:
        """Keep (x, z, y) if its error is the smallest so far; returns whether it was
        kept. A copy, written over the one kept before when the shapes agree (no second
        copy held while the new one is made); with ``take``, the arrays themselves (the
        caller writes no more into them once kept)."""
        score = kkt.normalized if math.isfinite(kkt.normalized) else math.inf
        if self.kkt is not None and score >= self._score:
            return False
        self.kkt, self._score = kkt, score
        point = (x, z, y)
        if take:
            self.point = point
        elif self.point is not None and all(
            kept.shape == new.shape and kept.dtype == new.dtype
            for kept, new in zip(self.point, point, strict=True)
        ):
            for kept, new in zip(self.point, point, strict=True):
                kept[...] = new
        else:
            self.point = (1.0 * x, 1.0 * z, 1.0 * y)
        return True


def result_to_host(
    backend: Backend, status: str | None, last: tuple | None, best: BestIterate, cert: Array
) -> tuple[tuple | None, np.ndarray | None]:
    """What ``finish`` returns, copied to the host once: the last point (x, z, y) when the
    run ended OPTIMAL, the best iterate (in ``best``) when a limit stopped it, and the
    certificate (None stays None). Returns (last point, certificate)."""
    if status == s.OPTIMAL:
        last = tuple(backend.to_host(v) for v in last)
    elif status is None and best.point is not None:
        best.point = tuple(backend.to_host(v) for v in best.point)
    return last, None if cert is None else backend.to_host(cert)
