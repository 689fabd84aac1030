"""Column equilibration of a Program's variables (``ColumnScaling``): x = E x~ when
the operators' column norms spread over more than ``ColumnScaling.SPREAD``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from cvxprox.ir.program import Program, Term
from cvxprox.operators.linops import Compose, Diagonal, MatrixOp
from cvxprox.solvers.common.term_checks import SPARSE_KINDS, termination_units
from cvxprox.solvers.common.terms import TermLayout


class ColumnScaling:
    """Equilibration of a Program's variables: x = E x~ with E_j = 1 / ||(E A)_j||
    the column norms of ``TerminationUnits`` (constraint rows normalized, other terms'
    rows as they are), so that every column of the scaled operators A_i E has norm 1.

    The scaled program is c~ = E c, A~_i = A_i E (a matrix for diagonal, gather and
    matrix operators, else the composition with diag(E)); z and y are unchanged. It is
    used only when the column norms spread over more than ``SPREAD`` (a variable of
    1e-6 next to one of 100): a well-scaled program keeps its operators and their Gram
    structure (FFT, DCT, diagonal) for the exact x-updates.

    Parameters
    ----------
    program : Program
    """

    SPREAD = 1e2

    def __init__(self, program: Program) -> None:
        col = termination_units(TermLayout(program)).columns
        self.needed = bool(col.size) and float(np.max(col) / np.min(col)) > self.SPREAD
        self.E = 1.0 / col

    def scale_program(self, program: Program) -> Program:
        """The program in x~ = x / E (bounds l / E <= x~ <= u / E)."""
        E = self.E
        terms = []
        for term in program.terms:
            op = term.op
            if isinstance(op, SPARSE_KINDS):
                scaled = MatrixOp(sp.csr_array(op.to_sparse()) @ sp.diags_array(E))
            else:
                scaled = Compose(op, Diagonal(E))
            terms.append(Term(term.function, scaled, term.b, term.label))
        l, u = (None if bound is None else bound / E for bound in (program.l, program.u))
        return Program(E * program.c, terms, offset=program.offset, l=l, u=u)
