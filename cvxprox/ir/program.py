"""The proximal-splitting intermediate representation (IR): one ``Program``.

Every problem that reaches an algorithm is a ``Program``

    minimize   c'x + 1/2 x'Px + sum_i f_i(A_i x - b_i) + offset   subject to  l <= x <= u

with x in R^n. Each term holds a function f_i with a cheap proximal operator
(``cvxprox.functions.prox``: norms, TV, Huber, ..., and the cones of
``cvxprox.functions.cones``, whose prox is the projection) and a linear operator A_i
(``cvxprox.operators.linops``: sparse matrices, differences, convolutions, ... matrix-free
where the structure allows).

The methods that factor a matrix (KKT-ADMM, polishing, the LU adjoint) and the cone PDHG
work on the program's **assembled view** (``Program.assemble``, an ``AssembledProgram``):
one sparse A, b and a list of cones on consecutive row blocks, over x and the epigraph
variables of the terms that are not cones (``reductions/cone_form.py``), the variable
bounds l <= x <= u written as nonnegative-cone rows after them (``bound_rows``). It is built
once per program; a program made from CVXPY's cone form (``Program.from_rows``) carries
it from the start, its terms being row blocks of the very matrix CVXPY produced.

Dual variables follow the IR's own convention: y lies in the subdifferential of
f at z = A x - b, so the optimality conditions are

    P x + c + A'y = 0,     z = A x - b,     y in df(z).

For a cone indicator this means z in K, y in the polar cone K° = -K*, and z'y = 0.
The CVXPY interface flips the sign when it hands duals back (CVXPY's duals lie in K*).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from cvxprox.functions.cones import Cone, NonnegCone, ProductCone, ZeroCone
from cvxprox.functions.prox import ProxFunction
from cvxprox.operators.linops import LinOp, MatrixRows

if TYPE_CHECKING:
    from cvxprox.solvers.common.kkt_checks import KKTUnits
    from cvxprox.solvers.common.term_checks import TerminationUnits


@dataclass(frozen=True)
class Term:
    """One term f(A x - b) of a Program.

    Attributes
    ----------
    function : ProxFunction
        f, with a cheap proximal operator (a cone's is its projection).
    op : LinOp, shape (m_i, n)
    b : ndarray, shape (m_i,)
    label : str
        Where the term comes from (an atom or a constraint of the CVXPY problem).
    """

    function: ProxFunction
    op: LinOp
    b: np.ndarray
    label: str = ""

    def __post_init__(self) -> None:
        m, _ = self.op.shape
        if self.b.shape != (m,) or self.function.size != m:
            raise ValueError(
                f"term {self.label!r}: operator has {m} rows, b has shape {self.b.shape}, "
                f"function has size {self.function.size}"
            )

    @property
    def size(self) -> int:
        return self.op.shape[0]

    def residual(self, x: np.ndarray) -> np.ndarray:
        """A x - b, shape (m_i,)."""
        return self.op.matvec(x) - self.b


def check_bounds(n: int, l: np.ndarray | None, u: np.ndarray | None) -> None:
    """Raise ValueError naming the first entry j where l_j <= u_j fails (an empty box),
    or where a bound has the wrong shape, is NaN, or excludes every real value
    (l_j = +inf, u_j = -inf). ``None`` is no bound."""
    for name, bound, excluded in (("lower", l, np.inf), ("upper", u, -np.inf)):
        if bound is None:
            continue
        if bound.shape != (n,):
            raise ValueError(f"the {name} bound has shape {bound.shape}, expected ({n},)")
        bad = np.flatnonzero(np.isnan(bound) | (bound == excluded))
        if bad.size:
            raise ValueError(f"the {name} bound of x[{bad[0]}] is {bound[bad[0]]}")
    if l is not None and u is not None:
        empty = np.flatnonzero(l > u)
        if empty.size:
            j = empty[0]
            raise ValueError(
                f"variable bounds {l[j]} <= x[{j}] <= {u[j]} admit no value (lower > upper)"
            )


def bound_rows(
    l: np.ndarray | None, u: np.ndarray | None, n: int
) -> tuple[sp.csc_array, np.ndarray]:
    """The variable bounds as rows B x - d >= 0: ``x_j - l_j >= 0`` for each finite l_j,
    then ``u_j - x_j >= 0`` for each finite u_j. B has shape (k, n), d shape (k,)."""
    cols, vals, rhs = [], [], []
    for bound, sign in ((l, 1.0), (u, -1.0)):
        if bound is None:
            continue
        idx = np.flatnonzero(np.isfinite(bound))
        cols.append(idx)
        vals.append(np.full(idx.size, sign))
        rhs.append(sign * bound[idx])
    if not cols:
        return sp.csc_array((0, n)), np.zeros(0)
    col = np.concatenate(cols)
    B = sp.csc_array((np.concatenate(vals), (np.arange(col.size), col)), shape=(col.size, n))
    return B, np.concatenate(rhs)


@dataclass
class Program:
    """minimize c'x + 1/2 x'Px + sum_i f_i(A_i x - b_i) + offset subject to l <= x <= u.

    Dual variables y_i lie in the subdifferential of f_i at z_i = A_i x - b_i, so the
    optimality conditions read

        P x + c + sum_i A_i' y_i = 0,    z_i = A_i x - b_i,    y_i in df_i(z_i).

    Attributes
    ----------
    c : ndarray, shape (n,)
    terms : list of Term
    P : scipy.sparse CSC array, shape (n, n), or None
        Symmetric positive semidefinite; None means no quadratic part besides the terms.
        Solved on the assembled view (``solve_assembled``).
    offset : float
        Constant added to the objective.
    l, u : ndarray, shape (n,), or None
        Variable bounds l <= x <= u (entries -inf, +inf where there is none); None means
        no bound on that side. l <= u entrywise (``check_bounds``). The assembled view
        writes them as nonnegative-cone rows after the terms' (``bound_rows``); the
        methods on the terms project onto them (PDHG, FISTA) or split them off as one
        more block on the identity (ADMM, HQS).
    solve_assembled : bool
        Solve the assembled view with the cone methods rather than the terms with the
        structured ones: set for CVXPY's cone form and for lowerings whose structure
        does not pay off (``reductions/dispatch.py``).
    """

    c: np.ndarray
    terms: list[Term]
    _: KW_ONLY
    P: sp.csc_array | None = None
    offset: float = 0.0
    l: np.ndarray | None = None
    u: np.ndarray | None = None
    solve_assembled: bool = False
    _assembled: AssembledProgram | None = field(default=None, repr=False, compare=False)
    #: The termination units of the program's terms, computed once
    #: (``cvxprox.solvers.common.term_checks.termination_units``).
    _termination_units: TerminationUnits | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        for term in self.terms:
            if term.op.shape[1] != self.n:
                raise ValueError(
                    f"term {term.label!r} acts on {term.op.shape[1]} variables, "
                    f"the program has {self.n}"
                )
        if self.P is not None and self.P.shape != (self.n, self.n):
            raise ValueError(f"P has shape {self.P.shape}, expected ({self.n}, {self.n})")
        check_bounds(self.n, self.l, self.u)

    @property
    def has_bounds(self) -> bool:
        """Whether some variable has a finite bound."""
        return any(
            bound is not None and bool(np.any(np.isfinite(bound))) for bound in (self.l, self.u)
        )

    @classmethod
    def from_rows(
        cls,
        c: np.ndarray,
        A: sp.csc_array,
        b: np.ndarray,
        cones: Sequence[Cone],
        P: sp.csc_array | None = None,
        offset: float = 0.0,
        l: np.ndarray | None = None,
        u: np.ndarray | None = None,
    ) -> Program:
        """The program of ``A x - b in K_1 x K_2 x ...`` (the cones on consecutive rows),
        ``l <= x <= u``, with its assembled view made of A itself (and the bound rows
        after it, when there are bounds): each term's operator is a row block of that
        matrix (``MatrixRows``, sliced only when used), so A is not copied without bounds."""
        check_bounds(c.shape[0], l, u)
        row_terms = _row_terms(cones)
        B, d = bound_rows(l, u, c.shape[0])
        if B.shape[0]:
            A = sp.csc_array(sp.vstack([A, B]))
            b = np.concatenate([b, d])
            row_terms.append(RowTerm(NonnegCone(B.shape[0]), slice(b.size - d.size, b.size)))
        view = AssembledProgram(c, A, b, row_terms, P, offset)
        term_rows = [t.rows for t in row_terms[: len(cones)]]
        terms = [
            Term(t.function, MatrixRows(A, t.rows), b[t.rows], t.function.describe())
            for t in row_terms[: len(cones)]
        ]
        program = cls(c, terms, P=P, offset=offset, l=l, u=u, solve_assembled=True)
        view.term_rows = term_rows
        view.n_program = view.n
        if B.shape[0]:
            view.bound_rows = row_terms[-1].rows
        program._assembled = view
        return program

    @property
    def n(self) -> int:
        """Number of variables."""
        return self.c.shape[0]

    @property
    def m(self) -> int:
        """Total number of rows over all terms."""
        return sum(t.size for t in self.terms)

    def assemble(self) -> AssembledProgram:
        """The assembled view (one sparse A, cones on row blocks); built once, cached.

        Raises ValueError naming a term whose function has no cone form here.
        """
        if self._assembled is None:
            from cvxprox.reductions.cone_form import assemble  # noqa: PLC0415

            self._assembled = assemble(self)
        return self._assembled

    def objective(self, x: np.ndarray) -> float:
        """c'x + 1/2 x'Px + sum_i f_i(A_i x - b_i) + offset (inf outside an indicator's
        set or the bounds, with the cones' tolerance)."""
        B, d = bound_rows(self.l, self.u, self.n)
        if d.size and NonnegCone(d.size)(B @ x - d) == np.inf:
            return np.inf
        value = float(self.c @ x) + self.offset
        if self.P is not None:
            value += 0.5 * float(x @ (self.P @ x))
        for term in self.terms:
            value += term.function(term.residual(x))
        return value

    def describe(self) -> str:
        """One line per term: function, operator, shape."""
        nnz = "" if self.P is None else f", nnz(P)={self.P.nnz}"
        bounds = ", bounds l <= x <= u" if self.has_bounds else ""
        lines = [f"Program: n={self.n} variables, {len(self.terms)} terms{nnz}{bounds}"]
        for t in self.terms:
            lines.append(
                f"  {t.function.describe():<16} of {t.op.describe():<40} "
                f"{t.op.shape[0]}x{t.op.shape[1]}  ({t.label})"
            )
        return "\n".join(lines)

    def check_finite(self) -> None:
        """Raise ValueError if c, P, a term's constant or the offset contain NaN or inf."""
        if not np.all(np.isfinite(self.c)) or not np.isfinite(self.offset):
            raise ValueError("the objective's linear part contains NaN or inf")
        if self.P is not None and not np.all(np.isfinite(self.P.data)):
            raise ValueError("the problem data (P) contains NaN or inf")
        for term in self.terms:
            if not np.all(np.isfinite(term.b)):
                raise ValueError(f"the constant of term {term.label!r} contains NaN or inf")
        if self._assembled is not None:
            self._assembled.check_finite()


@dataclass(frozen=True)
class RowTerm:
    """One cone of the assembled view, on consecutive rows of A x - b.

    Attributes
    ----------
    function : Cone
        The cone's indicator; its prox is the Euclidean projection.
    rows : slice
        The rows of the stacked operator A (and of b) the cone acts on.
    """

    function: Cone
    rows: slice

    @property
    def size(self) -> int:
        return self.rows.stop - self.rows.start


def _row_terms(cones: Sequence[Cone]) -> list[RowTerm]:
    terms, start = [], 0
    for cone in cones:
        terms.append(RowTerm(cone, slice(start, start + cone.dim)))
        start += cone.dim
    return terms


@dataclass
class AssembledProgram:
    """The assembled view of a Program: minimize c'x + 1/2 x'Px + offset subject to
    A x - b in K, K a product of cones on consecutive row blocks.

    Attributes
    ----------
    c : ndarray, shape (n,)
    A : scipy.sparse CSC array, shape (m, n)
        The stacked operators.
    b : ndarray, shape (m,)
    terms : list of RowTerm
        Row blocks of A and b, in order, covering all m rows.
    P : scipy.sparse CSC array, shape (n, n), or None
        Symmetric positive semidefinite; None means a linear objective.
    offset : float
        Constant added to the objective.
    term_rows : list of slice, pair of slices, or None
        For each term of the Program, where its y is read from the view's: the rows that
        hold it one for one (a cone), y[plus] - y[minus] for a pair (plus, minus) (a norm
        ball, whose rows hold +u and -u), or None (an objective term written through
        epigraph variables); empty for a view built directly.
    bound_rows : slice or None
        The nonnegative-cone rows that hold the Program's variable bounds
        (``bound_rows(l, u, n)``: x_j - l_j >= 0, then u_j - x_j >= 0), or None.
    n_program : int
        The Program's number of variables: x is the first ``n_program`` entries, the
        epigraph variables follow.
    units : KKTUnits or None
        The termination test's units when the view stands for another program (a
        presolved one carries the original's, ``Presolved.reduced_units``), so that it is
        tested as that program will be; None: the units of its own equilibration.
    """

    c: np.ndarray
    A: sp.csc_array
    b: np.ndarray
    terms: list[RowTerm]
    P: sp.csc_array | None = None
    offset: float = 0.0
    term_rows: list[slice | tuple[slice, slice] | None] = field(default_factory=list)
    bound_rows: slice | None = None
    n_program: int = -1
    units: KKTUnits | None = field(default=None, repr=False)
    cone: ProductCone = field(init=False, repr=False)

    def __post_init__(self) -> None:
        m, n = self.A.shape
        if self.c.shape != (n,):
            raise ValueError(f"c has shape {self.c.shape}, expected ({n},)")
        if self.b.shape != (m,):
            raise ValueError(f"b has shape {self.b.shape}, expected ({m},)")
        if self.P is not None and self.P.shape != (n, n):
            raise ValueError(f"P has shape {self.P.shape}, expected ({n}, {n})")
        covered = sum(t.size for t in self.terms)
        if covered != m:
            raise ValueError(f"terms cover {covered} rows of A, which has {m}")
        if self.n_program < 0:
            self.n_program = n
        self.cone = ProductCone([t.function for t in self.terms])

    @property
    def n(self) -> int:
        """Number of variables."""
        return self.A.shape[1]

    @property
    def m(self) -> int:
        """Number of rows of the stacked operator."""
        return self.A.shape[0]

    @property
    def equality_rows(self) -> np.ndarray:
        """(m,) bool: the rows of zero cones (equalities)."""
        rows = np.zeros(self.m, dtype=bool)
        for term in self.terms:
            rows[term.rows] = isinstance(term.function, ZeroCone)
        return rows

    @property
    def is_polyhedral(self) -> bool:
        """Whether every term is a zero or nonnegative cone (an LP or QP)."""
        return all(isinstance(t.function, (ZeroCone, NonnegCone)) for t in self.terms)

    @property
    def has_quadratic(self) -> bool:
        return self.P is not None and self.P.nnz > 0

    def describe(self) -> str:
        """One line per term: function, rows, sizes."""
        lines = [
            f"AssembledProgram: n={self.n} variables, m={self.m} rows, nnz(A)={self.A.nnz}, "
            f"nnz(P)={0 if self.P is None else self.P.nnz}"
        ]
        for t in self.terms:
            lines.append(f"  {t.function!r} on rows [{t.rows.start}, {t.rows.stop})")
        return "\n".join(lines)

    def check_finite(self) -> None:
        """Raise ValueError if any number in the program is NaN or infinite."""
        for name, arr in (("c", self.c), ("b", self.b), ("A", self.A.data)):
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"the problem data ({name}) contains NaN or inf")
        if self.P is not None and not np.all(np.isfinite(self.P.data)):
            raise ValueError("the problem data (P) contains NaN or inf")
