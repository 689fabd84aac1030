"""The proximal-splitting intermediate representation (IR).

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

import numpy as np
import scipy.sparse as sp

from cvxprox.cones import Cone, NonnegCone, ProductCone, ZeroCone


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
