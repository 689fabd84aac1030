"""ConeProgToProx: a formatted CVXPY ParamConeProg -> a parametric Program.

CVXPY's conic chain ends in a ``ParamConeProg``: minimize q'x + 1/2 x'Px + d subject to
``A_cvx x + b_cvx in K``, with (P, q, d, A_cvx, b_cvx) affine in the parameters (the DPP
tensors). Each cone block becomes one IR term whose function is the cone's indicator,

    f_K(A x - b)   with  A = A_cvx,  b = -b_cvx,

so the structure of the cone product is computed once and re-solving with new
parameter values only re-evaluates the affine map. The Program is made of the matrix
CVXPY produces (``Program.from_rows``): it is its assembled view, and its terms are row
blocks of it, sliced only when a method works on terms.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from cvxpy.reductions.dcp2cone.cone_matrix_stuffing import ParamConeProg
from cvxpy.reductions.reduction import Reduction

from cvxprox.cones import NonnegCone, cones_from_dims
from cvxprox.ir import Program


class ParamProxProgram:
    """A Program whose data are affine functions of CVXPY parameters.

    Parameters
    ----------
    cone_prog : ParamConeProg
        A formatted cone program (rows laid out in CVXPY's solver order).
    """

    def __init__(self, cone_prog: ParamConeProg) -> None:
        self.cone_prog = cone_prog
        self.cones = cones_from_dims(cone_prog.cone_dims).cones

    def apply_parameters(self) -> Program:
        """Evaluate the affine map at the parameters' current values.

        Variable bounds (CVXPY's ``bounds=`` attribute, kept as bounds by the chain)
        become nonnegative-cone rows after the cone rows.
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
        cones = list(self.cones)
        bound_rows, bound_b = _bound_rows(prog.lower_bounds, prog.upper_bounds, A.shape[1])
        if bound_rows.shape[0]:
            cones.append(NonnegCone(bound_rows.shape[0]))
            A = sp.csc_array(sp.vstack([A, bound_rows]))
            b = np.concatenate([b, bound_b])
        program = Program.from_rows(np.asarray(c, dtype=np.float64), A, b, cones, P, float(d))
        program.check_finite()
        return program

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


def _bound_rows(
    lower: np.ndarray | None, upper: np.ndarray | None, n: int
) -> tuple[sp.csc_array, np.ndarray]:
    """Rows of ``x - l >= 0`` and ``u - x >= 0`` for the finite variable bounds.

    They are appended after the cone rows as one nonnegative-cone term, so the duals of
    the user's constraints keep their positions.
    """
    rows, cols, vals, rhs = [], [], [], []
    for bound, sign in ((lower, 1.0), (upper, -1.0)):
        if bound is None:
            continue
        bound = np.broadcast_to(np.asarray(bound, dtype=np.float64), (n,))
        if np.any(np.isnan(bound)):
            raise ValueError("a variable bound is NaN")
        idx = np.flatnonzero(np.isfinite(bound))
        rows.append(np.arange(len(idx)) + sum(len(r) for r in rows))
        cols.append(idx)
        vals.append(np.full(len(idx), sign))
        rhs.append(sign * bound[idx])
    if not rows:
        return sp.csc_array((0, n)), np.zeros(0)
    count = sum(len(r) for r in rows)
    matrix = sp.csc_array(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(count, n)
    )
    return matrix, np.concatenate(rhs)


class ConeProgToProx(Reduction):
    """Lowers a formatted ParamConeProg to a ParamProxProgram (cones become indicator terms)."""

    def accepts(self, problem: object) -> bool:
        return isinstance(problem, ParamConeProg) and problem.formatted

    def apply(self, problem: ParamConeProg) -> tuple[ParamProxProgram, dict]:
        return ParamProxProgram(problem), {}

    def invert(self, solution: object, inverse_data: dict) -> object:
        """The IR keeps CVXPY's variable vector, so solutions pass through unchanged."""
        return solution
