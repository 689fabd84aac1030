"""Elimination of a Program's fixed variables (``FixedColumns``): the columns j with
l_j = u_j, such as the known pixels of TV inpainting, which CVXPY's
``multiply(mask, X) == mask * data`` lowers to.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from cvxprox.ir.program import Program, Term
from cvxprox.operators.linops import MatrixOp
from cvxprox.solvers.common.term_checks import SPARSE_KINDS


class FixedColumns:
    """x = S x_F + x_0: the free variables F = {j : l_j < u_j} of a Program and the fixed
    ones at x_0 (x_0j = l_j = u_j on the fixed columns, 0 on the free ones).

    The reduced program in x_F (n_F,) is

        minimize (S'c)'x_F + sum_i f_i(A_i S x_F - (b_i - A_i x_0)) + c'x_0 + offset
        subject to l_F <= x_F <= u_F,

    with the same terms, z and y (m,): the fixed variables leave the method's iterations
    and their bound multipliers, the reduced costs (c + A'y)_j, are what the program's
    dual residual leaves to them. A_i S is the matrix's free columns, so only programs
    whose operators are all matrices (``SPARSE_KINDS``) are reduced: a convolution or
    difference operator would lose the FFT/DCT Gram its exact x-update needs.

    Parameters
    ----------
    program : Program

    Attributes
    ----------
    applies : bool
        Some but not all variables are fixed and every operator is a matrix.
    free : ndarray of intp, shape (n_F,)
    x0 : ndarray, shape (n,)
    """

    def __init__(self, program: Program) -> None:
        n = program.n
        fixed = np.zeros(n, dtype=bool)
        if program.l is not None and program.u is not None:
            fixed = np.isfinite(program.l) & (program.l == program.u)
        self.free = np.flatnonzero(~fixed)
        self.x0 = np.zeros(n)
        self.x0[fixed] = program.l[fixed] if fixed.any() else 0.0
        self.n = n
        self.applies = (
            bool(fixed.any())
            and self.free.size > 0
            and program.P is None
            and all(isinstance(t.op, SPARSE_KINDS) for t in program.terms)
        )

    def describe(self) -> str:
        """One line: how many variables were fixed and eliminated."""
        fixed = self.n - self.free.size
        return f"{fixed} of {self.n} variables fixed (l_j = u_j) and eliminated"

    def reduce_program(self, program: Program) -> Program:
        """The program in x_F (see the class docstring)."""
        free, x0 = self.free, self.x0
        terms = []
        for term in program.terms:
            M = sp.csr_array(term.op.to_sparse())
            terms.append(Term(term.function, MatrixOp(M[:, free]), term.b - M @ x0, term.label))
        l, u = (None if bound is None else bound[free] for bound in (program.l, program.u))
        offset = program.offset + float(program.c @ x0)
        return Program(program.c[free], terms, offset=offset, l=l, u=u)

    def expand(self, x_free: np.ndarray, direction: bool = False) -> np.ndarray:
        """S x_F + x_0, shape (n,); S x_F alone for a direction (an unboundedness ray)."""
        x = np.zeros(self.n) if direction else self.x0.copy()
        x[self.free] = x_free
        return x

    def reduce_warm_start(self, warm: dict | None) -> dict | None:
        """A warm start of the program as one of the reduced program (x and the bound
        multipliers ``bounds_y`` on the free variables; z, y unchanged)."""
        if warm is None or np.shape(warm.get("x")) != (self.n,):
            return warm
        out = {**warm, "x": np.asarray(warm["x"])[self.free]}
        if np.shape(warm.get("bounds_y")) == (self.n,):
            out["bounds_y"] = np.asarray(warm["bounds_y"])[self.free]
        return out

    def expand_warm_start(self, warm: dict) -> None:
        """A reduced result's warm start as one of the program, in place (``bounds_y``
        zero on the fixed variables)."""
        if np.shape(warm.get("x")) == (self.free.size,):
            warm["x"] = self.expand(warm["x"])
        if np.shape(warm.get("bounds_y")) == (self.free.size,):
            warm["bounds_y"] = self.expand(warm["bounds_y"], direction=True)
