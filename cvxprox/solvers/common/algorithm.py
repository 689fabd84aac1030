"""What every algorithm is built from: a program, options, an optional warm start."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cvxprox.ir.program import AssembledProgram

if TYPE_CHECKING:
    pass
from cvxprox.interface.options import SolverOptions

# Above this many nonzeros in the KKT matrix a sparse factorization is likely to be
# slow or to run out of memory: the matvec-only PDHG is preferred, and no polishing.
FACTORIZATION_NNZ_LIMIT = 5_000_000


class Algorithm:
    """What every algorithm is built from: a program, options, an optional warm start.

    Subclasses set ``name`` and implement ``solve(reason) -> SolveResult``.
    """

    name = ""

    def __init__(
        self, program: AssembledProgram, options: SolverOptions, warm_start: dict | None = None
    ) -> None:
        self.program = program
        self.opts = options
        self.warm_start = warm_start
