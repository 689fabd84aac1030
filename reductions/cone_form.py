"""The assembled view of a Program (``Program.assemble``): one sparse A, cones on row blocks.

The methods that factor a matrix and the cone PDHG need the program as
``A x - b in K``. A Program built from CVXPY's cone form carries that view from the
start (``Program.from_rows``); any other Program is assembled here, once. Used also when
the structure-preserving lowering succeeds but the structure does not pay off
(``Lowered.keeps_structure``: l1, hinge, entropy and least-squares models with linear
constraints): the program is still built faster from the lowering than by CVXPY's cone
canonicalization (0.1-1 ms against 3-7 ms on the zoo's models). Its terms are
written as cones over x and epigraph variables t, r, with u = A x - b:

    a cone K (u in K)               the same rows, the same cone
    w |u|        (Norm1)            t - u >= 0, t + u >= 0,        cost w't
    w max(u, 0)  (Pos)              t - u >= 0, t >= 0,            cost w't
    w u log u    (NegEntropy)       (t_i, u_i, 1) in K_exp,        cost -w't
    w u'u        (SumSquares)       r - u = 0,  1/2 r'(2 diag(w)) r;
    w u'Qu       (Quadratic)        r - u = 0,  1/2 r'(2 w Q) r; for both, when A
                                    selects distinct entries of x, directly
                                    1/2 x'Px + c'x + offset
    ||u||_2 <= r  (L2Ball)          (r, u) in K_soc
    ||u||_1 <= r  (L1Ball)          t - u >= 0, t + u >= 0, r - 1't >= 0
    ||u||_inf <= r (LinfBall)       r - u >= 0, u + r >= 0

(the exponential cone in CVXPY's order: y exp(x/y) <= z, so (t, u, 1) in K_exp is
t <= -u log u). The rows of cone terms are kept one for one, so their duals are read
from the same rows as in the structured form; a ball's y (the multiplier of u) is the
x-part of its rows' multipliers: y[1:] of its second-order cone rows, y_+ - y_- of the
rows that hold +u and -u (``AssembledProgram.term_rows``). The variable bounds l <= x <= u
follow as one nonnegative-cone block (``ir.bound_rows``; the view's ``bound_rows``).

In NABLAPROX's chain, solving a lowering's assembled view is the step
``ConeFormReduction`` after the structured lowering (``reductions/dispatch.py``): its
``ParamConeForm`` marks the program at new parameter values to be solved assembled, and
its ``invert`` maps the view's solution back to one of the program.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
from cvxpy.reductions.reduction import Reduction

from cvxprox.functions.cones import Cone, ExpCone, NonnegCone, SecondOrderCone, ZeroCone
from cvxprox.functions.prox import (
    L1Ball,
    L2Ball,
    LinfBall,
    NegEntropy,
    Norm1,
    Pos,
    Quadratic,
    SumSquares,
)
from cvxprox.ir.program import AssembledProgram, Program, RowTerm, bound_rows
from cvxprox.reductions.solver_io import ProgramSolution

if TYPE_CHECKING:
    from cvxprox.reductions.dispatch import ParamStructuredProgram

#: Where a term's y is read from the assembled view's: its rows one for one (a slice),
#: y[plus] - y[minus] (a pair of slices), or nowhere (None).
TermRows = slice | tuple[slice, slice] | None
#: The functions ``assemble`` writes as cones.
CONE_FUNCTIONS = (Cone, Norm1, Pos, NegEntropy, SumSquares, Quadratic, L1Ball, L2Ball, LinfBall)


class ParamConeForm:
    """A parametric lowered program, to be solved by its assembled view.

    Parameters
    ----------
    structured : ParamStructuredProgram
        Whose every term has a cone form (``has_cone_form``; the kinds of the terms do
        not depend on parameter values).
    """

    def __init__(self, structured: ParamStructuredProgram) -> None:
        self.structured = structured
        #: The assembled view of the last ``apply_parameters``.
        self.view: AssembledProgram | None = None

    @property
    def parameters(self) -> list[Any]:
        return self.structured.parameters

    def apply_parameters(self) -> Program:
        """The program at the parameters' current values, marked ``solve_assembled``."""
        program = self.structured.apply_parameters()
        program.solve_assembled = True
        self.view = program.assemble()
        return program

    def cvxpy_data(self) -> dict:
        """Nothing: the view is built from the structured lowering, not from CVXPY's cone
        program."""
        return {}


class ConeFormReduction(Reduction):
    """A parametric lowered program -> the same, solved by its assembled view."""

    def accepts(self, problem: object) -> bool:
        """Whether ``problem`` is a parametric lowered program whose every term has a cone
        form."""
        lowered = getattr(problem, "lowered", None)
        return lowered is not None and has_cone_form(lowered.program)

    def apply(self, problem: ParamStructuredProgram) -> tuple[ParamConeForm, ParamConeForm]:
        if not self.accepts(problem):
            raise ValueError("a term of the program has no cone form")
        program = ParamConeForm(problem)
        return program, program

    def invert(self, solution: ProgramSolution, inverse_data: ParamConeForm) -> ProgramSolution:
        """The program's solution from its assembled view's.

        x is the first ``view.n_program`` entries of the view's variable. Each cone term
        of the program has its rows of y one for one in the view, a ball its y from the
        rows ``view.term_rows`` names (y[plus] - y[minus]); the y of the other terms (the
        epigraph-written objective terms) is not recovered and is NaN.
        """
        view, x, y_view = inverse_data.view, solution.x, solution.y
        y = None
        if y_view is not None:
            terms = inverse_data.structured.lowered.program.terms
            y = np.full(sum(term.size for term in terms), np.nan)
            start = 0
            for term, rows in zip(terms, view.term_rows, strict=True):
                if isinstance(rows, tuple):
                    y[start : start + term.size] = y_view[rows[0]] - y_view[rows[1]]
                elif rows is not None:
                    y[start : start + term.size] = y_view[rows]
                start += term.size
        x = None if x is None else x[: view.n_program]
        return ProgramSolution(solution.status, solution.opt_val, x, y, solution.attr)


class _Rows:
    """Row blocks ``A_x x + T t - b in cone`` collected before assembly, with T given by
    its nonzeros (rows within the block, epigraph variable indices, values)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.blocks: list[tuple[sp.csr_array, tuple | None, np.ndarray, Cone, slice]] = []
        self.m = 0
        self.n_aux = 0

    def add(self, A: sp.csr_array, b: np.ndarray, cone: Cone, aux: tuple | None = None) -> slice:
        """Rows A x + T t - b in cone; their slice."""
        rows = slice(self.m, self.m + b.size)
        self.blocks.append((A, aux, b, cone, rows))
        self.m = rows.stop
        return rows

    def add_epigraph(self, A: sp.csr_array, b: np.ndarray, cone: Cone, t: int) -> None:
        """Rows A x + t[t : t + k] - b in cone (k = len(b))."""
        k = b.size
        self.add(A, b, cone, (np.arange(k), t + np.arange(k), np.ones(k)))

    def new_aux(self, k: int) -> int:
        start = self.n_aux
        self.n_aux += k
        return start

    def assemble(self) -> tuple[sp.csc_array, np.ndarray, list[RowTerm]]:
        """One CSC matrix [A_x T] from the blocks' nonzeros (CSR blocks; a single COO
        conversion)."""
        rows, cols, vals, terms = [], [], [], []
        for A, aux, _, cone, block in self.blocks:
            rows += [np.repeat(np.arange(block.start, block.stop), np.diff(A.indptr))]
            cols += [A.indices]
            vals += [A.data]
            if aux is not None:
                rows += [aux[0] + block.start]
                cols += [aux[1] + self.n]
                vals += [aux[2]]
            terms.append(RowTerm(cone, block))
        shape = (self.m, self.n + self.n_aux)
        if not rows:
            return sp.csc_array(shape), np.zeros(0), terms
        A_all = sp.csc_array(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=shape
        )
        return A_all, np.concatenate([block[2] for block in self.blocks]), terms


def _selection(A: sp.csr_array) -> np.ndarray | None:
    """The column each row of A selects, if every row is one distinct unit entry."""
    if A.nnz != A.shape[0] or np.any(np.diff(A.indptr) != 1) or np.any(A.data != 1.0):
        return None
    cols = A.indices
    return cols if np.unique(cols).size == cols.size else None


def has_cone_form(program: Program) -> bool:
    """Whether every term's function is one ``assemble`` writes as cones."""
    return all(isinstance(t.function, CONE_FUNCTIONS) for t in program.terms)


def assemble(program: Program) -> AssembledProgram:
    """The assembled view of ``program`` (the module docstring's rows), over x and then
    the epigraph variables; its ``term_rows`` locate the program's cone terms, its
    ``bound_rows`` the variable bounds.

    Raises ValueError naming the first term whose function has no cone form here.
    """
    for term in program.terms:
        if not isinstance(term.function, CONE_FUNCTIONS):
            raise ValueError(
                f"term {term.label or term.function.describe()!r}: "
                f"{term.function.describe()} has no cone form to assemble"
            )
    n = program.n
    rows = _Rows(n)
    c = program.c.astype(np.float64, copy=True)
    quad = _Quadratics()
    c_aux: list[np.ndarray] = []
    term_rows: list[TermRows] = []
    for term in program.terms:
        f, k, b = term.function, term.size, np.asarray(term.b, dtype=np.float64)
        A = sp.csr_array(term.op.to_sparse(), dtype=np.float64)
        if isinstance(f, Cone):
            term_rows.append(rows.add(A, b, f))
            continue
        if isinstance(f, (L1Ball, L2Ball, LinfBall)):
            term_rows.append(_ball_rows(rows, f, A, b, c_aux))
            continue
        term_rows.append(None)
        if isinstance(f, (SumSquares, Quadratic)):
            # w u'Qu with u = A x - b: on a selection of x directly, else through r = u.
            Q = f.Q * f.weight if isinstance(f, Quadratic) else np.broadcast_to(f.weight, (k,))
            cols = _selection(A)
            if cols is None:
                r = rows.new_aux(k)
                c_aux.append(np.zeros(k))
                rows.add_epigraph(-A, -b, ZeroCone(k), r)
                cols, b = n + r + np.arange(k), np.zeros(k)
            quad.add(cols, Q, b, c)
            continue
        w = np.broadcast_to(np.asarray(f.weight, dtype=np.float64), (k,))
        t = rows.new_aux(k)
        if isinstance(f, (Norm1, Pos)):
            c_aux.append(w)
            rows.add_epigraph(-A, -b, NonnegCone(k), t)
            if isinstance(f, Norm1):
                rows.add_epigraph(A, b, NonnegCone(k), t)
            else:
                rows.add_epigraph(sp.csr_array((k, n)), np.zeros(k), NonnegCone(k), t)
        else:  # NegEntropy
            c_aux.append(-w)
            # Rows 3i, 3i + 1, 3i + 2: t_i, A_i x - b_i and the constant 1 (= 0 x - (-1)).
            coo = A.tocoo()
            A3 = sp.csr_array((coo.data, (3 * coo.row + 1, coo.col)), shape=(3 * k, n))
            b3 = np.zeros(3 * k)
            b3[1::3] = b
            b3[2::3] = -1.0
            rows.add(A3, b3, ExpCone(k), (3 * np.arange(k), t + np.arange(k), np.ones(k)))
    B, d = bound_rows(program.l, program.u, n)
    bounds = rows.add(sp.csr_array(B), d, NonnegCone(d.size)) if d.size else None
    A_all, b_all, terms = rows.assemble()
    c_all = np.concatenate([c, *c_aux])
    if program.P is not None:
        quad.add_matrix(sp.coo_array(program.P))
    return AssembledProgram(
        c=c_all,
        A=A_all,
        b=b_all,
        terms=terms,
        P=quad.matrix(c_all.size),
        offset=float(program.offset) + quad.offset,
        term_rows=term_rows,
        bound_rows=bounds,
        n_program=n,
    )


def _ball_rows(
    rows: _Rows, f: L1Ball | L2Ball | LinfBall, A: sp.csr_array, b: np.ndarray, c_aux: list
) -> TermRows:
    """The rows of ``||A x - b|| <= r`` (the module docstring's), added to ``rows``; the
    rows its y is read from (``AssembledProgram.term_rows``). An l1 ball appends its
    epigraph variables (zero cost) to ``c_aux``."""
    k, n, r = b.size, A.shape[1], f.radius
    if isinstance(f, L2Ball):
        # (r, A x - b) in K_soc: the rows [0; A] x - [-r; b].
        lifted = sp.csr_array(
            (A.data, A.indices, np.concatenate(([0], A.indptr))), shape=(k + 1, n)
        )
        block = rows.add(lifted, np.concatenate(([-r], b)), SecondOrderCone([k + 1]))
        return slice(block.start + 1, block.stop)
    if isinstance(f, LinfBall):
        minus = rows.add(-A, -b - r, NonnegCone(k))
        plus = rows.add(A, b - r, NonnegCone(k))
        return plus, minus
    t = rows.new_aux(k)
    c_aux.append(np.zeros(k))
    minus = slice(rows.m, rows.m + k)
    rows.add_epigraph(-A, -b, NonnegCone(k), t)
    plus = slice(rows.m, rows.m + k)
    rows.add_epigraph(A, b, NonnegCone(k), t)
    total = (np.zeros(k, dtype=np.int64), t + np.arange(k), -np.ones(k))
    rows.add(sp.csr_array((1, n)), np.array([-r]), NonnegCone(1), total)
    return plus, minus


class _Quadratics:
    """The entries of P, and the linear and constant parts, of sums of w (u - b)'Q(u - b)
    over selected entries u = v[cols] of the cone program's variable."""

    def __init__(self) -> None:
        self.entries: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.offset = 0.0

    def add(self, cols: np.ndarray, Q: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
        """Add (v[cols] - b)'Q(v[cols] - b) for Q a matrix or a diagonal (1-D); c[:n]
        receives the linear part of x's entries (cols below n)."""
        Qb = Q * b if Q.ndim == 1 else Q @ b
        self.offset += float(b @ Qb)
        inside = cols < c.size
        c[cols[inside]] -= 2.0 * Qb[inside]
        if Q.ndim == 1:
            self.entries.append((cols, cols, 2.0 * Q))
        else:
            i, j = np.meshgrid(cols, cols, indexing="ij")
            self.entries.append((i.ravel(), j.ravel(), 2.0 * Q.ravel()))

    def add_matrix(self, P: sp.coo_array) -> None:
        """Add 1/2 x'Px (P on the first entries of the variable)."""
        self.entries.append((P.row, P.col, P.data))

    def matrix(self, size: int) -> sp.csc_array | None:
        """P (size x size), or None when there is no quadratic part."""
        if not self.entries:
            return None
        i, j, v = (np.concatenate(parts) for parts in zip(*self.entries, strict=True))
        if not np.any(v):
            return None
        return sp.csc_array((v, (i, j)), shape=(size, size))
