"""``cvxprox.compile``: what a problem becomes (its Program, the method and why), without
solving it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cvxpy as cp
from cvxpy.error import ParameterError

from cvxprox.interface.options import SolverOptions
from cvxprox.ir.program import Program
from cvxprox.solvers.select import choose_algorithm


@dataclass
class CompiledProblem:
    """What NABLAPROX makes of a CVXPY problem, for inspection (``cvxprox.compile``).

    Attributes
    ----------
    program : Program
        The IR at the parameters' current values.
    reduction : str
        Which lowering was taken and why.
    algorithm : str
        The algorithm ``solve`` would run.
    reason : str
        Why that algorithm.
    """

    program: Program
    reduction: str
    algorithm: str
    reason: str

    def __repr__(self) -> str:
        return (
            f"CompiledProblem(\n  reduction: {self.reduction}\n"
            f"  algorithm: {self.algorithm} ({self.reason})\n"
            + "\n".join("  " + line for line in self.program.describe().splitlines())
            + "\n)"
        )


def compile(problem: cp.Problem, **options: Any) -> CompiledProblem:  # noqa: A001
    """Lower ``problem`` the way ``problem.solve(solver="NABLAPROX", **options)`` would.

    Returns an inspectable CompiledProblem: its repr lists the IR terms (function,
    operator, shape), the reduction taken, the chosen algorithm and why. Options are
    validated as for ``solve``; a parameter without a value raises a ParameterError that
    names it.
    """
    from cvxprox.interface.solver import NAME, PROGRAM  # noqa: PLC0415
    from cvxprox.reductions.dispatch import ProxOrCone  # noqa: PLC0415

    opts = SolverOptions.from_kwargs(options)
    unset = sorted(p.name() for p in problem.parameters() if p.value is None)
    if unset:
        raise ParameterError(
            f"parameters without a value: {', '.join(unset)}; cvxprox.compile builds the "
            "program at the parameters' values, so assign them first"
        )
    # A new Problem over the same expressions: CVXPY caches a problem's chain on its
    # first compilation, and the options here may differ from those of earlier solves.
    fresh = cp.Problem(problem.objective, problem.constraints)
    data, chain, _ = fresh.get_problem_data(NAME, solver_opts=options)
    program = data[PROGRAM]
    steps = [r for r in chain.reductions if isinstance(r, ProxOrCone)]
    reduction = steps[0].reason if steps else "cones"
    algorithm, reason = choose_algorithm(program, opts)
    return CompiledProblem(program, reduction, algorithm.name, reason)
