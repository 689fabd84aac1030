"""A Program's terms stacked for the algorithms that work on them: one z and y
(m,) over the terms in order, and the products with every operator at once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cvxprox.backend import Backend, get_backend
from cvxprox.ir.program import Program, Term


class StackedTerms:
    """Terms stacked row-wise: their row slices, constants b and products A x, A'y.

    Parameters
    ----------
    terms : list of Term
    n : int
        Number of variables.
    backend : Backend, optional
        Where the terms' b and products live (``Term`` moved by
        ``function.on``, ``op.on``); NumPy by default.
    """

    def __init__(self, terms: list[Term], n: int, backend: Backend | None = None) -> None:
        self.terms = terms
        self.n = n
        self.backend = backend or get_backend("numpy")
        self.slices: list[slice] = []
        start = 0
        for term in terms:
            self.slices.append(slice(start, start + term.size))
            start += term.size
        self.m = start
        self.b = self.concat([t.b for t in terms])

    def concat(self, blocks: list[Any]) -> Any:
        """The blocks stacked into one vector of the backend (length 0 without blocks)."""
        return self.backend.xp.concat(blocks) if blocks else self.backend.zeros(0)

    def matvec(self, x: Any) -> Any:
        """A x for the stacked operator, shape (m,)."""
        return self.concat([t.op.matvec(x) for t in self.terms])

    def rmatvec(self, y: Any) -> Any:
        """A'y = sum_i A_i' y_i, shape (n,)."""
        out = self.backend.zeros(self.n)
        for term, rows in zip(self.terms, self.slices, strict=True):
            out = out + term.op.rmatvec(y[rows])
        return out


class TermLayout(StackedTerms):
    """All of a program's terms stacked: the layout of the iterates z, y.

    Parameters
    ----------
    program : Program
    backend : Backend, optional
        Where the terms live (``device_terms``); NumPy, with the program's own terms, by
        default.
    """

    def __init__(self, program: Program, backend: Backend | None = None) -> None:
        backend = backend or get_backend("numpy")
        super().__init__(device_terms(program, backend), program.n, backend)
        self.program = program

    def split(self, v: np.ndarray) -> list[np.ndarray]:
        """The per-term blocks of a stacked vector (views)."""
        return [v[rows] for rows in self.slices]


def device_terms(program: Program, backend: Backend) -> list[Term]:
    """The program's terms with functions, operators and b on ``backend`` (themselves on
    NumPy); ValueError naming the first term that has no device version yet."""
    if backend.name == "numpy":
        return list(program.terms)
    moved = []
    for term in program.terms:
        try:
            function, op = term.function.on(backend), term.op.on(backend)
        except ValueError as error:
            raise ValueError(
                f"term {term.label or term.function.describe()!r} cannot run on "
                f"backend={backend.name!r}: {error}"
            ) from None
        moved.append(Term(function, op, backend.asarray(term.b), term.label))
    return moved
