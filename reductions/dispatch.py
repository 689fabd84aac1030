"""ProxOrCone: the one chain step that keeps structure where it can and uses cones elsewhere.

NABLAPROX's chain is CVXPY's cone chain with its middle wrapped:

    ValidateData -> [FlipObjective] -> ProxOrCone(...) -> NablaProx

``ProxOrCone.apply`` first tries ``StructureLowering`` (``reductions/structure.py``). When
every part of the problem is kept and the structure is worth keeping, the result is a
``ParamStructuredProgram``; when the structure does not pay off, ``ConeFormReduction`` has
the program solved by its assembled view (``ParamConeForm``); otherwise CVXPY's cone
reductions run (Dcp2Cone, ..., ConeMatrixStuffing) followed by ``ConeProgToProx``, and
the result is a ``ParamProxProgram``. Either way the solver receives a parametric program
whose ``apply_parameters`` evaluates the IR program at the parameters' current values
without re-running the chain, and ``ProxOrCone.invert`` maps the solver's IR solution
back through the steps that were taken.
"""

from __future__ import annotations

from dataclasses import dataclass

import cvxpy.settings as s
import numpy as np
from cvxpy.error import ParameterError
from cvxpy.problems.problem import Problem
from cvxpy.reductions.reduction import Reduction
from cvxpy.reductions.solution import Solution

from cvxprox.interface.options import STRUCTURE_MODES
from cvxprox.ir.program import Program
from cvxprox.reductions.affine import NotStructured
from cvxprox.reductions.cone2prox import ConeProgToProx
from cvxprox.reductions.cone_form import ConeFormReduction, ParamConeForm, has_cone_form
from cvxprox.reductions.solver_io import ProgramSolution
from cvxprox.reductions.structure import (
    STRUCTURED_ATOMS,
    Lowered,
    StructureLowering,
    bound_multipliers,
)


class ParamStructuredProgram:
    """A structure-preserving lowering of a problem, re-evaluated at new parameter values.

    The lowering is a walk over the expression tree that builds operators around the
    parameters' current values; its cost is that of building the operators (no matrix
    is assembled for convolutions, FFT samples, differences or diagonals).

    Parameters
    ----------
    lowering : StructureLowering
    lowered : Lowered
        The lowering at the current parameter values; the first ``apply_parameters``
        returns its program.
    """

    def __init__(self, lowering: StructureLowering, lowered: Lowered) -> None:
        self.lowering = lowering
        self.parameters = lowering.problem.parameters()
        #: The lowering of the last ``apply_parameters``: its layout and constraint terms
        #: map a solution back to CVXPY.
        self.lowered = lowered
        self._fresh = True

    def apply_parameters(self) -> Program:
        """The lowered Program at the parameters' current values."""
        if self._fresh:
            self._fresh = False
        else:
            self.lowered = self.lowering.lower()
        return self.lowered.program

    def cvxpy_data(self) -> dict:
        """Nothing: a structured program has no counterpart in CVXPY's problem data."""
        return {}


@dataclass
class StructuredInverse:
    """What ``ProxOrCone.invert`` needs for a structured solve: the parametric program
    (its last lowering), and the ``ParamConeForm`` when the assembled view was solved."""

    program: ParamStructuredProgram
    cone_form: ParamConeForm | None = None


class ProxOrCone(Reduction):
    """Structure-preserving lowering when possible, else the wrapped cone reductions.

    Parameters
    ----------
    cone_reductions : list of Reduction
        CVXPY's reductions from ``Dcp2Cone`` to ``ConeMatrixStuffing``; ``ConeProgToProx``
        is appended to them.
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
        self.cone_reductions = [*cone_reductions, ConeProgToProx()]
        self.cone_form = ConeFormReduction()
        self.structure = structure
        self.reason = ""

    def accepts(self, problem: Problem) -> bool:
        return all(r.accepts(problem) for r in self.cone_reductions[:1])

    def apply(self, problem: Problem) -> tuple[object, object]:
        """The parametric program of ``problem``, and what ``invert`` needs."""
        lowered = self._try_structure(problem)
        if lowered is not None:
            lowering, result, cones = lowered
            program = ParamStructuredProgram(lowering, result)
            if not cones:
                return program, StructuredInverse(program)
            form, form_inverse = self.cone_form.apply(program)
            return form, StructuredInverse(program, form_inverse)
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
        unset = [p.name() for p in problem.parameters() if p.value is None]
        if unset:
            raise ParameterError(
                f"parameters without a value: {', '.join(unset)}; the structured lowering "
                "needs their values (assign them, or pass structure='never')"
            )
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

    def invert(self, solution: ProgramSolution, inverse_data: object) -> Solution:
        """The solution of the problem ``apply`` received, from the IR solution."""
        if isinstance(inverse_data, StructuredInverse):
            if inverse_data.cone_form is not None:
                solution = self.cone_form.invert(solution, inverse_data.cone_form)
            return _structured_solution(inverse_data.program.lowered, solution)
        for reduction, inverse in reversed(
            list(zip(self.cone_reductions, inverse_data, strict=True))
        ):
            solution = reduction.invert(solution, inverse)
        return solution


def _structured_solution(lowered: Lowered, solution: ProgramSolution) -> Solution:
    """A CVXPY Solution from the solution of the lowering's Program.

    Variable values are the blocks of x; each constraint's dual comes from its term's y
    (``ConstraintTerm.dual`` has the sign conventions), read from the rows that hold the
    term. An infeasible status's y is its Farkas certificate, returned the same way (no
    variable values). The constraints held as bounds take the bound multipliers
    (``BoundConstraint.dual``): those a step has read (``solution.bound_duals``), else
    from the reduced cost r = c + P x + sum_i A_i'y_i on the bounds x is at
    (r = sum_i A_i'y_i for a certificate; ``bound_multipliers``).
    """
    duals = {}
    if solution.y is not None:
        slices = _term_slices(lowered)
        for con in lowered.constraints:
            y = solution.y[slices[con.term]] if con.term >= 0 else np.zeros(0)
            duals[con.constraint_id] = con.dual(y)
        if lowered.bound_constraints:
            lam_lo, lam_hi = solution.bound_duals or _reduced_cost_multipliers(
                lowered.program, solution
            )
            for bound in lowered.bound_constraints:
                duals[bound.constraint_id] = bound.dual(lam_lo, lam_hi)
    primal = {}
    if solution.status in s.SOLUTION_PRESENT:
        primal = lowered.layout.split(solution.x)
    return Solution(solution.status, solution.opt_val, primal, duals, solution.attr)


def _reduced_cost_multipliers(
    program: Program, solution: ProgramSolution
) -> tuple[np.ndarray, np.ndarray]:
    """The bound multipliers from the reduced cost of the solution's (x, y)."""
    r = np.zeros(program.n)
    start = 0
    for term in program.terms:
        r += term.op.rmatvec(solution.y[start : start + term.size])
        start += term.size
    if solution.x is None or solution.status not in s.SOLUTION_PRESENT:
        return bound_multipliers(program, r)
    r += program.c
    if program.P is not None:
        r += program.P @ solution.x
    return bound_multipliers(program, r, solution.x)


def _term_slices(lowered: Lowered) -> list[slice]:
    slices, start = [], 0
    for term in lowered.program.terms:
        slices.append(slice(start, start + term.size))
        start += term.size
    return slices
