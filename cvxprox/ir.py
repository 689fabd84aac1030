"""The proximal-splitting intermediate representation (IR).

Two forms share one objective, ``c'x + sum_i f_i(A_i x - b_i)``: ``ProxProgram`` (below),
where the A_i are rows of one sparse matrix and the f_i cone indicators (what CVXPY's cone
chain produces), and ``StructuredProgram`` (at the end), where each A_i is a matrix-free
operator (``cvxprox.linops``) and each f_i any function of ``cvxprox.prox`` (norms, TV,
Huber, ...), as produced by ``cvxprox.reductions.structure``.

Every problem that reaches an algorithm has the form

    minimize   c'x + 1/2 x'Px + sum_i f_i(A_i x - b_i) + offset

with x in R^n. The operators A_i are stacked row-wise into one operator A (m x n) and
the functions f_i act on consecutive row blocks of ``A x - b``; each f_i has a cheap
proximal operator. For a cone program every f_i is the indicator of a convex cone K_i,
so that the constraint reads ``A x - b in K``.

Dual variables follow the IR's own convention: y lies in the subdifferential of
f at z = A x - b, so the optimality conditions are

    P x + c + A'y = 0,     z = A x - b,     y in df(z).

For a cone indicator this means z in K, y in the polar cone K° = -K*, and z'y = 0.
The CVXPY interface flips the sign when it hands duals back (CVXPY's duals lie in K*).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from cvxprox.cones import Cone, NonnegCone, ProductCone, ZeroCone

if TYPE_CHECKING:
    from cvxprox.linops import LinOp
    from cvxprox.prox import ProxFunction


@dataclass(frozen=True)
class ProxTerm:
    """One term f(A_rows x - b_rows) of the objective.

    Attributes
    ----------
    function : Cone
        The function f. Cone indicators are the functions that cone programs need;
        their proximal operator is the Euclidean projection.
    rows : slice
        The rows of the stacked operator A (and of b) the term acts on.
    """

    function: Cone
    rows: slice

    @property
    def size(self) -> int:
        return self.rows.stop - self.rows.start


@dataclass
class ProxProgram:
    """minimize c'x + 1/2 x'Px + sum_i f_i(A_i x - b_i) + offset.

    Attributes
    ----------
    c : ndarray, shape (n,)
    A : scipy.sparse CSC array, shape (m, n)
        The stacked operators A_i.
    b : ndarray, shape (m,)
    terms : list of ProxTerm
        Row blocks of A and b, in order, covering all m rows.
    P : scipy.sparse CSC array, shape (n, n), or None
        Symmetric positive semidefinite; None means a linear objective.
    offset : float
        Constant added to the objective.
    """

    c: np.ndarray
    A: sp.csc_array
    b: np.ndarray
    terms: list[ProxTerm]
    P: sp.csc_array | None = None
    offset: float = 0.0
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
    def is_polyhedral(self) -> bool:
        """Whether every term is a zero or nonnegative cone (an LP or QP)."""
        return all(isinstance(t.function, (ZeroCone, NonnegCone)) for t in self.terms)

    @property
    def has_quadratic(self) -> bool:
        return self.P is not None and self.P.nnz > 0

    def describe(self) -> str:
        """One line per term: function, rows, sizes."""
        lines = [
            f"ProxProgram: n={self.n} variables, m={self.m} rows, nnz(A)={self.A.nnz}, "
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


@dataclass(frozen=True)
class OperatorTerm:
    """One term f(A x - b) of a StructuredProgram, with A a matrix-free operator.

    Attributes
    ----------
    function : ProxFunction
        f, with a cheap proximal operator.
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


@dataclass
class StructuredProgram:
    """minimize c'x + sum_i f_i(A_i x - b_i) + offset, with matrix-free A_i.

    The structure-preserving form of the IR: norms, TV, Huber, logistic losses and
    convolutions stay functions and operators instead of being expanded into cones.
    Dual variables y_i lie in the subdifferential of f_i at z_i = A_i x - b_i, so the
    optimality conditions read

        c + sum_i A_i' y_i = 0,    z_i = A_i x - b_i,    y_i in df_i(z_i).

    Attributes
    ----------
    c : ndarray, shape (n,)
    terms : list of OperatorTerm
    offset : float
    """

    c: np.ndarray
    terms: list[OperatorTerm]
    offset: float = 0.0

    def __post_init__(self) -> None:
        for term in self.terms:
            if term.op.shape[1] != self.n:
                raise ValueError(
                    f"term {term.label!r} acts on {term.op.shape[1]} variables, "
                    f"the program has {self.n}"
                )

    @property
    def n(self) -> int:
        """Number of variables."""
        return self.c.shape[0]

    @property
    def m(self) -> int:
        """Total number of rows over all terms."""
        return sum(t.size for t in self.terms)

    def objective(self, x: np.ndarray) -> float:
        """c'x + sum_i f_i(A_i x - b_i) + offset (inf outside an indicator's set)."""
        value = float(self.c @ x) + self.offset
        for term in self.terms:
            value += term.function(term.residual(x))
        return value

    def describe(self) -> str:
        """One line per term: function, operator, shape."""
        lines = [f"StructuredProgram: n={self.n} variables, {len(self.terms)} terms"]
        for t in self.terms:
            lines.append(
                f"  {t.function.describe():<16} of {t.op.describe():<40} "
                f"{t.op.shape[0]}x{t.op.shape[1]}  ({t.label})"
            )
        return "\n".join(lines)

    def check_finite(self) -> None:
        """Raise ValueError if c, b or the offset contain NaN or inf."""
        if not np.all(np.isfinite(self.c)) or not np.isfinite(self.offset):
            raise ValueError("the objective's linear part contains NaN or inf")
        for term in self.terms:
            if not np.all(np.isfinite(term.b)):
                raise ValueError(f"the constant of term {term.label!r} contains NaN or inf")
