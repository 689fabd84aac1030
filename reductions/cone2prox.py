"""ConeProgToProx: CVXPY's ParamConeProg -> a parametric Program, and back.

CVXPY's conic chain ends in a ``ParamConeProg``: minimize q'x + 1/2 x'Px + d subject to
``A_cvx x + b_cvx in K``, with (P, q, d, A_cvx, b_cvx) affine in the parameters (the DPP
tensors). ``ConeProgToProx`` is the chain step after ``ConeMatrixStuffing``: it orders
the cone blocks as the IR's cone product expects (zero, nonneg, soc, psd, exp, 3-D power;
CVXPY's ``ConicSolver.format_constraints``) and makes each block one IR term whose
function is the cone's indicator,

    f_K(A x - b)   with  A = A_cvx,  b = -b_cvx,

so the structure of the cone product is computed once and re-solving with new
parameter values only re-evaluates the affine map. The Program is made of the matrix
CVXPY produces (``Program.from_rows``): it is its own assembled view, and its terms are
row blocks of it, sliced only when a method works on terms. Its ``invert`` turns the IR solution
into the one ``ConeMatrixStuffing.invert`` expects: x keyed by the stuffed variable's
id, and each constraint's dual from its rows of y, in CVXPY's sign convention.
"""

from __future__ import annotations

from dataclasses import dataclass

import cvxpy.settings as s
import numpy as np
import scipy.sparse as sp
from cvxpy.constraints import (
    PSD,
    SOC,
    Constraint,
    ExpCone,
    NonNeg,
    PowCone3D,
    PowConeND,
    SvecPSD,
    Zero,
)
from cvxpy.reductions.dcp2cone.cone_matrix_stuffing import ParamConeProg
from cvxpy.reductions.reduction import Reduction
from cvxpy.reductions.solution import Solution, failure_solution
from cvxpy.reductions.solvers import utilities
from cvxpy.reductions.solvers.conic_solvers.conic_solver import ConicSolver

from cvxprox.functions.cones import NonnegCone, cones_from_dims
from cvxprox.ir.program import Program
from cvxprox.reductions.solver_io import ProgramSolution

#: CVXPY's exponential cone order (x, y, z) with y exp(x / y) <= z, which the IR keeps.
EXP_CONE_ORDER = [0, 1, 2]
#: The constraint kinds of the rows after the zero cone, in the order of the cone product.
_CONE_ORDER = (NonNeg, SOC, PSD, SvecPSD, ExpCone, PowCone3D, PowConeND)


class ParamProxProgram:
    """A Program whose data are affine functions of CVXPY parameters.

    Parameters
    ----------
    cone_prog : ParamConeProg
        A formatted cone program (rows laid out in CVXPY's solver order).
    """

    def __init__(self, cone_prog: ParamConeProg) -> None:
        self.cone_prog = cone_prog
        self.parameters = cone_prog.parameters
        self.cones = cones_from_dims(cone_prog.cone_dims).cones

    def apply_parameters(self) -> Program:
        """Evaluate the affine map at the parameters' current values.

        Variable bounds (CVXPY's ``bounds=`` attribute, kept as bounds by the chain) are
        the program's l <= x <= u; its assembled view writes them as rows after the cone
        rows, so the duals of the user's constraints keep their positions.
        """
        prog = self.cone_prog
        if prog.P is None:
            c, d, A, b = prog.apply_parameters()
            P = None
        else:
            P, c, d, A, b = prog.apply_parameters(quad_obj=True)
            P = sp.csc_array(P)
        A = sp.csc_array(A, dtype=np.float64)
        b = -np.asarray(b, dtype=np.float64)
        if not np.all(np.isfinite(b)):
            A, b = self._drop_vacuous_rows(A, b)
        n = A.shape[1]
        program = Program.from_rows(
            np.asarray(c, dtype=np.float64),
            A,
            b,
            self.cones,
            P,
            float(d),
            l=_bound(prog.lower_bounds, n, "lower"),
            u=_bound(prog.upper_bounds, n, "upper"),
        )
        program.check_finite()
        return program

    def cvxpy_data(self) -> dict:
        """The cone dimensions, the variable bounds (kept as bounds, not rows) and the
        numbers of equality and inequality rows, in CVXPY's conventions."""
        prog = self.cone_prog
        return {
            s.DIMS: prog.cone_dims,
            s.LOWER_BOUNDS: prog.lower_bounds,
            s.UPPER_BOUNDS: prog.upper_bounds,
            "n_eq": prog.cone_dims.zero,
            "n_ineq": prog.cone_dims.nonneg,
        }

    def _drop_vacuous_rows(self, A: sp.csc_array, b: np.ndarray) -> tuple[sp.csc_array, np.ndarray]:
        """Turn inequality rows ``a'x + inf >= 0`` (absent bounds) into ``0 + 1 >= 0``.

        Any other infinite entry of b (an equality, a cone, or ``a'x >= inf``) makes the
        problem meaningless and raises a ValueError.
        """
        bad = ~np.isfinite(b)
        vacuous = np.zeros_like(bad)
        start = 0
        for cone in self.cones:
            rows = slice(start, start + cone.dim)
            start = rows.stop
            if isinstance(cone, NonnegCone):
                vacuous[rows] = bad[rows] & (b[rows] == -np.inf)
        if np.any(bad & ~vacuous):
            raise ValueError(
                "a constraint has a NaN or infinite constant that cannot be satisfied "
                "(e.g. x >= inf, x == inf, or inf inside a cone constraint)"
            )
        keep = (~vacuous).astype(np.float64)
        A = sp.csc_array(sp.diags_array(keep) @ A)
        b = np.where(vacuous, -1.0, b)
        return A, b


def _bound(bound: np.ndarray | None, n: int, side: str) -> np.ndarray | None:
    """CVXPY's lower or upper variable bounds as an array of shape (n,), or None."""
    if bound is None:
        return None
    bound = np.broadcast_to(np.asarray(bound, dtype=np.float64), (n,)).copy()
    if np.any(np.isnan(bound)):
        raise ValueError(f"a {side} variable bound is NaN")
    return bound


@dataclass
class ConeInverse:
    """Where the IR solution of a cone program goes: x is the stuffed variable
    ``var_id``; y's first ``zero`` rows are the duals of the equalities ``eq``, the rest
    those of the cone constraints ``cones`` (then the variable-bound rows, no constraint's)."""

    var_id: int
    zero: int
    eq: list[Constraint]
    cones: list[Constraint]


class ConeProgToProx(Reduction):
    """Lowers a ParamConeProg to a ParamProxProgram (cones become indicator terms of a
    Program made of CVXPY's matrix, ``Program.from_rows``)."""

    def accepts(self, problem: object) -> bool:
        return isinstance(problem, ParamConeProg)

    def apply(self, problem: ParamConeProg) -> tuple[ParamProxProgram, ConeInverse]:
        if not problem.formatted:
            problem = ConicSolver.format_constraints(problem, EXP_CONE_ORDER)
        by_kind = problem.constr_map
        inverse = ConeInverse(
            var_id=problem.x.id,
            zero=problem.cone_dims.zero,
            eq=list(by_kind.get(Zero, [])),
            cones=[con for kind in _CONE_ORDER for con in by_kind.get(kind, [])],
        )
        return ParamProxProgram(problem), inverse

    def invert(self, solution: ProgramSolution, inverse_data: ConeInverse) -> Solution:
        """The stuffed variable's value and every constraint's dual.

        IR duals lie in the polar cone, CVXPY's in the dual cone: a constraint's dual is
        -y on its rows. An infeasible status's certificate is returned the same way.
        """
        duals = None if solution.y is None else _split_duals(-solution.y, inverse_data)
        if solution.status in s.SOLUTION_PRESENT:
            primal = {inverse_data.var_id: solution.x}
            return Solution(solution.status, solution.opt_val, primal, duals, solution.attr)
        return failure_solution(solution.status, solution.attr, duals)


def _split_duals(y: np.ndarray, inverse: ConeInverse) -> dict[int, np.ndarray]:
    """Constraint id -> its dual value, read from consecutive rows of y."""
    duals = utilities.get_dual_values(y[: inverse.zero], utilities.extract_dual_value, inverse.eq)
    duals.update(
        utilities.get_dual_values(y[inverse.zero :], utilities.extract_dual_value, inverse.cones)
    )
    return duals
