"""ProxOrCone: the one chain step that keeps structure where it can and uses cones elsewhere.

NABLAPROX's chain is CVXPY's cone chain with its middle wrapped:

    ValidateData -> [FlipObjective] -> ProxOrCone(Dcp2Cone, ..., ConeMatrixStuffing) -> NablaProx

``ProxOrCone.apply`` first tries ``StructureLowering`` (``reductions/structure.py``). When
every part of the problem is kept and the structure is worth keeping, the result is a
``ParamStructuredProgram``; otherwise the wrapped cone reductions run and the result is
CVXPY's ``ParamConeProg``. Either way the solver receives a parametric program whose
``apply_parameters`` re-evaluates it at new parameter values without re-running the chain.
"""

from __future__ import annotations

from dataclasses import dataclass

import cvxpy.settings as s
import numpy as np
from cvxpy.problems.problem import Problem
from cvxpy.reductions.reduction import Reduction
from cvxpy.reductions.solution import Solution

from cvxprox.options import STRUCTURE_MODES
from cvxprox.reductions.affine import NotStructured
from cvxprox.reductions.cone_form import has_cone_form
from cvxprox.reductions.structure import STRUCTURED_ATOMS, Lowered, StructureLowering


class ParamStructuredProgram:
    """A structure-preserving lowering of a problem, re-evaluated at new parameter values.

    The lowering is a walk over the expression tree that builds operators around the
    parameters' current values; its cost is that of building the operators (no matrix
    is assembled for convolutions, FFT samples, differences or diagonals).

    Parameters
    ----------
    lowering : StructureLowering
    lowered : Lowered
        The lowering at the current parameter values.
    cones : bool
        Solve the lowering's cone form (its structure does not pay off, but building
        the cones from it is faster than CVXPY's canonicalization).
    """

    def __init__(self, lowering: StructureLowering, lowered: Lowered, cones: bool = False) -> None:
        self.lowering = lowering
        self._current: Lowered | None = lowered
        #: Whether the solver takes the lowered Program's assembled view
        #: (``reductions/cone_form.py``) instead of its terms.
        self.cones = cones

    def apply_parameters(self) -> Lowered:
        """The Lowered program at the parameters' current values."""
        if self._current is not None:
            current, self._current = self._current, None
            return current
        return self.lowering.lower()


@dataclass
class StructuredInverse:
    """What ``ProxOrCone.invert`` needs for a structured solve: nothing beyond the solution."""

    reason: str


class ProxOrCone(Reduction):
    """Structure-preserving lowering when possible, else the wrapped cone reductions.

    Parameters
    ----------
    cone_reductions : list of Reduction
        CVXPY's reductions from ``Dcp2Cone`` to ``ConeMatrixStuffing``.
    structure : {"auto", "always", "never"}
        ``auto`` keeps the structure when every part of the problem has a prox term and
        ``Lowered.keeps_structure`` says it pays off;
        ``always`` keeps it whenever every part has a prox term; ``never`` always uses
        cones.
    """

    def __init__(self, cone_reductions: list[Reduction], structure: str = "auto") -> None:
        super().__init__()
        if structure not in STRUCTURE_MODES:
            raise ValueError(
                f"option 'structure' must be one of {STRUCTURE_MODES}, got {structure!r}"
            )
        self.cone_reductions = cone_reductions
        self.structure = structure
        self.reason = ""

    def accepts(self, problem: Problem) -> bool:
        return all(r.accepts(problem) for r in self.cone_reductions[:1])

    def apply(self, problem: Problem) -> tuple[object, object]:
        lowered = self._try_structure(problem)
        if lowered is not None:
            lowering, result, cones = lowered
            return (
                ParamStructuredProgram(lowering, result, cones),
                StructuredInverse(self.reason),
            )
        inverses = []
        for reduction in self.cone_reductions:
            problem, inverse = reduction.apply(problem)
            inverses.append(inverse)
        return problem, inverses

    def _try_structure(self, problem: Problem) -> tuple[StructureLowering, Lowered, bool] | None:
        """The lowering, and whether its cone form is to be solved; None for CVXPY's cones."""
        if self.structure == "never":
            self.reason = "cones: option structure='never'"
            return None
        if self.structure == "auto" and not any(
            issubclass(atom, STRUCTURED_ATOMS) for atom in problem.atoms()
        ):
            self.reason = "cones: no norm, Huber, TV, convolution or similar atom to keep"
            return None
        try:
            lowering = StructureLowering(problem)
            lowered = lowering.lower()
        except NotStructured as exc:
            self.reason = f"cones: {exc}"
            return None
        expanded = "; ".join(lowered.expanded)
        if self.structure == "auto" and not lowered.keeps_structure:
            self.reason = (
                "cones: no convolution, smooth-plus-one-prox form, TV/l2/Huber/logistic "
                "term (l1, hinge, entropy and linear models converge faster as cones)"
            )
            if not has_cone_form(lowered.program):
                return None
            self.reason += "; built from the structured lowering"
            if expanded:
                self.reason += f" (expanded into cones: {expanded})"
            return lowering, lowered, True
        self.reason = "structure kept: every term has a prox"
        if expanded:
            self.reason = f"structure kept; expanded into cones: {expanded}"
        return lowering, lowered, False

    def update_parameters(self, problem: Problem) -> None:
        for reduction in self.cone_reductions:
            reduction.update_parameters(problem)

    def invert(self, solution: Solution, inverse_data: object) -> Solution:
        if isinstance(inverse_data, StructuredInverse):
            return solution
        for reduction, inverse in reversed(
            list(zip(self.cone_reductions, inverse_data, strict=True))
        ):
            solution = reduction.invert(solution, inverse)
        return solution


def structured_solution(lowered: Lowered, result: object, attr: dict) -> Solution:
    """A CVXPY Solution from the SolveResult of a lowered Program or of its assembled view
    (``program.solve_assembled``).

    Variable values are the blocks of x (the first ``n_program`` entries of the view's);
    each constraint's dual comes from its term's y (``ConstraintTerm.dual`` has the sign
    conventions), read from the rows that hold the term. An infeasible result's y is its
    Farkas certificate, returned the same way (no variable values).
    """
    form = lowered.program.assemble() if lowered.program.solve_assembled else None
    duals = {}
    if result.y is not None:
        slices = _term_slices(lowered) if form is None else form.term_rows
        for con in lowered.constraints:
            y = result.y[slices[con.term]] if con.term >= 0 else np.zeros(0)
            duals[con.constraint_id] = con.dual(y)
    if result.status not in s.SOLUTION_PRESENT:
        return Solution(result.status, _failure_value(result.status), {}, duals, attr)
    x = result.x if form is None else result.x[: form.n_program]
    primal = lowered.layout.split(x)
    return Solution(result.status, result.kkt.primal_objective, primal, duals, attr)


def _term_slices(lowered: Lowered) -> list[slice]:
    slices, start = [], 0
    for term in lowered.program.terms:
        slices.append(slice(start, start + term.size))
        start += term.size
    return slices


def _failure_value(status: str) -> float:
    if status in (s.INFEASIBLE, s.INFEASIBLE_INACCURATE):
        return np.inf
    if status in (s.UNBOUNDED, s.UNBOUNDED_INACCURATE):
        return -np.inf
    return np.nan
