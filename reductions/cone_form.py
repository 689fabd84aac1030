"""The assembled view of a Program (``Program.assemble``): one sparse A, cones on row blocks.

The methods that factor a matrix and the cone PDHG need the program as
``A x - b in K``. A Program built from CVXPY's cone form carries that view from the
start (``Program.from_rows``); any other Program is assembled here, once. Used also when
the structure-preserving lowering succeeds but the structure does not pay off
(``Lowered.keeps_structure``: l1, hinge, entropy and least-squares models with linear
constraints): the program is still built faster from the lowering than by CVXPY's cone
canonicalization (0.1-1 ms against 3-7 ms on the zoo's models). Every function of
``cvxprox.functions`` has a cone form; a term is written as cones over x and epigraph
variables t, s, a, r, with u = A x - b (k entries):

    a cone K (u in K)                the same rows, the same cone
    w |u|         (Norm1)            t - u >= 0, t + u >= 0,           cost w't
    w TV(u)       (TV1D)             Norm1's rows for D u (D the first difference)
    w max(u, 0)   (Pos)              t - u >= 0, t >= 0,               cost w't
    w ||u||_2     (Norm2)            (t, u) in K_soc,                  cost w t
    sum w_g ||u_g|| (GroupL2)        (t_g, u_g) in K_soc per group,    cost w't
    w ||u||_inf   (NormInf)          t 1 - u >= 0, t 1 + u >= 0,       cost w t
    w huber_M(u)  (Huber)            t - u + s >= 0, t + u - s >= 0,   cost 2 M w't + w s's
                                     (h(v) = min_s s^2 + 2 M |v - s|)
    w log(1+e^u)  (Logistic)         (-t_i, 1, a_i), (u_i - t_i, 1, a'_i) in K_exp,
                                     1 - a - a' >= 0,                  cost w't
    w u log u     (NegEntropy)       (t_i, u_i, 1) in K_exp,           cost -w't
    w kl_div(u, c) (KLDiv)           (t_i, u_i, c_i) in K_exp,         cost -w't - w'u + w'c
    w u'u         (SumSquares)       r - u = 0,  1/2 r'(2 diag(w)) r;
    w u'Qu        (Quadratic)        r - u = 0,  1/2 r'(2 w Q) r; for both, when A
                                     selects distinct entries of x, directly
                                     1/2 x'Px + c'x + offset
    ||u||_2 <= r  (L2Ball)           (r, u) in K_soc
    ||u||_1 <= r  (L1Ball)           t - u >= 0, t + u >= 0, r - 1't >= 0
    ||u||_inf <= r (LinfBall)        r - u >= 0, u + r >= 0
    l <= u <= h   (Box)              u - l >= 0, h - u >= 0 (an infinite bound's row
                                     is 0 + 1 >= 0)
    u >= 0, 1'u = s (Simplex)        u >= 0, 1'u - s = 0

(the exponential cone in CVXPY's order: y exp(x/y) <= z, so (t, u, c) in K_exp is
t <= -u log(u / c)). The rows of cone terms are kept one for one, so their duals are read
from the same rows as in the structured form; a ball's y (the multiplier of u) is the
x-part of its rows' multipliers: y[1:] of its second-order cone rows, y_+ - y_- of the
rows that hold +u and -u (``AssembledProgram.term_rows``); a box's likewise. A
simplex's y is not recovered (NaN), as for the objective terms. The variable bounds l <= x <= u
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
from numpy.typing import ArrayLike

from cvxprox.functions.cones import Cone, ExpCone, NonnegCone, SecondOrderCone, ZeroCone
from cvxprox.functions.prox import (
    TV1D,
    Box,
    GroupL2,
    Huber,
    KLDiv,
    L1Ball,
    L2Ball,
    LinfBall,
    Logistic,
    NegEntropy,
    Norm1,
    Norm2,
    NormInf,
    Pos,
    ProxFunction,
    Quadratic,
    Simplex,
    SumSquares,
)
from cvxprox.ir.program import AssembledProgram, Program, RowTerm, bound_rows
from cvxprox.reductions.solver_io import ProgramSolution

if TYPE_CHECKING:
    from cvxprox.reductions.dispatch import ParamStructuredProgram

#: Where a term's y is read from the assembled view's: its rows one for one (a slice),
#: y[plus] - y[minus] (a pair of slices), or nowhere (None).
TermRows = slice | tuple[slice, slice] | None
#: The functions ``assemble`` writes as cones: every function of ``cvxprox.functions``.
CONE_FUNCTIONS = (
    Cone,
    Norm1,
    TV1D,
    Pos,
    Norm2,
    GroupL2,
    NormInf,
    Huber,
    Logistic,
    NegEntropy,
    KLDiv,
    SumSquares,
    Quadratic,
    L1Ball,
    L2Ball,
    LinfBall,
    Box,
    Simplex,
)


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
        epigraph-written objective terms) is not recovered and is NaN. The bound rows' y
        (x_j - l_j >= 0, then u_j - x_j >= 0, IR duals <= 0) give the bound multipliers
        lam_lo, lam_hi = -y on their rows.
        """
        view, x, y_view = inverse_data.view, solution.x, solution.y
        y = bound_duals = None
        if y_view is not None and view.bound_rows is not None:
            program = inverse_data.structured.lowered.program
            bound_duals = _bound_multipliers(program, -y_view[view.bound_rows])
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
        return ProgramSolution(solution.status, solution.opt_val, x, y, solution.attr, bound_duals)


def _bound_multipliers(program: Program, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lam_lo, lam_hi) (n,) each from the multipliers of the bound rows, in the order of
    ``bound_rows(program.l, program.u, n)``."""
    n = program.n
    lam_lo, lam_hi = np.zeros(n), np.zeros(n)
    start = 0
    for bound, out in ((program.l, lam_lo), (program.u, lam_hi)):
        if bound is None:
            continue
        idx = np.flatnonzero(np.isfinite(bound))
        out[idx] = lam[start : start + idx.size]
        start += idx.size
    return lam_lo, lam_hi


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

    def new_aux(self, k: int, c_aux: list[np.ndarray], cost: ArrayLike = 0.0) -> int:
        """k new epigraph variables, their cost appended to ``c_aux``; the first one's
        index among the epigraph variables."""
        start = self.n_aux
        self.n_aux += k
        c_aux.append(np.broadcast_to(np.asarray(cost, dtype=np.float64), (k,)))
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
    offset = float(program.offset)
    for term in program.terms:
        f, k, b = term.function, term.size, np.asarray(term.b, dtype=np.float64)
        A = sp.csr_array(term.op.to_sparse(), dtype=np.float64)
        if isinstance(f, Cone):
            term_rows.append(rows.add(A, b, f))
        elif isinstance(f, (SumSquares, Quadratic)):
            term_rows.append(None)
            # w u'Qu with u = A x - b: on a selection of x directly, else through r = u.
            Q = f.Q * f.weight if isinstance(f, Quadratic) else np.broadcast_to(f.weight, (k,))
            cols = _selection(A)
            if cols is None:
                r = rows.new_aux(k, c_aux)
                rows.add(-A, -b, ZeroCone(k), _aux(np.arange(k), r + np.arange(k), 1.0))
                cols, b = n + r + np.arange(k), np.zeros(k)
            quad.add(cols, Q, b, c)
        elif isinstance(f, (L1Ball, L2Ball, LinfBall, Box, Simplex)):
            term_rows.append(_indicator_rows(rows, f, A, b, c_aux))
        else:
            term_rows.append(None)
            offset += _epigraph_rows(rows, f, A, b, c, c_aux, quad)
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
        offset=offset + quad.offset,
        term_rows=term_rows,
        bound_rows=bounds,
        n_program=n,
    )


def _placed(A: sp.csr_array, b: np.ndarray, size: int, at: np.ndarray) -> tuple:
    """Row i of (A, b) as row ``at[i]`` (increasing) of a block of ``size`` rows whose
    other rows are zero: the block's (CSR matrix, right-hand side)."""
    counts = np.zeros(size, dtype=np.int64)
    counts[at] = np.diff(A.indptr)
    indptr = np.concatenate(([0], np.cumsum(counts)))
    placed = np.zeros(size)
    placed[at] = b
    return sp.csr_array((A.data, A.indices, indptr), shape=(size, A.shape[1])), placed


def _aux(at: np.ndarray, cols: np.ndarray, value: float) -> tuple:
    """The nonzeros ``value`` at rows ``at`` and epigraph columns ``cols`` of a block."""
    return at, cols, np.full(at.size, value)


def _merge(*parts: tuple) -> tuple:
    """Nonzeros of epigraph columns from several ``_aux`` parts, as one."""
    return tuple(np.concatenate(column) for column in zip(*parts, strict=True))


def _indicator_rows(
    rows: _Rows, f: ProxFunction, A: sp.csr_array, b: np.ndarray, c_aux: list
) -> TermRows:
    """The rows of an indicator that is not a cone (a norm ball, a box, a simplex; the
    module docstring's), added to ``rows``; the rows its y is read from
    (``AssembledProgram.term_rows``)."""
    k, n = b.size, A.shape[1]
    if isinstance(f, L2Ball):
        # (r, A x - b) in K_soc: the rows [0; A] x - [-r; b].
        lifted, shifted = _placed(A, b, k + 1, np.arange(1, k + 1))
        shifted[0] = -f.radius
        block = rows.add(lifted, shifted, SecondOrderCone([k + 1]))
        return slice(block.start + 1, block.stop)
    if isinstance(f, Simplex):
        rows.add(A, b, NonnegCone(k))
        total = sp.csr_array(A.sum(axis=0).reshape(1, n))
        rows.add(total, np.array([b.sum() + f.total]), ZeroCone(1))
        return None
    if isinstance(f, (LinfBall, Box)):
        lower, upper = (-f.radius, f.radius) if isinstance(f, LinfBall) else (f.lower, f.upper)
        lower, upper = np.broadcast_to(lower, (k,)), np.broadcast_to(upper, (k,))
        plus = rows.add(
            *_bounded(A, b + np.where(np.isfinite(lower), lower, 0.0), lower), NonnegCone(k)
        )
        minus = rows.add(
            *_bounded(-A, -b - np.where(np.isfinite(upper), upper, 0.0), -upper), NonnegCone(k)
        )
        return plus, minus
    t = rows.new_aux(k, c_aux)
    entries = np.arange(k)
    minus = rows.add(-A, -b, NonnegCone(k), _aux(entries, t + entries, 1.0))
    plus = rows.add(A, b, NonnegCone(k), _aux(entries, t + entries, 1.0))
    total = _aux(np.zeros(k, dtype=np.int64), t + entries, -1.0)
    rows.add(sp.csr_array((1, n)), np.array([-f.radius]), NonnegCone(1), total)
    return plus, minus


def _bounded(A: sp.csr_array, b: np.ndarray, bound: np.ndarray) -> tuple:
    """Rows A x - b >= 0, those whose bound is infinite (vacuous) made 0 + 1 >= 0."""
    vacuous = ~np.isfinite(bound)
    if not np.any(vacuous):
        return A, b
    kept = np.flatnonzero(~vacuous)
    block, shifted = _placed(sp.csr_array(A[kept]), b[kept], b.size, kept)
    shifted[vacuous] = -1.0
    return block, shifted


def _epigraph_rows(
    rows: _Rows,
    f: ProxFunction,
    A: sp.csr_array,
    b: np.ndarray,
    c: np.ndarray,
    c_aux: list,
    quad: _Quadratics,
) -> float:
    """The rows and epigraph variables of an objective term (the module docstring's),
    added to ``rows``, their costs to ``c_aux`` and ``quad``, a linear part in x to c;
    returns the constant part of the cost."""
    k, n = b.size, A.shape[1]
    entries = np.arange(k)
    if isinstance(f, TV1D):
        A, b, k, entries = A[1:] - A[:-1], b[1:] - b[:-1], k - 1, entries[:-1]
        if k == 0:
            return 0.0
    if isinstance(f, (Norm2, GroupL2)):
        group = k if isinstance(f, Norm2) else f.group_size
        count = k // group
        t = rows.new_aux(count, c_aux, f.weight)
        at = (entries // group) * (group + 1) + 1 + entries % group
        block, shifted = _placed(A, b, count * (group + 1), at)
        heads = np.arange(count) * (group + 1)
        cone = SecondOrderCone(np.full(count, group + 1))
        rows.add(block, shifted, cone, _aux(heads, t + np.arange(count), 1.0))
        return 0.0
    w = np.broadcast_to(np.asarray(f.weight, dtype=np.float64), (k,))
    if isinstance(f, (Norm1, TV1D, Pos, NormInf)):
        t = (
            rows.new_aux(1, c_aux, f.weight)
            if isinstance(f, NormInf)
            else rows.new_aux(k, c_aux, w)
        )
        cols = np.full(k, t) if isinstance(f, NormInf) else t + entries
        rows.add(-A, -b, NonnegCone(k), _aux(entries, cols, 1.0))
        if isinstance(f, Pos):
            rows.add(sp.csr_array((k, n)), np.zeros(k), NonnegCone(k), _aux(entries, cols, 1.0))
        else:
            rows.add(A, b, NonnegCone(k), _aux(entries, cols, 1.0))
        return 0.0
    if isinstance(f, Huber):
        s = rows.new_aux(k, c_aux)
        t = rows.new_aux(k, c_aux, 2.0 * f.M * w)
        quad.add(n + s + entries, np.array(w), np.zeros(k), c)
        rows.add(
            -A,
            -b,
            NonnegCone(k),
            _merge(_aux(entries, s + entries, 1.0), _aux(entries, t + entries, 1.0)),
        )
        rows.add(
            A,
            b,
            NonnegCone(k),
            _merge(_aux(entries, s + entries, -1.0), _aux(entries, t + entries, 1.0)),
        )
        return 0.0
    triple = 3 * entries
    if isinstance(f, Logistic):
        t = rows.new_aux(k, c_aux, w)
        a = rows.new_aux(2 * k, c_aux)
        zero = sp.csr_array((3 * k, n))
        const = np.zeros(3 * k)
        const[triple + 1] = -1.0
        # (-t_i, 1, a_i) and (u_i - t_i, 1, a'_i) in K_exp; 1 - a_i - a'_i >= 0.
        first = _merge(_aux(triple, t + entries, -1.0), _aux(triple + 2, a + entries, 1.0))
        rows.add(zero, const, ExpCone(k), first)
        block, shifted = _placed(A, b, 3 * k, triple)
        shifted[triple + 1] = -1.0
        second = _merge(_aux(triple, t + entries, -1.0), _aux(triple + 2, a + k + entries, 1.0))
        rows.add(block, shifted, ExpCone(k), second)
        sums = _merge(_aux(entries, a + entries, -1.0), _aux(entries, a + k + entries, -1.0))
        rows.add(sp.csr_array((k, n)), -np.ones(k), NonnegCone(k), sums)
        return 0.0
    # NegEntropy and KLDiv: (t_i, u_i, c_i) in K_exp (c = 1 for NegEntropy).
    t = rows.new_aux(k, c_aux, -w)
    block, shifted = _placed(A, b, 3 * k, triple + 1)
    scale = np.broadcast_to(f.c, (k,)) if isinstance(f, KLDiv) else np.ones(k)
    shifted[triple + 2] = -scale
    rows.add(block, shifted, ExpCone(k), _aux(triple, t + entries, 1.0))
    if not isinstance(f, KLDiv):
        return 0.0
    # w kl_div(u, c) = w u log(u / c) - w'u + w'c, with -w'u = -w'A x + w'b.
    c -= A.T @ w
    return float(w @ (b + scale))


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
