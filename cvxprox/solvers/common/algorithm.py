"""What every algorithm is built from: a program, options, an optional warm start."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from cvxprox.backend import Backend, get_backend
from cvxprox.interface.options import SolverOptions
from cvxprox.ir.program import AssembledProgram, Program

if TYPE_CHECKING:
    from cvxprox.solvers.common.result import SolveResult

# Above this many nonzeros in the KKT matrix a sparse factorization is likely to be
# slow or to run out of memory: the matvec-only PDHG is preferred, and no polishing.
FACTORIZATION_NNZ_LIMIT = 5_000_000


class Algorithm:
    """What every algorithm is built from: a program, options, an optional warm start.

    Subclasses set ``name`` and implement ``_solve(backend, t0, reason)``: the run on the
    options' backend, started at ``time.perf_counter()`` value t0, inside the backend's
    ``cpu_threads(options.threads)`` block (``solve`` sets both up). A method made of
    others (``hybrid.py``) overrides ``solve`` itself.
    """

    name = ""

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
