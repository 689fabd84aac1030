"""What every algorithm is built from: a program, options, an optional warm start."""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cvxprox.backend import Backend, get_backend
from cvxprox.interface.options import SolverOptions
from cvxprox.ir.program import AssembledProgram, Program

if TYPE_CHECKING:
    from cvxprox.solvers.common.result import BestIterate, SolveResult

# Above this many nonzeros in the KKT matrix a sparse factorization is likely to be
# slow or to run out of memory: the matvec-only PDHG is preferred, and no polishing.
FACTORIZATION_NNZ_LIMIT = 5_000_000


class Algorithm:
    """What every algorithm is built from: a program, options, an optional warm start.

    Subclasses set ``name`` and implement ``_solve(backend, t0, reason)``: the run on the
    options' backend, started at ``time.perf_counter()`` value t0, inside the backend's
    ``cpu_threads(options.threads)`` block (``solve`` sets both up). A method made of
    others (``hybrid.py``) drives theirs (``SteppedAlgorithm.steps``).
    """

    name = ""
    #: What starts each row of the verbose table ("" for none; ``IterationLog``).
    log_tag = ""

    def __init__(
        self,
        program: AssembledProgram | Program,
        options: SolverOptions,
        warm_start: dict | None = None,
    ) -> None:
        self.program = program
        self.opts = options
        self.warm_start = warm_start

    def solve(self, reason: str = "") -> SolveResult:
        """Run the method; ``reason`` (why it was chosen) goes into the verbose header."""
        t0 = time.perf_counter()
        backend = get_backend(self.opts.backend, self.opts.device, self.opts.dtype)
        with backend.cpu_threads(self.opts.threads):
            return self._solve(backend, t0, reason)

    def _solve(self, backend: Backend, t0: float, reason: str) -> SolveResult:
        raise NotImplementedError


@dataclass(frozen=True)
class Progress:
    """What a run reports at one of its checks, to the method driving it
    (``SteppedAlgorithm.steps``).

    ``iterations`` done so far; ``cost`` what one iteration costs, in iterations of PDHG
    (1 for PDHG); ``best`` the run's best iterate so far (its KKT error in
    ``best.kkt``); ``setup_time`` its setup's seconds; ``tau`` the embedding's u_tau
    (None for a run without one).
    """

    iterations: int
    cost: float
    best: BestIterate
    setup_time: float = 0.0
    tau: float | None = None


#: A run as a generator: it yields a ``Progress`` at each check and returns its
#: ``SolveResult``. Sending a limit's name at a check ends the run there, with that name as
#: ``info["limit"]`` (``cvxprox.solvers.common.result.finish``); closing it drops the run.
Steps = Generator[Progress, "str | None", "SolveResult"]


class SteppedAlgorithm(Algorithm):
    """An algorithm whose run can be driven check by check (``steps``): ``solve`` runs it
    to its end; a method made of others (``cvxprox.solvers.hybrid``) interleaves them."""

    def steps(self, backend: Backend, t0: float, reason: str) -> Steps:
        """The run on ``backend``, started at ``time.perf_counter()`` value t0."""
        raise NotImplementedError

    def _solve(self, backend: Backend, t0: float, reason: str) -> SolveResult:
        return run_to_end(self.steps(backend, t0, reason))


def run_to_end(steps: Steps) -> SolveResult:
    """The result of a run left to its own tests and limits."""
    while True:
        try:
            next(steps)
        except StopIteration as end:
            return end.value


def stop_run(steps: Steps, limit: str) -> SolveResult:
    """The result of a run stopped at its current check under ``limit``."""
    try:
        steps.send(limit)
    except StopIteration as end:
        return end.value
    raise RuntimeError("a run went on after it was stopped")
