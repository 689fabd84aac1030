"""The iteration log: the verbose header, table and footer of every algorithm."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from cvxprox.ir.program import AssembledProgram
from cvxprox.solvers.common.termination import KKTError

if TYPE_CHECKING:
    from cvxprox.solvers.common.result import SolveResult


class IterationLog:
    """The verbose header, iteration table and footer, in the style of OSQP and SCS.

    ``tag`` (short, such as "hsde") starts every row of the table, for runs whose rows
    interleave (``cvxprox.solvers.hybrid``)."""

    def __init__(self, verbose: bool, tag: str = "") -> None:
        self.verbose = verbose
        self._start = time.perf_counter()
        self._prefix = f"{tag:<5}" if tag else ""

    def header(
        self, program: AssembledProgram, algorithm: str, reason: str, lines: list[str]
    ) -> None:
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
            f"{' ' * len(self._prefix)}{'iter':>7} {'pri res':>10} {'dua res':>10} "
            f"{'gap':>10} {'obj':>12} {'step':>9} {'time(s)':>9}"
        )

    def row(self, it: int, kkt: KKTError, step: float) -> None:
        if not self.verbose:
            return
        print(
            f"{self._prefix}{it:7d} {kkt.primal:10.2e} {kkt.dual:10.2e} {kkt.gap:10.2e} "
            f"{kkt.primal_objective:12.4e} {step:9.2e} {time.perf_counter() - self._start:9.2e}"
        )

    def primal_row(self, it: int, primal: float, step: float) -> None:
        """A row of a check that stopped at its primal test (no dual residual, gap or
        objective formed)."""
        if not self.verbose:
            return
        dash = "-"
        print(
            f"{self._prefix}{it:7d} {primal:10.2e} {dash:>10} {dash:>10} {dash:>12} "
            f"{step:9.2e} {time.perf_counter() - self._start:9.2e}"
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


def _version() -> str:
    from cvxprox import __version__  # noqa: PLC0415

    return __version__
