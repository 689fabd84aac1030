"""What the algorithms for StructuredPrograms share: stacked products and residuals.

A StructuredProgram (``cvxprox.ir``) is ``minimize c'x + sum_i f_i(A_i x - b_i)``. Its
iterates are x (n,), and z, y (m,) stacked over the terms in order (term i owns the rows
``layout.slices[i]``). The optimality conditions are

    primal:  A x - b - z = 0
    dual:    c + A'y = 0,        y_i in df_i(z_i),

and the algorithms keep the last condition exactly (y_i comes out of a proximal step at
z_i), so they stop, like SCS, when

    ||A x - b - z||_inf <= eps_abs + eps_rel max(||A x||_inf, ||z||_inf, ||b||_inf)
    ||c + A'y||_inf     <= eps_abs + eps_rel max(||A'y||_inf, ||c||_inf)
    |pobj - dobj|       <= eps_abs + eps_rel max(|pobj|, |dobj|)

with pobj = c'x + sum_i f_i(A_i x - b_i) and the dual objective
dobj = -sum_i (f_i*(y_i) + b_i'y_i), where y_i in df_i(z_i) gives the conjugate without
a formula: f_i*(y_i) = y_i'z_i - f_i(z_i) (Fenchel-Young). Near a solution the gap is
about x'(c + A'y): the dual residual weighted by x, which the inf-norm test alone lets
grow with the number of variables.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cvxprox.algorithms.base import KKTError
from cvxprox.backend import Backend, get_backend
from cvxprox.ir import OperatorTerm, StructuredProgram
from cvxprox.options import SolverOptions


class StackedTerms:
    """Terms stacked row-wise: their row slices, constants b and products A x, A'y.

    Parameters
    ----------
    terms : list of OperatorTerm
    n : int
        Number of variables.
    backend : Backend, optional
        Where the terms' b and products live (``OperatorTerm`` moved by
        ``function.on``, ``op.on``); NumPy by default.
    """

    def __init__(self, terms: list[OperatorTerm], n: int, backend: Backend | None = None) -> None:
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
    program : StructuredProgram
    """

    def __init__(self, program: StructuredProgram) -> None:
        super().__init__(program.terms, program.n)
        self.program = program

    def split(self, v: np.ndarray) -> list[np.ndarray]:
        """The per-term blocks of a stacked vector (views)."""
        return [v[rows] for rows in self.slices]


class StructuredChecker:
    """KKT errors of StructuredProgram iterates (see the module docstring).

    Parameters
    ----------
    layout : TermLayout
    options : SolverOptions
    """

    def __init__(self, layout: TermLayout, options: SolverOptions) -> None:
        self.layout = layout
        self.opts = options
        self._b_norm = _inf_norm(layout.b)
        self._c_norm = _inf_norm(layout.program.c)

    def evaluate(
        self,
        x: np.ndarray,
        z: np.ndarray,
        y: np.ndarray,
        Ax: np.ndarray | None = None,
        Aty: np.ndarray | None = None,
    ) -> KKTError:
        """KKT error at (x, z, y); pass the products A x and A'y when already computed."""
        layout, program = self.layout, self.layout.program
        Ax = layout.matvec(x) if Ax is None else Ax
        Aty = layout.rmatvec(y) if Aty is None else Aty
        eps_abs, eps_rel = self.opts.eps_abs, self.opts.eps_rel
        pobj = self.objective(x, Ax)
        dobj = self.dual_objective(z, y)
        return KKTError(
            primal=_inf_norm(Ax - layout.b - z),
            dual=_inf_norm(program.c + Aty),
            gap=abs(pobj - dobj),
            primal_tol=eps_abs + eps_rel * max(_inf_norm(Ax), _inf_norm(z), self._b_norm),
            dual_tol=eps_abs + eps_rel * max(_inf_norm(Aty), self._c_norm),
            gap_tol=eps_abs + eps_rel * max(abs(pobj), abs(dobj)),
            primal_objective=pobj,
            dual_objective=dobj,
        )

    def dual_objective(self, z: np.ndarray, y: np.ndarray) -> float:
        """offset + sum_i (f_i(z_i) - y_i'(z_i + b_i)), i.e. -sum_i (f_i*(y_i) + b_i'y_i)
        for y_i in df_i(z_i) (indicators: f_i(z_i) = 0, z_i being in the set)."""
        program, layout = self.layout.program, self.layout
        value = program.offset - float(y @ (z + layout.b))
        for term, rows in zip(program.terms, layout.slices, strict=True):
            if not term.function.is_indicator:
                value += term.function(z[rows])
        return value

    def objective(self, x: np.ndarray, Ax: np.ndarray) -> float:
        """c'x + offset + sum of the non-indicator f_i(A_i x - b_i) (indicators count 0).

        Indicators hold only up to the primal tolerance at an approximate solution, so
        they are left out: the value is the objective the user's expression has at x.
        """
        program, layout = self.layout.program, self.layout
        value = float(program.c @ x) + program.offset
        for term, rows in zip(program.terms, layout.slices, strict=True):
            if not term.function.is_indicator:
                value += term.function(Ax[rows] - term.b)
        return value


def _inf_norm(v: np.ndarray) -> float:
    return float(np.max(np.abs(v))) if v.size else 0.0
